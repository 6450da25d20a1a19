"""Usage metering (apps/usage.py, api/usage.py) in memory: VMs on two hypervisors send real
frames through the tenants app's flows; the totals are what the switches' flow counters
counted, polled every few (fake) seconds, and never go backwards when a flow is modified or
installed again. The API and /metrics answer them, each project its own."""

import asyncio
import contextlib
import zlib

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kumoflow import ofp
from kumoflow.api.server import build_app
from kumoflow.apps.tenants import KIND_PORT, TenantsApp
from kumoflow.apps import usage
from kumoflow.apps.usage import UsageApp
from kumoflow.controller import pipeline
from kumoflow.packet import ICMP, Ethernet, IPv4
from kumoflow.store import Record
from kumoflow.store.sqlite import SQLiteStore

from memnet import MemNet
from test_tenants import BROADCAST, Cloud, ping, reached

INTERVAL = 5.0
FORWARD = pipeline.table_id("forward")


class Metered(Cloud):
    """test_tenants' Cloud (hypervisors s1, s2 joined by a tunnel) with the usage app."""

    def __init__(self, kind="vxlan"):
        self.app, self.usage = TenantsApp(), UsageApp(interval=INTERVAL)
        self.mem = MemNet([self.app, self.usage])
        self.s = {n: self.mem.switch(n, ports=4) for n in (1, 2)}
        self.tunnels = {}
        self.tunnels[(1, 2)], self.tunnels[(2, 1)] = self.mem.tunnel(self.s[1], self.s[2], kind)
        self.records, self.vms, self.ports = [], {}, {}

    def poll(self):
        """Let time pass until the next poll: both switches answered with their flow counters."""
        before = self.usage.polls
        for _ in range(int(INTERVAL * 10) + 1):
            self.mem.advance(0.1)
            if self.usage.polls >= before + 2:
                return self
        raise AssertionError("no poll")

    def totals(self, name):
        u = self.usage.ports.get(self.ports[name].id)
        return (u.tx_packets, u.tx_bytes, u.rx_packets, u.rx_bytes, u.dropped_packets, u.dropped_bytes) if u \
            else (0, 0, 0, 0, 0, 0)


def metered():
    cloud = Metered()
    a, b = cloud.network(5001, project="pA"), cloud.network(5002, project="pB")
    cloud.vm("a1", 1, 1, a, "10.0.0.1", "02:00:00:0a:00:01")
    cloud.vm("a2", 2, 1, a, "10.0.0.2", "02:00:00:0a:00:02")
    cloud.vm("b1", 1, 2, b, "10.0.0.1", "02:00:00:0b:00:01")
    cloud.nets = {"A": a, "B": b}
    return cloud.start()


@pytest.mark.parametrize("step", [usage.STEP, 2])
def test_what_vms_send_and_are_delivered_is_counted_from_the_flows_that_carried_it(monkeypatch, step):
    monkeypatch.setattr(usage, "STEP", step)     # 2: a reply counted over many steps of the event loop
    cloud = metered()
    a1, a2 = cloud.vms["a1"], cloud.vms["a2"]
    unicast = [ping(a1, a2) + bytes(n) for n in range(3)]          # three sizes
    for frame in unicast:
        assert reached(cloud.send(a1, frame)) == ["a2"]
    broadcast = bytes(Ethernet(src=a1.mac, dst=BROADCAST) / IPv4(src=a1.ip, dst="10.0.0.255")
                      / ICMP(type=8, code=0, id=1, seq=1))
    assert reached(cloud.send(a1, broadcast)) == ["a2"]             # flooded: a1's tx, nobody's rx
    spoofed = ping(a1, a2, src_ip="10.0.0.77")
    assert reached(cloud.send(a1, spoofed)) == []                   # port security: a1's dropped
    reply = ping(a2, a1)
    assert reached(cloud.send(a2, reply)) == ["a1"]
    cloud.poll()
    sent = sum(map(len, unicast))
    assert cloud.totals("a1") == (4, sent + len(broadcast), 1, len(reply), 1, len(spoofed))
    assert cloud.totals("a2") == (1, len(reply), 3, sent, 0, 0)
    assert cloud.totals("b1") == (0, 0, 0, 0, 0, 0)                 # another tenant on the same hypervisor
    net = cloud.usage.networks[cloud.nets["A"].id]
    assert (net.tx_packets, net.rx_packets, net.dropped_packets) == (5, 4, 1)
    assert net.tx_bytes == sent + len(broadcast) + len(reply) and net.rx_bytes == sent + len(reply)
    # a quiet interval adds nothing; polls go on
    cloud.poll()
    assert cloud.totals("a2") == (1, len(reply), 3, sent, 0, 0)


def test_a_flow_modified_keeps_counting_and_one_installed_again_restarts_without_totals_going_back():
    cloud = metered()
    a1, a2 = cloud.vms["a1"], cloud.vms["a2"]
    size = len(ping(a1, a2))
    for _ in range(3):
        cloud.send(a1, ping(a1, a2))
    cloud.poll()
    assert cloud.totals("a2")[2:4] == (3, 3 * size)
    # a2 moves to port 3 of its hypervisor: its forward flow (eth_dst) is modified in place and keeps
    # its counters (3), which are not counted again
    cloud.mem.attach(a2, cloud.s[2], 3)
    cloud.update("a2", **{"binding:profile": {"port_no": 3}})
    s2 = cloud.s[2]
    mine = pipeline.cookie(pipeline.FUNCTIONS["tenants"], KIND_PORT << 48 | zlib.crc32(cloud.ports["a2"].id.encode()))
    [flow] = [f for f in s2.flows(FORWARD) if f.cookie == mine and f.match.get("eth_dst") == a2.mac]
    assert flow.packet_count == 3 and flow.instructions[0].actions[0].port == 3
    assert reached(cloud.send(a1, ping(a1, a2))) == ["a2"]
    cloud.poll()
    assert cloud.totals("a2")[2:4] == (4, 4 * size)
    # the flow is deleted by hand and the audit installs it again: it counts from 0, and counts
    # more than it held before the next poll sees it (7 > 4): all 7 are added
    s2.dp.handle(ofp.FlowMod(command=ofp.OFPFC.DELETE_STRICT, table_id=FORWARD, priority=flow.priority,
                             match=flow.match, out_port=ofp.OFPP.ANY, out_group=ofp.OFPG.ANY))
    polls = cloud.usage.polls
    cloud.mem.clock.t += 2                 # (the last poll was just now: the next is INTERVAL away)
    cloud.mem.core.audit()
    cloud.mem.advance(0.01, step=0.001)
    [again] = [f for f in s2.flows(FORWARD) if f.cookie == mine and f.match.get("eth_dst") == a2.mac]
    assert again.packet_count == 0
    for _ in range(7):
        assert reached(cloud.send(a1, ping(a1, a2))) == ["a2"]
    assert cloud.usage.polls == polls      # no poll saw the flow missing
    cloud.poll()
    assert cloud.totals("a2")[2:4] == (11, 11 * size)
    assert cloud.usage.networks[cloud.nets["A"].id].rx_packets == 11


def test_ports_whose_ids_share_a_crc_are_told_apart_by_where_their_flows_are():
    pair = ("port-09685295", "port-12060020")      # found by a search: one crc32, so their flows share a cookie
    assert zlib.crc32(pair[0].encode()) == zlib.crc32(pair[1].encode())
    cloud = Metered()
    net = cloud.network(6001)
    for id, (name, port_no, n) in zip(pair, (("x1", 1, 1), ("x2", 3, 2))):
        vm = cloud.mem.host(name, cloud.s[1], port_no, mac=f"02:00:00:0c:00:0{n}")
        vm.ip = f"10.6.0.{n}"
        port = Record("port", id, "p1", n, "2026-12-07T00:00:00Z", "2026-12-07T00:00:00Z", dict(
            network_id=net.id, mac_address=vm.mac, admin_state_up=True, fixed_ips=[{"ip_address": vm.ip}],
            **{"binding:host_id": "0x1", "binding:profile": {"port_no": port_no}}))
        cloud.records.append(port)
        cloud.vms[name], cloud.ports[name] = vm, port
    cloud.start()
    x1, x2 = cloud.vms["x1"], cloud.vms["x2"]
    for _ in range(2):
        assert reached(cloud.send(x1, ping(x1, x2))) == ["x2"]
    assert reached(cloud.send(x2, ping(x2, x1))) == ["x1"]
    assert reached(cloud.send(x2, ping(x2, x1, src_ip="10.6.0.9"))) == []
    cloud.poll()
    size = len(ping(x1, x2))
    assert cloud.totals("x1") == (2, 2 * size, 1, size, 0, 0)
    assert cloud.totals("x2") == (1, size, 2, 2 * size, 1, size)


# --- the API and /metrics ---------------------------------------------------------------------------

ADMIN = {"X-Auth-Token": "admin-secret"}


class WithStore:
    def __init__(self, core, store) -> None:
        self.core, self.store = core, store


def cloud_api():
    """Hypervisors s1, s2 with the tenants and usage apps: see `with_apps`."""
    return with_apps([TenantsApp(), UsageApp(interval=INTERVAL)])


@contextlib.asynccontextmanager
async def with_apps(apps):
    """Hypervisors s1, s2 with `apps`, whose desired state follows the store the API writes
    (as the controller's does), and an httpx client of the API (tests/unit/test_firewall_api.py too)."""
    mem = MemNet(apps)
    s1, s2 = mem.switch(1, ports=4), mem.switch(2, ports=4)
    mem.tunnel(s1, s2)
    store = await SQLiteStore.open(":memory:")
    mem.core.state.load(await store.snapshot())
    store.watch(mem.core.state.apply)
    mem.start()
    mem.advance(mem.core.settle + 1.5)
    app = build_app(WithStore(mem.core, store), admin_token="admin-secret")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://kumoflow") as http:
        http.mem = mem
        yield http
    await store.close()


async def ok(http, method, path, body=None, headers=ADMIN, status=None):
    r = await http.request(method, path, json=body, headers=headers)
    assert r.status_code == (status or {"POST": 201}.get(method, 200)), (path, r.text)
    http.mem.run()
    return r.json()


async def vm(http, project, network, switch, port_no, n):
    """A port of `project` bound to switch port `port_no`, and the VM behind it."""
    subnet = (await ok(http, "GET", f"/v2.0/subnets?network_id={network['id']}"))["subnets"][0]
    port = (await ok(http, "POST", "/v2.0/ports", {"port": {
        "network_id": network["id"], "project_id": project, "mac_address": f"02:00:00:0d:00:0{n}",
        "fixed_ips": [{"subnet_id": subnet["id"], "ip_address": f"10.9.0.{10 + n}"}],
        "binding:host_id": f"{switch:#x}", "binding:profile": {"port_no": port_no}}}))["port"]
    host = http.mem.host(f"vm{n}", http.mem.switches[switch], port_no, mac=port["mac_address"])
    host.ip = f"10.9.0.{10 + n}"
    return port, host


def test_the_api_answers_each_project_its_own_usage_and_metrics_label_it():
    async def body():
        async with cloud_api() as http:
            tokens = {}
            for project in ("pA", "pB"):
                r = await ok(http, "POST", "/v2.0/tokens", {"token": {"project_id": project}})
                tokens[project] = {"X-Auth-Token": r["token"]["token"]}
            net = (await ok(http, "POST", "/v2.0/networks", {"network": {"name": "a"}}, tokens["pA"]))["network"]
            await ok(http, "POST", "/v2.0/subnets", {"subnet": {"network_id": net["id"], "cidr": "10.9.0.0/24"}},
                     tokens["pA"])
            (p1, h1), (p2, h2) = await vm(http, "pA", net, 1, 1, 1), await vm(http, "pA", net, 2, 1, 2)
            mem = http.mem
            frames = [ping(h1, h2) for _ in range(3)]
            for frame in frames:
                h1.send(frame)
                mem.run()
            assert len([f for f in h2.received if f[12:14] == b"\x08\x00"]) == 3
            mem.advance(INTERVAL)
            sent = sum(map(len, frames))

            usage = (await ok(http, "GET", f"/v2.0/ports/{p2['id']}/usage", headers=tokens["pA"]))["usage"]
            assert (usage["port_id"], usage["network_id"], usage["project_id"]) == (p2["id"], net["id"], "pA")
            assert (usage["rx_packets"], usage["rx_bytes"], usage["tx_packets"]) == (3, sent, 0)
            assert usage["since"].endswith("Z") and usage["updated_at"] >= usage["since"]
            usage = (await ok(http, "GET", f"/v2.0/ports/{p1['id']}/usage"))["usage"]      # the admin sees all
            assert (usage["tx_packets"], usage["tx_bytes"], usage["rx_packets"]) == (3, sent, 0)
            usage = (await ok(http, "GET", f"/v2.0/networks/{net['id']}/usage", headers=tokens["pA"]))["usage"]
            assert usage["port_id"] is None and (usage["tx_packets"], usage["rx_packets"]) == (3, 3)
            # another project's port or network is not found, as if it did not exist; nor is a made-up id
            for path in (f"/v2.0/ports/{p2['id']}/usage", f"/v2.0/networks/{net['id']}/usage"):
                r = await http.get(path, headers=tokens["pB"])
                kind = "PortNotFound" if "ports" in path else "NetworkNotFound"
                assert (r.status_code, r.json()["NeutronError"]["type"]) == (404, kind)
            r = await http.get("/v2.0/ports/nothing/usage", headers=ADMIN)
            assert (r.status_code, r.json()["NeutronError"]["type"]) == (404, "PortNotFound")
            assert (await http.get(f"/v2.0/ports/{p2['id']}/usage")).status_code == 401

            text = (await http.get("/metrics")).text
            found = {(s.name, frozenset(s.labels.items())): s.value
                     for family in text_string_to_metric_families(text) for s in family.samples}
            port2 = frozenset({"port": p2["id"], "network": net["id"], "project": "pA"}.items())
            assert found[("kumoflow_tenant_port_rx_packets_total", port2)] == 3
            assert found[("kumoflow_tenant_port_rx_bytes_total", port2)] == sent
            assert found[("kumoflow_tenant_port_tx_packets_total", port2)] == 0
            network = frozenset({"network": net["id"], "project": "pA"}.items())
            assert found[("kumoflow_tenant_network_tx_bytes_total", network)] == sent
            assert found[("kumoflow_tenant_network_dropped_packets_total", network)] == 0

            # a port deleted: its usage goes with it, the network's stays
            r = await http.delete(f"/v2.0/ports/{p2['id']}", headers=ADMIN)
            assert r.status_code == 204
            mem.run()
            assert p2["id"] not in mem.core.app("usage").ports
            usage = (await ok(http, "GET", f"/v2.0/networks/{net['id']}/usage"))["usage"]
            assert usage["rx_packets"] == 3

    asyncio.run(body())


def test_without_the_usage_app_the_api_says_so():
    async def body():
        mem = MemNet([TenantsApp()])
        store = await SQLiteStore.open(":memory:")
        app = build_app(WithStore(mem.core, store), admin_token="admin-secret")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://kumoflow") as http:
            net = (await http.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=ADMIN)).json()
            r = await http.get(f"/v2.0/networks/{net['network']['id']}/usage", headers=ADMIN)
            assert (r.status_code, r.json()["NeutronError"]["type"]) == (404, "UsageNotMetered")
        await store.close()

    asyncio.run(body())
