"""One threaded HTTP server for the JSON API, the status page, ``/metrics`` and
``/healthz`` (CONTRACT §10), beside the daemon's event loop.

Each request runs in a thread of its own with read-only journal connections of its own,
so no request can hold up the batch loop; what a hostile client can do is bounded: a
connection that sends nothing is closed after ``IO_TIMEOUT``, a body over ``MAX_BODY`` is
refused (413) unread, and beyond ``MAX_CONNECTIONS`` at once a connection is answered 503
at once. The standard library's server: nothing to add for this (measured: see README).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from errord.config import HttpConfig, RunConfig
from errord.errors import ErrordError
from errord.health import Health
from errord.http.api import Reply, Request, error, route
from errord.http.auth import is_loopback, token_ok
from errord.http.page import render_page

__all__ = ["ApiServer"]

logger = logging.getLogger(__name__)

IO_TIMEOUT = 10.0  # seconds a connection may stay silent (a slowloris is cut here)
MAX_BODY = 64 << 10  # bytes of a request body
MAX_CONNECTIONS = 64  # requests served at once; more are answered 503 at once
DEADLINE_FACTOR = 3  # a whole request (one per connection) may take 3 x IO_TIMEOUT
WORKERS = 2  # threads that build answers (reads, JSON, the page): few, so few malloc arenas

try:  # glibc: hand the freed pages of a large answer back to the system
    _malloc_trim: Callable[[int], int] | None = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):  # not glibc
    _malloc_trim = None


class ApiServer:
    """Serves ``[http] listen``; ``config()`` is the daemon's current config (reloads
    apply), ``metrics_app`` the Prometheus text when this listener also serves /metrics."""

    def __init__(
        self,
        host: str,
        port: int,
        config: Callable[[], RunConfig],
        health: Health,
        metrics_text: Callable[[], bytes] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.config = config
        self.health = health
        self.metrics_text = metrics_text
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        # who may do what is judged by where it is bound (CONTRACT §10), not by what a
        # reload says: a listen change takes a restart; until then the bound [http] holds
        self.loopback = is_loopback(host)
        self._http: HttpConfig | None = None
        self._warned: object = None
        self._last_wrong = 0.0  # time.monotonic() of the last "wrong token" warning
        # Connection threads only talk HTTP; answers are built by WORKERS threads, so the
        # memory a 10,000-incident answer takes is reused, not spread over one malloc
        # arena per connection thread (measured: +31 MB after 100 requests without this).
        self.workers = concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="errord-http-work")

    @property
    def address(self) -> tuple[str, int]:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def http_for(self, config: RunConfig) -> HttpConfig:
        """The ``[http]`` this listener serves by: the config's while its ``listen`` is the
        bound one (a reload may change the token), else the one it started with."""
        new = config.http
        if new is not None and (self._http is None or new.listen == self._http.listen):
            self._http = new
        elif self._warned is not new:
            self._warned = new
            logger.warning("[http] listen changed or removed by a reload: takes a restart; serving as before")
        assert self._http is not None
        return self._http

    def wrong_token(self, client: str, method: str, path: str) -> None:
        """Logged without the token, at most every 10 s (a client must not flood the log)."""
        now = time.monotonic()
        if now - self._last_wrong >= 10.0:
            self._last_wrong = now
            logger.warning("http: wrong token from %s for %s %s", client, method, path[:80])

    def start(self) -> None:
        """Bind and serve; a bind failure is an ``ErrordError`` (a bad start)."""
        self.http_for(self.config())
        server = self
        handler = type("_Handler", (_Handler,), {"server_ref": server})
        try:
            family = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
            cls = type("_Server", (_Server,), {"address_family": family, "slots": self._slots})
            self._httpd = cls((self.host, self.port), handler)
        except OSError as exc:
            raise ErrordError(f"http: cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.5}, name="errord-http", daemon=True
        )
        self._thread.start()
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        logger.info("status page on http://%s:%d/, API on /api/v1/", shown, port)

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(2.0)
        self._httpd = self._thread = None
        self.workers.shutdown(wait=False, cancel_futures=True)

    def build(self, make: Callable[[], Reply]) -> Reply:
        """``make()`` in a worker thread (then the freed memory goes back to the system)."""

        def run() -> Reply:
            try:
                return make()
            finally:
                if _malloc_trim is not None:
                    _malloc_trim(0)

        return self.workers.submit(run).result()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    slots: threading.BoundedSemaphore

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):  # too many at once: answered, not queued
            with contextlib.suppress(OSError):
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 32\r\nConnection: close\r\n\r\n"
                    b'{"error": "too many requests"}\r\n'
                )
            self.shutdown_request(request)
            return
        t = threading.Thread(target=self._serve_one, args=(request, client_address), daemon=True)
        t.start()

    def _serve_one(self, request: Any, client_address: Any) -> None:
        # A deadline for the whole request, not only per read: a client that trickles a
        # byte now and then is cut too, so MAX_CONNECTIONS of them cannot hold every slot
        cut = threading.Timer(_Handler.timeout * DEADLINE_FACTOR, _cut, (request,))
        cut.daemon = True
        cut.start()
        try:
            self.finish_request(request, client_address)
        except Exception:  # a client that went away mid-answer: its problem
            pass
        finally:
            cut.cancel()
            self.shutdown_request(request)
            self.slots.release()


def _cut(request: Any) -> None:
    with contextlib.suppress(OSError):
        request.shutdown(socket.SHUT_RDWR)


def _cross_site(headers: Any) -> str | None:
    """Why a write is refused as cross-site, or None: a browser sends ``Origin`` with a
    POST from another site, and only a page of this host may write; and a write's body
    must be JSON (a plain HTML form cannot send ``application/json``)."""
    origin = headers.get("Origin")
    if origin and origin != "null":
        if urlsplit(origin).netloc != headers.get("Host", ""):
            return f"cross-site request from {origin[:80]} refused"
    elif origin == "null":
        return "cross-site request refused"
    ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if headers.get("Content-Length", "0") not in ("", "0") and ctype != "application/json":
        return "a write's body must be application/json"
    return None


class _Handler(BaseHTTPRequestHandler):
    server_ref: ApiServer
    timeout = IO_TIMEOUT  # socket timeout: a silent connection is dropped
    protocol_version = "HTTP/1.1"
    server_version = "errord"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # no access log on stderr
        pass

    def handle_expect_100(self) -> bool:
        return True  # no "100 Continue" before the token is checked (it is, before the body)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_HEAD(self) -> None:
        self._serve("GET", head=True)

    def _serve(self, method: str, head: bool = False) -> None:
        srv = self.server_ref
        config = srv.config()
        url = urlsplit(self.path)
        path = url.path
        if path in ("/metrics", "/healthz"):
            return self._send(self._plain(path), head)
        http = srv.http_for(config)
        authed = token_ok(self.headers.get("Authorization"), http.token) if http.token else False
        if self.headers.get("Authorization") and http.token and not authed:
            srv.wrong_token(self.client_address[0], method, path)
        writes = method in ("POST", "DELETE")
        loopback = srv.loopback
        # CONTRACT §10's table; checked before the body is read
        if writes and not http.token:
            return self._send(error(403, "writes need [http] token to be set"), head, close=True)
        if (writes or not loopback) and not authed:
            reply = error(401, "a token is required: Authorization: Bearer TOKEN")
            if path == "/" or not path.startswith("/api/"):
                reply.headers.append(("WWW-Authenticate", 'Basic realm="errord"'))
            return self._send(reply, head, close=True)
        if writes and (reason := _cross_site(self.headers)):  # a form or script elsewhere (CSRF)
            return self._send(error(403, reason), head, close=True)
        length = self.headers.get("Content-Length")
        body = b""
        if length:
            try:
                n = int(length)
            except ValueError:
                return self._send(error(400, "Content-Length: not a number"), head, close=True)
            if n < 0 or n > MAX_BODY:
                return self._send(error(413, f"body: over {MAX_BODY} bytes"), head, close=True)
            body = self.rfile.read(n)
        elif self.headers.get("Transfer-Encoding"):
            return self._send(error(411, "send a Content-Length"), head, close=True)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        if path == "/":
            if method != "GET":
                return self._send(error(405, f"{method} not allowed here"), head)
            nonce = secrets.token_urlsafe(16)
            page = srv.build(lambda: Reply(200, render_page(config, nonce).encode(), "text/html; charset=utf-8"))
            # no script at all; the one inline style sheet by its nonce; nothing from elsewhere
            csp = f"default-src 'none'; style-src 'nonce-{nonce}'; base-uri 'none'; form-action 'none'"
            page.headers.append(("Content-Security-Policy", csp + "; frame-ancestors 'none'"))
            return self._send(page, head)
        if path.startswith("/api/v1/") or path == "/api/v1":
            try:
                request = Request(method, path, query, body)
                # reads in the workers; a write waits up to 10 s for the daemon: its own thread
                reply = srv.build(lambda: route(config, request)) if method == "GET" else route(config, request)
            except Exception as exc:  # a bug must not kill the thread silently, nor the daemon
                logger.exception("http: %s %s failed", method, path[:80])
                reply = error(500, f"internal error: {type(exc).__name__}")
            return self._send(reply, head)
        return self._send(error(404, f"no such page: {path[:80]}"), head)

    def _plain(self, path: str) -> Reply:
        srv = self.server_ref
        if path == "/healthz":
            ok, reason = srv.health.check()
            return Reply(200 if ok else 503, reason.encode() + b"\n", "text/plain; charset=utf-8")
        if srv.metrics_text is None:
            return error(404, "no metrics here: they are served on [metrics] listen")
        return Reply(200, srv.metrics_text(), "text/plain; version=0.0.4; charset=utf-8")

    def _send(self, reply: Reply, head: bool, close: bool = True) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in reply.headers:
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if not head:
            self.wfile.write(reply.body)
