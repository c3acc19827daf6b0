"""The notify sink in a helper process, so Apprise never competes with the reader.

Why: an Apprise send is a few milliseconds of pure-Python work (requests, http.client,
the plugin). In the daemon's process those sends hold the GIL the reader needs, and
every ``pread`` or SQLite call the reader makes lets a send thread run for up to the
5 ms switch interval: measured on a 1M-line backlog with ~200 notices, ingest ran at
less than half its speed. In a helper process the sends run on the other core.

:class:`NotifyHelper` has the interface the daemon uses of ``NotifySink`` (``routes``,
``start``, ``wake``, ``stop``, ``on_result``); the helper runs an ordinary
:class:`~errord.sinks.notify.NotifySink` (threads per target, backoff, order, scrubbing:
all unchanged). It needs only ``state_dir`` and the targets: it reads the outbox from
the journal, as the sink always did.

The helper is ``python -m errord.sinks.helper``, started with three pipes:

* stdin, parent -> helper: first one JSON line (state_dir, targets with their URLs,
  timeouts; never on the command line, where ``ps`` would show the secrets), then
  command lines: ``start``, ``wake``, ``stop SECONDS`` (drain for at most that long,
  then exit). EOF means the daemon is gone: the helper exits at once, so a new daemon's
  helper never sends alongside a stale one.
* stdout, helper -> parent: ``ok`` or ``error MESSAGE`` once (the URLs are validated
  by the helper, so the daemon's process never imports Apprise), then ``r 1 NAME`` /
  ``r 0 NAME`` per send attempt, for ``on_result`` (metrics).
* stderr: inherited; the helper logs there in the daemon's format, and the ``stderr``
  pseudo-target writes its notices there.

The helper ignores SIGINT, SIGTERM and SIGHUP (a terminal or systemd signals the whole
group; the daemon decides when the helper stops) and, started from the main thread,
asks the kernel for SIGKILL when the daemon dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from ..errors import NotifyError

__all__ = ["NotifyHelper"]

logger = logging.getLogger(__name__)

START_TIMEOUT = 30.0  # seconds for the helper to import Apprise and check the URLs
_KILL_GRACE = 0.5  # seconds past the stop deadline before the helper is killed


class _TargetLike(Protocol):
    @property
    def url(self) -> str: ...
    @property
    def tags(self) -> list[str]: ...
    @property
    def key(self) -> str: ...
    @property
    def redacted(self) -> str: ...


class NotifyHelper:
    """Runs a ``NotifySink`` for ``targets`` in a helper process; see the module doc.

    The constructor starts the helper and waits until it has checked the URLs: an
    unusable one raises ``NotifyError`` with the sink's own message. ``start()`` starts
    its delivery threads.
    """

    def __init__(
        self,
        state_dir: Path,
        targets: Sequence[_TargetLike],
        *,
        timeout: float = 10.0,
        backoff: tuple[float, float] = (1.0, 300.0),
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.on_result: Callable[[str, bool], None] | None = None
        self._routes = [(t.key, tuple(t.tags)) for t in targets]
        self._config: dict[str, Any] = {
            "state_dir": str(self.state_dir),
            "targets": [{"url": t.url, "tags": list(t.tags), "key": t.key, "redacted": t.redacted}
                        for t in targets],
            "timeout": timeout,
            "backoff": list(backoff),
            "log_level": logging.getLevelName(logging.getLogger().getEffectiveLevel()),
        }
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._started = False
        self._stopped = False
        self._lock = threading.Lock()  # wake() may come from any thread
        self._spawn()

    # -- the interface the daemon uses -------------------------------------------------

    @property
    def routes(self) -> list[tuple[str, tuple[str, ...]]]:
        """The routing table for ``routing.Router.set_routes`` (as ``NotifySink.routes``)."""
        return list(self._routes)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start delivering."""
        if self._started:
            return
        self._started = True
        self._send(b"start\n")

    def wake(self) -> None:
        """New notices were committed. Cheap: one byte-sized write to a pipe; a helper
        that died is started again here."""
        proc = self._proc
        if proc is None or self._stopped:
            return
        if proc.poll() is not None:
            self._respawn(proc.returncode)
            return
        self._send(b"wake\n")

    def stop(self, deadline: float) -> None:
        """Let the helper deliver what is due until ``deadline`` (``time.monotonic()``),
        then make sure it is gone. Returns by the deadline plus a fraction of a second."""
        self._stopped = True
        proc = self._proc
        if proc is None:
            return
        left = max(0.0, deadline - time.monotonic())
        self._send(f"stop {left:.3f}\n".encode())
        try:
            proc.wait(left + _KILL_GRACE)
        except subprocess.TimeoutExpired:
            logger.warning("notify helper (pid %d) did not stop in time; killing it", proc.pid)
            proc.kill()
            proc.wait(5)
        self._close_pipes(proc)
        if self._reader is not None:
            self._reader.join(1.0)

    # -- process management ------------------------------------------------------------

    def _spawn(self) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "errord.sinks.helper"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, close_fds=True, bufsize=0,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        config = dict(self._config, die_with_parent=threading.current_thread() is threading.main_thread(),
                      parent=os.getpid())
        answer: list[str] = []
        ready = threading.Event()
        self._reader = threading.Thread(
            target=self._read_loop, args=(proc.stdout, answer, ready), name="errord-notify-helper", daemon=True
        )
        self._reader.start()
        try:
            proc.stdin.write(json.dumps(config).encode() + b"\n")
        except OSError:
            pass  # it died at once: reported below
        os.set_blocking(proc.stdin.fileno(), False)
        self._proc = proc
        if not ready.wait(self._start_timeout):
            self._kill(proc)
            raise NotifyError(f"the notify helper did not start within {self._start_timeout:g}s")
        line = answer[0] if answer else ""
        if line == "ok":
            logger.debug("notify helper started (pid %d)", proc.pid)
            return
        self._kill(proc)
        if line.startswith("error "):
            try:
                problems = json.loads(line[len("error "):])
            except ValueError:
                problems = line[len("error "):]
            raise NotifyError(problems)
        raise NotifyError(f"the notify helper exited at start (status {proc.returncode})")

    def _respawn(self, status: int | None) -> None:
        with self._lock:
            old = self._proc
            if old is None or old.poll() is None or self._stopped:
                return
            logger.error("notify helper exited unexpectedly (status %s); starting a new one", status)
            self._close_pipes(old)
            try:
                self._spawn()
            except (NotifyError, OSError) as exc:
                logger.error("cannot restart the notify helper: %s (retrying at the next notice)", exc)
                return
            if self._started:
                self._send(b"start\n")

    def _send(self, msg: bytes) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            return
        try:
            proc.stdin.write(msg)
        except BlockingIOError:
            pass  # the pipe is full of wakes the helper has not read yet: it will look anyway
        except (BrokenPipeError, ValueError, OSError):
            pass  # it is gone; wake() starts a new one

    def _read_loop(self, out: IO[bytes], answer: list[str], ready: threading.Event) -> None:
        fd = out.fileno()
        buf = b""
        try:
            while True:
                data = os.read(fd, 65536)
                if not data:
                    return
                buf += data
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    line = raw.decode(errors="replace")
                    if not ready.is_set():
                        answer.append(line)
                        ready.set()
                    elif line.startswith("r ") and len(line) > 4:
                        self._result(line[4:], line[2] == "1")
        except (OSError, ValueError):
            pass
        finally:
            ready.set()
            out.close()

    def _result(self, name: str, ok: bool) -> None:
        callback = self.on_result
        if callback is not None:
            try:
                callback(name, ok)
            except Exception:  # a metrics bug must not stop the drain
                logger.exception("notify result callback failed")

    @staticmethod
    def _close_pipes(proc: subprocess.Popen[bytes]) -> None:
        for pipe in (proc.stdin,):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        self._close_pipes(proc)
        if self._reader is not None:
            self._reader.join(1.0)


# -- the helper process ----------------------------------------------------------------


@dataclass
class _Target:
    url: str
    tags: list[str] = field(default_factory=list)
    key: str = ""
    redacted: str = ""


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when the thread that started it exits (Linux only)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(0)


def main() -> None:
    """Entry point of the helper process (``python -m errord.sinks.helper``)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    fd = sys.stdin.fileno()
    out = sys.stdout.buffer
    lines = _lines(fd)
    first = next(lines, None)
    if first is None:
        os._exit(0)
    config = json.loads(first)
    if config.get("die_with_parent"):
        _die_with_parent(int(config["parent"]))
    logging.basicConfig(
        level=config.get("log_level") or "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    out_lock = threading.Lock()

    def reply(text: str) -> None:
        with out_lock:
            try:
                out.write(text.encode() + b"\n")
                out.flush()
            except (OSError, ValueError):
                pass

    from ..sinks.notify import NotifySink  # Apprise is imported here, in the helper only
    from ..sinks.plugins import load_plugins_for

    targets = [_Target(**t) for t in config["targets"]]
    # Only here, where this process is all Apprise serves: the plugin manager is
    # process-wide, and a subset would surprise other Apprise users of a process.
    load_plugins_for(t.url for t in targets)
    try:
        sink = NotifySink(Path(config["state_dir"]), targets, timeout=float(config["timeout"]),
                          backoff=tuple(config["backoff"]))  # type: ignore[arg-type]
    except NotifyError as exc:
        reply("error " + json.dumps(exc.problems))  # one line of the pipe protocol
        os._exit(2)
    sink.on_result = lambda name, ok: reply(f"r {1 if ok else 0} {name}")
    reply("ok")
    for cmd in lines:
        if cmd == b"wake":
            sink.wake()
        elif cmd == b"start":
            sink.start()
        elif cmd.startswith(b"stop"):
            try:
                budget = float(cmd.split()[1])
            except (IndexError, ValueError):
                budget = 0.0
            sink.stop(time.monotonic() + budget)
            sys.stderr.flush()
            os._exit(0)  # a worker stuck in a hung send must not hold the exit
    os._exit(0)  # EOF: the daemon is gone; stop now, a new daemon's helper takes over


def _lines(fd: int) -> Iterator[bytes]:
    """The lines written to ``fd``, until EOF; a burst of wakes counts as one."""
    buf = b""
    while True:
        try:
            data = os.read(fd, 4096)
        except InterruptedError:
            continue
        if not data:
            return
        buf += data
        *lines, buf = buf.split(b"\n")
        last = None
        for ln in lines:
            if ln == b"wake" and last == b"wake":
                continue
            last = ln
            yield ln


if __name__ == "__main__":
    main()
