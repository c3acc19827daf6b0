"""Validation of the per-code noise settings of CONTRACT §9 (growing re-alerts,
reminders, auto-resolve, flapping), under ``[defaults]`` and each ``[codes.C]``.

The types only: ``settings`` declares the fields with them. ``"off"`` is stored as 0
(never a valid duration there); ``noise.Noise`` is what the engine asks per code.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator

from errord.durations import parse_duration

__all__ = ["Backoff", "FlapThreshold", "OffOrDuration", "PositiveDuration"]


def _off_or_duration(value: object) -> float:
    """``"off"`` → 0; else a duration that must be above 0 (CONTRACT §9)."""
    if isinstance(value, str) and value.strip().lower() == "off":
        return 0.0
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError('must be "off" or a duration above 0')
    return seconds


def _positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be a duration above 0")
    return seconds


def _flap_threshold(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (value != 0 and value < 2):
        raise ValueError("must be 0 (off) or an integer of at least 2")
    return value


def _backoff(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 1.0:
        raise ValueError("must be a number of at least 1")
    if value == float("inf"):
        raise ValueError("must be a finite number of at least 1")
    return float(value)


OffOrDuration = Annotated[float, BeforeValidator(_off_or_duration)]
PositiveDuration = Annotated[float, BeforeValidator(_positive_duration)]
FlapThreshold = Annotated[int, BeforeValidator(_flap_threshold)]
Backoff = Annotated[float, BeforeValidator(_backoff)]
