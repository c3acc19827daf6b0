"""The one small tree of errors library code raises; only the entry points (``cli.py``,
``serve.py``) turn them into exits, through ``exit_status``."""

from __future__ import annotations

import sys

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAIL",
    "EXIT_NOT_RUNNING",
    "EXIT_OK",
    "ConfigError",
    "DurationError",
    "ErrordError",
    "JournalError",
    "MongoError",
    "NoStateError",
    "NotifyError",
    "StateError",
    "exit_status",
]

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2
EXIT_NOT_RUNNING = 3  # `errord status` with no daemon on the state_dir, as `systemctl status`


class ErrordError(Exception):
    """Base of every error errord raises on purpose."""


class ConfigError(ErrordError):
    """The configuration is missing or invalid.

    ``problems`` holds one human line per problem, each naming its key
    (``sources.0.path: ...``); ``str(err)`` joins them with newlines.
    """

    def __init__(self, problems: list[str] | str) -> None:
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class DurationError(ErrordError, ValueError):
    """A duration could not be parsed. Subclasses ValueError so pydantic reports it."""


class JournalError(ErrordError):
    """The embedded store could not be read or written (locked, read-only, I/O error)."""


class NoStateError(JournalError):
    """A read-only open found no state yet (the daemon never ran here, or is creating it)."""


class StateError(JournalError):
    """The state_dir cannot be used as it is: it is not a folder, or it held state whose
    database is now empty or missing. Like a bad config, restarting cannot fix it (exit 2)."""


class NotifyError(ErrordError):
    """A notification target could not be set up; ``problems`` has one line per target."""

    def __init__(self, problems: list[str] | str) -> None:
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class MongoError(ErrordError):
    """MongoDB did not answer, or refused (the message names it with the URI redacted)."""


def exit_status(exc: ErrordError) -> int:
    """Print ``exc`` on stderr the way the command line does and return its exit status:
    2 for a config problem (one ``errord: config: ...`` line each; systemd does not
    restart on it) or an unusable state_dir (``StateError``), 1 for anything else."""
    if isinstance(exc, ConfigError):
        for problem in exc.problems:
            print(f"errord: config: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    if isinstance(exc, StateError):
        print(f"errord: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"errord: {exc}", file=sys.stderr)
    return EXIT_FAIL
