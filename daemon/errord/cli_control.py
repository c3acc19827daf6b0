"""The control commands of the command line (CONTRACT §8): ``silence``, ``silences``,
``unsilence``, ``ack``, ``resolve``. Split from ``cli`` to keep it small; ``cli`` adds
these parsers and, as for every command, only the CLI prints and exits.

While a daemon runs, a command is handed to it through the journal's ``commands`` table
(the daemon stays the one writer of incident state) and its outcome awaited up to
``WAIT`` seconds; while none runs, ``control.apply_offline`` applies it under the
state_dir lock. Bad arguments are exit 2 naming the argument; a refusal (no such open
incident, an unknown silence id, an outcome that did not come in time) exit 1.
"""

from __future__ import annotations

import argparse
import getpass
import shutil
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from errord.config import RunConfig
from errord.control import apply_offline, shown_id, silence_json
from errord.durations import parse_duration
from errord.errors import EXIT_FAIL, EXIT_OK, DurationError, ErrordError
from errord.notices import clean_text
from errord.parse.values import unfit_code
from errord.policy.mutetime import MuteWindow
from errord.policy.silence import NOT_UTF8, check_pattern, utf8
from errord.status import open_readonly
from errord.store.journal import Journal
from errord.store.runstate import read_run_state
from errord.views import incident_json, table

__all__ = ["WAIT", "add_commands"]

WAIT = 10.0  # seconds ack/resolve (and the others) wait for a running daemon's outcome
MAX_AHEAD = 100 * 365 * 86400.0  # seconds: --until as far ahead as --for may go
MAX_REASON = 1000  # characters of --reason (a notice carries at most 1,000 of a message)
MAX_BY = 200  # characters of --by


def _pattern(text: str) -> str:
    try:
        return check_pattern(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad pattern {_shown(text)}: {exc}") from None


def _code(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    if not utf8(text):
        raise argparse.ArgumentTypeError(NOT_UTF8)
    if unfit_code(text):  # no line can have opened such a code
        raise argparse.ArgumentTypeError(f"not a usable error code: {_shown(text)}")
    return text


def _shown(text: str, limit: int = 60) -> str:
    """Untrusted text in an error line: quoted, escapes visible, at most ``limit`` characters."""
    quoted = repr(text[:limit])
    return quoted + (f" (and {len(text) - limit} more characters)" if len(text) > limit else "")


def _text(limit: int) -> Any:
    """An argument type: free text (``--reason``, ``--by``) of at most ``limit`` characters."""

    def check(text: str) -> str:
        if len(text) > limit:
            raise argparse.ArgumentTypeError(f"is {len(text)} characters long, at most {limit} allowed")
        if not utf8(text):
            raise argparse.ArgumentTypeError(NOT_UTF8)
        return text

    return check


def _for(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except DurationError as exc:
        if len(text) > 60:  # the parser's message quotes all of it
            raise argparse.ArgumentTypeError(f"not a duration: {_shown(text)}") from None
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {_shown(text)}")
    return seconds


def utc_timestamp(text: str) -> float:
    """Epoch seconds of an ISO-8601 time given on the command line (without a zone: UTC,
    the zone every time errord prints is in); ValueError if it is none."""
    when = datetime.fromisoformat(text.strip())
    return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).timestamp()


def _until(text: str) -> float:
    try:
        ts = utc_timestamp(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO-8601 time (2026-01-14T15:00:00Z; without a zone, UTC), got {_shown(text)}"
        ) from None
    now = time.time()
    if ts <= now:
        raise argparse.ArgumentTypeError(f"{text!r} is not in the future")
    if ts - now > MAX_AHEAD:
        raise argparse.ArgumentTypeError(f"{text!r} is over 100 years ahead (use --until-resolved, or unsilence)")
    return ts


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return ""


def add_commands(
    sub: Any, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser
) -> None:  # sub: argparse's _SubParsersAction
    """Add the control commands to the ``errord`` parser's subcommands."""
    c = sub.add_parser("silence", parents=[common, as_json], help="mute the notices of codes matching a pattern")
    c.add_argument("pattern", type=_pattern, metavar="PATTERN", help="a code or a shell glob (db_*)")
    c.add_argument("--app", type=_pattern, default="*", help="only apps matching this glob (default: any)")
    how = c.add_mutually_exclusive_group(required=True)
    how.add_argument("--for", dest="for_", type=_for, metavar="DURATION", help="for this long (2h, 30m)")
    how.add_argument("--until", type=_until, metavar="TIME", help="until this time (ISO-8601; without a zone, UTC)")
    how.add_argument(
        "--until-resolved", action="store_true", help="until the incidents open and matching now are resolved"
    )
    c.add_argument("--reason", type=_text(MAX_REASON), default="", help="why (shown by `errord silences`)")
    c.add_argument("--by", type=_text(MAX_BY), default=None, help="who (default: your user name)")
    c.set_defaults(func=cmd_silence)
    c = sub.add_parser("silences", parents=[common, as_json], help="the silences in force and the mute times")
    c.add_argument("--all", action="store_true", help="also the silences ended in the last 7 days")
    c.set_defaults(func=cmd_silences)
    c = sub.add_parser("unsilence", parents=[common], help="end silences now")
    c.add_argument("ids", nargs="+", metavar="ID")
    c.set_defaults(func=cmd_unsilence)
    c = sub.add_parser("ack", parents=[common, as_json], help="silence an open incident until it resolves")
    c.add_argument("code", type=_code, metavar="CODE")
    c.add_argument("--app", type=_pattern, default=None, help="only the incident(s) of apps matching this glob")
    c.add_argument("--reason", type=_text(MAX_REASON), default="")
    c.add_argument("--by", type=_text(MAX_BY), default=None, help="who (default: your user name)")
    c.set_defaults(func=cmd_ack)
    c = sub.add_parser("resolve", parents=[common, as_json], help="close an open incident now, with its resolve")
    c.add_argument("code", type=_code, metavar="CODE")
    c.add_argument("--app", type=_pattern, default=None, help="only the incident(s) of apps matching this glob")
    c.add_argument("--reason", type=_text(MAX_REASON), default="")
    c.set_defaults(func=cmd_resolve)


# -- handing a command over ------------------------------------------------------------


def _load(args: argparse.Namespace) -> RunConfig:
    from errord.settings import Settings  # pydantic: only where a config is loaded (see cli._load)

    return Settings.load(args.config).to_run()


def _run(config: RunConfig, kind: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Apply ``kind`` with ``payload``: handed to the running daemon, or here under the lock."""
    if not read_run_state(config.state_dir)["running"]:
        try:
            return apply_offline(config, kind, payload)
        except ErrordError:
            if not read_run_state(config.state_dir)["running"]:
                raise
            # a daemon started meanwhile: hand it over
    return _hand_over(config, kind, payload)


def _hand_over(config: RunConfig, kind: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    with Journal(config.state_dir) as journal:
        command_id = journal.control.submit(kind, payload, time.time())
        end = time.monotonic() + WAIT
        while time.monotonic() < end:
            got = journal.control.outcome(command_id)
            if got is not None:
                return got
            time.sleep(0.1)
    return EXIT_FAIL, {
        "error": f"queued, not applied yet (command {command_id}): the running daemon did not apply it within"
        f" {WAIT:.0f} s; it will when it can",
        "queued": command_id,
    }


def _print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _refused(outcome: dict[str, Any]) -> int:
    print(f"errord: {outcome.get('error', 'refused')}", file=sys.stderr)
    return EXIT_FAIL


# -- the commands ----------------------------------------------------------------------


def cmd_silence(args: argparse.Namespace) -> int:
    config = _load(args)
    now = time.time()
    payload = {
        "pattern": args.pattern,
        "app": args.app,
        "ends_at": None if args.until_resolved else (args.until if args.until is not None else now + args.for_),
        "until_resolved": args.until_resolved,
        "reason": args.reason,
        "by": args.by if args.by is not None else _who(),
    }
    status, outcome = _run(config, "silence", payload)
    if status:
        return _refused(outcome)
    _show_silence(outcome["silence"], args.json)
    return EXIT_OK


def cmd_ack(args: argparse.Namespace) -> int:
    config = _load(args)
    payload = {"code": args.code, "app": args.app, "reason": args.reason, "by": args.by or _who()}
    status, outcome = _run(config, "ack", payload)
    if status:
        return _refused(outcome)
    _show_silence(outcome["silence"], args.json)
    return EXIT_OK


def _show_silence(silence: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(silence)
    else:
        print(silence["id"])


def cmd_unsilence(args: argparse.Namespace) -> int:
    config = _load(args)
    wanted = list(dict.fromkeys(args.ids))
    unusable = [i for i in wanted if not utf8(i)]  # no silence has such an id: unknown
    ids = [i for i in wanted if utf8(i)]
    status, outcome = _run(config, "unsilence", {"ids": ids}) if ids else (0, {})
    for sid in outcome.get("ended", []):
        print(f"ended {sid}")
    if status and "unknown" not in outcome:  # refused as a whole (a queue that did not answer)
        return _refused(outcome)
    unknown = unusable + list(outcome.get("unknown", []))
    if unknown:
        return _refused({"error": "unknown silence id(s): " + ", ".join(shown_id(i) for i in unknown)})
    return EXIT_OK


def cmd_resolve(args: argparse.Namespace) -> int:
    config = _load(args)
    status, outcome = _run(config, "resolve", {"code": args.code, "app": args.app, "reason": args.reason})
    if status:
        return _refused(outcome)
    ids = set(outcome.get("resolved", []))
    records = []
    journal = open_readonly(config)
    if journal is not None:
        with journal:
            records = [i for i in journal.history(code=args.code, limit=-1) if i.incident_id in ids]
    if args.json:
        _print_json([incident_json(i) for i in records])
    else:
        for inc in records:
            print(f"resolved {inc.code}" + (f" ({inc.app})" if inc.app else "") + f": incident {inc.incident_id}")
    return EXIT_OK


def cmd_silences(args: argparse.Namespace) -> int:
    config = _load(args)
    now = time.time()
    silences: list[dict[str, Any]] = []
    journal = open_readonly(config)
    if journal is not None:
        with journal:
            open_ids = {i.incident_id for i in journal.active()}
            since = now - 7 * 86400 if args.all else None
            if config.fleet is not None:  # CONTRACT §13: also those made on other members
                from errord.fleet.silences import listed

                silences = listed(journal, config, now, open_ids, since=since)
            else:
                for s in journal.control.silences(since=since):
                    if args.all or s.active(now, open_ids):
                        silences.append(silence_json(s, now, open_ids))
    mute_times = [_mute_time_json(m, now) for m in config.mute_times]
    if args.json:
        _print_json(silences + mute_times)
        return EXIT_OK
    if silences:
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        rows = [
            [
                s["id"],
                s["pattern"],
                s["app"],
                "ack" if s["ack"] else ("until resolved" if s["until_resolved"] else s["ends_at"]),
                "yes" if s["active"] else f"ended {s['ended_at']}",
                s["muted"],
                # typed by anyone who may run errord: no escapes or newlines into the terminal
                clean_text(s["by"], MAX_BY, single_line=True),
                clean_text(s["reason"], MAX_REASON if width is not None else 60, single_line=True),
            ]
            for s in silences
        ]
        headers = ["ID", "PATTERN", "APP", "ENDS", "ACTIVE", "MUTED", "BY", "REASON"]
        if config.fleet is not None:  # where each was made
            headers.append("FROM")
            for row, shown in zip(rows, silences, strict=True):
                origin = str(shown["origin"])
                row.append("here" if origin == config.server_id else clean_text(origin, MAX_BY, single_line=True))
        print(table(headers, rows, width=width, shrink={7: "end", 6: "end"}))
    else:
        print("no silences in force" if not args.all else "no silences in the last 7 days")
    if mute_times:
        print()
        rows = [
            [m["name"], ",".join(m["codes"]), ",".join(m["apps"]), ",".join(m["weekdays"]) or "every day",
             ",".join(m["times"]) or "all day", m["timezone"], "yes" if m["active"] else "no"]
            for m in mute_times
        ]  # fmt: skip
        print(table(["MUTE TIME", "CODES", "APPS", "WEEKDAYS", "TIMES", "TIMEZONE", "ACTIVE"], rows))
    return EXIT_OK


def _mute_time_json(m: Any, now: float) -> dict[str, Any]:
    window = MuteWindow.parse(m.name, m.codes, m.apps, m.weekdays, m.times, m.timezone)
    return {
        "kind": "mute_time",
        "name": m.name,
        "codes": list(window.codes),
        "apps": list(window.apps),
        "weekdays": list(m.weekdays),
        "times": list(m.times),
        "timezone": m.timezone,
        "active": window.at(now),
    }
