"""Joining the fleet at start (CONTRACT §13): the claim store, the scope check, the
duplicate server_id warning; a member that cannot join alerts alone."""

from __future__ import annotations

import logging
import os
import time
import uuid

from errord.config import RunConfig
from errord.fleet.claims import FleetClaims, ScopeMismatch
from errord.fleet.gate import FleetGate
from errord.fleet.silences import COLLECTION, FleetSilences
from errord.fleet.view import fleet_collection
from errord.policy.mute import MuteOracle
from errord.store.journal import Journal

__all__ = ["share_silences", "start_fleet"]

log = logging.getLogger(__name__)


def start_fleet(settings: RunConfig) -> FleetGate | None:
    """The member's fleet client, or None (no [fleet], or a scope the fleet does not run)."""
    if settings.fleet is None or settings.mongodb is None:
        return None
    coll = fleet_collection(settings)
    claims = FleetClaims(
        coll, fleet=settings.fleet.name, server_id=settings.server_id, scope=settings.scope, lease=settings.fleet.lease
    )

    def interval(code: str, n: int) -> float:
        # re_alert_backoff counts the fleet's re-alerts (CONTRACT §13): n is the fleet's
        return settings.noise_for(code).interval(settings.re_alert_for(code), n)

    gate = FleetGate(claims, interval)
    wait = settings.fleet.wait(settings.mongodb.timeout)
    if wait > settings.fleet.lease / 6:
        # measured: a renewal MongoDB does not answer holds the daemon's loop for the whole
        # wait, once per lease/3; beyond half of that the loop mostly waits in an outage
        log.warning(
            "fleet %r: [mongodb] timeout %.1fs is over half of lease/3 (%.1fs): while MongoDB does not answer,"
            " reading waits %.1fs in every renewal; a longer lease or a shorter timeout keeps it reading",
            settings.fleet.name,
            wait,
            settings.fleet.lease / 3,
            wait,
        )
    try:
        twin = claims.start(f"{os.getpid()}-{uuid.uuid4().hex[:8]}", time.time())
    except ScopeMismatch as exc:
        log.error("fleet: not joining (%s): this host alerts alone", exc)
        return None
    if twin is None:
        gate.down = True  # joins (merging its open incidents) when MongoDB answers
        log.warning("fleet %r: MongoDB did not answer at start: alerting alone until it does", settings.fleet.name)
    elif twin:
        log.warning(
            "fleet %r: another running daemon has server_id %r: the two count as one member",
            settings.fleet.name,
            settings.server_id,
        )
    else:
        log.info("fleet %r: joined as %r (lease %.0fs)", settings.fleet.name, settings.server_id, settings.fleet.lease)
    return gate


def share_silences(gate: FleetGate, settings: RunConfig, journal: Journal, mutes: MuteOracle) -> FleetSilences:
    """The fleet's silences for this member (in the daemon's thread: the journal's), read
    once now when MongoDB answered at start; set as the gate's."""
    assert settings.fleet is not None
    coll = gate.claims.coll.database.get_collection(COLLECTION, write_concern=gate.claims.coll.write_concern)
    shared = gate.silences = FleetSilences.for_config(coll, settings, journal, mutes)
    return shared
