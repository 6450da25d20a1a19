"""Hypervisors and overlays in the emulator: VMs ping across tunnels that really cross the underlay.

Each test brings up two hypervisors with one VM each under a fresh
topology name, puts static flows on the Open vSwitch hypervisors (VM port
-> set_field tunnel_id, tunnel port; tunnel port + tunnel_id -> VM port),
pings VM to VM, and reads a capture taken on the underlay (in its
namespace: the port of the first hypervisor's NIC) to see the tunnel
packets between the two VTEPs with the right VNI/VSID. Underlay subnets are
picked at random in 198.18.0.0/15 so leftovers of a crashed run do not
collide. Afterwards nothing is left: namespaces, links, bridges, and Open
vSwitch's routes (checked with ip, ovs-vsctl and ovs-appctl directly).
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import textwrap

import pytest

from kumoflow.net import Network, state
from kumoflow.net.plan import interface_prefix
from kumoflow.net.topology import parse_topology

pytestmark = [pytest.mark.root, pytest.mark.ovs]

VNI = 5001


@pytest.fixture
def topo_name(unique_name):
    name = unique_name("t")
    yield name
    try:
        Network.teardown(name)
    except Exception as exc:
        print(f"teardown of {name}: {exc}", file=sys.stderr)
    state.remove(name)


def topology(name: str, kinds: tuple[str, str], tunnel: str, routed: bool):
    n = random.randrange(256)
    a, b = f"198.18.{n}", (f"198.19.{n}" if routed else f"198.18.{n}")
    if routed:
        underlay = f"""\
            underlay:
              sites:
                - {{name: east, subnet: {a}.0/24}}
                - {{name: west, subnet: {b}.0/24}}"""
    else:
        underlay = f"underlay: {{subnet: {a}.0/24}}"
    vni = f", vni: {VNI}"
    hvs = []
    for i, (kind, net) in enumerate(zip(kinds, (a, b), strict=True), 1):
        site = f", site: {('east', 'west')[i - 1]}" if routed else ""
        hvs.append(f"  - {{name: hv{i}, kind: {kind}, vtep: {net}.{10 + i}{site}{vni if kind == 'kernel' else ''}}}")
    text = textwrap.dedent(underlay) + "\nhypervisors:\n" + "\n".join(hvs) + textwrap.dedent(f"""
        overlays: [{{name: o, type: {tunnel}}}]
        hosts:
          - {{name: vm1, mac: "02:00:00:00:00:01", ip: 10.50.0.1/24}}
          - {{name: vm2, mac: "02:00:00:00:00:02", ip: 10.50.0.2/24}}
        links:
          - {{src: vm1, dst: hv1, dst_port: 1}}
          - {{src: vm2, dst: hv2, dst_port: 1}}
        """)
    return parse_topology(text, default_name=name)


def static_flows(net: Network) -> None:
    """On each Open vSwitch hypervisor: its VM's port to every tunnel port and back, with the VNI/VSID."""
    for hv in net.plan.hypervisors:
        if hv.kind != "ovs":
            continue
        flows = []
        for t in hv.tunnels:
            key = VNI if t.type == "vxlan" else VNI << 8  # NVGRE: the key is VSID<<8 | FlowID
            flows += [f"in_port=1,actions=set_field:{key}->tun_id,output:{t.number}",
                      f"in_port={t.number},tun_id={key},actions=output:1"]
        proc = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "add-flows", hv.bridge, "-"],
                              input="\n".join(flows) + "\n", capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


class Capture:
    """tcpdump in the underlay's namespace on one interface, written to a pcap file."""

    def __init__(self, netns: str, ifname: str, path, bpf: str):
        self.path = path
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "tcpdump", "-U", "--immediate-mode", "-n", "-Z", "root", "-i", ifname, "-w", str(path), bpf],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()  # "listening on ..." once it captures
        assert "listening" in line, line

    def stop(self) -> str:
        """Stop capturing; the packets decoded, one per line (outer and inner headers)."""
        self.proc.terminate()
        self.proc.wait(timeout=10)
        return subprocess.run(["tcpdump", "-nn", "-e", "-v", "-r", str(self.path)],
                              capture_output=True, text=True).stdout


def leftovers(name: str) -> list[str]:
    """What exists of topology ``name``, asked of ip, ovs-vsctl and ovs-appctl directly."""
    prefix = interface_prefix(name) + "-"
    out = [f"netns {ns}" for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
           .stdout.split() if ns.startswith(f"{name}-")]
    out += [f"link {line}" for line in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True)
            .stdout.splitlines() if f" {prefix}" in line]
    out += [f"bridge {b}" for b in subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True)
            .stdout.split() if b.startswith(prefix)]
    routes = subprocess.run(["ovs-appctl", "ovs/route/show"], capture_output=True, text=True).stdout
    out += [f"route {line}" for line in routes.splitlines() if f"dev {prefix}" in line]
    return out


def run_pair(name, tmp_path, kinds, tunnel, routed):
    net = Network(topology(name, kinds, tunnel, routed), controllers=[])
    net.up()
    try:
        static_flows(net)
        hv1, hv2 = net.plan.hypervisors
        bpf = "udp port 4789" if tunnel == "vxlan" else "ip proto 47"
        capture = Capture(net.plan.underlay.netns, hv1.peer, tmp_path / "underlay.pcap", bpf)
        try:
            result = net.host("vm1").run(["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.50.0.2"])
        finally:
            seen = capture.stop()
        assert result.returncode == 0, result.stdout + result.stderr
        # the tunnel packets crossed the underlay, both ways, between the two VTEPs, with the VNI/VSID
        if tunnel == "vxlan":
            header = rf"\.\d+ > {{}}\.4789: VXLAN, flags \[I\] \(0x08\), vni {VNI}\n"
        else:
            header = rf" > {{}}: GREv0, Flags \[key present\], key=0x{VNI << 8:x}, proto TEB \(0x6558\)"
        for src, dst in ((hv1, hv2), (hv2, hv1)):
            pattern = re.escape(str(src.vtep.ip)) + header.format(re.escape(str(dst.vtep.ip)))
            assert re.search(pattern, seen), (pattern, seen)
        assert "10.50.0.1 > 10.50.0.2: ICMP echo request" in seen, seen  # inside the tunnel
        assert "10.50.0.2 > 10.50.0.1: ICMP echo reply" in seen, seen
        # the VMs were told the overlay's MTU
        mtu = net.host("vm1").run(["cat", "/sys/class/net/eth0/mtu"]).stdout.strip()
        assert mtu == str(1500 - (50 if tunnel == "vxlan" else 42))
        return seen
    finally:
        report = net.down()
        assert report.clean, report.leftovers
        assert leftovers(name) == []


def test_ovs_to_ovs_vxlan_on_a_switched_underlay(topo_name, tmp_path):
    seen = run_pair(topo_name, tmp_path, ("ovs", "ovs"), "vxlan", routed=False)
    # from NIC to NIC: never to a bridge's own MAC, which Open vSwitch would short-circuit (notes/overlays.md)
    outer = re.findall(r"^\S+ (\S+) > (\S+), ethertype IPv4 [^\n]*\n\s+[\d.]+ > [\d.]+\.4789: VXLAN", seen, re.M)
    assert outer and all(a.split(":")[3] == b.split(":")[3] == "00" for a, b in outer), outer


def test_ovs_to_ovs_nvgre_across_a_routed_underlay(topo_name, tmp_path):
    run_pair(topo_name, tmp_path, ("ovs", "ovs"), "nvgre", routed=True)


def test_ovs_to_kernel_vxlan_across_a_routed_underlay(topo_name, tmp_path):
    run_pair(topo_name, tmp_path, ("ovs", "kernel"), "vxlan", routed=True)
