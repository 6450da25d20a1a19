"""IPv6 neighbor discovery options (RFC 4861 section 4.6).

Options are not layers; they live in the ``options`` list of the ND message
classes in icmpv6.py.  Each option knows how to pack itself; unknown options
(and known ones with an unexpected length) are kept as NDOptRaw.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Union

from .addr import ip6_to_bytes, ip6_to_str, mac_to_bytes
from .consts import (
    ND_OPT_MTU, ND_OPT_PREFIX_INFO, ND_OPT_SOURCE_LINKADDR, ND_OPT_TARGET_LINKADDR,
    ND_PREFIX_AUTONOMOUS, ND_PREFIX_ONLINK,
)
from .errors import PacketError

_PREFIX = struct.Struct("!BBBBIII16s")
_MTU = struct.Struct("!BBHI")


@dataclass(slots=True)
class NDOptSourceLinkAddr:
    mac: str = "00:00:00:00:00:00"

    def pack(self) -> bytes:
        return b"\x01\x01" + mac_to_bytes(self.mac, "NDOptSourceLinkAddr")


@dataclass(slots=True)
class NDOptTargetLinkAddr:
    mac: str = "00:00:00:00:00:00"

    def pack(self) -> bytes:
        return b"\x02\x01" + mac_to_bytes(self.mac, "NDOptTargetLinkAddr")


@dataclass(slots=True)
class NDOptPrefixInfo:
    """Prefix information; ``flags`` uses ND_PREFIX_ONLINK / _AUTONOMOUS."""

    prefix: str = "::"
    prefix_len: int = 64
    flags: int = ND_PREFIX_ONLINK | ND_PREFIX_AUTONOMOUS
    valid_lifetime: int = 0xFFFFFFFF
    preferred_lifetime: int = 0xFFFFFFFF

    @property
    def on_link(self) -> bool:
        return bool(self.flags & ND_PREFIX_ONLINK)

    @property
    def autonomous(self) -> bool:
        return bool(self.flags & ND_PREFIX_AUTONOMOUS)

    def pack(self) -> bytes:
        return _PREFIX.pack(ND_OPT_PREFIX_INFO, 4, self.prefix_len, self.flags,
                            self.valid_lifetime, self.preferred_lifetime, 0,
                            ip6_to_bytes(self.prefix, "NDOptPrefixInfo"))


@dataclass(slots=True)
class NDOptMTU:
    mtu: int = 1500

    def pack(self) -> bytes:
        return _MTU.pack(ND_OPT_MTU, 1, 0, self.mtu)


@dataclass(slots=True)
class NDOptRaw:
    """Any other option: ``data`` is what follows type and length, zero
    padded on pack to a multiple of 8 bytes in total."""

    type: int
    data: bytes = b""

    def pack(self) -> bytes:
        data = self.data
        if (2 + len(data)) & 7:
            data = data + bytes(-(2 + len(data)) & 7)
        return bytes((self.type, (2 + len(data)) >> 3)) + data


NDOption = Union[NDOptSourceLinkAddr, NDOptTargetLinkAddr, NDOptPrefixInfo, NDOptMTU, NDOptRaw]


def pack_nd_options(options: list[NDOption]) -> bytes:
    return b"".join([o.pack() for o in options])


def decode_nd_options(buf: bytes, off: int, end: int, who: str,
                      short_ok: bool) -> tuple[list[NDOption], int]:
    """Decode options from ``off`` to ``end``.  Returns them and where
    decoding stopped (``end`` unless ``short_ok`` let a cut option stop it)."""
    opts: list[NDOption] = []
    while off < end:
        if end - off < 2:
            if short_ok:
                break
            raise PacketError(who, "option header truncated", off)
        t, n = buf[off], buf[off + 1]
        if n == 0:  # RFC 4861 4.6: a zero-length option makes the packet invalid
            raise PacketError(who, f"option {t} has length 0", off)
        size = n << 3
        if off + size > end:
            if short_ok:
                break
            raise PacketError(who, f"option {t} of {size} bytes overruns the message", off)
        if n == 1 and t == ND_OPT_SOURCE_LINKADDR:
            opts.append(NDOptSourceLinkAddr(buf[off + 2:off + 8].hex(":")))
        elif n == 1 and t == ND_OPT_TARGET_LINKADDR:
            opts.append(NDOptTargetLinkAddr(buf[off + 2:off + 8].hex(":")))
        elif n == 4 and t == ND_OPT_PREFIX_INFO:
            _, _, plen, flags, valid, pref, _, prefix = _PREFIX.unpack_from(buf, off)
            opts.append(NDOptPrefixInfo(ip6_to_str(prefix), plen, flags, valid, pref))
        elif n == 1 and t == ND_OPT_MTU:
            opts.append(NDOptMTU(_MTU.unpack_from(buf, off)[3]))
        else:
            opts.append(NDOptRaw(t, buf[off + 2:off + size]))
        off += size
    return opts, off
