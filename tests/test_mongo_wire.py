"""sinks/mongo.py with the real pymongo driver over TCP, against MockupDB (tests/mongofake.py):
what goes on the wire, and outages: absent at start, a hang-up mid-write, error replies,
a slow server. Nothing may be lost or written twice, and the journal never waits.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import conftest
from errord import cli, status
from errord.model import INCIDENT_FIELDS, TIME_FIELDS
from errord.settings import MongoSettings, Settings
from errord.sinks.mongo import MongoSink
from errord.store.journal import Journal
from errord.store.mongostore import incident_document
from mongofake import FakeMongo, free_port, mirrored_journal  # noqa: F401 - provides the "journal" fixture
from test_mongo import T0, incident

pytestmark = pytest.mark.slow


@pytest.fixture
def mongo() -> Iterator[FakeMongo]:
    with FakeMongo() as fake:
        yield fake


@pytest.fixture
def make_sink(journal: Journal) -> Iterator[Callable[..., MongoSink]]:
    sinks: list[MongoSink] = []

    def factory(uri: str, timeout: float = 0.5, write_concern: str = "1", **kw: Any) -> MongoSink:
        kw.setdefault("backoff", (0.05, 0.3))
        settings = MongoSettings(uri=uri, timeout=timeout, write_concern=write_concern).to_run()
        sink = MongoSink(journal.state_dir, settings, **kw)
        sinks.append(sink)
        sink.start()
        return sink

    yield factory
    for s in sinks:
        s.stop(time.monotonic() + 1)


def wait_until(check: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    conftest.wait_until(check, max(timeout, 30), what or str(check), every=0.02)


def drained(journal: Journal) -> Callable[[], bool]:
    return lambda: journal.mongo.pending() == 0


def acked_ids(mongo: FakeMongo) -> Counter[str]:
    """How often each incident_id was in an update the server applied and answered."""
    return Counter(u["q"]["incident_id"] for cmd in mongo.acked for u in cmd["updates"])


def commit(journal: Journal, *codes: str) -> list[str]:
    incs = [incident(c, start=T0 + k) for k, c in enumerate(codes)]
    journal.commit(incs, [], [], time.time())
    return [i.incident_id for i in incs]


def test_indexes_then_unordered_upserts_keyed_by_incident_id(mongo: FakeMongo, journal: Journal, make_sink) -> None:
    ids = commit(journal, "A", "B", "C")
    make_sink(mongo.uri, write_concern="majority")
    wait_until(drained(journal), what="the outbox to drain")
    names = [next(iter(c)).lower() for c in mongo.commands]
    assert names.index("createindexes") < names.index("update")
    (create,) = mongo.named("createIndexes")
    keys = [(list(ix["key"].items()), ix.get("unique", False), ix.get("sparse", False)) for ix in create["indexes"]]
    assert keys == [
        ([("incident_id", 1)], True, True),
        ([("code", 1), ("start_time", -1)], False, False),
        ([("active", 1), ("start_time", -1)], False, False),
        ([("server_id", 1), ("node_name", 1), ("code", 1)], False, False),
    ]
    (update,) = mongo.named("update")
    assert update["update"] == "error_codes" and update["$db"] == "errord" and update["ordered"] is False
    assert update["writeConcern"] == {"w": "majority"} and 0 < update["maxTimeMS"] <= 500
    assert [u["q"] for u in update["updates"]] == [{"incident_id": i} for i in ids]
    for u in update["updates"]:
        assert u["upsert"] is True and u["multi"] is False and list(u["u"]) == ["$set"]
        fields = u["u"]["$set"]
        assert list(fields) == list(INCIDENT_FIELDS)
        assert all(isinstance(fields[n], datetime) for n in TIME_FIELDS - {"cleared_at"})
    assert sorted(d["code"] for d in mongo.docs()) == ["A", "B", "C"]


def test_absent_at_start_then_present(journal: Journal, make_sink) -> None:
    port = free_port()
    sink = make_sink(f"mongodb://localhost:{port}", timeout=0.3)
    ids = commit(journal, "A", "B")
    sink.wake()
    wait_until(lambda: sink.failures >= 2, what="failed attempts")
    assert journal.mongo.pending() == 2  # waiting in the journal
    with FakeMongo(port=port) as mongo:
        ids += commit(journal, "C")  # more arrives; the queue drains in order once it is up
        sink.wake()
        wait_until(drained(journal), what="the outbox to drain")
        assert acked_ids(mongo) == Counter(ids)  # each once
        assert sorted(d["code"] for d in mongo.docs()) == ["A", "B", "C"]
        assert sink.failures == 0


def test_hangup_in_the_middle_of_a_bulk_write_loses_and_doubles_nothing(
    mongo: FakeMongo, journal: Journal, make_sink
) -> None:
    mongo.script.append("hangup")
    ids = commit(journal, *[f"C{k}" for k in range(20)])
    make_sink(mongo.uri)
    wait_until(drained(journal), what="the outbox to drain")
    updates = mongo.named("update")
    assert len(updates) == 2  # the one cut off, then the retry with the same upserts
    assert updates[0]["updates"] == updates[1]["updates"]
    assert acked_ids(mongo) == Counter(ids)
    docs = mongo.docs()
    assert len(docs) == 20 and len({d["incident_id"] for d in docs}) == 20


def test_duplicate_key_reply_on_an_upsert_counts_as_written(mongo: FakeMongo, journal: Journal, make_sink) -> None:
    a, b = incident("A"), incident("B")
    journal.commit([a, b], [], [], T0)
    mongo.collection().insert_one(incident_document(a))  # another attempt of this write inserted it
    mongo.script.append(("write_error", 0, 11000))
    sink = make_sink(mongo.uri)
    wait_until(drained(journal), what="the outbox to drain")
    time.sleep(0.3)  # a retry would come within the backoff
    assert len(mongo.named("update")) == 1
    assert sink.failures == 0 and sink.last_error is None
    assert sorted(d["code"] for d in mongo.docs()) == ["A", "B"]


def test_not_primary_reply_is_retried_after_a_backoff(
    mongo: FakeMongo, journal: Journal, make_sink, caplog: pytest.LogCaptureFixture
) -> None:
    mongo.script.append(("error", 10107))
    ids = commit(journal, "A", "B")
    make_sink(mongo.uri)
    with caplog.at_level(logging.WARNING, "errord.sinks.mongo"):
        wait_until(drained(journal), what="the outbox to drain")
    updates = mongo.named("update")
    assert len(updates) == 2 and updates[0]["updates"] == updates[1]["updates"]
    assert acked_ids(mongo) == Counter(ids)
    assert "NotPrimaryError" in caplog.text and "2 incident(s) wait in the journal" in caplog.text


def test_slow_server_times_out_the_journal_never_waits_and_stop_keeps_its_deadline(
    mongo: FakeMongo, journal: Journal, make_sink
) -> None:
    mongo.script.append(("slow", 1.5))  # longer than the 0.5 s socket timeout
    ids = commit(journal, "A")
    sink = make_sink(mongo.uri, timeout=0.5)
    wait_until(lambda: sink.writing, what="the write to start")
    started = time.monotonic()
    ids += commit(journal, "B", "C")  # the daemon's commits go on while the write hangs
    assert time.monotonic() - started < 0.2
    wait_until(lambda: sink.failures >= 1, what="the timeout")
    wait_until(drained(journal), what="the outbox to drain")
    # the slow server did apply the first write, after the client gave up: it came again,
    # as the same upsert, so there is still one document per incident
    assert set(acked_ids(mongo)) == set(ids)
    docs = mongo.docs()
    assert sorted(d["incident_id"] for d in docs) == sorted(ids)
    # stop returns by its deadline even while a write hangs; what is queued stays queued
    mongo.script.append(("slow", 1.5))
    ids = commit(journal, "D")
    sink.wake()
    wait_until(lambda: sink.writing, what="the second write to start")
    started = time.monotonic()
    sink.stop(time.monotonic() + 0.3)
    assert time.monotonic() - started < 0.6
    assert journal.mongo.pending() == 1


def test_password_never_logged(journal: Journal, make_sink, caplog: pytest.LogCaptureFixture) -> None:
    uri = f"mongodb://errord:s3cr%21t@localhost:{free_port()}/?authSource=admin"
    with caplog.at_level(logging.DEBUG):
        sink = make_sink(uri, timeout=0.2)
        commit(journal, "A")
        sink.wake()
        wait_until(lambda: sink.failures >= 2, what="failed attempts")
    assert "errord:***@localhost" in caplog.text
    assert "s3cr" not in caplog.text


# -- the read commands ---------------------------------------------------------------------


def cli_settings(tmp_path: Path, uri: str) -> list[str]:
    cfg = tmp_path / "errord.toml"
    cfg.write_text(
        f'server_id = "test-host"\nnode_name = "n1"\nstate_dir = "{tmp_path / "state"}"\n[mongodb]\nuri = "{uri}"\n'
    )
    cfg.chmod(0o600)
    return ["-c", str(cfg), "--json"]


def test_history_and_active_read_mongodb_and_say_so(
    mongo: FakeMongo, journal: Journal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mongo.collection().insert_many(
        [
            incident_document(i)
            for i in (
                incident("old", start=T0, active=False, cleared_at=T0 + 5),
                incident("db_down", start=T0 + 10),
                incident("db_down", start=T0 + 20, server_id="other-host"),
            )
        ]
    )
    journal.commit([incident("only_local")], [], [], T0)  # queued, not in MongoDB yet
    args = cli_settings(tmp_path, mongo.uri)
    assert cli.main(["history", *args]) == 0
    out, err = capsys.readouterr()
    assert [h["code"] for h in json.loads(out)] == ["db_down", "old"]
    assert f"answered by MongoDB {mongo.uri}" in err and "1 change(s) not written there yet" in err
    assert cli.main(["active", *args]) == 0
    out, err = capsys.readouterr()
    assert [h["code"] for h in json.loads(out)] == ["db_down"] and "answered by MongoDB" in err
    finds = mongo.named("find")
    assert finds[-1]["filter"]["server_id"] == "test-host" and finds[-1]["filter"]["active"] is True


def test_read_commands_fall_back_to_the_embedded_store_quickly(
    journal: Journal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal.commit([incident("local")], [], [], T0)
    args = cli_settings(tmp_path, f"mongodb://errord:s3cret@localhost:{free_port()}")
    started = time.monotonic()
    assert cli.main(["history", *args]) == 0
    assert time.monotonic() - started < 3
    out, err = capsys.readouterr()
    assert [h["code"] for h in json.loads(out)] == ["local"]
    assert "MongoDB did not answer" in err and "answered by the embedded store" in err
    assert "s3cret" not in err and "errord:***@localhost" in err
    assert status.status_data(Settings.load(Path(args[1])).to_run())["pending_mongo"] == 1
