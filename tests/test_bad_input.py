"""Bad input at scale against the running daemon: counted and reported, never fatal, never
hiding the good lines after it (CONTRACT §1).

50k lines of random bytes, 10 MB lines (also one arriving slowly without its newline), a
followed file replaced by a directory, symlink loops in a plain and in a ``**`` glob (two
links back up make Python's recursive glob walk exponentially), and a file errord may not
read: tests run as root, so that daemon runs without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH
(dropped from its bounding set before exec), which makes file modes bind root as well.
"""

from __future__ import annotations

import ctypes
import os
import random
import subprocess
import sys
import time
from datetime import UTC
from pathlib import Path

import pytest

from chaos import State, seed_for, start, wait_until
from conftest import Errord
from errord.parse.chunks import nul_free_parts
from errord.parse.lines import LineParser

pytestmark = pytest.mark.slow


def good(tag: str) -> bytes:
    return b'{"error_code": "%s", "notification": false, "message": "good"}\n' % tag.encode()


def codes(state: State) -> set[str]:
    return {i.code for i in state.incidents()}


def file_counters(state: State, path: Path) -> tuple[int, int]:
    st = path.stat()
    for p in state.positions():
        if p.key == (st.st_dev, st.st_ino):
            return p.lines_read, p.lines_skipped
    return (0, 0)


def rss_peak_kb(pid: int) -> int:
    for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
        if ln.startswith("VmHWM:"):
            return int(ln.split()[1])
    return 0


def test_50k_lines_of_random_bytes(make_errord, tmp_path: Path) -> None:
    seed = seed_for(5050)
    rnd = random.Random(seed)
    logs = tmp_path / "logs"
    logs.mkdir()
    noise = logs / "noise.jsonl"
    lines, want = [], set()
    for i in range(50_000):
        if i % 100 == 0:
            lines.append(good(f"g{i}"))
            want.add(f"g{i}")
        else:
            raw = bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 120))).replace(b"\n", b"")
            if i % 7 == 0:  # some look like error lines and are broken
                raw = b'{"error_code": "' + raw
            lines.append(raw + b"\n")
    data = b"".join(lines)
    noise.write_bytes(data)
    (logs / "clean.jsonl").write_bytes(good("after_noise"))
    parser = LineParser(app="demo", tz=UTC, max_line_bytes=1 << 20)
    # NUL runs are garbage between lines (CONTRACT §7): the text before one ends a line
    expected = parser.parse_chunk(b"", 0, time.time())
    for lo, hi in nul_free_parts(data):
        part = parser.parse_chunk(data[lo:hi], lo, time.time())
        expected.lines += part.lines
        expected.skipped += part.skipped
    assert expected.skipped > 40_000 and expected.lines > 50_000

    e = make_errord()
    state = State(tmp_path / "state")
    start(e, state)
    wait_until(lambda: state.caught_up([noise, logs / "clean.jsonl"]), 30, f"reading (seed={seed})")
    assert codes(state) == want | {"after_noise"}, seed
    assert file_counters(state, noise) == (expected.lines, expected.skipped), seed
    assert e.proc.poll() is None
    out = e.output()
    assert "skipped" in out and "noise.jsonl" in out  # reported (rate-limited: once)
    assert out.count("noise.jsonl (first at offset") == 1
    status = e.json("status")
    (f,) = [f for f in status["files"] if f["path"] == str(noise)]
    assert (f["lines_read"], f["lines_skipped"]) == (expected.lines, expected.skipped)
    assert e.stop() == 0


def test_10_mb_lines_are_skipped_without_buffering_them(make_errord, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "big.jsonl"
    ten_mb = 10 * 1024 * 1024
    with open(log, "wb") as f:
        f.write(good("before"))
        f.write(b'{"error_code": "huge", "message": "' + b"x" * ten_mb + b'"}\n')
        f.write(good("between"))
        f.write(b"y" * ten_mb + b"\n")
        f.write(good("after"))
    e = make_errord()
    state = State(tmp_path / "state")
    start(e, state)
    wait_until(lambda: state.caught_up([log]), 30, "reading the big lines")
    assert codes(state) == {"before", "between", "after"}
    # a 10 MB line that arrives slowly, without its newline for a while
    with open(log, "ab") as f:
        for _ in range(10):
            f.write(b"z" * (ten_mb // 10))
            f.flush()
            time.sleep(0.05)
        time.sleep(0.3)
        f.write(b"\n" + good("after_slow"))
    wait_until(lambda: "after_slow" in codes(state), 20, "the line after the slow one")
    assert file_counters(state, log) == (7, 3)
    # never buffered: the daemon's peak memory stays far below the 40 MB it was shown
    assert rss_peak_kb(e.proc.pid) < 150_000, rss_peak_kb(e.proc.pid)
    assert e.stop() == 0


def test_followed_file_replaced_by_a_directory(make_errord, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "app.jsonl"
    log.write_bytes(good("one"))
    other = logs / "other.jsonl"
    e = make_errord()
    state = State(tmp_path / "state")
    start(e, state)
    wait_until(lambda: "one" in codes(state), 10, "the first line")
    log.unlink()
    log.mkdir()  # the glob *.jsonl now matches a directory
    (log / "inner.jsonl").write_bytes(good("inner_not_matched"))
    other.write_bytes(good("two"))
    wait_until(lambda: "two" in codes(state), 10, "a line in another file")
    time.sleep(1.2)  # a rescan or two with the directory in place
    assert e.proc.poll() is None
    (log / "inner.jsonl").unlink()
    log.rmdir()
    log.write_bytes(good("three"))  # a file again: read from its start
    wait_until(lambda: "three" in codes(state), 10, "the file that came back")
    assert codes(state) == {"one", "two", "three"}
    assert "is a folder" in e.output()
    assert e.stop() == 0


def test_symlink_loops_in_plain_and_recursive_globs(make_errord, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    (logs / "sub").mkdir(parents=True)
    (logs / "sub2").mkdir()
    os.symlink("b.jsonl", logs / "a.jsonl")  # a.jsonl -> b.jsonl -> a.jsonl
    os.symlink("a.jsonl", logs / "b.jsonl")
    os.symlink("..", logs / "sub" / "up")  # two links back up: glob's ** walk never ends
    os.symlink("..", logs / "sub2" / "up")
    (logs / "top.jsonl").write_bytes(good("top"))
    (logs / "sub" / "deep.jsonl").write_bytes(good("deep"))
    e = make_errord(
        sources=[
            {"path": str(logs / "*.jsonl"), "start_at": "beginning", "rotate_wait": "1s"},
            {"path": str(logs / "**" / "*.jsonl"), "start_at": "beginning", "rotate_wait": "1s", "app": "deep"},
        ]
    )
    state = State(tmp_path / "state")
    start(e, state, timeout=20)
    wait_until(lambda: codes(state) >= {"top", "deep"}, 10, "the good files")
    with open(logs / "sub" / "deep.jsonl", "ab") as f:
        f.write(good("deep_later"))
    wait_until(lambda: "deep_later" in codes(state), 10, "a line written later")
    t0 = time.monotonic()
    status = e.json("status")  # the CLI globs too
    assert time.monotonic() - t0 < 10
    assert sorted(os.path.basename(f["path"]) for f in status["files"]) == ["deep.jsonl", "top.jsonl"]
    occ = {i.code: i.occurrences for i in state.incidents()}
    assert occ == {"top": 1, "deep": 1, "deep_later": 1}, occ  # each file read once
    assert e.proc.poll() is None
    assert e.stop() == 0


def test_file_name_that_is_not_utf8(make_errord, tmp_path: Path) -> None:
    """Regression: a matched file whose name is not valid UTF-8 made every journal commit
    fail (its path could not be stored as text): errord could not start, or, when the
    file appeared later, stopped reading for good. ``status --json`` raised as well."""
    logs = tmp_path / "logs"
    logs.mkdir()
    odd = os.path.join(os.fsencode(logs), b"caf\xe9-\xff.jsonl")
    with open(odd, "wb") as f:
        f.write(good("odd_name"))
    (logs / "plain.jsonl").write_bytes(good("plain"))
    e = make_errord()
    state = State(tmp_path / "state")
    start(e, state)
    wait_until(lambda: codes(state) == {"odd_name", "plain"}, 10, "both files")
    later = os.path.join(os.fsencode(logs), b"later-\x80.jsonl")
    with open(later, "wb") as f:
        f.write(good("later"))
    wait_until(lambda: "later" in codes(state), 10, "a file with such a name appearing later")
    status = e.json("status")
    assert sorted(f["path"].rsplit("/", 1)[1] for f in status["files"]) == [
        "caf\\xe9-\\xff.jsonl",
        "later-\\x80.jsonl",
        "plain.jsonl",
    ]
    assert e.stop() == 0
    with open(odd, "ab") as f:
        f.write(good("odd_again"))
    start(e, state)  # its stored position (kept as bytes) is found again: no line twice
    wait_until(lambda: "odd_again" in codes(state), 10, "the next line after a restart")
    assert {i.code: i.occurrences for i in state.incidents()}["odd_name"] == 1
    assert e.stop() == 0


def _drop_dac() -> None:
    """preexec_fn: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set, so
    after exec this root process obeys file modes like their owner would."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _can_drop_dac() -> bool:
    try:
        out = subprocess.run(
            [sys.executable, "-c", "print(open('/proc/self/status').read())"],
            preexec_fn=_drop_dac,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0


@pytest.mark.skipif(os.geteuid() == 0 and not _can_drop_dac(), reason="cannot drop CAP_DAC_OVERRIDE here")
def test_file_without_read_permission(make_errord, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    secret = logs / "secret.jsonl"
    secret.write_bytes(good("hidden1") + good("hidden2"))
    secret.chmod(0)
    (logs / "open.jsonl").write_bytes(good("visible"))
    e: Errord = make_errord()
    state = State(tmp_path / "state")
    with open(e.log_path, "ab") as log:
        e.proc = subprocess.Popen(
            [sys.executable, "-m", "errord", "run", "-c", str(e.config)],
            env=e.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_drop_dac if os.geteuid() == 0 else None,
        )
    wait_until(lambda: state.running() or e.proc.poll() is not None, 20, "the start")
    wait_until(lambda: "visible" in codes(state), 10, "the readable file")
    time.sleep(1.2)  # rescans while it stays unreadable: warned, not fatal
    assert e.proc.poll() is None
    assert "hidden1" not in codes(state)
    assert "secret.jsonl" in e.output() and "Permission denied" in e.output()
    secret.chmod(0o644)
    wait_until(lambda: codes(state) >= {"hidden1", "hidden2"}, 10, "the file once readable")
    assert e.output().count("cannot open") <= 2  # rate-limited
    assert e.stop() == 0


# -- fileid.expand: glob without endless walks ----------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from errord.sources.fileid import expand  # noqa: E402

NAMES = st.sampled_from(["a", "b", ".h", "x.jsonl", "y.log", ".z.jsonl", "a.jsonl"])
TREES = st.recursive(st.just(None), lambda kids: st.dictionaries(NAMES, kids, max_size=4), max_leaves=12)
PATTERNS = [
    "**/*.jsonl",
    "*/**/*.jsonl",
    "**",
    "a/**/b/*.jsonl",
    "**/a/*",
    ".h/**/*",
    "*.jsonl",
    "**/.z.jsonl",
    "a/**/**/x.jsonl",
    "b/*/**",
]


def build(root: Path, tree: dict[str, object] | None) -> None:
    for name, sub in (tree or {}).items():
        if isinstance(sub, dict):
            (root / name).mkdir()
            build(root / name, sub)
        else:
            (root / name).write_bytes(b"")


@settings(max_examples=80, deadline=None)
@given(TREES.filter(lambda t: isinstance(t, dict)), st.sampled_from(PATTERNS))
def test_expand_matches_glob_without_loops(tree: dict[str, object], pattern: str) -> None:
    import glob
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        build(Path(d), tree)
        full = os.path.join(d, pattern)
        want = {p.rstrip("/") for p in glob.glob(full, recursive=True)}
        assert {p.rstrip("/") for p in expand(full)} - {d} == want - {d}


def test_expand_ends_with_symlink_loops(tmp_path: Path) -> None:
    for i in range(4):  # four links back up: glob would walk 4**40 paths
        (tmp_path / f"s{i}").mkdir()
        os.symlink("..", tmp_path / f"s{i}" / "up")
    (tmp_path / "s0" / "f.jsonl").write_bytes(b"")
    os.symlink("loop2", tmp_path / "loop1")
    os.symlink("loop1", tmp_path / "loop2")
    t0 = time.monotonic()
    got = expand(str(tmp_path / "**" / "*.jsonl"))
    assert time.monotonic() - t0 < 2
    assert [os.path.realpath(p) for p in got] == [str(tmp_path / "s0" / "f.jsonl")]
