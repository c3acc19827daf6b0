"""mutesettings: ``[[mute_times]]`` and ``[codes.C] inhibited_by`` validated, each problem
one line naming its key (CONTRACT §3, §8), through ``errord check-config``'s exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from errord.errors import ConfigError
from errord.settings import Settings

HEAD = '[[sources]]\npath = "/tmp/errord-test-nothing/*.jsonl"\n'


def load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "errord.toml"
    path.write_text(HEAD + text)
    return Settings.load(path, environ={})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[codes.api]\ninhibited_by = ["db down"]', "codes.api.inhibited_by: pattern 'db down' holds whitespace"),
        ('[[mute_times]]\nname = "a"\nweekdays = ["mon-fry"]', "mute_times.0.weekdays: unknown weekday 'fry'"),
        ('[[mute_times]]\nname = "a"\ntimes = ["22:00-25:00"]', "mute_times.0.times: bad time '25:00'"),
        ('[[mute_times]]\nname = "a"\ntimes = ["22:00"]', "mute_times.0.times: bad time range '22:00'"),
        ('[[mute_times]]\nname = "a"\ntimes = ["03:00-03:00"]', "mute_times.0.times: empty time range"),
        ('[[mute_times]]\nname = "a"\ntimezone = "Mars/Olympus"', "mute_times.0.timezone: unknown time zone"),
        ('[[mute_times]]\nname = "a"\ncodes = [""]', "mute_times.0.codes: pattern '' must not be empty"),
        ('[[mute_times]]\ncodes = ["x"]', "mute_times.0.name: Field required"),
        ('[[mute_times]]\nname = "a"\nwindow = "x"', "mute_times.0.window: unknown key"),
    ],
)
def test_bad_control_settings_name_their_key(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems


def test_defaults_keep_todays_behaviour_and_values_are_carried(tmp_path: Path) -> None:
    r = load(tmp_path, "").to_run()
    assert r.mute_times == () and r.inhibited_by_for("x") == ()
    r = load(
        tmp_path,
        '[codes.api]\ninhibited_by = ["db_*"]\n[[mute_times]]\nname = "night"\n'
        'weekdays = ["fri-mon"]\ntimes = ["22:00-06:00", "12:00-24:00"]\n',
    ).to_run()
    assert r.inhibited_by_for("api") == ("db_*",)
    (m,) = r.mute_times
    assert (m.name, m.codes, m.apps, m.weekdays, m.times, m.timezone) == (
        "night",
        ("*",),
        ("*",),
        ("fri-mon",),
        ("22:00-06:00", "12:00-24:00"),
        "UTC",
    )


def test_check_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "errord.toml"
    path.write_text(HEAD + '[[mute_times]]\nname = "a"\nweekdays = ["someday"]\n')
    res = subprocess.run(
        [sys.executable, "-m", "errord", "check-config", "-c", str(path)], capture_output=True, text=True
    )
    assert res.returncode == 2
    assert res.stderr.startswith("errord: config: mute_times.0.weekdays: unknown weekday 'someday'"), res.stderr
    assert "Traceback" not in res.stderr
