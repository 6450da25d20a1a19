"""ICMP for IPv4 (RFC 792)."""

from __future__ import annotations

import struct
from dataclasses import field

from .base import Header, header
from .checksum import csum_finish, csum_part, csum_valid
from .consts import ICMP_ECHO_REQUEST, IPPROTO_ICMP
from .dispatch import IPV4_PROTOS, Ctx
from .errors import truncated

_ICMP = struct.Struct("!BBHHH")


@header
class ICMP(Header):
    """ICMP header (8 bytes).  ``id``/``seq`` are the echo fields; for other
    types they hold the two halves of the 4-byte "rest of header" (e.g.
    ``seq`` = next-hop MTU for "fragmentation needed").  The message body
    (e.g. the quoted datagram of an error) is the payload."""

    type: int = ICMP_ECHO_REQUEST
    code: int = 0
    id: int = 0
    seq: int = 0
    checksum: int | None = None
    _raw: tuple | None = field(default=None, init=False, repr=False, compare=False)

    IP_PROTO = IPPROTO_ICMP
    _AUTO = ("checksum",)
    _HEX = ("checksum",)

    @property
    def checksum_ok(self) -> bool | None:
        """Checksum check over the received message; None if built or cut."""
        if self._raw is None:
            return None
        buf, start, stop = self._raw
        return csum_valid(csum_part(buf[start:stop]))

    def _build(self, payload: bytes, hs: list, i: int) -> bytes:
        cks = self.checksum
        hdr = _ICMP.pack(self.type, self.code, cks or 0, self.id, self.seq)
        if cks is None:
            c = csum_finish(csum_part(hdr) + csum_part(payload))
            hdr = hdr[:2] + c.to_bytes(2, "big") + hdr[4:]
        return hdr + payload


def decode_icmp(buf: bytes, off: int, end: int, ctx: Ctx):
    if end - off < 8:
        raise truncated("ICMP", off, 8, end - off)
    t, code, cks, ident, seq = _ICMP.unpack_from(buf, off)
    h = ICMP(t, code, ident, seq, cks)
    if not ctx.trunc:
        h._raw = (buf, off, end)
    return h, off + 8, end, None


IPV4_PROTOS[IPPROTO_ICMP] = decode_icmp
