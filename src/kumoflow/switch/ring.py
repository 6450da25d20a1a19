"""A PACKET_MMAP receive ring (TPACKET_V2) on an AF_PACKET socket.

The kernel copies each received frame into the next free slot of a ring
shared with us through ``mmap`` and flags the slot as ours; we read slots
in order, copy the frame out and hand the slot back by writing its status.
Reading a frame costs no system call at all, and the kernel does the copy
when the frame arrives (in the softirq that delivers it) instead of
queueing an skb for a later ``recvmsg``.

Slot layout (``struct tpacket2_hdr``, then ``struct sockaddr_ll``, then the
frame at ``tp_mac``; with PACKET_VNET_HDR the 10-byte virtio-net header sits
right before ``tp_mac``)::

    0  tp_status   4 tp_len   8 tp_snaplen   12 tp_mac (u16)   14 tp_net (u16)
    16 tp_sec     20 tp_nsec  24 tp_vlan_tci (u16)  26 tp_vlan_tpid (u16)
    32 sockaddr_ll (sll_pkttype at 42)

Why TPACKET_V2 and not V3: V3 hands over whole blocks, each when it is full
or when its retire timer (milliseconds) fires, which is fine for capture
and bad for a switch's latency; V3 also refuses PACKET_VNET_HDR. V2 hands
over every frame as soon as it is written.

Frames larger than a slot (GSO super-frames with offloads on): with
``PACKET_COPY_THRESH`` set, the kernel also queues the whole frame on the
socket's ordinary receive queue and flags the (truncated) slot
``TP_STATUS_COPY``; the reader then takes the frame with ``recvmsg`` (see
:meth:`RxRing.take`). A frame it could not queue either (receive buffer
full) arrives truncated (``tp_len > tp_snaplen``) and is the caller's to drop.

A slot goes back to the kernel with exactly one store to its status word,
``u32[i] = TP_STATUS_KERNEL`` (a memoryview item store: one 4-byte move).
A write that stores to the word twice, even the same zero, loses frames:
if the kernel takes the slot between the two stores (the port's input runs
in softirq or a NAPI thread that may preempt the reader at any
instruction), it fills the slot, marks it ours and moves on, and the
second store marks it the kernel's again: that frame is lost and the slot
stays empty behind the kernel's head, a hole the reader waits on while the
ring fills up. Copies of a runtime size go through libc's memcpy, which
moves 4 bytes as two overlapping 4-byte stores, so memoryview slice stores
(strided or not) and ``ctypes.memmove`` do this; so does
``struct.pack_into``, which zeroes the field before packing it (and two
item stores in a row, of course). Under
overload with the input in a SCHED_FIFO NAPI thread on the reader's CPU
(how bench_switch.py runs) that happened within seconds
(tests/integration/test_switch_linuxport.py, the flooded ring).
:meth:`RxRing.realign` recovers should a ring get out of step anyway.

Only the receive side is a ring. A PACKET_TX_RING would hand the kernel
our slots *by reference* (the skb points into the ring), and on a veth a
slot stays taken until whoever receives the frame frees it, for example a
TCP receive queue in the peer namespace; ``sendmmsg`` (:mod:`.mmsg`) copies
and measured just as fast here.
"""

from __future__ import annotations

import mmap
import struct

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_COPY_THRESH = 7
PACKET_VERSION = 10
TPACKET_V2 = 1

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1 << 0
TP_STATUS_COPY = 1 << 1
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
#: status bits that need a closer look than the plain copy-out
TP_STATUS_SLOW = TP_STATUS_COPY | TP_STATUS_VLAN_VALID

_REQ = struct.Struct("=IIII")          # struct tpacket_req: block_size, block_nr, frame_size, frame_nr
SLL_PKTTYPE = 42                       # offset of sll_pkttype in a slot


def slot_size(mtu: int) -> int:
    """The ring slot for frames up to `mtu` bytes of payload (+ headers, two
    VLAN tags and the slot's own header): a power of two, at least 2048."""
    size = 2048
    while size < mtu + 160:
        size *= 2
    return size


class RxRing:
    """The receive ring of socket `sock` (set up before it is bound):
    `frames` slots of `frame_size` bytes. `sock` None: the same over
    anonymous memory, for tests."""

    def __init__(self, sock, frames: int = 1024, frame_size: int = 2048) -> None:
        block = max(frame_size, 1 << 16)
        per_block = block // frame_size
        frames = max(per_block, frames // per_block * per_block)
        if sock is not None:
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING,
                            _REQ.pack(block, frames // per_block, frame_size, frames))
            sock.setsockopt(SOL_PACKET, PACKET_COPY_THRESH, 1)
            self.map = mmap.mmap(sock.fileno(), frames * frame_size, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
        else:                           # anonymous memory: a ring for tests, filled by hand
            self.map = mmap.mmap(-1, frames * frame_size)
        self.frames = frames
        self.frame_size = frame_size
        #: the ring as 32-bit and 16-bit words; a slot is `slot_words` 32-bit words
        self.u32 = memoryview(self.map).cast("I")
        self.u16 = memoryview(self.map).cast("H")
        self.slot_words = frame_size // 4
        self.head = 0                   # the next slot to read
        self._stuck: tuple[int, float] | None = None    # (head, since when) while later slots wait

    #: how long the head slot may stay the kernel's while later slots are ours
    #: before the ring is taken to be out of step with the kernel (a slot is
    #: filled in microseconds; a producer descheduled by the host takes ms)
    STUCK_AFTER = 0.1

    def realign(self, now: float) -> bool:
        """Called when the socket said frames were waiting but the head slot is
        the kernel's. Normally a slot still being filled. If later slots have
        been ours for longer than STUCK_AFTER, the reader is out of step with
        the kernel (the slot at the head will never be filled): move the head to
        the oldest frame in the ring, by the kernel's timestamps, so that frames
        are read in order again, and return True."""
        w = self.slot_words
        status = self.u32[0::w].tolist()
        if not any(status):
            self._stuck = None
            return False
        if self._stuck is None or self._stuck[0] != self.head:
            self._stuck = (self.head, now)
            return False
        if now - self._stuck[1] < self.STUCK_AFTER:
            return False
        sec, nsec, head, n = self.u32[4::w].tolist(), self.u32[5::w].tolist(), self.head, self.frames
        self.head = min((i for i, s in enumerate(status) if s), key=lambda i: (sec[i], nsec[i], (i - head) % n))
        self._stuck = None
        return True

    def close(self) -> None:
        self.u32.release()
        self.u16.release()
        self.map.close()


__all__ = ["RxRing", "slot_size", "TP_STATUS_USER", "TP_STATUS_COPY", "TP_STATUS_VLAN_VALID",
           "TP_STATUS_VLAN_TPID_VALID", "TP_STATUS_SLOW", "SLL_PKTTYPE"]
