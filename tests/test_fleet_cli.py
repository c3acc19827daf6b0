"""``errord fleet [--json]`` (CONTRACT §13) against the MongoDB stand-in; exit 1 with one
line when MongoDB does not answer. Live variant when ERRORD_TEST_MONGODB_URI is set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from errord.fleet.claims import FleetClaims
from mongofake import FakeMongo, free_port

LIVE = os.environ.get("ERRORD_TEST_MONGODB_URI", "")


@pytest.fixture(scope="module", name="mongo")
def fake_mongo() -> Iterator[FakeMongo]:
    with FakeMongo() as m:
        yield m


def config(tmp_path: Path, uri: str) -> Path:
    path = tmp_path / "errord.toml"
    path.write_text(
        f'server_id = "h0"\nstate_dir = "{tmp_path}/state"\n[[sources]]\npath = "{tmp_path}/*.jsonl"\n'
        f'[mongodb]\nuri = "{uri}"\ntimeout = "1s"\n[fleet]\nname = "prod"\nlease = "30s"\n'
    )
    return path


def fleet(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "errord", "fleet", "-c", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("ERRORD_")},
    )


def test_fleet_json_shows_the_open_fleet_incidents(tmp_path: Path, mongo: FakeMongo) -> None:
    coll = mongo.collection("errord", "fleet_incidents")
    now = time.time()
    a, b = (FleetClaims(coll, fleet="prod", server_id=s, scope="code", lease=30.0) for s in ("h0", "h1"))
    a.open("db_down", "db_down", None, now - 5, now)
    a.announce("db_down", now - 5)
    b.open("db_down", "db_down", None, now - 9, now - 40)  # b's lease lapsed: stale
    other = FleetClaims(coll, fleet="staging", server_id="h9", scope="code", lease=30.0)
    other.open("x", "x", None, now, now)
    out = fleet(config(tmp_path, mongo.uri), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [
        {
            "key": "db_down",
            "code": "db_down",
            "app": None,
            "hosts": ["h0"],
            "stale": ["h1"],
            "alerted_by": "h0",
            "start_time": now - 9,
            "occurrences": 2,
        }
    ]
    human = fleet(config(tmp_path, mongo.uri))
    assert "db_down  failing on 1 host(s): h0, stale: h1" in human.stdout


def test_api_v1_fleet_is_the_same_array(tmp_path: Path, mongo: FakeMongo) -> None:
    from errord.http import api
    from errord.settings import Settings

    path = config(tmp_path, mongo.uri)
    got = api.fleet(Settings.load(path, environ={}).to_run(), None)  # type: ignore[arg-type]  # reads no request
    out = fleet(path, "--json")
    assert got.status == 200 and json.loads(got.body) == json.loads(out.stdout)
    down = Settings.load(config(tmp_path, f"mongodb://localhost:{free_port()}/"), environ={}).to_run()
    assert api.fleet(down, None).status == 503  # type: ignore[arg-type]


def test_fleet_exits_1_with_one_line_when_mongodb_does_not_answer(tmp_path: Path) -> None:
    out = fleet(config(tmp_path, f"mongodb://localhost:{free_port()}/"), "--json")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.splitlines() == ["errord: fleet: MongoDB did not answer (ServerSelectionTimeoutError)"]


@pytest.mark.skipif(not LIVE, reason="ERRORD_TEST_MONGODB_URI is not set (a real replica set to test against)")
def test_live_claims_on_a_replica_set() -> None:
    from pymongo import MongoClient, WriteConcern

    client: MongoClient[dict[str, object]] = MongoClient(LIVE, serverSelectionTimeoutMS=5000)
    coll = client["errord_test"].get_collection("fleet_incidents", write_concern=WriteConcern(w="majority"))
    fleet_name = f"t{os.getpid()}-{time.time_ns()}"
    try:
        hosts = [FleetClaims(coll, fleet=fleet_name, server_id=f"h{i}", scope="code", lease=30.0) for i in range(3)]  # type: ignore[arg-type]
        sends = [h.open("k", "k", None, 100.0, 1000.0) for h in hosts]
        assert [d.send for d in sends if d] == [True, False, False]
        assert hosts[0].announce("k", 100.0)
        assert [d.send for d in (h.clear("k", 1001.0) for h in hosts) if d] == [False, False, True]
    finally:
        coll.delete_many({"fleet": fleet_name})
        client.close()


def test_the_status_page_says_when_mongodb_does_not_answer(tmp_path: Path) -> None:
    from errord.http.page import render_page
    from errord.settings import Settings

    down = Settings.load(config(tmp_path, f"mongodb://localhost:{free_port()}/"), environ={}).to_run()
    page = render_page(down, "n0nce")
    block = page[page.index("<h2>Fleet prod</h2>") :]
    assert block.startswith('<h2>Fleet prod</h2>\n<p class="bad">MongoDB did not answer (ServerSelectionTimeoutError)')
