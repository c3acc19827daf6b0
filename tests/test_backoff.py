"""backoff.backoff: doubling from ``first``, capped; jitter only lengthens, never past the cap."""

from __future__ import annotations

import pytest

from errord.backoff import backoff


@pytest.mark.parametrize(
    ("retry", "first", "cap", "want"),
    [
        (0, 1.0, 300.0, 1.0),
        (1, 1.0, 300.0, 2.0),
        (3, 0.5, 30.0, 4.0),
        (8, 1.0, 60.0, 60.0),  # capped
        (10_000, 1.0, 60.0, 60.0),  # no overflow however long it failed
        (-1, 1.0, 60.0, 1.0),  # never shorter than the first wait
    ],
)
def test_doubles_and_caps(retry: int, first: float, cap: float, want: float) -> None:
    assert backoff(retry, first, cap) == want


def test_jitter_only_lengthens_and_respects_the_cap() -> None:
    waits = [backoff(2, 1.0, 300.0, jitter=0.1) for _ in range(200)]
    assert all(4.0 <= w <= 4.4 for w in waits)
    assert len(set(waits)) > 1  # it does vary: tries of targets that failed together drift apart
    assert all(backoff(20, 1.0, 5.0, jitter=0.1) == 5.0 for _ in range(50))
