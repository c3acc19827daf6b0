"""The JSON API of CONTRACT §10: the same records, silences and status as the CLI's
``--json`` (``views``, ``control``, ``status``), read from read-only journal connections
of the request's own; writes go to the running daemon through the commands queue, as the
CLI's do (``cli_control``), so the daemon stays the only writer of incident state.

Each handler is a plain function of the config and the request; ``server`` does HTTP.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from errord import cli_control
from errord.config import RunConfig
from errord.control import silence_json
from errord.durations import parse_duration
from errord.errors import DurationError, ErrordError
from errord.model import Incident
from errord.status import open_readonly, status_data
from errord.views import incident_json

__all__ = ["Reply", "Request", "route"]

GLOB = set("*?[")
MAX_LIMIT = 10_000


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: bytes = b""


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


def reply(status: int, data: Any) -> Reply:
    return Reply(status, orjson.dumps(data) + b"\n")


def error(status: int, text: str) -> Reply:
    return reply(status, {"error": text})


class BadRequest(Exception):
    """A request the API refuses with 400, naming the field."""


# -- reads ------------------------------------------------------------------------------


def _incidents(config: RunConfig) -> Callable[..., list[Incident]]:
    def history(**filters: Any) -> list[Incident]:
        journal = open_readonly(config)
        if journal is None:
            return []
        with journal:
            return journal.history(**filters)

    return history


def _since(text: str) -> float:
    try:
        return time.time() - parse_duration(text)
    except DurationError:
        pass
    try:
        return cli_control.utc_timestamp(text)
    except ValueError:
        raise BadRequest(f"since: expected a duration (2h) or an ISO-8601 time, got {text[:60]!r}") from None


def list_incidents(config: RunConfig, req: Request) -> Reply:
    q = req.query
    active = q.get("active")
    if active not in (None, "true", "false"):
        raise BadRequest("active: must be true or false")
    try:
        limit = int(q.get("limit", "100"))
    except ValueError:
        raise BadRequest("limit: must be an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit: must be 1 to {MAX_LIMIT}")
    code, app = q.get("code"), q.get("app")
    since = _since(q["since"]) if "since" in q else None
    state = None if active is None else ("active" if active == "true" else "cleared")
    # globs are matched by SQLite (GLOB), so a filter never reads all of history
    found = _incidents(config)(
        code=None if code is None or set(code) & GLOB else code,
        app=None if app is None or set(app) & GLOB else app,
        code_glob=code if code is not None and set(code) & GLOB else None,
        app_glob=app if app is not None and set(app) & GLOB else None,
        since=since,
        state=state,
        limit=limit,
    )
    return reply(200, [incident_json(i) for i in found])


def _one(config: RunConfig, incident_id: str) -> Incident | None:
    journal = open_readonly(config)
    if journal is None:
        return None
    with journal:
        return journal.incident(incident_id)


def get_incident(config: RunConfig, req: Request, incident_id: str) -> Reply:
    inc = _one(config, incident_id)
    return reply(200, incident_json(inc)) if inc is not None else error(404, f"no incident {incident_id[:40]!r}")


def active(config: RunConfig, req: Request) -> Reply:
    """code → record (the old in-app manager's dict); with scope "app", app → code → record."""
    journal = open_readonly(config)
    records = []
    if journal is not None:
        with journal:
            records = journal.active()
    if config.scope == "app":
        by_app: dict[str, dict[str, Any]] = {}
        for inc in records:
            by_app.setdefault(inc.app or "", {})[inc.code] = incident_json(inc)
        return reply(200, by_app)
    return reply(200, {inc.code: incident_json(inc) for inc in records})


def status(config: RunConfig, req: Request) -> Reply:
    return reply(200, status_data(config))


def silences(config: RunConfig, req: Request) -> Reply:
    now = time.time()
    out: list[dict[str, Any]] = []
    journal = open_readonly(config)
    if journal is not None:
        with journal:
            open_ids = {i.incident_id for i in journal.active()}
            if config.fleet is not None:  # CONTRACT §13: also those made on other members, with origin
                from errord.fleet.silences import listed

                out = listed(journal, config, now, open_ids, since=None)
            else:
                out = [silence_json(s, now, open_ids) for s in journal.control.silences() if s.active(now, open_ids)]
    return reply(200, out + [cli_control._mute_time_json(m, now) for m in config.mute_times])


def fleet(config: RunConfig, req: Request) -> Reply:
    """The fleet's open incidents, as ``errord fleet --json`` (CONTRACT §13); 503 when
    MongoDB does not answer (within the capped ``[mongodb] timeout``)."""
    if config.fleet is None or config.mongodb is None:
        return error(404, "this host is in no fleet (no [fleet])")
    from pymongo.errors import PyMongoError

    from errord.fleet.view import fleet_json  # pymongo only with [fleet]

    try:
        return reply(200, fleet_json(config))
    except PyMongoError as exc:
        return error(503, f"MongoDB did not answer ({type(exc).__name__})")


# -- writes -----------------------------------------------------------------------------


def _field(body: dict[str, Any], name: str, check: Callable[[str], Any], default: Any = None) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise BadRequest(f"{name}: must be a string")
    try:
        return check(value)
    except argparse.ArgumentTypeError as exc:
        raise BadRequest(f"{name}: {exc}") from None


def _body(req: Request) -> dict[str, Any]:
    try:
        data = orjson.loads(req.body or b"{}")
    except orjson.JSONDecodeError:
        raise BadRequest("body: not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("body: must be a JSON object")
    return data


def _outcome(status_code: int, outcome: dict[str, Any]) -> Reply | None:
    if status_code:
        text = str(outcome.get("error", "refused"))
        return error(504 if "queued" in outcome else 409, text)
    return None


def create_silence(config: RunConfig, req: Request) -> Reply:
    body = _body(req)
    unknown = set(body) - {"pattern", "app", "reason", "by", "for", "until", "until_resolved"}
    if unknown:
        raise BadRequest(f"{sorted(unknown)[0]}: unknown field")
    if "pattern" not in body:
        raise BadRequest("pattern: required")
    pattern = _field(body, "pattern", cli_control._pattern)
    app = _field(body, "app", cli_control._pattern)
    reason = _field(body, "reason", cli_control._text(cli_control.MAX_REASON), "")
    by = _field(body, "by", cli_control._text(cli_control.MAX_BY), "")
    given = [k for k in ("for", "until", "until_resolved") if body.get(k) not in (None, False)]
    if len(given) != 1:
        raise BadRequest('for: exactly one of "for", "until", "until_resolved": true is required')
    until_resolved = body.get("until_resolved") is True
    if "until_resolved" in body and not isinstance(body["until_resolved"], bool):
        raise BadRequest("until_resolved: must be true or false")
    ends_at = None
    if given[0] == "for":
        ends_at = time.time() + _field(body, "for", cli_control._for)
    elif given[0] == "until":
        ends_at = _field(body, "until", cli_control._until)
    payload = {
        "pattern": pattern,
        "app": app,
        "ends_at": ends_at,
        "until_resolved": until_resolved,
        "reason": reason,
        "by": by,
    }
    code, outcome = cli_control._run(config, "silence", payload)
    return _outcome(code, outcome) or reply(201, outcome["silence"])


def end_silence(config: RunConfig, req: Request, silence_id: str) -> Reply:
    now = time.time()
    journal = open_readonly(config)
    known = None
    if journal is not None:
        with journal:
            known = journal.control.get([silence_id]).get(silence_id)
            if known is None and config.fleet is not None:  # made on another member (CONTRACT §13)
                from errord.fleet.silences import seen

                known = seen(journal, config).get(silence_id)
            open_ids = {i.incident_id for i in journal.active()}
    if known is None:
        return error(404, f"no silence {silence_id[:40]!r}")
    if not known.active(now, open_ids):
        return error(409, f"silence {silence_id} has already ended")
    code, outcome = cli_control._run(config, "unsilence", {"ids": [silence_id]})
    if code:
        return _outcome(code, outcome) or error(409, "refused")
    journal = open_readonly(config)
    assert journal is not None
    with journal:
        ended = journal.control.get([silence_id]).get(silence_id)
        if ended is None:  # made on another member: ended here, and in MongoDB at the next renewal
            from errord.fleet.silences import seen

            ended = seen(journal, config)[silence_id]
        return reply(200, silence_json(ended, time.time(), {i.incident_id for i in journal.active()}))


def _open_incident(config: RunConfig, incident_id: str) -> Incident | Reply:
    inc = _one(config, incident_id)
    if inc is None:
        return error(404, f"no incident {incident_id[:40]!r}")
    if not inc.active:
        return error(409, f"incident {incident_id} is not open")
    return inc


def _on_incident(config: RunConfig, req: Request, incident_id: str, kind: str) -> tuple[int, dict[str, Any]] | Reply:
    """``errord ack`` / ``errord resolve`` for that one open incident (not a later one of
    its code): the command's outcome, or the refusal."""
    body = _body(req)
    inc = _open_incident(config, incident_id)
    if isinstance(inc, Reply):
        return inc
    payload = {
        "code": inc.code,
        "app": inc.app if config.scope == "app" else None,
        "incident_id": inc.incident_id,
        "reason": _field(body, "reason", cli_control._text(cli_control.MAX_REASON), ""),
    }
    if kind == "ack":
        payload["by"] = _field(body, "by", cli_control._text(cli_control.MAX_BY), "")
    return cli_control._run(config, kind, payload)


def ack(config: RunConfig, req: Request, incident_id: str) -> Reply:
    done = _on_incident(config, req, incident_id, "ack")
    if isinstance(done, Reply):
        return done
    code, outcome = done
    return _outcome(code, outcome) or reply(201, outcome["silence"])


def resolve(config: RunConfig, req: Request, incident_id: str) -> Reply:
    done = _on_incident(config, req, incident_id, "resolve")
    if isinstance(done, Reply):
        return done
    code, outcome = done
    failed = _outcome(code, outcome)
    if failed is not None:
        return failed
    closed = _one(config, incident_id)
    return reply(200, incident_json(closed)) if closed is not None else error(404, "gone")


# -- the route table -------------------------------------------------------------------

Handler = Callable[..., Reply]
# (method, path parts with "{}" for a parameter) -> handler
ROUTES: list[tuple[str, tuple[str, ...], Handler]] = [
    ("GET", ("incidents",), list_incidents),
    ("GET", ("incidents", "{}"), get_incident),
    ("POST", ("incidents", "{}", "ack"), ack),
    ("POST", ("incidents", "{}", "resolve"), resolve),
    ("GET", ("active",), active),
    ("GET", ("status",), status),
    ("GET", ("silences",), silences),
    ("GET", ("fleet",), fleet),
    ("POST", ("silences",), create_silence),
    ("DELETE", ("silences", "{}"), end_silence),
]


def route(config: RunConfig, req: Request) -> Reply:
    """The reply to an ``/api/v1/…`` request (authorised already)."""
    parts = tuple(p for p in req.path.removeprefix("/api/v1").split("/") if p)
    allowed = False
    for method, pattern, handler in ROUTES:
        if len(pattern) != len(parts) or any(p != "{}" and p != x for p, x in zip(pattern, parts, strict=True)):
            continue
        if method != req.method:
            allowed = True
            continue
        args = [x for p, x in zip(pattern, parts, strict=True) if p == "{}"]
        try:
            return handler(config, req, *args)
        except BadRequest as exc:
            return error(400, str(exc))
        except ErrordError as exc:
            return error(503, str(exc))
    return error(405, f"{req.method} not allowed here") if allowed else error(404, f"no such endpoint: {req.path[:80]}")
