"""sinks: the seam every sink implements and ``make_notify_sink``, the one way to get the
notice sink for a config (the daemon's, in a helper process; check-config's, in process)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Errord, write_config
from errord.config import RunConfig
from errord.errors import ConfigError
from errord.settings import Settings
from errord.sinks import make_notify_sink
from errord.sinks.base import NoticeSink, Sink
from errord.sinks.helper import NotifyHelper
from errord.sinks.mongo import MongoSink
from errord.sinks.notify import NotifySink

BAD = "nosuch://host/secret-token-value"


def config(tmp_path: Path, *urls: str) -> RunConfig:
    cfg = write_config(
        tmp_path / "errord.toml",
        state_dir=str(tmp_path / "state"),
        sources=[{"path": str(tmp_path / "*.jsonl")}],
        notify=[{"url": u, "tags": ["ops"]} for u in urls],
    )
    return Settings.load(cfg, environ={}).to_run()


def test_every_sink_implements_the_seam() -> None:
    assert NoticeSink in NotifySink.__mro__ and NoticeSink in NotifyHelper.__mro__
    assert Sink in MongoSink.__mro__ and Sink in NoticeSink.__mro__


@pytest.mark.parametrize("helper", [False, True], ids=["in-process", "helper"])
def test_the_factory_gives_a_notice_sink_with_the_targets_routes(tmp_path: Path, helper: bool) -> None:
    c = config(tmp_path, "json://127.0.0.1:9/hook")
    sink = make_notify_sink(c, helper=helper)
    try:
        assert isinstance(sink, NotifyHelper if helper else NotifySink)
        assert list(sink.routes) == [(c.notify[0].key, ("ops",))]
    finally:
        sink.stop(time.monotonic() + 1.0)


@pytest.mark.parametrize("helper", [False, True], ids=["in-process", "helper"])
def test_an_unusable_url_is_a_config_error_naming_it(tmp_path: Path, helper: bool) -> None:
    with pytest.raises(ConfigError) as info:
        make_notify_sink(config(tmp_path, "json://127.0.0.1:9/hook", BAD), helper=helper)
    assert info.value.problems == ["notify.1.url: nosuch://…: not a usable Apprise URL (Unparseable URL …)"]


def test_check_config_and_run_refuse_an_unusable_url(make_errord: Callable[..., Errord]) -> None:
    e = make_errord(notify=[{"url": BAD}])
    for command in ("check-config", "run"):
        res = e.cli(command, check=False)
        assert res.returncode == 2, (command, res.stderr)
        assert "notify.0.url: nosuch://…: not a usable Apprise URL" in res.stderr, command
        assert "secret-token-value" not in res.stdout + res.stderr
