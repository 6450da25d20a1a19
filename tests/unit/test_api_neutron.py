"""The Neutron resources in process (no root, no sockets): a port's status
from the switch it is bound to (a controller core joined to switch
datapaths in memory, memnet.py), the in-memory view following the store,
address pools, one commit per request. The API as a whole, against a real
controller process, is tests/integration/test_api_neutron_controller.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress

import httpx
import pytest

from kumoflow import ofp
from kumoflow.api.neutron.db import NeutronDB
from kumoflow.api.neutron.subnets import default_pools, host_range
from kumoflow.api.server import build_app
from kumoflow.apps.l2 import LearningSwitch as L2
from kumoflow.packet.addr import eui64
from kumoflow.store.sqlite import SQLiteStore
from kumoflow.switch.port import MemoryPort

from memnet import MemNet

ADMIN = {"X-Auth-Token": "admin-secret"}


def run(coro):
    return asyncio.run(coro)


def client(controller) -> httpx.AsyncClient:
    app = build_app(controller, admin_token="admin-secret")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://kumoflow")


class WithStore:
    """What build_app reads of a runtime Controller: its core and its store."""

    def __init__(self, core, store) -> None:
        self.core, self.store = core, store


@pytest.fixture
def net():
    net = MemNet([L2()])
    s1 = net.switch(1, 3)
    s1.dp.add_port(MemoryPort(ofp.OFPP.LOCAL, "topo-s1", "0a:00:00:00:01:fe"))
    net.switch(2, 3)
    net.start()
    return net


def test_a_ports_status_follows_the_switch_port_it_is_bound_to(net):
    async def body():
        async with client(net.core) as c, pumping(net):
            network = (await c.post("/v2.0/networks", headers=ADMIN, json={"network": {}})).json()["network"]

            async def port(**binding):
                r = await c.post("/v2.0/ports", headers=ADMIN, json={"port": {"network_id": network["id"],
                                                                            **binding}})
                assert r.status_code == 201, r.text
                return r.json()["port"]["id"]

            async def status(port_id):
                return (await c.get(f"/v2.0/ports/{port_id}", headers=ADMIN)).json()["port"]["status"]

            by_dpid = await port(**{"binding:host_id": "0x1", "binding:profile": {"port_no": 2}})
            by_decimal = await port(**{"binding:host_id": "2", "binding:profile": {"interface": "s2-eth1"}})
            by_name = await port(**{"binding:host_id": "topo-s1", "binding:profile": {"interface": "s1-eth3"}})
            by_short_name = await port(**{"binding:host_id": "s1", "binding:profile": {"port_no": 1}})
            no_such_port = await port(**{"binding:host_id": "0x1", "binding:profile": {"port_no": 99}})
            no_such_switch = await port(**{"binding:host_id": "0x9", "binding:profile": {"port_no": 1}})
            unbound = await port()
            assert [await status(p) for p in (by_dpid, by_decimal, by_name, by_short_name)] == ["ACTIVE"] * 4
            assert [await status(p) for p in (no_such_port, no_such_switch, unbound)] == ["DOWN"] * 3
            listed = (await c.get("/v2.0/ports", headers=ADMIN, params={"status": "ACTIVE"})).json()["ports"]
            assert {p["id"] for p in listed} == {by_dpid, by_decimal, by_name, by_short_name}

            net.set_link(net.switches[1], 2, False)              # the switch reports its port down
            net.run()
            assert await status(by_dpid) == "DOWN"
            net.set_link(net.switches[1], 2, True)
            net.run()
            assert await status(by_dpid) == "ACTIVE"
            r = await c.put(f"/v2.0/ports/{by_dpid}", headers=ADMIN, json={"port": {"admin_state_up": False}})
            assert r.json()["port"]["status"] == "DOWN"
            net.switches[2].disconnect()                          # the switch goes away
            net.run()
            assert await status(by_decimal) == "DOWN"
            # a binding moved to another switch port follows at once
            r = await c.put(f"/v2.0/ports/{by_decimal}", headers=ADMIN, json={"port": {
                "binding:host_id": "1", "binding:profile": {"port_no": 3}}})
            assert r.json()["port"]["status"] == "ACTIVE"
    run(body())


@contextlib.asynccontextmanager
async def pumping(net):
    """Delivers what the switches and the controller send each other while the test awaits
    (the API's own requests of a switch, DESC for its name, need answers)."""
    async def pump():
        while True:
            net.run()
            await asyncio.sleep(0.001)
    task = asyncio.ensure_future(pump())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_a_kumoflow_switch_is_found_by_the_name_its_desc_reply_gives():
    from kumoflow.api.sdn import desc_name

    net = MemNet([L2()])
    named = net.switch(1, 3)
    named.dp.dp_desc = "lab-s1"                      # kumoflow switch --name lab-s1
    net.switch(2, 3)                                 # no --name: dp_desc "kumoflow datapath 0x..."
    twin_a, twin_b = net.switch(3, 2), net.switch(4, 2)
    twin_a.dp.dp_desc = twin_b.dp.dp_desc = "twin"   # two switches, one name: neither is found by it
    bridge = net.switch(5, 2)
    bridge.dp.add_port(MemoryPort(ofp.OFPP.LOCAL, "lab-s5", "0a:00:00:00:05:fe"))    # an Open vSwitch bridge
    net.switch(6, 2).dp.dp_desc = "other-s5"         # a kumoflow switch of another topology, also s5
    net.start()
    assert desc_name(ofp.DescReply("kumoflow", "", "", "", "lab-s1")) == "lab-s1"
    assert desc_name(ofp.DescReply("kumoflow", "", "", "", "kumoflow datapath 0x0000000000000002")) is None
    assert desc_name(ofp.DescReply("kumoflow", "", "", "", "0x2")) is None        # a datapath id is no name
    assert desc_name(ofp.DescReply("Nicira, Inc.", "", "", "", "s1")) is None    # not ours: a description

    async def body():
        async with client(net.core) as c, pumping(net):
            network = (await c.post("/v2.0/networks", headers=ADMIN, json={"network": {}})).json()["network"]

            async def port(host, port_no=2):
                r = await c.post("/v2.0/ports", headers=ADMIN, json={"port": {
                    "network_id": network["id"], "binding:host_id": host, "binding:profile": {"port_no": port_no}}})
                assert r.status_code == 201, r.text
                return r.json()["port"]

            # s5 is short for two names, one of them known only from a DESC reply not read yet
            assert (await port("s5"))["status"] == "DOWN"
            assert (await port("lab-s5"))["status"] == (await port("other-s5"))["status"] == "ACTIVE"
            by_name, by_short_name = await port("lab-s1"), await port("s1")
            assert (by_name["status"], by_short_name["status"]) == ("ACTIVE", "ACTIVE")
            assert (await port("twin"))["status"] == "DOWN"
            assert (await port("3"))["status"] == "ACTIVE"
            assert (await port("s9"))["status"] == "DOWN"
            listed = (await c.get("/v2.0/ports", headers=ADMIN, params={"status": "ACTIVE"})).json()["ports"]
            assert {p["binding:host_id"] for p in listed} == {"lab-s1", "s1", "3", "lab-s5", "other-s5"}
            switches = (await c.get("/sdn/switches", headers=ADMIN, params={"counters": "false"})).json()
            assert [s["name"] for s in switches["switches"]] == ["lab-s1", None, "twin", "twin", "lab-s5",
                                                                 "other-s5"]
            r = await c.get("/sdn/switches/s1", headers=ADMIN, params={"counters": "false"})
            assert r.status_code == 200 and r.json()["switch"]["dpid"] == "0000000000000001"
            assert (await c.get("/sdn/switches/twin", headers=ADMIN)).status_code == 404
            # the name belongs to the switch's session: it comes back with the switch
            net.switches[1].disconnect()
            net.run()
            r = await c.get(f"/v2.0/ports/{by_name['id']}", headers=ADMIN)
            assert r.json()["port"]["status"] == "DOWN"
    run(body())


def test_the_view_follows_the_store_and_each_request_is_one_commit(tmp_path):
    async def body():
        store = await SQLiteStore.open(tmp_path / "kumoflow.db")
        controller = WithStore(MemNet([L2()]).core, store)
        async with client(controller) as c:
            network = (await c.post("/v2.0/networks", headers=ADMIN, json={"network": {"name": "a"}})).json()
            network_id = network["network"]["id"]
            await c.post("/v2.0/subnets", headers=ADMIN, json={"subnet": {"network_id": network_id,
                                                                          "cidr": "10.0.0.0/24"}})
            before = store.revision
            r = await c.post("/v2.0/ports", headers=ADMIN, json={"ports": [{"network_id": network_id}] * 3})
            assert r.status_code == 201
            assert store.revision == before + 1        # three ports and the default group: one commit
            kinds = sorted(c.kind for c in await store.changes(before))
            assert kinds == ["port"] * 3 + ["security_group"] + ["security_group_rule"] * 4
            # deleting the network takes its subnet in the same commit
            for p in r.json()["ports"]:
                await c.delete(f"/v2.0/ports/{p['id']}", headers=ADMIN)
            before = store.revision
            assert (await c.delete(f"/v2.0/networks/{network_id}", headers=ADMIN)).status_code == 204
            assert store.revision == before + 1
            assert [(c.kind, c.record) for c in await store.changes(before)] == [("subnet", None), ("network", None)]
        # written by another writer of the same store: the view sees it (the change feed)
        db = NeutronDB(store)
        await db.ready()
        await store.create("network", {"name": "b", "provider:network_type": "vxlan",
                                       "provider:segmentation_id": 77}, project_id="p1")
        assert [n.body["name"] for n in db.all("network")] == ["b"]
        assert db.segments == {("vxlan", 77): db.all("network")[0].id}
        await store.close()
        # and a new view of the file finds everything again (a restart)
        store = await SQLiteStore.open(tmp_path / "kumoflow.db")
        db = NeutronDB(store)
        await db.ready()
        assert [n.body["name"] for n in db.all("network")] == ["b"]
        assert len(db.default_groups) == 1
        await store.close()
    run(body())


def test_default_pools_leave_out_the_gateway_and_the_special_addresses():
    n = ipaddress.ip_network
    assert host_range(n("10.0.0.0/30")) == (int(ipaddress.ip_address("10.0.0.1")), int(ipaddress.ip_address(
        "10.0.0.2")))
    assert host_range(n("10.0.0.0/31")) is None and host_range(n("10.0.0.1/32")) is None
    gw = ipaddress.ip_address
    assert default_pools(n("10.0.0.0/24"), gw("10.0.0.1")) == [{"start": "10.0.0.2", "end": "10.0.0.254"}]
    assert default_pools(n("10.0.0.0/24"), gw("10.0.0.254")) == [{"start": "10.0.0.1", "end": "10.0.0.253"}]
    assert default_pools(n("10.0.0.0/24"), None) == [{"start": "10.0.0.1", "end": "10.0.0.254"}]
    assert default_pools(n("10.0.0.0/30"), gw("10.0.0.1")) == [{"start": "10.0.0.2", "end": "10.0.0.2"}]
    assert default_pools(n("fd00::/126"), gw("fd00::1")) == [{"start": "fd00::2", "end": "fd00::3"}]


def test_addresses_run_out_with_409_and_come_back_when_freed():
    async def body():
        async with client(MemNet([L2()]).core) as c:
            network_id = (await c.post("/v2.0/networks", headers=ADMIN, json={"network": {}})).json()["network"]["id"]
            await c.post("/v2.0/subnets", headers=ADMIN, json={"subnet": {"network_id": network_id,
                                                                          "cidr": "10.0.0.0/29"}})
            made = (await c.post("/v2.0/ports", headers=ADMIN, json={"ports": [{"network_id": network_id}] * 5}))
            addresses = [p["fixed_ips"][0]["ip_address"] for p in made.json()["ports"]]
            assert addresses == [f"10.0.0.{i}" for i in range(2, 7)]
            r = await c.post("/v2.0/ports", headers=ADMIN, json={"port": {"network_id": network_id}})
            assert r.status_code == 409 and r.json()["NeutronError"]["type"] == "IpAddressGenerationFailure"
            gone = made.json()["ports"][2]
            await c.delete(f"/v2.0/ports/{gone['id']}", headers=ADMIN)
            r = await c.post("/v2.0/ports", headers=ADMIN, json={"port": {"network_id": network_id}})
            assert r.json()["port"]["fixed_ips"][0]["ip_address"] == "10.0.0.4"
    run(body())


def test_a_port_on_a_slaac_subnet_gets_the_address_the_host_will_take():
    async def body():
        async with client(MemNet([L2()]).core) as c:
            network_id = (await c.post("/v2.0/networks", headers=ADMIN, json={"network": {}})).json()["network"]["id"]
            subnets = {}
            for cidr, extra in (("10.0.0.0/24", {}), ("2001:db8:5::/64", {"ip_version": 6, "ipv6_ra_mode": "slaac",
                                                                             "ipv6_address_mode": "slaac"})):
                made = await c.post("/v2.0/subnets", headers=ADMIN,
                                    json={"subnet": {"network_id": network_id, "cidr": cidr, **extra}})
                subnets[cidr] = made.json()["subnet"]["id"]
            port = (await c.post("/v2.0/ports", headers=ADMIN, json={"port": {
                "network_id": network_id, "mac_address": "fa:16:3e:01:02:03"}})).json()["port"]
            assert sorted(ip["ip_address"] for ip in port["fixed_ips"]) == ["10.0.0.2",
                                                                           "2001:db8:5:0:f816:3eff:fe01:203"]
            # asked by subnet only: the EUI-64 address of the MAC it was given
            other = await c.post("/v2.0/ports", headers=ADMIN, json={"port": {
                "network_id": network_id, "fixed_ips": [{"subnet_id": subnets["2001:db8:5::/64"]}]}})
            assert other.status_code == 201
            mac = other.json()["port"]["mac_address"]
            [ip] = other.json()["port"]["fixed_ips"]
            assert ipaddress.ip_address(ip["ip_address"]) == eui64(ipaddress.ip_network("2001:db8:5::/64"), mac)
    run(body())


def test_segmentation_ids_are_the_lowest_free_per_type():
    async def body():
        async with client(MemNet([L2()]).core) as c:
            async def network(**attrs):
                r = await c.post("/v2.0/networks", headers=ADMIN, json={"network": attrs})
                assert r.status_code == 201, r.text
                return r.json()["network"]
            a, b = await network(), await network()
            assert (a["provider:segmentation_id"], b["provider:segmentation_id"]) == (1, 2)
            g = await network(**{"provider:network_type": "nvgre"})
            v = await network(**{"provider:network_type": "vlan"})
            assert (g["provider:segmentation_id"], v["provider:segmentation_id"]) == (1, 1)
            await c.delete(f"/v2.0/networks/{a['id']}", headers=ADMIN)
            assert (await network())["provider:segmentation_id"] == 1
            # one vlan id per physical network
            p1 = await network(**{"provider:network_type": "vlan", "provider:physical_network": "p1"})
            assert p1["provider:segmentation_id"] == 1
    run(body())


def test_segmentation_ids_stay_the_lowest_free_across_bulks_deletes_and_given_ids():
    async def body():
        async with client(MemNet([L2()]).core) as c:
            async def networks(*bodies):
                r = await c.post("/v2.0/networks", headers=ADMIN, json={"networks": list(bodies)})
                assert r.status_code == 201, r.text
                return r.json()["networks"]
            made = await networks({}, {}, {})
            assert [n["provider:segmentation_id"] for n in made] == [1, 2, 3]
            await c.delete(f"/v2.0/networks/{made[1]['id']}", headers=ADMIN)
            assert [n["provider:segmentation_id"] for n in await networks({}, {}, {})] == [2, 4, 5]
            assert [n["provider:segmentation_id"] for n in await networks({"provider:segmentation_id": 7}, {})] \
                == [7, 6]
            assert [n["provider:segmentation_id"] for n in await networks({}, {})] == [8, 9]
    run(body())


def test_segmentation_ids_come_from_the_configured_ranges_and_run_out_with_503():
    async def body():
        app = build_app(MemNet([L2()]).core, admin_token="admin-secret",
                        segment_ranges={"vxlan": ((5, 5), (10, 11)), "vlan": ((100, 101),)})
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://kumoflow") as c:
            async def network(**attrs):
                return await c.post("/v2.0/networks", headers=ADMIN, json={"network": attrs})

            ids = [(await network()).json()["network"]["provider:segmentation_id"] for _ in range(3)]
            assert ids == [5, 10, 11]
            r = await network()
            assert r.status_code == 503 and r.json()["NeutronError"]["type"] == "NoNetworkAvailable"
            assert "5..5, 10..11" in r.json()["NeutronError"]["message"]
            # the admin may give an id outside the ranges (a provider network), within the legal range
            r = await network(**{"provider:segmentation_id": 7})
            assert r.status_code == 201 and r.json()["network"]["provider:segmentation_id"] == 7
            r = await network(**{"provider:segmentation_id": 16777216})
            assert r.status_code == 400
            # bulk: all or none, and none when the range runs out half-way
            vlan = {"provider:network_type": "vlan"}
            r = await c.post("/v2.0/networks", headers=ADMIN, json={"networks": [vlan] * 3})
            assert r.status_code == 503
            r = await c.post("/v2.0/networks", headers=ADMIN, json={"networks": [vlan] * 2})
            assert [n["provider:segmentation_id"] for n in r.json()["networks"]] == [100, 101]
            # vlan ranges are per physical network; a type not configured has its whole range
            r = await network(**vlan, **{"provider:physical_network": "p2"})
            assert r.json()["network"]["provider:segmentation_id"] == 100
            r = await network(**{"provider:network_type": "nvgre"})
            assert r.json()["network"]["provider:segmentation_id"] == 1
            # a freed id is handed out again
            first = (await c.get("/v2.0/networks", headers=ADMIN, params={"provider:segmentation_id": 10})).json()
            await c.delete(f"/v2.0/networks/{first['networks'][0]['id']}", headers=ADMIN)
            assert (await network()).json()["network"]["provider:segmentation_id"] == 10
    run(body())


def test_every_list_sorts_and_pages_as_neutron_does():
    async def body():
        async with client(MemNet([L2()]).core) as c:
            async def get(url, **params):
                r = await c.get(url, headers=ADMIN, params=params)
                return r.status_code, r.json()

            names = ["c", "a", "e", "b", "d"]
            made = [(await c.post("/v2.0/networks", headers=ADMIN, json={"network": {"name": n}})).json()["network"]
                    for n in names]
            by_id = sorted(n["id"] for n in made)
            # no limit: no links; a limit: sorted by id, page by page through the next links
            status, data = await get("/v2.0/networks")
            assert status == 200 and set(data) == {"networks"}
            status, data = await get("/v2.0/networks", limit=2)
            assert [n["id"] for n in data["networks"]] == by_id[:2]
            assert [link["rel"] for link in data["networks_links"]] == ["next", "previous"]
            before = (await c.get(data["networks_links"][1]["href"], headers=ADMIN)).json()   # before the first
            assert before["networks"] == [] and [link["rel"] for link in before["networks_links"]] == ["next"]
            assert "marker" not in before["networks_links"][0]["href"]                        # back to the start
            first = (await c.get(before["networks_links"][0]["href"], headers=ADMIN)).json()
            assert [n["id"] for n in first["networks"]] == by_id[:2]
            seen, url = [], "/v2.0/networks?limit=2"
            while True:
                data = (await c.get(url, headers=ADMIN)).json()
                seen += [n["id"] for n in data["networks"]]
                links = {link["rel"]: link["href"] for link in data.get("networks_links", [])}
                if "next" not in links:
                    break
                assert links["next"].startswith("http://kumoflow/v2.0/networks?limit=2&marker=")
                url = links["next"]
            assert seen == by_id and len(data["networks"]) == 1 and set(links) == {"previous"}
            # back from the last page: the page before its first, in the list's order
            data = (await c.get(links["previous"], headers=ADMIN)).json()
            assert [n["id"] for n in data["networks"]] == by_id[2:4]
            assert "page_reverse=True" in data["networks_links"][1]["href"]
            status, data = await get("/v2.0/networks", limit=2, page_reverse="true")   # no marker: the last page
            assert [n["id"] for n in data["networks"]] == by_id[3:]
            status, data = await get("/v2.0/networks", limit=3, page_reverse="true", marker=by_id[1])
            assert [n["id"] for n in data["networks"]] == by_id[:1]
            assert [link["rel"] for link in data["networks_links"]] == ["next"]        # short going back
            # sort keys and directions, with filters and fields kept in the links
            status, data = await get("/v2.0/networks", sort_key="name", sort_dir="desc", limit=2, fields="name")
            assert data["networks"] == [{"name": "e"}, {"name": "d"}]
            nxt = data["networks_links"][0]["href"]
            assert "sort_key=name" in nxt and "sort_dir=desc" in nxt and "fields=name" in nxt
            assert (await c.get(nxt, headers=ADMIN)).json()["networks"] == [{"name": "c"}, {"name": "b"}]
            status, data = await get("/v2.0/networks", sort_key=["admin_state_up", "name"], sort_dir=["asc", "asc"])
            assert [n["name"] for n in data["networks"]] == sorted(names) and "networks_links" not in data
            # a marker a filter leaves out still says where the page starts
            d = next(n for n in made if n["name"] == "d")
            r = await c.get("/v2.0/networks", headers=ADMIN, params=[
                ("name", "a"), ("name", "e"), ("sort_key", "name"), ("sort_dir", "asc"), ("limit", "5"),
                ("marker", d["id"])])
            assert [n["name"] for n in r.json()["networks"]] == ["e"]
            # bad values: 400 with Neutron's body
            for params in ({"limit": 0}, {"limit": -1}, {"limit": "two"}, {"limit": 2, "marker": "nope"},
                           {"limit": 2, "page_reverse": "maybe"}, {"sort_key": "name"}, {"sort_dir": "asc"},
                           {"sort_key": "subnets", "sort_dir": "asc"}, {"sort_key": "colour", "sort_dir": "asc"},
                           {"sort_key": "name", "sort_dir": "up"}):
                status, data = await get("/v2.0/networks", **params)
                assert status == 400 and data["NeutronError"]["type"] == "HTTPBadRequest", (params, data)
            # another project's network is no marker for a project
            token = (await c.post("/v2.0/tokens", headers=ADMIN, json={"token": {"project_id": "p"}})).json()
            r = await c.get("/v2.0/networks", headers={"X-Auth-Token": token["token"]["token"]},
                            params={"limit": 1, "marker": made[0]["id"]})
            assert r.status_code == 400
            # every list: the same parameters, the same links
            policy = (await c.post("/v2.0/qos/policies", headers=ADMIN, json={"policy": {"name": "q"}})).json()
            pid = policy["policy"]["id"]
            for direction, kbps in (("egress", 1000), ("ingress", 2000)):
                r = await c.post(f"/v2.0/qos/policies/{pid}/bandwidth_limit_rules", headers=ADMIN,
                                 json={"bandwidth_limit_rule": {"max_kbps": kbps, "direction": direction}})
                assert r.status_code == 201, r.text
            for path, plural in (("/v2.0/subnets", "subnets"), ("/v2.0/ports", "ports"), ("/v2.0/routers", "routers"),
                                 ("/v2.0/security-groups", "security_groups"),
                                 ("/v2.0/security-group-rules", "security_group_rules"),
                                 ("/v2.0/qos/policies", "policies"),
                                 (f"/v2.0/qos/policies/{pid}/bandwidth_limit_rules", "bandwidth_limit_rules")):
                status, data = await get(path, limit=1)
                assert status == 200, (path, data)
                assert set(data) <= {plural, f"{plural}_links"}, data
                status, data = await get(path, limit=1, marker="nope")
                assert status == 400, path
            rules = f"/v2.0/qos/policies/{pid}/bandwidth_limit_rules"
            status, data = await get(rules, sort_key="max_kbps", sort_dir="desc", limit=1)
            assert [r["max_kbps"] for r in data["bandwidth_limit_rules"]] == [2000]
            data = (await c.get(data["bandwidth_limit_rules_links"][0]["href"], headers=ADMIN)).json()
            assert [r["max_kbps"] for r in data["bandwidth_limit_rules"]] == [1000]
            status, data = await get(rules, direction="egress")
            assert [r["max_kbps"] for r in data["bandwidth_limit_rules"]] == [1000]
            # the document says so
            doc = (await c.get("/openapi.json")).json()
            names = {p["name"] for p in doc["paths"]["/v2.0/ports"]["get"]["parameters"]}
            assert {"limit", "marker", "page_reverse", "sort_key", "sort_dir"} <= names
            assert "ports_links" in doc["components"]["schemas"]["PortList"]["properties"]
    run(body())


# --- the emulator binds its hosts' ports -----------------------------------------------------------------

TOPOLOGY = """\
name: bindtest
hosts:
  - {name: h1, mac: "fa:16:3e:00:00:01", ip: 10.0.0.5/24, port: vm1}
  - {name: h2, mac: "00:00:00:00:00:02", ip: 10.0.0.6/24}
switches:
  - {name: s1, kind: kumoflow}
links:
  - {src: h1, dst: s1, dst_port: 2}
  - {src: h2, dst: s1, dst_port: 3}
"""


class SyncClient:
    """What bind_ports needs of an httpx.Client (request), over the app in process."""

    def __init__(self, app) -> None:
        self.app = app

    def request(self, method: str, path: str, **kw):
        async def call():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(self.app), base_url="http://testserver") as c:
                return await c.request(method, path, **kw)
        return asyncio.run(call())

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


def test_the_emulator_binds_a_hosts_api_port_to_its_switch_port(net):
    from kumoflow.net.binding import BindingError, bind_ports, bindings
    from kumoflow.net.plan import make_plan
    from kumoflow.net.topology import parse_topology

    plan = make_plan(parse_topology(TOPOLOGY, "topo.yaml"))
    assert bindings(plan) == [("h1", "vm1", "0x1", 2)]
    c = SyncClient(build_app(net.core, admin_token="admin-secret"))
    network = c.post("/v2.0/networks", headers=ADMIN, json={"network": {}}).json()["network"]["id"]
    c.post("/v2.0/subnets", headers=ADMIN, json={"subnet": {"network_id": network, "cidr": "10.0.0.0/24"}})
    port = c.post("/v2.0/ports", headers=ADMIN, json={"port": {
        "network_id": network, "name": "vm1", "mac_address": "fa:16:3e:00:00:01",
        "fixed_ips": [{"ip_address": "10.0.0.5"}]}}).json()["port"]
    assert port["status"] == "DOWN"
    [line] = bind_ports(plan, "http://testserver", "admin-secret", client=c)
    assert line == "host h1: port vm1 bound to switch 0x1 port 2 (ACTIVE)"
    shown = c.get(f"/v2.0/ports/{port['id']}", headers=ADMIN).json()["port"]
    assert (shown["binding:host_id"], shown["binding:profile"], shown["status"]) == ("0x1", {"port_no": 2},
                                                                                      "ACTIVE")
    # a port the API does not have: an error naming the host
    c.delete(f"/v2.0/ports/{port['id']}", headers=ADMIN)
    with pytest.raises(BindingError, match="host h1: port: no API ports are named 'vm1'"):
        bind_ports(plan, "http://testserver", "admin-secret", client=c)


def test_a_hosts_port_in_the_topology_is_checked_like_the_rest():
    from kumoflow.net.errors import TopologyError
    from kumoflow.net.topology import parse_topology

    with pytest.raises(TopologyError, match=r"topo.yaml:3: hosts\[0\].port: an API port's name or id"):
        parse_topology(TOPOLOGY.replace("port: vm1", "port: ' '"), "topo.yaml")
    with pytest.raises(TopologyError, match=r"topo.yaml:3: hosts\[0\].port: expected a string"):
        parse_topology(TOPOLOGY.replace("port: vm1", "port: [1]"), "topo.yaml")
