"""The sink seam: what the daemon needs of anything that delivers from the journal.

A sink drains a durable queue in the journal (the notice outbox, the MongoDB queue) in
threads or a process of its own; it retries and backs off by itself and never makes the
batch wait. The daemon starts it, wakes it after a commit that gave it work, and stops it
with a deadline at shutdown or when a reload replaces it. Notify targets, webhooks,
Alertmanager and MongoDB are sinks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

__all__ = ["NoticeSink", "Sink", "TargetLike"]


class Sink(Protocol):
    """Start / wake / stop(deadline), as the daemon drives every sink."""

    def start(self) -> None:
        """Start delivering (threads or a helper process)."""
        ...

    def wake(self) -> None:
        """A commit gave this sink work: look at its queue now. Cheap, thread-safe."""
        ...

    def stop(self, deadline: float) -> None:
        """Deliver what is due until ``deadline`` (``time.monotonic()``), then stop.
        What is left stays queued in the journal for the next start."""
        ...


class NoticeSink(Sink, Protocol):
    """A sink of notices: it also names its targets for routing (``policy.route``)."""

    @property
    def routes(self) -> Sequence[tuple[str, Sequence[str]]]:
        """``(target key, tags)`` per target; empty: the ``stderr`` pseudo-target."""
        ...

    on_result: Callable[[str, bool], None] | None


class TargetLike(Protocol):
    """What a notice sink needs of a configured notify target (``config.Target``)."""

    @property
    def url(self) -> str: ...
    @property
    def tags(self) -> Sequence[str]: ...
    @property
    def key(self) -> str: ...  # first 16 hex of sha256(url)
    @property
    def redacted(self) -> str: ...  # scheme://host/… safe to log
