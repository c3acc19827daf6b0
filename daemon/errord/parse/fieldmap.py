"""``fields`` (CONTRACT §12): dotted paths that say where a layout keeps the §1 keys.

A mapped line is decoded and rewritten as a flat object with the §1 keys, then read by
``LineParser._event``: the fields a map names replace the §1 keys (their aliases and
``extra``'s included), the others keep them. Pure.
"""

from __future__ import annotations

from typing import Any, Final

from errord.parse.lines import CLEAR_KEY, CODE_KEY, LEVEL_KEYS, MESSAGE_KEYS, NOTIFY_KEY, RE_ALERT_KEY
from errord.parse.times import TIME_KEYS

__all__ = ["FIELD_NAMES", "flatten", "needles", "split_paths"]

# field name in `fields` -> the §1 key it fills, and the keys it replaces
_TARGETS: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "code": (CODE_KEY, (CODE_KEY,)),
    "clear": (CLEAR_KEY, (CLEAR_KEY,)),
    "message": ("message", MESSAGE_KEYS),
    "time": ("timestamp", TIME_KEYS),
    "re_alert_time": (RE_ALERT_KEY, (RE_ALERT_KEY,)),
    "notification": (NOTIFY_KEY, (NOTIFY_KEY,)),
    "level": ("level", LEVEL_KEYS),
}
FIELD_NAMES: Final = tuple(_TARGETS)
_MISSING = object()


def split_paths(fields: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """``{"code": "a.b.c"}`` -> ``{"code": ("a", "b", "c")}`` (validated by the settings)."""
    return {name: tuple(path.split(".")) for name, path in fields.items()}


def needles(paths: dict[str, tuple[str, ...]]) -> tuple[bytes, ...]:
    """The cheap check's keys: the last name of the code and clear paths, quoted."""
    return tuple({f'"{p[-1]}"'.encode() for n, p in paths.items() if n in ("code", "clear")} or {b'"error_code'})


def _at(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        if type(obj) is not dict:
            return _MISSING
        obj = obj.get(name, _MISSING)
        if obj is _MISSING:
            return _MISSING
    return obj


def flatten(obj: dict[str, Any], paths: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """``obj`` with the mapped fields at their §1 keys and the keys they replace removed."""
    flat = dict(obj)
    extra = flat.get("extra")
    extra = dict(extra) if type(extra) is dict else None
    for name, path in paths.items():
        key, replaced = _TARGETS[name]
        value = _at(obj, path)
        for k in replaced:
            flat.pop(k, None)
            if extra is not None:
                extra.pop(k, None)
        if value is not _MISSING:
            flat[key] = value
    if extra is not None:
        flat["extra"] = extra
    return flat
