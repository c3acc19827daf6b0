"""Truncation and copies: the lines logrotate's ``copytruncate`` would otherwise lose.

A followed file was truncated when its size drops below what we read or its first bytes
change (:meth:`Recovery.changed`). Lines we had not read yet are then read from the copy,
found among the siblings (any name) by its first bytes; the copy is followed by its own
inode from our old position, like a renamed file, and the truncated file is read from 0
(:meth:`Recovery.truncated`). A copy that matches a glob itself is recognised by its
256-byte fingerprint *and* the bytes just before where we were in that content
(:meth:`Recovery.copy_start`): it starts there, linked to its original while that one is
read (``Follower.copy_of``), and reads on by itself once the original is truncated. What
we had read of content that is closed or truncated away is remembered for
``CONTENT_MEMORY`` seconds (or the longest ``rotate_wait``), so a copy found later starts
where we were too.

**The one window no reader can close:** lines written between logrotate's copy and its
truncate are in neither file afterwards. They are read only if we read them from the
original before the truncate.

Limits: a truncated file rewritten with the very same first 256 bytes up to at least our
old position is taken for the old content; a copy smaller than 256 bytes that matches a
glob and is found before the truncation of its original is read from its start (its
lines come twice); copytruncate done twice before errord reads the file again loses what
was written between the two (it is only in the second copy, whose first bytes errord
never saw).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable
from typing import NamedTuple

from errord.model import FileKey
from errord.sources import fileid
from errord.sources.fdbudget import Descriptors
from errord.sources.fileid import FP_MAX, digest, read_prefix
from errord.sources.follower import Follower
from errord.sources.table import FileTable, Sources

__all__ = ["CONTENT_MEMORY", "Recovery"]

logger = logging.getLogger(__name__)

CONTENT_MEMORY = 300.0  # seconds a truncated/closed content is remembered, to recognise its copies


class Content(NamedTuple):
    """Content we have read that is no longer followed (closed or truncated away)."""

    offset: int  # how far we had read it
    tail: bytes  # the bytes just before ``offset``, to tell a true copy
    expires: float


class Recovery:
    """Tells truncation, finds copies, remembers content read.

    ``table``, ``fds`` and ``sources`` are the tailer's; ``rescan`` asks it for a scan
    (to learn whether a copy just adopted is itself matched before it is closed).
    """

    def __init__(self, table: FileTable, fds: Descriptors, sources: Sources, *, rescan: Callable[[], None]) -> None:
        self.table = table
        self.fds = fds
        self.sources = sources
        self._rescan = rescan
        self._contents: dict[str, Content] = {}  # by 256-byte fingerprint

    # -- truncation --------------------------------------------------------------------

    @staticmethod
    def changed(f: Follower, size: int) -> bool:
        """Whether ``f``'s file (now ``size`` bytes) was truncated or rewritten: smaller
        than what we read, or other first bytes. Extends a short fingerprint. OSError
        when the file cannot be read."""
        if size < f.cursor:
            return True
        n = min(size, FP_MAX)
        if n < f.fp_len:
            return True
        prefix = read_prefix(f.fd, n)
        if len(prefix) < f.fp_len or digest(prefix[: f.fp_len]) != f.fp_hash:
            return True
        if len(prefix) > f.fp_len:
            f.fp_len, f.fp_hash = len(prefix), digest(prefix)
        return False

    def truncated(self, f: Follower, now: float) -> None:
        """copytruncate or truncation: recover unread lines from a copy, then start over."""
        old_len, old_hash, old_off = f.fp_len, f.fp_hash, f.offset
        committed_off = f.snap.offset if f.snap.fp_hash == old_hash else old_off
        self.remember(f, now)
        copy = self.recover(f.key, f.folder, f.source, (old_len, old_hash), old_off, committed_off, now)
        try:
            prefix = read_prefix(f.fd, FP_MAX)
        except OSError:
            prefix = b""
        f.reset(0, (len(prefix), digest(prefix)))
        # What was read of the old content is in no file now: the batch holding it is
        # committed at once, never held (``Source.settled``), or a crash would lose it
        f.fresh = True
        unread = max(f.size - old_off, 0)
        if copy:
            logger.warning("%s was truncated; reading what was not read yet from its copy %s", f.path, copy)
        elif unread:
            logger.warning("%s was truncated; no copy found, %d unread byte(s) lost", f.path, unread)
        else:
            logger.info("%s was truncated; reading it from the start", f.path)

    def recover(
        self,
        orig: FileKey,
        folder: str,
        source: int,
        fp: tuple[int, str],
        offset: int,
        committed_off: int,
        now: float,
    ) -> str | None:
        """Find the copy of content ``fp`` (read up to ``offset``) and read it from there.

        Candidates are the glob-matched copies linked to ``orig`` and the siblings in
        ``folder`` whose first ``fp_len`` bytes match; the largest reads on from
        ``offset``, the others hold nothing we have not read. Were the batch that saw the
        truncation rolled back, the lines between ``committed_off`` and ``offset`` come
        again, from the copy. Returns the copy's path.
        """
        linked = self._unlink_copies(orig)
        best = max(linked, key=lambda c: c.size, default=None)
        chosen = best if best is not None and best.size >= offset else None
        if fp[0]:
            if chosen is None:
                adopted = self._adopted(orig, fp)
                if adopted is not None:  # adopted before a rollback: it reads on from its position
                    return adopted.path
            chosen = self._open_copy(folder, source, fp, offset, committed_off, now, chosen) or chosen
        for c in linked:
            end = offset if c is chosen else c.size  # the others are prefixes of what is read
            c.offset = c.cursor = max(c.offset, min(end, c.size))
        return chosen.path if chosen is not None else None

    def _unlink_copies(self, orig: FileKey) -> list[Follower]:
        """The followed copies linked to ``orig``, which read on by themselves from now."""
        linked = [c for c in self.table.followers.values() if c.copy_of == orig]
        for c in linked:
            c.copy_of = None
        return linked

    def _adopted(self, orig: FileKey, fp: tuple[int, str]) -> Follower | None:
        t = self.table
        return next(
            (
                c
                for c in itertools.chain(t.followers.values(), t.parked.values())
                if c.key != orig and (c.fp_len, c.fp_hash) == fp
            ),
            None,
        )

    def _open_copy(
        self,
        folder: str,
        source: int,
        fp: tuple[int, str],
        offset: int,
        committed_off: int,
        now: float,
        than: Follower | None,
    ) -> Follower | None:
        """The largest unknown sibling holding content ``fp`` up to ``offset`` at least
        (and larger than ``than``), opened and followed from ``offset``."""
        fp_len, fp_hash = fp
        for cand in fileid.find_copies(folder, fp_len, fp_hash, offset, self.table.known()):
            if than is not None and than.size >= cand.size:
                return None
            opened = self.fds.open(cand.path, expect=cand.key)
            if opened is None:
                continue
            fd, st, prefix = opened
            if len(prefix) < fp_len or digest(prefix[:fp_len]) != fp_hash or st.st_size < offset:
                os.close(fd)
                continue
            f = Follower(cand.key, fd, cand.path, source, offset, (len(prefix), digest(prefix)), now, size=st.st_size)
            f.snap = f.snap._replace(offset=min(committed_off, offset))
            self.fds.admit(f, st, now, keep_open=True)
            self._rescan()  # learn whether the copy itself is matched before closing it
            return f
        return None

    # -- copies that match a glob ------------------------------------------------------

    def copy_start(self, fd: int, size: int, prefix: bytes, now: float) -> tuple[int, FileKey | None]:
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
        for o in self.table.fingerprints().get(h, ()):
            if o.fp_len != FP_MAX or o.fp_hash != h:
                continue
            found = self._copy_of_parked(o, fd, size, now) if o.fd < 0 else self._copy_of_open(o, fd, size)
            if found is not None:
                return found
        seen = self._contents.get(h)
        if seen is not None and size >= seen.offset and seen.tail:
            k = len(seen.tail)
            if _pread(fd, k, seen.offset - k) == seen.tail:
                return seen.offset, None
        return 0, None

    def _copy_of_parked(self, o: Follower, fd: int, size: int, now: float) -> tuple[int, FileKey] | None:
        k = len(o.tail)
        if k and size >= o.offset and o.key in self.table.parked and _pread(fd, k, o.offset - k) == o.tail:
            self.table.parking.wish(o.key, now)
            return o.offset, o.key
        return None

    def _copy_of_open(self, o: Follower, fd: int, size: int) -> tuple[int, FileKey] | None:
        followers = self.table.followers
        if o.key not in followers:
            return None
        root = followers.get(o.copy_of, o) if o.copy_of else o
        if root.fd < 0:
            return None
        start = min(root.offset, size)
        end = min(size, max(root.size, root.cursor))
        if _same_bytes(fd, root.fd, start) and (end <= start or _same_bytes(fd, root.fd, end)):
            return start, root.key
        return None

    # -- content memory ----------------------------------------------------------------

    def remember(self, f: Follower, now: float) -> None:
        """Keep where we were in ``f``'s content, which is about to be closed or truncated
        away, so that a copy of it found later starts there instead of at 0."""
        if f.fp_len != FP_MAX or not f.tail or f.copy_of is not None:
            return
        prev = self._contents.get(f.fp_hash)
        if prev is not None and prev.offset > f.offset:
            return
        keep = max(CONTENT_MEMORY, self.sources.longest_rotate_wait())
        self._contents[f.fp_hash] = Content(f.offset, f.tail, now + keep)

    def expire(self, now: float) -> None:
        for h in [h for h, c in self._contents.items() if c.expires < now]:
            del self._contents[h]


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
