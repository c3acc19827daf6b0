"""Tailer on real files: growth, start positions, rotation, truncation, deletion, errors,
checkpoints. Every test asserts the exact lines handed on and their order per file."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from errord.model import FileKey, Position
from errord.sources import fileid
from errord.sources.base import Checkpoint, Chunk, Source
from errord.sources.tail import Tailer

ROTATE_WAIT = 0.3
SCAN = 0.2
UNSEEN = "unseen_since"  # Position.extra: when a kept position's file last matched


@dataclass
class Src:
    """The attributes the tailer reads from a ``SourceSettings``."""

    path: str
    app: str | None = None
    start_at: str = "beginning"
    rotate_wait: float = ROTATE_WAIT
    max_line_bytes: int = 1 << 20


def L(tag: str, i: int) -> bytes:
    """One JSON log line, long enough that a few of them fill a 256-byte fingerprint."""
    return b'{"message": "%s-%04d", "error_code": "E%d", "pad": "%s"}\n' % (tag.encode(), i, i, b"x" * 40)


def lines(tag: str, a: int, b: int) -> list[bytes]:
    return [L(tag, i) for i in range(a, b)]


def append(path: Path, data: list[bytes] | bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data if isinstance(data, bytes) else b"".join(data))


def key_of(path: Path) -> FileKey:
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def split(data: bytes) -> list[bytes]:
    """Lines of a chunk, each with its newline (the last may lack one when a file closed)."""
    parts = [p + b"\n" for p in data.split(b"\n")]
    parts[-1] = parts[-1][:-1]
    return [p for p in parts if p]


class Driver:
    """Runs a Tailer the way the daemon's batch loop does and records what it hands on."""

    def __init__(self, tailer: Tailer) -> None:
        self.t = tailer
        self.got: list[tuple[str, bytes]] = []  # (path the bytes came from, line)
        self.keyed: list[tuple[FileKey, bytes]] = []  # (identity, line)
        self.chunks: list[Chunk] = []
        self.db: dict[FileKey, Position] = {}  # what a journal would hold
        self.gone: list[Position] = []

    def step(self, max_bytes: int = 8 << 20, commit: bool = True) -> list[Chunk]:
        chunks = self.t.read(max_bytes)
        for c in chunks:
            got = split(c.data)
            self.got += [(c.path, ln) for ln in got]
            self.keyed += [(c.key, ln) for ln in got]
            self.t.account(c.key, len(got), c.skipped_long)
        self.chunks += chunks
        if commit:
            for p in self.t.checkpoint().positions:
                if p.gone:
                    self.db.pop(p.key, None)
                    self.gone.append(p)
                else:
                    self.db[p.key] = p
            self.t.committed()
        return chunks

    def kept(self, key: FileKey) -> bool:
        """The journal keeps ``key``'s position as that of a file no longer followed."""
        p = self.db.get(key)
        return p is not None and UNSEEN in p.extra

    def lines(self, name: str | None = None) -> list[bytes]:
        return [ln for p, ln in self.got if name is None or os.path.basename(p) == name]

    def of(self, key: FileKey) -> list[bytes]:
        return [ln for k, ln in self.keyed if k == key]

    async def until(self, cond: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.step()
            if cond():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; got {[ln for _, ln in self.got]}")
            await self.t.wait(0.05)

    async def run_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await self.t.wait(0.05)
            self.step()


Make = Callable[..., Driver]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    """Factory: an opened-later Tailer wrapped in a Driver; closed at teardown."""
    made: list[Tailer] = []

    def factory(
        sources: list[Src], positions: list[Position] | None = None, *, first_start: bool = True, **kw: object
    ) -> Driver:
        kw.setdefault("scan_interval", SCAN)
        t = Tailer(sources, positions or [], first_start=first_start, **kw)  # type: ignore[arg-type]
        made.append(t)
        return Driver(t)

    yield factory
    for t in made:
        await t.close()


async def opened(d: Driver) -> Driver:
    await d.t.open()
    return d


# -- growth --------------------------------------------------------------------------


async def test_append_and_read(tmp_path: Path, make: Make) -> None:
    log = tmp_path / "app.jsonl"
    append(log, lines("a", 0, 3))
    d = await opened(make([Src(str(tmp_path / "*.jsonl"))]))
    await d.until(lambda: len(d.got) >= 3)
    append(log, lines("a", 3, 5))
    await d.until(lambda: len(d.got) >= 5)
    await d.run_for(0.2)
    assert d.lines() == lines("a", 0, 5)
    assert d.got[0][0] == str(log)
    pos = d.db[key_of(log)]
    assert (pos.offset, pos.lines_read, pos.path) == (log.stat().st_size, 5, str(log))
    assert pos.fp_len == 256 and pos.fp_hash == fileid.digest(log.read_bytes()[:256])
    [st] = d.t.files()
    assert (st.path, st.position, st.size, st.lines_read, st.source) == (
        str(log),
        log.stat().st_size,
        log.stat().st_size,
        5,
        0,
    )
    await d.t.close()


async def test_partial_line_is_held_until_its_newline(tmp_path: Path, make: Make) -> None:
    log = tmp_path / "app.jsonl"
    append(log, b'{"a": 1}\n{"b": ')
    d = await opened(make([Src(str(log))]))
    await d.until(lambda: len(d.got) >= 1)
    await d.run_for(0.2)
    assert d.lines() == [b'{"a": 1}\n']
    assert d.db[key_of(log)].offset == 9  # not past the last newline
    append(log, b'2}\n{"c": 3}\n')
    await d.until(lambda: len(d.got) >= 3)
    assert d.lines() == [b'{"a": 1}\n', b'{"b": 2}\n', b'{"c": 3}\n']
    assert [c.offset for c in d.chunks if c.data] == [0, 9]
    await d.t.close()


# -- where reading starts --------------------------------------------------------------


async def test_a_chunk_says_whether_it_reached_the_end_and_when_the_file_changed(tmp_path: Path, make: Make) -> None:
    """``Chunk.at_end`` and ``Chunk.mtime`` from the tailer's own fstat: what zonecheck
    needs to tell a live line from a backlog without a stat of its own."""
    log = tmp_path / "app.jsonl"
    append(log, lines("a", 0, 300))  # ~30 KB: several reads of 4 KiB
    d = await opened(make([Src(str(log))], chunk_bytes=4096))
    await d.until(lambda: len(d.got) >= 300)
    read = [c for c in d.chunks if c.data]
    assert len(read) > 3
    assert [c.at_end for c in read] == [False] * (len(read) - 1) + [True]
    assert read[-1].mtime == pytest.approx(log.stat().st_mtime, abs=1e-6)
    assert all(c.mtime == 0.0 for c in read[:-1])
    await d.t.close()


async def test_start_at_end_vs_beginning_on_first_start(tmp_path: Path, make: Make) -> None:
    (tmp_path / "e").mkdir()
    (tmp_path / "b").mkdir()
    end_log, beg_log = tmp_path / "e" / "app.jsonl", tmp_path / "b" / "app.jsonl"
    append(end_log, lines("old-e", 0, 3))
    append(beg_log, lines("old-b", 0, 3))
    d = await opened(
        make(
            [
                Src(str(tmp_path / "e" / "*.jsonl"), start_at="end"),
                Src(str(tmp_path / "b" / "*.jsonl"), start_at="beginning"),
            ]
        )
    )
    d.step()
    # The first checkpoint persists where "end" put the file, though nothing was read from it.
    assert d.db[key_of(end_log)].offset == end_log.stat().st_size
    assert d.db[key_of(end_log)].source == 0
    append(end_log, lines("new-e", 0, 2))
    await d.until(lambda: len(d.got) >= 5)
    await d.run_for(0.2)
    assert [ln for p, ln in d.got if p == str(beg_log)] == lines("old-b", 0, 3)
    assert [ln for p, ln in d.got if p == str(end_log)] == lines("new-e", 0, 2)
    assert {c.source for c in d.chunks if c.path == str(end_log)} == {0}
    assert {c.source for c in d.chunks if c.path == str(beg_log)} == {1}
    await d.t.close()


async def test_files_appearing_later_are_read_from_their_start(tmp_path: Path, make: Make) -> None:
    old = tmp_path / "old.jsonl"
    append(old, lines("old", 0, 3))
    d = await opened(
        make(
            [
                Src(str(tmp_path / "*.jsonl"), start_at="end"),
                Src(str(tmp_path / "later" / "sub" / "*.jsonl"), start_at="end"),
            ],
            scan_interval=30.0,
        )
    )  # only watch events can find them quickly
    d.step()
    await asyncio.sleep(0.3)  # the watchers start
    new = tmp_path / "new.jsonl"
    append(new, lines("new", 0, 2))  # written before the tailer sees the file
    await d.until(lambda: len(d.got) >= 2)
    (tmp_path / "later" / "sub").mkdir(parents=True)  # a folder that did not exist at open()
    await asyncio.sleep(0.4)
    deep = tmp_path / "later" / "sub" / "deep.jsonl"
    append(deep, lines("deep", 0, 2))
    await d.until(lambda: len(d.got) >= 4)
    await d.run_for(0.2)
    assert d.lines("new.jsonl") == lines("new", 0, 2)
    assert d.lines("deep.jsonl") == lines("deep", 0, 2)
    assert d.lines("old.jsonl") == []
    await d.t.close()


async def test_stored_position_is_resumed_and_new_files_read_whole(tmp_path: Path, make: Make) -> None:
    log = tmp_path / "app.jsonl"
    append(log, lines("a", 0, 4))
    d1 = await opened(make([Src(str(tmp_path / "*.jsonl"), start_at="end")]))
    d1.step()
    append(log, lines("a", 4, 6))
    await d1.until(lambda: len(d1.got) >= 2)
    await d1.t.close()
    stored = list(d1.db.values())
    assert [p.lines_read for p in stored] == [2]
    # errord is down: the file grows and another file appears.
    append(log, lines("a", 6, 8))
    append(tmp_path / "other.jsonl", lines("o", 0, 2))
    d2 = await opened(make([Src(str(tmp_path / "*.jsonl"), start_at="end")], stored, first_start=False))
    await d2.until(lambda: len(d2.got) >= 4)
    await d2.run_for(0.2)
    assert d2.lines("app.jsonl") == lines("a", 6, 8)
    assert d2.lines("other.jsonl") == lines("o", 0, 2)  # start_at applies to the first start only
    assert d2.db[key_of(log)].lines_read == 4  # counters carry on
    await d2.t.close()


async def test_inode_reuse_with_other_first_bytes_reads_from_zero(tmp_path: Path, make: Make) -> None:
    log = tmp_path / "app.jsonl"
    append(log, lines("new", 0, 5))
    dev, ino = key_of(log)
    other = b"".join(lines("previous-file", 0, 5))
    stale = Position(
        dev=dev, ino=ino, path=str(log), offset=200, fp_len=256, fp_hash=fileid.digest(other[:256]), lines_read=9
    )
    d = await opened(make([Src(str(log))], [stale], first_start=False))
    await d.until(lambda: len(d.got) >= 5)
    await d.run_for(0.2)
    assert d.lines() == lines("new", 0, 5)
    assert d.db[(dev, ino)].lines_read == 5
    await d.t.close()


# -- rotation --------------------------------------------------------------------------


async def test_rename_rotation_follows_the_renamed_file_and_reads_the_new_one(tmp_path: Path, make: Make) -> None:
    log, rotated = tmp_path / "app.jsonl", tmp_path / "app.jsonl.1"
    writer = open(log, "ab", buffering=0)  # noqa: SIM115 - an app that never reopens its log
    writer.write(b"".join(lines("a", 0, 3)))
    d = await opened(make([Src(str(tmp_path / "*.jsonl"))]))
    await d.until(lambda: len(d.got) >= 3)
    old_key = key_of(log)
    os.rename(log, rotated)
    writer.write(b"".join(lines("a", 3, 5)))
    await d.run_for(0.3)
    writer.write(b"".join(lines("a", 5, 7)))  # still appending to the renamed file
    append(log, lines("b", 0, 3))  # the new file at the path
    await d.run_for(0.2)
    writer.write(L("a", 7)[:20])  # an unterminated last line before the writer stops
    writer.close()
    await d.until(lambda: d.kept(old_key), timeout=5)
    tail = L("a", 7)[:20]
    assert d.of(old_key) == [*lines("a", 0, 7), tail]
    assert d.of(key_of(log)) == lines("b", 0, 3)
    assert d.lines("app.jsonl.1")[-1] == tail  # the renamed file's new name was learnt
    assert sorted(d.lines()) == sorted([*lines("a", 0, 7), tail, *lines("b", 0, 3)])
    assert [f.path for f in d.t.files()] == [str(log)]
    # closed, its position kept (at its end) in case a glob matches the rotated name later
    assert d.db[old_key].offset == rotated.stat().st_size and d.db[old_key].path == str(rotated)
    assert not d.gone
    await d.t.close()


async def test_rename_with_a_glob_matching_both_names_reads_once(tmp_path: Path, make: Make) -> None:
    log, rotated = tmp_path / "app.jsonl", tmp_path / "app.jsonl.1"
    writer = open(log, "ab", buffering=0)  # noqa: SIM115
    writer.write(b"".join(lines("a", 0, 3)))
    d = await opened(make([Src(str(tmp_path / "app.jsonl*"))]))
    await d.until(lambda: len(d.got) >= 3)
    old_key = key_of(log)
    os.rename(log, rotated)
    writer.write(b"".join(lines("a", 3, 5)))
    append(log, lines("b", 0, 2))
    await d.until(lambda: len(d.got) >= 7)
    await d.run_for(3 * ROTATE_WAIT)
    writer.close()
    assert d.lines() and sorted(d.lines()) == sorted(lines("a", 0, 5) + lines("b", 0, 2))
    assert d.of(old_key) == lines("a", 0, 5)
    assert d.of(key_of(log)) == lines("b", 0, 2)
    assert d.db[old_key].path == str(rotated)  # the same identity, now under its new name
    assert sorted(f.path for f in d.t.files()) == [str(log), str(rotated)]  # still matched: kept
    await d.t.close()


async def test_copytruncate_reads_unread_lines_from_the_copy(tmp_path: Path, make: Make) -> None:
    log, copy = tmp_path / "app.jsonl", tmp_path / "app.jsonl.1"
    append(log, lines("a", 0, 5))
    d = await opened(make([Src(str(tmp_path / "*.jsonl"))], scan_interval=30.0))
    await d.until(lambda: len(d.got) >= 5)
    old_size = log.stat().st_size
    append(log, lines("a", 5, 10))  # not read yet when logrotate copies the file ...
    shutil.copyfile(log, copy)
    with open(log, "r+b") as fh:  # ... and truncates it; the app appends at once
        fh.truncate(0)
    append(log, lines("b", 0, 15))
    assert log.stat().st_size > old_size  # longer than the old position: only the first bytes tell
    await d.until(lambda: len(d.got) >= 25)
    await d.run_for(2 * ROTATE_WAIT + 0.2)
    assert d.lines("app.jsonl.1") == lines("a", 5, 10)
    assert d.lines("app.jsonl") == lines("a", 0, 5) + lines("b", 0, 15)
    assert [f.path for f in d.t.files()] == [str(log)]  # the copy was closed once quiet
    assert d.db[key_of(log)].offset == log.stat().st_size
    await d.t.close()


@pytest.mark.parametrize("seen_before_truncate", [True, False])
async def test_copytruncate_with_the_copy_matching_the_glob(
    tmp_path: Path, make: Make, seen_before_truncate: bool
) -> None:
    log, copy = tmp_path / "app.jsonl", tmp_path / "app.jsonl.1"
    append(log, lines("a", 0, 5))
    d = await opened(make([Src(str(tmp_path / "app.jsonl*"))], scan_interval=30.0))
    await d.until(lambda: len(d.got) >= 5)
    append(log, lines("a", 5, 10))
    shutil.copyfile(log, copy)
    if seen_before_truncate:
        await d.run_for(0.3)  # the copy is found by the glob while the original is intact
    with open(log, "r+b") as fh:
        fh.truncate(0)
    append(log, lines("b", 0, 15))
    await d.until(lambda: len(d.got) >= 25)
    await d.run_for(2 * ROTATE_WAIT)
    assert sorted(d.lines()) == sorted(lines("a", 0, 10) + lines("b", 0, 15))
    assert d.lines("app.jsonl") == (lines("a", 0, 10) if seen_before_truncate else lines("a", 0, 5)) + lines("b", 0, 15)
    assert sorted(f.path for f in d.t.files()) == [str(log), str(copy)]
    assert d.db[key_of(copy)].offset == copy.stat().st_size
    await d.t.close()


async def test_a_copy_of_a_followed_file_matching_the_glob_is_not_read_again(tmp_path: Path, make: Make) -> None:
    log, bak = tmp_path / "app.jsonl", tmp_path / "app.jsonl.bak"
    append(log, lines("a", 0, 8))
    d = await opened(make([Src(str(tmp_path / "app.jsonl*"))]))
    await d.until(lambda: len(d.got) >= 8)
    append(log, lines("a", 8, 10))  # not read yet when the copy is made
    shutil.copyfile(log, bak)
    append(log, lines("a", 10, 12))
    await d.until(lambda: len(d.got) >= 12)
    await d.run_for(0.5)
    assert d.lines("app.jsonl") == lines("a", 0, 12)
    assert d.lines("app.jsonl.bak") == []
    assert d.db[key_of(bak)].offset == bak.stat().st_size  # it is where the original was
    await d.t.close()


async def test_a_linked_copy_stays_linked_across_a_restart(tmp_path: Path, make: Make) -> None:
    log, bak = tmp_path / "app.jsonl", tmp_path / "app.jsonl.bak"
    append(log, lines("a", 0, 8))
    d1 = await opened(make([Src(str(tmp_path / "app.jsonl*"))]))
    await d1.until(lambda: len(d1.got) >= 8)
    append(log, lines("a", 8, 30))
    shutil.copyfile(log, bak)
    await asyncio.sleep(0.2)  # the watch event arrives; nothing read yet
    d1.step(max_bytes=300)  # finds the copy, reads a little of the original
    assert key_of(bak) in d1.db and d1.db[key_of(bak)].offset < bak.stat().st_size
    await d1.t.close()
    append(log, lines("a", 30, 32))
    d2 = await opened(make([Src(str(tmp_path / "app.jsonl*"))], list(d1.db.values()), first_start=False))
    await d2.until(lambda: len(d1.got) + len(d2.got) >= 32)
    await d2.run_for(0.3)
    assert d1.lines() + d2.lines() == lines("a", 0, 32)  # the copy is not read beside its original
    await d2.t.close()


@pytest.mark.parametrize("old_still_followed", [True, False])
async def test_a_new_file_starting_like_a_rotated_one_is_read_whole(
    tmp_path: Path, make: Make, old_still_followed: bool
) -> None:
    """An app restarted after rotation writes the same banner (> 256 bytes, no timestamps):
    the first bytes match, but it is no copy and must be read from its start."""
    log = tmp_path / "app.jsonl"
    banner = [b'{"message": "starting worker", "pad": "%s"}\n' % (b"=" * 80)] * 3
    append(log, banner + lines("a", 0, 3))
    d = await opened(make([Src(str(tmp_path / "*.jsonl"), rotate_wait=0.3 if old_still_followed else 0.05)]))
    await d.until(lambda: len(d.got) >= 6)
    old_key = key_of(log)
    os.rename(log, tmp_path / "app.jsonl.1")
    if not old_still_followed:
        await d.until(lambda: d.kept(old_key))  # closed: only remembered
    append(log, banner + lines("b", 0, 3))
    await d.until(lambda: len(d.got) >= 12)
    await d.run_for(0.2)
    assert d.of(key_of(log)) == banner + lines("b", 0, 3)
    await d.t.close()


async def test_a_copy_of_a_closed_file_matching_the_glob_starts_where_we_were(tmp_path: Path, make: Make) -> None:
    log = tmp_path / "app.jsonl"
    append(log, lines("a", 0, 6))
    d = await opened(make([Src(str(tmp_path / "*.jsonl"), rotate_wait=0.05)]))
    await d.until(lambda: len(d.got) >= 6)
    k = key_of(log)
    os.rename(log, tmp_path / "app.log.1")
    await d.until(lambda: d.kept(k))
    shutil.copyfile(tmp_path / "app.log.1", tmp_path / "restored.jsonl")
    await d.run_for(0.5)
    assert d.lines() == lines("a", 0, 6)
    assert [os.path.basename(f.path) for f in d.t.files()] == ["restored.jsonl"]
    await d.t.close()


async def test_deleted_right_after_writing_last_lines_still_read(tmp_path: Path, make: Make) -> None:
    log = tmp_path / "app.jsonl"
    append(log, lines("a", 0, 2))
    d = await opened(make([Src(str(tmp_path / "*.jsonl"))]))
    await d.until(lambda: len(d.got) >= 2)
    k = key_of(log)
    append(log, lines("a", 2, 5))
    log.unlink()
    await d.until(lambda: any(g.key == k for g in d.gone))
    assert d.lines() == lines("a", 0, 5)
    assert d.t.files() == [] and k not in d.db
    await d.t.close()


async def test_rotation_while_down_reads_the_rest_of_the_renamed_file(tmp_path: Path, make: Make) -> None:
    log, rotated = tmp_path / "app.jsonl", tmp_path / "app.jsonl.1"
    append(log, lines("a", 0, 4))
    d1 = await opened(make([Src(str(tmp_path / "*.jsonl"))]))
    await d1.until(lambda: len(d1.got) >= 4)
    await d1.t.close()
    old_key = key_of(log)
    stored = [
        *d1.db.values(),
        Position(dev=1, ino=999999, path=str(tmp_path / "vanished.jsonl"), offset=10, fp_len=10, fp_hash="00"),
    ]
    # While errord is down: more lines, rename, a new file at the path.
    append(log, lines("a", 4, 7))
    os.rename(log, rotated)
    append(log, lines("b", 0, 2))
    d2 = await opened(make([Src(str(tmp_path / "*.jsonl"))], stored, first_start=False))
    d2.step()
    assert d2.kept((1, 999999)) and not d2.gone  # found nowhere: kept in case it comes back
    await d2.until(lambda: d2.kept(old_key))
    assert d2.lines("app.jsonl.1") == lines("a", 4, 7)
    assert d2.lines("app.jsonl") == lines("b", 0, 2)
    await d2.t.close()


async def test_copytruncate_while_down_recovers_from_the_copy(tmp_path: Path, make: Make) -> None:
    log, copy = tmp_path / "app.jsonl", tmp_path / "app.jsonl-20260114"
    append(log, lines("a", 0, 4))
    d1 = await opened(make([Src(str(tmp_path / "*.jsonl"))]))
    await d1.until(lambda: len(d1.got) >= 4)
    await d1.t.close()
    append(log, lines("a", 4, 6))
    shutil.copyfile(log, copy)
    with open(log, "r+b") as fh:
        fh.truncate(0)
    append(log, lines("b", 0, 8))
    d2 = await opened(make([Src(str(tmp_path / "*.jsonl"))], list(d1.db.values()), first_start=False))
    await d2.until(lambda: len(d2.got) >= 10)
    await d2.run_for(2 * ROTATE_WAIT)
    assert d2.lines(copy.name) == lines("a", 4, 6)
    assert d2.lines("app.jsonl") == lines("b", 0, 8)
    await d2.t.close()


# -- long lines and errors -------------------------------------------------------------


async def test_overlong_line_is_skipped_without_buffering_it(tmp_path: Path, make: Make) -> None:
    log = tmp_path / "app.jsonl"
    append(log, L("a", 0))
    big_at = log.stat().st_size
    with open(log, "ab") as fh:
        for _ in range(10):
            fh.write(b"y" * (1 << 20))
        fh.write(b"\n")
    append(log, L("a", 1))
    d = await opened(make([Src(str(log), max_line_bytes=1 << 20)], chunk_bytes=256 << 10))
    tracemalloc.start()
    try:
        await d.until(lambda: len(d.got) >= 2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert d.lines() == [L("a", 0), L("a", 1)]
    assert sum(c.skipped_long for c in d.chunks) == 1
    assert [o for c in d.chunks for o in c.long_offsets] == [big_at]
    assert peak < 4 << 20, peak  # the 10 MB line was never held
    assert d.db[key_of(log)].offset == log.stat().st_size
    await d.t.close()


async def test_long_lines_inside_one_read_are_cut_out(tmp_path: Path, make: Make) -> None:
    log = tmp_path / "app.jsonl"
    body = [L("a", 0), b"z" * 1000 + b"\n", L("a", 1), b"w" * 301 + b"\n", b"v" * 300 + b"\n", L("a", 2)]
    append(log, body)
    d = await opened(make([Src(str(log), max_line_bytes=300)]))
    await d.until(lambda: len(d.got) >= 4)
    assert d.lines() == [L("a", 0), L("a", 1), b"v" * 300 + b"\n", L("a", 2)]
    assert sum(c.skipped_long for c in d.chunks) == 2
    starts = [0, len(body[0]), len(body[0]) + len(body[1]) + len(body[2])]
    assert sorted(o for c in d.chunks for o in c.long_offsets) == starts[1:]
    for c in d.chunks:  # each chunk's offset is where its data sits in the file
        assert log.read_bytes()[c.offset : c.offset + len(c.data)] == c.data
    await d.t.close()


async def test_unreadable_file_directory_and_symlink_loop_do_not_break_others(
    tmp_path: Path, make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok, secret = tmp_path / "ok.jsonl", tmp_path / "secret.jsonl"
    append(ok, lines("ok", 0, 2))
    append(secret, lines("s", 0, 2))
    (tmp_path / "dir.jsonl").mkdir()
    os.symlink(tmp_path / "loop.jsonl", tmp_path / "loop.jsonl")
    denied = {str(secret)}
    real_open = fileid.open_readonly

    def fake_open(path: str) -> int:  # root ignores file modes, so deny it here
        if path in denied:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path)

    monkeypatch.setattr(fileid, "open_readonly", fake_open)
    secret.chmod(0)
    d = await opened(make([Src(str(tmp_path / "*.jsonl"), start_at="end")]))
    append(ok, lines("ok", 2, 3))
    await d.until(lambda: len(d.got) >= 1)
    assert d.lines() == lines("ok", 2, 3)
    denied.clear()
    secret.chmod(0o644)  # readable now: picked up at a rescan, read from its start
    await d.until(lambda: len(d.got) >= 3)
    await d.run_for(0.2)
    assert d.lines("secret.jsonl") == lines("s", 0, 2)
    assert sorted(os.path.basename(f.path) for f in d.t.files()) == ["ok.jsonl", "secret.jsonl"]
    await d.t.close()


async def test_read_is_fair_and_bounded(tmp_path: Path, make: Make) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    append(a, lines("a", 0, 2000))
    append(b, lines("b", 0, 2000))
    d = await opened(make([Src(str(tmp_path / "*.jsonl"))], chunk_bytes=8192))
    chunks = d.step(max_bytes=64 << 10)
    assert sum(len(c.data) for c in chunks) <= 64 << 10
    assert {c.path for c in chunks} == {str(a), str(b)}  # both files got a share
    await d.until(lambda: len(d.got) >= 4000)
    assert d.lines("a.jsonl") == lines("a", 0, 2000) and d.lines("b.jsonl") == lines("b", 0, 2000)
    await d.t.close()


async def test_reconfigure_keeps_positions_and_drops_unmatched_files(tmp_path: Path, make: Make) -> None:
    keep, drop, added = tmp_path / "keep.jsonl", tmp_path / "drop.log", tmp_path / "new.txt"
    append(keep, lines("k", 0, 2))
    append(drop, lines("d", 0, 2))
    append(added, lines("n", 0, 2))
    d = await opened(make([Src(str(tmp_path / "*.jsonl")), Src(str(tmp_path / "*.log"))]))
    await d.until(lambda: len(d.got) >= 4)
    d.t.reconfigure([Src(str(tmp_path / "*.txt"), start_at="end"), Src(str(tmp_path / "*.jsonl"))])
    append(keep, lines("k", 2, 3))
    append(drop, lines("d", 2, 3))
    await d.until(lambda: len(d.got) >= 7)
    await d.run_for(0.2)
    assert d.lines("keep.jsonl") == lines("k", 0, 3)
    assert d.lines("drop.log") == lines("d", 0, 2)
    assert d.lines("new.txt") == lines("n", 0, 2)  # a file seen later: from its start
    assert d.db[key_of(keep)].source == 1
    assert d.kept(key_of(drop)) and d.db[key_of(drop)].offset == len(b"".join(lines("d", 0, 2)))
    assert {c.source for c in d.chunks if c.path == str(added)} == {0}
    await d.t.close()


# -- files that stop matching ----------------------------------------------------------


async def test_a_file_that_stops_matching_resumes_where_it_was_when_it_matches_again(
    tmp_path: Path, make: Make
) -> None:
    """A glob removed on SIGHUP and restored (a typo fixed): the lines appended meanwhile are
    read once, the ones read before are not read again."""
    log = tmp_path / "app.jsonl"
    append(log, lines("a", 0, 3))
    d = await opened(make([Src(str(tmp_path / "*.jsonl"))]))
    await d.until(lambda: len(d.got) >= 3)
    d.t.reconfigure([Src(str(tmp_path / "*.jsnol"))])  # the typo
    append(log, lines("a", 3, 5))
    await d.run_for(0.5)
    assert d.lines() == lines("a", 0, 3) and d.kept(key_of(log)) and d.t.files() == []
    d.t.reconfigure([Src(str(tmp_path / "*.jsonl"))])  # fixed
    append(log, lines("a", 5, 6))
    await d.until(lambda: len(d.got) >= 6)
    await d.run_for(0.3)
    assert d.lines() == lines("a", 0, 6)
    assert not d.kept(key_of(log)) and d.db[key_of(log)].offset == log.stat().st_size
    await d.t.close()


async def test_a_kept_position_is_resumed_after_a_restart(tmp_path: Path, make: Make) -> None:
    log = tmp_path / "app.jsonl"
    append(log, lines("a", 0, 3))
    d1 = await opened(make([Src(str(tmp_path / "*.jsonl"))]))
    await d1.until(lambda: len(d1.got) >= 3)
    d1.t.reconfigure([Src(str(tmp_path / "*.nothing"))])
    await d1.until(lambda: d1.kept(key_of(log)))
    await d1.t.close()
    append(log, lines("a", 3, 5))
    # restarted while the glob matches nothing: the position stays kept
    d2 = await opened(make([Src(str(tmp_path / "*.nothing"))], list(d1.db.values()), first_start=False))
    await d2.run_for(0.3)
    assert d2.got == [] and d2.db == {}  # not even written again
    await d2.t.close()
    # and restarted with the glob back
    d3 = await opened(make([Src(str(tmp_path / "*.jsonl"))], list(d1.db.values()), first_start=False))
    await d3.until(lambda: len(d3.got) >= 2)
    await d3.run_for(0.3)
    assert d3.lines() == lines("a", 3, 5)
    await d3.t.close()


async def test_a_folder_renamed_away_and_back_resumes(tmp_path: Path, make: Make) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "app.jsonl"
    append(log, lines("a", 0, 3))
    d = await opened(make([Src(str(logs / "*.jsonl"), rotate_wait=0.1)]))
    await d.until(lambda: len(d.got) >= 3)
    k = key_of(log)
    os.rename(logs, tmp_path / "logs.old")
    await d.until(lambda: d.kept(k))
    append(tmp_path / "logs.old" / "app.jsonl", lines("a", 3, 4))
    os.rename(tmp_path / "logs.old", logs)
    await d.until(lambda: len(d.got) >= 4)
    await d.run_for(0.3)
    assert d.lines() == lines("a", 0, 4)
    await d.t.close()


async def test_a_kept_position_on_a_reused_inode_reads_the_new_file_whole(tmp_path: Path, make: Make) -> None:
    """Inode reuse is told by the first bytes: a kept position of other content is not resumed."""
    log = tmp_path / "app.jsonl"
    append(log, lines("new", 0, 4))
    st = os.stat(log)
    old = Position(
        dev=st.st_dev,
        ino=st.st_ino,
        path=str(tmp_path / "gone.jsonl"),
        offset=100,
        fp_len=256,
        fp_hash=fileid.digest(b"x" * 256),
        lines_read=2,
        extra={UNSEEN: time.time() - 60},
    )
    d = await opened(make([Src(str(tmp_path / "*.jsonl"))], [old], first_start=False))
    await d.until(lambda: len(d.got) >= 4)
    assert d.lines() == lines("new", 0, 4) and not d.kept(key_of(log))
    await d.t.close()


async def test_kept_positions_are_forgotten_after_seven_days(tmp_path: Path, make: Make) -> None:
    now = time.time()
    old = Position(
        dev=1,
        ino=424242,
        path=str(tmp_path / "old.jsonl"),
        offset=10,
        fp_len=10,
        fp_hash="00",
        extra={UNSEEN: now - 7 * 86400 - 60},
    )
    recent = Position(
        dev=1,
        ino=434343,
        path=str(tmp_path / "recent.jsonl"),
        offset=10,
        fp_len=10,
        fp_hash="00",
        extra={UNSEEN: now - 6 * 86400},
    )
    d = await opened(make([Src(str(tmp_path / "*.jsonl"))], [old, recent], first_start=False))
    d.step()
    assert [p.key for p in d.gone] == [old.key] and recent.key not in d.db  # untouched, still stored
    await d.t.close()


# -- checkpoints -----------------------------------------------------------------------


async def test_the_tailer_is_the_batch_source_and_its_checkpoint_holds_positions(tmp_path: Path, make: Make) -> None:
    """The batch codes against ``sources.base.Source``: the tailer has every method of it,
    and its checkpoint is a ``Checkpoint`` of file positions, with no meta (files have no
    other kind of position), false once nothing changed since the last commit."""
    assert [n for n in vars(Source) if not n.startswith("_") and not callable(getattr(Tailer, n, None))] == []
    log = tmp_path / "app.jsonl"
    append(log, lines("a", 0, 2))
    d = await opened(make([Src(str(log))]))
    for c in d.t.read():
        d.t.account(c.key, len(split(c.data)), c.skipped_long)
    cp = d.t.checkpoint()
    assert isinstance(cp, Checkpoint) and cp.meta == {}
    assert [(p.key, p.offset, p.lines_read, p.gone) for p in cp.positions] == [
        (key_of(log), log.stat().st_size, 2, False)
    ]
    d.t.committed()
    assert not d.t.checkpoint()
    d.t.committed()
    await d.t.close()


async def test_rollback_hands_the_same_lines_again(tmp_path: Path, make: Make) -> None:
    log = tmp_path / "app.jsonl"
    append(log, lines("a", 0, 2))
    d = await opened(make([Src(str(log))]))
    await d.until(lambda: len(d.got) >= 2)
    committed = dict(d.db)
    append(log, [*lines("a", 2, 4), b'{"partial'])
    chunks = []
    for _ in range(50):
        chunks = d.step(commit=False)
        if chunks:
            break
        await d.t.wait(0.05)
    first = b"".join(c.data for c in chunks)
    assert first == b"".join(lines("a", 2, 4))
    assert d.t.checkpoint().positions[0].lines_read == 4
    d.t.rollback()  # the journal commit failed
    again = d.step()
    assert b"".join(c.data for c in again) == first
    assert d.db[key_of(log)].offset == committed[key_of(log)].offset + len(first)
    assert d.db[key_of(log)].lines_read == 4  # counted once: the failed batch was undone
    assert d.step() == []
    await d.t.close()


async def test_rollback_reopens_a_deleted_file_closed_in_the_failed_batch(tmp_path: Path, make: Make) -> None:
    log = tmp_path / "app.jsonl"
    append(log, lines("a", 0, 2))
    d = await opened(make([Src(str(log))]))
    await d.until(lambda: len(d.got) >= 2)
    k = key_of(log)
    append(log, lines("a", 2, 3))
    log.unlink()
    got: list[bytes] = []
    for _ in range(100):  # read without committing until the tailer closes the file
        got += [ln for c in d.t.read() for ln in split(c.data)]
        if any(p.gone for p in d.t.checkpoint().positions):
            break
        await d.t.wait(0.05)
    assert got == lines("a", 2, 3)
    d.t.rollback()
    d.got.clear()
    await d.until(lambda: any(g.key == k for g in d.gone))
    assert d.lines() == lines("a", 2, 3)  # read again through the still-open fd
    await d.t.close()


# -- watching --------------------------------------------------------------------------


async def test_an_appended_line_arrives_within_a_second(tmp_path: Path, make: Make) -> None:
    log = tmp_path / "app.jsonl"
    log.touch()
    d = await opened(make([Src(str(tmp_path / "*.jsonl"))], scan_interval=60.0))
    d.step()
    await asyncio.sleep(0.3)  # the watcher starts
    for i in range(3):
        t0 = time.monotonic()
        append(log, [L("a", i)])
        while not d.step():
            assert time.monotonic() - t0 < 1.0, "no event within a second"
            await d.t.wait(5.0)
        assert time.monotonic() - t0 < 1.0
    assert d.lines() == lines("a", 0, 3)
    await d.t.close()


async def test_close_returns_quickly_and_wakes_a_waiter(tmp_path: Path, make: Make) -> None:
    (tmp_path / "app.jsonl").touch()
    d = await opened(
        make([Src(str(tmp_path / "*.jsonl")), Src(str(tmp_path / "x" / "**" / "*.jsonl"))], scan_interval=60.0)
    )
    d.step()
    await asyncio.sleep(0.2)
    waiter = asyncio.create_task(d.t.wait(None))
    await asyncio.sleep(0.05)
    t0 = time.monotonic()
    await d.t.close()
    await asyncio.wait_for(waiter, 1.0)
    assert time.monotonic() - t0 < 1.0
    assert d.t.read() == [] and d.t.files() == []


# -- end to end: a glob removed and restored, where reading starts -------------------------


def _rewrite(e, tmp_path: Path, glob: str, **cfg: object) -> None:  # type: ignore[no-untyped-def]
    from conftest import write_config

    cfg.setdefault("server_id", "test-host")
    cfg.setdefault("node_name", "n1")
    write_config(
        e.config,
        state_dir=str(tmp_path / "state"),
        sources=[{"path": str(tmp_path / "logs" / glob), "start_at": "beginning", "rotate_wait": "1s", "app": "demo"}],
        **cfg,
    )


def _reload(e) -> None:  # type: ignore[no-untyped-def]
    import signal as _signal

    n = e.output().count("config reloaded")
    e.proc.send_signal(_signal.SIGHUP)
    end = time.monotonic() + 20
    while e.output().count("config reloaded") <= n:
        assert time.monotonic() < end, e.output()[-2000:]
        time.sleep(0.05)


@pytest.mark.slow
def test_a_glob_removed_and_restored_resumes_where_it_was(make_errord, receiver, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """CONTRACT §7: a file that stops matching keeps its position and resumes there — on
    SIGHUP, and across a restart while the glob was gone. Every line once, no notice twice."""
    from conftest import line

    notify = [{"url": receiver.url()}]
    e = make_errord(notify=notify)
    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    append(log, [line(f"a{i}") for i in range(10)])
    receiver.wait_for(10, timeout=15)
    _rewrite(e, tmp_path, "*.jsnol", notify=notify)  # a typo: matches nothing
    _reload(e)
    append(log, [line(f"b{i}") for i in range(5)])
    time.sleep(1.5)
    assert len(receiver.received) == 10  # not matched: not read
    _rewrite(e, tmp_path, "*.jsonl", notify=notify)  # fixed
    _reload(e)
    receiver.wait_for(15, timeout=15)
    e.wait_caught_up()
    # across a restart while the glob is gone
    _rewrite(e, tmp_path, "*.jsnol", notify=notify)
    _reload(e)
    append(log, [line(f"c{i}") for i in range(3)])
    assert e.stop() == 0
    e.start()
    append(log, [line("c3")])
    time.sleep(1.5)
    assert len(receiver.received) == 15
    assert e.stop() == 0
    _rewrite(e, tmp_path, "*.jsonl", notify=notify)
    e.start()
    receiver.wait_for(19, timeout=15)
    status = e.wait_caught_up()
    time.sleep(1.0)  # anything doubled would arrive now
    titles = [r.body["title"].split()[1] for r in receiver.delivered]
    assert sorted(titles) == sorted(
        [f"a{i}" for i in range(10)] + [f"b{i}" for i in range(5)] + [f"c{i}" for i in range(4)]
    )
    assert {h["code"]: h["occurrences"] for h in e.json("history")} == {t: 1 for t in titles}
    assert [f["lines_read"] for f in status["files"]] == [19]
    assert "matches again: resuming at its stored position" in e.output()
    assert e.stop() == 0


@pytest.mark.slow
def test_a_new_file_on_the_inode_of_a_kept_position_is_new_not_a_warning(make_errord, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Review of issue 11.1: a file that stopped matching keeps its position; a different
    file that later matches with the same inode (a reused inode: here the same inode
    rewritten while unmatched, which errord cannot tell apart) was a WARNING "changed while
    errord was not reading it". It is an INFO "new file", read from its start."""
    from chaos import State, wait_until

    e = make_errord()
    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    append(log, lines("old", 0, 5))  # 5 lines: more than the 256-byte fingerprint
    e.wait_caught_up()
    _rewrite(e, tmp_path, "*.js*ol")  # app.jsonl stops matching: its position is kept
    _reload(e)
    assert "no longer matches a source; closing it, its position (475) is kept" in e.output()
    state = State(tmp_path / "state")
    append(tmp_path / "logs" / "other.jsnol", lines("other", 200, 201))  # a batch commits the kept position
    wait_until(lambda: [p.offset for p in state.positions() if UNSEEN in p.extra] == [475], 15, "the kept position")
    with open(log, "r+b") as f:  # another content on the same inode
        f.truncate(0)
        f.write(b"".join(lines("new", 100, 103)))
    _rewrite(e, tmp_path, "*.jsonl")
    _reload(e)
    status = e.wait_caught_up()
    assert [f["lines_read"] for f in status["files"] if f["path"] == str(log)] == [3]  # from its start, once
    assert {i["code"] for i in e.json("active")} >= {"E100", "E101", "E102"}
    assert e.stop() == 0
    out = e.output()
    assert " WARNING " not in out, [ln for ln in out.splitlines() if " WARNING " in ln]
    assert f"INFO errord.sources.scan: new file {log} (on the reused inode of a file no longer matched)" in out, out


@pytest.mark.slow
def test_the_daemon_logs_where_it_starts_reading_each_file(make_errord, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 10.11: per file, its end (start_at = "end" on the first start, with the bytes
    skipped and how to read them), its start, or its stored position; 25 files give 20
    lines and a summary."""
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(25):
        append(logs / f"app{i:02d}.jsonl", lines(f"x{i}", 0, 2))
    (logs / "a-empty.jsonl").touch()  # sorts first
    (logs / "old.jsonl.1.gz").write_bytes(b"\x1f\x8b not read")
    e = make_errord(sources=[{"path": str(logs / "*.jsonl*"), "start_at": "end"}])
    e.start()
    out = e.output()
    size = len(b"".join(lines("x0", 0, 2)))
    assert (
        f"reading {logs / 'app00.jsonl'} from its end: skipping {size} existing bytes; "
        'set start_at = "beginning" to read them'
    ) in out
    assert f"reading {logs / 'a-empty.jsonl'} from its start (0 bytes)" in out
    assert out.count("from its end: skipping") == 19
    assert "... and 6 more file(s): 6 from their end" in out
    assert ".gz" not in out
    assert e.stop() == 0
    append(logs / "app03.jsonl", lines("x3", 2, 3))
    e.start()
    out = e.output().split("errord stopped")[-1]
    assert (
        f"reading {logs / 'app03.jsonl'} from its stored position {size:,} ({len(L('x3', 2)):,} bytes to read)"
    ) in out
    assert "... and 6 more file(s): 6 at their stored position" in out
    assert e.stop() == 0
