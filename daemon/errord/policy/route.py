"""Who gets each notice: the routing step between the engine and the journal. Pure.

The engine decides *what happened* to an incident; ``Router.route`` decides which notify
targets hear of it, renders the notices (``notices.render``) and gives each its target
keys (``Notice.targets``); the journal then inserts one delivery per key.

- A *failure* or *warning* goes by tags (Apprise's tag filter): a code without tags goes
  to every target; a code with tags to the targets sharing at least one of them (tags are
  OR-ed, an untagged target gets only untagged codes). With no target configured, every
  notice goes to the pseudo-target ``"stderr"``: with nothing configured nothing may go
  unseen. The keys are added to the incident's ``notified``.
- A *success* goes to exactly the incident's ``notified`` that are configured now
  (CONTRACT §2, "a resolve goes to those who were alerted"), whatever tags or targets
  changed since; an incident that notified nobody resolves silently. When the targets
  change (start, reload), ``forget_removed`` drops the removed ones from the open
  incidents' ``notified``.
- One line never gives one target two notices: a line that clears one incident and
  raises another gives a target in both sets the merged notice (the error's, with the
  resolution appended), a target in one set only that one's notice.

``notified`` is set on the engine's live incident during the batch: the engine has taken
its undo copy already (it made the transition), so a batch that cannot be committed rolls
``notified`` back with the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

from errord.model import Incident, Kind, Notice, Transition
from errord.notices import DEFAULT_STYLE, NoticeStyle, render
from errord.policy.base import Context, Flow
from errord.ratelimit import RateLimit

__all__ = ["STDERR_TARGET", "UNKNOWN_ALERTED", "Router"]

logger = logging.getLogger(__name__)

STDERR_TARGET = "stderr"  # the pseudo-target when no [[notify]] is configured
# In ``Incident.notified``: alerted, but by whom is not known (an incident recovered from
# MongoDB, or alerted by an errord from before ``notified`` was kept, whose deliveries were
# pruned). Its resolve goes by tags, as every notice did then.
UNKNOWN_ALERTED = "*"

_SENDS = (Kind.NEW, Kind.REALERT, Kind.ANNOUNCE, Kind.REMIND, Kind.FLAPPING, Kind.FLAP_END, Kind.CLEAR)


class Router:
    """The routes table ``(target key, tags)`` and the routing of each line's notices:
    the ``route`` stage of the notice policy (``policy.pipeline``)."""

    name = "route"

    def __init__(self, routes: Sequence[tuple[str, Sequence[str]]] = ()) -> None:
        self._keys: tuple[str, ...] = ()
        self._tags: list[tuple[str, frozenset[str] | None]] = []
        self._by_tags: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._warned = RateLimit(None)  # each warning once, until the next set_routes
        self._style = DEFAULT_STYLE
        self.set_routes(routes)

    def set_routes(self, routes: Sequence[tuple[str, Sequence[str]]]) -> None:
        """Route later notices to these targets (empty: the ``"stderr"`` pseudo-target,
        which takes every notice, tagged or not). Warnings may be logged once again."""
        table: list[tuple[str, frozenset[str] | None]] = [(key, frozenset(tags)) for key, tags in routes]
        self._tags = table or [(STDERR_TARGET, None)]
        self._keys = tuple(key for key, _ in self._tags)
        self._by_tags.clear()
        self._warned = RateLimit(None)

    @property
    def keys(self) -> tuple[str, ...]:
        """The target keys configured now, in config order."""
        return self._keys

    def by_tags(self, tags: Sequence[str]) -> tuple[str, ...]:
        """The targets a failure or warning of a code with these tags goes to."""
        key = tuple(tags)
        hit = self._by_tags.get(key)
        if hit is None:
            if not key:
                hit = self._keys
            else:
                wanted = set(key)
                hit = tuple(k for k, t in self._tags if t is None or t & wanted)
            self._by_tags[key] = hit
        return hit

    def apply(self, flow: Flow, ctx: Context) -> Flow:
        """The ``route`` stage: the notices of ``flow``'s transitions, with their targets."""
        flow.notices += self.route(
            flow.transitions,
            server_id=ctx.server_id,
            node_name=ctx.node_name,
            tags_for=ctx.tags_for,
            style=ctx.style,
        )
        return flow

    def route(
        self,
        transitions: Sequence[Transition],
        *,
        server_id: str,
        node_name: str,
        tags_for: Callable[[str], Sequence[str]] = lambda code: (),
        style: NoticeStyle = DEFAULT_STYLE,
    ) -> list[Notice]:
        """The notices of one line, each with its ``targets``; records on each alerting
        incident the targets it alerted. A failure/warning no target takes is still
        returned (recorded, not sent: warned about once per tags); a resolve nobody is
        to get is not made. ``style``: how they read (display zone, per-code notes)."""
        self._style = style  # for _made, this call only
        wanted = [t for t in transitions if t.notify and t.incident is not None and t.kind in _SENDS]
        if not wanted:
            return []
        targets = [self._targets(t, tags_for) for t in wanted]
        if len(wanted) == 1:  # almost every line
            return self._made(wanted, targets[0], server_id, node_name, tags_for)
        # Several on one line (a clear and an error): one notice per distinct set of
        # transitions a target wants, so no target gets two notices for one line.
        groups: dict[tuple[int, ...], list[str]] = {}
        for key in self._keys:
            which = tuple(i for i, keys in enumerate(targets) if key in keys)
            if which:
                groups.setdefault(which, []).append(key)
        out: list[Notice] = []
        for which, keys in groups.items():
            out += self._made([wanted[i] for i in which], tuple(keys), server_id, node_name, tags_for)
        for t, its in zip(wanted, targets, strict=True):  # an error no target takes: recorded as one alone
            if not its and t.kind is not Kind.CLEAR:
                out += self._made([t], (), server_id, node_name, tags_for)
        return out

    def _made(
        self,
        transitions: list[Transition],
        targets: tuple[str, ...],
        server_id: str,
        node_name: str,
        tags_for: Callable[[str], Sequence[str]],
    ) -> list[Notice]:
        if not targets and all(t.kind is Kind.CLEAR for t in transitions):
            return []  # a resolve for nobody: the incident is recorded, nothing is sent
        notice = render(transitions, server_id=server_id, node_name=node_name, tags_for=tags_for, style=self._style)
        if notice is None:
            return []
        notice.targets = targets
        return [notice]

    def _targets(self, t: Transition, tags_for: Callable[[str], Sequence[str]]) -> tuple[str, ...]:
        """Who gets ``t``'s notice; for an alert, also remembered on the incident."""
        inc = t.incident
        assert inc is not None
        if t.kind is Kind.CLEAR:
            return self._alerted(inc.code, inc.notified, tags_for)
        tags = tuple(tags_for(inc.code))
        keys = self.by_tags(tags)
        if not keys:
            self._warn_unrouted(tags)
            return keys
        had = inc.notified
        if not had:
            inc.notified = keys  # the routes' own tuple (by_tags keeps it): one for all its incidents
            return keys
        new = tuple(k for k in keys if k not in had)
        if new:
            inc.notified = had + new
        return keys

    def _alerted(
        self, code: str, notified: tuple[str, ...], tags_for: Callable[[str], Sequence[str]]
    ) -> tuple[str, ...]:
        """The targets configured now among those that were alerted (config order)."""
        alerted = set(notified)
        if UNKNOWN_ALERTED in alerted:
            alerted.discard(UNKNOWN_ALERTED)
            alerted.update(self.by_tags(tuple(tags_for(code))))
        keys = tuple(k for k in self._keys if k in alerted)
        if len(keys) < len(alerted):
            for gone in sorted(alerted.difference(keys)):
                self._warn_removed(gone, code)
        return keys

    def names_removed(self, notified: tuple[str, ...]) -> bool:
        """Whether ``notified`` (an incident's alerted targets) names a target not configured
        now: the incidents ``forget_removed`` changes."""
        keys = self._keys
        return any(k not in keys and k != UNKNOWN_ALERTED for k in notified)

    def forget_removed(self, incidents: Iterable[Incident], names: Mapping[str, str]) -> list[Incident]:
        """Drop from each open incident's ``notified`` the targets not configured now (a
        reload or a restart removed them), so its resolve goes to the others only and
        never to a removed one; log once per removed target, by ``names[key]`` (its
        redacted URL, when known), which incidents. Returns the incidents changed."""
        keep = {*self._keys, UNKNOWN_ALERTED}
        changed: list[Incident] = []
        codes: dict[str, list[str]] = {}
        for inc in incidents:
            if not self.names_removed(inc.notified):
                continue
            for k in inc.notified:
                if k not in keep:
                    codes.setdefault(k, []).append(inc.code)
            inc.notified = tuple(k for k in inc.notified if k in keep)
            changed.append(inc)
        for key, its in codes.items():
            shown = ", ".join(sorted(its)[:5]) + (", …" if len(its) > 5 else "")
            logger.warning(
                "notify target %s is no longer configured: the %d open incident(s) it was alerted of (%s)"
                " resolve to the targets still configured only",
                names.get(key, key),
                len(its),
                shown,
            )
        return changed

    def _warn_unrouted(self, tags: tuple[str, ...]) -> None:
        if self._warned.allow(("unrouted", tags)):
            logger.warning(
                "notices tagged %s match no notify target: they are recorded but not sent",
                ",".join(tags),
            )

    def _warn_removed(self, key: str, code: str) -> None:
        if self._warned.allow(("removed", key)):
            logger.warning(
                "notify target %s was alerted of %s but is no longer configured: it does not get"
                " the resolve (further such resolves are dropped without a word until the next reload)",
                key,
                code,
            )
