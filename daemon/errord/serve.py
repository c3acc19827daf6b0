"""The running daemon's process image: ``errord run`` validates, then ``exec``s this.

Why: validating the config takes pydantic-settings, which leaves ~12 MB resident in any
process that imported it (``VmHWM``, the peak, never drops). ``errord run`` loads and
validates ``Settings`` as every command does (a bad config exits 2 right there), writes
the resulting ``RunConfig.dump()`` as JSON to a memfd the new image inherits, and
``exec``s ``python -m errord.serve FD HELPER errord run ...`` (HELPER: the notify helper
``errord run`` started before it validated, ``PID:STDIN:STDOUT`` or ``-``, see
``sinks.early``; the tail only names the process for ``ps``). Same pid, so systemd's
``Type=notify`` and signals are unaffected; a fresh image, so its peak memory starts
from zero. Here the JSON becomes the same
``config.RunConfig`` (``RunConfig.from_dump``) and the daemon runs. A reload (SIGHUP)
validates in a short-lived child the same way (``reload.load_config``): the daemon
process never imports pydantic.

The memfd holds the notify URLs and the MongoDB URI (secrets): it is never named on a
command line, read once and closed; like the process's memory it is visible only to
its own user (and root) through ``/proc``.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from errord.errors import EXIT_FAIL, EXIT_OK, ErrordError, exit_status

if TYPE_CHECKING:
    import subprocess

    from errord.config import RunConfig
    from errord.sinks.early import HelperProcess

__all__ = ["exec_daemon", "load_for_run", "main", "start_run", "validate_and_exec"]

logger = logging.getLogger("errord")

MALLOC_MMAP_THRESHOLD = 4 << 20
MALLOC_TRIM_THRESHOLD = 64 << 20


def load_for_run(config: Path | None) -> RunConfig:
    """The validated config for ``run`` (in the child that validates: pydantic is imported
    here); a config with no source to read is refused, as ``run`` refuses it."""
    from errord.settings import Settings

    settings = Settings.load(config)
    settings.require_sources()
    return settings.to_run()


def start_run(config: Path | None) -> int:
    """``errord run``: start the notify helper (it imports Apprise meanwhile), then
    validate in a forked child while this process becomes the daemon image (``serve``)."""
    from errord.sinks.early import start_early, stop_early

    helper = start_early()  # imports Apprise while the config is validated; no config yet
    argv = ["run"] + (["-c", str(config)] if config is not None else [])
    try:
        # a bad config exits 2 (in the child that validates it), before anything starts
        return validate_and_exec(lambda: load_for_run(config), argv, helper=helper)
    except BaseException:
        stop_early(helper)
        raise


def validate_and_exec(
    load: Callable[[], RunConfig], argv: Sequence[str], *, helper: subprocess.Popen[bytes] | None = None
) -> int:
    """``errord run``: validate the config (``load``) in a forked child while this process
    becomes the daemon image at once, which imports the daemon meanwhile (on the other
    core) and then reads the config from the child through a pipe. The child is this
    process's copy (``errord.launch`` imported little: the child imports the config layer
    and pydantic, the daemon image what it runs, side by side): it validates and
    writes ``RunConfig.dump()`` as JSON, or prints why not (``errord: config: ...``) and
    exits 2; then the daemon image exits with its status, before anything has started
    (no lock, no state, no source). Without fork or exec: ``exec_daemon`` after ``load``
    in this process, as before."""
    try:
        r, w = os.pipe()
    except OSError:
        return exec_daemon(load(), argv, helper=helper)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return exec_daemon(load(), argv, helper=helper)
    if pid == 0:  # pragma: no cover - the child (coverage does not follow a fork)
        os.close(r)
        for pipe in (helper.stdin, helper.stdout) if helper is not None else ():
            if pipe is not None:
                pipe.close()  # this copy is not the helper's: its EOF is the daemon's business
        status = EXIT_FAIL
        try:
            import orjson

            _write_all(w, orjson.dumps(load().dump()))
            status = EXIT_OK
        except ErrordError as exc:
            status = exit_status(exc)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    os.close(w)
    try:
        from errord.sinks.early import handover

        spec = handover(helper) if helper is not None else "-"
        os.set_inheritable(r, True)
        os.execve(
            sys.executable,
            [sys.executable, "-m", "errord.serve", str(r), spec, str(pid), "errord", *argv],
            _daemon_environ(os.environ),
        )
    except OSError as exc:
        got = _receive(r, pid)
        if isinstance(got, int):
            from errord.sinks.early import stop_early

            stop_early(helper)
            return got
        _setup_logging(got.log_level)
        logger.warning("cannot exec the daemon image (%s); running in this process", exc)
        return _run(got, helper)
    raise AssertionError("unreachable")  # pragma: no cover - execv does not return


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.close(fd)


def _receive(fd: int, validator: int | None) -> RunConfig | int:
    """The config in ``fd`` (a memfd, or the pipe from the validating child ``validator``:
    its exit status instead when it refused the config; it said why on stderr)."""
    import orjson

    from errord.config import RunConfig

    with os.fdopen(fd, "rb") as f:
        data = f.read()
    if validator is not None:
        _, status = os.waitpid(validator, 0)
        code = os.waitstatus_to_exitcode(status)
        if code != EXIT_OK:
            if code < 0:
                print(f"errord: the config check was killed by signal {-code}", file=sys.stderr)
            return code if code > 0 else EXIT_FAIL
    return RunConfig.from_dump(orjson.loads(data))


def exec_daemon(config: RunConfig, argv: Sequence[str], *, helper: subprocess.Popen[bytes] | None = None) -> int:
    """Replace this process with the daemon image, handing it ``config`` (and ``helper``,
    a notify helper process started early: ``sinks.early``). Returns only if that cannot
    be done (no memfd or exec allowed, say by a seccomp filter): then the daemon runs in
    this process, with pydantic loaded, and its exit status is returned."""
    import orjson

    data = orjson.dumps(config.dump())
    fd = -1
    try:
        from errord.sinks.early import handover

        spec = handover(helper) if helper is not None else "-"
        fd = os.memfd_create("errord-config", 0)  # flags 0: no MFD_CLOEXEC, exec keeps it
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
        os.set_inheritable(fd, True)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(
            sys.executable,
            [sys.executable, "-m", "errord.serve", str(fd), spec, "-", "errord", *argv],
            _daemon_environ(os.environ),
        )
    except OSError as exc:
        if fd >= 0:
            os.close(fd)
        _setup_logging(config.log_level)
        logger.warning("cannot exec the daemon image (%s); running in this process", exc)
        return _run(config, helper)
    raise AssertionError("unreachable")  # pragma: no cover - execv does not return


def _daemon_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of the daemon image: ``environ`` plus glibc malloc settings (unless
    already set). The daemon reads 1 MiB at a time and frees it once parsed; by default
    glibc hands such freed memory back to the kernel, and the next read faults fresh
    zeroed pages in: measured, ~25% of ingest CPU. Blocks under 4 MiB come from the heap
    and at most 64 MiB of free heap is kept (``mallopt(3)``: M_MMAP_THRESHOLD,
    M_TRIM_THRESHOLD); peak memory is unchanged. Other C libraries ignore these."""
    env = dict(environ)
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(MALLOC_MMAP_THRESHOLD))
    env.setdefault("MALLOC_TRIM_THRESHOLD_", str(MALLOC_TRIM_THRESHOLD))
    return env


def main(argv: Sequence[str]) -> int:
    """``python -m errord.serve FD [HELPER [VALIDATOR [ignored...]]]``: run the daemon on
    the config in FD, with the notify helper HELPER describes (``sinks.early.handover``);
    VALIDATOR: the pid of the child validating the config, which writes it to FD (a pipe)."""
    try:
        fd = int(argv[0])
        validator = int(argv[2]) if len(argv) > 2 and argv[2] != "-" else None
    except (IndexError, ValueError):
        print("errord.serve: started by 'errord run', not by hand", file=sys.stderr)
        return EXIT_FAIL
    if validator is not None:
        import_daemon()  # while the child validates: why it is a child
    got = _receive(fd, validator)
    spec = argv[1] if len(argv) > 1 and argv[1] != "-" else None
    helper: HelperProcess | None = None
    error: Exception | None = None
    if spec is not None:
        from errord.sinks.early import adopt

        try:
            helper = adopt(spec)
        except (ValueError, OSError) as exc:  # then a helper is started the usual way
            error = exc
        if isinstance(got, int) and helper is not None:  # refused: nothing starts
            helper.kill()
            helper.wait()
    if isinstance(got, int):
        return got
    _setup_logging(got.log_level)
    if spec is not None and helper is None:
        logger.warning("cannot take over the notify helper started early (%s)", error)
    return _run(got, helper)


def import_daemon() -> None:
    """Import the daemon, with OpenSSL held back (``openssl_hold``: ~4.5 MB)."""
    if "errord.daemon" not in sys.modules:
        from errord import openssl_hold

        openssl_hold.hold()
        import errord.daemon  # noqa: F401


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _run(config: RunConfig, helper: HelperProcess | None = None) -> int:
    for warning in config.secret_warnings():
        logger.warning("%s", warning)
    if config.sources:
        from errord.sinks import prelaunch_notify_helper

        # it imports Apprise while this process imports the daemon (or did already, started
        # by `errord run` before it validated the config): here it gets its config
        prelaunch_notify_helper(config, helper)
    elif helper is not None:
        helper.kill()
        helper.wait()
    import_daemon()
    from errord import openssl_hold

    if openssl_hold.needs_openssl(config):
        openssl_hold.let_in()
    from errord.daemon import run_daemon

    try:
        run_daemon(config)
    except ErrordError as exc:
        return exit_status(exc)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
