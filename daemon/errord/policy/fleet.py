"""The fleet stage (CONTRACT §13): after ``route``, keeps the notices this member is to send
and says what the fleet adds to them; drops those another member sends.

Pure, like every stage: it asks nothing. The batch gets the answers from the fleet client
(``fleet.claims.FleetClaims``) at the edge of the batch — after the engine has fed the
batch's lines, before the commit, one bounded wait (``FleetConfig.wait``: ``[mongodb]
timeout`` capped at 5 s) — and hands them in with :meth:`FleetStage.decide`. An answer
missing for a notice (MongoDB did not answer, or this member refused to join) keeps the
notice as it is: failing open, the member sends on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from errord.fleet.claims import FleetDecision
from errord.model import Notice, NoticeType
from errord.policy.base import Context, Flow

__all__ = ["FleetStage", "fleet_line"]

DecisionKey = tuple[str, NoticeType]  # (incident_id, type of the notice)


def fleet_line(kind: NoticeType, decision: FleetDecision) -> str:
    """What a notice says of the fleet: a re-alert names how many hosts fail and which,
    the resolve how many had it."""
    hosts = ", ".join(decision.hosts)
    if kind is NoticeType.SUCCESS:
        return f"resolved on all {decision.total} hosts"
    if kind is NoticeType.WARNING:
        return f"failing on {len(decision.hosts)} hosts: {hosts}"
    return f"failing on {len(decision.hosts)} host(s): {hosts}" if decision.hosts else ""


class FleetStage:
    """Drops the notices the fleet gives another member; adds the fleet's line to the rest."""

    name = "fleet"

    def __init__(self) -> None:
        self._decisions: Mapping[DecisionKey, FleetDecision] = {}

    def decide(self, decisions: Mapping[DecisionKey, FleetDecision]) -> None:
        """The fleet's answers for this batch (set before the batch's lines run the policy)."""
        self._decisions = dict(decisions)

    def apply(self, flow: Flow, ctx: Context) -> Flow:
        kept: list[Notice] = []
        for notice in flow.notices:
            decision = self._decisions.get((notice.incident_id, notice.type))
            if decision is None:  # no answer: fail open
                kept.append(notice)
                continue
            if not decision.send:
                continue  # another member speaks (or already spoke) for the fleet
            line = fleet_line(notice.type, decision)
            kept.append(replace(notice, body=f"{notice.body}\n{line}" if line else notice.body))
        flow.notices = kept
        return flow
