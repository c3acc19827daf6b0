"""Notice templates (CONTRACT §11): ``[templates.NAME]`` Jinja2 text, per target format.

Pure: a template and a notice's variables (``Notice.vars``, made by ``notices.render`` and
stored with it in the outbox) in, a title and a body out. Rendering happens where the
notice is sent (the notify helper), so a template never slows the reader.

Jinja2 is imported only when a template is configured: the helper's start-up (issue 13:
start to READY=1 in 0.33 s) does not pay for it otherwise.

Safety: the environment is Jinja2's ``SandboxedEnvironment`` (no attribute walks to
``__class__`` and friends) with ``StrictUndefined`` (a misspelt variable is an error, not
an empty string). Log text was cleaned and capped by ``notices.render``; for
``format = "markdown"`` it is escaped here before the template sees it, for ``"html"``
the environment autoescapes every variable.

Which keys a notice uses: :func:`notice_kind` is the one place that says (``failure``,
``warning``, ``success``, ``digest``, ``flapping``); each of the ten keys stands alone,
a key left out uses the built-in title or body.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from errord.model import Notice

__all__ = [
    "FORMATS",
    "KINDS",
    "TEMPLATE_KEYS",
    "CompiledTemplate",
    "NoticeTime",
    "TemplateError",
    "builtin_for_format",
    "compile_template",
    "digest_vars",
    "notice_kind",
    "present",
    "sample_vars",
    "template_problems",
    "variables",
]

KINDS = ("failure", "warning", "success", "digest", "flapping")
TEMPLATE_KEYS = tuple(f"{kind}_{part}" for kind in KINDS for part in ("title", "body"))
FORMATS = ("text", "markdown", "html")
MAX_TITLE = 250  # characters of a rendered title (one line); the target's own cap is Apprise's overflow
MAX_BODY = 10000  # characters of a rendered body

# Fields of Notice.vars that came from log lines (escaped for markdown)
_LOG_TEXT = ("code", "app", "level", "exception", "message", "first_message", "latest_message")
_TIMES = ("start_time", "last_log_time", "cleared_at")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")


class TemplateError(Exception):
    """A template that does not compile or render; the message names the key."""


class NoticeTime(datetime):
    """An aware datetime that prints as ``2026-01-14 16:00:00 CET`` (CONTRACT §11)."""

    def __str__(self) -> str:
        return self.strftime("%Y-%m-%d %H:%M:%S %Z")


def notice_kind(vars: Mapping[str, Any]) -> str:
    """Which template keys a notice uses: its ``kind`` (``notices.render`` sets it; a
    digest or a "stopped flapping" notice sets ``digest`` / ``flapping``), else its type."""
    kind = vars.get("kind") or vars.get("type") or "failure"
    return str(kind) if kind in KINDS else "failure"


def escape_markdown(text: str) -> str:
    """``text`` with every Markdown special character backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def builtin_for_format(title: str, body: str, fmt: str) -> tuple[str, str]:
    """The built-in text made safe for ``fmt``: log text in it must not become markup."""
    if fmt == "markdown":
        return title, escape_markdown(body)
    if fmt == "html":
        return html.escape(title, quote=False), html.escape(body, quote=False).replace("\n", "<br/>\n")
    return title, body


def variables(vars: Mapping[str, Any], fmt: str = "text") -> dict[str, Any]:
    """The template variables of §11 from a stored ``Notice.vars``: times as aware
    datetimes in the display zone, log text escaped for markdown."""
    tz = ZoneInfo(str(vars.get("tz") or "UTC"))
    out: dict[str, Any] = {k: v for k, v in vars.items() if k not in ("kind", "tz", "record")}
    for name in _TIMES:
        ts = vars.get(name)
        out[name] = NoticeTime.fromtimestamp(float(ts), tz) if ts is not None else None
    if fmt == "markdown":
        for name in _LOG_TEXT:
            if isinstance(out.get(name), str):
                out[name] = escape_markdown(out[name])
        if isinstance(out.get("held"), list):
            out["held"] = [
                {k: escape_markdown(v) if isinstance(v, str) else v for k, v in h.items()} for h in out["held"]
            ]
    out.setdefault("labels", {})
    return out


class CompiledTemplate:
    """One ``[templates.NAME]`` compiled for one format."""

    def __init__(self, name: str, keys: Mapping[str, str], fmt: str) -> None:
        from jinja2 import StrictUndefined, TemplateSyntaxError
        from jinja2.sandbox import SandboxedEnvironment

        self.name = name
        self.fmt = fmt
        env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=fmt == "html", keep_trailing_newline=False)
        self._compiled: dict[str, Any] = {}
        for key, src in keys.items():
            try:
                self._compiled[key] = env.from_string(src)
            except TemplateSyntaxError as e:
                raise TemplateError(f"templates.{name}.{key}: {e.message} (line {e.lineno})") from None

    def render(self, vars: Mapping[str, Any], title: str, body: str) -> tuple[str, str]:
        """The title and body of the notice whose ``vars`` these are; a key the template
        leaves out keeps the built-in ``title`` / ``body`` (already made safe for the
        format). Raises ``TemplateError`` naming the key."""
        kind = notice_kind(vars)
        ctx = variables(vars, self.fmt)
        out = [title, body]
        for i, part in enumerate(("title", "body")):
            key = f"{kind}_{part}"
            tpl = self._compiled.get(key)
            if tpl is None:
                continue
            try:
                text = str(tpl.render(ctx))
            except Exception as e:  # undefined variable, sandbox violation, a filter's error
                raise TemplateError(f"templates.{self.name}.{key}: {type(e).__name__}: {e}") from None
            out[i] = text
        new_title = " ".join(out[0].split())
        if len(new_title) > MAX_TITLE:
            new_title = new_title[: MAX_TITLE - 1] + "…"
        new_body = out[1] if len(out[1]) <= MAX_BODY else out[1][: MAX_BODY - 1] + "…"
        return new_title, new_body


def present(
    title: str, body: str, vars: Mapping[str, Any] | None, fmt: str, template: CompiledTemplate | None
) -> tuple[str, str, str | None]:
    """What a target gets: ``(title, body, error)`` — the template's text, or the built-in
    ``title``/``body`` made safe for ``fmt`` (no template, a notice stored before templates,
    or ``error``: the template failed and the built-in text goes out instead)."""
    title, body = builtin_for_format(title, body, fmt)
    if template is None or vars is None:
        return title, body, None
    try:
        t, b = template.render(vars, title, body)
    except TemplateError as e:
        return title, body, str(e)
    return t, b, None


def digest_vars(notice: Notice, host: str) -> dict[str, Any]:
    """The variables of a digest (CONTRACT §9, §11: ``Notice.held`` made by the notify
    worker): ``kind = "digest"``, ``held`` as a list of ``{code, type, count,
    latest_message}``; ``host`` split back into ``server_id``/``node_name``; what a digest
    has not (a code, an incident, times) is None."""
    server_id, _, node_name = host.partition("/")
    return {
        "kind": "digest",
        "type": notice.type.value,
        "held": [
            {"code": h.code, "type": h.type, "count": h.count, "latest_message": h.latest_message} for h in notice.held
        ],
        "server_id": server_id,
        "node_name": node_name,
        "host": host,
        "labels": {},
        "emoji": "📦",
        "occurrences": sum(h.count for h in notice.held),
        **{k: None for k in ("code", "app", "level", "exception", "description", "runbook", "incident_id")},
        **{k: None for k in ("start_time", "last_log_time", "cleared_at", "duration", "since_alert", "alerts_sent")},
        **{k: None for k in ("message", "first_message", "latest_message")},
    }


def compile_template(name: str, keys: Mapping[str, str], fmt: str = "text") -> CompiledTemplate:
    """``keys`` (a subset of ``TEMPLATE_KEYS``) compiled; raises ``TemplateError``."""
    return CompiledTemplate(name, keys, fmt)


def sample_vars(kind: str, tz: str = "UTC") -> dict[str, Any]:
    """A sample notice's variables of ``kind``, for ``check-config`` (every §11 variable set)."""
    start = 1768402800.0  # 2026-01-14 15:00:00 UTC
    out: dict[str, Any] = {
        "kind": kind,
        "tz": tz,
        "type": kind if kind in ("failure", "warning", "success") else "warning",
        "code": "sample_code",
        "app": "sample-app",
        "level": "error",
        "exception": "ValueError: sample",
        "description": "A sample description",
        "runbook": "https://runbooks.example/sample_code",
        "labels": {"team": "sample"},
        "server_id": "sample-server",
        "node_name": "node-1",
        "host": "sample-server/node-1",
        "incident_id": "0" * 32,
        "emoji": "🔴",
        "occurrences": 3,
        "since_alert": 2,
        "alerts_sent": 1,
        "duration": "1h 30m",
        "start_time": start,
        "last_log_time": start + 5400,
        "cleared_at": start + 5400 if kind == "success" else None,
        "message": "sample message",
        "first_message": "sample message",
        "latest_message": "latest sample message",
        "held": [],
    }
    if kind == "digest":
        out["held"] = [{"code": "sample_code", "type": "failure", "count": 3, "latest_message": "sample message"}]
    return out


def template_problems(name: str, keys: Mapping[str, str], tz: str = "UTC") -> list[str]:
    """Each problem of ``[templates.NAME]`` as one line naming its key: compiled and rendered
    in every format against a sample notice of each kind (``check-config``, start, reload)."""
    problems: list[str] = []
    for fmt in FORMATS:
        try:
            tpl = compile_template(name, keys, fmt)
        except TemplateError as e:
            return [str(e)]
        for kind in KINDS:
            if f"{kind}_title" not in keys and f"{kind}_body" not in keys:
                continue
            try:
                tpl.render(sample_vars(kind, tz), "title", "body")
            except TemplateError as e:
                if str(e) not in problems:
                    problems.append(str(e))
    return problems
