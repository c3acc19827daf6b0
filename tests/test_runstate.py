"""runstate: the lock and whether a state_dir can be used (issue 11.4, 11.7).

A state_dir that held state (``errord.state``, a ``-wal``) but whose database is now empty
or missing, or a database that is zero-filled or no SQLite file, is refused with one line
and exit 2 by `errord run`, `errord status` and `errord check-config`, as a file where the
folder should be; nothing is created or changed there meanwhile.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from conftest import Errord, append, line
from errord.errors import StateError
from errord.store.journal import Journal
from errord.store.runstate import STATE_MARKER, check_state_dir


def one_line(res) -> str:  # type: ignore[no-untyped-def]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


def ran_with_state(e: Errord, tmp_path: Path) -> Path:
    """A daemon that read 3 lines (2 incidents open) and stopped cleanly; the state_dir."""
    log = tmp_path / "logs" / "app.jsonl"
    append(log, line("a"), line("b"), line("a"))
    e.start()
    e.wait_caught_up()
    assert e.stop() == 0
    state = tmp_path / "state"
    assert (state / STATE_MARKER).exists() and not (state / "errord.db-wal").exists()
    return state


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["zeroed", "missing"])
def test_a_lost_database_is_refused_not_started_afresh(make_errord, tmp_path: Path, fault: str) -> None:
    e = make_errord()
    state = ran_with_state(e, tmp_path)
    db = state / "errord.db"
    if fault == "zeroed":
        os.truncate(db, 0)  # what a full disk did
    else:
        db.unlink()
    for cmd in ("run", "status", "check-config"):
        res = e.cli(cmd, check=False, timeout=30)
        msg = one_line(res)
        assert res.returncode == 2, (cmd, res.stderr)
        assert ("is empty (0 bytes)" if fault == "zeroed" else "errord.db is missing") in msg, msg
        assert f"held errord's state ({STATE_MARKER})" in msg and "start fresh on purpose" in msg, msg
    assert (db.stat().st_size == 0) if fault == "zeroed" else not db.exists()  # nothing recreated
    # starting fresh on purpose, as the line says: move the errord.* files away
    lost = tmp_path / "lost"
    lost.mkdir()
    for f in state.glob("errord.*"):
        f.rename(lost / f.name)
    e.start()
    append(tmp_path / "logs" / "app.jsonl", line("c"))
    status = e.wait_caught_up()
    assert status["active_incidents"] == 3  # a fresh store read the file again from its start
    assert e.stop() == 0


GARBAGE = {
    "zero-filled": lambda size: b"\0" * size,  # a full disk or a crash: pages allocated, never written
    "not an SQLite database": lambda size: b"#!/bin/sh\n" + b"x" * (size - 10),  # overwritten by another file
    "unreadable (file is not a database)": lambda size: b"SQLite format 3\0" + b"\xa5" * (size - 16),
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(GARBAGE))
@pytest.mark.parametrize("marker", [True, False], ids=["marker", "no-marker"])
def test_a_database_that_is_no_database_is_refused(make_errord, tmp_path: Path, fault: str, marker: bool) -> None:
    """Review of issue 11.4: a non-empty errord.db that is zero-filled or not an SQLite file
    exited 1 with "file is not a database" (systemd restarts on that), and `check-config`
    passed. Like the 0-byte case: one line, exit 2, in `run`, `status` and `check-config`,
    and the file is left as it is."""
    e = make_errord()
    state = ran_with_state(e, tmp_path)
    db = state / "errord.db"
    db.write_bytes(GARBAGE[fault](db.stat().st_size))
    if not marker:  # a store from before the marker: the file alone says it is no store
        (state / STATE_MARKER).unlink()
    before = db.read_bytes()
    for cmd in ("run", "status", "check-config"):
        res = e.cli(cmd, check=False, timeout=30)
        msg = one_line(res)
        assert res.returncode == 2, (cmd, res.stderr)
        assert f"errord.db is {fault}" in msg and "start fresh on purpose" in msg, (cmd, msg)
        assert (f"held errord's state ({STATE_MARKER})" in msg) == marker, msg
    assert db.read_bytes() == before  # nothing written over it


@pytest.mark.slow
def test_a_state_dir_that_is_a_file_is_refused_in_one_line(make_errord, tmp_path: Path) -> None:
    """Issue 11.7: a traceback (FileExistsError) at start; `status` exited 0 with empty state."""
    path = tmp_path / "state-file"
    path.write_text("not a folder\n")
    e = make_errord(state_dir=str(path))
    for cmd in ("run", "status", "check-config"):
        res = e.cli(cmd, check=False, timeout=30)
        msg = one_line(res)
        assert res.returncode == 2, (cmd, res.stderr)
        assert f"state_dir {path} is not a folder" in msg, msg
    assert path.read_text() == "not a folder\n"
    # and a path that goes through a file
    e = make_errord("nested", state_dir=str(path / "sub"))
    res = e.cli("run", check=False, timeout=30)
    assert res.returncode == 2 and "is a file, not a folder" in one_line(res), res.stderr


def test_a_wal_without_its_database_is_held_state(tmp_path: Path) -> None:
    """A store from before the marker existed, killed (its -wal left) and then zeroed."""
    with Journal(tmp_path) as j:
        j.set_meta("x", "1")
    (tmp_path / STATE_MARKER).unlink()
    (tmp_path / "errord.db-wal").write_bytes(b"\0" * 4096)
    os.truncate(tmp_path / "errord.db", 0)
    with pytest.raises(StateError, match=r"held errord's state \(errord.db-wal\) but errord.db is empty"):
        Journal(tmp_path)
    with pytest.raises(StateError):
        Journal(tmp_path, readonly=True)
    (tmp_path / "errord.db-wal").unlink()  # nothing shows state any more: a first start
    assert check_state_dir(tmp_path, "errord.db") == []


def test_a_database_replaced_by_an_empty_one_is_refused(tmp_path: Path) -> None:
    with Journal(tmp_path) as j:
        j.set_meta("x", "1")
    (tmp_path / "errord.db").unlink()
    sqlite3.connect(tmp_path / "errord.db").execute("CREATE TABLE other (x)").connection.close()
    with pytest.raises(StateError, match="a database without errord's tables"):
        Journal(tmp_path)
    with pytest.raises(StateError, match="a database without errord's tables"):
        Journal(tmp_path, readonly=True)


def test_the_marker_is_written_once_the_store_exists(tmp_path: Path) -> None:
    state = tmp_path / "s"
    assert check_state_dir(state, "errord.db") == []  # not there yet: a first start
    with Journal(state):
        pass
    marker = state / STATE_MARKER
    assert marker.exists() and marker.stat().st_mode & 0o077 == 0
    marker.unlink()  # a store from before the marker: it gets one at its next open
    with Journal(state):
        pass
    assert marker.exists()
    with Journal(state, readonly=True):  # a reader never writes it
        marker.unlink()
    with Journal(state, readonly=True):
        pass
    assert not marker.exists()


def test_a_fresh_store_another_connection_is_creating_is_not_taken_for_lost(tmp_path: Path) -> None:
    """The daemon and its notify workers open a new store at once: the first switches the
    new file to WAL and writes; another that sees that -wal before the schema is committed
    must build on it, not refuse it (only the marker, written after the schema, counts)."""
    state = tmp_path / "s"
    state.mkdir()
    first = sqlite3.connect(state / "errord.db", isolation_level=None)
    try:
        first.execute("PRAGMA journal_mode = WAL")
        first.execute("CREATE TABLE scratch (x)")  # frames in the -wal, user_version still 0
        assert (state / "errord.db-wal").stat().st_size > 0
        with Journal(state) as j:
            j.set_meta("m", "1")
    finally:
        first.close()
    assert (state / STATE_MARKER).exists()
