"""Ethernet II and 802.1Q / 802.1ad VLAN tags."""

from __future__ import annotations

import struct

from .base import Header, check_bits, header, next_l2_type
from .consts import ETH_TYPE_QINQ, ETH_TYPE_QINQ_OLD, ETH_TYPE_TEB, ETH_TYPE_VLAN
from .addr import mac_to_bytes
from .dispatch import ETHERTYPES, Ctx
from .errors import truncated

_ETH = struct.Struct("!6s6sH")
_TAG = struct.Struct("!HH")  # TCI, then the encapsulated ethertype


@header
class Ethernet(Header):
    """Ethernet II header.  ``type`` None = take it from the next layer."""

    dst: str = "ff:ff:ff:ff:ff:ff"
    src: str = "00:00:00:00:00:00"
    type: int | None = None

    ETHERTYPE = ETH_TYPE_TEB  # an Ethernet frame carried inside GRE/NVGRE
    _HEX = ("type",)

    def _build(self, payload: bytes, hs: list, i: int) -> bytes:
        t = self.type
        if t is None:
            t = next_l2_type(hs, i, "Ethernet")
        return _ETH.pack(mac_to_bytes(self.dst), mac_to_bytes(self.src), t) + payload


@header
class VLAN(Header):
    """One VLAN tag.  ``tpid`` is the tag's own type (0x8100 C-tag, 0x88a8
    S-tag); the layer below writes it as its type field.  ``type`` is the
    ethertype that follows the tag."""

    vid: int = 0
    pcp: int = 0
    dei: int = 0
    type: int | None = None
    tpid: int = ETH_TYPE_VLAN

    _HEX = ("type", "tpid")

    def _l2_type(self) -> int:
        return self.tpid

    def _build(self, payload: bytes, hs: list, i: int) -> bytes:
        t = self.type
        if t is None:
            t = next_l2_type(hs, i, "VLAN")
        tci = ((check_bits("VLAN", "pcp", self.pcp, 3) << 13)
               | (check_bits("VLAN", "dei", self.dei, 1) << 12)
               | check_bits("VLAN", "vid", self.vid, 12))
        return _TAG.pack(tci, t) + payload


def parse_ethernet(frame: bytes) -> tuple[Ethernet, int]:
    """Just the Ethernet header, for the L2 fast path (MAC learning).

    Returns the header and the payload offset (always 14; VLAN tags, if
    any, start there and are not decoded).
    """
    if len(frame) < 14:
        raise truncated("Ethernet", 0, 14, len(frame))
    dst, src, t = _ETH.unpack_from(frame, 0)
    return Ethernet(dst.hex(":"), src.hex(":"), t), 14


def decode_ethernet(buf: bytes, off: int, end: int, ctx: Ctx):
    if end - off < 14:
        raise truncated("Ethernet", off, 14, end - off)
    dst, src, t = _ETH.unpack_from(buf, off)
    return Ethernet(dst.hex(":"), src.hex(":"), t), off + 14, end, ETHERTYPES.get(t)


def _vlan_decoder(tpid: int):
    # One decoder per TPID so the tag records which type announced it.
    def decode_vlan(buf: bytes, off: int, end: int, ctx: Ctx):
        if end - off < 4:
            raise truncated("VLAN", off, 4, end - off)
        tci, t = _TAG.unpack_from(buf, off)
        tag = VLAN(tci & 0x0FFF, tci >> 13, (tci >> 12) & 1, t, tpid)
        return tag, off + 4, end, ETHERTYPES.get(t)
    return decode_vlan


ETHERTYPES[ETH_TYPE_TEB] = decode_ethernet
for _tpid in (ETH_TYPE_VLAN, ETH_TYPE_QINQ, ETH_TYPE_QINQ_OLD):
    ETHERTYPES[_tpid] = _vlan_decoder(_tpid)
