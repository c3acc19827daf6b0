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

The helper is ``python -m errord.sinks.helperproc`` (its side of the pipes lives there),
started with three pipes:

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

A helper can still die (``kill -9``, the OOM killer): a supervisor thread notices within a
second, whether or not notices are being committed, logs how it ended and starts another.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from errord.backoff import backoff
from errord.errors import NotifyError
from errord.policy.limit import NO_LIMITS, LimitRule
from errord.ratelimit import RateLimit
from errord.sinks.base import NoticeSink, TargetLike
from errord.sinks.early import HelperProcess, helper_command

__all__ = ["NotifyHelper"]

logger = logging.getLogger(__name__)

START_TIMEOUT = 30.0  # seconds for the helper to import Apprise and check the URLs
_KILL_GRACE = 0.5  # seconds past the stop deadline before the helper is killed
# seconds between looks at the helper: its stdout closing (it died) wakes the supervisor at
# once; this is only the net under that, and an idle daemon should not wake for it often
# (it was 0.5 s); RESTART_BACKOFF's cap plus this stays under CONTRACT §7's 5 s
SUPERVISE_EVERY = 1.5
STABLE_AFTER = 60.0  # a helper that lived this long and died is restarted at once again
# Seconds before restarting one that keeps dying: first, cap. CONTRACT §7: restarted
# within 5 s of dying, so the cap plus noticing the death (SUPERVISE_EVERY) stays under 5 s.
RESTART_BACKOFF = (1.0, 3.0)
DEATHS_TOLD = 3  # deaths in a row each logged; past them, one line per DEATH_LOG_EVERY
DEATH_LOG_EVERY = 60.0


class NotifyHelper(NoticeSink):
    """Runs a ``NotifySink`` for ``targets`` in a helper process; see the module doc.

    The constructor starts the helper and waits until it has checked the URLs: an
    unusable one raises ``NotifyError`` with the sink's own message. ``start()`` starts
    its delivery threads and the supervisor: a helper that dies (``kill -9``, the OOM
    killer) is logged with how it ended and started again within a second, or after a
    pause of at most 3 s if it keeps dying (``RESTART_BACKOFF``; its deaths are then
    logged once a minute); the new one delivers what is pending in the outbox. No new
    notice is needed for that (issue 11.3).
    """

    def __init__(
        self,
        state_dir: Path,
        targets: Sequence[TargetLike],
        *,
        timeout: float = 10.0,
        backoff: tuple[float, float] = (1.0, 300.0),
        start_timeout: float = START_TIMEOUT,
        wait: bool = True,
        process: HelperProcess | None = None,
        limits: LimitRule = NO_LIMITS,
        host: str = "",
        templates: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.on_result: Callable[[str, bool], None] | None = None
        self.on_template_failure: Callable[[str], None] | None = None  # CONTRACT §11: metric
        self._routes = [(t.key, tuple(t.tags)) for t in targets]
        self._config: dict[str, Any] = {
            "state_dir": str(self.state_dir),
            "targets": [
                {
                    "url": t.url,
                    "tags": list(t.tags),
                    "key": t.key,
                    "redacted": t.redacted,
                    "template": getattr(t, "template", None),
                    "format": getattr(t, "format", "text"),
                    "kind": getattr(t, "kind", "notify"),
                    "headers": dict(getattr(t, "headers", None) or {}),
                }
                for t in targets
            ],
            "templates": {k: dict(v) for k, v in (templates or {}).items()},
            "timeout": timeout,
            "backoff": list(backoff),
            "limits": {"budget": limits.budget, "window": limits.window, "group_wait": limits.group_wait},
            "host": host,
            "log_level": logging.getLevelName(logging.getLogger().getEffectiveLevel()),
        }
        self._start_timeout = start_timeout
        self._started = False
        self._stopped = False
        self._stopping = threading.Event()  # wakes the supervisor at stop()
        self._lock = threading.Lock()  # the current child: swapped by the supervisor
        self._supervisor: threading.Thread | None = None
        self._starting: tuple[_Child, list[str], threading.Event] | None = self._spawn(process)
        self._child: _Child | None = self._starting[0]
        if wait:
            self.ready()

    def ready(self) -> None:
        """Wait until the helper has checked the URLs (the constructor does, unless
        ``wait=False``: the daemon starts it first, so it imports Apprise while the
        daemon imports the rest); an unusable URL raises ``NotifyError``."""
        if self._starting is not None:
            starting, self._starting = self._starting, None
            self._answer(*starting)

    # -- the interface the daemon uses -------------------------------------------------

    @property
    def routes(self) -> list[tuple[str, tuple[str, ...]]]:
        """The routing table for ``policy.route.Router.set_routes`` (as ``NotifySink.routes``)."""
        return list(self._routes)

    @property
    def pid(self) -> int | None:
        """The current helper's pid (a restarted helper has a new one)."""
        child = self._child
        return child.proc.pid if child is not None else None

    def start(self) -> None:
        """Start delivering, and supervising the helper."""
        if self._started:
            return
        self._started = True
        self._send(b"start\n")
        self._supervisor = threading.Thread(target=self._supervise, name="errord-notify-supervisor", daemon=True)
        self._supervisor.start()

    def wake(self) -> None:
        """New notices were committed. Cheap: one byte-sized write to a pipe. A dead
        helper is the supervisor's business; its successor reads the outbox anyway."""
        if not self._stopped:
            self._send(b"wake\n")

    def stop(self, deadline: float) -> None:
        """Let the helper deliver what is due until ``deadline`` (``time.monotonic()``),
        then make sure it is gone. Returns by the deadline plus a fraction of a second."""
        with self._lock:
            self._stopped = True  # from here on the supervisor starts no helper
            child = self._child
        self._stopping.set()
        if child is None:
            return
        proc = child.proc
        left = max(0.0, deadline - time.monotonic())
        self._send(f"stop {left:.3f}\n".encode())
        try:
            proc.wait(left + _KILL_GRACE)
        except subprocess.TimeoutExpired:
            logger.warning("notify helper (pid %d) did not stop in time; killing it", proc.pid)
            proc.kill()
            proc.wait(5)
        self._close_pipes(proc)
        child.reader.join(1.0)
        if self._supervisor is not None:
            self._supervisor.join(1.0)

    # -- supervision -------------------------------------------------------------------

    def _supervise(self) -> None:
        """Restart the helper whenever it dies, until ``stop()``; see the class doc."""
        deaths = 0  # in a row, each helper dying within STABLE_AFTER of its start
        muted = 0  # deaths not logged since the last line that was
        told = RateLimit(DEATH_LOG_EVERY)
        while True:
            child = self._child
            if child is None or not self._wait_for_death(child):
                return
            deaths = deaths + 1 if time.monotonic() - child.started < STABLE_AFTER else 1
            if deaths == 1:
                told.forget("died")
            delay = _restart_delay(deaths)
            allowed = told.allow("died")
            tell = deaths <= DEATHS_TOLD or allowed
            if tell:
                logger.error(
                    "notify helper (pid %d) died: %s; %s%s",
                    child.proc.pid,
                    _how_it_ended(child.proc.returncode),
                    "restarting it now"
                    if not delay
                    else (
                        f"it died {deaths} times in a row within {STABLE_AFTER:g}s of its start; "
                        f"restarting it in {delay:g}s"
                    ),
                    f" ({muted} more deaths not logged)" if muted else _muting_note(deaths),
                )
                muted = 0
            else:
                muted += 1
            self._close_pipes(child.proc)
            child.reader.join(1.0)
            while True:
                if self._stopping.wait(delay):
                    return
                try:
                    new = self._launch()
                    break
                except (NotifyError, OSError) as exc:
                    deaths += 1
                    delay = _restart_delay(deaths)
                    if told.allow("launch"):
                        logger.error(
                            "cannot restart the notify helper: %s; retrying every %gs (logged once a minute)",
                            exc,
                            delay,
                        )
            with self._lock:
                if self._stopped:  # stop() came meanwhile: this one never delivers
                    self._kill(new)
                    return
                self._child = new
            if self._started:
                self._send(b"start\n")
            if tell:
                logger.warning("notify helper restarted (pid %d); it delivers what is pending", new.proc.pid)

    def _wait_for_death(self, child: _Child) -> bool:
        """Until ``child`` has exited (True) or ``stop()`` (False). Its stdout closing
        wakes this at once; the poll every SUPERVISE_EVERY is the net under that."""
        while not self._stopping.is_set():
            if child.proc.poll() is not None:
                return True
            if child.eof.is_set():  # gone from the pipe; about to be reaped
                self._stopping.wait(0.02)
            else:
                child.eof.wait(SUPERVISE_EVERY)
        return False

    # -- process management ------------------------------------------------------------

    def _launch(self) -> _Child:
        """Start a helper and wait for its answer; raises ``NotifyError`` if it refuses."""
        child, answer, ready = self._spawn()
        self._answer(child, answer, ready)
        return child

    def _spawn(self, process: HelperProcess | None = None) -> tuple[_Child, list[str], threading.Event]:
        """Start a helper (or take ``process``, one started already: ``sinks.early``) and
        hand it its config; its answer comes later (``_answer``)."""
        proc: HelperProcess = process or subprocess.Popen(
            helper_command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            close_fds=True,
            bufsize=0,
        )
        assert proc.stdin is not None and proc.stdout is not None
        # PR_SET_PDEATHSIG fires when the starting *thread* ends: only for the main thread's
        # helpers. One the supervisor restarted ends on EOF, when the daemon's pipes close.
        config = dict(
            self._config, die_with_parent=threading.current_thread() is threading.main_thread(), parent=os.getpid()
        )
        answer: list[str] = []
        ready = threading.Event()
        eof = threading.Event()
        reader = threading.Thread(
            target=self._read_loop,
            args=(proc.stdout, answer, ready, eof),
            name="errord-notify-helper",
            daemon=True,
        )
        reader.start()
        child = _Child(proc, reader, eof, time.monotonic())
        with contextlib.suppress(OSError):  # it died at once: reported below
            proc.stdin.write(json.dumps(config).encode() + b"\n")
        os.set_blocking(proc.stdin.fileno(), False)
        return child, answer, ready

    def _answer(self, child: _Child, answer: list[str], ready: threading.Event) -> None:
        """Wait for the helper's first line: ``ok``, or why it refuses (``NotifyError``)."""
        proc = child.proc
        if not ready.wait(self._start_timeout):
            self._kill(child)
            raise NotifyError(f"the notify helper did not start within {self._start_timeout:g}s")
        line = answer[0] if answer else ""
        if line == "ok":
            logger.debug("notify helper started (pid %d)", proc.pid)
            return
        self._kill(child)
        if line.startswith("error "):
            try:
                problems = json.loads(line[len("error ") :])
            except ValueError:
                problems = line[len("error ") :]
            raise NotifyError(problems)
        raise NotifyError(f"the notify helper exited at start ({_how_it_ended(proc.returncode)})")

    def _send(self, msg: bytes) -> None:
        child = self._child
        if child is None or child.proc.stdin is None:
            return
        try:
            child.proc.stdin.write(msg)
        except BlockingIOError:
            pass  # the pipe is full of wakes the helper has not read yet: it will look anyway
        except (BrokenPipeError, ValueError, OSError):
            pass  # it is gone; the supervisor starts a new one

    def _read_loop(self, out: IO[bytes], answer: list[str], ready: threading.Event, eof: threading.Event) -> None:
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
                    elif line.startswith("t ") and self.on_template_failure is not None:
                        with contextlib.suppress(Exception):  # a metrics bug must not stop the drain
                            self.on_template_failure(line[2:])
        except (OSError, ValueError):
            pass
        finally:
            ready.set()
            eof.set()
            out.close()

    def _result(self, name: str, ok: bool) -> None:
        callback = self.on_result
        if callback is not None:
            try:
                callback(name, ok)
            except Exception:  # a metrics bug must not stop the drain
                logger.exception("notify result callback failed")

    @staticmethod
    def _close_pipes(proc: HelperProcess) -> None:
        for pipe in (proc.stdin,):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def _kill(self, child: _Child) -> None:
        if child.proc.poll() is None:
            child.proc.kill()
        child.proc.wait(5)
        self._close_pipes(child.proc)
        child.reader.join(1.0)


@dataclass
class _Child:
    """One helper process and the thread reading its answers."""

    proc: HelperProcess
    reader: threading.Thread
    eof: threading.Event  # its stdout closed: it died (or is stopping)
    started: float  # time.monotonic() when it was started


def _restart_delay(deaths: int) -> float:
    """Seconds before restarting a helper that died ``deaths`` times in a row: at once the
    first time, then RESTART_BACKOFF doubling up to its cap."""
    return 0.0 if deaths <= 1 else backoff(deaths - 2, *RESTART_BACKOFF)


def _muting_note(deaths: int) -> str:
    return f"; further deaths in a row are logged once every {DEATH_LOG_EVERY:g}s" if deaths == DEATHS_TOLD else ""


def _how_it_ended(status: int | None) -> str:
    if status is None:
        return "still running"
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = "unknown"
        return f"killed by signal {-status} ({name})"
    return f"exited with status {status}"
