"""Flow tables: matching, priorities, flow-mod commands, timeouts, counters, errors."""

from __future__ import annotations

import pytest
from scapy.compat import raw
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Dot1Q

from kumoflow import ofp
from kumoflow.ofp import OFPBIC, OFPBMC, OFPBRC, OFPET, OFPFMFC, OFPMMFC
from kumoflow.ofp.consts import OFPFC, OFPFF, OFPP, OFPR, OFPRR, OFPTT

from test_switch_helpers import E, MAC1, MAC2, Rig, arp, error_of, ip_match, tcp, udp, udp_match

UINT64_MAX = (1 << 64) - 1


def out(port):
    return [ofp.Output(port)]


@pytest.fixture
def rig():
    return Rig()


# --- matching and priorities ---------------------------------------------------------

def test_highest_priority_wins_and_miss_drops(rig):
    rig.flow(ip_match(), out(2), priority=10)
    rig.flow(udp_match(udp_dst=2000), out(3), priority=20)
    rig.send(1, udp(dport=2000))
    rig.send(1, udp(dport=2001))
    assert len(rig.out(3)) == 1
    assert len(rig.out(2)) == 1
    rig.send(1, arp())                        # nothing matches, no table-miss entry: dropped
    assert rig.outputs() == {}
    assert not rig.events


def test_table_miss_entry_sends_packet_in_no_match(rig):
    rig.flow({}, [ofp.Output(OFPP.CONTROLLER, ofp.OFPCML.NO_BUFFER)], priority=0, cookie=0xC0)
    rig.flow(ip_match(), [ofp.Output(OFPP.CONTROLLER, ofp.OFPCML.NO_BUFFER)], priority=5, cookie=0xC1)
    frame = arp()
    rig.send(3, frame)
    [pin] = rig.take_events(ofp.PacketIn)
    assert pin.reason == OFPR.NO_MATCH
    assert pin.cookie == 0xC0 and pin.table_id == 0
    assert pin.match == ofp.Match(in_port=3)
    assert pin.data == frame and pin.total_len == len(frame) and pin.buffer_id == ofp.OFP_NO_BUFFER
    rig.send(3, udp())
    [pin] = rig.take_events(ofp.PacketIn)
    assert pin.reason == OFPR.ACTION and pin.cookie == 0xC1


@pytest.mark.parametrize("match,hit,miss", [
    (ip_match(ipv4_src=("10.1.0.0", "255.255.0.0")), udp(ip_src="10.1.200.3"), udp(ip_src="10.2.0.1")),
    ({"eth_dst": ("01:00:00:00:00:00", "01:00:00:00:00:00")}, udp(dst="ff:ff:ff:ff:ff:ff"), udp(dst=MAC2)),
    ({"eth_src": MAC1}, udp(src=MAC1), udp(src=MAC2)),
    ({"vlan_vid": 0}, udp(), udp(vlan=10)),
    ({"vlan_vid": (0x1000, 0x1000)}, udp(vlan=10), udp()),
    ({"vlan_vid": 0x1000 | 10}, udp(vlan=10), udp(vlan=11)),
    ({"vlan_vid": 0x1000 | 10, "vlan_pcp": 3}, raw(E() / Dot1Q(vlan=10, prio=3) / IP()),
     raw(E() / Dot1Q(vlan=10, prio=2) / IP())),
    (udp_match(udp_src=1000), udp(sport=1000), udp(sport=1001)),
    (ip_match(ip_proto=6, tcp_dst=80), tcp(dport=80), udp(dport=80)),
    (ip_match(ip_dscp=46), udp(tos=46 << 2), udp(tos=0)),
    ({"eth_type": 0x0806, "arp_tpa": ("10.0.0.0", "255.255.255.0"), "arp_op": 1}, arp(pdst="10.0.0.9"),
     arp(pdst="10.0.1.9")),
    ({"eth_type": 0x86DD, "ipv6_src": ("2001:db8::", "ffff:ffff::")},
     raw(E() / IPv6(src="2001:db8::5") / UDP()), raw(E() / IPv6(src="2001:db9::5") / UDP())),
    ({"eth_type": 0x86DD, "ip_proto": 58, "icmpv6_type": 135, "ipv6_nd_sll": MAC1},
     raw(E() / IPv6() / ICMPv6ND_NS(tgt="::2") / ICMPv6NDOptSrcLLAddr(lladdr=MAC1)),
     raw(E() / IPv6() / ICMPv6ND_NS(tgt="::2") / ICMPv6NDOptSrcLLAddr(lladdr=MAC2))),
    ({"eth_type": 0x86DD, "ipv6_exthdr": (ofp.OFPIEH.HOP, ofp.OFPIEH.HOP)},
     raw(E() / IPv6() / IPv6ExtHdrHopByHop() / UDP()), raw(E() / IPv6() / UDP())),
    ({"eth_type": 0x8847, "mpls_label": 77, "mpls_bos": 1}, raw(E() / MPLS(label=77, s=1) / IP()),
     raw(E() / MPLS(label=78, s=1) / IP())),
    ({"in_port": 1}, udp(), None),
])
def test_masked_and_exact_matches(rig, match, hit, miss):
    rig.flow(match, out(2))
    rig.send(1, hit)
    assert len(rig.out(2)) == 1
    if miss is not None:
        rig.send(1, miss)
        assert rig.out(2) == []
    rig.send(3, hit)
    assert len(rig.out(2)) == (0 if "in_port" in match else 1)


def test_tunnel_id_and_metadata_match():
    rig = Rig()
    rig.flow({"tunnel_id": (0x500, 0xF00)}, out(2))
    rig.dp.receive(1, udp(), tunnel_id=0x5AB)
    rig.dp.receive(1, udp(), tunnel_id=0x6AB)
    assert len(rig.out(2)) == 1


def test_goto_and_write_metadata_with_mask(rig):
    rig.flow({}, instructions=[ofp.WriteMetadata(0xAB00, 0xFF00), ofp.GotoTable(1)])
    rig.flow({"metadata": (0xAB00, 0xFF00)}, table_id=1, instructions=[ofp.WriteMetadata(0x1, 0xF),
                                                                        ofp.GotoTable(5)])
    rig.flow({"metadata": 0xAB01}, out(4), table_id=5)
    rig.send(1, udp())
    assert len(rig.out(4)) == 1
    stats = {t.table_id: t for t in rig.handle(ofp.TableStatsRequest())[0].body}
    assert (stats[0].lookup_count, stats[0].matched_count, stats[0].active_count) == (1, 1, 1)
    assert (stats[1].lookup_count, stats[5].matched_count) == (1, 1)
    assert stats[2].lookup_count == 0


def test_packet_in_carries_metadata_and_tunnel_id():
    rig = Rig()
    rig.flow({}, instructions=[ofp.WriteMetadata(0x77), ofp.GotoTable(1)])
    rig.flow({}, [ofp.Output(OFPP.CONTROLLER)], table_id=1, cookie=9)
    rig.dp.receive(2, udp(), tunnel_id=42)
    [pin] = rig.take_events(ofp.PacketIn)
    assert pin.match == ofp.Match(in_port=2, metadata=0x77, tunnel_id=42)
    assert pin.table_id == 1 and pin.cookie == 9 and pin.reason == OFPR.ACTION


# --- match validation ------------------------------------------------------------------

@pytest.mark.parametrize("match,code", [
    ({"tcp_src": 80}, OFPBMC.BAD_PREREQ),
    ({"eth_type": 0x0800, "tcp_src": 80}, OFPBMC.BAD_PREREQ),
    ({"eth_type": 0x0800, "ip_proto": 17, "tcp_src": 80}, OFPBMC.BAD_PREREQ),
    ({"ipv4_src": "10.0.0.1"}, OFPBMC.BAD_PREREQ),
    ({"eth_type": 0x86DD, "ipv4_src": "10.0.0.1"}, OFPBMC.BAD_PREREQ),
    ({"vlan_pcp": 3}, OFPBMC.BAD_PREREQ),
    ({"vlan_vid": 0, "vlan_pcp": 3}, OFPBMC.BAD_PREREQ),
    ({"in_phy_port": 1}, OFPBMC.BAD_PREREQ),
    ({"eth_type": 0x86DD, "ip_proto": 58, "icmpv6_type": 136, "ipv6_nd_sll": MAC1}, OFPBMC.BAD_PREREQ),
    ({"mpls_label": 5}, OFPBMC.BAD_PREREQ),
    ({"pbb_isid": 5}, OFPBMC.BAD_PREREQ),
    ({"arp_op": 1}, OFPBMC.BAD_PREREQ),
    ({"eth_type": 0x0800, "ipv4_src": ("10.0.0.1", "255.255.255.0")}, OFPBMC.BAD_WILDCARDS),
    ({"metadata": (0xFF, 0x0F)}, OFPBMC.BAD_WILDCARDS),
    ({"vlan_vid": 0x2000}, OFPBMC.BAD_VALUE),
    ({"vlan_vid": 0x1001, "vlan_pcp": 8}, OFPBMC.BAD_VALUE),
    ({"eth_type": 0x0800, "ip_dscp": 64}, OFPBMC.BAD_VALUE),
    ({"eth_type": 0x8847, "mpls_label": 1 << 20}, OFPBMC.BAD_VALUE),
    ({"eth_type": 0x86DD, "ipv6_flabel": 1 << 20}, OFPBMC.BAD_VALUE),
    ({"in_port": (1, 1)}, OFPBMC.BAD_MASK),
    ({(0x0001, 5): b"\x00\x01\x0a\x04\x00\x00\x00\x01"}, OFPBMC.BAD_FIELD),
])
def test_bad_matches(rig, match, code):
    assert error_of(rig.flow, match, out(2)) == (OFPET.BAD_MATCH, code)
    assert rig.dp.flows() == []


def test_stats_request_match_is_validated_too(rig):
    req = ofp.FlowStatsRequest(match=ofp.Match(tcp_dst=80))
    assert error_of(rig.handle, req) == (OFPET.BAD_MATCH, OFPBMC.BAD_PREREQ)


# --- add: identical, overlap, counters ------------------------------------------------

def test_identical_add_replaces_and_keeps_counters_unless_reset(rig):
    rig.flow(ip_match(), out(2), priority=5, cookie=1)
    rig.send(1, udp())
    rig.clock.advance(10)
    rig.flow(ip_match(), out(3), priority=5, cookie=2)      # same match, same priority
    [e] = rig.dp.flows()
    assert e.cookie == 2 and e.packet_count == 1
    assert e.created == rig.clock()                          # duration restarts
    rig.send(1, udp())
    assert len(rig.out(3)) == 1 and rig.out(2) == [udp()]
    rig.flow(ip_match(), out(3), priority=5, flags=OFPFF.RESET_COUNTS)
    [e] = rig.dp.flows()
    assert e.packet_count == 0 and e.byte_count == 0
    assert rig.take_events(ofp.FlowRemoved) == []            # replacing sends no FLOW_REMOVED


def test_same_match_other_priority_is_another_entry(rig):
    rig.flow(ip_match(), out(2), priority=5)
    rig.flow(ip_match(), out(3), priority=6)
    assert len(rig.dp.flows()) == 2
    rig.send(1, udp())
    assert len(rig.out(3)) == 1 and rig.out(2) == []


def test_check_overlap(rig):
    rig.flow(ip_match(ipv4_src=("10.0.0.0", "255.0.0.0")), out(2), priority=5)
    overlapping = ip_match(ipv4_dst="1.2.3.4")
    assert error_of(rig.flow, overlapping, out(3), priority=5, flags=OFPFF.CHECK_OVERLAP) == \
        (OFPET.FLOW_MOD_FAILED, OFPFMFC.OVERLAP)
    rig.flow(overlapping, out(3), priority=6, flags=OFPFF.CHECK_OVERLAP)          # other priority: fine
    rig.flow(ip_match(ipv4_src="11.0.0.1"), out(3), priority=5, flags=OFPFF.CHECK_OVERLAP)  # disjoint
    rig.flow({"eth_type": 0x0806}, out(3), priority=5, flags=OFPFF.CHECK_OVERLAP)  # other ethertype
    assert error_of(rig.flow, ip_match(ipv4_src=("10.0.0.0", "255.0.0.0")), out(2), priority=5,
                    flags=OFPFF.CHECK_OVERLAP) == (OFPET.FLOW_MOD_FAILED, OFPFMFC.OVERLAP)
    assert len(rig.dp.flows()) == 4


def test_flow_counters_and_no_counts_flags(rig):
    rig.flow(udp_match(udp_dst=1), out(2))
    rig.flow(udp_match(udp_dst=2), out(2), flags=OFPFF.NO_PKT_COUNTS)
    rig.flow(udp_match(udp_dst=3), out(2), flags=OFPFF.NO_BYT_COUNTS)
    for d in (1, 1, 2, 3):
        rig.send(1, udp(dport=d))
    rig.clock.advance(2.5)
    body = {s.match["udp_dst"]: s for s in rig.handle(ofp.FlowStatsRequest())[0].body}
    n = len(udp(dport=1))
    assert (body[1].packet_count, body[1].byte_count) == (2, 2 * n)
    assert (body[1].duration_sec, body[1].duration_nsec) == (2, 500_000_000)
    assert (body[2].packet_count, body[2].byte_count) == (UINT64_MAX, n)
    assert (body[3].packet_count, body[3].byte_count) == (1, UINT64_MAX)
    agg = rig.handle(ofp.AggregateStatsRequest())[0]
    assert (agg.flow_count, agg.packet_count, agg.byte_count) == (3, 3, 3 * n)


# --- modify ----------------------------------------------------------------------------------

def test_modify_non_strict_vs_strict_and_cookies(rig):
    rig.flow(udp_match(udp_dst=1), out(2), priority=10, cookie=0x11, idle_timeout=30)
    rig.flow(udp_match(udp_dst=2), out(2), priority=20, cookie=0x21)
    rig.flow(ip_match(), out(2), priority=5, cookie=0x12)
    rig.send(1, udp(dport=1))
    # non-strict: every entry at least as specific as eth_type=ip, any priority, cookie filtered
    rig.flow(ip_match(), out(3), command=OFPFC.MODIFY, cookie=0x10, cookie_mask=0xF0, priority=999)
    by_cookie = {e.cookie: e for e in rig.dp.flows()}
    assert by_cookie[0x11].program.apply[0][1] == 3
    assert by_cookie[0x12].program.apply[0][1] == 3
    assert by_cookie[0x21].program.apply[0][1] == 2
    # modify keeps cookie, timeouts and counters
    assert by_cookie[0x11].idle_timeout == 30 and by_cookie[0x11].packet_count == 1
    # strict: exact match and priority only
    rig.flow(ip_match(), out(4), command=OFPFC.MODIFY_STRICT, priority=10)
    assert by_cookie[0x12].program.apply[0][1] == 3
    rig.flow(ip_match(), out(4), command=OFPFC.MODIFY_STRICT, priority=5)
    assert by_cookie[0x12].program.apply[0][1] == 4
    # RESET_COUNTS on modify
    rig.flow(udp_match(udp_dst=1), out(4), command=OFPFC.MODIFY_STRICT, priority=10, flags=OFPFF.RESET_COUNTS)
    assert by_cookie[0x11].packet_count == 0
    # no match: nothing is added (OpenFlow 1.3)
    rig.flow(udp_match(udp_dst=9), out(4), command=OFPFC.MODIFY)
    assert len(rig.dp.flows()) == 3


# --- delete ----------------------------------------------------------------------------------

def test_delete_non_strict_strict_cookie_and_flow_removed(rig):
    rig.flow(udp_match(udp_dst=1), out(2), priority=10, cookie=0x1, flags=OFPFF.SEND_FLOW_REM)
    rig.flow(udp_match(udp_dst=2), out(2), priority=10, cookie=0x2, flags=OFPFF.SEND_FLOW_REM)
    rig.flow(ip_match(), out(2), priority=10, cookie=0x3)
    rig.flow({}, out(2), priority=0, cookie=0x4, flags=OFPFF.SEND_FLOW_REM)
    # strict with the wrong priority: nothing
    rig.flow(udp_match(udp_dst=1), command=OFPFC.DELETE_STRICT, priority=11)
    assert len(rig.dp.flows()) == 4
    # cookie mask selects among the non-strict matches
    rig.flow(udp_match(), command=OFPFC.DELETE, cookie=0x2, cookie_mask=0xF)
    [fr] = rig.take_events(ofp.FlowRemoved)
    assert fr.cookie == 2 and fr.reason == OFPRR.DELETE and fr.match == ofp.Match(udp_match(udp_dst=2))
    # strict delete of the table-miss entry only
    rig.flow({}, command=OFPFC.DELETE_STRICT, priority=0)
    assert [e.cookie for e in rig.dp.flows()] == [0x1, 0x3]
    assert [f.cookie for f in rig.take_events(ofp.FlowRemoved)] == [4]
    # delete all in all tables; only entries with SEND_FLOW_REM report
    rig.flow({}, command=OFPFC.DELETE, table_id=OFPTT.ALL)
    assert rig.dp.flows() == []
    assert [f.cookie for f in rig.take_events(ofp.FlowRemoved)] == [1]


def test_delete_out_port_and_out_group_filters(rig):
    rig.handle(ofp.GroupMod(ofp.OFPGC.ADD, ofp.OFPGT.ALL, 7, [ofp.Bucket(out(4))]))
    rig.flow(udp_match(udp_dst=1), out(2))
    rig.flow(udp_match(udp_dst=2), instructions=[ofp.WriteActions(out(3))])
    rig.flow(udp_match(udp_dst=3), [ofp.Group(7)])
    rig.flow({}, command=OFPFC.DELETE, out_port=3)
    assert sorted(e.match["udp_dst"] for e in rig.dp.flows()) == [1, 3]
    rig.flow({}, command=OFPFC.DELETE, out_group=7)
    assert [e.match["udp_dst"] for e in rig.dp.flows()] == [1]
    # stats honour the same filters
    assert len(rig.handle(ofp.FlowStatsRequest(out_port=2))[0].body) == 1
    assert len(rig.handle(ofp.FlowStatsRequest(out_port=3))[0].body) == 0


# --- timeouts ---------------------------------------------------------------------------------

def test_idle_and_hard_timeouts(rig):
    rig.flow(udp_match(udp_dst=1), out(2), idle_timeout=10, flags=OFPFF.SEND_FLOW_REM, cookie=1)
    rig.flow(udp_match(udp_dst=2), out(2), hard_timeout=15, flags=OFPFF.SEND_FLOW_REM, cookie=2)
    rig.flow(udp_match(udp_dst=3), out(2), idle_timeout=5)                # no SEND_FLOW_REM
    for _ in range(4):                       # traffic keeps flow 1 alive; flow 2 dies anyway
        rig.clock.advance(4)
        rig.send(1, udp(dport=1))
        rig.send(1, udp(dport=2))
        rig.dp.tick()
    # t=16: flow 2 expired at its hard timeout, flow 3 idle since 0
    removed = rig.take_events(ofp.FlowRemoved)
    assert [(f.cookie, f.reason) for f in removed] == [(2, OFPRR.HARD_TIMEOUT)]
    assert removed[0].packet_count == 4 and removed[0].duration_sec == 16 and removed[0].hard_timeout == 15
    assert sorted(e.cookie for e in rig.dp.flows()) == [1]
    rig.clock.advance(9.9)
    rig.dp.tick()
    assert rig.take_events(ofp.FlowRemoved) == []
    rig.clock.advance(0.1)
    rig.dp.tick()
    [f] = rig.take_events(ofp.FlowRemoved)
    assert (f.cookie, f.reason, f.idle_timeout, f.packet_count) == (1, OFPRR.IDLE_TIMEOUT, 10, 4)
    assert rig.dp.flows() == []


# --- flow-mod errors ----------------------------------------------------------------------------

def test_flow_mod_errors(rig):
    fm = ofp.FlowMod
    h = rig.handle
    assert error_of(h, fm(command=9)) == (OFPET.FLOW_MOD_FAILED, OFPFMFC.BAD_COMMAND)
    assert error_of(h, fm(table_id=OFPTT.ALL)) == (OFPET.FLOW_MOD_FAILED, OFPFMFC.BAD_TABLE_ID)
    assert error_of(h, fm(table_id=OFPTT.ALL, command=OFPFC.MODIFY)) == (OFPET.FLOW_MOD_FAILED,
                                                                         OFPFMFC.BAD_TABLE_ID)
    assert error_of(h, fm(table_id=64)) == (OFPET.FLOW_MOD_FAILED, OFPFMFC.BAD_TABLE_ID)
    assert error_of(h, fm(flags=1 << 7)) == (OFPET.FLOW_MOD_FAILED, OFPFMFC.BAD_FLAGS)
    assert error_of(h, fm(table_id=3, instructions=[ofp.GotoTable(3)])) == (OFPET.BAD_INSTRUCTION,
                                                                             OFPBIC.BAD_TABLE_ID)
    assert error_of(h, fm(table_id=3, instructions=[ofp.GotoTable(1)])) == (OFPET.BAD_INSTRUCTION,
                                                                             OFPBIC.BAD_TABLE_ID)
    assert error_of(h, fm(instructions=[ofp.GotoTable(64)])) == (OFPET.BAD_INSTRUCTION, OFPBIC.BAD_TABLE_ID)
    assert error_of(h, fm(table_id=63, instructions=[ofp.GotoTable(64)])) == (OFPET.BAD_INSTRUCTION,
                                                                              OFPBIC.BAD_TABLE_ID)
    assert error_of(h, fm(instructions=[ofp.ApplyActions(), ofp.ApplyActions()])) == (OFPET.BAD_INSTRUCTION,
                                                                                       OFPBIC.UNSUP_INST)
    assert error_of(h, fm(instructions=[ofp.ExperimenterInstruction(0x2320)])) == (OFPET.BAD_INSTRUCTION,
                                                                                   OFPBIC.BAD_EXPERIMENTER)
    assert error_of(h, fm(instructions=[ofp.Meter(5)])) == (OFPET.METER_MOD_FAILED, OFPMMFC.UNKNOWN_METER)
    assert rig.dp.flows() == []
    rig.flow({}, table_id=63)                 # the last table is fine without goto
    small = Rig(n_tables=2)
    assert error_of(small.flow, {}, table_id=2) == (OFPET.FLOW_MOD_FAILED, OFPFMFC.BAD_TABLE_ID)


def test_table_full():
    rig = Rig(max_entries=2)
    rig.flow(udp_match(udp_dst=1), out(2))
    rig.flow(udp_match(udp_dst=2), out(2))
    rig.flow(udp_match(udp_dst=2), out(3))    # replacing is not growing
    assert error_of(rig.flow, udp_match(udp_dst=3), out(2)) == (OFPET.FLOW_MOD_FAILED, OFPFMFC.TABLE_FULL)


# --- buffers -----------------------------------------------------------------------------------

def test_flow_mod_with_buffer_id_forwards_the_buffered_packet(rig):
    rig.flow({}, [ofp.Output(OFPP.CONTROLLER, 64)], priority=0)
    frame = udp(payload=b"p" * 200)
    rig.send(1, frame)
    [pin] = rig.take_events(ofp.PacketIn)
    assert pin.buffer_id != ofp.OFP_NO_BUFFER and len(pin.data) == 64 and pin.total_len == len(frame)
    rig.flow({"in_port": 1}, out(2), buffer_id=pin.buffer_id)
    assert rig.out(2) == [frame]
    # used once: BUFFER_EMPTY, but the flow-mod itself is applied
    assert error_of(rig.flow, {"in_port": 2}, out(3), buffer_id=pin.buffer_id) == (OFPET.BAD_REQUEST,
                                                                                  OFPBRC.BUFFER_EMPTY)
    assert error_of(rig.flow, {"in_port": 3}, out(3), buffer_id=0x1234) == (OFPET.BAD_REQUEST,
                                                                           OFPBRC.BUFFER_UNKNOWN)
    assert len(rig.dp.flows()) == 4


def test_buffers_expire(rig):
    rig.flow({}, [ofp.Output(OFPP.CONTROLLER, 64)], priority=0)
    rig.send(1, udp())
    [pin] = rig.take_events(ofp.PacketIn)
    rig.clock.advance(6)
    rig.dp.tick()
    po = ofp.PacketOut(pin.buffer_id, 1, out(2))
    assert error_of(rig.handle, po) == (OFPET.BAD_REQUEST, OFPBRC.BUFFER_EMPTY)


def test_no_buffers_sends_whole_packet():
    rig = Rig(n_buffers=0)
    rig.flow({}, [ofp.Output(OFPP.CONTROLLER, 10)], priority=0)
    frame = udp()
    rig.send(1, frame)
    [pin] = rig.take_events(ofp.PacketIn)
    assert pin.buffer_id == ofp.OFP_NO_BUFFER and pin.data == frame
