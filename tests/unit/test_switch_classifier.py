"""The tuple space search classifier against the reference ordered-scan
FlowTable: the same entries in, the same answers out (the same entry
object for every lookup, ties included), for lookups, strict finds,
non-strict selections, overlap checks and iteration; and the masks
lookup_wc records are enough to decide the answer."""

from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from kumoflow import ofp
from kumoflow.switch import flowkey as fk
from kumoflow.switch.classifier import Classifier, key_function
from kumoflow.switch.errors import SwitchError
from kumoflow.switch.flowmatch import FULL, _compile_raw_generic, compile_match, compile_raw
from kumoflow.switch.flowtable import FlowEntry, FlowTable
from kumoflow.switch.pipeline import Program

from test_switch_helpers import E, Rig, error_of, udp

P = fk.PRESENT
SETTINGS = settings(max_examples=300, deadline=None)


def entry(match: dict, priority: int, table_id: int = 0) -> FlowEntry:
    m = ofp.Match(match)
    return FlowEntry(table_id, priority, m, compile_match(m), 0, 0, 0, 0, [], Program(), 0.0, None, frozenset(),
                     frozenset())


def key(**fields) -> list:
    k = [0] * fk.N_FIELDS
    for name, v in fields.items():
        k[ofp.FIELDS_BY_NAME[name].code] = P | v
    return k


def test_classifier_interface():
    t = Classifier(0)
    a = entry({"in_port": 1}, 10)
    b = entry({"in_port": 1, "eth_type": 0x800}, 20)
    c = entry({}, 0)
    for e in (a, b, c):
        t.insert(e)
    assert len(t) == 3 and list(t) == [b, a, c] and t.n_subtables == 3
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
    assert t.n_subtables == 1


def test_lookup_stops_at_a_match_no_lower_subtable_can_beat():
    t = Classifier(0)
    hi = entry({"in_port": 1}, 100)
    t.insert(hi)
    t.insert(entry({"eth_type": 0x800, "ipv4_dst": "10.0.0.1"}, 50))
    t.insert(entry({"eth_type": 0x800, "ipv4_src": "10.0.0.1"}, 100))     # same top priority: examined
    wc: dict = {}
    assert t.lookup_wc(key(in_port=1, eth_type=0x800, ipv4_dst=1), wc) is hi
    # the ipv4_src subtable missed for want of an ipv4_src: only its presence counts
    assert wc == {fk.IN_PORT: P | 0xFFFFFFFF, fk.IPV4_SRC: P}
    wc = {}
    assert t.lookup_wc(key(in_port=2, eth_type=0x800, ipv4_dst=0x0A000001), wc).priority == 50
    assert set(wc) == {fk.IN_PORT, fk.ETH_TYPE, fk.IPV4_SRC, fk.IPV4_DST}


def test_equal_match_different_priorities_share_a_bucket():
    t = Classifier(0)
    lo, hi, hi2 = entry({"in_port": 1}, 1), entry({"in_port": 1}, 9), entry({"in_port": 1}, 9)
    t.insert(lo)
    t.insert(hi)
    assert t.lookup(key(in_port=1)) is hi
    t.remove(hi)
    assert t.lookup(key(in_port=1)) is lo
    t.insert(hi2)
    t.insert(hi)                      # made first: hi wins the tie, as in FlowTable
    assert t.lookup(key(in_port=1)) is hi and t.n_subtables == 1
    t.remove(hi)
    assert t.lookup(key(in_port=1)) is hi2
    t.insert(hi)
    for e in (hi2, hi, lo):
        t.remove(e)
    assert len(t) == 0 and t.n_subtables == 0 and t.lookup(key(in_port=1)) is None


def test_subtable_maximum_follows_deletes():
    t = Classifier(0)
    es = [entry({"in_port": i}, i) for i in range(1, 200)]
    other = entry({"eth_type": 0x800}, 100)
    for e in es:
        t.insert(e)
    t.insert(other)
    for e in reversed(es):             # delete from the top down: the in_port subtable's maximum falls
        t.remove(e)
        top = e.priority - 1
        assert [s[2] for s in t.shapes()] == sorted([top, 100] if top else [100], reverse=True)
        # a rule below the removed one still wins over `other` while its priority is higher
        hit = t.lookup(key(in_port=top, eth_type=0x800))
        assert hit is (es[top - 1] if top >= 100 else other)      # a tie goes to the older rule


def test_subtable_counts_priorities_only_once_a_rule_leaves():
    t = Classifier(0)
    es = [entry({"in_port": i}, p) for i, p in ((1, 5), (2, 9), (3, 5), (4, 7))]
    for e in es:
        t.insert(e)
    [st] = t._subtables.values()
    assert st.counts is None and st.heap is None and st.max_priority == 9      # growing: the maximum only
    assert t.overlapping(5, compile_match(ofp.Match(in_port=3))) is es[2]      # counted for the check
    assert st.counts == {5: 2, 9: 1, 7: 1}
    t = Classifier(0)
    for e in es:
        t.insert(e)
    [st] = t._subtables.values()
    t.remove(es[1])                     # the maximum leaves: counted from the rules, then the next one
    assert st.counts == {5: 2, 7: 1} and st.max_priority == 7
    new = [entry({"in_port": 5}, 8), entry({"in_port": 6}, 7)]
    for e in new:
        t.insert(e)
    assert st.counts == {5: 2, 7: 2, 8: 1} and st.max_priority == 8
    for e in (new[0], es[3], new[1]):
        t.remove(e)
    assert st.counts == {5: 2} and st.max_priority == 5 and t.shapes()[0][2] == 5


def test_key_function_masks_partially_masked_fields():
    shape = ((fk.ETH_TYPE, P | 0xFFFF), (fk.IPV4_DST, P | 0xFFFFFF00))
    f = key_function(shape)
    assert f(key(eth_type=0x800, ipv4_dst=0x0A000001)) == f(key(eth_type=0x800, ipv4_dst=0x0A0000FE))
    assert f(key(eth_type=0x800)) != f(key(eth_type=0x800, ipv4_dst=0))     # absent is not zero
    exact = key_function(((fk.IN_PORT, P | FULL[fk.IN_PORT]),))
    assert exact(key(in_port=3)) == P | 3
    assert key_function(())(key()) == ()


# --- the reference, with random shapes -----------------------------------------------------------------

FIELDS = {
    "in_port": lambda d: d(st.integers(1, 3)),
    "eth_type": lambda d: 0x0800,
    "ipv4_dst": lambda d: _prefix(d, 32),
    "ipv4_src": lambda d: _prefix(d, 32),
    "ip_proto": lambda d: d(st.sampled_from([6, 17])),
    "vlan_vid": lambda d: d(st.sampled_from([0, 0x1001, 0x1002, (0x1000, 0x1000), (0x1001, 0x1001)])),
    "metadata": lambda d: _masked(d, 4),
    "eth_dst": lambda d: _masked(d, 2),
    "tunnel_id": lambda d: d(st.integers(0, 2)),
    "tcp_flags": lambda d: _masked(d, 12),
}


def _prefix(draw, width: int):
    n = draw(st.sampled_from([width, width - 8, width - 30, 1]))
    v = draw(st.integers(0, 3))
    mask = ((1 << n) - 1) << (width - n)
    v = (v << (width - 2)) & mask
    return v if n == width else (v, mask)


def _masked(draw, bits: int):
    m = draw(st.integers(1, (1 << bits) - 1))
    v = draw(st.integers(0, (1 << bits) - 1)) & m
    return v if m == (1 << bits) - 1 and draw(st.booleans()) else (v, m)


@st.composite
def matches(draw):
    m = {}
    for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), unique=True, max_size=4)):
        m[name] = FIELDS[name](draw)
    if "tcp_flags" in m:
        m["ip_proto"] = 6
    if "ipv4_dst" in m or "ipv4_src" in m or "ip_proto" in m:
        m["eth_type"] = 0x0800
    return m


@st.composite
def keys(draw):
    k = key(in_port=draw(st.integers(1, 3)), metadata=draw(st.integers(0, 15)), eth_dst=draw(st.integers(0, 3)),
            tunnel_id=draw(st.integers(0, 2)), vlan_vid=draw(st.sampled_from([0, 0x1001, 0x1002])))
    if draw(st.booleans()):
        k[fk.ETH_TYPE] = P | 0x0800
        k[fk.IPV4_DST] = P | draw(st.integers(0, 3)) << 30
        k[fk.IPV4_SRC] = P | draw(st.integers(0, 3)) << 30
        if draw(st.booleans()):
            k[fk.IP_PROTO] = P | draw(st.sampled_from([6, 17]))
            if k[fk.IP_PROTO] == P | 6:
                k[fk.TCP_FLAGS] = P | draw(st.sampled_from([0x002, 0x012, 0x010, 0x011, 0x004, 0x014, 0xFFF]))
    else:
        k[fk.ETH_TYPE] = P | 0x0806
    return k


def _same(cls_table: Classifier, ref: FlowTable, probe_keys, probes) -> None:
    assert len(cls_table) == len(ref)
    assert list(cls_table) == list(ref)
    for k in probe_keys:
        got = cls_table.lookup(k)
        assert got is ref.lookup(k)
        wc: dict = {}
        assert cls_table.lookup_wc(k, wc) is got
        # Any key that agrees on the examined bits gets the same answer.
        rnd = random.Random(sum(k) & 0xFFFF)
        for _ in range(4):
            other = list(k)
            for c in range(fk.N_FIELDS):
                if rnd.random() < 0.5:
                    flip = rnd.getrandbits(fk.WIDTHS[c]) | (P if rnd.random() < 0.2 else 0)
                    other[c] = (other[c] ^ (flip & ~wc.get(c, 0))) & (P | FULL[c])
            assert cls_table.lookup(other) is ref.lookup(other) is got
    for compiled, priority in probes:
        assert cls_table.covered(compiled) == ref.covered(compiled)
        assert cls_table.overlapping(priority, compiled) is ref.overlapping(priority, compiled)
        assert cls_table.find_strict(priority, compiled) is ref.find_strict(priority, compiled)


@SETTINGS
@given(st.lists(st.tuples(matches(), st.integers(0, 4)), max_size=30), st.lists(keys(), min_size=1, max_size=8),
       st.lists(st.tuples(matches(), st.integers(0, 4)), max_size=6), st.data())
def test_classifier_answers_as_the_reference(specs, probe_keys, probe_specs, data):
    cls_table, ref = Classifier(0), FlowTable(0)
    live: list[FlowEntry] = []
    for match, prio in specs:
        e = entry(match, prio)
        old = ref.find_strict(prio, e.compiled)
        assert cls_table.find_strict(prio, e.compiled) is old
        how = data.draw(st.sampled_from(["insert", "replace", "skip"]))
        if how == "replace":                        # in old's place, if there is one
            assert cls_table.replace(e) is old and ref.replace(e) is old
            if old is not None:
                live.remove(old)
            live.append(e)
            continue
        if old is not None and how == "insert":
            cls_table.remove(old)
            ref.remove(old)
            live.remove(old)
        elif old is not None:
            continue
        cls_table.insert(e)
        ref.insert(e)
        live.append(e)
    probes = [(compile_match(ofp.Match(m)), p) for m, p in probe_specs]
    probes += [(e.compiled, e.priority) for e in live[:5]]
    _same(cls_table, ref, probe_keys, probes)
    for victim in data.draw(st.lists(st.sampled_from(live), unique=True)) if live else []:
        cls_table.remove(victim)
        ref.remove(victim)
    _same(cls_table, ref, probe_keys, probes)


def test_thousands_of_rules_of_many_shapes():
    rnd = random.Random(5)
    cls_table, ref = Classifier(0), FlowTable(0)
    names = sorted(FIELDS)
    entries = []
    for i in range(3000):
        m = {}
        for name in rnd.sample(names, rnd.randint(1, 4)):
            if name in ("ipv4_dst", "ipv4_src"):
                n = rnd.choice([32, 24, 16, 8])
                m[name] = (rnd.getrandbits(32) & ((1 << 32) - (1 << (32 - n))), (1 << 32) - (1 << (32 - n)))
                m["eth_type"] = 0x0800
            elif name == "ip_proto":
                m[name], m["eth_type"] = rnd.choice([6, 17]), 0x0800
            elif name == "metadata":
                m[name] = (rnd.getrandbits(8) & 0xF0, 0xF0) if rnd.random() < 0.5 else rnd.getrandbits(8)
            elif name == "vlan_vid":
                m[name] = 0x1000 | rnd.randrange(16)
            elif name == "eth_type":
                m[name] = 0x0800
            elif name == "tcp_flags":
                mask = rnd.choice([0x001, 0x004, 0x005, 0x012, 0xFFF])
                m[name] = (rnd.getrandbits(12) & mask, mask)
            else:
                m[name] = rnd.randrange(8)
        if "tcp_flags" in m:
            m["eth_type"], m["ip_proto"] = 0x0800, 6
        e = entry(m, rnd.randrange(50))
        if ref.find_strict(e.priority, e.compiled) is None:
            cls_table.insert(e)
            ref.insert(e)
            entries.append(e)
    assert cls_table.n_subtables > 20
    for _ in range(2000):
        k = key(in_port=rnd.randrange(8), metadata=rnd.getrandbits(8), eth_dst=rnd.randrange(8),
                tunnel_id=rnd.randrange(8), vlan_vid=0x1000 | rnd.randrange(16), eth_type=0x0800,
                ipv4_dst=rnd.getrandbits(32), ipv4_src=rnd.getrandbits(32), ip_proto=rnd.choice([6, 17]))
        if k[fk.IP_PROTO] == P | 6:
            k[fk.TCP_FLAGS] = P | rnd.getrandbits(12)
        assert cls_table.lookup(k) is ref.lookup(k)
    for e in entries[::2]:
        cls_table.remove(e)
        ref.remove(e)
    assert list(cls_table) == list(ref)
    for e in entries[1:40:2]:
        assert cls_table.covered(e.compiled) == ref.covered(e.compiled)
        assert cls_table.overlapping(e.priority, e.compiled) is ref.overlapping(e.priority, e.compiled)


def test_datapath_uses_the_classifier_by_default():
    rig = Rig()
    assert all(type(t) is Classifier for t in rig.dp.tables)
    rig.flow({"in_port": 1}, [ofp.Output(2)])
    rig.flow({"eth_type": 0x0800, "ipv4_dst": ("10.0.0.0", "255.255.255.0")}, [ofp.Output(3)], priority=40000,
             flags=ofp.OFPFF.CHECK_OVERLAP)
    rig.send(1, udp())
    assert rig.out(3) == [udp()]
    # CHECK_OVERLAP through the classifier
    with pytest.raises(SwitchError) as refused:
        rig.flow({"eth_type": 0x0800, "ipv4_dst": "10.0.0.9"}, [ofp.Output(2)], priority=40000,
                 flags=ofp.OFPFF.CHECK_OVERLAP)
    assert (refused.value.type, refused.value.code) == (ofp.OFPET.FLOW_MOD_FAILED, ofp.OFPFMFC.OVERLAP)
    rig.flow({"eth_type": 0x0800}, command=ofp.OFPFC.DELETE)       # non-strict delete: covered()
    assert [e.priority for e in rig.dp.flows()] == [0x8000]


# --- tcp_flags (Open vSwitch's ONF experimenter field) ----------------------------------------------------

TCP4, TCP6 = {"eth_type": 0x0800, "ip_proto": 6}, {"eth_type": 0x86DD, "ip_proto": 6}
#: (match, priority, out port): what the firewall needs (a connection's FIN and RST), a SYN that is
#: not a SYN-ACK, an exact set of flags, IPv6; everything else TCP to port 6
TCP_FLAG_FLOWS = [
    ({**TCP4, "tcp_flags": (0x002, 0x012)}, 40, 2),          # +syn-ack
    ({**TCP4, "tcp_flags": (0x004, 0x004)}, 35, 4),          # +rst (above +fin: a FIN+RST is a reset)
    ({**TCP4, "tcp_flags": (0x001, 0x001)}, 30, 3),          # +fin
    ({**TCP4, "tcp_flags": 0x018}, 20, 5),                   # psh|ack, exactly
    ({**TCP6, "tcp_flags": (0x005, 0x005)}, 30, 3),          # +fin+rst
    ({**TCP6, "tcp_flags": (0x000, 0x010)}, 20, 4),          # -ack
    (TCP4, 1, 6), (TCP6, 1, 6),
]
#: scapy flags -> the port the frame leaves by (IPv4, IPv6)
TCP_FLAG_FRAMES = {"S": (2, 4), "SA": (6, 6), "SEC": (2, 4), "A": (6, 6), "PA": (5, 6), "FA": (3, 6),
                   "FPA": (3, 6), "R": (4, 4), "RA": (4, 6), "FRA": (4, 3), "F": (3, 4), "FR": (4, 3), "": (6, 4),
                   "SN": (2, 4), "PAN": (6, 6)}


@pytest.mark.parametrize("kind", ["classifier+fastpath", "classifier", "flowtable"])
def test_tcp_flags_matches_syn_fin_and_rst_with_masks(kind):
    """Segments built with scapy against masked and exact tcp_flags flows:
    the tuple space classifier with and without the cache, and the
    reference FlowTable, each frame sent twice (the second from the caches)."""
    opts = {"classifier+fastpath": {}, "classifier": {"fastpath": False},
            "flowtable": {"table_class": FlowTable, "fastpath": False}}[kind]
    rig = Rig(n_ports=6, **opts)
    for match, priority, port in TCP_FLAG_FLOWS:
        rig.flow(match, [ofp.Output(port)], priority=priority)
    for flags, (port4, port6) in TCP_FLAG_FRAMES.items():
        for l3, port in ((IP(src="10.0.0.1", dst="10.0.0.2"), port4), (IPv6(src="fe80::1", dst="fe80::2"), port6)):
            frame = raw(E() / l3 / TCP(sport=40000, dport=80, flags=flags) / b"data")
            rig.send(1, frame)
            rig.send(1, frame)
            assert rig.outputs() == {port: [frame, frame]}, (flags, type(l3).__name__)
    if kind == "classifier+fastpath":
        assert rig.dp.fastpath.stats()["emc_hits"] == len(TCP_FLAG_FRAMES)          # the IPv4 repeats


def test_tcp_flags_refused_as_open_vswitch_refuses_them():
    """The errors Open vSwitch 3.1 answers for the same flow-mods
    (tests/integration/test_tcp_flags_ovs.py asks it): a prerequisite
    missing, a value over 12 bits (masked or not), value bits outside the
    mask. A mask over 12 bits is accepted, its upper bits ignored."""
    rig = Rig()
    BAD_MATCH = ofp.OFPET.BAD_MATCH
    for match, code in [({"eth_type": 0x0800, "tcp_flags": 1}, ofp.OFPBMC.BAD_PREREQ),
                        ({"eth_type": 0x0800, "ip_proto": 17, "tcp_flags": 1}, ofp.OFPBMC.BAD_PREREQ),
                        ({"tcp_flags": 1}, ofp.OFPBMC.BAD_PREREQ),
                        ({**TCP4, "tcp_flags": 0x1000}, ofp.OFPBMC.BAD_VALUE),
                        ({**TCP4, "tcp_flags": (0x1000, 0x1000)}, ofp.OFPBMC.BAD_VALUE),
                        ({**TCP4, "tcp_flags": (0x005, 0x003)}, ofp.OFPBMC.BAD_WILDCARDS)]:
        assert error_of(rig.flow, match, []) == (BAD_MATCH, code), match
        data = ofp.FlowMod(match=ofp.Match(match)).pack()
        assert not rig.dp.flow_mod_raw(data)                # the direct path leaves it to the one that names it
    rig.flow({**TCP4, "tcp_flags": (0x001, 0xFFFF)}, [])
    [e] = rig.dp.flows()
    assert e.compiled == compile_match(ofp.Match({**TCP4, "tcp_flags": 0x001}))      # exact
    # set-field: read-only (Open vSwitch answers BAD_SET_ARGUMENT; the specification names BAD_SET_TYPE
    # for a field the switch cannot set, as kumoflow answers for in_port and the like)
    assert error_of(rig.flow, TCP4, [ofp.SetField("tcp_flags", 1)]) == (ofp.OFPET.BAD_ACTION,
                                                                        ofp.OFPBAC.BAD_SET_TYPE)


def test_tcp_flags_on_the_direct_flow_mod_path():
    """compile_raw (the FLOW_MOD fast path) compiles tcp_flags as
    compile_match does, with its layout plans and field by field, and
    declines an OXM with the same header of another experimenter (which
    the reference path refuses: BAD_FIELD)."""
    for match in [{**TCP4, "tcp_flags": 0x011}, {**TCP4, "tcp_flags": (0x001, 0x001)},
                  {"in_port": 3, **TCP6, "tcp_dst": 443, "tcp_flags": (0x004, 0x006)},
                  {**TCP4, "tcp_flags": (0, 0)}, {**TCP4, "tcp_flags": (0x002, 0xFFFF)}]:
        data = ofp.Match(match).pack()
        fields = compile_match(ofp.Match(match)).fields
        assert compile_raw(data, 0, len(data)) == (fields, len(data)), match
        assert compile_raw(data, 0, len(data)) == (fields, len(data)), match     # the plan, made
        assert _compile_raw_generic(data, 4, (data[2] << 8) + data[3]) == fields, match
    # the header word of tcp_flags with Nicira's experimenter id: an opaque OXM
    other = ofp.Match({**TCP4, (0xFFFF, 42, 0x2320): bytes.fromhex("ffff5406" "00002320" "0001")})
    data = other.pack()
    assert compile_raw(data, 0, len(data)) is None
    assert _compile_raw_generic(data, 4, (data[2] << 8) + data[3]) is None
    assert error_of(Rig().flow, other, []) == (ofp.OFPET.BAD_MATCH, ofp.OFPBMC.BAD_FIELD)


def test_table_features_list_tcp_flags_as_open_vswitch_does():
    """Maskable in OFPTFPT_MATCH, in OFPTFPT_WILDCARDS, never settable; as
    an experimenter OXM id: header and experimenter id (what Open vSwitch
    3.1 lists: 0xffff5508 and 0xffff5406, with 0x4f4e4600)."""
    from kumoflow.ofp.table_features import ExperimenterOxmId
    replies = Rig().handle(ofp.TableFeaturesRequest())
    props = {p.type: p for p in replies[0].body[0].properties}
    onf = 0x4F4E4600
    assert ExperimenterOxmId(0xFFFF5508, onf) in props[ofp.OFPTFPT.MATCH].oxm_ids
    assert ExperimenterOxmId(0xFFFF5406, onf) in props[ofp.OFPTFPT.WILDCARDS].oxm_ids
    for t in (ofp.OFPTFPT.WRITE_SETFIELD, ofp.OFPTFPT.APPLY_SETFIELD):
        assert not [i for i in props[t].oxm_ids if type(i) is ExperimenterOxmId]
    assert [ofp.parse(r.pack()) for r in replies] == replies


# --- prefix tracking -----------------------------------------------------------------------------------

def route(dst: str, plen: int, priority: int | None = None, vrf: int = 1) -> FlowEntry:
    """A route table's flow as the router app makes it: VRF in metadata, IPv4 destination prefix."""
    mask = str(ipaddress.IPv4Address((1 << 32) - (1 << (32 - plen))))
    return entry({"metadata": vrf, "eth_type": 0x0800, "ipv4_dst": (dst, mask)},
                 100 + plen if priority is None else priority)


def dst_bits(t: Classifier, dst: str, vrf: int = 1) -> tuple:
    """(the entry a packet to dst hits, the bits of ipv4_dst its answer depends on, the fields it depends on)."""
    wc: dict = {}
    e = t.lookup_wc(key(metadata=vrf, eth_type=0x0800, ipv4_dst=int(ipaddress.IPv4Address(dst))), wc)
    inv = ~wc.get(fk.IPV4_DST, 0) & 0xFFFFFFFF
    assert inv & (inv + 1) == 0                             # a prefix
    return e, 32 - inv.bit_length(), set(wc)


def test_a_routed_destination_depends_on_its_route_not_on_the_router_s_own_addresses():
    """The router app's route table: its own /32s above every route, ten /8s, a
    connected /24, a default: a destination under a /8 depends on 8 bits of its
    address, not 32 (which would make a megaflow per destination)."""
    t = Classifier(24)
    own = [route("10.1.1.1", 32, 1000), route("10.1.2.1", 32, 1000)]
    eights = [route(f"{i}.0.0.0", 8) for i in range(20, 30)]
    connected = route("10.1.2.0", 24)
    default = entry({"metadata": 1}, 100)                     # no route: to the controller
    for e in own + eights + [connected, default]:
        t.insert(e)
    assert dst_bits(t, "20.0.0.1")[:2] == (eights[0], 8)
    assert dst_bits(t, "29.200.3.4")[:2] == (eights[9], 8)
    assert dst_bits(t, "10.1.2.10")[:2] == (connected, 32)      # 10.1.2.1 is ruled out by all 32 bits
    assert dst_bits(t, "10.1.1.1")[:2] == (own[0], 32)
    e, bits, fields = dst_bits(t, "11.0.0.1")
    assert (e, bits) == (default, 8) and fk.ETH_TYPE not in fields     # the address's presence says IPv4
    # A route added or removed after the levels are made: they follow.
    longer = route("20.5.0.0", 16)
    t.insert(longer)
    assert dst_bits(t, "20.0.0.1")[:2] == (eights[0], 16)
    assert dst_bits(t, "20.5.0.1")[:2] == (longer, 16)
    t.remove(longer)
    assert dst_bits(t, "20.0.0.1")[:2] == (eights[0], 8)
    t.remove(own[0])
    t.remove(own[1])
    t.remove(connected)
    assert dst_bits(t, "10.1.2.10")[:2] == (default, 4)     # 10 = 0000 1010 and 20-29 = 0001 0100-0001 1101


def test_many_routes_cost_about_their_length():
    """100,000-route tables: a destination depends on about its route's length, not on
    the longer prefixes around it (which would add bits) or the whole address."""
    rnd = random.Random(7)
    t = Classifier(24)
    t.insert(route("10.1.1.1", 32, 1000))
    base = 20 << 24
    routes = []
    at = base
    for i in range(3000):
        plen = rnd.choice([24, 24, 24, 23, 22, 21, 20])
        at = (at + (1 << (32 - plen)) - 1) & ~((1 << (32 - plen)) - 1)      # aligned, disjoint
        routes.append((at, plen))
        t.insert(route(str(ipaddress.IPv4Address(at)), plen))
        at += 1 << (32 - plen)
    ref = FlowTable(24)
    for e in t:
        ref.insert(e)
    for at, plen in rnd.sample(routes, 300):
        dst = str(ipaddress.IPv4Address(at + rnd.randrange(1 << (32 - plen))))
        e, bits, _ = dst_bits(t, dst)
        assert e.priority == 100 + plen
        assert plen <= bits <= plen + 4 if plen < 24 else bits == 24


@st.composite
def prefix_rules(draw):
    """Rules on IPv4 or IPv6 addresses (source or destination) of a few lengths, from a
    small space so that prefixes nest and neighbour one another; sometimes another field."""
    field = draw(st.sampled_from(["ipv4_dst", "ipv4_src", "ipv6_dst"]))
    width = 128 if field == "ipv6_dst" else 32
    plen = draw(st.sampled_from([1, 4, 7, 8, 9, 16, 23, 24, 31, width]))
    value = draw(st.integers(0, 15)) << (width - 4) | draw(st.integers(0, 3)) << (width - 12) \
        | draw(st.sampled_from([0, 1, 0x80]))
    mask = (1 << width) - (1 << (width - plen))
    m = {"eth_type": 0x86DD if width == 128 else 0x0800, field: (value & mask, mask)}
    if draw(st.integers(0, 3)) == 0:
        m["metadata"] = draw(st.integers(0, 1))
    return m, draw(st.integers(0, 40))


@st.composite
def prefix_keys(draw):
    k = key(metadata=draw(st.integers(0, 1)))
    if draw(st.integers(0, 5)):
        v6 = draw(st.booleans())
        width = 128 if v6 else 32
        k[fk.ETH_TYPE] = P | (0x86DD if v6 else 0x0800)
        for f in ([fk.IPV6_DST, fk.IPV6_SRC] if v6 else [fk.IPV4_DST, fk.IPV4_SRC]):
            k[f] = P | (draw(st.integers(0, 15)) << (width - 4) | draw(st.integers(0, 3)) << (width - 12)
                        | draw(st.integers(0, (1 << (width - 12)) - 1)))
    else:
        k[fk.ETH_TYPE] = P | 0x0806
    return k


@SETTINGS
@given(st.lists(prefix_rules(), min_size=1, max_size=25), st.lists(prefix_keys(), min_size=1, max_size=6),
       st.data())
def test_prefix_tracking_records_enough_bits_as_rules_come_and_go(specs, probe_keys, data):
    """Rules on address prefixes added and removed between lookups (the levels made at the
    first miss, then kept up): every answer is the reference's, and any key that agrees with
    a probed one on the bits lookup_wc recorded gets the same answer."""
    cls_table, ref = Classifier(0), FlowTable(0)
    live: list[FlowEntry] = []
    for match, prio in specs:
        e = entry(match, prio)
        if ref.find_strict(prio, e.compiled) is None:
            cls_table.insert(e)
            ref.insert(e)
            live.append(e)
        if data.draw(st.integers(0, 2)) == 0:
            _same(cls_table, ref, probe_keys, [])
        if live and data.draw(st.integers(0, 4)) == 0:
            victim = data.draw(st.sampled_from(live))
            cls_table.remove(victim)
            ref.remove(victim)
            live.remove(victim)
    _same(cls_table, ref, probe_keys, [])
