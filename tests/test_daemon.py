"""The daemon's lifecycle end to end (`errord run`): what a start that is refused says."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_a_refused_second_daemon_says_only_why(make_errord) -> None:
    """Issue 11.11: it never started, so it must not log `errord stopped`: one line alone."""
    e = make_errord()
    e.start()
    res = e.cli("run", check=False, timeout=30)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 1, res.stderr
    assert len(lines) == 1 and "another errord (pid" in lines[0], res.stderr
    assert "errord stopped" not in res.stderr
    assert e.stop() == 0
    assert "errord stopped" in e.output()  # the one that ran says so
