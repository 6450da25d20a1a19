"""Actions and instructions: order, set-field with checksums (checked with
scapy), push/pop, TTLs, output to every kind of port, action errors."""

from __future__ import annotations

import pytest
from scapy.compat import raw
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr,
                                ICMPv6NDOptSrcLLAddr, IPv6, IPv6ExtHdrHopByHop)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.sctp import SCTP
from scapy.packet import NoPayload

from kumoflow import ofp
from kumoflow.ofp import OFPBAC, OFPET
from kumoflow.ofp.consts import OFPCML, OFPP, OFPPC, OFPR
from kumoflow.switch.errors import SwitchError
from kumoflow.switch.port import OFPPC_NO_FLOOD, MemoryPort

from test_switch_helpers import E, MAC1, MAC2, MAC3, Rig, arp, error_of, icmp, ip_match, tcp, udp, udp_match

SF = ofp.SetField


def out(port):
    return ofp.Output(port)


def recomputed(frame: bytes) -> bytes:
    """The frame with every checksum recomputed by scapy (a zero UDP checksum
    kept; nothing inside an ICMP message, which may quote another packet)."""
    p = Ether(frame)
    layer = p
    while not isinstance(layer, NoPayload):
        for name in ("chksum", "cksum"):
            if name in layer.fields and not (isinstance(layer, UDP) and layer.chksum == 0):
                delattr(layer, name)
        if type(layer).__name__.startswith("ICMP"):
            break
        layer = layer.payload
    return raw(p)


def through(rig: Rig, match: dict, actions: list, frame: bytes, port: int = 2) -> bytes:
    rig.flow(match, actions + [out(port)])
    rig.send(1, frame)
    [result] = rig.out(port)
    return result


# --- order --------------------------------------------------------------------------------------

def test_apply_actions_run_in_order():
    rig = Rig()
    rig.flow(ip_match(), [out(2), SF("eth_dst", MAC3), out(3)])
    frame = udp()
    rig.send(1, frame)
    assert rig.out(2) == [frame]
    assert Ether(rig.out(3)[0]).dst == MAC3


def test_action_set_runs_in_spec_order_not_write_order():
    rig = Rig()
    # Written backwards: output first, then set-field of the VLAN id, push VLAN, dec TTL.
    rig.flow(ip_match(), instructions=[ofp.WriteActions([
        out(2), SF("vlan_vid", 0x1000 | 42), SF("eth_dst", MAC3), ofp.DecNwTtl(), ofp.PushVlan(0x8100)])])
    rig.send(1, udp(ttl=9))
    [frame] = rig.out(2)
    p = Ether(frame)
    assert p.dst == MAC3 and p[Dot1Q].vlan == 42 and p[IP].ttl == 8
    assert recomputed(frame) == frame


def test_action_set_pop_before_push():
    rig = Rig()
    rig.flow({"vlan_vid": 0x1000 | 5}, instructions=[ofp.WriteActions([
        ofp.PushVlan(0x88A8), SF("vlan_vid", 0x1000 | 7), ofp.PopVlan(), out(2)])])
    rig.send(1, udp(vlan=5))
    p = Ether(rig.out(2)[0])
    # pop the old tag, push a new S-tag (no tag left to copy: VID 0), set its VID
    assert p.type == 0x88A8 and p[Dot1AD].vlan == 7 and not p[Dot1AD].payload.haslayer(Dot1Q)


def test_write_clear_and_overwrite_across_tables():
    rig = Rig()
    rig.flow({}, instructions=[ofp.WriteActions([out(2), SF("eth_src", MAC3)]), ofp.GotoTable(1)])
    rig.flow({"in_port": 1}, table_id=1, instructions=[ofp.WriteActions([out(3)])])    # overwrites output
    rig.flow({"in_port": 2}, table_id=1, instructions=[ofp.ClearActions(), ofp.WriteActions([out(4)])])
    rig.send(1, udp())
    assert rig.out(2) == [] and Ether(rig.out(3)[0]).src == MAC3
    rig.send(2, udp())
    assert Ether(rig.out(4)[0]).src == MAC1                   # cleared: no set-field


def test_group_in_action_set_overrides_output():
    rig = Rig()
    rig.handle(ofp.GroupMod(ofp.OFPGC.ADD, ofp.OFPGT.INDIRECT, 1, [ofp.Bucket([out(4)])]))
    rig.flow({}, instructions=[ofp.WriteActions([out(2), ofp.Group(1)])])
    rig.send(1, udp())
    assert rig.outputs().keys() == {4}


def test_no_output_in_action_set_drops():
    rig = Rig()
    rig.flow({}, instructions=[ofp.WriteActions([SF("eth_dst", MAC3)])])
    rig.send(1, udp())
    assert rig.outputs() == {}


# --- set-field and checksums ----------------------------------------------------------------------

V6_UDP = raw(E() / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=1, dport=2) / b"v6 payload")
V6_TCP = raw(E() / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=1, dport=2) / b"v6 tcp")
V6 = {"eth_type": 0x86DD}


@pytest.mark.parametrize("match,sets,frame,check", [
    (ip_match(), [SF("ipv4_src", "192.168.7.9"), SF("ipv4_dst", "172.16.0.1")], udp(),
     lambda p: (p[IP].src, p[IP].dst) == ("192.168.7.9", "172.16.0.1")),
    (ip_match(), [SF("ipv4_src", "192.168.7.9")], tcp(),
     lambda p: p[IP].src == "192.168.7.9"),
    (ip_match(), [SF("ipv4_dst", "8.8.4.4")], icmp(), lambda p: p[IP].dst == "8.8.4.4"),
    (ip_match(), [SF("ip_dscp", 46), SF("ip_ecn", 2)], udp(tos=1),
     lambda p: p[IP].tos == 46 << 2 | 2),
    (ip_match(ip_proto=6), [SF("tcp_src", 4321), SF("tcp_dst", 8080)], tcp(),
     lambda p: (p[TCP].sport, p[TCP].dport) == (4321, 8080)),
    (udp_match(), [SF("udp_src", 53), SF("udp_dst", 5353)], udp(),
     lambda p: (p[UDP].sport, p[UDP].dport) == (53, 5353)),
    (ip_match(ip_proto=1), [SF("icmpv4_type", 0), SF("icmpv4_code", 3)], icmp(),
     lambda p: (p[ICMP].type, p[ICMP].code) == (0, 3)),
    (ip_match(ip_proto=132), [SF("sctp_src", 99), SF("sctp_dst", 100)],
     raw(E() / IP() / SCTP(sport=1, dport=2) / b"sctp data chunk!"),
     lambda p: (p[SCTP].sport, p[SCTP].dport) == (99, 100)),
    (V6, [SF("ipv6_src", "fd00::7"), SF("ipv6_dst", "fd00::8")], V6_UDP,
     lambda p: (p[IPv6].src, p[IPv6].dst) == ("fd00::7", "fd00::8")),
    (V6, [SF("ipv6_dst", "fd00::8")], V6_TCP, lambda p: p[IPv6].dst == "fd00::8"),
    (V6, [SF("ipv6_flabel", 0x12345), SF("ip_dscp", 10), SF("ip_ecn", 1)], V6_UDP,
     lambda p: (p[IPv6].fl, p[IPv6].tc) == (0x12345, 10 << 2 | 1)),
    (dict(V6, ip_proto=58), [SF("ipv6_src", "fd00::9"), SF("icmpv6_type", 129)],
     raw(E() / IPv6() / ICMPv6EchoRequest(id=5) / b"echo"),
     lambda p: p[IPv6].src == "fd00::9" and p.payload.payload.type == 129),
    (dict(V6, ip_proto=58, icmpv6_type=135), [SF("ipv6_nd_target", "fd00::1"), SF("ipv6_nd_sll", MAC3)],
     raw(E() / IPv6() / ICMPv6ND_NS(tgt="fd00::2") / ICMPv6NDOptSrcLLAddr(lladdr=MAC1)),
     lambda p: p[ICMPv6ND_NS].tgt == "fd00::1" and p[ICMPv6NDOptSrcLLAddr].lladdr == MAC3),
    (dict(V6, ip_proto=58, icmpv6_type=136), [SF("ipv6_nd_tll", MAC3)],
     raw(E() / IPv6() / ICMPv6ND_NA(tgt="fd00::2") / ICMPv6NDOptDstLLAddr(lladdr=MAC1)),
     lambda p: p[ICMPv6NDOptDstLLAddr].lladdr == MAC3),
    ({"eth_type": 0x0806}, [SF("arp_op", 2), SF("arp_sha", MAC3), SF("arp_spa", "10.9.9.9"),
                            SF("arp_tha", MAC2), SF("arp_tpa", "10.8.8.8")], arp(),
     lambda p: (p[ARP].op, p[ARP].hwsrc, p[ARP].psrc, p[ARP].hwdst, p[ARP].pdst)
     == (2, MAC3, "10.9.9.9", MAC2, "10.8.8.8")),
    ({}, [SF("eth_src", MAC3), SF("eth_dst", MAC1)], udp(), lambda p: (p.src, p.dst) == (MAC3, MAC1)),
    ({"vlan_vid": (0x1000, 0x1000)}, [SF("vlan_vid", 0x1000 | 300), SF("vlan_pcp", 6)], udp(vlan=5),
     lambda p: (p[Dot1Q].vlan, p[Dot1Q].prio) == (300, 6)),
    ({"eth_type": 0x8847}, [SF("mpls_label", 0xABCDE), SF("mpls_tc", 5), SF("mpls_bos", 0)],
     raw(E() / MPLS(label=1, s=1, ttl=7) / IP()),
     lambda p: (p[MPLS].label, p[MPLS].cos, p[MPLS].s, p[MPLS].ttl) == (0xABCDE, 5, 0, 7)),
])
def test_set_field_with_checksums(match, sets, frame, check):
    result = through(Rig(), match, sets, frame)
    p = Ether(result)
    assert check(p)
    assert recomputed(result) == result, "checksums must match scapy's"
    assert len(result) == len(frame)


def test_set_field_on_a_first_fragment_keeps_the_transport_checksum_right():
    frame = udp(flags="MF", payload=b"q" * 40)
    result = through(Rig(), ip_match(), [SF("ipv4_src", "1.1.1.1")], frame)
    p = Ether(result)
    # the UDP checksum covers the whole datagram: recompute over the original
    # datagram with the new pseudo-header, which is what the full packet would have.
    whole = Ether(udp(ip_src="1.1.1.1", payload=b"q" * 40))
    assert p[UDP].chksum == whole[UDP].chksum
    assert p[IP].chksum == Ether(recomputed(result))[IP].chksum


def test_set_eth_type_and_ip_proto_reparse_the_packet():
    rig = Rig()
    # eth_type rewritten: the next table sees an MPLS packet
    rig.flow({"in_port": 1}, instructions=[ofp.ApplyActions([SF("eth_type", 0x8847)]), ofp.GotoTable(1)])
    rig.flow({"eth_type": 0x8847}, [out(2)], table_id=1)
    frame = udp()
    rig.send(1, frame)
    [r] = rig.out(2)
    assert r[12:14] == b"\x88\x47" and r[14:] == frame[14:]
    # ip_proto rewritten (IPv4 header checksum kept right; IPv6 final next header)
    rig.flow({"in_port": 3, "eth_type": 0x0800, "ip_proto": 6}, [SF("ip_proto", 17), out(4)])
    rig.send(3, tcp())
    [r] = rig.out(4)
    assert Ether(r)[IP].proto == 17 and Ether(r)[IP].chksum == Ether(recomputed(r))[IP].chksum
    rig.flow({"in_port": 2, "eth_type": 0x86DD, "ip_proto": 6}, [SF("ip_proto", 17), out(4)])
    rig.send(2, raw(E() / IPv6() / IPv6ExtHdrHopByHop() / TCP()))
    [r] = rig.out(4)
    assert Ether(r)[IPv6ExtHdrHopByHop].nh == 17 and Ether(r)[IPv6].nh == 0


def test_zero_udp_checksum_stays_zero():
    frame = bytearray(udp())
    frame[40:42] = b"\0\0"                          # UDP over IPv4 without a checksum
    result = through(Rig(), udp_match(), [SF("udp_dst", 9), SF("ipv4_dst", "9.9.9.9")], bytes(frame))
    assert Ether(result)[UDP].chksum == 0


def test_set_field_on_a_missing_header_is_a_no_op():
    rig = Rig()
    rig.handle(ofp.PacketOut(in_port=OFPP.CONTROLLER, actions=[SF("ipv4_src", "1.2.3.4"), out(2)],
                             data=arp()))
    assert rig.out(2) == [arp()]


# --- push / pop -------------------------------------------------------------------------------

def test_push_and_pop_vlan():
    rig = Rig()
    rig.flow({"in_port": 1}, [ofp.PushVlan(), SF("vlan_vid", 0x1000 | 10), out(2)])
    rig.flow({"in_port": 2, "vlan_vid": (0x1000, 0x1000)}, [ofp.PopVlan(), out(1)])
    rig.flow({"in_port": 3, "vlan_vid": 0x1000 | 10}, [ofp.PushVlan(0x88A8), out(4)])
    frame = udp()
    rig.send(1, frame)
    [tagged] = rig.out(2)
    p = Ether(tagged)
    assert p.type == 0x8100 and p[Dot1Q].vlan == 10 and p[Dot1Q].type == 0x0800
    assert raw(p[IP]) == raw(Ether(frame)[IP])
    rig.send(2, tagged)
    assert rig.out(1) == [frame]
    # a pushed tag copies VID and PCP of the outer tag
    rig.send(3, raw(E() / Dot1Q(vlan=10, prio=4) / IP()))
    p = Ether(rig.out(4)[0])
    assert p.type == 0x88A8 and (p[Dot1AD].vlan, p[Dot1AD].prio) == (10, 4) and p[Dot1Q].vlan == 10


def test_push_and_pop_mpls():
    rig = Rig()
    rig.flow(ip_match(), [ofp.PushMpls(0x8847), SF("mpls_label", 100), out(2)])
    rig.flow({"eth_type": 0x8847, "mpls_bos": 1}, [ofp.PopMpls(0x0800), out(3)])
    rig.flow({"eth_type": 0x8847, "mpls_bos": 0}, [ofp.PushMpls(0x8847), out(4)])
    frame = udp(ttl=33)
    rig.send(1, frame)
    [labelled] = rig.out(2)
    p = Ether(labelled)
    assert p.type == 0x8847 and (p[MPLS].label, p[MPLS].s, p[MPLS].ttl) == (100, 1, 33)
    assert raw(p[MPLS].payload) == raw(Ether(frame)[IP])
    rig.send(2, labelled)
    assert rig.out(3) == [frame]
    # push onto a label: copies label, TC and TTL; not bottom of stack
    rig.send(1, raw(E() / MPLS(label=5, cos=3, s=0, ttl=20) / MPLS(label=6, s=1) / IP()))
    p = Ether(rig.out(4)[0])
    first, second = p[MPLS], p[MPLS].payload
    assert (first.label, first.cos, first.s, first.ttl) == (5, 3, 0, 20) and second.label == 5


def test_push_mpls_keeps_vlan_tag_outside():
    rig = Rig()
    rig.flow({"vlan_vid": (0x1000, 0x1000)}, [ofp.PushMpls(0x8848), out(2)])
    rig.send(1, udp(vlan=9))
    p = Ether(rig.out(2)[0])
    assert p[Dot1Q].vlan == 9 and p[Dot1Q].type == 0x8848


def test_push_and_pop_pbb():
    rig = Rig()
    rig.flow({"in_port": 1}, [ofp.PushPbb(0x88E7), SF("pbb_isid", 0x123456), SF("eth_dst", MAC3), out(2)])
    rig.flow({"in_port": 2, "eth_type": 0x88E7, "pbb_isid": 0x123456}, [ofp.PopPbb(), out(3)])
    frame = raw(E() / Dot1Q(vlan=3, prio=5) / IP())
    rig.send(1, frame)
    [pbb] = rig.out(2)
    assert pbb[12:14] == b"\x88\xe7"
    itag = int.from_bytes(pbb[14:18], "big")
    assert itag & 0xFFFFFF == 0x123456 and itag >> 29 == 5          # I-PCP from the VLAN PCP
    assert pbb[0:6] == bytes.fromhex(MAC3.replace(":", "")) and pbb[6:12] == frame[6:12]
    assert pbb[18:] == frame                                            # customer frame intact
    rig.send(2, pbb)
    assert rig.out(3) == [frame]


# --- TTL --------------------------------------------------------------------------------------

def test_dec_ttl_and_invalid_ttl():
    rig = Rig()
    rig.flow(ip_match(), [ofp.DecNwTtl(), out(2)], cookie=0x77)
    rig.send(1, udp(ttl=2))
    assert Ether(rig.out(2)[0])[IP].ttl == 1
    # OpenFlow 1.3 has no OFPC_INVALID_TTL_TO_CONTROLLER (1.1 and 1.2 had): an undefined flag
    with pytest.raises(SwitchError) as err:
        rig.handle(ofp.SetConfig(flags=1 << 2, miss_send_len=20))
    assert (err.value.type, err.value.code) == (ofp.OFPET.SWITCH_CONFIG_FAILED, ofp.OFPSCFC.BAD_FLAGS)
    rig.handle(ofp.SetConfig(miss_send_len=20))
    rig.send(1, udp(ttl=1))        # would become 0: dropped and reported (the channel's async config filters)
    [pin] = rig.take_events(ofp.PacketIn)
    assert pin.reason == OFPR.INVALID_TTL and pin.cookie == 0x77 and len(pin.data) == 20
    assert rig.out(2) == []
    v6 = raw(E() / IPv6(hlim=5) / UDP())
    rig.flow({"eth_type": 0x86DD}, [ofp.DecNwTtl(), out(3)])
    rig.send(1, v6)
    assert Ether(rig.out(3)[0])[IPv6].hlim == 4


def test_set_ttls_and_mpls_ttl_and_copies():
    rig = Rig()
    rig.flow(ip_match(), [ofp.SetNwTtl(77), out(2)])
    rig.send(1, udp())
    r = rig.out(2)[0]
    assert Ether(r)[IP].ttl == 77 and recomputed(r) == r
    rig.flow({"eth_type": 0x8847}, [ofp.DecMplsTtl(), ofp.CopyTtlIn(), out(3)])
    rig.send(1, raw(E() / MPLS(label=1, s=1, ttl=10) / IP(ttl=50) / UDP()))
    r = rig.out(3)[0]
    p = Ether(r)
    assert p[MPLS].ttl == 9 and IP(raw(p[MPLS].payload)).ttl == 9
    assert recomputed(r) == r
    rig.flow({"eth_type": 0x8848}, [ofp.CopyTtlOut(), ofp.SetMplsTtl(3), out(4)])
    rig.flow({"eth_type": 0x8848}, [ofp.CopyTtlOut(), out(4)], priority=1 << 15 | 1)
    rig.send(1, raw(E(type=0x8848) / MPLS(label=1, s=0, ttl=10) / MPLS(label=2, s=1, ttl=60) / IP()))
    assert rig.out(4)[0][17] == 60                 # scapy does not decode 0x8848: outer TTL byte
    rig.flow({"eth_type": 0x8847}, [ofp.DecMplsTtl(), out(3)], priority=1 << 15 | 1)
    rig.send(1, raw(E() / MPLS(label=1, s=1, ttl=1) / IP()))
    assert rig.out(3) == []


# --- outputs ----------------------------------------------------------------------------------

def test_output_reserved_ports():
    rig = Rig()
    rig.flow({"in_port": 1}, [out(OFPP.FLOOD)])
    rig.flow({"in_port": 2}, [out(OFPP.ALL)])
    rig.flow({"in_port": 3}, [out(OFPP.IN_PORT)])
    rig.flow({"in_port": 4}, [out(4), out(1)])         # explicit in_port: dropped (needs IN_PORT)
    rig.send(1, udp())
    assert sorted(rig.outputs()) == [2, 3, 4]
    rig.send(2, udp())
    assert sorted(rig.outputs()) == [1, 3, 4]
    rig.send(3, udp())
    assert sorted(rig.outputs()) == [3]
    rig.send(4, udp())
    assert sorted(rig.outputs()) == [1]


def test_port_config_and_state_govern_forwarding():
    rig = Rig()
    rig.flow({"in_port": 1}, [out(OFPP.FLOOD)])
    rig.flow({"in_port": 2}, [out(OFPP.ALL)])
    rig.flow({"in_port": 3}, [out(4)])
    p4 = rig.port(4)
    p4.set_config(OFPPC.NO_FWD)
    rig.send(3, udp())
    assert rig.out(4) == [] and p4.counters.tx_dropped == 1
    p4.set_config(OFPPC_NO_FLOOD)
    rig.send(1, udp())
    assert sorted(rig.outputs()) == [2, 3]             # NO_FLOOD skips FLOOD ...
    rig.send(2, udp())
    assert sorted(rig.outputs()) == [1, 3, 4]          # ... but not ALL
    p4.set_config(0)
    p4.set_link(False)
    rig.send(2, udp())
    assert sorted(rig.outputs()) == [1, 3]
    p4.set_link(True)
    rig.port(3).set_config(OFPPC.NO_RECV)
    rig.send(3, udp())
    assert rig.outputs() == {} and rig.port(3).counters.rx_dropped == 1
    rig.port(3).set_config(OFPPC.PORT_DOWN)
    rig.send(2, udp())
    assert sorted(rig.outputs()) == [1, 4]


def test_local_port_is_optional():
    rig = Rig()
    rig.flow({}, [out(OFPP.LOCAL)])
    rig.send(1, udp())                                  # no LOCAL port: nothing, no failure
    rig.dp.add_port(MemoryPort(OFPP.LOCAL, "br0"))
    rig.send(1, udp())
    assert len(rig.out(OFPP.LOCAL)) == 1
    rig.flow({}, [out(OFPP.FLOOD)], priority=1 << 15 | 1)
    rig.send(1, udp())
    assert OFPP.LOCAL not in rig.outputs()


def test_controller_output_max_len_and_no_packet_in():
    rig = Rig()
    rig.flow({"in_port": 1}, [out(2), ofp.Output(OFPP.CONTROLLER, 30)], cookie=5)
    rig.flow({"in_port": 2}, [ofp.Output(OFPP.CONTROLLER, OFPCML.NO_BUFFER)])
    rig.flow({"in_port": 3}, [ofp.Output(OFPP.CONTROLLER, 0)])
    frame = udp(payload=b"z" * 100)
    rig.send(1, frame)
    [pin] = rig.take_events(ofp.PacketIn)
    assert (pin.reason, pin.cookie, pin.total_len, len(pin.data)) == (OFPR.ACTION, 5, len(frame), 30)
    assert pin.data == frame[:30] and pin.buffer_id != ofp.OFP_NO_BUFFER
    rig.send(2, frame)
    [pin] = rig.take_events(ofp.PacketIn)
    assert pin.buffer_id == ofp.OFP_NO_BUFFER and pin.data == frame
    rig.send(3, frame)
    [pin] = rig.take_events(ofp.PacketIn)
    assert pin.data == b"" and pin.buffer_id != ofp.OFP_NO_BUFFER
    # packet-in reflects modifications made so far
    rig.flow({"in_port": 4}, [SF("eth_dst", MAC3), ofp.Output(OFPP.CONTROLLER, OFPCML.NO_BUFFER)])
    rig.send(4, frame)
    [pin] = rig.take_events(ofp.PacketIn)
    assert Ether(pin.data).dst == MAC3
    rig.port(4).set_config(OFPPC.NO_PACKET_IN)
    rig.send(4, frame)
    assert rig.take_events() == []


def test_set_queue_counts_in_queue_stats():
    rig = Rig()
    rig.port(2).add_queue(1, [ofp.QueuePropMinRate(100)])
    rig.flow({"in_port": 1}, [ofp.SetQueue(1), out(2)])
    rig.flow({"in_port": 3}, [out(2)])
    rig.send(1, udp())
    rig.send(1, udp())
    rig.send(3, udp())
    body = {(q.port_no, q.queue_id): q for q in rig.handle(ofp.QueueStatsRequest(port_no=2))[0].body}
    assert body[(2, 1)].tx_packets == 2 and body[(2, 0)].tx_packets == 1
    assert body[(2, 1)].tx_bytes == 2 * len(udp())


def test_normal_learns_and_floods():
    rig = Rig()
    rig.flow({}, [out(OFPP.NORMAL)])
    rig.send(1, udp(src=MAC1, dst=MAC2))               # unknown destination: flood
    assert sorted(rig.outputs()) == [2, 3, 4]
    rig.send(2, udp(src=MAC2, dst=MAC1))               # MAC1 learnt on port 1
    assert sorted(rig.outputs()) == [1]
    rig.send(1, udp(src=MAC1, dst=MAC2))
    assert sorted(rig.outputs()) == [2]


# --- action errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("match,actions,code", [
    ({}, [out(0)], OFPBAC.BAD_OUT_PORT),
    ({}, [out(OFPP.ANY)], OFPBAC.BAD_OUT_PORT),
    ({}, [out(OFPP.TABLE)], OFPBAC.BAD_OUT_PORT),
    ({}, [out(0xFFFFFF05)], OFPBAC.BAD_OUT_PORT),
    ({}, [ofp.Group(99)], OFPBAC.BAD_OUT_GROUP),
    ({}, [ofp.SetQueue(7)], OFPBAC.BAD_QUEUE),
    ({}, [ofp.PushVlan(0x0800)], OFPBAC.BAD_ARGUMENT),
    ({}, [ofp.PushMpls(0x0800)], OFPBAC.BAD_ARGUMENT),
    ({}, [ofp.PushPbb(0x8100)], OFPBAC.BAD_ARGUMENT),
    ({}, [SF("in_port", 3)], OFPBAC.BAD_SET_TYPE),
    ({}, [SF("metadata", 3)], OFPBAC.BAD_SET_TYPE),
    ({"eth_type": 0x86DD}, [SF("ipv6_exthdr", 1)], OFPBAC.BAD_SET_TYPE),
    ({}, [SF("ip_proto", 17)], OFPBAC.MATCH_INCONSISTENT),
    (ip_match(ip_proto=6), [SF("ip_proto", 17), SF("tcp_src", 1)], OFPBAC.MATCH_INCONSISTENT),
    (ip_match(), [SF("eth_type", 0x86DD), SF("ipv4_src", "1.2.3.4")], OFPBAC.MATCH_INCONSISTENT),
    ({}, [SF((0x0001, 1), b"\x00\x01\x02\x04\x00\x00\x00\x01")], OFPBAC.BAD_SET_TYPE),
    ({"vlan_vid": (0x1000, 0x1000)}, [SF("vlan_pcp", 8)], OFPBAC.BAD_SET_ARGUMENT),
    # 7.2.5: "the OFPVID_PRESENT bit must be set in OXM_OF_VLAN_VID set-field actions"
    ({"vlan_vid": (0x1000, 0x1000)}, [SF("vlan_vid", 301)], OFPBAC.BAD_SET_ARGUMENT),
    ({}, [SF("eth_dst", (MAC1, "ff:ff:ff:00:00:00"))], OFPBAC.BAD_SET_ARGUMENT),
    (ip_match(), [SF("tcp_src", 80)], OFPBAC.MATCH_INCONSISTENT),
    ({}, [SF("ipv4_src", "1.2.3.4")], OFPBAC.MATCH_INCONSISTENT),
    ({}, [SF("vlan_pcp", 1)], OFPBAC.MATCH_INCONSISTENT),
    ({}, [ofp.PopVlan()], OFPBAC.MATCH_INCONSISTENT),
    ({"vlan_vid": 0}, [ofp.PopVlan()], OFPBAC.MATCH_INCONSISTENT),
    ({"vlan_vid": (0x1000, 0x1000)}, [ofp.PopVlan(), ofp.PopVlan()], OFPBAC.MATCH_INCONSISTENT),
    (ip_match(), [ofp.PopMpls(0x800)], OFPBAC.MATCH_INCONSISTENT),
    ({}, [ofp.DecNwTtl()], OFPBAC.MATCH_INCONSISTENT),
    ({}, [ofp.SetMplsTtl(4)], OFPBAC.MATCH_INCONSISTENT),
    (ip_match(), [ofp.PushMpls(0x8847), SF("ipv4_src", "1.2.3.4")], OFPBAC.MATCH_INCONSISTENT),
    ({}, [ofp.ExperimenterAction(0x2320, b"\0" * 8)], OFPBAC.BAD_EXPERIMENTER),
])
def test_bad_actions(match, actions, code):
    rig = Rig()
    assert error_of(rig.flow, match, actions) == (OFPET.BAD_ACTION, code)
    assert error_of(rig.flow, match, instructions=[ofp.WriteActions(actions)]) == (OFPET.BAD_ACTION, code)
    assert rig.dp.flows() == []


def test_consistent_action_sequences_are_accepted():
    rig = Rig()
    rig.flow({}, [ofp.PushVlan(), SF("vlan_pcp", 3), out(2)])          # push makes the tag
    rig.flow(ip_match(ip_proto=6), [SF("tcp_src", 1), out(2)])
    rig.flow({"eth_type": 0x8847}, [ofp.PopMpls(0x0800), SF("ipv4_dst", "1.1.1.1"), out(2)])
    rig.flow({"vlan_vid": 0x1005}, [ofp.PopVlan(), out(2)])
    rig.flow({}, [SF("vlan_vid", 0x1000 | 5), SF("tunnel_id", 9), out(2)], priority=1)   # no prerequisites
    rig.flow(ip_match(), [ofp.DecNwTtl(), out(2)])
    assert len(rig.dp.flows()) == 6


def test_packet_in_of_an_offloaded_64k_frame_fits_a_message():
    rig = Rig()
    rig.flow({}, [ofp.Output(OFPP.CONTROLLER, OFPCML.NO_BUFFER)])
    frame = udp() + b"x" * 70000
    rig.dp.receive(1, frame, tunnel_id=(1 << 64) - 1, in_phy_port=9)
    [pin] = rig.take_events(ofp.PacketIn)
    data = pin.pack()
    assert len(data) <= 0xFFFF and pin.total_len == 0xFFFF
    assert pin.match == ofp.Match(in_port=1, in_phy_port=9, tunnel_id=(1 << 64) - 1)
    assert ofp.parse(data).data == frame[:len(pin.data)]
