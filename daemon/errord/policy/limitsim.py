"""One notify target's storm limit and ``group_wait`` in event time, for ``replay``
(CONTRACT §9): the notify worker's loop (``sinks/notify.py``) with the same
``policy.limit.decide`` and ``policy.digest`` text, but the clock is the event time of the
lines and every send succeeds at once. Pure.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Iterator
from typing import NamedTuple

from errord.model import Notice
from errord.policy.digest import digest, group
from errord.policy.limit import LimitRule, LimitState, Send, decide

__all__ = ["Sent", "TargetSim"]


class Sent(NamedTuple):
    """One message the target got: ``notice`` (a digest or group is made here; its
    ``event_time`` is when it went out), how, and the notices it stood for."""

    notice: Notice
    how: Send
    members: tuple[Notice, ...]


class TargetSim:
    """The queue of one target, advanced by event time; see the module doc."""

    def __init__(self, rule: LimitRule, host: str) -> None:
        self.rule = rule
        self.host = host
        self.state = LimitState()
        self._queue: deque[tuple[float, Notice]] = deque()
        self._clock = -math.inf

    def offer(self, notice: Notice, at: float) -> Iterator[Sent]:
        """What goes out up to ``at``, the notice made at ``at`` queued on the way."""
        at = max(at, self._clock)  # event time only moves forward in a queue
        yield from self.advance(at)
        self._queue.append((at, notice))
        yield from self.advance(at)

    def flush(self) -> Iterator[Sent]:
        """Everything still queued, as the worker would send it (held: one final digest)."""
        yield from self.advance(math.inf)

    def advance(self, now: float) -> Iterator[Sent]:
        """What goes out from the last time looked at up to ``now`` (event time only moves
        forward: an older line is taken as made at the newest time seen)."""
        clock = self._clock if self._queue else now
        while self._queue:
            act = decide(self.rule, self.state, [m for m, _ in self._queue], clock)
            if act.sends:
                taken = [self._queue.popleft()[1] for _ in range(act.sends)]
                if act.how is Send.DIGEST:
                    out = dataclasses.replace(digest(taken, self.host), event_time=clock)
                elif act.how is Send.GROUP:
                    out = dataclasses.replace(group(taken, self.host), event_time=clock)
                else:
                    out = taken[0]
                self.state.sent(self.rule, clock, digest=len(taken) if act.how is Send.DIGEST else 0)
                yield Sent(out, act.how or Send.SINGLE, tuple(taken))
                continue
            if act.hold:
                self.state.held_since = clock
            if act.until is None or act.until > now:
                break
            clock = act.until
        if now != math.inf:
            self._clock = max(self._clock, now)
