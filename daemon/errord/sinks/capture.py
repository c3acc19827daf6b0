"""What one Apprise call saw: why a URL or a send failed, and the target's ``Retry-After``.

Apprise answers a send with True/False and a URL with a plugin or None. The why goes to
its ``apprise`` logger ("Invalid ~From~ email specified", "Failed to send JSON POST
notification: Too Many Requests, error=429."), the transport's own error ("Connection
refused") only to its DEBUG log, and the HTTP response stays inside the plugin. So, for
the calling thread only and only inside ``capturing()``:

* a filter on the ``apprise`` logger keeps the WARNING and ERROR messages and drops those
  records: the caller says the same in its own one line per failed send, with the
  target, the attempt and the next retry (``notify``); reasons are scrubbed of secrets
  there (``sinks.secrets``). Apprise's DEBUG and INFO records pass as before;
* a thin wrapper around ``requests.Session.send`` — every Apprise HTTP plugin sends
  through it, ``requests.post`` too — keeps each response's status and ``Retry-After``,
  and the exception of a send that got no response; the notify helper's plain-HTTP
  path (``sinks.plainhttp``), which sends without it, keeps the same (``saw_response``,
  ``saw_error``).

Plugins that do not use ``requests`` (``mailto://`` through smtplib, MQTT, XMPP, …) give
what they log, and never a ``Retry-After``. Both hooks are installed once per process, by
the first ``capturing()``, and cost a thread-local lookup outside it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = ["Seen", "capturing", "parse_retry_after", "saw_error", "saw_response"]

REASON_MAX = 300  # characters of reason kept for a log line or a delivery row
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
_URLISH = re.compile(r"\S+://\S*")  # Apprise echoes URLs (half masked): never ours to print
_REQUEST_PATH = re.compile(r"(with url: )\S+")  # requests' "Max retries exceeded with url: /path"

_local = threading.local()
_install_lock = threading.Lock()
_installed = False


@dataclass
class Seen:
    """What the calling thread's Apprise call logged and got back; see the module doc."""

    messages: list[str] = field(default_factory=list)  # apprise WARNING+ records
    errors: list[str] = field(default_factory=list)  # sends that got no response
    responses: list[tuple[int, float | None]] = field(default_factory=list)  # (status, Retry-After s)

    def reason(self) -> str:
        """One line: what Apprise said, with the transport's error; "" when it said nothing."""
        said: list[str] = []
        for msg in self.messages:
            text = _hide_urls(" ".join(msg.split())).rstrip(" .:")
            if text and text not in said:
                said.append(text)
        why = "; ".join(said)
        if self.errors:
            err = self.errors[-1]
            why = f"{why} ({err})" if why else err
        elif not why:
            failed = [status for status, _ in self.responses if status >= 300]
            if failed:
                why = f"HTTP {failed[-1]}"
        return why[:REASON_MAX]

    def retry_after(self) -> float | None:
        """The longest ``Retry-After`` of a failed response (seconds), or None."""
        waits = [wait for status, wait in self.responses if status >= 300 and wait is not None]
        return max(waits) if waits else None


@contextmanager
def capturing() -> Iterator[Seen]:
    """Collect what Apprise logs and gets back in this thread until the block ends."""
    _install()
    seen = Seen()
    outer = getattr(_local, "seen", None)
    _local.seen = seen
    try:
        yield seen
    finally:
        _local.seen = outer


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date (RFC
    9110 §10.2.3); None when absent or unreadable. A date in the past is 0."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and seconds == seconds else None  # not NaN
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def describe_error(exc: BaseException) -> str:
    """A short reason for a send that got no response: the OS's words when there are
    some ("Connection refused", "Name or service not known"), else the error itself."""
    name = type(exc).__name__
    if "ConnectTimeout" in name:
        return "connect timed out"
    if "Timeout" in name:
        return "timed out waiting for the answer"
    text = " ".join(str(exc).split())
    m = _ERRNO.search(text)
    if m:
        return m.group(1).strip()
    return f"{name}: {_hide_urls(text)}"[:REASON_MAX]


def _hide_urls(text: str) -> str:
    """``text`` without the URLs and request paths third-party messages echo: a path may
    be a token (the exact secrets are scrubbed too; this catches what Apprise rebuilt)."""
    return _REQUEST_PATH.sub(r"\1…", _URLISH.sub("…", text))


class _Collector(logging.Filter):
    """Keeps the WARNING+ messages of the thread that is ``capturing()``, and drops them."""

    def filter(self, record: logging.LogRecord) -> bool:
        seen = getattr(_local, "seen", None)
        if seen is None or record.levelno < logging.WARNING:
            return True
        with contextlib.suppress(Exception):  # a broken record is the logging module's business
            seen.messages.append(record.getMessage())
        return False


def _install() -> None:
    global _installed
    if _installed:
        return
    with _install_lock:
        if _installed:
            return
        # First of the logger's filters, so a reason is the same text whatever filters
        # (``Scrub``) come and go after it; the caller scrubs the reason.
        logging.getLogger("apprise").filters.insert(0, _Collector())
        try:
            import requests
        except ImportError:  # pragma: no cover - Apprise depends on it
            pass
        else:
            requests.Session.send = _wrap(requests.Session.send)  # type: ignore[method-assign]
        _installed = True


def saw_response(status: int, retry_after: str | None) -> None:
    """Keep a response's status and ``Retry-After`` for the calling thread's
    ``capturing()`` (none: nothing); what the ``Session.send`` wrapper does, for a
    transport that sends without it (``sinks.plainhttp``)."""
    seen = getattr(_local, "seen", None)
    if seen is not None:
        seen.responses.append((status, parse_retry_after(retry_after)))


def saw_error(exc: BaseException) -> None:
    """Keep why a send got no response, as ``saw_response`` keeps a response."""
    seen = getattr(_local, "seen", None)
    if seen is not None:
        seen.errors.append(describe_error(exc))


def _wrap(send: Any) -> Any:
    @functools.wraps(send)
    def capturing_send(self: Any, request: Any, **kwargs: Any) -> Any:
        if getattr(_local, "seen", None) is None:
            return send(self, request, **kwargs)
        try:
            response = send(self, request, **kwargs)
        except Exception as exc:
            saw_error(exc)
            raise
        saw_response(response.status_code, response.headers.get("Retry-After"))
        return response

    return capturing_send
