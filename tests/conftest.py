"""Factory fixtures: config files, a running ``errord`` subprocess, the CLI, log writers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/receiver.py etc. importable by name

from errord.settings import Settings
from errord.status import open_readonly, status_data
from errord.store.runstate import read_run_state
from errord.views import incident_json
from receiver import Receiver

T = TypeVar("T")


def wait_until(
    check: Callable[[], T],
    timeout: float = 30,
    what: str | Callable[[], str] = "the condition",
    every: float = 0.1,
) -> T:
    """Poll ``check`` until it returns something true, and return that: every 10 ms at
    first (or ``every``, if shorter), backing off to every ``every`` seconds. Raises
    ``AssertionError`` naming ``what`` (a callable is called then, e.g. for the daemon's
    log) after ``timeout`` seconds.

    A timeout is a budget, not a claim about speed: a passing test returns as soon as the
    condition holds, and under ``pytest -n 2`` on two busy cores things take a few times
    longer, so budgets are generous (a test that asserts a speed says so itself)."""
    end = time.monotonic() + timeout
    delay = min(0.01, every)
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")
        time.sleep(delay)
        delay = min(delay * 1.5, every)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table (labels = { team = "ops" })
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


def write_config(path: Path, **cfg: Any) -> Path:
    """Write a TOML config from keyword data: scalars, dict tables, lists of dicts as arrays of tables."""
    lines: list[str] = []
    tables: list[str] = []
    for key, value in cfg.items():
        if isinstance(value, dict):
            nested_simple = {k: v for k, v in value.items() if not isinstance(v, dict)}
            nested_tables = {k: v for k, v in value.items() if isinstance(v, dict)}
            if nested_simple:
                tables.append(f"[{key}]")
                tables += [f"{k} = {_toml_value(v)}" for k, v in nested_simple.items()]
            for sub, subval in nested_tables.items():
                tables.append(f"[{key}.{sub}]")
                tables += [f"{k} = {_toml_value(v)}" for k, v in subval.items()]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                tables.append(f"[[{key}]]")
                tables += [f"{k} = {_toml_value(v)}" for k, v in item.items()]
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    path.write_text("\n".join(lines + tables) + "\n")
    return path


def line(code: str | None = None, clear: str | None = None, msg: str = "m", **extra: Any) -> bytes:
    """One JSON log line as an app would write it."""
    rec: dict[str, Any] = {"message": msg, "levelname": "ERROR"}
    if code is not None:
        rec["error_code"] = code
    if clear is not None:
        rec["error_code_clear"] = clear
    rec.update(extra)
    return (json.dumps(rec) + "\n").encode()


def append(path: Path, *lines: bytes) -> None:
    with open(path, "ab") as f:
        f.write(b"".join(lines))


class Errord:
    """The CLI and a daemon subprocess for one config file."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.config = config
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = config.parent / f"{config.stem}.daemon.log"

    def cli(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``errord COMMAND -c CONFIG ARGS...``; ``check``: it must succeed (for
        ``status``, exit 3 = no daemon running succeeds too)."""
        cmd = [sys.executable, "-m", "errord", args[0], "-c", str(self.config), *args[1:]]
        res = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode not in ((0, 3) if args[0] == "status" else (0,)):
            raise AssertionError(f"{cmd} exited {res.returncode}: {res.stderr}")
        return res

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    # -- in-process reads: what the CLI would print, without starting a Python (~0.4 s
    # each); for waiting. A test about the CLI reads it through ``cli`` / ``json``.

    def run_config(self) -> Any:
        """The config as the CLI loads it (``-c`` and this environment), read anew."""
        return Settings.load(self.config, environ=self.env).to_run()

    def status(self) -> dict[str, Any]:
        """``errord status --json``'s object, read in this process."""
        data: dict[str, Any] = json.loads(json.dumps(status_data(self.run_config())))
        return data

    def history(self, limit: int = 1000) -> list[dict[str, Any]]:
        """``errord history --json --limit LIMIT`` from the embedded store, in this process."""
        journal = open_readonly(self.run_config())
        if journal is None:
            return []
        with journal:
            out: list[dict[str, Any]] = json.loads(json.dumps([incident_json(i) for i in journal.history(limit=limit)]))
        return out

    def running(self) -> bool:
        """``status``'s ``running``: a daemon holds the lock and has opened its sources."""
        state = read_run_state(self.run_config().state_dir)
        return bool(state["running"] and state["ready"])

    def wait_log(self, text: str, count: int = 1, timeout: float = 30) -> None:
        """Until the daemon's output holds ``text`` ``count`` times."""
        wait_until(
            lambda: self.output().count(text) >= count, timeout, lambda: f"{count}x {text!r} in:\n{self.output()}"
        )

    def start(self, wait: bool = True) -> None:
        assert self.proc is None or self.proc.poll() is not None
        with open(self.log_path, "ab") as log:  # the child has its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "errord", "run", "-c", str(self.config)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait:
            self.wait_running()

    def wait_running(self, timeout: float = 30) -> None:
        """Until ``status`` would say running (read in this process)."""

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.output()}")
            return self.running()

        wait_until(up, timeout, lambda: f"the daemon to run:\n{self.output()}")

    def wait_caught_up(self, timeout: float = 60) -> dict[str, Any]:
        """Until every matched file has been read to its end; returns ``status --json``'s
        object (read in this process)."""
        last: dict[str, Any] = {}

        def caught_up() -> dict[str, Any] | None:
            nonlocal last
            last = self.status()
            files = last["files"]
            return last if files and all(f["position"] == f["size"] for f in files) else None

        status: dict[str, Any] = wait_until(caught_up, timeout, lambda: f"caught up: {last}\n{self.output()}")
        return status

    def stop(self, timeout: float = 10) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL
        self.proc.wait(10)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver()
    try:
        yield rx
    finally:
        rx.stop()


@pytest.fixture
def errord_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERRORD_") and k != "NOTIFY_SOCKET"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def make_errord(tmp_path: Path, errord_env: dict[str, str]) -> Iterator[Callable[..., Errord]]:
    """``make_errord(notify=[...], sources=[...], ...)`` -> an ``Errord`` for a fresh config.

    Defaults: state in tmp_path/state, one source tmp_path/logs/*.jsonl read from the
    beginning, rotate_wait 1s.
    """
    made: list[Errord] = []

    def factory(name: str = "errord", **cfg: Any) -> Errord:
        (tmp_path / "logs").mkdir(exist_ok=True)
        cfg.setdefault("server_id", "test-host")
        cfg.setdefault("node_name", "n1")
        cfg.setdefault("state_dir", str(tmp_path / "state"))
        cfg.setdefault(
            "sources",
            [{"path": str(tmp_path / "logs" / "*.jsonl"), "start_at": "beginning", "rotate_wait": "1s", "app": "demo"}],
        )
        e = Errord(write_config(tmp_path / f"{name}.toml", **cfg), errord_env)
        made.append(e)
        return e

    yield factory
    for e in made:
        if e.proc is not None and e.proc.poll() is None:
            e.proc.kill()
            e.proc.wait(10)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end tests (marked ``slow``) first, each file's in its order: under
    ``pytest -n 2`` a long test handed out last would leave the other worker idle at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # a stable sort
