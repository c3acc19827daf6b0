"""policy.pipeline: the notice policy as a chain of pure stages, run per line as the batch
and replay run it. Tables of lines -> who gets which notice; the chain's own rules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from errord.model import LogEvent
from errord.policy.base import Context, Flow
from errord.policy.pipeline import NoticePolicy, standard_policy
from errord.policy.route import STDERR_TARGET, Router
from test_engine import FakePolicy, ev, make_engine

ROUTES = [("a", ()), ("b", ("ops",)), ("c", ("db",))]
TAGS = {"OPS": ("ops",), "DB": ("db",), "BOTH": ("ops", "db")}
CTX = Context(now=1_768_400_000.0, server_id="srv", node_name="n", tags_for=lambda code: TAGS.get(code, ()))

Routes = Sequence[tuple[str, Sequence[str]]]
Made = list[list[tuple[str, tuple[str, ...]]]]  # per line: (notice type, targets), in the order made

CASES: list[tuple[str, list[LogEvent], Routes, Made]] = [
    (
        "untagged code: every target, then its resolve to all of them",
        [ev(0, "E"), ev(1, "E"), ev(2, clear="E")],
        ROUTES,
        [[("failure", ("a", "b", "c"))], [], [("success", ("a", "b", "c"))]],
    ),
    (
        "tagged code: only the targets sharing a tag (an untagged target gets none)",
        [ev(0, "OPS"), ev(1, clear="OPS")],
        ROUTES,
        [[("failure", ("b",))], [("success", ("b",))]],
    ),
    ("tags are OR-ed", [ev(0, "BOTH")], ROUTES, [[("failure", ("b", "c"))]]),
    (
        "a re-alert after the interval; a repeat within it makes nothing",
        [ev(0, "E"), ev(50, "E"), ev(150, "E")],
        [("a", ())],
        [[("failure", ("a",))], [], [("warning", ("a",))]],
    ),
    (
        "notification false: recorded, nobody told; its resolve made for nobody",
        [ev(0, "E", notify=False), ev(1, clear="E")],
        ROUTES,
        [[], []],
    ),
    (
        "an incident nobody heard of announces itself on its next line that may notify",
        [ev(0, "E", notify=False), ev(1, "E")],
        [("a", ())],
        [[], [("failure", ("a",))]],
    ),
    (
        "no target configured: the stderr pseudo-target takes every notice, tagged or not",
        [ev(0, "DB"), ev(1, clear="DB")],
        [],
        [[("failure", (STDERR_TARGET,))], [("success", (STDERR_TARGET,))]],
    ),
    (
        "a clear and an error on one line: one merged notice per target in both, never two",
        [ev(0, "OPS"), ev(1, "E", clear="OPS")],
        ROUTES,
        [[("failure", ("b",))], [("failure", ("a", "c")), ("failure", ("b",))]],
    ),
    ("a clear for a code that is not open makes nothing", [ev(0, clear="NOPE")], ROUTES, [[]]),
]


@pytest.mark.parametrize(("lines", "routes", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_who_gets_which_notice(lines: list[LogEvent], routes: Routes, want: Made) -> None:
    engine = make_engine(FakePolicy(default=100))
    policy = standard_policy(Router(routes))
    got = [[(n.type.value, n.targets) for n in policy.apply(engine.feed(line), CTX)] for line in lines]
    assert got == want


def test_the_merged_notice_names_the_resolution() -> None:
    engine = make_engine(FakePolicy(default=100))
    policy = standard_policy(Router(ROUTES))
    policy.apply(engine.feed(ev(0, "OPS")), CTX)
    alone, merged = policy.apply(engine.feed(ev(1, "E", clear="OPS")), CTX)
    assert merged.targets == ("b",) and "(also: OPS resolved)" in merged.title and "OPS resolved" in merged.body
    assert alone.targets == ("a", "c") and "resolved" not in alone.title + alone.body


@dataclass
class Recording:
    """A stage for the chain's own rules: records what it saw, passes the flow on."""

    name: str
    seen: list[tuple[str, int, int, float]] = field(default_factory=list)
    drop: bool = False

    def apply(self, flow: Flow, ctx: Context) -> Flow:
        self.seen.append((self.name, len(flow.transitions), len(flow.notices), ctx.now))
        return Flow([]) if self.drop else flow


def test_stages_run_in_order_with_the_context_as_data() -> None:
    before, after = Recording("before"), Recording("after")
    policy = NoticePolicy([before, Router([("a", ())]), after])
    engine = make_engine(FakePolicy())
    notices = policy.apply(engine.feed(ev(0, "E")), CTX)
    assert [n.targets for n in notices] == [("a",)]
    assert before.seen == [("before", 1, 0, CTX.now)]  # transitions in, no notice yet
    assert after.seen == [("after", 1, 1, CTX.now)]  # routing made the notice
    assert [s.name for s in policy.stages] == ["before", "route", "after"]


def test_a_stage_that_leaves_nothing_ends_the_chain() -> None:
    mute, after = Recording("mute", drop=True), Recording("after")
    policy = NoticePolicy([mute, Router([("a", ())]), after])
    assert policy.apply(make_engine(FakePolicy()).feed(ev(0, "E")), CTX) == []
    assert after.seen == []


def test_today_the_chain_is_routing_only() -> None:
    router = Router()
    assert standard_policy(router).stages == (router,)


def test_replay_runs_the_daemons_chain(tmp_path: Path) -> None:
    from conftest import write_config
    from errord.replay import Replay
    from errord.settings import Settings

    cfg = write_config(
        tmp_path / "e.toml", state_dir=str(tmp_path / "state"), sources=[{"path": str(tmp_path / "*.jsonl")}]
    )
    replay = Replay(Settings.load(cfg).to_run(), [])
    assert [s.name for s in replay.policy.stages] == [s.name for s in standard_policy(Router()).stages]
