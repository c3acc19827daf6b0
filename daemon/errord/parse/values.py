"""Field values of a log line as errord uses them (CONTRACT §1): codes, flags, messages,
levels, durations. Pure; the parser calls these once per candidate line.

* ``error_code`` / ``error_code_clear`` (``code_value``): strings are stripped, and an
  empty string counts as absent (like ``null``). An int becomes ``str(int)``; an integral
  float ``str(int(x))`` (``500.0`` -> ``"500"``), another float ``repr`` (``"1.5"``).
  ``true``/``false``, arrays and objects are ``BAD`` (the whole line is a ``bad_code``
  skip), as is a code that could not stand verbatim in a notice title.
* ``notification`` (``flag_value``): a boolean, ``0``/``1``, or (any case, surrounding
  spaces ignored) ``true``/``false``/``yes``/``no``/``on``/``off``/``1``/``0``; anything
  else is None ("not given").
* ``message`` (``message_text``): a string is kept whole; arrays and objects become their
  JSON text, ``true``/``false`` their JSON words, numbers ``str()``; none -> "".
* ``level`` (``level_text``): a string as written, a number as ``str()``, else None.
* ``re_alert_time`` (``duration_value``): ``durations.parse_duration``, None when unusable.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Final

import orjson

from errord.durations import parse_duration
from errord.model import MAX_CODE_CHARS

__all__ = [
    "BAD",
    "code_value",
    "duration_value",
    "first_of",
    "first_present",
    "flag_value",
    "level_text",
    "message_text",
    "unfit_code",
    "valid_text",
]


_FLAG_WORDS: Final = {
    "true": True,
    "yes": True,
    "on": True,
    "1": True,
    "false": False,
    "no": False,
    "off": False,
    "0": False,
}


class _Bad:
    """Marker: a code field of an unusable type."""


BAD: Final = _Bad()


def first_present(get: Callable[[str], Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = get(key)
        if value is not None:
            return value
    return None


def first_of(obj: dict[str, Any], extra: dict[str, Any] | None, keys: tuple[str, ...]) -> Any:
    """The first alias present at the top level, else the first present in ``extra``."""
    value = first_present(obj.get, keys)
    if value is None and extra is not None:
        value = first_present(extra.get, keys)
    return value


def unfit_code(code: str) -> bool:
    """Too long, or not printable once lone surrogates are replaced (as all text is)."""
    return len(code) > MAX_CODE_CHARS or not _SURROGATE.sub("\ufffd", code).isprintable()


def code_value(value: object) -> str | _Bad | None:
    """A code value as a string; None when absent (null, "", only spaces); ``BAD`` when
    it could not appear verbatim in a notice title (CONTRACT §5): over 200 characters, or
    holding a character that is not printable (``str.isprintable``: control characters
    including tab and newline, format characters such as bidi overrides, lone surrogates,
    separators other than the plain space)."""
    kind = type(value)
    if kind is str:
        code = value.strip()  # type: ignore[attr-defined]
        if not code:
            return None
        if unfit_code(code):
            return BAD
        return code  # type: ignore[no-any-return]
    if value is None:
        return None
    if kind is int:
        return str(value)
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            return BAD  # NaN / Infinity (only json.dumps writes them)
        if value.is_integer() and abs(value) < 2.0**53:  # type: ignore[attr-defined,arg-type]
            return str(int(value))  # type: ignore[call-overload]
        return repr(value)
    return BAD  # bool, list, dict, NaN, Infinity


_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(text: str | None) -> str | None:
    """``text`` with lone surrogates (from ``\\ud800`` escapes) replaced: SQLite and the
    notify targets take valid UTF-8 only."""
    return _SURROGATE.sub("\ufffd", text) if text else text


def message_text(value: object) -> str:
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


def level_text(value: object) -> str | None:
    if type(value) is str:
        return value
    if type(value) in (int, float):
        return str(value)
    return None


def flag_value(value: object) -> bool | None:
    if value is True or value is False:
        return value
    kind = type(value)
    if kind is int or kind is float:
        return True if value == 1 else False if value == 0 else None
    if kind is str:
        return _FLAG_WORDS.get(value.strip().lower())  # type: ignore[attr-defined]
    return None


def duration_value(value: object) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except (ValueError, TypeError, ArithmeticError):  # DurationError is a ValueError
        return None
