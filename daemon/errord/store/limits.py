"""The storm limits' state (CONTRACT §9): the ``limit_state`` table (schema 5), over the
journal's connection.

One row per notify target that has a limit: the times of its latest sends (JSON), since
when it holds its queued notices for a digest (NULL: not holding), and how many digests it
sent for how many notices. The held notices themselves are the target's undelivered rows
in the outbox (``store/outbox.py``): nothing is copied, so nothing can be lost or doubled
between the two. A send's marks and the new state commit in ONE transaction (``record``),
so after a kill -9 the budget and the holding are exactly those of the sends recorded.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping

from errord.model import Notice
from errord.policy.limit import LimitState
from errord.store.outbox import _NOTICE_COLS, _notice
from errord.store.schema import Read, Transact

__all__ = ["Limits", "Queued"]

Queued = tuple[int, float, Notice]  # (delivery id, when the notice was made, the notice)


class Limits:
    """A target's limit state and its queue as the limit sees it; made by ``Journal``."""

    def __init__(self, tx: Transact, read: Read) -> None:
        self._tx = tx
        self._read = read

    def load(self, target: str) -> LimitState:
        """The stored state of ``target`` (a fresh one when it has none)."""
        rows = self._read(
            "limit_state",
            "SELECT sends, held_since, digests, digested FROM limit_state WHERE target = ?",
            (target,),
        )
        if not rows:
            return LimitState()
        sends, held_since, digests, digested = rows[0]
        return LimitState([float(s) for s in json.loads(sends)], held_since, int(digests), int(digested))

    def hold(self, target: str, state: LimitState, since: float) -> None:
        """``target`` starts holding its queued notices at ``since`` (durably)."""
        state.held_since = since
        with self._tx("limit_hold") as db:
            self._save(db, target, state)

    def queued(self, target: str, limit: int) -> list[Queued]:
        """The oldest undelivered notices of ``target``, in order, with when each was made."""
        rows = self._read(
            "limit_queued",
            f"SELECT d.id, n.created_at, {_NOTICE_COLS} FROM deliveries d"
            " JOIN notices n ON n.id = d.notice_id"
            " WHERE d.target = ? AND d.delivered_at IS NULL ORDER BY d.id LIMIT ?",
            (target, limit),
        )
        return [(int(r[0]), float(r[1]), _notice(r[2:])) for r in rows]

    def record(self, target: str, state: LimitState, accepted: Mapping[int, float]) -> None:
        """The deliveries ``accepted`` ({id: when}) marked delivered and ``state`` stored,
        in one transaction."""
        with self._tx("limit_record") as db:
            db.executemany(
                "UPDATE deliveries SET delivered_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?",
                [(when, i) for i, when in accepted.items()],
            )
            self._save(db, target, state)

    def held(self) -> int:
        """Undelivered notices of the targets that are holding (all targets)."""
        rows = self._read(
            "limit_held",
            "SELECT count(*) FROM deliveries d JOIN limit_state s ON s.target = d.target"
            " WHERE d.delivered_at IS NULL AND s.held_since IS NOT NULL",
        )
        return int(rows[0][0])

    def totals(self) -> tuple[int, int]:
        """(digests sent, notices they stood for), all targets."""
        rows = self._read(
            "limit_totals", "SELECT coalesce(sum(digests), 0), coalesce(sum(digested), 0) FROM limit_state"
        )
        return int(rows[0][0]), int(rows[0][1])

    @staticmethod
    def _save(db: sqlite3.Connection, target: str, state: LimitState) -> None:
        db.execute(
            "INSERT INTO limit_state (target, sends, held_since, digests, digested) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (target) DO UPDATE SET sends = excluded.sends, held_since = excluded.held_since,"
            " digests = excluded.digests, digested = excluded.digested",
            (target, json.dumps(state.sends), state.held_since, state.digests, state.digested),
        )
