"""sinks.helper.NotifyHelper: the notify sink in a helper process, over real pipes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import errord.sinks.helper as helper_mod
from errord.errors import NotifyError
from errord.model import Notice, NoticeType
from errord.parse.chunks import has_long_line
from errord.sinks.helper import NotifyHelper
from errord.sinks.helperproc import IMPORT_NICE
from errord.sources.follower import _split_long
from errord.store.journal import Journal
from receiver import Receiver
from test_notify import Target


def enqueue(state: Path, helper: NotifyHelper, *codes: str) -> None:
    with Journal(state) as j:
        keys = tuple(key for key, _ in helper.routes)
        j.commit(
            [],
            [],
            [
                Notice(
                    type=NoticeType.FAILURE,
                    code=c,
                    title=f"x {c} failing",
                    body="b",
                    incident_id=f"id-{c}",
                    event_time=1.0,
                    targets=keys,
                )
                for c in codes
            ],
            time.time(),
        )


def test_delivers_in_order_and_reports_results(tmp_path: Path) -> None:
    with Receiver() as rx:
        helper = NotifyHelper(tmp_path, [Target(rx.url("/h"))])
        results: list[tuple[str, bool]] = []
        helper.on_result = lambda name, ok: results.append((name, ok))
        try:
            helper.start()
            enqueue(tmp_path, helper, "a", "b", "c")
            helper.wake()
            got = rx.wait_for(3)
            assert [r.body["title"].split()[1] for r in got] == ["a", "b", "c"]
            end = time.monotonic() + 5
            while len(results) < 3 and time.monotonic() < end:
                time.sleep(0.02)
            assert results == [(f"json://127.0.0.1:{rx.port}", True)] * 3
        finally:
            helper.stop(time.monotonic() + 2)
        assert helper.pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(helper.pid, 0)
        with Journal(tmp_path) as j:
            assert j.outbox.pending() == 0


def test_an_unusable_url_is_refused_at_construction(tmp_path: Path) -> None:
    with pytest.raises(NotifyError, match="not a usable Apprise URL") as info:
        NotifyHelper(tmp_path, [Target("nosuch://host/secret-token-value")])
    assert "secret-token-value" not in str(info.value)


def test_a_helper_that_died_is_started_again(tmp_path: Path) -> None:
    with Receiver() as rx:
        helper = NotifyHelper(tmp_path, [Target(rx.url())])
        try:
            helper.start()
            first = helper.pid
            assert first is not None
            os.kill(first, 9)
            time.sleep(0.2)
            enqueue(tmp_path, helper, "after")
            helper.wake()  # notices the dead helper and starts a new one, which delivers
            (got,) = rx.wait_for(1, timeout=15)
            assert "after" in got.body["title"] and helper.pid != first
        finally:
            helper.stop(time.monotonic() + 2)


def test_stop_returns_by_its_deadline_with_a_hung_target(tmp_path: Path) -> None:
    with Receiver(hang=30) as rx:
        helper = NotifyHelper(tmp_path, [Target(rx.url())])
        helper.start()
        enqueue(tmp_path, helper, "slow")
        helper.wake()
        rx.wait_for(1, delivered=False)
        t0 = time.monotonic()
        helper.stop(t0 + 1.0)
        assert time.monotonic() - t0 < 3


@pytest.mark.parametrize("limit", [4, 10, 64])
def test_long_line_precheck_agrees_with_the_split(limit: int) -> None:
    import random

    rng = random.Random(limit)
    for _ in range(300):
        lines = [
            b"x" * rng.choice([0, 1, limit - 1, limit, limit + 1, 2 * limit]) + b"\n" for _ in range(rng.randint(1, 8))
        ]
        block = b"".join(lines)
        _, longs = _split_long(block, 0, limit)
        assert has_long_line(block, limit) == bool(longs), lines


def _wait_new_pid(helper: NotifyHelper, old: int | None, timeout: float) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pid = helper.pid
        if pid is not None and pid != old:
            return pid
        time.sleep(0.02)
    raise AssertionError(f"no new helper within {timeout}s (still {helper.pid})")


def test_a_killed_helper_is_restarted_without_a_new_notice(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 11.3: with nothing new committed (no wake()), a helper killed by SIGKILL is
    restarted by the supervisor and delivers what was already pending."""
    with Receiver() as rx:
        rx.status = 503  # pending: the first attempt fails, the notice waits in the outbox
        helper = NotifyHelper(tmp_path, [Target(rx.url())], backoff=(0.3, 0.5))
        try:
            helper.start()
            enqueue(tmp_path, helper, "pending")
            helper.wake()
            rx.wait_for(1, timeout=10, delivered=False)
            first = helper.pid
            assert first is not None
            killed = time.monotonic()
            os.kill(first, signal.SIGKILL)
            second = _wait_new_pid(helper, first, 5)
            assert time.monotonic() - killed < 5
            rx.status = 200
            (got,) = rx.wait_for(1, timeout=15)
            assert "pending" in got.body["title"] and helper.pid == second
        finally:
            helper.stop(time.monotonic() + 2)
    died = [r.getMessage() for r in caplog.records if "died" in r.getMessage()]
    assert died == [f"notify helper (pid {first}) died: killed by signal 9 (SIGKILL); restarting it now"], died
    assert any(f"restarted (pid {second})" in r.getMessage() for r in caplog.records)


def test_a_helper_that_keeps_dying_is_restarted_with_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(helper_mod, "RESTART_BACKOFF", (0.5, 1.0))
    with Receiver() as rx:
        helper = NotifyHelper(tmp_path, [Target(rx.url())])
        try:
            helper.start()
            pids, times = [helper.pid], []
            for _ in range(3):
                os.kill(pids[-1], signal.SIGKILL)  # type: ignore[arg-type]
                t0 = time.monotonic()
                pids.append(_wait_new_pid(helper, pids[-1], 10))
                times.append(time.monotonic() - t0)
        finally:
            helper.stop(time.monotonic() + 2)
        assert helper.pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(helper.pid, 0)
    died = [r.getMessage().split("; ", 1)[1] for r in caplog.records if " died: " in r.getMessage()]
    assert died == [
        "restarting it now",
        "it died 2 times in a row within 60s of its start; restarting it in 0.5s",
        "it died 3 times in a row within 60s of its start; restarting it in 1s; further deaths in a row are"
        " logged once every 60s",
    ], died
    assert times[1] >= 0.5 and times[2] >= 1.0, times


def test_the_restart_delay_stays_within_the_contracts_5s() -> None:
    """CONTRACT §7: restarted within 5 s of dying, however often it died: the pause plus
    the time to notice the death stays under 5 s (it was 1, 2, 4 … 60 s)."""
    delays = [helper_mod._restart_delay(n) for n in range(1, 200)]
    assert delays[:4] == [0.0, 1.0, 2.0, 3.0]
    assert max(delays) + helper_mod.SUPERVISE_EVERY < 5


def test_no_helper_is_started_after_stop(tmp_path: Path) -> None:
    with Receiver() as rx:
        helper = NotifyHelper(tmp_path, [Target(rx.url())])
        helper.start()
        pid = helper.pid
        assert pid is not None
        helper.stop(time.monotonic() + 2)
        time.sleep(1.0)  # the supervisor had its chance
        assert helper.pid == pid
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_the_early_helper_imports_apprise_at_a_lower_priority_then_runs_at_its_own() -> None:
    """helperproc._import_politely (issue 13's start): Apprise is imported by a thread of
    nice IMPORT_NICE (at least) that ends with the import; the process's own threads keep
    the nice they had (on Linux a nice value is per thread), so notices are sent at it."""
    import subprocess
    import sys

    code = """if True:
        import os, sys, threading
        from errord.sinks import helperproc
        seen = []
        real = os.setpriority
        def spy(which, who, prio):
            seen.append((threading.current_thread().name, who == threading.get_native_id(), prio))
            real(which, who, prio)
            seen.append(os.getpriority(os.PRIO_PROCESS, who))
        os.setpriority = spy
        before = os.getpriority(os.PRIO_PROCESS, 0)
        helperproc._import_politely()
        print(seen, "apprise" in sys.modules, os.getpriority(os.PRIO_PROCESS, 0) == before,
              threading.active_count())
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    nice = max(IMPORT_NICE, os.getpriority(os.PRIO_PROCESS, 0))
    assert out.split() == f"[('errord-import', True, {nice}), {nice}] True True 1".split(), out
