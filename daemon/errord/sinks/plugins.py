"""Load only the Apprise plugins the configured URLs need (in the notify helper process).

Why: the first ``Apprise.add``/``instantiate`` imports every one of Apprise's ~190 plugin
modules (its ``NotificationManager`` scans the plugin folder), which costs the notify
helper ~11 MB of resident memory (measured: 47 MB -> 36 MB with one ``json://``
target) and ~0.1 s at start, for services nobody configured.

How: a plugin declares its schemes as string literals (``protocol = "json"``,
``secure_protocol = ("smsmgr", "smsmanager")``), so the modules whose source contains a
configured scheme in quotes are the candidates (a few too many is harmless). They are
handed to the manager's own ``load_modules(path, name)`` through a temporary folder of
symlinks, so Apprise registers them exactly as in its full scan. If a scheme is still
unknown afterwards (a plugin that builds its schemes at runtime, a layout change in a
later Apprise, a URL that is simply wrong), the manager is reset and does its ordinary
full load: the subset is only ever an optimisation, never a different answer.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterable

__all__ = ["load_plugins_for"]

logger = logging.getLogger(__name__)

_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.\-]*)://")
_MODULE = re.compile(r"^(?!base|_)[a-z0-9_]+(\.py)?$", re.I)  # as the manager's own scan


def _schemes(urls: Iterable[str]) -> set[str] | None:
    """The lower-cased schemes of ``urls``; None when one has no ``scheme://``."""
    found: set[str] = set()
    for url in urls:
        m = _SCHEME.match(url)
        if m is None:
            return None
        found.add(m.group(1).lower())
    return found


def _sources(entry: str) -> list[str]:
    """The Python files of a plugin module (a file, or a package folder)."""
    if os.path.isdir(entry):
        return [os.path.join(root, f) for root, _, files in os.walk(entry) for f in files if f.endswith(".py")]
    return [entry]


def _candidates(plugin_dir: str, schemes: set[str]) -> list[str]:
    """Names in ``plugin_dir`` whose source mentions one of ``schemes`` as a string."""
    quoted = [s.encode() for scheme in schemes for s in (f'"{scheme}"', f"'{scheme}'")]
    names = []
    for name in sorted(os.listdir(plugin_dir)):
        if not _MODULE.match(name) or name.startswith("__"):
            continue
        path = os.path.join(plugin_dir, name)
        for src in _sources(path):
            try:
                with open(src, "rb") as f:
                    text = f.read()
            except OSError:
                continue
            if any(q in text for q in quoted):
                names.append(name)
                break
    return names


def load_plugins_for(urls: Iterable[str]) -> None:
    """Make Apprise's plugin manager know the schemes of ``urls``, loading as few plugin
    modules as it can (see the module doc). Safe to call again with other URLs."""
    from apprise.manager_plugins import NotificationManager

    # apprise ships no type information for its plugin manager: the calls are untyped
    mgr = NotificationManager()  # type: ignore[no-untyped-call]  # a singleton: the manager Apprise itself uses
    schemes = _schemes(urls)
    if not schemes:
        return  # nothing to send through Apprise (or an odd URL: Apprise loads lazily)
    if mgr and all(s in mgr for s in schemes):
        return  # loaded before (fully, or a subset that covers these)
    try:
        names = _candidates(mgr.module_path, schemes)
        if names:
            with tempfile.TemporaryDirectory(prefix="errord-apprise-") as tmp:
                for name in names:
                    os.symlink(os.path.join(mgr.module_path, name), os.path.join(tmp, name))
                mgr.load_modules(path=tmp, name=mgr.module_name_prefix)  # type: ignore[no-untyped-call]
    except Exception as exc:  # only an optimisation: fall through to the full load
        logger.debug("partial Apprise plugin load failed: %s", exc)
    missing = sorted(s for s in schemes if not (mgr and s in mgr))
    if missing:
        logger.debug("Apprise schemes %s not found in a partial load; loading every plugin", missing)
        mgr.unload_modules()  # type: ignore[no-untyped-call]
        mgr.load_modules()  # type: ignore[no-untyped-call]
