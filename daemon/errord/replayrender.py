"""``errord replay FILE --render [--target notify.N | webhooks.N]`` (CONTRACT §11): each
notice printed exactly as a target would receive it — its template and format, a webhook's
JSON body — the template preview Alertmanager users have asked for. Pure but for stdout.
"""

from __future__ import annotations

import sys

import orjson

from errord.config import RunConfig, Target, Webhook
from errord.errors import ConfigError
from errord.model import Notice
from errord.policy.digest import host_of
from errord.sinks.templates import compile_template, present
from errord.sinks.webhook import webhook_body
from errord.views import iso

__all__ = ["print_rendered", "render_targets"]


def render_targets(config: RunConfig, target: str | None) -> list[tuple[str, Target | Webhook]]:
    """``replay --render``: the targets to render for, each with the name ``check-config``
    shows (``notify.N``, ``webhooks.N``); a ``--target`` that names none is a usage error."""
    named: list[tuple[str, Target | Webhook]] = [(f"notify.{i}", t) for i, t in enumerate(config.notify)]
    named += [(f"webhooks.{i}", w) for i, w in enumerate(config.webhooks)]
    if target is None:
        chosen: list[tuple[str, Target | Webhook]] = [(n, t) for n, t in named if n.startswith("notify.")]
    else:
        chosen = [(n, t) for n, t in named if n == target]
    if not chosen:
        known = ", ".join(n for n, _ in named) or "none configured"
        what = f"--target {target}" if target else "--render"
        raise ConfigError(f"{what}: no such target (targets: {known})")
    return chosen


def print_rendered(
    config: RunConfig, targets: list[tuple[str, Target | Webhook]], notice: Notice, as_json: bool
) -> None:
    """One notice as each of ``targets`` would receive it (those its tags route it to)."""
    for name, t in targets:
        if t.key not in notice.targets:
            continue
        tpl_cfg = config.templates.get(t.template) if t.template is not None else None
        tpl = compile_template(t.template or "", tpl_cfg.keys(), t.format) if tpl_cfg is not None else None
        title, body, error = present(notice.title, notice.body, notice.vars, t.format, tpl)
        if error is not None:
            print(f"warning: {name}: {error}; the built-in text is sent instead", file=sys.stderr)
        if isinstance(t, Webhook):
            payload = webhook_body(notice, title, body, host_of(config.server_id, config.node_name))
            sys.stdout.write(f"== {name}\n" if not as_json else "")
            sys.stdout.write(orjson.dumps(payload).decode() + "\n")
        elif as_json:
            sys.stdout.write(
                orjson.dumps({"target": name, "type": notice.type.value, "title": title, "body": body}).decode() + "\n"
            )
        else:
            print(f"== {name}  {notice.type.value}  {iso(notice.event_time)}\n{title}\n\n{body}\n")
