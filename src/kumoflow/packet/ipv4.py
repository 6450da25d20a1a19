"""IPv4 (RFC 791) with options kept as raw bytes."""

from __future__ import annotations

import struct
from dataclasses import field

from .addr import ip4_to_bytes, ip4_to_str
from .base import Header, check_bits, header, next_ip_proto
from .checksum import csum_part, csum_valid, internet_checksum
from .consts import ETH_TYPE_IPV4, IPPROTO_IPIP, IPV4_FLAG_DF, IPV4_FLAG_MF
from .dispatch import ETHERTYPES, IPV4_PROTOS, IPV6_NEXT, Ctx
from .errors import PacketError, truncated
from .options import Option, decode_kind_len

_IP4 = struct.Struct("!BBHHHBBH4s4s")


@header
class IPv4(Header):
    """IPv4 header.  ``proto``, ``ihl``, ``total_length`` and ``checksum``
    are computed on build when None.  ``options`` is the raw option area;
    it is zero-padded (end-of-list) to a multiple of 4 on build.
    ``frag_offset`` is in 8-byte units, as on the wire."""

    src: str = "0.0.0.0"
    dst: str = "0.0.0.0"
    proto: int | None = None
    ttl: int = 64
    tos: int = 0
    id: int = 0
    flags: int = 0
    frag_offset: int = 0
    options: bytes = b""
    ihl: int | None = None
    total_length: int | None = None
    checksum: int | None = None
    _raw: tuple | None = field(default=None, init=False, repr=False, compare=False)

    ETHERTYPE = ETH_TYPE_IPV4
    IP_PROTO = IPPROTO_IPIP
    _AUTO = ("ihl", "total_length", "checksum")
    _HEX = ("checksum",)

    @property
    def dscp(self) -> int:
        return self.tos >> 2

    @property
    def ecn(self) -> int:
        return self.tos & 3

    @property
    def df(self) -> bool:
        return bool(self.flags & IPV4_FLAG_DF)

    @property
    def mf(self) -> bool:
        return bool(self.flags & IPV4_FLAG_MF)

    @property
    def checksum_ok(self) -> bool | None:
        """Header checksum check against the received bytes (None if built)."""
        if self._raw is None:
            return None
        buf, start, stop = self._raw
        return csum_valid(csum_part(buf[start:stop]))

    def option_list(self) -> list[Option]:
        """Options as (type, value) pairs; PacketError if malformed."""
        return decode_kind_len(self.options, "IPv4 options")

    def _build(self, payload: bytes, hs: list, i: int) -> bytes:
        opts = self.options
        if len(opts) & 3:
            opts = opts + bytes(-len(opts) & 3)
        hlen = 20 + len(opts)
        ihl = hlen >> 2 if self.ihl is None else self.ihl
        check_bits("IPv4", "ihl", ihl, 4)
        total = hlen + len(payload) if self.total_length is None else self.total_length
        proto = self.proto
        if proto is None:
            proto = next_ip_proto(hs, i, payload, "IPv4", False)
        fo = (check_bits("IPv4", "flags", self.flags, 3) << 13) | check_bits(
            "IPv4", "frag_offset", self.frag_offset, 13)
        cks = self.checksum
        hdr = _IP4.pack(0x40 | ihl, self.tos, total, self.id, fo, self.ttl, proto,
                        cks or 0, ip4_to_bytes(self.src), ip4_to_bytes(self.dst)) + opts
        if cks is None:
            hdr = hdr[:10] + internet_checksum(hdr).to_bytes(2, "big") + hdr[12:]
        return hdr + payload


def decode_ipv4(buf: bytes, off: int, end: int, ctx: Ctx):
    avail = end - off
    if avail < 20:
        raise truncated("IPv4", off, 20, avail)
    vihl, tos, tlen, ident, fo, ttl, proto, cks, src, dst = _IP4.unpack_from(buf, off)
    if vihl >> 4 != 4:
        raise PacketError("IPv4", f"version is {vihl >> 4}, not 4", off)
    ihl = vihl & 15
    hlen = ihl << 2
    if ihl < 5:
        raise PacketError("IPv4", f"IHL {ihl} is below the minimum 5", off)
    if hlen > avail:
        raise truncated("IPv4", off, hlen, avail)
    if tlen < hlen:
        raise PacketError("IPv4", f"total length {tlen} is shorter than the header ({hlen})", off)
    new_end = off + tlen
    if new_end > end:
        if not ctx.allow_short():
            raise PacketError("IPv4", f"total length {tlen} exceeds the {avail} bytes left", off)
        new_end = end
        ctx.trunc = True
    h = IPv4(ip4_to_str(src), ip4_to_str(dst), proto, ttl, tos, ident, fo >> 13, fo & 0x1FFF,
             buf[off + 20:off + hlen], ihl, tlen, cks)
    h._raw = (buf, off, off + hlen)
    ctx.net = (src, dst)
    ctx.ext_seen = 0
    if fo & 0x1FFF:
        return h, off + hlen, new_end, None  # later fragment: no upper header here
    if fo & 0x2000:
        ctx.trunc = True  # first fragment: upper layer lengths run past this packet
    return h, off + hlen, new_end, IPV4_PROTOS.get(proto)


ETHERTYPES[ETH_TYPE_IPV4] = decode_ipv4
IPV4_PROTOS[IPPROTO_IPIP] = decode_ipv4
IPV6_NEXT[IPPROTO_IPIP] = decode_ipv4
