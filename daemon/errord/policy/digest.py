"""The text of a digest and of a ``group_wait`` group (CONTRACT §9), from the notices they
stand for. Pure: the notify worker calls it when it sends, ``replay`` when it simulates.

A digest carries its content as data too (``Notice.held``: a ``HeldEntry`` per code and
type, most recent code first), so a template or a webhook renders the same facts.
"""

from __future__ import annotations

from collections.abc import Sequence

from errord.model import HeldEntry, Notice, NoticeType
from errord.notices import clean_text

__all__ = ["DIGEST_CODES", "GROUP_LISTED", "REST_NAMES_CHARS", "digest", "group", "held_entries", "host_of"]

DIGEST_CODES = 30  # codes listed in a digest's body; the rest are "… and K more: names"
REST_NAMES_CHARS = 2000  # of those names: as many as fit (a chat message holds ~4,000)
GROUP_LISTED = 30  # notices listed in a group's body, likewise
_TYPE_WORD = {NoticeType.FAILURE: "new", NoticeType.WARNING: "re-alert", NoticeType.SUCCESS: "resolved"}
_ORDER = ("new", "re-alert", "resolved", "other")


def host_of(server_id: str, node_name: str) -> str:
    """``server_id/node_name`` (``server_id`` alone when ``node_name`` is empty), as titles say."""
    return f"{server_id}/{node_name}" if node_name else server_id


def _type_of(notes: Sequence[Notice]) -> NoticeType:
    """failure if any is a failure, else warning if any is, else success (CONTRACT §9)."""
    kinds = {n.type for n in notes}
    for t in (NoticeType.FAILURE, NoticeType.WARNING):
        if t in kinds:
            return t
    return NoticeType.SUCCESS


def _first_line(body: str) -> str:
    """The message a notice's body carries: its ``Latest:`` line (a re-alert, a late
    announce), else its first line (a new incident's message, a resolve's summary)."""
    lines = body.split("\n")
    for line in lines:
        if line.startswith("Latest: "):
            return clean_text(line[len("Latest: ") :], 300, single_line=True)
    return clean_text(lines[0], 300, single_line=True)


def held_entries(notes: Sequence[Notice]) -> tuple[HeldEntry, ...]:
    """Per code and type, the count and latest message; codes most recent first (by their
    latest notice), the types of one code in the order new, re-alert, resolved, other."""
    last_at: dict[str, int] = {}
    counts: dict[tuple[str, str], int] = {}
    latest: dict[tuple[str, str], str] = {}
    for i, n in enumerate(notes):
        key = (n.code, _TYPE_WORD.get(n.type, "other"))
        counts[key] = counts.get(key, 0) + 1
        latest[key] = n.body
        last_at[n.code] = i
    out: list[HeldEntry] = []
    for code in sorted(last_at, key=lambda c: -last_at[c]):
        for word in _ORDER:
            if (code, word) in counts:
                out.append(HeldEntry(code, word, counts[code, word], _first_line(latest[code, word])))
    return tuple(out)


def _count(n: int) -> str:
    return f"{n} notice held" if n == 1 else f"{n} notices held"


def digest(notes: Sequence[Notice], host: str) -> Notice:
    """One digest for the held ``notes`` (oldest first, not empty): title ``📦 N notices
    held on HOST``; body per code its counts by type and its latest message, at most
    ``DIGEST_CODES`` codes, most recent first, then "… and K more: " and their names (as
    many as ``REST_NAMES_CHARS`` hold), so a storm's digest still names every code it can."""
    held = held_entries(notes)
    lines: list[str] = []
    codes: list[str] = []
    by_code: dict[str, list[HeldEntry]] = {}
    for e in held:
        if e.code not in by_code:
            codes.append(e.code)
            by_code[e.code] = []
        by_code[e.code].append(e)
    for code in codes[:DIGEST_CODES]:
        entries = by_code[code]
        counts = ", ".join(f"{e.count} {e.type}" for e in entries)
        latest = entries[-1].latest_message if len(entries) == 1 else _latest(notes, code)
        lines.append(f"{clean_text(code, 200, single_line=True)}: {counts} — {latest or '(no message)'}")
    if len(codes) > DIGEST_CODES:
        rest = [clean_text(c, 200, single_line=True) for c in codes[DIGEST_CODES:]]
        names = ""
        for i, name in enumerate(rest):  # name them too, as far as a message can hold
            if len(names) + len(name) > REST_NAMES_CHARS:
                names += f", … (+{len(rest) - i})"
                break
            names += (", " if names else "") + name
        lines.append(f"… and {len(rest)} more: {names}")
    lines.append(f"server: {host}")
    return Notice(
        type=_type_of(notes),
        code="",
        title=f"📦 {_count(len(notes))} on {host}",
        body="\n".join(lines),
        incident_id="",
        event_time=max(n.event_time for n in notes),
        held=held,
    )


def _latest(notes: Sequence[Notice], code: str) -> str:
    for n in reversed(notes):
        if n.code == code:
            return _first_line(n.body)
    return ""


def group(notes: Sequence[Notice], host: str) -> Notice:
    """One message for the ``notes`` made within ``group_wait`` of the first (oldest first,
    at least two): title ``🔔 N notices on HOST: code, code, …``; body each notice's title
    and body, at most ``GROUP_LISTED``, then "… and K more"."""
    codes: list[str] = []
    for n in notes:
        if n.code not in codes:
            codes.append(n.code)
    shown = ", ".join(codes[:5]) + (f", … (+{len(codes) - 5})" if len(codes) > 5 else "")
    parts = [f"{n.title}\n{n.body}" for n in notes[:GROUP_LISTED]]
    if len(notes) > GROUP_LISTED:
        parts.append(f"… and {len(notes) - GROUP_LISTED} more")
    return Notice(
        type=_type_of(notes),
        code=notes[0].code if len(codes) == 1 else "",
        title=f"🔔 {len(notes)} notices on {host}: {shown}",
        body="\n\n".join(parts),
        incident_id=notes[0].incident_id if len(notes) == 1 else "",
        event_time=max(n.event_time for n in notes),
    )
