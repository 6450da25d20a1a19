"""A switch port on a Linux network interface, through an AF_PACKET raw socket.

The socket is bound to the interface for every protocol (ETH_P_ALL),
nonblocking, and read by the runtime with ``loop.add_reader``. Frames the
socket sees leaving the interface (our own transmissions, and whatever the
host's stack sends on it) are ignored: ``PACKET_IGNORE_OUTGOING`` where the
kernel has it, and the ``PACKET_OUTGOING`` packet type of each received
frame otherwise. The interface is put in promiscuous mode (a packet-socket
membership, dropped with the socket) and brought up administratively.

Batched I/O. Python pays per call, so frames move in batches both ways:

* receiving: a PACKET_MMAP receive ring (TPACKET_V2, :mod:`.ring`): the
  kernel copies each frame into the next slot when it arrives, and
  :meth:`LinuxPort.read_frames` takes up to ``RX_BATCH`` (64) frames per
  readiness event with no system call. A run of plain frames is read
  column by column (strided views over the slot headers give each field of
  every slot as one list; one comprehension copies the frames out; one
  strided store gives the slots back), so a frame costs little more than
  its own ``bytes``; slots that need more (offloads to finish, a VLAN tag
  to put back, a frame too large for its slot, a truncated one) take a
  slot-by-slot loop. Without a ring (the kernel refused the memory) frames
  are read one ``recvmsg`` at a time.
* sending: :meth:`LinuxPort.send` copies the frame into a preallocated
  ``sendmmsg`` batch (:mod:`.mmsg`); the runtime flushes every port with
  queued frames at the end of each read cycle, so the frames one batch
  produced leave in one system call per port (and a batch of ``TX_BATCH``
  frames leaves at once). Without a runtime (``on_pending`` unset) a frame
  is sent at once.
  Consecutive segments of one TCP flow among the frames the fast path
  hands over together (``send_many``) leave as one GSO frame with its
  virtio-net header, as the kernel's GRO would hand them up
  (:mod:`.coalesce`: exact, checksums verified first); the kernel passes
  it whole to a veth peer where TSO is on, and cuts it again where not.

Which is faster was measured on a 2-CPU VM, the kumoflow switch forwarding
64-byte frames: ring + sendmmsg about 1.3x recvmmsg + sendmmsg and 2.3x
one recvmsg/send per frame, mostly from the kernel doing the copy at
arrival and from no per-frame system calls (docs/benchmarks.md, "Switch
forwarding vs Open vSwitch").

Offloads. A veth (and many NICs) hands a raw socket frames whose transport
checksum is not computed yet (the kernel's CHECKSUM_PARTIAL) and, with
segmentation offloads, TCP/UDP "super-frames" of up to 64 KB. Forwarded as
they are, TCP stalls (bad checksums; frames larger than the next link's
MTU). This port **handles them itself** with ``PACKET_VNET_HDR``: each
frame comes with a virtio-net header, and

* a frame flagged NEEDS_CSUM gets its checksum completed (from
  ``csum_start``/``csum_offset``, as the kernel's skb_checksum_help does);
* a GSO frame (TCPv4, TCPv6, UDP_L4) is cut into ``gso_size`` segments in
  software: IP total length / payload length, IPv4 id and header checksum,
  TCP sequence numbers and flags (FIN/PSH only on the last segment, CWR only
  on the first), and every transport checksum recomputed;
* a GSO type it cannot segment (legacy UFO) is dropped and counted in
  ``rx_errors``.

Frames sent carry an all-zero virtio-net header (no offload requested).
So TCP works whether or not offloads are on; the emulator still turns
veth offloads off by default (topology ``offloads: false``), which spares
the switch this work. VLAN tags the kernel moved out of the frame
(``rx-vlan`` offload) are put back from the ring slot's header (from
``PACKET_AUXDATA`` for frames read with recvmsg).

Link state, hardware address and speed come from ``/sys/class/net/IFACE``
(``flags``, ``carrier``, ``operstate``, ``address``, ``speed``, ``duplex``);
:meth:`LinuxPort.refresh` re-reads them (the runtime calls it on netlink
RTM_NEWLINK events and on a slow poll) and says whether anything changed.
When the interface goes down the kernel leaves ENETDOWN pending on the
socket, and uvloop stops polling a socket with an error pending: the
runtime collects it (:meth:`LinuxPort.take_error`) on every link event and
poll and re-adds the port's reader, so the port receives again once the
link is back, however many times it flaps. A PORT_MOD that sets
``OFPPC_PORT_DOWN`` takes the interface administratively down (as Open
vSwitch does), clearing it brings it up.
An interface deleted and made again under the same name is noticed
(:attr:`LinuxPort.replaced`) and the runtime re-opens the socket on it.

Counters: as :mod:`kumoflow.switch.port` splits them, the datapath counts
reception (``rx_packets``/``rx_bytes``, per frame handed to it: a GSO
super-frame counts as the segments it was cut into) and this port counts
transmission (``tx_packets``/``tx_bytes``, ``tx_dropped`` when the socket
buffer is full or the port closed, ``tx_errors`` for other send failures
such as a frame larger than the interface's MTU) and receive errors
(``rx_errors``: truncated frames, offloaded frames it cannot finish).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import struct
import sys
import time

from kumoflow import ofp
from kumoflow.packet.checksum import csum_finish, csum_part, internet_checksum

from .coalesce import MIN_RUN, join
from .mmsg import SendBatch
from .port import PS_LINK_DOWN, PortBase
from .ring import (SLL_PKTTYPE, TP_STATUS_COPY, TP_STATUS_KERNEL, TP_STATUS_SLOW, TP_STATUS_VLAN_TPID_VALID,
                   TP_STATUS_VLAN_VALID, RxRing, slot_size)

log = logging.getLogger("kumoflow.switch.port")

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_AUXDATA = 8
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

_AUXDATA = struct.Struct("=IIIHHHH")        # struct tpacket_auxdata
_MREQ = struct.Struct("=iHH8s")             # struct packet_mreq
_IFREQ_FLAGS = struct.Struct("16sh14x")     # struct ifreq with ifr_flags

# --- virtio-net header (the kernel writes it in host byte order) -------------------
VNET_HDR = struct.Struct("=BBHHHH")          # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_HDR_LEN = VNET_HDR.size                 # 10
VNET_F_NEEDS_CSUM = 1
GSO_NONE, GSO_TCPV4, GSO_UDP, GSO_TCPV6, GSO_UDP_L4 = 0, 1, 3, 4, 5
GSO_ECN = 0x80
_NO_OFFLOAD = bytes(VNET_HDR_LEN)

RECV_BUFFER = 256 * 1024                     # a GSO frame is at most 64 KB (more with BIG TCP)
SOCKET_BUFFER = 4 * 1024 * 1024
USE_RING = True                              # False: recvmsg only (for comparisons)
JOIN_TCP = True                              # False: never join TCP segments (for comparisons)
JOIN_MIN = 128                               # a batch whose frames are all smaller holds nothing to join
RING_FRAMES = 1024                           # receive ring slots per port (2 MB at MTU 1500)
RX_BATCH = 64                                # frames read per readiness event
TX_BATCH = 64                                # frames per sendmmsg
DROP_ERRNOS = (errno.EAGAIN, errno.ENOBUFS, errno.ENETDOWN, errno.ENXIO)
_U32 = struct.Struct("=I")
#: NEEDS_CSUM in the flags byte or any gso_type, read as one native 16-bit word
_VNET_WORK = 0xFF01 if sys.byteorder == "little" else 0x01FF
_U16X2 = struct.Struct("=HH")
_VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
_TCP_FIN, _TCP_PSH, _TCP_CWR = 0x01, 0x08, 0x80

# speed (Mb/s) -> OFPPF full-duplex bit
_SPEED_FEATURES = {10: ofp.OFPPF.F_10MB_FD, 100: ofp.OFPPF.F_100MB_FD, 1000: ofp.OFPPF.F_1GB_FD,
                   10000: ofp.OFPPF.F_10GB_FD, 40000: ofp.OFPPF.F_40GB_FD,
                   100000: ofp.OFPPF.F_100GB_FD, 1000000: ofp.OFPPF.F_1TB_FD}
_HALF_DUPLEX = {10: ofp.OFPPF.F_10MB_HD, 100: ofp.OFPPF.F_100MB_HD, 1000: ofp.OFPPF.F_1GB_HD}


class PortError(Exception):
    """The interface cannot be used as a switch port."""


# --- offload completion (pure functions, no sockets) -----------------------------------


def complete_checksum(frame: bytes | bytearray, csum_start: int, csum_offset: int) -> bytes:
    """Finish a CHECKSUM_PARTIAL frame: the field at csum_start+csum_offset holds
    the pseudo-header sum; the one's complement of the sum from csum_start on
    goes there."""
    pos = csum_start + csum_offset
    if csum_start >= len(frame) or pos + 2 > len(frame):
        raise ValueError(f"checksum offset {csum_start}+{csum_offset} outside a {len(frame)}-byte frame")
    out = bytearray(frame)
    value = csum_finish(csum_part(out[csum_start:])) or 0xFFFF
    out[pos] = value >> 8
    out[pos + 1] = value & 0xFF
    return bytes(out)


def _l3_offset(frame) -> tuple[int, int]:
    """(offset of the network header, its ethertype), skipping VLAN tags."""
    o = 12
    ethertype = frame[o] << 8 | frame[o + 1]
    while ethertype in _VLAN_TPIDS:
        o += 4
        ethertype = frame[o] << 8 | frame[o + 1]
    return o + 2, ethertype


def _l4_offset(frame, l3: int, ethertype: int, proto: int, hint: int) -> int:
    if ethertype == 0x0800:
        if frame[l3] >> 4 != 4 or frame[l3 + 9] != proto:
            raise ValueError("GSO frame is not the IPv4 packet its type says")
        return l3 + (frame[l3] & 0x0F) * 4
    if ethertype == 0x86DD:
        if frame[l3 + 6] == proto:
            return l3 + 40
        if hint > l3 + 40:      # extension headers: trust csum_start
            return hint
        raise ValueError("GSO frame is not the IPv6 packet its type says")
    raise ValueError(f"GSO frame with ethertype {ethertype:#06x}")


def _pseudo_header(frame, l3: int, ethertype: int, proto: int, length: int) -> int:
    if ethertype == 0x0800:
        return csum_part(frame[l3 + 12:l3 + 20]) + proto + length
    return csum_part(frame[l3 + 8:l3 + 40]) + proto + length


def _fix_ip(seg: bytearray, l3: int, ethertype: int, ip_id: int | None) -> None:
    if ethertype == 0x0800:
        ihl = (seg[l3] & 0x0F) * 4
        struct.pack_into("!H", seg, l3 + 2, len(seg) - l3)
        if ip_id is not None:
            struct.pack_into("!H", seg, l3 + 4, ip_id & 0xFFFF)
        seg[l3 + 10:l3 + 12] = b"\0\0"
        struct.pack_into("!H", seg, l3 + 10, internet_checksum(seg[l3:l3 + ihl]))
    else:
        struct.pack_into("!H", seg, l3 + 4, len(seg) - l3 - 40)


def segment(frame: bytes, gso_type: int, gso_size: int, csum_start: int = 0) -> list[bytes]:
    """Cut a GSO super-frame into wire-size frames with every checksum computed."""
    kind = gso_type & ~GSO_ECN
    if gso_size <= 0:
        raise ValueError("GSO frame with gso_size 0")
    l3, ethertype = _l3_offset(frame)
    if kind in (GSO_TCPV4, GSO_TCPV6):
        proto = 6
        l4 = _l4_offset(frame, l3, ethertype, proto, csum_start)
        head_len = l4 + (frame[l4 + 12] >> 4) * 4
    elif kind == GSO_UDP_L4:
        proto = 17
        l4 = _l4_offset(frame, l3, ethertype, proto, csum_start)
        head_len = l4 + 8
    else:
        raise ValueError(f"cannot segment GSO type {gso_type:#x}")
    head = frame[:head_len]
    payload = memoryview(frame)[head_len:]
    ip_id = struct.unpack_from("!H", frame, l3 + 4)[0] if ethertype == 0x0800 else None
    seq = struct.unpack_from("!I", frame, l4 + 4)[0] if proto == 6 else 0
    tcp_flags = frame[l4 + 13] if proto == 6 else 0
    out = []
    offsets = range(0, len(payload), gso_size) if len(payload) else [0]
    for i, off in enumerate(offsets):
        chunk = payload[off:off + gso_size]
        last = off + gso_size >= len(payload)
        seg = bytearray(head)
        seg += chunk
        if proto == 6:
            struct.pack_into("!I", seg, l4 + 4, (seq + off) & 0xFFFFFFFF)
            flags = tcp_flags
            if not last:
                flags &= ~(_TCP_FIN | _TCP_PSH)
            if i:
                flags &= ~_TCP_CWR
            seg[l4 + 13] = flags
            check_at = l4 + 16
        else:
            struct.pack_into("!H", seg, l4 + 4, len(seg) - l4)
            check_at = l4 + 6
        _fix_ip(seg, l3, ethertype, None if ip_id is None else ip_id + i)
        seg[check_at:check_at + 2] = b"\0\0"
        total = _pseudo_header(seg, l3, ethertype, proto, len(seg) - l4) + csum_part(seg[l4:])
        value = csum_finish(total)
        if proto == 17 and value == 0:
            value = 0xFFFF
        struct.pack_into("!H", seg, check_at, value)
        out.append(bytes(seg))
    return out


def finish_offloads(vnet: bytes, frame: bytes) -> list[bytes]:
    """The wire frames of one frame read with its virtio-net header."""
    flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack_from(vnet)
    if gso_type & ~GSO_ECN != GSO_NONE:
        return segment(frame, gso_type, gso_size, csum_start)
    if flags & VNET_F_NEEDS_CSUM:
        return [complete_checksum(frame, csum_start, csum_offset)]
    return [frame]


def insert_vlan(frame: bytes, tpid: int, tci: int) -> bytes:
    return frame[:12] + struct.pack("!HH", tpid, tci) + frame[12:]


# --- the port ------------------------------------------------------------------------------


def _sysfs(ifname: str, attr: str) -> str | None:
    try:
        with open(f"/sys/class/net/{ifname}/{attr}") as f:
            return f.read().strip()
    except OSError:          # EINVAL for carrier/speed of a down interface, ENOENT if gone
        return None


def interface_exists(ifname: str) -> bool:
    return os.path.isdir(f"/sys/class/net/{ifname}")


def set_admin_up(ifname: str, up: bool) -> None:
    """Set IFF_UP with the SIOCSIFFLAGS ioctl."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = _IFREQ_FLAGS.pack(ifname.encode(), 0)
        flags = _IFREQ_FLAGS.unpack(fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        new = flags | IFF_UP if up else flags & ~IFF_UP
        if new != flags:
            fcntl.ioctl(s, SIOCSIFFLAGS, _IFREQ_FLAGS.pack(ifname.encode(), new))


class LinuxPort(PortBase):
    """An OpenFlow port on Linux interface `ifname`.

    Without a runtime, :meth:`send` transmits at once. The runtime sets
    :attr:`on_pending` (called with the port when its first frame is queued)
    and calls :meth:`flush` at the end of each read cycle instead.
    """

    def __init__(self, port_no: int, ifname: str) -> None:
        if not interface_exists(ifname):
            raise PortError(f"port {port_no}: no network interface {ifname!r}")
        super().__init__(port_no, ifname, _sysfs(ifname, "address") or "00:00:00:00:00:00")
        self.ifname = ifname
        self.ifindex = int(_sysfs(ifname, "ifindex") or 0)
        self.sock: socket.socket | None = None
        self.vnet_hdr = False
        self.ring: RxRing | None = None
        self._tx: SendBatch | None = None
        self._buf = bytearray(RECV_BUFFER)
        self._view = memoryview(self._buf)
        self._ignores_outgoing = False
        self._join = False                     # send TCP runs as GSO frames (set by open)
        #: called with this port when a frame is queued for sending and none was before
        self.on_pending = None
        #: set when the socket reported an error: its reader must be re-added
        self.rearm = False
        #: reads so far, and as `stalled` last saw them
        self._reads = self._reads_seen = 0
        self.refresh()

    def __repr__(self) -> str:
        return f"<LinuxPort {self.port_no} {self.ifname}>"

    # --- socket ------------------------------------------------------------------------

    def open(self) -> None:
        """Open the raw socket (needs CAP_NET_RAW) and bring the interface up."""
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)   # receives nothing until bound
        except PermissionError as exc:
            raise PortError(f"port {self.port_no} ({self.ifname}): raw sockets need root / CAP_NET_RAW") from exc
        ring = None
        try:
            try:
                sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
                self.vnet_hdr = True
            except OSError:
                log.warning("%s: no PACKET_VNET_HDR; turn offloads off on it (ethtool -K %s tx off tso off "
                            "gso off gro off) or TCP will not work", self.ifname, self.ifname)
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            try:
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                self._ignores_outgoing = True
            except OSError:
                pass
            for opt in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
                    break
                except OSError:
                    continue
            try:
                sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_SNDBUFFORCE", 32), SOCKET_BUFFER)
            except OSError:
                pass
            slot = slot_size(int(_sysfs(self.ifname, "mtu") or 1500))
            if USE_RING:
                try:
                    ring = RxRing(sock, RING_FRAMES, slot)
                except OSError as exc:       # e.g. no memory for the ring: read with recvmsg instead
                    log.warning("%s: no receive ring (%s); reading frames one recvmsg at a time", self.ifname, exc)
            sock.bind((self.ifname, ETH_P_ALL))
            self.ifindex = socket.if_nametoindex(self.ifname)
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                            _MREQ.pack(self.ifindex, PACKET_MR_PROMISC, 0, bytes(8)))
            sock.setblocking(False)
        except OSError as exc:
            if ring is not None:
                ring.close()
            sock.close()
            raise PortError(f"port {self.port_no} ({self.ifname}): cannot open a raw socket: {exc}") from exc
        self.sock = sock
        self.ring = ring
        self._tx = SendBatch(sock.fileno(), TX_BATCH, slot, _NO_OFFLOAD if self.vnet_hdr else b"")
        self._join = JOIN_TCP and self.vnet_hdr
        if not self.config & ofp.OFPPC.PORT_DOWN:
            try:
                set_admin_up(self.ifname, True)
            except OSError as exc:
                log.warning("%s: cannot bring it up: %s", self.ifname, exc)
        self.refresh()

    def fileno(self) -> int:
        return self.sock.fileno() if self.sock is not None else -1

    def close(self) -> None:
        if self.sock is not None:
            self.flush()
            self._tx.close()
            self._tx = None
            if self.ring is not None:
                self.ring.close()
                self.ring = None
            self.sock.close()
            self.sock = None

    # --- receiving -----------------------------------------------------------------------

    def read_frames(self, limit: int = RX_BATCH) -> list[bytes]:
        """The wire frames waiting on the socket (at most `limit` received frames)."""
        self._reads += 1
        ring = self.ring
        if ring is None:
            return self._recv_frames(limit) if self.sock is not None else []
        # The common case, a run of plain frames, is read column by column:
        # strided views of the slot headers give each field of every slot as
        # one list, then one comprehension copies the frames out and one
        # strided store hands the slots back. Anything else (see _slot_frames)
        # takes the slot-by-slot loop.
        u32, u16, w, head = ring.u32, ring.u16, ring.slot_words, ring.head
        a = head * w
        if u32[a] == TP_STATUS_KERNEL:
            self._nothing_at_head()
            return []
        end = min(limit, ring.frames - head)
        if end == 1 or u32[a + w] == TP_STATUS_KERNEL:
            return self._read_slots(1)              # a lone frame: cheaper than building the columns
        status = u32[a:a + end * w:w].tolist()
        try:
            n = status.index(TP_STATUS_KERNEL)
        except ValueError:
            n = end
        b = a + n * w
        snaps = u32[a + 2:b:w].tolist()
        mac = u16[2 * a + 6]                                # tp_mac of the first slot
        # status bits beyond USER (LOSING after drops, CSUM_VALID, ...) do not
        # matter here; COPY and VLAN_VALID do (a handful of distinct values per
        # run); nor does DATA_VALID in the virtio-net header (GRO sets it)
        if (not any(s & TP_STATUS_SLOW for s in set(status[:n]))
                and u32[a + 1:b:w].tolist() == snaps and min(snaps) >= 14
                and u16[2 * a + 6:2 * b:2 * w].tolist().count(mac) == n and not mac & 1
                and self._ignores_outgoing
                and not (self.vnet_hdr and any(v & _VNET_WORK for v in
                                               set(u16[2 * a + (mac - VNET_HDR_LEN) // 2:2 * b:2 * w].tolist())))):
            mm, size = ring.map, ring.frame_size
            start = 4 * a + mac
            frames = [mm[o:o + s] for o, s in zip(range(start, start + n * size, size), snaps)]
            for i in range(a, b, w):                        # the slots go back to the kernel, each
                u32[i] = TP_STATUS_KERNEL                   # with exactly one store (see ring.py)
            ring.head = head + n if head + n < ring.frames else 0
            return frames
        return self._read_slots(n)

    def _read_slots(self, n: int) -> list[bytes]:
        """The frames of the next `n` slots, which are ours, one slot at a time."""
        ring = self.ring
        u32, u16, mm, size = ring.u32, ring.u16, ring.map, ring.frame_size
        head, last = ring.head, ring.frames - 1
        check = 0 if self._ignores_outgoing else 1
        vnet = self.vnet_hdr
        frames: list[bytes] = []
        for _ in range(n):
            off = head * size
            i = off >> 2
            status = u32[i]
            snap = u32[i + 2]
            mac = off + u16[(off >> 1) + 6]
            # the virtio-net header's flags and gso_type are one 16-bit word
            if (status & TP_STATUS_SLOW or snap != u32[i + 1] or snap < 14 or check
                    or vnet and (mac & 1 or u16[(mac - VNET_HDR_LEN) >> 1] & _VNET_WORK)):
                frames += self._slot_frames(off, status, mac, snap)
            else:
                frames.append(mm[mac:mac + snap])
            u32[i] = TP_STATUS_KERNEL                # the slot goes back to the kernel
            head = head + 1 if head < last else 0
        ring.head = head
        return frames

    def _slot_frames(self, off: int, status: int, mac: int, snap: int) -> list[bytes]:
        """The frames of a ring slot that needs more than a copy: a frame too
        large for the slot (taken from the receive queue), an offloaded or
        VLAN-accelerated frame, an outgoing one (old kernels), a runt."""
        mm = self.ring.map
        if status & TP_STATUS_COPY:
            return self._recv_frames(1)
        if not self._ignores_outgoing and mm[off + SLL_PKTTYPE] == PACKET_OUTGOING:
            return []
        if snap != _U32.unpack_from(mm, off + 4)[0] or snap < 14:
            self.counters.rx_errors += 1          # truncated (no room to queue it whole), or a runt
            return []
        got = self._finish(mm[mac - VNET_HDR_LEN:mac] if self.vnet_hdr else None, mm[mac:mac + snap])
        if got and status & TP_STATUS_VLAN_VALID:
            tci, tpid = _U16X2.unpack_from(mm, off + 24)
            got = [insert_vlan(f, tpid if status & TP_STATUS_VLAN_TPID_VALID and tpid else 0x8100, tci)
                   for f in got]
        return got

    def _finish(self, vnet: bytes | None, frame: bytes) -> list[bytes]:
        """The wire frames of one received frame and its virtio-net header."""
        if vnet is None or vnet == _NO_OFFLOAD:
            return [frame]
        try:
            return finish_offloads(vnet, frame)
        except (ValueError, IndexError, struct.error) as exc:
            self.counters.rx_errors += 1
            log.debug("%s: dropped an offloaded frame: %s", self.ifname, exc)
            return []

    def stalled(self) -> bool:
        """Frames wait in the receive ring and none was read since the last asking."""
        ring = self.ring
        if ring is None:
            return False
        waiting = any(ring.u32[0::ring.slot_words].tolist())
        stalled = waiting and self._reads == self._reads_seen
        self._reads_seen = self._reads
        return stalled

    def _nothing_at_head(self) -> None:
        """Woken with the head slot still the kernel's: a socket error to
        collect, a slot still being filled, or a reader out of step with the
        kernel (see RxRing.realign)."""
        self.take_error()
        if self.ring.realign(time.monotonic()):
            log.warning("%s: receive ring out of step with the kernel; reading on from its oldest frame",
                        self.ifname)

    def take_error(self) -> bool:
        """Collect the socket's pending error; True, and :attr:`rearm` set, if
        there was one.

        When the interface goes down the kernel sets ENETDOWN on the socket
        and leaves it there until a system call collects it: SO_ERROR, a
        ``recvmsg``, or the next send (which then fails with it, though the
        link may be back up by then). The ring is read without system calls,
        so nothing here collects it but this. While it is pending epoll
        reports EPOLLERR for the socket, and uvloop (libuv) stops polling a
        socket the first time it sees that, after one more call of its
        reader at most: the reader must be re-added, and only once the error
        is collected (re-added before, it is stopped again at once). Called
        when woken with nothing to read, and by the runtime on every link
        event and poll, which then re-arms the reader (see ``Switch._rearm``)."""
        if self.sock is None:
            return False
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if not err:
            return False
        if err not in (errno.ENETDOWN, errno.ENXIO):
            log.debug("%s: socket error: %s", self.ifname, os.strerror(err))
        self.rearm = True
        return True

    def _recv_frames(self, limit: int) -> list[bytes]:
        """Frames read from the socket's receive queue with recvmsg (at most `limit` reads)."""
        sock = self.sock
        frames: list[bytes] = []
        aux_space = socket.CMSG_SPACE(_AUXDATA.size)
        for _ in range(limit):
            try:
                n, ancdata, flags, addr = sock.recvmsg_into([self._view], aux_space)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in (errno.ENETDOWN, errno.ENXIO):
                    # the interface went down; uvloop stops polling a socket
                    # that reported an error, so ask the runtime to re-arm it
                    self.rearm = True
                    break
                self.counters.rx_errors += 1
                log.debug("%s: receive failed: %s", self.ifname, exc)
                break
            if not self._ignores_outgoing and addr[2] == PACKET_OUTGOING:
                continue
            skip = VNET_HDR_LEN if self.vnet_hdr else 0
            if flags & socket.MSG_TRUNC or n < skip + 14:
                self.counters.rx_errors += 1
                continue
            got = self._finish(bytes(self._view[:skip]) if skip else None, bytes(self._view[skip:n]))
            for level, kind, data in ancdata:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= _AUXDATA.size:
                    status, _, _, _, _, tci, tpid = _AUXDATA.unpack_from(data)
                    if status & TP_STATUS_VLAN_VALID:
                        tpid = tpid if status & TP_STATUS_VLAN_TPID_VALID and tpid else 0x8100
                        got = [insert_vlan(f, tpid, tci) for f in got]
            frames += got
        return frames

    # --- sending ---------------------------------------------------------------------------

    def send(self, frame: bytes) -> None:
        """Queue a frame; it leaves at the next flush (at once without a runtime)."""
        tx = self._tx
        if tx is None or len(frame) > tx.slot:     # closed, or larger than the MTU was at open()
            self.flush()
            self._send_one(frame)
            return
        queued = tx.add(frame)
        if queued == 1:
            if self.on_pending is None:
                self.flush()
            else:
                self.on_pending(self)
        elif queued == tx.size:
            self.flush()

    def send_many(self, frames: list) -> None:
        """Queue frames in order (a batch from the fast path); consecutive
        segments of a TCP flow among them leave as one GSO frame
        (:mod:`.coalesce`) when the socket has virtio-net headers."""
        if self._join and len(frames) >= MIN_RUN and self._tx is not None and max(map(len, frames)) >= JOIN_MIN:
            items = join(frames)
            if items is not None:
                plain: list = []
                for item in items:
                    if type(item) is tuple:
                        if plain:
                            self._queue_many(plain)
                            plain = []
                        self.flush()                     # what is queued for the port goes first
                        self._send_joined(*item)
                    else:
                        plain.append(item)
                if plain:
                    self._queue_many(plain)
                return
        self._queue_many(frames)

    def _send_joined(self, vnet: bytes, frame: bytes, segments: list) -> None:
        """Send a GSO frame of joined segments, counted as the segments."""
        try:
            self.sock.sendmsg([vnet, frame])
        except OSError as exc:
            self.rearm = True                    # the error may be one the reader's poll was stopped on
            if exc.errno in DROP_ERRNOS:
                self.counters.tx_dropped += len(segments)
                return
            # the kernel will not take GSO frames here: the segments as they came, and no more joins
            self._join = False
            log.info("%s: GSO frames refused (%s); sending segments one by one", self.ifname, exc)
            self._queue_many(segments)
            return
        c = self.counters
        c.tx_packets += len(segments)
        c.tx_bytes += sum(map(len, segments))

    def _queue_many(self, frames: list) -> None:
        tx = self._tx
        if tx is None or max(map(len, frames)) > tx.slot:
            for frame in frames:
                self.send(frame)
            return
        was_idle = not tx.count
        start = 0
        while True:
            start = tx.add_many(frames, start)
            if start == len(frames):
                break
            self.flush()                                 # the batch is full
            was_idle = True
        if was_idle and tx.count:
            if self.on_pending is None:
                self.flush()
            else:
                self.on_pending(self)

    def flush(self) -> None:
        """Send the queued frames (one sendmmsg) and count them."""
        tx = self._tx
        if tx is None or not tx.count:
            return
        sent, nbytes, dropped, errors, err = tx.flush()
        c = self.counters
        c.tx_packets += sent
        c.tx_bytes += nbytes
        if dropped or errors:
            self.rearm = True                    # as in _send_one
            c.tx_dropped += dropped
            c.tx_errors += errors
            log.debug("%s: %d frames not sent: %s", self.ifname, dropped + errors, os.strerror(err))

    def _send_one(self, frame: bytes) -> None:
        if self.sock is None:
            self.count_tx_dropped()
            return
        try:
            if self.vnet_hdr:
                self.sock.sendmsg([_NO_OFFLOAD, frame])
            else:
                self.sock.send(frame)
        except OSError as exc:
            # a send that fails may collect the socket's pending error (ENETDOWN ...), on which
            # uvloop has stopped polling the socket: take_error will not see it; re-add the reader
            self.rearm = True
            if exc.errno in DROP_ERRNOS:
                self.count_tx_dropped()
            else:
                self.counters.tx_errors += 1
                log.debug("%s: send of %d bytes failed: %s", self.ifname, len(frame), exc)
        else:
            self.count_tx(len(frame))

    # --- link state ------------------------------------------------------------------------

    @property
    def replaced(self) -> bool:
        """Was the interface deleted and made again under the same name? Its
        socket is then bound to the old one: :meth:`reopen` it."""
        index = _sysfs(self.ifname, "ifindex")
        return self.sock is not None and index is not None and int(index) != self.ifindex

    def reopen(self) -> None:
        """Close the socket and open a new one on the interface of that name now."""
        self.close()
        self.open()

    def refresh(self) -> bool:
        """Re-read link state, address and speed; True when something changed."""
        before = (self.state, self.hw_addr, self.curr, self.curr_speed, self.max_speed)
        flags = _sysfs(self.ifname, "flags")
        admin_up = flags is not None and int(flags, 16) & IFF_UP
        carrier = _sysfs(self.ifname, "carrier") == "1" if admin_up else False
        link_up = bool(admin_up and carrier)
        # OFPPS_LIVE is computed by PortBase.desc(); only LINK_DOWN is observed here
        # plain ints: the datapath tests state and config per packet, and IntFlag arithmetic is slow
        self.state = int(self.state) & ~PS_LINK_DOWN | (0 if link_up else PS_LINK_DOWN)
        self.hw_addr = _sysfs(self.ifname, "address") or self.hw_addr
        speed = _sysfs(self.ifname, "speed") if link_up else None
        mbps = int(speed) if speed and speed.lstrip("-").isdigit() and int(speed) > 0 else 0
        duplex = _sysfs(self.ifname, "duplex") if mbps else None
        feature = (_HALF_DUPLEX if duplex == "half" else _SPEED_FEATURES).get(mbps, ofp.OFPPF.OTHER if mbps else 0)
        self.curr = int(feature) | (int(ofp.OFPPF.COPPER) if mbps else 0)
        self.supported = self.curr
        self.curr_speed = mbps * 1000      # kbps
        self.max_speed = max(self.max_speed, self.curr_speed)
        return before != (self.state, self.hw_addr, self.curr, self.curr_speed, self.max_speed)

    def set_config(self, config: int) -> None:
        """PORT_MOD changed the OFPPC bits: PORT_DOWN takes the interface down, clearing it up."""
        changed = (self.config ^ int(config)) & ofp.OFPPC.PORT_DOWN
        super().set_config(config)
        if changed and self.sock is not None:
            down = bool(config & ofp.OFPPC.PORT_DOWN)
            try:
                set_admin_up(self.ifname, not down)
            except OSError as exc:
                log.warning("%s: cannot set it %s: %s", self.ifname, "down" if down else "up", exc)


__all__ = ["LinuxPort", "PortError", "complete_checksum", "finish_offloads", "segment", "insert_vlan"]
