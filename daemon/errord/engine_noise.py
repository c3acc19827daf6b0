"""The engine's noise rules (CONTRACT §9): auto-resolve, reminders on the quiet clock,
and the cardinality cap's overflow incident.

A mixin of ``engine.Engine``, kept apart so the line path (``engine``) stays small. Pure
like the engine: the quiet clock comes in as a function, "now" as a number.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from errord.durations import format_duration
from errord.engine_flap import Flap, FlapState, FlapTracker, incident_of
from errord.model import Incident, Kind, LogEvent, Transition

if TYPE_CHECKING:
    from errord.engine import Policy
    from errord.engine_cold import ColdCodec
    from errord.noise import Noise
    from errord.policy.mute import Hit, MuteOracle

__all__ = ["MAX_OPEN_INCIDENTS", "OVERFLOW_CODE", "NoiseRules"]

MAX_OPEN_INCIDENTS = 10_000  # CONTRACT §9's default of [limits] max_open_incidents
OVERFLOW_CODE = "errord_overflow"
_NOISE_CACHE = 10_000


class NoiseRules:
    """What ``Engine`` does for §9 beyond the line path (its attributes are the engine's)."""

    # the engine's, declared for the type checker
    _active: dict[str, Incident]
    _cold: dict[str, bytes]
    _codec: ColdCodec
    _dirty: dict[int | str, Incident]
    _noise: dict[str, Noise]
    _opened: int
    _overflow_key: str
    _policy: Policy
    _muted: dict[Hit, int]
    mutes: MuteOracle | None
    max_open_incidents: int
    scope: str
    server_id: str
    node_name: str
    src: int
    flaps: FlapTracker
    _flap_undo: dict[str, FlapState] | None

    if TYPE_CHECKING:  # the engine's methods these rules call

        def _touch(self, key: str, current: Incident | None) -> None: ...
        def _get(self, key: str) -> Incident | None: ...
        def _open(self, ev: LogEvent, code: str, key: str) -> Transition: ...
        def _repeat(self, ev: LogEvent, code: str, key: str, inc: Incident) -> Transition | None: ...
        def _wants_notice(self, ev: LogEvent, code: str) -> bool: ...
        def _mute(self, inc: Incident, when: float) -> str | None: ...

    def _noise_of(self, code: str) -> Noise:
        noise = self._noise.get(code)
        if noise is None:
            if len(self._noise) >= _NOISE_CACHE:  # bounded: codes come from untrusted lines
                self._noise.clear()
            noise = self._noise[code] = self._policy.noise_for(code)
        return noise

    # -- flapping ----------------------------------------------------------------------

    def _flap_open(self, key: str, inc: Incident) -> Flap | None:
        noise = self._noise_of(inc.code)
        if self._flap_undo is None:
            self._flap_undo = self.flaps.snapshot()
        return self.flaps.opened(
            key, inc, self.src, noise.flap_threshold, noise.flap_window, cap=self.max_open_incidents
        )

    def _flap_resolve(self, key: str, inc: Incident) -> bool:
        """``inc`` closed: counted for its key's flap state; whether the key is flapping."""
        if key not in self.flaps.states:
            return False
        if self._flap_undo is None:
            self._flap_undo = self.flaps.snapshot()
        assert inc.cleared_at is not None
        return self.flaps.resolved(key, inc, inc.cleared_at)

    def _flap_detail(self, key: str) -> str:
        state = self.flaps.states[key]
        window = self._noise_of(state.last.get("code", "")).flap_window
        opens, resolves = len(state.opens), len(state.resolves)
        return (
            f"{opens} open{'s' * (opens != 1)} and {resolves} resolve{'s' * (resolves != 1)} "
            f"within {format_duration(window)}"
        )

    def _mute_flapping(self, inc: Incident) -> str:
        """A notice of a flapping key, kept back (CONTRACT §8's last reason): counted."""
        inc.notices_muted += 1
        hit = ("flapping", None)
        self._muted[hit] = self._muted.get(hit, 0) + 1
        return "flapping"

    def _flap_ends(self, quiet_clock: Callable[[int], float]) -> list[Transition]:
        """The keys that stopped flapping: one notice each, failing (a failure, the open
        incident's first alert) or resolved (a success)."""
        if not self.flaps.states:
            return []
        if self._flap_undo is None:
            self._flap_undo = self.flaps.snapshot()
        out = []
        for key, state in self.flaps.stopped(quiet_clock, lambda code: self._noise_of(code).flap_window):
            inc = self._get(key)
            q = quiet_clock(state.src)
            detail = f"no open or resolve for {format_duration(self._noise_of(state.last['code']).flap_window)}"
            if inc is not None:
                self._touch(key, inc)
                self._dirty[inc.id_key] = inc
                ev = LogEvent(code=inc.code, clear=None, message="", time=q, app=inc.app)
                notify = self._wants_notice(ev, inc.code)
                muted = self._mute(inc, q) if notify else None
                if muted is not None:
                    notify = False
                elif notify:
                    inc.alerts_sent += 1  # heard of now: its resolve goes out (the key no longer flaps)
                out.append(Transition(Kind.FLAP_END, key, inc, ev, notify=notify, muted=muted, detail=detail))
            elif state.last:
                closed = incident_of(state.last, self.server_id, self.node_name)
                ev = LogEvent(code=None, clear=closed.code, message="", time=q, app=closed.app)
                notify = self._wants_notice(ev, closed.code)
                out.append(Transition(Kind.FLAP_END, key, closed, ev, notify=notify, detail=detail))
        return out

    # -- auto-resolve ------------------------------------------------------------------

    def _lapsed(self, ev: LogEvent, code: str, key: str, inc: Incident, after: float) -> list[Transition]:
        """A line at least ``auto_resolve_after`` after the incident's latest: it is
        auto-resolved first (as live reading would have done), then this line opens a
        new one (CONTRACT §9)."""
        return [self._auto_resolve(key, inc, after), self._open(ev, code, key)]

    def _auto_resolve(self, key: str, inc: Incident, after: float) -> Transition:
        """Close ``inc`` as quiet for ``after`` seconds: ``cleared_at = last_log_time +
        after``, ``resolved_by = "auto"``, a resolve notice to those alerted."""
        self._touch(key, inc)
        del self._active[key]
        self._opened += 1
        inc.active = False
        inc.cleared_at = inc.last_log_time + after
        inc.resolved_by = "auto"
        self._dirty[inc.id_key] = inc
        notify, muted = inc.alerts_sent > 0, None
        if self._flap_resolve(key, inc) and notify:
            notify, muted = False, self._mute_flapping(inc)
        ev = LogEvent(code=None, clear=inc.code, message="", time=inc.cleared_at, app=inc.app)
        return Transition(
            Kind.CLEAR, key, inc, ev, notify=notify, duration=inc.cleared_at - inc.start_time, muted=muted
        )

    # -- the clock: reminders and auto-resolve while no line comes -----------------------

    def tick(self, quiet_clock: Callable[[int], float]) -> list[Transition]:
        """Reminders and auto-resolves that are due. ``quiet_clock(src)`` is Q of that
        source (CONTRACT §9: its newest event time read plus the daemon-clock time since
        it was read, never ahead of the daemon's clock); an incident is judged by the
        source that last fed it. Call it inside a batch (``begin`` … ``commit``)."""
        out: list[Transition] = self._flap_ends(quiet_clock)
        noise_of = self._noise_of
        for key, inc in list(self._active.items()):
            noise = noise_of(inc.code)
            after, remind = noise.auto_resolve_after, noise.remind_every
            if after is None and remind is None:
                continue
            q = quiet_clock(inc.src)
            what = _due(q, inc.last_log_time, inc.alerts_sent, inc.reminded_at, after, remind)
            if what is not None:
                out.append(self._on_clock(what, key, inc, q, after))
        if self._cold:
            out += self._tick_cold(quiet_clock)
        return out

    def _tick_cold(self, quiet_clock: Callable[[int], float]) -> list[Transition]:
        """``tick`` for the packed incidents (engine_cold): judged from the packed fields;
        only one that is due is made an object again."""
        out = []
        codec, noise_of = self._codec, self._noise_of
        code_of = None if self.scope == "code" else codec.code_of  # the key is the code
        for key, data in list(self._cold.items()):
            noise = noise_of(key if code_of is None else code_of(key, data))
            after, remind = noise.auto_resolve_after, noise.remind_every
            if after is None and remind is None:
                continue
            src, last, alerts_sent, reminded = codec.peek(data)
            q = quiet_clock(src)
            what = _due(q, last, alerts_sent, reminded, after, remind)
            if what is not None:
                inc = self._get(key)
                assert inc is not None
                out.append(self._on_clock(what, key, inc, q, after))
        return out

    def _on_clock(self, what: str, key: str, inc: Incident, q: float, after: float | None) -> Transition:
        """The auto-resolve or reminder ``_due`` found due for ``inc`` at ``q``."""
        if what == _AUTO_RESOLVE:
            assert after is not None
            return self._auto_resolve(key, inc, after)
        return self._remind(key, inc, q)

    def _remind(self, key: str, inc: Incident, q: float) -> Transition:
        """A reminder: a warning that counts in ``alerts_sent`` but moves neither
        ``last_alert_time`` nor the backoff (CONTRACT §9)."""
        self._touch(key, inc)
        inc.reminded_at = q
        self._dirty[inc.id_key] = inc
        ev = LogEvent(code=inc.code, clear=None, message="", time=q, app=inc.app)
        notify = self._wants_notice(ev, inc.code)
        muted = self._mute(inc, q) if notify else None
        if muted is not None:
            notify = False
        elif notify and self.flaps.is_flapping(key):
            notify, muted = False, self._mute_flapping(inc)
        elif notify:
            inc.alerts_sent += 1
        return Transition(Kind.REMIND, key, inc, ev, notify=notify, muted=muted)

    # -- the cardinality cap -------------------------------------------------------------

    def _overflow(self, ev: LogEvent, code: str) -> Transition:
        """A line that would open one incident too many: counted in ``errord_overflow``
        (opened by the first such line, naming its code; it alerts once and then follows
        the usual rules); the line is otherwise ignored."""
        key = self._overflow_key
        inc = self._get(key)
        line = LogEvent(
            code=OVERFLOW_CODE,
            clear=None,
            message=(
                f"max_open_incidents ({self.max_open_incidents}) reached: lines that would open "
                f"more incidents are counted here and otherwise ignored; the first was {code!r}"
            ),
            time=ev.time,
            app=None,
            notify=None,
        )
        if inc is None:
            return self._open(line, OVERFLOW_CODE, key)
        t = self._repeat(line, OVERFLOW_CODE, key, inc)
        return t if t is not None else Transition(Kind.REPEAT, key, inc, line)


_AUTO_RESOLVE, _REMIND = "auto-resolve", "remind"


def _due(
    q: float, last: float, alerts_sent: int, reminded: float | None, after: float | None, remind: float | None
) -> str | None:
    """What the clock owes an open incident at its quiet clock's ``q`` (``last``: its
    ``last_log_time``; ``reminded``: its ``reminded_at``): ``_AUTO_RESOLVE`` once quiet
    for ``auto_resolve_after``; else ``_REMIND`` once quiet for ``remind_every`` and
    ``remind_every`` after the last reminder, if it alerted; else None."""
    quiet = q - last
    if after is not None and quiet >= after:
        return _AUTO_RESOLVE
    if (
        remind is not None
        and quiet >= remind
        and alerts_sent > 0
        and q >= (last if reminded is None else reminded) + remind
    ):
        return _REMIND
    return None
