"""Raw log bytes -> ``LogEvent`` | skip reason (CONTRACT §1 and the "Time" rule of §2).

What a line is
    A line is the bytes up to a ``b"\\n"``; the last line of a chunk may lack it (a closed
    file that ended without one). One ``\\r`` before the ``\\n`` is tolerated. Its length
    for ``max_line_bytes`` excludes the ``\\n`` only. A blank line (only spaces, tabs,
    ``\\r``) counts as a line, is not skipped and gives no event. A UTF-8 BOM at file
    offset 0 is not part of the first line (a chunk at offset 0 starting with one is read
    from offset 3). Runs of NUL bytes are cut out before the parser sees the lines (by
    the follower, and replay's reader, with ``nul_free_parts``).

Which lines are parsed
    A line is a *candidate* when its raw bytes contain ``error_code``, or a JSON escape
    ``\\u00XX`` of one of the characters of that word (``\\u0065`` e, ``\\u0072`` r,
    ``\\u006f`` o, ``\\u005f`` _, ``\\u0063`` c, ``\\u0064`` d, hex digits in either
    case). Those escapes are the only way a key that decodes to ``error_code`` (or
    ``error_code_clear``) can be written without the literal bytes: none of its letters
    has a short escape. Lines with other escapes (``\\u00e9``, ``\\"``, ``\\n``) stay
    cheap. Candidates are parsed with orjson: invalid UTF-8 -> ``invalid_utf8``, not JSON
    -> ``not_json``, JSON but not an object -> ``not_object``. Every other line only gets
    the cheap check: valid UTF-8 (else ``invalid_utf8``) and, after stripping spaces, tabs
    and ``\\r``, starting with ``{`` and ending with ``}`` (else ``not_object``).
    ``too_long`` is checked before anything else, then UTF-8.

How a chunk is parsed
    ``parse_chunk`` first checks the whole chunk at C speed (newline count, UTF-8,
    "every line is ``{...}``", no over-long line). When that holds, which is the normal
    case, it creates no object per ordinary line: it finds the candidates with
    ``bytes.find`` and parses just those. Otherwise (a blank or broken line, say) it falls
    back to a per-line pass over that chunk; either way the result is exactly what
    ``parse_line`` gives line by line (tests/test_lines.py checks this with hypothesis).
    ``bench/bench_lines.py`` compares it with per-line loops.

Fields (CONTRACT §1)
    For each field the top level wins over ``extra`` (when that is an object): the
    field's aliases are tried in order at the top level first, then in ``extra`` (a
    ``null`` value counts as absent). So ``{"msg": "a", "extra": {"message": "b"}}`` has
    the message "a": a formatter that nests extras never overrides what the logger wrote
    itself. Deeper levels are not looked at.

    * ``error_code`` / ``error_code_clear``: strings are stripped, and an empty string
      counts as absent (like ``null``). An int becomes ``str(int)``; an integral float
      ``str(int(x))`` (``500.0`` -> ``"500"``), another float ``repr`` (``"1.5"``).
      ``true``/``false``, arrays and objects make the whole line a ``bad_code`` skip.
      A line with neither is valid and gives no event (``None``), e.g. a line that only
      mentions error_code in its message.
    * ``re_alert_time``: ``durations.parse_duration``; an unusable value is ignored
      (``re_alert`` None), the event is still produced, and a ``bad_re_alert_time``
      warning carries the value (``ParseResult.warnings``, see ``linewarnings``).
    * ``notification``: a boolean, ``0``/``1``, or (any case, surrounding spaces ignored)
      ``true``/``false``/``yes``/``no``/``on``/``off``/``1``/``0``; anything else is
      "not given" (None), with a ``bad_notification`` warning.
    * A line that gives neither code although it holds the bytes ``error_code`` is
      searched for such a key where errord does not read it (a ``misplaced_code``
      warning naming the path); this costs only on those lines, already parsed.
    * exception (``exc_info``, ``exception``, ``err``, ``stack_info``, first present):
      ``tracebacks.exception_text``, the type and message in one capped line, or None.
    * ``message`` / ``msg`` / ``event``: a string is kept whole; arrays and objects become
      their JSON text, ``true``/``false`` their JSON words, numbers ``str()``; none -> "".
    * ``levelname`` / ``level``: a string as written, a number as ``str()``, else None.
    * time (``timestamp``, ``@timestamp``, ``time``, ``asctime``, ``ts``): ISO-8601 via
      ``datetime.fromisoformat`` (``Z``, offsets, ``T`` or space, any number of fraction
      digits truncated to microseconds, python-json-logger's ``2026-01-14 15:05:51,367``),
      also a lowercase ``z`` and a trailing `` UTC``/`` GMT``; a time without zone is in
      the parser's ``tz``. A number, or a string that is only a number, is epoch seconds;
      above 1e11 milliseconds, above 1e14 microseconds, above 1e17 nanoseconds. A missing
      or unparseable time, one before 1970, and one more than ``future_slack`` seconds
      after ``now`` all give ``now``. Only the first present alias is looked at.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Final

import orjson

from errord.durations import parse_duration
from errord.model import MAX_CODE_CHARS, LogEvent
from errord.parse.linewarnings import BAD_NOTIFICATION, BAD_RE_ALERT, MISPLACED_CODE, misplaced_code_path, show_value
from errord.parse.tracebacks import EXCEPTION_KEYS, exception_text

__all__ = [
    "BAD_CODE",
    "INVALID_UTF8",
    "NOT_JSON",
    "NOT_OBJECT",
    "PARSER_ERROR",
    "SKIP_REASONS",
    "TOO_LONG",
    "LineParser",
    "ParseResult",
    "has_long_line",
    "nul_free_parts",
    "parse_contained",
]

# Skip reasons: stable strings, used as metric labels.
INVALID_UTF8: Final = "invalid_utf8"
NOT_JSON: Final = "not_json"
NOT_OBJECT: Final = "not_object"
TOO_LONG: Final = "too_long"
BAD_CODE: Final = "bad_code"
PARSER_ERROR: Final = "parser_error"  # a line the parser raised on (a bug, contained: parse_contained)
SKIP_REASONS: Final = (INVALID_UTF8, NOT_JSON, NOT_OBJECT, TOO_LONG, BAD_CODE)

CODE_KEY: Final = "error_code"
CLEAR_KEY: Final = "error_code_clear"
RE_ALERT_KEY: Final = "re_alert_time"
NOTIFY_KEY: Final = "notification"
# the aliases, in the order they are tried (LineParser._event spells them out again)
MESSAGE_KEYS: Final = ("message", "msg", "event")
TIME_KEYS: Final = ("timestamp", "@timestamp", "time", "asctime", "ts")
LEVEL_KEYS: Final = ("levelname", "level")

logger = logging.getLogger(__name__)

_NEEDLE = b"error_code"
# \u00XX escapes of e, r, o, _, c, d: the only way to spell a key that decodes to
# "error_code" without its literal bytes.
_ESCAPED_KEY = re.compile(rb"\\u00(?:6[345fF]|72|5[fF])")
# A newline not followed by "{" or not preceded by "}" / "}\r": a line that is not "{...}".
# One regex pass (literal prefix "\n") is ~1.5x faster than bytes.count(b"}\n{").
_BAD_BOUNDARY = re.compile(rb"\n(?:(?!\{)|(?<!\}\n)(?<!\}\r\n))")
_UTF8_BLOCK = 4096
_BOM = b"\xef\xbb\xbf"
_KEY_END = b'"\\_'  # what may follow error_code in a key: its quote, an escaped quote, "_clear"
MAX_WARNINGS = 4  # distinct warnings of one kind kept per chunk (the daemon shows one a minute)
_LINE_WS = b" \t\r"
_LBRACE = 0x7B
_RBRACE = 0x7D
_NEWLINE = 0x0A

_NUMERIC = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_EPOCH_NAIVE = datetime(1970, 1, 1)
_fromisoformat = datetime.fromisoformat
_UTC_SUFFIXES = (" UTC", " GMT", "UTC", "GMT")
_MAX_TIME_TEXT = 64  # longer strings are not times
_CACHE_MAX = 1024

_FLAG_WORDS: Final = {
    "true": True, "yes": True, "on": True, "1": True,
    "false": False, "no": False, "off": False, "0": False,
}  # fmt: skip


class _Bad:
    """Marker: a code field of an unusable type."""


_BAD: Final = _Bad()
_MISS: Final = object()

# _event creates a LogEvent without its __init__ and sets each field itself (see there):
# a field added to LogEvent must be added there too.
_new = object.__new__
if LogEvent.__slots__ != (
    "code", "clear", "message", "time", "re_alert", "notify", "level", "app", "path", "offset",
    "exception",
):  # pragma: no cover
    raise ImportError("errord.parse.lines._event does not set every field of model.LogEvent")


@dataclass(slots=True)
class ParseResult:
    """What one chunk gave: its events (file order) and its line/skip counters."""

    events: list[LogEvent] = field(default_factory=list)
    lines: int = 0  # lines in the chunk, skipped ones and ones without a code included
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # skip reason -> count
    first_skip: tuple[int, str] | None = None  # (file offset, reason) of the first skip
    # (file offset, kind, detail) of what a used line could not give (linewarnings): the
    # first of each (kind, detail), at most MAX_WARNINGS of a kind per chunk, in file order
    warnings: list[tuple[int, str, str]] = field(default_factory=list)


class LineParser:
    """Turns the lines of one source into ``LogEvent``s. Pure: no I/O, no clock.

    ``app`` is copied into every event, ``tz`` applies to times written without a zone,
    longer lines than ``max_line_bytes`` are skipped, and an event time more than
    ``future_slack`` seconds after ``now`` is replaced by ``now``.
    """

    __slots__ = ("_durations", "_warnings", "app", "future_slack", "max_line_bytes", "tz")

    def __init__(
        self, *, app: str | None, tz: tzinfo, max_line_bytes: int, future_slack: float = 300.0
    ) -> None:
        self.app = app
        self.tz = tz
        self.max_line_bytes = max_line_bytes
        self.future_slack = future_slack
        self._durations: dict[str, float | None] = {}  # re_alert_time text -> seconds
        self._warnings: list[tuple[int, str, str]] = []  # where _event reports (the chunk's)

    # ----------------------------------------------------------------- public API

    def parse_chunk(self, data: bytes, offset: int, now: float, path: str = "") -> ParseResult:
        """Parse complete lines; ``offset`` is the file offset of ``data[0]``. Never raises."""
        res = ParseResult()
        self._warnings = res.warnings
        if offset == 0 and data[:3] == _BOM:  # not part of the file's first line (§7)
            data, offset = data[3:], 3
        size = len(data)
        if not size:
            return res
        # count newlines at memchr speed (bytes.count of one byte is several times slower)
        newlines = size - len(data.replace(b"\n", b""))
        terminated = data[-1] == _NEWLINE
        res.lines = newlines if terminated else newlines + 1
        if not self._clean(data, newlines, terminated):
            self._per_line(data, terminated, offset, now, path, res)
            return res
        escaped = _escaped_spans(data) if data.find(b"\\") >= 0 else None  # memchr: ~free
        # None, the common case: the candidates are found and parsed in one pass below
        spans = sorted(set(_needle_spans(data)).union(escaped)) if escaped else None
        events = res.events
        candidate = self._candidate
        if spans is not None:
            for start, end in spans:
                r = candidate(data[start:end], now, offset + start, path)
                if r is not None:
                    if type(r) is str:
                        _count_skip(res, r, offset + start)
                    else:
                        events.append(r)  # type: ignore[arg-type]
            return res
        # _needle_spans and _candidate inlined: this loop runs once per error line
        find, rfind, loads, event = data.find, data.rfind, orjson.loads, self._event
        i = find(_NEEDLE)
        while i >= 0:
            end = find(b"\n", i)
            if end < 0:
                end = size
            start = rfind(b"\n", 0, i) + 1
            try:
                obj = loads(data[start:end])
            except ValueError:
                obj = None
            if type(obj) is dict:
                r = event(obj, now, offset + start, path)
                if r is None:
                    # a mention in a text ("error_code here") is no key: walk the line only
                    # when this occurrence may end a key or the line has another one
                    j = i + len(_NEEDLE)
                    if (j < end and data[j] in _KEY_END) or find(_NEEDLE, j, end) >= 0:
                        self._misplaced(obj, offset + start)
            else:
                r = candidate(data[start:end], now, offset + start, path)  # the exact reason
            if r is not None:
                if type(r) is str:
                    _count_skip(res, r, offset + start)
                else:
                    events.append(r)  # type: ignore[arg-type]
            i = find(_NEEDLE, end)  # a line naming error_code twice is taken once
        return res

    def parse_line(
        self, line: bytes, now: float, warnings: list[tuple[int, str, str]] | None = None
    ) -> LogEvent | str | None:
        """One line (with or without its ``\\n``): an event, a skip reason, or None for a
        valid line that carries no code. Never raises. What the line could not give is
        appended to ``warnings`` (as in ``ParseResult.warnings``, offset 0)."""
        if line.endswith(b"\n"):
            line = line[:-1]
        self._warnings = warnings if warnings is not None else []
        return self._line(line, now, 0, "")

    def naive_time(self, line: bytes) -> tuple[str, float] | None:
        """The time a line gives (its first time alias, top level then ``extra``) when it
        is text without a zone: ``(text, epoch seconds read in tz)``; else None. For the
        daemon's check of live times hours away from its clock; not used per line."""
        try:
            obj = orjson.loads(line)
        except ValueError:
            return None
        if type(obj) is not dict:
            return None
        extra = obj.get("extra")
        when = _first_of(obj, extra if type(extra) is dict else None, TIME_KEYS)
        if type(when) is not str or not 4 < len(when.strip()) <= _MAX_TIME_TEXT:
            return None
        text = when.strip()
        if text[4:5] != "-":  # epoch seconds as text, or not a time: no zone to miss
            return None
        try:
            naive = datetime.fromisoformat(text).tzinfo is None
        except ValueError:
            return None  # "…z", "… UTC" (_iso_lenient) carry a zone
        ts = self._time_text(text) if naive else None
        return None if ts is None else (text, ts)

    # ----------------------------------------------------------------- whole chunk

    def _clean(self, data: bytes, newlines: int, terminated: bool) -> bool:
        """True when every line is ``{...}`` (optionally ``\\r``), valid UTF-8 and not too
        long: then only candidates can give anything but None."""
        if data[0] != _LBRACE:
            return False
        if terminated:
            if not (data.endswith(b"}\n") or data.endswith(b"}\r\n")):
                return False
        elif not (data.endswith(b"}") or data.endswith(b"}\r")):
            return False
        # every newline but the last must sit between "}" (or "}\r") and "{"
        if (newlines > 1 or not terminated) and _BAD_BOUNDARY.search(
                data, 0, len(data) - 1 if terminated else len(data)):
            return False
        if len(data) > self.max_line_bytes and has_long_line(data, self.max_line_bytes):
            return False
        return data.isascii() or _utf8_ok(data)

    def _per_line(
        self, data: bytes, terminated: bool, offset: int, now: float, path: str, res: ParseResult
    ) -> None:
        parts = data.split(b"\n")
        if terminated:
            parts.pop()  # the empty piece after the final newline
        pos = offset
        for body in parts:
            r = self._line(body, now, pos, path)
            if r is not None:
                if type(r) is str:
                    _count_skip(res, r, pos)
                else:
                    res.events.append(r)  # type: ignore[arg-type]
            pos += len(body) + 1

    # ----------------------------------------------------------------- one line

    def _line(self, body: bytes, now: float, offset: int, path: str) -> LogEvent | str | None:
        """The reference rule for one line without its newline (parse_chunk's fast path
        must agree with it)."""
        if len(body) > self.max_line_bytes:
            return TOO_LONG
        if _NEEDLE in body or _ESCAPED_KEY.search(body) is not None:
            return self._candidate(body, now, offset, path)
        if not body.isascii():
            try:
                body.decode("utf-8")
            except UnicodeDecodeError:
                return INVALID_UTF8
        stripped = body.strip(_LINE_WS)
        if not stripped or (stripped[0] == _LBRACE and stripped[-1] == _RBRACE):
            return None
        return NOT_OBJECT

    def _candidate(self, body: bytes, now: float, offset: int, path: str) -> LogEvent | str | None:
        try:
            obj = orjson.loads(body)
        except ValueError:  # orjson.JSONDecodeError, also for invalid UTF-8
            if not body.isascii():
                try:
                    body.decode("utf-8")
                except UnicodeDecodeError:
                    return INVALID_UTF8
            return self._candidate_lenient(body, now, offset, path)
        if type(obj) is not dict:
            return NOT_OBJECT
        ev = self._event(obj, now, offset, path)
        if ev is None:
            self._misplaced(obj, offset)
        return ev

    def _candidate_lenient(self, body: bytes, now: float, offset: int, path: str) -> LogEvent | str | None:
        """What orjson refuses but Python's own loggers write (python-json-logger and
        structlog use ``json.dumps``, ``allow_nan=True``): ``NaN``/``Infinity``, numbers
        beyond double range, lone surrogate escapes (``\\ud800``). Such a line must still
        raise its error; its text is made valid UTF-8 so it can be stored and sent."""
        try:
            obj = json.loads(body.decode("utf-8"))  # from str: a BOM stays "not JSON"
        except (ValueError, RecursionError):  # JSONDecodeError, over-long int literals
            return NOT_JSON
        if type(obj) is not dict:
            return NOT_OBJECT
        ev = self._event(obj, now, offset, path)
        if ev is None:
            self._misplaced(obj, offset)
        if isinstance(ev, LogEvent):
            ev.code, ev.clear = _valid_text(ev.code), _valid_text(ev.clear)
            ev.message = _valid_text(ev.message) or ""
            ev.level = _valid_text(ev.level)
            ev.exception = _valid_text(ev.exception)
        return ev

    def _event(self, obj: dict[str, Any], now: float, offset: int, path: str) -> LogEvent | str | None:
        # Runs once per candidate line: the alias lookups of _first_of are inlined (a
        # function call per field was half of this method's cost); same rules.
        get = obj.get
        extra = get("extra")
        if type(extra) is not dict or not extra:
            extra = None
        code = get(CODE_KEY)
        if type(code) is str:  # the common case, inlined; same rules as _code
            code = code.strip() or None
            if code is not None and (len(code) > MAX_CODE_CHARS or not code.isprintable()) and _unfit(code):
                code = _BAD
        else:
            code = _code(code)
        clear = get(CLEAR_KEY)
        clear = None if clear is None else _code(clear)
        if extra is not None:  # a top-level "" is absent too: then extra's code counts
            if code is None:
                code = _code(extra.get(CODE_KEY))
            if clear is None:
                clear = _code(extra.get(CLEAR_KEY))
        if code is None and clear is None:
            return None  # the callers look for a misplaced key (_misplaced)
        if code is _BAD or clear is _BAD:
            return BAD_CODE
        re_alert = get(RE_ALERT_KEY)
        if re_alert is None and extra is not None:
            re_alert = extra.get(RE_ALERT_KEY)
        if re_alert is not None:
            given, re_alert = re_alert, self._duration(re_alert)
            if re_alert is None:
                self._warn(offset, BAD_RE_ALERT, show_value(given))
        notify = get(NOTIFY_KEY)
        if notify is None and extra is not None:
            notify = extra.get(NOTIFY_KEY)
        if notify is not None:
            given, notify = notify, _flag(notify)
            if notify is None:
                self._warn(offset, BAD_NOTIFICATION, show_value(given))
        # The aliases tried in the order of MESSAGE_KEYS, TIME_KEYS and LEVEL_KEYS,
        # unrolled: ~80 ns less per event than a loop over each tuple.
        if ((message := get("message")) is None and (message := get("msg")) is None
                and (message := get("event")) is None and extra is not None):
            message = _first(extra.get, MESSAGE_KEYS)
        if ((when := get("timestamp")) is None and (when := get("@timestamp")) is None
                and (when := get("time")) is None and (when := get("asctime")) is None
                and (when := get("ts")) is None and extra is not None):
            when = _first(extra.get, TIME_KEYS)
        if (level := get("levelname")) is None and (level := get("level")) is None and extra is not None:
            level = _first(extra.get, LEVEL_KEYS)
        # `in` is cheaper than a get() call when, as on most lines, none is there
        if "exc_info" in obj or "exception" in obj or "err" in obj or "stack_info" in obj:
            exc = _first(get, EXCEPTION_KEYS)
        else:
            exc = None if extra is None else _first(extra.get, EXCEPTION_KEYS)
        # Filled in here rather than by the dataclass __init__: ~130 ns less per event (no
        # second frame, no argument passing). Every field is set, as __init__ would.
        ev = _new(LogEvent)
        ev.code = code  # type: ignore[assignment]
        ev.clear = clear  # type: ignore[assignment]
        ev.message = message if type(message) is str else _message(message)
        ev.time = self._event_time(when, now)
        ev.re_alert = re_alert
        ev.notify = notify
        ev.level = level if type(level) is str else _level(level)
        ev.app = self.app
        ev.path = path
        ev.offset = offset
        ev.exception = None if exc is None else exception_text(exc)
        return ev

    def _misplaced(self, obj: dict[str, Any], offset: int) -> None:
        """A line that gave no code although it holds error_code's bytes: warn when the
        key sits where errord does not read it (a line that only mentions error_code in a
        text, the usual case, costs one look at each top-level value)."""
        place = misplaced_code_path(obj)
        if place is not None:
            self._warn(offset, MISPLACED_CODE, place)

    def _warn(self, offset: int, kind: str, detail: str) -> None:
        """Report what a line could not give: per chunk the first line of each (kind,
        detail), at most MAX_WARNINGS of a kind (a rare path: a short list to scan)."""
        warnings = self._warnings
        same_kind = [w[2] for w in warnings if w[1] == kind]
        if len(same_kind) < MAX_WARNINGS and detail not in same_kind:
            warnings.append((offset, kind, detail))

    # ----------------------------------------------------------------- time

    def _event_time(self, value: object, now: float) -> float:
        kind = type(value)
        ts: float | None
        if kind is str:
            text: str = value  # type: ignore[assignment]
            if 4 < len(text) <= _MAX_TIME_TEXT and text[4] == "-":
                # The common form ("2026-01-14T15:00:00.005Z", "2026-01-14 15:05:51,367")
                # straight to fromisoformat, as _time_text would pass it: its strip is not
                # needed (fromisoformat accepts no surrounding whitespace), nor its number
                # check ("-" at [4]). ~190 ns less per event. What fromisoformat refuses,
                # or cannot be converted, goes to _time_text (same result, just slower).
                try:
                    dt = _fromisoformat(text)
                    if dt.tzinfo is not None:
                        ts = dt.timestamp()
                    else:  # naive: as in _time_text
                        offset = self.tz.utcoffset(dt)
                        ts = (dt - _EPOCH_NAIVE).total_seconds()
                        if offset is not None:
                            ts -= offset.total_seconds()
                except (ValueError, OverflowError, OSError):
                    ts = self._time_text(text)
            else:
                ts = self._time_text(text)
        elif kind is int or kind is float:
            ts = _epoch(value)  # type: ignore[arg-type]
        else:
            ts = None
        # NaN fails both comparisons, so it lands on `now` too
        if ts is None or not 0.0 <= ts <= now + self.future_slack:
            return now
        return ts

    def _time_text(self, text: str) -> float | None:
        text = text.strip()
        if not text or len(text) > _MAX_TIME_TEXT:
            return None
        # "YYYY-…" is by far the common form: skip the number check for it
        if text[4:5] != "-" and _NUMERIC.fullmatch(text):
            return _epoch(float(text))
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            lenient = _iso_lenient(text)
            if lenient is None:
                return None
            dt = lenient
        try:
            if dt.tzinfo is not None:
                return dt.timestamp()
            # naive: wall time in self.tz. Same result as dt.replace(tzinfo=tz).timestamp()
            # (fold=0 for ambiguous and missing local times), at a third of the cost.
            offset = self.tz.utcoffset(dt)
            local = (dt - _EPOCH_NAIVE).total_seconds()
            return local if offset is None else local - offset.total_seconds()
        except (ValueError, OverflowError, OSError):  # year 1 / 9999 at the zone's edge
            return None

    def _duration(self, value: object) -> float | None:
        if type(value) is not str:
            return _duration(value)
        # apps repeat the same few strings; parse_duration tries several regexes
        cached = self._durations.get(value, _MISS)
        if cached is _MISS:
            cached = _duration(value)
            if len(self._durations) >= _CACHE_MAX:
                self._durations.clear()
            self._durations[value] = cached
        return cached  # type: ignore[return-value]


# --------------------------------------------------------------------- helpers


def _needle_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each line containing ``error_code``, in order, each line once;
    ``end`` is the index of its newline (or len(data))."""
    find = data.find
    rfind = data.rfind
    spans: list[tuple[int, int]] = []
    i = find(_NEEDLE)
    while i >= 0:
        end = find(b"\n", i)
        if end < 0:
            end = len(data)
        spans.append((rfind(b"\n", 0, i) + 1, end))
        i = find(_NEEDLE, end)  # a line naming error_code twice is taken once
    return spans


def _escaped_spans(data: bytes) -> list[tuple[int, int]]:
    """Like ``_needle_spans`` for the lines holding an escaped letter of error_code."""
    first = _ESCAPED_KEY.search(data)  # usually None: then one scan, no iterator
    if first is None:
        return []
    find = data.find
    spans: list[tuple[int, int]] = []
    end = -1
    for m in _ESCAPED_KEY.finditer(data, first.start()):
        i = m.start()
        if i < end:
            continue  # same line as the previous hit
        end = find(b"\n", i)
        if end < 0:
            end = len(data)
        spans.append((data.rfind(b"\n", 0, i) + 1, end))
    return spans


def parse_contained(parser: LineParser, data: bytes, offset: int, now: float, path: str) -> ParseResult:
    """``parser.parse_chunk``, contained: the parser never raises by design, but if a bug
    makes it, the chunk is parsed again line by line (``parse_line``, the reference rule)
    and a line that still raises is skipped and counted (``parser_error``) instead of
    stopping the daemon. Without this, such a line would never be committed and would
    stop errord again at every restart. The one place the parser logs: its own bug."""
    try:
        return parser.parse_chunk(data, offset, now, path)
    except Exception:
        logger.exception("line parser failed on %s at offset %d; parsing line by line", path, offset)
    res = ParseResult()
    pieces = data.split(b"\n")
    lines = [piece + b"\n" for piece in pieces[:-1]]
    if pieces[-1]:
        lines.append(pieces[-1])  # a closed file's unterminated last line
    for raw in lines:
        res.lines += 1
        warnings: list[tuple[int, str, str]] = []
        try:
            got = parser.parse_line(raw, now, warnings)
        except Exception:
            got = PARSER_ERROR
        res.warnings += [(offset, kind, detail) for _, kind, detail in warnings]
        if isinstance(got, str):
            _count_skip(res, got, offset)
        elif got is not None:
            got.path, got.offset = path, offset
            res.events.append(got)
        offset += len(raw)
    return res


def has_long_line(data: bytes, max_line: int) -> bool:
    """Whether ``data`` (lines, the last one with or without its newline) holds a line
    longer than ``max_line`` bytes without its newline. A newline within ``max_line + 1``
    bytes of a line's start means every line starting between the two is short enough:
    about len/(max - line length) ``rfind`` calls, none when ``data`` is no longer than
    the limit (the default case). The parser's chunk check and the follower's cut of
    over-long lines both ask this."""
    size = len(data)
    start = 0
    while size - start > max_line:
        nl = data.rfind(b"\n", start, start + max_line + 1)
        if nl < 0:
            return True
        start = nl + 1
    return False


_NUL_RUN = re.compile(rb"\x00+")


def nul_free_parts(data: bytes) -> list[tuple[int, int]]:
    """``(start, end)`` of the pieces of ``data`` between runs of NUL bytes, in order:
    one more piece than there are runs (the first or last may be empty).

    A NUL run is what a preallocated file or a writer that crashed leaves: garbage between
    lines (CONTRACT §7), never part of one. Text before a run on the same line ends there
    (a line of its own, usually broken); the text after it starts the next line. Callers
    look for ``b"\\0"`` first (one memchr per read) and come here only when there is one.
    """
    parts: list[tuple[int, int]] = []
    pos = 0
    for m in _NUL_RUN.finditer(data):
        parts.append((pos, m.start()))
        pos = m.end()
    parts.append((pos, len(data)))
    return parts


def _utf8_ok(data: bytes) -> bool:
    """Whether ``data`` is valid UTF-8. Decodes only the ~4 KiB blocks (cut after a
    newline, so no character is split) that are not pure ASCII: 2-4x faster than one
    ``decode`` of the chunk, even when every line has non-ASCII text."""
    size = len(data)
    find = data.find
    start = 0
    while start < size:
        end = find(b"\n", start + _UTF8_BLOCK)
        end = size if end < 0 else end + 1
        block = data[start:end]
        if not block.isascii():
            try:
                block.decode("utf-8")
            except UnicodeDecodeError:
                return False
        start = end
    return True


def _count_skip(res: ParseResult, reason: str, offset: int) -> None:
    res.skipped += 1
    res.reasons[reason] = res.reasons.get(reason, 0) + 1
    if res.first_skip is None:
        res.first_skip = (offset, reason)


def _first(get: Callable[[str], Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = get(key)
        if value is not None:
            return value
    return None


def _first_of(obj: dict[str, Any], extra: dict[str, Any] | None, keys: tuple[str, ...]) -> Any:
    """The first alias present at the top level, else the first present in ``extra``."""
    value = _first(obj.get, keys)
    if value is None and extra is not None:
        value = _first(extra.get, keys)
    return value


def _unfit(code: str) -> bool:
    """Too long, or not printable once lone surrogates are replaced (as all text is)."""
    return len(code) > MAX_CODE_CHARS or not _SURROGATE.sub("\ufffd", code).isprintable()


def _code(value: object) -> str | _Bad | None:
    """A code value as a string; None when absent (null, "", only spaces); ``_BAD`` when
    it could not appear verbatim in a notice title (CONTRACT §5): over 200 characters, or
    holding a character that is not printable (``str.isprintable``: control characters
    including tab and newline, format characters such as bidi overrides, lone surrogates,
    separators other than the plain space)."""
    kind = type(value)
    if kind is str:
        code = value.strip()  # type: ignore[attr-defined]
        if not code:
            return None
        if _unfit(code):
            return _BAD
        return code  # type: ignore[no-any-return]
    if value is None:
        return None
    if kind is int:
        return str(value)
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            return _BAD  # NaN / Infinity (only json.dumps writes them)
        if value.is_integer() and abs(value) < 2.0**53:  # type: ignore[attr-defined,arg-type]
            return str(int(value))  # type: ignore[call-overload]
        return repr(value)
    return _BAD  # bool, list, dict, NaN, Infinity


_SURROGATE = re.compile("[\ud800-\udfff]")


def _valid_text(text: str | None) -> str | None:
    """``text`` with lone surrogates (from ``\\ud800`` escapes) replaced: SQLite and the
    notify targets take valid UTF-8 only."""
    return _SURROGATE.sub("\ufffd", text) if text else text


def _message(value: object) -> str:
    if value is None:
        return ""
    if type(value) is str:
        return value
    if value is True or value is False or type(value) in (dict, list):
        try:
            return orjson.dumps(value).decode()
        except (TypeError, ValueError):  # nested deeper than orjson.dumps allows
            return "<unprintable message>"
    return str(value)


def _level(value: object) -> str | None:
    if type(value) is str:
        return value
    if type(value) in (int, float):
        return str(value)
    return None


def _flag(value: object) -> bool | None:
    if value is True or value is False:
        return value
    kind = type(value)
    if kind is int or kind is float:
        return True if value == 1 else False if value == 0 else None
    if kind is str:
        return _FLAG_WORDS.get(value.strip().lower())  # type: ignore[attr-defined]
    return None


def _duration(value: object) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except (ValueError, TypeError, ArithmeticError):  # DurationError is a ValueError
        return None


def _iso_lenient(text: str) -> datetime | None:
    """The forms ``fromisoformat`` refuses that loggers still write: ``…z``, ``… UTC``."""
    if text.endswith("z"):
        alt = text[:-1] + "Z"
    else:
        alt = next((text[: -len(s)] + "+00:00" for s in _UTC_SUFFIXES if text.endswith(s)), "")
    if not alt:
        return None
    try:
        return datetime.fromisoformat(alt.rstrip())
    except ValueError:
        return None


def _epoch(value: float) -> float | None:
    try:
        ts = float(value)
    except (OverflowError, ValueError):
        return None
    mag = abs(ts)
    if mag > 1e17:
        return ts / 1e9
    if mag > 1e14:
        return ts / 1e6
    if mag > 1e11:
        return ts / 1e3
    return ts
