"""GRE (RFC 2784, keys and sequence numbers RFC 2890) and NVGRE (RFC 7637)."""

from __future__ import annotations

import struct
from dataclasses import field

from .base import Header, check_bits, header, next_l2_type
from .checksum import csum_finish, csum_part, csum_valid
from .consts import (
    ETH_TYPE_TEB, GRE_FLAG_CHECKSUM, GRE_FLAG_KEY, GRE_FLAG_ROUTING, GRE_FLAG_SEQ,
    GRE_VERSION_MASK, IPPROTO_GRE,
)
from .dispatch import ETHERTYPES, IPV4_PROTOS, IPV6_NEXT, Ctx
from .errors import truncated

_BASE = struct.Struct("!HH")
_WORD = struct.Struct("!I")


@header
class GRE(Header):
    """GRE version 0.  ``protocol`` (an ethertype) comes from the next layer
    when None: 0x6558 for an inner Ethernet frame.  ``key`` / ``seq`` are
    present when not None.  With ``checksum_present`` the checksum over the
    GRE header and payload is computed when ``checksum`` is None."""

    protocol: int | None = None
    key: int | None = None
    seq: int | None = None
    checksum_present: bool = False
    checksum: int | None = None
    _raw: tuple | None = field(default=None, init=False, repr=False, compare=False)

    IP_PROTO = IPPROTO_GRE
    _AUTO = ("checksum",)
    _HEX = ("protocol", "checksum")

    @property
    def checksum_ok(self) -> bool | None:
        """True if valid or absent, False if wrong, None if built or cut."""
        if self._raw is None:
            return None
        if not self.checksum_present:
            return True
        buf, start, stop = self._raw
        return csum_valid(csum_part(buf[start:stop]))

    def _build(self, payload: bytes, hs: list, i: int) -> bytes:
        proto = self.protocol
        if proto is None:
            proto = next_l2_type(hs, i, type(self).__name__)
        flags = 0
        parts = [b""]
        if self.checksum_present:
            flags |= GRE_FLAG_CHECKSUM
            parts.append(_BASE.pack(self.checksum or 0, 0))
        if self.key is not None:
            flags |= GRE_FLAG_KEY
            parts.append(_WORD.pack(self.key))
        if self.seq is not None:
            flags |= GRE_FLAG_SEQ
            parts.append(_WORD.pack(self.seq))
        parts[0] = _BASE.pack(flags, proto)
        hdr = b"".join(parts)
        if self.checksum_present and self.checksum is None:
            c = csum_finish(csum_part(hdr) + csum_part(payload))
            hdr = hdr[:4] + c.to_bytes(2, "big") + hdr[6:]
        return hdr + payload


class NVGRE(GRE):
    """NVGRE: GRE with a key made of a 24-bit virtual subnet ID and an
    8-bit flow ID, carrying an Ethernet frame (protocol 0x6558).

    On parse, any GRE packet of that exact shape (key, no checksum, no
    sequence, protocol 0x6558) comes back as NVGRE; it is still a GRE.
    """

    __slots__ = ()

    def __init__(self, vsid: int = 0, flow_id: int = 0, protocol: int | None = ETH_TYPE_TEB,
                 *, key: int | None = None, seq: int | None = None,
                 checksum_present: bool = False, checksum: int | None = None) -> None:
        if key is None:  # key= is how dataclasses.replace() / copy() call us
            key = (check_bits("NVGRE", "vsid", vsid, 24) << 8) | check_bits(
                "NVGRE", "flow_id", flow_id, 8)
        GRE.__init__(self, protocol, key, seq, checksum_present, checksum)

    @property
    def vsid(self) -> int:
        return (self.key or 0) >> 8

    @property
    def flow_id(self) -> int:
        return (self.key or 0) & 0xFF

    def __repr__(self) -> str:
        extra = "" if self.protocol == ETH_TYPE_TEB else f", protocol={self.protocol!r}"
        return f"NVGRE(vsid={self.vsid}, flow_id={self.flow_id}{extra})"


def decode_gre(buf: bytes, off: int, end: int, ctx: Ctx):
    avail = end - off
    if avail < 4:
        raise truncated("GRE", off, 4, avail)
    flags, proto = _BASE.unpack_from(buf, off)
    if flags & (GRE_FLAG_ROUTING | GRE_VERSION_MASK):
        return None  # RFC 1701 routing or PPTP (version 1): not modelled, keep raw
    has_c = flags & GRE_FLAG_CHECKSUM
    has_k = flags & GRE_FLAG_KEY
    has_s = flags & GRE_FLAG_SEQ
    hlen = 4 + (4 if has_c else 0) + (4 if has_k else 0) + (4 if has_s else 0)
    if avail < hlen:
        raise truncated("GRE", off, hlen, avail)
    pos = off + 4
    cks = key = seq = None
    if has_c:
        cks = _BASE.unpack_from(buf, pos)[0]
        pos += 4
    if has_k:
        key = _WORD.unpack_from(buf, pos)[0]
        pos += 4
    if has_s:
        seq = _WORD.unpack_from(buf, pos)[0]
    if proto == ETH_TYPE_TEB and has_k and not has_c and not has_s:
        h: GRE = NVGRE(key=key)
    else:
        h = GRE(proto, key, seq, bool(has_c), cks)
    if not ctx.trunc:
        h._raw = (buf, off, end)
    return h, off + hlen, end, ETHERTYPES.get(proto)


IPV4_PROTOS[IPPROTO_GRE] = decode_gre
IPV6_NEXT[IPPROTO_GRE] = decode_gre
