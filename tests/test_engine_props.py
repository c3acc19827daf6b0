"""Properties of the incident state machine (hypothesis), beyond the rule table of
test_engine.py: invariants that must hold for *any* stream of lines, and independence of
the outcome from how the daemon cuts the stream into batches (with failed commits that are
rolled back and retried, as the batch loop does when the journal cannot be written)."""

from __future__ import annotations

import itertools
import random
import uuid
from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from errord.engine import Engine, incident_key
from errord.model import Incident, Kind, LogEvent, Notice
from errord.notices import render
from errord.policy.route import Router

T0 = 1_768_400_000.0
CODES = ["db", "api", "disk", "7"]
APPS = [None, "web", "worker"]


from test_engine import FakePolicy as Policy  # noqa: E402

policies = st.builds(
    Policy,
    default=st.sampled_from([0.0, 5.0, 60.0, 3600.0]),
    per_code=st.dictionaries(st.sampled_from(CODES), st.sampled_from([0.0, 1.0, 10.0, 100.0]), max_size=2),
    silent=st.sets(st.sampled_from(CODES), max_size=2),
)


@st.composite
def streams(draw: st.DrawFn) -> list[LogEvent]:
    """Lines as the parser hands them on: mostly rising event times, some out of order,
    some repeated; raises, clears, both on one line; per-line intervals and notify flags."""
    n = draw(st.integers(1, 60))
    t = 0.0
    out: list[LogEvent] = []
    for i in range(n):
        step = draw(st.sampled_from([0.0, 0.5, 1.0, 3.0, 7.0, 30.0, 200.0, -20.0]))
        t = max(0.0, t + step)
        shape = draw(st.sampled_from(["raise", "raise", "raise", "clear", "both"]))
        code = draw(st.sampled_from(CODES)) if shape in ("raise", "both") else None
        clear = draw(st.sampled_from(CODES)) if shape in ("clear", "both") else None
        out.append(
            LogEvent(
                code=code,
                clear=clear,
                message=f"line {i}",
                time=T0 + t,
                re_alert=draw(st.sampled_from([None, None, None, 0.0, 2.0, 50.0])),
                notify=draw(st.sampled_from([None, None, True, False])),
                app=draw(st.sampled_from(APPS)),
            )
        )
    return out


def make_engine(policy: Policy, scope: str) -> Engine:
    return Engine(policy, scope=scope, server_id="srv", node_name="n", new_id=lambda: uuid.uuid4().hex)


# -- invariants over one stream ----------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(policies, st.sampled_from(["code", "app"]), streams())
def test_invariants(policy: Policy, scope: str, events: list[LogEvent]) -> None:
    engine = make_engine(policy, scope)
    seen: dict[str, Incident] = {}  # every incident ever opened, by id (live objects)
    alerts: dict[str, int] = defaultdict(int)  # notify NEW/REALERT/ANNOUNCE transitions per incident
    last_alert: dict[str, float] = {}  # my model of last_alert_time
    interval_of: dict[str, float | None] = {}  # my model of the incident's remembered re_alert
    for ev in events:
        transitions = engine.feed(ev)
        # clear first, then error; one transition per field present
        assert [t.kind is Kind.CLEAR or t.kind is Kind.CLEAR_UNKNOWN for t in transitions] == (
            [True] * bool(ev.clear) + [False] * bool(ev.code)
        )
        for t in transitions:
            inc = t.incident
            if t.kind is Kind.CLEAR_UNKNOWN:
                assert inc is None and not t.notify
                continue
            assert inc is not None
            if t.kind is Kind.NEW:
                assert inc.incident_id not in seen
                seen[inc.incident_id] = inc
                last_alert[inc.incident_id] = ev.time
                interval_of[inc.incident_id] = ev.re_alert
            else:
                assert seen[inc.incident_id] is inc
            iid = inc.incident_id
            # silent when the line says `notification: false` or the config `notify = false`
            # for the code (a line's `notification: true` does not undo the operator's false)
            wanted = ev.notify is not False and policy.notify_for(inc.code)
            if t.kind in (Kind.REPEAT, Kind.REALERT, Kind.ANNOUNCE):
                if ev.re_alert is not None:
                    interval_of[iid] = ev.re_alert
                remembered = interval_of[iid]
                interval = remembered if remembered is not None else policy.re_alert_for(inc.code)
                gap = ev.time - last_alert[iid]
                due = interval <= 0 or gap >= interval
                # nobody has heard of it: the first line that may notify announces it (CONTRACT §2)
                unheard = alerts[iid] == 0 and wanted
                assert (t.kind is Kind.ANNOUNCE) == unheard, (t.kind, alerts[iid], wanted)
                if t.kind is Kind.REALERT or (unheard and due):
                    # re-alert spacing never below the interval (0 = every occurrence alerts)
                    assert due
                    last_alert[iid] = ev.time
                elif unheard:  # announced before the interval: last_alert_time never moves back
                    last_alert[iid] = max(last_alert[iid], ev.time)
                else:
                    assert not due and not t.notify
                assert inc.last_alert_time == last_alert[iid]
            if t.kind is Kind.CLEAR:
                # never before its start (CONTRACT §7); the resolve only for an incident
                # that alerted, and only the clearing line can keep it back (CONTRACT §2)
                assert not inc.active and inc.cleared_at == max(ev.time, inc.start_time)
                assert t.notify == (ev.notify is not False and alerts[iid] > 0)
                assert t.duration == inc.cleared_at - inc.start_time >= 0
            else:
                assert t.notify == (wanted and t.kind in (Kind.NEW, Kind.REALERT, Kind.ANNOUNCE))
            if t.kind in (Kind.NEW, Kind.REALERT, Kind.ANNOUNCE) and t.notify:
                alerts[iid] += 1
        # at most one open incident per key, and the engine's view agrees with all incidents seen
        open_by_key: dict[str, list[str]] = defaultdict(list)
        for iid, inc in seen.items():
            if inc.active:
                open_by_key[incident_key(scope, inc.app, inc.code)].append(iid)
        assert all(len(ids) == 1 for ids in open_by_key.values())
        assert {k: ids[0] for k, ids in open_by_key.items()} == {
            k: inc.incident_id for k, inc in engine.active().items()
        }
        # at most one notice per line
        render(transitions, server_id="srv", node_name="n")
    for iid, inc in seen.items():
        assert inc.alerts_sent == alerts[iid], inc
        assert inc.occurrences >= 1 and inc.since_alert <= inc.occurrences


# -- batch splits ----------------------------------------------------------------------------


def run_batched(
    policy: Policy,
    scope: str,
    events: list[LogEvent],
    cuts: list[int],
    fail_seed: int | None,
    *,
    freeze: bool = False,
) -> dict[str, Any]:
    """Feed ``events`` the way the daemon's batch loop does: begin, feed a batch, then commit
    to a fake store, or (by a seeded coin) fail, roll back and retry the same batch.
    Returns what is durable: the store and the committed notices, ids normalised. Notices
    are routed as the daemon routes them (two targets, "b" only for code db's tag), so who
    was alerted (``Incident.notified``) must roll back with a failed batch too.
    ``freeze``: after each commit, as the daemon's batch does, the open incidents read
    their message from the store and are packed (``Engine.freeze``, engine_cold)."""
    engine = make_engine(policy, scope)
    router = Router([("a", ()), ("b", ("ops",))])
    rnd = random.Random(fail_seed)
    store: dict[str, Incident] = {}

    messages: dict[str, str] = {}  # the journal's message column, by incident id

    def message_of(inc: Incident) -> str:
        return messages[inc.incident_id]

    notices: list[Notice] = []
    created: list[str] = []  # incident ids in the order their NEW transition was committed
    bounds = [0, *sorted(set(cuts)), len(events)]
    for a, b in itertools.pairwise(bounds):
        if a == b:
            continue
        while True:
            engine.begin()
            batch_notices: list[Notice] = []
            batch_new: list[str] = []
            for ev in events[a:b]:
                ts = engine.feed(_copy(ev))
                batch_new += [t.incident.incident_id for t in ts if t.kind is Kind.NEW and t.incident]
                batch_notices += router.route(
                    ts, server_id="srv", node_name="n", tags_for=lambda c: ("ops",) if c == "db" else ()
                )
            if fail_seed is not None and rnd.random() < 0.3:
                engine.rollback()  # the journal refused: nothing of this batch happened
                continue
            pending = engine.pending()
            for inc in pending:
                store[inc.incident_id] = inc.copy()
                if inc.held_message is not None:
                    messages.setdefault(inc.incident_id, inc.held_message)
            notices += batch_notices
            created += batch_new
            engine.commit()
            if freeze:
                for inc in pending:
                    if inc.active:
                        inc.keep_message_in(message_of)
                engine.freeze(pending)
            break
    ids = {iid: f"inc{i}" for i, iid in enumerate(created)}
    assert set(ids) == set(store)

    def norm(inc: Incident) -> tuple[Any, ...]:
        rec = inc.copy()
        rec.message = inc.message  # read (from the store, once packed) before the id changes
        rec.incident_id = ids[rec.incident_id]
        return rec.values()

    return {
        "store": sorted(norm(i) for i in store.values()),
        "active": sorted((k, ids[i.incident_id]) for k, i in engine.active().items()),
        "active_state": sorted(norm(i) for i in engine.active().values()),
        "notices": [(n.type, n.code, n.title, n.body, ids[n.incident_id], n.event_time, n.targets) for n in notices],
    }


def _copy(ev: LogEvent) -> LogEvent:
    return LogEvent(ev.code, ev.clear, ev.message, ev.time, ev.re_alert, ev.notify, ev.level, ev.app)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies, st.sampled_from(["code", "app"]), streams(), st.data())
def test_outcome_does_not_depend_on_batch_split(
    policy: Policy, scope: str, events: list[LogEvent], data: st.DataObject
) -> None:
    one_batch = run_batched(policy, scope, events, [], None)
    per_line = run_batched(policy, scope, events, list(range(len(events))), None)
    cuts = data.draw(st.lists(st.integers(0, len(events)), max_size=10), label="cuts")
    seed = data.draw(st.integers(0, 2**32), label="fail_seed")
    random_split = run_batched(policy, scope, events, cuts, seed)
    assert per_line == one_batch
    assert random_split == one_batch
    # packing the untouched open incidents between batches (the daemon's engine_cold)
    # changes nothing either: every line after it finds the same state
    assert run_batched(policy, scope, events, cuts, seed, freeze=True) == one_batch


def test_rollback_of_a_batch_that_cleared_and_reopened_a_key() -> None:
    """The trickiest undo: close an incident and open a new one for the same key in one
    batch, then roll back: the old incident is open again, unchanged, and the retry gives
    the same result as if the failed attempt never happened."""
    events = [
        LogEvent("db", None, "a", T0),
        LogEvent("db", None, "b", T0 + 1),
        LogEvent(None, "db", "c", T0 + 2),
        LogEvent("db", None, "d", T0 + 3),
        LogEvent(None, "db", "e", T0 + 4),
        LogEvent("db", "db", "f", T0 + 5),
    ]
    want = run_batched(Policy(default=1.0), "code", events, [1], None)
    for seed in range(20):
        assert run_batched(Policy(default=1.0), "code", events, [1], seed) == want


@settings(max_examples=200, deadline=None)
@given(policies, st.sampled_from(["code", "app"]), streams())
def test_feed_quiet_is_feed_without_suppressed_repeats(policy: Policy, scope: str, events: list[LogEvent]) -> None:
    """``feed_quiet`` (the daemon's batch loop uses it) gives what ``feed`` gives, except
    None for a line whose only transition is a suppressed REPEAT; same engine state."""

    def engine() -> Engine:
        ids = iter(range(10**6))
        return Engine(policy, scope=scope, server_id="srv", node_name="n", new_id=lambda: f"id{next(ids)}")

    def state(ts: list[Any]) -> list[tuple[Any, ...]]:
        return [
            (
                t.kind,
                t.key,
                t.notify,
                t.since_alert,
                t.duration,
                t.event.message,
                t.incident.copy() if t.incident else None,
            )
            for t in ts
        ]

    loud, quiet = engine(), engine()
    for ev in events:
        want = loud.feed(_copy(ev))
        got = quiet.feed_quiet(_copy(ev))
        if got is None:
            assert [t.kind for t in want] == [Kind.REPEAT] and not want[0].notify
        else:
            assert state(got) == state(want)
        assert quiet.pending() == loud.pending() and quiet.active() == loud.active()
