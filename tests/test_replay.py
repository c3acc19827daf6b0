"""``errord replay`` as a what-if tool: overrides, summary, JSON lines, progress bar, no state."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import append, line
from errord.model import NoticeType
from errord.noise import NOISE_DEFAULTS, Noise
from errord.replay import CodeSummary, OverridePolicy, progress_line, summary_table

T = 1_768_400_000  # 2026-01-14T14:13:20Z


def summary(stdout: str) -> dict[str, list[int]]:
    """The summary table from replay's stdout: code -> [lines, incidents, new, re-alert, resolved, notices, muted]."""
    lines = stdout.splitlines()
    start = next(i for i, text in enumerate(lines) if text.startswith("CODE "))
    out = {}
    for text in lines[start + 1 :]:
        code, *nums = text.split()
        out[code] = [int(n) for n in nums]
    return out


@pytest.fixture
def replay_setup(make_errord, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A config with a 60 s default and a file: ``r`` every 10 s for 5 min, then cleared;
    ``q`` twice, 20 min apart."""
    e = make_errord(defaults={"re_alert_time": "60s"})
    log = tmp_path / "what-if.jsonl"
    append(log, *[line("r", msg=f"r{i}", timestamp=T + 10 * i) for i in range(31)])
    append(log, line(clear="r", timestamp=T + 305), line("q", timestamp=T), line("q", timestamp=T + 1200))
    return e, log


def test_re_alert_override_changes_the_counts_per_code(replay_setup, tmp_path: Path) -> None:
    e, log = replay_setup
    base = summary(e.cli("replay", str(log)).stdout)
    # r: new at 0 s, re-alerts at 60, 120, 180, 240, 300, then resolved; q: new, re-alert after 20 min
    assert base["r"] == [31, 1, 1, 5, 1, 7, 0]
    assert base["q"] == [2, 1, 1, 1, 0, 2, 0]
    assert base["TOTAL"] == [33, 2, 2, 6, 1, 9, 0]

    res = e.cli("replay", str(log), "--re-alert", "2m", "--summary")
    got = summary(res.stdout)
    assert got["r"] == [31, 1, 1, 2, 1, 4, 0] and got["q"] == [2, 1, 1, 1, 0, 2, 0]
    assert res.stdout.startswith("CODE ")  # --summary: no notice lines
    assert "6 notice(s) from 34 line(s)" in res.stderr

    got = summary(e.cli("replay", str(log), "--re-alert", "1h", "--re-alert", "r=0", "--summary").stdout)
    assert got["r"] == [31, 1, 1, 30, 1, 32, 0]  # 0 = every occurrence alerts
    assert got["q"] == [2, 1, 1, 0, 0, 1, 0]  # 20 min < 1 h
    assert not (tmp_path / "state").exists()


def test_a_lines_own_interval_wins_unless_ignored(make_errord, tmp_path: Path) -> None:
    e = make_errord()
    log = tmp_path / "own.jsonl"
    append(log, *[line("p", re_alert_time="PT1M", timestamp=T + 30 * i) for i in range(10)])  # 4.5 min
    assert summary(e.cli("replay", str(log), "--re-alert", "1h").stdout)["p"][3] == 4
    assert summary(e.cli("replay", str(log), "--re-alert", "1h", "--ignore-line-intervals").stdout)["p"][3] == 0


def test_json_is_one_notice_per_line_with_stable_keys(replay_setup, tmp_path: Path) -> None:
    e, log = replay_setup
    res = e.cli("replay", str(log), "--json", "--re-alert", "5m")
    notices = [json.loads(text) for text in res.stdout.splitlines()]
    assert [(n["type"], n["code"]) for n in notices] == [
        ("failure", "r"),
        ("warning", "r"),
        ("success", "r"),
        ("failure", "q"),
        ("warning", "q"),
    ]
    for n in notices:
        assert {"type", "code", "title", "time", "incident_id", "body"} <= set(n)
        assert n["code"] in n["title"].split()
    assert notices[0]["time"] == "2026-01-14T14:13:20.000Z"
    assert notices[1]["time"] == "2026-01-14T14:18:20.000Z"
    assert notices[0]["incident_id"] == notices[2]["incident_id"] != notices[3]["incident_id"]
    assert not (tmp_path / "state").exists()


def test_replay_resolves_only_what_it_alerted_and_announces_the_unheard(make_errord, tmp_path: Path) -> None:
    # CONTRACT §2, as the daemon decides with one target: "quiet" never notified (its
    # lines said notification: false), so its clear is silent; "late" opened silently,
    # then a line that may notify announces it (a failure, before the interval), and its
    # clear resolves it; "tagged" goes to a tag no target has, yet replay's one implicit
    # target takes everything, as the daemon's stderr pseudo-target does.
    e = make_errord(defaults={"re_alert_time": "1h"}, codes={"tagged": {"tags": ["ops"]}})
    log = tmp_path / "silent.jsonl"
    append(
        log,
        line("quiet", notification=False, timestamp=T),
        line(clear="quiet", timestamp=T + 5),
        line("late", notification=False, timestamp=T),
        line("late", notification=False, timestamp=T + 60),
        line("late", msg="now loud", timestamp=T + 120),
        line("late", timestamp=T + 180),
        line(clear="late", timestamp=T + 240),
        line("tagged", timestamp=T),
        line(clear="tagged", timestamp=T + 1),
    )
    res = e.cli("replay", str(log), "--json")
    notices = [json.loads(text) for text in res.stdout.splitlines()]
    assert [(n["type"], n["code"]) for n in notices] == [
        ("failure", "late"),
        ("success", "late"),
        ("failure", "tagged"),
        ("success", "tagged"),
    ]
    assert notices[0]["time"] == "2026-01-14T14:15:20.000Z"
    assert (
        "Failing since 2026-01-14 14:13:20 UTC (2m), 3 occurrences so far, not announced before." in notices[0]["body"]
    )
    got = summary(e.cli("replay", str(log)).stdout)
    assert got["quiet"] == [1, 1, 0, 0, 0, 0, 0] and got["late"] == [4, 1, 1, 0, 1, 2, 0]


def test_replay_leaves_an_existing_state_alone(make_errord, tmp_path: Path) -> None:
    e = make_errord()
    e.start()
    append(tmp_path / "logs" / "app.jsonl", line("live"))
    e.wait_caught_up()
    assert e.stop() == 0
    state = tmp_path / "state"
    before = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in state.iterdir()}
    log = tmp_path / "other.jsonl"
    append(log, line("live"), line(clear="live"))
    res = e.cli("replay", str(log), "--json")
    assert [json.loads(x)["type"] for x in res.stdout.splitlines()] == ["failure", "success"]  # not "live" state
    assert {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in state.iterdir()} == before


def _run_with_tty_stderr(cmd: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    err = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        err += chunk
    out = proc.stdout.read() if proc.stdout else b""
    os.close(master)
    return proc.wait(30), out.decode(), err.decode(errors="replace")


def test_progress_bar_only_on_a_terminal(replay_setup, errord_env: dict[str, str]) -> None:
    e, log = replay_setup
    cmd = [sys.executable, "-m", "errord", "replay", "-c", str(e.config), str(log), "--summary"]
    rc, out, err = _run_with_tty_stderr(cmd, errord_env)
    assert rc == 0
    assert "\r[" in err and "100%" in err and "\x1b[2K" in err  # drawn, then erased
    assert "\r" not in out and "[#" not in out and summary(out)["r"][5] == 7
    piped = e.cli("replay", str(log), "--summary")
    assert "\r" not in piped.stderr and "%" not in piped.stderr


def test_bad_re_alert_is_a_usage_error(replay_setup) -> None:
    e, log = replay_setup
    res = e.cli("replay", str(log), "--re-alert", "soon", check=False)
    assert res.returncode == 2 and "--re-alert" in res.stderr


def test_summary_rows_and_progress_line() -> None:
    a = CodeSummary("a", lines=5, incidents=1)
    a.notices[NoticeType.FAILURE] = 1
    b = CodeSummary("b", lines=9, incidents=2)
    b.notices.update({NoticeType.FAILURE: 2, NoticeType.WARNING: 3, NoticeType.SUCCESS: 1})
    assert summary_table({"a": a}) == [["a", 5, 1, 1, 0, 0, 1, 0]]  # no TOTAL for one code
    assert summary_table({"a": a, "b": b}) == [
        ["b", 9, 2, 2, 3, 1, 6, 0],
        ["a", 5, 1, 1, 0, 0, 1, 0],
        ["TOTAL", 14, 3, 3, 3, 1, 7, 0],
    ]
    assert progress_line(0, 0, width=4) == "[####] 100%  0.0/0.0 MiB"
    assert progress_line(1 << 20, 4 << 20, width=4) == "[#---]  25%  1.0/4.0 MiB"


def test_override_policy_order() -> None:
    class Base:
        def re_alert_for(self, code: str) -> float:
            return 3600.0

        def notify_for(self, code: str) -> bool:
            return code != "quiet"

        def noise_for(self, code: str) -> Noise:
            return NOISE_DEFAULTS

    p = OverridePolicy(Base(), 900.0, {"x": 0.0})
    assert (p.re_alert_for("x"), p.re_alert_for("y")) == (0.0, 900.0)
    assert OverridePolicy(Base(), None, {"x": 5.0}).re_alert_for("y") == 3600.0
    assert p.notify_for("quiet") is False and p.notify_for("loud") is True


def test_replay_applies_inhibition_and_mute_times_by_event_time_and_ignores_silences(
    make_errord, tmp_path: Path
) -> None:
    # T is Wednesday 2026-01-14 14:13:20 UTC; the window: Wednesdays 14:00-15:00 UTC
    e = make_errord(
        defaults={"re_alert_time": "60s"},
        codes={"app_err": {"inhibited_by": ["db_*"]}},
        mute_times=[{"name": "wed", "codes": ["batch_*"], "weekdays": ["wed"], "times": ["14:00-15:00"]}],
    )
    e.cli("silence", "db_*", "--for", "1h")  # the daemon's clock: replay ignores it
    log = tmp_path / "what-if.jsonl"
    append(
        log,
        line("db_down", timestamp=T),
        line("app_err", timestamp=T + 1),  # inhibited: muted
        line("app_err", timestamp=T + 100),  # re-alert due, still inhibited: muted
        line(clear="db_down", timestamp=T + 200),
        line("app_err", timestamp=T + 201),  # announces itself
        line("batch_x", timestamp=T),  # in the window: muted
        line("batch_x", timestamp=T + 3600),  # 15:13, after the window: announces itself
    )
    notices = [json.loads(x) for x in e.cli("replay", str(log), "--json").stdout.splitlines()]
    batch = [n for n in notices if n["code"] == "batch_x"]
    assert [(n["type"], n["time"]) for n in batch] == [("failure", "2026-01-14T15:13:20.000Z")]
    assert "not announced before" in batch[0]["body"]
    app = [(n["type"], n["time"]) for n in notices if n["code"] == "app_err"]
    assert app == [("failure", "2026-01-14T14:16:41.000Z")]  # on its first line after db_down resolved
    got = summary(e.cli("replay", str(log)).stdout)
    assert got["db_down"] == [1, 1, 1, 0, 1, 2, 0]
    assert got["app_err"] == [3, 1, 1, 0, 0, 1, 2]
    assert got["batch_x"] == [2, 1, 1, 0, 0, 1, 1]
