"""ARP for IPv4 over Ethernet (RFC 826)."""

from __future__ import annotations

import struct

from .addr import ip4_to_bytes, ip4_to_str, mac_to_bytes
from .base import Header, header
from .consts import ARP_HW_ETHERNET, ARP_REQUEST, ETH_TYPE_ARP, ETH_TYPE_IPV4
from .dispatch import ETHERTYPES, Ctx
from .errors import truncated

_ARP = struct.Struct("!HHBBH6s4s6s4s")
_FIXED = struct.Struct("!HHBB")


@header
class ARP(Header):
    """ARP with 6-byte hardware and 4-byte protocol addresses.

    Other address sizes are a different packet layout; parse() leaves them as
    raw payload.
    """

    op: int = ARP_REQUEST
    src_mac: str = "00:00:00:00:00:00"
    src_ip: str = "0.0.0.0"
    dst_mac: str = "00:00:00:00:00:00"
    dst_ip: str = "0.0.0.0"
    hwtype: int = ARP_HW_ETHERNET
    ptype: int = ETH_TYPE_IPV4

    ETHERTYPE = ETH_TYPE_ARP
    _HEX = ("ptype",)

    def _build(self, payload: bytes, hs: list, i: int) -> bytes:
        return _ARP.pack(self.hwtype, self.ptype, 6, 4, self.op,
                         mac_to_bytes(self.src_mac, "ARP"), ip4_to_bytes(self.src_ip, "ARP"),
                         mac_to_bytes(self.dst_mac, "ARP"), ip4_to_bytes(self.dst_ip, "ARP")
                         ) + payload


def decode_arp(buf: bytes, off: int, end: int, ctx: Ctx):
    if end - off < 8:
        raise truncated("ARP", off, 8, end - off)
    _hw, _pt, hwlen, plen = _FIXED.unpack_from(buf, off)
    if hwlen != 6 or plen != 4:
        return None  # not Ethernet/IPv4 ARP: keep as payload
    if end - off < 28:
        raise truncated("ARP", off, 28, end - off)
    hw, pt, _, _, op, sha, spa, tha, tpa = _ARP.unpack_from(buf, off)
    new_end = off + 28  # what follows is Ethernet padding: Packet.trailer
    return (ARP(op, sha.hex(":"), ip4_to_str(spa), tha.hex(":"), ip4_to_str(tpa), hw, pt),
            new_end, new_end, None)


ETHERTYPES[ETH_TYPE_ARP] = decode_arp
