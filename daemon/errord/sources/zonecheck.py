"""Times written without a zone, hours away from this host's clock (CONTRACT §1).

python-json-logger's ``asctime`` on a host in New York writes local wall time without a
zone; errord reads it as UTC (the ``timezone`` setting's default) and every incident
starts 5 hours early. Nothing in one line tells that apart from an old line, so the
check needs what only the daemon knows: that it reads the file *live*.

A chunk is live when its last line is the file's last line (``Chunk.at_end``: the tailer
has caught up) and the file was modified within ``LIVE_WINDOW`` seconds
(``Chunk.mtime``, from the tailer's own ``fstat`` before the read): then that line was
written at the file's mtime, give or take the app's own delay. Its time, when it has no
zone, read in the source's timezone, is compared with the mtime: a skew within
``TOLERANCE`` of a zone offset (whole quarter hours, 1 h to 26 h either way) is what a
wrong ``timezone`` gives. It must be seen ``SIGHTINGS`` times, at least ``EVERY`` apart,
with the same offset and no live line in between that was on time: an old file copied
into the folder just now (fresh mtime, old last line) is seen once, an app writing in
the wrong zone again and again. A backlog never warns: its chunks end before the file's
end, or the file is not being written. One warning per file path.

The cost: one dict lookup per chunk; for at most one chunk per file per ``EVERY``
seconds, one ``orjson.loads`` of its last line. No I/O: what the file looked like comes
with the chunk.
"""

from __future__ import annotations

from typing import Final

from errord.parse.lines import LineParser
from errord.parse.linewarnings import describe_skew, zone_like
from errord.parse.times import naive_time
from errord.sources.base import Chunk

__all__ = ["ZoneCheck"]

EVERY: Final = 1.0  # seconds between checks of one file
SIGHTINGS: Final = 3  # live lines with the same skew before the warning
LIVE_WINDOW: Final = 30.0  # the file was modified at most this long before the check
TOLERANCE: Final = 60.0  # seconds the skew may differ from a zone offset
_MAX_LINE = 64 * 1024  # a longer last line is not looked at
_MAX_FILES = 10_000


class ZoneCheck:
    """Per file path: are the zone-less times of live lines a zone offset off?"""

    def __init__(self) -> None:
        self._next: dict[str, float] = {}  # path -> time of its next check (inf: warned)
        self._seen: dict[str, tuple[float, int]] = {}  # path -> (skew, times seen in a row)

    def due(self, path: str, now: float) -> bool:
        """Whether ``check`` would look at a chunk of ``path`` now (cheap)."""
        return now >= self._next.get(path, 0.0)

    def sightings(self, path: str) -> int:
        """Live lines of ``path`` seen in a row with the same zone-like skew (not yet warned)."""
        return self._seen.get(path, (0.0, 0))[1]

    def check(self, chunk: Chunk, parser: LineParser, now: float, setting: str, zone: str) -> str | None:
        """The warning for ``chunk``'s file, once, or None. ``setting`` names the
        source's timezone key (``sources.0.timezone``), ``zone`` its value."""
        if not self.due(chunk.path, now):
            return None
        if len(self._next) >= _MAX_FILES:
            self._next.clear()
            self._seen.clear()
        self._next[chunk.path] = now + EVERY
        data = chunk.data
        end = len(data) - 1 if data.endswith(b"\n") else len(data)
        start = data.rfind(b"\n", 0, end) + 1
        if end - start > _MAX_LINE:
            return None
        got = naive_time(data[start:end], parser.tz)
        if got is None:
            return None
        # about a zone offset from the clock (the line may be seconds old), else on time or old
        if zone_like(now - got[1], TOLERANCE + LIVE_WINDOW) is None:
            if abs(now - got[1]) <= TOLERANCE + LIVE_WINDOW:
                self._seen.pop(chunk.path, None)  # on time: whatever was seen was not a zone
            return None
        if not chunk.at_end or abs(now - chunk.mtime) > LIVE_WINDOW:
            return None  # not the file's end, or the file is not being written now
        skew = zone_like(chunk.mtime - got[1], TOLERANCE)
        if skew is None:
            return None
        last, count = self._seen.get(chunk.path, (skew, 0))
        count = count + 1 if last == skew else 1
        if count < SIGHTINGS:
            self._seen[chunk.path] = (skew, count)
            return None
        self._seen.pop(chunk.path, None)
        self._next[chunk.path] = float("inf")
        return describe_skew(chunk.path, chunk.offset + start, got[0], skew, setting, zone)
