"""What ``errord fleet`` shows and ``GET /api/v1/fleet`` returns (CONTRACT §13): the fleet's
open incidents as read from MongoDB, one read, no state kept."""

from __future__ import annotations

import time
from typing import Any

from errord.config import RunConfig
from errord.errors import ConfigError

__all__ = ["COLLECTION", "fleet_collection", "fleet_json", "fleet_lines"]

COLLECTION = "fleet_incidents"  # next to [mongodb] collection, in the same database


def fleet_collection(config: RunConfig, *, timeout: float | None = None) -> Any:
    """The ``fleet_incidents`` collection (majority writes: a claim must survive a failover)."""
    from pymongo import WriteConcern

    from errord.store.mongostore import connect  # pymongo only where needed

    if config.mongodb is None or config.fleet is None:
        raise ConfigError("fleet: this host is in no fleet (no [fleet] with [mongodb])")
    wait = config.fleet.wait(config.mongodb.timeout) if timeout is None else timeout
    client = connect(config.mongodb, timeout=wait)
    return client[config.mongodb.database].get_collection(COLLECTION, write_concern=WriteConcern(w="majority"))


def fleet_json(config: RunConfig, now: float | None = None) -> list[dict[str, Any]]:
    """The ``errord fleet --json`` array; raises PyMongoError when MongoDB does not answer."""
    from errord.fleet.claims import fleet_rows

    coll = fleet_collection(config)
    try:
        name = config.fleet.name if config.fleet is not None else ""
        return fleet_rows(list(coll.find({"fleet": name, "open": True})), time.time() if now is None else now)
    finally:
        coll.database.client.close()


def fleet_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The human table: one line per fleet incident."""
    if not rows:
        return ["no open fleet incidents"]
    out = []
    for r in rows:
        stale = f", stale: {', '.join(r['stale'])}" if r["stale"] else ""
        out.append(
            f"{r['key']}  failing on {len(r['hosts'])} host(s): {', '.join(r['hosts']) or '-'}{stale}"
            f"  (alerted by {r['alerted_by'] or '-'}, {r['occurrences']} occurrence(s))"
        )
    return out
