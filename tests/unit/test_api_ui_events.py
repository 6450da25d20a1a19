"""The UI's server side: its files at /ui/, the map (/sdn/topology), paths between hosts
(/sdn/path), tickets and the event stream (/sdn/events), and the hook the stream hangs on
in the controller core (core.listeners): events reach subscribers, a slow one loses its
oldest events and never blocks anything, a project sees only its own records.

The stream itself is read from a real uvicorn server (`serve`) on the test's loop, since
httpx's ASGI transport reads a whole response before it returns it.
"""

from __future__ import annotations

import asyncio
import json

import httpx

from kumoflow.api.events import EventHub, Subscriber, hub_of
from kumoflow.api.sdn import tunnel_endpoints
from kumoflow.api.server import Caller, serve
from kumoflow.store import Change, Record

from kumoflow.apps.fabric import Fabric

from memnet import MemNet
from test_api import ADMIN, A, api, error_of, network, run, settle


def test_the_ui_is_served_at_ui_and_the_root_goes_there():
    net = settle(network())

    async def body():
        async with api(net) as c:
            r = await c.get("/")
            assert r.status_code == 307 and r.headers["location"] == "/ui/"
            r = await c.get("/ui/")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
            assert "<title>kumoflow</title>" in r.text and 'type="module"' in r.text
            r = await c.get("/ui/app.js")
            assert r.status_code == 200 and "javascript" in r.headers["content-type"]
            assert "http" not in r.text.split("\n", 1)[0]           # nothing fetched from elsewhere
            assert all(path not in c.app.openapi()["paths"] for path in ("/", "/ui"))
    run(body())


def test_the_map_has_switches_links_hosts_and_the_kind_of_each_switch():
    net = settle(network())

    async def body():
        async with api(net) as c:
            r = await c.get("/sdn/topology")
            assert r.status_code == 401
            topo = (await c.get("/sdn/topology", headers=A)).json()
            assert [s["dpid"] for s in topo["switches"]] == ["0000000000000001", "0000000000000002"]
            assert {s["kind"] for s in topo["switches"]} == {"kumoflow"}
            assert topo["switches"][0]["name"] == "br-s1"
            assert [(l["a"]["port_no"], l["b"]["port_no"]) for l in topo["links"]] == [(1, 1)]
            assert sorted(h["ips"][0] for h in topo["hosts"]) == ["10.0.0.1", "10.0.0.2"]
            assert topo["tunnels"] == []
    run(body())


def test_the_map_has_the_tunnels_between_hypervisors_and_their_endpoints():
    net = MemNet([Fabric()])
    s1, s2 = net.switch(1, 3), net.switch(2, 3)
    p1, p2 = net.tunnel(s1, s2, "vxlan")
    settle(net)

    async def body():
        async with api(net) as c:
            topo = (await c.get("/sdn/topology", headers=A)).json()
            assert [(s["dpid"][-1], s["endpoint"]) for s in topo["switches"]] == [("1", "10.255.0.1"),
                                                                                  ("2", "10.255.0.2")]
            assert [(t["dpid"][-1], t["port_no"], t["kind"], t["remote"], t["remote_dpid"][-1])
                    for t in topo["tunnels"]] == [("1", p1, "vxlan", "10.255.0.2", "2"),
                                                  ("2", p2, "vxlan", "10.255.0.1", "1")]
            tunnel_port = next(p for p in topo["switches"][0]["ports"] if p["port_no"] == p1)
            assert tunnel_port["tunnel"] == {"kind": "vxlan", "remote": "10.255.0.2"}
    run(body())


def test_tunnel_endpoints_are_the_addresses_the_others_reach():
    # a full mesh of three: each one's own address is the one only the others reach
    assert tunnel_endpoints({1: {"10.0.0.2", "10.0.0.3"}, 2: {"10.0.0.1", "10.0.0.3"},
                             3: {"10.0.0.1", "10.0.0.2"}}) == {1: "10.0.0.1", 2: "10.0.0.2", 3: "10.0.0.3"}
    # two switches: each reaches the other, so each is known
    assert tunnel_endpoints({1: {"a"}, 2: {"b"}}) == {1: "b", 2: "a"}
    # a partial mesh leaves out a switch for which more than one address is possible
    assert tunnel_endpoints({1: {"b"}, 2: {"a", "c"}, 3: {"a"}}) == {2: "b"}


def test_the_path_between_two_hosts_by_mac_or_ip():
    net = settle(network())
    h1, h2 = net.hosts["h1"], net.hosts["h2"]

    async def body():
        async with api(net) as c:
            r = await c.get("/sdn/path", params={"src": "10.0.0.1", "dst": h2.mac.upper()}, headers=A)
            assert r.status_code == 200, r.text
            path = r.json()
            assert path["src"]["mac"] == h1.mac and path["dst"]["ips"] == ["10.0.0.2"]
            assert [(int(h["dpid"], 16), h["in_port"], h["out_port"]) for h in path["hops"]] == [(1, 2, 1), (2, 1, 2)]
            assert path["equal_cost"] is False
            r = await c.get("/sdn/path", params={"src": "10.0.0.1", "dst": "10.9.9.9"}, headers=A)
            assert r.status_code == 404 and error_of(r)["type"] == "HostNotFound"
            assert "10.9.9.9" in error_of(r)["message"]
            r = await c.get("/sdn/path", params={"src": "10.0.0.1"}, headers=A)
            assert r.status_code == 400
            # the same switch: one hop
            r = await c.get("/sdn/path", params={"src": "10.0.0.1", "dst": "10.0.0.1"}, headers=A)
            assert [(h["in_port"], h["out_port"]) for h in r.json()["hops"]] == [(2, 2)]
    run(body())


def test_the_core_hook_turns_events_into_messages_for_subscribers():
    net = settle(network())

    async def body():
        async with api(net) as c:
            hub: EventHub = hub_of(c.app.state.kumoflow)
            assert hub.on_event in net.core.listeners
            admin = hub.subscribe(Caller(admin=True))
            project = hub.subscribe(Caller(admin=False, project_id="blue", token_id="t"))
            s1, s2 = net.switches[1], net.switches[2]
            net.set_link(s1, 1, False)            # carrier lost: PORT_STATUS, then the link goes
            net.run()
            names = [name for name, _ in admin.queue]
            assert "port" in names and "link_down" in names, names
            port = dict(admin.queue)["port"]
            assert port == {"dpid": "0000000000000001", "port_no": 1, "name": port["name"], "reason": "modify",
                            "up": False}
            assert dict(admin.queue)["link_down"] == {"a": {"dpid": "0000000000000001", "port_no": 1},
                                                      "b": {"dpid": "0000000000000002", "port_no": 1}}
            assert not project.queue                # the SDN view is the admin's
            # records: a project sees its own and shared ones, not another's
            for pid, shared in (("blue", False), ("red", False), (None, False), ("admin", True)):
                record = Record("network", f"n-{pid}", pid, 1, "", "", body={"name": "x", "shared": shared})
                net.core.state.apply([Change(net.core.state.revision + 1, "network", record.id, record, None)])
            seen = [data["id"] for name, data in project.take() if name == "record"]
            assert seen == ["n-blue", "n-None", "n-admin"]
            assert [data["op"] for name, data in admin.take() if name == "record"] == ["create"] * 4
            hub.unsubscribe(admin)
            hub.unsubscribe(project)
            s2.dp  # noqa: B018 (both ends exist)
    run(body())


def test_a_listener_that_fails_is_logged_and_neither_the_apps_nor_other_listeners_miss_the_event():
    net = settle(network())
    heard = []

    def broken(handler, args):
        raise RuntimeError("broken")

    net.core.listeners += [broken, lambda handler, args: heard.append(handler)]
    net.set_link(net.switches[1], 1, False)
    assert "link_down" in heard and "port_status" in heard
    assert not net.core.topology.graph.links          # the fabric heard it too


def test_a_slow_subscriber_loses_its_oldest_events_and_is_told_how_many():
    sub = Subscriber(Caller(admin=True), None, size=3)
    for i in range(5):
        sub.put("ping", {"i": i})
    got = sub.take()
    assert [data["i"] for _, data in got] == [2, 3, 4]
    assert got[0][1]["lost"] == 2 and "lost" not in got[1][1]
    sub.put("ping", {"i": 5})
    assert sub.take() == [("ping", {"i": 5})]


def test_tickets_open_one_stream_once_and_the_stream_carries_events_and_counters():
    net = settle(network())

    async def body():
        server = await serve(net.core, "127.0.0.1", 0, admin_token=ADMIN)

        async def pumping():
            while True:
                net.run()
                await asyncio.sleep(0.001)

        pump = asyncio.ensure_future(pumping())
        hub = hub_of(server.context)
        hub.interval = 0.1
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
                assert (await c.post("/sdn/events/tickets")).status_code == 401
                r = await c.get("/sdn/events", params={"ticket": "nope"})
                assert r.status_code == 401 and "ticket" in error_of(r)["message"]
                ticket = (await c.post("/sdn/events/tickets", headers=A)).json()["ticket"]
                events = []
                async with c.stream("GET", "/sdn/events", params={"ticket": ticket, "switch": "s1"}) as r:
                    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
                    # the ticket is spent
                    again = await c.get("/sdn/events", params={"ticket": ticket})
                    assert again.status_code == 401
                    name = None
                    async for line in r.aiter_lines():
                        if line.startswith("event: "):
                            name = line[7:]
                        elif line.startswith("data: "):
                            events.append((name, json.loads(line[6:])))
                            if name == "counters" and not any(n == "link_down" for n, _ in events):
                                net.set_link(net.switches[1], 1, False)
                            kinds = {n for n, _ in events}
                            if {"hello", "counters", "flows", "link_down"} <= kinds:
                                break
                hello = events[0]
                assert hello == ("hello", {"interval": 0.1, "heartbeat": 2.0, "admin": True, "apps": ["fabric"]})
                counters = next(data for n, data in events if n == "counters")
                assert set(counters["switches"]) == {"0000000000000001", "0000000000000002"}
                assert len(counters["switches"]["0000000000000001"]["1"]) == 8
                flows = next(data for n, data in events if n == "flows")
                assert flows["dpid"] == "0000000000000001" and flows["flows"]
                table, priority, match, packets, octets = flows["flows"][0]
                assert isinstance(match, str) and packets >= 0
            # the stream ended: the subscriber is gone, and the poller stops with the last one
            for _ in range(100):
                if not hub.subscribers:
                    break
                await asyncio.sleep(0.02)
            assert not hub.subscribers
        finally:
            await server.stop()
            pump.cancel()
        assert hub.closed and hub.on_event not in net.core.listeners
    run(body())


def test_a_project_ticket_may_not_watch_flows():
    net = settle(network())

    async def body():
        async with api(net) as c:
            issued = (await c.post("/v2.0/tokens", headers=A, json={"token": {"project_id": "blue"}})).json()
            token = {"X-Auth-Token": issued["token"]["token"]}
            answer = (await c.post("/sdn/events/tickets", headers=token)).json()
            assert (answer["admin"], answer["project_id"], answer["expires_in"]) == (False, "blue", 30.0)
            r = await c.get("/sdn/events", params={"ticket": answer["ticket"], "switch": "1"})
            assert r.status_code == 403
            admin = (await c.post("/sdn/events/tickets", headers=A)).json()
            assert (admin["admin"], admin["project_id"]) == (True, None)
    run(body())
