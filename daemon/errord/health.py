"""Pipeline health and per-batch tallies: plain Python, no prometheus_client.

Split from ``metrics`` so the daemon keeps its liveness checks (systemd's watchdog,
``STATUS=``) and tallies without importing prometheus_client when ``[metrics]`` is not
configured (it costs a few MB of resident memory, CONTRACT §3 makes it optional).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from errord.model import Kind
from errord.parse.result import TOO_LONG

__all__ = ["BatchTally", "Health", "Snapshot"]

STALL_AFTER = 30.0  # seconds without a main-loop round before /healthz says 503


@dataclass
class BatchTally:
    """What one batch did, tallied in plain dicts on the hot path, published on commit."""

    lines: dict[int, int] = field(default_factory=dict)  # source index -> lines read
    skipped: dict[tuple[int, str], int] = field(default_factory=dict)  # (source, reason) -> n
    kinds: dict[Kind, int] = field(default_factory=dict)  # transition kind -> n
    muted: dict[str, int] = field(default_factory=dict)  # mute reason -> notices muted

    def add_muted(self, hits: dict[tuple[str, str | None], int]) -> dict[str, int]:
        """Count the engine's muted notices by reason; returns those per silence id."""
        per_silence: dict[str, int] = {}
        for (reason, silence_id), n in hits.items():
            self.muted[reason] = self.muted.get(reason, 0) + n
            if silence_id is not None:
                per_silence[silence_id] = per_silence.get(silence_id, 0) + n
        return per_silence

    def add_chunk(self, source: int, lines: int, reasons: dict[str, int], too_long: int = 0) -> None:
        """Count one parsed chunk: its lines, its skip reasons, and the over-long lines
        the tailer dropped before parsing (``too_long``)."""
        self.lines[source] = self.lines.get(source, 0) + lines
        for reason, n in reasons.items():
            k = (source, reason)
            self.skipped[k] = self.skipped.get(k, 0) + n
        if too_long:
            k = (source, TOO_LONG)
            self.skipped[k] = self.skipped.get(k, 0) + too_long


@dataclass
class Snapshot:
    """State read at scrape time, in the daemon's loop."""

    pending_notices: int
    pending_mongo: int
    open_incidents: int
    files: list[tuple[str, int]]  # (path, bytes behind)
    held_notices: int = 0  # queued for a digest by a storm limit (CONTRACT §9), all targets
    digests: tuple[int, int] = (0, 0)  # (digests sent, notices they stood for), all targets


class Health:
    """Liveness of the pipeline, for ``/healthz`` and the ``errord_healthy`` gauge."""

    def __init__(self, stall_after: float = STALL_AFTER, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_after = stall_after
        self._clock = clock
        self._started = False
        self._beat = clock()
        self._journal_error: str | None = None
        self._journal_since = 0.0

    def started(self) -> None:
        """Sources are open; the loop is about to run."""
        self._started = True
        self._beat = self._clock()

    def beat(self) -> None:
        """The main loop went round (called once per round and once per batch)."""
        self._beat = self._clock()

    def journal_failed(self, error: str) -> None:
        """A batch could not be committed: reading is paused until a commit succeeds."""
        if self._journal_error is None:
            self._journal_since = self._clock()
        self._journal_error = error

    def journal_ok(self) -> None:
        self._journal_error = None

    def stalled(self) -> bool:
        """The main loop has not gone round for ``stall_after`` seconds (a wedged process:
        the daemon then stops feeding systemd's watchdog, which restarts it)."""
        return self._started and self._clock() - self._beat > self.stall_after

    def check(self) -> tuple[bool, str]:
        """``(healthy, reason)``; the reason is one line."""
        now = self._clock()
        if not self._started:
            return False, "starting: sources not open yet"
        if self._journal_error is not None:
            since = now - self._journal_since
            return False, f"journal unwritable for {since:.0f}s, reading paused: {self._journal_error}"
        idle = now - self._beat
        if idle > self.stall_after:
            return False, f"main loop has not iterated for {idle:.0f}s"
        return True, "ok"
