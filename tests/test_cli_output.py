"""Readable CLI output: aligned tables with relative times on a terminal, absolute times
when piped, and ``--json`` keys that scripts can rely on (CONTRACT §4, §6)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import append, line
from errord.journal import Journal
from errord.model import INCIDENT_FIELDS, Incident
from errord.views import human_bytes, incidents_table, stamp

NOW = 1_768_400_000.0  # 2026-01-14T14:13:20Z


def incident(code: str, start_ago: float, *, cleared_ago: float | None = None, message: str = "m",
             app: str | None = "shop") -> Incident:
    start = NOW - start_ago
    return Incident(
        code=code, message=message, start_time=start, last_log_time=NOW - 60, server_id="h", node_name="",
        active=cleared_ago is None, cleared_at=None if cleared_ago is None else NOW - cleared_ago,
        created_at=start, updated_at=start, occurrences=12, alerts_sent=3, last_alert_time=start,
        app=app, incident_id=code * 4,
    )


def test_table_relative_times_and_alignment() -> None:
    out = incidents_table([incident("db_down", 3 * 3600 + 12 * 60), incident("disk_full", 2 * 86400, cleared_ago=86400)],
                          NOW, relative=True)
    header, first, second = out.splitlines()
    assert header.split() == ["CODE", "APP", "STATE", "STARTED", "LAST", "SEEN", "DURATION", "COUNT", "ALERTS",
                              "MESSAGE"]
    assert "3h 12m ago" in first and "1m ago" in first and "active" in first
    assert "cleared 1d ago" in second and "2d ago" in second
    # aligned: every column starts at the same offset on every line
    for col in ("STATE", "STARTED", "DURATION", "MESSAGE"):
        at = header.index(col)
        assert first[at - 2:at] == "  " and second[at - 2:at] == "  "
    # numbers right-aligned under their header
    end = header.index("COUNT") + len("COUNT")
    assert first[end - 3:end] == " 12"


def test_table_absolute_times_when_not_relative() -> None:
    out = incidents_table([incident("db_down", 3600)], NOW, relative=False)
    assert "2026-01-14T13:13:20Z" in out and "ago" not in out
    assert stamp(None) == "-" and stamp(NOW) == "2026-01-14T14:13:20Z"


def test_message_fits_the_terminal_width() -> None:
    long = "database unreachable: " + "x" * 300
    narrow = incidents_table([incident("db_down", 60, message=long)], NOW, width=100)
    assert max(len(row) for row in narrow.splitlines()) <= 100 and narrow.rstrip().endswith("…")
    assert len(incidents_table([incident("db_down", 60, message=long)], NOW).splitlines()[1]) < 200  # 60 chars


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 1023, 1024, 40960, 3 << 30)] == ["0 B", "1023 B", "1.0 KiB", "40.0 KiB",
                                                                         "3.0 GiB"]


@pytest.fixture
def cli_state(make_errord, tmp_path: Path):  # type: ignore[no-untyped-def]
    """An Errord whose embedded store holds two incidents (no daemon needed)."""
    e = make_errord()
    now = time.time()
    j = Journal(tmp_path / "state")
    j.commit([incident("db_down", 3 * 3600 + 12 * 60), incident("disk_full", 2 * 86400, cleared_ago=86400)], [], [],
             now)
    j.close()
    append(tmp_path / "logs" / "app.jsonl", line("x"), b"junk\n")
    return e


def _tty_stdout(cmd: list[str], env: dict[str, str]) -> str:
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, env={**env, "COLUMNS": "120"}, stdout=slave, stderr=subprocess.DEVNULL)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(30) == 0
    return out.decode().replace("\r\n", "\n")


def test_history_on_a_terminal_and_piped(cli_state, errord_env: dict[str, str]) -> None:
    e = cli_state
    base = [sys.executable, "-m", "errord"]
    shown = _tty_stdout([*base, "history", "-c", str(e.config)], errord_env)
    assert "ago" in shown and "cleared" in shown
    assert max(len(row) for row in shown.splitlines()) <= 120
    piped = e.cli("history").stdout
    assert "ago" not in piped and "Z  " in piped  # absolute UTC stamps for grep and logs
    assert piped.splitlines()[0].split()[:3] == ["CODE", "APP", "STATE"]


def test_json_keys_are_stable(cli_state) -> None:
    e = cli_state
    history = e.json("history")
    assert [h["code"] for h in history] == ["db_down", "disk_full"]  # newest start first
    for h in history:
        assert list(h) == list(INCIDENT_FIELDS)
        assert h["start_time"].endswith("Z") and "T" in h["start_time"]
    assert [a["code"] for a in e.json("active")] == ["db_down"]
    status = e.json("status")
    assert {"running", "active_incidents", "pending_notices", "pending_mongo", "files"} <= set(status)
    assert set(status["files"][0]) >= {"path", "position", "size", "lines_read", "lines_skipped"}


def test_status_table_human_sizes_on_a_terminal(cli_state, errord_env: dict[str, str]) -> None:
    e = cli_state
    shown = _tty_stdout([sys.executable, "-m", "errord", "status", "-c", str(e.config)], errord_env)
    assert "daemon: not running" in shown and "open incidents: 1" in shown
    assert " B" in shown.splitlines()[-1]  # 0 B position, the size in bytes
    piped = e.cli("status").stdout
    size = (Path(e.config).parent / "logs" / "app.jsonl").stat().st_size
    row = piped.splitlines()[-1].split()
    assert row[1:4] == ["0", str(size), str(size)]  # position, size, behind: plain numbers
    assert piped.splitlines()[-2].split() == ["FILE", "POSITION", "SIZE", "BEHIND", "LINES", "SKIPPED"]
    with_json = json.loads(e.cli("status", "--json").stdout)
    assert with_json["files"][0]["size"] == size
