"""The notice outbox: the ``notices`` and ``deliveries`` tables, over the journal's connection.

A notice comes with its target keys (``Notice.targets``, decided by ``policy.route.Router``
before the commit; the store does no routing). ``Journal.commit`` stores it with one
delivery row per target (``insert``), in the batch's transaction, so a notice is queued
exactly when the lines that made it are counted. Each target's rows are its own queue: a
slow target never holds up another, and within one target the notices go out strictly in
order (``due_deliveries``). Marking a delivery sent is a second, later transaction
(``mark_delivered``): only a crash between a target accepting a notice and that
transaction can repeat the notice (CONTRACT §7).

The notify workers (``sinks/notify.py``) each use ``Journal(state_dir).outbox`` on a
connection of their own; the daemon prunes it and drops removed targets; ``status`` counts it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from errord.model import Notice, NoticeType
from errord.store.schema import Read, Transact

__all__ = ["Delivery", "Outbox"]

logger = logging.getLogger(__name__)

_NOTICE_COLS = "n.id, n.type, n.code, n.title, n.body, n.incident_id, n.event_time, n.tags, n.vars"


class Delivery(NamedTuple):
    """The head of one target's queue: what the sink needs to gate and back off."""

    id: int
    attempts: int
    next_at: float


class Outbox:
    """The queued notices and their deliveries; made by ``Journal`` over its connection."""

    def __init__(self, tx: Transact, read: Read) -> None:
        # The journal's own helpers, not its connection: it reconnects after a failed
        # rollback, and every part must then use the new connection.
        self._tx = tx
        self._read = read

    def insert(self, db: sqlite3.Connection, notes: Sequence[Notice], now: float) -> list[int]:
        """Store ``notes`` and one delivery row per target key of each, inside the caller's
        transaction on ``db`` (``Journal.commit``); returns their ids, in order."""
        # Under BEGIN IMMEDIATE nobody else inserts, so ids can be assigned here and
        # both tables filled with executemany (no per-row round trip for lastrowid).
        seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'notices'").fetchone()
        top = db.execute("SELECT max(id) FROM notices").fetchone()[0]
        base = max(seq[0] if seq else 0, top or 0)
        ids = list(range(base + 1, base + 1 + len(notes)))
        db.executemany(
            "INSERT INTO notices (id, type, code, title, body, incident_id, event_time, tags,"
            " created_at, vars) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    nid,
                    n.type.value,
                    n.code,
                    n.title,
                    n.body,
                    n.incident_id,
                    n.event_time,
                    json.dumps(list(n.tags)),
                    now,
                    json.dumps(n.vars, ensure_ascii=False) if n.vars is not None else None,
                )
                for nid, n in zip(ids, notes, strict=True)
            ],
        )
        rows = [(nid, t, now) for nid, n in zip(ids, notes, strict=True) for t in n.targets]
        if rows:
            db.executemany("INSERT INTO deliveries (notice_id, target, next_at) VALUES (?, ?, ?)", rows)
        return ids

    def head(self, target: str) -> Delivery | None:
        """The oldest undelivered delivery of ``target`` (due or not), or None."""
        rows = self._read(
            "head",
            "SELECT id, attempts, next_at FROM deliveries"
            " WHERE target = ? AND delivered_at IS NULL ORDER BY id LIMIT 1",
            (target,),
        )
        return Delivery(*rows[0]) if rows else None

    def due_deliveries(self, target: str, limit: int, now: float) -> list[tuple[int, Notice]]:
        """The oldest undelivered deliveries of ``target``, in order, as (delivery id, notice).

        Empty unless the oldest one is due (``next_at <= now``): a target's notices go
        out strictly in order, never skipping ahead of one that is backing off.
        """
        rows = self._read(
            "due_deliveries",
            f"SELECT d.id, d.next_at, {_NOTICE_COLS} FROM deliveries d"
            " JOIN notices n ON n.id = d.notice_id"
            " WHERE d.target = ? AND d.delivered_at IS NULL ORDER BY d.id LIMIT ?",
            (target, limit),
        )
        if not rows or rows[0][1] > now:
            return []
        return [(r[0], _notice(r[2:])) for r in rows]

    def mark_delivered(self, ids: Sequence[int], now: float) -> None:
        """Record the deliveries ``ids`` as accepted by their target at ``now``."""
        with self._tx("mark_delivered") as db:
            db.executemany(
                "UPDATE deliveries SET delivered_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?",
                [(now, i) for i in ids],
            )

    def mark_accepted(self, accepted: Mapping[int, float]) -> None:
        """Record several deliveries as accepted, each at its own time, in ONE transaction
        (``{delivery id: when the target accepted it}``)."""
        with self._tx("mark_delivered") as db:
            db.executemany(
                "UPDATE deliveries SET delivered_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?",
                [(when, i) for i, when in accepted.items()],
            )

    def mark_rejected(self, delivery_id: int, error: str, now: float) -> None:
        """Record ``delivery_id`` as refused for good (a webhook's 4xx, CONTRACT §11): done
        with, not delivered — ``delivered_at`` set so the queue moves on, ``last_error`` kept
        (``rejected`` counts them)."""
        with self._tx("mark_rejected") as db:
            db.execute(
                "UPDATE deliveries SET delivered_at = ?, attempts = attempts + 1, last_error = ? WHERE id = ?",
                (now, error[:1000] or "rejected", delivery_id),
            )

    def rejected_by_target(self) -> dict[str, int]:
        """Deliveries refused for good per target key (kept until pruned, like the sent)."""
        rows = self._read(
            "rejected_by_target",
            "SELECT target, count(*) FROM deliveries WHERE delivered_at IS NOT NULL AND last_error IS NOT NULL"
            " GROUP BY target",
        )
        return {t: int(n) for t, n in rows}

    def mark_failed(self, delivery_id: int, error: str, next_at: float) -> None:
        """Record a failed attempt of ``delivery_id`` (``error`` capped) and when to retry it."""
        with self._tx("mark_failed") as db:
            db.execute(
                "UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_at = ? WHERE id = ?",
                (error[:1000], next_at, delivery_id),
            )

    def pending(self) -> int:
        """Undelivered delivery rows, all targets."""
        rows = self._read("pending_notices", "SELECT count(*) FROM deliveries WHERE delivered_at IS NULL")
        return int(rows[0][0])

    def pending_by_target(self) -> dict[str, int]:
        """Undelivered delivery rows per target key."""
        rows = self._read(
            "pending_by_target",
            "SELECT target, count(*) FROM deliveries WHERE delivered_at IS NULL GROUP BY target",
        )
        return {t: int(n) for t, n in rows}

    def target_states(self) -> dict[str, tuple[float | None, int, str | None]]:
        """Per target key: (last delivery time, pending, the last error of what is pending)
        — the status page's delivery state (CONTRACT §10)."""
        rows = self._read(
            "target_states",
            "SELECT target, max(delivered_at), sum(delivered_at IS NULL),"
            " (SELECT last_error FROM deliveries d2 WHERE d2.target = d.target AND d2.delivered_at IS NULL"
            "  AND d2.last_error IS NOT NULL ORDER BY d2.id DESC LIMIT 1)"
            " FROM deliveries d GROUP BY target",
        )
        return {t: (last, int(n or 0), err) for t, last, n, err in rows}

    def drop_targets(self, keep: set[str]) -> int:
        """Drop the pending deliveries of targets not in ``keep`` (removed on reload)."""
        dropped = {t: n for t, n in self.pending_by_target().items() if t not in keep}
        if not dropped:
            return 0
        with self._tx("drop_target_deliveries") as db:
            db.executemany(
                "DELETE FROM deliveries WHERE target = ? AND delivered_at IS NULL",
                [(t,) for t in dropped],
            )
        for t, n in dropped.items():
            logger.warning("notify target %s was removed: dropped its %d pending notices", t, n)
        return sum(dropped.values())

    def prune(self, now: float, keep_seconds: float = 7 * 86400) -> int:
        """Delete delivered deliveries, and notices with nothing left to deliver, older
        than ``keep_seconds``. Returns the number of notices deleted. Incidents stay."""
        cutoff = now - keep_seconds
        with self._tx("prune") as db:
            db.execute(
                "DELETE FROM deliveries WHERE delivered_at IS NOT NULL AND delivered_at < ?",
                (cutoff,),
            )
            cur = db.execute(
                "DELETE FROM notices WHERE created_at < ? AND NOT EXISTS"
                " (SELECT 1 FROM deliveries d WHERE d.notice_id = notices.id)",
                (cutoff,),
            )
            return cur.rowcount


def _notice(row: Sequence[Any]) -> Notice:
    nid, typ, code, title, body, incident_id, event_time, tags, vars = row
    return Notice(
        type=NoticeType(typ),
        code=code,
        title=title,
        body=body,
        incident_id=incident_id,
        event_time=event_time,
        tags=tuple(json.loads(tags)),
        id=nid,
        vars=json.loads(vars) if vars is not None else None,
    )
