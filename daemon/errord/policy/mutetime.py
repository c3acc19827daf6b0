"""Mute times (CONTRACT §8 ``[[mute_times]]``): recurring windows, their parsing and maths. Pure.

A window is weekdays (``mon`` … ``sun``, ranges such as ``mon-fri`` or ``fri-mon`` that
wrap the week) and times of day (``02:00-03:30``; start inclusive, end exclusive,
``24:00`` allowed as an end) in an IANA time zone. A time range whose end is not after its
start wraps midnight and belongs to the day it starts: ``fri`` with ``22:00-06:00``
covers Friday 22:00 to Saturday 06:00. Judged by the event time of the line that makes
the notice (in the daemon as in ``replay``). The parse functions raise ``ValueError``
with the words a config problem line shows (``mutesettings`` validates with them).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from errord.policy.silence import globs_matcher

__all__ = ["DAY_NAMES", "MuteWindow", "parse_times", "parse_weekdays"]

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TIME = re.compile(r"(\d{2}):(\d{2})")
DAY = 86400


def _day(text: str) -> int:
    word = text.strip().lower()
    if word in DAY_NAMES:
        return DAY_NAMES.index(word)
    if word in _FULL:
        return _FULL.index(word)
    raise ValueError(f"unknown weekday {text!r} (use mon, tue, wed, thu, fri, sat, sun, or a range such as mon-fri)")


def parse_weekdays(items: Sequence[str]) -> frozenset[int]:
    """Weekday numbers (0 = Monday) of ``["mon-fri", "sun"]``; empty list: every day."""
    if not items:
        return frozenset(range(7))
    days: set[int] = set()
    for item in items:
        first, dash, last = item.partition("-")
        start = _day(first)
        end = _day(last) if dash else start
        d = start
        while True:  # a range may wrap the week: fri-mon
            days.add(d)
            if d == end:
                break
            d = (d + 1) % 7
    return frozenset(days)


def _clock(text: str, *, end: bool) -> int:
    m = _TIME.fullmatch(text.strip())
    if not m:
        raise ValueError(f"bad time {text!r} (expected HH:MM, such as 02:00)")
    h, mi = int(m.group(1)), int(m.group(2))
    if end and (h, mi) == (24, 0):
        return DAY
    if h > 23 or mi > 59:
        raise ValueError(f"bad time {text!r} (hours 00-23, minutes 00-59; 24:00 only as an end)")
    return h * 3600 + mi * 60


def parse_times(items: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """``(start, end)`` seconds of the day of ``["02:00-03:30", "22:00-06:00"]``; an end
    not after its start wraps midnight. Empty list: all day."""
    if not items:
        return ((0, DAY),)
    out = []
    for item in items:
        first, dash, last = item.partition("-")
        if not dash:
            raise ValueError(f"bad time range {item!r} (expected HH:MM-HH:MM, such as 22:00-06:00)")
        start, stop = _clock(first, end=False), _clock(last, end=True)
        if start == stop:
            raise ValueError(f"empty time range {item!r} (start and end are the same)")
        out.append((start, stop))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class MuteWindow:
    """One ``[[mute_times]]`` entry, parsed: ``covers(code, app, t)``."""

    name: str
    codes: tuple[str, ...]
    apps: tuple[str, ...]
    days: frozenset[int]
    times: tuple[tuple[int, int], ...]
    tz: ZoneInfo
    # the last minute asked about and its answer: windows are whole minutes and zone
    # offsets whole quarter hours, so the answer is the same through a minute (a muted
    # flood asks once per line; a datetime per line cost ~2.5 µs)
    _last: list[float] = field(default_factory=lambda: [-1.0, 0.0], compare=False, repr=False)

    @classmethod
    def parse(
        cls,
        name: str,
        codes: Sequence[str],
        apps: Sequence[str],
        weekdays: Sequence[str],
        times: Sequence[str],
        timezone: str,
    ) -> MuteWindow:
        """From the config's values (ValueError on a bad weekday, time or range)."""
        return cls(
            name=name,
            codes=tuple(codes) or ("*",),
            apps=tuple(apps) or ("*",),
            days=parse_weekdays(weekdays),
            times=parse_times(times),
            tz=ZoneInfo(timezone),
        )

    def matches(self, code: str, app: str | None) -> bool:
        """Whether it is about this code and app (its time aside)."""
        return globs_matcher(self.codes)(code) and globs_matcher(self.apps)(app or "")

    def at(self, t: float) -> bool:
        """Whether the epoch time ``t`` falls in the window."""
        minute = t // 60
        last = self._last
        if last[0] == minute:
            return bool(last[1])
        answer = self._at(t)
        last[0], last[1] = minute, float(answer)
        return answer

    def _at(self, t: float) -> bool:
        local = datetime.fromtimestamp(t, self.tz)
        day = local.weekday()
        sec = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        yesterday = (day - 1) % 7
        for start, stop in self.times:
            if start < stop:
                if day in self.days and start <= sec < stop:
                    return True
            # wraps midnight: the evening part belongs to today, the morning part to yesterday
            elif (day in self.days and sec >= start) or (yesterday in self.days and sec < stop):
                return True
        return False

    def covers(self, code: str, app: str | None, t: float) -> bool:
        """Whether a notice of ``code`` from ``app`` made by a line of event time ``t`` is muted."""
        return self.matches(code, app) and self.at(t)
