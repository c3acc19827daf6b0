"""Globs to identities: which files match now, and where reading each one starts.

A scan (:meth:`Scanner.scan`) expands every source's glob and stats each path; files are
told apart by identity (:mod:`errord.sources.fileid`: ``(dev, ino)`` plus a fingerprint of
the first bytes), not by name. Per identity:

* **followed** (open or parked) — its path is updated; a parked one that changed is
  reopened (:class:`~errord.sources.fdbudget.Descriptors`);
* **a stored position** — resumed there if the content is the same, else (truncated, or a
  new file on a reused inode) read from 0 after trying to recover the rest from a copy;
* **new** — per ``start_at`` on the very first start, else from 0, or, for a copy of
  content already read, from where we were in it (:mod:`errord.sources.recovery`).

* **Rename rotation / deletion** — a followed identity at no matched path is looked for
  by inode in its folder and followed there (the tailer reads it until it has been quiet
  for ``rotate_wait``); a deleted one is read through its open descriptor.
* **While errord was down** — a stored position whose inode is at no matched path is
  looked for among the siblings of its last path (renamed): the rest is read and the file
  closed after ``rotate_wait``.
* **A file that stops matching** (its glob removed or changed on SIGHUP, a rotated file
  closed after ``rotate_wait``, a folder renamed away, a position found nowhere at start)
  keeps its position, marked with when it was last seen (``Position.extra[UNSEEN]``), for
  ``KEEP_UNSEEN`` (7 days); if the same identity matches again, reading resumes there.
  Only a file errord never saw is read from its start.
* **Replaced more than once between two looks** (a stall during two rotations; two
  rotations faster than errord looks) — warned about when errord can tell: a sibling
  named like a rotation of it (``app.jsonl.1``), not empty, not compressed, unknown and
  written after errord last saw the followed file at its name
  (:func:`errord.sources.fileid.unread_rotations`).

Compressed names (``.gz``, ``.xz``, …) are skipped by name alone. Limits: a file created
*and* rotated to a name the glob does not match while errord was down was never known and
is not read (a glob that also matches the rotated names, ``app.jsonl*``, avoids this); a
file deleted while errord was down is gone; so is, while errord runs, a file that lives
under a matched name for less time than errord takes to look.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable

from errord.model import FileKey, Position
from errord.ratelimit import RateLimit
from errord.sources import fileid
from errord.sources.fdbudget import Descriptors
from errord.sources.fileid import digest
from errord.sources.filelog import FileLog
from errord.sources.follower import Follower, Mark, end_of_last_line, real_folder, stored_copy_of
from errord.sources.recovery import Recovery
from errord.sources.table import FileTable, Sleep, Sources, unseen_since

__all__ = ["PRUNE_EVERY", "Scanner"]

logger = logging.getLogger(__name__)

PRUNE_EVERY = 3600.0  # seconds between looks for kept positions older than KEEP_UNSEEN

Matched = dict[FileKey, tuple[str, int, os.stat_result]]  # identity -> (path, source, stat)


class Scanner:
    """Matches the globs against the tailer's :class:`~errord.sources.table.FileTable`.

    ``first_start``: the journal had no positions yet, so files found by the first scan
    start per ``start_at``. ``opened`` is set once the tailer's first scan is done (files
    found later are "new"). ``warned``: the tailer's rate limit for warnings per path;
    ``wall`` dates when a file last matched.
    """

    def __init__(
        self,
        table: FileTable,
        sources: Sources,
        fds: Descriptors,
        recovery: Recovery,
        *,
        first_start: bool,
        warned: RateLimit,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self.sources = sources
        self.fds = fds
        self.recovery = recovery
        self.first_start = first_start
        self.opened = False
        self._warned = warned
        self._wall = wall
        self._initial_waiting: set[FileKey] = set()  # found by the first scan, not opened yet
        self._next_prune = 0.0
        # per scan: folder listings by inode, files that left their matched path, log lines
        self._dirs: dict[str, dict[int, os.DirEntry[str]]] = {}
        self._lost_now: list[tuple[Follower, str]] = []
        self._log = FileLog(logger)

    def scan(self, now: float, initial: bool = False) -> bool:
        """One scan: new files, renamed files, files gone from their paths, parked files
        that changed, files that match again. False: skipped, no descriptor to list with."""
        if not self.fds.probe(now):
            return False  # a listing now would miss every file: keep what we know, look again later
        t = self.table
        wall = self._wall()
        self._dirs, self._lost_now = {}, []
        t.forget_fingerprints()
        matched = self._match()
        # Known identities first (and stored ones), so copies are told from new files.
        for key, (path, i, st) in matched.items():
            self._seen(key, path, i, st, now, wall)
        for f in list(t.followers.values()):
            if f.key not in matched:
                self._lost(f)
        for f in list(t.parked.values()):
            if f.key not in matched:
                self._lost_parked(f, now)
        if t.stored:
            self._find_rotated_while_down(matched, now)
        for key, (path, i, _st) in matched.items():
            if not t.follows(key) and key not in t.stored:
                self._start_new(key, path, i, now, initial)
        if self._lost_now:
            self._check_unread_rotations(matched)
        self._dirs, self._lost_now = {}, []
        t.forget_fingerprints()
        self.recovery.expire(now)
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY
            t.prune_unseen(wall)
        self._log.emit()
        self._log = FileLog(logger)
        return True

    def _match(self) -> Matched:
        matched: Matched = {}
        for i, src in enumerate(self.sources):
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
        return matched

    def _seen(self, key: FileKey, path: str, source: int, st: os.stat_result, now: float, wall: float) -> None:
        """A known identity (or a stored position) at a matched path."""
        t = self.table
        if key in t.sleeping:
            t.wake(key)
        if key in t.unseen:
            t.stored[key] = t.unseen.pop(key)  # matches again: resume it by identity
        f = t.get(key)
        if f is None:
            if key in t.stored:
                self._start_stored(key, path, source, now)
            return
        if f.path != path:
            logger.info("%s is now %s", f.path, path)
        if f.fd < 0:
            if (f.path, f.source) != (path, source):
                t.parking.moved(f, path, source)
            if (st.st_size, st.st_mtime_ns) != (f.size, f.mtime_ns):
                t.parking.wish(key, now)  # changed while closed: reopen it
        elif f.path != path:
            f.path, f.folder = path, real_folder(path)
        f.name = path
        f.matched, f.source, f.seen_wall = True, source, wall

    def find_inode(self, folder: str, key: FileKey) -> tuple[str, os.stat_result] | None:
        """Where identity ``key`` is directly in ``folder``: one listing per folder and scan."""
        index = self._dirs.get(folder)
        if index is None:
            index = self._dirs[folder] = fileid.inode_index(folder)
        return fileid.entry_path(index, key)

    # -- files that left their matched path --------------------------------------------

    def _lost(self, f: Follower) -> None:
        """Open ``f`` is at no matched path: renamed away or deleted. Find its new name."""
        if f.matched:
            f.matched = False
            if f.source < len(self.sources):
                self._lost_now.append((f, f.path))
                if not f.deleted:
                    logger.info("%s was rotated away; following it for rotate_wait", f.path)
        if f.deleted or fileid.names(f.path, f.key):
            return
        found = self.find_inode(f.folder, f.key)
        if found is not None:
            f.path = found[0]

    def _lost_parked(self, f: Follower, now: float) -> None:
        """A parked file at no matched path: its glob is gone, or it was renamed or
        deleted while closed. A renamed one is followed by inode for ``rotate_wait``
        (reopened if it grows), then closed for good; its position is kept either way."""
        t = self.table
        if f.source >= len(self.sources):
            t.sleep(f)
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
            found = self.find_inode(f.folder, f.key)
        if found is None:  # deleted, or moved out of its folder: nothing to read here
            t.sleep(f)
            return
        path, st = found
        if path != f.path:
            t.parking.moved(f, path)
        quiet = now - f.last_growth >= self.sources.rotate_wait(f.source)
        if (st.st_size, st.st_mtime_ns) != (f.size, f.mtime_ns) or (st.st_size > f.offset and quiet):
            t.parking.wish(f.key, now)  # grew, or ends in a partial line to hand on at close
        elif quiet:
            t.sleep(f)

    def _check_unread_rotations(self, matched: Matched) -> None:
        """Warn when a file that just left its name was replaced more than once since errord
        last looked: a sibling named like its rotation, unknown, written since then."""
        known = set(matched) | self.table.known()
        for f, live in self._lost_now:
            for path, size in fileid.unread_rotations(
                os.path.dirname(live), os.path.basename(live), f.seen_wall, known
            ):
                self._warn(
                    path,
                    "%s was replaced more than once while errord was not reading it (a stall "
                    "during two rotations, or two rotations faster than errord looks): %s (%s bytes, "
                    "written after errord last saw %s) was never read; a glob that also matches the "
                    "rotated names (e.g. %s*) would have read it",
                    live,
                    path,
                    f"{size:,}",
                    live,
                    live,
                )

    # -- where reading starts ----------------------------------------------------------

    def _start_stored(self, key: FileKey, path: str, source: int, now: float) -> None:
        """A file with a stored position: resume it, or start over if its content changed."""
        t = self.table
        if not self.fds.may_open(now):
            return  # stays in stored: retried at the next scan
        opened = self.fds.open(path, expect=key)
        if opened is None:
            return  # stays in stored: retried at the next scan
        fd, st, prefix = opened
        pos = t.stored.pop(key)
        again = unseen_since(pos) is not None
        fp = (len(prefix), digest(prefix))
        if _same_content(pos, prefix, st.st_size):
            f = Follower(
                key,
                fd,
                path,
                source,
                pos.offset,
                fp,
                now,
                size=st.st_size,
                lines_read=pos.lines_read,
                lines_skipped=pos.lines_skipped,
            )
            # A copy linked to its original stays linked (or reads on, if the original changed).
            f.copy_of = stored_copy_of(pos)
            f.snap = Mark(
                pos.offset, pos.lines_read, pos.lines_skipped, pos.fp_len, pos.fp_hash, pos.path, pos.source, f.copy_of
            )
            f.fresh = again  # written again without the "unseen" mark
            self.fds.admit(f, st, now, keep_open=f.copy_of is not None)
            left = max(st.st_size - pos.offset, 0)
            if again:
                self._log.add(
                    "matching again",
                    logging.INFO,
                    "%s matches again: resuming at its stored position %s (%s bytes to read)",
                    path,
                    f"{pos.offset:,}",
                    f"{left:,}",
                )
            else:
                self._log.add(
                    "at their stored position",
                    logging.INFO,
                    "reading %s from its stored position %s (%s bytes to read)",
                    path,
                    f"{pos.offset:,}",
                    f"{left:,}",
                )
            return
        self.fds.admit(Follower(key, fd, path, source, 0, fp, now, size=st.st_size), st, now)
        if again:  # a kept position: nothing of its file is owed; another content is a new file
            self._log.add("new", logging.INFO, "new file %s (on the reused inode of a file no longer matched)", path)
            return
        self._log.add(
            "changed while not followed",
            logging.WARNING,
            "%s changed while errord was not "
            "reading it (truncated or a new file on a reused inode); reading it from the start",
            path,
        )
        copy = self.recovery.recover(
            key, real_folder(path), source, (pos.fp_len, pos.fp_hash), pos.offset, pos.offset, now
        )
        if copy:
            logger.warning("reading the rest of the old content of %s from its copy %s", path, copy)

    def _find_rotated_while_down(self, matched: Matched, now: float) -> None:
        """Stored positions at no matched path: renamed while we were down, or no longer
        matching (kept, unseen).

        (After the first scan only positions whose file could not be opened are left.)
        """
        t = self.table
        for key, pos in list(t.stored.items()):
            if key in matched:
                continue  # matched but could not be opened: retried at the next scan
            if not self.fds.may_open(now):
                return  # out of descriptors: look again later
            del t.stored[key]
            since = unseen_since(pos) or self._wall()
            if fileid.names(pos.path, key):  # still there, just not matched: its glob changed
                t.sleeping[key] = Sleep(since, pos)
                continue
            if not self._resume_renamed(key, pos, now):
                t.sleeping[key] = Sleep(since, pos)  # found nowhere: kept in case it comes back

    def _resume_renamed(self, key: FileKey, pos: Position, now: float) -> bool:
        """Read the rest of a stored identity renamed in its folder while errord was down."""
        folder = os.path.dirname(pos.path)
        if pos.source >= len(self.sources) or not fileid.folder_may_match(self.sources[pos.source].path, folder):
            return False
        found = self.find_inode(folder, key)
        opened = self.fds.open(found[0], expect=key) if found else None
        if found is None or opened is None:
            return False
        fd, st, prefix = opened
        if not _same_content(pos, prefix, st.st_size):
            os.close(fd)
            return False
        f = Follower(
            key,
            fd,
            found[0],
            pos.source,
            pos.offset,
            (len(prefix), digest(prefix)),
            now,
            size=st.st_size,
            lines_read=pos.lines_read,
            lines_skipped=pos.lines_skipped,
        )
        f.matched = False
        f.copy_of = stored_copy_of(pos)
        f.fresh = True  # its path changed: write it
        self.fds.admit(f, st, now, keep_open=f.copy_of is not None)
        self._log.add(
            "renamed while errord was down",
            logging.INFO,
            "%s was renamed to %s while errord was down; reading the rest",
            pos.path,
            found[0],
        )
        return True

    def _start_new(self, key: FileKey, path: str, source: int, now: float, initial: bool) -> None:
        """A file seen for the first time: per ``start_at`` on the first start, else from 0
        (or, for a copy of content we have read, from where we were in it)."""
        initial = initial or key in self._initial_waiting
        if not self.fds.may_open(now):
            if initial:
                self._initial_waiting.add(key)
            return
        opened = self.fds.open(path, expect=key)
        if opened is None:
            if initial and self.fds.budget.blocked(now):
                self._initial_waiting.add(key)
            return
        self._initial_waiting.discard(key)
        fd, st, prefix = opened
        fp = (len(prefix), digest(prefix))
        if initial and self.first_start:
            self._start_first(key, fd, st, path, source, fp, now)
            return
        offset, copy_of = self.recovery.copy_start(fd, st.st_size, prefix, now)
        f = Follower(key, fd, path, source, offset, fp, now, size=st.st_size)
        f.copy_of = copy_of
        f.snap = f.mark()
        self.fds.admit(f, st, now, keep_open=copy_of is not None)
        if offset:
            self._log.add(
                "copies of content already read",
                logging.INFO,
                "%s is a copy of content already read; starting it at %d",
                path,
                offset,
            )
        elif self.opened:
            self._log.add("new", logging.INFO, "new file %s", path)
        else:
            self._log.add(
                "from their start", logging.INFO, "reading %s from its start (%s bytes)", path, f"{st.st_size:,}"
            )

    def _start_first(
        self, key: FileKey, fd: int, st: os.stat_result, path: str, source: int, fp: tuple[int, str], now: float
    ) -> None:
        """A file found by the very first start: at its end or its start, per ``start_at``."""
        offset, skip = 0, False
        if self.sources[source].start_at == "end":
            offset, skip = end_of_last_line(fd, st.st_size, self.sources.max_line(source))
        f = Follower(key, fd, path, source, offset, fp, now, size=st.st_size)
        if skip:  # inside a line too long to look back over: drop its tail silently
            f.cursor, f.skipping, f.count_skip = st.st_size, True, False
        skipped = st.st_size if skip else offset
        if skipped:
            self._log.add(
                "from their end",
                logging.INFO,
                'reading %s from its end: skipping %s existing bytes; set start_at = "beginning" to read them',
                path,
                f"{skipped:,}",
            )
        else:
            self._log.add(
                "from their start", logging.INFO, "reading %s from its start (%s bytes)", path, f"{st.st_size:,}"
            )
        self.fds.admit(f, st, now)

    def _warn(self, path: str, msg: str, *args: object) -> None:
        logger.log(logging.WARNING if self._warned.allow(path) else logging.DEBUG, msg, *args)


def _same_content(pos: Position, prefix: bytes, size: int) -> bool:
    """Whether a file still holds the content a stored position was taken in."""
    return len(prefix) >= pos.fp_len and digest(prefix[: pos.fp_len]) == pos.fp_hash and size >= pos.offset
