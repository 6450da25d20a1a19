"""TCP segments handed to a Linux port as one GSO super-frame (sans-IO).

Why: on a hypervisor most of a switch's time forwarding TCP into a VM is
the kernel taking each segment into the VM's stack (a ``sendmmsg`` to the
VM's veth runs the VM's IP and TCP receive for every frame), and the VM
then acknowledges every second segment, which the switches carry back.
The kernel's own VXLAN device avoids both with GRO: consecutive segments
of a flow go up as one large packet. A port read with ``PACKET_VNET_HDR``
(:mod:`.linuxport`) can do the same on the way out: consecutive segments
of one TCP flow among the frames sent together are joined into one frame
with a virtio-net header saying TCPv4 GSO (``gso_size`` the segments'
payload size, the checksum left to finish, NEEDS_CSUM). Where the veth
offers TSO the kernel hands that frame to the peer whole, as GRO would;
where it does not, the kernel cuts it again in C, which still spares the
switch one copy and one message per segment.

The join is GRO's, exact by construction: cut again (by the kernel, or by
:func:`kumoflow.switch.linuxport.segment`, the unit tests' oracle) the
super-frame gives back the very frames that were joined. So only what
segmentation rebuilds is allowed to differ, and everything else must be
equal:

* untagged IPv4 without options or fragments (DF may be set, as on all of
  them), IP total length exactly the frame's, IP ids consecutive, TOS, TTL,
  addresses equal; the IP header checksum correct;
* TCP: ports, acknowledgment number, window, urgent pointer and options
  (timestamps) equal; flags ACK, with PSH only on the last segment;
  sequence numbers contiguous; every payload but the last exactly the
  first's size, the last no larger; the TCP checksum correct -- a segment
  damaged on the way is passed on as it is, never "repaired" by the
  checksum the kernel would compute for the joined frame;
* at most 64 KB of IP packet.

Anything else is sent as it came, in order; a frame that is not such a
segment ends the run. Counters stay those of the wire: the port counts the
segments and their bytes.
"""

from __future__ import annotations

import struct

from kumoflow.packet.checksum import csum_finish, csum_part

GSO_TCPV4 = 1
VNET_F_NEEDS_CSUM = 1
_VNET = struct.Struct("=BBHHHH")          # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
# Ethernet type, then IPv4 (no options) and TCP headers, from byte 12
_HEAD = struct.Struct("!H BBHHHBBH 8s HHIIHHHH")
_IP_AT, _TCP_AT = 14, 34
_ACK, _PSH = 0x10, 0x08
MAX_IP = 65535
MIN_RUN = 2


def _checks(frame: bytes, tot: int, addrs: bytes) -> bool:
    """Both checksums of a segment are right."""
    ip = csum_part(frame[_IP_AT:_TCP_AT])
    if ip % 0xFFFF or not ip:
        return False
    tcp_len = tot - 20
    total = csum_part(addrs) + 6 + tcp_len + csum_part(frame[_TCP_AT:])
    return total != 0 and total % 0xFFFF == 0


def _segment_info(frame: bytes):
    """(key, seq, ip id, payload length, header length, flags, total length,
    addresses) of a frame that may join a run, or None."""
    n = len(frame)
    if n < 55 or frame[12] != 8 or frame[13] or frame[14] != 0x45 or frame[23] != 6:
        return None
    (_, _, tos, tot, ip_id, frag, ttl, _, _, addrs, sport, dport, seq, ack, off_flags, window, _,
     urg) = _HEAD.unpack_from(frame, 12)
    hdr = _TCP_AT + (off_flags >> 12) * 4
    flags = off_flags & 0x1FF
    if (tot != n - 14 or frag & 0x3FFF or hdr < 54 or hdr >= n or flags & ~_PSH != _ACK
            or not _checks(frame, tot, addrs)):
        return None
    key = (addrs, sport, dport, tos, ttl, frag, ack, window, urg, frame[54:hdr])
    return key, seq, ip_id, n - hdr, hdr, flags, tot, addrs


def join(frames: list) -> list | None:
    """The frames as sent, in order: each item a frame as it came or, for a
    run of at least MIN_RUN segments of one flow, (virtio-net header,
    super-frame, the segments joined). None when nothing joins
    (the caller then sends the frames as they are)."""
    out: list = []
    joined = False
    run: list = []           # frames of the current run
    info = None              # its first frame's info
    nxt_seq = nxt_id = size = ip_len = 0
    for frame in frames:
        this = _segment_info(frame)
        if (this is not None and run and this[0] == info[0] and this[1] == nxt_seq and this[2] == nxt_id
                and this[3] <= size and ip_len + this[3] <= MAX_IP):
            run.append(frame)
            nxt_seq = (this[1] + this[3]) & 0xFFFFFFFF
            nxt_id = (this[2] + 1) & 0xFFFF
            ip_len += this[3]
            if this[5] & _PSH or this[3] < size:        # nothing may follow a short or pushed segment
                joined |= _close(out, run, info)
                run = []
            continue
        if run:
            joined |= _close(out, run, info)
            run = []
        if this is None or this[5] & _PSH:
            out.append(frame)
            continue
        run = [frame]
        info = this
        size = this[3]
        nxt_seq = (this[1] + size) & 0xFFFFFFFF
        nxt_id = (this[2] + 1) & 0xFFFF
        ip_len = this[4] - _IP_AT + size
    if run:
        joined |= _close(out, run, info)
    return out if joined else None


def _close(out: list, run: list, info) -> bool:
    """Put the run in `out`: joined if long enough (True), else frame by frame."""
    if len(run) < MIN_RUN:
        out.extend(run)
        return False
    _, _, _, size, hdr, _, _, addrs = info
    first = run[0]
    head = bytearray(first[:hdr])
    payload = b"".join([f[hdr:] for f in run])
    tot = hdr - _IP_AT + len(payload)
    struct.pack_into("!H", head, _IP_AT + 2, tot)
    head[_IP_AT + 10:_IP_AT + 12] = b"\0\0"
    struct.pack_into("!H", head, _IP_AT + 10, csum_finish(csum_part(head[_IP_AT:_TCP_AT])))
    head[_TCP_AT + 13] |= run[-1][_TCP_AT + 13] & _PSH
    # NEEDS_CSUM: the checksum field holds the pseudo-header's sum (with the joined TCP length)
    pseudo = (csum_part(addrs) + 6 + tot - 20) % 0xFFFF or 0xFFFF
    struct.pack_into("!H", head, _TCP_AT + 16, pseudo)
    vnet = _VNET.pack(VNET_F_NEEDS_CSUM, GSO_TCPV4, hdr, size, _TCP_AT, 16)
    out.append((vnet, bytes(head) + payload, run))
    return True


__all__ = ["join", "MIN_RUN"]
