"""The one config type: :class:`RunConfig` and its parts, typed and frozen (no pydantic).

Everything after validation takes a ``RunConfig``: the daemon, the sinks, the tailer,
replay and the CLI's commands. It is built two ways, to the same value:

- ``settings.Settings.to_run()`` in a process that validated the TOML file and the
  ``ERRORD_`` environment with pydantic-settings (every command does);
- ``RunConfig.from_dump()`` in the daemon's process image (``errord.serve``), from the
  JSON ``RunConfig.dump()`` wrote. Importing pydantic leaves a process ~12 MB of resident
  memory it never gives back, so ``errord run`` validates, hands the dump over and
  ``exec``s the daemon; a reload (SIGHUP) validates in a short-lived
  ``errord _dump-config`` child the same way. This module therefore imports nothing
  heavy.

The pydantic models in ``settings`` only validate; what the daemon asks of its config
(``re_alert_for``, a target's ``key``, ``tzinfo``, the redaction of secrets...) lives here.
``tests/test_config.py`` pins that both describe the same fields.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from errord.fleet.runconfig import FleetConfig
from errord.noise import Noise, noise_of
from errord.notices import CodeNotes, NoticeStyle
from errord.policy.limit import LimitRule, parse_budget

__all__ = [
    "Alertmanager",
    "CodeConfig",
    "Defaults",
    "HttpConfig",
    "JournalSpec",
    "Limits",
    "MetricsConfig",
    "Mongo",
    "MuteTime",
    "NoticeFormat",
    "RunConfig",
    "Scope",
    "Source",
    "StartAt",
    "Target",
    "TemplateConfig",
    "Webhook",
    "redact_mongo_uri",
    "redact_url",
    "split_listen",
    "split_userinfo",
]

_NOISE_FIELDS = (
    "re_alert_backoff",
    "re_alert_max",
    "remind_every",
    "auto_resolve_after",
    "flap_threshold",
    "flap_window",
)
Scope = Literal["code", "app"]  # the incident key: the code, or (app, code)
StartAt = Literal["end", "beginning"]  # where a first start reads the files it finds
SourceFormat = Literal["json", "docker", "cri", "auto"]  # CONTRACT §12: a source's line format
AppFrom = Literal["kubernetes"]  # CONTRACT §12: where a source's app comes from
FieldName = Literal["code", "clear", "message", "time", "re_alert_time", "notification", "level"]

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


# -- the parts -------------------------------------------------------------------------
# Frozen: the daemon swaps a whole new RunConfig on reload and never edits one in place.
# Lists are tuples and tables read-only mappings for the same reason.


@dataclass(frozen=True, slots=True)
class JournalSpec:
    """``journal = { ... }`` of a ``[[sources]]`` entry (CONTRACT §12): which journal
    ``journalctl`` reads (exactly one of ``units``, ``directory``, ``file``) and its
    ``FIELD=value`` matches."""

    units: tuple[str, ...] | None = None  # the local journal, these units (journalctl --unit)
    directory: str | None = None  # an absolute folder of journal files (--directory)
    file: str | None = None  # an absolute journal file or glob (--file)
    matches: tuple[str, ...] = ()  # FIELD=value (or "+"), as journalctl takes them

    @property
    def where(self) -> str:
        """Which journal, as one short text (logs, status): ``units=a.service,b.service``,
        ``directory=/x`` or ``file=/x.journal``."""
        if self.directory is not None:
            return f"directory={self.directory}"
        if self.file is not None:
            return f"file={self.file}"
        return "units=" + ",".join(self.units or ())


@dataclass(frozen=True, slots=True)
class Source:
    """One ``[[sources]]`` entry: a glob of JSON log files and how to read them, or a
    systemd journal (``journal`` set; ``path`` is then empty)."""

    path: str | None  # an absolute glob (None: a journal source)
    journal: JournalSpec | None  # CONTRACT §12: read with journalctl instead of files
    app: str | None
    start_at: StartAt
    rotate_wait: float  # seconds
    timezone: str  # IANA name, for times written without a zone
    max_line_bytes: int
    format: SourceFormat = "json"  # CONTRACT §12
    app_from: AppFrom | None = None  # "kubernetes": the app from the file name
    fields: Mapping[FieldName, str] = field(default_factory=dict)  # CONTRACT §12: dotted paths

    @property
    def tzinfo(self) -> ZoneInfo:
        """The zone for times written without one."""
        return ZoneInfo(self.timezone)

    @property
    def label(self) -> str:
        """What the source reads, for logs and metrics: the glob, or ``journal:WHERE``."""
        return f"journal:{self.journal.where}" if self.journal is not None else str(self.path)


@dataclass(frozen=True, slots=True)
class Defaults:
    """``[defaults]``: what applies to codes without their own ``[codes.X]`` table."""

    re_alert_time: float  # seconds
    notify: bool
    # CONTRACT §9 ("off" is 0): growing re-alerts, reminders, auto-resolve, flapping
    re_alert_backoff: float = 1.0
    re_alert_max: float = 86400.0
    remind_every: float = 0.0
    auto_resolve_after: float = 0.0
    flap_threshold: int = 0
    flap_window: float = 1800.0

    @property
    def noise(self) -> Noise:
        """The §9 fields as the engine asks for them."""
        return Noise(
            re_alert_backoff=self.re_alert_backoff,
            re_alert_max=self.re_alert_max,
            remind_every=self.remind_every or None,
            auto_resolve_after=self.auto_resolve_after or None,
            flap_threshold=self.flap_threshold,
            flap_window=self.flap_window,
        )


@dataclass(frozen=True, slots=True)
class CodeConfig:
    """``[codes.X]``: per-code overrides; ``None`` means "use ``[defaults]``"."""

    re_alert_time: float | None
    notify: bool | None
    tags: tuple[str, ...]
    inhibited_by: tuple[str, ...] = ()  # code globs: while one is open, this code is muted
    # CONTRACT §9, each None: [defaults]'s ("off" is 0)
    re_alert_backoff: float | None = None
    re_alert_max: float | None = None
    remind_every: float | None = None
    auto_resolve_after: float | None = None
    flap_threshold: int | None = None
    flap_window: float | None = None

    def noise_overrides(self) -> dict[str, Any]:
        """The §9 fields this table sets, as ``noise.Noise`` holds them (0 → None)."""
        out: dict[str, Any] = {}
        for name in _NOISE_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = (value or None) if name in ("remind_every", "auto_resolve_after") else value
        return out

    # CONTRACT §11: shown in the notice text, given to templates, labels to Alertmanager
    description: str | None = None
    runbook: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Mongo:
    """``[mongodb]``: where the incident history is mirrored. ``uri`` is a secret."""

    uri: str
    database: str
    collection: str
    timeout: float  # seconds
    write_concern: str  # "majority" or a number of nodes

    @property
    def w(self) -> int | str:
        """The write concern as pymongo wants it: ``"majority"`` or an int."""
        return self.write_concern if self.write_concern == "majority" else int(self.write_concern)

    def __repr__(self) -> str:
        return (
            f"Mongo(uri={redact_mongo_uri(self.uri)!r}, database={self.database!r}, "
            f"collection={self.collection!r}, timeout={self.timeout!r}, write_concern={self.write_concern!r})"
        )


@dataclass(frozen=True, slots=True)
class Target:
    """One ``[[notify]]`` entry: an Apprise URL (a secret) and its routing tags."""

    url: str
    tags: tuple[str, ...]
    # CONTRACT §11: the [templates.NAME] it renders with (None: the built-in text) and
    # the Apprise body format
    template: str | None = None
    format: NoticeFormat = "text"

    @property
    def key(self) -> str:
        """Stable id of this target: the first 16 hex digits of sha256(url)."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]

    @property
    def redacted(self) -> str:
        """The URL safe to print (see ``redact_url``)."""
        return redact_url(self.url)

    def __repr__(self) -> str:
        return f"Target(url={self.redacted!r}, tags={self.tags!r}, template={self.template!r}, format={self.format!r})"


NoticeFormat = Literal["text", "markdown", "html"]  # Apprise body formats (CONTRACT §11)


@dataclass(frozen=True, slots=True)
class Alertmanager:
    """One ``[[alertmanager]]`` entry (CONTRACT §11): the base URL of one Alertmanager
    (list every HA peer); open incidents are pushed to ``URL/api/v2/alerts``."""

    url: str

    @property
    def key(self) -> str:
        """Stable id of this Alertmanager (its rows in ``am_alerts``)."""
        return hashlib.sha256(f"alertmanager {self.url}".encode()).hexdigest()[:16]

    @property
    def redacted(self) -> str:
        return redact_url(self.url)

    def __repr__(self) -> str:
        return f"Alertmanager(url={self.redacted!r})"


@dataclass(frozen=True, slots=True)
class Webhook:
    """One ``[[webhooks]]`` entry (CONTRACT §11): JSON POSTed to ``url`` with ``headers``;
    URL and header values are secrets. A target in the same list as the notify ones."""

    url: str
    headers: Mapping[str, str]
    tags: tuple[str, ...]
    template: str | None = None

    kind = "webhook"  # how the notify sink tells it from an Apprise target
    format = "text"  # the body is JSON; a template renders plain text into it

    @property
    def key(self) -> str:
        """Stable id of this target (never the same as a notify target of the same URL)."""
        return hashlib.sha256(f"webhook {self.url}".encode()).hexdigest()[:16]

    @property
    def redacted(self) -> str:
        """The URL safe to print (see ``redact_url``)."""
        return redact_url(self.url)

    def __repr__(self) -> str:
        return f"Webhook(url={self.redacted!r}, headers={list(self.headers)!r}, tags={self.tags!r})"


@dataclass(frozen=True, slots=True)
class TemplateConfig:
    """``[templates.NAME]`` (CONTRACT §11): Jinja2 text per notice kind; None: built-in."""

    failure_title: str | None = None
    failure_body: str | None = None
    warning_title: str | None = None
    warning_body: str | None = None
    success_title: str | None = None
    success_body: str | None = None
    digest_title: str | None = None
    digest_body: str | None = None
    flapping_title: str | None = None
    flapping_body: str | None = None

    def keys(self) -> dict[str, str]:
        """The keys given, ``{"failure_title": "{{ code }} …"}``."""
        return {k: v for k, v in asdict(self).items() if v is not None}


class _Listen:
    """``host`` and ``port`` of a ``listen = "host:port"`` setting."""

    __slots__ = ()
    listen: str

    @property
    def host(self) -> str:
        """Host part of ``listen`` (brackets of an IPv6 literal removed)."""
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        """Port part of ``listen``."""
        return split_listen(self.listen)[1]


@dataclass(frozen=True, slots=True)
class HttpConfig(_Listen):
    """``[http]`` (CONTRACT §10): the API, the status page, /metrics and /healthz.
    ``token`` is a secret (check-config shows ``***``)."""

    listen: str = "127.0.0.1:9464"  # host:port
    token: str = ""

    def __repr__(self) -> str:
        return f"HttpConfig(listen={self.listen!r}, token={'***' if self.token else ''!r})"


@dataclass(frozen=True, slots=True)
class MetricsConfig(_Listen):
    """``[metrics]``: where to serve Prometheus ``/metrics`` and ``/healthz``."""

    listen: str  # host:port


@dataclass(frozen=True, slots=True)
class MuteTime:
    """One ``[[mute_times]]`` entry (CONTRACT §8): a recurring window that mutes notices
    (``policy.mutetime.MuteWindow`` does the maths)."""

    name: str
    codes: tuple[str, ...]  # globs
    apps: tuple[str, ...]  # globs
    weekdays: tuple[str, ...]  # "mon", "mon-fri", "fri-mon"; empty: every day
    times: tuple[str, ...]  # "02:00-03:30", "22:00-06:00"; empty: all day
    timezone: str  # IANA name


@dataclass(frozen=True, slots=True)
class Limits:
    """``[limits]`` (CONTRACT §9): the storm budget and the grouping wait of every notify
    target (validated by ``limitsettings``); ``rule`` is what the notify workers and
    replay apply."""

    notices: str = "off"  # "off" or "N/WINDOW"
    group_wait: float = 0.0  # seconds
    max_open_incidents: int = 10_000  # the engine's cap (engine_noise.MAX_OPEN_INCIDENTS)

    @property
    def rule(self) -> LimitRule:
        """These limits as ``policy.limit`` applies them."""
        budget, window = parse_budget(self.notices)
        return LimitRule(budget=budget, window=window, group_wait=self.group_wait)


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Everything errord runs with (CONTRACT §3), validated. The fields are the settings'
    (same names and order) plus where they were loaded from."""

    server_id: str
    node_name: str
    state_dir: Path
    scope: Scope
    log_level: str  # a logging level name, upper case
    sources: tuple[Source, ...]
    defaults: Defaults
    codes: Mapping[str, CodeConfig]
    mongodb: Mongo | None
    notify: tuple[Target, ...]
    metrics: MetricsConfig | None
    mute_times: tuple[MuteTime, ...]
    limits: Limits
    http: HttpConfig | None
    display_timezone: str  # IANA name: times in the human text of notices (CONTRACT §11)
    templates: Mapping[str, TemplateConfig]  # [templates.NAME]
    webhooks: tuple[Webhook, ...]  # [[webhooks]] (CONTRACT §11)
    alertmanager: tuple[Alertmanager, ...]  # [[alertmanager]] (CONTRACT §11)
    # Not settings: the file they came from (None: defaults + environment), and whether
    # that file itself holds secrets (for the readable-config warning, CONTRACT §3).
    config_path: Path | None
    file_has_secrets: bool
    fleet: FleetConfig | None = None  # [fleet] (CONTRACT §13); None: this host alerts alone

    # -- the engine's Policy and routing ------------------------------------------------

    def re_alert_for(self, code: str) -> float:
        """Re-alert interval in seconds for ``code``: ``[codes.X]``, else ``[defaults]``."""
        per = self.codes.get(code)
        if per is not None and per.re_alert_time is not None:
            return per.re_alert_time
        return self.defaults.re_alert_time

    @property
    def noise_timed(self) -> bool:
        """Whether any code has reminders, auto-resolve or flapping (the clock ticks for them)."""
        noises = [self.defaults.noise, *(self.noise_for(c) for c in self.codes)]
        return any(n.remind_every is not None or n.auto_resolve_after is not None or n.flap_threshold for n in noises)

    def noise_for(self, code: str) -> Noise:
        """The §9 settings of ``code``: ``[codes.X]``'s over ``[defaults]``'s."""
        per = self.codes.get(code)
        base = self.defaults.noise
        return base if per is None else noise_of(base, per.noise_overrides())

    def notify_for(self, code: str) -> bool:
        """Whether ``code`` notifies: ``[codes.X].notify``, else ``[defaults].notify``."""
        per = self.codes.get(code)
        return per.notify if per is not None and per.notify is not None else self.defaults.notify

    def tags_for(self, code: str) -> tuple[str, ...]:
        """Routing tags of ``code`` (empty: every notify target)."""
        per = self.codes.get(code)
        return per.tags if per is not None else ()

    @property
    def targets(self) -> tuple[Target | Webhook, ...]:
        """Every notice target in one list (CONTRACT §11): the ``[[notify]]`` ones, then the
        ``[[webhooks]]``; the router, the outbox and the backoff treat them alike."""
        return (*self.notify, *self.webhooks)

    @property
    def notice_style(self) -> NoticeStyle:
        """How notices read: the display zone and each code's description/runbook/labels."""
        notes = {
            code: CodeNotes(c.description, c.runbook, dict(c.labels))
            for code, c in self.codes.items()
            if c.description or c.runbook or c.labels
        }
        return NoticeStyle(self.display_timezone, notes)

    def inhibited_by_for(self, code: str) -> tuple[str, ...]:
        """The code globs whose open incidents mute ``code`` (``[codes.X] inhibited_by``)."""
        per = self.codes.get(code)
        return per.inhibited_by if per is not None else ()

    # -- printing and handing over --------------------------------------------------------

    def secret_warnings(self) -> list[str]:
        """Warnings when the config file holds secrets and group/others may read it."""
        path = self.config_path
        if path is None or not self.file_has_secrets:
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

    def redacted(self) -> dict[str, Any]:
        """The effective config as JSON-able data, for ``errord check-config``.

        Durations are float seconds, paths absolute strings. Notify URLs go through
        ``redact_url`` (each target also shows its ``key``) and the MongoDB URI through
        ``redact_mongo_uri``; where the config came from is not shown.
        """
        data = self._settings()
        data["notify"] = [
            {"url": t.redacted, "tags": list(t.tags), "key": t.key, "template": t.template, "format": t.format}
            for t in self.notify
        ]
        data["webhooks"] = [
            {
                "url": w.redacted,
                "headers": {name: "***" for name in w.headers},  # the names stay, the values are secrets
                "tags": list(w.tags),
                "template": w.template,
                "key": w.key,
            }
            for w in self.webhooks
        ]
        data["alertmanager"] = [{"url": a.redacted, "key": a.key} for a in self.alertmanager]
        if data["mongodb"] is not None:
            data["mongodb"]["uri"] = redact_mongo_uri(data["mongodb"]["uri"])
        if data.get("http") is not None and data["http"]["token"]:
            data["http"]["token"] = "***"
        return data

    def dump(self) -> dict[str, Any]:
        """Everything, secrets included, as JSON-able data for ``from_dump`` (how ``errord
        run`` and a reload's ``_dump-config`` child hand the config to the daemon image)."""
        data = self._settings()
        # Underscored: the keys an older daemon reads when it reloads through a newer
        # ``errord _dump-config`` (a package upgraded under a running daemon).
        data["_config_path"] = str(self.config_path) if self.config_path is not None else None
        data["_file_has_secrets"] = self.file_has_secrets
        return data

    def _settings(self) -> dict[str, Any]:
        """The settings as JSON-able data (lists, dicts, strings), in field order."""
        return {k: _jsonable(v) for k, v in asdict(self).items() if k not in ("config_path", "file_has_secrets")}

    @classmethod
    def from_dump(cls, data: Mapping[str, Any]) -> RunConfig:
        """From ``dump()`` (already validated: nothing is checked here)."""
        mongo, metrics = data["mongodb"], data["metrics"]
        config_path = data["_config_path"]
        return cls(
            server_id=data["server_id"],
            node_name=data["node_name"],
            state_dir=Path(data["state_dir"]),
            scope=data["scope"],
            log_level=data["log_level"],
            sources=tuple(_source(s) for s in data["sources"]),
            defaults=Defaults(**data["defaults"]),
            codes={
                k: CodeConfig(
                    **{
                        **v,
                        "tags": tuple(v["tags"]),
                        "inhibited_by": tuple(v.get("inhibited_by", ())),
                    }
                )
                for k, v in data["codes"].items()
            },
            mongodb=Mongo(**mongo) if mongo is not None else None,
            notify=tuple(
                Target(
                    url=t["url"],
                    tags=tuple(t["tags"]),
                    template=t.get("template"),
                    format=t.get("format", "text"),
                )
                for t in data["notify"]
            ),
            metrics=MetricsConfig(**metrics) if metrics is not None else None,
            mute_times=tuple(
                MuteTime(
                    name=m["name"],
                    codes=tuple(m["codes"]),
                    apps=tuple(m["apps"]),
                    weekdays=tuple(m["weekdays"]),
                    times=tuple(m["times"]),
                    timezone=m["timezone"],
                )
                for m in data.get("mute_times", ())
            ),
            display_timezone=data.get("display_timezone", "UTC"),
            templates={k: TemplateConfig(**v) for k, v in data.get("templates", {}).items()},
            webhooks=tuple(
                Webhook(url=w["url"], headers=dict(w["headers"]), tags=tuple(w["tags"]), template=w.get("template"))
                for w in data.get("webhooks", ())
            ),
            alertmanager=tuple(Alertmanager(url=a["url"]) for a in data.get("alertmanager", ())),
            config_path=Path(config_path) if config_path is not None else None,
            file_has_secrets=bool(data["_file_has_secrets"]),
            limits=Limits(**data["limits"]) if "limits" in data else Limits(),
            http=HttpConfig(**data["http"]) if data.get("http") is not None else None,
            fleet=FleetConfig(**data["fleet"]) if data.get("fleet") is not None else None,
        )


def _source(data: Mapping[str, Any]) -> Source:
    journal = data.get("journal")
    spec = None
    if journal is not None:
        spec = JournalSpec(
            units=tuple(journal["units"]) if journal["units"] is not None else None,
            directory=journal["directory"],
            file=journal["file"],
            matches=tuple(journal["matches"]),
        )
    return Source(**{**data, "journal": spec})


def _jsonable(value: object) -> object:
    """``asdict`` output with tuples as lists and paths as strings (what JSON holds)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
