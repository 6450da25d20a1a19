"""Firewall-as-a-service (/v2.0/fwaas/...) in process: Neutron FWaaS v2's rules, policies and
groups, kumoflow's extensions of a rule, the stored forms the firewall app compiles, ordering by
insert_rule/remove_rule, projects kept apart and shared resources, what is in use guarded; every
refusal with its type and message, and nothing written (the store's revision does not move)."""

from __future__ import annotations

import asyncio

import pytest

from kumoflow.store.sqlite import SQLiteStore

from test_api_l3 import Api

RULES = "/v2.0/fwaas/firewall_rules"
POLICIES = "/v2.0/fwaas/firewall_policies"
GROUPS = "/v2.0/fwaas/firewall_groups"

#: what a firewall rule's record holds (the firewall app compiles these), besides _revision
RULE_FIELDS = {"name", "description", "protocol", "ip_version", "source_ip_address", "destination_ip_address",
               "source_port", "destination_port", "action", "enabled", "shared", "source_address_group_id",
               "destination_address_group_id", "source_user_group", "destination_user_group", "log", "http_host",
               "http_path", "tags"}


def run(coro):
    return asyncio.run(coro)


async def _api() -> Api:
    return Api(await SQLiteStore.open(":memory:"))


async def rule(api: Api, headers=None, **attrs) -> dict:
    return (await api.ok("POST", RULES, {"firewall_rule": attrs}, **_h(headers)))["firewall_rule"]


async def policy(api: Api, headers=None, **attrs) -> dict:
    return (await api.ok("POST", POLICIES, {"firewall_policy": attrs}, **_h(headers)))["firewall_policy"]


async def group(api: Api, headers=None, **attrs) -> dict:
    return (await api.ok("POST", GROUPS, {"firewall_group": attrs}, **_h(headers)))["firewall_group"]


def _h(headers) -> dict:
    return {"headers": headers} if headers is not None else {}


async def ports(api: Api, headers: dict, n: int, **attrs) -> list[str]:
    net = (await api.ok("POST", "/v2.0/networks", {"network": {"name": "n"}}, headers))["network"]
    return [(await api.ok("POST", "/v2.0/ports", {"port": {"network_id": net["id"], **attrs}}, headers))["port"]["id"]
            for _ in range(n)]


async def stored(api: Api, kind: str, id: str) -> dict:
    return next(r.body for r in (await api.store.snapshot()).records if r.kind == kind and r.id == id)


def test_rule_defaults_stored_forms_and_crud():
    async def go():
        api = await _api()
        plain = await rule(api)
        assert {k: plain[k] for k in RULE_FIELDS | {"firewall_policy_id", "project_id", "revision_number"}} == {
            "name": "", "description": "", "protocol": None, "ip_version": 4, "source_ip_address": None,
            "destination_ip_address": None, "source_port": None, "destination_port": None, "action": "deny",
            "enabled": True, "shared": False, "source_address_group_id": None, "destination_address_group_id": None,
            "source_user_group": None, "destination_user_group": None, "log": False, "http_host": None,
            "http_path": None, "tags": [], "firewall_policy_id": None, "project_id": "admin", "revision_number": 0}
        web = await rule(api, name="web", protocol="TCP", source_ip_address="10.0.0.5", destination_port="80:80",
                         source_port=1024, action="ALLOW", destination_user_group="staff", log=True,
                         http_host="*.example.test", http_path="/admin")
        assert (web["protocol"], web["source_ip_address"], web["destination_port"], web["source_port"],
                web["action"]) == ("tcp", "10.0.0.5/32", "80", "1024", "allow")
        assert set(await stored(api, "firewall_rule", web["id"])) == RULE_FIELDS
        v6 = await rule(api, protocol=58, ip_version=6, destination_ip_address="2001:DB8::/32", action="reject")
        assert (v6["protocol"], v6["destination_ip_address"]) == ("icmpv6", "2001:db8::/32")
        assert (await rule(api, protocol="47"))["protocol"] == "47"
        assert (await rule(api, protocol=17, destination_port="1000:2000"))["protocol"] == "udp"
        assert (await rule(api, protocol="any"))["protocol"] is None
        assert (await rule(api, protocol="icmp", ip_version=6))["protocol"] == "icmp"     # ICMPv6, as in Neutron

        assert (await api.ok("GET", f"{RULES}/{web['id']}"))["firewall_rule"] == web
        assert (await api.ok("GET", f"{RULES}/{web['id']}", fields="id,action"))["firewall_rule"] == {
            "id": web["id"], "action": "allow"}
        listed = (await api.ok("GET", RULES, protocol="tcp"))["firewall_rules"]
        assert [r["id"] for r in listed] == [web["id"]]
        assert [r["id"] for r in (await api.ok("GET", RULES, ip_version="6", action="reject"))["firewall_rules"]] == [
            v6["id"]]
        assert len((await api.ok("GET", RULES, sort_key="name", sort_dir="asc"))["firewall_rules"]) == 7

        changed = (await api.ok("PUT", f"{RULES}/{web['id']}", {"firewall_rule": {
            "name": "web2", "destination_port": "8080", "source_port": None, "enabled": False}}))["firewall_rule"]
        assert (changed["name"], changed["destination_port"], changed["source_port"], changed["enabled"],
                changed["revision_number"]) == ("web2", "8080", None, False, 1)
        assert changed["http_host"] == "*.example.test" and changed["source_ip_address"] == "10.0.0.5/32"
        await api.ok("DELETE", f"{RULES}/{web['id']}")
        assert await api.refused("GET", f"{RULES}/{web['id']}") == (
            404, "FirewallRuleNotFound", f"Firewall rule {web['id']} could not be found.")
        bulk = (await api.ok("POST", RULES, {"firewall_rules": [{"name": "a"}, {"name": "b", "protocol": "udp"}]}))
        assert [r["name"] for r in bulk["firewall_rules"]] == ["a", "b"]
    run(go())


def test_bad_rules_are_refused_with_their_type():
    async def go():
        api = await _api()
        cases = [
            ({"source_ip_address": "10.0.0.300"}, 400, "InvalidInput", "source_ip_address: '10.0.0.300' is not"),
            ({"destination_ip_address": "10.0.0.1/24"}, 400, "InvalidInput", "has host bits set"),
            ({"source_ip_address": "2001:db8::1"}, 400, "FirewallIpAddressConflict",
             "source_ip_address 2001:db8::1 is IPv6, the rule's ip_version is 4"),
            ({"ip_version": 6, "destination_ip_address": "10.0.0.0/8"}, 400, "FirewallIpAddressConflict",
             "IP addresses do not agree with IP version"),
            ({"protocol": "icmp", "destination_port": "22"}, 400, "FirewallRuleInvalidICMPParameter",
             "not allowed when protocol is icmp"),
            ({"protocol": "47", "source_port": "22"}, 400, "FirewallRuleInvalidICMPParameter", "only tcp and udp"),
            ({"destination_port": "22"}, 400, "FirewallRuleWithPortWithoutProtocolInvalid", "requires a protocol"),
            ({"protocol": "tcp", "destination_port": "9:3"}, 400, "FirewallRuleInvalidPortValue",
             "Invalid value for port 9:3 (destination_port)"),
            ({"protocol": "tcp", "destination_port": "0"}, 400, "FirewallRuleInvalidPortValue", "port 0"),
            ({"protocol": "udp", "source_port": "70000"}, 400, "FirewallRuleInvalidPortValue", "port 70000"),
            ({"protocol": "udp", "source_port": "http"}, 400, "FirewallRuleInvalidPortValue", "port http"),
            ({"protocol": "bogus"}, 400, "InvalidInput", "protocol 'bogus': expected tcp, udp"),
            ({"protocol": 256}, 400, "InvalidInput", "protocol 256"),
            ({"protocol": "icmpv6"}, 400, "InvalidInput", "protocol icmpv6 does not go with ip_version 4"),
            ({"action": "drop"}, 400, "InvalidInput", "action 'drop' is not one of allow, deny, reject"),
            ({"protocol": "tcp", "http_host": "*.*.example.test"}, 400, "InvalidInput",
             "host pattern '*.*.example.test': only a leading '*.' is a wildcard"),
            ({"protocol": "tcp", "http_host": "exa mple.test"}, 400, "InvalidInput", "host pattern 'exa mple.test'"),
            ({"protocol": "tcp", "http_path": "admin"}, 400, "InvalidInput", "path prefix 'admin'"),
            ({"protocol": "udp", "http_host": "example.test"}, 400, "InvalidInput", "they need protocol tcp"),
            ({"http_path": "/admin"}, 400, "InvalidInput", "they need protocol tcp"),
            ({"source_ip_address": "10.0.0.0/8", "source_address_group_id": "x"}, 400, "InvalidInput",
             "give one of source_ip_address, source_address_group_id and source_user_group, not source_ip_address "
             "and source_address_group_id"),
            ({"destination_address_group_id": "x", "destination_user_group": "staff"}, 400, "InvalidInput",
             "not destination_address_group_id and destination_user_group"),
            ({"destination_address_group_id": "nope"}, 404, "AddressGroupNotFound",
             "Address group nope could not be found."),
            ({"source_user_group": "no spaces"}, 400, "HTTPBadRequest", "source_user_group"),
            ({"firewall_policy_id": "p"}, 400, "HTTPBadRequest", "firewall_policy_id"),
        ]
        for attrs, status, type, text in cases:
            got = await api.refused("POST", RULES, {"firewall_rule": attrs})
            assert got[:2] == (status, type) and text in got[2], (attrs, got)
        # a bulk create with one bad rule makes none
        assert (await api.refused("POST", RULES, {"firewall_rules": [{"name": "ok"}, {"protocol": "x"}]}))[0] == 400
        assert (await api.ok("GET", RULES))["firewall_rules"] == []

        made = await rule(api, protocol="tcp", destination_port="443")
        for change, type in (({"protocol": "icmp"}, "FirewallRuleInvalidICMPParameter"),
                             ({"protocol": None}, "FirewallRuleWithPortWithoutProtocolInvalid"),
                             ({"ip_version": 6, "source_ip_address": "10.0.0.1"}, "FirewallIpAddressConflict"),
                             ({"action": None}, "InvalidInput"), ({"shared": None}, "InvalidInput")):
            got = await api.refused("PUT", f"{RULES}/{made['id']}", {"firewall_rule": change})
            assert got[:2] == (400, type), (change, got)
        assert (await api.ok("GET", f"{RULES}/{made['id']}"))["firewall_rule"] == made
    run(go())


def test_policy_order_with_insert_and_remove_rule():
    async def go():
        api = await _api()
        r1, r2, r3, r4, r5 = [(await rule(api, name=f"r{i}"))["id"] for i in range(1, 6)]
        pol = await policy(api, name="p", firewall_rules=[r1, r2], audited=True)
        assert (pol["firewall_rules"], pol["audited"], pol["shared"]) == ([r1, r2], True, False)
        path = f"{POLICIES}/{pol['id']}"

        first = await api.ok("PUT", f"{path}/insert_rule", {"firewall_rule_id": r3})
        assert first["firewall_rules"] == [r3, r1, r2] and first["audited"] is False   # the policy itself, unwrapped
        assert (await api.ok("PUT", f"{path}/insert_rule", {"firewall_rule_id": r4, "insert_after": r1}))[
            "firewall_rules"] == [r3, r1, r4, r2]
        inserted = await api.ok("PUT", f"{path}/insert_rule", {"firewall_rule_id": r5, "insert_before": r2,
                                                               "insert_after": r3})     # insert_before wins
        assert inserted["firewall_rules"] == [r3, r1, r4, r5, r2]
        assert (await api.ok("PUT", f"{path}/remove_rule", {"firewall_rule_id": r1}))["firewall_rules"] == [
            r3, r4, r5, r2]
        assert (await api.ok("GET", f"{RULES}/{r2}"))["firewall_rule"]["firewall_policy_id"] == [pol["id"]]
        assert (await api.ok("GET", f"{RULES}/{r1}"))["firewall_rule"]["firewall_policy_id"] is None

        before = (await api.ok("GET", path))["firewall_policy"]
        assert await api.refused("PUT", f"{path}/insert_rule", {"firewall_rule_id": r2}) == (
            409, "FirewallRuleAlreadyAssociated", f"Firewall rule {r2} is already in firewall policy {pol['id']}.")
        assert await api.refused("PUT", f"{path}/insert_rule", {"firewall_rule_id": "nope"}) == (
            404, "FirewallRuleNotFound", "Firewall rule nope could not be found.")
        assert await api.refused("PUT", f"{path}/insert_rule", {"firewall_rule_id": r1, "insert_before": "nope"}) == (
            400, "FirewallRuleNotAssociatedWithPolicy",
            f"Firewall rule nope is not associated with firewall policy {pol['id']}.")
        assert (await api.refused("PUT", f"{path}/remove_rule", {"firewall_rule_id": r1}))[:2] == (
            400, "FirewallRuleNotAssociatedWithPolicy")
        assert (await api.refused("PUT", f"{path}/insert_rule", {}))[:2] == (400, "FirewallRuleInfoMissing")
        assert (await api.refused("PUT", f"{POLICIES}/nope/remove_rule", {"firewall_rule_id": r1}))[:2] == (
            404, "FirewallPolicyNotFound")
        assert (await api.ok("GET", path))["firewall_policy"] == before

        replaced = (await api.ok("PUT", path, {"firewall_policy": {"firewall_rules": [r2, r1], "audited": True}}))
        assert replaced["firewall_policy"]["firewall_rules"] == [r2, r1] and replaced["firewall_policy"]["audited"]
        # changing one of its rules clears the policy's audited, as Neutron does
        await api.ok("PUT", f"{RULES}/{r1}", {"firewall_rule": {"action": "allow"}})
        assert (await api.ok("GET", path))["firewall_policy"]["audited"] is False
    run(go())


def test_policy_rules_must_exist_once_and_stay_while_used():
    async def go():
        api = await _api()
        r1, r2 = (await rule(api))["id"], (await rule(api))["id"]
        assert await api.refused("POST", POLICIES, {"firewall_policy": {"firewall_rules": [r1, "nope"]}}) == (
            404, "FirewallRuleNotFound", "Firewall rule nope could not be found.")
        assert await api.refused("POST", POLICIES, {"firewall_policy": {"firewall_rules": [r1, r2, r1]}}) == (
            400, "InvalidInput", f"Invalid input for operation: firewall_rules: firewall rule {r1} is listed twice")
        # as in Neutron, a rule may be in several policies (once in each)
        p1 = await policy(api, firewall_rules=[r1, r2])
        p2 = await policy(api, firewall_rules=[r1])
        assert (await api.ok("GET", f"{RULES}/{r1}"))["firewall_rule"]["firewall_policy_id"] == [p1["id"], p2["id"]]
        assert [p["id"] for p in (await api.ok("GET", POLICIES, firewall_rules=r2))["firewall_policies"]] == [p1["id"]]
        assert [r["id"] for r in (await api.ok("GET", RULES, firewall_policy_id=p2["id"]))["firewall_rules"]] == [r1]
        assert await api.refused("DELETE", f"{RULES}/{r1}") == (
            409, "FirewallRuleInUse", f"Firewall rule {r1} is being used (by firewall policy {p1['id']}).")
        await api.ok("PUT", f"{POLICIES}/{p1['id']}", {"firewall_policy": {"firewall_rules": [r2]}})
        await api.ok("DELETE", f"{POLICIES}/{p2['id']}")
        await api.ok("DELETE", f"{RULES}/{r1}")
        assert await api.refused("PUT", f"{POLICIES}/{p1['id']}", {"firewall_policy": {"firewall_rules": None}}) == (
            400, "InvalidInput", "Invalid input for operation: firewall_rules must not be null")
    run(go())


def test_groups_ports_policies_and_status():
    async def go():
        api = await _api()
        blue = await api.token("blue")
        p1, p2, p3 = await ports(api, blue, 3)
        pol = await policy(api, blue)
        g1 = await group(api, blue, name="web", ingress_firewall_policy_id=pol["id"], ports=[p1, p2, p1])
        assert {k: g1[k] for k in ("ingress_firewall_policy_id", "egress_firewall_policy_id", "ports",
                                   "admin_state_up", "shared", "status", "project_id")} == {
            "ingress_firewall_policy_id": pol["id"], "egress_firewall_policy_id": None, "ports": [p1, p2],
            "admin_state_up": True, "shared": False, "status": "ACTIVE", "project_id": "blue"}
        assert set(await stored(api, "firewall_group", g1["id"])) == {
            "name", "description", "ingress_firewall_policy_id", "egress_firewall_policy_id", "ports",
            "admin_state_up", "shared", "tags"}
        g2 = await group(api, blue, egress_firewall_policy_id=pol["id"])
        assert g2["status"] == "INACTIVE"
        assert (await group(api, blue, admin_state_up=False, ports=[p3]))["status"] == "DOWN"
        assert [g["id"] for g in (await api.ok("GET", GROUPS, headers=blue, ports=p2))["firewall_groups"]] == [g1["id"]]
        assert [g["id"] for g in (await api.ok("GET", GROUPS, headers=blue, status="INACTIVE"))["firewall_groups"]] == [
            g2["id"]]

        assert await api.refused("POST", GROUPS, {"firewall_group": {"ports": [p2]}}, blue) == (
            409, "FirewallGroupPortInUse", f"Port(s) ['{p2}'] already in another firewall group.")
        assert (await api.refused("PUT", f"{GROUPS}/{g2['id']}", {"firewall_group": {"ports": [p1]}}, blue))[:2] == (
            409, "FirewallGroupPortInUse")
        free = (await ports(api, blue, 1))[0]
        assert (await api.refused("POST", GROUPS, {"firewall_groups": [{"ports": [free]}, {"ports": [free]}]},
                                  blue))[:2] == (409, "FirewallGroupPortInUse")
        assert await api.refused("POST", GROUPS, {"firewall_group": {"ports": ["nope"]}}, blue) == (
            404, "PortNotFound", "Port nope could not be found.")
        assert await api.refused("POST", GROUPS, {"firewall_group": {"egress_firewall_policy_id": "nope"}}, blue) == (
            404, "FirewallPolicyNotFound", "Firewall policy nope could not be found.")
        # the admin's own group cannot take blue's port (a group's ports are its project's)
        assert (await api.refused("POST", GROUPS, {"firewall_group": {"ports": [free]}}))[:2] == (
            409, "FirewallGroupPortInvalidProject")
        dhcp = (await ports(api, blue, 1, device_owner="network:dhcp"))[0]
        assert (await api.refused("POST", GROUPS, {"firewall_group": {"ports": [dhcp]}}, blue))[:2] == (
            409, "FirewallGroupPortInvalid")

        assert await api.refused("DELETE", f"{POLICIES}/{pol['id']}", headers=blue) == (
            409, "FirewallPolicyInUse", f"Firewall policy {pol['id']} is being used (by firewall group {g1['id']}).")
        assert (await api.refused("DELETE", f"{GROUPS}/{g1['id']}", headers=blue))[:2] == (409, "FirewallGroupInUse")
        # deleting a port takes it out of its group, in the same commit (as Neutron drops the association)
        await api.ok("DELETE", f"/v2.0/ports/{p1}", headers=blue)
        after = (await api.ok("GET", f"{GROUPS}/{g1['id']}", headers=blue))["firewall_group"]
        assert after["ports"] == [p2] and after["revision_number"] == 1
        moved = (await api.ok("PUT", f"{GROUPS}/{g1['id']}", {"firewall_group": {
            "ports": [], "ingress_firewall_policy_id": None, "admin_state_up": False}}, blue))["firewall_group"]
        assert (moved["ports"], moved["ingress_firewall_policy_id"], moved["status"]) == ([], None, "DOWN")
        await api.ok("PUT", f"{GROUPS}/{g2['id']}", {"firewall_group": {"ports": [p2]}}, blue)   # p2 is free now
        await api.ok("DELETE", f"{GROUPS}/{g1['id']}", headers=blue)
        assert (await api.refused("GET", f"{GROUPS}/{g1['id']}", headers=blue))[:2] == (404, "FirewallGroupNotFound")
    run(go())


def test_projects_see_their_own_and_shared_ones():
    async def go():
        api = await _api()
        blue, red = await api.token("blue"), await api.token("red")
        mine = await rule(api, blue, name="blue's")
        shared = await rule(api, name="everyone's", shared=True)
        assert [r["id"] for r in (await api.ok("GET", RULES, headers=red))["firewall_rules"]] == [shared["id"]]
        assert (await api.refused("GET", f"{RULES}/{mine['id']}", headers=red))[:2] == (404, "FirewallRuleNotFound")
        assert (await api.refused("PUT", f"{RULES}/{shared['id']}", {"firewall_rule": {"name": "x"}}, red))[:2] == (
            403, "PolicyNotAuthorized")
        assert (await api.refused("DELETE", f"{RULES}/{shared['id']}", headers=red))[:2] == (403, "PolicyNotAuthorized")
        assert (await api.refused("POST", RULES, {"firewall_rule": {"shared": True}}, blue))[:2] == (
            403, "PolicyNotAuthorized")
        assert (await api.refused("POST", POLICIES, {"firewall_policy": {"firewall_rules": [mine["id"]]}}, red))[
            :2] == (404, "FirewallRuleNotFound")
        red_policy = await policy(api, red, firewall_rules=[shared["id"]])
        blue_policy = await policy(api, blue, firewall_rules=[mine["id"], shared["id"]])
        # a rule shows the policies the token sees
        assert (await api.ok("GET", f"{RULES}/{shared['id']}", headers=red))["firewall_rule"]["firewall_policy_id"] == [
            red_policy["id"]]
        # the admin's policy cannot hold blue's unshared rule; a shared policy only shared rules
        assert await api.refused("POST", POLICIES, {"firewall_policy": {"firewall_rules": [mine["id"]]}}) == (
            409, "FirewallRuleConflict", f"Firewall rule {mine['id']} is not shared and belongs to another project "
                                         f"(blue).")
        assert (await api.refused("POST", POLICIES, {"firewall_policy": {
            "project_id": "blue", "shared": True, "firewall_rules": [mine["id"]]}}))[:2] == (
            404, "FirewallRuleSharingConflict")
        assert await api.refused("PUT", f"{POLICIES}/{blue_policy['id']}", {"firewall_policy": {"shared": True}}) == (
            409, "FirewallPolicySharingConflict",
            f"Share firewall rule {mine['id']} before sharing firewall policy {blue_policy['id']}.")
        # groups use their project's policies and shared ones
        assert (await api.refused("POST", GROUPS, {"firewall_group": {
            "ingress_firewall_policy_id": blue_policy["id"]}}, red))[:2] == (404, "FirewallPolicyNotFound")
        assert (await api.refused("POST", GROUPS, {"firewall_group": {
            "project_id": "red", "ingress_firewall_policy_id": blue_policy["id"]}}))[:2] == (
            404, "FirewallPolicyConflict")
        everyone = await policy(api, name="everyone", shared=True, firewall_rules=[shared["id"]])
        red_group = await group(api, red, egress_firewall_policy_id=everyone["id"])
        assert [g["id"] for g in (await api.ok("GET", GROUPS, headers=blue))["firewall_groups"]] == []
        # what others use stays shared
        assert (await api.refused("PUT", f"{POLICIES}/{everyone['id']}", {"firewall_policy": {"shared": False}}))[
            :2] == (409, "FirewallPolicyInUse")
        assert (await api.refused("PUT", f"{RULES}/{shared['id']}", {"firewall_rule": {"shared": False}}))[:2] == (
            409, "FirewallRuleInUse")
        assert (await api.ok("GET", f"{GROUPS}/{red_group['id']}"))["firewall_group"]["project_id"] == "red"
    run(go())


def test_address_groups_of_rules():
    async def go():
        api = await _api()
        blue, red = await api.token("blue"), await api.token("red")
        ag = (await api.ok("POST", "/v2.0/address-groups", {"address_group": {
            "name": "partners", "addresses": ["192.0.2.0/24"]}}, blue))["address_group"]
        assert (await api.refused("POST", RULES, {"firewall_rule": {"source_address_group_id": ag["id"]}}, red))[
            :2] == (404, "AddressGroupNotFound")
        made = await rule(api, blue, source_address_group_id=ag["id"], destination_ip_address="10.0.0.0/8")
        assert made["source_address_group_id"] == ag["id"]
        assert await api.refused("DELETE", f"/v2.0/address-groups/{ag['id']}", headers=blue) == (
            409, "AddressGroupInUse", f"Address group {ag['id']} is in use on one or more firewall rules.")
        await api.ok("PUT", f"{RULES}/{made['id']}", {"firewall_rule": {"source_address_group_id": None}}, blue)
        await api.ok("DELETE", f"/v2.0/address-groups/{ag['id']}", headers=blue)
    run(go())


def test_tags_on_rules_policies_and_groups():
    """Tags, as on Neutron's other resources (kumoflow apply knows what it made by them): given at
    creation, replaced by PUT, kept by a PUT of other attributes, filtered on."""
    async def go():
        api = await _api()
        for path, key, plural, make in ((RULES, "firewall_rule", "firewall_rules", rule),
                                        (POLICIES, "firewall_policy", "firewall_policies", policy),
                                        (GROUPS, "firewall_group", "firewall_groups", group)):
            tagged, plain = await make(api, name="a", tags=["x", "y"]), await make(api, name="b")
            assert (tagged["tags"], plain["tags"]) == (["x", "y"], [])
            assert [i["name"] for i in (await api.ok("GET", path, tags="x,y"))[plural]] == ["a"]
            assert [i["name"] for i in (await api.ok("GET", path, **{"not-tags-any": "x"}))[plural]] == ["b"]
            changed = (await api.ok("PUT", f"{path}/{tagged['id']}", {key: {"description": "d"}}))[key]
            assert changed["tags"] == ["x", "y"]
            changed = (await api.ok("PUT", f"{path}/{tagged['id']}", {key: {"tags": ["z"]}}))[key]
            assert changed["tags"] == ["z"] and changed["description"] == "d"
            assert (await stored(api, key, tagged["id"]))["tags"] == ["z"]
            assert (await api.refused("PUT", f"{path}/{tagged['id']}", {key: {"tags": ["a,b"]}}))[0] == 400
            assert (await api.refused("PUT", f"{path}/{tagged['id']}", {key: {"tags": None}}))[0] == 400
    run(go())


def test_openapi_lists_the_resources():
    async def go():
        api = await _api()
        paths = set((await api.http.get("/openapi.json")).json()["paths"])
        assert {RULES, f"{RULES}/{{firewall_rule_id}}", POLICIES, f"{POLICIES}/{{firewall_policy_id}}",
                f"{POLICIES}/{{firewall_policy_id}}/insert_rule", f"{POLICIES}/{{firewall_policy_id}}/remove_rule",
                GROUPS, f"{GROUPS}/{{firewall_group_id}}"} <= paths
    run(go())


# --- kumoflow apply ---------------------------------------------------------------------------------

APPLY = """\
name: fw
project: blue
firewall_groups:                       # before what they name: made after it all the same
  - {name: web, ingress_policy: in, egress_policy: out, ports: [www1], tags: [prod]}
  - {name: db, ingress_policy: in, egress_policy: null, ports: [db1]}
firewall_policies:
  - {name: in, rules: [no-admin, partners-web, staff]}
  - {name: out, rules: [all]}
firewall_rules:
  - {name: partners-web, protocol: TCP, destination_port: 443, source_address_group: partners, action: ALLOW}
  - {name: no-admin, protocol: 6, destination_port: "80:80", http_path: /admin, action: reject, log: true}
  - {name: staff, source_user_group: staff, destination_ip_address: 10.60.0.10, action: allow}
  - {name: all, action: allow}
address_groups:
  - {name: partners, file: lists/partners.txt}
  - {name: office, addresses: [203.0.113.0/28, "2001:DB8:1::/48"]}
security_groups:
  - name: ssh
    rules:
      - {direction: egress}
      - {direction: ingress, protocol: tcp, port_range_min: 22, port_range_max: 22, remote_address_group: office}
ports:
  - {name: www1, network: front, user_groups: [staff], security_groups: [ssh]}
  - {name: db1, network: front}
networks: [{name: front}]
"""
PARTNERS = "# partners\n192.0.2.0/24\n198.51.100.7   # one host\n2001:db8::/32\n"


def _apply_files(tmp_path, text: str = APPLY, partners: str = PARTNERS):
    (tmp_path / "lists").mkdir(exist_ok=True)
    (tmp_path / "lists" / "partners.txt").write_text(partners)
    (tmp_path / "fw.yaml").write_text(text)
    return tmp_path / "fw.yaml"


def test_kumoflow_apply_reads_the_firewall(tmp_path):
    from kumoflow.apply import load

    plan = load(_apply_files(tmp_path))
    decls = {kind: {d.name: d for d in plan.decls[kind]} for kind in plan.decls}
    assert decls["address_groups"]["partners"].attrs["addresses"] == ["192.0.2.0/24", "198.51.100.7/32",
                                                                      "2001:db8::/32"]
    assert decls["address_groups"]["office"].attrs["addresses"] == ["203.0.113.0/28", "2001:db8:1::/48"]
    rules = {name: d.attrs for name, d in decls["firewall_rules"].items()}
    assert (rules["no-admin"]["protocol"], rules["no-admin"]["destination_port"], rules["partners-web"]["protocol"],
            rules["partners-web"]["action"], rules["staff"]["destination_ip_address"]) == (
        "tcp", "80", "tcp", "allow", "10.60.0.10/32")
    assert rules["partners-web"]["source_address_group"].name == "partners"
    assert [ref.name for ref in decls["firewall_policies"]["in"].attrs["rules"]] == ["no-admin", "partners-web",
                                                                                     "staff"]
    web, db = decls["firewall_groups"]["web"].attrs, decls["firewall_groups"]["db"].attrs
    assert (web["ingress_policy"].name, web["egress_policy"].name, [p.name for p in web["ports"]]) == (
        "in", "out", ["www1"])
    assert db["egress_policy"] is None and decls["ports"]["www1"].attrs["user_groups"] == ["staff"]
    assert decls["security_groups"]["ssh"].attrs["rules"][1]["remote_address_group"].name == "office"


def test_kumoflow_apply_reports_every_bad_firewall_input_at_its_line(tmp_path):
    from kumoflow.apply import load
    from kumoflow.net.errors import TopologyError

    (tmp_path / "bad.txt").write_text("10.0.0.0/8\n10.0.0.1/24  # typo\nbanana\n")
    (tmp_path / "f.yaml").write_text(
        "address_groups:\n"
        "  - {name: a, file: bad.txt}\n"
        "  - {name: b, file: nope.txt}\n"
        "  - {name: c, addresses: [10.0.0.300], file: bad.txt}\n"
        "security_groups:\n"
        "  - {name: s, rules: [{direction: ingress, remote_ip_prefix: 10.0.0.0/8, remote_address_group: a}]}\n"
        "ports:\n"
        "  - {name: p, network: n, user_groups: [staff, 'bad group']}\n"
        "firewall_rules:\n"
        "  - {name: r1, protocol: tcpx, ip_version: 5, action: drop}\n"
        "  - {name: r2, protocol: icmp, destination_port: 22, http_host: example.test}\n"
        "  - {name: r3, source_ip_address: 10.0.0.5, source_user_group: staff}\n"
        "  - {name: r4, protocol: tcp, destination_ip_address: '2001:db8::1', destination_port: '9:3'}\n"
        "  - {name: r5, protocol: icmpv6, source_ip_address: 10.0.0.1/24, colour: red}\n"
        "  - {name: r1}\n"
        "firewall_policies:\n"
        "  - {name: in, rules: [r1, r2, r1]}\n"
        "firewall_groups:\n"
        "  - {name: g1, ports: [p], ingress_policy: in}\n"
        "  - {name: g2, ports: [p, p], egress_policy: [in]}\n")
    with pytest.raises(TopologyError) as failed:
        load(tmp_path / "f.yaml")
    text = str(failed.value)
    f, bad = tmp_path / "f.yaml", tmp_path / "bad.txt"
    for want in (f"{f}:2: address_groups[0].file: {bad}:2: '10.0.0.1/24' has host bits set (the network is "
                 f"10.0.0.0/24)",
                 f"{f}:2: address_groups[0].file: {bad}:3: 'banana' is not an IPv4 or IPv6 address or CIDR",
                 f"{f}:3: address_groups[1].file: cannot read {tmp_path / 'nope.txt'}: No such file or directory",
                 f"{f}:4: address_groups[2].addresses[0]: '10.0.0.300' is not an IPv4 or IPv6 address or CIDR",
                 f"{f}:4: address_groups[2].file: give addresses or file, not both",
                 f"{f}:6: security_groups[0].rules[0]: give one of remote_ip_prefix, remote_group and "
                 f"remote_address_group, not remote_ip_prefix and remote_address_group",
                 f"{f}:8: ports[0].user_groups[1]: 'bad group': a user group is letters, digits",
                 f"{f}:10: firewall_rules[0].protocol: 'tcpx': tcp, udp, icmp, icmpv6, any, or a protocol number",
                 f"{f}:10: firewall_rules[0].ip_version: 4 or 6",
                 f"{f}:10: firewall_rules[0].action: one of allow, deny, reject",
                 f"{f}:11: firewall_rules[1].destination_port: a port needs protocol tcp or udp",
                 f"{f}:11: firewall_rules[1].http_host: needs protocol tcp",
                 f"{f}:12: firewall_rules[2].source_user_group: give one of source_ip_address, source_address_group "
                 f"and source_user_group, not source_ip_address and source_user_group",
                 f"{f}:13: firewall_rules[3].destination_ip_address: an IPv6 address in an IPv4 rule (ip_version)",
                 f"{f}:13: firewall_rules[3].destination_port: '9:3': a port 1..65535, or a range N:M with N <= M",
                 f"{f}:14: firewall_rules[4].colour: unknown field",
                 f"{f}:14: firewall_rules[4].protocol: icmpv6 in an IPv4 rule (ip_version 4)",
                 f"{f}:14: firewall_rules[4].source_ip_address: '10.0.0.1/24' has host bits set",
                 f"{f}:15: firewall_rules[5].name: firewall rule 'r1' is declared twice (first on line 10)",
                 f"{f}:17: firewall_policies[0].rules[2]: firewall rule 'r1' is listed twice",
                 f"{f}:20: firewall_groups[1].ports[0]: port 'p' is in firewall group 'g1' too (line 19): a port is "
                 f"in one group at most",
                 f"{f}:20: firewall_groups[1].ports[1]: port 'p' is listed twice",
                 f"{f}:20: firewall_groups[1].egress_policy: expected a string, got a list"):
        assert want in text, (want, text)
    assert text.count("is in firewall group 'g1' too") == 1
    assert len(failed.value.issues) == 23, text


def test_kumoflow_apply_makes_the_firewall_and_changes_only_what_the_file_changes(tmp_path):
    from kumoflow.apply import ApplyError, Client, apply, load
    from test_api_lbaas import SyncApi

    file = _apply_files(tmp_path)
    sync = SyncApi()
    client = Client("http://kumoflow", "admin-secret", client=sync)
    run_apply = lambda: apply(load(file), client)

    def listed(path: str, key: str) -> dict:
        return {item["name"]: item for item in sync.get(path, project_id="blue")[key]}

    def state() -> dict:
        return {"rules": listed(RULES, "firewall_rules"), "policies": listed(POLICIES, "firewall_policies"),
                "groups": listed(GROUPS, "firewall_groups"), "ports": listed("/v2.0/ports", "ports"),
                "address_groups": listed("/v2.0/address-groups", "address_groups"),
                "security_groups": listed("/v2.0/security-groups", "security_groups")}
    try:
        first = run_apply()
        assert first[:-1] == [
            "created address group partners", "created address group office", "created security group ssh",
            "created network front", "created port www1", "created port db1", "created firewall rule partners-web",
            "created firewall rule no-admin", "created firewall rule staff", "created firewall rule all",
            "created firewall policy in", "created firewall policy out", "created firewall group web",
            "created firewall group db", "updated security group ssh: deleted rule egress IPv6"], first
        made = state()
        rules, groups, ports = made["rules"], made["groups"], made["ports"]
        partners, office = made["address_groups"]["partners"], made["address_groups"]["office"]
        assert first[-1] == f"updated security group ssh: added rule ingress IPv4 tcp 22-22 address group " \
                            f"{office['id']}"
        assert partners["addresses"] == ["192.0.2.0/24", "198.51.100.7/32", "2001:db8::/32"]
        assert {k: rules["partners-web"][k] for k in ("protocol", "destination_port", "action",
                                                      "source_address_group_id")} == {
            "protocol": "tcp", "destination_port": "443", "action": "allow", "source_address_group_id": partners["id"]}
        assert {k: rules["no-admin"][k] for k in ("protocol", "destination_port", "action", "http_path", "log")} == {
            "protocol": "tcp", "destination_port": "80", "action": "reject", "http_path": "/admin", "log": True}
        assert (rules["staff"]["source_user_group"], rules["staff"]["destination_ip_address"]) == (
            "staff", "10.60.0.10/32")
        assert made["policies"]["in"]["firewall_rules"] == [rules[n]["id"] for n in ("no-admin", "partners-web",
                                                                                     "staff")]
        assert (groups["web"]["ports"], groups["web"]["ingress_firewall_policy_id"],
                groups["web"]["egress_firewall_policy_id"], sorted(groups["web"]["tags"])) == (
            [ports["www1"]["id"]], made["policies"]["in"]["id"], made["policies"]["out"]["id"],
            ["kumoflow-apply:fw", "prod"])
        assert (groups["db"]["ports"], groups["db"]["egress_firewall_policy_id"]) == ([ports["db1"]["id"]], None)
        assert ports["www1"]["user_groups"] == ["staff"]
        ssh = made["security_groups"]["ssh"]["security_group_rules"]
        assert [r["remote_address_group_id"] for r in ssh if r["direction"] == "ingress"] == [office["id"]]
        assert all(item["tags"] == ["kumoflow-apply:fw"] for kind in ("rules", "policies", "address_groups")
                   for item in made[kind].values())
        assert run_apply() == [] and state() == made                             # nothing to change

        # an edit changes that, and only that: db1 moves to the group before its own (it leaves db first)
        _apply_files(tmp_path, APPLY.replace(
            "ports: [www1], tags", "ports: [www1, db1], tags").replace("ports: [db1]", "ports: []").replace(
            "[no-admin, partners-web, staff]", "[staff, no-admin]").replace(
            "  - {name: partners-web, protocol: TCP, destination_port: 443, source_address_group: partners, "
            "action: ALLOW}\n", "").replace(", destination_ip_address: 10.60.0.10", "").replace(
            "user_groups: [staff]", "user_groups: [staff, admins, staff]"),
            PARTNERS.replace("198.51.100.7", "198.51.100.8"))
        second = run_apply()
        assert second == ["updated firewall group db: ports (1 moved to another group)",
                          "updated address group partners: addresses (1 added, 1 removed)",
                          "updated port www1: user_groups", "updated firewall rule staff: destination_ip_address",
                          "updated firewall policy in: firewall_rules", "updated firewall group web: ports",
                          "deleted firewall rule partners-web"], second
        after = state()
        assert after["address_groups"]["partners"]["addresses"] == ["192.0.2.0/24", "2001:db8::/32",
                                                                     "198.51.100.8/32"]
        assert after["rules"]["staff"]["destination_ip_address"] is None and "partners-web" not in after["rules"]
        assert after["policies"]["in"]["firewall_rules"] == [rules["staff"]["id"], rules["no-admin"]["id"]]
        assert (sorted(after["groups"]["web"]["ports"]), after["groups"]["db"]["ports"]) == (
            sorted([ports["www1"]["id"], ports["db1"]["id"]]), [])
        assert after["ports"]["www1"]["user_groups"] == ["staff", "admins"]
        assert after["address_groups"]["office"] == office and after["policies"]["out"] == made["policies"]["out"]
        assert run_apply() == []
        # www1 moves to a group the file adds, before the one it leaves
        edited = (tmp_path / "fw.yaml").read_text()
        (tmp_path / "fw.yaml").write_text(edited.replace("ports: [www1, db1]", "ports: [db1]").replace(
            "firewall_groups:  ", "firewall_groups:\n  - {name: front, ingress_policy: in, ports: [www1]}  "))
        assert run_apply() == ["updated firewall group web: ports (1 moved to another group)",
                               "created firewall group front"]
        assert run_apply() == [] and listed(GROUPS, "firewall_groups")["front"]["ports"] == [ports["www1"]["id"]]

        # what the API refuses is reported at the line that asked for it
        edited = (tmp_path / "fw.yaml").read_text()
        (tmp_path / "fw.yaml").write_text(edited.replace("http_path: /admin", "http_path: admin"))
        with pytest.raises(ApplyError) as failed:
            run_apply()
        assert f"{file}:11: firewall_rules[0]: the API refused PUT {RULES}/{rules['no-admin']['id']}: " \
               f"InvalidInput:" in str(failed.value), failed.value

        # gone from the file: each goes once nothing holds it
        (tmp_path / "fw.yaml").write_text("name: fw\nproject: blue\n")
        assert run_apply() == [
            "deleted firewall group web", "deleted firewall group db", "deleted firewall group front",
            "deleted port www1", "deleted port db1",
            "deleted network front", "deleted firewall policy in", "deleted firewall policy out",
            "deleted firewall rule no-admin", "deleted firewall rule staff", "deleted firewall rule all",
            "deleted security group ssh", "deleted address group partners", "deleted address group office"]
        assert all(not items for kind, items in state().items() if kind != "security_groups")
    finally:
        sync.close()
