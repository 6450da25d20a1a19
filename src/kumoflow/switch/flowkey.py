"""The flow key: every OXM field of a packet as an int, extracted once.

A `Packet` is a frame being processed by the pipeline: the bytes (a
bytearray, modified in place by actions), the flow key, and the offsets
the actions need (VLAN tag, L3, L4, ND options).

The key is a list indexed by OXM field number (0..39, OFPXMT_OFB_*), and
past them the TCP flags (TCP_FLAGS, 40: the 12 low bits of the TCP
header's offset/flags word, Open vSwitch's tcp_flags, an ONF experimenter
OXM in OpenFlow 1.3; OFPXMT_OFB_TCP_FLAGS is 42 only from 1.5). Each
present field holds ``PRESENT | value``; an absent field holds 0. PRESENT
is a bit above every field's width, and a compiled match puts it in both
its value and its mask, so one test ``key[f] & mask == value`` checks the
value and that the field exists (a TCP port match never matches a
non-first fragment or an ARP packet). Field values are plain ints: MACs
and IP addresses as big-endian integers.

vlan_vid follows OFPVID_PRESENT: a tagged packet has 0x1000 | vid, an
untagged packet the value 0 (present), so vlan_vid=0 matches "no tag".
"""

from __future__ import annotations

import struct

IN_PORT, IN_PHY_PORT, METADATA, ETH_DST, ETH_SRC, ETH_TYPE, VLAN_VID, VLAN_PCP = range(8)
IP_DSCP, IP_ECN, IP_PROTO, IPV4_SRC, IPV4_DST, TCP_SRC, TCP_DST, UDP_SRC, UDP_DST = range(8, 17)
SCTP_SRC, SCTP_DST, ICMPV4_TYPE, ICMPV4_CODE, ARP_OP, ARP_SPA, ARP_TPA, ARP_SHA, ARP_THA = range(17, 26)
IPV6_SRC, IPV6_DST, IPV6_FLABEL, ICMPV6_TYPE, ICMPV6_CODE = range(26, 31)
IPV6_ND_TARGET, IPV6_ND_SLL, IPV6_ND_TLL, MPLS_LABEL, MPLS_TC, MPLS_BOS = range(31, 37)
PBB_ISID, TUNNEL_ID, IPV6_EXTHDR = range(37, 40)
TCP_FLAGS = 40
N_FIELDS = 41

PRESENT = 1 << 128
PIPELINE_FIELDS = (IN_PORT, IN_PHY_PORT, METADATA, TUNNEL_ID)

# Bit widths of every field's value (vlan_vid with OFPVID_PRESENT: 13 bits).
WIDTHS = {
    IN_PORT: 32, IN_PHY_PORT: 32, METADATA: 64, ETH_DST: 48, ETH_SRC: 48, ETH_TYPE: 16,
    VLAN_VID: 13, VLAN_PCP: 3, IP_DSCP: 6, IP_ECN: 2, IP_PROTO: 8, IPV4_SRC: 32, IPV4_DST: 32,
    TCP_SRC: 16, TCP_DST: 16, UDP_SRC: 16, UDP_DST: 16, SCTP_SRC: 16, SCTP_DST: 16,
    ICMPV4_TYPE: 8, ICMPV4_CODE: 8, ARP_OP: 16, ARP_SPA: 32, ARP_TPA: 32, ARP_SHA: 48, ARP_THA: 48,
    IPV6_SRC: 128, IPV6_DST: 128, IPV6_FLABEL: 20, ICMPV6_TYPE: 8, ICMPV6_CODE: 8,
    IPV6_ND_TARGET: 128, IPV6_ND_SLL: 48, IPV6_ND_TLL: 48, MPLS_LABEL: 20, MPLS_TC: 3, MPLS_BOS: 1,
    PBB_ISID: 24, TUNNEL_ID: 64, IPV6_EXTHDR: 9, TCP_FLAGS: 12,
}

ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_IPV6 = 0x86DD
ETH_TYPE_MPLS = 0x8847
ETH_TYPE_MPLS_MC = 0x8848
ETH_TYPE_PBB = 0x88E7
ETH_TYPE_NOT_ETH = 0x05FF          # 802.3 length field: no ethertype (as Open vSwitch reports it)
VLAN_TPIDS = frozenset((0x8100, 0x88A8))
MPLS_TYPES = frozenset((ETH_TYPE_MPLS, ETH_TYPE_MPLS_MC))

PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6, PROTO_SCTP = 1, 6, 17, 58, 132

# ipv6_exthdr flags (OFPIEH_*)
IEH_NONEXT, IEH_ESP, IEH_AUTH, IEH_DEST, IEH_FRAG, IEH_ROUTER, IEH_HOP, IEH_UNREP, IEH_UNSEQ = (
    1, 2, 4, 8, 16, 32, 64, 128, 256)

_from = int.from_bytes


class Packet:
    """A frame inside the pipeline.

    Offsets are -1 when the header is absent. `et_off` is the offset of the
    ethertype after the VLAN tags, `l3` where the network header starts,
    `l4` the transport header (only for the first fragment), `ip_end` where
    the IP datagram ends by its length field.
    """

    __slots__ = ("data", "key", "in_port", "queue_id", "vlan_off", "et_off", "l3", "l4", "ip_end",
                 "nd_sll", "nd_tll", "frag", "nh_off")

    def __init__(self, data, in_port: int, in_phy_port: int | None = None, tunnel_id: int = 0,
                 metadata: int = 0) -> None:
        self.data = data if type(data) is bytearray else bytearray(data)
        key = [0] * N_FIELDS
        key[IN_PORT] = PRESENT | in_port
        key[IN_PHY_PORT] = PRESENT | (in_port if in_phy_port is None else in_phy_port)
        key[METADATA] = PRESENT | metadata
        key[TUNNEL_ID] = PRESENT | tunnel_id
        self.key = key
        self.in_port = in_port
        self.queue_id = None
        extract(self)

    def copy(self) -> "Packet":
        p = Packet.__new__(Packet)
        p.data = bytearray(self.data)
        p.key = list(self.key)
        p.in_port = self.in_port
        p.queue_id = self.queue_id
        p.vlan_off = self.vlan_off
        p.et_off = self.et_off
        p.l3 = self.l3
        p.l4 = self.l4
        p.ip_end = self.ip_end
        p.nd_sll = self.nd_sll
        p.nd_tll = self.nd_tll
        p.frag = self.frag
        p.nh_off = self.nh_off
        return p

    def field(self, code: int) -> int | None:
        """A field's value, or None when the packet does not have it."""
        v = self.key[code]
        return v & ~PRESENT if v & PRESENT else None

    @property
    def metadata(self) -> int:
        return self.key[METADATA] & ~PRESENT

    @property
    def tunnel_id(self) -> int:
        return self.key[TUNNEL_ID] & ~PRESENT

    @property
    def in_phy_port(self) -> int:
        return self.key[IN_PHY_PORT] & ~PRESENT


def extract(pkt: Packet) -> None:
    """(Re)compute the header fields of pkt.key and its offsets from pkt.data.

    Pipeline fields (in_port, in_phy_port, metadata, tunnel_id) are kept.
    Truncated or malformed headers leave their fields absent.
    """
    d = pkt.data
    n = len(d)
    k = pkt.key
    for i in range(ETH_DST, TUNNEL_ID):
        k[i] = 0
    k[IPV6_EXTHDR] = k[TCP_FLAGS] = 0
    pkt.vlan_off = pkt.et_off = pkt.l3 = pkt.l4 = pkt.nd_sll = pkt.nd_tll = pkt.nh_off = -1
    pkt.ip_end = n
    pkt.frag = False
    if n < 14:
        return
    P = PRESENT
    k[ETH_DST] = P | _from(d[0:6], "big")
    k[ETH_SRC] = P | _from(d[6:12], "big")
    o = 12
    et = d[12] << 8 | d[13]
    if et in VLAN_TPIDS and n >= 18:
        tci = d[14] << 8 | d[15]
        k[VLAN_VID] = P | 0x1000 | (tci & 0xFFF)
        k[VLAN_PCP] = P | (tci >> 13)
        pkt.vlan_off = 12
        o = 16
        et = d[16] << 8 | d[17]
        while et in VLAN_TPIDS and o + 6 <= n:
            o += 4
            et = d[o] << 8 | d[o + 1]
    else:
        k[VLAN_VID] = P
    if et < 0x600:
        et = ETH_TYPE_NOT_ETH
    k[ETH_TYPE] = P | et
    pkt.et_off = o
    l3 = o + 2
    pkt.l3 = l3
    if et == ETH_TYPE_IPV4:
        _ipv4(pkt, d, n, k, l3)
    elif et == ETH_TYPE_IPV6:
        _ipv6(pkt, d, n, k, l3)
    elif et == ETH_TYPE_ARP:
        if n >= l3 + 8:
            k[ARP_OP] = P | (d[l3 + 6] << 8 | d[l3 + 7])
            # Addresses only for Ethernet / IPv4 ARP (hlen 6, plen 4).
            if n >= l3 + 28 and d[l3 + 4] == 6 and d[l3 + 5] == 4:
                k[ARP_SHA] = P | _from(d[l3 + 8:l3 + 14], "big")
                k[ARP_SPA] = P | _from(d[l3 + 14:l3 + 18], "big")
                k[ARP_THA] = P | _from(d[l3 + 18:l3 + 24], "big")
                k[ARP_TPA] = P | _from(d[l3 + 24:l3 + 28], "big")
    elif et in MPLS_TYPES:
        if n >= l3 + 4:
            lse = _from(d[l3:l3 + 4], "big")
            k[MPLS_LABEL] = P | (lse >> 12)
            k[MPLS_TC] = P | ((lse >> 9) & 7)
            k[MPLS_BOS] = P | ((lse >> 8) & 1)
    elif et == ETH_TYPE_PBB:
        if n >= l3 + 4:
            k[PBB_ISID] = P | _from(d[l3 + 1:l3 + 4], "big")


def _ipv4(pkt: Packet, d: bytearray, n: int, k: list, l3: int) -> None:
    if n < l3 + 20 or d[l3] >> 4 != 4:
        return
    ihl = (d[l3] & 15) * 4
    if ihl < 20 or n < l3 + ihl:
        return
    P = PRESENT
    total = d[l3 + 2] << 8 | d[l3 + 3]
    end = l3 + total if total >= ihl else n
    if end > n:
        end = n
    pkt.ip_end = end
    tos = d[l3 + 1]
    proto = d[l3 + 9]
    k[IP_DSCP] = P | (tos >> 2)
    k[IP_ECN] = P | (tos & 3)
    k[IP_PROTO] = P | proto
    pkt.nh_off = l3 + 9
    k[IPV4_SRC] = P | _from(d[l3 + 12:l3 + 16], "big")
    k[IPV4_DST] = P | _from(d[l3 + 16:l3 + 20], "big")
    ff = d[l3 + 6] << 8 | d[l3 + 7]
    if ff & 0x3FFF:
        pkt.frag = True
    if ff & 0x1FFF == 0:
        _l4(pkt, d, k, l3 + ihl, end, proto, False)


# Extension header ranks in the order RFC 8200 recommends.
_HOP, _DEST1, _ROUTER, _FRAG, _AUTH, _ESP, _DEST2 = range(7)


def _ipv6(pkt: Packet, d: bytearray, n: int, k: list, l3: int) -> None:
    if n < l3 + 40 or d[l3] >> 4 != 6:
        return
    P = PRESENT
    tc = (d[l3] & 15) << 4 | d[l3 + 1] >> 4
    k[IP_DSCP] = P | (tc >> 2)
    k[IP_ECN] = P | (tc & 3)
    k[IPV6_FLABEL] = P | ((d[l3 + 1] & 15) << 16 | d[l3 + 2] << 8 | d[l3 + 3])
    k[IPV6_SRC] = P | _from(d[l3 + 8:l3 + 24], "big")
    k[IPV6_DST] = P | _from(d[l3 + 24:l3 + 40], "big")
    plen = d[l3 + 4] << 8 | d[l3 + 5]
    end = l3 + 40 + plen if plen else n
    if end > n:
        end = n
    pkt.ip_end = end
    nh = d[l3 + 6]
    nh_at = l3 + 6              # where the next header that ends up as ip_proto is written
    o = l3 + 40
    flags = 0
    last = -1
    seen = 0
    first_fragment = True
    while True:
        if nh == 0 or nh == 60 or nh == 43:
            if nh == 0:
                bit, rank = IEH_HOP, _HOP
            elif nh == 43:
                bit, rank = IEH_ROUTER, _ROUTER
            else:
                bit, rank = IEH_DEST, (_DEST1 if last < _ROUTER else _DEST2)
            if o + 2 > end:
                break
            size = (d[o + 1] + 1) * 8
        elif nh == 44:
            bit, rank, size = IEH_FRAG, _FRAG, 8
            if o + 8 > end:
                break
            pkt.frag = True
            if (d[o + 2] << 8 | d[o + 3]) >> 3:
                first_fragment = False
        elif nh == 51:
            bit, rank = IEH_AUTH, _AUTH
            if o + 2 > end:
                break
            size = (d[o + 1] + 2) * 4
        elif nh == 50:
            flags |= IEH_ESP | (IEH_UNREP if seen & (1 << _ESP) else 0)
            if last > _ESP:
                flags |= IEH_UNSEQ
            break                   # the rest is encrypted
        elif nh == 59:
            flags |= IEH_NONEXT
            break
        else:
            break
        rbit = 1 << rank
        if seen & rbit:             # DEST may appear twice, at its two places
            flags |= IEH_UNREP
        if rank < last or (rank == _HOP and o != l3 + 40):
            flags |= IEH_UNSEQ
        seen |= rbit
        last = max(last, rank)
        flags |= bit
        nh = d[o]
        nh_at = o
        o += size
        if o > end:
            break
    k[IP_PROTO] = P | nh
    pkt.nh_off = nh_at
    k[IPV6_EXTHDR] = P | flags
    if first_fragment and o <= end:
        _l4(pkt, d, k, o, end, nh, True)


def _l4(pkt: Packet, d: bytearray, k: list, o: int, end: int, proto: int, v6: bool) -> None:
    """Transport fields at offset o (the first fragment's transport header)."""
    P = PRESENT
    n = len(d)
    if proto == PROTO_TCP:
        if o + 20 <= n:
            pkt.l4 = o
            k[TCP_SRC] = P | (d[o] << 8 | d[o + 1])
            k[TCP_DST] = P | (d[o + 2] << 8 | d[o + 3])
            k[TCP_FLAGS] = P | ((d[o + 12] & 0x0F) << 8 | d[o + 13])
    elif proto == PROTO_UDP:
        if o + 8 <= n:
            pkt.l4 = o
            k[UDP_SRC] = P | (d[o] << 8 | d[o + 1])
            k[UDP_DST] = P | (d[o + 2] << 8 | d[o + 3])
    elif proto == PROTO_SCTP:
        if o + 12 <= n:
            pkt.l4 = o
            k[SCTP_SRC] = P | (d[o] << 8 | d[o + 1])
            k[SCTP_DST] = P | (d[o + 2] << 8 | d[o + 3])
    elif proto == PROTO_ICMP and not v6:
        if o + 4 <= n:
            pkt.l4 = o
            k[ICMPV4_TYPE] = P | d[o]
            k[ICMPV4_CODE] = P | d[o + 1]
    elif proto == PROTO_ICMPV6 and v6:
        if o + 4 <= n:
            pkt.l4 = o
            t = d[o]
            k[ICMPV6_TYPE] = P | t
            k[ICMPV6_CODE] = P | d[o + 1]
            if (t == 135 or t == 136) and d[o + 1] == 0 and o + 24 <= min(end, n):
                k[IPV6_ND_TARGET] = P | _from(d[o + 8:o + 24], "big")
                # Link-layer address options: the field exists (zero) even
                # when the option is absent, as in Open vSwitch.
                want = 1 if t == 135 else 2
                code = IPV6_ND_SLL if t == 135 else IPV6_ND_TLL
                k[code] = P
                p = o + 24
                stop = min(end, n)
                while p + 8 <= stop:
                    otype, olen = d[p], d[p + 1]
                    if olen == 0:
                        break
                    if otype == want and olen == 1:
                        k[code] = P | _from(d[p + 2:p + 8], "big")
                        if t == 135:
                            pkt.nd_sll = p + 2
                        else:
                            pkt.nd_tll = p + 2
                        break
                    p += olen * 8


# Bytes 0-37 of an untagged Ethernet / IPv4 frame: the MAC addresses,
# ethertype, version/IHL and TOS (as 8 + 8 bytes), flags and fragment
# offset, protocol, the two addresses (8 bytes) and the first 4 bytes of
# the transport header (TCP and UDP ports; ICMP type and code, not its
# checksum); skipped: total length, identification, TTL, checksum. For TCP
# also bytes 46-47, the data offset and the flags (TCP_FLAGS; the offset
# comes along, which only splits a flow's frames by their header length):
# a tuple one item longer. With one 802.1Q tag the same fields 4 bytes
# further on, and the tag (TPID and TCI) in the key too: a tuple one item
# longer than the untagged one, whose second item (bytes 8-15) differs
# anyway (the TPID where the ethertype was), so the two never collide.
# Everything fast_key checks is inside the key, so a frame whose bytes give
# a key that is in a cache is such a frame (given its length): see
# EMC_KEY.
_FAST = struct.Struct("!QQ4xHxB2xQI")
_FAST_TCP = struct.Struct("!QQ4xHxB2xQI8xH")
_FAST_ICMP = struct.Struct("!QQ4xHxB2xQH")
_FAST_VLAN = struct.Struct("!QQI4xHxB2xQI")
_FAST_VLAN_TCP = struct.Struct("!QQI4xHxB2xQI8xH")
_FAST_VLAN_ICMP = struct.Struct("!QQI4xHxB2xQH")
#: Unpack the key of an untagged UDP frame (EMC_KEY) or TCP frame
#: (EMC_KEY_TCP) of at least EMC_MIN_LEN bytes, chosen by the protocol byte
#: (frame[23]: 17 or 6): a frame whose key so made is the fast key of some
#: frame has that fast key (no other checks needed: ethertype, IHL,
#: protocol and fragment bits are part of it; ICMP and tagged keys have
#: other shapes or values and never collide). Not for other protocols: an
#: ICMP frame read as UDP could give the key of another ICMP type.
EMC_KEY = _FAST.unpack_from
EMC_KEY_TCP = _FAST_TCP.unpack_from
EMC_MIN_LEN = 54


def fast_key(frame) -> tuple | None:
    """A cheap exact key for the common frame, or None for any other.

    For an Ethernet frame, untagged or with one 802.1Q tag, carrying IPv4
    without options, not a later fragment, with a whole TCP or UDP header
    (or ICMP), the result decides every field `extract` would put in the
    key (see _FAST). What varies from packet to packet of one flow
    (length, identification, TTL, checksums, TCP sequence numbers) is left
    out; the TCP flags are in. `more_fragments` says whether it is a first
    fragment (`Packet.frag`). A frame received with a tunnel id or an
    in_phy_port of its own is not decided by its bytes alone: callers
    handle those. `fast_packet` makes the Packet of a frame from the key of
    an earlier frame with the same fast key.
    """
    n = len(frame)
    if n < 42:
        return None
    if frame[12] == 8 and frame[13] == 0 and frame[14] == 0x45:
        proto = frame[23]
        if proto == PROTO_UDP:
            t = _FAST.unpack_from(frame)
        elif proto == PROTO_TCP and n >= 54:
            t = _FAST_TCP.unpack_from(frame)
        elif proto == PROTO_ICMP:
            t = _FAST_ICMP.unpack_from(frame)
        else:
            return None
        frag = t[2]
    elif frame[12] == 0x81 and frame[13] == 0 and frame[16] == 8 and frame[17] == 0 and frame[18] == 0x45:
        proto = frame[27]
        if proto == PROTO_UDP and n >= 46:
            t = _FAST_VLAN.unpack_from(frame)
        elif proto == PROTO_TCP and n >= 58:
            t = _FAST_VLAN_TCP.unpack_from(frame)
        elif proto == PROTO_ICMP and n >= 42:
            t = _FAST_VLAN_ICMP.unpack_from(frame)
        else:
            return None
        frag = t[3]
    else:
        return None
    if frag & 0x1FFF:
        return None
    return t


def more_fragments(frame) -> bool:
    """Is a frame that has a fast key the first fragment of a datagram (more to come)?"""
    return bool(frame[20 if frame[12] == 8 else 24] & 0x20)


def fast_packet(frame, in_port: int, key: list) -> Packet:
    """The Packet of a frame that has a fast key, without parsing it: `key`
    is the flow key of a frame with the same fast key received on the same
    port (with no tunnel id or in_phy_port of its own); the offsets are
    those of an IPv4 header without options, after one 802.1Q tag or none."""
    p = Packet.__new__(Packet)
    d = p.data = bytearray(frame)
    p.key = list(key)
    p.in_port = in_port
    p.queue_id = None
    p.nd_sll = p.nd_tll = -1
    if d[12] == 0x81:
        p.vlan_off = 12
        o = 4
    else:
        p.vlan_off = -1
        o = 0
    p.et_off = 12 + o
    p.l3 = l3 = 14 + o
    p.l4 = l3 + 20
    p.nh_off = l3 + 9
    n = len(d)
    total = d[l3 + 2] << 8 | d[l3 + 3]
    end = l3 + total if total >= 20 else n
    p.ip_end = end if end < n else n
    p.frag = bool(d[l3 + 6] & 0x3F or d[l3 + 7])
    return p


#: The fields flow_hash reads.
HASH_FIELDS = (ETH_SRC, ETH_DST, ETH_TYPE, VLAN_VID, IP_PROTO, IPV4_SRC, IPV4_DST, IPV6_SRC, IPV6_DST,
               TCP_SRC, TCP_DST, UDP_SRC, UDP_DST, SCTP_SRC, SCTP_DST)


def flow_hash(key: list) -> int:
    """A stable 32-bit hash of a packet's flow (addresses, protocol, ports:
    HASH_FIELDS), for choosing a select-group bucket. Deterministic across runs."""
    h = 0x811C9DC5
    for f in HASH_FIELDS:
        v = key[f]
        while v:
            h = ((h ^ (v & 0xFFFFFFFF)) * 0x01000193) & 0xFFFFFFFF
            v >>= 32
        h = ((h ^ f) * 0x01000193) & 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x45D9F3B) & 0xFFFFFFFF
    h ^= h >> 16
    return h
