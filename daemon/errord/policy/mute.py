"""The mute oracle (CONTRACT §8): is a notice of this incident, made now, muted — and by what? Pure.

The engine must know whether a line *may notify* (CONTRACT §2: an incident nobody has
heard of announces itself on its first later line that may notify), so it asks this
stage before it counts a failure or warning as sent: a muted notice moves the incident
as if it had been sent (``last_alert_time``) but counts in ``notices_muted``, not in
``alerts_sent``, and is never routed (so a resolve still goes to exactly those that got
a failure, ``policy.route``). The first cover wins, in the contract's order:

1. a **silence** (the oldest in force that covers it), judged by ``now`` — the daemon's
   clock, set per batch (``replay`` gives none: it ignores silences);
2. **inhibition**: ``[codes.C] inhibited_by`` globs, and an open incident (other than
   this one; the same app with ``scope = "app"``) of a matching code — "open" being the
   engine's state when the notice is made;
3. a **mute time** window, by the event time of the line.

Resolves are never muted here (§8: only flapping holds them back).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from errord.model import Incident
from errord.policy.mutetime import MuteWindow
from errord.policy.silence import Silence, globs_matcher

if TYPE_CHECKING:
    from errord.config import RunConfig

__all__ = ["INHIBITED", "MUTE_REASONS", "MUTE_TIMES", "SILENCE", "Hit", "MuteOracle"]

SILENCE, INHIBITED, MUTE_TIMES = "silence", "inhibited", "mute_times"
MUTE_REASONS = (SILENCE, INHIBITED, MUTE_TIMES, "flapping")  # the metric's label values

Hit = tuple[str, str | None]  # (reason, the silence id for a silence, else None)


class OpenIncidents(Protocol):
    """The open incidents ``check`` is given: a mapping of them, or the engine's view
    (which has ``codes()`` and ``head(ref)`` too: ``_open_codes``)."""

    def values(self) -> Iterable[Incident]: ...


class MuteOracle:
    """Silences, inhibition and mute times as data; ``check`` answers for one notice."""

    name = "mute"

    def __init__(
        self,
        *,
        scope: str = "code",
        inhibited_by: Callable[[str], Sequence[str]] = lambda code: (),
        mute_times: Sequence[MuteWindow] = (),
        silences: Sequence[Silence] = (),
    ) -> None:
        self.scope = scope
        self.inhibited_by = inhibited_by
        self.mute_times = tuple(mute_times)
        self.now = 0.0  # the daemon's clock for this batch (Engine.begin sets it)
        # (code, app) -> inhibited, while the open incidents stay the same set (``opened``
        # of ``check``): a muted flood asks on every line, and a scan of 1,000 open
        # incidents per line cost ~0.2 ms
        self._inhibited: dict[tuple[str, str | None], bool] = {}
        self._inhibited_at: tuple[int, int] = (0, -1)  # (id of the open incidents' mapping, opened)
        self.silences: tuple[Silence, ...] = ()  # what is judged: this host's and the fleet's, oldest first
        self.local: tuple[Silence, ...] = ()  # this host's own (the journal's)
        self.fleet: tuple[Silence, ...] = ()  # made on other members of the fleet (CONTRACT §13)
        self.set_silences(silences)

    @classmethod
    def for_config(cls, config: RunConfig, silences: Sequence[Silence] = ()) -> MuteOracle:
        """The oracle of ``config``'s inhibitions and mute times (and these silences)."""
        oracle = cls(silences=silences)
        oracle.configure(config)
        return oracle

    def configure(self, config: RunConfig) -> None:
        """Take ``config``'s scope, ``inhibited_by`` and ``[[mute_times]]`` (start, SIGHUP)."""
        self.scope = config.scope
        self.inhibited_by = config.inhibited_by_for
        self.mute_times = tuple(
            MuteWindow.parse(m.name, m.codes, m.apps, m.weekdays, m.times, m.timezone) for m in config.mute_times
        )
        self._inhibited.clear()

    def set_silences(self, silences: Sequence[Silence]) -> None:
        """This host's silences known now (any state: those not in force never match)."""
        self.local = tuple(silences)
        self._merge()

    def set_fleet_silences(self, silences: Sequence[Silence]) -> None:
        """The silences the other members of the fleet made (CONTRACT §13), as last seen."""
        self.fleet = tuple(silences)
        self._merge()

    def _merge(self) -> None:
        self.silences = tuple(sorted(self.local + self.fleet, key=lambda s: (s.created_at, s.id)))

    def check(self, inc: Incident, event_time: float, active: OpenIncidents, opened: int | None = None) -> Hit | None:
        """The first cover of a failure/warning of ``inc`` made by a line of ``event_time``,
        with ``active`` the engine's open incidents; None: it may be sent. ``opened`` is a
        number that changes whenever the set of open incidents does (the engine's count of
        opens and closes): while it stays the same, inhibition is answered from a cache."""
        code, app = inc.code, inc.app
        now = self.now
        for s in self.silences:
            if s.in_force(now) and s.covers(code, app, inc.incident_id):
                return (SILENCE, s.id)
        globs = self.inhibited_by(code)
        if globs and self._is_inhibited(inc, globs, active, opened):
            return (INHIBITED, None)
        for window in self.mute_times:
            if window.covers(code, app, event_time):
                return (MUTE_TIMES, None)
        return None

    def _is_inhibited(self, inc: Incident, globs: Sequence[str], active: OpenIncidents, opened: int | None) -> bool:
        # One incident per (code, app) key is open at a time, so the answer for the key is
        # the answer for the incident ("never itself" excludes the same one either way).
        key = (inc.code, inc.app if self.scope == "app" else None)
        if opened is not None:
            at = (id(active), opened)
            if at != self._inhibited_at:
                self._inhibited.clear()
                self._inhibited_at = at
            hit = self._inhibited.get(key)
            if hit is not None:
                return hit
        same_app = self.scope == "app"
        inhibits = globs_matcher(globs)
        found = False
        codes, head = _open_codes(active)
        for code, ref in codes:
            if not inhibits(code):
                continue
            app, id_key = head(ref)
            if id_key == inc.id_key or (same_app and app != inc.app):
                continue
            found = True
            break
        if opened is not None:
            if len(self._inhibited) >= 10_000:  # bounded: codes come from untrusted lines
                self._inhibited.clear()
            self._inhibited[key] = found
        return found


def _open_codes(active: Any) -> tuple[Iterable[tuple[str, Any]], Callable[[Any], tuple[str | None, int | str]]]:
    """``(code, ref)`` of every open incident and ``head(ref) -> (app, id_key)``: the
    engine's view of its open incidents (``engine._OpenView``: its packed ones give their
    code without being unpacked), or, for a plain mapping, its incidents."""
    codes = getattr(active, "codes", None)
    if codes is not None:
        return codes(), active.head
    return ((o.code, o) for o in active.values() if o.active), _head


def _head(inc: Incident) -> tuple[str | None, int | str]:
    return inc.app, inc.id_key
