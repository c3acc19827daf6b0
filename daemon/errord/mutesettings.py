"""Validation of the control settings (CONTRACT §8): ``[[mute_times]]`` entries and the
glob lists of ``[codes.C] inhibited_by``. Kept out of ``settings`` so that stays small;
the words of each problem come from ``policy.mutetime`` / ``policy.silence``, the code
that uses the values, so the config and the daemon cannot disagree on what is valid.
"""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from errord.config import MuteTime
from errord.policy.mutetime import parse_times, parse_weekdays
from errord.policy.silence import check_pattern

__all__ = ["Globs", "MuteTimeSettings", "Zone", "check_globs", "known_zone"]


def known_zone(value: str) -> str:
    """``value`` when it is an IANA time zone name; ValueError otherwise."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'UTC' or 'Europe/Berlin')") from None
    return value


Zone = Annotated[str, AfterValidator(known_zone)]


def check_globs(values: list[str]) -> list[str]:
    """Code or app globs: each a usable pattern (not empty, no whitespace or control characters)."""
    for value in values:
        try:
            check_pattern(value)
        except ValueError as exc:
            raise ValueError(f"pattern {value!r} {exc}") from None
    return values


Globs = Annotated[list[str], AfterValidator(check_globs)]


def _weekdays(values: list[str]) -> list[str]:
    parse_weekdays(values)
    return values


def _times(values: list[str]) -> list[str]:
    parse_times(values)
    return values


class MuteTimeSettings(BaseModel):
    """One ``[[mute_times]]`` entry: a recurring window in which notices are muted."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    codes: Globs = Field(default_factory=lambda: ["*"])
    apps: Globs = Field(default_factory=lambda: ["*"])
    weekdays: Annotated[list[str], AfterValidator(_weekdays)] = Field(default_factory=list)
    times: Annotated[list[str], AfterValidator(_times)] = Field(default_factory=list)
    timezone: Zone = "UTC"

    def to_run(self) -> MuteTime:
        """This entry as the daemon holds it."""
        return MuteTime(
            name=self.name,
            codes=tuple(self.codes),
            apps=tuple(self.apps),
            weekdays=tuple(self.weekdays),
            times=tuple(self.times),
            timezone=self.timezone,
        )
