"""L2 gateways (/v2.0/l2-gateways, /v2.0/l2-gateway-connections) in process: networking-l2gw's
shapes, admin only, a (switch, interface, VLAN) joined to one network at a time, what is in use
guarded; every refusal with its type and nothing half-applied."""

from __future__ import annotations

from kumoflow.store.sqlite import SQLiteStore

from test_api_l3 import Api, run

GATEWAY = {"l2_gateway": {"name": "rack7", "devices": [
    {"device_name": "s1", "interfaces": [{"name": "eth4"}, {"name": "eth5", "segmentation_id": [300]}]}]}}


def test_a_connection_joins_a_tunnelled_network_to_a_gateways_vlans():
    async def body():
        api = Api(await SQLiteStore.open(":memory:"))
        blue = await api.token("blue")
        gw = (await api.ok("POST", "/v2.0/l2-gateways", GATEWAY))["l2_gateway"]
        assert gw["name"] == "rack7" and gw["devices"][0]["interfaces"][0] == {"name": "eth4", "segmentation_id": []}
        net = (await api.ok("POST", "/v2.0/networks", {"network": {"name": "blue"}}, blue))["network"]
        flat = (await api.ok("POST", "/v2.0/networks", {"network": {"provider:network_type": "flat",
                                                                   "provider:physical_network": "dc"}}))["network"]
        # eth5 has its VLAN; eth4 takes the connection's
        conn = {"l2_gateway_connection": {"l2_gateway_id": gw["id"], "network_id": net["id"], "segmentation_id": 100}}
        assert (await api.refused("POST", "/v2.0/l2-gateway-connections", conn))[:2] == (400, "InvalidInput")
        gw2 = (await api.ok("POST", "/v2.0/l2-gateways", {"l2_gateway": {"devices": [
            {"device_name": "s1", "interfaces": [{"name": "eth4"}]}]}}))["l2_gateway"]
        conn["l2_gateway_connection"]["l2_gateway_id"] = gw2["id"]
        made = (await api.ok("POST", "/v2.0/l2-gateway-connections", conn))["l2_gateway_connection"]
        assert (made["network_id"], made["segmentation_id"]) == (net["id"], 100)
        listed = (await api.ok("GET", "/v2.0/l2-gateway-connections", network_id=net["id"]))
        assert [c["id"] for c in listed["l2_gateway_connections"]] == [made["id"]]
        # the same VLAN of the same interface cannot join a second network (nor the same one twice)
        other = (await api.ok("POST", "/v2.0/networks", {"network": {}}, blue))["network"]
        again = {"l2_gateway_connection": {**conn["l2_gateway_connection"], "network_id": other["id"]}}
        assert (await api.refused("POST", "/v2.0/l2-gateway-connections", again))[:2] == \
            (409, "L2GatewaySegmentationIdInUse")
        # another VLAN may; a network that is not tunnelled may not; nor one that does not exist
        again["l2_gateway_connection"]["segmentation_id"] = 101
        await api.ok("POST", "/v2.0/l2-gateway-connections", again)
        flat_conn = {"l2_gateway_connection": {**again["l2_gateway_connection"], "network_id": flat["id"],
                                               "segmentation_id": 102}}
        assert (await api.refused("POST", "/v2.0/l2-gateway-connections", flat_conn))[:2] == (400, "InvalidInput")
        flat_conn["l2_gateway_connection"]["network_id"] = "no-such-network"
        assert (await api.refused("POST", "/v2.0/l2-gateway-connections", flat_conn))[:2] == (404, "NetworkNotFound")
        # in use: the gateway, its devices, the network
        assert (await api.refused("DELETE", f"/v2.0/l2-gateways/{gw2['id']}"))[:2] == (409, "L2GatewayInUse")
        assert (await api.refused("PUT", f"/v2.0/l2-gateways/{gw2['id']}", GATEWAY))[:2] == (409, "L2GatewayInUse")
        assert (await api.refused("DELETE", f"/v2.0/networks/{net['id']}", headers=blue))[:2] == (409, "NetworkInUse")
        await api.ok("DELETE", f"/v2.0/l2-gateway-connections/{made['id']}")
        await api.ok("DELETE", f"/v2.0/networks/{net['id']}", headers=blue)
        assert (await api.refused("GET", f"/v2.0/l2-gateway-connections/{made['id']}"))[:2] == \
            (404, "L2GatewayConnectionNotFound")

    run(body())


def test_l2_gateways_are_the_admins():
    async def body():
        api = Api(await SQLiteStore.open(":memory:"))
        blue = await api.token("blue")
        assert (await api.refused("POST", "/v2.0/l2-gateways", GATEWAY, blue))[:2] == (403, "PolicyNotAuthorized")
        assert (await api.refused("GET", "/v2.0/l2-gateways", headers=blue))[:2] == (403, "PolicyNotAuthorized")
        bad = {"l2_gateway": {"devices": [{"device_name": "s1", "interfaces": [
            {"name": "eth4", "segmentation_id": [5000]}]}]}}
        assert (await api.refused("POST", "/v2.0/l2-gateways", bad))[0] == 400
        twice = {"l2_gateway": {"devices": [{"device_name": "s1", "interfaces": [{"name": "e"}, {"name": "e"}]}]}}
        assert (await api.refused("POST", "/v2.0/l2-gateways", twice))[:2] == (400, "InvalidInput")

    run(body())
