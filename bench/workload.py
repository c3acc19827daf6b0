"""Deterministic JSON-log workload for the benchmarks (issue 5).

    .venv/bin/python bench/workload.py OUT.jsonl [--lines 1000000] [--seed 5]

What the lines look like (seeded, so the same arguments always give the same bytes):

* ~200-byte JSON objects, one per line, as two common loggers write them: half
  python-json-logger (``asctime``/``levelname``/``name``/``message``, ``", "``/``": "``
  separators, ``ensure_ascii``) and half structlog's JSONRenderer (``timestamp``/
  ``level``/``event``/``logger``), plus request fields (``request_id``, ``path``,
  ``status``, ``duration_ms``).
* ~10% error lines (``--error-share``) with ``error_code`` from 50 codes (``--codes``)
  drawn Zipf-like (weight ``1 / rank**1.1``: the top code is ~20% of the errors, the
  last ~0.3%); 30% of them carry ``re_alert_time`` (``"15m"`` or structlog's
  ``"datetime.timedelta(seconds=900)"``), 2% ``"notification": false``, some nest the
  code under ``extra``.
* rare clears (``error_code_clear``, ~0.05% of error lines), so incidents close and
  reopen a few dozen times, as on a bad day, not a pathological one.
* 3% decoy lines that name error_code only in their message (the parser must look at
  them and find nothing), 4% non-ASCII text (half ``\\u`` escaped as
  ``ensure_ascii`` writes it, half raw UTF-8 as orjson-based renderers do), 1% with
  ``\\"``/``\\n`` escapes, and one error line in 10k whose key is written with JSON escapes
  (``"\\u0065rror_code"``).
* event times start at 2026-01-14 15:00 UTC and advance 1 ms a line (1M lines are
  ~17 minutes of app time, so the 15m re-alerts fire now and then).

``sentinel(tag)`` is the line the runner appends last and waits for: a new code, so it
always notifies.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = ["distinct_codes", "generate", "lines", "sentinel", "split_lines"]

START = datetime(2026, 1, 14, 15, 0, 0, tzinfo=UTC)
TARGET_BYTES = 200

_PATHS = (
    "/api/v1/items",
    "/api/v1/orders",
    "/api/v1/users",
    "/healthz",
    "/api/v2/search",
    "/api/v1/payments",
    "/static/app.js",
    "/api/v1/invoices",
)
_OK_MESSAGES = (
    "request handled",
    "cache hit",
    "cache miss, fetched",
    "job finished",
    "connection reused",
    "queued for retry",
    "payment authorised",
)
_ERR_MESSAGES = (
    "database unreachable",
    "upstream timed out",
    "rate limited by provider",
    "disk nearly full",
    "certificate expires soon",
    "queue backlog growing",
)
_DECOYS = (
    "retry ok; no error_code set on this request",
    "error_code field deprecated, see docs",
    "metrics: error_code_count=0",
)
_NON_ASCII = (
    "Überweisung für Zoë fehlgeschlagen — 日本",
    "paiement refusé: carte expirée ✓",
    "Заказ обработан",
    "ödeme başarısız — tekrar deneyin",
    "注文を受け付けました 🚀",
)
_ESCAPES = ('bad input "x"\n  at line 3', 'path "C:\\temp" not found', 'quote "a" and tab\there')


def _zipf_weights(n: int, s: float = 1.1) -> list[float]:
    return [1.0 / (k**s) for k in range(1, n + 1)]


def lines(count: int, *, seed: int = 5, codes: int = 50, error_share: float = 0.10) -> Iterator[bytes]:
    """``count`` log lines (each ending in ``\\n``), deterministic for the arguments."""
    rng = random.Random(seed)
    code_names = [f"E{k:03d}_{w}" for k, w in zip(range(codes), _code_words(codes), strict=True)]
    weights = _zipf_weights(codes)
    cum: list[float] = []
    total = 0.0
    for w in weights:
        total += w
        cum.append(total)
    active: set[str] = set()
    n_err = 0
    start_ms = int(START.timestamp() * 1000)
    for i in range(count):
        ms = start_ms + i
        structlog = rng.random() < 0.5
        when = datetime.fromtimestamp(ms / 1000, UTC)
        rec: dict[str, object]
        if structlog:
            rec = {
                "timestamp": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "level": "info",
                "logger": "http",
                "event": rng.choice(_OK_MESSAGES),
            }
            msg_key = "event"
            level_key, err_level = "level", "error"
        else:
            rec = {
                "asctime": when.strftime("%Y-%m-%d %H:%M:%S,") + f"{ms % 1000:03d}",
                "levelname": "INFO",
                "name": "http",
                "message": rng.choice(_OK_MESSAGES),
            }
            msg_key = "message"
            level_key, err_level = "levelname", "ERROR"
        ensure_ascii = True
        roll = rng.random()
        if roll < error_share:
            code = code_names[_pick(cum, rng.random() * total)]
            n_err += 1
            rec[level_key] = err_level
            rec[msg_key] = rng.choice(_ERR_MESSAGES)
            if code in active and rng.random() < 0.0005:
                rec["error_code_clear"] = code
                rec[msg_key] = "recovered"
                active.discard(code)
            else:
                active.add(code)
                r2 = rng.random()
                if r2 < 0.05 and not structlog:
                    rec["extra"] = {"error_code": code, "component": "db"}
                elif n_err % 10_000 == 9_999:
                    rec["\x00escaped"] = code  # replaced below by an escaped key
                else:
                    rec["error_code"] = code
                r3 = rng.random()
                if r3 < 0.15:
                    rec["re_alert_time"] = "15m"
                elif r3 < 0.30:
                    rec["re_alert_time"] = "datetime.timedelta(seconds=900)"
                if rng.random() < 0.02:
                    rec["notification"] = False
        elif roll < error_share + 0.03:
            rec[msg_key] = rng.choice(_DECOYS)
        elif roll < error_share + 0.07:
            rec[msg_key] = rng.choice(_NON_ASCII)
            ensure_ascii = rng.random() < 0.5
        elif roll < error_share + 0.08:
            rec[msg_key] = rng.choice(_ESCAPES)
        rec["request_id"] = f"{rng.getrandbits(32):08x}"
        rec["path"] = f"{rng.choice(_PATHS)}/{rng.randrange(10_000)}"
        rec["status"] = rng.choice((200, 200, 200, 201, 204, 304, 404, 500))
        rec["duration_ms"] = round(rng.lognormvariate(3.0, 1.0), 1)
        text = json.dumps(rec, ensure_ascii=ensure_ascii)
        if "\\u0000escaped" in text:
            text = text.replace('"\\u0000escaped"', '"\\u0065rror_code"')
        size = len(text.encode()) + 1
        if size < TARGET_BYTES - 12:
            text = text[:-1] + f', "host": "{"web-" + "0" * (TARGET_BYTES - size - 14)}"}}'
        yield text.encode() + b"\n"


def _code_words(n: int) -> list[str]:
    words = (
        "db_down",
        "api_rate_limit",
        "cache_miss_storm",
        "queue_full",
        "disk_full",
        "tls_expiry",
        "auth_fail",
        "dns_fail",
        "payment_declined",
        "smtp_down",
    )
    return [words[k % len(words)] for k in range(n)]


def _pick(cum: list[float], x: float) -> int:
    lo, hi = 0, len(cum) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def sentinel(tag: str) -> bytes:
    """The last line of a run: a code never seen before, so it notifies at once."""
    rec = {
        "timestamp": (START + timedelta(days=1)).isoformat().replace("+00:00", "Z"),
        "level": "error",
        "event": "bench sentinel",
        "error_code": f"sentinel_{tag}",
    }
    return json.dumps(rec).encode() + b"\n"


def distinct_codes(count: int, *, prefix: str = "open", notify: bool = False) -> Iterator[bytes]:
    """``count`` lines, each opening its own incident (``notification: false`` by default,
    so 10,000 of them do not turn into 10,000 HTTP posts)."""
    for k in range(count):
        rec: dict[str, object] = {
            "timestamp": (START + timedelta(milliseconds=k)).isoformat().replace("+00:00", "Z"),
            "level": "error",
            "event": f"incident {k} opened",
            "error_code": f"{prefix}_{k:05d}",
        }
        if not notify:
            rec["notification"] = False
        yield json.dumps(rec).encode() + b"\n"


def split_lines(data: bytes, parts: int) -> list[bytes]:
    """``data`` cut into ``parts`` pieces of about equal size, at line ends."""
    out: list[bytes] = []
    start = 0
    for k in range(1, parts + 1):
        end = len(data) if k == parts else data.find(b"\n", len(data) * k // parts) + 1 or len(data)
        out.append(data[start:end])
        start = end
    return out


def generate(path: Path, count: int, *, seed: int = 5) -> Path:
    """Write ``count`` lines to ``path`` (no sentinel)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        buf: list[bytes] = []
        for ln in lines(count, seed=seed):
            buf.append(ln)
            if len(buf) >= 10_000:
                f.write(b"".join(buf))
                buf.clear()
        f.write(b"".join(buf))
    tmp.rename(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    generate(args.out, args.lines, seed=args.seed)


if __name__ == "__main__":
    main()
