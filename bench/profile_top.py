"""Top functions of a py-spy speedscope profile (``bench/run.py --profile`` writes one).

    .venv/bin/python bench/profile_top.py PROFILE.json [--top 25] [--thread SUBSTR] [--lines]

Prints, per profile (py-spy writes one per thread and process), the functions with the
most samples on the stack (inclusive) and at the top of the stack (self).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def summarize(path: Path, top: int, thread: str | None, lines: bool = False) -> str:
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    out: list[str] = []
    for prof in data["profiles"]:
        name = prof.get("name", "?")
        if thread and thread not in name:
            continue
        samples, weights = prof["samples"], prof["weights"]
        total = sum(weights)
        if len(samples) < 5:
            continue
        incl: Counter[str] = Counter()
        own: Counter[str] = Counter()
        for stack, w in zip(samples, weights, strict=True):
            labels = [_label(frames[f], lines) for f in stack]
            for label in set(labels):
                incl[label] += w
            if labels:
                own[labels[-1]] += w
        out.append(f"\n== {name}: {len(samples)} samples, {total:.2f} s")
        out.append(f"{'self%':>6} {'incl%':>6}  function (file:line)")
        for label, w in own.most_common(top):
            out.append(f"{100 * w / total:6.1f} {100 * incl[label] / total:6.1f}  {label}")
        out.append("  -- inclusive --")
        for label, w in incl.most_common(top):
            out.append(f"{100 * own[label] / total:6.1f} {100 * w / total:6.1f}  {label}")
    return "\n".join(out)


def _label(fr: dict[str, object], lines: bool) -> str:
    file = str(fr.get("file", ""))
    short = "/".join(file.split("/")[-2:])
    if not file:
        return str(fr.get("name"))[:60]
    return f"{fr.get('name')} ({short}:{fr.get('line', '')})" if lines else f"{fr.get('name')} ({short})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile", type=Path)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--thread")
    ap.add_argument("--lines", action="store_true", help="per source line, not per function")
    args = ap.parse_args()
    print(summarize(args.profile, args.top, args.thread, args.lines))


if __name__ == "__main__":
    main()
