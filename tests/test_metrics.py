"""Prometheus ``/metrics`` and ``/healthz``: over HTTP from a daemon subprocess and from an
in-process ``Daemon``; the health rules with a fake clock."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import append, line, wait_until, write_config
from errord.config import redact_url
from errord.daemon import Daemon
from errord.errors import ErrordError, JournalError
from errord.metrics import BatchTally, Health, Metrics, MetricsServer
from errord.model import Kind
from errord.settings import Settings

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a GET; 4xx/5xx are answers, not errors."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(base: str) -> Samples:
    status, text = get(base + "/metrics")
    assert status == 200
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def metrics_base(e, timeout: float = 10) -> str:  # type: ignore[no-untyped-def]
    """The metrics URL a daemon logged (it listens on port 0: the OS picks)."""
    found = wait_until(
        lambda: re.search(r"metrics on (http://[^/\s]+)/metrics", e.output()),
        max(timeout, 30),
        lambda: f"a metrics address logged:\n{e.output()}",
    )
    return found.group(1)


@pytest.mark.slow
def test_counters_move_as_lines_are_appended(make_errord, receiver, tmp_path: Path) -> None:
    receiver.script = [500]  # the first notice fails once, then goes through
    e = make_errord(
        notify=[{"url": receiver.url("/hook")}],
        metrics={"listen": "127.0.0.1:0"},
        codes={"flaky": {"re_alert_time": 0}},
    )
    log = tmp_path / "logs" / "app.jsonl"
    append(log, line(msg="no code"))
    e.start()
    base = metrics_base(e)
    e.wait_caught_up()
    src = str(tmp_path / "logs" / "*.jsonl")
    before = scrape(base)
    assert value(before, "errord_lines_read_total", source=src) == 1
    assert value(before, "errord_incidents_opened_total") == 0
    assert get(base + "/healthz") == (200, "ok\n")

    append(
        log,
        line("db_down"),
        line("db_down"),
        b'{"error_code": oops}\n',
        b'\xff\xfe{"error_code": 1}\n',
        line("flaky"),
        line("flaky"),
        line(clear="db_down"),
    )
    receiver.wait_for(4, timeout=15)  # failure (after one retry), failure, warning, success
    e.wait_caught_up()
    target = redact_url(receiver.url("/hook"))  # json://127.0.0.1:PORT/…: no path, no secrets

    # the helper reports each send to the daemon after the target answered: the counters
    # follow the receiver, so wait for them (and the outbox) before reading the rest
    def counted() -> bool:
        now = scrape(base)
        return value(now, "errord_notices_sent_total", target=target) >= 4 and value(now, "errord_notices_pending") == 0

    wait_until(counted, 30, "the sends counted")
    after = scrape(base)
    assert value(after, "errord_lines_read_total", source=src) == 8
    assert value(after, "errord_lines_skipped_total", source=src, reason="not_json") == 1
    assert value(after, "errord_lines_skipped_total", source=src, reason="invalid_utf8") == 1
    assert value(after, "errord_incidents_opened_total") == 2
    assert value(after, "errord_incidents_realerted_total") == 1
    assert value(after, "errord_incidents_resolved_total") == 1
    assert value(after, "errord_incidents_open") == 1  # flaky
    assert value(after, "errord_file_bytes_behind", path=str(log)) == 0
    assert "hook" not in target
    assert value(after, "errord_notices_sent_total", target=target) == 4
    assert value(after, "errord_notices_failed_total", target=target) == 1
    assert value(after, "errord_notices_pending") == 0
    assert value(after, "errord_mongo_writes_pending") == 0
    assert value(after, "errord_healthy") == 1
    assert e.stop() == 0
    with pytest.raises(OSError):  # the listener is gone with the daemon
        urllib.request.urlopen(base + "/healthz", timeout=2)


def test_healthz_503_while_the_journal_is_unwritable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "logs").mkdir()
    cfg = write_config(
        tmp_path / "e.toml",
        state_dir=str(tmp_path / "state"),
        metrics={"listen": "127.0.0.1:0"},
        sources=[{"path": str(tmp_path / "logs" / "*.jsonl"), "start_at": "beginning"}],
    )

    async def scenario() -> None:
        d = Daemon(Settings.load(cfg).to_run())
        task = asyncio.create_task(d.run())
        while not d.metrics.health.check()[0]:
            assert not task.done()
            await asyncio.sleep(0.02)
        assert d.metrics_server is not None
        host, port = d.metrics_server.address
        base = f"http://{host}:{port}"
        assert await asyncio.to_thread(get, base + "/healthz") == (200, "ok\n")

        assert d.journal is not None
        real_commit = d.journal.commit

        def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
            raise JournalError("disk I/O error")

        monkeypatch.setattr(d.journal, "commit", broken)
        append(tmp_path / "logs" / "a.jsonl", line("x"))
        for _ in range(200):
            status, body = await asyncio.to_thread(get, base + "/healthz")
            if status == 503:
                break
            await asyncio.sleep(0.02)
        assert status == 503 and "journal unwritable" in body and "disk I/O error" in body
        samples = await asyncio.to_thread(scrape, base)
        assert value(samples, "errord_healthy") == 0
        assert value(samples, "errord_lines_read_total", source=str(tmp_path / "logs" / "*.jsonl")) == 0

        monkeypatch.setattr(d.journal, "commit", real_commit)
        for _ in range(300):  # the retry backoff starts at 0.5 s
            status, body = await asyncio.to_thread(get, base + "/healthz")
            if status == 200:
                break
            await asyncio.sleep(0.02)
        assert (status, body) == (200, "ok\n")
        samples = await asyncio.to_thread(scrape, base)
        # the failed batch was read again and counted once
        assert value(samples, "errord_lines_read_total", source=str(tmp_path / "logs" / "*.jsonl")) == 1
        assert value(samples, "errord_incidents_opened_total") == 1
        d._on_stop_signal(signal.SIGTERM)
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())


def test_health_rules_with_a_fake_clock() -> None:
    now = [100.0]
    h = Health(stall_after=30, clock=lambda: now[0])
    assert h.check() == (False, "starting: sources not open yet")
    h.started()
    assert h.check() == (True, "ok")
    now[0] += 29
    assert h.check()[0]
    assert not h.stalled()
    now[0] += 2
    assert h.check() == (False, "main loop has not iterated for 31s") and h.stalled()
    h.beat()
    assert h.check()[0]
    h.journal_failed("database or disk is full")
    now[0] += 5
    h.journal_failed("database or disk is full")  # the since-time is the first failure's
    assert h.check() == (False, "journal unwritable for 5s, reading paused: database or disk is full")
    h.journal_ok()
    assert h.check()[0]


def test_registries_are_per_daemon_and_batches_count_once() -> None:
    a, b = Metrics(), Metrics()  # no clash in prometheus_client's global registry
    tally = BatchTally()
    tally.add_chunk(0, 10, {"not_json": 2}, too_long=1)
    tally.add_chunk(0, 5, {"not_json": 1})
    tally.kinds.update({Kind.NEW: 2, Kind.REPEAT: 7, Kind.CLEAR: 1})
    a.add_batch(tally, ["/var/log/app/*.jsonl"])
    a.notice_result("json://host/…", True)
    a.notice_result("json://host/…", False)
    get_a = a.registry.get_sample_value
    assert get_a("errord_lines_read_total", {"source": "/var/log/app/*.jsonl"}) == 15
    assert get_a("errord_lines_skipped_total", {"source": "/var/log/app/*.jsonl", "reason": "not_json"}) == 3
    assert get_a("errord_lines_skipped_total", {"source": "/var/log/app/*.jsonl", "reason": "too_long"}) == 1
    assert get_a("errord_incidents_opened_total") == 2 and get_a("errord_incidents_resolved_total") == 1
    assert get_a("errord_notices_sent_total", {"target": "json://host/…"}) == 1
    assert get_a("errord_notices_failed_total", {"target": "json://host/…"}) == 1
    assert b.registry.get_sample_value("errord_incidents_opened_total") == 0


def test_muted_notices_count_by_reason_and_per_silence() -> None:
    m = Metrics()
    tally = BatchTally()
    per_silence = tally.add_muted({("silence", "s1"): 2, ("silence", "s2"): 1, ("inhibited", None): 3})
    assert per_silence == {"s1": 2, "s2": 1}  # what the batch adds to each silence's count
    m.add_batch(tally, [])
    get = m.registry.get_sample_value
    assert [
        get("errord_notices_muted_total", {"reason": r}) for r in ("silence", "inhibited", "mute_times", "flapping")
    ] == [
        3,
        3,
        0,  # every reason is there from the start
        0,
    ]


def test_busy_port_is_a_clear_start_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ErrordError, match=f"cannot listen on 127.0.0.1:{port}"):
            MetricsServer(Metrics(), "127.0.0.1", port).start()
