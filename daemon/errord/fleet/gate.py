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
leases every lease/3 and takes over fleet incidents whose holder went silent: one whose
opener died before recording its failure notice is owed that notice, which ``send_owed``
makes and commits (no line needs to arrive for it); with
``silences`` (``fleet.silences``) it writes the silences made or ended here at once and
reads the fleet's on the same cadence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from errord.engine import Engine, incident_key
from errord.errors import JournalError
from errord.fleet.claims import FleetClaims, FleetDecision, fleet_key
from errord.model import Incident, Notice, NoticeType
from errord.policy.base import Context, Flow
from errord.policy.fleet import FleetStage, fleet_line
from errord.policy.pipeline import NoticePolicy
from errord.store.journal import Journal

if TYPE_CHECKING:
    from errord.fleet.silences import FleetSilences

__all__ = ["FleetGate", "Owed"]

log = logging.getLogger(__name__)

Owed = list[tuple[Incident, FleetDecision]]  # this member's incidents owed the failure, with the fleet's answer


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
    _owed: dict[str, FleetDecision] = field(default_factory=dict)  # taken over, not committed yet

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

    def tick(self, now: float, open_incidents: Callable[[], Sequence[Incident]]) -> Owed:
        """Renew leases every lease/3; after an outage, merge what was sent alone; take
        over the never-announced fleet incidents whose opener's claim lapsed (returned:
        the caller makes their failures with ``send_owed``). A silence made or ended here
        is written at once (while MongoDB answers), the fleet's read on the lease cadence."""
        shared = self.silences
        if now - self._renewed < self.claims.lease / 3:
            if shared is not None and not self.down and shared.due() and not shared.sync(now, open_incidents):
                self.down = True  # no answer: the rest waits for the next renewal
            return []
        self._renewed = now
        if self.claims.renew(now) is None:
            self.down = True
            return []
        if self.down:
            merged = [self.claims.merge(self.key_of(i), i.code, i.app, i.start_time, now) for i in open_incidents()]
            if any(m is None for m in merged):
                return []  # gone again: merged (again: it is idempotent) at the next renewal
            self.down = False
            log.warning("fleet: MongoDB answers again: open incidents merged into the fleet's")
        # Any call MongoDB does not answer opens the gate until the next renewal: a dead
        # MongoDB costs the loop one wait (the capped timeout) per lease/3, not one per call
        owed = self._take_over(now, open_incidents)
        if shared is not None and not self.down and not shared.sync(now, open_incidents):
            self.down = True
        return owed

    def _take_over(self, now: float, open_incidents: Callable[[], Sequence[Incident]]) -> Owed:
        keys = self.claims.unannounced(now)
        if keys is None:
            self.down = True
            return []
        if not keys and not self._owed:
            return []
        mine = {self.key_of(inc): inc for inc in open_incidents()}
        for key in keys:
            if key in mine and key not in self.alone and key not in self._owed:
                d = self.claims.take_over(key, now)
                if d is None:
                    self.down = True
                    break
                if d.send:
                    log.warning("fleet: %s was claimed but never announced by a member now silent: sending it", key)
                    self._owed[key] = d
        for key in [k for k in self._owed if k not in mine]:  # resolved here meanwhile
            del self._owed[key]
        return [(mine[k], d) for k, d in self._owed.items()]

    def send_owed(self, owed: Owed, engine: Engine, policy: NoticePolicy, journal: Journal, ctx: Context) -> int:
        """Make and commit the failures ``tick`` found owed, in one transaction of their own
        (the caller commits its open batch first); how many notices. A refused commit
        keeps them owed: tried again at the next renewal."""
        if not owed:
            return 0
        now = ctx.now
        engine.begin(now)
        notices: list[Notice] = []
        keys: list[str] = []
        for inc, decision in owed:
            t = engine.announce(incident_key(engine.scope, inc.app, inc.code), now)
            keys.append(self.key_of(inc))
            if t is None or not t.notify:
                continue  # muted here, or its code notifies nobody: recorded, not sent
            line = fleet_line(NoticeType.FAILURE, decision)
            notices += [replace(n, body=f"{n.body}\n{line}" if line else n.body) for n in policy.apply([t], ctx)]
        try:
            per_silence: dict[str, int] = {}
            for (_, silence_id), n in engine.muted().items():
                if silence_id is not None:
                    per_silence[silence_id] = per_silence.get(silence_id, 0) + n
            journal.commit(engine.pending(), [], notices, now, silenced=per_silence)
        except JournalError as exc:
            engine.rollback()
            log.warning("fleet: the failure owed for %s not written (%s): tried again", ", ".join(keys), exc)
            return 0
        engine.commit()
        for key in keys:
            self._owed.pop(key, None)
            self.claims.announce(key, now)
        return len(notices)


_NO_CTX = Context(now=0.0, server_id="", node_name="", tags_for=lambda code: ())
