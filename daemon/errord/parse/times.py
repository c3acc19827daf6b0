"""Event times written in log lines (CONTRACT §1, and the "Time" rule of §2). Pure.

ISO-8601 via ``datetime.fromisoformat`` (``Z``, offsets, ``T`` or space, any number of
fraction digits truncated to microseconds, python-json-logger's ``2026-01-14
15:05:51,367``), also a lowercase ``z`` and a trailing `` UTC``/`` GMT``; a time without
zone is in the source's zone. A number, or a string that is only a number, is epoch
seconds; above 1e11 milliseconds, above 1e14 microseconds, above 1e17 nanoseconds. The
parser keeps the common form inline (its hot path) and comes here for the rest.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo

import orjson

from errord.parse.values import first_of

__all__ = ["EPOCH_NAIVE", "MAX_TIME_TEXT", "TIME_KEYS", "epoch_seconds", "iso_lenient", "naive_time", "time_text"]

# the aliases of the event time, in the order they are tried (LineParser._event spells them out again)
TIME_KEYS = ("timestamp", "@timestamp", "time", "asctime", "ts")


_NUMERIC = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


EPOCH_NAIVE = datetime(1970, 1, 1)


_UTC_SUFFIXES = (" UTC", " GMT", "UTC", "GMT")


MAX_TIME_TEXT = 64  # longer strings are not times


def iso_lenient(text: str) -> datetime | None:
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


def epoch_seconds(value: float) -> float | None:
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


def time_text(text: str, tz: tzinfo) -> float | None:
    """Epoch seconds of a time written as text (``tz`` for one without a zone), or None."""
    text = text.strip()
    if not text or len(text) > MAX_TIME_TEXT:
        return None
    # "YYYY-…" is by far the common form: skip the number check for it
    if text[4:5] != "-" and _NUMERIC.fullmatch(text):
        return epoch_seconds(float(text))
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        lenient = iso_lenient(text)
        if lenient is None:
            return None
        dt = lenient
    try:
        if dt.tzinfo is not None:
            return dt.timestamp()
        # naive: wall time in tz. Same result as dt.replace(tzinfo=tz).timestamp()
        # (fold=0 for ambiguous and missing local times), at a third of the cost.
        offset = tz.utcoffset(dt)
        local = (dt - EPOCH_NAIVE).total_seconds()
        return local if offset is None else local - offset.total_seconds()
    except (ValueError, OverflowError, OSError):  # year 1 / 9999 at the zone's edge
        return None


def naive_time(line: bytes, tz: tzinfo) -> tuple[str, float] | None:
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
    when = first_of(obj, extra if type(extra) is dict else None, TIME_KEYS)
    if type(when) is not str or not 4 < len(when.strip()) <= MAX_TIME_TEXT:
        return None
    text = when.strip()
    if text[4:5] != "-":  # epoch seconds as text, or not a time: no zone to miss
        return None
    try:
        naive = datetime.fromisoformat(text).tzinfo is None
    except ValueError:
        return None  # "…z", "… UTC" (iso_lenient) carry a zone
    ts = time_text(text, tz) if naive else None
    return None if ts is None else (text, ts)
