"""store.outbox.Outbox: the notices and their deliveries, one queue per target (``journal.outbox``)."""

from __future__ import annotations

import logging

import pytest

from errord.store.journal import Journal
from test_journal import fresh_journal, make_notice, stored  # noqa: F401 - provides the "journal" fixture


def deliveries(j: Journal) -> list[tuple[int, str]]:
    return [(nid, t) for nid, t in stored(j, "SELECT notice_id, target FROM deliveries ORDER BY id")]


def test_one_delivery_per_target_key_none_is_recorded_not_sent(journal: Journal) -> None:
    # Routing is policy.route.Router's (tests/test_routing.py): the outbox takes the keys as given.
    n_ab, n_c, n_none = (
        make_notice("E1", targets=("a", "b")),
        make_notice("E2", tags=("ops",), targets=("c",)),
        make_notice("E3", tags=("nobody",), targets=()),
    )
    journal.commit([], [], [n_ab, n_c, n_none], now=1.0)
    assert deliveries(journal) == [(n_ab.id, "a"), (n_ab.id, "b"), (n_c.id, "c")]
    assert n_none.id is not None  # stored, nothing pending for it
    assert journal.outbox.pending_by_target() == {"a": 1, "b": 1, "c": 1}
    [(_, got)] = journal.outbox.due_deliveries("c", 10, now=1.0)
    assert (got.code, got.tags) == ("E2", ("ops",))


def test_due_deliveries_strict_order_and_backoff(journal: Journal) -> None:
    notes = [make_notice(f"E{i}", targets=("a", "b")) for i in range(3)]
    journal.commit([], [], notes, now=100.0)
    due = journal.outbox.due_deliveries("a", 50, now=100.0)
    assert [n.code for _, n in due] == ["E0", "E1", "E2"]
    assert [n.code for _, n in journal.outbox.due_deliveries("a", 2, now=100.0)] == ["E0", "E1"]
    assert journal.outbox.due_deliveries("a", 50, now=99.0) == []  # not yet due

    first = due[0][0]
    journal.outbox.mark_failed(first, "503", next_at=110.0)
    head = journal.outbox.head("a")
    assert head is not None and (head.id, head.attempts, head.next_at) == (first, 1, 110.0)
    # The head is backing off: nothing newer may overtake it.
    assert journal.outbox.due_deliveries("a", 50, now=105.0) == []
    # Another target is not held up.
    assert [n.code for _, n in journal.outbox.due_deliveries("b", 50, now=105.0)] == ["E0", "E1", "E2"]
    # Once due, the same order again, the failed one first.
    assert [d for d, _ in journal.outbox.due_deliveries("a", 50, now=110.0)] == [d for d, _ in due]

    journal.outbox.mark_delivered([first, due[1][0]], now=111.0)
    assert [n.code for _, n in journal.outbox.due_deliveries("a", 50, now=111.0)] == ["E2"]
    assert journal.outbox.pending_by_target() == {"a": 1, "b": 3}
    journal.outbox.mark_delivered([due[2][0]], now=112.0)
    assert journal.outbox.head("a") is None
    assert journal.outbox.due_deliveries("a", 50, now=200.0) == []


def test_drop_target_deliveries(journal: Journal, caplog: pytest.LogCaptureFixture) -> None:
    journal.commit([], [], [make_notice("E1", targets=("a", "b")), make_notice("E2", targets=("a", "b"))], now=1.0)
    with caplog.at_level(logging.WARNING, logger="errord.store.outbox"):
        assert journal.outbox.drop_targets({"a"}) == 2
    assert journal.outbox.pending_by_target() == {"a": 2}
    assert "dropped its 2 pending" in caplog.text
    assert journal.outbox.drop_targets({"a"}) == 0


def test_prune(journal: Journal) -> None:
    day = 86400.0
    old_sent, old_pending = make_notice("OLD1", targets=("a",)), make_notice("OLD2", targets=("a",))
    journal.commit([], [], [old_sent, old_pending], now=0.0)
    [(d_sent, _), _] = journal.outbox.due_deliveries("a", 50, now=0.0)
    journal.outbox.mark_delivered([d_sent], now=1.0)
    recent = make_notice("NEW", targets=("a",))
    journal.commit([], [], [recent], now=9 * day)
    [(d_recent, _)] = [x for x in journal.outbox.due_deliveries("a", 50, now=9 * day) if x[1].code == "NEW"]
    journal.outbox.mark_delivered([d_recent], now=9 * day)

    assert journal.outbox.prune(now=10 * day) == 1
    codes = [r[0] for r in stored(journal, "SELECT code FROM notices ORDER BY id")]
    assert codes == ["OLD2", "NEW"]  # still pending: kept however old; recent: kept
    assert journal.outbox.pending() == 1
    assert journal.outbox.prune(now=10 * day) == 0
