"""The MongoDB queue: which incidents still have to reach MongoDB (the ``mongo_outbox``
table), over the journal's connection.

With mirroring on (``mirror(True)``, the daemon's start with ``[mongodb]``),
``Journal.commit`` queues each changed incident in the batch's transaction
(``enqueue``), so a committed change is always queued. One row per incident: repeats
coalesce while they wait. The writer (``sinks/mongo.py``) takes the head of the queue
with each incident's CURRENT record (``batch``) and acks the rows with the version it
read (``ack``), so a change made during its write is written again. MongoDB being down
only makes the queue longer; alerting never waits for it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from errord.errors import JournalError
from errord.model import Incident
from errord.store.schema import INCIDENT_COLS, META_GET, META_UPSERT, Read, Transact, incident_from_row, notified_json

__all__ = ["MongoQueue", "MongoWrite"]

# A change queues the incident once; a further change while it waits bumps its version.
_QUEUE = (
    "INSERT INTO mongo_outbox (incident_id) VALUES (?) ON CONFLICT (incident_id) DO UPDATE SET version = version + 1"
)


class MongoWrite(NamedTuple):
    """One queued MongoDB write: the incident's current record and the queue row's version."""

    incident_id: str
    version: int
    incident: Incident | None


class MongoQueue:
    """The incidents waiting for MongoDB; made by ``Journal`` over its connection."""

    def __init__(self, tx: Transact, read: Read) -> None:
        # The journal's own helpers, not its connection (see ``Outbox``).
        self._tx = tx
        self._read = read
        self._enabled = False  # queue changed incidents (set by mirror)

    def mirror(self, enabled: bool) -> int:
        """Queue later commits' incidents for MongoDB (or not); returns rows queued/dropped.

        Switching on where it was off (first start with ``[mongodb]``, or MongoDB
        configured again after a time without) queues every known incident once, so the
        history from before reaches MongoDB too. Switching off drops the queue: it is
        rebuilt whole when MongoDB is configured again. Remembered in meta ``mongo_mirror``.
        """
        rows = self._read("get_meta", META_GET, ("mongo_mirror",))
        was = bool(rows) and rows[0][0] == "1"
        self._enabled = enabled
        if enabled == was:
            return 0
        with self._tx("mirror_to_mongo") as db:
            if enabled:
                cur = db.execute(
                    "INSERT OR IGNORE INTO mongo_outbox (incident_id)"
                    " SELECT incident_id FROM incidents ORDER BY start_time"
                )
                db.execute(META_UPSERT, ("mongo_mirror", "1"))
            else:
                cur = db.execute("DELETE FROM mongo_outbox")
                db.execute("DELETE FROM meta WHERE key = 'mongo_mirror'")
            return cur.rowcount

    def enqueue(self, db: sqlite3.Connection, incidents: Sequence[Incident]) -> None:
        """Queue ``incidents`` (while mirroring) inside the caller's transaction on ``db``
        (``Journal.commit``): a committed change is always queued."""
        if self._enabled:
            db.executemany(_QUEUE, ((i.incident_id,) for i in incidents))

    def import_incidents(self, incidents: Iterable[Incident]) -> int:
        """Insert incidents as given, times included (recovery from MongoDB); those already
        known are left alone. Not queued for MongoDB: that is where they came from."""
        rows = [(*(getattr(i, c) for c in INCIDENT_COLS[:-1]), notified_json(i.notified)) for i in incidents]
        if not rows:
            return 0
        with self._tx("import_incidents") as db:
            cur = db.executemany(
                f"INSERT OR IGNORE INTO incidents ({', '.join(INCIDENT_COLS)})"
                f" VALUES ({', '.join('?' * len(INCIDENT_COLS))})",
                rows,
            )
            return cur.rowcount

    def batch(self, limit: int) -> list[MongoWrite]:
        """The first ``limit`` queued incidents in queue order, each with its CURRENT record
        (``None`` if the incident row is gone; acking such a row just drops it)."""
        rows = self._read(
            "mongo_batch",
            f"SELECT o.incident_id, o.version, {', '.join('i.' + c for c in INCIDENT_COLS)}"
            " FROM mongo_outbox o LEFT JOIN incidents i ON i.incident_id = o.incident_id"
            " ORDER BY o.seq LIMIT ?",
            (limit,),
        )
        return [MongoWrite(r[0], r[1], incident_from_row(r[2:]) if r[2] is not None else None) for r in rows]

    def ack(self, written: Iterable[tuple[str, int]]) -> int:
        """Drop the queued rows ``(incident_id, version)`` that were written; a row whose
        version moved on meanwhile (changed during the write) stays queued. Returns rows dropped."""
        pairs = list(written)
        if not pairs:
            return 0
        with self._tx("mongo_ack") as db:
            cur = db.executemany("DELETE FROM mongo_outbox WHERE incident_id = ? AND version = ?", pairs)
            return cur.rowcount

    def pending(self) -> int:
        """Incidents whose latest change is not in MongoDB yet."""
        try:
            rows = self._read("pending_mongo", "SELECT count(*) FROM mongo_outbox")
        except JournalError as e:
            cause = e.__cause__
            if isinstance(cause, sqlite3.OperationalError) and "no such table" in str(cause):
                return 0  # a read-only view of a schema-1 file (older daemon)
            raise
        return int(rows[0][0])
