"""A sans-IO reader of zebra's FPM stream: bytes in, routes out.

FRR's zebra, started with ``-M dplane_fpm_nl`` and ``fpm address A port P``,
connects to A:P over TCP and sends every route it selects (and every
withdrawal) as a frame:

    0      1      2             4
    +------+------+-------------+---------------------------------+
    | ver  | type |   length    |  one netlink message            |
    |  1   |  1   | (16 bits,   |  (RTM_NEWROUTE / RTM_DELROUTE:   |
    |      |      |  whole frame, | nlmsghdr, rtmsg, rtattrs)      |
    |      |      |  big-endian)|                                 |
    +------+------+-------------+---------------------------------+

version 1, type 1 (netlink). The netlink message is in the host's byte
order (zebra builds it with the same code that talks to the kernel), laid
out as the kernel's rtnetlink documents it: a 16-byte ``nlmsghdr`` (length,
type, flags, sequence, port id), a 12-byte ``rtmsg`` (family, dst_len,
src_len, tos, table, protocol, scope, type, flags), then ``rtattr``s (16-bit
length, 16-bit type, payload, padded to 4 bytes): RTA_DST, RTA_GATEWAY,
RTA_OIF, RTA_PRIORITY, RTA_TABLE, RTA_MULTIPATH (a list of ``rtnexthop``:
16-bit length, flags, hops = weight - 1, ifindex, then its own rtattrs with
RTA_GATEWAY).

The I/O layer feeds what it read (any chunking) and pulls routes:

    decoder = FpmDecoder()
    decoder.feed(sock.recv(65536))
    while True:
        try:
            route = decoder.next_route()
        except FpmError as error:       # one bad frame: skipped, the stream goes on
            log.warning("%s", error)
            if decoder.broken:          # the framing itself is lost: close the connection
                break
            continue
        if route is None:               # needs more bytes
            break
        ...

A frame whose header is wrong (not version 1, not netlink, a length under
4) leaves no way to find the next frame: `next_route` raises `FpmError` and
the decoder is ``broken`` (every later call raises the same). A well-framed
frame whose netlink content is malformed (a truncated rtmsg, an attribute
running past the message, a prefix longer than its family allows) raises
`FpmError` once and is skipped: the next frame decodes as usual. Netlink
messages that are not routes (zebra can also send next-hop groups, MAC
entries) are skipped silently and counted in `skipped`.

zebra may also send next-hop objects (RTM_NEWNEXTHOP, with ``fpm use-next-hop-groups``, the
default of FRR 8) and routes naming them by id (RTA_NH_ID): the decoder keeps the objects and
resolves a route's id when the route arrives. A later change of an object is not carried over
to the routes already returned: the Speaker turns the groups off (``no fpm
use-next-hop-groups``), so every route comes with its own next hops.

`encode_route` builds the same bytes (for tests and benchmarks).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Iterable, NamedTuple

__all__ = ["FpmError", "Nexthop", "Route", "FpmDecoder", "parse_netlink", "encode_route", "frame",
           "ADD", "DELETE", "RTPROT"]

FPM_VERSION = 1
FPM_TYPE_NETLINK = 1
FPM_HEADER = struct.Struct("!BBH")

RTM_NEWROUTE, RTM_DELROUTE = 24, 25
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
NLMSGHDR = struct.Struct("=IHHII")        # length, type, flags, seq, pid
RTMSG = struct.Struct("=BBBBBBBBI")       # family, dst_len, src_len, tos, table, protocol, scope, type, flags
RTATTR = struct.Struct("=HH")
_NL_HEAD = struct.Struct("=IH")           # the nlmsghdr's length and type
_RT_HEAD = struct.Struct("=8B")           # the rtmsg but its flags
RTNEXTHOP = struct.Struct("=HBBi")        # length, flags, hops, ifindex
U32 = struct.Struct("=I")

RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_MULTIPATH, RTA_TABLE, RTA_NH_ID = 1, 4, 5, 6, 9, 15, 30
RTM_NEWNEXTHOP, RTM_DELNEXTHOP = 104, 105
NHMSG = struct.Struct("=BBBBI")           # family, scope, protocol, reserved, flags
NEXTHOP_GRP = struct.Struct("=IBBH")      # id, weight - 1, reserved
NHA_ID, NHA_GROUP, NHA_BLACKHOLE, NHA_OIF, NHA_GATEWAY = 1, 2, 3, 5, 6

ADD, DELETE = "add", "delete"

#: prefixes whose objects the decoder keeps (then it starts again): ~200 bytes each
PREFIX_CACHE = 1 << 19

#: routing protocol numbers (rtm_protocol) as the kernel and FRR's zebra name them
RTPROT = {2: "kernel", 3: "boot", 4: "static", 11: "zebra", 186: "bgp", 187: "isis", 188: "ospf", 189: "rip",
          190: "ripng", 191: "nhrp", 192: "eigrp", 193: "ldp", 194: "sharp", 195: "pbr", 196: "static",
          197: "openfabric", 198: "srte"}
RTPROT_BGP = 186

_FAMILIES = {socket.AF_INET: (4, 32, 4), socket.AF_INET6: (6, 128, 16)}   # family -> (version, bits, bytes)


class _Hashed:
    """An address or network whose hash is computed once: a route's prefix and next hop are
    looked up in half a dozen dicts on their way to a flow, and ipaddress hashes in Python."""
    __slots__ = ()

    def __hash__(self) -> int:
        return self._hash


class IPv4Prefix(_Hashed, ipaddress.IPv4Network):
    pass


class IPv6Prefix(_Hashed, ipaddress.IPv6Network):
    pass


class IPv4Gateway(_Hashed, ipaddress.IPv4Address):
    __slots__ = ("_hash",)


class IPv6Gateway(_Hashed, ipaddress.IPv6Address):
    __slots__ = ("_hash",)


def _hashed(cls: type, value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network | ipaddress.IPv4Address \
        | ipaddress.IPv6Address:
    """`cls(value)` with its hash (the same as the plain ipaddress object's) kept."""
    obj = cls(value)
    obj._hash = super(_Hashed, obj).__hash__()
    return obj


class FpmError(ValueError):
    """A frame of the FPM stream that cannot be read: what was wrong, and where."""


class Nexthop(NamedTuple):
    """One way to the prefix: a gateway (None for a directly connected or blackhole route),
    an interface index (0 when zebra gave none), a weight (1 unless multipath says more)."""

    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    ifindex: int = 0
    weight: int = 1


class Route(NamedTuple):
    """A route zebra selected (``action`` "add": this prefix now goes by these next hops) or
    withdrew (``action`` "delete"). (A named tuple: a hundred thousand are made in seconds.)"""

    action: str                       # ADD or DELETE
    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network
    nexthops: tuple[Nexthop, ...] = ()
    table: int = 254                  # RT_TABLE_MAIN: the default VRF
    protocol: int = RTPROT_BGP        # rtm_protocol: 186 bgp, 196 static, 11 zebra (connected)... (RTPROT)
    metric: int | None = None         # RTA_PRIORITY
    type: int = 1                     # rtm_type: 1 unicast, 6 blackhole, 7 unreachable, 8 prohibit

    @property
    def family(self) -> int:
        return self.prefix.version    # 4 or 6

    @property
    def protocol_name(self) -> str:
        return RTPROT.get(self.protocol, str(self.protocol))


def _attrs(data: bytes | memoryview, start: int, end: int, where: str) -> Iterable[tuple[int, memoryview]]:
    view = memoryview(data)
    pos = start
    while pos + 4 <= end:
        length, kind = RTATTR.unpack_from(view, pos)
        if length < 4 or pos + length > end:
            raise FpmError(f"{where}: attribute of type {kind} at offset {pos} has length {length}, "
                           f"{end - pos} bytes left")
        yield kind & 0x3FFF, view[pos + 4:pos + length]
        pos += (length + 3) & ~3


def _address(payload: memoryview, size: int, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if len(payload) != size:
        raise FpmError(f"{what} of {len(payload)} bytes, expected {size}")
    raw = bytes(payload)
    return ipaddress.IPv4Address(raw) if size == 4 else ipaddress.IPv6Address(raw)


def _multipath(payload: memoryview, size: int, where: str) -> list[Nexthop]:
    out = []
    pos, end = 0, len(payload)
    while pos + RTNEXTHOP.size <= end:
        length, _flags, hops, ifindex = RTNEXTHOP.unpack_from(payload, pos)
        if length < RTNEXTHOP.size or pos + length > end:
            raise FpmError(f"{where}: RTA_MULTIPATH next hop at offset {pos} has length {length}, "
                           f"{end - pos} bytes left")
        gateway = None
        for kind, value in _attrs(payload, pos + RTNEXTHOP.size, pos + length, where + " (multipath)"):
            if kind == RTA_GATEWAY:
                gateway = _address(value, size, where + ": multipath gateway")
        out.append(Nexthop(gateway, ifindex, hops + 1))
        pos += (length + 3) & ~3
    return out


def parse_netlink(data: bytes | memoryview, where: str = "netlink",
                  nh_table: dict[int, tuple[Nexthop, ...]] | None = None) -> tuple[list[Route], int]:
    """Every route message in a buffer of netlink messages, and how many other messages it held.
    Next-hop objects (RTM_NEWNEXTHOP/RTM_DELNEXTHOP) update `nh_table` (id -> next hops), which
    resolves the RTA_NH_ID of routes. Raises FpmError when a message is malformed."""
    view = memoryview(data)
    routes: list[Route] = []
    skipped = 0
    pos, end = 0, len(view)
    while pos < end:
        if end - pos < NLMSGHDR.size:
            raise FpmError(f"{where}: {end - pos} bytes left at offset {pos}, shorter than a netlink header")
        length, kind, _flags, _seq, _pid = NLMSGHDR.unpack_from(view, pos)
        if length < NLMSGHDR.size or pos + length > end:
            raise FpmError(f"{where}: netlink message at offset {pos} says length {length}, "
                           f"{end - pos} bytes left")
        if kind in (RTM_NEWROUTE, RTM_DELROUTE):
            routes.append(_route(view[pos:pos + length], kind, f"{where}, message at offset {pos}", nh_table))
        elif kind in (RTM_NEWNEXTHOP, RTM_DELNEXTHOP) and nh_table is not None:
            _nexthop_object(view[pos:pos + length], kind, f"{where}, message at offset {pos}", nh_table)
        else:
            skipped += 1
        pos += (length + 3) & ~3
    return routes, skipped


def _nexthop_object(msg: memoryview, kind: int, where: str, table: dict[int, tuple[Nexthop, ...]]) -> None:
    if len(msg) < NLMSGHDR.size + NHMSG.size:
        raise FpmError(f"{where}: {len(msg)} bytes, too short for a next-hop object")
    family = NHMSG.unpack_from(msg, NLMSGHDR.size)[0]
    nh_id, gateway, oif, group = None, None, 0, None
    for akind, value in _attrs(msg, NLMSGHDR.size + NHMSG.size, len(msg), where):
        if akind == NHA_ID and len(value) == 4:
            nh_id = U32.unpack(value)[0]
        elif akind == NHA_OIF and len(value) == 4:
            oif = U32.unpack(value)[0]
        elif akind == NHA_GATEWAY:
            if family not in _FAMILIES:
                raise FpmError(f"{where}: next-hop gateway of family {family}")
            gateway = _address(value, _FAMILIES[family][2], where + ": NHA_GATEWAY")
        elif akind == NHA_GROUP:
            if len(value) % NEXTHOP_GRP.size:
                raise FpmError(f"{where}: NHA_GROUP of {len(value)} bytes")
            group = [(member, weight + 1) for member, weight, _r1, _r2 in NEXTHOP_GRP.iter_unpack(value)]
    if nh_id is None:
        raise FpmError(f"{where}: next-hop object without NHA_ID")
    if kind == RTM_DELNEXTHOP:
        table.pop(nh_id, None)
    elif group is not None:
        hops = []
        for member, weight in group:
            if member not in table:
                raise FpmError(f"{where}: group {nh_id} names next-hop object {member}, never sent")
            hops += [Nexthop(h.gateway, h.ifindex, weight) for h in table[member]]
        table[nh_id] = tuple(hops)
    else:
        table[nh_id] = (Nexthop(gateway, oif, 1),)


def _route(msg: memoryview, kind: int, where: str, nh_table: dict[int, tuple[Nexthop, ...]] | None = None
           ) -> Route:
    if len(msg) < NLMSGHDR.size + RTMSG.size:
        raise FpmError(f"{where}: {len(msg)} bytes, too short for a route (nlmsghdr + rtmsg: "
                       f"{NLMSGHDR.size + RTMSG.size})")
    family, dst_len, _src_len, _tos, table, protocol, _scope, rtype, _flags = RTMSG.unpack_from(msg, NLMSGHDR.size)
    if family not in _FAMILIES:
        raise FpmError(f"{where}: address family {family} is neither IPv4 ({socket.AF_INET}) nor IPv6 "
                       f"({socket.AF_INET6})")
    version, bits, size = _FAMILIES[family]
    if dst_len > bits:
        raise FpmError(f"{where}: prefix length {dst_len} for IPv{version}")
    dst = None
    nexthops: list[Nexthop] = []
    gateway = None
    oif = 0
    metric = None
    for akind, value in _attrs(msg, NLMSGHDR.size + RTMSG.size, len(msg), where):
        if akind == RTA_DST:
            if len(value) != size:
                raise FpmError(f"{where}: RTA_DST of {len(value)} bytes for IPv{version}")
            dst = bytes(value)
        elif akind == RTA_GATEWAY:
            gateway = _address(value, size, where + ": RTA_GATEWAY")
        elif akind == RTA_OIF:
            if len(value) != 4:
                raise FpmError(f"{where}: RTA_OIF of {len(value)} bytes")
            oif = U32.unpack(value)[0]
        elif akind == RTA_PRIORITY:
            if len(value) != 4:
                raise FpmError(f"{where}: RTA_PRIORITY of {len(value)} bytes")
            metric = U32.unpack(value)[0]
        elif akind == RTA_TABLE:
            if len(value) != 4:
                raise FpmError(f"{where}: RTA_TABLE of {len(value)} bytes")
            table = U32.unpack(value)[0]
        elif akind == RTA_MULTIPATH:
            nexthops += _multipath(value, size, where)
        elif akind == RTA_NH_ID:
            if len(value) != 4:
                raise FpmError(f"{where}: RTA_NH_ID of {len(value)} bytes")
            nh_id = U32.unpack(value)[0]
            if nh_table is None or nh_id not in nh_table:
                raise FpmError(f"{where}: next-hop object {nh_id} was never sent")
            nexthops += nh_table[nh_id]
    if dst is None:
        dst = bytes(size)
        if dst_len:
            raise FpmError(f"{where}: prefix length {dst_len} without RTA_DST")
    try:
        prefix = (ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network)((dst, dst_len), strict=False)
    except ValueError as e:                # cannot happen with the checks above; a clear error all the same
        raise FpmError(f"{where}: bad prefix: {e}") from None
    if gateway is not None or oif:
        nexthops.insert(0, Nexthop(gateway, oif, 1))
    return Route(ADD if kind == RTM_NEWROUTE else DELETE, prefix, tuple(nexthops), table, protocol, metric, rtype)


class FpmDecoder:
    """FPM frames in, `Route`s out (see the module's docstring)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pos = 0
        self._ready: list[Route] = []
        self._next = 0
        self.broken: FpmError | None = None
        self.frames = 0         # frames decoded
        self.skipped = 0        # netlink messages that were not routes
        self.errors = 0         # frames skipped as malformed
        self.nh_table: dict[int, tuple[Nexthop, ...]] = {}   # next-hop objects by id
        self._hops: dict[tuple, tuple[Nexthop, ...]] = {}    # (gateway bytes, ifindex) -> the same tuple
        #: (address as int, length, 4 or 16) -> the network object: a withdrawal (or a change) gets the
        #: object its announcement got, made once, and found in dicts by identity
        self._prefixes: dict[tuple, ipaddress.IPv4Network | ipaddress.IPv6Network] = {}

    def feed(self, data: bytes) -> None:
        if self._pos and self._pos >= len(self._buffer) // 2:
            del self._buffer[:self._pos]
            self._pos = 0
        self._buffer += data

    @property
    def buffered(self) -> int:
        """Bytes received and not yet decoded (a partial frame)."""
        return len(self._buffer) - self._pos

    def next_route(self) -> Route | None:
        """The next route, or None until more bytes are fed. Raises FpmError on a bad frame."""
        while True:
            if self._next < len(self._ready):
                route = self._ready[self._next]
                self._next += 1
                return route
            self._ready, self._next = [], 0
            if not self._frame(self._ready):
                return None

    def routes(self) -> list[Route]:
        """Every complete route buffered (raises FpmError at a bad frame; what came before it is
        returned by the next call)."""
        out = self._ready[self._next:]
        self._ready, self._next = [], 0
        frame = self._frame
        try:
            while frame(out):
                pass
        except FpmError:
            self._ready = out        # handed out by the next call
            raise
        return out

    def _frame(self, out: list[Route]) -> bool:
        """Decode the next complete frame's routes into `out`; False when none is complete."""
        if self.broken is not None:
            raise self.broken
        buf, pos = self._buffer, self._pos
        if len(buf) - pos < 4:
            return False
        version, kind, length = FPM_HEADER.unpack_from(buf, pos)
        if version != FPM_VERSION or kind != FPM_TYPE_NETLINK or length < FPM_HEADER.size:
            self.broken = FpmError(
                f"FPM stream: bad frame header after frame {self.frames} "
                f"(version {version}, type {kind}, length {length}; expected version {FPM_VERSION}, "
                f"type {FPM_TYPE_NETLINK} netlink, length >= 4): the framing is lost")
            raise self.broken
        end = pos + length
        if len(buf) < end:
            return False
        self._pos = end
        self.frames += 1
        route = self._fast(buf, pos + 4, end)
        if route is not None:
            out.append(route)
            return True
        try:
            routes, skipped = parse_netlink(memoryview(buf)[pos + 4:end], f"FPM frame {self.frames}",
                                            self.nh_table)
        except FpmError:
            self.errors += 1
            raise
        self.skipped += skipped
        out += routes
        return True

    def _fast(self, buf: bytearray, pos: int, end: int) -> Route | None:
        """The frame's route when it is the usual one (one route message; RTA_DST, RTA_GATEWAY,
        RTA_OIF, RTA_PRIORITY, RTA_TABLE only; all well formed); None for anything else, which
        the general parser then decodes (or reports)."""
        if end - pos < 28:
            return None
        length, kind = _NL_HEAD.unpack_from(buf, pos)
        if length != end - pos or (kind != RTM_NEWROUTE and kind != RTM_DELROUTE):
            return None
        family, dst_len, _s, _t, table, protocol, _sc, rtype = _RT_HEAD.unpack_from(buf, pos + 16)
        if family == socket.AF_INET:
            size, network = 4, IPv4Prefix
        elif family == socket.AF_INET6:
            size, network = 16, IPv6Prefix
        else:
            return None
        dst = gateway = metric = None
        oif = 0
        a = pos + 28
        unpack_u32 = U32.unpack_from
        while a + 4 <= end:
            alen, akind = RTATTR.unpack_from(buf, a)
            if alen < 4 or a + alen > end:
                return None
            akind &= 0x3FFF
            if akind == RTA_DST:
                if alen != 4 + size:
                    return None
                dst = int.from_bytes(buf[a + 4:a + alen], "big")
            elif akind == RTA_GATEWAY:
                if alen != 4 + size:
                    return None
                gateway = bytes(buf[a + 4:a + alen])
            elif akind == RTA_OIF or akind == RTA_PRIORITY or akind == RTA_TABLE:
                if alen != 8:
                    return None
                value = unpack_u32(buf, a + 4)[0]
                if akind == RTA_OIF:
                    oif = value
                elif akind == RTA_PRIORITY:
                    metric = value
                else:
                    table = value
            elif akind == RTA_MULTIPATH or akind == RTA_NH_ID:
                return None
            a += (alen + 3) & ~3
        if dst is None and dst_len:
            return None
        pkey = (dst or 0, dst_len, size)
        prefix = self._prefixes.get(pkey)
        if prefix is None:
            try:
                prefix = _hashed(network, (dst or 0, dst_len))
            except ValueError:
                return None
            if len(self._prefixes) >= PREFIX_CACHE:
                self._prefixes.clear()
            self._prefixes[pkey] = prefix
        if gateway is None and not oif:
            hops: tuple[Nexthop, ...] = ()
        else:
            key = (gateway, oif)
            hops = self._hops.get(key)
            if hops is None:
                if len(self._hops) > 4096:
                    self._hops.clear()
                address = None if gateway is None else _hashed(IPv4Gateway if size == 4 else IPv6Gateway, gateway)
                hops = self._hops[key] = (Nexthop(address, oif, 1),)
        return Route(ADD if kind == RTM_NEWROUTE else DELETE, prefix, hops, table, protocol, metric, rtype)


# --- encoding (tests, benchmarks) ------------------------------------------------------------------


def _attr(kind: int, payload: bytes) -> bytes:
    raw = RTATTR.pack(4 + len(payload), kind) + payload
    return raw + bytes(-len(raw) % 4)


def encode_route(route: Route, seq: int = 0) -> bytes:
    """The netlink message zebra would send for `route` (one nexthop: RTA_GATEWAY/RTA_OIF;
    several: RTA_MULTIPATH)."""
    family = socket.AF_INET if route.prefix.version == 4 else socket.AF_INET6
    attrs = [_attr(RTA_DST, route.prefix.network_address.packed)]
    if route.table >= 256:
        attrs.append(_attr(RTA_TABLE, U32.pack(route.table)))
    if route.metric is not None:
        attrs.append(_attr(RTA_PRIORITY, U32.pack(route.metric)))
    if len(route.nexthops) == 1 and route.nexthops[0].weight == 1:
        hop = route.nexthops[0]
        if hop.gateway is not None:
            attrs.append(_attr(RTA_GATEWAY, hop.gateway.packed))
        if hop.ifindex:
            attrs.append(_attr(RTA_OIF, U32.pack(hop.ifindex)))
    elif route.nexthops:
        hops = b""
        for hop in route.nexthops:
            inner = _attr(RTA_GATEWAY, hop.gateway.packed) if hop.gateway is not None else b""
            hops += RTNEXTHOP.pack(RTNEXTHOP.size + len(inner), 0, hop.weight - 1, hop.ifindex) + inner
        attrs.append(_attr(RTA_MULTIPATH, hops))
    body = RTMSG.pack(family, route.prefix.prefixlen, 0, 0, route.table if route.table < 256 else 252,
                      route.protocol, 0, route.type, 0) + b"".join(attrs)
    kind = RTM_NEWROUTE if route.action == ADD else RTM_DELROUTE
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, 0x0001, seq, 0) + body


def frame(netlink: bytes) -> bytes:
    """One FPM frame around a netlink message."""
    return FPM_HEADER.pack(FPM_VERSION, FPM_TYPE_NETLINK, FPM_HEADER.size + len(netlink)) + netlink
