"""The ``errord`` command line (CONTRACT §4). The only module that prints and exits.

It parses arguments, loads and validates the config (``Settings.load(...).to_run()``: a
bad one exits 2 before anything starts), calls the module that owns each answer
(``status``, ``replay``, the stores, the sinks) and prints it (``views`` formats).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import orjson

from errord import __version__
from errord.cli_control import add_commands, utc_timestamp
from errord.config import RunConfig
from errord.durations import parse_duration
from errord.errors import (
    EXIT_CONFIG,
    EXIT_FAIL,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    ConfigError,
    DurationError,
    ErrordError,
    exit_status,
)
from errord.fleet.cli import add_fleet_command
from errord.model import Incident
from errord.reload import DUMP_COMMAND
from errord.status import first_start, open_readonly, source_matches, status_data
from errord.store.journal import Journal
from errord.store.runstate import check_state_dir
from errord.store.schema import DB_NAME
from errord.views import human_bytes, incident_json, incidents_table, notice_json, notice_line, table

if TYPE_CHECKING:
    from errord.store.mongostore import MongoStore

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    words = list(sys.argv[1:] if argv is None else argv)
    # The hidden command is not in the public parser, so no usage or error text lists it.
    hidden = words[:1] == [DUMP_COMMAND]
    parser = _dump_parser() if hidden else _parser()
    args = parser.parse_args(words[1:] if hidden else words)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    try:
        return int(args.func(args) or EXIT_OK)
    except ErrordError as exc:
        return exit_status(exc)
    except BrokenPipeError:  # `errord history | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


class _Parser(argparse.ArgumentParser):
    """argparse with a usage error as one line on stderr and exit status 2, like a bad config."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"errord: {message} (see '{self.prog} --help')\n")


_CONFIG_HELP = "config file (default: $ERRORD_CONFIG, else /etc/errord/errord.toml)"


def _parser() -> argparse.ArgumentParser:
    # -c is taken before the command and after it: the command's copy only sets the
    # value when given (SUPPRESS), so it never hides one given before the command.
    common = _Parser(add_help=False)
    common.add_argument("-c", "--config", type=Path, default=argparse.SUPPRESS, metavar="FILE", help=_CONFIG_HELP)
    as_json = _Parser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="machine-readable output")

    p = _Parser(prog="errord", description="Error codes in JSON logs -> deduplicated alerts and incident history.")
    p.add_argument("--version", action="version", version=f"errord {__version__}")
    p.add_argument("-c", "--config", type=Path, default=None, metavar="FILE", help=_CONFIG_HELP)
    sub = p.add_subparsers(metavar="COMMAND")

    c = sub.add_parser("run", parents=[common], help="run the daemon in the foreground")
    c.set_defaults(func=cmd_run)
    c = sub.add_parser(
        "check-config", parents=[common], help="validate and print the effective config (secrets redacted)"
    )
    c.set_defaults(func=cmd_check_config)
    c = sub.add_parser("active", parents=[common, as_json], help="the open incidents")
    c.set_defaults(func=cmd_active)
    c = sub.add_parser("history", parents=[common, as_json], help="incidents, newest first")
    c.add_argument("--code", help="only this error code")
    c.add_argument("--app", help="only incidents of this app (the source's label)")
    c.add_argument(
        "--since",
        type=_since_arg,
        metavar="DURATION|TIME",
        help="only incidents that started at or after this: a time (2026-01-14T15:00:00Z; "
        "without a zone, UTC) or a duration ago (2h, 1d; a bare number is seconds: 3600)",
    )
    state = c.add_mutually_exclusive_group()
    state.add_argument("--state", choices=["active", "cleared"], help="only open / only cleared incidents")
    state.add_argument(
        "--active-only", dest="state", action="store_const", const="active", help="the same as --state active"
    )
    c.add_argument("--limit", type=_positive_int, default=100, help="at most this many (default 100)")
    c.set_defaults(func=cmd_history)
    c = sub.add_parser(
        "status",
        parents=[common, as_json],
        help="files, positions, pending work, daemon state (exit 3 when no daemon runs)",
    )
    c.set_defaults(func=cmd_status)
    c = sub.add_parser(
        "replay", parents=[common, as_json], help="what the engine would notify for these files (no state touched)"
    )
    c.add_argument("logfiles", nargs="+", type=Path, metavar="LOGFILE")
    c.add_argument(
        "--re-alert",
        action="append",
        type=_duration_arg,
        metavar="[CODE=]DURATION",
        help="what-if: use this re-alert interval instead of the config's (every code, or one; repeatable)",
    )
    c.add_argument(
        "--ignore-line-intervals",
        action="store_true",
        help="also override the re_alert_time that lines carry (they win otherwise, as in the daemon)",
    )
    c.add_argument("--summary", action="store_true", help="print only the summary table")
    c.add_argument(
        "--render",
        action="store_true",
        help="print each notice exactly as a target would receive it (templates, format; CONTRACT §11)",
    )
    c.add_argument(
        "--target",
        metavar="notify.N|webhooks.N",
        help="the notify target whose tags, storm limit and grouping apply (default: the first);"
        " with --render: only this target, notify.N or webhooks.N (default: every [[notify]] target)",
    )
    c.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    c.set_defaults(func=cmd_replay)
    c = sub.add_parser("test-notify", parents=[common], help="send one test notice to every target")
    c.set_defaults(func=cmd_test_notify)
    add_commands(sub, common, as_json)  # silence, silences, unsilence, ack, resolve (cli_control)
    add_fleet_command(sub, common, as_json)  # fleet (CONTRACT §13)
    return p


def _dump_parser() -> argparse.ArgumentParser:
    """The hidden ``_dump-config [-c FILE]`` (see ``cmd_dump_config``)."""
    p = _Parser(prog=f"errord {DUMP_COMMAND}", add_help=False)
    p.add_argument("-c", "--config", type=Path, default=None)
    p.set_defaults(func=cmd_dump_config)
    return p


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _since_arg(text: str) -> float:
    """``--since``: epoch seconds from a duration ago (``2h``) or an ISO-8601 time
    (without a zone: UTC, the zone every time errord prints is in)."""
    try:
        return time.time() - parse_duration(text)
    except DurationError:
        pass
    try:
        return utc_timestamp(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration (2h, 1d, PT15M) or a time (2026-01-14T15:00:00Z), got {text!r}"
        ) from None


def _load(args: argparse.Namespace, *, sources: bool = False) -> RunConfig:
    """The validated config (``sources``: refuse one with nothing to read, as ``run`` does).
    pydantic is imported here, not with this module (``errord.launch``)."""
    if sources:
        from errord.serve import load_for_run

        return load_for_run(args.config)
    from errord.settings import Settings

    return Settings.load(args.config).to_run()


def _print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


# -- commands ----------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from errord.serve import start_run  # as `errord run` starts without the CLI (errord.launch)

    return start_run(args.config)


def cmd_dump_config(args: argparse.Namespace) -> int:
    """Hidden: the validated config, secrets included, as JSON on stdout (for a reloading
    daemon, which reads it through a pipe; see ``reload.load_config``). Refuses what
    ``run`` refuses, so a reload does too (an empty file written while it ran)."""
    config = _load(args, sources=True)
    sys.stdout.write(orjson.dumps(config.dump()).decode() + "\n")
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args, sources=True)
    from errord.sinks import make_notify_sink

    make_notify_sink(config, helper=False)  # every notify URL must be one Apprise can use
    check_state_dir(config.state_dir, DB_NAME)  # as `run` would refuse it: exit 2, one line
    for warning in config.secret_warnings():
        print(f"errord: warning: {warning}", file=sys.stderr)
    first = first_start(config)
    for i, src in enumerate(config.sources):  # stderr: stdout stays the config as JSON
        print(f"errord: sources.{i}: {src.label}: {source_matches(src, first)}", file=sys.stderr)
    _print_json(config.redacted())
    return EXIT_OK


def _open_store(config: RunConfig) -> Journal | None:
    """Like ``status.open_readonly``, saying on stderr which store answered."""
    journal = open_readonly(config)
    if journal is None:
        print(f"errord: no state in {config.state_dir} yet (embedded store)", file=sys.stderr)
        return None
    print(f"errord: answered by the embedded store ({config.state_dir / 'errord.db'})", file=sys.stderr)
    return journal


def _show_incidents(incidents: list[Incident], as_json: bool) -> None:
    if as_json:
        _print_json([incident_json(i) for i in incidents])
    elif incidents:
        width = _terminal_width()  # a person: relative times, fit the width; a pipe: absolute times
        print(incidents_table(incidents, time.time(), relative=width is not None, width=width))
    else:
        print("no incidents")


def _terminal_width() -> int | None:
    """The terminal's columns when stdout is one (``$COLUMNS`` wins), else None."""
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def _from_mongo(config: RunConfig, query: Callable[[MongoStore], list[Incident]]) -> list[Incident] | None:
    """``query(MongoStore)`` when MongoDB is configured and answers within a short
    timeout (this host's incidents only); None means "ask the embedded store"."""
    if config.mongodb is None:
        return None
    from errord.errors import MongoError
    from errord.store.mongostore import MongoStore  # pymongo only where needed

    try:
        with MongoStore.open(config.mongodb, server_id=config.server_id, node_name=config.node_name) as store:
            incidents = query(store)
    except MongoError as exc:
        print(f"errord: MongoDB did not answer ({exc}); using the embedded store", file=sys.stderr)
        return None
    journal = open_readonly(config)
    pending = 0
    if journal is not None:
        with journal:
            pending = journal.mongo.pending()
    behind = f"; {pending} change(s) not written there yet" if pending else ""
    print(f"errord: answered by MongoDB {store.where}{behind}", file=sys.stderr)
    return incidents


def cmd_active(args: argparse.Namespace) -> int:
    config = _load(args)
    incidents = _from_mongo(config, lambda store: store.active())
    if incidents is None:
        journal = _open_store(config)
        incidents = journal.active() if journal else []
    _show_incidents(incidents, args.json)
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    config = _load(args)
    filters = dict(code=args.code, limit=args.limit, app=args.app, since=args.since, state=args.state)
    incidents = _from_mongo(config, lambda store: store.history(**filters))
    if incidents is None:
        journal = _open_store(config)
        incidents = journal.history(**filters) if journal else []
    _show_incidents(incidents, args.json)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    config = _load(args)
    data = status_data(config)
    # as `systemctl status`: 3 when no daemon runs, so `errord status || page-me` works
    code = EXIT_OK if data["running"] else EXIT_NOT_RUNNING
    if args.json:
        _print_json(data)
        return code
    running = f"running (pid {data['pid']})" if data["running"] else "not running"
    print(f"daemon: {running}; state in {data['state_dir']}")
    print(
        f"open incidents: {data['active_incidents']}; notices pending: {data['pending_notices']}; "
        f"MongoDB writes pending: {data['pending_mongo']}; silences in force: {data['silences_active']}"
    )
    for name, n in data.get("rejected_notices", {}).items():  # refused for good: not retried
        print(f"notices rejected by {name}: {n} (4xx; see the daemon's log)")
    if config.metrics is not None:
        print(f"metrics: http://{config.metrics.listen}/metrics and /healthz")
    if data["files"]:
        size: Callable[[int], object] = human_bytes if sys.stdout.isatty() else int
        rows = [
            [
                f["path"],
                size(f["position"]),
                size(f["size"]),
                size(max(f["size"] - f["position"], 0)),
                f["lines_read"],
                f["lines_skipped"],
            ]
            for f in data["files"]
        ]
        print(
            table(
                ["FILE", "POSITION", "SIZE", "BEHIND", "LINES", "SKIPPED"],
                rows,
                right=(1, 2, 3),
                width=_terminal_width(),
                shrink={0: "start"},
                drop=(2, 1, 5, 4),
            )
        )
    elif not data["journals"]:
        print("no files match the configured sources")
    if data["journals"]:
        print(
            table(
                ["JOURNAL", "ENTRIES", "CURSOR", "ERROR"],
                [
                    [f"sources.{j['source']}: {j['journal']}", j["entries_read"], j["cursor"] or "-", j["error"] or "-"]
                    for j in data["journals"]
                ],
                right=(1,),
                width=_terminal_width(),
                shrink={0: "start", 2: "end", 3: "end"},
                drop=(2,),
            )
        )
    return code


def cmd_replay(args: argparse.Namespace) -> int:
    config = _load(args)
    from errord.replay import LIMIT_HEADERS, SUMMARY_HEADERS, ProgressBar, Replay, summary_table

    default, per_code = _re_alert_overrides(args.re_alert or [])
    progress = ProgressBar(sys.stderr) if sys.stderr.isatty() and not args.no_progress else None

    def warn(text: str) -> None:  # what a line could not give, once per file and kind
        if progress:
            progress.clear()
        print(f"warning: {text}", file=sys.stderr)

    from errord.replayrender import print_rendered, render_targets

    render = render_targets(config, args.target) if args.render else None
    replay = Replay(
        config,
        args.logfiles,
        routes=[(t.key, t.tags) for _, t in render] if render is not None else (),
        re_alert=default,
        re_alert_codes=per_code,
        ignore_line_intervals=args.ignore_line_intervals,
        progress=progress.update if progress else None,
        on_warning=warn,
        target=_target_arg(args.target) if args.target is not None and not args.render else None,
    )
    count = 0
    try:
        for notice in replay.notices():
            count += 1
            if args.summary:
                continue
            if progress:
                progress.clear()
            if render is not None:
                print_rendered(config, render, notice, args.json)
            elif args.json:
                sys.stdout.write(orjson.dumps(notice_json(notice)).decode() + "\n")
            else:
                print(notice_line(notice))
    finally:
        if progress:
            progress.clear()
    # with --json, stdout is the notices alone and the summary goes to stderr (CONTRACT §9)
    out = sys.stderr if args.json else sys.stdout
    limited = replay.limits is not None
    rows = summary_table(replay.summary, limited=limited)
    headers = SUMMARY_HEADERS + LIMIT_HEADERS if limited else SUMMARY_HEADERS
    if rows:
        if not args.summary and not args.json:
            print()
        print(table(headers, rows, width=_terminal_width(), shrink={0: "end"}), file=out)
    print(
        f"{count} notice(s) from {replay.lines_read} line(s) ({replay.lines_skipped} skipped); "
        f"{replay.open_at_end()} incident(s) still open at the end",
        file=sys.stderr,
    )
    return EXIT_OK


def _target_arg(text: str) -> int:
    """``--target notify.N`` → N (the index ``check-config`` shows)."""
    kind, dot, index = text.partition(".")
    if kind != "notify" or not dot or not index.isdigit():
        # a usage error, exit 2 (webhooks.N only with --render, CONTRACT §11)
        raise ConfigError(f"--target {text!r}: expected notify.N (e.g. notify.0); webhooks.N only with --render")
    return int(index)


def _duration_arg(text: str) -> tuple[str | None, float]:
    """``--re-alert 15m`` (every code) or ``--re-alert CODE=15m``."""
    code, eq, value = text.rpartition("=")
    try:
        seconds = parse_duration(value)
    except DurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if eq and not code:
        raise argparse.ArgumentTypeError(f"expected DURATION or CODE=DURATION, got {text!r}")
    return (code if eq else None), seconds


def _re_alert_overrides(values: list[tuple[str | None, float]]) -> tuple[float | None, dict[str, float]]:
    default: float | None = None
    per_code: dict[str, float] = {}
    for code, seconds in values:
        if code is None:
            default = seconds
        else:
            per_code[code] = seconds
    return default, per_code


def cmd_test_notify(args: argparse.Namespace) -> int:
    config = _load(args)
    from errord.sinks.notify import NotifySink

    sink = NotifySink(config.state_dir, list(config.targets))
    where = f"{config.server_id}/{config.node_name}" if config.node_name else config.server_id
    results = sink.send_test(f"🔔 errord test notice from {where}", "If you can read this, errord can reach you.")
    for target, (ok, reason) in results.items():
        print(f"ok      {target}" if ok else f"FAILED  {target}: {reason or 'not accepted'}")
    return EXIT_OK if results and all(ok for ok, _ in results.values()) else EXIT_FAIL
