"""Follow the files that match the configured globs: rotation, truncation, positions.

One :class:`Tailer` owns every open file. The daemon drives it in a batch loop
(``wait`` → ``read`` → parse → ``checkpoint`` → journal commit → ``committed``, or
``rollback`` when the commit failed), so nothing here is durable by itself: positions
advance in memory as lines are handed on, and become durable only when the daemon commits
them together with what those lines caused.

How files are told apart (see :mod:`errord.fileid`): an identity is ``(dev, ino)`` plus a
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
  reused: read from 0 (after trying copy recovery). Positions of files found nowhere are
  deleted (``gone=True``).

Errors on one file (permission denied, a directory or a symlink loop matching the glob, a
file vanishing between stat and open) are logged, rate-limited, and retried at the next
rescan; ``read()`` and ``wait()`` never raise. Compressed names (``.gz``, ``.xz``, ``.bz2``,
``.zst``, …) are never read, even when a glob matches them.

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

Files are read by :class:`errord.follower.Follower` (one per identity); identity helpers
are in :mod:`errord.fileid`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from watchfiles import Change, awatch

from errord import fileid
from errord.fileid import FP_MAX, digest, read_prefix
from errord.follower import Chunk, Follower, Mark, end_of_last_line, real_folder, stored_copy_of
from errord.model import FileKey, Position

__all__ = ["Chunk", "FileStatus", "Tailer"]

logger = logging.getLogger(__name__)

WARN_EVERY = 60.0  # seconds between repeated warnings about the same path
CONTENT_MEMORY = 300.0  # seconds a truncated/closed content is remembered, to recognise its copies


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


class Tailer:
    """Follows every file matching the sources' globs and hands on complete lines.

    ``sources``: objects with ``path`` (absolute glob), ``app``, ``start_at``
    (``"end"``/``"beginning"``), ``rotate_wait`` (seconds) and ``max_line_bytes``.
    ``positions``: what the journal holds. ``first_start``: the journal had no positions
    yet, so files present at ``open()`` start per ``start_at``; every other file without a
    stored position is read from its start.
    """

    def __init__(
        self, sources: Sequence[Any], positions: Iterable[Position], *, first_start: bool,
        scan_interval: float = 1.0, chunk_bytes: int = 1 << 20, debounce_ms: int = 50,
        step_ms: int = 3, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sources = list(sources)
        self._stored: dict[FileKey, Position] = {p.key: p for p in positions if not p.gone}
        self._first_start = first_start
        self._scan_interval = scan_interval
        self._chunk_bytes = max(4096, chunk_bytes)
        self._debounce = debounce_ms
        self._step = step_ms
        self._clock = clock
        self._followers: dict[FileKey, Follower] = {}
        self._closing: dict[FileKey, Follower] = {}  # closed since the last commit; fd held for rollback
        self._gone: dict[FileKey, str] = {}  # identities to delete at the next checkpoint -> last path
        self._inflight: dict[FileKey, Mark] = {}
        self._inflight_gone: set[FileKey] = set()
        self._contents: dict[str, _Content] = {}  # by 256-byte fingerprint
        self._watches: dict[tuple[str, bool], _Watch] = {}
        self._wake = asyncio.Event()
        self._rescan = True
        self._next_scan = 0.0
        self._more = False
        self._rr = 0
        self._opened = False
        self._closed = False
        self._warned: dict[str, float] = {}

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Scan the globs, open the files (resuming stored positions), start watching."""
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
            with contextlib.suppress(OSError):
                os.close(f.fd)
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
        if timeout is not None:
            delay = min(delay, timeout)
        if delay <= 0:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

    # -- reading -----------------------------------------------------------------------

    def read(self, max_bytes: int = 8 << 20) -> list[Chunk]:
        """Hand on the complete lines available now, fairly across files, at most about
        ``max_bytes`` read in all. Does the rotation / truncation / new-file bookkeeping.
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
            self._read_round_robin(out, max_bytes)
            self._settle(out, now)
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
                orig = self._followers.get(f.copy_of)
                if (orig is None or orig.fp_len != FP_MAX or orig.fp_hash != f.fp_hash
                        or f.size > max(orig.size, orig.cursor)):
                    # The original is gone (or this one outgrew it): it reads on by itself.
                    f.copy_of = None
                    self._more = self._more or f.cursor < f.size
                elif min(orig.offset, f.size) > f.offset:
                    f.offset = f.cursor = min(orig.offset, f.size)
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
        """Stop following ``f``; its fd stays open until the checkpoint deleting it is durable."""
        del self._followers[f.key]
        self._closing[f.key] = f
        self._gone[f.key] = f.path
        self._remember(f, now)

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
            already = next((c for c in self._followers.values()
                            if c.key != orig and (c.fp_len, c.fp_hash) == fp), None)
            if already is not None:  # adopted before a rollback: it reads on from its position
                return already.path
        exclude = set(self._followers) | set(self._closing) | set(self._stored)
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
            self._followers[cand.key] = chosen
            self._rescan = True  # learn whether the copy itself is matched before closing it
            break
        for c in linked:
            end = offset if c is chosen else c.size  # the others are prefixes of what is read
            c.offset = c.cursor = max(c.offset, min(end, c.size))
        return chosen.path if chosen is not None else None

    # -- scanning ----------------------------------------------------------------------

    def _scan(self, now: float, initial: bool = False) -> None:
        """Match the globs: new files, renamed files, files gone from their paths."""
        self._rescan = False
        self._next_scan = now + self._scan_interval
        matched: dict[FileKey, tuple[str, int]] = {}
        for i, src in enumerate(self._sources):
            try:
                paths = sorted(fileid.expand(src.path))  # glob, safe from symlink loops
            except OSError as exc:
                self._warn(src.path, "cannot list %s: %s", src.path, exc)
                continue
            for path in paths:
                if fileid.is_compressed(path):
                    continue
                try:
                    st = os.stat(path)
                except OSError as exc:
                    self._warn(path, "cannot stat %s: %s", path, exc)
                    continue
                if not stat.S_ISREG(st.st_mode):
                    if stat.S_ISDIR(st.st_mode):
                        self._warn(path, "%s matches %s but is a folder; skipped", path, src.path)
                    continue
                matched.setdefault((st.st_dev, st.st_ino), (path, i))
        # Known identities first (and stored ones), so copies are told from new files.
        for key, (path, i) in matched.items():
            f = self._followers.get(key)
            if f is not None:
                if f.path != path:
                    logger.info("%s is now %s", f.path, path)
                    f.path, f.folder = path, real_folder(path)
                f.matched, f.source = True, i
            elif key in self._stored:
                self._start_stored(key, path, i, now)
        for f in self._followers.values():
            if f.key not in matched:
                self._lost(f)
        if self._stored:
            self._find_rotated_while_down(matched, now)
        for key, (path, i) in matched.items():
            if key not in self._followers and key not in self._stored:
                self._start_new(key, path, i, now, initial)
        self._expire_contents(now)
        if self._opened:
            self._update_watches(now)

    def _lost(self, f: Follower) -> None:
        """``f`` is at no matched path: renamed away or deleted. Find its new name."""
        if f.matched:
            f.matched = False
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
        new = fileid.find_inode(f.folder, f.key)
        if new is not None:
            f.path = new

    def _start_stored(self, key: FileKey, path: str, source: int, now: float) -> None:
        """A file with a stored position: resume it, or start over if its content changed."""
        opened = self._open_follower(path, expect=key)
        if opened is None:
            return  # stays in _stored: retried at the next scan
        fd, st, prefix = opened
        pos = self._stored.pop(key)
        fp = (len(prefix), digest(prefix))
        if _same_content(pos, prefix, st.st_size):
            f = Follower(key, fd, path, source, pos.offset, fp, now, size=st.st_size,
                         lines_read=pos.lines_read, lines_skipped=pos.lines_skipped)
            # A copy linked to its original stays linked (or reads on, if the original changed).
            f.copy_of = stored_copy_of(pos)
            f.snap = Mark(pos.offset, pos.lines_read, pos.lines_skipped, pos.fp_len, pos.fp_hash,
                          pos.path, pos.source, f.copy_of)
            f.fresh = False
            self._followers[key] = f
            return
        logger.warning("%s changed while errord was down (truncated or a new file on a reused inode); "
                       "reading it from the start", path)
        self._followers[key] = Follower(key, fd, path, source, 0, fp, now, size=st.st_size)
        copy = self._recover(key, real_folder(path), source, (pos.fp_len, pos.fp_hash), pos.offset,
                             pos.offset, now)
        if copy:
            logger.warning("reading the rest of the old content of %s from its copy %s", path, copy)

    def _find_rotated_while_down(self, matched: dict[FileKey, tuple[str, int]], now: float) -> None:
        """Stored positions at no matched path: renamed while we were down, or gone.

        (After ``open()`` only positions whose file could not be opened are left here.)
        """
        for key, pos in list(self._stored.items()):
            if key in matched:
                continue  # matched but could not be opened: retried at the next scan
            del self._stored[key]
            path = None
            if pos.source < len(self._sources) and fileid.folder_may_match(
                self._sources[pos.source].path, os.path.dirname(pos.path)
            ):
                path = fileid.find_inode(os.path.dirname(pos.path), key)
            opened = self._open_follower(path, expect=key) if path else None
            if opened is not None:
                fd, st, prefix = opened
                if _same_content(pos, prefix, st.st_size):
                    f = Follower(key, fd, path or pos.path, pos.source, pos.offset,
                                 (len(prefix), digest(prefix)), now, size=st.st_size,
                                 lines_read=pos.lines_read, lines_skipped=pos.lines_skipped)
                    f.matched = False
                    f.copy_of = stored_copy_of(pos)
                    f.fresh = True  # its path changed: write it
                    self._followers[key] = f
                    logger.info("%s was renamed to %s while errord was down; reading the rest",
                                pos.path, path)
                    continue
                os.close(fd)
            self._gone[key] = pos.path

    def _start_new(self, key: FileKey, path: str, source: int, now: float, initial: bool) -> None:
        """A file seen for the first time: per ``start_at`` on the first start, else from 0
        (or, for a copy of content we have read, from where we were in it)."""
        opened = self._open_follower(path, expect=key)
        if opened is None:
            return
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
            self._followers[key] = f
            return
        offset, copy_of = self._copy_start(fd, st.st_size, prefix)
        f = Follower(key, fd, path, source, offset, fp, now, size=st.st_size)
        f.copy_of = copy_of
        f.snap = f.mark()
        self._followers[key] = f
        if offset:
            logger.info("%s is a copy of content already read; starting it at %d", path, offset)
        elif self._opened:
            logger.info("new file %s", path)

    def _copy_start(self, fd: int, size: int, prefix: bytes) -> tuple[int, FileKey | None]:
        """Where a new file starts if it is a copy of content we read: ``(offset, original)``.

        A copy has the same 256 first bytes *and* the same bytes just before where we were
        in that content (so a new log that merely starts with the same lines is not one).
        A copy of a file we still follow is linked to it: it reads nothing by itself while
        the original is read, and reads on from there if the original is truncated.
        """
        if len(prefix) < FP_MAX:
            return 0, None
        h = digest(prefix)
        for o in self._followers.values():
            if o.fp_len != FP_MAX or o.fp_hash != h:
                continue
            root = self._followers.get(o.copy_of, o) if o.copy_of else o
            start = min(root.offset, size)
            end = min(size, max(root.size, root.cursor))
            if _same_bytes(fd, root.fd, start) and (end <= start or _same_bytes(fd, root.fd, end)):
                return start, root.key
        seen = self._contents.get(h)
        if seen is not None and size >= seen.offset and seen.tail:
            k = len(seen.tail)
            try:
                if os.pread(fd, k, seen.offset - k) == seen.tail:
                    return seen.offset, None
            except OSError:
                pass
        return 0, None

    def _open_follower(self, path: str | None, expect: FileKey) -> tuple[int, os.stat_result, bytes] | None:
        """Open ``path``, check it is still ``expect``, read its fingerprint prefix."""
        if path is None:
            return None
        try:
            fd = fileid.open_readonly(path)
        except OSError as exc:
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
        f = self._followers.get(key) or self._closing.get(key)
        if f is not None:
            f.lines_read += lines
            f.lines_skipped += skipped

    def checkpoint(self) -> list[Position]:
        """Positions changed since the last commit, and ``gone=True`` for closed identities."""
        out: list[Position] = []
        self._inflight = {}
        for f in self._followers.values():
            m = f.mark()
            if f.fresh or m != f.snap:
                out.append(f.position())
                self._inflight[f.key] = m
        for k in [k for k in self._gone if k in self._followers]:  # the identity is back (inode reuse)
            del self._gone[k]
            old = self._closing.pop(k, None)
            if old is not None:
                with contextlib.suppress(OSError):
                    os.close(old.fd)
        self._inflight_gone = set(self._gone)
        for k in self._inflight_gone:
            out.append(Position(dev=k[0], ino=k[1], path=self._gone[k], offset=0, gone=True))
        return out

    def committed(self) -> None:
        """The last checkpoint is durable."""
        for key, m in self._inflight.items():
            f = self._followers.get(key)
            if f is not None:
                f.snap, f.fresh = m, False
        for key in self._inflight_gone:
            self._gone.pop(key, None)
            f = self._closing.pop(key, None)
            if f is not None:
                with contextlib.suppress(OSError):
                    os.close(f.fd)
        self._inflight, self._inflight_gone = {}, set()

    def rollback(self) -> None:
        """The last checkpoint failed: rewind to the last commit so the same lines come again."""
        for key, f in list(self._closing.items()):
            if key in self._followers:
                with contextlib.suppress(OSError):
                    os.close(f.fd)
            else:
                self._followers[key] = f
                self._gone.pop(key, None)
        self._closing.clear()
        for f in self._followers.values():
            f.restore(f.snap)
        self._inflight, self._inflight_gone = {}, set()
        self._more = True

    # -- status and configuration ------------------------------------------------------

    def files(self) -> list[FileStatus]:
        """Every open follower."""
        out = []
        for f in self._followers.values():
            try:
                size = os.fstat(f.fd).st_size
            except OSError:
                size = f.size
            out.append(FileStatus(f.path, f.offset, size, f.lines_read, f.lines_skipped, f.source))
        return out

    def reconfigure(self, sources: Sequence[Any]) -> None:
        """SIGHUP: a new source list. Followers of files still matched keep their positions;
        rotated files of a glob that is still configured are drained; others are dropped."""
        old = self._sources
        self._sources = list(sources)
        index = {src.path: i for i, src in enumerate(self._sources)}
        unknown = len(self._sources)  # out of range until a scan matches the file again
        for f in self._followers.values():
            j = index.get(old[f.source].path) if f.source < len(old) else None
            f.source = unknown if j is None else j
        self._scan(self._clock())
        for f in list(self._followers.values()):
            if f.matched or f.source != unknown:
                continue
            logger.info("%s no longer matches a source; closing it", f.path)
            del self._followers[f.key]
            self._gone[f.key] = f.path
            with contextlib.suppress(OSError):
                os.close(f.fd)
        self._wake.set()

    # -- watching ----------------------------------------------------------------------

    def _update_watches(self, now: float) -> None:
        """Watch the roots the globs need now; restart watches whose folder was replaced."""
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
                if any(change != Change.modified for change, _ in changes):
                    self._rescan = True
                self._wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # e.g. the folder vanished: the next scan starts it again
            self._warn(root, "cannot watch %s: %s (relying on rescans)", root, exc)
            self._rescan = True
            self._wake.set()

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


def _same_content(pos: Position, prefix: bytes, size: int) -> bool:
    """Whether a file still holds the content a stored position was taken in."""
    return (len(prefix) >= pos.fp_len and digest(prefix[:pos.fp_len]) == pos.fp_hash
            and size >= pos.offset)


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
