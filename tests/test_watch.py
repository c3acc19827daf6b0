"""Folder watches (sources/watch.py): the pace of the looks, and changes reaching the loop.

The pace is table-tested (pure); the watches run for real (inotify on tmp_path, the
watch thread, the event loop). What an idle watch costs is measured, not asserted:
``bench/sidecar.py`` (context switches per second, idle).
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from watchfiles import Change

from errord.ratelimit import RateLimit
from errord.sources.watch import FAST_STEP, SLOW_STEP, Changes, Pace, Watches, _Inbox


@pytest.mark.parametrize(
    ("idle", "step"),
    [
        (0.0, 5),  # changes are coming: look often
        (0.5, 5),
        (1.0, 5),  # quiet_after: still fast
        (10.0, 64),  # slow_after: slow
        (3600.0, 64),  # and no slower
    ],
)
def test_pace_table(idle: float, step: int) -> None:
    assert Pace(fast=5, slow=64, quiet_after=1.0, slow_after=10.0).step(idle) == step


def test_pace_grows_steadily_between_quiet_and_slow() -> None:
    pace = Pace(fast=5, slow=64, quiet_after=1.0, slow_after=10.0)
    steps = [pace.step(1.0 + k * 0.1) for k in range(91)]
    assert steps == sorted(steps)
    assert steps[0] == 5 and steps[-1] == 64
    assert 5 < pace.step(5.5) < 64


def test_pace_defaults_and_a_slow_step_below_the_fast_one() -> None:
    assert Pace().step(0) == FAST_STEP and Pace().step(1e9) == SLOW_STEP
    assert Pace(fast=10, slow=3).step(1e9) == 10  # never faster when idle than when busy


def _watches(changed: list[Changes], pace: Pace) -> Watches:
    return Watches(
        debounce_ms=50,
        pace=pace,
        changed=changed.append,
        out_of_fds=lambda now, err: None,
        warned=RateLimit(60.0),
        clock=time.monotonic,
    )


async def _until(cond: object, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.01)


async def test_a_change_after_a_silence_still_arrives(tmp_path: Path) -> None:
    """After the step has grown to its slowest, the first write is still seen (later,
    by at most about two slow steps) and the pace drops back for the next."""
    changed: list[Changes] = []
    w = _watches(changed, Pace(fast=5, slow=64, quiet_after=0.05, slow_after=0.2))
    assert w.update([str(tmp_path / "*.jsonl")], time.monotonic())
    await asyncio.sleep(0.6)  # silent: the step grows to its slowest
    log = tmp_path / "app.jsonl"
    log.write_bytes(b"{}\n")
    await _until(lambda: any((Change.added, str(log)) in c or (Change.modified, str(log)) in c for c in changed))
    n = len(changed)
    with open(log, "ab") as f:
        f.write(b"{}\n")
    await _until(lambda: len(changed) > n)
    await w.close()


async def test_close_stops_the_watch_thread(tmp_path: Path) -> None:
    w = _watches([], Pace())
    w.update([str(tmp_path / "*.jsonl")], time.monotonic())
    await _until(lambda: any(t.name.startswith("errord-watch:") for t in threading.enumerate()))
    await w.close()
    await _until(lambda: not any(t.name.startswith("errord-watch:") for t in threading.enumerate()))


async def test_the_inbox_wakes_the_loop_once_for_changes_that_arrive_together() -> None:
    loop = asyncio.get_running_loop()
    got: list[Changes] = []
    inbox = _Inbox(loop, got.append)

    def burst() -> None:
        for k in range(100):
            inbox.put({(int(Change.modified), f"/x/{k % 10}")})

    t = threading.Thread(target=burst)
    t.start()
    t.join()
    await asyncio.sleep(0.05)
    assert len(got) == 1
    assert got[0] == {(Change.modified, f"/x/{k}") for k in range(10)}
    inbox.put({(int(Change.deleted), "/x/0")})
    await asyncio.sleep(0.05)
    assert got[1] == {(Change.deleted, "/x/0")}
