"""Option lists inside IPv4, TCP and IPv6 extension headers.

Headers keep their options as raw bytes (so parsing never fails on an odd
option and a parsed packet re-packs byte for byte); these helpers turn the
bytes into (kind, value) pairs and back when an app wants to look inside.
"""

from __future__ import annotations

from .errors import PacketError

Option = tuple[int, bytes]


def decode_kind_len(data: bytes, who: str = "options", offset: int = 0) -> list[Option]:
    """IPv4 / TCP style: kind 0 = end of list, kind 1 = no-op (one byte each),
    others are kind, total length, value.  Bytes after an end-of-list are
    padding and are not returned."""
    out: list[Option] = []
    i, n = 0, len(data)
    while i < n:
        kind = data[i]
        if kind <= 1:
            out.append((kind, b""))
            if kind == 0:
                break
            i += 1
            continue
        if i + 1 >= n:
            raise PacketError(who, f"option {kind} has no length byte", offset + i)
        length = data[i + 1]
        if length < 2 or i + length > n:
            raise PacketError(who, f"option {kind} has bad length {length}", offset + i)
        out.append((kind, bytes(data[i + 2:i + length])))
        i += length
    return out


def encode_kind_len(options: list[Option]) -> bytes:
    """Inverse of decode_kind_len (no padding added; the header pads)."""
    out = bytearray()
    for kind, value in options:
        if kind <= 1:
            out.append(kind)
        else:
            out += bytes((kind, len(value) + 2)) + value
    return bytes(out)


def decode_tlv6(data: bytes, who: str = "IPv6 options", offset: int = 0,
                skip_padding: bool = True) -> list[Option]:
    """IPv6 hop-by-hop / destination options (RFC 8200 4.2): type 0 is Pad1
    (one byte), all others are type, data length, data."""
    out: list[Option] = []
    i, n = 0, len(data)
    while i < n:
        kind = data[i]
        if kind == 0:
            if not skip_padding:
                out.append((0, b""))
            i += 1
            continue
        if i + 1 >= n:
            raise PacketError(who, f"option {kind} has no length byte", offset + i)
        end = i + 2 + data[i + 1]
        if end > n:
            raise PacketError(who, f"option {kind} overruns the header", offset + i)
        if kind != 1 or not skip_padding:
            out.append((kind, bytes(data[i + 2:end])))
        i = end
    return out


def encode_tlv6(options: list[Option]) -> bytes:
    out = bytearray()
    for kind, value in options:
        if kind == 0:
            out.append(0)
        else:
            out += bytes((kind, len(value))) + value
    return bytes(out)


def pad_tlv6(options: bytes) -> bytes:
    """Pad an option area so 2 + len is a multiple of 8, with Pad1/PadN."""
    need = -(2 + len(options)) % 8
    if need == 0:
        return options
    if need == 1:
        return options + b"\x00"
    return options + bytes((1, need - 2)) + bytes(need - 2)
