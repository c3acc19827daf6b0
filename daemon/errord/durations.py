"""Durations in every form CONTRACT §1 accepts, turned into seconds.

Accepted: a number of seconds (int or float, or a string holding one); unit strings
``"500ms"``, ``"90s"``, ``"15m"``, ``"1h30m"``, ``"2d"``, ``"1w"`` (parts may be separated
by spaces); ISO-8601 ``"PT15M"``, ``"P1DT2H"``, ``"P2W"``; Python's ``str(timedelta)``
``"0:15:00"``, ``"1 day, 2:00:00"``, ``"3 days, 0:00:00.250000"``; its repr as structlog
writes it, ``"datetime.timedelta(seconds=900)"`` (also ``days=``, ``microseconds=``,
``timedelta(0)``); and ``datetime.timedelta`` objects. Negative, infinite and NaN values
are refused.
"""

from __future__ import annotations

import math
import re
import reprlib
from datetime import timedelta

from errord.errors import DurationError

__all__ = ["format_duration", "parse_duration"]

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_UNIT_PART = re.compile(rf"({_NUMBER})\s*(ms|w|d|h|m|s)", re.IGNORECASE)
_UNITS_WHOLE = re.compile(rf"^\s*(?:{_NUMBER}\s*(?:ms|w|d|h|m|s)\s*)+$", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}

_ISO = re.compile(
    rf"^P(?:(?P<w>{_NUMBER})W)?(?:(?P<d>{_NUMBER})D)?"
    rf"(?:T(?:(?P<h>{_NUMBER})H)?(?:(?P<m>{_NUMBER})M)?(?:(?P<s>{_NUMBER})S)?)?$",
    re.IGNORECASE,
)
_CLOCK = re.compile(r"^(?:(?P<days>\d+) days?, )?(?P<h>\d+):(?P<m>[0-5]\d):(?P<s>[0-5]\d(?:\.\d{1,6})?)$")
_REPR = re.compile(r"^(?:datetime\.)?timedelta\((?P<args>[^()]*)\)$")
_REPR_ARG = re.compile(rf"^\s*(days|seconds|microseconds)\s*=\s*(-?{_NUMBER})\s*$")
_REPR_UNITS = {"days": 86400.0, "seconds": 1.0, "microseconds": 1e-6}
_SHOW = reprlib.Repr()
_SHOW.maxlevel, _SHOW.maxother = 3, 60


def parse_duration(value: object) -> float:
    """Return ``value`` as a number of seconds (>= 0), or raise ``DurationError``."""
    if isinstance(value, bool):
        raise DurationError(f"not a duration: {value!r}")
    if isinstance(value, timedelta):
        return _checked(value.total_seconds(), value)
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond float range (a log line can hold one)
            raise DurationError("duration over 100 years") from None
        return _checked(seconds, value)
    if not isinstance(value, str):
        # reprlib: a value from a log line may be nested 1000 deep, where repr() raises
        raise DurationError(f"not a duration: {_SHOW.repr(value)}")
    text = value.strip()
    if not text:
        raise DurationError("empty duration")
    if len(text) > 100:
        raise DurationError(f"duration too long: {text[:40]!r}...")
    parsed = _parse_text(text)
    if parsed is None:
        raise DurationError(
            f"not a duration: {value!r} (use seconds, '90s', '15m', '1h30m', '2d', "
            "'PT15M', '0:15:00' or 'datetime.timedelta(seconds=900)')"
        )
    return _checked(parsed, value)


def format_duration(seconds: float) -> str:
    """Short human form: ``"45s"``, ``"15m"``, ``"1h 30m"``, ``"2d 3h"``."""
    total = round(max(seconds, 0.0))
    if total < 60:
        return f"{total}s"
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m")]
    if not days and not hours:
        parts.append((secs, "s"))
    shown = [f"{n}{u}" for n, u in parts if n]
    return " ".join(shown[:2])


def _parse_text(text: str) -> float | None:
    try:
        return float(text)  # "900", "1.5"; "inf"/"nan" are caught by _checked
    except ValueError:
        pass
    if _UNITS_WHOLE.match(text):
        return sum(float(n) * _UNIT_SECONDS[u.lower()] for n, u in _UNIT_PART.findall(text))
    iso = _ISO.match(text)
    if iso and any(iso.group(g) for g in "wdhms") and not text.upper().endswith("T"):
        w, d, h, m, s = (float(iso.group(g) or 0) for g in "wdhms")
        return w * 604800 + d * 86400 + h * 3600 + m * 60 + s
    clock = _CLOCK.match(text)
    if clock:
        days = int(clock.group("days") or 0)
        return days * 86400 + int(clock.group("h")) * 3600 + int(clock.group("m")) * 60 + float(clock.group("s"))
    rep = _REPR.match(text)
    if rep:
        return _parse_repr(rep.group("args"))
    return None


def _parse_repr(args: str) -> float | None:
    args = args.strip()
    if args in ("", "0"):
        return 0.0
    total = 0.0
    seen: set[str] = set()
    for part in args.split(","):
        m = _REPR_ARG.match(part)
        if not m or m.group(1) in seen:
            return None
        seen.add(m.group(1))
        total += float(m.group(2)) * _REPR_UNITS[m.group(1)]
    return total


def _checked(seconds: float, original: object) -> float:
    if math.isnan(seconds) or math.isinf(seconds):
        raise DurationError(f"not a finite duration: {original!r}")
    if seconds < 0:
        raise DurationError(f"negative duration: {original!r}")
    if seconds > 100 * 365 * 86400:
        raise DurationError(f"duration over 100 years: {original!r}")
    return seconds
