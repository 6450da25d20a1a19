"""Flow key extraction: every OXM field read from frames built with scapy."""

from __future__ import annotations

import ipaddress

from scapy.compat import raw
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr,
                                ICMPv6NDOptSrcLLAddr, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                                IPv6ExtHdrHopByHop, IPv6ExtHdrRouting)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.sctp import SCTP

from kumoflow.switch import flowkey as fk
from kumoflow.switch.flowkey import Packet

from test_switch_helpers import E, MAC1, MAC2


def key_of(frame: bytes, in_port: int = 1) -> Packet:
    return Packet(frame, in_port)


def mac(s: str) -> int:
    return int(s.replace(":", ""), 16)


def ip4(s: str) -> int:
    return int(ipaddress.IPv4Address(s))


def ip6(s: str) -> int:
    return int(ipaddress.IPv6Address(s))


def test_ethernet_and_pipeline_fields():
    p = Packet(raw(E(type=0x1234) / b"data"), 7, 9, tunnel_id=55)
    assert p.field(fk.IN_PORT) == 7
    assert p.field(fk.IN_PHY_PORT) == 9
    assert p.field(fk.TUNNEL_ID) == 55
    assert p.field(fk.METADATA) == 0
    assert p.field(fk.ETH_SRC) == mac(MAC1)
    assert p.field(fk.ETH_DST) == mac(MAC2)
    assert p.field(fk.ETH_TYPE) == 0x1234
    assert p.field(fk.VLAN_VID) == 0          # untagged: OFPVID_NONE, present
    assert p.field(fk.VLAN_PCP) is None
    assert p.field(fk.IP_PROTO) is None


def test_vlan_and_qinq():
    p = key_of(raw(E() / Dot1Q(vlan=100, prio=5) / IP() / UDP()))
    assert p.field(fk.VLAN_VID) == 0x1000 | 100
    assert p.field(fk.VLAN_PCP) == 5
    assert p.field(fk.ETH_TYPE) == 0x0800
    assert p.field(fk.UDP_DST) == 53
    # 802.1ad outer tag: the outer tag's fields, the ethertype after both tags
    p = key_of(raw(E() / Dot1AD(vlan=7, prio=1) / Dot1Q(vlan=200) / IP() / TCP()))
    assert p.field(fk.VLAN_VID) == 0x1007
    assert p.field(fk.VLAN_PCP) == 1
    assert p.field(fk.ETH_TYPE) == 0x0800
    assert p.field(fk.TCP_DST) == 80


def test_ipv4_tcp_fields():
    p = key_of(raw(E() / IP(src="1.2.3.4", dst="5.6.7.8", tos=0xB9, proto=6) / TCP(sport=1234, dport=443)))
    assert p.field(fk.IP_DSCP) == 0xB9 >> 2
    assert p.field(fk.IP_ECN) == 1
    assert p.field(fk.IP_PROTO) == 6
    assert p.field(fk.IPV4_SRC) == ip4("1.2.3.4")
    assert p.field(fk.IPV4_DST) == ip4("5.6.7.8")
    assert p.field(fk.TCP_SRC) == 1234
    assert p.field(fk.TCP_DST) == 443
    assert p.field(fk.UDP_SRC) is None


def test_ipv4_options_and_fragments():
    p = key_of(raw(E() / IP(options=b"\x94\x04\x00\x00") / UDP(sport=5, dport=6)))
    assert p.field(fk.UDP_SRC) == 5
    first = key_of(raw(E() / IP(flags="MF", frag=0) / UDP(sport=5, dport=6) / (b"a" * 16)))
    assert first.frag and first.field(fk.UDP_SRC) == 5
    later = key_of(raw(E() / IP(frag=3, proto=17) / (b"a" * 16)))
    assert later.frag
    assert later.field(fk.IP_PROTO) == 17
    assert later.field(fk.UDP_SRC) is None    # no transport header in a non-first fragment


def test_udp_sctp_icmp():
    p = key_of(raw(E() / IP() / SCTP(sport=10, dport=20)))
    assert (p.field(fk.SCTP_SRC), p.field(fk.SCTP_DST)) == (10, 20)
    p = key_of(raw(E() / IP() / ICMP(type=3, code=1)))
    assert (p.field(fk.ICMPV4_TYPE), p.field(fk.ICMPV4_CODE)) == (3, 1)


def test_arp():
    p = key_of(raw(Ether(src=MAC1) / ARP(op=2, hwsrc=MAC1, psrc="10.0.0.1", hwdst=MAC2, pdst="10.0.0.2")))
    assert p.field(fk.ETH_TYPE) == 0x0806
    assert p.field(fk.ARP_OP) == 2
    assert p.field(fk.ARP_SHA) == mac(MAC1)
    assert p.field(fk.ARP_THA) == mac(MAC2)
    assert p.field(fk.ARP_SPA) == ip4("10.0.0.1")
    assert p.field(fk.ARP_TPA) == ip4("10.0.0.2")


def test_ipv6_fields_and_nd():
    p = key_of(raw(E() / IPv6(src="fe80::1", dst="2001:db8::2", tc=0x2D, fl=0xABCDE) / UDP(sport=1, dport=2)))
    assert p.field(fk.IPV6_SRC) == ip6("fe80::1")
    assert p.field(fk.IPV6_DST) == ip6("2001:db8::2")
    assert p.field(fk.IPV6_FLABEL) == 0xABCDE
    assert p.field(fk.IP_DSCP) == 0x2D >> 2
    assert p.field(fk.IP_ECN) == 1
    assert p.field(fk.IP_PROTO) == 17
    assert p.field(fk.UDP_DST) == 2
    assert p.field(fk.IPV6_EXTHDR) == 0
    ns = key_of(raw(E() / IPv6() / ICMPv6ND_NS(tgt="2001:db8::9") / ICMPv6NDOptSrcLLAddr(lladdr=MAC1)))
    assert ns.field(fk.ICMPV6_TYPE) == 135
    assert ns.field(fk.IPV6_ND_TARGET) == ip6("2001:db8::9")
    assert ns.field(fk.IPV6_ND_SLL) == mac(MAC1)
    assert ns.field(fk.IPV6_ND_TLL) is None
    na = key_of(raw(E() / IPv6() / ICMPv6ND_NA(tgt="2001:db8::9") / ICMPv6NDOptDstLLAddr(lladdr=MAC2)))
    assert na.field(fk.ICMPV6_TYPE) == 136
    assert na.field(fk.IPV6_ND_TLL) == mac(MAC2)
    bare = key_of(raw(E() / IPv6() / ICMPv6ND_NS(tgt="::1")))
    assert bare.field(fk.IPV6_ND_SLL) == 0        # NS without the option: the field is zero
    echo = key_of(raw(E() / IPv6() / ICMPv6EchoRequest()))
    assert echo.field(fk.ICMPV6_TYPE) == 128 and echo.field(fk.IPV6_ND_TARGET) is None


def test_ipv6_extension_headers():
    p = key_of(raw(E() / IPv6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting()
                   / IPv6ExtHdrFragment(offset=0) / TCP(sport=7, dport=8)))
    assert p.field(fk.IP_PROTO) == 6
    assert p.field(fk.TCP_SRC) == 7
    flags = p.field(fk.IPV6_EXTHDR)
    assert flags == fk.IEH_HOP | fk.IEH_DEST | fk.IEH_ROUTER | fk.IEH_FRAG
    # out of order and repeated
    p = key_of(raw(E() / IPv6() / IPv6ExtHdrRouting() / IPv6ExtHdrHopByHop() / IPv6ExtHdrHopByHop() / UDP()))
    flags = p.field(fk.IPV6_EXTHDR)
    assert flags & fk.IEH_UNSEQ and flags & fk.IEH_UNREP
    # a later fragment: no transport fields
    p = key_of(raw(E() / IPv6() / IPv6ExtHdrFragment(offset=10, nh=17) / (b"z" * 20)))
    assert p.field(fk.IP_PROTO) == 17 and p.field(fk.UDP_SRC) is None
    # no next header
    p = key_of(raw(E() / IPv6(nh=59)))
    assert p.field(fk.IPV6_EXTHDR) == fk.IEH_NONEXT


def test_mpls_and_pbb():
    p = key_of(raw(E(type=0x8847) / MPLS(label=0x12345, cos=5, s=1, ttl=9) / IP()))
    assert p.field(fk.ETH_TYPE) == 0x8847
    assert p.field(fk.MPLS_LABEL) == 0x12345
    assert p.field(fk.MPLS_TC) == 5
    assert p.field(fk.MPLS_BOS) == 1
    assert p.field(fk.IPV4_SRC) is None       # the switch does not look inside MPLS
    itag = (3 << 29 | 0xABCDEF).to_bytes(4, "big")
    p = key_of(raw(E(type=0x88E7)) + itag + raw(E() / IP()))
    assert p.field(fk.ETH_TYPE) == 0x88E7
    assert p.field(fk.PBB_ISID) == 0xABCDEF


def test_truncated_and_odd_frames_never_fail():
    frame = raw(E() / Dot1Q(vlan=5) / IPv6() / IPv6ExtHdrHopByHop() / TCP())
    for n in range(len(frame) + 1):
        p = key_of(frame[:n])
        assert len(p.key) == fk.N_FIELDS
    p = key_of(b"\x01\x02\x03")
    assert p.field(fk.ETH_TYPE) is None
    p = key_of(raw(E(type=0x0040) / b"llc"))
    assert p.field(fk.ETH_TYPE) == fk.ETH_TYPE_NOT_ETH


def test_flow_hash_is_stable_and_spreads():
    a = key_of(raw(E() / IP(src="10.0.0.1") / UDP(sport=1)))
    b = key_of(raw(E() / IP(src="10.0.0.1") / UDP(sport=1)))
    c = key_of(raw(E() / IP(src="10.0.0.1") / UDP(sport=2)))
    assert fk.flow_hash(a.key) == fk.flow_hash(b.key)
    assert fk.flow_hash(a.key) != fk.flow_hash(c.key)


def test_tcp_flags_are_the_12_low_bits_of_the_offset_and_flags_word():
    cases = [("S", 0x002), ("SA", 0x012), ("A", 0x010), ("FA", 0x011), ("R", 0x004), ("RA", 0x014), ("PA", 0x018),
             ("FSRPAUECN", 0x1FF), ("", 0x000)]
    for flags, value in cases:
        p = key_of(raw(E() / IP() / TCP(flags=flags)))
        assert p.field(fk.TCP_FLAGS) == value, flags
        p6 = key_of(raw(E() / Dot1Q(vlan=3) / IPv6() / TCP(flags=flags, options=[("MSS", 1460)])))
        assert p6.field(fk.TCP_FLAGS) == value, flags
    # the 3 reserved bits count (Open vSwitch's [200] [400] [800]); the data offset does not
    frame = bytearray(raw(E() / IP() / TCP(flags="F")))
    frame[14 + 20 + 12] = 0x5E                  # offset 5, reserved 0b111, NS 0
    assert key_of(bytes(frame)).field(fk.TCP_FLAGS) == 0xE01
    assert fk.WIDTHS[fk.TCP_FLAGS] == 12 and fk.TCP_FLAGS == fk.N_FIELDS - 1


def test_tcp_flags_only_where_there_is_a_whole_tcp_header():
    assert key_of(raw(E() / IP() / UDP())).field(fk.TCP_FLAGS) is None
    assert key_of(raw(E() / IP(frag=3, proto=6) / (b"x" * 20))).field(fk.TCP_FLAGS) is None   # later fragment
    assert key_of(raw(E() / IP() / TCP())[:14 + 20 + 19]).field(fk.TCP_FLAGS) is None       # cut short
    # a packet parsed again (after an action) forgets the flags of the one before
    p = key_of(raw(E() / IP() / TCP(flags="R")))
    p.data[:] = raw(E() / IP() / UDP())
    fk.extract(p)
    assert p.field(fk.TCP_FLAGS) is None


def test_fast_key_holds_the_tcp_flags():
    """Frames of one TCP connection get one fast key per set of flags (the
    sequence numbers, length and TTL stay out), tagged or not; the batch
    path's keys (EMC_KEY_TCP for TCP, EMC_KEY for UDP) are the same keys."""
    def seg(flags, seq=1, size=0, ttl=64, vlan=None):
        l2 = E() / Dot1Q(vlan=vlan) if vlan else E()
        return raw(l2 / IP(src="10.0.0.1", dst="10.0.0.2", ttl=ttl)
                   / TCP(sport=40000, dport=80, flags=flags, seq=seq, ack=seq * 3) / (b"x" * size))
    for vlan in (None, 7):
        data = {fk.fast_key(seg("PA", seq, size, ttl, vlan)) for seq, size, ttl in ((1, 0, 64), (900, 10, 63),
                                                                                    (70000, 1400, 9))}
        fin, rst = fk.fast_key(seg("FA", 5, vlan=vlan)), fk.fast_key(seg("R", 5, vlan=vlan))
        assert len(data) == 1 and None not in data
        assert len(data | {fin, rst}) == 3
    untagged = seg("FA")
    assert fk.EMC_KEY_TCP(untagged) == fk.fast_key(untagged)
    udp_frame = raw(E() / IP() / UDP() / (b"u" * 20))
    assert fk.EMC_KEY(udp_frame) == fk.fast_key(udp_frame)
    # a first fragment has a fast key, and says so
    first = raw(E() / IP(flags="MF") / UDP() / (b"u" * 20))
    assert fk.fast_key(first) is not None and fk.more_fragments(first)
    assert not fk.more_fragments(untagged) and fk.more_fragments(raw(E() / Dot1Q() / IP(flags="MF") / TCP()))
