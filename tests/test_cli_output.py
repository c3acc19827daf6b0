"""Readable CLI output: aligned tables with relative times on a terminal, absolute times
when piped, and ``--json`` keys that scripts can rely on (CONTRACT §4, §6)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pytest

from conftest import append, line
from errord.model import INCIDENT_FIELDS, Incident
from errord.store.journal import Journal
from errord.views import human_bytes, incidents_table, stamp, table

NOW = 1_768_400_000.0  # 2026-01-14T14:13:20Z


def incident(
    code: str, start_ago: float, *, cleared_ago: float | None = None, message: str = "m", app: str | None = "shop"
) -> Incident:
    start = NOW - start_ago
    return Incident(
        code=code,
        message=message,
        start_time=start,
        last_log_time=NOW - 60,
        server_id="h",
        node_name="",
        active=cleared_ago is None,
        cleared_at=None if cleared_ago is None else NOW - cleared_ago,
        created_at=start,
        updated_at=start,
        occurrences=12,
        alerts_sent=3,
        last_alert_time=start,
        app=app,
        incident_id=code * 4,
    )


def test_table_relative_times_and_alignment() -> None:
    out = incidents_table(
        [incident("db_down", 3 * 3600 + 12 * 60), incident("disk_full", 2 * 86400, cleared_ago=86400)],
        NOW,
        relative=True,
    )
    header, first, second = out.splitlines()
    assert header.split() == [
        "CODE",
        "APP",
        "STATE",
        "STARTED",
        "LAST",
        "SEEN",
        "DURATION",
        "COUNT",
        "ALERTS",
        "MESSAGE",
    ]
    assert "3h 12m ago" in first and "1m ago" in first and "active" in first
    assert "cleared 1d ago" in second and "2d ago" in second
    # aligned: every column starts at the same offset on every line
    for col in ("STATE", "STARTED", "DURATION", "MESSAGE"):
        at = header.index(col)
        assert first[at - 2 : at] == "  " and second[at - 2 : at] == "  "
    # numbers right-aligned under their header
    end = header.index("COUNT") + len("COUNT")
    assert first[end - 3 : end] == " 12"


def test_table_absolute_times_when_not_relative() -> None:
    out = incidents_table([incident("db_down", 3600)], NOW, relative=False)
    assert "2026-01-14T13:13:20Z" in out and "ago" not in out
    assert stamp(None) == "-" and stamp(NOW) == "2026-01-14T14:13:20Z"


def test_message_fits_the_terminal_width() -> None:
    long = "database unreachable: " + "x" * 300
    narrow = incidents_table([incident("db_down", 60, message=long)], NOW, width=100)
    assert max(len(row) for row in narrow.splitlines()) <= 100 and narrow.rstrip().endswith("…")
    assert len(incidents_table([incident("db_down", 60, message=long)], NOW).splitlines()[1]) < 200  # 60 chars


LONG_CODE = "payment_gateway_upstream_connection_pool_exhausted_for_region_eu_west_1"


@pytest.mark.parametrize("width", [80, 40])
def test_tables_fit_the_width_with_a_long_code(width: int) -> None:
    incidents = [
        incident(LONG_CODE, 3 * 3600, message="pool exhausted after 30s waiting for a free connection"),
        incident("db_down", 2 * 86400, cleared_ago=86400, message="database unreachable"),
    ]
    out = incidents_table(incidents, NOW, width=width)
    header, first, second = out.splitlines()
    assert max(len(row) for row in (header, first, second)) <= width  # no row wraps
    assert first.startswith("payment_") and first.split()[0].endswith("…")  # the code shortened, its start kept
    assert second.split()[0] == "db_down" and "cleared 1d ago" in second
    for col in ("STATE", "MESSAGE"):  # still aligned; what is open and why stays longest
        at = header.index(col)
        assert first[at - 2 : at] == second[at - 2 : at] == "  " and first[at] != " " and second[at] != " "
    assert first[header.index("MESSAGE") :].startswith("pool exh")
    if width == 80:
        assert header.split()[:4] == ["CODE", "APP", "STATE", "STARTED"]


def test_table_cells_cut_and_columns_dropped_only_when_needed() -> None:
    rows = [["/var/log/some/very/deep/folder/of/an/app/app.jsonl", 10, 20, "数据库不可用数据库不可用"]]
    headers = ["FILE", "POSITION", "SIZE", "NOTE"]
    assert table(headers, rows, width=200, shrink={0: "start", 3: "end"}) == table(headers, rows)  # fits as is
    assert table(headers, rows, width=50, shrink={0: "start", 3: "end"}, drop=(2,)).split()[:4] == headers
    out = table(headers, rows, width=44, shrink={0: "start", 3: "end"}, drop=(2,))
    head, row = out.splitlines()
    assert head.split() == ["FILE", "POSITION", "NOTE"]  # SIZE left out, as it must be for 44 columns
    assert row.startswith("…") and row.split()[0].endswith("/app/app.jsonl")  # a path keeps its file name
    assert 43 <= sum(2 if unicodedata.east_asian_width(c) == "W" else 1 for c in row) <= 44  # wide: 2 cells each
    assert row.endswith("数据库不可用数…")
    assert table(headers, rows, width=10).splitlines()[1] == "/var/log/…"  # a last resort: cut, never wrap


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 1023, 1024, 40960, 3 << 30)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "40.0 KiB",
        "3.0 GiB",
    ]


@pytest.fixture
def cli_state(make_errord, tmp_path: Path):  # type: ignore[no-untyped-def]
    """An Errord whose embedded store holds two incidents (no daemon needed)."""
    e = make_errord()
    now = time.time()
    j = Journal(tmp_path / "state")
    j.commit(
        [incident("db_down", 3 * 3600 + 12 * 60), incident("disk_full", 2 * 86400, cleared_ago=86400)], [], [], now
    )
    j.close()
    append(tmp_path / "logs" / "app.jsonl", line("x"), b"junk\n")
    return e


def _tty_stdout(cmd: list[str], env: dict[str, str], columns: int = 120) -> str:
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, env={**env, "COLUMNS": str(columns)}, stdout=slave, stderr=subprocess.DEVNULL)
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
    assert proc.wait(30) in ((0, 3) if "status" in cmd else (0,))  # status: 3 = no daemon running
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


def test_history_and_status_on_a_40_column_terminal(make_errord, tmp_path: Path, errord_env: dict[str, str]) -> None:
    e = make_errord()
    j = Journal(tmp_path / "state")
    j.commit([incident(LONG_CODE, 3600)], [], [], time.time())
    j.close()
    deep = tmp_path / "logs" / ("sub" * 20)
    deep.mkdir()
    append(tmp_path / "logs" / "app.jsonl", line("x"))
    e.config.write_text(e.config.read_text().replace('path = "', f'path = "{deep}/x.jsonl"\n[[sources]]\npath = "', 1))
    append(deep / "x.jsonl", line("y"))
    for cmd in ("history", "status"):
        shown = _tty_stdout([sys.executable, "-m", "errord", cmd, "-c", str(e.config)], errord_env, columns=40)
        table_rows = shown.splitlines()[0 if cmd == "history" else 2 :]
        assert len(table_rows) >= 2 and max(len(row) for row in table_rows) <= 40, shown
        assert "…" in shown, shown


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
