"""Plain ``http://`` requests of Apprise's plugins on kept-alive ``http.client`` connections.

Why (issue 13): in a burst of notices to a local ``json://`` target, ``requests`` and
urllib3 (preparing the request, merging the session's settings, the pool, the response
wrappers) were ~30% of the notify helper's CPU per notice, three times what
``http.client`` itself takes to send the request and read the answer (measured alone:
1.4 ms against 0.47 ms per POST). ``sessions.request`` hands each request here first;
what this takes it sends on the calling thread's own connection to that host and answers
with a ``requests.Response``, and what it does not take goes to ``requests`` as before.

What it takes: ``http://`` (no TLS: certificates, client certificates and their settings
stay ``requests``'), a URL of printable ASCII with no credentials in it, no proxy for it
(from the environment, as ``requests`` finds them, or given), a body of ``bytes`` or an
ASCII ``str`` (``data=``; not ``json=``, a form dict or ``files=``), no streaming, no
hooks, ``auth`` of none (then the ``.netrc``'s, as a ``Session`` finds it) or a (user,
password) pair (Basic, as ``requests`` makes it); query ``params`` are encoded into the
URL as ``requests`` encodes them. Those are the requests of Apprise's JSON, XML, form and most
webhook plugins to a plain-HTTP host. The request is what ``requests`` would send (its
default headers, the plugin's over them, the URL requoted as it requotes it), except
that it asks for no compression (``Accept-Encoding: identity``: no gzip to undo; a
plugin that asks for an encoding itself goes to ``requests``).

The answer: status, reason, headers, body, url, encoding as ``requests`` sets them. A
redirect (a 3xx with a ``Location``) is not followed here: the request is sent again
through ``requests``, which follows it as it always did (the first answer was only a
redirect). A connection kept
from an earlier request is checked before it is used (closed or readable by the peer:
a new one, as urllib3 checks its pool); a request is never sent twice on a failure:
socket errors raise ``requests.ConnectionError`` / ``ConnectTimeout`` / ``ReadTimeout``,
a malformed answer ``requests.ConnectionError``, as ``requests`` would, and the sink
retries as it retries any failed send. What the sink learns of a send through
``requests.Session.send`` (a response's status and ``Retry-After``, why a send got no
response: ``sinks.capture``) it learns of one sent here too.
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.auth
import requests.structures
import requests.utils

from errord.sinks import capture

__all__ = ["close_all", "send"]

# the keyword arguments a request may carry and still be taken here (their values are checked)
_TAKEN = frozenset(
    {"data", "headers", "timeout", "verify", "auth", "allow_redirects", "params", "cert", "proxies", "stream"}
)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

_local = threading.local()


def _connections() -> dict[tuple[str, int], http.client.HTTPConnection]:
    found: dict[tuple[str, int], http.client.HTTPConnection] | None = getattr(_local, "connections", None)
    if found is None:
        found = _local.connections = {}
    return found


def close_all() -> None:
    """Close the calling thread's kept connections (tests; a worker that stops)."""
    for conn in _connections().values():
        conn.close()
    _connections().clear()


def _target(url: str, proxies_for: Any) -> tuple[str, int, str, str] | None:
    """(host, port, request target, the URL requoted as requests sends it) when ``url``
    is one taken here, else None."""
    if not url.startswith("http://") or not url.isascii() or not url.isprintable() or " " in url:
        return None
    try:
        quoted = requests.utils.requote_uri(url)
        parts = urlsplit(quoted)
        port = parts.port or 80
    except (ValueError, requests.RequestException):  # requests' path says what is wrong
        return None
    if "@" in parts.netloc or not parts.hostname:
        return None
    if requests.utils.select_proxy(url, proxies_for(url)):  # the adapter's own test
        return None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port, target, quoted


def _body(data: Any) -> tuple[bool, bytes | None]:
    """(taken, the body as bytes or None for none)."""
    if data is None or data == b"" or data == "":
        return True, None
    if isinstance(data, bytes):
        return True, data
    if isinstance(data, str) and data.isascii():
        return True, data.encode("ascii")
    return False, None


def _timeouts(timeout: Any) -> tuple[float | None, float | None] | None:
    if timeout is None or isinstance(timeout, (int, float)):
        return timeout, timeout
    if isinstance(timeout, tuple) and len(timeout) == 2:
        return timeout[0], timeout[1]
    return None


def _headers(given: Any, auth: Any) -> dict[str, str] | None:
    headers = requests.utils.default_headers()  # requests' own, under the plugin's
    headers["Accept-Encoding"] = "identity"
    if given is not None and not isinstance(given, Mapping):
        return None  # a list of pairs and the like: requests' path
    for key, value in (given or {}).items():
        if isinstance(key, str) and key.lower() == "accept-encoding":
            return None  # a compressed answer is requests' to undo
        if value is None:
            headers.pop(key, None)  # as requests merges: None removes a default
        elif isinstance(key, str) and isinstance(value, str) and _valid(key, value):
            headers[key] = value
        else:
            return None  # bytes headers, line breaks and the like: requests' path
    if auth is not None:
        if not (isinstance(auth, tuple) and len(auth) == 2):
            return None
        headers["Authorization"] = requests.auth._basic_auth_str(*auth)
    return dict(headers)


def _valid(key: str, value: str) -> bool:
    """A header requests would send as it is and http.client can encode (latin-1);
    anything else goes to requests, which refuses or sends it as before."""
    try:
        requests.utils.check_header_validity((key, value))
        key.encode("latin-1")
        value.encode("latin-1")
    except (requests.RequestException, ValueError):
        return False
    return True


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether a kept connection can no longer be used: closed here, or readable (the
    peer closed it, or sent what nobody asked for), as urllib3 checks its pool."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def send(method: str, url: str, kwargs: dict[str, Any], proxies_for: Any, netrc_for: Any) -> requests.Response | None:
    """The answer to the request, sent here; None when it is not one taken here (then
    nothing was sent). ``proxies_for(url)``, ``netrc_for(url)``: the proxies and the
    ``.netrc`` credentials the environment gives the URL (what a ``Session`` looks up)."""
    if not kwargs.keys() <= _TAKEN or kwargs.get("cert") or kwargs.get("stream") or kwargs.get("proxies"):
        return None
    params = kwargs.get("params")
    if params:  # encoded and appended as requests does
        prepared = requests.PreparedRequest()
        try:
            prepared.prepare_url(url, params)
        except requests.RequestException:
            return None  # requests' path says what is wrong with it
        url = str(prepared.url)
    where = _target(url, proxies_for)
    taken, body = _body(kwargs.get("data"))
    timeouts = _timeouts(kwargs.get("timeout"))
    if where is None or not taken or timeouts is None:
        return None
    auth = kwargs.get("auth") or netrc_for(url)  # as a Session does when the call gives none
    headers = _headers(kwargs.get("headers"), auth)
    if headers is None:
        return None
    host, port, target, url = where
    method = method.upper()
    for k in [k for k in headers if k.lower() == "content-length"]:
        del headers[k]  # requests sets it from the body, whatever the plugin said
    if body is not None:
        headers["Content-Length"] = str(len(body))
    elif method not in ("GET", "HEAD"):
        headers["Content-Length"] = "0"
    started = time.monotonic()
    try:
        answer = _exchange(host, port, method, target, body, headers, timeouts)
    except requests.RequestException as exc:
        capture.saw_error(exc)  # why the send failed, for its log line (as Session.send's wrapper)
        raise
    redirect = answer.status in _REDIRECTS and any(name.lower() == "location" for name, _ in answer.headers)
    if redirect and kwargs.get("allow_redirects", True):
        return None  # requests sends it and follows the redirect, as before
    r = _response(answer, url, started)
    capture.saw_response(r.status_code, r.headers.get("Retry-After"))  # a 429's Retry-After
    return r


class _Answer:
    __slots__ = ("body", "headers", "reason", "status")

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status, self.reason, self.headers, self.body = status, reason, headers, body


def _exchange(
    host: str,
    port: int,
    method: str,
    target: str,
    body: bytes | None,
    headers: dict[str, str],
    timeouts: tuple[float | None, float | None],
) -> _Answer:
    connections = _connections()
    key = (host, port)
    conn = connections.get(key)
    if conn is not None and _dropped(conn):
        conn.close()
        conn = None
    if conn is None:
        conn = connections[key] = http.client.HTTPConnection(host, port, timeout=timeouts[0])
        try:
            conn.connect()
        except TimeoutError as exc:
            _forget(key)
            raise requests.exceptions.ConnectTimeout(f"{host}:{port}: {exc}") from None
        except OSError as exc:
            _forget(key)
            raise requests.exceptions.ConnectionError(f"{host}:{port}: {exc}") from None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        conn.sock.settimeout(timeouts[1])
        conn.request(method, target, body=body, headers=headers)
        resp = conn.getresponse()
        answer = _Answer(resp.status, resp.reason, resp.getheaders(), resp.read())
        if resp.will_close:
            _forget(key)
        return answer
    except TimeoutError as exc:
        _forget(key)
        raise requests.exceptions.ReadTimeout(f"{host}:{port}: {exc}") from None
    except (OSError, http.client.HTTPException) as exc:
        _forget(key)
        raise requests.exceptions.ConnectionError(f"{host}:{port}: {exc!r}") from None
    except BaseException:
        _forget(key)  # never keep a connection with a request half begun
        raise


def _forget(key: tuple[str, int]) -> None:
    conn = _connections().pop(key, None)
    if conn is not None:
        conn.close()


def _response(answer: _Answer, url: str, started: float) -> requests.Response:
    r = requests.Response()
    r.status_code = answer.status
    r.reason = answer.reason
    headers: dict[str, str] = {}
    for name, value in answer.headers:  # a repeated header: its values joined, as urllib3 does
        lower = name.lower()
        headers[lower] = f"{headers[lower]}, {value}" if lower in headers else value
    r.headers = requests.structures.CaseInsensitiveDict(headers)
    r._content = answer.body
    r._content_consumed = True  # as after requests read it: iter_content() gives the body
    r.url = url
    r.encoding = requests.utils.get_encoding_from_headers(r.headers)
    r.elapsed = timedelta(seconds=time.monotonic() - started)
    return r
