"""The notify helper's plain-HTTP path (sinks.plainhttp, issue 13): the requests of
Apprise's plugins to an ``http://`` host go out on a kept connection of the sending
thread, as ``requests`` would have sent them, and come back as the ``requests.Response``
it would have made; what it does not take goes to ``requests`` unchanged. Against a real
server on loopback, compared with what ``requests`` itself sends and answers."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from errord.sinks import plainhttp
from errord.sinks.sessions import restore, reuse_connections


class Seen:
    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes, conn: int) -> None:
        self.method, self.path, self.headers, self.body, self.conn = method, path, headers, body, conn


class Server:
    """HTTP/1.1 on loopback: records each request (with which TCP connection it came on);
    ``answers`` maps a path to (status, extra headers, body); ``close_after``: the server
    closes each connection after that many requests."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.answers: dict[str, tuple[int, list[tuple[str, str]], bytes]] = {}
        self.close_after = 0
        self.stall = threading.Event()  # set: answers wait until it is cleared (a read timeout)
        server = self
        count = iter(range(1, 10**9))

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.conn_no = next(count)
                self.served = 0

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size) if size else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.seen.append(Seen(self.command, self.path, headers, body, self.conn_no))
                while server.stall.is_set():
                    time.sleep(0.05)
                status, extra, payload = server.answers.get(self.path.split("?")[0], (200, [], b'{"ok": true}'))
                self.served += 1
                self.send_response(status)
                for k, v in extra:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                if server.close_after and self.served >= server.close_after:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _any

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.stall.clear()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def shim(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """reuse_connections() on; yields the URLs that went through requests' own path."""
    through_requests: list[str] = []
    original = requests.Session.request

    def counted(self: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        through_requests.append(url)
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", counted)
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    reuse_connections()
    try:
        yield through_requests
    finally:
        restore()
        plainhttp.close_all()


def test_what_is_sent_is_what_requests_sends_on_one_kept_connection(server: Server, shim: list[str]) -> None:
    """The plugins' call (Apprise's json://: data=str, params, headers, auth, timeout
    tuple, allow_redirects) sent here three times on one connection; the server sees the
    same method, target, headers (but Accept-Encoding) and body as from requests itself."""
    call: dict[str, Any] = {
        "data": '{"title": "db_down"}',
        "params": {"a": "1 2", "b": "ü"},
        "headers": {"User-Agent": "Apprise", "Content-Type": "application/json"},
        "auth": ("user", "pässword"),
        "verify": True,
        "timeout": (4, 5.5),
        "allow_redirects": False,
    }
    answers = [requests.request("POST", server.url("/hook"), **call) for _ in range(3)]
    assert shim == []  # none went through requests
    lean = server.seen[:]
    assert [s.conn for s in lean] == [lean[0].conn] * 3
    restore()
    plainhttp.close_all()
    with requests.Session() as session:
        reference = session.request("POST", server.url("/hook"), **call)
    ref = server.seen[-1]
    for got in lean:
        assert (got.method, got.path, got.body) == (ref.method, ref.path, ref.body)
        assert got.path == "/hook?a=1+2&b=%C3%BC"
        assert {k: v for k, v in got.headers.items() if k != "accept-encoding"} == {
            k: v for k, v in ref.headers.items() if k != "accept-encoding"
        }
        assert got.headers["accept-encoding"] == "identity"
    for r in answers:
        assert isinstance(r, requests.Response)
        assert (r.status_code, r.reason, r.content, r.text, r.json()) == (
            reference.status_code,
            reference.reason,
            reference.content,
            reference.text,
            reference.json(),
        )
        assert r.headers["content-length"] == reference.headers["Content-Length"] and r.ok
        assert r.url == reference.url and b"".join(r.iter_content(4)) == reference.content


def test_a_closed_connection_is_replaced_and_nothing_is_sent_twice(server: Server, shim: list[str]) -> None:
    server.close_after = 1  # the server closes after each answer (Connection: close)
    for k in range(3):
        assert requests.post(server.url(f"/n{k}"), data=b"{}", timeout=5).status_code == 200
    assert [s.path for s in server.seen] == ["/n0", "/n1", "/n2"]
    assert len({s.conn for s in server.seen}) == 3 and shim == []


def test_a_connection_the_server_dropped_while_idle_is_not_used(server: Server, shim: list[str]) -> None:
    assert requests.post(server.url("/a"), data=b"1", timeout=5).status_code == 200
    (conn,) = plainhttp._connections().values()
    assert conn.sock is not None
    conn.sock.shutdown(socket.SHUT_WR)  # the server reads EOF and closes its end: ours reads EOF
    time.sleep(0.2)
    assert plainhttp._dropped(conn)
    assert requests.post(server.url("/b"), data=b"2", timeout=5).status_code == 200
    assert [s.path for s in server.seen] == ["/a", "/b"] and len({s.conn for s in server.seen}) == 2


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"json": {"x": 1}}, "json="),
        ({"data": {"x": "1"}}, "a form"),
        ({"data": "ünïcode"}, "a str body beyond ASCII"),
        ({"files": {"f": b"x"}}, "files"),
        ({"stream": True}, "streaming"),
        ({"auth": requests.auth.HTTPDigestAuth("u", "p")}, "an auth object"),
        ({"proxies": {"http": "http://127.0.0.1:9"}}, "a proxy given"),
        ({"headers": {"X-Bytes": b"v"}}, "a bytes header"),
        ({"headers": {"X-Split": "a\r\nX-Injected: 1"}}, "a header with a line break"),
        ({"headers": {"accept-encoding": "gzip"}}, "an encoding asked for"),
        ({"headers": {"X-Tags": "⚠"}}, "a header beyond latin-1"),
        ({"headers": [("X-List", "1")]}, "headers as a list of pairs"),
    ],
)
def test_what_is_not_taken_goes_to_requests_unchanged(
    server: Server, shim: list[str], kwargs: dict[str, Any], why: str
) -> None:
    if "proxies" in kwargs:
        kwargs["proxies"] = {"http": server.url("")}  # a proxy that answers: the full URL is the target
    if why in ("a header beyond latin-1", "headers as a list of pairs"):  # requests itself fails on these
        with pytest.raises((UnicodeEncodeError, AttributeError)):
            requests.post(server.url("/x"), timeout=5, **kwargs)
        assert shim == [server.url("/x")]
        return
    if "X-Split" in kwargs.get("headers", {}):
        with pytest.raises(requests.exceptions.InvalidHeader):  # refused by requests, as ever
            requests.post(server.url("/x"), timeout=5, **kwargs)
        assert shim == [server.url("/x")] and server.seen == []
        return
    r = requests.post(server.url("/x"), timeout=5, **kwargs)
    assert r.status_code == 200, why
    assert shim == [server.url("/x")], why


def test_https_and_urls_with_credentials_go_to_requests(shim: list[str]) -> None:
    for url in ("https://127.0.0.1:9/x", "http://u:p@127.0.0.1:9/x"):
        with pytest.raises(requests.ConnectionError):
            requests.post(url, data=b"{}", timeout=2)
    for url in ("http://[::1/x", "http://127.0.0.1:99999/x"):  # not URLs: requests raises what it raises
        with pytest.raises((requests.RequestException, ValueError)):
            requests.post(url, data=b"{}", timeout=2)
    assert shim == ["https://127.0.0.1:9/x", "http://u:p@127.0.0.1:9/x", "http://[::1/x", "http://127.0.0.1:99999/x"]


def test_the_netrc_gives_the_credentials_when_the_call_gives_none(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login u password p\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    reuse_connections()
    try:
        requests.post(server.url("/n"), data=b"{}", timeout=5)
        requests.post(server.url("/given"), data=b"{}", auth=("a", "b"), timeout=5)
    finally:
        restore()
        plainhttp.close_all()
    assert server.seen[0].headers["authorization"] == "Basic dTpw"  # u:p
    assert server.seen[1].headers["authorization"] == "Basic YTpi"  # the call's a:b


def test_the_environment_s_proxy_sends_it_through_requests(
    server: Server, shim: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", server.url(""))
    r = requests.post("http://target.invalid/p", data=b"{}", timeout=5)
    assert r.status_code == 200 and shim == ["http://target.invalid/p"]
    assert server.seen[0].path == "http://target.invalid/p"  # the proxy got the full URL


def test_a_redirect_is_sent_again_through_requests_which_follows_it(server: Server, shim: list[str]) -> None:
    server.answers["/old"] = (307, [("Location", "/new")], b"")
    r = requests.post(server.url("/old"), data=b'{"n": 1}', timeout=5)
    assert r.status_code == 200 and r.url == server.url("/new")
    assert [(s.method, s.path, s.body) for s in server.seen] == [
        ("POST", "/old", b'{"n": 1}'),  # here: only a redirect came back
        ("POST", "/old", b'{"n": 1}'),  # requests: the same request, then the redirect followed
        ("POST", "/new", b'{"n": 1}'),
    ]
    r = requests.post(server.url("/old"), data=b"{}", timeout=5, allow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/new" and r.is_redirect  # not followed


def test_repeated_headers_and_the_encoding_read_as_requests_reads_them(server: Server, shim: list[str]) -> None:
    server.answers["/h"] = (
        503,
        [("X-A", "1"), ("X-A", "2"), ("Content-Type", "text/plain; charset=latin-1")],
        "café".encode("latin-1"),
    )
    r = requests.get(server.url("/h"), timeout=5)
    assert shim == []
    assert r.status_code == 503 and r.reason == "Service Unavailable" and not r.ok
    assert r.headers["x-a"] == "1, 2" and r.encoding == "latin-1" and r.text == "café"
    with pytest.raises(requests.HTTPError):
        r.raise_for_status()


def test_failures_raise_requests_exceptions(server: Server, shim: list[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens on it
    with pytest.raises(requests.ConnectionError):
        requests.post(f"http://127.0.0.1:{port}/x", data=b"{}", timeout=5)
    server.stall.set()
    try:
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.post(server.url("/slow"), data=b"{}", timeout=(5, 0.3))
    finally:
        server.stall.clear()
    assert shim == []
    assert plainhttp._connections() == {}  # a failed connection is not kept
    assert requests.post(server.url("/after"), data=b"{}", timeout=5).status_code == 200
    assert [s.path for s in server.seen] == ["/slow", "/after"]


def test_the_sink_learns_of_a_send_here_what_it_learns_through_requests(server: Server, shim: list[str]) -> None:
    """``sinks.capture`` (a 429's Retry-After, why a send failed) sees the sends made here."""
    from errord.sinks.capture import capturing

    server.answers["/limited"] = (429, [("Retry-After", "3")], b"")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with capturing() as seen:
        assert requests.post(server.url("/limited"), data=b"{}", timeout=5).status_code == 429
        assert requests.post(server.url("/fine"), data=b"{}", timeout=5).status_code == 200
        with pytest.raises(requests.ConnectionError):
            requests.post(f"http://127.0.0.1:{port}/x", data=b"{}", timeout=5)
    assert seen.responses == [(429, 3.0), (200, None)]
    assert seen.errors == ["Connection refused"]
    assert shim == []


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE", "OPTIONS", "PUT", "PATCH", "POST"])
def test_a_request_without_a_body_has_the_headers_requests_gives_it(
    server: Server, shim: list[str], method: str
) -> None:
    r = requests.request(method, server.url("/m"), timeout=5)
    assert shim == [] and r.status_code == 200
    lean = server.seen[-1]
    restore()
    plainhttp.close_all()
    with requests.Session() as session:
        session.request(method, server.url("/m"), timeout=5)
    ref = server.seen[-1]
    assert (lean.method, lean.body) == (ref.method, ref.body) == (method, b"")
    assert {k: v for k, v in lean.headers.items() if k != "accept-encoding"} == {
        k: v for k, v in ref.headers.items() if k != "accept-encoding"
    }


def test_a_given_content_length_is_replaced_by_the_body_s(server: Server, shim: list[str]) -> None:
    r = requests.post(server.url("/len"), data=b"123456", headers={"Content-Length": "3"}, timeout=5)
    assert r.status_code == 200 and shim == []
    assert server.seen[0].body == b"123456" and server.seen[0].headers["content-length"] == "6"


def test_a_3xx_without_a_location_is_the_answer_and_sent_once(server: Server, shim: list[str]) -> None:
    server.answers["/odd"] = (302, [], b"")
    r = requests.post(server.url("/odd"), data=b"{}", timeout=5)
    assert r.status_code == 302 and shim == [] and [s.path for s in server.seen] == ["/odd"]


def test_a_refused_header_leaves_no_half_used_connection(server: Server, shim: list[str]) -> None:
    assert requests.post(server.url("/a"), data=b"{}", timeout=5).status_code == 200
    with pytest.raises((requests.RequestException, ValueError)):
        requests.post(server.url("/b"), data=b"{}", headers={"X:Y": "1"}, timeout=5)
    assert requests.post(server.url("/c"), data=b"{}", timeout=5).status_code == 200
    assert [s.path for s in server.seen] == ["/a", "/c"]


def test_no_proxy_alone_keeps_the_lean_path(server: Server, shim: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "localhost")
    assert requests.post(server.url("/np"), data=b"{}", timeout=5).status_code == 200
    assert shim == []
