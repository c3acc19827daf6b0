"""store.mongoqueue.MongoQueue: the incidents waiting for MongoDB (``journal.mongo``).

The writer that drains it (sinks/mongo.py) is tested in test_mongo.py.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from errord.errors import JournalError
from errord.model import INCIDENT_FIELDS
from errord.store.journal import Journal
from errord.store.schema import MIGRATIONS
from mongofake import mirrored_journal  # noqa: F401 - provides the "journal" fixture
from test_journal import make_position
from test_mongo import T0, incident


def test_outbox_only_when_mongodb_is_configured_and_backfilled_when_it_becomes_so(tmp_path: Path) -> None:
    with Journal(tmp_path / "s") as j:
        j.mongo.mirror(False)
        j.commit([incident("A"), incident("B", start=T0 - 10)], [], [], T0)
        assert j.mongo.pending() == 0
        assert j.mongo.mirror(True) == 2  # the history from before goes to MongoDB too
        assert [w.incident.code for w in j.mongo.batch(10) if w.incident] == ["B", "A"]  # oldest first
        assert j.mongo.mirror(True) == 0
    with Journal(tmp_path / "s") as j:
        assert j.mongo.mirror(True) == 0  # remembered across restarts
        j.commit([incident("C")], [], [], T0)
        assert j.mongo.pending() == 3
        assert j.mongo.mirror(False) == 3 and j.mongo.pending() == 0


def test_ack_keeps_a_row_whose_version_moved_on(journal: Journal) -> None:
    inc = incident()
    journal.commit([inc], [], [], T0)
    (head,) = journal.mongo.batch(10)
    journal.commit([inc], [], [], T0 + 1)
    assert journal.mongo.ack([(head.incident_id, head.version)]) == 0 and journal.mongo.pending() == 1
    (head,) = journal.mongo.batch(10)
    assert journal.mongo.ack([(head.incident_id, head.version)]) == 1 and journal.mongo.pending() == 0


def test_a_failed_commit_queues_nothing(journal: Journal) -> None:
    """The queue is written in the batch's transaction: a commit that fails (here on a
    position, after its incidents were queued) leaves nothing for MongoDB."""
    with pytest.raises(JournalError):
        journal.commit([incident("A"), incident("B")], [make_position(path=None)], [], T0)
    assert journal.mongo.pending() == 0 and journal.mongo.batch(10) == []
    journal.commit([incident("A")], [make_position()], [], T0)
    assert [w.incident_id for w in journal.mongo.batch(10)] == [incident("A").incident_id]


def test_schema_1_journal_is_migrated_and_its_incidents_queued(tmp_path: Path) -> None:
    state = tmp_path / "s"
    state.mkdir(mode=0o700)
    db = sqlite3.connect(state / "errord.db")
    for stmt in MIGRATIONS[0]:
        db.execute(stmt)
    inc = incident()
    cols = [
        f for f in INCIDENT_FIELDS if f not in ("notices_muted", "resolved_by", "flapping")
    ]  # schema 1's (4, 6 add these)
    db.execute(
        f"INSERT INTO incidents ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
        [getattr(inc, f) for f in cols],
    )
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with Journal(state, readonly=True) as ro:
        assert ro.mongo.pending() == 0  # a reader of an old file: no outbox yet, no error
    with Journal(state) as j:
        assert j.mongo.mirror(True) == 1
        assert j.mongo.batch(10)[0].incident.code == "E1"


def test_import_keeps_times_and_queues_nothing(journal: Journal) -> None:
    inc = incident(created_at=T0 - 3600, updated_at=T0 - 60, occurrences=9)
    assert journal.mongo.import_incidents([inc]) == 1
    assert journal.mongo.import_incidents([inc]) == 0  # already known: left alone
    (got,) = journal.active()
    assert (got.created_at, got.updated_at, got.occurrences) == (T0 - 3600, T0 - 60, 9)
    assert journal.mongo.pending() == 0
