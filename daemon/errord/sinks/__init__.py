"""Sinks: where committed state goes after the journal (notifications, MongoDB).

``base`` is the seam every sink implements (``Sink``: start / wake / stop(deadline);
``NoticeSink`` adds the routes table). ``notify`` delivers the notice outbox through
Apprise, a thread per target (``capture`` reads Apprise's reasons, ``secrets`` keeps the
URLs out of its logs, ``plugins`` loads only the plugins the URLs need); ``helper`` runs
that sink in a helper process, as the daemon does; ``mongo`` mirrors the incidents to
MongoDB. :func:`make_notify_sink` is the one way to get the notice sink for a config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from errord.errors import ConfigError, NotifyError
from errord.sinks.base import NoticeSink, TargetLike

if TYPE_CHECKING:
    from errord.config import RunConfig
    from errord.sinks.early import HelperProcess

__all__ = ["make_notify_sink", "prelaunch_notify_helper", "sink_key"]

# A helper started early (prelaunch_notify_helper), with what it was started for
_early: tuple[tuple[object, ...], NoticeSink] | None = None


def _key(config: RunConfig) -> tuple[object, ...]:
    return (
        config.state_dir,
        tuple((t.url, tuple(t.tags), t.template, t.format) for t in config.notify),
        tuple((w.url, tuple(w.tags), w.template, tuple(w.headers.items())) for w in config.webhooks),
        tuple(sorted((k, tuple(sorted(v.items()))) for k, v in _templates(config).items())),
        config.limits.rule,
        _host(config),
    )


def _host(config: RunConfig) -> str:
    from errord.policy.digest import host_of

    return host_of(config.server_id, config.node_name)


def sink_key(config: RunConfig) -> tuple[object, ...]:
    """What the notice sink is made of (targets, webhooks, templates): equal keys, same sink."""
    return _key(config)


def _targets(config: RunConfig) -> list[TargetLike]:
    """Every target in one list (CONTRACT §11): the notify ones, then the webhooks; the
    router, the outbox and the backoff treat them alike."""
    return list(config.targets)


def _templates(config: RunConfig) -> dict[str, dict[str, str]]:
    """The templates the targets use, as the sinks take them (name -> key -> source)."""
    used = {t.template for t in config.targets if t.template is not None}
    return {name: tpl.keys() for name, tpl in config.templates.items() if name in used}


def prelaunch_notify_helper(config: RunConfig, process: HelperProcess | None = None) -> None:
    """Start the notify helper for ``config`` now, without waiting for its answer: it
    imports Apprise and checks the URLs while the daemon imports the rest (the daemon's
    start to READY=1 is the longer of the two, not their sum). The next
    ``make_notify_sink(config, helper=True)`` takes it and waits for that answer, so an
    unusable URL still refuses the start before anything is created or locked.
    ``process``: a helper process ``errord run`` started before it validated the config
    (``sinks.early``), which gets this config."""
    global _early
    from errord.sinks.helper import NotifyHelper

    try:
        _early = (
            _key(config),
            NotifyHelper(
                config.state_dir,
                _targets(config),
                wait=False,
                process=process,
                limits=config.limits.rule,
                host=_host(config),
                templates=_templates(config),
            ),
        )
    except OSError:  # cannot start a process now: make_notify_sink tries again and says why
        _early = None


def make_notify_sink(config: RunConfig, *, helper: bool) -> NoticeSink:
    """The notice sink for ``config``'s notify targets; an unusable Apprise URL is a
    ``ConfigError`` naming it (``notify.0.url: …``).

    ``helper``: the sink runs in a helper process (the running daemon: Apprise's sends
    then never compete with the reader for the GIL, and the daemon never imports
    Apprise; see ``sinks.helper``); otherwise in this process (``check-config`` only
    validates the URLs with it).
    """
    global _early
    try:
        if helper:
            from errord.sinks.helper import NotifyHelper

            early, _early = _early, None
            if early is not None and early[0] == _key(config) and isinstance(early[1], NotifyHelper):
                early[1].ready()
                return early[1]
            if early is not None:
                early[1].stop(0.0)
            return NotifyHelper(
                config.state_dir,
                _targets(config),
                limits=config.limits.rule,
                host=_host(config),
                templates=_templates(config),
            )
        from errord.sinks.notify import NotifySink  # imports Apprise

        return NotifySink(
            config.state_dir,
            _targets(config),
            limits=config.limits.rule,
            host=_host(config),
            templates=_templates(config),
        )
    except NotifyError as exc:
        if all(p.startswith(("notify.", "webhooks.", "templates.")) for p in exc.problems):
            raise ConfigError(exc.problems) from None
        raise
