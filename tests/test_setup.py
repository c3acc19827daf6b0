"""A newcomer's first minutes: the package installs without warnings, and the README's
Quick start says what they trip over (``-c`` on every command, unflushed ``print``)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_license_is_an_spdx_string_and_the_build_needs_a_setuptools_that_reads_it() -> None:
    # A `license = { text = ... }` table makes setuptools >= 77 print a 15-line deprecation
    # warning on every install (`make run` on a clean set-up); the SPDX string form needs 77.
    # (Checked by hand: `python -m venv /tmp/v && /tmp/v/bin/pip install -e .` prints nothing.)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    [setuptools] = [r for r in project["build-system"]["requires"] if r.startswith("setuptools")]
    minimum = re.fullmatch(r"setuptools>=(\d+)(?:\.\d+)*", setuptools)
    assert minimum and int(minimum.group(1)) >= 77, setuptools


def _quick_start() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("## Quick start") : text.index("\n## ", text.index("## Quick start") + 1)]


def test_quick_start_shows_how_to_leave_out_c_and_it_works(tmp_path: Path) -> None:
    section = _quick_start()
    [export] = [ln for ln in section.splitlines() if ln.startswith("export ERRORD_CONFIG=")]
    named = export.removeprefix("export ERRORD_CONFIG=").replace("$PWD", str(ROOT))
    assert Path(named).is_file(), named  # the file it names is in the repo
    # as the Quick start shows it: no -c, the config named by the environment
    cfg = tmp_path / "errord.toml"
    cfg.write_text(f'state_dir = "{tmp_path / "state"}"\n[[sources]]\npath = "{tmp_path}/*.jsonl"\n')
    res = subprocess.run(
        [sys.executable, "-m", "errord", "history"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"ERRORD_CONFIG": str(cfg), "PATH": "/usr/bin:/bin"},
    )
    assert res.returncode == 0 and res.stdout == "no incidents\n", res.stderr
    assert str(tmp_path / "state") in res.stderr
    assert "errord -c FILE history" in section  # and -c before the command works too
    assert shlex.split(export)  # a line a shell takes as it is


def test_quick_start_says_print_must_flush() -> None:
    section = _quick_start()
    assert "print(json.dumps(" in section
    assert "flush=True" in section and "PYTHONUNBUFFERED=1" in section
