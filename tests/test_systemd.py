"""sd_notify against a real datagram socket, and the run lock the CLI reads."""

from __future__ import annotations

import configparser
import os
import socket
from pathlib import Path

import pytest

from errord.errors import ErrordError
from errord.store.runstate import RunLock, read_run_state
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
    assert sock.recv(1024) == b"STOPPING=1\nSTATUS=stopping"
    n.close()


def test_status_is_one_line(notify_socket) -> None:  # type: ignore[no-untyped-def]
    path, sock = notify_socket
    n = SystemdNotifier({"NOTIFY_SOCKET": path})
    n.status("2 open incident(s),\n10 lines read")  # a newline would start a new KEY=
    assert sock.recv(1024) == b"STATUS=2 open incident(s), 10 lines read"
    n.watchdog("journal unwritable\r\nREADY=1")
    assert sock.recv(1024) == b"WATCHDOG=1\nSTATUS=journal unwritable READY=1"
    n.close()


def test_daemon_sends_ready_and_status_summary(notify_socket, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A real daemon (subprocess) under a fake systemd: READY with a summary, then
    WATCHDOG + STATUS at half of WATCHDOG_USEC, then STOPPING on SIGTERM."""
    import signal
    import subprocess
    import sys

    from conftest import write_config

    path, sock = notify_socket
    (tmp_path / "logs").mkdir()
    cfg = write_config(
        tmp_path / "e.toml", state_dir=str(tmp_path / "state"), sources=[{"path": str(tmp_path / "logs" / "*.jsonl")}]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERRORD_")}
    env.update(NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
    proc = subprocess.Popen(
        [sys.executable, "-m", "errord", "run", "-c", str(cfg)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        sock.settimeout(15)
        ready = sock.recv(1024).decode()
        assert ready.startswith("READY=1\nSTATUS=") and "open incident(s)" in ready
        ping = sock.recv(1024).decode()
        assert ping.startswith("WATCHDOG=1\nSTATUS=") and "\n" not in ping.split("STATUS=", 1)[1]
        proc.send_signal(signal.SIGTERM)
        while (msg := sock.recv(1024)) != b"STOPPING=1\nSTATUS=stopping":
            assert msg.startswith(b"WATCHDOG=1"), msg
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()


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


UNIT = Path(__file__).parent.parent / "systemd" / "errord.service"


def _unit_entries(path: Path) -> dict[str, dict[str, list[str]]]:
    """systemd's ini dialect: sections, repeated keys accumulate, ``#``/``;`` comments."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        text = raw.strip()
        if not text or text[0] in "#;":
            continue
        if text.startswith("[") and text.endswith("]"):
            section = text[1:-1]
            out.setdefault(section, {})
            continue
        key, eq, value = text.partition("=")
        assert eq and section, f"not a unit-file line: {raw!r}"
        out[section].setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_file_hardening_and_lifecycle() -> None:
    svc = _unit_entries(UNIT)["Service"]
    one = {k: v[-1] for k, v in svc.items()}
    assert one["Restart"] == "on-failure" and int(one["WatchdogSec"]) > 0
    assert one["DynamicUser"] == "yes" and "adm" in one["SupplementaryGroups"].split()
    # a journal source's journalctl reads the system journal (CONTRACT §12)
    assert "systemd-journal" in one["SupplementaryGroups"].split()
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "read-only",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert one[key] == value, key
    assert "/var/log" in one["ReadOnlyPaths"].split()
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert "@system-service" in svc["SystemCallFilter"]
    # errord stops within 10 s of SIGTERM (CONTRACT §7); systemd must not kill it sooner
    assert int(one["TimeoutStopSec"]) >= 10
    # thousands of log files: well above systemd's default soft limit of 1024 (issue 11)
    assert int(one["LimitNOFILE"].split(":")[0]) >= 65536


def test_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    # verify checks that ExecStart's binary exists: point it at this checkout's errord,
    # which stands where the install steps put /usr/local/bin/errord.
    errord = Path(sys.executable).parent / "errord"
    if not errord.exists():
        pytest.skip(f"no errord console script next to {sys.executable}")
    text = UNIT.read_text()
    assert "/usr/local/bin/errord " in text
    unit = tmp_path / "errord.service"
    unit.write_text(text.replace("/usr/local/bin/errord ", f"{errord} "))
    res = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and not res.stderr.strip() and not res.stdout.strip(), res.stdout + res.stderr
