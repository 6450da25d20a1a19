"""ICMPv6 (RFC 4443) and neighbor discovery messages (RFC 4861).

parse() returns the most specific class: ICMPv6Echo for echo request/reply,
NDRouterSolicit / NDRouterAdvert / NDNeighborSolicit / NDNeighborAdvert for
ND, plain ICMPv6 (body as payload) otherwise.  All are ICMPv6 subclasses, so
``pkt.get(ICMPv6)`` finds any of them.
"""

from __future__ import annotations

import struct
from dataclasses import field

from .addr import ip6_to_bytes, ip6_to_str
from .base import Header, header
from .checksum import csum_finish, csum_part, csum_valid
from .consts import (
    ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, IPPROTO_ICMPV6, ND_NA_OVERRIDE, ND_NA_ROUTER,
    ND_NA_SOLICITED, ND_NEIGHBOR_ADVERT, ND_NEIGHBOR_SOLICIT, ND_RA_MANAGED, ND_RA_OTHER,
    ND_ROUTER_ADVERT, ND_ROUTER_SOLICIT,
)
from .dispatch import IPV6_NEXT, Ctx
from .errors import truncated
from .ndopts import NDOption, decode_nd_options, pack_nd_options
from .pseudo import build_pseudo_sum, pseudo_sum

_HDR = struct.Struct("!BBH")
_ECHO = struct.Struct("!BBHHH")
_RA = struct.Struct("!BBHBBHII")
_NS = struct.Struct("!BBHI16s")


@header
class ICMPv6(Header):
    """Generic ICMPv6: 4-byte header; the message body is the payload.
    ``checksum`` (over the IPv6 pseudo-header) is computed when None."""

    type: int = 0
    code: int = 0
    checksum: int | None = None
    _raw: tuple | None = field(default=None, init=False, repr=False, compare=False)

    IP_PROTO = IPPROTO_ICMPV6
    _AUTO = ("checksum",)
    _HEX = ("checksum",)

    @property
    def checksum_ok(self) -> bool | None:
        """Checksum check over the received message; None if built or cut."""
        if self._raw is None:
            return None
        buf, start, stop, (src, dst) = self._raw
        return csum_valid(pseudo_sum(src, dst, IPPROTO_ICMPV6, stop - start)
                          + csum_part(buf[start:stop]))

    def _body(self) -> bytes:
        """Message-specific bytes after type/code/checksum."""
        return b""

    def _build(self, payload: bytes, hs: list, i: int) -> bytes:
        cks = self.checksum
        hdr = _HDR.pack(self.type, self.code, cks or 0) + self._body()
        if cks is None:
            name = type(self).__name__
            total = (build_pseudo_sum(hs, i, IPPROTO_ICMPV6, len(hdr) + len(payload), name)
                     + csum_part(hdr) + csum_part(payload))
            hdr = hdr[:2] + csum_finish(total).to_bytes(2, "big") + hdr[4:]
        return hdr + payload


@header
class ICMPv6Echo(ICMPv6):
    """Echo request (128) / reply (129); the echo data is the payload."""

    type: int = ICMPV6_ECHO_REQUEST
    id: int = 0
    seq: int = 0

    def _body(self) -> bytes:
        return struct.pack("!HH", self.id, self.seq)


@header
class NDRouterSolicit(ICMPv6):
    type: int = ND_ROUTER_SOLICIT
    options: list[NDOption] = field(default_factory=list)

    def _body(self) -> bytes:
        return b"\0\0\0\0" + pack_nd_options(self.options)


@header
class NDRouterAdvert(ICMPv6):
    """Router advertisement; ``flags`` is the M/O/... byte (ND_RA_MANAGED,
    ND_RA_OTHER; bits 3-4 are the RFC 4191 router preference)."""

    type: int = ND_ROUTER_ADVERT
    cur_hop_limit: int = 64
    flags: int = 0
    router_lifetime: int = 1800
    reachable_time: int = 0
    retrans_timer: int = 0
    options: list[NDOption] = field(default_factory=list)

    @property
    def managed(self) -> bool:
        return bool(self.flags & ND_RA_MANAGED)

    @property
    def other(self) -> bool:
        return bool(self.flags & ND_RA_OTHER)

    def _body(self) -> bytes:
        return struct.pack("!BBHII", self.cur_hop_limit, self.flags, self.router_lifetime,
                           self.reachable_time, self.retrans_timer) + pack_nd_options(self.options)


@header
class NDNeighborSolicit(ICMPv6):
    type: int = ND_NEIGHBOR_SOLICIT
    target: str = "::"
    options: list[NDOption] = field(default_factory=list)

    def _body(self) -> bytes:
        return (b"\0\0\0\0" + ip6_to_bytes(self.target, "NDNeighborSolicit")
                + pack_nd_options(self.options))


@header
class NDNeighborAdvert(ICMPv6):
    """Neighbor advertisement; ``flags`` is the first byte of the flag word
    (ND_NA_ROUTER | ND_NA_SOLICITED | ND_NA_OVERRIDE)."""

    type: int = ND_NEIGHBOR_ADVERT
    flags: int = 0
    target: str = "::"
    options: list[NDOption] = field(default_factory=list)

    @property
    def router(self) -> bool:
        return bool(self.flags & ND_NA_ROUTER)

    @property
    def solicited(self) -> bool:
        return bool(self.flags & ND_NA_SOLICITED)

    @property
    def override(self) -> bool:
        return bool(self.flags & ND_NA_OVERRIDE)

    def _body(self) -> bytes:
        return (struct.pack("!B3x", self.flags) + ip6_to_bytes(self.target, "NDNeighborAdvert")
                + pack_nd_options(self.options))


def decode_icmpv6(buf: bytes, off: int, end: int, ctx: Ctx):
    avail = end - off
    if avail < 4:
        raise truncated("ICMPv6", off, 4, avail)
    t, code, cks = _HDR.unpack_from(buf, off)
    if t == ICMPV6_ECHO_REQUEST or t == ICMPV6_ECHO_REPLY:
        if avail < 8:
            raise truncated("ICMPv6Echo", off, 8, avail)
        _, _, _, ident, seq = _ECHO.unpack_from(buf, off)
        h: ICMPv6 = ICMPv6Echo(t, code, cks, ident, seq)
        body_end = off + 8
    elif t == ND_NEIGHBOR_SOLICIT or t == ND_NEIGHBOR_ADVERT:
        name = "NDNeighborSolicit" if t == ND_NEIGHBOR_SOLICIT else "NDNeighborAdvert"
        if avail < 24:
            raise truncated(name, off, 24, avail)
        word, target = _NS.unpack_from(buf, off)[3:]
        opts, body_end = decode_nd_options(buf, off + 24, end, name, ctx.trunc)
        if t == ND_NEIGHBOR_SOLICIT:
            h = NDNeighborSolicit(t, code, cks, ip6_to_str(target), opts)
        else:
            h = NDNeighborAdvert(t, code, cks, word >> 24, ip6_to_str(target), opts)
    elif t == ND_ROUTER_ADVERT:
        if avail < 16:
            raise truncated("NDRouterAdvert", off, 16, avail)
        _, _, _, chl, flags, life, reach, retrans = _RA.unpack_from(buf, off)
        opts, body_end = decode_nd_options(buf, off + 16, end, "NDRouterAdvert", ctx.trunc)
        h = NDRouterAdvert(t, code, cks, chl, flags, life, reach, retrans, opts)
    elif t == ND_ROUTER_SOLICIT:
        if avail < 8:
            raise truncated("NDRouterSolicit", off, 8, avail)
        opts, body_end = decode_nd_options(buf, off + 8, end, "NDRouterSolicit", ctx.trunc)
        h = NDRouterSolicit(t, code, cks, opts)
    else:
        h = ICMPv6(t, code, cks)
        body_end = off + 4
    if not ctx.trunc and ctx.net is not None:
        h._raw = (buf, off, end, ctx.net)
    return h, body_end, end, None


IPV6_NEXT[IPPROTO_ICMPV6] = decode_icmpv6
