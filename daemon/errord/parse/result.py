"""What parsing a chunk gives (``ParseResult``), the skip reasons, and the parser's
containment (``parse_contained``): a parser bug costs the one line it raised on, never
the daemon.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Final, Protocol

from errord.model import LogEvent

__all__ = [
    "BAD_CODE",
    "INVALID_UTF8",
    "MAX_WARNINGS",
    "NOT_JSON",
    "NOT_OBJECT",
    "PARSER_ERROR",
    "SKIP_REASONS",
    "TOO_LONG",
    "ParseResult",
    "count_skip",
    "parse_contained",
]

logger = logging.getLogger(__name__)

# Skip reasons: stable strings, used as metric labels.
INVALID_UTF8: Final = "invalid_utf8"
NOT_JSON: Final = "not_json"
NOT_OBJECT: Final = "not_object"
TOO_LONG: Final = "too_long"
BAD_CODE: Final = "bad_code"
PARSER_ERROR: Final = "parser_error"  # a line the parser raised on (a bug, contained: parse_contained)
SKIP_REASONS: Final = (INVALID_UTF8, NOT_JSON, NOT_OBJECT, TOO_LONG, BAD_CODE)

MAX_WARNINGS = 4  # distinct warnings of one kind kept per chunk (the daemon shows one a minute)


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


class _Parser(Protocol):
    def parse_chunk(self, data: bytes, offset: int, now: float, path: str = "") -> ParseResult: ...
    def parse_line(
        self, line: bytes, now: float, warnings: list[tuple[int, str, str]] | None = None
    ) -> LogEvent | str | None: ...


def parse_contained(
    parser: _Parser, data: bytes, offset: int, now: float, path: str, layout: str = "", name: str = ""
) -> ParseResult:
    """``parser.parse_chunk``, contained: the parser never raises by design, but if a bug
    makes it, the chunk is parsed again line by line (``parse_line``, the reference rule)
    and a line that still raises is skipped and counted (``parser_error``) instead of
    stopping the daemon. Without this, such a line would never be committed and would
    stop errord again at every restart. The one place the parser logs: its own bug."""
    try:
        if layout or name:  # an "auto" file's decided format, app_from's name: envelope parsers only
            return parser.parse_chunk(data, offset, now, path, layout, name)  # type: ignore[call-arg]
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
            count_skip(res, got, offset)
        elif got is not None:
            got.path, got.offset = path, offset
            res.events.append(got)
        offset += len(raw)
    return res


def count_skip(res: ParseResult, reason: str, offset: int) -> None:
    res.skipped += 1
    res.reasons[reason] = res.reasons.get(reason, 0) + 1
    if res.first_skip is None:
        res.first_skip = (offset, reason)
