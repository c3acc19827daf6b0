"""The HTTP API's cost (issue 16): resident memory of daemon + helper with ``[http]`` on
and off, with 10,000 open incidents, and the latency of ``GET /api/v1/active`` (and of the
status page) at that size. Prints a table; asserts nothing.

    .venv/bin/python bench/http_api.py [--incidents 10000] [--requests 50]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def rss_mb(pid: int) -> float:
    """VmRSS of ``pid`` and its children, MB."""
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    total = 0
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(n: int, http: bool, requests: int) -> dict[str, float]:
    d = Path(tempfile.mkdtemp(prefix="errord-http-"))
    (d / "logs").mkdir()
    port = free_port()
    cfg = f'state_dir = "{d / "state"}"\nserver_id = "b"\n'
    cfg += f'[[sources]]\npath = "{d / "logs"}/*.jsonl"\nstart_at = "beginning"\n'
    if http:
        cfg += f'[http]\nlisten = "127.0.0.1:{port}"\n'
    (d / "e.toml").write_text(cfg)
    with open(d / "logs" / "a.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"message": f"open {i}", "error_code": f"code_{i:05d}", "notification": False}) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERRORD_")}
    proc = subprocess.Popen([sys.executable, "-m", "errord", "run", "-c", str(d / "e.toml")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            out = subprocess.run([sys.executable, "-m", "errord", "status", "--json", "-c", str(d / "e.toml")],
                                 capture_output=True, text=True, env=env)  # fmt: skip
            if out.stdout and json.loads(out.stdout).get("active_incidents") == n:
                break
            time.sleep(0.5)
        time.sleep(2.0)
        res = {"rss": rss_mb(proc.pid)}
        if http:
            base = f"http://127.0.0.1:{port}"
            for path, key in (("/api/v1/active", "active"), ("/", "page")):
                times = []
                for _ in range(requests):
                    t0 = time.perf_counter()
                    with urllib.request.urlopen(base + path, timeout=30) as r:
                        r.read()
                    times.append(time.perf_counter() - t0)
                res[key + "_p50"] = statistics.median(times) * 1000
                res[key + "_max"] = max(times) * 1000
            res["rss_after"] = rss_mb(proc.pid)
        return res
    finally:
        proc.terminate()
        proc.wait(15)
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--incidents", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=50)
    args = ap.parse_args()
    off = run(args.incidents, False, 0)
    on = run(args.incidents, True, args.requests)
    print(f"# errord [http] with {args.incidents:,} open incidents\n")
    print("| | daemon + helper RSS |")
    print("|---|---|")
    print(f"| [http] off | {off['rss']:.1f} MB |")
    print(f"| [http] on, idle | {on['rss']:.1f} MB ({on['rss'] - off['rss']:+.1f}) |")
    grown = on["rss_after"] - off["rss"]
    print(f"| [http] on, after {2 * args.requests} requests | {on['rss_after']:.1f} MB ({grown:+.1f}) |")
    print()
    print("| request | p50 | max |")
    print("|---|---|---|")
    print(f"| GET /api/v1/active | {on['active_p50']:.0f} ms | {on['active_max']:.0f} ms |")
    print(f"| GET / (the page) | {on['page_p50']:.0f} ms | {on['page_max']:.0f} ms |")


if __name__ == "__main__":
    main()
