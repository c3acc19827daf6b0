"""Open incidents packed while nothing touches them (issue 13's memory target).

An open incident held as an ``Incident`` costs ~280 B beside its code: the 16-slot object
(160 B with its GC header), its id as an int (48 B), a float of its own (32 B) and its
share of the allocator's slack. Most open incidents sit untouched between their lines,
so once its batch is committed and the journal holds its message, the daemon's engine
keeps an incident as one ``bytes`` of 78 B (a 112 B allocation) in ``Engine._cold`` and
makes the object again when a line, a tick or a command needs it (``thaw``, ~1 µs).

Only an incident with an id of 32 hex digits (held as an int) and a message read from
the journal is packed; any other stays an object. Its rare fields (``_rare``), when one
is set, make the packed form 47 B longer. The values incidents share (the host tuple,
the app, the notified targets, the message's reader) are packed as indexes into this
codec's table, which is bounded (``MAX_REFS``) because apps come from untrusted lines:
once it is full, incidents with a value not in it stay objects. The table never shrinks
(an app of a closed incident stays in it): at most ``MAX_REFS`` small values.

The engine never packs by itself (replay does not): ``Engine.freeze`` is the daemon's
call, once a batch is committed.
"""

from __future__ import annotations

import struct
from collections.abc import Hashable
from typing import Any

from errord.model import Incident

__all__ = ["MAX_REFS", "ColdCodec"]

# id (16 bytes, little-endian), start_time, last_log_time, created_at, updated_at,
# last_alert_time, occurrences, alerts_sent, since_alert, src, and four table indexes
# (host, app, notified, message source): 78 bytes, one 112 B allocation with the bytes
# header. The full form, for counts beyond 32 bits or a rare field set (it re-alerted,
# was muted, reminded, has its own re_alert_time, opened flapping), has 64-bit counts and
# adds those: re_alert and reminded_at (NaN: None), re_alerts, notices_muted, flapping:
# 125 bytes, a 160 B allocation. The length tells the two apart.
_SHORT = struct.Struct("<16s5d3Ih4H")
_FULL = struct.Struct("<16s5d3qi4H2d2q?")
_SHORT_SIZE = _SHORT.size
_NONE = float("nan")


def _fields(data: bytes) -> tuple[Any, ...]:
    return _SHORT.unpack(data) if len(data) == _SHORT_SIZE else _FULL.unpack(data)


MAX_REFS = 65_535  # what an unsigned short indexes


class ColdCodec:
    """Packs an ``Incident`` into ``bytes`` and back; one per engine (its scope)."""

    __slots__ = ("_app_scope", "_index", "_refs")

    def __init__(self, scope: str) -> None:
        self._app_scope = scope == "app"
        self._refs: list[Hashable] = []
        self._index: dict[Hashable, int] = {}

    def _ref(self, value: Hashable) -> int:
        index = self._index.get(value)
        if index is None:
            index = len(self._refs)
            if index >= MAX_REFS:
                raise OverflowError("the table of shared values is full")
            self._index[value] = index
            self._refs.append(value)
        return index

    def pack(self, inc: Incident) -> bytes | None:
        """``inc`` as bytes, or None when it is not of a shape packed (it stays an object)."""
        raw = inc.id_key
        held = inc.message_of
        if raw.__class__ is not int or isinstance(held, str):
            return None
        rare = inc._rare
        get = self._index.get
        try:
            host, app, notified, source = get(inc.host), get(inc.app), get(inc.notified), get(held)
            if host is None or app is None or notified is None or source is None:  # a value new here
                ref = self._ref
                host, app, notified, source = ref(inc.host), ref(inc.app), ref(inc.notified), ref(held)
            main = (
                raw.to_bytes(16, "little"),
                inc.start_time,
                inc.last_log_time,
                inc.created_at,
                inc.updated_at,
                inc.last_alert_time,
                inc.occurrences,
                inc.alerts_sent,
                inc.since_alert,
                inc.src,
                host,
                app,
                notified,
                source,
            )
            if rare is None:
                try:
                    return _SHORT.pack(*main)
                except struct.error:  # a count beyond 32 bits, a src beyond 16
                    return _FULL.pack(*main, _NONE, _NONE, 0, 0, False)
            re_alert, reminded = rare.re_alert, rare.reminded_at
            if rare.closed or rare.cleared_at is not None or rare.resolved_by is not None:
                return None  # closed: never held by the engine
            if re_alert != re_alert or reminded != reminded:  # NaN stands for None here
                return None
            return _FULL.pack(
                *main,
                _NONE if re_alert is None else re_alert,
                _NONE if reminded is None else reminded,
                rare.re_alerts,
                rare.notices_muted,
                rare.flapping,
            )
        except (struct.error, OverflowError, TypeError):  # out of range, unhashable, table full
            return None

    def thaw(self, key: str, data: bytes) -> Incident:
        """The incident ``pack`` made ``data`` of, held under the engine's ``key``."""
        fields = _fields(data)
        (raw, start, last, created, updated, alerted, occurrences, sent, since, src, host, app, notified, held) = (
            fields[:14]
        )
        refs = self._refs
        inc = Incident.__new__(Incident)
        app_value = refs[app]
        # the key is the code, or (scope "app") the app, the 1-character separator, the code
        inc.code = key[len(app_value or "") + 1 :] if self._app_scope else key
        inc.message_of = refs[held]
        inc.start_time = start
        inc.last_log_time = last
        inc.host = refs[host]
        inc.created_at = created
        inc.updated_at = updated
        inc.occurrences = occurrences
        inc.alerts_sent = sent
        inc.last_alert_time = alerted
        inc.app = app_value
        inc.id_key = int.from_bytes(raw, "little")
        inc.since_alert = since
        inc.src = src
        inc.notified = refs[notified]
        inc._rare = None
        if len(fields) > 14:
            re_alert, reminded, inc.re_alerts, inc.notices_muted, inc.flapping = fields[14:]
            inc.re_alert = None if re_alert != re_alert else re_alert
            inc.reminded_at = None if reminded != reminded else reminded
        return inc

    def notified_of(self, data: bytes) -> tuple[str, ...]:
        """The notified targets of packed ``data`` (without making the object)."""
        notified: tuple[str, ...] = self._refs[_fields(data)[12]]
        return notified

    def code_of(self, key: str, data: bytes) -> str:
        """The code of packed ``data`` held under the engine's ``key``."""
        if not self._app_scope:
            return key
        app = self._refs[_fields(data)[11]]
        return key[len(app or "") + 1 :]

    def peek(self, data: bytes) -> tuple[int, float, int, float | None]:
        """``(src, last_log_time, alerts_sent, reminded_at)`` of packed ``data``, without an
        object: what the engine's tick judges an incident by."""
        fields = _fields(data)
        if len(fields) == 14:
            return fields[9], fields[2], fields[7], None
        reminded = fields[15]
        return fields[9], fields[2], fields[7], None if reminded != reminded else reminded

    def head(self, data: bytes) -> tuple[str | None, int]:
        """``(app, id_key)`` of packed ``data``: what the inhibition test compares."""
        fields = _fields(data)
        return self._refs[fields[11]], int.from_bytes(fields[0], "little")

    def incident_id(self, data: bytes) -> str:
        """The ``incident_id`` of packed ``data``."""
        return f"{int.from_bytes(data[:16], 'little'):032x}"
