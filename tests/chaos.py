"""Helpers for the reliability tests (test_crash, test_rotation_storm, test_target_faults,
test_journal_faults, test_bad_input): fast looks at a daemon's state without spawning the
CLI, a seeded writer thread, the seed a failing test prints so it can be replayed, and
journal connections whose statements fail on demand (``Faults``, a ``Journal`` opener).

The CLI (``errord status``) costs ~0.3 s per call on a busy machine; these tests poll a
lot, so they read the state the way the CLI does (read-only journal, the run lock) in
process. The e2e tests keep covering the CLI itself.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import conftest
from errord.model import Incident, Position
from errord.store.journal import Journal
from errord.store.runstate import read_run_state

__all__ = ["ChunkedWriter", "Faults", "State", "seed_for", "start", "wait_until"]


def seed_for(default: int) -> int:
    """The seed of a randomised test: ``$ERRORD_TEST_SEED`` (``random`` for a fresh one),
    else ``default``. Put it in every assertion message so a failure can be replayed."""
    raw = os.environ.get("ERRORD_TEST_SEED", "")
    if raw == "random":
        return random.SystemRandom().randrange(2**32)
    return int(raw) if raw else default


MIN_BUDGET = 30.0  # seconds: the least any wait here is given (see conftest.wait_until)


def wait_until(cond: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll ``cond`` until it returns something truthy; AssertionError naming ``what``.
    ``conftest.wait_until`` with a budget of at least ``MIN_BUDGET``: ``timeout`` is what
    the condition takes on a quiet machine, not a limit the test asserts."""
    return conftest.wait_until(cond, max(timeout, MIN_BUDGET), what, every=every)


class Faults:
    """An ``opener`` for ``Journal``: real connections, each wrapped so that its statements
    fail (``sqlite3.OperationalError(error)``) while ``fail(sql)`` says so: never, until a
    test sets ``fail``. ``opened`` keeps the real connections, newest last."""

    def __init__(self, error: str = "disk I/O error") -> None:
        self.fail: Callable[[str], bool] = lambda sql: False
        self.error = error
        self.opened: list[sqlite3.Connection] = []

    def open(self, *args: Any, **kw: Any) -> Any:
        real = sqlite3.connect(*args, **kw)
        self.opened.append(real)
        return FaultyConnection(real, self)


class FaultyConnection:
    """A sqlite3.Connection whose statements fail while its ``Faults`` say so."""

    def __init__(self, real: sqlite3.Connection, faults: Faults) -> None:
        self._real, self._faults = real, faults

    def _check(self, sql: str) -> None:
        if self._faults.fail(sql):
            raise sqlite3.OperationalError(self._faults.error)

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._check(sql)
        return self._real.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._check(sql)
        return self._real.executemany(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class State:
    """Read-only looks at a state_dir while a daemon may be writing it (WAL readers)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)

    def _journal(self) -> Journal | None:
        if not (self.state_dir / "errord.db").exists():
            return None
        try:
            return Journal(self.state_dir, readonly=True)
        except Exception:  # being created right now
            return None

    def incidents(self) -> list[Incident]:
        j = self._journal()
        if j is None:
            return []
        with j:
            return j.history(limit=-1)

    def positions(self) -> list[Position]:
        j = self._journal()
        if j is None:
            return []
        with j:
            return j.positions()

    def pending_notices(self) -> int:
        j = self._journal()
        if j is None:
            return 0
        with j:
            return j.outbox.pending()

    def running(self) -> bool:
        s = read_run_state(self.state_dir)
        return bool(s["running"] and s["ready"])

    def seen(self, path: Path) -> bool:
        """A position is stored for the file ``path`` names now (or it is empty)."""
        st = os.stat(path)
        return st.st_size == 0 or any(p.key == (st.st_dev, st.st_ino) for p in self.positions())

    def caught_up(self, paths: list[Path]) -> bool:
        """Every path that exists now has a stored position at its size."""
        pos = {p.key: p.offset for p in self.positions()}
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:
                continue
            if pos.get((st.st_dev, st.st_ino)) != st.st_size:
                return False
        return True

    def occurrences(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for inc in self.incidents():
            out[inc.code] = out.get(inc.code, 0) + inc.occurrences
        return out


def start(errord: Any, state: State, timeout: float = 20) -> None:
    """``errord.start()`` without the CLI polling: until the run lock says ready."""
    errord.start(wait=False)
    wait_until(lambda: state.running() or errord.proc.poll() is not None, timeout, "the daemon to start")
    if errord.proc.poll() is not None:
        raise AssertionError(f"daemon exited {errord.proc.returncode}:\n{errord.output()[-3000:]}")


class ChunkedWriter(threading.Thread):
    """Appends a byte stream to a file in random slices (lines are split mid-way, as a
    buffered logger flushing at odd moments does), at about ``rate`` lines per second.

    ``lines`` is consumed in order; ``written`` counts the lines fully written so far.
    ``pause`` (an Event) set by the test makes it wait between slices.
    """

    def __init__(self, path: Path, lines: list[bytes], rnd: random.Random, rate: float) -> None:
        super().__init__(daemon=True, name=f"writer:{path.name}")
        self.path = path
        self.lines = lines
        self.rnd = rnd
        self.rate = rate
        self.written = 0
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                self._run(fd)
            finally:
                os.close(fd)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _run(self, fd: int) -> None:
        i = 0
        pending = b""
        start = time.monotonic()
        while i < len(self.lines) and not self.stop.is_set():
            while len(pending) < 4096 and i < len(self.lines):
                pending += self.lines[i]
                i += 1
            cut = self.rnd.randint(1, len(pending))
            os.write(fd, pending[:cut])
            pending = pending[cut:]
            self.written = i - pending.count(b"\n")  # pending is a suffix of whole lines
            due = start + i / self.rate  # keep to the rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(min(delay, 0.05))
        if pending:  # never leave a half line behind
            os.write(fd, pending)
        self.written = i
