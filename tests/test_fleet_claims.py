"""Table tests of the fleet's claim logic (CONTRACT §13) against mongomock: who speaks,
re-alerts by the holder, the one resolve, leases and take-over, scope, merge at rejoin."""

from __future__ import annotations

import threading
from typing import Any

import mongomock
import pytest
from pymongo.errors import ServerSelectionTimeoutError

from errord.fleet.claims import FleetClaims, ScopeMismatch

LEASE = 30.0


@pytest.fixture(name="coll")
def shared_collection() -> Any:
    return mongomock.MongoClient().db.fleet_incidents


def members(coll: Any, n: int, *, scope: str = "code") -> list[FleetClaims]:
    return [FleetClaims(coll, fleet="prod", server_id=f"h{i}", scope=scope, lease=LEASE) for i in range(n)]


def every(_: int) -> float:
    return 60.0


def test_first_open_speaks_the_others_join(coll: Any) -> None:
    hosts = members(coll, 3)
    decisions = [h.open("db_down", "db_down", None, 100.0 + i, 1000.0) for i, h in enumerate(hosts)]
    assert [d.send for d in decisions if d] == [True, False, False]
    assert decisions[2] is not None and decisions[2].hosts == ("h0", "h1", "h2")
    # opening again (a restart) neither sends nor counts twice
    again = hosts[1].open("db_down", "db_down", None, 99.0, 1001.0)
    assert again is not None and not again.send and again.total == 3
    (row,) = hosts[0].rows(1001.0)
    assert row["hosts"] == ["h0", "h1", "h2"] and row["start_time"] == 99.0 and row["stale"] == []


def test_racing_opens_send_exactly_once(coll: Any) -> None:
    hosts = members(coll, 10)
    lock = threading.Lock()  # mongomock is not thread-safe: one operation at a time, as a server per document
    results: list[bool] = []
    barrier = threading.Barrier(10)

    class Locked:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            fn = getattr(self.inner, name)

            def call(*a: Any, **k: Any) -> Any:
                with lock:
                    return fn(*a, **k)

            return call

    for h in hosts:
        h.coll = Locked(coll)  # type: ignore[assignment]

    def go(h: FleetClaims) -> None:
        barrier.wait()
        d = h.open("db_down", "db_down", None, 100.0, 1000.0)
        assert d is not None
        results.append(d.send)

    threads = [threading.Thread(target=go, args=(h,)) for h in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 9 + [True]


def test_re_alert_once_per_interval_by_the_holder(coll: Any) -> None:
    hosts = members(coll, 3)
    for h in hosts:
        h.open("k", "k", None, 100.0, 1000.0)
    assert hosts[0].announce("k", 100.0)
    assert not hosts[1].announce("k", 100.0)  # not the holder
    # too early for anyone
    assert [h.re_alert("k", 150.0, 1001.0, every).send for h in hosts] == [False] * 3  # type: ignore[union-attr]
    # due: only the holder, once
    got = [h.re_alert("k", 160.0, 1002.0, every) for h in hosts]
    assert [d.send for d in got if d] == [True, False, False]
    assert got[0] is not None and got[0].hosts == ("h0", "h1", "h2")
    # backoff counts the fleet's re-alerts: interval(n) doubles
    backoff = lambda n: 60.0 * 2**n  # noqa: E731
    assert not hosts[0].re_alert("k", 270.0, 1003.0, backoff).send  # type: ignore[union-attr]
    assert hosts[0].re_alert("k", 280.0, 1003.0, backoff).send  # type: ignore[union-attr]


def test_resolve_once_by_the_last_to_clear(coll: Any) -> None:
    hosts = members(coll, 10)
    for h in hosts:
        h.open("k", "k", None, 100.0, 1000.0)
    hosts[0].announce("k", 100.0)
    sends = [h.clear("k", 1010.0) for h in hosts]
    assert [d.send for d in sends if d] == [False] * 9 + [True]
    assert sends[-1] is not None and sends[-1].total == 10
    assert hosts[0].rows(1010.0) == []
    # a new episode afterwards is opened (and announced) afresh
    assert hosts[3].open("k", "k", None, 200.0, 1100.0).send  # type: ignore[union-attr]


def test_clear_and_fail_again_rejoins_silently(coll: Any) -> None:
    a, b = members(coll, 2)
    a.open("k", "k", None, 100.0, 1000.0)
    a.announce("k", 100.0)
    b.open("k", "k", None, 101.0, 1000.0)
    assert not a.clear("k", 1001.0).send  # type: ignore[union-attr]
    again = a.open("k", "k", None, 102.0, 1002.0)
    assert again is not None and not again.send and again.total == 2


def test_stale_holder_is_replaced_and_stale_members_do_not_block_the_resolve(coll: Any) -> None:
    a, b, c = members(coll, 3)
    for h in (a, b, c):
        h.open("k", "k", None, 100.0, 1000.0)
    a.announce("k", 100.0)
    # b and c renew; a falls silent past the lease
    later = 1000.0 + LEASE + 1
    b.renew(later)
    c.renew(later)
    (row,) = b.rows(later)
    assert row["hosts"] == ["h1", "h2"] and row["stale"] == ["h0"]
    # b takes over (announced: no failure notice again) and re-alerts naming the live hosts
    t = b.take_over("k", later)
    assert t is not None and not t.send
    r = b.re_alert("k", 200.0, later, every)
    assert r is not None and r.send and r.hosts == ("h1", "h2")
    assert not c.re_alert("k", 200.0, later, every).send  # type: ignore[union-attr]
    # the resolve does not wait for stale a
    assert not b.clear("k", later).send  # type: ignore[union-attr]
    assert c.clear("k", later).send  # type: ignore[union-attr]


def test_unannounced_claim_lapses_and_the_next_sends_the_failure(coll: Any) -> None:
    a, b = members(coll, 2)
    assert a.open("k", "k", None, 100.0, 1000.0).send  # type: ignore[union-attr]
    b.open("k", "k", None, 100.0, 1000.0)
    # a died before recording its notice
    assert b.take_over("k", 1001.0) is None  # a's claim is within its lease: no take-over
    later = 1000.0 + LEASE + 1
    b.renew(later)
    t = b.take_over("k", later)
    assert t is not None and t.send
    assert b.announce("k", 200.0)


def test_merge_at_rejoin_sends_nothing_again(coll: Any) -> None:
    a, b = members(coll, 2)
    # both alerted alone while MongoDB was away; the first to come back opens it announced
    m1 = a.merge("k", "k", None, 100.0, 1000.0)
    m2 = b.merge("k", "k", None, 101.0, 1000.0)
    assert m1 is not None and m2 is not None and not m1.send and not m2.send
    assert not a.take_over("k", 1000.0)  # nothing to send
    assert not a.clear("k", 1001.0).send  # type: ignore[union-attr]
    assert b.clear("k", 1001.0).send  # type: ignore[union-attr]  # one resolve for the fleet


def test_scope_mismatch_and_duplicate_server_id(coll: Any) -> None:
    (a,) = members(coll, 1)
    assert a.start("pid-1", 1000.0) is False
    (twin,) = members(coll, 1)
    assert twin.start("pid-2", 1001.0) is True  # the same server_id running elsewhere
    (other,) = members(coll, 1, scope="app")
    with pytest.raises(ScopeMismatch, match="scope 'code'"):
        other.start("pid-3", 1002.0)


def test_no_answer_fails_open() -> None:
    class Down:
        def __getattr__(self, name: str) -> Any:
            def fail(*a: Any, **k: Any) -> Any:
                raise ServerSelectionTimeoutError("no servers")

            return fail

    (a,) = members(Down(), 1)
    assert a.open("k", "k", None, 100.0, 1000.0) is None
    assert a.clear("k", 1000.0) is None
    assert a.renew(1000.0) is None
