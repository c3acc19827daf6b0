"""Pure formatting for the CLI: JSON-ready records and aligned text tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from errord.durations import format_duration
from errord.model import INCIDENT_FIELDS, TIME_FIELDS, Incident

__all__ = ["iso", "incident_json", "incidents_table", "table", "ago", "stamp", "human_bytes"]


def iso(ts: float | None) -> str | None:
    """ISO-8601 UTC with milliseconds and ``Z``: ``2026-01-14T15:05:51.367Z``."""
    if ts is None:
        return None
    text = datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def incident_json(inc: Incident) -> dict[str, Any]:
    """The CONTRACT §6 record with times as ISO-8601 UTC strings."""
    out: dict[str, Any] = {}
    for name in INCIDENT_FIELDS:
        value = getattr(inc, name)
        out[name] = iso(value) if name in TIME_FIELDS else value
    return out


def ago(ts: float | None, now: float) -> str:
    """``"3h 12m ago"`` (or ``"-"``)."""
    if ts is None:
        return "-"
    delta = now - ts
    if delta < 0:
        return "in " + format_duration(-delta)
    return format_duration(delta) + " ago"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()) -> str:
    """Left-aligned columns separated by two spaces; numbers (and ``right`` columns) right-aligned."""
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    numeric = [i in right or (all(_is_number(r[i]) for r in rows) and bool(rows)) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(headers)), *(line(r) for r in cells)])


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
    times; ``width``: shorten MESSAGE to fit that many columns (else at most 60 characters)."""
    when = (lambda ts: ago(ts, now)) if relative else stamp
    headers = ["CODE", "APP", "STATE", "STARTED", "LAST SEEN", "DURATION", "COUNT", "ALERTS", "MESSAGE"]
    rows: list[list[object]] = []
    for inc in incidents:
        state = "active" if inc.active else f"cleared {when(inc.cleared_at)}"
        lasted = format_duration((inc.cleared_at if inc.cleared_at is not None else now) - inc.start_time)
        rows.append([inc.code, inc.app or "-", state, when(inc.start_time), when(inc.last_log_time), lasted,
                     inc.occurrences, inc.alerts_sent])
    limit = 60
    if width is not None:
        fixed = sum(max([len(h), *(len(str(r[i])) for r in rows)]) + 2 for i, h in enumerate(headers[:-1]))
        limit = max(20, width - fixed)
    for row, inc in zip(rows, incidents):
        row.append(_short(inc.message, limit))
    return table(headers, rows)


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
