"""Header base class and the Packet container (a stack of headers + payload).

Building goes inside-out: the innermost layer is packed first so each outer
layer sees its finished payload and can fill in lengths, checksums and the
"next protocol" field from the layer above it.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import ClassVar, Iterator, TypeVar

from .errors import PacketError

H = TypeVar("H", bound="Header")

# Every header class uses this: slots for small, fast objects; our own repr.
header = dataclasses.dataclass(slots=True, repr=False)

_BYTES_LIKE = (bytes, bytearray, memoryview)


class Header:
    """Base for all headers.

    Class attributes a subclass may set:
      ETHERTYPE -- the value a layer below (Ethernet, VLAN, GRE) puts in its
                   type field for this header; used when that field is None.
      IP_PROTO  -- the same for IPv4.proto / IPv6 next header.
      _AUTO     -- length/checksum fields that Packet.recompute() resets to
                   None so the next pack() computes them again.
      _HEX      -- fields shown in hex by repr().
    """

    __slots__ = ()
    ETHERTYPE: ClassVar[int | None] = None
    IP_PROTO: ClassVar[int | None] = None
    _AUTO: ClassVar[tuple[str, ...]] = ()
    _HEX: ClassVar[tuple[str, ...]] = ()

    def _build(self, payload: bytes, hs: list[Header], i: int) -> bytes:
        """Return this header's wire bytes followed by ``payload``.

        ``hs[i]`` is self; neighbours supply auto fields (type, checksum).
        """
        raise NotImplementedError

    def _l2_type(self) -> int | None:
        return self.ETHERTYPE

    def _ip_proto(self) -> int | None:
        return self.IP_PROTO

    def __truediv__(self, other) -> Packet:
        return Packet([self]) / other

    def pack(self, payload: bytes = b"") -> bytes:
        """Wire bytes of this header alone (plus ``payload``)."""
        return Packet([self], payload).pack()

    def __bytes__(self) -> bytes:
        return self.pack()

    def copy(self: H, **changes) -> H:
        """A shallow copy, optionally with some fields changed."""
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        # Short: skip None ("computed on build") and non-address fields still
        # at their default; addresses are always shown.
        parts = []
        hexed = self._HEX
        for name, f in self.__dataclass_fields__.items():  # type: ignore[attr-defined]
            if not f.repr:
                continue
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, str):
                if f.default is not dataclasses.MISSING:
                    if value == f.default:
                        continue
                elif f.default_factory is not dataclasses.MISSING and not value:
                    continue
            if name in hexed and isinstance(value, int):
                parts.append(f"{name}={value:#06x}")
            else:
                parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


def next_l2_type(hs: list[Header], i: int, who: str) -> int:
    """Ethertype for the layer after hs[i], for a type field left as None."""
    if i + 1 < len(hs):
        value = hs[i + 1]._l2_type()
        if value is not None:
            return value
    raise PacketError(who, "type field is None and the next layer does not imply one")


def next_ip_proto(hs: list[Header], i: int, payload: bytes, who: str, none_ok: bool) -> int:
    """IP protocol / next header for the layer after hs[i].

    ``none_ok``: IPv6 headers may say 59 (No Next Header) when nothing follows.
    """
    if i + 1 < len(hs):
        value = hs[i + 1]._ip_proto()
        if value is not None:
            return value
    elif none_ok and not payload:
        return 59
    raise PacketError(who, "protocol field is None and the next layer does not imply one")


def check_bits(who: str, name: str, value: int, bits: int) -> int:
    """Range check for bit fields that struct cannot check (VLAN id, flow label...)."""
    if not 0 <= value < (1 << bits):
        raise PacketError(who, f"{name}={value!r} does not fit in {bits} bits")
    return value


class Packet:
    """A stack of headers, then raw ``payload`` bytes, then ``trailer``.

    ``trailer`` holds the bytes parse() found past the end given by the
    length fields (IPv4/IPv6/UDP lengths, ARP and LLDP sizes): Ethernet
    minimum-size padding, usually.  pack() appends it unchanged, so
    parse(frame).pack() == frame.
    """

    __slots__ = ("headers", "payload", "trailer")

    def __init__(self, headers=(), payload: bytes = b"", trailer: bytes = b"") -> None:
        self.headers: list[Header] = list(headers)
        self.payload = payload if type(payload) is bytes else bytes(payload)
        self.trailer = trailer if type(trailer) is bytes else bytes(trailer)

    # -- composition ---------------------------------------------------------
    def __truediv__(self, other) -> Packet:
        if isinstance(other, Header):
            if self.payload:
                raise TypeError("cannot stack a header on top of raw payload bytes")
            return Packet(self.headers + [other], b"", self.trailer)
        if isinstance(other, _BYTES_LIKE):
            return Packet(self.headers, self.payload + bytes(other), self.trailer)
        if isinstance(other, Packet):
            if self.payload and other.headers:
                raise TypeError("cannot stack headers on top of raw payload bytes")
            return Packet(self.headers + other.headers, self.payload + other.payload,
                          self.trailer)
        return NotImplemented

    # -- access ----------------------------------------------------------------
    def get(self, cls: type[H], default=None) -> H | None:
        """First header that is an instance of ``cls`` (outermost first)."""
        for h in self.headers:
            if isinstance(h, cls):
                return h
        return default

    def all(self, cls: type[H]) -> list[H]:
        """Every header that is an instance of ``cls``, outermost first."""
        return [h for h in self.headers if isinstance(h, cls)]

    def after(self, cls: type[Header]) -> Packet:
        """The layers after the first ``cls`` header: decapsulation.

        ``pkt.after(VXLAN)`` is the inner frame.  KeyError if ``cls`` is absent.
        """
        for n, h in enumerate(self.headers):
            if isinstance(h, cls):
                return Packet(self.headers[n + 1:], self.payload)
        raise KeyError(cls.__name__)

    def __getitem__(self, key):
        if isinstance(key, type):
            h = self.get(key)
            if h is None:
                raise KeyError(key.__name__)
            return h
        return self.headers[key]

    def __contains__(self, cls) -> bool:
        return self.get(cls) is not None

    def __iter__(self) -> Iterator[Header]:
        return iter(self.headers)

    def __len__(self) -> int:
        return len(self.headers)

    # -- building --------------------------------------------------------------
    def pack(self) -> bytes:
        hs = self.headers
        data = self.payload
        i = len(hs) - 1
        try:
            while i >= 0:
                data = hs[i]._build(data, hs, i)
                i -= 1
        except PacketError:
            raise
        except (struct.error, OverflowError, ValueError, TypeError) as exc:
            # struct / bytes() / to_bytes range and type checks on user fields.
            raise PacketError(type(hs[i]).__name__, f"bad field value ({exc})") from None
        return data + self.trailer if self.trailer else data

    __bytes__ = pack

    def recompute(self) -> Packet:
        """Reset every length and checksum field to None, in place.

        Call this after changing a parsed packet so pack() recomputes them
        instead of reusing the received values.  Returns self.
        """
        for h in self.headers:
            for name in h._AUTO:
                setattr(h, name, None)
        return self

    # -- misc ------------------------------------------------------------------
    def __eq__(self, other) -> bool:
        if not isinstance(other, Packet):
            return NotImplemented
        return (self.headers == other.headers and self.payload == other.payload
                and self.trailer == other.trailer)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        parts = [repr(h) for h in self.headers]
        if self.payload:
            parts.append(repr(self.payload))
        text = " / ".join(parts) or "<empty>"
        if self.trailer:
            text += f", trailer={self.trailer!r}"
        return f"Packet({text})"
