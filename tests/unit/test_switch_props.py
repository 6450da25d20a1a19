"""Property tests: random flow-mods, group-mods and meter-mods never crash the
datapath (only SwitchError), random frames through random tables never
crash it, set-field keeps checksums right for any values, and a flow built
from a packet's own fields matches that packet."""

from __future__ import annotations

import ipaddress
import os

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.sctp import SCTP

from kumoflow import ofp
from kumoflow.ofp.consts import OFPFC, OFPGC, OFPGT, OFPMC, OFPMF, OFPP
from kumoflow.switch import flowkey as fk
from kumoflow.switch.datapath import SwitchError
from kumoflow.switch.flowmatch import FIELD_NAMES, from_int

from test_switch_actions import recomputed
from test_switch_helpers import MAC1, MAC2, Rig

# KUMOFLOW_SWITCH_EXAMPLES=5000 for a longer hunt.
SETTINGS = settings(max_examples=int(os.environ.get("KUMOFLOW_SWITCH_EXAMPLES", "150")), deadline=None)

u8, u16, u32 = st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
macs = st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":"))
ip4s = st.integers(0, 2**32 - 1).map(lambda i: str(ipaddress.IPv4Address(i)))
ip6s = st.integers(0, 2**128 - 1).map(lambda i: str(ipaddress.IPv6Address(i)))
ports = st.sampled_from([1, 2, 3, 4, 5, OFPP.IN_PORT, OFPP.FLOOD, OFPP.ALL, OFPP.CONTROLLER, OFPP.LOCAL,
                         OFPP.NORMAL])


# --- frames ----------------------------------------------------------------------------------------

@st.composite
def frames(draw):
    l2 = Ether(src=draw(macs), dst=draw(macs))
    if draw(st.booleans()):
        l2 = l2 / Dot1Q(vlan=draw(st.integers(0, 4095)), prio=draw(st.integers(0, 7)))
    kind = draw(st.sampled_from(["udp", "tcp", "icmp", "sctp", "arp", "v6udp", "v6ns", "v6na", "v6frag",
                                 "mpls", "raw"]))
    payload = draw(st.binary(max_size=40))
    ip_kw = dict(src=draw(ip4s), dst=draw(ip4s), ttl=draw(u8), tos=draw(u8))
    if kind == "udp":
        pkt = l2 / IP(**ip_kw) / UDP(sport=draw(u16), dport=draw(u16)) / payload
    elif kind == "tcp":
        pkt = l2 / IP(**ip_kw) / TCP(sport=draw(u16), dport=draw(u16)) / payload
    elif kind == "icmp":
        pkt = l2 / IP(**ip_kw) / ICMP(type=draw(u8), code=draw(u8)) / payload
    elif kind == "sctp":
        pkt = l2 / IP(**ip_kw) / SCTP(sport=draw(u16), dport=draw(u16)) / payload
    elif kind == "arp":
        pkt = l2 / ARP(op=draw(st.integers(1, 2)), hwsrc=draw(macs), psrc=draw(ip4s), pdst=draw(ip4s))
    elif kind == "v6udp":
        pkt = l2 / IPv6(src=draw(ip6s), dst=draw(ip6s), hlim=draw(u8)) / UDP(sport=draw(u16)) / payload
    elif kind == "v6ns":
        pkt = l2 / IPv6() / ICMPv6ND_NS(tgt=draw(ip6s)) / ICMPv6NDOptSrcLLAddr(lladdr=draw(macs))
    elif kind == "v6na":
        pkt = l2 / IPv6() / ICMPv6ND_NA(tgt=draw(ip6s))
    elif kind == "v6frag":
        pkt = l2 / IPv6() / IPv6ExtHdrFragment(offset=draw(st.integers(0, 5)), nh=6) / payload
    elif kind == "mpls":
        label = draw(st.integers(0, 2**20 - 1))
        pkt = Ether(src=MAC1, dst=MAC2, type=0x8847) / MPLS(label=label, s=1, ttl=draw(u8)) / IP() / payload
    else:
        return draw(st.binary(max_size=80))
    data = raw(pkt)
    if draw(st.integers(0, 9)) == 0:
        data = data[:draw(st.integers(0, len(data)))]
    return data


# --- flow-mods ---------------------------------------------------------------------------------------

CONTEXTS = {
    "any": {},
    "ip": {"eth_type": 0x0800},
    "udp": {"eth_type": 0x0800, "ip_proto": 17},
    "tcp": {"eth_type": 0x0800, "ip_proto": 6},
    "icmp": {"eth_type": 0x0800, "ip_proto": 1},
    "arp": {"eth_type": 0x0806},
    "v6": {"eth_type": 0x86DD},
    "nd": {"eth_type": 0x86DD, "ip_proto": 58, "icmpv6_type": 135},
    "mpls": {"eth_type": 0x8847},
    "vlan": {"vlan_vid": (0x1000, 0x1000)},
}
EXTRA = {
    "any": ["in_port", "eth_src", "eth_dst", "vlan_vid", "metadata", "tunnel_id"],
    "ip": ["ipv4_src", "ipv4_dst", "ip_dscp", "ip_ecn", "ip_proto"],
    "udp": ["udp_src", "udp_dst", "ipv4_src"],
    "tcp": ["tcp_src", "tcp_dst"],
    "icmp": ["icmpv4_type", "icmpv4_code"],
    "arp": ["arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha"],
    "v6": ["ipv6_src", "ipv6_dst", "ipv6_flabel", "ipv6_exthdr", "ip_dscp"],
    "nd": ["ipv6_nd_target", "ipv6_nd_sll", "icmpv6_code"],
    "mpls": ["mpls_label", "mpls_tc", "mpls_bos"],
    "vlan": ["vlan_pcp", "eth_type"],
}


def field_value(draw, name: str, maskable: bool):
    f = ofp.FIELDS_BY_NAME[name]
    width = fk.WIDTHS[f.code]
    v = draw(st.integers(0, (1 << width) - 1))
    if name == "eth_type":
        v = draw(st.sampled_from([0x0800, 0x86DD, 0x0806, 0x1234]))
    value = from_int(f.code, v)
    if maskable and f.maskable and draw(st.booleans()):
        m = draw(st.integers(0, (1 << width) - 1))
        return (from_int(f.code, v & m), from_int(f.code, m))
    return value


@st.composite
def matches(draw):
    ctx = draw(st.sampled_from(sorted(CONTEXTS)))
    m = dict(CONTEXTS[ctx])
    for name in draw(st.lists(st.sampled_from(EXTRA[ctx] + EXTRA["any"]), max_size=4, unique=True)):
        if name in m:
            continue
        m[name] = field_value(draw, name, True)
    return ofp.Match(m)


SETTABLE = ["eth_src", "eth_dst", "vlan_vid", "vlan_pcp", "ip_dscp", "ip_ecn", "ipv4_src", "ipv4_dst", "tcp_src",
            "tcp_dst", "udp_src", "udp_dst", "sctp_src", "icmpv4_type", "arp_op", "arp_spa", "arp_sha",
            "ipv6_src", "ipv6_dst", "ipv6_flabel", "icmpv6_type", "ipv6_nd_target", "ipv6_nd_sll",
            "mpls_label", "mpls_tc", "mpls_bos", "pbb_isid", "tunnel_id"]


@st.composite
def actions(draw):
    out = []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.integers(0, 11))
        if kind <= 3:
            out.append(ofp.Output(draw(ports), draw(st.sampled_from([0, 64, ofp.OFPCML.NO_BUFFER]))))
        elif kind <= 6:
            name = draw(st.sampled_from(SETTABLE))
            out.append(ofp.SetField(name, field_value(draw, name, False)))
        elif kind == 7:
            out.append(draw(st.sampled_from([ofp.PushVlan(), ofp.PopVlan(), ofp.PushMpls(), ofp.PopMpls(),
                                             ofp.PushPbb(), ofp.PopPbb()])))
        elif kind == 8:
            out.append(draw(st.sampled_from([ofp.DecNwTtl(), ofp.SetNwTtl(3), ofp.DecMplsTtl(),
                                             ofp.SetMplsTtl(2), ofp.CopyTtlIn(), ofp.CopyTtlOut()])))
        elif kind == 9:
            out.append(ofp.Group(draw(st.integers(1, 4))))
        elif kind == 10:
            out.append(ofp.SetQueue(draw(st.integers(0, 2))))
        else:
            out.append(ofp.Output(draw(st.integers(1, 6))))
    return out


@st.composite
def flow_mods(draw):
    table_id = draw(st.integers(0, 3))
    instructions = []
    if draw(st.booleans()):
        instructions.append(ofp.ApplyActions(draw(actions())))
    if draw(st.booleans()):
        instructions.append(ofp.WriteActions(draw(actions())))
    if draw(st.integers(0, 3)) == 0:
        instructions.append(ofp.ClearActions())
    if draw(st.integers(0, 3)) == 0:
        instructions.append(ofp.WriteMetadata(draw(st.integers(0, 2**64 - 1)), draw(st.integers(0, 2**64 - 1))))
    if draw(st.integers(0, 2)) == 0:
        instructions.append(ofp.GotoTable(draw(st.integers(0, 4))))
    if draw(st.integers(0, 4)) == 0:
        instructions.append(ofp.Meter(draw(st.integers(1, 3))))
    return ofp.FlowMod(
        cookie=draw(st.integers(0, 3)), cookie_mask=draw(st.sampled_from([0, 1, 3])), table_id=table_id,
        command=draw(st.sampled_from([OFPFC.ADD] * 4 + [OFPFC.MODIFY, OFPFC.MODIFY_STRICT, OFPFC.DELETE,
                                                        OFPFC.DELETE_STRICT])),
        idle_timeout=draw(st.sampled_from([0, 0, 1, 5])), hard_timeout=draw(st.sampled_from([0, 0, 2, 7])),
        priority=draw(st.sampled_from([0, 1, 100, 0x8000])), out_port=draw(st.sampled_from([OFPP.ANY, 2])),
        flags=draw(st.sampled_from([0, 1, 2, 4, 8, 16, 31])), match=draw(matches()),
        instructions=draw(st.permutations(instructions)))


@st.composite
def other_mods(draw):
    kind = draw(st.integers(0, 2))
    if kind == 0:
        buckets = [ofp.Bucket(draw(actions()), weight=draw(st.integers(0, 3)),
                              watch_port=draw(st.sampled_from([OFPP.ANY, 1, 2, 3])),
                              watch_group=draw(st.sampled_from([ofp.OFPG.ANY, 1, 2])))
                   for _ in range(draw(st.integers(0, 3)))]
        return ofp.GroupMod(draw(st.sampled_from([OFPGC.ADD, OFPGC.ADD, OFPGC.MODIFY, OFPGC.DELETE])),
                            draw(st.sampled_from(list(OFPGT))), draw(st.integers(1, 4)), buckets)
    if kind == 1:
        bands = [draw(st.sampled_from([ofp.MeterBandDrop(draw(st.integers(1, 50)), draw(st.integers(0, 9))),
                                       ofp.MeterBandDscpRemark(draw(st.integers(1, 50)), 0, 1)]))
                 for _ in range(draw(st.integers(0, 2)))]
        return ofp.MeterMod(draw(st.sampled_from([OFPMC.ADD, OFPMC.MODIFY, OFPMC.DELETE])),
                            draw(st.sampled_from([OFPMF.PKTPS, OFPMF.KBPS | OFPMF.BURST, OFPMF.PKTPS | OFPMF.BURST])),
                            draw(st.integers(1, 3)), bands)
    return ofp.PortMod(draw(st.integers(1, 4)), f"02:00:00:00:01:{draw(st.integers(1, 4)):02x}",
                       draw(st.sampled_from([0, 1, 4, 16, 32, 64])), draw(st.sampled_from([0, 1, 4, 16, 32, 64])))


steps = st.lists(st.one_of(
    flow_mods().map(lambda m: ("msg", m)),
    other_mods().map(lambda m: ("msg", m)),
    st.tuples(st.integers(1, 5), frames()).map(lambda t: ("frame", t)),
    st.floats(0, 3).map(lambda dt: ("time", dt)),
), min_size=1, max_size=25)


@SETTINGS
@given(steps)
def test_random_mods_and_frames_never_crash(script):
    rig = Rig(n_tables=4, n_buffers=4)
    rig.port(2).add_queue(1)
    rig.handle(ofp.SetConfig(miss_send_len=64))
    for kind, item in script:
        if kind == "msg":
            try:
                replies = rig.handle(item)
            except SwitchError:
                pass
            else:
                assert replies == []
        elif kind == "frame":
            port, frame = item
            rig.dp.receive(port, frame)
        else:
            rig.clock.advance(item)
            rig.dp.tick()
    for p in rig.dp.ports.values():
        assert all(type(f) is bytes for f in p.sent)
    for e in rig.events:
        assert ofp.parse(e.pack()) == e
    for req in (ofp.FlowStatsRequest(), ofp.AggregateStatsRequest(), ofp.GroupStatsRequest(),
                ofp.GroupDescRequest(), ofp.MeterStatsRequest(), ofp.MeterConfigRequest(), ofp.PortStatsRequest(),
                ofp.TableStatsRequest(), ofp.QueueStatsRequest()):
        for r in rig.handle(req):
            assert ofp.parse(r.pack()) == r


# --- set-field keeps checksums right ------------------------------------------------------------------

def E():
    return Ether(src=MAC1, dst=MAC2)


@st.composite
def l4_frames(draw):
    payload = draw(st.binary(max_size=30))
    ip = IP(src=draw(ip4s), dst=draw(ip4s), tos=draw(u8), ttl=draw(st.integers(2, 255)))
    kind = draw(st.sampled_from(["tcp", "udp", "icmp", "v6tcp", "v6udp"]))
    if kind == "tcp":
        return "tcp", raw(E() / ip / TCP(sport=draw(u16), dport=draw(u16), seq=draw(u32)) / payload)
    if kind == "udp":
        return "udp", raw(E() / ip / UDP(sport=draw(u16), dport=draw(u16)) / payload)
    if kind == "icmp":
        return "icmp", raw(E() / ip / ICMP(type=draw(u8), code=draw(u8)) / payload)
    v6 = IPv6(src=draw(ip6s), dst=draw(ip6s), hlim=draw(st.integers(2, 255)))
    l4 = TCP(sport=draw(u16), dport=draw(u16)) if kind == "v6tcp" else UDP(sport=draw(u16), dport=draw(u16))
    return kind, raw(E() / v6 / l4 / payload)


SETS = {
    "tcp": ["ipv4_src", "ipv4_dst", "tcp_src", "tcp_dst", "ip_dscp", "ip_ecn"],
    "udp": ["ipv4_src", "ipv4_dst", "udp_src", "udp_dst", "ip_dscp"],
    "icmp": ["ipv4_src", "icmpv4_type", "icmpv4_code", "ip_ecn"],
    "v6tcp": ["ipv6_src", "ipv6_dst", "tcp_src", "ipv6_flabel", "ip_dscp"],
    "v6udp": ["ipv6_src", "ipv6_dst", "udp_dst", "ip_ecn"],
}
MATCH_OF = {"tcp": {"eth_type": 0x0800, "ip_proto": 6}, "udp": {"eth_type": 0x0800, "ip_proto": 17},
            "icmp": {"eth_type": 0x0800, "ip_proto": 1}, "v6tcp": {"eth_type": 0x86DD, "ip_proto": 6},
            "v6udp": {"eth_type": 0x86DD, "ip_proto": 17}}


@SETTINGS
@given(st.data())
def test_set_field_checksums_match_scapy(data):
    kind, frame = data.draw(l4_frames())
    names = data.draw(st.lists(st.sampled_from(SETS[kind]), min_size=1, max_size=4, unique=True))
    acts = [ofp.SetField(n, field_value(data.draw, n, False)) for n in names]
    if data.draw(st.booleans()):
        acts.append(ofp.DecNwTtl())
    rig = Rig()
    rig.flow(MATCH_OF[kind], acts + [ofp.Output(2)])
    rig.send(1, frame)
    [result] = rig.out(2)
    assert recomputed(result) == result


# --- a flow made of a packet's own fields matches it --------------------------------------------------

@SETTINGS
@given(frames(), st.data())
def test_exact_flow_from_packet_fields_matches_it(frame, data):
    pkt = fk.Packet(frame, 1)
    present = [c for c in range(fk.N_FIELDS) if pkt.key[c] & fk.PRESENT and c not in (fk.IN_PHY_PORT,)]
    chosen = data.draw(st.lists(st.sampled_from(present), unique=True, max_size=8)) if present else []
    # close the set under prerequisites so the match is valid
    from kumoflow.switch.flowmatch import PREREQS, VLAN_PRESENT
    todo = list(chosen)
    while todo:
        c = todo.pop()
        req = PREREQS.get(c)
        if req and req[0] != VLAN_PRESENT and req[0] not in chosen:
            chosen.append(req[0])
            todo.append(req[0])
        if req and req[0] == VLAN_PRESENT and fk.VLAN_VID not in chosen:
            chosen.append(fk.VLAN_VID)
    match = ofp.Match({FIELD_NAMES[c]: from_int(c, pkt.field(c)) for c in chosen})
    rig = Rig()
    rig.flow(match, [ofp.Output(2)])
    rig.send(1, frame)
    assert len(rig.out(2)) == 1, match
