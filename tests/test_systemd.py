"""sd_notify against a real datagram socket, and the run lock the CLI reads."""

from __future__ import annotations

import configparser
import os
import socket
from pathlib import Path

import pytest

from errord.errors import ErrordError
from errord.runstate import RunLock, read_run_state
from errord.systemd import SystemdNotifier


@pytest.fixture
def notify_socket(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield str(path), sock
    sock.close()


def test_ready_watchdog_stopping(notify_socket) -> None:  # type: ignore[no-untyped-def]
    path, sock = notify_socket
    n = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000000"})
    assert n.enabled and n.watchdog_interval == 10.0
    n.ready("3 open incidents")
    assert sock.recv(1024) == b"READY=1\nSTATUS=3 open incidents"
    n.watchdog()
    assert sock.recv(1024) == b"WATCHDOG=1"
    n.stopping()
    assert sock.recv(1024) == b"STOPPING=1"
    n.close()


def test_abstract_socket_address() -> None:
    name = f"errord-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        SystemdNotifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(1024) == b"READY=1"
    finally:
        sock.close()


def test_no_socket_is_a_no_op_and_watchdog_for_other_pid_ignored() -> None:
    n = SystemdNotifier({})
    assert not n.enabled and n.watchdog_interval is None
    n.ready()  # nothing to send to, nothing raised
    assert SystemdNotifier({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_interval is None


def test_unreachable_socket_never_raises(tmp_path: Path) -> None:
    SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "absent.sock")}).ready()


def test_run_lock(tmp_path: Path) -> None:
    assert read_run_state(tmp_path) == {"running": False, "ready": False, "pid": None}
    lock = RunLock(tmp_path)
    lock.acquire()
    # flock is per open file description: a second RunLock in this process conflicts too
    with pytest.raises(ErrordError, match="another errord"):
        RunLock(tmp_path).acquire()
    lock.update(ready=True)
    state = read_run_state(tmp_path)
    assert state == {"running": True, "ready": True, "pid": os.getpid()}
    lock.release()
    assert read_run_state(tmp_path)["running"] is False
    assert (tmp_path / "errord.lock").stat().st_mode & 0o777 == 0o600


def test_unit_file_has_the_essentials() -> None:
    unit = Path(__file__).parent.parent / "systemd" / "errord.service"
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read(unit)
    svc = cp["Service"]
    assert svc["Type"] == "notify"
    assert svc["RestartPreventExitStatus"] == "2"
    assert "errord run" in svc["ExecStart"]
    assert "-HUP" in svc["ExecReload"]
    assert svc["StateDirectory"] == "errord"
