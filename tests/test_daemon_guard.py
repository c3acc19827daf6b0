"""A parser bug is contained: the chunk is parsed line by line, the failing line skipped."""

from __future__ import annotations

import json
from datetime import timezone

from errord.daemon import PARSER_ERROR, _parse_guarded
from errord.parse.lines import LineParser
from errord.sources.base import Chunk

NOW = 1_768_400_000.0


class BrokenParser(LineParser):
    """A parser with a bug: parse_chunk always raises, parse_line on one line."""

    def parse_chunk(self, *args: object, **kw: object):  # type: ignore[no-untyped-def,override]
        raise RecursionError("parser bug")

    def parse_line(self, line: bytes, now: float, warnings=None):  # type: ignore[no-untyped-def,override]
        if b"boom" in line:
            raise ValueError("parser bug")
        return super().parse_line(line, now, warnings)


def test_parser_exception_is_contained_to_its_line() -> None:
    parser = BrokenParser(app="a", tz=timezone.utc, max_line_bytes=1 << 20)
    lines = [json.dumps({"error_code": c, "message": "m"}).encode() + b"\n" for c in ("one", "boom", "two")]
    data = b"".join(lines) + b"not json\n" + b'{"error_code": "last"}'
    res = _parse_guarded(parser, Chunk(key=(1, 2), source=0, path="/x.jsonl", offset=100, data=data), NOW)
    assert [e.code for e in res.events] == ["one", "two", "last"]
    assert [e.offset for e in res.events] == [100, 100 + len(lines[0]) + len(lines[1]),
                                              100 + len(data) - len(b'{"error_code": "last"}')]
    assert all(e.path == "/x.jsonl" for e in res.events)
    assert (res.lines, res.skipped) == (5, 2)
    assert res.reasons == {PARSER_ERROR: 1, "not_object": 1}  # a non-candidate: the cheap check
    assert res.first_skip == (100 + len(lines[0]), PARSER_ERROR)


def test_healthy_parser_is_used_as_is() -> None:
    parser = LineParser(app=None, tz=timezone.utc, max_line_bytes=1 << 20)
    data = b'{"error_code": "x"}\n{"msg": "plain"}\n'
    res = _parse_guarded(parser, Chunk(key=(1, 2), source=0, path="/x", offset=0, data=data), NOW)
    assert res == parser.parse_chunk(data, 0, NOW, "/x")


def test_fallback_keeps_the_warnings_at_their_offsets() -> None:
    parser = BrokenParser(app="a", tz=timezone.utc, max_line_bytes=1 << 20)
    first = b'{"error_code": "boom"}\n'
    data = first + b'{"error_code": "x", "re_alert_time": "15 minutes"}\n'
    res = _parse_guarded(parser, Chunk(key=(1, 2), source=0, path="/x", offset=50, data=data), NOW)
    assert [e.code for e in res.events] == ["x"]
    assert res.warnings == [(50 + len(first), "bad_re_alert_time", '"15 minutes"')]
