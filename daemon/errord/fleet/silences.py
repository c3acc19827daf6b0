"""Silences shared by the fleet (CONTRACT §13: "Silences made on one host apply to the
whole fleet (stored in MongoDB as well)").

Each member keeps its own silences in its journal, as without a fleet (CONTRACT §8), and
copies them into ``<database>.fleet_silences``, one document per (fleet, silence id),
by atomic single-document operations: an upsert that writes the fields once
(``$setOnInsert``) and an end written once (its filter says ``ended_at: null``). The
fleet's documents are read at start and on the lease-renewal cadence (every lease/3);
those made elsewhere go into this member's mute oracle beside its own. What it last read
is kept in its journal (meta ``fleet_silences``): with MongoDB down, even across a
restart, a member keeps muting with the last set it saw, and its own.

- ``unsilence`` of a silence made elsewhere ends it here at once and in MongoDB (now, or
  at the next renewal that reaches it); the member that made it ends its journal's copy
  when it next reads the fleet's documents. So an end, or an end time passing, holds on
  every member.
- A silence until resolved (an ack) covers, on the other members, the incidents of the
  same fleet keys (the code; app and code with ``scope = "app"``) as those it covers
  where it was made, until it ends there (its incidents there resolved, or unsilence).
- Documents carry ``expire_at`` (a date: the end + 7 days) for a TTL index, so ended
  silences leave MongoDB as they leave the journals.

No pymongo at import: ``control.apply_offline`` (no daemon, no MongoDB) uses the journal
half only (``coll`` None): an end it makes waits in the meta for the next start.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from errord.errors import JournalError
from errord.fleet.runconfig import fleet_key
from errord.model import Incident
from errord.policy.mute import MuteOracle
from errord.policy.silence import KEEP_ENDED, Silence
from errord.store.journal import Journal

__all__ = ["COLLECTION", "META", "FleetSilence", "FleetSilences", "listed", "seen"]

log = logging.getLogger(__name__)

COLLECTION = "fleet_silences"
META = "fleet_silences"  # journal meta: {"seen": [documents made elsewhere], "ends": {id: time}}

Doc = dict[str, Any]

_FIELDS = ("pattern", "app", "starts_at", "ends_at", "until_resolved", "reason", "by", "created_at", "ack")


@dataclass(frozen=True, slots=True)
class FleetSilence(Silence):
    """A silence made on another member (``origin``, its server_id)."""

    origin: str = ""
    keys: frozenset[str] = frozenset()  # until resolved: the fleet keys of the incidents it covers there
    scope: str = "code"

    def active(self, now: float, open_ids: Any) -> bool:
        """In force (an until-resolved one: until it ends where it was made)."""
        return self.in_force(now)

    def covers(self, code: str, app: str | None, incident_id: str) -> bool:
        if self.until_resolved:
            return fleet_key(self.scope, code, app) in self.keys
        return Silence.covers(self, code, app, incident_id)

    def to_json(self, now: float, open_ids: Any, iso: Any) -> dict[str, Any]:
        out = Silence.to_json(self, now, open_ids, iso)
        out["origin"] = self.origin
        out["keys"] = sorted(self.keys)
        return out


def _expire(end: float | None) -> datetime | None:
    return None if end is None else datetime.fromtimestamp(end + KEEP_ENDED, UTC)


def _silence(doc: Mapping[str, Any], scope: str) -> FleetSilence:
    ends_at, ended_at = doc["ends_at"], doc.get("ended_at")
    return FleetSilence(
        id=str(doc["id"]),
        pattern=str(doc["pattern"]),
        app=str(doc["app"]),
        starts_at=float(doc["starts_at"]),
        ends_at=None if ends_at is None else float(ends_at),
        until_resolved=bool(doc["until_resolved"]),
        reason=str(doc.get("reason") or ""),
        by=str(doc.get("by") or ""),
        created_at=float(doc["created_at"]),
        ended_at=None if ended_at is None else float(ended_at),
        ack=bool(doc.get("ack")),
        origin=str(doc["origin"]),
        keys=frozenset(str(k) for k in doc.get("keys") or ()),
        scope=scope,
    )


def _gone(doc: Mapping[str, Any], now: float) -> bool:
    """Ended over 7 days ago (what the journals prune, and the TTL index removes)."""
    end = doc.get("ended_at")
    if end is None:
        end = doc.get("ends_at")
    return end is not None and float(end) < now - KEEP_ENDED


class FleetSilences:
    """One member's share of the fleet's silences; see the module doc."""

    def __init__(
        self, coll: Any, *, fleet: str, server_id: str, scope: str, journal: Journal, mutes: MuteOracle
    ) -> None:
        self.coll = coll  # None: no MongoDB here (the CLI with no daemon): the journal's copy only
        self.fleet = fleet
        self.me = server_id
        self.scope = scope
        self.journal = journal
        self.mutes = mutes
        self._seen: list[Doc] = []  # the documents made elsewhere, as last read
        self._ends: dict[str, float] = {}  # silences made elsewhere, ended here, not written yet
        self._pushed: dict[str, float | None] = {}  # own silence id -> the ended_at last written
        self._local: tuple[Silence, ...] | None = None  # the oracle's own silences at the last push
        self._saved = ""
        self._indexed = False
        self.answered = True  # the last sync reached MongoDB
        self._load()

    @classmethod
    def for_config(cls, coll: Any, config: Any, journal: Journal, mutes: MuteOracle) -> FleetSilences:
        """This member's, from its config (``[fleet] name``, ``server_id``, ``scope``)."""
        return cls(
            coll, fleet=config.fleet.name, server_id=config.server_id, scope=config.scope, journal=journal, mutes=mutes
        )

    def _id(self, silence_id: str) -> str:
        return f"{self.fleet}\x00{silence_id}"

    # -- the journal's copy ------------------------------------------------------------

    def _load(self) -> None:
        try:
            text = self.journal.get_meta(META)
            data = json.loads(text) if text else {}
            self._seen = [d for d in data.get("seen", []) if isinstance(d, dict)]
            self._ends = {str(k): float(v) for k, v in dict(data.get("ends", {})).items()}
            self._saved = text or ""
        except (JournalError, ValueError, TypeError, AttributeError) as exc:
            log.warning("fleet silences last seen not restored (%s): read again from MongoDB", exc)
            self._seen, self._ends = [], {}
        self._apply()

    def _save(self) -> None:
        text = json.dumps({"seen": self._seen, "ends": self._ends}, sort_keys=True, default=str)
        if text != self._saved:
            self.journal.set_meta(META, text)
            self._saved = text

    def _apply(self) -> None:
        out: list[Silence] = []
        for doc in self._seen:
            try:
                s = _silence(doc, self.scope)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("fleet silence %r skipped: unusable document (%s)", doc.get("id"), exc)
                continue
            if s.id in self._ends and s.ended_at is None:
                s = replace(s, ended_at=self._ends[s.id])
            out.append(s)
        self.mutes.set_fleet_silences(out)

    def silences(self) -> tuple[Silence, ...]:
        """The silences made elsewhere, as this member has them (for the listings)."""
        return self.mutes.fleet

    def knows(self, silence_id: str) -> bool:
        """Whether ``silence_id`` is a silence made elsewhere that this member has seen."""
        return any(s.id == silence_id for s in self.mutes.fleet)

    def end(self, ids: Sequence[str], now: float) -> None:
        """End silences made elsewhere: here at once, in MongoDB at the next sync."""
        for sid in ids:
            if self.knows(sid):
                self._ends.setdefault(sid, now)
        self._apply()
        try:
            self._save()
        except JournalError as exc:  # ended here and written to MongoDB still; lost at a restart
            log.warning("fleet silence end not kept in the journal: %s", exc)

    # -- MongoDB -------------------------------------------------------------------------

    def due(self) -> bool:
        """Something of this member's is not in MongoDB yet (a silence made or ended here)."""
        return self.coll is not None and (self.mutes.local is not self._local or bool(self._ends))

    def sync(self, now: float, open_incidents: Callable[[], Sequence[Incident]]) -> bool:
        """Write what changed here, then read the fleet's; False when MongoDB did not answer
        (the last set seen stays in force)."""
        if self.coll is None:
            return False
        from pymongo.errors import PyMongoError

        self._local = self.mutes.local  # not due again until it changes (the cadence retries the rest)
        try:
            self._push(now, open_incidents)
            docs = list(self.coll.find({"fleet": self.fleet}))
        except JournalError as exc:  # reading this member's own: the batch path reports the journal
            log.warning("fleet silences not written: %s", exc)
            return True
        except PyMongoError as exc:
            if self.answered:
                log.warning("fleet silences: MongoDB did not answer (%s): the last set seen stays", type(exc).__name__)
            self.answered = False
            return False
        if not self.answered:
            log.info("fleet silences: MongoDB answers again")
        self.answered = True
        try:
            self._take(docs, now)
        except JournalError as exc:
            log.warning("fleet silences read, not kept: %s", exc)
        return True

    def _push(self, now: float, open_incidents: Callable[[], Sequence[Incident]]) -> None:
        from pymongo import ASCENDING

        coll = self.coll
        if not self._indexed:
            coll.create_index([("fleet", ASCENDING)])
            coll.create_index([("expire_at", ASCENDING)], expireAfterSeconds=0)
            self._indexed = True
        keys: dict[str, str] | None = None
        for s in self.journal.control.silences(since=now - KEEP_ENDED):
            if s.id in self._pushed and self._pushed[s.id] == s.ended_at:
                continue
            if keys is None:
                keys = {inc.incident_id: fleet_key(self.scope, inc.code, inc.app) for inc in open_incidents()}
            doc = {f: getattr(s, f) for f in _FIELDS}
            doc.update(
                fleet=self.fleet,
                id=s.id,
                origin=self.me,
                keys=sorted({keys[i] for i in s.incident_ids if i in keys}),
                ended_at=None,
                expire_at=_expire(s.ends_at),
            )
            coll.update_one({"_id": self._id(s.id)}, {"$setOnInsert": doc}, upsert=True)
            if s.ended_at is not None:
                self._write_end(s.id, s.ended_at)
            self._pushed[s.id] = s.ended_at
        for sid, at in list(self._ends.items()):
            self._write_end(sid, at)
            del self._ends[sid]

    def _write_end(self, silence_id: str, at: float) -> None:
        self.coll.update_one(
            {"_id": self._id(silence_id), "ended_at": None},
            {"$set": {"ended_at": at, "ended_by": self.me, "expire_at": _expire(at)}},
        )

    def _take(self, docs: list[Doc], now: float) -> None:
        mine_ended = {
            str(d.get("id")): float(d["ended_at"])
            for d in docs
            if d.get("origin") == self.me and isinstance(d.get("ended_at"), (int, float))
        }
        still = [s.id for s in self.mutes.local if s.id in mine_ended and s.ended_at is None]
        if still:  # ended on another member: ends here too
            for sid in still:
                self.journal.control.end_now([sid], mine_ended[sid])
            self.mutes.set_silences(self.journal.control.silences())
            log.info("fleet: silence(s) %s ended on another member", ", ".join(still))
        self._seen = [
            {k: v for k, v in d.items() if k not in ("_id", "expire_at")}
            for d in docs
            if d.get("origin") != self.me and not _gone(d, now)
        ]
        self._save()
        self._apply()


def listed(
    journal: Journal, config: Any, now: float, open_ids: set[str], *, since: float | None
) -> list[dict[str, Any]]:
    """The silences as ``errord silences --json`` and ``GET /api/v1/silences`` list them in a
    fleet: this host's (``origin`` its server_id), then those made elsewhere as the daemon
    last read them (``origin`` theirs), in force, or (``since``) ended at or after ``since``."""
    from errord.views import iso

    out = []
    for s in journal.control.silences(since=since):
        if since is not None or s.active(now, open_ids):
            out.append({**s.to_json(now, open_ids, iso), "origin": config.server_id})
    for s in seen(journal, config).values():
        shown = s.active(now, open_ids) or (since is not None and (s.ended(now) or now) >= since)
        if shown:
            out.append(s.to_json(now, open_ids, iso))
    return out


def seen(journal: Journal, config: Any) -> dict[str, Silence]:
    """The silences made on other members, by id, as this host's daemon last read them
    (journal meta; with the ends made here that MongoDB has not heard of yet)."""
    shared = FleetSilences.for_config(None, config, journal, MuteOracle())
    return {s.id: s for s in shared.silences()}
