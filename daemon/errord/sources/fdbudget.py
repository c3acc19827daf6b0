"""File descriptors for log files: the open-file limit, and how many files may be open at once.

errord holds one descriptor per file it follows. Services start with a soft limit of 1,024
(systemd's default; the hard limit is usually far higher), so at start the daemon raises
the soft limit to the hard one (:func:`raise_open_file_limit`); where that is refused (a
seccomp filter, a container) it runs on with what it has.

The tailer then keeps at most :attr:`FdBudget.files` files open, leaving a reserve for the
journal, sockets, folder watches and child processes. When more files match, it closes
the ones that are quiet (read to their end, nothing uncommitted, the least recently grown
first) and reopens them by identity when they change, as Filebeat's ``close_inactive``
does (:mod:`errord.sources.tail`). When the system still says EMFILE/ENFILE (something else holds
descriptors, or the system-wide table is full), :meth:`FdBudget.exhausted` lowers the cap
to what is open, stops opening more for a while (1 s, doubling up to 60 s) and logs one
warning (again at most every 10 minutes): the files already open are read on, the others
wait, nothing spins.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import logging
import os
import resource
import stat
import time
from collections.abc import Callable, Iterable
from typing import Any

from errord.sources import fileid
from errord.sources.fileid import FP_MAX
from errord.sources.follower import Follower, real_folder
from errord.model import FileKey

__all__ = ["Descriptors", "FdBudget", "Parking", "raise_open_file_limit", "soft_limit", "OUT_OF_FDS"]

logger = logging.getLogger(__name__)

OUT_OF_FDS = (errno.EMFILE, errno.ENFILE)
MIN_FILES = 8  # never fewer files open than this, whatever the limit says
RETRY_MIN, RETRY_MAX = 1.0, 60.0  # seconds before opening more after EMFILE/ENFILE
WARN_EVERY = 600.0  # seconds between warnings about running out
SLACK = 4  # descriptors given back after EMFILE, for folder listings and the journal
NR_OPEN = "/proc/sys/fs/nr_open"  # the kernel's ceiling for RLIMIT_NOFILE

GetLimit = Callable[[int], tuple[int, int]]
SetLimit = Callable[[int, tuple[int, int]], None]


def raise_open_file_limit(get: GetLimit = resource.getrlimit, set_: SetLimit = resource.setrlimit) -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one; return the soft limit now in force.

    Logs what it did. A refusal (EPERM from a syscall filter, …) is logged and errord runs
    on with the limit it has. ``get``/``set_`` are :mod:`resource`'s functions (a test
    hands in a refusing one: no unprivileged process can make the kernel refuse this).
    """
    try:
        soft, hard = get(resource.RLIMIT_NOFILE)
    except (OSError, ValueError) as exc:
        logger.warning("cannot read the open-file limit: %s", exc)
        return -1
    target = hard
    if hard == resource.RLIM_INFINITY or hard > _nr_open():
        target = _nr_open()  # the kernel refuses more than nr_open, even to root
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            set_(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as exc:
            logger.warning("could not raise the open-file limit from %d to %d (%s); running with %d: when "
                           "more files match, errord closes quiet ones and reopens them when they change",
                           soft, target, exc, soft)
            return soft
        logger.info("raised the open-file limit (RLIMIT_NOFILE) from %d to %d", soft, target)
        return target
    logger.info("open-file limit (RLIMIT_NOFILE): %d", soft)
    return soft


def soft_limit() -> int:
    """The soft open-file limit in force now (1,024 if it cannot be read)."""
    try:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (OSError, ValueError):
        return 1024
    return _nr_open() if soft == resource.RLIM_INFINITY else soft


def _nr_open() -> int:
    try:
        with open(NR_OPEN) as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return 1 << 20


def reserve(limit: int) -> int:
    """Descriptors kept for everything but log files: the journal (and a second connection
    per sink thread), the event loop, sockets, folder watches, the notify helper's pipes,
    a reload's child process, transient opens (folder listings, fingerprints)."""
    return 64 + limit // 16


class FdBudget:
    """How many log files the tailer may hold open now.

    ``files``: the budget (default: the soft limit less :func:`reserve`). ``cap(now)`` is
    ``files``, or less for a while after the system said EMFILE/ENFILE (``exhausted``).
    """

    def __init__(self, files: int | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = soft_limit()
        self.files = files if files is not None else max(MIN_FILES, self.limit - reserve(self.limit))
        self._clock = clock
        self._cap = self.files
        self.retry_at = 0.0
        self._delay = 0.0
        self._warned_at: float | None = None
        self._told_pressure = False

    def cap(self, now: float) -> int:
        """How many files may be open at ``now``."""
        if self._cap < self.files and now >= self.retry_at:
            self._cap = self.files  # try again; a new EMFILE backs off longer
        return self._cap

    def blocked(self, now: float) -> bool:
        """Whether opening more files is suspended after EMFILE/ENFILE."""
        return now < self.retry_at

    def exhausted(self, now: float, open_files: int, waiting: int, err: int = errno.EMFILE) -> None:
        """The system refused a descriptor: hold at what is open, back off, say so (rate-limited)."""
        self._cap = max(1, min(self._cap, open_files - SLACK))
        if now < self.retry_at:
            return  # already backing off
        if now - self.retry_at > RETRY_MAX:  # the last time is long past: start the back-off afresh
            self._delay = 0.0
        self._delay = min(RETRY_MAX, max(RETRY_MIN, self._delay * 2))
        self.retry_at = now + self._delay
        if self._warned_at is None or now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            what = "the system's file table is full (ENFILE)" if err == errno.ENFILE else (
                f"the open-file limit ({self.limit}) is reached (EMFILE)")
            logger.warning("out of file descriptors: %s with %d log file(s) open; reading those, %d file(s) "
                           "wait and are retried in %.0fs (raise LimitNOFILE= or the hard limit; warned at "
                           "most every %.0f min)", what, open_files, waiting, self._delay, WARN_EVERY / 60)

    def pressure(self, matched: int) -> None:
        """Say once that more files match than are kept open."""
        if not self._told_pressure:
            self._told_pressure = True
            logger.info("%d files match, more than the %d errord keeps open (open-file limit %d): quiet files "
                        "are closed and reopened when they change", matched, self.files, self.limit)


class Parking:
    """Followers closed for want of descriptors (*parked*) and those waiting to reopen.

    A parked follower keeps everything but its descriptor; its state is always its last
    committed one (only followers with nothing uncommitted are parked), except for the
    path or source a scan updated, which ``dirty`` lists for the next checkpoint.
    """

    def __init__(self, budget: FdBudget) -> None:
        self.budget = budget
        self.parked: dict[FileKey, Follower] = {}
        self.want: dict[FileKey, float] = {}  # parked identities to reopen, oldest wish first
        self.dirty: set[FileKey] = set()
        self.by_path: dict[str, FileKey] = {}  # for the folder watch: a write to a parked file

    def park(self, f: Follower) -> None:
        """Close ``f``'s descriptor and keep it here."""
        f.park()
        self.parked[f.key] = f
        self.by_path[f.path] = f.key
        if f.fresh or f.mark() != f.snap:
            self.dirty.add(f.key)

    def take(self, key: FileKey) -> Follower | None:
        """Remove a parked follower (to reopen it, or to stop following it)."""
        self.want.pop(key, None)
        self.dirty.discard(key)
        f = self.parked.pop(key, None)
        if f is not None and self.by_path.get(f.path) == key:
            del self.by_path[f.path]
        return f

    def wish(self, key: FileKey, now: float) -> None:
        """Reopen ``key`` when there is room (it changed, or has unread bytes)."""
        if key in self.parked:
            self.want.setdefault(key, now)

    def moved(self, f: Follower, path: str | None = None, source: int | None = None) -> None:
        """A scan found parked ``f`` at another path or for another source."""
        if path is not None:
            if self.by_path.get(f.path) == f.key:
                del self.by_path[f.path]
            f.path, f.folder = path, real_folder(path)
            self.by_path[path] = f.key
        if source is not None:
            f.source = source
        self.dirty.add(f.key)

    def wishes(self, n: int) -> list[FileKey]:
        """The ``n`` oldest wishes."""
        return list(itertools.islice(self.want, max(n, 0)))

    @staticmethod
    def quietest(followers: Iterable[Follower], n: int) -> list[Follower]:
        """Up to ``n`` open followers that can be closed losing nothing, least recently
        grown first: read to their end, nothing read since the last commit, not the
        original of a copy."""
        if n <= 0:
            return []
        fs = list(followers)
        linked = {f.copy_of for f in fs if f.copy_of is not None}
        ready = [f for f in fs if f.cursor >= f.size and f.key not in linked and f.parkable()
                 and f.reads_committed()]
        return heapq.nsmallest(n, ready, key=lambda f: f.last_growth)


class Descriptors:
    """The tailer's side of the budget, mixed into :class:`errord.sources.tail.Tailer`: admit a
    newly opened follower or park it, close the quietest to reopen the changed ones
    (``_balance``), reopen by identity (``_unpark``), follow a parked file that left its
    glob. It uses the tailer's state declared below and the few methods it names."""

    _sources: list[Any]
    _followers: dict[FileKey, Follower]
    _closing: dict[FileKey, Follower]
    _parked: dict[FileKey, Follower]
    _parking: Parking
    _budget: FdBudget
    _fp_index: dict[str, list[Follower]] | None
    _lost_now: list[tuple[Follower, str]]
    _rescan: bool
    _clock: Callable[[], float]
    _wall: Callable[[], float]

    def _check(self, f: Follower, now: float, deep: bool) -> None:
        raise NotImplementedError

    def _sleep(self, f: Follower) -> None:
        raise NotImplementedError

    def _find_inode(self, folder: str, key: FileKey) -> tuple[str, os.stat_result] | None:
        raise NotImplementedError

    def _rotate_wait(self, f: Follower) -> float:
        raise NotImplementedError

    def _open_count(self) -> int:
        return len(self._followers) + sum(1 for f in self._closing.values() if f.fd >= 0)

    def _admit(self, f: Follower, st: os.stat_result, now: float, keep_open: bool = False) -> None:
        """A follower just opened: keep its descriptor if there is room, else park it
        (and reopen it when there is, if it has bytes to read)."""
        f.seen_wall = self._wall()
        if keep_open or not f.parkable() or self._open_count() < self._budget.cap(now):
            self._followers[f.key] = f
        else:
            self._budget.pressure(len(self._followers) + len(self._parked) + 1)
            f.size, f.mtime_ns = st.st_size, st.st_mtime_ns
            self._parking.park(f)
            if f.offset < st.st_size:
                self._parking.wish(f.key, now)
        if self._fp_index is not None and f.fp_len == FP_MAX:
            self._fp_index.setdefault(f.fp_hash, []).append(f)

    def _may_open(self, now: float) -> bool:
        """Whether to try a (transient) open now: not while backing off after EMFILE,
        unless a descriptor of our own is free."""
        return not self._budget.blocked(now) or self._open_count() < self._budget.cap(now)

    def _balance(self, now: float) -> bool:
        """Reopen parked files that changed, closing the quietest open ones to make room.
        Returns whether anything was closed or opened."""
        want = self._parking.want
        room = self._budget.cap(now) - self._open_count()
        if not want and room >= 0:
            return False
        moved = False
        if len(want) > room:
            self._budget.pressure(len(self._followers) + len(self._parked))
            for f in Parking.quietest(self._followers.values(), len(want) - room):
                del self._followers[f.key]
                self._parking.park(f)
                moved = True
            room = self._budget.cap(now) - self._open_count()
        for key in self._parking.wishes(room):
            done = self._unpark(key, now)
            if done is None:
                break  # out of descriptors
            moved = moved or done
        return moved

    def _unpark(self, key: FileKey, now: float) -> bool | None:
        """Reopen a parked follower by identity. None: no descriptor to be had."""
        f = self._parked[key]
        try:
            fd = fileid.open_readonly(f.path)
        except OSError as exc:
            if exc.errno in OUT_OF_FDS:
                self._budget.exhausted(now, self._open_count(), len(self._parking.want), exc.errno)
                return None
            self._parking.want.pop(key, None)
            self._rescan = True  # moved or removed: the next scan finds it by inode, or lets it go
            return False
        try:
            st = os.fstat(fd)
        except OSError:
            st = None
        if st is None or (st.st_dev, st.st_ino) != key or not stat.S_ISREG(st.st_mode):
            os.close(fd)
            self._parking.want.pop(key, None)
            self._rescan = True  # the path names another file now: the scan looks for this one
            return False
        self._parking.take(key)
        f.fd = fd
        self._followers[key] = f
        self._check(f, now, deep=True)  # truncated or replaced while closed: as when open
        return True

    def _fd_probe(self, now: float) -> bool:
        """Whether a descriptor is free for listing folders. Out of them, a glob comes back
        empty (Python's glob swallows EMFILE) and every file would look rotated away."""
        try:
            fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in OUT_OF_FDS:
                self._budget.exhausted(now, self._open_count(), len(self._parking.want), exc.errno)
                return False
            return True
        os.close(fd)
        return True

    def _lost_parked(self, f: Follower, now: float) -> None:
        """A parked file at no matched path: its glob is gone, or it was renamed or
        deleted while closed. A renamed one is followed by inode for ``rotate_wait``
        (reopened if it grows), then closed for good; its position is kept either way."""
        if f.source >= len(self._sources):
            self._sleep(f)
            return
        if f.matched:
            f.matched = False
            self._lost_now.append((f, f.path))
            logger.info("%s was rotated away; following it for rotate_wait", f.path)
        found: tuple[str, os.stat_result] | None = None
        try:
            st = os.stat(f.path)
            if (st.st_dev, st.st_ino) == f.key:
                found = (f.path, st)
        except OSError:
            pass
        if found is None:
            found = self._find_inode(f.folder, f.key)
        if found is None:  # deleted, or moved out of its folder: nothing to read here
            self._sleep(f)
            return
        path, st = found
        if path != f.path:
            self._parking.moved(f, path)
        if (st.st_size, st.st_mtime_ns) != (f.size, f.mtime_ns) or (
                st.st_size > f.offset and now - f.last_growth >= self._rotate_wait(f)):
            self._parking.wish(f.key, now)  # grew, or ends in a partial line to hand on at close
        elif now - f.last_growth >= self._rotate_wait(f):
            self._sleep(f)
