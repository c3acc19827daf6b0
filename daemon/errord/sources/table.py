"""What the tailer knows about each file identity, and what becomes of it at the next commit.

The tailer's parts (:mod:`~errord.sources.scan`, :mod:`~errord.sources.recovery`,
:class:`~errord.sources.fdbudget.Descriptors` and :class:`~errord.sources.tail.Tailer`)
share one :class:`FileTable`, handed to each of them, instead of reading each other's
attributes. An identity is in at most one of these at a time:

* ``followers`` — open: read on every round; ``parked`` (``parking``) — closed while
  quiet because descriptors ran short, everything but the descriptor kept;
* ``closing`` — no longer followed since the last commit; the descriptor is held until
  the checkpoint that records it is durable, so a rollback can take the follower back;
* ``stored`` — positions from the journal waiting for their identity to match (or to
  be found renamed); ``unseen`` — kept positions of files that stopped matching, with
  when they last did (``Position.extra[UNSEEN]``), for ``KEEP_UNSEEN``;
* ``gone`` — identities whose stored position the next checkpoint deletes;
  ``sleeping`` — those whose position the next checkpoint keeps, marked unseen.

:meth:`FileTable.checkpoint`, :meth:`~FileTable.committed` and :meth:`~FileTable.rollback`
move identities between these, so a journal commit that fails leaves the table as it
was after the last one that did not (CONTRACT §7: nothing here is durable by itself).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple, Protocol

from errord.model import FileKey, Position
from errord.sources.base import FileStatus
from errord.sources.fileid import FP_MAX
from errord.sources.follower import Follower, Mark, real_folder

__all__ = ["KEEP_UNSEEN", "UNSEEN", "FileSource", "FileTable", "Parking", "Sources", "unseen_since"]

logger = logging.getLogger(__name__)

UNSEEN = "unseen_since"  # Position.extra key: wall clock when a kept position's file last matched
KEEP_UNSEEN = 7 * 86400.0  # seconds a position of a file that stopped matching is kept
DEFAULT_MAX_LINE = 1 << 20  # for a follower whose source is gone (a reload removed its glob)


class FileSource(Protocol):
    """What the tailer reads of a configured source (``config.Source``, ``SourceSettings``)."""

    @property
    def path(self) -> str: ...

    @property
    def start_at(self) -> str: ...

    @property
    def rotate_wait(self) -> float: ...

    @property
    def max_line_bytes(self) -> int: ...


class Sources:
    """The configured sources by index (a follower's ``source``); replaced on SIGHUP.

    A follower whose index is out of range lost its glob in a reload: it waits for no
    writer (``rotate_wait`` 0) and is closed at the next look.
    """

    def __init__(self, items: Iterable[FileSource]) -> None:
        self.items: list[FileSource] = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> FileSource:
        return self.items[index]

    def __iter__(self) -> Iterator[FileSource]:
        return iter(self.items)

    def rotate_wait(self, index: int) -> float:
        """How long a rotated file of source ``index`` is followed after it stops growing."""
        return float(self.items[index].rotate_wait) if index < len(self.items) else 0.0

    def max_line(self, index: int) -> int:
        """The longest line source ``index`` hands on."""
        return int(self.items[index].max_line_bytes) if index < len(self.items) else DEFAULT_MAX_LINE

    def layout(self, index: int) -> str:
        """The line format of source ``index`` (CONTRACT §12): "json" unless configured."""
        return str(getattr(self.items[index], "format", "json")) if index < len(self.items) else "json"

    def longest_rotate_wait(self) -> float:
        return max((float(s.rotate_wait) for s in self.items), default=0.0)


def unseen_since(pos: Position) -> float | None:
    """When a kept position's file last matched (None: it is followed)."""
    raw = pos.extra.get(UNSEEN) if isinstance(pos.extra, dict) else None
    return float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None


class Sleep(NamedTuple):
    """A file to stop following whose position is kept (it stopped matching)."""

    since: float  # wall clock when it last matched
    pos: Position | None  # for a stored position without a follower; else taken from ``closing``


class Parking:
    """Followers closed for want of descriptors (*parked*) and those waiting to reopen.

    A parked follower keeps everything but its descriptor; its state is always its last
    committed one (only followers with nothing uncommitted are parked), except for the
    path or source a scan updated, which ``dirty`` lists for the next checkpoint.
    """

    def __init__(self) -> None:
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
            f.name = path
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
        ready = [f for f in fs if f.cursor >= f.size and f.key not in linked and f.parkable() and f.reads_committed()]
        return heapq.nsmallest(n, ready, key=lambda f: f.last_growth)


class FileTable:
    """Every identity the tailer knows, by state (see the module docstring).

    ``positions``: what the journal holds (kept ones, marked unseen, go to ``unseen``).
    ``wall``: the wall clock that dates kept positions.
    """

    def __init__(self, positions: Iterable[Position], *, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self.followers: dict[FileKey, Follower] = {}
        self.parking = Parking()
        self.parked = self.parking.parked
        self.closing: dict[FileKey, Follower] = {}
        self.stored: dict[FileKey, Position] = {}
        self.unseen: dict[FileKey, Position] = {}
        for p in positions:
            if not p.gone:
                (self.unseen if unseen_since(p) is not None else self.stored)[p.key] = p
        self.gone: dict[FileKey, str] = {}  # -> last path
        self.sleeping: dict[FileKey, Sleep] = {}
        self._inflight: dict[FileKey, Mark] = {}
        self._inflight_gone: set[FileKey] = set()
        self._inflight_unseen: dict[FileKey, Position] = {}
        self._fp_index: dict[str, list[Follower]] | None = None

    # -- lookups -----------------------------------------------------------------------

    def get(self, key: FileKey) -> Follower | None:
        """The follower of ``key``, open or parked."""
        return self.followers.get(key) or self.parked.get(key)

    def follows(self, key: FileKey) -> bool:
        return key in self.followers or key in self.parked

    def known(self) -> set[FileKey]:
        """Every identity with a follower or a position: never a copy, never new."""
        return set(self.followers) | set(self.closing) | set(self.stored) | set(self.parked) | set(self.unseen)

    def open_count(self) -> int:
        """Descriptors held for log files (closing ones are held until the commit)."""
        return len(self.followers) + sum(1 for f in self.closing.values() if f.fd >= 0)

    def fingerprints(self) -> dict[str, list[Follower]]:
        """Open and parked followers with a full fingerprint, by it: built once per scan
        (``forget_fingerprints``), kept up to date by ``index``."""
        if self._fp_index is None:
            self._fp_index = {}
            for o in itertools.chain(self.followers.values(), self.parked.values()):
                if o.fp_len == FP_MAX:
                    self._fp_index.setdefault(o.fp_hash, []).append(o)
        return self._fp_index

    def index(self, f: Follower) -> None:
        """A follower was just admitted: a copy found later in this scan may be of it."""
        if self._fp_index is not None and f.fp_len == FP_MAX:
            self._fp_index.setdefault(f.fp_hash, []).append(f)

    def forget_fingerprints(self) -> None:
        self._fp_index = None

    # -- ending a follow ---------------------------------------------------------------

    def retire(self, f: Follower) -> None:
        """Stop following open ``f``; its fd stays open until the checkpoint that records
        it is durable. A deleted file's position is deleted; a renamed one's is kept (unseen)."""
        del self.followers[f.key]
        self.closing[f.key] = f
        if f.deleted:
            self.gone[f.key] = f.path
        else:
            self.sleeping[f.key] = Sleep(self._wall(), None)

    def sleep(self, f: Follower) -> None:
        """Stop following ``f`` (open or parked) without reading on: it no longer matches.
        Its position is kept, marked unseen, for when it matches again."""
        if self.followers.pop(f.key, None) is None:
            self.parking.take(f.key)
        self.closing[f.key] = f
        self.sleeping[f.key] = Sleep(f.seen_wall or self._wall(), None)

    def wake(self, key: FileKey) -> None:
        """A sleeping identity (its end of following not committed yet) matches again:
        take it back."""
        sleep = self.sleeping.pop(key)
        self.gone.pop(key, None)
        f = self.closing.pop(key, None)
        if f is None:
            if sleep.pos is not None:
                self.stored[key] = sleep.pos
            return
        if f.fd >= 0:
            self.followers[key] = f
        else:
            self.parking.park(f)

    def prune_unseen(self, wall: float) -> None:
        """Forget positions of files that have not matched for ``KEEP_UNSEEN``."""
        old = [k for k, p in self.unseen.items() if wall - (unseen_since(p) or wall) > KEEP_UNSEEN]
        for key in old:
            self.gone[key] = self.unseen.pop(key).path
        if old:
            logger.info(
                "forgot the positions of %d file(s) that have not matched for %s days",
                len(old),
                f"{KEEP_UNSEEN / 86400:g}",
            )

    # -- counters and checkpoints ------------------------------------------------------

    def account(self, key: FileKey, lines: int, skipped: int) -> None:
        """Add the line counters of a chunk the batch parsed."""
        f = self.followers.get(key) or self.closing.get(key) or self.parked.get(key)
        if f is not None:
            f.lines_read += lines
            f.lines_skipped += skipped

    def settled(self) -> bool:
        """Only offsets of known, matched files moved since the last commit (see
        ``Source.settled``)."""
        if self.closing or self.gone or self.sleeping or self.parking.dirty:
            return False
        return all(f.matched and not f.deleted and not f.fresh and f.copy_of is None for f in self.followers.values())

    def checkpoint(self) -> list[Position]:
        """Positions changed since the last commit, ``gone=True`` for deleted identities,
        and the positions kept (marked unseen) of files no longer followed."""
        return [*self._changed(), *self._gone(), *self._kept()]

    def _changed(self) -> list[Position]:
        out: list[Position] = []
        self._inflight = {}
        dirty = [f for k in self.parking.dirty if (f := self.parked.get(k)) is not None]
        for f in itertools.chain(self.followers.values(), dirty):
            m = f.mark()
            if f.fresh or m != f.snap:
                out.append(f.position())
                self._inflight[f.key] = m
        return out

    def _gone(self) -> list[Position]:
        for k in [k for k in self.gone if self.follows(k)]:
            del self.gone[k]  # the identity is back (inode reuse)
            old = self.closing.pop(k, None)
            if old is not None:
                old.close()
        self._inflight_gone = set(self.gone)
        return [Position(dev=k[0], ino=k[1], path=self.gone[k], offset=0, gone=True) for k in self._inflight_gone]

    def _kept(self) -> list[Position]:
        out: list[Position] = []
        self._inflight_unseen = {}
        for k, sleep in self.sleeping.items():
            c = self.closing.get(k)
            pos = c.position() if c is not None else sleep.pos
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
            f = self.get(key)
            if f is not None:
                f.snap, f.fresh = m, False
                if f.fd < 0 and f.mark() == m:
                    self.parking.dirty.discard(key)
        for key in self._inflight_gone:
            self.gone.pop(key, None)
            c = self.closing.pop(key, None)
            if c is not None:
                c.close()
        for key, p in self._inflight_unseen.items():
            self.sleeping.pop(key, None)
            c = self.closing.pop(key, None)
            if c is not None:
                c.close()
            self.unseen[key] = p
        self._inflight, self._inflight_gone, self._inflight_unseen = {}, set(), {}

    def rollback(self) -> None:
        """The last checkpoint failed: back to the last commit, so the same lines come again."""
        for key, f in list(self.closing.items()):
            if self.follows(key):
                f.close()
                continue
            if f.fd >= 0:
                self.followers[key] = f
            else:
                self.parking.park(f)  # parked, so at its committed state already
            self.gone.pop(key, None)
            self.sleeping.pop(key, None)
        self.closing.clear()
        for f in self.followers.values():
            f.restore(f.snap)
        self._inflight, self._inflight_gone, self._inflight_unseen = {}, set(), {}

    def status(self) -> list[FileStatus]:
        """Every followed file (open, or parked while quiet)."""
        out = []
        for f in self.followers.values():
            try:
                size = os.fstat(f.fd).st_size
            except OSError:
                size = f.size
            out.append(FileStatus(f.path, f.offset, size, f.lines_read, f.lines_skipped, f.source))
        for f in self.parked.values():
            out.append(FileStatus(f.path, f.offset, max(f.size, 0), f.lines_read, f.lines_skipped, f.source))
        return out

    def close_all(self) -> None:
        """Close every descriptor (the tailer is closing)."""
        for f in [*self.followers.values(), *self.closing.values()]:
            f.close()
        self.followers.clear()
        self.closing.clear()
