"""Lines/s of the parse path per line format (issue 18): plain JSON, docker json-file,
CRI, on the same workload (bench_lines' data, 10% error lines).

    .venv/bin/python bench/bench_layouts.py [--lines 200000] [--repeat 3]

Each format's file content is cut in 1 MiB reads as the follower does; for docker and
CRI each read also goes through ``open_from`` (the follower's hold of unfinished joins)
and ``EnvelopeParser.parse_chunk``; 10% of the app lines are split in two parts. The
journal source is not built yet on this branch (its row says so).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_lines import chunks_of, make_lines
from errord.parse.layouts import EnvelopeParser, open_from
from errord.parse.lines import LineParser

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


def run(fmt: str, chunks: list[bytes], now: float) -> int:
    inner = LineParser(app="a", tz=ZoneInfo("UTC"), max_line_bytes=1 << 20)
    events = 0
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
    a = ap.parse_args()
    lines = make_lines(a.lines, raw_utf8=False)
    now = time.time()
    print(f"{a.lines:,} app lines, best of {a.repeat}")
    print(f"{'format':<8} {'MiB':>6} {'lines/s':>12} {'events':>8}")
    for fmt in ("json", "docker", "cri"):
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
    print(f"{'journal':<8} {'-':>6} {'not built':>12}")


if __name__ == "__main__":
    main()
