"""``[[webhooks]]`` end to end (CONTRACT §11): ``errord run``, a local receiver, the JSON body
of each notice type against the record (§6), retries of 5xx/429, a 4xx recorded and not
retried, the headers redacted where the config is printed. One daemon for the lot."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from conftest import append, line, wait_until
from errord.model import INCIDENT_FIELDS
from errord.sinks.webhook import retry_after_seconds

BODY_KEYS = {"type", "title", "body", "incident", "server_id", "node_name", "labels"}


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after_seconds("3", 0.0) == 3.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == 10.0
    assert retry_after_seconds("soon", 0.0) is None and retry_after_seconds(None, 0.0) is None


@pytest.mark.slow
def test_webhook_bodies_retries_and_rejections(make_errord: Any, receiver: Any, tmp_path: Path) -> None:
    url = receiver.url("/hook").replace("json://", "http://")
    e = make_errord(
        webhooks=[{"url": url, "headers": {"Authorization": "Bearer hooktoken"}}],
        codes={"db_down": {"re_alert_time": "2s", "labels": {"team": "payments"}, "runbook": "https://r.example"}},
    )
    printed = e.cli("check-config").stdout
    assert "hooktoken" not in printed and '"Authorization": "***"' in printed

    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    now = time.time()
    append(log, line("db_down", msg="database down", timestamp=now - 10))
    append(log, line("db_down", msg="still down", timestamp=now - 7))
    append(log, line(clear="db_down", msg="back", timestamp=now - 5))
    got = receiver.wait_for(3)
    bodies = [r.body for r in got]
    assert [b["type"] for b in bodies] == ["failure", "warning", "success"]
    for r, b in zip(got, bodies, strict=True):
        assert set(b) == BODY_KEYS, b
        assert r.headers["content-type"] == "application/json" and r.headers["authorization"] == "Bearer hooktoken"
        assert (b["server_id"], b["node_name"], b["labels"]) == ("test-host", "n1", {"team": "payments"})
        assert list(b["incident"]) == list(INCIDENT_FIELDS)  # the record, in §6 order
        assert "db_down" in b["title"] and "runbook: https://r.example" in b["body"]
    assert bodies[0]["incident"]["active"] is True and bodies[0]["incident"]["message"] == "database down"
    assert bodies[0]["incident"]["start_time"].endswith("Z")  # UTC, as history --json prints it
    assert bodies[2]["incident"]["active"] is False and bodies[2]["incident"]["cleared_at"].endswith("Z")
    (record,) = e.json("history")
    for k in ("incident_id", "code", "message", "start_time", "server_id", "node_name", "app"):
        assert bodies[2]["incident"][k] == record[k], k

    # 503 and 429 are retried (Retry-After honoured), in order; nothing is lost
    receiver.headers = {"Retry-After": "1"}
    receiver.script = [503, 429]
    append(log, line("cache_down", msg="cache"))
    wait_until(lambda: len(receiver.delivered) == 4, 60, "the retried webhook")
    assert [r.status for r in receiver.received[3:]] == [503, 429, 200]
    assert receiver.delivered[3].body["incident"]["code"] == "cache_down"
    receiver.headers = {}

    # another 4xx: recorded, counted, in status, not retried; the queue moves on
    receiver.script = [400]
    append(log, line("disk_full", msg="disk"))
    append(log, line("queue_stuck", msg="queue"))
    wait_until(lambda: len(receiver.delivered) == 5, 60, "the notice after the rejected one")
    assert receiver.delivered[4].body["incident"]["code"] == "queue_stuck"
    assert [r.status for r in receiver.received[6:]] == [400, 200]  # the 400 once only
    status = e.json("status")
    assert list(status["rejected_notices"].values()) == [1]
    assert "rejected" in e.cli("status").stdout
    assert "rejected, not retried: HTTP 400" in e.output() and "hooktoken" not in e.output()
    assert e.stop() == 0
    assert len(receiver.received) == 8
