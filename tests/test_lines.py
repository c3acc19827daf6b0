"""Raw bytes -> LogEvent | skip reason (CONTRACT §1, the "Time" rule of §2)."""

from __future__ import annotations

import io
import json
import logging
import math
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from errord.durations import parse_duration
from errord.errors import DurationError
from errord.model import LogEvent
from errord.parse.chunks import has_long_line
from errord.parse.lines import LineParser
from errord.parse.result import MAX_WARNINGS, PARSER_ERROR, SKIP_REASONS, ParseResult, parse_contained
from errord.parse.times import naive_time, time_text

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 1, 15, tzinfo=UTC).timestamp()  # 1768435200
T = datetime(2026, 1, 14, 15, 5, 51, 367000, tzinfo=UTC).timestamp()  # 15:05:51.367Z


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def make_parser(**kw: Any) -> LineParser:
    kw.setdefault("app", "demo")
    kw.setdefault("tz", UTC)
    kw.setdefault("max_line_bytes", 1 << 20)
    return LineParser(**kw)


def rec(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def event(line: bytes, **kw: Any) -> LogEvent:
    r = make_parser(**kw).parse_line(line, NOW)
    assert isinstance(r, LogEvent), r
    return r


def reference(parser: LineParser, data: bytes, offset: int, now: float, path: str) -> ParseResult:
    """parse_chunk's expected result, built line by line from parse_line (a BOM at file
    offset 0 is not part of the first line; the first of each warning, MAX_WARNINGS of a kind)."""
    res = ParseResult()
    if offset == 0 and data.startswith(b"\xef\xbb\xbf"):
        data, offset = data[3:], 3
    lines = data.split(b"\n")
    if data.endswith(b"\n") or not data:
        lines.pop()
    res.lines = len(lines)
    pos = offset
    for ln in lines:
        warnings: list[tuple[int, str, str]] = []
        r = parser.parse_line(ln, now, warnings)
        for _, kind, detail in warnings:
            same = [w[2] for w in res.warnings if w[1] == kind]
            if len(same) < MAX_WARNINGS and detail not in same:
                res.warnings.append((pos, kind, detail))
        if isinstance(r, LogEvent):
            r.offset, r.path = pos, path
            res.events.append(r)
        elif r is not None:
            res.skipped += 1
            res.reasons[r] = res.reasons.get(r, 0) + 1
            res.first_skip = res.first_skip or (pos, r)
        pos += len(ln) + 1
    return res


# --------------------------------------------------------------------------- codes


@pytest.mark.parametrize(
    ("fields", "code", "clear"),
    [
        ({"error_code": "db_down"}, "db_down", None),
        ({"error_code": "  db_down \t"}, "db_down", None),
        ({"error_code": 500}, "500", None),
        ({"error_code": -3}, "-3", None),
        ({"error_code": 500.0}, "500", None),
        ({"error_code": 1.5}, "1.5", None),
        ({"error_code": 1e20}, "1e+20", None),
        ({"error_code_clear": "db_down"}, None, "db_down"),
        ({"error_code_clear": 404}, None, "404"),
        ({"error_code": "a", "error_code_clear": "b"}, "a", "b"),
        ({"error_code": "", "error_code_clear": "b"}, None, "b"),
        ({"error_code": None, "error_code_clear": "b"}, None, "b"),
        ({"extra": {"error_code": "inner"}}, "inner", None),
        ({"extra": {"error_code_clear": "inner"}}, None, "inner"),
        ({"error_code": "top", "extra": {"error_code": "inner"}}, "top", None),
        ({"error_code": None, "extra": {"error_code": "inner"}}, "inner", None),
        ({"error_code": "  ", "extra": {"error_code": "inner"}}, "inner", None),
        ({"error_code": "top", "extra": {"error_code_clear": "inner"}}, "top", "inner"),
        ({"error_code": "ünïcødé ✓"}, "ünïcødé ✓", None),
    ],
)
def test_codes(fields: dict[str, Any], code: str | None, clear: str | None) -> None:
    ev = event(rec(**fields))
    assert (ev.code, ev.clear) == (code, clear)


@pytest.mark.parametrize(
    "fields",
    [
        {"error_code": ""},
        {"error_code": "   "},
        {"error_code": None},
        {"error_code": None, "error_code_clear": ""},
        {"message": "no error_code here"},  # a decoy: candidate, parsed, nothing to do
        {"msg": "error_code=db_down"},
        {"data": {"error_code": "too deep"}},
        {"extra": "error_code"},
        {"extra": ["error_code", "x"]},
        {"extra": {"extra": {"error_code": "too deep"}}},
        {"error_codes": "x", "my_error_code": "y"},
    ],
)
def test_lines_without_a_code_give_none(fields: dict[str, Any]) -> None:
    assert make_parser().parse_line(rec(**fields), NOW) is None


@pytest.mark.parametrize(
    "fields",
    [
        {"error_code": True},
        {"error_code": False},
        {"error_code": []},
        {"error_code": ["db_down"]},
        {"error_code": {}},
        {"error_code": {"code": "db_down"}},
        {"error_code_clear": True},
        {"error_code": "ok", "error_code_clear": ["x"]},
        {"error_code_clear": "ok", "error_code": {"x": 1}},
        {"extra": {"error_code": False}},
        {"error_code": [1], "extra": {"error_code": "inner"}},  # top level present: it decides
    ],
)
def test_bad_code_types_skip_the_line(fields: dict[str, Any]) -> None:
    assert make_parser().parse_line(rec(**fields), NOW) == "bad_code"


def test_event_carries_app_and_defaults() -> None:
    ev = event(rec(error_code="x"), app="billing")
    assert ev == LogEvent(
        code="x",
        clear=None,
        message="",
        time=NOW,
        re_alert=None,
        notify=None,
        level=None,
        app="billing",
        path="",
        offset=0,
    )
    assert event(rec(error_code="x"), app=None).app is None


# --------------------------------------------------------------------------- message, level


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"message": "m1", "msg": "m2", "event": "m3"}, "m1"),
        ({"msg": "m2", "event": "m3"}, "m2"),
        ({"event": "m3"}, "m3"),
        ({"message": None, "msg": "m2"}, "m2"),
        ({"message": "", "msg": "m2"}, ""),  # "" is present: first alias wins
        ({}, ""),
        ({"message": 42}, "42"),
        ({"message": 1.5}, "1.5"),
        ({"message": True}, "true"),
        ({"message": {"a": [1, "b"]}}, '{"a":[1,"b"]}'),
        ({"message": [1, 2]}, "[1,2]"),
        ({"message": "x" * 100_000}, "x" * 100_000),  # kept whole; the notice caps it
        ({"message": "line1\nline2 \u2603"}, "line1\nline2 \u2603"),
        ({"extra": {"message": "inner"}}, "inner"),
        ({"message": "top", "extra": {"message": "inner"}}, "top"),
        # any top-level alias beats every alias under extra
        ({"msg": "top", "extra": {"message": "inner"}}, "top"),
        ({"message": None, "extra": {"message": "inner"}}, "inner"),
    ],
)
def test_message_aliases(fields: dict[str, Any], message: str) -> None:
    assert event(rec(error_code="x", **fields)).message == message


@pytest.mark.parametrize(
    ("fields", "level"),
    [
        ({"levelname": "ERROR", "level": "warning"}, "ERROR"),
        ({"level": "error"}, "error"),
        ({"level": 50}, "50"),
        ({"levelname": None, "level": "info"}, "info"),
        ({"level": ["x"]}, None),
        ({"level": True}, None),
        ({}, None),
        ({"extra": {"levelname": "CRITICAL"}}, "CRITICAL"),
    ],
)
def test_level_aliases(fields: dict[str, Any], level: str | None) -> None:
    assert event(rec(error_code="x", **fields)).level == level


# --------------------------------------------------------------------------- time


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-14T15:05:51.367Z", T),
        ("2026-01-14T15:05:51.367z", T),
        ("2026-01-14T15:05:51.367+00:00", T),
        ("2026-01-14T17:05:51.367+02:00", T),
        ("2026-01-14T17:05:51.367+0200", T),
        ("2026-01-14T10:05:51.367-05:00", T),
        ("2026-01-14 15:05:51.367Z", T),  # space separator
        ("2026-01-14T15:05:51.367 UTC", T),
        ("2026-01-14T15:05:51.367123456Z", T + 0.000123),  # truncated to microseconds
        ("2026-01-14T15:05:51.3Z", T - 0.067),
        ("2026-01-14T15:05:51Z", T - 0.367),
        ("  2026-01-14T15:05:51.367Z  ", T),
        # without zone: the parser's tz (Berlin: +01:00 in January, +02:00 in July)
        ("2026-01-14T16:05:51.367", T),
        ("2026-01-14 16:05:51,367", T),  # python-json-logger's asctime
        ("2025-07-14 16:05:51,367", utc(2025, 7, 14, 14, 5, 51, 367000)),
        ("2026-01-14", utc(2026, 1, 13, 23)),
        # epoch numbers and numeric strings
        (1768403151, T - 0.367),
        (1768403151.367, T),
        (1768403151367, T),  # milliseconds
        (1768403151367000, T),  # microseconds
        (1768403151367000000, T),  # nanoseconds
        ("1768403151.367", T),
        ("1768403151367", T),
        (0, 0.0),
    ],
)
def test_event_time_forms(value: Any, expected: float) -> None:
    ev = event(rec(error_code="x", timestamp=value), tz=BERLIN)
    assert ev.time == pytest.approx(expected, abs=1e-6)


_TIME_PIECES = st.sampled_from(
    [
        "2026",
        "0001",
        "9999",
        "1969",
        "-",
        "01",
        "12",
        "31",
        "02",
        "29",
        "T",
        "t",
        " ",
        ":",
        "00",
        "59",
        "23",
        "24",
        ".",
        ",",
        "5",
        "123",
        "1234567",
        "Z",
        "z",
        "+01:00",
        "-05:30",
        " UTC",
        "GMT",
        "\x00",
        "\u3000",
        "\t",
        "W",
        "e",
        "+",
    ]
)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(max_size=70),
        st.lists(_TIME_PIECES, max_size=14).map("".join),
        st.tuples(st.datetimes(timezones=st.none() | st.timezones()), st.sampled_from("T ")).map(
            lambda d: d[0].isoformat(sep=d[1])
        ),
    ),
    st.sampled_from([UTC, BERLIN]),
)
@example("2026-01-14T15:00:00.005Z", BERLIN)
@example("2026-01-14 15:05:51,367", BERLIN)
@example("2026-01-14 15:05:51,367+01:00", BERLIN)
@example("2026-01-14 15:05:51", UTC)
@example(" 2026-01-14T15:00:00Z", BERLIN)
@example("2026-01-14T15:00:00z", BERLIN)
@example("2026-01-14T15:00:00\x00", BERLIN)
@example("20260114", BERLIN)
@example("0001-01-01T00:00:00+01:00", UTC)
@example("0001-01-01T00:00:00", BERLIN)
@example("9999-12-31T23:59:59", BERLIN)
def test_event_time_fast_path_agrees_with_time_text(text: str, tz: Any) -> None:
    """_event_time hands the common "YYYY-..." strings straight to fromisoformat: every
    string must still give exactly what the general rule (times.time_text) gives."""
    p = make_parser(tz=tz)
    ts = time_text(text, tz)
    want = NOW if ts is None or not 0.0 <= ts <= NOW + p.future_slack else ts
    assert p._event_time(text, NOW) == want


@pytest.mark.parametrize("key", ["timestamp", "@timestamp", "time", "asctime", "ts"])
def test_every_time_alias(key: str) -> None:
    assert event(rec(error_code="x", **{key: "2026-01-14T15:05:51.367Z"})).time == pytest.approx(T)
    assert event(rec(error_code="x", extra={key: 1768403151.367})).time == pytest.approx(T)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"timestamp": "2026-01-14T15:05:51.367Z", "time": 1.0}, T),
        ({"@timestamp": "2026-01-14T15:05:51.367Z", "asctime": "2020-01-01 00:00:00,000"}, T),
        ({"timestamp": None, "ts": 1768403151.367}, T),
        ({"time": 1768403151.367, "extra": {"timestamp": 5.0}}, T),  # top level beats extra
        ({"timestamp": 1768403151.367, "extra": {"timestamp": 5.0}}, T),  # top level wins
        ({"timestamp": "garbage", "time": 1768403151.367}, NOW),  # only the first present counts
    ],
)
def test_time_alias_precedence(fields: dict[str, Any], expected: float) -> None:
    assert event(rec(error_code="x", **fields)).time == pytest.approx(expected)


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "",
        "yesterday at noon",
        "2026-13-01T00:00:00Z",
        "2026-01-14T25:00:00Z",
        "14/01/2026 15:05:51",
        "1969-12-31T23:59:59Z",  # before 1970
        "0001-01-01T00:00:00",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59",  # far future
        -1,
        -1768403151,
        1e300,
        "1e999",  # inf
        "nan",
        True,
        False,
        [],
        {"t": 1},
        "2026-01-14T15:05:51.367Z" + "0" * 100,  # absurdly long
    ],
)
def test_unusable_times_use_now(value: Any) -> None:
    assert event(rec(error_code="x", timestamp=value)).time == NOW


def test_missing_time_uses_now() -> None:
    assert event(rec(error_code="x")).time == NOW


@pytest.mark.parametrize(
    ("ahead", "slack", "kept"),
    [
        (299, 300.0, True),
        (300, 300.0, True),
        (301, 300.0, False),
        (3600, 300.0, False),
        (59, 60.0, True),
        (61, 60.0, False),
    ],
)
def test_future_guard(ahead: float, slack: float, kept: bool) -> None:
    ev = event(rec(error_code="x", ts=NOW + ahead), future_slack=slack)
    assert ev.time == (NOW + ahead if kept else NOW)
    # the same through an ISO string
    iso = datetime.fromtimestamp(NOW + ahead, UTC).isoformat()
    assert event(rec(error_code="x", ts=iso), future_slack=slack).time == (NOW + ahead if kept else NOW)


def test_naive_time_in_utc_by_default() -> None:
    assert event(rec(error_code="x", asctime="2026-01-14 15:05:51,367")).time == pytest.approx(T)


def test_naive_time_around_dst_change_matches_zoneinfo() -> None:
    p = make_parser(tz=BERLIN)
    # 2025-03-30 02:00-03:00 does not exist in Berlin; 2025-10-26 02:00-03:00 happens twice
    for text in [
        "2025-03-30 01:59:59",
        "2025-03-30 02:30:00",
        "2025-03-30 03:00:00",
        "2025-10-26 02:30:00",
        "2025-10-26 03:00:01",
    ]:
        expected = datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()
        ev = p.parse_line(rec(error_code="x", asctime=text), NOW)
        assert isinstance(ev, LogEvent) and ev.time == expected, text


# --------------------------------------------------------------------------- re_alert_time


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (900, 900.0),
        (90.5, 90.5),
        (0, 0.0),
        ("900", 900.0),
        ("90s", 90.0),
        ("15m", 900.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("PT15M", 900.0),
        ("0:15:00", 900.0),
        ("1 day, 2:00:00", 93600.0),
        ("datetime.timedelta(seconds=900)", 900.0),
        ("datetime.timedelta(days=1, seconds=60)", 86460.0),
        ("garbage", None),
        ("", None),
        (-5, None),
        ("-5m", None),
        (True, None),
        ([900], None),
        ({"seconds": 900}, None),
        (None, None),
    ],
)
def test_re_alert_time(value: Any, seconds: float | None) -> None:
    p = make_parser()
    for _ in range(2):  # the second time comes from the parser's cache
        ev = p.parse_line(rec(error_code="x", re_alert_time=value), NOW)
        assert isinstance(ev, LogEvent)  # an unusable value never drops the event
        assert ev.re_alert == seconds


def test_re_alert_time_under_extra() -> None:
    assert event(rec(error_code="x", extra={"re_alert_time": "15m"})).re_alert == 900.0
    assert event(rec(error_code="x", re_alert_time="1m", extra={"re_alert_time": "15m"})).re_alert == 60.0


# --------------------------------------------------------------------------- notification


@pytest.mark.parametrize(
    ("value", "notify"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("false", False),
        ("TRUE", True),
        ("False", False),
        (" no ", False),
        ("yes", True),
        ("YES", True),
        ("no", False),
        ("1", True),
        ("0", False),
        ("on", True),
        ("off", False),
        (1, True),
        (0, False),
        (1.0, True),
        (0.0, False),
        (2, None),
        (-1, None),
        ("maybe", None),
        ("", None),
        (None, None),
        ([], None),
        ({}, None),
    ],
)
def test_notification(value: Any, notify: bool | None) -> None:
    assert event(rec(error_code="x", notification=value)).notify is notify


def test_notification_absent_and_under_extra() -> None:
    assert event(rec(error_code="x")).notify is None
    assert event(rec(error_code="x", extra={"notification": False})).notify is False
    assert event(rec(error_code="x", notification=True, extra={"notification": False})).notify is True


# --------------------------------------------------------------------------- real loggers


def test_python_json_logger_line() -> None:
    line = (
        b'{"asctime": "2026-01-14 15:05:51,367", "levelname": "ERROR", "message": "db down", "error_code": "db_down"}'
    )
    assert event(line, tz=BERLIN) == LogEvent(
        code="db_down", clear=None, message="db down", time=T - 3600, level="ERROR", app="demo"
    )


def test_structlog_line() -> None:
    line = (
        b'{"event": "db down", "level": "error", "timestamp": "2026-01-14T15:05:51.367Z", '
        b'"error_code": "db_down", "re_alert_time": "datetime.timedelta(seconds=900)"}'
    )
    assert event(line, tz=BERLIN) == LogEvent(
        code="db_down", clear=None, message="db down", time=pytest.approx(T), re_alert=900.0, level="error", app="demo"
    )


def test_output_of_the_real_python_json_logger() -> None:
    from pythonjsonlogger.json import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    formatter = JsonFormatter("%(asctime)s %(levelname)s %(message)s")
    formatter.converter = time.gmtime  # asctime in UTC, without zone: parse it as UTC
    handler.setFormatter(formatter)
    log = logging.getLogger("test_lines.pjl")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        log.error(
            "db down: %s", "timeout", extra={"error_code": "db_down", "re_alert_time": "15m", "notification": False}
        )
        log.info("recovered, no error_code here")
        log.info("recovered", extra={"error_code_clear": "db_down"})
    finally:
        log.removeHandler(handler)
    data = stream.getvalue().encode()
    now = time.time()
    res = make_parser().parse_chunk(data, 0, now + 1, "app.jsonl")
    assert (res.lines, res.skipped) == (3, 0)
    err, clear = res.events
    assert (err.code, err.clear, err.message, err.level, err.re_alert, err.notify) == (
        "db_down",
        None,
        "db down: timeout",
        "ERROR",
        900.0,
        False,
    )
    assert now - 5 < err.time <= now + 1  # asctime has millisecond resolution
    assert (clear.code, clear.clear, clear.offset) == (None, "db_down", data.rindex(b"{"))


# --------------------------------------------------------------------------- skips and chunks


def test_skip_reasons_offsets_and_counts() -> None:
    lines = [
        rec(error_code="a", message="ok"),  # event
        b'{"msg": "caf\xc3\xa9"}',  # valid UTF-8, no code
        b'{"msg": "\xff\xfe"}',  # invalid_utf8 (cheap check)
        b'{"error_code": "\xc3("}',  # invalid_utf8 (candidate)
        b'{"error_code": "b"',  # not_json (candidate)
        b"hello world",  # not_object (cheap check)
        b'["error_code", 1]',  # not_object (candidate, JSON)
        b'"error_code"',  # not_object (candidate, JSON)
        b"{not json but shaped}",  # passes the cheap check
        b"",  # blank: a line, not skipped
        b"   \t ",  # blank
        rec(error_code=True),  # bad_code
        b'{"pad": "' + b"x" * 100 + b'"}',  # too_long
        b'{"error_code": "c", "pad": "' + b"x" * 100 + b'"}',  # too_long, even as a candidate
        rec(error_code_clear="a") + b"\r",  # event (\r\n tolerated)
        rec(message="no error_code here"),  # decoy: no event, no skip
    ]
    data = b"\n".join(lines) + b"\n"
    starts = [sum(len(x) + 1 for x in lines[:i]) for i in range(len(lines))]
    base = 1000
    res = make_parser(max_line_bytes=100).parse_chunk(data, base, NOW, "/var/log/app.jsonl")
    assert res.lines == len(lines)
    assert res.reasons == {"invalid_utf8": 2, "not_json": 1, "not_object": 3, "bad_code": 1, "too_long": 2}
    assert res.skipped == 9
    assert res.first_skip == (base + starts[2], "invalid_utf8")
    assert [(e.code, e.clear, e.offset, e.path) for e in res.events] == [
        ("a", None, base + starts[0], "/var/log/app.jsonl"),
        (None, "a", base + starts[14], "/var/log/app.jsonl"),
    ]
    assert res == reference(make_parser(max_line_bytes=100), data, base, NOW, "/var/log/app.jsonl")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"msg": "\xff"}', "invalid_utf8"),
        (b'{"error_code": "\xff"}', "invalid_utf8"),
        (b'{"error_code": 1,}', "not_json"),
        (b'{"error_code": NaN}', "bad_code"),  # json.dumps writes NaN: parsed, but not a code
        (b'{"error_code": "a"} {"x": 1}', "not_json"),
        (b"\xef\xbb\xbf" + rec(error_code="a"), "not_json"),  # a BOM is not JSON
        (b"[]", "not_object"),
        (b"42", "not_object"),
        (b"{", "not_object"),
        (b"}", "not_object"),
        (b"null error_code", "not_json"),
        (b'[{"error_code": "a"}]', "not_object"),
        (b"x" * 101, "too_long"),
        (rec(error_code=[]), "bad_code"),
    ],
)
def test_each_skip_reason(line: bytes, reason: str) -> None:
    p = make_parser(max_line_bytes=100)
    assert p.parse_line(line, NOW) == reason
    assert p.parse_line(line + b"\n", NOW) == reason
    res = p.parse_chunk(rec(a=1) + b"\n" + line + b"\n", 7, NOW)
    second = 7 + len(rec(a=1)) + 1
    assert (res.lines, res.skipped, res.reasons, res.first_skip) == (2, 1, {reason: 1}, (second, reason))
    assert reason in SKIP_REASONS


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b"", 0),
        (b"\n", 1),
        (b"\n\n\n", 3),
        (b"{}", 1),
        (b"{}\n", 1),
        (b"{}\n{}", 2),
        (b'{"a": 1}\n{"b": 2}\n', 2),
        (b"\r\n", 1),
        (b"garbage", 1),
    ],
)
def test_line_counts(data: bytes, lines: int) -> None:
    res = make_parser().parse_chunk(data, 0, NOW)
    assert res.lines == lines
    assert res == reference(make_parser(), data, 0, NOW, "")


def test_blank_lines_count_but_are_not_skipped() -> None:
    data = b'\n   \n\t\r\n{"error_code": "x"}\n\n'
    res = make_parser().parse_chunk(data, 0, NOW)
    assert (res.lines, res.skipped, res.reasons, res.first_skip) == (5, 0, {}, None)
    assert [e.offset for e in res.events] == [data.index(b"{")]
    assert make_parser().parse_line(b"  \r\n", NOW) is None


def test_last_line_without_newline_is_a_line() -> None:
    data = rec(a=1) + b"\n" + rec(error_code="tail")
    res = make_parser().parse_chunk(data, 50, NOW)
    assert res.lines == 2
    assert [(e.code, e.offset) for e in res.events] == [("tail", 50 + len(rec(a=1)) + 1)]
    assert make_parser().parse_chunk(b"oops", 0, NOW).reasons == {"not_object": 1}


def test_crlf_lines() -> None:
    lines = [rec(error_code="a"), rec(msg="fine"), rec(error_code_clear="a"), b"nope"]
    data = b"".join(x + b"\r\n" for x in lines)
    res = make_parser().parse_chunk(data, 0, NOW)
    assert res.lines == 4
    assert [(e.code, e.clear) for e in res.events] == [("a", None), (None, "a")]
    assert (res.reasons, res.first_skip) == ({"not_object": 1}, (data.index(b"nope"), "not_object"))
    clean = b"".join(x + b"\r\n" for x in lines[:3])
    assert make_parser().parse_chunk(clean, 0, NOW).skipped == 0
    assert isinstance(make_parser().parse_line(rec(error_code="a") + b"\r\n", NOW), LogEvent)
    assert isinstance(make_parser().parse_line(rec(error_code="a") + b"\r", NOW), LogEvent)


@pytest.mark.parametrize("candidate", [False, True])
def test_line_exactly_at_and_one_over_max_line_bytes(candidate: bool) -> None:
    limit = 300
    head = b'{"error_code": "x", "pad": "' if candidate else b'{"pad": "'
    at = head + b"y" * (limit - len(head) - 2) + b'"}'
    over = head + b"y" * (limit - len(head) - 1) + b'"}'
    assert (len(at), len(over)) == (limit, limit + 1)
    p = make_parser(max_line_bytes=limit)
    for line in (at, at + b"\n"):
        r = p.parse_line(line, NOW)
        assert (isinstance(r, LogEvent) and r.code == "x") if candidate else r is None
    assert p.parse_line(over, NOW) == "too_long"
    assert p.parse_line(over + b"\n", NOW) == "too_long"
    # in chunks (larger than the limit, so the whole-chunk length check runs)
    ok = rec(a=1) + b"\n"
    res = p.parse_chunk(ok * 3 + at + b"\n" + ok * 3, 0, NOW)
    assert (res.lines, res.skipped, len(res.events)) == (7, 0, int(candidate))
    res = p.parse_chunk(ok * 3 + over + b"\n" + ok * 3, 0, NOW)
    assert (res.lines, res.skipped, res.first_skip, res.events) == (7, 1, (3 * len(ok), "too_long"), [])
    res = p.parse_chunk(ok * 3 + over, 0, NOW)  # the unterminated last line
    assert (res.lines, res.skipped, res.first_skip) == (4, 1, (3 * len(ok), "too_long"))
    # "\r" is part of the line, the newline is not
    assert p.parse_line(at + b"\r\n", NOW) == "too_long"


def test_escaped_key_is_a_candidate() -> None:
    p = make_parser()
    for line in [
        b'{"\\u0065rror_code": "x"}',
        b'{"error\\u005Fcode": "x"}',
        b'{"error\\u005fcode": "x"}',
        b'{"\\u0065\\u0072\\u0072\\u006F\\u0072\\u005f\\u0063\\u006f\\u0064\\u0065": "x"}',
        b'{"extra": {"err\\u006fr_code": "x"}}',
    ]:
        ev = p.parse_line(line, NOW)
        assert isinstance(ev, LogEvent) and ev.code == "x", line
    # a clear whose key is escaped; and one inside a clean chunk (the fast path)
    ev = p.parse_line(b'{"\\u0065rror_code_clear": "x"}', NOW)
    assert isinstance(ev, LogEvent) and ev.clear == "x"
    lines = [
        rec(msg='caf\u00e9 "quoted"'),
        b'{"msg": "a\\nb \\u00e9"}',
        b'{"\\u0065rror_code": "esc"}',
        rec(error_code="plain"),
        b'{"e\\u0072ror_code": "esc2", "error_code_clear": "c"}',
    ]
    data = b"\n".join(lines) + b"\n"
    res = p.parse_chunk(data, 0, NOW)
    assert [(e.code, e.clear, e.offset) for e in res.events] == [
        ("esc", None, data.index(lines[2])),
        ("plain", None, data.index(lines[3])),
        ("esc2", "c", data.index(lines[4])),
    ]
    # candidacy decides which check a broken line gets: escapes of other letters stay cheap
    assert p.parse_line(b'{"msg": "caf\\u00e9" oops}', NOW) is None
    assert p.parse_line(b'{"msg": "\\u0065" oops}', NOW) == "not_json"
    assert p.parse_line(b'{"msg": "\\\\u0065"}', NOW) is None  # an escaped backslash: still fine


def test_decoys_are_parsed_but_give_nothing() -> None:
    p = make_parser()
    assert p.parse_line(b'{"message": "no error_code here"}', NOW) is None
    assert p.parse_line(b'{"message": "error_code" oops}', NOW) == "not_json"  # fully checked
    data = b'{"message": "no error_code here"}\n{"msg": "error_code: x, error_code: y"}\n'
    res = p.parse_chunk(data, 0, NOW)
    assert (res.lines, res.skipped, res.events) == (2, 0, [])


def test_a_line_naming_error_code_twice_gives_one_event() -> None:
    line = rec(error_code="a", message="error_code again, error_code", extra={"error_code": "b"})
    data = rec(x=1) + b"\n" + line + b"\n" + line
    res = make_parser().parse_chunk(data, 0, NOW)
    assert [e.code for e in res.events] == ["a", "a"]
    assert [e.offset for e in res.events] == [len(rec(x=1)) + 1, len(rec(x=1)) + len(line) + 2]


def test_events_keep_file_order() -> None:
    lines = [rec(error_code=f"c{i}") if i % 3 else b'{"\\u0065rror_code": "e%d"}' % i for i in range(30)]
    data = b"\n".join(lines) + b"\n"
    res = make_parser().parse_chunk(data, 0, NOW)
    assert [e.offset for e in res.events] == sorted(e.offset for e in res.events)
    assert len(res.events) == 30


def test_clean_chunk_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk of well-formed lines is not walked line by line (the speed of issue 5)."""
    p = make_parser(max_line_bytes=256)

    def boom(*_: Any) -> None:
        raise AssertionError("per-line fallback used for a clean chunk")

    monkeypatch.setattr(LineParser, "_per_line", boom)
    lines = [rec(i=i, msg="h\u00e9llo \u65e5\u672c") for i in range(200)] + [rec(error_code="x")]
    lines += [rec(msg="no error_code", i=1) + b"\r", b'{"\\u0065rror_code": "y"}']
    res = p.parse_chunk(b"\n".join(lines) + b"\n", 0, NOW)
    assert (res.lines, res.skipped, [e.code for e in res.events]) == (203, 0, ["x", "y"])


# --------------------------------------------------------------------------- never raise

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
    max_leaves=8,
)
TIME_TEXT = st.sampled_from(
    [
        "2026-01-14T15:05:51.367Z",
        "2026-01-14 15:05:51,367",
        "1768403151",
        "2026-01-14T15:05:51+02:00",
        "2026-01-14T15:05:51.1234567890",
        "x",
        "",
    ]
)
FIELD_VALUES = (
    JSON_VALUES | TIME_TEXT | st.sampled_from(["15m", "0:15:00", "datetime.timedelta(seconds=900)", "false", "yes"])
)
KEYS = st.sampled_from(
    [
        "error_code",
        "error_code_clear",
        "re_alert_time",
        "notification",
        "message",
        "msg",
        "event",
        "timestamp",
        "@timestamp",
        "time",
        "asctime",
        "ts",
        "levelname",
        "level",
        "other",
        "exc_info",
        "exception",
        "err",
        "stack_info",
    ]
)
RECORDS = st.dictionaries(KEYS, FIELD_VALUES, max_size=6)


@st.composite
def log_lines(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind <= 4:
        r = draw(RECORDS)
        if draw(st.booleans()):
            r["extra"] = draw(RECORDS | JSON_VALUES)
        line = orjson.dumps(r)
        if draw(st.booleans()):
            line = json.dumps(json.loads(line)).encode()  # ensure_ascii: \u escapes
    elif kind == 5:
        line = draw(
            st.sampled_from(
                [
                    b'{"\\u0065rror_code": "e"}',
                    b'{"message": "no error_code"}',
                    b"",
                    b"  ",
                    b'{"error_code": "x"',
                    b"[1]",
                    b"{}",
                    b'{"a": "\\u00e9"}',
                    b"{\xff}",
                    b'{"record": {"extra": {"error_code": "x"}}}',
                    b'{"log": "{\\"error_code\\": 1}"}',
                    b'{"msg": "error_code", "a": [{"error_code_clear": 2}]}',
                    b'{"error_code": "x", "exc_info": "Traceback (most recent call last):\\nValueError: v"}',
                    b'{"error_code": "x", "re_alert_time": "15 minutes", "notification": "maybe"}',
                ]
            )
        )
    elif kind == 6:
        line = b"{" + draw(st.binary(max_size=40)).replace(b"\n", b"") + b"}"
    elif kind == 7:
        line = draw(st.binary(max_size=60)).replace(b"\n", b"")
    elif kind == 8:
        line = b'{"error_code": "x", "pad": "' + b"y" * draw(st.integers(0, 200)) + b'"}'
    else:
        line = draw(st.text(max_size=40)).encode("utf-8", "surrogatepass").replace(b"\n", b"")
    if draw(st.integers(0, 5)) == 0:
        line += b"\r"
    return line


@st.composite
def chunks(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(log_lines(), max_size=12))
    data = b"\n".join(lines)
    if lines and draw(st.booleans()):
        data += b"\n"
    return data


@st.composite
def clean_chunks(draw: st.DrawFn) -> bytes:
    """Chunks of well-formed object lines: what parse_chunk's fast path handles."""
    lines = []
    for r in draw(st.lists(RECORDS, min_size=1, max_size=12)):
        line = orjson.dumps(r) if draw(st.booleans()) else json.dumps(r).encode()  # raw UTF-8 / \u escapes
        if draw(st.integers(0, 5)) == 0:
            line = draw(
                st.sampled_from(
                    [
                        b'{"\\u0065rror_code": "e"}',
                        b'{"a": "\\u00e9 error_code"}',
                        b'{"err\\u006Fr_code": 1, "ts": 1768403151}',
                        b'{"error_code": "x"} ',
                    ]
                )
            )
        lines.append(line + (b"\r" if draw(st.integers(0, 5)) == 0 else b""))
    return b"\n".join(lines) + (b"\n" if draw(st.booleans()) else b"")


def check_result(res: ParseResult, data: bytes, offset: int = 0) -> None:
    if offset == 0 and data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a BOM at the file's start is no part of its first line
    assert res.lines == data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    assert res.skipped == sum(res.reasons.values())
    assert set(res.reasons) <= set(SKIP_REASONS)
    assert (res.first_skip is None) == (res.skipped == 0)
    assert len(res.events) + res.skipped <= res.lines
    for ev in res.events:
        assert ev.code or ev.clear
        assert math.isfinite(ev.time) and 0 <= ev.time <= NOW + 300
        assert ev.exception is None or 0 < len(ev.exception) <= 300
    kinds = [w[1] for w in res.warnings]
    assert set(kinds) <= {"bad_re_alert_time", "bad_notification", "misplaced_code"}
    assert all(kinds.count(k) <= MAX_WARNINGS for k in kinds)
    assert [w[0] for w in res.warnings] == sorted(w[0] for w in res.warnings)  # file order
    assert all(len(w[2]) <= 80 for w in res.warnings)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks(), st.integers(0, 10**9), st.sampled_from([64, 128, 1 << 20]))
def test_chunks_match_line_by_line(data: bytes, offset: int, max_line: int) -> None:
    p = make_parser(max_line_bytes=max_line, tz=BERLIN)
    res = p.parse_chunk(data, offset, NOW, "f")
    check_result(res, data, offset)
    assert res == reference(make_parser(max_line_bytes=max_line, tz=BERLIN), data, offset, NOW, "f")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clean_chunks(), st.sampled_from([80, 1 << 20]))
def test_clean_chunks_match_line_by_line(data: bytes, max_line: int) -> None:
    p = make_parser(max_line_bytes=max_line, tz=BERLIN)
    res = p.parse_chunk(data, 3, NOW, "f")
    check_result(res, data, 3)
    assert res == reference(make_parser(max_line_bytes=max_line, tz=BERLIN), data, 3, NOW, "f")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([16, 1 << 20]))
def test_random_bytes_never_raise(data: bytes, max_line: int) -> None:
    p = make_parser(max_line_bytes=max_line)
    res = p.parse_chunk(data, 0, NOW)
    check_result(res, data)
    assert res == reference(p, data, 0, NOW, "")
    r = p.parse_line(data, NOW)
    assert r is None or r in SKIP_REASONS or isinstance(r, LogEvent)


@settings(max_examples=300, deadline=None)
@given(RECORDS, st.one_of(st.none(), RECORDS, JSON_VALUES))
def test_random_records_never_raise(record: dict[str, Any], extra: Any) -> None:
    if extra is not None:
        record["extra"] = extra
    r = make_parser(tz=BERLIN).parse_line(orjson.dumps(record), NOW)
    assert r is None or r == "bad_code" or isinstance(r, LogEvent)
    if isinstance(r, LogEvent):
        assert r.code or r.clear
        assert r.code is None or (r.code == r.code.strip() and r.code)
        assert math.isfinite(r.time) and 0 <= r.time <= NOW + 300
        assert r.re_alert is None or r.re_alert >= 0
        assert r.notify in (None, True, False)
        assert isinstance(r.message, str)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60) | st.from_regex(r"\A[0-9:., dayshmPTWDHMS()=a-z]{0,40}\Z") | JSON_SCALARS)
def test_parse_duration_random_input(value: Any) -> None:
    try:
        seconds = parse_duration(value)
    except DurationError:
        return
    assert math.isfinite(seconds) and seconds >= 0


def test_deep_nesting_never_raises() -> None:
    deep = b'{"error_code": "x", "message": ' + b"[" * 300 + b"]" * 300 + b"}"
    ev = make_parser().parse_line(deep, NOW)
    assert isinstance(ev, LogEvent) and ev.code == "x"
    too_deep = b'{"error_code": "x", "message": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert make_parser().parse_line(too_deep, NOW) == "not_json"


@pytest.mark.parametrize(
    "code",
    ["x" * 201, "tab\tcode", "new\nline", "esc\x1b[31m", "bidi\u202ecode"],
)
def test_codes_that_cannot_stand_verbatim_in_a_title_are_bad(code: str) -> None:
    p = LineParser(app=None, tz=UTC, max_line_bytes=1 << 20)
    line = json.dumps({"error_code": code, "message": "m"}).encode() + b"\n"
    assert p.parse_line(line, 1_768_400_000.0) == "bad_code"
    ok = json.dumps({"error_code": "two  spaces " + "y" * 180}).encode()
    event = p.parse_line(ok, 1_768_400_000.0)
    assert not isinstance(event, str) and event is not None and event.code == "two  spaces " + "y" * 180


# --------------------------------------------------------------------------- what a line could not give


def warnings_of(data: bytes, **kw: Any) -> tuple[ParseResult, list[tuple[int, str, str]]]:
    res = make_parser(**kw).parse_chunk(data, 100, NOW, "app.jsonl")
    return res, res.warnings


def test_unreadable_re_alert_time_is_a_warning_and_the_line_is_used() -> None:
    ok = rec(error_code="a", re_alert_time="15m") + b"\n"
    bad = rec(error_code="b", re_alert_time="15 minutes") + b"\n"
    res, warnings = warnings_of(ok + bad)
    assert [(e.code, e.re_alert) for e in res.events] == [("a", 900.0), ("b", None)]
    assert warnings == [(100 + len(ok), "bad_re_alert_time", '"15 minutes"')]
    # under extra, and a value of another type
    _, warnings = warnings_of(rec(error_code="c", extra={"re_alert_time": [900]}) + b"\n")
    assert warnings == [(100, "bad_re_alert_time", "[900]")]


def test_notification_that_is_not_boolean_like_is_a_warning() -> None:
    lines = [rec(error_code="a", notification=v) for v in ("yes", 0, False, None, "maybe", 2)]
    res, warnings = warnings_of(b"\n".join(lines) + b"\n")
    assert [e.notify for e in res.events] == [True, False, False, None, None, None]
    offsets = [100 + sum(len(x) + 1 for x in lines[:i]) for i in range(len(lines))]
    assert warnings == [(offsets[4], "bad_notification", '"maybe"'), (offsets[5], "bad_notification", "2")]


def test_warned_values_are_short_and_clean() -> None:
    _, warnings = warnings_of(rec(error_code="a", re_alert_time="\x1b[31m\u202e" + "x" * 5000) + b"\n")
    ((_, _, shown),) = warnings
    assert len(shown) <= 80 and shown.endswith("…")
    assert "\x1b" not in shown and "\u202e" not in shown


def test_warnings_are_capped_per_chunk_and_kind() -> None:
    data = b"".join(rec(error_code="a", re_alert_time=f"{i} minutes", notification=f"?{i}") + b"\n" for i in range(50))
    res, warnings = warnings_of(data)
    assert len(res.events) == 50
    assert [w[1] for w in warnings] == ["bad_re_alert_time", "bad_notification"] * MAX_WARNINGS
    assert [w[2] for w in warnings[::2]] == [f'"{i} minutes"' for i in range(MAX_WARNINGS)]  # the first ones
    # a value (or a place) repeated is kept once: it cannot crowd out the others
    data = rec(error_code="a", re_alert_time="x") + b"\n"
    _, warnings = warnings_of(data * 10 + rec(error_code="b", re_alert_time="y") + b"\n")
    assert [w[2] for w in warnings] == ['"x"', '"y"']


LOGURU = (
    b'{"text": "2026-01-14 15:05:51.367 | ERROR | app:main:12 - db down\\n", "record": {"elapsed": '
    b'{"repr": "0:00:00.012", "seconds": 0.012}, "exception": null, "extra": {"error_code": "db_down"}, '
    b'"file": {"name": "app.py", "path": "/srv/app.py"}, "function": "main", "level": {"icon": "x", '
    b'"name": "ERROR", "no": 40}, "line": 12, "message": "db down", "module": "app", "name": "__main__", '
    b'"time": {"repr": "2026-01-14 15:05:51.367+00:00", "timestamp": 1768403151.367}}}'
)
DOCKER = (
    b'{"log":"{\\"error_code\\": \\"db_down\\", \\"message\\": \\"db down\\"}\\n","stream":"stdout",'
    b'"time":"2026-01-14T15:05:51.367Z"}'
)


@pytest.mark.parametrize(
    ("line", "place"),
    [
        (DOCKER, "log (a JSON string)"),
        (rec(ctx={"data": {"error_code": "x"}}), "ctx.data.error_code"),
        (rec(extra={"ctx": {"error_code_clear": "x"}}), "extra.ctx.error_code_clear"),
        (rec(items=[1, {"error_code": "x"}]), "items[1].error_code"),
        (rec(message="error_code mentioned first", ctx={"error_code": "x"}), "ctx.error_code"),
        (rec(error_code=None, ctx={"error_code": "x"}), "ctx.error_code"),
        (rec(**{"weird key": {"error_code": 1}}), '"weird key".error_code'),
        (b'{"wrapper": "{\\"record\\": {\\"extra\\": {\\"error_code\\": 1}}}"}', "wrapper (a JSON string)"),
        (b'{"a": {"\\u0065rror_code": "escaped"}}', "a.error_code"),
    ],
)
def test_a_code_key_where_errord_does_not_read_it_is_named(line: bytes, place: str) -> None:
    res, warnings = warnings_of(line + b"\n")
    assert res.events == [] and res.skipped == 0
    assert warnings == [(100, "misplaced_code", place)]


@pytest.mark.parametrize(
    "line",
    [
        rec(message="no error_code here"),
        rec(message="error_code: x", ctx={"user": 1}),
        rec(error_code=None, error_code_clear=""),
        rec(log='{"message": "error_code is mentioned"}'),
        rec(log="{not json error_code"),
        rec(error_codes={"x": 1}),
        b'[{"error_code": "x"}]',  # not an object: skipped and counted instead
    ],
)
def test_mentions_of_error_code_give_no_misplaced_warning(line: bytes) -> None:
    _, warnings = warnings_of(line + b"\n")
    assert warnings == []


def test_misplaced_code_search_is_bounded() -> None:
    wide = {f"k{i}": {"v": i} for i in range(20_000)}
    wide["z"] = {"error_code": "too far"}
    _, warnings = warnings_of(rec(message="m", error_code=None, **wide) + b"\n")
    assert warnings == []  # past the node budget: no answer rather than a slow one
    deep: Any = {"error_code": "x"}
    for _ in range(200):
        deep = {"d": deep}
    _, warnings = warnings_of(rec(a=deep) + b"\n")
    path = "a" + ".d" * 200 + ".error_code"
    assert warnings == [(100, "misplaced_code", "…" + path[-79:])]  # its end, within 80 characters


# --------------------------------------------------------------------------- BOM


def test_bom_at_the_start_of_the_file_is_not_part_of_the_first_line() -> None:
    bom = b"\xef\xbb\xbf"
    data = bom + rec(error_code="first") + b"\n" + rec(error_code="second") + b"\n"
    res = make_parser().parse_chunk(data, 0, NOW, "f")
    assert (res.lines, res.skipped) == (2, 0)
    assert [(e.code, e.offset) for e in res.events] == [("first", 3), ("second", 3 + len(rec(error_code="first")) + 1)]
    # anywhere else a BOM is part of the line (not JSON), as it was written
    res = make_parser().parse_chunk(data, 10, NOW, "f")
    assert (res.skipped, res.reasons, [e.code for e in res.events]) == (1, {"not_json": 1}, ["second"])
    lone = make_parser().parse_chunk(bom + b"\n" + rec(x=1) + b"\n", 0, NOW, "f")
    assert (lone.lines, lone.skipped, lone.events) == (2, 0, [])


@settings(max_examples=200, deadline=None)
@given(clean_chunks())
def test_bom_chunk_is_the_chunk_without_it(data: bytes) -> None:
    p = make_parser(tz=BERLIN)
    with_bom = p.parse_chunk(b"\xef\xbb\xbf" + data, 0, NOW, "f")
    assert with_bom == make_parser(tz=BERLIN).parse_chunk(data, 3, NOW, "f")
    assert with_bom == reference(make_parser(tz=BERLIN), b"\xef\xbb\xbf" + data, 0, NOW, "f")


# --------------------------------------------------------------------------- zone-less times


@pytest.mark.parametrize(
    ("value", "naive"),
    [
        ("2026-01-14 15:05:51,367", True),
        ("2026-01-14T15:05:51", True),
        ("2026-01-14T15:05:51Z", False),
        ("2026-01-14T15:05:51+05:00", False),
        ("2026-01-14 15:05:51 UTC", False),
        (1768403151.367, False),
        ("1768403151", False),
        ("garbage-ish", False),
    ],
)
def test_naive_time(value: Any, naive: bool) -> None:
    p = make_parser(tz=BERLIN)
    got = naive_time(rec(message="m", asctime=value), p.tz)
    if not naive:
        assert got is None
    else:
        assert got is not None and got[0] == value
        assert got[1] == datetime.fromisoformat(value).replace(tzinfo=BERLIN).timestamp()
    assert naive_time(rec(extra={"timestamp": "2026-01-14 15:05:51"}), p.tz) is not None
    assert naive_time(b"not json", p.tz) is None and naive_time(b"[1]", p.tz) is None


# -- parse_contained: a parser bug is contained to its line (was daemon._parse_guarded) ------


class BrokenParser(LineParser):
    """A parser with a bug: parse_chunk always raises, parse_line on one line."""

    def parse_chunk(self, *args: object, **kw: object):  # type: ignore[no-untyped-def,override]
        raise RecursionError("parser bug")

    def parse_line(self, line: bytes, now: float, warnings=None):  # type: ignore[no-untyped-def,override]
        if b"boom" in line:
            raise ValueError("parser bug")
        return super().parse_line(line, now, warnings)


def test_parser_exception_is_contained_to_its_line() -> None:
    parser = BrokenParser(app="a", tz=UTC, max_line_bytes=1 << 20)
    lines = [json.dumps({"error_code": c, "message": "m"}).encode() + b"\n" for c in ("one", "boom", "two")]
    data = b"".join(lines) + b"not json\n" + b'{"error_code": "last"}'
    res = parse_contained(parser, data, 100, NOW, "/x.jsonl")
    assert [e.code for e in res.events] == ["one", "two", "last"]
    assert [e.offset for e in res.events] == [
        100,
        100 + len(lines[0]) + len(lines[1]),
        100 + len(data) - len(b'{"error_code": "last"}'),
    ]
    assert all(e.path == "/x.jsonl" for e in res.events)
    assert (res.lines, res.skipped) == (5, 2)
    assert res.reasons == {PARSER_ERROR: 1, "not_object": 1}  # a non-candidate: the cheap check
    assert res.first_skip == (100 + len(lines[0]), PARSER_ERROR)


def test_healthy_parser_is_used_as_is() -> None:
    parser = LineParser(app=None, tz=UTC, max_line_bytes=1 << 20)
    data = b'{"error_code": "x"}\n{"msg": "plain"}\n'
    res = parse_contained(parser, data, 0, NOW, "/x")
    assert res == parser.parse_chunk(data, 0, NOW, "/x")


def test_fallback_keeps_the_warnings_at_their_offsets() -> None:
    parser = BrokenParser(app="a", tz=UTC, max_line_bytes=1 << 20)
    first = b'{"error_code": "boom"}\n'
    data = first + b'{"error_code": "x", "re_alert_time": "15 minutes"}\n'
    res = parse_contained(parser, data, 50, NOW, "/x")
    assert [e.code for e in res.events] == ["x"]
    assert res.warnings == [(50 + len(first), "bad_re_alert_time", '"15 minutes"')]


@given(st.lists(st.integers(0, 24), min_size=1, max_size=8), st.booleans(), st.integers(1, 16))
def test_has_long_line_is_any_line_over_the_limit(lengths: list[int], terminated: bool, limit: int) -> None:
    """One check for the parser's clean-chunk test and the follower's cut (it was written
    twice); the last line may lack its newline (a closed file)."""
    data = b"\n".join(b"x" * n for n in lengths) + (b"\n" if terminated else b"")
    assert has_long_line(data, limit) == any(n > limit for n in lengths)


def test_a_loguru_line_is_read_not_named_misplaced() -> None:
    """CONTRACT §12: loguru's serialize=True layout is recognised (it was a misplaced key)."""
    res = make_parser().parse_chunk(LOGURU + b"\n", 0, NOW)
    assert [e.code for e in res.events] == ["db_down"] and res.warnings == []
