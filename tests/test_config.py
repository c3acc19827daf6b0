"""``config``: the one config type. ``Settings`` (validation) and ``RunConfig`` (what runs)
describe the same fields; both ways of building a ``RunConfig`` give the same value; the
daemon's image reads it without pydantic; secrets are redacted."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import operator
import subprocess
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import orjson
import pytest
from pydantic import BaseModel

from conftest import write_config
from errord.config import (
    Alertmanager,
    CodeConfig,
    Defaults,
    HttpConfig,
    JournalSpec,
    Limits,
    MetricsConfig,
    Mongo,
    MuteTime,
    RunConfig,
    Source,
    Target,
    TemplateConfig,
    Webhook,
    redact_mongo_uri,
    redact_url,
)
from errord.fleet.runconfig import FleetConfig
from errord.fleetsettings import FleetSettings
from errord.journalsettings import JournalSettings
from errord.limitsettings import LimitsSettings
from errord.mutesettings import MuteTimeSettings
from errord.noticesettings import AlertmanagerSettings, TemplateSettings, WebhookSettings
from errord.settings import (
    CodeSettings,
    DefaultsSettings,
    HttpSettings,
    MetricsSettings,
    MongoSettings,
    NotifyTarget,
    Settings,
    SourceSettings,
)

# Each settings model and the part of RunConfig it becomes.
PARTS: dict[type[BaseModel], type[Any]] = {
    Settings: RunConfig,
    SourceSettings: Source,
    JournalSettings: JournalSpec,
    DefaultsSettings: Defaults,
    CodeSettings: CodeConfig,
    MongoSettings: Mongo,
    NotifyTarget: Target,
    MetricsSettings: MetricsConfig,
    MuteTimeSettings: MuteTime,
    LimitsSettings: Limits,
    HttpSettings: HttpConfig,
    TemplateSettings: TemplateConfig,
    WebhookSettings: Webhook,
    AlertmanagerSettings: Alertmanager,
    FleetSettings: FleetConfig,
}
# RunConfig fields that are no settings: where the settings came from (``Settings.load``
# keeps them as these private attributes).
ORIGIN = {"config_path": "_config_path", "file_has_secrets": "_file_has_secrets"}

# Every setting given, each value different from its default (and from the others).
FULL: dict[str, Any] = dict(
    server_id="h1",
    node_name="n1",
    scope="app",
    log_level="debug",
    sources=[
        {
            "path": "logs/*.jsonl",
            "app": "api",
            "start_at": "beginning",
            "rotate_wait": "2m",
            "timezone": "Europe/Berlin",
            "max_line_bytes": 4096,
        },
        {"path": "/var/log/other/*.log"},
        {"journal": {"units": ["myapp.service"], "matches": ["PRIORITY=3"]}, "app": "myapp"},
    ],
    defaults={"re_alert_time": "30m", "notify": False},
    codes={
        "db_down": {
            "re_alert_time": "5m",
            "notify": True,
            "tags": ["ops", "pager"],
            "inhibited_by": ["net_*"],
            "description": "Primary database unreachable",
            "runbook": "https://wiki.example/db_down",
            "labels": {"team": "payments"},
        },
        "quiet": {"notify": False},
    },
    mongodb={
        "uri": "mongodb://user:s3cret@db:27017/errord?authSource=admin&tlsCertificateKeyFilePassword=pw",
        "database": "hist",
        "collection": "incidents",
        "timeout": "2s",
        "write_concern": "majority",
    },
    notify=[
        {"url": "json://127.0.0.1:9/hook?token=abc", "tags": ["ops"], "template": "short", "format": "markdown"},
        {"url": "tgram://123456789:AAbottoken/42"},
    ],
    metrics={"listen": "[::1]:9464"},
    mute_times=[
        {
            "name": "nightly-backup",
            "codes": ["backup_*"],
            "apps": ["batch"],
            "weekdays": ["mon-fri"],
            "times": ["02:00-03:30"],
            "timezone": "Europe/Berlin",
        }
    ],
    limits={"notices": "20/1m", "group_wait": "10s"},
    http={"listen": "[::1]:9465", "token": "tok3n-s3cret"},
    display_timezone="Europe/Berlin",
    alertmanager=[{"url": "http://am1.example:9093"}, {"url": "http://am2.example:9093/"}],
    webhooks=[
        {
            "url": "https://hooks.example/in/s3cr3tpath",
            "headers": {"Authorization": "Bearer hooktoken"},
            "tags": ["ops"],
            "template": "short",
        }
    ],
    templates={
        "short": {
            **{f"{k}_title": f"{k} {{{{ code }}}}" for k in ("failure", "warning", "success", "digest", "flapping")},
            **{f"{k}_body": "{{ message }}" for k in ("failure", "warning", "success", "digest", "flapping")},
        }
    },
)


def full(tmp_path: Path) -> Settings:
    path = write_config(tmp_path / "errord.toml", state_dir="state", **FULL)
    path.chmod(0o600)
    return Settings.load(path, environ={})


def _run_type(tp: Any) -> Any:
    """The type a ``RunConfig`` field has where the settings field is annotated ``tp``:
    validators dropped, models replaced by their part, lists by tuples, dicts by
    read-only mappings."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        return _run_type(args[0])
    if tp in PARTS:
        return PARTS[tp]
    if origin is list:
        return tuple[_run_type(args[0]), ...]  # type: ignore[misc]
    if origin is dict:
        return Mapping[args[0], _run_type(args[1])]  # type: ignore[valid-type]
    if origin in (typing.Union, types.UnionType):  # X | None
        return functools.reduce(operator.or_, (_run_type(a) for a in args))
    return tp


@pytest.mark.parametrize("model", list(PARTS), ids=lambda m: m.__name__)
def test_settings_and_runconfig_describe_the_same_fields(model: type[BaseModel]) -> None:
    part = PARTS[model]
    assert dataclasses.is_dataclass(part) and part.__dataclass_params__.frozen  # type: ignore[attr-defined]
    names = [f.name for f in dataclasses.fields(part) if f.name not in ORIGIN]
    assert names == list(model.model_fields)  # the same, in the same order (check-config prints in it)
    hints = typing.get_type_hints(part)
    for name, field in model.model_fields.items():
        assert hints[name] == _run_type(field.annotation), name
    if model is Settings:
        assert sorted(ORIGIN.values()) == sorted(Settings.__private_attributes__)


def _same(setting: Any, run: Any) -> bool:
    """Whether a validated settings value and the RunConfig value made of it agree."""
    if isinstance(setting, BaseModel):
        return type(run) is PARTS[type(setting)] and all(
            _same(getattr(setting, name), getattr(run, name)) for name in type(setting).model_fields
        )
    if isinstance(setting, list):
        return isinstance(run, tuple) and len(run) == len(setting) and all(map(_same, setting, run))
    if isinstance(setting, dict):
        return run.keys() == setting.keys() and all(_same(v, run[k]) for k, v in setting.items())
    return type(run) is type(setting) and bool(run == setting)


def test_to_run_carries_every_value_and_the_dump_round_trips(tmp_path: Path) -> None:
    s = full(tmp_path)
    r = s.to_run()
    assert _same(s, r)
    assert (r.config_path, r.file_has_secrets) == (tmp_path / "errord.toml", True)
    # the daemon's image gets it as JSON (a memfd, or a reload's child) and builds the same value
    assert RunConfig.from_dump(orjson.loads(orjson.dumps(r.dump()))) == r
    empty = Settings(server_id="x").to_run()  # defaults, no file
    assert RunConfig.from_dump(orjson.loads(orjson.dumps(empty.dump()))) == empty and empty.config_path is None


def test_runconfig_is_frozen_and_replace_copies(tmp_path: Path) -> None:
    r = full(tmp_path).to_run()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.node_name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.sources[0].path = "/elsewhere"  # type: ignore[misc]
    moved = dataclasses.replace(r, state_dir=Path("/elsewhere"))
    assert moved.state_dir == Path("/elsewhere") and moved.sources is r.sources and r.state_dir == tmp_path / "state"


def test_runconfig_answers_the_per_code_lookups(tmp_path: Path) -> None:
    r = full(tmp_path).to_run()
    assert [(r.re_alert_for(c), r.notify_for(c), r.tags_for(c)) for c in ("db_down", "quiet", "other")] == [
        (300.0, True, ("ops", "pager")),
        (1800.0, False, ()),
        (1800.0, False, ()),
    ]
    assert r.sources[0].tzinfo.key == "Europe/Berlin" and r.mongodb is not None and r.mongodb.w == "majority"
    assert r.metrics is not None and (r.metrics.host, r.metrics.port) == ("::1", 9464)


def test_the_daemon_image_builds_its_config_without_pydantic(tmp_path: Path) -> None:
    dump = tmp_path / "dump.json"
    dump.write_bytes(orjson.dumps(full(tmp_path).to_run().dump()))
    code = (
        "import sys, orjson; from errord.config import RunConfig; import errord.serve, errord.daemon; "
        f"r = RunConfig.from_dump(orjson.loads(open({str(dump)!r}, 'rb').read())); "
        "r.re_alert_for('db_down'); r.redacted(); r.secret_warnings(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'pydantic_settings')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_redacted_is_the_check_config_output(tmp_path: Path) -> None:
    """What ``errord check-config`` prints (CONTRACT §3: secrets never in full), unchanged
    since the config was one pydantic object."""
    data = full(tmp_path).to_run().redacted()
    assert json.dumps(data) == json.dumps(expected_check_config(tmp_path))


def expected_check_config(tmp_path: Path) -> dict[str, Any]:
    """``errord check-config`` of ``FULL`` in ``tmp_path``, as errord printed it before issue 12
    (plus issue 14's ``inhibited_by`` and ``mute_times``, issue 17's notice keys, issue 18's
    source ``format``, ``app_from``, ``fields``)."""
    kinds = ("failure", "warning", "success", "digest", "flapping")
    return {
        "server_id": "h1",
        "node_name": "n1",
        "state_dir": f"{tmp_path}/state",
        "scope": "app",
        "log_level": "DEBUG",
        "sources": [
            {
                "path": f"{tmp_path}/logs/*.jsonl",
                "journal": None,
                "app": "api",
                "start_at": "beginning",
                "rotate_wait": 120.0,
                "timezone": "Europe/Berlin",
                "max_line_bytes": 4096,
                "format": "json",
                "app_from": None,
                "fields": {},
            },
            {
                "path": "/var/log/other/*.log",
                "journal": None,
                "app": None,
                "start_at": "end",
                "rotate_wait": 60.0,
                "timezone": "UTC",
                "max_line_bytes": 1048576,
                "format": "json",
                "app_from": None,
                "fields": {},
            },
            {
                "path": None,
                "journal": {"units": ["myapp.service"], "directory": None, "file": None, "matches": ["PRIORITY=3"]},
                "app": "myapp",
                "start_at": "end",
                "rotate_wait": 60.0,
                "timezone": "UTC",
                "max_line_bytes": 1048576,
                "format": "json",
                "app_from": None,
                "fields": {},
            },
        ],
        "defaults": {
            "re_alert_time": 1800.0,
            "notify": False,
            "re_alert_backoff": 1.0,
            "re_alert_max": 86400.0,
            "remind_every": 0.0,
            "auto_resolve_after": 0.0,
            "flap_threshold": 0,
            "flap_window": 1800.0,
        },
        "codes": {
            "db_down": {
                "re_alert_time": 300.0,
                "notify": True,
                "tags": ["ops", "pager"],
                "inhibited_by": ["net_*"],
                "re_alert_backoff": None,
                "re_alert_max": None,
                "remind_every": None,
                "auto_resolve_after": None,
                "flap_threshold": None,
                "flap_window": None,
                "description": "Primary database unreachable",
                "runbook": "https://wiki.example/db_down",
                "labels": {"team": "payments"},
            },
            "quiet": {
                "re_alert_time": None,
                "notify": False,
                "tags": [],
                "inhibited_by": [],
                "re_alert_backoff": None,
                "re_alert_max": None,
                "remind_every": None,
                "auto_resolve_after": None,
                "flap_threshold": None,
                "flap_window": None,
                "description": None,
                "runbook": None,
                "labels": {},
            },
        },
        "mongodb": {
            "uri": "mongodb://user:***@db:27017/errord?authSource=admin&tlsCertificateKeyFilePassword=***",
            "database": "hist",
            "collection": "incidents",
            "timeout": 2.0,
            "write_concern": "majority",
        },
        "notify": [
            {
                "url": "json://127.0.0.1:9/…",
                "tags": ["ops"],
                "key": "fe27214b8492ee86",
                "template": "short",
                "format": "markdown",
            },
            {"url": "tgram://…", "tags": [], "key": "0f8589c47fedb198", "template": None, "format": "text"},
        ],
        "metrics": {"listen": "[::1]:9464"},
        "mute_times": [
            {
                "name": "nightly-backup",
                "codes": ["backup_*"],
                "apps": ["batch"],
                "weekdays": ["mon-fri"],
                "times": ["02:00-03:30"],
                "timezone": "Europe/Berlin",
            }
        ],
        "limits": {"notices": "20/1m", "group_wait": 10.0, "max_open_incidents": 10000},
        "http": {"listen": "[::1]:9465", "token": "***"},
        "display_timezone": "Europe/Berlin",
        "templates": {
            "short": {
                key: f"{k} {{{{ code }}}}" if part == "title" else "{{ message }}"
                for k in kinds
                for part in ("title", "body")
                for key in [f"{k}_{part}"]
            }
        },
        "webhooks": [
            {
                "url": "https://hooks.example/…",
                "headers": {"Authorization": "***"},
                "tags": ["ops"],
                "template": "short",
                "key": Webhook("https://hooks.example/in/s3cr3tpath", {}, ()).key,
            }
        ],
        "alertmanager": [
            {"url": "http://am1.example:9093/…", "key": Alertmanager("http://am1.example:9093").key},
            {"url": "http://am2.example:9093/…", "key": Alertmanager("http://am2.example:9093/").key},
        ],
        "fleet": None,
    }


def test_repr_hides_secrets(tmp_path: Path) -> None:
    r = full(tmp_path).to_run()
    assert "s3cret" not in repr(r) and "token=abc" not in repr(r) and "bottoken" not in repr(r)
    assert "user:***@db" in repr(r.mongodb) and "json://127.0.0.1:9/…" in repr(r.notify[0])


# --- redaction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("tgram://123456:ABCDEF/987654", "tgram://…"),
        ("slack://TokenA/TokenB/TokenC/#chan", "slack://…"),
        ("mailto://user:pass@gmail.com", "mailto://…"),
        ("https://user:pass@hooks.example.com:8443/secret/path?token=x", "https://hooks.example.com:8443/…"),
        ("http://hooks.example.com", "http://hooks.example.com/…"),
        ("json://u:p@localhost:8080/path", "json://localhost:8080/…"),
        ("jsons://host.example/a?b=c", "jsons://host.example/…"),
        ("form://user@host.example/x", "form://host.example/…"),
        ("xml://host.example:81", "xml://host.example:81/…"),
        ("JSON://u:p/w@host/x", "JSON://host/…"),
        ("not a url", "***"),
        ("", "***"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("mongodb://localhost:27017", "mongodb://localhost:27017"),
        (
            "mongodb://admin:pw@h1:27017,h2:27017/errord?replicaSet=rs0&authSource=admin",
            "mongodb://admin:***@h1:27017,h2:27017/errord?replicaSet=rs0&authSource=admin",
        ),
        ("mongodb+srv://u:p%40ss@cluster.example.net/db", "mongodb+srv://u:***@cluster.example.net/db"),
        ("mongodb://user@h/db", "mongodb://user@h/db"),
        ("mongodb://u:pa/ss@h/db", "mongodb://u:***@h/db"),
        (
            "mongodb://h/?tlsCertificateKeyFilePassword=x&authMechanismProperties=AWS_SESSION_TOKEN:t",
            "mongodb://h/?tlsCertificateKeyFilePassword=***&authMechanismProperties=***",
        ),
        ("garbage", "***"),
    ],
)
def test_redact_mongo_uri(uri: str, shown: str) -> None:
    assert redact_mongo_uri(uri) == shown


def test_notify_target_key_and_redacted() -> None:
    t = NotifyTarget(url="tgram://bottoken/ChatID", tags=["ops"]).to_run()
    assert t.key == hashlib.sha256(b"tgram://bottoken/ChatID").hexdigest()[:16]
    assert len(t.key) == 16 and t.redacted == "tgram://…"
    assert Target(url="tgram://other/1", tags=()).key != t.key
