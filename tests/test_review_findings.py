"""Review findings (branch ``review``): each test states a CONTRACT clause the code on
main does not keep. They fail on main by design; the fix makes them pass."""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from tests.test_engine import T0, FakePolicy, ev, make_engine
from tests.test_limit import HEAD

from errord.engine import Engine
from errord.health import Health
from errord.model import Kind
from errord.noise import Noise
from errord.settings import Settings


def engine(noise: Noise, **kw: object) -> Engine:
    return make_engine(FakePolicy(default=10.0, noise=noise), **kw)


# -- §9 flapping ------------------------------------------------------------------------


def test_a_record_opened_while_flapping_keeps_flapping_true_after_stopped_flapping() -> None:
    """§9: "records opened while their key was flapping (the opening that started it
    included) have flapping = true". engine_noise._flap_ends sets inc.flapping = False on
    the 'stopped flapping' notice and the record is committed so (history loses it)."""
    e = engine(Noise(flap_threshold=2, flap_window=100.0))
    e.feed(ev(0, "db"))
    e.feed(ev(5, clear="db"))
    e.feed(ev(10, "db"))  # the 2nd open: starts flapping, this record is flapping
    inc = e.active()["db"]
    assert inc.flapping
    e.begin()
    (tr,) = e.tick(lambda src: T0 + 110.0)
    assert tr.kind is Kind.FLAP_END
    assert all(i.flapping for i in e.pending() if i.incident_id == inc.incident_id), (
        "the record opened while flapping is written with flapping=false"
    )


def test_a_flapping_keys_resolve_is_muted_with_reason_flapping() -> None:
    """§9: "from then on the key's failure, resolve, re-alert, reminder and auto-resolve
    notices are muted (reason flapping)" — a muted notice is counted (§8). The resolve is
    dropped with muted=None and not counted (engine._clear, engine_noise._auto_resolve)."""
    e = engine(Noise(flap_threshold=2, flap_window=100.0))
    for t, what in [(0, "open"), (5, "clear"), (10, "open")]:
        e.feed(ev(t, "db") if what == "open" else ev(t, clear="db"))
    e.begin()
    (tr,) = e.feed(ev(20, clear="db"))
    assert tr.kind is Kind.CLEAR and not tr.notify
    assert tr.muted == "flapping" and e.muted() == {("flapping", None): 1}


def test_flap_states_stay_bounded_by_max_open_incidents() -> None:
    """§9 Cardinality: "Memory stays bounded by this number". With flap_threshold set in
    [defaults], every distinct code that opened (and closed) keeps a FlapState for
    flap_window: lines with fresh codes grow engine.flaps.states without bound (and each
    batch that touches it dumps all of it to journal meta, snapshot() copies it)."""
    e = engine(Noise(flap_threshold=3, flap_window=1800.0), max_open_incidents=100)
    for i in range(5000):
        e.feed(ev(i * 0.01, f"c{i}"))
        e.feed(ev(i * 0.01, clear=f"c{i}"))
    assert len(e.active()) == 0
    assert len(e.flaps.states) <= 1000, f"{len(e.flaps.states)} flap states kept with max_open_incidents=100"


# -- §10 the HTTP server under hostile clients --------------------------------------------


def _server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str = "") -> object:
    from errord.http import server

    monkeypatch.setattr(server, "MAX_CONNECTIONS", 2)
    monkeypatch.setattr(server._Handler, "timeout", 0.5)
    cfg_path = tmp_path / "errord.toml"
    cfg_path.write_text(f'state_dir = "{tmp_path}/state"\n' + HEAD + '[http]\nlisten = "127.0.0.1:0"\n' + text)
    cfg = Settings.load(cfg_path, environ={}).to_run()
    health = Health()
    api = server.ApiServer("127.0.0.1", 0, lambda: cfg, health)
    api.start()
    return api


@pytest.mark.slow
def test_a_trickling_client_is_cut_like_a_silent_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """IO_TIMEOUT is a per-recv socket timeout, not a deadline: a client sending one byte
    of its headers every < IO_TIMEOUT keeps its slot forever, so MAX_CONNECTIONS (64) of
    them answer every other request 503 — /healthz included (§10: "/healthz open"; the
    brief: resource exhaustion by hostile clients). Here 2 slots, a 0.5 s timeout."""
    api = _server(tmp_path, monkeypatch)
    host, port = api.address  # type: ignore[attr-defined]
    socks = [socket.create_connection((host, port)) for _ in range(2)]
    try:
        for s in socks:
            s.sendall(b"GET /api/v1/status HTTP/1.1\r\n")
        deadline = time.monotonic() + 3.0  # 6 x the timeout
        while time.monotonic() < deadline:
            for s in socks:
                with contextlib.suppress(OSError):  # cut by the server: what is wanted
                    s.sendall(b"X")  # one byte of a header line, never finished
            time.sleep(0.3)
        try:
            # (/api/v1/status: a fresh Health() answers /healthz 503 "starting" on its own)
            with urllib.request.urlopen(f"http://{host}:{port}/api/v1/status", timeout=5) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status != 503, "two trickling clients hold both slots after 6 x IO_TIMEOUT"
    finally:
        for s in socks:
            s.close()
        api.stop()  # type: ignore[attr-defined]


@pytest.mark.slow
def test_a_cross_site_form_post_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes accept any Content-Type and any Origin: a page elsewhere can POST a
    text/plain form (a "simple" request, no CORS preflight) to /api/v1/silences; a browser
    that opened the status page with Basic (§10: "so a browser can open the page") sends
    the cached credentials along. Alertmanager-like users expect a cross-site write to be
    refused (403/415), never to reach the daemon."""
    import base64

    api = _server(tmp_path, monkeypatch, 'token = "t0k"\n')
    host, port = api.address  # type: ignore[attr-defined]
    body = b'{"pattern": "*", "for": "30d", "reason": "=x"}'  # what enctype=text/plain sends
    req = urllib.request.Request(
        f"http://{host}:{port}/api/v1/silences",
        data=body,
        method="POST",
        headers={
            "Content-Type": "text/plain",
            "Origin": "http://evil.example",
            "Authorization": "Basic " + base64.b64encode(b"me:t0k").decode(),
        },
    )
    try:
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        # main: the body is parsed and sent to the daemon (no daemon here: 504/503);
        # a cross-site write must be refused before that
        assert status in (403, 415), f"a cross-site text/plain POST got {status}"
    finally:
        api.stop()  # type: ignore[attr-defined]


def _run_config(tmp_path: Path, http: str) -> object:
    path = tmp_path / "errord.toml"
    path.write_text(f'state_dir = "{tmp_path}/state"\n' + HEAD + http)
    return Settings.load(path, environ={}).to_run()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, ConnectionError) as exc:  # dropped without an answer
        return -1 if "Remote end closed" in str(exc) or isinstance(exc, ConnectionError) else -2


@pytest.mark.slow
def test_a_reload_to_a_loopback_listen_does_not_open_the_bound_wildcard_listener(tmp_path: Path) -> None:
    """§10's table judges by where the server listens. A reload keeps the listener (README
    "a reload keeps the listener") but server._serve reads is_loopback(config().http.host)
    from the NEW config: bound on 0.0.0.0 with a token, a reload to listen = 127.0.0.1
    without a token (valid for loopback) makes every GET on 0.0.0.0 open to the network,
    no token. The daemon passes ``lambda: self.settings`` exactly like this."""
    from errord.http.server import ApiServer

    before = _run_config(tmp_path, '[http]\nlisten = "0.0.0.0:0"\ntoken = "t0k"\n')
    after = _run_config(tmp_path, '[http]\nlisten = "127.0.0.1:0"\n')
    current = [before]
    api = ApiServer("0.0.0.0", 0, lambda: current[0], Health())  # type: ignore[arg-type,return-value]
    api.start()
    try:
        port = api.address[1]
        assert _status(f"http://127.0.0.1:{port}/api/v1/status") == 401
        current[0] = after  # SIGHUP: daemon.reload() sets self.settings = new
        assert _status(f"http://127.0.0.1:{port}/api/v1/status") == 401, "still bound on 0.0.0.0, now open"
    finally:
        api.stop()


@pytest.mark.slow
def test_a_reload_that_drops_http_answers_instead_of_dropping_connections(tmp_path: Path) -> None:
    """A reload whose config has no [http] keeps the listener, but server._serve asserts
    config.http is not None: every request to / and /api/v1 dies with an
    AssertionError swallowed by _serve_one, the client gets no answer at all (§10: errors
    are {"error": …} answers)."""
    from errord.http.server import ApiServer

    before = _run_config(tmp_path, '[http]\nlisten = "127.0.0.1:0"\n')
    after = _run_config(tmp_path, "")
    current = [before]
    api = ApiServer("127.0.0.1", 0, lambda: current[0], Health())  # type: ignore[arg-type,return-value]
    api.start()
    try:
        port = api.address[1]
        assert _status(f"http://127.0.0.1:{port}/api/v1/status") == 200
        current[0] = after
        assert _status(f"http://127.0.0.1:{port}/api/v1/status") > 0, "the connection was dropped unanswered"
    finally:
        api.stop()


class _SilenceUntil:
    """A silence on everything until event time T0 + ``end``."""

    now = 0.0

    def __init__(self, end: float) -> None:
        self.end = T0 + end

    def check(self, inc: object, when: float, active: object, opened: int) -> tuple[str, str] | None:
        return ("silence", "s1") if when < self.end else None


def test_an_opening_muted_by_a_silence_while_flapping_is_still_a_flapping_record() -> None:
    """engine._open: ``if muted is not None: notify = False`` / ``elif flap is not None:
    inc.flapping = True`` — an opening a silence mutes never gets flapping = true (§9:
    "records opened while their key was flapping (the opening that started it
    included) have flapping = true")."""
    e = engine(Noise(flap_threshold=2, flap_window=100.0))
    e.mutes = _SilenceUntil(11.0)  # type: ignore[assignment]
    e.feed(ev(0, "db"))
    e.feed(ev(5, clear="db"))
    (tr,) = e.feed(ev(10, "db"))  # the 2nd open in the window, under the silence
    assert tr.muted == "silence" and e.flaps.is_flapping("db")
    assert e.active()["db"].flapping


def test_a_flapping_keys_incident_is_not_announced_once_a_silence_ends() -> None:
    """The same opening: its incident has alerts_sent = 0 and flapping = False, so the
    next line after the silence (within the re-alert interval) takes engine._repeat's
    "nobody has heard of it" path, which checks inc.flapping only, not
    flaps.is_flapping(key): a failure goes out while the key is flapping (§9: "from then
    on the key's failure … notices are muted (reason flapping)")."""
    e = engine(Noise(flap_threshold=2, flap_window=100.0))
    e.mutes = _SilenceUntil(11.0)  # type: ignore[assignment]
    e.feed(ev(0, "db"))
    e.feed(ev(5, clear="db"))
    e.feed(ev(10, "db"))
    assert e.flaps.is_flapping("db")
    trs = e.feed(ev(12, "db"))  # the silence is over; 2 s < the 10 s re-alert interval
    assert not any(t.notify for t in trs), [(t.kind, t.notify) for t in trs]
