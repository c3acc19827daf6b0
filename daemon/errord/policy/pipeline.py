"""The notice policy: the ordered, pure stages between "the engine said notify" and "the
journal queues it" — who is told of a line's transitions, and when.

The engine decides *what happened* (new, re-alert, clear, …); this decides who hears of
it. Shaped like Alertmanager's notify pipeline (``notify/notify.go``: mute stages, then
dedup, then the per-receiver stages): a :class:`NoticePolicy` runs one line's
:class:`~errord.policy.base.Flow` through its stages in order, each a small object with
``apply(flow, ctx) -> flow`` (``policy.base``). The batch runs it for every line that may
notify, inside the batch's transaction: what it decides is committed with the line, or
rolled back with it. ``replay`` runs the same chain (:func:`standard_policy`), so a
what-if answer is the daemon's answer.

The chain, in order — today only ``route`` exists; the others plug in where named:

1. **mute** is not a stage of this chain but an oracle the engine asks
   (``policy.mute.MuteOracle``): whether a line *may notify* changes what the engine
   does (an incident nobody heard of announces itself on its first line that may
   notify; a muted notice does not count in ``alerts_sent``), so the engine needs the
   answer before a transition leaves it. A muted failure or warning arrives here with
   ``notify = False`` (and ``muted`` = its reason), counted on its incident
   (``notices_muted``); resolves pass, as CONTRACT §8 says (flapping, §9, will be the one
   mute that holds them back).
2. **route** (:class:`~errord.policy.route.Router`): failures and warnings by tags, a
   resolve to exactly the targets that were alerted (§2); renders the notices
   (``notices.render``) and gives each its ``targets``. The routes table is the notify
   sink's (``NoticeSink.routes``).
3. **limit** (after ``route``, on notices, per target): the storm budget (§9 ``[limits]
   notices = "N/WINDOW"``: held notices go out as one digest) and ``group_wait``. It is
   the one stateful stage per target; its state (budgets, held notices) is durable in
   the journal beside the outbox and comes back as data after a restart.

Delivery (retry, backoff, Retry-After) is not a stage here: it is the sinks', after the
journal committed the notices.
"""

from __future__ import annotations

from collections.abc import Sequence

from errord.model import Kind, Notice, Transition
from errord.policy.base import Context, Flow, Stage
from errord.policy.route import Router

__all__ = ["NoticePolicy", "standard_policy"]


class NoticePolicy:
    """An ordered chain of stages; ``apply`` runs one line's transitions through it."""

    __slots__ = ("_stages",)

    def __init__(self, stages: Sequence[Stage]) -> None:
        self._stages = tuple(stages)

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The stages, in the order they run."""
        return self._stages

    def apply(self, transitions: Sequence[Transition], ctx: Context) -> list[Notice]:
        """The notices one line's ``transitions`` make, each with its ``targets``."""
        first = transitions[0] if transitions else None
        if (
            len(transitions) > 1
            and first is not None
            and first.incident is not None
            and first.incident.resolved_by == "auto"
            and first.kind is Kind.CLEAR
        ):
            # A line after the quiet period: the auto-resolve is not the line's doing, so it
            # is its own notice, as live reading would have sent it (CONTRACT §9)
            return self.apply(transitions[:1], ctx) + self.apply(transitions[1:], ctx)
        flow = Flow(transitions)
        for stage in self._stages:
            flow = stage.apply(flow, ctx)
            if not flow.transitions and not flow.notices:
                break  # nothing left for a later stage to act on
        return flow.notices


def standard_policy(router: Router) -> NoticePolicy:
    """The chain the daemon and ``replay`` run: today routing only (see the module doc
    for where muting and limits plug in)."""
    return NoticePolicy([router])
