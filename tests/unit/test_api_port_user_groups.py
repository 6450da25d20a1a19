"""A port's user groups (kumoflow's extension ``user_groups``) in process: default, given,
updated, filtered on; bad ones refused with nothing written."""

from __future__ import annotations

import asyncio

from kumoflow.store.sqlite import SQLiteStore

from test_api_l3 import Api


def run(coro):
    return asyncio.run(coro)


def test_user_groups_of_a_port():
    async def go():
        api = Api(await SQLiteStore.open(":memory:"))
        blue = await api.token("blue")
        net = (await api.ok("POST", "/v2.0/networks", {"network": {"name": "n"}}, blue))["network"]["id"]
        plain = (await api.ok("POST", "/v2.0/ports", {"port": {"network_id": net}}, blue))["port"]
        assert plain["user_groups"] == []
        staff = (await api.ok("POST", "/v2.0/ports", {"port": {
            "network_id": net, "user_groups": ["staff", "ops.on-call_2", "staff"]}}, blue))["port"]
        assert staff["user_groups"] == ["staff", "ops.on-call_2"]          # once each, in the order given
        listed = (await api.ok("GET", "/v2.0/ports", headers=blue, user_groups="ops.on-call_2"))["ports"]
        assert [p["id"] for p in listed] == [staff["id"]]
        changed = (await api.ok("PUT", f"/v2.0/ports/{plain['id']}", {"port": {"user_groups": ["guests"]}},
                                blue))["port"]
        assert changed["user_groups"] == ["guests"] and changed["revision_number"] == 1
        kept = (await api.ok("PUT", f"/v2.0/ports/{plain['id']}", {"port": {"name": "vm"}}, blue))["port"]
        assert kept["user_groups"] == ["guests"]

        for bad in (["with space"], [""], ["x" * 65], ["ok", 7], [f"g{i}" for i in range(33)], "staff"):
            status, kind, message = await api.refused("POST", "/v2.0/ports", {"port": {
                "network_id": net, "user_groups": bad}}, blue)
            assert (status, kind) == (400, "HTTPBadRequest") and "user_groups" in message, (bad, message)
            status, kind, message = await api.refused("PUT", f"/v2.0/ports/{plain['id']}", {"port": {
                "user_groups": bad}}, blue)
            assert (status, kind) == (400, "HTTPBadRequest") and "user_groups" in message, (bad, message)
        assert await api.refused("PUT", f"/v2.0/ports/{plain['id']}", {"port": {"user_groups": None}}, blue) == (
            400, "InvalidInput", "Invalid input for operation: user_groups must not be null")
        assert (await api.ok("GET", f"/v2.0/ports/{plain['id']}", headers=blue))["port"] == kept
    run(go())
