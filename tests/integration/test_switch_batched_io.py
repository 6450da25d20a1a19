"""Batched port I/O on real veths (root): the PACKET_MMAP receive ring
(order, wrap-around, frames larger than a slot, VLAN tags put back), the
sendmmsg batch (flush on demand, refusals counted, full batches, a vanished
interface), and the runtime Switch forwarding through both (UDP without loss
or duplicates, TCP byte-exact with offloads on and off, packet-outs, flooding).

Oracles are exact frames, never interface counters: every test frame carries
a sequence number and is compared byte for byte with what was sent. Frames
are sent and received by sockets that this process opens *inside* the test
namespaces (``in_netns``: setns(2) for the time of a ``socket()`` call; a
socket stays in the namespace it was made in), so a receiver exists before
anything is sent and no helper process has to be timed. IPv6 is disabled on
every test link, so the kernel sends nothing of its own on them (no router
solicitations, no neighbour discovery) and a small ring is never filled by
frames the test did not send.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import hashlib
import logging
import os
import random
import select
import shutil
import socket
import struct
import subprocess
import time

import pytest

from kumoflow import ofp
from kumoflow.switch import linuxport
from kumoflow.switch.linuxport import TX_BATCH, LinuxPort

ETH_TEST = 0x88B5                   # IEEE local experimental ethertype: nothing else uses it
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33
CLONE_NEWNET = 0x40000000
BROADCAST = b"\xff" * 6

_libc = ctypes.CDLL(None, use_errno=True)


# --- namespaces, hosts, sockets ----------------------------------------------------------------


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=30)


def _setns(f) -> None:
    if _libc.setns(f.fileno(), CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(ns: str):
    """Run the block (this thread only) in network namespace `ns`; sockets
    made in it stay there."""
    with open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{ns}") as there:
        _setns(there)
        try:
            yield
        finally:
            _setns(home)


def mac_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


class Host:
    """Namespace `ns` with eth0 (`ip`/24) wired to the root-namespace veth end `port`."""

    def __init__(self, ns: str, port: str, ip: str) -> None:
        self.ns, self.port, self.ip = ns, port, ip
        self.mac = ""

    def raw_socket(self, ethertype: int = 0) -> socket.socket:
        """An AF_PACKET socket bound to this host's eth0 (`ethertype` 0: send only)."""
        with in_netns(self.ns):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
            s.bind(("eth0", ethertype))
        except OSError:
            s.close()
            raise
        return s

    def inet_socket(self, kind: int) -> socket.socket:
        """An IPv4 socket (socket.SOCK_DGRAM / SOCK_STREAM) in this host's namespace."""
        with in_netns(self.ns):
            return socket.socket(socket.AF_INET, kind)


class Tap:
    """Records every frame of ethertype ETH_TEST that arrives on a host's eth0."""

    def __init__(self, host: Host) -> None:
        self.sock = host.raw_socket(ETH_TEST)
        self.sock.setblocking(False)

    def collect_until(self, *marks: bytes, timeout: float = 10.0) -> list[bytes]:
        """The frames received (in order) before every one of `marks` came:
        end marks that the test sends behind all else, so that a duplicate or
        an extra frame is among those returned, never cut off by a timeout."""
        frames: list[bytes] = []
        waiting = set(marks)
        end = time.monotonic() + timeout
        while waiting:
            assert time.monotonic() < end, f"end marks missing after {timeout} s; got {len(frames)} frames"
            select.select([self.sock], [], [], 0.05)
            while True:
                try:
                    data, addr = self.sock.recvfrom(65536)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue
                if data in waiting:
                    waiting.remove(data)
                else:
                    frames.append(data)
        return frames

    def close(self) -> None:
        self.sock.close()


def offloads(ns: str | None, ifname: str, on: bool) -> None:
    if shutil.which("ethtool") is None:
        pytest.fail("ethtool not found (it is in scripts/system-packages.txt: run `make setup`)")
    state = "on" if on else "off"
    cmd = ("ethtool", "-K", ifname, "tx", state, "tso", state, "gso", state, "gro", state)
    sh(*(("ip", "netns", "exec", ns, *cmd) if ns else cmd))


def offload_state(host: Host) -> str:
    return sh("ip", "netns", "exec", host.ns, "ethtool", "-k", "eth0").stdout


@pytest.fixture
def hosts(unique_name):
    """A function ``hosts(n, offloads_on=True) -> [Host]``: namespaces with eth0
    10.9.0.1, .2, ... wired to root-namespace veth ends, IPv6 disabled on both
    ends; with offloads_on False, checksum and segmentation offloads (and GRO)
    are turned off on both ends (the kernel's defaults otherwise: on).
    Everything is deleted at teardown, also after a failure."""
    made: list[Host] = []

    def make(n: int, offloads_on: bool = True) -> list[Host]:
        out = []
        for _ in range(n):
            h = Host(unique_name("ns"), unique_name("p"), f"10.9.0.{len(made) + 1}")
            made.append(h)
            out.append(h)
            sh("ip", "netns", "add", h.ns)
            sh("ip", "netns", "exec", h.ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
               "net.ipv6.conf.default.disable_ipv6=1")
            sh("ip", "link", "add", h.port, "type", "veth", "peer", "name", h.port + "x", "netns", h.ns)
            sh("sysctl", "-qw", f"net.ipv6.conf.{h.port}.disable_ipv6=1")
            sh("ip", "-n", h.ns, "link", "set", h.port + "x", "name", "eth0")
            sh("ip", "-n", h.ns, "addr", "add", h.ip + "/24", "dev", "eth0")
            sh("ip", "-n", h.ns, "link", "set", "lo", "up")
            if not offloads_on:
                offloads(h.ns, "eth0", False)
                offloads(None, h.port, False)
            sh("ip", "-n", h.ns, "link", "set", "eth0", "up")
            sh("ip", "link", "set", h.port, "up")
            h.mac = sh("ip", "netns", "exec", h.ns, "cat", "/sys/class/net/eth0/address").stdout.strip()
        return out

    try:
        yield make
    finally:
        for h in made:
            sh("ip", "link", "del", h.port, check=False)
            sh("ip", "netns", "del", h.ns, check=False)


def static_neighbours(hs: list[Host]) -> None:
    """Permanent ARP entries between all hosts: IP traffic with no ARP at all."""
    for h in hs:
        for other in hs:
            if other is not h:
                sh("ip", "-n", h.ns, "neigh", "replace", other.ip, "lladdr", other.mac, "dev", "eth0",
                   "nud", "permanent")


# --- test frames --------------------------------------------------------------------------------


def tframe(seq: int, size: int = 60, *, src: bytes = b"\x02\0\0\0\0\x01", dst: bytes = b"\x02\0\0\0\0\x02",
           tags: bytes = b"") -> bytes:
    """A frame of `size` bytes (tags included) with ethertype ETH_TEST whose
    payload is the sequence number and a pattern that depends on it."""
    head = dst + src + tags + struct.pack("!HI", ETH_TEST, seq)
    pattern = struct.pack("!I", seq * 2654435761 & 0xFFFFFFFF) + b"kumoflow"
    fill = size - len(head)
    return head + (pattern * (fill // len(pattern) + 1))[:fill]


END = 0xFFFFFF00          # sequence numbers of end marks: END, END + 1, ...


def send_mark(ifname: str, seq: int = END) -> bytes:
    """Send an end mark out of root-namespace interface `ifname` (behind all
    that was sent on it before); returns the frame."""
    mark = tframe(seq)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as s:
        s.bind((ifname, 0))
        s.send(mark)
    return mark


def seq_of(frame: bytes) -> int:
    o = 12
    while frame[o:o + 2] in (b"\x81\x00", b"\x88\xa8", b"\x91\x00"):
        o += 4
    assert frame[o:o + 2] == ETH_TEST.to_bytes(2, "big")
    return struct.unpack_from("!I", frame, o + 2)[0]


def dot1q(vid: int, prio: int = 0, tpid: int = 0x8100) -> bytes:
    return struct.pack("!HH", tpid, prio << 13 | vid)


def read_port(port: LinuxPort, count: int, rng: random.Random | None = None, timeout: float = 5.0) -> list[bytes]:
    """Frames read from `port` until `count` came (or `timeout`), in batches
    of random limits when `rng` is given."""
    got: list[bytes] = []
    end = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < end:
        select.select([port.fileno()], [], [], 0.05)
        got += port.read_frames(rng.randint(1, 64)) if rng else port.read_frames()
    return got


def read_to_mark(port: LinuxPort, tx: socket.socket, timeout: float = 10.0) -> list[bytes]:
    """Send an end mark from `tx` behind everything sent so far and read
    `port` until it comes: the frames before it (a duplicate or a stray would
    be among them, not cut off by a timeout)."""
    mark = tframe(END)
    tx.send(mark)
    got: list[bytes] = []
    end = time.monotonic() + timeout
    while mark not in got:
        assert time.monotonic() < end, f"the end mark did not come within {timeout} s"
        select.select([port.fileno()], [], [], 0.05)
        got += port.read_frames()
    assert got[-1] == mark
    return got[:-1]


def ring_idle(port: LinuxPort) -> bool:
    """Every slot of the port's ring is the kernel's again (TP_STATUS_KERNEL)."""
    return not any(port.ring.u32[0::port.ring.slot_words].tolist())


# --- the receive ring ------------------------------------------------------------------------------


@pytest.mark.root
def test_small_ring_wraps_many_times_and_keeps_every_frame_in_order(hosts, monkeypatch):
    """A 32-slot ring read between bursts of up to 24 frames (plain ones of
    60..1514 bytes, unpadded runts of 24..59, and VLAN-tagged ones, which
    take the slot-by-slot path), in reads of random sizes, wraps ~30 times;
    every frame comes out once, in order, byte-identical, and every slot is
    handed back."""
    monkeypatch.setattr(linuxport, "RING_FRAMES", 32)
    (a,) = hosts(1)
    port = LinuxPort(1, a.port)
    port.open()
    tx = a.raw_socket()
    try:
        assert port.ring is not None and port.ring.frames == 32 and port.ring.frame_size == 2048
        rng = random.Random(7)
        sent: list[bytes] = []
        got: list[bytes] = []
        while len(sent) < 1000:
            burst = []
            for _ in range(rng.randint(1, 24)):
                seq = len(sent) + len(burst)
                size = 60 + seq * 389 % 1455 if seq % 11 else 24 + seq % 36     # 60..1514, some runts of 24..59
                tags = dot1q(seq % 4095 + 1, seq % 8) if seq % 5 == 0 else b""
                burst.append(tframe(seq, size, tags=tags))
            for f in burst:
                tx.send(f)
            sent += burst
            got += read_port(port, len(sent) - len(got), rng)
            assert len(got) == len(sent) and got[-len(burst):] == burst, f"burst ending at frame {len(sent)}"
        got += read_to_mark(port, tx)                            # nothing more may come
        assert [seq_of(f) for f in got] == list(range(len(sent)))
        assert got == sent
        assert port.counters.rx_errors == 0
        assert port.ring.head == (len(sent) + 1) % 32 and ring_idle(port)   # the mark had a slot too
    finally:
        tx.close()
        port.close()


@pytest.mark.root
def test_frames_larger_than_a_slot_come_whole_through_the_copy_path(hosts, monkeypatch):
    """The port opens at MTU 1500 (2048-byte slots, a 32-slot ring); the MTU
    is then raised to 9000 on both veth ends. Frames too large for a slot
    (TP_STATUS_COPY) are read from the receive queue, whole and in order
    among the small ones (a VLAN tag on one put back); a frame that just fits
    stays in its slot; every slot is handed back (the ring wraps several times)."""
    monkeypatch.setattr(linuxport, "RING_FRAMES", 32)
    (a,) = hosts(1)
    port = LinuxPort(1, a.port)
    port.open()
    tx = a.raw_socket()
    try:
        assert port.ring is not None and port.ring.frame_size == 2048 and port.ring.frames == 32
        sh("ip", "link", "set", a.port, "mtu", "9000")
        sh("ip", "-n", a.ns, "link", "set", "eth0", "mtu", "9000")
        copies = []
        real = port._recv_frames
        port._recv_frames = lambda limit: copies.append(limit) or real(limit)
        frames = [tframe(0, 60), tframe(1, 5000), tframe(2, 60), tframe(3, 8000, tags=dot1q(42, 5)),
                  tframe(4, 9014), tframe(5, 1514)]
        for f in frames:
            tx.send(f)
        got = read_port(port, len(frames))
        room = 2048 - port.ring.u16[6]            # what fits in a slot after the kernel's header (tp_mac)
        rest = [tframe(6, room), tframe(7, room + 1), tframe(8, room - 1), tframe(9, room + 1, tags=dot1q(3)),
                tframe(10, room + 4, tags=dot1q(4))]
        rest += [tframe(11 + i, 1900 + 7 * i if i % 2 else 64 + i) for i in range(120)]
        for i in range(0, len(rest), 20):
            for f in rest[i:i + 20]:
                tx.send(f)
            want = len(frames) + min(len(rest), i + 20)
            got += read_port(port, want - len(got))
            assert len(got) == want, f"stalled after {len(got)} frames"
        frames += rest
        got += read_to_mark(port, tx)
        assert [len(f) for f in got] == [len(f) for f in frames]
        assert got == frames
        untagged = [len(f) - (4 if f[12:14] == b"\x81\x00" else 0) for f in frames]
        assert len(copies) == sum(1 for n in untagged if n > room) >= 50
        assert port.counters.rx_errors == 0
        assert ring_idle(port)
    finally:
        tx.close()
        port.close()


@pytest.mark.root
@pytest.mark.parametrize("use_ring", [True, False], ids=["ring", "recvmsg"])
def test_vlan_tags_taken_out_by_the_kernel_are_put_back(hosts, monkeypatch, use_ring):
    """802.1Q, 802.1ad (TPID 0x88a8, reported with TP_STATUS_VLAN_TPID_VALID),
    QinQ and priority-tagged frames come back byte-identical, in order among
    plain ones, from the ring and from recvmsg (PACKET_AUXDATA) alike."""
    monkeypatch.setattr(linuxport, "USE_RING", use_ring)
    (a,) = hosts(1)
    port = LinuxPort(1, a.port)
    port.open()
    tx = a.raw_socket()
    try:
        assert (port.ring is not None) == use_ring
        frames = [
            tframe(0, 100),
            tframe(1, 100, tags=dot1q(7, 3)),
            tframe(2, 100, tags=dot1q(100, 0, 0x88A8)),                       # 802.1ad S-tag alone
            tframe(3, 100, tags=dot1q(200, 1, 0x88A8) + dot1q(300, 2)),        # QinQ
            tframe(4, 100, tags=dot1q(0, 6)),                                  # priority-tagged
            tframe(5, 100, tags=dot1q(4094, 7) + dot1q(5)),                    # 802.1Q in 802.1Q
            tframe(6, 100, tags=dot1q(9, 0, 0x9100)),                          # not a tag to the kernel
            tframe(7, 1514, tags=dot1q(11)),
        ]
        frames += [tframe(8 + i, 64, tags=dot1q(i + 1) if i % 2 else b"") for i in range(60)]
        for f in frames:
            tx.send(f)
        got = read_port(port, len(frames))
        got += read_to_mark(port, tx)
        assert [seq_of(f) for f in got] == list(range(len(frames)))
        for want, have in zip(frames, got, strict=True):
            assert have == want, (want[:22].hex(), have[:22].hex())
        assert port.counters.rx_errors == 0
        assert not use_ring or ring_idle(port)
    finally:
        tx.close()
        port.close()


# --- the send batch ---------------------------------------------------------------------------------


@pytest.mark.root
def test_batched_send_flushes_on_demand_and_counts_refusals(hosts):
    """Without a runtime a frame leaves at once. With on_pending set, frames
    wait for flush() (a frame sent meanwhile by another socket arrives first);
    one over the MTU is counted in tx_errors and the ones after it still
    leave; a full batch of TX_BATCH leaves by itself; a frame larger than a
    slot flushes the queue first. The receiver sees exactly the frames
    counted as sent, in order."""
    (a,) = hosts(1)
    tap = Tap(a)
    port = LinuxPort(1, a.port)
    port.open()
    marker_sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    marker_sock.bind((a.port, 0))
    try:
        f = iter(range(1000))
        c = port.counters
        direct = tframe(next(f))
        port.send(direct)                                     # no runtime: sent at once
        assert c.tx_packets == 1 and port._tx.count == 0

        pending = []
        port.on_pending = pending.append
        s0, s1 = tframe(next(f), 60), tframe(next(f), 1514)
        port.send(s0)
        port.send(s1)
        assert pending == [port] and c.tx_packets == 1 and port._tx.count == 2
        marker = tframe(next(f), 70)
        marker_sock.send(marker)                              # overtakes the queued frames
        over = tframe(next(f), 1600)                          # > MTU 1500, fits a 2048-byte slot
        s2 = tframe(next(f), 200)
        port.send(over)
        port.send(s2)
        assert pending == [port] and c.tx_packets == 1
        port.flush()
        assert (c.tx_packets, c.tx_errors, c.tx_dropped) == (4, 1, 0)
        assert c.tx_bytes == len(direct) + len(s0) + len(s1) + len(s2)
        port.flush()                                          # nothing queued: nothing happens
        assert c.tx_packets == 4

        pending.clear()
        batch = [tframe(next(f), 60 + i * 20) for i in range(TX_BATCH)]
        for frame in batch[:-1]:
            port.send(frame)
        assert pending == [port] and c.tx_packets == 4 and port._tx.count == TX_BATCH - 1
        port.send(batch[-1])                                  # the batch is full: it leaves
        assert c.tx_packets == 4 + TX_BATCH and port._tx.count == 0

        s3, huge, s4 = tframe(next(f)), tframe(next(f), 3000), tframe(next(f))
        port.send(s3)
        port.send(huge)                                       # larger than a slot: s3 first, then refused
        assert c.tx_packets == 5 + TX_BATCH and c.tx_errors == 2 and port._tx.count == 0
        port.send(s4)
        port.flush()
        assert (c.tx_packets, c.tx_errors, c.tx_dropped) == (6 + TX_BATCH, 2, 0)

        expected = [direct, marker, s0, s1, s2, *batch, s3, s4]
        got = tap.collect_until(send_mark(a.port))
        assert [seq_of(x) for x in got] == [seq_of(x) for x in expected]
        assert got == expected
    finally:
        marker_sock.close()
        port.close()
        tap.close()


@pytest.mark.root
@pytest.mark.parametrize("how", ["down", "deleted"])
def test_queued_frames_for_a_vanished_interface_are_counted_dropped(hosts, how, caplog):
    """Frames queued, then the interface goes down (the kernel refuses with
    ENETDOWN) or is deleted (ENXIO): flush() raises nothing and counts every
    one in tx_dropped, none in tx_packets or tx_errors. Brought up again, the
    port sends again."""
    caplog.set_level(logging.DEBUG, logger="kumoflow.switch.port")
    (a,) = hosts(1)
    tap = Tap(a)
    port = LinuxPort(1, a.port)
    port.open()
    try:
        port.on_pending = lambda p: None
        first = tframe(0)
        port.send(first)
        port.flush()
        assert tap.collect_until(send_mark(a.port)) == [first]
        for i in range(5):
            port.send(tframe(1 + i))
        assert port._tx.count == 5
        if how == "down":
            sh("ip", "link", "set", a.port, "down")
        else:
            sh("ip", "link", "del", a.port)
        port.flush()
        c = port.counters
        assert (c.tx_packets, c.tx_dropped, c.tx_errors) == (1, 5, 0)
        assert os.strerror(errno.ENETDOWN if how == "down" else errno.ENXIO) in caplog.text   # what the kernel said
        port.on_pending = None
        port.send(tframe(6))                                  # sent at once: dropped too
        assert (c.tx_packets, c.tx_dropped, c.tx_errors) == (1, 6, 0)
        port.read_frames()                                    # no exception either
        if how == "down":
            sh("ip", "link", "set", a.port, "up")
            again = tframe(7)
            port.send(again)
            assert c.tx_packets == 2
            assert tap.collect_until(send_mark(a.port)) == [again]    # and only that one
    finally:
        port.close()
        tap.close()


# --- through the runtime Switch ------------------------------------------------------------------------


def run_switch(ports: dict[int, str], flows: list[tuple[ofp.Match, list]], body):
    """Start a Switch on `ports` with `flows` (match, actions) at priority 1,
    await ``body(switch)``, stop the switch; returns (switch, body's result)."""
    from kumoflow.switch.runtime import Switch

    async def main():
        switch = Switch(1, ports)
        await switch.start()
        try:
            for match, actions in flows:
                switch.datapath.handle(ofp.FlowMod(priority=1, match=match,
                                                   instructions=[ofp.ApplyActions(actions)]))
            return switch, await body(switch)
        finally:
            await switch.stop()

    return asyncio.run(main())


def wire() -> list[tuple[ofp.Match, list]]:
    return [(ofp.Match(in_port=1), [ofp.Output(2)]), (ofp.Match(in_port=2), [ofp.Output(1)])]


@pytest.fixture
def offload_spy(monkeypatch):
    """Counts frames that needed offload work (GSO segmentation, checksum)."""
    seen = {"gso": 0, "csum": 0}
    real = linuxport.finish_offloads

    def counting(vnet, frame):
        seen["gso" if vnet[1] else "csum"] += 1
        return real(vnet, frame)

    monkeypatch.setattr(linuxport, "finish_offloads", counting)
    return seen


END_MARK = b"end"                                            # shorter than any numbered datagram


def udp_payload(seq: int) -> bytes:
    size = 18 + seq * 613 % 1455                              # 18..1472 (a full 1500-byte IP packet)
    return (struct.pack("!I", seq) * (size // 4 + 1))[:size]


@pytest.mark.root
@pytest.mark.parametrize("offloads_on", [True, False], ids=["offloads-on", "offloads-off"])
def test_switch_forwards_a_udp_burst_without_loss_or_duplicates(hosts, offload_spy, offloads_on):
    """5000 numbered datagrams of 18..1472 bytes from a to b through the
    switch, at most 200 in flight (the sender waits for the receiver, so
    nothing can legitimately drop): b gets each one exactly once, in order,
    intact (the kernel checks the UDP checksum the switch completed when
    offloads are on); the switch counted exactly those frames on both ports."""
    n, window = 5000, 200
    a, b = hosts(2, offloads_on)
    static_neighbours([a, b])
    rx = b.inet_socket(socket.SOCK_DGRAM)
    tx = a.inet_socket(socket.SOCK_DGRAM)
    try:
        rx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        rx.bind((b.ip, 5001))
        rx.settimeout(0.05)
        tx.connect((b.ip, 5001))

        def transfer():
            seqs, bad = [], []
            sent = 0
            while sent < n:
                for seq in range(sent, min(n, sent + window)):
                    tx.send(udp_payload(seq))
                sent = min(n, sent + window)
                end = time.monotonic() + 5
                while len(seqs) < sent and time.monotonic() < end:
                    try:
                        data = rx.recv(2048)
                    except TimeoutError:
                        continue
                    seq = struct.unpack_from("!I", data)[0]
                    seqs.append(seq)
                    if data != udp_payload(seq):
                        bad.append(seq)
                if len(seqs) < sent:                          # stalled: stop here, the asserts say what is missing
                    break
            tx.send(END_MARK)                                 # behind all: duplicates or strays come before it
            end = time.monotonic() + 10
            while True:
                assert time.monotonic() < end, "the end mark did not come"
                with contextlib.suppress(TimeoutError):
                    data = rx.recv(2048)
                    if data == END_MARK:
                        break
                    seqs.append(struct.unpack_from("!I", data)[0])
            return seqs, bad, sent

        async def body(switch):
            return await asyncio.to_thread(transfer)

        switch, (seqs, bad, sent) = run_switch({1: a.port, 2: b.port}, wire(), body)
    finally:
        rx.close()
        tx.close()
    missing = sorted(set(range(sent)) - set(seqs))
    assert not missing, f"{len(missing)} of the first {sent} datagrams lost, first {missing[:10]}"
    assert sent == n
    assert len(seqs) == n, f"{len(seqs) - n} duplicates"
    assert seqs == list(range(n)), "reordered"
    assert not bad
    p1, p2 = switch.ports[1].counters, switch.ports[2].counters
    assert p1.rx_packets == n + 1 and p1.rx_errors == 0                       # + the end mark
    assert p2.tx_packets == n + 1 and p2.tx_dropped == 0 and p2.tx_errors == 0
    ip_bytes = sum(28 + len(udp_payload(s)) for s in range(n)) + 28 + len(END_MARK)
    assert p1.rx_bytes == p2.tx_bytes == 14 * (n + 1) + ip_bytes
    # offloads on: the kernel left every UDP checksum to the switch; off: none
    assert offload_spy == ({"gso": 0, "csum": n + 1} if offloads_on else {"gso": 0, "csum": 0})


@pytest.mark.root
@pytest.mark.parametrize("offloads_on", [True, False], ids=["offloads-on", "offloads-off"])
def test_switch_carries_tcp_byte_exact(hosts, offload_spy, offloads_on):
    """20 MB of random bytes over TCP from a to b through the switch arrive
    with the same sha256, with segmentation/checksum offloads on (the switch
    cuts GSO super-frames) and off; no frame was refused on the way."""
    size = 20 << 20
    a, b = hosts(2, offloads_on)
    features = offload_state(a)
    assert ("tcp-segmentation-offload: on" in features) == offloads_on
    assert ("tx-checksumming: on" in features) == offloads_on
    data = os.urandom(size)
    listener = b.inet_socket(socket.SOCK_STREAM)
    client = a.inet_socket(socket.SOCK_STREAM)
    try:
        listener.bind((b.ip, 5002))
        listener.listen(1)
        listener.settimeout(10)
        client.settimeout(10)

        def receive():
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(10)                           # a stall fails the test instead of hanging it
                h, total = hashlib.sha256(), 0
                buf = bytearray(1 << 20)
                end = time.monotonic() + 60
                while time.monotonic() < end and (n := conn.recv_into(buf)):
                    h.update(memoryview(buf)[:n])
                    total += n
            return total, h.hexdigest()

        def send():
            client.connect((b.ip, 5002))
            client.sendall(data)
            client.shutdown(socket.SHUT_WR)

        async def body(switch):
            got = asyncio.create_task(asyncio.to_thread(receive))
            await asyncio.to_thread(send)
            return await got

        switch, (total, digest) = run_switch({1: a.port, 2: b.port}, wire(), body)
    finally:
        client.close()
        listener.close()
    assert total == size
    assert digest == hashlib.sha256(data).hexdigest()
    assert switch.ports[1].counters.rx_bytes > size and switch.ports[2].counters.tx_bytes > size   # through it
    for p in switch.ports.values():
        assert p.counters.tx_errors == 0 and p.counters.rx_errors == 0
    if offloads_on:
        assert offload_spy["gso"] > 0 and offload_spy["csum"] > 0
    else:
        assert offload_spy == {"gso": 0, "csum": 0}


@pytest.mark.root
def test_switch_sends_packet_outs_outside_a_read_cycle(hosts):
    """Packet-outs handled between read cycles (no frame arrives to end a
    cycle: no flows, nothing sent by the hosts) leave at once, in order, each
    exactly once, to every port they name."""
    a, b = hosts(2)
    taps = {1: Tap(a), 2: Tap(b)}
    try:
        outs = [(tframe(0), [2]), (tframe(1, 600), [2]), (tframe(2, 1514), [1, 2]), (tframe(3), [1])]
        mark = tframe(END)                                    # to both ports, behind the others

        async def body(switch):
            for data, ports in outs + [(mark, [1, 2])]:
                switch.datapath.handle(ofp.PacketOut(in_port=ofp.OFPP.CONTROLLER,
                                                     actions=[ofp.Output(p) for p in ports], data=data))
            # collected in a thread: the event loop stays free to run the flush it scheduled
            return await asyncio.gather(asyncio.to_thread(taps[1].collect_until, mark),
                                        asyncio.to_thread(taps[2].collect_until, mark))

        switch, (got1, got2) = run_switch({1: a.port, 2: b.port}, [], body)
    finally:
        for t in taps.values():
            t.close()
    assert got1 == [outs[2][0], outs[3][0]]
    assert got2 == [outs[0][0], outs[1][0], outs[2][0]]
    assert switch.ports[1].counters.tx_packets == 2 + 1 and switch.ports[2].counters.tx_packets == 3 + 1   # + the mark


@pytest.mark.root
@pytest.mark.parametrize("out_port", [ofp.OFPP.FLOOD, ofp.OFPP.ALL], ids=["FLOOD", "ALL"])
def test_switch_floods_each_frame_once_to_every_other_port(hosts, out_port):
    """Three hosts send numbered broadcast frames at the same time; with one
    flow (everything to FLOOD / ALL) each host gets every frame of the other
    two exactly once and in their order, and none of its own."""
    k = 200
    hs = hosts(3)
    taps = [Tap(h) for h in hs]
    senders = [h.raw_socket() for h in hs]
    try:
        frames = {i: [tframe(1000 * i + s, 60 + (s * 97) % 1455, src=mac_bytes(h.mac), dst=BROADCAST)
                      for s in range(k)] for i, h in enumerate(hs)}
        # each host's end mark, behind its frames: a host has all it will get once the others' came
        marks = [tframe(END + i, src=mac_bytes(h.mac), dst=BROADCAST) for i, h in enumerate(hs)]

        def send():
            for s in range(k):
                for i, sock in enumerate(senders):
                    sock.send(frames[i][s])
            for i, sock in enumerate(senders):
                sock.send(marks[i])

        async def body(switch):
            collecting = [asyncio.create_task(asyncio.to_thread(t.collect_until, *(m for j, m in enumerate(marks)
                                                                                   if j != i)))
                          for i, t in enumerate(taps)]
            await asyncio.to_thread(send)
            return await asyncio.gather(*collecting)

        switch, got = run_switch({i + 1: h.port for i, h in enumerate(hs)}, [(ofp.Match(), [ofp.Output(out_port)])],
                                 body)
    finally:
        for s in senders:
            s.close()
        for t in taps:
            t.close()
    for i, frames_in in enumerate(got):
        by_source = {j: [f for f in frames_in if seq_of(f) // 1000 == j] for j in range(3)}
        assert by_source[i] == [], f"host {i} got its own frames back"
        for j in range(3):
            if j != i:
                assert by_source[j] == frames[j], f"host {i} from host {j}"
        assert len(frames_in) == 2 * k
    for i in range(3):
        c = switch.ports[i + 1].counters
        assert (c.rx_packets, c.tx_packets, c.tx_dropped, c.tx_errors) == (k + 1, 2 * k + 2, 0, 0)   # + the marks
