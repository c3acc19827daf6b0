"""The exception a log line carries, as one short line for the notice body (CONTRACT §1).

On-call reads the exception's type and message first, so that is what is kept, not the
frames: python-json-logger's ``exc_info`` and structlog's ``exception`` (a traceback's
text: its last line, ``ValueError: bad``), structlog's ``dict_tracebacks`` (a list of
``{"exc_type", "exc_value", …}``, the raised exception first), pino's ``err``
(``{"type", "message", "stack"}``; a JavaScript or Java stack's first line), and a Python
``stack_info`` (no exception: where it was logged, ``stack: File "app.py", line 3, in f``).
Pure; the result is capped at ``MAX_EXCEPTION`` characters, whitespace runs made single
spaces. Cleaning control characters is left to the notice text, as for every log text.
"""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = ["EXCEPTION_KEYS", "MAX_EXCEPTION", "exception_text"]

# the keys tried, in order, at the top level and then under "extra"
EXCEPTION_KEYS: Final = ("exc_info", "exception", "err", "stack_info")
MAX_EXCEPTION: Final = 300

_PY_TRACEBACK = "Traceback (most recent call last):"
_PY_STACK = "Stack (most recent call last):"
_PY_GROUP = "Exception Group Traceback (most recent call last):"
_GROUP_LINE = re.compile(r"\s*\| (\S.*)")  # not "|   File …" (a frame)
_TYPE_KEYS = ("exc_type", "type", "name")
_MESSAGE_KEYS = ("exc_value", "message", "msg")
_STACK_KEYS = ("stack", "traceback", "stacktrace")
_MAX_SCAN = 64 * 1024  # a traceback's tail is all we read of a longer text


def exception_text(value: Any, key: str = "exc_info") -> str | None:
    """The one-line summary of an exception value found under ``key``, or None when the
    value holds nothing usable (an empty string, a number, ``true``)."""
    if type(value) is str:
        text = _from_text(value)
    elif type(value) is dict:
        text = _from_dict(value)
    elif type(value) is list and value:
        first = value[0]  # dict_tracebacks: the exception that was logged, then its causes
        if type(first) is dict:
            text = _from_dict(first)
        elif all(type(v) is str for v in value):  # traceback.format_exception's list of lines
            text = _from_text("".join(value))
        else:
            text = None
    else:
        text = None
    if not text:
        return None
    text = " ".join(text.split())
    if len(text) > MAX_EXCEPTION:
        text = text[: MAX_EXCEPTION - 1] + "…"
    return text or None


def _from_dict(d: dict[str, Any]) -> str | None:
    kind = next((v for k in _TYPE_KEYS if type(v := d.get(k)) is str and v.strip()), None)
    message = next((v for k in _MESSAGE_KEYS if type(v := d.get(k)) is str and v.strip()), None)
    if kind and message:
        return f"{kind}: {message}"
    return kind or message or _stack_of(d)


def _stack_of(d: dict[str, Any]) -> str | None:
    for k in _STACK_KEYS:
        v = d.get(k)
        if type(v) is str and v.strip():
            return _from_text(v)
    return None


def _from_text(text: str) -> str | None:
    head = text[:_MAX_SCAN]
    if _PY_GROUP in head:
        # "  | ExceptionGroup: eg (2 sub-exceptions)" after the group's own frames
        lines = [ln for ln in head.splitlines() if ln.strip()]
        return next((m.group(1) for ln in lines if (m := _GROUP_LINE.match(ln))), lines[-1])
    if _PY_TRACEBACK in head:
        # After the last frame (indented "File …" and source lines) come the exception's
        # type and message, on one line or, for a message with newlines, several: at the
        # end, so only the end of a long traceback is looked at.
        lines = [ln for ln in text[-_MAX_SCAN:].splitlines() if ln.strip()]
        last_frame = max((i for i, ln in enumerate(lines) if ln[:1].isspace()), default=-1)
        return " ".join(lines[last_frame + 1 :] or lines[-1:])
    if head.lstrip().startswith(_PY_STACK):  # the last frame is where it was logged
        frames = [ln.strip() for ln in text[-_MAX_SCAN:].splitlines() if ln.lstrip().startswith("File ")]
        return f"stack: {frames[-1]}" if frames else None
    lines = [ln for ln in head.splitlines() if ln.strip()]
    if not lines:
        return None
    return lines[0]  # "Error: boom" then "    at …" (JavaScript), Java's "x.Y: msg" then "\tat …"
