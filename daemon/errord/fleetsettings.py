"""Validation of ``[fleet]`` (CONTRACT §13). Kept out of ``settings`` so that stays small."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from errord.durations import parse_duration
from errord.fleet.runconfig import FleetConfig

__all__ = ["MIN_LEASE", "FleetSettings", "needs_mongodb"]

MIN_LEASE = 3.0  # seconds: renewed every lease/3, so below this the renewals are the daemon's main work


class FleetSettings(BaseModel):
    """``[fleet]``: the fleet this host belongs to."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[^\x00-\x1f\s]+$")
    lease: Annotated[float, BeforeValidator(parse_duration), Field(ge=MIN_LEASE)] = 120.0

    def to_run(self) -> FleetConfig:
        """This table as the daemon holds it."""
        return FleetConfig(name=self.name, lease=self.lease)


def needs_mongodb(fleet: FleetSettings | None, has_mongodb: bool) -> FleetSettings | None:
    """``[fleet]`` shares incidents through MongoDB: refuse it without ``[mongodb]``."""
    if fleet is not None and not has_mongodb:
        raise ValueError("needs [mongodb] (the fleet's incidents are kept there)")
    return fleet
