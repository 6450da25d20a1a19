"""A real DHCP client gets its lease from kumoflow.apps.dhcp (root).

A namespace holds one end of a veth pair, as a VM behind a switch port; a
small harness in this test (not product code) reads the other end with a
raw socket and answers every frame through ``dhcp.answer``, as the tenants
app does with packet-ins. Debian's ``dhclient`` runs in the namespace with
its own dhclient-script, and the namespace ends up with the port's address
and prefix, the default route, the host route of option 121, the network's
MTU (option 26) and the subnet's DNS server in its resolv.conf. A client
with a stale lease is NAKed and starts over; one with a short lease renews
by unicast to the server identifier and keeps its address.

The client runs under ``ip netns exec`` (which gives it the namespace's own
/etc/netns/NS/resolv.conf in place of the machine's) and ``unshare --uts``
(so the host name option cannot rename the machine); it is stopped by PID.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import threading
import time

import pytest

from kumoflow.apps import dhcp, gateway
from kumoflow.packet import ARP, IPv4, PacketError, parse
from kumoflow.packet import dhcp as d
from kumoflow.packet.consts import ARP_REQUEST

pytestmark = pytest.mark.root

ETH_P_ALL, PACKET_OUTGOING = 0x0003, 4
SERVER_MAC, CLIENT_MAC = "fa:16:3e:7f:00:01", "fa:16:3e:7f:00:17"
SUBNET = {"network_id": "net-1", "cidr": "10.251.7.0/24", "ip_version": 4, "gateway_ip": "10.251.7.1",
          "enable_dhcp": True, "dns_nameservers": ["10.251.7.2"],
          "host_routes": [{"destination": "10.252.0.0/16", "nexthop": "10.251.7.254"}]}
NETWORK = {"provider:network_type": "vxlan", "mtu": 1450}
PORT = {"network_id": "net-1", "mac_address": CLIENT_MAC, "dns_name": "vm-dhcp",
        "fixed_ips": [{"subnet_id": "sub-1", "ip_address": "10.251.7.23"}]}
#: what dhclient asks for: Debian's default list, trimmed to what this test checks
CLIENT_CONF = """\
option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
request subnet-mask, broadcast-address, routers, domain-name-servers, host-name,
        interface-mtu, rfc3442-classless-static-routes;
timeout 60;
"""


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=30).stdout


class Server:
    """Answers the DHCP frames arriving on a link through dhcp.answer, in a
    thread, and ARP for the server identifier (the gateway: a renewing client
    unicasts to it), as the tenants app and the router do."""

    def __init__(self, ifname: str, lease_time: int) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind((ifname, 0))
        self.lease_time = lease_time
        self.seen: list[tuple[str, str, str]] = []    # the client's messages: (type, ciaddr, IP destination)
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def types(self) -> list[str]:
        return [kind for kind, _, _ in self.seen]

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not select.select([self.sock], [], [], 0.2)[0]:
                    continue
                frame, addr = self.sock.recvfrom(65535)
                if addr[2] != PACKET_OUTGOING:
                    self._handle(frame)
        except BaseException as exc:       # reported by the test, not lost in the thread
            self.error = exc

    def _handle(self, frame: bytes) -> None:
        try:
            pkt = parse(frame)
        except PacketError:
            return
        arp = pkt.get(ARP)
        if arp is not None and arp.op == ARP_REQUEST and arp.dst_ip == SUBNET["gateway_ip"]:
            self.sock.send(gateway.arp_reply(SERVER_MAC, arp.dst_ip, arp.src_mac, arp.src_ip))
            return
        msg = dhcp.client_message(pkt)
        if msg is not None:
            self.seen.append((d.MESSAGE_TYPES.get(msg.message_type, str(msg.message_type)), msg.ciaddr,
                              pkt[IPv4].dst))
        reply = dhcp.answer(pkt, PORT, {"sub-1": SUBNET}, NETWORK, SERVER_MAC, lease_time=self.lease_time)
        if reply is not None:
            self.sock.send(reply)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.sock.close()


def wait_for(what: str, check, seconds: float = 60.0) -> None:
    """Poll `check` until it is true; fail after `seconds` (a bound, not a timing goal)."""
    end = time.monotonic() + seconds
    while not check():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def vm(unique_name, tmp_path):
    """(namespace, its interface, the root-namespace end): a veth pair with the
    client's MAC inside the namespace; everything removed afterwards."""
    ns, inside, outside = unique_name("dh"), unique_name("dhc"), unique_name("dhs")
    etc = f"/etc/netns/{ns}"
    try:
        sh("ip", "netns", "add", ns)
        os.makedirs(etc)
        with open(f"{etc}/resolv.conf", "w") as f:
            f.write("# the namespace's own resolv.conf (test_dhcp_client)\n")
        sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        sh("ip", "link", "set", inside, "netns", ns)
        sh("ip", "-n", ns, "link", "set", inside, "address", CLIENT_MAC, "mtu", "1500", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("sysctl", "-q", "-w", f"net.ipv6.conf.{outside}.disable_ipv6=1")
        sh("ip", "link", "set", outside, "up")
        yield ns, inside, outside
    finally:
        subprocess.run(["ip", "link", "delete", outside], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=30)
        shutil.rmtree(etc, ignore_errors=True)


STALE_LEASE = """\
lease {
  interface "%s";
  fixed-address 10.251.7.99;
  option subnet-mask 255.255.255.0;
  option dhcp-server-identifier 10.251.7.1;
  renew 4 2037/01/01 00:00:00;
  rebind 4 2037/01/01 00:00:00;
  expire 4 2037/01/01 00:00:00;
}
"""


class Client:
    """dhclient in the namespace, with the harness answering on the other end."""

    def __init__(self, ns: str, inside: str, outside: str, tmp_path, lease_time: int = 600,
                 stale: bool = False) -> None:
        dhclient = shutil.which("dhclient")
        if dhclient is None:
            pytest.fail("dhclient not found (isc-dhcp-client is in scripts/system-packages.txt: run `make setup`)")
        self.ns, self.inside = ns, inside
        conf, self.leases = tmp_path / "dhclient.conf", tmp_path / "dhclient.leases"
        conf.write_text(CLIENT_CONF)
        if stale:
            self.leases.write_text(STALE_LEASE % inside)
        self.server = Server(outside, lease_time)
        try:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, "unshare", "--uts", "--", dhclient, "-4", "-d", "-1", "-v",
                 "-cf", str(conf), "-lf", str(self.leases), "-pf", str(tmp_path / "dhclient.pid"), inside],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        except BaseException:
            self.server.close()
            raise

    def addresses(self) -> str:
        if self.proc.poll() is not None:
            pytest.fail(f"dhclient exited ({self.proc.returncode}): {self.proc.stdout.read()}")
        return sh("ip", "-n", self.ns, "-4", "-o", "addr", "show", "dev", self.inside)

    def stop(self) -> None:
        """Stop dhclient (by its PID: ip netns exec and unshare exec it) and the harness."""
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.server.close()
        assert self.server.error is None, repr(self.server.error)


@pytest.fixture
def client(vm, tmp_path):
    """A function starting dhclient in the namespace (see Client); stopped afterwards."""
    started: list[Client] = []
    machine_resolv = open("/etc/resolv.conf", "rb").read()

    def start(**kw) -> Client:
        started.append(Client(*vm, tmp_path, **kw))
        return started[-1]

    try:
        yield start
    finally:
        for c in started:
            c.stop()
    assert open("/etc/resolv.conf", "rb").read() == machine_resolv     # the machine's own was left alone


@pytest.mark.parametrize("stale", [False, True], ids=["first-boot", "stale-lease"])
def test_dhclient_gets_address_routes_mtu_and_dns(vm, client, stale):
    """With a stale lease (an address the port no longer has), the client
    asks for it first (INIT-REBOOT), is refused (NAK) and starts over."""
    ns, inside, _ = vm
    c = client(stale=stale)
    wait_for("the lease in the namespace", lambda: "10.251.7.23/24" in c.addresses())
    # dhclient-script sets the address first, then MTU, routes and resolv.conf: wait for the last
    wait_for("resolv.conf", lambda: "nameserver 10.251.7.2" in open(f"/etc/netns/{ns}/resolv.conf").read())
    wait_for("the host route", lambda: "10.252.0.0/16" in sh("ip", "-n", ns, "-4", "route", "show"))

    assert "brd 10.251.7.255" in c.addresses() and "10.251.7.99" not in c.addresses()
    assert "mtu 1450 " in sh("ip", "-n", ns, "-o", "link", "show", "dev", inside)
    routes = sh("ip", "-n", ns, "-4", "route", "show")
    assert "default via 10.251.7.1 dev " + inside in routes, routes
    assert "10.252.0.0/16 via 10.251.7.254 dev " + inside in routes, routes
    assert "10.251.7.0/24 dev " + inside in routes, routes
    lease = c.leases.read_text()
    for line in ("fixed-address 10.251.7.23;", "option dhcp-server-identifier 10.251.7.1;",
                 "option dhcp-lease-time 600;", 'option host-name "vm-dhcp";', "option interface-mtu 1450;"):
        assert line in lease, lease
    expected = ["REQUEST", "DISCOVER", "REQUEST"] if stale else ["DISCOVER", "REQUEST"]
    assert c.server.types()[:len(expected)] == expected, c.server.seen


def test_dhclient_renews_by_unicast_and_keeps_its_address(vm, client):
    """A short lease: at half of it the client sends REQUEST from its address
    (ciaddr) straight to the server identifier, gets an ACK, and keeps the
    address and routes (the renewing state of RFC 2131 4.4.5)."""
    ns, inside, _ = vm
    c = client(lease_time=4)
    wait_for("the lease in the namespace", lambda: "10.251.7.23/24" in c.addresses())
    renewal = ("REQUEST", "10.251.7.23", "10.251.7.1")
    wait_for("a renewal", lambda: renewal in c.server.seen)
    assert "10.251.7.23/24" in c.addresses()
    assert "default via 10.251.7.1" in sh("ip", "-n", ns, "-4", "route", "show")
    assert c.proc.poll() is None
