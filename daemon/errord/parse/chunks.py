"""Byte-level scans of a chunk of lines, at C speed (``bytes.find``, regexes): where the
candidate lines are, whether a chunk is clean, over-long lines, NUL runs. Pure.
"""

from __future__ import annotations

import re

__all__ = [
    "BAD_BOUNDARY",
    "ESCAPED_KEY",
    "NEEDLE",
    "escaped_spans",
    "has_long_line",
    "needle_spans",
    "nul_free_parts",
    "utf8_ok",
]

NEEDLE = b"error_code"
ESCAPED_KEY = re.compile(rb"\\u00(?:6[345fF]|72|5[fF])")
# A newline not followed by "{" or not preceded by "}" / "}\r": a line that is not "{...}".
# One regex pass (literal prefix "\n") is ~1.5x faster than bytes.count(b"}\n{").


BAD_BOUNDARY = re.compile(rb"\n(?:(?!\{)|(?<!\}\n)(?<!\}\r\n))")
_UTF8_BLOCK = 4096


def needle_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each line containing ``error_code``, in order, each line once;
    ``end`` is the index of its newline (or len(data))."""
    find = data.find
    rfind = data.rfind
    spans: list[tuple[int, int]] = []
    i = find(NEEDLE)
    while i >= 0:
        end = find(b"\n", i)
        if end < 0:
            end = len(data)
        spans.append((rfind(b"\n", 0, i) + 1, end))
        i = find(NEEDLE, end)  # a line naming error_code twice is taken once
    return spans


def escaped_spans(data: bytes) -> list[tuple[int, int]]:
    """Like ``needle_spans`` for the lines holding an escaped letter of error_code."""
    first = ESCAPED_KEY.search(data)  # usually None: then one scan, no iterator
    if first is None:
        return []
    find = data.find
    spans: list[tuple[int, int]] = []
    end = -1
    for m in ESCAPED_KEY.finditer(data, first.start()):
        i = m.start()
        if i < end:
            continue  # same line as the previous hit
        end = find(b"\n", i)
        if end < 0:
            end = len(data)
        spans.append((data.rfind(b"\n", 0, i) + 1, end))
    return spans


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


def utf8_ok(data: bytes) -> bool:
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
