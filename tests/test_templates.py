"""What a notice says (CONTRACT §11): display_timezone, per-code notes, [templates.NAME].

Pure table tests of ``notices.render`` (the built-in text and the stored variables) and
``sinks.templates`` (rendering, formats, escaping, errors), the config checks through
``Settings.load``, and the run-time fallback through a real ``NotifySink`` to
tests/receiver.py.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import write_config
from errord.errors import ConfigError
from errord.model import Notice, NoticeType
from errord.notices import CodeNotes, NoticeStyle, render
from errord.settings import Settings
from errord.sinks.templates import (
    TEMPLATE_KEYS,
    TemplateError,
    builtin_for_format,
    compile_template,
    notice_kind,
    sample_vars,
    template_problems,
    variables,
)
from test_engine import FakePolicy, ev, make_engine

BERLIN = NoticeStyle(
    "Europe/Berlin",
    {
        "db_down": CodeNotes(
            "Primary database unreachable", "https://wiki.example/db_down", {"team": "payments", "severity": "crit"}
        )
    },
)
HOSTILE = "*bold* _x_ [click](http://evil.example) <script>alert(1)</script> `rm -rf` # head"


def three(style: NoticeStyle = BERLIN, message: str = "database down") -> list[Notice]:
    """A failure, a warning and a success of ``db_down``, rendered with ``style``."""
    e = make_engine(FakePolicy(default=60))
    out = []
    for event in (
        ev(0, "db_down", message=message, app="api", level="error", exception="ValueError: boom"),
        ev(90, "db_down", message="still " + message),
        ev(5400, clear="db_down", message="db back"),
    ):
        n = render(e.feed(event), server_id="srv", node_name="node", style=style)
        assert n is not None
        out.append(n)
    return out


# -- the built-in text ---------------------------------------------------------------------


def test_builtin_text_uses_the_display_zone_and_shows_the_code_notes() -> None:
    fail, warn, ok = three()
    assert [n.type for n in (fail, warn, ok)] == [NoticeType.FAILURE, NoticeType.WARNING, NoticeType.SUCCESS]
    # ev(0) is 2026-01-14 14:13:20 UTC (test_engine's epoch): 15:13:20 CET in Berlin
    assert "since 2026-01-14 15:13:20 CET" in fail.body and "UTC" not in fail.body
    for n in (fail, warn, ok):
        assert "description: Primary database unreachable" in n.body
        assert "runbook: https://wiki.example/db_down" in n.body
        assert "labels: severity=crit, team=payments" in n.body
    assert "(2026-01-14 15:13:20 CET to 2026-01-14 16:43:20 CET)" in ok.body


def test_without_style_the_text_is_todays() -> None:
    fail, _, _ = three(NoticeStyle())
    assert "since 2026-01-14 14:13:20 UTC" in fail.body
    assert "runbook" not in fail.body and "description" not in fail.body and "labels" not in fail.body


def test_stored_variables_are_those_of_the_contract() -> None:
    fail, warn, ok = three()
    want = {
        "code, app, level, exception, description, runbook, labels, server_id, node_name, host, incident_id,"
        " type, emoji, occurrences, since_alert, alerts_sent, duration, start_time, last_log_time, cleared_at,"
        " message, first_message, latest_message, held"
    }
    names = {n.strip() for n in next(iter(want)).split(",")}
    for n in (fail, warn, ok):
        assert n.vars is not None and names <= set(variables(n.vars))
    assert fail.vars is not None and warn.vars is not None and ok.vars is not None
    assert fail.vars["host"] == "srv/node" and fail.vars["labels"] == {"team": "payments", "severity": "crit"}
    assert fail.vars["exception"] == "ValueError: boom" and fail.vars["level"] == "error"
    assert warn.vars["latest_message"] == "still database down" and warn.vars["message"] == "database down"
    assert isinstance(warn.vars["since_alert"], int) and ok.vars["duration"] == "1h 30m"
    v = variables(ok.vars)
    assert str(v["start_time"]) == "2026-01-14 15:13:20 CET" and v["start_time"].tzinfo is not None
    assert str(v["cleared_at"]) == "2026-01-14 16:43:20 CET"
    assert variables(fail.vars)["cleared_at"] is None


# -- templates -----------------------------------------------------------------------------

SHORT = {
    "failure_title": "{{ emoji }} {{ code }} on {{ host }}",
    "failure_body": "{{ message }}{% if runbook %}\n{{ runbook }}{% endif %}\nsince {{ start_time }}",
    "warning_title": "again: {{ code }} ({{ since_alert }} new)",
    "success_body": "{{ code }} fixed after {{ duration }} at {{ cleared_at }}",
}


def test_each_type_uses_its_keys_and_each_key_stands_alone() -> None:
    fail, warn, ok = three()
    tpl = compile_template("short", SHORT)
    t, b = tpl.render(fail.vars or {}, fail.title, fail.body)
    assert t == "🔴 db_down on srv/node"
    assert b == "database down\nhttps://wiki.example/db_down\nsince 2026-01-14 15:13:20 CET"
    t, b = tpl.render(warn.vars or {}, warn.title, warn.body)
    assert t == "again: db_down (1 new)" and b == warn.body  # no warning_body: the built-in body
    t, b = tpl.render(ok.vars or {}, ok.title, ok.body)
    assert t == ok.title and b == "db_down fixed after 1h 30m at 2026-01-14 16:43:20 CET"


def test_digest_and_flapping_notices_use_their_keys() -> None:
    keys = {
        "digest_title": "{{ held | length }} held",
        "digest_body": "{% for h in held %}{{ h.code }} x{{ h.count }}: {{ h.latest_message }}\n{% endfor %}",
        "flapping_title": "{{ code }} stopped flapping",
    }
    tpl = compile_template("d", keys)
    digest = sample_vars("digest")
    assert notice_kind(digest) == "digest"
    assert tpl.render(digest, "t", "b") == ("1 held", "sample_code x3: sample message\n")
    assert tpl.render(sample_vars("flapping"), "t", "b") == ("sample_code stopped flapping", "b")
    assert notice_kind({"type": "warning"}) == "warning" and notice_kind({}) == "failure"


@pytest.mark.parametrize("fmt", ["text", "markdown", "html"])
def test_each_format_and_hostile_log_text(fmt: str) -> None:
    fail, _, _ = three(message=HOSTILE)
    tpl = compile_template("short", {"failure_body": "<b>{{ message }}</b> {{ description }}"}, fmt)
    _, body = tpl.render(fail.vars or {}, *builtin_for_format(fail.title, fail.body, fmt))
    if fmt == "text":
        assert body == f"<b>{HOSTILE}</b> Primary database unreachable"
    elif fmt == "markdown":  # log text escaped; the template's own markup stays
        assert body.startswith("<b>\\*bold\\* \\_x\\_ \\[click\\]\\(http://evil\\.example\\) \\<script\\>")
        assert "*bold*" not in body and "[click](" not in body and "\\`rm \\-rf\\`" in body
    else:  # autoescape: the log text is text, the template's markup is markup
        assert body.startswith("<b>*bold* _x_ [click](http://evil.example) &lt;script&gt;alert(1)&lt;/script&gt;")
        assert "<script>" not in body


@pytest.mark.parametrize("fmt", ["markdown", "html"])
def test_builtin_text_is_escaped_for_the_format(fmt: str) -> None:
    fail, _, _ = three(message=HOSTILE)
    _, body = builtin_for_format(fail.title, fail.body, fmt)
    assert "<script>" not in body
    assert "[click](" not in body if fmt == "markdown" else "&lt;script&gt;" in body


def test_titles_are_one_line_and_capped() -> None:
    tpl = compile_template("long", {"failure_title": "{{ message }}\n{{ message }}", "failure_body": "{{ message }}"})
    v = sample_vars("failure") | {"message": "x" * 20000}
    title, body = tpl.render(v, "t", "b")
    assert "\n" not in title and len(title) == 250 and title.endswith("…")
    assert len(body) == 10000 and body.endswith("…")


@pytest.mark.parametrize(
    ("src", "why"),
    [
        ("{{ code ", "unexpected end of template"),
        ("{{ nope }}", "'nope' is undefined"),
        ("{{ code.__class__.__mro__ }}", "SecurityError"),
        ("{{ labels.missing }}", "has no attribute 'missing'"),
    ],
    ids=["syntax", "undefined", "sandbox", "strict-attribute"],
)
def test_template_errors_name_the_key(src: str, why: str) -> None:
    got = template_problems("short", {"failure_title": "ok", "warning_body": src})
    assert len(got) == 1 and got[0].startswith("templates.short.warning_body: ") and why in got[0], got


def test_every_key_is_checked() -> None:
    for key in TEMPLATE_KEYS:
        got = template_problems("t", {key: "{{ undefined_thing }}"})
        assert got and got[0].startswith(f"templates.t.{key}: "), (key, got)
    assert template_problems("t", {k: "{{ code }} {{ start_time }} {{ held }}" for k in TEMPLATE_KEYS}) == []


def test_a_run_time_failure_raises_template_error_for_the_sink_to_fall_back() -> None:
    fail, _, _ = three(NoticeStyle())  # db_down without labels in this config
    tpl = compile_template("short", {"failure_title": "{{ labels.team }} {{ code }}"})
    with pytest.raises(TemplateError, match=r"templates\.short\.failure_title: .*team"):
        tpl.render(fail.vars or {}, fail.title, fail.body)


# -- the config ----------------------------------------------------------------------------


def load(tmp_path: Path, **cfg: Any) -> Settings:
    cfg.setdefault("sources", [{"path": str(tmp_path / "*.log")}])
    return Settings.load(write_config(tmp_path / "errord.toml", state_dir="state", **cfg), environ={})


@pytest.mark.parametrize(
    ("cfg", "want"),
    [
        ({"templates": {"short": {"failure_title": "{{ oops"}}}, "templates.short.failure_title: "),
        ({"templates": {"short": {"failure_titel": "x"}}}, "templates.short.failure_titel"),
        ({"notify": [{"url": "json://127.0.0.1:9/", "template": "nope"}]}, "notify.0.template: no [templates.nope]"),
        ({"notify": [{"url": "json://127.0.0.1:9/", "format": "rtf"}]}, "notify.0.format"),
        ({"display_timezone": "Mars/Olympus"}, "display_timezone: "),
        ({"codes": {"db": {"labels": {"bad-name": "x"}}}}, "codes.db.labels: "),
        ({"codes": {"db": {"labels": {"alertname": "x"}}}}, "clashes with errord's own labels"),
    ],
    ids=["syntax", "unknown-key", "no-such-template", "format", "zone", "label-name", "label-clash"],
)
def test_config_problems_name_the_key(tmp_path: Path, cfg: dict[str, Any], want: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, **cfg)
    assert want in str(err.value), str(err.value)


def test_a_good_config_loads(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        display_timezone="Europe/Berlin",
        templates={"short": SHORT},
        notify=[{"url": "json://127.0.0.1:9/", "template": "short", "format": "html"}],
        codes={"db_down": {"description": "d", "runbook": "https://r", "labels": {"team": "ops"}}},
    ).to_run()
    assert s.notify[0].template == "short" and s.notify[0].format == "html"
    assert s.templates["short"].keys() == SHORT
    assert s.notice_style.notes_for("db_down") == CodeNotes("d", "https://r", {"team": "ops"})


def test_check_config_refuses_a_broken_template_with_exit_2(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "errord.toml",
        state_dir="state",
        sources=[{"path": str(tmp_path / "*.log")}],
        templates={"short": {"failure_title": "{{ code }} {{ hots }}"}},
    )
    got = subprocess.run(
        [sys.executable, "-m", "errord", "check-config", "-c", str(path)], capture_output=True, text=True, timeout=60
    )
    assert got.returncode == 2, got
    assert "templates.short.failure_title: " in got.stderr and "'hots' is undefined" in got.stderr


# -- the sink: templates in the helper, the run-time fallback -------------------------------


@pytest.fixture
def rx() -> Iterator[Any]:
    from receiver import Receiver

    with Receiver() as r:
        yield r


def test_sink_sends_the_template_and_falls_back_on_a_run_time_failure(tmp_path: Path, rx: Any) -> None:
    from errord.sinks.notify import NotifySink
    from test_notify import Target, enqueue, wait_until

    fail, warn, _ = three(NoticeStyle())
    keys = {"failure_title": "T {{ code }} {{ host }}", "warning_title": "{{ labels.team }}"}  # no labels: fails
    target = Target(rx.url("/t"))
    target.template = "short"  # type: ignore[attr-defined]
    target.format = "markdown"  # type: ignore[attr-defined]
    sink = NotifySink(tmp_path / "state", [target], backoff=(0.05, 0.2), timeout=2.0, templates={"short": keys})
    failed: list[str] = []
    sink.on_template_failure = failed.append
    sink.start()
    try:
        enqueue(tmp_path / "state", sink, fail, warn)
        wait_until(lambda: len(rx.delivered) == 2)
    finally:
        sink.stop(time.monotonic() + 2)
    first, second = (r.body for r in rx.delivered)
    assert first["title"] == "T db\\_down srv/node" and first["type"] == "failure"
    assert second["title"] == warn.title and second["type"] == "warning"  # the built-in text: not lost
    assert failed == [target.redacted]


# -- end to end: errord run, the helper renders; a broken template at SIGHUP is refused -----


@pytest.mark.slow
def test_daemon_renders_templates_in_the_helper_and_refuses_a_broken_reload(
    make_errord: Any, receiver: Any, tmp_path: Path
) -> None:
    import signal

    from conftest import append, line, wait_until

    cfg: dict[str, Any] = dict(
        display_timezone="Europe/Berlin",
        notify=[{"url": receiver.url("/hook"), "template": "short", "format": "html"}],
        codes={"db_down": {"runbook": "https://wiki.example/db_down", "labels": {"team": "payments"}}},
        templates={
            "short": {"failure_title": "{{ code }} for {{ labels.team }}", "failure_body": SHORT["failure_body"]}
        },
    )
    e = make_errord(**cfg)
    e.start()
    log = tmp_path / "logs" / "app.jsonl"
    append(log, line("db_down", msg="<b>down</b>", timestamp="2026-01-14T15:00:00Z"))
    (first,) = receiver.wait_for(1)
    assert first.body["title"] == "db_down for payments"
    assert first.body["message"].startswith("&lt;b&gt;down&lt;/b&gt;\nhttps://wiki.example/db_down\nsince")
    assert "2026-01-14 16:00:00 CET" in first.body["message"]

    cfg["templates"] = {"short": {"failure_title": "{{ code }} {{ nope }}"}}
    write_config(
        e.config,
        **{
            **cfg,
            "state_dir": str(tmp_path / "state"),
            "server_id": "test-host",
            "node_name": "n1",
            "sources": [{"path": str(tmp_path / "logs" / "*.jsonl"), "start_at": "beginning", "app": "demo"}],
        },
    )
    assert e.proc is not None
    e.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "templates.short.failure_title" in e.output(), 30, "the reload refused")
    append(log, line("cache_down", msg="cache"))
    got = receiver.wait_for(2)
    # the old template still applies; cache_down has no labels: the built-in text, not lost
    assert got[1].body["title"] == "🔴 cache_down failing on test-host/n1"
    assert "template" in e.output() and "built-in text" in e.output()
    assert e.stop() == 0


def test_replay_render_prints_each_notice_as_each_target_gets_it(tmp_path: Path) -> None:
    from conftest import line

    log = tmp_path / "app.jsonl"
    log.write_bytes(
        line("db_down", msg="<i>down</i>", timestamp="2026-01-14T15:00:00Z")
        + line(clear="db_down", msg="up", timestamp="2026-01-14T16:30:00Z")
    )
    path = write_config(
        tmp_path / "errord.toml",
        state_dir="state",
        server_id="srv",
        sources=[{"path": str(tmp_path / "*.log")}],
        display_timezone="Europe/Berlin",
        templates={"short": SHORT},
        notify=[
            {"url": "json://127.0.0.1:9/a", "template": "short", "format": "html"},
            {"url": "json://127.0.0.1:9/b"},
        ],
        webhooks=[{"url": "http://127.0.0.1:9/hook", "headers": {"Authorization": "Bearer x"}}],
    )

    def replay(*extra: str) -> str:
        got = subprocess.run(
            [sys.executable, "-m", "errord", "replay", "-c", str(path), str(log), "--render", *extra],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert got.returncode == 0, got.stderr
        return got.stdout

    out = replay()
    assert "== notify.0  failure" in out and "== notify.1  failure" in out and "== webhooks.0" not in out
    assert (
        "🔴 db_down on srv\n\n&lt;i&gt;down&lt;/i&gt;\nsince 2026-01-14 16:00:00 CET" in out
    )  # notify.0: template, html
    assert "db_down fixed after 1h 30m at 2026-01-14 17:30:00 CET" in out
    assert "🔴 db_down failing on srv\n\n<i>down</i>\nsince 2026-01-14 16:00:00 CET" in out  # notify.1: built-in text
    import json

    hooks = [json.loads(x) for x in replay("--target", "webhooks.0").splitlines() if x.startswith("{")]
    assert [h["type"] for h in hooks] == ["failure", "success"]
    assert hooks[0]["incident"]["start_time"] == "2026-01-14T15:00:00.000Z"  # records stay UTC
    bad = subprocess.run(
        [sys.executable, "-m", "errord", "replay", "-c", str(path), str(log), "--render", "--target", "notify.7"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "notify.0, notify.1, webhooks.0" in bad.stderr


def test_a_storm_limit_digest_renders_with_the_digest_keys_and_as_a_webhook_body() -> None:
    from errord.policy.digest import digest
    from errord.sinks.templates import digest_vars, present
    from errord.sinks.webhook import webhook_body

    fail, warn, ok = three(message="*x*")
    d = digest([fail, warn, ok], "srv/node")
    d.vars = digest_vars(d, "srv/node")
    assert notice_kind(d.vars) == "digest"
    keys = {
        "digest_title": "{{ held | length }} kinds held on {{ host }}",
        "digest_body": "{% for h in held %}{{ h.code }} {{ h.type }} x{{ h.count }}: {{ h.latest_message }}\n"
        "{% endfor %}",
        "failure_title": "not used for a digest",
    }
    title, body, error = present(d.title, d.body, d.vars, "markdown", compile_template("d", keys, "markdown"))
    assert error is None and title == "3 kinds held on srv/node"
    assert body.splitlines()[0].startswith("db\\_down new x1: \\*x\\*")  # log text escaped for markdown
    # no digest keys: the worker's built-in digest text
    assert present(d.title, d.body, d.vars, "text", compile_template("f", {"failure_title": "x"}))[:2] == (
        d.title,
        d.body,
    )
    hook = webhook_body(d, d.title, d.body)
    assert hook["type"] == "digest" and hook["incident"] is None and hook["server_id"] == "srv"
    assert [(h["code"], h["type"], h["count"]) for h in hook["held"]] == [
        ("db_down", "new", 1),
        ("db_down", "re-alert", 1),
        ("db_down", "resolved", 1),
    ]


def test_jinja2_is_imported_only_when_a_template_is_configured() -> None:
    """The helper's start-up (issue 13: 0.33 s to READY=1) does not pay for Jinja2."""
    code = (
        "import sys, errord.sinks.notify, errord.sinks.helperproc, errord.settings, errord.sinks.templates;"
        "from errord.settings import Settings;"
        "Settings(sources=[{'path': '/x/*.log'}], notify=[{'url': 'json://127.0.0.1:9/'}]);"
        "assert 'jinja2' not in sys.modules, 'jinja2 imported'"
    )
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr


def test_errord_run_refuses_to_start_with_a_broken_template(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "errord.toml",
        state_dir="state",
        sources=[{"path": str(tmp_path / "*.log")}],
        templates={"short": {"success_body": "{% for %}"}},
    )
    got = subprocess.run(
        [sys.executable, "-m", "errord", "run", "-c", str(path)], capture_output=True, text=True, timeout=60
    )
    assert got.returncode == 2 and "templates.short.success_body: " in got.stderr, got
    assert not (tmp_path / "state").exists()  # refused before anything was created


def test_reminders_flapping_and_auto_resolves_use_the_keys_of_the_contract() -> None:
    """CONTRACT §11: reminders use warning_*, auto-resolves success_*, "stopped flapping"
    flapping_* (the flapping start is a warning, instead of its failure)."""
    from errord.model import Kind
    from errord.noise import Noise
    from test_engine import T0
    from test_noise_engine import cycle, engine

    keys = {
        f"{k}_title": f"{k} {{{{ code }}}} {{{{ type }}}} {{{{ emoji }}}}" for k in ("warning", "success", "flapping")
    }
    tpl = compile_template("k", keys)

    def titled(transitions: Any) -> str:
        n = render(transitions, server_id="h", node_name="n", style=BERLIN)
        assert n is not None and n.vars is not None
        return tpl.render(n.vars, n.title, n.body)[0]

    e = engine(Noise(remind_every=100.0), default=1000.0)
    e.feed(ev(0, "db"))
    assert titled(e.tick(lambda src: T0 + 100.0)) == "warning db warning 🔔"  # a reminder

    e = engine(Noise(auto_resolve_after=100.0), default=1000.0)
    e.feed(ev(0, "db"))
    (auto,) = [t for t in e.tick(lambda src: T0 + 100.0) if t.kind is Kind.CLEAR]
    assert titled([auto]) == "success db success ✅"  # an auto-resolve

    e = engine(Noise(flap_threshold=2, flap_window=100.0))
    cycle(e, [(0, "open"), (5, "clear")])
    assert titled(e.feed(ev(10, "db"))) == "warning db warning 🔁"  # started flapping
    (end,) = e.tick(lambda src: T0 + 110.0)
    assert titled([end]) == "flapping db failure 🔴"  # stopped flapping, still failing
    e = engine(Noise(flap_threshold=2, flap_window=100.0))
    cycle(e, [(0, "open"), (5, "clear"), (10, "open"), (20, "clear")])
    (end,) = e.tick(lambda src: T0 + 120.0)
    assert titled([end]) == "flapping db success ✅"  # stopped flapping, resolved
