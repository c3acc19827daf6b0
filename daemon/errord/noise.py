"""The noise settings of one code (CONTRACT §9), as the engine asks for them.

Plain data without pydantic (the daemon's start-up path imports this, validation does
not run there); ``noisesettings`` validates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["NOISE_DEFAULTS", "Noise", "noise_of"]


@dataclass(frozen=True, slots=True)
class Noise:
    """The §9 settings of one code, resolved (``[codes.C]``, else ``[defaults]``)."""

    re_alert_backoff: float = 1.0  # >1: each re-alert waits this many times longer
    re_alert_max: float = 86400.0  # cap of the growing interval (seconds)
    remind_every: float | None = None  # None: off
    auto_resolve_after: float | None = None  # None: off
    flap_threshold: int = 0  # 0: off
    flap_window: float = 1800.0

    def interval(self, base: float, re_alerts: int) -> float:
        """The wait before the next re-alert of an incident that has had ``re_alerts``:
        ``min(base × backoff^re_alerts, re_alert_max)`` with a backoff above 1."""
        if self.re_alert_backoff <= 1.0 or base <= 0:
            return base
        try:
            grown = base * self.re_alert_backoff**re_alerts
        except OverflowError:
            return self.re_alert_max
        return min(grown, self.re_alert_max)


NOISE_DEFAULTS = Noise()


def noise_of(defaults: Noise, overrides: dict[str, Any]) -> Noise:
    """``defaults`` with a code's overrides applied."""
    if not overrides:
        return defaults
    fields = {name: getattr(defaults, name) for name in Noise.__dataclass_fields__}
    fields.update(overrides)
    return Noise(**fields)
