"""The daemon image without OpenSSL: ~4.5 MB less resident (``libcrypto``, ``libssl``,
``_ssl``; issue 13's idle figure, daemon + helper, went from ~66 to ~61 MB).

With none of ``[mongodb]``, ``[fleet]``, ``[metrics]``, ``[http]`` and
``[[alertmanager]]`` (:func:`needs_openssl`; the default config) the daemon image needs
OpenSSL for nothing, yet its imports would map it: asyncio tries ``import ssl`` (for TLS
streams, which it never opens), hashlib ``import _hashlib`` (the daemon hashes target
URLs with SHA-256 and file heads with BLAKE2b, which CPython also builds in). So
``serve`` imports the daemon after :func:`hold`: a finder first on ``sys.meta_path``
refuses both modules with an ImportError that says why, and both fall back as they are
written to (so would ``http.client`` and ``urllib.request``, without HTTPS). The finder
stays for the life of the process unless :func:`let_in` takes it away: before the
daemon starts, for a config that :func:`needs_openssl`, and before ``[[alertmanager]]``
pushers start (a reload may add one; they POST with ``urllib.request``, ``https://``
too). Then the modules imported lean while it held leave ``sys.modules``, so that a
later import (pymongo's SCRAM wants OpenSSL's ``pbkdf2_hmac``, which a hashlib without
it lacks from Python 3.12) gets them whole; the modules that imported them meanwhile
keep theirs. The notify helper is its own interpreter and keeps OpenSSL (Apprise's
``https://`` targets).
"""

from __future__ import annotations

import sys
from importlib.util import find_spec
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from errord.config import RunConfig

__all__ = ["HELD_BACK", "hold", "let_in", "needs_openssl"]

HELD_BACK = ("ssl", "_hashlib")  # OpenSSL's two modules
# what falls back without them (on CPython's built-in hashes; without HTTPS)
LEAN = ("hashlib", "hmac", "http.client", "urllib.request")
BUILT_IN = (("_sha2", "_sha256"), ("_blake2",))  # SHA-256 (3.12+, 3.11) and BLAKE2b built in


class _WithoutOpenSSL:
    """The finder :func:`hold` puts first on ``sys.meta_path``."""

    def __init__(self) -> None:
        self.lean: list[str] = []  # LEAN modules not imported when it began to hold

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name in HELD_BACK:
            raise ImportError(
                f"no {name} in errord's daemon image: it runs without OpenSSL with none of [mongodb],"
                " [fleet], [metrics], [http], [[alertmanager]] (errord.openssl_hold)",
                name=name,
            )


_HOLD = _WithoutOpenSSL()


def hold() -> None:
    """Refuse OpenSSL's modules from now on; nothing is held back if one is imported
    already, or if this Python has no built-in SHA-256 or BLAKE2b (looked up, not
    imported: hashlib would log an error for each hash it lacks)."""
    if _holding() or any(name in sys.modules for name in HELD_BACK):
        return
    if all(any(_found(n) for n in names) for names in BUILT_IN):
        _HOLD.lean = [name for name in LEAN if name not in sys.modules]
        sys.meta_path.insert(0, _HOLD)


def _found(name: str) -> bool:
    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _holding() -> bool:
    return _HOLD in sys.meta_path


def needs_openssl(config: RunConfig) -> bool:
    """pymongo (``[mongodb]``, ``[fleet]``) and prometheus_client (``[metrics]``, and
    ``[http]``, which serves ``/metrics`` too) import ``ssl`` outright; an
    ``[[alertmanager]]`` URL may be ``https://``. Nothing else the daemon image runs
    needs it."""
    return bool(config.alertmanager) or any(
        x is not None for x in (config.mongodb, config.fleet, config.metrics, config.http)
    )


def let_in() -> None:
    """OpenSSL may come from now on (see the module's doc); nothing if not held."""
    if not _holding():
        return
    sys.meta_path.remove(_HOLD)
    for name in _HOLD.lean:
        sys.modules.pop(name, None)
    _HOLD.lean = []
