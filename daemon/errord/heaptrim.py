"""Freed heap handed back to the kernel once the daemon goes idle (issue 13's memory).

``serve`` sets glibc's ``M_TRIM_THRESHOLD`` to 64 MiB, so that reading a backlog does
not give each freed 1 MiB read back and fault fresh pages in for the next (measured:
~25% of ingest CPU). The price: what a burst of reading freed stays with the process
for good — the rows of a start that restored its open incidents, the batches that
opened 100,000 new ones (~9 MB), a backlog's buffers (up to 64 MiB). Once nothing has
been read for ``IDLE`` seconds, SQLite's page cache of the daemon's connection is let
go (``release``: up to ~2 MB once a start read every open incident; it fills again with
the pages used next) and ``malloc_trim(0)`` returns the free heap (under a millisecond to
a few; once per idle spell, not on a timer); the next read faults its pages in again,
once. Without glibc (musl, macOS) there is no ``malloc_trim``: nothing is done.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Callable

__all__ = ["IDLE", "HeapTrim", "libc_trim"]

logger = logging.getLogger(__name__)

IDLE = 5.0  # seconds without a line read before the freed heap is given back


def libc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none."""
    try:
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return lambda: fn(0)


class HeapTrim:
    """Calls ``trim`` once the ``activity`` given to ``tick`` (a count that grows while the
    daemon reads: ``Batch.lines_read``) has not changed for ``idle`` seconds; again only
    after it changed. The first idle spell after the start counts (the start restored
    the open incidents). ``trim`` None: the C library's (``libc_trim``; none: a no-op).
    ``release`` (set once the journal is open): called just before, to free caches."""

    def __init__(
        self,
        idle: float = IDLE,
        *,
        trim: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle = idle
        self._trim = trim if trim is not None else libc_trim()
        self._clock = clock
        self._activity: int | None = None
        self._since = clock()
        self._due = self._trim is not None
        self.release: Callable[[], None] | None = None
        self.trims = 0

    def tick(self, activity: int) -> bool:
        """Note ``activity``; True when this call gave the freed heap back."""
        now = self._clock()
        if activity != self._activity:
            self._activity = activity
            self._since = now
            self._due = self._trim is not None
            return False
        if not self._due or now - self._since < self.idle:
            return False
        self._due = False
        assert self._trim is not None
        try:
            if self.release is not None:
                self.release()
            self._trim()
        except Exception as exc:  # never fatal: memory, not correctness
            logger.debug("malloc_trim failed: %s", exc)
            return False
        self.trims += 1
        return True
