"""People in control (CONTRACT §8): silence, unsilence, ack and resolve, applied to the engine.

One code path for both cases the contract names: a :class:`Controller` over an engine, the
notice policy and the journal applies a command — the running daemon's (its loop drains
the journal's ``commands`` table with :meth:`Controller.tick`, so the daemon stays the one
writer of incident state), or the CLI's own when no daemon runs (:func:`apply_offline`,
under the state_dir lock; a notice it makes waits in the outbox for the next start).
Each command is one journal transaction: the incidents it changed, the notices it made,
the silence it stored or ended, and its outcome row.

Commands (``kind``, ``args``) -> ``(status, outcome)``; status 0 done, 1 refused (no such
incident open, an unknown silence id), with ``outcome["error"]`` saying why:

- ``silence``: ``pattern``, ``app`` (globs), ``ends_at`` (None with
  ``until_resolved``: the incidents open and matching now), ``reason``, ``by``.
- ``unsilence``: ``ids``; every known one ends now, unknown ones are named.
- ``ack``: ``code``, ``app`` (a glob or None), ``reason``, ``by``: an until-resolved
  silence of the open incident(s) of the code.
- ``resolve``: ``code``, ``app``, ``reason``: each such open incident closed now
  (``resolved_by = "manual"``), its resolve to those who were alerted.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from errord.config import RunConfig
from errord.engine import Engine, incident_key
from errord.errors import ErrordError, JournalError
from errord.model import Incident, Notice
from errord.policy.base import Context
from errord.policy.mute import MuteOracle
from errord.policy.pipeline import NoticePolicy, standard_policy
from errord.policy.route import Router
from errord.policy.silence import Silence
from errord.store.journal import Journal
from errord.store.runstate import RunLock
from errord.views import iso

if TYPE_CHECKING:
    from errord.fleet.silences import FleetSilences

__all__ = ["KINDS", "POLL_EVERY", "Controller", "apply_offline", "shown_id", "silence_json"]

logger = logging.getLogger(__name__)

KINDS = ("silence", "unsilence", "ack", "resolve")
POLL_EVERY = 0.5  # seconds between looks at the commands table (the loop turns at least once a second)

Outcome = tuple[int, dict[str, Any]]


def silence_json(s: Silence, now: float, open_ids: set[str]) -> dict[str, Any]:
    """A silence as ``silences --json`` (and ``silence --json``) print it."""
    return s.to_json(now, open_ids, iso)


def _matches(inc: Incident, code_glob: str, app_glob: str | None) -> bool:
    return fnmatchcase(inc.code, code_glob) and (app_glob is None or fnmatchcase(inc.app or "", app_glob))


class Controller:
    """Applies control commands to ``engine`` (see the module doc)."""

    def __init__(
        self,
        engine: Engine,
        policy: NoticePolicy,
        journal: Journal,
        config: RunConfig,
        mutes: MuteOracle,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.journal = journal
        self.config = config
        self.mutes = mutes
        self._clock = clock
        self._monotonic = monotonic
        self._next_poll = 0.0
        # [fleet] (CONTRACT §13): the silences made on other members (``unsilence`` ends them too)
        self.shared: FleetSilences | None = None

    def load(self) -> None:
        """The stored silences into the oracle (start, and after each change)."""
        self.mutes.set_silences(self.journal.control.silences())

    # -- the daemon's loop -----------------------------------------------------------

    def due(self) -> bool:
        """Whether the next ``tick`` will look at the queue."""
        return self._monotonic() >= self._next_poll

    def tick(self, before: Callable[[], object] | None = None) -> int:
        """When due: apply the pending commands, end the until-resolved silences whose
        incidents are all closed. Returns the notices made (the sink is to be woken).

        ``before`` is called first when there is something to do (the daemon commits its
        held batch there: a command's transaction must follow the lines read before it);
        a look that finds nothing leaves the held batch alone, so the commit cadence while
        following is the batch's own (issue 13), not this poll's."""
        now = self._monotonic()
        if now < self._next_poll:
            return 0
        self._next_poll = now + POLL_EVERY
        made = 0
        try:
            pending = self.journal.control.pending()
            ending = self._resolved_silences()
            if not pending and not ending:
                return 0
            if before is not None:
                before()
            for command_id, kind, args in pending:
                _, outcome = self.apply(kind, args, command_id=command_id)
                made += int(outcome.pop("_notices", 0))
                logger.info("command %s %s: %s", kind, _brief(args), outcome.get("error") or "done")
            self._end_resolved()
        except JournalError as exc:  # the batch path reports a failing journal; retried next tick
            logger.warning("could not apply a command: %s", exc)
        return made

    def _resolved_silences(self) -> list[str]:
        """The until-resolved silences whose incidents are all closed now."""
        waiting = [s for s in self.mutes.local if s.until_resolved and s.ended_at is None]
        if not waiting:
            return []
        open_ids = self.engine.open_ids()
        return [s.id for s in waiting if not any(i in open_ids for i in s.incident_ids)]

    def _end_resolved(self) -> None:
        done = self._resolved_silences()
        if done:
            self.journal.control.end_now(done, self._clock())
            self.load()

    # -- one command -----------------------------------------------------------------

    def apply(self, kind: str, args: dict[str, Any], *, command_id: int | None = None) -> Outcome:
        """Apply one command in one transaction (with its outcome row when ``command_id``)."""
        now = self._clock()
        engine = self.engine
        engine.begin(now)
        new: list[Silence] = []
        ended: list[str] = []
        notices: list[Notice] = []
        try:
            # text that is not UTF-8 (a lone surrogate: an argv byte 0xff) fits no SQLite
            # column: refused here, or the commit fails on every tick and blocks the queue
            json.dumps(args, ensure_ascii=False).encode()
            status, outcome = self._decide(kind, args, now, new, ended, notices)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # a malformed command row
            engine.rollback()
            new.clear()  # nothing of it is stored, only its outcome
            ended.clear()
            notices.clear()
            why = "text that is not UTF-8" if isinstance(exc, UnicodeError) else exc
            status, outcome = 1, {"error": f"malformed {kind!r} command: {why}"}
        if kind == "resolve" and status == 0:  # acks of what was resolved end with it
            open_ids = engine.open_ids()
            for s in self.mutes.local:
                if s.until_resolved and s.ended_at is None and not any(i in open_ids for i in s.incident_ids):
                    ended.append(s.id)

        def also(db: Any) -> None:
            control = self.journal.control
            for s in new:
                control.insert(db, s)
            if ended:
                control.end(db, ended, now)
            if command_id is not None:
                control.finish(db, command_id, status, outcome, now)

        try:
            self.journal.commit(engine.pending(), [], notices, now, also=also)
        except JournalError:
            engine.rollback()
            raise
        engine.commit()
        if ended and self.shared is not None:
            self.shared.end(ended, now)  # those made elsewhere (the others are this journal's)
        if new or ended:
            self.load()
        return status, {**outcome, "_notices": len(notices)} if notices else outcome

    def _decide(
        self,
        kind: str,
        args: dict[str, Any],
        now: float,
        new: list[Silence],
        ended: list[str],
        notices: list[Notice],
    ) -> Outcome:
        active = self.engine.snapshot()  # read only: changes go through the engine's methods by key
        open_ids = {i.incident_id for i in active}
        if kind == "silence":
            pattern, app = str(args["pattern"]), str(args.get("app") or "*")
            until_resolved = bool(args.get("until_resolved"))
            ids: frozenset[str] = frozenset()
            if until_resolved:
                ids = frozenset(i.incident_id for i in active if _matches(i, pattern, app))
                if not ids:
                    return 1, {"error": f"no open incident matches {pattern!r} (app {app!r}): nothing to silence"}
            s = self._silence(args, pattern, app, ids, now, ack=False)
            new.append(s)
            return 0, {"silence": silence_json(s, now, open_ids)}
        if kind == "ack":
            code, app_glob = str(args["code"]), args.get("app")
            ids = frozenset(i.incident_id for i in active if i.code == code and _matches(i, "*", app_glob))
            if args.get("incident_id") is not None:  # the API's ack of one incident (CONTRACT §10)
                ids &= {str(args["incident_id"])}
            if not ids:
                return 1, {"error": f"no open incident of {code}" + (f" (app {app_glob})" if app_glob else "")}
            s = self._silence({**args, "until_resolved": True}, code, app_glob or "*", ids, now, ack=True)
            new.append(s)
            return 0, {"silence": silence_json(s, now, open_ids)}
        if kind == "unsilence":
            wanted = [str(i) for i in args["ids"]]
            known: set[str] = set(self.journal.control.get(wanted))
            if self.shared is not None:  # made on another member of the fleet: ended here and there
                known |= {i for i in wanted if self.shared.knows(i)}
            ended += [i for i in wanted if i in known]
            unknown = [i for i in wanted if i not in known]
            out: dict[str, Any] = {"ended": [i for i in wanted if i in known], "unknown": unknown}
            if unknown:
                out["error"] = "unknown silence id(s): " + ", ".join(shown_id(i) for i in unknown)
                return 1, out
            return 0, out
        if kind == "resolve":
            code, app_glob = str(args["code"]), args.get("app")
            which = [i for i in active if i.code == code and _matches(i, "*", app_glob)]
            if args.get("incident_id") is not None:  # the API's resolve of one incident
                which = [i for i in which if i.incident_id == args["incident_id"]]
            if not which:
                return 1, {"error": f"no open incident of {code}" + (f" (app {app_glob})" if app_glob else "")}
            reason = str(args.get("reason") or "")
            message = "resolved by hand (errord resolve)" + (f": {reason}" if reason else "")
            cfg = self.config
            ctx = Context(now=now, server_id=cfg.server_id, node_name=cfg.node_name, tags_for=cfg.tags_for)
            resolved = []
            for inc in which:
                t = self.engine.resolve(incident_key(cfg.scope, inc.app, inc.code), now, message)
                if t is None:
                    continue
                notices += self.policy.apply([t], ctx)
                resolved.append(inc.incident_id)
            return 0, {"resolved": resolved}
        return 1, {"error": f"unknown command {kind!r}"}

    def _silence(
        self, args: dict[str, Any], pattern: str, app: str, ids: frozenset[str], now: float, *, ack: bool
    ) -> Silence:
        until_resolved = bool(args.get("until_resolved"))
        return Silence(
            id=uuid.uuid4().hex[:12],
            pattern=pattern,
            app=app,
            starts_at=now,  # in force from when the daemon (or the CLI, stopped) took it
            ends_at=None if until_resolved else float(args["ends_at"]),
            until_resolved=until_resolved,
            reason=str(args.get("reason") or ""),
            by=str(args.get("by") or ""),
            created_at=now,
            incident_ids=ids,
            ack=ack,
        )


def shown_id(text: str) -> str:
    """An id as typed, in an error and log line: as it is when it could be one, else
    quoted with its escapes visible (no newline into the daemon's log), at most 40."""
    if text.isascii() and text.isalnum() and len(text) <= 40:
        return text
    return repr(text[:40]) + ("…" if len(text) > 40 else "")


def _brief(args: dict[str, Any]) -> str:
    keys = ("pattern", "code", "ids", "app")
    return " ".join(f"{k}={args[k]}" for k in keys if args.get(k))


def apply_offline(config: RunConfig, kind: str, args: dict[str, Any]) -> Outcome:
    """Apply a command with no daemon running: take the state_dir lock (``ErrordError``
    when a daemon holds it), open the journal, restore the engine, apply, release."""
    lock = RunLock(config.state_dir)
    config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock.acquire()
    try:
        with Journal(config.state_dir) as journal:
            engine = Engine(
                config,
                scope=config.scope,
                server_id=config.server_id,
                node_name=config.node_name,
                max_open_incidents=config.limits.max_open_incidents,
            )
            engine.restore(journal.active())
            mutes = MuteOracle.for_config(config)
            engine.mutes = mutes
            router = Router([(t.key, t.tags) for t in config.targets])
            controller = Controller(engine, standard_policy(router), journal, config, mutes)
            controller.load()
            if config.fleet is not None:  # the fleet's silences as last seen: an end waits for the next start
                from errord.fleet.silences import FleetSilences

                controller.shared = FleetSilences.for_config(None, config, journal, mutes)
            status, outcome = controller.apply(kind, args)
            outcome.pop("_notices", None)
            controller._end_resolved()
            return status, outcome
    except JournalError:
        raise
    except OSError as exc:
        raise ErrordError(f"cannot use state_dir {config.state_dir}: {exc.strerror or exc}") from None
    finally:
        lock.release()
