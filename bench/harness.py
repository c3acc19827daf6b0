"""The daemon under test: ``errord run`` in a temp dir, a local HTTP target, RSS polling.

Used by ``bench/run.py``. Nothing here asserts on timings; it only measures.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from receiver import Receiver, Request  # noqa: E402  (tests/receiver.py: one copy of it)

__all__ = ["ROOT", "BenchReceiver", "Daemon", "RssMonitor"]


class BenchReceiver(Receiver):
    """The test receiver, plus: wait for the notice whose title names a given code."""

    def __init__(self, *, keep_alive: bool = True) -> None:
        self._by_code: dict[str, Request] = {}
        self._want: set[str] = set()
        super().__init__(keep_alive=keep_alive)

    def _record(self, req: Request) -> None:
        title = req.body.get("title", "") if isinstance(req.body, dict) else ""
        with self._cond:
            # titles look like "🔴 CODE failing on host": the code is the second word
            words = title.split()
            if len(words) > 1 and words[1] in self._want:
                self._by_code[words[1]] = req
            self.received.append(req)
            self._cond.notify_all()

    def expect(self, *codes: str) -> None:
        """Register codes to wait for (before the lines that raise them are written)."""
        with self._cond:
            self._want.update(codes)

    def wait_codes(self, codes: list[str], timeout: float) -> list[float]:
        """The arrival times (``time.monotonic``) of the notices for ``codes``."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                missing = [c for c in codes if c not in self._by_code]
                if not missing:
                    return [self._by_code[c].at for c in codes]
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no notice for {missing[:3]} ({len(missing)} missing) after {timeout}s")
                self._cond.wait(min(left, 0.5))

    def reset(self) -> None:
        with self._cond:
            self.received.clear()
            self._by_code.clear()
            self._want.clear()


class RssMonitor:
    """Polls ``/proc`` for the peak RSS of a process and every process it starts.

    Each process image is kept apart, by pid and command line (``errord run`` execs the
    daemon image under the same pid: the image before the exec is another one), with its
    ``VmHWM`` (the kernel's own per-process peak). ``steady()`` reads the tree's VmRSS now
    and marks the images alive then as the long-lived ones (the daemon and its notify
    helper); the others came and went (the forked config check of ``errord run``, which
    imports pydantic, ~33 MB for a fraction of a second; a reload's check; the image
    before the exec). ``peak_mb()`` sums the long-lived ones, ``transient_mb()`` is the
    largest of the others: a process seen for one poll (20 ms) is counted.
    """

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.hwm: dict[tuple[int, str], int] = {}  # (pid, name) -> VmHWM kB
        self.long_lived: set[tuple[int, str]] = set()  # those alive at a steady() reading
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval)

    def poll(self) -> list[tuple[int, str]]:
        """One look at the tree; the images seen."""
        seen = []
        with self._lock:
            for pid in _tree(self.pid):
                name = _cmdline(pid)
                kb = _status_kb(pid, "VmHWM")
                if kb is not None:
                    key = (pid, name)
                    self.hwm[key] = max(self.hwm.get(key, 0), kb)
                    seen.append(key)
        return seen

    def steady(self) -> float:
        """VmRSS (MB) of the tree now; its images are the long-lived ones."""
        seen = self.poll()
        self.long_lived.update(seen)
        return sum(_status_kb(pid, "VmRSS") or 0 for pid, _ in seen) / 1024

    def peak_mb(self) -> float:
        """The sum of the long-lived images' peaks (all images' before any ``steady()``)."""
        keys = self.long_lived or set(self.hwm)
        return sum(kb for k, kb in self.hwm.items() if k in keys) / 1024

    def transient_mb(self) -> float:
        """The largest peak of an image that was not alive at a ``steady()`` reading."""
        return max((kb for k, kb in self.hwm.items() if k not in self.long_lived), default=0) / 1024

    def detail(self) -> str:
        def label(key: tuple[int, str]) -> str:
            return key[1] + ("" if key in self.long_lived or not self.long_lived else ", short-lived")

        return ", ".join(f"{label(k)}: {kb / 1024:.1f} MB" for k, kb in self.hwm.items())

    def stop(self) -> None:
        self.poll()
        self._stop.set()
        self._thread.join(2)


def compile_errord() -> None:
    """Compile the errord the daemon imports (``PYTHONPATH`` included) into its
    ``__pycache__``, as ``pip install`` does for an installed errord: with
    ``PYTHONDONTWRITEBYTECODE=1`` and an editable install, every start would compile the
    modules changed since the last compile from source (~0.3 s of CPU for all of them),
    which is not what a deployed errord pays."""
    import compileall

    where = subprocess.run(
        [sys.executable, "-c", "import errord, os; print(os.path.dirname(errord.__file__))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    compileall.compile_dir(where, quiet=1)


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


def _status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            parts = f.read().split(b"\0")
    except OSError:
        return str(pid)
    text = " ".join(p.decode(errors="replace") for p in parts if p)
    for marker, name in (
        ("errord.serve", "daemon"),
        ("errord.sinks.helperproc", "notify helper"),
        ("errord run", "errord run before its exec / config check"),
    ):
        if marker in text:
            return f"{name} ({pid})"
    return f"{os.path.basename(parts[0].decode(errors='replace')) if parts else pid} ({pid})"


class Daemon:
    """``errord run`` with a fresh config and state in a temp dir, notifying ``rx``."""

    def __init__(
        self,
        rx: Receiver,
        *,
        workdir: Path | None = None,
        extra_env: dict[str, str] | None = None,
        profile: str | None = None,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="errord-bench-", dir=workdir))
        self.logs = self.dir / "logs"
        self.prep = self.dir / "prep"  # same file system as logs: rename is atomic
        self.logs.mkdir()
        self.prep.mkdir()
        self.config = self.dir / "errord.toml"
        self.config.write_text(
            'server_id = "bench"\n'
            f'state_dir = "{self.dir / "state"}"\n'
            "[[sources]]\n"
            f'path = "{self.logs}/*.jsonl"\n'
            'start_at = "beginning"\n'
            'rotate_wait = "10s"\n'
            'app = "bench"\n'
            "[defaults]\n"
            're_alert_time = "1h"\n'
            # the benches open 10,000 (run.py, startup.py) and 100,000 (sidecar.py's memory
            # phase) incidents and then wait for a sentinel's notice: above the default cap
            # (10,000) the sentinel would only be counted in errord_overflow (CONTRACT §9)
            "[limits]\n"
            "max_open_incidents = 1000000\n"
            "[[notify]]\n"
            f'url = "{rx.url("/")}"\n'
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ERRORD_") and k != "NOTIFY_SOCKET"}
        self.env.update(extra_env or {})
        self.profile = profile
        self.proc: subprocess.Popen[bytes] | None = None
        self.profiler: subprocess.Popen[bytes] | None = None
        self.rss: RssMonitor | None = None
        self.log_path = self.dir / "daemon.log"
        self.read_done = float("nan")  # set by bench/run.py's ingest()
        self.cpu_split = (float("nan"),) * 3  # CPU s of daemon, helper, bench process: ditto
        self.settle = 1.0  # seconds to let a fresh daemon settle before it is measured

    def start(self, timeout: float = 30.0) -> None:
        cmd = [sys.executable, "-m", "errord", "run", "-c", str(self.config)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.rss = RssMonitor(self.proc.pid)
        end = time.monotonic() + timeout
        mark = "errord started"
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"errord exited {self.proc.returncode}:\n{self.output()[-3000:]}")
            if self.output().count(mark) > self._starts:
                self._starts += 1
                if self.profile:
                    self._attach_profiler(self.profile)
                time.sleep(self.settle)  # "the running daemon": its helper has warmed up too
                return
            time.sleep(0.02)
        raise RuntimeError(f"errord did not start within {timeout}s:\n{self.output()[-3000:]}")

    _starts = 0

    def _attach_profiler(self, out: str) -> None:
        """py-spy (installed by hand, not a dependency) on the daemon and its children,
        until the daemon exits; ``out`` ending in .json is speedscope, else an SVG.
        ``BENCH_PROFILE_IDLE=1`` samples sleeping threads too (where the wall time goes)."""
        assert self.proc is not None
        fmt = "speedscope" if out.endswith(".json") else "flamegraph"
        self.profiler = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(self.proc.pid),
                "-r",
                "500",
                "--subprocesses",
                "-f",
                fmt,
                "-o",
                out,
                "--nonblocking",
                *(["--idle"] if os.environ.get("BENCH_PROFILE_IDLE") else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)

    def stop(self, timeout: float = 15.0) -> float:
        """SIGTERM; returns the seconds it took to exit."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        took = time.monotonic() - t0
        if self.rss is not None:
            self.rss.stop()
        if self.profiler is not None:
            self.profiler.wait(60)
        return took

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cleanup()


@contextlib.contextmanager
def started_until_ready(d: Daemon, timeout: float) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    """Start ``errord run`` for ``d`` with a NOTIFY_SOCKET and wait for ``READY=1``: yields
    the process and the seconds it took; SIGTERM and wait when the block ends."""
    sock_path = d.dir / "notify.sock"
    with contextlib.suppress(FileNotFoundError):
        sock_path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(timeout)
    env = {**d.env, "NOTIFY_SOCKET": str(sock_path)}
    cmd = [sys.executable, "-m", "errord", "run", "-c", str(d.config)]
    with open(d.log_path, "ab") as log:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        while b"READY=1" not in sock.recv(4096).split(b"\n"):
            pass
        yield proc, time.monotonic() - t0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        sock.close()
