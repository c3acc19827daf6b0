"""Review findings on the batch's noise state (branch ``review``): what a refused commit
must roll back (CONTRACT §7: nothing before the commit is durable, a refused batch is
read again as if never read) and what the incident record keeps (§9, §6)."""

from __future__ import annotations

import sqlite3
import time

from tests.test_batch import parts  # noqa: F401  (the fixture)

from conftest import append, line
from errord.batch import Committed
from errord.model import Incident
from errord.store.mongostore import incident_document, incident_from_document


async def test_a_refused_commit_leaves_the_quiet_clock_as_it_was(parts) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """batch.py: _saw() moves the source's quiet clock on to the newest event time read,
    _commit()'s refusal rolls back the engine and the source but not self._quiet. A
    backlog batch refused (hours of event time read in a moment) leaves Q hours ahead
    of what was committed: the next timers() (once a second, before the lines are read
    again) judges the rolled-back incidents quiet and auto-resolves them, then the same
    lines open them again: a spurious resolve + failure (§9 "reading a backlog never
    makes what is still failing in it look quiet")."""
    p = await parts()
    before = dict(p.batch._quiet)
    old = time.time() - 7200.0  # a backlog: two hours old
    append(p.log, line("db_down", time=old), line("db_down", time=old + 3600.0))
    await p.tailer.wait(1.0)
    locker = sqlite3.connect(p.journal.path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        assert p.batch.step() == Committed(False, 0, 0)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert p.batch.engine.active() == {}  # the engine rolled back ...
    assert p.batch._quiet == before, f"... the quiet clock did not: {p.batch._quiet}"


def test_the_flapping_flag_survives_the_mongodb_record() -> None:
    """§9: records opened while flapping have flapping = true; mongostore.incident_document
    writes it but incident_from_document (errord history from MongoDB, the restore from
    MongoDB) drops it: read back, every record says flapping = false."""
    inc = Incident(
        code="db",
        message="m",
        start_time=1.0e9,
        last_log_time=1.0e9,
        server_id="h",
        node_name="n",
        active=True,
        cleared_at=None,
        created_at=1.0e9,
        updated_at=1.0e9,
        occurrences=1,
        alerts_sent=1,
        last_alert_time=1.0e9,
        app=None,
        incident_id="i1",
        flapping=True,
    )
    doc = incident_document(inc)
    assert doc.get("flapping") is True
    assert incident_from_document(doc).flapping
