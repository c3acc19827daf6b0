"""The ``errord`` command line end to end (CONTRACT §4): real subprocesses on real files.

Output formatting (tables, times, ``--json`` keys) is in test_cli_output.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Errord, append, line, wait_until
from errord.model import Incident
from errord.store.journal import Journal
from receiver import Receiver

pytestmark = pytest.mark.slow

ERRORD = [sys.executable, "-m", "errord"]


def run(e: Errord, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``errord ARGS...`` exactly as given (``-c`` wherever the test puts it)."""
    return subprocess.run([*ERRORD, *args], env=e.env, capture_output=True, text=True, timeout=timeout)


CLI = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CLI:
    """``errord.cli.main`` in this process -> (exit status, stdout, stderr): quick, for
    the many argument combinations; the console script itself runs in the other tests."""
    from errord.cli import main

    for name in [n for n in os.environ if n.upper().startswith("ERRORD_")]:
        monkeypatch.delenv(name)

    def call(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            rc = main(list(args))
        except SystemExit as exc:  # argparse: --help, usage errors
            rc = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return rc, out, err

    return call


def wait_for_log(e: Errord, text: str, count: int = 1, timeout: float = 30) -> None:
    e.wait_log(text, count, timeout)


# -- 8: nothing to read is refused: run, check-config and a reload -------------------------------

ADD_SOURCES = (
    'add a [[sources]] table with a path glob (path = "/var/log/app/*.jsonl"), '
    """or set ERRORD_SOURCES='[{"path": "/var/log/app/*.jsonl"}]' in the environment"""
)


def test_run_and_check_config_refuse_a_config_without_sources(
    make_errord: Callable[..., Errord], tmp_path: Path
) -> None:
    e = make_errord()
    e.config.write_text(f'state_dir = "{tmp_path / "state"}"\n')  # no [[sources]]: would idle forever
    for cmd in ("run", "check-config"):
        res = e.cli(cmd, check=False, timeout=20)
        assert res.returncode == 2, res
        assert res.stderr.splitlines() == [  # both ways out: the config key and the environment
            f"errord: config: sources: nothing to read: {e.config} has no [[sources]] table; {ADD_SOURCES}"
        ]
    assert not (tmp_path / "state").exists()  # refused before anything started
    # the read commands do not need sources
    for cmd in ("active", "history", "status"):
        assert e.cli(cmd, check=False).returncode in (0, 3)


def test_a_reload_with_an_empty_file_is_refused_and_reading_goes_on(
    make_errord: Callable[..., Errord], receiver: Receiver, tmp_path: Path
) -> None:
    e = make_errord(notify=[{"url": receiver.url("/hook")}])
    e.start()
    assert e.proc is not None
    log = tmp_path / "logs" / "app.jsonl"
    append(log, line("before"))
    receiver.wait_for(1, timeout=15)
    good = e.config.read_text()

    e.config.write_text("")  # a non-atomic rewrite racing `systemctl reload`
    e.proc.send_signal(signal.SIGHUP)
    wait_for_log(e, "reload refused")
    assert f"sources: nothing to read: {e.config} has no [[sources]] table; {ADD_SOURCES}" in e.output()
    assert "0 source(s)" not in e.output()
    append(log, line("while_empty"))  # the old config is kept: the file is still read
    receiver.wait_for(2, timeout=15)

    e.config.write_text(good)  # the real file is back
    e.proc.send_signal(signal.SIGHUP)
    wait_for_log(e, "config reloaded")
    append(log, line("after"))
    receiver.wait_for(3, timeout=15)
    status = e.wait_caught_up()
    time.sleep(1.0)  # a file read again from its start would re-alert by now
    assert [r.body["title"].split()[1] for r in receiver.received] == ["before", "while_empty", "after"]
    assert (
        [(f["lines_read"], f["position"]) for f in e.json("status")["files"]]
        == [(3, log.stat().st_size)]
        == [(f["lines_read"], f["position"]) for f in status["files"]]
    )
    assert {h["code"]: h["occurrences"] for h in e.json("history")} == {"before": 1, "while_empty": 1, "after": 1}
    assert e.stop() == 0


# -- 9 and 12: status says whether a daemon runs; -c before or after the command ----------------


def test_status_exit_code_and_config_before_the_command(make_errord: Callable[..., Errord], tmp_path: Path) -> None:
    e = make_errord()
    cfg = str(e.config)
    append(tmp_path / "logs" / "app.jsonl", line("seen"))
    for args in (["-c", cfg, "status"], ["status", "-c", cfg], ["--config", cfg, "status", "--json"]):
        res = run(e, *args)
        assert res.returncode == 3, (args, res)  # no daemon: `errord status || page-me` pages
    assert json.loads(res.stdout)["running"] is False

    with open(e.log_path, "ab") as log:
        proc = subprocess.Popen([*ERRORD, "-c", cfg, "run"], env=e.env, stdout=log, stderr=subprocess.STDOUT)
    try:
        # wait in this process (no CLI start-up per poll), then ask the CLI
        wait_until(lambda: proc.poll() is not None or e.running(), 30, e.output)
        assert proc.poll() is None, e.output()
        assert run(e, "-c", cfg, "status").returncode == 0
        assert json.loads(run(e, "status", "-c", cfg, "--json").stdout)["running"] is True
        wait_until(lambda: e.status()["active_incidents"], 30, e.output)
        for args in (["-c", cfg, "active", "--json"], ["active", "--json", "-c", cfg]):
            res = run(e, *args)
            assert res.returncode == 0 and [i["code"] for i in json.loads(res.stdout)] == ["seen"], res
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    assert run(e, "-c", cfg, "status").returncode == 3
    assert "not running" in run(e, "-c", cfg, "status").stdout


def test_the_hidden_command_is_not_listed_but_works(make_errord: Callable[..., Errord], cli: CLI) -> None:
    e = make_errord()
    for args in (["bogus"], ["--help"], ["-c", str(e.config)], ["history", "--bogus"]):
        rc, out, err = cli(*args)
        assert rc == 2 or args == ["--help"], (args, rc, err)
        assert "_dump-config" not in out + err, (args, out, err)
    rc, _, err = cli("bogus")
    assert len(err.splitlines()) == 1, err  # one line, as a bad config
    assert "invalid choice: 'bogus'" in err and "'history'" in err
    rc, out, err = cli("_dump-config", "-c", str(e.config))  # how a reload validates (serve.load_config)
    assert rc == 0 and json.loads(out)["server_id"] == "test-host", err


# -- 11: check-config says what each glob matches now ---------------------------------------------


def test_check_config_says_what_each_source_matches(make_errord: Callable[..., Errord], tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    (logs / "sub").mkdir(parents=True)
    (logs / "a.jsonl").write_text("")
    (logs / "b.jsonl").write_text("")
    e = make_errord(
        sources=[
            {"path": str(logs / "*.jsonl")},
            {"path": str(tmp_path / "later" / "*.jsonl"), "start_at": "beginning"},
            {"path": str(logs)},  # a folder, not files
            {"path": str(logs / "*"), "start_at": "beginning"},
        ]
    )
    res = e.cli("check-config")
    assert json.loads(res.stdout)["sources"][0]["path"] == str(logs / "*.jsonl")  # stdout: still the JSON config
    assert res.stderr.splitlines() == [
        f'errord: sources.0: {logs}/*.jsonl: matches 2 files now (first start: start_at = "end" skips what they '
        f"hold now)",
        f"errord: sources.1: {tmp_path}/later/*.jsonl: matches nothing yet (a file that appears while errord runs "
        f"is read from its start)",
        f"errord: sources.2: {logs}: matches 1 folder and no file: a source names files, e.g. {logs}/*.jsonl",
        f"errord: sources.3: {logs}/*: matches 2 files now (and 1 folder, skipped) (first start: read from their "
        f"start)",
    ]
    Journal(tmp_path / "state").set_meta("initialized", "1")  # once the daemon has started, start_at is history
    assert e.cli("check-config").stderr.splitlines()[0] == f"errord: sources.0: {logs}/*.jsonl: matches 2 files now"


def test_check_config_prints_the_effective_config(cli: CLI, tmp_path: Path) -> None:
    from test_config import expected_check_config, full

    path = full(tmp_path).config_path
    rc, out, err = cli("check-config", "-c", str(path))
    assert rc == 0, err
    assert json.dumps(json.loads(out)) == json.dumps(expected_check_config(tmp_path))  # keys in the same order too
    assert out.startswith('{\n  "server_id": "h1",\n  "node_name": "n1",\n')  # indented two spaces
    assert "s3cret" not in out + err and "bottoken" not in out + err and "token=abc" not in out + err


# -- 13: history filters --------------------------------------------------------------------------


def _incident(code: str, start: float, app: str | None, cleared: float | None = None) -> Incident:
    return Incident(
        code=code,
        message="m",
        start_time=start,
        last_log_time=start,
        server_id="test-host",
        node_name="n1",
        active=cleared is None,
        cleared_at=cleared,
        created_at=start,
        updated_at=start,
        occurrences=1,
        alerts_sent=1,
        last_alert_time=start,
        app=app,
        incident_id=f"{code}-{start}",
    )


def test_history_by_app_since_and_state(make_errord: Callable[..., Errord], cli: CLI, tmp_path: Path) -> None:
    e = make_errord()
    now = time.time()
    j = Journal(tmp_path / "state")
    j.commit(
        [
            _incident("db_down", now - 3 * 86400, "shop", cleared=now - 2 * 86400),
            _incident("db_down", now - 3600, "shop"),
            _incident("queue_stuck", now - 7200, "billing", cleared=now - 60),
            _incident("disk_full", 1_768_400_000.0, None),  # 2026-01-14T14:13:20Z
        ],
        [],
        [],
        now,
    )
    j.close()

    def codes(*args: str) -> list[tuple[str, str | None]]:
        rc, out, err = cli("history", "-c", str(e.config), "--json", *args)
        assert rc == 0, err
        return [(h["code"], h["app"]) for h in json.loads(out)]

    assert codes("--app", "shop") == [("db_down", "shop"), ("db_down", "shop")]
    assert codes("--since", "3h") == [("db_down", "shop"), ("queue_stuck", "billing")]
    assert codes("--since", "PT1H30M", "--app", "shop") == [("db_down", "shop")]
    assert codes("--state", "cleared") == [("queue_stuck", "billing"), ("db_down", "shop")]
    assert codes("--state", "active", "--code", "db_down") == [("db_down", "shop")]
    assert codes("--active-only") == codes("--state", "active")  # the older spelling
    assert codes("--since", "2026-01-14T14:13:20Z", "--code", "disk_full") == [("disk_full", None)]  # at or after
    assert codes("--since", "2026-01-14 14:13:20", "--code", "disk_full") == [("disk_full", None)]  # no zone: UTC
    assert codes("--since", "2026-01-14T15:13:20+01:00", "--code", "disk_full") == [("disk_full", None)]
    assert codes("--since", "2026-01-14T14:13:21Z", "--code", "disk_full") == []
    assert codes("--since", "10800") == codes("--since", "3h")  # a bare number: seconds ago (README)
    for bad in (
        ["--since", "yesterday"],
        ["--state", "open"],
        ["--limit", "0"],
        ["--limit", "ten"],
        ["--state", "cleared", "--active-only"],
    ):
        rc, out, err = cli("history", "-c", str(e.config), *bad)
        assert rc == 2 and len(err.splitlines()) == 1, (bad, err)
        assert err.startswith("errord: argument ") and out == "", (bad, err)
    # the same through the console script, in a process of its own
    res = e.cli("history", "--since", "yesterday", check=False)
    assert res.returncode == 2 and res.stderr == (
        "errord: argument --since: expected a duration (2h, 1d, PT15M) or a time (2026-01-14T15:00:00Z), "
        "got 'yesterday' (see 'errord history --help')\n"
    )
    res = e.cli("history", "--app", "billing", "--state", "cleared", "--since", "1d", "--json")
    assert [h["code"] for h in json.loads(res.stdout)] == ["queue_stuck"]


# -- 10 (cli part): test-notify names the reason of a failure --------------------------------------


def test_test_notify_names_why_a_target_failed(make_errord: Callable[..., Errord], receiver: Receiver) -> None:
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    e = make_errord(notify=[{"url": receiver.url("/ok")}, {"url": f"json://127.0.0.1:{dead}/down"}])
    res = e.cli("test-notify", check=False)
    assert res.returncode == 1, res
    ok, failed = res.stdout.splitlines()
    assert ok == f"ok      json://127.0.0.1:{receiver.port}/…"
    target, colon, reason = failed.removeprefix("FAILED  ").partition(": ")
    assert failed.startswith("FAILED  ") and target == f"json://127.0.0.1:{dead}/…" and colon, failed
    assert reason.strip(), failed  # Apprise's reason, as sinks/notify.py words it
    assert len(receiver.wait_for(1)) == 1
    # the README shows these two lines as they are, with host:8080 for 127.0.0.1:PORT
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for shown in (ok.replace(f"127.0.0.1:{receiver.port}", "host:8080"), failed):
        shown = shown.replace(f"127.0.0.1:{dead}", "host:8080").replace("127.0.0.1", "host")
        assert " ".join(f"`{shown}`".split()) in " ".join(readme.split()), shown  # wrapped lines: any spaces
