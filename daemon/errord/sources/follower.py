"""One open log file as the tailer follows it: read cursor, partial line, long lines.

A :class:`Follower` owns one file descriptor and turns the bytes at its cursor into
:class:`~errord.sources.base.Chunk` objects of complete lines. It knows nothing about
globs, rotation or checkpoints beyond the :class:`Mark` it can be rewound to; the tailer
and its parts (:mod:`errord.sources.tail`) decide when to create, rewind, restart and
close followers.
"""

from __future__ import annotations

import contextlib
import os
from typing import NamedTuple

from errord.model import FileKey, Position
from errord.parse.chunks import has_long_line, nul_free_parts
from errord.parse.layouts import AUTO, JSON, detect, open_from
from errord.sources.base import Chunk
from errord.sources.fileid import FP_MAX

__all__ = [
    "MAX_LONG_OFFSETS",
    "Follower",
    "Mark",
    "end_of_last_line",
    "real_folder",
    "stored_copy_of",
]

MAX_LONG_OFFSETS = 16  # long-line offsets kept per chunk
FIRST_LINE_MAX = 64 * 1024  # what an "auto" file's first line is looked for in
_BACKSCAN = 64 * 1024


class Mark(NamedTuple):
    """The persisted part of a follower's state: what a checkpoint writes, what a
    rollback restores."""

    offset: int
    lines_read: int
    lines_skipped: int
    fp_len: int
    fp_hash: str
    path: str
    source: int
    copy_of: FileKey | None


class Follower:
    """One open file identity: its fd, read cursor, partial line, fingerprint, counters.

    ``offset`` is the end of the last complete line handed on (what is persisted);
    ``cursor`` is where the next ``pread`` starts. Between them lies either the buffered
    partial line (``buf``) or, while ``skipping``, an over-long line being dropped.
    ``tail`` holds the bytes just before ``offset`` (up to 256), which tell a true copy
    of this content from a file that merely starts the same way.

    A follower may be *parked* (``fd == -1``, see :meth:`park`): closed while quiet because
    descriptors run short, everything else kept, so it can be reopened by identity.
    """

    __slots__ = (
        "buf",
        "configured",
        "copy_of",
        "count_skip",
        "cursor",
        "deleted",
        "fd",
        "folder",
        "fp_hash",
        "fp_len",
        "fresh",
        "key",
        "last_growth",
        "layout",
        "lines_read",
        "lines_skipped",
        "matched",
        "mtime_ns",
        "name",
        "offset",
        "path",
        "seen_wall",
        "size",
        "skipping",
        "snap",
        "source",
        "tail",
    )

    def __init__(
        self,
        key: FileKey,
        fd: int,
        path: str,
        source: int,
        offset: int,
        fp: tuple[int, str],
        now: float,
        *,
        size: int = -1,
        lines_read: int = 0,
        lines_skipped: int = 0,
    ) -> None:
        self.key = key
        self.fd = fd
        self.path = path
        self.name = path  # where a glob last matched it (a rename away keeps it): app_from's name
        self.folder = real_folder(path)
        self.source = source
        self.offset = self.cursor = offset
        self.buf = bytearray()
        self.skipping = False
        self.count_skip = True  # False while dropping the rest of a line we started inside
        self.fp_len, self.fp_hash = fp
        self.tail = b""
        self.load_tail()
        self.lines_read = lines_read
        self.lines_skipped = lines_skipped
        self.size = size  # from the last fstat; -1 = not looked at yet
        self.mtime_ns = -1  # -1: the next check compares the fingerprint
        self.last_growth = now
        self.matched = True  # at a matched path at the last scan
        self.deleted = False  # st_nlink == 0
        self.copy_of: FileKey | None = None  # a copy of that follower's content, which reads it for us
        self.snap = self.mark()  # the state at the last commit (or at creation)
        self.fresh = True  # never committed: part of every checkpoint until it is
        self.seen_wall = 0.0  # wall clock of the last scan that found it at a matched path
        self.configured = JSON  # the source's format as configured (a reload may change it)
        self.layout = JSON  # the format read: the configured one, or what "auto" decided (AUTO: not yet)

    # -- state -------------------------------------------------------------------------

    @property
    def parked(self) -> bool:
        return self.fd < 0

    def parkable(self) -> bool:
        """Whether closing the file now loses nothing: no long line being dropped, not
        linked to another file's content, not deleted (an unlinked file cannot be opened
        again). A partial line held is read again from ``offset`` when it is reopened."""
        return not self.skipping and self.copy_of is None and not self.deleted

    def reads_committed(self) -> bool:
        """Whether nothing was read since the last commit (so a rollback has nothing to
        rewind here: a fingerprint grown or a new path is written at the next checkpoint)."""
        m = self.snap
        return (self.offset, self.lines_read, self.lines_skipped) == (m.offset, m.lines_read, m.lines_skipped)

    def park(self) -> None:
        """Close the descriptor; the identity, position, fingerprint and counters stay. A
        partial line held is dropped: it is read again from ``offset`` once reopened."""
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = -1
        self.buf = bytearray()
        self.cursor = self.offset

    def close(self) -> None:
        """Close the descriptor, if open."""
        if self.fd >= 0:
            self.park()

    def mark(self) -> Mark:
        return Mark(
            self.offset,
            self.lines_read,
            self.lines_skipped,
            self.fp_len,
            self.fp_hash,
            self.path,
            self.source,
            self.copy_of,
        )

    def restore(self, m: Mark) -> None:
        """Go back to a marked state; buffered bytes are dropped and read again."""
        self.lines_read, self.lines_skipped = m.lines_read, m.lines_skipped
        self.copy_of = m.copy_of
        self.reset(m.offset, (m.fp_len, m.fp_hash))
        self.load_tail()
        self.size = self.mtime_ns = -1  # look again, fingerprint included, at the next read

    def reset(self, offset: int, fp: tuple[int, str]) -> None:
        """Start over at ``offset`` (after a truncation: in new content)."""
        self.offset = self.cursor = offset
        self.buf = bytearray()
        self.skipping = False
        self.count_skip = True
        self.fp_len, self.fp_hash = fp
        self.tail = b""

    def load_tail(self) -> None:
        k = min(FP_MAX, self.offset)
        try:
            self.tail = os.pread(self.fd, k, self.offset - k) if k else b""
        except OSError:
            self.tail = b""

    def position(self) -> Position:
        extra = {"copy_of": list(self.copy_of)} if self.copy_of else {}
        return Position(
            dev=self.key[0],
            ino=self.key[1],
            path=self.path,
            offset=self.offset,
            fp_len=self.fp_len,
            fp_hash=self.fp_hash,
            lines_read=self.lines_read,
            lines_skipped=self.lines_skipped,
            source=self.source,
            extra=extra,
        )

    # -- reading -----------------------------------------------------------------------

    def pull(self, n: int, max_line: int, layout: str = JSON) -> tuple[list[Chunk], int]:
        """Read up to ``n`` bytes at the cursor; return the complete lines and the bytes read.

        An over-long line is never buffered: once the partial line passes ``max_line``
        bytes it is dropped and the rest of it skipped up to its newline. The last chunk
        is ``at_end`` when it ends where the file did (with the ``mtime`` of the last
        fstat), so a live line is told from a backlog without another stat.
        """
        data = os.pread(self.fd, n, self.cursor)
        if not data:
            return [], 0
        if layout != self.configured:  # a new follower or a reload: "auto" is decided anew
            self.configured = self.layout = layout
        start = self.cursor
        self.cursor += len(data)
        # memchr; NULs are rare: a preallocated file, a writer that crashed
        chunks = (self._take_around_nuls if b"\0" in data else self._take)(data, start, max_line)
        if chunks and (len(data) < n or self.cursor == self.size):  # the file ended there when read
            last = chunks[-1]
            if last.offset + len(last.data) == self.cursor:  # no partial line after it
                last.at_end = True
                last.mtime = self.mtime_ns / 1e9 if self.mtime_ns >= 0 else 0.0
        return chunks, len(data)

    def _take_around_nuls(self, data: bytes, start: int, max_line: int) -> list[Chunk]:
        """``_take`` for each piece between NUL runs: a run is garbage between lines, never
        part of one, so it neither counts towards ``max_line`` nor is ever handed on."""
        chunks: list[Chunk] = []
        parts = nul_free_parts(data)
        for i, (lo, hi) in enumerate(parts):
            if hi > lo:
                chunks += self._take(data[lo:hi], start + lo, max_line)
            if i + 1 < len(parts):
                after = parts[i + 1][0]
                chunks += self._cut(start + after, data[after - FP_MAX : after] if after >= FP_MAX else None)
        return chunks

    def _cut(self, at: int, tail: bytes | None) -> list[Chunk]:
        """A NUL run ends the partial line before it (handed on as a line of its own, or
        counted if it was too long); the next line starts at ``at``, just after the run.
        ``tail``: the FP_MAX bytes before ``at`` when the caller has them."""
        chunks: list[Chunk] = []
        if self.skipping:
            if self.count_skip:
                chunks = self._emit([], [self.offset])
        elif self.buf:
            chunks.append(self._held_chunk())
        self.buf = bytearray()
        self.skipping, self.count_skip = False, True
        self.offset = at
        if tail is None:
            self.load_tail()  # a run near the start of a read: read the bytes back
        else:
            self.tail = tail
        return chunks

    def _take(self, data: bytes, start: int, max_line: int) -> list[Chunk]:
        """The complete lines of ``data`` (read at file offset ``start``, after the
        partial line in ``buf``); the rest is kept as the new partial line."""
        pos = 0
        longs: list[int] = []
        if self.skipping:
            nl = data.find(b"\n")
            if nl < 0:
                return []
            if self.count_skip:
                longs.append(self.offset)
            self.skipping, self.count_skip = False, True
            pos = nl + 1
            self.offset = start + pos
            self.tail = data[max(0, pos - FP_MAX) : pos]
        last = data.rfind(b"\n", pos)
        if last < 0:
            if len(self.buf) + len(data) - pos <= max_line:
                self.buf += data[pos:]
                return self._emit([], longs)
            segments: list[tuple[int, bytes]] = []
            held = self.buf.rfind(b"\n") + 1  # docker/CRI: a held join's parts are whole lines
            if held:  # handed on as they are (a join that outgrows max_line), not dropped
                block = bytes(self.buf[:held])
                segments.append((self.offset, block))
                self.offset += held
                self.tail = (self.tail + block)[-FP_MAX:]
            self.buf = bytearray()
            self.skipping = True
            return self._emit(segments, longs)
        # join with a memoryview: one copy of the ~1 MiB read instead of two (slice, then
        # concatenation); the block's fresh pages make each copy cost more than memcpy
        block = b"".join((self.buf, memoryview(data)[pos : last + 1])) if self.buf else data[pos : last + 1]
        rest = data[last + 1 :]
        if self.layout != JSON:
            block, rest = self._hold(block, rest, max_line)
            if not block:
                self.buf = bytearray(rest)
                return self._emit([], longs)
        base = self.offset
        self.offset += len(block)
        self.tail = block[-FP_MAX:] if len(block) >= FP_MAX else (self.tail + block)[-FP_MAX:]
        if len(rest) > max_line:
            self.buf = bytearray()
            self.skipping = True
        else:
            self.buf = bytearray(rest)
        segments = [(base, block)]
        # only a block longer than the limit can hold a too-long line; look for one with a
        # few rfind calls before walking it line by line (a 1 MiB read plus the partial
        # line before it is longer than the default 1 MiB limit almost every time)
        if len(block) > max_line + 1 and has_long_line(block, max_line):
            segments, inner = _split_long(block, base, max_line)
            longs += inner
        return self._emit(segments, longs)

    def _hold(self, block: bytes, rest: bytes, max_line: int) -> tuple[bytes, bytes]:
        """Docker/CRI: keep the parts of a joined line that is not finished back with the
        partial line, so the offset handed on (and committed) is its first part's start
        (CONTRACT §12). A join that outgrows ``max_line`` is handed on as it is."""
        if self.layout == AUTO:
            self.layout = detect(self._first_line(block))
            if self.layout == JSON:
                return block, rest
        cut = open_from(block, self.layout)
        if cut >= len(block) or len(block) - cut + len(rest) > max_line:
            return block, rest
        return block[:cut], block[cut:] + rest

    def _first_line(self, block: bytes) -> bytes:
        """The file's first complete line, which decides an "auto" file's format (CONTRACT
        §12) wherever reading starts: ``block``'s first line when it is the file's start
        (or the file's cannot be read back), so a stray line read first after a restart
        cannot make a CRI file plain JSON. Read back at most ``FIRST_LINE_MAX`` bytes."""
        line = block[: block.find(b"\n")]
        if self.offset > 0:
            with contextlib.suppress(OSError):
                head = os.pread(self.fd, FIRST_LINE_MAX, 0)
                if (nl := head.find(b"\n")) >= 0:
                    line = head[:nl]
        return line.rstrip(b"\r")

    def _held_chunk(self) -> Chunk:
        """What ``buf`` holds, handed on as it is (a NUL run ended it, or the file closes)."""
        return Chunk(
            self.key, self.source, self.path, self.offset, bytes(self.buf), layout=self._decided(), name=self._name()
        )

    def _decided(self) -> str:
        """What an "auto" file was decided to be, for its chunks (the parser must not guess
        per chunk: one starting with a stray line would read a CRI file as plain JSON);
        "" for a configured format, or one not decided yet."""
        return self.layout if self.configured == AUTO and self.layout != AUTO else ""

    def _name(self) -> str:
        """The chunks' ``name``: the matched path when the file has been renamed away since."""
        return "" if self.name == self.path else self.name

    def _emit(self, segments: list[tuple[int, bytes]], longs: list[int]) -> list[Chunk]:
        fmt = self._decided()
        name = self._name()
        chunks = [
            Chunk(self.key, self.source, self.path, off, data, layout=fmt, name=name) for off, data in segments if data
        ]
        if longs:
            if not chunks:
                chunks.append(Chunk(self.key, self.source, self.path, self.offset, b"", layout=fmt, name=name))
            chunks[-1].skipped_long = len(longs)
            chunks[-1].long_offsets = longs[:MAX_LONG_OFFSETS]
        return chunks

    def flush(self) -> list[Chunk]:
        """At close: hand on an unterminated last line (or count it, if it was too long)."""
        chunks: list[Chunk] = []
        if self.skipping:
            if self.count_skip:
                chunks.append(Chunk(self.key, self.source, self.path, self.cursor, b"", 1, [self.offset]))
            self.tail = b""
        elif self.buf:
            chunks.append(self._held_chunk())
            self.tail = (self.tail + self.buf)[-FP_MAX:]
        self.offset = self.cursor
        self.buf = bytearray()
        self.skipping = False
        return chunks


def _split_long(block: bytes, base: int, max_line: int) -> tuple[list[tuple[int, bytes]], list[int]]:
    """Cut the lines longer than ``max_line`` out of a block of complete lines."""
    segments: list[tuple[int, bytes]] = []
    longs: list[int] = []
    seg = pos = 0
    while pos < len(block):
        nl = block.find(b"\n", pos)
        if nl - pos > max_line:
            segments.append((base + seg, block[seg:pos]))
            longs.append(base + pos)
            seg = nl + 1
        pos = nl + 1
    segments.append((base + seg, block[seg:]))
    return segments, longs


def end_of_last_line(fd: int, size: int, max_line: int) -> tuple[int, bool]:
    """Where "start at the end" starts: just after the last newline.

    Returns ``(offset, skip)``; ``skip`` means there is no newline within ``max_line``
    bytes of the end, so the rest of that (over-long) line is to be dropped silently.
    A file that is one unfinished short line starts at 0, to be read once it ends.
    """
    end = size
    limit = max(0, size - max_line - 1)
    while end > limit:
        start = max(limit, end - _BACKSCAN)
        block = os.pread(fd, end - start, start)
        nl = block.rfind(b"\n")
        if nl >= 0:
            return start + nl + 1, False
        end = start
    if limit == 0:
        return 0, False
    return size, True


def stored_copy_of(pos: Position) -> FileKey | None:
    """The original a stored copy was linked to (kept in ``Position.extra``), if any."""
    raw = pos.extra.get("copy_of") if isinstance(pos.extra, dict) else None
    if isinstance(raw, (list, tuple)) and len(raw) == 2 and all(isinstance(x, int) for x in raw):
        return (raw[0], raw[1])
    return None


def real_folder(path: str) -> str:
    """The folder the file behind ``path`` lives in (symlinks resolved): where its
    rotated names and copies are."""
    try:
        return os.path.dirname(os.path.realpath(path))
    except OSError:
        return os.path.dirname(path)
