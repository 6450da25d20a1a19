"""Decoder tables and the per-parse context.

Each protocol module registers its decoder here under the number that selects
it (ethertype, IP protocol, UDP port).  Keeping the tables in this leaf module
avoids import cycles: ethernet.py can dispatch to IPv4 without importing it.

A decoder is ``f(buf, off, end, ctx) -> (header, off, end, next_decoder)`` or
None to leave the bytes from ``off`` as raw payload (a variant we do not
model).  ``end`` is where the current protocol's data stops; a decoder with a
length field (IPv4, IPv6, UDP) or a fixed size (ARP, LLDP) may lower it.
Regions nest, so everything past the final ``end`` is one contiguous tail
(Ethernet padding, usually): parse() returns it as Packet.trailer.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

Decoder = Callable[[bytes, int, int, "Ctx"], Optional[tuple[Any, int, int, Any]]]

ETHERTYPES: dict[int, Decoder] = {}  # Ethernet, VLAN and GRE payload types
IPV4_PROTOS: dict[int, Decoder] = {}  # IPv4 protocol field (and after AH)
IPV6_NEXT: dict[int, Decoder] = {}  # IPv6 next header, incl. extension headers
UDP_PORTS: dict[int, Decoder] = {}  # UDP destination port


class Ctx:
    """Mutable state for one parse() call."""

    __slots__ = ("headers", "partial", "trunc", "net", "ext_seen")

    def __init__(self, partial: bool) -> None:
        self.headers: list = []
        self.partial = partial  # caller allows length fields past the buffer end
        self.trunc = False  # the current datagram is incomplete (cut or fragment)
        # (src, dst) address bytes of the innermost IP header for pseudo-header
        # checksums; dst is the final destination when a routing header says so.
        self.net: tuple[bytes, bytes] | None = None
        self.ext_seen = 0  # bitmask of IPv6 extension headers seen (repeat check)

    def allow_short(self) -> bool:
        """May a length field point past the bytes we have?"""
        return self.partial or self.trunc
