"""Fuzzing the two parsers that see untrusted input: the line parser and the duration parser.

Each must return a value or a skip reason for *anything*, never raise. And what the line
parser accepts must be storable: every string it hands on can be written to the journal,
so no log line can become a poison pill that stops the batch loop (a batch the journal
refuses is retried forever: reading would stop for good).
"""

from __future__ import annotations

import json
import math
import random
import re
import string
from collections.abc import Iterator
from datetime import UTC, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from errord.durations import parse_duration
from errord.engine import Engine
from errord.errors import DurationError
from errord.model import LogEvent
from errord.noise import NOISE_DEFAULTS, Noise
from errord.parse.lines import LineParser
from errord.parse.result import SKIP_REASONS
from errord.store.journal import Journal

NOW = 1_768_435_200.0

# -- durations ----------------------------------------------------------------------------

ANY_OBJECT = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.integers(max_value=-(10**300), min_value=-(10**400)),
    st.floats(),
    st.floats(allow_nan=True),
    st.timedeltas(),
    st.decimals(),
    st.fractions(),
    st.complex_numbers(),
    st.binary(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.builds(object),
    st.just(float("inf")),
    st.just(timedelta.max),
    st.just(timedelta.min),
)
DURATION_TEXT = st.one_of(
    st.text(max_size=120),
    st.text(alphabet="0123456789.:, dayshmPTWDHMS()=-+eE_ \t٣", max_size=40),
    st.from_regex(r"\A(?:datetime\.)?timedelta\([a-z= 0-9.,-]{0,30}\)\Z"),
    st.from_regex(r"\AP(?:[0-9.]{1,20}[WD]){0,2}(?:T(?:[0-9.]{1,20}[HMS]){0,3})?\Z"),
    st.from_regex(r"\A(?:[0-9]{1,40} days?, )?[0-9]{1,40}:[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?\Z"),
    st.from_regex(r"\A(?:[0-9]{1,40}(?:\.[0-9]*)?\s*(?:ms|w|d|h|m|s)\s*){1,4}\Z"),
)


def check_duration(value: Any) -> None:
    try:
        seconds = parse_duration(value)
    except DurationError:
        return
    assert type(seconds) is float and math.isfinite(seconds) and 0 <= seconds <= 100 * 365 * 86400


@settings(max_examples=1000, deadline=None)
@given(ANY_OBJECT | DURATION_TEXT)
def test_parse_duration_takes_anything(value: Any) -> None:
    check_duration(value)


@pytest.mark.parametrize(
    "value",
    [
        10**400,
        -(10**400),
        2**1024,
        Decimal("1e400"),
        Fraction(1, 3),
        1j,
        b"15m",
        ["15m"],
        "9" * 100,
        "9" * 101,
        "1e400",
        "-0",
        "nan",
        "inf",
        "٣٠m",
        "1_000",
        " 15m ",
        "datetime.timedelta(days=1e300)",
        "9" * 99 + "w",
        "P" + "9" * 98 + "D",
        "99999999999999999999999999999999999999 days, 0:00:00",
        timedelta.max,
        -timedelta(seconds=1),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_parse_duration_edge_values(value: Any) -> None:
    check_duration(value)


# -- lines --------------------------------------------------------------------------------


def make_parser(max_line: int = 1 << 20) -> LineParser:
    return LineParser(app="fuzz", tz=UTC, max_line_bytes=max_line)


def check_event(r: Any) -> None:
    assert r is None or r in SKIP_REASONS or isinstance(r, LogEvent), r
    if isinstance(r, LogEvent):
        assert r.code or r.clear
        assert math.isfinite(r.time) and 0 <= r.time <= NOW + 300
        assert r.re_alert is None or (math.isfinite(r.re_alert) and r.re_alert >= 0)
        for text in (r.code, r.clear, r.message, r.level):
            if text is not None:
                assert isinstance(text, str)
                text.encode("utf-8")  # storable: SQLite and Apprise need valid UTF-8


# JSON the stdlib writes that is not strict JSON, or that strict parsers choke on:
# python-json-logger and structlog's JSONRenderer use json.dumps (allow_nan=True).
ODD_VALUES = st.sampled_from(
    [
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"1e999",
        b"-1e999",
        b"123456789012345678901234567890",
        b'"\\ud800"',
        b'"\\udfff tail"',
        b'"\\ud83d\\ude00"',
        b'"a\\u0000b"',
        b"1e-999",
        b"-0",
        b"0.0",
        b'"' + b"\\u0065" * 10 + b'"',
        b"18446744073709551616",
        b"-9223372036854775809",
        b'"\\u202eevil"',
        b"[" * 50 + b"]" * 50,
        b'{"error_code": "nested"}',
    ]
)
FIELDS = st.sampled_from(
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
        "extra",
        "other",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.text(alphabet="0123456789:-TZ.+ ,", max_size=30),
)


@st.composite
def odd_lines(draw: st.DrawFn) -> bytes:
    """Object lines whose values may be anything a logger could write, strict JSON or not."""
    parts = []
    if draw(st.booleans()):
        parts.append(b'"error_code": ' + draw(ODD_VALUES | st.just(b'"db"')))
    for _ in range(draw(st.integers(0, 5))):
        key = json.dumps(draw(FIELDS)).encode()
        value = draw(ODD_VALUES) if draw(st.booleans()) else json.dumps(draw(SCALARS)).encode()
        parts.append(key + b": " + value)
    draw(st.randoms()).shuffle(parts)
    return b"{" + b", ".join(parts) + b"}"


@settings(max_examples=1000, deadline=None)
@given(odd_lines())
def test_lines_with_odd_values_never_raise_and_are_storable(line: bytes) -> None:
    p = make_parser()
    check_event(p.parse_line(line, NOW))
    res = p.parse_chunk(line + b"\n" + line + b"\n", 0, NOW)
    assert res.lines == 2 and len(res.events) + res.skipped <= 2
    for ev in res.events:
        check_event(ev)


def mutate(rnd: random.Random, line: bytes) -> bytes:
    b = bytearray(line)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(5)
        i = rnd.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(i, len(b) - 1)] = rnd.randrange(256)
        elif op == 1:
            b[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 4)))
        elif op == 2 and b:
            del b[i : i + rnd.randint(1, 8)]
        elif op == 3:
            b[i:i] = rnd.choice([b'"', b"\\", b"\\u", b"{", b"}", b"\xf0\x9f", b"\r", b"error_code", b",,"])
        else:
            b = b[:i]
    return bytes(b).replace(b"\n", b"")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 2**32), min_size=1, max_size=20), st.sampled_from([40, 1 << 20]))
def test_mutated_error_lines_never_raise_and_chunks_agree(seeds: list[int], max_line: int) -> None:
    """Byte flips, insertions, cuts of real error lines: the chunk parser (fast path and
    fallback) agrees with the line-by-line rule and nothing raises."""
    base = [
        orjson.dumps(
            {
                "message": "db down",
                "error_code": "db_down",
                "re_alert_time": "15m",
                "timestamp": "2026-01-14T15:05:51.367Z",
                "levelname": "ERROR",
            }
        ),
        json.dumps({"msg": "é ✓", "extra": {"error_code_clear": "db_down", "ts": 1768403151}}).encode(),
        b'{"event": "x", "error_code": 500, "notification": "off"}',
    ]
    lines = []
    for s in seeds:
        rnd = random.Random(s)
        ln = rnd.choice(base)
        lines.append(mutate(rnd, ln) if rnd.random() < 0.8 else ln)
    data = b"\n".join(lines) + b"\n"
    p = make_parser(max_line)
    res = p.parse_chunk(data, 7, NOW, "f")
    assert res.lines == len(lines)
    singles = [p.parse_line(ln, NOW) for ln in lines]
    for r in singles:
        check_event(r)
    assert [(e.code, e.clear, e.message, e.time) for e in res.events] == [
        (e.code, e.clear, e.message, e.time) for e in singles if isinstance(e, LogEvent)
    ]
    assert res.skipped == sum(1 for r in singles if isinstance(r, str))


def test_python_loggers_nan_and_infinity_do_not_hide_the_error() -> None:
    """python-json-logger and structlog write NaN/Infinity (json.dumps allow_nan=True) and
    lone surrogates as \\ud800 escapes. Such a line still raises its error."""
    p = make_parser()
    for extra in (
        {"latency": float("nan")},
        {"ratio": float("inf")},
        {"path": "caf\udce9"},
        {"big": 10**30},
        {"tiny": -float("inf")},
    ):
        line = json.dumps({"message": "boom", "error_code": "db_down", **extra}).encode()
        ev = p.parse_line(line, NOW)
        assert isinstance(ev, LogEvent) and ev.code == "db_down", (line, ev)
        check_event(ev)
    ev = p.parse_line(json.dumps({"message": "bad \udce9 byte", "error_code": "x\ud800"}).encode(), NOW)
    assert isinstance(ev, LogEvent)
    check_event(ev)


@pytest.mark.parametrize(
    "field", ["re_alert_time", "notification", "message", "timestamp", "levelname", "error_code_clear", "extra"]
)
@pytest.mark.parametrize("depth", [100, 1000, 1023, 5000])
def test_deeply_nested_values_in_every_field(field: str, depth: int) -> None:
    """Regression: a 1000-deep array in re_alert_time made parse_duration's error message
    (repr) raise RecursionError, which escaped parse_chunk and stopped the daemon, again
    at every restart (the line was never committed)."""
    for nested in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
        line = b'{"error_code": "deep", "' + field.encode() + b'": ' + nested + b"}"
        r = make_parser().parse_line(line, NOW)
        check_event(r)
        res = make_parser().parse_chunk(line + b"\n" + line + b"\n", 0, NOW)
        assert res.lines == 2


class _Policy:
    def re_alert_for(self, code: str) -> float:
        return 0.0

    def notify_for(self, code: str) -> bool:
        return True

    def noise_for(self, code: str) -> Noise:
        return NOISE_DEFAULTS


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journal]:
    j = Journal(Path(tmp_path_factory.mktemp("fuzzstate")))
    yield j
    j.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(odd_lines() | st.binary(max_size=80).map(lambda b: b.replace(b"\n", b"")), max_size=8))
def test_whatever_the_parser_accepts_the_journal_stores(journal: Journal, lines: list[bytes]) -> None:
    """No poison pill: feed fuzzed lines through parser -> engine -> notices -> journal commit."""
    from errord.notices import render

    p = make_parser()
    e = Engine(_Policy(), server_id="s", node_name="n")
    e.begin()
    notices = []
    for ln in lines:
        r = p.parse_line(ln, NOW)
        if isinstance(r, LogEvent):
            n = render(e.feed(r), server_id="s", node_name="n")
            if n is not None:
                notices.append(n)
    journal.commit(e.pending(), [], notices, NOW)  # raises JournalError on a poison pill
    e.commit()


def test_printable_garbage_at_scale_never_raises() -> None:
    rnd = random.Random(4)
    alphabet = string.digits + string.ascii_letters + string.punctuation + " \t\ré✓"
    lines = ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 120))) for _ in range(5000)]
    lines[::7] = ['{"error_code": "' + re.sub(r'["\\\t\r]', "", ln) + '"}' for ln in lines[::7]]
    data = "\n".join(lines).encode() + b"\n"
    res = make_parser().parse_chunk(data, 0, NOW)
    assert res.lines == 5000
    assert len(res.events) >= 5000 // 7 - 5
