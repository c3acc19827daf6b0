"""The embedded store: incidents, file positions and the notification outbox in SQLite.

One ``Journal`` is one SQLite connection, used from one thread. The daemon's batch loop
owns one; each notify worker thread opens its own; CLI reads open one with
``readonly=True``. The database runs in WAL mode, so readers never block the writer and
the writer never blocks readers; writers queue on the lock for up to ``busy_timeout``.

Durability (CONTRACT §7): ``commit`` writes the incidents, positions and notices of one
batch of lines in ONE transaction with ``synchronous=FULL``; ``mark_delivered`` is a
second, later transaction. A crash leaves all of a batch or none of it.

Deliveries: a notice comes with its target keys (``Notice.targets``, decided by
``routing.Router`` before the commit; the journal does no routing). Each target gets its
own delivery row, so a slow target never holds up another. Which targets were sent a
failure or warning of an incident is kept with it (``incidents.notified``): its resolve
goes to them.

MongoDB (``mirror_to_mongo(True)``): ``commit`` also queues each changed incident in
``mongo_outbox``, in the same transaction. One row per incident, so repeats coalesce while
they wait; the writer (``sinks/mongo.py``) reads the incident's current record and acks
the row with the version it read, so a change made during its write is written again.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields
from operator import attrgetter
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from errord.errors import JournalError, NoStateError, StateError
from errord.model import HistoryState, Incident, Notice, NoticeType, Position, history_state
from errord.ratelimit import RateLimit
from errord.policy.route import STDERR_TARGET, UNKNOWN_ALERTED
from errord.store.runstate import STATE_MARKER, check_state_dir, lost_state, mark_state

__all__ = ["Journal", "Delivery", "MongoWrite", "DB_NAME", "SCHEMA_VERSION", "STDERR_TARGET"]
# STDERR_TARGET is routing's; re-exported for the sinks, which name it in their targets.

logger = logging.getLogger(__name__)

DB_NAME = "errord.db"

_INCIDENT_COLS = tuple(f.name for f in fields(Incident))
assert _INCIDENT_COLS[-1] == "notified"  # stored as JSON text: _incident() decodes the last column
_INCIDENT_DATA_COLS = tuple(c for c in _INCIDENT_COLS if c not in ("created_at", "updated_at", "notified"))
_POSITION_COLS = (
    "dev", "ino", "path", "offset", "fp_len", "fp_hash",
    "lines_read", "lines_skipped", "source", "extra",
)  # fmt: skip
_NOTICE_COLS = "n.id, n.type, n.code, n.title, n.body, n.incident_id, n.event_time, n.tags"

# MIGRATIONS[v] takes the schema from user_version v to v + 1. Append, never edit.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE incidents (
            incident_id TEXT PRIMARY KEY,
            code TEXT NOT NULL,
            message TEXT NOT NULL,
            start_time REAL NOT NULL,
            last_log_time REAL NOT NULL,
            server_id TEXT NOT NULL,
            node_name TEXT NOT NULL,
            active INTEGER NOT NULL,
            cleared_at REAL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            occurrences INTEGER NOT NULL,
            alerts_sent INTEGER NOT NULL,
            last_alert_time REAL NOT NULL,
            app TEXT,
            re_alert REAL,
            since_alert INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX incidents_active ON incidents (active)",
        "CREATE INDEX incidents_code_start ON incidents (code, start_time DESC)",
        "CREATE INDEX incidents_start ON incidents (start_time DESC)",
        """CREATE TABLE positions (
            dev INTEGER NOT NULL,
            ino INTEGER NOT NULL,
            path TEXT NOT NULL,
            "offset" INTEGER NOT NULL,
            fp_len INTEGER NOT NULL,
            fp_hash TEXT NOT NULL,
            lines_read INTEGER NOT NULL,
            lines_skipped INTEGER NOT NULL,
            source INTEGER NOT NULL,
            extra TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (dev, ino)
        ) WITHOUT ROWID""",
        """CREATE TABLE notices (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            type TEXT NOT NULL,
            code TEXT NOT NULL,
            title TEXT NOT NULL,
            body TEXT NOT NULL,
            incident_id TEXT NOT NULL,
            event_time REAL NOT NULL,
            tags TEXT NOT NULL DEFAULT '[]',
            created_at REAL NOT NULL
        )""",
        "CREATE INDEX notices_created ON notices (created_at)",
        """CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            notice_id INTEGER NOT NULL REFERENCES notices (id),
            target TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL,
            last_error TEXT,
            delivered_at REAL
        )""",
        "CREATE INDEX deliveries_target ON deliveries (target, delivered_at, id)",
        "CREATE INDEX deliveries_notice ON deliveries (notice_id)",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
    # v1 -> v2: the MongoDB outbox. One row per incident waiting to be mirrored; `seq`
    # (the rowid) is its place in the queue, kept while it waits; `version` grows at each
    # change, so the writer deletes a row only if nothing changed during its write.
    (
        """CREATE TABLE mongo_outbox (
            seq INTEGER PRIMARY KEY,
            incident_id TEXT NOT NULL UNIQUE,
            version INTEGER NOT NULL DEFAULT 1
        )""",
    ),
    # v2 -> v3: who was alerted (Incident.notified, a JSON array of target keys): the
    # resolve goes to them. For the open incidents of an older errord, taken from the
    # outbox (the targets their failures and warnings were queued for; a target key is
    # hex or "stderr", nothing to escape); where those rows were pruned already (delivered
    # over a week ago), "*": alerted, targets unknown, the resolve goes by tags as it did.
    (
        "ALTER TABLE incidents ADD COLUMN notified TEXT NOT NULL DEFAULT '[]'",
        # one pass over the outbox (notices has no incident_id index), then keyed look-ups
        "CREATE TEMP TABLE v3_alerted (incident_id TEXT PRIMARY KEY, targets TEXT NOT NULL)",
        """INSERT INTO v3_alerted
            SELECT n.incident_id, '[' || group_concat(DISTINCT '"' || d.target || '"') || ']'
            FROM notices n JOIN deliveries d ON d.notice_id = n.id
            WHERE n.type IN ('failure', 'warning') GROUP BY n.incident_id""",
        f"""UPDATE incidents SET notified = coalesce(
            (SELECT targets FROM v3_alerted a WHERE a.incident_id = incidents.incident_id),
            '["{UNKNOWN_ALERTED}"]') WHERE active = 1 AND alerts_sent > 0""",
        "DROP TABLE v3_alerted",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

# The WAL is restarted (and cut to WAL_SIZE_LIMIT) by SQLite's own checkpoints only when no
# reader is using it at that moment; readers that overlap (status polls, notify workers)
# can hold that off for ever, and each delivered notice adds ~10 KB. See ``checkpoint``.
WAL_SIZE_LIMIT = 4 << 20

# Errors that mean "this write could not be done": rolled back, raised as JournalError.
# ValueError/TypeError/OverflowError come from bad data (an int too big for SQLite,
# extra that is not JSON-serialisable) and must not leave a transaction half done.
_WRITE_ERRORS = (sqlite3.Error, ValueError, TypeError, OverflowError)


_META_UPSERT = (
    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
# A change queues the incident once; a further change while it waits bumps its version.
_MONGO_QUEUE = (
    "INSERT INTO mongo_outbox (incident_id) VALUES (?)"
    " ON CONFLICT (incident_id) DO UPDATE SET version = version + 1"
)


class Delivery(NamedTuple):
    """The head of one target's queue: what the sink needs to gate and back off."""

    id: int
    attempts: int
    next_at: float


class MongoWrite(NamedTuple):
    """One queued MongoDB write: the incident's current record and the queue row's version."""

    incident_id: str
    version: int
    incident: Incident | None


# Every Journal() checks the modes, and the notify workers open one again after each
# journal error: a mode warning is told once an hour per path and process, not each time.
# Process-wide on purpose, as Python's own warnings registry: it limits log lines, not state.
MODE_WARN_EVERY = 3600.0
_mode_warn = RateLimit(MODE_WARN_EVERY)
# A failing disk fails the ROLLBACK after each failed COMMIT, at every retry of every
# connection (the notify workers retry each second): told once a minute per store.
FAULT_WARN_EVERY = 60.0
_fault_warn = RateLimit(FAULT_WARN_EVERY)


def _prepare_dir(state_dir: Path) -> None:
    """Create ``state_dir`` 0700; warn (do not touch) when an existing one is wider."""
    try:
        state_dir.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        mode = stat.S_IMODE(state_dir.stat().st_mode)
        if mode & 0o077 and _mode_warn.allow((str(state_dir), mode)):
            logger.warning(
                "state dir %s has mode %o; errord keeps incidents there, 0700 is advised",
                state_dir,
                mode,
            )
    else:
        os.chmod(state_dir, 0o700)  # mkdir's mode is filtered by the umask; be exact


def _create_db_file(path: Path) -> None:
    """Create the database file 0600 before SQLite opens it.

    SQLite gives the -wal and -shm files the mode of the database file, so these are
    never world-readable either. ``os.open`` avoids touching the process-wide umask,
    which other threads may rely on.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077 and _mode_warn.allow((str(path), mode)):
            logger.warning("%s has mode %o; 0600 is advised", path, mode)
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


class Journal:
    """SQLite store for incidents, positions and the notify outbox; see the module doc."""

    def __init__(
        self, state_dir: Path, *, readonly: bool = False, busy_timeout: float = 5.0
    ) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / DB_NAME
        self.readonly = readonly
        self._busy_timeout = busy_timeout
        self._mongo = False  # queue changed incidents for MongoDB (set by mirror_to_mongo)
        self._incident_sql: str | None = None  # the incidents columns to select (_incident_cols)
        self._db: sqlite3.Connection | None = None
        self._closed = False
        # Before anything is created: a state_dir that held state must still hold it.
        self._held = check_state_dir(self.state_dir, DB_NAME)
        try:
            if readonly:
                if not self.path.exists():
                    raise NoStateError(f"no state in {self.state_dir} yet")
            else:
                _prepare_dir(self.state_dir)
                _create_db_file(self.path)
            self._db = self._connect()
        except OSError as e:
            raise JournalError(f"cannot open {self.path}: {e}") from e
        if not readonly and STATE_MARKER not in self._held:
            try:
                mark_state(self.state_dir)
            except OSError as e:  # a full disk: the store works; only the marker is missing
                if _mode_warn.allow(("marker", str(self.state_dir))):
                    logger.warning("cannot write %s in %s: %s", STATE_MARKER, self.state_dir, e)

    # -- connection --------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.readonly:
                uri = f"file:{quote(str(self.path.absolute()))}?mode=ro"
                db = sqlite3.connect(uri, uri=True, timeout=self._busy_timeout, isolation_level=None)
            else:
                db = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        except sqlite3.Error as e:
            raise JournalError(f"cannot open {self.path}: {e}") from e
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            self._setup(db)
        except sqlite3.Error as e:
            db.close()
            raise JournalError(f"cannot open {self.path}: {e}") from e
        except JournalError:
            db.close()
            raise
        return db

    def _setup(self, db: sqlite3.Connection) -> None:
        # Switching a new file to WAL, or migrating it, can meet SQLITE_BUSY without the
        # busy handler being consulted (several connections opening a fresh database at
        # once: the daemon and its notify workers). Retry within the busy timeout.
        end = time.monotonic() + self._busy_timeout
        while True:
            try:
                if self.readonly:
                    if db.execute("PRAGMA user_version").fetchone()[0] == 0:
                        self._refuse_schemaless()
                        raise NoStateError(f"no state in {self.state_dir} yet")
                    return
                mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                db.execute("PRAGMA synchronous = FULL")
                # After a checkpoint resets the WAL, cut the file back to this size (by
                # default SQLite keeps it at its largest, which on a small disk is space lost).
                db.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
                self._migrate(db)
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                if time.monotonic() >= end:
                    raise
                time.sleep(0.01)
        if mode != "wal":
            logger.warning("%s: journal_mode is %s, not wal; readers may block", self.path, mode)

    def _refuse_schemaless(self) -> None:
        """A database without errord's schema where the marker says a store was built was
        replaced (or reset): never build a fresh store on it silently (see ``runstate``).
        Only the marker counts here: it is written once the schema is committed, while a
        ``-wal`` exists as soon as a first connection switched a new file to WAL mode."""
        if STATE_MARKER in self._held:
            raise StateError(lost_state(self.state_dir, DB_NAME, "a database without errord's tables",
                                        [STATE_MARKER]))

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version == 0:
            self._refuse_schemaless()
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"{self.path} has schema {version}, newer than this errord ({SCHEMA_VERSION})"
            )
        db.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for v in range(version, SCHEMA_VERSION):
                for stmt in MIGRATIONS[v]:
                    db.execute(stmt)
                logger.info("journal %s: schema %d -> %d", self.path, v, v + 1)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            if self._closed:
                raise JournalError(f"journal {self.path} is closed")
            self._db = self._connect()  # dropped after a failed rollback: start afresh
        return self._db

    def wal_size(self) -> int:
        """Bytes in the ``-wal`` file now (0 when there is none)."""
        try:
            return os.stat(f"{self.path}-wal").st_size
        except OSError:
            return 0

    def checkpoint(self, wait: float = 0.1) -> bool:
        """Copy the whole WAL into the database and truncate it to 0 bytes, waiting at most
        ``wait`` seconds for readers of older snapshots (and a writer) to finish; True when
        done. Readers that start meanwhile read the database file and do not hold it up.

        Blocks this connection's thread for up to ``wait``; SQLite's own checkpoints never
        wait, which is why a WAL with overlapping readers grows (see ``WAL_SIZE_LIMIT``).
        """
        db = self._conn()
        try:
            db.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
            try:
                busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        except sqlite3.Error as e:
            raise JournalError(f"checkpoint: {e}") from e
        return not busy

    def close(self) -> None:
        """Close the connection; later calls raise JournalError."""
        self._closed = True
        db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except sqlite3.Error as e:
                logger.warning("closing %s: %s", self.path, e)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction; any failure rolls back and raises JournalError."""
        db = self._conn()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise JournalError(f"{what}: {e}") from e
        try:
            yield db
            db.execute("COMMIT")
        except BaseException as e:
            self._rollback(db)
            if isinstance(e, _WRITE_ERRORS):
                raise JournalError(f"{what}: {e}") from e
            raise

    def _rollback(self, db: sqlite3.Connection) -> None:
        try:
            if db.in_transaction:
                db.execute("ROLLBACK")
        except sqlite3.Error as e:
            if _fault_warn.allow(("rollback", str(self.path))):
                logger.warning("rollback on %s failed (%s); reconnecting (further rollback failures"
                               " muted for %ds)", self.path, e, int(FAULT_WARN_EVERY))
            self._db = None
            try:
                db.close()
            except sqlite3.Error:
                pass

    def _read(self, what: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise JournalError(f"{what}: {e}") from e

    # -- meta / startup ----------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._read("get_meta", "SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx("set_meta") as db:
            db.execute(_META_UPSERT, (key, value))

    def load_active(self) -> list[Incident]:
        """The open incidents, for ``Engine.restore`` at start."""
        return self.active()

    def load_positions(self) -> list[Position]:
        return self.positions()

    # -- the batch commit --------------------------------------------------------------

    def commit(
        self,
        incidents: Iterable[Incident],
        positions: Iterable[Position],
        notices: Iterable[Notice],
        now: float,
        meta: Mapping[str, str] | None = None,
    ) -> list[Notice]:
        """Write one batch in ONE transaction; returns the notices with ``id`` set.

        Incidents are upserted by ``incident_id``: ``created_at`` is ``now`` on first
        write and kept afterwards, ``updated_at`` is ``now``; both are also set on the
        objects passed in, once the transaction is committed. Positions are upserted
        by (dev, ino), those with ``gone=True`` deleted. Each notice gets one delivery
        row per key in its ``targets`` (none: recorded, not sent). On failure nothing is
        written, no object is changed, and ``JournalError`` is raised; the journal stays
        usable. ``meta`` entries are written in the same transaction (the first start's
        "initialized" flag goes with the positions it decided).
        """
        incs = list(incidents)
        poss = list(positions)
        notes = list(notices)
        with self._tx("commit") as db:
            created: dict[str, float] = {}
            if incs:
                get = attrgetter(*_INCIDENT_DATA_COLS)
                db.executemany(_INCIDENT_UPSERT, [(*get(i), _notified_in(i.notified), now, now) for i in incs])
                created = self._created_at(db, [i.incident_id for i in incs])
                if self._mongo:  # same transaction: a committed change is always queued
                    db.executemany(_MONGO_QUEUE, [(i.incident_id,) for i in incs])
            if poss:
                gone = [(p.dev, p.ino) for p in poss if p.gone]
                live = [
                    (p.dev, p.ino, _path_in(p.path), p.offset, p.fp_len, p.fp_hash, p.lines_read,
                     p.lines_skipped, p.source, json.dumps(p.extra))
                    for p in poss if not p.gone
                ]  # fmt: skip
                if live:
                    db.executemany(_POSITION_UPSERT, live)
                if gone:
                    db.executemany("DELETE FROM positions WHERE dev = ? AND ino = ?", gone)
            ids: list[int] = []
            if notes:
                ids = self._insert_notices(db, notes, now)
            if meta:
                db.executemany(_META_UPSERT, list(meta.items()))
        # Committed: only now touch the caller's objects.
        for i in incs:
            i.created_at = created.get(i.incident_id, now)
            i.updated_at = now
        for n, nid in zip(notes, ids):
            n.id = nid
        return notes

    @staticmethod
    def _created_at(db: sqlite3.Connection, ids: list[str]) -> dict[str, float]:
        # The stored created_at (kept by the upsert) for the caller's objects; one query
        # per 500 ids rather than a RETURNING round trip per row.
        out: dict[str, float] = {}
        for k in range(0, len(ids), 500):
            part = ids[k : k + 500]
            out.update(
                db.execute(
                    "SELECT incident_id, created_at FROM incidents WHERE incident_id IN"
                    f" ({', '.join('?' * len(part))})",
                    part,
                ).fetchall()
            )
        return out

    def _insert_notices(self, db: sqlite3.Connection, notes: list[Notice], now: float) -> list[int]:
        # Under BEGIN IMMEDIATE nobody else inserts, so ids can be assigned here and
        # both tables filled with executemany (no per-row round trip for lastrowid).
        seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'notices'").fetchone()
        top = db.execute("SELECT max(id) FROM notices").fetchone()[0]
        base = max(seq[0] if seq else 0, top or 0)
        ids = list(range(base + 1, base + 1 + len(notes)))
        db.executemany(
            "INSERT INTO notices (id, type, code, title, body, incident_id, event_time, tags,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (nid, n.type.value, n.code, n.title, n.body, n.incident_id, n.event_time,
                 json.dumps(list(n.tags)), now)
                for nid, n in zip(ids, notes)
            ],
        )  # fmt: skip
        rows = [(nid, t, now) for nid, n in zip(ids, notes) for t in n.targets]
        if rows:
            db.executemany(
                "INSERT INTO deliveries (notice_id, target, next_at) VALUES (?, ?, ?)", rows
            )
        return ids

    # -- the outbox ----------------------------------------------------------------------

    def head(self, target: str) -> Delivery | None:
        """The oldest undelivered delivery of ``target`` (due or not), or None."""
        rows = self._read(
            "head",
            "SELECT id, attempts, next_at FROM deliveries"
            " WHERE target = ? AND delivered_at IS NULL ORDER BY id LIMIT 1",
            (target,),
        )
        return Delivery(*rows[0]) if rows else None

    def due_deliveries(self, target: str, limit: int, now: float) -> list[tuple[int, Notice]]:
        """The oldest undelivered deliveries of ``target``, in order, as (delivery id, notice).

        Empty unless the oldest one is due (``next_at <= now``): a target's notices go
        out strictly in order, never skipping ahead of one that is backing off.
        """
        rows = self._read(
            "due_deliveries",
            f"SELECT d.id, d.next_at, {_NOTICE_COLS} FROM deliveries d"
            " JOIN notices n ON n.id = d.notice_id"
            " WHERE d.target = ? AND d.delivered_at IS NULL ORDER BY d.id LIMIT ?",
            (target, limit),
        )
        if not rows or rows[0][1] > now:
            return []
        return [(r[0], _notice(r[2:])) for r in rows]

    def mark_delivered(self, ids: Sequence[int], now: float) -> None:
        with self._tx("mark_delivered") as db:
            db.executemany(
                "UPDATE deliveries SET delivered_at = ?, attempts = attempts + 1,"
                " last_error = NULL WHERE id = ?",
                [(now, i) for i in ids],
            )

    def mark_failed(self, id: int, error: str, next_at: float) -> None:  # noqa: A002
        with self._tx("mark_failed") as db:
            db.execute(
                "UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_at = ?"
                " WHERE id = ?",
                (error[:1000], next_at, id),
            )

    def pending_notices(self) -> int:
        """Undelivered delivery rows, all targets."""
        rows = self._read(
            "pending_notices", "SELECT count(*) FROM deliveries WHERE delivered_at IS NULL"
        )
        return int(rows[0][0])

    def pending_by_target(self) -> dict[str, int]:
        rows = self._read(
            "pending_by_target",
            "SELECT target, count(*) FROM deliveries WHERE delivered_at IS NULL GROUP BY target",
        )
        return {t: int(n) for t, n in rows}

    def drop_target_deliveries(self, keep: set[str]) -> int:
        """Drop the pending deliveries of targets not in ``keep`` (removed on reload)."""
        dropped = {t: n for t, n in self.pending_by_target().items() if t not in keep}
        if not dropped:
            return 0
        with self._tx("drop_target_deliveries") as db:
            db.executemany(
                "DELETE FROM deliveries WHERE target = ? AND delivered_at IS NULL",
                [(t,) for t in dropped],
            )
        for t, n in dropped.items():
            logger.warning("notify target %s was removed: dropped its %d pending notices", t, n)
        return sum(dropped.values())

    def prune(self, now: float, keep_seconds: float = 7 * 86400) -> int:
        """Delete delivered deliveries, and notices with nothing left to deliver, older
        than ``keep_seconds``. Returns the number of notices deleted. Incidents stay."""
        cutoff = now - keep_seconds
        with self._tx("prune") as db:
            db.execute(
                "DELETE FROM deliveries WHERE delivered_at IS NOT NULL AND delivered_at < ?",
                (cutoff,),
            )
            cur = db.execute(
                "DELETE FROM notices WHERE created_at < ? AND NOT EXISTS"
                " (SELECT 1 FROM deliveries d WHERE d.notice_id = notices.id)",
                (cutoff,),
            )
            return cur.rowcount

    # -- the MongoDB outbox ------------------------------------------------------------

    def mirror_to_mongo(self, enabled: bool) -> int:
        """Queue later commits' incidents for MongoDB (or not); returns rows queued/dropped.

        Switching on where it was off (first start with ``[mongodb]``, or MongoDB
        configured again after a time without) queues every known incident once, so the
        history from before reaches MongoDB too. Switching off drops the queue: it is
        rebuilt whole when MongoDB is configured again. Remembered in meta ``mongo_mirror``.
        """
        was = self.get_meta("mongo_mirror") == "1"
        self._mongo = enabled
        if enabled == was:
            return 0
        with self._tx("mirror_to_mongo") as db:
            if enabled:
                cur = db.execute(
                    "INSERT OR IGNORE INTO mongo_outbox (incident_id)"
                    " SELECT incident_id FROM incidents ORDER BY start_time"
                )
                db.execute(_META_UPSERT, ("mongo_mirror", "1"))
            else:
                cur = db.execute("DELETE FROM mongo_outbox")
                db.execute("DELETE FROM meta WHERE key = 'mongo_mirror'")
            return cur.rowcount

    def import_incidents(self, incidents: Iterable[Incident]) -> int:
        """Insert incidents as given, times included (recovery from MongoDB); those already
        known are left alone. Not queued for MongoDB: that is where they came from."""
        rows = [(*(getattr(i, c) for c in _INCIDENT_COLS[:-1]), _notified_in(i.notified)) for i in incidents]
        if not rows:
            return 0
        with self._tx("import_incidents") as db:
            cur = db.executemany(
                f"INSERT OR IGNORE INTO incidents ({', '.join(_INCIDENT_COLS)})"
                f" VALUES ({', '.join('?' * len(_INCIDENT_COLS))})",
                rows,
            )
            return cur.rowcount

    def mongo_batch(self, limit: int) -> list[MongoWrite]:
        """The first ``limit`` queued incidents in queue order, each with its CURRENT record
        (``None`` if the incident row is gone; acking such a row just drops it)."""
        rows = self._read(
            "mongo_batch",
            f"SELECT o.incident_id, o.version, {', '.join('i.' + c for c in _INCIDENT_COLS)}"
            " FROM mongo_outbox o LEFT JOIN incidents i ON i.incident_id = o.incident_id"
            " ORDER BY o.seq LIMIT ?",
            (limit,),
        )
        return [MongoWrite(r[0], r[1], _incident(r[2:]) if r[2] is not None else None) for r in rows]

    def mongo_ack(self, written: Iterable[tuple[str, int]]) -> int:
        """Drop the queued rows ``(incident_id, version)`` that were written; a row whose
        version moved on meanwhile (changed during the write) stays queued. Returns rows dropped."""
        pairs = list(written)
        if not pairs:
            return 0
        with self._tx("mongo_ack") as db:
            cur = db.executemany(
                "DELETE FROM mongo_outbox WHERE incident_id = ? AND version = ?", pairs
            )
            return cur.rowcount

    def pending_mongo(self) -> int:
        """Incidents whose latest change is not in MongoDB yet."""
        try:
            return int(self._conn().execute("SELECT count(*) FROM mongo_outbox").fetchone()[0])
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):  # read-only view of a schema-1 file (older daemon)
                return 0
            raise JournalError(f"pending_mongo: {e}") from e
        except sqlite3.Error as e:
            raise JournalError(f"pending_mongo: {e}") from e

    # -- reads -------------------------------------------------------------------------

    def history(
        self, code: str | None = None, limit: int = 100, active_only: bool = False, *,
        app: str | None = None, since: float | None = None, state: HistoryState | None = None,
    ) -> list[Incident]:
        """Incidents, newest ``start_time`` first; ``limit < 0`` means no limit.

        Filters (all optional, combined with AND): ``code``, ``app``, ``since`` (epoch
        seconds: ``start_time`` at or after it), ``state`` (``"active"`` or
        ``"cleared"``; ``active_only=True`` is ``state="active"``).
        """
        state = history_state(state, active_only)
        where: list[str] = []
        params: list[object] = []
        if code is not None:
            where.append("code = ?")
            params.append(code)
        if app is not None:
            where.append("app = ?")
            params.append(app)
        if since is not None:
            where.append("start_time >= ?")
            params.append(since)
        if state is not None:
            where.append("active = 1" if state == "active" else "active = 0")
        sql = f"SELECT {self._incident_cols()} FROM incidents"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY start_time DESC, rowid DESC LIMIT ?"
        return [_incident(r) for r in self._read("history", sql, (*params, limit))]

    def active(self) -> list[Incident]:
        """The open incidents, newest ``start_time`` first."""
        return self.history(limit=-1, active_only=True)

    def _incident_cols(self) -> str:
        """The incidents columns to select, ``notified`` last. A read-only view of a file
        an older daemon still runs on (schema < 3: upgraded, not restarted yet) has no
        ``notified``: it reads as empty."""
        if self._incident_sql is None:
            version = self._read("user_version", "PRAGMA user_version")[0][0]
            cols = _INCIDENT_COLS if version >= 3 else (*_INCIDENT_COLS[:-1], "'[]'")
            self._incident_sql = ", ".join(cols)
        return self._incident_sql

    def positions(self) -> list[Position]:
        rows = self._read(
            "positions",
            "SELECT " + ", ".join(f'"{c}"' for c in _POSITION_COLS) + " FROM positions",
        )
        return [
            Position(
                dev=r[0], ino=r[1], path=_path_out(r[2]), offset=r[3], fp_len=r[4], fp_hash=r[5],
                lines_read=r[6], lines_skipped=r[7], source=r[8], extra=json.loads(r[9]),
            )
            for r in rows
        ]  # fmt: skip


_INCIDENT_UPSERT = (
    f"INSERT INTO incidents ({', '.join(_INCIDENT_DATA_COLS)}, notified, created_at, updated_at)"
    f" VALUES ({', '.join('?' * (len(_INCIDENT_DATA_COLS) + 3))})"
    " ON CONFLICT (incident_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _INCIDENT_DATA_COLS if c != "incident_id")
    + ", notified = excluded.notified, updated_at = excluded.updated_at"
)

_POSITION_UPSERT = (
    "INSERT INTO positions (" + ", ".join(f'"{c}"' for c in _POSITION_COLS) + ")"
    f" VALUES ({', '.join('?' * len(_POSITION_COLS))})"
    " ON CONFLICT (dev, ino) DO UPDATE SET "
    + ", ".join(f'"{c}" = excluded."{c}"' for c in _POSITION_COLS[2:])
)


def _path_in(path: str) -> str | bytes:
    """A file name for the store. One that is not valid UTF-8 (Python holds its bytes as
    surrogates) cannot be SQLite TEXT, and would make every commit fail: reading would
    stop for good. It is stored as its bytes (a BLOB) instead."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    except AttributeError:  # not a str: let SQLite refuse it (NOT NULL), as before
        pass
    return path


def _path_out(value: str | bytes) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else value


# notified tuple -> its JSON text: commit writes every changed incident of a batch, and
# the few distinct values (the targets' combinations) repeat.
_NOTIFIED_JSON: dict[tuple[str, ...], str] = {(): "[]"}


def _notified_in(notified: tuple[str, ...]) -> str:
    text = _NOTIFIED_JSON.get(notified)
    if text is None:
        if len(_NOTIFIED_JSON) > 1024:  # bounded: a cache, not a registry
            _NOTIFIED_JSON.clear()
            _NOTIFIED_JSON[()] = "[]"
        text = _NOTIFIED_JSON[notified] = json.dumps(list(notified))
    return text


def _incident(row: Sequence[Any]) -> Incident:
    inc = Incident(*row)
    inc.active = bool(inc.active)
    inc.notified = tuple(json.loads(row[-1])) if row[-1] and row[-1] != "[]" else ()
    return inc


def _notice(row: Sequence[Any]) -> Notice:
    nid, typ, code, title, body, incident_id, event_time, tags = row
    return Notice(
        type=NoticeType(typ),
        code=code,
        title=title,
        body=body,
        incident_id=incident_id,
        event_time=event_time,
        tags=tuple(json.loads(tags)),
        id=nid,
    )
