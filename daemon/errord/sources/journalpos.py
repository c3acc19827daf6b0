"""Where a journal source is (CONTRACT §12): its committed state and the ``journalctl``
command lines that go on from it. Pure but for :func:`run_once` (a short ``journalctl``)
and :func:`journalctl_found` (a look at PATH).

The state of source N is the journal meta entry ``journal.N`` (JSON), committed in the
batch's transaction with what its entries caused: the cursor of the last entry handed
on (and that entry's time), the entries read, the error ``journalctl`` gave last, and
which journal it is (``where``). No cursor yet: ``since`` (start_at = "end" found no
entry: entries from that time on) or, without it, the whole journal.

Cursors are followed with ``--cursor=C`` and the first entry dropped when it is C:
``--after-cursor`` skips the first *matching* entry even when the cursor's own entry is
not one (systemd before 255, systemd/systemd#30288). ``--merge``: without it
``--follow`` reads only the last boot (systemd 250 to 253), so a cursor from before a
reboot would skip the rest of that boot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from dataclasses import asdict, dataclass, replace
from typing import Any

from errord.config import JournalSpec

__all__ = [
    "JOURNALCTL",
    "META_PREFIX",
    "JournalState",
    "LongEntry",
    "follow_args",
    "journalctl_found",
    "meta_key",
    "run_once",
    "same_entry",
    "selection_args",
    "since_text",
]

JOURNALCTL = "journalctl"
META_PREFIX = "journal."  # meta key of source N: journal.N
_CURSOR = re.compile(rb'"__CURSOR"\s*:\s*"([^"\\]+)"')
_REALTIME = re.compile(rb'"__REALTIME_TIMESTAMP"\s*:\s*"(\d+)"')
ONCE_TIMEOUT = 10.0  # seconds a one-shot journalctl (the tail, a cursor check) may take


class LongEntry:
    """An entry too long to keep, read past piece by piece: its cursor and time are kept
    (its fields come in any order, so each piece is searched, with an overlap)."""

    def __init__(self) -> None:
        self.cursor: str | None = None
        self.time: int | None = None
        self._tail = b""

    def scan(self, piece: bytes) -> None:
        text = self._tail + piece
        if self.cursor is None:
            self.cursor = cursor_of(text)
        if self.time is None:
            self.time = realtime_of(text)
        self._tail = piece[-256:]


def meta_key(index: int) -> str:
    return f"{META_PREFIX}{index}"


@dataclass(slots=True)
class JournalState:
    """What is committed of one journal source (see the module doc)."""

    where: str = ""
    cursor: str | None = None
    time: int | None = None  # __REALTIME_TIMESTAMP (µs) of the cursor's entry
    since: float | None = None  # no cursor: entries from this epoch time on
    entries_read: int = 0
    error: str | None = None

    def dump(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def load(cls, text: str | None) -> JournalState | None:
        """The state stored as ``text``; None when there is none or it is unreadable."""
        if not text:
            return None
        try:
            data: Any = json.loads(text)
            return cls(
                where=str(data.get("where", "")),
                cursor=data.get("cursor") if isinstance(data.get("cursor"), str) else None,
                time=int(data["time"]) if isinstance(data.get("time"), int) else None,
                since=float(data["since"]) if isinstance(data.get("since"), (int, float)) else None,
                entries_read=int(data.get("entries_read", 0)),
                error=data.get("error") if isinstance(data.get("error"), str) else None,
            )
        except (ValueError, TypeError, AttributeError):
            return None

    def copy(self) -> JournalState:
        return replace(self)


def cursor_of(line: bytes) -> str | None:
    """The ``__CURSOR`` of one journalctl JSON line (its fields come in any order)."""
    m = _CURSOR.search(line)
    return m.group(1).decode("ascii", "replace") if m else None


def realtime_of(line: bytes) -> int | None:
    m = _REALTIME.search(line)
    return int(m.group(1)) if m else None


def _cursor_parts(cursor: str) -> dict[str, str]:
    return dict(part.partition("=")[::2] for part in cursor.split(";"))


def same_entry(a: str, b: str) -> bool:
    """Whether two cursors name the same entry: same sequence number in the same series
    (the rest may be written differently), else the same text."""
    pa, pb = _cursor_parts(a), _cursor_parts(b)
    if pa.get("s") and pa.get("i") and pb.get("s") and pb.get("i"):
        return (pa["s"], pa["i"]) == (pb["s"], pb["i"])
    return a == b


def cursor_time(cursor: str) -> int | None:
    """The realtime (µs) a cursor holds (its ``t=``, hex), if any."""
    try:
        return int(_cursor_parts(cursor).get("t", ""), 16)
    except ValueError:
        return None


def since_text(epoch_us: int) -> str:
    """``--since`` for entries from ``epoch_us`` (µs since the epoch) on."""
    return f"@{epoch_us // 1_000_000}.{epoch_us % 1_000_000:06d}"


def selection_args(spec: JournalSpec) -> list[str]:
    """Which journal and units: ``--directory``, ``--file`` or ``--unit`` options."""
    if spec.directory is not None:
        return [f"--directory={spec.directory}"]
    if spec.file is not None:
        return [f"--file={spec.file}"]
    return [f"--unit={u}" for u in spec.units or ()]


def match_args(spec: JournalSpec) -> list[str]:
    return ["--", *spec.matches] if spec.matches else []


def follow_args(binary: str, spec: JournalSpec, position: list[str]) -> list[str]:
    """The following ``journalctl`` from ``position`` (``--cursor=…``, ``--since=…`` or
    nothing: the whole journal). ``--all``: long fields are printed, not ``null``."""
    return [
        binary,
        "--follow",
        "--merge",
        "--no-tail",
        "--output=json",
        "--all",
        *selection_args(spec),
        *position,
        *match_args(spec),
    ]


async def run_once(args: list[str]) -> tuple[int | None, bytes, str]:
    """Run a short ``journalctl`` for its first line of output: (exit status, or None when
    it was stopped after that line; the line; its last stderr line). Raises ``OSError``
    when it cannot be started."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=1 << 26,  # one entry, however long
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        try:
            first = await asyncio.wait_for(proc.stdout.readline(), ONCE_TIMEOUT)
        except (TimeoutError, ValueError):
            first = b""
        if proc.returncode is None and first:
            return None, first.rstrip(b"\n"), ""  # the rest is not wanted: killed below
        try:
            err = await asyncio.wait_for(proc.stderr.read(), ONCE_TIMEOUT)
            rc = await asyncio.wait_for(proc.wait(), ONCE_TIMEOUT)
        except TimeoutError:
            return -1, b"", f"no answer in {ONCE_TIMEOUT:.0f}s"
        lines = err.decode("utf-8", "replace").strip().splitlines()
        return rc, first.rstrip(b"\n"), lines[-1] if lines else ""
    finally:
        # also when cancelled (a reload or stop mid-check): a journalctl left running
        # would block on its full pipe until errord exits
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.shield(proc.wait())  # killed: reaped even if this wait is cancelled


def journalctl_found(binary: str = JOURNALCTL) -> str | None:
    """Where ``binary`` is on PATH (``check-config``), or None."""
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(folder or ".", binary)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None
