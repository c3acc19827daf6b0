"""The journal's control tables (schema 4): silences, and the commands handed to a daemon.

``journal.control`` owns their SQL over the journal's connection:

- ``silences`` — every silence and acknowledgement (``policy.silence.Silence``), kept
  7 days after it ended (``silences --all``), then pruned (``prune``, from ``upkeep``).
  A silence's ``muted`` count grows in the batch's own transaction (``count_muted``,
  from ``Journal.commit``), so it agrees with the incidents' ``notices_muted``.
- ``commands`` — the hand-over (CONTRACT §8: while a daemon runs it stays the only writer
  of incident state): the CLI ``submit``s a row; the daemon's loop reads the ``pending``
  ones, applies each and writes its outcome with ``finish`` in the transaction of its
  effects; the CLI polls ``outcome``. Done commands are pruned after a day.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from errord.errors import JournalError
from errord.policy.silence import KEEP_ENDED, Silence
from errord.store.schema import Read, Transact

__all__ = ["Control", "Pending"]

KEEP_COMMANDS = 86400.0  # seconds a done command's row is kept

_COLS = (
    "id, pattern, app, starts_at, ends_at, until_resolved, incident_ids, reason, by_name, created_at,"
    " ended_at, muted, ack"
)

Pending = tuple[int, str, dict[str, Any]]  # (command id, kind, args)


def _silence(row: Sequence[Any]) -> Silence:
    return Silence(
        id=row[0],
        pattern=row[1],
        app=row[2],
        starts_at=row[3],
        ends_at=row[4],
        until_resolved=bool(row[5]),
        incident_ids=frozenset(json.loads(row[6])),
        reason=row[7],
        by=row[8],
        created_at=row[9],
        ended_at=row[10],
        muted=row[11],
        ack=bool(row[12]),
    )


class Control:
    """Silences and commands; see the module doc."""

    def __init__(self, tx: Transact, read: Read) -> None:
        self._tx = tx
        self._read = read

    def _rows(self, what: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._read(what, sql, params)
        except JournalError as exc:  # a read-only view of a file an older daemon runs on
            if "no such table" in str(exc):
                return []
            raise

    # -- silences --------------------------------------------------------------------

    def silences(self, *, since: float | None = None) -> list[Silence]:
        """Silences not ended (``since`` None), or also those ended at or after ``since``;
        oldest first. "Ended" here is the stored state: an end time passed or ``ended_at``."""
        if since is None:
            sql = f"SELECT {_COLS} FROM silences WHERE ended_at IS NULL ORDER BY created_at, id"
            return [_silence(r) for r in self._rows("silences", sql)]
        sql = f"SELECT {_COLS} FROM silences WHERE coalesce(ended_at, ends_at, 1e300) >= ? ORDER BY created_at, id"
        return [_silence(r) for r in self._rows("silences", sql, (since,))]

    def get(self, ids: Sequence[str]) -> dict[str, Silence]:
        """The silences with these ids that exist."""
        out: dict[str, Silence] = {}
        for sid in ids:
            rows = self._rows("silence", f"SELECT {_COLS} FROM silences WHERE id = ?", (sid,))
            if rows:
                out[sid] = _silence(rows[0])
        return out

    @staticmethod
    def insert(db: sqlite3.Connection, s: Silence) -> None:
        """Store a new silence (in the caller's transaction)."""
        db.execute(
            f"INSERT INTO silences ({_COLS}) VALUES ({', '.join('?' * 13)})",
            (
                s.id,
                s.pattern,
                s.app,
                s.starts_at,
                s.ends_at,
                int(s.until_resolved),
                json.dumps(sorted(s.incident_ids)),
                s.reason,
                s.by,
                s.created_at,
                s.ended_at,
                s.muted,
                int(s.ack),
            ),
        )

    @staticmethod
    def end(db: sqlite3.Connection, ids: Sequence[str], now: float) -> None:
        """End these silences now (one already ended keeps its end)."""
        db.executemany("UPDATE silences SET ended_at = ? WHERE id = ? AND ended_at IS NULL", [(now, i) for i in ids])

    @staticmethod
    def count_muted(db: sqlite3.Connection, counts: Mapping[str, int]) -> None:
        """Add notices muted per silence id (the batch's transaction)."""
        db.executemany("UPDATE silences SET muted = muted + ? WHERE id = ?", [(n, i) for i, n in counts.items()])

    def end_now(self, ids: Sequence[str], now: float) -> None:
        """``end`` in a transaction of its own."""
        with self._tx("end silences") as db:
            self.end(db, ids, now)

    def active_count(self, now: float, open_ids: set[str]) -> int:
        """Silences and acks in force now (``status --json``'s ``silences_active``)."""
        return sum(1 for s in self.silences() if s.active(now, open_ids))

    # -- commands --------------------------------------------------------------------

    def submit(self, kind: str, args: Mapping[str, Any], now: float) -> int:
        """Queue a command for the running daemon; its id."""
        with self._tx("submit command") as db:
            cur = db.execute(
                "INSERT INTO commands (kind, args, created_at) VALUES (?, ?, ?)", (kind, json.dumps(args), now)
            )
            rowid = cur.lastrowid
        assert rowid is not None
        return rowid

    def pending(self) -> list[Pending]:
        """Commands not applied yet, oldest first."""
        rows = self._rows("pending commands", "SELECT id, kind, args FROM commands WHERE done_at IS NULL ORDER BY id")
        return [(r[0], r[1], json.loads(r[2])) for r in rows]

    @staticmethod
    def finish(db: sqlite3.Connection, command_id: int, status: int, outcome: Mapping[str, Any], now: float) -> None:
        """Record a command's outcome (in the transaction of its effects)."""
        db.execute(
            "UPDATE commands SET done_at = ?, status = ?, outcome = ? WHERE id = ?",
            (now, status, json.dumps(outcome), command_id),
        )

    def outcome(self, command_id: int) -> tuple[int, dict[str, Any]] | None:
        """``(status, outcome)`` once the daemon applied it, else None."""
        rows = self._rows(
            "command", "SELECT status, outcome FROM commands WHERE id = ? AND done_at IS NOT NULL", (command_id,)
        )
        if not rows:
            return None
        return int(rows[0][0]), json.loads(rows[0][1])

    def prune(self, now: float) -> int:
        """Silences ended over 7 days ago and commands done over a day ago; how many silences."""
        with self._tx("prune control") as db:
            n = db.execute(
                "DELETE FROM silences WHERE coalesce(ended_at, ends_at, 1e300) < ?", (now - KEEP_ENDED,)
            ).rowcount
            db.execute("DELETE FROM commands WHERE done_at IS NOT NULL AND done_at < ?", (now - KEEP_COMMANDS,))
        return n
