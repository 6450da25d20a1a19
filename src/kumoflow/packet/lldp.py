"""LLDP data units (IEEE 802.1AB).

The three mandatory TLVs (chassis ID, port ID, TTL) and the common text TLVs
are fields; every other TLV, including organisationally specific ones (type
127: 3-byte OUI + subtype + data), is kept as a (type, value bytes) pair in
``tlvs`` in the order received.
"""

from __future__ import annotations

import struct
from dataclasses import field

from .base import Header, header
from .consts import (
    ETH_TYPE_LLDP, LLDP_CHASSIS_ID_LOCALLY_ASSIGNED, LLDP_PORT_ID_LOCALLY_ASSIGNED,
    LLDP_TLV_CHASSIS_ID, LLDP_TLV_END, LLDP_TLV_PORT_DESCRIPTION, LLDP_TLV_PORT_ID,
    LLDP_TLV_SYSTEM_DESCRIPTION, LLDP_TLV_SYSTEM_NAME, LLDP_TLV_TTL,
)
from .dispatch import ETHERTYPES, Ctx
from .errors import PacketError

_TLV = struct.Struct("!H")
_TEXT = {
    LLDP_TLV_PORT_DESCRIPTION: "port_description",
    LLDP_TLV_SYSTEM_NAME: "system_name",
    LLDP_TLV_SYSTEM_DESCRIPTION: "system_description",
}
_MANDATORY = ("chassis ID", "port ID", "TTL")


def _tlv(t: int, value: bytes) -> bytes:
    if len(value) > 511:
        raise PacketError("LLDP", f"TLV type {t} value of {len(value)} bytes exceeds 511")
    if not 0 <= t < 128:
        raise PacketError("LLDP", f"TLV type {t} does not fit in 7 bits")
    return _TLV.pack((t << 9) | len(value)) + value


def _text(value: str) -> bytes:
    # surrogateescape so any received bytes survive a parse/pack round trip
    return value.encode("utf-8", "surrogateescape")


@header
class LLDP(Header):
    """An LLDPDU.  ``chassis_id`` / ``port_id`` are the raw ID bytes after
    the subtype byte (e.g. 6 MAC bytes for subtype 4)."""

    chassis_id: bytes = b""
    port_id: bytes = b""
    ttl: int = 120
    chassis_id_subtype: int = LLDP_CHASSIS_ID_LOCALLY_ASSIGNED
    port_id_subtype: int = LLDP_PORT_ID_LOCALLY_ASSIGNED
    port_description: str | None = None
    system_name: str | None = None
    system_description: str | None = None
    tlvs: list[tuple[int, bytes]] = field(default_factory=list)

    ETHERTYPE = ETH_TYPE_LLDP

    def _build(self, payload: bytes, hs: list, i: int) -> bytes:
        out = [
            _tlv(LLDP_TLV_CHASSIS_ID, bytes((self.chassis_id_subtype,)) + self.chassis_id),
            _tlv(LLDP_TLV_PORT_ID, bytes((self.port_id_subtype,)) + self.port_id),
            _tlv(LLDP_TLV_TTL, _TLV.pack(self.ttl)),
        ]
        for t, name in _TEXT.items():
            value = getattr(self, name)
            if value is not None:
                out.append(_tlv(t, _text(value)))
        for t, value in self.tlvs:
            out.append(_tlv(t, value))
        out.append(b"\0\0")  # End of LLDPDU
        out.append(payload)
        return b"".join(out)


def decode_lldp(buf: bytes, off: int, end: int, ctx: Ctx):
    h = LLDP()
    pos = off
    count = 0
    while True:
        if end - pos < 2:
            if count >= 3 and ctx.allow_short():
                break  # cut off after the mandatory TLVs: keep what we have
            raise PacketError("LLDP", "missing End of LLDPDU TLV", pos)
        word = _TLV.unpack_from(buf, pos)[0]
        t, n = word >> 9, word & 0x1FF
        vstart = pos + 2
        vend = vstart + n
        if vend > end:
            if count >= 3 and ctx.allow_short():
                break
            raise PacketError("LLDP", f"TLV type {t} length {n} overruns the frame", pos)
        if count < 3 and t != count + 1:
            raise PacketError("LLDP", f"TLV {count + 1} must be {_MANDATORY[count]}, got type {t}",
                              pos)
        if t == LLDP_TLV_END:
            pos = vend
            break
        if t == LLDP_TLV_CHASSIS_ID or t == LLDP_TLV_PORT_ID:
            if count >= 3:
                h.tlvs.append((t, buf[vstart:vend]))  # a repeat is not ours to judge
            elif n < 2:
                raise PacketError("LLDP", f"{_MANDATORY[count]} TLV length {n} is below 2", pos)
            elif t == LLDP_TLV_CHASSIS_ID:
                h.chassis_id_subtype, h.chassis_id = buf[vstart], buf[vstart + 1:vend]
            else:
                h.port_id_subtype, h.port_id = buf[vstart], buf[vstart + 1:vend]
        elif t == LLDP_TLV_TTL and count == 2:
            if n != 2:
                raise PacketError("LLDP", f"TTL TLV length {n} is not 2", pos)
            h.ttl = _TLV.unpack_from(buf, vstart)[0]
        elif t in _TEXT and getattr(h, _TEXT[t]) is None:
            setattr(h, _TEXT[t], buf[vstart:vend].decode("utf-8", "surrogateescape"))
        else:
            h.tlvs.append((t, buf[vstart:vend]))
        pos = vend
        count += 1
    return h, pos, pos, None


ETHERTYPES[ETH_TYPE_LLDP] = decode_lldp
