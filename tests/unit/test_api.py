"""The northbound API (kumoflow.api) over a controller core joined to real
switch datapaths in memory (memnet.py): tokens and errors, the SDN view
against what the switches themselves hold, the OpenAPI document, metrics.

Requests go through httpx's ASGI transport on one event loop, beside a
pump that delivers what the core and the switches send each other, so the
API's ``await dp.request(...)`` gets its replies as in the real runtime.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kumoflow import ofp
from kumoflow.api.server import Tokens, build_app
from kumoflow.apps.fabric import Fabric
from kumoflow.controller import Core, pipeline
from kumoflow.ofp import text
from kumoflow.packet import ARP, Ethernet
from kumoflow.packet.consts import ARP_REQUEST
from kumoflow.store import open_store
from kumoflow.switch.port import MemoryPort

from memnet import MemNet

ADMIN = "admin-secret"
A = {"X-Auth-Token": ADMIN}
FORWARD = pipeline.table_id("forward")


def network(stray_flow: bool = False) -> MemNet:
    """s1 (with a LOCAL port named br-s1) port 1 -- port 1 s2; h1 on s1 port 2,
    h2 on s2 port 2. `stray_flow`: s1 holds a flow in the fabric's table that
    the controller does not want (deleted once the switch has settled)."""
    net = MemNet([Fabric()])
    s1, s2 = net.switch(1, 3), net.switch(2, 3)
    s1.dp.add_port(MemoryPort(ofp.OFPP.LOCAL, "br-s1", "0a:00:00:00:01:fe"))
    net.link(s1, 1, s2, 1)
    h1, h2 = net.host("h1", s1, 2), net.host("h2", s2, 2)
    h1.ip, h2.ip = "10.0.0.1", "10.0.0.2"
    if stray_flow:
        s1.dp.handle(ofp.FlowMod(table_id=FORWARD, priority=7, match=ofp.Match([("eth_dst", "02:00:00:00:00:77")]),
                                 instructions=[ofp.ApplyActions([ofp.Output(3)])]))
    return net


def settle(net: MemNet) -> MemNet:
    net.start()
    net.advance(net.core.settle + 1.5)
    for h in net.hosts.values():
        h.send(bytes(Ethernet(src=h.mac, dst="ff:ff:ff:ff:ff:ff")
                     / ARP(ARP_REQUEST, h.mac, h.ip, "00:00:00:00:00:00", "10.0.0.99")))
        net.run()
    return net


@contextlib.asynccontextmanager
async def api(net: MemNet, pump: bool = True, **options):
    """An httpx client of build_app(net.core) on the running loop."""
    app = build_app(net.core, admin_token=ADMIN, **options)

    async def pumping():
        while True:
            net.run()
            await asyncio.sleep(0.001)

    task = asyncio.ensure_future(pumping()) if pump else None
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://kumoflow") as client:
            client.app = app
            yield client
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def run(coro):
    return asyncio.run(coro)


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"NeutronError"}, body
    assert set(body["NeutronError"]) == {"type", "message", "detail"}, body
    return body["NeutronError"]


@pytest.fixture(scope="module")
def settled():
    return settle(network())


# --- tokens and errors ---------------------------------------------------------------------------

ADMIN_VIEWS = ["/sdn/switches", "/sdn/switches/1", "/sdn/switches/1/flows", "/sdn/switches/1/groups",
               "/sdn/switches/1/meters", "/sdn/switches/1/diff", "/sdn/links", "/sdn/hosts", "/v2.0/tokens"]


def test_no_token_or_a_wrong_one_is_401_in_neutrons_shape(settled):
    async def body():
        async with api(settled) as c:
            for path in ADMIN_VIEWS:
                r = await c.get(path)
                assert r.status_code == 401, path
                assert error_of(r)["type"] == "HTTPUnauthorized"
                r = await c.get(path, headers={"X-Auth-Token": "not-a-token"})
                assert r.status_code == 401, path
                assert "not valid" in error_of(r)["message"]
    run(body())


def test_the_admin_issues_project_tokens_which_the_admin_views_refuse_with_403(settled):
    async def body():
        async with api(settled) as c:
            r = await c.post("/v2.0/tokens", headers=A, json={"token": {"project_id": "blue", "name": "ci"}})
            assert r.status_code == 201
            issued = r.json()["token"]
            assert issued["project_id"] == "blue" and issued["name"] == "ci" and issued["token"]
            p = {"X-Auth-Token": issued["token"]}
            for path in ADMIN_VIEWS:
                r = await c.get(path, headers=p)
                assert r.status_code == 403, path
                assert error_of(r)["type"] == "HTTPForbidden"
            r = await c.post("/v2.0/tokens", headers=p, json={"token": {"project_id": "red"}})
            assert r.status_code == 403                     # a project cannot issue tokens
            listed = (await c.get("/v2.0/tokens", headers=A)).json()["tokens"]
            assert [t["id"] for t in listed] == [issued["id"]]
            assert "token" not in listed[0]                 # the secret is shown once only
            assert (await c.get(f"/v2.0/tokens/{issued['id']}", headers=A)).json()["token"]["project_id"] == "blue"
            assert (await c.delete(f"/v2.0/tokens/{issued['id']}", headers=A)).status_code == 204
            assert (await c.get("/sdn/links", headers=p)).status_code == 401   # revoked: unknown now
            r = await c.delete(f"/v2.0/tokens/{issued['id']}", headers=A)
            assert r.status_code == 404 and error_of(r)["type"] == "TokenNotFound"
    run(body())


def test_issued_tokens_are_kept_in_the_store_as_hashes_and_outlive_a_restart(tmp_path):
    url = f"sqlite:{tmp_path / 'kumoflow.db'}"

    async def client(store):
        tokens = Tokens(ADMIN)
        await tokens.use_store(store)
        app = build_app(Core([Fabric()]), tokens=tokens)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://kumoflow")

    async def body():
        store = await open_store(url)
        async with await client(store) as c:
            r = await c.post("/v2.0/tokens", headers=A, json={"token": {"project_id": "blue", "name": "ci"}})
            issued = r.json()["token"]
        [record] = await store.list("token")
        assert (record.id, record.project_id, record.body["name"]) == (issued["id"], "blue", "ci")
        assert issued["token"] not in repr(record)            # the secret is not kept, only its hash
        await store.close()

        store = await open_store(url)                         # the controller restarts
        async with await client(store) as c:
            p = {"X-Auth-Token": issued["token"]}
            assert (await c.get("/sdn/hosts", headers=p)).status_code == 403     # known: a project token
            listed = (await c.get("/v2.0/tokens", headers=A)).json()["tokens"]
            assert [(t["id"], t["project_id"], t["name"]) for t in listed] == [(issued["id"], "blue", "ci")]
            assert (await c.delete(f"/v2.0/tokens/{issued['id']}", headers=A)).status_code == 204
            assert (await c.get("/sdn/hosts", headers=p)).status_code == 401
        assert await store.list("token") == []
        await store.close()
    run(body())


def test_invalid_requests_are_400_never_422_and_other_errors_keep_the_shape(settled):
    async def body():
        async with api(settled) as c:
            r = await c.get("/sdn/switches/1/flows", params={"table": "x"}, headers=A)
            assert r.status_code == 400
            err = error_of(r)
            assert err["type"] == "HTTPBadRequest" and "query.table" in err["detail"]
            r = await c.get("/sdn/switches/1/flows", params={"table": "255"}, headers=A)
            assert r.status_code == 400
            for bad in ({}, {"token": {}}, {"token": {"project_id": "a b"}}, {"token": {"project_id": ""}}):
                r = await c.post("/v2.0/tokens", headers=A, json=bad)
                assert r.status_code == 400, bad
                assert error_of(r)["type"] == "HTTPBadRequest"
            r = await c.post("/v2.0/tokens", headers={**A, "Content-Type": "application/json"}, content=b"{nope")
            assert r.status_code == 400 and error_of(r)
            r = await c.get("/no/such/thing", headers=A)
            assert r.status_code == 404 and error_of(r)["type"] == "HTTPNotFound"
            r = await c.delete("/sdn/links", headers=A)
            assert r.status_code == 405 and error_of(r)["type"] == "HTTPMethodNotAllowed"
            r = await c.get("/sdn/switches/99", headers=A)
            assert r.status_code == 404 and error_of(r)["type"] == "SwitchNotFound"
    run(body())


def test_the_openapi_document_names_neutrons_errors_and_no_422(settled):
    async def body():
        async with api(settled) as c:
            doc = (await c.get("/openapi.json")).json()
            assert {"NeutronError", "OctaviaError"} <= set(doc["components"]["schemas"])
            assert "HTTPValidationError" not in doc["components"]["schemas"]
            assert doc["components"]["securitySchemes"]["token"] == {
                "type": "apiKey", "in": "header", "name": "X-Auth-Token",
                "description": "the admin token, or a project token issued by the admin"}
            for path, item in doc["paths"].items():
                for method, op in item.items():
                    responses = op["responses"]
                    assert "422" not in responses, (method, path)
                    if op.get("security"):
                        assert {"401", "403"} <= set(responses), (method, path)
                    if op.get("parameters") or op.get("requestBody"):
                        assert "400" in responses, (method, path)
                    error = "OctaviaError" if path.startswith("/v2/lbaas/") else "NeutronError"   # Octavia's shape
                    for code, response in responses.items():
                        if code[0] in "45":
                            schema = response["content"]["application/json"]["schema"]
                            assert schema == {"$ref": f"#/components/schemas/{error}"}, (method, path, code)
            assert {"/sdn/switches", "/sdn/switches/{switch}/flows", "/sdn/switches/{switch}/diff", "/sdn/links",
                    "/sdn/hosts", "/metrics", "/v2.0/tokens"} <= set(doc["paths"])
            page = await c.get("/docs")
            assert page.status_code == 200 and "/openapi.json" in page.text
            assert "cdn" not in page.text.lower()            # served from installed files, works offline
            assert (await c.get("/static/docs/swagger-ui-bundle.js")).status_code == 200
    run(body())


# --- the SDN view ---------------------------------------------------------------------------------


def test_switches_with_ports_counters_links_and_what_they_hold(settled):
    async def body():
        async with api(settled) as c:
            r = await c.get("/sdn/switches", headers=A)
            assert r.status_code == 200
            switches = r.json()["switches"]
        assert [s["dpid"] for s in switches] == ["0000000000000001", "0000000000000002"]
        s1, s2 = switches
        assert s1["name"] == "br-s1" and s2["name"] is None
        assert s1["peer"] == "mem:1" and s1["settled"] and s1["n_tables"] == 64
        assert s1["description"]["manufacturer"] == "kumoflow"
        assert s1["differences"] == 0
        held = settled.switches[1].flows()
        assert s1["installed"] == {"flows": len(held), "groups": len(settled.switches[1].groups()), "meters": 0}
        ports = {p["port_no"]: p for p in s1["ports"]}
        assert set(ports) == {1, 2, 3, ofp.OFPP.LOCAL}
        assert ports[ofp.OFPP.LOCAL]["port"] == "LOCAL"
        link = ports[1]["link"]
        assert link == {"dpid": "0000000000000002", "switch": None, "port_no": 1, "port_name": "s2-eth1"}
        assert ports[2]["link"] is None and ports[2]["up"] and ports[2]["name"] == "s1-eth2"
        own = settled.switches[1].ports
        for n in (1, 2, 3):
            counters, want = ports[n]["counters"], own[n].stats()
            assert (counters["tx_packets"], counters["rx_packets"], counters["tx_bytes"], counters["rx_bytes"]) == \
                (want.tx_packets, want.rx_packets, want.tx_bytes, want.rx_bytes)
            assert counters["tx_packets"] > 0            # LLDP goes out of every port
        assert ports[1]["counters"]["rx_packets"] > 0    # and comes in over the link
    run(body())


def test_a_switch_is_found_by_datapath_id_in_any_spelling_or_by_name(settled):
    async def body():
        async with api(settled) as c:
            for ident in ("1", "0x1", "0x01", "0000000000000001", "dpid:0000000000000001", "br-s1"):
                r = await c.get(f"/sdn/switches/{ident}", headers=A, params={"counters": "false"})
                assert r.status_code == 200, ident
                assert r.json()["switch"]["dpid"] == "0000000000000001"
                assert all(p["counters"] is None for p in r.json()["switch"]["ports"])
            for ident in ("3", "0x3", "br-s9", "zz"):
                r = await c.get(f"/sdn/switches/{ident}", headers=A)
                assert r.status_code == 404 and error_of(r)["type"] == "SwitchNotFound", ident
    run(body())


def test_links_and_hosts(settled):
    async def body():
        async with api(settled) as c:
            links = (await c.get("/sdn/links", headers=A)).json()["links"]
            hosts = (await c.get("/sdn/hosts", headers=A)).json()["hosts"]
        assert links == [{"a": {"dpid": "0000000000000001", "switch": "br-s1", "port_no": 1, "port_name": "s1-eth1"},
                          "b": {"dpid": "0000000000000002", "switch": None, "port_no": 1, "port_name": "s2-eth1"}}]
        found = {h["mac"]: h for h in hosts}
        h1, h2 = settled.hosts["h1"], settled.hosts["h2"]
        assert set(found) == {h1.mac, h2.mac}
        assert found[h1.mac]["ips"] == ["10.0.0.1"] and found[h1.mac]["switch"] == "br-s1"
        assert (found[h1.mac]["dpid"], found[h1.mac]["port_no"], found[h1.mac]["port_name"]) == \
            ("0000000000000001", 2, "s1-eth2")
        assert (found[h2.mac]["dpid"], found[h2.mac]["port_no"]) == ("0000000000000002", 2)
        assert found[h2.mac]["age"] >= 0
    run(body())


def test_flows_groups_and_meters_are_what_the_switch_reports_also_in_ovs_ofctl_syntax(settled):
    async def body():
        async with api(settled) as c:
            flows = (await c.get("/sdn/switches/1/flows", headers=A)).json()
            table0 = (await c.get("/sdn/switches/1/flows", headers=A, params={"table": 0})).json()
            groups = (await c.get("/sdn/switches/br-s1/groups", headers=A)).json()
            meters = (await c.get("/sdn/switches/1/meters", headers=A)).json()
        switch = settled.switches[1]
        held = sorted(switch.flows(), key=lambda f: (f.table_id, -f.priority))
        assert flows["dpid"] == "0000000000000001"
        assert [f["text"] for f in flows["flows"]] == [text.format_flow_stats(f).strip() for f in held]
        for got, want in zip(flows["flows"], held):
            assert (got["table"], got["priority"], got["n_packets"], got["n_bytes"]) == \
                (want.table_id, want.priority, want.packet_count, want.byte_count)
            assert got["cookie"] == f"{want.cookie:#x}"
            assert got["match"] == text.format_match(want.match)
            assert got["actions"] == text.format_instructions(want.instructions)
            assert got["owner"] == {1: "pipeline", 2: "fabric"}[want.cookie >> 56]
        assert table0["flows"] and all(f["table"] == 0 for f in table0["flows"])
        assert len(table0["flows"]) == sum(f.table_id == 0 for f in held)
        held_groups = switch.groups()
        assert [g["group_id"] for g in groups["groups"]] == sorted(held_groups)
        for g in groups["groups"]:
            desc = held_groups[g["group_id"]]
            assert g["text"] == text.format_group(desc.group_id, desc.type, desc.buckets)
            assert g["owner"] == "fabric"
            assert [b["actions"] for b in g["buckets"]] == [text.format_actions(b.actions) for b in desc.buckets]
        assert meters == {"dpid": "0000000000000001", "meters": []}
    run(body())


def test_the_diff_shows_what_settling_keeps_and_is_empty_once_reconciled():
    net = network(stray_flow=True)
    net.start()                                  # connected, not settled: adds only

    async def diff():
        async with api(net) as c:
            r = await c.get("/sdn/switches/1/diff", headers=A)
            assert r.status_code == 200
            return r.json()

    before = run(diff())
    assert before["ready"] and not before["settled"] and not before["in_sync"]
    assert before["add"] == [] and before["change"] == []
    assert before["delete"] == [{"kind": "flow", "owner": None,
                                 "text": "cookie=0x0, table=40, priority=7,dl_dst=02:00:00:00:00:77 actions=output:3"}]
    net.advance(net.core.settle + 1)
    after = run(diff())
    assert after["settled"] and after["in_sync"] and after == {**after, "add": [], "change": [], "delete": []}
    assert not [f for f in net.switches[1].flows() if f.priority == 7]


def test_a_switch_that_does_not_answer_is_504_and_the_list_goes_on_without_its_counters():
    net = settle(network())
    silent = net.switches[2]
    silent.conn = None                           # the switch reads nothing more (its channel stays up)

    async def body():
        async with api(net, switch_timeout=5.0) as c:
            async def time_passes():
                for _ in range(200):
                    await asyncio.sleep(0.005)
                    net.clock.t += 0.5
                    net.core.tick()

            clock = asyncio.ensure_future(time_passes())
            r = await c.get("/sdn/switches/2/flows", headers=A)
            assert r.status_code == 504 and error_of(r)["type"] == "SwitchTimeout"
            switches = (await c.get("/sdn/switches", headers=A)).json()["switches"]
            clock.cancel()
        counters = {s["dpid"][-1]: [p["counters"] for p in s["ports"]] for s in switches}
        assert all(c is not None for c in counters["1"])
        assert all(c is None for c in counters["2"])
    run(body())


# --- metrics ----------------------------------------------------------------------------------------


def samples(exposition: str) -> dict:
    """(sample name, frozenset of labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: dict, metric: str, **labels) -> float:
    return found[(metric, frozenset(labels.items()))]


def test_metrics_parse_and_count_switches_messages_reconciliations_ports_and_requests(settled):
    async def body():
        async with api(settled) as c:
            await c.get("/sdn/links")                                  # a 401
            await c.get("/sdn/links", headers=A)
            r = await c.get("/metrics")                                # no token needed on loopback
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
            return r.text

    found = samples(run(body()))
    d1, d2 = "0000000000000001", "0000000000000002"
    assert value(found, "kumoflow_switches_connected") == 2
    assert value(found, "kumoflow_links") == 1 and value(found, "kumoflow_hosts") == 2
    assert value(found, "kumoflow_switch_info", dpid=d1, name="br-s1", peer="mem:1") == 1
    for dpid, switch in ((d1, settled.switches[1]), (d2, settled.switches[2])):
        session = switch.session
        assert value(found, "kumoflow_packet_ins_total", dpid=dpid) == session.packet_ins > 0
        flow_mods = sum(isinstance(m, ofp.FlowMod) for m in switch.received)
        assert value(found, "kumoflow_flow_mods_total", dpid=dpid) == flow_mods > 0
        assert value(found, "kumoflow_group_mods_total", dpid=dpid) == sum(isinstance(m, ofp.GroupMod)
                                                                            for m in switch.received)
        reconciler = settled.core.reconcilers[switch.dpid]
        assert value(found, "kumoflow_reconcile_runs_total", dpid=dpid) == reconciler.runs > 0
        assert value(found, "kumoflow_reconcile_differences_total", dpid=dpid, kind="added") == reconciler.totals[0] > 0
        assert value(found, "kumoflow_reconcile_pending", dpid=dpid) == 0
        for n in (1, 2, 3):
            labels = {"dpid": dpid, "port": str(n), "name": f"s{switch.dpid}-eth{n}"}
            assert value(found, "kumoflow_port_tx_packets_total", **labels) > 0
            assert value(found, "kumoflow_port_up", **labels) == 1
            for field in ("rx_bytes", "tx_bytes", "rx_packets", "rx_dropped", "tx_errors"):
                assert (f"kumoflow_port_{field}_total", frozenset(labels.items())) in found
    assert value(found, "kumoflow_api_requests_total", method="GET", route="/sdn/links", status="401") == 1
    assert value(found, "kumoflow_api_requests_total", method="GET", route="/sdn/links", status="200") == 1


def test_each_controller_has_its_own_registry_and_a_public_api_guards_metrics(settled):
    other = settle(network())

    async def body():
        async with api(settled) as first, api(other, public=True) as second:
            await first.get("/sdn/hosts", headers=A)
            assert (await second.get("/metrics")).status_code == 401
            assert (await second.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
            r = await second.get("/metrics", headers={"Authorization": f"Bearer {ADMIN}"})
            assert r.status_code == 200
            assert (await second.get("/metrics", headers=A)).status_code == 200
            return (await first.get("/metrics")).text, r.text

    one, two = map(samples, run(body()))
    hosts = ("kumoflow_api_requests_total",
             frozenset({"method": "GET", "route": "/sdn/hosts", "status": "200"}.items()))
    assert one[hosts] == 1 and hosts not in two
    assert value(two, "kumoflow_api_requests_total", method="GET", route="/metrics", status="401") == 2


def test_a_table_the_switch_does_not_have_is_404_and_405_names_every_method_of_the_path(settled):
    async def body():
        async with api(settled) as c:
            r = await c.get("/sdn/switches/1/flows", params={"table": 64}, headers=A)
            assert r.status_code == 404 and error_of(r)["type"] == "TableNotFound"
            r = await c.request("OPTIONS", "/v2.0/tokens", headers=A)
            assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
            r = await c.put("/v2.0/tokens/x", headers=A)
            assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "DELETE"}
    run(body())
