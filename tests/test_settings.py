"""Settings: TOML + ERRORD_ environment, validation messages, paths; what ``to_run()`` makes of them."""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from errord import settings as settings_mod
from errord.errors import ConfigError
from errord.settings import Settings

REPO = Path(__file__).resolve().parent.parent
SECRET = "s3cr3tPW"


def write(tmp_path: Path, text: str, name: str = "errord.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str, environ: Mapping[str, str] | None = None) -> Settings:
    return Settings.load(write(tmp_path, text), environ=environ or {})


def problems(tmp_path: Path, text: str, environ: Mapping[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, environ)
    return info.value.problems


@pytest.fixture
def no_default_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    absent = tmp_path / "etc" / "errord.toml"
    monkeypatch.setattr(settings_mod, "DEFAULT_CONFIG", absent)
    return absent


# --- defaults and files ---------------------------------------------------------------


def test_defaults_when_default_file_is_missing(no_default_file: Path) -> None:
    s = Settings.load(environ={})
    assert s.config_path is None
    assert s.server_id == socket.gethostname()
    assert s.node_name == ""
    assert s.state_dir == Path("/var/lib/errord")
    assert s.scope == "code"
    assert s.log_level == "INFO"
    assert s.sources == [] and s.codes == {} and s.notify == []
    assert s.mongodb is None and s.metrics is None
    assert s.defaults.re_alert_time == 3600.0 and s.defaults.notify is True


def test_source_defaults(tmp_path: Path) -> None:
    s = load(tmp_path, '[[sources]]\npath = "/logs/*.jsonl"\n')
    src = s.sources[0]
    assert (src.path, src.app, src.start_at) == ("/logs/*.jsonl", None, "end")
    assert (src.rotate_wait, src.timezone, src.max_line_bytes) == (60.0, "UTC", 1048576)


def test_example_file_loads() -> None:
    path = REPO / "config" / "errord.example.toml"
    s = Settings.load(path, environ={})
    assert s.config_path == path
    assert (s.server_id, s.node_name, s.scope) == ("v4vapp", "voltage", "code")
    assert s.state_dir == Path("/var/lib/errord")
    [src] = s.sources
    assert (src.path, src.app, src.start_at) == ("/var/log/myapp/*.jsonl*", "myapp", "end")
    assert (src.rotate_wait, src.timezone, src.max_line_bytes) == (60.0, "UTC", 1048576)
    assert s.defaults.re_alert_time == 3600.0
    assert s.codes["api_rate_limit"].re_alert_time == 900.0
    assert s.codes["api_rate_limit"].tags == ["ops"]
    assert s.mongodb is None and s.notify == [] and s.metrics is None


def test_example_file_commented_sections_are_valid(tmp_path: Path) -> None:
    text = (REPO / "config" / "errord.example.toml").read_text()
    uncommented = "\n".join(line[2:] if re.match(r"# (\[|\w+ = )", line) else line for line in text.splitlines())
    s = load(tmp_path, uncommented)
    assert s.mongodb is not None and s.mongodb.uri == "mongodb://localhost:27017"
    assert s.mongodb.timeout == 5.0 and s.mongodb.to_run().w == 1
    assert [t.url for t in s.notify] == ["tgram://bottoken/ChatID"]
    assert s.metrics is not None and (s.metrics.to_run().host, s.metrics.to_run().port) == ("127.0.0.1", 9464)
    assert s.codes["api_rate_limit"].inhibited_by == ["db_*"]
    assert s.codes["api_rate_limit"].labels == {"team": "payments"} and s.display_timezone == "Europe/Berlin"
    assert s.notify[0].template == "short" and s.templates["short"].failure_title is not None
    assert [w.url for w in s.webhooks] == ["https://incidents.example/hook"]
    assert [a.url for a in s.alertmanager] == ["http://127.0.0.1:9093"]
    assert [(m.name, m.weekdays, m.times, m.timezone) for m in s.mute_times] == [
        ("nightly-backup", ["mon-fri"], ["02:00-03:30"], "Europe/Berlin")
    ]


def test_dev_file_points_at_repo_var() -> None:
    s = Settings.load(REPO / "config" / "errord.dev.toml", environ={})
    assert s.state_dir == REPO / "var" / "lib" / "errord"
    assert [src.path for src in s.sources] == [str(REPO / "var" / "log" / "*.jsonl*")]
    assert s.sources[0].start_at == "end" and s.sources[0].rotate_wait == 60.0
    assert s.notify == []


def test_errord_config_env_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'node_name = "from-env-path"\n', "other.toml")
    s = Settings.load(environ={"ERRORD_CONFIG": str(path)})
    assert s.node_name == "from-env-path" and s.config_path == path


def test_path_argument_wins_over_errord_config(tmp_path: Path) -> None:
    a = write(tmp_path, 'node_name = "a"\n', "a.toml")
    b = write(tmp_path, 'node_name = "b"\n', "b.toml")
    assert Settings.load(a, environ={"ERRORD_CONFIG": str(b)}).node_name == "a"


def test_default_file_is_used_when_present(no_default_file: Path) -> None:
    no_default_file.parent.mkdir()
    no_default_file.write_text('node_name = "etc"\n')
    s = Settings.load(environ={})
    assert s.node_name == "etc" and s.config_path == no_default_file


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml: config file not found"):
        Settings.load(missing, environ={})
    with pytest.raises(ConfigError, match=r"nope\.toml: config file not found"):
        Settings.load(environ={"ERRORD_CONFIG": str(missing)})


def test_invalid_toml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'node_name = "x"\nscope = \n')
    with pytest.raises(ConfigError) as info:
        Settings.load(path, environ={})
    [line] = info.value.problems
    assert line.startswith(f"{path}: invalid TOML") and "line 2" in line


def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"^{tmp_path}: cannot read config file"):
        Settings.load(tmp_path, environ={})  # a directory
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b'node_name = "\xff"\n')
    with pytest.raises(ConfigError, match=r"bin\.toml: not valid UTF-8"):
        Settings.load(binary, environ={})


def test_file_without_read_permission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "")

    def denied(self: Path) -> bytes:  # chmod 000 does not stop root, which CI may be
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(ConfigError, match=r"errord\.toml: cannot read config file: Permission denied"):
        Settings.load(path, environ={})


# --- environment -----------------------------------------------------------------------


def test_environment_overrides_file(tmp_path: Path) -> None:
    env = {
        "ERRORD_NODE_NAME": "env-node",
        "ERRORD_DEFAULTS__RE_ALERT_TIME": "15m",
        "ERRORD_MONGODB__URI": "mongodb://db.example:27017",
        "ERRORD_NOTIFY": json.dumps([{"url": "json://hook.example/x", "tags": ["ops"]}]),
        "ERRORD_CODES__DISK_FULL__NOTIFY": "false",
    }
    s = load(
        tmp_path,
        'node_name = "file-node"\nserver_id = "file-server"\n'
        "[defaults]\nre_alert_time = 60\nnotify = false\n"
        '[mongodb]\nuri = "mongodb://file:27017"\ndatabase = "filedb"\n',
        env,
    )
    assert s.node_name == "env-node" and s.server_id == "file-server"
    assert s.defaults.re_alert_time == 900.0 and s.defaults.notify is False  # deep merge
    assert s.mongodb is not None
    assert (s.mongodb.uri, s.mongodb.database) == ("mongodb://db.example:27017", "filedb")
    assert [(t.url, t.tags) for t in s.notify] == [("json://hook.example/x", ["ops"])]
    assert s.codes["disk_full"].notify is False  # env names are case-insensitive


def test_sources_list_from_environment_json(tmp_path: Path) -> None:
    sources = [{"path": "/a/*.jsonl", "app": "a"}, {"path": "/b/*.log", "start_at": "beginning"}]
    s = load(tmp_path, '[[sources]]\npath = "/file/*.jsonl"\n', {"ERRORD_SOURCES": json.dumps(sources)})
    assert [(x.path, x.app, x.start_at) for x in s.sources] == [
        ("/a/*.jsonl", "a", "end"),
        ("/b/*.log", None, "beginning"),
    ]


def test_invalid_json_in_environment(tmp_path: Path) -> None:
    assert problems(tmp_path, "", {"ERRORD_SOURCES": "not json"}) == [
        "ERRORD_SOURCES: not valid JSON (lists and tables need JSON)"
    ]


def test_environment_values_are_validated(tmp_path: Path) -> None:
    assert problems(tmp_path, "", {"ERRORD_DEFAULTS__RE_ALERT_TIME": "soon"})[0].startswith(
        "defaults.re_alert_time: not a duration: 'soon'"
    )


def test_only_the_given_environ_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_default_file: Path) -> None:
    monkeypatch.setenv("ERRORD_NODE_NAME", "leaked")
    monkeypatch.setenv("ERRORD_CONFIG", str(tmp_path / "missing.toml"))
    assert Settings.load(environ={}).node_name == ""
    assert Settings(server_id="x").node_name == ""  # direct construction reads nothing


def test_os_environ_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, 'node_name = "file"\n')
    monkeypatch.setenv("ERRORD_NODE_NAME", "os-env")
    monkeypatch.setenv("ERRORD_CONFIG", str(path))
    s = Settings.load()
    assert s.node_name == "os-env" and s.config_path == path


# --- durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml_value", "seconds"),
    [
        ("900", 900.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ('"900"', 900.0),
        ('"500ms"', 0.5),
        ('"90s"', 90.0),
        ('"15m"', 900.0),
        ('"1h30m"', 5400.0),
        ('"2d"', 172800.0),
        ('"1w"', 604800.0),
        ('"PT15M"', 900.0),
        ('"P1DT2H"', 93600.0),
        ('"0:15:00"', 900.0),
        ('"1 day, 2:00:00"', 93600.0),
        ('"datetime.timedelta(seconds=900)"', 900.0),
        ('"datetime.timedelta(days=1, seconds=60)"', 86460.0),
    ],
)
def test_duration_forms(tmp_path: Path, toml_value: str, seconds: float) -> None:
    s = load(
        tmp_path,
        f"[defaults]\nre_alert_time = {toml_value}\n"
        f'[[sources]]\npath = "/l/*"\nrotate_wait = {toml_value}\n'
        f"[codes.c]\nre_alert_time = {toml_value}\n"
        f'[mongodb]\nuri = "mongodb://h"\ntimeout = {toml_value if seconds else 1}\n',
    )
    assert s.defaults.re_alert_time == seconds
    assert s.sources[0].rotate_wait == seconds
    assert s.codes["c"].re_alert_time == seconds
    assert s.mongodb is not None and s.mongodb.timeout == (seconds or 1.0)


# --- validation messages ------------------------------------------------------------------


def test_several_problems_give_several_lines(tmp_path: Path) -> None:
    got = problems(
        tmp_path,
        'scope = "host"\nlog_level = "loud"\n'
        '[[sources]]\npath = "/l/*"\n'
        '[[sources]]\npath = "/m/*"\nstart_at = "middle"\nmax_line_bytes = 10\n'
        '[defaults]\nre_alert_time = "abc"\nnotify = "maybe"\n',
    )
    assert got == [
        "scope: Input should be 'code' or 'app'",
        "log_level: unknown log level 'loud' (use DEBUG, INFO, WARNING or ERROR)",
        "sources.1.start_at: Input should be 'end' or 'beginning'",
        "sources.1.max_line_bytes: Input should be greater than or equal to 256",
        "defaults.re_alert_time: not a duration: 'abc' (use seconds, '90s', '15m', '1h30m', "
        "'2d', 'PT15M', '0:15:00' or 'datetime.timedelta(seconds=900)')",
        "defaults.notify: Input should be a valid boolean, unable to interpret input",
    ]
    assert not any("http" in line or "pydantic" in line for line in got)


def test_missing_required_keys(tmp_path: Path) -> None:
    assert problems(tmp_path, '[[sources]]\napp = "a"\n[mongodb]\ndatabase = "d"\n') == [
        "sources.0.path: Field required",
        "mongodb.uri: Field required",
    ]


def test_negative_duration_and_bad_code_table(tmp_path: Path) -> None:
    assert problems(tmp_path, '[codes.x]\nre_alert_time = -5\nnotify = 3\ntags = "ops"\n') == [
        "codes.x.re_alert_time: negative duration: -5",
        "codes.x.notify: Input should be a valid boolean, unable to interpret input",
        "codes.x.tags: Input should be a valid list",
    ]


def test_unknown_keys_are_reported(tmp_path: Path) -> None:
    got = problems(
        tmp_path,
        'sever_id = "x"\n[defaults]\nre_alert_tme = "5m"\n'
        '[[sources]]\npath = "/l/*"\nzzz = 1\n[codes.c]\ntag = ["a"]\n[metrics]\nlisten_on = "x"\n',
    )
    assert got == [  # field order; unknown keys of a table after its known ones
        "sources.0.zzz: unknown key",
        "defaults.re_alert_tme: unknown key (did you mean 're_alert_time'?)",
        "codes.c.tag: unknown key (did you mean 'tags'?)",
        "metrics.listen_on: unknown key (did you mean 'listen'?)",
        "sever_id: unknown key (did you mean 'server_id'?)",
    ]


def test_unknown_nested_key_from_environment(tmp_path: Path) -> None:
    assert problems(tmp_path, "", {"ERRORD_DEFAULTS__NOTIFI": "true"}) == [
        "ERRORD_DEFAULTS__NOTIFI: names no setting (did you mean ERRORD_DEFAULTS__NOTIFY?)"
    ]


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("ERRORD_DEFAULT__NOTIFY", "names no setting (did you mean ERRORD_DEFAULTS__NOTIFY?)"),
        ("errord_default__notify", "names no setting (did you mean ERRORD_DEFAULTS__NOTIFY?)"),
        ("ERRORD_SEVER_ID", "names no setting (did you mean ERRORD_SERVER_ID?)"),
        ("ERRORD_DEFAULT__NOTIFI", "names no setting (did you mean ERRORD_DEFAULTS__NOTIFY?)"),
        ("ERRORD_CODES__DB_DOWN__NOTIFI", "names no setting (did you mean ERRORD_CODES__DB_DOWN__NOTIFY?)"),
        ("ERRORD_MONGODB__URL", "names no setting (did you mean ERRORD_MONGODB__URI?)"),
        ("ERRORD_XYZZY", "names no setting"),
        ("ERRORD_", "names no setting"),
        ("ERRORD_SERVER_ID__NAME", "names no setting (server_id is a value, not a table)"),
        ("ERRORD_DEFAULTS__NOTIFY__X", "names no setting (defaults.notify is a value, not a table)"),
        ("ERRORD_SOURCES__0__PATH", "names no setting (sources is a list: give all of it as JSON in ERRORD_SOURCES)"),
        ("errord_config", "names no setting (the config file is named by ERRORD_CONFIG, in upper case)"),
    ],
)
def test_environment_variable_that_names_no_setting(tmp_path: Path, name: str, problem: str) -> None:
    # pydantic-settings looks up only names it knows: these were silently dropped
    assert problems(tmp_path, '[[sources]]\npath = "/l/*"\n', {name: "false"}) == [f"{name}: {problem}"]


def test_unknown_variables_are_listed_with_the_other_problems(tmp_path: Path) -> None:
    got = problems(
        tmp_path,
        'scope = "everything"\n',
        {"ERRORD_DEFAULT__NOTIFY": "false", "ERRORD_SEVER_ID": "x", "ERRORD_NODE_NAME": "ok"},
    )
    assert got[:2] == [
        "ERRORD_DEFAULT__NOTIFY: names no setting (did you mean ERRORD_DEFAULTS__NOTIFY?)",
        "ERRORD_SEVER_ID: names no setting (did you mean ERRORD_SERVER_ID?)",
    ]
    assert len(got) == 3 and got[2].startswith("scope: ")


def test_variables_that_are_not_settings_and_any_case_are_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, '[[sources]]\npath = "/l/*"\n')
    s = Settings.load(
        None,
        environ={
            "ERRORD_CONFIG": str(path),  # names the file, not a setting
            "ERRORD_TEST_SEED": "42",
            "ERRORD_TEST_MONGODB_URI": "mongodb://x",  # the test suite's own
            "errord_defaults__notify": "false",
            "Errord_Codes__DB__Re_Alert_Time": "5m",  # case-insensitive
            "ERRORDX": "1",
            "MY_ERRORD_THING": "1",  # other prefixes
        },
    )
    assert s.config_path == path and s.defaults.notify is False and s.codes["db"].re_alert_time == 300.0


def test_a_typo_in_the_environment_refuses_run_and_check_config(make_errord) -> None:  # type: ignore[no-untyped-def]
    e = make_errord()
    e.env["ERRORD_DEFAULT__NOTIFY"] = "false"  # the operator believes errord is silent
    for cmd in ("check-config", "run"):
        res = e.cli(cmd, check=False, timeout=20)
        assert res.returncode == 2, res.stderr
        assert res.stderr.splitlines() == [
            "errord: config: ERRORD_DEFAULT__NOTIFY: names no setting (did you mean ERRORD_DEFAULTS__NOTIFY?)"
        ]
        assert res.stdout == ""


# --- sources are required to run ------------------------------------------------------


def test_no_sources_are_refused_where_the_daemon_would_read(tmp_path: Path, no_default_file: Path) -> None:
    empty = load(tmp_path, "")
    assert empty.sources == []  # the read commands load it as it is
    with pytest.raises(ConfigError) as info:
        empty.require_sources()
    both = (  # the config key and the environment alternative, whichever is missing
        'add a [[sources]] table with a path glob (path = "/var/log/app/*.jsonl"), '
        """or set ERRORD_SOURCES='[{"path": "/var/log/app/*.jsonl"}]' in the environment"""
    )
    assert info.value.problems == [
        f"sources: nothing to read: {tmp_path / 'errord.toml'} has no [[sources]] table; {both}"
    ]
    with pytest.raises(ConfigError) as info:
        Settings.load(environ={}).require_sources()  # no /etc/errord/errord.toml
    assert info.value.problems == [
        f"sources: nothing to read: there is no {settings_mod.DEFAULT_CONFIG} (name a "
        f"config file with -c FILE or $ERRORD_CONFIG); {both}"
    ]
    Settings.load(environ={"ERRORD_SOURCES": '[{"path": "/l/*"}]'}).require_sources()
    load(tmp_path, '[[sources]]\npath = "/l/*"\n').require_sources()


def test_log_level_is_case_insensitive(tmp_path: Path) -> None:
    assert load(tmp_path, 'log_level = "debug"\n').log_level == "DEBUG"


@pytest.mark.parametrize(
    ("zone", "ok"),
    [
        ("UTC", True),
        ("Europe/Berlin", True),
        ("America/New_York", True),
        ("Mars/Olympus", False),
        ("", False),
        ("../../etc/passwd", False),
        ("Europe", False),
    ],
)
def test_timezone_validation(tmp_path: Path, zone: str, ok: bool) -> None:
    text = f'[[sources]]\npath = "/l/*"\ntimezone = "{zone}"\n'
    if ok:
        src = load(tmp_path, text).to_run().sources[0]
        assert src.tzinfo == ZoneInfo(zone)
    else:
        assert problems(tmp_path, text) == [
            f"sources.0.timezone: unknown time zone {zone!r} (use an IANA name such as 'UTC' or 'Europe/Berlin')"
        ]


@pytest.mark.parametrize(("value", "w"), [('"1"', 1), ("0", 0), ("2", 2), ('"majority"', "majority")])
def test_write_concern_accepted(tmp_path: Path, value: str, w: int | str) -> None:
    s = load(tmp_path, f'[mongodb]\nuri = "mongodb://h"\nwrite_concern = {value}\n')
    assert s.mongodb is not None and s.mongodb.to_run().w == w and s.mongodb.write_concern == str(w)


@pytest.mark.parametrize("value", ['"all"', "-1", '"1.5"', '""'])
def test_write_concern_refused(tmp_path: Path, value: str) -> None:
    assert problems(tmp_path, f'[mongodb]\nuri = "mongodb://h"\nwrite_concern = {value}\n') == [
        "mongodb.write_concern: should be 'majority' or a number of nodes such as '1'"
    ]


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("127.0.0.1:9464", "127.0.0.1", 9464),
        ("0.0.0.0:0", "0.0.0.0", 0),
        ("[::1]:65535", "::1", 65535),
        ("localhost:80", "localhost", 80),
    ],
)
def test_metrics_listen(tmp_path: Path, listen: str, host: str, port: int) -> None:
    m = load(tmp_path, f'[metrics]\nlisten = "{listen}"\n').to_run().metrics
    assert m is not None and (m.host, m.port) == (host, port)


def test_metrics_listen_defaults_when_table_is_empty(tmp_path: Path) -> None:
    m = load(tmp_path, "[metrics]\n").metrics
    assert m is not None and m.listen == "127.0.0.1:9464"


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("9464", "expected host:port, got '9464'"),
        (":9464", "expected host:port, got ':9464'"),
        ("h:65536", "port must be 0-65535, got '65536'"),
        ("h:", "port must be 0-65535, got ''"),
        ("h:http", "port must be 0-65535, got 'http'"),
    ],
)
def test_metrics_listen_refused(tmp_path: Path, listen: str, message: str) -> None:
    assert problems(tmp_path, f'[metrics]\nlisten = "{listen}"\n') == [f"metrics.listen: {message}"]


# --- paths -------------------------------------------------------------------------------


def test_relative_paths_resolve_against_config_folder(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    s = load(conf, 'state_dir = "state"\n[[sources]]\npath = "../logs/*.jsonl"\n')
    assert s.state_dir == tmp_path / "conf" / "state"
    assert s.sources[0].path == str(tmp_path / "logs" / "*.jsonl")


def test_relative_paths_from_environment_resolve_against_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_default_file: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"ERRORD_STATE_DIR": "st", "ERRORD_SOURCES": '[{"path": "logs/*.jsonl"}]'}
    s = Settings.load(environ=env)
    assert s.state_dir == tmp_path / "st"
    assert s.sources[0].path == str(tmp_path / "logs" / "*.jsonl")


def test_home_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    s = load(tmp_path, 'state_dir = "~/st"\n[[sources]]\npath = "~/logs/*.jsonl"\n')
    assert s.state_dir == tmp_path / "home" / "st"
    assert s.sources[0].path == str(tmp_path / "home" / "logs" / "*.jsonl")


def test_empty_source_path_is_refused(tmp_path: Path) -> None:
    assert problems(tmp_path, '[[sources]]\npath = ""\n') == ["sources.0.path: String should have at least 1 character"]


# --- per-code policy ---------------------------------------------------------------------


def test_per_code_lookups(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        '[defaults]\nre_alert_time = "1h"\nnotify = true\n'
        '[codes.fast]\nre_alert_time = "15m"\ntags = ["ops", "pager"]\n'
        "[codes.quiet]\nnotify = false\n"
        "[codes.zero]\nre_alert_time = 0\n",
    ).to_run()
    assert s.re_alert_for("fast") == 900.0
    assert s.re_alert_for("quiet") == 3600.0
    assert s.re_alert_for("zero") == 0.0
    assert s.re_alert_for("unknown") == 3600.0
    assert s.notify_for("quiet") is False
    assert s.notify_for("fast") is True and s.notify_for("unknown") is True
    assert s.tags_for("fast") == ("ops", "pager")
    assert s.tags_for("quiet") == () and s.tags_for("unknown") == ()


def test_defaults_notify_false_applies_to_codes_without_override(tmp_path: Path) -> None:
    s = load(tmp_path, "[defaults]\nnotify = false\n[codes.loud]\nnotify = true\n").to_run()
    assert s.notify_for("other") is False and s.notify_for("loud") is True


# --- secrets -----------------------------------------------------------------------------


SECRET_CONFIG = f"""
[mongodb]
uri = "mongodb://errord:{SECRET}@db.example:27017/errord?authSource=admin"
[[notify]]
url = "tgram://{SECRET}/42"
tags = ["ops"]
[[notify]]
url = "json://user:{SECRET}@hooks.example:8080/{SECRET}?k={SECRET}"
"""


def test_redacted_hides_every_secret(tmp_path: Path) -> None:
    s = load(tmp_path, SECRET_CONFIG)
    r = s.to_run()
    data = r.redacted()
    dumped = json.dumps(data)  # plain JSON-able data
    assert SECRET not in dumped
    assert data["mongodb"]["uri"] == "mongodb://errord:***@db.example:27017/errord?authSource=admin"
    assert [t["url"] for t in data["notify"]] == ["tgram://…", "json://hooks.example:8080/…"]
    assert [t["key"] for t in data["notify"]] == [t.key for t in r.notify]
    assert data["defaults"]["re_alert_time"] == 3600.0
    assert SECRET not in str(s) and SECRET not in repr(s)
    assert SECRET not in repr(s.mongodb) and SECRET not in repr(s.notify)
    assert SECRET not in str(r) and SECRET not in repr(r)
    assert SECRET not in repr(r.mongodb) and SECRET not in repr(r.notify)
    assert s.mongodb is not None and SECRET in s.mongodb.uri  # the real value is kept
    assert r.mongodb is not None and r.mongodb.uri == s.mongodb.uri


def test_error_messages_do_not_echo_secrets(tmp_path: Path) -> None:
    got = problems(
        tmp_path,
        f'[mongodb]\nuri = "mysql://root:{SECRET}@h"\n[[notify]]\nurl = "{SECRET}"\n',
        {"ERRORD_MONGODB__TIMEOUT": "0"},
    )
    assert got == [
        "mongodb.uri: should start with 'mongodb://' or 'mongodb+srv://'",
        "mongodb.timeout: Input should be greater than 0",
        "notify.0.url: not an Apprise URL (expected scheme://...)",
    ]
    assert SECRET not in "\n".join(got)


def test_secret_warnings_on_group_readable_file(tmp_path: Path) -> None:
    path = write(tmp_path, SECRET_CONFIG)
    path.chmod(0o644)
    [warning] = Settings.load(path, environ={}).to_run().secret_warnings()
    assert str(path) in warning and "0644" in warning and SECRET not in warning
    path.chmod(0o600)
    assert Settings.load(path, environ={}).to_run().secret_warnings() == []


def test_no_secret_warning_without_secrets(tmp_path: Path) -> None:
    path = write(tmp_path, '[mongodb]\nuri = "mongodb://user@h"\n[[sources]]\npath = "/l/*"\n')
    path.chmod(0o644)
    assert Settings.load(path, environ={}).to_run().secret_warnings() == []
    env = {"ERRORD_NOTIFY": '[{"url": "tgram://t/1"}]'}  # secret from env, not in the file
    assert Settings.load(path, environ=env).to_run().secret_warnings() == []


def test_mongo_password_alone_triggers_warning(tmp_path: Path) -> None:
    path = write(tmp_path, f'[mongodb]\nuri = "mongodb://u:{SECRET}@h"\n')
    path.chmod(0o640)
    assert len(Settings.load(path, environ={}).to_run().secret_warnings()) == 1


def test_config_path_is_not_a_field(tmp_path: Path) -> None:
    s = load(tmp_path, "")
    assert s.config_path == tmp_path / "errord.toml"
    assert "config_path" not in s.model_dump() and "config_path" not in s.to_run().redacted()
    assert os.path.isabs(s.to_run().redacted()["state_dir"])
