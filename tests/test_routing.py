"""policy.route.Router: who gets each notice (tags; the resolve to those alerted; one notice per
target per line). Engine and router together, as the daemon's batch runs them."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import pytest

from errord.engine import Engine
from errord.model import Notice, NoticeType
from errord.policy.route import STDERR_TARGET, UNKNOWN_ALERTED, Router
from test_engine import FakePolicy, ev, make_engine

ROUTES = [("a", ("ta",)), ("b", ("tb",)), ("c", ("tc",))]


class Line:
    """Feed lines through an engine and a router, as ``batch.Batch.step`` does."""

    def __init__(
        self,
        routes: Sequence[tuple[str, Sequence[str]]] = ROUTES,
        tags: Mapping[str, Sequence[str]] | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.engine = engine or make_engine(FakePolicy(default=100))
        self.router = Router(routes)
        self.tags = dict(tags or {})

    def __call__(self, event) -> list[Notice]:  # type: ignore[no-untyped-def]
        return self.router.route(
            self.engine.feed(event), server_id="srv", node_name="n", tags_for=lambda code: self.tags.get(code, ())
        )


def by_target(notices: list[Notice]) -> dict[str, str]:
    """target -> what it gets: "failure", "warning", "success", or "failure+resolved" (merged)."""
    out: dict[str, str] = {}
    for n in notices:
        what = n.type.value + ("+resolved" if "resolved)" in n.title else "")
        for t in n.targets:
            assert t not in out, f"{t} got two notices for one line"
            out[t] = what
    return out


# -- failures and warnings: by tags -------------------------------------------------------------


def test_alerts_go_by_tags(caplog: pytest.LogCaptureFixture) -> None:
    route = Line(
        routes=[("a", ("ops",)), ("b", ()), ("c", ("ops", "db"))],
        tags={"E2": ("ops",), "E3": ("db", "zz"), "E4": ("nobody",), "E5": ("nobody",)},
    )
    with caplog.at_level(logging.WARNING, logger="errord.policy.route"):
        got = {code: route(ev(0, code)) for code in ("E1", "E2", "E3", "E4", "E5")}
    assert {code: [n.targets for n in ns] for code, ns in got.items()} == {
        "E1": [("a", "b", "c")],  # untagged code: every target (an untagged target too)
        "E2": [("a", "c")],  # tags are OR-ed; an untagged target only gets untagged codes
        "E3": [("c",)],
        "E4": [()],  # no target takes it: recorded (the journal stores it), not sent
        "E5": [()],
    }
    assert caplog.text.count("match no notify target") == 1  # once per tags
    assert got["E2"][0].tags == ("ops",)


def test_no_target_configured_means_stderr_for_everything() -> None:
    route = Line(routes=[], tags={"E2": ("ops",)})
    assert [n.targets for n in route(ev(0, "E1")) + route(ev(0, "E2"))] == [(STDERR_TARGET,), (STDERR_TARGET,)]
    assert [n.targets for n in route(ev(1, clear="E2"))] == [(STDERR_TARGET,)]


def test_alerts_are_remembered_on_the_incident() -> None:
    route = Line(tags={"db": ("ta",)})
    route(ev(0, "db"))
    inc = route.engine.active()["db"]
    assert inc.notified == ("a",)
    route.tags["db"] = ("tb", "ta")  # re-tagged (SIGHUP): the re-alert goes to both
    (n,) = route(ev(100, "db"))
    assert n.type is NoticeType.WARNING and n.targets == ("a", "b") and inc.notified == ("a", "b")
    assert route(ev(150, "db")) == []  # a suppressed repeat routes nothing
    assert inc.notified == ("a", "b") and inc.record().keys().isdisjoint({"notified"})


def test_incidents_alerted_alike_share_one_notified_tuple() -> None:
    # memory (issue 13): 100,000 incidents alerted to the same targets hold one tuple, not one each
    route = Line()
    for code in ("E1", "E2", "E3"):
        route(ev(0, code))
    e1, e2, e3 = (route.engine.active()[c] for c in ("E1", "E2", "E3"))
    assert e1.notified == ("a", "b", "c")
    assert e1.notified is e2.notified is e3.notified


def test_announce_goes_by_tags_and_counts_as_alerted() -> None:
    route = Line(tags={"db": ("tb",)})
    assert [n.targets for n in route(ev(0, "db", notify=False))] == []
    (n,) = route(ev(10, "db"))
    assert (n.type, n.targets, n.title) == (NoticeType.FAILURE, ("b",), "🔴 db failing on srv/n")
    assert [n.targets for n in route(ev(20, clear="db"))] == [("b",)]


# -- the resolve goes to those who were alerted --------------------------------------------------


def test_resolve_goes_only_to_the_alerted_whatever_tags_changed() -> None:
    route = Line(tags={"db": ("ta",)})
    route(ev(0, "db"))
    route.tags["db"] = ("tb",)  # re-tagged to b since
    (n,) = route(ev(10, clear="db"))
    assert (n.type, n.targets) == (NoticeType.SUCCESS, ("a",))
    # a target re-tagged so it would no longer take the code still gets the resolve
    route.tags["db"] = ("ta",)
    route(ev(20, "db"))
    route.router.set_routes([("a", ("other",)), ("b", ("tb",)), ("c", ("tc",))])
    assert [n.targets for n in route(ev(30, clear="db"))] == [("a",)]


def test_incident_that_notified_nobody_resolves_silently() -> None:
    # notification: false on every line, or tags no target takes: nobody to tell
    route = Line(tags={"lost": ("nobody",)})
    route(ev(0, "quiet", notify=False))
    assert route(ev(1, clear="quiet")) == []
    route(ev(0, "lost"))
    assert route.engine.active()["lost"].alerts_sent == 1  # made, recorded, but sent nowhere
    assert route(ev(1, clear="lost")) == []


def test_forget_removed_prunes_the_open_incidents_and_names_the_target(caplog: pytest.LogCaptureFixture) -> None:
    """At a reload (or start) with other targets: the open incidents forget the removed
    ones, so no resolve ever names them; one line per removed target, by its name."""
    route = Line(routes=[("a", ()), ("b", ())])
    route(ev(0, "db"))
    route(ev(0, "api"))
    route(ev(0, "quiet", notify=False))
    active = route.engine.active()
    active["api"].notified += (UNKNOWN_ALERTED,)  # by tags: kept, whoever is configured
    route.router.set_routes([("a", ()), ("c", ())])  # b removed, c added
    assert [route.router.names_removed(t) for t in (("a",), ("a", "b"), (UNKNOWN_ALERTED,), ())] == [
        False,
        True,
        False,
        False,
    ]  # what the daemon thaws packed incidents for: those forget_removed changes
    with caplog.at_level(logging.WARNING, logger="errord.policy.route"):
        changed = route.router.forget_removed(active.values(), {"b": "json://hook.example/…"})
        assert route.router.forget_removed(active.values(), {}) == []  # once: nothing left to forget
    assert sorted(i.code for i in changed) == ["api", "db"]
    assert {c: i.notified for c, i in active.items()} == {"db": ("a",), "api": ("a", UNKNOWN_ALERTED), "quiet": ()}
    assert [r.getMessage() for r in caplog.records] == [
        "notify target json://hook.example/… is no longer configured: the 2 open incident(s) it was alerted of"
        " (api, db) resolve to the targets still configured only"
    ]
    assert [n.targets for n in route(ev(5, clear="db"))] == [("a",)]
    assert [n.targets for n in route(ev(5, clear="api"))] == [("a", "c")]  # "*": by tags, as ever


def test_removed_target_does_not_get_the_resolve_and_it_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    route = Line(routes=[("a", ()), ("b", ())])
    route(ev(0, "db"))
    route(ev(0, "api"))
    route.router.set_routes([("a", ()), ("c", ())])  # b removed, c added
    with caplog.at_level(logging.WARNING, logger="errord.policy.route"):
        assert [n.targets for n in route(ev(5, clear="db"))] == [("a",)]  # never c: it was not alerted
        assert [n.targets for n in route(ev(5, clear="api"))] == [("a",)]
    assert caplog.text.count("notify target b was alerted of db but is no longer configured") == 1
    assert caplog.text.count("no longer configured") == 1
    route(ev(10, "solo"))
    route.router.set_routes([])  # every target removed: only stderr now, which was not alerted
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="errord.policy.route"):
        assert route(ev(15, clear="solo")) == []
    assert "notify target a was alerted of solo" in caplog.text and "notify target c" in caplog.text


def test_alerted_by_unknown_targets_resolves_by_tags() -> None:
    # Recovered from MongoDB, or alerted by an errord from before `notified` was kept.
    route = Line(tags={"db": ("tb", "tc")})
    route(ev(0, "db", notify=False))
    inc = route.engine.active()["db"]
    inc.alerts_sent, inc.notified = 3, (UNKNOWN_ALERTED,)
    assert [n.targets for n in route(ev(5, clear="db"))] == [("b", "c")]


def test_notified_rolls_back_with_a_failed_batch() -> None:
    route = Line(tags={"db": ("ta",)})
    e = route.engine
    e.begin()
    route(ev(0, "db"))
    e.commit()
    e.begin()
    route.tags["db"] = ("tb",)
    route(ev(100, "db"))  # re-alert to b
    assert e.active()["db"].notified == ("a", "b")
    e.rollback()  # the journal refused the batch: b was never queued
    assert e.active()["db"].notified == ("a",)
    assert [n.targets for n in route(ev(5, clear="db"))] == [("a",)]


# -- one line, at most one notice per target ------------------------------------------------------


@pytest.mark.parametrize(
    "old_tags,new_tags,new_line,expected",
    [
        pytest.param(
            ("ta", "tb"),
            ("tb", "tc"),
            {},
            {"a": "success", "b": "failure+resolved", "c": "failure"},
            id="overlap: both sets merged, the others alone",
        ),
        pytest.param(("ta",), ("ta",), {}, {"a": "failure+resolved"}, id="same target: one merged notice"),
        pytest.param(("ta",), ("tc",), {}, {"a": "success", "c": "failure"}, id="disjoint: each alone"),
        pytest.param(("ta",), ("nobody",), {}, {"a": "success"}, id="error routed nowhere: resolve alone"),
        pytest.param(("ta",), ("tb",), {"notify": False}, {}, id="notification false on the line: neither"),
    ],
)
def test_a_line_that_clears_and_raises(
    old_tags: tuple[str, ...], new_tags: tuple[str, ...], new_line: dict[str, object], expected: dict[str, str]
) -> None:
    route = Line(tags={"old": old_tags, "new": new_tags})
    route(ev(0, "old"))
    got = route(ev(60, "new", clear="old", **new_line))
    assert by_target(got) == expected
    merged = [n for n in got if "resolved)" in n.title]
    for n in merged:
        assert n.title == "🔴 new failing on srv/n (also: old resolved)" and "Resolved after 1m" in n.body


def test_a_line_that_clears_and_re_alerts_or_repeats() -> None:
    route = Line(tags={"old": ("ta",), "new": ("ta", "tb")})
    route(ev(0, "old"))
    route(ev(0, "new"))
    # a suppressed repeat of `new` beside the clear: the resolve alone, to old's alerted
    assert by_target(route(ev(10, "new", clear="old"))) == {"a": "success"}
    route(ev(20, "old"))
    # `new` re-alerts (100 s) on the line that clears `old`: a gets the merged warning
    assert by_target(route(ev(100, "new", clear="old"))) == {"a": "warning+resolved", "b": "warning"}


def test_same_code_cleared_and_raised_on_one_line() -> None:
    route = Line(tags={"db": ("ta",)})
    route(ev(0, "db"))
    route.tags["db"] = ("tb",)
    got = route(ev(10, "db", clear="db"))
    assert by_target(got) == {"a": "success", "b": "failure"}
    assert route.engine.active()["db"].notified == ("b",)  # the new incident's own


def test_notice_targets_are_in_config_order() -> None:
    route = Line(routes=[("z", ()), ("m", ()), ("a", ())])
    assert [n.targets for n in route(ev(0, "db"))] == [("z", "m", "a")]
    assert [n.targets for n in route(ev(1, clear="db"))] == [("z", "m", "a")]
