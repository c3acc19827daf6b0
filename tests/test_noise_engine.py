"""The engine's noise rules (CONTRACT §9), rule by rule: growing re-alerts, auto-resolve
(by a line and by the quiet clock), reminders, the cardinality cap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.test_engine import T0, FakePolicy, ev, make_engine
from tests.test_limit import HEAD

from errord.engine import OVERFLOW_CODE, Engine
from errord.errors import ConfigError
from errord.model import Kind, LogEvent
from errord.noise import Noise
from errord.settings import Settings


def engine(noise: Noise, default: float = 10.0, **kw: Any) -> Engine:
    return make_engine(FakePolicy(default=default, noise=noise), **kw)


def realert_times(e: Engine, times: list[float], code: str = "db") -> list[float]:
    """Event times (from T0) of the lines that re-alerted."""
    out = []
    for t in times:
        for tr in e.feed(ev(t, code)):
            if tr.kind is Kind.REALERT:
                out.append(t)
    return out


# -- growing re-alerts ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("noise", "expected"),
    [
        (Noise(), [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]),  # backoff 1: the plain interval
        (Noise(re_alert_backoff=2.0), [10, 30, 70]),  # waits 10, 20, 40
        (Noise(re_alert_backoff=2.0, re_alert_max=25.0), [10, 30, 55, 80]),  # 10, 20, then capped at 25
        (
            Noise(re_alert_backoff=1.5, re_alert_max=3600.0),
            [10, 25, 48, 82],
        ),  # waits 10, 15, 22.5, 33.75 (the next whole second)
    ],
)
def test_the_nth_re_alert_waits_interval_times_backoff_to_the_n_minus_1_capped(
    noise: Noise, expected: list[float]
) -> None:
    e = engine(noise)
    e.feed(ev(0, "db"))
    assert realert_times(e, [float(t) for t in range(1, 101)]) == expected


def test_backoff_counts_this_incidents_re_alerts_only() -> None:
    e = engine(Noise(re_alert_backoff=2.0))
    e.feed(ev(0, "db"))
    assert realert_times(e, [10.0, 30.0]) == [10.0, 30.0]
    assert e.active()["db"].re_alerts == 2
    e.feed(ev(31, clear="db"))
    e.feed(ev(40, "db"))  # a new incident: its first re-alert waits the plain interval again
    assert realert_times(e, [45.0, 50.0]) == [50.0]


def test_a_muted_re_alert_still_moves_the_backoff_on() -> None:
    class Mutes:
        now = 0.0

        def check(self, inc: Any, when: float, active: Any, opened: int) -> Any:
            return ("silence", "s1") if when >= T0 + 5 else None

    e = engine(Noise(re_alert_backoff=2.0))
    e.mutes = Mutes()  # type: ignore[assignment]
    e.feed(ev(0, "db"))
    trs = [t for x in (10.0, 30.0) for t in e.feed(ev(x, "db"))]
    assert [(t.kind, t.muted) for t in trs] == [(Kind.REALERT, "silence"), (Kind.REALERT, "silence")]
    assert e.active()["db"].re_alerts == 2


# -- auto-resolve ---------------------------------------------------------------------


def test_a_line_after_the_quiet_period_first_auto_resolves_then_opens_a_new_incident() -> None:
    e = engine(Noise(auto_resolve_after=60.0))
    e.feed(ev(0, "db"))
    e.feed(ev(30, "db"))
    old = e.active()["db"]
    trs = e.feed(ev(90, "db"))  # 60 s after the latest line (30)
    assert [t.kind for t in trs] == [Kind.CLEAR, Kind.NEW]
    closed = trs[0].incident
    assert closed is old and closed.resolved_by == "auto" and closed.cleared_at == T0 + 90
    assert trs[0].notify and trs[0].duration == 90.0
    assert e.active()["db"].incident_id != old.incident_id and e.active()["db"].start_time == T0 + 90
    assert [t.kind for t in e.feed(ev(149, "db"))] == [Kind.REALERT]  # 59 s: no auto-resolve


def test_the_clock_auto_resolves_by_the_quiet_clock_of_the_source_that_fed_it() -> None:
    e = engine(Noise(auto_resolve_after=60.0))
    e.src = 0
    e.feed(ev(0, "a"))
    e.src = 1
    e.feed(ev(0, "b"))
    clocks = {0: T0 + 59.0, 1: T0 + 61.0}  # source 0 is a backlog read moments ago; 1 is live
    e.begin()
    trs = e.tick(lambda src: clocks[src])
    assert [(t.kind, t.incident.code if t.incident else None) for t in trs] == [(Kind.CLEAR, "b")]
    assert trs[0].incident is not None and trs[0].incident.cleared_at == T0 + 60.0
    assert trs[0].incident.resolved_by == "auto"
    assert set(e.active()) == {"a"}
    assert [i.code for i in e.pending()] == ["b"]


def test_an_incident_nobody_was_told_of_is_auto_resolved_without_a_notice() -> None:
    e = engine(Noise(auto_resolve_after=60.0))
    e.feed(ev(0, "db", notify=False))
    (t,) = e.tick(lambda src: T0 + 60.0)
    assert t.kind is Kind.CLEAR and not t.notify


# -- reminders ------------------------------------------------------------------------


def test_a_reminder_every_remind_every_of_quiet_not_moving_last_alert_or_backoff() -> None:
    e = engine(Noise(remind_every=100.0, re_alert_backoff=2.0), default=1000.0)
    e.feed(ev(0, "db"))
    inc = e.active()["db"]
    at = lambda q: [t.kind for t in e.tick(lambda src: T0 + q)]  # noqa: E731
    assert at(99.0) == []
    assert at(100.0) == [Kind.REMIND]
    assert inc.alerts_sent == 2 and inc.last_alert_time == T0 and inc.re_alerts == 0
    assert at(150.0) == [] and at(199.0) == []
    assert at(200.0) == [Kind.REMIND]  # remind_every after the previous reminder
    e.feed(ev(250, "db"))  # a line: quiet again from 250
    assert at(300.0) == [] and at(350.0) == [Kind.REMIND]


def test_a_reminder_is_a_notice_like_the_others_muted_by_notify_false_and_silences() -> None:
    e = make_engine(FakePolicy(noise=Noise(remind_every=10.0), silent={"quiet"}))
    e.feed(ev(0, "quiet"))  # notify = false: nobody heard of it, no reminder either
    e.feed(ev(0, "db"))
    (t,) = e.tick(lambda src: T0 + 10.0)
    assert t.kind is Kind.REMIND and t.notify and t.incident is not None and t.incident.code == "db"

    class Mutes:
        now = 0.0

        def check(self, inc: Any, when: float, active: Any, opened: int) -> Any:
            return ("silence", "s1")

    e.mutes = Mutes()  # type: ignore[assignment]
    (t,) = e.tick(lambda src: T0 + 20.0)
    assert t.kind is Kind.REMIND and not t.notify and t.muted == "silence"
    assert e.active()["db"].notices_muted == 1


def test_a_tick_is_undone_with_its_batch() -> None:
    e = engine(Noise(remind_every=10.0, auto_resolve_after=30.0))
    e.feed(ev(0, "db"))
    e.commit()
    e.begin()
    assert [t.kind for t in e.tick(lambda src: T0 + 30.0)] == [Kind.CLEAR]
    e.rollback()  # the journal refused the batch
    assert e.active()["db"].active and e.active()["db"].resolved_by is None


# -- the cardinality cap --------------------------------------------------------------


def test_beyond_max_open_incidents_new_codes_count_in_one_overflow_incident() -> None:
    e = engine(Noise(), max_open_incidents=3)
    for code in ("a", "b", "c"):
        e.feed(ev(0, code))
    (t,) = e.feed(ev(1, "timeout_1"))
    assert t.kind is Kind.NEW and t.notify and t.incident is not None and t.incident.code == OVERFLOW_CODE
    assert "'timeout_1'" in t.incident.message and "max_open_incidents (3)" in t.incident.message
    for i in range(2, 50):  # counted per line, otherwise ignored; suppressed like any repeat
        assert [x.kind for x in e.feed(ev(2, f"timeout_{i}"))] == [Kind.REPEAT]
    assert set(e.active()) == {"a", "b", "c", OVERFLOW_CODE}
    assert e.active()[OVERFLOW_CODE].occurrences == 49
    assert [x.kind for x in e.feed(ev(3, "a"))] == [Kind.REPEAT]  # open codes go on as usual
    e.feed(ev(4, clear="a"))
    (t,) = e.feed(ev(5, "d"))  # room again: opens normally (the overflow does not count)
    assert t.kind is Kind.NEW and t.incident is not None and t.incident.code == "d"


def test_the_overflow_incident_re_alerts_like_any_other() -> None:
    e = engine(Noise(), default=10.0, max_open_incidents=1)
    e.feed(ev(0, "a"))
    e.feed(ev(0, "x1"))
    assert [t.kind for t in e.feed(ev(10, "x2"))] == [Kind.REALERT]


def line_events(e: Engine, n: int) -> list[LogEvent]:
    return [ev(i, f"c{i}") for i in range(n)]


def test_memory_stays_bounded_by_the_cap() -> None:
    e = engine(Noise(), max_open_incidents=100)
    for x in line_events(e, 10_000):
        e.feed(x)
    assert len(e.active()) == 101


# -- settings (CONTRACT §9 "Valid values") --------------------------------------------


def load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "errord.toml"
    path.write_text(HEAD + text)
    return Settings.load(path, environ={})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[defaults]\nre_alert_backoff = 0.5", "defaults.re_alert_backoff: "),
        ('[defaults]\nre_alert_backoff = "x"', "defaults.re_alert_backoff: "),
        ('[defaults]\nre_alert_max = "0s"', "defaults.re_alert_max: "),
        ('[defaults]\nremind_every = "0s"', "defaults.remind_every: "),
        ('[defaults]\nauto_resolve_after = "soon"', "defaults.auto_resolve_after: "),
        ("[defaults]\nflap_threshold = 1", "defaults.flap_threshold: "),
        ("[defaults]\nflap_threshold = 2.5", "defaults.flap_threshold: "),
        ('[defaults]\nflap_window = "0"', "defaults.flap_window: "),
        ("[codes.db]\nre_alert_backoff = 0", "codes.db.re_alert_backoff: "),
        ('[codes.db]\nremind_every = "-1m"', "codes.db.remind_every: "),
        ("[limits]\nmax_open_incidents = 0", "limits.max_open_incidents: "),
        ('[limits]\nmax_open_incidents = "10"', "limits.max_open_incidents: "),
    ],
)
def test_bad_noise_settings_name_their_key(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems


def test_noise_settings_per_code_over_defaults_and_off(tmp_path: Path) -> None:
    r = load(
        tmp_path,
        '[defaults]\nre_alert_backoff = 2\nremind_every = "4h"\nauto_resolve_after = "30m"\n'
        '[codes.db]\nremind_every = "off"\nre_alert_max = "2h"\n[limits]\nmax_open_incidents = 50\n',
    ).to_run()
    assert r.noise_for("other") == Noise(re_alert_backoff=2.0, remind_every=14400.0, auto_resolve_after=1800.0)
    assert r.noise_for("db") == Noise(re_alert_backoff=2.0, re_alert_max=7200.0, auto_resolve_after=1800.0)
    assert r.noise_timed and r.limits.max_open_incidents == 50
    back = type(r).from_dump(r.dump())
    assert back.noise_for("db") == r.noise_for("db") and back.limits == r.limits
    assert not load(tmp_path, "").to_run().noise_timed


# -- flapping -------------------------------------------------------------------------


def cycle(e: Engine, times: list[tuple[float, str]]) -> list[tuple[str, bool, str | None]]:
    """Feed ``(time, "open"|"clear")`` lines of code db; (kind, notify, muted) per line."""
    out = []
    for t, what in times:
        (tr,) = e.feed(ev(t, "db") if what == "open" else ev(t, clear="db"))
        out.append((tr.kind.value, tr.notify, tr.muted))
    return out


def test_the_threshold_th_open_in_the_window_warns_once_then_mutes_the_key() -> None:
    e = engine(Noise(flap_threshold=3, flap_window=100.0), default=10.0)
    got = cycle(e, [(0, "open"), (5, "clear"), (10, "open"), (15, "clear"), (20, "open")])
    assert got == [
        ("new", True, None),
        ("clear", True, None),
        ("new", True, None),
        ("clear", True, None),
        ("flapping", True, None),  # instead of its failure
    ]
    inc = e.active()["db"]
    assert inc.flapping and inc.alerts_sent == 1
    (tr,) = e.feed(ev(31, "db"))  # its re-alert: muted
    assert (tr.kind, tr.notify, tr.muted) == (Kind.REALERT, False, "flapping")
    assert cycle(e, [(40, "clear"), (50, "open")]) == [("clear", False, "flapping"), ("new", False, "flapping")]
    assert e.active()["db"].flapping and e.muted() == {("flapping", None): 3}


def test_the_flapping_notice_states_its_counts_and_renders_as_a_warning() -> None:
    from errord.notices import render

    e = engine(Noise(flap_threshold=2, flap_window=600.0))
    e.feed(ev(0, "db"))
    e.feed(ev(5, clear="db"))
    n = render(e.feed(ev(10, "db")), server_id="h", node_name="n")
    assert n is not None and n.type.value == "warning"
    assert n.title == "🔁 db flapping on h/n"
    assert n.body.startswith("2 opens and 1 resolve within 10m: its notices are muted")


def test_it_stops_flapping_after_a_quiet_window_failing_or_resolved() -> None:
    from errord.notices import render

    e = engine(Noise(flap_threshold=2, flap_window=100.0))
    cycle(e, [(0, "open"), (5, "clear"), (10, "open")])
    assert e.tick(lambda src: T0 + 109.0) == []
    (tr,) = e.tick(lambda src: T0 + 110.0)
    assert tr.kind is Kind.FLAP_END and tr.notify
    n = render([tr], server_id="h", node_name="n")
    assert n is not None and n.type.value == "failure" and n.title == "🔴 db stopped flapping on h/n: still failing"
    inc = e.active()["db"]
    assert inc.alerts_sent == 2 and inc.flapping  # heard of now (its record stays flapping=true)
    assert cycle(e, [(200, "clear")]) == [("clear", True, None)]
    assert e.tick(lambda src: T0 + 400.0) == []  # not flapping any more: nothing more to say

    e = engine(Noise(flap_threshold=2, flap_window=100.0))
    cycle(e, [(0, "open"), (5, "clear"), (10, "open"), (20, "clear")])
    assert e.tick(lambda src: T0 + 119.0) == []
    (tr,) = e.tick(lambda src: T0 + 120.0)
    n = render([tr], server_id="h", node_name="n")
    assert n is not None and n.type.value == "success" and n.title == "✅ db stopped flapping on h/n: resolved"
    assert tr.incident is not None and tr.incident.code == "db"


def test_flap_state_rolls_back_with_its_batch_and_survives_a_dump() -> None:
    e = engine(Noise(flap_threshold=2, flap_window=100.0))
    cycle(e, [(0, "open"), (5, "clear")])
    e.commit()
    saved = e.flaps.dump()
    e.begin()
    assert cycle(e, [(10, "open")]) == [("flapping", True, None)]
    e.rollback()
    assert not e.flaps.is_flapping("db") and e.flaps.dump() == saved
    again = engine(Noise(flap_threshold=2, flap_window=100.0))
    again.flaps.load(saved)
    assert cycle(again, [(10, "open")]) == [("flapping", True, None)]
