"""Cost of ``Journal.commit``, the batch loop's one write (issue 12.5: the store split).

    .venv/bin/python bench/bench_journal.py [--batches 1000] [--mongo] [--dir /dev/shm]
    .venv/bin/python bench/bench_journal.py --tree /tmp/base/daemon   # another checkout, for A/B

Each batch is what a busy daemon commits: 200 changed incidents (from a pool of 2,000, so
the first batches insert and the rest update), the positions of 4 files and 5 notices
for 2 targets each. ``--mongo`` turns the MongoDB outbox on (every changed incident is
queued in the same transaction). The store is created in ``--dir`` (default ``/dev/shm``
when it exists: with ``synchronous=FULL`` a disk's fsync is most of a commit, and hides
what the code costs). Prints the wall and CPU time per commit; the objects are built
before the clock starts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=1000)
    ap.add_argument("--incidents", type=int, default=200, help="changed incidents per batch")
    ap.add_argument("--notices", type=int, default=5, help="notices per batch")
    ap.add_argument("--mongo", action="store_true", help="queue the incidents for MongoDB too")
    ap.add_argument("--dir", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None)
    ap.add_argument(
        "--tree",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "daemon",
        help="the daemon/ folder to import errord from (default: this checkout's)",
    )
    args = ap.parse_args()
    sys.path.insert(0, str(args.tree))
    from errord.model import Incident, Notice, NoticeType, Position
    from errord.store.journal import Journal

    pool = [
        Incident(
            code=f"code_{k}",
            message="m" * 80,
            start_time=1e9 + k,
            last_log_time=1e9 + k,
            server_id="srv",
            node_name="node",
            active=True,
            cleared_at=None,
            created_at=0.0,
            updated_at=0.0,
            occurrences=1,
            alerts_sent=1,
            last_alert_time=1e9 + k,
            app="app",
            incident_id=f"{k:032x}",
            notified=("a", "b"),
        )
        for k in range(10 * args.incidents)
    ]
    batches: list[tuple[list[Incident], list[Position], list[Notice]]] = []
    for b in range(args.batches):
        start = (b * args.incidents) % len(pool)
        incs = pool[start : start + args.incidents]
        poss = [
            Position(
                dev=1,
                ino=f,
                path=f"/var/log/app{f}.jsonl",
                offset=(b + 1) * 4096,
                fp_len=64,
                fp_hash="ab" * 8,
                lines_read=(b + 1) * 20,
                lines_skipped=0,
                source=0,
            )
            for f in range(4)
        ]
        notes = [
            Notice(
                NoticeType.FAILURE,
                f"code_{n}",
                f"🚨 code_{n} on srv/node",
                "body " * 40,
                f"{n:032x}",
                1e9 + b,
                tags=("ops",),
                targets=("a", "b"),
            )
            for n in range(args.notices)
        ]
        batches.append((incs, poss, notes))

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        j = Journal(Path(tmp) / "state")
        if args.mongo:
            j.mongo.mirror(True)
        walls: list[float] = []
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for incs, poss, notes in batches:
            t = time.perf_counter()
            j.commit(incs, poss, notes, now=2e9)
            walls.append(time.perf_counter() - t)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        j.close()
    n = len(batches)
    print(
        f"{args.tree}: {n} commits of {args.incidents} incidents + 4 positions + {args.notices} notices"
        f"{' + mongo queue' if args.mongo else ''}: {wall / n * 1e3:.3f} ms/commit wall"
        f" (median {statistics.median(walls) * 1e3:.3f}), {cpu / n * 1e3:.3f} ms/commit CPU"
    )


if __name__ == "__main__":
    main()
