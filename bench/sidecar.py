"""The sidecar tax: errord, SEC and swatch following the same live file at once (issue 13).

    .venv/bin/python bench/sidecar.py            # ~3 minutes: the table in the README
    .venv/bin/python bench/sidecar.py --quick    # shorter phases, for iteration
    .venv/bin/python bench/sidecar.py --follow 10 --pairs 3   # 1,000 lines/s: CPU only
    .venv/bin/python bench/sidecar.py --latency 3             # 1,000 lines/s: latency only
    .venv/bin/python bench/sidecar.py --burst 5               # the notice burst only

A sidecar spends its life following files that grow a little at a time, or not at all,
on a host whose CPU belongs to the apps. Every figure here is robust to other load on the
machine: CPU *time* (utime + stime from /proc of every process of a tool's tree: errord's
daemon and notify helper; SEC; swatch and its ``tail``) and context switches (voluntary +
involuntary, summed over every thread in /proc/PID/task/*/status), over the same seconds
for every tool, so the ratios share the machine's conditions.

Phases, one errord (``errord run``, notices to a local ``json://`` receiver), SEC
(``sec --input``, following, SingleWithSuppress per code) and swatch (``--tail-file``)
on one live file:

* **following** — the bench appends ``workload`` lines every 10 ms: 10 per write
  (1,000 lines/s), then 200 per write (20,000 lines/s): the CPU and switches of each
  tool. Then 1,000 lines/s again with a probe line (a new code) every 250 ms: errord's
  append → notice latency under that load (not in the CPU figures: four HTTP notices a
  second are work SEC's ``write`` action does not do).
* **idle** — nothing written (after 12 s of silence, so errord's watch has slowed down);
  then a probe: the first line after the silence. Again with 500 files in the folder.
* **burst** — 1,000 new codes appended at once: notices/s at the receiver, the helper's
  CPU per notice.
* **memory** — RSS (VmRSS) of daemon + helper idle, then per open incident (100,000
  silent new codes, ``--quick``: 20,000).
* **start** — a state_dir with 10,000 open incidents; ``errord run`` to ``READY=1``
  (``NOTIFY_SOCKET``: a unix datagram socket this bench reads), five times.

Nothing here asserts; it prints the table (and writes ``bench/out/sidecar.md``).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from baselines import sec_rules  # noqa: E402
from harness import BenchReceiver, Daemon, _tree, compile_errord, started_until_ready  # noqa: E402
from workload import distinct_codes, lines  # noqa: E402

OUT = BENCH / "out"
TICK = os.sysconf("SC_CLK_TCK")
SWATCH_RC = 'watchfor /"error_code": "/\n  echo\n'
SETTLE = 2.0  # s after the last line read: the batch committed, the helper done
IDLE_WAIT = 8.0  # s after: past the daemon's idle trim (errord.heaptrim.IDLE, 5 s)


# -- /proc -------------------------------------------------------------------------


def cpu_of(pids: list[int]) -> float:
    """CPU seconds (user + system) of ``pids`` (each process: all its threads)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"/proc/{pid}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            total += int(parts[11]) + int(parts[12])
    return total / TICK


def switches_of(pids: list[int]) -> int:
    """Voluntary + involuntary context switches of every thread of ``pids``."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/status") as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                            total += int(line.split()[1])
    return total


def rss_of(pids: list[int]) -> float:
    """VmRSS of ``pids`` in MB."""
    kb = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    kb += int(line.split()[1])
    return kb / 1024


# /proc's utime + stime count 10 ms ticks: over a 10-s window SEC's ~1% of a core is ~10
# ticks, so a ratio moved by up to ~10% from rounding alone. Run as root (cgroup v1's
# cpuacct writable), each tool's processes go into a cgroup of their own, whose
# ``cpuacct.usage`` counts nanoseconds for every thread and child, the exited ones too.
CPUACCT = Path("/sys/fs/cgroup/cpuacct")


def _cgroup_for(name: str, pids: list[int]) -> Path | None:
    """A fresh cpuacct cgroup holding ``pids`` (their later children follow), or None."""
    group = CPUACCT / f"errord-bench-{os.getpid()}-{name}-{time.monotonic_ns()}"
    try:
        group.mkdir()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                (group / "cgroup.procs").write_text(str(pid))
    except OSError:
        with contextlib.suppress(OSError):
            group.rmdir()
        return None
    _CGROUPS.append(group)
    return group


_CGROUPS: list[Path] = []


def _drop_cgroups() -> None:
    """At exit: what is left of the tools goes back to the root group; the groups go."""
    for group in _CGROUPS:
        with contextlib.suppress(OSError):
            for pid in (group / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (CPUACCT / "cgroup.procs").write_text(pid)
            group.rmdir()


atexit.register(_drop_cgroups)


class Tool:
    """One process tree being measured (its pids are looked up at each reading); its CPU
    from its own cpuacct cgroup when it could have one (nanoseconds), else from /proc."""

    def __init__(self, name: str, root: int) -> None:
        self.name, self.root = name, root
        self._group = _cgroup_for(name, _tree(root))

    def pids(self) -> list[int]:
        return _tree(self.root)

    def reading(self) -> tuple[float, float, int]:
        pids = self.pids()
        if self._group is not None:
            cpu = int((self._group / "cpuacct.usage").read_text()) / 1e9
        else:
            cpu = cpu_of(pids)
        return time.monotonic(), cpu, switches_of(pids)


def measure(tools: list[Tool], seconds: float) -> dict[str, tuple[float, float]]:
    """Each tool's (CPU % of a core, context switches/s) over the same ``seconds``."""
    before = {t.name: t.reading() for t in tools}
    time.sleep(seconds)
    out = {}
    for t in tools:
        (w0, c0, s0), (w1, c1, s1) = before[t.name], t.reading()
        out[t.name] = (100 * (c1 - c0) / (w1 - w0), (s1 - s0) / (w1 - w0))
    return out


# -- the writer --------------------------------------------------------------------


class Writer:
    """Appends ``per_write`` lines every 10 ms to ``path`` (an absolute schedule, so the
    rate holds), and, when ``probe_every`` is set, a line with a new code every that many
    writes (its write time kept in ``probes``)."""

    def __init__(self, path: Path, per_write: int, body: list[bytes], rx: BenchReceiver, probe_every: int = 0) -> None:
        self.path, self.per_write, self.rx, self.probe_every = path, per_write, rx, probe_every
        self._lines = itertools.cycle(body)
        self.probes: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        nxt = time.monotonic()
        with open(self.path, "ab", buffering=0) as f:
            for k in itertools.count():
                if self._stop.is_set():
                    return
                data = b"".join(next(self._lines) for _ in range(self.per_write))
                code = ""
                if self.probe_every and k % self.probe_every == self.probe_every - 1:
                    code = f"probe_{os.getpid()}_{time.monotonic_ns()}"
                    self.rx.expect(code)
                    data += probe_line(code)
                f.write(data)
                if code:
                    self.probes[code] = time.monotonic()
                nxt += 0.010
                delay = nxt - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    nxt = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def latencies(self, timeout: float = 10) -> list[float]:
        codes = list(self.probes)
        arrived = self.rx.wait_codes(codes, timeout) if codes else []
        return [a - self.probes[c] for c, a in zip(codes, arrived, strict=True)]


def probe_line(code: str) -> bytes:
    rec = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "level": "error",
        "event": "latency probe",
        "error_code": code,
    }
    return json.dumps(rec).encode() + b"\n"


def first_line(path: Path, rx: BenchReceiver) -> float:
    """One probe appended to ``path``: seconds to its notice."""
    code = f"first_{time.monotonic_ns()}"
    rx.expect(code)
    with open(path, "ab", buffering=0) as f:
        t0 = time.monotonic()
        f.write(probe_line(code))
    (arrived,) = rx.wait_codes([code], 10)
    return arrived - t0


# -- the tools ---------------------------------------------------------------------


def start_sec(work: Path, inputs: str) -> subprocess.Popen[bytes]:
    rules = sec_rules(work / "sidecar.sec")
    cmd = ["sec", f"--conf={rules}", f"--input={inputs}", "--nointevents", "--log=/dev/null"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def start_swatch(work: Path, path: Path) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("swatchdog") or shutil.which("swatch")  # Debian names it swatchdog
    if exe is None:
        return None
    rc = work / "swatchrc"
    rc.write_text(SWATCH_RC)
    cmd = [exe, f"--config-file={rc}", f"--tail-file={path}", f"--script-dir={work}"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)  # swatch's tail too (each tool has its own session)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# -- start-up ----------------------------------------------------------------------


def ready_times(d: Daemon, runs: int) -> tuple[list[float], tuple[float, float]]:
    """``errord run`` → ``READY=1`` on a NOTIFY_SOCKET, ``runs`` times (SIGTERM between);
    and the RSS (MB) of daemon + helper a second after the last one was ready, and once it
    has been idle long enough to give its freed heap back (``IDLE_WAIT``)."""
    out = []
    rss = (float("nan"), float("nan"))
    for n in range(runs):
        with started_until_ready(d, 30) as (proc, took):
            out.append(took)
            if n == runs - 1:
                time.sleep(1.0)
                first = rss_of(_tree(proc.pid))
                time.sleep(IDLE_WAIT - 1.0)
                rss = (first, rss_of(_tree(proc.pid)))
    return out, rss


# -- memory ------------------------------------------------------------------------


def settled_rss(pid: int) -> tuple[float, float]:
    """RSS (MB) of daemon + helper ``SETTLE`` s from now, and ``IDLE_WAIT`` s from now."""
    time.sleep(SETTLE)
    first = rss_of(_tree(pid))
    time.sleep(IDLE_WAIT - SETTLE)
    return first, rss_of(_tree(pid))


def per_incident_kb(d: Daemon, rx: BenchReceiver, incidents: int) -> tuple[float, float]:
    """KB of RSS (daemon + helper) per open incident: ``incidents`` silent new codes read
    by the running daemon ``d``, ``SETTLE`` s after the last was read (the heap that ingest
    freed included), and ``IDLE_WAIT`` s after (once the daemon gave it back: heaptrim)."""
    assert d.proc is not None
    _, before = settled_rss(d.proc.pid)
    with open(d.logs / "incidents.jsonl", "wb") as f:
        f.writelines(distinct_codes(incidents, prefix="mem"))
        f.write(probe_line("mem_done"))
    rx.expect("mem_done")
    rx.wait_codes(["mem_done"], 300)
    first, idle = settled_rss(d.proc.pid)
    return (first - before) * 1024 / incidents, (idle - before) * 1024 / incidents


Pair = tuple[float, float]  # RSS (MB) soon after (SETTLE s), and once idle (IDLE_WAIT s)


def start_phase(rx: BenchReceiver) -> tuple[float, Pair, list[float], Pair]:
    """A fresh daemon's RSS (daemon + helper, MB, idle); its RSS after reading 10,000 new
    codes; then five starts to ``READY=1`` on that state and the RSS after the last."""
    s = Daemon(rx, workdir=OUT)
    try:
        s.start()
        assert s.proc is not None
        _, fresh_rss = settled_rss(s.proc.pid)
        with open(s.logs / "open.jsonl", "wb") as f:
            f.writelines(distinct_codes(10_000, prefix="start"))
            f.write(probe_line("start_done"))
        rx.expect("start_done")
        rx.wait_codes(["start_done"], 120)
        read_rss = settled_rss(s.proc.pid)
        s.stop()
        starts, loaded_rss = ready_times(s, 5)
    finally:
        s.cleanup()
    return fresh_rss, read_rss, starts, loaded_rss


def start_note(fresh_rss: float, read_rss: Pair, loaded_rss: Pair) -> str:
    restored = [(x - fresh_rss) * 1024 / 10_000 for x in loaded_rss]
    return (
        f"Idle with 10,000 open incidents (daemon + helper VmRSS, wanted ≤ 80 MB; {SETTLE:.0f} s after / "
        f"{IDLE_WAIT:.0f} s after, once idle): {read_rss[0]:.1f} / {read_rss[1]:.1f} MB after reading them, "
        f"{loaded_rss[0]:.1f} / {loaded_rss[1]:.1f} MB after a restart that loaded them ({restored[0]:.2f} / "
        f"{restored[1]:.2f} KB per incident over a fresh daemon's {fresh_rss:.1f} MB: restored from the journal)."
    )


def memory_only(incidents: int) -> str:
    """``--memory``: the memory figures alone (idle, per open incident, 10,000 open)."""
    OUT.mkdir(exist_ok=True)
    rx = BenchReceiver()
    d = Daemon(rx, workdir=OUT)
    try:
        d.start()
        assert d.proc is not None
        time.sleep(1.0)
        _, idle_rss = settled_rss(d.proc.pid)
        per_incident = per_incident_kb(d, rx, incidents)
        d.stop()
        fresh_rss, read_rss, _, loaded_rss = start_phase(rx)
    finally:
        d.cleanup()
        rx.stop()
    return "\n".join(
        [
            "# errord's memory (bench/sidecar.py --memory)",
            "",
            f"- daemon + helper idle: {idle_rss:.1f} MB (VmRSS)",
            f"- per open incident: {per_incident[0]:.3f} KB {SETTLE:.0f} s after the last was read, "
            f"{per_incident[1]:.3f} KB {IDLE_WAIT:.0f} s after, once idle ({incidents:,} silent new codes read "
            "while running)",
            f"- {start_note(fresh_rss, read_rss, loaded_rss)}",
            "",
        ]
    )


def follow_only(seconds: float, rate_per_write: int, profile: str | None, pairs: int) -> str:
    """``--follow``: errord and SEC on one live file at ``rate_per_write`` lines every 10 ms,
    ``pairs`` windows of ``seconds`` (py-spy on errord over the first, with ``profile``)."""
    OUT.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sidecar-", dir=OUT))
    body = list(lines(20_000, seed=11))
    rx = BenchReceiver()
    d = Daemon(rx, workdir=OUT)
    sec = None
    out = ["| window | errord | SEC 2.9 | errord ÷ SEC |", "|---|---|---|---|"]
    try:
        live = d.logs / "live.jsonl"
        live.write_bytes(b"")
        d.start()
        sec = start_sec(work, str(live))
        assert d.proc is not None
        tools = [Tool("errord", d.proc.pid), Tool("SEC", sec.pid)]
        w = Writer(live, rate_per_write, body, rx)
        time.sleep(3.0)
        for k in range(pairs):
            done = spy(d, profile) if profile and k == 0 else (lambda: None)
            got = measure(tools, seconds)
            done()
            (e, es), (c, cs) = got["errord"], got["SEC"]
            ratio = f"{e / c:.2f}×" if c > 0 else "SEC used no CPU"
            out.append(f"| {k + 1} | {e:.2f}% of a core, {es:.0f} ctx sw/s | {c:.2f}%, {cs:.0f}/s | {ratio} |")
        w.stop()
    finally:
        stop(sec)
        d.cleanup()
        rx.stop()
        shutil.rmtree(work, ignore_errors=True)
    rate = rate_per_write * 100
    return f"# following {rate:,} lines/s, a write every 10 ms (bench/sidecar.py --follow)\n\n" + "\n".join(out) + "\n"


def latency_only(seconds: float, runs: int) -> str:
    """``--latency``: errord alone following 1,000 lines/s, a probe (a new code) every
    250 ms for ``seconds``, ``runs`` times: append → notice p50 / p99 of each run."""
    OUT.mkdir(exist_ok=True)
    body = list(lines(20_000, seed=11))
    out = ["| run | probes | p50 | p99 | max |", "|---|---|---|---|---|"]
    for k in range(runs):
        rx = BenchReceiver()
        d = Daemon(rx, workdir=OUT)
        try:
            live = d.logs / "live.jsonl"
            live.write_bytes(b"")
            d.start()
            w = Writer(live, 10, body, rx)
            time.sleep(3.0)  # the first sight of each code is not the steady state
            w.stop()
            w = Writer(live, 10, body, rx, probe_every=25)
            time.sleep(seconds)
            w.stop()
            lat = [1000 * x for x in w.latencies()]
            out.append(f"| {k + 1} | {len(lat)} | {pct(lat, 50):.1f} ms | {pct(lat, 99):.1f} ms | {max(lat):.1f} ms |")
        finally:
            d.cleanup()
            rx.stop()
    return "# append → notice at 1,000 lines/s (bench/sidecar.py --latency)\n\n" + "\n".join(out) + "\n"


def burst(d: Daemon, rx: BenchReceiver, errord: Tool, prefix: str) -> tuple[float, float, float]:
    """1,000 new codes appended at once: (seconds until the last notice arrived, CPU s
    of daemon + helper, helper CPU ms per notice)."""
    assert d.proc is not None
    helper = [p for p in errord.pids() if p != d.proc.pid]
    codes = [f"{prefix}_{k:04d}" for k in range(1000)]
    rx.expect(*codes)
    c0, h0 = cpu_of(errord.pids()), cpu_of(helper)
    data = b"".join(probe_line(c) for c in codes)
    t0 = time.monotonic()
    with open(d.logs / f"{prefix}.jsonl", "ab") as f:
        f.write(data)
    arrived = rx.wait_codes(codes, 120)
    return max(arrived) - t0, cpu_of(errord.pids()) - c0, cpu_of(helper) - h0


def burst_only(runs: int, profile: str | None) -> str:
    """``--burst``: ``runs`` bursts of 1,000 new codes into one daemon, 3 s apart (py-spy
    on daemon and helper over the first, with ``profile``)."""
    OUT.mkdir(exist_ok=True)
    rx = BenchReceiver()
    d = Daemon(rx, workdir=OUT)
    out = ["| run | notices/s | helper CPU per notice | daemon + helper CPU |", "|---|---|---|---|"]
    try:
        (d.logs / "live.jsonl").write_bytes(b"")
        d.start()
        assert d.proc is not None
        errord = Tool("errord", d.proc.pid)
        time.sleep(3.0)
        for k in range(runs):
            done = spy(d, profile) if profile and k == 0 else (lambda: None)
            seconds, cpu, helper_cpu = burst(d, rx, errord, f"burst{k}")
            done()
            out.append(f"| {k + 1} | {1000 / seconds:.0f} | {helper_cpu:.2f} ms | {cpu:.2f} s |")
            time.sleep(3.0)
    finally:
        d.cleanup()
        rx.stop()
    title = "# a burst of 1,000 new codes to a local json:// target (bench/sidecar.py --burst)"
    return title + "\n\n" + "\n".join(out) + "\n"


# -- the run -----------------------------------------------------------------------


def fmt_row(name: str, cells: list[str]) -> str:
    return f"| {name} | " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter phases (numbers are noisier)")
    ap.add_argument("--profile", metavar="PREFIX", help="py-spy the daemon per phase: PREFIX-<phase>.json")
    ap.add_argument("--memory", action="store_true", help="the memory figures only (~1 minute)")
    ap.add_argument("--follow", type=int, metavar="LINES", help="only following LINES per 10 ms (10: 1,000/s)")
    ap.add_argument("--pairs", type=int, default=3, help="--follow: measurement windows (default 3)")
    ap.add_argument("--latency", type=int, metavar="RUNS", help="only the latency while following, RUNS times")
    ap.add_argument("--burst", type=int, metavar="RUNS", help="only the notice burst, RUNS times")
    args = ap.parse_args()
    compile_errord()  # as installed: no start pays for compiling what changed since the last
    if args.burst:
        print(burst_only(args.burst, args.profile))
        return
    if args.follow:
        print(follow_only(5.0 if args.quick else 10.0, args.follow, args.profile, args.pairs))
        return
    if args.latency:
        print(latency_only(5.0 if args.quick else 10.0, args.latency))
        return
    if args.memory:
        text = memory_only(20_000 if args.quick else 100_000)
        print(text)
        return
    window = 5.0 if args.quick else 10.0
    quiet = 12.0
    incidents = 20_000 if args.quick else 100_000
    OUT.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sidecar-", dir=OUT))
    body = list(lines(20_000, seed=11))
    rows: dict[str, dict[str, tuple[float, float]]] = {}
    notes: list[str] = []
    rx = BenchReceiver()
    d = Daemon(rx, workdir=OUT)
    sec = swatch = None
    try:
        live = d.logs / "live.jsonl"
        live.write_bytes(b"")
        d.start()
        sec = start_sec(work, str(live))
        swatch = start_swatch(work, live)
        assert d.proc is not None
        tools = [Tool("errord", d.proc.pid), Tool("SEC", sec.pid)]
        if swatch is not None:
            tools.append(Tool("swatch", swatch.pid))
        else:
            notes.append("swatch is not installed (apt-get install -y swatch: swatchdog): its column is empty")
        time.sleep(1.0)
        profiler: Callable[[str], Callable[[], None]] = lambda phase: lambda: None  # noqa: E731
        if args.profile:
            profiler = lambda phase: spy(d, f"{args.profile}-{phase}.json")  # noqa: E731

        lat: list[float] = []
        for rate, per_write in (("1k", 10), ("20k", 200)):
            w = Writer(live, per_write, body, rx)
            time.sleep(3.0)  # the first sight of each code (its notices) is not the steady state
            done = profiler(f"follow{rate}")
            rows[f"following, {rate} lines/s (a write every 10 ms)"] = measure(tools, window)
            done()
            w.stop()
            if rate == "1k":  # then the latency under that load: a probe every 250 ms
                w = Writer(live, per_write, body, rx, probe_every=25)
                time.sleep(window)
                w.stop()
                lat = w.latencies()
        idle_rss = 0.0
        firsts = []
        for files in (1, 500):
            if files > 1:
                for k in range(files - 1):
                    (d.logs / f"quiet{k:03d}.jsonl").write_bytes(body[k])
                stop(sec)
                sec = start_sec(work, str(d.logs / "*.jsonl"))
                tools[1] = Tool("SEC", sec.pid)
                if swatch is not None:
                    stop(swatch)
                    swatch = None
                    tools = tools[:2]
            time.sleep(quiet)
            done = profiler(f"idle{files}")
            rows[f"idle, {files} file{'s' if files > 1 else ''}"] = measure(tools, window)
            done()
            if files == 1:
                idle_rss = rss_of(tools[0].pids())
            firsts.append(first_line(live, rx))
        stop(sec)
        stop(swatch)
        sec = swatch = None

        # burst: 1,000 new codes at once
        burst_s, burst_cpu, helper_cpu = burst(d, rx, tools[0], "burst")

        # memory per open incident
        per_incident = per_incident_kb(d, rx, incidents)
        d.stop()

        # start-up with 10,000 open incidents
        fresh_rss, read_rss, starts, loaded_rss = start_phase(rx)
    finally:
        stop(sec)
        stop(swatch)
        d.cleanup()
        rx.stop()
        shutil.rmtree(work, ignore_errors=True)

    notes.insert(0, start_note(fresh_rss, read_rss, loaded_rss))
    text = report(rows, lat, firsts, burst_s, burst_cpu, helper_cpu, idle_rss, per_incident, incidents, starts, notes)
    print(text)
    (OUT / "sidecar.md").write_text(text)


def spy(d: Daemon, out: str) -> Callable[[], None]:
    """py-spy record on the daemon and its helper until the returned function is called."""
    assert d.proc is not None
    exe = str(Path(sys.executable).parent / "py-spy")
    cmd = [exe, "record", "--pid", str(d.proc.pid), "-r", "1000", "--subprocesses", "--gil", "-f", "speedscope"]
    proc = subprocess.Popen([*cmd, "-o", out, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)

    def done() -> None:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)

    return done


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))] if s else float("nan")


def report(
    rows: dict[str, dict[str, tuple[float, float]]],
    lat: list[float],
    firsts: list[float],
    burst_s: float,
    burst_cpu: float,
    helper_cpu: float,
    idle_rss: float,
    per_incident: tuple[float, float],
    incidents: int,
    starts: list[float],
    notes: list[str],
) -> str:
    names = ["errord", "SEC", "swatch"]
    out = ["# errord as a sidecar (bench/sidecar.py)", ""]
    out += [
        "| situation | errord | SEC 2.9 | swatch | errord ÷ SEC |",
        "|---|---|---|---|---|",
    ]
    for name, got in rows.items():
        cells = []
        for tool in names:
            if tool in got:
                cpu, cs = got[tool]
                cells.append(f"{cpu:.2f}% of a core, {cs:.0f} ctx sw/s")
            else:
                cells.append("–")
        e, s = got["errord"][0], got["SEC"][0]
        cells.append(f"{e / s:.2f}× CPU" if s > 0 else "SEC used no CPU")
        out.append(fmt_row(name, cells))
    out.append(
        fmt_row(
            "a burst of 1,000 new codes to a local json:// target",
            [f"{1000 / burst_s:.0f} notices/s, {helper_cpu:.2f} ms helper CPU per notice", "–", "–", ""],
        )
    )
    med = statistics.median(starts)
    out.append(
        fmt_row(
            "start to READY=1, 10,000 open incidents",
            [f"median {med:.3f} s ({', '.join(f'{x:.2f}' for x in starts)})", "–", "–", ""],
        )
    )
    out += [
        "",
        f"- Latency at 1,000 lines/s (append → notice, {len(lat)} probes): p50 {pct(lat, 50) * 1000:.1f} ms, "
        f"p99 {pct(lat, 99) * 1000:.1f} ms, max {max(lat, default=float('nan')) * 1000:.1f} ms.",
        f"- The first line after ≥ 12 s of silence: {', '.join(f'{x * 1000:.0f} ms' for x in firsts)} "
        "(1 file, 500 files).",
        f"- Burst: 1,000 notices in {burst_s:.2f} s; CPU of daemon + helper {burst_cpu:.2f} s.",
        f"- Memory: daemon + helper idle {idle_rss:.1f} MB (VmRSS); per open incident, after reading "
        f"{incidents:,} silent new codes while running: {per_incident[0]:.2f} KB {SETTLE:.0f} s after the last "
        f"(the heap that ingest freed included), {per_incident[1]:.2f} KB {IDLE_WAIT:.0f} s after (idle: the "
        "daemon gave its freed heap back).",
        f"- Machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end.",
    ]
    out += [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
