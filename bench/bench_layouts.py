"""Lines/s of the parse path per line format (issue 18): plain JSON, docker json-file,
CRI and systemd journal entries, on the same workload (bench_lines' data, 10% error lines).

    .venv/bin/python bench/bench_layouts.py [--lines 200000] [--repeat 3] [--journal-lines 50000]

Each format's file content is cut in 1 MiB reads as the follower does; for docker and
CRI each read also goes through ``open_from`` (the follower's hold of unfinished joins)
and ``EnvelopeParser.parse_chunk``; 10% of the app lines are split in two parts.

``journal``: each app line is the MESSAGE of an entry as ``journalctl --output=json``
prints one (with the fields journald adds to a service's line), read by
``JournalParser`` in 1 MiB chunks. ``journalctl``: the whole source, once: the same
entries written to a journal file (systemd-journal-remote), followed by a
``JournalReader`` (journalctl's own work included) and parsed, until all are read;
skipped without systemd-journal-remote.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson

from bench_lines import chunks_of, make_lines
from errord.config import JournalSpec, Source
from errord.parse.journalentry import JournalParser
from errord.parse.layouts import EnvelopeParser, open_from
from errord.parse.lines import LineParser
from errord.sources.journal import JournalReader

T = "2026-01-14T15:00:00.123456789Z"


def wrap(lines: list[bytes], fmt: str, rnd: random.Random) -> list[bytes]:
    out: list[bytes] = []
    for raw in lines:
        text = raw.rstrip(b"\n").decode()
        parts = [text[:40], text[40:]] if rnd.random() < 0.1 and len(text) > 80 else [text]
        for i, p in enumerate(parts):
            last = i == len(parts) - 1
            if fmt == "docker":
                out.append(
                    json.dumps({"log": p + ("\n" if last else ""), "stream": "stdout", "time": T}).encode() + b"\n"
                )
            else:
                out.append(f"{T} stdout {'F' if last else 'P'} {p}\n".encode())
    return out


REMOTE = Path("/lib/systemd/systemd-journal-remote")
SEQNUM_ID = "a7d4e9e9a1c645e8962e7e4d08d418e9"
# what journald adds to a service's line (as journalctl --output=json prints them)
TRUSTED = {
    "_BOOT_ID": "475bfdce5e1e4c8f80eddd30be3d2dac",
    "_MACHINE_ID": "0f0dacaaa09b4ffcbd6f0fef46b13faa",
    "_HOSTNAME": "web-1",
    "_TRANSPORT": "stdout",
    "PRIORITY": "6",
    "SYSLOG_FACILITY": "3",
    "SYSLOG_IDENTIFIER": "myapp",
    "_PID": "1234",
    "_UID": "998",
    "_GID": "998",
    "_COMM": "python3",
    "_EXE": "/usr/bin/python3.11",
    "_CMDLINE": "/opt/myapp/bin/python -m myapp",
    "_CAP_EFFECTIVE": "0",
    "_SELINUX_CONTEXT": "unconfined\n",
    "_SYSTEMD_CGROUP": "/system.slice/myapp.service",
    "_SYSTEMD_UNIT": "myapp.service",
    "_SYSTEMD_SLICE": "system.slice",
    "_SYSTEMD_INVOCATION_ID": "8b6d3b7c1e0f4a5e9c2d7f6a5b4c3d2e",
    "_STREAM_ID": "4f3c2b1a09e8d7c6b5a4f3e2d1c0b9a8",
}


def journal_entries(lines: list[bytes]) -> list[bytes]:
    """Each app line as the MESSAGE of one entry, as journalctl --output=json prints it."""
    out = []
    base = 1_768_402_800_000_000
    for i, raw in enumerate(lines):
        when = base + i * 3000
        entry = {
            "__CURSOR": f"s={SEQNUM_ID};i={i + 1:x};b={TRUSTED['_BOOT_ID']};m={when:x};t={when:x};x=0",
            "__REALTIME_TIMESTAMP": str(when),
            "__MONOTONIC_TIMESTAMP": str(i * 3000),
            **TRUSTED,
            "MESSAGE": raw.rstrip(b"\n").decode(),
        }
        out.append(orjson.dumps(entry) + b"\n")
    return out


def run(fmt: str, chunks: list[bytes], now: float) -> int:
    inner = LineParser(app="a", tz=ZoneInfo("UTC"), max_line_bytes=1 << 20)
    events = 0
    if fmt == "journal":
        jp = JournalParser(inner)
        for c in chunks:
            events += len(jp.parse_chunk(c, 0, now).events)
        return events
    if fmt == "json":
        for c in chunks:
            events += len(inner.parse_chunk(c, 0, now).events)
        return events
    p = EnvelopeParser(inner, fmt)
    held = b""
    for c in chunks:
        block = held + c
        cut = open_from(block, fmt)
        held = block[cut:]
        events += len(p.parse_chunk(block[:cut], 0, now).events)
    return events


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--journal-lines", type=int, default=50_000, help="entries for the journalctl row")
    a = ap.parse_args()
    lines = make_lines(a.lines, raw_utf8=False)
    now = time.time()
    print(f"{a.lines:,} app lines, best of {a.repeat}")
    print(f"{'format':<8} {'MiB':>6} {'lines/s':>12} {'events':>8}")
    for fmt in ("json", "docker", "cri", "journal"):
        if fmt == "journal":
            data = journal_entries(lines)
        else:
            data = lines if fmt == "json" else wrap(lines, fmt, random.Random(1))
        chunks = chunks_of(data)
        best = float("inf")
        events = 0
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            events = run(fmt, chunks, now)
            best = min(best, time.perf_counter() - t0)
        mib = sum(map(len, chunks)) / (1 << 20)
        print(f"{fmt:<8} {mib:>6.1f} {a.lines / best:>12,.0f} {events:>8,}")
    if REMOTE.exists():
        lines = lines[: a.journal_lines]
        took, events = asyncio.run(follow_journal(lines, now))
        print(f"{'journalctl':<8} {'':>6} {len(lines) / took:>12,.0f} {events:>8,}  ({len(lines):,} entries, once)")
    else:
        print(f"{'journalctl':<8} {'-':>6} {'skipped':>12}  (no {REMOTE})")


def export(lines: list[bytes]) -> bytes:
    out = bytearray()
    for i, raw in enumerate(lines):
        when = 1_768_402_800_000_000 + i * 3000
        out += f"__REALTIME_TIMESTAMP={when}\n__MONOTONIC_TIMESTAMP={i * 3000}\n".encode()
        for k, v in TRUSTED.items():
            if k != "_SELINUX_CONTEXT":
                out += f"{k}={v}\n".encode()
        out += b"MESSAGE=" + raw.rstrip(b"\n") + b"\n\n"
    return bytes(out)


async def follow_journal(lines: list[bytes], now: float) -> tuple[float, int]:
    """Seconds a journal source takes to hand on and parse ``lines`` written as entries."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [str(REMOTE), "-o", f"{tmp}/x.journal", "-"], input=export(lines), check=True, capture_output=True
        )
        src = Source(
            path=None,
            journal=JournalSpec(directory=tmp),
            app="a",
            start_at="beginning",
            rotate_wait=0.0,
            timezone="UTC",
            max_line_bytes=1 << 20,
        )
        parser = JournalParser(LineParser(app="a", tz=ZoneInfo("UTC"), max_line_bytes=1 << 20))
        woken = asyncio.Event()
        reader = JournalReader(0, src, None, woken.set)
        t0 = time.perf_counter()
        await reader.open()
        seen = events = 0
        try:
            while seen < len(lines):
                chunk = reader.read(1 << 20)
                if chunk is None:
                    woken.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(woken.wait(), 1.0)
                    continue
                res = parser.parse_chunk(chunk.data, chunk.offset, now)
                seen += res.lines
                events += len(res.events)
                reader.account(res.lines)
            return time.perf_counter() - t0, events
        finally:
            await reader.close()


if __name__ == "__main__":
    main()
