"""Validation of a source's ``journal = { ... }`` (CONTRACT §12). Kept out of ``settings``
so that stays small.

Which journal: exactly one of ``units`` (the local journal, those units), ``directory``
(a folder of journal files) and ``file`` (a journal file or glob); ``matches`` narrow it
down with ``FIELD=value`` terms as ``journalctl`` takes them (``+`` between terms: OR).
Each problem is refused at start naming its key (``sources.N.journal.units`` …).
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from errord.config import JournalSpec

__all__ = ["JournalSettings", "match_problem"]

# A journal field name: upper case letters, digits and "_", not starting with a digit
# (what sd_journal_add_match accepts; journalctl refuses the rest and exits)
_FIELD = re.compile(r"[A-Z_][A-Z0-9_]*")


def match_problem(term: str) -> str | None:
    """Why ``term`` is no journalctl match (None: it is one): ``FIELD=value`` or ``+``."""
    if term == "+":
        return None
    name, eq, _ = term.partition("=")
    if not eq:
        return f"{term!r} is not FIELD=value (e.g. 'SYSLOG_IDENTIFIER=myapp') or '+'"
    if not _FIELD.fullmatch(name):
        return f"{name!r} is no journal field name (upper case letters, digits and '_', e.g. 'PRIORITY')"
    return None


def _match(term: str) -> str:
    why = match_problem(term)
    if why is not None:
        raise ValueError(why)
    return term


def _matches(value: list[str]) -> list[str]:
    if value and (value[0] == "+" or value[-1] == "+"):
        raise ValueError("'+' goes between matches (A=1 + B=2), not first or last")
    return value


def _absolute(value: str) -> str:
    text = os.path.expanduser(value)
    if not os.path.isabs(text):
        text = os.path.join(os.getcwd(), text)
    return os.path.normpath(text)


def _unit(value: str) -> str:
    if value != value.strip() or any(c.isspace() for c in value):
        raise ValueError(f"{value!r}: a unit name holds no spaces (e.g. 'myapp.service')")
    return value


Unit = Annotated[str, Field(min_length=1), AfterValidator(_unit)]
Where = Annotated[str, Field(min_length=1), AfterValidator(_absolute)]


class JournalSettings(BaseModel):
    """``journal = { units = [...] | directory = "…" | file = "…", matches = [...] }``."""

    model_config = ConfigDict(extra="forbid")

    units: Annotated[list[Unit], Field(min_length=1)] | None = None
    directory: Where | None = None
    file: Where | None = None
    matches: Annotated[list[Annotated[str, AfterValidator(_match)]], AfterValidator(_matches)] = Field(
        default_factory=list
    )

    @model_validator(mode="after")
    def _one_journal(self) -> JournalSettings:
        given = [name for name in ("units", "directory", "file") if getattr(self, name) is not None]
        if len(given) != 1:
            said = f" (got {' and '.join(given)})" if given else ""
            raise ValueError("give exactly one of units (e.g. units = ['myapp.service']), directory or file" + said)
        return self

    def to_run(self) -> JournalSpec:
        """This table as the daemon holds it."""
        return JournalSpec(
            units=tuple(self.units) if self.units is not None else None,
            directory=self.directory,
            file=self.file,
            matches=tuple(self.matches),
        )


def anchor(journal: Any, base: str) -> Any:
    """``journal``'s relative ``directory``/``file`` taken from ``base`` (the config file's
    folder), as a source's ``path`` is; anything else is left for validation to judge."""
    if not isinstance(journal, dict):
        return journal
    out = dict(journal)
    for key in ("directory", "file"):
        value = out.get(key)
        if isinstance(value, str) and value and not os.path.isabs(os.path.expanduser(value)):
            out[key] = os.path.normpath(os.path.join(base, value))
    return out
