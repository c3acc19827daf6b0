"""The stage seam of the notice policy: what one stage gets and gives (``pipeline``).

A stage is a small pure object: it gets the :class:`Flow` of one log line (the engine's
transitions for that line and the notices made of them so far) and a :class:`Context`
(everything else it may know, passed in as data: the daemon's clock, the host's names,
the per-code tags; later the silences in force and the open incidents), and returns the
flow for the next stage. No stage reads a clock, a file or the journal: like
Alertmanager's ``Now(ctx)``, "now" is a field of the context, so the daemon and
``replay`` give a stage the same answers for the same data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from errord.model import Notice, Transition
from errord.notices import DEFAULT_STYLE, NoticeStyle

__all__ = ["Context", "Flow", "Stage"]


@dataclass(frozen=True, slots=True)
class Context:
    """What the stages know besides the line, fixed for a batch of lines.

    ``now``: the daemon's clock when the batch was read (epoch seconds; silences will be
    judged by it, mute times by the line's event time, CONTRACT §8). ``tags_for``: the
    routing tags of a code (``[codes.X] tags``).
    """

    now: float
    server_id: str
    node_name: str
    tags_for: Callable[[str], Sequence[str]]
    style: NoticeStyle = DEFAULT_STYLE  # display zone and per-code notes (CONTRACT §11)


@dataclass(slots=True)
class Flow:
    """One line on its way through the stages: the engine's ``transitions`` for it (a
    stage before routing may drop some: muted) and the ``notices`` made of them (routing
    makes them, each with its ``targets``; a stage after it may hold some back)."""

    transitions: Sequence[Transition]
    notices: list[Notice] = field(default_factory=list)


class Stage(Protocol):
    """One step of the notice policy. Pure: all it knows comes in ``flow`` and ``ctx``
    (and its own state, which the batch's rollback must be able to undo)."""

    @property
    def name(self) -> str:
        """A short name for logs and docs (``route``; later ``mute``, ``limit``)."""
        ...

    def apply(self, flow: Flow, ctx: Context) -> Flow:
        """The flow for the next stage."""
        ...
