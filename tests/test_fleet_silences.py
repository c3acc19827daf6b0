"""Silences shared by the fleet (fleet.silences, CONTRACT §13) with real journals on
tmp_path and one mongomock collection: made on one member, muting on another; the last
set seen kept with MongoDB down (a restart too); ends from any member; until-resolved
silences by fleet key; ended ones pruned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mongomock
import pytest

from errord.fleet.silences import FleetSilences, listed, seen
from errord.model import Incident
from errord.policy.mute import MuteOracle
from errord.policy.silence import KEEP_ENDED, Silence
from errord.store.journal import Journal
from test_fleet_gate import Flaky
from test_journal import make_incident

NOW = 1_800_000_000.0


class Member:
    """A journal, a mute oracle and the fleet's silences, as one daemon holds them."""

    def __init__(self, root: Path, sid: str, coll: Any) -> None:
        self.sid, self.coll = sid, coll
        self.journal = Journal(root / sid)
        self.open: list[Incident] = []
        self.restart()

    def restart(self) -> None:
        self.mutes = MuteOracle()
        self.mutes.set_silences(self.journal.control.silences())
        self.shared = FleetSilences(
            self.coll, fleet="prod", server_id=self.sid, scope="code", journal=self.journal, mutes=self.mutes
        )

    def silence(self, sid: str, pattern: str, *, ends_at: float | None, ids: frozenset[str] = frozenset()) -> None:
        s = Silence(
            id=sid,
            pattern=pattern,
            app="*",
            starts_at=NOW,
            ends_at=ends_at,
            until_resolved=ends_at is None,
            created_at=NOW,
            incident_ids=ids,
            by="ops",
        )
        self.journal.commit([], [], [], NOW, also=lambda db: self.journal.control.insert(db, s))
        self.mutes.set_silences(self.journal.control.silences())

    def sync(self, now: float = NOW) -> bool:
        return self.shared.sync(now, lambda: self.open)

    def muted(self, code: str, now: float = NOW) -> str | None:
        self.mutes.now = now
        hit = self.mutes.check(make_incident(code, iid=f"{self.sid}-{code}"), now, {})
        return None if hit is None else hit[1]


@pytest.fixture(name="pair")
def two_members(tmp_path: Path) -> Any:
    coll = Flaky(mongomock.MongoClient().db.fleet_silences)
    a, b = Member(tmp_path, "a", coll), Member(tmp_path, "b", coll)
    yield a, b, coll
    a.journal.close()
    b.journal.close()


def test_made_on_one_member_mutes_on_the_others(pair: Any) -> None:
    a, b, coll = pair
    a.silence("s1", "db_*", ends_at=NOW + 3600)
    assert b.muted("db_down") is None
    assert a.sync() and b.sync()
    assert b.muted("db_down") == "s1" and b.muted("net_down") is None
    assert b.muted("db_down", NOW + 3601) is None  # its end time holds there too
    (doc,) = coll.inner.find({})
    assert doc["_id"] == "prod\x00s1" and doc["origin"] == "a" and doc["expire_at"] is not None
    # where each came from, in the listings
    (row,) = listed(b.journal, _config("b"), NOW, set(), since=None)
    assert row["id"] == "s1" and row["origin"] == "a" and row["active"] is True


def test_mongodb_down_keeps_the_last_set_seen_even_across_a_restart(pair: Any) -> None:
    a, b, coll = pair
    a.silence("s1", "db_down", ends_at=NOW + 3600)
    assert a.sync() and b.sync()
    coll.down = True
    assert not b.sync()
    b.restart()  # a new daemon, MongoDB still down: the journal's copy
    assert not b.sync()
    assert b.muted("db_down") == "s1"
    b.silence("s2", "net_down", ends_at=NOW + 3600)  # its own still mute, and wait to be written
    assert b.muted("net_down") == "s2" and b.shared.due()
    coll.down = False
    assert b.sync() and a.sync()
    assert a.muted("net_down") == "s2"


def test_an_end_on_any_member_holds_on_every_member(pair: Any) -> None:
    a, b, coll = pair
    a.silence("s1", "db_down", ends_at=NOW + 3600)
    assert a.sync() and b.sync()
    coll.down = True
    b.shared.end(["s1"], NOW + 10)  # unsilence on b while MongoDB is down: ended on b at once
    assert b.muted("db_down", NOW + 11) is None
    b.restart()
    assert b.muted("db_down", NOW + 11) is None  # the end waits in b's journal
    coll.down = False
    assert b.sync() and a.sync()
    assert a.journal.control.get(["s1"])["s1"].ended_at == NOW + 10  # a's own copy ended
    assert a.muted("db_down", NOW + 11) is None
    (doc,) = coll.inner.find({})
    assert doc["ended_by"] == "b"
    # an end made where it was made goes out too
    a.silence("s3", "x_*", ends_at=NOW + 3600)
    assert a.sync() and b.sync() and b.muted("x_y") == "s3"
    a.journal.control.end_now(["s3"], NOW + 20)
    a.mutes.set_silences(a.journal.control.silences())
    assert a.shared.due() and a.sync() and b.sync()
    assert b.muted("x_y", NOW + 21) is None


def test_until_resolved_covers_the_same_fleet_keys_elsewhere(pair: Any) -> None:
    a, b, _ = pair
    inc = make_incident("db_down", iid="a-inc")
    a.open = [inc]
    a.silence("ack1", "db_down", ends_at=None, ids=frozenset({"a-inc"}))
    assert a.sync() and b.sync()
    assert b.muted("db_down") == "ack1"  # b's own incident of the key
    assert b.muted("db_slow") is None
    a.journal.control.end_now(["ack1"], NOW + 5)  # a's incident resolved: the ack ends there ...
    a.mutes.set_silences(a.journal.control.silences())
    assert a.sync() and b.sync()
    assert b.muted("db_down", NOW + 6) is None  # ... and on b


def test_silences_ended_over_seven_days_ago_are_dropped(pair: Any) -> None:
    a, b, coll = pair
    a.silence("old", "db_down", ends_at=NOW + 60)
    assert a.sync()
    later = NOW + 60 + KEEP_ENDED + 1
    assert b.sync(later)
    assert b.mutes.fleet == () and seen(b.journal, _config("b")) == {}
    assert "expire_at_1" in coll.inner.index_information()


def _config(sid: str) -> Any:
    return type("C", (), {"fleet": type("F", (), {"name": "prod"})(), "server_id": sid, "scope": "code"})()


def test_a_silence_made_while_mongodb_is_away_costs_one_wait_not_one_per_turn(pair: Any) -> None:
    from errord.fleet.claims import FleetClaims
    from errord.fleet.gate import FleetGate

    a, _, coll = pair
    gate = FleetGate(FleetClaims(coll, fleet="prod", server_id="a", scope="code", lease=30.0), lambda c, n: 60.0)
    gate.silences = a.shared
    assert gate.tick(NOW, lambda: []) == [] and not gate.down  # a renewal: it answers
    asked: list[str] = []

    class Counting(Flaky):
        def __getattr__(self, name: str) -> Any:
            asked.append(name)
            return Flaky.__getattr__(self, name)

    counted = Counting(coll.inner)
    a.shared.coll = counted
    counted.down = True
    a.silence("s1", "db_down", ends_at=NOW + 3600)
    gate.tick(NOW + 1, lambda: [])  # made here: written at once ... no answer
    assert gate.down and not a.shared.due() and len(asked) == 1
    for turn in range(5):
        gate.tick(NOW + 1.1 + turn / 10, lambda: [])  # the next turns of the loop do not ask again
    assert len(asked) == 1
    counted.down = False
    gate.tick(NOW + 11, lambda: [])  # the next renewal: written and read
    assert not gate.down and coll.inner.find_one({"id": "s1"})["origin"] == "a"
