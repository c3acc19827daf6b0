"""sinks/mongo.py and store/mongostore.py: document logic against mongomock.

The journal's MongoDB queue (store/mongoqueue.py) is in test_mongoqueue.py; wire
behaviour (the real driver over TCP, outages, error replies) in test_mongo_wire.py; the
daemon end to end in test_mongo_e2e.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bson
import mongomock
import pytest
from bson.codec_options import CodecOptions
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, OperationFailure

from errord.model import INCIDENT_FIELDS, TIME_FIELDS, Incident
from errord.settings import MongoSettings
from errord.sinks.mongo import MongoSink
from errord.store.journal import Journal
from errord.store.mongostore import INDEXES, MongoStore, host_filter, incident_document, incident_from_document
from mongofake import MockCollection, mirrored_journal  # noqa: F401 - provides the "journal" fixture

T0 = 1_768_403_151.367  # 2026-01-14T15:05:51.367Z


def incident(code: str = "E1", *, start: float = T0, iid: str | None = None, **kw: Any) -> Incident:
    """An open incident of test-host/n1, as the engine would make it."""
    values: dict[str, Any] = dict(
        code=code,
        message=f"{code} happened",
        start_time=start,
        last_log_time=start,
        server_id="test-host",
        node_name="n1",
        active=True,
        cleared_at=None,
        created_at=start,
        updated_at=start,
        occurrences=1,
        alerts_sent=1,
        last_alert_time=start,
        app="demo",
        incident_id=iid or f"id-{code}-{start}",
    )
    values.update(kw)
    return Incident(**values)


SETTINGS = MongoSettings(uri="mongodb://errord:s3cret@db.invalid:27017/?tls=true").to_run()


@pytest.fixture
def coll() -> MockCollection:
    return MockCollection(mongomock.MongoClient(tz_aware=True).errord.error_codes)


def drain(state_dir: Path, coll: Any, **kw: Any) -> MongoSink:
    """Run a sink until the outbox is empty (or it fails); returns it for inspection."""
    kw.setdefault("collection", lambda: coll)
    sink = MongoSink(state_dir, SETTINGS, backoff=(0.01, 0.05), **kw)
    sink.start()
    sink.stop(time.monotonic() + 5)
    return sink


# -- documents -----------------------------------------------------------------------------


def test_document_is_the_contract_record_with_utc_bson_dates() -> None:
    inc = incident(active=False, cleared_at=T0 + 90, occurrences=7, alerts_sent=2, app=None)
    doc = incident_document(inc)
    assert list(doc) == list(INCIDENT_FIELDS)  # the 10 original fields first, then errord's 5
    for name in TIME_FIELDS - {"cleared_at"}:
        assert isinstance(doc[name], datetime) and doc[name].utcoffset().total_seconds() == 0
    assert doc["start_time"] == datetime(2026, 1, 14, 15, 5, 51, 367000, tzinfo=UTC)
    assert doc["cleared_at"] == datetime.fromtimestamp(T0 + 90, UTC)
    assert (doc["occurrences"], doc["alerts_sent"], doc["app"], doc["active"]) == (7, 2, None, False)
    # BSON-able, and back through BSON (milliseconds) to the same incident
    raw = bson.decode(bson.encode(doc), CodecOptions(tz_aware=True))
    assert raw["start_time"] == doc["start_time"]
    back = incident_from_document(raw)
    for name in INCIDENT_FIELDS:
        got, want = getattr(back, name), getattr(inc, name)
        assert got == pytest.approx(want, abs=1e-3) if isinstance(want, float) else got == want, name
    assert incident_from_document(incident_document(incident(cleared_at=None))).cleared_at is None


def test_naive_datetimes_are_read_as_utc_and_documents_without_incident_id_are_refused() -> None:
    doc = incident_document(incident())
    doc["start_time"] = datetime(2026, 1, 14, 15, 5, 51, 367000)  # a client without tz_aware
    assert incident_from_document(doc).start_time == pytest.approx(T0, abs=1e-3)
    with pytest.raises(ValueError):
        incident_from_document({"code": "old", "active": True, "start_time": doc["start_time"]})


# -- writes --------------------------------------------------------------------------------


def test_upserts_are_idempotent_and_leave_other_fields_and_old_documents_alone(
    journal: Journal, coll: MockCollection
) -> None:
    coll.insert_one({"code": "legacy", "message": "from the in-app manager", "active": True})
    a, b = incident("A"), incident("B", start=T0 + 1)
    journal.commit([a, b], [], [], T0)
    assert journal.mongo.pending() == 2
    drain(journal.state_dir, coll)
    assert journal.mongo.pending() == 0
    coll.update_one({"incident_id": a.incident_id}, {"$set": {"note": "ack'd by ops"}})
    # the same incidents again (a replay after a crash, say): still one document each
    a.occurrences = 5
    journal.commit([a, b], [], [], T0 + 2)
    drain(journal.state_dir, coll)
    docs = {d["incident_id"]: d for d in coll.find({"incident_id": {"$exists": True}})}
    assert sorted(docs) == sorted([a.incident_id, b.incident_id])
    assert docs[a.incident_id]["occurrences"] == 5 and docs[a.incident_id]["note"] == "ack'd by ops"
    assert coll.count_documents({}) == 3
    assert coll.find_one({"code": "legacy"}, {"_id": False}) == {
        "code": "legacy",
        "message": "from the in-app manager",
        "active": True,
    }


def test_repeats_coalesce_into_one_write_of_the_latest_state(journal: Journal, coll: MockCollection) -> None:
    inc = incident()
    for n in range(1, 51):  # 50 batches, each changing the incident
        inc.occurrences, inc.last_log_time = n, T0 + n
        journal.commit([inc], [], [], T0 + n)
    assert journal.mongo.pending() == 1
    drain(journal.state_dir, coll)
    assert coll.batches == [[inc.incident_id]]
    doc = coll.find_one({"incident_id": inc.incident_id})
    assert doc["occurrences"] == 50
    assert doc["last_log_time"] == datetime.fromtimestamp(T0 + 50, UTC)


def test_a_change_during_the_write_is_written_again(journal: Journal, coll: MockCollection) -> None:
    inc = incident()
    journal.commit([inc], [], [], T0)

    class ChangesMidWrite(MockCollection):
        def bulk_write(self, requests: Sequence[UpdateOne], ordered: bool = True) -> None:
            super().bulk_write(requests, ordered)
            if len(self.batches) == 1:  # the daemon commits while the first write is on the wire
                inc.occurrences, inc.active, inc.cleared_at = 2, False, T0 + 5
                with Journal(journal.state_dir) as daemons:  # the daemon's own connection
                    daemons.mongo.mirror(True)
                    daemons.commit([inc], [], [], T0 + 5)

    racing = ChangesMidWrite(coll.coll)
    drain(journal.state_dir, racing)
    assert racing.batches == [[inc.incident_id], [inc.incident_id]]
    doc = coll.find_one({"incident_id": inc.incident_id})
    assert (doc["occurrences"], doc["active"]) == (2, False)
    assert journal.mongo.pending() == 0


def test_batches_are_bounded_and_drained_in_queue_order(journal: Journal, coll: MockCollection) -> None:
    incs = [incident(f"C{k:04d}", start=T0 + k) for k in range(240)]
    for k in range(0, 240, 20):
        journal.commit(incs[k : k + 20], [], [], T0)
    journal.commit([incs[3]], [], [], T0 + 1)  # a change while queued keeps its place
    drain(journal.state_dir, coll, batch_size=100)
    assert [len(b) for b in coll.batches] == [100, 100, 40]
    assert [iid for b in coll.batches for iid in b] == [i.incident_id for i in incs]
    assert coll.count_documents({}) == 240


class Refusing(MockCollection):
    """Applies the batch except the ops given, which it reports as write errors."""

    def __init__(self, coll: mongomock.Collection, errors: dict[str, int], concern: bool = False) -> None:
        super().__init__(coll)
        self.errors = errors  # incident_id -> error code, for the first batch only
        self.concern = concern

    def bulk_write(self, requests: Sequence[UpdateOne], ordered: bool = True) -> None:
        first = not self.batches
        ok = [op for op in requests if not (first and op._filter["incident_id"] in self.errors)]
        super().bulk_write(ok, ordered)
        self.batches[-1] = [op._filter["incident_id"] for op in requests]
        if first and (self.errors or self.concern):
            write_errors = [
                {"index": k, "code": self.errors[op._filter["incident_id"]], "errmsg": "refused"}
                for k, op in enumerate(requests)
                if op._filter["incident_id"] in self.errors
            ]
            concern = [{"code": 64, "errmsg": "waiting for replication timed out"}] if self.concern else []
            raise BulkWriteError({"writeErrors": write_errors, "writeConcernErrors": concern, "nUpserted": 0})


def run_until_attempts(journal: Journal, refusing: Refusing, attempts: int) -> None:
    """Run a MongoSink against ``refusing`` until it made ``attempts`` bulk writes (5 s at most)."""
    sink = MongoSink(journal.state_dir, SETTINGS, backoff=(0.05, 0.05), collection=lambda: refusing)
    sink.start()
    deadline = time.monotonic() + 5
    while len(refusing.batches) < attempts and time.monotonic() < deadline:
        time.sleep(0.01)
    sink.stop(time.monotonic() + 5)


def test_refused_document_stays_queued_duplicate_key_counts_as_written(journal: Journal, coll: MockCollection) -> None:
    a, b, c = incident("A"), incident("B"), incident("C")
    journal.commit([a, b, c], [], [], T0)
    coll.insert_one(incident_document(c))  # another attempt of this write got there first
    refusing = Refusing(coll.coll, {b.incident_id: 121, c.incident_id: 11000})  # 121: validation
    run_until_attempts(journal, refusing, 2)
    # round 1 wrote A, C counted as written, B refused; round 2 retried only B
    assert refusing.batches == [[a.incident_id, b.incident_id, c.incident_id], [b.incident_id]]
    assert journal.mongo.pending() == 0
    assert sorted(d["code"] for d in coll.find()) == ["A", "B", "C"]


def test_write_concern_error_retries_the_whole_batch(journal: Journal, coll: MockCollection) -> None:
    a, b = incident("A"), incident("B")
    journal.commit([a, b], [], [], T0)
    refusing = Refusing(coll.coll, {}, concern=True)
    run_until_attempts(journal, refusing, 2)
    assert refusing.batches == [[a.incident_id, b.incident_id]] * 2
    assert journal.mongo.pending() == 0 and coll.count_documents({}) == 2


def test_the_password_is_masked_even_in_driver_errors(journal: Journal, caplog: pytest.LogCaptureFixture) -> None:
    journal.commit([incident()], [], [], T0)

    def refuses() -> Any:
        raise OperationFailure("auth failed for mongodb://errord:s3cret@db.invalid (password s3cret)")

    with caplog.at_level(logging.DEBUG, "errord"):
        sink = drain(journal.state_dir, None, collection=refuses)
    assert sink.failures >= 1 and journal.mongo.pending() == 1
    assert "s3cret" not in caplog.text and "mongodb://errord:***@db.invalid:27017" in caplog.text
    assert "errord:***@db.invalid (password ***)" in caplog.text


def test_indexes_are_created_idempotently_next_to_old_documents(coll: MockCollection) -> None:
    coll.insert_many([{"code": "old1", "active": True}, {"code": "old2", "active": False}])  # no incident_id
    for _ in range(2):
        coll.create_indexes(list(INDEXES))
    info = coll.index_information()
    keys = {tuple(v["key"]): v for v in info.values()}
    assert keys[(("incident_id", 1),)]["unique"] and keys[(("incident_id", 1),)]["sparse"]
    assert {
        (("code", 1), ("start_time", -1)),
        (("active", 1), ("start_time", -1)),
        (("server_id", 1), ("node_name", 1), ("code", 1)),
    } <= set(keys)
    assert len(info) == 5  # _id + ours, not doubled


def test_an_index_conflict_is_logged_and_the_other_indexes_and_writes_go_on(
    journal: Journal, coll: MockCollection, caplog: pytest.LogCaptureFixture
) -> None:
    class Conflicting(MockCollection):
        def create_indexes(self, models: list[Any]) -> list[str]:
            if any(m.document["name"] == "incident_id_1" for m in models):  # made by hand, not unique
                raise OperationFailure("Index already exists with a different name or options", code=85)
            return self.coll.create_indexes(models)

    journal.commit([incident()], [], [], T0)
    with caplog.at_level(logging.ERROR, "errord"):
        drain(journal.state_dir, Conflicting(coll.coll))
    assert journal.mongo.pending() == 0 and coll.count_documents({}) == 1
    assert len(coll.index_information()) == 4  # _id + the three others
    assert "cannot create index incident_id_1" in caplog.text


# -- reads ---------------------------------------------------------------------------------


def seeded_store(coll: MockCollection) -> MongoStore:
    docs = [
        incident("db_down", start=T0 + 0, active=False, cleared_at=T0 + 50),
        incident("db_down", start=T0 + 100),
        incident("disk_full", start=T0 + 200),
        incident("api", start=T0 + 300, active=False, cleared_at=T0 + 310),
        incident("db_down", start=T0 + 400, server_id="other-host"),  # another host
        incident("db_down", start=T0 + 500, node_name="n2"),  # another node of the same server
    ]
    coll.insert_many([incident_document(i) for i in docs])
    coll.insert_one(
        {
            "code": "db_down",
            "active": True,
            "server_id": "test-host",
            "node_name": "n1",
            "start_time": datetime.fromtimestamp(T0 + 600, UTC),
        }
    )  # in-app manager's
    return MongoStore(coll.coll, server_id="test-host", node_name="n1")


def test_history_newest_first_with_filters_and_limit_for_this_host_only(coll: MockCollection) -> None:
    store = seeded_store(coll)
    hist = store.history()
    assert [(i.code, i.start_time) for i in hist] == [
        ("api", T0 + 300),
        ("disk_full", T0 + 200),
        ("db_down", T0 + 100),
        ("db_down", T0 + 0),
    ]
    assert all((i.server_id, i.node_name) == ("test-host", "n1") for i in hist)
    assert [i.start_time for i in store.history(code="db_down")] == [T0 + 100, T0 + 0]
    assert [i.code for i in store.history(active_only=True)] == ["disk_full", "db_down"]
    assert [i.code for i in store.history(limit=1)] == ["api"]
    assert [i.code for i in store.history(code="db_down", active_only=True)] == ["db_down"]
    assert [i.code for i in store.active()] == ["disk_full", "db_down"]


def test_history_by_app_since_and_state_as_the_journal(coll: MockCollection) -> None:
    store = seeded_store(coll)
    coll.insert_one(incident_document(incident("queue", start=T0 + 250, app="billing")))
    assert [i.code for i in store.history(app="billing")] == ["queue"]
    assert [i.code for i in store.history(app="demo", since=T0 + 200)] == ["api", "disk_full"]  # at or after
    assert [i.start_time for i in store.history(since=T0 + 100.5)] == [T0 + 300, T0 + 250, T0 + 200]
    assert [i.code for i in store.history(state="cleared")] == ["api", "db_down"]
    assert [i.code for i in store.history(state="active")] == ["queue", "disk_full", "db_down"]
    assert [i.code for i in store.history(code="db_down", state="cleared", since=T0)] == ["db_down"]
    assert store.history(app="billing", state="cleared") == []
    with pytest.raises(ValueError):
        store.history(state="cleared", active_only=True)


def test_recovery_query_finds_this_hosts_open_incidents(coll: MockCollection) -> None:
    seeded_store(coll)
    query = host_filter("test-host", "n1", active_only=True)
    found = sorted(d["code"] for d in coll.find(query))
    assert found == ["db_down", "disk_full"]
    assert coll.count_documents(host_filter("other-host", "n1", active_only=True)) == 1
    assert coll.count_documents(host_filter("nobody", "", active_only=True)) == 0
