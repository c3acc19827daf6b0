"""The ``am_alerts`` table: what each ``[[alertmanager]]`` knows is open (CONTRACT §11).

A row (target key, incident id) says: this Alertmanager accepted the incident as firing,
last at ``pushed_at``. It is deleted only once that Alertmanager accepted the resolve, so a
resolve made while it was down, or across a restart, is still pushed (``sinks.alertmanager``).
Over the journal's helpers like ``Outbox``; the pusher uses a connection of its own.
"""

from __future__ import annotations

from collections.abc import Iterable

from errord.store.schema import Read, Transact

__all__ = ["AlertState"]


class AlertState:
    """Rows of ``am_alerts``; made by ``Journal`` over its connection."""

    def __init__(self, tx: Transact, read: Read) -> None:
        self._tx = tx
        self._read = read

    def known(self, target: str) -> dict[str, float]:
        """``{incident id: pushed_at}`` of what ``target`` was told is firing."""
        rows = self._read("am_known", "SELECT incident_id, pushed_at FROM am_alerts WHERE target = ?", (target,))
        return {i: float(t) for i, t in rows}

    def pushed(self, target: str, incident_ids: Iterable[str], now: float) -> None:
        """``target`` accepted these as firing at ``now``."""
        with self._tx("am_pushed") as db:
            db.executemany(
                "INSERT INTO am_alerts (target, incident_id, pushed_at) VALUES (?, ?, ?)"
                " ON CONFLICT (target, incident_id) DO UPDATE SET pushed_at = excluded.pushed_at",
                [(target, i, now) for i in incident_ids],
            )

    def resolved(self, target: str, incident_ids: Iterable[str]) -> None:
        """``target`` accepted the resolve of these (or they are gone): forget them."""
        with self._tx("am_resolved") as db:
            db.executemany(
                "DELETE FROM am_alerts WHERE target = ? AND incident_id = ?", [(target, i) for i in incident_ids]
            )

    def drop_targets(self, keep: set[str]) -> None:
        """Forget the rows of Alertmanagers no longer configured."""
        rows = self._read("am_targets", "SELECT DISTINCT target FROM am_alerts")
        gone = [(t,) for (t,) in rows if t not in keep]
        if gone:
            with self._tx("am_drop") as db:
                db.executemany("DELETE FROM am_alerts WHERE target = ?", gone)
