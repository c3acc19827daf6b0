"""File descriptors for log files: the open-file limit, and how many files may be open at once.

errord holds one descriptor per file it follows. Services start with a soft limit of 1,024
(systemd's default; the hard limit is usually far higher), so at start the daemon raises
the soft limit to the hard one (:func:`raise_open_file_limit`); where that is refused (a
seccomp filter, a container) it runs on with what it has.

The tailer then keeps at most :attr:`FdBudget.files` files open, leaving a reserve for the
journal, sockets, folder watches and child processes (:class:`Descriptors` opens and
closes them for it). When more files match, the ones that are quiet (read to their end,
nothing uncommitted, the least recently grown first) are *parked*: closed, with identity,
position, fingerprint and counters kept, as Filebeat's ``close_inactive`` does. The scans
stat every matched path anyway: a parked file whose size or mtime changed is reopened by
identity (a path that now names another inode is not it) and checked as usual
(truncation, fingerprint); one that left the glob is looked for by inode among its
siblings (rotated while closed) and closed for good after ``rotate_wait``, keeping its
position (:mod:`errord.sources.scan`); lines appended just before a deletion while it was
parked are gone with it.

When the system still says EMFILE/ENFILE (something else holds descriptors, or the
system-wide table is full), :meth:`FdBudget.exhausted` lowers the cap to what is open,
stops opening more for a while (1 s, doubling up to 60 s) and logs one warning, once,
saying how to raise the limit (``LimitNOFILE=``, ``ulimit -n``; later refusals at DEBUG):
the files already open are read on, the others wait, nothing spins.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import stat
import time
from collections.abc import Callable

from errord.model import FileKey
from errord.ratelimit import RateLimit
from errord.sources import fileid
from errord.sources.fileid import FP_MAX, read_prefix
from errord.sources.follower import Follower
from errord.sources.table import FileTable

__all__ = ["OUT_OF_FDS", "Descriptors", "FdBudget", "raise_open_file_limit", "soft_limit"]

logger = logging.getLogger(__name__)

OUT_OF_FDS = (errno.EMFILE, errno.ENFILE)
MIN_FILES = 8  # never fewer files open than this, whatever the limit says
RETRY_MIN, RETRY_MAX = 1.0, 60.0  # seconds before opening more after EMFILE/ENFILE
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
            logger.warning(
                "could not raise the open-file limit from %d to %d (%s); running with %d: when "
                "more files match, errord closes quiet ones and reopens them when they change",
                soft,
                target,
                exc,
                soft,
            )
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
        self._warned = RateLimit(None)  # each cause (EMFILE, ENFILE) told once, then at DEBUG
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
        if err == errno.ENFILE:
            what = "the system's file table is full (ENFILE)"
            fix = "raise fs.file-max (sysctl) or find what holds so many files"
        else:
            what = f"the open-file limit ({self.limit}) is reached (EMFILE)"
            fix = (
                "raise the limit: LimitNOFILE= in errord's unit (systemctl edit errord, then restart), "
                "or ulimit -n before errord run in a shell; or match fewer files"
            )
        logger.log(
            logging.WARNING if self._warned.allow(err) else logging.DEBUG,
            "out of file descriptors: %s with %d log file(s) open; reading those, %d file(s) wait "
            "and are retried in %.0fs. To read them all, %s (said once)",
            what,
            open_files,
            waiting,
            self._delay,
            fix,
        )

    def pressure(self, matched: int) -> None:
        """Say once that more files match than are kept open."""
        if not self._told_pressure:
            self._told_pressure = True
            logger.info(
                "%d files match, more than the %d errord keeps open (open-file limit %d): quiet files "
                "are closed and reopened when they change",
                matched,
                self.files,
                self.limit,
            )


Opened = tuple[int, os.stat_result, bytes]  # descriptor, its fstat, its first FP_MAX bytes


class Descriptors:
    """The tailer's side of the budget: open a file by identity, admit a newly opened
    follower or park it, close the quietest to reopen the changed ones (``balance``),
    reopen by identity (``unpark``).

    ``table``: the tailer's identities. ``rescan``: asks the tailer for a scan (a path
    named another file when it was opened). ``reopened``: checks a follower just reopened
    (truncated or replaced while closed, as when open). ``warned``: the tailer's rate
    limit for warnings per path.
    """

    def __init__(
        self,
        table: FileTable,
        budget: FdBudget,
        *,
        rescan: Callable[[], None],
        reopened: Callable[[Follower, float], None],
        warned: RateLimit,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self.budget = budget
        self._rescan = rescan
        self._reopened = reopened
        self._warned = warned
        self._clock = clock
        self._wall = wall

    def exhausted(self, now: float, err: int) -> None:
        """The system refused a descriptor (``err``): tell the budget what is open and waits."""
        self.budget.exhausted(now, self.table.open_count(), len(self.table.parking.want), err)

    def open(self, path: str | None, expect: FileKey) -> Opened | None:
        """Open ``path``, check it is still ``expect``, read its fingerprint prefix.
        None (logged, rate-limited) when it cannot be had now: retried at a later scan."""
        if path is None:
            return None
        try:
            fd = fileid.open_readonly(path)
        except OSError as exc:
            if exc.errno in OUT_OF_FDS:  # one warning for all files, not one per file
                self.exhausted(self._clock(), exc.errno)
            else:
                self._warn(path, "cannot open %s: %s (retrying)", path, exc)
            return None
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != expect or not stat.S_ISREG(st.st_mode):
                os.close(fd)
                self._rescan()  # replaced between stat and open: look again
                return None
            return fd, st, read_prefix(fd, FP_MAX)
        except OSError as exc:
            os.close(fd)
            self._warn(path, "cannot read %s: %s (retrying)", path, exc)
            return None

    def admit(self, f: Follower, st: os.stat_result, now: float, keep_open: bool = False) -> None:
        """A follower just opened: keep its descriptor if there is room, else park it
        (and reopen it when there is, if it has bytes to read)."""
        t = self.table
        f.seen_wall = self._wall()
        if keep_open or not f.parkable() or t.open_count() < self.budget.cap(now):
            t.followers[f.key] = f
        else:
            self.budget.pressure(len(t.followers) + len(t.parked) + 1)
            f.size, f.mtime_ns = st.st_size, st.st_mtime_ns
            t.parking.park(f)
            if f.offset < st.st_size:
                t.parking.wish(f.key, now)
        t.index(f)

    def may_open(self, now: float) -> bool:
        """Whether to try a (transient) open now: not while backing off after EMFILE,
        unless a descriptor of our own is free."""
        return not self.budget.blocked(now) or self.table.open_count() < self.budget.cap(now)

    def balance(self, now: float) -> bool:
        """Reopen parked files that changed, closing the quietest open ones to make room.
        Returns whether anything was closed or opened."""
        t = self.table
        want = t.parking.want
        room = self.budget.cap(now) - t.open_count()
        if not want and room >= 0:
            return False
        moved = False
        if len(want) > room:
            self.budget.pressure(len(t.followers) + len(t.parked))
            for f in t.parking.quietest(t.followers.values(), len(want) - room):
                del t.followers[f.key]
                t.parking.park(f)
                moved = True
            room = self.budget.cap(now) - t.open_count()
        for key in t.parking.wishes(room):
            done = self.unpark(key, now)
            if done is None:
                break  # out of descriptors
            moved = moved or done
        return moved

    def unpark(self, key: FileKey, now: float) -> bool | None:
        """Reopen a parked follower by identity. None: no descriptor to be had."""
        t = self.table
        f = t.parked[key]
        try:
            fd = fileid.open_readonly(f.path)
        except OSError as exc:
            if exc.errno in OUT_OF_FDS:
                self.exhausted(now, exc.errno)
                return None
            t.parking.want.pop(key, None)
            self._rescan()  # moved or removed: the next scan finds it by inode, or lets it go
            return False
        try:
            st = os.fstat(fd)
        except OSError:
            st = None
        if st is None or (st.st_dev, st.st_ino) != key or not stat.S_ISREG(st.st_mode):
            os.close(fd)
            t.parking.want.pop(key, None)
            self._rescan()  # the path names another file now: the scan looks for this one
            return False
        t.parking.take(key)
        f.fd = fd
        t.followers[key] = f
        self._reopened(f, now)  # truncated or replaced while closed: as when open
        return True

    def probe(self, now: float) -> bool:
        """Whether a descriptor is free for listing folders. Out of them, a glob comes back
        empty (Python's glob swallows EMFILE) and every file would look rotated away."""
        try:
            fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in OUT_OF_FDS:
                self.exhausted(now, exc.errno)
                return False
            return True
        os.close(fd)
        return True

    def _warn(self, path: str, msg: str, *args: object) -> None:
        logger.log(logging.WARNING if self._warned.allow(path) else logging.DEBUG, msg, *args)
