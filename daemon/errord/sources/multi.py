"""The one source the batch reads: the file tailer and the journal sources side by side.

:class:`Inputs` is a :class:`~errord.sources.base.Source` over the
:class:`~errord.sources.tail.Tailer` (the ``path`` sources) and one
:class:`~errord.sources.journal.JournalReader` per ``journal`` source. The tailer knows
only the file sources, numbered among themselves; chunks, positions and file statuses
are numbered here as the configuration numbers its sources, so the batch, the stored
positions and ``status`` see one numbering. Without journal sources every call goes
straight to the tailer (nothing renumbered, no other wake-up): a config of files reads
as before.

Waiting stays the tailer's (no task per wait): a journal reader that has entries, or a
changed state, wakes the tailer's ``wait``. Reads alternate which side goes first, so a
busy journal cannot starve the files, nor the files a journal.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from errord.config import Source as SourceConfig
from errord.model import FileKey, Position
from errord.sources.base import Checkpoint, Chunk, FileStatus, Source
from errord.sources.journal import JournalReader
from errord.sources.journalpos import JournalState, meta_key
from errord.sources.table import FileSource
from errord.sources.tail import Tailer

__all__ = ["Inputs"]

logger = logging.getLogger(__name__)


class _Numbering:
    """Config index <-> tailer index of the file sources. An index past the end (a
    file whose glob is gone) stays past the end on either side."""

    def __init__(self, sources: Sequence[SourceConfig]) -> None:
        self.files = [i for i, s in enumerate(sources) if s.journal is None]
        self.count = len(sources)
        self.identity = len(self.files) == self.count
        self._of = {c: t for t, c in enumerate(self.files)}

    def to_config(self, t: int) -> int:
        return self.files[t] if t < len(self.files) else self.count + (t - len(self.files))

    def to_tailer(self, c: int) -> int:
        if c < self.count:
            return self._of.get(c, len(self.files) + self.count)  # a journal index now: no glob
        return len(self.files) + (c - self.count)


def _files(sources: Sequence[SourceConfig]) -> list[FileSource]:
    """The file sources, for the tailer (a source without a journal has a path glob)."""
    return [cast("FileSource", s) for s in sources if s.journal is None]


def _stored_by_journal(
    sources: Sequence[SourceConfig], load_meta: Callable[[str], str | None]
) -> dict[int, tuple[str | None, bool]]:
    """At start, each journal source's stored state: ``(text, moved)`` per index. The one
    stored at its own index when it reads the same journal there; else one stored at
    another index of the configuration for the same journal that no source there reads
    now (the sources were reordered while errord was stopped: a state follows its
    journal, as a file's position follows its file), then ``moved``; else what is stored
    at its index (the reader then starts by ``start_at``, as for a changed journal)."""
    texts = {i: load_meta(meta_key(i)) for i in range(len(sources))}
    wheres = {i: st.where for i, t in texts.items() if (st := JournalState.load(t)) is not None}
    want = {i: s.journal.where for i, s in enumerate(sources) if s.journal is not None}
    out: dict[int, tuple[str | None, bool]] = {}
    free = {i for i, w in wheres.items() if want.get(i) != w}  # states no source at their index reads
    for i, where in want.items():
        if wheres.get(i) == where:
            out[i] = (texts[i], False)
    for i, where in want.items():
        if i in out:
            continue
        k = next((k for k in sorted(free) if wheres[k] == where), None)
        if k is not None:
            free.discard(k)
            out[i] = (texts[k], True)
        else:
            out[i] = (texts[i], False)
    return dict(sorted(out.items()))


class Inputs:
    """Files and journals as one source; see the module doc. ``load_meta``: the journal's
    meta (where each journal source is); ``binary``: the journalctl to run."""

    def __init__(
        self,
        sources: Sequence[SourceConfig],
        positions: Iterable[Position],
        *,
        first_start: bool,
        load_meta: Callable[[str], str | None],
        binary: str = "journalctl",
    ) -> None:
        self._load_meta = load_meta
        self._binary = binary
        self._num = _Numbering(sources)
        self.tailer = Tailer(_files(sources), self._positions_in(positions), first_start=first_start)
        self.journals: dict[int, JournalReader] = {}
        for i, (text, moved) in _stored_by_journal(sources, load_meta).items():
            reader = self.journals[i] = self._reader(i, sources[i], text)
            if moved:
                reader.renumbered()  # its state is committed under its new index at once
        self._journal_first = False
        self._closing: set[asyncio.Task[None]] = set()

    def _reader(self, index: int, source: SourceConfig, stored: str | None) -> JournalReader:
        return JournalReader(index, source, stored, self.tailer.wake, binary=self._binary)

    def _positions_in(self, positions: Iterable[Position]) -> list[Position]:
        num = self._num
        if num.identity:
            return list(positions)
        return [dataclasses.replace(p, source=num.to_tailer(p.source)) for p in positions]

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Open the files, then find where each journal starts and follow it."""
        await self.tailer.open()
        if self.journals:
            await asyncio.gather(*(r.open() for r in self.journals.values()))

    async def close(self) -> None:
        await asyncio.gather(
            self.tailer.close(),
            *(r.close() for r in self.journals.values()),
            *self._closing,
            return_exceptions=True,
        )

    async def wait(self, timeout: float | None) -> None:
        if any(r.ready() for r in self.journals.values()):
            return
        await self.tailer.wait(timeout)

    def wake(self) -> None:
        """Make a ``wait()`` return now."""
        self.tailer.wake()

    def rest(self) -> None:
        self.tailer.rest()  # a journal's follower has no notifications to stop

    # -- reading -----------------------------------------------------------------------

    def read(self, max_bytes: int) -> list[Chunk]:
        if not self.journals:
            return self._files(max_bytes)
        self._journal_first = not self._journal_first
        if self._journal_first:
            out = self._journal(max_bytes)
            out += self._files(max_bytes - sum(len(c.data) for c in out))
        else:
            out = self._files(max_bytes)
            out += self._journal(max_bytes - sum(len(c.data) for c in out))
        return out

    def _files(self, max_bytes: int) -> list[Chunk]:
        if max_bytes <= 0:
            return []
        chunks = self.tailer.read(max_bytes)
        num = self._num
        if not num.identity:
            for c in chunks:
                c.source = num.to_config(c.source)
        return chunks

    def _journal(self, max_bytes: int) -> list[Chunk]:
        out: list[Chunk] = []
        for reader in self.journals.values():
            if max_bytes <= 0 and out:
                break
            chunk = reader.read(max(max_bytes, 1))
            if chunk is not None:
                out.append(chunk)
                max_bytes -= len(chunk.data)
        return out

    def account(self, key: FileKey, lines: int, skipped: int) -> None:
        if key[0] == -1:
            reader = self.journals.get(key[1])
            if reader is not None:
                reader.account(lines)
            return
        self.tailer.account(key, lines, skipped)

    # -- checkpoints -------------------------------------------------------------------

    def checkpoint(self) -> Checkpoint:
        cp = self.tailer.checkpoint()
        num = self._num
        if not num.identity:
            cp.positions = [dataclasses.replace(p, source=num.to_config(p.source)) for p in cp.positions]
        for reader in self.journals.values():
            cp.meta.update(reader.checkpoint())
        return cp

    def committed(self) -> None:
        self.tailer.committed()
        for reader in self.journals.values():
            reader.committed()

    def settled(self) -> bool:
        return self.tailer.settled() and all(r.settled() for r in self.journals.values())

    def rollback(self) -> None:
        self.tailer.rollback()
        for reader in self.journals.values():
            reader.rollback()

    # -- status and configuration ------------------------------------------------------

    def files(self) -> list[FileStatus]:
        files = self.tailer.files()
        num = self._num
        if not num.identity:
            files = [dataclasses.replace(f, source=num.to_config(f.source)) for f in files]
        return files

    def reconfigure(self, sources: Sequence[SourceConfig]) -> None:
        """SIGHUP (after the open batch was committed): the tailer gets the new file
        sources; a journal source still configured alike (at any index) goes on from
        where it is, a new one starts by its stored state or ``start_at``, a removed one
        is stopped."""
        old = self.journals
        self._num = _Numbering(sources)
        self.tailer.reconfigure(_files(sources))
        new: dict[int, JournalReader] = {}
        kept = {i for i, src in enumerate(sources) if src.journal is not None and i in old and old[i].source == src}
        taken = set(kept)  # old indexes whose state goes on at some index
        moves: dict[int, int] = {}
        for i, src in enumerate(sources):
            if src.journal is None or i in kept:
                continue
            moved = next((j for j, r in old.items() if j not in taken and r.source == src), None)
            if moved is not None:
                moves[i] = moved
                taken.add(moved)
        for i, src in enumerate(sources):
            if src.journal is None:
                continue
            if i in kept:
                new[i] = old[i]
                continue
            moved = moves.get(i)
            if moved is not None:
                reader = self._reader(i, src, old[moved].durable.dump())
                reader.renumbered()  # its state is committed under its new index at once
            else:
                # the meta stored at i, unless it is a moved source's (that goes on elsewhere)
                stored = None if i in taken else self._load_meta(meta_key(i))
                reader = self._reader(i, src, stored)
            new[i] = reader
            self._start(reader.open())
        for j, reader in old.items():
            if new.get(j) is not reader:
                self._start(reader.close())
        self.journals = new
        self.tailer.wake()

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._closing.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._closing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("journal source: %s", task.exception())


if TYPE_CHECKING:

    def _is_a_source(inputs: Inputs) -> Source:  # mypy proves the seam is implemented
        return inputs
