"""Turn the transitions of one log line into at most one notice (CONTRACT §5). Pure.

Text that came from logs is untrusted: control characters are stripped and its length is
capped before it goes out. Nothing here formats untrusted text with ``str.format`` — only
f-strings over values we chose, so a message like ``{0.__class__}`` is printed as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from errord.durations import format_duration
from errord.model import MAX_CODE_CHARS, Kind, LogEvent, Notice, NoticeType, Transition
from errord.views import incident_json

__all__ = [
    "MAX_CODE",
    "MAX_MESSAGE",
    "CodeNotes",
    "NoticeStyle",
    "clean_text",
    "exception_lines",
    "format_time",
    "render",
]

MAX_MESSAGE = 1000  # characters of a log message carried into a notice
MAX_EXCEPTION = 300  # characters of the exception line (type and message)
MAX_CODE = MAX_CODE_CHARS  # the parser refuses longer codes

# C0 controls except \t and \n, DEL, C1 controls, and the bidi overrides/isolates that can
# make a notice display something other than what it says.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

_EMOJI = {
    Kind.NEW: "🔴",
    Kind.ANNOUNCE: "🔴",
    Kind.REALERT: "🟠",
    Kind.REMIND: "🔔",
    Kind.FLAPPING: "🔁",
    Kind.CLEAR: "✅",
}
_TYPE = {
    Kind.NEW: NoticeType.FAILURE,
    Kind.ANNOUNCE: NoticeType.FAILURE,  # the first anyone hears of it: a failure, as a new one
    Kind.REALERT: NoticeType.WARNING,
    Kind.REMIND: NoticeType.WARNING,  # CONTRACT §9: a reminder is a warning
    Kind.FLAPPING: NoticeType.WARNING,  # instead of the failure of the opening that made it flap
    Kind.FLAP_END: NoticeType.FAILURE,  # failing still; a success when it ended resolved
    Kind.CLEAR: NoticeType.SUCCESS,
}


def clean_text(text: str, limit: int = MAX_MESSAGE, *, single_line: bool = False) -> str:
    """Strip control characters and cap the length of untrusted text."""
    text = _CONTROL.sub("", text)
    if single_line:
        text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


@dataclass(frozen=True, slots=True)
class CodeNotes:
    """What ``[codes.X]`` says about a code for the people reading its notices (CONTRACT §11)."""

    description: str | None = None
    runbook: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


_NO_NOTES = CodeNotes()


@dataclass(frozen=True, slots=True)
class NoticeStyle:
    """How notices read: the display time zone (human text only; records stay UTC) and
    the per-code notes. The default is today's text: UTC, no notes."""

    timezone: str = "UTC"
    notes: Mapping[str, CodeNotes] = field(default_factory=dict)

    def notes_for(self, code: str) -> CodeNotes:
        return self.notes.get(code, _NO_NOTES)


DEFAULT_STYLE = NoticeStyle()


def format_time(ts: float, tz: str = "UTC") -> str:
    """``2026-01-14 15:05:51 UTC`` (or ``… CET`` in ``tz``) — for notice bodies."""
    if tz == "UTC":
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S %Z")


def exception_lines(ev: LogEvent) -> list[str]:
    """``["Exception: ValueError: bad"]`` for a line that carried an exception, else []:
    on-call reads the exception's type and message first (CONTRACT §1)."""
    if not ev.exception:
        return []
    return [f"Exception: {clean_text(ev.exception, MAX_EXCEPTION, single_line=True)}"]


_format_time = format_time


def _title_code(code: str) -> str:
    """The code verbatim (CONTRACT §5). The parser refuses codes that could not stand in a
    title as they are; one that reached the engine another way is cleaned and capped."""
    if len(code) <= MAX_CODE and not _CONTROL.search(code) and "\t" not in code and "\n" not in code:
        return code
    return clean_text(code, MAX_CODE, single_line=True)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _where(server_id: str, node_name: str) -> str:
    return f"{server_id}/{node_name}" if node_name else server_id


def render(
    transitions: Sequence[Transition],
    *,
    server_id: str,
    node_name: str,
    tags_for: Callable[[str], Sequence[str]] = lambda code: (),
    style: NoticeStyle = DEFAULT_STYLE,
) -> Notice | None:
    """The one notice a line produces, or None.

    A line that clears one incident and raises another still yields one notice: the
    error's, with the resolution appended (CONTRACT §2: one line, at most one notice).
    """
    wanted = [t for t in transitions if t.notify and t.incident is not None and t.kind in _TYPE]
    if not wanted:
        return None
    errors = [t for t in wanted if t.kind is not Kind.CLEAR]
    main = errors[-1] if errors else wanted[-1]
    title, body = _text(main, server_id, node_name, style)
    for other in wanted:
        if other is main:
            continue
        o_title, o_body = _text(other, server_id, node_name, style)
        resolved = other.incident
        assert resolved is not None  # ``wanted`` holds only transitions with an incident
        title = f"{title} (also: {_title_code(resolved.code)} resolved)"
        body = f"{body}\n\n{o_title}\n{o_body}"
    inc = main.incident
    assert inc is not None
    kind = _TYPE[main.kind]
    if main.kind is Kind.FLAP_END and not inc.active:
        kind = NoticeType.SUCCESS
    return Notice(
        type=kind,
        code=inc.code,
        title=title,
        body=body,
        incident_id=inc.incident_id,
        event_time=main.event.time,
        tags=tuple(tags_for(inc.code)),
        vars=_vars(main, server_id, node_name, style),
    )


def _vars(t: Transition, server_id: str, node_name: str, style: NoticeStyle) -> dict[str, Any]:
    """The template variables of CONTRACT §11 as JSON-able data (times as epoch floats,
    the zone by name): stored with the notice, so a template renders in the helper what
    the notice said when it was made. ``sinks.templates.variables`` makes them datetimes."""
    inc = t.incident
    assert inc is not None
    notes = style.notes_for(inc.code)
    kind = _TYPE[t.kind].value
    if t.kind is Kind.FLAP_END and not inc.active:
        kind = NoticeType.SUCCESS.value
    # which template keys (CONTRACT §11): reminders and "started flapping" are warnings,
    # auto-resolves successes, "stopped flapping" the flapping_* keys
    keys = "flapping" if t.kind is Kind.FLAP_END else kind
    emoji = _EMOJI.get(t.kind) or ("🔴" if inc.active else "✅")
    duration = t.duration if t.kind is Kind.CLEAR else t.event.time - inc.start_time
    since = t.since_alert if t.kind in (Kind.REALERT, Kind.ANNOUNCE) else (1 if t.kind is Kind.NEW else 0)
    first = clean_text(inc.message)  # once: an open incident's may be read from the journal
    return {
        "kind": keys,
        "tz": style.timezone,
        "type": kind,
        "code": _title_code(inc.code),
        "app": clean_text(inc.app, 200, single_line=True) if inc.app else None,
        "level": clean_text(t.event.level, 50, single_line=True) if t.event.level else None,
        "exception": clean_text(t.event.exception, MAX_EXCEPTION, single_line=True) if t.event.exception else None,
        "description": notes.description,
        "runbook": notes.runbook,
        "labels": dict(notes.labels),
        "server_id": server_id,
        "node_name": node_name,
        "host": _where(server_id, node_name),
        "incident_id": inc.incident_id,
        "emoji": emoji,
        "occurrences": inc.occurrences,
        "since_alert": since,
        "alerts_sent": inc.alerts_sent,
        "duration": format_duration(max(0.0, duration)),
        "start_time": inc.start_time,
        "last_log_time": inc.last_log_time,
        "cleared_at": inc.cleared_at,
        "message": first,
        "first_message": first,
        "latest_message": clean_text(t.event.message),
        "held": [],
        # for webhooks: the record as ``history --json`` prints it (UTC), when the notice was made
        "record": incident_json(inc),
    }


def _notes_lines(notes: CodeNotes) -> list[str]:
    lines = []
    if notes.description:
        lines.append(f"description: {notes.description}")
    if notes.runbook:
        lines.append(f"runbook: {notes.runbook}")
    if notes.labels:
        lines.append("labels: " + ", ".join(f"{k}={v}" for k, v in sorted(notes.labels.items())))
    return lines


def _text(t: Transition, server_id: str, node_name: str, style: NoticeStyle = DEFAULT_STYLE) -> tuple[str, str]:
    inc = t.incident
    assert inc is not None
    code = _title_code(inc.code)
    where = _where(server_id, node_name)
    first = clean_text(inc.message)
    tz = style.timezone

    def format_time(ts: float) -> str:  # in the display zone (CONTRACT §11)
        return _format_time(ts, tz)

    lines: list[str]
    if t.kind is Kind.NEW:
        title = f"{_EMOJI[t.kind]} {code} failing on {where}"
        lines = [first or "(no message)", *exception_lines(t.event), f"since {format_time(inc.start_time)}"]
    elif t.kind is Kind.ANNOUNCE:
        # Open for a while, every notice so far silent (notify was off, or the lines said
        # `notification: false`): say it is not new, and since when.
        title = f"{_EMOJI[t.kind]} {code} failing on {where}"
        lines = [
            f"Failing since {format_time(inc.start_time)} "
            f"({format_duration(t.event.time - inc.start_time)}), "
            f"{_count(inc.occurrences, 'occurrence')} so far, not announced before.",
            f"Latest: {clean_text(t.event.message) or '(no message)'}",
            *exception_lines(t.event),
            f"First: {first or '(no message)'}",
        ]
    elif t.kind is Kind.REALERT:
        title = f"{_EMOJI[t.kind]} {code} still failing on {where}"
        lines = [
            f"Still failing since {format_time(inc.start_time)} "
            f"({format_duration(t.event.time - inc.start_time)}), "
            f"{_count(t.since_alert, 'occurrence')} since the last alert, {inc.occurrences} in all.",
            f"Latest: {clean_text(t.event.message) or '(no message)'}",
            *exception_lines(t.event),
            f"First: {first or '(no message)'}",
        ]
    elif t.kind is Kind.FLAPPING:
        title = f"{_EMOJI[t.kind]} {code} flapping on {where}"
        lines = [
            f"{t.detail}: its notices are muted until it has neither opened nor resolved for that long.",
            f"Latest: {first or '(no message)'}",
        ]
    elif t.kind is Kind.FLAP_END:
        state = "still failing" if inc.active else "resolved"
        title = f"{'🔴' if inc.active else '✅'} {code} stopped flapping on {where}: {state}"
        lines = [
            f"Stopped flapping ({t.detail}); {state}: "
            + (
                f"open since {format_time(inc.start_time)}, {_count(inc.occurrences, 'occurrence')}."
                if inc.active
                else f"the latest incident ended at {format_time(inc.cleared_at or inc.start_time)}."
            ),
            f"Message: {first or '(no message)'}",
        ]
    elif t.kind is Kind.REMIND:
        title = f"{_EMOJI[t.kind]} {code} still open on {where}"
        lines = [
            f"Still open since {format_time(inc.start_time)} "
            f"({format_duration(t.event.time - inc.start_time)}), "
            f"no occurrence for {format_duration(t.event.time - inc.last_log_time)} "
            f"(the latest at {format_time(inc.last_log_time)}), {_count(inc.occurrences, 'occurrence')} in all.",
            f"First: {first or '(no message)'}",
        ]
    elif inc.resolved_by == "auto":
        title = f"{_EMOJI[t.kind]} {code} auto-resolved on {where}"
        lines = [
            f"Auto-resolved: no occurrence for {format_duration(t.duration - (inc.last_log_time - inc.start_time))} "
            f"after the latest at {format_time(inc.last_log_time)}; open {format_duration(t.duration)} "
            f"({format_time(inc.start_time)} to {format_time(inc.cleared_at or t.event.time)}), "
            f"{_count(inc.occurrences, 'occurrence')}.",
            f"Original message: {first or '(no message)'}",
        ]
    else:
        title = f"{_EMOJI[t.kind]} {code} resolved on {where}"
        lines = [
            f"Resolved after {format_duration(t.duration)} "
            f"({format_time(inc.start_time)} to {format_time(inc.cleared_at or t.event.time)}), "
            f"{_count(inc.occurrences, 'occurrence')}.",
            f"Original message: {first or '(no message)'}",
        ]
        if t.event.message:
            lines.append(f"Clear message: {clean_text(t.event.message)}")
    lines += _notes_lines(style.notes_for(inc.code))
    if inc.app:
        lines.append(f"app: {clean_text(inc.app, 200, single_line=True)}")
    lines.append(f"server: {where}")
    return title, "\n".join(lines)
