"""Notify targets that fail, at the daemon level (`errord run` + real Apprise + tests/receiver.py).

A target answering 503, refusing connections or hanging past its timeout: its notices
wait in the journal (``pending_notices`` in ``status``), go out once it recovers, in
order, each once; a notice pending at shutdown goes out after the restart; a dead or
hung target never delays the others. tests/test_notify.py covers the same at the sink
level; here the whole pipeline runs.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from chaos import State, start, wait_until
from conftest import append, line
from receiver import Receiver

pytestmark = pytest.mark.slow


def codes_of(rx: Receiver) -> list[str]:
    """The codes of the notices the target accepted, in arrival order."""
    return [r.body["title"].split()[1] for r in rx.delivered]


def test_503_then_recovery_in_order_each_once(make_errord, receiver, tmp_path: Path) -> None:
    receiver.status = 503
    e = make_errord(notify=[{"url": receiver.url("/503")}])
    log = tmp_path / "logs" / "app.jsonl"
    state = State(tmp_path / "state")
    start(e, state)
    want = [f"c{i}" for i in range(6)]
    append(log, *[line(c) for c in want[:3]])
    receiver.wait_for(1, delivered=False)  # the first attempt was refused with 503
    append(log, *[line(c) for c in want[3:]])
    wait_until(lambda: state.caught_up([log]), 10, "reading")
    status = e.json("status")  # the user's view: the notices wait
    assert status["pending_notices"] == 6, status
    assert receiver.delivered == []
    receiver.status = 200
    receiver.wait_for(6, timeout=15)
    wait_until(lambda: state.pending_notices() == 0, 10, "the outbox to drain")
    time.sleep(0.3)
    assert codes_of(receiver) == want  # in order, each once
    assert all(r.status == 503 for r in receiver.received[: len(receiver.received) - 6])
    assert e.stop() == 0


def test_refused_target_does_not_delay_another_and_catches_up(make_errord, tmp_path: Path) -> None:
    with Receiver() as up, Receiver() as down:
        down.stop()  # connection refused
        e = make_errord(notify=[{"url": up.url("/up")}, {"url": down.url("/down")}])
        log = tmp_path / "logs" / "app.jsonl"
        state = State(tmp_path / "state")
        start(e, state)
        want = [f"r{i}" for i in range(5)]
        t0 = time.monotonic()
        append(log, *[line(c) for c in want])
        up.wait_for(5, timeout=5)
        assert time.monotonic() - t0 < 3, "the healthy target waited for the dead one"
        wait_until(lambda: state.pending_notices() == 5, 5, "5 notices pending for the dead target")
        down.start()
        down.wait_for(5, timeout=15)
        wait_until(lambda: state.pending_notices() == 0, 10, "the outbox to drain")
        time.sleep(0.3)
        assert codes_of(up) == want and codes_of(down) == want
        assert e.stop() == 0


def test_hung_target_times_out_and_does_not_block(make_errord, tmp_path: Path) -> None:
    """A target that accepts the connection and never answers: the per-target read timeout
    (Apprise ``rto``; errord appends ``cto``/``rto`` = 10 s unless the URL sets them, here
    1 s to keep the test short) ends each attempt; the other target is not held up."""
    with Receiver() as ok, Receiver(hang=30) as hung:
        e = make_errord(notify=[{"url": ok.url("/ok")}, {"url": hung.url("/hung") + "?rto=1&cto=1"}], log_level="DEBUG")
        log = tmp_path / "logs" / "app.jsonl"
        state = State(tmp_path / "state")
        start(e, state)
        want = [f"h{i}" for i in range(4)]
        append(log, line(want[0]))
        hung.wait_for(1, delivered=False)  # the first send is hanging now
        t0 = time.monotonic()
        append(log, *[line(c) for c in want[1:]])
        ok.wait_for(4, timeout=5)
        assert time.monotonic() - t0 < 3, "the healthy target waited for the hung one"
        wait_until(lambda: len(hung.received) >= 2, 10, "a retry after the timeout")  # the first attempt timed out
        assert state.pending_notices() == 4
        hung.hang = 0
        hung.wait_for(4, timeout=15)
        wait_until(lambda: state.pending_notices() == 0, 10, "the outbox to drain")
        time.sleep(0.3)
        assert codes_of(ok) == want and codes_of(hung) == want
        assert e.stop(timeout=12) == 0
        # the timeouts Apprise was given: errord's default where the URL sets none
        loaded = [ln for ln in e.output().splitlines() if "Loaded JSON URL" in ln]
        assert any("rto=10.0" in ln and "cto=10.0" in ln for ln in loaded), loaded
        assert any("rto=1.0&" in ln and "cto=1.0" in ln for ln in loaded), loaded
        assert not any("/hung" in ln for ln in loaded), loaded  # a path may be a token: masked


def test_pending_at_shutdown_delivered_after_restart_in_order(
    make_errord, receiver, errord_env, tmp_path: Path
) -> None:
    errord_env["ERRORD_TEST_STOP_DEADLINE"] = "2"  # the target is down at the stop: 2 s of trying, not 8
    receiver.stop()
    e = make_errord(notify=[{"url": receiver.url("/later")}])
    log = tmp_path / "logs" / "app.jsonl"
    state = State(tmp_path / "state")
    start(e, state)
    append(log, *[line(f"p{i}") for i in range(3)])
    wait_until(lambda: state.pending_notices() == 3, 10, "3 pending notices")
    assert e.stop() == 0  # SIGTERM with the target still down: the notices stay in the journal
    append(log, *[line(f"p{i}") for i in range(3, 5)])  # and more arrive while errord is down
    receiver.start()
    start(e, state)
    receiver.wait_for(5, timeout=15)
    wait_until(lambda: state.pending_notices() == 0, 10, "the outbox to drain")
    time.sleep(0.3)
    assert codes_of(receiver) == [f"p{i}" for i in range(5)]
    assert e.stop() == 0


def test_429_with_retry_after_waits_as_asked(make_errord, receiver, tmp_path: Path) -> None:
    """Issue 11.9: `429` + `Retry-After: 3` was retried after 1 s (the backoff's first step)."""
    receiver.script = [429, 429]
    receiver.headers = {"Retry-After": "3"}
    e = make_errord(notify=[{"url": receiver.url("/limited")}])
    state = State(tmp_path / "state")
    start(e, state)
    append(tmp_path / "logs" / "app.jsonl", line("rl"))
    receiver.wait_for(1, timeout=30)
    reqs = receiver.snapshot()
    assert [r.status for r in reqs] == [429, 429, 200], [r.status for r in reqs]
    gaps = [b.at - a.at for a, b in itertools.pairwise(reqs)]
    assert all(gap >= 3.0 for gap in gaps), gaps
    wait_until(lambda: state.pending_notices() == 0, 10, "the outbox to drain")
    assert e.stop() == 0
    assert "retry in 3.0s (Retry-After: 3s)" in e.output()


def test_test_notify_and_check_config_name_apprises_reason(make_errord, tmp_path: Path) -> None:
    """Issue 10.10: `not accepted (1)` / `not a usable Apprise URL` and nothing more."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: connecting is refused
    e = make_errord(notify=[{"url": f"json://127.0.0.1:{port}/x"}])
    res = e.cli("test-notify", check=False)
    assert res.returncode == 1, res.stderr
    assert res.stdout.splitlines() == [
        f"FAILED  json://127.0.0.1:{port}/…: A Connection error occurred sending JSON notification to 127.0.0.1 "
        "(Connection refused)"
    ], res.stdout
    e = make_errord("mail", notify=[{"url": "mailto://example.com"}])
    for cmd, status in (("check-config", 2), ("run", 2), ("test-notify", 1)):
        res = e.cli(cmd, check=False)
        assert res.returncode == status, (cmd, res.stderr)
        assert "not a usable Apprise URL (Invalid ~From~ email specified" in res.stderr, (cmd, res.stderr)
        assert "Traceback" not in res.stderr


def test_one_log_line_per_failed_send(make_errord, receiver, errord_env, tmp_path: Path) -> None:
    """Review of issues 10.10/11: each failed attempt is one line naming the redacted
    target, the attempt, the next retry and Apprise's reason; Apprise's own warning of the
    same failure (it was a second line per attempt) is folded into that line."""
    errord_env["ERRORD_TEST_STOP_DEADLINE"] = "2"  # the target is down at the stop: 2 s of trying, not 8
    receiver.stop()  # connection refused
    e = make_errord(notify=[{"url": receiver.url("/once")}])
    state = State(tmp_path / "state")
    start(e, state)
    append(tmp_path / "logs" / "app.jsonl", line("one_line"))
    wait_until(lambda: "attempt 3," in e.output(), 20, "three failed attempts")
    assert e.stop() == 0
    lines = [ln for ln in e.output().splitlines() if " WARNING " in ln or " ERROR " in ln]
    sends = [ln for ln in lines if "notify target" in ln or "apprise" in ln or "Connection" in ln]
    attempts = [ln for ln in sends if "failed, attempt" in ln]
    assert sends == attempts, sends  # nothing else about these sends
    target = f"json://127.0.0.1:{receiver.port}/…"
    for n, ln in enumerate(attempts[:3], 1):
        assert f"notify target {target}: notice 1 (one_line) failed, attempt {n}, retry in " in ln, ln
        assert ln.endswith("A Connection error occurred sending JSON notification to 127.0.0.1 (Connection refused)")
    assert "Traceback" not in e.output()
