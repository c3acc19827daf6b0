"""The ``errord`` command line (CONTRACT §4). The only module that prints and exits."""

from __future__ import annotations

import argparse
import fnmatch
import glob
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from errord import __version__
from errord.engine import Engine
from errord.errors import ConfigError, ErrordError
from errord.journal import Journal
from errord.lines import LineParser
from errord.model import Incident, Position
from errord.notices import render
from errord.runstate import read_run_state
from errord.settings import Settings
from errord.views import iso, incident_json, incidents_table, table

__all__ = ["main"]

logger = logging.getLogger("errord")

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    try:
        return int(args.func(args) or EXIT_OK)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"errord: config: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except ErrordError as exc:
        print(f"errord: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except BrokenPipeError:  # `errord history | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", type=Path, help="config file (default: $ERRORD_CONFIG, else /etc/errord/errord.toml)")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="machine-readable output")

    p = argparse.ArgumentParser(prog="errord", description="Error codes in JSON logs -> deduplicated alerts and incident history.")
    p.add_argument("--version", action="version", version=f"errord {__version__}")
    sub = p.add_subparsers(metavar="COMMAND")

    c = sub.add_parser("run", parents=[common], help="run the daemon in the foreground")
    c.set_defaults(func=cmd_run)
    c = sub.add_parser("check-config", parents=[common], help="validate and print the effective config (secrets redacted)")
    c.set_defaults(func=cmd_check_config)
    c = sub.add_parser("active", parents=[common, as_json], help="the open incidents")
    c.set_defaults(func=cmd_active)
    c = sub.add_parser("history", parents=[common, as_json], help="incidents, newest first")
    c.add_argument("--code", help="only this error code")
    c.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    c.add_argument("--active-only", action="store_true", help="only open incidents")
    c.set_defaults(func=cmd_history)
    c = sub.add_parser("status", parents=[common, as_json], help="files, positions, pending work, daemon state")
    c.set_defaults(func=cmd_status)
    c = sub.add_parser("replay", parents=[common, as_json], help="what the engine would notify for these files (no state touched)")
    c.add_argument("logfiles", nargs="+", type=Path, metavar="LOGFILE")
    c.set_defaults(func=cmd_replay)
    c = sub.add_parser("test-notify", parents=[common], help="send one test notice to every target")
    c.set_defaults(func=cmd_test_notify)
    return p


def _load(args: argparse.Namespace) -> Settings:
    return Settings.load(args.config)


def _print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


# -- commands ----------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    settings = _load(args)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for warning in settings.secret_warnings():
        logger.warning("%s", warning)
    from errord.daemon import run_daemon  # asyncio and watchfiles only where needed

    run_daemon(settings)
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _load(args)
    from errord.daemon import Daemon

    Daemon._make_sink(settings)  # every notify URL must be one Apprise can use
    for warning in settings.secret_warnings():
        print(f"errord: warning: {warning}", file=sys.stderr)
    _print_json(settings.redacted())
    return EXIT_OK


def _open_store(settings: Settings) -> Journal | None:
    """The embedded store read-only, or None when the daemon has never run here."""
    if not (settings.state_dir / "errord.db").exists():
        print(f"errord: no state in {settings.state_dir} yet (embedded store)", file=sys.stderr)
        return None
    journal = Journal(settings.state_dir, readonly=True)
    print(f"errord: answered by the embedded store ({settings.state_dir / 'errord.db'})", file=sys.stderr)
    return journal


def _show_incidents(incidents: list[Incident], as_json: bool) -> None:
    if as_json:
        _print_json([incident_json(i) for i in incidents])
    elif incidents:
        print(incidents_table(incidents, time.time()))
    else:
        print("no incidents")


def cmd_active(args: argparse.Namespace) -> int:
    settings = _load(args)
    journal = _open_store(settings)
    incidents = journal.active() if journal else []
    _show_incidents(incidents, args.json)
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    settings = _load(args)
    if args.limit < 1:
        raise ErrordError("--limit must be at least 1")
    journal = _open_store(settings)
    incidents = journal.history(code=args.code, limit=args.limit, active_only=args.active_only) if journal else []
    _show_incidents(incidents, args.json)
    return EXIT_OK


def status_data(settings: Settings) -> dict[str, Any]:
    """The ``status --json`` object (CONTRACT §4)."""
    state = read_run_state(settings.state_dir)
    positions: dict[tuple[int, int], Position] = {}
    active = pending = 0
    if (settings.state_dir / "errord.db").exists():
        journal = Journal(settings.state_dir, readonly=True)
        try:
            positions = {p.key: p for p in journal.positions()}
            active = len(journal.active())
            pending = journal.pending_notices()
        finally:
            journal.close()
    files = []
    for path in _matched_files(settings):
        try:
            st = os.stat(path)
        except OSError:
            continue
        pos = positions.get((st.st_dev, st.st_ino))
        files.append({
            "path": path,
            "position": pos.offset if pos else 0,
            "size": st.st_size,
            "lines_read": pos.lines_read if pos else 0,
            "lines_skipped": pos.lines_skipped if pos else 0,
        })
    return {
        "running": bool(state["running"] and state["ready"]),
        "pid": state["pid"],
        "active_incidents": active,
        "pending_notices": pending,
        "pending_mongo": 0,
        "state_dir": str(settings.state_dir),
        "files": files,
    }


def _matched_files(settings: Settings) -> Iterator[str]:
    seen: set[str] = set()
    for src in settings.sources:
        for path in sorted(glob.glob(src.path, recursive=True)):
            if path not in seen and os.path.isfile(path):
                seen.add(path)
                yield path


def cmd_status(args: argparse.Namespace) -> int:
    settings = _load(args)
    data = status_data(settings)
    if args.json:
        _print_json(data)
        return EXIT_OK
    running = f"running (pid {data['pid']})" if data["running"] else "not running"
    print(f"daemon: {running}; state in {data['state_dir']}")
    print(f"open incidents: {data['active_incidents']}; notices pending: {data['pending_notices']}; "
          f"MongoDB writes pending: {data['pending_mongo']}")
    if data["files"]:
        rows = [[f["path"], f["position"], f["size"], f["size"] - f["position"], f["lines_read"], f["lines_skipped"]]
                for f in data["files"]]
        print(table(["FILE", "POSITION", "SIZE", "BEHIND", "LINES", "SKIPPED"], rows))
    else:
        print("no files match the configured sources")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    settings = _load(args)
    engine = Engine(settings, scope=settings.scope, server_id=settings.server_id, node_name=settings.node_name)
    count = 0
    for path in args.logfiles:
        parser = _parser_for(settings, path)
        for data, offset in _read_lines(path):
            for ev in parser.parse_chunk(data, offset, time.time(), str(path)).events:
                notice = render(engine.feed(ev), server_id=settings.server_id,
                                node_name=settings.node_name, tags_for=settings.tags_for)
                if notice is None:
                    continue
                count += 1
                if args.json:
                    sys.stdout.write(orjson.dumps({
                        "type": notice.type.value, "code": notice.code, "title": notice.title,
                        "time": iso(notice.event_time), "incident_id": notice.incident_id, "body": notice.body,
                    }).decode() + "\n")
                else:
                    print(f"{iso(notice.event_time)}  {notice.type.value:<7}  {notice.title}")
    if not args.json:
        print(f"{count} notice(s); {len(engine.active())} incident(s) still open at the end", file=sys.stderr)
    return EXIT_OK


def _parser_for(settings: Settings, path: Path) -> LineParser:
    resolved = str(path.resolve())
    for src in settings.sources:
        if fnmatch.fnmatch(resolved, src.path):
            return LineParser(app=src.app, tz=src.tzinfo, max_line_bytes=src.max_line_bytes)
    return LineParser(app=None, tz=ZoneInfo("UTC"), max_line_bytes=1 << 20)


def _read_lines(path: Path, chunk: int = 1 << 20) -> Iterator[tuple[bytes, int]]:
    """Complete lines of a file in large pieces, with the offset of each piece."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise ErrordError(f"cannot read {path}: {exc.strerror}") from None
    with f:
        offset, rest = 0, b""
        while True:
            data = f.read(chunk)
            if not data:
                break
            data = rest + data
            cut = data.rfind(b"\n") + 1
            if cut:
                yield data[:cut], offset
                offset += cut
            rest = data[cut:]
        if rest:
            yield rest, offset


def cmd_test_notify(args: argparse.Namespace) -> int:
    settings = _load(args)
    from errord.sinks.notify import NotifySink

    sink = NotifySink(settings.state_dir, settings.notify)
    where = f"{settings.server_id}/{settings.node_name}" if settings.node_name else settings.server_id
    results = sink.send_test(f"🔔 errord test notice from {where}", "If you can read this, errord can reach you.")
    for target, ok in results.items():
        print(f"{'ok    ' if ok else 'FAILED'}  {target}")
    return EXIT_OK if results and all(results.values()) else EXIT_FAIL
