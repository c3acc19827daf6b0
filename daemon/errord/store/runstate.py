"""Who owns a state_dir, and whether it can be used: the running daemon's lock file, how
the CLI reads it, and the check that a state_dir which held state still holds it.

The daemon holds an exclusive ``flock`` on ``<state_dir>/errord.lock`` for its whole life
and writes a small JSON status into it (``pid``, ``ready``). The kernel drops the lock
when the process dies, even on ``kill -9``, so a stale file never claims a dead daemon.

``errord.state`` is written once the store has its schema and never removed by errord.
While it (or a non-empty ``-wal``) is there, an empty or missing database is a loss (a
full disk zeroed it, a cleanup deleted it), not a first start: ``check_state_dir`` refuses
it, so positions and open incidents are never forgotten silently (issue 11.4). The lock
file does not count: it is created before the store, so it may exist without one. A
database that is not empty but zero-filled or no SQLite file at all is refused the same
way, marker or not.

That check reads the database file's header through a descriptor of its own, which must
never happen in a process that already has SQLite connections to the file: POSIX advisory
locks belong to the process and the file, and closing ANY descriptor of it drops every lock
the process holds on it, SQLite's included (sqlite.org/howtocorrupt.html, 2.2). A daemon
whose locks were dropped so looks gone to the next process that closes its last connection
(a CLI command, the notify helper reconnecting), which then checkpoints and deletes the
``-wal`` under it: the daemon's later commits go to a deleted file and readers find the
database malformed. ``schema.connect`` tells ``connecting`` before every open; the header
is read raw only until then (afterwards SQLite's own open refuses a file that is no
database, and ``schema.connect`` words that the same way).
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

from errord.errors import ErrordError, StateError

__all__ = ["LOCK_NAME", "STATE_MARKER", "RunLock", "check_state_dir", "connecting", "mark_state", "read_run_state"]

_SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite 3 database
LOCK_NAME = "errord.lock"
STATE_MARKER = "errord.state"
_MARKER_TEXT = (
    b"errord keeps its state in this folder. This file says the store was created here:\n"
    b"while it exists, an empty or missing errord.db is refused at start, not taken for a\n"
    b"first start (see README, Troubleshooting). To start fresh on purpose, move the\n"
    b"errord.* files away.\n"
)


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
            raise ErrordError(f"another errord (pid {other}) is running with state_dir {self.path.parent}")
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


def check_state_dir(state_dir: Path, db_name: str) -> list[str]:
    """Raise ``StateError`` when ``state_dir`` cannot be used as it is: it is not a folder,
    or it shows it held state (``errord.state``, a non-empty ``-wal``) but ``db_name`` in
    it is empty or missing. Returns what shows it held state (empty: a first start)."""
    try:
        st = os.stat(state_dir)
    except FileNotFoundError:
        return []  # a first start: created later
    except NotADirectoryError:
        raise StateError(
            f"state_dir {state_dir}: a part of that path is a file, not a folder; "
            "set state_dir to a folder errord may create"
        ) from None
    except OSError:
        return []  # e.g. no permission: opening the store says so
    if not stat.S_ISDIR(st.st_mode):
        raise StateError(
            f"state_dir {state_dir} is not a folder; set state_dir to a folder errord may "
            f"create, or move {state_dir} away"
        )
    _check_header(state_dir, db_name)
    held = [
        name
        for name, size in (
            (STATE_MARKER, _size(state_dir / STATE_MARKER)),
            (f"{db_name}-wal", _size(state_dir / f"{db_name}-wal")),
        )
        if size is not None and (size > 0 or name == STATE_MARKER)
    ]
    if not held:
        return held
    size = _size(state_dir / db_name)
    if size is None or size == 0:
        raise StateError(lost_state(state_dir, db_name, "missing" if size is None else "empty (0 bytes)", held))
    return held


# The database files this process has opened (or is opening) SQLite connections to, by
# real path: their headers are never read raw again (see the module doc). Process-wide on
# purpose: the locks it protects are the process's.
_connected: set[str] = set()
_connected_lock = threading.Lock()


def connecting(db_path: Path) -> None:
    """``db_path`` is about to get an SQLite connection in this process: from now on its
    header is not read through a descriptor of errord's own (closing one would drop the
    connection's locks). Waits for a header read in progress on another thread."""
    key = os.path.realpath(db_path)
    with _connected_lock:
        _connected.add(key)


def _check_header(state_dir: Path, db_name: str) -> None:
    """Refuse a database file that is not empty but is no SQLite database: zero-filled (a
    full disk or a crash can leave its pages allocated and never written) or overwritten.
    Whatever the marker says: errord can neither read it nor should it replace it. Only
    before this process connects to it (``connecting``)."""
    path = state_dir / db_name
    key = os.path.realpath(path)
    with _connected_lock:  # a connection opened on another thread meanwhile waits for the close
        if key in _connected:
            return
        try:
            with open(path, "rb") as f:
                head = f.read(4096)
        except OSError:
            return  # missing, or unreadable: the size check and opening the store say so
    if not head or head.startswith(_SQLITE_HEADER):
        return
    what = "zero-filled" if not head.strip(b"\0") else "not an SQLite database"
    held = [STATE_MARKER] if os.path.exists(state_dir / STATE_MARKER) else []
    raise StateError(lost_state(state_dir, db_name, f"{what} ({_size(state_dir / db_name)} bytes)", held))


def lost_state(state_dir: Path, db_name: str, what: str, held: list[str]) -> str:
    """The one line that refuses a state_dir whose store is gone (also used by the
    journal for a database that lost its schema)."""
    where = f"state_dir {state_dir} held errord's state ({', '.join(held)}) but" if held else f"state_dir {state_dir}:"
    return (
        f"{where} {db_name} is {what}: its "
        f"file positions and open incidents are lost, and errord does not start over silently. Restore "
        f"{db_name} from a backup, or start fresh on purpose: stop errord and move the errord.* files "
        f"away (mv {state_dir}/errord.* SOMEWHERE/)"
    )


def mark_state(state_dir: Path) -> None:
    """Write ``errord.state`` (0600) unless it exists: the store there now has its schema."""
    path = state_dir / STATE_MARKER
    if path.exists():
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another connection wrote it meanwhile
    try:
        os.write(fd, _MARKER_TEXT)
        os.fsync(fd)
    finally:
        os.close(fd)


def _size(path: Path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None
