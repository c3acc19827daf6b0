"""What the store is on disk: its files and their modes, the tables and their migrations,
the connection's pragmas, the WAL's size, and how an incident row maps to an ``Incident``.

Everything here is about one SQLite file and how a connection to it is opened; what is
written, and in which transaction, is the ``Journal``'s (``store/journal.py``) and its
parts' (``store/outbox.py``, ``store/mongoqueue.py``). A new table or column is a new
entry in ``MIGRATIONS``; a new part of the store is a new module over the journal's
connection, not a new connection.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import sys
import time
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from errord.errors import JournalError, NoStateError, StateError
from errord.model import INCIDENT_COLUMNS, Incident
from errord.policy.route import UNKNOWN_ALERTED
from errord.ratelimit import RateLimit
from errord.store.runstate import STATE_MARKER, connecting, lost_state, mark_state

__all__ = [
    "DB_NAME",
    "INCIDENT_COLS",
    "META_GET",
    "META_UPSERT",
    "MIGRATIONS",
    "MODE_WARN_EVERY",
    "SCHEMA_VERSION",
    "WAL_SIZE_LIMIT",
    "Opener",
    "Read",
    "Transact",
    "checkpoint",
    "connect",
    "incident_from_row",
    "mark_built",
    "notified_json",
    "prepare_files",
    "wal_size",
]

logger = logging.getLogger(__name__)

DB_NAME = "errord.db"

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
    # v3 -> v4: people in control (CONTRACT §8). The record gains notices_muted and
    # resolved_by (every incident closed before this was closed by a clear line);
    # silences (and acks) persist here; commands is the hand-over from the CLI to a
    # running daemon (the CLI inserts, the daemon's loop applies and writes the outcome).
    (
        "ALTER TABLE incidents ADD COLUMN notices_muted INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE incidents ADD COLUMN resolved_by TEXT",
        "UPDATE incidents SET resolved_by = 'clear' WHERE active = 0",
        """CREATE TABLE silences (
            id TEXT PRIMARY KEY,
            pattern TEXT NOT NULL,
            app TEXT NOT NULL,
            starts_at REAL NOT NULL,
            ends_at REAL,
            until_resolved INTEGER NOT NULL,
            incident_ids TEXT NOT NULL DEFAULT '[]',
            reason TEXT NOT NULL DEFAULT '',
            by_name TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            ended_at REAL,
            muted INTEGER NOT NULL DEFAULT 0,
            ack INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE commands (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            args TEXT NOT NULL,
            created_at REAL NOT NULL,
            done_at REAL,
            status INTEGER,
            outcome TEXT
        )""",
        "CREATE INDEX commands_pending ON commands (id) WHERE done_at IS NULL",
    ),
    # Storm limits (CONTRACT §9, store/limits.py): per notify target, the times of its
    # latest sends, since when it holds its queued notices for a digest, its digest tallies.
    # Self-contained: one new table, nothing else changed.
    (
        """CREATE TABLE IF NOT EXISTS limit_state (
            target TEXT PRIMARY KEY,
            sends TEXT NOT NULL DEFAULT '[]',
            held_since REAL,
            digests INTEGER NOT NULL DEFAULT 0,
            digested INTEGER NOT NULL DEFAULT 0
        )""",
    ),
    # CONTRACT §9 (noise control, the engine's side): the backoff's count, the reminder
    # schedule and the source whose quiet clock judges an incident
    (
        "ALTER TABLE incidents ADD COLUMN re_alerts INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE incidents ADD COLUMN reminded_at REAL",
        "ALTER TABLE incidents ADD COLUMN src INTEGER NOT NULL DEFAULT -1",
        "ALTER TABLE incidents ADD COLUMN flapping INTEGER NOT NULL DEFAULT 0",
    ),
    # notices17: what a notice says (CONTRACT §11). Each notice keeps its template
    # variables (JSON), so a target with a template renders it in the helper; NULL for
    # notices made before this (they go out in the built-in text they were stored with).
    ("ALTER TABLE notices ADD COLUMN vars TEXT",),
    # notices17: what each [[alertmanager]] (by URL key) was told is open and not yet told
    # resolved (CONTRACT §11): a row is deleted once Alertmanager accepted the resolve, so a
    # resolve made while it was down is pushed when it is back (store/alerts.py).
    (
        """CREATE TABLE am_alerts (
            target TEXT NOT NULL,
            incident_id TEXT NOT NULL,
            pushed_at REAL NOT NULL,
            PRIMARY KEY (target, incident_id)
        ) WITHOUT ROWID""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

META_GET = "SELECT value FROM meta WHERE key = ?"
META_UPSERT = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"

# The WAL is restarted (and cut to WAL_SIZE_LIMIT) by SQLite's own checkpoints only when no
# reader is using it at that moment; readers that overlap (status polls, notify workers)
# can hold that off for ever, and each delivered notice adds ~10 KB. See ``checkpoint``.
WAL_SIZE_LIMIT = 4 << 20

# Every Journal() checks the modes, and the notify workers open one again after each
# journal error: a mode warning is told once an hour per path and process, not each time.
# Process-wide on purpose, as Python's own warnings registry: it limits log lines, not state.
MODE_WARN_EVERY = 3600.0
_mode_warn = RateLimit(MODE_WARN_EVERY)


# -- how the journal's parts reach its connection -----------------------------------------


class Transact(Protocol):
    """The journal's one write transaction (``Journal._tx``): yields its connection; any
    failure rolls back and raises ``JournalError``."""

    def __call__(self, what: str) -> AbstractContextManager[sqlite3.Connection]: ...


class Read(Protocol):
    """One read on the journal's connection (``Journal._read``); errors raise ``JournalError``."""

    def __call__(self, what: str, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...


# ``sqlite3.connect`` or a stand-in with its signature (tests wrap the connection to inject faults).
Opener = Callable[..., sqlite3.Connection]


# -- files and modes ------------------------------------------------------------------------


def prepare_files(state_dir: Path, path: Path) -> None:
    """Create ``state_dir`` 0700 and the database file ``path`` 0600 before SQLite opens it;
    warn (do not touch) where an existing one is wider. Raises ``OSError``."""
    _prepare_dir(state_dir)
    _create_db_file(path)


def _prepare_dir(state_dir: Path) -> None:
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
    # SQLite gives the -wal and -shm files the mode of the database file, so these are
    # never world-readable either. ``os.open`` avoids touching the process-wide umask,
    # which other threads may rely on.
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


def mark_built(state_dir: Path, held: Collection[str]) -> None:
    """Write the ``errord.state`` marker (``runstate``) unless ``held`` has it already."""
    if STATE_MARKER in held:
        return
    try:
        mark_state(state_dir)
    except OSError as e:  # a full disk: the store works; only the marker is missing
        if _mode_warn.allow(("marker", str(state_dir))):
            logger.warning("cannot write %s in %s: %s", STATE_MARKER, state_dir, e)


# -- the connection -------------------------------------------------------------------------


def connect(
    path: Path, held: Collection[str], *, readonly: bool, busy_timeout: float, opener: Opener = sqlite3.connect
) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode with errord's pragmas and schema.

    A writer switches the file to WAL with ``synchronous=FULL`` and migrates it to
    ``SCHEMA_VERSION``; a reader (``readonly``) only checks it has a schema. ``held`` is
    what ``runstate.check_state_dir`` found: a schemaless file where the marker says a
    store was built is refused (``StateError``). Raises ``JournalError``.
    """
    connecting(path)  # from now on this process never closes a descriptor of its own on it
    try:
        if readonly:
            uri = f"file:{quote(str(path.absolute()))}?mode=ro"
            db = opener(uri, uri=True, timeout=busy_timeout, isolation_level=None)
        else:
            db = opener(path, timeout=busy_timeout, isolation_level=None)
    except sqlite3.Error as e:
        raise JournalError(f"cannot open {path}: {e}") from e
    try:
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        _setup(db, path, held, readonly, busy_timeout)
    except sqlite3.Error as e:
        db.close()
        if type(e) is sqlite3.DatabaseError:  # not a database, malformed: no retry mends it
            raise StateError(lost_state(path.parent, path.name, f"unreadable ({e})", list(held))) from None
        raise JournalError(f"cannot open {path}: {e}") from e
    except JournalError:
        db.close()
        raise
    return db


def _setup(db: sqlite3.Connection, path: Path, held: Collection[str], readonly: bool, busy_timeout: float) -> None:
    # Switching a new file to WAL, or migrating it, can meet SQLITE_BUSY without the
    # busy handler being consulted (several connections opening a fresh database at
    # once: the daemon and its notify workers). Retry within the busy timeout.
    end = time.monotonic() + busy_timeout
    while True:
        try:
            if readonly:
                if db.execute("PRAGMA user_version").fetchone()[0] == 0:
                    _refuse_schemaless(path, held)
                    raise NoStateError(f"no state in {path.parent} yet")
                return
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            db.execute("PRAGMA synchronous = FULL")
            # After a checkpoint resets the WAL, cut the file back to this size (by
            # default SQLite keeps it at its largest, which on a small disk is space lost).
            db.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            _migrate(db, path, held)
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            if time.monotonic() >= end:
                raise
            time.sleep(0.01)
    if mode != "wal":
        logger.warning("%s: journal_mode is %s, not wal; readers may block", path, mode)


def _refuse_schemaless(path: Path, held: Collection[str]) -> None:
    # A database without errord's schema where the marker says a store was built was
    # replaced (or reset): never build a fresh store on it silently (see ``runstate``).
    # Only the marker counts here: it is written once the schema is committed, while a
    # ``-wal`` exists as soon as a first connection switched a new file to WAL mode.
    if STATE_MARKER in held:
        raise StateError(lost_state(path.parent, path.name, "a database without errord's tables", [STATE_MARKER]))


def _migrate(db: sqlite3.Connection, path: Path, held: Collection[str]) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version == 0:
        _refuse_schemaless(path, held)
    if version > SCHEMA_VERSION:
        raise JournalError(f"{path} has schema {version}, newer than this errord ({SCHEMA_VERSION})")
    db.execute("BEGIN IMMEDIATE")
    try:
        # Re-read under the write lock: another process may have migrated meanwhile.
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for v in range(version, SCHEMA_VERSION):
            for stmt in MIGRATIONS[v]:
                db.execute(stmt)
            logger.info("journal %s: schema %d -> %d", path, v, v + 1)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


# -- the WAL ----------------------------------------------------------------------------------


def wal_size(path: Path) -> int:
    """Bytes in the ``-wal`` file of the database ``path`` now (0 when there is none)."""
    try:
        return os.stat(f"{path}-wal").st_size
    except OSError:
        return 0


def checkpoint(db: sqlite3.Connection, wait: float, busy_timeout: float) -> bool:
    """Copy the whole WAL into the database and truncate it to 0 bytes, waiting at most
    ``wait`` seconds for readers of older snapshots (and a writer) to finish; True when
    done. Readers that start meanwhile read the database file and do not hold it up.

    Blocks the calling thread for up to ``wait``, then restores ``busy_timeout``; SQLite's
    own checkpoints never wait, which is why a WAL with overlapping readers grows (see
    ``WAL_SIZE_LIMIT``). Raises ``sqlite3.Error``.
    """
    db.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
    try:
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    return not busy


# -- the incidents row ------------------------------------------------------------------------

INCIDENT_COLS = INCIDENT_COLUMNS
assert INCIDENT_COLS[-1] == "notified"  # stored as JSON text: incident_from_row decodes the last column

# notified tuple -> its JSON text: commit writes every changed incident of a batch, and
# the few distinct values (the targets' combinations) repeat.
_NOTIFIED_JSON: dict[tuple[str, ...], str] = {(): "[]"}


def notified_json(notified: tuple[str, ...]) -> str:
    """``Incident.notified`` as the JSON text of its column."""
    text = _NOTIFIED_JSON.get(notified)
    if text is None:
        if len(_NOTIFIED_JSON) > 1024:  # bounded: a cache, not a registry
            _NOTIFIED_JSON.clear()
            _NOTIFIED_JSON[()] = "[]"
        text = _NOTIFIED_JSON[notified] = json.dumps(list(notified))
    return text


_NOTIFIED_TUPLE: dict[str, tuple[str, ...]] = {"[]": ()}


def incident_from_row(row: Sequence[Any]) -> Incident:
    """An ``Incident`` from a row of ``INCIDENT_COLS``, in that order.

    What repeats from row to row is one object for all of them (the host names, the app,
    the notified targets): 10,000 open incidents restored at start hold each once, as the
    running engine does, not once per incident (~150 bytes each)."""
    inc = Incident(*row)  # (the host names: one tuple for a host's incidents, Incident.host)
    inc.flapping = bool(inc.flapping)
    if inc.app is not None:
        inc.app = sys.intern(inc.app)
    if inc.last_log_time == inc.start_time:
        inc.last_log_time = inc.start_time
    if inc.last_alert_time == inc.start_time:  # opened, never re-alerted: as the engine makes it
        inc.last_alert_time = inc.start_time
    if inc.updated_at == inc.created_at:
        inc.updated_at = inc.created_at
    text = row[-1] or "[]"
    notified = _NOTIFIED_TUPLE.get(text)
    if notified is None:
        notified = tuple(json.loads(text))
        if len(_NOTIFIED_TUPLE) < 1024:  # the targets' combinations: a few
            _NOTIFIED_TUPLE[text] = notified
    inc.notified = notified
    return inc
