"""journal.Journal: the SQLite store for incidents, positions and the notify outbox."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from errord.errors import JournalError
from errord.store.journal import DB_NAME, SCHEMA_VERSION, Journal
from errord.model import Incident, Notice, NoticeType, Position


def make_incident(code: str = "E1", *, start: float = 1000.0, iid: str | None = None, **kw: object) -> Incident:
    values: dict[str, object] = dict(
        code=code,
        message=f"{code} happened",
        start_time=start,
        last_log_time=start,
        server_id="srv",
        node_name="node",
        active=True,
        cleared_at=None,
        created_at=0.0,
        updated_at=0.0,
        occurrences=1,
        alerts_sent=1,
        last_alert_time=start,
        app="app",
        incident_id=iid or f"id-{code}-{start}",
    )
    values.update(kw)
    return Incident(**values)  # type: ignore[arg-type]


def make_notice(code: str = "E1", *, tags: tuple[str, ...] = (), kind: NoticeType = NoticeType.FAILURE,
                title: str | None = None, targets: tuple[str, ...] = ("stderr",)) -> Notice:  # fmt: skip
    return Notice(
        type=kind,
        code=code,
        title=title or f"🚨 {code} on srv/node",
        body=f"{code} happened\napp: app",
        incident_id=f"id-{code}",
        event_time=1000.0,
        tags=tags,
        targets=targets,
    )


def make_position(ino: int = 1, offset: int = 100, **kw: object) -> Position:
    values: dict[str, object] = dict(
        dev=1, ino=ino, path=f"/var/log/app{ino}.jsonl", offset=offset, fp_len=64,
        fp_hash="ab" * 8, lines_read=10, lines_skipped=1, source=0,
    )  # fmt: skip
    values.update(kw)
    return Position(**values)  # type: ignore[arg-type]


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "state")
    yield j
    j.close()


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


# -- files, modes, schema -------------------------------------------------------------------


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
    with caplog.at_level(logging.WARNING, logger="errord.store.journal"):
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


# -- commit ---------------------------------------------------------------------------------


def test_commit_round_trip(tmp_path: Path) -> None:
    inc = make_incident("E1", re_alert=900.0, since_alert=3)
    closed = make_incident("E2", active=False, cleared_at=1500.0, app=None)
    pos = make_position(extra={"rotated_from": [1, 2], "note": "x"})
    notice = make_notice("E1", tags=())
    with Journal(tmp_path) as j:
        out = j.commit([inc, closed], [pos], [notice], now=2000.0)
        assert out == [notice] and notice.id is not None
        assert inc.created_at == inc.updated_at == 2000.0
    with Journal(tmp_path) as j:
        assert j.load_active() == [inc]
        assert sorted(j.history(), key=lambda i: i.code) == [inc, closed]
        assert isinstance(j.history()[0].active, bool)
        assert j.load_positions() == [pos]
        due = j.due_deliveries("stderr", 10, now=2000.0)
        assert [(n.id, n) for _, n in due] == [(notice.id, notice)]
        assert j.pending_notices() == 1


def test_created_at_kept_on_update(journal: Journal) -> None:
    inc = make_incident()
    journal.commit([inc], [], [], now=100.0)
    assert (inc.created_at, inc.updated_at) == (100.0, 100.0)
    later = inc.copy()
    later.created_at = 0.0  # a caller that lost it must not reset the record
    later.occurrences = 5
    journal.commit([later], [], [], now=200.0)
    assert (later.created_at, later.updated_at) == (100.0, 200.0)
    [stored] = journal.history()
    assert (stored.created_at, stored.updated_at, stored.occurrences) == (100.0, 200.0, 5)


def test_positions_upsert_and_gone_deleted(journal: Journal) -> None:
    journal.commit([], [make_position(1, 10), make_position(2, 20)], [], now=1.0)
    journal.commit([], [make_position(1, 99), make_position(2, 20, gone=True)], [], now=2.0)
    assert [(p.ino, p.offset) for p in journal.positions()] == [(1, 99)]


# -- routing ----------------------------------------------------------------------------------


def deliveries(j: Journal) -> list[tuple[int, str]]:
    return [(nid, t) for nid, t in j._conn().execute(
        "SELECT notice_id, target FROM deliveries ORDER BY id")]  # fmt: skip


def test_one_delivery_per_target_key_none_is_recorded_not_sent(journal: Journal) -> None:
    # Routing is routing.Router's (tests/test_routing.py): the journal takes the keys as given.
    n_ab, n_c, n_none = (make_notice("E1", targets=("a", "b")), make_notice("E2", tags=("ops",), targets=("c",)),
                         make_notice("E3", tags=("nobody",), targets=()))  # fmt: skip
    journal.commit([], [], [n_ab, n_c, n_none], now=1.0)
    assert deliveries(journal) == [(n_ab.id, "a"), (n_ab.id, "b"), (n_c.id, "c")]
    assert n_none.id is not None  # stored, nothing pending for it
    assert journal.pending_by_target() == {"a": 1, "b": 1, "c": 1}
    [(_, got)] = journal.due_deliveries("c", 10, now=1.0)
    assert (got.code, got.tags) == ("E2", ("ops",))


def test_notified_round_trips_and_is_updated(journal: Journal) -> None:
    inc = make_incident("E1", notified=("a",))
    journal.commit([inc], [], [], now=1.0)
    assert journal.load_active()[0].notified == ("a",)
    inc.notified = ("a", "b")
    journal.commit([inc], [], [], now=2.0)
    [back] = journal.load_active()
    assert back.notified == ("a", "b") and back == inc
    plain = make_incident("E2")
    journal.commit([plain], [], [], now=3.0)
    assert {i.code: i.notified for i in journal.history()} == {"E1": ("a", "b"), "E2": ()}
    # a recovered incident keeps it too (import_incidents writes it verbatim)
    journal.import_incidents([make_incident("E3", iid="rec", notified=("*",))])
    assert {i.code: i.notified for i in journal.history()}["E3"] == ("*",)


def _schema_2_store(state: Path) -> None:
    """An errord.db as the schema-2 errord left it: an incident alerted to targets a and b
    (a warning still queued for b), one alerted whose deliveries were pruned, one silent,
    one closed, and a notice of another incident for target c."""
    from errord.store.journal import MIGRATIONS

    state.mkdir()
    db = sqlite3.connect(state / DB_NAME, isolation_level=None)
    for stmts in MIGRATIONS[:2]:
        for stmt in stmts:
            db.execute(stmt)
    db.execute("PRAGMA user_version = 2")
    cols = ("incident_id, code, message, start_time, last_log_time, server_id, node_name, active, cleared_at,"
            " created_at, updated_at, occurrences, alerts_sent, last_alert_time, app")
    for iid, active, alerts in (("alerted", 1, 2), ("pruned", 1, 1), ("silent", 1, 0), ("closed", 0, 1)):
        db.execute(f"INSERT INTO incidents ({cols}) VALUES (?, ?, 'm', 1, 1, 's', 'n', ?, NULL, 1, 1, 3, ?, 1, NULL)",
                   (iid, iid.upper(), active, alerts))
    notices = [(1, "failure", "alerted", "a", 5.0), (2, "failure", "alerted", "b", 5.0),
               (3, "warning", "alerted", "b", None), (4, "success", "closed", "c", 5.0),
               (5, "failure", "closed", "a", 5.0)]
    for nid, typ, iid, target, delivered in notices:
        db.execute("INSERT INTO notices (id, type, code, title, body, incident_id, event_time, created_at)"
                   " VALUES (?, ?, 'X', 't', 'b', ?, 1, 1)", (nid, typ, iid))
        db.execute("INSERT INTO deliveries (notice_id, target, next_at, delivered_at) VALUES (?, ?, 0, ?)",
                   (nid, target, delivered))
    db.close()


def test_migration_to_3_takes_who_was_alerted_from_the_outbox(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _schema_2_store(state)
    # read-only, before the daemon migrated (an upgraded CLI beside an old daemon): readable
    with Journal(state, readonly=True) as ro:
        assert {i.incident_id: i.notified for i in ro.history()} == {
            "alerted": (), "pruned": (), "silent": (), "closed": ()}  # fmt: skip
    with Journal(state) as j:
        got = {i.incident_id: i.notified for i in j.history()}
    assert sorted(got.pop("alerted")) == ["a", "b"]  # failures and warnings, queued or delivered
    assert got == {"pruned": ("*",), "silent": (), "closed": ()}  # "*": alerted, targets unknown
    db = sqlite3.connect(state / DB_NAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert "v3_alerted" not in {r[0] for r in db.execute("SELECT name FROM sqlite_temp_master")}
    db.close()


# -- outbox -----------------------------------------------------------------------------------


def test_due_deliveries_strict_order_and_backoff(journal: Journal) -> None:
    notes = [make_notice(f"E{i}", targets=("a", "b")) for i in range(3)]
    journal.commit([], [], notes, now=100.0)
    due = journal.due_deliveries("a", 50, now=100.0)
    assert [n.code for _, n in due] == ["E0", "E1", "E2"]
    assert [n.code for _, n in journal.due_deliveries("a", 2, now=100.0)] == ["E0", "E1"]
    assert journal.due_deliveries("a", 50, now=99.0) == []  # not yet due

    first = due[0][0]
    journal.mark_failed(first, "503", next_at=110.0)
    head = journal.head("a")
    assert head is not None and (head.id, head.attempts, head.next_at) == (first, 1, 110.0)
    # The head is backing off: nothing newer may overtake it.
    assert journal.due_deliveries("a", 50, now=105.0) == []
    # Another target is not held up.
    assert [n.code for _, n in journal.due_deliveries("b", 50, now=105.0)] == ["E0", "E1", "E2"]
    # Once due, the same order again, the failed one first.
    assert [d for d, _ in journal.due_deliveries("a", 50, now=110.0)] == [d for d, _ in due]

    journal.mark_delivered([first, due[1][0]], now=111.0)
    assert [n.code for _, n in journal.due_deliveries("a", 50, now=111.0)] == ["E2"]
    assert journal.pending_by_target() == {"a": 1, "b": 3}
    journal.mark_delivered([due[2][0]], now=112.0)
    assert journal.head("a") is None
    assert journal.due_deliveries("a", 50, now=200.0) == []


def test_drop_target_deliveries(journal: Journal, caplog: pytest.LogCaptureFixture) -> None:
    journal.commit([], [], [make_notice("E1", targets=("a", "b")), make_notice("E2", targets=("a", "b"))], now=1.0)
    with caplog.at_level(logging.WARNING, logger="errord.store.journal"):
        assert journal.drop_target_deliveries({"a"}) == 2
    assert journal.pending_by_target() == {"a": 2}
    assert "dropped its 2 pending" in caplog.text
    assert journal.drop_target_deliveries({"a"}) == 0


def test_prune(journal: Journal) -> None:
    day = 86400.0
    old_sent, old_pending = make_notice("OLD1", targets=("a",)), make_notice("OLD2", targets=("a",))
    journal.commit([], [], [old_sent, old_pending], now=0.0)
    [(d_sent, _), _] = journal.due_deliveries("a", 50, now=0.0)
    journal.mark_delivered([d_sent], now=1.0)
    recent = make_notice("NEW", targets=("a",))
    journal.commit([], [], [recent], now=9 * day)
    [(d_recent, _)] = [x for x in journal.due_deliveries("a", 50, now=9 * day) if x[1].code == "NEW"]
    journal.mark_delivered([d_recent], now=9 * day)

    assert journal.prune(now=10 * day) == 1
    codes = [r[0] for r in journal._conn().execute("SELECT code FROM notices ORDER BY id")]
    assert codes == ["OLD2", "NEW"]  # still pending: kept however old; recent: kept
    assert journal.pending_notices() == 1
    assert journal.prune(now=10 * day) == 0


# -- failures ---------------------------------------------------------------------------------


def counts(j: Journal) -> tuple[int, ...]:
    db = j._conn()
    return tuple(
        db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        for t in ("incidents", "positions", "notices", "deliveries")
    )


def test_failed_commit_writes_nothing_and_journal_recovers(journal: Journal) -> None:
    inc, notice = make_incident(), make_notice()
    bad = make_position(2, path=None)  # NOT NULL violated
    with pytest.raises(JournalError):
        journal.commit([inc], [make_position(1), bad], [notice], now=50.0)
    assert counts(journal) == (0, 0, 0, 0)
    assert notice.id is None and inc.created_at == 0.0  # caller's objects untouched

    unserialisable = make_position(3, extra={"x": object()})
    with pytest.raises(JournalError):
        journal.commit([inc], [unserialisable], [notice], now=50.0)
    too_big = make_position(4, offset=1 << 70)
    with pytest.raises(JournalError):
        journal.commit([inc], [too_big], [notice], now=50.0)
    assert counts(journal) == (0, 0, 0, 0)

    journal.commit([inc], [make_position(1)], [notice], now=60.0)
    assert counts(journal) == (1, 1, 1, 1)
    assert notice.id is not None and inc.created_at == 60.0


def test_commit_fails_cleanly_while_another_writer_holds_the_lock(tmp_path: Path) -> None:
    j = Journal(tmp_path, busy_timeout=0.05)
    other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    t0 = time.monotonic()
    with pytest.raises(JournalError, match="locked"):
        j.commit([make_incident()], [make_position()], [make_notice()], now=1.0)
    assert time.monotonic() - t0 < 2
    other.execute("ROLLBACK")
    other.close()
    j.commit([make_incident()], [make_position()], [make_notice()], now=2.0)
    assert counts(j) == (1, 1, 1, 1)
    j.close()


def test_closed_journal_raises_journal_error(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.close()
    with pytest.raises(JournalError):
        j.commit([make_incident()], [], [], now=1.0)
    with pytest.raises(JournalError):
        j.history()


def test_readonly_reader_while_writer_holds_a_write_transaction(tmp_path: Path) -> None:
    writer = Journal(tmp_path)
    writer.commit([make_incident("E1")], [make_position()], [], now=1.0)
    # Another writer (the daemon, mid-batch) holds the write lock with uncommitted rows.
    busy = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    busy.execute("BEGIN IMMEDIATE")
    busy.execute("UPDATE incidents SET occurrences = 99")
    reader = Journal(tmp_path, readonly=True)
    t0 = time.monotonic()
    [inc] = reader.history()
    assert inc.code == "E1" and inc.occurrences == 1  # committed state only
    assert len(reader.positions()) == 1 and len(reader.active()) == 1
    assert reader.pending_notices() == 0
    assert time.monotonic() - t0 < 1  # not blocked by the writer
    with pytest.raises(JournalError):
        reader.set_meta("k", "v")
    busy.execute("COMMIT")
    busy.close()
    assert reader.history()[0].occurrences == 99
    reader.close()
    writer.close()


# -- reads --------------------------------------------------------------------------------------


def test_history_order_and_filters(journal: Journal) -> None:
    incs = [
        make_incident("A", start=100.0, active=False, cleared_at=150.0),
        make_incident("B", start=300.0),
        make_incident("A", start=200.0),
        make_incident("C", start=50.0, active=False, cleared_at=60.0),
    ]
    journal.commit(incs, [], [], now=1.0)
    assert [(i.code, i.start_time) for i in journal.history()] == [
        ("B", 300.0), ("A", 200.0), ("A", 100.0), ("C", 50.0)]  # fmt: skip
    assert [i.start_time for i in journal.history(code="A")] == [200.0, 100.0]
    assert [i.start_time for i in journal.history(code="A", active_only=True)] == [200.0]
    assert [i.code for i in journal.history(limit=2)] == ["B", "A"]
    assert [i.code for i in journal.history(active_only=True)] == ["B", "A"]
    assert [i.code for i in journal.active()] == ["B", "A"]
    assert journal.history(code="nope") == []


def test_history_by_app_since_and_state(journal: Journal) -> None:
    journal.commit([
        make_incident("A", start=100.0, active=False, cleared_at=150.0, app="shop"),
        make_incident("B", start=300.0, app="billing"),
        make_incident("A", start=200.0, app="shop"),
        make_incident("C", start=50.0, active=False, cleared_at=60.0, app=None),
    ], [], [], now=1.0)  # fmt: skip
    assert [(i.code, i.start_time) for i in journal.history(app="shop")] == [("A", 200.0), ("A", 100.0)]
    assert [i.start_time for i in journal.history(since=200.0)] == [300.0, 200.0]  # at or after
    assert [i.start_time for i in journal.history(state="cleared")] == [100.0, 50.0]
    assert [i.start_time for i in journal.history(state="active")] == [300.0, 200.0]
    assert [i.start_time for i in journal.history(code="A", app="shop", since=150.0, state="active")] == [200.0]
    assert journal.history(app="shop", state="cleared", since=150.0) == []
    assert [i.start_time for i in journal.history(state="active", active_only=True)] == [300.0, 200.0]
    with pytest.raises(ValueError):
        journal.history(state="cleared", active_only=True)  # contradictory
    with pytest.raises(ValueError):
        journal.history(state="open")  # type: ignore[arg-type]


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
            except BaseException as e:  # noqa: BLE001 - collected for the assertion
                errors.append(e)

    for k in range(40):
        barrier = threading.Barrier(4)
        threads = [
            threading.Thread(target=churn, args=(tmp_path / f"s{k}", barrier)) for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
