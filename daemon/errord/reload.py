"""How a running daemon gets a new config (SIGHUP) without importing pydantic.

The daemon's image holds the config as ``config.RunConfig`` and never imports
pydantic-settings (~12 MB of resident memory it would never give back; see ``serve``).
So a reload validates the file the way ``errord run`` did at start, in a short-lived
child: ``errord _dump-config [-c PATH]`` (:data:`DUMP_COMMAND`, a hidden command) loads
and validates ``Settings`` and prints ``Settings.to_run().dump()`` as JSON, which becomes
a ``RunConfig`` here. Its own module because both the CLI (which runs the child's side)
and the daemon (which asks for it) need it, and neither may import the other.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from errord.config import RunConfig
from errord.errors import EXIT_OK, ConfigError

__all__ = ["DUMP_COMMAND", "load_config"]

DUMP_COMMAND = "_dump-config"  # hidden cli command: validated config as JSON on stdout
RELOAD_TIMEOUT = 30.0  # seconds the child may take (it imports pydantic and reads the file)


def load_config(path: Path | None) -> RunConfig:
    """Validate the config file (and the environment) in a child process, as ``errord run``
    did at start; raises ``ConfigError`` with the child's problems."""
    cmd = [sys.executable, "-m", "errord", DUMP_COMMAND]
    if path is not None:
        cmd += ["-c", str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=RELOAD_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"cannot run the config check: {exc}") from None
    if proc.returncode == EXIT_OK:
        try:
            return RunConfig.from_dump(orjson.loads(proc.stdout))
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"the config check printed no usable config: {exc}") from None
    lines = proc.stderr.decode("utf-8", "replace").splitlines()
    problems = [ln.removeprefix("errord: config: ").removeprefix("errord: ") for ln in lines if ln.strip()]
    raise ConfigError(problems or [f"the config check failed (exit {proc.returncode})"])
