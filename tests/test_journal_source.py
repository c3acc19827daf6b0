"""The systemd journal source (CONTRACT §12): entries read as lines (``parse.journalentry``),
the cursor and its commands (``sources.journalpos``), the reader against real journal
files (``sources.journal``), and end to end through ``errord run``: incidents opened and
cleared, ``start_at``, kill -9 and restarts counted exactly (also for a filter that drops
999 of 1,000 entries), journalctl missing and then installed.

Journal files are written by Debian's ``systemd-journal-remote``, which turns the export
format on stdin into a journal file and appends to it on later runs; ``journalctl
--directory`` reads them as it reads the host's journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from chaos import State, seed_for, start, wait_until
from errord.config import JournalSpec, Source
from errord.errors import ConfigError
from errord.parse.journalentry import JournalParser, field_bytes, read_entry
from errord.parse.lines import LineParser
from errord.settings import Settings
from errord.sources import journal as journal_mod
from errord.sources.journal import JournalReader
from errord.sources.journalpos import JournalState, follow_args, meta_key, same_entry, since_text

REMOTE = Path("/lib/systemd/systemd-journal-remote")
JOURNALCTL = shutil.which("journalctl")
BOOT = "475bfdce5e1e4c8f80eddd30be3d2dac"

needs_journal_files = pytest.mark.skipif(
    not (REMOTE.exists() and JOURNALCTL),
    reason="needs systemd-journal-remote and journalctl (apt-get install systemd-journal-remote; .ci/run does)",
)

# ----------------------------------------------------------------- writing journal files

_clock = [0]


def _next_time() -> int:
    """Realtime (µs) for the next entry: now, and after every entry written before."""
    _clock[0] = max(_clock[0] + 1, time.time_ns() // 1000)
    return _clock[0]


def export(entries: list[Mapping[str, str | bytes]]) -> bytes:
    """Entries in the journal export format (a value with a newline or not UTF-8: binary)."""
    out = bytearray()
    for fields in entries:
        when = _next_time()
        full: dict[str, str | bytes] = {
            "__REALTIME_TIMESTAMP": str(when),
            "__MONOTONIC_TIMESTAMP": str(when),
            "_BOOT_ID": BOOT,
            **fields,
        }
        for key, value in full.items():
            raw = value.encode() if isinstance(value, str) else value
            if b"\n" in raw or isinstance(value, bytes):
                out += key.encode() + b"\n" + struct.pack("<Q", len(raw)) + raw + b"\n"
            else:
                out += key.encode() + b"=" + raw + b"\n"
        out += b"\n"
    return bytes(out)


def write_entries(path: Path, entries: list[Mapping[str, str | bytes]]) -> None:
    """Append ``entries`` to the journal file ``path`` (created by the first call)."""
    res = subprocess.run([str(REMOTE), "-o", str(path), "-"], input=export(entries), capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr.decode()


def app_entry(
    code: str | None = None, clear: str | None = None, unit: str = "myapp.service", **more: str
) -> dict[str, str]:
    """An entry whose MESSAGE is the app's JSON line."""
    line: dict[str, str] = {"message": f"boom {code or clear}"}
    if code is not None:
        line["error_code"] = code
    if clear is not None:
        line["error_code_clear"] = clear
    return {"MESSAGE": json.dumps(line), "_SYSTEMD_UNIT": unit, **more}


def field_entry(code: str, message: str = "it failed", unit: str = "myapp.service", **more: str) -> dict[str, str]:
    """An entry as Python's JournalHandler writes ``extra={"error_code": ...}``."""
    return {"MESSAGE": message, "ERROR_CODE": code, "PRIORITY": "3", "_SYSTEMD_UNIT": unit, **more}


# ----------------------------------------------------------------- entries read as lines

REALTIME = "1768402800123456"  # 2026-01-14T15:00:00.123456Z


@pytest.mark.parametrize(
    ("entry", "body", "fields"),
    [
        ({"MESSAGE": '{"error_code": "A"}'}, b'{"error_code": "A"}', None),
        ({"MESSAGE": ' {"x": 1}\n'}, b'{"x": 1}', None),  # JSON, no code: read as the app's line
        ({"MESSAGE": list(b'{"error_code": "\x1bA"}')}, b'{"error_code": "\x1bA"}', None),  # a byte array
        ({"MESSAGE": ['{"error_code": "A"}', "second"]}, b'{"error_code": "A"}', None),  # given twice: the first
        ({"MESSAGE": "plain text"}, None, None),  # no code anywhere
        (
            {"MESSAGE": "disk full", "ERROR_CODE": "disk", "PRIORITY": "2", "EXCEPTION_TEXT": "Traceback..."},
            None,
            {"error_code": "disk", "message": "disk full", "level": "crit", "exception": "Traceback..."},
        ),
        (
            {"MESSAGE": "{not json", "ERROR_CODE_CLEAR": "disk", "RE_ALERT_TIME": "5m", "NOTIFICATION": "false"},
            None,
            {"error_code_clear": "disk", "re_alert_time": "5m", "notification": "false", "message": "{not json"},
        ),
        ({"MESSAGE": '{"a": 1}', "ERROR_CODE": "f"}, b'{"a": 1}', None),  # a JSON MESSAGE wins over fields
        ({"ERROR_CODE": list(b"bin\xff")}, None, {"error_code": "bin\ufffd"}),
    ],
)
def test_read_entry(entry: dict[str, Any], body: bytes | None, fields: dict[str, str] | None) -> None:
    got = read_entry({**entry, "__REALTIME_TIMESTAMP": REALTIME, "_SYSTEMD_UNIT": "u.service"})
    assert (got.body, got.fields, got.when, got.unit) == (body, fields, 1768402800.123456, "u.service")


def test_field_bytes() -> None:
    assert field_bytes("é") == "é".encode()
    assert field_bytes([104, 105]) == b"hi"
    assert field_bytes([[104], "x"]) == b"h"
    assert field_bytes([300]) is None and field_bytes(None) is None and field_bytes([]) is None


def _parser(app: str | None = None, fields: dict[str, str] | None = None, max_line: int = 1 << 20) -> JournalParser:
    return JournalParser(LineParser(app=app, tz=ZoneInfo("UTC"), max_line_bytes=max_line), fields)


def _lines(*entries: dict[str, Any]) -> bytes:
    return b"".join(orjson.dumps({"__REALTIME_TIMESTAMP": REALTIME, **e}) + b"\n" for e in entries)


def test_parser_times_apps_and_offsets() -> None:
    data = _lines(
        {"MESSAGE": '{"error_code": "A", "message": "own time", "timestamp": "2026-01-14T14:00:00Z"}'},
        {"MESSAGE": "noise", "_SYSTEMD_UNIT": "other.service"},
        {"MESSAGE": "field", "ERROR_CODE": "B", "_SYSTEMD_UNIT": "b.service"},
        {"MESSAGE": '{"error_code_clear": "A"}', "_SYSTEMD_UNIT": "a.service"},
    )
    res = _parser().parse_chunk(data, 100, 2e9, "journal:x")
    assert res.lines == 4 and res.skipped == 0
    got = [(e.code, e.clear, e.time, e.app, e.offset, e.path) for e in res.events]
    assert got == [
        ("A", None, 1768399200.0, None, 100, "journal:x"),  # the entry's own time wins; no unit: no app
        ("B", None, 1768402800.123456, "b.service", 102, "journal:x"),  # offsets count entries
        (None, "A", 1768402800.123456, "a.service", 103, "journal:x"),
    ]
    # the source's app wins over the unit
    assert {e.app for e in _parser(app="mine").parse_chunk(data, 0, 2e9).events} == {"mine"}


def test_parser_skips_and_the_cheap_check() -> None:
    data = (
        _lines({"MESSAGE": '{"error_code": broken'})
        + b"not an entry at all\n"  # no code's bytes: not decoded, not a skip
        + b'{"error_code": "cut off by a crash\n'
        + _lines({"MESSAGE": '{"error_code": "L", "message": "' + "x" * 400 + '"}'})
    )
    res = _parser(max_line=300).parse_chunk(data, 0, 2e9)
    assert (res.lines, res.skipped, res.reasons, res.events) == (4, 3, {"not_json": 2, "too_long": 1}, [])


def test_parser_fields_map_reads_message_json() -> None:
    data = _lines({"MESSAGE": '{"record": {"code": "M", "text": "mapped"}}', "_SYSTEMD_UNIT": "m.service"})
    res = _parser(fields={"code": "record.code", "message": "record.text"}).parse_chunk(data, 0, 2e9)
    assert [(e.code, e.message, e.app) for e in res.events] == [("M", "mapped", "m.service")]


# ----------------------------------------------------------------- positions and commands


def test_cursor_helpers_and_state() -> None:
    a = "s=abc;i=5;b=b1;m=10;t=661a935299af3;x=1"
    assert same_entry(a, "s=abc;i=5;b=b2;m=99;t=0;x=2") and not same_entry(a, "s=abc;i=6;b=b1;m=10;t=1;x=1")
    assert same_entry("opaque", "opaque") and not same_entry("opaque", a)
    assert since_text(1768402800000001) == "@1768402800.000001"
    state = JournalState(where="units=a.service", cursor=a, time=5, entries_read=7, error="e")
    assert JournalState.load(state.dump()) == state
    assert JournalState.load("not json") is None and JournalState.load(None) is None


def test_follow_args() -> None:
    spec = JournalSpec(units=("a.service", "b.service"), matches=("PRIORITY=3", "+", "SYSLOG_IDENTIFIER=x"))
    args = follow_args("journalctl", spec, ["--cursor=C"])
    # --merge: else --follow reads only the last boot (systemd 250-253)
    assert args[:6] == ["journalctl", "--follow", "--merge", "--no-tail", "--output=json", "--all"]
    assert args[6:] == [
        "--unit=a.service",
        "--unit=b.service",
        "--cursor=C",
        "--",
        "PRIORITY=3",
        "+",
        "SYSLOG_IDENTIFIER=x",
    ]
    assert follow_args("j", JournalSpec(directory="/d"), [])[-1] == "--directory=/d"


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ('journal = { units = ["a.service"], directory = "/x" }', "sources.0.journal: give exactly one of units"),
        ("journal = { }", "sources.0.journal: give exactly one of units"),
        ("journal = { units = [] }", "sources.0.journal.units: List should have at least 1 item"),
        ('journal = { units = ["a b"] }', "sources.0.journal.units.0: 'a b': a unit name holds no spaces"),
        ('journal = { file = "/x.journal", matches = ["PRIORITY"] }', "sources.0.journal.matches.0: 'PRIORITY' is not"),
        (
            'journal = { file = "/x.journal", matches = ["prio=3"] }',
            "sources.0.journal.matches.0: 'prio' is no journal",
        ),
        ('journal = { file = "/x.journal", matches = ["A=1", "+"] }', "sources.0.journal.matches: '+' goes between"),
        ('journal = { units = ["a"], unit = "b" }', "sources.0.journal.unit: unknown key (did you mean 'units'?)"),
        ('path = "/x/*.log"\njournal = { units = ["a"] }', "sources.0.journal: a source reads either files (path)"),
        ('journal = { units = ["a"] }\nformat = "docker"', "sources.0.format: format is for files (path)"),
        ('journal = { units = ["a"] }\nrotate_wait = "5s"', "sources.0.rotate_wait: rotate_wait is for files"),
        ('app = "x"', "sources.0.path: Field required"),
    ],
)
def test_bad_journal_sources_are_refused_naming_the_key(tmp_path: Path, source: str, problem: str) -> None:
    path = tmp_path / "errord.toml"
    path.write_text(f"[[sources]]\n{source}\n")
    with pytest.raises(ConfigError) as err:
        Settings.load(path, environ={})
    assert str(err.value).startswith(problem), str(err.value)


def test_journal_directory_is_taken_from_the_config_folder(tmp_path: Path) -> None:
    path = tmp_path / "errord.toml"
    path.write_text('[[sources]]\njournal = { directory = "jd" }\n')
    src = Settings.load(path, environ={}).to_run().sources[0]
    assert src.journal == JournalSpec(directory=str(tmp_path / "jd")) and src.path is None
    assert src.label == f"journal:directory={tmp_path / 'jd'}"


# ----------------------------------------------------------------- the reader, in process


def _source(jd: Path, start_at: str = "beginning", max_line_bytes: int = 1 << 20, **journal: Any) -> Source:
    spec = JournalSpec(directory=str(jd), **journal)
    return Source(
        path=None,
        journal=spec,
        app=None,
        start_at=start_at,  # type: ignore[arg-type]
        rotate_wait=0.0,
        timezone="UTC",
        max_line_bytes=max_line_bytes,
    )


class Fed:
    """Stands in for the batch: reads, accounts, commits or rolls back one reader."""

    def __init__(self, reader: JournalReader) -> None:
        self.reader = reader
        self.woken = asyncio.Event()
        reader._wake = self.woken.set

    async def lines(self, want: int, timeout: float = 30) -> list[bytes]:
        """Until ``want`` entries were handed on (not committed)."""
        got: list[bytes] = []
        end = time.monotonic() + timeout
        while len(got) < want:
            chunk = self.reader.read(1 << 20)
            if chunk is None:
                assert time.monotonic() < end, f"{len(got)} of {want} entries, error {self.reader.state.error}"
                self.woken.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.woken.wait(), 0.5)
                continue
            got += chunk.data.splitlines()
            self.reader.account(len(chunk.data.splitlines()) + chunk.skipped_long)
        return got

    def commit(self) -> str:
        meta = self.reader.checkpoint()
        self.reader.committed()
        return meta[meta_key(self.reader.index)]


def _messages(lines: list[bytes]) -> list[str]:
    return [orjson.loads(line)["MESSAGE"] for line in lines]


@needs_journal_files
async def test_reader_commits_cursor_rolls_back_and_resumes_exactly(tmp_path: Path) -> None:
    jd = tmp_path / "jd"
    jd.mkdir()
    write_entries(jd / "x.journal", [{"MESSAGE": f"m{i}"} for i in range(5)])
    reader = JournalReader(0, _source(jd), None, lambda: None)
    fed = Fed(reader)
    await reader.open()
    try:
        assert _messages(await fed.lines(5)) == [f"m{i}" for i in range(5)]
        reader.rollback()  # the commit failed: the same entries again
        assert _messages(await fed.lines(5)) == [f"m{i}" for i in range(5)]
        stored = fed.commit()
        assert JournalState.load(stored).entries_read == 5  # type: ignore[union-attr]
        write_entries(jd / "x.journal", [{"MESSAGE": f"m{i}"} for i in range(5, 8)])  # appended while following
        assert _messages(await fed.lines(3)) == ["m5", "m6", "m7"]
    finally:
        await reader.close()
    # a restart from the committed cursor (m4): from m5 on, m4 is not read again
    again = JournalReader(0, _source(jd), stored, lambda: None)
    fed = Fed(again)
    await again.open()
    try:
        assert _messages(await fed.lines(3)) == ["m5", "m6", "m7"]
        await asyncio.sleep(0.5)
        assert again.read(1 << 20) is None
        state = JournalState.load(fed.commit())
        assert state is not None and state.entries_read == 8
    finally:
        await again.close()


@needs_journal_files
async def test_reader_goes_on_across_a_reboot(tmp_path: Path) -> None:
    """A cursor from the boot before: the rest of that boot is read, then the new boot's
    (systemd 250-253's --follow alone reads only the last boot)."""
    jd = tmp_path / "jd"
    jd.mkdir()
    other = "11111111111111111111111111111111"
    write_entries(jd / "x.journal", [{"MESSAGE": "a0", "_BOOT_ID": other}, {"MESSAGE": "a1", "_BOOT_ID": other}])
    write_entries(jd / "x.journal", [{"MESSAGE": "b0"}, {"MESSAGE": "b1"}])
    assert JOURNALCTL is not None
    out = subprocess.run([JOURNALCTL, f"--directory={jd}", "--output=json"], capture_output=True, check=True).stdout
    a0 = orjson.loads(out.splitlines()[0])
    assert a0["MESSAGE"] == "a0"
    stored = JournalState(where=f"directory={jd}", cursor=a0["__CURSOR"], entries_read=1).dump()
    again = JournalReader(0, _source(jd), stored, lambda: None)
    await again.open()
    try:
        assert _messages(await Fed(again).lines(3)) == ["a1", "b0", "b1"]
    finally:
        await again.close()


@needs_journal_files
async def test_reader_from_a_cursor_its_matches_do_not_match(tmp_path: Path) -> None:
    """``matches`` changed since the cursor was stored: its entry matches no more, and the
    first matching entry after it is read (``--after-cursor`` would skip it before
    systemd 255)."""
    jd = tmp_path / "jd"
    jd.mkdir()
    write_entries(jd / "x.journal", [{"MESSAGE": "x0"}, {"MESSAGE": "k1", "KEEP": "1"}, {"MESSAGE": "k2", "KEEP": "1"}])
    assert JOURNALCTL is not None
    out = subprocess.run([JOURNALCTL, f"--directory={jd}", "--output=json"], capture_output=True, check=True).stdout
    x0 = orjson.loads(out.splitlines()[0])
    stored = JournalState(where=f"directory={jd}", cursor=x0["__CURSOR"], entries_read=1).dump()
    reader = JournalReader(0, _source(jd, matches=("KEEP=1",)), stored, lambda: None)
    await reader.open()
    try:
        assert _messages(await Fed(reader).lines(2)) == ["k1", "k2"]
    finally:
        await reader.close()


@needs_journal_files
async def test_reader_start_at_end_and_a_vacuumed_cursor(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    jd = tmp_path / "jd"
    jd.mkdir()
    write_entries(jd / "a.journal", [{"MESSAGE": f"old{i}"} for i in range(3)])
    reader = JournalReader(0, _source(jd, start_at="end"), None, lambda: None)
    fed = Fed(reader)
    await reader.open()
    try:
        first = JournalState.load(fed.commit())  # the first start's position: old2's cursor
        assert first is not None and first.cursor is not None and first.entries_read == 0
        write_entries(jd / "a.journal", [{"MESSAGE": "new0"}])
        assert _messages(await fed.lines(1)) == ["new0"]
        stored = fed.commit()
    finally:
        await reader.close()
    # the journal is vacuumed: the cursor's entry is gone; entries after its time are read
    (jd / "a.journal").unlink()
    write_entries(jd / "b.journal", [{"MESSAGE": "after0"}, {"MESSAGE": "after1"}])
    caplog.set_level(logging.WARNING)
    again = JournalReader(0, _source(jd), stored, lambda: None)
    fed = Fed(again)
    await again.open()
    try:
        assert _messages(await fed.lines(2)) == ["after0", "after1"]
    finally:
        await again.close()
    assert "entries in between may be missing" in caplog.text


@needs_journal_files
async def test_reader_stops_reading_the_pipe_when_not_consumed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_mod, "PENDING_MAX", 64 << 10)
    jd = tmp_path / "jd"
    jd.mkdir()
    total = 3000
    write_entries(jd / "x.journal", [{"MESSAGE": f"m{i} " + "x" * 200} for i in range(total)])
    reader = JournalReader(0, _source(jd), None, lambda: None)
    await reader.open()
    try:
        await asyncio.sleep(1.5)  # journalctl has long printed everything it may
        held = reader._pending_bytes
        assert 0 < held <= (64 << 10) + journal_mod.PIPE_READ, held
        got = await Fed(reader).lines(total)
        assert _messages(got) == [f"m{i} " + "x" * 200 for i in range(total)]
    finally:
        await reader.close()


@needs_journal_files
async def test_entries_as_journalctl_prints_them_give_events(tmp_path: Path) -> None:
    """A MESSAGE journalctl prints as a byte array (a "\r" makes it unprintable), a field
    entry and a JSON line, read from a real journal file and parsed."""
    jd = tmp_path / "jd"
    jd.mkdir()
    write_entries(
        jd / "x.journal",
        [
            {"MESSAGE": b'{"error_code": "CR", "message": "from windows"}\r', "_SYSTEMD_UNIT": "w.service"},
            field_entry("FIELD", EXCEPTION_TEXT="Traceback (most recent call last):\nValueError: bad"),
            app_entry("JSON"),
        ],
    )
    reader = JournalReader(0, _source(jd), None, lambda: None)
    await reader.open()
    try:
        lines = await Fed(reader).lines(3)
    finally:
        await reader.close()
    assert isinstance(orjson.loads(lines[0])["MESSAGE"], list)  # how journalctl prints it
    res = _parser().parse_chunk(b"\n".join(lines) + b"\n", 0, time.time() + 60)
    got = [(e.code, e.message, e.app, e.level, e.exception) for e in res.events]
    assert got == [
        ("CR", "from windows", "w.service", None, None),
        ("FIELD", "it failed", "myapp.service", "err", "Traceback (most recent call last): ValueError: bad"),
        ("JSON", "boom JSON", "myapp.service", None, None),
    ]
    assert all(abs(e.time - time.time()) < 60 for e in res.events)  # the entries' realtime


@needs_journal_files
async def test_reader_skips_an_entry_over_the_limit_and_keeps_its_cursor(tmp_path: Path) -> None:
    jd = tmp_path / "jd"
    jd.mkdir()
    huge = json.dumps({"error_code": "HUGE", "message": "x" * 300_000})  # over 4 x 256 + 64 KiB as printed
    write_entries(jd / "x.journal", [{"MESSAGE": "m0"}, {"MESSAGE": huge}, {"MESSAGE": "m1"}, {"MESSAGE": huge}])
    reader = JournalReader(0, _source(jd, max_line_bytes=256), None, lambda: None)
    fed = Fed(reader)
    await reader.open()
    skipped = 0
    try:
        got: list[bytes] = []
        end = time.monotonic() + 30
        while len(got) + skipped < 4:
            assert time.monotonic() < end, (got, skipped)
            chunk = reader.read(1 << 20)
            if chunk is None:
                await asyncio.sleep(0.05)
                continue
            got += chunk.data.splitlines()
            skipped += chunk.skipped_long
            reader.account(len(chunk.data.splitlines()) + chunk.skipped_long)
        assert _messages(got) == ["m0", "m1"] and skipped == 2
        stored = fed.commit()
    finally:
        await reader.close()
    state = JournalState.load(stored)
    assert state is not None and state.entries_read == 4
    again = JournalReader(0, _source(jd, max_line_bytes=256), stored, lambda: None)
    await again.open()
    try:
        await asyncio.sleep(1.0)
        assert again.read(1 << 20) is None  # the last, skipped entry's cursor was committed
    finally:
        await again.close()


async def test_reader_without_journalctl_reports_and_retries(tmp_path: Path) -> None:
    reader = JournalReader(3, _source(tmp_path), None, lambda: None, binary=str(tmp_path / "no-journalctl"))
    await reader.open()
    try:
        assert reader.read(1 << 20) is not None  # the first start's position, committed at start
        reader.checkpoint()
        reader.committed()
        for _ in range(100):
            if reader.ready():
                break
            await asyncio.sleep(0.02)
        chunk = reader.read(1 << 20)  # an empty chunk: the batch commits the error at once
        assert chunk is not None and chunk.data == b"" and chunk.key == (-1, 3) and not reader.settled()
        state = JournalState.load(reader.checkpoint()[meta_key(3)])
        assert state is not None and "cannot run" in (state.error or "") and "No such file" in (state.error or "")
        await asyncio.sleep(1.5)
        assert reader._failures >= 2  # tried again, and the daemon's loop was never blocked
    finally:
        await reader.close()


# ----------------------------------------------------------------- end to end


def _journals(e: Any) -> list[dict[str, Any]]:
    journals: list[dict[str, Any]] = e.status()["journals"]
    return journals


@pytest.mark.slow
@needs_journal_files
def test_journal_entries_open_and_clear_incidents_beside_files(make_errord: Any, tmp_path: Path) -> None:
    """A file source and two journal sources (start_at end and beginning) in one daemon:
    JSON MESSAGE and field entries open and clear incidents, entries appended while it
    follows are read, ``status`` shows each journal's entries and cursor."""
    jd = tmp_path / "jd"
    jd.mkdir()
    write_entries(jd / "x.journal", [app_entry("OLD"), {"MESSAGE": "noise"}])
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.jsonl").write_text(json.dumps({"error_code": "F", "message": "from a file"}) + "\n")
    e = make_errord(
        scope="app",
        sources=[
            {"path": str(logs / "*.jsonl"), "start_at": "beginning", "app": "file"},
            {"journal": {"directory": str(jd)}, "start_at": "end"},
            {"journal": {"directory": str(jd)}, "start_at": "beginning", "app": "beg"},
        ],
    )
    state = State(tmp_path / "state")
    start(e, state)
    write_entries(jd / "x.journal", [app_entry("A"), field_entry("B")])
    write_entries(jd / "x.journal", [app_entry(clear="A")])

    def keys() -> dict[tuple[str | None, str], bool]:
        return {(i.app, i.code): i.active for i in state.incidents()}

    want = {
        ("file", "F"): True,
        ("beg", "OLD"): True,
        ("beg", "A"): False,
        ("beg", "B"): True,
        ("myapp.service", "A"): False,  # no app configured: the entry's unit
        ("myapp.service", "B"): True,
    }
    wait_until(lambda: keys() == want, 30, f"the incidents {want}, got {keys()}\n{e.output()[-2000:]}")
    journals = wait_until(
        lambda: (j := _journals(e)) and [x["entries_read"] for x in j] == [3, 5] and j,
        30,
        "the entries counted",
    )
    assert [(j["source"], j["journal"], j["error"]) for j in journals] == [
        (1, f"directory={jd}", None),
        (2, f"directory={jd}", None),
    ]
    assert journals[0]["cursor"] == journals[1]["cursor"] and journals[0]["cursor"].startswith("s=")
    shown = e.cli("status").stdout
    assert "JOURNAL" in shown and f"sources.1: directory={jd}" in shown and "app.jsonl" in shown
    assert e.stop() == 0


class JournalWriter(threading.Thread):
    """Appends ``total`` entries in runs of ``per_run`` (one systemd-journal-remote each):
    entry i's MESSAGE holds the code k{i}; every 1000th also has KEEP=1."""

    def __init__(self, path: Path, total: int, per_run: int) -> None:
        super().__init__(daemon=True)
        self.path, self.total, self.per_run = path, total, per_run
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for first in range(0, self.total, self.per_run):
                batch = []
                for i in range(first, min(first + self.per_run, self.total)):
                    keep = {"KEEP": "1"} if i % 1000 == 999 else {}
                    batch.append(app_entry(f"k{i}", **keep))
                write_entries(self.path, batch)
                time.sleep(0.02)
        except BaseException as exc:
            self.error = exc


@pytest.mark.slow
@needs_journal_files
def test_journal_kill9_and_restarts_count_every_entry_once(make_errord: Any, tmp_path: Path) -> None:
    """kill -9 at random moments while entries are appended, then restarts: every entry is
    one occurrence of its own incident, also for a filter that drops 999 of 1,000 entries
    (its cursor is the last matching entry: a quiet filtered source neither re-reads nor
    skips), and a restart with nothing new reads nothing again."""
    seed = seed_for(1818)
    rnd = random.Random(seed)
    jd = tmp_path / "jd"
    jd.mkdir()
    e = make_errord(
        scope="app",
        sources=[
            {"journal": {"directory": str(jd)}, "start_at": "beginning", "app": "all"},
            {"journal": {"directory": str(jd), "matches": ["KEEP=1"]}, "start_at": "beginning", "app": "kept"},
        ],
    )
    state = State(tmp_path / "state")
    writer = JournalWriter(jd / "x.journal", total=5000, per_run=250)
    write_entries(jd / "x.journal", [{"MESSAGE": "before the first start"}])
    start(e, state)
    writer.start()
    kills = 0
    for _ in range(3):
        time.sleep(rnd.uniform(0.2, 0.9))
        e.kill()
        kills += 1
        time.sleep(rnd.uniform(0.0, 0.3))
        start(e, state)
    writer.join(120)
    assert writer.error is None, writer.error
    ctx = f"seed={seed} kills={kills}"

    def counted() -> tuple[Counter[str], Counter[str]]:
        got: dict[str, Counter[str]] = {"all": Counter(), "kept": Counter()}
        for inc in state.incidents():
            got[str(inc.app)][inc.code] += inc.occurrences
        return got["all"], got["kept"]

    want_all = Counter({f"k{i}": 1 for i in range(5000)})
    want_kept = Counter({f"k{i}": 1 for i in range(999, 5000, 1000)})
    wait_until(lambda: sum(counted()[0].values()) >= 5000, 60, f"every entry read ({ctx})", every=0.2)
    for round_ in ("caught up", "restarted with nothing new"):
        wait_until(
            lambda: [j["entries_read"] for j in _journals(e)] == [5001, 5], 30, f"{round_}: {_journals(e)} ({ctx})"
        )
        all_, kept = counted()
        assert all_ == want_all, (
            f"{ctx} {round_}: missing {[c for c in want_all if c not in all_][:10]}, "
            f"doubled {[c for c, n in all_.items() if n > 1][:10]}"
        )
        assert kept == want_kept, f"{ctx} {round_}: {kept}"
        e.kill()
        start(e, state)
        time.sleep(1.0)  # what a restart would read again, it reads now
    assert e.stop() == 0


@pytest.mark.slow
@needs_journal_files
def test_journalctl_missing_is_an_error_then_a_retried_source(make_errord: Any, tmp_path: Path) -> None:
    """journalctl not on PATH: logged, shown by ``status``, the daemon runs on; once it is
    there, the next retry reads the journal and the error is gone."""
    assert JOURNALCTL is not None
    jd = tmp_path / "jd"
    jd.mkdir()
    write_entries(jd / "x.journal", [{"MESSAGE": "hello"}])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    e = make_errord(sources=[{"journal": {"directory": str(jd)}, "start_at": "beginning", "app": "j"}])
    e.env = {**e.env, "PATH": str(bin_dir)}
    state = State(tmp_path / "state")
    start(e, state)
    wait_until(lambda: "cannot run journalctl" in (_journals(e)[0]["error"] or ""), 30, "the error in status")
    e.wait_log("cannot run journalctl: No such file or directory")
    assert e.proc is not None and e.proc.poll() is None and state.running()
    shown = e.cli("status").stdout
    assert "cannot run journalctl" in shown
    os.symlink(JOURNALCTL, bin_dir / "journalctl")  # installed
    write_entries(jd / "x.journal", [app_entry("LATE")])
    wait_until(lambda: {i.code for i in state.incidents()} == {"LATE"}, 60, f"the entry read:\n{e.output()[-2000:]}")
    wait_until(lambda: _journals(e)[0]["error"] is None, 30, "the error gone")
    assert _journals(e)[0]["entries_read"] == 2
    assert e.stop() == 0


@pytest.mark.slow
@needs_journal_files
def test_journal_and_file_sources_renumbered_by_restart_and_reload(make_errord: Any, tmp_path: Path) -> None:
    """Positions and cursors keep to their sources: a file after a journal source (stored
    under the config's numbering) is not read again after kill -9; a reload that moves
    both sources goes on where each was, and a journal source it adds starts by its
    ``start_at``."""
    jd, logs = tmp_path / "jd", tmp_path / "logs"
    jd.mkdir()
    logs.mkdir()
    log = logs / "app.jsonl"
    journal: dict[str, Any] = {"journal": {"directory": str(jd)}, "start_at": "beginning", "app": "j"}
    files: dict[str, Any] = {"path": str(logs / "*.jsonl"), "start_at": "beginning", "app": "file"}
    e = make_errord(scope="app", sources=[journal, files])
    state = State(tmp_path / "state")
    write_entries(jd / "x.journal", [app_entry("J1", KEEP="1")])
    log.write_text(json.dumps({"error_code": "F1"}) + "\n")
    start(e, state)

    def counts() -> Counter[tuple[str | None, str]]:
        return Counter({(i.app, i.code): i.occurrences for i in state.incidents()})

    first = Counter({("j", "J1"): 1, ("file", "F1"): 1})
    wait_until(lambda: counts() == first, 30, f"{first}, got {counts()}")
    assert [p.source for p in state.positions()] == [1]  # the config's numbering
    e.kill()
    start(e, state)
    time.sleep(1.5)  # what it would read again, it reads now
    assert counts() == first
    write_config_sources(
        e.config, [files, journal, {**journal, "journal": {**journal["journal"], "matches": ["KEEP=1"]}, "app": "k"}]
    )
    assert e.proc is not None
    e.proc.send_signal(signal.SIGHUP)
    e.wait_log("config reloaded")
    write_entries(jd / "x.journal", [app_entry("J2", KEEP="1")])
    with open(log, "a") as f:
        f.write(json.dumps({"error_code": "F2"}) + "\n")
    want = first + Counter({("j", "J2"): 1, ("file", "F2"): 1, ("k", "J1"): 1, ("k", "J2"): 1})
    wait_until(lambda: counts() == want, 30, lambda: f"{want}, got {counts()}\n{e.output()[-2000:]}")
    time.sleep(1.0)
    assert counts() == want
    assert [(j["source"], j["entries_read"]) for j in _journals(e)] == [(1, 2), (2, 2)]
    assert e.stop() == 0


def write_config_sources(path: Path, sources: list[dict[str, Any]]) -> None:
    """The config file at ``path`` with its [[sources]] replaced."""
    text = path.read_text()
    head = text.split("[[sources]]", 1)[0]
    body = "".join("[[sources]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in src.items()) for src in sources)
    path.write_text(head + body)


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)
