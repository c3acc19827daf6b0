"""Turn the transitions of one log line into at most one notice (CONTRACT §5). Pure.

Text that came from logs is untrusted: control characters are stripped and its length is
capped before it goes out. Nothing here formats untrusted text with ``str.format`` — only
f-strings over values we chose, so a message like ``{0.__class__}`` is printed as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from errord.durations import format_duration
from errord.model import MAX_CODE_CHARS, Kind, LogEvent, Notice, NoticeType, Transition

__all__ = ["MAX_CODE", "MAX_MESSAGE", "clean_text", "exception_lines", "format_time", "render"]

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


def format_time(ts: float) -> str:
    """``2026-01-14 15:05:51 UTC`` — for notice bodies."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def exception_lines(ev: LogEvent) -> list[str]:
    """``["Exception: ValueError: bad"]`` for a line that carried an exception, else []:
    on-call reads the exception's type and message first (CONTRACT §1)."""
    if not ev.exception:
        return []
    return [f"Exception: {clean_text(ev.exception, MAX_EXCEPTION, single_line=True)}"]


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
    title, body = _text(main, server_id, node_name)
    for other in wanted:
        if other is main:
            continue
        o_title, o_body = _text(other, server_id, node_name)
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
    )


def _text(t: Transition, server_id: str, node_name: str) -> tuple[str, str]:
    inc = t.incident
    assert inc is not None
    code = _title_code(inc.code)
    where = _where(server_id, node_name)
    first = clean_text(inc.message)
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
    if inc.app:
        lines.append(f"app: {clean_text(inc.app, 200, single_line=True)}")
    lines.append(f"server: {where}")
    return title, "\n".join(lines)
