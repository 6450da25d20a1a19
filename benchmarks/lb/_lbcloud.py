"""What lb/connections.py and lb/failover.py share: a kumoflow cloud with a
load balancer, as tests/integration/test_lb_emulator.py makes one.

    with LbCloud(tmp, monitor=Monitor("TCP", 1, 1, 2)) as cloud:
        cloud.ns("c")                  # the client's namespace
        cloud.kill("m2")               # a member's server killed (SIGKILL); cloud.start("m2") again
        cloud.status()                 # {"m1": "ONLINE", ...}: the members' operating_status (API)

The real controller (`kumoflow controller --app tenants --app lb --api`,
benchmarks/tenants/_cloud.py), a vxlan network and its /24 subnet, a
Neutron port per VM, then through /v2/lbaas: a load balancer on the
subnet (VIP .100), a TCP listener on port 80, a ROUND_ROBIN TCP pool of
the three members (port 8080) and its health monitor. One emulated kumoflow
hypervisor holds the client c and the members m1, m2, m3, in namespaces,
their ports bound through the API (a second hypervisor, idle, is there
because an overlay joins at least two); each member runs
_connections.SERVE answering with its own name.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))                 # benchmarks/: benchlib
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tenants"))     # _cloud
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "firewall"))    # _connections
import benchlib  # noqa: E402

benchlib.use_src()

import _connections  # noqa: E402
from _cloud import TOKEN, Controller  # noqa: E402

PREFIX = "10.31.0"
VIP, VIP_PORT = f"{PREFIX}.100", 80
#: VM -> (MAC, address); the client first, then the members
VMS = {"c": ("fa:16:3e:31:00:01", f"{PREFIX}.1"),
       "m1": ("fa:16:3e:31:00:11", f"{PREFIX}.11"),
       "m2": ("fa:16:3e:31:00:12", f"{PREFIX}.12"),
       "m3": ("fa:16:3e:31:00:13", f"{PREFIX}.13")}
MEMBERS = ("m1", "m2", "m3")
#: the listener's timeout_client_data (Octavia's default, left as it is), s: a connection's flows stay this long
#: after its last packet, FIN and RST or not (docs/lb.md, "Not yet"), and take a new connection from the same
#: client address and port to the same member
IDLE = 50


@dataclass(frozen=True)
class Monitor:
    """A health monitor: type (TCP, HTTP), delay, timeout (s), max_retries_down; max_retries (rise)."""

    type: str
    delay: int
    timeout: int
    fall: int
    rise: int = 1

    @property
    def bound(self) -> float:
        """The most a killed member should keep getting new connections: delay x max_retries_down + timeout."""
        return self.delay * self.fall + self.timeout

    def __str__(self) -> str:
        return f"{self.type}, delay {self.delay} s, timeout {self.timeout} s, max_retries_down {self.fall}"


def topology(name: str, net: int) -> str:
    hosts = "\n".join(f'  - {{name: {vm}, mac: "{mac}", ip: {ip}/24, port: {vm}}}' for vm, (mac, ip) in VMS.items())
    links = "\n".join(f"  - {{src: {vm}, dst: hv1, dst_port: {n}}}" for n, vm in enumerate(VMS, start=1))
    return f"""name: {name}
underlay: {{subnet: 198.18.{net}.0/24}}
hypervisors:
  - {{name: hv1, kind: kumoflow, vtep: 198.18.{net}.11}}
  - {{name: hv2, kind: kumoflow, vtep: 198.18.{net}.12}}
overlays:
  - {{name: t, type: vxlan}}
hosts:
{hosts}
links:
{links}
"""


class LbCloud:
    """The cloud, up on entering (members serving, every member ONLINE, the VIP answering), down on leaving."""

    def __init__(self, tmp: Path, monitor: Monitor) -> None:
        self.tmp, self.monitor = tmp, monitor
        self.controller = Controller(tmp, apps=("tenants", "lb"))
        self.net = None
        self.ids: dict[str, str] = {}
        self.servers: dict[str, object] = {}

    def __enter__(self) -> "LbCloud":
        try:
            self._up()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _up(self) -> None:
        from kumoflow.net import Network
        from kumoflow.net.binding import bind_ports

        cloud = self.controller.start()
        network = cloud.post("/v2.0/networks", {"network": {"name": "lb", "provider:network_type": "vxlan"}})
        subnet = cloud.post("/v2.0/subnets", {"subnet": {"network_id": network["network"]["id"],
                                                         "cidr": f"{PREFIX}.0/24", "ip_version": 4,
                                                         "gateway_ip": f"{PREFIX}.254"}})["subnet"]
        self.ids["subnet"] = subnet["id"]
        for vm, (mac, ip) in VMS.items():
            cloud.post("/v2.0/ports", {"port": {"name": vm, "network_id": network["network"]["id"], "mac_address": mac,
                                                "fixed_ips": [{"subnet_id": subnet["id"], "ip_address": ip}]}})
        self.ids["lb"] = cloud.post("/v2/lbaas/loadbalancers", {"loadbalancer": {
            "name": "bench", "vip_subnet_id": subnet["id"], "vip_address": VIP}})["loadbalancer"]["id"]
        listener = cloud.post("/v2/lbaas/listeners", {"listener": {
            "name": "tcp", "loadbalancer_id": self.ids["lb"], "protocol": "TCP",
            "protocol_port": VIP_PORT}})["listener"]["id"]
        self.ids["pool"] = cloud.post("/v2/lbaas/pools", {"pool": {
            "name": "members", "listener_id": listener, "protocol": "TCP",
            "lb_algorithm": "ROUND_ROBIN"}})["pool"]["id"]
        for vm in MEMBERS:
            self.ids[vm] = cloud.post(f"/v2/lbaas/pools/{self.ids['pool']}/members", {"member": {
                "name": vm, "address": VMS[vm][1], "protocol_port": _connections.PORT,
                "subnet_id": subnet["id"]}})["member"]["id"]
        self.set_monitor(self.monitor)
        topo = self.tmp / "topo.yaml"
        topo.write_text(topology(f"lb{secrets.token_hex(2)}", 100 + secrets.randbelow(100)))
        self.net = Network.from_file(topo, controllers=[cloud.listen])
        self.net.up()
        self.net.wait_connected(60)
        list(bind_ports(self.net.plan, cloud.url, TOKEN))
        for vm in MEMBERS:
            self.start(vm)
        self.wait_status("ONLINE", MEMBERS)
        _connections.wait_answered(self.ns("c"), VIP, VIP_PORT)

    def __exit__(self, *exc: object) -> None:
        for vm in list(self.servers):
            _connections.stop(self.servers.pop(vm))
        try:
            if self.net is not None:
                self.net.down()
        finally:
            self.net = None
            self.controller.stop()

    def ns(self, vm: str) -> str:
        return self.net.host(vm).netns

    def switch_pid(self) -> int:
        """The kumoflow switch process of the hypervisor that holds the VMs."""
        from kumoflow.net.kumoflow_kind import status_path

        return json.loads(status_path(self.net.name, "hv1").read_text())["pid"]

    def start(self, vm: str) -> None:
        """The member's server (again), answering with the member's name."""
        _connections.stop(self.servers.pop(vm, None))
        self.servers[vm] = _connections.serve(self.ns(vm), vm)

    def kill(self, vm: str) -> None:
        """The member's server killed (SIGKILL) and reaped: its address answers SYNs with RSTs."""
        _connections.stop(self.servers.pop(vm))

    def set_monitor(self, monitor: Monitor) -> None:
        """The pool's health monitor made anew (a monitor's type cannot change)."""
        if "monitor" in self.ids:
            done = self.controller.http.delete(f"/v2/lbaas/healthmonitors/{self.ids.pop('monitor')}")
            if done.status_code != 204:
                raise RuntimeError(f"deleting the health monitor: {done.status_code} {done.text[:300]}")
        body = {"name": "bench", "pool_id": self.ids["pool"], "type": monitor.type, "delay": monitor.delay,
                "timeout": monitor.timeout, "max_retries": monitor.rise, "max_retries_down": monitor.fall}
        if monitor.type == "HTTP":
            body.update(url_path="/", expected_codes="200")
        self.ids["monitor"] = self.controller.post("/v2/lbaas/healthmonitors", {"healthmonitor": body})[
            "healthmonitor"]["id"]
        self.monitor = monitor

    def status(self) -> dict[str, str]:
        """Each member's operating_status, by VM name (the load balancer's status tree)."""
        tree = self.controller.call("GET", f"/v2/lbaas/loadbalancers/{self.ids['lb']}/status")
        names = {self.ids[vm]: vm for vm in MEMBERS}
        return {names[m["id"]]: m["operating_status"] for listener in tree["statuses"]["loadbalancer"]["listeners"]
                for pool in listener["pools"] for m in pool["members"] if m["id"] in names}

    def balanced(self) -> int:
        """The connections the lb app has balanced (chosen a member for) on this load balancer."""
        return self.controller.call("GET", f"/v2/lbaas/loadbalancers/{self.ids['lb']}/stats")["stats"][
            "total_connections"]

    def wait_status(self, status: str, members=MEMBERS, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            now = self.status()
            if all(now.get(vm) == status for vm in members):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"members not {status} within {timeout:g} s: {now}")
            time.sleep(0.2)
