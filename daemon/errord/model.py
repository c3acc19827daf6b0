"""Plain data shared by the pipeline stages: events, incidents, transitions, notices, positions.

All times inside the pipeline are floats: seconds since the epoch, UTC. Conversion to
``datetime`` happens only at the edges (MongoDB, ``--json`` output, notice text).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Literal

__all__ = [
    "INCIDENT_COLUMNS",
    "INCIDENT_FIELDS",
    "MAX_CODE_CHARS",
    "FileKey",
    "HeldEntry",
    "HistoryState",
    "Incident",
    "Kind",
    "LogEvent",
    "MessageSource",
    "Notice",
    "NoticeType",
    "Position",
    "Transition",
    "history_state",
]


@dataclass(slots=True)
class LogEvent:
    """One log line that carries an ``error_code`` and/or an ``error_code_clear``.

    Produced by ``lines.LineParser``; consumed by ``engine.Engine.feed``. The parser
    sets the fields one by one, without ``__init__`` (for speed): a new field must be set
    in ``LineParser._event`` too (``lines`` refuses to import until it is).
    """

    code: str | None  # error_code (raise / repeat)
    clear: str | None  # error_code_clear (resolve)
    message: str
    time: float  # event time used for every decision (epoch seconds, UTC)
    re_alert: float | None = None  # seconds, from the line's re_alert_time
    notify: bool | None = None  # the line's `notification`; None = not given (config decides)
    level: str | None = None
    app: str | None = None  # the source's label
    path: str = ""  # file the line came from (for logs only)
    offset: int = 0  # byte offset of the line in that file (for logs only)
    exception: str | None = None  # the exception's type and message, for the notice body


# Where an incident's message is read once it is not held (the journal's ``message_of``)
MessageSource = Callable[["Incident"], str]


class _Rare:
    """The fields of an ``Incident`` that are almost always their default while it is open,
    kept apart: an incident holds ``None`` until one of them is set (issue 13: ~50 B less
    per incident). ``closed`` is ``not active``: a closed incident has one anyway."""

    __slots__ = (
        "cleared_at",
        "closed",
        "flapping",
        "notices_muted",
        "re_alert",
        "re_alerts",
        "reminded_at",
        "resolved_by",
    )

    def __init__(self) -> None:
        self.closed = False  # ``not active``: an incident is open until it closes, once
        self.cleared_at: float | None = None
        self.notices_muted = 0
        self.resolved_by: str | None = None
        self.flapping = False
        self.re_alert: float | None = None
        self.re_alerts = 0
        self.reminded_at: float | None = None

    def copy(self) -> _Rare:
        new = _Rare.__new__(_Rare)
        (
            new.cleared_at,
            new.closed,
            new.flapping,
            new.notices_muted,
            new.re_alert,
            new.re_alerts,
            new.reminded_at,
            new.resolved_by,
        ) = _get_rare(self)
        return new


_get_rare = attrgetter(*_Rare.__slots__)

_HEX = frozenset("0123456789abcdef")

# (server_id, node_name) pairs, one tuple each: every incident of a host holds the same
# one (``Incident.host``). A cache, not a registry: bounded, as codes come from lines.
_HOSTS: dict[tuple[str, str], tuple[str, str]] = {}


def _host(server_id: str, node_name: str) -> tuple[str, str]:
    pair = (server_id, node_name)
    shared = _HOSTS.get(pair)
    if shared is None:
        if len(_HOSTS) >= 1024:
            _HOSTS.clear()
        shared = _HOSTS[pair] = pair
    return shared


def _raw_id(value: str) -> int | str:
    """An incident id as ``Incident`` holds it: 32 lower-case hex digits (what the engine
    makes) as their int, which ``f"{raw:032x}"`` gives back exactly; anything else as is."""
    if value.__class__ is not str:
        raise TypeError(f"incident_id must be a str, not {type(value).__name__}")
    if len(value) == 32 and _HEX.issuperset(value):
        return int(value, 16)
    return value


class Incident:
    """One incident: the record of CONTRACT §6 plus the engine's own bookkeeping.

    The first ten fields are those of the original ``error_codes`` documents. A plain
    slotted class, not a dataclass, of 15 slots (176 → 160 B; issue 13): the fields that
    are almost always their default while it is open (``active``, ``cleared_at``,
    ``notices_muted``, ``resolved_by``, ``flapping``, ``re_alert``, ``re_alerts``,
    ``reminded_at``) live in one side object made when the first of them is set, behind
    properties; ``server_id`` and ``node_name`` are one tuple a host's incidents share
    (``host``); ``incident_id`` is an int for a 32-hex id (``id_key``); ``message`` is
    the str, or once the daemon committed it, the journal's reader of it (``message_of``;
    the engine alone, as in replay and the tests, keeps the str). The constructor takes
    the fields in ``INCIDENT_COLUMNS`` order, positionally or by name.
    """

    __slots__ = (
        "_rare",
        "alerts_sent",
        "app",
        "code",
        "created_at",
        "host",
        "id_key",
        "last_alert_time",
        "last_log_time",
        "message_of",
        "notified",
        "occurrences",
        "since_alert",
        "src",
        "start_time",
        "updated_at",
    )

    code: str
    # the first message (``message`` is the property that reads it): the str itself, or,
    # once the journal holds it, the journal's reader of it (``keep_message_in``)
    message_of: str | MessageSource
    start_time: float
    last_log_time: float
    # (server_id, node_name), one tuple shared by a host's incidents (``server_id`` and
    # ``node_name`` are the properties over it); ``active`` is ``not _rare.closed``
    host: tuple[str, str]
    created_at: float  # wall clock; set by the journal when first written
    updated_at: float  # wall clock; set by the journal on every write
    occurrences: int
    alerts_sent: int
    last_alert_time: float
    app: str | None
    # the incident_id as held (``incident_id`` is the property that formats it): a 32-hex id
    # as its int (48 B, not the str's 96), any other id (old journals, MongoDB imports,
    # tests) as the str itself. A dict key as unique as ``incident_id`` that makes no str
    # (``Engine._dirty``); set it only through ``incident_id``.
    id_key: int | str
    # engine bookkeeping, persisted in the journal but not part of the public record:
    # occurrences since the last alert (for the re-alert text); the source that last fed
    # it (whose quiet clock judges it; -1: unknown)
    since_alert: int
    src: int
    # notify target keys sent (or still queued) a failure/warning of it: who gets its
    # resolve (CONTRACT §2). Set by ``policy.route.Router`` in the batch, on this live object,
    # so the engine's undo log rolls it back with the batch. Never in the public record.
    notified: tuple[str, ...]
    _rare: _Rare | None

    def __init__(
        self,
        code: str,
        message: str,
        start_time: float,
        last_log_time: float,
        server_id: str,
        node_name: str,
        active: bool,
        cleared_at: float | None,
        created_at: float,
        updated_at: float,
        occurrences: int,
        alerts_sent: int,
        last_alert_time: float,
        app: str | None,
        incident_id: str,
        notices_muted: int = 0,
        resolved_by: str | None = None,
        flapping: bool = False,
        re_alert: float | None = None,
        since_alert: int = 0,
        re_alerts: int = 0,
        reminded_at: float | None = None,
        src: int = -1,
        notified: tuple[str, ...] = (),
    ) -> None:
        self.code = code
        self.message = message
        self.start_time = start_time
        self.last_log_time = last_log_time
        self.host = _host(server_id, node_name)
        self.created_at = created_at
        self.updated_at = updated_at
        self.occurrences = occurrences
        self.alerts_sent = alerts_sent
        self.last_alert_time = last_alert_time
        self.app = app
        self.incident_id = incident_id
        self.since_alert = since_alert
        self.src = src
        self.notified = notified
        self._rare = None
        if (
            not active
            or cleared_at is not None
            or notices_muted
            or resolved_by is not None
            or flapping
            or re_alert is not None
            or re_alerts
            or reminded_at is not None
        ):
            rare = self._rare = _Rare()
            rare.closed = not active
            rare.cleared_at = cleared_at
            rare.notices_muted = notices_muted
            rare.resolved_by = resolved_by
            rare.flapping = flapping
            rare.re_alert = re_alert
            rare.re_alerts = re_alerts
            rare.reminded_at = reminded_at

    @property
    def server_id(self) -> str:
        return self.host[0]

    @server_id.setter
    def server_id(self, value: str) -> None:
        self.host = _host(value, self.host[1])

    @property
    def node_name(self) -> str:
        return self.host[1]

    @node_name.setter
    def node_name(self, value: str) -> None:
        self.host = _host(self.host[0], value)

    @property
    def active(self) -> bool:
        """Open (CONTRACT §6): until it closes (``cleared_at``, ``resolved_by`` are set then)."""
        rare = self._rare
        return rare is None or not rare.closed

    @active.setter
    def active(self, value: bool) -> None:
        if not value or self._rare is not None:
            self._side().closed = not value

    @property
    def incident_id(self) -> str:
        """Its id: 32 lower-case hex digits (a uuid4) as made, or whatever id it was read with."""
        raw = self.id_key
        return raw if isinstance(raw, str) else f"{raw:032x}"

    @incident_id.setter
    def incident_id(self, value: str) -> None:
        self.id_key = _raw_id(value)

    @property
    def message(self) -> str:
        """The first line's message: held, or read from where it is kept (the journal)."""
        held = self.message_of
        return held if isinstance(held, str) else held(self)

    @message.setter
    def message(self, value: str) -> None:
        self.message_of = value

    @property
    def held_message(self) -> str | None:
        """The message if this object holds it; None when it is read from the journal."""
        held = self.message_of
        return held if isinstance(held, str) else None

    def keep_message_in(self, source: MessageSource) -> None:
        """Its message is stored (committed): read it through ``source`` from now on, and
        hold no copy (issue 13: a message is ~80 B or more per open incident)."""
        self.message_of = source

    def _side(self) -> _Rare:
        rare = self._rare
        if rare is None:
            rare = self._rare = _Rare()
        return rare

    # -- the rare fields (CONTRACT §6/§8/§9) ----------------------------------------------

    @property
    def cleared_at(self) -> float | None:
        """Event time of the clear; None while open."""
        rare = self._rare
        return None if rare is None else rare.cleared_at

    @cleared_at.setter
    def cleared_at(self, value: float | None) -> None:
        if value is not None or self._rare is not None:
            self._side().cleared_at = value

    @property
    def notices_muted(self) -> int:
        """Notices a silence, inhibition, mute time or flapping kept back (CONTRACT §8)."""
        rare = self._rare
        return 0 if rare is None else rare.notices_muted

    @notices_muted.setter
    def notices_muted(self, value: int) -> None:
        if value or self._rare is not None:
            self._side().notices_muted = value

    @property
    def resolved_by(self) -> str | None:
        """None while open; "clear" (a clear line), "auto" or "manual"."""
        rare = self._rare
        return None if rare is None else rare.resolved_by

    @resolved_by.setter
    def resolved_by(self, value: str | None) -> None:
        if value is not None or self._rare is not None:
            self._side().resolved_by = value

    @property
    def flapping(self) -> bool:
        """Opened while its key was flapping (CONTRACT §9)."""
        rare = self._rare
        return False if rare is None else rare.flapping

    @flapping.setter
    def flapping(self, value: bool) -> None:
        if value or self._rare is not None:
            self._side().flapping = value

    @property
    def re_alert(self) -> float | None:
        """The latest re_alert_time its lines gave (seconds); None: none did."""
        rare = self._rare
        return None if rare is None else rare.re_alert

    @re_alert.setter
    def re_alert(self, value: float | None) -> None:
        if value is not None or self._rare is not None:
            self._side().re_alert = value

    @property
    def re_alerts(self) -> int:
        """Re-alerts so far: the backoff's n (CONTRACT §9)."""
        rare = self._rare
        return 0 if rare is None else rare.re_alerts

    @re_alerts.setter
    def re_alerts(self, value: int) -> None:
        if value or self._rare is not None:
            self._side().re_alerts = value

    @property
    def reminded_at(self) -> float | None:
        """The quiet clock's time of the last reminder; None: none since its latest line."""
        rare = self._rare
        return None if rare is None else rare.reminded_at

    @reminded_at.setter
    def reminded_at(self, value: float | None) -> None:
        if value is not None or self._rare is not None:
            self._side().reminded_at = value

    # -- as a value ---------------------------------------------------------------------------

    def copy(self) -> Incident:
        new = Incident.__new__(Incident)
        (
            new.code,
            new.message_of,
            new.start_time,
            new.last_log_time,
            new.host,
            new.created_at,
            new.updated_at,
            new.occurrences,
            new.alerts_sent,
            new.last_alert_time,
            new.app,
            new.id_key,
            new.since_alert,
            new.src,
            new.notified,
        ) = _get_main(self)
        rare = self._rare
        new._rare = None if rare is None else rare.copy()
        return new

    def values(self) -> tuple[Any, ...]:
        """All fields, in ``INCIDENT_COLUMNS`` order (the constructor's)."""
        return _get_columns(self)

    def record(self) -> dict[str, Any]:
        """The public record (CONTRACT §6) with float times, in field order."""
        return dict(zip(INCIDENT_FIELDS, _get_record(self), strict=True))

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Incident:
            return NotImplemented
        return bool(_get_columns(self) == _get_columns(other))

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass was

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={v!r}" for n, v in zip(INCIDENT_COLUMNS, _get_columns(self), strict=True))
        return f"Incident({inner})"


# Every field, in the constructor's order: the journal's incidents columns (store/schema.py).
INCIDENT_COLUMNS: tuple[str, ...] = (
    "code",
    "message",
    "start_time",
    "last_log_time",
    "server_id",
    "node_name",
    "active",
    "cleared_at",
    "created_at",
    "updated_at",
    "occurrences",
    "alerts_sent",
    "last_alert_time",
    "app",
    "incident_id",
    "notices_muted",
    "resolved_by",
    "flapping",
    "re_alert",
    "since_alert",
    "re_alerts",
    "reminded_at",
    "src",
    "notified",
)
# the kept slots but ``_rare``, in the order copy() unpacks them
# the properties over a slot of another name (or none: active is in _Rare)
_HELD_AS = {"incident_id": "id_key", "message": "message_of", "server_id": "host", "node_name": "", "active": ""}
_MAIN_SLOTS = tuple(_HELD_AS.get(n, n) for n in INCIDENT_COLUMNS if n not in _Rare.__slots__ and _HELD_AS.get(n) != "")
assert set(_MAIN_SLOTS) == set(Incident.__slots__) - {"_rare"}
assert _MAIN_SLOTS == (
    "code",
    "message_of",
    "start_time",
    "last_log_time",
    "host",
    "created_at",
    "updated_at",
    "occurrences",
    "alerts_sent",
    "last_alert_time",
    "app",
    "id_key",
    "since_alert",
    "src",
    "notified",
)  # copy()'s order
_get_main = attrgetter(*_MAIN_SLOTS)  # all kept fields in one C call: copy() stays cheap
_get_columns = attrgetter(*INCIDENT_COLUMNS)

# The public record, in CONTRACT §6 order.
INCIDENT_FIELDS: tuple[str, ...] = (
    "code",
    "message",
    "start_time",
    "last_log_time",
    "server_id",
    "node_name",
    "active",
    "cleared_at",
    "created_at",
    "updated_at",
    "occurrences",
    "alerts_sent",
    "last_alert_time",
    "app",
    "incident_id",
    "notices_muted",
    "resolved_by",
    "flapping",
)
_get_record = attrgetter(*INCIDENT_FIELDS)

TIME_FIELDS = frozenset({"start_time", "last_log_time", "cleared_at", "created_at", "updated_at", "last_alert_time"})


class Kind(enum.Enum):
    """What one log line did to one incident."""

    NEW = "new"  # opened an incident
    REPEAT = "repeat"  # counted, suppressed
    REALERT = "realert"  # counted, interval elapsed: alert again
    REMIND = "remind"  # no line for remind_every: a reminder (CONTRACT §9), not a line's doing
    FLAPPING = "flapping"  # opened, and made its key flapping: a warning instead of the failure
    FLAP_END = "flap_end"  # the key stopped flapping: failing (a failure) or resolved (a success)
    ANNOUNCE = "announce"  # counted, first notice of an incident whose notices were all silent
    CLEAR = "clear"  # closed an incident
    CLEAR_UNKNOWN = "clear_unknown"  # a clear for a code that is not active: nothing to do


@dataclass(slots=True)
class Transition:
    """The outcome of one line for one incident.

    ``incident`` is the engine's live object (or, for CLEAR, the closed one): read it
    right away, before feeding the next event. ``notify`` is true when this transition
    should produce a notification: an alerting kind, the line did not say
    ``notification: false`` and the config does not say ``notify = false``; for CLEAR,
    the line allows it and the incident alerted at least once (which targets get it is
    ``policy.route.Router``'s decision: those that were alerted). ``since_alert`` is, for
    REALERT and ANNOUNCE, the number of occurrences since the previous (silent) alert
    (including this line); ``duration`` is, for CLEAR, the incident's length in seconds.
    ``muted`` is the reason (``silence``, ``inhibited``, ``mute_times``) when a failure or
    warning was made but kept back: recorded, not sent (``notify`` is then False).
    """

    kind: Kind
    key: str
    incident: Incident | None
    event: LogEvent
    notify: bool = False
    since_alert: int = 0
    duration: float = 0.0
    muted: str | None = None  # the reason a notice made for it was kept back (CONTRACT §8)
    detail: str = ""  # FLAPPING / FLAP_END: the counts the notice states (CONTRACT §9)


class NoticeType(enum.Enum):
    """Apprise notify types (CONTRACT §5)."""

    FAILURE = "failure"  # new incident, or an open one announced late
    WARNING = "warning"  # re-alert
    SUCCESS = "success"  # resolved


@dataclass(frozen=True, slots=True)
class HeldEntry:
    """One line of a digest (CONTRACT §9): the notices of one code and one type that a
    storm limit held for a target, as data (templates get a list of these as ``held``).

    ``type`` is ``"new"`` (a failure), ``"re-alert"`` (a warning), ``"resolved"`` (a
    success) or ``"other"``; ``latest_message`` is the first line of the body of the latest
    of them (the message a human reads first)."""

    code: str
    type: str
    count: int
    latest_message: str


@dataclass(slots=True)
class Notice:
    """A rendered notification, ready for the outbox. Rendered once, at enqueue time,
    so a notice delivered after a restart says exactly what it said when it was made."""

    type: NoticeType
    code: str
    title: str
    body: str
    incident_id: str
    event_time: float
    tags: tuple[str, ...] = ()  # the code's tags when it was made (for the record)
    id: int | None = None  # outbox row id once stored
    # notify target keys it goes to (``policy.route.Router`` decides; the journal inserts one
    # delivery per key). Not stored with the notice (the delivery rows are the record), so
    # not part of its equality either: a notice read back from the outbox equals the one made.
    targets: tuple[str, ...] = field(default=(), compare=False)
    # A digest (CONTRACT §9 storm limit): what it stands for, per code and type, most
    # recent first; empty for every other notice. Made by the notify worker when a held
    # target's budget frees up, never stored in the outbox (its held notices are).
    held: tuple[HeldEntry, ...] = ()
    # The template variables of CONTRACT §11 (``notices.render`` makes them, JSON-able):
    # stored with the notice, so a target with a template renders it in the helper.
    vars: dict[str, Any] | None = None


FileKey = tuple[int, int]  # (st_dev, st_ino)

MAX_CODE_CHARS = 200  # longest error code accepted (it must fit a notice title verbatim)


@dataclass(slots=True)
class Position:
    """How far one file identity has been read, and its counters.

    A file identity is (dev, ino) plus a fingerprint of its first bytes, so that inode
    reuse and copytruncate are told apart from growth.
    """

    dev: int
    ino: int
    path: str  # last path it was seen under
    offset: int  # bytes consumed (always at a line boundary)
    fp_len: int = 0  # how many leading bytes the fingerprint covers
    fp_hash: str = ""  # hex digest of those bytes
    lines_read: int = 0
    lines_skipped: int = 0
    source: int = 0  # index of the [[sources]] entry that found it
    gone: bool = False  # true: delete this position when committing
    extra: dict[str, Any] = field(default_factory=dict)  # tailer-private, persisted as JSON

    @property
    def key(self) -> FileKey:
        return (self.dev, self.ino)


HistoryState = Literal["active", "cleared"]  # the ``state`` filter of the stores' ``history``


def history_state(state: HistoryState | None, active_only: bool) -> HistoryState | None:
    """The ``state`` filter of ``history(...)``: ``active_only=True`` is the older spelling
    of ``state="active"``; asking for both open and cleared-only is a ``ValueError``."""
    if state not in (None, "active", "cleared"):
        raise ValueError(f"state must be 'active' or 'cleared', not {state!r}")
    if active_only:
        if state == "cleared":
            raise ValueError("active_only=True contradicts state='cleared'")
        return "active"
    return state
