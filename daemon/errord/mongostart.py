"""The daemon's MongoDB at start: the journal's queue on or off, a rebuilt host's open
incidents, the writer.

``start_mongo(journal, config)`` runs before the engine is restored from the journal:
it turns the journal's MongoDB outbox on or off (``journal.mongo.mirror``); on a fresh
state_dir it loads this host's open incidents from MongoDB, so a rebuilt host does not
alert them again (who the old host alerted is not in the record: they go by tags); then
it starts the writer (``sinks.mongo.MongoSink``). pymongo is imported only here and only
when ``[mongodb]`` is configured.
"""

from __future__ import annotations

import asyncio
import logging

from errord.config import RunConfig
from errord.errors import MongoError
from errord.policy.route import UNKNOWN_ALERTED
from errord.sinks.base import Sink
from errord.store.journal import Journal

__all__ = ["RECOVER_TIMEOUT", "start_mongo"]

logger = logging.getLogger("errord.daemon")  # the daemon's start says it, as before

RECOVER_TIMEOUT = 3.0  # seconds to wait for MongoDB when recovering open incidents at start


async def start_mongo(journal: Journal, s: RunConfig) -> Sink | None:
    """See the module doc; the started writer, or None without ``[mongodb]``."""
    changed = journal.mongo.mirror(s.mongodb is not None)
    if s.mongodb is None:
        if changed:
            logger.info("[mongodb] is no longer configured: dropped %d queued MongoDB write(s)", changed)
        return None
    if changed:
        logger.info("MongoDB newly configured: %d known incident(s) queued for it", changed)
    if not journal.history(limit=1) and journal.get_meta("mongo_recovered") is None:
        from errord.store.mongostore import recover_open_incidents

        try:
            found = await asyncio.to_thread(
                recover_open_incidents,
                s.mongodb,
                server_id=s.server_id,
                node_name=s.node_name,
                timeout=min(RECOVER_TIMEOUT, s.mongodb.timeout),
            )
        except MongoError as exc:
            logger.warning(
                "fresh state_dir: cannot load this host's open incidents from MongoDB (%s); starting without them",
                exc,
            )
        else:
            for inc in found:  # who the old host alerted is not in the record: by tags
                if inc.alerts_sent:
                    inc.notified = (UNKNOWN_ALERTED,)
            loaded = journal.mongo.import_incidents(found)
            journal.set_meta("mongo_recovered", "1")
            logger.info(
                "fresh state_dir: loaded %d open incident(s) of %s/%s from MongoDB",
                loaded,
                s.server_id,
                s.node_name,
            )
    from errord.sinks.mongo import MongoSink

    mongo = MongoSink(s.state_dir, s.mongodb)
    mongo.start()
    return mongo
