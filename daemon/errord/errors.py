"""The one small tree of errors library code raises; only ``cli.py`` turns them into exits."""

from __future__ import annotations

__all__ = ["ErrordError", "ConfigError", "DurationError", "JournalError", "NoStateError", "NotifyError", "MongoError"]


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


class NotifyError(ErrordError):
    """A notification target could not be set up; ``problems`` has one line per target."""

    def __init__(self, problems: list[str] | str) -> None:
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class MongoError(ErrordError):
    """MongoDB did not answer, or refused (the message names it with the URI redacted)."""
