"""Zone-less times hours away from the host's clock while errord reads live (CONTRACT §1):
one warning per file; backlogs and copies of old files never warn."""

from __future__ import annotations

import io
import logging
import os
import re
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conftest import append
from errord.parse.lines import LineParser
from errord.sources.base import Chunk
from errord.sources.zonecheck import EVERY, SIGHTINGS, ZoneCheck

NEW_YORK = ZoneInfo("America/New_York")
UTC = ZoneInfo("UTC")


def pjl(when: float, tz: ZoneInfo = NEW_YORK, code: str = "db_down") -> bytes:
    """A python-json-logger line whose asctime is ``when`` as wall time in ``tz`` (no zone),
    as a host in that zone writes it: the real formatter, its converter set to ``tz``."""
    from pythonjsonlogger.json import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    formatter = JsonFormatter("%(asctime)s %(levelname)s %(message)s")
    formatter.converter = lambda t: datetime.fromtimestamp(t, tz).timetuple()  # type: ignore[assignment,method-assign]
    handler.setFormatter(formatter)
    record = logging.LogRecord("app", logging.ERROR, __file__, 1, "db down", None, None)
    record.created, record.msecs, record.error_code = when, (when % 1) * 1000, code
    handler.handle(record)
    return stream.getvalue().encode()


def chunk_of(path: Path, start: int, end: int | None = None) -> Chunk:
    """The chunk the tailer hands on for ``path``'s bytes from ``start`` (to ``end``):
    at the file's end or not, with the mtime its fstat saw."""
    st = path.stat()
    data = path.read_bytes()[start:end]
    return Chunk(
        (st.st_dev, st.st_ino), 0, str(path), start, data, at_end=start + len(data) == st.st_size, mtime=st.st_mtime
    )


def sight(zc: ZoneCheck, path: Path, line: bytes, now: float, mtime: float | None = None) -> str | None:
    """Append ``line`` and check the chunk it makes at ``now``; the file was written at
    ``mtime`` (default: ``now``, as when errord reads within milliseconds)."""
    start = path.stat().st_size if path.exists() else 0
    append(path, line)
    mtime = now if mtime is None else mtime
    os.utime(path, (mtime, mtime))
    return zc.check(
        chunk_of(path, start), LineParser(app=None, tz=UTC, max_line_bytes=1 << 20), now, "sources.0.timezone", "UTC"
    )


def test_live_new_york_times_read_as_utc_warn_once(tmp_path: Path) -> None:
    zc, log, now = ZoneCheck(), tmp_path / "app.jsonl", time.time()
    got = [sight(zc, log, pjl(now + i * EVERY), now + i * EVERY) for i in range(SIGHTINGS + 2)]
    assert got[: SIGHTINGS - 1] == [None] * (SIGHTINGS - 1)
    text = got[SIGHTINGS - 1]
    assert text is not None and got[SIGHTINGS:] == [None, None]  # once
    offset = len(b"".join(pjl(now + i * EVERY) for i in range(SIGHTINGS - 1)))
    assert text.startswith(f"{log}, offset {offset}: event times carry no zone and are ")
    hours = -datetime.fromtimestamp(now, NEW_YORK).utcoffset().total_seconds() / 3600  # type: ignore[union-attr]
    assert f"are {hours:.0f}h behind this host's clock" in text
    assert 'sources.0.timezone = "UTC"' in text and "set sources.0.timezone" in text
    assert not zc.due(str(log), now + 1000)  # never looked at again


def test_times_ahead_warn_too_and_right_zones_never(tmp_path: Path) -> None:
    zc, now = ZoneCheck(), time.time()
    tokyo = [
        sight(zc, tmp_path / "tokyo.jsonl", pjl(now + i, ZoneInfo("Asia/Tokyo")), now + i) for i in range(SIGHTINGS)
    ]
    assert tokyo[-1] is not None and "9h ahead of this host's clock" in tokyo[-1]
    utc = [sight(zc, tmp_path / "utc.jsonl", pjl(now + i, UTC), now + i) for i in range(SIGHTINGS + 1)]
    assert utc == [None] * (SIGHTINGS + 1)


def test_an_on_time_line_between_resets_the_count(tmp_path: Path) -> None:
    zc, log, now = ZoneCheck(), tmp_path / "mixed.jsonl", time.time()
    seq = [NEW_YORK, NEW_YORK, UTC] * 3  # e.g. two writers: never SIGHTINGS in a row
    assert [sight(zc, log, pjl(now + i, tz), now + i) for i, tz in enumerate(seq)] == [None] * len(seq)


def test_backlogs_and_copies_do_not_warn(tmp_path: Path) -> None:
    zc, now = ZoneCheck(), time.time()
    # lines 5 h old, in a file last written 5 h ago
    old = tmp_path / "old.jsonl"
    for i in range(SIGHTINGS + 1):
        assert sight(zc, old, pjl(now - 5 * 3600 + i, UTC), now + i * EVERY, mtime=now - 5 * 3600 + i) is None
    # a chunk that does not reach the end of the file (the reader is behind)
    behind = tmp_path / "behind.jsonl"
    for i in range(SIGHTINGS + 1):
        start = behind.stat().st_size if behind.exists() else 0
        append(behind, pjl(now + i), pjl(now + i, UTC))
        first = pjl(now + i)
        c = chunk_of(behind, start, start + len(first))
        assert zc.check(c, LineParser(app=None, tz=UTC, max_line_bytes=1 << 20), now + i, "s", "UTC") is None
    # an old file copied in just now: fresh mtime, one sighting, then nothing more
    copy = tmp_path / "copy.jsonl"
    assert sight(zc, copy, b"".join(pjl(now - 7 * 3600 - 60 + i) for i in range(100)), now) is None
    assert zc.sightings(str(copy)) == 1  # it was one sighting: with more it would warn


def test_what_the_tailer_saw_comes_with_the_chunk_no_stat(tmp_path: Path) -> None:
    """The check does no I/O of its own: a chunk at the file's end with a fresh mtime is
    live even when its path names nothing now (a deleted file read through its
    descriptor); one that does not reach the end, or an old mtime, never counts."""
    gone = str(tmp_path / "deleted.jsonl")  # never created
    parser = LineParser(app=None, tz=UTC, max_line_bytes=1 << 20)
    now = time.time()

    def check(zc: ZoneCheck, i: int, *, at_end: bool = True, mtime: float | None = None) -> str | None:
        when = now + i * EVERY
        chunk = Chunk((1, 2), 0, gone, 100 * i, pjl(when), at_end=at_end, mtime=when if mtime is None else mtime)
        return zc.check(chunk, parser, when, "sources.0.timezone", "UTC")

    zc = ZoneCheck()
    got = [check(zc, i) for i in range(SIGHTINGS)]
    assert got[:-1] == [None] * (SIGHTINGS - 1) and got[-1] is not None and got[-1].startswith(gone)
    behind, stale = ZoneCheck(), ZoneCheck()
    assert [check(behind, i, at_end=False) for i in range(SIGHTINGS + 1)] == [None] * (SIGHTINGS + 1)
    assert [check(stale, i, mtime=now - 3600) for i in range(SIGHTINGS + 1)] == [None] * (SIGHTINGS + 1)
    assert behind.sightings(gone) == stale.sightings(gone) == 0


@pytest.mark.parametrize(
    "line",
    [
        b'{"timestamp": "2026-01-14T10:00:00Z", "error_code": "x"}\n',  # a zone: never
        b'{"ts": 1768384800, "error_code": "x"}\n',  # epoch: never
        b'{"message": "no time"}\n',
        b"not json\n",
    ],
)
def test_lines_with_a_zone_or_no_time_are_not_looked_at(tmp_path: Path, line: bytes) -> None:
    zc, log = ZoneCheck(), tmp_path / "z.jsonl"
    now = datetime(2026, 1, 14, 15, 0, 5, tzinfo=UTC).timestamp()
    assert all(sight(zc, log, line, now + i, mtime=now + i) is None for i in range(SIGHTINGS + 1))


@pytest.mark.slow
def test_daemon_warns_once_for_a_live_file_in_the_wrong_zone(make_errord, tmp_path: Path) -> None:
    """End to end: python-json-logger's asctime on a "New York host" while errord reads
    live: one warning naming the file, an offset and the timezone setting; a backlog of
    the same kind of lines (5 h old, in a file last written 5 h ago), a 3 MiB backlog
    followed by on-time lines, and an on-time file give none."""
    logs = tmp_path / "logs"
    logs.mkdir()
    now = time.time()
    old = logs / "old.jsonl"
    append(old, *[pjl(now - 5 * 3600 + i, UTC, code="old") for i in range(50)])
    os.utime(old, (now - 5 * 3600 + 50,) * 2)
    big = logs / "big.jsonl"
    pad = b" " * 300
    append(
        big,
        *[
            pjl(now - 5 * 3600 + i / 1000, UTC, code="big").replace(b"}\n", b', "pad": "%s"}\n' % pad)
            for i in range(9000)
        ],
    )
    assert big.stat().st_size > 3 << 20
    e = make_errord()
    e.start()
    ny, utc = logs / "ny.jsonl", logs / "utc.jsonl"
    for _ in range(SIGHTINGS + 3):
        append(ny, pjl(time.time()))
        append(utc, pjl(time.time(), UTC, code="on_time"))
        append(big, pjl(time.time(), UTC, code="big"))
        time.sleep(EVERY + 0.3)
    e.wait_caught_up()
    warned = [ln for ln in e.output().splitlines() if "carry no zone" in ln]
    assert len(warned) == 1, e.output()
    assert re.search(rf"{re.escape(str(ny))}, offset \d+: event times carry no zone and are \d+h behind", warned[0])
    assert 'sources.0.timezone = "UTC"' in warned[0]
    assert e.stop() == 0
