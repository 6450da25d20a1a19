"""Security group rules on address groups (remote_address_group_id, Neutron's address-group
extension) in process: shown and filtered, at most one remote end, the group one the token sees,
a group in use kept; every refusal with its type and message, and nothing written."""

from __future__ import annotations

import asyncio

from kumoflow.store.sqlite import SQLiteStore

from test_api_l3 import Api

RULES = "/v2.0/security-group-rules"


def run(coro):
    return asyncio.run(coro)


async def _setup(api: Api, headers: dict) -> tuple[str, str]:
    """A security group and an address group of the token's project."""
    sg = (await api.ok("POST", "/v2.0/security-groups", {"security_group": {"name": "web"}}, headers))
    ag = (await api.ok("POST", "/v2.0/address-groups", {"address_group": {
        "name": "partners", "addresses": ["192.0.2.0/24", "2001:db8::/32"]}}, headers))
    return sg["security_group"]["id"], ag["address_group"]["id"]


def test_a_rule_on_an_address_group():
    async def go():
        api = Api(await SQLiteStore.open(":memory:"))
        blue = await api.token("blue")
        sg, ag = await _setup(api, blue)
        made = (await api.ok("POST", RULES, {"security_group_rule": {
            "security_group_id": sg, "direction": "ingress", "protocol": "tcp", "port_range_min": 443,
            "port_range_max": 443, "remote_address_group_id": ag}}, blue))["security_group_rule"]
        assert (made["remote_address_group_id"], made["remote_ip_prefix"], made["remote_group_id"]) == (ag, None, None)
        shown = (await api.ok("GET", f"{RULES}/{made['id']}", headers=blue))["security_group_rule"]
        assert shown == made
        listed = (await api.ok("GET", RULES, headers=blue, remote_address_group_id=ag))["security_group_rules"]
        assert [r["id"] for r in listed] == [made["id"]]
        group = (await api.ok("GET", f"/v2.0/security-groups/{sg}", headers=blue))["security_group"]
        by_id = {r["id"]: r for r in group["security_group_rules"]}
        assert by_id[made["id"]]["remote_address_group_id"] == ag
        assert {r["remote_address_group_id"] for i, r in by_id.items() if i != made["id"]} == {None}  # the egress ones

        same = {"security_group_id": sg, "direction": "ingress", "protocol": "tcp", "port_range_min": 443,
                "port_range_max": 443, "remote_address_group_id": ag}
        assert (await api.refused("POST", RULES, {"security_group_rule": same}, blue))[:2] == (
            409, "SecurityGroupRuleExists")
        assert await api.refused("DELETE", f"/v2.0/address-groups/{ag}", headers=blue) == (
            409, "AddressGroupInUse", f"Address group {ag} is in use on one or more security group rules.")
        await api.ok("DELETE", f"{RULES}/{made['id']}", headers=blue)
        await api.ok("DELETE", f"/v2.0/address-groups/{ag}", headers=blue)
    run(go())


def test_one_remote_end_and_a_group_the_token_sees():
    async def go():
        api = Api(await SQLiteStore.open(":memory:"))
        blue, red = await api.token("blue"), await api.token("red")
        sg, ag = await _setup(api, blue)
        red_sg, red_ag = await _setup(api, red)
        base = {"security_group_id": sg, "direction": "ingress"}
        before = (await api.ok("GET", RULES, headers=blue))["security_group_rules"]
        several = (400, "SecurityGroupMultipleRemoteEntites",
                   "Only one of remote_ip_prefix, remote_group_id and remote_address_group_id may be provided.")
        for extra, refusal in (({"remote_ip_prefix": "10.0.0.0/8"}, several), ({"remote_group_id": sg}, several),
                               ({"remote_ip_prefix": "10.0.0.0/8", "remote_group_id": sg},
                                (400, "SecurityGroupRemoteGroupAndRemoteIpPrefix",
                                 "Only remote_ip_prefix or remote_group_id may be provided."))):
            assert await api.refused("POST", RULES, {"security_group_rule": {
                **base, "remote_address_group_id": ag, **extra}}, blue) == refusal, extra
        assert await api.refused("POST", RULES, {"security_group_rule": {
            **base, "remote_address_group_id": red_ag}}, blue) == (
            404, "AddressGroupNotFound", f"Address group {red_ag} could not be found.")
        assert await api.refused("POST", RULES, {"security_group_rule": {
            **base, "remote_address_group_id": "nope"}}, blue) == (
            404, "AddressGroupNotFound", "Address group nope could not be found.")
        assert (await api.ok("GET", RULES, headers=blue))["security_group_rules"] == before
        # the admin sees every project's groups
        made = (await api.ok("POST", RULES, {"security_group_rule": {
            "security_group_id": red_sg, "direction": "egress", "remote_address_group_id": red_ag}}))
        assert made["security_group_rule"]["project_id"] == "red"
    run(go())
