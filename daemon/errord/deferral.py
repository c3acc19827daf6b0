"""Which chunks a following daemon may parse later: those that can only repeat (issue 13).

A daemon following a file reads it ~40 times a second (``daemon.READ_GAP``), and most of
those reads hold nothing but lines without a code and repeats of codes that are open,
have alerted and are not due to alert again: lines that change counters and notify
nobody. Parsing and feeding them at once is most of what a read costs on a core that
was asleep in between. So ``Batch`` keeps such a chunk, unparsed, in its open batch and
parses it before anything else touches the engine (the next chunk that may notify, the
batch's commit at most ``HOLD`` later, a timer tick, a command): the lines go through
the engine in the same order, with the same read time, so they do the same, only later
(and the API's counters show them then). Nothing of a held batch is durable either way.

:func:`may_defer` decides from the bytes alone, at C speed, and only says yes when sure
enough that a mistake is rare and cheap: a line it lets through that does notify (a
line time far ahead of the others, say) is only noticed up to ``HOLD`` later, never
handled differently. Pure: table-tested in ``tests/test_deferral.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import orjson

from errord.parse.chunks import ESCAPED_KEY, NEEDLE

__all__ = ["DEFER_MAX_BYTES", "DEFER_SLACK", "may_defer"]

# Only a follower's small reads are worth it: a backlog's megabyte would be scanned here
# and then parsed anyway (its batch is committed at once), for nothing saved.
DEFER_MAX_BYTES = 64 << 10

# Seconds past the source's quiet clock (its newest event time, moved on by the time since)
# that a deferred chunk's lines may be stamped and still be sure repeats: live lines are
# stamped within milliseconds of their reading; a clock further ahead is the rare mistake.
DEFER_SLACK = 2.0

_KEY = b'"error_code"'
_CODE = re.compile(rb'"error_code"[ \t]*:[ \t]*"([^"\\]{1,512})"')
_RE_ALERT_KEY = b'"re_alert_time"'
_RE_ALERT = re.compile(rb'"re_alert_time"[ \t]*:[ \t]*("[^"\\]{0,64}"|[-+0-9.eE]{1,32})')


def may_defer(
    data: bytes,
    quiet_until: Callable[[str, float | None], float],
    horizon: float,
    duration: Callable[[object], float | None],
) -> bool:
    """Whether every line of ``data`` is sure to be a suppressed repeat (or no event) if
    stamped no later than ``horizon``.

    ``quiet_until(code, re_alert)``: the event time before which another line for
    ``code`` is a suppressed repeat, with the chunk's shortest ``re_alert_time``
    (``re_alert``, seconds, or None); 0.0 when it may notify at any time (not open,
    never alerted, ...: ``Engine.quiet_until``). ``duration``: the parser's reading of
    a ``re_alert_time`` value. No when in doubt: a clear, an escaped letter that could
    spell a key, an ``error_code`` key whose value is not a plain string, a
    ``re_alert_time`` that is not a plain value."""
    if data.find(b"\\") >= 0 and ESCAPED_KEY.search(data) is not None:
        return False  # a key may be spelled with escapes: only the parser can tell
    if data.find(NEEDLE) < 0:
        return True  # no line names a code: nothing here can notify
    if b"error_code_clear" in data:
        return False
    codes = _CODE.findall(data)
    if len(codes) != data.count(_KEY):
        return False  # a key with a number, null, an object or an escape for a value
    if not codes:
        return True  # error_code only in texts: mentions, not keys
    re_alert: float | None = None
    if data.find(_RE_ALERT_KEY) >= 0:
        values = _RE_ALERT.findall(data)
        if len(values) != data.count(_RE_ALERT_KEY):
            return False
        for raw in values:
            try:
                seconds = duration(orjson.loads(raw))
            except orjson.JSONDecodeError:
                return False
            if seconds is not None and (re_alert is None or seconds < re_alert):
                re_alert = seconds
    for raw in set(codes):
        try:
            code = raw.decode().strip()
        except UnicodeDecodeError:
            return False
        if not code or quiet_until(code, re_alert) <= horizon:
            return False
    return True
