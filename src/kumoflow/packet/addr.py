"""Address text <-> wire bytes.

Headers hold addresses as text ("aa:bb:cc:dd:ee:ff", "10.0.0.1", "fe80::1")
because that is what apps compare, log and put in flow matches.  The
conversions use C-level helpers (bytes.hex, socket.inet_*) to stay cheap on
the packet-in path.
"""

from __future__ import annotations

import ipaddress
import socket

from .errors import PacketError

_AF6 = socket.AF_INET6
_AF4 = socket.AF_INET
_ntop = socket.inet_ntop
_pton = socket.inet_pton
_ntoa = socket.inet_ntoa

# Wire -> text.  bytes.hex(":") gives lowercase colon form in one C call.
# inet_ntoa/ntop cost ~0.4us each and the same hosts recur packet after
# packet, so they go through a small memo; clearing it when full bounds the
# memory a flood of random source addresses can take.
_MEMO_MAX = 4096
_memo4: dict[bytes, str] = {}
_memo6: dict[bytes, str] = {}


def mac_to_str(raw: bytes) -> str:
    return raw.hex(":")


def ip4_to_str(raw: bytes) -> str:
    text = _memo4.get(raw)
    if text is None:
        if len(_memo4) >= _MEMO_MAX:
            _memo4.clear()
        text = _memo4[raw] = _ntoa(raw)
    return text


def ip6_to_str(raw: bytes) -> str:
    text = _memo6.get(raw)
    if text is None:
        if len(_memo6) >= _MEMO_MAX:
            _memo6.clear()
        text = _memo6[raw] = _ntop(_AF6, raw)
    return text


# Text -> wire, with a PacketError naming the header on bad input.  Memoized
# like the other direction: apps build to the same few hosts over and over.
_memo_mac: dict[str, bytes] = {}
_memo_ip4: dict[str, bytes] = {}
_memo_ip6: dict[str, bytes] = {}


def _remember(memo: dict, text: str, raw: bytes) -> bytes:
    if len(memo) >= _MEMO_MAX:
        memo.clear()
    memo[text] = raw
    return raw


def mac_to_bytes(mac: str, header: str = "Ethernet") -> bytes:
    raw = _memo_mac.get(mac) if type(mac) is str else None
    if raw is not None:
        return raw
    try:
        raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    except (AttributeError, TypeError, ValueError):
        raw = b""
    if len(raw) != 6:
        raise PacketError(header, f"bad MAC address {mac!r}")
    return _remember(_memo_mac, mac, raw)


def ip4_to_bytes(ip: str, header: str = "IPv4") -> bytes:
    raw = _memo_ip4.get(ip) if type(ip) is str else None
    if raw is not None:
        return raw
    try:
        raw = _pton(_AF4, ip)  # strict dotted quad, unlike inet_aton
    except (OSError, TypeError, ValueError):
        raise PacketError(header, f"bad IPv4 address {ip!r}") from None
    return _remember(_memo_ip4, ip, raw)


def ip6_to_bytes(ip: str, header: str = "IPv6") -> bytes:
    raw = _memo_ip6.get(ip) if type(ip) is str else None
    if raw is not None:
        return raw
    try:
        raw = _pton(_AF6, ip)
    except (OSError, TypeError, ValueError):
        raise PacketError(header, f"bad IPv6 address {ip!r}") from None
    return _remember(_memo_ip6, ip, raw)


def link_local(mac: str) -> ipaddress.IPv6Address:
    """The modified EUI-64 link-local address of a MAC (RFC 4291 2.5.1)."""
    raw = bytearray(mac_to_bytes(mac))
    raw[0] ^= 0x02
    return ipaddress.IPv6Address(b"\xfe\x80" + b"\0" * 6 + bytes(raw[:3]) + b"\xff\xfe" + bytes(raw[3:]))


def eui64(prefix: ipaddress.IPv6Network, mac: str) -> ipaddress.IPv6Address:
    """The address SLAAC gives a host with `mac` in a /64 (RFC 4862)."""
    return ipaddress.IPv6Address(int(prefix.network_address) | int(link_local(mac)) & (1 << 64) - 1)
