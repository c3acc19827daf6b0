"""What errord could not fully use in a line, said once instead of never (CONTRACT §1).

The parser reports ``(offset, kind, detail)`` in ``ParseResult.warnings`` (pure, capped
per chunk); the daemon logs them rate-limited per file and kind, ``errord replay`` prints
each once. Both use :class:`LineWarnings` (and through it :func:`describe`), so they say
the same words.

* ``bad_re_alert_time`` / ``bad_notification``: a field with a value errord cannot read;
  the line is used without it. ``detail`` is the value, shown short and clean.
* ``misplaced_code``: an ``error_code`` (or ``error_code_clear``) key where errord does not
  read it (deeper than ``extra``, or inside a JSON string such as Docker's ``log``), on a
  line that raised nothing. ``detail`` is the path, ``record.extra.error_code``.
* ``naive_time_skew`` (from the daemon, which alone can tell that it reads live): times
  without a zone that sit whole hours away from the daemon's clock.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

import orjson

from errord.ratelimit import RateLimit

__all__ = [
    "BAD_NOTIFICATION",
    "BAD_RE_ALERT",
    "MAX_SHOWN",
    "MISPLACED_CODE",
    "NAIVE_TIME_SKEW",
    "SKIPPED",
    "LineWarnings",
    "describe",
    "describe_skew",
    "misplaced_code_path",
    "show_value",
    "zone_like",
]

BAD_RE_ALERT: Final = "bad_re_alert_time"
BAD_NOTIFICATION: Final = "bad_notification"
MISPLACED_CODE: Final = "misplaced_code"
NAIVE_TIME_SKEW: Final = "naive_time_skew"
SKIPPED: Final = "skipped"  # lines the parser or the tailer skipped (LineWarnings.skipped)

MAX_SHOWN: Final = 80  # characters of a value or path shown in a warning
MAX_PLACES_PER_FILE: Final = 10  # distinct misplaced-code paths reported per file
_MAX_NODES = 5000  # values looked at per line when searching for a misplaced code
_MAX_JSON_STRINGS = 4  # strings per line tried as JSON (Docker's "log")
_CODE_KEYS = ("error_code", "error_code_clear")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_PLAIN_KEY = re.compile(r"[A-Za-z_@$][\w@$-]*")
_SHOW = reprlib.Repr()
_SHOW.maxlevel, _SHOW.maxother = 3, MAX_SHOWN


def show_value(value: Any, limit: int = MAX_SHOWN) -> str:
    """A value from a log line as a warning may show it: JSON-spelled, control and bidi
    characters escaped or dropped, at most ``limit`` characters."""
    if type(value) is str:
        text = json.dumps(value[: limit * 2], ensure_ascii=False)  # escapes \n, \t, quotes
    elif type(value) is float and not math.isfinite(value):
        text = repr(value)  # NaN, inf: only the lenient parser lets them through
    else:
        try:
            text = orjson.dumps(value).decode()
        except (TypeError, ValueError):  # nested deeper than orjson writes (1000 deep, say)
            text = _SHOW.repr(value)  # reprlib: bounded depth, where repr() would recurse
    text = _CONTROL.sub("", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def misplaced_code_path(obj: dict[str, Any], *, _nested: bool = False) -> str | None:
    """Where a line's JSON holds an ``error_code``/``error_code_clear`` key that errord
    does not read (the top level and a top-level ``extra`` object are read), as a path
    (``record.extra.error_code``, ``items[0].error_code``, ``log (a JSON string)``), or
    None. Bounded: at most ``_MAX_NODES`` containers and ``_MAX_JSON_STRINGS`` strings
    tried as JSON (one level of them: Docker's ``log`` holding the app's line). Runs only
    for lines holding the bytes ``error_code`` that gave no code: ~1 µs for a plain one."""
    if _nested and ("error_code" in obj or "error_code_clear" in obj):
        return ""  # the inner line has it at its top level
    todo: list[tuple[tuple[str | int, ...], Any]] = []  # containers and JSON-ish strings only
    for key, value in obj.items():
        kind = type(value)
        if kind is str:  # most values: a line that only mentions error_code ends here
            if "error_code" in value and not _nested and value.lstrip().startswith("{"):
                todo.append(((key,), value))
        elif key in _CODE_KEYS:
            pass  # read (or absent: null)
        elif kind is dict:
            if key == "extra" and not _nested:
                todo += [(("extra", k), v) for k, v in value.items() if k not in _CODE_KEYS and _worth(v)]
            else:
                todo.append(((key,), value))
        elif kind is list:
            todo.append(((key,), value))
    if not todo:
        return None
    todo.reverse()  # depth first, in the line's order
    budget, strings = _MAX_NODES, _MAX_JSON_STRINGS
    while todo and budget > 0:
        budget -= 1
        path, value = todo.pop()
        kind = type(value)
        if kind is dict:
            for key in value:
                if key in _CODE_KEYS:
                    return _format_path((*path, key))
            todo += [((*path, k), v) for k, v in reversed(value.items()) if _worth(v)]
        elif kind is list:
            todo += [((*path, i), v) for i, v in reversed(list(enumerate(value))) if _worth(v)]
        elif kind is str and strings > 0 and not _nested:
            strings -= 1
            try:
                inner = orjson.loads(value)
            except ValueError:
                continue
            if type(inner) is dict and misplaced_code_path(inner, _nested=True) is not None:
                return _format_path(path) + " (a JSON string)"
    return None


def _worth(value: Any) -> bool:
    kind = type(value)
    return kind is dict or kind is list or (kind is str and _jsonish(value))


def _jsonish(text: str) -> bool:
    return "error_code" in text and text.lstrip().startswith("{")


def _format_path(parts: tuple[str | int, ...]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if _PLAIN_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)
            out = f"{out}.{key}" if out else key
    out = _CONTROL.sub("", out)
    return out if len(out) <= MAX_SHOWN else "…" + out[-(MAX_SHOWN - 1) :]


def zone_like(skew: float, tolerance: float) -> float | None:
    """The zone offset (a whole number of quarter hours, 1 h to 26 h either way) that
    ``skew`` seconds are within ``tolerance`` of, or None: what a time written in local
    time without a zone and read as another zone is off by."""
    quarters = round(skew / 900.0)
    if not 4 <= abs(quarters) <= 104 or abs(skew - quarters * 900.0) > tolerance:
        return None
    return quarters * 900.0


def _hours(seconds: float) -> str:
    minutes = round(abs(seconds) / 60)
    h, m = divmod(minutes, 60)
    return f"{h}h{m:02d}m" if m else f"{h}h"


def misplaced_code_hint(path: str) -> str:
    """How to make errord read a code found at ``path`` (a :func:`misplaced_code_path`)."""
    if path.startswith("record.extra."):
        return (
            "loguru's serialize=True nests extras there: write the line yourself with the "
            "extras at its top level (loguru's documented custom serialization: a patcher "
            'and format="{extra[serialized]}")'
        )
    if path.endswith("(a JSON string)"):
        return (
            "the app's JSON line is wrapped in another (Docker's json-file log): point the "
            "source at the app's own log file, or have the app log to a file errord reads"
        )
    return 'make the logger write that key at the top level of the line (or under "extra")'


def describe(kind: str, detail: str, path: str, offset: int, every: float | None) -> str:
    """The text of one parser warning (``kind``, ``detail`` as in ``ParseResult.warnings``)."""
    where = f"{path}, offset {offset}"
    if kind == BAD_RE_ALERT:
        text = (
            f"{where}: re_alert_time {detail} is not a duration errord can read (seconds, "
            f'"15m", "1h30m", "PT15M", "0:15:00"); the line is used without it'
        )
    elif kind == BAD_NOTIFICATION:
        text = (
            f"{where}: notification {detail} is not a boolean (true/false, yes/no, on/off, "
            f"1/0); the line is used without it"
        )
    elif kind == MISPLACED_CODE:
        return (
            f"{where}: an error_code key at {detail} is not read, so such lines raise "
            f'nothing: errord reads error_code at the top level or under "extra"; '
            f"{misplaced_code_hint(detail)} (shown once per file and place)"
        )
    else:
        text = f"{where}: {kind} {detail}"
    if every is None:
        return text + " (shown once per file)"
    return f"{text}; further warnings like it for this file muted for {int(every)}s"


def describe_skew(path: str, offset: int, text: str, skew: float, setting: str, zone: str) -> str:
    """The one warning for a file whose times, written without a zone, are ``skew``
    seconds (a zone offset) behind (positive) or ahead of the daemon's clock."""
    side = "behind" if skew > 0 else "ahead of"
    return (
        f"{path}, offset {offset}: event times carry no zone and are {_hours(skew)} {side} "
        f"this host's clock while errord reads the file live (time {show_value(text)} read "
        f'as {zone}, {setting} = "{zone}"): set {setting} to the zone the app writes its '
        f"times in, or make the app write times with a zone; incidents and durations are "
        f"off by {_hours(skew)} until then"
    )


class LineWarnings:
    """Which warnings about a file's lines are shown, and in which words: per file and
    kind (a skipped line, an unusable field) at most one every ``every`` seconds, or once
    with ``every`` None (replay); a misplaced code once per file and place, at most
    ``MAX_PLACES_PER_FILE`` places per file. The limits are ``ratelimit.RateLimit``'s,
    which forgets rather than grows past ``max_keys`` keys."""

    def __init__(
        self, every: float | None, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000
    ) -> None:
        self.every = every
        self._max_keys = max_keys
        self._kinds = RateLimit(every, clock=clock, max_keys=max_keys)
        self._places = RateLimit(None, clock=clock, max_keys=max_keys)
        self._places_per_file: dict[str, int] = {}

    def messages(self, path: str, warnings: Iterable[tuple[int, str, str]]) -> list[str]:
        """The texts of a chunk's parser warnings that are due (see ``describe``)."""
        out: list[str] = []
        for offset, kind, detail in warnings:
            if kind == MISPLACED_CODE:
                if self._new_place(path, detail):
                    out.append(describe(kind, detail, path, offset, None))
            elif self._kinds.allow((path, kind)):
                out.append(describe(kind, detail, path, offset, self.every))
        return out

    def skipped(self, path: str, count: int, first: tuple[int, str] | None) -> str | None:
        """The text about ``count`` lines of ``path`` skipped in a chunk (``first``: the
        offset and reason of the first), when one is due."""
        if not self._kinds.allow((path, SKIPPED)):
            return None
        where = f" (first at offset {first[0]}: {first[1]})" if first else ""
        muted = "" if self.every is None else f"; further warnings for this file muted for {int(self.every)}s"
        return f"skipped {count} line(s) in {path}{where}{muted}"

    def _new_place(self, path: str, detail: str) -> bool:
        seen = self._places_per_file.get(path, 0)
        if seen >= MAX_PLACES_PER_FILE or not self._places.allow((path, detail)):
            return False
        if len(self._places_per_file) >= self._max_keys:
            self._places_per_file.clear()
        self._places_per_file[path] = seen + 1
        return True
