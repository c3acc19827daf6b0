"""The incident state machine (CONTRACT §2). Pure: no I/O, no clock, no asyncio.

Event time comes in with each ``LogEvent``; transitions go out. The engine holds only the
*active* incidents; closed ones leave memory once committed to the journal.

Batches: ``begin()`` starts one; every incident touched is remembered (dirty) and its
state before the batch is kept in an undo log, so ``rollback()`` can put the engine back
exactly where the last durable commit left it when the journal cannot be written.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

from errord.engine_cold import ColdCodec
from errord.engine_flap import Flap, FlapState, FlapTracker
from errord.engine_noise import MAX_OPEN_INCIDENTS, OVERFLOW_CODE, NoiseRules
from errord.model import Incident, Kind, LogEvent, Transition
from errord.noise import Noise

if TYPE_CHECKING:
    from errord.policy.mute import Hit, MuteOracle

__all__ = ["OVERFLOW_CODE", "Engine", "Policy", "incident_key"]

# Kind.X, an attribute of an Enum class, costs ~70 ns per lookup on Python 3.11; the
# event path takes the members from module globals instead.
_FLAPPING = Kind.FLAPPING
_NEW, _REPEAT, _REALERT, _ANNOUNCE, _CLEAR, _CLEAR_UNKNOWN = (
    Kind.NEW,
    Kind.REPEAT,
    Kind.REALERT,
    Kind.ANNOUNCE,
    Kind.CLEAR,
    Kind.CLEAR_UNKNOWN,
)

_LOUD_CACHE = 10_000  # codes whose notify setting is remembered (Engine._loud)
_SEP = "\x1f"  # unit separator: cannot occur in a code that came through JSON unescaped by accident


class Policy(Protocol):
    """Per-code settings the engine needs (``config.RunConfig`` provides them)."""

    def re_alert_for(self, code: str) -> float:
        """Re-alert interval in seconds from the config: per-code, else default, else 1 h."""
        ...

    def notify_for(self, code: str) -> bool:
        """Whether notices are sent for this code when the line does not say."""
        ...

    def noise_for(self, code: str) -> Noise:
        """The code's CONTRACT §9 settings (backoff, reminders, auto-resolve)."""
        ...


def incident_key(scope: str, app: str | None, code: str) -> str:
    """The state key of CONTRACT §2: the code, or (app, code) with ``scope = "app"``."""
    if scope == "app":
        return f"{app or ''}{_SEP}{code}"
    return code


def _new_id() -> str:
    return uuid.uuid4().hex


class Engine(NoiseRules):
    """Alert once, suppress repeats, re-alert after the interval, resolve on clear; an
    open incident whose notices were all silent announces itself on its first line that
    may notify."""

    def __init__(
        self,
        policy: Policy,
        *,
        scope: str = "code",
        server_id: str = "",
        node_name: str = "",
        new_id: Callable[[], str] = _new_id,
        max_open_incidents: int = MAX_OPEN_INCIDENTS,
    ) -> None:
        if scope not in ("code", "app"):
            raise ValueError(f"scope must be 'code' or 'app', not {scope!r}")
        self.policy = policy  # sets the notify cache too (see the property)
        self.scope = scope
        self._overflow_key = incident_key(scope, None, OVERFLOW_CODE)
        self.server_id = server_id
        self.node_name = node_name
        self._new_id = new_id
        self._active: dict[str, Incident] = {}
        # open incidents packed while untouched (engine_cold; the daemon's ``freeze``):
        # every open key is in exactly one of ``_active`` and ``_cold``
        self._cold: dict[str, bytes] = {}
        self._codec = ColdCodec(scope)
        self._view = _OpenView(self)
        self._dirty: dict[int | str, Incident] = {}  # id_key -> incident changed in this batch
        self._undo: dict[str, Incident | None] = {}  # key -> state before this batch
        # The mute oracle (policy.mute), asked before a failure or warning counts as sent;
        # None: nothing mutes. Muted notices of this batch by (reason, silence id).
        self.mutes: MuteOracle | None = None
        self._muted: dict[Hit, int] = {}
        self._opened = 0  # changes whenever the set of open incidents does (the oracle's cache)
        # CONTRACT §9: beyond this many open incidents, new codes count in one overflow
        # incident; the source being fed (the batch sets it per chunk: whose quiet clock)
        self.max_open_incidents = max_open_incidents
        self.src = -1
        self.flaps = FlapTracker()  # CONTRACT §9: which keys flap (its state is journal meta)
        self._flap_undo: dict[str, FlapState] | None = None

    @property
    def policy(self) -> Policy:
        """The per-code settings; taken as fixed until replaced (SIGHUP assigns a new one)."""
        return self._policy

    @policy.setter
    def policy(self, policy: Policy) -> None:
        self._policy = policy
        # code -> notify_for(code). A repeat of an incident that never alerted asks it on
        # every line (may this one announce it?); a code silenced by the config is often
        # the noisiest one, so that is one dict lookup, not two method calls.
        self._loud: dict[str, bool] = {}
        self._noise: dict[str, Noise] = {}  # code -> noise_for(code), bounded like _loud

    # -- state -------------------------------------------------------------------------

    def restore(self, incidents: Iterable[Incident], *, pack: bool = False) -> None:
        """Replace the state with these incidents (only the active ones are kept; of two
        with one key, the later). ``pack``: each is packed as it comes, where it can be
        (``freeze``), so a start that restores 100,000 never holds them all as objects."""
        active: dict[str, Incident] = {}
        cold: dict[str, bytes] = {}
        codec = self._codec
        for inc in incidents:
            if not inc.active:
                continue
            key = incident_key(self.scope, inc.app, inc.code)
            data = codec.pack(inc) if pack else None
            if data is None:
                cold.pop(key, None)
                active[key] = inc
            else:
                active.pop(key, None)
                cold[key] = data
        self._active, self._cold = active, cold
        self._opened += 1
        self._dirty.clear()
        self._undo.clear()

    def active(self) -> dict[str, Incident]:
        """The open incidents by key (a copy of the mapping; the incidents are live: the
        packed ones are made objects again for it, until the next ``freeze_all``)."""
        if self._cold:
            thaw = self._codec.thaw
            self._active.update({key: thaw(key, data) for key, data in self._cold.items()})
            self._cold.clear()
        return dict(self._active)

    def active_where(self, notified: Callable[[tuple[str, ...]], bool]) -> list[Incident]:
        """The open incidents whose ``notified`` targets ``notified(targets)`` accepts, live
        (as ``active()``'s); of the packed ones only those are made objects again, so a
        start with 100,000 open incidents and no target removed makes none (issue 13)."""
        found = [inc for inc in self._active.values() if notified(inc.notified)]
        if self._cold:
            notified_of, thaw = self._codec.notified_of, self._thaw
            for key in [key for key, data in self._cold.items() if notified(notified_of(data))]:
                inc = thaw(key)
                assert inc is not None
                found.append(inc)
        return found

    def open_count(self) -> int:
        """How many incidents are open (``len(active())`` without making any object)."""
        return len(self._active) + len(self._cold)

    def open_ids(self) -> set[str]:
        """The ``incident_id`` of every open incident (without making the packed ones objects)."""
        ids = {inc.incident_id for inc in self._active.values()}
        of = self._codec.incident_id
        ids.update(of(data) for data in self._cold.values())
        return ids

    def snapshot(self) -> list[Incident]:
        """The open incidents, to read only: the packed ones as copies made for the call
        (a change to one of those is lost; ``active()`` gives the live ones)."""
        return list(self._view.values())

    def freeze(self, incidents: Iterable[Incident]) -> None:
        """Pack those of ``incidents`` that are open, held here and of the shape packed
        (engine_cold): the daemon's call once their batch is committed and the journal
        holds their messages. Never inside a batch (its undo log holds the objects)."""
        if self._undo:
            return
        pack, active, cold, scope = self._codec.pack, self._active, self._cold, self.scope
        for inc in incidents:
            key = inc.code if scope == "code" else incident_key(scope, inc.app, inc.code)
            if active.get(key) is inc:
                data = pack(inc)
                if data is not None:
                    del active[key]
                    cold[key] = data
        if not active:
            self._active = {}  # a dict keeps its table when emptied: a burst's 25,000 slots

    def freeze_all(self) -> None:
        """``freeze`` every open incident held as an object (the daemon, once idle: those
        ``active()`` or a command made objects again)."""
        self.freeze(list(self._active.values()))

    def _thaw(self, key: str) -> Incident | None:
        """The packed incident of ``key`` made an object again and held as one; None when
        ``key`` is not packed. Called after ``_active`` missed (the line path's one lookup)."""
        data = self._cold.pop(key, None) if self._cold else None
        if data is None:
            return None
        inc = self._active[key] = self._codec.thaw(key, data)
        return inc

    def _get(self, key: str) -> Incident | None:
        inc = self._active.get(key)
        return inc if inc is not None else self._thaw(key)

    # -- batches -----------------------------------------------------------------------

    def begin(self, now: float | None = None) -> None:
        """Start a batch: forget the previous batch's dirty set and undo log. ``now`` (the
        daemon's clock) is what the mute oracle judges silences by in this batch."""
        self._dirty.clear()
        self._undo.clear()
        self._muted = {}
        self._flap_undo = None
        if now is not None and self.mutes is not None:
            self.mutes.now = now

    def muted(self) -> dict[Hit, int]:
        """Notices muted since ``begin()``, by (reason, silence id): committed with the batch."""
        return dict(self._muted)

    def pending(self) -> list[Incident]:
        """Incidents changed since ``begin()``, to be written in the batch's transaction."""
        return list(self._dirty.values())

    def commit(self) -> None:
        """The batch is durable: drop the undo log."""
        self._dirty.clear()
        self._undo.clear()
        self._muted = {}
        self._flap_undo = None

    def rollback(self) -> None:
        """The batch could not be written: undo every change made since ``begin()``."""
        for key, before in self._undo.items():
            if before is None:
                self._active.pop(key, None)
            else:
                self._active[key] = before
        self._opened += 1
        self._dirty.clear()
        self._undo.clear()
        self._muted = {}
        if self._flap_undo is not None:
            self.flaps.states, self._flap_undo = self._flap_undo, None
            self.flaps.dirty = True

    def _touch(self, key: str, current: Incident | None) -> None:
        if key not in self._undo:
            self._undo[key] = current.copy() if current is not None else None

    # -- events ------------------------------------------------------------------------

    def feed(self, ev: LogEvent) -> list[Transition]:
        """Apply one line: its clear first, then its error (CONTRACT §1)."""
        clear = ev.clear
        if not clear:  # the common case: one code, a one-element list
            return self._raise(ev, ev.code) if ev.code else []
        out = [self._clear(ev, clear)]
        if ev.code:
            out += self._raise(ev, ev.code)
        return out

    def feed_quiet(self, ev: LogEvent) -> list[Transition] | None:
        """``feed``, except that a line whose only effect is a suppressed repeat (most
        error lines) gives None instead of ``[Transition(REPEAT, ...)]``, which the
        daemon would only drop: not building it saves ~150 ns per such line."""
        code = ev.code
        if ev.clear or not code:
            return self.feed(ev)
        key = code if self.scope == "code" else incident_key(self.scope, ev.app, code)
        inc = self._active.get(key)
        if inc is None:
            inc = self._thaw(key)
            if inc is None:
                return [self._open(ev, code, key)]
        noise = self._noise_of(code)
        if noise.auto_resolve_after is not None and ev.time >= inc.last_log_time + noise.auto_resolve_after:
            return self._lapsed(ev, code, key, inc, noise.auto_resolve_after)
        t = self._repeat(ev, code, key, inc)
        return None if t is None else [t]

    def quiet_until(self, code: str, app: str | None, re_alert: float | None = None) -> float:
        """The event time before which another line for ``code`` (from ``app``), giving
        ``re_alert`` (its ``re_alert_time``, seconds, or None), is sure to be a suppressed
        repeat: nothing but counters (``deferral``). 0.0 when it may notify at any time:
        not open, never alerted (its next line may announce it), re-alerting every line.
        Pure: reads state only (a packed incident is made an object again, as any lookup does)."""
        key = code if self.scope == "code" else incident_key(self.scope, app, code)
        inc = self._get(key)
        if inc is None or not inc.alerts_sent:
            return 0.0
        noise = self._noise_of(code)
        base = inc.re_alert if inc.re_alert is not None else self._policy.re_alert_for(code)
        if re_alert is not None and re_alert < base:
            base = re_alert
        interval = noise.interval(base, inc.re_alerts) if inc.re_alerts else base
        if interval <= 0:
            return 0.0
        until = inc.last_alert_time + interval
        after = noise.auto_resolve_after
        if after is not None:
            until = min(until, inc.last_log_time + after)
        return until

    def _wants_notice(self, ev: LogEvent, code: str) -> bool:
        # Silent when either says so: the line's `notification: false`, or the operator's
        # `notify = false` for the code (which a line's `notification: true` cannot undo).
        if ev.notify is False:
            return False
        loud = self._loud.get(code)
        if loud is None:
            if len(self._loud) >= _LOUD_CACHE:  # bounded: codes come from untrusted lines
                self._loud.clear()
            loud = self._loud[code] = bool(self._policy.notify_for(code))
        return loud

    def _mute(self, inc: Incident, when: float) -> str | None:
        """The reason a failure/warning of ``inc`` made now is muted (counted), or None."""
        mutes = self.mutes
        if mutes is None:
            return None
        hit = mutes.check(inc, when, self._view, self._opened)
        if hit is None:
            return None
        inc.notices_muted += 1
        self._muted[hit] = self._muted.get(hit, 0) + 1
        return hit[0]

    def _may_notify(self, inc: Incident, when: float) -> bool:
        """Whether a notice of ``inc`` made now would be sent (not muted); counts nothing."""
        mutes = self.mutes
        return mutes is None or mutes.check(inc, when, self._view, self._opened) is None

    def _raise(self, ev: LogEvent, code: str) -> list[Transition]:
        key = code if self.scope == "code" else incident_key(self.scope, ev.app, code)
        inc = self._active.get(key)
        if inc is None:
            inc = self._thaw(key)
            if inc is None:
                return [self._open(ev, code, key)]
        after = self._noise_of(code).auto_resolve_after
        if after is not None and ev.time >= inc.last_log_time + after:
            return self._lapsed(ev, code, key, inc, after)
        t = self._repeat(ev, code, key, inc)
        return [t if t is not None else Transition(_REPEAT, key, inc, ev)]

    def _open(self, ev: LogEvent, code: str, key: str) -> Transition:
        """A new incident for ``code`` (or, beyond ``max_open_incidents``, a count in the
        overflow incident)."""
        # the overflow incident itself does not count toward the cap (CONTRACT §9)
        count = self.open_count()
        overflow = self._overflow_key
        if (
            count >= self.max_open_incidents
            and code != OVERFLOW_CODE
            and count - (overflow in self._active or overflow in self._cold) >= self.max_open_incidents
        ):
            return self._overflow(ev, code)
        notify = self._wants_notice(ev, code)
        self._touch(key, None)
        inc = Incident(
            code=code,
            message=ev.message,
            start_time=ev.time,
            last_log_time=ev.time,
            server_id=self.server_id,
            node_name=self.node_name,
            active=True,
            cleared_at=None,
            created_at=0.0,
            updated_at=0.0,
            occurrences=1,
            alerts_sent=0,
            last_alert_time=ev.time,
            app=ev.app,
            incident_id=self._new_id(),
            re_alert=ev.re_alert,
            since_alert=0,
            src=self.src,
        )
        kind = _NEW
        flap = self._flap_open(key, inc) if self._noise_of(code).flap_threshold else None
        if flap is not None:
            inc.flapping = True  # opened while its key flaps (a silence muting it or not)
            if flap is Flap.STARTED:
                kind = _FLAPPING  # one warning instead of its failure
        muted = self._mute(inc, ev.time) if notify else None
        if muted is not None:
            notify = False
        elif flap is Flap.FLAPPING and notify:
            notify, muted = False, self._mute_flapping(inc)
        inc.alerts_sent = 1 if notify else 0
        self._active[key] = inc
        self._opened += 1
        self._dirty[inc.id_key] = inc
        detail = self._flap_detail(key) if kind is _FLAPPING else ""
        return Transition(kind, key, inc, ev, notify=notify, muted=muted, detail=detail)

    def _repeat(self, ev: LogEvent, code: str, key: str, inc: Incident) -> Transition | None:
        """Another line for the open incident ``inc``: its REALERT, or None when suppressed."""
        # A repeat runs once per error line: only what it needs (the notify decision
        # is looked up when it alerts; the undo copy is taken once per batch).
        if key not in self._undo:
            self._undo[key] = inc.copy()
        self._dirty[inc.id_key] = inc
        inc.occurrences += 1
        inc.since_alert += 1
        when = ev.time
        if when > inc.last_log_time:
            inc.last_log_time = when
        if ev.re_alert is not None:
            inc.re_alert = ev.re_alert  # an incident remembers the latest interval its lines gave
        inc.src = self.src
        # The rare fields through their side object, read once: None (the common case) is
        # all of them at their default, and four property calls per line were ~5% of ingest
        rare = inc._rare
        if rare is None:
            interval = self._policy.re_alert_for(code)
        else:
            if rare.reminded_at is not None:
                rare.reminded_at = None  # a line: the next reminder waits for remind_every of quiet again
            interval = rare.re_alert if rare.re_alert is not None else self._policy.re_alert_for(code)
            if rare.re_alerts:  # growing re-alerts (CONTRACT §9): base × backoff^n, capped
                interval = self._noise_of(code).interval(interval, rare.re_alerts)
        # interval 0: every occurrence alerts, even one whose time is older than the last alert
        if interval <= 0 or when - inc.last_alert_time >= interval:
            since = inc.since_alert
            inc.last_alert_time = when
            inc.since_alert = 0
            notify = self._wants_notice(ev, code)
            kind = _REALERT
            muted = self._mute(inc, when) if notify else None
            if muted is not None:
                notify = False
            elif notify and self.flaps.is_flapping(key):
                notify, muted = False, self._mute_flapping(inc)
            elif notify:
                if not inc.alerts_sent:
                    kind = _ANNOUNCE  # its first notice: a failure, not "still failing"
                inc.alerts_sent += 1
            if kind is _REALERT:
                inc.re_alerts += 1  # the backoff's n (a muted re-alert keeps the schedule too)
            return Transition(kind, key, inc, ev, notify=notify, since_alert=since, muted=muted)
        # Nobody has heard of it (every notice so far was silent): the first line that may
        # notify announces it without waiting for the interval (CONTRACT §2). The int test
        # comes first, so an incident that has alerted pays nothing more here; a silent
        # one a dict lookup (_wants_notice, inlined: this runs for each of its lines).
        if not inc.alerts_sent and ev.notify is not False:
            loud = self._loud.get(code)
            if loud is None:
                loud = self._wants_notice(ev, code)
            if not loud or (self.mutes is not None and not self._may_notify(inc, when)) or self.flaps.is_flapping(key):
                return None  # still silent, or muted: it waits for a line that may notify
            since = inc.since_alert
            if when > inc.last_alert_time:  # an older line must not pull the next re-alert forward
                inc.last_alert_time = when
            inc.since_alert = 0
            inc.alerts_sent = 1
            return Transition(_ANNOUNCE, key, inc, ev, notify=True, since_alert=since)
        return None

    def _clear(self, ev: LogEvent, code: str) -> Transition:
        key = incident_key(self.scope, ev.app, code)
        inc = self._get(key)
        if inc is None:
            return Transition(_CLEAR_UNKNOWN, key, None, ev)
        self._touch(key, inc)
        del self._active[key]
        self._opened += 1
        inc.active = False
        # A clear written before the incident's start (clocks of two writers, a backlog
        # read out of order) closes it at its start: never a negative duration (CONTRACT §7).
        inc.cleared_at = ev.time if ev.time > inc.start_time else inc.start_time
        inc.resolved_by = "clear"
        self._dirty[inc.id_key] = inc
        # The resolve goes to those who were alerted (CONTRACT §2): none if it never
        # alerted; else only the clearing line's `notification: false` keeps it back — a
        # `notify = false` set since does not, those alerted still hear of the end; and
        # flapping, the one mute that holds back resolves (§9), counted as muted.
        notify = ev.notify is not False and inc.alerts_sent > 0
        muted = None
        if self._flap_resolve(key, inc) and notify:
            notify, muted = False, self._mute_flapping(inc)
        return Transition(_CLEAR, key, inc, ev, notify=notify, duration=inc.cleared_at - inc.start_time, muted=muted)

    def announce(self, key: str, now: float) -> Transition | None:
        """The failure notice of the open incident ``key``, made at ``now`` (the daemon's
        clock): in a fleet (CONTRACT §13), when the opener's claim lapsed with the fleet
        incident never announced, the next failing member sends it. Muted as any failure
        made now would be; None when ``key`` is not open or its code does not notify."""
        inc = self._get(key)
        if inc is None:
            return None
        ev = LogEvent(code=inc.code, clear=None, message=inc.message, time=now, app=inc.app)
        if not self._wants_notice(ev, inc.code):
            return None
        self._touch(key, inc)
        self._dirty[inc.id_key] = inc
        muted = self._mute(inc, now)
        if muted is None and not inc.alerts_sent:
            inc.alerts_sent = 1
        return Transition(_ANNOUNCE, key, inc, ev, notify=muted is None, muted=muted)

    def resolve(self, key: str, now: float, message: str) -> Transition | None:
        """Close the open incident ``key`` by hand (``errord resolve``, CONTRACT §8) as a
        clear line would: ``cleared_at`` = ``now`` (the daemon's clock),
        ``resolved_by = "manual"``, its resolve notice to those who were alerted. None
        when ``key`` is not open."""
        inc = self._get(key)
        if inc is None:
            return None
        ev = LogEvent(code=None, clear=inc.code, message=message, time=now, app=inc.app)
        t = self._clear(ev, inc.code)
        assert t.incident is inc
        inc.resolved_by = "manual"
        return t


class _OpenView:
    """Every open incident of an engine, to read only, for the mute oracle: ``codes()``
    and ``head(ref)`` for its inhibition test (a packed incident gives its code without
    being unpacked), ``values()`` with the packed ones as copies made for the call. One
    per engine, so the oracle's cache can key on it."""

    __slots__ = ("_engine",)

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def values(self) -> Iterator[Incident]:
        engine = self._engine
        yield from list(engine._active.values())
        thaw = engine._codec.thaw
        for key, data in list(engine._cold.items()):
            yield thaw(key, data)

    def codes(self) -> Iterator[tuple[str, Incident | bytes]]:
        """``(code, ref)`` of every open incident; ``ref`` is what ``head`` takes."""
        engine = self._engine
        for inc in list(engine._active.values()):
            if inc.active:
                yield inc.code, inc
        code_of = None if engine.scope == "code" else engine._codec.code_of  # the key is the code
        for key, data in list(engine._cold.items()):
            yield (key if code_of is None else code_of(key, data)), data

    def head(self, ref: Incident | bytes) -> tuple[str | None, int | str]:
        """``(app, id_key)`` of the incident ``ref`` (from ``codes``)."""
        if ref.__class__ is bytes:
            return self._engine._codec.head(ref)
        return ref.app, ref.id_key  # type: ignore[union-attr]
