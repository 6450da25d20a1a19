"""UDP (RFC 768)."""

from __future__ import annotations

import struct
from dataclasses import field

from .base import Header, header
from .checksum import csum_finish, csum_part, csum_valid
from .consts import IPPROTO_UDP
from .dispatch import IPV4_PROTOS, IPV6_NEXT, UDP_PORTS, Ctx
from .errors import PacketError, truncated
from .pseudo import build_pseudo_sum, pseudo_sum

_UDP = struct.Struct("!HHHH")


@header
class UDP(Header):
    """UDP header.  ``length`` and ``checksum`` are computed when None;
    an explicit ``checksum=0`` sends "no checksum" (IPv4 only, RFC 768)."""

    sport: int = 0
    dport: int = 0
    length: int | None = None
    checksum: int | None = None
    _raw: tuple | None = field(default=None, init=False, repr=False, compare=False)

    IP_PROTO = IPPROTO_UDP
    _AUTO = ("length", "checksum")
    _HEX = ("checksum",)

    @property
    def checksum_ok(self) -> bool | None:
        """True if valid or absent (0 over IPv4); False if wrong, or 0 over
        IPv6 where RFC 8200 makes it mandatory; None if built or cut short."""
        if self._raw is None:
            return None
        buf, start, stop, (src, dst) = self._raw
        if self.checksum == 0:
            return len(src) == 4
        return csum_valid(pseudo_sum(src, dst, IPPROTO_UDP, stop - start)
                          + csum_part(buf[start:stop]))

    def _build(self, payload: bytes, hs: list, i: int) -> bytes:
        n = 8 + len(payload)
        length = n if self.length is None else self.length
        cks = self.checksum
        hdr = _UDP.pack(self.sport, self.dport, length, cks or 0)
        if cks is None:
            c = csum_finish(build_pseudo_sum(hs, i, IPPROTO_UDP, n, "UDP")
                            + csum_part(hdr) + csum_part(payload))
            # A computed 0 is sent as 0xFFFF: 0 on the wire means "none".
            hdr = hdr[:6] + (c or 0xFFFF).to_bytes(2, "big")
        return hdr + payload


def decode_udp(buf: bytes, off: int, end: int, ctx: Ctx):
    avail = end - off
    if avail < 8:
        raise truncated("UDP", off, 8, avail)
    sport, dport, ulen, cks = _UDP.unpack_from(buf, off)
    if ulen < 8:
        raise PacketError("UDP", f"length {ulen} is below the minimum 8", off)
    new_end = off + ulen
    if new_end > end:
        if not ctx.allow_short():
            raise PacketError("UDP", f"length {ulen} exceeds the {avail} bytes left", off)
        new_end = end
        ctx.trunc = True
    h = UDP(sport, dport, ulen, cks)
    if not ctx.trunc and ctx.net is not None:
        h._raw = (buf, off, new_end, ctx.net)
    return h, off + 8, new_end, UDP_PORTS.get(dport)


IPV4_PROTOS[IPPROTO_UDP] = decode_udp
IPV6_NEXT[IPPROTO_UDP] = decode_udp
