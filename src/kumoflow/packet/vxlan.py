"""VXLAN (RFC 7348): 8-byte header on UDP port 4789, inner Ethernet frame."""

from __future__ import annotations

import struct

from .base import Header, check_bits, header
from .consts import UDP_PORT_VXLAN, VXLAN_FLAG_VNI
from .dispatch import UDP_PORTS, Ctx
from .errors import truncated
from .ethernet import decode_ethernet

_VXLAN = struct.Struct("!II")


@header
class VXLAN(Header):
    """VXLAN header: 24-bit ``vni``; ``flags`` 0x08 (I) marks the VNI valid.
    Reserved bits are sent as zero and ignored on receipt (RFC 7348 5).
    Put it under ``UDP(dport=4789)``; the next layer is an Ethernet frame."""

    vni: int = 0
    flags: int = VXLAN_FLAG_VNI

    def _build(self, payload: bytes, hs: list, i: int) -> bytes:
        return _VXLAN.pack(check_bits("VXLAN", "flags", self.flags, 8) << 24,
                           check_bits("VXLAN", "vni", self.vni, 24) << 8) + payload


def decode_vxlan(buf: bytes, off: int, end: int, ctx: Ctx):
    if end - off < 8:
        raise truncated("VXLAN", off, 8, end - off)
    w1, w2 = _VXLAN.unpack_from(buf, off)
    return VXLAN(w2 >> 8, w1 >> 24), off + 8, end, decode_ethernet


UDP_PORTS[UDP_PORT_VXLAN] = decode_vxlan
