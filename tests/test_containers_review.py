"""Review of the container half of issue 18 (CONTRACT §12, §7): hostile docker/CRI files
that lost lines or named no app. Each test failed before its fix."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from chaos import State, start, wait_until
from errord.parse.layouts import EnvelopeParser, detect, kubernetes_app, open_from
from errord.parse.lines import LineParser
from errord.sources.follower import Follower

HEX = "0123456789abcdef" * 4
T0 = "2026-01-14T15:00:00.123456789Z"
BOM = b"\xef\xbb\xbf"


def docker(text: str, stream: str = "stdout") -> bytes:
    return json.dumps({"log": text, "stream": stream, "time": T0}).encode() + b"\n"


def cri(text: str, tag: str = "F", stream: str = "stdout") -> bytes:
    return f"{T0} {stream} {tag} {text}\n".encode()


def app_line(code: str) -> str:
    return json.dumps({"error_code": code, "message": "m", "notification": False})


def parser(fmt: str, max_line: int = 1 << 20) -> EnvelopeParser:
    return EnvelopeParser(LineParser(app="src", tz=ZoneInfo("UTC"), max_line_bytes=max_line), fmt)


def codes(chunks: list, fmt: str, max_line: int = 1 << 20) -> list[str]:
    p = parser(fmt, max_line)
    return [e.code for c in chunks for e in p.parse_chunk(c.data, c.offset, 2e9, "x", c.layout).events]


@pytest.mark.parametrize("fmt", ["docker", "cri"])
def test_a_held_join_is_not_dropped_when_a_long_partial_line_follows(tmp_path: Path, fmt: str) -> None:
    """A held join (stdout's first part, then a whole stderr line) and then a read that
    ends inside a line long enough to pass ``max_line`` with the held bytes: the held
    lines were dropped with the long one (the stderr line lost). They are whole envelope
    lines: handed on as they are, and only the too-long line is skipped."""
    if fmt == "docker":
        held = docker(app_line("P1")[:20], "stdout") + docker(app_line("E1") + "\n", "stderr")
    else:
        held = cri(app_line("P1")[:20], "P", "stdout") + cri(app_line("E1"), "F", "stderr")
    path = tmp_path / "c.log"
    path.write_bytes(held)
    max_line = len(held) + 40
    fd = os.open(path, os.O_RDONLY)
    try:
        f = Follower((1, 1), fd, str(path), 0, 0, (0, ""), 0.0)
        chunks, _ = f.pull(1 << 20, max_line, fmt)
        assert chunks == [] and f.offset == 0  # held back: the stdout join is open
        with open(path, "ab") as w:
            w.write(b"x" * 100)  # a line still being written, longer than what is left
        chunks, _ = f.pull(1 << 20, max_line, fmt)
        with open(path, "ab") as w:
            w.write(b"\n" + (docker(app_line("A2") + "\n") if fmt == "docker" else cri(app_line("A2"))))
        more, _ = f.pull(1 << 20, max_line, fmt)
        chunks += more
    finally:
        os.close(fd)
    got = codes(chunks, fmt, max_line)
    assert "E1" in got and "A2" in got
    assert sum(c.skipped_long for c in chunks) == 1
    assert f.offset == path.stat().st_size


@pytest.mark.parametrize(("fmt", "kind"), [("docker", "docker"), ("auto", "docker"), ("cri", "cri"), ("auto", "cri")])
def test_a_bom_before_the_first_envelope_is_not_part_of_it(fmt: str, kind: str) -> None:
    """§7: a UTF-8 BOM at a file's start is not part of its first line — also for a docker
    or CRI file (the first entry was read as a plain line and its error lost; "auto"
    decided such a file was plain JSON)."""
    body = (docker(app_line("B1") + "\n") if kind == "docker" else cri(app_line("B1"))) * 2
    data = BOM + body
    assert detect(data[: data.find(b"\n")]) == kind
    res = parser(fmt).parse_chunk(data, 0, 2e9, "x")  # offsets as in a plain file: after the BOM
    assert [(e.code, e.offset) for e in res.events] == [("B1", 3), ("B1", 3 + len(body) // 2)]
    assert res.skipped == 0
    assert [round(e.time, 3) for e in res.events] == [1768402800.123] * 2  # the envelope's time, not now


def test_a_pod_name_holding_dot_log_is_still_named() -> None:
    """Static pods are named after their node, often an FQDN: a node called
    ``node1.logging.example.com`` gave no app (the name was cut at the first ".log")."""
    name = f"/var/log/containers/etcd-node1.logging.example.com_kube-system_etcd-{HEX}.log"
    assert kubernetes_app(name) == "kube-system/etcd"
    assert kubernetes_app(name + ".20260114-150000") == "kube-system/etcd"
    assert kubernetes_app(f"/x/a_b_c-{HEX}.logx") is None


def test_an_empty_cri_f_line_with_crlf_ends_its_join() -> None:
    """``TIME stdout F`` then CR LF (a file that went through a CRLF tool): the parser ends
    the join there, but ``open_from`` did not see it as an envelope, so the follower kept
    the finished line back (its error unsent) until stdout wrote again."""
    text = app_line("C1")
    data = cri(text, "P") + f"{T0} stdout F\r\n".encode()
    assert open_from(data, "cri") == len(data)
    assert [e.code for e in parser("cri").parse_chunk(data, 0, 2e9, "x").events] == ["C1"]


def test_a_mapped_line_python_wrote_with_nan_still_raises() -> None:
    """A ``fields`` map and a line orjson refuses but Python's json.dumps writes (``NaN``,
    as a plain source reads it): the mapped code was lost as "not JSON"."""
    fields = {"code": "ctx.err.id", "message": "body.text"}
    p = EnvelopeParser(LineParser(app="src", tz=ZoneInfo("UTC"), max_line_bytes=1 << 20), "json", None, fields)
    line = b'{"ctx": {"err": {"id": "N1"}}, "body": {"text": "t"}, "load": NaN, "notification": false}\n'
    res = p.parse_chunk(line, 0, 2e9, "x")
    assert [(e.code, e.message) for e in res.events] == [("N1", "t")]
    assert res.skipped == 0
    res = p.parse_chunk(b'{"ctx": {"err": {"id": "N2"}}, "big": 1' + b"0" * 400 + b"}\n", 0, 2e9, "x")
    assert [e.code for e in res.events] == ["N2"]


@pytest.mark.slow
def test_a_kubelet_rotated_file_behind_a_symlink_keeps_its_app(make_errord, tmp_path: Path) -> None:
    """Kubernetes' layout: ``/var/log/containers/POD_NS_CONTAINER-ID.log`` is a symlink to
    ``/var/log/pods/NS_POD_UID/CONTAINER/0.log``, which kubelet rotates by rename there. The
    lines the runtime still writes to the renamed file are read by its inode: they keep
    the app the matched name gave (``NS/CONTAINER``), not the source's fallback app."""
    pods = tmp_path / "pods" / "prod_api-7d9f-x2_0000" / "web"
    pods.mkdir(parents=True)
    live = pods / "0.log"
    live.touch()
    links = tmp_path / "containers"
    links.mkdir()
    (links / f"api-7d9f-x2_prod_web-{HEX}.log").symlink_to(live)
    src = {"path": str(links / "*.log"), "start_at": "beginning", "rotate_wait": "10s"}
    e = make_errord(sources=[{**src, "format": "cri", "app_from": "kubernetes", "app": "fallback"}])
    state = State(tmp_path / "state")
    start(e, state)
    fd = os.open(live, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, cri(app_line("R1")))
        wait_until(lambda: {i.code for i in state.incidents()} == {"R1"}, 10, "R1 read")
        live.rename(pods / "0.log.20260114-150000")
        live.touch()
        time.sleep(1.5)  # a scan sees the rename
        os.write(fd, cri(app_line("R2")))
        wait_until(lambda: {i.code for i in state.incidents()} == {"R1", "R2"}, 10, "R2 read")
    finally:
        os.close(fd)
    assert {i.code: i.app for i in state.incidents()} == {"R1": "prod/web", "R2": "prod/web"}
