"""Who owns a state_dir: the running daemon's lock file, and how the CLI reads it.

The daemon holds an exclusive ``flock`` on ``<state_dir>/errord.lock`` for its whole life
and writes a small JSON status into it (``pid``, ``ready``). The kernel drops the lock
when the process dies, even on ``kill -9``, so a stale file never claims a dead daemon.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from errord.errors import ErrordError

__all__ = ["RunLock", "read_run_state", "LOCK_NAME"]

LOCK_NAME = "errord.lock"


class RunLock:
    """The daemon's exclusive claim on a state_dir."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``ErrordError`` naming the process that holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        # A CLI `status` takes a shared lock for an instant: retry briefly before giving up.
        for attempt in range(20):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if attempt < 19:
                    time.sleep(0.05)
        else:
            other = _read(fd).get("pid", "?")
            os.close(fd)
            raise ErrordError(
                f"another errord (pid {other}) is running with state_dir {self.path.parent}"
            )
        self._fd = fd
        self.update(ready=False)

    def update(self, **fields: Any) -> None:
        """Rewrite the status JSON (pid is always included)."""
        if self._fd is None:
            return
        data = json.dumps({"pid": os.getpid(), **fields}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def read_run_state(state_dir: Path) -> dict[str, Any]:
    """``{"running": bool, "ready": bool, "pid": int | None}`` for the CLI.

    Running means some process holds the lock now; ready means it has opened its sources.
    """
    path = state_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return {"running": False, "ready": False, "pid": None}
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            info = _read(fd)
            return {"running": True, "ready": bool(info.get("ready")), "pid": info.get("pid")}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return {"running": False, "ready": False, "pid": None}
    finally:
        os.close(fd)


def _read(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 4096, 0)
        data = json.loads(raw) if raw else {}
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
