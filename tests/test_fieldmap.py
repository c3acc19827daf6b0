"""``fields`` dotted-path maps (CONTRACT §12): applied after docker unwrapping, the
fields not named keep the §1 keys, validated at start (exit 2 naming the key)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from errord.parse.layouts import EnvelopeParser
from errord.parse.lines import LineParser

FIELDS = {"code": "ctx.err.id", "clear": "ctx.err.ok", "message": "body.text", "level": "sev"}


def parse(lines: list[dict[str, object]], fmt: str = "json") -> list[tuple[object, ...]]:
    p = EnvelopeParser(LineParser(app="a", tz=ZoneInfo("UTC"), max_line_bytes=1 << 20), fmt, None, FIELDS)
    raw = [json.dumps(x) for x in lines]
    if fmt == "docker":
        raw = [json.dumps({"log": r + "\n", "stream": "stdout", "time": "2026-01-14T15:00:00Z"}) for r in raw]
    res = p.parse_chunk(("\n".join(raw) + "\n").encode(), 0, 2e9)
    return [(e.code, e.clear, e.message, e.level, e.time) for e in res.events]


@pytest.mark.parametrize("fmt", ["json", "docker"])
def test_mapped_paths_replace_the_keys_they_name(fmt: str) -> None:
    got = parse(
        [
            {"ctx": {"err": {"id": "M1"}}, "body": {"text": "boom"}, "sev": "ERROR", "time": 1768402900},
            {"error_code": "IGNORED", "message": "plain"},  # code is mapped: error_code is not read
            {"ctx": {"err": {"ok": "M1"}}, "message": "kept", "level": "INFO"},  # message/level mapped: not read
            {"ctx": {"err": "not a dict"}},
        ],
        fmt,
    )
    t = 1768402900.0
    second = 1768402800.0 if fmt == "docker" else 2e9  # the envelope's time, else now
    assert got == [("M1", None, "boom", "ERROR", t), (None, "M1", "", None, second)]


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ('{ cod = "a.b" }', "sources.0.fields.cod"),
        ('{ code = "a..b" }', "sources.0.fields.code"),
        ('{ code = "" }', "sources.0.fields.code"),
    ],
)
def test_a_bad_map_is_exit_2_naming_the_key(tmp_path: Path, fields: str, key: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[[sources]]\npath = "{tmp_path}/*.log"\nfields = {fields}\n')
    res = subprocess.run(
        [sys.executable, "-m", "errord", "check-config", "-c", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 2 and key in res.stderr, res.stderr
