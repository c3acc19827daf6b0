"""Folder watches: a line is seen milliseconds after it is written, not at the next scan.

One watchfiles ``awatch`` per root the globs need (:func:`errord.sources.fileid.watch_root`:
the deepest existing non-glob parent folder, recursive when a folder part of a glob has a
wildcard). A watch only wakes the tailer; what changed is still decided by its ``fstat``
and scans, so a missed or coalesced event costs latency, never a line. ``step=3`` ms:
~3 ms from write to wake-up for ~0.3% more idle CPU than ``step=10``.

A watch whose folder was replaced (same path, other inode) is restarted; one that fails
(the folder vanished, out of descriptors) is retried with a back-off (1 s doubling to
60 s), relying on the periodic rescans meanwhile: a watch that cannot start must not be
retried in a loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from typing import NamedTuple

from watchfiles import Change, awatch

from errord.ratelimit import RateLimit
from errord.sources import fileid
from errord.sources.fdbudget import OUT_OF_FDS

__all__ = ["Changes", "Watches"]

logger = logging.getLogger(__name__)

RETRY_MIN, RETRY_MAX = 1.0, 60.0  # seconds before a failed watch is started again

Changes = set[tuple[Change, str]]  # what watchfiles reports: (added/modified/deleted, path)


class _Watch(NamedTuple):
    task: asyncio.Task[None]
    stop: asyncio.Event
    ino: int


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
        step_ms: int,
        changed: Callable[[Changes], None],
        out_of_fds: Callable[[float, int], None],
        warned: RateLimit,
        clock: Callable[[], float],
    ) -> None:
        self._debounce = debounce_ms
        self._step = step_ms
        self._changed = changed
        self._out_of_fds = out_of_fds
        self._warned = warned
        self._clock = clock
        self._watches: dict[tuple[str, bool], _Watch] = {}
        self._retry: dict[str, tuple[float, float]] = {}  # root -> (not before, last delay)

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
            del self._watches[key]
        started = False
        for root, recursive in wanted.items():
            if (root, recursive) in self._watches:
                continue
            retry = self._retry.get(root)
            if retry is not None and now < retry[0]:
                continue
            stop = asyncio.Event()
            task = asyncio.create_task(self._watch(root, recursive, stop), name=f"errord-watch:{root}")
            self._watches[(root, recursive)] = _Watch(task, stop, _ino(root))
            started = True
        return started

    async def close(self) -> None:
        """Stop every watch; returns within about a second."""
        watches = list(self._watches.values())
        self._watches.clear()
        for w in watches:
            w.stop.set()
        tasks = [w.task for w in watches]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=1.0)
            for t in pending:
                t.cancel()

    async def _watch(self, root: str, recursive: bool, stop: asyncio.Event) -> None:
        try:
            async for changes in awatch(
                root,
                watch_filter=None,
                debounce=self._debounce,
                step=self._step,
                stop_event=stop,
                rust_timeout=1000,
                recursive=recursive,
                ignore_permission_denied=True,
            ):
                self._retry.pop(root, None)
                self._changed(changes)
        except asyncio.CancelledError:
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
