"""``[[webhooks]]`` (CONTRACT §11): a notice as JSON for machines, POSTed by the notify worker.

A webhook is a target in the same list as the ``[[notify]]`` ones (``sinks.notify``): the
same durable outbox, order, backoff and routing tags. Only the send differs: one HTTP
POST of :func:`webhook_body` with ``Content-Type: application/json`` and the configured
headers (secrets: never logged; ``views``/``config`` redact them).

What an answer means (:func:`post`): 2xx accepted; 408, 429 (honouring ``Retry-After``)
and 5xx, or no answer at all, are retried with the target's backoff; any other 4xx is
*rejected*: the endpoint will not take this body however often it is sent, so it is
recorded as such (``Outbox.mark_rejected``), counted and shown in ``status``, and the
queue moves on — like Alertmanager's webhook notifier, which does not retry a 4xx.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple

from errord.model import Notice

__all__ = ["WebhookResult", "post", "retry_after_seconds", "webhook_body"]

_RETRIED = frozenset({408, 429})
_MAX_ERROR_BODY = 200  # characters of the endpoint's answer kept in the error


class WebhookResult(NamedTuple):
    """One POST's outcome. ``permanent``: a 4xx other than 408/429 (not retried)."""

    ok: bool
    error: str
    retry_after: float | None
    permanent: bool


def webhook_body(notice: Notice, title: str, body: str, host: str = "") -> dict[str, Any]:
    """The POST body of CONTRACT §11: ``type, title, body, incident`` (the record as
    ``history --json`` prints it when the notice was made), ``server_id, node_name,
    labels``; a digest has ``type = "digest"``, ``incident = null`` and ``held``. A notice
    without variables (a ``group_wait`` group, one stored before issue 17) takes the host
    names from ``host`` (``server_id/node_name``) and has ``incident = null``."""
    v = notice.vars or {}
    server_id, _, node_name = host.partition("/")
    kind = v.get("kind")
    out: dict[str, Any] = {
        "type": "digest" if kind == "digest" else notice.type.value,
        "title": title,
        "body": body,
        "incident": None if kind == "digest" else v.get("record"),
        "server_id": v.get("server_id", server_id),
        "node_name": v.get("node_name", node_name),
        "labels": v.get("labels") or {},
    }
    if kind == "digest":
        out["held"] = v.get("held") or []
    return out


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError):
        return None


def post(url: str, headers: Mapping[str, str], payload: Mapping[str, Any], timeout: float, now: float) -> WebhookResult:
    """POST ``payload`` as JSON to ``url``. Never raises for a network or HTTP failure; the
    error text names the status or the network error, never the URL or the headers."""
    data = json.dumps(payload, ensure_ascii=False).encode()
    req = urllib.request.Request(url, data=data, method="POST")
    req.add_header("Content-Type", "application/json")
    req.add_header("User-Agent", "errord")
    for name, value in headers.items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read(65536)
            return WebhookResult(True, "", None, False)
    except urllib.error.HTTPError as e:
        status = e.code
        try:
            answer = e.read(_MAX_ERROR_BODY * 4).decode(errors="replace")
        except OSError:
            answer = ""
        answer = " ".join(answer.split())[:_MAX_ERROR_BODY]
        error = f"HTTP {status}" + (f": {answer}" if answer else "")
        if status in _RETRIED or status >= 500:
            return WebhookResult(False, error, retry_after_seconds(e.headers.get("Retry-After"), now), False)
        return WebhookResult(False, error, None, True)
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        return WebhookResult(False, f"{type(e).__name__}: {reason}", None, False)
