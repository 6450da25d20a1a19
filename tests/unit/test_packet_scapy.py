"""kumoflow.packet against scapy as an oracle.

For every case a kumoflow packet and an equivalent scapy packet are built:
  * both produce the same wire bytes;
  * scapy dissects kumoflow's bytes to the same field values, and scapy's
    own recomputed checksums (after deleting ours) give back the same bytes;
  * kumoflow parses scapy's bytes to the same field values, with every
    checksum_ok True.
"""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace

import pytest
from scapy.compat import raw
from scapy.contrib import lldp as sl
from scapy.layers import inet6 as s6
from scapy.layers.inet import GRE as sGRE
from scapy.layers.inet import ICMP as sICMP
from scapy.layers.inet import IP as sIP
from scapy.layers.inet import TCP as sTCP
from scapy.layers.inet import UDP as sUDP
from scapy.layers.inet import IPOption_Router_Alert, IPOption_RR
from scapy.layers.ipsec import AH as sAH
from scapy.layers.l2 import ARP as sARP
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN as sVXLAN
from scapy.packet import Padding, Raw

from kumoflow.packet import (
    AH, ARP, GRE, ICMP, LLDP, NVGRE, TCP, UDP, VLAN, VXLAN, Ethernet, ICMPv6, ICMPv6Echo, IPv4,
    IPv6, IPv6DestOpts, IPv6Fragment, IPv6HopByHop, IPv6Routing, NDNeighborAdvert,
    NDNeighborSolicit, NDOptMTU, NDOptPrefixInfo, NDOptSourceLinkAddr, NDOptTargetLinkAddr,
    NDRouterAdvert, NDRouterSolicit, Packet, consts, parse,
)

M1, M2, M3, M4 = "02:00:00:00:00:01", "02:00:00:00:00:02", "0a:bb:cc:dd:ee:03", "0a:bb:cc:dd:ee:04"
LL1, LL2 = "fe80::1", "fe80::200:ff:fe00:2"
G1, G2 = "2001:db8::1", "2001:db8:0:1::2"


def _ip6(text: str) -> str:
    return ipaddress.IPv6Address(text).compressed


def _eq(ours, theirs, what: str) -> None:
    if ours is not None:  # None = "computed on build": nothing to compare
        assert ours == theirs, f"{what}: kumoflow {ours!r} != scapy {theirs!r}"


def _tlv_value(layer) -> bytes:
    """Value bytes of one scapy LLDP TLV layer (without its payload)."""
    return raw(layer)[2:2 + layer._length]


# -- per-header comparators: (kumoflow header, scapy layer) -> last scapy layer used

def c_ether(h, s):
    _eq(h.dst, s.dst, "dst"), _eq(h.src, s.src, "src"), _eq(h.type, s.type, "type")
    return s


def c_vlan(h, s):
    for ours, theirs, n in ((h.vid, s.vlan, "vid"), (h.pcp, s.prio, "pcp"), (h.dei, s.dei, "dei"),
                            (h.type, s.type, "type")):
        _eq(ours, theirs, n)
    return s


def c_arp(h, s):
    for ours, theirs, n in ((h.op, s.op, "op"), (h.src_mac, s.hwsrc, "sha"),
                            (h.src_ip, s.psrc, "spa"), (h.dst_mac, s.hwdst, "tha"),
                            (h.dst_ip, s.pdst, "tpa"), (h.hwtype, s.hwtype, "hw"),
                            (h.ptype, s.ptype, "ptype")):
        _eq(ours, theirs, n)
    assert (s.hwlen, s.plen) == (6, 4)
    return s


def c_ipv4(h, s):
    for ours, theirs, n in ((h.src, s.src, "src"), (h.dst, s.dst, "dst"),
                            (h.proto, s.proto, "proto"), (h.ttl, s.ttl, "ttl"),
                            (h.tos, s.tos, "tos"), (h.id, s.id, "id"),
                            (h.flags, int(s.flags), "flags"), (h.frag_offset, s.frag, "frag"),
                            (h.ihl, s.ihl, "ihl"), (h.total_length, s.len, "len"),
                            (h.checksum, s.chksum, "chksum")):
        _eq(ours, theirs, n)
    opts = raw(s)[20:s.ihl * 4]
    assert opts == h.options + bytes(-len(h.options) % 4)
    return s


def c_ipv6(h, s):
    for ours, theirs, n in ((_ip6(h.src), _ip6(s.src), "src"), (_ip6(h.dst), _ip6(s.dst), "dst"),
                            (h.nh, s.nh, "nh"), (h.hop_limit, s.hlim, "hlim"), (h.tc, s.tc, "tc"),
                            (h.flow_label, s.fl, "fl"), (h.payload_length, s.plen, "plen")):
        _eq(ours, theirs, n)
    return s


def c_opts6(h, s):
    _eq(h.nh, s.nh, "nh")
    area = raw(s)[2:(s.len + 1) * 8]
    assert area[:len(h.options)] == h.options
    return s


def c_routing(h, s):
    _eq(h.nh, s.nh, "nh"), _eq(h.type, s.type, "type")
    _eq(h.segments_left, s.segleft, "segleft")
    assert [_ip6(a) for a in h.addresses] == [_ip6(a) for a in s.addresses]
    return s


def c_frag(h, s):
    for ours, theirs, n in ((h.nh, s.nh, "nh"), (h.offset, s.offset, "offset"), (h.m, s.m, "m"),
                            (h.id, s.id, "id")):
        _eq(ours, theirs, n)
    return s


def c_ah(h, s):
    _eq(h.nh, s.nh, "nh"), _eq(h.spi, s.spi, "spi"), _eq(h.seq, s.seq, "seq")
    assert h.icv == s.icv + (s.padding or b"")
    # scapy stops dissecting at AH; carry on from its next header ourselves
    upper = {6: sTCP, 17: sUDP}.get(s.nh)
    if upper is not None and isinstance(s.payload, Raw):
        return SimpleNamespace(payload=upper(raw(s.payload)))
    return s


def c_icmp(h, s):
    for ours, theirs, n in ((h.type, s.type, "type"), (h.code, s.code, "code"),
                            (h.checksum, s.chksum, "chksum")):
        _eq(ours, theirs, n)
    if h.type in (0, 8):
        _eq(h.id, s.id, "id"), _eq(h.seq, s.seq, "seq")
    return s


def c_icmpv6(h, s):
    _eq(h.type, s.type, "type"), _eq(h.code, s.code, "code"), _eq(h.checksum, s.cksum, "cksum")
    if isinstance(h, ICMPv6Echo):
        _eq(h.id, s.id, "id"), _eq(h.seq, s.seq, "seq")
    elif isinstance(h, NDNeighborSolicit):
        assert _ip6(h.target) == _ip6(s.tgt)
    elif isinstance(h, NDNeighborAdvert):
        assert _ip6(h.target) == _ip6(s.tgt)
        assert (h.router, h.solicited, h.override) == (bool(s.R), bool(s.S), bool(s.O))
    elif isinstance(h, NDRouterAdvert):
        for ours, theirs, n in ((h.cur_hop_limit, s.chlim, "chlim"),
                                (h.managed, bool(s.M), "M"), (h.other, bool(s.O), "O"),
                                (h.router_lifetime, s.routerlifetime, "lifetime"),
                                (h.reachable_time, s.reachabletime, "reachable"),
                                (h.retrans_timer, s.retranstimer, "retrans")):
            _eq(ours, theirs, n)
    for opt in getattr(h, "options", ()):  # ND options are scapy layers that follow
        s = s.payload
        if isinstance(opt, NDOptSourceLinkAddr):
            assert isinstance(s, s6.ICMPv6NDOptSrcLLAddr) and s.lladdr == opt.mac
        elif isinstance(opt, NDOptTargetLinkAddr):
            assert isinstance(s, s6.ICMPv6NDOptDstLLAddr) and s.lladdr == opt.mac
        elif isinstance(opt, NDOptMTU):
            assert isinstance(s, s6.ICMPv6NDOptMTU) and s.mtu == opt.mtu
        elif isinstance(opt, NDOptPrefixInfo):
            assert isinstance(s, s6.ICMPv6NDOptPrefixInfo)
            assert (_ip6(opt.prefix), opt.prefix_len, opt.on_link, opt.autonomous,
                    opt.valid_lifetime, opt.preferred_lifetime) == (
                _ip6(s.prefix), s.prefixlen, bool(s.L), bool(s.A), s.validlifetime,
                s.preferredlifetime)
        else:
            raise AssertionError(f"unexpected option {opt!r}")
    return s


def c_tcp(h, s):
    for ours, theirs, n in ((h.sport, s.sport, "sport"), (h.dport, s.dport, "dport"),
                            (h.seq, s.seq, "seq"), (h.ack, s.ack, "ack"),
                            (h.flags, int(s.flags) | (s.reserved << 9), "flags"),
                            (h.window, s.window, "window"), (h.urgent, s.urgptr, "urgptr"),
                            (h.data_offset, s.dataofs, "dataofs"),
                            (h.checksum, s.chksum, "chksum")):
        _eq(ours, theirs, n)
    assert raw(s)[20:s.dataofs * 4] == h.options + bytes(-len(h.options) % 4)
    return s


def c_udp(h, s):
    for ours, theirs, n in ((h.sport, s.sport, "sport"), (h.dport, s.dport, "dport"),
                            (h.length, s.len, "len"), (h.checksum, s.chksum, "chksum")):
        _eq(ours, theirs, n)
    return s


def c_vxlan(h, s):
    _eq(h.vni, s.vni, "vni"), _eq(h.flags, int(s.flags), "flags")
    return s


def c_gre(h, s):
    _eq(h.protocol, s.proto, "proto")
    assert h.key == (s.key if s.key_present else None)
    assert h.seq == (s.sequence_number if s.seqnum_present else None)
    assert h.checksum_present == bool(s.chksum_present)
    if h.checksum_present:
        _eq(h.checksum, s.chksum, "chksum")
    if isinstance(h, NVGRE):
        assert s.key == (h.vsid << 8) | h.flow_id
    return s


def c_lldp(h, s):
    assert isinstance(s, sl.LLDPDUChassisID)
    assert _tlv_value(s) == bytes((h.chassis_id_subtype,)) + h.chassis_id
    s = s.payload
    assert isinstance(s, sl.LLDPDUPortID)
    assert _tlv_value(s) == bytes((h.port_id_subtype,)) + h.port_id
    s = s.payload
    assert isinstance(s, sl.LLDPDUTimeToLive) and s.ttl == h.ttl
    expected = []
    for t, name in ((4, "port_description"), (5, "system_name"), (6, "system_description")):
        if getattr(h, name) is not None:
            expected.append((t, getattr(h, name).encode()))
    expected += h.tlvs
    for t, value in expected:
        s = s.payload
        assert s._type == t and _tlv_value(s) == value
    s = s.payload
    assert isinstance(s, sl.LLDPDUEndOfLLDPDU)
    return s


COMPARE = {
    Ethernet: (Ether, c_ether), VLAN: ((Dot1Q, Dot1AD), c_vlan), ARP: (sARP, c_arp),
    IPv4: (sIP, c_ipv4), IPv6: (s6.IPv6, c_ipv6),
    IPv6HopByHop: (s6.IPv6ExtHdrHopByHop, c_opts6), IPv6DestOpts: (s6.IPv6ExtHdrDestOpt, c_opts6),
    IPv6Routing: (s6.IPv6ExtHdrRouting, c_routing), IPv6Fragment: (s6.IPv6ExtHdrFragment, c_frag),
    AH: (sAH, c_ah), ICMP: (sICMP, c_icmp), TCP: (sTCP, c_tcp), UDP: (sUDP, c_udp),
    VXLAN: (sVXLAN, c_vxlan), GRE: (sGRE, c_gre), NVGRE: (sGRE, c_gre),
    LLDP: (sl.LLDPDUChassisID, c_lldp),
}
_ICMPV6_BASES = (s6._ICMPv6,)


def compare(pkt: Packet, scapy_pkt) -> None:
    """Walk kumoflow headers and scapy layers side by side."""
    s = scapy_pkt
    for h in pkt.headers:
        if isinstance(h, ICMPv6):
            cls, fn = _ICMPV6_BASES, c_icmpv6
        else:
            cls, fn = COMPARE[type(h)]
        while not isinstance(s, cls):
            assert s is not None and s.name != "NoPayload", f"scapy has no layer for {h!r}"
            s = s.payload
        s = fn(h, s).payload


def scapy_recomputed(frame: bytes) -> bytes:
    """Dissect with scapy, drop every checksum, let scapy rebuild them."""
    s = Ether(frame)
    layer = s
    # Stop at a quoted datagram inside an ICMP error (IPerror, UDPerror...):
    # its checksums are data, not ours to recompute.
    while layer.name != "NoPayload" and not type(layer).__name__.endswith("error6") \
            and not type(layer).__name__.endswith("error"):
        for name in ("chksum", "cksum"):
            if name in layer.fields:
                if name == "chksum" and isinstance(layer, sGRE) and not layer.chksum_present:
                    continue
                delattr(layer, name)
        layer = layer.payload
    return raw(s)


def all_checksums_ok(pkt: Packet) -> None:
    for h in pkt.headers:
        ok = getattr(h, "checksum_ok", True)
        assert ok is True, f"checksum_ok of {h!r} is {ok!r}"


# -- the cases: (kumoflow packet, scapy packet) ---------------------------------

TCP_OPTS_KF = (bytes((2, 4)) + (1460).to_bytes(2, "big") + b"\x01" + bytes((3, 3, 7))
               + bytes((4, 2)) + bytes((8, 10)) + (1).to_bytes(4, "big") + (2).to_bytes(4, "big"))
TCP_OPTS_SC = [("MSS", 1460), ("NOP", None), ("WScale", 7), ("SAckOK", b""),
               ("Timestamp", (1, 2))]


def _scapy_checksum(pkt) -> int:
    """scapy does not fill AH's next header / length nor find the pseudo-header
    through AH.  The pseudo-header does not include AH, so the upper-layer
    checksum is the one scapy computes for the same datagram without AH."""
    built = pkt.__class__(raw(pkt))
    return built.payload.chksum


# scapy cannot recompute these checksums itself (see _scapy_checksum)
NO_SCAPY_RECOMPUTE = {"ipv6-ah-udp", "ipv4-ah-tcp"}


def _cases():
    yield "ipv4-udp", (
        Ethernet(dst=M2, src=M1) / IPv4(src="10.0.0.1", dst="10.0.0.2", ttl=17, id=77, tos=0xB8)
        / UDP(sport=5353, dport=53) / b"hello world",
        Ether(dst=M2, src=M1) / sIP(src="10.0.0.1", dst="10.0.0.2", ttl=17, id=77, tos=0xB8)
        / sUDP(sport=5353, dport=53) / b"hello world")
    yield "qinq-tcp", (
        Ethernet(dst=M2, src=M1) / VLAN(vid=100, pcp=5, tpid=consts.ETH_TYPE_QINQ)
        / VLAN(vid=4000, pcp=3, dei=1) / IPv4(src="192.168.1.1", dst="8.8.8.8", flags=2)
        / TCP(sport=40000, dport=443, seq=123456789, ack=987654321,
              flags=consts.TCP_ACK | consts.TCP_PSH, window=501) / b"GET / HTTP/1.1\r\n",
        Ether(dst=M2, src=M1, type=0x88A8) / Dot1AD(vlan=100, prio=5) / Dot1Q(vlan=4000, prio=3, dei=1)
        / sIP(src="192.168.1.1", dst="8.8.8.8", flags="DF", id=0)
        / sTCP(sport=40000, dport=443, seq=123456789, ack=987654321, flags="PA", window=501)
        / b"GET / HTTP/1.1\r\n")
    yield "arp-request", (
        Ethernet(dst="ff:ff:ff:ff:ff:ff", src=M1) / VLAN(vid=7)
        / ARP(op=1, src_mac=M1, src_ip="10.0.0.1", dst_ip="10.0.0.9"),
        Ether(dst="ff:ff:ff:ff:ff:ff", src=M1) / Dot1Q(vlan=7)
        / sARP(op=1, hwsrc=M1, psrc="10.0.0.1", hwdst="00:00:00:00:00:00", pdst="10.0.0.9"))
    yield "arp-reply", (
        Ethernet(dst=M1, src=M2) / ARP(op=2, src_mac=M2, src_ip="10.0.0.9", dst_mac=M1,
                                       dst_ip="10.0.0.1"),
        Ether(dst=M1, src=M2) / sARP(op=2, hwsrc=M2, psrc="10.0.0.9", hwdst=M1, pdst="10.0.0.1"))
    yield "ipv4-options-icmp", (
        Ethernet(dst=M2, src=M1)
        / IPv4(src="10.1.1.1", dst="10.2.2.2", id=9,
               options=bytes((0x94, 4, 0, 0)) + bytes((7, 7, 4)) + bytes(4) + b"\x00")
        / ICMP(type=8, id=0x1234, seq=7) / b"ping-payload",
        Ether(dst=M2, src=M1)
        / sIP(src="10.1.1.1", dst="10.2.2.2", id=9,
              options=[IPOption_Router_Alert(), IPOption_RR(routers=["0.0.0.0"])])
        / sICMP(type=8, id=0x1234, seq=7) / b"ping-payload")
    yield "icmp-unreachable", (
        Ethernet(dst=M2, src=M1) / IPv4(src="10.0.0.254", dst="10.0.0.1")
        / ICMP(type=3, code=4, seq=1400) / (bytes.fromhex("4500001c0001000040110000") + bytes(16)),
        Ether(dst=M2, src=M1) / sIP(src="10.0.0.254", dst="10.0.0.1", id=0)
        / sICMP(type=3, code=4, nexthopmtu=1400)
        / (bytes.fromhex("4500001c0001000040110000") + bytes(16)))
    yield "tcp-options", (
        Ethernet(dst=M2, src=M1) / IPv4(src="10.0.0.1", dst="10.0.0.2")
        / TCP(sport=1, dport=22, seq=1, flags=consts.TCP_SYN, window=64240, options=TCP_OPTS_KF),
        Ether(dst=M2, src=M1) / sIP(src="10.0.0.1", dst="10.0.0.2", id=0)
        / sTCP(sport=1, dport=22, seq=1, flags="S", window=64240, options=TCP_OPTS_SC))
    yield "tcp-odd-payload", (
        Ethernet(dst=M2, src=M1) / IPv4(src="10.0.0.1", dst="10.0.0.2")
        / TCP(sport=80, dport=5555, flags=consts.TCP_ACK | consts.TCP_FIN, urgent=3) / b"abc",
        Ether(dst=M2, src=M1) / sIP(src="10.0.0.1", dst="10.0.0.2", id=0)
        / sTCP(sport=80, dport=5555, flags="FA", urgptr=3, window=65535, seq=0) / b"abc")
    yield "ipv6-udp", (
        Ethernet(dst=M2, src=M1) / IPv6(src=G1, dst=G2, tc=0x2E, flow_label=0xABCDE, hop_limit=9)
        / UDP(sport=546, dport=547) / b"dhcpv6",
        Ether(dst=M2, src=M1) / s6.IPv6(src=G1, dst=G2, tc=0x2E, fl=0xABCDE, hlim=9)
        / sUDP(sport=546, dport=547) / b"dhcpv6")
    yield "ipv6-ext-headers", (
        Ethernet(dst=M2, src=M1) / IPv6(src=G1, dst=G2)
        / IPv6HopByHop(options=bytes((5, 2, 0, 0)))
        / IPv6DestOpts(options=bytes((1, 4)) + bytes(4))
        / IPv6Routing(type=0, segments_left=2,
                      data=bytes(4) + ipaddress.IPv6Address("2001:db8::aa").packed
                      + ipaddress.IPv6Address("2001:db8::bb").packed)
        / IPv6Fragment(offset=0, m=0, id=0xCAFE)
        / TCP(sport=1000, dport=2000, flags=consts.TCP_SYN) / b"xyz",
        Ether(dst=M2, src=M1) / s6.IPv6(src=G1, dst=G2)
        / s6.IPv6ExtHdrHopByHop(options=[s6.RouterAlert()])
        / s6.IPv6ExtHdrDestOpt(options=[s6.PadN(optdata=b"\x00" * 4)])
        / s6.IPv6ExtHdrRouting(segleft=2, addresses=["2001:db8::aa", "2001:db8::bb"])
        / s6.IPv6ExtHdrFragment(offset=0, m=0, id=0xCAFE)
        / sTCP(sport=1000, dport=2000, flags="S", window=65535, seq=0) / b"xyz")
    yield "ipv6-ah-udp", (
        Ethernet(dst=M2, src=M1) / IPv6(src=G1, dst=G2)
        / AH(spi=0x1000, seq=5, icv=bytes(range(12))) / UDP(sport=500, dport=500) / b"ike",
        Ether(dst=M2, src=M1) / s6.IPv6(src=G1, dst=G2)
        / sAH(nh=17, payloadlen=4, spi=0x1000, seq=5, icv=bytes(range(12)))
        / sUDP(sport=500, dport=500,
               chksum=_scapy_checksum(s6.IPv6(src=G1, dst=G2) / sUDP(sport=500, dport=500)
                                      / b"ike"))
        / b"ike")
    yield "ipv4-ah-tcp", (
        Ethernet(dst=M2, src=M1) / IPv4(src="10.0.0.1", dst="10.0.0.2")
        / AH(spi=7, seq=1, icv=bytes(12)) / TCP(sport=9, dport=10, flags=consts.TCP_RST),
        Ether(dst=M2, src=M1) / sIP(src="10.0.0.1", dst="10.0.0.2", id=0)
        / sAH(nh=6, payloadlen=4, spi=7, seq=1, icv=bytes(12))
        / sTCP(sport=9, dport=10, flags="R", window=65535, seq=0,
               chksum=_scapy_checksum(sIP(src="10.0.0.1", dst="10.0.0.2")
                                      / sTCP(sport=9, dport=10, flags="R", window=65535,
                                             seq=0))))
    yield "icmpv6-echo", (
        Ethernet(dst=M2, src=M1) / IPv6(src=LL1, dst=LL2)
        / ICMPv6Echo(type=128, id=0x77, seq=3) / b"abcdefg",
        Ether(dst=M2, src=M1) / s6.IPv6(src=LL1, dst=LL2)
        / s6.ICMPv6EchoRequest(id=0x77, seq=3, data=b"abcdefg"))
    yield "icmpv6-ns", (
        Ethernet(dst="33:33:ff:00:00:02", src=M1) / IPv6(src=LL1, dst="ff02::1:ff00:2", hop_limit=255)
        / NDNeighborSolicit(target=LL2, options=[NDOptSourceLinkAddr(M1)]),
        Ether(dst="33:33:ff:00:00:02", src=M1) / s6.IPv6(src=LL1, dst="ff02::1:ff00:2", hlim=255)
        / s6.ICMPv6ND_NS(tgt=LL2) / s6.ICMPv6NDOptSrcLLAddr(lladdr=M1))
    yield "icmpv6-na", (
        Ethernet(dst=M1, src=M2) / IPv6(src=LL2, dst=LL1, hop_limit=255)
        / NDNeighborAdvert(flags=consts.ND_NA_ROUTER | consts.ND_NA_SOLICITED
                           | consts.ND_NA_OVERRIDE, target=LL2,
                           options=[NDOptTargetLinkAddr(M2)]),
        Ether(dst=M1, src=M2) / s6.IPv6(src=LL2, dst=LL1, hlim=255)
        / s6.ICMPv6ND_NA(R=1, S=1, O=1, tgt=LL2) / s6.ICMPv6NDOptDstLLAddr(lladdr=M2))
    yield "icmpv6-rs", (
        Ethernet(dst="33:33:00:00:00:02", src=M1) / IPv6(src=LL1, dst="ff02::2", hop_limit=255)
        / NDRouterSolicit(options=[NDOptSourceLinkAddr(M1)]),
        Ether(dst="33:33:00:00:00:02", src=M1) / s6.IPv6(src=LL1, dst="ff02::2", hlim=255)
        / s6.ICMPv6ND_RS() / s6.ICMPv6NDOptSrcLLAddr(lladdr=M1))
    yield "icmpv6-ra", (
        Ethernet(dst="33:33:00:00:00:01", src=M2) / IPv6(src=LL2, dst="ff02::1", hop_limit=255)
        / NDRouterAdvert(cur_hop_limit=64, flags=consts.ND_RA_MANAGED | consts.ND_RA_OTHER,
                         router_lifetime=1800, reachable_time=30000, retrans_timer=1000,
                         options=[NDOptSourceLinkAddr(M2), NDOptMTU(1500),
                                  NDOptPrefixInfo("2001:db8:1::", 64, valid_lifetime=86400,
                                                  preferred_lifetime=14400)]),
        Ether(dst="33:33:00:00:00:01", src=M2) / s6.IPv6(src=LL2, dst="ff02::1", hlim=255)
        / s6.ICMPv6ND_RA(chlim=64, M=1, O=1, prf=0, routerlifetime=1800, reachabletime=30000,
                         retranstimer=1000)
        / s6.ICMPv6NDOptSrcLLAddr(lladdr=M2) / s6.ICMPv6NDOptMTU(mtu=1500)
        / s6.ICMPv6NDOptPrefixInfo(prefix="2001:db8:1::", prefixlen=64, L=1, A=1,
                                   validlifetime=86400, preferredlifetime=14400))
    yield "icmpv6-unreachable", (
        Ethernet(dst=M2, src=M1) / IPv6(src=G2, dst=G1) / ICMPv6(type=1, code=4)
        / (bytes(4) + bytes.fromhex("6000000000081140") + bytes(40)),
        Ether(dst=M2, src=M1) / s6.IPv6(src=G2, dst=G1) / s6.ICMPv6DestUnreach(code=4)
        / Raw(bytes.fromhex("6000000000081140") + bytes(40)))
    yield "lldp", (
        Ethernet(dst=consts.LLDP_MAC_NEAREST_BRIDGE, src=M1)
        / LLDP(chassis_id_subtype=4, chassis_id=bytes.fromhex("020000000001"),
               port_id_subtype=5, port_id=b"eth1", ttl=120, port_description="uplink",
               system_name="switch-1", system_description="kumoflow test",
               tlvs=[(127, bytes.fromhex("0026e1") + b"\x00" + b"dpid:0000000000000001")]),
        Ether(dst=consts.LLDP_MAC_NEAREST_BRIDGE, src=M1)
        / sl.LLDPDUChassisID(subtype=4, id=M1) / sl.LLDPDUPortID(subtype=5, id=b"eth1")
        / sl.LLDPDUTimeToLive(ttl=120) / sl.LLDPDUPortDescription(description=b"uplink")
        / sl.LLDPDUSystemName(system_name=b"switch-1")
        / sl.LLDPDUSystemDescription(description=b"kumoflow test")
        / sl.LLDPDUGenericOrganisationSpecific(org_code=0x0026E1, subtype=0,
                                               data=b"dpid:0000000000000001")
        / sl.LLDPDUEndOfLLDPDU())
    yield "vxlan", (
        Ethernet(dst=M2, src=M1) / IPv4(src="172.16.0.1", dst="172.16.0.2", flags=2)
        / UDP(sport=49152, dport=4789) / VXLAN(vni=0xABCDEF)
        / Ethernet(dst=M4, src=M3) / IPv4(src="10.0.0.1", dst="10.0.0.2")
        / ICMP(type=0, id=1, seq=2) / b"inner",
        Ether(dst=M2, src=M1) / sIP(src="172.16.0.1", dst="172.16.0.2", flags="DF", id=0)
        / sUDP(sport=49152, dport=4789) / sVXLAN(vni=0xABCDEF, flags=0x08)
        / Ether(dst=M4, src=M3) / sIP(src="10.0.0.1", dst="10.0.0.2", id=0)
        / sICMP(type=0, id=1, seq=2) / b"inner")
    yield "vxlan-ipv6-underlay", (
        Ethernet(dst=M2, src=M1) / IPv6(src=G1, dst=G2) / UDP(sport=50000, dport=4789)
        / VXLAN(vni=5000) / Ethernet(dst=M4, src=M3) / ARP(src_mac=M3, src_ip="10.9.0.1",
                                                        dst_ip="10.9.0.2"),
        Ether(dst=M2, src=M1) / s6.IPv6(src=G1, dst=G2) / sUDP(sport=50000, dport=4789)
        / sVXLAN(vni=5000, flags=0x08) / Ether(dst=M4, src=M3)
        / sARP(hwsrc=M3, psrc="10.9.0.1", hwdst="00:00:00:00:00:00", pdst="10.9.0.2"))
    yield "nvgre", (
        Ethernet(dst=M2, src=M1) / IPv4(src="172.16.0.1", dst="172.16.0.2")
        / NVGRE(vsid=0x123456, flow_id=0x9A) / Ethernet(dst=M4, src=M3)
        / IPv6(src=G1, dst=G2) / UDP(sport=1, dport=2) / b"tenant",
        Ether(dst=M2, src=M1) / sIP(src="172.16.0.1", dst="172.16.0.2", id=0)
        / sGRE(key_present=1, key=0x1234569A, proto=0x6558) / Ether(dst=M4, src=M3)
        / s6.IPv6(src=G1, dst=G2) / sUDP(sport=1, dport=2) / b"tenant")
    yield "gre-csum-key-seq", (
        Ethernet(dst=M2, src=M1) / IPv4(src="1.1.1.1", dst="2.2.2.2")
        / GRE(key=42, seq=7, checksum_present=True) / IPv4(src="10.0.0.1", dst="10.0.0.2")
        / TCP(sport=1, dport=2, flags=consts.TCP_SYN) / b"z",
        Ether(dst=M2, src=M1) / sIP(src="1.1.1.1", dst="2.2.2.2", id=0)
        / sGRE(chksum_present=1, key_present=1, key=42, seqnum_present=1, sequence_number=7)
        / sIP(src="10.0.0.1", dst="10.0.0.2", id=0)
        / sTCP(sport=1, dport=2, flags="S", window=65535, seq=0) / b"z")
    yield "gre-over-ipv6", (
        Ethernet(dst=M2, src=M1) / IPv6(src=G1, dst=G2) / GRE(key=1)
        / IPv6(src=LL1, dst=LL2) / ICMPv6Echo(type=129, id=1, seq=1),
        Ether(dst=M2, src=M1) / s6.IPv6(src=G1, dst=G2) / sGRE(key_present=1, key=1)
        / s6.IPv6(src=LL1, dst=LL2) / s6.ICMPv6EchoReply(id=1, seq=1))


CASES = dict(_cases())


@pytest.mark.parametrize("name", list(CASES))
def test_same_bytes_as_scapy(name):
    ours, theirs = CASES[name]
    assert bytes(ours).hex() == raw(theirs).hex()


@pytest.mark.parametrize("name", list(CASES))
def test_scapy_reads_what_we_build(name):
    ours, _ = CASES[name]
    frame = bytes(ours)
    compare(ours, Ether(frame))
    if name not in NO_SCAPY_RECOMPUTE:
        assert scapy_recomputed(frame) == frame


@pytest.mark.parametrize("name", list(CASES))
def test_we_read_what_scapy_builds(name):
    _, theirs = CASES[name]
    frame = raw(theirs)
    pkt = parse(frame)
    compare(pkt, Ether(frame))
    all_checksums_ok(pkt)
    assert pkt.pack() == frame
    # parse() chose the header classes we built with, and left the same payload
    ours, _ = CASES[name]
    assert [type(h) for h in pkt.headers] == [type(h) for h in ours.headers]
    assert pkt.payload == ours.payload


def test_scapy_padding_becomes_trailer():
    frame = raw(Ether(dst=M2, src=M1) / sARP(hwsrc=M1, psrc="10.0.0.1", pdst="10.0.0.2")
                / Padding(bytes(18)))
    pkt = parse(frame)
    assert pkt.payload == b"" and pkt.trailer == bytes(18)
    assert pkt.pack() == frame


def test_scapy_udp_zero_checksum_over_ipv4_is_accepted():
    frame = raw(Ether() / sIP(src="1.2.3.4", dst="5.6.7.8") / sUDP(sport=1, dport=2, chksum=0))
    assert parse(frame)[UDP].checksum_ok is True
    frame6 = raw(Ether() / s6.IPv6(src=G1, dst=G2) / sUDP(sport=1, dport=2, chksum=0))
    assert parse(frame6)[UDP].checksum_ok is False  # mandatory over IPv6 (RFC 8200 8.1)


def test_scapy_fragments():
    whole = sIP(src="10.0.0.1", dst="10.0.0.2", id=99) / sUDP(sport=1, dport=2) / (b"q" * 64)
    from scapy.layers.inet import fragment
    first, second = fragment(whole, fragsize=32)[:2]
    p1 = parse(raw(Ether() / first))
    assert p1[IPv4].mf and p1.get(UDP) is not None
    assert p1[UDP].checksum_ok is None  # covers bytes in later fragments
    p2 = parse(raw(Ether() / second))
    assert p2[IPv4].frag_offset == len(raw(first.payload)) // 8 and p2.get(UDP) is None
    assert p2.payload == raw(second)[20:]
