"""What a router says on a link, as frames: ARP and neighbour discovery
answers and questions, router advertisements, echo replies and ICMP/ICMPv6
errors; and packets translated by the controller (NAT of what flows cannot
rewrite). Pure functions of their inputs; the `router` app decides when.

The error rules are the RFCs' (RFC 1812 4.3.2.7 for IPv4, RFC 4443 2.4 for
IPv6): never an error about an error, about a packet sent to a multicast or
broadcast address, from an unspecified or multicast source, or about an
IPv4 fragment other than the first. An IPv4 error quotes the offending
header and 8 bytes of its payload (RFC 792); an IPv6 error quotes as much
as fits in the minimum MTU of 1280 bytes.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

from kumoflow.packet import (
    ARP, ICMP, TCP, UDP, ICMPv6, ICMPv6Echo, IPv4, IPv6, Ethernet, NDNeighborAdvert, NDNeighborSolicit, NDOptPrefixInfo,
    NDOptSourceLinkAddr, NDOptTargetLinkAddr, NDRouterAdvert, PacketError, parse,
)
from kumoflow.packet.addr import link_local
from kumoflow.packet.consts import (
    ARP_REPLY, ARP_REQUEST, ND_NA_OVERRIDE, ND_NA_ROUTER, ND_NA_SOLICITED, ND_PREFIX_AUTONOMOUS, ND_PREFIX_ONLINK,
    ND_RA_MANAGED, ND_RA_OTHER, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
BROADCAST = "ff:ff:ff:ff:ff:ff"
ALL_NODES = "ff02::1"
ALL_NODES_MAC = "33:33:00:00:00:01"
IPV6_MIN_MTU = 1280

#: errors, by name: (ICMP type, code) for IPv4, (ICMPv6 type, code) for IPv6
ERRORS = {
    "time_exceeded": ((11, 0), (3, 0)),
    "net_unreachable": ((3, 0), (1, 0)),
    "host_unreachable": ((3, 1), (1, 3)),
    "port_unreachable": ((3, 3), (1, 4)),
}
#: ICMP types that are not errors (echo, timestamp, information: RFC 792), and ICMPv6's (128 and up)
_ICMP_QUERIES = frozenset((0, 8, 13, 14, 15, 16, 17, 18))
_ICMPV6_ECHO_REQUEST, _ICMPV6_ECHO_REPLY = 128, 129


def solicited_node(ip: ipaddress.IPv6Address) -> tuple[str, str]:
    """The solicited-node multicast address of `ip` and its MAC."""
    low = ip.packed[-3:]
    group = ipaddress.IPv6Address(b"\xff\x02" + b"\0" * 9 + b"\x01\xff" + low)
    return str(group), "33:33:ff:" + low.hex(":")


# --- resolution ---------------------------------------------------------------------

def arp_reply(mac: str, ip: IPAddress, to_mac: str, to_ip: str) -> bytes:
    return bytes(Ethernet(src=mac, dst=to_mac) / ARP(op=ARP_REPLY, src_mac=mac, src_ip=str(ip), dst_mac=to_mac,
                                                     dst_ip=to_ip))


def arp_request(mac: str, ip: IPAddress, target: IPAddress) -> bytes:
    return bytes(Ethernet(src=mac, dst=BROADCAST) / ARP(op=ARP_REQUEST, src_mac=mac, src_ip=str(ip),
                                                        dst_ip=str(target)))


def neighbour_advert(mac: str, target: IPAddress, to_mac: str, to_ip: str, solicited: bool = True,
                     router: bool = True) -> bytes:
    flags = (ND_NA_ROUTER if router else 0) | ND_NA_OVERRIDE | (ND_NA_SOLICITED if solicited else 0)
    dst = to_ip if to_ip != "::" else ALL_NODES     # an answer to DAD goes to all nodes
    return bytes(Ethernet(src=mac, dst=to_mac if to_ip != "::" else ALL_NODES_MAC)
                 / IPv6(src=str(target), dst=dst, hop_limit=255)
                 / NDNeighborAdvert(flags=flags, target=str(target), options=[NDOptTargetLinkAddr(mac)]))


def neighbour_solicit(mac: str, source: IPAddress, target: ipaddress.IPv6Address) -> bytes:
    group, group_mac = solicited_node(target)
    return bytes(Ethernet(src=mac, dst=group_mac) / IPv6(src=str(source), dst=group, hop_limit=255)
                 / NDNeighborSolicit(target=str(target), options=[NDOptSourceLinkAddr(mac)]))


def router_advert(mac: str, prefixes: Iterable[tuple[ipaddress.IPv6Network, str]], to_mac: str = ALL_NODES_MAC,
                  to_ip: str = ALL_NODES, lifetime: int = 1800) -> bytes:
    """An RA from the router's link-local address. `prefixes`: (prefix, the
    subnet's ipv6_ra_mode): slaac advertises the prefix for autoconfiguration,
    dhcpv6-stateless too with the O flag, dhcpv6-stateful sets M instead."""
    options: list = [NDOptSourceLinkAddr(mac)]
    flags = 0
    for prefix, mode in prefixes:
        autonomous = ND_PREFIX_AUTONOMOUS if mode in ("slaac", "dhcpv6-stateless") else 0
        options.append(NDOptPrefixInfo(prefix=str(prefix.network_address), prefix_len=prefix.prefixlen,
                                       flags=ND_PREFIX_ONLINK | autonomous, valid_lifetime=86400,
                                       preferred_lifetime=14400))
        flags |= ND_RA_MANAGED if mode == "dhcpv6-stateful" else ND_RA_OTHER if mode == "dhcpv6-stateless" else 0
    return bytes(Ethernet(src=mac, dst=to_mac) / IPv6(src=str(link_local(mac)), dst=to_ip, hop_limit=255)
                 / NDRouterAdvert(cur_hop_limit=64, flags=flags, router_lifetime=lifetime, options=options))


# --- ICMP -----------------------------------------------------------------------------

def echo_reply(data: bytes, mac: str) -> bytes | None:
    """The answer to an echo request addressed to the router (IPv4 or IPv6), or None."""
    try:
        pkt = parse(data)
    except PacketError:
        return None
    eth = pkt[Ethernet]
    ip4, ip6 = pkt.get(IPv4), pkt.get(IPv6)
    if ip4 is not None:
        icmp = pkt.get(ICMP)
        if icmp is None or icmp.type != 8:
            return None
        return bytes(Ethernet(src=mac, dst=eth.src) / IPv4(src=ip4.dst, dst=ip4.src, ttl=64)
                     / ICMP(type=0, code=0, id=icmp.id, seq=icmp.seq) / pkt.payload)
    if ip6 is not None:
        echo = pkt.get(ICMPv6Echo)
        if echo is None or echo.type != _ICMPV6_ECHO_REQUEST:
            return None
        return bytes(Ethernet(src=mac, dst=eth.src) / IPv6(src=ip6.dst, dst=ip6.src, hop_limit=64)
                     / ICMPv6Echo(type=_ICMPV6_ECHO_REPLY, id=echo.id, seq=echo.seq) / pkt.payload)
    return None


def sender(pkt) -> IPAddress | None:
    """The source address of a parsed IP packet, or None."""
    ip = pkt.get(IPv4) or pkt.get(IPv6)
    try:
        return ipaddress.ip_address(ip.src) if ip is not None else None
    except ValueError:
        return None


def icmp_error(pkt, data: bytes, error: str, mac: str, source: IPAddress, to_mac: str | None = None) -> bytes | None:
    """ICMP (or ICMPv6) `error` about the packet `pkt` (parsed from the frame
    `data`), from `source` at `mac` to the packet's sender (at `to_mac`, else
    the frame's source MAC); None where the RFCs forbid one."""
    eth = pkt[Ethernet]
    ip4, ip6 = pkt.get(IPv4), pkt.get(IPv6)
    dst_mac = to_mac or eth.src
    if int(dst_mac[:2], 16) & 1:
        return None
    if ip4 is not None and source.version == 4:
        src, dst = ipaddress.ip_address(ip4.src), ipaddress.ip_address(ip4.dst)
        icmp = pkt.get(ICMP)
        if (ip4.frag_offset or src.is_multicast or src.is_unspecified or src == ipaddress.IPv4Address("255.255.255.255")
                or dst.is_multicast or dst == ipaddress.IPv4Address("255.255.255.255")
                or (icmp is not None and icmp.type not in _ICMP_QUERIES)):
            return None
        kind, code = ERRORS[error][0]
        quoted = data[14:14 + (ip4.ihl or 5) * 4 + 8]
        return bytes(Ethernet(src=mac, dst=dst_mac) / IPv4(src=str(source), dst=ip4.src, ttl=64)
                     / ICMP(type=kind, code=code) / quoted)
    if ip6 is not None and source.version == 6:
        src, dst = ipaddress.ip_address(ip6.src), ipaddress.ip_address(ip6.dst)
        icmp6 = pkt.get(ICMPv6)
        if (src.is_multicast or src.is_unspecified or dst.is_multicast
                or (icmp6 is not None and icmp6.type < 128)):
            return None
        kind, code = ERRORS[error][1]
        room = IPV6_MIN_MTU - 40 - 8
        quoted = data[14:14 + room]
        return bytes(Ethernet(src=mac, dst=dst_mac) / IPv6(src=str(source), dst=ip6.src, hop_limit=64)
                     / ICMPv6(type=kind, code=code) / (b"\0\0\0\0" + quoted))
    return None


def tcp_reset(pkt) -> bytes | None:
    """The RST (RFC 9293 3.10.7.1) that refuses the TCP segment `pkt`, as if from its
    destination; None when it is not TCP or is a RST itself."""
    eth, tcp = pkt[Ethernet], pkt.get(TCP)
    ip = pkt.get(IPv4) or pkt.get(IPv6)
    if tcp is None or ip is None or tcp.flags & TCP_RST:
        return None
    if tcp.flags & TCP_ACK:
        reset = TCP(sport=tcp.dport, dport=tcp.sport, seq=tcp.ack, flags=TCP_RST)
    else:
        length = len(pkt.payload) + bool(tcp.flags & TCP_SYN) + bool(tcp.flags & TCP_FIN)
        reset = TCP(sport=tcp.dport, dport=tcp.sport, ack=(tcp.seq + length) & 0xFFFFFFFF, flags=TCP_RST | TCP_ACK)
    header = IPv4(src=ip.dst, dst=ip.src, ttl=64) if isinstance(ip, IPv4) else IPv6(src=ip.dst, dst=ip.src)
    return bytes(Ethernet(src=eth.dst, dst=eth.src) / header / reset)


# --- NAT ------------------------------------------------------------------------------

def translate(data: bytes, *, src: IPAddress | None = None, dst: IPAddress | None = None,
              sport: int | None = None, dport: int | None = None, icmp_id: int | None = None,
              eth_src: str | None = None, eth_dst: str | None = None, ttl_down: bool = False) -> bytes | None:
    """The IPv4 packet in `data` with addresses, ports (TCP/UDP), the ICMP
    echo identifier and MACs replaced, checksums recomputed; None if it is
    not such a packet."""
    try:
        pkt = parse(data)
    except PacketError:
        return None
    ip = pkt.get(IPv4)
    if ip is None:
        return None
    l4 = pkt.get(TCP) or pkt.get(UDP)
    if src is not None:
        ip.src = str(src)
    if dst is not None:
        ip.dst = str(dst)
    if ttl_down:
        ip.ttl -= 1
    if l4 is not None:
        l4.sport = l4.sport if sport is None else sport
        l4.dport = l4.dport if dport is None else dport
    if icmp_id is not None:
        icmp = pkt.get(ICMP)
        if icmp is None:
            return None
        icmp.id = icmp_id
    eth = pkt[Ethernet]
    eth.src, eth.dst = eth_src or eth.src, eth_dst or eth.dst
    return bytes(pkt.recompute())
