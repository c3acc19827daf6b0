"""``[fleet]`` as the daemon holds it (CONTRACT §13)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MONGO_WAIT_CAP", "FleetConfig", "fleet_key"]

MONGO_WAIT_CAP = 5.0  # seconds: a member waits at most this for MongoDB's answer, then fails open


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """Hosts with the same ``name`` share their alerts; ``lease`` in seconds."""

    name: str
    lease: float = 120.0

    def wait(self, mongo_timeout: float) -> float:
        """How long a member waits for MongoDB on whether it sends: ``[mongodb] timeout``, capped."""
        return min(mongo_timeout, MONGO_WAIT_CAP)


def fleet_key(scope: str, code: str, app: str | None) -> str:
    """The fleet incident's key: the code, or (app, code) with scope = "app"."""
    return f"{app}\x00{code}" if scope == "app" and app else code
