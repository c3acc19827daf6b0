"""model.Incident as a value: the fields it keeps apart or holds in another form to save
memory per open incident (issue 13) read and write, copy, compare and round-trip through
the journal exactly as plain fields would."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from errord.engine import Engine
from errord.model import INCIDENT_COLUMNS, INCIDENT_FIELDS, LogEvent
from errord.store.journal import Journal
from test_engine import FakePolicy
from test_journal import make_incident

# ids that are not 32 lower-case hex digits: each must come back as the same str
ODD_IDS = [
    "id-E1",
    "",
    "A" * 32,  # upper-case hex: int() would take it, the format would not give it back
    "0" * 31,
    "0" * 33,
    "0x" + "0" * 30,
    " " + "a" * 31,
    "+" + "1" * 31,
    "1_" + "2" * 30,
    "a" * 31 + "\n",
    "é" * 32,
    "٣" * 32,  # Arabic-Indic digits: int() reads them as 3s
]
HEX_IDS = ["0" * 32, "0" * 31 + "1", "f" * 32, "5b1e0c3a9f2d4e6b8a7c1d0e2f3a4b5c", "00ab" * 8]


@pytest.mark.parametrize("iid", HEX_IDS + ODD_IDS)
def test_an_incident_id_reads_back_as_given(iid: str) -> None:
    inc = make_incident(iid="x")
    inc.incident_id = iid
    assert inc.incident_id == iid and type(inc.incident_id) is str
    made = make_incident(iid=iid) if iid else make_incident(iid="x")
    if not iid:
        made.incident_id = iid
    for one in (inc, made, made.copy()):
        assert one.incident_id == iid
        assert one.record()["incident_id"] == iid
        assert one.values()[INCIDENT_COLUMNS.index("incident_id")] == iid
        assert f"incident_id={iid!r}" in repr(one)


def test_a_hex_id_is_held_as_its_int_and_an_odd_one_as_its_str() -> None:
    inc = make_incident(iid="00ab" * 8)
    assert inc.id_key == int("00ab" * 8, 16)
    assert sys.getsizeof(inc.id_key) < sys.getsizeof("00ab" * 8)
    for odd in ODD_IDS:
        inc.incident_id = odd
        assert inc.id_key == odd
    # an int and a str never make the same key: two such incidents stay apart in a dict
    a, b = make_incident(iid="0" * 31 + "1"), make_incident(iid="1")
    assert len({a.id_key: a, b.id_key: b}) == 2


def test_an_id_that_is_not_a_str_is_refused() -> None:
    inc = make_incident()
    for bad in (None, 5, b"0" * 32, uuid.uuid4()):
        with pytest.raises(TypeError, match="incident_id must be a str"):
            inc.incident_id = bad  # type: ignore[assignment]
        if bad is not None:  # (make_incident gives None its own default)
            with pytest.raises(TypeError, match="incident_id must be a str"):
                make_incident(iid=bad)  # type: ignore[arg-type]


def test_equal_ids_compare_equal_and_different_ones_do_not() -> None:
    iid = uuid.uuid4().hex
    a, b = make_incident(iid=iid), make_incident(iid=iid)
    assert a == b
    b.incident_id = uuid.uuid4().hex
    assert a != b
    b.incident_id = iid.upper()  # the same digits, another str: another id
    assert a != b


def test_the_engine_makes_uuid4_hex_ids_and_keys_its_batch_by_the_held_value() -> None:
    engine = Engine(FakePolicy(), server_id="s", node_name="n")
    engine.begin()
    for k in range(3):
        engine.feed(LogEvent(code=f"E{k}", clear=None, message="m", time=1.0 + k))
    incs = list(engine.active().values())
    assert [i.incident_id for i in engine.pending()] == [i.incident_id for i in incs]
    for inc in incs:
        assert isinstance(inc.id_key, int)
        assert uuid.UUID(hex=inc.incident_id).version == 4 and len(inc.incident_id) == 32
    # an injected id maker's own ids (tests, replay) are kept as they are
    engine = Engine(FakePolicy(), new_id=iter(["id-1", "A" * 32]).__next__)
    engine.begin()
    engine.feed(LogEvent(code="E1", clear=None, message="m", time=1.0))
    engine.feed(LogEvent(code="E2", clear=None, message="m", time=1.0))
    engine.feed(LogEvent(code="E1", clear=None, message="m", time=2.0))
    assert [i.incident_id for i in engine.pending()] == ["id-1", "A" * 32]


def test_the_ids_round_trip_through_the_journal(tmp_path: Path) -> None:
    incs = [make_incident(f"E{k}", iid=iid) for k, iid in enumerate(HEX_IDS + [i for i in ODD_IDS if i])]
    with Journal(tmp_path) as journal:
        journal.commit(incs, [], [], now=100.0)
        got = {i.incident_id: i for i in journal.active()}
        assert got == {i.incident_id: i for i in incs}
        assert journal.by_ids([i.incident_id for i in incs]) == got
        for inc in incs:
            assert journal.incident(inc.incident_id) == inc
        for stored in got.values():
            assert type(stored.incident_id) is str


def test_the_rare_fields_set_copy_and_reset_as_plain_fields() -> None:
    defaults = {
        "cleared_at": None,
        "notices_muted": 0,
        "resolved_by": None,
        "flapping": False,
        "re_alert": None,
        "re_alerts": 0,
        "reminded_at": None,
    }
    values = {
        "cleared_at": 5.0,
        "notices_muted": 2,
        "resolved_by": "auto",
        "flapping": True,
        "re_alert": 60.0,
        "re_alerts": 3,
        "reminded_at": 7.0,
    }
    plain = make_incident()
    assert {n: getattr(plain, n) for n in defaults} == defaults
    for name, value in values.items():
        one = make_incident()
        setattr(one, name, value)
        twin = one.copy()
        assert getattr(twin, name) == value and twin == one
        setattr(twin, name, defaults[name])  # the copy's side object is its own
        assert getattr(one, name) == value and twin == plain and one != plain
        assert make_incident(**{name: value}) == one
    full = make_incident(**values)
    assert {n: getattr(full, n) for n in values} == values
    assert [full.record()[n] for n in INCIDENT_FIELDS if n in values] == [
        values[n] for n in INCIDENT_FIELDS if n in values
    ]


def test_an_open_incident_is_small() -> None:
    """The sizes issue 13's budget counts on: a slotted object of 15 slots (160 B with the
    GC header), an id int of 5 digits, no message once committed (test_batch.py); the rare
    fields none until one is set; the host names one tuple for all of a host's incidents."""
    inc = make_incident(iid="5b1e0c3a9f2d4e6b8a7c1d0e2f3a4b5c")
    assert sys.getsizeof(inc) <= 160
    assert sys.getsizeof(inc.id_key) <= 48
    assert inc._rare is None
    assert make_incident("E2").host is inc.host


def test_the_host_names_read_and_write_as_plain_fields() -> None:
    a, b = make_incident("E1"), make_incident("E2")
    assert (a.server_id, a.node_name) == ("srv", "node") and a.host is b.host
    b.server_id = "other"
    assert (b.server_id, b.node_name, a.server_id) == ("other", "node", "srv")
    b.node_name = "n2"
    assert (b.server_id, b.node_name) == ("other", "n2") and b.host is make_incident(
        server_id="other", node_name="n2"
    ).host
    twin = b.copy()
    twin.server_id = "srv"
    assert (b.server_id, twin.server_id) == ("other", "srv")
    assert b.record()["server_id"] == "other" and b.record()["node_name"] == "n2" and a != b


def test_active_is_true_until_the_incident_closes() -> None:
    inc = make_incident()
    assert inc.active is True and inc._rare is None
    inc.active = True  # (no side object made for the default)
    assert inc._rare is None
    twin = inc.copy()
    inc.active = False
    assert inc.active is False and twin.active is True and inc != twin
    inc.active = True
    assert inc.active is True and inc == twin
    for stored in (0, 1, False, True):  # as a row gives it
        assert make_incident(active=stored).active is bool(stored)
    closed = make_incident(active=False, cleared_at=5.0, resolved_by="clear")
    assert closed.record()["active"] is False and closed.copy() == closed
