"""loguru's ``serialize=True`` lines read without configuration (CONTRACT §12), written
by the real ``loguru`` package."""

from __future__ import annotations

import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conftest import wait_until
from errord.model import LogEvent
from errord.parse.lines import LineParser

loguru = pytest.importorskip("loguru", reason="loguru is in the test extras")


def write_with_loguru(path: Path) -> None:
    logger = loguru.logger
    sink = logger.add(path, serialize=True)
    try:
        logger.bind(error_code="LG1", notification=False).error("disk full")
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            logger.bind(error_code="LG2", re_alert_time="5m", notification=False).exception("division")
        logger.info("no code here")
        logger.bind(error_code_clear="LG1").info("disk ok")
    finally:
        logger.remove(sink)


def test_loguru_lines_give_code_message_time_level_and_traceback(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    write_with_loguru(log)
    data = log.read_bytes()
    p = LineParser(app="a", tz=ZoneInfo("UTC"), max_line_bytes=1 << 20)
    res = p.parse_chunk(data, 0, 4e9)
    evs: list[LogEvent] = res.events
    stamps = [json.loads(x)["record"]["time"]["timestamp"] for x in data.splitlines()]
    assert [(e.code, e.clear, e.message, e.level) for e in evs] == [
        ("LG1", None, "disk full", "ERROR"),
        ("LG2", None, "division", "ERROR"),
        (None, "LG1", "disk ok", "INFO"),
    ]
    assert [e.time for e in evs] == [stamps[0], stamps[1], stamps[3]]
    assert evs[1].re_alert == 300 and evs[0].notify is False
    assert evs[1].exception == "ZeroDivisionError: division by zero"  # §1's one-line summary
    assert res.skipped == 0


@pytest.mark.slow
def test_loguru_file_end_to_end(make_errord, tmp_path: Path) -> None:
    e = make_errord()
    write_with_loguru(tmp_path / "logs" / "app.jsonl")
    e.start()
    wait_until(lambda: {i["code"] for i in e.history()} == {"LG1", "LG2"}, 60, "both incidents")
    got = {i["code"]: i for i in e.history()}
    assert got["LG1"]["active"] is False and got["LG2"]["active"] is True
    assert got["LG2"]["message"] == "division"
    assert e.stop() == 0
