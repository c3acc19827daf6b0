"""control.Controller: the commands applied to an engine and a real journal (the daemon's
and the stopped-CLI's one path), each in one transaction with its outcome row."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from errord.control import Controller, apply_offline
from errord.engine import Engine
from errord.errors import ErrordError
from errord.policy.mute import MuteOracle
from errord.policy.pipeline import standard_policy
from errord.policy.route import Router
from errord.settings import Settings
from errord.store.journal import Journal
from errord.store.runstate import RunLock
from test_engine import T0, ev


@pytest.fixture
def setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    config = Settings(server_id="h", state_dir=tmp_path / "state").to_run()
    journal = Journal(config.state_dir)
    engine = Engine(config, server_id="h")
    mutes = MuteOracle.for_config(config)
    engine.mutes = mutes
    clock = [T0 + 10]
    controller = Controller(
        engine,
        standard_policy(Router([("a", ())])),
        journal,
        config,
        mutes,
        clock=lambda: clock[0],
        monotonic=lambda: clock[0],
    )
    yield controller, engine, journal, clock
    journal.close()


def feed(controller: Controller, *events):  # type: ignore[no-untyped-def]
    """One batch of these lines, as ``batch.Batch`` runs it."""
    engine = controller.engine
    engine.begin(controller._clock())
    out = []
    for e in events:
        out += controller.policy.apply(engine.feed(e), _ctx(controller))
    per_silence = {sid: n for (_, sid), n in engine.muted().items() if sid}
    controller.journal.commit(engine.pending(), [], out, controller._clock(), silenced=per_silence)
    engine.commit()
    return out


def _ctx(controller: Controller):  # type: ignore[no-untyped-def]
    from errord.policy.base import Context

    return Context(now=controller._clock(), server_id="h", node_name="", tags_for=lambda c: ())


def test_until_resolved_covers_what_is_open_now_and_ends_with_it(setup) -> None:  # type: ignore[no-untyped-def]
    controller, _, journal, clock = setup
    status, out = controller.apply("silence", {"pattern": "db_*", "until_resolved": True})
    assert status == 1 and "no open incident matches 'db_*'" in out["error"]  # none open: refused
    assert feed(controller, ev(0, "db_a"))  # alerted
    status, out = controller.apply("silence", {"pattern": "db_*", "until_resolved": True, "by": "me"})
    sid = out["silence"]["id"]
    assert status == 0 and out["silence"]["until_resolved"] and out["silence"]["ends_at"] is None
    assert feed(controller, ev(5000, "db_a")) == []  # its re-alert: muted
    assert feed(controller, ev(5001, "db_b"))  # a later incident of a matching code alerts
    (s,) = journal.control.silences()
    assert (s.id, s.muted, s.by) == (sid, 1, "me")
    assert [n.type.value for n in feed(controller, ev(5002, clear="db_a"))] == ["success"]
    controller.tick()  # its last incident resolved: the silence ends
    assert journal.control.silences() == [] and journal.control.get([sid])[sid].ended_at == clock[0]


def test_commands_in_the_table_are_applied_by_tick_with_their_outcome(setup) -> None:  # type: ignore[no-untyped-def]
    controller, engine, journal, clock = setup
    feed(controller, ev(0, "E"))
    ack = journal.control.submit("ack", {"code": "E"}, clock[0])
    bad = journal.control.submit("unsilence", {"ids": ["nosuch"]}, clock[0])
    odd = journal.control.submit("silence", {"nothing": 1}, clock[0])
    resolve = journal.control.submit("resolve", {"code": "E", "reason": "gone"}, clock[0])
    assert journal.control.outcome(ack) is None
    assert controller.tick() == 1  # one notice made: the resolve
    assert controller.tick() == 0  # not due again yet
    assert journal.control.pending() == []
    status, out = journal.control.outcome(ack)  # type: ignore[misc]
    assert status == 0 and out["silence"]["ack"]
    assert journal.control.outcome(bad) == (
        1,
        {"ended": [], "unknown": ["nosuch"], "error": "unknown silence id(s): nosuch"},
    )
    assert journal.control.outcome(odd)[0] == 1  # type: ignore[index]
    assert journal.control.outcome(resolve)[0] == 0  # type: ignore[index]
    (inc,) = journal.history()
    assert (inc.active, inc.resolved_by, inc.cleared_at) == (False, "manual", clock[0])
    assert journal.control.silences() == []  # the ack ended with the incident it was made for
    assert engine.active() == {}


def test_offline_apply_takes_the_lock_and_refuses_while_a_daemon_holds_it(tmp_path: Path) -> None:
    config = Settings(server_id="h", state_dir=tmp_path / "state").to_run()
    status, out = apply_offline(config, "silence", {"pattern": "x", "ends_at": T0 + 1e9})
    assert status == 0 and out["silence"]["pattern"] == "x"
    lock = RunLock(config.state_dir)
    lock.acquire()
    try:
        with pytest.raises(ErrordError, match="another errord"):
            apply_offline(config, "unsilence", {"ids": [out["silence"]["id"]]})
    finally:
        lock.release()
    assert apply_offline(config, "unsilence", {"ids": [out["silence"]["id"]]})[0] == 0


def test_ended_silences_are_listed_for_7_days_then_pruned(tmp_path: Path) -> None:
    from errord.policy.silence import Silence

    day = 86400.0
    with Journal(tmp_path / "state") as journal:
        control = journal.control
        rows = [
            Silence(id="running", pattern="a", app="*", starts_at=T0, ends_at=T0 + 30 * day, until_resolved=False),
            Silence(id="expired", pattern="b", app="*", starts_at=T0, ends_at=T0 + day, until_resolved=False),
            Silence(id="old", pattern="c", app="*", starts_at=T0, ends_at=T0 + 10 * day, until_resolved=False),
            Silence(id="acked", pattern="d", app="*", starts_at=T0, ends_at=None, until_resolved=True),
        ]
        with journal._tx("test") as db:
            for k, s in enumerate(rows):  # oldest first: in the order made
                control.insert(db, replace(s, created_at=T0 + k))
        control.end_now(["old"], T0 + 2 * day)  # unsilenced early
        now = T0 + 9.5 * day
        assert [s.id for s in control.silences()] == ["running", "expired", "acked"]  # not ended by hand
        assert [s.id for s in control.silences(since=now - 7 * day)] == ["running", "acked"]
        assert [s.id for s in control.silences(since=T0)] == ["running", "expired", "old", "acked"]
        assert control.prune(now) == 2  # "expired" (day 1) and "old" (ended day 2): over 7 days ago
        assert sorted(control.get(["running", "expired", "old", "acked"])) == ["acked", "running"]
