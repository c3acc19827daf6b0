"""The one exponential backoff: how long to wait before the next try after failures.

Every retry loop in errord waits by it: a notify target that refused a notice, the
MongoDB writer, a journal that cannot be written, a notify helper that keeps dying. The
jitter only lengthens a wait (up to ``jitter`` of it), so tries of several targets that
failed together drift apart and a cap or a ``Retry-After`` is never undercut by it.
"""

from __future__ import annotations

import random

__all__ = ["backoff"]


def backoff(retry: int, first: float, cap: float, *, jitter: float = 0.0) -> float:
    """Seconds before try ``retry + 1`` (``retry`` 0: the first retry waits ``first``):
    ``first * 2**retry``, made up to ``jitter`` (a fraction) longer at random, at most
    ``cap``."""
    delay = first * 2.0 ** min(max(retry, 0), 32)  # 2**32 s is past any cap: no overflow
    if jitter:
        delay *= random.uniform(1.0, 1.0 + jitter)
    return min(cap, delay)
