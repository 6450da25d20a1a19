"""LinuxPort reading a PACKET_MMAP receive ring (no root: the ring is anonymous
memory filled the way the kernel fills it): runs of plain frames read column
by column, the slot-by-slot path for everything else, order kept across the
end of the ring, every slot handed back."""

from __future__ import annotations

import socket
import struct

import pytest

from kumoflow.switch.linuxport import VNET_HDR, LinuxPort, complete_checksum
from kumoflow.switch.ring import TP_STATUS_USER, TP_STATUS_VLAN_TPID_VALID, TP_STATUS_VLAN_VALID, RxRing

TP_STATUS_LOSING, TP_STATUS_CSUM_VALID = 1 << 2, 1 << 7      # <linux/if_packet.h>
MAC = 76          # where the kernel puts the frame in a 2048-byte slot with a virtio-net header


def frame(i: int, size: int = 60) -> bytes:
    return bytes.fromhex("020000000002020000000001") + b"\x88\xb5" + bytes([i % 256]) * (size - 14)


def udp_partial() -> tuple[bytes, bytes]:
    """A UDP/IPv4 frame whose checksum field holds only the pseudo-header sum
    (CHECKSUM_PARTIAL), and its virtio-net header asking for completion."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + 4, 0, 0, 64, 17, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    udp = struct.pack("!HHHH", 1000, 2000, 12, 0x1234) + b"data"
    f = bytes.fromhex("020000000002020000000001") + b"\x08\x00" + ip + udp
    return f, VNET_HDR.pack(1, 0, 0, 0, 34, 6)


class Ring:
    """A port reading an anonymous ring, and a writer playing the kernel."""

    def __init__(self, frames: int = 64) -> None:
        self.port = LinuxPort(1, "lo")
        self.port.ring = self.ring = RxRing(None, frames, 2048)
        self.port.vnet_hdr = True
        self.port._ignores_outgoing = True
        self.tail = 0
        self.clock = 0                  # the kernel's timestamp of the next frame put

    def put(self, data: bytes, *, status: int = TP_STATUS_USER, vnet: bytes = bytes(10), length: int | None = None,
            vlan: tuple[int, int] = (0, 0)) -> None:
        off = self.tail * 2048
        m = self.ring.map
        assert struct.unpack_from("=I", m, off)[0] == 0, "the ring is full"
        m[off + MAC - 10:off + MAC] = vnet
        m[off + MAC:off + MAC + len(data)] = data
        struct.pack_into("=IIHH", m, off + 4, len(data) if length is None else length, len(data), MAC, MAC + 14)
        struct.pack_into("=HH", m, off + 24, *vlan)
        self.clock += 1
        struct.pack_into("=II", m, off + 16, 1_000_000 + self.clock // 1000, self.clock % 1000 * 1000)
        struct.pack_into("=I", m, off, status)
        self.tail = (self.tail + 1) % self.ring.frames

    def read_all(self) -> list[bytes]:
        out = []
        for _ in range(1000):
            got = self.port.read_frames()
            if not got and not self.pending():
                return out
            out += got
        pytest.fail("the ring was never emptied")

    def pending(self) -> bool:
        return struct.unpack_from("=I", self.ring.map, self.ring.head * 2048)[0] != 0


def test_plain_frames_in_order_across_the_end_of_the_ring():
    r = Ring(64)
    sent = [frame(i, 60 + i % 30) for i in range(40)]
    for f in sent:
        r.put(f)
    assert r.read_all() == sent
    more = [frame(100 + i, 1500) for i in range(60)]          # wraps around slot 63 -> 0
    for f in more:
        r.put(f)
    assert r.read_all() == more
    assert r.ring.head == 100 % 64
    assert not any(r.ring.u32[0::512].tolist())               # every slot handed back


def test_other_slots_take_the_slow_path_in_order():
    r = Ring(64)
    partial, vnet = udp_partial()
    tagged = frame(7)
    r.put(frame(1))
    r.put(tagged, status=TP_STATUS_USER | TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID, vlan=(0x2005, 0x88A8))
    r.put(partial, vnet=vnet)
    r.put(frame(2), length=3000)                                # truncated: counted, dropped
    r.put(frame(3)[:10])                                        # a runt: counted, dropped
    r.put(frame(4))
    got = r.read_all()
    assert got == [frame(1), tagged[:12] + b"\x88\xa8\x20\x05" + tagged[12:],
                   complete_checksum(partial, 34, 6), frame(4)]
    assert r.port.counters.rx_errors == 2
    assert not any(r.ring.u32[0::512].tolist())


def test_limit_and_an_empty_ring():
    r = Ring(64)
    for i in range(10):
        r.put(frame(i))
    assert r.port.read_frames(limit=4) == [frame(i) for i in range(4)]
    assert r.port.read_frames() == [frame(i) for i in range(4, 10)]
    assert r.port.read_frames() == []


def test_status_bits_that_need_nothing_keep_the_column_path(monkeypatch):
    """LOSING (the socket dropped frames earlier) and CSUM_VALID ride along
    with ordinary frames under load: those runs are still read column by column."""
    r = Ring(64)
    monkeypatch.setattr(r.port, "_read_slots", lambda n: pytest.fail("slot-by-slot path taken"))
    sent = [frame(i) for i in range(20)]
    for i, f in enumerate(sent):
        r.put(f, status=TP_STATUS_USER | (TP_STATUS_LOSING if i % 3 else TP_STATUS_CSUM_VALID))
    assert r.read_all() == sent


def test_a_virtio_net_header_that_needs_nothing_keeps_the_column_path(monkeypatch):
    """Frames taken in through GRO come with DATA_VALID (the checksum was
    checked) in the virtio-net header's flags: nothing to do for them, so
    the run is still read column by column; one asking for a checksum is not."""
    r = Ring(64)
    data_valid = VNET_HDR.pack(2, 0, 0, 0, 0, 0)            # VIRTIO_NET_HDR_F_DATA_VALID
    sent = [frame(i) for i in range(20)]
    with monkeypatch.context() as m:
        m.setattr(r.port, "_read_slots", lambda n: pytest.fail("slot-by-slot path taken"))
        for f in sent:
            r.put(f, vnet=data_valid)
        assert r.read_all() == sent
    partial, vnet = udp_partial()
    slots = []
    real = r.port._read_slots
    monkeypatch.setattr(r.port, "_read_slots", lambda n: slots.append(n) or real(n))
    r.put(frame(1), vnet=data_valid)
    r.put(partial, vnet=vnet)
    got = r.read_all()
    assert slots and got[0] == frame(1) and got[1] == complete_checksum(partial, 34, 6)


def test_lone_frames_one_read_each_across_the_end_of_the_ring():
    """One frame per readiness event (ping, a lone ACK) takes the per-slot
    read; order, tags and the slots handed back as for a run."""
    r = Ring(32)
    tagged = frame(7)
    for i in range(70):                                    # round the 32-slot ring twice
        if i % 10 == 9:
            r.put(tagged, status=TP_STATUS_USER | TP_STATUS_VLAN_VALID, vlan=(0x0005, 0))
            assert r.port.read_frames() == [tagged[:12] + b"\x81\x00\x00\x05" + tagged[12:]]
        else:
            r.put(frame(i))
            assert r.port.read_frames() == [frame(i)]
        assert r.port.read_frames() == []
    assert not any(r.ring.u32[0::512].tolist())


def test_a_ring_out_of_step_with_the_kernel_resumes_at_its_oldest_frame(monkeypatch):
    """The head slot stays empty with frames after it (the reader out of step
    with the kernel): after a grace, reading goes on from the oldest frame, in
    the order the kernel wrote them, and nothing is lost."""
    r = Ring(32)
    r.tail = 5
    for i in (5, 6, 7):
        r.put(frame(i))                          # the oldest frames, in slots 5-7
    r.tail = 1
    for i in (1, 2, 3):
        r.put(frame(i + 100))                    # newer ones in slots 1-3; slot 0, the head, stays empty
    assert r.port.read_frames() == []            # at first: could be a slot still being filled
    assert r.ring.head == 0
    monkeypatch.setattr(r.ring, "STUCK_AFTER", 0.0)
    assert r.port.read_frames() == []            # now out of step: the head moves to slot 5
    assert r.ring.head == 5
    assert r.port.read_frames() == [frame(5), frame(6), frame(7)]
    assert r.port.read_frames() == []            # slot 8 is empty too...
    assert r.port.read_frames() == [] and r.ring.head == 1     # ...on to the oldest frame left
    assert r.port.read_frames() == [frame(101), frame(102), frame(103)]
    assert r.port.read_frames() == [] and r.ring.head == 4     # an empty ring stays where it is
    assert r.port.counters.rx_dropped == 0


def test_a_ring_with_frames_and_no_read_since_the_last_asking_is_stalled():
    ring = Ring()
    assert not ring.port.stalled()              # empty
    ring.put(frame(1))
    assert ring.port.stalled()                  # waiting, and no read since the last asking
    assert ring.port.stalled()                  # still
    assert ring.read_all() == [frame(1)]
    ring.put(frame(2))
    assert not ring.port.stalled()              # a read came since the last asking: the reader is woken
    assert ring.port.stalled()                  # none since


def test_a_failed_send_asks_for_the_reader_to_be_re_added():
    """A send that fails may have collected the error uvloop stopped polling the socket on."""
    port = LinuxPort(1, "lo")
    port.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)      # not connected: every send fails
    try:
        assert not port.rearm
        port._send_one(frame(1))
        assert port.rearm and port.counters.tx_errors + port.counters.tx_dropped == 1
    finally:
        port.sock.close()
        port.sock = None
