"""Folder watches: a line is seen milliseconds after it is written, not at the next scan.

One watch per root the globs need (:func:`errord.sources.fileid.watch_root`: the deepest
existing non-glob parent folder, recursive when a folder part of a glob has a wildcard).
A watch only wakes the tailer; what changed is still decided by its ``fstat`` and scans,
so a missed or coalesced event costs latency, never a line.

A watch is watchfiles' Rust backend (``RustNotify``, what ``awatch`` loops around) driven
by a thread of its own. ``RustNotify.watch`` sleeps ``step`` ms between looks at its
event queue, taking the GIL at each look: a thread wake-up 1000/step times a second, the
whole idle cost of errord (``step=3`` was ~330 context switches/s). So the step follows
:class:`Pace`: ``FAST_STEP`` while files change and for ``QUIET_AFTER`` seconds after, then
it grows, reaching ``SLOW_STEP`` after ``SLOW_AFTER`` seconds of silence (~14 looks/s),
and drops back at the first change. The trade: the first line after a long silence is
seen up to two slow steps (≤ 144 ms, ~110 ms on average) after it was written, instead
of ~6 ms. Changes are handed to the event loop at most once per turn of the loop
(``_Inbox``), however many arrive while it is busy; after reporting, a watch looks again
only once the tailer waits for input again (``Watches.read``).

A watch whose folder was replaced (same path, other inode) is restarted; one that fails
(the folder vanished, out of descriptors) is retried with a back-off (1 s doubling to
60 s), relying on the periodic rescans meanwhile: a watch that cannot start must not be
retried in a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

from watchfiles import Change
from watchfiles._rust_notify import RustNotify

from errord.ratelimit import RateLimit
from errord.sources import fileid
from errord.sources.fdbudget import OUT_OF_FDS

__all__ = ["Changes", "Pace", "Watches"]

logger = logging.getLogger(__name__)

RETRY_MIN, RETRY_MAX = 1.0, 60.0  # seconds before a failed watch is started again

Changes = set[tuple[Change, str]]  # what watchfiles reports: (added/modified/deleted, path)

FAST_STEP = 5  # ms between looks while files change (≈ 5-10 ms from write to wake-up)
SLOW_STEP = 72  # ms between looks after a long silence (≈ 14 looks/s; two of them ≤ 150 ms)
QUIET_AFTER = 1.0  # seconds of silence before the step starts to grow
SLOW_AFTER = 10.0  # seconds of silence after which the step is SLOW_STEP
LOOK_FOR = 500  # ms: each RustNotify.watch call returns after this long without a change
READ_WAIT = 1.0  # seconds a watch that reported changes waits for the tailer to read them


class Pace:
    """The step (ms) of the next look, from the seconds since the last change: pure."""

    def __init__(
        self,
        fast: int = FAST_STEP,
        slow: int = SLOW_STEP,
        quiet_after: float = QUIET_AFTER,
        slow_after: float = SLOW_AFTER,
    ) -> None:
        self.fast, self.slow = fast, max(fast, slow)
        self.quiet_after, self.slow_after = quiet_after, max(quiet_after, slow_after)

    def step(self, idle: float) -> int:
        """Geometric from ``fast`` at ``quiet_after`` seconds to ``slow`` at ``slow_after``."""
        if idle <= self.quiet_after:
            return self.fast
        if idle >= self.slow_after:
            return self.slow
        share = (idle - self.quiet_after) / (self.slow_after - self.quiet_after)
        grown: float = self.fast * (self.slow / self.fast) ** share
        return min(self.slow, round(grown))


class _Watch(NamedTuple):
    task: asyncio.Task[None]
    stop: threading.Event
    ino: int


class _Inbox:
    """Changes from a watch thread to the event loop: one ``call_soon_threadsafe`` (one
    wake-up of the loop) for whatever arrives until the loop has taken it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, changed: Callable[[Changes], None]) -> None:
        self._loop, self._changed = loop, changed
        self._lock = threading.Lock()
        self._pending: Changes = set()
        self._scheduled = False
        self.read = threading.Event()  # the tailer read since the last put: look again
        self.read.set()

    def put(self, raw: set[tuple[int, str]]) -> None:  # in the watch thread
        with self._lock:
            self._pending.update((Change(c), p) for c, p in raw)
            if self._scheduled:
                return
            self._scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(self._take)

    def _take(self) -> None:  # in the loop
        with self._lock:
            changes, self._pending, self._scheduled = self._pending, set(), False
        if changes:
            self._changed(changes)


class Watches:
    """The folder watches the tailer's globs need.

    ``changed(changes)`` is called in the event loop for each batch of changes a watch
    sees; ``out_of_fds(now, errno)`` when a watch could not get a descriptor (said once
    for everything that wants one); other failures are warned about per root, through
    ``warned``.
    """

    def __init__(
        self,
        *,
        debounce_ms: int,
        pace: Pace,
        changed: Callable[[Changes], None],
        out_of_fds: Callable[[float, int], None],
        warned: RateLimit,
        clock: Callable[[], float],
    ) -> None:
        self._debounce = debounce_ms
        self._pace = pace
        self._changed = changed
        self._out_of_fds = out_of_fds
        self._warned = warned
        self._clock = clock
        self._watches: dict[tuple[str, bool], _Watch] = {}
        self._retry: dict[str, tuple[float, float]] = {}  # root -> (not before, last delay)
        self._inboxes: dict[str, _Inbox] = {}
        self._stopping: set[asyncio.Task[None]] = set()  # stopped by rest(), not ended yet

    def update(self, patterns: Iterable[str], now: float) -> bool:
        """Watch the roots ``patterns`` need now; restart watches whose folder was replaced
        and, once their back-off is over, those that failed. Returns whether a watch was
        started (files created before it is live are found by an early rescan). Does
        nothing outside an event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        wanted: dict[str, bool] = {}
        for pattern in patterns:
            root, recursive = fileid.watch_root(pattern)
            wanted[root] = wanted.get(root, False) or recursive
        for key, w in list(self._watches.items()):
            root, recursive = key
            if wanted.get(root) == recursive and not w.task.done() and _ino(root) == w.ino:
                continue
            w.stop.set()
            self.read()
            del self._watches[key]
        started = False
        for root, recursive in wanted.items():
            if (root, recursive) in self._watches:
                continue
            retry = self._retry.get(root)
            if retry is not None and now < retry[0]:
                continue
            stop = threading.Event()
            task = asyncio.create_task(self._watch(root, recursive, stop), name=f"errord-watch:{root}")
            self._watches[(root, recursive)] = _Watch(task, stop, _ino(root))
            started = True
        return started

    def read(self) -> None:
        """The tailer is reading: what the watches reported so far is being looked at."""
        for inbox in self._inboxes.values():
            if not inbox.read.is_set():
                inbox.read.set()

    def rest(self) -> None:
        """Stop every watch now (each thread ends within a step); ``update`` starts them
        again. The ending tasks are kept here (the loop holds tasks only weakly)."""
        for w in self._watches.values():
            w.stop.set()
            if not w.task.done():
                self._stopping.add(w.task)
                w.task.add_done_callback(self._stopping.discard)
        self._watches.clear()
        self.read()  # a watch waiting for the tailer to read sees its stop at once

    async def close(self) -> None:
        """Stop every watch; returns within about a second."""
        watches = list(self._watches.values())
        self._watches.clear()
        for w in watches:
            w.stop.set()
        self.read()  # a watch waiting for the tailer to read sees its stop at once
        tasks = [w.task for w in watches] + list(self._stopping)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=1.0)
            for t in pending:
                t.cancel()

    async def _watch(self, root: str, recursive: bool, stop: threading.Event) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        inbox = _Inbox(loop, self._changed)
        self._inboxes[root] = inbox

        def started() -> None:
            self._retry.pop(root, None)

        def run() -> None:
            try:
                self._follow(root, recursive, stop, inbox, lambda: loop.call_soon_threadsafe(started))
            except BaseException as exc:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, done, exc)
            else:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, done, None)

        threading.Thread(target=run, name=f"errord-watch:{root}", daemon=True).start()
        try:
            await done
        except asyncio.CancelledError:
            stop.set()
            raise
        except Exception as exc:  # e.g. the folder vanished: the scans go on, the watch is retried
            now = self._clock()
            delay = min(RETRY_MAX, max(RETRY_MIN, 2 * self._retry.get(root, (0.0, 0.0))[1]))
            self._retry[root] = (now + delay, delay)
            err = out_of_fds(exc)
            if err:
                self._out_of_fds(now, err)
            else:
                level = logging.WARNING if self._warned.allow(root) else logging.DEBUG
                logger.log(level, "cannot watch %s: %s (relying on rescans; retrying in %.0fs)", root, exc, delay)
        finally:
            if self._inboxes.get(root) is inbox:
                del self._inboxes[root]

    def _follow(
        self, root: str, recursive: bool, stop: threading.Event, inbox: _Inbox, started: Callable[[], object]
    ) -> None:
        """The watch thread: looks at the events at the pace of :class:`Pace` until ``stop``."""
        with RustNotify([root], False, _force_polling(), 300, recursive, True) as notify:
            started()
            last = time.monotonic()
            while not stop.is_set():
                got = notify.watch(self._debounce, self._pace.step(time.monotonic() - last), LOOK_FOR, stop)
                if isinstance(got, str):  # "timeout", "stop" ("signal" is never seen off the main thread)
                    continue
                last = time.monotonic()
                # Until the tailer has read, more changes would tell it nothing new: no
                # looks meanwhile (they are collected and come with the next look).
                inbox.read.clear()
                inbox.put(got)
                inbox.read.wait(READ_WAIT)


def _force_polling() -> bool:
    """As ``awatch``: ``WATCHFILES_FORCE_POLLING`` set (and not "false") polls instead of inotify."""
    value = os.environ.get("WATCHFILES_FORCE_POLLING", "")
    return bool(value) and value.lower() not in {"false", "disable", "disabled"}


def _settle(done: asyncio.Future[None], exc: BaseException | None) -> None:
    if done.done():
        return
    if exc is None:
        done.set_result(None)
    else:
        done.set_exception(exc)


def out_of_fds(exc: BaseException) -> int:
    """EMFILE/ENFILE behind an error (watchfiles' own errors name it only in their text)."""
    if isinstance(exc, OSError) and exc.errno in OUT_OF_FDS:
        return exc.errno
    text = str(exc)
    return next((e for e in OUT_OF_FDS if f"(os error {e})" in text), 0)


def _ino(path: str) -> int:
    try:
        return os.stat(path).st_ino
    except OSError:
        return -1
