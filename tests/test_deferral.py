"""deferral.may_defer and Engine.quiet_until (issue 13): which chunks a following daemon
may parse later, table-tested; then, on a real Tailer and Journal, that a deferred chunk
does exactly what it would have done at once, in its order."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from conftest import append, line
from errord.deferral import may_defer
from errord.noise import NOISE_DEFAULTS
from errord.parse.values import duration_value
from test_batch import Parts, parts, queued, settled  # noqa: F401  (the fixture)
from test_engine import T0, FakePolicy, ev, make_engine

HORIZON = 1000.0


def quiet(**until: float) -> Any:
    """quiet_until from a table: code -> time; records the re_alert it was asked with."""
    asked: list[float | None] = []

    def fn(code: str, re_alert: float | None) -> float:
        asked.append(re_alert)
        return until.get(code, 0.0)

    fn.asked = asked  # type: ignore[attr-defined]
    return fn


def lines(*recs: dict[str, Any], compact: bool = False) -> bytes:
    sep = (",", ":") if compact else (", ", ": ")
    return b"".join(json.dumps(r, separators=sep).encode() + b"\n" for r in recs)


ERR = {"message": "m", "error_code": "db_down"}


@pytest.mark.parametrize(
    ("data", "until", "deferred"),
    [
        (lines({"message": "plain"}), {}, True),  # no code at all
        (lines({"message": "retrying after error_code db_down"}), {}, True),  # a mention, not a key
        (lines(ERR, {"message": "x"}), {"db_down": 5000.0}, True),  # a repeat, not due
        (lines(ERR, compact=True), {"db_down": 5000.0}, True),  # orjson's compact form too
        (lines(ERR), {"db_down": 1000.0}, False),  # due by the horizon
        (lines(ERR), {}, False),  # not open (or never alerted): may notify
        (lines(ERR, {"message": "m", "error_code": "other"}), {"db_down": 5000.0}, False),
        (lines({**ERR, "error_code_clear": "x"}), {"db_down": 5000.0, "x": 5000.0}, False),  # a clear
        (lines({"message": "m", "error_code": None}), {}, False),  # not a plain string
        (lines({"message": "m", "error_code": 42}), {}, False),
        (lines({"message": "m", "error_code": {"id": "db_down"}}), {"db_down": 5000.0}, False),
        (b'{"message": "m", "error\\u005fcode": "db_down"}\n', {"db_down": 5000.0}, False),  # an escaped key
        (b'{"message": "m", "error_code": "db\\u005fdown"}\n', {"db_down": 5000.0}, False),  # an escaped value
        (lines({"message": "m", "error_code": " db_down "}), {"db_down": 5000.0}, True),  # stripped, as parsed
        (lines({"message": "m", "error_code": "   "}), {}, False),
        (b'{"message": "m", "error_code": "\xff\xfe"}\n', {}, False),  # not UTF-8
        (lines({**ERR, "re_alert_time": {"m": 1}}), {"db_down": 5000.0}, False),  # not a plain value
        (lines({**ERR, "extra": {"error_code": "db_down"}}), {"db_down": 5000.0}, True),  # nested, same code
        (lines({"message": "non-ASCII \u00e9t\u00e9 \u2603", **ERR}), {"db_down": 5000.0}, True),  # no key letter
    ],
)
def test_may_defer(data: bytes, until: dict[str, float], deferred: bool) -> None:
    assert may_defer(data, quiet(**until), HORIZON, duration_value) is deferred


@pytest.mark.parametrize(
    ("given", "asked"),
    [
        ([None], None),
        (["15m"], 900.0),
        (["15m", 30], 30.0),  # the shortest of the chunk's
        (["15m", "soon"], 900.0),  # an unusable value is left out by the parser too
    ],
)
def test_may_defer_asks_with_the_chunks_shortest_re_alert_time(given: list[Any], asked: float | None) -> None:
    recs = [ERR if g is None else {**ERR, "re_alert_time": g} for g in given]
    fn = quiet(db_down=5000.0)
    assert may_defer(lines(*recs), fn, HORIZON, duration_value)
    assert fn.asked == [asked]


# -- Engine.quiet_until ---------------------------------------------------------------


def test_quiet_until_is_the_next_re_alert_of_an_alerted_incident() -> None:
    e = make_engine(FakePolicy(default=3600.0, per_code={"fast": 0.0}))
    assert e.quiet_until("db_down", None) == 0.0  # not open
    e.feed(ev(0, "db_down"))
    assert e.quiet_until("db_down", None) == T0 + 3600.0
    assert e.quiet_until("db_down", None, re_alert=60.0) == T0 + 60.0  # a line's shorter interval
    assert e.quiet_until("db_down", None, re_alert=7200.0) == T0 + 3600.0  # never a longer one
    e.feed(ev(10, "db_down", re_alert=120.0))  # its lines' interval is remembered
    assert e.quiet_until("db_down", None) == T0 + 120.0
    e.feed(ev(0, "fast"))
    assert e.quiet_until("fast", None) == 0.0  # every line re-alerts


def test_quiet_until_is_zero_for_an_incident_that_never_alerted() -> None:
    """Its next line that may notify announces it (CONTRACT §2): never deferred."""
    e = make_engine()
    e.feed(ev(0, "db_down", notify=False))
    assert e.quiet_until("db_down", None) == 0.0


def test_quiet_until_counts_backoff_and_auto_resolve() -> None:
    noise = dataclasses.replace(NOISE_DEFAULTS, re_alert_backoff=2.0, re_alert_max=10_000.0)
    e = make_engine(FakePolicy(default=100.0, noise=noise))
    e.feed(ev(0, "db_down"))
    e.feed(ev(100, "db_down"))  # the first re-alert: the next waits 200 s
    assert e.quiet_until("db_down", None) == T0 + 300.0
    lapsing = dataclasses.replace(NOISE_DEFAULTS, auto_resolve_after=50.0)
    e = make_engine(FakePolicy(default=3600.0, noise=lapsing))
    e.feed(ev(0, "db_down"))
    e.feed(ev(20, "db_down"))
    assert e.quiet_until("db_down", None) == T0 + 70.0  # a line after that resolves and reopens


def test_quiet_until_follows_the_scope() -> None:
    e = make_engine(scope="app")
    e.feed(ev(0, "db_down", app="a"))
    assert e.quiet_until("db_down", "a") == T0 + 3600.0
    assert e.quiet_until("db_down", "b") == 0.0  # another app's would open its own


# -- in the batch ------------------------------------------------------------------------


def incidents(p: Parts) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(p.journal.path)
    try:
        return db.execute(
            "SELECT code, occurrences, active, last_log_time, resolved_by FROM incidents ORDER BY code, start_time"
        ).fetchall()
    finally:
        db.close()


def outbox(p: Parts) -> list[tuple[str, str]]:
    return [(kind, title) for _, kind, title in queued(p.journal)]


async def test_a_chunk_of_repeats_waits_unparsed_and_counts_at_the_commit(parts) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    p = await parts()
    await settled(p)
    append(p.log, line("db_down"))
    await p.tailer.wait(1.0)
    assert p.batch.step(hold=60.0).notices == 1  # the failure: at once
    read = p.batch.lines_read
    append(p.log, line("db_down"), line(msg="plain"), line("db_down"))
    await p.tailer.wait(1.0)
    assert p.batch.step(hold=60.0).held
    assert p.batch.lines_read == read  # not parsed yet: the cost a look saves
    assert p.batch.flush() is not None
    assert p.batch.lines_read == read + 3
    assert [(c, n) for c, n, *_ in incidents(p)] == [("db_down", 3)]


async def test_deferred_lines_go_first_when_a_later_line_may_notify(parts) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Repeats deferred, then a clear of the same code: the repeats are counted in the
    incident before it closes (the other order would open a second incident)."""
    p = await parts()
    await settled(p)
    append(p.log, line("db_down", msg="t0"))
    await p.tailer.wait(1.0)
    p.batch.step(hold=60.0)
    append(p.log, line("db_down"), line("db_down"))
    await p.tailer.wait(1.0)
    assert p.batch.step(hold=60.0).held
    append(p.log, line(clear="db_down"))
    await p.tailer.wait(1.0)
    assert p.batch.step(hold=60.0).notices == 1  # the resolve
    got = incidents(p)
    assert [(c, n, a, r) for c, n, a, _, r in got] == [("db_down", 3, False, "clear")]


async def test_deferring_changes_nothing_but_when(parts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The same lines, stepped with a hold (deferring) and without: the same incidents,
    the same notices."""
    script = [
        [line("db_down", timestamp="2026-01-14T10:00:00Z")],
        [line("db_down", timestamp="2026-01-14T10:00:01Z"), line(msg="plain")],
        [line("db_down", timestamp="2026-01-14T10:00:02Z", re_alert_time="1h")],
        [line("db_down", timestamp="2026-01-14T11:30:00Z")],  # due: re-alerts
        [line("cache", timestamp="2026-01-14T11:30:01Z"), line("db_down", timestamp="2026-01-14T11:30:02Z")],
        [line("cache", timestamp="2026-01-14T11:30:03Z")],
        [line(clear="cache", timestamp="2026-01-14T11:30:04Z")],
    ]
    results = []
    for hold in (60.0, 0.0):
        p = await parts()
        await settled(p)
        for group in script:
            append(p.log, *group)
            await p.tailer.wait(1.0)
            p.batch.step(hold=hold)
        p.batch.flush()
        results.append((incidents(p), outbox(p)))
        await p.tailer.close()
        p.journal.close()
        for f in (tmp_path / "logs").iterdir():
            f.unlink()
        for f in (tmp_path / "state").iterdir():
            f.unlink()
    deferred, direct = results
    assert deferred == direct
    assert [t for t, _ in direct[1]] == ["failure", "warning", "failure", "success"]  # the re-alert: "still failing"
    assert [(c, n, a) for c, n, a, *_ in direct[0]] == [("cache", 2, 0), ("db_down", 5, 1)]


async def test_a_large_read_is_parsed_at_once(parts) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A backlog's reads are committed at once anyway: scanning them to defer would only add."""
    from errord.deferral import DEFER_MAX_BYTES

    p = await parts()
    await settled(p)
    append(p.log, line("db_down"))
    await p.tailer.wait(1.0)
    p.batch.step(hold=60.0)
    read = p.batch.lines_read
    repeat = line("db_down", msg="x" * 100)
    n = DEFER_MAX_BYTES // len(repeat) + 10
    append(p.log, *([repeat] * n))
    await p.tailer.wait(1.0)
    p.batch.step(hold=60.0)
    assert p.batch.lines_read == read + n
