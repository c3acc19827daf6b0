"""store.journal.Journal: the batch commit, the reads, meta and the connection's failures.

The schema, its files and migrations are tested in test_schema.py; the notice outbox in
test_outbox.py; the MongoDB queue in test_mongoqueue.py.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from chaos import Faults
from errord.errors import JournalError
from errord.model import Incident, Notice, NoticeType, Position
from errord.store.journal import Journal
from errord.store.schema import DB_NAME


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


def make_notice(
    code: str = "E1",
    *,
    tags: tuple[str, ...] = (),
    kind: NoticeType = NoticeType.FAILURE,
    title: str | None = None,
    targets: tuple[str, ...] = ("stderr",),
) -> Notice:
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
        dev=1,
        ino=ino,
        path=f"/var/log/app{ino}.jsonl",
        offset=offset,
        fp_len=64,
        fp_hash="ab" * 8,
        lines_read=10,
        lines_skipped=1,
        source=0,
    )
    values.update(kw)
    return Position(**values)  # type: ignore[arg-type]


@pytest.fixture(name="journal")
def fresh_journal(tmp_path: Path) -> Iterator[Journal]:
    """A journal on a new state_dir (import it as a fixture)."""
    j = Journal(tmp_path / "state")
    yield j
    j.close()


def stored(j: Journal, sql: str) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` as another connection to the file sees them: committed state only."""
    with closing(sqlite3.connect(f"file:{j.path}?mode=ro", uri=True)) as db:
        return db.execute(sql).fetchall()


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
        assert j.active() == [inc]
        assert sorted(j.history(), key=lambda i: i.code) == [inc, closed]
        assert isinstance(j.history()[0].active, bool)
        assert j.positions() == [pos]
        due = j.outbox.due_deliveries("stderr", 10, now=2000.0)
        assert [(n.id, n) for _, n in due] == [(notice.id, notice)]
        assert j.outbox.pending() == 1


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


def test_new_incidents_of_a_batch_share_one_created_at(journal: Journal) -> None:
    # memory (issue 13): 100,000 new incidents, one float object for their created_at, not one each
    old = make_incident("E0")
    journal.commit([old], [], [], now=50.0)
    now = float(time.time())
    fresh = [make_incident(f"E{k}") for k in range(1, 600)]  # over one 500-id query
    journal.commit([*fresh, old], [], [], now=now)
    assert all(i.created_at is now and i.updated_at is now for i in fresh)
    assert old.created_at == 50.0 and old.updated_at is now
    assert {i.created_at for i in journal.history(limit=-1)} == {50.0, now}


def test_restored_incidents_share_what_repeats(journal: Journal) -> None:
    # memory (issue 13): what repeats from row to row, or within a row, is one object
    incs = [make_incident(f"E{k}", start=1000.0 + k, server_id="host-a", app="web") for k in range(3)]
    journal.commit(incs, [], [], now=2000.0)
    a, b, _ = journal.active()
    assert a.server_id is b.server_id and a.app is b.app and a.node_name is b.node_name
    assert a.notified is b.notified
    assert a.last_log_time is a.start_time and a.last_alert_time is a.start_time
    assert a.updated_at is a.created_at


def test_release_memory_leaves_the_journal_usable(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.commit([make_incident(f"E{k}") for k in range(200)], [], [], now=100.0)
    assert len(j.active()) == 200
    j.release_memory()
    j.commit([make_incident("E200")], [], [], now=101.0)
    assert len(j.active()) == 201
    j.close()
    j.release_memory()  # closed: nothing to free, no error


def test_positions_upsert_and_gone_deleted(journal: Journal) -> None:
    journal.commit([], [make_position(1, 10), make_position(2, 20)], [], now=1.0)
    journal.commit([], [make_position(1, 99), make_position(2, 20, gone=True)], [], now=2.0)
    assert [(p.ino, p.offset) for p in journal.positions()] == [(1, 99)]


def test_notified_round_trips_and_is_updated(journal: Journal) -> None:
    inc = make_incident("E1", notified=("a",))
    journal.commit([inc], [], [], now=1.0)
    assert journal.active()[0].notified == ("a",)
    inc.notified = ("a", "b")
    journal.commit([inc], [], [], now=2.0)
    [back] = journal.active()
    assert back.notified == ("a", "b") and back == inc
    plain = make_incident("E2")
    journal.commit([plain], [], [], now=3.0)
    assert {i.code: i.notified for i in journal.history()} == {"E1": ("a", "b"), "E2": ()}
    # a recovered incident keeps it too (import_incidents writes it verbatim)
    journal.mongo.import_incidents([make_incident("E3", iid="rec", notified=("*",))])
    assert {i.code: i.notified for i in journal.history()}["E3"] == ("*",)


# -- failures ---------------------------------------------------------------------------------


def counts(j: Journal) -> tuple[int, ...]:
    tables = ("incidents", "positions", "notices", "deliveries")
    return tuple(stored(j, f"SELECT count(*) FROM {t}")[0][0] for t in tables)


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


def test_the_parts_follow_the_journal_to_a_new_connection(tmp_path: Path) -> None:
    """A failed rollback makes the journal drop its connection and open a new one; its
    outbox and MongoDB queue must write on that one (they hold the journal's transaction
    helper, not a connection), and mirroring stays on."""
    faults = Faults()
    with Journal(tmp_path, opener=faults.open) as j:
        j.mongo.mirror(True)
        faults.fail = lambda sql: sql.lstrip().upper().startswith(("COMMIT", "ROLLBACK"))
        with pytest.raises(JournalError, match="disk I/O error"):
            j.commit([make_incident("E1")], [make_position()], [make_notice("E1")], now=1.0)
        faults.fail = lambda sql: False
        j.commit([make_incident("E2")], [make_position()], [make_notice("E2", targets=("a",))], now=2.0)
        assert len(faults.opened) == 2  # reconnected once
        assert (j.outbox.pending(), j.mongo.pending()) == (1, 1)  # E2's, on the new connection
        [(did, notice)] = j.outbox.due_deliveries("a", 10, now=2.0)
        j.outbox.mark_delivered([did], now=3.0)
        assert notice.code == "E2" and j.outbox.pending() == 0
        [write] = j.mongo.batch(10)
        assert write.incident is not None and write.incident.code == "E2"
    assert counts_of(tmp_path) == (1, 1, 1, 1)


def counts_of(state: Path) -> tuple[int, ...]:
    with Journal(state, readonly=True) as j:
        return counts(j)


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
    assert reader.outbox.pending() == 0
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
        ("B", 300.0),
        ("A", 200.0),
        ("A", 100.0),
        ("C", 50.0),
    ]
    assert [i.start_time for i in journal.history(code="A")] == [200.0, 100.0]
    assert [i.start_time for i in journal.history(code="A", active_only=True)] == [200.0]
    assert [i.code for i in journal.history(limit=2)] == ["B", "A"]
    assert [i.code for i in journal.history(active_only=True)] == ["B", "A"]
    assert [i.code for i in journal.active()] == ["B", "A"]
    assert journal.history(code="nope") == []


def test_history_by_app_since_and_state(journal: Journal) -> None:
    journal.commit(
        [
            make_incident("A", start=100.0, active=False, cleared_at=150.0, app="shop"),
            make_incident("B", start=300.0, app="billing"),
            make_incident("A", start=200.0, app="shop"),
            make_incident("C", start=50.0, active=False, cleared_at=60.0, app=None),
        ],
        [],
        [],
        now=1.0,
    )
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


def test_an_incident_that_holds_no_message_updates_its_row_and_keeps_the_message(tmp_path: Path) -> None:
    """Issue 13: the daemon's open incidents read their message from the journal once it
    is committed (``keep_message_in``); writing one again leaves the row's message as it
    is, and one whose row is gone is refused, nothing of the batch written."""
    with Journal(tmp_path) as j:
        inc, other = make_incident("E1"), make_incident("E2")
        j.commit([inc, other], [], [], now=100.0)
        inc.keep_message_in(j.message_of)
        inc.occurrences = 5
        j.commit([inc], [], [], now=200.0)
        (back,) = [i for i in j.active() if i.code == "E1"]
        assert (back.message, back.occurrences, back.updated_at, back.created_at) == ("E1 happened", 5, 200.0, 100.0)
        assert (inc.updated_at, inc.created_at) == (200.0, 100.0)
        assert back == inc and inc.held_message is None
        ghost = make_incident("E3")
        ghost.keep_message_in(j.message_of)
        other.occurrences = 9
        with pytest.raises(JournalError, match=r"open incidents without a row \(nor a message\): \['id-E3-1000.0'\]"):
            j.commit([other, ghost], [], [], now=300.0)
        assert {i.code: i.occurrences for i in j.active()} == {"E1": 5, "E2": 1}
        with pytest.raises(JournalError, match=r"incident id-E3-1000.0 \(E3\) has no row"):
            _ = ghost.message


def test_sync_fsyncs_the_wal_without_a_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A notify worker's ``sync()`` (its delivered marks made durable against a power
    loss) is one fdatasync of the ``-wal`` file: no page copied into the database, no
    second fsync. A failing fdatasync is a JournalError, as a failing write is."""
    import os

    with Journal(tmp_path) as daemon:  # the daemon's connection keeps the WAL in place
        daemon.commit([], [Position(1, 2, "/x.log", 10)], [], time.time())
        with Journal(tmp_path, durable=False) as worker:
            worker.commit([], [Position(1, 3, "/y.log", 20)], [], time.time())
            synced: list[str] = []
            real = os.fdatasync
            monkeypatch.setattr(
                os, "fdatasync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd))
            )
            before = (tmp_path / DB_NAME).stat().st_size, worker.wal_size()
            worker.sync()
            assert synced == [str(tmp_path / f"{DB_NAME}-wal")]
            assert ((tmp_path / DB_NAME).stat().st_size, worker.wal_size()) == before  # nothing checkpointed

            def failing(fd: int) -> None:
                raise OSError(5, "Input/output error")

            monkeypatch.setattr(os, "fdatasync", failing)
            with pytest.raises(JournalError, match=r"sync: .*Input/output error"):
                worker.sync()
