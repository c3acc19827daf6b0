"""Flap detection (CONTRACT §9): which keys are flapping, judged by their opens and
resolves in event time, and when they stop (on the quiet clock).

Pure data and rules; the engine asks it at each open and resolve and at each tick. Its
state is committed with the batches (``Batch``: journal meta) and survives restarts.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

from errord.model import Incident

__all__ = ["FLAP_META", "Flap", "FlapState", "FlapTracker"]

FLAP_META = "flap_states"  # journal meta key: {key: FlapState as JSON}


class Flap(enum.Enum):
    """What an open did to its key."""

    STARTED = "started"  # this opening made the key flapping: one warning instead of its failure
    FLAPPING = "flapping"  # the key was flapping already: the failure is muted


@dataclass(slots=True)
class FlapState:
    """One key's opens and resolves within the window, and the latest incident (for the
    "stopped flapping" notice, which may come after it closed)."""

    opens: list[float] = field(default_factory=list)
    resolves: list[float] = field(default_factory=list)
    flapping: bool = False
    last_change: float = 0.0  # event time of the latest open or resolve
    src: int = -1  # the source whose quiet clock judges it
    last: dict[str, Any] = field(default_factory=dict)  # the latest incident's record fields

    def prune(self, now: float, window: float) -> None:
        self.opens = [t for t in self.opens if t > now - window]
        self.resolves = [t for t in self.resolves if t > now - window]


_LAST_FIELDS = ("code", "message", "start_time", "last_log_time", "cleared_at", "occurrences", "app", "incident_id")


class FlapTracker:
    """The flap states of the keys whose code has ``flap_threshold`` set."""

    def __init__(self) -> None:
        self.states: dict[str, FlapState] = {}
        self.dirty = False

    def is_flapping(self, key: str) -> bool:
        state = self.states.get(key)
        return state is not None and state.flapping

    def opened(
        self, key: str, inc: Incident, src: int, threshold: int, window: float, cap: int = 10_000
    ) -> Flap | None:
        """``inc`` just opened ``key``: STARTED when this is its ``threshold``-th open
        within ``window``, FLAPPING when it was flapping already, else None."""
        t = inc.start_time
        state = self.states.get(key)
        if state is None:
            if len(self.states) >= cap:  # bounded like the open incidents (CONTRACT §9)
                self._forget_oldest(len(self.states) - cap + 1)
            state = self.states[key] = FlapState()
        state.prune(t, window)
        state.opens.append(t)
        state.last_change = max(state.last_change, t)
        state.src = src
        state.last = {name: getattr(inc, name) for name in _LAST_FIELDS}
        self.dirty = True
        if state.flapping:
            return Flap.FLAPPING
        if len(state.opens) >= threshold:
            state.flapping = True
            return Flap.STARTED
        return None

    def _forget_oldest(self, n: int) -> None:
        """Drop the ``n`` quietest states that are not flapping (then flapping ones)."""
        order = sorted(self.states.items(), key=lambda kv: (kv[1].flapping, kv[1].last_change))
        for key, _ in order[:n]:
            del self.states[key]

    def resolved(self, key: str, inc: Incident, when: float) -> bool:
        """``inc`` of ``key`` closed at ``when``; whether the key is flapping (its resolve
        is then muted)."""
        state = self.states.get(key)
        if state is None:
            return False
        state.resolves.append(when)
        state.last_change = max(state.last_change, when)
        state.last = {name: getattr(inc, name) for name in _LAST_FIELDS}
        self.dirty = True
        return state.flapping

    def stopped(self, quiet_clock: Any, window_of: Any) -> list[tuple[str, FlapState]]:
        """Keys flapping that have neither opened nor resolved for their window on the
        quiet clock: they stop flapping now (their states are reset)."""
        out = []
        for key, state in list(self.states.items()):
            window = window_of(state.last.get("code", ""))
            q = quiet_clock(state.src)
            if state.flapping and q - state.last_change >= window:
                out.append((key, state))
                del self.states[key]
                self.dirty = True
            elif not state.flapping and q - state.last_change >= window:
                del self.states[key]  # nothing in its window any more: forgotten
                self.dirty = True
        return out

    def dump(self) -> str:
        """The states as the journal keeps them."""
        self.dirty = False
        return json.dumps(
            {k: [s.opens, s.resolves, s.flapping, s.last_change, s.src, s.last] for k, s in self.states.items()}
        )

    def load(self, text: str | None) -> None:
        """The states from ``dump()`` (a restart)."""
        self.states = {}
        if text:
            for k, (opens, resolves, flapping, last_change, src, last) in json.loads(text).items():
                self.states[k] = FlapState(
                    list(opens), list(resolves), bool(flapping), float(last_change), int(src), dict(last)
                )
        self.dirty = False

    def snapshot(self) -> dict[str, FlapState]:
        """A copy (the engine's undo log: a refused batch restores it)."""
        return {
            k: FlapState(list(s.opens), list(s.resolves), s.flapping, s.last_change, s.src, dict(s.last))
            for k, s in self.states.items()
        }


def incident_of(last: dict[str, Any], server_id: str, node_name: str) -> Incident:
    """An ``Incident`` for the "stopped flapping" notice of a key whose latest incident
    has closed (only the fields the notice shows)."""
    return Incident(
        code=last["code"],
        message=last["message"],
        start_time=last["start_time"],
        last_log_time=last["last_log_time"],
        server_id=server_id,
        node_name=node_name,
        active=False,
        cleared_at=last["cleared_at"],
        created_at=0.0,
        updated_at=0.0,
        occurrences=last["occurrences"],
        alerts_sent=0,
        last_alert_time=last["start_time"],
        app=last["app"],
        incident_id=last["incident_id"],
        flapping=True,
    )
