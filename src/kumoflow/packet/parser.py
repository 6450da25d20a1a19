"""parse(): decode a whole frame, outermost header first."""

from __future__ import annotations

from .base import Packet
from .dispatch import Ctx
from .ethernet import decode_ethernet


def parse(frame: bytes, *, truncated_ok: bool = False) -> Packet:
    """Decode an Ethernet frame into a Packet.

    Decoding walks Ethernet -> VLAN tags -> ARP / IPv4 / IPv6 (+ extension
    headers) / LLDP -> ICMP / ICMPv6 / TCP / UDP / GRE -> VXLAN or NVGRE ->
    inner Ethernet ..., and stops at the first protocol it does not know;
    the bytes from there on are ``Packet.payload``.

    ``truncated_ok``: accept length fields pointing past the end of
    ``frame``, as in an OpenFlow packet-in cut to miss_send_len.  Headers
    must still be complete; checksum_ok is None for the cut layers.

    Raises PacketError (a ValueError) for truncated or malformed headers.
    """
    buf = frame if type(frame) is bytes else bytes(frame)
    ctx = Ctx(truncated_ok)
    headers = ctx.headers
    off, end = 0, len(buf)
    dec = decode_ethernet
    while dec is not None:
        step = dec(buf, off, end, ctx)
        if step is None:
            break
        h, off, end, dec = step
        headers.append(h)
    pkt = Packet.__new__(Packet)
    pkt.headers = headers
    pkt.payload = buf[off:end]
    pkt.trailer = buf[end:]  # padding after the innermost length-delimited end
    return pkt
