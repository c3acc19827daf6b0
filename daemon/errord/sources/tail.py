"""Follow the files that match the configured globs and hand on their complete lines.

One :class:`Tailer` follows every file of the ``[[sources]]`` and is the file source of
the batch (:class:`errord.sources.base.Source`): ``wait`` → ``read`` → parse →
``checkpoint`` → journal commit → ``committed``, or ``rollback`` when the commit failed.
Nothing here is durable by itself: positions advance in memory as lines are handed on,
and become durable only when the batch commits them with what those lines caused.

The tailer reads; its parts, each handed the state it works on, decide the rest:

* :class:`~errord.sources.scan.Scanner` — globs to identities; where each file starts
  (stored, kept, new, renamed while down), files that left their path;
* :class:`~errord.sources.recovery.Recovery` — truncation and ``copytruncate``: unread
  lines from the copy, copies found by their first bytes;
* :class:`~errord.sources.fdbudget.Descriptors` — more files than descriptors: quiet
  files closed, reopened by identity when they change;
* :class:`~errord.sources.watch.Watches` — folder watches that wake the tailer;
* :class:`~errord.sources.table.FileTable` — every identity's state, which checkpoints,
  commits and rollbacks move; :class:`~errord.sources.follower.Follower` reads one file.

A round (:meth:`Tailer.read`): every open file is ``fstat``-ed (growth, deletion,
truncation); a scan runs when a watch asked for one, else every ``scan_interval`` (at
most ``1/SCAN_SHARE`` of the time); parked files that changed are reopened; then the
open files are read in turn, ``chunk_bytes`` at a time, starting at another file each
round, so one busy file never starves the others. Last, a file renamed away or deleted
is read until it has been quiet for ``rotate_wait`` and is at no matched path, then read
to its end (an unterminated last line is handed on as a line) and closed; copies catch
up with their originals.

Errors on one file (permission denied, a folder or a symlink loop matching the glob, a
file vanishing between stat and open) are logged, at most once per path every
``WARN_EVERY`` seconds, and retried at the next scan; ``read()`` and ``wait()`` never raise.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, KeysView, Sequence
from typing import TYPE_CHECKING

from watchfiles import Change

from errord.model import FileKey, Position
from errord.ratelimit import RateLimit
from errord.sources.base import Checkpoint, Chunk, FileStatus, Source
from errord.sources.fdbudget import Descriptors, FdBudget
from errord.sources.fileid import FP_MAX
from errord.sources.filelog import FileLog
from errord.sources.follower import Follower
from errord.sources.recovery import Recovery
from errord.sources.scan import Scanner
from errord.sources.table import FileSource, FileTable, Sources
from errord.sources.watch import Changes, Pace, Watches

__all__ = ["Tailer"]

logger = logging.getLogger(__name__)

WARN_EVERY = 60.0  # seconds between repeated warnings about the same path
SCAN_SHARE = 20  # periodic scans take at most 1/SCAN_SHARE of the time (5%)
# A scan due this close is done now: the event loop's timers may fire up to its clock
# resolution early, and an idle tailer must not wake twice per scan for that
SCAN_SLACK = 0.01


class Tailer:
    """Follows every file matching the sources' globs and hands on complete lines.

    ``sources``: ``path`` (absolute glob), ``start_at`` (``"end"``/``"beginning"``),
    ``rotate_wait`` (seconds) and ``max_line_bytes`` of each. ``positions``: what the
    journal holds. ``first_start``: the journal had no positions yet, so files present at
    ``open()`` start per ``start_at``; every other file without a stored position is read
    from its start. ``max_open``: files held open at once (default from the open-file
    limit, :class:`errord.sources.fdbudget.FdBudget`). ``wall``: the wall clock, for how
    long a position of a file that stopped matching is kept.
    """

    def __init__(
        self,
        sources: Sequence[FileSource],
        positions: Iterable[Position],
        *,
        first_start: bool,
        scan_interval: float = 1.0,
        chunk_bytes: int = 1 << 20,
        debounce_ms: int = 50,
        pace: Pace | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        max_open: int | None = None,
    ) -> None:
        self._sources = Sources(sources)
        self._table = FileTable(positions, wall=wall)
        warned = RateLimit(WARN_EVERY, clock=clock)  # one per path, whichever part warns
        self._warned = warned
        self._fds = Descriptors(
            self._table,
            FdBudget(max_open, clock=clock),
            rescan=self._ask_rescan,
            reopened=self._reopened,
            warned=warned,
            clock=clock,
            wall=wall,
        )
        self._recovery = Recovery(self._table, self._fds, self._sources, rescan=self._ask_rescan)
        self._scanner = Scanner(
            self._table, self._sources, self._fds, self._recovery, first_start=first_start, warned=warned, wall=wall
        )
        self._watches = Watches(
            debounce_ms=debounce_ms,
            pace=pace or Pace(),
            changed=self._changed,
            out_of_fds=self._fds.exhausted,
            warned=warned,
            clock=clock,
        )
        self._scan_interval = scan_interval
        self._chunk_bytes = max(4096, chunk_bytes)
        self._clock = clock
        self._wake = asyncio.Event()
        self._rescan = True
        self._next_scan = 0.0
        self._more = False  # data left over, or a rollback: the next read() goes on at once
        self._resting = False  # the folder watches are stopped while the daemon streams (rest())
        self._rr = 0
        self._opened = False
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Scan the globs, open the files (resuming stored positions), start watching.
        Logs per file where reading starts (the first 20 files, then a summary)."""
        wf_logger = logging.getLogger("watchfiles.main")
        if wf_logger.level == logging.NOTSET:  # it logs every batch of changes at INFO
            wf_logger.setLevel(logging.WARNING)
        now = self._clock()
        self._scan(now, initial=True)
        self._opened = self._scanner.opened = True
        self._update_watches(now)

    async def close(self) -> None:
        """Stop the watchers and close every file. Returns within about a second."""
        self._closed = True
        self._wake.set()
        await self._watches.close()
        self._table.close_all()

    async def wait(self, timeout: float | None) -> None:
        """Return when something may be readable: a file event, a rescan or close deadline,
        data left over from the last ``read()``, or ``close()``.

        Waiting is what makes the folder watches look again after they reported changes
        (``Watches.read``): a daemon that reads again on a timer while a file is being
        written (``daemon.READ_GAP``) does not wait here, and its watches rest."""
        if self._resting:
            self._resting = False
            self._update_watches(self._clock())  # lines from now on wake it again
        self._watches.read()
        if self._closed or self._more or self._rescan or self._wake.is_set():
            return
        now = self._clock()
        delay = self._next_scan - now
        for f in self._table.followers.values():
            if (not f.matched or f.deleted) and f.copy_of is None:
                # a file whose close is due but held (still growing) is looked at again soon
                delay = min(delay, max(f.last_growth + self._sources.rotate_wait(f.source) - now, 0.05))
        budget = self._fds.budget
        if self._table.parking.want and budget.blocked(now):
            delay = min(delay, max(budget.retry_at - now, 0.05))
        if timeout is not None:
            delay = min(delay, timeout)
        if delay <= 0:
            return
        # No task per wait (asyncio.wait_for makes one): the deadline just sets the event,
        # and the read that follows clears it. A following daemon waits here ~25 times a second.
        timer = asyncio.get_running_loop().call_later(delay, self._wake.set)
        try:
            await self._wake.wait()
        finally:
            timer.cancel()

    def wake(self) -> None:
        """Make a ``wait()`` return now (the daemon: a stop or reload was asked)."""
        self._wake.set()

    def rest(self) -> None:
        """Stop the folder watches until the next ``wait()`` (``Source.rest``): a file
        written every few ms made the watch backend's own thread wake for every write
        (~0.4% of a core at 100 writes/s, issue 13) while the daemon read on a timer
        anyway. Meanwhile files that appear are found by the periodic scans, as they were
        while a watch waited for the tailer to read what it had reported."""
        if not self._resting and not self._closed:
            self._resting = True
            self._watches.rest()

    # -- reading -----------------------------------------------------------------------

    def read(self, max_bytes: int = 8 << 20) -> list[Chunk]:
        """Hand on the complete lines available now, fairly across files, at most about
        ``max_bytes`` read in all. Does the rotation / truncation / new-file bookkeeping,
        and closes quiet files to reopen others when descriptors run short.
        Never blocks on anything but local file reads and never raises."""
        if self._closed or not self._opened:
            return []
        self._wake.clear()
        now = self._clock()
        out: list[Chunk] = []
        try:
            deep = now >= self._next_scan - SCAN_SLACK
            for f in list(self._table.followers.values()):
                self._check(f, now, deep)
            if self._rescan or deep:
                self._scan(now)
            moved = self._fds.balance(now)
            self._read_round_robin(out, max_bytes)
            self._settle(out, now)
            # Files still wait for a descriptor: go on as soon as the ones just read are
            # committed (and can be closed), but only while that makes progress: never spin.
            if self._table.parking.want and (moved or out):
                self._more = True
        except Exception:  # a bug must not stop the daemon; what was read is handed on
            logger.exception("tailer: unexpected error while reading")
        return out

    def _read_round_robin(self, out: list[Chunk], max_bytes: int) -> None:
        followers = [f for f in self._table.followers.values() if f.copy_of is None]
        if followers:
            self._rr = (self._rr + 1) % len(followers)
            followers = followers[self._rr :] + followers[: self._rr]
        active = [f for f in followers if f.cursor < f.size]
        budget = max_bytes
        while active and budget > 0:
            again: list[Follower] = []
            for f in active:
                if budget <= 0:
                    again.append(f)
                    continue
                try:
                    chunks, used = f.pull(
                        min(self._chunk_bytes, budget), self._sources.max_line(f.source), self._sources.layout(f.source)
                    )
                except OSError as exc:
                    self._warn(f.path, "cannot read %s: %s", f.path, exc)
                    continue
                out.extend(chunks)
                budget -= used
                if used and f.cursor < f.size:
                    again.append(f)
            active = again
        self._more = bool(active)

    def _settle(self, out: list[Chunk], now: float) -> None:
        """Let copies follow their original; close rotated/deleted files that went quiet."""
        t = self._table
        for f in list(t.followers.values()):
            if f.copy_of is not None:
                self._follow_original(f)
                continue
            if not f.matched and f.source >= len(self._sources):
                t.sleep(f)  # its glob is gone (a rollback brought it back): keep its position
                continue
            if (f.matched and not f.deleted) or f.cursor < f.size:
                continue
            rotate_wait = self._sources.rotate_wait(f.source)
            if now - f.last_growth < rotate_wait:
                continue
            try:
                size = os.fstat(f.fd).st_size
            except OSError:
                size = f.size
            if size > f.cursor:  # it grew after all: read on
                f.size, f.last_growth, self._more = size, now, True
                continue
            out.extend(f.flush())
            t.retire(f)
            self._recovery.remember(f, now)
            logger.info("closed %s (%s, quiet for %.3gs)", f.path, "deleted" if f.deleted else "rotated", rotate_wait)

    def _follow_original(self, f: Follower) -> None:
        """A copy linked to its original reads nothing while the original is read; it
        reads on by itself once the original is gone or changed, or it outgrew it."""
        if f.copy_of in self._table.parked:
            return  # the original is closed while quiet: decided once it is reopened
        orig = self._table.followers.get(f.copy_of) if f.copy_of is not None else None
        if orig is None or orig.fp_len != FP_MAX or orig.fp_hash != f.fp_hash or f.size > max(orig.size, orig.cursor):
            f.copy_of = None
            self._more = self._more or f.cursor < f.size
        elif min(orig.offset, f.size) > f.offset:
            f.offset = f.cursor = min(orig.offset, f.size)

    def _check(self, f: Follower, now: float, deep: bool) -> None:
        """fstat one follower: growth, deletion, truncation (size or first bytes)."""
        try:
            st = os.fstat(f.fd)
        except OSError as exc:
            self._warn(f.path, "cannot stat %s: %s", f.path, exc)
            return
        f.deleted = st.st_nlink == 0
        if (st.st_size, st.st_mtime_ns) == (f.size, f.mtime_ns) and not deep:
            return
        if f.size >= 0 and st.st_size > f.size:
            f.last_growth = now
        try:
            truncated = self._recovery.changed(f, st.st_size)
        except OSError as exc:
            self._warn(f.path, "cannot read %s: %s", f.path, exc)
            return
        if truncated:
            self._recovery.truncated(f, now)
            try:
                st = os.fstat(f.fd)
            except OSError:
                return
            f.last_growth = now
        f.size, f.mtime_ns = st.st_size, st.st_mtime_ns

    def _reopened(self, f: Follower, now: float) -> None:
        self._check(f, now, deep=True)

    # -- checkpoints -------------------------------------------------------------------

    def account(self, key: FileKey, lines: int, skipped: int) -> None:
        """Add the line counters of a chunk the batch parsed."""
        self._table.account(key, lines, skipped)

    def checkpoint(self) -> Checkpoint:
        """Positions changed since the last commit, ``gone=True`` for deleted identities,
        and the positions kept (marked unseen) of files no longer followed. Files have no
        other kind of position: ``meta`` is empty."""
        return Checkpoint(self._table.checkpoint())

    def committed(self) -> None:
        """The last checkpoint is durable."""
        self._table.committed()

    def settled(self) -> bool:
        """No file new, renamed, truncated, closed, deleted or copied since the last commit."""
        return self._table.settled()

    def rollback(self) -> None:
        """The last checkpoint failed: rewind to the last commit so the same lines come again."""
        self._table.rollback()
        self._more = True

    # -- status and configuration ------------------------------------------------------

    def files(self) -> list[FileStatus]:
        """Every followed file (open, or closed while quiet)."""
        return self._table.status()

    @property
    def parked(self) -> KeysView[FileKey]:
        """The identities closed while quiet for want of descriptors (read-only view)."""
        return self._table.parked.keys()

    def reconfigure(self, sources: Sequence[FileSource]) -> None:
        """SIGHUP: a new source list. Followers of files still matched keep their positions;
        rotated files of a glob that is still configured are drained; the others are closed,
        their positions kept (unseen) in case they match again."""
        t = self._table
        old = self._sources.items
        self._sources.items = list(sources)
        index = {src.path: i for i, src in enumerate(self._sources)}
        unknown = len(self._sources)  # out of range until a scan matches the file again
        for f in itertools.chain(t.followers.values(), t.parked.values()):
            j = index.get(old[f.source].path) if f.source < len(old) else None
            if f.fd < 0 and (unknown if j is None else j) != f.source:
                t.parking.moved(f, source=unknown if j is None else j)  # written at the next checkpoint
            f.source = unknown if j is None else j
        self._scan(self._clock())
        log = FileLog(logger)
        for f in list(t.followers.values()):
            if f.matched or f.source != unknown:
                continue
            t.sleep(f)
        for f in t.closing.values():
            if f.key in t.sleeping and f.source == unknown:
                log.add(
                    "no longer matching",
                    logging.INFO,
                    "%s no longer matches a source; closing it, its position (%s) is kept in case it matches again",
                    f.path,
                    f"{f.offset:,}",
                )
        log.emit()
        self._wake.set()

    # -- scans and watches -------------------------------------------------------------

    def _scan(self, now: float, initial: bool = False) -> None:
        self._rescan = False
        self._next_scan = now + self._scan_interval
        started = time.perf_counter()
        try:
            if self._scanner.scan(now, initial) and self._opened:
                self._update_watches(now)
        finally:
            # Thousands of files make a scan cost (a glob, a stat per file): the periodic
            # ones take at most ~1/SCAN_SHARE of the time. Files that appear or move are
            # found at once anyway (the folder watch asks for a rescan), writes to closed
            # files too (it names them).
            took = time.perf_counter() - started
            if self._next_scan >= now + self._scan_interval:  # not brought forward (a new watch)
                self._next_scan = now + max(self._scan_interval, took * SCAN_SHARE)

    def _update_watches(self, now: float) -> None:
        if self._resting:
            return  # started again by the next wait()
        if self._watches.update((src.path for src in self._sources), now):
            # Files created before the watch is live are found by an early rescan.
            self._next_scan = min(self._next_scan, now + min(0.2, self._scan_interval))

    def _changed(self, changes: Changes) -> None:
        """A watch saw changes: rescan for names that came or went, reopen parked files
        that were written to (now, not at the next scan), wake the reader."""
        if any(change != Change.modified for change, _ in changes):
            self._rescan = True
        parking = self._table.parking
        if parking.parked:
            now = self._clock()
            for _change, path in changes:
                key = parking.by_path.get(path)
                if key is not None:
                    parking.wish(key, now)
                    self._more = True
        self._wake.set()

    def _ask_rescan(self) -> None:
        self._rescan = True

    def _warn(self, path: str, msg: str, *args: object) -> None:
        logger.log(logging.WARNING if self._warned.allow(path) else logging.DEBUG, msg, *args)


if TYPE_CHECKING:

    def _is_a_source(tailer: Tailer) -> Source:  # mypy proves the tailer implements the seam
        return tailer
