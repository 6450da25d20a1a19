"""A real DHCP client gets its lease from kumoflow.apps.dhcp (root).

A namespace holds one end of a veth pair, as a VM behind a switch port; a
small harness in this test (not product code) reads the other end with a
raw socket and answers every frame through ``dhcp.answer``, as the tenants
app does with packet-ins. Debian's ``dhclient`` runs in the namespace with
its own dhclient-script, and the namespace ends up with the port's address
and prefix, the default route, the host route of option 121, the network's
MTU (option 26) and the subnet's DNS server in its resolv.conf.

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

from kumoflow.apps import dhcp
from kumoflow.packet import dhcp as d

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
    """Answers the DHCP frames arriving on a link through dhcp.answer, in a thread."""

    def __init__(self, ifname: str) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind((ifname, 0))
        self.seen: list[str] = []          # the client's message types, in order
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not select.select([self.sock], [], [], 0.2)[0]:
                    continue
                frame, addr = self.sock.recvfrom(65535)
                if addr[2] == PACKET_OUTGOING:
                    continue
                msg = dhcp.client_message(frame)
                if msg is not None:
                    self.seen.append(d.MESSAGE_TYPES.get(msg.message_type, str(msg.message_type)))
                reply = dhcp.answer(frame, PORT, {"sub-1": SUBNET}, NETWORK, SERVER_MAC, lease_time=600)
                if reply is not None:
                    self.sock.send(reply)
        except BaseException as exc:       # reported by the test, not lost in the thread
            self.error = exc

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


@pytest.mark.parametrize("stale", [False, True], ids=["first-boot", "stale-lease"])
def test_dhclient_gets_address_routes_mtu_and_dns(vm, tmp_path, stale):
    """With a stale lease (an address the port no longer has), the client
    asks for it first (INIT-REBOOT), is refused (NAK) and starts over."""
    ns, inside, outside = vm
    dhclient = shutil.which("dhclient")
    if dhclient is None:
        pytest.fail("dhclient not found (isc-dhcp-client is in scripts/system-packages.txt: run `make setup`)")
    conf, leases = tmp_path / "dhclient.conf", tmp_path / "dhclient.leases"
    conf.write_text(CLIENT_CONF)
    if stale:
        leases.write_text(STALE_LEASE % inside)
    machine_resolv = open("/etc/resolv.conf", "rb").read()
    server = Server(outside)
    client = None
    try:
        client = subprocess.Popen(
            ["ip", "netns", "exec", ns, "unshare", "--uts", "--", dhclient, "-4", "-d", "-1", "-v",
             "-cf", str(conf), "-lf", str(leases), "-pf", str(tmp_path / "dhclient.pid"), inside],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        def bound() -> bool:
            if client.poll() is not None:
                pytest.fail(f"dhclient exited ({client.returncode}): {client.stdout.read()}")
            return "10.251.7.23/24" in sh("ip", "-n", ns, "-4", "-o", "addr", "show", "dev", inside)

        wait_for("the lease in the namespace", bound)
        # dhclient-script sets the address first, then MTU, routes and resolv.conf: wait for the last
        wait_for("resolv.conf", lambda: "nameserver 10.251.7.2" in open(f"/etc/netns/{ns}/resolv.conf").read())
        wait_for("the host route", lambda: "10.252.0.0/16" in sh("ip", "-n", ns, "-4", "route", "show"))

        assert "brd 10.251.7.255" in sh("ip", "-n", ns, "-4", "-o", "addr", "show", "dev", inside)
        assert "mtu 1450 " in sh("ip", "-n", ns, "-o", "link", "show", "dev", inside)
        routes = sh("ip", "-n", ns, "-4", "route", "show")
        assert "default via 10.251.7.1 dev " + inside in routes, routes
        assert "10.252.0.0/16 via 10.251.7.254 dev " + inside in routes, routes
        assert "10.251.7.0/24 dev " + inside in routes, routes
        lease = leases.read_text()
        for line in ("fixed-address 10.251.7.23;", "option dhcp-server-identifier 10.251.7.1;",
                     "option dhcp-lease-time 600;", 'option host-name "vm-dhcp";', "option interface-mtu 1450;"):
            assert line in lease, lease
        expected = ["REQUEST", "DISCOVER", "REQUEST"] if stale else ["DISCOVER", "REQUEST"]
        assert server.seen[:len(expected)] == expected, server.seen
        assert "10.251.7.99" not in sh("ip", "-n", ns, "-4", "-o", "addr", "show", "dev", inside)
    finally:
        if client is not None:
            client.terminate()
            try:
                client.wait(10)
            except subprocess.TimeoutExpired:
                client.kill()
                client.wait(10)
        server.close()
    assert server.error is None, repr(server.error)
    assert open("/etc/resolv.conf", "rb").read() == machine_resolv     # the machine's own was left alone
