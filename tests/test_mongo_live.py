"""sinks/mongo.py against a real MongoDB server: run when ERRORD_TEST_MONGODB_URI is set
(e.g. ``mongodb://localhost:27017``), skipped otherwise. Each test uses a collection of
its own in the database ``errord_test`` and drops it afterwards."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from errord.config import Mongo
from errord.settings import MongoSettings
from errord.sinks.mongo import MongoSink
from errord.store.journal import Journal
from errord.store.mongostore import MongoStore, recover_open_incidents
from test_mongo import T0, incident

URI = os.environ.get("ERRORD_TEST_MONGODB_URI", "")
pytestmark = pytest.mark.skipif(
    not URI, reason="ERRORD_TEST_MONGODB_URI is not set (no MongoDB server to test against)"
)


@pytest.fixture
def settings() -> Iterator[Mongo]:
    s = MongoSettings(
        uri=URI, database="errord_test", collection=f"incidents_{uuid.uuid4().hex[:12]}", timeout=5
    ).to_run()
    client: MongoClient[dict[str, Any]] = MongoClient(URI, serverSelectionTimeoutMS=5000, tz_aware=True)
    try:
        yield s
    finally:
        client[s.database].drop_collection(s.collection)
        client.close()


def raw(settings: Mongo) -> Any:
    return MongoClient(URI, tz_aware=True)[settings.database][settings.collection]


def drain(state: Path, settings: Mongo) -> MongoSink:
    sink = MongoSink(state, settings, backoff=(0.1, 0.5))
    sink.start()
    deadline = time.monotonic() + 20
    with Journal(state) as j:
        while j.mongo.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
    sink.stop(time.monotonic() + 5)
    return sink


def test_writes_indexes_and_reads_on_a_real_server(tmp_path: Path, settings: Mongo) -> None:
    coll = raw(settings)
    coll.insert_many([{"code": "legacy", "active": True}, {"code": "legacy2", "active": False}])  # no incident_id
    state = tmp_path / "state"
    with Journal(state) as j:
        j.mongo.mirror(True)
        a, b = incident("A"), incident("B", start=T0 + 10)
        j.commit([a, b], [], [], time.time())
        drain(state, settings)
        a.occurrences, a.active, a.cleared_at = 3, False, T0 + 20
        j.commit([a, b], [], [], time.time())  # written again: still one document each
        drain(state, settings)
        assert j.mongo.pending() == 0
    indexes = {tuple(ix["key"].items()): ix for ix in coll.list_indexes()}
    assert indexes[(("incident_id", 1),)].get("unique") and indexes[(("incident_id", 1),)].get("sparse")
    assert {
        (("code", 1), ("start_time", -1)),
        (("active", 1), ("start_time", -1)),
        (("server_id", 1), ("node_name", 1), ("code", 1)),
    } <= set(indexes)
    assert len(list(coll.find())) == 4 and len(list(coll.find({"incident_id": a.incident_id}))) == 1
    doc = coll.find_one({"incident_id": a.incident_id})
    assert (doc["occurrences"], doc["active"]) == (3, False) and doc["start_time"].tzinfo is not None
    with MongoStore.open(settings, server_id="test-host", node_name="n1", timeout=5) as store:
        assert [i.code for i in store.history()] == ["B", "A"]
        assert [i.code for i in store.active()] == ["B"]
        assert [i.code for i in store.history(code="A")] == ["A"]
    found = recover_open_incidents(settings, server_id="test-host", node_name="n1", timeout=5)
    assert [i.incident_id for i in found] == [b.incident_id]
