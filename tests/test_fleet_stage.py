"""The fleet policy stage (CONTRACT §13): table tests, pure."""

from __future__ import annotations

import pytest

from errord.fleet.claims import FleetDecision
from errord.model import Notice, NoticeType
from errord.policy.base import Context, Flow
from errord.policy.fleet import FleetStage

CTX = Context(now=0.0, server_id="h0", node_name="n", tags_for=lambda c: ())
F, W, S = NoticeType.FAILURE, NoticeType.WARNING, NoticeType.SUCCESS


def notice(kind: NoticeType) -> Notice:
    return Notice(type=kind, code="db_down", title="t", body="b", incident_id="i1", event_time=1.0, targets=("x",))


@pytest.mark.parametrize(
    ("kind", "decision", "body"),
    [
        (F, None, "b"),  # no answer: sent on its own, as it is
        (F, FleetDecision(send=False, hosts=("h0", "h1")), None),  # another member opened it
        (F, FleetDecision(send=True, hosts=("h0",)), "b\nfailing on 1 host(s): h0"),
        (W, FleetDecision(send=True, hosts=("h0", "h1", "h2")), "b\nfailing on 3 hosts: h0, h1, h2"),
        (W, FleetDecision(send=False), None),  # not the lease holder
        (S, FleetDecision(send=False), None),  # others still failing
        (S, FleetDecision(send=True, total=10), "b\nresolved on all 10 hosts"),
    ],
)
def test_fleet_stage(kind: NoticeType, decision: FleetDecision | None, body: str | None) -> None:
    stage = FleetStage()
    if decision is not None:
        stage.decide({("i1", kind): decision})
    out = stage.apply(Flow([], [notice(kind)]), CTX).notices
    assert [n.body for n in out] == ([] if body is None else [body])
    assert all(n.targets == ("x",) for n in out)
