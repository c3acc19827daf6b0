"""A small local HTTP receiver for notification tests (Apprise ``json://`` targets).

    with Receiver() as rx:
        url = rx.url("/alerts")            # json://127.0.0.1:PORT/alerts
        ...                                # point a NotifySink / the daemon at it
        rx.wait_for(2, timeout=5)          # two notices accepted
        assert rx.delivered[0].body["type"] == "failure"

Apprise's ``json://`` plugin POSTs ``{"version": "1.0", "title": ..., "message": ...,
"attachments": [], "type": "failure" | "warning" | "success" | "info"}`` with
``Content-Type: application/json``.

Failure switches, settable at any time from the test thread:

- ``status``: the HTTP status answered (default 200); ``script``: a list of statuses
  used first, one per request (``rx.script = [503, 503]`` fails twice, then ``status``);
- ``hang``: seconds to sleep before answering (a client with a shorter read timeout
  gives up; the request is still recorded, with ``delivered=False``);
- ``headers``: extra response headers sent with every answer (``{"Retry-After": "3"}``);
- ``keep_alive=True``: HTTP/1.1, connections stay open between requests (``connections``
  counts those accepted);
- ``stop()`` / ``start()``: close / reopen the listening socket on the same port, so
  clients see "connection refused" in between.

Every request is recorded in ``received``; ``delivered`` holds those answered 2xx
without hanging, i.e. those the client saw accepted.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["Receiver", "Request"]


@dataclass
class Request:
    """One request the receiver saw."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: Any  # parsed JSON, or None when the body was not JSON
    status: int  # what the receiver answered (or was about to answer)
    hung: float  # seconds it waited before answering
    at: float = field(default_factory=time.monotonic)

    @property
    def delivered(self) -> bool:
        """True when the client saw this request accepted (2xx, no hang)."""
        return 200 <= self.status < 300 and self.hung == 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: Receiver

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.receiver._cond:
            self.receiver.connections += 1
        super().process_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def _handle(self) -> None:
        rx = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        status, hang = rx._next_answer()
        req = Request(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            raw=raw,
            body=body,
            status=status,
            hung=hang,
        )
        rx._record(req)
        if hang:
            # Released early by stop()/close() so a test never waits on a hung handler.
            rx._release.wait(hang)
        try:
            payload = b'{"ok": true}' if status < 300 else b'{"ok": false}'
            self.send_response(status)
            for name, value in dict(rx.headers).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            pass  # the client gave up (timeout) and closed the socket

    do_POST = _handle
    do_PUT = _handle
    do_GET = _handle


class _KeepAliveHandler(_Handler):
    protocol_version = "HTTP/1.1"  # connections stay open between requests

    def setup(self) -> None:
        super().setup()
        # the headers and the body are two writes: without this, Nagle holds the body
        # until the client's delayed ACK (~40 ms a request on a kept-alive connection)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Receiver:
    """A threaded HTTP server on 127.0.0.1 recording every request; see the module doc."""

    def __init__(self, *, status: int = 200, hang: float = 0.0, keep_alive: bool = False) -> None:
        self.keep_alive = keep_alive  # HTTP/1.1: a client may send many requests on one connection
        self.connections = 0  # TCP connections accepted
        self.status = status
        self.hang = hang
        self.script: list[int] = []
        self.headers: dict[str, str] = {}
        self.received: list[Request] = []
        self._cond = threading.Condition()
        self._release = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.start()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Listen (again) on the same port; the first call picks a free port."""
        if self._server is not None:
            return
        self._release.clear()
        server = _Server(("127.0.0.1", self.port), _KeepAliveHandler if self.keep_alive else _Handler)
        server.receiver = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the listening socket: clients now get "connection refused"."""
        server, self._server = self._server, None
        if server is None:
            return
        self._release.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    close = stop

    def __enter__(self) -> Receiver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    # -- addresses -------------------------------------------------------------------

    def url(self, path: str = "/", *, scheme: str = "json") -> str:
        """An Apprise URL for this receiver, e.g. ``json://127.0.0.1:PORT/path``."""
        if not path.startswith("/"):
            path = "/" + path
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def http_url(self, path: str = "/") -> str:
        if not path.startswith("/"):
            path = "/" + path
        return f"http://127.0.0.1:{self.port}{path}"

    # -- inspection --------------------------------------------------------------------

    @property
    def delivered(self) -> list[Request]:
        """Requests the client saw accepted, in arrival order."""
        with self._cond:
            return [r for r in self.received if r.delivered]

    def bodies(self, *, delivered: bool = True) -> list[Any]:
        reqs = self.delivered if delivered else self.snapshot()
        return [r.body for r in reqs]

    def snapshot(self) -> list[Request]:
        with self._cond:
            return list(self.received)

    def wait_for(self, n: int, timeout: float = 30.0, *, delivered: bool = True) -> list[Request]:
        """Wait until ``n`` requests were accepted (or, ``delivered=False``, received).

        Returns them; raises ``TimeoutError`` naming what did arrive.
        """
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                reqs = [r for r in self.received if r.delivered or not delivered]
                if len(reqs) >= n:
                    return reqs
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"wanted {n} {'delivered' if delivered else 'received'} requests on port "
                        f"{self.port}, got {len(reqs)} (of {len(self.received)} received): "
                        f"{[(r.status, r.body) for r in self.received]}"
                    )
                self._cond.wait(left)

    def clear(self) -> None:
        with self._cond:
            self.received.clear()

    # -- handler side ------------------------------------------------------------------

    def _next_answer(self) -> tuple[int, float]:
        with self._cond:
            status = self.script.pop(0) if self.script else self.status
            return status, self.hang

    def _record(self, req: Request) -> None:
        with self._cond:
            self.received.append(req)
            self._cond.notify_all()
