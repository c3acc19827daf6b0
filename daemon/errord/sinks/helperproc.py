"""The notify helper process itself: ``python -m errord.sinks.helperproc``.

The daemon's side (starting, supervising, the pipe protocol) is ``sinks.helper``; this is
the other end: it reads its config line and commands from stdin, runs an ordinary
:class:`~errord.sinks.notify.NotifySink`, answers on stdout and logs to stderr. Only
this process imports Apprise.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from errord.errors import NotifyError
from errord.policy.limit import LimitRule

__all__ = ["main"]


@dataclass
class _Target:
    url: str
    tags: list[str] = field(default_factory=list)
    key: str = ""
    redacted: str = ""
    template: str | None = None  # CONTRACT §11
    format: str = "text"
    kind: str = "notify"  # "webhook": POSTed JSON, with headers
    headers: dict[str, str] | None = None


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


IMPORT_NICE = 10  # the nice value (at least) of the thread that imports Apprise at start


def _import_politely() -> None:
    """Import Apprise (and the sink) in a thread of nice ``IMPORT_NICE`` (the process's,
    if that is higher: never a higher priority) that ends with the import. At ``errord
    run`` this helper starts beside the child validating the config and the daemon image
    importing itself, three processes on what may be two cores, and theirs is the path
    to ``READY=1`` (issue 13: ~20 ms of the median start); the helper is needed only
    after both. Linux gives each thread its own nice value, so the process goes on at the
    nice it was started with once the thread is done; elsewhere (or refused) the import
    runs at that."""

    def run() -> None:
        try:
            me = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, me, max(IMPORT_NICE, os.getpriority(os.PRIO_PROCESS, me)))
        except (OSError, AttributeError):
            pass
        with contextlib.suppress(Exception):  # imported again below, where it raises as usual
            import errord.sinks.notify  # noqa: F401  (Apprise)

    worker = threading.Thread(target=run, name="errord-import")
    worker.start()
    worker.join()


def main(argv: list[str]) -> None:
    """Entry point of the helper process (``python -m errord.sinks.helperproc [--parent
    PID]``; ``--parent``: started by ``errord run`` before its config was validated, see
    ``sinks.early``; it dies with that process from the start)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    if argv[:1] == ["--parent"] and len(argv) > 1 and argv[1].isdigit():
        _die_with_parent(int(argv[1]))
    # Apprise is imported here, in the helper only; before the config line is read, so
    # one started early imports it while the daemon validates the config (and yields the
    # cores to that: _import_politely)
    if argv[:1] == ["--parent"]:
        _import_politely()
    from errord.sinks.notify import NotifySink
    from errord.sinks.plugins import load_plugins_for
    from errord.sinks.sessions import reuse_connections

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

    reuse_connections()  # a kept-alive connection per target (process-wide: this process only)

    targets = [_Target(**t) for t in config["targets"]]
    # Only here, where this process is all Apprise serves: the plugin manager is
    # process-wide, and a subset would surprise other Apprise users of a process.
    load_plugins_for(t.url for t in targets)
    try:
        sink = NotifySink(
            Path(config["state_dir"]),
            targets,
            timeout=float(config["timeout"]),
            backoff=(float(config["backoff"][0]), float(config["backoff"][1])),
            limits=LimitRule(**config.get("limits", {})),
            host=str(config.get("host", "")),
            templates=config.get("templates") or {},
        )
    except NotifyError as exc:
        reply("error " + json.dumps(exc.problems))  # one line of the pipe protocol
        os._exit(2)
    sink.on_result = lambda name, ok: reply(f"r {1 if ok else 0} {name}")
    sink.on_template_failure = lambda name: reply(f"t {name}")
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
    main(sys.argv[1:])
