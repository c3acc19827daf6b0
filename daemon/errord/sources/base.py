"""The source seam: what the batch needs of anything that yields log lines.

A source hands the batch complete lines as :class:`Chunk`\\ s and, after the batch was
parsed and fed, a :class:`Checkpoint`: the positions its lines reached. The batch
commits the checkpoint in the same journal transaction as the incidents and notices
those lines caused, then calls ``committed()``; when that transaction fails it calls
``rollback()`` and the source hands on the same lines again. Nothing a source does is
durable by itself (CONTRACT §7).

The file tailer (``sources.tail.Tailer``) is one source; a source that reads the systemd
journal commits a cursor instead of an offset (``Checkpoint.meta``), and line envelopes
(docker, CRI) are unwrapped per source before parsing. The batch sees only this
protocol, so such sources are added beside the tailer without touching it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from errord.model import FileKey, Position

__all__ = ["Checkpoint", "Chunk", "FileStatus", "Source"]


@dataclass(slots=True)
class Chunk:
    """Complete lines of one file identity, as read in one step.

    ``data`` holds whole lines, each ending in ``b"\\n"``; only the last chunk of a file
    that is being closed may end in a line without one. ``offset`` is the file offset of
    ``data[0]``. ``skipped_long`` counts lines over ``max_line_bytes`` dropped in this
    range (not in ``data``); ``long_offsets`` holds their start offsets (at most
    ``follower.MAX_LONG_OFFSETS``). ``data`` may be empty when the chunk only reports
    skipped lines. ``at_end``: the chunk ends where the file ended when it was read (the
    reader has caught up); ``mtime``: the file's modification time (epoch seconds) from
    the source's last look at it, 0 when unknown. Both tell a live line from a backlog
    (``zonecheck``) without another ``stat``. ``layout``: the format a ``format = "auto"``
    file was decided to be from its first line (CONTRACT §12), "" otherwise. ``name``:
    the path a glob last matched the file at, which ``app_from`` reads (``path`` may be
    its rotated name since, in a symlink target's folder); "" when it is ``path``.
    """

    key: FileKey
    source: int
    path: str
    offset: int
    data: bytes
    skipped_long: int = 0
    long_offsets: list[int] = field(default_factory=list)
    at_end: bool = False
    mtime: float = 0.0
    layout: str = ""
    name: str = ""


@dataclass(slots=True)
class FileStatus:
    """One followed file for ``errord status`` and the backlog metrics."""

    path: str
    position: int
    size: int
    lines_read: int
    lines_skipped: int
    source: int


@dataclass(slots=True)
class Checkpoint:
    """What a batch's lines reached, to commit with what they caused.

    ``positions``: file identities whose offset or counters changed (``gone=True``:
    delete that stored position). ``meta``: other positions as journal meta entries
    (key -> value), e.g. a journal cursor per source.
    """

    positions: list[Position] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.positions or self.meta)


class Source(Protocol):
    """A stream of complete log lines with a position the batch can commit."""

    async def open(self) -> None:
        """Find what to read and start watching; afterwards the source counts as open
        (systemd's READY=1, ``status`` says running)."""
        ...

    async def wait(self, timeout: float | None) -> None:
        """Return when something may be readable, or after ``timeout`` seconds."""
        ...

    def rest(self) -> None:
        """The caller reads again on a timer while lines keep coming (the daemon's
        ``READ_GAP``): change notifications tell it nothing meanwhile, so the source may
        stop them until its next ``wait()``, which starts them again (issue 13)."""
        ...

    def read(self, max_bytes: int) -> list[Chunk]:
        """Complete lines available now, about ``max_bytes`` in all, in a new list the
        caller owns (the batch drops each chunk once parsed). Never blocks on more than
        local reads; never raises."""
        ...

    def account(self, key: FileKey, lines: int, skipped: int) -> None:
        """Add the line counters of a chunk the batch parsed (``key``: the chunk's)."""
        ...

    def checkpoint(self) -> Checkpoint:
        """The positions reached since the last commit."""
        ...

    def committed(self) -> None:
        """The last checkpoint is durable."""
        ...

    def settled(self) -> bool:
        """Whether what the next checkpoint holds is only known identities reading on (no
        file new, renamed, truncated, closed, deleted or copied since the last commit):
        then the batch may wait to be committed (``Batch.step``'s hold). Anything else is
        committed at once, so a crash cannot forget where a new or moved file is, nor
        lines read of content truncated away since."""
        ...

    def rollback(self) -> None:
        """The last checkpoint could not be committed: hand on the same lines again."""
        ...

    def files(self) -> Sequence[FileStatus]:
        """What is followed now and how far it is read (``status``, metrics)."""
        ...

    def reconfigure(self, sources: Sequence[Any]) -> None:
        """SIGHUP: a new list of configured sources (positions are kept)."""
        ...

    async def close(self) -> None:
        """Stop watching and release every file; returns within about a second."""
        ...
