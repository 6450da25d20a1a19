"""The differential harness of test_switch_vs_ovs.py (no tests here).

Two switches side by side: a ``kumoflow switch`` process and an Open vSwitch
bridge (userspace datapath), each with the same number of ports. Every port
is a veth pair: the switch holds one end, the harness holds the other (the
"far end", in the root namespace, no addresses, IPv6 off, offloads off) with
a raw AF_PACKET socket on it (:class:`Tap`) to put frames in and read what
comes out.

The same rule set goes into both switches through the same OpenFlow 1.3
messages: ``ovs-ofctl -O OpenFlow13 add-groups/add-flows`` against the
bridge and against kumoflow's passive listener. :meth:`Harness.exchange`
sends one frame into the same port of both switches and returns what came
out of every port of each.

How the harness knows that a frame did *not* come out, without sleeping:
every rule set gets marker rules in table 0 (priority 65535, cookie
:data:`HARNESS_COOKIE`) that send a marker frame (ethertype 0x88b5, source
:data:`MARKER_SRC`) out of every port, the ingress port included. After the
frame, a first marker goes in through the same port; once it has come out of
every port, the batch that held the frame has been processed and sent (both
switches read a port's frames in order and send a batch's output before they
read the next batch, but within one batch they may reorder frames of
different flows). A second marker, sent after that, is therefore in a later
batch than the frame: everything the frame caused is out before it. The
frames read before the second marker, markers removed, are the answer.

Counters come from ``ovs-ofctl dump-flows`` / ``dump-group-stats`` on both
sides. Open vSwitch credits OpenFlow counters from its datapath flows in its
revalidator threads, so the tests read its side after ``ovs-appctl
revalidator/wait``, again (bounded) until it equals what kumoflow shows.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import select
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from test_switch_support import SwitchProcess, ofctl, parse_flows, parse_ports_desc, sh, wait_until

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
_AUXDATA = struct.Struct("=IIIHHHH")

MARKER_TYPE = 0x88B5                       # IEEE 802 local experimental ethertype
MARKER_SRC = "02:dd:00:00:00:00"
MARKER_SRC_BYTES = bytes.fromhex(MARKER_SRC.replace(":", ""))
MARKER_DST = bytes.fromhex("02ddffffffff")
#: The cookie of the harness's own rules (markers, the LOCAL guard); their
#: counters are left out of every comparison.
HARNESS_COOKIE = 0xD1FF

#: How long a marker may take to come back before the harness gives up:
#: a bound on a wait for an event, not a measurement.
MARKER_TIMEOUT = 20.0


class Tap:
    """A raw socket on a far end: send frames in, read frames out.

    VLAN tags that the kernel moved out of a received frame (it always does
    for the outermost 802.1Q/802.1ad tag) are put back from PACKET_AUXDATA,
    so a frame reads as it went over the wire."""

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)      # receives nothing until bound
        s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        with contextlib.suppress(OSError):
            s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((ifname, ETH_P_ALL))           # CPython applies htons itself
        s.setblocking(False)
        self.sock = s

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)

    def recv(self) -> bytes | None:
        """One frame, or None when none is queued."""
        while True:
            try:
                data, anc, flags, addr = self.sock.recvmsg(65536, socket.CMSG_SPACE(_AUXDATA.size))
            except BlockingIOError:
                return None
            except OSError as exc:          # ENETDOWN and friends: the link went down under us
                if exc.errno in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV):
                    continue
                raise
            if addr[2] == PACKET_OUTGOING:
                continue
            for level, kind, payload in anc:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(payload) >= _AUXDATA.size:
                    status, _, _, _, _, tci, tpid = _AUXDATA.unpack_from(payload)
                    if status & TP_STATUS_VLAN_VALID:
                        if not status & TP_STATUS_VLAN_TPID_VALID:
                            tpid = 0x8100
                        data = data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
            return data

    def drain(self) -> list[bytes]:
        out = []
        while (frame := self.recv()) is not None:
            out.append(frame)
        return out

    def close(self) -> None:
        self.sock.close()


def marker(seq: int) -> bytes:
    return MARKER_DST + MARKER_SRC_BYTES + struct.pack("!HQ", MARKER_TYPE, seq) + bytes(36)


def is_marker(frame: bytes) -> bool:
    return frame[6:12] == MARKER_SRC_BYTES and frame[12:14] == b"\x88\xb5"


def marker_seq(frame: bytes) -> int:
    return struct.unpack_from("!Q", frame, 14)[0]


# --- links ---------------------------------------------------------------------------------------


def _sysctl_disable_ipv6(ifname: str) -> None:
    path = Path(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6")
    if path.exists():
        path.write_text("1")


def make_veth(inner: str, outer: str) -> None:
    """A veth pair, both ends quiet (IPv6 off, so no router solicitations or
    MLD reports), offloads off, up."""
    sh("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
    for dev in (inner, outer):
        _sysctl_disable_ipv6(dev)
        sh("ethtool", "-K", dev, "tx", "off", "rx", "off", "sg", "off", "tso", "off", "gso", "off", "gro", "off",
           "rxvlan", "off", "txvlan", "off", check=False)
    for dev in (outer, inner):
        sh("ip", "link", "set", dev, "up")


def delete_link(name: str) -> None:
    sh("ip", "link", "del", name, check=False)


def set_link(name: str, up: bool) -> None:
    sh("ip", "link", "set", name, "up" if up else "down")


# --- the two switches ---------------------------------------------------------------------------


@dataclass
class Side:
    """One switch under test and its far ends."""
    name: str                              # "kumoflow" or "ovs"
    target: str                            # what ovs-ofctl talks to
    ports: dict[int, str]                  # port number -> switch-side interface
    far: dict[int, str]                    # port number -> far-end interface
    taps: dict[int, Tap] = field(default_factory=dict)

    def ofctl(self, *args: str, check: bool = True) -> str:
        return ofctl(self.target, *args, check=check)


def harness_rules(nports: int) -> list[str]:
    """The marker rules, one per ingress port: a marker goes out of every
    port, the one it came in by too."""
    rules = []
    for i in range(1, nports + 1):
        outs = ",".join(f"output:{j}" for j in range(1, nports + 1) if j != i)
        rules.append(f"table=0,cookie={HARNESS_COOKIE:#x},priority=65535,in_port={i},dl_type={MARKER_TYPE:#x},"
                     f"dl_src={MARKER_SRC},actions={outs},in_port")
    return rules


#: Drops whatever Open vSwitch's bridge interface (its LOCAL port) might send.
LOCAL_GUARD = f"table=0,cookie={HARNESS_COOKIE:#x},priority=65535,in_port=LOCAL,actions=drop"


def ovs_settle() -> None:
    """Wait until Open vSwitch's datapath holds no flow cached from before
    a change of its tables or ports.

    Open vSwitch answers the barrier (and notices a link change) before its
    revalidators have re-translated the datapath flows cached from the old
    state: a frame sent at once could still take one. The main loop asks for
    that revalidation (bumps the revalidation sequence) on its next turn, so
    one ``revalidator/wait`` may finish a cycle that started before it; the
    second one waits for a whole cycle that started after it. On a loaded
    machine even that was seen to leave a stale flow (a frame of one rule set
    forwarded by the previous one's datapath flow), so the datapath flows are
    purged first: every frame after a change is translated afresh."""
    sh("ovs-appctl", "revalidator/purge")
    for _ in range(2):
        sh("ovs-appctl", "revalidator/wait")


def _short_id() -> str:
    return f"{secrets.randbits(24):06x}"


class Harness:
    """Both switches, their far ends, rule sets and the frame exchange."""

    def __init__(self, workdir: Path, nports: int = 4) -> None:
        self.workdir = Path(workdir)
        self.nports = nports
        self.base = "dv" + _short_id()              # 8 characters; + "k1f" stays under 15
        self.links: list[str] = []
        self.bridge = self.base + "br"
        self.switch: SwitchProcess | None = None
        self.sides: dict[str, Side] = {}
        self._seq = int.from_bytes(os.urandom(4), "big") << 24
        self.down: dict[str, set[int]] = {"kumoflow": set(), "ovs": set()}

    # -- set-up and teardown ------------------------------------------------------------------
    def start(self) -> "Harness":
        n = self.nports
        kports = {i: f"{self.base}k{i}" for i in range(1, n + 1)}
        oports = {i: f"{self.base}o{i}" for i in range(1, n + 1)}
        for ports in (kports, oports):
            for i, name in ports.items():
                self.links.append(name)
                make_veth(name, name + "f")
        # Open vSwitch: a netdev bridge, secure, OpenFlow 1.3, ports numbered as asked.
        cmd = ["ovs-vsctl", "add-br", self.bridge, "--", "set", "bridge", self.bridge, "datapath_type=netdev",
               "fail_mode=secure", "protocols=OpenFlow13"]
        for i, name in oports.items():
            cmd += ["--", "add-port", self.bridge, name, "--", "set", "interface", name, f"ofport_request={i}"]
        sh(*cmd)
        # kumoflow: the switch process with a passive listener for ovs-ofctl.
        self.switch = SwitchProcess(self.workdir, kports, dpid=0xD1FF)
        self.switch.start()
        self.sides = {
            "kumoflow": Side("kumoflow", self.switch.target, kports, {i: p + "f" for i, p in kports.items()}),
            "ovs": Side("ovs", self.bridge, oports, {i: p + "f" for i, p in oports.items()}),
        }
        for side in self.sides.values():
            wait_until(lambda side=side: self._ports_live(side), 20, what=f"{side.name} ports live")
            side.taps = {i: Tap(name) for i, name in side.far.items()}
        return self

    def _ports_live(self, side: Side) -> bool:
        desc = parse_ports_desc(side.ofctl("dump-ports-desc"))
        return all(desc.get(str(i), {}).get("state") == "LIVE" for i in side.ports)

    def stop(self) -> None:
        for side in self.sides.values():
            for tap in side.taps.values():
                tap.close()
        if self.switch is not None:
            self.switch.stop()
        sh("ovs-vsctl", "--if-exists", "del-br", self.bridge, check=False)
        for name in self.links:
            delete_link(name)

    def __enter__(self) -> "Harness":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- rule sets -------------------------------------------------------------------------------
    def install(self, flows: list[str], groups: list[str] = ()) -> None:
        """Replace both switches' flows and groups with these (plus the harness's rules)."""
        flow_file = self.workdir / "flows.txt"
        group_file = self.workdir / "groups.txt"
        flow_file.write_text("\n".join([*harness_rules(self.nports), *flows]) + "\n")
        group_file.write_text("\n".join(groups) + "\n")
        for side in self.sides.values():
            side.ofctl("del-flows")
            side.ofctl("del-groups")
            if groups:
                side.ofctl("add-groups", str(group_file))
            side.ofctl("add-flows", str(flow_file))
            # The LOCAL guard only where there is a LOCAL port (Open vSwitch's bridge interface).
            if side.name == "ovs":
                side.ofctl("add-flow", LOCAL_GUARD)
                ovs_settle()
        for side in self.sides.values():
            for tap in side.taps.values():
                tap.drain()

    # -- frames ---------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _until_marker(self, sides: list[Side], seq: int, out: dict, resend=None) -> None:
        """Read every far end of `sides` until marker `seq` has come out of all;
        frames that are not markers go to out[side][port]. `resend(names)`, when given, sends
        the marker again into the sides still waiting for it after each second without it:
        Open vSwitch can drop a frame while it reconfigures (another bridge coming or going
        on a shared machine)."""
        waiting = {(s.name, i): s.taps[i] for s in sides for i in s.taps if i not in self.down[s.name]}
        deadline = time.monotonic() + MARKER_TIMEOUT
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"marker {seq:#x} did not come out of {sorted(waiting)} "
                                     f"within {MARKER_TIMEOUT}s")
            ready, _, _ = select.select(list(waiting.values()), [], [], min(left, 1.0))
            if not ready and resend is not None:
                resend({name for name, _ in waiting})
            for tap in ready:
                key = next(k for k, t in waiting.items() if t is tap)
                while (frame := tap.recv()) is not None:
                    if is_marker(frame):
                        if marker_seq(frame) == seq:
                            del waiting[key]
                            break
                        continue                  # an earlier marker's copy
                    out[key[0]][key[1]].append(frame)

    def exchange(self, in_port: int, frame: bytes, sides: tuple[str, ...] = ("kumoflow", "ovs"),
                 ) -> dict[str, dict[int, list[bytes]]]:
        """Send `frame` into port `in_port` of each side; what came out of every port."""
        chosen = [self.sides[s] for s in sides]
        out = {s.name: {i: [] for i in s.taps} for s in chosen}
        for s in chosen:
            s.taps[in_port].send(frame)
        for _ in range(2):
            seq = self._next_seq()
            m = marker(seq)

            def send_marker(names, m=m) -> None:
                for s in chosen:
                    if s.name in names:
                        s.taps[in_port].send(m)
            send_marker({s.name for s in chosen})
            self._until_marker(chosen, seq, out, send_marker)
        return out

    # -- counters -------------------------------------------------------------------------------
    def flow_counters(self, side: Side) -> dict[tuple, tuple[int, int]]:
        """(table, priority, match, actions) -> (packets, bytes), harness rules left out."""
        out = {}
        for f in parse_flows(side.ofctl("dump-flows")):
            if int(f.get("cookie", "0"), 16) == HARNESS_COOKIE:
                continue
            key = (int(f.get("table", "0")), int(f.get("priority", "32768")), f["match"], f["actions"])
            out[key] = (int(f["n_packets"]), int(f["n_bytes"]))
        return out

    def group_counters(self, side: Side) -> dict[int, dict]:
        """group id -> {'packets', 'bytes', 'buckets': [(packets, bytes), ...]}."""
        out = {}
        for line in side.ofctl("dump-group-stats").splitlines():
            m = re.search(r"group_id=(\d+)", line)
            if not m:
                continue
            g = {"packets": int(re.search(r"packet_count=(\d+)", line).group(1)),
                 "bytes": int(re.search(r"byte_count=(\d+)", line).group(1)),
                 "buckets": [(int(p), int(b)) for p, b in
                             re.findall(r"bucket\d+:packet_count=(\d+),byte_count=(\d+)", line)]}
            out[int(m.group(1))] = g
        return out

    def ovs_trace(self, in_port: int, frame: bytes) -> str:
        """What Open vSwitch's current tables do with `frame` (ofproto/trace)
        and the datapath flows it holds for the bridge's ports: the first
        thing to read when its output disagrees."""
        trace = sh("ovs-appctl", "ofproto/trace", self.bridge, f"in_port={in_port}", frame.hex(), check=False)
        names = self.sides["ovs"].ports.values()
        dp = sh("ovs-appctl", "dpctl/dump-flows", "-m", check=False).stdout.splitlines()
        flows = [line for line in dp if any(f"in_port({name})" in line for name in names)]
        return ("ofproto/trace:\n" + (trace.stdout or trace.stderr)[-3000:]
                + "\ndatapath flows of the bridge's ports:\n" + "\n".join(flows[-20:]))

    def set_port(self, side: str, port: int, up: bool) -> None:
        """Take the link of `port` down (or up) from the far end: the switch
        sees its interface lose (or regain) the carrier. Markers are not
        awaited on a port that is down."""
        set_link(self.sides[side].far[port], up)
        (self.down[side].discard if up else self.down[side].add)(port)


# --- frames (hypothesis) ----------------------------------------------------------------------

def _frames_module(max_tags: int):
    """The hypothesis strategies, built on first use (scapy imports slowly)."""
    from hypothesis import strategies as st
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption
    from scapy.layers.inet6 import (ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS,
                                    ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6, IPv6ExtHdrHopByHop)
    from scapy.layers.l2 import ARP
    from scapy.packet import Raw

    def mac_text(b: bytes) -> str:
        return ":".join(f"{x:02x}" for x in b)

    unicast = st.binary(min_size=6, max_size=6).map(lambda b: bytes([b[0] & 0xFC | 0x02]) + b[1:]).filter(
        lambda b: b != MARKER_SRC_BYTES)
    macs = st.one_of(st.sampled_from([bytes.fromhex(m) for m in (
        "020000000001", "020000000002", "020000000003", "ffffffffffff", "01005e0000fb", "333300000001",
        "0180c200000e")]), unicast)
    ipv4 = st.one_of(st.sampled_from(["10.0.0.1", "10.0.0.2", "10.1.1.1", "192.168.1.10", "0.0.0.0",
                                      "255.255.255.255", "224.0.0.251"]),
                     st.integers(0, 2**32 - 1).map(lambda v: ".".join(str(v >> s & 255) for s in (24, 16, 8, 0))))
    ipv6 = st.one_of(st.sampled_from(["fd00::1", "fd00::2", "fe80::1", "ff02::1", "2001:db8::5", "::"]),
                     st.binary(min_size=16, max_size=16).map(
                         lambda b: ":".join(b[i:i + 2].hex() for i in range(0, 16, 2))))
    l4port = st.one_of(st.sampled_from([80, 443, 53, 67, 68, 8080, 0, 65535]), st.integers(0, 65535))
    ttl = st.one_of(st.sampled_from([0, 1, 2, 64, 255]), st.integers(0, 255))
    payload = st.binary(max_size=48)

    tcp = st.builds(lambda s, d, f, q, p: TCP(sport=s, dport=d, flags=f, seq=q) / Raw(p),
                    l4port, l4port, st.integers(0, 0x1FF), st.integers(0, 2**32 - 1), payload)
    udp = st.builds(lambda s, d, zero, p: UDP(sport=s, dport=d, chksum=0 if zero else None) / Raw(p),
                    l4port, l4port, st.booleans(), payload)
    icmp = st.builds(lambda t, c, p: ICMP(type=t, code=c) / Raw(p),
                     st.one_of(st.sampled_from([0, 3, 8, 11]), st.integers(0, 255)), st.integers(0, 255), payload)
    other4 = st.builds(lambda proto, p: (proto, Raw(p)), st.sampled_from([47, 132, 89, 253]), payload)

    @st.composite
    def ipv4_packet(draw):
        l4 = draw(st.one_of(tcp, udp, icmp, other4))
        proto = None
        if isinstance(l4, tuple):
            proto, l4 = l4
        # Non-first fragments only, and only of protocols without a checksum over a pseudo-header:
        # Open vSwitch hides the transport fields of a first fragment, and takes the start of a later
        # one for a TCP/UDP/ICMP header when it sets fields (test_switch_vs_ovs.py, departures
        # fragment-transport-fields and set-field-into-later-fragment).
        frag = draw(st.sampled_from(["none"] * 3 + ["later"])) if proto is not None else "none"
        options = draw(st.sampled_from([b""] * 6 + [b"\x01\x01\x01\x00", b"\x94\x04\x00\x00"]))
        later = frag == "later"
        ip = IP(src=draw(ipv4), dst=draw(ipv4), ttl=draw(ttl), tos=draw(st.integers(0, 255)),
                id=draw(st.integers(0, 65535)), flags=draw(st.sampled_from([0, "DF"] + ["MF"] * later)),
                frag=draw(st.integers(1, 100)) if later else 0)
        if options:
            ip.options = [IPOption(options)]
        if proto is not None:
            ip.proto = proto
        return bytes(ip / l4), 0x0800

    icmp6 = st.one_of(
        st.builds(lambda i, s, p: ICMPv6EchoRequest(id=i, seq=s, data=p), st.integers(0, 65535),
                  st.integers(0, 65535), payload),
        st.builds(lambda i, p: ICMPv6EchoReply(id=i, data=p), st.integers(0, 65535), payload),
        st.builds(lambda t, m: ICMPv6ND_NS(tgt=t) / ICMPv6NDOptSrcLLAddr(lladdr=mac_text(m)), ipv6, macs),
        st.builds(lambda t, m: ICMPv6ND_NA(tgt=t, R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=mac_text(m)),
                  ipv6, macs),
    )

    @st.composite
    def ipv6_packet(draw):
        l4 = draw(st.one_of(tcp, udp, icmp6))
        hdr = IPv6(src=draw(ipv6), dst=draw(ipv6), hlim=draw(ttl), tc=draw(st.integers(0, 255)),
                   fl=draw(st.integers(0, 0xFFFFF)))
        if isinstance(l4, (ICMPv6ND_NS, ICMPv6ND_NA)):
            hdr.hlim = 255
        if draw(st.integers(0, 9)) == 0:
            return bytes(hdr / IPv6ExtHdrHopByHop() / l4), 0x86DD
        return bytes(hdr / l4), 0x86DD

    @st.composite
    def arp_packet(draw):
        return bytes(ARP(op=draw(st.sampled_from([1, 2, 1, 2, 3])), hwsrc=mac_text(draw(macs)), psrc=draw(ipv4),
                         hwdst=mac_text(draw(macs)), pdst=draw(ipv4))), 0x0806

    other = st.builds(lambda t, p: (p, t), st.sampled_from([0x88CC, 0x1234, 0x8809, 0x0842]), payload)

    tag = st.tuples(st.sampled_from([0x8100, 0x8100, 0x88A8]),
                    st.one_of(st.sampled_from([10, 20, 100, 0, 4095]), st.integers(0, 4095)),
                    st.integers(0, 7), st.sampled_from([0, 0, 0, 1]))

    @st.composite
    def frame(draw):
        dst, src = draw(macs), draw(macs.filter(lambda m: m != MARKER_SRC_BYTES))
        body, ethertype = draw(st.one_of(ipv4_packet(), ipv6_packet(), arp_packet(), other))
        tags = draw(st.one_of(st.just([]), st.just([]), *(st.lists(tag, min_size=n, max_size=n)
                                                          for n in range(1, max_tags + 1))))
        head = dst + src
        for tpid, vid, pcp, dei in tags:
            head += struct.pack("!HH", tpid, pcp << 13 | dei << 12 | vid)
        return head + struct.pack("!H", ethertype) + body

    return frame()


_FRAMES: dict = {}


def frames(max_tags: int = 1):
    """Hypothesis strategy: Ethernet frames (bytes) with zero, one or two
    VLAN tags (802.1Q / 802.1ad, random PCP and DEI) and IPv4 (TCP, UDP
    with and without a checksum, ICMP, other protocols, options, non-first
    fragments of the other protocols),
    IPv6 (TCP, UDP, ICMPv6 echo and neighbour discovery, a hop-by-hop
    header), ARP or another ethertype; addresses and ports from small pools
    (so that rules match) or anything."""
    if max_tags not in _FRAMES:
        _FRAMES[max_tags] = _frames_module(max_tags)
    return _FRAMES[max_tags]
