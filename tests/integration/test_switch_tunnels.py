"""kumoflow's tunnel ports against real peers, across a real underlay (root).

Two emulated hypervisors joined by one underlay veth. Hypervisor A is a
network namespace holding its end of the underlay (address A) and a
kumoflow switch (``kumoflow switch --port 1=VM --tunnel 10=KIND:A:B``) with
a VM namespace behind it. Hypervisor B is, in turn:

* a namespace with the Linux kernel's VXLAN device and a bridge (VXLAN);
* Open vSwitch (userspace) with a ``type=vxlan`` port (VXLAN);
* Open vSwitch with a ``type=gre`` port, key VSID<<8 (NVGRE);

each with a VM namespace behind it. kumoflow's flows (ovs-ofctl) match the
VM port and the tunnel id, and set the tunnel id on the way out (the VNI;
for NVGRE the GRE key, VSID << 8, as Open vSwitch's flows have it). The VMs
ping each other and move 1 MB over TCP; tcpdump on the underlay shows the
frames crossing in both directions with the right VNI/VSID, flags and
outer checksums (kumoflow's outer UDP checksum 0, the kernel's a correct
one).
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import time
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import GRE, Ether
from scapy.layers.vxlan import VXLAN
from scapy.utils import rdpcap

from kumoflow.packet.checksum import csum_finish, csum_part
from test_switch_support import SwitchProcess, _stop_pid, sh, tcp_transfer, wait_until

pytestmark = [pytest.mark.root]

VNI = 5001 + (1 << 23)           # a VNI above 8 million
VM_A, VM_B = "172.31.0.1", "172.31.0.2"
TCP_SIZE = 1 << 20


def _offloads_off(dev: str, ns: str | None = None) -> None:
    pre = ["ip", "netns", "exec", ns] if ns else []
    sh(*pre, "ethtool", "-K", dev, "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off", check=False)


def _mac(dev: str, ns: str | None = None) -> str:
    pre = ["ip", "-n", ns] if ns else ["ip"]
    out = sh(*pre, "-br", "link", "show", dev).stdout.split()
    return out[2]


class Lab:
    """Namespaces, links, bridges and processes of one test, all undone by `close`."""

    def __init__(self, unique_name, workdir: Path) -> None:
        self.name = unique_name
        self.workdir = workdir
        self.undo: list = []
        a, b = random.randrange(16, 250), random.randrange(1, 250)
        self.ul_a, self.ul_b = f"10.{a}.{b}.1", f"10.{a}.{b}.2"

    def netns(self, prefix: str) -> str:
        ns = self.name(prefix)
        sh("ip", "netns", "add", ns)
        self.undo.append(lambda: sh("ip", "netns", "del", ns, check=False))
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def veth(self, prefix: str) -> tuple[str, str]:
        a, b = self.name(prefix), self.name(prefix)
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        self.undo.append(lambda: sh("ip", "link", "del", a, check=False))
        for dev in (a, b):
            Path(f"/proc/sys/net/ipv6/conf/{dev}/disable_ipv6").write_text("1")
        return a, b

    def vm(self, host_ns: str | None, ip: str) -> tuple[str, str]:
        """A VM namespace on a veth (MTU 1450: VXLAN over 1500); returns (its namespace, the hypervisor-side end)."""
        ns = self.netns("vm")
        inside, outside = self.veth("v")
        sh("ip", "link", "set", inside, "netns", ns)
        sh("ip", "-n", ns, "link", "set", inside, "name", "eth0")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "mtu", "1450", "up")
        _offloads_off("eth0", ns)
        if host_ns:
            sh("ip", "link", "set", outside, "netns", host_ns)
        pre = ["ip", "-n", host_ns] if host_ns else ["ip"]
        sh(*pre, "link", "set", outside, "up")
        _offloads_off(outside, host_ns)
        return ns, outside

    def close(self) -> None:
        for fn in reversed(self.undo):
            try:
                fn()
            except Exception as exc:          # keep undoing the rest
                print(f"cleanup: {exc}")
        self.undo.clear()


@pytest.fixture
def lab(unique_name, tmp_path):
    lab = Lab(unique_name, tmp_path)
    try:
        yield lab
    finally:
        lab.close()


def kumoflow_hypervisor(lab: Lab, kind: str, ul_end: str) -> tuple[str, str, SwitchProcess]:
    """Hypervisor A: a namespace with the underlay end (address A), a VM and a
    kumoflow switch with a tunnel port 10 to B. Returns (hv ns, vm ns, switch)."""
    hv = lab.netns("hv")
    sh("ip", "link", "set", ul_end, "netns", hv)
    sh("ip", "-n", hv, "addr", "add", f"{lab.ul_a}/24", "dev", ul_end)
    sh("ip", "-n", hv, "link", "set", ul_end, "up")
    _offloads_off(ul_end, hv)
    vm, port = lab.vm(hv, VM_A)
    switch = SwitchProcess(lab.workdir, {1: port}, dpid=0xA, extra=["--tunnel", f"10={kind}:{lab.ul_a}:{lab.ul_b}"])
    switch.argv = ["ip", "netns", "exec", hv, *switch.argv]
    switch.start()
    lab.undo.append(switch.stop)
    flows = lab.workdir / "flows.txt"
    tid = VNI if kind == "vxlan" else VNI << 8               # NVGRE: the GRE key, VSID << 8, as in OVS
    flows.write_text(f"table=0,priority=10,in_port=1,actions=set_field:{tid}->tun_id,output:10\n"
                     f"table=0,priority=10,in_port=10,tun_id={tid},actions=output:1\n")
    sh("ip", "netns", "exec", hv, "ovs-ofctl", "-O", "OpenFlow13", "add-flows", switch.target, str(flows))
    return hv, vm, switch


def ports_desc(hv: str, switch: SwitchProcess) -> str:
    return sh("ip", "netns", "exec", hv, "ovs-ofctl", "-O", "OpenFlow13", "dump-ports-desc", switch.target).stdout


def port_stats(hv: str, switch: SwitchProcess) -> str:
    return sh("ip", "netns", "exec", hv, "ovs-ofctl", "-O", "OpenFlow13", "dump-ports", switch.target, "10").stdout


@contextlib.contextmanager
def capture(hv: str, dev: str, path: Path):
    """tcpdump on hypervisor A's underlay end while the block runs."""
    proc = subprocess.Popen(["ip", "netns", "exec", hv, "tcpdump", "-i", dev, "-n", "-U", "-s", "200", "-w", str(path),
                             "udp port 4789 or ip proto 47"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)                          # (tcpdump has no readiness signal but its first line on stderr)
        yield
        time.sleep(0.3)
    finally:
        _stop_pid(proc)


def ping(vm: str, dst: str) -> None:
    proc = sh("ip", "netns", "exec", vm, "ping", "-c", "3", "-i", "0.2", "-W", "2", dst, check=False, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def traffic(lab: Lab, vm_a: str, vm_b: str) -> None:
    # the first ping may wait for ARP and neighbours along the way
    wait_until(lambda: sh("ip", "netns", "exec", vm_a, "ping", "-c", "1", "-W", "1", VM_B,
                          check=False).returncode == 0, 20, what="first ping across the tunnel")
    ping(vm_a, VM_B)
    ping(vm_b, VM_A)
    tcp_transfer(vm_a, vm_b, VM_B, size=TCP_SIZE)


def udp_checksum_ok(pkt) -> bool:
    ip, udp = pkt[IP], pkt[UDP]
    raw = bytes(udp)[:udp.len]
    pseudo = csum_part(bytes(ip)[12:20]) + 17 + udp.len
    return csum_finish(pseudo + csum_part(raw)) == 0


def check_vxlan_capture(path: Path, lab: Lab, peer_csum: str) -> None:
    """Both directions crossed the underlay as VXLAN with the VNI; kumoflow's
    outer UDP checksum is 0; the peer's is 0 or (peer_csum == 'kernel') right."""
    pkts = [p for p in rdpcap(str(path)) if UDP in p and p[UDP].dport == 4789]
    sent = [p for p in pkts if p[IP].src == lab.ul_a]
    got = [p for p in pkts if p[IP].src == lab.ul_b]
    assert len(sent) >= 10 and len(got) >= 10, (len(sent), len(got))
    for p in sent + got:
        v = VXLAN(bytes(p[UDP].payload))
        assert v.flags == 0x08 and v.vni == VNI, v.summary()
        assert Ether in v
    assert all(p[UDP].chksum == 0 for p in sent)
    assert all(p[IP].flags.DF == 0 for p in sent)
    if peer_csum == "kernel":
        assert all(p[UDP].chksum != 0 and udp_checksum_ok(p) for p in got)
    else:
        assert all(p[UDP].chksum == 0 for p in got)


def check_kumoflow_counters(hv: str, switch: SwitchProcess) -> None:
    desc = ports_desc(hv, switch)
    assert "vxlan-" in desc or "nvgre-" in desc
    stats = port_stats(hv, switch)
    rx = int(stats.split("rx pkts=")[1].split(",")[0])
    tx = int(stats.split("tx pkts=")[1].split(",")[0])
    assert rx >= 10 and tx >= 10, stats


def test_vxlan_kumoflow_to_linux_kernel(lab, unique_name):
    ul_a, ul_b = lab.veth("u")
    hv, vm_a, switch = kumoflow_hypervisor(lab, "vxlan", ul_a)
    name = f"vxlan-{bytes(map(int, lab.ul_b.split('.'))).hex()}"
    assert name in ports_desc(hv, switch)
    # Hypervisor B: the kernel's VXLAN device and a bridge in a namespace.
    hv_b = lab.netns("hk")
    sh("ip", "link", "set", ul_b, "netns", hv_b)
    sh("ip", "-n", hv_b, "addr", "add", f"{lab.ul_b}/24", "dev", ul_b)
    sh("ip", "-n", hv_b, "link", "set", ul_b, "up")
    _offloads_off(ul_b, hv_b)                  # else partial outer/inner checksums cross the veth
    sh("ip", "-n", hv_b, "link", "add", "vx", "type", "vxlan", "id", str(VNI), "dstport", "4789", "local", lab.ul_b,
       "remote", lab.ul_a, "dev", ul_b, "nolearning")
    sh("ip", "-n", hv_b, "link", "add", "bridge0", "type", "bridge")
    vm_b, port_b = lab.vm(hv_b, VM_B)
    for dev in ("vx", port_b):
        sh("ip", "-n", hv_b, "link", "set", dev, "master", "bridge0", "up")
    sh("ip", "-n", hv_b, "link", "set", "bridge0", "up")
    pcap = lab.workdir / "underlay.pcap"
    with capture(hv, ul_a, pcap):
        traffic(lab, vm_a, vm_b)
    check_vxlan_capture(pcap, lab, "kernel")
    check_kumoflow_counters(hv, switch)


def ovs_hypervisor(lab: Lab, ul_b: str, hv_a: str, ul_a: str, tunnel: list[str]) -> str:
    """Hypervisor B in Open vSwitch (one ovs-vswitchd for all, notes/overlays.md):
    an underlay bridge holding the veth, with address B on its LOCAL port, and
    a VM bridge with the VM's port and the tunnel port. Returns the VM namespace."""
    br_u, br_v = lab.name("bu"), lab.name("bv")
    for br in (br_u, br_v):
        lab.undo.append(lambda br=br: sh("ovs-vsctl", "--if-exists", "del-br", br, check=False))
    sh("ovs-vsctl", "add-br", br_u, "--", "set", "bridge", br_u, "datapath_type=netdev", "fail_mode=secure",
       "--", "add-port", br_u, ul_b, "--", "set", "interface", ul_b, "ofport_request=1")
    _offloads_off(ul_b)
    sh("ip", "link", "set", ul_b, "up")
    sh("ip", "addr", "add", f"{lab.ul_b}/24", "dev", br_u, "noprefixroute")
    sh("ip", "link", "set", br_u, "up")
    sh("ovs-ofctl", "add-flow", br_u, "in_port=1,actions=LOCAL")
    sh("ovs-ofctl", "add-flow", br_u, "in_port=LOCAL,actions=output:1")
    sh("ovs-appctl", "ovs/route/add", f"{lab.ul_a}/32", br_u)
    lab.undo.append(lambda: sh("ovs-appctl", "ovs/route/del", f"{lab.ul_a}/32", check=False))
    sh("ovs-appctl", "tnl/neigh/set", br_u, lab.ul_a, _mac(ul_a, hv_a))
    # hypervisor A's kernel resolves B to the underlay bridge's MAC without asking
    sh("ip", "-n", hv_a, "neigh", "replace", lab.ul_b, "lladdr", _mac(br_u), "dev", ul_a, "nud", "permanent")
    vm_b, port_b = lab.vm(None, VM_B)
    sh("ovs-vsctl", "add-br", br_v, "--", "set", "bridge", br_v, "datapath_type=netdev", "fail_mode=secure",
       "--", "add-port", br_v, port_b, "--", "set", "interface", port_b, "ofport_request=1",
       "--", "add-port", br_v, br_v + "t", "--", "set", "interface", br_v + "t", "ofport_request=2", *tunnel)
    sh("ovs-ofctl", "add-flow", br_v, "in_port=1,actions=output:2")
    sh("ovs-ofctl", "add-flow", br_v, "in_port=2,actions=output:1")
    return vm_b


def test_vxlan_kumoflow_to_open_vswitch(lab):
    ul_a, ul_b = lab.veth("u")
    hv, vm_a, switch = kumoflow_hypervisor(lab, "vxlan", ul_a)
    vm_b = ovs_hypervisor(lab, ul_b, hv, ul_a, ["type=vxlan", f"options:remote_ip={lab.ul_a}", f"options:key={VNI}"])
    pcap = lab.workdir / "underlay.pcap"
    with capture(hv, ul_a, pcap):
        traffic(lab, vm_a, vm_b)
    check_vxlan_capture(pcap, lab, "ovs")
    check_kumoflow_counters(hv, switch)


def test_nvgre_kumoflow_to_open_vswitch_gre(lab):
    ul_a, ul_b = lab.veth("u")
    hv, vm_a, switch = kumoflow_hypervisor(lab, "nvgre", ul_a)
    assert f"nvgre-{bytes(map(int, lab.ul_b.split('.'))).hex()}" in ports_desc(hv, switch)
    vm_b = ovs_hypervisor(lab, ul_b, hv, ul_a, ["type=gre", f"options:remote_ip={lab.ul_a}",
                                                f"options:key={VNI << 8}"])
    pcap = lab.workdir / "underlay.pcap"
    with capture(hv, ul_a, pcap):
        traffic(lab, vm_a, vm_b)
    pkts = [p for p in rdpcap(str(pcap)) if IP in p and p[IP].proto == 47]
    sent = [p for p in pkts if p[IP].src == lab.ul_a]
    got = [p for p in pkts if p[IP].src == lab.ul_b]
    assert len(sent) >= 10 and len(got) >= 10, (len(sent), len(got))
    for p in sent + got:
        g = p[GRE]
        assert (g.chksum_present, g.routing_present, g.key_present, g.seqnum_present, g.version) == (0, 0, 1, 0, 0)
        assert g.proto == 0x6558 and g.key == VNI << 8, g.summary()
    check_kumoflow_counters(hv, switch)
