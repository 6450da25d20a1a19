"""LinuxPort: offload completion (pure, checked against scapy) and real veths
with offloads ON (root): checksums completed, GSO frames segmented, TCP works
through a two-port forwarder made of nothing but LinuxPorts; a flooded ring
in step with the kernel; link flaps through the switch process (PORT_STATUS
each time, frames both ways after each)."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether

from kumoflow.switch.linuxport import (GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, VNET_HDR, LinuxPort, complete_checksum,
                                       finish_offloads, insert_vlan, segment)
from test_switch_support import TCP_BYTES, SwitchProcess, tcp_transfer

MAC1, MAC2 = "02:00:00:00:00:01", "02:00:00:00:00:02"


def rebuilt(frame: bytes) -> Ether:
    """The frame with every checksum and length recomputed by scapy."""
    pkt = Ether(frame)
    for layer in (IP, TCP, UDP):
        if layer in pkt:
            del pkt[layer].chksum
    if IP in pkt:
        del pkt[IP].len
    if IPv6 in pkt:
        del pkt[IPv6].plen
    if UDP in pkt:
        del pkt[UDP].len
    return Ether(bytes(pkt))


def assert_checksums_right(frame: bytes) -> None:
    assert frame == bytes(rebuilt(frame)), Ether(frame).show(dump=True)


# --- pure functions ------------------------------------------------------------------------


def test_tcpv4_super_frame_is_segmented_like_the_kernel():
    payload = bytes(range(256)) * 40            # 10240 bytes
    big = Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2", id=1000, flags="DF") / TCP(
        sport=40000, dport=80, seq=0xFFFFF000, flags="PA" + "F" + "C") / payload
    frame = bytes(big)
    segs = segment(frame, GSO_TCPV4, 1448)
    assert len(segs) == 8                        # ceil(10240 / 1448)
    data = b""
    for i, seg in enumerate(segs):
        assert_checksums_right(seg)
        p = Ether(seg)
        assert p[IP].id == 1000 + i and p[IP].flags == "DF"
        assert p[TCP].seq == (0xFFFFF000 + 1448 * i) & 0xFFFFFFFF      # wraps
        last = i == len(segs) - 1
        assert bool(p[TCP].flags.F) == last and bool(p[TCP].flags.P) == last
        assert bool(p[TCP].flags.C) == (i == 0)
        assert p[TCP].flags.A
        assert len(seg) <= 14 + 20 + 20 + 1448
        data += bytes(p[TCP].payload)
    assert data == payload


def test_tcpv6_with_vlan_tag_in_frame_and_options():
    payload = os.urandom(5000)
    big = Ether(src=MAC1, dst=MAC2) / Dot1Q(vlan=10) / IPv6(src="fd00::1", dst="fd00::2") / TCP(
        sport=1, dport=2, seq=7, flags="A", options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))]) / payload
    segs = segment(bytes(big), GSO_TCPV6, 1000)
    assert len(segs) == 5
    assert b"".join(bytes(Ether(s)[TCP].payload) for s in segs) == payload
    for s in segs:
        assert_checksums_right(s)
        assert Ether(s)[Dot1Q].vlan == 10 and Ether(s)[TCP].options == Ether(bytes(big))[TCP].options


def test_udp_l4_segmentation_makes_datagrams():
    payload = os.urandom(3000)
    big = Ether() / IP(src="10.0.0.1", dst="10.0.0.2", id=5) / UDP(sport=5000, dport=6000) / payload
    segs = segment(bytes(big), GSO_UDP_L4, 1200)
    assert [len(Ether(s)[UDP].payload) for s in segs] == [1200, 1200, 600]
    for s in segs:
        assert_checksums_right(s)
        assert Ether(s)[UDP].len == 8 + len(Ether(s)[UDP].payload)


def test_partial_checksum_is_completed():
    for l3 in (IP(src="10.0.0.1", dst="10.0.0.2"), IPv6(src="fd00::1", dst="fd00::2")):
        for l4, csum_offset in ((TCP(sport=1, dport=2), 16), (UDP(sport=1, dport=2), 6)):
            good = bytes(Ether() / l3 / l4 / b"hello world!!")
            start = 14 + (20 if IP in Ether(good) else 40)
            # what the kernel hands over: the pseudo-header sum, not inverted
            pseudo = _pseudo_only(good, start, csum_offset)
            partial = bytearray(good)
            partial[start + csum_offset:start + csum_offset + 2] = pseudo.to_bytes(2, "big")
            fixed = complete_checksum(bytes(partial), start, csum_offset)
            assert fixed == good
            vnet = VNET_HDR.pack(1, 0, 0, 0, start, csum_offset)
            assert finish_offloads(vnet, bytes(partial)) == [good]


def _pseudo_only(good: bytes, start: int, off: int) -> int:
    from kumoflow.packet.checksum import csum_part
    pkt = Ether(good)
    if IP in pkt:
        ph = bytes(good[26:34]) + bytes([0, pkt[IP].proto]) + (len(good) - start).to_bytes(2, "big")
    else:
        ph = bytes(good[22:54]) + (len(good) - start).to_bytes(4, "big") + bytes([0, 0, 0, pkt[IPv6].nh])
    total = csum_part(ph) % 0xFFFF
    return total or 0xFFFF


def test_vlan_reinsert_and_unknown_gso_refused():
    frame = bytes(Ether(src=MAC1, dst=MAC2, type=0x0800) / IP() / b"x")
    tagged = insert_vlan(frame, 0x8100, 0x2005)
    assert Ether(tagged)[Dot1Q].vlan == 5 and Ether(tagged)[Dot1Q].prio == 1
    with pytest.raises(ValueError):
        segment(frame, 3, 100)       # legacy UFO
    with pytest.raises(ValueError):
        finish_offloads(VNET_HDR.pack(1, 0, 0, 0, 500, 6), frame)


# --- real interfaces -------------------------------------------------------------------------


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=30)


def wait_for(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.01)


SEND_FRAME = "import socket, sys; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); " \
             "s.bind((sys.argv[1], 0)); s.send(bytes.fromhex(sys.argv[2]))"


@pytest.fixture
def two_hosts(unique_name):
    """Namespaces a and b, each with eth0 (10.9.0.1 / .2) wired to root-namespace
    veth ends pa / pb, offloads left ON (the kernel's defaults)."""
    a, b = unique_name("ns"), unique_name("ns")
    pa, pb = unique_name("pa"), unique_name("pb")
    try:
        for ns, port, ip in ((a, pa, "10.9.0.1"), (b, pb, "10.9.0.2")):
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", port, "type", "veth", "peer", "name", port + "x")
            sh("ip", "link", "set", port + "x", "netns", ns)
            sh("ip", "-n", ns, "link", "set", port + "x", "name", "eth0")
            sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "link", "set", port, "up")
        yield a, b, pa, pb
    finally:
        for port in (pa, pb):
            sh("ip", "link", "del", port, check=False)
        for ns in (a, b):
            sh("ip", "netns", "del", ns, check=False)


async def forward(ports: list[LinuxPort], stop: asyncio.Event, opened: asyncio.Event) -> None:
    """A two-port wire made of LinuxPorts: what one port reads the other sends."""
    loop = asyncio.get_running_loop()
    for p in ports:
        p.open()
    x, y = ports

    def relay(src, dst):
        for frame in src.read_frames():
            dst.send(frame)

    loop.add_reader(x.fileno(), relay, x, y)
    loop.add_reader(y.fileno(), relay, y, x)
    opened.set()
    try:
        await stop.wait()
    finally:
        for p in ports:
            loop.remove_reader(p.fileno())
            p.close()


def run_forwarder(pa: str, pb: str, body) -> tuple[LinuxPort, LinuxPort]:
    ports = [LinuxPort(1, pa), LinuxPort(2, pb)]

    async def main():
        stop, opened = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(forward(ports, stop, opened))
        await asyncio.wait([task, asyncio.create_task(opened.wait())], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()                             # opening a port failed: say why
        try:
            await asyncio.get_running_loop().run_in_executor(None, body)
        finally:
            stop.set()
            await task

    asyncio.run(main())
    return ports[0], ports[1]


@pytest.mark.root
def test_ports_forward_tcp_with_offloads_on(two_hosts, monkeypatch):
    a, b, pa, pb = two_hosts
    from kumoflow.switch import linuxport
    seen = {"gso": 0, "csum": 0}
    real = linuxport.finish_offloads

    def counting(vnet, frame):
        seen["gso" if vnet[1] else "csum"] += 1
        return real(vnet, frame)

    monkeypatch.setattr(linuxport, "finish_offloads", counting)
    features = sh("ip", "netns", "exec", a, "ethtool", "-k", "eth0").stdout
    assert "tcp-segmentation-offload: on" in features and "tx-checksumming: on" in features
    results = {}

    def body():
        results["ping"] = sh("ip", "netns", "exec", a, "ping", "-c2", "-i0.2", "-W2", "10.9.0.2", check=False)
        tcp_transfer(a, b, "10.9.0.2", TCP_BYTES)          # every byte arrives, intact

    port_a, port_b = run_forwarder(pa, pb, body)
    assert results["ping"].returncode == 0, results["ping"].stdout
    assert port_a.vnet_hdr and port_b.vnet_hdr
    # the segments went out of port b (4 MiB is over 2,800 of them); nothing was lost to oversize frames
    assert port_b.counters.tx_packets > TCP_BYTES // 1500 and port_b.counters.tx_errors == 0
    assert port_a.counters.rx_errors == 0
    assert seen["gso"] > 0 and seen["csum"] > 0       # both offload paths were taken


@pytest.mark.root
def test_own_transmissions_are_not_received_and_link_state_is_read(two_hosts):
    a, b, pa, pb = two_hosts
    port = LinuxPort(1, pa)
    port.open()
    try:
        mac = open(f"/sys/class/net/{pa}/address").read().strip()
        assert port.hw_addr == mac and port.name == pa
        assert not port.state & 1 and port.curr_speed > 0
        frame = bytes(Ether(src=MAC1, dst="ff:ff:ff:ff:ff:ff", type=0x88B5) / (b"kumoflow" * 8))
        for _ in range(3):
            port.send(frame)
        # then a frame from the far end: one of ours looped back would be read before it
        mark = bytes(Ether(src=MAC2, dst="ff:ff:ff:ff:ff:ff", type=0x88B5) / (b"the far end" * 6))
        sh("ip", "netns", "exec", a, sys.executable, "-c", SEND_FRAME, "eth0", mark.hex())
        got = []
        deadline = time.monotonic() + 10
        while mark not in got:
            assert time.monotonic() < deadline, f"the far end's frame did not come: {got}"
            select.select([port.fileno()], [], [], 0.1)
            got += port.read_frames()
        assert frame not in got
        assert port.counters.tx_packets == 3
        # the far end goes down: carrier lost
        changed = []
        sh("ip", "-n", a, "link", "set", "eth0", "down")
        wait_for(lambda: changed.append(port.refresh()) or port.state & 1, "carrier lost")
        assert any(changed)
        changed.clear()
        sh("ip", "-n", a, "link", "set", "eth0", "up")
        wait_for(lambda: changed.append(port.refresh()) or not port.state & 1, "carrier back")
        assert any(changed)
        # PORT_DOWN takes the interface itself down
        port.set_config(1)
        assert "UP" not in sh("ip", "link", "show", pa).stdout.split(">")[0]
        port.set_config(0)
        assert ",UP" in sh("ip", "link", "show", pa).stdout.split(">")[0]
    finally:
        port.close()


# A sender of numbered 60-byte UDP frames (UDP so that the port's GRO looks at
# each one, as in a switch), flat out, 256 per sendmmsg from batches built
# beforehand: argv interface. It stops on SIGTERM (or after 256 rounds). A
# frame's number is 24 bits: 16 at offset 44 set when its batch was built, 8
# at offset 46 counting the rounds through all the batches. Prints how many
# frames it sent.
FLOOD = """
import signal, socket, struct, sys
from kumoflow.switch.mmsg import SendBatch

def frame(n):
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 46, 0, 0x4000, 64, 17, 0,
                               bytes([10, 9, 9, 1]), bytes([10, 9, 9, 2])))
    total = sum(struct.unpack("!10H", ip))
    total = (total & 0xFFFF) + (total >> 16)
    struct.pack_into("!H", ip, 10, ~((total & 0xFFFF) + (total >> 16)) & 0xFFFF)
    udp = struct.pack("!HHHHHH", 4000 + n % 16, 5000, 26, 0, 0, n) + bytes(14)
    return bytes.fromhex("020000000002020000000001") + b"\\x08\\x00" + bytes(ip) + udp

stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.setsockopt(263, 20, 1)                 # SOL_PACKET, PACKET_QDISC_BYPASS
sock.bind((sys.argv[1], 0))
batches = []
for first in range(0, 1 << 16, 256):
    batches.append(SendBatch(sock.fileno(), 256, 64))
    batches[-1].add_many([frame(n) for n in range(first, first + 256)])
print("ready", flush=True)
sent, rounds = 0, 0
while not stop and rounds < 256:
    for batch in batches:
        memoryview(batch.buf)[46::64] = bytes([rounds]) * 256
        batch.count = 256
        sent += batch.flush()[0]
    rounds += 1
print(sent)
"""

#: Frames to read while the sender floods a full ring (a few seconds' worth).
FLOOD_READS = 300_000
#: What the test sends after the flood to know the ring has it all (not UDP: not counted).
END_MARK = bytes.fromhex("020000000002020000000001") + b"\x88\xb5" + b"end of flood".ljust(46, b".")


def packet_drops(port: LinuxPort) -> int:
    """Frames the kernel dropped for want of a free slot since the last call
    (PACKET_STATISTICS: reading it resets it)."""
    with socket.socket(fileno=os.dup(port.fileno())) as sock:
        packets, drops = struct.unpack("II", sock.getsockopt(263, 6, 8))   # SOL_PACKET, PACKET_STATISTICS
    return drops


def napi_threads(ifname: str) -> set[int]:
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().startswith(f"napi/{ifname}-"):
                    pids.add(int(pid))
        except OSError:
            pass
    return pids


@pytest.mark.root
def test_a_flooded_ring_stays_in_step_with_the_kernel(unique_name, caplog):
    """Overload, with the port's input in a SCHED_FIFO NAPI thread on the
    reader's CPU (how benchmarks/bench_switch.py runs it): every frame read
    comes in the order it was sent, and none is left behind in the ring.
    Handing slots back with a write that stores to the status word twice
    (see ring.py) failed this in every run on the 2-CPU test machine.

    The overload is made, not hoped for: the reader starts only once the
    ring is full and the kernel has dropped a frame for want of a slot, then
    reads FLOOD_READS frames while the sender keeps flooding; after the
    sender stops, frames marked END_MARK are sent until one is read, so
    every frame before it has reached the ring."""
    rx, tx = unique_name("rx"), unique_name("tx")
    cpu, affinity = max(os.sched_getaffinity(0)), os.sched_getaffinity(0)
    port = sender = marker = None
    try:
        sh("ip", "link", "add", rx, "type", "veth", "peer", "name", tx)
        for ifname in (rx, tx):
            sh("sysctl", "-qw", f"net.ipv6.conf.{ifname}.disable_ipv6=1", check=False)
            sh("ip", "link", "set", ifname, "up")
        for ifname in (rx, tx):                      # offloads off, as the emulator and the benchmark leave them
            sh("ethtool", "-K", ifname, "tx", "off", "rx", "off", "sg", "off", "tso", "off", "gso", "off", check=False)
        sh("ethtool", "-K", rx, "gro", "on")            # a veth takes its input through NAPI while GRO is on
        with open(f"/sys/class/net/{rx}/threaded", "w") as f:
            f.write("1")
        deadline = time.monotonic() + 5
        while not napi_threads(rx) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert napi_threads(rx), "no NAPI thread for the port"
        for pid in napi_threads(rx):
            os.sched_setaffinity(pid, {cpu})
            os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(50))
        os.sched_setaffinity(0, {cpu})
        port = LinuxPort(1, rx)
        port.open()
        sender = subprocess.Popen([sys.executable, "-c", FLOOD, tx], stdout=subprocess.PIPE, text=True)
        os.sched_setaffinity(sender.pid, affinity - {cpu} or affinity)   # not on the reader's CPU
        assert sender.stdout.readline() == "ready\n"
        # the premise, waited for: a full ring, and frames dropped for want of a slot
        ring = port.ring
        deadline = time.monotonic() + 30
        while not all(ring.u32[0::ring.slot_words].tolist()):
            assert sender.poll() is None and time.monotonic() < deadline, "the flood did not fill the ring"
            time.sleep(0.001)
        deadline = time.monotonic() + 30
        while not packet_drops(port):
            assert sender.poll() is None and time.monotonic() < deadline, "the kernel dropped no frame"
            time.sleep(0.001)

        seqs: list[int] = []
        poll = select.poll()
        poll.register(port.fileno(), select.POLLIN)

        def read(timeout_ms: int) -> bool:
            """Read what is there; True when END_MARK came."""
            frames = port.read_frames() if poll.poll(timeout_ms) else []
            seqs.extend(f[46] << 16 | f[44] << 8 | f[45] for f in frames if len(f) == 60 and f[23] == 17)
            return END_MARK in frames

        deadline = time.monotonic() + 120
        while len(seqs) < FLOOD_READS and sender.poll() is None:      # reading while the flood goes on
            assert time.monotonic() < deadline, f"read only {len(seqs)} frames in 120 s"
            read(100)
        sender.terminate()
        sent = int(sender.communicate(timeout=30)[0])
        assert sender.returncode == 0
        assert len(seqs) >= FLOOD_READS, \
            f"the reader stalled: {len(seqs)} frames read while the sender sent all it had ({sent}): {caplog.text}"
        marker = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        marker.bind((tx, 0))
        deadline = time.monotonic() + 30
        while True:                                  # until a mark gets through: all before it is read
            marker.send(END_MARK)
            if any(read(10) for _ in range(5)):
                break
            assert time.monotonic() < deadline, "no END_MARK came through"
        assert len(seqs) < sent                      # those dropped at the start, at least
        late = [(i, seqs[i - 2:i + 3]) for i in range(1, len(seqs)) if seqs[i] <= seqs[i - 1]]
        assert not late, f"frames read out of order: {len(late)} of {len(seqs)} ({sent} sent): {late[:5]}"
        assert not any(port.ring.u32[0::port.ring.slot_words]), "frames left behind in the ring"
        assert "out of step" not in caplog.text
    finally:
        os.sched_setaffinity(0, affinity)
        if sender is not None and sender.poll() is None:
            sender.kill()
            sender.wait()
        if marker is not None:
            marker.close()
        if port is not None:
            port.close()
        sh("ip", "link", "del", rx, check=False)


# --- link flaps through the switch process -------------------------------------------------------


class PortStatusWatch:
    """An OpenFlow connection to the switch's passive listener, read in a
    thread: it keeps every PORT_STATUS and answers echo requests."""

    def __init__(self, target: str) -> None:
        from kumoflow import ofp
        self.ofp = ofp
        _, host, port = target.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sock.settimeout(None)
        self.sock.sendall(ofp.Hello().pack())
        self.seen: list[tuple[int, bool]] = []          # (port number, LINK_DOWN) of each PORT_STATUS
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _run(self) -> None:
        ofp = self.ofp
        try:
            while True:
                head = self._read(8)
                msg = ofp.parse(head + self._read(struct.unpack_from("!H", head, 2)[0] - 8))
                if isinstance(msg, ofp.EchoRequest):
                    self.sock.sendall(ofp.EchoReply(data=msg.data, xid=msg.xid).pack())
                elif isinstance(msg, ofp.PortStatus):
                    with self.cond:
                        self.seen.append((msg.desc.port_no, bool(msg.desc.state & ofp.OFPPS.LINK_DOWN)))
                        self.cond.notify_all()
        except (OSError, EOFError):
            pass

    def mark(self) -> int:
        with self.cond:
            return len(self.seen)

    def wait(self, port_no: int, link_down: bool, since: int, timeout: float = 10.0) -> None:
        """Until a PORT_STATUS for `port_no` with LINK_DOWN `link_down` came after mark `since`."""
        with self.cond:
            ok = self.cond.wait_for(lambda: (port_no, link_down) in self.seen[since:], timeout)
            assert ok, f"no PORT_STATUS for port {port_no} with LINK_DOWN {link_down} " \
                       f"within {timeout} s; since the mark: {self.seen[since:]}"

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


MARK_TYPE = 0x88B6         # the marks' ethertype: each far end listens for this one only


def mark_socket(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(MARK_TYPE))
    sock.bind((ifname, MARK_TYPE))
    sock.setblocking(False)
    return sock


def passes(src: socket.socket, dst: socket.socket, label: str, timeout: float = 10.0) -> bool:
    """Does a frame sent into the switch at `src` come out at `dst`? A
    broadcast mark, unique to this call, is sent every 20 ms until one
    arrives (the learning bridge floods it) or `timeout` passes."""
    mark = f"{label} {time.monotonic_ns()}".encode()
    frame = b"\xff" * 6 + bytes.fromhex("02000000aa01") + struct.pack("!H", MARK_TYPE) + mark.ljust(46, b".")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            src.send(frame)
        except OSError:                   # ENETDOWN/ENOBUFS while the link settles: try again
            pass
        end = time.monotonic() + 0.02
        while (left := end - time.monotonic()) > 0:
            if select.select([dst], [], [], left)[0]:
                while True:
                    try:
                        if mark in dst.recv(2048):
                            return True
                    except BlockingIOError:
                        break
                    except OSError:       # ENETDOWN left from a flap of this end: collected now
                        continue
    return False


#: Flaps per case: the benchmark that found the bug lost a port on its first or second
FLAPS = 4
#: Frames put into the port's ring (switch stopped) before each carrier change: more than one read takes
RING_FRAMES_BEFORE = 200


@pytest.mark.root
@pytest.mark.parametrize("end", ["switch end", "far end", "switch end, unseen"])
def test_a_port_receives_and_sends_after_every_link_flap(unique_name, tmp_path, end):
    """``ip link set IF down`` / ``up`` on the switch's own end of port 1
    (its socket then gets ENETDOWN) or on the far end (carrier only),
    FLAPS times: PORT_STATUS reports LINK_DOWN set and then cleared each
    time, and after each flap a frame passes both ways through the switch
    (the ``kumoflow switch`` process, on uvloop when it is installed, as the
    benchmarks and the emulator run it).

    The flap is made the worst case, not hoped for: the switch is stopped
    (SIGSTOP) while frames are put into port 1's ring and the link goes
    down, and again while it comes back up with frames waiting, so the
    switch wakes up to a pending socket error with frames to read, both
    times. "switch end, unseen": down and up again while the switch is
    stopped, so that it never sees the link down (no PORT_STATUS expected).
    Before the fix the port stopped receiving at the first such flap of the
    switch end (uvloop stops polling a socket once epoll reports its error,
    and the error was only collected when the ring was empty)."""
    pa, pb = unique_name("fa"), unique_name("fb")
    switch = watch = None
    socks: list[socket.socket] = []
    try:
        for port in (pa, pb):
            sh("ip", "link", "add", port, "type", "veth", "peer", "name", port + "x")
            for ifname in (port, port + "x"):
                sh("sysctl", "-qw", f"net.ipv6.conf.{ifname}.disable_ipv6=1", check=False)
                sh("ip", "link", "set", ifname, "up")
        switch = SwitchProcess(tmp_path, {1: pa, 2: pb}, dpid=0xF1A9, fail_mode="standalone").start()
        watch = PortStatusWatch(switch.target)
        a, b = mark_socket(pa + "x"), mark_socket(pb + "x")
        socks += [a, b]
        filler = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)     # frames into port 1's ring
        socks.append(filler)
        filler.bind((pa + "x", 0))
        fill = bytes.fromhex("02000000aa02" "02000000aa03" "88b7") + bytes(46)   # unknown unicast: flooded to port 2
        assert passes(a, b, "before") and passes(b, a, "before"), switch.log()
        flapped = pa + "x" if end == "far end" else pa

        def stopped_switch_sets(*states: str) -> None:
            """Set the link down and/or up while the switch is stopped, with
            frames waiting in port 1's ring when it goes on (put there
            before the link goes down and after it comes up)."""
            os.kill(switch.proc.pid, signal.SIGSTOP)
            try:
                for state in states:
                    if state == "up":
                        sh("ip", "link", "set", flapped, "up")
                    # the filler's own socket has ENETDOWN pending if its end was down: collect it
                    filler.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    for _ in range(RING_FRAMES_BEFORE):
                        filler.send(fill)
                    if state == "down":
                        sh("ip", "link", "set", flapped, "down")
            finally:
                os.kill(switch.proc.pid, signal.SIGCONT)

        for i in range(1, FLAPS + 1):
            if end.endswith("unseen"):
                stopped_switch_sets("down", "up")
            else:
                since = watch.mark()
                stopped_switch_sets("down")
                watch.wait(1, True, since)
                since = watch.mark()
                stopped_switch_sets("up")
                watch.wait(1, False, since)
            there, back = passes(a, b, f"flap {i} 1->2"), passes(b, a, f"flap {i} 2->1")
            assert there and back, f"after flap {i} of {flapped}: port 1 -> 2 {there}, 2 -> 1 {back}\n{switch.log()}"
    finally:
        for sock in socks:
            sock.close()
        if watch is not None:
            watch.close()
        if switch is not None:
            switch.stop()
        for port in (pa, pb):
            sh("ip", "link", "del", port, check=False)
