"""Throughput of ``LineParser.parse_chunk`` against two per-line loops (issue 5).

    .venv/bin/python bench/bench_lines.py [--lines 200000] [--repeat 5]

The data: ~200-byte JSON lines as python-json-logger / structlog write them, 10% (see
``--error-share``) with an ``error_code`` (some clears, some with ``re_alert_time``), 3% decoys naming error_code
only in their message, 2% non-ASCII text, 1% with ``\\"`` / ``\\n`` escapes. It is fed in
1 MiB chunks of whole lines, as the tailer does. Two data sets: ``ensure_ascii`` (the
default of python-json-logger and structlog: non-ASCII written as ``\\u`` escapes) and
``raw utf-8`` (``ensure_ascii=False``: the chunk must be UTF-8-checked).

* ``parse_chunk``  — the daemon's path.
* ``naive``        — ``orjson.loads`` on every line, then the same field extraction.
* ``prefilter``    — a Python loop over ``split(b"\\n")`` with ``b"error_code" in line``,
  then ``parse_line`` on the hits (no cheap check of the other lines).

All three must agree on the events; the table shows lines/s (best of ``--repeat``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))

from errord.model import LogEvent
from errord.parse.lines import LineParser

CHUNK = 1 << 20
LINE_BYTES = 200


def make_lines(count: int, *, raw_utf8: bool, share: float = 0.10, seed: int = 5) -> list[bytes]:
    rng = random.Random(seed)
    start = datetime(2026, 1, 14, 15, 0, 0, tzinfo=UTC)
    out: list[bytes] = []
    for i in range(count):
        when = start + timedelta(milliseconds=i * 3)  # ~330 lines/s of app time
        roll = rng.random()
        structlog = i % 2 == 0
        rec: dict[str, object]
        if structlog:
            rec = {
                "event": "request handled",
                "level": "info",
                "timestamp": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            }
        else:
            rec = {
                "asctime": when.strftime("%Y-%m-%d %H:%M:%S,") + f"{when.microsecond // 1000:03d}",
                "levelname": "INFO",
                "name": "app.http",
                "message": "request handled",
            }
        ensure_ascii = not raw_utf8
        if roll < share:
            code = f"code_{rng.randrange(20)}"
            if rng.random() < 0.2:
                rec["error_code_clear"] = code
            else:
                rec["error_code"] = code
                if rng.random() < 0.3:
                    rec["re_alert_time"] = "datetime.timedelta(seconds=900)"
        elif roll < share + 0.03:
            rec["message" if not structlog else "event"] = "retrying; no error_code here, all fine"
        elif roll < share + 0.05:
            rec["message" if not structlog else "event"] = "Überweisung für Zoë fehlgeschlagen — 日本"
        elif roll < share + 0.06:
            rec["message" if not structlog else "event"] = 'bad input "x"\n  at line 3'
        rec["path"] = f"/api/v1/items/{rng.randrange(10_000)}"
        body = json.dumps(rec, ensure_ascii=ensure_ascii, separators=(", ", ": "))
        pad = LINE_BYTES - 1 - len(body.encode()) - len(', "pad": ""')
        if pad > 0:
            body = body[:-1] + f', "pad": "{"x" * pad}"' + "}"
        out.append(body.encode() + b"\n")
    return out


def chunks_of(lines: list[bytes]) -> list[bytes]:
    chunks: list[bytes] = []
    buf: list[bytes] = []
    size = 0
    for ln in lines:
        if size + len(ln) > CHUNK and buf:
            chunks.append(b"".join(buf))
            buf, size = [], 0
        buf.append(ln)
        size += len(ln)
    if buf:
        chunks.append(b"".join(buf))
    return chunks


def run_chunked(parser: LineParser, chunks: list[bytes], now: float) -> list[LogEvent]:
    events: list[LogEvent] = []
    offset = 0
    for data in chunks:
        events += parser.parse_chunk(data, offset, now).events
        offset += len(data)
    return events


def run_naive(parser: LineParser, chunks: list[bytes], now: float) -> list[LogEvent]:
    events: list[LogEvent] = []
    offset = 0
    for data in chunks:
        parts = data.split(b"\n")
        parts.pop()
        for line in parts:
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                obj = None
            if type(obj) is dict:
                ev = parser._event(obj, now, offset, "")  # same extraction as parse_chunk
                if isinstance(ev, LogEvent):
                    events.append(ev)
            offset += len(line) + 1
    return events


def run_prefilter(parser: LineParser, chunks: list[bytes], now: float) -> list[LogEvent]:
    events: list[LogEvent] = []
    offset = 0
    for data in chunks:
        parts = data.split(b"\n")
        parts.pop()
        for line in parts:
            if b"error_code" in line:
                ev = parser.parse_line(line, now)
                if isinstance(ev, LogEvent):
                    ev.offset = offset
                    events.append(ev)
            offset += len(line) + 1
    return events


def best(fn: Callable[[], list[LogEvent]], repeat: int) -> tuple[float, list[LogEvent]]:
    times = []
    result: list[LogEvent] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--error-share", type=float, default=0.10, help="share of lines with a code")
    args = ap.parse_args()

    now = datetime(2026, 1, 15, tzinfo=UTC).timestamp()
    print(f"python {sys.version.split()[0]}, orjson {orjson.__version__}, best of {args.repeat}")
    for label, raw in (("ensure_ascii", False), ("raw utf-8", True)):
        lines = make_lines(args.lines, raw_utf8=raw, share=args.error_share)
        chunks = chunks_of(lines)
        total = sum(map(len, chunks))
        print(f"\n{label}: {len(lines)} lines, {total / len(lines):.0f} bytes/line, {len(chunks)} chunks of <= 1 MiB")
        table(lines, chunks, total, now, args.repeat)


def table(lines: list[bytes], chunks: list[bytes], total: int, now: float, repeat: int) -> None:
    rows = []
    reference: list[LogEvent] | None = None
    for name, runner in (
        ("parse_chunk", run_chunked),
        ("naive orjson/line", run_naive),
        ("prefilter loop", run_prefilter),
    ):
        p = LineParser(app="bench", tz=UTC, max_line_bytes=1 << 20)
        secs, events = best(lambda runner=runner, p=p: runner(p, chunks, now), repeat)
        if reference is None:
            reference = events
        elif events != reference:
            raise SystemExit(f"{name}: events differ from parse_chunk ({len(events)} vs {len(reference)})")
        rows.append((name, secs, len(events)))
    base = rows[1][1]
    print(f"{'method':<20}{'lines/s':>12}{'MB/s':>7}{'vs naive':>10}{'events':>8}")
    for name, secs, n_events in rows:
        print(f"{name:<20}{len(lines) / secs:>12,.0f}{total / secs / 1e6:>7.0f}{base / secs:>9.2f}x{n_events:>8}")


if __name__ == "__main__":
    main()
