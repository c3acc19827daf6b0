"""The fleet client at the edge of a batch (fleet.gate) with three members on one
mongomock collection: one failure, re-alerts by the holder naming the hosts, one resolve;
MongoDB away → each sends alone, rejoin merges without a notice, own resolve."""

from __future__ import annotations

from typing import Any

import mongomock

from errord.fleet.claims import FleetClaims
from errord.fleet.gate import FleetGate
from errord.model import Incident, Notice, NoticeType
from test_journal import make_incident

F, W, S = NoticeType.FAILURE, NoticeType.WARNING, NoticeType.SUCCESS


def notice(inc: Incident, kind: NoticeType, ts: float) -> Notice:
    return Notice(type=kind, code=inc.code, title=kind.value, body="b", incident_id=inc.incident_id, event_time=ts)


def gates(coll: Any, n: int) -> list[FleetGate]:
    return [
        FleetGate(FleetClaims(coll, fleet="prod", server_id=f"h{i}", scope="code", lease=30.0), lambda c, n: 60.0)
        for i in range(n)
    ]


def step(g: FleetGate, inc: Incident, kind: NoticeType, ts: float, now: float) -> list[str]:
    out = g.gate([notice(inc, kind, ts)], [inc], now)
    g.committed(ts)
    return [n.body for n in out]


def test_one_failure_holder_re_alerts_one_resolve() -> None:
    gs = gates(mongomock.MongoClient().db.fleet_incidents, 3)
    incs = [make_incident("db_down", start=100.0 + i, iid=f"i{i}") for i in range(3)]
    sent = [step(g, inc, F, 100.0, 1000.0) for g, inc in zip(gs, incs, strict=True)]
    assert sent == [["b\nfailing on 1 host(s): h0"], [], []]
    sent = [step(g, inc, W, 170.0, 1001.0) for g, inc in zip(gs, incs, strict=True)]
    assert sent == [["b\nfailing on 3 hosts: h0, h1, h2"], [], []]
    sent = [step(g, inc, S, 180.0, 1002.0) for g, inc in zip(gs, incs, strict=True)]
    assert sent == [[], [], ["b\nresolved on all 3 hosts"]]


class Flaky:
    """A collection that does not answer while ``down``."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.down = inner, False

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self.inner, name)

        def call(*a: Any, **k: Any) -> Any:
            if self.down:
                from pymongo.errors import ServerSelectionTimeoutError

                raise ServerSelectionTimeoutError("down")
            return fn(*a, **k)

        return call


def test_mongodb_away_each_alone_then_merged_and_resolved_once() -> None:
    coll = Flaky(mongomock.MongoClient().db.fleet_incidents)
    gs = gates(coll, 2)
    incs = [make_incident("db_down", start=100.0, iid=f"i{i}") for i in range(2)]
    coll.down = True
    assert [step(g, inc, F, 100.0, 1000.0) for g, inc in zip(gs, incs, strict=True)] == [["b"], ["b"]]
    coll.down = False
    for g, inc in zip(gs, incs, strict=True):
        g.tick(1011.0, lambda inc=inc: [inc])  # type: ignore[misc]
    (doc,) = list(coll.inner.find({"open": True}))
    assert doc["announced"] and sorted(doc["ever"]) == ["h0", "h1"]
    # each resolves the notice it sent alone; the fleet incident closes, nothing more
    assert [step(g, inc, S, 200.0, 1012.0) for g, inc in zip(gs, incs, strict=True)] == [["b"], ["b"]]
    assert list(coll.inner.find({"open": True})) == []


def test_a_claim_never_announced_is_owed_by_the_next_failing_member_once_it_lapses() -> None:
    coll = mongomock.MongoClient().db.fleet_incidents
    opener, other = gates(coll, 2)
    incs = [make_incident("db_down", start=100.0, iid=f"i{i}") for i in range(2)]
    assert opener.gate([notice(incs[0], F, 100.0)], [incs[0]], 1000.0)  # claimed: the opener sends ...
    opener.rolled_back()  # ... but dies before its journal has the notice
    assert step(other, incs[1], F, 100.0, 1001.0) == []  # joins: nothing
    assert other.tick(1020.0, lambda: [incs[1]]) == []  # the opener's claim is a lease (30 s)
    other._renewed = 0.0
    ((inc, decision),) = other.tick(1031.0 + 1, lambda: [incs[1]])
    assert inc is incs[1] and decision.send and decision.hosts == ("h1",)
    assert coll.find_one({})["holder"] == "h1" and not coll.find_one({})["announced"]
    # a lapsed holder of an announced fleet incident owes nothing (its re-alerts are taken over)
    coll.update_one({}, {"$set": {"announced": True, "holder": "h0", "holder_until": 0.0}})
    again = gates(coll, 2)[1]  # h1, restarted
    assert again.tick(1040.0, lambda: [incs[1]]) == []
