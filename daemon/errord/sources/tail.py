"""Follow the files that match the configured globs: rotation, truncation, positions.

One :class:`Tailer` owns every open file. The daemon drives it in a batch loop
(``wait`` → ``read`` → parse → ``checkpoint`` → journal commit → ``committed``, or
``rollback`` when the commit failed), so nothing here is durable by itself: positions
advance in memory as lines are handed on, and become durable only when the daemon commits
them together with what those lines caused.

How files are told apart (see :mod:`errord.sources.fileid`): an identity is ``(dev, ino)`` plus a
fingerprint of its first bytes.

* **Growth** — same inode, same first bytes, size ≥ what we read: read on.
* **Rename rotation** — the path now names another inode. The old inode keeps its
  follower and open fd; a writer that never reopens keeps appending to ``app.jsonl.1``
  and we keep reading it until it has been quiet for ``rotate_wait`` seconds and is at no
  matched path any more; then it is read to its end (an unterminated last line is handed
  on as a line) and closed. The new file at the path is read from 0.
* **Deletion** — the same: the open fd still reads what was written before the unlink.
* **copytruncate** — the size drops below our position or the first bytes change. Lines
  we had not read yet are read from the copy, found among the siblings (any name) by its
  first bytes; the copy is then followed by its own inode from our old position, like a
  renamed file. The truncated file is read from 0. A copy that matches a glob itself is
  recognised by its 256-byte fingerprint and starts where we were in that content.

  **The one window no reader can close:** lines written between logrotate's copy and its
  truncate are in neither file afterwards. They are read only if we read them from the
  original before the truncate.
* **While errord was down** — a stored position whose inode is at no matched path is
  looked for among the siblings of its last path (renamed): the rest is read and the file
  closed after ``rotate_wait``. A stored inode whose first bytes changed was truncated or
  reused: read from 0 (after trying copy recovery).
* **A file that stops matching** (its glob removed or changed on SIGHUP, a rotated file
  closed after ``rotate_wait``, a folder renamed away, a position found nowhere at start)
  keeps its position, marked with when it was last seen (``Position.extra["unseen_since"]``),
  for ``KEEP_UNSEEN`` (7 days). If the same identity (dev, ino and the same first bytes)
  matches again, reading resumes there; only a file errord never saw is read from its
  start. Positions of deleted files errord still held open are deleted (``gone=True``).
* **More files than descriptors** (:mod:`errord.sources.fdbudget`) — at most ``FdBudget.files``
  are open. When more want reading, the quiet ones (read to their end, nothing
  uncommitted, least recently grown first) are *parked*: closed, with identity, position,
  fingerprint and counters kept. The scans stat every matched path anyway: a parked file
  whose size or mtime changed is reopened by identity (a path that now names another
  inode is not it) and checked as usual (truncation, fingerprint); one that left the glob
  is looked for by inode among its siblings (rotated while closed) and closed for good
  after ``rotate_wait``, keeping its position; lines appended just before a deletion
  while it was parked are gone with it.

Errors on one file (permission denied, a directory or a symlink loop matching the glob, a
file vanishing between stat and open) are logged, rate-limited, and retried at the next
rescan; ``read()`` and ``wait()`` never raise. Compressed names (``.gz``, ``.xz``, ``.bz2``,
``.zst``, …) are never read, even when a glob matches them.

A followed file replaced more than once between two looks (a stall during two rotations;
two rotations faster than errord looks) is warned about when errord can tell: a sibling
named like a rotation of it (``app.jsonl.1``), not empty, not compressed, unknown to
errord and written after errord last saw the followed file at its name held lines errord
never read (:func:`errord.sources.fileid.unread_rotations`).

Limits (no reader that keeps no copy of the data can do better):

* a file that was created *and* rotated to a name the glob does not match while errord was
  down (two rotations during one downtime) was never known and is not read; a glob that
  also matches the rotated names (``app.jsonl*``) avoids this. A file deleted while errord
  was down is gone. The same holds while errord runs for a file that lives under a
  matched name for less time than errord takes to look (logrotate ``create`` racing an
  app that recreates the file, which logrotate then moves to ``….backup``), and for
  copytruncate done twice before errord reads the file again (what was written between
  the two is only in the second copy, whose first bytes errord never saw).
* a truncated file rewritten with the very same first 256 bytes up to at least our old
  position is taken for the old content.
* a copy smaller than 256 bytes that matches a glob and is found before the truncation of
  its original is read from its start (its lines come twice).

Files are read by :class:`errord.sources.follower.Follower` (one per identity); identity helpers
are in :mod:`errord.sources.fileid`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from watchfiles import Change, awatch

from errord.sources import fileid
from errord.sources.fdbudget import OUT_OF_FDS, Descriptors, FdBudget, Parking
from errord.sources.fileid import FP_MAX, digest, read_prefix
from errord.sources.follower import Chunk, Follower, Mark, end_of_last_line, real_folder, stored_copy_of
from errord.model import FileKey, Position

__all__ = ["Chunk", "FileStatus", "Tailer"]

logger = logging.getLogger(__name__)

WARN_EVERY = 60.0  # seconds between repeated warnings about the same path
CONTENT_MEMORY = 300.0  # seconds a truncated/closed content is remembered, to recognise its copies
UNSEEN = "unseen_since"  # Position.extra key: wall clock when a kept position's file last matched
KEEP_UNSEEN = 7 * 86400.0  # seconds a position of a file that stopped matching is kept
PRUNE_EVERY = 3600.0  # seconds between looks for kept positions older than KEEP_UNSEEN
FILES_LOGGED = 20  # per-file lines of one scan logged in full; the rest are summarised
SCAN_SHARE = 20  # periodic scans take at most 1/SCAN_SHARE of the time (5%)


@dataclass(slots=True)
class FileStatus:
    """One open file for ``errord status``."""

    path: str
    position: int
    size: int
    lines_read: int
    lines_skipped: int
    source: int


class _Content(NamedTuple):
    """Content we have read that is no longer followed (closed or truncated away)."""

    offset: int  # how far we had read it
    tail: bytes  # the bytes just before ``offset``, to tell a true copy
    expires: float


class _Watch(NamedTuple):
    task: asyncio.Task[None]
    stop: asyncio.Event
    ino: int


class _Sleep(NamedTuple):
    """A file to stop following whose position is kept (it stopped matching)."""

    since: float  # wall clock when it last matched
    pos: Position | None  # for a stored position without a follower; else taken from _closing


class FileLog:
    """Per-file log lines of one scan: the first ``FILES_LOGGED`` in full, the rest
    counted by kind, so 20,000 files give 21 lines, not 20,000."""

    def __init__(self) -> None:
        self.lines: list[tuple[int, str, tuple[Any, ...]]] = []
        self.more: Counter[str] = Counter()

    def add(self, kind: str, level: int, msg: str, *args: Any) -> None:
        if len(self.lines) < FILES_LOGGED:
            self.lines.append((level, msg, args))
        else:
            self.more[kind] += 1

    def emit(self) -> None:
        for level, msg, args in self.lines:
            logger.log(level, msg, *args)
        if self.more:
            logger.info("... and %s more file(s): %s", f"{sum(self.more.values()):,}",
                        ", ".join(f"{n:,} {kind}" for kind, n in self.more.most_common()))


class Tailer(Descriptors):
    """Follows every file matching the sources' globs and hands on complete lines.

    ``sources``: objects with ``path`` (absolute glob), ``app``, ``start_at``
    (``"end"``/``"beginning"``), ``rotate_wait`` (seconds) and ``max_line_bytes``.
    ``positions``: what the journal holds. ``first_start``: the journal had no positions
    yet, so files present at ``open()`` start per ``start_at``; every other file without a
    stored position is read from its start. ``max_open``: files held open at once
    (default from the open-file limit, :class:`errord.sources.fdbudget.FdBudget`). ``wall``: the
    wall clock, for how long a position of a file that stopped matching is kept.
    """

    def __init__(
        self, sources: Sequence[Any], positions: Iterable[Position], *, first_start: bool,
        scan_interval: float = 1.0, chunk_bytes: int = 1 << 20, debounce_ms: int = 50,
        step_ms: int = 3, clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time, max_open: int | None = None,
    ) -> None:
        self._sources = list(sources)
        self._stored: dict[FileKey, Position] = {}  # to resume once matched (or found renamed)
        self._unseen: dict[FileKey, Position] = {}  # kept positions of files that stopped matching
        for p in positions:
            if not p.gone:
                (self._unseen if _unseen_since(p) is not None else self._stored)[p.key] = p
        self._first_start = first_start
        self._scan_interval = scan_interval
        self._chunk_bytes = max(4096, chunk_bytes)
        self._debounce = debounce_ms
        self._step = step_ms
        self._clock = clock
        self._wall = wall
        self._followers: dict[FileKey, Follower] = {}  # open
        self._budget = FdBudget(max_open, clock=clock)
        self._parking = Parking(self._budget)
        self._parked = self._parking.parked  # closed while quiet (fd -1), reopened when they change
        self._closing: dict[FileKey, Follower] = {}  # closed since the last commit; fd held for rollback
        self._gone: dict[FileKey, str] = {}  # identities to delete at the next checkpoint -> last path
        self._sleeping: dict[FileKey, _Sleep] = {}  # positions to keep as unseen at the next checkpoint
        self._inflight: dict[FileKey, Mark] = {}
        self._inflight_gone: set[FileKey] = set()
        self._inflight_unseen: dict[FileKey, Position] = {}
        self._contents: dict[str, _Content] = {}  # by 256-byte fingerprint
        self._watches: dict[tuple[str, bool], _Watch] = {}
        self._watch_retry: dict[str, tuple[float, float]] = {}  # root -> (not before, last delay)
        self._wake = asyncio.Event()
        self._rescan = True
        self._next_scan = 0.0
        self._next_prune = 0.0
        self._more = False
        self._rr = 0
        self._opened = False
        self._closed = False
        self._warned: dict[str, float] = {}
        self._initial_waiting: set[FileKey] = set()  # found by the first scan, not opened yet
        # per scan: folder listings by inode, fingerprints of followers, files that left
        # their matched path in this scan, the per-file log lines
        self._dirs: dict[str, dict[int, os.DirEntry[str]]] = {}
        self._fp_index: dict[str, list[Follower]] | None = None
        self._lost_now: list[tuple[Follower, str]] = []
        self._filelog = FileLog()

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Scan the globs, open the files (resuming stored positions), start watching.
        Logs per file where reading starts (the first 20 files, then a summary)."""
        wf_logger = logging.getLogger("watchfiles.main")
        if wf_logger.level == logging.NOTSET:  # it logs every batch of changes at INFO
            wf_logger.setLevel(logging.WARNING)
        now = self._clock()
        self._scan(now, initial=True)
        self._opened = True
        self._update_watches(now)

    async def close(self) -> None:
        """Stop the watchers and close every file. Returns within about a second."""
        self._closed = True
        self._wake.set()
        watches = list(self._watches.values())
        self._watches.clear()
        for w in watches:
            w.stop.set()
        tasks = [w.task for w in watches]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=1.0)
            for t in pending:
                t.cancel()
        for f in [*self._followers.values(), *self._closing.values()]:
            f.close()
        self._followers.clear()
        self._closing.clear()

    async def wait(self, timeout: float | None) -> None:
        """Return when something may be readable: a file event, a rescan or close deadline,
        data left over from the last ``read()``, or ``close()``."""
        if self._closed or self._more or self._rescan or self._wake.is_set():
            return
        now = self._clock()
        delay = self._next_scan - now
        for f in self._followers.values():
            if (not f.matched or f.deleted) and f.copy_of is None:
                # a file whose close is due but held (still growing) is looked at again soon
                delay = min(delay, max(f.last_growth + self._rotate_wait(f) - now, 0.05))
        if self._parking.want and self._budget.blocked(now):
            delay = min(delay, max(self._budget.retry_at - now, 0.05))
        if timeout is not None:
            delay = min(delay, timeout)
        if delay <= 0:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

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
            deep = now >= self._next_scan
            for f in list(self._followers.values()):
                self._check(f, now, deep)
            if self._rescan or deep:
                self._scan(now)
            moved = self._balance(now)
            self._read_round_robin(out, max_bytes)
            self._settle(out, now)
            # Files still wait for a descriptor: go on as soon as the ones just read are
            # committed (and can be closed), but only while that makes progress: never spin.
            if self._parking.want and (moved or out):
                self._more = True
        except Exception:  # a bug must not stop the daemon; what was read is handed on
            logger.exception("tailer: unexpected error while reading")
        return out

    def _read_round_robin(self, out: list[Chunk], max_bytes: int) -> None:
        followers = [f for f in self._followers.values() if f.copy_of is None]
        if followers:
            self._rr = (self._rr + 1) % len(followers)
            followers = followers[self._rr:] + followers[:self._rr]
        active = [f for f in followers if f.cursor < f.size]
        budget = max_bytes
        while active and budget > 0:
            again: list[Follower] = []
            for f in active:
                if budget <= 0:
                    again.append(f)
                    continue
                try:
                    chunks, used = f.pull(min(self._chunk_bytes, budget), self._max_line(f))
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
        for f in list(self._followers.values()):
            if f.copy_of is not None:
                if f.copy_of in self._parked:
                    continue  # the original is closed while quiet: decided once it is reopened
                orig = self._followers.get(f.copy_of)
                if (orig is None or orig.fp_len != FP_MAX or orig.fp_hash != f.fp_hash
                        or f.size > max(orig.size, orig.cursor)):
                    # The original is gone (or this one outgrew it): it reads on by itself.
                    f.copy_of = None
                    self._more = self._more or f.cursor < f.size
                elif min(orig.offset, f.size) > f.offset:
                    f.offset = f.cursor = min(orig.offset, f.size)
                continue
            if not f.matched and f.source >= len(self._sources):
                self._sleep(f)  # its glob is gone (a rollback brought it back): keep its position
                continue
            if (f.matched and not f.deleted) or f.cursor < f.size:
                continue
            if now - f.last_growth < self._rotate_wait(f):
                continue
            try:
                size = os.fstat(f.fd).st_size
            except OSError:
                size = f.size
            if size > f.cursor:  # it grew after all: read on
                f.size, f.last_growth, self._more = size, now, True
                continue
            out.extend(f.flush())
            self._retire(f, now)
            logger.info("closed %s (%s, quiet for %.3gs)", f.path,
                        "deleted" if f.deleted else "rotated", self._rotate_wait(f))

    def _retire(self, f: Follower, now: float) -> None:
        """Stop following ``f``; its fd stays open until the checkpoint that records it is
        durable. A deleted file's position is deleted; a renamed one's is kept (unseen)."""
        del self._followers[f.key]
        self._closing[f.key] = f
        if f.deleted:
            self._gone[f.key] = f.path
        else:
            self._sleeping[f.key] = _Sleep(self._wall(), None)
        self._remember(f, now)

    def _sleep(self, f: Follower) -> None:
        """Stop following ``f`` (open or parked) without reading on: it no longer matches.
        Its position is kept, marked unseen, for when it matches again."""
        if self._followers.pop(f.key, None) is None:
            self._parking.take(f.key)
        self._closing[f.key] = f
        self._sleeping[f.key] = _Sleep(f.seen_wall or self._wall(), None)

    # -- file checks -------------------------------------------------------------------

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
            truncated = st.st_size < f.cursor or not self._fingerprint_ok(f, st.st_size)
        except OSError as exc:
            self._warn(f.path, "cannot read %s: %s", f.path, exc)
            return
        if truncated:
            self._truncated(f, now)
            try:
                st = os.fstat(f.fd)
            except OSError:
                return
            f.last_growth = now
        f.size, f.mtime_ns = st.st_size, st.st_mtime_ns

    def _fingerprint_ok(self, f: Follower, size: int) -> bool:
        """Whether the first ``fp_len`` bytes are unchanged; extends a short fingerprint."""
        n = min(size, FP_MAX)
        if n < f.fp_len:
            return False
        prefix = read_prefix(f.fd, n)
        if len(prefix) < f.fp_len or digest(prefix[:f.fp_len]) != f.fp_hash:
            return False
        if len(prefix) > f.fp_len:
            f.fp_len, f.fp_hash = len(prefix), digest(prefix)
        return True

    def _truncated(self, f: Follower, now: float) -> None:
        """copytruncate or truncation: recover unread lines from a copy, then start over."""
        old_len, old_hash, old_off = f.fp_len, f.fp_hash, f.offset
        committed_off = f.snap.offset if f.snap.fp_hash == old_hash else old_off
        self._remember(f, now)
        copy = self._recover(f.key, f.folder, f.source, (old_len, old_hash), old_off, committed_off, now)
        try:
            prefix = read_prefix(f.fd, FP_MAX)
        except OSError:
            prefix = b""
        f.reset(0, (len(prefix), digest(prefix)))
        unread = max(f.size - old_off, 0)
        if copy:
            logger.warning("%s was truncated; reading what was not read yet from its copy %s", f.path, copy)
        elif unread:
            logger.warning("%s was truncated; no copy found, %d unread byte(s) lost", f.path, unread)
        else:
            logger.info("%s was truncated; reading it from the start", f.path)

    def _recover(
        self, orig: FileKey, folder: str, source: int, fp: tuple[int, str], offset: int,
        committed_off: int, now: float,
    ) -> str | None:
        """Find the copy of content ``fp`` (read up to ``offset``) and read it from there.

        Candidates are the glob-matched copies linked to ``orig`` and the siblings in
        ``folder`` whose first ``fp_len`` bytes match; the largest reads on from
        ``offset``, the others hold nothing we have not read. Returns the copy's path.
        """
        fp_len, fp_hash = fp
        linked = [c for c in self._followers.values() if c.copy_of == orig]
        for c in linked:
            c.copy_of = None
        best = max(linked, key=lambda c: c.size, default=None)
        chosen: Follower | None = best if best is not None and best.size >= offset else None
        if fp_len and chosen is None:
            already = next((c for c in itertools.chain(self._followers.values(), self._parked.values())
                            if c.key != orig and (c.fp_len, c.fp_hash) == fp), None)
            if already is not None:  # adopted before a rollback: it reads on from its position
                return already.path
        exclude = (set(self._followers) | set(self._closing) | set(self._stored) | set(self._parked)
                   | set(self._unseen))
        candidates = fileid.find_copies(folder, fp_len, fp_hash, offset, exclude) if fp_len else []
        for cand in candidates:
            if chosen is not None and chosen.size >= cand.size:
                break
            opened = self._open_follower(cand.path, expect=cand.key)
            if opened is None:
                continue
            fd, st, prefix = opened
            if len(prefix) < fp_len or digest(prefix[:fp_len]) != fp_hash or st.st_size < offset:
                os.close(fd)
                continue
            chosen = Follower(cand.key, fd, cand.path, source, offset, (len(prefix), digest(prefix)), now,
                              size=st.st_size)
            # Were the batch that saw the truncation rolled back, the lines between the
            # committed offset and ``offset`` must come again: from the copy.
            chosen.snap = chosen.snap._replace(offset=min(committed_off, offset))
            self._admit(chosen, st, now, keep_open=True)
            self._rescan = True  # learn whether the copy itself is matched before closing it
            break
        for c in linked:
            end = offset if c is chosen else c.size  # the others are prefixes of what is read
            c.offset = c.cursor = max(c.offset, min(end, c.size))
        return chosen.path if chosen is not None else None

    # -- scanning ----------------------------------------------------------------------

    def _scan(self, now: float, initial: bool = False) -> None:
        """Match the globs: new files, renamed files, files gone from their paths, parked
        files that changed, files that match again."""
        self._rescan = False
        self._next_scan = now + self._scan_interval
        started = time.perf_counter()
        try:
            self._scan_once(now, initial)
        finally:
            # Thousands of files make a scan cost (a glob, a stat per file): the periodic
            # ones take at most ~1/SCAN_SHARE of the time. Files that appear or move are
            # found at once anyway (the folder watch asks for a rescan), writes to closed
            # files too (it names them).
            took = time.perf_counter() - started
            if self._next_scan >= now + self._scan_interval:  # not brought forward (a new watch)
                self._next_scan = now + max(self._scan_interval, took * SCAN_SHARE)

    def _scan_once(self, now: float, initial: bool) -> None:
        if not self._fd_probe(now):
            return  # a listing now would miss every file: keep what we know, look again later
        wall = self._wall()
        self._dirs, self._fp_index, self._lost_now = {}, None, []
        matched: dict[FileKey, tuple[str, int, os.stat_result]] = {}
        for i, src in enumerate(self._sources):
            try:
                paths = sorted(fileid.expand(src.path))  # glob, safe from symlink loops
            except OSError as exc:
                self._warn(src.path, "cannot list %s: %s", src.path, exc)
                continue
            for path in paths:
                if fileid.is_compressed(path):
                    continue  # by name: no stat, no open, nothing logged
                try:
                    st = os.stat(path)
                except OSError as exc:
                    self._warn(path, "cannot stat %s: %s", path, exc)
                    continue
                if not stat.S_ISREG(st.st_mode):
                    if stat.S_ISDIR(st.st_mode):
                        self._warn(path, "%s matches %s but is a folder; skipped", path, src.path)
                    continue
                matched.setdefault((st.st_dev, st.st_ino), (path, i, st))
        # Known identities first (and stored ones), so copies are told from new files.
        for key, (path, i, st) in matched.items():
            if key in self._sleeping:
                self._wake_sleeping(key)
            if key in self._unseen:
                self._stored[key] = self._unseen.pop(key)  # matches again: resume it by identity
            f = self._followers.get(key) or self._parked.get(key)
            if f is not None:
                if f.path != path:
                    logger.info("%s is now %s", f.path, path)
                if f.fd < 0:
                    if (f.path, f.source) != (path, i):
                        self._parking.moved(f, path, i)
                    if (st.st_size, st.st_mtime_ns) != (f.size, f.mtime_ns):
                        self._parking.wish(key, now)  # changed while closed: reopen it
                elif f.path != path:
                    f.path, f.folder = path, real_folder(path)
                f.matched, f.source, f.seen_wall = True, i, wall
            elif key in self._stored:
                self._start_stored(key, path, i, now)
        for f in list(self._followers.values()):
            if f.key not in matched:
                self._lost(f)
        for f in list(self._parked.values()):
            if f.key not in matched:
                self._lost_parked(f, now)
        if self._stored:
            self._find_rotated_while_down(matched, now)
        for key, (path, i, _st) in matched.items():
            if key not in self._followers and key not in self._parked and key not in self._stored:
                self._start_new(key, path, i, now, initial)
        if self._lost_now:
            self._check_unread_rotations(matched)
        self._dirs, self._fp_index, self._lost_now = {}, None, []
        self._expire_contents(now)
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY
            self._prune_unseen(wall)
        self._filelog.emit()
        self._filelog = FileLog()
        if self._opened:
            self._update_watches(now)

    def _find_inode(self, folder: str, key: FileKey) -> tuple[str, os.stat_result] | None:
        """Where identity ``key`` is directly in ``folder``: one listing per folder and scan."""
        index = self._dirs.get(folder)
        if index is None:
            index = self._dirs[folder] = fileid.inode_index(folder)
        return fileid.entry_path(index, key)

    def _lost(self, f: Follower) -> None:
        """``f`` is at no matched path: renamed away or deleted. Find its new name."""
        if f.matched:
            f.matched = False
            if f.source < len(self._sources):
                self._lost_now.append((f, f.path))
                if not f.deleted:
                    logger.info("%s was rotated away; following it for rotate_wait", f.path)
        if f.deleted:
            return
        try:
            st = os.stat(f.path)
            if (st.st_dev, st.st_ino) == f.key:
                return
        except OSError:
            pass
        found = self._find_inode(f.folder, f.key)
        if found is not None:
            f.path = found[0]

    def _wake_sleeping(self, key: FileKey) -> None:
        """A file whose end of following is not committed yet matches again: take it back."""
        sleep = self._sleeping.pop(key)
        self._gone.pop(key, None)
        f = self._closing.pop(key, None)
        if f is None:
            if sleep.pos is not None:
                self._stored[key] = sleep.pos
            return
        if f.fd >= 0:
            self._followers[key] = f
        else:
            self._parking.park(f)

    def _check_unread_rotations(self, matched: dict[FileKey, tuple[str, int, os.stat_result]]) -> None:
        """Warn when a file that just left its name was replaced more than once since errord
        last looked: a sibling named like its rotation, unknown, written since then."""
        known = (set(matched) | set(self._followers) | set(self._parked) | set(self._closing)
                 | set(self._stored) | set(self._unseen))
        for f, live in self._lost_now:
            for path, size in fileid.unread_rotations(os.path.dirname(live), os.path.basename(live),
                                                      f.seen_wall, known):
                self._warn(path, "%s was replaced more than once while errord was not reading it (a stall "
                           "during two rotations, or two rotations faster than errord looks): %s (%s bytes, "
                           "written after errord last saw %s) was never read; a glob that also matches the "
                           "rotated names (e.g. %s*) would have read it",
                           live, path, f"{size:,}", live, live)

    def _prune_unseen(self, wall: float) -> None:
        """Forget positions of files that have not matched for ``KEEP_UNSEEN``."""
        old = [k for k, p in self._unseen.items() if wall - (_unseen_since(p) or wall) > KEEP_UNSEEN]
        for key in old:
            self._gone[key] = self._unseen.pop(key).path
        if old:
            logger.info("forgot the positions of %d file(s) that have not matched for %s days",
                        len(old), f"{KEEP_UNSEEN / 86400:g}")

    def _start_stored(self, key: FileKey, path: str, source: int, now: float) -> None:
        """A file with a stored position: resume it, or start over if its content changed."""
        if not self._may_open(now):
            return  # stays in _stored: retried at the next scan
        opened = self._open_follower(path, expect=key)
        if opened is None:
            return  # stays in _stored: retried at the next scan
        fd, st, prefix = opened
        pos = self._stored.pop(key)
        again = _unseen_since(pos) is not None
        fp = (len(prefix), digest(prefix))
        if _same_content(pos, prefix, st.st_size):
            f = Follower(key, fd, path, source, pos.offset, fp, now, size=st.st_size,
                         lines_read=pos.lines_read, lines_skipped=pos.lines_skipped)
            # A copy linked to its original stays linked (or reads on, if the original changed).
            f.copy_of = stored_copy_of(pos)
            f.snap = Mark(pos.offset, pos.lines_read, pos.lines_skipped, pos.fp_len, pos.fp_hash,
                          pos.path, pos.source, f.copy_of)
            f.fresh = again  # written again without the "unseen" mark
            self._admit(f, st, now, keep_open=f.copy_of is not None)
            left = max(st.st_size - pos.offset, 0)
            if again:
                self._filelog.add("matching again", logging.INFO, "%s matches again: resuming at its stored "
                                  "position %s (%s bytes to read)", path, f"{pos.offset:,}", f"{left:,}")
            else:
                self._filelog.add("at their stored position", logging.INFO, "reading %s from its stored "
                                  "position %s (%s bytes to read)", path, f"{pos.offset:,}", f"{left:,}")
            return
        self._filelog.add("changed while not followed", logging.WARNING, "%s changed while errord was not "
                          "reading it (truncated or a new file on a reused inode); reading it from the start",
                          path)
        self._admit(Follower(key, fd, path, source, 0, fp, now, size=st.st_size), st, now)
        copy = self._recover(key, real_folder(path), source, (pos.fp_len, pos.fp_hash), pos.offset,
                             pos.offset, now)
        if copy:
            logger.warning("reading the rest of the old content of %s from its copy %s", path, copy)

    def _find_rotated_while_down(self, matched: dict[FileKey, tuple[str, int, os.stat_result]],
                                 now: float) -> None:
        """Stored positions at no matched path: renamed while we were down, or no longer
        matching (kept, unseen).

        (After ``open()`` only positions whose file could not be opened are left here.)
        """
        for key, pos in list(self._stored.items()):
            if key in matched:
                continue  # matched but could not be opened: retried at the next scan
            if not self._may_open(now):
                return  # out of descriptors: look again later
            del self._stored[key]
            since = _unseen_since(pos) or self._wall()
            if _names(pos.path, key):  # still there, just not matched: its glob changed
                self._sleeping[key] = _Sleep(since, pos)
                continue
            found = None
            if pos.source < len(self._sources) and fileid.folder_may_match(
                self._sources[pos.source].path, os.path.dirname(pos.path)
            ):
                found = self._find_inode(os.path.dirname(pos.path), key)
            opened = self._open_follower(found[0], expect=key) if found else None
            if found and opened is not None:
                fd, st, prefix = opened
                if _same_content(pos, prefix, st.st_size):
                    f = Follower(key, fd, found[0], pos.source, pos.offset,
                                 (len(prefix), digest(prefix)), now, size=st.st_size,
                                 lines_read=pos.lines_read, lines_skipped=pos.lines_skipped)
                    f.matched = False
                    f.copy_of = stored_copy_of(pos)
                    f.fresh = True  # its path changed: write it
                    self._admit(f, st, now, keep_open=f.copy_of is not None)
                    self._filelog.add("renamed while errord was down", logging.INFO, "%s was renamed to %s "
                                      "while errord was down; reading the rest", pos.path, found[0])
                    continue
                os.close(fd)
            self._sleeping[key] = _Sleep(since, pos)  # found nowhere: kept in case it comes back

    def _start_new(self, key: FileKey, path: str, source: int, now: float, initial: bool) -> None:
        """A file seen for the first time: per ``start_at`` on the first start, else from 0
        (or, for a copy of content we have read, from where we were in it)."""
        initial = initial or key in self._initial_waiting
        if not self._may_open(now):
            if initial:
                self._initial_waiting.add(key)
            return
        opened = self._open_follower(path, expect=key)
        if opened is None:
            if initial and self._budget.blocked(now):
                self._initial_waiting.add(key)
            return
        self._initial_waiting.discard(key)
        fd, st, prefix = opened
        fp = (len(prefix), digest(prefix))
        src = self._sources[source]
        if initial and self._first_start:
            offset, skip = 0, False
            if getattr(src, "start_at", "end") == "end":
                offset, skip = end_of_last_line(fd, st.st_size, self._max_line_src(src))
            f = Follower(key, fd, path, source, offset, fp, now, size=st.st_size)
            if skip:  # inside a line too long to look back over: drop its tail silently
                f.cursor, f.skipping, f.count_skip = st.st_size, True, False
            skipped = st.st_size if skip else offset
            if skipped:
                self._filelog.add("from their end", logging.INFO, 'reading %s from its end: skipping %s '
                                  'existing bytes; set start_at = "beginning" to read them', path,
                                  f"{skipped:,}")
            else:
                self._filelog.add("from their start", logging.INFO, "reading %s from its start (%s bytes)",
                                  path, f"{st.st_size:,}")
            self._admit(f, st, now)
            return
        offset, copy_of = self._copy_start(fd, st.st_size, prefix, now)
        f = Follower(key, fd, path, source, offset, fp, now, size=st.st_size)
        f.copy_of = copy_of
        f.snap = f.mark()
        self._admit(f, st, now, keep_open=copy_of is not None)
        if offset:
            self._filelog.add("copies of content already read", logging.INFO, "%s is a copy of content "
                              "already read; starting it at %d", path, offset)
        elif self._opened:
            self._filelog.add("new", logging.INFO, "new file %s", path)
        else:
            self._filelog.add("from their start", logging.INFO, "reading %s from its start (%s bytes)",
                              path, f"{st.st_size:,}")

    def _copy_start(self, fd: int, size: int, prefix: bytes, now: float) -> tuple[int, FileKey | None]:
        """Where a new file starts if it is a copy of content we read: ``(offset, original)``.

        A copy has the same 256 first bytes *and* the same bytes just before where we were
        in that content (so a new log that merely starts with the same lines is not one).
        A copy of a file we still follow is linked to it: it reads nothing by itself while
        the original is read, and reads on from there if the original is truncated. (A
        parked original is compared with the bytes before its offset, kept in memory, and
        reopened soon to see whether it was truncated.)
        """
        if len(prefix) < FP_MAX:
            return 0, None
        h = digest(prefix)
        if self._fp_index is None:
            self._fp_index = {}
            for o in itertools.chain(self._followers.values(), self._parked.values()):
                if o.fp_len == FP_MAX:
                    self._fp_index.setdefault(o.fp_hash, []).append(o)
        for o in self._fp_index.get(h, ()):
            if o.fp_len != FP_MAX or o.fp_hash != h:
                continue
            if o.fd < 0:
                k = len(o.tail)
                if k and size >= o.offset and o.key in self._parked and _pread(fd, k, o.offset - k) == o.tail:
                    self._parking.wish(o.key, now)
                    return o.offset, o.key
                continue
            if o.key not in self._followers:
                continue
            root = self._followers.get(o.copy_of, o) if o.copy_of else o
            if root.fd < 0:
                continue
            start = min(root.offset, size)
            end = min(size, max(root.size, root.cursor))
            if _same_bytes(fd, root.fd, start) and (end <= start or _same_bytes(fd, root.fd, end)):
                return start, root.key
        seen = self._contents.get(h)
        if seen is not None and size >= seen.offset and seen.tail:
            k = len(seen.tail)
            if _pread(fd, k, seen.offset - k) == seen.tail:
                return seen.offset, None
        return 0, None

    def _open_follower(self, path: str | None, expect: FileKey) -> tuple[int, os.stat_result, bytes] | None:
        """Open ``path``, check it is still ``expect``, read its fingerprint prefix."""
        if path is None:
            return None
        try:
            fd = fileid.open_readonly(path)
        except OSError as exc:
            if exc.errno in OUT_OF_FDS:  # one warning for all files, not one per file
                self._budget.exhausted(self._clock(), self._open_count(), len(self._parking.want), exc.errno)
            else:
                self._warn(path, "cannot open %s: %s (retrying)", path, exc)
            return None
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != expect or not stat.S_ISREG(st.st_mode):
                os.close(fd)
                self._rescan = True  # replaced between stat and open: look again
                return None
            return fd, st, read_prefix(fd, FP_MAX)
        except OSError as exc:
            os.close(fd)
            self._warn(path, "cannot read %s: %s (retrying)", path, exc)
            return None

    # -- content memory (to recognise copies) ------------------------------------------

    def _remember(self, f: Follower, now: float) -> None:
        """Keep where we were in ``f``'s content, which is about to be closed or truncated
        away, so that a copy of it found later starts there instead of at 0."""
        if f.fp_len != FP_MAX or not f.tail or f.copy_of is not None:
            return
        prev = self._contents.get(f.fp_hash)
        if prev is not None and prev.offset > f.offset:
            return
        keep = max([CONTENT_MEMORY, *(self._rotate_wait_src(s) for s in self._sources)])
        self._contents[f.fp_hash] = _Content(f.offset, f.tail, now + keep)

    def _expire_contents(self, now: float) -> None:
        for h in [h for h, c in self._contents.items() if c.expires < now]:
            del self._contents[h]

    # -- checkpoints -------------------------------------------------------------------

    def account(self, key: FileKey, lines: int, skipped: int) -> None:
        """Add the line counters of a chunk the daemon parsed."""
        f = self._followers.get(key) or self._closing.get(key) or self._parked.get(key)
        if f is not None:
            f.lines_read += lines
            f.lines_skipped += skipped

    def checkpoint(self) -> list[Position]:
        """Positions changed since the last commit, ``gone=True`` for deleted identities,
        and the positions kept (marked unseen) of files no longer followed."""
        out: list[Position] = []
        self._inflight = {}
        dirty = [f for k in self._parking.dirty if (f := self._parked.get(k)) is not None]
        for f in itertools.chain(self._followers.values(), dirty):
            m = f.mark()
            if f.fresh or m != f.snap:
                out.append(f.position())
                self._inflight[f.key] = m
        for k in [k for k in self._gone if k in self._followers or k in self._parked]:
            del self._gone[k]  # the identity is back (inode reuse)
            old = self._closing.pop(k, None)
            if old is not None:
                old.close()
        self._inflight_gone = set(self._gone)
        for k in self._inflight_gone:
            out.append(Position(dev=k[0], ino=k[1], path=self._gone[k], offset=0, gone=True))
        self._inflight_unseen = {}
        for k, sleep in self._sleeping.items():
            f = self._closing.get(k)
            pos = f.position() if f is not None else sleep.pos
            if pos is None:
                continue
            extra = {n: v for n, v in pos.extra.items() if n != "copy_of"}  # no longer linked
            extra[UNSEEN] = sleep.since
            p = dataclasses.replace(pos, extra=extra, gone=False)
            out.append(p)
            self._inflight_unseen[k] = p
        return out

    def committed(self) -> None:
        """The last checkpoint is durable."""
        for key, m in self._inflight.items():
            f = self._followers.get(key) or self._parked.get(key)
            if f is not None:
                f.snap, f.fresh = m, False
                if f.fd < 0 and f.mark() == m:
                    self._parking.dirty.discard(key)
        for key in self._inflight_gone:
            self._gone.pop(key, None)
            f = self._closing.pop(key, None)
            if f is not None:
                f.close()
        for key, p in self._inflight_unseen.items():
            self._sleeping.pop(key, None)
            f = self._closing.pop(key, None)
            if f is not None:
                f.close()
            self._unseen[key] = p
        self._inflight, self._inflight_gone, self._inflight_unseen = {}, set(), {}

    def rollback(self) -> None:
        """The last checkpoint failed: rewind to the last commit so the same lines come again."""
        for key, f in list(self._closing.items()):
            if key in self._followers or key in self._parked:
                f.close()
                continue
            if f.fd >= 0:
                self._followers[key] = f
            else:
                self._parking.park(f)  # parked, so at its committed state already
            self._gone.pop(key, None)
            self._sleeping.pop(key, None)
        self._closing.clear()
        for f in self._followers.values():
            f.restore(f.snap)
        self._inflight, self._inflight_gone, self._inflight_unseen = {}, set(), {}
        self._more = True

    # -- status and configuration ------------------------------------------------------

    def files(self) -> list[FileStatus]:
        """Every followed file (open, or closed while quiet)."""
        out = []
        for f in self._followers.values():
            try:
                size = os.fstat(f.fd).st_size
            except OSError:
                size = f.size
            out.append(FileStatus(f.path, f.offset, size, f.lines_read, f.lines_skipped, f.source))
        for f in self._parked.values():
            out.append(FileStatus(f.path, f.offset, max(f.size, 0), f.lines_read, f.lines_skipped, f.source))
        return out

    def reconfigure(self, sources: Sequence[Any]) -> None:
        """SIGHUP: a new source list. Followers of files still matched keep their positions;
        rotated files of a glob that is still configured are drained; the others are closed,
        their positions kept (unseen) in case they match again."""
        old = self._sources
        self._sources = list(sources)
        index = {src.path: i for i, src in enumerate(self._sources)}
        unknown = len(self._sources)  # out of range until a scan matches the file again
        for f in itertools.chain(self._followers.values(), self._parked.values()):
            j = index.get(old[f.source].path) if f.source < len(old) else None
            if f.fd < 0 and (unknown if j is None else j) != f.source:
                self._parking.moved(f, source=unknown if j is None else j)  # written at the next checkpoint
            f.source = unknown if j is None else j
        self._scan(self._clock())
        log = FileLog()
        for f in list(self._followers.values()):
            if f.matched or f.source != unknown:
                continue
            self._sleep(f)
        for f in self._closing.values():
            if f.key in self._sleeping and f.source == unknown:
                log.add("no longer matching", logging.INFO, "%s no longer matches a source; closing it, its "
                        "position (%s) is kept in case it matches again", f.path, f"{f.offset:,}")
        log.emit()
        self._wake.set()

    # -- watching ----------------------------------------------------------------------

    def _update_watches(self, now: float) -> None:
        """Watch the roots the globs need now; restart watches whose folder was replaced
        (and, with a back-off, those that failed: a watch that cannot start, e.g. out of
        descriptors, must not be retried in a loop)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        wanted: dict[str, bool] = {}
        for src in self._sources:
            root, recursive = fileid.watch_root(src.path)
            wanted[root] = wanted.get(root, False) or recursive
        for key, w in list(self._watches.items()):
            root, recursive = key
            if wanted.get(root) == recursive and not w.task.done() and _ino(root) == w.ino:
                continue
            w.stop.set()
            del self._watches[key]
        for root, recursive in wanted.items():
            if (root, recursive) in self._watches:
                continue
            retry = self._watch_retry.get(root)
            if retry is not None and now < retry[0]:
                continue
            stop = asyncio.Event()
            task = asyncio.create_task(self._watch(root, recursive, stop), name=f"errord-watch:{root}")
            self._watches[(root, recursive)] = _Watch(task, stop, _ino(root))
            # Files created before the watch is live are found by an early rescan.
            self._next_scan = min(self._next_scan, now + min(0.2, self._scan_interval))

    async def _watch(self, root: str, recursive: bool, stop: asyncio.Event) -> None:
        try:
            async for changes in awatch(
                root, watch_filter=None, debounce=self._debounce, step=self._step, stop_event=stop,
                rust_timeout=1000, recursive=recursive, ignore_permission_denied=True,
            ):
                self._watch_retry.pop(root, None)
                if any(change != Change.modified for change, _ in changes):
                    self._rescan = True
                if self._parked:  # a write to a closed file: reopen it now, not at the next scan
                    now = self._clock()
                    for _change, path in changes:
                        key = self._parking.by_path.get(path)
                        if key is not None:
                            self._parking.wish(key, now)
                            self._more = True
                self._wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # e.g. the folder vanished: the scans go on, the watch is retried
            now = self._clock()
            delay = min(60.0, max(1.0, 2 * self._watch_retry.get(root, (0.0, 0.0))[1]))
            self._watch_retry[root] = (now + delay, delay)
            err = _out_of_fds(exc)
            if err:  # said once for everything that wants a descriptor
                self._budget.exhausted(now, self._open_count(), len(self._parking.want), err)
            else:
                self._warn(root, "cannot watch %s: %s (relying on rescans; retrying in %.0fs)", root, exc, delay)

    # -- small helpers -----------------------------------------------------------------

    def _rotate_wait(self, f: Follower) -> float:
        return self._rotate_wait_src(self._sources[f.source]) if f.source < len(self._sources) else 0.0

    @staticmethod
    def _rotate_wait_src(src: Any) -> float:
        return float(getattr(src, "rotate_wait", 60.0))

    def _max_line(self, f: Follower) -> int:
        return self._max_line_src(self._sources[f.source]) if f.source < len(self._sources) else 1 << 20

    @staticmethod
    def _max_line_src(src: Any) -> int:
        return int(getattr(src, "max_line_bytes", 1 << 20))

    def _warn(self, path: str, msg: str, *args: Any) -> None:
        """Log a problem with ``path`` at most once per WARN_EVERY seconds."""
        now = self._clock()
        if now - self._warned.get(path, -WARN_EVERY) >= WARN_EVERY:
            self._warned[path] = now
            logger.warning(msg, *args)
        else:
            logger.debug(msg, *args)


def _unseen_since(pos: Position) -> float | None:
    """When a kept position's file last matched (None: it is followed)."""
    raw = pos.extra.get(UNSEEN) if isinstance(pos.extra, dict) else None
    return float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None


def _out_of_fds(exc: BaseException) -> int:
    """EMFILE/ENFILE behind an error (watchfiles' own errors name it only in their text)."""
    if isinstance(exc, OSError) and exc.errno in OUT_OF_FDS:
        return exc.errno
    text = str(exc)
    return next((e for e in OUT_OF_FDS if f"(os error {e})" in text), 0)


def _names(path: str, key: FileKey) -> bool:
    """Whether ``path`` names the file with identity ``key``."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == key


def _same_content(pos: Position, prefix: bytes, size: int) -> bool:
    """Whether a file still holds the content a stored position was taken in."""
    return (len(prefix) >= pos.fp_len and digest(prefix[:pos.fp_len]) == pos.fp_hash
            and size >= pos.offset)


def _pread(fd: int, n: int, offset: int) -> bytes:
    try:
        return os.pread(fd, n, offset)
    except OSError:
        return b""


def _same_bytes(fd_a: int, fd_b: int, end: int) -> bool:
    """Whether two files hold the same (up to) 256 bytes just before ``end``."""
    k = min(FP_MAX, end)
    try:
        a = os.pread(fd_a, k, end - k)
        return len(a) == k and a == os.pread(fd_b, k, end - k)
    except OSError:
        return False


def _ino(path: str) -> int:
    try:
        return os.stat(path).st_ino
    except OSError:
        return -1
