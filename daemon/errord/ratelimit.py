"""One small rate limit for repeated log messages: at most one per key per interval.

Why: a fault that lasts (a journal that cannot be written, a file that cannot be read)
would otherwise log the same line every retry, and a full disk fills faster with it.
A caller logs only when ``allow(key)`` says so and says in that line for how long the
next ones are muted; ``forget(key)`` when the fault is over, so a new one is told at once.
Thread-safe (the notify workers share one).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

__all__ = ["RateLimit"]


class RateLimit:
    """Allows one event per key every ``every`` seconds (``clock`` seconds)."""

    def __init__(self, every: float, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 10_000) -> None:
        self.every = every
        self._clock = clock
        self._max_keys = max_keys  # keys churn (paths, targets): never grow without bound
        self._last: dict[Hashable, float] = {}
        self._lock = threading.Lock()

    def allow(self, key: Hashable) -> bool:
        """True when an event for ``key`` may be logged now (and starts its interval)."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.every:
                return False
            if len(self._last) >= self._max_keys:
                self._last = {k: t for k, t in self._last.items() if now - t < self.every}
            self._last[key] = now
            return True

    def forget(self, key: Hashable) -> None:
        """The fault of ``key`` is over: its next event is allowed at once."""
        with self._lock:
            self._last.pop(key, None)
