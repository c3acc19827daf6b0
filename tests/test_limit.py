"""policy.limit, policy.limitsim, policy.digest and limitsettings: the storm limit and
group_wait of CONTRACT §9 as tables (pure, no daemon), a property (a digest's counts are
the notices held), the digest text, and the `[limits]` settings' exit-2 messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from errord.errors import ConfigError
from errord.model import HeldEntry, Notice, NoticeType
from errord.policy.digest import digest, group, held_entries
from errord.policy.limit import LimitRule, LimitState, Send, decide, parse_budget
from errord.policy.limitsim import TargetSim
from errord.settings import Settings

HEAD = '[[sources]]\npath = "/tmp/errord-test-nothing/*.jsonl"\n'


def note(code: str, typ: NoticeType = NoticeType.FAILURE, msg: str = "m", at: float = 0.0) -> Notice:
    title = {NoticeType.FAILURE: "🔴 {} failing", NoticeType.WARNING: "🟠 {} still failing"}.get(typ, "✅ {} resolved")
    body = f"Still failing since x\nLatest: {msg}\nFirst: y" if typ is NoticeType.WARNING else f"{msg}\nsince x"
    return Notice(typ, code, title.format(code) + " on h/n", body, f"id-{code}", at)


# -- decide: budgets and windows -------------------------------------------------------------

R5 = LimitRule(budget=5, window=10.0)


@pytest.mark.parametrize(
    ("rule", "sends", "held_since", "made", "now", "expected"),
    [
        # budget free: the head, as it is
        (R5, [], None, [0.0, 0.0], 0.0, (1, Send.SINGLE, False, None)),
        (R5, [1, 2, 3, 4], None, [5.0], 5.0, (1, Send.SINGLE, False, None)),
        # spent (5 sends in the last 10 s): start holding, look again when the oldest leaves
        (R5, [1, 2, 3, 4, 5], None, [6.0], 6.0, (0, None, True, 11.0)),
        # holding, not free yet: wait
        (R5, [1, 2, 3, 4, 5], 6.0, [6.0, 7.0], 8.0, (0, None, False, 11.0)),
        # holding, free again: everything queued as ONE digest
        (R5, [1, 2, 3, 4, 5], 6.0, [6.0, 7.0, 9.0], 11.0, (3, Send.DIGEST, False, None)),
        # sliding: the window is any 10 s, not a fixed minute
        (R5, [1, 2, 3, 4, 12], None, [12.5], 12.5, (1, Send.SINGLE, False, None)),
        # group_wait: wait for the head to be group_wait old, then it and those made within
        (LimitRule(group_wait=2.0), [], None, [10.0, 11.0, 12.0, 12.5], 11.0, (0, None, False, 12.0)),
        (LimitRule(group_wait=2.0), [], None, [10.0, 11.0, 12.0, 12.5], 12.0, (3, Send.GROUP, False, None)),
        (LimitRule(group_wait=2.0), [], None, [10.0, 12.5], 12.0, (1, Send.SINGLE, False, None)),
        # both: a spent budget holds whatever grouping would have done
        (LimitRule(1, 60.0, 2.0), [0.0], None, [1.0, 1.5], 3.0, (0, None, True, 60.0)),
    ],
)
def test_decide(
    rule: LimitRule, sends: list[float], held_since: float | None, made: list[float], now: float, expected: tuple
) -> None:
    assert tuple(decide(rule, LimitState([float(s) for s in sends], held_since), made, now)) == expected


def test_state_keeps_only_the_sends_that_can_fill_the_window() -> None:
    s = LimitState()
    for t in range(10):
        s.sent(R5, float(t))
    assert s.sends == [5.0, 6.0, 7.0, 8.0, 9.0]
    s.held_since = 9.5
    s.sent(R5, 15.0, digest=7)
    assert (s.held_since, s.digests, s.digested) == (None, 1, 7)


# -- the simulation replay runs (the worker's loop in event time) ----------------------------


def test_a_burst_of_100_against_5_per_10s_is_5_singles_then_one_digest_a_window_later() -> None:
    sim = TargetSim(R5, "web-1/voltage")
    out = [s for i in range(100) for s in sim.offer(note(f"c{i:03d}", at=100.0), 100.0)]
    assert [s.how for s in out] == [Send.SINGLE] * 5
    out += list(sim.flush())
    assert [s.how for s in out] == [Send.SINGLE] * 5 + [Send.DIGEST]
    d = out[-1].notice
    assert d.title == "📦 95 notices held on web-1/voltage"
    assert d.event_time == 110.0  # the first moment a send was free again
    assert sum(e.count for e in d.held) == 95


def test_a_line_after_the_window_releases_the_digest_at_its_time_before_itself() -> None:
    sim = TargetSim(LimitRule(1, 60.0), "h")
    assert [s.how for s in sim.offer(note("a"), 0.0)] == [Send.SINGLE]
    assert list(sim.offer(note("b"), 10.0)) == []  # held
    got = list(sim.offer(note("c"), 500.0))  # the digest went at 60; c finds the budget free
    assert [(s.how, s.notice.event_time) for s in got] == [(Send.DIGEST, 60.0), (Send.SINGLE, 0.0)]
    assert got[0].notice.title == "📦 1 notice held on h"


_events = st.lists(
    st.tuples(
        st.floats(0, 50, allow_nan=False),
        st.sampled_from(["a", "b", "c", "d"]),
        st.sampled_from([NoticeType.FAILURE, NoticeType.WARNING, NoticeType.SUCCESS]),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(
    _events,
    st.integers(1, 5),
    st.sampled_from([1.0, 5.0, 30.0]),
    st.sampled_from([0.0, 0.0, 2.0]),
)
def test_every_notice_goes_out_exactly_once_and_a_digests_counts_are_its_held_notices(
    events: list[tuple[float, str, NoticeType]], n: int, window: float, gw: float
) -> None:
    rule = LimitRule(n, window, gw)
    sim = TargetSim(rule, "h")
    made = [
        note(code, typ, msg=f"{code}{i}", at=t) for i, (t, code, typ) in enumerate(sorted(events, key=lambda e: e[0]))
    ]
    out = [s for m in made for s in sim.offer(m, m.event_time)] + list(sim.flush())
    members = [m for s in out for m in s.members]
    assert members == made  # never lost, never doubled, in order
    sends = sorted(s.notice.event_time for s in out)
    for i in range(len(sends) - n):  # never more than n sends in any window
        assert sends[i + n] - sends[i] >= window - 1e-9
    for s in out:
        if s.how is Send.DIGEST:
            assert sum(e.count for e in s.notice.held) == len(s.members)
            for e in s.notice.held:
                assert e.count == sum(1 for m in s.members if m.code == e.code and held_entries([m])[0].type == e.type)


# -- the digest's text and data --------------------------------------------------------------


def test_digest_text_type_and_held_entries() -> None:
    notes = [
        note("db_down", msg="db gone"),
        note("api", NoticeType.WARNING, msg="slow"),
        note("db_down", NoticeType.SUCCESS, msg="Resolved after 1m"),
        note("api", NoticeType.WARNING, msg="slower"),
    ]
    d = digest(notes, "web-1/voltage")
    assert d.title == "📦 4 notices held on web-1/voltage"
    assert d.type is NoticeType.FAILURE
    assert d.held == (
        HeldEntry("api", "re-alert", 2, "slower"),
        HeldEntry("db_down", "new", 1, "db gone"),
        HeldEntry("db_down", "resolved", 1, "Resolved after 1m"),
    )
    assert d.body.splitlines() == [
        "api: 2 re-alert — slower",
        "db_down: 1 new, 1 resolved — Resolved after 1m",
        "server: web-1/voltage",
    ]
    assert digest([note("x", NoticeType.WARNING)], "h").type is NoticeType.WARNING
    one = digest([note("x", NoticeType.SUCCESS)], "h")
    assert (one.title, one.type) == ("📦 1 notice held on h", NoticeType.SUCCESS)


def test_digest_lists_30_codes_most_recent_first_then_names_the_rest() -> None:
    d = digest([note(f"c{i:02d}") for i in range(40)], "h")
    lines = d.body.splitlines()
    assert [ln.split(":")[0] for ln in lines[:30]] == [f"c{i:02d}" for i in range(39, 9, -1)]
    assert lines[30] == "… and 10 more: " + ", ".join(f"c{i:02d}" for i in range(9, -1, -1))
    assert len(d.held) == 40


def test_group_lists_its_notices() -> None:
    g = group([note("a", msg="one"), note("b", NoticeType.SUCCESS, msg="two")], "h/n")
    assert g.title == "🔔 2 notices on h/n: a, b"
    assert g.type is NoticeType.FAILURE
    assert g.body == "🔴 a failing on h/n\none\nsince x\n\n✅ b resolved on h/n\ntwo\nsince x"
    assert g.held == ()


# -- [limits] settings ------------------------------------------------------------------------


def load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "errord.toml"
    path.write_text(HEAD + text)
    return Settings.load(path, environ={})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('notices = "20/0s"', "limits.notices: '20/0s': WINDOW must be longer than 0"),
        ('notices = "0/1m"', "limits.notices: '0/1m': N must be an integer >= 1"),
        ('notices = "x/1m"', "limits.notices: 'x/1m': N must be an integer >= 1"),
        ('notices = "20"', "limits.notices: '20' is not 'off' or 'N/WINDOW'"),
        ('notices = "20/soon"', "limits.notices: '20/soon': WINDOW:"),
        ("notices = 20", "limits.notices: must be 'off' or 'N/WINDOW'"),
        ('group_wait = "-1s"', "limits.group_wait:"),
        ('group_wait = "soon"', "limits.group_wait:"),
        ('notice = "1/1m"', "limits.notice: unknown key (did you mean 'notices'?)"),
    ],
)
def test_bad_limits_name_their_key(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "[limits]\n" + text)
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems


def test_limits_default_off_and_carried(tmp_path: Path) -> None:
    assert load(tmp_path, "").to_run().limits.rule == LimitRule()
    assert not LimitRule().active
    r = load(tmp_path, '[limits]\nnotices = "20/1m"\ngroup_wait = "10s"\n').to_run()
    assert r.limits.rule == LimitRule(20, 60.0, 10.0)
    assert type(r).from_dump(r.dump()).limits == r.limits
    assert parse_budget("OFF") == (0, 0.0)


def test_check_config_exits_2_naming_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "errord.toml"
    path.write_text(HEAD + '[limits]\nnotices = "20/0s"\n')
    res = subprocess.run(
        [sys.executable, "-m", "errord", "check-config", "-c", str(path)], capture_output=True, text=True
    )
    assert res.returncode == 2
    assert res.stderr.startswith("errord: config: limits.notices: '20/0s': WINDOW must be longer than 0"), res.stderr
