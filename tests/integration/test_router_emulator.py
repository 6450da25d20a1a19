"""The router app on the emulator: a real controller process with the API,
resources applied with `kumoflow apply`, hosts in network namespaces bound
to their API ports, a kumoflow switch and an Open vSwitch bridge; real
ping, traceroute and curl.

    h1 (10.0.1.5) --- s1 (kumoflow) ---- s2 (Open vSwitch) --- h2 (10.0.2.5)
    b1 (10.0.1.5) ---/                                    |--- h3 (10.0.3.5)
                                                          |--- b2 (10.0.2.5)
                                                          \\--- out (203.0.113.1, outside the cloud)

Project red's router joins 10.0.1.0/24, 10.0.2.0/24 and 10.0.3.0/24 (h1,
h2, h3) and has its external gateway on the admin's network `public`
(203.0.113.0/24, whose gateway is `out`); h1 has the floating IP
203.0.113.50. Project blue's router has the same first two subnets (b1, b2)
and no way out.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time

import httpx
import pytest

from kumoflow.net import Network
from kumoflow.net.binding import bind_ports

from controller_process import ControllerProcess

pytestmark = pytest.mark.root

ADMIN = "router-test-admin-token"
FLOATING = "203.0.113.50"

TOPOLOGY = """\
name: routed
switches:
  - {name: s1, kind: kumoflow, dpid: 1, fail_mode: secure}
  - {name: s2, kind: ovs, dpid: 2, fail_mode: secure}
hosts:
  - {name: h1, mac: "fa:16:3e:01:00:05", ip: 10.0.1.5/24, gateway: 10.0.1.1, slaac: true, port: red-h1}
  - {name: h2, mac: "fa:16:3e:02:00:05", ip: 10.0.2.5/24, gateway: 10.0.2.1, slaac: true, port: red-h2}
  - {name: h3, mac: "fa:16:3e:03:00:05", ip: 10.0.3.5/24, gateway: 10.0.3.1, slaac: true, port: red-h3}
  - {name: b1, mac: "fa:16:3e:0b:01:05", ip: 10.0.1.5/24, gateway: 10.0.1.1, port: blue-b1}
  - {name: b2, mac: "fa:16:3e:0b:02:05", ip: 10.0.2.5/24, gateway: 10.0.2.1, port: blue-b2}
  - {name: out, mac: "02:00:00:00:ee:01", ip: 203.0.113.1/24}
links:
  - {src: s1, src_port: 1, dst: s2, dst_port: 1}
  - {src: h1, dst: s1, dst_port: 2}
  - {src: b1, dst: s1, dst_port: 3}
  - {src: h2, dst: s2, dst_port: 2}
  - {src: h3, dst: s2, dst_port: 3}
  - {src: b2, dst: s2, dst_port: 4}
  - {src: out, dst: s2, dst_port: 5}
"""

PUBLIC = """\
name: public
networks:
  - {name: public, router:external: true, shared: true}
subnets:
  - {name: public-v4, network: public, cidr: 203.0.113.0/24, gateway_ip: 203.0.113.1}
"""


def project(name: str, subnets: int, hosts: dict[str, tuple[int, str, str]], external: bool, v6: bool) -> str:
    """A project's networks 1..subnets (10.0.N.0/24, and with `v6` 2001:db8:N::/64 by SLAAC), its router on
    all of them, and its hosts' ports (the IPv6 address is the API's: EUI-64 from the MAC)."""
    nets = "\n".join(f"  - {{name: {name}-n{n}}}" for n in range(1, subnets + 1))
    subs = "\n".join(f"  - {{name: {name}-s{n}, network: {name}-n{n}, cidr: 10.0.{n}.0/24}}"
                     for n in range(1, subnets + 1))
    if v6:
        subs += "\n" + "\n".join(f"  - {{name: {name}-s{n}v6, network: {name}-n{n}, cidr: \"2001:db8:{n}::/64\", "
                                 f"ip_version: 6, ipv6_ra_mode: slaac, ipv6_address_mode: slaac}}"
                                 for n in range(1, subnets + 1))
    interfaces = ", ".join(f"{name}-s{n}" + (f", {name}-s{n}v6" if v6 else "") for n in range(1, subnets + 1))
    gateway = ", external_gateway: public" if external else ""
    ports = "\n".join(f"  - {{name: {port}, network: {name}-n{n}, mac_address: \"{mac}\", "
                      f"fixed_ips: [{{subnet: {name}-s{n}, ip_address: {ip}}}"
                      + (f", {{subnet: {name}-s{n}v6}}" if v6 else "") + "]}"
                      for port, (n, mac, ip) in hosts.items())
    return (f"name: {name}\nproject: {name}\nnetworks:\n{nets}\nsubnets:\n{subs}\n"
            f"routers:\n  - {{name: {name}-router, interfaces: [{interfaces}]{gateway}}}\nports:\n{ports}\n")


def kumoflow(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kumoflow.cli", *argv], capture_output=True, text=True, timeout=120)


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s")
        time.sleep(interval)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("routed")
    controller = ControllerProcess(apps=("router",), log=tmp / "controller.log", log_level="debug",
                                   args=("--api", "127.0.0.1:0", "--admin-token", ADMIN))
    controller.start()
    net = None
    try:
        url = controller.status["api"]
        files = [("public", PUBLIC),
                 ("red", project("red", 3, {"red-h1": (1, "fa:16:3e:01:00:05", "10.0.1.5"),
                                            "red-h2": (2, "fa:16:3e:02:00:05", "10.0.2.5"),
                                            "red-h3": (3, "fa:16:3e:03:00:05", "10.0.3.5")}, external=True,
                                v6=True)),
                 ("blue", project("blue", 2, {"blue-b1": (1, "fa:16:3e:0b:01:05", "10.0.1.5"),
                                              "blue-b2": (2, "fa:16:3e:0b:02:05", "10.0.2.5")}, external=False,
                                v6=False))]
        for name, text in files:
            file = tmp / f"{name}.yaml"
            file.write_text(text)
            done = kumoflow("apply", str(file), "--api", url, "--token", ADMIN)
            assert done.returncode == 0, done.stdout + done.stderr
        api = httpx.Client(base_url=url, headers={"X-Auth-Token": ADMIN}, timeout=30)
        port = api.get("/v2.0/ports", params={"name": "red-h1"}).json()["ports"][0]
        public = api.get("/v2.0/networks", params={"name": "public"}).json()["networks"][0]
        made = api.post("/v2.0/floatingips", json={"floatingip": {
            "floating_network_id": public["id"], "floating_ip_address": FLOATING, "port_id": port["id"],
            "project_id": "red"}})
        assert made.status_code == 201, made.text
        topo = tmp / "topo.yaml"
        topo.write_text(TOPOLOGY)
        net = Network.from_file(topo, name="rt" + secrets.token_hex(3), controllers=[controller.target])
        net.up()
        net.wait_connected(60)
        for line in bind_ports(net.plan, url, ADMIN):
            print(line, file=sys.stderr)
        net.api = api     # the tests ask the API too
        yield net
    finally:
        if net is not None:
            net.down()
        status = controller.stop()
        log = (tmp / "controller.log").read_text(errors="replace").splitlines()
        print(*[line for line in log if " DEBUG " not in line][-40:], sep="\n", file=sys.stderr)
        assert status == 0


def ping(net, src: str, dst: str, *args: str) -> subprocess.CompletedProcess:
    return net[src].run(["ping", "-n", "-c", "1", "-W", "1", *args, dst], timeout=30)


def test_hosts_in_three_subnets_are_routed_with_ttl_decremented_and_traceroute_sees_the_router(cloud):
    net = cloud
    for dst in ("10.0.2.5", "10.0.3.5", "10.0.1.1", "10.0.3.1"):
        wait_until(lambda: ping(net, "h1", dst).returncode == 0)
    # a Linux host answers with TTL 64: one router hop on the way back makes it 63
    assert re.search(r"ttl=63 ", ping(net, "h1", "10.0.2.5").stdout)
    assert re.search(r"ttl=63 ", ping(net, "h3", "10.0.1.5").stdout)     # routed by Open vSwitch, then kumoflow
    assert re.search(r"ttl=64 ", ping(net, "h1", "10.0.1.1").stdout)     # the gateway itself
    trace = net["h1"].run(["traceroute", "-n", "-q", "1", "-w", "2", "-m", "5", "10.0.3.5"], timeout=60).stdout
    hops = [line.split()[1] for line in trace.splitlines()[1:]]
    assert hops == ["10.0.1.1", "10.0.3.5"], trace


def test_no_route_is_net_unreachable_and_time_exceeded_on_the_last_hop(cloud):
    net = cloud
    wait_until(lambda: ping(net, "b1", "10.0.2.5").returncode == 0)
    out = ping(net, "b1", "192.0.2.1").stdout       # blue has no way out: no route
    assert "From 10.0.1.1" in out and "Destination Net Unreachable" in out, out
    for src, gateway, dst in (("h1", "10.0.1.1", "10.0.2.5"), ("h3", "10.0.3.1", "10.0.1.5")):   # kumoflow, OVS
        out = ping(net, src, dst, "-t", "1").stdout
        assert f"From {gateway}" in out and "Time to live exceeded" in out, out


def echoes_received(net, host: str) -> int:
    """ICMP echo requests the host's kernel answered (InEchos of its /proc/net/snmp)."""
    lines = [line.split() for line in net[host].run(["cat", "/proc/net/snmp"]).stdout.splitlines()
             if line.startswith("Icmp:")]
    return int(lines[1][lines[0].index("InEchos")])


def test_two_projects_with_the_same_subnets_are_routed_apart(cloud):
    net = cloud
    wait_until(lambda: ping(net, "h1", "10.0.2.5").returncode == 0)
    wait_until(lambda: ping(net, "b1", "10.0.2.5").returncode == 0)
    for src, mine, theirs in (("h1", "h2", "b2"), ("b1", "b2", "h2")):
        before = echoes_received(net, mine), echoes_received(net, theirs)
        assert ping(net, src, "10.0.2.5", "-c", "3", "-i", "0.2").returncode == 0
        assert (echoes_received(net, mine), echoes_received(net, theirs)) == (before[0] + 3, before[1])
    # blue's router has no 10.0.3.0/24
    assert "Destination Net Unreachable" in ping(net, "b1", "10.0.3.5").stdout


class WebServer:
    """python3 -m http.server in a host; the client addresses it saw, from its log."""

    def __init__(self, net, host: str, address: str, port: int) -> None:
        self.proc = net[host].popen(["python3", "-u", "-m", "http.server", str(port), "--bind", address])
        self.url = f"http://{address}:{port}/"

    def clients(self) -> list[str]:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=10)
        return re.findall(r"^(\S+) - - \[", err, re.M)


def curl(net, host: str, url: str) -> subprocess.CompletedProcess:
    return net[host].run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", url],
                         timeout=30)


def test_the_outside_reaches_a_floating_ip_and_its_owner_goes_out_with_it(cloud):
    net = cloud
    wait_until(lambda: ping(net, "out", FLOATING).returncode == 0)
    assert re.search(r"ttl=63 ", ping(net, "out", FLOATING).stdout)
    inside = WebServer(net, "h1", "10.0.1.5", 8081)
    outside = WebServer(net, "out", "203.0.113.1", 8080)
    try:
        wait_until(lambda: curl(net, "out", f"http://{FLOATING}:8081/").stdout == "200")
        wait_until(lambda: curl(net, "h1", outside.url).stdout == "200")
    finally:
        seen_inside, seen_outside = inside.clients(), outside.clients()
    assert set(seen_inside) == {"203.0.113.1"}       # the outside as it is
    assert set(seen_outside) == {FLOATING}           # h1 as its floating IP


def test_snat_takes_the_rest_out_with_the_gateways_address(cloud):
    net = cloud
    outside = WebServer(net, "out", "203.0.113.1", 8082)
    try:
        for host in ("h2", "h3"):
            wait_until(lambda: curl(net, host, outside.url).stdout == "200")
        assert ping(net, "h3", "203.0.113.1", "-c", "2", "-i", "0.3").returncode == 0
    finally:
        seen = outside.clients()
    router = net.api.get("/v2.0/routers", params={"name": "red-router"}).json()["routers"][0]
    [gateway] = [ip["ip_address"] for ip in router["external_gateway_info"]["external_fixed_ips"]]
    assert seen and set(seen) == {gateway}, (seen, gateway)


def test_ipv6_hosts_take_their_addresses_from_the_routers_advertisements_and_are_routed(cloud):
    net = cloud
    ports = {p["name"]: p for p in net.api.get("/v2.0/ports").json()["ports"]}
    addresses = {}
    for host, n in (("h1", 1), ("h2", 2), ("h3", 3)):
        [api_address] = [ip["ip_address"] for ip in ports[f"red-{host}"]["fixed_ips"] if ":" in ip["ip_address"]]
        # SLAAC from the router's advertisement gives the host the address the API gave its port
        assert net[host].slaac_address(f"2001:db8:{n}::/64", timeout=30) == api_address
        addresses[host] = api_address
    routes = net["h1"].run(["ip", "-6", "route", "show", "default"]).stdout
    assert "via fe80::" in routes, routes           # the router's link-local address, from its advertisement
    wait_until(lambda: ping(net, "h1", addresses["h2"]).returncode == 0)
    assert re.search(r"ttl=63 ", ping(net, "h1", addresses["h3"]).stdout)    # hop limit 64, one router
    assert ping(net, "h3", "2001:db8:1::1").returncode == 0                  # another subnet's gateway
    out = ping(net, "h1", addresses["h2"], "-t", "1").stdout
    assert "From 2001:db8:1::1" in out and "Time exceeded" in out, out
    out = ping(net, "h1", "2001:db8:99::1").stdout
    assert "From 2001:db8:1::1" in out and "No route" in out, out
