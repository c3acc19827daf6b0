"""Silences and acknowledgements (CONTRACT §8): the data, and which notices one covers. Pure.

A silence mutes the failures and warnings of every code matching its ``pattern`` (a code
or a shell glob) from an app matching its ``app`` glob, from ``starts_at`` until
``ends_at``, or — ``until_resolved`` — of the incidents open and matching when it was
made (``incident_ids``) until the last of them resolves (an ``errord ack`` is that, for
one code). ``ended_at`` is set when it ended early (``errord unsilence``) or when its
last incident resolved. Silences are judged by the daemon's clock when the notice is
made: ``now`` comes in as data, never from a clock here.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KEEP_ENDED", "MAX_PATTERN", "Silence", "check_pattern", "globs_matcher"]

MAX_PATTERN = 200  # characters of a pattern (a code is at most 200 too)
KEEP_ENDED = 7 * 86400.0  # seconds an ended silence stays listed (`silences --all`), then pruned

_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


def _everything(text: str) -> bool:
    return True


@functools.lru_cache(maxsize=1024)
def _compiled(globs: tuple[str, ...]) -> Callable[[str], bool]:
    if "*" in globs:
        return _everything
    regex = re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs))
    return lambda text: regex.match(text) is not None


def globs_matcher(globs: Sequence[str]) -> Callable[[str], bool]:
    """``text -> bool``: whether ``text`` matches any of these shell globs (case-sensitive,
    as ``fnmatchcase``), compiled once (a muted flood asks on every line)."""
    return _compiled(tuple(globs))


def check_pattern(text: str) -> str:
    """``text`` when it is a usable code pattern (a code or a glob); ValueError saying why not."""
    if not text:
        raise ValueError("must not be empty")
    if len(text) > MAX_PATTERN:
        raise ValueError(f"is {len(text)} characters long, at most {MAX_PATTERN} allowed")
    bad = _BAD_CHARS.search(text)
    if bad:
        raise ValueError(f"holds whitespace or a control character ({bad.group()!r})")
    return text


@dataclass(frozen=True, slots=True)
class Silence:
    """One silence or acknowledgement, as stored in the journal's ``silences`` table."""

    id: str
    pattern: str
    app: str  # a glob; "*" = any app (an incident without an app is matched as "")
    starts_at: float
    ends_at: float | None  # None: until resolved
    until_resolved: bool
    reason: str = ""
    by: str = ""
    created_at: float = 0.0
    ended_at: float | None = None  # ended early (unsilence) or its last incident resolved
    incident_ids: frozenset[str] = field(default_factory=frozenset)  # until_resolved: what it covers
    muted: int = 0  # notices it has muted so far
    ack: bool = False  # made by `errord ack`

    def in_force(self, now: float) -> bool:
        """True while it may mute (its incidents still have to be open, for until_resolved)."""
        if self.ended_at is not None or now < self.starts_at:
            return False
        return self.ends_at is None or now < self.ends_at

    def active(self, now: float, open_ids: Collection[str]) -> bool:
        """In force, and for until_resolved one of its incidents still open."""
        if not self.in_force(now):
            return False
        return not self.until_resolved or any(i in open_ids for i in self.incident_ids)

    def covers(self, code: str, app: str | None, incident_id: str) -> bool:
        """Whether a notice of this incident is one it mutes (its time aside)."""
        if self.until_resolved:
            return incident_id in self.incident_ids
        return _compiled((self.pattern,))(code) and _compiled((self.app,))(app or "")

    def ended(self, now: float) -> float | None:
        """When it ended (early, by its end time or with its last incident), or None."""
        if self.ended_at is not None:
            return self.ended_at
        if self.ends_at is not None and now >= self.ends_at:
            return self.ends_at
        return None

    def to_json(self, now: float, open_ids: Collection[str], iso: Any) -> dict[str, Any]:
        """The ``silences --json`` object (``kind = "silence"``); ``iso`` formats times."""
        return {
            "kind": "silence",
            "id": self.id,
            "pattern": self.pattern,
            "app": self.app,
            "starts_at": iso(self.starts_at),
            "ends_at": iso(self.ends_at),
            "until_resolved": self.until_resolved,
            "ack": self.ack,
            "incident_ids": sorted(self.incident_ids),
            "reason": self.reason,
            "by": self.by,
            "created_at": iso(self.created_at),
            "ended_at": iso(self.ended(now)) if not self.active(now, open_ids) else None,
            "active": self.active(now, open_ids),
            "muted": self.muted,
        }
