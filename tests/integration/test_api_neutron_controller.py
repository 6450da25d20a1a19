"""The Neutron resources of a real `kumoflow controller --api 127.0.0.1:0
--store sqlite:TMP` process: every resource's create/show/list/update/delete
with Neutron's defaults, filters and fields, project isolation with two
project tokens, error bodies, everything still there after a restart on the
same store file; schemathesis against /openapi.json.

No root needed, except to bring up an emulated switch whose host's port the
emulator binds. Nothing asserts how fast anything is.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from controller_process import SRC, ControllerProcess
from test_fabric_emulator import wait_until

PROJECT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ADMIN = "neutron-admin-secret"


class Client:
    """httpx with a token; each call returns (status, json or None)."""

    def __init__(self, url: str, token: str | None) -> None:
        self.http = httpx.Client(base_url=url, timeout=30, headers={"X-Auth-Token": token} if token else {})

    def _do(self, method: str, path: str, **kw):
        r = self.http.request(method, path, **kw)
        return r.status_code, (r.json() if r.content else None)

    def get(self, path, **params):
        return self._do("GET", path, params=params)

    def post(self, path, body):
        return self._do("POST", path, json=body)

    def put(self, path, body):
        return self._do("PUT", path, json=body)

    def delete(self, path):
        return self._do("DELETE", path)

    def ok(self, method: str, path: str, body=None, status: int | None = None, **params):
        want = status or {"POST": 201, "DELETE": 204}.get(method, 200)
        code, data = self._do(method, path, params=params, **({"json": body} if body is not None else {}))
        assert code == want, (method, path, code, data)
        return data


def neutron_error(data) -> dict:
    assert set(data) == {"NeutronError"}, data
    assert set(data["NeutronError"]) == {"type", "message", "detail"}, data
    return data["NeutronError"]


def start_controller(tmp_path: Path, store: str | None = None) -> ControllerProcess:
    controller = ControllerProcess(apps=("l2",), log=tmp_path / "controller.log",
                                   args=("--api", "127.0.0.1:0", "--admin-token", ADMIN))
    if store is not None:
        controller.store = store
    return controller.start()


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("neutron")
    controller = start_controller(tmp)
    try:
        admin = Client(controller.status["api"], ADMIN)
        tokens = {}
        for project in ("blue", "red"):
            issued = admin.ok("POST", "/v2.0/tokens", {"token": {"project_id": project}})
            tokens[project] = issued["token"]["token"]
        yield controller, admin, {p: Client(controller.status["api"], t) for p, t in tokens.items()}
    finally:
        assert controller.stop() == 0


# --- every resource ---------------------------------------------------------------------------------


def test_networks_with_neutrons_defaults_and_segmentation_ids(api):
    _, admin, projects = api
    blue = projects["blue"]
    net = blue.ok("POST", "/v2.0/networks", {"network": {"name": "n1"}})["network"]
    assert net["tenant_id"] == net["project_id"] == "blue"
    assert PROJECT_ID.match(net["id"])
    assert (net["admin_state_up"], net["status"], net["shared"], net["subnets"], net["router:external"]) == (
        True, "ACTIVE", False, [], False)
    assert net["provider:network_type"] == "vxlan" and net["mtu"] == 1450
    assert 1 <= net["provider:segmentation_id"] <= 16777215
    assert net["revision_number"] == 0 and net["created_at"] and net["updated_at"]

    nvgre = blue.ok("POST", "/v2.0/networks", {"network": {"name": "n2", "provider:network_type": "nvgre"}})["network"]
    assert nvgre["provider:network_type"] == "nvgre" and nvgre["mtu"] == 1458
    vlan = admin.ok("POST", "/v2.0/networks", {"network": {"name": "v", "provider:network_type": "vlan",
                                                           "provider:segmentation_id": 100}})["network"]
    assert (vlan["provider:segmentation_id"], vlan["mtu"], vlan["project_id"]) == (100, 1500, "admin")
    code, data = admin.post("/v2.0/networks", {"network": {"provider:network_type": "vlan",
                                                           "provider:segmentation_id": 100}})
    assert code == 409 and neutron_error(data)["type"] == "VlanIdInUse"
    code, data = admin.post("/v2.0/networks", {"network": {"provider:network_type": "vxlan",
                                                           "provider:segmentation_id": net["provider:segmentation_id"]}})
    assert code == 409 and neutron_error(data)["type"] == "TunnelIdInUse"
    code, data = admin.post("/v2.0/networks", {"network": {"provider:network_type": "vlan",
                                                           "provider:segmentation_id": 4095}})
    assert code == 400 and neutron_error(data)["type"] == "InvalidInput"
    code, data = admin.post("/v2.0/networks", {"network": {"provider:network_type": "geneve"}})
    assert code == 400
    flat = admin.ok("POST", "/v2.0/networks", {"network": {"provider:network_type": "flat",
                                                           "provider:physical_network": "physnet9"}})["network"]
    assert flat["provider:segmentation_id"] is None
    # a project may not choose the id, share, or make an external network
    for extra in ({"provider:segmentation_id": 7}, {"shared": True}, {"router:external": True}):
        code, data = blue.post("/v2.0/networks", {"network": extra})
        assert code == 403 and neutron_error(data)["type"] == "PolicyNotAuthorized", extra

    # show, update (revision number moves), delete
    assert blue.ok("GET", f"/v2.0/networks/{net['id']}")["network"] == net
    updated = blue.ok("PUT", f"/v2.0/networks/{net['id']}", {"network": {"name": "n1b", "admin_state_up": False}})
    assert updated["network"]["name"] == "n1b" and updated["network"]["status"] == "DOWN"
    assert updated["network"]["revision_number"] == 1
    code, data = blue.put(f"/v2.0/networks/{net['id']}", {"network": {"provider:segmentation_id": 5}})
    assert code == 400                                          # read-only after create
    for n in (net, nvgre):
        blue.ok("DELETE", f"/v2.0/networks/{n['id']}")
    for n in (vlan, flat):
        admin.ok("DELETE", f"/v2.0/networks/{n['id']}")
    code, data = blue.get(f"/v2.0/networks/{net['id']}")
    assert code == 404 and neutron_error(data)["type"] == "NetworkNotFound"


def test_bulk_create_is_all_or_nothing(api):
    _, _, projects = api
    red = projects["red"]
    made = red.ok("POST", "/v2.0/networks", {"networks": [{"name": "b1"}, {"name": "b2"}]})["networks"]
    assert [n["name"] for n in made] == ["b1", "b2"]
    assert made[0]["provider:segmentation_id"] != made[1]["provider:segmentation_id"]
    net = made[0]["id"]
    subnet = red.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": net, "cidr": "10.9.0.0/29"}})["subnet"]
    ports = red.ok("POST", "/v2.0/ports", {"ports": [{"network_id": net}, {"network_id": net}]})["ports"]
    assert len({p["fixed_ips"][0]["ip_address"] for p in ports}) == 2
    before = red.ok("GET", "/v2.0/ports", network_id=net)["ports"]
    # the second port asks for an address the first one takes: nothing of the request is written
    code, data = red.post("/v2.0/ports", {"ports": [
        {"network_id": net, "fixed_ips": [{"ip_address": "10.9.0.6"}]},
        {"network_id": net, "fixed_ips": [{"ip_address": "10.9.0.6"}]}]})
    assert code == 409 and neutron_error(data)["type"] == "IpAddressAlreadyAllocated"
    assert red.ok("GET", "/v2.0/ports", network_id=net)["ports"] == before
    code, data = red.post("/v2.0/networks", {"network": {}, "networks": [{}]})
    assert code == 400
    for p in ports:
        red.ok("DELETE", f"/v2.0/ports/{p['id']}")
    red.ok("DELETE", f"/v2.0/subnets/{subnet['id']}")
    for n in made:
        red.ok("DELETE", f"/v2.0/networks/{n['id']}")


def test_subnets_gateway_pools_and_their_checks(api):
    _, _, projects = api
    blue = projects["blue"]
    net = blue.ok("POST", "/v2.0/networks", {"network": {"name": "s"}})["network"]["id"]
    s4 = blue.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": net, "cidr": "10.1.0.0/24", "name": "a"}})["subnet"]
    assert (s4["ip_version"], s4["gateway_ip"], s4["allocation_pools"], s4["enable_dhcp"]) == (
        4, "10.1.0.1", [{"start": "10.1.0.2", "end": "10.1.0.254"}], True)
    assert (s4["dns_nameservers"], s4["host_routes"], s4["ipv6_ra_mode"]) == ([], [], None)
    s6 = blue.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": net, "cidr": "fd00:1::/64",
                                                       "ipv6_address_mode": "dhcpv6-stateful"}})["subnet"]
    assert (s6["ip_version"], s6["gateway_ip"]) == (6, "fd00:1::1")
    assert s6["allocation_pools"] == [{"start": "fd00:1::2", "end": "fd00:1::ffff:ffff:ffff:ffff"}]
    nogw = blue.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": net, "cidr": "10.2.0.0/28",
                                                         "gateway_ip": None}})["subnet"]
    assert nogw["gateway_ip"] is None and nogw["allocation_pools"] == [{"start": "10.2.0.1", "end": "10.2.0.14"}]
    mid = blue.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": net, "cidr": "10.3.0.0/28",
                                                        "gateway_ip": "10.3.0.7"}})["subnet"]
    assert mid["allocation_pools"] == [{"start": "10.3.0.1", "end": "10.3.0.6"}, {"start": "10.3.0.8",
                                                                                   "end": "10.3.0.14"}]
    network = blue.ok("GET", f"/v2.0/networks/{net}")["network"]
    assert network["subnets"] == [s4["id"], s6["id"], nogw["id"], mid["id"]]

    def refused(body, status, type):
        code, data = blue.post("/v2.0/subnets", {"subnet": {"network_id": net, **body}})
        assert code == status and neutron_error(data)["type"] == type, (body, data)

    refused({"cidr": "10.1.0.0/25"}, 400, "InvalidInput")                         # overlaps a subnet of the network
    refused({"cidr": "10.4.0.1/24"}, 400, "InvalidInput")                         # host bits
    refused({"cidr": "10.4.0.0/24", "ip_version": 6}, 400, "InvalidInput")
    refused({"cidr": "10.4.0.0/24", "gateway_ip": "10.5.0.1"}, 400, "InvalidInput")
    refused({"cidr": "10.4.0.0/24", "allocation_pools": [{"start": "10.4.0.1", "end": "10.4.0.9"}]}, 409,
            "GatewayConflictWithAllocationPools")
    refused({"cidr": "10.4.0.0/24", "allocation_pools": [{"start": "10.4.0.10", "end": "10.4.1.9"}]}, 400,
            "OutOfBoundsAllocationPool")
    refused({"cidr": "10.4.0.0/24", "allocation_pools": [{"start": "10.4.0.10", "end": "10.4.0.20"},
                                                         {"start": "10.4.0.15", "end": "10.4.0.30"}]}, 409,
            "OverlappingAllocationPools")
    code, data = blue.post("/v2.0/subnets", {"subnet": {"network_id": "nope", "cidr": "10.4.0.0/24"}})
    assert code == 404 and neutron_error(data)["type"] == "NetworkNotFound"

    # another network may overlap: tenants choose their addresses
    other = blue.ok("POST", "/v2.0/networks", {"network": {}})["network"]["id"]
    dup = blue.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": other, "cidr": "10.1.0.0/24"}})["subnet"]

    up = blue.ok("PUT", f"/v2.0/subnets/{s4['id']}", {"subnet": {"name": "a2", "dns_nameservers": ["10.1.0.53"],
                                                                  "allocation_pools": [{"start": "10.1.0.100",
                                                                                        "end": "10.1.0.199"}]}})
    assert up["subnet"]["allocation_pools"] == [{"start": "10.1.0.100", "end": "10.1.0.199"}]
    assert up["subnet"]["dns_nameservers"] == ["10.1.0.53"] and up["subnet"]["revision_number"] == 1
    code, data = blue.put(f"/v2.0/subnets/{s4['id']}", {"subnet": {"cidr": "10.7.0.0/24"}})
    assert code == 400
    code, data = blue.put(f"/v2.0/subnets/{s4['id']}", {"subnet": {"gateway_ip": "10.1.0.150"}})
    assert code == 409 and neutron_error(data)["type"] == "GatewayConflictWithAllocationPools"

    # a port takes the next free address of the new pool; the subnet is then in use
    port = blue.ok("POST", "/v2.0/ports", {"port": {"network_id": net, "fixed_ips": [{"subnet_id": s4["id"]}]}})
    assert port["port"]["fixed_ips"] == [{"subnet_id": s4["id"], "ip_address": "10.1.0.100"}]
    code, data = blue.delete(f"/v2.0/subnets/{s4['id']}")
    assert code == 409 and neutron_error(data)["type"] == "SubnetInUse"
    code, data = blue.delete(f"/v2.0/networks/{net}")
    assert code == 409 and neutron_error(data)["type"] == "NetworkInUse"
    blue.ok("DELETE", f"/v2.0/ports/{port['port']['id']}")
    blue.ok("DELETE", f"/v2.0/subnets/{s4['id']}")
    blue.ok("DELETE", f"/v2.0/networks/{net}")                  # its other subnets go with it
    for s in (s6, nogw, mid):
        assert blue.get(f"/v2.0/subnets/{s['id']}")[0] == 404
    assert blue.ok("GET", f"/v2.0/subnets/{dup['id']}")["subnet"]["cidr"] == "10.1.0.0/24"
    blue.ok("DELETE", f"/v2.0/networks/{other}")


def test_ports_addresses_macs_groups_and_binding(api):
    _, admin, projects = api
    blue = projects["blue"]
    net = blue.ok("POST", "/v2.0/networks", {"network": {"name": "p"}})["network"]["id"]
    s4 = blue.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": net, "cidr": "192.168.5.0/24"}})["subnet"]["id"]
    s6 = blue.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": net, "cidr": "fd00:5::/64"}})["subnet"]["id"]
    port = blue.ok("POST", "/v2.0/ports", {"port": {"network_id": net, "name": "vm1", "device_id": "vm-1",
                                                    "device_owner": "compute:nova"}})["port"]
    assert re.match(r"^fa:16:3e(:[0-9a-f]{2}){3}$", port["mac_address"])
    assert port["fixed_ips"] == [{"subnet_id": s4, "ip_address": "192.168.5.2"},
                                 {"subnet_id": s6, "ip_address": "fd00:5::2"}]
    assert (port["status"], port["admin_state_up"], port["port_security_enabled"]) == ("DOWN", True, True)
    assert (port["binding:host_id"], port["binding:profile"], port["binding:vif_type"]) == ("", {}, "unbound")
    [group] = port["security_groups"]
    default = blue.ok("GET", f"/v2.0/security-groups/{group}")["security_group"]
    assert default["name"] == "default" and default["project_id"] == "blue"
    rules = {(r["direction"], r["ethertype"], r["remote_group_id"]) for r in default["security_group_rules"]}
    assert rules == {("egress", "IPv4", None), ("egress", "IPv6", None), ("ingress", "IPv4", group),
                     ("ingress", "IPv6", group)}
    # a second port: the next addresses, another MAC, the same default group
    second = blue.ok("POST", "/v2.0/ports", {"port": {"network_id": net}})["port"]
    assert second["fixed_ips"][0]["ip_address"] == "192.168.5.3" and second["mac_address"] != port["mac_address"]
    assert second["security_groups"] == [group]

    def refused(body, status, type):
        code, data = blue.post("/v2.0/ports", {"port": {"network_id": net, **body}})
        assert code == status and neutron_error(data)["type"] == type, (body, data)

    refused({"fixed_ips": [{"ip_address": "192.168.5.2"}]}, 409, "IpAddressAlreadyAllocated")
    refused({"fixed_ips": [{"ip_address": "192.168.5.1"}]}, 409, "IpAddressAlreadyAllocated")   # the gateway
    refused({"fixed_ips": [{"ip_address": "192.168.6.9"}]}, 400, "InvalidIpForNetwork")
    refused({"fixed_ips": [{"subnet_id": s4, "ip_address": "fd00:5::9"}]}, 400, "InvalidIpForSubnet")
    refused({"fixed_ips": [{"subnet_id": "not-a-subnet"}]}, 400, "InvalidInput")
    refused({"mac_address": port["mac_address"]}, 409, "MacAddressInUse")
    refused({"mac_address": "01:00:5e:00:00:01"}, 400, "HTTPBadRequest")
    refused({"security_groups": ["no-such-group"]}, 404, "SecurityGroupNotFound")
    refused({"binding:host_id": "s1"}, 403, "PolicyNotAuthorized")           # binding is the admin's
    fixed = blue.ok("POST", "/v2.0/ports", {"port": {"network_id": net, "mac_address": "02:00:00:00:00:01",
                                                     "fixed_ips": [{"subnet_id": s4, "ip_address": "192.168.5.77"}],
                                                     "port_security_enabled": False}})["port"]
    assert fixed["fixed_ips"] == [{"subnet_id": s4, "ip_address": "192.168.5.77"}]
    assert fixed["security_groups"] == [] and fixed["mac_address"] == "02:00:00:00:00:01"
    none = blue.ok("POST", "/v2.0/ports", {"port": {"network_id": net, "fixed_ips": []}})["port"]
    assert none["fixed_ips"] == []

    # update: addresses, name; binding by the admin (no such switch: the port stays DOWN)
    moved = blue.ok("PUT", f"/v2.0/ports/{second['id']}", {"port": {
        "name": "vm2", "fixed_ips": [{"subnet_id": s4, "ip_address": "192.168.5.50"}]}})["port"]
    assert moved["fixed_ips"] == [{"subnet_id": s4, "ip_address": "192.168.5.50"}]
    assert moved["name"] == "vm2" and moved["revision_number"] == 1
    again = blue.ok("POST", "/v2.0/ports", {"port": {"network_id": net, "fixed_ips": [{"ip_address":
                                                                                         "192.168.5.3"}]}})["port"]
    bound = admin.ok("PUT", f"/v2.0/ports/{port['id']}", {"port": {"binding:host_id": "s1",
                                                                  "binding:profile": {"interface": "s1-eth1"}}})
    assert bound["port"]["binding:host_id"] == "s1" and bound["port"]["binding:vif_type"] == "other"
    assert bound["port"]["status"] == "DOWN"                  # no switch s1 is connected
    code, data = admin.put(f"/v2.0/ports/{port['id']}", {"port": {"binding:profile": {"port_no": "x"}}})
    assert code == 400

    # filters: repeated keys are OR, keys AND; fixed_ips; fields
    names = lambda **q: sorted(p["name"] for p in blue.ok("GET", "/v2.0/ports", **q)["ports"])
    assert names(network_id=net, name=["vm1", "vm2"]) == ["vm1", "vm2"]
    assert names(network_id=net, name="vm1", device_owner="compute:nova") == ["vm1"]
    assert names(network_id=net, name="vm1", device_owner="") == []
    assert names(fixed_ips="ip_address=192.168.5.50") == ["vm2"]
    assert len(names(network_id=net, security_groups=group)) == 4     # all but the one without port security
    assert len(names(network_id=net, port_security_enabled="false")) == 1
    code, data = blue.get("/v2.0/ports", port_security_enabled="maybe")
    assert code == 400
    code, data = blue.get("/v2.0/ports", no_such_attribute="x")
    assert code == 400 and neutron_error(data)
    picked = blue.ok("GET", "/v2.0/ports", name="vm1", fields=["id", "mac_address"])["ports"]
    assert picked == [{"id": port["id"], "mac_address": port["mac_address"]}]
    assert blue.ok("GET", f"/v2.0/ports/{port['id']}", fields="name")["port"] == {"name": "vm1"}

    for p in (port, second, fixed, none, again):
        blue.ok("DELETE", f"/v2.0/ports/{p['id']}")
    code, data = blue.delete(f"/v2.0/ports/{port['id']}")
    assert code == 404 and neutron_error(data)["type"] == "PortNotFound"
    blue.ok("DELETE", f"/v2.0/networks/{net}")


def test_routers_interfaces_routes_and_gateway(api):
    _, admin, projects = api
    blue = projects["blue"]
    net = blue.ok("POST", "/v2.0/networks", {"network": {}})["network"]["id"]
    subnet = blue.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": net, "cidr": "10.20.0.0/24"}})["subnet"]
    net2 = blue.ok("POST", "/v2.0/networks", {"network": {}})["network"]["id"]
    subnet2 = blue.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": net2, "cidr": "10.21.0.0/24"}})["subnet"]
    external = admin.ok("POST", "/v2.0/networks", {"network": {"name": "public", "router:external": True}})["network"]
    admin.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": external["id"], "cidr": "203.0.113.0/24"}})

    router = blue.ok("POST", "/v2.0/routers", {"router": {"name": "r1"}})["router"]
    assert (router["status"], router["admin_state_up"], router["external_gateway_info"], router["routes"]) == (
        "ACTIVE", True, None, [])
    added = blue.ok("PUT", f"/v2.0/routers/{router['id']}/add_router_interface", {"subnet_id": subnet["id"]})
    assert (added["id"], added["subnet_id"], added["network_id"]) == (router["id"], subnet["id"], net)
    port = blue.ok("GET", f"/v2.0/ports/{added['port_id']}")["port"]
    assert port["device_owner"] == "network:router_interface" and port["device_id"] == router["id"]
    assert port["fixed_ips"] == [{"subnet_id": subnet["id"], "ip_address": "10.20.0.1"}]
    code, data = blue.put(f"/v2.0/routers/{router['id']}/add_router_interface", {"subnet_id": subnet["id"]})
    assert code == 400
    # an interface from a port made beforehand
    own = blue.ok("POST", "/v2.0/ports", {"port": {"network_id": net2}})["port"]
    by_port = blue.ok("PUT", f"/v2.0/routers/{router['id']}/add_router_interface", {"port_id": own["id"]})
    assert by_port["port_id"] == own["id"] and by_port["subnet_id"] == subnet2["id"]

    code, data = blue.delete(f"/v2.0/ports/{added['port_id']}")
    assert code == 409 and neutron_error(data)["type"] == "L3PortInUse"
    code, data = blue.delete(f"/v2.0/routers/{router['id']}")
    assert code == 409 and neutron_error(data)["type"] == "RouterInUse"
    code, data = blue.delete(f"/v2.0/subnets/{subnet['id']}")
    assert code == 409 and neutron_error(data)["type"] == "SubnetInUse"

    # extra routes need a connected next hop; the gateway takes an address of the external network
    code, data = blue.put(f"/v2.0/routers/{router['id']}", {"router": {"routes": [
        {"destination": "172.16.0.0/16", "nexthop": "10.99.0.5"}]}})
    assert code == 400 and neutron_error(data)["type"] == "InvalidRoutes"
    routed = blue.ok("PUT", f"/v2.0/routers/{router['id']}", {"router": {
        "routes": [{"destination": "172.16.0.0/16", "nexthop": "10.20.0.5"}],
        "external_gateway_info": {"network_id": external["id"]}}})["router"]
    assert routed["routes"] == [{"destination": "172.16.0.0/16", "nexthop": "10.20.0.5"}]
    gateway = routed["external_gateway_info"]
    assert gateway["network_id"] == external["id"] and gateway["enable_snat"] is True
    assert ipaddress.ip_address(gateway["external_fixed_ips"][0]["ip_address"]) in ipaddress.ip_network(
        "203.0.113.0/24")
    code, data = blue.put(f"/v2.0/routers/{router['id']}/remove_router_interface", {"subnet_id": subnet["id"]})
    assert code == 409 and neutron_error(data)["type"] == "RouterInterfaceInUseByRoute"
    blue.ok("PUT", f"/v2.0/routers/{router['id']}", {"router": {"routes": []}})
    removed = blue.ok("PUT", f"/v2.0/routers/{router['id']}/remove_router_interface", {"subnet_id": subnet["id"]})
    assert removed["port_id"] == added["port_id"]
    assert blue.get(f"/v2.0/ports/{added['port_id']}")[0] == 404
    blue.ok("PUT", f"/v2.0/routers/{router['id']}/remove_router_interface", {"port_id": own["id"]})
    code, data = blue.put(f"/v2.0/routers/{router['id']}/remove_router_interface", {"subnet_id": subnet["id"]})
    assert code == 404 and neutron_error(data)["type"] == "RouterInterfaceNotFoundForSubnet"
    code, data = admin.delete(f"/v2.0/networks/{external['id']}")
    assert code == 409 and neutron_error(data)["type"] == "NetworkInUse"           # the router's gateway is there
    blue.ok("DELETE", f"/v2.0/routers/{router['id']}")                             # with its gateway port
    admin.ok("DELETE", f"/v2.0/networks/{external['id']}")
    for n in (net, net2):
        blue.ok("DELETE", f"/v2.0/networks/{n}")


def test_floating_ips_through_a_router_and_what_they_guard(api):
    _, admin, projects = api
    blue, red = projects["blue"], projects["red"]
    ext = admin.ok("POST", "/v2.0/networks", {"network": {"name": "fip-public", "router:external": True}})["network"]
    admin.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": ext["id"], "cidr": "198.51.100.0/28"}})
    net = blue.ok("POST", "/v2.0/networks", {"network": {}})["network"]["id"]
    subnet = blue.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": net, "cidr": "10.25.0.0/24"}})["subnet"]
    port = blue.ok("POST", "/v2.0/ports", {"port": {"network_id": net, "name": "vm"}})["port"]
    fixed = port["fixed_ips"][0]["ip_address"]

    # unassociated: an address of the external network, held by a port of the floating IP's own
    fip = blue.ok("POST", "/v2.0/floatingips", {"floatingip": {"floating_network_id": ext["id"]}})["floatingip"]
    assert (fip["status"], fip["port_id"], fip["router_id"], fip["tenant_id"]) == ("DOWN", None, None, "blue")
    assert ipaddress.ip_address(fip["floating_ip_address"]) in ipaddress.ip_network("198.51.100.0/28")
    [held] = admin.ok("GET", "/v2.0/ports", device_id=fip["id"])["ports"]
    assert held["device_owner"] == "network:floatingip" and held["fixed_ips"][0]["ip_address"] == \
        fip["floating_ip_address"]
    code, data = blue.put(f"/v2.0/floatingips/{fip['id']}", {"floatingip": {"port_id": port["id"]}})
    assert code == 404 and neutron_error(data)["type"] == "ExternalGatewayForFloatingIPNotFound"
    assert neutron_error(data)["message"].startswith(f"External network {ext['id']} is not reachable from subnet "
                                                     f"{subnet['id']}")
    code, data = blue.post("/v2.0/floatingips", {"floatingip": {"floating_network_id": net}})
    assert code == 400 and neutron_error(data)["type"] == "BadRequest"
    code, data = blue.post("/v2.0/floatingips", {"floatingip": {"floating_network_id": ext["id"],
                                                                "floating_ip_address": "198.51.100.9"}})
    assert code == 403 and neutron_error(data)["type"] == "PolicyNotAuthorized"

    # associated through a router: gateway on the external network, interface on the port's subnet
    router = blue.ok("POST", "/v2.0/routers", {"router": {"external_gateway_info": {"network_id": ext["id"]}}})
    router = router["router"]["id"]
    blue.ok("PUT", f"/v2.0/routers/{router}/add_router_interface", {"subnet_id": subnet["id"]})
    bound = blue.ok("PUT", f"/v2.0/floatingips/{fip['id']}", {"floatingip": {"port_id": port["id"]}})["floatingip"]
    assert (bound["status"], bound["port_id"], bound["fixed_ip_address"], bound["router_id"]) == (
        "ACTIVE", port["id"], fixed, router)
    code, data = blue.post("/v2.0/floatingips", {"floatingip": {"floating_network_id": ext["id"],
                                                                "port_id": port["id"]}})
    assert code == 409 and neutron_error(data)["type"] == "FloatingIPPortAlreadyAssociated"
    assert blue.get("/v2.0/floatingips", status="ACTIVE", fields="id") == (200, {"floatingips": [{"id": fip["id"]}]})
    assert red.ok("GET", "/v2.0/floatingips")["floatingips"] == []
    code, data = red.get(f"/v2.0/floatingips/{fip['id']}")
    assert code == 404 and neutron_error(data)["type"] == "FloatingIPNotFound"

    # what the association needs cannot go
    code, data = blue.put(f"/v2.0/routers/{router}/remove_router_interface", {"subnet_id": subnet["id"]})
    assert code == 409 and neutron_error(data)["type"] == "RouterInterfaceInUseByFloatingIP"
    code, data = blue.put(f"/v2.0/routers/{router}", {"router": {"external_gateway_info": None}})
    assert code == 409 and neutron_error(data)["type"] == "RouterExternalGatewayInUseByFloatingIp"
    code, data = blue.delete(f"/v2.0/ports/{held['id']}")
    assert code == 409 and neutron_error(data)["type"] == "L3PortInUse"
    # deleting the port disassociates
    blue.ok("DELETE", f"/v2.0/ports/{port['id']}")
    loose = blue.ok("GET", f"/v2.0/floatingips/{fip['id']}")["floatingip"]
    assert (loose["status"], loose["port_id"], loose["fixed_ip_address"], loose["router_id"]) == (
        "DOWN", None, None, None)
    # deleting the floating IP frees its address and port
    blue.ok("DELETE", f"/v2.0/floatingips/{fip['id']}")
    assert admin.ok("GET", "/v2.0/ports", device_id=fip["id"])["ports"] == []
    blue.ok("PUT", f"/v2.0/routers/{router}/remove_router_interface", {"subnet_id": subnet["id"]})
    blue.ok("DELETE", f"/v2.0/routers/{router}")
    blue.ok("DELETE", f"/v2.0/networks/{net}")
    admin.ok("DELETE", f"/v2.0/networks/{ext['id']}")


def test_security_groups_and_rules(api):
    _, _, projects = api
    red = projects["red"]
    groups = red.ok("GET", "/v2.0/security-groups")["security_groups"]
    assert [g["name"] for g in groups] == ["default"]                 # made on the project's first look
    web = red.ok("POST", "/v2.0/security-groups", {"security_group": {"name": "web", "description": "w"}})
    web = web["security_group"]
    assert {(r["direction"], r["ethertype"]) for r in web["security_group_rules"]} == {("egress", "IPv4"),
                                                                                          ("egress", "IPv6")}
    rule = red.ok("POST", "/v2.0/security-group-rules", {"security_group_rule": {
        "security_group_id": web["id"], "direction": "ingress", "protocol": "tcp", "port_range_min": 80,
        "port_range_max": 80, "remote_ip_prefix": "10.0.0.7/8"}})["security_group_rule"]
    assert (rule["ethertype"], rule["remote_ip_prefix"], rule["project_id"]) == ("IPv4", "10.0.0.0/8", "red")
    code, data = red.post("/v2.0/security-group-rules", {"security_group_rule": {
        "security_group_id": web["id"], "direction": "ingress", "protocol": "tcp", "port_range_min": 80,
        "port_range_max": 80, "remote_ip_prefix": "10.0.0.0/8"}})
    assert code == 409 and neutron_error(data)["type"] == "SecurityGroupRuleExists"
    for bad_rule, type in (({"port_range_min": 22, "port_range_max": 22}, "SecurityGroupProtocolRequiredWithPorts"),
                           ({"protocol": "tcp", "port_range_min": 90, "port_range_max": 80},
                            "SecurityGroupInvalidPortRange"),
                           ({"remote_ip_prefix": "fd00::/8"}, "SecurityGroupRuleParameterConflict"),
                           ({"protocol": "bogus"}, "SecurityGroupRuleInvalidProtocol"),
                           ({"remote_ip_prefix": "10.0.0.0/8", "remote_group_id": web["id"]},
                            "SecurityGroupRemoteGroupAndRemoteIpPrefix")):
        code, data = red.post("/v2.0/security-group-rules", {"security_group_rule": {
            "security_group_id": web["id"], "direction": "ingress", **bad_rule}})
        assert code == 400 and neutron_error(data)["type"] == type, bad_rule
    listed = red.ok("GET", "/v2.0/security-group-rules", security_group_id=web["id"], direction="ingress")
    assert [r["id"] for r in listed["security_group_rules"]] == [rule["id"]]
    assert red.ok("PUT", f"/v2.0/security-group-rules/{rule['id']}", {"security_group_rule": {
        "description": "http"}})["security_group_rule"]["description"] == "http"
    renamed = red.ok("PUT", f"/v2.0/security-groups/{web['id']}", {"security_group": {"name": "www"}})
    assert renamed["security_group"]["name"] == "www"
    default = groups[0]["id"]
    code, data = red.put(f"/v2.0/security-groups/{default}", {"security_group": {"name": "x"}})
    assert code == 409
    code, data = red.delete(f"/v2.0/security-groups/{default}")
    assert code == 409 and neutron_error(data)["type"] == "SecurityGroupCannotRemoveDefault"
    # in use by a port: 409; free: gone with its rules
    net = red.ok("POST", "/v2.0/networks", {"network": {}})["network"]["id"]
    port = red.ok("POST", "/v2.0/ports", {"port": {"network_id": net, "security_groups": [web["id"]]}})["port"]
    code, data = red.delete(f"/v2.0/security-groups/{web['id']}")
    assert code == 409 and neutron_error(data)["type"] == "SecurityGroupInUse"
    red.ok("DELETE", f"/v2.0/ports/{port['id']}")
    red.ok("DELETE", f"/v2.0/security-groups/{web['id']}")
    code, data = red.get(f"/v2.0/security-group-rules/{rule['id']}")
    assert code == 404 and neutron_error(data)["type"] == "SecurityGroupRuleNotFound"
    red.ok("DELETE", f"/v2.0/networks/{net}")


def test_qos_policies_and_their_rules(api):
    _, admin, projects = api
    blue, red = projects["blue"], projects["red"]
    policy = blue.ok("POST", "/v2.0/qos/policies", {"policy": {"name": "gold"}})["policy"]
    assert (policy["shared"], policy["rules"], policy["project_id"]) == (False, [], "blue")
    base = f"/v2.0/qos/policies/{policy['id']}"
    bw = blue.ok("POST", f"{base}/bandwidth_limit_rules", {"bandwidth_limit_rule": {"max_kbps": 10000}})
    bw = bw["bandwidth_limit_rule"]
    assert (bw["max_kbps"], bw["max_burst_kbps"], bw["direction"]) == (10000, 0, "egress")
    ingress = blue.ok("POST", f"{base}/bandwidth_limit_rules", {"bandwidth_limit_rule": {
        "max_kbps": 5000, "direction": "ingress"}})["bandwidth_limit_rule"]
    code, data = blue.post(f"{base}/bandwidth_limit_rules", {"bandwidth_limit_rule": {"max_kbps": 1}})
    assert code == 409 and neutron_error(data)["type"] == "QoSRulesConflict"
    dscp = blue.ok("POST", f"{base}/dscp_marking_rules", {"dscp_marking_rule": {"dscp_mark": 46}})["dscp_marking_rule"]
    code, data = blue.post(f"{base}/dscp_marking_rules", {"dscp_marking_rule": {"dscp_mark": 13}})
    assert code == 400
    minimum = blue.ok("POST", f"{base}/minimum_bandwidth_rules", {"minimum_bandwidth_rule": {"min_kbps": 1000}})
    minimum = minimum["minimum_bandwidth_rule"]
    shown = blue.ok("GET", base)["policy"]
    assert sorted(r["type"] for r in shown["rules"]) == ["bandwidth_limit", "bandwidth_limit", "dscp_marking",
                                                         "minimum_bandwidth"]
    assert blue.ok("GET", f"{base}/bandwidth_limit_rules")["bandwidth_limit_rules"] == [bw, ingress]
    assert blue.ok("PUT", f"{base}/bandwidth_limit_rules/{bw['id']}", {"bandwidth_limit_rule": {
        "max_kbps": 20000}})["bandwidth_limit_rule"]["max_kbps"] == 20000
    assert blue.ok("GET", f"{base}/dscp_marking_rules/{dscp['id']}")["dscp_marking_rule"]["dscp_mark"] == 46
    code, data = blue.get(f"{base}/minimum_bandwidth_rules/{dscp['id']}")
    assert code == 404 and neutron_error(data)["type"] == "QosRuleNotFound"
    # attached to a network: in use
    net = blue.ok("POST", "/v2.0/networks", {"network": {"qos_policy_id": policy["id"]}})["network"]
    assert net["qos_policy_id"] == policy["id"]
    code, data = blue.delete(base)
    assert code == 409 and neutron_error(data)["type"] == "QosPolicyInUse"
    code, data = red.post("/v2.0/networks", {"network": {"qos_policy_id": policy["id"]}})
    assert code == 404 and neutron_error(data)["type"] == "QosPolicyNotFound"
    blue.ok("PUT", f"/v2.0/networks/{net['id']}", {"network": {"qos_policy_id": None}})
    blue.ok("DELETE", f"{base}/minimum_bandwidth_rules/{minimum['id']}")
    blue.ok("DELETE", base)
    assert blue.get(f"{base}/dscp_marking_rules/{dscp['id']}")[0] == 404
    # a shared policy (the admin's) is seen and used by every project, changed by none
    shared = admin.ok("POST", "/v2.0/qos/policies", {"policy": {"name": "bronze", "shared": True}})["policy"]
    assert red.ok("GET", f"/v2.0/qos/policies/{shared['id']}")["policy"]["name"] == "bronze"
    code, data = red.put(f"/v2.0/qos/policies/{shared['id']}", {"policy": {"name": "mine"}})
    assert code == 403 and neutron_error(data)["type"] == "PolicyNotAuthorized"
    admin.ok("DELETE", f"/v2.0/qos/policies/{shared['id']}")
    blue.ok("DELETE", f"/v2.0/networks/{net['id']}")


# --- isolation and errors ------------------------------------------------------------------------------


def test_a_project_sees_and_changes_only_its_own_and_shared_resources(api):
    _, admin, projects = api
    blue, red = projects["blue"], projects["red"]
    mine = blue.ok("POST", "/v2.0/networks", {"network": {"name": "blue-only"}})["network"]
    sub = blue.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": mine["id"], "cidr": "10.30.0.0/24"}})["subnet"]
    port = blue.ok("POST", "/v2.0/ports", {"port": {"network_id": mine["id"]}})["port"]
    router = blue.ok("POST", "/v2.0/routers", {"router": {"name": "blue-r"}})["router"]
    shared = admin.ok("POST", "/v2.0/networks", {"network": {"name": "everyone", "shared": True}})["network"]
    admin.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": shared["id"], "cidr": "10.31.0.0/24"}})

    red_sees = {n["name"] for n in red.ok("GET", "/v2.0/networks")["networks"]}
    assert "everyone" in red_sees and "blue-only" not in red_sees
    assert {n["name"] for n in admin.ok("GET", "/v2.0/networks")["networks"]} >= {"everyone", "blue-only"}
    for path, type in ((f"/v2.0/networks/{mine['id']}", "NetworkNotFound"), (f"/v2.0/subnets/{sub['id']}",
                                                                              "SubnetNotFound"),
                       (f"/v2.0/ports/{port['id']}", "PortNotFound"), (f"/v2.0/routers/{router['id']}",
                                                                       "RouterNotFound")):
        for method in ("GET", "DELETE"):
            code, data = red._do(method, path)
            assert code == 404 and neutron_error(data)["type"] == type, (method, path)
    code, data = red.put(f"/v2.0/networks/{mine['id']}", {"network": {"name": "stolen"}})
    assert code == 404
    code, data = red.post("/v2.0/ports", {"port": {"network_id": mine["id"]}})
    assert code == 404 and neutron_error(data)["type"] == "NetworkNotFound"
    # the shared network: red sees it and its subnet, makes ports on it, may not change it
    red_port = red.ok("POST", "/v2.0/ports", {"port": {"network_id": shared["id"]}})["port"]
    assert red_port["project_id"] == "red" and red_port["fixed_ips"]
    code, data = red.put(f"/v2.0/networks/{shared['id']}", {"network": {"name": "mine"}})
    assert code == 403 and neutron_error(data)["type"] == "PolicyNotAuthorized"
    assert blue.ok("GET", "/v2.0/ports", network_id=shared["id"])["ports"] == []       # red's port is red's
    assert red.ok("GET", "/v2.0/subnets", network_id=shared["id"])["subnets"]
    # a project cannot create in another project's name; the admin can
    code, data = red.post("/v2.0/networks", {"network": {"project_id": "blue"}})
    assert code == 400
    theirs = admin.ok("POST", "/v2.0/networks", {"network": {"name": "for-red", "project_id": "red"}})["network"]
    assert theirs["project_id"] == "red" and red.ok("GET", f"/v2.0/networks/{theirs['id']}")
    red.ok("DELETE", f"/v2.0/networks/{theirs['id']}")
    red.ok("DELETE", f"/v2.0/ports/{red_port['id']}")
    blue.ok("DELETE", f"/v2.0/ports/{port['id']}")
    blue.ok("DELETE", f"/v2.0/routers/{router['id']}")
    blue.ok("DELETE", f"/v2.0/networks/{mine['id']}")
    admin.ok("DELETE", f"/v2.0/networks/{shared['id']}")


def test_error_bodies(api):
    controller, admin, projects = api
    anonymous = Client(controller.status["api"], None)
    code, data = anonymous.get("/v2.0/networks")
    assert code == 401 and neutron_error(data)["type"] == "HTTPUnauthorized"
    code, data = Client(controller.status["api"], "wrong").get("/v2.0/ports")
    assert code == 401 and neutron_error(data)
    code, data = admin.post("/v2.0/networks", {"network": {"no_such_attribute": 1}})
    assert code == 400 and "no_such_attribute" in neutron_error(data)["detail"]
    code, data = admin.post("/v2.0/networks", {"network": {"admin_state_up": "perhaps"}})
    assert code == 400 and neutron_error(data)["type"] == "HTTPBadRequest"
    code, data = admin.post("/v2.0/subnets", {"subnet": {"cidr": "10.0.0.0/24"}})       # no network_id
    assert code == 400 and "network_id" in neutron_error(data)["detail"]
    code, data = admin.get("/v2.0/routers/nope")
    assert code == 404 and neutron_error(data) == {"type": "RouterNotFound",
                                                   "message": "Router nope could not be found.", "detail": ""}
    code, data = admin.delete("/v2.0/networks")
    assert code == 405 and neutron_error(data)["type"] == "HTTPMethodNotAllowed"


# --- restart ----------------------------------------------------------------------------------------


def test_everything_is_still_there_after_a_restart_on_the_same_store(tmp_path):
    controller = start_controller(tmp_path)
    paths = ["/v2.0/networks", "/v2.0/subnets", "/v2.0/ports", "/v2.0/routers", "/v2.0/floatingips",
             "/v2.0/security-groups", "/v2.0/security-group-rules", "/v2.0/qos/policies"]
    try:
        admin = Client(controller.status["api"], ADMIN)
        net = admin.ok("POST", "/v2.0/networks", {"network": {"name": "kept", "provider:network_type": "nvgre"}})
        net = net["network"]["id"]
        subnet = admin.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": net, "cidr": "10.40.0.0/24"}})
        admin.ok("POST", "/v2.0/ports", {"ports": [{"network_id": net, "name": f"p{i}"} for i in range(5)]})
        router = admin.ok("POST", "/v2.0/routers", {"router": {"name": "kept"}})["router"]["id"]
        admin.ok("PUT", f"/v2.0/routers/{router}/add_router_interface", {"subnet_id": subnet["subnet"]["id"]})
        ext = admin.ok("POST", "/v2.0/networks", {"network": {"router:external": True}})["network"]["id"]
        admin.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": ext, "cidr": "198.51.100.0/24"}})
        admin.ok("PUT", f"/v2.0/routers/{router}", {"router": {"external_gateway_info": {"network_id": ext}}})
        p0 = admin.ok("GET", "/v2.0/ports", name="p0")["ports"][0]["id"]
        admin.ok("POST", "/v2.0/floatingips", {"floatingip": {"floating_network_id": ext, "port_id": p0}})
        policy = admin.ok("POST", "/v2.0/qos/policies", {"policy": {"name": "kept"}})["policy"]["id"]
        admin.ok("POST", f"/v2.0/qos/policies/{policy}/dscp_marking_rules", {"dscp_marking_rule": {"dscp_mark": 26}})
        before = {path: admin.ok("GET", path) for path in paths}
        assert controller.stop() == 0
        controller.start()
        admin = Client(controller.status["api"], ADMIN)
        after = {path: admin.ok("GET", path) for path in paths}
        assert after == before
        # and it goes on from there: the next port gets the next address, the next network another VNI
        port = admin.ok("POST", "/v2.0/ports", {"port": {"network_id": net}})["port"]
        taken = {ip["ip_address"] for p in before["/v2.0/ports"]["ports"] for ip in p["fixed_ips"]}
        assert port["fixed_ips"][0]["ip_address"] not in taken
        other = admin.ok("POST", "/v2.0/networks", {"network": {"provider:network_type": "nvgre"}})["network"]
        assert other["provider:segmentation_id"] != before["/v2.0/networks"]["networks"][0][
            "provider:segmentation_id"]
    finally:
        controller.stop()


def test_segment_ranges_given_on_the_command_line_are_what_networks_get(tmp_path):
    controller = ControllerProcess(apps=("l2",), log=tmp_path / "controller.log",
                                   args=("--api", "127.0.0.1:0", "--admin-token", ADMIN,
                                         "--segment-range", "vxlan=1000:1001", "--segment-range", "vlan=300:300"))
    controller.start()
    try:
        admin = Client(controller.status["api"], ADMIN)
        made = [admin.ok("POST", "/v2.0/networks", {"network": {}})["network"] for _ in range(2)]
        assert [n["provider:segmentation_id"] for n in made] == [1000, 1001]
        code, data = admin.post("/v2.0/networks", {"network": {}})
        assert code == 503 and neutron_error(data)["type"] == "NoNetworkAvailable"
        vlan = admin.ok("POST", "/v2.0/networks", {"network": {"provider:network_type": "vlan"}})["network"]
        assert vlan["provider:segmentation_id"] == 300
        # nvgre was not named: its whole range
        nvgre = admin.ok("POST", "/v2.0/networks", {"network": {"provider:network_type": "nvgre"}})["network"]
        assert nvgre["provider:segmentation_id"] == 1
    finally:
        assert controller.stop() == 0
    # a bad range: exit status 2 before anything listens, the option named
    proc = subprocess.run([sys.executable, "-m", "kumoflow.cli", "controller", "--listen", "tcp:127.0.0.1:0",
                           "--store", "none", "--api", "127.0.0.1:0", "--admin-token", ADMIN,
                           "--segment-range", "vlan=4000:5000"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": SRC})
    assert proc.returncode == 2
    assert "--segment-range vlan=4000:5000: a vlan segmentation id is 1..4094" in proc.stderr


# --- schemathesis -------------------------------------------------------------------------------------


def test_schemathesis_finds_no_server_error_and_no_schema_violation(api, tmp_path):
    """Every operation of /openapi.json under /v2.0 (Neutron's and the tokens'), a bounded number of
    examples each, with the admin token: no 5xx, every answer as the document says."""
    st = shutil.which("schemathesis", path=os.path.dirname(sys.executable)) or shutil.which("schemathesis")
    if st is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    controller, _, _ = api
    url = controller.status["api"]
    proc = subprocess.run(
        [st, "run", f"{url}/openapi.json", "--header", f"X-Auth-Token: {ADMIN}", "--max-examples", "20",
         "--seed", "20261207", "--include-path-regex", "^/v2.0/",
         "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance,"
                     "content_type_conformance",
         # fuzzing only (about 40 s; the coverage phase takes twice that), one worker (schemathesis'
         # threads can trip over a CPython 3.11 ast.parse race)
         "--phases", "examples,fuzzing", "--no-shrink", "--workers", "1", "--warnings", "off",
         "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env={**os.environ, "PYTHONPATH": SRC})
    tail = "\n".join(proc.stdout.splitlines()[-60:])
    assert proc.returncode == 0, f"schemathesis found failures:\n{tail}\n{proc.stderr[-2000:]}"
    assert " passed" in proc.stdout or "No issues found" in proc.stdout or "passed" in tail, tail


# --- kumoflow apply and kumoflow show ----------------------------------------------------------------

APPLY = """\
name: shop
project: green
qos_policies:
  - name: gold
    rules:
      - {type: bandwidth_limit, max_kbps: 10000}
      - {type: dscp_marking, dscp_mark: 46}
security_groups:
  - name: web
    rules:
      - {direction: egress}
      - {direction: ingress, protocol: tcp, port_range_min: 80, port_range_max: 80}
      - {direction: ingress, remote_group: web}
networks:
  - {name: front, qos_policy: gold}
  - {name: back, provider:network_type: nvgre}
subnets:
  - {name: front-v4, network: front, cidr: 10.50.0.0/24, dns_nameservers: [10.50.0.53]}
  - {name: back-v4, network: back, cidr: 10.51.0.0/24}
routers:
  - name: edge
    interfaces: [front-v4, back-v4]
    routes: [{destination: 172.16.0.0/16, nexthop: 10.50.0.9}]
ports:
  - name: www1
    network: front
    fixed_ips: [{subnet: front-v4, ip_address: 10.50.0.10}]
    security_groups: [web]
  - {name: db1, network: back}
address_groups:
  - {name: office, addresses: [203.0.113.0/28]}
firewall_rules:
  - {name: office-ssh, protocol: tcp, destination_port: 22, source_address_group: office, action: allow}
firewall_policies:
  - {name: in, rules: [office-ssh]}
firewall_groups:
  - {name: web, ingress_policy: in, ports: [www1]}
"""


def kumoflow(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kumoflow.cli", *argv], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": SRC, "COLUMNS": "250"})


def test_kumoflow_apply_is_idempotent_and_changes_only_what_the_file_changes(api, tmp_path):
    controller, admin, _ = api
    url = controller.status["api"]
    file = tmp_path / "shop.yaml"
    file.write_text(APPLY)
    apply = lambda: kumoflow("apply", str(file), "--api", url, "--token", ADMIN)

    first = apply()
    assert first.returncode == 0, first.stderr
    assert "created network front" in first.stdout and "created port db1" in first.stdout
    state = lambda: {path: admin.ok("GET", path, project_id="green")
                     for path in ("/v2.0/networks", "/v2.0/subnets", "/v2.0/ports", "/v2.0/routers",
                                  "/v2.0/security-groups", "/v2.0/qos/policies", "/v2.0/address-groups",
                                  "/v2.0/fwaas/firewall_rules", "/v2.0/fwaas/firewall_policies",
                                  "/v2.0/fwaas/firewall_groups")}
    made = state()
    assert {n["name"] for n in made["/v2.0/networks"]["networks"]} == {"front", "back"}
    ports = {p["name"]: p for p in made["/v2.0/ports"]["ports"]}
    assert ports["www1"]["fixed_ips"][0]["ip_address"] == "10.50.0.10"
    assert sum(p["device_owner"] == "network:router_interface" for p in made["/v2.0/ports"]["ports"]) == 2
    [router] = made["/v2.0/routers"]["routers"]
    assert router["routes"] == [{"destination": "172.16.0.0/16", "nexthop": "10.50.0.9"}]
    web = next(g for g in made["/v2.0/security-groups"]["security_groups"] if g["name"] == "web")
    assert len(web["security_group_rules"]) == 3
    [group] = made["/v2.0/fwaas/firewall_groups"]["firewall_groups"]
    [policy] = made["/v2.0/fwaas/firewall_policies"]["firewall_policies"]
    [rule] = made["/v2.0/fwaas/firewall_rules"]["firewall_rules"]
    [office] = made["/v2.0/address-groups"]["address_groups"]
    assert (group["ports"], group["ingress_firewall_policy_id"], group["status"]) == (
        [ports["www1"]["id"]], policy["id"], "ACTIVE")
    assert (policy["firewall_rules"], rule["source_address_group_id"]) == ([rule["id"]], office["id"])

    second = apply()                                          # nothing to do: nothing written
    assert second.returncode == 0 and second.stdout.strip().endswith("nothing to change"), second.stdout
    assert state() == made

    # an edit changes that, and only that
    file.write_text(APPLY.replace("10.50.0.53", "10.50.0.54").replace("  - {name: db1, network: back}\n", "")
                    .replace("max_kbps: 10000", "max_kbps: 20000").replace("203.0.113.0/28", "203.0.113.16/28"))
    third = apply()
    assert third.returncode == 0, third.stderr
    assert sorted(third.stdout.splitlines()[:-1]) == ["deleted port db1",
                                                      "updated QoS policy gold: its bandwidth_limit rule (max_kbps)",
                                                      "updated address group office: addresses (1 added, 1 removed)",
                                                      "updated subnet front-v4: dns_nameservers"]
    after = state()
    front = next(s for s in after["/v2.0/subnets"]["subnets"] if s["name"] == "front-v4")
    assert front["dns_nameservers"] == ["10.50.0.54"]
    assert {p["name"] for p in after["/v2.0/ports"]["ports"]} == {"www1", ""}
    assert after["/v2.0/networks"] == made["/v2.0/networks"]  # untouched: same ids, same revisions
    assert after["/v2.0/fwaas/firewall_groups"] == made["/v2.0/fwaas/firewall_groups"]
    assert apply().stdout.strip().endswith("nothing to change")

    # the views
    shown = kumoflow("show", "networks", "--api", url, "--token", ADMIN, "--json")
    assert shown.returncode == 0 and {"front", "back"} <= {n["name"] for n in json.loads(shown.stdout)["networks"]}
    for view in ("networks", "subnets", "ports", "routers"):
        table = kumoflow("show", view, "--api", url, "--token", ADMIN)
        assert table.returncode == 0 and view in table.stdout, table.stderr
    assert "www1" in kumoflow("show", "ports", "--api", url, "--token", ADMIN).stdout

    # an empty file of the same set deletes everything it made, in an order the API accepts
    file.write_text("name: shop\nproject: green\n")
    last = apply()
    assert last.returncode == 0, last.stderr
    assert all(not items for data in state().values() for key, items in data.items()
               if key != "security_groups") and [g["name"] for g in state()["/v2.0/security-groups"][
                   "security_groups"]] == ["default"]


FLOATING = """\
name: fips
project: teal
networks:
  - {name: inside}
subnets:
  - {name: inside-v4, network: inside, cidr: 10.70.0.0/24}
routers:
  - {name: edge, interfaces: [inside-v4], external_gateway: fips-public}
ports:
  - {name: web, network: inside}
  - {name: db, network: inside}
floatingips:
  - {network: fips-public, port: web}
  - {network: fips-public, floating_ip_address: 192.0.2.20, port: db, description: database}
  - {network: fips-public, floating_ip_address: 192.0.2.21}
"""


def test_kumoflow_apply_makes_floating_ips_known_by_address_or_port(api, tmp_path):
    controller, admin, _ = api
    url = controller.status["api"]
    public = admin.ok("POST", "/v2.0/networks", {"network": {"name": "fips-public", "router:external": True}})
    public = public["network"]["id"]
    admin.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": public, "cidr": "192.0.2.0/24"}})
    file = tmp_path / "fips.yaml"
    file.write_text(FLOATING)
    apply = lambda: kumoflow("apply", str(file), "--api", url, "--token", ADMIN)
    fips = lambda: {f["floating_ip_address"]: f for f in admin.ok("GET", "/v2.0/floatingips",
                                                                  project_id="teal")["floatingips"]}
    ports = lambda: {p["name"]: p["id"] for p in admin.ok("GET", "/v2.0/ports", project_id="teal")["ports"]}

    first = apply()
    assert first.returncode == 0, first.stderr
    assert "created floating IP 192.0.2.21" in first.stdout and "created floating IP 192.0.2.20 for port db" in \
        first.stdout
    made, names = fips(), ports()
    [router] = admin.ok("GET", "/v2.0/routers", project_id="teal", name="edge")["routers"]
    [web] = [f for f in made.values() if f["port_id"] == names["web"]]
    assert (web["router_id"], web["status"], web["tenant_id"]) == (router["id"], "ACTIVE", "teal")
    assert (made["192.0.2.20"]["port_id"], made["192.0.2.20"]["description"]) == (names["db"], "database")
    assert (made["192.0.2.21"]["port_id"], made["192.0.2.21"]["status"]) == (None, "DOWN")
    assert apply().stdout.strip().endswith("nothing to change")
    assert fips() == made
    shown = kumoflow("show", "floatingips", "--api", url, "--token", ADMIN)
    assert shown.returncode == 0 and "192.0.2.20" in shown.stdout and "ACTIVE" in shown.stdout, shown.stderr
    shown = kumoflow("show", "floatingips", "--api", url, "--token", ADMIN, "--json")
    assert {"192.0.2.20", "192.0.2.21"} <= {f["floating_ip_address"] for f in json.loads(shown.stdout)["floatingips"]}

    # web's floating IP goes, 192.0.2.21 moves to web
    moved = FLOATING.replace("  - {network: fips-public, port: web}\n", "").replace(
        "floating_ip_address: 192.0.2.21}", "floating_ip_address: 192.0.2.21, port: web}")
    file.write_text(moved)
    third = apply()
    assert third.returncode == 0, third.stderr
    assert sorted(third.stdout.splitlines()[:-1]) == [f"deleted floating IP {web['floating_ip_address']}",
                                                      "updated floating IP 192.0.2.21: port_id"]
    after = fips()
    assert set(after) == {"192.0.2.20", "192.0.2.21"} and after["192.0.2.21"]["port_id"] == names["web"]
    assert after["192.0.2.20"] == made["192.0.2.20"]
    assert apply().stdout.strip().endswith("nothing to change")

    # a floating IP the API refuses is reported at its line
    file.write_text(moved + "  - {network: inside, port: web, fixed_ip_address: 10.70.0.99}\n")
    bad = apply()
    assert bad.returncode == 1 and f"{file}:15: floatingips[2]: the API refused POST /v2.0/floatingips: " \
                                   f"BadRequest" in bad.stderr, bad.stderr
    assert fips() == after

    # an empty file deletes them first, then what they needed
    file.write_text("name: fips\nproject: teal\n")
    last = apply()
    assert last.returncode == 0, last.stderr
    assert fips() == {} and admin.ok("GET", "/v2.0/routers", project_id="teal")["routers"] == []
    admin.ok("DELETE", f"/v2.0/networks/{public}")


def test_kumoflow_apply_reports_errors_as_file_line_field(api, tmp_path):
    controller, _, _ = api
    file = tmp_path / "bad.yaml"
    file.write_text("networks:\n  - {name: n, colour: red}\nsubnets:\n  - {name: s, network: n, cidr: 10.0.0.1/24}\n"
                    "ports:\n  - {name: p}\n")
    proc = kumoflow("apply", str(file), "--api", controller.status["api"], "--token", ADMIN)
    assert proc.returncode == 2
    assert f"{file}:2: networks[0].colour: unknown field" in proc.stderr
    assert f"{file}:4: subnets[0].cidr: 10.0.0.1/24 has host bits set" in proc.stderr
    assert f"{file}:6: ports[0].network: missing required field" in proc.stderr
    file.write_text("ports:\n  - {name: p, network: nowhere}\n")
    proc = kumoflow("apply", str(file), "--api", controller.status["api"], "--token", ADMIN)
    assert proc.returncode == 1 and f"{file}:2: ports[0].network: no network named 'nowhere'" in proc.stderr


# --- the emulator binds its hosts' ports --------------------------------------------------------------

BIND_TOPOLOGY = """\
hosts:
  - {name: h1, mac: "fa:16:3e:00:00:01", ip: 10.60.0.5/24, port: vm1}
  - {name: h2, mac: "00:00:00:00:00:02", ip: 10.60.0.6/24}
switches:
  - {name: s1, kind: kumoflow, dpid: 0x61}
links:
  - {src: h1, dst: s1, dst_port: 3}
  - {src: h2, dst: s1, dst_port: 4}
"""


@pytest.mark.root
def test_kumoflow_up_binds_a_hosts_api_port_and_it_turns_active(api, tmp_path, unique_name):
    controller, admin, _ = api
    url = controller.status["api"]
    net = admin.ok("POST", "/v2.0/networks", {"network": {"name": "bind"}})["network"]["id"]
    admin.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": net, "cidr": "10.60.0.0/24"}})
    port = admin.ok("POST", "/v2.0/ports", {"port": {"network_id": net, "name": "vm1",
                                                     "mac_address": "fa:16:3e:00:00:01",
                                                     "fixed_ips": [{"ip_address": "10.60.0.5"}]}})["port"]
    topo = tmp_path / "bind.yaml"
    topo.write_text(BIND_TOPOLOGY)
    name = unique_name("kb")
    up = kumoflow("up", str(topo), "--name", name, "--controller", controller.target, "--api", url, "--token", ADMIN)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "host h1: port vm1 bound to switch 0x61 port 3" in up.stdout
        shown = admin.ok("GET", f"/v2.0/ports/{port['id']}")["port"]
        assert (shown["binding:host_id"], shown["binding:profile"]) == ("0x61", {"port_no": 3})

        def active():
            return admin.ok("GET", f"/v2.0/ports/{port['id']}")["port"]["status"] == "ACTIVE"
        assert wait_until(active, timeout=30), "the bound port did not turn ACTIVE once its switch connected"
    finally:
        down = kumoflow("down", name)
        assert down.returncode == 0, down.stdout + down.stderr

    def inactive():
        return admin.ok("GET", f"/v2.0/ports/{port['id']}")["port"]["status"] == "DOWN"
    assert wait_until(inactive, timeout=30), "the port stayed ACTIVE after its switch went away"
    admin.ok("DELETE", f"/v2.0/ports/{port['id']}")
    admin.ok("DELETE", f"/v2.0/networks/{net}")
