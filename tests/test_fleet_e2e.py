"""Fleet mode end to end (CONTRACT §13): ``errord run`` daemons, each with its own state_dir
and server_id, sharing one MongoDB stand-in (mongofake: mongomock behind MockupDB, one
command at a time) and one receiver. Ten of them for "10 daemons, one failure, one
resolve"; two or three (``small_fleet``) where the number of hosts is not the point."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import conftest
from conftest import Errord, append, line
from errord.fleet.claims import FleetClaims
from mongofake import FakeMongo

pytestmark = pytest.mark.slow

N = 10  # daemons at once (the issue: 10 on one machine)


@pytest.fixture
def fleet(make_errord: Any, receiver: Any, tmp_path: Path) -> Iterator[tuple[list[Errord], list[Path], FakeMongo]]:
    with FakeMongo() as mongo:
        members, logs = [], []
        for i in range(N):
            (tmp_path / f"logs{i}").mkdir()
            logs.append(tmp_path / f"logs{i}" / "app.jsonl")
            members.append(
                make_errord(
                    name=f"h{i}",
                    server_id=f"h{i}",
                    state_dir=str(tmp_path / f"state{i}"),
                    sources=[{"path": str(tmp_path / f"logs{i}" / "*.jsonl"), "start_at": "beginning"}],
                    notify=[{"url": receiver.url()}],
                    mongodb={"uri": mongo.uri, "timeout": "2s"},
                    fleet={"name": "prod", "lease": "6s"},
                    defaults={"re_alert_time": "2s"},
                )
            )
        for e in members:  # side by side: each start is mostly imports and waits
            e.start(wait=False)
        for e in members:
            e.wait_running()
        yield members, logs, mongo


def types(receiver: Any) -> list[str]:
    return [b["type"] for b in receiver.bodies()]


def test_the_same_code_on_every_host_one_failure_one_resolve(fleet: Any, receiver: Any) -> None:
    members, logs, mongo = fleet
    for log in logs:  # within a few ms of each other
        append(log, line("db_down", msg="database unreachable"))
    receiver.wait_for(1)
    for e in members:
        e.wait_caught_up()
    conftest.wait_until(
        lambda: (
            len((mongo.collection("errord", "fleet_incidents").find_one({"open": True}) or {}).get("ever", [])) == N
        ),
        30,
        "the fleet incident",
    )
    doc = mongo.collection("errord", "fleet_incidents").find_one({"open": True})
    assert doc is not None and sorted(doc["ever"]) == [f"h{i}" for i in range(N)]
    time.sleep(1.0)  # nothing more may come: the others send nothing
    assert types(receiver) == ["failure"]
    for log in logs[:-1]:
        append(log, line(clear="db_down"))
    for e in members:
        e.wait_caught_up()
    assert types(receiver) == ["failure"]  # the others still fail: nothing
    append(logs[-1], line(clear="db_down"))
    got = receiver.wait_for(2)
    assert [r.body["type"] for r in got] == ["failure", "success"]
    assert f"resolved on all {N} hosts" in got[1].body["message"]
    members[-1].wait_caught_up()
    time.sleep(1.0)
    assert types(receiver) == ["failure", "success"]


def test_re_alerts_by_the_holder_then_another_after_kill_9(make_errord: Any, receiver: Any, tmp_path: Path) -> None:
    """One re-alert per interval for the fleet, not one per host, naming the hosts; the
    holder killed -9 while failing: another member takes over once its lease (3 s) lapses."""
    with FakeMongo() as mongo:
        sids = ("h0", "h1", "h2")
        members, logs = small_fleet(make_errord, receiver, tmp_path, mongo, sids, re_alert="2s")
        n = len(sids)
        coll = mongo.collection("errord", "fleet_incidents")
        for log in logs:
            append(log, line("db_down"))
        receiver.wait_for(1)
        conftest.wait_until(lambda: bool(coll.find_one({"open": True, "announced": True})), 30, "announced")
        holder = str(coll.find_one({"open": True})["holder"])
        start = time.monotonic()
        while time.monotonic() - start < 7.0:  # every host keeps failing for ~3 intervals
            for log in logs:
                append(log, line("db_down"))
            time.sleep(0.5)
        bodies = receiver.bodies()
        re_alerts = [b for b in bodies if b["type"] == "warning"]
        assert 2 <= len(re_alerts) <= 4, bodies  # one per interval for the fleet, not one per host
        assert all(f"failing on {n} hosts: " + ", ".join(sids) in b["message"] for b in re_alerts)
        k = sids.index(holder)
        members[k].proc.kill()  # kill -9 the holder while failing
        members[k].proc.wait(10)
        seen = len(bodies)
        others = [log for i, log in enumerate(logs) if i != k]
        start = time.monotonic()
        while time.monotonic() - start < 20.0:
            for log in others:
                append(log, line("db_down"))
            time.sleep(0.5)
            if any(f"failing on {n - 1} hosts" in b["message"] for b in receiver.bodies()[seen:]):
                break
        later = receiver.bodies()[seen:]
        assert any(b["type"] == "warning" and f"failing on {n - 1} hosts" in b["message"] for b in later), later
        assert str(coll.find_one({"open": True})["holder"]) != holder


def small_fleet(
    make_errord: Any, receiver: Any, tmp_path: Path, mongo: FakeMongo, sids: tuple[str, ...], re_alert: str = "1h"
) -> tuple[list[Errord], list[Path]]:
    """Members ``sids`` started, lease 3 s: leases renewed and the fleet's silences read every second."""
    members, logs = [], []
    for sid in sids:
        (tmp_path / f"logs-{sid}").mkdir()
        logs.append(tmp_path / f"logs-{sid}" / "app.jsonl")
        members.append(
            make_errord(
                name=sid,
                server_id=sid,
                state_dir=str(tmp_path / f"state-{sid}"),
                sources=[{"path": str(tmp_path / f"logs-{sid}" / "*.jsonl"), "start_at": "beginning"}],
                notify=[{"url": receiver.url()}],
                mongodb={"uri": mongo.uri, "timeout": "2s"},
                fleet={"name": "prod", "lease": "3s"},
                defaults={"re_alert_time": re_alert},
            )
        )
    for e in members:
        e.start(wait=False)
    for e in members:
        e.wait_running()
    return members, logs


@pytest.fixture
def pair(make_errord: Any, receiver: Any, tmp_path: Path) -> Iterator[tuple[list[Errord], list[Path], FakeMongo]]:
    """Two members (a, b)."""
    with FakeMongo() as mongo:
        members, logs = small_fleet(make_errord, receiver, tmp_path, mongo, ("a", "b"))
        yield members, logs, mongo


def test_a_silence_made_on_one_host_mutes_the_code_on_another(pair: Any, receiver: Any) -> None:
    (a, b), (_, log_b), mongo = pair
    sid = a.cli("silence", "db_down", "--for", "1h", "--reason", "maintenance").stdout.strip()

    def listed_on_b() -> list[dict[str, Any]]:
        return [s for s in b.json("silences") if s.get("id") == sid]

    (shown,) = conftest.wait_until(listed_on_b, 20, "the silence listed on b")
    assert shown["origin"] == "a" and shown["active"] and shown["reason"] == "maintenance"
    assert "FROM" in b.cli("silences").stdout  # the table says where each came from
    assert "over half of lease/3" in a.output()  # timeout 2 s, lease 3 s: warned at start
    append(log_b, line("db_down"))
    b.wait_caught_up()
    conftest.wait_until(lambda: [i["notices_muted"] for i in b.history()] == [1], 10, "b's failure muted")
    time.sleep(1.0)
    assert receiver.bodies() == []  # muted on b by a's silence
    # ended on b: ended on a too (and in MongoDB), and b's next notice goes out
    assert b.cli("unsilence", sid).stdout.strip() == f"ended {sid}"
    conftest.wait_until(lambda: a.json("silences") == [], 20, "a's own silence ended")
    (doc,) = mongo.docs("errord", "fleet_silences")
    assert doc["ended_by"] == "b" and doc["origin"] == "a"


def test_a_claim_never_announced_is_sent_by_the_next_failing_host(
    make_errord: Any, receiver: Any, tmp_path: Path
) -> None:
    """The opener (x) claimed db_down and died before recording its failure notice, for
    good: once its claim lapses, b (failing, no new line needed) sends the failure."""
    with FakeMongo() as mongo:
        coll = mongo.collection("errord", "fleet_incidents")
        lapse = time.time() + 60.0  # moved closer once b has joined (x never renews it)
        coll.insert_one(
            {
                "_id": "prod\x00db_down",
                "fleet": "prod",
                "key": "db_down",
                "code": "db_down",
                "app": None,
                "scope": "code",
                "open": True,
                "failing": [{"sid": "x", "until": lapse}],
                "ever": ["x"],
                "holder": "x",
                "holder_until": lapse,
                "announced": False,
                "alerted_by": None,
                "start_time": time.time(),
                "last_alert_time": None,
                "re_alerts": 0,
                "occurrences": 1,
                "resolved_by": None,
            }
        )
        b = make_errord(
            name="b",
            server_id="b",
            notify=[{"url": receiver.url()}],
            mongodb={"uri": mongo.uri, "timeout": "2s"},
            fleet={"name": "prod", "lease": "3s"},
            defaults={"re_alert_time": "1h"},
        )
        b.start()
        log = tmp_path / "logs" / "app.jsonl"
        append(log, line("db_down", msg="database unreachable"))
        b.wait_caught_up()
        conftest.wait_until(lambda: "b" in coll.find_one({})["ever"], 10, "b joined")
        time.sleep(1.5)  # a renewal or two of b's
        assert receiver.bodies() == []  # x's claim still counts as a lease
        lapse = time.time() + 1.0
        coll.update_one({}, {"$set": {"holder_until": lapse, "failing.0.until": lapse}})
        (got,) = receiver.wait_for(1, timeout=15)
        took = time.time() - lapse
        assert got.body["type"] == "failure" and "database unreachable" in got.body["message"]
        assert "failing on 1 host(s): b" in got.body["message"]
        assert 0 <= took < 5.0  # within a renewal (lease/3 = 1 s) of the lapse, plus a busy machine's turn
        doc = conftest.wait_until(lambda: coll.find_one({"announced": True}), 10, "announced by b")
        assert doc["holder"] == "b" and doc["alerted_by"] == "b"
        append(log, line(clear="db_down"))
        got = receiver.wait_for(2)
        assert [r.body["type"] for r in got] == ["failure", "success"]
        assert "resolved on all 2 hosts" in got[1].body["message"]
        print(f"take-over: failure sent {took:.2f} s after the opener's claim lapsed")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_the_status_page_lists_the_fleet_incidents(make_errord: Any, receiver: Any, tmp_path: Path) -> None:
    """The page's fleet block, from the data of GET /api/v1/fleet, in headless Chromium;
    a member's id is text from elsewhere: escaped."""
    hostile = "<img src=x onerror=alert(3)>"
    with FakeMongo() as mongo:
        coll = mongo.collection("errord", "fleet_incidents")
        now = time.time()
        h0 = FleetClaims(coll, fleet="prod", server_id="h0", scope="code", lease=30.0)
        h0.open("db_down", "db_down", None, now - 60, now)
        h0.announce("db_down", now - 60)
        FleetClaims(coll, fleet="prod", server_id=hostile, scope="code", lease=30.0).open(
            "db_down", "db_down", None, now - 50, now - 45
        )  # its lease lapsed: stale
        e = make_errord(
            server_id="page-host",
            notify=[{"url": receiver.url()}],
            http={"listen": "127.0.0.1:0"},
            mongodb={"uri": mongo.uri, "timeout": "2s"},
            fleet={"name": "prod", "lease": "30s"},
        )
        e.start()
        append(tmp_path / "logs" / "app.jsonl", line("db_down"))
        e.wait_caught_up()
        conftest.wait_until(lambda: "page-host" in (coll.find_one({"open": True}) or {}).get("ever", []), 10, "joined")
        base = re.search(r"status page on (http://[^/\s]+)/", e.output())
        assert base is not None, e.output()
        with urllib.request.urlopen(base.group(1) + "/api/v1/fleet", timeout=15) as resp:
            (row,) = json.loads(resp.read())
        assert row["hosts"] == ["h0", "page-host"] and row["stale"] == [hostile] and row["alerted_by"] == "h0"
        assert CHROMIUM is not None
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
        dom = subprocess.run(
            [CHROMIUM, *flags, f"--user-data-dir={tmp_path / 'chrome'}", "--dump-dom", base.group(1) + "/"],
            capture_output=True,
            text=True,
            timeout=90,
        ).stdout
        block = dom[dom.index("Fleet prod") :]
        assert "db_down" in block and "2: h0, page-host" in block and "alerted by" in block
        assert "&lt;img src=x onerror=alert(3)&gt;" in block and "<img" not in dom
        assert ">h0<" in block  # who sent the failure


def test_mongodb_stopped_mid_run_alerts_alone_then_converges(make_errord: Any, receiver: Any, tmp_path: Path) -> None:
    """While db_down fails on 3 hosts (announced once), the MongoDB stand-in stops: a new
    code alerts on each host alone (duplicates, never silence); restarted, the fleet state
    converges (every open incident merged, nothing resent), the history written to MongoDB
    is complete, and db_down still resolves once."""
    with FakeMongo() as mongo:
        (members, logs) = small_fleet(make_errord, receiver, tmp_path, mongo, ("a", "b", "c"))
        fleet = mongo.collection("errord", "fleet_incidents")
        for log in logs:
            append(log, line("db_down"))
        receiver.wait_for(1)
        conftest.wait_until(lambda: len((fleet.find_one({"key": "db_down"}) or {}).get("ever", [])) == 3, 15, "joined")
        mongo.stop()
        start = time.monotonic()
        for log in logs:
            append(log, line("net_down", msg="network down"))
        got = receiver.wait_for(4, timeout=20)  # each host alone: one failure each
        alone = time.monotonic() - start
        assert sorted(r.body["type"] for r in got[1:]) == ["failure"] * 3
        assert all("network down" in r.body["message"] for r in got[1:])
        for e in members:
            e.wait_caught_up()
        time.sleep(1.5)  # a renewal fails meanwhile (every second): the loop goes on reading
        start = time.monotonic()
        append(logs[0], line("db_slow"))
        got = receiver.wait_for(5, timeout=20)
        late = time.monotonic() - start
        assert got[4].body["type"] == "failure" and "db_slow" in got[4].body["title"] + got[4].body["message"]
        conftest.wait_until(  # its renewal's wait (2 s) may still be running on a loaded machine
            lambda: "fleet renew: MongoDB did not answer" in members[0].output(), 15, "a failed renewal logged"
        )
        mongo.start()  # the same port, the same documents
        back = time.monotonic()

        def converged() -> bool:
            doc = fleet.find_one({"key": "net_down", "open": True}) or {}
            return sorted(doc.get("ever", [])) == ["a", "b", "c"] and bool(doc.get("announced"))

        conftest.wait_until(converged, 20, lambda: f"net_down merged: {list(fleet.find({}))}")
        merged = time.monotonic() - back
        history = mongo.collection("errord", "error_codes")
        conftest.wait_until(lambda: history.count_documents({"code": "net_down"}) == 3, 20, "the history written")
        assert history.count_documents({"code": "db_down"}) == 3
        slow = fleet.find_one({"key": "db_slow", "open": True})
        assert slow is not None and slow["ever"] == ["a"] and slow["announced"]  # opened as already announced
        time.sleep(0.5)
        assert len(receiver.bodies()) == 5  # nothing resent at the merge
        # net_down and db_slow were sent alone: each host resolves its own; db_down the fleet's: once
        for log in logs:
            append(log, line(clear="net_down"))
        append(logs[0], line(clear="db_slow"))
        got = receiver.wait_for(9)
        assert [r.body["type"] for r in got[5:]] == ["success"] * 4
        for log in logs:
            append(log, line(clear="db_down"))
        got = receiver.wait_for(10)
        for e in members:
            e.wait_caught_up()
        time.sleep(0.5)
        bodies = receiver.bodies()
        assert len(bodies) == 10 and bodies[9]["type"] == "success"
        assert "resolved on all 3 hosts" in bodies[9]["message"]
        assert fleet.count_documents({"open": True}) == 0
        print(
            f"outage: alone failures {alone:.2f} s after the stop, a line read during it sent in {late:.2f} s;"
            f" merged {merged:.1f} s after the restart"
        )
