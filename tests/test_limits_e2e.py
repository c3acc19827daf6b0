"""End to end through ``errord run``: the storm limit and group_wait of CONTRACT §9 against
a local ``json://`` receiver — a 100-code burst against ``5/5s``, a kill -9 while notices
are held, and group_wait coalescing."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from conftest import append, line, wait_until
from receiver import Receiver
from test_metrics import metrics_base, scrape, value

pytestmark = pytest.mark.slow

_HELD = re.compile(r"📦 (\d+) notices? held on test-host/n1")


def _codes_in(bodies: list[dict[str, str]]) -> list[str]:
    """Every code the messages name: a single notice's title's second word, a digest's body lines."""
    out: list[str] = []
    for b in bodies:
        if _HELD.match(b["title"]):
            for ln in b["message"].splitlines():
                if ln.startswith("… and "):
                    out += ln.split(": ", 1)[1].split(", ")
                elif ln.startswith("c"):
                    out.append(ln.split(":", 1)[0])
        else:
            out.append(b["title"].split()[1])
    return out


def test_a_100_code_burst_against_5_per_5s_is_5_singles_and_a_digest_naming_the_rest(
    make_errord, receiver: Receiver, tmp_path: Path
) -> None:
    """The window is 5 s, not the README's 10 s: the same rule (test_limit.py runs 5/10s in
    event time), a shorter wait."""
    receiver.start()
    e = make_errord(notify=[{"url": receiver.url("/a")}], limits={"notices": "5/5s"}, metrics={"listen": "127.0.0.1:0"})
    e.start()
    base = metrics_base(e)
    t0 = time.monotonic()
    append(tmp_path / "logs" / "app.jsonl", *(line(f"c{i:03d}", msg=f"boom {i}") for i in range(100)))
    receiver.wait_for(5, timeout=30)
    wait_until(lambda: e.status()["held_notices"] == 95, 10, lambda: str(e.status()))
    assert value(scrape(base), "errord_notices_held") == 95
    got = receiver.wait_for(6, timeout=45)
    bodies = [r.body for r in got]
    singles = [b for b in bodies if not _HELD.match(b["title"])]
    digests = [b for b in bodies if _HELD.match(b["title"])]
    print("burst:", [(round(r.at - t0, 2), r.body["title"][:40]) for r in got])
    assert len(singles) == 5
    assert len(digests) == 1
    assert _HELD.match(digests[0]["title"]).group(1) == "95"  # type: ignore[union-attr]
    assert digests[0]["type"] == "failure"
    # at most 30 codes listed (most recent first), then "… and 65 more: names"
    assert digests[0]["message"].splitlines()[0].startswith("c099: 1 new — boom 99")
    assert "… and 65 more: " in digests[0]["message"]
    assert sorted(_codes_in(bodies)) == [f"c{i:03d}" for i in range(100)]
    assert got[5].at - got[0].at >= 4.0  # the digest waited for the window (less 1 s for delivery)
    wait_until(lambda: e.status()["pending_notices"] == 0, 10, lambda: str(e.status()))  # marked just after
    after = scrape(base)
    assert value(after, "errord_notices_held") == 0
    assert value(after, "errord_digests_sent_total") == 1 and value(after, "errord_notices_digested_total") == 95
    e.stop()


def test_held_notices_survive_kill_9_and_go_out_once_as_one_digest(
    make_errord, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.start()
    e = make_errord(notify=[{"url": receiver.url("/a")}], limits={"notices": "2/5s"})
    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    append(log, *(line(f"c{i:03d}", msg=f"boom {i}") for i in range(20)))
    receiver.wait_for(2, timeout=30)
    e.wait_log("holding the rest for a digest")
    assert e.status()["pending_notices"] == e.status()["held_notices"] == 18  # held ones count as pending
    e.kill()
    # the resolve of a digested... not yet digested, but held, incident: made while
    # holding, so it joins the same digest (its incident's target is the one it went to)
    append(log, line(clear="c010", msg="back"))
    e.start()
    got = receiver.wait_for(3, timeout=30)
    digest = got[2].body
    assert _HELD.match(digest["title"]).group(1) == "19", digest  # type: ignore[union-attr]
    assert "c010: 1 new, 1 resolved — " in digest["message"]
    assert sorted(set(_codes_in([r.body for r in got]))) == [f"c{i:03d}" for i in range(20)]
    assert sorted(_codes_in([got[0].body, got[1].body])) == ["c000", "c001"]
    wait_until(lambda: e.status()["pending_notices"] == 0, 10, lambda: str(e.status()))
    time.sleep(1.0)  # a doubled send would be on its way by now
    assert len(receiver.delivered) == 3
    e.stop()


def test_group_wait_sends_notices_made_close_together_as_one_message_and_a_lone_one_as_it_is(
    make_errord, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.start()
    e = make_errord(notify=[{"url": receiver.url("/a")}], limits={"group_wait": "2s"})
    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    t0 = time.monotonic()
    append(log, line("g1", msg="first"), line("g2", msg="second"))
    time.sleep(0.5)  # still within group_wait of the first: joins the group
    append(log, line("g3", msg="third"))
    got = receiver.wait_for(1, timeout=30)
    assert got[0].at - t0 >= 1.9
    title, body = got[0].body["title"], got[0].body["message"]
    assert title.startswith("🔔 3 notices on test-host/n1: g1, g2, g3"), title
    assert "g1 failing on test-host/n1" in body and "third" in body
    receiver.clear()
    append(log, line(clear="g2", msg="back"))
    got = receiver.wait_for(1, timeout=30)
    assert got[0].body["title"] == "✅ g2 resolved on test-host/n1"  # alone: as it is
    e.stop()
