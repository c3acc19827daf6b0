"""One systemd journal source (CONTRACT §12): ``journalctl --follow --output=json`` as a
subprocess, its entries handed to the batch as lines, its cursor committed with them.

A :class:`JournalReader` runs one ``journalctl`` in a task of its own that reads the
pipe into blocks of whole entries (one JSON line each; ``parse.journalentry`` reads
them). ``read()`` hands the blocks on as one :class:`~errord.sources.base.Chunk`; the
checkpoint is the meta entry ``journal.N`` (``sources.journalpos``): the cursor of the
last entry handed on, the entries read, the last error. ``rollback()`` puts the handed
blocks back in front, so the same entries come again; a restart follows from the
committed cursor, so no entry is read twice or skipped. A filtered, quiet unit is no
exception: journalctl prints only matching entries, and the cursor of the last of them
is where the next start goes on from.

Memory is bounded: past ``PENDING_MAX`` bytes read and not handed on, the task stops
reading the pipe (journalctl then waits on it). An entry longer than
``max_entry_bytes(…)`` is counted as a too-long line and not kept. ``journalctl``
missing or exiting is logged, kept as the source's error (``errord status`` shows it:
the state is committed at once), and retried with a growing delay; the daemon goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from errord.backoff import backoff
from errord.config import Source
from errord.sources.base import Chunk
from errord.sources.journalpos import (
    JOURNALCTL,
    JournalState,
    LongEntry,
    cursor_of,
    cursor_time,
    follow_args,
    match_args,
    meta_key,
    realtime_of,
    run_once,
    same_entry,
    selection_args,
    since_text,
)

__all__ = ["JournalReader", "max_entry_bytes"]

logger = logging.getLogger(__name__)

PIPE_READ = 1 << 16  # bytes per read of the pipe
PENDING_MAX = 2 << 20  # read and not handed on: the pipe is not read past this
ENTRY_SLACK = 1 << 16  # an entry's fields besides MESSAGE (a byte array takes ~4x its bytes)
RETRY_MIN, RETRY_MAX = 1.0, 60.0  # seconds before journalctl is started again
STARTED_AFTER = 1.0  # a journalctl still running after this long is running: its error is over
STOP_WAIT = 1.0  # seconds journalctl gets to exit on SIGTERM at close
STDERR_LINE = 4096  # bytes of a journalctl stderr line logged (the rest is read and dropped)


def max_entry_bytes(max_line_bytes: int) -> int:
    """The longest journalctl line of an entry kept (MESSAGE may be a byte array)."""
    return max(4 * max_line_bytes + ENTRY_SLACK, PIPE_READ)


class Block(NamedTuple):
    """Whole entries read in one go: their lines, how many, how many too long (not in
    ``data``), and the cursor and time (µs) of the last."""

    data: bytes
    lines: int
    skipped: int
    cursor: str | None
    time: int | None


class JournalReader:
    """Follows the journal of source ``index`` (``source.journal``) from ``stored`` (its
    committed meta entry). ``wake`` is called when entries arrive or the state changed
    (it makes the batch's ``wait`` return)."""

    def __init__(
        self,
        index: int,
        source: Source,
        stored: str | None,
        wake: Callable[[], None],
        *,
        binary: str = JOURNALCTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        assert source.journal is not None
        self.index = index
        self.source = source
        self.spec = source.journal
        self.label = source.label
        self.binary = binary
        self._wake = wake
        self._clock = clock
        self._stored = JournalState.load(stored)
        self.durable = JournalState(where=self.spec.where)
        self.state = self.durable.copy()
        self._pending: deque[Block] = deque()
        self._pending_bytes = 0
        self._handed: list[Block] = []
        self._handed_lines = 0  # entries handed on since the last commit
        self._dirty = False  # state to commit though no entry was read (a first position, an error)
        self._announced = False  # an empty chunk told the batch so
        self._tail: tuple[str, int | None] | None = None  # the last entry read from the pipe
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task[None] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._failures = 0
        self._limit = max_entry_bytes(source.max_line_bytes)
        self._closed = False

    def renumbered(self) -> None:
        """This source moved to its index by a reload: its stored state (another index's
        meta entry until now) is to be committed under ``journal.N`` at once, not only
        with its next entry, or a restart of a quiet source would not find it."""
        if self._stored is not None and self._stored.where == self.spec.where:
            self._take(self._stored)
            self._dirty = True

    def _take(self, stored: JournalState) -> None:
        self.durable = JournalState(
            where=self.spec.where,
            cursor=stored.cursor,
            time=stored.time,
            since=stored.since,
            entries_read=stored.entries_read,
            error=stored.error,
        )
        self.state = self.durable.copy()

    @property
    def key(self) -> tuple[int, int]:
        """The chunks' key: no file has a negative device number."""
        return (-1, self.index)

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Decide where reading starts (the committed state, else ``start_at``) and start
        following. Never raises: a journalctl that cannot be run is this source's error."""
        stored = self._stored
        if stored is not None and stored.where != self.spec.where:
            logger.info(
                "sources.%d now reads %s (was %s): its stored position does not apply, start_at = %r does",
                self.index,
                self.spec.where,
                stored.where,
                self.source.start_at,
            )
            stored = None
        if stored is not None:
            if not self._dirty:  # (renumbered: taken already, and maybe handed on since)
                self._take(stored)
        else:
            await self._first_position()
            self._wake()  # its position is to be committed (at start, the daemon does it at once)
        self._task = asyncio.get_running_loop().create_task(self._follow(), name=f"journal-{self.index}")

    async def _first_position(self) -> None:
        """The very first start (CONTRACT §12): "beginning" reads the whole journal; "end"
        goes on after its last matching entry (its cursor, committed at once, so a crash
        before the first batch cannot move the start), or from now when there is none."""
        state = JournalState(where=self.spec.where)
        if self.source.start_at == "end":
            state.since = self._clock()
            args = [
                self.binary,
                "--merge",
                "--lines=1",
                "--output=json",
                *selection_args(self.spec),
                *match_args(self.spec),
            ]
            try:
                rc, line, err = await run_once(args)
            except OSError as exc:
                state.error = self._cannot_run(exc)
            else:
                cursor = cursor_of(line) if line else None
                if cursor is not None:
                    state.cursor, state.time, state.since = cursor, realtime_of(line), None
                elif rc:
                    state.error = (
                        f"journalctl exited with status {rc}: {err}" if err else f"journalctl exited with status {rc}"
                    )
        self.durable = state.copy()  # committed with the daemon's first checkpoint (a refused one stops the start)
        self.state = state
        self._dirty = True

    async def close(self) -> None:
        """Stop journalctl and the task; returns within about a second."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._stop_proc()

    async def _stop_proc(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_WAIT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    # -- the task: journalctl, again and again -------------------------------------------

    async def _follow(self) -> None:
        while not self._closed:
            try:
                await self._run_one()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not end the source: logged, retried
                logger.exception("sources.%d (%s): unexpected error following the journal", self.index, self.label)
                self._failed(f"unexpected error: {exc}")
            finally:
                await self._stop_proc()
            if self._closed:
                return
            delay = backoff(self._failures - 1, RETRY_MIN, RETRY_MAX, jitter=0.1)
            logger.debug("sources.%d (%s): starting journalctl again in %.1fs", self.index, self.label, delay)
            await asyncio.sleep(delay)

    async def _position(self) -> tuple[list[str], str | None]:
        """Where this journalctl starts: after the last entry read (the pipe's, else the
        committed cursor), from ``since``, or at the beginning; and the cursor whose
        entry is to be dropped when it comes first."""
        cursor: str | None
        if self._tail is not None:
            cursor, when = self._tail
        else:
            cursor, when = self.state.cursor, self.state.time
        if cursor is None:
            since = self.state.since
            return ([f"--since={since_text(int(since * 1e6))}"] if since is not None else []), None
        if await self._cursor_gone(cursor):
            at = when if when is not None else cursor_time(cursor)
            logger.warning(
                "sources.%d (%s): the entry of the stored cursor is no longer in the journal (vacuumed?); "
                "reading on from the entries after its time; entries in between may be missing",
                self.index,
                self.label,
            )
            return ([f"--since={since_text(at + 1)}"] if at is not None else []), None
        return [f"--cursor={cursor}"], cursor

    async def _cursor_gone(self, cursor: str) -> bool:
        """Whether the cursor's entry has left the journal: journalctl seeks to the
        nearest entry then, without a word."""
        args = [self.binary, "--merge", f"--cursor={cursor}", "--output=json", *selection_args(self.spec)]
        if self.spec.units:
            args = [a for a in args if not a.startswith("--unit=")]  # the whole journal: the entry matched then
        try:
            rc, line, _ = await run_once(args)
        except OSError:
            return False  # the follow says why
        if not line:
            return rc is None or rc == 0  # an empty journal holds no cursor; a failure: the follow says why
        found = cursor_of(line)
        return found is None or not same_entry(found, cursor)

    async def _run_one(self) -> None:
        position, drop = await self._position()
        args = follow_args(self.binary, self.spec, position)
        logger.debug("sources.%d: %s", self.index, " ".join(args))
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            self._failed(self._cannot_run(exc))
            return
        self._proc = proc
        assert proc.stdout is not None and proc.stderr is not None
        stderr: deque[str] = deque(maxlen=4)
        errs = asyncio.get_running_loop().create_task(self._read_stderr(proc.stderr, stderr))
        started = asyncio.get_running_loop().call_later(STARTED_AFTER, self._started, proc)
        try:
            await self._read_stdout(proc.stdout, drop)
            rc = await proc.wait()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(errs, 1.0)
        finally:
            started.cancel()
            errs.cancel()
        why = f"journalctl exited with status {rc}" + (f": {stderr[-1]}" if stderr else "")
        self._failed(why)

    async def _read_stderr(self, stream: asyncio.StreamReader, keep: deque[str]) -> None:
        # read to the end, whatever the lines' length: a stderr not drained would block
        # journalctl, and its entries with it (a line is cut at STDERR_LINE bytes)
        partial = b""
        while piece := await stream.read(PIPE_READ):
            *lines, partial = (partial + piece).split(b"\n")
            if len(partial) > STDERR_LINE:
                lines.append(partial)
                partial = b""
            for raw in lines:
                self._stderr_line(raw, keep)
        self._stderr_line(partial, keep)

    def _stderr_line(self, raw: bytes, keep: deque[str]) -> None:
        text = raw[:STDERR_LINE].decode("utf-8", "replace").strip()
        if text:
            keep.append(text)
            logger.warning("sources.%d (%s): journalctl: %s", self.index, self.label, text)

    def _started(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None and proc is self._proc:
            self._running()

    def _running(self) -> None:
        if self._failures or self.state.error is not None:
            if self.state.error is not None:
                logger.info("sources.%d (%s): journalctl is running", self.index, self.label)
            self._failures = 0
            self._set_error(None)

    def _cannot_run(self, exc: OSError) -> str:
        why = exc.strerror or str(exc)
        hint = " (is systemd's journalctl installed and on PATH?)" if isinstance(exc, FileNotFoundError) else ""
        return f"cannot run {self.binary}: {why}{hint}"

    def _failed(self, why: str) -> None:
        self._failures += 1
        delay = backoff(self._failures - 1, RETRY_MIN, RETRY_MAX)
        logger.error("sources.%d (%s): %s; retrying in about %.0fs", self.index, self.label, why, delay)
        self._set_error(why)

    def _set_error(self, why: str | None) -> None:
        if self.state.error != why:
            self.state.error = why
            self._dirty, self._announced = True, False
            self._wake()

    async def _read_stdout(self, stream: asyncio.StreamReader, drop: str | None) -> None:
        partial = b""
        long: LongEntry | None = None  # an entry over the limit, being skipped
        first = True
        while True:
            if not self._room.is_set():
                await self._room.wait()  # the batch has not taken what was read: journalctl waits
            piece = await stream.read(PIPE_READ)
            if not piece:
                return
            if long is not None:
                nl = piece.find(b"\n")
                long.scan(piece if nl < 0 else piece[:nl])
                if nl < 0:
                    continue
                dropped = first and drop is not None and long.cursor is not None and same_entry(long.cursor, drop)
                if first:
                    first = False
                    self._running()
                if not dropped:  # (--cursor=C prints C's entry itself first)
                    self._add(Block(b"", 0, 1, long.cursor, long.time))
                long, piece = None, piece[nl + 1 :]
            data = partial + piece if partial else piece
            cut = data.rfind(b"\n") + 1
            partial = data[cut:]
            if len(partial) > self._limit:
                long, partial = LongEntry(), b""
                long.scan(data[cut:])
            if not cut:
                continue
            lines = data[:cut]
            if first:
                first = False
                self._running()
                if drop is not None:
                    nl = lines.find(b"\n")
                    head_cursor = cursor_of(lines[:nl])
                    if head_cursor is not None and same_entry(head_cursor, drop):
                        lines = lines[nl + 1 :]  # --cursor=C prints C's entry itself first
                    if not lines:
                        continue
            last = lines[lines.rfind(b"\n", 0, len(lines) - 1) + 1 :]
            n = lines.count(b"\n")
            self._add(Block(lines, n, 0, cursor_of(last), realtime_of(last)))

    def _add(self, block: Block) -> None:
        self._pending.append(block)
        self._pending_bytes += len(block.data)
        if block.cursor is not None:
            self._tail = (block.cursor, block.time)
        if self._pending_bytes >= PENDING_MAX:
            self._room.clear()
        self._wake()

    # -- the batch's side --------------------------------------------------------------

    def ready(self) -> bool:
        """Whether ``read`` has something to hand on now."""
        return bool(self._pending) or (self._dirty and not self._announced)

    def read(self, max_bytes: int) -> Chunk | None:
        """The entries read, about ``max_bytes`` of them (at least one block), as one
        chunk; an empty one when only the state changed; None when nothing is there."""
        if not self._pending:
            if self._dirty and not self._announced:
                self._announced = True
                return Chunk(key=self.key, source=self.index, path=self.label, offset=self._offset(), data=b"")
            return None
        blocks: list[Block] = []
        size = 0
        while self._pending and (not blocks or size + len(self._pending[0].data) <= max_bytes):
            block = self._pending.popleft()
            blocks.append(block)
            size += len(block.data)
        self._pending_bytes -= size
        if self._pending_bytes < PENDING_MAX:
            self._room.set()
        chunk = Chunk(
            key=self.key,
            source=self.index,
            path=self.label,
            offset=self._offset(),
            data=blocks[0].data if len(blocks) == 1 else b"".join(b.data for b in blocks),
            skipped_long=sum(b.skipped for b in blocks),
            at_end=not self._pending,
        )
        for b in blocks:
            self._handed_lines += b.lines + b.skipped
            if b.cursor is not None:
                self.state.cursor, self.state.time, self.state.since = b.cursor, b.time, None
        self._handed += blocks
        return chunk

    def _offset(self) -> int:
        return self.durable.entries_read + self._handed_lines

    def account(self, lines: int) -> None:
        self.state.entries_read += lines

    def checkpoint(self) -> dict[str, str]:
        """The meta entry to commit: when entries were handed on or the state changed."""
        if not self._handed and not self._dirty:
            return {}
        return {meta_key(self.index): self.state.dump()}

    def settled(self) -> bool:
        """Entries alone may wait to be committed; a changed state (a first position, an
        error come or gone) is committed at once."""
        return not self._dirty

    def committed(self) -> None:
        self.durable = self.state.copy()
        self._handed.clear()
        self._handed_lines = 0
        self._dirty = self._announced = False

    def rollback(self) -> None:
        """The last checkpoint failed: the same entries are handed on again."""
        for block in reversed(self._handed):
            self._pending.appendleft(block)
            self._pending_bytes += len(block.data)
        if self._handed:
            self._wake()
        self._handed.clear()
        self._handed_lines = 0
        error = self.state.error
        self.state = self.durable.copy()
        self.state.error = error  # not read from the batch: it stays what it is
        self._dirty = self._dirty or error != self.durable.error
        self._announced = False
