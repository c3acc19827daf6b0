"""The store's housekeeping, driven by the daemon's loop: delivered notices and ended
silences pruned after a week, and the WAL kept bounded.

Why a checkpoint of our own: SQLite's automatic checkpoints cannot restart the WAL while
readers overlap (the CLI, the notify workers), so it grows; on a small disk errord's WAL
filled it alone. Every ``CHECKPOINT_EVERY`` seconds, when the WAL is over
``WAL_SIZE_LIMIT``, a TRUNCATE checkpoint waits at most ``CHECKPOINT_WAIT`` for readers
(it holds the loop that long at most).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from errord.errors import JournalError
from errord.store.journal import Journal
from errord.store.schema import WAL_SIZE_LIMIT

__all__ = ["CHECKPOINT_EVERY", "CHECKPOINT_WAIT", "PRUNE_EVERY", "Upkeep"]

logger = logging.getLogger(__name__)

PRUNE_EVERY = 3600.0  # seconds between prunes of delivered notices
CHECKPOINT_EVERY = 2.0  # seconds between looks at the WAL's size
CHECKPOINT_WAIT = 0.5  # seconds a checkpoint may wait for readers of older snapshots


class Upkeep:
    """Prune and checkpoint ``journal`` when due; call ``tick()`` as often as convenient."""

    def __init__(self, journal: Journal, clock: Callable[[], float] = time.monotonic) -> None:
        self.journal = journal
        self._clock = clock
        self._next_prune = 0.0
        self._next_checkpoint = 0.0

    def tick(self) -> None:
        """Both, when due (the loop's round)."""
        self.prune()
        self.checkpoint()

    def prune(self) -> None:
        """Delivered notices and ended silences older than a week, once an hour."""
        now = self._clock()
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY
        try:
            pruned = self.journal.outbox.prune(time.time())
        except JournalError as exc:
            logger.warning("could not prune delivered notices: %s", exc)
            return
        if pruned:
            logger.info("pruned %d delivered notice(s) older than a week", pruned)
        try:
            ended = self.journal.control.prune(time.time())
        except JournalError as exc:
            logger.warning("could not prune ended silences: %s", exc)
            return
        if ended:
            logger.info("pruned %d silence(s) ended over a week ago", ended)

    def checkpoint(self) -> None:
        """A TRUNCATE checkpoint when the WAL is over its limit (see the module doc)."""
        now = self._clock()
        if now < self._next_checkpoint:
            return
        self._next_checkpoint = now + CHECKPOINT_EVERY
        size = self.journal.wal_size()
        if size <= WAL_SIZE_LIMIT:  # where SQLite's own checkpoints keep it while they can
            return
        try:
            done = self.journal.checkpoint(CHECKPOINT_WAIT)
        except JournalError as exc:  # a failing disk: the commit path reports it
            logger.debug("WAL checkpoint failed: %s", exc)
            return
        logger.debug("WAL of %d bytes %s", size, "checkpointed and truncated" if done else "busy; retrying")
