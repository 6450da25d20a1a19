"""The tunnel headers of the switch's tunnel ports, as bytes (sans-IO).

The kernel builds and strips the outer IPv4 header (and the UDP header of
VXLAN): a tunnel port reads and writes what follows it through a socket
(:mod:`.tunnelport`). What is left is here:

VXLAN (RFC 7348), the payload of a UDP datagram to port 4789::

    flags (8: 0x08, the I bit: the VNI is valid) | reserved (24)
    VNI (24)                                     | reserved (8)

  sent with the I bit alone and every reserved bit zero; on receipt the I
  bit must be set and the reserved bits are ignored (section 5).

NVGRE (RFC 7637), GRE (RFC 2784/2890) in IPv4 protocol 47::

    C R K S (0 0 1 0) | reserved0 (9) | version (3: 0) | protocol (16: 0x6558)
    VSID (24)                                          | FlowID (8)

  sent with the K bit alone and protocol 0x6558 (transparent Ethernet
  bridging). On receipt the K bit must be set, C (checksum), R (routing)
  and S (sequence number) clear (RFC 7637 section 3.2 forbids C and S; R
  is obsolete), version 0, protocol 0x6558.

The switch's `tunnel_id` field is the VXLAN VNI, and for NVGRE the whole
32-bit GRE key, VSID << 8 | FlowID: what Open vSwitch's ``gre`` ports put
there, so one controller drives both kinds with the same flows (VSID 5001
is tunnel_id 1280256; the controller's apps/overlay.py counts on it). A
FlowID a peer sets arrives in the tunnel id's low 8 bits; Open vSwitch
matches the whole key, so towards it the FlowID must stay 0
(notes/overlays.md). A tunnel id that does not fit the header (above 24
bits for VXLAN, 32 for NVGRE) cannot be sent (`tunnel_header` says so
with None; the port drops the frame and counts it in ``tx_errors`` rather
than send it into the VNI its low bits name). A received inner frame must
hold at least an Ethernet header (14 bytes).
"""

from __future__ import annotations

import struct

from kumoflow.packet.consts import ETH_TYPE_TEB, GRE_FLAG_KEY, UDP_PORT_VXLAN, VXLAN_FLAG_VNI

VXLAN, NVGRE = "vxlan", "nvgre"
VXLAN_PORT = UDP_PORT_VXLAN
IPPROTO_GRE = 47
HEADER_LEN = 8                       # both headers are 8 bytes
#: the largest tunnel id each header carries (VXLAN: the VNI; NVGRE: the GRE key)
MAX_TUNNEL_ID = {"vxlan": (1 << 24) - 1, "nvgre": (1 << 32) - 1}
MIN_FRAME = 14
#: bytes a tunnel adds on the underlay: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner
#: Ethernet (14) = 50; IPv4 (20) + GRE with a key (8) + inner Ethernet (14) = 42
OVERHEAD = {VXLAN: 50, NVGRE: 42}

VXLAN_FLAG_I = VXLAN_FLAG_VNI
_VXLAN_FLAGS = VXLAN_FLAG_VNI << 24
GRE_FIRST = _GRE_FIRST = GRE_FLAG_KEY << 16 | ETH_TYPE_TEB     # the first word of an NVGRE header
GRE_CHECKED = _GRE_CHECKED = 0xF007 << 16 | 0xFFFF            # its bits checked: C R K S, version, protocol
_WORDS = struct.Struct("!II")


def vxlan_header(vni: int) -> bytes:
    return _WORDS.pack(_VXLAN_FLAGS, vni << 8)


def nvgre_header(key: int) -> bytes:
    """The NVGRE header with GRE key `key` (VSID << 8 | FlowID)."""
    return _WORDS.pack(_GRE_FIRST, key)


_MAKERS = {VXLAN: vxlan_header, NVGRE: nvgre_header}


def tunnel_header(kind: str, tunnel_id: int) -> bytes | None:
    """The 8-byte header that carries `tunnel_id`, or None when it does not fit."""
    if not 0 <= tunnel_id <= MAX_TUNNEL_ID[kind]:
        return None
    return _MAKERS[kind](tunnel_id)


class BadHeader(ValueError):
    """A received tunnel packet that is not what its port carries."""


def vxlan_decap(payload) -> tuple[int, bytes]:
    """(VNI, inner frame) of a VXLAN UDP payload; BadHeader when it is not one."""
    if len(payload) < HEADER_LEN + MIN_FRAME:
        raise BadHeader(f"VXLAN payload of {len(payload)} bytes: shorter than a header and an Ethernet frame")
    first, second = _WORDS.unpack_from(payload)
    if not first & _VXLAN_FLAGS:
        raise BadHeader("VXLAN header without the I flag")
    return second >> 8, bytes(payload[HEADER_LEN:])


def ipv4_payload(packet) -> tuple[bytes, int, int]:
    """(source address as 4 bytes, offset, end) of an IPv4 packet's payload, as a
    raw socket reads it; BadHeader when the header does not hold together."""
    n = len(packet)
    if n < 20 or packet[0] >> 4 != 4:
        raise BadHeader(f"not an IPv4 packet ({n} bytes)")
    ihl = (packet[0] & 0x0F) * 4
    total = packet[2] << 8 | packet[3]
    if ihl < 20 or total < ihl or total > n:
        raise BadHeader(f"IPv4 header length {ihl} / total length {total} in a {n}-byte packet")
    if packet[6] & 0x3F or packet[7]:
        raise BadHeader("an IPv4 fragment")
    return bytes(packet[12:16]), ihl, total


def nvgre_decap(packet, off: int = 0, end: int | None = None) -> tuple[int, bytes]:
    """(GRE key: VSID << 8 | FlowID, inner frame) of the GRE packet at
    packet[off:end]; BadHeader when it is not NVGRE."""
    end = len(packet) if end is None else end
    if end - off < HEADER_LEN + MIN_FRAME:
        raise BadHeader(f"GRE packet of {end - off} bytes: shorter than an NVGRE header and an Ethernet frame")
    first, key = _WORDS.unpack_from(packet, off)
    if first & _GRE_CHECKED != _GRE_FIRST:
        raise BadHeader(f"GRE header {first >> 16:#06x} protocol {first & 0xFFFF:#06x}: "
                        "not NVGRE (K bit only, version 0, protocol 0x6558)")
    return key, bytes(packet[off + HEADER_LEN:end])


__all__ = ["VXLAN", "NVGRE", "VXLAN_PORT", "IPPROTO_GRE", "HEADER_LEN", "MAX_TUNNEL_ID", "OVERHEAD", "BadHeader",
           "tunnel_header", "vxlan_header", "nvgre_header", "vxlan_decap", "nvgre_decap", "ipv4_payload"]
