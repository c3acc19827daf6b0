"""Validation of ``[limits]`` (CONTRACT §9): ``notices = "N/WINDOW"`` and ``group_wait``,
per notify target. Kept out of ``settings`` so that stays small; the words of a bad
``notices`` come from ``policy.limit.parse_budget``, the code that uses the value.

``[limits]`` is shared: ``max_open_incidents`` (the engine's cap) lives in the same table.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from errord.config import Limits
from errord.durations import parse_duration
from errord.engine_noise import MAX_OPEN_INCIDENTS
from errord.policy.limit import parse_budget

__all__ = ["LimitsSettings"]


class LimitsSettings(BaseModel):
    """``[limits]``: the storm budget and the grouping wait of every notify target."""

    model_config = ConfigDict(extra="forbid")

    notices: str = "off"  # "off" or "N/WINDOW"
    group_wait: Annotated[float, BeforeValidator(parse_duration), Field(ge=0)] = 0.0
    max_open_incidents: int = Field(default=MAX_OPEN_INCIDENTS, ge=1, strict=True)

    @field_validator("notices", mode="before")
    @classmethod
    def _budget(cls, value: object) -> str:
        if not isinstance(value, str):
            raise ValueError("must be 'off' or 'N/WINDOW' as a string (e.g. '20/1m')")
        parse_budget(value)
        return value

    def to_run(self) -> Limits:
        """This table as the daemon holds it."""
        return Limits(notices=self.notices, group_wait=self.group_wait, max_open_incidents=self.max_open_incidents)
