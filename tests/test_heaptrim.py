"""heaptrim.HeapTrim: the freed heap goes back once per idle spell, never while reading."""

from __future__ import annotations

import ctypes
import platform

import pytest

from errord.heaptrim import HeapTrim, libc_trim


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(idle: float = 5.0) -> tuple[HeapTrim, Clock, list[int]]:
    clock = Clock()
    calls: list[int] = []
    return HeapTrim(idle, trim=lambda: calls.append(1), clock=clock), clock, calls


def test_trims_once_after_the_start_when_idle() -> None:
    h, clock, calls = make()
    assert not h.tick(0)
    clock.now += 4.9
    assert not h.tick(0)
    assert calls == []
    clock.now += 0.2
    assert h.tick(0)
    assert calls == [1]
    clock.now += 60
    assert not h.tick(0)  # one idle spell, one trim: not on a timer
    assert calls == [1] and h.trims == 1


def test_never_while_reading_and_again_after_new_activity() -> None:
    h, clock, calls = make()
    for lines in range(0, 100, 10):  # a line every second: never idle for 5 s
        h.tick(lines)
        clock.now += 1.0
    assert calls == []
    clock.now += 5.0
    assert h.tick(90)
    clock.now += 1.0
    assert not h.tick(120)  # read again: the idle clock restarts
    clock.now += 4.0
    assert not h.tick(120)
    clock.now += 1.0
    assert h.tick(120)
    assert h.trims == 2


def test_release_comes_just_before_the_trim() -> None:
    clock = Clock()
    calls: list[str] = []
    h = HeapTrim(1.0, trim=lambda: calls.append("trim"), clock=clock)
    h.release = lambda: calls.append("release")
    h.tick(0)
    assert calls == []
    clock.now += 1.5
    assert h.tick(0)
    assert calls == ["release", "trim"]


def test_a_failing_trim_is_not_fatal() -> None:
    clock = Clock()

    def boom() -> None:
        raise OSError("no")

    h = HeapTrim(1.0, trim=boom, clock=clock)
    h.tick(0)
    clock.now += 2
    assert not h.tick(0)
    assert h.trims == 0


def test_no_trim_function_means_nothing_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("errord.heaptrim.libc_trim", lambda: None)
    clock = Clock()
    h = HeapTrim(1.0, clock=clock)
    h.tick(0)
    clock.now += 10
    assert not h.tick(0)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_libc_trim_gives_back_freed_heap() -> None:
    trim = libc_trim()
    assert trim is not None

    def rss_kb() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    # 40 MiB in 64 KiB blocks (under the mmap threshold: heap), the first one kept so the
    # heap cannot shrink from its top: only malloc_trim's madvise of free pages gives back
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD: free() itself keeps it all, as in the daemon
    blocks = [libc.malloc(64 << 10) for _ in range(640)]
    for b in blocks:
        ctypes.memset(b, 1, 64 << 10)
    tail = libc.malloc(64 << 10)  # above them: the top cannot be trimmed by free()
    ctypes.memset(tail, 1, 64 << 10)
    for b in blocks:
        libc.free(b)
    before = rss_kb()
    trim()
    after = rss_kb()
    libc.free(tail)
    assert before - after > 30 << 10, (before, after)
