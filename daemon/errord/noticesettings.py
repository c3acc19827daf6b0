"""Validation of what a notice says (CONTRACT §11): ``[templates.NAME]``, a code's
``labels``, and the checks that need the whole config (a target's ``template`` names an
existing table; every template renders against a sample notice). Kept out of
``settings`` so that stays small; the rendering itself is ``sinks.templates``' (imported
only when a template is configured: it imports Jinja2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from errord.config import Alertmanager, TemplateConfig, Webhook

__all__ = [
    "RESERVED_LABELS",
    "AlertmanagerSettings",
    "Labels",
    "TemplateSettings",
    "WebhookSettings",
    "notice_problems",
]

# Alertmanager's label names (CONTRACT §11): a code's labels join these, never replace them
RESERVED_LABELS = ("alertname", "app", "server_id", "node_name")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: an HTTP header name


def _labels(values: dict[str, str]) -> dict[str, str]:
    for name in values:
        if not _LABEL.fullmatch(name):
            raise ValueError(f"label name {name!r} must match [a-zA-Z_][a-zA-Z0-9_]* (Prometheus label names)")
        if name in RESERVED_LABELS:
            own = ", ".join(RESERVED_LABELS)
            raise ValueError(f"label name {name!r} clashes with errord's own labels ({own})")
    return values


Labels = Annotated[dict[str, str], AfterValidator(_labels)]


class TemplateSettings(BaseModel):
    """``[templates.NAME]``: Jinja2 text per notice kind; a key left out uses the built-in text."""

    model_config = ConfigDict(extra="forbid")

    failure_title: str | None = None
    failure_body: str | None = None
    warning_title: str | None = None
    warning_body: str | None = None
    success_title: str | None = None
    success_body: str | None = None
    digest_title: str | None = None
    digest_body: str | None = None
    flapping_title: str | None = None
    flapping_body: str | None = None

    def to_run(self) -> TemplateConfig:
        """This table as the daemon holds it."""
        return TemplateConfig(**self.model_dump())


class WebhookSettings(BaseModel):
    """One ``[[webhooks]]`` entry: an http(s) URL, headers (secrets), routing tags, a template."""

    model_config = ConfigDict(extra="forbid")

    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    template: str | None = None

    def to_run(self) -> Webhook:
        """This entry as the daemon holds it."""
        return Webhook(url=self.url, headers=dict(self.headers), tags=tuple(self.tags), template=self.template)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or len(value) < 10:  # never echo: may hold a token
            raise ValueError("should be an http:// or https:// URL")
        return value

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"header name {name!r} is not an HTTP token")
            if "\r" in text or "\n" in text:  # never echo the value: it is a secret
                raise ValueError(f"header {name!r}: the value holds a line break")
        return value


class AlertmanagerSettings(BaseModel):
    """One ``[[alertmanager]]`` entry: the base URL of one Alertmanager (each HA peer listed)."""

    model_config = ConfigDict(extra="forbid")

    url: str

    def to_run(self) -> Alertmanager:
        """This entry as the daemon holds it."""
        return Alertmanager(url=self.url)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or len(value) < 10:
            raise ValueError("should be the http:// or https:// base URL of an Alertmanager")
        return value


class _TargetLike(Protocol):
    @property
    def template(self) -> str | None: ...


def notice_problems(
    templates: Mapping[str, TemplateSettings],
    targets: Sequence[_TargetLike],
    display_timezone: str,
    webhooks: Sequence[_TargetLike] = (),
) -> list[str]:
    """One line per problem, naming its key: a target naming no ``[templates.X]``
    (``notify.0.template: …``), a template that does not compile or render against a
    sample notice (``templates.short.failure_title: …``). Empty: all good."""
    problems: list[str] = []
    for section, entries in (("notify", targets), ("webhooks", webhooks)):
        for i, t in enumerate(entries):
            if t.template is not None and t.template not in templates:
                known = ", ".join(sorted(templates)) or "none"
                problems.append(f"{section}.{i}.template: no [templates.{t.template}] table (defined: {known})")
    used = {name: tpl for name, tpl in templates.items() if tpl.to_run().keys()}
    if used:
        from errord.sinks.templates import template_problems  # imports Jinja2: only when needed

        for name, tpl in used.items():
            problems += template_problems(name, tpl.to_run().keys(), display_timezone)
    return problems
