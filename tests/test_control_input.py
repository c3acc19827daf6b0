"""Hostile and out-of-range input to the control commands (CONTRACT §8), through the CLI
with no daemon running: exit 2 with one line naming the argument, nothing stored, and
what is stored shown safely (no terminal escapes, newlines or log lines injected)."""

from __future__ import annotations

from pathlib import Path

from conftest import Errord


def _one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if "0700 is advised" not in ln]
    assert len(lines) == 1, text
    return lines[0]


def test_an_until_past_year_9999_is_exit_2_and_stores_nothing(make_errord, tmp_path: Path) -> None:
    e: Errord = make_errord()
    res = e.cli("silence", "db", "--until", "9999-12-31T23:59:59-12:00", check=False)
    assert res.returncode == 2 and "--until" in _one_line(res.stderr)
    res = e.cli("silence", "db", "--until", "2400-01-01T00:00:00Z", check=False)
    assert res.returncode == 2 and "--until" in _one_line(res.stderr)
    assert e.json("silences", "--all") == []  # and the listing still works


def test_a_reason_or_name_too_long_is_exit_2_naming_it(make_errord) -> None:
    e: Errord = make_errord()
    for args in (("--reason", "R" * 1001), ("--by", "b" * 201)):
        res = e.cli("silence", "db", "--for", "1h", *args, check=False)
        assert res.returncode == 2 and args[0] in _one_line(res.stderr) and "R" * 100 not in res.stderr
    e.cli("silence", "db", "--for", "1h", "--reason", "R" * 1000, "--by", "b" * 200)


def test_control_characters_in_reason_and_by_are_not_printed_raw_in_the_table(make_errord) -> None:
    e: Errord = make_errord()
    sid = e.cli(
        "silence", "db", "--for", "1h", "--reason", "evil\x1b[31mRED\x1b[0m\nsecond line", "--by", "bob\x1b]0;t\x07"
    ).stdout.strip()
    out = e.cli("silences").stdout
    assert "\x1b" not in out and "\x07" not in out
    (row,) = [ln for ln in out.splitlines() if ln.startswith(sid)]
    assert "second line" in row  # the reason on its row, its newline gone
    (shown,) = e.json("silences")
    assert shown["reason"] == "evil\x1b[31mRED\x1b[0m\nsecond line"  # JSON keeps it (escaped by JSON)


def test_unknown_ids_and_codes_are_named_safely(make_errord) -> None:
    e: Errord = make_errord()
    res = e.cli("unsilence", "zz\nFAKE ERROR injected", check=False)
    assert res.returncode == 1 and "FAKE ERROR injected" in _one_line(res.stderr)
    for cmd in ("ack", "resolve"):
        res = e.cli(cmd, "db\x1b[2Jdown", check=False)
        assert res.returncode == 2 and "\x1b" not in res.stderr and "CODE" in _one_line(res.stderr)


def test_errors_about_huge_arguments_stay_short(make_errord) -> None:
    e: Errord = make_errord()
    huge = "x" * 100_000
    for args in (("silence", huge, "--for", "1h"), ("silence", "db", "--app", huge, "--for", "1h"),
                 ("silence", "db", "--for", huge), ("silence", "db", "--until", huge)):  # fmt: skip
        res = e.cli(*args, check=False)
        assert res.returncode == 2 and len(_one_line(res.stderr)) < 300, res.stderr[:300]


def test_arguments_that_are_not_utf8_are_exit_2_naming_them(make_errord) -> None:
    e: Errord = make_errord()
    bad = "db\udcff"  # the byte 0xff in argv (subprocess writes it back as that byte)
    for args, named in (
        (("silence", bad, "--for", "1h"), "PATTERN"),
        (("silence", "db", "--app", bad, "--for", "1h"), "--app"),
        (("silence", "db", "--for", "1h", "--reason", bad), "--reason"),
        (("silence", "db", "--for", "1h", "--by", bad), "--by"),
        (("ack", bad), "CODE"),
        (("resolve", "db", "--reason", bad), "--reason"),
    ):
        res = e.cli(*args, check=False)
        assert res.returncode == 2 and named in _one_line(res.stderr) and "UTF-8" in res.stderr, (args, res.stderr)
    assert e.json("silences", "--all") == []
    # an id that is not UTF-8 is one more unknown id (CONTRACT §8: exit 1 naming it), the known ones still end
    sid = e.cli("silence", "db", "--for", "1h").stdout.strip()
    res = e.cli("unsilence", bad, sid, check=False)
    assert res.returncode == 1 and "'db\\udcff'" in _one_line(res.stderr) and res.stdout == f"ended {sid}\n"
    assert e.json("silences") == []
