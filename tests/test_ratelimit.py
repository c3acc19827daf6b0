"""ratelimit.RateLimit: one event per key per interval, with a fake clock."""

from __future__ import annotations

from errord.ratelimit import RateLimit


def test_one_event_per_key_per_interval_and_forget() -> None:
    now = [100.0]
    rl = RateLimit(60.0, clock=lambda: now[0])
    assert rl.allow("a") and rl.allow("b")
    assert not rl.allow("a")
    now[0] += 59.9
    assert not rl.allow("a")
    now[0] += 0.1
    assert rl.allow("a") and not rl.allow("a")
    rl.forget("a")  # the fault is over: a new one is told at once
    assert rl.allow("a")


def test_keys_never_grow_without_bound() -> None:
    now = [0.0]
    rl = RateLimit(1.0, clock=lambda: now[0], max_keys=10)
    for i in range(10):
        assert rl.allow(i)
    now[0] += 2.0  # all ten expired: dropped when the table is full
    assert rl.allow("new")
    assert len(rl) == 1
    for i in range(9):
        rl.allow(f"live{i}")
    assert not rl.allow("new")  # a live key is kept


def test_once_per_key_and_a_flood_is_forgotten() -> None:
    rl = RateLimit(None, max_keys=3)
    assert rl.allow("a") and not rl.allow("a")  # once, whatever the time
    rl.forget("a")
    assert rl.allow("a")
    for key in ("b", "c", "d", "e"):
        assert rl.allow(key)  # nothing expires: the full table is dropped instead of growing
    assert len(rl) <= 3


def test_a_full_table_of_live_keys_is_dropped() -> None:
    now = [0.0]
    rl = RateLimit(60.0, clock=lambda: now[0], max_keys=3)
    for key in "abc":
        assert rl.allow(key)
    assert rl.allow("d") and len(rl) == 1  # none expired: forgotten rather than grown
