"""policy.mute, policy.silence, policy.mutetime and the engine's "may notify" (CONTRACT §8).

Tables of lines -> what each line sends to whom, with silences / acks / inhibition / mute
times over new incidents, re-alerts and resolves, and the "who gets the resolve" rule:
the targets that got a failure or warning, whatever mutes say.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from errord.engine import Engine
from errord.model import LogEvent
from errord.policy.base import Context
from errord.policy.mute import INHIBITED, MUTE_TIMES, SILENCE, MuteOracle
from errord.policy.mutetime import MuteWindow, parse_times, parse_weekdays
from errord.policy.pipeline import standard_policy
from errord.policy.route import Router
from errord.policy.silence import Silence, check_pattern
from test_engine import T0, FakePolicy, ev, make_engine

CTX = Context(now=T0, server_id="srv", node_name="n", tags_for=lambda code: ())
ROUTES = [("a", ()), ("b", ())]
BERLIN = ZoneInfo("Europe/Berlin")

Step = Callable[[MuteOracle, Engine], None]


def silence(
    pattern: str = "E*", *, start: float = -10, end: float | None = 1000, sid: str = "s1", **kw: Any
) -> Silence:
    return Silence(
        id=sid, pattern=pattern, app=kw.pop("app", "*"), starts_at=T0 + start,
        ends_at=None if end is None else T0 + end, until_resolved=kw.pop("until_resolved", False), **kw,
    )  # fmt: skip


def run(
    events: Sequence[LogEvent],
    mutes: MuteOracle,
    *,
    steps: dict[int, Step] | None = None,
    scope: str = "code",
    routes: Sequence[tuple[str, Sequence[str]]] = ROUTES,
) -> tuple[list[list[tuple[str, tuple[str, ...]]]], Engine]:
    """Feed ``events`` one per batch (the daemon's clock = the event time, as live reading),
    running ``steps[i]`` before line i; per line the (type, targets) of the notices made."""
    engine = make_engine(FakePolicy(default=100), scope=scope)
    engine.mutes = mutes
    policy = standard_policy(Router(routes))
    out = []
    for i, e in enumerate(events):
        if steps and i in steps:
            steps[i](mutes, engine)
        engine.begin(e.time)
        out.append([(n.type.value, n.targets) for n in policy.apply(engine.feed(e), CTX)])
        engine.commit()
    return out, engine


def set_silences(*silences: Silence) -> Step:
    return lambda mutes, engine: mutes.set_silences(silences)


def ack(code: str, sid: str = "ack1") -> Step:
    """An ``errord ack CODE``: a silence for the open incident(s) of CODE, until resolved."""

    def step(mutes: MuteOracle, engine: Engine) -> None:
        ids = frozenset(i.incident_id for i in engine.active().values() if i.code == code)
        mutes.set_silences([*mutes.silences, silence(code, end=None, sid=sid, until_resolved=True, incident_ids=ids)])

    return step


F, W, S = "failure", "warning", "success"
AB = ("a", "b")

CASES: list[tuple[str, list[LogEvent], Callable[[], MuteOracle], dict[int, Step], list[Any]]] = [
    (
        "silence x new: recorded, not sent; its clear resolves silently (nobody heard of it)",
        [ev(0, "E1"), ev(1, "E1"), ev(2, clear="E1")],
        lambda: MuteOracle(silences=[silence()]),
        {},
        [[], [], []],
    ),
    (
        "silence x re-alert: the re-alert is muted, the resolve reaches the targets of the failure",
        [ev(0, "E1"), ev(150, "E1"), ev(300, "E1"), ev(310, clear="E1")],
        lambda: MuteOracle(),
        {1: set_silences(silence())},
        [[(F, AB)], [], [], [(S, AB)]],
    ),
    (
        "a silence of another code or app mutes nothing",
        [ev(0, "X1", app="web"), ev(1, "E1", app="web")],
        lambda: MuteOracle(silences=[silence("E*", app="db")]),
        {},
        [[(F, AB)], [(F, AB)]],
    ),
    (
        "an expired silence (--for) stops muting by itself: the next line announces",
        [ev(0, "E1"), ev(5, "E1"), ev(20, "E1")],
        lambda: MuteOracle(silences=[silence(end=10)]),
        {},
        [[], [], [(F, AB)]],
    ),
    (
        "unsilence: the next re-alert is delivered",
        [ev(0, "E1"), ev(150, "E1"), ev(200, "E1"), ev(260, "E1")],
        lambda: MuteOracle(),
        {1: set_silences(silence()), 2: set_silences(replace(silence(), ended_at=T0 + 199))},
        [[(F, AB)], [], [], [(W, AB)]],
    ),
    (
        "ack x re-alert: no re-alert; the resolve to the targets alerted; the next incident alerts",
        [ev(0, "E1"), ev(150, "E1"), ev(160, clear="E1"), ev(170, "E1")],
        lambda: MuteOracle(),
        {1: ack("E1")},
        [[(F, AB)], [], [(S, AB)], [(F, AB)]],
    ),
    (
        "inhibit x new: quiet while the inhibitor is open, announces itself on its next line after",
        [ev(0, "db_down"), ev(1, "app_err"), ev(2, "app_err"), ev(3, clear="db_down"), ev(4, "app_err")],
        lambda: MuteOracle(inhibited_by=lambda c: ("db_*",) if c == "app_err" else ()),
        {},
        [[(F, AB)], [], [], [(S, AB)], [(F, AB)]],
    ),
    (
        "inhibit x re-alert: muted while the inhibitor is open (one that never notified too)",
        [ev(0, "app_err"), ev(1, "db_down", notify=False), ev(150, "app_err"), ev(151, clear="app_err")],
        lambda: MuteOracle(inhibited_by=lambda c: ("db_*",) if c == "app_err" else ()),
        {},
        [[(F, AB)], [], [], [(S, AB)]],
    ),
    (
        "an incident never inhibits itself",
        [ev(0, "db_a"), ev(150, "db_a")],
        lambda: MuteOracle(inhibited_by=lambda c: ("db_*",)),
        {},
        [[(F, AB)], [(W, AB)]],
    ),
    (
        "mute time x new: by the line's event time; after the window the next line announces",
        [ev(0, "E1"), ev(10, "E1"), ev(4000, "E1")],
        # T0 is Wednesday 2026-01-14 14:13:20 UTC (15:13 in Berlin)
        lambda: MuteOracle(mute_times=[MuteWindow.parse("m", [], [], ["wed"], ["15:00-16:00"], "Europe/Berlin")]),
        {},
        [[], [], [(F, AB)]],
    ),
    (
        "mute time x re-alert; the resolve still goes to the alerted targets",
        [ev(-3000, "E1"), ev(150, "E1"), ev(151, clear="E1")],
        lambda: MuteOracle(mute_times=[MuteWindow.parse("m", ["E*"], [], [], ["15:00-16:00"], "Europe/Berlin")]),
        {},
        [[(F, AB)], [], [(S, AB)]],
    ),
    (
        "a mute time that does not cover the line mutes nothing",
        [ev(0, "E1")],
        lambda: MuteOracle(mute_times=[MuteWindow.parse("m", [], [], ["thu"], [], "UTC")]),
        {},
        [[(F, AB)]],
    ),
    (
        "notification: false under a silence: silent as always, not counted as muted",
        [ev(0, "E1", notify=False), ev(1, "E1", notify=False)],
        lambda: MuteOracle(silences=[silence()]),
        {},
        [[], []],
    ),
]


@pytest.mark.parametrize(("name", "events", "mutes", "steps", "expected"), CASES, ids=[c[0] for c in CASES])
def test_mute_table(
    name: str, events: list[LogEvent], mutes: Callable[[], MuteOracle], steps: dict[int, Step], expected: list[Any]
) -> None:
    got, _ = run(events, mutes(), steps=steps)
    assert got == expected


def test_muted_notices_are_counted_on_the_record_and_by_reason() -> None:
    mutes = MuteOracle(silences=[silence()])
    engine = make_engine(FakePolicy(default=100))
    engine.mutes = mutes
    engine.begin(T0)
    engine.feed(ev(0, "E1"))  # muted failure
    engine.feed(ev(50, "E1"))  # within the interval: no notice made, nothing muted
    engine.feed(ev(150, "E1"))  # muted re-alert
    assert engine.muted() == {(SILENCE, "s1"): 2}
    (inc,) = engine.pending()
    assert (inc.notices_muted, inc.alerts_sent, inc.occurrences) == (2, 0, 3)
    assert inc.last_alert_time == T0 + 150  # moved as if it had been sent
    engine.rollback()  # the batch could not be written: the counts go with it
    assert engine.muted() == {} and engine.active() == {}


def test_first_cover_wins_in_order_silence_inhibition_mute_time() -> None:
    window = MuteWindow.parse("all", [], [], [], [], "UTC")
    mutes = MuteOracle(
        inhibited_by=lambda c: ("db_*",), mute_times=[window], silences=[silence("X", sid="new", created_at=2)]
    )
    engine = make_engine()
    engine.mutes = mutes
    engine.begin(T0)
    db = engine.feed(ev(0, "db_x"))[0]
    assert db.muted == MUTE_TIMES  # nothing open inhibits it
    t = engine.feed(ev(1, "E1"))[0]
    assert t.muted == INHIBITED  # the open db_x inhibits E1 before the window does
    mutes.set_silences([silence("X", sid="new", created_at=2), silence("X*", sid="old", created_at=1)])
    t = engine.feed(ev(2, "X"))[0]
    assert t.muted == SILENCE
    assert engine.muted()[(SILENCE, "old")] == 1  # the oldest silence that matches counts it


def test_inhibition_with_scope_app_is_per_app() -> None:
    mutes = MuteOracle(scope="app", inhibited_by=lambda c: ("db_down",) if c == "E" else ())
    got, _ = run(
        [ev(0, "db_down", app="a"), ev(1, "E", app="b"), ev(2, "E", app="a")],
        mutes,
        scope="app",
    )
    assert got == [[(F, AB)], [(F, AB)], []]


def test_manual_resolve_sends_one_success_to_the_alerted_and_says_so() -> None:
    engine = make_engine()
    router = Router([("a", ())])
    policy = standard_policy(router)
    engine.begin(T0)
    policy.apply(engine.feed(ev(0, "E1")), CTX)  # to a only
    engine.commit()
    router.set_routes([("a", ()), ("b", ())])  # b added since: it never heard of E1
    engine.begin(T0 + 60)
    assert engine.resolve("nope", T0 + 60, "x") is None
    t = engine.resolve("E1", T0 + 60, "resolved by hand (errord resolve)")
    assert t is not None and t.notify
    (notice,) = policy.apply([t], CTX)
    assert (notice.type.value, notice.targets) == (S, ("a",))
    assert "resolved by hand" in notice.body
    (inc,) = engine.pending()
    assert (inc.active, inc.cleared_at, inc.resolved_by) == (False, T0 + 60, "manual")
    assert engine.active() == {}


def test_a_clear_line_says_resolved_by_clear() -> None:
    engine = make_engine()
    engine.begin()
    engine.feed(ev(0, "E1"))
    (t,) = engine.feed(ev(1, clear="E1"))
    assert t.incident is not None and t.incident.resolved_by == "clear"


# -- mute times: the window maths ------------------------------------------------------


def at(text: str, tz: ZoneInfo = BERLIN) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


@pytest.mark.parametrize(
    ("weekdays", "times", "when", "covered"),
    [
        (["fri"], ["22:00-06:00"], "2026-01-16 22:00", True),  # Friday 22:00: the start is inclusive
        (["fri"], ["22:00-06:00"], "2026-01-17 05:59", True),  # Saturday morning belongs to Friday
        (["fri"], ["22:00-06:00"], "2026-01-17 06:00", False),  # the end is exclusive
        (["fri"], ["22:00-06:00"], "2026-01-16 05:00", False),  # Friday morning belongs to Thursday
        (["fri"], ["22:00-06:00"], "2026-01-17 22:30", False),  # Saturday evening: not Friday
        (["fri-mon"], [], "2026-01-19 12:00", True),  # weekday ranges wrap the week (Monday)
        (["fri-mon"], [], "2026-01-20 12:00", False),  # Tuesday
        (["mon-fri"], ["02:00-03:30"], "2026-01-14 03:29", True),
        (["mon-fri"], ["02:00-03:30"], "2026-01-14 03:30", False),
        ([], ["18:00-24:00"], "2026-01-18 23:59", True),  # 24:00 as an end: until midnight
        ([], ["18:00-24:00"], "2026-01-19 00:00", False),
        (["Sunday"], [], "2026-01-18 00:00", True),  # full names too; no times: all day
    ],
)
def test_mute_window_covers(weekdays: list[str], times: list[str], when: str, covered: bool) -> None:
    window = MuteWindow.parse("w", [], [], weekdays, times, "Europe/Berlin")
    assert window.at(at(when)) is covered


def test_mute_window_is_in_its_own_timezone_and_matches_code_and_app_globs() -> None:
    window = MuteWindow.parse("w", ["backup_*"], ["batch*"], [], ["02:00-03:00"], "Europe/Berlin")
    t = at("2026-01-14 02:30")  # 01:30 UTC
    assert window.covers("backup_failed", "batch-1", t)
    assert not window.covers("backup_failed", "web", t)
    assert not window.covers("db_down", "batch-1", t)
    assert not MuteWindow.parse("w", [], [], [], ["02:00-03:00"], "UTC").at(t)
    assert MuteWindow.parse("w", [], [], [], ["01:00-02:00"], "UTC").at(t)


@pytest.mark.parametrize(
    ("weekdays", "times", "problem"),
    [
        (["mon-fry"], [], "unknown weekday 'fry'"),
        (["someday"], [], "unknown weekday"),
        ([], ["25:00-26:00"], "bad time '25:00'"),
        ([], ["02:00"], "bad time range '02:00'"),
        ([], ["2:00-03:00"], "bad time '2:00'"),
        ([], ["03:00-03:00"], "empty time range"),
        ([], ["24:00-02:00"], "24:00 only as an end"),
        ([], ["02:60-03:00"], "bad time '02:60'"),
    ],
)
def test_bad_weekdays_and_times_say_what_is_wrong(weekdays: list[str], times: list[str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_weekdays(weekdays)
        parse_times(times)


def test_silence_patterns() -> None:
    assert check_pattern("db_*") == "db_*"
    for bad, why in (("", "empty"), ("a b", "whitespace"), ("a\x01", "control"), ("x" * 201, "201 characters")):
        with pytest.raises(ValueError, match=why):
            check_pattern(bad)
    s = silence("db_*", app="web*")
    assert s.covers("db_down", "web-1", "i") and not s.covers("db_down", None, "i")
    assert silence("db_*").covers("db_down", None, "i")  # "*": any app, none too
    acked = silence("E", end=None, until_resolved=True, incident_ids=frozenset({"i1"}))
    assert acked.covers("E", None, "i1") and not acked.covers("E", None, "i2")
    assert acked.active(T0, {"i1"}) and not acked.active(T0, {"i2"})
    assert not silence(end=5).in_force(T0 + 5) and silence(end=5).in_force(T0 + 4.9)
