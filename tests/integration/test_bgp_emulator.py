"""BGP end to end on the emulator: the controller's speaker (FRR of its own,
in the namespace of an emulated network node on the external network)
peers with a real FRR router outside the cloud; the prefixes that router
announces become flows of the cloud's router, withdrawn ones go, and the
cloud's tenant subnet and floating IP are announced back.

    h1 (10.0.1.5, red) --- s1 (kumoflow) --- s2 (Open vSwitch) --- isp (FRR, AS 65001, 203.0.113.1,
                                                              |       owns 198.51.100.0/24)
                                                              \\--- netnode (203.0.113.2: the speaker, AS 64512)
"""

from __future__ import annotations

import json
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

ADMIN = "bgp-test-admin-token"

TOPOLOGY = """\
name: bgpcloud
switches:
  - {name: s1, kind: kumoflow, dpid: 1, fail_mode: secure}
  - {name: s2, kind: ovs, dpid: 2, fail_mode: secure}
hosts:
  - {name: h1, mac: "fa:16:3e:01:00:05", ip: 10.0.1.5/24, gateway: 10.0.1.1, port: red-h1}
  - {name: netnode, mac: "02:00:00:00:ee:02", ip: 203.0.113.2/24}
  - name: isp
    mac: "02:00:00:00:ee:01"
    ip: 203.0.113.1/24
    loopback: 198.51.100.1/24
    run: python3 -m http.server 8080 --bind 198.51.100.1
    frr:
      config: |
        frr defaults traditional
        hostname isp
        router bgp 65001
         bgp router-id 203.0.113.1
         no bgp ebgp-requires-policy
         timers bgp 1 3
         neighbor 203.0.113.2 remote-as 64512
         neighbor 203.0.113.2 timers connect 1
         address-family ipv4 unicast
          network 198.51.100.0/24
         exit-address-family
links:
  - {src: s1, src_port: 1, dst: s2, dst_port: 1}
  - {src: h1, dst: s1, dst_port: 2}
  - {src: isp, dst: s2, dst_port: 2}
  - {src: netnode, dst: s2, dst_port: 3}
"""

RESOURCES = """\
name: bgpcloud
networks:
  - {name: public, router:external: true, shared: true}
  - {name: red-n1}
subnets:
  - name: public-v4
    network: public
    cidr: 203.0.113.0/24
    gateway_ip: null
    allocation_pools: [{start: 203.0.113.10, end: 203.0.113.200}]
  - {name: red-s1, network: red-n1, cidr: 10.0.1.0/24}
routers:
  - {name: red-router, interfaces: [red-s1], external_gateway: public}
ports:
  - {name: red-h1, network: red-n1, mac_address: "fa:16:3e:01:00:05", fixed_ips: [{subnet: red-s1, ip_address: 10.0.1.5}]}
"""


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.5):
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
    tmp = tmp_path_factory.mktemp("bgpcloud")
    topo = tmp / "topo.yaml"
    topo.write_text(TOPOLOGY)
    net = Network.from_file(topo, name="bg" + secrets.token_hex(3))
    controller = ControllerProcess(apps=("bgp",), log=tmp / "controller.log", log_level="debug",
                                   args=("--api", "127.0.0.1:0", "--admin-token", ADMIN,
                                         "--set", f"bgp.namespace={net['netnode'].netns}",
                                         "--set", "bgp.hold_time=3"))
    controller.start()
    up = False
    try:
        url = controller.status["api"]
        (tmp / "resources.yaml").write_text(RESOURCES)
        done = subprocess.run([sys.executable, "-m", "kumoflow.cli", "apply", str(tmp / "resources.yaml"), "--api",
                               url, "--token", ADMIN], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        net = Network.from_file(topo, name=net.name, controllers=[controller.target])
        net.up()
        up = True
        net.wait_connected(60)
        bind_ports(net.plan, url, ADMIN)
        api = httpx.Client(base_url=url, headers={"X-Auth-Token": ADMIN}, timeout=30)
        public = api.get("/v2.0/networks", params={"name": "public"}).json()["networks"][0]
        speaker = api.post("/v2.0/bgp-speakers", json={"bgp_speaker": {"name": "edge", "local_as": 64512,
                                                                        "ip_version": 4}}).json()["bgp_speaker"]
        peer = api.post("/v2.0/bgp-peers", json={"bgp_peer": {"name": "isp", "peer_ip": "203.0.113.1",
                                                               "remote_as": 65001}}).json()["bgp_peer"]
        for action, body in (("add_bgp_peer", {"bgp_peer_id": peer["id"]}),
                             ("add_gateway_network", {"network_id": public["id"]})):
            r = api.put(f"/v2.0/bgp-speakers/{speaker['id']}/{action}", json=body)
            assert r.status_code == 200, r.text
        net.api = api
        yield net
    finally:
        if up:
            net.down()
        status = controller.stop()
        log = (tmp / "controller.log").read_text(errors="replace").splitlines()
        print(*[line for line in log if " DEBUG " not in line][-40:], sep="\n", file=sys.stderr)
        assert status == 0


def isp_routes(net) -> dict:
    return json.loads(net["isp"].vtysh("show ip bgp json"))["routes"]


def reach(net, url: str) -> bool:
    done = net["h1"].run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3", url],
                         timeout=30)
    return done.stdout == "200"


def test_the_peers_prefix_is_reached_and_the_clouds_are_announced_then_withdrawn(cloud):
    net = cloud
    router = net.api.get("/v2.0/routers", params={"name": "red-router"}).json()["routers"][0]
    [gateway] = [ip["ip_address"] for ip in router["external_gateway_info"]["external_fixed_ips"]]
    # the cloud's tenant subnet, announced with the router's gateway as the next hop
    routes = wait_until(lambda: (r := isp_routes(net)).get("10.0.1.0/24") and r)
    assert [hop["ip"] for hop in routes["10.0.1.0/24"][0]["nexthops"]] == [gateway]
    # the peer's prefix, learned: reached through the router (SNAT out with the gateway's address)
    wait_until(lambda: reach(net, "http://198.51.100.1:8080/"))
    net["isp"].vtysh("configure terminal", "router bgp 65001", "address-family ipv4 unicast",
                     "no network 198.51.100.0/24")
    wait_until(lambda: "Destination Net Unreachable" in net["h1"].run(
        ["ping", "-n", "-c", "1", "-W", "1", "198.51.100.1"]).stdout)
