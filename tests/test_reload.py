"""reload.load_config: a SIGHUP validates the new file in a child (``errord _dump-config``),
as ``errord run`` did at start, so the daemon's image never imports pydantic."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import write_config
from errord.errors import ConfigError
from errord.reload import load_config
from errord.settings import Settings


def test_load_config_validates_in_a_child(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "errord.toml",
        state_dir=str(tmp_path / "state"),
        server_id="h1",
        sources=[{"path": "logs/*.jsonl", "app": "api", "timezone": "Europe/Berlin"}],
        codes={"db_down": {"re_alert_time": "5m", "tags": ["ops"]}},
        notify=[{"url": "json://127.0.0.1:9/hook?token=abc", "tags": ["ops"]}],
    )
    assert load_config(path) == Settings.load(path, environ={}).to_run()
    bad = write_config(tmp_path / "bad.toml", sources=[{"path": "x", "start_at": "middle"}], notify=[{"url": "nope"}])
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    problems = err.value.problems
    assert any(p.startswith("sources.0.start_at:") for p in problems), problems
    assert any(p.startswith("notify.0.url:") for p in problems), problems
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml")


def test_a_daemon_that_reloads_never_imports_pydantic_or_the_cli(tmp_path: Path) -> None:
    """The reason for the child: what the daemon imports to reload stays light."""
    import subprocess

    code = (
        "import sys, errord.daemon, errord.reload; "
        "print(sorted(m for m in ('pydantic', 'pydantic_settings', 'errord.cli', 'errord.settings', "
        "'errord.serve', 'apprise') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
