"""The MongoDB side of the incident history: the document errord writes for an incident,
the collection's indexes, bounded-time connections, and the reads behind ``errord
history``/``active`` and the recovery of a rebuilt host. The writer that mirrors the
journal into it is ``sinks/mongo.py``.

Documents: the CONTRACT §6 record, times as BSON dates in UTC, upserted by
``incident_id``. Reads only ever see documents that have an ``incident_id``: those the
in-app error-code manager wrote before errord are left alone, and the unique index on
``incident_id`` is sparse so they never collide.

Secrets: the URI is only ever shown through ``redact_mongo_uri``; ``scrubber`` also masks
the password in driver error texts before they are shown or logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from pymongo import ASCENDING, DESCENDING, IndexModel, MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import PyMongoError
from pymongo.write_concern import WriteConcern

from errord.config import redact_mongo_uri
from errord.errors import MongoError
from errord.model import TIME_FIELDS, HistoryState, Incident, history_state

if TYPE_CHECKING:
    from errord.config import Mongo

__all__ = [
    "INDEXES",
    "READ_TIMEOUT",
    "Coll",
    "MongoStore",
    "collection_of",
    "connect",
    "describe",
    "host_filter",
    "incident_document",
    "incident_from_document",
    "recover_open_incidents",
    "scrubber",
    "to_datetime",
    "upsert",
]

logger = logging.getLogger(__name__)

READ_TIMEOUT = 1.5  # seconds the CLI waits for MongoDB before using the embedded store

Coll = Collection[dict[str, Any]]

INDEXES: tuple[IndexModel, ...] = (
    # sparse: the in-app manager's documents have no incident_id; they must not collide
    IndexModel([("incident_id", ASCENDING)], unique=True, sparse=True),
    IndexModel([("code", ASCENDING), ("start_time", DESCENDING)]),
    IndexModel([("active", ASCENDING), ("start_time", DESCENDING)]),
    IndexModel([("server_id", ASCENDING), ("node_name", ASCENDING), ("code", ASCENDING)]),
)


# -- documents -----------------------------------------------------------------------------


def to_datetime(ts: float | None) -> datetime | None:
    """Epoch seconds -> tz-aware UTC datetime (stored as a BSON date, millisecond precision)."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        # a client without tz_aware: BSON dates are UTC
        when = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return when.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"not a time: {value!r}")


def incident_document(inc: Incident) -> dict[str, Any]:
    """The CONTRACT §6 record as a MongoDB document: its fields, times as UTC datetimes."""
    doc = inc.record()
    for name in TIME_FIELDS:
        doc[name] = to_datetime(doc[name])
    return doc


def incident_from_document(doc: Mapping[str, Any]) -> Incident:
    """An ``Incident`` from an errord document; raises ValueError if it is not one."""
    incident_id = doc.get("incident_id")
    if not isinstance(incident_id, str) or not incident_id:
        raise ValueError("no incident_id")
    t = {name: _seconds(doc.get(name)) for name in TIME_FIELDS}
    start = t["start_time"] if t["start_time"] is not None else 0.0
    last_log = t["last_log_time"] if t["last_log_time"] is not None else start
    created = t["created_at"] if t["created_at"] is not None else start
    return Incident(
        code=str(doc.get("code", "")),
        message=str(doc.get("message") or ""),
        start_time=start,
        last_log_time=last_log,
        server_id=str(doc.get("server_id") or ""),
        node_name=str(doc.get("node_name") or ""),
        active=bool(doc.get("active", False)),
        cleared_at=t["cleared_at"],
        created_at=created,
        updated_at=t["updated_at"] if t["updated_at"] is not None else created,
        occurrences=int(doc.get("occurrences") or 0),
        alerts_sent=int(doc.get("alerts_sent") or 0),
        last_alert_time=t["last_alert_time"] if t["last_alert_time"] is not None else start,
        app=doc.get("app"),
        incident_id=incident_id,
        notices_muted=int(doc.get("notices_muted") or 0),  # absent from documents before schema 4
        resolved_by=doc.get("resolved_by"),
        flapping=bool(doc.get("flapping", False)),
    )


def upsert(inc: Incident) -> UpdateOne:
    """The idempotent write of one incident: keyed by ``incident_id``, ``$set`` of its record
    (other fields of the document, e.g. a dashboard's annotations, are kept)."""
    return UpdateOne({"incident_id": inc.incident_id}, {"$set": incident_document(inc)}, upsert=True)


def host_filter(
    server_id: str,
    node_name: str,
    *,
    code: str | None = None,
    active_only: bool = False,
    app: str | None = None,
    since: float | None = None,
    state: HistoryState | None = None,
) -> dict[str, Any]:
    """errord's documents of one host (``server_id``/``node_name``), optionally filtered as
    ``Journal.history`` filters (one code, one app, ``start_time`` at or after ``since``,
    open or cleared ones). Documents without ``incident_id`` (the in-app manager's) never
    match."""
    state = history_state(state, active_only)
    query: dict[str, Any] = {
        "incident_id": {"$type": "string"},
        "server_id": server_id,
        "node_name": node_name,
    }
    if code is not None:
        query["code"] = code
    if app is not None:
        query["app"] = app
    if since is not None:
        query["start_time"] = {"$gte": datetime.fromtimestamp(since, UTC)}
    if state is not None:
        query["active"] = state == "active"
    return query


# -- connections ---------------------------------------------------------------------------


def connect(settings: Mongo, *, timeout: float | None = None) -> MongoClient[dict[str, Any]]:
    """A client whose every wait (server selection, connect, socket) is bounded by
    ``timeout`` seconds (default: ``[mongodb] timeout``). Connects lazily.

    ``timeoutMS`` (pymongo's client-side operation timeout) also bounds each operation
    as a whole, selection + handshake + reply, and is sent to the server as maxTimeMS;
    a write concern that is not met in time is then a timeout too (wtimeout is unused).
    """
    ms = max(1, int((timeout if timeout is not None else settings.timeout) * 1000))
    return MongoClient(
        settings.uri,
        timeoutMS=ms,
        serverSelectionTimeoutMS=ms,
        connectTimeoutMS=ms,
        socketTimeoutMS=ms,
        tz_aware=True,
        appname="errord",
        connect=False,
    )


def collection_of(client: MongoClient[dict[str, Any]], settings: Mongo) -> Coll:
    """The configured collection, with the configured write concern."""
    return client[settings.database].get_collection(settings.collection, write_concern=WriteConcern(w=settings.w))


def describe(settings: Mongo) -> str:
    """How logs and messages name the collection: redacted URI, database.collection."""
    return f"{redact_mongo_uri(settings.uri)} ({settings.database}.{settings.collection})"


def scrubber(uri: str) -> Callable[[object], str]:
    """A function that turns an error into text without the URI's password, shortened."""
    netloc = uri.partition("://")[2].split("/", 1)[0].split("?", 1)[0]
    userinfo, at, _ = netloc.rpartition("@")
    password = userinfo.partition(":")[2] if at else ""
    secrets = sorted({s for s in (password, unquote(password)) if s}, key=len, reverse=True)

    def scrub(exc: object) -> str:
        text = f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else str(exc)
        for s in secrets:
            text = text.replace(s, "***")
        return text if len(text) <= 500 else text[:499] + "…"

    return scrub


# -- reads ---------------------------------------------------------------------------------


class MongoStore:
    """Reads of one host's incidents in MongoDB; every failure is a ``MongoError``."""

    def __init__(
        self,
        coll: Coll,
        *,
        server_id: str,
        node_name: str,
        where: str = "MongoDB",
        scrub: Callable[[object], str] = str,
        client: MongoClient[dict[str, Any]] | None = None,
    ) -> None:
        self.coll = coll
        self.server_id = server_id
        self.node_name = node_name
        self.where = where
        self._scrub = scrub
        self._client = client

    @classmethod
    def open(cls, settings: Mongo, *, server_id: str, node_name: str, timeout: float = READ_TIMEOUT) -> MongoStore:
        """A store on ``settings`` whose reads give up after about ``timeout`` seconds."""
        scrub = scrubber(settings.uri)
        try:
            client = connect(settings, timeout=min(timeout, settings.timeout))
        except PyMongoError as exc:  # a URI pymongo refuses, an SRV name that does not resolve
            raise MongoError(f"{describe(settings)}: {scrub(exc)}") from None
        return cls(
            collection_of(client, settings),
            server_id=server_id,
            node_name=node_name,
            where=describe(settings),
            scrub=scrub,
            client=client,
        )

    def history(
        self,
        code: str | None = None,
        limit: int = 100,
        active_only: bool = False,
        *,
        app: str | None = None,
        since: float | None = None,
        state: HistoryState | None = None,
    ) -> list[Incident]:
        """This host's incidents, newest ``start_time`` first; ``limit <= 0``: no limit.
        Filters as ``Journal.history`` (``since`` in epoch seconds)."""
        query = host_filter(
            self.server_id, self.node_name, code=code, active_only=active_only, app=app, since=since, state=state
        )
        try:
            docs = list(
                self.coll.find(query, sort=[("start_time", DESCENDING), ("_id", DESCENDING)], limit=max(limit, 0))
            )
        except PyMongoError as exc:
            raise MongoError(f"{self.where}: {self._scrub(exc)}") from None
        out = []
        for doc in docs:
            try:
                out.append(incident_from_document(doc))
            except (ValueError, TypeError) as exc:
                logger.warning("skipping malformed document %s: %s", doc.get("_id"), exc)
        return out

    def active(self) -> list[Incident]:
        """This host's open incidents, newest first."""
        return self.history(limit=0, active_only=True)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> MongoStore:
        return self

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def recover_open_incidents(settings: Mongo, *, server_id: str, node_name: str, timeout: float) -> list[Incident]:
    """This host's open incidents from MongoDB (a rebuilt host's start); ``MongoError``
    when MongoDB does not answer within about ``timeout`` seconds."""
    with MongoStore.open(settings, server_id=server_id, node_name=node_name, timeout=timeout) as store:
        return store.active()
