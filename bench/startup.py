"""Start-up: ``errord run`` to ``READY=1`` with 10,000 open incidents (issue 13's target).

    .venv/bin/python bench/startup.py                 # 9 starts, then where the imports go
    .venv/bin/python bench/startup.py --runs 15 --no-imports
    PYTHONPATH=/tmp/x/daemon .venv/bin/python bench/startup.py   # another tree, same bench

Once: a state_dir is filled with 10,000 open incidents (the daemon reads 10,000 silent new
codes, then stops). Then ``errord run`` is started ``--runs`` times, each with
``NOTIFY_SOCKET`` on a unix datagram socket this bench reads: the seconds from the spawn
to ``READY=1`` (median, min, max), and the CPU seconds (utime + stime from /proc, at the
moment READY=1 arrives) of the process itself (``errord run`` and the daemon image it
``exec``s: one pid), with the children it has reaped by then (the child that validated
the config), and of the notify helper it started. SIGTERM between
starts.

Then ``-X importtime`` of each process: ``python -X importtime -m errord run`` (the flag
is not handed on by the exec, so only the validating process reports), and the daemon
image started by hand on the config ``_dump-config`` prints (``python -X importtime -m
errord.serve FD``; the helper it starts is not traced either): the total, the slowest
top-level imports, the time per top-level package.

First, errord's modules are compiled (``compileall`` into their ``__pycache__``, as
``pip install`` does for an installed errord): with ``PYTHONDONTWRITEBYTECODE=1`` and an
editable install every start would compile ~100 modules from source (measured: +0.3 s of
CPU per start), which is not what a deployed errord pays. ``--no-compile``: as found.

Nothing here asserts; it prints tables. The trees compared must each make their own
state (``PYTHONPATH`` applies to the fill too).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from harness import BenchReceiver, Daemon, _tree, compile_errord, started_until_ready  # noqa: E402
from workload import distinct_codes  # noqa: E402

OUT = BENCH / "out"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int, *, reaped: bool = False) -> float:
    """utime + stime of ``pid`` (its threads included), in seconds; ``reaped``: plus the
    children it has waited for (cutime + cstime: the child that validated the config)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return sum(int(x) for x in fields[11 : 15 if reaped else 13]) / TICK


def probe(code: str) -> bytes:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return f'{{"timestamp": "{stamp}", "level": "error", "event": "probe", "error_code": "{code}"}}\n'.encode()


def fill(d: Daemon, rx: BenchReceiver, count: int) -> None:
    d.start()
    rx.expect("fill_done")
    with open(d.logs / "open.jsonl", "wb") as f:
        f.writelines(distinct_codes(count, prefix="start"))
        f.write(probe("fill_done"))
    rx.wait_codes(["fill_done"], 300)
    d.stop()


def starts(d: Daemon, runs: int) -> list[tuple[float, float, float]]:
    """(seconds to READY=1, CPU s of the process, CPU s of its children) per start."""
    out = []
    for _ in range(runs):
        with started_until_ready(d, 60) as (proc, took):
            own = cpu_of(proc.pid, reaped=True)
            kids = sum(cpu_of(p) for p in _tree(proc.pid) if p != proc.pid)
            out.append((took, own, kids))
        time.sleep(0.3)
    return out


def importtime(stderr: str) -> list[tuple[int, int, int, str]]:
    """(self us, cumulative us, depth, module) per ``-X importtime`` line."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        self_us, cum_us, name = line[len("import time:") :].split("|", 2)
        depth = (len(name) - len(name.lstrip())) // 2
        rows.append((int(self_us), int(cum_us), depth, name.strip()))
    return rows


def import_report(title: str, rows: list[tuple[int, int, int, str]], top: int) -> str:
    total = sum(r[0] for r in rows)
    by_pkg: dict[str, int] = defaultdict(int)
    for self_us, _, _, name in rows:
        by_pkg[name.split(".")[0]] += self_us
    tops = sorted((r for r in rows if r[2] <= 1), key=lambda r: -r[1])[:top]
    lines = [f"### {title}: {total / 1000:.0f} ms importing {len(rows)} modules", ""]
    lines += ["| slowest imports (cumulative) | ms |", "|---|---|"]
    lines += [f"| {'  ' * r[2]}{r[3]} | {r[1] / 1000:.1f} |" for r in tops]
    lines += ["", "| package (self time) | ms |", "|---|---|"]
    pkgs = sorted(by_pkg.items(), key=lambda kv: -kv[1])[:top]
    lines += [f"| {name} | {us / 1000:.1f} |" for name, us in pkgs]
    return "\n".join(lines) + "\n"


def imports(d: Daemon, top: int) -> str:
    env = {k: v for k, v in d.env.items() if k != "NOTIFY_SOCKET"}
    py = [sys.executable, "-X", "importtime"]
    # the validating process: its exec'd image is not traced (the flag is not handed on)
    proc = subprocess.Popen(
        [*py, "-m", "errord", "run", "-c", str(d.config)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    time.sleep(3.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    first = importtime(err.decode(errors="replace"))
    # the daemon image on the same config (a temp file in the bench's dir, removed here)
    dump = subprocess.run(
        [sys.executable, "-m", "errord", "_dump-config", "-c", str(d.config)], env=env, capture_output=True, check=True
    ).stdout
    with tempfile.TemporaryFile(dir=d.dir) as f:
        f.write(dump)
        f.flush()
        f.seek(0)
        proc = subprocess.Popen(
            [*py, "-m", "errord.serve", str(f.fileno())],
            env=env,
            pass_fds=[f.fileno()],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(3.0)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    second = importtime(err.decode(errors="replace"))
    return import_report("errord run (validating)", first, top) + "\n" + import_report("daemon image", second, top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=9, help="starts to time (default 9)")
    ap.add_argument("--incidents", type=int, default=10_000, help="open incidents (default 10,000)")
    ap.add_argument("--no-imports", action="store_true", help="skip the -X importtime summaries")
    ap.add_argument("--top", type=int, default=12, help="rows per importtime table")
    ap.add_argument("--no-compile", action="store_true", help="do not compile errord's modules first")
    args = ap.parse_args()
    if not args.no_compile:
        compile_errord()
    OUT.mkdir(exist_ok=True)
    rx = BenchReceiver()
    d = Daemon(rx, workdir=OUT)
    try:
        fill(d, rx, args.incidents)
        got = starts(d, args.runs)
        report = imports(d, args.top) if not args.no_imports else ""
    finally:
        d.cleanup()
        rx.stop()
    tree = os.environ.get("PYTHONPATH") or "installed"
    print(
        f"errord run → READY=1, {args.incidents:,} open incidents, {args.runs} starts "
        f"({tree}; load {os.getloadavg()[0]:.2f})"
    )
    print()
    print("| | median | min | max |")
    print("|---|---|---|---|")
    for name, k in (
        ("seconds to READY=1", 0),
        ("CPU s, errord run + daemon (+ reaped children)", 1),
        ("CPU s, notify helper", 2),
    ):
        xs = [g[k] for g in got]
        print(f"| {name} | {statistics.median(xs):.3f} | {min(xs):.3f} | {max(xs):.3f} |")
    print()
    print("each start: " + ", ".join(f"{g[0]:.3f}" for g in got))
    if report:
        print()
        print(report)


if __name__ == "__main__":
    main()
