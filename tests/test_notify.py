"""sinks.notify.NotifySink: real Apprise over loopback to tests/receiver.py."""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apprise
import pytest

import conftest
from errord.errors import NotifyError
from errord.model import Notice, NoticeType
from errord.policy.route import Router
from errord.sinks.notify import NotifySink, SendResult, with_timeouts
from errord.sinks.secrets import Scrub, url_secrets
from errord.store.journal import Journal
from receiver import Receiver
from test_journal import stored

FAST = (0.05, 0.2)  # backoff for tests


@dataclass
class Target:
    url: str
    tags: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]

    @property
    def redacted(self) -> str:
        return self.url.split("://", 1)[0] + "://" + self.url.split("://", 1)[1].split("/", 1)[0].split("@")[-1]


def notice(code: str, kind: NoticeType = NoticeType.FAILURE, *, tags: tuple[str, ...] = ()) -> Notice:
    return Notice(
        type=kind,
        code=code,
        title=f"🚨 {code} srv/node",
        body=f"{code} message\napp: web\noccurrences: 1",
        incident_id=f"id-{code}",
        event_time=1000.0,
        tags=tags,
    )


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def rx2() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def make_sink(tmp_path: Path) -> Iterator[Callable[..., NotifySink]]:
    sinks: list[NotifySink] = []

    def make(targets: list[Target], **kw: object) -> NotifySink:
        kw.setdefault("backoff", FAST)
        kw.setdefault("timeout", 2.0)
        s = NotifySink(tmp_path / "state", targets, **kw)  # type: ignore[arg-type]
        sinks.append(s)
        return s

    yield make
    for s in sinks:
        s.stop(time.monotonic())


def enqueue(state: Path, sink: NotifySink, *notices: Notice) -> None:
    router = Router(sink.routes)  # as the daemon routes: by tags (resolves aside)
    for n in notices:
        n.targets = router.by_tags(n.tags)
    with Journal(state) as j:
        j.commit([], [], notices, now=time.time())
    sink.wake()


def wait_until(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    conftest.wait_until(cond, max(timeout, 30), "the condition", every=0.01)


def titles(reqs: list) -> list[str]:  # type: ignore[type-arg]
    return [r.body["title"] for r in reqs]


# -- delivery ---------------------------------------------------------------------------------


def test_delivers_each_type_with_title_body_and_type(
    tmp_path: Path, rx: Receiver, make_sink: Callable[..., NotifySink]
) -> None:
    sink = make_sink([Target(rx.url("/hook"))])
    sink.start()
    enqueue(
        tmp_path / "state",
        sink,
        notice("E1", NoticeType.FAILURE),
        notice("E2", NoticeType.WARNING),
        notice("E3", NoticeType.SUCCESS),
    )
    reqs = rx.wait_for(3)
    assert [r.path for r in reqs] == ["/hook"] * 3
    assert [(b["title"], b["message"], b["type"]) for b in (r.body for r in reqs)] == [
        ("🚨 E1 srv/node", "E1 message\napp: web\noccurrences: 1", "failure"),
        ("🚨 E2 srv/node", "E2 message\napp: web\noccurrences: 1", "warning"),
        ("🚨 E3 srv/node", "E3 message\napp: web\noccurrences: 1", "success"),
    ]
    wait_until(lambda: sink.pending() == 0)
    assert len(rx.snapshot()) == 3


def test_stderr_pseudo_target(tmp_path: Path, make_sink: Callable[..., NotifySink]) -> None:
    out = io.StringIO()
    sink = make_sink([], stream=out)
    assert sink.routes == []  # the journal's default: everything to "stderr"
    sink.start()
    enqueue(tmp_path / "state", sink, notice("E1"), notice("E2", NoticeType.SUCCESS, tags=("ops",)))
    wait_until(lambda: sink.pending() == 0)
    assert out.getvalue().splitlines() == [
        "[errord notice] failure 🚨 E1 srv/node | E1 message | app: web | occurrences: 1",
        "[errord notice] success 🚨 E2 srv/node | E2 message | app: web | occurrences: 1",
    ]


def test_tags_route_to_matching_targets(
    tmp_path: Path, rx: Receiver, rx2: Receiver, make_sink: Callable[..., NotifySink]
) -> None:
    sink = make_sink([Target(rx.url(), tags=["ops"]), Target(rx2.url())])
    sink.start()
    enqueue(tmp_path / "state", sink, notice("OPS", tags=("ops",)), notice("ALL"))
    assert titles(rx.wait_for(2)) == ["🚨 OPS srv/node", "🚨 ALL srv/node"]
    assert titles(rx2.wait_for(1)) == ["🚨 ALL srv/node"]
    wait_until(lambda: sink.pending() == 0)
    assert len(rx2.snapshot()) == 1


# -- failures and retry ---------------------------------------------------------------------------


def test_503_is_retried_with_backoff_in_order_each_once(
    tmp_path: Path, rx: Receiver, make_sink: Callable[..., NotifySink]
) -> None:
    rx.script = [503, 503, 503]
    sink = make_sink([Target(rx.url())])
    sink.start()
    enqueue(tmp_path / "state", sink, notice("E1"), notice("E2"), notice("E3"))
    reqs = rx.wait_for(3)
    assert titles(reqs) == ["🚨 E1 srv/node", "🚨 E2 srv/node", "🚨 E3 srv/node"]
    wait_until(lambda: sink.pending() == 0)
    seen = rx.snapshot()
    # E1 three times refused, then accepted; nothing newer overtook it.
    assert [(r.status, r.body["title"][2:4]) for r in seen] == [
        (503, "E1"),
        (503, "E1"),
        (503, "E1"),
        (200, "E1"),
        (200, "E2"),
        (200, "E3"),
    ]
    gaps = [b.at - a.at for a, b in itertools.pairwise(seen[:4])]
    # backoff 0.05 * 2**n, capped at 0.2 (jitter only lengthens)
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2, gaps
    assert all(g < 1.0 for g in gaps), gaps  # the 1 s poll did not stand in for the backoff
    with Journal(tmp_path / "state") as j:
        attempts = [a for (a,) in stored(j, "SELECT attempts FROM deliveries ORDER BY id")]
    assert attempts == [4, 1, 1]


def test_connection_refused_then_up(tmp_path: Path, rx: Receiver, make_sink: Callable[..., NotifySink]) -> None:
    rx.stop()
    sink = make_sink([Target(rx.url())])
    sink.start()
    enqueue(tmp_path / "state", sink, notice("E1"), notice("E2"))
    time.sleep(0.4)
    assert sink.pending() == 2
    rx.start()
    assert titles(rx.wait_for(2)) == ["🚨 E1 srv/node", "🚨 E2 srv/node"]
    wait_until(lambda: sink.pending() == 0)
    assert len(rx.snapshot()) == 2


def test_hanging_target_does_not_delay_a_healthy_one(
    tmp_path: Path, rx: Receiver, rx2: Receiver, make_sink: Callable[..., NotifySink]
) -> None:
    rx.hang = 5.0
    sink = make_sink([Target(rx.url()), Target(rx2.url())], timeout=1.0)
    sink.start()
    t0 = time.monotonic()
    enqueue(tmp_path / "state", sink, notice("E1"), notice("E2"))
    rx2.wait_for(2, timeout=3)
    assert time.monotonic() - t0 < 0.9  # well before the hung one's read timeout
    rx.wait_for(1, delivered=False)
    # The hung send gives up at the read timeout (not the 5 s hang) and is retried.
    rx.wait_for(2, delivered=False, timeout=3)
    assert time.monotonic() - t0 < 3
    rx.hang = 0
    rx.wait_for(2, timeout=5)
    wait_until(lambda: sink.pending() == 0)


def test_apprise_exception_is_a_failure_not_a_dead_worker(
    tmp_path: Path, rx: Receiver, make_sink: Callable[..., NotifySink], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = apprise.Apprise.notify
    calls = {"n": 0}

    def flaky(self: apprise.Apprise, *a: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("plugin bug")
        return real(self, *a, **kw)

    monkeypatch.setattr(apprise.Apprise, "notify", flaky)
    sink = make_sink([Target(rx.url())])
    sink.start()
    enqueue(tmp_path / "state", sink, notice("E1"))
    assert titles(rx.wait_for(1)) == ["🚨 E1 srv/node"]
    with Journal(tmp_path / "state") as j:
        wait_until(lambda: j.outbox.pending() == 0)
        [(attempts,)] = stored(j, "SELECT attempts FROM deliveries")
    assert attempts == 2


# -- stop and restart ------------------------------------------------------------------------------


def test_stop_drains_what_is_due(tmp_path: Path, rx: Receiver, make_sink: Callable[..., NotifySink]) -> None:
    sink = make_sink([Target(rx.url())])
    sink.start()
    enqueue(tmp_path / "state", sink, *(notice(f"E{i}") for i in range(5)))
    sink.stop(time.monotonic() + 5)
    assert sink.pending() == 0
    assert len(rx.delivered) == 5


def test_pending_at_stop_is_delivered_by_a_later_sink(
    tmp_path: Path, rx: Receiver, make_sink: Callable[..., NotifySink]
) -> None:
    rx.stop()
    first = make_sink([Target(rx.url())])
    first.start()
    enqueue(tmp_path / "state", first, notice("E1"), notice("E2"))
    t0 = time.monotonic()
    first.stop(t0 + 0.3)
    assert time.monotonic() - t0 < 0.6
    assert first.pending() == 2
    rx.start()
    second = make_sink([Target(rx.url())])
    second.start()
    assert titles(rx.wait_for(2)) == ["🚨 E1 srv/node", "🚨 E2 srv/node"]
    wait_until(lambda: second.pending() == 0)
    time.sleep(0.2)
    assert len(rx.snapshot()) == 2  # each once


def test_stop_returns_by_the_deadline_with_a_send_in_flight(
    tmp_path: Path, rx: Receiver, make_sink: Callable[..., NotifySink]
) -> None:
    rx.hang = 10
    sink = make_sink([Target(rx.url())], timeout=5.0)
    sink.start()
    enqueue(tmp_path / "state", sink, notice("E1"))
    rx.wait_for(1, delivered=False)
    t0 = time.monotonic()
    sink.stop(t0 + 0.5)
    assert time.monotonic() - t0 < 0.8


# -- send_test, urls, secrets ----------------------------------------------------------------------


def test_send_test(tmp_path: Path, rx: Receiver, rx2: Receiver, make_sink: Callable[..., NotifySink]) -> None:
    rx2.status = 503
    good, bad = Target(rx.url("/ok")), Target(rx2.url("/bad"))
    sink = make_sink([good, bad])
    got = sink.send_test("errord test", "hello")
    assert got[good.redacted] == SendResult(True, "")
    ok, reason = got[bad.redacted]  # what Apprise said, e.g. "…: Servers are overloaded., error=503"
    assert not ok and reason.startswith("Failed to send JSON POST notification") and "error=503" in reason
    assert set(got) == {good.redacted, bad.redacted}
    [req] = rx.wait_for(1)
    assert (req.body["title"], req.body["message"], req.body["type"]) == ("errord test", "hello", "info")
    assert sink.pending() == 0  # bypassed the outbox

    out = io.StringIO()
    assert make_sink([], stream=out).send_test("T", "a\nb") == {"stderr": (True, "")}
    assert out.getvalue() == "[errord notice] info T | a | b\n"


def test_with_timeouts() -> None:
    assert with_timeouts("json://h/p", 10) == "json://h/p?cto=10&rto=10"
    assert with_timeouts("json://h/p?method=PUT", 2.5) == "json://h/p?method=PUT&cto=2.5&rto=2.5"
    assert with_timeouts("json://h/p?rto=30", 10) == "json://h/p?rto=30&cto=10"
    assert with_timeouts("json://h/p?CTO=1&rto=2", 10) == "json://h/p?CTO=1&rto=2"
    assert with_timeouts("json://h/p?", 10) == "json://h/p?cto=10&rto=10"
    s = apprise.Apprise.instantiate(with_timeouts("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general", 3))
    assert s is not None and (s.socket_connect_timeout, s.socket_read_timeout) == (3.0, 3.0)
    assert getattr(s, "channels", None) == ["#general"]


def test_invalid_url_is_refused_at_setup(tmp_path: Path) -> None:
    with pytest.raises(NotifyError, match="nosuch://"):
        NotifySink(tmp_path, [Target("nosuch://secret-token-value")])


def test_secrets_never_reach_the_logs(
    tmp_path: Path, rx: Receiver, make_sink: Callable[..., NotifySink], caplog: pytest.LogCaptureFixture
) -> None:
    token, password = "tok_Zx81kQ2mNv7pL0aB", "hunter2pw"
    target = Target(rx.url(f"/hooks/{token}").replace("://", f"://bot:{password}@"))
    rx.stop()  # refused first: requests' exception text names the path
    rx.script = [503]
    sink = make_sink([target])
    with caplog.at_level(logging.DEBUG):
        sink.start()
        enqueue(tmp_path / "state", sink, notice("E1"))
        time.sleep(0.3)
        rx.start()
        rx.wait_for(1)
        wait_until(lambda: sink.pending() == 0)
    assert rx.snapshot()[0].path == f"/hooks/{token}"  # the secret did go where it belongs
    # Apprise's own records are there, masked
    assert "Failed to send" in caplog.text and "Connection error" in caplog.text
    assert target.redacted in caplog.text
    assert token not in caplog.text and password not in caplog.text
    with Journal(tmp_path / "state") as j:
        errors = [e for (e,) in stored(j, "SELECT last_error FROM deliveries")]
    assert token not in str(errors) and password not in str(errors)


def test_replacement_sink_waits_for_a_send_left_in_flight(
    tmp_path: Path, rx: Receiver, make_sink: Callable[..., NotifySink]
) -> None:
    # SIGHUP: the old sink is stopped while a send hangs; the new one must not send the
    # same notice again while the old send may still succeed.
    rx.hang = 0.8
    old = make_sink([Target(rx.url())], timeout=2.0)
    old.start()
    enqueue(tmp_path / "state", old, notice("E1"))
    rx.wait_for(1, delivered=False)
    old.stop(time.monotonic() + 0.1)  # returns with the send still in flight
    new = make_sink([Target(rx.url())], timeout=2.0)
    new.start()
    wait_until(lambda: new.pending() == 0)
    time.sleep(0.3)
    assert len(rx.snapshot()) == 1  # the old worker's send got through, recorded once


def test_send_test_masks_secrets_and_filters_come_off_after_stop(
    tmp_path: Path, rx: Receiver, make_sink: Callable[..., NotifySink], caplog: pytest.LogCaptureFixture
) -> None:
    token = "tok_Qw93hLm20PzX7vRt"
    target = Target(rx.url(f"/hooks/{token}"))
    rx.status = 503
    sink = make_sink([target])
    with caplog.at_level(logging.DEBUG):
        [(ok, reason)] = sink.send_test("T", "b").values()
        assert not ok and "error=503" in reason and token not in reason
    assert "Failed to send" in caplog.text and token not in caplog.text

    def ours() -> list[logging.Filter | object]:
        return [f for f in logging.getLogger("apprise").filters if isinstance(f, Scrub)]

    assert ours() == []  # send_test detached its filter
    sink.start()
    assert len(ours()) == 1
    sink.stop(time.monotonic() + 2)
    wait_until(lambda: ours() == [])


def test_a_hung_send_does_not_hold_the_process_at_exit(tmp_path: Path, rx: Receiver) -> None:
    import subprocess
    import sys

    rx.hang = 30
    child = f"""
import sys, time
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_notify import Target, enqueue, notice
from errord.sinks.notify import NotifySink
sink = NotifySink(Path({str(tmp_path / "state")!r}), [Target({rx.url()!r})], timeout=10.0)
sink.start()
enqueue(Path({str(tmp_path / "state")!r}), sink, notice("E1"))
time.sleep(0.5)
sink.stop(time.monotonic() + 0.2)
"""
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", child], check=True, timeout=30)
    assert time.monotonic() - t0 < 5  # not the 10 s read timeout, nor the 30 s hang
    assert len(rx.snapshot()) == 1


# -- why a target failed, and when it asked to be tried again ------------------------------------


def closed_port() -> int:
    """A loopback port nobody listens on: connecting is refused."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_refused_connection_is_named_in_send_test_and_the_retry_log(
    tmp_path: Path, make_sink: Callable[..., NotifySink], caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 10.10: `not accepted (1)` swallowed Apprise's reason."""
    target = Target(f"json://127.0.0.1:{closed_port()}/x")
    sink = make_sink([target])
    [(ok, reason)] = sink.send_test("T", "b").values()
    assert not ok and "Connection refused" in reason, reason
    assert reason.startswith("A Connection error occurred sending JSON notification to 127.0.0.1"), reason
    caplog.set_level(logging.WARNING, logger="errord")
    sink.start()
    enqueue(tmp_path / "state", sink, notice("E1"))
    wait_until(lambda: any("attempt 2" in r.getMessage() for r in caplog.records), timeout=10)
    retry = [r.getMessage() for r in caplog.records if "failed, attempt" in r.getMessage()]
    assert "Connection refused" in retry[0] and "not accepted" not in retry[0], retry
    with Journal(tmp_path / "state") as j:
        [(last_error,)] = stored(j, "SELECT last_error FROM deliveries")
    assert "Connection refused" in last_error  # what `status` and the journal keep


def test_a_bad_mailto_url_names_apprises_reason(tmp_path: Path) -> None:
    with pytest.raises(NotifyError) as info:
        NotifySink(tmp_path, [Target("mailto://example.com")])
    assert info.value.problems == [
        "notify.0.url: mailto://example.com: not a usable Apprise URL (Invalid ~From~ email specified; "
        "Could not load E-Mail URL: …)"  # the URL it echoes is left out
    ]
    with pytest.raises(NotifyError) as info:
        NotifySink(tmp_path, [Target("nosuch://host/secret-token-value")])
    assert info.value.problems == ["notify.0.url: nosuch://host: not a usable Apprise URL (Unparseable URL …)"]


def test_retry_after_is_honoured(
    tmp_path: Path, rx: Receiver, make_sink: Callable[..., NotifySink], caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11.9: 429 with `Retry-After: 3` was retried after the backoff's 1 s."""
    caplog.set_level(logging.WARNING, logger="errord")
    rx.script = [429]
    rx.headers = {"Retry-After": "3"}
    sink = make_sink([Target(rx.url("/limited"))], backoff=(0.05, 60.0))
    sink.start()
    enqueue(tmp_path / "state", sink, notice("E1"))
    rx.wait_for(1, timeout=10)
    first, second = rx.snapshot()[:2]
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 3.0, second.at - first.at
    assert any(
        "retry in 3.0s (Retry-After: 3s)" in r.getMessage() and "error=429" in r.getMessage() for r in caplog.records
    ), caplog.text


def test_retry_after_is_capped_by_the_backoff_cap(
    tmp_path: Path, rx: Receiver, make_sink: Callable[..., NotifySink]
) -> None:
    rx.script = [503]
    rx.headers = {"Retry-After": "3600"}
    sink = make_sink([Target(rx.url("/capped"))], backoff=(0.05, 1.0))
    sink.start()
    enqueue(tmp_path / "state", sink, notice("E1"))
    rx.wait_for(1, timeout=10)
    first, second = rx.snapshot()[:2]
    assert 1.0 <= second.at - first.at < 3.0, second.at - first.at


def test_url_secrets_mask_the_path_query_and_userinfo_whole_whatever_their_length() -> None:
    url = "json://us3r:pw1@hooks.example.com:8443/hooks/s3cr3t?token=abc&format=text"
    got = url_secrets(url)
    for part in ("us3r:pw1", "us3r", "pw1", "/hooks/s3cr3t", "/hooks/s3cr3t?token=abc&format=text", "abc"):
        assert part in got, part
    # host names, ports and Apprise's option values help diagnose and are not secrets
    assert not got & {"hooks.example.com", "8443", "text", "/", ""}
    scrub = Scrub(got)
    text = "Max retries exceeded with url: /hooks/s3cr3t (Caused by …) for us3r"
    assert scrub.scrub(text) == "Max retries exceeded with url: *** (Caused by …) for ***"
    assert url_secrets("json://127.0.0.1:1/") == {"json://127.0.0.1:1/"}  # nothing else to hide


def test_marks_are_synced_once_the_outbox_drains(
    tmp_path: Path, rx: Receiver, make_sink: Callable[..., NotifySink], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each accepted notice is recorded before the next send without an fsync
    (synchronous=NORMAL: safe against a kill -9); once the target's outbox drains, one WAL
    sync makes the burst's marks durable against a power loss as well (issue 13 review)."""
    synced: list[int] = []
    real = Journal.sync

    def counting(self: Journal) -> None:
        synced.append(1)
        real(self)

    monkeypatch.setattr(Journal, "sync", counting)
    sink = make_sink([Target(rx.url())])
    sink.start()
    enqueue(tmp_path / "state", sink, *[notice(f"S{i}") for i in range(20)])
    rx.wait_for(20)
    wait_until(lambda: sink.pending() == 0 and synced)
    time.sleep(0.3)
    assert len(synced) == 1  # once per drained burst, not per notice
    enqueue(tmp_path / "state", sink, notice("S20"))
    rx.wait_for(21)
    wait_until(lambda: len(synced) == 2)
