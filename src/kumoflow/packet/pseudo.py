"""Pseudo-header sums for TCP, UDP and ICMPv6 checksums (RFC 768, 9293, 8200 8.1)."""

from __future__ import annotations

from .addr import ip4_to_bytes, ip6_to_bytes
from .errors import PacketError
from .ipv4 import IPv4
from .ipv6 import IPv6, IPv6Ext, IPv6Routing

_from_bytes = int.from_bytes


def pseudo_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Congruent word sum of the IPv4 or IPv6 pseudo-header.

    Field widths differ between the two (16 vs 32-bit length) but the sums
    are congruent mod 0xFFFF, which is all the checksum needs.
    """
    return _from_bytes(src, "big") + _from_bytes(dst, "big") + proto + length


def build_pseudo_sum(hs: list, i: int, proto: int, length: int, who: str) -> int:
    """Pseudo-header sum for hs[i] from the nearest IP layer below it."""
    final = None
    j = i - 1
    while j >= 0:
        h = hs[j]
        if isinstance(h, IPv6Ext):
            if final is None and isinstance(h, IPv6Routing):
                final = h.final_destination()
            j -= 1
            continue
        if isinstance(h, IPv4):
            return pseudo_sum(ip4_to_bytes(h.src), ip4_to_bytes(h.dst), proto, length)
        if isinstance(h, IPv6):
            dst = final if final is not None else ip6_to_bytes(h.dst)
            return pseudo_sum(ip6_to_bytes(h.src), dst, proto, length)
        break
    raise PacketError(who, "checksum needs an IPv4/IPv6 layer below; set checksum explicitly")
