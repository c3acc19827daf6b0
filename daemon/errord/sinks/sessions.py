"""HTTP connections kept open between notices: one ``requests.Session`` per sending thread.

Apprise's HTTP plugins (``json://``, ``slack://``, ``ntfy://``, …) send with the module
functions ``requests.request`` / ``requests.post`` / …; each builds a ``Session`` and
closes it, so every notice opened a new TCP (and TLS) connection: ~11% of the helper's
time in a burst. Apprise has no hook to hand a plugin a session, so the notify helper, a
process that exists only to run Apprise, replaces those functions with ones that use a
``Session`` of the calling thread. Each target has its own worker thread
(``sinks.notify``), so that is a session, and a pool of kept-alive connections, per
target; a connection the server closed meanwhile is replaced by urllib3 when it is next
taken from the pool (a send that still fails is retried as any failed send).

What a session would add that a one-off request lacks is taken away again: cookies a
target set are dropped after each request (a webhook must not see them on the next
notice); everything else (proxies from the environment, certificate checks, timeouts,
redirects) is per request, as before.

What ``requests`` reads from the environment for each request — the proxies for the URL
(``HTTP_PROXY``, ``NO_PROXY``, …: every variable of ``os.environ`` decoded and scanned) and
the ``.netrc`` credentials for its host (a file looked for, and read when there is one) —
is read once per scheme and host and remembered for the life of the helper process
(issue 13: ~10% of its CPU per notice in a burst). The helper's environment is fixed at
its start (the service's); a ``.netrc`` changed while errord runs is seen after a restart.

A plain ``http://`` request of the common kinds is not sent through the session at all
but on a kept ``http.client`` connection of the thread (``sinks.plainhttp``: the same
request, a ``requests.Response`` back, ~0.4 ms of CPU less per notice).
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.api
import requests.sessions

from errord.sinks import plainhttp

__all__ = ["restore", "reuse_connections"]

_local = threading.local()
_saved: dict[tuple[object, str], Any] = {}  # what reuse_connections() replaced


def _session() -> requests.Session:
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


def request(method: str, url: str, **kwargs: Any) -> requests.Response:
    """``requests.request`` on the calling thread's session (a plain ``http://`` one on
    its own kept connection: ``sinks.plainhttp``)."""
    if isinstance(method, str) and isinstance(url, str):
        # what Session would look up (remembered per host: reuse_connections)
        lookups = requests.sessions.get_environ_proxies, requests.sessions.get_netrc_auth  # type: ignore[attr-defined]
        answer = plainhttp.send(method, url, kwargs, *lookups)
        if answer is not None:
            return answer
    session = _session()
    try:
        return session.request(method=method, url=url, **kwargs)
    finally:
        session.cookies.clear()


# requests.api's functions: their positional parameters after the URL, their defaults
_POSITIONAL = {"get": ("params",), "post": ("data", "json"), "put": ("data",), "patch": ("data",)}


def _method(name: str) -> Any:
    names = _POSITIONAL.get(name, ())

    def call(url: str, *args: Any, **kwargs: Any) -> requests.Response:
        if len(args) > len(names):
            raise TypeError(f"requests.{name}() takes {len(names) + 1} positional arguments")
        kwargs.update(zip(names, args, strict=False))
        if name == "head":
            kwargs.setdefault("allow_redirects", False)
        return request(name, url, **kwargs)

    call.__name__ = name
    return call


_MEMO_MAX = 256  # (scheme, host) pairs remembered; a target's URL is one


def _remembered(fn: Any, key_of: Any) -> Any:
    """``fn`` whose result is remembered by ``key_of(*args, **kwargs)`` (bounded); a dict
    result is handed out as a copy."""
    memo: dict[Any, Any] = {}
    lock = threading.Lock()  # one sending thread per target: they share the memo

    def call(*args: Any, **kwargs: Any) -> Any:
        key = key_of(*args, **kwargs)
        with lock:
            found = key in memo
            value = memo.get(key)
        if not found:
            value = fn(*args, **kwargs)
            with lock:
                if len(memo) >= _MEMO_MAX:
                    memo.clear()
                memo[key] = value
        return dict(value) if isinstance(value, dict) else value

    call.__name__ = getattr(fn, "__name__", "remembered")
    return call


def _url_key(url: Any, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    text = url.decode("utf-8", "replace") if isinstance(url, bytes) else str(url)
    parts = urlsplit(text)
    return (parts.scheme, parts.netloc.rpartition("@")[2], args, tuple(sorted(kwargs.items())))


def reuse_connections() -> None:
    """Make ``requests``' module functions use a session per thread, and read what it takes
    from the environment once per host (process-wide: the notify helper only)."""
    if _saved:
        return
    funcs: dict[str, Any] = {"request": request}
    for name in ("get", "options", "head", "post", "put", "patch", "delete"):
        funcs[name] = _method(name)
    for module in (requests, requests.api):
        for name, fn in funcs.items():
            _saved[(module, name)] = getattr(module, name)
            setattr(module, name, fn)
    for name in ("get_environ_proxies", "get_netrc_auth"):  # what Session looks up per request
        _saved[(requests.sessions, name)] = original = getattr(requests.sessions, name)
        setattr(requests.sessions, name, _remembered(original, _url_key))


def restore() -> None:
    """Undo ``reuse_connections`` (tests)."""
    for (module, name), fn in _saved.items():
        setattr(module, name, fn)
    _saved.clear()
