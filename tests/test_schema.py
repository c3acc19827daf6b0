"""store.schema: the store's files and modes, its schema and migrations, opening a connection."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from errord.errors import JournalError
from errord.store.journal import Journal
from errord.store.schema import DB_NAME, MIGRATIONS, SCHEMA_VERSION
from test_journal import make_incident, make_notice, make_position


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_creates_private_dir_and_db_even_with_open_umask(tmp_path: Path) -> None:
    state = tmp_path / "a" / "state"
    old = os.umask(0)
    try:
        j = Journal(state)
        j.commit([make_incident()], [make_position()], [make_notice()], now=5.0)
    finally:
        os.umask(old)
    try:
        assert mode(state) == 0o700
        assert mode(state / DB_NAME) == 0o600
        # SQLite gives the WAL and shared-memory files the database file's mode.
        for suffix in ("-wal", "-shm"):
            p = state / (DB_NAME + suffix)
            assert p.exists() and mode(p) == 0o600, suffix
        db = sqlite3.connect(state / DB_NAME)
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"incidents", "positions", "notices", "deliveries", "meta"} <= tables
        db.close()
    finally:
        j.close()


def test_existing_wide_dir_is_left_alone_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o755)
    with caplog.at_level(logging.WARNING, logger="errord.store.schema"):
        Journal(state).close()
    assert mode(state) == 0o755
    assert "0700" in caplog.text


def test_reopen_keeps_data_and_newer_schema_is_refused(tmp_path: Path) -> None:
    with Journal(tmp_path) as j:
        j.set_meta("first_start", "1")
    with Journal(tmp_path) as j:
        assert j.get_meta("first_start") == "1"
        assert j.get_meta("missing") is None
        j.set_meta("first_start", "2")
        assert j.get_meta("first_start") == "2"
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(JournalError, match="newer"):
        Journal(tmp_path)


def test_readonly_without_state_says_so(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no state in"):
        Journal(tmp_path / "nothing", readonly=True)
    assert not (tmp_path / "nothing").exists()


def _schema_2_store(state: Path) -> None:
    """An errord.db as the schema-2 errord left it: an incident alerted to targets a and b
    (a warning still queued for b), one alerted whose deliveries were pruned, one silent,
    one closed, and a notice of another incident for target c."""
    state.mkdir()
    db = sqlite3.connect(state / DB_NAME, isolation_level=None)
    for stmts in MIGRATIONS[:2]:
        for stmt in stmts:
            db.execute(stmt)
    db.execute("PRAGMA user_version = 2")
    cols = (
        "incident_id, code, message, start_time, last_log_time, server_id, node_name, active, cleared_at,"
        " created_at, updated_at, occurrences, alerts_sent, last_alert_time, app"
    )
    for iid, active, alerts in (("alerted", 1, 2), ("pruned", 1, 1), ("silent", 1, 0), ("closed", 0, 1)):
        db.execute(
            f"INSERT INTO incidents ({cols}) VALUES (?, ?, 'm', 1, 1, 's', 'n', ?, NULL, 1, 1, 3, ?, 1, NULL)",
            (iid, iid.upper(), active, alerts),
        )
    notices = [
        (1, "failure", "alerted", "a", 5.0),
        (2, "failure", "alerted", "b", 5.0),
        (3, "warning", "alerted", "b", None),
        (4, "success", "closed", "c", 5.0),
        (5, "failure", "closed", "a", 5.0),
    ]
    for nid, typ, iid, target, delivered in notices:
        db.execute(
            "INSERT INTO notices (id, type, code, title, body, incident_id, event_time, created_at)"
            " VALUES (?, ?, 'X', 't', 'b', ?, 1, 1)",
            (nid, typ, iid),
        )
        db.execute(
            "INSERT INTO deliveries (notice_id, target, next_at, delivered_at) VALUES (?, ?, 0, ?)",
            (nid, target, delivered),
        )
    db.close()


def test_migration_to_3_takes_who_was_alerted_from_the_outbox(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _schema_2_store(state)
    # read-only, before the daemon migrated (an upgraded CLI beside an old daemon): readable
    with Journal(state, readonly=True) as ro:
        assert {i.incident_id: i.notified for i in ro.history()} == {
            "alerted": (),
            "pruned": (),
            "silent": (),
            "closed": (),
        }
    with Journal(state) as j:
        got = {i.incident_id: i.notified for i in j.history()}
    assert sorted(got.pop("alerted")) == ["a", "b"]  # failures and warnings, queued or delivered
    assert got == {"pruned": ("*",), "silent": (), "closed": ()}  # "*": alerted, targets unknown
    db = sqlite3.connect(state / DB_NAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert "v3_alerted" not in {r[0] for r in db.execute("SELECT name FROM sqlite_temp_master")}
    db.close()


def test_migration_to_4_adds_muted_counts_resolved_by_silences_and_commands(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _schema_2_store(state)
    db = sqlite3.connect(state / DB_NAME, isolation_level=None)
    for stmt in MIGRATIONS[2]:  # as the schema-3 errord left it
        db.execute(stmt)
    db.execute("PRAGMA user_version = 3")
    db.close()
    # read-only, before the daemon migrated: the new fields read as their defaults, no silences
    with Journal(state, readonly=True) as ro:
        assert {i.incident_id: (i.notices_muted, i.resolved_by) for i in ro.history()} == {
            "alerted": (0, None),
            "pruned": (0, None),
            "silent": (0, None),
            "closed": (0, None),
        }
        assert ro.control.silences() == [] and ro.control.pending() == []
    with Journal(state) as j:
        got = {i.incident_id: (i.notices_muted, i.resolved_by, i.notified) for i in j.history()}
        assert j.control.silences() == [] and j.control.pending() == []
    # every incident closed before schema 4 was closed by a clear line; "notified" is kept
    assert got["closed"] == (0, "clear", ())
    assert got["silent"] == (0, None, ())
    assert got["pruned"] == (0, None, ("*",))
    db = sqlite3.connect(state / DB_NAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 4  # later ones appended
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"silences", "commands"} <= tables
    db.close()


def test_many_connections_open_and_close_a_fresh_store_at_once(tmp_path: Path) -> None:
    # The daemon, its notify workers and CLI reads all open the same new file at start;
    # switching it to WAL (or the last close's checkpoint) can meet SQLITE_BUSY without
    # the busy handler being asked. Opening must ride that out.
    import threading

    errors: list[BaseException] = []

    def churn(state: Path, barrier: threading.Barrier) -> None:
        barrier.wait()
        for _ in range(5):
            try:
                Journal(state).close()
            except BaseException as e:
                errors.append(e)

    for k in range(40):
        barrier = threading.Barrier(4)
        threads = [threading.Thread(target=churn, args=(tmp_path / f"s{k}", barrier)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
