"""The firewall app on the emulator, end to end: a real controller process
(`--app tenants --app firewall --api`), security groups and rules made
through the Neutron API, a kumoflow and an Open vSwitch hypervisor, VMs in
namespaces running real servers (python's http.server, nc) and clients
(curl, nc).

    hv1 (kumoflow)                        hv2 (ovs)
    c1  10.20.0.1   clients               c2  10.20.0.2   others
    s1  10.20.0.11  servers               s2  10.20.0.12  servers

``servers`` lets in HTTP (8080) from the members of ``clients``, and ssh-like
traffic (nc on 22) from c1's address alone; every group lets out anything
(stateful: the answers come back), and nothing else comes in. A server on
each switch kind: the kumoflow switch decides s1's connections, Open vSwitch
s2's; c1 -> s2 crosses both.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import subprocess
import sys
import time

import httpx
import pytest

from kumoflow.apps.addresses import aggregate, parse_lines
from kumoflow.net import Network
from kumoflow.net.binding import bind_ports

from controller_process import ControllerProcess

pytestmark = [pytest.mark.root, pytest.mark.ovs]

ADMIN = "firewall-test-admin-token"
PROJECT = "acme"
#: VM -> (MAC, address, hypervisor, its port there, its groups)
VMS = {
    "c1": ("fa:16:3e:20:00:01", "10.20.0.1", "hv1", 1, ["clients"]),
    "s1": ("fa:16:3e:20:00:11", "10.20.0.11", "hv1", 2, ["servers"]),
    "c2": ("fa:16:3e:20:00:02", "10.20.0.2", "hv2", 1, ["others"]),
    "s2": ("fa:16:3e:20:00:12", "10.20.0.12", "hv2", 2, ["servers"]),
}
IP = {vm: v[1] for vm, v in VMS.items()}


def topology(name: str, vms: dict = VMS) -> str:
    """A kumoflow hypervisor hv1 and an Open vSwitch one hv2 on a VXLAN overlay, with `vms`
    (name -> (MAC, address, hypervisor, its port there, ...)), each the API port of its name."""
    n = random.randrange(256)
    hosts = "\n".join(f'  - {{name: {vm}, mac: "{mac}", ip: {ip}/24, port: {vm}}}'
                      for vm, (mac, ip, _, _, *_) in vms.items())
    links = "\n".join(f"  - {{src: {vm}, dst: {hv}, dst_port: {port}}}" for vm, (_, _, hv, port, *_) in vms.items())
    return f"""\
name: {name}
underlay: {{subnet: 198.18.{n}.0/24}}
hypervisors:
  - {{name: hv1, kind: kumoflow, vtep: 198.18.{n}.11}}
  - {{name: hv2, kind: ovs, vtep: 198.18.{n}.12}}
overlays:
  - {{name: vx, type: vxlan}}
hosts:
{hosts}
links:
{links}
"""


def created(response: httpx.Response, key: str) -> dict:
    assert response.status_code == 201, response.text
    return response.json()[key]


def rule(api: httpx.Client, group: str, **body) -> str:
    return created(api.post("/v2.0/security-group-rules", json={"security_group_rule": {
        "security_group_id": group, "project_id": PROJECT, "ethertype": "IPv4", **body}}), "security_group_rule")["id"]


def make_resources(api: httpx.Client) -> dict:
    ids = {}
    network = created(api.post("/v2.0/networks", json={"network": {
        "name": "fw", "project_id": PROJECT, "provider:network_type": "vxlan"}}), "network")["id"]
    subnet = created(api.post("/v2.0/subnets", json={"subnet": {
        "name": "fw", "project_id": PROJECT, "network_id": network, "cidr": "10.20.0.0/24", "ip_version": 4,
        "gateway_ip": "10.20.0.254"}}), "subnet")["id"]
    for group in ("clients", "servers", "others"):       # a new group lets out anything, lets in nothing
        ids[group] = created(api.post("/v2.0/security-groups", json={"security_group": {
            "name": group, "project_id": PROJECT}}), "security_group")["id"]
    ids["http"] = rule(api, ids["servers"], direction="ingress", protocol="tcp", port_range_min=8080,
                       port_range_max=8080, remote_group_id=ids["clients"])
    ids["ssh"] = rule(api, ids["servers"], direction="ingress", protocol="tcp", port_range_min=22,
                      port_range_max=22, remote_ip_prefix=IP["c1"] + "/32")
    for vm, (mac, ip, _, _, groups) in VMS.items():
        ids[vm] = created(api.post("/v2.0/ports", json={"port": {
            "name": vm, "project_id": PROJECT, "network_id": network, "mac_address": mac,
            "fixed_ips": [{"subnet_id": subnet, "ip_address": ip}],
            "security_groups": [ids[g] for g in groups]}}), "port")["id"]
    return ids


@contextlib.contextmanager
def emulated(tmp, apps: tuple[str, ...], make, name: str, vms: dict = VMS, admin: str = ADMIN,
             args: tuple[str, ...] = (), environ: dict | None = None):
    """A cloud on the emulator: a controller process running `apps` and the API (the `admin` token,
    more `args`), the resources `make(api)` makes, `topology(name..., vms)` up and its hosts' ports
    bound. Yields the Network, with `api`, `ids` (what `make` returned), `tmp` and `servers`
    (processes, killed at the end); everything goes down, even on failure. `environ`: variables
    the controller starts with."""
    controller = ControllerProcess(apps=apps, log=tmp / "controller.log",
                                   args=("--api", "127.0.0.1:0", "--admin-token", admin, *args))
    os.environ.update(environ or {})
    try:
        controller.start()
    finally:
        for key in environ or {}:
            del os.environ[key]
    net, servers = None, []
    try:
        url = controller.status["api"]
        api = httpx.Client(base_url=url, headers={"X-Auth-Token": admin}, timeout=60)
        ids = make(api)
        topo = tmp / "topo.yaml"
        topo.write_text(topology(name + secrets.token_hex(2), vms))
        net = Network.from_file(topo, controllers=[controller.target])
        net.up()
        net.wait_connected(60)
        for line in bind_ports(net.plan, url, admin):
            print(line, file=sys.stderr)
        net.api, net.ids, net.tmp, net.servers = api, ids, tmp, servers
        yield net
    finally:
        for proc in servers:
            proc.kill()
            proc.wait(timeout=10)
        if net is not None:
            report = net.down()
            assert report.clean, report.leftovers
        status = controller.stop()
        print(*(tmp / "controller.log").read_text(errors="replace").splitlines()[-40:], sep="\n", file=sys.stderr)
        assert status == 0


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("firewall")
    (tmp / "countries").mkdir()
    (tmp / "countries" / "XC.txt").write_text(country_list())
    # KUMOFLOW_COUNTRIES: where the controller finds country lists
    with emulated(tmp, ("tenants", "firewall"), make_resources, "fw",
                  environ={"KUMOFLOW_COUNTRIES": str(tmp / "countries")}) as net:
        (tmp / "index.html").write_text("kumoflow firewall test\n")
        for server in ("s1", "s2"):
            net.servers.append(serve(net, server, ["python3", "-m", "http.server", "8080"], cwd=tmp))
            net.servers.append(serve(net, server, ["nc", "-lk", "22"], stdout=open(tmp / f"{server}-22.txt", "wb")))
        net.servers.append(serve(net, "c1", ["nc", "-lk", "9000"]))
        yield net


def country_list() -> str:
    """Country XC's list: 3,000 CIDRs, /24s of 100.64.0.0/10 spread so that few merge, and c2's address."""
    rng = random.Random(16)
    nets = sorted({f"100.{64 + rng.randrange(64)}.{rng.randrange(256)}.0/24" for _ in range(4000)})[:2999]
    return "# a test country\n" + "\n".join(nets + [f"{IP['c2']}/32"]) + "\n"


def serve(net, vm: str, argv: list[str], **kwargs) -> subprocess.Popen:
    kwargs.setdefault("stdout", subprocess.DEVNULL)
    return subprocess.Popen(["ip", "netns", "exec", net.host(vm).netns, *argv], stderr=subprocess.DEVNULL,
                            **kwargs)


def http(net, src: str, dst: str, timeout: float = 2) -> str | None:
    """The page at dst:8080 as src's curl gets it; None when the connection is not made."""
    done = net[src].run(["curl", "-s", "--connect-timeout", str(timeout), "-m", "10",
                         f"http://{IP[dst]}:8080/index.html"], timeout=30)
    return done.stdout if done.returncode == 0 else None


def connects(net, src: str, dst: str, port: int) -> bool:
    """Does a TCP connection from src to dst:port open (nc -z: the handshake alone)?"""
    return net[src].run(["nc", "-z", "-w", "2", IP[dst], str(port)], timeout=30).returncode == 0


def wait_until(predicate, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout}s")
        time.sleep(0.5)


def test_http_from_a_member_of_the_allowed_group_on_both_switch_kinds(cloud):
    net = cloud
    for server in ("s1", "s2"):      # s1 behind the kumoflow switch, s2 behind Open vSwitch
        wait_until(lambda: http(net, "c1", server) is not None, what=f"c1 -> {server}:8080")
        assert http(net, "c1", server) == "kumoflow firewall test\n"


def metric(net, name: str) -> float:
    """A metric's value (the sum over its labels) from the controller's /metrics."""
    lines = net.api.get("/metrics").text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith(name + " ") or line.startswith(name + "{"))


def test_a_closed_connection_s_flows_go_at_its_fin_on_both_switch_kinds(cloud):
    net = cloud
    wait_until(lambda: http(net, "c1", "s2") is not None, what="c1 -> s2:8080")
    for server in ("s1", "s2"):      # s1 behind the kumoflow switch, s2 behind Open vSwitch
        ended = metric(net, "kumoflow_firewall_connections_ended_total")
        assert http(net, "c1", server) == "kumoflow firewall test\n"     # curl closes: a FIN each way
        # c1's egress end and the server's ingress end, a moment (END_GRACE) after the second FIN
        wait_until(lambda: metric(net, "kumoflow_firewall_connections_ended_total") >= ended + 2, timeout=10,
                   what=f"c1 -> {server}'s connection ended by its FINs, not its idle timeout")


def test_what_no_rule_allows_is_dropped_and_unsolicited_inbound_too(cloud):
    net = cloud
    wait_until(lambda: http(net, "c1", "s2") is not None, what="c1 -> s2:8080")
    for server in ("s1", "s2"):
        assert http(net, "c2", server) is None          # c2 is not in clients
        assert not connects(net, "c2", server, 22)      # nor at c1's address
        assert connects(net, "c1", server, 22)
    # c1 lets nothing in: the servers cannot open a connection to it, though it listens on 9000
    assert not connects(net, "s1", "c1", 9000)
    assert not connects(net, "s2", "c1", 9000)
    # ... but with security off on c1's port, they can
    done = net.api.put(f"/v2.0/ports/{net.ids['c1']}", json={"port": {"security_groups": [],
                                                                      "port_security_enabled": False}})
    assert done.status_code == 200, done.text
    try:
        wait_until(lambda: connects(net, "s2", "c1", 9000), what="s2 -> c1:9000, c1 unguarded")
    finally:
        done = net.api.put(f"/v2.0/ports/{net.ids['c1']}", json={"port": {
            "port_security_enabled": True, "security_groups": [net.ids["clients"]]}})
        assert done.status_code == 200, done.text
    wait_until(lambda: not connects(net, "s2", "c1", 9000), what="s2 -/-> c1:9000 again")


def test_a_remote_group_rule_follows_a_port_that_joins_the_group(cloud):
    net = cloud
    assert http(net, "c2", "s2") is None
    port = f"/v2.0/ports/{net.ids['c2']}"
    done = net.api.put(port, json={"port": {"security_groups": [net.ids["others"], net.ids["clients"]]}})
    assert done.status_code == 200, done.text
    try:
        wait_until(lambda: http(net, "c2", "s2") is not None, what="c2 -> s2:8080 once c2 is a client")
        assert http(net, "c2", "s1") == "kumoflow firewall test\n"
    finally:
        done = net.api.put(port, json={"port": {"security_groups": [net.ids["others"]]}})
        assert done.status_code == 200, done.text
    wait_until(lambda: http(net, "c2", "s2") is None, what="c2 -/-> s2:8080 again")


def test_deleting_a_rule_cuts_the_connections_it_allowed(cloud):
    net = cloud
    out = net.tmp / "s2-22.txt"
    session = subprocess.Popen(["ip", "netns", "exec", net.host("c1").netns, "nc", IP["s2"], "22"],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        session.stdin.write(b"first line\n")
        session.stdin.flush()
        wait_until(lambda: b"first line" in out.read_bytes(), 30, "the first line at s2")
        assert net.api.delete(f"/v2.0/security-group-rules/{net.ids['ssh']}").status_code == 204
        time.sleep(2)         # the connection's flows go with the rule
        session.stdin.write(b"second line\n")
        session.stdin.flush()
        time.sleep(3)
        assert b"second line" not in out.read_bytes()
        assert not connects(net, "c1", "s2", 22)
    finally:
        session.kill()
        session.wait(timeout=10)
        net.ids["ssh"] = rule(net.api, net.ids["servers"], direction="ingress", protocol="tcp", port_range_min=22,
                              port_range_max=22, remote_ip_prefix=IP["c1"] + "/32")
    wait_until(lambda: connects(net, "c1", "s2", 22), what="c1 -> s2:22 with the rule back")


def fetch(net, src: str, dst: str, path: str, host: str) -> tuple[int, str]:
    """curl's exit status and the page: 0 and the page when served, 28 (timed out) when the
    request was dropped, 7 or 56 (refused, reset) when it was rejected."""
    done = net[src].run(["curl", "-s", "--connect-timeout", "3", "-m", "4", "-H", f"Host: {host}",
                         f"http://{IP[dst]}:8080{path}"], timeout=30)
    return done.returncode, done.stdout


def test_a_firewall_group_decides_by_order_and_by_the_request_and_logs_what_it_denies(cloud):
    """s2 (Open vSwitch) and s1 (kumoflow) under one firewall group: /admin denied (logged),
    *.blocked.test rejected, ssh denied before a later allow, the rest allowed -- and then
    still by the security groups."""
    net = cloud
    (net.tmp / "admin").mkdir(exist_ok=True)
    (net.tmp / "admin" / "index.html").write_text("the admin page\n")
    wait_until(lambda: http(net, "c1", "s2") is not None, what="c1 -> s2:8080")
    assert fetch(net, "c1", "s2", "/admin/", "www.site.test") == (0, "the admin page\n")   # no firewall yet
    api, ids = net.api, net.ids
    rules = [created(api.post("/v2.0/fwaas/firewall_rules", json={"firewall_rule": {"project_id": PROJECT, **body}}),
                     "firewall_rule")["id"] for body in (
        {"protocol": "tcp", "http_path": "/admin", "action": "deny", "log": True},
        {"protocol": "tcp", "http_host": "*.blocked.test", "action": "reject"},
        {"protocol": "tcp", "destination_port": "22", "action": "deny"},
        {"protocol": "tcp", "action": "allow"})]
    policy = created(api.post("/v2.0/fwaas/firewall_policies", json={"firewall_policy": {
        "project_id": PROJECT, "firewall_rules": rules}}), "firewall_policy")["id"]
    group = created(api.post("/v2.0/fwaas/firewall_groups", json={"firewall_group": {
        "project_id": PROJECT, "ingress_firewall_policy_id": policy, "ports": [ids["s1"], ids["s2"]]}}),
        "firewall_group")["id"]
    try:
        for server in ("s2", "s1"):
            wait_until(lambda: fetch(net, "c1", server, "/admin/", "www.site.test")[0] == 28,
                       what=f"/admin denied at {server}")
            assert fetch(net, "c1", server, "/index.html", "www.site.test") == (0, "kumoflow firewall test\n")
            assert fetch(net, "c1", server, "/index.html", "shop.blocked.test")[0] in (7, 56)   # reset
            assert fetch(net, "c1", server, "/index.html", "blocked.test") == (0, "kumoflow firewall test\n")
            assert not connects(net, "c1", server, 22)           # the policy's deny, before its allow
            assert http(net, "c2", server) is None               # allowed by the policy, not by the groups
        denied = api.get("/v2.0/fwaas/denied", params={"firewall_rule_id": rules[0]}).json()["denied"]
        assert {(d["port_id"], d["destination_port"], d["action"]) for d in denied} >= \
            {(ids["s2"], 8080, "deny"), (ids["s1"], 8080, "deny")}
    finally:
        assert api.put(f"/v2.0/fwaas/firewall_groups/{group}", json={"firewall_group": {"ports": []}}).status_code \
            == 200
        assert api.delete(f"/v2.0/fwaas/firewall_groups/{group}").status_code == 204
    wait_until(lambda: fetch(net, "c1", "s2", "/admin/", "www.site.test")[0] == 0, what="/admin served again")
    assert connects(net, "c1", "s2", 22)


#: SYNs from a VM's eth0 to one address and port, each from a new source port (a raw socket: no hping)
SYN_FLOOD = """\
import socket, struct, sys, time
src_mac, dst_mac, src, dst, dport, seconds = sys.argv[1:7]
def csum(data):
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
eth = bytes.fromhex(dst_mac.replace(":", "") + src_mac.replace(":", "")) + b"\\x08\\x00"
sip, dip = socket.inet_aton(src), socket.inet_aton(dst)
sent, end, port = 0, time.monotonic() + float(seconds), 1024
while time.monotonic() < end:
    port = port + 1 if port < 65000 else 1024
    tcp = struct.pack("!HHIIBBHHH", port, int(dport), 1, 0, 0x50, 0x02, 64240, 0, 0)
    tcp = tcp[:16] + struct.pack("!H", csum(sip + dip + struct.pack("!BBH", 0, 6, 20) + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, sip, dip)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    s.send(eth + ip + tcp)
    sent += 1
print(sent)
"""


def test_a_flood_of_denied_connections_is_logged_at_the_log_meter_s_rate_and_others_are_served(cloud):
    """c2 floods s1 (the kumoflow hypervisor) with SYNs to a port a logged deny rule stops, each
    a new connection: what reaches the controller (and the log) is bounded by the log meter
    (100 packets a second and a burst of 100), and c1 still gets its pages meanwhile."""
    net = cloud
    api, ids = net.api, net.ids
    rules = [created(api.post("/v2.0/fwaas/firewall_rules", json={"firewall_rule": {"project_id": PROJECT, **body}}),
                     "firewall_rule")["id"] for body in (
        {"protocol": "tcp", "destination_port": "9999", "action": "deny", "log": True},
        {"action": "allow"})]
    policy = created(api.post("/v2.0/fwaas/firewall_policies", json={"firewall_policy": {
        "project_id": PROJECT, "firewall_rules": rules}}), "firewall_policy")["id"]
    group = created(api.post("/v2.0/fwaas/firewall_groups", json={"firewall_group": {
        "project_id": PROJECT, "ingress_firewall_policy_id": policy, "ports": [ids["s1"]]}}),
        "firewall_group")["id"]
    seconds = 4
    try:
        wait_until(lambda: http(net, "c1", "s1") is not None, what="c1 -> s1:8080 under the group")
        mac = {vm: v[0] for vm, v in VMS.items()}
        flood = subprocess.Popen(["ip", "netns", "exec", net.host("c2").netns, sys.executable, "-c", SYN_FLOOD,
                                  mac["c2"], mac["s1"], IP["c2"], IP["s1"], "9999", str(seconds)],
                                 stdout=subprocess.PIPE, text=True)
        served = [http(net, "c1", "s2") for _ in range(3)]
        sent = int(flood.communicate(timeout=60)[0])
        logged = api.get("/v2.0/fwaas/denied", params={"firewall_rule_id": rules[0], "limit": 10000}).json()["denied"]
        assert sent > 2000, sent                      # a flood, not a trickle
        assert 50 <= len(logged) <= 100 + 100 * (seconds + 2), (sent, len(logged))
        assert served.count("kumoflow firewall test\n") >= 2, served
    finally:
        assert api.put(f"/v2.0/fwaas/firewall_groups/{group}", json={"firewall_group": {"ports": []}}).status_code \
            == 200
        assert api.delete(f"/v2.0/fwaas/firewall_groups/{group}").status_code == 204


def test_a_country_list_of_thousands_of_cidrs_denies_its_addresses_only(cloud):
    """An address group filled from country XC's file (3,000 CIDRs, c2's address among them) in a
    deny rule ahead of an allow, on both servers: c2 (made a client for the while) is denied,
    c1 is not; the switches hold a flow per merged prefix."""
    net = cloud
    api, ids = net.api, net.ids
    country = created(api.post("/v2.0/address-groups", json={"address_group": {
        "name": "xc", "project_id": PROJECT, "country": "XC"}}), "address_group")
    assert len(country["addresses"]) == 3000
    rules = [created(api.post("/v2.0/fwaas/firewall_rules", json={"firewall_rule": {"project_id": PROJECT, **body}}),
                     "firewall_rule")["id"] for body in (
        {"protocol": "tcp", "source_address_group_id": country["id"], "action": "deny"}, {"action": "allow"})]
    policy = created(api.post("/v2.0/fwaas/firewall_policies", json={"firewall_policy": {
        "project_id": PROJECT, "firewall_rules": rules}}), "firewall_policy")["id"]
    group = created(api.post("/v2.0/fwaas/firewall_groups", json={"firewall_group": {
        "project_id": PROJECT, "ingress_firewall_policy_id": policy, "ports": [ids["s1"], ids["s2"]]}}),
        "firewall_group")["id"]
    c2 = f"/v2.0/ports/{ids['c2']}"
    assert api.put(c2, json={"port": {"security_groups": [ids["others"], ids["clients"]]}}).status_code == 200
    try:
        merged = len(aggregate(parse_lines(country_list().splitlines())))
        hv2 = next(s.dpid for s in net.plan.switches if s.name.endswith("hv2"))
        wait_until(lambda: sum(f["table"] == 38 for f in api.get(f"/sdn/switches/{hv2}/flows").json()["flows"])
                   >= merged, what=f"the set's {merged} prefixes as flows in Open vSwitch")
        for server in ("s1", "s2"):
            wait_until(lambda: http(net, "c1", server) is not None, what=f"c1 -> {server}")
            assert http(net, "c2", server) is None
    finally:
        assert api.put(c2, json={"port": {"security_groups": [ids["others"]]}}).status_code == 200
        assert api.put(f"/v2.0/fwaas/firewall_groups/{group}", json={"firewall_group": {"ports": []}}).status_code \
            == 200
        assert api.delete(f"/v2.0/fwaas/firewall_groups/{group}").status_code == 204
