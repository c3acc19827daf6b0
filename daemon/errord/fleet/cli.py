"""``errord fleet [--json]`` (CONTRACT §13): exit 1 with one line when MongoDB does not answer."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from errord.errors import EXIT_FAIL, EXIT_OK

__all__ = ["add_fleet_command", "cmd_fleet"]


def add_fleet_command(sub: Any, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser) -> None:
    """Add ``fleet`` to the ``errord`` parser's subcommands."""
    c = sub.add_parser("fleet", parents=[common, as_json], help="the fleet's open incidents (from MongoDB)")
    c.set_defaults(func=cmd_fleet)


def cmd_fleet(args: argparse.Namespace) -> int:
    from pymongo.errors import PyMongoError

    from errord.fleet.view import fleet_json, fleet_lines
    from errord.settings import Settings  # pydantic: only where a config is loaded

    config = Settings.load(args.config).to_run()
    try:
        rows = fleet_json(config)
    except PyMongoError as exc:
        print(f"errord: fleet: MongoDB did not answer ({type(exc).__name__})", file=sys.stderr)
        return EXIT_FAIL
    if args.json:
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write("".join(line + "\n" for line in fleet_lines(rows)))
    return EXIT_OK
