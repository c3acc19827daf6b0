"""The fleet's claim store (CONTRACT §13): one ``fleet_incidents`` document per (fleet, key).

Every change is one atomic single-document operation whose filter carries its condition
(``find_one_and_update`` with upsert, ``$push``/``$pull``, a positional ``$set``, a
compare-and-set on ``re_alerts``): never read, decide, write. So two members racing on the
same key cannot both send: the server applies one operation at a time per document and
only one of them can find the filter still true.

A document::

    {_id: "<fleet>\\x00<key>", fleet, key, code, app, scope, open: bool,
     failing: [{sid, until}],   # members failing now, each with its lease
     ever: [sid],               # members that had it open in this episode (for "all N hosts")
     holder, holder_until,      # who may speak, and until when
     announced: bool,           # the failure notice is recorded by the holder
     alerted_by, start_time, last_alert_time, re_alerts, occurrences, resolved_by}

Time comes in as data (``now``: the member's wall clock, ``ts``: the line's event time);
every method returns ``None`` when MongoDB does not answer, and the caller fails open
(the member sends on its own).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, PyMongoError

from errord.fleet.runconfig import fleet_key

__all__ = ["FleetClaims", "FleetDecision", "ScopeMismatch", "fleet_key", "fleet_rows"]

log = logging.getLogger(__name__)

Doc = dict[str, Any]


class ScopeMismatch(Exception):
    """The fleet was started with another ``scope``: this member must alert alone."""


@dataclass(frozen=True, slots=True)
class FleetDecision:
    """What the fleet says about one change of a member's incident.

    ``send``: this member sends the notice; ``hosts``: the live members failing (sorted),
    ``total``: distinct members that had it open in this episode.
    """

    send: bool
    hosts: tuple[str, ...] = ()
    total: int = 0
    announced: bool = False


def _live(doc: Mapping[str, Any], now: float) -> tuple[str, ...]:
    return tuple(sorted(m["sid"] for m in doc.get("failing", ()) if m["until"] >= now))


def _stale(doc: Mapping[str, Any], now: float) -> tuple[str, ...]:
    return tuple(sorted(m["sid"] for m in doc.get("failing", ()) if m["until"] < now))


def _decision(doc: Mapping[str, Any] | None, now: float, *, send: bool) -> FleetDecision:
    if doc is None:
        return FleetDecision(send=send)
    return FleetDecision(
        send=send, hosts=_live(doc, now), total=len(doc.get("ever", ())), announced=bool(doc.get("announced"))
    )


def fleet_rows(docs: list[Mapping[str, Any]], now: float) -> list[dict[str, Any]]:
    """The open fleet incidents in the shape of ``errord fleet --json`` (CONTRACT §13)."""
    return [
        {
            "key": d["key"],
            "code": d["code"],
            "app": d.get("app"),
            "hosts": list(_live(d, now)),
            "stale": list(_stale(d, now)),
            "alerted_by": d.get("alerted_by"),
            "start_time": d.get("start_time"),
            "occurrences": int(d.get("occurrences", 0)),
        }
        for d in sorted(docs, key=lambda d: (d.get("start_time") or 0.0, d["key"]))
    ]


class FleetClaims:
    """One member's view of its fleet's documents; every call is atomic per document."""

    def __init__(self, coll: Collection[Doc], *, fleet: str, server_id: str, scope: str, lease: float) -> None:
        self.coll = coll
        self.fleet = fleet
        self.me = server_id
        self.scope = scope
        self.lease = lease

    def _id(self, key: str) -> str:
        return f"{self.fleet}\x00{key}"

    def _guard(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except PyMongoError as exc:
            log.warning("fleet %s: MongoDB did not answer (%s): sending on our own", what, type(exc).__name__)
            return None

    # -- start ---------------------------------------------------------------------------

    def start(self, instance: str, now: float) -> bool | None:
        """Indexes, the fleet's scope and this member's registration.

        Raises ScopeMismatch when the fleet runs with another scope. Returns True when
        another running daemon (another ``instance``) has the same server_id and was seen
        within the lease (the caller warns), False otherwise, None without MongoDB.
        """

        def run() -> bool:
            self.coll.create_index([("fleet", ASCENDING), ("open", ASCENDING)])
            meta = self.coll.find_one_and_update(
                {"_id": f"{self.fleet}\x00\x00meta"},
                {"$setOnInsert": {"fleet": self.fleet, "scope": self.scope, "meta": True}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
            if meta is not None and meta.get("scope") != self.scope:
                raise ScopeMismatch(
                    f"fleet {self.fleet!r} runs with scope {meta.get('scope')!r}, this host with {self.scope!r}"
                )
            before = self.coll.find_one_and_update(
                {"_id": f"{self.fleet}\x00\x00member\x00{self.me}"},
                {"$set": {"fleet": self.fleet, "member": self.me, "instance": instance, "seen": now}},
                upsert=True,
                return_document=ReturnDocument.BEFORE,
            )
            return bool(
                before is not None
                and before.get("instance") != instance
                and before.get("seen", 0.0) >= now - self.lease
            )

        result: bool | None = self._guard("start", run)
        return result

    # -- open / join ---------------------------------------------------------------------

    def open(self, key: str, code: str, app: str | None, ts: float, now: float) -> FleetDecision | None:
        """This member's incident opened (or is open at rejoin): join the fleet incident or open it.

        ``send`` is True only for the member whose atomic open created the episode.
        """

        def run() -> FleetDecision:
            until = now + self.lease
            for _ in range(3):  # a race lost on the upsert means another opened: join it
                joined = self.coll.find_one_and_update(
                    {"_id": self._id(key), "open": True, "failing.sid": {"$ne": self.me}},
                    {
                        "$push": {"failing": {"sid": self.me, "until": until}},
                        "$addToSet": {"ever": self.me},
                        "$min": {"start_time": ts},
                        "$inc": {"occurrences": 1},
                    },
                    return_document=ReturnDocument.AFTER,
                )
                if joined is not None:
                    return _decision(joined, now, send=False)
                again = self.coll.find_one_and_update(
                    {"_id": self._id(key), "open": True, "failing.sid": self.me},
                    {"$set": {"failing.$.until": until}, "$min": {"start_time": ts}},
                    return_document=ReturnDocument.AFTER,
                )
                if again is not None:  # already a member (a refused batch, a restart)
                    mine = again.get("holder") == self.me and not again.get("announced")
                    return _decision(again, now, send=mine)  # the opener that never recorded its notice
                try:
                    opened = self.coll.find_one_and_update(
                        {"_id": self._id(key), "open": {"$ne": True}},
                        {
                            "$set": {
                                "fleet": self.fleet,
                                "key": key,
                                "code": code,
                                "app": app,
                                "scope": self.scope,
                                "open": True,
                                "failing": [{"sid": self.me, "until": until}],
                                "ever": [self.me],
                                "holder": self.me,
                                "holder_until": until,
                                "announced": False,
                                "alerted_by": None,
                                "start_time": ts,
                                "last_alert_time": None,
                                "re_alerts": 0,
                                "occurrences": 1,
                                "resolved_by": None,
                            }
                        },
                        upsert=True,
                        return_document=ReturnDocument.AFTER,
                    )
                except DuplicateKeyError:
                    continue
                return _decision(opened, now, send=True)
            return FleetDecision(send=False)

        result: FleetDecision | None = self._guard("open", run)
        return result

    def merge(self, key: str, code: str, app: str | None, ts: float, now: float) -> FleetDecision | None:
        """At rejoin: an incident this member alerted alone joins the fleet's, or opens one
        marked announced (the member's own notice stands), so nothing is sent again."""
        decision = self.open(key, code, app, ts, now)
        if decision is not None and decision.send:
            self.announce(key, ts)
            return FleetDecision(send=False, hosts=decision.hosts, total=decision.total, announced=True)
        return decision

    def announce(self, key: str, ts: float) -> bool | None:
        """The holder recorded its failure notice: the fleet incident has alerted."""

        def run() -> bool:
            res = self.coll.update_one(
                {"_id": self._id(key), "open": True, "holder": self.me},
                {"$set": {"announced": True, "alerted_by": self.me, "last_alert_time": ts}},
            )
            return res.modified_count == 1

        result: bool | None = self._guard("announce", run)
        return result

    # -- leases --------------------------------------------------------------------------

    def renew(self, now: float) -> int | None:
        """Renew this member's leases on every open fleet incident it fails in (every lease/3)."""

        def run() -> int:
            until = now + self.lease
            res = self.coll.update_many(
                {"fleet": self.fleet, "open": True, "failing.sid": self.me},
                {"$set": {"failing.$.until": until}},
            )
            self.coll.update_many(
                {"fleet": self.fleet, "open": True, "holder": self.me}, {"$set": {"holder_until": until}}
            )
            self.coll.update_one({"_id": f"{self.fleet}\x00\x00member\x00{self.me}"}, {"$set": {"seen": now}})
            return int(res.modified_count)

        result: int | None = self._guard("renew", run)
        return result

    def unannounced(self, now: float) -> list[str] | None:
        """Keys of the fleet incidents this member fails in whose holder's claim lapsed
        before it recorded the failure notice (CONTRACT §13): the next failing member sends it."""

        def run() -> list[str]:
            docs = self.coll.find(
                {
                    "fleet": self.fleet,
                    "open": True,
                    "announced": False,
                    "holder": {"$ne": self.me},
                    "holder_until": {"$lt": now},
                    "failing": {"$elemMatch": {"sid": self.me, "until": {"$gte": now}}},
                }
            )
            return [str(d["key"]) for d in docs]

        result: list[str] | None = self._guard("unannounced", run)
        return result

    def take_over(self, key: str, now: float) -> FleetDecision | None:
        """Become the holder when the holder's lease lapsed and this member fails.

        ``send`` is True when the fleet incident was never announced: this member sends
        the failure (an unannounced claim counts as a lease).
        """

        def run() -> FleetDecision | None:
            doc = self.coll.find_one_and_update(
                {
                    "_id": self._id(key),
                    "open": True,
                    "holder": {"$ne": self.me},
                    "holder_until": {"$lt": now},
                    "failing": {"$elemMatch": {"sid": self.me, "until": {"$gte": now}}},
                },
                {"$set": {"holder": self.me, "holder_until": now + self.lease}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:
                return None
            return _decision(doc, now, send=not doc.get("announced"))

        result: FleetDecision | None = self._guard("take_over", run)
        return result

    def re_alert(self, key: str, ts: float, now: float, interval: Callable[[int], float]) -> FleetDecision | None:
        """A re-alert is due when ``ts`` - the fleet's last_alert_time reaches ``interval(n)``
        (n = the fleet's re-alerts so far, for re_alert_backoff). Only the holder (or a
        member taking over a lapsed one) wins the compare-and-set; ``send`` says whether."""

        def run() -> FleetDecision:
            cur = self.coll.find_one({"_id": self._id(key), "open": True, "announced": True})
            if cur is None or cur.get("last_alert_time") is None:
                return FleetDecision(send=False)
            n = int(cur.get("re_alerts", 0))
            due = ts - interval(n)
            doc = self.coll.find_one_and_update(
                {
                    "_id": self._id(key),
                    "open": True,
                    "re_alerts": n,  # compare-and-set: another member's re-alert makes this miss
                    "last_alert_time": {"$lte": due},
                    "failing": {"$elemMatch": {"sid": self.me, "until": {"$gte": now}}},
                    "$or": [{"holder": self.me}, {"holder_until": {"$lt": now}}],
                },
                {
                    "$set": {"last_alert_time": ts, "holder": self.me, "holder_until": now + self.lease},
                    "$inc": {"re_alerts": 1},
                },
                return_document=ReturnDocument.AFTER,
            )
            return _decision(doc, now, send=doc is not None)

        result: FleetDecision | None = self._guard("re_alert", run)
        return result

    def occurred(self, key: str, n: int) -> bool | None:
        """``n`` more lines of this member for the key (occurrences over all members)."""

        def run() -> bool:
            return (
                self.coll.update_one({"_id": self._id(key), "open": True}, {"$inc": {"occurrences": n}}).modified_count
                == 1
            )

        result: bool | None = self._guard("occurred", run)
        return result

    # -- clear ---------------------------------------------------------------------------

    def clear(self, key: str, now: float) -> FleetDecision | None:
        """This member's incident resolved: leave, then resolve the fleet incident if no live
        member is left failing. ``send`` for exactly one member (``open`` flips once)."""

        def run() -> FleetDecision:
            self.coll.update_one({"_id": self._id(key), "open": True}, {"$pull": {"failing": {"sid": self.me}}})
            doc = self.coll.find_one_and_update(
                {"_id": self._id(key), "open": True, "failing": {"$not": {"$elemMatch": {"until": {"$gte": now}}}}},
                {"$set": {"open": False, "resolved_by": self.me, "holder": None}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:
                return FleetDecision(send=False)
            return FleetDecision(send=bool(doc.get("announced")), hosts=(), total=len(doc.get("ever", ())))

        result: FleetDecision | None = self._guard("clear", run)
        return result

    # -- looking ---------------------------------------------------------------------------

    def rows(self, now: float) -> list[dict[str, Any]]:
        """The fleet's open incidents (``errord fleet --json``); raises PyMongoError."""
        return fleet_rows(list(self.coll.find({"fleet": self.fleet, "open": True})), now)
