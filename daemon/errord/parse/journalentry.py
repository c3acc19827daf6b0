"""systemd journal entries (CONTRACT §12) -> ``LogEvent``: what ``journalctl --output=json``
prints, one entry per line, read by a journal source's :class:`JournalParser`. Pure: no
I/O, no clock.

An entry is read as one line:

* ``MESSAGE`` holding a JSON object is the app's line, read by the §1 rules (and the
  source's ``fields`` map, if any), as a line of a file would be;
* otherwise the entry's own fields ``ERROR_CODE``, ``ERROR_CODE_CLEAR``,
  ``RE_ALERT_TIME``, ``NOTIFICATION`` (what Python's ``systemd.journal.JournalHandler``
  writes for ``extra={"error_code": ...}``) are used, with ``MESSAGE`` as the message,
  ``PRIORITY`` as the level and ``EXCEPTION_TEXT`` as the exception.

Whenever the entry gives none, ``__REALTIME_TIMESTAMP`` is the event time and
``_SYSTEMD_UNIT`` the app (the source's ``app`` wins). ``journalctl`` prints a field that
is not valid UTF-8 text (or holds control characters) as an array of byte values, and a
field present several times as an array of its values (the first is read).

The cheap check: an entry whose raw line holds neither ``error_code`` (or an escape of
one of its letters) nor ``ERROR_CODE`` nor a byte-array ``MESSAGE`` cannot give an event
and is not decoded (most entries of a busy journal).
"""

from __future__ import annotations

import re
from typing import Any, Final, NamedTuple

import orjson

from errord.model import LogEvent
from errord.parse.chunks import ESCAPED_KEY, NEEDLE
from errord.parse.fieldmap import flatten, split_paths
from errord.parse.lines import CLEAR_KEY, CODE_KEY, NOTIFY_KEY, RE_ALERT_KEY, LineParser
from errord.parse.result import NOT_JSON, TOO_LONG, ParseResult, count_skip

__all__ = ["PRIORITIES", "Entry", "JournalParser", "field_bytes", "read_entry"]

PRIORITIES: Final = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_FIELD_NEEDLE: Final = b"ERROR_CODE"
_BYTES_MESSAGE = re.compile(rb'"MESSAGE"\s*:\s*\[')
_JOURNAL_KEYS: Final = (
    ("ERROR_CODE", CODE_KEY),
    ("ERROR_CODE_CLEAR", CLEAR_KEY),
    ("RE_ALERT_TIME", RE_ALERT_KEY),
    ("NOTIFICATION", NOTIFY_KEY),
)
_LWS = b" \t\r\n"


class Entry(NamedTuple):
    """One journal entry as errord reads it: ``body`` the app's JSON line (MESSAGE held a
    JSON object), else ``fields`` the §1 keys taken from the entry's own fields (None:
    the entry names no code); ``when`` its ``__REALTIME_TIMESTAMP`` in epoch seconds,
    ``unit`` its ``_SYSTEMD_UNIT``."""

    body: bytes | None
    fields: dict[str, Any] | None
    when: float | None
    unit: str | None


def field_bytes(value: object) -> bytes | None:
    """A journalctl JSON field value as bytes: text, an array of byte values, or (a field
    given several times) an array of such values, of which the first counts."""
    if type(value) is str:
        return value.encode("utf-8", "surrogatepass")
    if type(value) is list and value:
        first = value[0]
        if type(first) is int:
            try:
                return bytes(value)
            except (ValueError, TypeError):
                return None
        return field_bytes(first)
    return None


def _text(value: object) -> str | None:
    raw = field_bytes(value)
    return None if raw is None else raw.decode("utf-8", "replace")


def _when(value: object) -> float | None:
    if type(value) is str and value.isdigit():
        return int(value) / 1e6
    return None


def read_entry(entry: dict[str, Any]) -> Entry:
    """What errord reads of one decoded entry (see the module doc)."""
    when = _when(entry.get("__REALTIME_TIMESTAMP"))
    unit = _text(entry.get("_SYSTEMD_UNIT"))
    message = field_bytes(entry.get("MESSAGE"))
    has_fields = "ERROR_CODE" in entry or "ERROR_CODE_CLEAR" in entry
    if message is not None and message.lstrip(_LWS)[:1] == b"{":
        if not has_fields:
            return Entry(message.strip(_LWS), None, when, unit)  # the app's line, broken or not
        try:
            obj = orjson.loads(message)
        except ValueError:
            obj = None
        if type(obj) is dict:
            return Entry(message.strip(_LWS), None, when, unit)
    if not has_fields:
        return Entry(None, None, when, unit)
    fields: dict[str, Any] = {}
    for name, key in _JOURNAL_KEYS:
        text = _text(entry.get(name))
        if text is not None:
            fields[key] = text
    if message is not None:
        fields["message"] = message.decode("utf-8", "replace")
    priority = _text(entry.get("PRIORITY"))
    if priority is not None and priority.isdigit() and int(priority) < len(PRIORITIES):
        fields["level"] = PRIORITIES[int(priority)]
    exc = _text(entry.get("EXCEPTION_TEXT"))
    if exc:
        fields["exception"] = exc
    return Entry(None, fields, when, unit)


class JournalParser:
    """A journal source's parser: each line of a chunk is one entry as ``journalctl
    --output=json`` prints it; ``offset`` counts entries (the source's entry number of
    the chunk's first), not bytes. Same interface as :class:`LineParser`."""

    __slots__ = ("_needles", "inner", "max_entry_bytes", "paths")

    def __init__(self, inner: LineParser, fields: dict[str, str] | None = None) -> None:
        self.inner = inner
        self.paths = split_paths(fields) if fields else None
        # a mapped code's key name: its bytes sit in MESSAGE (as an escaped JSON string)
        self._needles = (
            tuple({p[-1].encode() for n, p in self.paths.items() if n in ("code", "clear")}) if self.paths else ()
        )

    @property
    def max_line_bytes(self) -> int:
        return self.inner.max_line_bytes

    def parse_chunk(self, data: bytes, offset: int, now: float, path: str = "") -> ParseResult:
        """Parse a chunk of entries, one per line. Never raises."""
        res = ParseResult()
        self.inner._warnings = res.warnings
        pos, size, n = 0, len(data), offset
        find = data.find
        while pos < size:
            end = find(b"\n", pos)
            if end < 0:
                end = size
            if end > pos:
                res.lines += 1
                r = self._entry(data[pos:end], now, n, path)
                if r is not None:
                    if type(r) is str:
                        count_skip(res, r, n)
                    else:
                        res.events.append(r)  # type: ignore[arg-type]
                n += 1
            pos = end + 1
        return res

    def parse_line(self, line: bytes, now: float, warnings: list[tuple[int, str, str]] | None = None) -> Any:
        """One entry on its own (the contained fallback)."""
        self.inner._warnings = warnings if warnings is not None else []
        return self._entry(line.rstrip(b"\n"), now, 0, "")

    def _entry(self, raw: bytes, now: float, offset: int, path: str) -> LogEvent | str | None:
        if not (
            NEEDLE in raw
            or _FIELD_NEEDLE in raw
            or (self._needles and any(n in raw for n in self._needles))
            or _BYTES_MESSAGE.search(raw) is not None
            or ESCAPED_KEY.search(raw) is not None
        ):
            return None
        try:
            entry = orjson.loads(raw)
        except ValueError:
            return NOT_JSON  # journalctl prints JSON: a line it cut, or not journalctl's
        if type(entry) is not dict:
            return NOT_JSON
        got = read_entry(entry)
        inner = self.inner
        if got.body is not None:
            if len(got.body) > inner.max_line_bytes:
                return TOO_LONG
            inner.fallback = got.when
            try:
                r = (
                    inner._line(got.body, now, offset, path)
                    if self.paths is None
                    else self._mapped(got.body, now, offset, path)
                )
            finally:
                inner.fallback = None
        elif got.fields is not None:
            inner.fallback = got.when
            try:
                r = inner._event(got.fields, now, offset, path)
            finally:
                inner.fallback = None
        else:
            return None
        if type(r) is LogEvent and r.app is None:
            r.app = got.unit
        return r

    def _mapped(self, body: bytes, now: float, offset: int, path: str) -> LogEvent | str | None:
        assert self.paths is not None
        try:
            obj = orjson.loads(body)
        except ValueError:
            return self.inner._line(body, now, offset, path)  # the §1 reason (not JSON, bad UTF-8)
        if type(obj) is not dict:
            return self.inner._line(body, now, offset, path)
        return self.inner._event(flatten(obj, self.paths), now, offset, path)
