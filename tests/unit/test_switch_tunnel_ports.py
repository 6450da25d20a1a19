"""Tunnel ports of the switch: the VXLAN and NVGRE headers against scapy's
dissectors, the port-name helper, --tunnel parsing, and an Underlay on
loopback (no root: a VXLAN UDP socket on a random 127/8 address) fed good,
hostile and truncated datagrams."""

from __future__ import annotations

import ipaddress
import random
import socket

import pytest
from scapy.layers.inet import IP
from scapy.layers.l2 import GRE, Ether
from scapy.layers.vxlan import VXLAN

from kumoflow import ofp
from kumoflow.switch import encap
from kumoflow.switch.cli import parse_tunnels
from kumoflow.switch.datapath import Datapath
from kumoflow.switch.port import PS_LINK_DOWN, MemoryPort
from kumoflow.switch.tunnelport import TunnelPort, Underlay, underlays_for
from kumoflow.tunnels import parse_port_name, port_name

from test_switch_helpers import udp

INNER = udp()


# --- headers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("vni", [0, 1, 5001, 0xABCDEF, (1 << 24) - 1])
def test_vxlan_header_as_scapy_reads_it(vni):
    pkt = VXLAN(encap.tunnel_header("vxlan", vni) + INNER)
    assert pkt.flags == 0x08 and pkt.vni == vni and pkt.reserved1 == 0 and pkt.reserved2 == 0
    assert bytes(pkt[Ether]) == INNER
    # and what scapy builds, decapsulated
    assert encap.vxlan_decap(bytes(VXLAN(vni=vni, flags=0x08) / Ether(INNER))) == (vni, INNER)


@pytest.mark.parametrize("vsid", [0, 5001, 0xABCDEF, (1 << 24) - 1])
def test_nvgre_header_as_scapy_reads_it(vsid):
    """tunnel_id is the whole GRE key, VSID << 8 | FlowID, as in Open vSwitch."""
    pkt = GRE(encap.tunnel_header("nvgre", vsid << 8) + INNER)
    assert (pkt.chksum_present, pkt.routing_present, pkt.key_present, pkt.seqnum_present) == (0, 0, 1, 0)
    assert pkt.version == 0 and pkt.proto == 0x6558
    assert pkt.key == vsid << 8 and pkt.key >> 8 == vsid
    assert bytes(pkt.payload) == INNER
    assert encap.nvgre_decap(bytes(GRE(key_present=1, key=vsid << 8 | 0x7F, proto=0x6558) / Ether(INNER))) == \
        (vsid << 8 | 0x7F, INNER)                        # a FlowID arrives in the low 8 bits


def test_nvgre_decap_inside_an_ipv4_packet():
    packet = bytes(IP(src="192.0.2.7", dst="192.0.2.1") / GRE(key_present=1, key=77 << 8, proto=0x6558)
                   / Ether(INNER)) + b"trailer"
    source, start, end = encap.ipv4_payload(packet)
    assert source == socket.inet_aton("192.0.2.7")
    assert encap.nvgre_decap(packet, start, end) == (77 << 8, INNER)


def test_tunnel_ids_that_do_not_fit_have_no_header():
    assert encap.tunnel_header("vxlan", 1 << 24) is None
    assert encap.tunnel_header("nvgre", (1 << 32) - 1) is not None
    assert encap.tunnel_header("nvgre", 1 << 32) is None


@pytest.mark.parametrize("payload", [
    b"",
    encap.vxlan_header(5)[:7],
    encap.vxlan_header(5) + INNER[:13],                  # inner frame shorter than Ethernet
    b"\x00" * 8 + INNER,                                 # no I flag
])
def test_bad_vxlan_is_refused(payload):
    with pytest.raises(encap.BadHeader):
        encap.vxlan_decap(payload)


@pytest.mark.parametrize("gre", [
    GRE(proto=0x6558),                                   # no key
    GRE(key_present=1, key=5 << 8, proto=0x0800),        # not Ethernet
    GRE(key_present=1, key=5 << 8, chksum_present=1, proto=0x6558),
    GRE(key_present=1, key=5 << 8, seqnum_present=1, sequence_number=3, proto=0x6558),
    GRE(key_present=1, key=5 << 8, version=1, proto=0x6558),
])
def test_bad_nvgre_is_refused(gre):
    with pytest.raises(encap.BadHeader):
        encap.nvgre_decap(bytes(gre / Ether(INNER)))


@pytest.mark.parametrize("packet", [
    b"", b"\x45" * 19, bytes(IP(dst="1.2.3.4", proto=47))[:-1] + b"",
    bytes(IP(dst="1.2.3.4", proto=47, flags="MF") / (b"x" * 40)),
    bytes(IP(dst="1.2.3.4", proto=47, len=500) / (b"x" * 40)),
    bytes(IP(dst="1.2.3.4", proto=47, ihl=3) / (b"x" * 40)),
    b"\x60" + b"\x00" * 39,
])
def test_hostile_ipv4_headers_are_refused(packet):
    with pytest.raises(encap.BadHeader):
        encap.ipv4_payload(packet)


# --- names ------------------------------------------------------------------------------------

def test_port_names_as_neutron_makes_them():
    assert port_name("vxlan", "10.0.0.2") == "vxlan-0a000002"
    assert port_name("nvgre", ipaddress.IPv4Address("192.168.1.254")) == "nvgre-c0a801fe"
    assert parse_port_name("vxlan-0a000002") == ("vxlan", ipaddress.IPv4Address("10.0.0.2"))
    assert parse_port_name("nvgre-c0a801fe") == ("nvgre", ipaddress.IPv4Address("192.168.1.254"))
    # the emulator's Open vSwitch ports, vxlan-<remote>-<local> cut to 15 characters by OpenFlow
    assert parse_port_name("vxlan-c0a8140c-") == ("vxlan", ipaddress.IPv4Address("192.168.20.12"))
    for other in ("eth0", "vxlan-0a00000", "gre-0a000002", "vxlan-0a00000g", "vxlan_0a000002", "vxlan-"):
        assert parse_port_name(other) is None
    with pytest.raises(ValueError):
        port_name("gre", "10.0.0.2")
    with pytest.raises(ValueError):
        port_name("vxlan", "10.0.0.300")


def test_tunnel_port_describes_itself_by_its_remote():
    port = TunnelPort(10, "vxlan", "192.0.2.1", "192.0.2.2")
    desc = port.desc()
    assert desc.name == "vxlan-c0000202"
    assert desc.state & ofp.OFPPS.LINK_DOWN and not desc.state & ofp.OFPPS.LIVE   # no socket yet


# --- --tunnel ---------------------------------------------------------------------------------

def test_parse_tunnels():
    assert parse_tunnels(["10=vxlan:192.0.2.1:192.0.2.2", "0x11=nvgre:192.0.2.1:192.0.2.2"], {1: "eth0"}) == {
        10: ("vxlan", "192.0.2.1", "192.0.2.2"), 17: ("nvgre", "192.0.2.1", "192.0.2.2")}


@pytest.mark.parametrize("specs, ports, message", [
    (["vxlan:1.1.1.1:2.2.2.2"], {}, "expected N=KIND:LOCAL_IP:REMOTE_IP"),
    (["x=vxlan:1.1.1.1:2.2.2.2"], {}, "'x' is not a port number"),
    (["0=vxlan:1.1.1.1:2.2.2.2"], {}, "port number must be"),
    (["1=vxlan:1.1.1.1:2.2.2.2"], {1: "eth0"}, "port 1 is given twice"),
    (["2=vxlan:1.1.1.1:2.2.2.2", "2=nvgre:1.1.1.1:2.2.2.3"], {}, "port 2 is given twice"),
    (["2=gre:1.1.1.1:2.2.2.2"], {}, "tunnel kind 'gre': expected vxlan or nvgre"),
    (["2=vxlan:1.1.1.1"], {}, "expected N=KIND:LOCAL_IP:REMOTE_IP"),
    (["2=vxlan:1.1.1:2.2.2.2"], {}, "local address '1.1.1' is not an IPv4 address"),
    (["2=vxlan:1.1.1.1:fd00::1"], {}, "expected N=KIND:LOCAL_IP:REMOTE_IP"),
    (["2=vxlan:1.1.1.1:239.1.1.1"], {}, "remote address 239.1.1.1 must be a unicast address"),
    (["2=vxlan:0.0.0.0:2.2.2.2"], {}, "local address 0.0.0.0 must be a unicast address"),
    (["2=vxlan:1.1.1.1:1.1.1.1"], {}, "the remote endpoint is the local address"),
    (["2=vxlan:1.1.1.1:2.2.2.2", "3=vxlan:1.1.1.9:2.2.2.2"], {}, "ports 2 and 3 are both vxlan tunnels to 2.2.2.2"),
])
def test_parse_tunnels_errors(specs, ports, message):
    with pytest.raises(ValueError) as info:
        parse_tunnels(specs, ports)
    assert message in str(info.value)


def test_cli_refuses_a_bad_tunnel_with_exit_2(capsys, caplog):
    from kumoflow.cli import main

    assert main(["switch", "--tunnel", "5=vxlan:10.0.0.1:10.0.0.999"]) == 2
    assert "remote address '10.0.0.999' is not an IPv4 address" in caplog.text


# --- an underlay on loopback --------------------------------------------------------------------

def _loopback_pair():
    """Two random 127/8 addresses: ours and the remote's."""
    base = [127, random.randrange(1, 255), random.randrange(1, 255)]
    return ".".join(map(str, base + [1])), ".".join(map(str, base + [2])), ".".join(map(str, base + [3]))


@pytest.fixture
def vxlan_rig():
    local, remote, stranger = _loopback_pair()
    dp = Datapath(1)
    events = []
    dp.on_async = events.append
    vm = MemoryPort(1, "vm")
    dp.add_port(vm)
    tun = TunnelPort(10, "vxlan", local, remote)
    dp.add_port(tun)
    [underlay] = underlays_for([tun])
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        peer.bind((remote, encap.VXLAN_PORT))
        other.bind((stranger, 0))
        underlay.open()
    except OSError as exc:
        peer.close()
        other.close()
        pytest.skip(f"no loopback UDP port 4789 here: {exc}")
    peer.settimeout(5)
    dp.handle(ofp.FlowMod(match=ofp.Match(in_port=10), instructions=[ofp.ApplyActions([ofp.Output(1)])]))
    dp.handle(ofp.FlowMod(match=ofp.Match(in_port=1), instructions=[ofp.ApplyActions(
        [ofp.SetField("tunnel_id", 5001), ofp.Output(10)])]))
    try:
        yield dp, vm, tun, underlay, peer, other, local, events
    finally:
        underlay.close()
        peer.close()
        other.close()


def _deliver(dp, underlay):
    total = 0
    for _ in range(50):
        runs = underlay.read_runs()
        for port, tid, frames in runs:
            dp.receive_batch(port.port_no, frames, tid)
            total += len(frames)
        if not runs and total:
            break
        if not runs:
            import time
            time.sleep(0.02)
    return total


def test_underlay_encapsulates_and_decapsulates(vxlan_rig):
    dp, vm, tun, underlay, peer, other, local, events = vxlan_rig
    assert tun.live and any(isinstance(e, ofp.PortStatus) and e.desc.port_no == 10 and
                            e.desc.state & ofp.OFPPS.LIVE for e in events)
    dp.receive(1, INNER)
    data, addr = peer.recvfrom(65536)
    assert addr == (local, encap.VXLAN_PORT)
    assert VXLAN(data).vni == 5001 and bytes(VXLAN(data)[Ether]) == INNER
    assert tun.counters.tx_packets == 1 and tun.counters.tx_bytes == len(INNER)

    peer.sendto(bytes(VXLAN(vni=7, flags=0x08) / Ether(INNER)), (local, encap.VXLAN_PORT))
    peer.sendto(bytes(VXLAN(vni=7, flags=0x08) / Ether(INNER)), (local, encap.VXLAN_PORT))
    assert _deliver(dp, underlay) == 2
    assert vm.take() == [INNER, INNER]
    assert tun.counters.rx_packets == 2


def test_underlay_drops_hostile_and_unknown_without_harm(vxlan_rig):
    dp, vm, tun, underlay, peer, other, local, events = vxlan_rig
    to = (local, encap.VXLAN_PORT)
    for junk in (b"", b"\x08", b"\x00" * 8 + INNER, encap.vxlan_header(3) + b"short", b"\xff" * 3000):
        peer.sendto(junk, to)
    other.sendto(encap.vxlan_header(3) + INNER, to)            # a remote no port reaches
    peer.sendto(encap.vxlan_header(9) + INNER, to)             # and one good one after all that
    assert _deliver(dp, underlay) == 2
    # the 0xff one is VXLAN all the same: the I bit is set, reserved bits are ignored (RFC 7348 5)
    assert vm.take() == [b"\xff" * (3000 - 8), INNER]
    assert underlay.unknown_remote == 1
    assert tun.counters.rx_errors == 4 and tun.counters.rx_packets == 2


def test_tunnel_id_too_large_is_not_sent(vxlan_rig):
    dp, vm, tun, underlay, peer, other, local, events = vxlan_rig
    tun.send_tunnel(INNER, 1 << 24)
    assert tun.counters.tx_errors == 1 and tun.counters.tx_packets == 0


def test_two_tunnels_of_a_kind_to_one_remote_are_refused():
    a = TunnelPort(1, "vxlan", "192.0.2.1", "192.0.2.9")
    b = TunnelPort(2, "vxlan", "192.0.2.1", "192.0.2.9")
    with pytest.raises(ValueError, match="two vxlan tunnel ports"):
        underlays_for([a, b])


def test_underlay_that_cannot_bind_says_why():
    from kumoflow.switch.linuxport import PortError

    u = Underlay("vxlan", "192.0.2.123")                      # TEST-NET-1: not on any interface here
    with pytest.raises(PortError, match="cannot bind.*is the address configured"):
        u.open()
    assert u.sock is None


def test_a_closed_tunnel_port_is_down_and_drops():
    port = TunnelPort(3, "vxlan", "192.0.2.1", "192.0.2.2")
    assert port.state & PS_LINK_DOWN
    port.send_tunnel(INNER, 1)
    assert port.counters.tx_dropped == 1
