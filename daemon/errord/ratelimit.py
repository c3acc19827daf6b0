"""The one rate limit for repeated log messages: at most one per key per interval, or once.

Why: a fault that lasts (a journal that cannot be written, a file that cannot be read, a
stream of lines with the same unusable field) would otherwise log the same line every
retry, batch or chunk, and a full disk fills faster with it. A caller logs only when
``allow(key)`` says so and says in that line for how long the next ones are muted;
``forget(key)`` when the fault is over, so a new one is told at once. With ``every``
None a key is allowed once (until forgotten). Every rate-limited warning in errord goes
through this class (the journal, the notify workers, the tailer, the parser's warnings).
Thread-safe (the notify workers share one).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

__all__ = ["RateLimit"]


class RateLimit:
    """Allows one event per key every ``every`` seconds (``clock`` seconds); ``every``
    None: once per key. Past ``max_keys`` keys the expired ones are dropped, and when
    none has expired, all of them: a flood of keys (paths, targets) is forgotten rather
    than let grow memory without bound."""

    def __init__(
        self, every: float | None, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000
    ) -> None:
        self.every = every
        self._clock = clock
        self._max_keys = max_keys
        self._last: dict[Hashable, float] = {}
        self._lock = threading.Lock()

    def allow(self, key: Hashable) -> bool:
        """True when an event for ``key`` may be logged now (and starts its interval)."""
        every = self.every
        now = 0.0 if every is None else self._clock()  # "once" needs no clock (the router is pure)
        with self._lock:
            last = self._last.get(key)
            if last is not None and (every is None or now - last < every):
                return False
            if len(self._last) >= self._max_keys:
                kept = {} if every is None else {k: t for k, t in self._last.items() if now - t < every}
                self._last = kept if len(kept) < self._max_keys else {}
            self._last[key] = now
            return True

    def forget(self, key: Hashable) -> None:
        """The fault of ``key`` is over: its next event is allowed at once."""
        with self._lock:
            self._last.pop(key, None)

    def __len__(self) -> int:
        """How many keys are remembered now."""
        return len(self._last)
