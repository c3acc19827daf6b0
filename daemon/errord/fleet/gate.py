"""The fleet client at the edge of a batch (CONTRACT §13): the I/O half of fleet mode.

``Batch._commit`` hands it the batch's rendered notices just before the journal commit;
it asks the claim store once per notice (a failure opens or joins, a re-alert is a
compare-and-set by the lease holder, a resolve leaves and resolves when none is left)
and gives the answers to the pure ``policy.fleet.FleetStage``, which drops or annotates
the notices. The first call MongoDB does not answer (each bounded by
``FleetConfig.wait``: ``[mongodb] timeout`` capped at 5 s) opens the gate for the rest of
the batch and until the next ``tick``: the batch waits once, never once per notice, and
the notices go out as the member's own (fail open). Those are remembered (``alone``): at
rejoin they are merged into the fleet incident without a notice, and their resolve is
the member's own.

``tick`` (from the daemon's loop, once a second, lines or not) renews the member's
leases every lease/3 and takes over fleet incidents whose holder went silent; with
``silences`` (``fleet.silences``) it writes the silences made or ended here at once and
reads the fleet's on the same cadence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from errord.fleet.claims import FleetClaims, FleetDecision, fleet_key
from errord.model import Incident, Notice, NoticeType
from errord.policy.base import Context, Flow
from errord.policy.fleet import FleetStage

if TYPE_CHECKING:
    from errord.fleet.silences import FleetSilences

__all__ = ["FleetGate"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class FleetGate:
    """One member's fleet client; ``interval(n)`` is the re-alert interval of a code's n-th
    fleet re-alert (``re_alert_backoff`` counts the fleet's re-alerts: the hook)."""

    claims: FleetClaims
    interval: Callable[[str, int], float]
    stage: FleetStage = field(default_factory=FleetStage)
    down: bool = False
    alone: dict[str, Incident] = field(default_factory=dict)  # key -> incident alerted on its own
    silences: FleetSilences | None = None  # the fleet's silences (set by the daemon, with its journal)
    _announce: list[str] = field(default_factory=list)
    _renewed: float = 0.0

    def key_of(self, inc: Incident) -> str:
        """The fleet incident's key: the code, or (app, code) with scope = "app"."""
        return fleet_key(self.claims.scope, inc.code, inc.app)

    def _ask(self, notice: Notice, inc: Incident, now: float) -> FleetDecision | None:
        key = self.key_of(inc)
        c = self.claims
        if notice.type is NoticeType.FAILURE:
            d = c.open(key, inc.code, inc.app, inc.start_time, now)
            if d is not None and d.send:
                self._announce.append(key)
            return d
        if notice.type is NoticeType.WARNING:
            return c.re_alert(key, notice.event_time, now, lambda n: self.interval(inc.code, n))
        return c.clear(key, now)

    def gate(self, notices: Sequence[Notice], incidents: Sequence[Incident], now: float) -> list[Notice]:
        """The batch's notices as the fleet has them sent (by this member or not)."""
        if not notices:
            return list(notices)
        by_id = {inc.incident_id: inc for inc in incidents}
        decisions: dict[tuple[str, NoticeType], FleetDecision] = {}
        for notice in notices:
            inc = by_id.get(notice.incident_id)
            if inc is None or self.down:
                continue
            key = self.key_of(inc)
            if key in self.alone:  # sent on its own: resolved on its own too
                if notice.type is NoticeType.SUCCESS:
                    del self.alone[key]
                    self.claims.clear(key, now)  # leave the fleet's (merged) incident; our resolve is ours
                continue
            d = self._ask(notice, inc, now)
            if d is None:
                self.down = True
                continue
            decisions[(notice.incident_id, notice.type)] = d
        for notice in notices:
            inc = by_id.get(notice.incident_id)
            sent_alone = inc is not None and (notice.incident_id, notice.type) not in decisions
            if sent_alone and inc is not None and notice.type is NoticeType.FAILURE:
                self.alone[self.key_of(inc)] = inc
        self.stage.decide(decisions)
        out = self.stage.apply(Flow([], list(notices)), _NO_CTX).notices
        return out

    def committed(self, ts: float) -> None:
        """The journal holds the batch: the failures this member sends are now announced."""
        for key in self._announce:
            self.claims.announce(key, ts)
        self._announce.clear()

    def rolled_back(self) -> None:
        """The batch was refused: its claims stay unannounced (they count as leases)."""
        self._announce.clear()

    def tick(self, now: float, open_incidents: Callable[[], Sequence[Incident]]) -> None:
        """Renew leases every lease/3; after an outage, merge what was sent alone. A silence
        made or ended here is written at once (while MongoDB answers), the fleet's read
        on the lease cadence."""
        shared = self.silences
        if now - self._renewed < self.claims.lease / 3:
            if shared is not None and not self.down and shared.due():
                shared.sync(now, open_incidents)
            return
        self._renewed = now
        if self.claims.renew(now) is None:
            self.down = True
            return
        if self.down:
            self.down = False
            for inc in open_incidents():
                self.claims.merge(self.key_of(inc), inc.code, inc.app, inc.start_time, now)
            log.warning("fleet: MongoDB answers again: open incidents merged into the fleet's")
        if shared is not None:
            shared.sync(now, open_incidents)


_NO_CTX = Context(now=0.0, server_id="", node_name="", tags_for=lambda code: ())
