"""The incident state machine, rule by rule (CONTRACT §2)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest

from errord.engine import Engine, incident_key
from errord.model import Kind, LogEvent
from errord.noise import NOISE_DEFAULTS, Noise

T0 = 1_768_400_000.0  # 2026-01-14


@dataclass
class FakePolicy:
    default: float = 3600.0
    per_code: dict[str, float] = field(default_factory=dict)
    silent: set[str] = field(default_factory=set)
    noise: Noise = NOISE_DEFAULTS

    def re_alert_for(self, code: str) -> float:
        return self.per_code.get(code, self.default)

    def notify_for(self, code: str) -> bool:
        return code not in self.silent

    def noise_for(self, code: str) -> Noise:
        return self.noise


def ev(t: float, code: str | None = None, clear: str | None = None, **kw: Any) -> LogEvent:
    return LogEvent(code=code, clear=clear, message=kw.pop("message", f"msg@{t}"), time=T0 + t, **kw)


def make_engine(policy: FakePolicy | None = None, **kw: Any) -> Engine:
    counter = itertools.count(1)
    return Engine(policy or FakePolicy(), server_id="srv", node_name="node", new_id=lambda: f"id{next(counter)}", **kw)


def kinds(engine: Engine, events: list[LogEvent]) -> list[list[tuple[str, bool]]]:
    out = []
    for e in events:
        out.append([(t.kind.value, t.notify) for t in engine.feed(e)])
    return out


NEW, REP, RE, ANN, CLR, UNK = "new", "repeat", "realert", "announce", "clear", "clear_unknown"

CASES = [
    pytest.param(
        FakePolicy(),
        [ev(0, "db"), ev(10, "db"), ev(3599, "db")],
        [[(NEW, True)], [(REP, False)], [(REP, False)]],
        id="repeats-inside-interval-suppressed",
    ),
    pytest.param(
        FakePolicy(),
        [ev(0, "db"), ev(3600, "db"), ev(3601, "db"), ev(7200, "db")],
        [[(NEW, True)], [(RE, True)], [(REP, False)], [(RE, True)]],
        id="re-alert-exactly-at-boundary-then-reset",
    ),
    pytest.param(
        FakePolicy(per_code={"rate": 900}),
        [ev(0, "rate"), ev(899, "rate"), ev(900, "rate"), ev(0, "other"), ev(900, "other")],
        [[(NEW, True)], [(REP, False)], [(RE, True)], [(NEW, True)], [(REP, False)]],
        id="per-code-interval-else-default",
    ),
    pytest.param(
        FakePolicy(),
        [ev(0, "db", re_alert=60), ev(30, "db"), ev(60, "db"), ev(100, "db"), ev(120, "db")],
        [[(NEW, True)], [(REP, False)], [(RE, True)], [(REP, False)], [(RE, True)]],
        id="interval-remembered-from-earlier-line",
    ),
    pytest.param(
        FakePolicy(),
        [ev(0, "db", re_alert=60), ev(10, "db", re_alert=600), ev(70, "db"), ev(600, "db")],
        [[(NEW, True)], [(REP, False)], [(REP, False)], [(RE, True)]],
        id="latest-line-interval-wins",
    ),
    pytest.param(
        FakePolicy(per_code={"db": 10}),
        [ev(0, "db", re_alert=100), ev(10, "db"), ev(100, "db")],
        [[(NEW, True)], [(REP, False)], [(RE, True)]],
        id="line-interval-beats-config",
    ),
    pytest.param(
        FakePolicy(),
        [ev(0, "db", re_alert=0), ev(0, "db"), ev(1, "db"), ev(-5, "db")],
        [[(NEW, True)], [(RE, True)], [(RE, True)], [(RE, True)]],
        id="zero-interval-alerts-every-occurrence",
    ),
    pytest.param(
        FakePolicy(),
        [ev(0, "db", notify=False), ev(3600, "db", notify=False), ev(7200, "db", notify=False)],
        [[(NEW, False)], [(RE, False)], [(RE, False)]],
        id="notification-false-silent-but-tracked",
    ),
    # CONTRACT §2 "an incident nobody has heard of announces itself": while alerts_sent = 0,
    # the first line that may notify sends a failure (ANNOUNCE) without waiting the interval.
    pytest.param(
        FakePolicy(),
        [ev(0, "db", notify=False), ev(10, "db", notify=False), ev(20, "db"), ev(30, "db"), ev(3620, "db")],
        [[(NEW, False)], [(REP, False)], [(ANN, True)], [(REP, False)], [(RE, True)]],
        id="silent-incident-announces-on-first-loud-line-then-interval-as-usual",
    ),
    pytest.param(
        FakePolicy(),
        [ev(0, "db", notify=False), ev(3600, "db"), ev(3700, "db")],
        [[(NEW, False)], [(ANN, True)], [(REP, False)]],
        id="announce-when-the-interval-is-due-too-is-a-failure-not-a-realert",
    ),
    pytest.param(
        FakePolicy(),
        [ev(0, "db", notify=False, re_alert=0), ev(1, "db"), ev(2, "db")],
        [[(NEW, False)], [(ANN, True)], [(RE, True)]],
        id="announce-with-interval-zero-then-every-occurrence-re-alerts",
    ),
    pytest.param(
        FakePolicy(silent={"noisy"}),
        [ev(0, "noisy"), ev(1, "noisy"), ev(2, "noisy", notify=True)],
        [[(NEW, False)], [(REP, False)], [(REP, False)]],
        id="config-silent-code-never-announces",
    ),
    pytest.param(
        FakePolicy(),
        [ev(0, "db", notify=False), ev(5, clear="db")],
        [[(NEW, False)], [(CLR, False)]],
        id="incident-that-notified-nobody-resolves-silently",
    ),
    pytest.param(
        FakePolicy(),
        [ev(0, "db", notify=False), ev(5, "db"), ev(9, clear="db")],
        [[(NEW, False)], [(ANN, True)], [(CLR, True)]],
        id="announced-incident-resolves-aloud",
    ),
    pytest.param(
        FakePolicy(),
        [ev(0, "db"), ev(5, clear="db", notify=False)],
        [[(NEW, True)], [(CLR, False)]],
        id="clearing-line-notification-false-keeps-the-resolve-silent",
    ),
    pytest.param(
        FakePolicy(silent={"noisy"}),
        [ev(0, "noisy"), ev(5, "noisy", notify=True, re_alert=1), ev(0, "other", notify=True)],
        [[(NEW, False)], [(RE, False)], [(NEW, True)]],
        id="config-notify-false-wins-over-line-true",
    ),
    pytest.param(
        FakePolicy(),
        [ev(0, "db"), ev(50, clear="db"), ev(60, clear="db"), ev(70, "db")],
        [[(NEW, True)], [(CLR, True)], [(UNK, False)], [(NEW, True)]],
        id="clear-then-unknown-clear-then-new-incident",
    ),
    pytest.param(
        FakePolicy(),
        [ev(0, clear="never")],
        [[(UNK, False)]],
        id="clear-of-unknown-code",
    ),
    pytest.param(
        FakePolicy(),
        [ev(0, "db"), ev(10, "db", clear="db")],
        [[(NEW, True)], [(CLR, True), (NEW, True)]],
        id="both-on-one-line-clear-first",
    ),
    pytest.param(
        FakePolicy(),
        [ev(100, "db"), ev(50, "db"), ev(3650, "db"), ev(3700, "db")],
        [[(NEW, True)], [(REP, False)], [(REP, False)], [(RE, True)]],
        id="older-event-time-never-re-alerts-early",
    ),
]


@pytest.mark.parametrize("policy,events,expected", CASES)
def test_rules(policy: FakePolicy, events: list[LogEvent], expected: list[list[tuple[str, bool]]]) -> None:
    assert kinds(make_engine(policy), events) == expected


def test_new_incident_record_fields() -> None:
    e = make_engine()
    (t,) = e.feed(ev(0, "db", message="db down", app="api", re_alert=30))
    inc = t.incident
    assert inc is not None
    assert (inc.code, inc.message, inc.app, inc.incident_id) == ("db", "db down", "api", "id1")
    assert inc.start_time == inc.last_log_time == inc.last_alert_time == T0
    assert (inc.server_id, inc.node_name, inc.active, inc.cleared_at) == ("srv", "node", True, None)
    assert (inc.occurrences, inc.alerts_sent, inc.re_alert) == (1, 1, 30)


def test_counts_through_an_incident() -> None:
    e = make_engine(FakePolicy(default=100))
    for t in (0, 10, 20, 100, 150, 250):
        e.feed(ev(t, "db", message=f"m{t}"))
    inc = e.active()["db"]
    assert inc.occurrences == 6
    assert inc.alerts_sent == 3  # new at 0, re-alerts at 100 and 250 (150 < 100+100)
    assert inc.last_alert_time == T0 + 250
    assert inc.last_log_time == T0 + 250
    assert inc.message == "m0"  # message of the opening line


def test_realert_reports_occurrences_since_last_alert() -> None:
    e = make_engine(FakePolicy(default=100))
    e.feed(ev(0, "db"))
    for t in (10, 20, 30):
        e.feed(ev(t, "db"))
    (t,) = e.feed(ev(100, "db"))
    assert t.kind is Kind.REALERT and t.since_alert == 4
    (t,) = e.feed(ev(200, "db"))
    assert t.since_alert == 1


def test_notification_false_moves_last_alert_but_not_alerts_sent() -> None:
    e = make_engine(FakePolicy(default=100))
    e.feed(ev(0, "db", notify=False))
    inc = e.active()["db"]
    assert inc.alerts_sent == 0 and inc.last_alert_time == T0
    e.feed(ev(150, "db", notify=False))
    assert inc.alerts_sent == 0 and inc.last_alert_time == T0 + 150
    (t,) = e.feed(ev(200, "db", notify=False))
    assert t.kind is Kind.REPEAT  # 200 - 150 < 100: as if it had alerted at 150


def test_announce_counts_as_an_alert_and_moves_last_alert_time() -> None:
    e = make_engine(FakePolicy(default=100))
    e.feed(ev(0, "db", notify=False, message="first"))
    e.feed(ev(60, "db", notify=False))
    (t,) = e.feed(ev(70, "db", message="seventy"))
    inc = t.incident
    assert inc is not None and t.kind is Kind.ANNOUNCE and t.notify
    assert (inc.alerts_sent, inc.last_alert_time, inc.since_alert, t.since_alert) == (1, T0 + 70, 0, 2)
    (t,) = e.feed(ev(169, "db"))
    assert t.kind is Kind.REPEAT  # the interval counts from the announce
    (t,) = e.feed(ev(170, "db"))
    assert t.kind is Kind.REALERT and inc.alerts_sent == 2


def test_announce_of_an_older_line_does_not_pull_the_next_re_alert_forward() -> None:
    e = make_engine(FakePolicy(default=100))
    e.feed(ev(0, "db", notify=False))
    e.feed(ev(50, "db", notify=False))
    e.feed(ev(250, "db", notify=False))  # a silent re-alert at 250
    (t,) = e.feed(ev(200, "db"))  # older than the last (silent) alert
    assert t.kind is Kind.ANNOUNCE and t.incident is not None and t.incident.last_alert_time == T0 + 250


def test_switching_notify_on_announces_open_incidents_on_their_next_line() -> None:
    # The migration path: `notify = false`, lines, then `notify = true` (SIGHUP: the daemon
    # sets engine.policy), the next line of each open incident announces it.
    policy = FakePolicy(silent={"db", "api"})
    e = make_engine(policy)
    assert kinds(e, [ev(0, "db"), ev(1, "api"), ev(2, "db")]) == [[(NEW, False)], [(NEW, False)], [(REP, False)]]
    e.policy = FakePolicy()
    assert kinds(e, [ev(3, "db"), ev(4, "db"), ev(5, "api"), ev(6, clear="db")]) == [
        [(ANN, True)],
        [(REP, False)],
        [(ANN, True)],
        [(CLR, True)],
    ]


def test_feed_quiet_announces_too() -> None:
    e = make_engine()
    assert e.feed_quiet(ev(0, "db", notify=False)) is not None
    assert e.feed_quiet(ev(1, "db", notify=False)) is None  # a suppressed repeat
    got = e.feed_quiet(ev(2, "db"))
    assert got is not None and [(t.kind, t.notify) for t in got] == [(Kind.ANNOUNCE, True)]
    assert e.feed_quiet(ev(3, "db")) is None


def test_resolve_of_an_alerted_incident_survives_notify_turned_off() -> None:
    # Those alerted hear of the end even when `notify = false` was set since (CONTRACT §2:
    # "whatever ... config changes happened since").
    e = make_engine()
    e.feed(ev(0, "db"))
    e.policy = FakePolicy(silent={"db"})
    (t,) = e.feed(ev(5, clear="db"))
    assert t.kind is Kind.CLEAR and t.notify


def test_clear_closes_with_duration() -> None:
    e = make_engine()
    e.feed(ev(0, "db"))
    (t,) = e.feed(ev(125, clear="db", message="db back"))
    assert t.kind is Kind.CLEAR and t.duration == 125
    assert t.incident is not None and not t.incident.active and t.incident.cleared_at == T0 + 125
    assert e.active() == {}
    (t,) = e.feed(ev(130, "db"))
    assert t.kind is Kind.NEW and t.incident is not None and t.incident.incident_id == "id2"


def test_clear_older_than_start_closes_at_the_start() -> None:
    # CONTRACT §7: never a negative duration; cleared_at = start_time (not the clear's time).
    e = make_engine()
    e.feed(ev(100, "db"))
    e.feed(ev(150, "db"))
    (t,) = e.feed(ev(50, clear="db"))
    inc = t.incident
    assert inc is not None and t.kind is Kind.CLEAR and t.notify
    assert (t.duration, inc.cleared_at, inc.start_time, inc.active) == (0.0, T0 + 100, T0 + 100, False)
    assert inc.last_log_time == T0 + 150  # the record otherwise as it was


def test_scope_app_keeps_apps_apart() -> None:
    e = make_engine(scope="app")
    assert kinds(e, [ev(0, "db", app="a"), ev(1, "db", app="b"), ev(2, clear="db", app="a"), ev(3, "db", app="b")]) == [
        [(NEW, True)],
        [(NEW, True)],
        [(CLR, True)],
        [(REP, False)],
    ]
    assert set(e.active()) == {incident_key("app", "b", "db")}


def test_scope_code_shares_across_apps() -> None:
    e = make_engine(scope="code")
    assert kinds(e, [ev(0, "db", app="a"), ev(1, "db", app="b"), ev(2, clear="db", app="b")]) == [
        [(NEW, True)],
        [(REP, False)],
        [(CLR, True)],
    ]


def test_bad_scope_refused() -> None:
    with pytest.raises(ValueError):
        make_engine(scope="host")


def test_pending_lists_changed_incidents_once() -> None:
    e = make_engine()
    e.begin()
    e.feed(ev(0, "a"))
    e.feed(ev(1, "a"))
    e.feed(ev(2, "b"))
    e.feed(ev(3, clear="b"))
    e.feed(ev(4, clear="zzz"))
    pending = sorted((i.code, i.active, i.occurrences) for i in e.pending())
    assert pending == [("a", True, 2), ("b", False, 1)]
    e.commit()
    assert e.pending() == []
    e.begin()
    e.feed(ev(5, "a"))
    assert [i.code for i in e.pending()] == ["a"]


def test_rollback_restores_the_state_before_the_batch() -> None:
    e = make_engine(FakePolicy(default=10))
    e.begin()
    e.feed(ev(0, "a"))
    e.feed(ev(0, "b"))
    e.commit()
    before = {k: v.copy() for k, v in e.active().items()}

    e.begin()
    e.feed(ev(20, "a"))  # re-alert
    e.feed(ev(21, clear="b"))  # clear
    e.feed(ev(22, "b"))  # new incident with the same code
    e.feed(ev(23, "c"))  # new
    e.rollback()

    after = e.active()
    assert set(after) == {"a", "b"}
    for key in ("a", "b"):
        assert after[key] == before[key]
    # and the engine goes on from there as if the batch never happened
    (t,) = e.feed(ev(20, "a"))
    assert t.kind is Kind.REALERT and t.incident is not None and t.incident.occurrences == 2


def test_restore_keeps_only_active_and_continues() -> None:
    e = make_engine(FakePolicy(default=100))
    e.feed(ev(0, "a", app="x"))
    e.feed(ev(0, "b"))
    e.feed(ev(1, clear="b"))
    saved = [i.copy() for i in e.active().values()]
    closed = e.feed(ev(2, "c"))[0].incident
    assert closed is not None
    closed_copy = closed.copy()
    closed_copy.active = False

    e2 = make_engine(FakePolicy(default=100), scope="code")
    e2.restore([*saved, closed_copy])
    assert set(e2.active()) == {"a"}
    (t,) = e2.feed(ev(50, "a"))
    assert t.kind is Kind.REPEAT and t.incident is not None and t.incident.occurrences == 2
