"""The packed form of untouched open incidents (engine_cold, issue 13's memory): what is
packed comes back equal, what cannot be packed stays an object, and an engine that packs
between batches behaves as one that never does — lines, the clock's reminders and
auto-resolves, inhibition, the cap, commands by key, a restart's restore. (The property
over random streams and batch splits is in test_engine_props.)"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.test_engine import T0, FakePolicy, ev

from errord import engine_cold
from errord.engine import Engine, incident_key
from errord.engine_cold import ColdCodec
from errord.model import Incident, Kind
from errord.noise import Noise
from errord.policy.mute import INHIBITED, MuteOracle
from errord.store.journal import Journal


def source(inc: Incident) -> str:
    return f"stored message of {inc.code}"


def make(policy: FakePolicy | None = None, **kw: Any) -> Engine:
    return Engine(policy or FakePolicy(), server_id="srv", node_name="node", new_id=lambda: uuid.uuid4().hex, **kw)


def settle(e: Engine) -> list[Incident]:
    """What the daemon's batch does after a commit: messages to the journal, then pack."""
    pending = e.pending()
    e.commit()
    for inc in pending:
        if inc.active and inc.held_message is not None:
            inc.keep_message_in(source)
    e.freeze(pending)
    return pending


def batch(e: Engine, *events: Any, freeze: bool = True) -> list[Any]:
    e.begin()
    out = [t for x in events for t in e.feed(x)]
    if freeze:
        settle(e)
    else:
        e.commit()
    return out


def incident(**kw: Any) -> Incident:
    base: dict[str, Any] = {
        "code": "db_down",
        "message": "x",
        "start_time": T0,
        "last_log_time": T0 + 5,
        "server_id": "srv",
        "node_name": "node",
        "active": True,
        "cleared_at": None,
        "created_at": 1.5,
        "updated_at": 2.5,
        "occurrences": 7,
        "alerts_sent": 2,
        "last_alert_time": T0 + 3,
        "app": "web",
        "incident_id": uuid.uuid4().hex,
        "since_alert": 4,
        "src": 3,
        "notified": ("t1", "t2"),
    }
    base.update(kw)
    inc = Incident(**base)
    inc.keep_message_in(source)
    return inc


# -- the codec -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "changes"),
    [
        ("code", {}),
        ("code", {"app": None, "src": -1, "notified": ()}),
        ("code", {"src": 40_000}),  # a src beyond 16 bits: the full form
        ("code", {"occurrences": 2**32, "since_alert": 0}),
        ("code", {"occurrences": 2**62, "since_alert": 2**62 - 1, "alerts_sent": 10**12}),
        ("code", {"incident_id": "0" * 31 + "1"}),  # leading zeros come back
        ("code", {"incident_id": "f" * 32, "start_time": -1.0, "last_log_time": 1e-300}),
        ("app", {}),
        ("app", {"app": None}),
        ("app", {"app": "a\x1fb", "code": "c\x1fd"}),  # the separator inside both: the app's length decides
        ("code", {"code": "ünïcødé \U0001f525"}),
        ("code", {"re_alerts": 3}),  # it re-alerted: the rare fields come along
        ("app", {"re_alert": 5.0, "notices_muted": 2}),
        ("code", {"reminded_at": T0 + 9, "flapping": True}),
        ("code", {"re_alert": 0.0, "reminded_at": -0.5, "re_alerts": 2**40}),
    ],
)
def test_what_is_packed_comes_back_equal(scope: str, changes: dict[str, Any]) -> None:
    codec = ColdCodec(scope)
    inc = _with(**changes)
    data = codec.pack(inc)
    assert data is not None
    full = inc._rare is not None or max(inc.occurrences, inc.alerts_sent) >= 2**32 or abs(inc.src) >= 2**15
    assert len(data) == (125 if full else 78)
    # one 112 B allocation (160 in full), not 160 + 48 + 32 for object, id, time
    assert sys.getsizeof(data) <= (160 if full else 112)
    key = incident_key(scope, inc.app, inc.code)
    back = codec.thaw(key, data)
    assert back == inc and back.record() == inc.record() and back.notified == inc.notified
    assert back.message == "stored message of " + inc.code and back.held_message is None
    assert codec.incident_id(data) == inc.incident_id
    assert codec.code_of(key, data) == inc.code
    assert codec.head(data) == (inc.app, inc.id_key)
    assert codec.peek(data) == (inc.src, inc.last_log_time, inc.alerts_sent, inc.reminded_at)


@pytest.mark.parametrize(
    ("why", "make_it"),
    [
        ("its message is held, not in the journal yet", lambda: Incident(**{**_fields(incident()), "message": "m"})),
        ("closed", lambda: _with(active=False, cleared_at=T0 + 9, resolved_by="clear")),
        ("a NaN interval (None in the packed form)", lambda: _with(re_alert=float("nan"))),
        ("an id that is not 32 hex digits", lambda: incident(incident_id="id-from-an-old-journal")),
        ("a count beyond 64 bits", lambda: incident(occurrences=2**64)),
    ],
)
def test_what_cannot_be_packed_stays_an_object(why: str, make_it: Any) -> None:
    assert ColdCodec("code").pack(make_it()) is None, why


def _fields(inc: Incident) -> dict[str, Any]:
    from errord.model import INCIDENT_COLUMNS

    return dict(zip(INCIDENT_COLUMNS, inc.values(), strict=True))


def _with(**kw: Any) -> Incident:
    inc = Incident(**{**_fields(incident()), **kw})
    inc.keep_message_in(source)
    return inc


def test_a_full_table_of_shared_values_leaves_new_ones_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_cold, "MAX_REFS", 5)  # host, app "a0", notified, source, app "a1"
    e = make(scope="app")
    batch(e, *(ev(i, "db", app=f"a{i}") for i in range(4)))
    assert len(e._cold) == 2 and len(e._active) == 2
    assert sorted(i.app for i in e.active().values()) == ["a0", "a1", "a2", "a3"]


# -- an engine that packs behaves as one that does not ----------------------------------


def twins(policy: FakePolicy | None = None, **kw: Any) -> tuple[Engine, Engine]:
    return make(policy, **kw), make(policy, **kw)


def same(packed: Engine, plain: Engine) -> None:
    def norm(e: Engine) -> list[tuple[Any, ...]]:
        # snapshot(), not active(): that would make every packed incident an object again
        return sorted((incident_key(e.scope, i.app, i.code), i.code, i.app, i.occurrences, i.alerts_sent,
                       i.since_alert, i.last_log_time, i.last_alert_time, i.start_time, i.src, i.active,
                       i.reminded_at, i.re_alerts) for i in e.snapshot())  # fmt: skip

    assert norm(packed) == norm(plain)


def outcome(ts: list[Any]) -> list[tuple[Any, ...]]:
    return [(t.kind, t.key, t.notify, t.muted, t.since_alert, t.duration) for t in ts]


def test_lines_after_packing_alert_suppress_re_alert_and_clear_as_before() -> None:
    packed, plain = twins(FakePolicy(default=10.0))
    script = [
        [ev(0, "db"), ev(0, "api"), ev(1, "disk", app="w")],
        [ev(2, "db")],  # a repeat of a packed incident: suppressed
        [ev(11, "db"), ev(12, "api")],  # re-alerts
        [ev(13, None, "db")],  # a clear of a packed one: resolved, with its duration
        [ev(14, "db")],  # opens again
    ]
    for events in script:
        a = batch(packed, *events)
        b = batch(plain, *events, freeze=False)
        assert outcome(a) == outcome(b)
        same(packed, plain)
    assert set(packed._cold) == {"db", "api", "disk"} and not packed._active
    assert packed.open_count() == 3 == len(plain.active())


def test_the_clock_reminds_and_auto_resolves_packed_incidents() -> None:
    noise = Noise(auto_resolve_after=100.0, remind_every=30.0)
    packed, plain = twins(FakePolicy(default=1000.0, noise=noise))
    for e in (packed, plain):
        batch(e, ev(0, "db"), ev(0, "api"), ev(50, "disk"), freeze=e is packed)
        e.flaps.states.clear()
    for q in (10.0, 31.0, 45.0, 62.0, 85.0, 99.0, 101.0, 151.0):
        got = []
        for e in (packed, plain):
            e.begin()
            ts = e.tick(lambda src, q=q: T0 + q)
            got.append(outcome(ts))
            if e is packed:
                settle(e)
            else:
                e.commit()
        assert got[0] == got[1], q
        same(packed, plain)
    assert packed.open_count() == 0


@pytest.mark.parametrize(
    ("scope", "inhibitor_app", "inhibited"),
    [("code", "web", True), ("app", "web", True), ("app", "other", False)],  # scope "app": same app only
)
def test_a_packed_incident_inhibits_as_an_open_object_does(scope: str, inhibitor_app: str, inhibited: bool) -> None:
    packed, plain = twins(scope=scope)
    for e in (packed, plain):
        e.mutes = MuteOracle(inhibited_by=lambda c: ("db_*",) if c.startswith("app_") else (), scope=scope)
        batch(e, ev(0, "db_down", app=inhibitor_app), ev(0, "app_ok", app="web"), freeze=e is packed)
    assert len(packed._cold) == 2
    a, b = batch(packed, ev(1, "app_err", app="web")), batch(plain, ev(1, "app_err", app="web"), freeze=False)
    assert outcome(a) == outcome(b) and (a[0].muted == INHIBITED) is inhibited
    # an incident never inhibits itself, packed or not
    e = make()
    e.mutes = MuteOracle(inhibited_by=lambda c: ("db_*",))
    batch(e, ev(0, "db_down"))
    (t,) = batch(e, ev(4000, "db_down"))
    assert t.kind is Kind.REALERT and t.notify and t.muted is None


def test_the_cap_counts_packed_incidents() -> None:
    packed, plain = twins(max_open_incidents=3)
    for e in (packed, plain):
        for i in range(5):
            batch(e, ev(i, f"c{i}"), freeze=e is packed)
    same(packed, plain)
    assert packed.open_count() == 4  # three and the overflow incident


def test_commands_by_key_find_packed_incidents() -> None:
    e = make()
    batch(e, ev(0, "db"), ev(0, "api"))
    ids = e.open_ids()
    assert ids == {i.incident_id for i in e.snapshot()} and len(ids) == 2 and len(e._cold) == 2
    e.begin()
    t = e.resolve("db", T0 + 5, "by hand")
    assert t is not None and t.kind is Kind.CLEAR and t.incident.resolved_by == "manual"
    assert t.incident.message == "stored message of db"
    settle(e)
    assert e.open_count() == 1 and set(e._cold) == {"api"}


def test_active_where_thaws_only_the_packed_incidents_it_returns() -> None:
    """The start's check for removed targets (``Daemon._apply_targets``): 10,000 packed
    incidents alerted of kept targets stay packed; those that match come back live."""
    e = make()
    e.restore(
        [
            *(incident(code=f"c{k}", notified=("kept",)) for k in range(10_000)),
            incident(code="gone", notified=("old",)),
        ],
        pack=True,
    )
    object_held = incident(code="object", notified=("old", "kept"), incident_id="not hex")  # never packed
    e._active[object_held.code] = object_held
    assert len(e._cold) == 10_001 and len(e._active) == 1
    found = e.active_where(lambda targets: "old" in targets)
    assert sorted(i.code for i in found) == ["gone", "object"]
    assert len(e._cold) == 10_000 and set(e._active) == {"gone", "object"}  # the live ones
    found[0].notified = found[1].notified = ("kept",)
    assert {i.code: i.notified for i in e.snapshot() if i.code in ("gone", "object")} == {
        "gone": ("kept",),
        "object": ("kept",),
    }
    assert e.active_where(lambda targets: "old" in targets) == []
    e.freeze_all()
    assert len(e._cold) == 10_001 and set(e._active) == {"object"}


def test_a_rollback_after_thawing_leaves_the_state_as_committed() -> None:
    e = make(FakePolicy(default=10.0))
    batch(e, ev(0, "db"))
    before = e.snapshot()[0].record()
    e.begin()
    e.feed(ev(20, "db"))
    e.rollback()
    assert [i.record() for i in e.snapshot()] == [before]
    batch(e, ev(21, "db"))
    assert e.snapshot()[0].occurrences == 2


def test_snapshot_copies_do_not_change_the_engine_but_active_objects_do() -> None:
    e = make()
    batch(e, ev(0, "db"))
    e.snapshot()[0].occurrences = 99
    assert e.snapshot()[0].occurrences == 1
    live = e.active()["db"]
    live.notified = ("kept",)  # what Router.forget_removed does to the live objects
    assert e.active()["db"] is live and not e._cold
    e.freeze_all()
    assert "db" in e._cold and e.snapshot()[0].notified == ("kept",)


def test_no_packing_inside_a_batch() -> None:
    e = make()
    batch(e, ev(0, "db"))
    e.begin()
    e.feed(ev(1, "db"))
    e.freeze_all()  # the daemon's idle call while a batch is held: nothing moves
    assert "db" in e._active
    settle(e)
    assert "db" in e._cold


def test_a_restart_restores_packed_from_the_journal(tmp_path: Path) -> None:
    e = make(FakePolicy(default=10.0), scope="app")
    with Journal(tmp_path) as journal:
        e.begin()
        for i in range(50):
            e.feed(ev(i, f"c{i % 10}", app=f"a{i % 5}"))
        e.feed(ev(60, "closed"))
        e.feed(ev(61, None, "closed"))
        journal.commit(e.pending(), [], [], 1000.0)
        e.commit()
        restarted = make(FakePolicy(default=10.0), scope="app")
        restarted.restore(journal.iter_active(messages=False), pack=True)
        assert not restarted._active and restarted.open_count() == 10
        want = sorted((i.record() for i in journal.active()), key=lambda r: r["incident_id"])
        got = sorted((i.record() for i in restarted.snapshot()), key=lambda r: r["incident_id"])
        assert got == want
        assert all(r["message"].startswith("msg@") for r in got)  # read from the journal
        ts = batch(restarted, ev(100, "c3", app="a3"), ev(101, "c3", app="a1"))
        assert [t.kind for t in ts] == [Kind.REALERT, Kind.NEW]
