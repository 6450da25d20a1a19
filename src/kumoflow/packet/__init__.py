"""kumoflow.packet -- parse and build packet headers (pure Python, stdlib only).

Building: stack headers with ``/``; the result is a Packet, and ``bytes()``
(or ``.pack()``) gives wire bytes::

    from kumoflow.packet import Ethernet, IPv4, UDP, parse
    pkt = Ethernet(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") \\
        / IPv4(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1234, dport=53) / b"query"
    frame = bytes(pkt)

Fields left as None are filled in on build: type/protocol/next-header fields
from the layer above (Ethernet.type, VLAN.type, IPv4.proto, IPv6.nh, GRE.protocol,
extension header nh), lengths (IPv4 ihl/total_length, IPv6 payload_length,
UDP length, TCP data_offset) and checksums (IPv4, ICMP, ICMPv6, TCP, UDP, GRE
when checksum_present).  A value you set is sent as is, so a wrong
checksum can be crafted on purpose.  Building never mutates the headers.

Parsing::

    pkt = parse(frame)                  # Packet; PacketError if malformed
    ip = pkt[IPv4]                      # first IPv4 header (KeyError if none)
    udp = pkt.get(UDP)                  # or None
    pkt.payload                         # bytes after the last decoded header
    ip.checksum_ok, udp.checksum_ok     # verified against the received bytes
    inner = pkt.after(VXLAN)            # the encapsulated frame, as a Packet
    eth, off = parse_ethernet(frame)    # L2 fast path: just the MAC header

A Packet is ``headers`` (outermost first), ``payload`` and ``trailer``
(bytes past the end that length fields give, e.g. Ethernet padding), so
``parse(frame).pack() == frame``.  To re-emit a parsed packet after changing
fields, call ``pkt.recompute()`` first: it resets length and checksum fields
to None so they are computed again.

Addresses are text: MACs "aa:bb:cc:dd:ee:ff" (lowercase), IPv4 "10.0.0.1",
IPv6 as socket.inet_ntop prints it.  Numbers are ints; option areas (IPv4,
TCP, IPv6 hop-by-hop/destination) are raw bytes with ``option_list()``
decoders.  Constants (ethertypes, IP protocols, flags) are in
kumoflow.packet.consts.

Errors: truncated or hostile input raises PacketError (a ValueError) naming
the header and byte offset; unknown ethertypes / protocols / ports are not
errors, they end decoding and stay in ``payload``.
"""

from . import consts
from .arp import ARP
from .base import Header, Packet
from .errors import PacketError
from .ethernet import VLAN, Ethernet, parse_ethernet
from .gre import GRE, NVGRE
from .icmp import ICMP
from .icmpv6 import (
    ICMPv6, ICMPv6Echo, NDNeighborAdvert, NDNeighborSolicit, NDRouterAdvert, NDRouterSolicit,
)
from .ipv4 import IPv4
from .ipv6 import AH, IPv6, IPv6DestOpts, IPv6Ext, IPv6Fragment, IPv6HopByHop, IPv6Routing
from .lldp import LLDP
from .ndopts import (
    NDOptMTU, NDOptPrefixInfo, NDOptRaw, NDOptSourceLinkAddr, NDOptTargetLinkAddr,
)
from .options import decode_kind_len, decode_tlv6, encode_kind_len, encode_tlv6
from .parser import parse
from .tcp import TCP
from .udp import UDP
from .vxlan import VXLAN
from .checksum import internet_checksum

__all__ = [
    "AH", "ARP", "Ethernet", "GRE", "Header", "ICMP", "ICMPv6", "ICMPv6Echo", "IPv4", "IPv6",
    "IPv6DestOpts", "IPv6Ext", "IPv6Fragment", "IPv6HopByHop", "IPv6Routing", "LLDP",
    "NDNeighborAdvert", "NDNeighborSolicit", "NDOptMTU", "NDOptPrefixInfo", "NDOptRaw",
    "NDOptSourceLinkAddr", "NDOptTargetLinkAddr", "NDRouterAdvert", "NDRouterSolicit", "NVGRE",
    "Packet", "PacketError", "TCP", "UDP", "VLAN", "VXLAN", "consts", "decode_kind_len",
    "decode_tlv6", "encode_kind_len", "encode_tlv6", "internet_checksum", "parse",
    "parse_ethernet",
]
