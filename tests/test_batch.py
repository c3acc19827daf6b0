"""batch.Batch: one step reads, parses, feeds, runs the notice policy and commits the
positions, incidents and notices together, or rolls all of it back (CONTRACT §7). Real
files, a real Tailer and a real Journal; the journal refuses by a lock another writer holds."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import errord.batch as batch_mod
from conftest import append, line, write_config
from errord.batch import Batch, Committed
from errord.engine import Engine
from errord.errors import JournalError
from errord.health import BatchTally, Health
from errord.model import Kind
from errord.policy.pipeline import standard_policy
from errord.policy.route import STDERR_TARGET, Router
from errord.settings import Settings
from errord.sources.tail import Tailer
from errord.store.journal import Journal


@dataclass
class Parts:
    batch: Batch
    journal: Journal
    tailer: Tailer
    log: Path
    published: list[BatchTally]


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[Callable[..., Parts]]:
    made: list[Parts] = []

    async def build(**kw: object) -> Parts:
        (tmp_path / "logs").mkdir(exist_ok=True)
        log = tmp_path / "logs" / "app.jsonl"
        log.touch()
        cfg = write_config(
            tmp_path / "errord.toml",
            server_id="h",
            state_dir=str(tmp_path / "state"),
            sources=[{"path": str(tmp_path / "logs" / "*.jsonl"), "start_at": "beginning", "max_line_bytes": 256}],
        )
        config = Settings.load(cfg, environ={}).to_run()
        journal = Journal(config.state_dir, busy_timeout=0.2)
        tailer = Tailer(config.sources, [], first_start=True, scan_interval=0.05)
        await tailer.open()
        engine = Engine(config, scope=config.scope, server_id=config.server_id, node_name=config.node_name)
        published: list[BatchTally] = []
        health = Health()
        health.started()
        batch = Batch(
            tailer, engine, standard_policy(Router()), journal, config, health=health, publish=published.append, **kw
        )  # type: ignore[arg-type]
        p = Parts(batch, journal, tailer, log, published)
        made.append(p)
        return p

    yield build  # type: ignore[misc]
    for p in made:
        await p.tailer.close()
        p.journal.close()


def stored_offset(journal: Journal) -> int:
    return sum(p.offset for p in journal.positions())


def queued(journal: Journal) -> list[tuple[str, str, str]]:
    """(target, notice type, title) of every delivery in the outbox, oldest first."""
    db = sqlite3.connect(journal.path)
    try:
        return db.execute(
            "SELECT d.target, n.type, n.title FROM deliveries d JOIN notices n ON n.id = d.notice_id ORDER BY d.id"
        ).fetchall()
    finally:
        db.close()


async def test_one_step_commits_positions_incidents_and_notices_together(parts) -> None:  # type: ignore[no-untyped-def]
    p = await parts(count_kinds=True)
    append(p.log, line("db_down", msg="down"), line("db_down"), line(msg="plain"), line(clear="db_down"))
    await p.tailer.wait(1.0)
    assert p.batch.step() == Committed(True, notices=2, incidents=1)  # failure + resolve, one incident
    assert stored_offset(p.journal) == p.log.stat().st_size
    (inc,) = p.journal.history()
    assert (inc.code, inc.occurrences, inc.active) == ("db_down", 2, False)
    assert [(target, kind) for target, kind, _ in queued(p.journal)] == [
        (STDERR_TARGET, "failure"),
        (STDERR_TARGET, "success"),
    ]
    (tally,) = p.published
    assert sum(tally.lines.values()) == 4 and p.batch.lines_read == 4
    assert tally.kinds == {Kind.NEW: 1, Kind.REPEAT: 1, Kind.CLEAR: 1}
    assert p.batch.step() is None  # nothing left to read


async def test_a_refused_commit_rolls_back_everything_and_backs_off(parts, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(batch_mod, "RETRY_MIN", 0.25)
    p = await parts()
    append(p.log, line("db_down"))
    await p.tailer.wait(1.0)
    locker = sqlite3.connect(p.journal.path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        assert p.batch.step() == Committed(False, 0, 0)
        assert p.batch.retry_delay == 0.25
        assert p.batch.engine.active() == {}  # the engine rolled back
        assert not p.batch.health.check()[0]
        assert p.batch.step() == Committed(False, 0, 0)  # the same line again: the source rolled back
        assert p.batch.retry_delay == 0.5  # doubling (backoff.backoff)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert p.published == []  # a refused batch is never published
    assert p.batch.step() == Committed(True, notices=1, incidents=1)
    assert p.batch.retry_delay == 0.0 and p.batch.health.check()[0]
    (inc,) = p.journal.active()
    assert inc.occurrences == 1  # read three times, counted once
    assert stored_offset(p.journal) == p.log.stat().st_size
    assert len(p.published) == 1


async def test_skipped_lines_are_counted_and_warned_once_a_minute(parts, caplog) -> None:  # type: ignore[no-untyped-def]
    p = await parts()
    append(p.log, b"not json\n", line("x", msg="m" * 300), line("y"))
    await p.tailer.wait(1.0)
    with caplog.at_level(logging.WARNING, logger="errord.batch"):
        assert p.batch.step() == Committed(True, notices=1, incidents=1)
        append(p.log, b"still not json\n")
        await p.tailer.wait(1.0)
        assert p.batch.step() == Committed(True, notices=0, incidents=0)
    (warned,) = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert f" line(s) in {p.log} (first at offset 0: not_object); further warnings" in warned
    (pos,) = p.journal.positions()
    assert (pos.lines_read, pos.lines_skipped) == (4, 3)


async def test_reconfigure_takes_effect_at_the_next_step(parts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = await parts()
    cfg = write_config(
        tmp_path / "new.toml",
        server_id="h2",
        state_dir=str(tmp_path / "state"),
        sources=[{"path": str(tmp_path / "logs" / "*.jsonl"), "app": "api"}],
    )
    p.batch.configure(Settings.load(cfg, environ={}).to_run())
    append(p.log, line("db_down"))
    await p.tailer.wait(1.0)
    assert p.batch.step() == Committed(True, notices=1, incidents=1)
    ((_, _, title),) = queued(p.journal)
    (inc,) = p.journal.active()
    assert inc.app == "api"  # the new source's parser
    assert "h2" in title  # the new host name in the policy's context


# -- held batches (issue 13: the commit cadence while following) ------------------------


async def settled(p: Parts) -> int:
    """A first batch commits the file's identity (a new file is never held); returns the
    offset committed."""
    append(p.log, line(msg="first"))
    await p.tailer.wait(1.0)
    assert p.batch.step(hold=60.0) == Committed(True, 0, 0)  # not held: the file is new
    p.published.clear()
    return stored_offset(p.journal)


async def test_a_batch_that_notifies_nobody_is_held_and_committed_with_the_next_notice(parts) -> None:  # type: ignore[no-untyped-def]
    """With a hold, silent lines (repeats, notification: false, plain lines) wait in an
    open batch; the first line that notifies commits all of it in ONE transaction."""
    p = await parts()
    first = await settled(p)
    append(p.log, line("quiet", notification=False), line(msg="plain"))
    await p.tailer.wait(1.0)
    assert p.batch.step(hold=60.0) == Committed(True, 0, 0, held=True)
    assert stored_offset(p.journal) == first and p.journal.active() == [] and p.published == []
    assert p.batch.due_in() is not None
    append(p.log, line("quiet", notification=False))
    await p.tailer.wait(1.0)
    assert p.batch.step(hold=60.0) == Committed(True, 0, 0, held=True)  # read on into the same batch
    append(p.log, line("db_down"))
    await p.tailer.wait(1.0)
    assert p.batch.step(hold=60.0) == Committed(True, notices=1, incidents=2)  # never held: a notice
    assert stored_offset(p.journal) == p.log.stat().st_size
    assert sorted((i.code, i.occurrences) for i in p.journal.active()) == [("db_down", 1), ("quiet", 2)]
    assert len(p.published) == 1 and sum(p.published[0].lines.values()) == 4
    assert p.batch.due_in() is None and p.batch.step(hold=60.0) is None


async def test_a_backlog_is_committed_batch_after_batch_never_held(parts) -> None:  # type: ignore[no-untyped-def]
    """Reads stop at a line end, so four of them fall just short of BATCH_BYTES: a step
    that used its whole read budget on a backlog must still commit (not hold), else the
    daemon sleeps READ_GAP once per batch of a backlog (issue 13's bulk-ingest regression)."""
    from errord.batch import BATCH_BYTES

    p = await parts()
    first = await settled(p)
    quiet = line("quiet", notification=False, msg="x" * 150)
    append(p.log, *([quiet] * (BATCH_BYTES // len(quiet) + 5000)))
    await p.tailer.wait(1.0)
    done = p.batch.step(hold=60.0)
    assert done == Committed(True, 0, 1)  # committed at once: there is more to read
    assert BATCH_BYTES - (1 << 20) < stored_offset(p.journal) - first < BATCH_BYTES
    assert p.batch.step(hold=60.0) == Committed(True, 0, 0, held=True)  # the tail of it: drained, held


async def test_a_held_batch_is_committed_once_its_hold_is_over_or_flushed(parts) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    p = await parts()
    await settled(p)
    append(p.log, line(msg="plain"))
    await p.tailer.wait(1.0)
    assert p.batch.step(hold=0.05) == Committed(True, 0, 0, held=True)
    await asyncio.sleep(0.1)
    assert p.batch.due_in() == 0.0
    assert p.batch.step(hold=0.05) == Committed(True, 0, 0)  # nothing new, but due
    assert stored_offset(p.journal) == p.log.stat().st_size
    append(p.log, line(msg="plain"))
    await p.tailer.wait(1.0)
    assert p.batch.step(hold=60.0) == Committed(True, 0, 0, held=True)
    assert p.batch.flush() == Committed(True, 0, 0)  # stop / reload
    assert stored_offset(p.journal) == p.log.stat().st_size and p.batch.flush() is None


async def test_a_refused_commit_of_a_held_batch_reads_all_of_it_again(parts) -> None:  # type: ignore[no-untyped-def]
    p = await parts()
    first = await settled(p)
    append(p.log, line("quiet", notification=False))
    await p.tailer.wait(1.0)
    assert p.batch.step(hold=60.0) == Committed(True, 0, 0, held=True)
    append(p.log, line("db_down"))
    await p.tailer.wait(1.0)
    locker = sqlite3.connect(p.journal.path, timeout=0)
    locker.execute("BEGIN IMMEDIATE")
    try:
        assert p.batch.step(hold=60.0) == Committed(False, 0, 0)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert p.journal.active() == [] and stored_offset(p.journal) == first
    assert p.batch.step(hold=60.0) == Committed(True, notices=1, incidents=2)  # both lines, once each
    assert sorted((i.code, i.occurrences) for i in p.journal.active()) == [("db_down", 1), ("quiet", 1)]


async def test_a_new_file_is_never_held(parts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A batch that starts following a file commits at once: after a crash the file's
    identity (where it is, how far it was read) must be known, even if it is renamed
    while errord is down."""
    p = await parts()
    await settled(p)
    other = tmp_path / "logs" / "other.jsonl"
    append(other, line(msg="plain"))
    await p.tailer.wait(1.0)
    await p.tailer.wait(1.0)  # the scan that finds it
    assert p.batch.step(hold=60.0) == Committed(True, 0, 0)
    assert {pos.path for pos in p.journal.positions()} == {str(p.log), str(other)}


async def test_a_truncated_file_is_never_held(parts) -> None:  # type: ignore[no-untyped-def]
    """A file truncated (no copy kept) while a batch is held: what the batch read of the
    old content exists nowhere else, so the batch commits at once; were it held, a
    kill -9 before its hold ended would lose those lines (the restart finds only the new
    content). A "crash" here: a fresh tailer and engine on what the journal holds."""
    p = await parts()
    await settled(p)
    append(p.log, line("before", notification=False), line("before", notification=False))
    await p.tailer.wait(1.0)
    assert p.batch.step(hold=60.0) == Committed(True, 0, 0, held=True)
    p.log.write_bytes(line("after", notification=False))  # truncated and written anew
    await p.tailer.wait(1.0)
    assert p.batch.step(hold=60.0) == Committed(True, 0, 2)  # not held: the content changed
    # crash now: nothing flushed; a new tailer and engine start from the journal
    config = p.batch.config
    tailer = Tailer(config.sources, p.journal.positions(), first_start=False, scan_interval=0.05)
    await tailer.open()
    try:
        engine = Engine(config, scope=config.scope, server_id=config.server_id, node_name=config.node_name)
        engine.restore(p.journal.iter_active())
        again = Batch(tailer, engine, standard_policy(Router()), p.journal, config, health=p.batch.health)
        again.step()
        assert sorted((i.code, i.occurrences) for i in p.journal.active()) == [("after", 1), ("before", 2)]
    finally:
        await tailer.close()


async def test_a_file_deleted_while_its_batch_is_held_commits_it_at_once(parts) -> None:  # type: ignore[no-untyped-def]
    """Deleted with nothing more to read: the held lines are in no file after a restart,
    so the step that sees the deletion commits them (no read needed)."""
    p = await parts()
    await settled(p)
    append(p.log, line("before", notification=False), line("before", notification=False))
    await p.tailer.wait(1.0)
    assert p.batch.step(hold=60.0) == Committed(True, 0, 0, held=True)
    p.log.unlink()
    await p.tailer.wait(1.0)
    assert p.batch.step(hold=60.0) == Committed(True, 0, 1)
    assert sorted((i.code, i.occurrences) for i in p.journal.active()) == [("before", 2)]


def titles_and_bodies(journal: Journal) -> list[tuple[str, str, str]]:
    db = sqlite3.connect(journal.path)
    try:
        return db.execute("SELECT type, title, body FROM notices ORDER BY id").fetchall()
    finally:
        db.close()


async def test_an_open_incident_leaves_its_message_in_the_journal_once_committed(parts) -> None:  # type: ignore[no-untyped-def]
    """Issue 13: a committed open incident holds no copy of its first message; it reads it
    from its row when a notice (or anything else) asks, and the row keeps it."""
    p = await parts()
    first = "db down: connection refused (the first line's message)"
    append(
        p.log,
        line("db_down", msg=first, time="2026-01-01T00:00:00Z", re_alert_time=60),
        line("quiet", msg="q1", notification=False),
        line("gone", msg="g1"),
        line(clear="gone"),
    )
    await p.tailer.wait(1.0)
    engine = p.batch.engine
    assert p.batch.step() == Committed(True, notices=3, incidents=3)
    live = engine.active()
    assert set(live) == {"db_down", "quiet"}
    for inc in live.values():
        assert inc.held_message is None and inc.message_of == p.journal.message_of
    assert live["db_down"].message == first and live["quiet"].message == "q1"
    stored = {i.code: i for i in p.journal.active()}
    for code, inc in live.items():  # the same record as the journal's, message included
        assert inc.record() == stored[code].record() and inc == stored[code]
        assert inc.copy().message == inc.message
    # a later batch rewrites the rows (no message passed): they keep theirs; a re-alert's
    # notice shows the first message, read back from the journal
    append(p.log, line("db_down", msg="later", time="2026-01-01T00:02:00Z"), line("quiet", msg="q2"))
    await p.tailer.wait(1.0)
    assert p.batch.step() == Committed(True, notices=2, incidents=2)  # db_down's re-alert, quiet's announce
    assert {i.code: i.message for i in p.journal.active()} == {"db_down": first, "quiet": "q1"}
    notes = titles_and_bodies(p.journal)
    assert [kind for kind, _, _ in notes] == ["failure", "failure", "success", "warning", "failure"]
    assert first in notes[3][2] and "later" in notes[3][2]
    assert "q1" in notes[4][2]
    assert live["db_down"].occurrences == 2 and live["db_down"].held_message is None


async def test_a_new_incident_keeps_its_message_until_its_batch_is_committed(parts) -> None:  # type: ignore[no-untyped-def]
    p = await parts()
    append(p.log, line("db_down", msg="first words"))
    await p.tailer.wait(1.0)
    locker = sqlite3.connect(p.journal.path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # the commit is refused: nothing of the batch stays
    try:
        assert p.batch.step() == Committed(False, 0, 0)
        assert p.batch.engine.active() == {}
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    p.batch.retry_delay = 0.0
    # the retry reads the line again; the incident holds its message until the commit,
    # so the failure notice made before the row exists says it
    p.batch.engine.begin()
    assert p.batch.step() == Committed(True, notices=1, incidents=1)
    (inc,) = p.batch.engine.active().values()
    assert inc.held_message is None and inc.message == "first words"
    (note,) = titles_and_bodies(p.journal)
    assert "first words" in note[2]


async def test_a_restart_reads_no_messages_and_a_missing_row_is_a_clear_error(parts) -> None:  # type: ignore[no-untyped-def]
    p = await parts()
    append(p.log, line("db_down", msg="first words"), line("disk_full", msg="no space"))
    await p.tailer.wait(1.0)
    assert p.batch.step() == Committed(True, notices=2, incidents=2)
    restored = {i.code: i for i in p.journal.iter_active(messages=False)}
    assert {c: i.held_message for c, i in restored.items()} == {"db_down": None, "disk_full": None}
    assert {c: i.message for c, i in restored.items()} == {"db_down": "first words", "disk_full": "no space"}
    assert {c: i.held_message for c, i in ((i.code, i) for i in p.journal.iter_active())} == {
        "db_down": "first words",
        "disk_full": "no space",
    }
    db = sqlite3.connect(p.journal.path)
    with db:
        db.execute("DELETE FROM incidents WHERE code = 'disk_full'")
    db.close()
    with pytest.raises(JournalError, match=r"message: incident [0-9a-f]{32} \(disk_full\) has no row"):
        _ = restored["disk_full"].message
