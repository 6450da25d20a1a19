"""The firewall through the API: FWaaS rules, a policy and a firewall group made by POST
reach the switches as flows (in memory), VMs' frames are denied and logged, and
/v2.0/fwaas/denied and /metrics show each project what was denied at its own ports."""

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from kumoflow.apps.firewall import FirewallApp
from kumoflow.apps.tenants import TenantsApp
from kumoflow.packet import TCP, Ethernet, IPv4
from kumoflow.packet.consts import TCP_SYN

from test_usage import ADMIN, ok, vm, with_apps


def syn(src, dst, dport):
    return bytes(Ethernet(src=src.mac, dst=dst.mac) / IPv4(src=src.ip, dst=dst.ip)
                 / TCP(sport=40000, dport=dport, flags=TCP_SYN))


def test_denied_connections_are_logged_per_project_and_counted_per_rule():
    async def body():
        async with with_apps([TenantsApp(), FirewallApp()]) as http:
            tokens = {}
            for project in ("pA", "pB"):
                r = await ok(http, "POST", "/v2.0/tokens", {"token": {"project_id": project}})
                tokens[project] = {"X-Auth-Token": r["token"]["token"]}
            a = tokens["pA"]
            net = (await ok(http, "POST", "/v2.0/networks", {"network": {
                "name": "a", "provider:network_type": "vxlan"}}, a))["network"]
            await ok(http, "POST", "/v2.0/subnets", {"subnet": {"network_id": net["id"], "cidr": "10.9.0.0/24"}}, a)
            (p1, h1), (p2, h2) = await vm(http, "pA", net, 1, 1, 1), await vm(http, "pA", net, 2, 1, 2)
            for port in (p1, p2):          # firewall groups alone
                await ok(http, "PUT", f"/v2.0/ports/{port['id']}", {"port": {
                    "security_groups": [], "port_security_enabled": False}}, a)
            ssh = (await ok(http, "POST", "/v2.0/fwaas/firewall_rules", {"firewall_rule": {
                "protocol": "tcp", "destination_port": "22", "action": "deny", "log": True}}, a))["firewall_rule"]
            rest = (await ok(http, "POST", "/v2.0/fwaas/firewall_rules", {"firewall_rule": {
                "action": "allow"}}, a))["firewall_rule"]
            policy = (await ok(http, "POST", "/v2.0/fwaas/firewall_policies", {"firewall_policy": {
                "firewall_rules": [ssh["id"], rest["id"]]}}, a))["firewall_policy"]
            await ok(http, "POST", "/v2.0/fwaas/firewall_groups", {"firewall_group": {
                "ingress_firewall_policy_id": policy["id"], "ports": [p2["id"]]}}, a)

            mem = http.mem
            for dport in (22, 80, 22):
                h2.received.clear()
                h1.send(syn(h1, h2, dport))
                mem.run()
                assert [f for f in h2.received if f[12:14] == b"\x08\x00"] == \
                    ([] if dport == 22 else [syn(h1, h2, dport)])

            seen = (await ok(http, "GET", "/v2.0/fwaas/denied", headers=a))["denied"]
            assert [(d["firewall_rule_id"], d["action"], d["port_id"], d["direction"], d["source_ip_address"],
                     d["destination_port"]) for d in seen] == \
                [(ssh["id"], "deny", p2["id"], "ingress", h1.ip, 22)]       # once: the retry met its drop flow
            assert seen[0]["time"].endswith("Z")
            assert (await ok(http, "GET", "/v2.0/fwaas/denied", headers=tokens["pB"]))["denied"] == []
            assert len((await ok(http, "GET", f"/v2.0/fwaas/denied?firewall_rule_id={ssh['id']}"))["denied"]) == 1
            assert (await ok(http, "GET", "/v2.0/fwaas/denied?port_id=other"))["denied"] == []
            r = await http.get("/v2.0/fwaas/denied?limit=0", headers=ADMIN)
            assert r.status_code == 400

            text = (await http.get("/metrics")).text
            found = {(s.name, frozenset(s.labels.items())): s.value
                     for family in text_string_to_metric_families(text) for s in family.samples}
            assert found[("kumoflow_firewall_logged_total", frozenset({"rule": ssh["id"]}.items()))] == 1
            assert found[("kumoflow_firewall_guarded_ports", frozenset())] == 1
    asyncio.run(body())


def test_without_the_firewall_app_the_log_is_not_found():
    async def body():
        async with with_apps([TenantsApp()]) as http:
            r = await http.get("/v2.0/fwaas/denied", headers=ADMIN)
            assert (r.status_code, r.json()["NeutronError"]["type"]) == (404, "FirewallNotRunning")
    asyncio.run(body())
