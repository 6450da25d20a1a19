"""The lb app on the emulator, end to end: a real controller process (`--app
tenants --app firewall --app lb --api`: the members behind security groups
that let in their web port, the clients behind groups that let in nothing),
a load balancer made through the Octavia API, a
kumoflow and an Open vSwitch hypervisor, members in namespaces running a
small web server that answers with its own name (keep-alive, optionally
slow), clients running curl and python's http.client.

    hv1 (kumoflow)                   hv2 (ovs)
    c1  10.30.0.1   client           c2  10.30.0.2   client
    m1  10.30.0.11  member           m2  10.30.0.12  member
    m4  10.30.0.14  (added later)    m3  10.30.0.13  member

VIP 10.30.0.100:80 -> members :8080, HTTP health checks every second.
"""

from __future__ import annotations

import collections
import secrets
import subprocess
import sys
import time

import httpx
import pytest

from kumoflow.net import Network
from kumoflow.net.binding import bind_ports

from controller_process import ControllerProcess
from test_firewall_emulator import created, serve, topology, wait_until

pytestmark = [pytest.mark.root, pytest.mark.ovs]

ADMIN = "lb-test-admin-token"
PROJECT = "shop"
VIP = "10.30.0.100"
#: VM -> (MAC, address, hypervisor, its port there)
VMS = {
    "c1": ("fa:16:3e:30:00:01", "10.30.0.1", "hv1", 1),
    "m1": ("fa:16:3e:30:00:11", "10.30.0.11", "hv1", 2),
    "m4": ("fa:16:3e:30:00:14", "10.30.0.14", "hv1", 3),
    "c2": ("fa:16:3e:30:00:02", "10.30.0.2", "hv2", 1),
    "m2": ("fa:16:3e:30:00:12", "10.30.0.12", "hv2", 2),
    "m3": ("fa:16:3e:30:00:13", "10.30.0.13", "hv2", 3),
}
IP = {vm: v[1] for vm, v in VMS.items()}
MEMBERS = ("m1", "m2", "m3")
#: a member: answers every GET with its name, after DELAY seconds
SERVER = """\
import http.server, sys, time
NAME, DELAY = sys.argv[1], float(sys.argv[2])
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        time.sleep(DELAY)
        body = (NAME + "\\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
"""
#: a client holding one connection: a request, then another when told (a line on stdin)
KEEPALIVE = f"""\
import http.client, sys
c = http.client.HTTPConnection("{VIP}", 80, timeout=10)
for _ in range(2):
    c.request("GET", "/")
    print(c.getresponse().read().decode().strip(), flush=True)
    sys.stdin.readline()
"""


class Cloud:
    def __init__(self, net, api: httpx.Client, ids: dict, tmp) -> None:
        self.net, self.api, self.ids, self.tmp = net, api, ids, tmp
        self.servers: dict[str, subprocess.Popen] = {}

    def start_member(self, vm: str, delay: float = 0.0) -> None:
        self.stop_member(vm)
        self.servers[vm] = serve(self.net, vm, [sys.executable, str(self.tmp / "member.py"), vm, str(delay)])

    def stop_member(self, vm: str) -> None:
        proc = self.servers.pop(vm, None)
        if proc is not None:
            proc.kill()
            proc.wait(timeout=10)

    def get(self, client: str) -> str | None:
        """Whom the VIP sent client's request to (None: no answer)."""
        done = self.net[client].run(["curl", "-s", "--connect-timeout", "2", "-m", "5", f"http://{VIP}/"],
                                    timeout=30)
        return done.stdout.strip() if done.returncode == 0 else None

    def spread(self, client: str, n: int) -> collections.Counter:
        return collections.Counter(self.get(client) for _ in range(n))

    def status(self) -> dict[str, str]:
        """Each member's operating_status, by VM name."""
        done = self.api.get(f"/v2/lbaas/loadbalancers/{self.ids['lb']}/status")
        assert done.status_code == 200, done.text
        names = {self.ids[vm]: vm for vm in VMS if vm in self.ids}
        tree = done.json()["statuses"]["loadbalancer"]
        return {names[m["id"]]: m["operating_status"] for listener in tree["listeners"]
                for pool in listener["pools"] for m in pool["members"]}

    def member(self, vm: str) -> str:
        return f"/v2/lbaas/pools/{self.ids['pool']}/members/{self.ids[vm]}"

    def put(self, path: str, key: str, **body) -> dict:
        done = self.api.put(path, json={key: body})
        assert done.status_code == 200, done.text
        return done.json()[key]


def make_resources(api: httpx.Client) -> dict:
    ids = {}
    network = created(api.post("/v2.0/networks", json={"network": {
        "name": "lb", "project_id": PROJECT, "provider:network_type": "vxlan"}}), "network")["id"]
    ids["subnet"] = subnet = created(api.post("/v2.0/subnets", json={"subnet": {
        "name": "lb", "project_id": PROJECT, "network_id": network, "cidr": "10.30.0.0/24", "ip_version": 4,
        "gateway_ip": "10.30.0.254"}}), "subnet")["id"]
    # members let in the web port from anywhere; clients nothing (their answers come back: stateful)
    ids["web"] = created(api.post("/v2.0/security-groups", json={"security_group": {
        "name": "web", "project_id": PROJECT}}), "security_group")["id"]
    ids["clients"] = created(api.post("/v2.0/security-groups", json={"security_group": {
        "name": "clients", "project_id": PROJECT}}), "security_group")["id"]
    created(api.post("/v2.0/security-group-rules", json={"security_group_rule": {
        "security_group_id": ids["web"], "project_id": PROJECT, "direction": "ingress", "ethertype": "IPv4",
        "protocol": "tcp", "port_range_min": 8080, "port_range_max": 8080}}), "security_group_rule")
    for vm, (mac, ip, _, _) in VMS.items():
        ids["port-" + vm] = created(api.post("/v2.0/ports", json={"port": {
            "name": vm, "project_id": PROJECT, "network_id": network, "mac_address": mac,
            "fixed_ips": [{"subnet_id": subnet, "ip_address": ip}],
            "security_groups": [ids["clients" if vm.startswith("c") else "web"]]}}), "port")["id"]
    ids["lb"] = created(api.post("/v2/lbaas/loadbalancers", json={"loadbalancer": {
        "name": "web", "project_id": PROJECT, "vip_subnet_id": subnet, "vip_address": VIP}}), "loadbalancer")["id"]
    ids["listener"] = created(api.post("/v2/lbaas/listeners", json={"listener": {
        "name": "http", "project_id": PROJECT, "loadbalancer_id": ids["lb"], "protocol": "HTTP",
        "protocol_port": 80}}), "listener")["id"]
    ids["pool"] = created(api.post("/v2/lbaas/pools", json={"pool": {
        "name": "web", "project_id": PROJECT, "listener_id": ids["listener"], "protocol": "HTTP",
        "lb_algorithm": "ROUND_ROBIN"}}), "pool")["id"]
    for vm in MEMBERS:
        ids[vm] = created(api.post(f"/v2/lbaas/pools/{ids['pool']}/members", json={"member": {
            "name": vm, "project_id": PROJECT, "address": IP[vm], "protocol_port": 8080,
            "subnet_id": subnet}}), "member")["id"]
    ids["monitor"] = created(api.post("/v2/lbaas/healthmonitors", json={"healthmonitor": {
        "name": "web", "project_id": PROJECT, "pool_id": ids["pool"], "type": "HTTP", "delay": 1, "timeout": 1,
        "max_retries": 1, "max_retries_down": 2, "url_path": "/", "expected_codes": "200"}}), "healthmonitor")["id"]
    return ids


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lb")
    (tmp / "member.py").write_text(SERVER)
    controller = ControllerProcess(apps=("tenants", "firewall", "lb"), log=tmp / "controller.log",
                                   args=("--api", "127.0.0.1:0", "--admin-token", ADMIN))
    controller.start()
    net, lb = None, None
    try:
        url = controller.status["api"]
        api = httpx.Client(base_url=url, headers={"X-Auth-Token": ADMIN}, timeout=60)
        ids = make_resources(api)
        topo = tmp / "topo.yaml"
        topo.write_text(topology("lb" + secrets.token_hex(2), VMS))
        net = Network.from_file(topo, controllers=[controller.target])
        net.up()
        net.wait_connected(60)
        for line in bind_ports(net.plan, url, ADMIN):
            print(line, file=sys.stderr)
        lb = Cloud(net, api, ids, tmp)
        for vm in (*MEMBERS, "m4"):
            lb.start_member(vm)
        wait_until(lambda: lb.status() == {vm: "ONLINE" for vm in MEMBERS} and lb.get("c1") is not None,
                   what="every member ONLINE and the VIP answering")
        yield lb
    finally:
        if lb is not None:
            for vm in list(lb.servers):
                lb.stop_member(vm)
        if net is not None:
            report = net.down()
            assert report.clean, report.leftovers
        status = controller.stop()
        print(*(tmp / "controller.log").read_text(errors="replace").splitlines()[-40:], sep="\n", file=sys.stderr)
        assert status == 0


def test_round_robin_spreads_evenly_from_both_switch_kinds(cloud):
    assert cloud.spread("c1", 12) == {"m1": 4, "m2": 4, "m3": 4}     # c1 behind kumoflow
    assert cloud.spread("c2", 6) == {"m1": 2, "m2": 2, "m3": 2}      # c2 behind Open vSwitch
    stats = cloud.api.get(f"/v2/lbaas/loadbalancers/{cloud.ids['lb']}/stats").json()["stats"]
    assert stats["total_connections"] >= 18


def test_source_ip_keeps_each_client_on_one_member(cloud):
    pool = f"/v2/lbaas/pools/{cloud.ids['pool']}"
    cloud.put(pool, "pool", lb_algorithm="SOURCE_IP")
    try:
        for client in ("c1", "c2"):
            got = cloud.spread(client, 6)
            assert len(got) == 1 and None not in got, got
    finally:
        cloud.put(pool, "pool", lb_algorithm="ROUND_ROBIN")


def test_a_killed_member_is_taken_out_in_time_and_comes_back(cloud):
    cloud.stop_member("m2")
    killed = time.monotonic()
    try:
        wait_until(lambda: cloud.status()["m2"] == "ERROR", timeout=20, what="m2 ERROR")
        # delay x max_retries_down, plus a check's timeout, plus the status poll
        assert time.monotonic() - killed < 1 * 2 + 1 + 2
        got = cloud.spread("c1", 6)
        assert got == {"m1": 3, "m3": 3}, got              # every request answered, none sent to m2
    finally:
        cloud.start_member("m2")
    wait_until(lambda: cloud.status()["m2"] == "ONLINE", timeout=20, what="m2 back ONLINE")
    assert "m2" in cloud.spread("c1", 6)


def test_weight_zero_drains_and_a_connection_survives_its_pool_changing(cloud):
    client = subprocess.Popen(["ip", "netns", "exec", cloud.net.host("c1").netns, sys.executable, "-c", KEEPALIVE],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    added = None
    try:
        first = client.stdout.readline().strip()
        assert first in MEMBERS
        cloud.put(cloud.member(first), "member", weight=0)
        added = created(cloud.api.post(f"/v2/lbaas/pools/{cloud.ids['pool']}/members", json={"member": {
            "name": "m4", "project_id": PROJECT, "address": IP["m4"], "protocol_port": 8080,
            "subnet_id": cloud.ids["subnet"]}}), "member")["id"]
        cloud.ids["m4"] = added
        wait_until(lambda: cloud.status().get("m4") == "ONLINE", timeout=20, what="m4 ONLINE")
        got = cloud.spread("c1", 9)
        assert first not in got and None not in got and "m4" in got, got
        client.stdin.write("\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == first       # the drained member still serves its connection
    finally:
        client.kill()
        client.wait(timeout=10)
        if added is not None:
            assert cloud.api.delete(cloud.member("m4")).status_code == 204
            del cloud.ids["m4"]
        cloud.put(cloud.member(first), "member", weight=1)


def test_a_slow_member_gets_measurably_fewer_new_connections(cloud):
    cloud.start_member("m3", delay=0.3)
    try:
        time.sleep(6)           # six checks: its smoothed latency near 0.3 s, its peers' near 1 ms
        got = cloud.spread("c1", 30)
        assert None not in got, got
        assert got["m3"] <= 5 and got["m1"] >= 10 and got["m2"] >= 10, got    # 1 : 1 : min_share 0.2
    finally:
        cloud.start_member("m3")
    time.sleep(6)               # each fast check halves what is left of its latency
    got = cloud.spread("c1", 12)
    assert got == {"m1": 4, "m2": 4, "m3": 4}, got          # recovered: its share comes back
