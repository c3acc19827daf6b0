"""Notice rendering: one notice per line, the code verbatim in the title, untrusted text cleaned."""

from __future__ import annotations

import re

from errord.model import NoticeType
from errord.notices import MAX_EXCEPTION, MAX_MESSAGE, clean_text, render
from test_engine import FakePolicy, ev, make_engine


def notice_for(engine, event, **kw):  # type: ignore[no-untyped-def]
    return render(engine.feed(event), server_id="v4vapp", node_name="voltage", **kw)


def test_new_realert_resolved_types_and_titles() -> None:
    e = make_engine(FakePolicy(default=60))
    n1 = notice_for(e, ev(0, "db_down", message="database down", app="api"))
    n2 = notice_for(e, ev(90, "db_down", message="still down"))
    n3 = notice_for(e, ev(300, clear="db_down", message="db back"))
    assert n1 and n2 and n3
    assert [n.type for n in (n1, n2, n3)] == [NoticeType.FAILURE, NoticeType.WARNING, NoticeType.SUCCESS]
    for n in (n1, n2, n3):
        assert re.search(r"(^|[\s\W])db_down($|[\s\W])", n.title), n.title
        assert "v4vapp/voltage" in n.title
        assert n.code == "db_down" and n.incident_id == "id1"
    assert "database down" in n1.body and "app: api" in n1.body
    assert "1 occurrence since the last alert, 2 in all" in n2.body and "still down" in n2.body
    assert "Resolved after 5m" in n3.body
    assert "Original message: database down" in n3.body
    assert "db back" in n3.body


def test_suppressed_and_silent_lines_make_no_notice() -> None:
    e = make_engine()
    assert notice_for(e, ev(0, "db", notify=False)) is None
    assert notice_for(e, ev(1, "db", notify=False)) is None
    assert notice_for(e, ev(2, clear="nothing")) is None
    assert notice_for(e, ev(3, clear="db")) is None  # it notified nobody: resolves silently
    notice_for(e, ev(4, "db"))
    assert notice_for(e, ev(5, "db")) is None  # suppressed repeat
    assert notice_for(e, ev(6, clear="db", notify=False)) is None


def test_announce_is_a_failure_saying_since_when() -> None:
    e = make_engine()
    notice_for(e, ev(0, "db_down", notify=False, message="database down", app="api"))
    notice_for(e, ev(60, "db_down", notify=False))
    n = notice_for(e, ev(5400, "db_down", message="still down"))
    assert n is not None and n.type is NoticeType.FAILURE
    assert n.title == "🔴 db_down failing on v4vapp/voltage"
    assert n.body.splitlines()[:3] == [
        "Failing since 2026-01-14 14:13:20 UTC (1h 30m), 3 occurrences so far, not announced before.",
        "Latest: still down",
        "First: database down",
    ]
    assert "app: api" in n.body


def test_resolve_of_a_clear_written_before_the_start_never_runs_backwards() -> None:
    e = make_engine()
    notice_for(e, ev(3600, "db"))
    n = notice_for(e, ev(0, clear="db"))
    assert n is not None and n.type is NoticeType.SUCCESS
    assert "Resolved after 0s (2026-01-14 15:13:20 UTC to 2026-01-14 15:13:20 UTC), 1 occurrence." in n.body, n.body


def test_one_line_clearing_and_raising_gives_one_notice() -> None:
    e = make_engine()
    notice_for(e, ev(0, "old"))
    n = notice_for(e, ev(60, "new", clear="old"))
    assert n is not None
    assert n.type is NoticeType.FAILURE and n.code == "new"
    assert " new " in f" {n.title} " and "old resolved" in n.title
    assert "Resolved after 1m" in n.body


def test_same_code_clear_and_raise_on_one_line_is_one_notice() -> None:
    e = make_engine()
    notice_for(e, ev(0, "db"))
    n = notice_for(e, ev(10, "db", clear="db"))
    assert n is not None and n.type is NoticeType.FAILURE and n.incident_id == "id2"


def test_tags_come_from_config() -> None:
    e = make_engine()
    n = notice_for(e, ev(0, "api_rate_limit"), tags_for=lambda c: ["ops"] if c == "api_rate_limit" else [])
    assert n is not None and n.tags == ("ops",)


def test_untrusted_text_is_cleaned_and_capped() -> None:
    e = make_engine()
    nasty = "boom\x1b[31m red\x07\u202e gnirts {0.__class__} {message}" + "x" * 5000
    n = notice_for(e, ev(0, "db", message=nasty))
    assert n is not None
    assert "\x1b" not in n.body and "\x07" not in n.body and "\u202e" not in n.body
    assert "{0.__class__} {message}" in n.body  # printed as is, never formatted
    first_line = n.body.splitlines()[0]
    assert len(first_line) == MAX_MESSAGE and first_line.endswith("…")


def test_clean_text_keeps_newlines_unless_single_line() -> None:
    assert clean_text("a\nb\tc\x00") == "a\nb\tc"
    assert clean_text("a\n  b", single_line=True) == "a b"


def test_exception_line_for_new_and_realert_only() -> None:
    """CONTRACT §1: the body carries the exception of the line that made the notice."""
    e = make_engine(FakePolicy(default=60))
    n1 = notice_for(e, ev(0, "db", message="query failed", exception="OperationalError: no such table: x"))
    n2 = notice_for(e, ev(90, "db", message="again", exception="TimeoutError: \x1b[31mread\x07 timed out\n  later"))
    n3 = notice_for(e, ev(300, clear="db", message="back", exception="ValueError: ignored on a clear"))
    n4 = notice_for(e, ev(400, "db2", message="no exception here"))
    assert n1 and n2 and n3 and n4
    lines1 = n1.body.splitlines()
    assert lines1[:2] == ["query failed", "Exception: OperationalError: no such table: x"]
    # the latest line's exception, cleaned like other log text and on one line
    assert "Exception: TimeoutError: [31mread timed out later" in n2.body.splitlines()  # as clean_text does
    assert "\x1b" not in n2.body and "\x07" not in n2.body
    assert "Exception" not in n3.body and "Exception" not in n4.body


def test_exception_line_is_capped() -> None:
    e = make_engine()
    n = notice_for(e, ev(0, "db", exception="E: " + "x" * 2000))
    assert n is not None
    (line,) = [ln for ln in n.body.splitlines() if ln.startswith("Exception: ")]
    assert len(line) == len("Exception: ") + MAX_EXCEPTION and line.endswith("…")
