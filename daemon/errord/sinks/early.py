"""The notify helper started before the config is validated, and handed across the exec.

Why: the helper's start (a Python, then Apprise: ~0.2 s of CPU) was the longest part of
``errord run`` → ``READY=1``, and it could only begin once ``errord run`` had imported
pydantic (~0.2 s), validated the config and ``exec``'d the daemon image. So ``errord
run`` starts the helper process first (:func:`start_early`): it imports Apprise while
this process imports pydantic, on the other core. It is handed nothing yet: the config
line (with the URLs) is written by the daemon image, as for any helper, once the config
is valid. ``exec_daemon`` passes the helper's pid and pipe descriptors to the image
(:func:`handover`, on its command line: numbers, no secrets), where :func:`adopt` makes
the process ``NotifyHelper`` uses of them (:class:`Adopted`: the child survived the exec,
so it is still this process's child to wait for).

A config that is not valid exits 2 as before: :func:`stop_early` kills the helper first
(it never saw a config, the state_dir or a URL); and it was started with ``--parent``,
so it is killed with its parent too, whatever way that ends.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from typing import IO, Protocol

__all__ = ["Adopted", "HelperProcess", "adopt", "handover", "helper_command", "start_early", "stop_early"]


class HelperProcess(Protocol):
    """What ``NotifyHelper`` uses of its child: ``subprocess.Popen`` or :class:`Adopted`."""

    @property
    def pid(self) -> int: ...
    @property
    def stdin(self) -> IO[bytes] | None: ...
    @property
    def stdout(self) -> IO[bytes] | None: ...
    @property
    def returncode(self) -> int | None: ...
    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def kill(self) -> None: ...


def helper_command(*, parent: int | None = None) -> list[str]:
    """The helper's command line; ``parent``: it dies with that process from its start."""
    cmd = [sys.executable, "-m", "errord.sinks.helperproc"]
    return [*cmd, "--parent", str(parent)] if parent is not None else cmd


def start_early() -> subprocess.Popen[bytes] | None:
    """A helper process for the config about to be validated (None if none can start now:
    the daemon image starts one later, and says why if it cannot either)."""
    try:
        return subprocess.Popen(
            helper_command(parent=os.getpid()),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            close_fds=True,
            bufsize=0,
        )
    except OSError:
        return None


def stop_early(proc: subprocess.Popen[bytes] | None) -> None:
    """Kill a helper that will not be used (the config was refused) and reap it."""
    if proc is None:
        return
    proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


def handover(proc: subprocess.Popen[bytes]) -> str:
    """``PID:STDIN:STDOUT`` of ``proc``, its pipes made inheritable for the exec."""
    assert proc.stdin is not None and proc.stdout is not None
    fds = (proc.stdin.fileno(), proc.stdout.fileno())
    for fd in fds:
        os.set_inheritable(fd, True)
    return f"{proc.pid}:{fds[0]}:{fds[1]}"


def adopt(spec: str) -> Adopted:
    """The helper :func:`handover` described, in the exec'd image (``ValueError`` if
    ``spec`` is not one, ``OSError`` if its descriptors are not open)."""
    pid, stdin, stdout = (int(x) for x in spec.split(":"))
    for fd in (stdin, stdout):
        os.set_inheritable(fd, False)
    return Adopted(pid, os.fdopen(stdin, "wb", buffering=0), os.fdopen(stdout, "rb", buffering=0))


class Adopted:
    """A child this process did not start through ``subprocess`` (it started it before
    an exec): the part of ``Popen``'s interface ``NotifyHelper`` uses."""

    def __init__(self, pid: int, stdin: IO[bytes], stdout: IO[bytes]) -> None:
        self.pid = pid
        self.stdin: IO[bytes] | None = stdin
        self.stdout: IO[bytes] | None = stdout
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: it is gone, how is unknown
                self.returncode = 255
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        try:
            pidfd = os.pidfd_open(self.pid)
        except OSError:
            pidfd = -1
        try:
            while (code := self.poll()) is None:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(["errord.sinks.helperproc"], timeout or 0.0)
                if pidfd >= 0:
                    select.select([pidfd], [], [], left)
                else:
                    time.sleep(0.01 if left is None else min(0.01, left))
            return code
        finally:
            if pidfd >= 0:
                os.close(pidfd)

    def kill(self) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
