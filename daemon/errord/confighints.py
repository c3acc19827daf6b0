"""Config mistakes as one line each, naming the key, with a "did you mean" hint.

Two kinds (CONTRACT §3): pydantic's validation errors (``problems``: ``sources.0.path:
Field required``; an unknown key names its closest known one), and ``ERRORD_``
environment variables that name no setting (``unknown_environment``), which
pydantic-settings would drop without a word. ``settings.Settings.load`` raises both as
one ``ConfigError``. Works on any pydantic model tree, so it knows no setting by name.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = ["problems", "unknown_environment"]


def unknown_environment(model: type[BaseModel], env: Mapping[str, str], config_env: str) -> dict[str, str]:
    """``{variable: problem}`` for each ``ERRORD_`` variable that names no setting.

    pydantic-settings looks up only the names it knows, so a typo such as
    ``ERRORD_DEFAULT__NOTIFY`` would be dropped without a word (an operator who believes
    errord is silent would get live alerts). Names match case-insensitively and nested
    keys are joined by ``__``, as pydantic-settings reads them; the keys of a table of
    tables (``codes``) are free. ``config_env`` (the variable naming the config file) and
    ``ERRORD_TEST_*`` are not settings.
    """
    out: dict[str, str] = {}
    for name in sorted(env):
        if not name.lower().startswith("errord_") or name == config_env or name.upper().startswith("ERRORD_TEST_"):
            continue
        problem = _env_problem(model, name[len("errord_") :].lower().split("__"))
        if problem is not None:
            if name.upper() == config_env:
                problem = f"names no setting (the config file is named by {config_env}, in upper case)"
            out[name] = f"{name}: {problem}"
    return out


def _env_problem(model: type[BaseModel], parts: list[str]) -> str | None:
    """Why the nested key ``parts`` names no setting of ``model``, or None if it does."""
    tp: Any = model
    fixed: list[str] = []  # the parts, each unknown one replaced by its closest match
    guessed = False
    for part in parts:
        tp = _unwrap_optional(tp)
        where = ".".join(fixed)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if part not in tp.model_fields:
                close = difflib.get_close_matches(part, list(tp.model_fields), n=1)
                if not close:
                    return "names no setting"
                guessed, part = True, close[0]
            fixed.append(part)
            tp = tp.model_fields[part].annotation
        elif typing.get_origin(tp) is dict:  # [codes.X]: any X
            if not part:
                return "names no setting (an empty key)"
            fixed.append(part)
            tp = typing.get_args(tp)[-1]
        elif guessed:
            return "names no setting"
        elif typing.get_origin(tp) is list:  # pydantic-settings reads no list index
            return f"names no setting ({where} is a list: give all of it as JSON in ERRORD_{where.upper()})"
        else:
            return f"names no setting ({where} is a value, not a table)"
    return f"names no setting (did you mean ERRORD_{'__'.join(fixed).upper()}?)" if guessed else None


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):  # X | None
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def problems(err: ValidationError, model: type[BaseModel]) -> list[str]:
    """One ``key.path: message`` line per error in ``err`` (unknown keys with a "did you
    mean"), never echoing the input (it may be a secret)."""
    lines = []
    for e in err.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(part) for part in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            known = _fields_at(model, e["loc"][:-1])
            close = difflib.get_close_matches(str(e["loc"][-1]), known, n=1)
            msg = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
        lines.append(f"{where}: {msg}")
    return lines


def _fields_at(tp: Any, path: Sequence[int | str]) -> list[str]:
    """Field names of the model found at ``path`` below ``tp`` (for "did you mean")."""
    for part in (*path, None):
        tp = _unwrap_optional(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if part is None:
                return list(tp.model_fields)
            field = tp.model_fields.get(str(part))
            if field is None:
                return []
            tp = field.annotation
        elif part is not None and typing.get_args(tp):  # list index or dict key
            tp = typing.get_args(tp)[-1]
        else:
            return []
    return []
