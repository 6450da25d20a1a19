"""TCP (RFC 9293) with options kept as raw bytes."""

from __future__ import annotations

import struct
from dataclasses import field

from .base import Header, check_bits, header
from .checksum import csum_finish, csum_part, csum_valid
from .consts import IPPROTO_TCP
from .dispatch import IPV4_PROTOS, IPV6_NEXT, Ctx
from .errors import PacketError, truncated
from .options import Option, decode_kind_len
from .pseudo import build_pseudo_sum, pseudo_sum

_TCP = struct.Struct("!HHIIHHHH")


@header
class TCP(Header):
    """TCP header.  ``flags`` holds the low 12 bits of the offset/flags word
    (TCP_SYN, TCP_ACK, ... from consts).  ``options`` is the raw option area,
    zero-padded to a multiple of 4 on build.  ``data_offset`` and
    ``checksum`` (over the IPv4/IPv6 pseudo-header) are computed when None."""

    sport: int = 0
    dport: int = 0
    seq: int = 0
    ack: int = 0
    flags: int = 0
    window: int = 65535
    urgent: int = 0
    options: bytes = b""
    data_offset: int | None = None
    checksum: int | None = None
    _raw: tuple | None = field(default=None, init=False, repr=False, compare=False)

    IP_PROTO = IPPROTO_TCP
    _AUTO = ("data_offset", "checksum")
    _HEX = ("flags", "checksum")

    @property
    def checksum_ok(self) -> bool | None:
        """Checksum check against the received segment; None if this header
        was built, or the segment was cut short (truncated / fragment)."""
        if self._raw is None:
            return None
        buf, start, stop, (src, dst) = self._raw
        return csum_valid(pseudo_sum(src, dst, IPPROTO_TCP, stop - start)
                          + csum_part(buf[start:stop]))

    def option_list(self) -> list[Option]:
        """Options as (kind, value) pairs; PacketError if malformed."""
        return decode_kind_len(self.options, "TCP options")

    def _build(self, payload: bytes, hs: list, i: int) -> bytes:
        opts = self.options
        if len(opts) & 3:
            opts = opts + bytes(-len(opts) & 3)
        doff = (20 + len(opts)) >> 2 if self.data_offset is None else self.data_offset
        word = (check_bits("TCP", "data_offset", doff, 4) << 12) | check_bits(
            "TCP", "flags", self.flags, 12)
        cks = self.checksum
        hdr = _TCP.pack(self.sport, self.dport, self.seq, self.ack, word, self.window,
                        cks or 0, self.urgent) + opts
        if cks is None:
            total = (build_pseudo_sum(hs, i, IPPROTO_TCP, len(hdr) + len(payload), "TCP")
                     + csum_part(hdr) + csum_part(payload))
            hdr = hdr[:16] + csum_finish(total).to_bytes(2, "big") + hdr[18:]
        return hdr + payload


def decode_tcp(buf: bytes, off: int, end: int, ctx: Ctx):
    avail = end - off
    if avail < 20:
        raise truncated("TCP", off, 20, avail)
    sport, dport, seq, ack, word, win, cks, urg = _TCP.unpack_from(buf, off)
    doff = word >> 12
    if doff < 5:
        raise PacketError("TCP", f"data offset {doff} is below the minimum 5", off)
    hlen = doff << 2
    if hlen > avail:
        raise truncated("TCP", off, hlen, avail)
    h = TCP(sport, dport, seq, ack, word & 0x0FFF, win, urg, buf[off + 20:off + hlen], doff, cks)
    if not ctx.trunc and ctx.net is not None:
        h._raw = (buf, off, end, ctx.net)
    return h, off + hlen, end, None


IPV4_PROTOS[IPPROTO_TCP] = decode_tcp
IPV6_NEXT[IPPROTO_TCP] = decode_tcp
