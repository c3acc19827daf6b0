"""Where the bytes of an open incident go (issue 13's memory target), in one process.

    .venv/bin/python bench/memprofile.py                # 100,000 incidents
    .venv/bin/python bench/memprofile.py -n 20000 --top 25

The daemon's own parts, built as ``daemon.Daemon`` builds them (a real ``Tailer`` on a
file in a temp dir, ``Engine``, ``standard_policy``, ``Journal``, ``Batch``), read a file
of ``-n`` silent new codes (``workload.distinct_codes``, as ``bench/sidecar.py``'s memory
phase) with ``Batch.step`` until it is drained. Then, after a ``gc.collect()``:

* the Python heap that stayed (``tracemalloc``), per open incident, and the sites that
  allocated most of it (``--top``);
* the size of the engine's own structures per incident (``sys.getsizeof`` of one
  incident, its strings and floats, and the ``_active`` dict);
* the process's RSS growth per incident (VmRSS: glibc's kept free heap included, as the
  daemon's figure is; run with ``MALLOC_TRIM_THRESHOLD_``/``MALLOC_MMAP_THRESHOLD_`` as
  ``serve`` sets them to see the daemon's figure).

Nothing here asserts; it prints.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import tracemalloc
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests"))

from conftest import write_config  # noqa: E402
from errord.batch import Batch  # noqa: E402
from errord.engine import Engine  # noqa: E402
from errord.health import Health  # noqa: E402
from errord.policy.mute import MuteOracle  # noqa: E402
from errord.policy.pipeline import standard_policy  # noqa: E402
from errord.policy.route import Router  # noqa: E402
from errord.settings import Settings  # noqa: E402
from errord.sources.tail import Tailer  # noqa: E402
from errord.store.journal import Journal  # noqa: E402
from workload import distinct_codes  # noqa: E402


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def deep_size(inc: object) -> dict[str, int]:
    """Bytes of one incident: the object, and each field's value not shared with others
    (a str/float/tuple whose refcount says it is held by this incident alone, roughly)."""
    out = {"Incident object": sys.getsizeof(inc)}  # the GC header included
    for name in type(inc).__slots__:  # type: ignore[attr-defined]
        value = getattr(inc, name)
        # <= 4: the slot, ``value``, getattr's temporary, getrefcount's argument
        if isinstance(value, (str, float, tuple)) and sys.getrefcount(value) <= 4:
            out[name] = sys.getsizeof(value)
    return out


async def run(n: int, top: int, keep: bool, trim: bool) -> None:
    work = Path(tempfile.mkdtemp(prefix="memprofile-"))
    logs = work / "logs"
    logs.mkdir()
    cfg = write_config(
        work / "errord.toml",
        server_id="bench",
        state_dir=str(work / "state"),
        sources=[{"path": str(logs / "*.jsonl"), "start_at": "beginning", "app": "bench"}],
        limits={"max_open_incidents": 10_000_000},
    )
    config = Settings.load(cfg, environ={}).to_run()
    journal = Journal(config.state_dir)
    tailer = Tailer(config.sources, journal.positions(), first_start=True, scan_interval=0.05)
    engine = Engine(
        config,
        scope=config.scope,
        server_id=config.server_id,
        node_name=config.node_name,
        max_open_incidents=config.limits.max_open_incidents,
    )
    engine.mutes = MuteOracle.for_config(config)
    health = Health()
    health.started()
    batch = Batch(tailer, engine, standard_policy(Router()), journal, config, health=health)
    await tailer.open()
    # warm up: one incident, so imports and first-use caches are not counted per incident
    (logs / "warm.jsonl").write_bytes(b"".join(distinct_codes(1, prefix="warm")))
    while not engine.open_count():
        if batch.step() is None:
            await tailer.wait(0.05)
    with open(logs / "incidents.jsonl", "wb") as f:
        f.writelines(distinct_codes(n, prefix="mem"))
    gc.collect()
    if top >= 0:
        tracemalloc.start(max(1, 12 if top else 1))
    snap0 = tracemalloc.take_snapshot() if top > 0 else None
    heap0, _ = tracemalloc.get_traced_memory()
    rss0 = rss_kb()
    steps = 0
    while True:
        got = batch.step()
        if got is None:
            if engine.open_count() >= n + 1:
                break
            await tailer.wait(0.05)
            continue
        steps += 1
    gc.collect()
    heap1, peak = tracemalloc.get_traced_memory()
    rss1 = rss_kb()
    opened = engine.open_count() - 1
    print(f"{opened:,} open incidents read in {steps} batch steps")
    if top >= 0:
        print(f"Python heap kept: {(heap1 - heap0) / opened:.0f} B per incident (peak {peak / 2**20:.1f} MB)")
    print(f"RSS growth: {(rss1 - rss0) * 1024 / opened:.0f} B per incident ({(rss1 - rss0) / 1024:.1f} MB)")
    if trim:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
        rss2 = rss_kb()
        print(f"RSS growth after malloc_trim(0): {(rss2 - rss0) * 1024 / opened:.0f} B per incident")
        journal.release_memory()
        ctypes.CDLL(None).malloc_trim(0)
        rss3 = rss_kb()
        print(f"... and after SQLite's shrink_memory too: {(rss3 - rss0) * 1024 / opened:.0f} B per incident")
    # (not engine.active(): that makes every packed incident an object again)
    print(f"held as objects: {len(engine._active):,}; packed (engine_cold): {len(engine._cold):,}")
    if engine._active:
        inc = list(engine._active.values())[-1]
        parts = deep_size(inc)
        shown = ", ".join(f"{k} {v}" for k, v in parts.items())
        print(f"one incident object ({sum(parts.values())} B unshared):", shown)
    if engine._cold:
        key, data = list(engine._cold.items())[-1]
        print(f"one packed incident: bytes {sys.getsizeof(data)}, its code (the key) {sys.getsizeof(key)}")
    held = sys.getsizeof(engine._active) + sys.getsizeof(engine._cold)
    print(f"engine._active and _cold dicts: {held / opened:.0f} B per incident")
    if top and snap0 is not None:
        snap1 = tracemalloc.take_snapshot()
        stats = snap1.compare_to(snap0, "traceback")
        print(f"\ntop {top} allocation sites still held (bytes per incident):")
        for st in stats[:top]:
            if st.size_diff <= 0:
                continue
            frames = [f"{fr.filename.rsplit('/', 1)[-1]}:{fr.lineno}" for fr in reversed(st.traceback)][:5]
            print(f"  {st.size_diff / opened:7.1f} B  {st.count_diff / opened:5.2f} blocks  {' <- '.join(frames)}")
    await tailer.close()
    journal.close()
    if not keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=100_000, help="silent new codes to read (default 100,000)")
    ap.add_argument(
        "--top", type=int, default=15, help="allocation sites to list (0: none; -1: no tracemalloc, for RSS)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--trim", action="store_true", help="then malloc_trim(0): RSS without the kept free heap")
    args = ap.parse_args()
    asyncio.run(run(args.n, args.top, args.keep, args.trim))


if __name__ == "__main__":
    main()
