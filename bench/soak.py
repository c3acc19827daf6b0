"""Soak: errord under steady load with regular rotation; watch that nothing grows.

    .venv/bin/python bench/soak.py                      # 10 minutes, 3000 lines/s, rotate every 30 s
    .venv/bin/python bench/soak.py --minutes 2          # the short run
    .venv/bin/python bench/soak.py --minutes 10 --rate 5000 --every 10 --keep-dir

Not run in CI. It starts ``errord run`` in a temp dir with a local HTTP notify target
(tests/receiver.py), writes JSON lines as python-json-logger would (3 % with an
``error_code`` over 20 codes, some clears, per-line re-alert intervals), and rotates the
file every ``--every`` seconds, alternating rename + create (the writer reopens a little
later, as an app told to) and copytruncate (the writer pauses around the copy, so the
count stays exact); rotated files beyond three are deleted, as ``rotate 3`` would.

Every ``--interval`` seconds it prints: lines written, lines counted by errord (sum of
``occurrences``), how far the reader is behind (bytes), the daemon's RSS and open file
descriptors and threads, the notify helper's RSS (when there is one), the store's size,
notices pending / delivered, and the stored positions. At the end: SIGTERM, then checks
that every error line was counted once, every notice delivered once, and that RSS and fds
stayed flat (after a warm-up), and prints a verdict. Exit status 1 if a check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "daemon"))

from errord.store.runstate import read_run_state  # noqa: E402
from receiver import Receiver  # noqa: E402

CODES = [f"soak_{i:02d}" for i in range(20)]


class Writer(threading.Thread):
    """Appends lines at ``rate``; counts the error lines per code it wrote."""

    def __init__(self, path: Path, rate: float, seed: int) -> None:
        super().__init__(daemon=True, name="soak-writer")
        self.path, self.rate = path, rate
        self.rnd = random.Random(seed)
        self.lines = 0
        self.errors: dict[str, int] = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()  # held around each write; copytruncate takes it
        self.reopen_at: float | None = None
        self.t0 = 0.0

    def line(self, seq: int) -> bytes:
        r = self.rnd.random()
        rec: dict[str, Any] = {
            "asctime": time.strftime("%Y-%m-%d %H:%M:%S") + f",{int(time.time() * 1000) % 1000:03d}",
            "levelname": "INFO",
            "name": "app.worker",
            "message": f"handled request {seq}",
            "request_id": f"{self.rnd.getrandbits(64):016x}",
            "duration_ms": round(self.rnd.random() * 80, 3),
        }
        if r < 0.027:
            code = self.rnd.choice(CODES)
            rec.update(
                levelname="ERROR",
                error_code=code,
                message=f"{code} failed at {seq}",
                re_alert_time=self.rnd.choice(["60s", "2m", "PT5M"]),
            )
            self.errors[code] = self.errors.get(code, 0) + 1
        elif r < 0.030:
            rec.update(error_code_clear=self.rnd.choice(CODES), message="recovered")
        return json.dumps(rec).encode() + b"\n"

    def run(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.t0 = time.monotonic()
        batch = max(1, int(self.rate / 100))  # write in 10 ms slices
        while not self.stop.is_set():
            if self.reopen_at is not None and time.monotonic() >= self.reopen_at:
                self.reopen_at = None
                os.close(fd)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            data = b"".join(self.line(self.lines + i) for i in range(batch))
            with self.lock:
                os.write(fd, data)
            self.lines += batch
            delay = self.t0 + self.lines / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        os.close(fd)


def proc_status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, val = ln.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(val.split()[0])
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        pass
    return out


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def store(state: Path) -> dict[str, Any]:
    """Counted lines, positions and the outbox, in one read transaction."""
    db = sqlite3.connect(f"file:{state / 'errord.db'}?mode=ro", uri=True, isolation_level=None, timeout=5)
    try:
        db.execute("BEGIN")
        counted = db.execute("SELECT coalesce(sum(occurrences), 0) FROM incidents").fetchone()[0]
        per_code = dict(db.execute("SELECT code, sum(occurrences) FROM incidents GROUP BY code").fetchall())
        positions = db.execute('SELECT path, "offset", lines_read FROM positions ORDER BY path').fetchall()
        pending = db.execute("SELECT count(*) FROM deliveries WHERE delivered_at IS NULL").fetchone()[0]
        notices = db.execute("SELECT count(*) FROM notices").fetchone()[0]
        db.execute("COMMIT")
    finally:
        db.close()
    size = sum(p.stat().st_size for p in state.glob("errord.db*"))
    return {
        "counted": counted,
        "per_code": per_code,
        "positions": positions,
        "pending": pending,
        "notices": notices,
        "db_bytes": size,
    }


def rotate(logs: Path, writer: Writer, n: int, rnd: random.Random) -> str:
    live = logs / "app.jsonl"
    for old in sorted(logs.glob("app.jsonl.*"), key=lambda p: int(p.suffix[1:]), reverse=True):
        k = int(old.suffix[1:])
        if k >= 3:
            old.unlink()  # rotate 3
        else:
            old.rename(logs / f"app.jsonl.{k + 1}")
    if n % 2 == 0:
        live.rename(logs / "app.jsonl.1")
        live.touch()
        writer.reopen_at = time.monotonic() + rnd.uniform(0.0, 2.0)  # the app reopens a bit later
        return "rename+create"
    with writer.lock:  # copytruncate, with nothing written between the copy and the truncate
        shutil.copyfile(live, logs / "app.jsonl.1")
        os.truncate(live, 0)
    return "copytruncate"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=3000.0, help="lines per second")
    ap.add_argument("--every", type=float, default=30.0, help="seconds between rotations")
    ap.add_argument("--interval", type=float, default=15.0, help="seconds between samples")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep-dir", action="store_true", help="leave the temp dir for inspection")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="errord-soak-"))
    logs, state = tmp / "logs", tmp / "state"
    logs.mkdir()
    (logs / "app.jsonl").touch()
    rx = Receiver()
    cfg = tmp / "errord.toml"
    cfg.write_text(
        f'server_id = "soak"\nstate_dir = "{state}"\n'
        f'[[sources]]\npath = "{logs}/app.jsonl"\nstart_at = "beginning"\nrotate_wait = "5s"\napp = "soak"\n'
        f'[[notify]]\nurl = "{rx.url("/soak")}"\n'
    )
    cfg.chmod(0o600)
    with open(tmp / "daemon.log", "ab") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "errord", "run", "-c", str(cfg)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT / "daemon")},
        )
    end = time.monotonic() + 30
    while not read_run_state(state)["ready"]:
        if proc.poll() is not None or time.monotonic() > end:
            print((tmp / "daemon.log").read_text(), file=sys.stderr)
            return 1
        time.sleep(0.05)

    writer = Writer(logs / "app.jsonl", args.rate, args.seed)
    rnd = random.Random(args.seed)
    writer.start()
    t0 = time.monotonic()
    duration = args.minutes * 60
    next_rot, next_sample, rotations = t0 + args.every, t0, 0
    samples: list[dict[str, Any]] = []
    print(f"soak: {args.minutes:g} min at {args.rate:g} lines/s, rotation every {args.every:g} s, dir {tmp}")
    print(
        f"{'t':>5} {'written':>9} {'counted':>8} {'errors':>7} {'behind':>8} {'rss MB':>7} {'peak':>6} "
        f"{'fds':>4} {'thr':>4} {'helper':>7} {'db MB':>6} {'pend':>5} {'sent':>6}  positions"
    )
    while True:
        now = time.monotonic()
        if now >= t0 + duration:
            break
        if now >= next_rot:
            how = rotate(logs, writer, rotations, rnd)
            rotations += 1
            next_rot += args.every
            print(f"{now - t0:5.0f}  rotated ({how})")
        if now >= next_sample:
            next_sample += args.interval
            ps = proc_status(proc.pid)
            helper = sum(proc_status(c).get("VmRSS", 0) for c in children(proc.pid))
            st = store(state)
            live = logs / "app.jsonl"
            live_pos = next((o for p, o, _ in st["positions"] if p == str(live)), 0)
            behind = max(0, live.stat().st_size - live_pos)
            sample = {
                "t": now - t0,
                "written": writer.lines,
                "errors": sum(writer.errors.values()),
                "counted": st["counted"],
                "behind": behind,
                "rss": ps.get("VmRSS", 0),
                "peak": ps.get("VmHWM", 0),
                "fds": ps.get("fds", 0),
                "threads": ps.get("Threads", 0),
                "helper": helper,
                "db": st["db_bytes"],
                "pending": st["pending"],
                "sent": len(rx.delivered),
            }
            samples.append(sample)
            pos = ", ".join(f"{Path(p).name}@{o}" for p, o, _ in st["positions"])
            print(
                f"{sample['t']:5.0f} {sample['written']:9d} {sample['counted']:8d} {sample['errors']:7d} "
                f"{behind:8d} {sample['rss'] / 1024:7.1f} {sample['peak'] / 1024:6.1f} {sample['fds']:4d} "
                f"{sample['threads']:4d} {helper / 1024:7.1f} {st['db_bytes'] / 1e6:6.2f} "
                f"{st['pending']:5d} {sample['sent']:6d}  {pos}",
                flush=True,
            )
        time.sleep(0.05)

    writer.stop.set()
    writer.join(10)
    # let errord catch up, then stop it
    errors = sum(writer.errors.values())
    end = time.monotonic() + 60
    while time.monotonic() < end:
        st = store(state)
        if st["counted"] >= errors and st["pending"] == 0:
            break
        time.sleep(0.2)
    time.sleep(1.0)
    final_ps = proc_status(proc.pid)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(15)
    st = store(state)
    rx.stop()

    problems = []
    if code != 0:
        problems.append(f"exit status {code}")
    if st["per_code"] != writer.errors:
        diff = {
            c: (writer.errors.get(c, 0), st["per_code"].get(c, 0))
            for c in set(writer.errors) | set(st["per_code"])
            if writer.errors.get(c, 0) != st["per_code"].get(c, 0)
        }
        problems.append(f"counts differ (written, counted): {diff}")
    if st["pending"] or len(rx.delivered) != st["notices"]:
        problems.append(f"notices: {st['notices']} made, {len(rx.delivered)} delivered, {st['pending']} pending")
    warm = [s for s in samples if s["t"] >= min(60.0, duration / 4)] or samples
    rss = [s["rss"] for s in warm]
    fds = [s["fds"] for s in warm]
    rss_growth = (rss[-1] - min(rss)) / 1024 if rss else 0.0
    print(f"\nwritten {writer.lines} lines ({errors} with a code) in {duration:.0f} s; rotations {rotations}")
    print(
        f"counted {st['counted']}; notices made {st['notices']}, delivered {len(rx.delivered)}, pending {st['pending']}"
    )
    if rss:
        print(
            f"RSS after warm-up: min {min(rss) / 1024:.1f} MB, max {max(rss) / 1024:.1f} MB, "
            f"last {rss[-1] / 1024:.1f} MB (growth {rss_growth:+.1f} MB); peak {final_ps.get('VmHWM', 0) / 1024:.1f} MB"
        )
        print(f"open fds after warm-up: min {min(fds)}, max {max(fds)}; threads {final_ps.get('Threads')}")
    if rss_growth > 15:
        problems.append(f"RSS grew {rss_growth:.1f} MB after warm-up")
    if fds and max(fds) - min(fds) > 8:
        problems.append(f"open fds ranged {min(fds)}..{max(fds)}")
    if samples and samples[-1]["behind"] > args.rate * 100:
        problems.append(f"reader {samples[-1]['behind']} bytes behind at the end")
    print("verdict:", "OK — flat, nothing lost or doubled" if not problems else "; ".join(problems))
    if not args.keep_dir:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept {tmp}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
