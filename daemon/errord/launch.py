"""The ``errord`` command's entry point: ``errord run`` starts without the CLI's imports.

Why: the CLI (``errord.cli``: its commands, the store, the views, the control layer)
takes ~0.12 s to import, and ``errord run`` needs none of it: it starts the notify helper
(``sinks.early``), forks the child that validates the config (pydantic, ``settings``)
and ``exec``s the daemon image (``serve``), which imports what it needs itself. Imported
first, the CLI put those 0.12 s before all three, on the path to ``READY=1`` (issue 13).

So a command line that is exactly ``run`` with ``-c FILE`` / ``--config FILE`` /
``--config=FILE`` before or after it (the forms ``errord --help`` shows; the last one
given wins, as in the full parser, where the command's copy overrides the global one)
is started here; every other command line, ``errord run --help`` and any spelling this
does not know included, goes to ``errord.cli.main`` unchanged, which parses it as always
(so an abbreviation such as ``--conf`` still works, by the slower path).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from errord.errors import ErrordError, exit_status

__all__ = ["main", "plain_run"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    words = list(sys.argv[1:] if argv is None else argv)
    is_run, config = plain_run(words)
    if not is_run:
        from errord.cli import main as cli_main

        return cli_main(words)
    from errord.serve import start_run

    try:
        return start_run(config)
    except ErrordError as exc:  # the fallbacks validate in this process (serve.validate_and_exec)
        return exit_status(exc)


def plain_run(words: Sequence[str]) -> tuple[bool, Path | None]:
    """(True, the config file) when ``words`` are a plain ``run`` command line (None: no
    ``-c``, the default applies); (False, None) for anything else (the full parser's)."""
    config: Path | None = None
    seen_run = False
    k = 0
    while k < len(words):
        word = words[k]
        if word == "run" and not seen_run:
            seen_run = True
        elif word in ("-c", "--config") and k + 1 < len(words) and _value(words[k + 1]):
            config = Path(words[k + 1])
            k += 1
        elif word.startswith("--config=") and _value(word[len("--config=") :]):
            config = Path(word[len("--config=") :])
        else:
            return False, None
        k += 1
    return (True, config) if seen_run else (False, None)


def _value(text: str) -> bool:
    """A value argparse would take for ``-c`` as it is (not empty, not option-like)."""
    return bool(text) and not text.startswith("-")
