"""The validated config as plain objects: what the running daemon holds (no pydantic).

Why two shapes: ``settings.Settings`` (pydantic-settings) reads and validates the TOML
file and the ``ERRORD_`` environment; importing pydantic costs a process ~12 MB of
resident memory it never gives back. ``errord run`` therefore validates in its first
process image, hands the result over as JSON (``Settings.dump_for_run``) and ``exec``s
the daemon (``errord.serve``), which builds a :class:`RunConfig` from it. A reload
(SIGHUP) validates in a short-lived ``errord _dump-config`` child the same way.

The behaviour both shapes share (``re_alert_for``, a target's ``key``, ``tzinfo``, the
redaction of secrets...) lives here once, in mixins the pydantic models inherit too, so
code that takes either one (the daemon's tests build it from ``Settings``) sees the same
attributes and methods.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

__all__ = [
    "RunConfig", "Source", "Defaults", "CodeConfig", "Mongo", "Target", "MetricsConfig",
    "redact_url", "redact_mongo_uri", "split_listen",
]  # fmt: skip

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# Apprise schemes whose host part is a real host name (elsewhere it is often a token).
_WEB_SCHEMES = frozenset({"http", "https", "json", "jsons", "form", "forms", "xml", "xmls"})
_SECRET_PARAM = re.compile(r"pass|secret|token|authmechanismproperties", re.IGNORECASE)


# -- redaction -------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """An Apprise URL safe to print: ``scheme://…``, or ``scheme://host:port/…`` for web schemes.

    For most Apprise schemes the "host" is itself a token (``tgram://bottoken/ChatID``), so
    only the scheme is kept; for http(s)/json/form/xml the host and port are kept, never
    userinfo, path or query.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return "***"
    if scheme.lower() not in _WEB_SCHEMES:
        return f"{scheme}://…"
    _, remainder = split_userinfo(rest)
    host = re.split(r"[/?#]", remainder, maxsplit=1)[0]
    return f"{scheme}://{host}/…"


def redact_mongo_uri(uri: str) -> str:
    """A MongoDB URI with its password (and password-like query options) replaced by ``***``."""
    scheme, sep, rest = uri.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return "***"
    userinfo, remainder = split_userinfo(rest)
    shown = f"{scheme}://"
    if userinfo is not None:
        user, colon, _ = userinfo.partition(":")
        shown += f"{user}:***@" if colon else f"{userinfo}@"
    base, qmark, query = remainder.partition("?")
    if qmark:
        params = [
            f"{k}=***" if _SECRET_PARAM.search(k) else (f"{k}={v}" if eq else k)
            for k, eq, v in (p.partition("=") for p in re.split(r"[&;]", query))
        ]
        base += "?" + "&".join(params)
    return shown + base


def split_userinfo(rest: str) -> tuple[str | None, str]:
    """``(userinfo, remainder)`` of what follows ``scheme://``."""
    # The last "@" before the query ends the userinfo even when an unescaped "/" or "@"
    # sits in the password: when in doubt, redact more rather than leak part of it.
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    return (rest[:at], rest[at + 1 :]) if at >= 0 else (None, rest)


def split_listen(value: str) -> tuple[str, int]:
    """``"host:port"`` (``"[::1]:9464"`` too) -> ``(host, port)``; ValueError if malformed."""
    host, colon, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # "[::1]:9464"
    if not colon or not host:
        raise ValueError(f"expected host:port, got {value!r}")
    if not re.fullmatch(r"\d{1,5}", port) or int(port) > 65535:
        raise ValueError(f"port must be 0-65535, got {port!r}")
    return host, int(port)


# -- behaviour shared with the pydantic models (no annotations here: pydantic would take
#    them for fields) ----------------------------------------------------------------


class SourceMixin:
    """A source's ``timezone`` as a ``tzinfo``."""

    @property
    def tzinfo(self) -> ZoneInfo:
        """The zone for times written without one."""
        return ZoneInfo(self.timezone)


class MongoMixin:
    """The write concern in pymongo's form."""

    @property
    def w(self) -> int | str:
        """The write concern as pymongo wants it: ``"majority"`` or an int."""
        return self.write_concern if self.write_concern == "majority" else int(self.write_concern)


class TargetMixin:
    """A notify target's stable key and printable form."""

    @property
    def key(self) -> str:
        """Stable id of this target: the first 16 hex digits of sha256(url)."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]

    @property
    def redacted(self) -> str:
        """The URL safe to print (see ``redact_url``)."""
        return redact_url(self.url)


class MetricsMixin:
    """The parts of ``listen``."""

    @property
    def host(self) -> str:
        """Host part of ``listen`` (brackets of an IPv6 literal removed)."""
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        """Port part of ``listen``."""
        return split_listen(self.listen)[1]


class PolicyMixin:
    """Per-code lookups (the engine's ``Policy``) and the config file's permissions.
    Uses ``codes``, ``defaults``, ``_config_path`` and ``_file_has_secrets``."""

    @property
    def config_path(self) -> Path | None:
        """The file these settings were loaded from, or None (defaults + environment)."""
        return self._config_path

    def re_alert_for(self, code: str) -> float:
        """Re-alert interval in seconds for ``code``: ``[codes.X]``, else ``[defaults]``."""
        per = self.codes.get(code)
        if per is not None and per.re_alert_time is not None:
            return float(per.re_alert_time)
        return float(self.defaults.re_alert_time)

    def notify_for(self, code: str) -> bool:
        """Whether ``code`` notifies: ``[codes.X].notify``, else ``[defaults].notify``."""
        per = self.codes.get(code)
        return per.notify if per is not None and per.notify is not None else self.defaults.notify

    def tags_for(self, code: str) -> tuple[str, ...]:
        """Routing tags of ``code`` (empty: every notify target)."""
        per = self.codes.get(code)
        return tuple(per.tags) if per is not None else ()

    def secret_warnings(self) -> list[str]:
        """Warnings when the config file holds secrets and group/others may read it."""
        path = self._config_path
        if path is None or not self._file_has_secrets:
            return []
        try:
            mode = path.stat().st_mode
        except OSError:
            return []
        if not mode & 0o077:
            return []
        return [
            f"{path}: holds secrets (notify URLs or a MongoDB password) but is "
            f"readable by group/others (mode {mode & 0o777:04o}); run chmod 600 on it"
        ]


# -- the plain objects -----------------------------------------------------------------


class _Plain:
    """Attributes from a dict; equal when their attributes are; ``replace`` copies."""

    _secret: tuple[str, ...] = ()  # attributes never shown by repr

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.__dict__ == self.__dict__

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{k}={'***' if k in self._secret else repr(v)}" for k, v in self.__dict__.items()
            if not k.startswith("_")
        )
        return f"{type(self).__name__}({shown})"

    def replace(self, **update: Any) -> Any:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__, **update)
        return new


class Source(SourceMixin, _Plain):
    path: str
    app: str | None
    start_at: str
    rotate_wait: float
    timezone: str
    max_line_bytes: int


class Defaults(_Plain):
    re_alert_time: float
    notify: bool


class CodeConfig(_Plain):
    re_alert_time: float | None
    notify: bool | None
    tags: list[str]


class Mongo(MongoMixin, _Plain):
    _secret = ("uri",)
    uri: str
    database: str
    collection: str
    timeout: float
    write_concern: str


class Target(TargetMixin, _Plain):
    _secret = ("url",)
    url: str
    tags: list[str]


class MetricsConfig(MetricsMixin, _Plain):
    listen: str


class RunConfig(PolicyMixin, _Plain):
    """``Settings`` as plain data (see the module docstring); same attributes."""

    server_id: str
    node_name: str
    state_dir: Path
    scope: str
    log_level: str
    sources: list[Source]
    defaults: Defaults
    codes: dict[str, CodeConfig]
    mongodb: Mongo | None
    notify: list[Target]
    metrics: MetricsConfig | None

    @classmethod
    def from_dump(cls, data: dict[str, Any]) -> RunConfig:
        """From ``Settings.dump_for_run()`` (already validated: nothing is checked here)."""
        d = dict(data)
        config_path = d.pop("_config_path", None)
        has_secrets = bool(d.pop("_file_has_secrets", False))
        mongo, metrics = d.get("mongodb"), d.get("metrics")
        return cls(
            **{**d,
               "state_dir": Path(d["state_dir"]),
               "sources": [Source(**s) for s in d.get("sources", [])],
               "defaults": Defaults(**d["defaults"]),
               "codes": {k: CodeConfig(**v) for k, v in d.get("codes", {}).items()},
               "mongodb": Mongo(**mongo) if mongo is not None else None,
               "notify": [Target(**t) for t in d.get("notify", [])],
               "metrics": MetricsConfig(**metrics) if metrics is not None else None},
            _config_path=Path(config_path) if config_path is not None else None,
            _file_has_secrets=has_secrets,
        )  # fmt: skip
