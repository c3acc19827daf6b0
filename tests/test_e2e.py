"""End to end: ``errord run`` as a subprocess, real files, real Apprise to a local receiver."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import append, line, wait_until

pytestmark = pytest.mark.slow


def test_alert_suppress_realert_clear(make_errord, receiver, tmp_path: Path) -> None:
    e = make_errord(notify=[{"url": receiver.url("/hook")}], codes={"flaky": {"re_alert_time": "2s"}})
    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    append(log, line("db_down", msg="database unreachable"))
    (first,) = receiver.wait_for(1)
    assert first.body["type"] == "failure"
    assert "db_down" in first.body["title"].split()
    assert "database unreachable" in first.body["message"]

    append(log, *[line("db_down", msg=f"again {i}") for i in range(5)])
    append(log, line(clear="db_down", msg="database back"))
    got = receiver.wait_for(2)
    assert got[1].body["type"] == "success"
    assert "database unreachable" in got[1].body["message"]

    now = time.time()
    append(log, line("flaky", timestamp=now - 10), line("flaky", timestamp=now - 9), line("flaky", timestamp=now - 7))
    got = receiver.wait_for(4)
    assert [r.body["type"] for r in got[2:]] == ["failure", "warning"]
    e.wait_caught_up()

    history = e.json("history")
    by_code = {h["code"]: h for h in history}
    db = by_code["db_down"]
    assert (db["occurrences"], db["alerts_sent"], db["active"]) == (6, 1, False)
    assert db["cleared_at"] and db["server_id"] == "test-host" and db["node_name"] == "n1" and db["app"] == "demo"
    assert by_code["flaky"]["occurrences"] == 3 and by_code["flaky"]["alerts_sent"] == 2
    assert [a["code"] for a in e.json("active")] == ["flaky"]
    assert e.stop() == 0
    assert len(receiver.delivered) == 4  # nothing more on the way out


def test_notices_go_to_stderr_without_targets(make_errord, tmp_path: Path) -> None:
    e = make_errord()
    e.start()
    append(tmp_path / "logs" / "app.jsonl", line("disk_full", msg="no space"))
    e.wait_log("disk_full")
    assert "[errord notice] failure" in e.output() and "no space" in e.output()
    assert e.stop() == 0


def test_start_at_end_on_first_start_then_new_files_from_start(make_errord, receiver, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    append(logs / "old.jsonl", line("ancient", msg="before errord existed"))
    e = make_errord(
        notify=[{"url": receiver.url()}],
        sources=[{"path": str(logs / "*.jsonl"), "start_at": "end", "rotate_wait": "1s"}],
    )
    e.start()
    append(logs / "new.jsonl", line("fresh"))
    append(logs / "old.jsonl", line("later"))
    got = receiver.wait_for(2)
    assert sorted(r.body["title"].split()[1] for r in got) == ["fresh", "later"]
    e.stop()
    # a file that appears while errord is down is read from its start on the next run
    append(logs / "while_down.jsonl", line("offline"))
    e.start()
    got = receiver.wait_for(3)
    assert got[2].body["title"].split()[1] == "offline"
    e.wait_caught_up()
    assert e.stop() == 0
    assert len(receiver.delivered) == 3


def test_kill_9_mid_stream_loses_and_doubles_nothing(make_errord, receiver, tmp_path: Path) -> None:
    rnd = random.Random(1234)
    e = make_errord(notify=[{"url": receiver.url()}], defaults={"re_alert_time": "1h"})
    log = tmp_path / "logs" / "app.jsonl"
    codes = [f"c{i}" for i in range(8)]
    written: Counter[str] = Counter()
    e.start()
    kills = 0
    for burst in range(6):
        batch = []
        for _ in range(rnd.randint(200, 2000)):
            code = rnd.choice(codes)
            written[code] += 1
            batch.append(line(code, msg="x" * rnd.randint(0, 200)))
        append(log, *batch)
        time.sleep(rnd.uniform(0.0, 0.3))
        if burst % 2 == 0:
            e.kill()
            kills += 1
            e.start()
    e.wait_caught_up()
    history = e.json("history", "--limit", "1000")
    got = {h["code"]: h["occurrences"] for h in history}
    assert got == dict(written)
    assert all(h["active"] for h in history) and len(history) == len(codes)
    receiver.wait_for(len(codes))
    wait_until(lambda: e.status()["pending_notices"] == 0, 30, "every notice delivered and recorded")
    titles = Counter(r.body["title"].split()[1] for r in receiver.delivered)
    assert set(titles) == set(codes)
    # a notice can repeat only if the crash fell between the target accepting it and the journal recording it
    assert sum(titles.values()) - len(codes) <= kills
    assert e.stop() == 0


def test_rename_rotation_while_running(make_errord, receiver, tmp_path: Path) -> None:
    e = make_errord(notify=[{"url": receiver.url()}])
    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    append(log, line("a1"))
    receiver.wait_for(1)
    with open(log, "ab") as writer:  # a writer that never reopens
        os.rename(log, tmp_path / "logs" / "app.jsonl.1")
        writer.write(line("a2"))
        writer.flush()
        append(log, line("a3"))
        writer.write(line("a4"))
    got = receiver.wait_for(4)
    assert sorted(r.body["title"].split()[1] for r in got) == ["a1", "a2", "a3", "a4"]
    assert e.stop() == 0


def test_pending_notice_survives_restart(make_errord, receiver, errord_env, tmp_path: Path) -> None:
    errord_env["ERRORD_TEST_STOP_DEADLINE"] = "2"  # the target is down at the stop: 2 s of trying, not 8
    e = make_errord(notify=[{"url": receiver.url()}])
    receiver.stop()  # target down: connection refused
    e.start()
    append(tmp_path / "logs" / "app.jsonl", line("outage"))
    wait_until(lambda: e.status()["pending_notices"] == 1, 30, "the notice pending")
    assert e.json("status")["pending_notices"] == 1
    t0 = time.monotonic()
    assert e.stop() == 0
    assert time.monotonic() - t0 < 5  # ERRORD_TEST_STOP_DEADLINE was heeded (8 s drain: over 7 s)
    receiver.start()
    e.start()
    (got,) = receiver.wait_for(1, timeout=15)
    assert "outage" in got.body["title"]
    wait_until(lambda: e.status()["pending_notices"] == 0, 30, "no notice pending")
    assert e.json("status")["pending_notices"] == 0
    assert e.stop() == 0


def test_status_json_shape(make_errord, tmp_path: Path) -> None:
    e = make_errord()
    log = tmp_path / "logs" / "app.jsonl"
    append(log, line("x"), b"not json at all\n", line(msg="plain"))
    status = e.json("status")
    assert status["running"] is False
    assert status["files"] == [
        {"path": str(log), "position": 0, "size": log.stat().st_size, "lines_read": 0, "lines_skipped": 0}
    ]
    e.start()
    e.wait_caught_up()
    status = e.json("status")  # the CLI's own answer, once caught up
    assert status["running"] is True
    assert {"running", "active_incidents", "pending_notices", "pending_mongo", "files"} <= set(status)
    assert status["active_incidents"] == 1
    (f,) = status["files"]
    assert (f["lines_read"], f["lines_skipped"]) == (3, 1)
    assert e.stop() == 0
    assert e.json("status")["running"] is False


def test_sigterm_exits_zero_quickly(make_errord, receiver, tmp_path: Path) -> None:
    receiver.hang = 30  # a hung target must not hold the exit
    e = make_errord(notify=[{"url": receiver.url()}])
    e.start()
    append(tmp_path / "logs" / "app.jsonl", line("slow"))
    receiver.wait_for(1, delivered=False)
    t0 = time.monotonic()
    assert e.stop(timeout=12) == 0
    assert time.monotonic() - t0 < 10


def test_second_daemon_on_same_state_refused(make_errord) -> None:
    e = make_errord()
    e.start()
    res = e.cli("run", check=False, timeout=20)
    assert res.returncode == 1 and "another errord" in res.stderr
    assert e.stop() == 0


def test_invalid_config_exit_2_names_key(make_errord, tmp_path: Path) -> None:
    e = make_errord(sources=[{"path": str(tmp_path / "*.jsonl"), "start_at": "middle"}])
    for cmd in ("check-config", "run"):
        res = e.cli(cmd, check=False)
        assert res.returncode == 2
        assert "sources.0.start_at" in res.stderr and "Traceback" not in res.stderr


def test_replay_prints_notices_and_touches_no_state(make_errord, tmp_path: Path) -> None:
    e = make_errord(defaults={"re_alert_time": "60s"})
    log = tmp_path / "replay.jsonl"
    t = 1_768_400_000
    append(
        log,
        line("r", timestamp=t),
        line("r", timestamp=t + 30),
        line("r", timestamp=t + 61),
        line(clear="r", timestamp=t + 100),
    )
    res = e.cli("replay", str(log), "--json")
    notices = [json.loads(x) for x in res.stdout.splitlines()]
    assert [n["type"] for n in notices] == ["failure", "warning", "success"]
    assert notices[0]["time"] == "2026-01-14T14:13:20.000Z"
    assert not (tmp_path / "state").exists()


def test_unusable_apprise_url_is_a_config_error(make_errord, tmp_path: Path) -> None:
    e = make_errord(
        notify=[
            {"url": "tgram://123456789:abcdefgh/12345"},
            {"url": "tgram://bad"},
            {"url": "json://127.0.0.1:9/ok"},
            {"url": "nosuchscheme://secret-token-123/x"},
        ]
    )
    for cmd in ("check-config", "run"):
        res = e.cli(cmd, check=False)
        assert res.returncode == 2, res.stderr
        problems = [ln for ln in res.stderr.splitlines() if ln.startswith("errord: config:")]
        assert [p.split()[2] for p in problems] == ["notify.1.url:", "notify.3.url:"], res.stderr
        assert "secret-token-123" not in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "state").exists()  # refused before anything started


def test_sighup_adds_a_target_and_keeps_state(make_errord, receiver, tmp_path: Path) -> None:
    import signal as _signal

    from conftest import write_config

    e = make_errord()
    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    append(log, line("before_reload"))
    e.wait_caught_up()
    cfg_text = e.config.read_text()
    # an invalid file is refused and the old config kept
    e.config.write_text(cfg_text + "\nscope = 'galaxy'\n")
    e.proc.send_signal(_signal.SIGHUP)
    # the reload validates in a child (~1 s on a loaded machine): rewrite only once it is refused
    e.wait_log("reload refused")
    write_config(
        e.config,
        server_id="test-host",
        node_name="n1",
        state_dir=str(tmp_path / "state"),
        sources=[
            {"path": str(tmp_path / "logs" / "*.jsonl"), "start_at": "beginning", "rotate_wait": "1s", "app": "demo"}
        ],
        notify=[{"url": receiver.url("/after")}],
    )
    e.proc.send_signal(_signal.SIGHUP)
    e.wait_log("config reloaded")
    append(log, line("after_reload"), line("before_reload"))
    (got,) = receiver.wait_for(1)
    assert "after_reload" in got.body["title"]
    e.wait_caught_up()
    assert "reload refused" in e.output()
    history = {h["code"]: h for h in e.json("history")}
    assert history["before_reload"]["occurrences"] == 2  # the incident survived the reload
    wait_until(lambda: e.status()["pending_notices"] == 0, 30, "every notice delivered and recorded")
    assert len(receiver.delivered) == 1
    assert e.stop() == 0


def test_copytruncate_while_running(make_errord, receiver, tmp_path: Path) -> None:
    import shutil

    e = make_errord(notify=[{"url": receiver.url()}])
    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    append(log, *[line("ct", msg=f"before {i}") for i in range(50)])
    e.wait_caught_up()
    shutil.copyfile(log, tmp_path / "logs" / "app.jsonl.1")
    with open(log, "r+b") as f:
        f.truncate(0)
    append(log, *[line("ct", msg=f"after {i}") for i in range(60)])  # longer than before
    e.wait_caught_up()
    (h,) = e.json("history")
    assert h["occurrences"] == 110
    assert e.stop() == 0


def test_backlog_of_several_batches_is_counted_exactly(make_errord, receiver, tmp_path: Path) -> None:
    """~9 MiB already on disk: more than two batches of four 1 MiB reads, so lines, an
    incident's repeats, its re-alert and its clear fall on both sides of read and batch
    boundaries; one broken line in the middle is skipped and counted."""
    e = make_errord(notify=[{"url": receiver.url("/")}], defaults={"re_alert_time": "1h"})
    log = tmp_path / "logs" / "big.jsonl"
    filler = line(msg="f" * 180)
    start = 1_768_384_800  # 2026-01-14T10:00:00Z
    body: list[bytes] = []
    errors = 0
    for i in range(45_000):
        if i == 22_222:
            body.append(b"{broken\n")
        elif i % 9 == 0:
            # event times one minute apart: the 61st occurrence re-alerts (1 h)
            body.append(line("backlog", msg="e" * 150, ts=start + 60 * errors))
            errors += 1
        else:
            body.append(filler)
    body.append(line(clear="backlog", ts=start + 60 * errors))
    append(log, *body)
    assert log.stat().st_size > 8 << 20
    e.start()
    status = e.wait_caught_up(60)
    (f,) = status["files"]
    assert (f["lines_read"], f["lines_skipped"]) == (len(body), 1)
    (h,) = e.json("history")
    assert (h["code"], h["occurrences"], h["active"]) == ("backlog", errors, False)
    alerts = 1 + (errors - 1) // 60  # the first line, then every 60 minutes of event time
    assert h["alerts_sent"] == alerts
    got = receiver.wait_for(alerts + 1, timeout=20)  # the alert, the re-alerts, the resolution
    kinds = Counter(r.body["type"] for r in got)
    assert kinds == {"failure": 1, "warning": alerts - 1, "success": 1}, kinds
    assert e.stop() == 0


def test_a_clear_written_before_the_start_closes_at_the_start(make_errord, receiver, tmp_path: Path) -> None:
    """Issue 11.8 through ``errord run``: a clear whose event time is before its incident's
    start (a clock stepped back) closes it with cleared_at = start_time, never a negative
    duration, and the resolve says 0s."""
    e = make_errord(notify=[{"url": receiver.url("/back")}])
    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    t0 = time.time() - 3600
    append(log, line("db_down", timestamp=t0 + 100), line("db_down", timestamp=t0 + 150))
    receiver.wait_for(1)
    append(log, line(clear="db_down", timestamp=t0 + 50))
    got = receiver.wait_for(2)
    assert got[1].body["type"] == "success"
    assert "Resolved after 0s" in got[1].body["message"], got[1].body
    e.wait_caught_up()
    (db,) = e.json("history")
    assert db["active"] is False and db["cleared_at"] == db["start_time"], db
    assert db["occurrences"] == 2
    assert e.stop() == 0
    assert len(receiver.delivered) == 2


def test_signals_reach_a_daemon_following_a_busy_file_promptly(make_errord, tmp_path: Path) -> None:
    """While a file is being written, the daemon reads it on a timer and gives its event
    loop (where signals are handled) a turn only every TURN_EVERY: a reload and a stop are
    still seen within a fraction of a second, and nothing read is lost on the way."""
    e = make_errord()
    e.start()
    assert e.proc is not None
    log = tmp_path / "logs" / "app.jsonl"
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        while not stop.is_set():
            append(log, *(line(msg=f"n{written[0]}") for _ in range(10)))
            written[0] += 10
            time.sleep(0.01)

    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(2.0)  # past REST_AFTER: reading on the timer, the watches resting
        before = e.output().count("config reloaded")
        t0 = time.monotonic()
        e.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: e.output().count("config reloaded") > before, 10, e.output)
        reload_took = time.monotonic() - t0
        time.sleep(0.5)
        t0 = time.monotonic()
        e.proc.send_signal(signal.SIGTERM)
        assert e.proc.wait(10) == 0
        stop_took = time.monotonic() - t0
    finally:
        stop.set()
        t.join()
    assert reload_took < 1.0 and stop_took < 2.0, (reload_took, stop_took)
    e.start()  # what was read before the stop was committed: the restart reads on from there
    wait_until(lambda: sum(f["lines_read"] for f in e.status()["files"]) == written[0], 30, lambda: str(e.status()))
    assert e.stop() == 0
