"""End to end through ``errord run``: silences, acks, manual resolves, inhibition and mute
times (CONTRACT §8), with a local receiver as the notify target.

What "nothing was sent" means here, without timed asserts: notices reach a target in
order, so a later notice that arrives (another code's, or the resolve) shows that a muted
one before it was never queued. The hand-over latency of each command (CLI -> the running
daemon's loop -> outcome) is printed (``-s``), the figure the issue asks for.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import conftest
from conftest import Errord, append, line
from errord.status import open_readonly
from receiver import Receiver

pytestmark = pytest.mark.slow

T0 = time.time() - 3600  # event times an hour ago: re-alerts follow the lines' times


def kinds(rx: Receiver) -> list[tuple[str, str]]:
    """(type, code) of each notice accepted; the code is the title's second word."""
    return [(r.body["type"], r.body["title"].split()[1]) for r in rx.delivered]


def timed(e: Errord, *args: str, check: bool = True) -> Any:
    """Run a control command; print how long the hand-over took."""
    start = time.monotonic()
    res = e.cli(*args, check=check)
    print(f"\n{args[0]}: {time.monotonic() - start:.2f} s from the command to its outcome")
    return res


def history(e: Errord) -> dict[tuple[str, bool], dict[str, Any]]:
    return {(h["code"], h["active"]): h for h in e.json("history")}


def wait_until(what: str, check: Any, e: Errord, timeout: float = 30) -> None:
    conftest.wait_until(check, max(timeout, 30), lambda: f"{what}:\n{e.output()}")


def active_silences(e: Errord) -> set[str]:
    """The ids of the silences ``errord silences`` lists, read in this process (for waiting)."""
    journal = open_readonly(e.run_config())
    if journal is None:
        return set()
    with journal:
        open_ids = {i.incident_id for i in journal.active()}
        now = time.time()
        return {s.id for s in journal.control.silences() if s.active(now, open_ids)}


@pytest.fixture
def rx() -> Any:
    with Receiver() as r:
        yield r


def test_silence_while_running_mutes_its_code_only_and_unsilence_lets_the_next_realert_through(
    make_errord, rx: Receiver, tmp_path: Path
) -> None:
    e = make_errord(notify=[{"url": rx.url("/a")}], defaults={"re_alert_time": "1m"})
    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    append(log, line("db_down", timestamp=T0), line("web_err", timestamp=T0))
    rx.wait_for(2, timeout=15)
    sid = timed(e, "silence", "db_*", "--for", "1h", "--reason", "known", "--by", "me").stdout.strip()
    # both re-alerts are due; db_down's is muted, web_err's still goes out
    append(log, line("db_down", timestamp=T0 + 120), line("web_err", timestamp=T0 + 120))
    rx.wait_for(3, timeout=15)
    e.wait_caught_up()
    assert kinds(rx) == [("failure", "db_down"), ("failure", "web_err"), ("warning", "web_err")]
    db = history(e)[("db_down", True)]
    assert (db["alerts_sent"], db["notices_muted"]) == (1, 1)
    (shown,) = e.json("silences")
    assert shown["id"] == sid and shown["pattern"] == "db_*" and shown["active"] and shown["muted"] == 1
    assert (shown["reason"], shown["by"], shown["until_resolved"], shown["ends_at"] is not None) == (
        "known",
        "me",
        False,
        True,
    )
    assert e.json("status")["silences_active"] == 1
    timed(e, "unsilence", sid)
    assert e.json("silences") == [] and e.json("status")["silences_active"] == 0
    append(log, line("db_down", timestamp=T0 + 240))
    rx.wait_for(4, timeout=15)
    assert kinds(rx)[3] == ("warning", "db_down")
    (ended,) = e.json("silences", "--all")
    assert ended["id"] == sid and not ended["active"] and ended["ended_at"] is not None
    assert e.cli("unsilence", sid, "nosuch", check=False).returncode == 1  # an ended one is fine; unknown: 1
    assert e.stop() == 0


def test_ack_holds_realerts_back_and_the_resolve_reaches_the_target_alerted(
    make_errord, rx: Receiver, tmp_path: Path
) -> None:
    with Receiver() as other:
        targets = [{"url": rx.url("/a"), "tags": ["ta"]}, {"url": other.url("/b"), "tags": ["tb"]}]
        e = make_errord(notify=targets, defaults={"re_alert_time": "1m"}, codes={"db_down": {"tags": ["ta"]}})
        e.start()
        log = tmp_path / "logs" / "app.jsonl"
        append(log, line("db_down", timestamp=T0))
        rx.wait_for(1, timeout=15)
        assert e.cli("ack", "nope", check=False).returncode == 1  # no such incident open
        sid = timed(e, "ack", "db_down", "--reason", "on it").stdout.strip()
        append(log, line("db_down", timestamp=T0 + 120), line("db_down", timestamp=T0 + 240))  # re-alerts: muted
        append(log, line(clear="db_down", msg="db back", timestamp=T0 + 300))
        rx.wait_for(2, timeout=15)
        e.wait_caught_up()
        assert kinds(rx) == [("failure", "db_down"), ("success", "db_down")]
        assert "db back" in rx.delivered[1].body["message"]
        closed = history(e)[("db_down", False)]
        assert (closed["alerts_sent"], closed["notices_muted"], closed["resolved_by"]) == (1, 2, "clear")
        # the ack ended with its incident: the next incident of the code alerts normally
        wait_until("ack ended", lambda: not active_silences(e), e)
        assert e.json("silences") == []
        (ack,) = e.json("silences", "--all")
        assert ack["id"] == sid and ack["ack"] and ack["until_resolved"] and ack["ends_at"] is None
        assert (ack["active"], ack["muted"]) == (False, 2)
        append(log, line("db_down", msg="down again", timestamp=T0 + 400))
        rx.wait_for(3, timeout=15)
        assert kinds(rx)[2] == ("failure", "db_down")
        assert e.stop() == 0
        assert other.delivered == []  # never alerted of db_down: no resolve either


def test_resolve_by_hand_sends_one_success_and_records_manual_also_with_the_daemon_stopped(
    make_errord, rx: Receiver, tmp_path: Path
) -> None:
    e = make_errord(notify=[{"url": rx.url("/a")}])
    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    append(log, line("gone_app", msg="worker died"), line("other", msg="x"))
    rx.wait_for(2, timeout=15)
    before = time.time()
    (record,) = json.loads(timed(e, "resolve", "gone_app", "--reason", "app removed", "--json").stdout)
    assert (record["code"], record["active"], record["resolved_by"]) == ("gone_app", False, "manual")
    rx.wait_for(3, timeout=15)
    assert kinds(rx)[2] == ("success", "gone_app")
    assert "resolved by hand (errord resolve): app removed" in rx.delivered[2].body["message"]
    closed = history(e)[("gone_app", False)]
    assert closed["cleared_at"] >= time.strftime("%Y-%m-%dT%H:%M", time.gmtime(before))  # the daemon's clock
    again = e.cli("resolve", "gone_app", check=False)
    assert again.returncode == 1 and "no open incident of gone_app" in again.stderr
    assert e.stop() == 0
    # no daemon: the CLI applies it itself under the lock; the notice waits in the outbox
    assert e.cli("ack", "other").stdout.strip()
    refused = e.cli("silence", "nomatch_*", "--until-resolved", check=False)
    assert refused.returncode == 1 and "no open incident matches 'nomatch_*'" in refused.stderr
    until = json.loads(e.cli("silence", "oth*", "--until-resolved", "--json").stdout)
    assert until["until_resolved"] and until["ends_at"] is None and until["active"]
    assert e.json("status")["silences_active"] == 2
    e.cli("resolve", "other")
    assert e.json("status")["pending_notices"] == 1
    assert history(e)[("other", False)]["resolved_by"] == "manual"
    assert e.json("status")["silences_active"] == 0  # the ack and the until-resolved silence ended with it
    e.start()
    rx.wait_for(4, timeout=15)
    assert kinds(rx) == [("failure", "gone_app"), ("failure", "other"), ("success", "gone_app"), ("success", "other")]
    assert e.stop() == 0


def test_silences_survive_kill_9_and_a_for_3s_silence_stops_muting_by_itself(
    make_errord, rx: Receiver, tmp_path: Path
) -> None:
    e = make_errord(notify=[{"url": rx.url("/a")}])
    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    long_id = timed(e, "silence", "kept", "--for", "1h").stdout.strip()
    e.kill()  # SIGKILL
    e.start()
    short = json.loads(timed(e, "silence", "brief", "--for", "3s", "--json").stdout)
    append(log, line("kept", msg="muted"), line("brief", msg="muted for now"), line("loud", msg="sent"))
    rx.wait_for(1, timeout=15)
    e.wait_caught_up()
    assert kinds(rx) == [("failure", "loud")]
    got = {s["id"]: s for s in e.json("silences", "--all")}
    assert got[long_id]["active"] and got[long_id]["muted"] == 1
    # the 3 s silence ends by itself (no unsilence): the next line announces its incident
    wait_until("the 3 s silence to end", lambda: short["id"] not in active_silences(e), e)
    assert short["id"] not in {s["id"] for s in e.json("silences")}
    append(log, line("brief", msg="after the silence"), line("kept", msg="still muted"))
    rx.wait_for(2, timeout=15)
    e.wait_caught_up()
    assert kinds(rx) == [("failure", "loud"), ("failure", "brief")]
    assert "not announced before" in rx.delivered[1].body["message"]
    assert history(e)[("kept", True)]["notices_muted"] == 1  # the repeat made no notice: nothing more muted
    assert e.stop() == 0


def test_an_inhibited_code_stays_quiet_while_its_inhibitor_is_open_and_announces_itself_after(
    make_errord, rx: Receiver, tmp_path: Path
) -> None:
    e = make_errord(notify=[{"url": rx.url("/a")}], codes={"app_err": {"inhibited_by": ["db_*", "net_*"]}})
    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    append(log, line("db_down", msg="db"))
    rx.wait_for(1, timeout=15)
    append(log, line("app_err", msg="cannot query"), line("app_err", msg="still cannot"))
    append(log, line(clear="db_down", msg="db back"))
    rx.wait_for(2, timeout=15)
    e.wait_caught_up()
    assert kinds(rx) == [("failure", "db_down"), ("success", "db_down")]
    assert history(e)[("app_err", True)]["notices_muted"] == 1
    append(log, line("app_err", msg="after the db came back"))
    rx.wait_for(3, timeout=15)
    assert kinds(rx)[2] == ("failure", "app_err")
    assert "not announced before" in rx.delivered[2].body["message"]
    assert e.stop() == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_a_mute_window_covering_now_mutes_one_that_does_not_does_not(make_errord, rx: Receiver, tmp_path: Path) -> None:
    today = time.strftime("%a", time.gmtime()).lower()
    other_day = {"mon": "wed", "tue": "thu", "wed": "fri", "thu": "sat", "fri": "sun", "sat": "mon", "sun": "tue"}
    port = _free_port()
    e = make_errord(
        notify=[{"url": rx.url("/a")}],
        metrics={"listen": f"127.0.0.1:{port}"},
        mute_times=[
            {"name": "now", "codes": ["quiet_*"], "weekdays": [today], "timezone": "UTC"},
            {"name": "another-day", "codes": ["loud_*"], "weekdays": [other_day[today]], "timezone": "UTC"},
        ],
    )
    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    append(log, line("quiet_job", msg="muted by the window"), line("loud_job", msg="sent"))
    rx.wait_for(1, timeout=15)
    e.wait_caught_up()
    assert kinds(rx) == [("failure", "loud_job")]
    assert history(e)[("quiet_job", True)]["notices_muted"] == 1
    windows = {m["name"]: m for m in e.json("silences") if m["kind"] == "mute_time"}
    assert (windows["now"]["active"], windows["another-day"]["active"]) == (True, False)
    assert windows["now"]["codes"] == ["quiet_*"] and windows["now"]["apps"] == ["*"]
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'errord_notices_muted_total{reason="mute_times"} 1.0' in metrics
    assert 'errord_notices_muted_total{reason="silence"} 0.0' in metrics
    assert e.stop() == 0


def test_a_reload_brings_new_inhibitions_and_mute_times_in(make_errord, rx: Receiver, tmp_path: Path) -> None:
    from test_routing_e2e import configure, reload

    e = make_errord(notify=[{"url": rx.url("/a")}])
    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    configure(
        e,
        tmp_path,
        notify=[{"url": rx.url("/a")}],
        codes={"app_err": {"inhibited_by": ["db_*"]}},
        mute_times=[{"name": "always", "codes": ["batch_*"]}],
    )
    reload(e)
    append(log, line("db_down"), line("app_err"), line("batch_job"), line("web_err"))
    rx.wait_for(2, timeout=15)
    e.wait_caught_up()
    assert kinds(rx) == [("failure", "db_down"), ("failure", "web_err")]
    muted = {code: history(e)[(code, True)]["notices_muted"] for code in ("app_err", "batch_job", "web_err")}
    assert muted == {"app_err": 1, "batch_job": 1, "web_err": 0}
    assert e.stop() == 0
