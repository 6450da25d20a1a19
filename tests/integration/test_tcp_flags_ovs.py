"""tcp_flags, Open vSwitch's ONF experimenter OXM, against Open vSwitch itself.

Over real OpenFlow connections (kumoflow's codec on one end): flows
encoded by kumoflow installed into an Open vSwitch bridge (its management
socket) and read back by ``ovs-ofctl dump-flows``; flows ``ovs-ofctl``
installs read back and decoded by kumoflow; the same bad flow-mods refused
with the same errors by Open vSwitch and by a ``kumoflow switch`` process;
``ovs-ofctl`` driving the kumoflow switch; and TCP segments built with
scapy (SYN, SYN-ACK, FIN, RST, ...) sent into both switches by packet-out
to OFPP_TABLE, counted by the same flows alike.
"""

from __future__ import annotations

import os
import socket
import struct

import pytest
from scapy.compat import raw
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from kumoflow import ofp
from kumoflow.ofp.table_features import ExperimenterOxmId
from kumoflow.ofp.text import format_flow, format_match, parse_tcp_flags

from test_switch_support import SwitchProcess, ofctl, parse_flows, sh, wait_until

pytestmark = [pytest.mark.root, pytest.mark.ovs]

ONF = 0x4F4E4600
TCP4, TCP6 = {"eth_type": 0x0800, "ip_proto": 6}, {"eth_type": 0x86DD, "ip_proto": 6}
#: (priority, match, how ovs-ofctl prints the match); every flow drops. The fields in the order
#: Open vSwitch sends them back, so that the bytes compare too.
FLOWS = [
    (300, {**TCP4, "tcp_flags": (0x004, 0x004)}, "tcp,tcp_flags=+rst"),
    (200, {**TCP4, "tcp_flags": (0x001, 0x001)}, "tcp,tcp_flags=+fin"),
    (100, {**TCP4, "tcp_flags": (0x002, 0x012)}, "tcp,tcp_flags=+syn-ack"),
    (90, {**TCP4, "tcp_dst": 80, "tcp_flags": 0x018}, "tcp,tp_dst=80,tcp_flags=psh|ack"),
    (80, {**TCP6, "tcp_flags": (0x004, 0x006)}, "tcp6,tcp_flags=-syn+rst"),
    (70, {**TCP6, "tcp_flags": (0x000, 0x010)}, "tcp6,tcp_flags=-ack"),
    (1, {}, ""),
]


class Peer:
    """A controller's end of an OpenFlow 1.3 connection: a unix socket path
    (an Open vSwitch bridge's management socket) or (host, port)."""

    def __init__(self, address) -> None:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(address)
        self.sock.sendall(ofp.Hello().pack())
        assert isinstance(self._read()[0], ofp.Hello)

    def _read(self) -> tuple[ofp.Message, bytes]:
        head = self._exactly(8)
        data = head + self._exactly(struct.unpack_from("!H", head, 2)[0] - 8)
        return ofp.parse(data), data

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "the switch closed the connection"
            data += chunk
        return data

    def ask(self, *msgs: ofp.Message) -> list[tuple[ofp.Message, bytes]]:
        """Send msgs and a barrier; (message, bytes) of every reply before the barrier's."""
        self.sock.sendall(b"".join(m.pack() for m in msgs) + ofp.BarrierRequest(xid=0xBA).pack())
        replies = []
        while True:
            msg, data = self._read()
            if isinstance(msg, ofp.BarrierReply) and msg.xid == 0xBA:
                return replies
            if isinstance(msg, ofp.EchoRequest):
                self.sock.sendall(ofp.EchoReply(xid=msg.xid, data=msg.data).pack())
            elif not isinstance(msg, ofp.PortStatus):
                replies.append((msg, data))

    def errors(self, *msgs: ofp.Message) -> list[tuple[int, int]]:
        return [(m.type, m.code) for m, _ in self.ask(*msgs) if isinstance(m, ofp.ErrorMsg)]

    def flows(self) -> list[tuple[ofp.FlowStats, bytes]]:
        """Every flow's stats entry, and the bytes of the replies."""
        out = []
        for msg, data in self.ask(ofp.FlowStatsRequest()):
            assert isinstance(msg, ofp.FlowStatsReply), msg
            out += [(entry, data) for entry in msg.body]
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def bridge(unique_name):
    """(name, Peer): an Open vSwitch bridge (userspace datapath, OpenFlow 1.3) and
    a connection to its management socket; the bridge is deleted whatever happens."""
    name = unique_name("tf")
    sh("ovs-vsctl", "add-br", name, "--", "set", "bridge", name, "datapath_type=netdev", "fail_mode=secure",
       "protocols=OpenFlow13")
    peer = None
    try:
        mgmt = f"/var/run/openvswitch/{name}.mgmt"
        wait_until(lambda: os.path.exists(mgmt), 10, what=f"{mgmt}")
        peer = Peer(mgmt)
        yield name, peer
    finally:
        if peer is not None:
            peer.close()
        sh("ovs-vsctl", "--if-exists", "del-br", name, check=False)


@pytest.fixture
def kumoflow_switch(tmp_path):
    """(ovs-ofctl target, Peer): a `kumoflow switch` process with no ports, its passive listener."""
    switch = SwitchProcess(tmp_path, {}).start()
    peer = None
    try:
        peer = Peer(("127.0.0.1", switch.listen_port))
        yield switch.target, peer
    finally:
        if peer is not None:
            peer.close()
        switch.stop()


def _install(peer: Peer) -> None:
    mods = [ofp.FlowMod(priority=p, match=ofp.Match(m)) for p, m, _ in FLOWS]
    assert peer.errors(*mods) == []


def test_kumoflow_encoded_flows_read_back_by_ovs_ofctl(bridge):
    name, peer = bridge
    _install(peer)
    lines = {line.split("n_bytes=0, ")[-1] for line in ofctl(name, "dump-flows").splitlines() if "actions=" in line}
    assert lines == {f"priority={p}{',' if text else ''}{text} actions=drop" for p, _, text in FLOWS}
    # ovs-ofctl's line is kumoflow's (ofp.text) for the same flow
    assert lines == {format_flow(ofp.Match(m), [], p) for p, m, _ in FLOWS}
    # and Open vSwitch sends back what kumoflow sent, byte for byte
    got = {e.priority: (e.match, data) for e, data in peer.flows()}
    assert {p: m for p, (m, _) in got.items()} == {p: ofp.Match(m) for p, m, _ in FLOWS}
    for p, m, _ in FLOWS:
        assert ofp.Match(m).pack() in got[p][1], p
    assert b"\xff\xff\x55\x08\x4f\x4e\x46\x00\x00\x01\x00\x01" in got[200][1]         # +fin, as specified


def test_flows_ovs_ofctl_installs_decode_in_kumoflow(bridge):
    name, peer = bridge
    forms = ["+fin", "fin|rst", "+syn-ack", "0x012/0x0ff", "+[800]-[400]", "0", "-fin-syn-rst"]
    for i, form in enumerate(forms):
        ofctl(name, "add-flow", f"priority={10 + i},tcp,tcp_flags={form},actions=drop")
    got = {e.priority: e.match for e, _ in peer.flows()}
    assert got == {10 + i: ofp.Match(TCP4, tcp_flags=parse_tcp_flags(f)) for i, f in enumerate(forms)}
    dumped = {int(f["priority"]): f["match"] for f in parse_flows(ofctl(name, "dump-flows"))}
    assert dumped == {p: format_match(m) for p, m in got.items()}


#: bad flow-mods, and the error Open vSwitch answers (kumoflow must answer the same)
BAD = [
    ("no ip_proto", {"eth_type": 0x0800, "tcp_flags": 1}, (ofp.OFPET.BAD_MATCH, ofp.OFPBMC.BAD_PREREQ)),
    ("udp", {"eth_type": 0x0800, "ip_proto": 17, "tcp_flags": 1}, (ofp.OFPET.BAD_MATCH, ofp.OFPBMC.BAD_PREREQ)),
    ("no eth_type", {"tcp_flags": (1, 1)}, (ofp.OFPET.BAD_MATCH, ofp.OFPBMC.BAD_PREREQ)),
    ("13 bits", {**TCP4, "tcp_flags": 0x1000}, (ofp.OFPET.BAD_MATCH, ofp.OFPBMC.BAD_VALUE)),
    ("13 bits masked", {**TCP4, "tcp_flags": (0x1000, 0x1000)}, (ofp.OFPET.BAD_MATCH, ofp.OFPBMC.BAD_VALUE)),
    ("outside the mask", {**TCP4, "tcp_flags": (5, 3)}, (ofp.OFPET.BAD_MATCH, ofp.OFPBMC.BAD_WILDCARDS)),
    ("another experimenter", {**TCP4, (0xFFFF, 42, 0x2320): bytes.fromhex("ffff5406" "00002320" "0001")},
     (ofp.OFPET.BAD_MATCH, ofp.OFPBMC.BAD_FIELD)),
]


def test_the_same_errors_as_open_vswitch(bridge, kumoflow_switch):
    (_, ovs), (_, kumo) = bridge, kumoflow_switch
    for what, match, error in BAD:
        fm = ofp.FlowMod(priority=5, match=ofp.Match(match))
        assert ovs.errors(fm) == [error], what
        assert kumo.errors(fm) == [error], what
    # a 16-bit mask is taken, its upper 4 bits ignored: the flow is exact
    fm = ofp.FlowMod(priority=5, match=ofp.Match(TCP4, tcp_flags=(0x011, 0xFFFF)))
    assert ovs.errors(fm) == kumo.errors(fm) == []
    # set-field of tcp_flags (read-only): both refuse it, Open vSwitch with BAD_SET_ARGUMENT, kumoflow
    # with BAD_SET_TYPE, the code the specification names for a field the switch cannot set
    fm = ofp.FlowMod(priority=6, match=ofp.Match(TCP4), instructions=[ofp.ApplyActions([ofp.SetField("tcp_flags", 1)])])
    assert ovs.errors(fm) == [(ofp.OFPET.BAD_ACTION, ofp.OFPBAC.BAD_SET_ARGUMENT)]
    assert kumo.errors(fm) == [(ofp.OFPET.BAD_ACTION, ofp.OFPBAC.BAD_SET_TYPE)]


def test_ovs_ofctl_drives_the_kumoflow_switch(bridge, kumoflow_switch):
    """ovs-ofctl's own FLOW_MODs into kumoflow, shown by ovs-ofctl as Open
    vSwitch shows them; tcp_flags in the table features as Open vSwitch lists it."""
    (name, ovs), (target, _) = bridge, kumoflow_switch
    for flow in ["priority=300,tcp,tcp_flags=+fin,actions=drop", "priority=100,tcp6,tcp_flags=+rst-syn,actions=drop",
                 "priority=10,tcp,tp_dst=80,tcp_flags=fin|ack,actions=drop"]:
        ofctl(name, "add-flow", flow)
        ofctl(target, "add-flow", flow)

    def shown(target):
        return sorted((f["priority"], f["match"], f["actions"]) for f in parse_flows(ofctl(target, "dump-flows")))
    assert shown(target) == shown(name)
    assert "tcp_flags" in ofctl(target, "dump-table-features").split("arbitrary mask:")[1].splitlines()[0]
    table0 = ovs.ask(ofp.TableFeaturesRequest())[0][0].body[0]
    assert table0.table_id == 0
    props = {p.type: p.oxm_ids for p in table0.properties if hasattr(p, "oxm_ids")}
    assert ExperimenterOxmId(0xFFFF5508, ONF) in props[ofp.OFPTFPT.MATCH]
    assert ExperimenterOxmId(0xFFFF5406, ONF) in props[ofp.OFPTFPT.WILDCARDS]


#: segments (scapy flags) -> the priority of the flow that takes them, IPv4 and IPv6
SEGMENTS = {"S": (100, 70), "SA": (1, 1), "A": (1, 1), "PA": (90, 1), "FA": (200, 1), "FPA": (200, 1),
            "R": (300, 80), "RA": (300, 80), "FRA": (300, 80), "F": (200, 70), "SEC": (100, 70), "": (1, 70)}


def _segment(flags: str, v6: bool) -> bytes:
    l3 = IPv6(src="fe80::1", dst="fe80::2") if v6 else IP(src="10.0.0.1", dst="10.0.0.2")
    return raw(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / l3
               / TCP(sport=40000, dport=80, flags=flags, seq=7) / b"segment")


def test_segments_take_the_same_flows_in_both_switches(bridge, kumoflow_switch):
    (_, ovs), (_, kumo) = bridge, kumoflow_switch
    expected: dict[int, int] = {}
    outs = []
    for flags, priorities in SEGMENTS.items():
        for v6, priority in ((False, priorities[0]), (True, priorities[1])):
            outs.append(ofp.PacketOut(in_port=ofp.OFPP.CONTROLLER, actions=[ofp.Output(ofp.OFPP.TABLE)],
                                      data=_segment(flags, v6)))
            expected[priority] = expected.get(priority, 0) + 1
    for peer in (ovs, kumo):
        _install(peer)
        assert peer.errors(*outs) == []
    for peer in (ovs, kumo):
        counts = {e.priority: e.packet_count for e, _ in peer.flows()}
        assert {p: n for p, n in counts.items() if n} == expected, "ovs" if peer is ovs else "kumoflow"
