"""The load balancer API (/v2/lbaas/..., Octavia v2's shapes) in process: load balancers with a VIP
held by a port of their own, listeners, pools, members, health monitors; the records the lb app
compiles, field by field; the status tree and stats from a (fake) lb app and without one; cascade
delete; what other resources must keep while a load balancer uses them; projects kept apart;
`kumoflow apply` with load balancers. Every refusal with its status, Octavia's error body and a
message naming the field and value, and nothing written (the store's revision does not move)."""

from __future__ import annotations

import asyncio
import ipaddress

import httpx
import pytest

from kumoflow.api.server import build_app
from kumoflow.apps.l2 import LearningSwitch as L2
from kumoflow.controller.app import App
from kumoflow.store.sqlite import SQLiteStore

from memnet import MemNet
from test_api_l3 import ADMIN, Api, WithStore

LBS = "/v2/lbaas/loadbalancers"
LISTENERS = "/v2/lbaas/listeners"
POOLS = "/v2/lbaas/pools"
MONITORS = "/v2/lbaas/healthmonitors"

#: what each kind's record holds (the lb app reads these), besides _revision
STORED = {
    "loadbalancer": {"name", "description", "admin_state_up", "vip_address", "vip_subnet_id", "vip_network_id",
                     "vip_port_id", "provider", "flavor_id", "tags"},
    "listener": {"name", "description", "admin_state_up", "loadbalancer_id", "protocol", "protocol_port",
                 "default_pool_id", "connection_limit", "timeout_client_data", "timeout_member_connect",
                 "timeout_member_data", "insert_headers", "tags"},
    "pool": {"name", "description", "admin_state_up", "loadbalancer_id", "listeners", "protocol", "lb_algorithm",
             "session_persistence", "tags"},
    "member": {"name", "admin_state_up", "pool_id", "address", "protocol_port", "weight", "subnet_id", "backup",
               "monitor_address", "monitor_port", "tags"},
    "healthmonitor": {"name", "admin_state_up", "pool_id", "type", "delay", "timeout", "max_retries",
                      "max_retries_down", "http_method", "url_path", "expected_codes", "http_version", "domain_name",
                      "tags"},
}


def run(coro):
    return asyncio.run(coro)


class FakeLb(App):
    """The lb app as the API sees it: operating_status and stats by (kind, id)."""
    name = "lb"

    def __init__(self) -> None:
        super().__init__()
        self.states: dict[tuple[str, str], str] = {}
        self.counters: dict[tuple[str, str], dict] = {}

    def operating_status(self, kind: str, record_id: str) -> str | None:
        return self.states.get((kind, record_id))

    def stats(self, kind: str, record_id: str) -> dict | None:
        return self.counters.get((kind, record_id))


class LbApi(Api):
    """test_api_l3's Api, with Octavia's error body in `refused`, and an lb app when given one."""

    def __init__(self, store, lb: FakeLb | None = None) -> None:
        self.store = store
        core = MemNet([L2(), *([lb] if lb is not None else [])]).core
        app = build_app(WithStore(core, store), admin_token="admin-secret")
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://kumoflow")

    async def refused(self, method: str, path: str, body=None, headers=ADMIN) -> tuple[int, str]:
        """Status and faultstring of a refusal in Octavia's shape, checking that nothing was written."""
        before = self.store.revision
        r = await self.do(method, path, body, headers)
        assert r.status_code >= 400, (method, path, r.text)
        assert self.store.revision == before, f"{method} {path} was refused but wrote to the store"
        error = r.json()
        assert set(error) == {"faultcode", "faultstring", "debuginfo"}, error
        assert (error["faultcode"], error["debuginfo"]) == ("Client", None), error
        return r.status_code, error["faultstring"]

    async def stored(self, kind: str, id: str) -> dict:
        return next(r.body for r in (await self.store.snapshot()).records if r.kind == kind and r.id == id)


async def _api(lb: FakeLb | None = None) -> LbApi:
    return LbApi(await SQLiteStore.open(":memory:"), lb)


async def network(api: LbApi, headers: dict, cidr: str = "10.0.0.0/24", **attrs) -> tuple[dict, dict]:
    net = (await api.ok("POST", "/v2.0/networks", {"network": {"name": "n", **attrs}}, headers))["network"]
    subnet = (await api.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": net["id"], "cidr": cidr}},
                           headers))["subnet"]
    return net, subnet


async def make(api: LbApi, path: str, key: str, headers=ADMIN, **attrs) -> dict:
    return (await api.ok("POST", path, {key: attrs}, headers))[key]


async def tree(api: LbApi, headers: dict = ADMIN, cidr: str = "10.0.0.0/24", protocol: str = "HTTP") -> dict:
    """A load balancer on a new subnet, an HTTP listener on port 80, its default pool with one member
    and a health monitor."""
    net, subnet = await network(api, headers, cidr)
    lb = await make(api, LBS, "loadbalancer", headers, name="web", vip_subnet_id=subnet["id"])
    listener = await make(api, LISTENERS, "listener", headers, name="http", loadbalancer_id=lb["id"],
                          protocol=protocol, protocol_port=80)
    pool = await make(api, POOLS, "pool", headers, name="www", listener_id=listener["id"], protocol=protocol,
                      lb_algorithm="ROUND_ROBIN")
    address = str(ipaddress.ip_network(cidr).network_address + 10)
    member = await make(api, f"{POOLS}/{pool['id']}/members", "member", headers, address=address, protocol_port=8080)
    monitor = await make(api, MONITORS, "healthmonitor", headers, pool_id=pool["id"], type="TCP", delay=5, timeout=3,
                         max_retries=3)
    return {"net": net, "subnet": subnet, "lb": lb, "listener": listener, "pool": pool, "member": member,
            "monitor": monitor}


# --- load balancers and their VIP -------------------------------------------------------------------


def test_a_load_balancer_holds_its_vip_through_a_port_of_its_own():
    async def go():
        api = await _api()
        blue = await api.token("blue")
        net, subnet = await network(api, blue)
        lb = await make(api, LBS, "loadbalancer", blue, name="web", description="shop", vip_subnet_id=subnet["id"],
                        tags=["prod"])
        assert {k: lb[k] for k in ("name", "description", "project_id", "vip_address", "vip_subnet_id",
                                   "vip_network_id", "admin_state_up", "provider", "flavor_id", "tags", "listeners",
                                   "pools", "provisioning_status", "operating_status")} == {
            "name": "web", "description": "shop", "project_id": "blue", "vip_address": "10.0.0.2",
            "vip_subnet_id": subnet["id"], "vip_network_id": net["id"], "admin_state_up": True,
            "provider": "kumoflow", "flavor_id": None, "tags": ["prod"], "listeners": [], "pools": [],
            "provisioning_status": "ACTIVE", "operating_status": "OFFLINE"}
        assert lb["created_at"] and lb["updated_at"]
        assert set(await api.stored("loadbalancer", lb["id"])) == STORED["loadbalancer"]
        port = (await api.ok("GET", f"/v2.0/ports/{lb['vip_port_id']}", headers=blue))["port"]
        assert {k: port[k] for k in ("device_owner", "device_id", "name", "project_id", "network_id",
                                     "fixed_ips")} == {
            "device_owner": "Octavia", "device_id": lb["id"], "name": f"octavia-lb-{lb['id']}", "project_id": "blue",
            "network_id": net["id"], "fixed_ips": [{"subnet_id": subnet["id"], "ip_address": "10.0.0.2"}]}
        # IPAM never gives the VIP to a VM, and the VIP is not given twice
        vm = (await api.ok("POST", "/v2.0/ports", {"port": {"network_id": net["id"]}}, blue))["port"]
        assert vm["fixed_ips"][0]["ip_address"] == "10.0.0.3"
        assert (await make(api, LBS, "loadbalancer", blue, vip_network_id=net["id"]))["vip_address"] == "10.0.0.4"
        chosen = await make(api, LBS, "loadbalancer", blue, vip_network_id=net["id"], vip_address="10.0.0.50")
        assert (chosen["vip_address"], chosen["vip_subnet_id"]) == ("10.0.0.50", subnet["id"])
        assert await api.refused("POST", LBS, {"loadbalancer": {"vip_subnet_id": subnet["id"],
                                                                "vip_address": "10.0.0.3"}}, blue) == (
            409, f"IP address 10.0.0.3 already allocated in subnet {subnet['id']}.")

        # show, list, filters, fields, update
        assert (await api.ok("GET", f"{LBS}/{lb['id']}", headers=blue))["loadbalancer"] == lb
        assert (await api.ok("GET", f"{LBS}/{lb['id']}", headers=blue, fields="id,vip_address"))["loadbalancer"] == {
            "id": lb["id"], "vip_address": "10.0.0.2"}
        listed = (await api.ok("GET", LBS, headers=blue, vip_address="10.0.0.50"))["loadbalancers"]
        assert [x["id"] for x in listed] == [chosen["id"]]
        assert [x["id"] for x in (await api.ok("GET", LBS, headers=blue, tags="prod"))["loadbalancers"]] == [lb["id"]]
        assert len((await api.ok("GET", LBS, headers=blue, operating_status="OFFLINE"))["loadbalancers"]) == 3
        changed = (await api.ok("PUT", f"{LBS}/{lb['id']}", {"loadbalancer": {
            "name": "shop", "admin_state_up": False}}, blue))["loadbalancer"]
        assert (changed["name"], changed["admin_state_up"], changed["vip_address"]) == ("shop", False, "10.0.0.2")
        assert (await api.stored("loadbalancer", lb["id"]))["_revision"] == 1

        # the port goes with the load balancer: its address is free again
        await api.ok("DELETE", f"{LBS}/{lb['id']}", headers=blue)
        assert (await api.do("GET", f"/v2.0/ports/{lb['vip_port_id']}", headers=blue)).status_code == 404
        assert await api.refused("GET", f"{LBS}/{lb['id']}", headers=blue) == (
            404, f"Load Balancer {lb['id']} not found.")
        again = await make(api, LBS, "loadbalancer", blue, vip_subnet_id=subnet["id"], vip_address="10.0.0.2")
        assert again["vip_address"] == "10.0.0.2"
    run(go())


def test_a_free_port_given_as_vip_is_taken_and_given_back():
    async def go():
        api = await _api()
        blue = await api.token("blue")
        net, subnet = await network(api, blue)
        port = (await api.ok("POST", "/v2.0/ports", {"port": {"network_id": net["id"], "name": "vip"}}, blue))["port"]
        lb = await make(api, LBS, "loadbalancer", blue, vip_port_id=port["id"])
        assert (lb["vip_port_id"], lb["vip_address"], lb["vip_subnet_id"], lb["vip_network_id"]) == (
            port["id"], port["fixed_ips"][0]["ip_address"], subnet["id"], net["id"])
        taken = (await api.ok("GET", f"/v2.0/ports/{port['id']}", headers=blue))["port"]
        assert (taken["device_owner"], taken["device_id"], taken["name"]) == ("Octavia", lb["id"], "vip")
        assert await api.refused("POST", LBS, {"loadbalancer": {"vip_port_id": port["id"]}}, blue) == (
            409, f"vip_port_id {port['id']} is in use (device_owner 'Octavia', device_id '{lb['id']}'): a VIP needs a "
                 f"free port.")
        other = (await api.ok("POST", "/v2.0/ports", {"port": {"network_id": net["id"]}}, blue))["port"]
        assert await api.refused("POST", LBS, {"loadbalancer": {"vip_port_id": other["id"],
                                                                "vip_address": "10.0.0.99"}}, blue) == (
            400, f"Validation failure: vip_port_id {other['id']} has no address 10.0.0.99")
        # two load balancers of one bulk request cannot share it either
        assert (await api.refused("POST", LBS, {"loadbalancers": [{"vip_port_id": other["id"]},
                                                                  {"vip_port_id": other["id"]}]}, blue))[0] == 409
        await api.ok("DELETE", f"{LBS}/{lb['id']}", headers=blue)
        back = (await api.ok("GET", f"/v2.0/ports/{port['id']}", headers=blue))["port"]
        assert (back["device_owner"], back["device_id"], back["fixed_ips"]) == ("", "", port["fixed_ips"])
    run(go())


def test_bad_load_balancers_are_refused_and_nothing_is_written():
    async def go():
        api = await _api()
        blue, red = await api.token("blue"), await api.token("red")
        net, subnet = await network(api, blue)
        other_net, other_subnet = await network(api, blue, "10.1.0.0/24")
        red_net, red_subnet = await network(api, red, "10.2.0.0/24")
        cases = [
            ({}, 400, "Validation failure: a load balancer needs a VIP: give vip_subnet_id, vip_network_id or "
                      "vip_port_id"),
            ({"vip_subnet_id": subnet["id"], "provider": "amphora"}, 400,
             "Validation failure: provider 'amphora' is not available: kumoflow's load balancers are provider "
             "'kumoflow'"),
            ({"vip_subnet_id": subnet["id"], "flavor_id": "big"}, 400,
             "Validation failure: flavor_id 'big': kumoflow has no flavors (give null)"),
            ({"vip_subnet_id": subnet["id"], "vip_network_id": other_net["id"]}, 400,
             f"Validation failure: vip_subnet_id {subnet['id']} is not a subnet of vip_network_id {other_net['id']}"),
            ({"vip_subnet_id": subnet["id"], "vip_address": "10.0.0.300"}, 400,
             "Validation failure: vip_address '10.0.0.300' is not an IP address"),
            ({"vip_subnet_id": subnet["id"], "vip_address": "10.9.0.5"}, 400,
             "IP address 10.9.0.5 is not a valid IP for the specified subnet."),
            ({"vip_subnet_id": subnet["id"], "vip_address": "10.0.0.1"}, 409,
             f"IP address 10.0.0.1 is the gateway of subnet {subnet['id']}; only a router interface may have it."),
            ({"vip_subnet_id": red_subnet["id"]}, 404, f"Subnet {red_subnet['id']} could not be found."),
            ({"vip_network_id": red_net["id"]}, 404, f"Network {red_net['id']} could not be found."),
            ({"vip_port_id": "nope"}, 404, "Port nope could not be found."),
            ({"vip_subnet_id": subnet["id"], "vip_qos_policy_id": "x"}, 400,
             "Invalid input: body.loadbalancer.vip_qos_policy_id: Extra inputs are not permitted (got 'x')"),
            ({"vip_subnet_id": subnet["id"], "project_id": "red"}, 400,
             "Specifying 'project_id' or 'tenant_id' other than the authenticated project in request requires admin "
             "privileges."),
        ]
        for attrs, status, message in cases:
            assert await api.refused("POST", LBS, {"loadbalancer": attrs}, blue) == (status, message), attrs
        bare = (await api.ok("POST", "/v2.0/networks", {"network": {"name": "bare"}}, blue))["network"]
        assert await api.refused("POST", LBS, {"loadbalancer": {"vip_network_id": bare["id"]}}, blue) == (
            400, f"Validation failure: vip_network_id {bare['id']} has no subnet to take a VIP address from")
        # a bulk create with one bad load balancer makes none (nor their ports)
        assert (await api.refused("POST", LBS, {"loadbalancers": [{"vip_subnet_id": subnet["id"]},
                                                                  {"vip_subnet_id": "nope"}]}, blue))[0] == 404
        lb = await make(api, LBS, "loadbalancer", blue, vip_subnet_id=subnet["id"])
        for change, message in (({"vip_address": "10.0.0.9"}, "Invalid input: body.loadbalancer.vip_address: Extra "
                                                               "inputs are not permitted (got '10.0.0.9')"),
                                ({"name": None}, "Validation failure: name must not be null")):
            assert await api.refused("PUT", f"{LBS}/{lb['id']}", {"loadbalancer": change}, blue) == (400, message)
        bulk = (await api.ok("POST", LBS, {"loadbalancers": [{"vip_subnet_id": subnet["id"]},
                                                             {"vip_subnet_id": subnet["id"]}]}, blue))["loadbalancers"]
        assert len({b["vip_address"] for b in bulk} | {lb["vip_address"]}) == 3
    run(go())


# --- listeners --------------------------------------------------------------------------------------


def test_listeners_defaults_checks_and_ports():
    async def go():
        api = await _api()
        net, subnet = await network(api, ADMIN)
        lb = await make(api, LBS, "loadbalancer", vip_subnet_id=subnet["id"])
        http = await make(api, LISTENERS, "listener", loadbalancer_id=lb["id"], protocol="HTTP", protocol_port=80)
        assert {k: http[k] for k in ("protocol", "protocol_port", "default_pool_id", "connection_limit",
                                     "timeout_client_data", "timeout_member_connect", "timeout_member_data",
                                     "insert_headers", "admin_state_up", "loadbalancer_id", "loadbalancers",
                                     "l7policies", "provisioning_status", "operating_status", "project_id")} == {
            "protocol": "HTTP", "protocol_port": 80, "default_pool_id": None, "connection_limit": -1,
            "timeout_client_data": 50000, "timeout_member_connect": 5000, "timeout_member_data": 50000,
            "insert_headers": {}, "admin_state_up": True, "loadbalancer_id": lb["id"],
            "loadbalancers": [{"id": lb["id"]}], "l7policies": [], "provisioning_status": "ACTIVE",
            "operating_status": "OFFLINE", "project_id": "admin"}
        assert set(await api.stored("listener", http["id"])) == STORED["listener"]
        # a port once per load balancer and family: UDP 80 is another port than TCP/HTTP 80
        dns = await make(api, LISTENERS, "listener", loadbalancer_id=lb["id"], protocol="udp", protocol_port=80,
                         connection_limit=100, timeout_client_data=0)
        assert (dns["protocol"], dns["connection_limit"], dns["timeout_client_data"]) == ("UDP", 100, 0)
        other = await make(api, LBS, "loadbalancer", vip_subnet_id=subnet["id"])
        await make(api, LISTENERS, "listener", loadbalancer_id=other["id"], protocol="TCP", protocol_port=80)

        def post(**attrs):
            return api.refused("POST", LISTENERS, {"listener": {"loadbalancer_id": lb["id"], "protocol": "TCP",
                                                                "protocol_port": 443, **attrs}})
        tls = ("kumoflow does not terminate TLS (a TCP listener passes TLS through to the members); protocols: TCP, "
               "UDP, HTTP")
        cases = [
            ({"protocol_port": 80}, 409, f"Another Listener on this Load Balancer is already using protocol_port 80 "
                                         f"(TCP): listener {http['id']}."),
            ({"protocol": "HTTPS"}, 400, f"Validation failure: protocol 'HTTPS' is not available: {tls}"),
            ({"protocol": "TERMINATED_HTTPS"}, 400,
             f"Validation failure: protocol 'TERMINATED_HTTPS' is not available: {tls}"),
            ({"protocol": "SCTP"}, 400, "Validation failure: protocol 'SCTP' is not available: kumoflow does not have "
                                        "it; protocols: TCP, UDP, HTTP"),
            ({"protocol": "PROMETHEUS"}, 400, "Validation failure: protocol 'PROMETHEUS' is not available: kumoflow "
                                              "does not have it; protocols: TCP, UDP, HTTP"),
            ({"protocol": "GOPHER"}, 400, "Validation failure: protocol 'GOPHER' is not available: unknown; "
                                          "protocols: TCP, UDP, HTTP"),
            ({"protocol_port": 0}, 400, "Validation failure: protocol_port 0 is out of range 1..65535"),
            ({"protocol_port": 65536}, 400, "Validation failure: protocol_port 65536 is out of range 1..65535"),
            ({"protocol_port": "80"}, 400, "Invalid input: body.listener.protocol_port: Input should be a valid "
                                           "integer (got '80')"),
            ({"connection_limit": 0}, 400,
             "Validation failure: connection_limit 0 must be -1 (no limit) or at least 1"),
            ({"timeout_member_connect": -1}, 400,
             "Validation failure: timeout_member_connect -1 is out of range 0..86400000"),
            ({"timeout_member_data": 86400001}, 400,
             "Validation failure: timeout_member_data 86400001 is out of range 0..86400000"),
            ({"insert_headers": {"X-Forwarded-For": "true"}}, 400,
             "Validation failure: insert_headers {'X-Forwarded-For': 'true'}: kumoflow forwards connections and "
             "inserts no header; give {}"),
            ({"default_pool_id": "nope"}, 404, "Pool nope not found."),
            ({"loadbalancer_id": "nope"}, 404, "Load Balancer nope not found."),
            ({"default_tls_container_ref": "x"}, 400, "Invalid input: body.listener.default_tls_container_ref: Extra "
                                                      "inputs are not permitted (got 'x')"),
        ]
        for attrs, status, message in cases:
            assert await post(**attrs) == (status, message), attrs
        # two on one port in one bulk request: none is made
        assert (await api.refused("POST", LISTENERS, {"listeners": [
            {"loadbalancer_id": lb["id"], "protocol": "TCP", "protocol_port": 22},
            {"loadbalancer_id": lb["id"], "protocol": "HTTP", "protocol_port": 22}]}))[0] == 409

        changed = (await api.ok("PUT", f"{LISTENERS}/{http['id']}", {"listener": {
            "connection_limit": 5000, "timeout_client_data": 1000, "name": "web"}}))["listener"]
        assert (changed["connection_limit"], changed["timeout_client_data"], changed["name"]) == (5000, 1000, "web")
        assert await api.refused("PUT", f"{LISTENERS}/{http['id']}", {"listener": {"protocol_port": 81}}) == (
            400, "Invalid input: body.listener.protocol_port: Extra inputs are not permitted (got 81)")
        assert await api.refused("PUT", f"{LISTENERS}/{http['id']}", {"listener": {"connection_limit": -5}}) == (
            400, "Validation failure: connection_limit -5 must be -1 (no limit) or at least 1")
        listed = (await api.ok("GET", LISTENERS, loadbalancer_id=lb["id"], protocol_port="80"))["listeners"]
        assert sorted(x["protocol"] for x in listed) == ["HTTP", "UDP"]
        assert {x["id"] for x in (await api.ok("GET", f"{LBS}/{lb['id']}"))["loadbalancer"]["listeners"]} == {
            http["id"], dns["id"]}
        await api.ok("DELETE", f"{LISTENERS}/{dns['id']}")
        assert (await api.refused("GET", f"{LISTENERS}/{dns['id']}"))[0] == 404
    run(go())


# --- pools --------------------------------------------------------------------------------------------


def test_pools_default_pools_protocols_and_session_persistence():
    async def go():
        api = await _api()
        blue, red = await api.token("blue"), await api.token("red")
        net, subnet = await network(api, blue)
        lb = await make(api, LBS, "loadbalancer", blue, vip_subnet_id=subnet["id"])
        http = await make(api, LISTENERS, "listener", blue, loadbalancer_id=lb["id"], protocol="HTTP",
                          protocol_port=80)
        tcp = await make(api, LISTENERS, "listener", blue, loadbalancer_id=lb["id"], protocol="TCP", protocol_port=22)
        udp = await make(api, LISTENERS, "listener", blue, loadbalancer_id=lb["id"], protocol="UDP", protocol_port=53)

        # a pool given a listener is its default pool (TCP pools serve HTTP listeners too)
        web = await make(api, POOLS, "pool", blue, listener_id=http["id"], protocol="TCP", lb_algorithm="source_ip",
                         session_persistence={"type": "SOURCE_IP", "persistence_timeout": 300,
                                              "persistence_granularity": "255.255.255.0"})
        assert {k: web[k] for k in ("loadbalancer_id", "loadbalancers", "listeners", "protocol", "lb_algorithm",
                                    "session_persistence", "members", "healthmonitor_id", "project_id")} == {
            "loadbalancer_id": lb["id"], "loadbalancers": [{"id": lb["id"]}], "listeners": [{"id": http["id"]}],
            "protocol": "TCP", "lb_algorithm": "SOURCE_IP",
            "session_persistence": {"type": "SOURCE_IP", "cookie_name": None, "persistence_timeout": 300,
                                    "persistence_granularity": "255.255.255.0"},
            "members": [], "healthmonitor_id": None, "project_id": "blue"}
        assert await api.stored("pool", web["id"]) == {
            "name": "", "description": "", "admin_state_up": True, "loadbalancer_id": lb["id"],
            "listeners": [http["id"]], "protocol": "TCP", "lb_algorithm": "SOURCE_IP",
            "session_persistence": web["session_persistence"], "tags": []}
        assert (await api.ok("GET", f"{LISTENERS}/{http['id']}", headers=blue))["listener"]["default_pool_id"] == \
            web["id"]
        # a pool of the load balancer alone, then a listener's default pool by update; a pool serves several
        spare = await make(api, POOLS, "pool", blue, loadbalancer_id=lb["id"], protocol="TCP",
                           lb_algorithm="LEAST_CONNECTIONS")
        assert spare["listeners"] == []
        await api.ok("PUT", f"{LISTENERS}/{tcp['id']}", {"listener": {"default_pool_id": spare["id"]}}, blue)
        await api.ok("PUT", f"{LISTENERS}/{http['id']}", {"listener": {"default_pool_id": spare["id"]}}, blue)
        assert (await api.ok("GET", f"{POOLS}/{spare['id']}", headers=blue))["pool"]["listeners"] == [
            {"id": tcp["id"]}, {"id": http["id"]}]
        assert (await api.stored("pool", web["id"]))["listeners"] == []
        await api.ok("PUT", f"{LISTENERS}/{tcp['id']}", {"listener": {"default_pool_id": None}}, blue)
        assert (await api.stored("pool", spare["id"]))["listeners"] == [http["id"]]

        def post(**attrs):
            return api.refused("POST", POOLS, {"pool": {"protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN", **attrs}},
                               blue)
        fits = "(an HTTP pool serves HTTP listeners, a TCP pool TCP or HTTP ones, a UDP pool UDP ones)"
        other = await make(api, LBS, "loadbalancer", blue, vip_subnet_id=subnet["id"])
        red_net, red_subnet = await network(api, red, "10.9.0.0/24")
        red_lb = await make(api, LBS, "loadbalancer", red, vip_subnet_id=red_subnet["id"])
        red_listener = await make(api, LISTENERS, "listener", red, loadbalancer_id=red_lb["id"], protocol="HTTP",
                                  protocol_port=80)
        cases = [
            ({}, 400, "Validation failure: a pool needs a loadbalancer_id or a listener_id"),
            ({"listener_id": tcp["id"]}, 400, f"Validation failure: protocol HTTP on listener_id {tcp['id']}: a HTTP "
                                              f"pool cannot serve a TCP listener {fits}"),
            ({"listener_id": udp["id"], "protocol": "TCP"}, 400,
             f"Validation failure: protocol TCP on listener_id {udp['id']}: a TCP pool cannot serve a UDP listener "
             f"{fits}"),
            ({"listener_id": http["id"]}, 409, f"Listener {http['id']} already has a default pool ({spare['id']})."),
            ({"listener_id": red_listener["id"]}, 404, f"Listener {red_listener['id']} not found."),
            ({"loadbalancer_id": red_lb["id"]}, 404, f"Load Balancer {red_lb['id']} not found."),
            ({"loadbalancer_id": other["id"], "listener_id": tcp["id"]}, 400,
             f"Validation failure: listener_id {tcp['id']} is a listener of load balancer {lb['id']}, not of "
             f"loadbalancer_id {other['id']}"),
            ({"loadbalancer_id": lb["id"], "protocol": "PROXY"}, 400,
             "Validation failure: protocol 'PROXY' is not available: kumoflow does not have it; protocols: TCP, UDP, "
             "HTTP"),
            ({"loadbalancer_id": lb["id"], "protocol": "HTTPS"}, 400,
             "Validation failure: protocol 'HTTPS' is not available: kumoflow does not terminate TLS (a TCP listener "
             "passes TLS through to the members); protocols: TCP, UDP, HTTP"),
            ({"loadbalancer_id": lb["id"], "lb_algorithm": "RANDOM"}, 400,
             "Validation failure: lb_algorithm 'RANDOM' is not available: unknown; lb_algorithms: ROUND_ROBIN, "
             "LEAST_CONNECTIONS, SOURCE_IP, SOURCE_IP_PORT"),
            ({"loadbalancer_id": lb["id"], "session_persistence": {"type": "STICKY"}}, 400,
             "Validation failure: session_persistence type 'STICKY' is not available: unknown; session_persistence "
             "types: SOURCE_IP, HTTP_COOKIE, APP_COOKIE"),
            ({"loadbalancer_id": lb["id"], "session_persistence": {"type": "APP_COOKIE"}}, 400,
             "Validation failure: session_persistence type APP_COOKIE needs a cookie_name"),
            ({"loadbalancer_id": lb["id"], "session_persistence": {"type": "APP_COOKIE", "cookie_name": "a b"}}, 400,
             "Validation failure: session_persistence cookie_name 'a b' is not a cookie name"),
            ({"loadbalancer_id": lb["id"], "session_persistence": {"type": "HTTP_COOKIE", "cookie_name": "sid"}}, 400,
             "Validation failure: session_persistence cookie_name is for type APP_COOKIE, not HTTP_COOKIE"),
            ({"loadbalancer_id": lb["id"], "protocol": "TCP", "session_persistence": {"type": "HTTP_COOKIE"}}, 400,
             "Validation failure: session_persistence type HTTP_COOKIE needs an HTTP pool, not TCP"),
            ({"loadbalancer_id": lb["id"], "session_persistence": {"type": "HTTP_COOKIE",
                                                                   "persistence_timeout": 60}}, 400,
             "Validation failure: session_persistence persistence_timeout is for type SOURCE_IP, not HTTP_COOKIE"),
            ({"loadbalancer_id": lb["id"], "session_persistence": {"type": "SOURCE_IP",
                                                                   "persistence_timeout": 0}}, 400,
             "Validation failure: session_persistence persistence_timeout 0 is out of range 1.."),
            ({"loadbalancer_id": lb["id"], "session_persistence": {"type": "SOURCE_IP",
                                                                   "persistence_granularity": "255.0.255.0"}}, 400,
             "Validation failure: session_persistence persistence_granularity '255.0.255.0' is not a netmask (e.g. "
             "255.255.255.0)"),
        ]
        for attrs, status, message in cases:
            assert await post(**attrs) == (status, message), attrs
        assert await api.refused("PUT", f"{LISTENERS}/{udp['id']}", {"listener": {"default_pool_id": web["id"]}},
                                 blue) == (400, f"Validation failure: default_pool_id {web['id']}: a TCP pool cannot "
                                                f"serve a UDP listener {fits}")
        other_pool = await make(api, POOLS, "pool", blue, loadbalancer_id=other["id"], protocol="UDP",
                                lb_algorithm="ROUND_ROBIN")
        assert await api.refused("PUT", f"{LISTENERS}/{udp['id']}", {"listener": {
            "default_pool_id": other_pool["id"]}}, blue) == (
            400, f"Validation failure: default_pool_id {other_pool['id']} is a pool of load balancer {other['id']}, "
                 f"not of {lb['id']}")

        cookie = await make(api, POOLS, "pool", blue, loadbalancer_id=lb["id"], protocol="HTTP",
                            lb_algorithm="ROUND_ROBIN", session_persistence={"type": "APP_COOKIE",
                                                                             "cookie_name": "JSESSIONID"})
        changed = (await api.ok("PUT", f"{POOLS}/{cookie['id']}", {"pool": {
            "session_persistence": None, "lb_algorithm": "LEAST_CONNECTIONS"}}, blue))["pool"]
        assert (changed["session_persistence"], changed["lb_algorithm"]) == (None, "LEAST_CONNECTIONS")
        assert await api.refused("PUT", f"{POOLS}/{cookie['id']}", {"pool": {"protocol": "TCP"}}, blue) == (
            400, "Invalid input: body.pool.protocol: Extra inputs are not permitted (got 'TCP')")
        assert [p["id"] for p in (await api.ok("GET", POOLS, headers=blue, protocol="HTTP"))["pools"]] == [
            cookie["id"]]
    run(go())


# --- members ------------------------------------------------------------------------------------------


def test_members_addresses_subnets_weights_and_the_batch_update():
    async def go():
        api = await _api()
        blue = await api.token("blue")
        net, subnet = await network(api, blue)
        back_net, back = await network(api, blue, "10.5.0.0/24")
        public = (await api.ok("POST", "/v2.0/networks", {"network": {"name": "shared", "shared": True}}))["network"]
        shared = (await api.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": public["id"],
                                                                    "cidr": "192.168.7.0/24"}}))["subnet"]
        lb = await make(api, LBS, "loadbalancer", blue, vip_subnet_id=subnet["id"])
        pool = await make(api, POOLS, "pool", blue, loadbalancer_id=lb["id"], protocol="TCP",
                          lb_algorithm="ROUND_ROBIN")
        path = f"{POOLS}/{pool['id']}/members"
        one = await make(api, path, "member", blue, address="10.0.0.10", protocol_port=80, name="www1")
        assert {k: one[k] for k in ("address", "protocol_port", "weight", "subnet_id", "admin_state_up", "backup",
                                    "monitor_address", "monitor_port", "pool_id", "name", "project_id",
                                    "provisioning_status", "operating_status")} == {
            "address": "10.0.0.10", "protocol_port": 80, "weight": 1, "subnet_id": subnet["id"],
            "admin_state_up": True, "backup": False, "monitor_address": None, "monitor_port": None,
            "pool_id": pool["id"], "name": "www1", "project_id": "blue", "provisioning_status": "ACTIVE",
            "operating_status": "OFFLINE"}
        assert set(await api.stored("member", one["id"])) == STORED["member"]
        # the subnet found: the one of the project's networks (or shared ones) that holds the address
        two = await make(api, path, "member", blue, address="10.5.0.7", protocol_port=80, weight=0, backup=True,
                         monitor_address="10.5.0.8", monitor_port=9000)
        assert (two["subnet_id"], two["weight"], two["backup"], two["monitor_address"], two["monitor_port"]) == (
            back["id"], 0, True, "10.5.0.8", 9000)
        assert (await make(api, path, "member", blue, address="192.168.7.20", protocol_port=80))["subnet_id"] == \
            shared["id"]
        given = await make(api, path, "member", blue, address="10.5.0.9", protocol_port=80, subnet_id=back["id"])
        assert given["subnet_id"] == back["id"]

        def post(**attrs):
            return api.refused("POST", path, {"member": {"address": "10.0.0.20", "protocol_port": 80, **attrs}}, blue)
        cases = [
            ({"address": "172.16.0.5"}, 400, "Validation failure: member address 172.16.0.5 is in no subnet of a "
                                             "network project blue may use: give subnet_id, or an address of one"),
            ({"address": "10.5.0.20", "subnet_id": subnet["id"]}, 400,
             f"Validation failure: member address 10.5.0.20 is not in subnet_id {subnet['id']} (10.0.0.0/24)"),
            ({"subnet_id": "nope"}, 404, "Subnet nope could not be found."),
            ({"address": "10.0.0.10"}, 409, f"Another member on this pool is already using ip 10.0.0.10 on "
                                            f"protocol_port 80: member {one['id']}."),
            ({"address": "2001:db8::5"}, 400, "Validation failure: member address 2001:db8::5 is IPv6, the load "
                                              "balancer's VIP 10.0.0.2 IPv4: kumoflow does not translate between IP "
                                              "versions"),
            ({"address": "10.0.0.x"}, 400, "Validation failure: address '10.0.0.x' is not an IP address"),
            ({"weight": 257}, 400, "Validation failure: weight 257 is out of range 0..256"),
            ({"weight": -1}, 400, "Validation failure: weight -1 is out of range 0..256"),
            ({"protocol_port": 0}, 400, "Validation failure: protocol_port 0 is out of range 1..65535"),
            ({"monitor_port": 70000}, 400, "Validation failure: monitor_port 70000 is out of range 1..65535"),
            ({"monitor_address": "nowhere"}, 400, "Validation failure: monitor_address 'nowhere' is not an IP address"),
        ]
        for attrs, status, message in cases:
            assert await post(**attrs) == (status, message), attrs
        # an address in two of the project's subnets (tenants overlap): which one is the caller's to say
        await network(api, blue, "10.7.0.0/24")
        await network(api, blue, "10.7.0.0/24")
        status, message = await post(address="10.7.0.5")
        assert status == 400 and message.startswith("Validation failure: member address 10.7.0.5 is in several "
                                                     "subnets (") and message.endswith("): give subnet_id")
        assert (await api.refused("POST", f"{POOLS}/nope/members", {"member": {"address": "10.0.0.9",
                                                                             "protocol_port": 1}}, blue)) == (
            404, "Pool nope not found.")

        changed = (await api.ok("PUT", f"{path}/{one['id']}", {"member": {
            "weight": 10, "admin_state_up": False, "monitor_port": 8081}}, blue))["member"]
        assert (changed["weight"], changed["admin_state_up"], changed["monitor_port"]) == (10, False, 8081)
        assert await api.refused("PUT", f"{path}/{one['id']}", {"member": {"weight": 300}}, blue) == (
            400, "Validation failure: weight 300 is out of range 0..256")
        assert await api.refused("PUT", f"{path}/{one['id']}", {"member": {"address": "10.0.0.11"}}, blue) == (
            400, "Invalid input: body.member.address: Extra inputs are not permitted (got '10.0.0.11')")
        other_pool = await make(api, POOLS, "pool", blue, loadbalancer_id=lb["id"], protocol="TCP",
                                lb_algorithm="ROUND_ROBIN")
        assert await api.refused("GET", f"{POOLS}/{other_pool['id']}/members/{one['id']}", headers=blue) == (
            404, f"Member {one['id']} not found.")
        assert [m["address"] for m in (await api.ok("GET", path, headers=blue, weight="0"))["members"]] == ["10.5.0.7"]

        # the batch update: matched by address and port, updated; new ones made; the others deleted
        r = await api.do("PUT", path, {"members": [{"address": "10.0.0.10", "protocol_port": 80, "weight": 5},
                                                   {"address": "10.0.0.30", "protocol_port": 80, "name": "new"}]}, blue)
        assert (r.status_code, r.content) == (202, b"")
        after = {m["address"]: m for m in (await api.ok("GET", path, headers=blue))["members"]}
        assert set(after) == {"10.0.0.10", "10.0.0.30"}
        assert (after["10.0.0.10"]["id"], after["10.0.0.10"]["weight"], after["10.0.0.10"]["admin_state_up"]) == (
            one["id"], 5, False)
        r = await api.do("PUT", f"{path}?additive_only=true", {"members": [{"address": "10.0.0.40",
                                                                             "protocol_port": 80}]}, blue)
        assert r.status_code == 202
        assert len((await api.ok("GET", path, headers=blue))["members"]) == 3
        assert await api.refused("PUT", path, {"members": [{"address": "10.0.0.10", "protocol_port": 80},
                                                           {"address": "10.0.0.10", "protocol_port": 80}]}, blue) == (
            409, "Member 10.0.0.10:80 is given twice.")
        assert (await api.refused("PUT", path, {"members": [{"address": "10.0.0.50", "protocol_port": 80},
                                                            {"address": "10.0.0.50", "protocol_port": 80}]},
                                  blue))[0] == 409
        assert await api.refused("PUT", path, {"members": [{"address": "10.0.0.10", "protocol_port": 80,
                                                            "subnet_id": back["id"]}]}, blue) == (
            400, f"Validation failure: member 10.0.0.10:80: subnet_id cannot change ({subnet['id']} -> {back['id']})")
        revision = api.store.revision
        r = await api.do("PUT", path, {"members": []}, blue)
        assert r.status_code == 202 and api.store.revision == revision + 1      # one commit
        assert (await api.ok("GET", path, headers=blue))["members"] == []
    run(go())


# --- health monitors ----------------------------------------------------------------------------------


def test_health_monitors_types_defaults_and_checks():
    async def go():
        api = await _api()
        net, subnet = await network(api, ADMIN)
        lb = await make(api, LBS, "loadbalancer", vip_subnet_id=subnet["id"])
        pools = {p: await make(api, POOLS, "pool", loadbalancer_id=lb["id"], protocol=p, lb_algorithm="ROUND_ROBIN")
                 for p in ("HTTP", "TCP", "UDP")}
        web = await make(api, MONITORS, "healthmonitor", pool_id=pools["HTTP"]["id"], type="HTTP", delay=5,
                         timeout=5, max_retries=3)
        assert {k: web[k] for k in ("type", "delay", "timeout", "max_retries", "max_retries_down", "http_method",
                                    "url_path", "expected_codes", "http_version", "domain_name", "pool_id", "pools",
                                    "admin_state_up", "provisioning_status", "operating_status")} == {
            "type": "HTTP", "delay": 5, "timeout": 5, "max_retries": 3, "max_retries_down": 3, "http_method": "GET",
            "url_path": "/", "expected_codes": "200", "http_version": 1.0, "domain_name": None,
            "pool_id": pools["HTTP"]["id"], "pools": [{"id": pools["HTTP"]["id"]}], "admin_state_up": True,
            "provisioning_status": "ACTIVE", "operating_status": "OFFLINE"}
        assert set(await api.stored("healthmonitor", web["id"])) == STORED["healthmonitor"]
        assert (await api.ok("GET", f"{POOLS}/{pools['HTTP']['id']}"))["pool"]["healthmonitor_id"] == web["id"]
        ping = await make(api, MONITORS, "healthmonitor", pool_id=pools["TCP"]["id"], type="PING", delay=2, timeout=1,
                          max_retries=1, max_retries_down=10)
        assert (ping["http_method"], ping["url_path"], ping["expected_codes"], ping["max_retries_down"]) == (
            None, None, None, 10)
        udp = await make(api, MONITORS, "healthmonitor", pool_id=pools["UDP"]["id"], type="udp-connect", delay=3,
                         timeout=2, max_retries=2)
        assert udp["type"] == "UDP-CONNECT"

        spare = await make(api, POOLS, "pool", loadbalancer_id=lb["id"], protocol="HTTP", lb_algorithm="ROUND_ROBIN")
        spare_udp = await make(api, POOLS, "pool", loadbalancer_id=lb["id"], protocol="UDP", lb_algorithm="ROUND_ROBIN")

        def post(pool=spare, **attrs):
            return api.refused("POST", MONITORS, {"healthmonitor": {"pool_id": pool["id"], "type": "HTTP",
                                                                    "delay": 5, "timeout": 3, "max_retries": 3,
                                                                    **attrs}})
        tls = "kumoflow does not terminate TLS; types: TCP, HTTP, PING, UDP-CONNECT"
        cases = [
            ({"pool": pools["HTTP"]}, 409, f"Pool {pools['HTTP']['id']} already has a health monitor ({web['id']})."),
            ({"type": "HTTPS"}, 400, f"Validation failure: type 'HTTPS' is not available: {tls}"),
            ({"type": "TLS-HELLO"}, 400, f"Validation failure: type 'TLS-HELLO' is not available: {tls}"),
            ({"type": "SCTP"}, 400, "Validation failure: type 'SCTP' is not available: kumoflow does not have it; "
                                    "types: TCP, HTTP, PING, UDP-CONNECT"),
            ({"type": "UDP-CONNECT"}, 400, "Validation failure: type UDP-CONNECT cannot probe the members of a HTTP "
                                           "pool: TCP, HTTP, PING can"),
            ({"type": "PING", "pool": spare_udp}, 400, "Validation failure: type PING cannot probe the members of a "
                                                       "UDP pool: UDP-CONNECT, TCP, HTTP can"),
            ({"delay": 0, "timeout": 0}, 400, "Validation failure: delay 0 is out of range 1.."),
            ({"timeout": 0}, 400, "Validation failure: timeout 0 is out of range 1.."),
            ({"timeout": 6}, 400, "Validation failure: timeout 6 must not be longer than delay 5"),
            ({"max_retries": 0}, 400, "Validation failure: max_retries 0 is out of range 1..10"),
            ({"max_retries": 11}, 400, "Validation failure: max_retries 11 is out of range 1..10"),
            ({"max_retries_down": 11}, 400, "Validation failure: max_retries_down 11 is out of range 1..10"),
            ({"http_method": "FETCH"}, 400, "Validation failure: http_method 'FETCH' is not available: unknown; "
                                            "http_methods: GET, HEAD, POST, PUT, DELETE, TRACE, OPTIONS, PATCH, "
                                            "CONNECT"),
            ({"url_path": "health"}, 400, "Validation failure: url_path 'health' must start with '/' and hold no "
                                          "spaces"),
            ({"expected_codes": "2xx"}, 400, "Validation failure: expected_codes '2xx': give a code (200), codes "
                                             "(200,202) or a range (200-204)"),
            ({"expected_codes": "200,202-204"}, 400, "Validation failure: expected_codes '200,202-204': give a code "
                                                     "(200), codes (200,202) or a range (200-204)"),
            ({"expected_codes": "204-200"}, 400, "Validation failure: expected_codes '204-200': HTTP status codes are "
                                                 "100-599, a range low-high"),
            ({"expected_codes": "600"}, 400, "Validation failure: expected_codes '600': HTTP status codes are 100-599, "
                                             "a range low-high"),
            ({"http_version": 2.0}, 400, "Validation failure: http_version 2.0 is not 1.0 or 1.1"),
            ({"domain_name": "shop.example"}, 400, "Validation failure: domain_name needs http_version 1.1"),
            ({"domain_name": "bad name", "http_version": 1.1}, 400,
             "Validation failure: domain_name 'bad name' is not a domain name"),
            ({"type": "TCP", "url_path": "/"}, 400,
             "Validation failure: url_path is for HTTP health monitors, not TCP"),
            ({"pool": {"id": "nope"}}, 404, "Pool nope not found."),
        ]
        for attrs, status, message in cases:
            assert await post(**attrs) == (status, message), attrs
        # one per pool, also within one bulk request
        assert (await api.refused("POST", MONITORS, {"healthmonitors": [
            {"pool_id": spare["id"], "type": "TCP", "delay": 1, "timeout": 1, "max_retries": 1},
            {"pool_id": spare["id"], "type": "PING", "delay": 1, "timeout": 1, "max_retries": 1}]}))[0] == 409

        for codes in ("200", "200,202", "200-204"):
            made = await make(api, MONITORS, "healthmonitor", pool_id=spare["id"], type="HTTP", delay=5, timeout=3,
                              max_retries=3, expected_codes=codes, http_method="head", url_path="/health?full=1",
                              http_version=1.1, domain_name="shop.example")
            assert (made["expected_codes"], made["http_method"], made["url_path"], made["domain_name"]) == (
                codes, "HEAD", "/health?full=1", "shop.example")
            await api.ok("DELETE", f"{MONITORS}/{made['id']}")
        changed = (await api.ok("PUT", f"{MONITORS}/{web['id']}", {"healthmonitor": {
            "delay": 10, "expected_codes": "200-299", "url_path": "/ok", "admin_state_up": False}}))["healthmonitor"]
        assert (changed["delay"], changed["expected_codes"], changed["url_path"], changed["admin_state_up"]) == (
            10, "200-299", "/ok", False)
        assert await api.refused("PUT", f"{MONITORS}/{web['id']}", {"healthmonitor": {"timeout": 11}}) == (
            400, "Validation failure: timeout 11 must not be longer than delay 10")
        assert await api.refused("PUT", f"{MONITORS}/{ping['id']}", {"healthmonitor": {"url_path": "/x"}}) == (
            400, "Validation failure: url_path is for HTTP health monitors, not PING")
        assert await api.refused("PUT", f"{MONITORS}/{ping['id']}", {"healthmonitor": {"type": "TCP"}}) == (
            400, "Invalid input: body.healthmonitor.type: Extra inputs are not permitted (got 'TCP')")
        assert [m["id"] for m in (await api.ok("GET", MONITORS, type="PING"))["healthmonitors"]] == [ping["id"]]
        await api.ok("DELETE", f"{MONITORS}/{ping['id']}")
        assert (await api.ok("GET", f"{POOLS}/{pools['TCP']['id']}"))["pool"]["healthmonitor_id"] is None
    run(go())


def test_the_expected_codes_reader():
    from kumoflow.api.neutron.lbaas import code_ranges

    assert code_ranges("200") == [(200, 200)]
    assert code_ranges("200, 202") == [(200, 200), (202, 202)]
    assert code_ranges("200-204") == [(200, 204)]
    for bad in ("", "2000", "200-", "99", "200;202", "200-204,206"):
        with pytest.raises(ValueError):
            code_ranges(bad)


# --- status, stats, the lb app ----------------------------------------------------------------------


def test_the_status_tree_and_stats_come_from_the_lb_app():
    async def go():
        lb_app = FakeLb()
        api = await _api(lb_app)
        t = await tree(api)
        lb, listener, pool, member, monitor = (t[k] for k in ("lb", "listener", "pool", "member", "monitor"))
        lb_app.states.update({("loadbalancer", lb["id"]): "DEGRADED", ("listener", listener["id"]): "ONLINE",
                              ("pool", pool["id"]): "DEGRADED", ("member", member["id"]): "ERROR",
                              ("healthmonitor", monitor["id"]): "ONLINE"})
        lb_app.counters[("loadbalancer", lb["id"])] = {"bytes_in": 10, "bytes_out": 20, "active_connections": 1,
                                                       "total_connections": 7, "request_errors": 0}
        lb_app.counters[("listener", listener["id"])] = {"bytes_in": 5, "total_connections": 3}
        status = await api.ok("GET", f"{LBS}/{lb['id']}/status")
        assert status == {"statuses": {"loadbalancer": {
            "id": lb["id"], "name": "web", "provisioning_status": "ACTIVE", "operating_status": "DEGRADED",
            "listeners": [{
                "id": listener["id"], "name": "http", "provisioning_status": "ACTIVE", "operating_status": "ONLINE",
                "pools": [{
                    "id": pool["id"], "name": "www", "provisioning_status": "ACTIVE", "operating_status": "DEGRADED",
                    "health_monitor": {"id": monitor["id"], "name": "", "type": "TCP",
                                       "provisioning_status": "ACTIVE", "operating_status": "ONLINE"},
                    "members": [{"id": member["id"], "name": "", "address": "10.0.0.10", "protocol_port": 8080,
                                 "provisioning_status": "ACTIVE", "operating_status": "ERROR"}]}]}]}}}
        assert (await api.ok("GET", f"{POOLS}/{pool['id']}/members/{member['id']}"))["member"][
            "operating_status"] == "ERROR"
        assert [m["id"] for m in (await api.ok("GET", f"{POOLS}/{pool['id']}/members",
                                               operating_status="ERROR"))["members"]] == [member["id"]]
        assert await api.ok("GET", f"{LBS}/{lb['id']}/stats") == {"stats": {
            "bytes_in": 10, "bytes_out": 20, "active_connections": 1, "total_connections": 7, "request_errors": 0}}
        assert await api.ok("GET", f"{LISTENERS}/{listener['id']}/stats") == {"stats": {
            "bytes_in": 5, "bytes_out": 0, "active_connections": 0, "total_connections": 3, "request_errors": 0}}
        # disabled is OFFLINE whatever the app says; what the app does not know (None) is OFFLINE
        await api.ok("PUT", f"{LISTENERS}/{listener['id']}", {"listener": {"admin_state_up": False}})
        del lb_app.states[("member", member["id"])]
        listeners = (await api.ok("GET", f"{LBS}/{lb['id']}/status"))["statuses"]["loadbalancer"]["listeners"]
        assert listeners[0]["operating_status"] == "OFFLINE"
        assert listeners[0]["pools"][0]["members"][0]["operating_status"] == "OFFLINE"
        assert (await api.ok("GET", f"{LBS}/{lb['id']}"))["loadbalancer"]["operating_status"] == "DEGRADED"
    run(go())


def test_without_an_lb_app_everything_is_offline_and_counts_nothing():
    async def go():
        api = await _api()
        t = await tree(api)
        statuses = (await api.ok("GET", f"{LBS}/{t['lb']['id']}/status"))["statuses"]
        loadbalancer = statuses["loadbalancer"]
        pool = loadbalancer["listeners"][0]["pools"][0]
        assert {loadbalancer["operating_status"], loadbalancer["listeners"][0]["operating_status"],
                pool["operating_status"], pool["health_monitor"]["operating_status"],
                pool["members"][0]["operating_status"]} == {"OFFLINE"}
        zero = {"stats": {"bytes_in": 0, "bytes_out": 0, "active_connections": 0, "total_connections": 0,
                          "request_errors": 0}}
        assert await api.ok("GET", f"{LBS}/{t['lb']['id']}/stats") == zero
        assert await api.ok("GET", f"{LISTENERS}/{t['listener']['id']}/stats") == zero
        # a pool of no listener is not in the tree (as in Octavia)
        await make(api, POOLS, "pool", loadbalancer_id=t["lb"]["id"], protocol="TCP", lb_algorithm="ROUND_ROBIN")
        assert len((await api.ok("GET", f"{LBS}/{t['lb']['id']}/status"))["statuses"]["loadbalancer"]["listeners"][0][
            "pools"]) == 1
        assert await api.refused("GET", f"{LBS}/nope/status") == (404, "Load Balancer nope not found.")
        assert await api.refused("GET", f"{LISTENERS}/nope/stats") == (404, "Listener nope not found.")
        assert await api.ok("GET", "/v2/lbaas/providers") == {"providers": [
            {"name": "kumoflow", "description": "kumoflow: load balancing in OpenFlow flows"}]}
    run(go())


# --- deleting ---------------------------------------------------------------------------------------


def test_a_load_balancer_goes_with_everything_under_it_only_when_asked():
    async def go():
        api = await _api()
        blue = await api.token("blue")
        t = await tree(api, blue)
        lb = t["lb"]
        assert await api.refused("DELETE", f"{LBS}/{lb['id']}", headers=blue) == (
            409, f"Cannot delete Load Balancer {lb['id']}: it has 1 listener(s) and 1 pool(s). Delete them first, or "
                 f"DELETE with ?cascade=true.")
        revision = api.store.revision
        await api.ok("DELETE", f"{LBS}/{lb['id']}?cascade=true", headers=blue)
        assert api.store.revision == revision + 1                  # one commit
        kinds = {r.kind for r in (await api.store.snapshot()).records}
        assert not kinds & set(STORED)
        assert (await api.ok("GET", "/v2.0/ports", headers=blue))["ports"] == []
    run(go())


def test_deleting_a_pool_takes_its_members_and_monitor_and_a_listener_leaves_its_pool():
    async def go():
        api = await _api()
        t = await tree(api)
        await api.ok("DELETE", f"{LISTENERS}/{t['listener']['id']}")
        assert (await api.ok("GET", f"{POOLS}/{t['pool']['id']}"))["pool"]["listeners"] == []
        listener = await make(api, LISTENERS, "listener", loadbalancer_id=t["lb"]["id"], protocol="HTTP",
                              protocol_port=80, default_pool_id=t["pool"]["id"])
        await api.ok("DELETE", f"{POOLS}/{t['pool']['id']}")
        assert (await api.ok("GET", f"{LISTENERS}/{listener['id']}"))["listener"]["default_pool_id"] is None
        kinds = {r.kind for r in (await api.store.snapshot()).records}
        assert not kinds & {"pool", "member", "healthmonitor"}
        # the load balancer has a listener still: refused without cascade
        assert (await api.refused("DELETE", f"{LBS}/{t['lb']['id']}"))[0] == 409
        await api.ok("DELETE", f"{LISTENERS}/{listener['id']}")
        await api.ok("DELETE", f"{LBS}/{t['lb']['id']}")
    run(go())


def test_what_a_load_balancer_uses_cannot_go():
    async def go():
        api = await _api()
        t = await tree(api)
        lb, subnet, net, member = t["lb"], t["subnet"], t["net"], t["member"]
        refused = [
            ("DELETE", f"/v2.0/ports/{lb['vip_port_id']}", None, 409,
             f"Port {lb['vip_port_id']} holds the VIP of load balancer {lb['id']}: it goes with the load balancer "
             f"(DELETE /v2/lbaas/loadbalancers/{lb['id']})."),
            ("PUT", f"/v2.0/ports/{lb['vip_port_id']}", {"port": {"fixed_ips": [{"subnet_id": subnet["id"]}]}}, 409,
             f"Port {lb['vip_port_id']} holds the VIP 10.0.0.2 of load balancer {lb['id']}; its fixed_ips must keep "
             f"it."),
            ("DELETE", f"/v2.0/subnets/{subnet['id']}", None, 409,
             f"Unable to complete operation on subnet {subnet['id']}: One or more ports have an IP allocation from "
             f"this subnet."),
        ]
        for method, path, body, status, message in refused:
            before = api.store.revision
            r = await api.do(method, path, body)
            assert (r.status_code, r.json()["NeutronError"]["message"]) == (status, message), path
            assert api.store.revision == before
        # a member's subnet on another network, which holds no port
        back_net, back = await network(api, ADMIN, "10.5.0.0/24")
        far = await make(api, f"{POOLS}/{t['pool']['id']}/members", "member", address="10.5.0.5", protocol_port=80)
        for path, message in ((f"/v2.0/subnets/{back['id']}",
                               f"Unable to complete operation on subnet {back['id']}: load balancer member {far['id']} "
                               f"(pool {t['pool']['id']}) is on it."),
                              (f"/v2.0/networks/{back_net['id']}",
                               f"Unable to complete operation on network {back_net['id']}. Load balancer member "
                               f"{far['id']} (pool {t['pool']['id']}) is on subnet {back['id']}.")):
            before = api.store.revision
            r = await api.do("DELETE", path)
            assert (r.status_code, r.json()["NeutronError"]["message"]) == (409, message)
            assert api.store.revision == before
        await api.ok("DELETE", f"{POOLS}/{t['pool']['id']}/members/{far['id']}")
        await api.ok("DELETE", f"/v2.0/networks/{back_net['id']}")
        # the VIP port may change otherwise (its name), and keeps its address
        await api.ok("PUT", f"/v2.0/ports/{lb['vip_port_id']}", {"port": {"name": "vip"}})
        await api.ok("DELETE", f"{LBS}/{lb['id']}?cascade=true")
        await api.ok("DELETE", f"/v2.0/networks/{net['id']}")
        assert member["subnet_id"] == subnet["id"]
    run(go())


# --- projects and errors ----------------------------------------------------------------------------


def test_projects_see_and_change_their_own_only():
    async def go():
        api = await _api()
        blue, red = await api.token("blue"), await api.token("red")
        t = await tree(api, blue)
        mine = await tree(api, red, "10.1.0.0/24")
        for path, key, name in ((LBS, "loadbalancers", "lb"), (LISTENERS, "listeners", "listener"),
                                (POOLS, "pools", "pool"), (MONITORS, "healthmonitors", "monitor")):
            item = t[name]
            assert [x["id"] for x in (await api.ok("GET", path, headers=red))[key]] == [mine[name]["id"]]
            assert len((await api.ok("GET", path))[key]) == 2                     # the admin sees all
            status, message = await api.refused("GET", f"{path}/{item['id']}", headers=red)
            assert status == 404 and message.endswith(f"{item['id']} not found."), message
            assert (await api.refused("DELETE", f"{path}/{item['id']}", headers=red))[0] == 404
        single = {LBS: "loadbalancer", LISTENERS: "listener", POOLS: "pool", MONITORS: "healthmonitor"}
        for path, item in ((LBS, t["lb"]), (LISTENERS, t["listener"]), (POOLS, t["pool"]), (MONITORS, t["monitor"])):
            assert (await api.refused("PUT", f"{path}/{item['id']}", {single[path]: {"name": "x"}}, red))[0] == 404
        members = f"{POOLS}/{t['pool']['id']}/members"
        assert (await api.refused("GET", members, headers=red))[0] == 404
        assert (await api.refused("POST", members, {"member": {"address": "10.1.0.9", "protocol_port": 1}}, red))[
            0] == 404
        assert (await api.refused("PUT", members, {"members": []}, red))[0] == 404
        assert (await api.refused("GET", f"{members}/{t['member']['id']}", headers=red))[0] == 404
        assert (await api.refused("POST", LISTENERS, {"listener": {"loadbalancer_id": t["lb"]["id"],
                                                                   "protocol": "TCP", "protocol_port": 9}}, red))[
            0] == 404
        assert (await api.refused("POST", MONITORS, {"healthmonitor": {
            "pool_id": t["pool"]["id"], "type": "TCP", "delay": 1, "timeout": 1, "max_retries": 1}}, red))[0] == 404
        assert (await api.refused("GET", f"{LBS}/{t['lb']['id']}/status", headers=red))[0] == 404
        # a pool on another project's listener is refused as a missing listener
        assert await api.refused("POST", POOLS, {"pool": {"listener_id": t["listener"]["id"], "protocol": "HTTP",
                                                          "lb_algorithm": "ROUND_ROBIN"}}, red) == (
            404, f"Listener {t['listener']['id']} not found.")
        # the admin makes a project's load balancer; what goes under it is that project's
        net, subnet = await network(api, blue, "10.3.0.0/24")
        lb = await make(api, LBS, "loadbalancer", vip_subnet_id=subnet["id"], project_id="blue")
        listener = await make(api, LISTENERS, "listener", loadbalancer_id=lb["id"], protocol="TCP", protocol_port=1)
        assert (lb["project_id"], listener["project_id"]) == ("blue", "blue")
        port = (await api.ok("GET", f"/v2.0/ports/{lb['vip_port_id']}", headers=blue))["port"]
        assert port["project_id"] == "blue"
        assert await api.refused("POST", LISTENERS, {"listener": {"loadbalancer_id": lb["id"], "protocol": "TCP",
                                                                  "protocol_port": 2, "project_id": "red"}}) == (
            400, "Validation failure: project_id red is not the load balancer's (blue)")
        assert (await api.ok("GET", LISTENERS, project_id="blue", protocol_port="1"))["listeners"][0]["id"] == \
            listener["id"]
    run(go())


def test_errors_under_lbaas_have_octavias_body_and_neutrons_keep_theirs():
    async def go():
        api = await _api()
        r = await api.http.get(LBS)                                  # no token
        assert (r.status_code, r.json()) == (401, {"faultcode": "Client", "debuginfo": None,
                                                   "faultstring": "Authentication required: no X-Auth-Token header."})
        r = await api.http.get("/v2/lbaas/nothing", headers=ADMIN)
        assert r.status_code == 404 and r.json()["faultstring"] == "The resource could not be found: /v2/lbaas/nothing"
        r = await api.http.post(LBS, headers=ADMIN, content=b"{not json")
        assert r.status_code == 400 and set(r.json()) == {"faultcode", "faultstring", "debuginfo"}
        r = await api.http.patch(LBS, headers=ADMIN)
        assert r.status_code == 405 and r.json()["faultcode"] == "Client"
        r = await api.http.get(LBS, headers=ADMIN, params={"colour": "red"})
        assert (r.status_code, r.json()["faultstring"]) == (400, "['colour'] is invalid attribute for filtering.")
        r = await api.http.get("/v2.0/networks/nope", headers=ADMIN)
        assert r.json()["NeutronError"]["type"] == "NetworkNotFound"
        paths = set((await api.http.get("/openapi.json")).json()["paths"])
        assert {LBS, f"{LBS}/{{loadbalancer_id}}", f"{LBS}/{{loadbalancer_id}}/status",
                f"{LBS}/{{loadbalancer_id}}/stats", LISTENERS, f"{LISTENERS}/{{listener_id}}",
                f"{LISTENERS}/{{listener_id}}/stats", POOLS, f"{POOLS}/{{pool_id}}", f"{POOLS}/{{pool_id}}/members",
                f"{POOLS}/{{pool_id}}/members/{{member_id}}", MONITORS, f"{MONITORS}/{{healthmonitor_id}}",
                "/v2/lbaas/providers"} <= paths
    run(go())


def test_lists_page_and_sort_as_the_other_resources():
    async def go():
        api = await _api()
        net, subnet = await network(api, ADMIN)
        made = [await make(api, LBS, "loadbalancer", name=f"lb{i}", vip_subnet_id=subnet["id"]) for i in range(3)]
        page = await api.ok("GET", LBS, limit="2", sort_key="name", sort_dir="desc")
        assert [x["name"] for x in page["loadbalancers"]] == ["lb2", "lb1"]
        assert page["loadbalancers_links"][0]["rel"] == "next"
        assert [x["id"] for x in (await api.ok("GET", LBS, name="lb1"))["loadbalancers"]] == [made[1]["id"]]
    run(go())


# --- kumoflow apply ---------------------------------------------------------------------------------

APPLY = """\
name: shop
project: blue
networks: [{name: front}]
subnets: [{name: front-v4, network: front, cidr: 10.50.0.0/24}]
loadbalancers:
  - name: web
    vip_subnet: front-v4
    vip_address: 10.50.0.100
    tags: [prod]
    listeners:
      - {name: http, protocol: HTTP, protocol_port: 80, default_pool: www, timeout_client_data: 30000}
    pools:
      - name: www
        protocol: http
        lb_algorithm: ROUND_ROBIN
        session_persistence: {type: SOURCE_IP}
        members:
          - {address: 10.50.0.10, protocol_port: 8080, weight: 2}
          - {address: 10.50.0.11, protocol_port: 8080, subnet: front-v4}
        healthmonitor: {type: HTTP, delay: 5, timeout: 3, max_retries: 3, url_path: /health, http_version: 1.1}
"""


class SyncApi:
    """kumoflow.apply's httpx.Client, over the in-process API on its own event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.api = self.loop.run_until_complete(_api())

    def request(self, method: str, path: str, **kw) -> httpx.Response:
        return self.loop.run_until_complete(self.api.http.request(method, path, **kw))

    def get(self, path: str, **params) -> dict:
        return self.request("GET", path, params=params, headers=ADMIN).json()

    def close(self) -> None:
        self.loop.run_until_complete(self.api.http.aclose())
        self.loop.close()


def test_kumoflow_apply_makes_load_balancers_with_what_is_under_them():
    from kumoflow.apply import Client, apply, parse

    sync = SyncApi()
    client = Client("http://kumoflow", "admin-secret", client=sync)
    try:
        first = apply(parse(APPLY, "shop.yaml"), client)
        assert first == ["created network front", "created subnet front-v4", "created load balancer web",
                         "created pool www of load balancer web",
                         "created member 10.50.0.10:8080 of pool www of load balancer web",
                         "created member 10.50.0.11:8080 of pool www of load balancer web",
                         "created the health monitor of pool www of load balancer web",
                         "created listener http of load balancer web"]
        [lb] = sync.get(LBS, project_id="blue")["loadbalancers"]
        assert (lb["vip_address"], lb["project_id"], sorted(lb["tags"])) == ("10.50.0.100", "blue",
                                                                             ["kumoflow-apply:shop", "prod"])
        [listener] = sync.get(LISTENERS, loadbalancer_id=lb["id"])["listeners"]
        [pool] = sync.get(POOLS, loadbalancer_id=lb["id"])["pools"]
        assert (listener["default_pool_id"], listener["timeout_client_data"], pool["protocol"]) == (
            pool["id"], 30000, "HTTP")
        monitor = sync.get(f"{MONITORS}/{pool['healthmonitor_id']}")["healthmonitor"]
        assert (monitor["url_path"], monitor["http_version"]) == ("/health", 1.1)
        weights = {m["address"]: m["weight"] for m in sync.get(f"{POOLS}/{pool['id']}/members")["members"]}
        assert weights == {"10.50.0.10": 2, "10.50.0.11": 1}
        assert apply(parse(APPLY, "shop.yaml"), client) == []                   # nothing to change

        changed = APPLY.replace("weight: 2", "weight: 3").replace(
            "          - {address: 10.50.0.11, protocol_port: 8080, subnet: front-v4}\n",
            "          - {address: 10.50.0.12, protocol_port: 8080}\n").replace(
            "type: HTTP, delay: 5, timeout: 3, max_retries: 3, url_path: /health, http_version: 1.1",
            "type: TCP, delay: 5, timeout: 3, max_retries: 3")
        second = apply(parse(changed, "shop.yaml"), client)
        assert second == [
            "deleted member 10.50.0.11:8080 of pool www of load balancer web",
            "updated member 10.50.0.10:8080 of pool www of load balancer web: weight",
            "created member 10.50.0.12:8080 of pool www of load balancer web",
            "deleted the HTTP health monitor of pool www of load balancer web",
            "created the health monitor of pool www of load balancer web"], second
        assert apply(parse(changed, "shop.yaml"), client) == []
        # a listener's port is fixed: the message says to rename it, and where
        from kumoflow.apply import ApplyError
        with pytest.raises(ApplyError) as failed:
            apply(parse(changed.replace("protocol_port: 80,", "protocol_port: 8001,"), "shop.yaml"), client)
        assert "shop.yaml:11: loadbalancers[0].listeners[0].protocol_port: cannot change once the listener exists " \
               "(80 -> 8001)" in str(failed.value)
        renamed = apply(parse(changed.replace("{name: http, protocol: HTTP, protocol_port: 80,",
                                              "{name: http2, protocol: HTTP, protocol_port: 8001,"), "shop.yaml"),
                        client)
        assert renamed == ["deleted listener http of load balancer web", "created listener http2 of load balancer web"]
        # gone from the file: the load balancer goes with everything under it, then its subnet
        assert apply(parse("name: shop\nproject: blue\n", "shop.yaml"), client) == [
            "deleted load balancer web", "deleted subnet front-v4", "deleted network front"]
        assert sync.get(LBS)["loadbalancers"] == [] and sync.get("/v2.0/ports")["ports"] == []
        # what the API refuses is reported at the line that asked for it
        with pytest.raises(ApplyError) as failed:
            apply(parse(APPLY.replace("protocol: http\n", "protocol: https\n"), "shop.yaml"), client)
        assert "shop.yaml:13: loadbalancers[0].pools[0]: the API refused POST /v2/lbaas/pools: Validation failure: " \
               "protocol 'HTTPS' is not available: kumoflow does not terminate TLS" in str(failed.value), failed.value
        apply(parse("name: shop\nproject: blue\n", "shop.yaml"), client)
        assert sync.get(LBS)["loadbalancers"] == []
    finally:
        sync.close()
