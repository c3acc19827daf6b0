"""errord.sinks.plugins: the notify helper loads only the Apprise plugins it needs.

Apprise's plugin manager is process-wide, so each case runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, sys
import apprise
from apprise.manager_plugins import NotificationManager
from errord.sinks.plugins import load_plugins_for

urls = json.loads(sys.argv[1])
load_plugins_for(urls)
mgr = NotificationManager()
loaded = len({m.split(".")[2] for m in sys.modules if m.startswith("apprise.plugins.")} - {"base"})
untouched = not mgr  # nothing loaded yet (asking len() or `in` would load every plugin)
usable = [apprise.Apprise.instantiate(u) is not None for u in urls]
print(json.dumps({"untouched": untouched, "loaded": loaded, "usable": usable, "json": "json" in mgr,
                  "total": len(mgr)}))
"""


def run(urls: list[str]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(urls)], capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_only_the_plugins_of_the_configured_schemes_are_loaded() -> None:
    r = run(["json://127.0.0.1:9/hook", "tgram://123456789:abcdefghijklmnopqrstuvwxyz012345678/12345"])
    assert r["usable"] == [True, True]
    assert r["loaded"] < 20 and r["total"] < 20  # of ~190


def test_an_unknown_scheme_falls_back_to_loading_every_plugin() -> None:
    r = run(["json://127.0.0.1:9/hook", "nosuch://x"])
    assert r["usable"] == [True, False]
    assert r["json"] is True and r["total"] > 100


def test_no_urls_loads_nothing() -> None:
    r = run([])
    assert r["untouched"] is True and r["loaded"] == 0
