"""End to end through ``errord run``: who hears of an incident (CONTRACT §2, "a resolve goes
to those who were alerted", "an incident nobody has heard of announces itself"), with two
local receivers as two tagged notify targets and SIGHUP reloads in between."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Errord, append, line, write_config
from receiver import Receiver

pytestmark = pytest.mark.slow


def configure(e: Errord, tmp_path: Path, **cfg: Any) -> None:
    """Rewrite the config file with the factory's defaults plus ``cfg``."""
    cfg.setdefault("server_id", "test-host")
    cfg.setdefault("node_name", "n1")
    cfg.setdefault("state_dir", str(tmp_path / "state"))
    cfg.setdefault(
        "sources",
        [{"path": str(tmp_path / "logs" / "*.jsonl"), "start_at": "beginning", "rotate_wait": "1s", "app": "demo"}],
    )
    write_config(e.config, **cfg)


def reload(e: Errord, timeout: float = 20) -> None:
    """SIGHUP, then wait until the daemon says it has the new config."""
    assert e.proc is not None
    seen = e.output().count("config reloaded")
    e.proc.send_signal(signal.SIGHUP)
    end = time.monotonic() + timeout
    while e.output().count("config reloaded") == seen:
        assert time.monotonic() < end, f"no reload after {timeout}s:\n{e.output()}"
        assert "reload refused" not in e.output(), e.output()
        time.sleep(0.05)


def kinds(rx: Receiver) -> list[tuple[str, str]]:
    """(type, code) of each notice the receiver accepted; the code is the title's second word."""
    return [(r.body["type"], r.body["title"].split()[1]) for r in rx.delivered]


@pytest.fixture
def rx_a() -> Any:
    with Receiver() as rx:
        yield rx


@pytest.fixture
def rx_b() -> Any:
    with Receiver() as rx:
        yield rx


def test_silent_incident_resolves_silently_and_a_retagged_code_resolves_to_whom_it_alerted(
    make_errord, rx_a: Receiver, rx_b: Receiver, tmp_path: Path
) -> None:
    targets = [{"url": rx_a.url("/a"), "tags": ["ta"]}, {"url": rx_b.url("/b"), "tags": ["tb"]}]
    e = make_errord(notify=targets, codes={"moved": {"tags": ["ta"]}})
    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    # quiet: raised and cleared with notification: false on its raise only (the bug: the
    # clear sent "resolved" for an alert nobody saw); moved: alerted to A only (tag ta)
    append(
        log,
        line("quiet", msg="silent", notification=False),
        line("quiet", notification=False),
        line(clear="quiet", msg="quiet back"),
        line("moved", msg="moved down"),
    )
    rx_a.wait_for(1, timeout=15)
    e.wait_caught_up()
    # re-tag `moved` to B (SIGHUP): the incident is open, alerted to A only
    configure(e, tmp_path, notify=targets, codes={"moved": {"tags": ["tb"]}})
    reload(e)
    append(log, line("moved", msg="still down"), line(clear="moved", msg="moved back"))
    got = rx_a.wait_for(2, timeout=15)
    assert got[1].body["type"] == "success" and "moved back" in got[1].body["message"]
    # a new incident of `moved` now goes by its new tags: to B
    append(log, line("moved", msg="down again"))
    rx_b.wait_for(1, timeout=15)
    e.wait_caught_up()
    assert e.stop() == 0  # drains: nothing else was on its way
    assert kinds(rx_a) == [("failure", "moved"), ("success", "moved")]
    assert kinds(rx_b) == [("failure", "moved")]
    history = {(h["code"], h["active"]): h for h in e.json("history")}
    quiet = history[("quiet", False)]  # recorded as usual
    assert (quiet["occurrences"], quiet["alerts_sent"], quiet["cleared_at"] is not None) == (2, 0, True)
    assert "notified" not in quiet  # private: not in the public record
    assert history[("moved", True)]["alerts_sent"] == 1


def test_switch_over_from_silent_announces_what_is_open_then_resolves_it(
    make_errord, rx_a: Receiver, tmp_path: Path
) -> None:
    """The README's migration: deploy silent (`notify = false`), then `notify = true` and
    reload. An incident opened while silent announces itself with its next line (one
    failure, "failing since", before its re-alert interval), and its clear resolves it;
    one that gets no line before its clear was never heard of and resolves silently."""
    t0 = time.time() - 600  # ten minutes ago: the lines' event times
    e = make_errord(notify=[{"url": rx_a.url("/a")}], defaults={"notify": False, "re_alert_time": "1h"})
    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    append(
        log,
        line("mig", msg="first while silent", timestamp=t0),
        *[line("mig", msg=f"silent {i}", timestamp=t0 + 10 + i) for i in range(3)],
        line("gone", msg="silent too", timestamp=t0),
    )
    e.wait_caught_up()
    configure(e, tmp_path, notify=[{"url": rx_a.url("/a")}], defaults={"notify": True, "re_alert_time": "1h"})
    reload(e)
    append(
        log,
        line("mig", msg="after switch-over", timestamp=t0 + 300),
        line("mig", msg="suppressed", timestamp=t0 + 301),
        line(clear="gone", timestamp=t0 + 302),
    )
    (announce,) = rx_a.wait_for(1, timeout=15)
    assert announce.body["type"] == "failure"
    assert announce.body["title"] == "🔴 mig failing on test-host/n1"
    assert (
        "Failing since " in announce.body["message"]
        and "(5m), 5 occurrences so far, not announced before." in announce.body["message"]
    ), announce.body["message"]
    assert "Latest: after switch-over" in announce.body["message"]
    e.wait_caught_up()
    (mig,) = [h for h in e.json("active") if h["code"] == "mig"]
    assert (mig["occurrences"], mig["alerts_sent"]) == (6, 1)
    assert mig["last_alert_time"].startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(t0 + 300)))
    append(log, line(clear="mig", msg="mig back", timestamp=t0 + 400))
    got = rx_a.wait_for(2, timeout=15)
    assert got[1].body["type"] == "success" and "mig back" in got[1].body["message"]
    e.wait_caught_up()
    assert e.stop() == 0
    assert kinds(rx_a) == [("failure", "mig"), ("success", "mig")]  # nothing for "gone"


def test_a_target_removed_by_a_reload_is_not_sent_the_resolve(
    make_errord, rx_a: Receiver, rx_b: Receiver, tmp_path: Path
) -> None:
    """Review of issue 10.1: open incidents alerted A and B (one still pending for B); a
    reload removes B. Their resolves go to A alone, B is never tried, nothing crashes,
    nothing stays pending, and the log says once, by B's redacted URL (it named a hash per
    resolve), which open incidents no longer resolve to it."""
    both = [{"url": rx_a.url("/a")}, {"url": rx_b.url("/b")}]
    e = make_errord(notify=both)
    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    append(log, line("dropped", msg="down"), line("other", msg="down too"))
    rx_a.wait_for(2, timeout=15)
    rx_b.wait_for(2, timeout=15)
    rx_b.status = 503
    append(log, line("third", msg="down as well"))
    rx_b.wait_for(1, timeout=15, delivered=False)
    rx_a.wait_for(3, timeout=15)
    e.wait_caught_up()
    configure(e, tmp_path, notify=both[:1])
    reload(e)
    append(log, line(clear="dropped", msg="back"), line(clear="other", msg="back too"), line(clear="third"))
    got = rx_a.wait_for(6, timeout=15)
    e.wait_caught_up()
    assert e.json("status")["pending_notices"] == 0
    assert e.stop() == 0
    assert [r.body["type"] for r in got] == ["failure"] * 3 + ["success"] * 3
    assert kinds(rx_b) == [("failure", "dropped"), ("failure", "other")]  # never the resolves
    out = e.output()
    assert "Traceback" not in out and " ERROR " not in out, out
    b = rx_b.url("/b").rsplit("/", 1)[0] + "/…"  # json://127.0.0.1:PORT/…: the redacted URL
    assert (
        f"notify target {b} is no longer configured: the 3 open incident(s) it was alerted of (dropped, other, third)"
        " resolve to the targets still configured only"
    ) in out, out
    assert "does not get the resolve" not in out  # forgotten at the reload, not met at each resolve
