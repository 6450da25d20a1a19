"""Floating IPs (/v2.0/floatingips) and the routers' checks in process (no root, no sockets):
Neutron's shapes, addresses held by a port of the floating IP's own, associations through a
router whose gateway is on the floating network and whose interface is on the fixed address's
subnet, what depends on an association guarded, projects kept apart; every refusal with
Neutron's type and nothing half-applied (the store's revision does not move)."""

from __future__ import annotations

import asyncio
import ipaddress

import httpx

from kumoflow.api.neutron.db import NeutronDB
from kumoflow.api.server import build_app
from kumoflow.apps.l2 import LearningSwitch as L2
from kumoflow.store.sqlite import SQLiteStore

from memnet import MemNet

ADMIN = {"X-Auth-Token": "admin-secret"}


class WithStore:
    def __init__(self, core, store) -> None:
        self.core, self.store = core, store


def run(coro):
    return asyncio.run(coro)


def error(r) -> tuple[int, str]:
    return r.status_code, r.json()["NeutronError"]["type"]


class Api:
    """An in-process API on a SQLite store (in memory unless a path is given), with an admin and
    project clients."""

    def __init__(self, store) -> None:
        self.store = store
        app = build_app(WithStore(MemNet([L2()]).core, store), admin_token="admin-secret")
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://kumoflow")

    async def token(self, project: str) -> dict:
        r = await self.http.post("/v2.0/tokens", headers=ADMIN, json={"token": {"project_id": project}})
        return {"X-Auth-Token": r.json()["token"]["token"]}

    async def ok(self, method: str, path: str, body=None, headers=ADMIN, expect=None, **params):
        r = await self.http.request(method, path, json=body, headers=headers, params=params or None)
        want = expect or {"POST": 201, "DELETE": 204}.get(method, 200)
        assert r.status_code == want, (method, path, r.status_code, r.text)
        return r.json() if r.content else None

    async def do(self, method: str, path: str, body=None, headers=ADMIN):
        return await self.http.request(method, path, json=body, headers=headers)

    async def refused(self, method: str, path: str, body=None, headers=ADMIN) -> tuple[int, str, str]:
        """Status, type and message of a refusal, checking that nothing was written."""
        before = self.store.revision
        r = await self.do(method, path, body, headers)
        assert r.status_code >= 400, (method, path, r.text)
        assert self.store.revision == before, f"{method} {path} was refused but wrote to the store"
        error = r.json()["NeutronError"]
        return r.status_code, error["type"], error["message"]


async def world(api: Api, blue: dict) -> dict:
    """An external network (admin's) 203.0.113.0/29, blue's network 10.0.0.0/24 with a port,
    and blue's router with a gateway on the external network and an interface on the subnet."""
    ext = (await api.ok("POST", "/v2.0/networks", {"network": {"name": "public", "router:external": True}}))["network"]
    ext_subnet = (await api.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": ext["id"],
                                                                    "cidr": "203.0.113.0/29"}}))["subnet"]
    net = (await api.ok("POST", "/v2.0/networks", {"network": {"name": "blue"}}, blue))["network"]
    subnet = (await api.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": net["id"], "cidr": "10.0.0.0/24"}},
                           blue))["subnet"]
    port = (await api.ok("POST", "/v2.0/ports", {"port": {"network_id": net["id"], "name": "vm1"}}, blue))["port"]
    router = (await api.ok("POST", "/v2.0/routers", {"router": {
        "name": "r1", "external_gateway_info": {"network_id": ext["id"]}}}, blue))["router"]
    await api.ok("PUT", f"/v2.0/routers/{router['id']}/add_router_interface", {"subnet_id": subnet["id"]}, blue)
    return {"ext": ext, "ext_subnet": ext_subnet, "net": net, "subnet": subnet, "port": port, "router": router}


def test_a_floating_ip_holds_an_address_of_the_external_network_through_a_port_of_its_own(tmp_path):
    async def body():
        store = await SQLiteStore.open(tmp_path / "kumoflow.db")
        api = Api(store)
        blue = await api.token("blue")
        ext = (await api.ok("POST", "/v2.0/networks", {"network": {"router:external": True}}))["network"]
        await api.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": ext["id"], "cidr": "203.0.113.0/29"}})

        fip = (await api.ok("POST", "/v2.0/floatingips", {"floatingip": {"floating_network_id": ext["id"]}},
                            blue))["floatingip"]
        assert {k: fip[k] for k in ("floating_ip_address", "floating_network_id", "port_id", "fixed_ip_address",
                                    "router_id", "status", "tenant_id", "project_id", "description", "tags",
                                    "revision_number")} == {
            "floating_ip_address": "203.0.113.2", "floating_network_id": ext["id"], "port_id": None,
            "fixed_ip_address": None, "router_id": None, "status": "DOWN", "tenant_id": "blue", "project_id": "blue",
            "description": "", "tags": [], "revision_number": 0}
        [held] = (await api.ok("GET", "/v2.0/ports", device_id=fip["id"]))["ports"]
        assert (held["device_owner"], held["fixed_ips"][0]["ip_address"], held["network_id"]) == (
            "network:floatingip", "203.0.113.2", ext["id"])
        # addresses never clash with ports': a port made now gets the next one
        port = (await api.ok("POST", "/v2.0/ports", {"port": {"network_id": ext["id"]}}))["port"]
        assert port["fixed_ips"][0]["ip_address"] == "203.0.113.3"
        # the floating IP's port cannot go by itself, nor change its address
        assert await api.refused("DELETE", f"/v2.0/ports/{held['id']}") == (
            409, "L3PortInUse", f"Port {held['id']} has owner network:floatingip and therefore cannot be deleted "
                                f"directly via the port API.")
        code, kind, _ = await api.refused("PUT", f"/v2.0/ports/{held['id']}", {"port": {
            "fixed_ips": [{"ip_address": "203.0.113.5"}]}})
        assert (code, kind) == (409, "L3PortInUse")

        # an address of one's choice: admin only (Neutron's policy); checked like a port's
        assert (await api.refused("POST", "/v2.0/floatingips", {"floatingip": {
            "floating_network_id": ext["id"], "floating_ip_address": "203.0.113.6"}}, blue))[:2] == (
            403, "PolicyNotAuthorized")
        chosen = (await api.ok("POST", "/v2.0/floatingips", {"floatingip": {
            "floating_network_id": ext["id"], "floating_ip_address": "203.0.113.6", "project_id": "blue"}}))
        assert chosen["floatingip"]["floating_ip_address"] == "203.0.113.6"
        for address, want in (("203.0.113.2", (409, "IpAddressAlreadyAllocated")),
                              ("203.0.113.3", (409, "IpAddressAlreadyAllocated")),
                              ("198.51.100.1", (400, "InvalidIpForNetwork")),
                              ("2001:db8::1", (400, "BadRequest")), ("nonsense", (400, "InvalidInput"))):
            got = await api.refused("POST", "/v2.0/floatingips", {"floatingip": {
                "floating_network_id": ext["id"], "floating_ip_address": address}})
            assert got[:2] == want, (address, got)

        # the network: it exists (for the caller), is external, has an IPv4 subnet
        assert (await api.refused("POST", "/v2.0/floatingips", {"floatingip": {
            "floating_network_id": "no-such-network"}}, blue))[:2] == (404, "NetworkNotFound")
        own = (await api.ok("POST", "/v2.0/networks", {"network": {}}, blue))["network"]
        assert await api.refused("POST", "/v2.0/floatingips", {"floatingip": {"floating_network_id": own["id"]}},
                                 blue) == (400, "BadRequest", f"Bad floatingip request: Network {own['id']} is not "
                                                              f"a valid external network.")
        v6 = (await api.ok("POST", "/v2.0/networks", {"network": {"router:external": True}}))["network"]
        await api.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": v6["id"], "cidr": "2001:db8:1::/64"}})
        code, kind, message = await api.refused("POST", "/v2.0/floatingips", {"floatingip": {
            "floating_network_id": v6["id"]}})
        assert (code, kind) == (400, "BadRequest") and "does not contain any IPv4 subnet" in message

        # the pool runs out (.2 .3 .6 taken: .4 .5 left); bulk is all or none
        r = await api.refused("POST", "/v2.0/floatingips", {"floatingips": [{"floating_network_id": ext["id"]}] * 3})
        assert r[:2] == (409, "IpAddressGenerationFailure")
        two = (await api.ok("POST", "/v2.0/floatingips", {"floatingips": [{"floating_network_id": ext["id"]}] * 2}))
        assert sorted(f["floating_ip_address"] for f in two["floatingips"]) == ["203.0.113.4", "203.0.113.5"]

        # deleting frees the address (and its port), in one commit
        before = store.revision
        await api.ok("DELETE", f"/v2.0/floatingips/{fip['id']}", headers=blue)
        assert store.revision == before + 1
        assert (await api.ok("GET", "/v2.0/ports", device_id=fip["id"]))["ports"] == []
        assert (await api.do("GET", f"/v2.0/floatingips/{fip['id']}")).status_code == 404
        again = (await api.ok("POST", "/v2.0/floatingips", {"floatingip": {"floating_network_id": ext["id"]}}))
        assert again["floatingip"]["floating_ip_address"] == "203.0.113.2"
        # the external network cannot go, nor stop being external, while floating IPs hold addresses on it
        assert (await api.refused("DELETE", f"/v2.0/networks/{ext['id']}"))[:2] == (409, "NetworkInUse")
        assert (await api.refused("PUT", f"/v2.0/networks/{ext['id']}", {"network": {"router:external": False}}))[
            :2] == (409, "ExternalNetworkInUse")

        # a new view of the store (a restart) finds them again
        db = NeutronDB(store)
        await db.ready()
        assert sorted(f.body["floating_ip_address"] for f in db.all("floatingip")) == [
            "203.0.113.2", "203.0.113.4", "203.0.113.5", "203.0.113.6"]
        await api.http.aclose()
        await store.close()
    run(body())


def test_associating_needs_a_router_from_the_ports_subnet_to_the_external_network():
    async def body():
        api = Api(await SQLiteStore.open(":memory:"))
        blue, red = await api.token("blue"), await api.token("red")
        ext = (await api.ok("POST", "/v2.0/networks", {"network": {"router:external": True}}))["network"]
        await api.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": ext["id"], "cidr": "203.0.113.0/24"}})
        net = (await api.ok("POST", "/v2.0/networks", {"network": {}}, blue))["network"]
        subnet = (await api.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": net["id"], "cidr": "10.0.0.0/24"}},
                               blue))["subnet"]
        port = (await api.ok("POST", "/v2.0/ports", {"port": {"network_id": net["id"]}}, blue))["port"]
        fixed = port["fixed_ips"][0]["ip_address"]
        create = {"floatingip": {"floating_network_id": ext["id"], "port_id": port["id"]}}
        unreachable = (404, "ExternalGatewayForFloatingIPNotFound",
                       f"External network {ext['id']} is not reachable from subnet {subnet['id']}.  Therefore, "
                       f"cannot associate Port {port['id']} with a Floating IP.")
        # no router; a router with the interface but no gateway; one with the gateway but no interface
        assert await api.refused("POST", "/v2.0/floatingips", create, blue) == unreachable
        inside = (await api.ok("POST", "/v2.0/routers", {"router": {"name": "inside"}}, blue))["router"]
        await api.ok("PUT", f"/v2.0/routers/{inside['id']}/add_router_interface", {"subnet_id": subnet["id"]}, blue)
        assert await api.refused("POST", "/v2.0/floatingips", create, blue) == unreachable
        await api.ok("PUT", f"/v2.0/routers/{inside['id']}/remove_router_interface", {"subnet_id": subnet["id"]},
                     blue)
        edge = (await api.ok("POST", "/v2.0/routers", {"router": {
            "name": "edge", "external_gateway_info": {"network_id": ext["id"]}}}, blue))["router"]
        assert await api.refused("POST", "/v2.0/floatingips", create, blue) == unreachable
        await api.ok("PUT", f"/v2.0/routers/{edge['id']}/add_router_interface", {"subnet_id": subnet["id"]}, blue)

        fip = (await api.ok("POST", "/v2.0/floatingips", create, blue))["floatingip"]
        assert (fip["port_id"], fip["fixed_ip_address"], fip["router_id"], fip["status"]) == (
            port["id"], fixed, edge["id"], "ACTIVE")
        # one floating IP per fixed address
        code, kind, message = await api.refused("POST", "/v2.0/floatingips", create, blue)
        assert (code, kind) == (409, "FloatingIPPortAlreadyAssociated") and fixed in message and fip["id"] in message
        spare = (await api.ok("POST", "/v2.0/floatingips", {"floatingip": {"floating_network_id": ext["id"]}},
                              blue))["floatingip"]
        assert (await api.refused("PUT", f"/v2.0/floatingips/{spare['id']}", {"floatingip": {
            "port_id": port["id"]}}, blue))[:2] == (409, "FloatingIPPortAlreadyAssociated")
        assert (await api.refused("POST", "/v2.0/floatingips", {"floatingips": [
            {"floating_network_id": ext["id"], "port_id": port["id"]}]}, blue))[:2] == (
            409, "FloatingIPPortAlreadyAssociated")

        # a port with two IPv4 addresses: fixed_ip_address says which
        two = (await api.ok("POST", "/v2.0/ports", {"port": {"network_id": net["id"], "fixed_ips": [
            {"ip_address": "10.0.0.50"}, {"ip_address": "10.0.0.51"}]}}, blue))["port"]
        for extra, want in (({}, "has multiple fixed IPv4 addresses"),
                            ({"fixed_ip_address": "10.0.0.52"}, f"Port {two['id']} does not have fixed ip 10.0.0.52"),
                            ({"fixed_ip_address": "2001:db8::1"}, "is not an IPv4 address")):
            code, kind, message = await api.refused("PUT", f"/v2.0/floatingips/{spare['id']}", {"floatingip": {
                "port_id": two["id"], **extra}}, blue)
            assert (code, kind) == (400, "BadRequest") and want in message, message
        moved = (await api.ok("PUT", f"/v2.0/floatingips/{spare['id']}", {"floatingip": {
            "port_id": two["id"], "fixed_ip_address": "10.0.0.51"}}, blue))["floatingip"]
        assert (moved["fixed_ip_address"], moved["status"], moved["revision_number"]) == ("10.0.0.51", "ACTIVE", 1)
        # both addresses of a port may have one each, in one bulk request
        both = await api.ok("POST", "/v2.0/floatingips", {"floatingips": [
            {"floating_network_id": ext["id"], "port_id": two["id"], "fixed_ip_address": "10.0.0.50"},
            {"floating_network_id": ext["id"], "port_id": two["id"], "fixed_ip_address": "10.0.0.50"}]}, blue,
            expect=409)
        assert both["NeutronError"]["type"] == "FloatingIPPortAlreadyAssociated"
        await api.ok("POST", "/v2.0/floatingips", {"floatingip": {
            "floating_network_id": ext["id"], "port_id": two["id"], "fixed_ip_address": "10.0.0.50"}}, blue)

        # what cannot be associated
        assert (await api.refused("POST", "/v2.0/floatingips", {"floatingip": {
            "floating_network_id": ext["id"], "fixed_ip_address": fixed}}, blue))[:2] == (400, "BadRequest")
        [iface] = (await api.ok("GET", "/v2.0/ports", device_owner="network:router_interface", headers=blue))["ports"]
        code, kind, message = await api.refused("PUT", f"/v2.0/floatingips/{spare['id']}", {"floatingip": {
            "port_id": iface["id"]}}, blue)
        assert (code, kind) == (400, "BadRequest") and "unable to be assigned a floating IP" in message
        v6net = (await api.ok("POST", "/v2.0/networks", {"network": {}}, blue))["network"]
        await api.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": v6net["id"], "cidr": "2001:db8:2::/64"}},
                     blue)
        v6port = (await api.ok("POST", "/v2.0/ports", {"port": {"network_id": v6net["id"]}}, blue))["port"]
        code, kind, message = await api.refused("PUT", f"/v2.0/floatingips/{spare['id']}", {"floatingip": {
            "port_id": v6port["id"]}}, blue)
        assert (code, kind) == (400, "BadRequest") and "no fixed IPv4 addresses" in message
        nogw = (await api.ok("POST", "/v2.0/networks", {"network": {}}, blue))["network"]
        nogw_subnet = (await api.ok("POST", "/v2.0/subnets", {"subnet": {
            "network_id": nogw["id"], "cidr": "10.9.0.0/24", "gateway_ip": None}}, blue))["subnet"]
        nogw_port = (await api.ok("POST", "/v2.0/ports", {"port": {"network_id": nogw["id"]}}, blue))["port"]
        assert await api.refused("PUT", f"/v2.0/floatingips/{spare['id']}", {"floatingip": {
            "port_id": nogw_port["id"]}}, blue) == (
            400, "BadRequest", f"Bad floatingip request: Cannot add floating IP to port on subnet {nogw_subnet['id']} "
                               f"which has no gateway_ip.")
        # another project's port is not found, as if it did not exist
        red_net = (await api.ok("POST", "/v2.0/networks", {"network": {}}, red))["network"]
        red_port = (await api.ok("POST", "/v2.0/ports", {"port": {"network_id": red_net["id"]}}, red))["port"]
        assert (await api.refused("PUT", f"/v2.0/floatingips/{spare['id']}", {"floatingip": {
            "port_id": red_port["id"]}}, blue))[:2] == (404, "PortNotFound")

        # an update without port_id keeps the association; port_id null ends it
        kept = (await api.ok("PUT", f"/v2.0/floatingips/{fip['id']}", {"floatingip": {"description": "web"}},
                             blue))["floatingip"]
        assert (kept["port_id"], kept["description"], kept["status"]) == (port["id"], "web", "ACTIVE")
        off = (await api.ok("PUT", f"/v2.0/floatingips/{fip['id']}", {"floatingip": {"port_id": None}},
                            blue))["floatingip"]
        assert (off["port_id"], off["fixed_ip_address"], off["router_id"], off["status"]) == (None, None, None, "DOWN")
        back = (await api.ok("PUT", f"/v2.0/floatingips/{fip['id']}", {"floatingip": {"port_id": port["id"]}},
                             blue))["floatingip"]
        assert (back["router_id"], back["status"]) == (edge["id"], "ACTIVE")
        await api.http.aclose()
    run(body())


def test_what_an_association_needs_cannot_go_and_a_deleted_port_is_disassociated():
    async def body():
        store = await SQLiteStore.open(":memory:")
        api = Api(store)
        blue = await api.token("blue")
        w = await world(api, blue)
        router, subnet, port = w["router"]["id"], w["subnet"]["id"], w["port"]
        fip = (await api.ok("POST", "/v2.0/floatingips", {"floatingip": {
            "floating_network_id": w["ext"]["id"], "port_id": port["id"]}}, blue))["floatingip"]

        assert await api.refused("PUT", f"/v2.0/routers/{router}/remove_router_interface", {"subnet_id": subnet},
                                 blue) == (
            409, "RouterInterfaceInUseByFloatingIP", f"Router interface for subnet {subnet} on router {router} cannot "
                                                     f"be deleted, as it is required by one or more floating IPs.")
        for gateway in (None, {"network_id": (await api.ok("POST", "/v2.0/networks", {"network": {
                "router:external": True}}))["network"]["id"]}):
            assert await api.refused("PUT", f"/v2.0/routers/{router}", {"router": {
                "external_gateway_info": gateway}}, blue) == (
                409, "RouterExternalGatewayInUseByFloatingIp",
                f"Gateway cannot be updated for router {router}, since a gateway to external network "
                f"{w['ext']['id']} is required by one or more floating IPs.")
        # the same network again (enable_snat): allowed, the gateway keeps its port and address
        address = w["router"]["external_gateway_info"]["external_fixed_ips"]
        same = (await api.ok("PUT", f"/v2.0/routers/{router}", {"router": {"external_gateway_info": {
            "network_id": w["ext"]["id"], "enable_snat": False}}}, blue))["router"]
        assert same["external_gateway_info"] == {"network_id": w["ext"]["id"], "enable_snat": False,
                                                 "external_fixed_ips": address}
        # the port keeps the associated address
        code, kind, message = await api.refused("PUT", f"/v2.0/ports/{port['id']}", {"port": {
            "fixed_ips": [{"ip_address": "10.0.0.99"}]}}, blue)
        assert (code, kind) == (400, "BadRequest") and "associated to floating ip" in message
        fixed = port["fixed_ips"][0]["ip_address"]
        await api.ok("PUT", f"/v2.0/ports/{port['id']}", {"port": {"fixed_ips": [
            {"ip_address": fixed}, {"ip_address": "10.0.0.99"}]}}, blue)

        # deleting the port disassociates its floating IP, in the same commit
        before = store.revision
        await api.ok("DELETE", f"/v2.0/ports/{port['id']}", headers=blue)
        assert store.revision == before + 1
        shown = (await api.ok("GET", f"/v2.0/floatingips/{fip['id']}", headers=blue))["floatingip"]
        assert (shown["port_id"], shown["fixed_ip_address"], shown["router_id"], shown["status"]) == (
            None, None, None, "DOWN")
        # then the interface and the gateway may go
        await api.ok("PUT", f"/v2.0/routers/{router}/remove_router_interface", {"subnet_id": subnet}, blue)
        await api.ok("PUT", f"/v2.0/routers/{router}", {"router": {"external_gateway_info": None}}, blue)
        await api.http.aclose()
    run(body())


def test_projects_see_their_own_floating_ips_and_lists_filter_sort_and_page():
    async def body():
        api = Api(await SQLiteStore.open(":memory:"))
        blue, red = await api.token("blue"), await api.token("red")
        w = await world(api, blue)
        ext = w["ext"]["id"]
        bound = (await api.ok("POST", "/v2.0/floatingips", {"floatingip": {
            "floating_network_id": ext, "port_id": w["port"]["id"], "tags": ["web"]}}, blue))["floatingip"]
        loose = (await api.ok("POST", "/v2.0/floatingips", {"floatingip": {"floating_network_id": ext}},
                              blue))["floatingip"]
        theirs = (await api.ok("POST", "/v2.0/floatingips", {"floatingip": {"floating_network_id": ext}},
                               red))["floatingip"]
        ids = lambda data: sorted(f["id"] for f in data["floatingips"])
        assert ids(await api.ok("GET", "/v2.0/floatingips", headers=blue)) == sorted([bound["id"], loose["id"]])
        assert ids(await api.ok("GET", "/v2.0/floatingips", headers=red)) == [theirs["id"]]
        assert ids(await api.ok("GET", "/v2.0/floatingips")) == sorted([bound["id"], loose["id"], theirs["id"]])
        for method, body in (("GET", None), ("PUT", {"floatingip": {"description": "mine"}}), ("DELETE", None)):
            r = await api.do(method, f"/v2.0/floatingips/{bound['id']}", body, red)
            assert error(r) == (404, "FloatingIPNotFound"), (method, r.text)
        # filters, fields, sorting, pages
        assert ids(await api.ok("GET", "/v2.0/floatingips", headers=blue, status="ACTIVE")) == [bound["id"]]
        assert ids(await api.ok("GET", "/v2.0/floatingips", headers=blue, port_id=w["port"]["id"])) == [bound["id"]]
        assert ids(await api.ok("GET", "/v2.0/floatingips", router_id=w["router"]["id"])) == [bound["id"]]
        assert ids(await api.ok("GET", "/v2.0/floatingips", floating_ip_address=loose["floating_ip_address"])) == [
            loose["id"]]
        assert ids(await api.ok("GET", "/v2.0/floatingips", tags="web")) == [bound["id"]]
        assert (await api.ok("GET", "/v2.0/floatingips", headers=blue, fields=["id", "status"],
                             sort_key="floating_ip_address", sort_dir="desc"))["floatingips"] == [
            {"id": loose["id"], "status": "DOWN"}, {"id": bound["id"], "status": "ACTIVE"}]
        page = await api.ok("GET", "/v2.0/floatingips", limit="2")
        assert len(page["floatingips"]) == 2 and [link["rel"] for link in page["floatingips_links"]] == [
            "next", "previous"]
        assert (await api.ok("GET", f"/v2.0/floatingips/{bound['id']}", headers=blue, fields="router_id")) == {
            "floatingip": {"router_id": w["router"]["id"]}}
        assert error(await api.do("GET", "/v2.0/floatingips?colour=red")) == (400, "HTTPBadRequest")
        assert error(await api.do("PUT", f"/v2.0/floatingips/{bound['id']}", {"floatingip": {
            "floating_ip_address": "203.0.113.9"}})) == (400, "HTTPBadRequest")
        await api.http.aclose()
    run(body())


def test_router_checks_refuse_bad_input_with_neutrons_types_and_apply_nothing():
    async def body():
        store = await SQLiteStore.open(":memory:")
        api = Api(store)
        blue = await api.token("blue")
        ext = (await api.ok("POST", "/v2.0/networks", {"network": {"router:external": True}}))["network"]
        ext_subnet = (await api.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": ext["id"],
                                                                        "cidr": "203.0.113.0/24"}}))["subnet"]

        async def subnet(cidr, **extra):
            net = (await api.ok("POST", "/v2.0/networks", {"network": {}}, blue))["network"]
            return (await api.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": net["id"], "cidr": cidr,
                                                                      **extra}}, blue))["subnet"]
        a, b = await subnet("10.1.0.0/24"), await subnet("10.2.0.0/24")
        wide, nogw, outside = await subnet("10.1.0.0/16"), await subnet("10.3.0.0/24", gateway_ip=None), \
            await subnet("203.0.113.0/25")
        router = (await api.ok("POST", "/v2.0/routers", {"router": {"name": "r"}}, blue))["router"]["id"]
        base = f"/v2.0/routers/{router}"
        await api.ok("PUT", f"{base}/add_router_interface", {"subnet_id": a["id"]}, blue)
        await api.ok("PUT", f"{base}/add_router_interface", {"subnet_id": b["id"]}, blue)

        # an interface overlapping one the router has: by subnet, by port
        assert await api.refused("PUT", f"{base}/add_router_interface", {"subnet_id": wide["id"]}, blue) == (
            400, "BadRequest", f"Bad router request: Cidr 10.1.0.0/16 of subnet {wide['id']} overlaps with cidr "
                               f"10.1.0.0/24 of subnet {a['id']}")
        wide_port = (await api.ok("POST", "/v2.0/ports", {"port": {"network_id": wide["network_id"]}}, blue))["port"]
        code, kind, message = await api.refused("PUT", f"{base}/add_router_interface", {"port_id": wide_port["id"]},
                                                blue)
        assert (code, kind) == (400, "BadRequest") and "overlaps with cidr 10.1.0.0/24" in message
        assert (await api.ok("GET", f"/v2.0/ports/{wide_port['id']}", headers=blue))["port"]["device_owner"] == ""
        # a subnet without a gateway address, by subnet_id
        assert await api.refused("PUT", f"{base}/add_router_interface", {"subnet_id": nogw["id"]}, blue) == (
            400, "BadRequest", f"Bad router request: Subnet {nogw['id']} does not have a gateway IP")

        # the gateway: a network that does not exist, one that is not external
        for method, path, body in (("POST", "/v2.0/routers", lambda g: {"router": {"external_gateway_info": g}}),
                                   ("PUT", base, lambda g: {"router": {"external_gateway_info": g,
                                                                       "name": "renamed"}})):
            assert (await api.refused(method, path, body({"network_id": "nowhere"}), blue)) == (
                404, "NetworkNotFound", "Network nowhere could not be found.")
            assert (await api.refused(method, path, body({"network_id": a["network_id"]}), blue)) == (
                400, "BadRequest", f"Bad router request: Network {a['network_id']} is not an external network")
        assert (await api.ok("GET", base, headers=blue))["router"]["name"] == "r"
        # a gateway subnet overlapping an interface
        clash = (await api.ok("POST", "/v2.0/networks", {"network": {"router:external": True}}))["network"]
        await api.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": clash["id"], "cidr": "10.2.0.0/16"}})
        code, kind, message = await api.refused("PUT", base, {"router": {"external_gateway_info": {
            "network_id": clash["id"]}}}, blue)
        assert (code, kind) == (400, "BadRequest") and "overlaps with cidr 10.2.0.0/24" in message
        # bulk: a bad gateway in one makes none; two good ones get two addresses
        assert (await api.refused("POST", "/v2.0/routers", {"routers": [
            {"external_gateway_info": {"network_id": ext["id"]}}, {"external_gateway_info": {
                "network_id": "nowhere"}}]}, blue))[:2] == (404, "NetworkNotFound")
        made = (await api.ok("POST", "/v2.0/routers", {"routers": [
            {"external_gateway_info": {"network_id": ext["id"]}}] * 2}, blue))["routers"]
        addresses = [r["external_gateway_info"]["external_fixed_ips"][0]["ip_address"] for r in made]
        assert len(set(addresses)) == 2

        # extra routes
        refused_route = lambda routes: api.refused("PUT", base, {"router": {"routes": routes, "name": "x"}}, blue)
        for destination, nexthop, want in (
                ("172.16.0.0/16", "10.9.0.5", "the nexthop is not connected with router"),
                ("172.16.0.0/16", "10.1.0.1", "the nexthop is used by router"),
                ("2001:db8::/32", "10.1.0.5", "different IP versions")):
            code, kind, message = await refused_route([{"destination": destination, "nexthop": nexthop}])
            assert (code, kind) == (400, "InvalidRoutes") and want in message, message
        for destination, nexthop, want in (("172.16.0.1", "10.1.0.5", "isn't a recognized IP subnet cidr"),
                                           ("172.16.0.1/16", "10.1.0.5", "'172.16.0.0/16' is recommended"),
                                           ("somewhere", "10.1.0.5", "is not a valid IP subnet"),
                                           ("172.16.0.0/16", "router", "is not a valid IP address")):
            code, kind, message = await refused_route([{"destination": destination, "nexthop": nexthop}])
            assert (code, kind) == (400, "InvalidInput") and want in message, message
        route = {"destination": "172.16.0.0/16", "nexthop": "10.1.0.5"}
        assert (await refused_route([route, route]))[:2] == (400, "InvalidInput")
        assert (await api.ok("GET", base, headers=blue))["router"]["routes"] == []
        await api.ok("PUT", base, {"router": {"routes": [route]}}, blue)
        # removing the interface a next hop needs
        assert await api.refused("PUT", f"{base}/remove_router_interface", {"subnet_id": a["id"]}, blue) == (
            409, "RouterInterfaceInUseByRoute", f"Router interface for subnet {a['id']} on router {router} cannot be "
                                                f"deleted, as it is required by one or more routes.")
        # a next hop on the gateway's subnet (an upstream router): the gateway cannot go while it is needed
        upstream = {"destination": "198.51.100.0/24", "nexthop": "203.0.113.254"}
        assert (await refused_route([route, upstream]))[:2] == (400, "InvalidRoutes")
        both = (await api.ok("PUT", base, {"router": {"external_gateway_info": {"network_id": ext["id"]},
                                                      "routes": [route, upstream]}}, blue))["router"]
        assert both["routes"] == [route, upstream]
        code, kind, message = await api.refused("PUT", base, {"router": {"external_gateway_info": None}}, blue)
        assert (code, kind) == (409, "RouterInterfaceInUseByRoute") and "external gateway" in message
        # ... unless the same request drops the route
        await api.ok("PUT", base, {"router": {"external_gateway_info": None, "routes": [route]}}, blue)
        # a network that is a router's gateway stays external
        assert (await api.refused("PUT", f"/v2.0/networks/{ext['id']}", {"network": {"router:external": False}}))[
            :2] == (409, "ExternalNetworkInUse")
        # the router's subnets include its gateway's: an interface on the external subnet's range overlaps
        await api.ok("PUT", base, {"router": {"external_gateway_info": {"network_id": ext["id"]}}}, blue)
        code, kind, message = await api.refused("PUT", f"{base}/add_router_interface", {"subnet_id": outside["id"]},
                                                blue)
        assert (code, kind) == (400, "BadRequest") and ext_subnet["id"] in message
        await api.http.aclose()
    run(body())


def test_a_floating_ip_port_and_a_routers_addresses_come_from_the_same_pools():
    async def body():
        api = Api(await SQLiteStore.open(":memory:"))
        ext = (await api.ok("POST", "/v2.0/networks", {"network": {"router:external": True}}))["network"]
        await api.ok("POST", "/v2.0/subnets", {"subnet": {"network_id": ext["id"], "cidr": "203.0.113.0/28"}})
        fip = (await api.ok("POST", "/v2.0/floatingips", {"floatingip": {"floating_network_id": ext["id"]}}))
        router = (await api.ok("POST", "/v2.0/routers", {"router": {"external_gateway_info": {
            "network_id": ext["id"]}}}))["router"]
        port = (await api.ok("POST", "/v2.0/ports", {"port": {"network_id": ext["id"]}}))["port"]
        taken = [fip["floatingip"]["floating_ip_address"],
                 router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"],
                 port["fixed_ips"][0]["ip_address"]]
        assert len(set(taken)) == 3 and all(ipaddress.ip_address(a) in ipaddress.ip_network("203.0.113.0/28")
                                            for a in taken)
        await api.http.aclose()
    run(body())


def test_kumoflow_apply_reads_floating_ips_known_by_address_or_port():
    from kumoflow.apply import parse
    from kumoflow.net.errors import TopologyError

    plan = parse("floatingips:\n"
                 "  - {network: public, port: web}\n"
                 "  - {network: public, port: web, fixed_ip_address: 10.0.0.7}\n"
                 "  - {network: public, floating_ip_address: 203.0.113.10, description: spare}\n", "f.yaml")
    assert [(d.name, d.line) for d in plan.decls["floatingips"]] == [
        ("of port web", 2), ("of port web (10.0.0.7)", 3), ("203.0.113.10", 4)]
    assert plan.decls["floatingips"][2].attrs["description"] == "spare"
    try:
        parse("floatingips:\n"
              "  - {network: public}\n"
              "  - {network: public, fixed_ip_address: 10.0.0.7, floating_ip_address: 203.0.113.10}\n"
              "  - {port: web}\n"
              "  - {network: public, port: web}\n"
              "  - {network: public, port: web}\n"
              "  - {network: public, floating_ip_address: 203.0.113.300, name: x}\n", "f.yaml")
    except TopologyError as exc:
        text = str(exc)
    else:
        raise AssertionError("the file should not parse")
    for want in ("f.yaml:2: floatingips[0]: a floating IP is known by its floating_ip_address or its port",
                 "f.yaml:3: floatingips[1].fixed_ip_address: needs port",
                 "f.yaml:4: floatingips[2].network: missing required field",
                 "f.yaml:6: floatingips[4]: floating IP of port web is declared twice (first on line 5)",
                 "f.yaml:7: floatingips[5].name: unknown field",
                 "f.yaml:7: floatingips[5].floating_ip_address:"):
        assert want in text, (want, text)


def test_kumoflow_apply_reads_load_balancers_with_what_is_under_them():
    from kumoflow.apply import parse
    from kumoflow.net.errors import TopologyError

    plan = parse("loadbalancers:\n"
                 "  - name: web\n"
                 "    vip_subnet: front-v4\n"
                 "    listeners: [{name: http, protocol: HTTP, protocol_port: 80, default_pool: www}]\n"
                 "    pools:\n"
                 "      - name: www\n"
                 "        protocol: HTTP\n"
                 "        lb_algorithm: ROUND_ROBIN\n"
                 "        members:\n"
                 "          - {address: 10.50.0.10, protocol_port: 8080, weight: 2}\n"
                 "          - {address: '2001:db8::a', protocol_port: 8080, subnet: front-v6}\n"
                 "        healthmonitor: {type: HTTP, delay: 5, timeout: 3, max_retries: 3, http_version: 1.1}\n",
                 "f.yaml")
    [lb] = plan.decls["loadbalancers"]
    [listener], [pool] = lb.attrs["listeners"], lb.attrs["pools"]
    assert (lb.name, lb.attrs["vip_subnet"].name, listener.name, listener.attrs["default_pool"], pool.where) == (
        "web", "front-v4", "http", "www", "loadbalancers[0].pools[0]")
    assert [(m.name, m.line) for m in pool.attrs["members"]] == [("10.50.0.10:8080", 10), ("[2001:db8::a]:8080", 11)]
    assert pool.attrs["members"][1].attrs["subnet"].name == "front-v6"
    assert pool.attrs["healthmonitor"].attrs["http_version"] == 1.1
    try:
        parse("loadbalancers:\n"
              "  - name: a\n"
              "    listeners:\n"
              "      - {name: l, protocol: TCP, protocol_port: 80, default_pool: nope}\n"
              "      - {name: l, protocol: TCP, protocol_port: 81}\n"
              "    pools:\n"
              "      - name: p\n"
              "        protocol: TCP\n"
              "        lb_algorithm: ROUND_ROBIN\n"
              "        members:\n"
              "          - {address: 10.0.0.5, protocol_port: 80}\n"
              "          - {address: 10.0.0.5, protocol_port: 80}\n"
              "          - {address: 10.0.0.300, protocol_port: 80}\n"
              "        healthmonitor: {type: HTTP, delay: 5, http_version: 2}\n"
              "  - {name: b, vip_subnet: s, colour: red}\n", "f.yaml")
    except TopologyError as exc:
        text = str(exc)
    else:
        raise AssertionError("the file should not parse")
    for want in ("f.yaml:2: loadbalancers[0]: a load balancer needs vip_subnet or vip_network",
                 "f.yaml:4: loadbalancers[0].listeners[0].default_pool: no pool named 'nope' among the load "
                 "balancer's pools",
                 "f.yaml:5: loadbalancers[0].listeners[1].name: listener 'l' is declared twice (first on line 4)",
                 "f.yaml:12: loadbalancers[0].pools[0].members[1]: member '10.0.0.5:80' is declared twice (first on "
                 "line 11)",
                 "f.yaml:13: loadbalancers[0].pools[0].members[2].address:",
                 "f.yaml:14: loadbalancers[0].pools[0].healthmonitor.timeout: missing required field",
                 "f.yaml:14: loadbalancers[0].pools[0].healthmonitor.http_version: '2': 1.0 or 1.1",
                 "f.yaml:15: loadbalancers[1].colour: unknown field"):
        assert want in text, (want, text)


def test_a_bgp_speaker_advertises_its_gateway_networks_routers_subnets_and_floating_ips():
    async def body():
        store = await SQLiteStore.open(":memory:")
        api = Api(store)
        blue = await api.token("blue")
        w = await world(api, blue)
        gateway = w["router"]["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
        fip = (await api.ok("POST", "/v2.0/floatingips", {"floatingip": {
            "floating_network_id": w["ext"]["id"], "port_id": w["port"]["id"]}}, blue))["floatingip"]
        speaker = (await api.ok("POST", "/v2.0/bgp-speakers", {"bgp_speaker": {
            "name": "edge", "local_as": 64512, "ip_version": 4}}))["bgp_speaker"]
        path = f"/v2.0/bgp-speakers/{speaker['id']}"
        assert (await api.ok("GET", f"{path}/get_advertised_routes")) == {"advertised_routes": []}
        await api.ok("PUT", f"{path}/add_gateway_network", {"network_id": w["ext"]["id"]})
        routes = (await api.ok("GET", f"{path}/get_advertised_routes"))["advertised_routes"]
        assert routes == [{"destination": "10.0.0.0/24", "next_hop": gateway},
                          {"destination": f"{fip['floating_ip_address']}/32", "next_hop": gateway}]
        await api.ok("PUT", path, {"bgp_speaker": {"advertise_tenant_networks": False}})
        routes = (await api.ok("GET", f"{path}/get_advertised_routes"))["advertised_routes"]
        assert [r["destination"] for r in routes] == [f"{fip['floating_ip_address']}/32"]
        assert (await api.do("GET", f"{path}/get_advertised_routes", headers=blue)).status_code == 403
        assert error(await api.do("GET", "/v2.0/bgp-speakers/nope/get_advertised_routes")) == (
            404, "BgpSpeakerNotFound")
    run(body())
