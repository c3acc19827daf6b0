"""``errord replay`` with ``[limits]`` (CONTRACT §9): storm limits and grouping by event
time for one target (``--target notify.N``, default the first), a final digest of what is
still held at the end, the summary's SENT / HELD / DIGESTS per code, and with ``--json``
one JSON line per notice or digest on stdout and the summary on stderr."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import append, line

T = 1_768_400_000  # 2026-01-14T14:13:20Z


def _summary(text: str) -> dict[str, list[int]]:
    """code -> [lines, incidents, new, re-alert, resolved, notices, muted, sent, held, digests]."""
    lines = text.splitlines()
    start = next(i for i, t in enumerate(lines) if t.startswith("CODE "))
    rows = [t.split() for t in lines[start + 1 :]]
    return {r[0]: [int(n) for n in r[1:]] for r in rows if len(r) == 11 and all(n.isdigit() for n in r[1:])}


def test_replay_applies_the_limit_by_event_time_and_flushes_a_final_digest(make_errord, tmp_path: Path) -> None:
    e = make_errord(
        notify=[{"url": "json://127.0.0.1:9/a", "tags": ["ops"]}, {"url": "json://127.0.0.1:9/b", "tags": ["nobody"]}],
        codes={"only_b": {"tags": ["nobody"]}},
        limits={"notices": "2/1m"},
    )
    log = tmp_path / "night.jsonl"
    # 10 codes in one second: 2 sent, 8 held -> a digest at T+60; then x at T+300: free again
    append(log, *(line(f"c{i}", msg=f"boom {i}", timestamp=T + i / 10) for i in range(10)))
    append(log, line("only_b", timestamp=T + 1), line("x", timestamp=T + 300), line("y", timestamp=T + 300.5))
    append(log, line("z", timestamp=T + 301))  # held at the end: the final digest
    res = e.cli("replay", str(log), "--json")
    out = [json.loads(t) for t in res.stdout.splitlines()]
    assert [(o["title"].split()[1], o.get("digest", False)) for o in out] == [
        ("c0", False),
        ("c1", False),
        ("8", True),
        ("x", False),
        ("y", False),
        ("1", True),
    ]
    assert out[2]["title"] == "📦 8 notices held on test-host/n1"
    assert out[2]["time"] == "2026-01-14T14:14:20.000Z"  # T+60: when a send was free again
    assert out[2]["held"][0] == {"code": "c9", "type": "new", "count": 1, "latest_message": "boom 9"}
    assert [h["code"] for h in out[2]["held"]] == [f"c{i}" for i in range(9, 1, -1)]
    assert out[5]["held"] == [{"code": "z", "type": "new", "count": 1, "latest_message": "m"}]
    s = _summary(res.stderr)  # the summary went to stderr
    assert s["c0"][-3:] == [1, 0, 0] and s["c5"][-3:] == [0, 1, 1] and s["z"][-3:] == [0, 1, 1]
    assert s["only_b"][5:] == [0, 0, 0, 0, 0]  # notify.0's tags do not take it
    # --target notify.1 (tagged "nobody") takes only_b too: held with the rest
    res = e.cli("replay", str(log), "--target", "notify.1", "--summary")
    s = _summary(res.stdout)
    assert s["only_b"][-3:] == [0, 1, 1] and s["TOTAL"][-3:] == [4, 10, 10]


def test_replay_target_must_exist(make_errord, tmp_path: Path) -> None:
    e = make_errord(notify=[{"url": "json://127.0.0.1:9/a"}])
    log = tmp_path / "x.jsonl"
    append(log, line("a", timestamp=T))
    res = e.cli("replay", str(log), "--target", "notify.3", check=False)
    assert res.returncode != 0 and "notify.3" in res.stderr
    res = e.cli("replay", str(log), "--target", "webhook.0", check=False)
    assert res.returncode == 2 and "expected notify.N" in res.stderr
