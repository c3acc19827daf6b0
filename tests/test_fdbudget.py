"""More files than descriptors: the open-file limit is raised at start, quiet files are
closed and reopened by identity when they change, and running out never spins.

The tailer tests drive a real :class:`errord.tail.Tailer` over real files with a small
``max_open``; the end-to-end test runs ``errord run`` under a real limit (soft = hard =
256) with 2,000 files.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import resource
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from errord import fdbudget
from errord.fdbudget import FdBudget, raise_open_file_limit
from errord.model import Position
from errord.tail import Tailer
from test_tail import Driver, Src, append, key_of, lines

SCAN = 0.2


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


MakeT = Callable[..., Driver]


@pytest.fixture
async def make() -> AsyncIterator[MakeT]:
    made: list[Tailer] = []

    def factory(sources: list[Src], positions: list[Position] | None = None, *, first_start: bool = True,
                **kw: object) -> Driver:
        kw.setdefault("scan_interval", SCAN)
        t = Tailer(sources, positions or [], first_start=first_start, **kw)  # type: ignore[arg-type]
        made.append(t)
        return Driver(t)

    yield factory
    for t in made:
        await t.close()


class FdWatch:
    """The most descriptors the process held while a driver ran (sampled each step)."""

    def __init__(self, d: Driver) -> None:
        self.base = open_fds()
        self.peak = 0
        step = d.step

        def sampled(*a: object, **kw: object):  # type: ignore[no-untyped-def]
            out = step(*a, **kw)  # type: ignore[arg-type]
            self.peak = max(self.peak, open_fds() - self.base)
            return out

        d.step = sampled  # type: ignore[method-assign]


def many(folder: Path, n: int, tag: str = "f") -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"{tag}{i:05d}.jsonl"
        append(p, lines(p.stem, 0, 1))
        paths.append(p)
    return paths


async def test_more_files_than_descriptors_are_all_read_once(tmp_path: Path, make: MakeT) -> None:
    paths = many(tmp_path / "logs", 300)
    d = make([Src(str(tmp_path / "logs" / "*.jsonl"))], max_open=20)
    watch = FdWatch(d)
    await d.t.open()
    await d.until(lambda: len(d.got) >= 300, timeout=20)
    assert sorted(d.lines()) == sorted(ln for p in paths for ln in lines(p.stem, 0, 1))
    assert watch.peak <= 20 + 4, watch.peak  # the budget, the folder watch, a transient open
    assert len(d.t.files()) == 300 and len(d.db) == 300
    # new lines in closed files, in random order: each read once, the next ones too
    rnd = random.Random(11)
    later = rnd.sample(paths, 120)
    for p in later:
        append(p, lines(p.stem, 1, 3))
    await d.until(lambda: len(d.got) >= 300 + 240, timeout=20)
    await d.run_for(0.5)
    for p in paths:
        assert d.lines(p.name) == lines(p.stem, 0, 3 if p in later else 1), p
    assert watch.peak <= 24, watch.peak
    assert all(d.db[key_of(p)].offset == p.stat().st_size for p in paths)


async def test_a_closed_file_keeps_its_identity_semantics(tmp_path: Path, make: MakeT) -> None:
    """Rotation, truncation, deletion and a new file at the path while a file is closed
    for quiet: as when it is open."""
    logs = tmp_path / "logs"
    paths = many(logs, 40)
    d = await _opened(make([Src(str(logs / "*.jsonl"), rotate_wait=0.3)], max_open=10))
    await d.until(lambda: len(d.got) >= 40, timeout=20)
    await d.run_for(0.5)
    parked = [p for p in paths if key_of(p) in d.t._parked]
    assert len(parked) >= 20
    rotated, truncated, deleted, quiet = parked[0], parked[1], parked[2], parked[3]
    rk, dk = key_of(rotated), key_of(deleted)
    # rename rotation while closed: the writer appends to the renamed file, a new file appears
    append(rotated, lines(rotated.stem, 1, 2))
    os.rename(rotated, logs / (rotated.name + ".1"))
    append(rotated, lines("new", 0, 2))
    nk = key_of(rotated)
    # copytruncate while closed
    data = truncated.read_bytes() + b"".join(lines(truncated.stem, 1, 2))
    (logs / (truncated.name + ".1")).write_bytes(data)
    os.truncate(truncated, 0)
    append(truncated, lines("after", 0, 1))
    # deletion while closed (nothing unread): its position is kept, not resumed by anything else
    deleted.unlink()
    await d.until(lambda: len(d.got) >= 40 + 1 + 2 + 1 + 1, timeout=20)
    await d.run_for(1.0)
    assert d.of(rk) == lines(rotated.stem, 0, 2)
    assert d.of(nk) == lines("new", 0, 2)
    assert d.lines(truncated.name + ".1") == lines(truncated.stem, 1, 2)  # the rest, from the copy
    assert d.lines(truncated.name)[-1:] == lines("after", 0, 1)
    assert d.lines(quiet.name) == lines(quiet.stem, 0, 1)
    assert len(d.got) == 40 + 1 + 2 + 1 + 1
    await d.until(lambda: d.kept(rk) and d.kept(dk), timeout=10)


async def _opened(d: Driver) -> Driver:
    await d.t.open()
    return d


async def test_out_of_descriptors_backs_off_without_spinning(tmp_path: Path, make: MakeT,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """The system refuses descriptors below the budget (another part holds them): one
    warning, the open files are read on, the others come once descriptors are back."""
    paths = many(tmp_path / "logs", 60)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    d = make([Src(str(tmp_path / "logs" / "*.jsonl"))], max_open=1000)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_fds() + 40, hard))
        with caplog.at_level(logging.INFO, logger="errord"):
            await d.t.open()
            await d.until(lambda: len(d.got) >= 20, timeout=10)
            first = len(d.got)
            await d.run_for(1.0)
            steps = 0
            t0 = time.process_time()
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                await d.t.wait(0.5)
                d.step()
                steps += 1
            cpu = time.process_time() - t0
        warnings = [r for r in caplog.records if "out of file descriptors" in r.getMessage()]
        assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
        assert not [r for r in caplog.records if "Too many open files" in r.getMessage()]
        assert 20 <= first < 60 and cpu < 0.5 and steps < 100, (first, cpu, steps)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    await d.until(lambda: len(d.got) >= 60, timeout=90)
    assert sorted(d.lines()) == sorted(ln for p in paths for ln in lines(p.stem, 0, 1))
