"""Firewall-as-a-service (/v2.0/fwaas/...) in process: Neutron FWaaS v2's rules, policies and
groups, kumoflow's extensions of a rule, the stored forms the firewall app compiles, ordering by
insert_rule/remove_rule, projects kept apart and shared resources, what is in use guarded; every
refusal with its type and message, and nothing written (the store's revision does not move)."""

from __future__ import annotations

import asyncio

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
