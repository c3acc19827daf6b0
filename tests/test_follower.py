"""The follower's lines around NUL runs and a BOM (CONTRACT §7): a preallocated file or a
crashed writer leaves NUL bytes; they are garbage between lines, never part of one, so
the line after them is read normally, however long the run. A UTF-8 BOM at the start of
a file is not part of its first line."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import append, line
from errord.parse.chunks import nul_free_parts
from errord.sources.base import Chunk
from errord.sources.follower import Follower

MAX_LINE = 1 << 20


def follower_for(path: Path) -> Follower:
    fd = os.open(path, os.O_RDONLY)
    st_ = os.fstat(fd)
    return Follower((st_.st_dev, st_.st_ino), fd, str(path), 0, 0, (0, ""), time.time())


def pull_all(f: Follower, step: int, max_line: int = MAX_LINE) -> list[Chunk]:
    chunks: list[Chunk] = []
    while True:
        got, used = f.pull(step, max_line)
        chunks += got
        if not used:
            return chunks


def test_only_a_chunk_that_reaches_the_end_of_the_file_is_at_end(tmp_path: Path) -> None:
    """``Chunk.at_end``: a read that ended where the file did, with no partial line after
    the chunk; the reads before it, and a chunk followed by a partial line, are not."""
    log = tmp_path / "app.jsonl"
    append(log, *[line(f"a{i}") for i in range(50)])
    assert log.stat().st_size % 512  # the last read is a short one
    f = follower_for(log)
    chunks = pull_all(f, 512)
    assert len(chunks) > 3
    assert [c.at_end for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[-1].offset + len(chunks[-1].data) == log.stat().st_size
    append(log, line("b"), b'{"partial": ')
    [c] = pull_all(f, 1 << 16)
    assert c.data == line("b") and not c.at_end
    append(log, b"1}\n")
    [c] = pull_all(f, 1 << 16)
    assert c.data == b'{"partial": 1}\n' and c.at_end


def lines_of(chunks: list[Chunk], path: Path) -> list[bytes]:
    """Each chunk's lines (a chunk's last line may lack its newline: a line cut by a NUL
    run), checked against the file's bytes at the chunk's offset."""
    raw = path.read_bytes()
    out: list[bytes] = []
    for c in chunks:
        assert raw[c.offset : c.offset + len(c.data)] == c.data
        assert b"\0" not in c.data
        out += [p for p in c.data.split(b"\n") if p] if c.data.endswith(b"\n") else c.data.split(b"\n")
    return [ln for ln in out if ln]


def test_a_long_nul_run_between_lines_is_skipped(tmp_path: Path) -> None:
    p = tmp_path / "prealloc.jsonl"
    p.write_bytes(b'{"a": 1}\n' + b"\0" * (3 * MAX_LINE // 2) + b'{"error_code": "x"}\n')
    f = follower_for(p)
    chunks = pull_all(f, 64 * 1024)
    assert lines_of(chunks, p) == [b'{"a": 1}', b'{"error_code": "x"}']
    assert sum(c.skipped_long for c in chunks) == 0
    assert f.offset == p.stat().st_size and not f.buf


def test_a_file_that_starts_preallocated_then_gets_lines(tmp_path: Path) -> None:
    p = tmp_path / "fallocated.jsonl"
    p.write_bytes(b"\0" * (2 * MAX_LINE))  # what `fallocate -l 2M` leaves for an appender
    f = follower_for(p)
    assert pull_all(f, 1 << 20) == []
    assert f.offset == 2 * MAX_LINE  # nothing buffered, nothing counted as too long
    append(p, line("late"))
    assert lines_of(pull_all(f, 1 << 20), p) == [line("late").rstrip(b"\n")]


def test_a_crashed_writers_partial_line_ends_at_the_run(tmp_path: Path) -> None:
    p = tmp_path / "crash.jsonl"
    p.write_bytes(line("before") + b'{"error_code": "half' + b"\0" * 5000 + line("after"))
    chunks = pull_all(follower_for(p), 4096)
    assert lines_of(chunks, p) == [line("before")[:-1], b'{"error_code": "half', line("after")[:-1]]
    cut = [c for c in chunks if not c.data.endswith(b"\n")]
    assert [c.data for c in cut] == [b'{"error_code": "half']  # handed on as a line of its own


def test_an_over_long_line_after_a_run_is_still_too_long(tmp_path: Path) -> None:
    p = tmp_path / "long.jsonl"
    p.write_bytes(b"\0" * 10 + b"{" + b"x" * 300 + b"}\n" + line("ok") + b"\0\0" + b"y" * 400 + b"\0" + line("end"))
    chunks = pull_all(follower_for(p), 128, max_line=256)
    assert lines_of(chunks, p) == [line("ok")[:-1], line("end")[:-1]]
    assert sum(c.skipped_long for c in chunks) == 2  # the {x…} line and the y… piece


PIECES = st.lists(
    st.sampled_from([line("a"), line("bb"), b'{"error_code": "cut', b"\0", b"\0" * 700, b"\n", b"{}\n", b" x "]),
    max_size=30,
)


def expected_lines(data: bytes) -> list[bytes]:
    """The rule: split at newlines, and a NUL run ends the text before it."""
    out: list[bytes] = []
    for lo, hi in nul_free_parts(data):
        out += data[lo:hi].split(b"\n")
    return [ln for ln in out if ln]


@settings(max_examples=200, deadline=None)
@given(PIECES, st.sampled_from([1, 7, 64, 1000, 1 << 16]), st.sampled_from([16, 256, MAX_LINE]))
def test_any_read_size_gives_the_same_lines(
    tmp_path_factory: pytest.TempPathFactory, pieces: list[bytes], step: int, max_line: int
) -> None:
    p = tmp_path_factory.mktemp("nul") / "f.jsonl"
    data = b"".join(pieces)
    p.write_bytes(data)
    f = follower_for(p)
    chunks = pull_all(f, step, max_line) + f.flush()
    got = lines_of(chunks, p)
    want = [ln for ln in expected_lines(data) if len(ln) <= max_line]
    assert got == want
    assert sum(c.skipped_long for c in chunks) == len(expected_lines(data)) - len(want)


@pytest.mark.slow
def test_daemon_reads_the_lines_after_a_bom_and_after_nul_runs(make_errord, receiver, tmp_path: Path) -> None:
    """End to end: a BOM-headed file, a preallocated one (2 MiB of NULs: once dropped as
    one over-long line with the line after it), a crashed writer's file; every code
    alerts, the only skipped line is the crashed writer's half line."""
    logs = tmp_path / "logs"
    logs.mkdir()
    append(logs / "bom.jsonl", b"\xef\xbb\xbf" + line("after_bom"))
    append(logs / "prealloc.jsonl", b"\0" * (2 << 20) + line("after_prealloc"))
    append(
        logs / "crash.jsonl",
        line("before_crash", notification=False),
        b'{"error_code": "hal',
        b"\0" * 4096,
        line("after_crash"),
    )
    e = make_errord(notify=[{"url": receiver.url("/hook")}])
    e.start()
    got = receiver.wait_for(3, timeout=30)
    assert sorted(r.body["title"].split()[1] for r in got) == ["after_bom", "after_crash", "after_prealloc"]
    status = e.wait_caught_up()
    counts = {Path(f["path"]).name: (f["lines_read"], f["lines_skipped"]) for f in status["files"]}
    assert counts == {"bom.jsonl": (1, 0), "prealloc.jsonl": (1, 0), "crash.jsonl": (3, 1)}
    assert e.stop() == 0
    # replay reads them the same way
    res = e.cli("replay", *(str(logs / n) for n in ("bom.jsonl", "prealloc.jsonl", "crash.jsonl")))
    assert "3 notice(s) from 5 line(s) (1 skipped)" in res.stderr
