"""IPv6 (RFC 8200) and its extension headers, plus AH (RFC 4302).

Extension headers are separate layers between IPv6 and the upper layer, in
wire order, each with its own ``nh`` (next header) field:
``IPv6(...) / IPv6HopByHop(...) / IPv6Fragment(...) / UDP(...)``.
"""

from __future__ import annotations

import struct

from .addr import ip6_to_bytes, ip6_to_str
from .base import Header, check_bits, header, next_ip_proto
from .consts import (
    ETH_TYPE_IPV6, IPPROTO_AH, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_IPV6,
    IPPROTO_ROUTING,
)
from .dispatch import ETHERTYPES, IPV4_PROTOS, IPV6_NEXT, Ctx
from .errors import PacketError, truncated
from .options import Option, decode_tlv6, pad_tlv6

_IP6 = struct.Struct("!IHBB16s16s")
_FRAG = struct.Struct("!BBHI")
_AH = struct.Struct("!BBHII")
_EXT2 = struct.Struct("!BB")


@header
class IPv6(Header):
    """IPv6 fixed header.  ``nh`` and ``payload_length`` are computed on
    build when None (nh = 59, No Next Header, when nothing follows)."""

    src: str = "::"
    dst: str = "::"
    nh: int | None = None
    hop_limit: int = 64
    tc: int = 0
    flow_label: int = 0
    payload_length: int | None = None

    ETHERTYPE = ETH_TYPE_IPV6
    IP_PROTO = IPPROTO_IPV6
    _AUTO = ("payload_length",)
    _HEX = ("flow_label",)

    def _build(self, payload: bytes, hs: list, i: int) -> bytes:
        nh = self.nh
        if nh is None:
            nh = next_ip_proto(hs, i, payload, "IPv6", True)
        vtf = (0x60000000 | (check_bits("IPv6", "tc", self.tc, 8) << 20)
               | check_bits("IPv6", "flow_label", self.flow_label, 20))
        plen = len(payload) if self.payload_length is None else self.payload_length
        return _IP6.pack(vtf, plen, nh, self.hop_limit,
                         ip6_to_bytes(self.src), ip6_to_bytes(self.dst)) + payload


class IPv6Ext(Header):
    """Marker base: headers that sit between an IP header and the upper
    layer (IPv6 extension headers, AH).  Pseudo-header lookups skip them."""

    __slots__ = ()

    def _nh(self, hs: list, i: int, payload: bytes) -> int:
        nh = self.nh  # type: ignore[attr-defined]
        if nh is None:
            nh = next_ip_proto(hs, i, payload, type(self).__name__, True)
        return nh


@header
class IPv6HopByHop(IPv6Ext):
    """Hop-by-hop options.  ``options`` is the raw TLV area; Pad1/PadN are
    added on build to reach a multiple of 8 bytes."""

    options: bytes = b""
    nh: int | None = None

    IP_PROTO = IPPROTO_HOPOPTS

    def option_list(self) -> list[Option]:
        return decode_tlv6(self.options, "IPv6HopByHop")

    def _build(self, payload: bytes, hs: list, i: int) -> bytes:
        return _build_opts(self, payload, hs, i)


@header
class IPv6DestOpts(IPv6Ext):
    """Destination options; same layout as hop-by-hop."""

    options: bytes = b""
    nh: int | None = None

    IP_PROTO = IPPROTO_DSTOPTS

    def option_list(self) -> list[Option]:
        return decode_tlv6(self.options, "IPv6DestOpts")

    def _build(self, payload: bytes, hs: list, i: int) -> bytes:
        return _build_opts(self, payload, hs, i)


def _build_opts(h, payload: bytes, hs: list, i: int) -> bytes:
    opts = pad_tlv6(h.options)
    hlen = (2 + len(opts)) // 8 - 1
    return _EXT2.pack(h._nh(hs, i, payload), hlen) + opts + payload


@header
class IPv6Routing(IPv6Ext):
    """Routing header.  ``data`` is everything after the 4 common bytes
    (for type 0: 4 reserved bytes then addresses); zero-padded to a
    multiple of 8 on build."""

    type: int = 0
    segments_left: int = 0
    data: bytes = b""
    nh: int | None = None

    IP_PROTO = IPPROTO_ROUTING

    @property
    def addresses(self) -> list[str]:
        """Addresses of a type 0 / type 2 header (RFC 5095 / RFC 6275)."""
        d = self.data
        return [ip6_to_str(d[k:k + 16]) for k in range(4, len(d) - 15, 16)]

    def final_destination(self) -> bytes | None:
        """Address the upper-layer pseudo-header must use (RFC 8200 8.1):
        while segments are left, the final hop is in this header."""
        if not self.segments_left or len(self.data) < 20:
            return None
        if self.type == 0:
            n = (len(self.data) - 4) // 16
            return self.data[4 + 16 * (n - 1):4 + 16 * n]
        if self.type in (2, 4):  # type 2: home address; type 4 (SRH): segment 0
            return self.data[4:20]
        return None

    def _build(self, payload: bytes, hs: list, i: int) -> bytes:
        data = self.data
        if (4 + len(data)) & 7:
            data = data + bytes(-(4 + len(data)) & 7)
        hlen = (4 + len(data)) // 8 - 1
        return (bytes((self._nh(hs, i, payload), hlen, self.type, self.segments_left))
                + data + payload)


@header
class IPv6Fragment(IPv6Ext):
    """Fragment header.  ``offset`` in 8-byte units; ``m`` = more fragments."""

    offset: int = 0
    m: int = 0
    id: int = 0
    nh: int | None = None

    IP_PROTO = IPPROTO_FRAGMENT

    def _build(self, payload: bytes, hs: list, i: int) -> bytes:
        word = (check_bits("IPv6Fragment", "offset", self.offset, 13) << 3) | check_bits(
            "IPv6Fragment", "m", self.m, 1)
        return _FRAG.pack(self._nh(hs, i, payload), 0, word, self.id) + payload


@header
class AH(IPv6Ext):
    """IPsec Authentication Header: decoded so parsing can step over it to
    the protected upper layer.  ``icv`` length must be a multiple of 4."""

    spi: int = 0
    seq: int = 0
    icv: bytes = b""
    nh: int | None = None

    IP_PROTO = IPPROTO_AH

    def _build(self, payload: bytes, hs: list, i: int) -> bytes:
        if len(self.icv) & 3:
            raise PacketError("AH", f"ICV length {len(self.icv)} is not a multiple of 4")
        plen = (12 + len(self.icv)) // 4 - 2
        return _AH.pack(self._nh(hs, i, payload), plen, 0, self.spi, self.seq) + self.icv + payload


# -- decoding -----------------------------------------------------------------

_SEEN_HBH, _SEEN_RT, _SEEN_FRAG, _SEEN_AH, _SEEN_DST1, _SEEN_DST2 = 1, 2, 4, 8, 16, 32


def decode_ipv6(buf: bytes, off: int, end: int, ctx: Ctx):
    avail = end - off
    if avail < 40:
        raise truncated("IPv6", off, 40, avail)
    vtf, plen, nh, hlim, src, dst = _IP6.unpack_from(buf, off)
    if vtf >> 28 != 6:
        raise PacketError("IPv6", f"version is {vtf >> 28}, not 6", off)
    new_end = off + 40 + plen
    if new_end > end:
        if not ctx.allow_short():
            raise PacketError("IPv6", f"payload length {plen} exceeds the {avail - 40} bytes left",
                              off)
        new_end = end
        ctx.trunc = True
    h = IPv6(ip6_to_str(src), ip6_to_str(dst), nh, hlim, (vtf >> 20) & 0xFF, vtf & 0xFFFFF, plen)
    ctx.net = (src, dst)
    ctx.ext_seen = 0
    return h, off + 40, new_end, IPV6_NEXT.get(nh)


def _ext_len(buf: bytes, off: int, end: int, ctx: Ctx, name: str, bit: int, total: int) -> None:
    """Bounds and repeat checks shared by the extension header decoders."""
    if off + total > end:
        raise PacketError(name, f"length {total} overruns the {end - off} bytes left", off)
    if ctx.ext_seen & bit:
        # RFC 8200 4.1: each extension header at most once (destination
        # options twice); repeats are how hostile packets make parsers loop.
        raise PacketError(name, "extension header repeated", off)
    ctx.ext_seen |= bit


def _table(ctx: Ctx) -> dict:
    # AH and friends continue in the protocol space of the enclosing IP header.
    return IPV6_NEXT if ctx.net is not None and len(ctx.net[0]) == 16 else IPV4_PROTOS


def _decode_opts(cls, name: str, bit: int):
    def decode(buf: bytes, off: int, end: int, ctx: Ctx):
        if end - off < 8:
            raise truncated(name, off, 8, end - off)
        nh, hlen = _EXT2.unpack_from(buf, off)
        total = (hlen + 1) << 3
        if bit == _SEEN_HBH:
            if not ctx.headers or type(ctx.headers[-1]) is not IPv6:
                raise PacketError(name, "hop-by-hop options must directly follow IPv6", off)
            seen = bit
        else:
            seen = _SEEN_DST2 if ctx.ext_seen & _SEEN_DST1 else _SEEN_DST1
        _ext_len(buf, off, end, ctx, name, seen, total)
        return cls(buf[off + 2:off + total], nh), off + total, end, IPV6_NEXT.get(nh)
    return decode


def decode_routing(buf: bytes, off: int, end: int, ctx: Ctx):
    if end - off < 8:
        raise truncated("IPv6Routing", off, 8, end - off)
    nh, hlen = _EXT2.unpack_from(buf, off)
    total = (hlen + 1) << 3
    _ext_len(buf, off, end, ctx, "IPv6Routing", _SEEN_RT, total)
    h = IPv6Routing(buf[off + 2], buf[off + 3], buf[off + 4:off + total], nh)
    final = h.final_destination()
    if final is not None and ctx.net is not None:
        ctx.net = (ctx.net[0], final)
    return h, off + total, end, IPV6_NEXT.get(nh)


def decode_fragment(buf: bytes, off: int, end: int, ctx: Ctx):
    if end - off < 8:
        raise truncated("IPv6Fragment", off, 8, end - off)
    nh, _res, word, ident = _FRAG.unpack_from(buf, off)
    _ext_len(buf, off, end, ctx, "IPv6Fragment", _SEEN_FRAG, 8)
    h = IPv6Fragment(word >> 3, word & 1, ident, nh)
    if word >> 3:
        return h, off + 8, end, None  # later fragment: no upper header here
    if word & 1:
        ctx.trunc = True  # first fragment: upper layer lengths run past this packet
    return h, off + 8, end, IPV6_NEXT.get(nh)


def decode_ah(buf: bytes, off: int, end: int, ctx: Ctx):
    if end - off < 12:
        raise truncated("AH", off, 12, end - off)
    nh, plen, _res, spi, seq = _AH.unpack_from(buf, off)
    total = (plen + 2) << 2
    if total < 12:
        raise PacketError("AH", f"payload length {plen} is below the minimum 1", off)
    _ext_len(buf, off, end, ctx, "AH", _SEEN_AH, total)
    return AH(spi, seq, buf[off + 12:off + total], nh), off + total, end, _table(ctx).get(nh)


ETHERTYPES[ETH_TYPE_IPV6] = decode_ipv6
IPV6_NEXT[IPPROTO_IPV6] = decode_ipv6
IPV4_PROTOS[IPPROTO_IPV6] = decode_ipv6
IPV6_NEXT[IPPROTO_HOPOPTS] = _decode_opts(IPv6HopByHop, "IPv6HopByHop", _SEEN_HBH)
IPV6_NEXT[IPPROTO_DSTOPTS] = _decode_opts(IPv6DestOpts, "IPv6DestOpts", _SEEN_DST1)
IPV6_NEXT[IPPROTO_ROUTING] = decode_routing
IPV6_NEXT[IPPROTO_FRAGMENT] = decode_fragment
IPV6_NEXT[IPPROTO_AH] = decode_ah
IPV4_PROTOS[IPPROTO_AH] = decode_ah
