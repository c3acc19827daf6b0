"""What muting (CONTRACT §8) costs the engine per error line (issue 14).

    .venv/bin/python bench/bench_mute.py [--lines 300000]

A repeat of an incident that has alerted never asks the mute oracle (it only asks when a
notice would be made), so silences, inhibitions and mute times cost it nothing. An
incident whose every notice so far was muted asks on each of its lines (may this one
announce it?): that is the price of a muted flood. Prints ns per line for each case;
the events are built before the clock starts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))

from errord.engine import Engine
from errord.model import LogEvent
from errord.policy.mute import MuteOracle
from errord.policy.mutetime import MuteWindow
from errord.policy.silence import Silence

T0 = 1_768_400_000.0


class _Policy:
    def re_alert_for(self, code: str) -> float:
        return 3600.0

    def notify_for(self, code: str) -> bool:
        return True


def _silence(sid: str, pattern: str) -> Silence:
    return Silence(id=sid, pattern=pattern, app="*", starts_at=0, ends_at=T0 + 1e6, until_resolved=False)


def per_line(mutes: MuteOracle | None, lines: int, *, active: int = 0) -> float:
    """ns per line of one code fed ``lines`` times (``active`` other incidents open), the
    best of three runs (the machine is shared)."""
    return min(_run(mutes, lines, active) for _ in range(3))


def _run(mutes: MuteOracle | None, lines: int, active: int) -> float:
    engine = Engine(_Policy())
    engine.mutes = mutes
    engine.begin(T0)
    for i in range(active):
        engine.feed(LogEvent(code=f"other_{i}", clear=None, message="m", time=T0))
    events = [LogEvent(code="E", clear=None, message="m", time=T0 + i * 0.001) for i in range(lines)]
    start = time.perf_counter()
    for ev in events:
        engine.feed_quiet(ev)
    return (time.perf_counter() - start) / lines * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=300_000)
    n = ap.parse_args().lines
    others = [_silence(f"s{i}", f"X{i}*") for i in range(5)]
    always = MuteWindow.parse("always", [], [], [], [], "Europe/Berlin")
    cases = [
        ("no oracle (before issue 14), alerted incident", None, 0),
        ("empty oracle, alerted incident", MuteOracle(), 0),
        ("5 silences of other codes, alerted incident", MuteOracle(silences=others), 0),
        ("muted by a silence (6th of 6)", MuteOracle(silences=[*others, _silence("e", "E")]), 0),
        ("muted by a mute time", MuteOracle(mute_times=[always]), 0),
        ("muted by inhibition, 1,000 other incidents open", MuteOracle(inhibited_by=lambda c: ("other_999",)), 1000),
    ]
    print(f"{'case':<52} {'ns/line':>8}")
    for name, mutes, active in cases:
        print(f"{name:<52} {per_line(mutes, n, active=active):>8.0f}")


if __name__ == "__main__":
    main()
