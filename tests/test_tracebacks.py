"""Exception details from real loggers into the event and the notice body (CONTRACT §1).

python-json-logger and structlog are the real packages; the pino line is literal (what
pino 9 writes for ``logger.error({err, error_code}, msg)``).
"""

from __future__ import annotations

import io
import json
import logging
import time
from datetime import UTC
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import append, line
from errord.model import LogEvent
from errord.parse.lines import LineParser
from errord.parse.tracebacks import MAX_EXCEPTION, exception_text

NOW = 1_768_435_200.0

PINO = (
    b'{"level":50,"time":1768403151367,"pid":4242,"hostname":"web-1","err":{"type":"Error",'
    b'"message":"connect ECONNREFUSED 127.0.0.1:5432","stack":"Error: connect ECONNREFUSED '
    b'127.0.0.1:5432\\n    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16)",'
    b'"errno":-111,"code":"ECONNREFUSED"},"error_code":"db_down","msg":"database unreachable"}'
)


def parse(data: bytes) -> LogEvent:
    res = LineParser(app=None, tz=UTC, max_line_bytes=1 << 20).parse_chunk(
        data if data.endswith(b"\n") else data + b"\n", 0, NOW, "app.jsonl"
    )
    (ev,) = res.events
    return ev


def chained() -> None:
    try:
        {}["primary"]
    except KeyError as exc:
        raise RuntimeError("pool exhausted\nafter 3 retries") from exc


def pjl_lines() -> bytes:
    """What python-json-logger writes for log.exception() and stack_info=True."""
    from pythonjsonlogger.json import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    formatter = JsonFormatter("%(asctime)s %(levelname)s %(message)s")
    formatter.converter = time.gmtime  # asctime in UTC, as errord reads a zone-less time by default
    handler.setFormatter(formatter)
    log = logging.getLogger(f"test_tracebacks.pjl{id(stream)}")
    log.propagate = False
    log.addHandler(handler)
    try:
        chained()
    except RuntimeError:
        log.exception("checkout failed", extra={"error_code": "pool"})
    log.error("odd state", stack_info=True, extra={"error_code": "odd"})
    log.removeHandler(handler)
    return stream.getvalue().encode()


def structlog_line(dict_tracebacks: bool) -> bytes:
    import structlog

    out = io.StringIO()
    exc_proc = structlog.processors.dict_tracebacks if dict_tracebacks else structlog.processors.format_exc_info
    log = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[structlog.processors.add_log_level, exc_proc, structlog.processors.JSONRenderer()],
    )
    try:
        chained()
    except RuntimeError:
        log.exception("checkout failed", error_code="pool")
    return out.getvalue().encode()


def test_python_json_logger_exc_info_and_stack_info() -> None:
    data = pjl_lines()
    exc_line, stack_line = data.splitlines()
    assert "Traceback" in json.loads(exc_line)["exc_info"]  # the real formatter's output
    # the last exception of the chain, its multi-line message on one line
    assert parse(exc_line).exception == "RuntimeError: pool exhausted after 3 retries"
    got = parse(stack_line).exception
    assert got is not None and got.startswith('stack: File "') and got.endswith("in pjl_lines")  # where it logged


@pytest.mark.parametrize("dict_tracebacks", [False, True])
def test_structlog_exception_text_and_dict_tracebacks(dict_tracebacks: bool) -> None:
    data = structlog_line(dict_tracebacks)
    raw = json.loads(data)["exception"]
    assert isinstance(raw, list) is dict_tracebacks  # the real processor's shape
    assert parse(data).exception == "RuntimeError: pool exhausted after 3 retries"


def test_pino_err() -> None:
    ev = parse(PINO)
    assert (ev.code, ev.message) == ("db_down", "database unreachable")
    assert ev.exception == "Error: connect ECONNREFUSED 127.0.0.1:5432"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"type": "TypeError", "message": "", "stack": "TypeError\n    at f (a.js:1:1)"}, "TypeError"),
        ({"stack": "RangeError: too far\n    at g (b.js:2:2)"}, "RangeError: too far"),
        ({"message": "only a message"}, "only a message"),
        ([{"exc_type": "ValueError", "exc_value": ""}], "ValueError"),
        (
            ["Traceback (most recent call last):\n", '  File "x.py", line 1, in <module>\n', "KeyError: 'k'\n"],
            "KeyError: 'k'",
        ),
        (
            "java.lang.IllegalStateException: closed\n\tat com.example.Pool.get(Pool.java:42)",
            "java.lang.IllegalStateException: closed",
        ),
        ("ValueError: bad", "ValueError: bad"),
        (
            '  + Exception Group Traceback (most recent call last):\n  |   File "x.py", line 2, in <module>\n'
            "  | ExceptionGroup: two (2 sub-exceptions)\n  +-+---------------- 1 ----------------\n"
            "    | ValueError: a\n    +------------------------------------\n",
            "ExceptionGroup: two (2 sub-exceptions)",
        ),
        ("", None),
        ("   \n ", None),
        (True, None),
        (3, None),
        ([], None),
        ({}, None),
        ([1, 2], None),
    ],
)
def test_exception_shapes(value: Any, text: str | None) -> None:
    assert exception_text(value) == text


def test_exception_is_capped_and_long_tracebacks_are_cut_cheaply() -> None:
    long_msg = "ValueError: " + "x" * 5000
    got = exception_text(long_msg)
    assert got is not None and len(got) == MAX_EXCEPTION and got.endswith("…")
    frames = "".join(f'  File "m{i}.py", line {i}, in f\n    f()\n' for i in range(20_000))
    huge = "Traceback (most recent call last):\n" + frames + "OSError: disk gone"
    assert len(huge) > 500_000 and exception_text(huge) == "OSError: disk gone"


def test_keys_in_order_top_level_then_extra() -> None:
    base = {"error_code": "x", "message": "m"}
    assert parse(orjson.dumps({**base, "exception": "A: 1", "err": {"message": "2"}})).exception == "A: 1"
    assert parse(orjson.dumps({**base, "extra": {"exc_info": "B: 2"}})).exception == "B: 2"
    assert (
        parse(
            orjson.dumps(
                {
                    **base,
                    "exc_info": None,
                    "stack_info": 'Stack (most recent call last):\n  File "a.py", line 9, in run',
                }
            )
        ).exception
        == 'stack: File "a.py", line 9, in run'
    )
    assert parse(orjson.dumps(base)).exception is None


@pytest.mark.slow
def test_notice_bodies_carry_the_exception(make_errord, receiver, tmp_path: Path) -> None:
    """End to end: a python-json-logger exception opens the incident, a pino err re-alerts
    it; the receiver gets each exception's type and message in the body."""
    e = make_errord(notify=[{"url": receiver.url("/hook")}], codes={"db_down": {"re_alert_time": "0s"}})
    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    exc_line = pjl_lines().splitlines()[0]
    append(log, exc_line.replace(b'"pool"', b'"db_down"') + b"\n")
    (first,) = receiver.wait_for(1, timeout=30)
    assert first.body["type"] == "failure"
    assert "Exception: RuntimeError: pool exhausted after 3 retries" in first.body["message"].splitlines()
    pino_now = PINO.replace(b"1768403151367", str(int(time.time() * 1000)).encode())
    append(log, pino_now + b"\n", line(clear="db_down"))
    got = receiver.wait_for(3, timeout=30)
    assert [r.body["type"] for r in got] == ["failure", "warning", "success"]
    assert "Exception: Error: connect ECONNREFUSED 127.0.0.1:5432" in got[1].body["message"].splitlines()
    assert "Exception" not in got[2].body["message"]
    assert e.stop() == 0
