"""What errord could not fully use in a line is said, once, not swallowed (CONTRACT §1):
the texts and the gate, then the running daemon's log and ``errord replay``'s stderr."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from conftest import append, line
from errord.parse.linewarnings import (
    MAX_PLACES_PER_FILE,
    LineWarnings,
    describe,
    misplaced_code_path,
    show_value,
    zone_like,
)

LOGURU = (
    b'{"text": "db down\\n", "record": {"exception": null, "extra": {"error_code": "db_down"}, '
    b'"level": {"name": "ERROR", "no": 40}, "message": "db down", '
    b'"time": {"repr": "2026-01-14 15:05:51.367+00:00", "timestamp": 1768403151.367}}}\n'
)
DOCKER = b'{"log":"{\\"error_code\\": \\"db_down\\"}\\n","stream":"stdout","time":"2026-01-14T15:05:51.367Z"}\n'


def test_show_value() -> None:
    assert show_value("15 minutes") == '"15 minutes"'
    assert show_value([900, {"s": 1}]) == '[900,{"s":1}]'
    assert show_value(float("nan")) == "nan"
    assert show_value("a\nb") == '"a\\nb"'  # a newline cannot split the log line
    long = show_value("x" * 1000)
    assert len(long) == 80 and long.endswith("…")
    assert show_value("\u202eevil\x9b") == '"evil"'


def test_zone_like() -> None:
    assert zone_like(5 * 3600 + 20, 60) == 5 * 3600  # New York in winter, read as UTC
    assert zone_like(-(5 * 3600 + 45 * 60) - 30, 60) == -(5 * 3600 + 45 * 60)  # Kathmandu
    assert zone_like(-9.5 * 3600, 60) == -9.5 * 3600  # Adelaide
    assert zone_like(30 * 60, 60) is None  # under an hour: no zone is that close to UTC... or drift
    assert zone_like(3 * 3600 + 7 * 60, 60) is None  # not a zone offset
    assert zone_like(27 * 3600, 60) is None


def test_gate_rate_limits_per_file_and_kind_and_places_once() -> None:
    now = [1000.0]
    g = LineWarnings(60.0, clock=lambda: now[0])
    w = [
        (10, "bad_re_alert_time", '"15 minutes"'),
        (20, "bad_notification", '"maybe"'),
        (30, "misplaced_code", "record.extra.error_code"),
    ]
    first = g.messages("/a.jsonl", w)
    assert len(first) == 3 and all(m.startswith("/a.jsonl, offset ") for m in first)
    now[0] = 1059.0
    assert g.messages("/a.jsonl", w) == []
    assert g.messages("/b.jsonl", w[:1]) != []  # another file
    now[0] = 1061.0
    again = g.messages("/a.jsonl", w)
    assert [m.split(": ")[1].split()[0] for m in again] == ["re_alert_time", "notification"]  # the place: once
    places = [(1, "misplaced_code", f"p{i}.error_code") for i in range(MAX_PLACES_PER_FILE + 5)]
    assert len(g.messages("/c.jsonl", places)) == MAX_PLACES_PER_FILE
    small = LineWarnings(None, max_keys=3)
    for i in range(10):
        assert small.messages(f"/f{i}", w[:1])  # forgets rather than grows


def test_skipped_lines_warning_per_file_and_interval() -> None:
    now = [0.0]
    g = LineWarnings(60.0, clock=lambda: now[0])
    text = g.skipped("/a.jsonl", 3, (40, "not_json"))
    assert text == (
        "skipped 3 line(s) in /a.jsonl (first at offset 40: not_json); further warnings for this file muted for 60s"
    )
    assert g.skipped("/a.jsonl", 1, None) is None
    assert g.skipped("/b.jsonl", 1, None) == (
        "skipped 1 line(s) in /b.jsonl; further warnings for this file muted for 60s"
    )
    now[0] = 60.0
    assert g.skipped("/a.jsonl", 1, None) is not None
    assert LineWarnings(None).skipped("/a.jsonl", 1, None) == "skipped 1 line(s) in /a.jsonl"


def test_texts_name_file_offset_field_value_and_the_fix() -> None:
    t = describe("bad_re_alert_time", '"15 minutes"', "/var/log/app.jsonl", 4096, 60.0)
    assert t.startswith('/var/log/app.jsonl, offset 4096: re_alert_time "15 minutes" ')
    assert "used without it" in t and "muted for 60s" in t
    t = describe("bad_notification", '"maybe"', "/x", 0, None)
    assert 'notification "maybe"' in t and t.endswith("(shown once per file)")
    t = describe("misplaced_code", "record.extra.error_code", "/x", 7, 60.0)
    assert "at record.extra.error_code" in t
    assert 'errord reads error_code at the top level or under "extra"' in t
    # ... and how to make errord read it (CONTRACT §1), per kind of place
    assert "loguru's serialize=True" in t and "{extra[serialized]}" in t
    t = describe("misplaced_code", "log (a JSON string)", "/x", 7, 60.0)
    assert "Docker's json-file" in t and "app's own log file" in t
    t = describe("misplaced_code", "ctx.data.error_code", "/x", 7, 60.0)
    assert "write that key at the top level of the line" in t


def test_misplaced_code_path_needs_a_dict_key() -> None:
    assert misplaced_code_path({"a": ["error_code"], "b": "error_code"}) is None
    assert misplaced_code_path({"a": [{"x": "error_code"}]}) is None


def warnings_in(log: str, pattern: str) -> list[str]:
    return [ln for ln in log.splitlines() if re.search(pattern, ln)]


@pytest.mark.slow
def test_daemon_warns_once_about_unusable_fields_and_uses_the_lines(make_errord, tmp_path: Path) -> None:
    """Point 3: a re_alert_time errord cannot read and a notification that is no boolean:
    one warning each (file, offset, field, value) for a whole stream of such lines, which
    all count."""
    e = make_errord()
    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    good = line("db_down", msg="ok", re_alert_time="15m")
    append(log, good)
    for i in range(5):  # several batches
        append(log, *[line("db_down", msg=f"bad {i}", re_alert_time="15 minutes", notification="maybe")] * 10)
        time.sleep(0.2)
    e.wait_caught_up()
    (inc,) = e.json("active")
    assert inc["occurrences"] == 51  # every line used
    out = e.output()
    (re_alert,) = warnings_in(out, "re_alert_time")
    assert f'{log}, offset {len(good)}: re_alert_time "15 minutes" is not a duration' in re_alert
    (notify,) = warnings_in(out, 'notification "maybe"')
    assert f'{log}, offset {len(good)}: notification "maybe" is not a boolean' in notify
    assert e.json("status")["files"][0]["lines_skipped"] == 0
    assert e.stop() == 0


@pytest.mark.slow
def test_daemon_warns_once_per_file_and_place_about_codes_it_does_not_read(make_errord, tmp_path: Path) -> None:
    """Point 4: Docker json-file lines in a plain source raise nothing; the daemon says
    where the key was and how it reads codes. loguru ``serialize=True`` is read since
    issue 18 (CONTRACT §12): no warning, its code opens an incident."""
    e = make_errord()
    e.start()
    logs = tmp_path / "logs"
    append(logs / "loguru.jsonl", LOGURU * 3)
    append(logs / "docker.jsonl", DOCKER, line(msg="no error_code here"), DOCKER)
    e.wait_caught_up()
    append(logs / "loguru.jsonl", LOGURU * 2)  # a later batch: no second warning
    e.wait_caught_up()
    time.sleep(0.3)
    out = e.output()
    assert warnings_in(out, "record.extra.error_code") == []  # read, not misplaced
    (docker,) = warnings_in(out, r"log \(a JSON string\)")
    assert f"{logs / 'docker.jsonl'}, offset 0:" in docker
    status = e.json("status")
    assert sorted((f["lines_read"], f["lines_skipped"]) for f in status["files"]) == [(3, 0), (5, 0)]
    assert [i["code"] for i in e.json("active")] == ["db_down"]  # the loguru lines' code
    assert e.stop() == 0


def test_replay_prints_each_warning_once(make_errord, tmp_path: Path) -> None:
    e = make_errord()
    log = tmp_path / "what-if.jsonl"
    append(log, *[line("x", re_alert_time="15 minutes")] * 20, LOGURU * 5, DOCKER)
    res = e.cli("replay", str(log), "--json")
    warned = [ln for ln in res.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warned) == 2, res.stderr  # loguru lines are read (issue 18), not warned about
    assert f'warning: {log}, offset 0: re_alert_time "15 minutes"' in warned[0]
    assert "log (a JSON string)" in warned[1]
    assert [json.loads(n)["type"] for n in res.stdout.splitlines()] == ["failure", "failure"]  # x, db_down
