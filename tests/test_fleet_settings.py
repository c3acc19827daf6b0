"""``[fleet]`` validation (CONTRACT §13): each bad value names its key; the values reach
RunConfig and survive the dump the daemon image is handed."""

from __future__ import annotations

from pathlib import Path

import pytest

from errord.config import RunConfig
from errord.errors import ConfigError
from errord.settings import Settings

HEAD = '[[sources]]\npath = "/tmp/errord-test-nothing/*.jsonl"\n'
MONGO = '[mongodb]\nuri = "mongodb://localhost:27017/?replicaSet=rs0"\n'


def load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "errord.toml"
    path.write_text(HEAD + text)
    return Settings.load(path, environ={})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[fleet]\nname = "prod"\n', "fleet: needs [mongodb]"),
        (MONGO + '[fleet]\nname = ""\n', "fleet.name:"),
        (MONGO + '[fleet]\nname = "two words"\n', "fleet.name:"),
        (MONGO + '[fleet]\nlease = "2m"\n', "fleet.name: Field required"),
        (MONGO + '[fleet]\nname = "prod"\nlease = "1s"\n', "fleet.lease:"),
        (MONGO + '[fleet]\nname = "prod"\nlease = "soon"\n', "fleet.lease:"),
        (MONGO + '[fleet]\nname = "prod"\nleader = "me"\n', "fleet.leader: unknown key"),
    ],
)
def test_bad_fleet_settings_name_their_key(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems


def test_fleet_values_are_carried(tmp_path: Path) -> None:
    assert load(tmp_path, "").to_run().fleet is None
    r = load(tmp_path, MONGO + '[fleet]\nname = "prod"\nlease = "2m"\n').to_run()
    assert r.fleet is not None and (r.fleet.name, r.fleet.lease) == ("prod", 120.0)
    assert r.fleet.wait(30.0) == 5.0 and r.fleet.wait(2.0) == 2.0  # [mongodb] timeout capped at 5 s
    assert RunConfig.from_dump(r.dump()).fleet == r.fleet
