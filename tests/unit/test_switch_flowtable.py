"""The flow table interface (insert / remove / lookup / find_strict / iterate)
against a brute-force model, so a faster classifier can be dropped in and
checked by the same tests (add it to TABLE_CLASSES)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kumoflow import ofp
from kumoflow.switch import flowkey as fk
from kumoflow.switch.flowmatch import compile_match
from kumoflow.switch.flowtable import FlowEntry, FlowTable
from kumoflow.switch.pipeline import Program
from kumoflow.switch.port import MemoryPort, wire

from test_switch_helpers import Rig, udp

TABLE_CLASSES = [FlowTable]


def entry(match: dict, priority: int) -> FlowEntry:
    m = ofp.Match(match)
    return FlowEntry(0, priority, m, compile_match(m), 0, 0, 0, 0, [], Program(), 0.0, None, frozenset(),
                     frozenset())


def key(**fields) -> list:
    k = [0] * fk.N_FIELDS
    for name, v in fields.items():
        k[ofp.FIELDS_BY_NAME[name].code] = fk.PRESENT | v
    return k


@pytest.mark.parametrize("cls", TABLE_CLASSES)
def test_table_interface(cls):
    t = cls(0)
    a = entry({"in_port": 1}, 10)
    b = entry({"in_port": 1, "eth_type": 0x800}, 20)
    c = entry({}, 0)
    for e in (a, b, c):
        t.insert(e)
    assert len(t) == 3 and list(t) == [b, a, c]
    assert t.lookup(key(in_port=1, eth_type=0x800)) is b
    assert t.lookup(key(in_port=1, eth_type=0x806)) is a
    assert t.lookup(key(in_port=2)) is c
    assert t.find_strict(10, compile_match(ofp.Match(in_port=1))) is a
    assert t.find_strict(11, compile_match(ofp.Match(in_port=1))) is None
    g = t.generation
    t.remove(b)
    assert t.generation > g
    assert t.lookup(key(in_port=1, eth_type=0x800)) is a
    t.delete(c)
    assert t.lookup(key(in_port=2)) is None and len(t) == 1


FIELDS = ["in_port", "eth_type", "ip_proto", "vlan_vid", "metadata"]


@st.composite
def entries(draw):
    match = {}
    for name in draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=3)):
        if name == "metadata":
            m = draw(st.integers(0, 15))
            match[name] = (draw(st.integers(0, 15)) & m, m)
        elif name == "vlan_vid":
            match[name] = draw(st.sampled_from([0, 0x1001, (0x1000, 0x1000)]))
        else:
            match[name] = draw(st.integers(0, 3))
    if "ip_proto" in match:
        match["eth_type"] = 0x800
    return match, draw(st.integers(0, 3))


@pytest.mark.parametrize("cls", TABLE_CLASSES)
@settings(max_examples=100, deadline=None)
@given(st.lists(entries(), max_size=12), st.lists(st.tuples(st.integers(0, 3), st.sampled_from([0x800, 3]),
                                                             st.integers(0, 3), st.sampled_from([0, 0x1001]),
                                                             st.integers(0, 15)), max_size=10),
       st.data())
def test_lookup_agrees_with_brute_force(cls, specs, keys, data):
    t = cls(0)
    live: list[FlowEntry] = []
    for match, prio in specs:
        e = entry(match, prio)
        old = t.find_strict(prio, e.compiled)
        if old is not None:
            t.remove(old)
            live.remove(old)
        t.insert(e)
        live.append(e)
    for victim in data.draw(st.lists(st.sampled_from(live), unique=True)) if live else []:
        t.remove(victim)
        live.remove(victim)
    for in_port, eth_type, proto, vid, md in keys:
        k = key(in_port=in_port, eth_type=eth_type, vlan_vid=vid, metadata=md)
        if eth_type == 0x800:
            k[fk.IP_PROTO] = fk.PRESENT | proto
        hits = [e for e in live if e.compiled.matches(k)]
        best = max((e.priority for e in hits), default=None)
        got = t.lookup(k)
        if best is None:
            assert got is None
        else:
            assert got is not None and got.priority == best and got in hits


def test_two_datapaths_wired_back_to_back():
    a, b = Rig(n_ports=0), Rig(n_ports=0)
    pa, pb = MemoryPort(1, "a1"), MemoryPort(1, "b1")
    a.dp.add_port(pa)
    a.dp.add_port(MemoryPort(2, "a2"))
    b.dp.add_port(pb)
    b.dp.add_port(MemoryPort(2, "b2"))
    wire(pa, pb)
    a.flow({"in_port": 2}, [ofp.Output(1)])
    b.flow({"in_port": 1}, [ofp.Output(2)])
    a.dp.receive(2, udp())
    assert b.out(2) == [udp()]
    assert pb.counters.rx_packets == 1 and pa.counters.tx_packets == 1


def test_generation_moves_on_every_change():
    rig = Rig()
    g = rig.dp.generation
    rig.flow({}, [ofp.Output(2)])
    assert rig.dp.generation > g
    g = rig.dp.generation
    rig.port(2).set_link(False)
    assert rig.dp.generation > g
    g = rig.dp.generation
    rig.handle(ofp.GroupMod(ofp.OFPGC.ADD, ofp.OFPGT.ALL, 1, []))
    assert rig.dp.generation > g
    g = rig.dp.generation
    rig.handle(ofp.FlowStatsRequest())
    assert rig.dp.generation == g
