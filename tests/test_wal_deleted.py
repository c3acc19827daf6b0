"""Issue 11.12: deleting ``errord.db-wal`` after a crash re-sends what only the WAL held.

This is a documented hole (README, Guarantees), not a fix: SQLite cannot tell that
committed transactions are missing when their WAL is deleted, so errord cannot either.
The test pins down exactly what happens, so the README's sentence stays true: the
positions, incidents and delivery marks committed since the last checkpoint are gone, the
lines after that point are read again, and the notices already delivered from them are
sent a second time; nothing before the checkpoint repeats. (Since issue 13 the notify
worker syncs the WAL into the database whenever a target's queue drains, so what only the
WAL holds is the work of a burst still in progress: here a target that accepts five
notices and then refuses the rest.)
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from chaos import State, start, wait_until
from conftest import append, line
from test_daemon import helper_pids

pytestmark = pytest.mark.slow


def test_deleting_the_wal_after_a_crash_resends_what_only_it_recorded(make_errord, receiver, tmp_path: Path) -> None:
    e = make_errord(notify=[{"url": receiver.url("/wal")}])
    state = State(tmp_path / "state")
    log = tmp_path / "logs" / "app.jsonl"
    before = [f"before{i}" for i in range(5)]
    after = [f"after{i}" for i in range(10)]

    # Phase 1: five notices delivered, then a clean stop (the last connection to close
    # checkpoints the WAL into errord.db).
    start(e, state)
    append(log, *[line(c) for c in before])
    receiver.wait_for(5, timeout=20)
    wait_until(lambda: state.caught_up([log]) and state.pending_notices() == 0, 15, "phase 1 recorded")
    assert e.stop() == 0
    wal = tmp_path / "state" / "errord.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0, "a clean stop leaves no WAL to lose"

    # Phase 2: a burst in progress. The target accepts five notices, then refuses; those
    # five are delivered and recorded, and the queue has not drained, so their records and
    # the batch that made them live only in the WAL when errord crashes.
    receiver.script = [200] * 5
    receiver.status = 503
    start(e, state)
    assert e.proc is not None
    append(log, *[line(c) for c in after])
    receiver.wait_for(10, timeout=20)
    wait_until(lambda: state.pending_notices() == 5, 15, "five recorded, five refused")
    (helper,) = wait_until(lambda: helper_pids(e.proc.pid), 5, "the notify helper")
    os.kill(e.proc.pid, signal.SIGSTOP)  # no restart of the helper, no clean close anywhere
    os.kill(helper, signal.SIGKILL)
    e.kill()
    wait_until(lambda: not helper_pids(e.proc.pid) and not Path(f"/proc/{helper}").exists(), 5, "both gone")
    assert wal.exists() and wal.stat().st_size > 0, "the crash left the last batches in the WAL"

    # The fault: a cleanup script deletes the WAL (and its index).
    wal.unlink()
    (tmp_path / "state" / "errord.db-shm").unlink(missing_ok=True)

    e.proc = None
    receiver.status = 200
    start(e, state)
    receiver.wait_for(20, timeout=30)
    wait_until(lambda: state.caught_up([log]) and state.pending_notices() == 0, 15, "the re-read recorded")
    time.sleep(0.5)  # nothing more arrives
    sent = Counter(r.body["title"].split()[1] for r in receiver.delivered)
    assert len(receiver.delivered) == 20, sent
    assert {c: sent[c] for c in before} == dict.fromkeys(before, 1)  # checkpointed: never repeated
    # delivered with their record only in the WAL: sent again; the refused ones: once
    assert {c: sent[c] for c in after} == {**dict.fromkeys(after[:5], 2), **dict.fromkeys(after[5:], 1)}, sent
    assert state.occurrences() == dict.fromkeys(before + after, 1)  # counted once, as the file says
    assert e.stop() == 0
