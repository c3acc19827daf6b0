"""A process with SQLite connections to the store never drops their locks.

POSIX advisory locks belong to the process and the file: closing ANY descriptor of the
database file drops every lock the process holds on it, SQLite's included. The header
check (``runstate._check_header``) read the file through a descriptor of its own at every
``Journal()``, and the daemon opens one per API request: its writer then looked gone to
the next process that closed its last connection (a CLI command), which checkpointed and
deleted the ``-wal`` under the running daemon. Later commits went to the deleted file:
lost at the next start, and readers found the database malformed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import append, line, wait_until
from errord.store.journal import Journal
from errord.store.runstate import check_state_dir
from errord.store.schema import DB_NAME
from test_http import TOKEN, call, http_base

# Another process (a CLI command): a read-write connection that reads, then closes. When
# it holds the last lock on the file it checkpoints and deletes the -wal, as SQLite does.
_OTHER = (
    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
    " c.execute('SELECT count(*) FROM meta').fetchall(); c.close()"
)
_READ = (
    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
    " print(c.execute(\"SELECT value FROM meta WHERE key = 'k'\").fetchone()[0])"
)


def _in_another_process(code: str, db: Path) -> str:
    return subprocess.run([sys.executable, "-c", code, str(db)], check=True, capture_output=True, text=True).stdout


@pytest.mark.parametrize(
    "second",
    [
        pytest.param(lambda d: Journal(d, readonly=True).close(), id="a reader (an API request)"),
        pytest.param(lambda d: Journal(d, durable=False).close(), id="a writer (the MongoDB writer, a notify worker)"),
        pytest.param(lambda d: check_state_dir(d, DB_NAME), id="the state_dir check"),
    ],
)
def test_opening_the_store_again_in_the_writers_process_keeps_its_locks(tmp_path: Path, second: Any) -> None:
    writer = Journal(tmp_path)
    writer.set_meta("k", "before")
    for _ in range(3):
        second(tmp_path)
    _in_another_process(_OTHER, tmp_path / DB_NAME)
    assert (tmp_path / f"{DB_NAME}-wal").exists()  # the other process did not take the writer for gone
    writer.set_meta("k", "after")
    assert _in_another_process(_READ, tmp_path / DB_NAME).strip() == "after"  # written to the file readers see
    writer.close()


def test_a_zero_filled_store_is_still_refused_before_the_first_connection(tmp_path: Path) -> None:
    Journal(tmp_path).close()
    other = tmp_path / "other"
    other.mkdir()
    (other / DB_NAME).write_bytes(b"\0" * 8192)
    with pytest.raises(Exception, match="zero-filled"):
        Journal(other)


def _locked_by(pid: int, path: Path) -> bool:
    """``pid`` holds a POSIX lock on ``path`` (/proc/locks: the kernel's view, not SQLite's)."""
    st = path.stat()
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino} "
    return any(f" {pid} {where}" in row for row in Path("/proc/locks").read_text().splitlines())


def test_api_reads_and_a_cli_command_do_not_cut_the_running_daemon_off_its_journal(
    make_errord: Any, tmp_path: Path
) -> None:
    e = make_errord(http={"listen": "127.0.0.1:0", "token": TOKEN})
    e.start()
    assert e.proc is not None
    base = http_base(e)
    log = tmp_path / "logs" / "app.jsonl"
    db = e.run_config().state_dir / DB_NAME
    append(log, line("db_down", msg="down"))
    wait_until(lambda: "db_down" in {r["code"] for r in e.history()}, 30, lambda: str(e.history()))
    assert _locked_by(e.proc.pid, db)  # the daemon's connection holds its shared lock
    for _ in range(5):
        assert call(base, "GET", "/api/v1/active")[0] == 200  # each opens the store in the daemon's process
    assert call(base, "GET", "/api/v1/status")[0] == 200
    assert _locked_by(e.proc.pid, db)  # ... still: nothing in the daemon closed a descriptor of its own on it
    e.cli("ack", "db_down", "--reason", "on it")  # a CLI process: a read-write connection, closed at its end
    assert (db.parent / f"{DB_NAME}-wal").exists()
    append(log, line("net_down", msg="net"))
    wait_until(lambda: "net_down" in {r["code"] for r in e.history()}, 30, lambda: str(e.history()))
    e.kill()  # what the daemon committed after the CLI command is durable, in the file everyone reads
    e.start()
    assert {r["code"] for r in e.json("active")} == {"db_down", "net_down"}
    e.stop()
