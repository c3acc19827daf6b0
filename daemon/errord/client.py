"""A client for apps (CONTRACT §10): what the in-app error-code manager gave them — the dict
of active codes, history queries, silences and resolves — without any coupling to the
daemon's internals. Standard library only: importing it pulls in nothing of the daemon.

    from errord.client import Client, AsyncClient
    errors = Client(url="http://127.0.0.1:9464")        # or Client(config="/etc/errord/errord.toml")
    if "db_down" in errors.active():
        print(errors.active()["db_down"].elapsed)
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["AsyncClient", "Client", "ClientError", "Incident"]

_TIMES = ("start_time", "last_log_time", "cleared_at", "created_at", "updated_at", "last_alert_time")
_DEFAULT_STATE = "/var/lib/errord"


class ClientError(Exception):
    """A request errord could not answer (unreachable, refused, bad answer); the reason is
    the message."""


@dataclass(frozen=True)
class Incident:
    """One incident record (CONTRACT §6); times are aware UTC datetimes."""

    code: str
    message: str
    start_time: datetime
    last_log_time: datetime
    server_id: str
    node_name: str
    active: bool
    cleared_at: datetime | None
    created_at: datetime
    updated_at: datetime
    occurrences: int
    alerts_sent: int
    last_alert_time: datetime
    app: str | None
    incident_id: str
    notices_muted: int = 0
    resolved_by: str | None = None
    flapping: bool = False

    @property
    def elapsed(self) -> timedelta:
        """``cleared_at`` (now while open) minus ``start_time`` — the old manager's
        ``elapsed_time``."""
        end = self.cleared_at if self.cleared_at is not None else datetime.now(UTC)
        return end - self.start_time

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Incident:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in record.items() if k in known}
        for name in _TIMES:
            value = data.get(name)
            if isinstance(value, str):
                data[name] = datetime.fromisoformat(value).astimezone(UTC)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                data[name] = datetime.fromtimestamp(value, UTC)
        data["active"] = bool(data.get("active"))
        try:
            return cls(**data)
        except TypeError as exc:
            raise ClientError(f"not an incident record: {exc}") from None


def _from_config(path: str | os.PathLike[str]) -> tuple[str | None, str, Path]:
    """``(url, token, state_dir)`` from an errord config file: its ``[http]`` when it has
    one (a 0.0.0.0 / :: listen reached on 127.0.0.1 / ::1), else None and the state_dir."""
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ClientError(f"cannot read {file}: {exc}") from None
    state = Path(os.path.expanduser(str(raw.get("state_dir", _DEFAULT_STATE))))
    if not state.is_absolute():
        state = file.parent / state
    http = raw.get("http")
    if not isinstance(http, dict):
        return None, "", state
    host, _, port = str(http.get("listen", "127.0.0.1:9464")).rpartition(":")
    host = host.strip("[]")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}", str(http.get("token", "")), state


class Client:
    """errord's API (``url``), or an errord config (``config``): its ``[http]`` when set,
    else its embedded store, read-only (writes then raise ``ClientError``)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        config: str | os.PathLike[str] | None = None,
        token: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        if (url is None) == (config is None):
            raise ClientError("give exactly one of url= and config=")
        self._state: Path | None = None
        self.token = token or ""
        if config is not None:
            url, cfg_token, self._state = _from_config(config)
            self.token = token or cfg_token
        self.url = url.rstrip("/") if url is not None else None
        self.timeout = timeout

    # -- the old manager's calls ---------------------------------------------------------

    def active(self) -> dict[str, Incident]:
        """Open incidents by code (with ``scope = "app"``, a code open for several apps
        gives the newest; use ``is_active(code, app)`` or ``history`` for one app)."""
        if self.url is None:
            return {i.code: i for i in reversed(self._read(active_only=True, limit=-1))}
        data = self._request("GET", "/api/v1/active")
        if not isinstance(data, dict):
            raise ClientError("unexpected answer to /api/v1/active")
        out: dict[str, Incident] = {}
        values = list(data.values())
        nested = bool(values) and all(isinstance(v, dict) and "code" not in v for v in values)
        records = [r for apps in values for r in apps.values()] if nested else values
        for inc in sorted((Incident.from_record(r) for r in records), key=lambda i: i.start_time):
            out[inc.code] = inc
        return out

    def history(
        self, code: str | None = None, limit: int = 100, active_only: bool = False, *, app: str | None = None
    ) -> list[Incident]:
        """Incidents, newest ``start_time`` first (the old ``get_error_history``)."""
        if self.url is None:
            return self._read(code=code, limit=limit, active_only=active_only, app=app)
        query: dict[str, str] = {"limit": str(limit)}
        if code is not None:
            query["code"] = code
        if app is not None:
            query["app"] = app
        if active_only:
            query["active"] = "true"
        data = self._request("GET", "/api/v1/incidents?" + urllib.parse.urlencode(query))
        if not isinstance(data, list):
            raise ClientError("unexpected answer to /api/v1/incidents")
        return [Incident.from_record(r) for r in data]

    def is_active(self, code: str, app: str | None = None) -> bool:
        """Whether ``code`` has an open incident (of ``app``; None: any app)."""
        return bool(self.history(code=code, limit=1, active_only=True, app=app))

    def silence(
        self,
        pattern: str,
        *,
        for_: str | None = None,
        until: str | None = None,
        until_resolved: bool = False,
        app: str | None = None,
        reason: str = "",
        by: str = "",
    ) -> str:
        """A silence (CONTRACT §8); returns its id."""
        body: dict[str, Any] = {"pattern": pattern, "reason": reason, "by": by}
        if app is not None:
            body["app"] = app
        if for_ is not None:
            body["for"] = for_
        if until is not None:
            body["until"] = until
        if until_resolved:
            body["until_resolved"] = True
        data = self._request("POST", "/api/v1/silences", body)
        return str(data["id"])

    def resolve(self, code: str, app: str | None = None, reason: str = "") -> list[Incident]:
        """Resolve every open incident of ``code`` (of ``app`` when given); the closed records."""
        out = []
        for inc in self.history(code=code, limit=1000, active_only=True, app=app):
            data = self._request(
                "POST", f"/api/v1/incidents/{urllib.parse.quote(inc.incident_id)}/resolve", {"reason": reason}
            )
            out.append(Incident.from_record(data))
        return out

    # -- transport -------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        if self.url is None:
            raise ClientError("this config has no [http]: only reads are possible (from its store)")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                reason = json.loads(exc.read()).get("error", exc.reason)
            except (ValueError, AttributeError):
                reason = exc.reason
            raise ClientError(f"{method} {path.split('?')[0]}: {exc.code} {reason}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ClientError(f"errord at {self.url} did not answer: {getattr(exc, 'reason', exc)}") from None

    def _read(
        self, *, code: str | None = None, limit: int = 100, active_only: bool = False, app: str | None = None
    ) -> list[Incident]:
        assert self._state is not None
        db_path = self._state / "errord.db"
        if not db_path.exists():
            return []
        try:
            db = sqlite3.connect(f"file:{urllib.parse.quote(str(db_path))}?mode=ro", uri=True, timeout=5.0)
        except sqlite3.Error as exc:
            raise ClientError(f"cannot open {db_path}: {exc}") from None
        try:
            have = {r[1] for r in db.execute("PRAGMA table_info(incidents)")}
            cols = [f.name for f in fields(Incident) if f.name in have]
            where, params = [], []
            for name, value in (("code", code), ("app", app)):
                if value is not None:
                    where.append(f"{name} = ?")
                    params.append(value)
            if active_only:
                where.append("active = 1")
            sql = f"SELECT {', '.join(cols)} FROM incidents"
            if where:
                sql += " WHERE " + " AND ".join(where)
            sql += " ORDER BY start_time DESC, rowid DESC LIMIT ?"
            rows = db.execute(sql, (*params, limit)).fetchall()
        except sqlite3.Error as exc:
            raise ClientError(f"cannot read {db_path}: {exc}") from None
        finally:
            db.close()
        return [Incident.from_record(dict(zip(cols, r, strict=True))) for r in rows]


class AsyncClient:
    """``Client``'s methods as coroutines (each runs in a thread: the standard library has
    no async HTTP client)."""

    def __init__(self, url: str | None = None, **kw: Any) -> None:
        self._client = Client(url, **kw)

    async def active(self) -> dict[str, Incident]:
        return await asyncio.to_thread(self._client.active)

    async def history(
        self, code: str | None = None, limit: int = 100, active_only: bool = False, *, app: str | None = None
    ) -> list[Incident]:
        return await asyncio.to_thread(self._client.history, code, limit, active_only, app=app)

    async def is_active(self, code: str, app: str | None = None) -> bool:
        return await asyncio.to_thread(self._client.is_active, code, app)

    async def silence(self, pattern: str, **kw: Any) -> str:
        return await asyncio.to_thread(lambda: self._client.silence(pattern, **kw))

    async def resolve(self, code: str, app: str | None = None, reason: str = "") -> list[Incident]:
        return await asyncio.to_thread(self._client.resolve, code, app, reason)
