"""``[[alertmanager]]`` (CONTRACT §11): the alert of an incident (pure), and end to end
against a real Alertmanager (Debian's ``prometheus-alertmanager``) started on a loopback
port, with a webhook receiver of its own pointing at tests/receiver.py."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import append, line, wait_until
from errord.config import Alertmanager
from errord.model import Incident
from errord.sinks.alertmanager import ENDS_AFTER, alert
from errord.views import iso

AM = shutil.which("prometheus-alertmanager") or (
    "/usr/bin/prometheus-alertmanager" if Path("/usr/bin/prometheus-alertmanager").exists() else None
)


def incident(**kw: Any) -> Incident:
    base: dict[str, Any] = dict(
        code="db_down",
        message="database down",
        start_time=1000.0,
        last_log_time=1010.0,
        server_id="srv",
        node_name="",
        active=True,
        cleared_at=None,
        created_at=1000.0,
        updated_at=1010.0,
        occurrences=2,
        alerts_sent=1,
        last_alert_time=1000.0,
        app="api",
        incident_id="i1",
    )
    return Incident(**{**base, **kw})


def test_alert_labels_annotations_and_times() -> None:
    a = alert(incident(), labels={"team": "payments"}, notes=("Primary DB", "https://r.example"), now=2000.0)
    assert a["labels"] == {"alertname": "db_down", "app": "api", "server_id": "srv", "team": "payments"}
    assert a["annotations"] == {
        "summary": "database down",
        "description": "Primary DB",
        "runbook_url": "https://r.example",
    }
    assert a["startsAt"] == iso(1000.0) and a["endsAt"] == iso(2000.0 + ENDS_AFTER)
    closed = alert(incident(active=False, cleared_at=1500.0), labels={}, notes=(None, None), now=9000.0)
    assert closed["endsAt"] == iso(1500.0) and closed["annotations"] == {"summary": "database down"}
    early = alert(incident(active=False, cleared_at=900.0), labels={}, notes=(None, None), now=9000.0)
    assert early["endsAt"] == iso(1000.0)  # never before it started


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


@pytest.fixture
def alertmanager(tmp_path: Path, receiver: Any) -> Iterator[tuple[str, Any]]:
    """(base URL, a function that starts it) of an Alertmanager not started yet."""
    if AM is None:
        pytest.skip("prometheus-alertmanager is not installed (Debian package prometheus-alertmanager)")
    port = _free_port()
    hook = receiver.url("/am").replace("json://", "http://")
    cfg = tmp_path / "am.yml"
    cfg.write_text(
        "route:\n  receiver: hook\n  group_by: ['alertname']\n  group_wait: 1s\n  group_interval: 1s\n"
        "  repeat_interval: 1h\nreceivers:\n- name: hook\n  webhook_configs:\n"
        f"  - url: {hook}\n    send_resolved: true\n"
    )
    procs: list[subprocess.Popen[bytes]] = []
    base = f"http://127.0.0.1:{port}"

    def start() -> None:
        log = open(tmp_path / "am.log", "ab")  # noqa: SIM115 (the child keeps it)
        procs.append(
            subprocess.Popen(
                [
                    str(AM),
                    f"--config.file={cfg}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    f"--storage.path={tmp_path / 'am-data'}",
                    "--cluster.listen-address=",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        log.close()

        def ready() -> bool:
            try:
                with urllib.request.urlopen(base + "/-/ready", timeout=2) as resp:
                    return bool(resp.status == 200)
            except OSError:
                return False

        wait_until(ready, 60, lambda: "alertmanager ready:\n" + (tmp_path / "am.log").read_text(errors="replace"))

    yield base, start
    for p in procs:
        p.kill()
        p.wait(10)


@pytest.mark.slow
def test_raise_and_clear_against_a_real_alertmanager(
    make_errord: Any, receiver: Any, alertmanager: tuple[str, Any], tmp_path: Path
) -> None:
    base, start_am = alertmanager
    e = make_errord(
        alertmanager=[{"url": base}],
        codes={
            "db_down": {"labels": {"team": "payments"}, "runbook": "https://wiki.example/db_down"},
            "quiet": {"notify": False},
        },
    )
    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    # Alertmanager is down when the incident opens: retried, not lost
    append(log, line("db_down", msg="database down"), line("quiet", msg="kept out"))
    e.wait_caught_up()
    start_am()

    def listed() -> list[Any]:
        return [a for a in _get(base + "/api/v2/alerts") if a["labels"].get("alertname") == "db_down"]

    (got,) = wait_until(listed, 60, "the alert in Alertmanager's /api/v2/alerts")
    assert got["labels"] == {
        "alertname": "db_down",
        "app": "demo",
        "server_id": "test-host",
        "node_name": "n1",
        "team": "payments",
    }
    assert got["annotations"]["summary"] == "database down"
    assert got["annotations"]["runbook_url"] == "https://wiki.example/db_down"
    assert got["status"]["state"] == "active"
    assert not [a for a in _get(base + "/api/v2/alerts") if a["labels"].get("alertname") == "quiet"]
    firing = wait_until(
        lambda: [r for r in receiver.received if r.body and r.body.get("status") == "firing"], 60, "the firing webhook"
    )
    assert firing[0].body["alerts"][0]["labels"]["alertname"] == "db_down"

    append(log, line(clear="db_down", msg="back"))
    wait_until(lambda: not listed(), 60, "the alert resolved in Alertmanager")
    resolved = wait_until(
        lambda: [r for r in receiver.received if r.body and r.body.get("status") == "resolved"],
        60,
        "the resolved webhook",
    )
    assert resolved[0].body["alerts"][0]["labels"]["alertname"] == "db_down"
    assert e.stop() == 0


def test_a_resolve_made_while_alertmanager_is_down_is_pushed_when_it_is_back(tmp_path: Path, receiver: Any) -> None:
    """The pusher against tests/receiver.py standing in for Alertmanager's API: firing,
    re-posted after REPUSH, down at the resolve (nothing lost), back (the resolve goes out,
    the row is gone), across a new pusher (a restart) too."""
    from errord.sinks.alertmanager import REPUSH, AlertmanagerSink
    from errord.store.journal import Journal
    from test_journal import make_incident

    base = receiver.url("").replace("json://", "http://").rstrip("/")
    target = Alertmanager(base)

    def pusher() -> AlertmanagerSink:
        return AlertmanagerSink(
            tmp_path, [target], notify_for=lambda code: code != "quiet", labels_for=lambda code: ({}, (None, None))
        )

    with Journal(tmp_path) as j:
        a, q = make_incident("db_down", iid="a"), make_incident("quiet", iid="q")
        j.commit([a, q], [], [], now=1000.0)
        p = pusher()
        p.push_once(j, 2000.0)
        (first,) = receiver.wait_for(1)
        assert first.path == "/api/v2/alerts" and [x["labels"]["alertname"] for x in first.body] == ["db_down"]
        assert first.body[0]["endsAt"] == iso(2000.0 + ENDS_AFTER)
        p.push_once(j, 2000.0 + REPUSH / 2)  # nothing due: no post
        p.push_once(j, 2000.0 + REPUSH)  # re-posted
        assert len(receiver.received) == 2
        a.active, a.cleared_at = False, 2100.0
        j.commit([a], [], [], now=2100.0)
        receiver.stop()  # Alertmanager down at the resolve
        p.push_once(j, 2101.0)
        assert j.alerts.known(target.key) == {"a": 2000.0 + REPUSH}  # still to be told
        receiver.start()
        pusher().push_once(j, 2200.0)  # a new pusher: as after a restart
        got = receiver.wait_for(3)
        assert got[2].body[0]["labels"]["alertname"] == "db_down" and got[2].body[0]["endsAt"] == iso(2100.0)
        assert j.alerts.known(target.key) == {}
        pusher().push_once(j, 2300.0)
        assert len(receiver.received) == 3  # nothing more to say
