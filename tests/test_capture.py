"""sinks.capture: Retry-After values and the one-line reason of an Apprise call."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from email.utils import format_datetime

from errord.sinks.capture import Seen, capturing, parse_retry_after

NOW = 1_768_400_000.0


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after("1.5") == 1.5
    when = format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True)  # IMF-fixdate
    assert parse_retry_after(when, now=NOW) == 30.0
    assert parse_retry_after(when, now=NOW + 60) == 0.0  # a date in the past: now
    for bad in (None, "", "soon", "-5", "nan", "Wed, 99 Foo 2026"):
        assert parse_retry_after(bad, now=NOW) is None, bad


def test_reason_joins_what_apprise_said_with_the_transport_error() -> None:
    seen = Seen(
        messages=[
            "A Connection error occurred sending JSON notification to 127.0.0.1.",
            "A Connection error occurred sending JSON notification to 127.0.0.1.",
        ],
        errors=["Connection refused"],
    )
    assert seen.reason() == "A Connection error occurred sending JSON notification to 127.0.0.1 (Connection refused)"
    assert Seen(responses=[(429, 30.0), (200, None)]).reason() == "HTTP 429"
    assert Seen(messages=["Unparseable URL nosuch://tok_secret/x"]).reason() == "Unparseable URL …"
    assert Seen(messages=["x" * 1000]).reason() == "x" * 300
    assert Seen().reason() == ""
    assert Seen(responses=[(503, 2.0), (429, 30.0), (200, 99.0)]).retry_after() == 30.0
    assert Seen(responses=[(503, None)]).retry_after() is None


def test_only_the_capturing_thread_collects() -> None:
    log = logging.getLogger("apprise")
    other: list[Seen] = []

    def elsewhere() -> None:
        with capturing() as s:
            other.append(s)
            log.warning("from the other thread")

    with capturing() as seen:
        log.warning("Invalid ~From~ email specified: ")
        log.info("not a reason")
        t = threading.Thread(target=elsewhere)
        t.start()
        t.join()
        with capturing() as inner:  # nested: the inner block has its own
            log.error("inner")
        log.error("Could not load E-Mail URL: mailto://example.com")
    log.warning("after the block")
    assert seen.messages == ["Invalid ~From~ email specified: ", "Could not load E-Mail URL: mailto://example.com"]
    assert inner.messages == ["inner"] and other[0].messages == ["from the other thread"]
    assert seen.reason() == "Invalid ~From~ email specified; Could not load E-Mail URL: …"


def test_captured_warnings_are_not_logged_twice(caplog) -> None:
    """What Apprise warns inside ``capturing()`` becomes the caller's reason, said in the
    caller's one line per failed send: it is not logged on its own as well."""
    log = logging.getLogger("apprise")
    with caplog.at_level(logging.DEBUG, logger="apprise"):
        with capturing() as seen:
            log.warning("A Connection error occurred")
            log.debug("JSON POST URL: …")
        log.warning("outside a capture")
    assert seen.messages == ["A Connection error occurred"]
    assert [r.getMessage() for r in caplog.records] == ["JSON POST URL: …", "outside a capture"]
