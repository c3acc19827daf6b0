"""Pure formatting for the CLI: JSON-ready records, notice lines and aligned text tables."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from errord.durations import format_duration
from errord.model import INCIDENT_FIELDS, TIME_FIELDS, Incident, Notice

__all__ = [
    "ago",
    "human_bytes",
    "incident_json",
    "incidents_table",
    "iso",
    "notice_json",
    "notice_line",
    "stamp",
    "table",
]


def iso(ts: float | None) -> str | None:
    """ISO-8601 UTC with milliseconds and ``Z``: ``2026-01-14T15:05:51.367Z``."""
    if ts is None:
        return None
    text = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def incident_json(inc: Incident) -> dict[str, Any]:
    """The CONTRACT §6 record with times as ISO-8601 UTC strings."""
    out: dict[str, Any] = {}
    for name in INCIDENT_FIELDS:
        value = getattr(inc, name)
        out[name] = iso(value) if name in TIME_FIELDS else value
    return out


def notice_json(notice: Notice) -> dict[str, Any]:
    """A notice as ``errord replay --json`` prints it (one JSON object a line)."""
    out: dict[str, Any] = {
        "type": notice.type.value,
        "code": notice.code,
        "title": notice.title,
        "time": iso(notice.event_time),
        "incident_id": notice.incident_id,
        "body": notice.body,
    }
    if notice.held:  # a digest (CONTRACT §9): what it stands for, as data
        out["digest"] = True
        out["held"] = [
            {"code": e.code, "type": e.type, "count": e.count, "latest_message": e.latest_message} for e in notice.held
        ]
    return out


def notice_line(notice: Notice) -> str:
    """A notice as ``errord replay`` prints it: its event time, type and title."""
    return f"{iso(notice.event_time)}  {notice.type.value:<7}  {notice.title}"


def ago(ts: float | None, now: float) -> str:
    """``"3h 12m ago"`` (or ``"-"``)."""
    if ts is None:
        return "-"
    delta = now - ts
    if delta < 0:
        return "in " + format_duration(-delta)
    return format_duration(delta) + " ago"


CutAt = Literal["end", "start"]  # where a shortened cell loses its text (an ellipsis marks it)
MIN_CELLS = 16  # a shortened column keeps this many cells before other columns are left out


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    right: Sequence[int] = (),
    *,
    width: int | None = None,
    shrink: Mapping[int, CutAt] | None = None,
    drop: Sequence[int] = (),
) -> str:
    """Left-aligned columns separated by two spaces; numbers (and ``right`` columns) right-aligned.

    ``width`` (a terminal's columns): every line fits it, a row never wraps. The columns
    in ``shrink`` (index -> which end loses its text to an ellipsis) are shortened, widest
    first; the columns in ``drop`` are left out, in that order, while the others would
    not fit with the shortened ones at ``MIN_CELLS``; below that only a very narrow
    terminal shortens them further, and a line still too long is cut at ``width``. Widths
    are counted in terminal cells (a CJK character takes two).
    """
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [_cells(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], _cells(c))
    numeric = [i in right or (all(_is_number(r[i]) for r in rows) and bool(rows)) for i in range(len(headers))]
    shown = list(range(len(headers)))
    if width is not None:
        shown, widths = _fit(headers, widths, width, shrink or {}, drop)
    ends = shrink or {}

    def line(values: Sequence[str]) -> str:
        parts = []
        for i in shown:
            v = _cut(values[i], widths[i], ends.get(i, "end"))
            pad = " " * (widths[i] - _cells(v))
            parts.append(pad + v if numeric[i] else v + pad)
        text = "  ".join(parts).rstrip()
        return text if width is None else _cut(text, width, "end")

    return "\n".join([line(list(headers)), *(line(r) for r in cells)])


def _fit(
    headers: Sequence[str], natural: list[int], width: int, shrink: Mapping[int, CutAt], drop: Sequence[int]
) -> tuple[list[int], list[int]]:
    """Which columns to show and how wide, for ``table(width=...)``."""

    def floors(least: int) -> list[int]:
        return [
            min(w, max(_cells(h), least)) if i in shrink else w
            for i, (h, w) in enumerate(zip(headers, natural, strict=True))
        ]

    shown = list(range(len(headers)))

    def total(ws: Sequence[int]) -> int:
        return sum(ws[i] for i in shown) + 2 * (len(shown) - 1)

    at_min = floors(MIN_CELLS)
    for i in drop:  # leave out what cannot fit even with every shortened column at its floor
        if total(at_min) <= width:
            break
        if i in shown:
            shown.remove(i)
    widths = list(natural)
    for floor in (at_min, floors(4)):  # only a very narrow terminal goes below MIN_CELLS
        over = total(widths) - width
        while over > 0:  # shorten the widest shortenable column, down to the next widest
            candidates = sorted(
                (i for i in shown if i in shrink and widths[i] > floor[i]), key=lambda i: widths[i], reverse=True
            )
            if not candidates:
                break
            widest = candidates[0]
            target = max(widths[candidates[1]] if len(candidates) > 1 else 0, floor[widest])
            step = max(1, min(over, widths[widest] - target))
            widths[widest] -= step
            over -= step
    return shown, widths


def _cells(text: str) -> int:
    """Terminal cells ``text`` takes: wide (CJK) characters two, combining marks none."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _cut(text: str, cells: int, end: CutAt) -> str:
    """``text`` in at most ``cells`` cells, an ellipsis marking what was cut at ``end``."""
    if _cells(text) <= cells:
        return text
    if cells <= 0:
        return ""
    kept: list[str] = []
    budget = cells - 1  # the ellipsis takes one
    for ch in text if end == "end" else reversed(text):
        budget -= _cells(ch)
        if budget < 0:
            break
        kept.append(ch)
    return "".join(kept) + "…" if end == "end" else "…" + "".join(reversed(kept))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def stamp(ts: float | None) -> str:
    """``2026-01-14T15:05:51Z`` (or ``"-"``): absolute time for output that is not a terminal."""
    return "-" if ts is None else (iso(ts) or "-")[:19] + "Z"


def human_bytes(n: int) -> str:
    """``"512 B"``, ``"40.0 KiB"``, ``"1.5 GiB"``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def incidents_table(
    incidents: Sequence[Incident], now: float, *, relative: bool = True, width: int | None = None
) -> str:
    """Aligned incident table. ``relative``: "3h 12m ago" (a terminal), else absolute UTC
    times; ``width``: fit that many columns (codes, apps and messages shortened, then the
    least needed columns left out), else messages of at most 60 characters."""
    when = (lambda ts: ago(ts, now)) if relative else stamp
    headers = ["CODE", "APP", "STATE", "STARTED", "LAST SEEN", "DURATION", "COUNT", "ALERTS", "MESSAGE"]
    rows: list[list[object]] = []
    for inc in incidents:
        state = "active" if inc.active else f"cleared {when(inc.cleared_at)}"
        lasted = format_duration((inc.cleared_at if inc.cleared_at is not None else now) - inc.start_time)
        message = " ".join(inc.message.split())
        rows.append(
            [
                inc.code,
                inc.app or "-",
                state,
                when(inc.start_time),
                when(inc.last_log_time),
                lasted,
                inc.occurrences,
                inc.alerts_sent,
                message if width is not None else _cut(message, 60, "end"),
            ]
        )
    # left out first: LAST SEEN, then the counts; CODE, STATE and MESSAGE always stay (what, and why)
    return table(headers, rows, width=width, shrink={0: "end", 1: "end", 8: "end"}, drop=(4, 7, 6, 5, 1, 3))
