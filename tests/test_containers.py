"""Docker json-file and Kubernetes CRI files (CONTRACT §12): envelopes unwrapped, split
lines joined per stream, the envelope's time, app_from = "kubernetes", and the §7
guarantees (rotation by rename and kubelet-style rename + gzip, kill -9 mid-file) for
such files, counted exactly."""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import threading
import time
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from chaos import State, seed_for, start, wait_until
from errord.parse.layouts import EnvelopeParser, detect, kubernetes_app, open_from
from errord.parse.lines import LineParser
from errord.sources.follower import Follower

HEX = "0123456789abcdef" * 4
NAME = f"api-7d9f-x2_prod_web-{HEX}.log"
T0 = "2026-01-14T15:00:00.123456789Z"
T0_EPOCH = 1768402800.123456


def docker(text: str, stream: str = "stdout", when: str = T0) -> bytes:
    return json.dumps({"log": text, "stream": stream, "time": when}).encode() + b"\n"


def cri(text: str, tag: str = "F", stream: str = "stdout", when: str = T0) -> bytes:
    return f"{when} {stream} {tag} {text}\n".encode()


def app_line(code: str, **extra: object) -> str:
    return json.dumps({"error_code": code, "message": "m", "notification": False, **extra})


def split_record(text: str, fmt: str, rnd: random.Random, stream: str = "stdout") -> list[bytes]:
    """One app line as the runtime writes it: in 1-3 parts (docker: partials lack "\\n";
    CRI: P parts, then F)."""
    k = rnd.randint(0, 2)
    cuts = sorted(rnd.sample(range(1, len(text)), k)) if k else []
    parts = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    if fmt == "docker":
        return [docker(p + ("\n" if i == len(parts) - 1 else ""), stream) for i, p in enumerate(parts)]
    return [cri(p, "F" if i == len(parts) - 1 else "P", stream) for i, p in enumerate(parts)]


def parser(fmt: str, app_from: str | None = None) -> EnvelopeParser:
    return EnvelopeParser(LineParser(app="src", tz=ZoneInfo("UTC"), max_line_bytes=1 << 20), fmt, app_from)


# --------------------------------------------------------------------------- table tests


@pytest.mark.parametrize(
    ("line", "fmt"),
    [
        (docker(app_line("E1") + "\n"), "docker"),
        (cri(app_line("E1")), "cri"),
        (cri("", "P"), "cri"),
        ((app_line("E1") + "\n").encode(), "json"),
        (b'{"log": 5}\n', "json"),
        (b"plain text\n", "json"),
    ],
)
def test_detect(line: bytes, fmt: str) -> None:
    assert detect(line.rstrip(b"\n")) == fmt


@pytest.mark.parametrize(
    ("path", "app"),
    [
        (f"/var/log/containers/{NAME}", "prod/web"),
        (f"/var/log/containers/{NAME}.20260114-150000", "prod/web"),
        (f"/x/coredns-5d78c9869d-abcde_kube-system_coredns-{HEX}.log", "kube-system/coredns"),
        ("/var/log/containers/app.log", None),
        (f"/x/pod_ns_c-{HEX[:63]}.log", None),  # not 64 hex digits
    ],
)
def test_kubernetes_app(path: str, app: str | None) -> None:
    assert kubernetes_app(path) == app


@pytest.mark.parametrize("fmt", ["docker", "cri", "auto"])
def test_split_lines_are_joined_per_stream_at_the_first_part(fmt: str) -> None:
    kind = "cri" if fmt == "auto" else fmt
    one, two = app_line("A1"), app_line("B2", time="2026-01-14T16:00:00Z")
    env = docker if kind == "docker" else cri
    if kind == "docker":
        lines = [docker(one[:7]), docker("stderr noise\n", "stderr"), docker(one[7:20]), docker(one[20:] + "\n")]
        lines += [docker(two[:3], "stderr"), docker(two[3:] + "\n", "stderr")]
    else:
        lines = [cri(one[:7], "P"), cri("stderr noise", "F", "stderr"), cri(one[7:20], "P"), cri(one[20:])]
        lines += [cri(two[:3], "P", "stderr"), cri(two[3:], "F", "stderr")]
    data = b"".join(lines)
    res = parser(fmt, "kubernetes").parse_chunk(data, 1000, 2e9, f"/l/{NAME}")
    assert res.lines == 6
    got = [(e.code, e.offset, e.time, e.app) for e in res.events]
    second = 1000 + sum(map(len, lines[:4]))
    # the envelope's time where the app line has none; the app's own time wins
    assert got == [("A1", 1000, T0_EPOCH, "prod/web"), ("B2", second, 1768406400.0, "prod/web")]
    assert res.skipped == 1  # "stderr noise": not JSON, as in a plain file
    assert env is not None


@pytest.mark.parametrize("fmt", ["docker", "cri"])
def test_open_from_points_at_the_first_unfinished_part(fmt: str) -> None:
    rnd = random.Random(1)
    done = b"".join(split_record(app_line("X"), fmt, rnd))
    if fmt == "docker":
        pending = [docker('{"error_co'), docker("other\n", "stderr"), docker('de": 1')]
    else:
        pending = [cri('{"error_co', "P"), cri("other", "F", "stderr"), cri('de": 1', "P")]
    assert open_from(done, fmt) == len(done)
    assert open_from(done + b"".join(pending), fmt) == len(done)
    assert open_from(done, "json") == len(done)


@pytest.mark.parametrize("fmt", ["docker", "cri", "auto"])
def test_follower_holds_an_unfinished_join_and_commits_its_start(tmp_path: Path, fmt: str) -> None:
    """Each part read in its own pull: the offset handed on stays at the join's first
    part until its last part is there; the chunk then holds the whole join."""
    kind = "docker" if fmt == "auto" else fmt
    path = tmp_path / NAME
    first = split_record(app_line("Z0"), kind, random.Random(0))
    text = app_line("Z1", message="y" * 100)
    seed = 3
    while len(parts := split_record(text, kind, random.Random(seed))) < 3:
        seed += 1
    path.write_bytes(b"".join(first))
    fd = os.open(path, os.O_RDONLY)
    try:
        f = Follower((1, 1), fd, str(path), 0, 0, (0, ""), 0.0)
        chunks, _ = f.pull(1 << 20, 1 << 20, fmt)
        assert b"".join(c.data for c in chunks) == b"".join(first)
        start = f.offset
        for part in parts[:-1]:
            with open(path, "ab") as w:
                w.write(part)
            chunks, _ = f.pull(1 << 20, 1 << 20, fmt)
            assert chunks == [] and f.offset == start
        with open(path, "ab") as w:
            w.write(parts[-1])
        chunks, _ = f.pull(1 << 20, 1 << 20, fmt)
        assert [(c.offset, c.data) for c in chunks] == [(start, b"".join(parts))]
        res = parser(fmt).parse_chunk(chunks[0].data, chunks[0].offset, 2e9, str(path))
        assert [(e.code, e.offset) for e in res.events] == [("Z1", start)]
    finally:
        os.close(fd)


def test_a_closed_files_unfinished_join_is_read_as_it_is() -> None:
    res = parser("docker").parse_chunk(docker(app_line("Q") + "\n") + docker(app_line("R")), 0, 2e9, "x")
    assert [e.code for e in res.events] == ["Q", "R"]


# --------------------------------------------------------------------------- end to end


class EnvelopeWriter(threading.Thread):
    """Writes records (each split into parts, stderr noise between) to ``path`` with one
    write per part, reopening the file when asked (a runtime after a kubelet rotation)."""

    def __init__(self, path: Path, fmt: str, total: int, rate: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.path, self.fmt, self.total, self.rate = path, fmt, total, rate
        self.rnd = random.Random(seed)
        self.lock = threading.Lock()  # held while a record is written: rotation falls between
        self.reopen = False
        self.next = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            t0 = time.monotonic()
            while self.next < self.total:
                text = app_line(f"k{self.next}", message="v" * self.rnd.randint(0, 400))
                parts = split_record(text, self.fmt, self.rnd)
                with self.lock:
                    if self.reopen:
                        os.close(fd)
                        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                        self.reopen = False
                    for i, part in enumerate(parts):
                        os.write(fd, part)
                        if i == 0 and self.rnd.random() < 0.2:
                            noise = "noise\n" if self.fmt == "docker" else "noise"
                            os.write(fd, (docker if self.fmt == "docker" else cri)(noise, "stderr"))
                self.next += 1
                delay = t0 + self.next / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            os.close(fd)
        except BaseException as exc:
            self.error = exc


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["docker", "cri"])
def test_container_files_rotated_kubelet_style_and_killed_count_exactly(make_errord, tmp_path: Path, fmt: str) -> None:
    """A container log written part by part (split lines, stderr between), rotated by
    rename while errord runs and while it is down, the older rotated file gzipped and
    removed (kubelet), kill -9 at random moments: every app line is one occurrence of
    its own incident, named NAMESPACE/CONTAINER."""
    seed = seed_for(1812)
    rnd = random.Random(seed)
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / NAME
    log.touch()
    e = make_errord(
        sources=[
            {
                "path": str(logs / "*.log"),
                "start_at": "beginning",
                "rotate_wait": "1s",
                "format": "auto" if fmt == "cri" else fmt,
                "app_from": "kubernetes",
                "app": "fallback",
            }
        ]
    )
    state = State(tmp_path / "state")
    writer = EnvelopeWriter(log, fmt, total=2500, rate=600, seed=seed)
    rotations = 0

    def rotate(gzip_old: bool) -> None:
        nonlocal rotations
        rotations += 1
        if gzip_old:  # kubelet compresses the rotated files but the newest
            for old in logs.glob(f"{NAME}.2026*"):
                if old.suffix != ".gz":
                    with open(old, "rb") as src, gzip.open(f"{old}.gz", "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    old.unlink()
        with writer.lock:
            log.rename(logs / f"{NAME}.20260114-15{rotations:04d}")
            log.touch()
            writer.reopen = True

    start(e, state)
    writer.start()
    kills = 0
    for _ in range(3):
        time.sleep(rnd.uniform(0.3, 0.8))
        rotate(gzip_old=True)  # while running
        time.sleep(rnd.uniform(0.2, 0.8))
        e.kill()
        kills += 1
        if rnd.random() < 0.6:
            rotate(gzip_old=False)  # while down: the rotated file is still there to read
        start(e, state)
    writer.join(60)
    assert writer.error is None, writer.error
    ctx = f"seed={seed} fmt={fmt} kills={kills} rotations={rotations}"
    wait_until(lambda: len(state.incidents()) >= writer.total, 60, f"every line counted ({ctx})", every=0.2)
    time.sleep(0.3)
    got: Counter[str] = Counter()
    apps = set()
    for inc in state.incidents():
        got[inc.code] += inc.occurrences
        apps.add(inc.app)
    assert got == Counter({f"k{i}": 1 for i in range(writer.total)}), (
        f"{ctx}: missing {[i for i in range(writer.total) if f'k{i}' not in got][:10]}, "
        f"doubled {[c for c, n in got.items() if n > 1][:10]}"
    )
    assert apps == {"prod/web"}
    assert e.stop() == 0
