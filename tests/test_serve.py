"""``errord run`` validates with pydantic, then execs the daemon image (``errord.serve``)
that holds the config as plain ``config.RunConfig`` objects; reloads validate in a child."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from conftest import Errord, append, line, write_config
from errord.config import RunConfig
from errord.settings import Settings
from errord.sinks.early import Adopted
from receiver import Receiver

FULL = dict(
    server_id="h1",
    node_name="n1",
    scope="app",
    log_level="debug",
    sources=[{"path": "logs/*.jsonl", "app": "api", "timezone": "Europe/Berlin", "rotate_wait": "2m"}],
    defaults={"re_alert_time": "30m", "notify": False},
    codes={"db_down": {"re_alert_time": "5m", "notify": True, "tags": ["ops"]}, "quiet": {"notify": False}},
    mongodb={"uri": "mongodb://user:s3cret@db:27017/?authSource=admin", "timeout": "2s", "write_concern": "majority"},
    notify=[{"url": "json://127.0.0.1:9/hook?token=abc", "tags": ["ops"]}, {"url": "tgram://bottoken/42"}],
    metrics={"listen": "[::1]:9464"},
)


def _both(tmp_path: Path, **cfg: object) -> tuple[Settings, RunConfig]:
    path = write_config(tmp_path / "errord.toml", state_dir=str(tmp_path / "state"), **cfg)
    settings = Settings.load(path, environ={})
    return settings, RunConfig.from_dump(orjson.loads(orjson.dumps(settings.to_run().dump())))


def test_runconfig_answers_like_settings(tmp_path: Path) -> None:
    settings, r = _both(tmp_path, **FULL)
    s = settings.to_run()  # in this process; r went through the JSON the daemon image reads
    assert r == s
    for attr in ("server_id", "node_name", "state_dir", "scope", "log_level", "config_path"):
        assert getattr(r, attr) == getattr(s, attr), attr
    for code in ("db_down", "quiet", "other"):
        assert (r.re_alert_for(code), r.notify_for(code), r.tags_for(code)) == (
            s.re_alert_for(code),
            s.notify_for(code),
            s.tags_for(code),
        ), code
    (rs,), (ss,) = r.sources, s.sources
    for attr in ("path", "app", "start_at", "rotate_wait", "timezone", "max_line_bytes", "tzinfo"):
        assert getattr(rs, attr) == getattr(ss, attr), attr
    assert [(t.url, t.tags, t.key, t.redacted) for t in r.notify] == [
        (t.url, t.tags, t.key, t.redacted) for t in s.notify
    ]
    assert r.mongodb is not None and s.mongodb is not None
    for attr in ("uri", "database", "collection", "timeout", "write_concern", "w"):
        assert getattr(r.mongodb, attr) == getattr(s.mongodb, attr), attr
    assert r.metrics is not None and s.metrics is not None
    assert (r.metrics.host, r.metrics.port) == (s.metrics.host, s.metrics.port) == ("::1", 9464)
    assert r.secret_warnings() == s.secret_warnings() != []  # written 0644 with secrets


def test_runconfig_repr_hides_secrets_and_replace_copies(tmp_path: Path) -> None:
    _, r = _both(tmp_path, **FULL)
    text = repr(r)
    assert "s3cret" not in text and "token=abc" not in text and "bottoken" not in text
    moved = dataclasses.replace(r, state_dir=Path("/elsewhere"))
    assert moved.state_dir == Path("/elsewhere") and r.state_dir == tmp_path / "state"
    assert (
        moved.notify is r.notify
        and moved != r
        and r == RunConfig.from_dump(Settings.load(r.config_path, environ={}).to_run().dump())
    )


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_the_daemon_image_has_no_pydantic(
    make_errord: Callable[..., Errord], receiver: Receiver, tmp_path: Path
) -> None:
    e = make_errord(notify=[{"url": receiver.url("/")}])
    e.start()
    assert e.proc is not None
    pid = e.proc.pid  # exec kept the pid: systemd's MainPID and signals still reach it
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"errord.serve" in cmdline and b"run" in cmdline, cmdline
    assert "pydantic" not in _maps(pid)
    fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    assert not [fd for fd in fds if "errord-config" in fd], fds  # the handed-over config is closed
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"MALLOC_TRIM_THRESHOLD_=67108864" in environ  # freed read buffers stay mapped

    # a reload validates in a child; the daemon image still never loads pydantic
    append(tmp_path / "logs" / "app.jsonl", line("first"))
    receiver.wait_for(1)
    e.proc.send_signal(signal.SIGHUP)
    end = time.monotonic() + 20
    while "config reloaded" not in e.output() and time.monotonic() < end:
        time.sleep(0.05)
    assert "config reloaded" in e.output()
    assert "pydantic" not in _maps(pid)
    assert e.stop() == 0


def test_the_daemon_image_maps_no_openssl(
    make_errord: Callable[..., Errord], receiver: Receiver, tmp_path: Path
) -> None:
    """``openssl_hold``: ~4.5 MB less resident, through what a running daemon does after
    its start too (an alert, a silence, a reload, a resolve, a re-alert)."""
    receiver.start()
    log = tmp_path / "logs" / "app.jsonl"
    e = make_errord(notify=[{"url": receiver.url("/")}], defaults={"re_alert_time": "1s"})
    e.start()
    assert e.proc is not None
    pid = e.proc.pid
    append(log, line("db_down"))
    receiver.wait_for(1)
    e.cli("silence", "x*", "--for", "1h")
    e.proc.send_signal(signal.SIGHUP)
    e.wait_log("config reloaded")
    time.sleep(1.2)
    append(log, line("db_down"), line(clear="db_down"))
    receiver.wait_for(3)
    maps = _maps(pid)
    assert "libcrypto" not in maps and "libssl" not in maps and "_ssl." not in maps
    (helper,) = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert "libcrypto" in _maps(int(helper))  # Apprise's requests: TLS is there
    # a reload that adds an https:// Alertmanager lets OpenSSL in before its pusher starts
    with e.config.open("a") as f:
        f.write('\n[[alertmanager]]\nurl = "https://127.0.0.1:1"\n')
    append(log, line("disk_full"))
    receiver.wait_for(4)
    e.proc.send_signal(signal.SIGHUP)
    e.wait_log("push of 1 alert(s) failed")
    assert "unknown url type" not in e.output() and "Connection refused" in e.output()
    assert "libcrypto" in _maps(pid)
    assert e.stop() == 0


LEAN_PROBE = """
import importlib, pkgutil, sys
mode, *missing = sys.argv[1:]
for name in missing:
    sys.modules[name] = None  # a Python built without these
import errord
from errord.openssl_hold import let_in
from errord.serve import import_daemon
import_daemon()
import asyncio.base_events, errord.config
assert errord.config.hashlib.sha256(b"x").hexdigest().startswith("2d711642b726")
print(sorted(n for n, m in sys.modules.items() if getattr(m, "ssl", 0) is None))
if mode == "walk":  # every module, OpenSSL held back
    refused = []
    for m in pkgutil.walk_packages(errord.__path__, "errord."):
        if m.name == "errord.__main__":  # `python -m errord`: it runs the CLI
            continue
        try:
            importlib.import_module(m.name)
        except ImportError as exc:
            refused.append(m.name)
            assert "runs without OpenSSL" in str(exc), exc
    print(" ".join(refused), "ssl" in sys.modules, "_hashlib" in sys.modules)
else:  # a config that needs_openssl: as serve._run does
    import errord.sinks.alertmanager  # imported lean first: its urllib.request stays so
    let_in()
    import errord.metrics, errord.sinks.mongo, hashlib, hmac, ssl, urllib.request
    print(errord.config.hashlib is hashlib, hashlib.pbkdf2_hmac.__module__, hasattr(urllib.request, "HTTPSHandler"))
"""

# imported only with [mongodb], [fleet], [metrics] or [http]: openssl_hold.needs_openssl
NEEDS_OPENSSL = (
    "errord.fleet.claims errord.fleet.gate errord.fleet.start errord.metrics errord.policy.fleet errord.sinks.mongo"
    " errord.store.mongostore"
)
ASYNCIO = "['asyncio.base_events', 'asyncio.selector_events', 'asyncio.sslproto']"  # no TLS streams


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["walk"], [ASYNCIO, f"{NEEDS_OPENSSL} False False"]),
        (["after"], [ASYNCIO, "False _hashlib True"]),  # whole for pymongo's SCRAM (pbkdf2_hmac)
        (["walk", "_sha256", "_sha2"], ["[]", " True True"]),  # no built-in SHA-256: OpenSSL's
    ],
)
def test_what_runs_without_openssl_and_what_comes_after(argv: list[str], expected: list[str]) -> None:
    """Every module of errord imports while OpenSSL is held back, but for those the config
    sections of ``needs_openssl`` bring (a new one there fails here: add it to both);
    once it is let in, they import, and hashlib is whole again for pymongo."""
    out = subprocess.run(
        [sys.executable, "-c", LEAN_PROBE, *argv], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0 and out.stdout.splitlines()[-2:] == expected and not out.stderr, out


def test_without_memfd_or_exec_the_daemon_runs_in_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import errord.daemon
    from errord.serve import exec_daemon

    s, r = _both(tmp_path, **FULL)
    ran: list[RunConfig] = []
    monkeypatch.setattr(errord.daemon, "run_daemon", ran.append)

    def refused(*_: object) -> int:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "memfd_create", refused)
    assert exec_daemon(s.to_run(), ["run"]) == 0
    assert ran == [r]
    assert "cannot exec the daemon image" in caplog.text


def test_malloc_settings_never_override_the_users() -> None:
    from errord.serve import _daemon_environ

    env = _daemon_environ({"PATH": "/bin", "MALLOC_MMAP_THRESHOLD_": "131072"})
    assert env["MALLOC_MMAP_THRESHOLD_"] == "131072" and env["PATH"] == "/bin"
    assert env["MALLOC_TRIM_THRESHOLD_"] == str(64 << 20)


def _helpers_started_by(pid: int) -> list[int]:
    """Every live notify helper whose command line names ``pid`` as its parent."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            words = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"errord.sinks.helperproc" in words and str(pid).encode() in words:
            found.append(int(entry))
    return found


def _children(pid: int) -> list[int]:
    kids = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        kids += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return kids


def test_the_helper_started_before_validation_is_the_daemons(
    make_errord: Callable[..., Errord], receiver: Receiver, tmp_path: Path
) -> None:
    """``errord run`` starts the notify helper before it imports pydantic (sinks.early);
    the daemon image takes it over across the exec: it gets the config there, delivers,
    and is supervised like any helper (killed, it is started again)."""
    e = make_errord(notify=[{"url": receiver.url("/")}])
    e.start()
    assert e.proc is not None
    pid = e.proc.pid
    (early,) = _helpers_started_by(pid)
    assert _children(pid) == [early]  # started before the exec, still the daemon's child
    append(tmp_path / "logs" / "app.jsonl", line("first"))
    receiver.wait_for(1)
    os.kill(early, signal.SIGKILL)
    e.wait_log("notify helper restarted")
    assert f"notify helper (pid {early}) died: killed by signal 9 (SIGKILL)" in e.output()
    append(tmp_path / "logs" / "app.jsonl", line("second"))
    receiver.wait_for(2)
    assert e.stop() == 0


def test_a_refused_config_leaves_no_helper_behind(tmp_path: Path, errord_env: dict[str, str]) -> None:
    """A config that is not valid still exits 2 before anything starts: the helper started
    early never saw a config and is gone when ``errord run`` has exited."""
    path = write_config(tmp_path / "errord.toml", state_dir=str(tmp_path / "state"), sources=[{"path": 5}])
    proc = subprocess.Popen(
        [sys.executable, "-m", "errord", "run", "-c", str(path)], env=errord_env, stderr=subprocess.PIPE
    )
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and b"sources.0.path" in err, err
    assert _helpers_started_by(proc.pid) == []
    assert not (tmp_path / "state").exists()


def test_an_adopted_child_is_waited_for_like_a_popen() -> None:
    """sinks.early.Adopted: poll, wait with a timeout, kill, the exit status as Popen has it."""
    r, w = os.pipe()
    r2, w2 = os.pipe()
    pid = os.posix_spawn(
        sys.executable,
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        os.environ,
        file_actions=[
            (os.POSIX_SPAWN_DUP2, r, 0),
            (
                os.POSIX_SPAWN_CLOSE,
                w,
            ),
            (os.POSIX_SPAWN_CLOSE, r2),
            (os.POSIX_SPAWN_CLOSE, w2),
        ],
    )
    os.close(r)
    os.close(w2)
    child = Adopted(pid, os.fdopen(w, "wb", buffering=0), os.fdopen(r2, "rb", buffering=0))
    assert child.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(0.05)
    child.kill()
    assert child.wait(10) == -signal.SIGKILL == child.returncode == child.poll()
    child.kill()  # gone already: nothing happens
    for pipe in (child.stdin, child.stdout):
        assert pipe is not None
        pipe.close()


def test_without_exec_the_validated_config_comes_from_the_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """validate_and_exec: the forked child validates and hands the config over a pipe; when
    exec is refused this process waits for it and runs the daemon itself. A refused config
    is the child's exit 2, with its message, and nothing runs."""
    import errord.daemon
    from errord.errors import ConfigError
    from errord.serve import validate_and_exec

    s, r = _both(tmp_path, **FULL)
    ran: list[RunConfig] = []
    monkeypatch.setattr(errord.daemon, "run_daemon", ran.append)

    def refused(*_: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "execve", refused)
    assert validate_and_exec(s.to_run, ["run"]) == 0
    assert ran == [r]

    def bad() -> RunConfig:
        raise ConfigError(["sources.0.path: Input should be a valid string"])

    assert validate_and_exec(bad, ["run"]) == 2
    assert ran == [r]
    assert "errord: config: sources.0.path: Input should be a valid string" in capfd.readouterr().err


# -- errord.launch: `errord run` without the CLI ------------------------------------------

_RUN_LINES = [
    ["run"],
    ["run", "-c", "a.toml"],
    ["run", "--config", "a.toml"],
    ["run", "--config=a.toml"],
    ["-c", "b.toml", "run"],
    ["--config=b.toml", "run"],
    ["-c", "b.toml", "run", "-c", "a.toml"],  # the command's own wins
    ["run", "-c", "b.toml", "-c", "a.toml"],  # the last wins
    ["-c", "b.toml", "-c", "a.toml", "run"],
]
_OTHER_LINES = [
    [],
    ["run", "--help"],
    ["-h"],
    ["--version"],
    ["run", "run"],
    ["-c", "run"],  # run is the file's name here: no command
    ["run", "-c"],
    ["run", "-c", "-x"],
    ["run", "-ca.toml"],  # argparse's forms this does not know: the full parser's
    ["run", "--conf", "a.toml"],
    ["run", "extra"],
    ["active"],
    ["check-config", "-c", "a.toml"],
]


@pytest.mark.parametrize("words", _RUN_LINES + _OTHER_LINES, ids=lambda w: " ".join(w) or "(none)")
def test_the_fast_run_path_takes_only_what_the_full_parser_reads_the_same(words: list[str]) -> None:
    """``errord.launch.plain_run`` starts ``run`` itself only for command lines the CLI's
    parser reads as ``run`` with the same config file; the rest go to the CLI unchanged."""
    from errord.cli import _parser, cmd_run
    from errord.launch import plain_run

    is_run, config = plain_run(words)
    assert is_run == (words in _RUN_LINES)
    if is_run:
        args = _parser().parse_args(words)
        assert args.func is cmd_run and args.config == config


def test_errord_run_starts_without_importing_the_cli_or_pydantic(tmp_path: Path) -> None:
    """What ``errord run`` imports before it forks the validating child and execs the
    daemon image: not the CLI's ~100 modules nor pydantic (they were 0.12 s on the way
    to READY=1); the child imports the config layer itself."""
    code = """if True:
        import sys
        import errord.launch, errord.serve, errord.sinks.early
        seen = []
        def fake(load, argv, helper=None):
            seen.append((argv, sorted(m for m in sys.modules if m == "errord.cli" or m.startswith("pydantic"))))
            return 0
        errord.serve.validate_and_exec = fake
        errord.sinks.early.start_early = lambda: None
        assert errord.launch.main(["-c", "x.toml", "run"]) == 0
        print(seen)
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30).stdout
    assert out.strip() == "[(['run', '-c', 'x.toml'], [])]"


def test_a_bad_config_through_the_fast_path_is_one_line_and_exit_2(tmp_path: Path, errord_env: dict[str, str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[sources]]\npath = 3\n")
    got = subprocess.run(
        [sys.executable, "-m", "errord", "run", "--config=" + str(bad)],
        env=errord_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert got.returncode == 2, got.stderr
    assert got.stderr.startswith("errord: config:") and "sources" in got.stderr and "Traceback" not in got.stderr
