"""The journal: one SQLite connection to the store, its transactions, the batch commit and
the reads.

One ``Journal`` is one connection, used from one thread. The daemon's batch loop owns
one; each notify worker thread and the MongoDB writer open their own; CLI reads open one
with ``readonly=True``. The database runs in WAL mode, so readers never block the writer
and the writer never blocks readers; writers queue on the lock for up to ``busy_timeout``.
How the file is opened, its schema and its WAL are ``store/schema.py``'s.

Durability (CONTRACT §7): ``commit`` writes the incidents, positions and notices of one
batch of lines in ONE transaction with ``synchronous=FULL``; marking a notice delivered is
a second, later transaction. A crash leaves all of a batch or none of it.

The journal has two parts over its connection, each owning its tables' SQL and sharing
its one transaction helper: ``journal.outbox`` (``store/outbox.py``: notices and their
deliveries, drained by the notify sink) and ``journal.mongo`` (``store/mongoqueue.py``:
the incidents waiting for MongoDB). ``commit`` calls both inside the batch's transaction.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from operator import attrgetter
from pathlib import Path
from typing import Any

from errord.errors import JournalError, NoStateError
from errord.model import HistoryState, Incident, MessageSource, Notice, Position, history_state
from errord.ratelimit import RateLimit
from errord.store import schema
from errord.store.alerts import AlertState
from errord.store.control import Control
from errord.store.limits import Limits
from errord.store.mongoqueue import MongoQueue
from errord.store.outbox import Outbox
from errord.store.runstate import check_state_dir

__all__ = ["Journal"]

logger = logging.getLogger(__name__)

_INCIDENT_DATA_COLS = tuple(c for c in schema.INCIDENT_COLS if c not in ("created_at", "updated_at", "notified"))
_MESSAGE_AT = schema.INCIDENT_COLS.index("message")
# An incident that holds no message (its row has it: Incident.keep_message_in) is written
# by an UPDATE of the other columns: an upsert's INSERT would need the message (NOT NULL)
_INCIDENT_UPDATE_COLS = tuple(c for c in _INCIDENT_DATA_COLS if c not in ("message", "incident_id"))
_POSITION_COLS = (
    "dev",
    "ino",
    "path",
    "offset",
    "fp_len",
    "fp_hash",
    "lines_read",
    "lines_skipped",
    "source",
    "extra",
)

# Errors that mean "this write could not be done": rolled back, raised as JournalError.
# ValueError/TypeError/OverflowError come from bad data (an int too big for SQLite,
# extra that is not JSON-serialisable) and must not leave a transaction half done.
_WRITE_ERRORS = (sqlite3.Error, ValueError, TypeError, OverflowError)

# A failing disk fails the ROLLBACK after each failed COMMIT, at every retry of every
# connection (the notify workers retry each second): told once a minute per store.
FAULT_WARN_EVERY = 60.0
_fault_warn = RateLimit(FAULT_WARN_EVERY)


class Journal:
    """The store's connection: incidents, positions, meta, and its parts ``outbox``,
    ``mongo`` and ``control``; see the module doc.

    ``opener`` stands in for ``sqlite3.connect`` (same signature), for tests that inject
    faults under the journal; every connection the journal opens, reconnects included,
    comes from it.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        readonly: bool = False,
        busy_timeout: float = 5.0,
        opener: schema.Opener = sqlite3.connect,
        durable: bool = True,
    ) -> None:
        # durable=False: commits survive a killed process but not a power loss
        # (synchronous=NORMAL in WAL); for the notify workers' delivered marks only.
        self.state_dir = Path(state_dir)
        self._durable = durable
        self.path = self.state_dir / schema.DB_NAME
        self.readonly = readonly
        self._busy_timeout = busy_timeout
        self._opener = opener
        self._incident_sql: str | None = None  # the incidents columns to select (_incident_cols)
        # An open incident's message, read from its row (the daemon's incidents hold this
        # one bound method, not their message, once committed: ``Incident.keep_message_in``)
        self.message_of: MessageSource = self._message_of
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self.outbox = Outbox(self._tx, self._read)
        self.mongo = MongoQueue(self._tx, self._read)
        self.control = Control(self._tx, self._read)
        self.limits = Limits(self._tx, self._read)
        self.alerts = AlertState(self._tx, self._read)  # what each [[alertmanager]] knows (CONTRACT §11)
        # Before anything is created: a state_dir that held state must still hold it.
        self._held = check_state_dir(self.state_dir, schema.DB_NAME)
        try:
            if readonly:
                if not self.path.exists():
                    raise NoStateError(f"no state in {self.state_dir} yet")
            else:
                schema.prepare_files(self.state_dir, self.path)
            self._db = self._connect()
        except OSError as e:
            raise JournalError(f"cannot open {self.path}: {e}") from e
        if not readonly:
            schema.mark_built(self.state_dir, self._held)

    # -- connection --------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = schema.connect(
            self.path, self._held, readonly=self.readonly, busy_timeout=self._busy_timeout, opener=self._opener
        )
        if not self._durable and not self.readonly:
            db.execute("PRAGMA synchronous = NORMAL")
        return db

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            if self._closed:
                raise JournalError(f"journal {self.path} is closed")
            self._db = self._connect()  # dropped after a failed rollback: start afresh
        return self._db

    def wal_size(self) -> int:
        """Bytes in the ``-wal`` file now (0 when there is none)."""
        return schema.wal_size(self.path)

    def sync(self) -> None:
        """Make what this connection committed durable against a power loss (for a
        ``durable=False`` journal): ``fdatasync`` of the ``-wal`` file. A frame this
        connection committed is either still in the WAL, which that makes durable, or was
        copied into the database by a checkpoint, which syncs the database file before
        the WAL may be reused. Without a WAL file to sync (not in WAL mode), a passive
        checkpoint. (A passive checkpoint each time, as before, also copied the pages and
        synced the database: ~15 page writes and a second fsync per isolated notice while
        following, ~0.3 ms of the helper's ~3 ms per such notice; issue 13.) SQLite takes
        no POSIX lock on the ``-wal`` (its locks are on the database and the ``-shm``), so
        closing this descriptor drops none of the connections' locks (``runstate``)."""
        db = self._conn()
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY)
        except FileNotFoundError:
            try:
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as e:
                raise JournalError(f"sync: {e}") from e
            return
        except OSError as e:
            raise JournalError(f"sync: {e}") from e
        try:
            os.fdatasync(fd)
        except OSError as e:
            raise JournalError(f"sync: {e}") from e
        finally:
            os.close(fd)

    def checkpoint(self, wait: float = 0.1) -> bool:
        """Copy the whole WAL into the database and truncate it, waiting at most ``wait``
        seconds for readers; True when done (``schema.checkpoint``). Blocks this thread."""
        db = self._conn()
        try:
            return schema.checkpoint(db, wait, self._busy_timeout)
        except sqlite3.Error as e:
            raise JournalError(f"checkpoint: {e}") from e

    def release_memory(self) -> None:
        """Free what SQLite caches for this connection (its page cache: up to ~2 MB once a
        start read every open incident); it fills again with the pages used next. Best
        effort: a failure is only logged (debug)."""
        if self._db is None:
            return
        try:
            self._db.execute("PRAGMA shrink_memory")
        except sqlite3.Error as e:
            logger.debug("shrink_memory on %s: %s", self.path, e)

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
        """One write transaction; any failure rolls back and raises JournalError. The one
        transaction helper of the store: ``outbox`` and ``mongo`` write through it too."""
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
                logger.warning(
                    "rollback on %s failed (%s); reconnecting (further rollback failures muted for %ds)",
                    self.path,
                    e,
                    int(FAULT_WARN_EVERY),
                )
            self._db = None
            with suppress(sqlite3.Error):
                db.close()

    def _read(self, what: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise JournalError(f"{what}: {e}") from e

    # -- meta --------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """The value stored under ``key`` in meta, or None."""
        rows = self._read("get_meta", schema.META_GET, (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        """Store ``value`` under ``key`` in meta (its own transaction)."""
        with self._tx("set_meta") as db:
            db.execute(schema.META_UPSERT, (key, value))

    # -- the batch commit --------------------------------------------------------------

    def commit(
        self,
        incidents: Iterable[Incident],
        positions: Iterable[Position],
        notices: Iterable[Notice],
        now: float,
        meta: Mapping[str, str] | None = None,
        *,
        silenced: Mapping[str, int] | None = None,
        also: Callable[[sqlite3.Connection], None] | None = None,
    ) -> list[Notice]:
        """Write one batch in ONE transaction; returns the notices with ``id`` set.

        Incidents are upserted by ``incident_id``: ``created_at`` is ``now`` on first
        write and kept afterwards, ``updated_at`` is ``now``; both are also set on the
        objects passed in, once the transaction is committed; while mirroring, each is
        queued for MongoDB (``mongo.enqueue``). Positions are upserted by (dev, ino),
        those with ``gone=True`` deleted. Each notice gets one delivery row per key in
        its ``targets`` (``outbox.insert``; none: recorded, not sent). On failure nothing
        is written, no object is changed, and ``JournalError`` is raised; the journal
        stays usable. ``meta`` entries are written in the same transaction (the first
        start's "initialized" flag goes with the positions it decided). ``silenced``: notices
        each silence muted in the batch (``control.count_muted``); ``also``: more writes
        of the same transaction (a command's silence and outcome, ``control``).
        """
        incs = list(incidents)
        poss = list(positions)
        notes = list(notices)
        held: list[Incident] = []  # those whose object holds its message: upserted
        with self._tx("commit") as db:
            created: dict[str, float] = {}
            if incs:
                get = attrgetter(*_INCIDENT_DATA_COLS)
                notified = schema.notified_json
                held = [i for i in incs if i.held_message is not None]
                if held:
                    # a generator, not a list: 30,000 new incidents in one batch made 30,000
                    # 25-item tuples at once, ~8 MB whose freed heap stayed with the daemon
                    db.executemany(_INCIDENT_UPSERT, ((*get(i), notified(i.notified), now, now) for i in held))
                if len(held) < len(incs):
                    rest = [i for i in incs if i.held_message is None]
                    get_rest = attrgetter(*_INCIDENT_UPDATE_COLS)
                    cur = db.executemany(
                        _INCIDENT_UPDATE, ((*get_rest(i), notified(i.notified), now, i.incident_id) for i in rest)
                    )
                    if cur.rowcount != len(rest):  # (a row gone: its message with it)
                        missing = [i.incident_id for i in rest if self._missing(db, i.incident_id)]
                        raise JournalError(f"commit: open incidents without a row (nor a message): {missing[:5]}")
                # an UPDATE keeps created_at, which the object already holds (its row was
                # written before, by this journal, or restored from it): only the upserts'
                # rows may hold one the objects do not know yet (issue 13: ~0.1 ms a commit)
                created = self._created_at(db, [i.incident_id for i in held], now)
                self.mongo.enqueue(db, incs)  # same transaction: a committed change is always queued
            if poss:
                gone = [(p.dev, p.ino) for p in poss if p.gone]
                live = [
                    (
                        p.dev,
                        p.ino,
                        _path_in(p.path),
                        p.offset,
                        p.fp_len,
                        p.fp_hash,
                        p.lines_read,
                        p.lines_skipped,
                        p.source,
                        json.dumps(p.extra),
                    )
                    for p in poss
                    if not p.gone
                ]
                if live:
                    db.executemany(_POSITION_UPSERT, live)
                if gone:
                    db.executemany("DELETE FROM positions WHERE dev = ? AND ino = ?", gone)
            ids: list[int] = []
            if notes:
                ids = self.outbox.insert(db, notes, now)
            if meta:
                db.executemany(schema.META_UPSERT, list(meta.items()))
            if silenced:
                self.control.count_muted(db, silenced)
            if also is not None:
                also(db)
        # Committed: only now touch the caller's objects.
        for i in incs:
            i.updated_at = now
        # new rows hold ``now`` (one float object for all of them, not one each); an
        # updated row's created_at is the object's already
        for i in held:
            was = created.get(i.incident_id)
            if was is None:
                i.created_at = now
            elif was != i.created_at:
                i.created_at = was
        for n, nid in zip(notes, ids, strict=True):
            n.id = nid
        return notes

    @staticmethod
    def _missing(db: sqlite3.Connection, incident_id: str) -> bool:
        return db.execute("SELECT 1 FROM incidents WHERE incident_id = ?", (incident_id,)).fetchone() is None

    @staticmethod
    def _created_at(db: sqlite3.Connection, ids: list[str], now: float) -> dict[str, float]:
        # The stored created_at (kept by the upsert) of those of the caller's objects whose
        # row was there before (the others were inserted with ``now``: not asked for, so a
        # batch of new incidents makes no dict of them); one query per 500 ids rather than
        # a RETURNING round trip per row.
        out: dict[str, float] = {}
        for k in range(0, len(ids), 500):
            part = ids[k : k + 500]
            out.update(
                db.execute(
                    "SELECT incident_id, created_at FROM incidents WHERE created_at != ? AND incident_id IN"
                    f" ({', '.join('?' * len(part))})",
                    (now, *part),
                ).fetchall()
            )
        return out

    # -- reads -------------------------------------------------------------------------

    def history(
        self,
        code: str | None = None,
        limit: int = 100,
        active_only: bool = False,
        *,
        app: str | None = None,
        since: float | None = None,
        state: HistoryState | None = None,
        code_glob: str | None = None,
        app_glob: str | None = None,
    ) -> list[Incident]:
        """Incidents, newest ``start_time`` first; ``limit < 0`` means no limit.
        ``code_glob``/``app_glob``: shell globs, matched by SQLite (``GLOB``, case-sensitive).

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
        if code_glob is not None:
            where.append("code GLOB ?")
            params.append(code_glob)
        if app_glob is not None:
            where.append("coalesce(app, '') GLOB ?")
            params.append(app_glob)
        if state is not None:
            where.append("active = 1" if state == "active" else "active = 0")
        sql = f"SELECT {self._incident_cols()} FROM incidents"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY start_time DESC, rowid DESC LIMIT ?"
        return [schema.incident_from_row(r) for r in self._read("history", sql, (*params, limit))]

    def incident(self, incident_id: str) -> Incident | None:
        """One incident by id, or None."""
        sql = f"SELECT {self._incident_cols()} FROM incidents WHERE incident_id = ?"
        rows = self._read("incident", sql, (incident_id,))
        return schema.incident_from_row(rows[0]) if rows else None

    def active_codes(self) -> dict[str, str]:
        """``{incident id: code}`` of the open incidents: a cheap look (no records built)."""
        return dict(self._read("active_codes", "SELECT incident_id, code FROM incidents WHERE active = 1"))

    def by_ids(self, incident_ids: Sequence[str]) -> dict[str, Incident]:
        """The incidents with these ids (an id pruned meanwhile is missing)."""
        out: dict[str, Incident] = {}
        for k in range(0, len(incident_ids), 500):
            part = list(incident_ids[k : k + 500])
            sql = f"SELECT {self._incident_cols()} FROM incidents WHERE incident_id IN ({','.join('?' * len(part))})"
            for row in self._read("by_ids", sql, part):
                inc = schema.incident_from_row(row)
                out[inc.incident_id] = inc
        return out

    def _message_of(self, inc: Incident) -> str:
        rows = self._read("message", "SELECT message FROM incidents WHERE incident_id = ?", (inc.incident_id,))
        if not rows or rows[0][0] is None:
            raise JournalError(f"message: incident {inc.incident_id} ({inc.code}) has no row in {self.path}")
        return str(rows[0][0])

    def active(self) -> list[Incident]:
        """The open incidents, newest ``start_time`` first."""
        return self.history(limit=-1, active_only=True)

    def iter_active(self, *, messages: bool = True) -> Iterator[Incident]:
        """``active()`` one incident at a time (the daemon's start: 10,000 rows are not held
        in a list next to the incidents made of them, whose freed memory would stay with
        the process). ``messages=False``: the messages are not read; each incident reads
        its own through ``message_of`` when asked (the daemon's engine, issue 13)."""
        cols = self._incident_cols()
        if not messages:
            names = cols.split(", ")
            names[_MESSAGE_AT] = "NULL"
            cols = ", ".join(names)
        sql = f"SELECT {cols} FROM incidents WHERE active = 1 ORDER BY start_time DESC, rowid DESC"
        source = self.message_of
        try:
            for row in self._conn().execute(sql):
                inc = schema.incident_from_row(row)
                if not messages:
                    inc.keep_message_in(source)
                yield inc
        except sqlite3.Error as e:
            raise JournalError(f"active: {e}") from e

    def _incident_cols(self) -> str:
        """The incidents columns to select, ``notified`` last. A read-only view of a file
        an older daemon still runs on (schema < 3: upgraded, not restarted yet) has no
        ``notified``: it reads as empty; one of schema < 4 has no ``notices_muted`` /
        ``resolved_by``: 0 and null; one of schema < 6 none of the §9 bookkeeping."""
        if self._incident_sql is None:
            version = self._read("user_version", "PRAGMA user_version")[0][0]
            # columns a file of an older schema lacks, read as their defaults
            older = {
                "notified": ("'[]'", 3),
                "notices_muted": ("0", 4),
                "resolved_by": ("NULL", 4),
                # schema 6 (CONTRACT §9, the engine's noise bookkeeping)
                "re_alerts": ("0", 6),
                "reminded_at": ("NULL", 6),
                "src": ("-1", 6),
                "flapping": ("0", 6),
            }
            cols = [older[c][0] if c in older and version < older[c][1] else c for c in schema.INCIDENT_COLS]
            self._incident_sql = ", ".join(cols)
        return self._incident_sql

    def positions(self) -> list[Position]:
        """The stored file positions (``Tailer`` starts from them), in no particular order."""
        rows = self._read(
            "positions",
            "SELECT " + ", ".join(f'"{c}"' for c in _POSITION_COLS) + " FROM positions",
        )
        return [
            Position(
                dev=r[0],
                ino=r[1],
                path=_path_out(r[2]),
                offset=r[3],
                fp_len=r[4],
                fp_hash=r[5],
                lines_read=r[6],
                lines_skipped=r[7],
                source=r[8],
                extra=json.loads(r[9]),
            )
            for r in rows
        ]


_INCIDENT_UPSERT = (
    f"INSERT INTO incidents ({', '.join(_INCIDENT_DATA_COLS)}, notified, created_at, updated_at)"
    f" VALUES ({', '.join('?' * (len(_INCIDENT_DATA_COLS) + 3))})"
    " ON CONFLICT (incident_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _INCIDENT_DATA_COLS if c != "incident_id")
    + ", notified = excluded.notified, updated_at = excluded.updated_at"
)

_INCIDENT_UPDATE = (
    "UPDATE incidents SET "
    + ", ".join(f"{c} = ?" for c in (*_INCIDENT_UPDATE_COLS, "notified", "updated_at"))
    + " WHERE incident_id = ?"
)

_POSITION_UPSERT = (
    "INSERT INTO positions (" + ", ".join(f'"{c}"' for c in _POSITION_COLS) + ")"
    f" VALUES ({', '.join('?' * len(_POSITION_COLS))})"
    " ON CONFLICT (dev, ino) DO UPDATE SET " + ", ".join(f'"{c}" = excluded."{c}"' for c in _POSITION_COLS[2:])
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
