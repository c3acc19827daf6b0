"""The daemon's lifecycle end to end (`errord run`): what a refused start says, and the
supervision of its notify helper."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from chaos import State, start, wait_until
from conftest import append, line

pytestmark = pytest.mark.slow


def test_a_refused_second_daemon_says_only_why(make_errord) -> None:
    """Issue 11.11: it never started, so it must not log `errord stopped`: one line alone."""
    e = make_errord()
    e.start()
    res = e.cli("run", check=False, timeout=30)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 1, res.stderr
    assert len(lines) == 1 and "another errord (pid" in lines[0], res.stderr
    assert "errord stopped" not in res.stderr
    assert e.stop() == 0
    assert "errord stopped" in e.output()  # the one that ran says so


def helper_pids(daemon_pid: int) -> list[int]:
    """The live notify helpers the daemon started (zombies have no cmdline: left out)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == daemon_pid and b"errord.sinks.helper" in cmdline:
            found.append(int(name))
    return found


def delivering(pid: int) -> bool:
    """The helper ``pid`` has the journal open: it started and its workers run."""
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}").endswith("errord.db") for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def test_a_killed_notify_helper_is_restarted_and_delivers_what_is_pending(
    make_errord, receiver, tmp_path: Path
) -> None:
    """Issue 11.3: kill -9 of the helper while notices wait for a failing target and nothing
    new is committed: a new helper within 5 s, every pending notice delivered once."""
    receiver.status = 503
    e = make_errord(notify=[{"url": receiver.url("/sup")}])
    state = State(tmp_path / "state")
    start(e, state)
    assert e.proc is not None
    (first,) = wait_until(lambda: helper_pids(e.proc.pid), 10, "the notify helper")
    want = [f"k{i}" for i in range(30)]
    log = tmp_path / "logs" / "app.jsonl"
    append(log, *[line(c) for c in want])
    wait_until(lambda: state.caught_up([log]) and state.pending_notices() == 30, 15, "30 pending notices")
    receiver.wait_for(1, delivered=False, timeout=10)  # the target refuses them
    killed = time.monotonic()
    os.kill(first, signal.SIGKILL)
    (second,) = wait_until(lambda: [p for p in helper_pids(e.proc.pid) if p != first], 5, "a new helper")
    restarted = time.monotonic() - killed
    receiver.status = 200
    receiver.wait_for(30, timeout=60)
    wait_until(lambda: state.pending_notices() == 0, 15, "the outbox to drain")
    time.sleep(0.5)
    got = [r.body["title"].split()[1] for r in receiver.delivered]
    assert sorted(got) == sorted(want) and len(got) == len(set(got)), got  # each once
    assert got == want  # and in order
    assert restarted < 5
    assert e.stop() == 0
    out = e.output()
    assert f"notify helper (pid {first}) died: killed by signal 9 (SIGKILL); restarting it now" in out, out
    assert f"notify helper restarted (pid {second})" in out, out


def test_a_helper_that_keeps_dying_is_back_within_5s_each_time_and_logged_sparingly(
    make_errord, tmp_path: Path
) -> None:
    """CONTRACT §7 (review of issue 11.3): five kills in a row, each right after the helper
    came back: every time a new helper within 5 s (with 1, 2, 4 … 60 s the fifth waited
    8 s; the cap, 3 s, is reached at the fourth); the first three deaths are logged one by
    one, later ones once a minute."""
    e = make_errord()
    state = State(tmp_path / "state")
    start(e, state)
    assert e.proc is not None
    (pid,) = wait_until(lambda: helper_pids(e.proc.pid), 10, "the notify helper")
    waits = []
    for _ in range(5):
        wait_until(lambda p=pid: delivering(p), 20, "the helper to read the outbox")  # past its start
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        (pid,) = wait_until(lambda old=pid: [p for p in helper_pids(e.proc.pid) if p != old], 10, "a new helper")
        waits.append(time.monotonic() - killed)
    assert max(waits) < 5, waits
    assert e.stop() == 0
    died = [ln for ln in e.output().splitlines() if "notify helper (pid" in ln and " died: " in ln]
    assert len(died) == 3, died
    assert died[-1].endswith("further deaths in a row are logged once every 60s"), died


def test_the_test_suites_stop_deadline_is_checked() -> None:
    """``$ERRORD_TEST_STOP_DEADLINE`` (the suite's, not a setting): unset is CONTRACT §7's
    8 s; a number from 1 to 8 is taken; anything else is refused naming it."""
    from errord.daemon import STOP_DEADLINE, stop_deadline
    from errord.errors import ConfigError

    assert stop_deadline({}) == STOP_DEADLINE == 8.0
    assert stop_deadline({"ERRORD_TEST_STOP_DEADLINE": "2"}) == 2.0
    for bad in ("", "soon", "0.5", "9", "nan", "-2"):
        with pytest.raises(ConfigError, match=r"ERRORD_TEST_STOP_DEADLINE: must be seconds from 1 to 8"):
            stop_deadline({"ERRORD_TEST_STOP_DEADLINE": bad})
