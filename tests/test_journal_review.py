"""Review of the journal source (issue 18): a reload that renumbers a quiet journal
source, and a one-shot journalctl cancelled mid-run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
import time
from pathlib import Path

from errord.sources.journal import JournalReader
from errord.sources.journalpos import JournalState, meta_key, run_once
from errord.sources.multi import Inputs
from test_journal_source import Fed, _messages, _source, needs_journal_files, write_entries


async def _drain(inputs: Inputs, meta: dict[str, str], seconds: float) -> list[bytes]:
    """Read and commit what ``inputs`` hands on for ``seconds``, as the batch does."""
    got: list[bytes] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for chunk in inputs.read(1 << 20):
            lines = chunk.data.splitlines()
            got += lines
            inputs.account(chunk.key, len(lines), 0)
        cp = inputs.checkpoint()
        meta.update(cp.meta)
        inputs.committed()
        await asyncio.sleep(0.05)
    return got


@needs_journal_files
async def test_a_quiet_journal_source_moved_by_a_reload_is_not_read_again_after_a_restart(tmp_path: Path) -> None:
    """[A, B] reloaded as [B]: B's cursor must be committed as journal.0 at once, not only
    with B's next entry; else a restart reads B's journal again from start_at."""
    da, db = tmp_path / "a", tmp_path / "b"
    da.mkdir()
    db.mkdir()
    write_entries(da / "x.journal", [{"MESSAGE": "a0"}])
    write_entries(db / "x.journal", [{"MESSAGE": "b0"}, {"MESSAGE": "b1"}])
    a, b = _source(da), _source(db)
    meta: dict[str, str] = {}
    inputs = Inputs([a, b], [], first_start=True, load_meta=meta.get)
    await inputs.open()
    try:
        got = await _drain(inputs, meta, 2.0)
        assert sorted(_messages(got)) == ["a0", "b0", "b1"]
        inputs.reconfigure([b])
        assert await _drain(inputs, meta, 1.5) == []
    finally:
        await inputs.close()
    state = JournalState.load(meta.get(meta_key(0)))
    assert state is not None and state.where == b.journal.where, meta  # type: ignore[union-attr]
    again = Inputs([b], [], first_start=False, load_meta=meta.get)
    await again.open()
    try:
        assert _messages(await _drain(again, meta, 1.5)) == []
    finally:
        await again.close()


@needs_journal_files
async def test_journal_sources_reordered_while_stopped_keep_their_own_positions(tmp_path: Path) -> None:
    """[A, B] read, errord stopped, the config reordered to [B, A] (a third quiet source C
    before them): each goes on from its own cursor (a state follows its journal, as a
    file's position follows its file), nothing read again, and each is committed under its
    new index at once."""
    dirs = {n: tmp_path / n for n in "abc"}
    for d in dirs.values():
        d.mkdir()
    write_entries(dirs["a"] / "x.journal", [{"MESSAGE": "a0"}])
    write_entries(dirs["b"] / "x.journal", [{"MESSAGE": "b0"}, {"MESSAGE": "b1"}])
    a, b = _source(dirs["a"]), _source(dirs["b"])
    meta: dict[str, str] = {}
    first = Inputs([a, b], [], first_start=True, load_meta=meta.get)
    await first.open()
    try:
        assert sorted(_messages(await _drain(first, meta, 2.0))) == ["a0", "b0", "b1"]
    finally:
        await first.close()
    write_entries(dirs["a"] / "x.journal", [{"MESSAGE": "a1"}])  # while stopped
    c = _source(dirs["c"], start_at="end")
    again = Inputs([c, b, a], [], first_start=False, load_meta=meta.get)
    await again.open()
    try:
        assert _messages(await _drain(again, meta, 2.0)) == ["a1"]
    finally:
        await again.close()
    wheres = {k: JournalState.load(v).where for k, v in meta.items()}  # type: ignore[union-attr]
    assert wheres == {meta_key(0): c.journal.where, meta_key(1): b.journal.where, meta_key(2): a.journal.where}  # type: ignore[union-attr]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


async def test_a_cancelled_one_shot_journalctl_is_killed(tmp_path: Path) -> None:
    """A reload or stop cancels a cursor check or a first position mid-run: the short
    journalctl must not be left running (it would block on a full pipe for good)."""
    pidfile = tmp_path / "pid"
    fake = tmp_path / "journalctl"
    fake.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 30\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    task = asyncio.get_running_loop().create_task(run_once([str(fake), "--cursor=x"]))
    for _ in range(200):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        await asyncio.sleep(0.02)
    pid = int(pidfile.read_text())
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    for _ in range(100):
        if not _alive(pid):
            break
        await asyncio.sleep(0.02)
    alive = _alive(pid)
    if alive:
        os.kill(pid, 9)
    assert not alive, "the one-shot journalctl was left running"


async def test_journalctl_stderr_is_drained_after_an_over_long_line(tmp_path: Path) -> None:
    """A stderr line over the stream's limit must not stop stderr being read: journalctl
    would block writing it, and its entries on stdout would never come."""
    fake = tmp_path / "journalctl"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys, time\n"
        "sys.stderr.write('x' * 200_000 + '\\n')\n"
        "sys.stderr.write(('warning\\n' * 100_000))\n"
        "sys.stderr.flush()\n"
        'print(\'{"__CURSOR":"s=1;i=1","MESSAGE":"after the noise"}\', flush=True)\n'
        "time.sleep(30)\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    reader = JournalReader(0, _source(tmp_path), None, lambda: None, binary=str(fake))
    await reader.open()
    try:
        assert _messages(await Fed(reader).lines(1, timeout=10)) == ["after the noise"]
    finally:
        await reader.close()
