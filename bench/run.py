"""errord against the classic correlator and a naive loop, side by side (issue 5).

    .venv/bin/python bench/run.py            # 1M lines, 3 runs each: the numbers in README
    .venv/bin/python bench/run.py --quick    # 200k lines, 2 runs: for iteration
    make bench                               # the same as the first, with the bench extra

What it measures, on one generated file (``bench/workload.py``: ~200-byte lines, 10%
error lines over 50 Zipf-distributed codes, clears, decoys, non-ASCII text), all in the
same run so the ratios share the machine's conditions:

* **naive** — ``orjson.loads`` on every line (``bench/baselines.py``), in its own process.
* **prefilter** — the same, parsing only lines whose bytes contain ``"error_code``.
* **SEC** — ``sec --notail`` over the file with a SingleWithSuppress rule per code and a
  clear rule (Debian package ``sec``; skipped with a note when it is not installed).
* **errord ingest** — ``errord run`` (a subprocess; config and state in a temp dir;
  notices to a local HTTP receiver through Apprise's ``json://``). The prepared file is
  renamed into the watched folder; the time runs from the rename to the arrival of the
  notice for a sentinel line written last (so it includes noticing the file, reading,
  parsing, the engine, the journal commits and every notice before the sentinel's).
* **latency** — one line appended to a followed file → its notice received (p50/p99).
* **memory** — the daemon and its notify helper (the long-lived processes): their RSS
  (VmRSS) idle with 10,000 distinct open incidents (lines with ``notification: false``),
  after reading them and after a restart that loads them, and their peak (the sum of
  their VmHWM, from /proc polled every 20 ms) over the ingest, the latency run, those
  incidents and the restart. The short-lived config check ``errord run`` forks (it
  imports pydantic: ~33 MB for a fraction of a second, before the daemon reads a line)
  is reported on its own row, not added to the daemon's figure.
* **scaling** — twice the lines; the same ingest with 10,000 incidents already open; the
  file split in 50 files renamed in at once (time until all 50 sentinels arrived).

Each timing is the median of ``--repeat`` runs; the spread is printed. Results go to
stdout, ``bench/results.md`` and ``bench/results.png`` (matplotlib: the ``bench`` extra).
Nothing here asserts: CI never runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from baselines import sec_command, sec_rules  # noqa: E402
from harness import BenchReceiver, Daemon  # noqa: E402
from workload import distinct_codes, generate, sentinel, split_lines  # noqa: E402

OUT = BENCH / "out"
IDLE_WAIT = 8.0  # s of quiet before an idle reading: past the daemon's idle trim (errord.heaptrim.IDLE, 5 s)


@dataclass
class Runs:
    """Repeated measurements of one thing (seconds, or any unit)."""

    values: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # CPU seconds, where measured

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu) if self.cpu else float("nan")

    def spread(self) -> str:
        if not self.values:
            return "-"
        return f"{min(self.values):.3f}–{max(self.values):.3f}"


@dataclass
class Results:
    lines: int
    repeat: int
    naive: Runs = field(default_factory=Runs)
    prefilter: Runs = field(default_factory=Runs)
    sec: Runs = field(default_factory=Runs)
    ingest: Runs = field(default_factory=Runs)
    read: Runs = field(default_factory=Runs)  # rename -> every line read and committed
    ingest_2x: Runs = field(default_factory=Runs)
    ingest_10k: Runs = field(default_factory=Runs)
    ingest_50: Runs = field(default_factory=Runs)
    latencies: list[float] = field(default_factory=list)  # seconds
    rss_run: float = 0.0  # MB, peak of daemon + helper: ingest + latency + 10k incidents
    rss_restart: float = 0.0  # MB, the same over a restart loading 10k open incidents
    rss_idle: float = 0.0  # MB, VmRSS of daemon + helper, idle with 10k open incidents read
    rss_idle_restart: float = 0.0  # MB, the same after the restart that loaded them
    rss_check: float = 0.0  # MB, peak of the short-lived config check (the largest)
    rss_detail: str = ""
    notices: int = 0
    cpu_split: list[tuple[float, float, float]] = field(default_factory=list)  # daemon, helper, bench process
    stop_seconds: list[float] = field(default_factory=list)
    load: list[tuple[float, float, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# -- the workload --------------------------------------------------------------------


def workload(lines: int, seed: int) -> tuple[Path, Path]:
    """Bodies (no sentinel) of ``lines`` and ``2 * lines`` lines, cached in bench/out."""
    OUT.mkdir(exist_ok=True)
    double = OUT / f"workload-{2 * lines}-s{seed}.jsonl"
    single = OUT / f"workload-{lines}-s{seed}.jsonl"
    if not double.exists():
        print(f"generating {2 * lines:,} lines (seed {seed}) ...", flush=True)
        generate(double, 2 * lines, seed=seed)
    if not single.exists():
        with open(double, "rb") as f:
            data = f.read()
        end = -1
        for _ in range(lines):
            end = data.index(b"\n", end + 1)
        single.write_bytes(data[: end + 1])
    return single, double


def with_sentinel(body: Path, dest: Path, tag: str) -> Path:
    shutil.copyfile(body, dest)
    with open(dest, "ab") as f:
        f.write(sentinel(tag))
    return dest


# -- references ----------------------------------------------------------------------


def run_baseline(kind: str, path: Path) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, str(BENCH / "baselines.py"), kind, str(path)], capture_output=True, text=True, check=True
    )
    data = json.loads(out.stdout)
    return float(data["seconds"]), float(data.get("cpu", data["seconds"]))


def run_sec(path: Path, workdir: Path) -> tuple[float, float]:
    rules = sec_rules(workdir / "errord-bench.sec")
    t0 = time.monotonic()
    before = os.times()
    subprocess.run(sec_command(rules, path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.monotonic() - t0
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


# -- errord --------------------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            total += int(parts[11]) + int(parts[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def tree(d: Daemon) -> list[int]:
    return sorted({pid for pid, _ in d.rss.hwm}) if d.rss is not None else []


def ingest(d: Daemon, rx: BenchReceiver, files: list[Path], tags: list[str], timeout: float) -> tuple[float, float]:
    """Rename the prepared ``files`` into the watched folder; seconds until every
    sentinel's notice arrived, and the CPU seconds the daemon and its helper used.
    ``d.read_done`` is set to the seconds until the journal held every file's end."""
    codes = [f"sentinel_{t}" for t in tags]
    rx.expect(*codes)
    os.sync()  # the copies are on disk: no writeback competes with the run
    if d.rss is not None:
        d.rss.poll()
    pids = tree(d)
    total = sum(f.stat().st_size for f in files)
    names = [str(d.logs / f.name) for f in files]
    done: list[float] = []
    stop = threading.Event()
    cpu0 = cpu_seconds(pids)
    main0 = cpu_seconds([d.proc.pid]) if d.proc is not None else 0.0
    me0 = os.times()
    t0 = time.monotonic()
    watcher = threading.Thread(target=_watch_positions, args=(d, names, total, t0, done, stop), daemon=True)
    watcher.start()
    for f in files:
        os.rename(f, d.logs / f.name)
    try:
        arrived = rx.wait_codes(codes, timeout)
    finally:
        stop.set()
        watcher.join(2)
    took = max(arrived) - t0
    me1 = os.times()
    d.read_done = done[0] if done else float("nan")
    cpu = cpu_seconds(pids) - cpu0
    main = cpu_seconds([d.proc.pid]) - main0 if d.proc is not None else float("nan")
    d.cpu_split = (main, cpu - main, (me1.user + me1.system) - (me0.user + me0.system))
    return took, cpu


def _watch_positions(
    d: Daemon, names: list[str], total: int, t0: float, done: list[float], stop: threading.Event
) -> None:
    """Poll the journal (read-only, WAL: it never blocks the daemon) until the committed
    positions of ``names`` add up to ``total`` bytes."""
    db = sqlite3.connect(f"file:{d.dir / 'state' / 'errord.db'}?mode=ro", uri=True, timeout=1)
    query = f'SELECT coalesce(sum("offset"), 0) FROM positions WHERE path IN ({", ".join("?" * len(names))})'
    try:
        while not stop.is_set():
            try:
                (got,) = db.execute(query, names).fetchone()
            except sqlite3.Error:
                got = 0
            if got >= total:
                done.append(time.monotonic() - t0)
                return
            stop.wait(0.005)
    finally:
        db.close()


def run_ingest(
    rx: BenchReceiver,
    body: Path,
    tag: str,
    *,
    open_incidents: int = 0,
    timeout: float = 300,
    keep: bool = False,
    profile: str | None = None,
) -> tuple[float, float, Daemon]:
    d = Daemon(rx, workdir=OUT, profile=profile)
    try:
        return _run_ingest(d, rx, body, tag, open_incidents, timeout, keep)
    except BaseException:
        d.cleanup()
        raise


def _run_ingest(
    d: Daemon, rx: BenchReceiver, body: Path, tag: str, open_incidents: int, timeout: float, keep: bool
) -> tuple[float, float, Daemon]:
    d.start()
    if open_incidents:
        pre = d.logs / "open.jsonl"
        with open(pre, "wb") as f:
            f.writelines(distinct_codes(open_incidents, prefix=f"open{tag}"))
            f.write(sentinel(f"{tag}_open"))
        rx.expect(f"sentinel_{tag}_open")
        rx.wait_codes([f"sentinel_{tag}_open"], timeout)
    prep = with_sentinel(body, d.prep / "app.jsonl", tag)
    took, cpu = ingest(d, rx, [prep], [tag], timeout)
    if not keep:
        d.stop()
        d.cleanup()
    return took, cpu, d


def run_many_files(rx: BenchReceiver, body: Path, tag: str, parts: int, timeout: float = 300) -> tuple[float, float]:
    d = Daemon(rx, workdir=OUT)
    try:
        d.start()
        data = body.read_bytes()
        files, tags = [], []
        for k, piece in enumerate(split_lines(data, parts)):
            t = f"{tag}_{k:02d}"
            p = d.prep / f"app{k:02d}.jsonl"
            p.write_bytes(piece + sentinel(t))
            files.append(p)
            tags.append(t)
        del data
        took, cpu = ingest(d, rx, files, tags, timeout)
        d.stop()
        return took, cpu
    finally:
        d.cleanup()


def latency_run(d: Daemon, rx: BenchReceiver, samples: int) -> list[float]:
    """Append one line at a time to a followed file; seconds from write to notice."""
    rng = random.Random(7)
    live = d.logs / "live.jsonl"
    out: list[float] = []
    with open(live, "ab", buffering=0) as f:
        f.write(sentinel("live_start"))
        rx.expect("sentinel_live_start")
        rx.wait_codes(["sentinel_live_start"], 30)
        for k in range(samples):
            code = f"lat_{k:04d}"
            rx.expect(code)
            rec = {
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "level": "error",
                "event": "latency probe",
                "error_code": code,
            }
            t0 = time.monotonic()
            f.write(json.dumps(rec).encode() + b"\n")
            (arrived,) = rx.wait_codes([code], 30)
            out.append(arrived - t0)
            time.sleep(rng.uniform(0.02, 0.08))
    return out


def memory_run(d: Daemon, rx: BenchReceiver, count: int) -> None:
    """``count`` distinct open incidents (silent), then a sentinel."""
    with open(d.logs / "incidents.jsonl", "wb") as f:
        f.writelines(distinct_codes(count, prefix="mem"))
        f.write(sentinel("mem_done"))
    rx.expect("sentinel_mem_done")
    rx.wait_codes(["sentinel_mem_done"], 120)


# -- the report ----------------------------------------------------------------------


def ok(flag: bool) -> str:
    return "✅" if flag else "❌"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def report(r: Results) -> str:
    n = r.lines
    ing = r.ingest.median
    vs_sec = r.sec.median / ing if r.sec.values else float("nan")
    vs_naive = r.naive.median / ing
    cpu_naive = r.naive.cpu_median / r.ingest.cpu_median if r.ingest.cpu else float("nan")
    p50, p99 = pct(r.latencies, 50) * 1000, pct(r.latencies, 99) * 1000
    rss = max(r.rss_run, r.rss_restart)
    idle = max(r.rss_idle, r.rss_idle_restart)
    twice = r.ingest_2x.median / ing
    slow10k = r.ingest_10k.median / ing - 1
    many = r.ingest_50.median / ing
    rows = [
        (
            "Ingest vs SEC",
            f"{vs_sec:.1f}×" if r.sec.values else "SEC not installed",
            "≥ 5×",
            ok(vs_sec >= 5) if r.sec.values else "–",
        ),
        ("Ingest vs naive loop", f"{vs_naive:.2f}× (CPU: {cpu_naive:.2f}×)", "≥ 1.5×", ok(vs_naive >= 1.5)),
        (
            "Latency p50 / p99",
            f"{p50:.1f} / {p99:.1f} ms ({len(r.latencies)} lines)",
            "≤ 20 / ≤ 50 ms",
            ok(p50 <= 20 and p99 <= 50),
        ),
        ("RSS idle, daemon + helper, 10,000 open", f"{idle:.0f} MB", "≤ 80 MB", ok(idle <= 80)),
        ("Peak RSS, daemon + helper", f"{rss:.0f} MB", "≤ 80 MB", ok(rss <= 80)),
        ("Peak RSS, config check (own process, short-lived)", f"{r.rss_check:.0f} MB", "–", ""),
        ("2× the lines", f"{twice:.2f}× the time", "≤ 2.1×", ok(twice <= 2.1)),
        ("10,000 open incidents", f"{slow10k * 100:+.0f}% time", "≤ +10%", ok(slow10k <= 0.10)),
        ("50 files at once", f"{many:.2f}× the time of one", "≈ 1× (≤ 1.1×)", ok(many <= 1.1)),
    ]
    out = [f"# errord benchmark ({n:,} lines)", ""]
    out += ["| target | measured | wanted | |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    out += ["", f"Median of {r.repeat} runs each; wall seconds (spread min–max), CPU seconds of the process(es):", ""]
    out += ["| run | wall s | spread | lines/s | CPU s |", "|---|---|---|---|---|"]

    def line(name: str, runs: Runs, count: int) -> str:
        if not runs.values:
            return f"| {name} | – | – | – | – |"
        cpu = f"{runs.cpu_median:.2f}" if runs.cpu else "–"
        return f"| {name} | {runs.median:.3f} | {runs.spread()} | {count / runs.median:,.0f} | {cpu} |"

    out.append(line("SEC 2.9 (`--notail`)", r.sec, n))
    out.append(line("naive loop (orjson every line)", r.naive, n))
    out.append(line('prefilter loop (orjson on `"error_code` lines)', r.prefilter, n))
    out.append(line("**errord**: rename → sentinel notice", r.ingest, n))
    out.append(line("errord: rename → every line read and committed", r.read, n))
    out.append(line(f"errord, {2 * n:,} lines", r.ingest_2x, 2 * n))
    out.append(line("errord, 10,000 incidents open", r.ingest_10k, n))
    out.append(line("errord, 50 files at once", r.ingest_50, n))
    out += [
        "",
        f"Latency over {len(r.latencies)} single lines: p50 {p50:.1f} ms, p90 "
        f"{pct(r.latencies, 90) * 1000:.1f} ms, p99 {p99:.1f} ms, "
        f"max {max(r.latencies, default=float('nan')) * 1000:.1f} ms.",
    ]
    check = (
        f"The config check errord run forks before its exec peaks at {r.rss_check:.1f} MB on its own, "
        f"for a fraction of a second ({r.rss_detail})."
    )
    if r.rss_restart:
        out += [
            f"RSS of the daemon and its helper (VmRSS), idle ({IDLE_WAIT:.0f} s) with 10,000 open incidents: "
            f"{r.rss_idle:.1f} MB after reading them, {r.rss_idle_restart:.1f} MB after a restart that loaded "
            f"them. Peak (sum of their VmHWM): {r.rss_run:.1f} MB over ingest + latency + those incidents; "
            f"{r.rss_restart:.1f} MB over the restart. {check}"
        ]
    else:  # --only-ingest
        out += [
            f"RSS of the daemon and its helper (VmRSS), idle ({IDLE_WAIT:.0f} s) after the ingest: "
            f"{r.rss_idle:.1f} MB; peak (sum of their VmHWM) {r.rss_run:.1f} MB. {check}"
        ]
    if r.cpu_split:
        main, helper, bench = (statistics.median(x[k] for x in r.cpu_split) for k in range(3))
        floor = (main + helper + bench) / (os.cpu_count() or 1)
        out += [
            f"CPU seconds during the errord ingest (medians): daemon {main:.2f}, its notify helper "
            f"{helper:.2f}, this benchmark process (the HTTP receiver, pollers) {bench:.2f}; on "
            f"{os.cpu_count()} cores no schedule fits that work in less than {floor:.2f} s of wall time "
            f"(the naive loop's time is {r.naive.median:.2f} s)."
        ]
    out += [
        f"Notices sent per ingest: {r.notices}. SIGTERM to exit: "
        f"{max(r.stop_seconds) if r.stop_seconds else float('nan'):.2f} s at most."
    ]
    loads = ", ".join(f"{a:.2f}" for a, _, _ in r.load)
    out += [
        "",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average (1 min) at each phase: {loads}. Other work on the machine makes the wall "
        "times noisy; the ratios come from runs interleaved in one session.",
    ]
    out += [f"- {note}" for note in r.notes]
    return "\n".join(out) + "\n"


def chart(r: Results, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        r.notes.append("matplotlib missing (pip install -e '.[bench]'): no chart")
        return
    n = r.lines
    bars = [
        ("SEC", r.sec, n),
        ("naive\nloop", r.naive, n),
        ("prefilter\nloop", r.prefilter, n),
        ("errord", r.ingest, n),
        ("errord\n2× lines", r.ingest_2x, 2 * n),
        ("errord\n10k open", r.ingest_10k, n),
        ("errord\n50 files", r.ingest_50, n),
    ]
    bars = [(name, count / runs.median / 1e6) for name, runs, count in bars if runs.values]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    colors = ["#9e9e9e" if not name.startswith("errord") else "#d9534f" for name, _ in bars]
    a.bar([name for name, _ in bars], [v for _, v in bars], color=colors)
    for k, (_, v) in enumerate(bars):
        a.text(k, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    a.set_ylabel("million lines / s (higher is better)")
    a.set_title(f"Ingest of {n:,} JSON lines, median of {r.repeat}")
    a.tick_params(axis="x", labelsize=8)
    lat = sorted(x * 1000 for x in r.latencies)
    if lat:
        b.plot(lat, [(k + 1) / len(lat) for k in range(len(lat))], color="#d9534f")
        for q, style in ((50, "--"), (99, ":")):
            v = pct(r.latencies, q) * 1000
            b.axvline(v, color="#555", linestyle=style, linewidth=1)
            b.text(v, 0.05 if q == 50 else 0.2, f" p{q} {v:.0f} ms", fontsize=8)
        b.set_xlabel("append → notice received (ms)")
        b.set_ylabel("share of lines")
        b.set_title("Alert latency, one line at a time")
        b.set_xlim(0, max(60.0, lat[-1] * 1.05))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main ----------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200k lines, 2 runs, 100 latency probes")
    ap.add_argument("--lines", type=int, help="lines in the ingest file (default 1,000,000)")
    ap.add_argument("--repeat", type=int, help="runs of each timing (default 3)")
    ap.add_argument("--latency", type=int, help="latency probes (default 300)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--only-ingest", action="store_true", help="references and the plain ingest only")
    ap.add_argument("--profile", help="py-spy speedscope profile of the first ingest to this .json file")
    ap.add_argument("--out", type=Path, default=BENCH / "results.md")
    ap.add_argument("--chart", type=Path, default=BENCH / "results.png")
    args = ap.parse_args()
    lines = args.lines or (200_000 if args.quick else 1_000_000)
    repeat = args.repeat or (2 if args.quick else 3)
    probes = args.latency or (100 if args.quick else 300)
    r = Results(lines=lines, repeat=repeat)

    def phase(name: str) -> None:
        r.load.append(os.getloadavg())
        print(f"[{time.strftime('%H:%M:%S')}] {name} (load {r.load[-1][0]:.2f})", flush=True)

    single, double = workload(lines, args.seed)
    ref = with_sentinel(single, OUT / "reference.jsonl", "reference")
    rx = BenchReceiver()
    try:
        have_sec = shutil.which("sec") is not None
        if not have_sec:
            r.notes.append("SEC is not installed (apt-get install -y sec): its column is empty")
        for k in range(repeat):
            phase(f"references, run {k + 1}/{repeat}")
            for runs, kind in ((r.naive, "naive"), (r.prefilter, "prefilter")):
                wall, cpu = run_baseline(kind, ref)
                runs.values.append(wall)
                runs.cpu.append(cpu)
            if have_sec:
                wall, cpu = run_sec(ref, OUT)
                r.sec.values.append(wall)
                r.sec.cpu.append(cpu)
            phase(f"errord ingest, run {k + 1}/{repeat}")
            rx.reset()
            first = k == 0
            took, cpu, d = run_ingest(rx, single, f"i{k}", keep=first, profile=args.profile if first else None)
            r.ingest.values.append(took)
            r.ingest.cpu.append(cpu)
            r.cpu_split.append(d.cpu_split)
            r.read.values.append(d.read_done)
            print(
                f"    ingest {took:.3f}s (read and committed {d.read_done:.3f}s, cpu {cpu:.2f}s); "
                f"naive {r.naive.values[-1]:.3f}s" + (f"; sec {r.sec.values[-1]:.3f}s" if have_sec else ""),
                flush=True,
            )
            if first:
                r.notices = len(rx.snapshot())
                if not args.only_ingest:
                    phase("latency")
                    r.latencies = latency_run(d, rx, probes)
                    phase("10,000 open incidents")
                    memory_run(d, rx, 10_000)
                assert d.rss is not None
                time.sleep(IDLE_WAIT)  # idle: committed, the helper done, the freed heap given back
                r.rss_idle = d.rss.steady()
                r.stop_seconds.append(d.stop())
                r.rss_run = d.rss.peak_mb()
                r.rss_check = d.rss.transient_mb()
                r.rss_detail = d.rss.detail()
                if not args.only_ingest:
                    phase("restart with 10,000 open incidents")
                    d.start()
                    rx.expect("sentinel_restarted")
                    with open(d.logs / "after.jsonl", "wb") as f:
                        f.write(sentinel("restarted"))
                    rx.wait_codes(["sentinel_restarted"], 60)
                    time.sleep(IDLE_WAIT)
                    assert d.rss is not None  # start() made a new monitor
                    r.rss_idle_restart = d.rss.steady()
                    r.stop_seconds.append(d.stop())
                    r.rss_restart = d.rss.peak_mb()
                    r.rss_check = max(r.rss_check, d.rss.transient_mb())
                d.cleanup()
            if args.only_ingest:
                continue
            phase(f"errord, {2 * lines:,} lines, run {k + 1}/{repeat}")
            took, cpu, _ = run_ingest(rx, double, f"d{k}")
            r.ingest_2x.values.append(took)
            r.ingest_2x.cpu.append(cpu)
            phase(f"errord, 10,000 open incidents, run {k + 1}/{repeat}")
            took, cpu, _ = run_ingest(rx, single, f"o{k}", open_incidents=10_000)
            r.ingest_10k.values.append(took)
            r.ingest_10k.cpu.append(cpu)
            phase(f"errord, 50 files, run {k + 1}/{repeat}")
            took, cpu = run_many_files(rx, single, f"m{k}", 50)
            r.ingest_50.values.append(took)
            r.ingest_50.cpu.append(cpu)
        phase("done")
    finally:
        rx.stop()
        ref.unlink(missing_ok=True)
    if not args.only_ingest:
        chart(r, args.chart)
    text = report(r)
    print()
    print(text)
    args.out.write_text(text)
    print(f"written: {args.out}" + ("" if args.only_ingest else f", {args.chart}"))


if __name__ == "__main__":
    main()
