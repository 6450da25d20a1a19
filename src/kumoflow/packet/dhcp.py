"""DHCPv4 messages (RFC 2131) and their options (RFC 2132, RFC 3442).

A DHCP message is a BOOTP header (236 bytes: op, hardware type and length,
hops, transaction id, seconds, flags, four addresses, the client's hardware
address, server name and boot file name), the magic cookie 99.130.83.99 and
an option area of code, length, value triples ended by option 255.

Build it like any header, under UDP::

    Ethernet(...) / IPv4(...) / UDP(sport=67, dport=68) / DHCP(op=BOOTREPLY, ...)

and parse the UDP payload with ``parse_dhcp(pkt.payload)``. parse() does
not decode DHCP by itself: a DHCP payload that is cut short (a packet-in
trimmed to miss_send_len) or malformed must not make the whole frame
unreadable to the apps that only want its Ethernet and IP headers.

``options`` maps an option code to its value, in the order sent. Options
this module knows (the table ``KINDS``) have typed values: an address as
text, a list of addresses, an int, text, a list of option codes (55), the
classless static routes of option 121 as (destination CIDR, router) pairs;
any other code's value is its raw bytes (a bytes value is also accepted on
build for any code, to craft a packet). Values longer than 255 bytes are
split into several options on build and joined again on parse, as RFC 3396
says. Parsing is strict: a known option whose length does not fit its type,
an option running past the end, a missing end option or magic cookie raise
PacketError, as do option overload (52: options in the sname/file fields,
which this module does not read). Pad options are skipped, and bytes after
the end option are padding. Built messages are padded to the 300 bytes
RFC 1542 asks for, as some clients drop shorter ones.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import field
from typing import Any

from .base import Header, header
from .errors import PacketError, truncated

BOOTREQUEST, BOOTREPLY = 1, 2
HTYPE_ETHERNET = 1
FLAG_BROADCAST = 0x8000
MAGIC_COOKIE = b"\x63\x82\x53\x63"

# message types (option 53)
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
MESSAGE_TYPES = {DISCOVER: "DISCOVER", OFFER: "OFFER", REQUEST: "REQUEST", DECLINE: "DECLINE", ACK: "ACK",
                 NAK: "NAK", RELEASE: "RELEASE", INFORM: "INFORM"}

# option codes
OPT_PAD, OPT_END = 0, 255
OPT_SUBNET_MASK, OPT_ROUTER, OPT_DNS, OPT_HOSTNAME, OPT_DOMAIN = 1, 3, 6, 12, 15
OPT_MTU, OPT_BROADCAST = 26, 28
OPT_REQUESTED_IP, OPT_LEASE_TIME, OPT_OVERLOAD, OPT_MESSAGE_TYPE, OPT_SERVER_ID = 50, 51, 52, 53, 54
OPT_PARAMETERS, OPT_MESSAGE, OPT_MAX_SIZE, OPT_RENEWAL_TIME, OPT_REBINDING_TIME = 55, 56, 57, 58, 59
OPT_CLIENT_ID, OPT_CLASSLESS_ROUTES = 61, 121

# The fixed BOOTP header: op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr,
# chaddr (16), sname (64), file (128).
_BOOTP = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
HEADER_LEN = _BOOTP.size + len(MAGIC_COOKIE)     # 240
MIN_LEN = 300                                    # RFC 1542 2.1: what a BOOTP message is padded to


# --- option value types: each is (decode(bytes) -> value, encode(value) -> bytes) --------------

def _ip(value: bytes) -> str:
    if len(value) != 4:
        raise ValueError(f"length {len(value)}, not 4")
    return socket.inet_ntoa(value)


def _ip_out(value: str) -> bytes:
    return socket.inet_pton(socket.AF_INET, value)


def _ips(value: bytes) -> list[str]:
    if not value or len(value) % 4:
        raise ValueError(f"length {len(value)}, not a multiple of 4")
    return [socket.inet_ntoa(value[i:i + 4]) for i in range(0, len(value), 4)]


def _ips_out(value: list[str]) -> bytes:
    return b"".join(_ip_out(v) for v in value)


def _uint(size: int):
    def decode(value: bytes) -> int:
        if len(value) != size:
            raise ValueError(f"length {len(value)}, not {size}")
        return int.from_bytes(value, "big")

    def encode(value: int) -> bytes:
        return value.to_bytes(size, "big")
    return decode, encode


def _text(value: bytes) -> str:
    if not value:
        raise ValueError("empty")
    return value.decode("utf-8", "surrogateescape")


def _text_out(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def _codes(value: bytes) -> list[int]:
    if not value:
        raise ValueError("empty")
    return list(value)


def _client_id(value: bytes) -> bytes:
    if len(value) < 2:
        raise ValueError(f"length {len(value)}, below 2")
    return value


def _routes(value: bytes) -> list[tuple[str, str]]:
    """RFC 3442: each route is the prefix length, the significant octets of
    the destination (as many as the length needs), and the router."""
    out, i = [], 0
    while i < len(value):
        width = value[i]
        if width > 32:
            raise ValueError(f"prefix length {width} above 32")
        size = (width + 7) // 8
        if i + 1 + size + 4 > len(value):
            raise ValueError("a route runs past the option")
        dest = value[i + 1:i + 1 + size] + bytes(4 - size)
        try:
            net = ipaddress.IPv4Network((dest, width))
        except ValueError:
            raise ValueError(f"destination {socket.inet_ntoa(dest)}/{width} has host bits set") from None
        out.append((str(net), socket.inet_ntoa(value[i + 1 + size:i + 5 + size])))
        i += 5 + size
    if not out:
        raise ValueError("empty")
    return out


def _routes_out(value: list[tuple[str, str]]) -> bytes:
    out = bytearray()
    for dest, router in value:
        net = ipaddress.IPv4Network(dest)
        out.append(net.prefixlen)
        out += net.network_address.packed[:(net.prefixlen + 7) // 8]
        out += _ip_out(router)
    return bytes(out)


_IP, _IPS, _U8, _U16, _U32 = (_ip, _ip_out), (_ips, _ips_out), _uint(1), _uint(2), _uint(4)
_TEXT = (_text, _text_out)

#: option code -> (name, (decode, encode)) for the options with typed values
KINDS: dict[int, tuple[str, tuple[Any, Any]]] = {
    OPT_SUBNET_MASK: ("subnet mask", _IP),
    OPT_ROUTER: ("router", _IPS),
    OPT_DNS: ("DNS servers", _IPS),
    OPT_HOSTNAME: ("host name", _TEXT),
    OPT_DOMAIN: ("domain name", _TEXT),
    OPT_MTU: ("interface MTU", _U16),
    OPT_BROADCAST: ("broadcast address", _IP),
    OPT_REQUESTED_IP: ("requested address", _IP),
    OPT_LEASE_TIME: ("lease time", _U32),
    OPT_MESSAGE_TYPE: ("message type", _U8),
    OPT_SERVER_ID: ("server identifier", _IP),
    OPT_PARAMETERS: ("parameter request list", (_codes, bytes)),
    OPT_MESSAGE: ("message", _TEXT),
    OPT_MAX_SIZE: ("maximum message size", _U16),
    OPT_RENEWAL_TIME: ("renewal time", _U32),
    OPT_REBINDING_TIME: ("rebinding time", _U32),
    OPT_CLIENT_ID: ("client identifier", (_client_id, bytes)),
    OPT_CLASSLESS_ROUTES: ("classless static routes", (_routes, _routes_out)),
}


def encode_option(code: int, value: Any) -> bytes:
    """The wire bytes of one option, split into 255-byte pieces when longer (RFC 3396)."""
    if not 0 < code < 255:
        raise PacketError("DHCP", f"option code {code!r} is not 1-254")
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif code in KINDS:
        try:
            data = KINDS[code][1][1](value)
        except (OSError, TypeError, ValueError, OverflowError, AttributeError) as exc:
            raise PacketError("DHCP", f"option {code} ({KINDS[code][0]}): bad value {value!r} ({exc})") from None
    else:
        raise PacketError("DHCP", f"option {code} has no known type: give its value as bytes")
    if not data:
        return bytes((code, 0))
    return b"".join(bytes((code, len(data[i:i + 255]))) + data[i:i + 255] for i in range(0, len(data), 255))


def _addr(raw: bytes) -> str:
    return socket.inet_ntoa(raw)


def _addr_out(name: str, value: str) -> bytes:
    try:
        return socket.inet_pton(socket.AF_INET, value)
    except (OSError, TypeError, ValueError):
        raise PacketError("DHCP", f"bad IPv4 address {value!r} ({name})") from None


def _fixed_text(name: str, value: bytes, size: int) -> bytes:
    if len(value) > size:
        raise PacketError("DHCP", f"{name} of {len(value)} bytes exceeds {size}")
    return value + bytes(size - len(value))


@header
class DHCP(Header):
    """A DHCP message. ``chaddr`` is the client hardware address as text
    (hlen bytes, a MAC for Ethernet); ``sname`` and ``file`` are bytes
    without their NUL padding; ``options`` maps code -> value (see the module)."""

    op: int = BOOTREQUEST
    xid: int = 0
    chaddr: str = "00:00:00:00:00:00"
    ciaddr: str = "0.0.0.0"
    yiaddr: str = "0.0.0.0"
    siaddr: str = "0.0.0.0"
    giaddr: str = "0.0.0.0"
    flags: int = 0
    secs: int = 0
    hops: int = 0
    htype: int = HTYPE_ETHERNET
    sname: bytes = b""
    file: bytes = b""
    options: dict[int, Any] = field(default_factory=dict)

    _HEX = ("xid", "flags")

    @property
    def message_type(self) -> int | None:
        """Option 53, or None (a plain BOOTP message)."""
        return self.options.get(OPT_MESSAGE_TYPE)

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & FLAG_BROADCAST)

    def _build(self, payload: bytes, hs: list, i: int) -> bytes:
        try:
            chaddr = bytes.fromhex(self.chaddr.replace(":", ""))
        except (AttributeError, ValueError):
            raise PacketError("DHCP", f"bad chaddr {self.chaddr!r}") from None
        hdr = _BOOTP.pack(self.op, self.htype, len(chaddr), self.hops, self.xid, self.secs, self.flags,
                          _addr_out("ciaddr", self.ciaddr), _addr_out("yiaddr", self.yiaddr),
                          _addr_out("siaddr", self.siaddr), _addr_out("giaddr", self.giaddr),
                          _fixed_text("chaddr", chaddr, 16), _fixed_text("sname", self.sname, 64),
                          _fixed_text("file", self.file, 128))
        body = hdr + MAGIC_COOKIE + b"".join(encode_option(c, v) for c, v in self.options.items()) + b"\xff"
        return body + bytes(max(0, MIN_LEN - len(body))) + payload


def parse_dhcp(data: bytes, offset: int = 0) -> DHCP:
    """Decode the DHCP message in ``data`` (a UDP payload). ``offset`` is
    where that payload sits in its frame, for error messages only.

    Raises PacketError for anything malformed (see the module)."""
    buf = bytes(data)
    if len(buf) < HEADER_LEN:
        raise truncated("DHCP", offset, HEADER_LEN, len(buf))
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname,
     file) = _BOOTP.unpack_from(buf)
    if hlen > 16:
        raise PacketError("DHCP", f"hardware address length {hlen} exceeds 16", offset + 2)
    if buf[_BOOTP.size:HEADER_LEN] != MAGIC_COOKIE:
        raise PacketError("DHCP", "no DHCP magic cookie (a plain BOOTP message?)", offset + _BOOTP.size)
    raw: dict[int, bytes] = {}
    where: dict[int, int] = {}
    pos, end = HEADER_LEN, len(buf)
    while True:
        if pos >= end:
            raise PacketError("DHCP", "options have no end option (255)", offset + pos)
        code = buf[pos]
        if code == OPT_END:
            break
        if code == OPT_PAD:
            pos += 1
            continue
        if pos + 1 >= end:
            raise PacketError("DHCP", f"option {code} has no length byte", offset + pos)
        stop = pos + 2 + buf[pos + 1]
        if stop > end:
            raise PacketError("DHCP", f"option {code} of length {buf[pos + 1]} runs past the message", offset + pos)
        raw[code] = raw.get(code, b"") + buf[pos + 2:stop]     # a repeated option continues the first (RFC 3396)
        where.setdefault(code, pos)
        pos = stop
    if OPT_OVERLOAD in raw:
        raise PacketError("DHCP", "option overload (52) is not supported", offset + where[OPT_OVERLOAD])
    options: dict[int, Any] = {}
    for code, value in raw.items():
        kind = KINDS.get(code)
        if kind is None:
            options[code] = value
            continue
        try:
            options[code] = kind[1][0](value)
        except ValueError as exc:
            raise PacketError("DHCP", f"option {code} ({kind[0]}): {exc}", offset + where[code]) from None
    return DHCP(op=op, xid=xid, chaddr=chaddr[:hlen].hex(":"), ciaddr=_addr(ciaddr), yiaddr=_addr(yiaddr),
                siaddr=_addr(siaddr), giaddr=_addr(giaddr), flags=flags, secs=secs, hops=hops, htype=htype,
                sname=sname.rstrip(b"\0"), file=file.rstrip(b"\0"), options=options)
