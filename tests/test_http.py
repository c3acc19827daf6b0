"""The HTTP API and the status page through a running ``errord run`` (CONTRACT §10):
each endpoint and its filters, who may do what (403/401/Basic), errors (400/404/409/413),
silence/ack/resolve by API with their effect on notices, the page in headless Chromium,
and hostile clients."""

from __future__ import annotations

import base64
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from conftest import append, line, wait_until
from receiver import Receiver

pytestmark = pytest.mark.slow

TOKEN = "t0ken-s3cret"
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def http_base(e: Any) -> str:
    found = wait_until(
        lambda: re.search(r"status page on (http://[^/\s]+)/", e.output()), 30, lambda: f"no address:\n{e.output()}"
    )
    return found.group(1)


def call(
    base: str, method: str, path: str, body: Any = None, token: str | None = None, **headers: str
) -> tuple[int, Any, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            raw = resp.read()
            ctype = resp.headers.get("Content-Type", "")
            return resp.status, (json.loads(raw) if "json" in ctype else raw.decode()), resp.headers
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, (json.loads(raw) if raw.startswith(b"{") else raw.decode()), exc.headers


@pytest.fixture
def api(make_errord, receiver: Receiver, tmp_path: Path) -> Any:
    receiver.start()
    e = make_errord(
        notify=[{"url": receiver.url("/a")}],
        http={"listen": "127.0.0.1:0", "token": TOKEN},
        defaults={"re_alert_time": "0s"},
    )
    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    append(log, line("db_down", msg=HOSTILE), line("net_down", msg="net"), line("disk_full", msg="disk"))
    append(log, line(clear="disk_full"))
    receiver.wait_for(4, timeout=30)
    return e, http_base(e), log


def test_reads_filters_and_errors(api: Any) -> None:
    e, base, _ = api
    status, active, _ = call(base, "GET", "/api/v1/active")
    assert status == 200 and set(active) == {"db_down", "net_down"}
    assert active["db_down"]["message"] == HOSTILE and active["db_down"]["start_time"].endswith("Z")
    assert active == {r["code"]: r for r in e.json("active", "--json")}  # the CLI's shape exactly
    _, all_, _ = call(base, "GET", "/api/v1/incidents")
    assert [r["code"] for r in all_] == ["disk_full", "net_down", "db_down"]  # newest start first
    assert [r["code"] for r in call(base, "GET", "/api/v1/incidents?active=false")[1]] == ["disk_full"]
    assert [r["code"] for r in call(base, "GET", "/api/v1/incidents?code=d*")[1]] == ["disk_full", "db_down"]
    assert [r["code"] for r in call(base, "GET", "/api/v1/incidents?app=demo&limit=1")[1]] == ["disk_full"]
    assert call(base, "GET", "/api/v1/incidents?app=other")[1] == []
    assert len(call(base, "GET", "/api/v1/incidents?since=1h")[1]) == 3
    assert call(base, "GET", "/api/v1/incidents?since=2099-01-01T00:00:00Z")[1] == []
    one = all_[1]
    assert call(base, "GET", f"/api/v1/incidents/{one['incident_id']}")[1] == one
    assert call(base, "GET", "/api/v1/incidents/nope")[0] == 404
    for bad, field in (("limit=x", "limit"), ("limit=0", "limit"), ("active=maybe", "active"), ("since=soon", "since")):
        status, body, _ = call(base, "GET", f"/api/v1/incidents?{bad}")
        assert status == 400 and body["error"].startswith(f"{field}:"), body
    status, st, _ = call(base, "GET", "/api/v1/status")
    assert status == 200 and st["active_incidents"] == 2 and st["running"]
    assert call(base, "GET", "/api/v1/silences")[1] == []
    assert call(base, "GET", "/api/v1/nothing")[0] == 404
    assert call(base, "DELETE", "/api/v1/active", token=TOKEN)[0] == 405
    assert call(base, "GET", "/healthz")[1] == "ok\n"
    assert "errord_lines_read_total" in call(base, "GET", "/metrics")[1]
    assert TOKEN not in json.dumps(st) and TOKEN not in e.output()


def test_writes_need_the_token_and_take_effect(api: Any, receiver: Receiver) -> None:
    e, base, log = api
    assert call(base, "POST", "/api/v1/silences", {"pattern": "db_*", "for": "1h"})[0] == 401
    status, body, _ = call(base, "POST", "/api/v1/silences", {"pattern": "db_*", "for": "1h"}, token="wrong")
    assert status == 401 and "wrong token" in e.output() and "wrong\n" not in e.output()
    for bad, field in (
        ({"for": "1h"}, "pattern"),
        ({"pattern": "a b", "for": "1h"}, "pattern"),
        ({"pattern": "db_*"}, "for"),
        ({"pattern": "db_*", "for": "1h", "until_resolved": True}, "for"),
        ({"pattern": "db_*", "for": "0s"}, "for"),
        ({"pattern": "db_*", "until": "2001-01-01T00:00:00Z"}, "until"),
        ({"pattern": "db_*", "for": "1h", "colour": "red"}, "colour"),
    ):
        status, body, _ = call(base, "POST", "/api/v1/silences", bad, token=TOKEN)
        assert status == 400 and body["error"].startswith(f"{field}:"), (bad, body)
    status, silence, _ = call(
        base, "POST", "/api/v1/silences", {"pattern": "db_*", "for": "1h", "by": "api"}, token=TOKEN
    )
    assert status == 201 and silence["pattern"] == "db_*" and silence["active"]
    before = len(receiver.bodies())
    append(log, line("db_down", msg="again"))  # re_alert_time 0: would re-alert, but silenced
    wait_until(lambda: any(r["notices_muted"] for r in e.json("active", "--json")), 15)
    assert len(receiver.bodies()) == before
    assert [s["id"] for s in call(base, "GET", "/api/v1/silences")[1]] == [silence["id"]]
    status, ended, _ = call(base, "DELETE", f"/api/v1/silences/{silence['id']}", token=TOKEN)
    assert status == 200 and not ended["active"]
    assert call(base, "DELETE", f"/api/v1/silences/{silence['id']}", token=TOKEN)[0] == 409
    assert call(base, "DELETE", "/api/v1/silences/nope", token=TOKEN)[0] == 404
    net = call(base, "GET", "/api/v1/active")[1]["net_down"]
    status, ack, _ = call(base, "POST", f"/api/v1/incidents/{net['incident_id']}/ack", {"reason": "on it"}, token=TOKEN)
    assert status == 201 and ack["ack"] and ack["incident_ids"] == [net["incident_id"]]
    status, closed, _ = call(base, "POST", f"/api/v1/incidents/{net['incident_id']}/resolve", {}, token=TOKEN)
    assert status == 200 and not closed["active"] and closed["resolved_by"] == "manual"
    assert call(base, "POST", f"/api/v1/incidents/{net['incident_id']}/resolve", {}, token=TOKEN)[0] == 409
    assert call(base, "POST", f"/api/v1/incidents/{net['incident_id']}/ack", {}, token=TOKEN)[0] == 409
    assert call(base, "POST", "/api/v1/incidents/nope/resolve", {}, token=TOKEN)[0] == 404
    wait_until(lambda: any("net_down resolved" in b["title"] for b in receiver.bodies()), 15)


def test_without_a_token_writes_are_403_and_off_loopback_needs_one(make_errord, tmp_path: Path) -> None:
    e = make_errord(http={"listen": "127.0.0.1:0"})
    e.start()
    base = http_base(e)
    status, body, _ = call(base, "POST", "/api/v1/silences", {"pattern": "x", "for": "1h"})
    assert status == 403 and "token" in body["error"]
    assert call(base, "GET", "/api/v1/active")[0] == 200
    e.stop()
    bad = make_errord("open", http={"listen": "0.0.0.0:0"})
    res = bad.cli("check-config", check=False)
    assert res.returncode == 2
    assert "http.token: required when http.listen is not a loopback address" in res.stderr


def test_off_loopback_every_request_needs_the_token_basic_for_a_browser(make_errord) -> None:
    e = make_errord(http={"listen": "0.0.0.0:0", "token": TOKEN})
    e.start()
    base = http_base(e).replace("0.0.0.0", "127.0.0.1")
    status, _, headers = call(base, "GET", "/")
    assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="errord"'
    assert call(base, "GET", "/api/v1/active")[0] == 401
    basic = "Basic " + base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    assert call(base, "GET", "/", Authorization=basic)[0] == 200
    assert call(base, "GET", "/api/v1/active", token=TOKEN)[0] == 200
    assert call(base, "GET", "/healthz")[0] == 200  # open, as /metrics


def test_the_page_escapes_log_text_and_sends_a_strict_csp(api: Any) -> None:
    _e, base, _ = api
    status, page, headers = call(base, "GET", "/")
    assert status == 200 and "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert '<meta http-equiv="refresh"' in page and "<svg" in page and "db_down" in page
    assert "http://" not in page.replace(base, "") and "https://" not in page  # nothing from outside


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_the_page_in_headless_chromium(api: Any, tmp_path: Path) -> None:
    _e, base, _ = api
    assert CHROMIUM is not None
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chrome'}",
    ]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", base + "/"], capture_output=True, text=True, timeout=90)
    assert "db_down" in dom.stdout and "net_down" in dom.stdout, dom.stderr[-2000:]
    assert "<script>" not in dom.stdout and "<img" not in dom.stdout  # no element made from the log text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in dom.stdout
    shot = tmp_path / "page.png"
    subprocess.run(
        [CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1000,800", base + "/"],
        capture_output=True,
        timeout=90,
    )
    assert shot.exists() and shot.stat().st_size > 5000
    out = Path(__file__).resolve().parent.parent / "docs" / "status-page.png"
    if not out.exists():  # the screenshot kept in docs/
        shutil.copy(shot, out)


CLIENT = r"""
import asyncio, json, sys
from errord.client import AsyncClient, Client, ClientError
mode, where = sys.argv[1], sys.argv[2]
c = Client(url=where) if mode == "url" else Client(config=where)
out = {"active": sorted(c.active()), "elapsed": c.active()["db_down"].elapsed.total_seconds() >= 0,
       "history": [i.code for i in c.history(limit=10)], "is_active": c.is_active("db_down"),
       "not_active": c.is_active("disk_full"), "aware": c.history()[0].start_time.tzinfo is not None,
       "mods": sorted(m for m in sys.modules if m.split(".")[0] in ("errord", "orjson", "pydantic", "apprise"))}
a = AsyncClient(url=where) if mode == "url" else AsyncClient(config=where)
out["async"] = [i.code for i in asyncio.run(a.history(code="net_down"))]
try:
    out["silence"] = c.silence("db_*", for_="2h", reason="maintenance")
except ClientError as exc:
    out["silence"] = "error: " + str(exc)
print(json.dumps(out))
"""


def test_the_client_from_another_process_by_url_and_by_config(
    api: Any, tmp_path: Path, errord_env: dict[str, str]
) -> None:
    _e, base, _ = api

    def run(mode: str, where: str) -> dict[str, Any]:
        res = subprocess.run(
            [sys.executable, "-c", CLIENT, mode, where], capture_output=True, text=True, env=errord_env, timeout=60
        )
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)  # type: ignore[no-any-return]

    by_url = run("url", base)
    assert by_url["active"] == ["db_down", "net_down"] and by_url["elapsed"] and by_url["aware"]
    assert by_url["history"] == ["disk_full", "net_down", "db_down"]
    assert by_url["is_active"] and not by_url["not_active"] and by_url["async"] == ["net_down"]
    assert by_url["mods"] == ["errord", "errord.client"]  # nothing of the daemon, no third party
    assert by_url["silence"].startswith("error: POST /api/v1/silences: 401")  # no token given
    # a config whose [http] is reachable, with its token: writes work
    port = base.rsplit(":", 1)[1]
    cfg = tmp_path / "client.toml"
    cfg.write_text(f'state_dir = "{tmp_path / "state"}"\n[http]\nlisten = "0.0.0.0:{port}"\ntoken = "{TOKEN}"\n')
    by_config = run("config", str(cfg))
    assert by_config["active"] == ["db_down", "net_down"] and len(by_config["silence"]) == 12
    store = tmp_path / "store.toml"  # no [http]: the store, read-only
    store.write_text(f'state_dir = "{tmp_path / "state"}"\n')
    by_store = run("config", str(store))
    assert by_store["active"] == ["db_down", "net_down"] and by_store["history"] == by_url["history"]
    assert by_store["silence"].startswith("error: this config has no [http]")


def test_hostile_clients_do_not_stall_ingest_or_alerts(api: Any, receiver: Receiver) -> None:
    e, base, log = api
    host, port = base.removeprefix("http://").rsplit(":", 1)
    idle = [socket.create_connection((host, int(port))) for _ in range(20)]  # slowloris: say nothing
    for s in idle[:10]:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # ... or half a request
    big = socket.create_connection((host, int(port)))
    big.sendall(b"POST /api/v1/silences HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode())
    big.sendall(b"\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n")
    assert big.recv(200).startswith(b"HTTP/1.1 413")  # refused at once, unread

    def ingest(n: int, tag: str) -> float:
        """Seconds until ``n`` more lines were read (status' lines_read)."""
        before = sum(f["lines_read"] for f in call(base, "GET", "/api/v1/status")[1]["files"])
        t = time.monotonic()
        append(log, *(line(f"{tag}_{i % 50}", msg="x") for i in range(n)))
        wait_until(lambda: sum(f["lines_read"] for f in e.status()["files"]) >= before + n, 60, lambda: str(e.status()))
        return time.monotonic() - t

    quiet = ingest(20_000, "calm")
    stop = threading.Event()
    answered: list[int] = []

    def burst() -> None:
        while not stop.is_set() and len(answered) < 1000:
            try:
                answered.append(call(base, "GET", "/api/v1/active")[0])
            except OSError:
                answered.append(0)

    threads = [threading.Thread(target=burst) for _ in range(8)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    n0 = len(receiver.bodies())
    append(log, *(line(f"burst_{i}", msg="b") for i in range(20)))
    receiver.wait_for(n0 + 20, timeout=30)  # alerts keep flowing during the burst
    during = time.monotonic() - t0
    busy = ingest(20_000, "storm")
    stop.set()
    for t in threads:
        t.join(30)
    for s in [*idle, big]:
        s.close()
    print(
        f"20 alerts during a request burst: {during:.2f}s; {len(answered)} requests, {answered.count(200)} answered"
        f" 200; 20,000 lines read in {quiet:.2f}s without the burst, {busy:.2f}s during it"
    )
    assert answered.count(200) >= len(answered) // 2
    assert call(base, "GET", "/healthz")[1] == "ok\n"


def test_http_and_metrics_on_one_address_are_one_listener(make_errord) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    e = make_errord(http={"listen": f"127.0.0.1:{port}"}, metrics={"listen": f"127.0.0.1:{port}"})
    e.start()
    base = f"http://127.0.0.1:{port}"
    assert "errord_lines_read_total" in call(base, "GET", "/metrics")[1]
    assert call(base, "GET", "/api/v1/active")[0] == 200 and call(base, "GET", "/healthz")[1] == "ok\n"
    assert "metrics on http" not in e.output()  # no second server
