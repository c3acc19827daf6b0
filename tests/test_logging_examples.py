"""The app-side examples in config/logging/ load as they are and write lines that a
running daemon alerts on, re-alerts on and clears; the WatchedFileHandler setup survives
a real logrotate run with config/logrotate/errord-apps."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from errord.model import LogEvent
from errord.parse.lines import LineParser

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "config" / "logging"
LOGROTATE = ROOT / "config" / "logrotate" / "errord-apps"

# A tiny app: configures logging from an example, then logs what it reads on stdin
# (one JSON command per line) and answers "ok" after each record was written.
DRIVER = r"""
import json, logging, logging.config, sys
from datetime import timedelta

mode, example, target, overrides = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
if mode == "structlog":
    sys.path.insert(0, str(__import__("pathlib").Path(example).parent))
    from structlog_errord import configure
    log = configure(target)  # dictConfig(logging_config(target)) + structlog.configure
    def emit(level, msg, extra):
        getattr(log, level)(msg, **extra)
else:
    with open(example) as f:
        cfg = json.load(f)
    logging.config.dictConfig(cfg)  # exactly as shipped (the file opens lazily: "delay": true)
    cfg["handlers"]["errord"].update(filename=target, **overrides)
    logging.config.dictConfig(cfg)
    log = logging.getLogger("myapp")
    def emit(level, msg, extra):
        getattr(log, level)(msg, extra=extra)
for line in sys.stdin:
    cmd = json.loads(line)
    extra = {k: (timedelta(seconds=v["timedelta"]) if isinstance(v, dict) else v) for k, v in cmd["extra"].items()}
    if cmd.get("raise"):  # log.exception() inside an except block, as apps do
        try:
            raise RuntimeError(cmd["raise"])
        except RuntimeError:
            emit("exception", cmd["msg"], extra)
    else:
        emit(cmd["level"], cmd["msg"], extra)
    print("ok", flush=True)
"""


class App:
    """The driver as a subprocess."""

    def __init__(self, tmp_path: Path, mode: str, example: Path, target: Path, **overrides: Any) -> None:
        script = tmp_path / "app_driver.py"
        script.write_text(DRIVER)
        self.stderr = open(tmp_path / f"{mode}.stderr", "wb")  # noqa: SIM115 - the app's stderr while it runs; closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, str(script), mode, str(example), str(target), json.dumps(overrides)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )

    def log(self, level: str, msg: str, raise_: str | None = None, **extra: Any) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"level": level, "msg": msg, "extra": extra, "raise": raise_}) + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok", self.proc.stderr

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        assert self.proc.wait(10) == 0
        self.stderr.close()


def events_in(folder: Path) -> list[LogEvent]:
    """Every line in ``folder`` as errord parses it, with a clock an hour ahead: an event
    time that came from the line is then far from 'now'."""
    parser = LineParser(app=None, tz=ZoneInfo("UTC"), max_line_bytes=1 << 20)
    now = time.time() + 3600
    out = []
    for path in sorted(folder.iterdir()):
        for raw in path.read_bytes().splitlines():
            ev = parser.parse_line(raw, now)
            assert isinstance(ev, LogEvent), (path, raw, ev)
            out.append(ev)
    return sorted(out, key=lambda ev: ev.time)  # rotated files: newest lines in app.jsonl


@pytest.mark.parametrize(
    "example, mode, interval",
    [
        ("json-watched.json", "json", "0s"),
        ("json-rotating.json", "json", {"timedelta": 0}),  # python-json-logger writes "0:00:00"
        ("structlog_errord.py", "structlog", {"timedelta": 0}),  # structlog writes "datetime.timedelta(0)"
    ],
)
def test_example_raises_realerts_and_clears(
    make_errord, receiver, tmp_path: Path, example: str, mode: str, interval: Any
) -> None:
    e = make_errord(notify=[{"url": receiver.url()}])
    e.start()
    target = tmp_path / "logs" / "app.jsonl"
    code = "db_down_" + example.split(".")[0].replace("-", "_")
    # the rotating example rotates at every record here: each line lands in a new file
    app = App(tmp_path, mode, EXAMPLES / example, target, **({"maxBytes": 1} if "rotating" in example else {}))
    try:
        app.log("error", "database unreachable", error_code=code)
        receiver.wait_for(1, timeout=10)
        app.log("error", "still unreachable", error_code=code, re_alert_time=interval)  # 0: alert again
        receiver.wait_for(2, timeout=10)
        app.log("info", "database back", error_code_clear=code)
        got = receiver.wait_for(3, timeout=10)
    finally:
        app.close()
    assert [r.body["type"] for r in got] == ["failure", "warning", "success"]
    assert all(code in r.body["title"].split() for r in got)
    assert "database unreachable" in got[2].body["message"]
    (h,) = e.json("history")
    assert (h["code"], h["occurrences"], h["alerts_sent"], h["active"]) == (code, 2, 2, False)
    if "rotating" in example:
        written = [p for p in target.parent.iterdir() if p.stat().st_size]
        assert len(written) == 3 and target.with_name("app.jsonl.1") in written  # one line per file
    events = events_in(target.parent)
    assert [(ev.code, ev.clear) for ev in events] == [(code, None), (code, None), (None, code)]
    assert events[1].re_alert == 0
    assert all(ev.time < time.time() + 60 for ev in events)  # each line's own timestamp was used
    assert e.stop() == 0


ENUM_APP = r"""
import enum, logging, sys
sys.path.insert(0, sys.argv[1])
from structlog_errord import configure

class Code(enum.Enum):  # a plain Enum, as in-app error-code managers had (not a str mixin)
    DB_DOWN = "db_down"

log = configure(sys.argv[2])
log.error("db down", error_code=Code.DB_DOWN)
logging.getLogger("somelib").error("db down", extra={"error_code": Code.DB_DOWN})  # a stdlib record
log.info("db back", error_code_clear=Code.DB_DOWN)
"""


def test_structlog_example_writes_an_enum_code_as_its_value(tmp_path: Path) -> None:
    target = tmp_path / "app.jsonl"
    res = subprocess.run(
        [sys.executable, "-c", ENUM_APP, str(EXAMPLES), str(target)], capture_output=True, text=True, timeout=30
    )  # a child: structlog.configure is process-wide
    assert res.returncode == 0, res.stderr
    assert "Code.DB_DOWN" not in target.read_text()
    assert [
        (json.loads(raw).get("error_code"), json.loads(raw).get("error_code_clear"))
        for raw in target.read_text().splitlines()
    ] == [("db_down", None), ("db_down", None), (None, "db_down")]
    events = events_in(tmp_path)
    assert [(ev.code, ev.clear) for ev in events] == [("db_down", None), ("db_down", None), (None, "db_down")]


@pytest.mark.parametrize("example, mode", [("json-watched.json", "json"), ("structlog_errord.py", "structlog")])
def test_example_exceptions_reach_the_notice(make_errord, receiver, tmp_path: Path, example: str, mode: str) -> None:
    """log.exception() through the shipped examples: the failure notice names the exception
    (python-json-logger's exc_info, structlog's format_exc_info text)."""
    e = make_errord(notify=[{"url": receiver.url()}])
    e.start()
    app = App(tmp_path, mode, EXAMPLES / example, tmp_path / "logs" / "app.jsonl")
    try:
        app.log("error", "checkout failed", raise_="pool exhausted", error_code="pool")
        (got,) = receiver.wait_for(1, timeout=10)
    finally:
        app.close()
    assert got.body["type"] == "failure"
    assert "Exception: RuntimeError: pool exhausted" in got.body["message"].splitlines()
    assert e.stop() == 0


def test_json_examples_load_as_they_are() -> None:
    """dictConfig accepts each file unchanged (run in a child, not to touch pytest's logging)."""
    for name in ("json-watched.json", "json-rotating.json"):
        cfg = json.loads((EXAMPLES / name).read_text())
        assert cfg["handlers"]["errord"]["delay"] is True
        code = (
            "import json, logging.config, sys; "
            "logging.config.dictConfig(json.load(open(sys.argv[1]))); "
            "h = logging.getLogger().handlers; print(type(h[0]).__name__, type(h[0].formatter).__name__)"
        )
        res = subprocess.run(
            [sys.executable, "-c", code, str(EXAMPLES / name)], capture_output=True, text=True, timeout=30
        )
        assert res.returncode == 0, res.stderr
        handler = "WatchedFileHandler" if "watched" in name else "RotatingFileHandler"
        assert res.stdout.split() == [handler, "JsonFormatter"]


def test_watched_handler_survives_logrotate_create(make_errord, receiver, tmp_path: Path) -> None:
    tool = shutil.which("logrotate")
    if tool is None:
        pytest.skip("logrotate not installed")
    e = make_errord(notify=[{"url": receiver.url()}])
    e.start()
    logs = tmp_path / "logs"
    target = logs / "app.jsonl"
    conf = LOGROTATE.read_text()
    assert "/var/log/myapp/*.jsonl {" in conf and "\n    create 0640 myapp adm\n" in conf
    # this test's folder and owner instead of the app's; no su (it runs as the file's owner)
    import grp
    import os
    import pwd

    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    conf = (
        conf.replace("/var/log/myapp/*.jsonl", f"{logs}/*.jsonl")
        .replace("create 0640 myapp adm", f"create 0640 {user} {group}")
        .replace("    su myapp adm\n", "")
    )
    (tmp_path / "logrotate.conf").write_text(conf)
    app = App(tmp_path, "json", EXAMPLES / "json-watched.json", target)
    try:
        app.log("error", "queue stuck", error_code="queue_stuck")
        receiver.wait_for(1, timeout=10)
        res = subprocess.run(
            [tool, "--force", "--state", str(tmp_path / "logrotate.state"), str(tmp_path / "logrotate.conf")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert res.returncode == 0, res.stderr
        assert sorted(p.name for p in logs.iterdir()) == ["app.jsonl", "app.jsonl.1"]  # delaycompress
        assert target.stat().st_size == 0
        app.log("info", "queue moving", error_code_clear="queue_stuck")  # reopened: lands in the new file
        got = receiver.wait_for(2, timeout=10)
    finally:
        app.close()
    assert [r.body["type"] for r in got] == ["failure", "success"]
    assert target.stat().st_size > 0
    assert e.stop() == 0
