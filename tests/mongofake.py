"""Fake MongoDB servers for the MongoDB tests.

``FakeMongo``: a server the real pymongo driver talks to over TCP. MockupDB speaks the
wire protocol (``MockupDB(auto_ismaster=True, max_wire_version=21)``: its default wire
version 6 is refused by pymongo 4.20); a mongomock client keeps the documents, so
``update`` / ``find`` / ``createIndexes`` behave like a server's and survive a restart
of the fake on the same port::

    with FakeMongo() as mongo:          # mongo.uri -> mongodb://localhost:PORT
        ...                             # point errord at it
        mongo.script.append("hangup")   # the next update command: close the connection
        mongo.stop(); mongo.start()     # gone, then back on the same port
        mongo.docs()                    # what is stored

Switches for the next ``update`` commands, consumed one per command, from ``script``:
``"hangup"``; ``("error", code)`` an error reply (e.g. 10107 not primary);
``("write_error", index, code)`` apply the batch but report that op as failed with code
(the op at ``index`` is then NOT applied); ``("slow", seconds)`` answer late.

``MockCollection``: a mongomock collection with a ``bulk_write`` that pymongo 4.20's
``UpdateOne`` works with (mongomock 4.3 passes it arguments it does not know).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import mongomock
import pytest
from mockupdb import MockupDB
from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from errord.store.journal import Journal

__all__ = ["FakeMongo", "MockCollection", "free_port"]


@pytest.fixture(name="journal")
def mirrored_journal(tmp_path: Path) -> Iterator[Journal]:
    """A journal that queues every incident change for MongoDB (import it as a fixture)."""
    j = Journal(tmp_path / "state")
    j.mongo.mirror(True)
    yield j
    j.close()


def free_port() -> int:
    """A TCP port nothing listens on (yet)."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


class MockCollection:
    """A mongomock collection whose ``bulk_write`` applies UpdateOne upserts one by one."""

    def __init__(self, coll: mongomock.Collection) -> None:
        self.coll = coll
        self.batches: list[list[str]] = []  # incident_ids of each bulk_write, in order

    def bulk_write(self, requests: Sequence[UpdateOne], ordered: bool = True) -> None:
        assert not ordered, "errord writes unordered"
        self.batches.append([op._filter["incident_id"] for op in requests])
        for op in requests:
            self.coll.update_one(op._filter, op._doc, upsert=op._upsert)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.coll, name)


class FakeMongo:
    """MockupDB in front, mongomock behind; see the module doc."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port
        self.store = mongomock.MongoClient(tz_aware=True)
        self.script: list[Any] = []
        self.commands: list[dict[str, Any]] = []  # every command but the handshake, in order
        self.acked: list[dict[str, Any]] = []  # update commands answered ok (applied)
        self._lock = threading.Lock()
        self._store_lock = threading.RLock()  # one command at a time on the documents, as a server per document
        self._server: MockupDB | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeMongo:
        server = MockupDB(port=self.port, auto_ismaster=True, max_wire_version=21, request_timeout=60)
        server.autoresponds(self._handle)
        self.port = server.run()
        self._server = server
        return self

    def stop(self) -> None:
        """Close the listening socket and every connection (clients see them drop)."""
        server, self._server = self._server, None
        if server is None:
            return
        # MockupDB's accept loop polls select() once a second; a connection wakes it, so
        # stop() does not spend that second joining it.
        server._stopped = True
        with contextlib.suppress(OSError):
            socket.create_connection(("localhost", self.port), timeout=0.5).close()
        server.stop()

    def __enter__(self) -> FakeMongo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def uri(self) -> str:
        return f"mongodb://localhost:{self.port}"

    def collection(self, db: str = "errord", coll: str = "error_codes") -> mongomock.Collection:
        return self.store[db][coll]

    def docs(self, db: str = "errord", coll: str = "error_codes") -> list[dict[str, Any]]:
        return list(self.collection(db, coll).find({}, {"_id": False}))

    def named(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [c for c in self.commands if next(iter(c)).lower() == name.lower()]

    # -- the server side -----------------------------------------------------------------

    def _handle(self, request: Any) -> bool:
        name = (request.command_name or "").lower()
        if name in ("ismaster", "hello"):
            return False  # the auto_ismaster responder answers
        doc = dict(request.doc)
        with self._lock:
            self.commands.append(doc)
        coll = self.store[doc["$db"]][str(doc.get(request.command_name, ""))]
        if name == "update":
            with self._store_lock:
                return self._update(request, doc, coll)
        if name == "findandmodify":
            with self._store_lock:
                return self._find_and_modify(request, doc, coll)
        if name == "find":
            cursor = coll.find(
                dict(doc.get("filter") or {}),
                sort=list((doc.get("sort") or {}).items()) or None,
                limit=int(doc.get("limit") or 0),
            )
            return request.ok(cursor={"id": 0, "ns": f"{doc['$db']}.{coll.name}", "firstBatch": list(cursor)})
        if name == "createindexes":
            for index in doc["indexes"]:
                opts = {k: v for k, v in index.items() if k in ("unique", "sparse", "name")}
                coll.create_index(list(index["key"].items()), **opts)
            return request.ok(numIndexesBefore=1, numIndexesAfter=1 + len(doc["indexes"]))
        if name == "insert":
            coll.insert_many([dict(d) for d in doc["documents"]])
            return request.ok(n=len(doc["documents"]))
        if name == "listindexes":
            specs = [
                {"v": 2, "key": dict(v["key"]), "name": k, **{o: v[o] for o in ("unique", "sparse") if o in v}}
                for k, v in coll.index_information().items()
            ]
            return request.ok(cursor={"id": 0, "ns": f"{doc['$db']}.{coll.name}", "firstBatch": specs})
        if name == "drop":
            coll.drop()
            return request.ok()
        if name in ("endsessions", "ping", "killcursors"):
            return request.ok()
        return request.command_err(59, f"no such command: {name}")

    def _update(self, request: Any, doc: dict[str, Any], coll: mongomock.Collection) -> bool:
        with self._lock:
            action = self.script.pop(0) if self.script else None
        if action == "hangup":
            return request.hangup()
        if isinstance(action, tuple) and action[0] == "error":
            return request.command_err(action[1], f"fake error {action[1]}")
        if isinstance(action, tuple) and action[0] == "slow":
            time.sleep(action[1])
        failing = {action[1]: action[2]} if isinstance(action, tuple) and action[0] == "write_error" else {}
        n = modified = 0
        upserted, errors = [], []
        for k, u in enumerate(doc["updates"]):
            if k in failing:
                errors.append({"index": k, "code": failing[k], "errmsg": f"fake write error {failing[k]}"})
                continue
            try:
                how = coll.update_many if u.get("multi") else coll.update_one
                res = how(dict(u["q"]), dict(u["u"]), upsert=bool(u.get("upsert")))
            except DuplicateKeyError:
                errors.append({"index": k, "code": 11000, "errmsg": "E11000 duplicate key"})
                continue
            n += 1
            modified += res.modified_count
            if res.upserted_id is not None:
                upserted.append({"index": k, "_id": res.upserted_id})
        with self._lock:
            self.acked.append(doc)
        reply: dict[str, Any] = {"n": n, "nModified": modified}
        if upserted:
            reply["upserted"] = upserted
        if errors:
            reply["writeErrors"] = errors
        return request.ok(**reply)

    def _find_and_modify(self, request: Any, doc: dict[str, Any], coll: mongomock.Collection) -> bool:
        """``find_one_and_update`` (fleet mode): mongomock applies the real operators."""
        ret = ReturnDocument.AFTER if doc.get("new") else ReturnDocument.BEFORE
        try:
            value = coll.find_one_and_update(
                dict(doc.get("query") or {}), dict(doc["update"]), upsert=bool(doc.get("upsert")), return_document=ret
            )
        except DuplicateKeyError:
            return request.command_err(11000, "E11000 duplicate key")
        return request.ok(value=value, lastErrorObject={"n": 1 if value is not None else 0})
