"""Prometheus metrics and ``/healthz`` for one daemon (CONTRACT §3 ``[metrics]``).

Every ``Metrics`` owns its ``CollectorRegistry``: nothing is registered in
prometheus_client's global default registry, so several daemons (tests) can live in one
process. The pipeline never touches a metric per line: the daemon tallies a batch in
plain dicts (``BatchTally``) and hands it over once the batch is committed, so a batch
that is rolled back and read again is counted once. Notify workers report each send
through ``notice_result`` (thread-safe).

The gauges that describe state (pending notices, pending MongoDB writes, open incidents,
bytes behind per file) are read at scrape time by ``snapshot``, which runs *in the
daemon's event loop* (``call_soon_threadsafe``), so the scrape thread never shares the
journal connection or the tailer's dicts with the loop. A loop that does not answer
within ``SNAPSHOT_TIMEOUT`` leaves those gauges out of that scrape; ``/healthz`` says why.

``/healthz``: 200 ``ok`` while the pipeline runs; 503 with one line of reason while it
is starting, while the journal cannot be written (reading is paused), or when the main
loop has not gone round for ``stall_after`` seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, ProcessCollector, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from errord.errors import ErrordError
from errord.health import BatchTally, Health, Snapshot
from errord.model import Kind
from errord.policy.mute import MUTE_REASONS

__all__ = ["BatchTally", "Health", "Metrics", "MetricsServer", "Snapshot"]

logger = logging.getLogger(__name__)

SNAPSHOT_TIMEOUT = 2.0  # seconds a scrape waits for the event loop


class Metrics:
    """The daemon's counters and scrape-time gauges, in a registry of its own."""

    def __init__(self, health: Health | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.health = health or Health()
        r = self.registry
        self.lines_read = Counter(
            "errord_lines_read", "Lines read (including skipped ones), per source glob", ["source"], registry=r
        )
        self.lines_skipped = Counter(
            "errord_lines_skipped", "Lines skipped, per source glob and reason", ["source", "reason"], registry=r
        )
        self.opened = Counter("errord_incidents_opened", "Incidents opened", registry=r)
        self.realerted = Counter("errord_incidents_realerted", "Re-alerts of still-active incidents", registry=r)
        self.announced = Counter(
            "errord_incidents_announced",
            "Open incidents announced late (their first notice after silent ones)",
            registry=r,
        )
        self.resolved = Counter("errord_incidents_resolved", "Incidents resolved (by a clear, or by hand)", registry=r)
        self.sent = Counter(
            "errord_notices_sent", "Notices accepted by a target (redacted name)", ["target"], registry=r
        )
        self.failed = Counter(
            "errord_notices_failed", "Notice sends that failed, per target (redacted name)", ["target"], registry=r
        )
        self.muted = Counter(
            "errord_notices_muted",
            "Failure and warning notices recorded but not sent, per reason (CONTRACT §8)",
            ["reason"],
            registry=r,
        )
        self.template_failures = Counter(
            "errord_template_failures",
            "Notices a template failed to render at run time: sent in the built-in text (CONTRACT §11)",
            ["target"],
            registry=r,
        )
        for reason in MUTE_REASONS:  # every reason shows from the start, at 0
            self.muted.labels(reason)
        ProcessCollector(registry=r)
        self._state = _StateCollector(self)
        r.register(self._state)

    def attach(self, loop: asyncio.AbstractEventLoop, snapshot: Callable[[], Snapshot]) -> None:
        """Read scrape-time state by running ``snapshot`` in ``loop``."""
        self._state.loop, self._state.snapshot = loop, snapshot

    def add_batch(self, tally: BatchTally, source_names: list[str]) -> None:
        """Publish a committed batch."""

        def name(i: int) -> str:
            return source_names[i] if 0 <= i < len(source_names) else "-"

        for src, n in tally.lines.items():
            if n:
                self.lines_read.labels(name(src)).inc(n)
        for (src, reason), n in tally.skipped.items():
            if n:
                self.lines_skipped.labels(name(src), reason).inc(n)
        k = tally.kinds
        for kind, counter in (
            (Kind.NEW, self.opened),
            (Kind.FLAPPING, self.opened),
            (Kind.REALERT, self.realerted),
            (Kind.ANNOUNCE, self.announced),
            (Kind.CLEAR, self.resolved),
        ):
            if k.get(kind):
                counter.inc(k[kind])
        for reason, n in tally.muted.items():
            if n:
                self.muted.labels(reason).inc(n)

    def text(self) -> bytes:
        """The Prometheus text exposition of this registry (``/metrics``)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def notice_result(self, target: str, ok: bool) -> None:
        """Called by the notify workers after each send; ``target`` is the redacted name."""
        (self.sent if ok else self.failed).labels(target).inc()

    def template_failed(self, target: str) -> None:
        """Called when ``target``'s template failed and the built-in text went out."""
        self.template_failures.labels(target).inc()


class _StateCollector(Collector):
    """Gauges computed at scrape time from a snapshot taken in the daemon's loop."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.loop: asyncio.AbstractEventLoop | None = None
        self.snapshot: Callable[[], Snapshot] | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # not known before a scrape; keeps registration free of side effects

    def collect(self) -> Iterator[Metric]:
        ok, _ = self.metrics.health.check()
        yield GaugeMetricFamily("errord_healthy", "1 while the pipeline runs (see /healthz)", value=int(ok))
        snap = self._take()
        if snap is None:
            return
        yield GaugeMetricFamily(
            "errord_notices_pending", "Notice deliveries waiting, all targets", value=snap.pending_notices
        )
        yield GaugeMetricFamily(
            "errord_mongo_writes_pending", "Incident writes waiting for MongoDB", value=snap.pending_mongo
        )
        yield GaugeMetricFamily("errord_incidents_open", "Open incidents", value=snap.open_incidents)
        yield GaugeMetricFamily(
            "errord_notices_held", "Notices a storm limit holds for a digest, all targets", value=snap.held_notices
        )
        # counted in the journal (limit_state), so they survive restarts like the notices
        yield CounterMetricFamily("errord_digests_sent", "Digests sent, all targets", value=snap.digests[0])
        yield CounterMetricFamily(
            "errord_notices_digested", "Notices sent inside a digest, all targets", value=snap.digests[1]
        )
        behind = GaugeMetricFamily("errord_file_bytes_behind", "Bytes not read yet, per followed file", labels=["path"])
        for path, n in snap.files:
            behind.add_metric([path], n)
        yield behind

    def _take(self) -> Snapshot | None:
        loop, fn = self.loop, self.snapshot
        if loop is None or fn is None or loop.is_closed():
            return None
        fut: concurrent.futures.Future[Snapshot] = concurrent.futures.Future()

        def run() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn())
            except BaseException as exc:  # reported to the scrape thread, not raised in the loop
                fut.set_exception(exc)

        try:
            loop.call_soon_threadsafe(run)
            return fut.result(SNAPSHOT_TIMEOUT)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            logger.warning("metrics: the event loop did not answer within %.0fs", SNAPSHOT_TIMEOUT)
        except RuntimeError:  # loop closed meanwhile
            pass
        except Exception:
            logger.exception("metrics: snapshot failed")
        return None


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr (scrapes every few seconds would drown the daemon's log)."""

    def log_message(self, format: str, *args: Any) -> None:  # "format": the stdlib's signature
        pass


class _ThreadingServer(WSGIServer):
    daemon_threads = True
    allow_reuse_address = True

    def process_request(self, request: Any, client_address: Any) -> None:
        # One thread per request (as socketserver.ThreadingMixIn), so a slow scrape
        # never blocks /healthz.
        t = threading.Thread(target=self._handle, args=(request, client_address), daemon=True)
        t.start()

    def _handle(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


class MetricsServer:
    """Serves ``/metrics`` (Prometheus text) and ``/healthz`` on ``host:port`` in a thread."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.host, self.port = host, port
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (the real port when 0 was asked)."""
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Bind and serve; a bind failure is an ``ErrordError`` (a bad start)."""
        prom = make_wsgi_app(self.metrics.registry)
        health = self.metrics.health

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == "/healthz":
                ok, reason = health.check()
                start_response(
                    "200 OK" if ok else "503 Service Unavailable",
                    [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")],
                )
                return [reason.encode() + b"\n"]
            return prom(environ, start_response)  # type: ignore[no-any-return]  # prometheus_client: untyped WSGI app

        try:
            family = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
            server_cls = type("_Server", (_ThreadingServer,), {"address_family": family})
            self._httpd = make_server(self.host, self.port, app, server_cls, handler_class=_QuietHandler)
        except OSError as exc:
            raise ErrordError(f"metrics: cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="errord-metrics", daemon=True
        )
        self._thread.start()
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        logger.info("metrics on http://%s:%d/metrics, health on /healthz", shown, port)

    def stop(self) -> None:
        """Stop serving and close the socket (returns within about a poll interval)."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(2.0)
        self._httpd = self._thread = None
