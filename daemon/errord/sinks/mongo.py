"""The MongoDB writer: mirrors the journal's MongoDB outbox into the shared incident
history. Documents, indexes, connections and reads are in ``mongostore.py``.

Client: pymongo's *sync* ``MongoClient`` in one worker thread, not ``AsyncMongoClient``
on the daemon's event loop. The outbox lives in SQLite, whose connections are blocking
and bound to their thread, so an async writer would still need a thread (or block the
loop) for every outbox read and ack; BSON-encoding 500 documents would run on the loop
that tails and parses; and a stuck write would be a task to cancel rather than a thread
to abandon at the shutdown deadline. The notify sink already works this way (own
thread, own ``Journal`` connection): MongoDB being slow or gone can then never delay a
line, a commit or a notice (CONTRACT §2: a notification never waits for MongoDB).

Writes: one document per incident, upserted by ``incident_id`` with ``$set`` of the
CONTRACT §6 record (times as BSON dates, UTC), ``bulk_write(ordered=False)`` of at most
``batch_size`` incidents per round trip. The outbox holds one row per incident, so
repeats coalesce while they wait; a row is acked with the version it was read at, so a
change made during the write is written again. Fields other than errord's are left as
they are, and documents without ``incident_id`` (the in-app manager's) are never touched.

Outages: every wait is bounded (server selection, connect and socket timeouts from
``[mongodb] timeout``); a failed round backs off exponentially (capped) and retries the
same head of the queue, so the outbox drains in order, one bounded batch per attempt.
A duplicate-key reply on an upsert counts as written: it means another in-flight
attempt of this same write inserted the document first (the unique index on
``incident_id``), and that attempt carried the same record.

Secrets: the collection is named by ``describe`` (the URI redacted); driver errors pass
through ``scrubber`` (the password masked) before they are logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pymongo import MongoClient
from pymongo.errors import BulkWriteError, OperationFailure, PyMongoError

from errord.backoff import backoff
from errord.errors import JournalError
from errord.ratelimit import RateLimit
from errord.sinks.base import Sink
from errord.store.journal import Journal
from errord.store.mongostore import INDEXES, Coll, collection_of, connect, describe, scrubber, upsert

if TYPE_CHECKING:
    from errord.config import Mongo

__all__ = ["BATCH_SIZE", "MongoSink"]

logger = logging.getLogger(__name__)

BATCH_SIZE = 500  # incidents per bulk_write: bounds the work of one attempt
DUPLICATE_KEY = 11000
# createIndexes refusals that a retry cannot fix (an index of the same keys with other
# options, or existing duplicates): warned about once; writes go on without that index.
_INDEX_CONFLICTS = frozenset({85, 86, DUPLICATE_KEY})
WARN_EVERY = 600.0  # seconds between repeated warnings while the same failure goes on


# -- the writer ----------------------------------------------------------------------------


class _Refused(Exception):
    """Some documents of a batch were refused (the rest were acked)."""


class MongoSink(Sink):
    """Mirrors the journal's MongoDB outbox to MongoDB from one worker thread.

    ``start()``, ``wake()`` after commits that changed incidents, ``stop(deadline)``.
    ``collection`` replaces the real connection (tests); the thread opens its own
    ``Journal`` connection on ``state_dir``.
    """

    def __init__(
        self,
        state_dir: Path,
        settings: Mongo,
        *,
        batch_size: int = BATCH_SIZE,
        backoff: tuple[float, float] = (1.0, 60.0),
        poll: float = 5.0,
        collection: Callable[[], Coll] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.settings = settings
        self.batch_size = batch_size
        self.backoff = backoff
        self.poll = poll
        self.where = describe(settings)
        self._scrub = scrubber(settings.uri)
        self._open = collection
        self._client: MongoClient[dict[str, Any]] | None = None
        self._wakeup = threading.Event()
        self._halt = threading.Event()  # hard stop: leave now
        self._stopping = threading.Event()  # stop() was called: cuts a backoff short
        self._deadline: float | None = None  # set by stop(): drain until then
        self._thread: threading.Thread | None = None
        self.failures = 0  # consecutive failed attempts
        self.last_error: str | None = None
        self._warn = RateLimit(WARN_EVERY)  # failure warnings, while the same failure goes on
        self.written = 0  # documents written since start
        self.writing = False  # inside a bulk_write (for the shutdown warning)

    def start(self) -> None:
        """Start the worker thread (a daemon thread: a hung write never holds the exit)."""
        if self._thread is None:
            logger.info("mirroring incidents to MongoDB %s", self.where)
            self._thread = threading.Thread(target=self._run, name="errord-mongo", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Incidents were committed: look at the outbox now. Cheap, thread-safe."""
        self._wakeup.set()

    def stop(self, deadline: float) -> None:
        """Write what is queued until the outbox is empty, MongoDB fails, or ``deadline``
        (``time.monotonic()``) passes; then stop. Returns by the deadline. What is left
        stays in the outbox for the next start (upserts: writing twice is harmless)."""
        self._deadline = deadline
        self._stopping.set()
        self.wake()
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._halt.set()
        self.wake()
        if thread is not None and thread.is_alive():
            thread.join(max(0.0, min(0.2, deadline - time.monotonic())))
            if thread.is_alive() and self.writing:
                logger.warning(
                    "MongoDB %s: a write was still in flight at shutdown; it is repeated at the next start", self.where
                )

    # -- worker --------------------------------------------------------------------------

    def _run(self) -> None:
        journal: Journal | None = None
        coll: Coll | None = None
        indexed = False
        try:
            while not self._halt.is_set():
                self._wakeup.clear()
                try:
                    if journal is None:
                        journal = Journal(self.state_dir)
                    if coll is None:
                        coll = self._connect()
                    if not indexed:
                        self._ensure_indexes(coll)
                        indexed = True
                    more = self._write_batch(journal, coll)
                except Exception as exc:  # the worker never dies: log, back off, retry
                    if isinstance(exc, JournalError) and journal is not None:
                        journal.close()
                        journal = None
                    delay = self._failed(exc, journal)
                    if self._deadline is not None or self._stopping.wait(delay):
                        return  # stopping and MongoDB fails: the rest waits in the outbox
                    continue
                self._succeeded(journal)
                if more:
                    continue
                if self._deadline is not None:
                    return  # drained
                self._wakeup.wait(self.poll)
        finally:
            if journal is not None:
                journal.close()
            if self._client is not None:
                self._client.close()

    def _connect(self) -> Coll:
        if self._open is not None:
            return self._open()
        self._client = connect(self.settings)
        return collection_of(self._client, self.settings)

    def _ensure_indexes(self, coll: Coll) -> None:
        """Create the indexes (a no-op when they exist). Network errors propagate (retry);
        a conflict with an index made by hand is logged once and not retried."""
        try:
            coll.create_indexes(list(INDEXES))
            return
        except OperationFailure as exc:
            if exc.code not in _INDEX_CONFLICTS:
                raise
        for index in INDEXES:  # one conflict fails the whole command: create the others
            try:
                coll.create_indexes([index])
            except OperationFailure as exc:
                if exc.code not in _INDEX_CONFLICTS:
                    raise
                logger.error(
                    "MongoDB %s: cannot create index %s (%s); writing without it",
                    self.where,
                    index.document["name"],
                    self._scrub(exc),
                )

    def _write_batch(self, journal: Journal, coll: Coll) -> bool:
        """Write the head of the outbox; True when it wrote something (look again: more may
        be queued, or a row changed during the write), False when the outbox was empty."""
        items = journal.mongo.batch(self.batch_size)
        if not items:
            return False
        writes = [w for w in items if w.incident is not None]
        refused: dict[int, str] = {}
        if writes:
            self.writing = True
            try:
                coll.bulk_write([upsert(w.incident) for w in writes if w.incident], ordered=False)
            except BulkWriteError as exc:
                refused = self._refusals(exc)
            finally:
                self.writing = False
        done = [(w.incident_id, w.version) for k, w in enumerate(writes) if k not in refused]
        done += [(w.incident_id, w.version) for w in items if w.incident is None]
        journal.mongo.ack(done)
        self.written += len(writes) - len(refused)
        if refused:
            first = next(iter(refused.values()))
            raise _Refused(f"{len(refused)} of {len(writes)} document(s) refused, e.g. {first}")
        return True

    def _refusals(self, exc: BulkWriteError) -> dict[int, str]:
        """Index in the batch -> error of the writes that did not happen. A write concern
        error re-raises: the whole batch is retried (the upserts are idempotent)."""
        details = exc.details or {}
        if details.get("writeConcernErrors"):
            raise exc
        return {
            int(e["index"]): f"{e.get('code')}: {self._scrub(e.get('errmsg', ''))}"
            for e in details.get("writeErrors", [])
            if e.get("code") != DUPLICATE_KEY  # another attempt of this write got there first
        }

    def _failed(self, exc: Exception, journal: Journal | None) -> float:
        self.failures += 1
        delay = backoff(self.failures - 1, *self.backoff, jitter=0.1)
        error = self._scrub(exc)
        if isinstance(exc, (PyMongoError, _Refused, JournalError)):
            # Warn when the trouble starts or changes, then every 10 minutes: not once a
            # minute for a week.
            if self.failures == 1 or error != self.last_error:
                self._warn.forget("failure")
            log = logger.warning if self._warn.allow("failure") else logger.debug
            log(
                "MongoDB %s: %s; %s incident(s) wait in the journal, retry %d in %.1fs",
                self.where,
                error,
                _pending(journal),
                self.failures,
                delay,
            )
        else:
            logger.exception("MongoDB writer: unexpected error; retry in %.1fs", delay)
        self.last_error = error
        return delay

    def _succeeded(self, journal: Journal | None) -> None:
        if self.failures:
            logger.info("MongoDB %s: writing again; %s incident(s) still queued", self.where, _pending(journal))
        self.failures = 0
        self.last_error = None


def _pending(journal: Journal | None) -> str:
    if journal is None:
        return "some"
    try:
        return str(journal.mongo.pending())
    except JournalError:
        return "some"
