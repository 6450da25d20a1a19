"""The tenants app on the emulator, end to end: a real controller process
(`--app tenants --app router --api`), networks, subnets, ports and a router
made through the Neutron API, two Open vSwitch hypervisors on two sites of
a routed underlay, VMs in namespaces bound to their API ports.

    site east (hv1, ovs)                         site west (hv2, ovs)
    red1   10.0.0.1  red    vxlan   <-------->   red2  10.0.0.2
    blue1  10.0.0.1  blue   nvgre   <-------->   blue2 10.0.0.2
    big1   10.9.0.1  big    vxlan VNI 16,000,001 big2  10.9.0.2
    green1 10.1.1.5  green1 vxlan  [router]      green2 10.1.2.5 (green2)
                                                 dhc   (red, by DHCP)
                                                 mover 10.0.0.9 (red; moves to hv1)

Red and blue have the same addresses on the same two hypervisors; what
crosses the underlay is checked with tcpdump in the underlay's namespace.
One topology serves every test (module fixture); each test leaves it as it
found it. Underlay subnets are picked at random in 198.18.0.0/15.
"""

from __future__ import annotations

import random
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from kumoflow.net import Network
from kumoflow.net.binding import bind_ports

from controller_process import ControllerProcess

pytestmark = [pytest.mark.root, pytest.mark.ovs]

ADMIN = "tenants-test-admin-token"
RED_VNI, BLUE_VSID, BIG_VNI = 5001, 5002, 16_000_001

#: VM -> (network, MAC, address, hypervisor, its port there)
VMS = {
    "red1": ("red", "fa:16:3e:00:01:01", "10.0.0.1", "hv1", 1),
    "red2": ("red", "fa:16:3e:00:01:02", "10.0.0.2", "hv2", 1),
    "blue1": ("blue", "fa:16:3e:00:02:01", "10.0.0.1", "hv1", 2),
    "blue2": ("blue", "fa:16:3e:00:02:02", "10.0.0.2", "hv2", 2),
    "big1": ("big", "fa:16:3e:00:03:01", "10.9.0.1", "hv1", 3),
    "big2": ("big", "fa:16:3e:00:03:02", "10.9.0.2", "hv2", 3),
    "green1": ("green1", "fa:16:3e:00:04:01", "10.1.1.5", "hv1", 4),
    "green2": ("green2", "fa:16:3e:00:04:02", "10.1.2.5", "hv2", 4),
    "dhc": ("red", "fa:16:3e:00:01:03", "10.0.0.3", "hv2", 5),
    "mover": ("red", "fa:16:3e:00:01:09", "10.0.0.9", "hv2", 6),
}
#: network -> (project, type, segmentation id, subnet, gateway)
NETWORKS = {
    "red": ("red", "vxlan", RED_VNI, "10.0.0.0/24", "10.0.0.254"),
    "blue": ("blue", "nvgre", BLUE_VSID, "10.0.0.0/24", "10.0.0.254"),
    "big": ("red", "vxlan", BIG_VNI, "10.9.0.0/24", "10.9.0.254"),
    "green1": ("green", "vxlan", None, "10.1.1.0/24", "10.1.1.1"),
    "green2": ("green", "vxlan", None, "10.1.2.0/24", "10.1.2.1"),
}
#: the port the mover's link takes on hv1
MOVED_PORT = 9


def topology(name: str) -> str:
    n = random.randrange(256)
    hosts, links = [], []
    for vm, (net, mac, ip, hv, port) in VMS.items():
        gateway = f", gateway: {NETWORKS[net][4]}" if net.startswith("green") else ""
        hosts.append(f'  - {{name: {vm}, mac: "{mac}", ip: {ip}/24{gateway}, port: {vm}}}')
        links.append(f"  - {{src: {vm}, dst: {hv}, dst_port: {port}}}")
    return f"""\
name: {name}
underlay:
  sites:
    - {{name: east, subnet: 198.18.{n}.0/24}}
    - {{name: west, subnet: 198.19.{n}.0/24}}
hypervisors:
  - {{name: hv1, kind: ovs, vtep: 198.18.{n}.11, site: east, dpid: 0x{n:02x}0001}}
  - {{name: hv2, kind: ovs, vtep: 198.19.{n}.12, site: west, dpid: 0x{n:02x}0002}}
overlays:
  - {{name: vx, type: vxlan}}
  - {{name: gre, type: nvgre}}
hosts:
{chr(10).join(hosts)}
links:
{chr(10).join(links)}
"""


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.3, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout}s")
        time.sleep(interval)


def created(response: httpx.Response, key: str) -> dict:
    assert response.status_code == 201, response.text
    return response.json()[key]


def make_resources(api: httpx.Client) -> dict:
    """Networks, subnets, the green router and every VM's port; name -> id."""
    ids = {}
    for name, (project, kind, segment, cidr, gateway) in NETWORKS.items():
        body = {"name": name, "project_id": project, "provider:network_type": kind}
        if segment is not None:
            body["provider:segmentation_id"] = segment
        ids[name] = created(api.post("/v2.0/networks", json={"network": body}), "network")["id"]
        subnet = created(api.post("/v2.0/subnets", json={"subnet": {
            "name": name, "project_id": project, "network_id": ids[name], "cidr": cidr, "ip_version": 4,
            "gateway_ip": gateway, "enable_dhcp": True}}), "subnet")
        ids["subnet-" + name] = subnet["id"]
    router = created(api.post("/v2.0/routers", json={"router": {"name": "green", "project_id": "green"}}), "router")
    for net in ("green1", "green2"):
        done = api.put(f"/v2.0/routers/{router['id']}/add_router_interface", json={"subnet_id": ids["subnet-" + net]})
        assert done.status_code == 200, done.text
    for vm, (net, mac, ip, _, _) in VMS.items():
        ids[vm] = created(api.post("/v2.0/ports", json={"port": {
            "name": vm, "project_id": NETWORKS[net][0], "network_id": ids[net], "mac_address": mac,
            "fixed_ips": [{"subnet_id": ids["subnet-" + net], "ip_address": ip}]}}), "port")["id"]
    return ids


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tenants")
    controller = ControllerProcess(apps=("tenants", "router"), log=tmp / "controller.log",
                                   args=("--api", "127.0.0.1:0", "--admin-token", ADMIN))
    controller.start()
    net = None
    try:
        url = controller.status["api"]
        api = httpx.Client(base_url=url, headers={"X-Auth-Token": ADMIN}, timeout=60)
        ids = make_resources(api)
        topo = tmp / "topo.yaml"
        topo.write_text(topology("tn" + secrets.token_hex(2)))
        net = Network.from_file(topo, controllers=[controller.target])
        net.up()
        net.wait_connected(60)
        for line in bind_ports(net.plan, url, ADMIN):
            print(line, file=sys.stderr)
        net.api, net.ids, net.tmp = api, ids, tmp
        yield net
    finally:
        _tear_down(net, controller, tmp)


def ping(net, src: str, dst: str, *args: str) -> subprocess.CompletedProcess:
    return net[src].run(["ping", "-n", "-c", "1", "-W", "1", *args, dst], timeout=30)


def reaches(net, src: str, dst: str) -> bool:
    return ping(net, src, dst).returncode == 0


def hypervisor(net, name: str):
    return next(h for h in net.plan.hypervisors if h.name == name)


class Capture:
    """tcpdump in a namespace on one interface, written to a pcap file; `stop` decodes it."""

    def __init__(self, netns: str, ifname: str, path: Path, bpf: str = ""):
        self.path = path
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "tcpdump", "-U", "--immediate-mode", "-n", "-Z", "root", "-i", ifname,
             "-w", str(path), *bpf.split()], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()       # "listening on ..." once it captures
        assert "listening" in line, line

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        return subprocess.run(["tcpdump", "-nn", "-e", "-v", "-r", str(self.path)],
                              capture_output=True, text=True).stdout


def echoes_received(net, host: str) -> int:
    """ICMP echo requests the host's kernel answered (InEchos of its /proc/net/snmp)."""
    lines = [line.split() for line in net[host].run(["cat", "/proc/net/snmp"]).stdout.splitlines()
             if line.startswith("Icmp:")]
    return int(lines[1][lines[0].index("InEchos")])


#: a burst of broadcast ARP requests from a VM's eth0 (a raw socket: no arping needed)
ARP_BURST = """\
import socket, sys
mac, ip, target, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
raw = bytes.fromhex(mac.replace(":", ""))
frame = (b"\\xff" * 6 + raw + b"\\x08\\x06" + bytes.fromhex("0001080006040001") + raw + socket.inet_aton(ip)
         + bytes(6) + socket.inet_aton(target))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for _ in range(count):
    s.send(frame)
"""


def arp_burst(net, vm: str, target: str, count: int) -> None:
    _, mac, ip, _, _ = VMS[vm]
    done = net[vm].run([sys.executable, "-c", ARP_BURST, mac, ip, target, str(count)], timeout=30)
    assert done.returncode == 0, done.stderr


# --- isolation -------------------------------------------------------------------------------


def test_two_tenants_with_the_same_subnet_reach_only_their_own(cloud):
    net = cloud
    wait_until(lambda: reaches(net, "red1", "10.0.0.2"), 60, what="red1 -> red2")
    wait_until(lambda: reaches(net, "blue1", "10.0.0.2"), 60, what="blue1 -> blue2")
    for src, mine, theirs in (("red1", "red2", "blue2"), ("blue1", "blue2", "red2")):
        before = echoes_received(net, mine), echoes_received(net, theirs)
        assert ping(net, src, "10.0.0.2", "-c", "3", "-i", "0.2").returncode == 0
        assert (echoes_received(net, mine), echoes_received(net, theirs)) == (before[0] + 3, before[1])
    # the neighbour each learnt is its own tenant's VM
    for src, mac in (("red1", VMS["red2"][1]), ("blue1", VMS["blue2"][1])):
        neigh = net[src].run(["ip", "neigh", "show", "10.0.0.2"]).stdout
        assert mac in neigh, neigh


def test_tcp_transfer_stays_in_its_tenant(cloud, tmp_path):
    net = cloud
    payload = secrets.token_hex(40_000)          # 80 kB: many full-size segments through the tunnel
    servers = {}
    try:
        for vm in ("red2", "blue2"):
            root = tmp_path / vm
            root.mkdir()
            (root / "data").write_text(vm + payload)
            servers[vm] = net[vm].popen(["python3", "-u", "-m", "http.server", "8000", "--bind", "10.0.0.2",
                                         "--directory", str(root)])
        for vm in servers:
            wait_until(lambda: net[vm].run(["ss", "-Hltn", "sport = :8000"]).stdout.strip(), 15,
                       what=f"{vm} listening")
        for client, server in (("red1", "red2"), ("blue1", "blue2")):
            got = net[client].run(["curl", "-sS", "--max-time", "10", "http://10.0.0.2:8000/data"], timeout=30)
            assert got.returncode == 0, got.stderr
            assert got.stdout == server + payload
    finally:
        for proc in servers.values():
            proc.terminate()
            proc.wait(10)


def test_broadcast_flood_in_one_tenant_is_not_seen_in_the_other(cloud):
    net = cloud
    wait_until(lambda: reaches(net, "red1", "10.0.0.2"), 60, what="red1 -> red2")
    captures = {vm: Capture(net[vm].netns, "eth0", net.tmp / f"flood-{vm}.pcap", "arp or icmp")
                for vm in ("red2", "blue1", "blue2")}
    try:
        # ARP requests for an address nobody has: broadcast, flooded to every red port
        arp_burst(net, "red1", "10.0.0.77", 30)
        net["red1"].run(["ping", "-b", "-c", "10", "-i", "0.05", "-W", "1", "10.0.0.255"], timeout=30)
    finally:
        seen = {vm: c.stop() for vm, c in captures.items()}
    assert seen["red2"].count("Request who-has 10.0.0.77") >= 20, seen["red2"]
    assert "10.0.0.255" in seen["red2"], seen["red2"]
    for vm in ("blue1", "blue2"):
        assert "10.0.0.77" not in seen[vm] and "10.0.0.255" not in seen[vm], seen[vm]


def test_frames_cross_the_underlay_with_their_network_vni(cloud):
    net = cloud
    hv1 = hypervisor(net, "hv1")
    hv2 = hypervisor(net, "hv2")
    for pair in (("red1", "10.0.0.2"), ("blue1", "10.0.0.2"), ("big1", "10.9.0.2")):
        wait_until(lambda: reaches(net, *pair), 60, what=f"{pair[0]} -> {pair[1]}")
    capture = Capture(net.plan.underlay.netns, hv1.peer, net.tmp / "underlay.pcap", "udp port 4789 or ip proto 47")
    try:
        for src, dst in (("red1", "10.0.0.2"), ("blue1", "10.0.0.2"), ("big1", "10.9.0.2")):
            assert ping(net, src, dst, "-c", "2", "-i", "0.2").returncode == 0
    finally:
        seen = capture.stop()
    a, b = re.escape(str(hv1.vtep.ip)), re.escape(str(hv2.vtep.ip))
    for vni in (RED_VNI, BIG_VNI):
        for src, dst in ((a, b), (b, a)):
            assert re.search(rf"{src}\.\d+ > {dst}\.4789: VXLAN, flags \[I\] \(0x08\), vni {vni}\n", seen), seen
    for src, dst in ((a, b), (b, a)):
        assert re.search(rf"{src} > {dst}: GREv0, Flags \[key present\], key=0x{BLUE_VSID << 8:x}, "
                         rf"proto TEB \(0x6558\)", seen), seen
    # inside: red's and blue's echoes each in its own tunnel, and big's
    blocks = re.split(r"\n(?=\d\d:\d\d:\d\d\.)", seen)    # one block a captured packet
    red = [blk for blk in blocks if f"vni {RED_VNI}\n" in blk]
    blue = [blk for blk in blocks if f"key=0x{BLUE_VSID << 8:x}" in blk]
    big = [blk for blk in blocks if f"vni {BIG_VNI}\n" in blk]
    assert any("10.0.0.1 > 10.0.0.2: ICMP echo request" in blk for blk in red), red
    assert any("10.0.0.2 > 10.0.0.1: ICMP echo reply" in blk for blk in blue), blue
    assert any("10.9.0.1 > 10.9.0.2: ICMP echo request" in blk for blk in big), big


# --- DHCP ------------------------------------------------------------------------------------

#: what dhclient asks for (Debian's default list, trimmed to what is checked here)
DHCLIENT_CONF = """\
request subnet-mask, broadcast-address, routers, domain-name-servers, interface-mtu;
timeout 60;
"""


def test_a_vm_running_dhclient_gets_its_address_gateway_and_mtu_1450(cloud, tmp_path):
    net = cloud
    vm = net["dhc"]
    dhclient = shutil.which("dhclient")
    assert dhclient, "dhclient not found (isc-dhcp-client: run `make setup`)"
    # under `ip netns exec` dhclient-script writes this file, not the machine's resolv.conf;
    # `unshare --uts` keeps it from renaming the machine
    etc = Path("/etc/netns") / vm.netns
    etc.mkdir(parents=True)
    (etc / "resolv.conf").write_text("# test_tenants_emulator's namespace\n")
    machine_resolv = Path("/etc/resolv.conf").read_bytes()
    vm.run(["ip", "addr", "flush", "dev", "eth0"], check=True)
    vm.run(["ip", "link", "set", "eth0", "mtu", "1500"], check=True)
    (tmp_path / "dhclient.conf").write_text(DHCLIENT_CONF)
    proc = subprocess.Popen(
        ["ip", "netns", "exec", vm.netns, "unshare", "--uts", "--", dhclient, "-4", "-d", "-1", "-v",
         "-cf", str(tmp_path / "dhclient.conf"), "-lf", str(tmp_path / "leases"),
         "-pf", str(tmp_path / "dhclient.pid"), "eth0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def configured() -> bool:
            assert proc.poll() is None, f"dhclient exited: {proc.stdout.read()}"
            routes = vm.run(["ip", "-4", "route", "show", "default"]).stdout
            return "via 10.0.0.254" in routes
        wait_until(configured, 60, what="dhclient's lease")
        assert "inet 10.0.0.3/24 " in vm.run(["ip", "-4", "addr", "show", "dev", "eth0"]).stdout
        assert vm.run(["cat", "/sys/class/net/eth0/mtu"]).stdout.strip() == "1450"
        assert reaches(net, "dhc", "10.0.0.1")                 # red1, across the tunnel
    finally:
        proc.terminate()       # by PID: ip netns exec and unshare exec dhclient
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(etc, ignore_errors=True)
        vm.run(["ip", "addr", "replace", "10.0.0.3/24", "dev", "eth0"])
        vm.run(["ip", "link", "set", "eth0", "mtu", "1450"])
    assert Path("/etc/resolv.conf").read_bytes() == machine_resolv


# --- routing ---------------------------------------------------------------------------------


def test_a_router_routes_between_two_networks_on_different_hypervisors(cloud):
    net = cloud
    wait_until(lambda: reaches(net, "green1", "10.1.2.5"), 60, what="green1 -> green2")
    assert re.search(r"ttl=63 ", ping(net, "green1", "10.1.2.5").stdout)   # one router hop
    assert re.search(r"ttl=63 ", ping(net, "green2", "10.1.1.5").stdout)
    assert reaches(net, "green2", "10.1.2.1") and reaches(net, "green1", "10.1.1.1")   # their gateways
    # red's VMs are on no router: green cannot reach them
    assert not reaches(net, "green1", "10.0.0.1")


# --- a VM that moves -------------------------------------------------------------------------


def move_vm(net, vm: str, to: str, port_no: int) -> None:
    """Move a VM's link to another hypervisor by hand (what a live migration does to its
    network): its old veth goes, a new one joins the VM's namespace (eth0, same MAC and
    address) to hypervisor `to` at `port_no`, named as the emulator names its ports so
    that `down` removes it; then the API port is rebound there."""
    _, mac, ip, old, old_port = VMS[vm]
    host, names = net[vm], net.plan.names
    old_if, new_if = names.port(old, old_port), names.port(to, port_no)
    hv = hypervisor(net, to)
    subprocess.run(["ovs-vsctl", "--if-exists", "del-port", old_if], check=True, timeout=30)
    subprocess.run(["ip", "link", "del", old_if], check=True, timeout=30)
    subprocess.run(["ip", "link", "add", new_if, "mtu", str(hv.vm_mtu), "type", "veth", "peer", "name",
                    f"{new_if}v", "mtu", str(hv.vm_mtu), "netns", host.netns], check=True, timeout=30)
    subprocess.run(["ip", "link", "set", new_if, "alias", names.alias, "up"], check=True, timeout=30)
    host.run(f"ip link set {new_if}v name eth0 && ip link set eth0 address {mac} up && "
             f"ip addr add {ip}/24 dev eth0", check=True)
    subprocess.run(["ovs-vsctl", "add-port", hv.bridge, new_if, "--", "set", "Interface", new_if,
                    f"ofport_request={port_no}"], check=True, timeout=30)
    bound = net.api.put(f"/v2.0/ports/{net.ids[vm]}", json={"port": {
        "binding:host_id": f"{next(s.dpid for s in net.plan.switches if s.name == to):#x}",
        "binding:profile": {"port_no": port_no}}})
    assert bound.status_code == 200, bound.text


def test_a_vm_moved_to_another_hypervisor_while_pinged_keeps_answering(cloud):
    net = cloud
    wait_until(lambda: reaches(net, "red1", "10.0.0.9"), 60, what="red1 -> mover")
    pinger = net["red1"].popen(["ping", "-n", "-i", "0.1", "-c", "150", "-W", "1", "10.0.0.9"])
    try:
        time.sleep(1)        # some answers from hv2 first
        move_vm(net, "mover", "hv1", MOVED_PORT)
        out, _ = pinger.communicate(timeout=60)
    finally:
        if pinger.poll() is None:
            pinger.kill()
            pinger.wait(10)
    answered = sorted(int(s) for s in re.findall(r"icmp_seq=(\d+) ttl", out))
    lost = sorted(set(range(1, 151)) - set(answered))
    print(f"VM move: {len(lost)} of 150 pings at 0.1 s lost ({lost[:1]}..{lost[-1:]})", file=sys.stderr)
    assert answered and answered[0] < 10, out            # it answered on hv2
    assert set(range(141, 151)) <= set(answered), out    # and answers on hv1
    # the port is ACTIVE where it went, and still reached from hv2's side of red
    port = net.api.get(f"/v2.0/ports/{net.ids['mover']}").json()["port"]
    assert port["status"] == "ACTIVE" and port["binding:profile"] == {"port_no": MOVED_PORT}, port
    wait_until(lambda: reaches(net, "red2", "10.0.0.9"), 30, what="red2 -> mover on hv1")


# --- bad input -------------------------------------------------------------------------------


def test_a_vni_out_of_range_or_taken_is_refused(cloud):
    api = cloud.api
    for kind, segment in (("vxlan", 1 << 24), ("nvgre", 1 << 24), ("vxlan", 0)):
        made = api.post("/v2.0/networks", json={"network": {
            "name": "bad", "provider:network_type": kind, "provider:segmentation_id": segment}})
        assert made.status_code == 400 and "out of range" in made.text, made.text
    made = api.post("/v2.0/networks", json={"network": {
        "name": "bad", "provider:network_type": "vxlan", "provider:segmentation_id": RED_VNI}})
    assert made.status_code == 409 and "TunnelIdInUse" in made.text, made.text
    assert not api.get("/v2.0/networks", params={"name": "bad"}).json()["networks"]
    assert reaches(cloud, "red1", "10.0.0.2") and reaches(cloud, "blue1", "10.0.0.2")


def test_a_port_bound_to_a_switch_that_does_not_exist_stays_down(cloud):
    net, api = cloud, cloud.api
    red = net.ids["red"]
    port = created(api.post("/v2.0/ports", json={"port": {
        "name": "ghost", "project_id": "red", "network_id": red, "mac_address": "fa:16:3e:00:01:77",
        "fixed_ips": [{"subnet_id": net.ids["subnet-red"], "ip_address": "10.0.0.77"}]}}), "port")
    try:
        bound = api.put(f"/v2.0/ports/{port['id']}", json={"port": {
            "binding:host_id": "0xdead00beef", "binding:profile": {"port_no": 1}}})
        assert bound.status_code == 200, bound.text
        assert bound.json()["port"]["status"] == "DOWN"
        for vm in ("red1", "red2", "blue1"):
            assert net.api.get(f"/v2.0/ports/{net.ids[vm]}").json()["port"]["status"] == "ACTIVE"
        assert reaches(net, "red1", "10.0.0.2") and reaches(net, "blue1", "10.0.0.2")
        assert not reaches(net, "red1", "10.0.0.77")
    finally:
        api.delete(f"/v2.0/ports/{port['id']}")


def test_a_tunnel_to_an_unreachable_endpoint_leaves_the_tenants_alone(cloud):
    """Each hypervisor gets a tunnel port to 192.0.2.99, a VTEP that does not exist, and
    red gets a port there (binding:host_id vtep:192.0.2.99): red's floods go there too,
    into nothing, and red and blue still work."""
    net, api = cloud, cloud.api
    dead = "192.0.2.99"
    added = []
    try:
        for hv in (hypervisor(net, "hv1"), hypervisor(net, "hv2")):
            # local_ip keeps the two ports apart in the one ovs-vswitchd (no route: it cannot send)
            name = f"vxlan-c0000263-{int(hv.vtep.ip):08x}"
            subprocess.run(["ovs-vsctl", "add-port", hv.bridge, name, "--", "set", "Interface", name,
                            "type=vxlan", "ofport_request=1099", f"options:remote_ip={dead}",
                            f"options:local_ip={hv.vtep.ip}", "options:key=flow"], check=True, timeout=30)
            added.append(name)
        port = created(api.post("/v2.0/ports", json={"port": {
            "name": "far", "project_id": "red", "network_id": net.ids["red"], "mac_address": "fa:16:3e:00:01:66",
            "fixed_ips": [{"subnet_id": net.ids["subnet-red"], "ip_address": "10.0.0.66"}],
            "binding:host_id": f"vtep:{dead}"}}), "port")
        added.append(port["id"])
        hv1 = hypervisor(net, "hv1")

        def flooded_there() -> bool:
            groups = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-groups", hv1.bridge],
                                    capture_output=True, text=True).stdout
            flooded_there.seen = groups
            return any(re.search(rf"set_field:({RED_VNI}|{RED_VNI:#x})->tun_id,output:1099", line)
                       for line in groups.splitlines())
        try:
            wait_until(flooded_there, 30, what="red's flood group on hv1 with the tunnel to 192.0.2.99")
        except AssertionError:
            raise AssertionError(flooded_there.seen) from None
        for src in ("red1", "blue1"):
            assert ping(net, src, "10.0.0.2", "-c", "3", "-i", "0.2").returncode == 0
        assert reaches(net, "big1", "10.9.0.2")
        assert not reaches(net, "red1", "10.0.0.66")
    finally:
        for name in added:
            if name.startswith("vxlan-"):
                subprocess.run(["ovs-vsctl", "--if-exists", "del-port", name], timeout=30)
            else:
                api.delete(f"/v2.0/ports/{name}")


# --- scale: last, it leaves thousands of networks in the controller ------------------------------


def test_more_than_4094_networks_are_created(cloud):
    net, api = cloud, cloud.api
    count, bulk = 4100, 1000          # the API takes at most 1,000 a request
    networks = []
    for start in range(0, count, bulk):
        made = api.post("/v2.0/networks", json={"networks": [
            {"name": f"many{i}", "project_id": "many", "provider:network_type": "vxlan",
             "provider:segmentation_id": 100_000 + i} for i in range(start, min(count, start + bulk))]},
            timeout=300)
        assert made.status_code == 201, made.text[:500]
        networks += made.json()["networks"]
    assert len(networks) == count
    assert sorted(n["provider:segmentation_id"] for n in networks) == list(range(100_000, 100_000 + count))
    listed = api.get("/v2.0/networks", params={"project_id": "many", "fields": "id"}, timeout=120)
    assert len(listed.json()["networks"]) == count
    # and one more, allocated: the lowest free VNI
    extra = created(api.post("/v2.0/networks", json={"network": {"name": "many-extra", "project_id": "many"}}),
                    "network")
    assert extra["provider:segmentation_id"] not in {n["provider:segmentation_id"] for n in networks}
    # the tenants already running are untouched
    assert reaches(net, "red1", "10.0.0.2") and reaches(net, "big1", "10.9.0.2")


# --- hypervisor kinds mixed: kumoflow, Open vSwitch, the Linux kernel's VXLAN --------------------

MIX_VNI = 5101
#: VM -> (MAC, address, hypervisor)
MIX_VMS = {"kvm": ("fa:16:3e:00:05:01", "10.5.0.1", "hv1"), "ovm": ("fa:16:3e:00:05:02", "10.5.0.2", "hv2"),
           "lvm": ("fa:16:3e:00:05:03", "10.5.0.3", "hv3")}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """hv1 a kumoflow switch (in its own namespace), hv2 Open vSwitch, hv3 a Linux bridge
    with a kernel VXLAN device (its VM bound as vtep:<hv3's VTEP>), one tenant network on
    all three, a switched underlay."""
    tmp = tmp_path_factory.mktemp("mixed")
    controller = ControllerProcess(apps=("tenants",), log=tmp / "controller.log",
                                   args=("--api", "127.0.0.1:0", "--admin-token", ADMIN))
    controller.start()
    net = None
    try:
        url = controller.status["api"]
        api = httpx.Client(base_url=url, headers={"X-Auth-Token": ADMIN}, timeout=60)
        network = created(api.post("/v2.0/networks", json={"network": {
            "name": "mix", "project_id": "mix", "provider:network_type": "vxlan",
            "provider:segmentation_id": MIX_VNI}}), "network")
        subnet = created(api.post("/v2.0/subnets", json={"subnet": {
            "name": "mix", "project_id": "mix", "network_id": network["id"], "cidr": "10.5.0.0/24", "gateway_ip": "10.5.0.254",
            "ip_version": 4}}), "subnet")
        for vm, (mac, ip, _) in MIX_VMS.items():
            created(api.post("/v2.0/ports", json={"port": {
                "name": vm, "project_id": "mix", "network_id": network["id"], "mac_address": mac,
                "fixed_ips": [{"subnet_id": subnet["id"], "ip_address": ip}]}}), "port")
        n = random.randrange(256)
        hosts = "\n".join(f'  - {{name: {vm}, mac: "{mac}", ip: {ip}/24, port: {vm}}}'
                          for vm, (mac, ip, _) in MIX_VMS.items())
        links = "\n".join(f"  - {{src: {vm}, dst: {hv}, dst_port: 1}}" for vm, (_, _, hv) in MIX_VMS.items())
        topo = tmp / "mixed.yaml"
        topo.write_text(f"""\
name: mx{secrets.token_hex(2)}
underlay: {{subnet: 198.18.{n}.0/24}}
hypervisors:
  - {{name: hv1, kind: kumoflow, vtep: 198.18.{n}.21, dpid: 0x{n:02x}0011}}
  - {{name: hv2, kind: ovs, vtep: 198.18.{n}.22, dpid: 0x{n:02x}0012}}
  - {{name: hv3, kind: kernel, vtep: 198.18.{n}.23, vni: {MIX_VNI}}}
overlays: [{{name: vx, type: vxlan}}]
hosts:
{hosts}
links:
{links}
""")
        net = Network.from_file(topo, controllers=[controller.target])
        net.up()
        net.wait_connected(60)
        for line in bind_ports(net.plan, url, ADMIN):
            print(line, file=sys.stderr)
        net.api, net.tmp = api, tmp
        yield net
    finally:
        _tear_down(net, controller, tmp)


def test_kumoflow_ovs_and_kernel_hypervisors_share_a_tenant_network_across_the_underlay(mixed):
    net = mixed
    hv1, hv2, hv3 = (hypervisor(net, n) for n in ("hv1", "hv2", "hv3"))
    pairs = [("kvm", "10.5.0.2"), ("kvm", "10.5.0.3"), ("ovm", "10.5.0.3"), ("lvm", "10.5.0.1")]
    for src, dst in pairs:
        wait_until(lambda: reaches(net, src, dst), 60, what=f"{src} -> {dst}")
    # the kumoflow hypervisor's tunnel traffic leaves by its own NIC, across the underlay
    capture = Capture(net.plan.underlay.netns, hv1.peer, net.tmp / "mixed.pcap", "udp port 4789")
    try:
        for src, dst in pairs:
            assert ping(net, src, dst, "-c", "2", "-i", "0.2").returncode == 0
    finally:
        seen = capture.stop()
    a = re.escape(str(hv1.vtep.ip))
    for other in (hv2, hv3):
        b = re.escape(str(other.vtep.ip))
        for src, dst in ((a, b), (b, a)):
            assert re.search(rf"{src}\.\d+ > {dst}\.4789: VXLAN, flags \[I\] \(0x08\), vni {MIX_VNI}\n", seen), \
                (src, dst, seen)
    blocks = re.split(r"\n(?=\d\d:\d\d:\d\d\.)", seen)
    assert any("10.5.0.1 > 10.5.0.3: ICMP echo request" in blk and f"{hv3.vtep.ip}.4789" in blk for blk in blocks)
    assert any("10.5.0.2 > 10.5.0.1: ICMP echo reply" in blk and f"> {hv1.vtep.ip}.4789" in blk for blk in blocks)


def _tear_down(net, controller, tmp) -> None:
    """The topology down (nothing left behind), the controller stopped cleanly, its log's end shown."""
    if net is not None:
        report = net.down()
        assert report.clean, report.leftovers
    status = controller.stop()
    log = (tmp / "controller.log").read_text(errors="replace").splitlines()
    print(*log[-40:], sep="\n", file=sys.stderr)
    assert status == 0
