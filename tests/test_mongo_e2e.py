"""End to end: ``errord run`` with ``[mongodb]`` pointing at a MockupDB server
(tests/mongofake.py) that goes away and comes back while lines stream in."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import conftest
from conftest import Errord, append, line
from errord.store.journal import Journal
from errord.store.mongostore import incident_document
from mongofake import FakeMongo
from test_mongo import incident

pytestmark = pytest.mark.slow


@pytest.fixture
def mongo() -> Iterator[FakeMongo]:
    with FakeMongo() as fake:
        yield fake


def wait_until(check: Callable[[], bool], timeout: float, what: str, e: Errord) -> None:
    conftest.wait_until(check, max(timeout, 30), lambda: f"{what}\n{e.output()}")


def pending_mongo(e: Errord, *, cli: bool = False) -> int:
    """``status``'s ``pending_mongo``: read in this process, or (``cli``) by ``errord status``."""
    return int((e.json("status") if cli else e.status())["pending_mongo"])


def embedded(state: Path) -> dict[str, Any]:
    """incident_id -> (code, occurrences, alerts_sent, active), from the embedded store."""
    with Journal(state, readonly=True) as j:
        return {i.incident_id: (i.code, i.occurrences, i.alerts_sent, i.active) for i in j.history(limit=-1)}


def mirrored(mongo: FakeMongo) -> dict[str, Any]:
    docs = mongo.docs()
    assert len(docs) == len({d["incident_id"] for d in docs}), "an incident written twice"
    return {d["incident_id"]: (d["code"], d["occurrences"], d["alerts_sent"], d["active"]) for d in docs}


def test_alerts_flow_through_a_mongodb_outage_and_the_history_catches_up(
    make_errord, receiver, mongo: FakeMongo, tmp_path: Path
) -> None:
    e = make_errord(notify=[{"url": receiver.url()}], mongodb={"uri": mongo.uri, "timeout": "1s"})
    log, state = tmp_path / "logs" / "app.jsonl", tmp_path / "state"
    e.start()
    append(log, *[line("db_down", msg="database unreachable")] * 3, line("disk_full"))
    receiver.wait_for(2)
    wait_until(lambda: pending_mongo(e) == 0 and len(mongo.docs()) == 2, 10, "the first writes", e)

    mongo.stop()  # MongoDB goes away; lines keep coming, alerts keep going out
    append(log, line("api_err", msg="upstream 502"), line(clear="disk_full"))
    got = receiver.wait_for(4, timeout=5)
    assert [r.body["type"] for r in got[2:]] == ["failure", "success"]
    for k in range(10):
        append(log, line("db_down"), line(f"burst_{k % 3}"))
        time.sleep(0.1)
    receiver.wait_for(7, timeout=5)  # burst_0..2 alerted while MongoDB is down
    e.wait_caught_up()
    assert pending_mongo(e, cli=True) >= 5  # db_down, disk_full, api_err, burst_0..2: waiting in the journal

    mongo.start()  # back, same port
    wait_until(lambda: pending_mongo(e) == 0, 25, "the outbox to drain", e)
    local = embedded(state)
    assert mirrored(mongo) == local and len(local) == 6
    assert next(v for v in local.values() if v[0] == "db_down") == ("db_down", 13, 1, True)
    res = e.cli("history", "--json")
    assert "answered by MongoDB" in res.stderr

    # SIGTERM while MongoDB is down: exit in time, the write stays queued for the next start
    mongo.stop()
    append(log, line("late"))
    receiver.wait_for(8, timeout=5)
    e.wait_caught_up()
    started = time.monotonic()
    assert e.stop() == 0
    assert time.monotonic() - started < 6
    assert pending_mongo(e, cli=True) == 1
    mongo.start()
    e.start()
    wait_until(lambda: pending_mongo(e) == 0, 15, "the outbox to drain after the restart", e)
    assert mirrored(mongo) == embedded(state)
    assert e.stop() == 0
    assert len(receiver.delivered) == 8
    assert "Traceback" not in e.output()


def test_fresh_state_dir_loads_this_hosts_open_incidents_from_mongodb(
    make_errord, receiver, mongo: FakeMongo, tmp_path: Path
) -> None:
    now = time.time()
    before = incident(
        "db_down",
        start=now - 3600,
        last_log_time=now - 60,
        last_alert_time=now - 60,
        message="database unreachable (before the rebuild)",
        occurrences=4,
        iid="before-rebuild",
    )
    elsewhere = incident("other", start=now - 600, server_id="other-host", iid="elsewhere")
    mongo.collection().insert_many([incident_document(before), incident_document(elsewhere)])
    e = make_errord(notify=[{"url": receiver.url()}], mongodb={"uri": mongo.uri, "timeout": "1s"})
    e.start()
    assert [a["incident_id"] for a in e.json("active")] == ["before-rebuild"]
    log = tmp_path / "logs" / "app.jsonl"
    append(log, line("db_down"), line("other"), line(clear="db_down"))
    got = receiver.wait_for(2)
    e.wait_caught_up()  # every notice these lines make is in the outbox now
    wait_until(lambda: e.status()["pending_notices"] == 0, 30, "every notice delivered", e)
    assert [(r.body["type"], r.body["title"].split()[1]) for r in receiver.delivered] == [
        ("failure", "other"),
        ("success", "db_down"),
    ]  # db_down was already open here: no second "failure" for it
    assert "before the rebuild" in got[1].body["message"]
    wait_until(lambda: pending_mongo(e) == 0, 10, "the writes", e)
    docs = {d["incident_id"]: d for d in mongo.docs()}
    assert len(docs) == 3  # the recovered one updated in place, the other host's untouched
    assert (docs["before-rebuild"]["occurrences"], docs["before-rebuild"]["active"]) == (5, False)
    assert docs["elsewhere"]["active"] is True
    assert e.stop() == 0
