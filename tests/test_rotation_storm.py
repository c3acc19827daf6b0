"""Rotation storms against the running daemon: every line accounted for.

A writer thread appends lines (each with its own code, so each line is one incident and a
loss or a double shows up as a missing code or ``occurrences == 2``) while the test
rotates the file every ~100 ms for 1.6 s (~15 rotations). Afterwards every line that
exists in some file is counted exactly once; a line the rotation itself destroyed (it is
in no file) may be missing, and for copytruncate only lines of the copy→truncate windows
may be destroyed.

* rename + create, logrotate style (``app.jsonl`` -> ``.1`` -> ``.2`` …), with a writer
  that keeps appending to the renamed file for a while before it reopens (so lines land in
  ``.1`` and even ``.2``); with a glob that matches only the live name (a file is renamed
  only once errord has seen it: one renamed away unseen is out of reach, a documented hole)
  and with one that matches the rotated names too;
* copytruncate, with a writer that pauses around the copy+truncate (no line can fall
  between them: the count must be exact) and a free-running one (the lines written
  between the start of the copy and the end of the truncate may be lost, no others, and
  none may be doubled: README "Guarantees");
* Debian's real ``logrotate -f`` (create, and copytruncate), skipped without logrotate.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from chaos import State, seed_for, start, wait_until

pytestmark = pytest.mark.slow

STORM_SECONDS = 1.6
RATE = 1500  # lines per second


class StormWriter(threading.Thread):
    """Appends ``{"error_code": "s<seq>"}`` lines at RATE with O_APPEND.

    ``mode``: ``"keep"`` never reopens (copytruncate); ``"reopen"`` reopens the path when
    ``reopen_at`` (monotonic) has passed (an app told to reopen, a little late);
    ``"watch"`` reopens as soon as the path names another inode (WatchedFileHandler).
    ``lock``, when given, is held around each write (the paused copytruncate variant).
    ``next`` is the seq of the next line to write: lines below it are fully written.
    """

    def __init__(self, path: Path, mode: str, rnd: random.Random, lock: threading.Lock | None = None) -> None:
        super().__init__(daemon=True, name="storm-writer")
        self.path, self.mode, self.rnd, self.lock = path, mode, rnd, lock
        self.next = 0
        self.reopen_at: float | None = None
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def line(self, seq: int) -> bytes:
        pad = "x" * self.rnd.randint(0, 120)
        return b'{"error_code": "s%d", "notification": false, "message": "storm %s"}\n' % (seq, pad.encode())

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def run(self) -> None:
        try:
            fd = self._open()
            start = time.monotonic()
            while not self.stop.is_set():
                if self.mode == "reopen" and self.reopen_at is not None and time.monotonic() >= self.reopen_at:
                    self.reopen_at = None
                    os.close(fd)
                    fd = self._open()
                elif self.mode == "watch":
                    try:  # WatchedFileHandler: reopen (creating it if need be) when the inode changed
                        same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                    except FileNotFoundError:
                        same = False
                    if not same:
                        os.close(fd)
                        fd = self._open()
                data = self.line(self.next)
                if self.lock is not None:
                    with self.lock:
                        os.write(fd, data)
                else:
                    os.write(fd, data)
                self.next += 1
                delay = start + self.next / RATE - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            os.close(fd)
        except BaseException as exc:
            self.error = exc


def shift(logs: Path, name: str) -> None:
    """app.jsonl.N -> .N+1 … app.jsonl.1 -> .2, as logrotate numbers them."""
    nums = sorted(
        (int(p.name.rsplit(".", 1)[1]) for p in logs.glob(f"{name}.*") if p.name.rsplit(".", 1)[1].isdigit()),
        reverse=True,
    )
    for n in nums:
        os.rename(logs / f"{name}.{n}", logs / f"{name}.{n + 1}")


def on_disk(logs: Path) -> set[int]:
    """The seqs of the lines that exist in some file under ``logs`` now."""
    found: set[int] = set()
    for path in logs.iterdir():
        if path.is_file():
            found.update(int(m) for m in re.findall(rb'"error_code": "s(\d+)"', path.read_bytes()))
    return found


def check_counts(state: State, written: int, ctx: str, logs: Path, may_vanish: set[int] | None = None) -> None:
    """Each line ``s<seq>`` (seq < written) that exists in some file is counted exactly once;
    a line in no file (lost by the rotation itself) may be missing, never doubled.
    ``may_vanish``: the lines the rotation may destroy (the copytruncate windows); a line
    missing from disk outside it is a bug of the test rig. None: the rotation may destroy
    any (logrotate's hourly ``.backup`` name, reused, replaces an earlier backup)."""
    present = on_disk(logs)
    vanished = set(range(written)) - present
    if may_vanish is not None:
        assert vanished <= may_vanish, f"{ctx}: lines gone from disk outside the window: {sorted(vanished)[:10]}"
    want = len(present)
    with contextlib.suppress(AssertionError):  # say below which ones
        wait_until(lambda: len(state.incidents()) >= want, 20, f"{want} lines counted", every=0.2)
    time.sleep(0.3)  # anything more (doubles) would show now
    got: Counter[str] = Counter()
    for inc in state.incidents():
        got[inc.code] += inc.occurrences
    doubled = sorted(c for c, n in got.items() if n > 1)
    unknown = sorted(set(got) - {f"s{i}" for i in range(written)})
    lost = sorted(i for i in present if f"s{i}" not in got)
    assert not doubled and not unknown and not lost, (
        f"{ctx}: written {written}, doubled {doubled[:10]}, unknown {unknown[:10]}, lost {lost[:20]} (of {len(lost)})"
    )
    read_anyway = len([i for i in vanished if f"s{i}" in got])
    print(f"{ctx}: {written} lines, {len(vanished)} gone from disk ({read_anyway} of them read in time)")


def run_storm(writer: StormWriter, rotate: Callable[[], None], rnd: random.Random) -> int:
    writer.start()
    end = time.monotonic() + STORM_SECONDS
    rotations = 0
    while time.monotonic() < end:
        time.sleep(rnd.uniform(0.06, 0.14))
        rotate()
        rotations += 1
    time.sleep(0.1)
    writer.stop.set()
    writer.join(10)
    assert writer.error is None, writer.error
    return rotations


@pytest.mark.parametrize("glob", ["app.jsonl", "app.jsonl*"])
def test_rename_and_create_storm(make_errord, tmp_path: Path, glob: str) -> None:
    seed = seed_for(7001)
    rnd = random.Random(seed)
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "app.jsonl"
    log.touch()
    e = make_errord(sources=[{"path": str(logs / glob), "start_at": "beginning", "rotate_wait": "1s"}])
    state = State(tmp_path / "state")
    start(e, state)
    writer = StormWriter(log, "reopen", random.Random(seed))

    def rotate() -> None:
        if not log.exists():  # the writer has not reopened since the last rotation
            return
        if glob == "app.jsonl":
            # Renamed to a name the glob does not match, a file errord never saw is out
            # of its reach (README "Guarantees"): on a loaded machine errord may take
            # longer than one storm interval to notice a new file. Rotate only files it
            # has seen: a non-empty one once a position is stored for it.
            wait_until(lambda: state.seen(log), 5.0, f"errord to see {log.name}", every=0.005)
        shift(logs, "app.jsonl")
        os.rename(log, logs / "app.jsonl.1")
        if rnd.random() < 0.5:
            log.touch()  # `create`; else the writer's reopen creates it
        # the app reopens 0-250 ms later: until then it appends to .1 (or, across the
        # next rotation, to .2)
        writer.reopen_at = time.monotonic() + rnd.uniform(0.0, 0.25)

    rotations = run_storm(writer, rotate, rnd)
    check_counts(state, writer.next, f"seed={seed} glob={glob} rotations={rotations}", logs, set())
    assert e.stop() == 0


@pytest.mark.parametrize("paused", [True, False], ids=["paused", "free-running"])
def test_copytruncate_storm(make_errord, tmp_path: Path, paused: bool) -> None:
    seed = seed_for(7002)
    rnd = random.Random(seed)
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "app.jsonl"
    log.touch()
    e = make_errord(sources=[{"path": str(logs / "app.jsonl"), "start_at": "beginning", "rotate_wait": "1s"}])
    state = State(tmp_path / "state")
    start(e, state)
    lock = threading.Lock()
    writer = StormWriter(log, "keep", random.Random(seed), lock=lock if paused else None)
    windows: list[tuple[int, int]] = []

    def rotate() -> None:
        shift(logs, "app.jsonl")
        if paused:
            with lock:  # the writer waits: nothing is written between copy and truncate
                shutil.copyfile(log, logs / "app.jsonl.1")
                os.truncate(log, 0)
            return
        lo = writer.next  # lines below lo were written before the copy began
        shutil.copyfile(log, logs / "app.jsonl.1")
        time.sleep(rnd.uniform(0.0, 0.01))  # logrotate does other work in between
        os.truncate(log, 0)
        windows.append((lo, writer.next + 1))  # a write racing the truncate may be either side

    rotations = run_storm(writer, rotate, rnd)
    window_lines = {i for lo, hi in windows for i in range(lo, hi)}
    ctx = f"seed={seed} paused={paused} rotations={rotations} window_lines={len(window_lines)}"
    check_counts(state, writer.next, ctx, logs, window_lines)
    assert e.stop() == 0


LOGROTATE = shutil.which("logrotate")


@pytest.mark.skipif(LOGROTATE is None, reason="logrotate is not installed (apt-get install logrotate)")
@pytest.mark.parametrize("method", ["create", "copytruncate"])
def test_real_logrotate_storm(make_errord, tmp_path: Path, method: str) -> None:
    """``logrotate -f`` every ~100 ms.

    create: the writer reopens when it notices the new inode, creating the file if
    logrotate has not yet (WatchedFileHandler). When it wins that race, logrotate moves its
    file aside as ``app.jsonl-YYYYMMDDHH.backup``: the glob ``app.jsonl*`` matches that
    name too (with ``app.jsonl`` alone the lines in such a file are out of errord's sight
    if it had no time to see the file: README, limits). The name is per hour, so a second
    race replaces the first backup: those lines are in no file afterwards.
    copytruncate: the writer never reopens; the lines written while a logrotate run is
    under way may be lost (they fall between its copy and its truncate), no others."""
    assert LOGROTATE is not None
    seed = seed_for(7003)
    rnd = random.Random(seed)
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "app.jsonl"
    log.touch()
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f"{log} {{\n  rotate 10000\n  {method}\n  nocompress\n  missingok\n}}\n")
    glob = "app.jsonl*" if method == "create" else "app.jsonl"
    e = make_errord(sources=[{"path": str(logs / glob), "start_at": "beginning", "rotate_wait": "1s"}])
    state = State(tmp_path / "state")
    start(e, state)
    writer = StormWriter(log, "watch" if method == "create" else "keep", random.Random(seed))
    windows: list[tuple[int, int]] = []

    def rotate() -> None:
        lo = writer.next
        res = subprocess.run(
            [LOGROTATE, "-f", "-s", str(tmp_path / "logrotate.state"), str(conf)],
            capture_output=True,
            text=True,
            timeout=20,
        )
        # "destination already exists, renaming to ….backup": the writer recreated the file
        # before logrotate's create; logrotate moved its file aside and says so
        assert res.returncode == 0 or "already exists" in res.stderr, res.stderr
        windows.append((lo, writer.next + 1))

    rotations = run_storm(writer, rotate, rnd)
    assert len(list(logs.glob("app.jsonl.*"))) >= rotations - 1
    window_lines = {i for lo, hi in windows for i in range(lo, hi)}
    ctx = f"seed={seed} logrotate {method} rotations={rotations} window_lines={len(window_lines)}"
    check_counts(state, writer.next, ctx, logs, window_lines if method == "copytruncate" else None)
    assert e.stop() == 0


@pytest.mark.parametrize("glob", ["*.jsonl", "app.jsonl*"])
def test_a_stall_during_two_rotations(make_errord, tmp_path: Path, glob: str) -> None:
    """The daemon is stopped (SIGSTOP: a frozen VM, a stalled disk) while the app rotates
    twice by rename. With a glob of live names only, the middle file was never seen: errord
    cannot read it, but says so, naming it. With a glob that matches the rotated names too,
    every line is counted exactly once, and compressed rotations are skipped quietly."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "app.jsonl"

    def write(path: Path, a: int, b: int) -> None:
        with open(path, "ab") as fh:
            fh.write(b"".join(b'{"error_code": "s%d", "notification": false}\n' % i for i in range(a, b)))

    write(log, 0, 10)
    (logs / "app.jsonl.3.gz").write_bytes(b"\x1f\x8b\x08\x00 an old compressed rotation")
    os.symlink(logs / "missing", logs / "app.jsonl.4.gz")  # a stat would fail and warn
    e = make_errord(sources=[{"path": str(logs / glob), "start_at": "beginning", "rotate_wait": "1s"}])
    state = State(tmp_path / "state")
    start(e, state)
    wait_until(lambda: state.occurrences().keys() == {f"s{i}" for i in range(10)}, 20, "the first lines")
    e.proc.send_signal(signal.SIGSTOP)
    try:
        write(log, 10, 20)
        os.rename(log, logs / "app.jsonl.1")  # rotation 1
        write(log, 20, 30)  # the middle file
        os.rename(logs / "app.jsonl.1", logs / "app.jsonl.2")  # rotation 2
        os.rename(log, logs / "app.jsonl.1")
        write(log, 30, 40)
    finally:
        e.proc.send_signal(signal.SIGCONT)
    middle = (logs / "app.jsonl.1").stat().st_size
    want = set(range(40)) if glob == "app.jsonl*" else set(range(20)) | set(range(30, 40))
    wait_until(lambda: len(state.occurrences()) >= len(want), 20, f"{len(want)} lines counted")
    time.sleep(1.5)  # anything more (doubles, the middle file late) would show now
    assert state.occurrences() == {f"s{i}": 1 for i in want}
    out = e.output()
    warnings = [ln for ln in out.splitlines() if " WARNING " in ln]
    if glob == "*.jsonl":
        assert len(warnings) == 1, warnings
        assert "was replaced more than once while errord was not reading it" in warnings[0]
        assert f"{logs / 'app.jsonl.1'} ({middle:,} bytes, written after errord last saw" in warnings[0]
    else:
        assert warnings == []
        names = sorted(os.path.basename(f["path"]) for f in e.json("status")["files"])
        assert names == ["app.jsonl", "app.jsonl.1", "app.jsonl.2"]  # no compressed ones
    assert ".gz" not in out
    assert e.stop() == 0
