"""The storm limit and ``group_wait`` of one notify target (CONTRACT §9), as pure decisions.

Where it runs, and why there: the limit is a budget of *sends* ("N sends in any sliding
WINDOW; a digest counts as one send"), so it is decided where sends happen, at the head
of the target's durable queue — the notice outbox — by the target's notify worker
(``sinks/notify.py``), with the worker's clock; ``replay`` runs the same :func:`decide`
with the event time (``policy/limitsim.py``). A notice the budget holds is simply a
delivery row left in the outbox, so it survives kill -9 with nothing more to write, counts
in ``pending_notices``, and its target is already in the incident's ``notified`` (the
router put it there when the notice was made): a digested notice counts as sent for the
resolve rule of §2 with no special case. What the outbox cannot tell — the sends in the
window and whether the target is holding — is :class:`LimitState`, one row per target
(``store/limits.py``), written in the same transaction as the marks of the send.

The decision, each time the worker looks at a non-empty queue (``made``: the creation
times of its queued notices, oldest first):

- holding (``held_since`` set): nothing goes out until a send is free; then everything
  queued goes out as ONE digest and holding ends. So held notices are never sent one by
  one later, and the digest leaves at most WINDOW after the first of them was held.
- not holding, budget spent: start holding (everything queued now is held).
- not holding, budget free, ``group_wait`` > 0: wait until the head is ``group_wait``
  old, then send the head with every notice made within ``group_wait`` of it as one
  message (a lone one as it is).
- otherwise: send the head as it is.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from errord.durations import parse_duration

__all__ = ["NO_LIMITS", "Action", "LimitRule", "LimitState", "Send", "decide", "parse_budget"]


def parse_budget(value: str) -> tuple[int, float]:
    """``"off"`` → (0, 0.0); ``"N/WINDOW"`` → (N, seconds); ValueError naming what is wrong
    (N an integer ≥ 1, WINDOW a duration > 0: ``"20/1m"``, ``"5/10s"``)."""
    text = value.strip()
    if text.lower() == "off":
        return 0, 0.0
    count, sep, window = text.partition("/")
    if not sep:
        raise ValueError(f"{value!r} is not 'off' or 'N/WINDOW' (e.g. '20/1m')")
    try:
        n = int(count.strip())
    except ValueError:
        raise ValueError(f"{value!r}: N must be an integer >= 1 (e.g. '20/1m')") from None
    if n < 1:
        raise ValueError(f"{value!r}: N must be an integer >= 1 (e.g. '20/1m')")
    try:
        seconds = parse_duration(window.strip())
    except ValueError as exc:
        raise ValueError(f"{value!r}: WINDOW: {exc}") from None
    if seconds <= 0:
        raise ValueError(f"{value!r}: WINDOW must be longer than 0 (e.g. '20/1m')")
    return n, seconds


@dataclass(frozen=True, slots=True)
class LimitRule:
    """``[limits]`` as it applies to each notify target: ``budget`` sends per ``window``
    seconds (0: no storm limit), ``group_wait`` seconds (0: no grouping)."""

    budget: int = 0
    window: float = 0.0
    group_wait: float = 0.0

    @property
    def active(self) -> bool:
        """Whether this rule ever changes what is sent (off: the worker's plain path)."""
        return self.budget > 0 or self.group_wait > 0

    def free_at(self, sends: Sequence[float], now: float) -> float:
        """The first time at or after ``now`` when a send fits the budget."""
        if self.budget <= 0 or len(sends) < self.budget:
            return now
        # the budget-th most recent send leaves the window WINDOW after it was made
        return max(now, sends[-self.budget] + self.window)


NO_LIMITS = LimitRule()  # [limits] left out: no budget, no grouping


@dataclass(slots=True)
class LimitState:
    """What a target's limit remembers (durable: ``store/limits.py``): the times of its
    most recent sends (at most ``budget`` kept: older ones can no longer fill the window),
    since when it has been holding (None: not holding), and its digest tallies."""

    sends: list[float] = field(default_factory=list)
    held_since: float | None = None
    digests: int = 0  # digests sent
    digested: int = 0  # notices they stood for

    def sent(self, rule: LimitRule, at: float, *, digest: int = 0) -> None:
        """One send at ``at`` (a digest of ``digest`` notices ends holding)."""
        self.sends.append(at)
        keep = max(rule.budget, 1)
        if len(self.sends) > keep:
            del self.sends[:-keep]
        if digest:
            self.held_since = None
            self.digests += 1
            self.digested += digest


class Send(Enum):
    """How the notices an :class:`Action` sends go out."""

    SINGLE = "single"  # the head, as it is
    GROUP = "group"  # the head and those made within group_wait of it, as one message
    DIGEST = "digest"  # everything held, as one digest


class Action(NamedTuple):
    """What the worker does now: send the first ``sends`` queued notices as ``how``; or
    (``sends`` 0) start holding when ``hold``, and look again at ``until`` (None: at once)."""

    sends: int
    how: Send | None
    hold: bool
    until: float | None


def decide(rule: LimitRule, state: LimitState, made: Sequence[float], now: float) -> Action:
    """The next step for a target whose queued notices were made at ``made`` (oldest
    first, not empty), at ``now``; see the module doc."""
    free = rule.free_at(state.sends, now)
    if state.held_since is not None:
        if free <= now:
            return Action(len(made), Send.DIGEST, False, None)
        return Action(0, None, False, free)
    if free > now:
        return Action(0, None, True, free)
    if rule.group_wait > 0:
        due = made[0] + rule.group_wait
        if now < due:
            return Action(0, None, False, due)
        n = bisect.bisect_right(made, due)
        return Action(n, Send.GROUP if n > 1 else Send.SINGLE, False, None)
    return Action(1, Send.SINGLE, False, None)
