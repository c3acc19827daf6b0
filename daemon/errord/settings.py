"""Validation: a TOML file plus the ``ERRORD_`` environment, checked once at start.

``Settings.load`` is the entry point (CONTRACT §3); ``to_run()`` turns the result into the
one config type everything after validation takes, ``config.RunConfig``. These models
only validate (pydantic-settings: types, defaults, paths; ``confighints`` words each
problem as one line naming its key); what the daemon asks of its config lives on
``RunConfig``. Building
``Settings(...)`` directly validates only the keyword arguments given - no file, no
environment - so tests that need a config stay hermetic.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from errord.config import (
    AppFrom,
    CodeConfig,
    Defaults,
    FieldName,
    HttpConfig,
    MetricsConfig,
    Mongo,
    NoticeFormat,
    RunConfig,
    Scope,
    Source,
    SourceFormat,
    StartAt,
    Target,
    redact_mongo_uri,
    redact_url,
    split_listen,
    split_userinfo,
)
from errord.confighints import problems, unknown_environment
from errord.durations import parse_duration
from errord.errors import ConfigError
from errord.fleetsettings import FleetSettings, needs_mongodb
from errord.journalsettings import JournalSettings, anchor
from errord.limitsettings import LimitsSettings
from errord.mutesettings import Globs, MuteTimeSettings, Zone
from errord.noisesettings import Backoff, FlapThreshold, OffOrDuration, PositiveDuration
from errord.noticesettings import AlertmanagerSettings, Labels, TemplateSettings, WebhookSettings, notice_problems

__all__ = [
    "DEFAULT_CONFIG",
    "CodeSettings",
    "DefaultsSettings",
    "HttpSettings",
    "MetricsSettings",
    "MongoSettings",
    "NotifyTarget",
    "Settings",
    "SourceSettings",
]

DEFAULT_CONFIG = Path("/etc/errord/errord.toml")
CONFIG_ENV = "ERRORD_CONFIG"
# Both ways to say what to read, for the "nothing to read" error (run, check-config, reload)
_ADD_SOURCES = (
    'add a [[sources]] table with a path glob (path = "/var/log/app/*.jsonl"), '
    """or set ERRORD_SOURCES='[{"path": "/var/log/app/*.jsonl"}]' in the environment"""
)

Duration = Annotated[float, BeforeValidator(parse_duration)]  # stored as float seconds

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def _absolute(value: str | os.PathLike[str], base: Path | None = None) -> str:
    text = os.path.expanduser(os.fspath(value))
    if not os.path.isabs(text):
        text = os.path.join(base if base is not None else Path.cwd(), text)
    return os.path.normpath(text)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


_DOTTED = r"^[^.\s]+(\.[^.\s]+)*$"  # a.b.c: no empty names
DottedPath = Annotated[str, Field(pattern=_DOTTED)]


class SourceSettings(_Section):
    """One ``[[sources]]`` entry: a glob of JSON log files and how to read them, or a
    systemd journal (``journal``, CONTRACT §12; then ``path`` is not given)."""

    # absolute glob; required unless `journal` is given (_journal_or_path)
    path: Annotated[str, Field(min_length=1), AfterValidator(_absolute)] | None
    journal: JournalSettings | None = None
    app: str | None = None
    start_at: StartAt = "end"
    rotate_wait: Duration = 60.0
    timezone: Zone = "UTC"
    max_line_bytes: int = Field(default=1 << 20, ge=256)
    format: SourceFormat = "json"  # CONTRACT §12
    app_from: AppFrom | None = None
    fields: dict[FieldName, DottedPath] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _journal_or_path(cls, data: Any) -> Any:
        # a journal source has no path: given as None, so a source with neither still
        # says "sources.N.path: Field required"
        if isinstance(data, dict) and "journal" in data and "path" not in data:
            return {**data, "path": None}
        return data

    @field_validator("journal")
    @classmethod
    def _not_both(cls, value: JournalSettings | None, info: ValidationInfo) -> JournalSettings | None:
        if value is not None and info.data.get("path") is not None:
            raise ValueError("a source reads either files (path) or a journal, not both: split it in two [[sources]]")
        return value

    @field_validator("rotate_wait", "format", "app_from")
    @classmethod
    def _files_only(cls, value: Any, info: ValidationInfo) -> Any:
        if info.data.get("journal") is not None:
            raise ValueError(f"{info.field_name} is for files (path); a journal source reads journal entries")
        return value

    @model_validator(mode="after")
    def _reads_something(self) -> SourceSettings:
        if self.path is None and self.journal is None:
            raise ValueError(
                'give a path glob (path = "/var/log/app/*.jsonl") or a journal (journal = { units = [...] })'
            )
        return self

    def to_run(self) -> Source:
        """This entry as the daemon holds it."""
        return Source(
            path=self.path,
            journal=self.journal.to_run() if self.journal is not None else None,
            app=self.app,
            start_at=self.start_at,
            rotate_wait=self.rotate_wait,
            timezone=self.timezone,
            max_line_bytes=self.max_line_bytes,
            format=self.format,
            app_from=self.app_from,
            fields=dict(self.fields),
        )


class DefaultsSettings(_Section):
    """``[defaults]``: what applies to codes without their own ``[codes.X]`` table."""

    re_alert_time: Duration = 3600.0
    notify: bool = True
    # CONTRACT §9 (types in noisesettings; "off" is 0)
    re_alert_backoff: Backoff = 1.0
    re_alert_max: PositiveDuration = 86400.0
    remind_every: OffOrDuration = 0.0
    auto_resolve_after: OffOrDuration = 0.0
    flap_threshold: FlapThreshold = 0
    flap_window: PositiveDuration = 1800.0

    def to_run(self) -> Defaults:
        """This table as the daemon holds it."""
        return Defaults(**self.model_dump())


class CodeSettings(_Section):
    """``[codes.X]``: per-code overrides; ``None`` means "use ``[defaults]``"."""

    re_alert_time: Duration | None = None
    notify: bool | None = None
    tags: list[str] = Field(default_factory=list)
    inhibited_by: Globs = Field(default_factory=list)  # CONTRACT §8: muted while one of these is open
    # CONTRACT §9, each None: [defaults]'s ("off" is 0)
    re_alert_backoff: Backoff | None = None
    re_alert_max: PositiveDuration | None = None
    remind_every: OffOrDuration | None = None
    auto_resolve_after: OffOrDuration | None = None
    flap_threshold: FlapThreshold | None = None
    flap_window: PositiveDuration | None = None
    description: str | None = None  # CONTRACT §11: in the notice text and templates
    runbook: str | None = None
    labels: Labels = Field(default_factory=dict)

    def to_run(self) -> CodeConfig:
        """This table as the daemon holds it."""
        return CodeConfig(
            re_alert_time=self.re_alert_time,
            notify=self.notify,
            tags=tuple(self.tags),
            inhibited_by=tuple(self.inhibited_by),
            re_alert_backoff=self.re_alert_backoff,
            re_alert_max=self.re_alert_max,
            remind_every=self.remind_every,
            auto_resolve_after=self.auto_resolve_after,
            flap_threshold=self.flap_threshold,
            flap_window=self.flap_window,
            description=self.description,
            runbook=self.runbook,
            labels=dict(self.labels),
        )


class MongoSettings(_Section):
    """``[mongodb]``: optional mirror of the incident history."""

    uri: str
    database: str = Field(default="errord", min_length=1)
    collection: str = Field(default="error_codes", min_length=1)
    timeout: Annotated[Duration, Field(gt=0)] = 5.0
    write_concern: str = "1"

    def to_run(self) -> Mongo:
        """This table as the daemon holds it."""
        return Mongo(
            uri=self.uri,
            database=self.database,
            collection=self.collection,
            timeout=self.timeout,
            write_concern=self.write_concern,
        )

    @field_validator("uri")
    @classmethod
    def _mongo_scheme(cls, value: str) -> str:
        if not value.startswith(("mongodb://", "mongodb+srv://")):  # never echo: may hold a password
            raise ValueError("should start with 'mongodb://' or 'mongodb+srv://'")
        return value

    @field_validator("write_concern", mode="before")
    @classmethod
    def _write_concern(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and value != "majority" and not re.fullmatch(r"\d+", value):
            raise ValueError("should be 'majority' or a number of nodes such as '1'")
        return value

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, redact_mongo_uri(value) if name == "uri" else value


class NotifyTarget(_Section):
    """One ``[[notify]]`` entry: an Apprise URL (a secret) and its routing tags."""

    url: str
    tags: list[str] = Field(default_factory=list)
    template: str | None = None  # CONTRACT §11: a [templates.NAME]; None: the built-in text
    format: NoticeFormat = "text"  # the Apprise body format

    def to_run(self) -> Target:
        """This entry as the daemon holds it."""
        return Target(url=self.url, tags=tuple(self.tags), template=self.template, format=self.format)

    @field_validator("url")
    @classmethod
    def _apprise_url(cls, value: str) -> str:
        scheme, sep, _ = value.partition("://")
        if not sep or not _SCHEME.fullmatch(scheme):  # never echo: the URL is a secret
            raise ValueError("not an Apprise URL (expected scheme://...)")
        return value

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "url" else value


class MetricsSettings(_Section):
    """``[metrics]``: where to serve Prometheus ``/metrics`` and ``/healthz``."""

    listen: str = "127.0.0.1:9464"

    def to_run(self) -> MetricsConfig:
        """This table as the daemon holds it."""
        return MetricsConfig(listen=self.listen)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        split_listen(value)
        return value


class HttpSettings(_Section):
    """``[http]`` (CONTRACT §10): the JSON API, the status page, /metrics and /healthz."""

    listen: str = "127.0.0.1:9464"
    token: str = Field(default="", validate_default=True)  # a secret: redacted by check-config, never logged

    def to_run(self) -> HttpConfig:
        """This table as the daemon holds it."""
        return HttpConfig(listen=self.listen, token=self.token)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        split_listen(value)
        return value

    @field_validator("token")
    @classmethod
    def _token_off_loopback(cls, value: str, info: ValidationInfo) -> str:
        from errord.http.auth import is_loopback

        listen = info.data.get("listen")
        if not value and isinstance(listen, str) and not is_loopback(split_listen(listen)[0]):
            raise ValueError("required when http.listen is not a loopback address")
        return value


class _MappingEnvSource(EnvSettingsSource):
    """The ``ERRORD_`` environment source, reading a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {(k if self.case_sensitive else k.lower()): v for k, v in self._environ.items()}


class Settings(BaseSettings):
    """Everything errord is configured with (CONTRACT §3). Build it with ``Settings.load``."""

    model_config = SettingsConfigDict(
        env_prefix="ERRORD_", env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )

    server_id: str = Field(default_factory=socket.gethostname)
    node_name: str = ""
    state_dir: Path = Path("/var/lib/errord")
    scope: Scope = "code"
    log_level: str = "INFO"
    sources: list[SourceSettings] = Field(default_factory=list)
    defaults: DefaultsSettings = Field(default_factory=DefaultsSettings)
    codes: dict[str, CodeSettings] = Field(default_factory=dict)
    mongodb: MongoSettings | None = None
    notify: list[NotifyTarget] = Field(default_factory=list)
    metrics: MetricsSettings | None = None
    mute_times: list[MuteTimeSettings] = Field(default_factory=list)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    http: HttpSettings | None = None
    display_timezone: Zone = "UTC"  # CONTRACT §11: times in the human text of notices
    templates: dict[str, TemplateSettings] = Field(default_factory=dict)
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    alertmanager: list[AlertmanagerSettings] = Field(default_factory=list)
    fleet: FleetSettings | None = None  # after mongodb: its check reads it

    _config_path: Path | None = PrivateAttr(default=None)
    _file_has_secrets: bool = PrivateAttr(default=False)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # File and environment are read by load(), from the mapping it is given.
        return (init_settings,)

    @field_validator("fleet")
    @classmethod
    def _fleet_needs_mongodb(cls, value: FleetSettings | None, info: ValidationInfo) -> FleetSettings | None:
        return needs_mongodb(value, info.data.get("mongodb") is not None)

    @field_validator("state_dir")
    @classmethod
    def _absolute_dir(cls, value: Path) -> Path:
        return Path(_absolute(value))

    @field_validator("log_level")
    @classmethod
    def _level_name(cls, value: str) -> str:
        if value.upper() not in logging.getLevelNamesMapping():
            raise ValueError(f"unknown log level {value!r} (use DEBUG, INFO, WARNING or ERROR)")
        return value.upper()

    @classmethod
    def load(cls, path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the TOML file, overlay the ``ERRORD_`` environment, validate.

        The file is ``path``, else ``$ERRORD_CONFIG``, else ``/etc/errord/errord.toml``; only
        that last one may be missing (then: defaults + environment). Relative paths in the
        file are taken from the file's folder; relative paths from the environment from the
        current directory. ``environ`` defaults to ``os.environ``. Raises ``ConfigError``
        with one line per problem.
        """
        env = os.environ if environ is None else environ
        named = path if path is not None else env.get(CONFIG_ENV) or None
        chosen = Path(_absolute(named if named is not None else DEFAULT_CONFIG))
        raw = _read_toml(chosen, required=named is not None)
        data = _anchor_paths(raw, chosen.parent) if raw is not None else {}
        unknown = unknown_environment(cls, env, CONFIG_ENV)
        try:
            from_env = _MappingEnvSource(cls, {k: v for k, v in env.items() if k not in unknown})()
        except SettingsError as err:  # a list or table given as invalid JSON
            field = re.search(r'field "([^"]+)"', str(err))
            name = f"ERRORD_{field.group(1).upper()}" if field else "environment"
            raise ConfigError([*unknown.values(), f"{name}: not valid JSON (lists and tables need JSON)"]) from None
        try:
            settings = cls.model_validate(_deep_merge(data, from_env))
        except ValidationError as err:
            raise ConfigError([*unknown.values(), *problems(err, cls)]) from None  # the cause would echo secrets
        if unknown:
            raise ConfigError(list(unknown.values()))
        if bad := notice_problems(settings.templates, settings.notify, settings.display_timezone, settings.webhooks):
            raise ConfigError(bad)  # a template that cannot render: refused like a bad key
        settings._config_path = chosen if raw is not None else None
        settings._file_has_secrets = raw is not None and _file_has_secrets(raw)
        return settings

    def require_sources(self) -> None:
        """Raise ``ConfigError`` unless at least one ``[[sources]]`` is configured.

        A daemon with nothing to read would idle forever looking healthy (a missing
        ``/etc/errord/errord.toml``, an empty file written while a reload ran), so ``run``,
        ``check-config`` and a reload refuse it; the read commands do not need sources.
        """
        if self.sources:
            return
        if self._config_path is not None:
            why = f"{self._config_path} has no [[sources]] table"
        else:
            why = f"there is no {DEFAULT_CONFIG} (name a config file with -c FILE or ${CONFIG_ENV})"
        raise ConfigError(f"sources: nothing to read: {why}; {_ADD_SOURCES}")

    @property
    def config_path(self) -> Path | None:
        """The file these settings were loaded from, or None (defaults + environment)."""
        return self._config_path

    def to_run(self) -> RunConfig:
        """The validated settings as the one config type the rest of errord takes."""
        return RunConfig(
            server_id=self.server_id,
            node_name=self.node_name,
            state_dir=self.state_dir,
            scope=self.scope,
            log_level=self.log_level,
            sources=tuple(s.to_run() for s in self.sources),
            defaults=self.defaults.to_run(),
            codes={code: c.to_run() for code, c in self.codes.items()},
            mongodb=self.mongodb.to_run() if self.mongodb is not None else None,
            notify=tuple(t.to_run() for t in self.notify),
            metrics=self.metrics.to_run() if self.metrics is not None else None,
            mute_times=tuple(m.to_run() for m in self.mute_times),
            limits=self.limits.to_run(),
            http=self.http.to_run() if self.http is not None else None,
            display_timezone=self.display_timezone,
            templates={name: t.to_run() for name, t in self.templates.items()},
            webhooks=tuple(w.to_run() for w in self.webhooks),
            alertmanager=tuple(a.to_run() for a in self.alertmanager),
            fleet=self.fleet.to_run() if self.fleet is not None else None,
            config_path=self._config_path,
            file_has_secrets=self._file_has_secrets,
        )


def _read_toml(path: Path, *, required: bool) -> dict[str, Any] | None:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{path}: config file not found") from None
        return None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not valid UTF-8 (byte {err.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:  # its message carries "(at line L, column C)"
        raise ConfigError(f"{path}: invalid TOML: {err}") from None


def _anchor_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    data = dict(raw)
    if isinstance(data.get("state_dir"), str) and data["state_dir"]:
        data["state_dir"] = _absolute(data["state_dir"], base)
    if isinstance(data.get("sources"), list):
        data["sources"] = [
            {**s, "path": _absolute(s["path"], base)}
            if isinstance(s, dict) and isinstance(s.get("path"), str) and s["path"]
            else s
            for s in data["sources"]
        ]
        data["sources"] = [
            {**s, "journal": anchor(s["journal"], str(base))} if isinstance(s, dict) and "journal" in s else s
            for s in data["sources"]
        ]
    return data


def _file_has_secrets(raw: dict[str, Any]) -> bool:
    mongo = raw.get("mongodb")
    uri = mongo.get("uri") if isinstance(mongo, dict) else None
    userinfo = split_userinfo(uri.partition("://")[2])[0] if isinstance(uri, str) else None
    http = raw.get("http")
    token = isinstance(http, dict) and bool(http.get("token"))
    return bool(raw.get("notify")) or bool(raw.get("webhooks")) or token or (userinfo is not None and ":" in userinfo)


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
