"""/v2.0/bgp-speakers and /v2.0/bgp-peers in process (no root, no sockets): neutron-dynamic-routing's
shapes, admin only, passwords never shown, associations checked, errors with Neutron's bodies,
records in the store."""

from __future__ import annotations

import asyncio

import httpx

from kumoflow.api.server import build_app
from kumoflow.apps.l2 import LearningSwitch as L2
from kumoflow.store.sqlite import SQLiteStore

from memnet import MemNet

ADMIN = {"X-Auth-Token": "admin-secret"}


class WithStore:
    def __init__(self, core, store) -> None:
        self.core, self.store = core, store


def run(coro):
    return asyncio.run(coro)


def client(controller) -> httpx.AsyncClient:
    app = build_app(controller, admin_token="admin-secret")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://kumoflow")


def error(r) -> tuple[int, str]:
    return r.status_code, r.json()["NeutronError"]["type"]


def test_speakers_and_peers_in_neutron_dynamic_routings_shapes(tmp_path):
    async def body():
        store = await SQLiteStore.open(tmp_path / "kumoflow.db")
        async with client(WithStore(MemNet([L2()]).core, store)) as c:
            r = await c.post("/v2.0/bgp-speakers", headers=ADMIN,
                             json={"bgp_speaker": {"name": "edge", "local_as": 64512, "ip_version": 4}})
            assert r.status_code == 201, r.text
            speaker = r.json()["bgp_speaker"]
            assert {k: speaker[k] for k in ("name", "local_as", "ip_version", "advertise_floating_ip_host_routes",
                                            "advertise_tenant_networks", "networks", "peers", "tenant_id")} == {
                "name": "edge", "local_as": 64512, "ip_version": 4, "advertise_floating_ip_host_routes": True,
                "advertise_tenant_networks": True, "networks": [], "peers": [], "tenant_id": "admin"}
            r = await c.post("/v2.0/bgp-peers", headers=ADMIN, json={"bgp_peer": {
                "name": "isp", "peer_ip": "192.0.2.254", "remote_as": 64496, "auth_type": "md5",
                "password": "s3cret"}})
            assert r.status_code == 201, r.text
            peer = r.json()["bgp_peer"]
            assert peer["auth_type"] == "md5" and "password" not in peer and "_password" not in peer
            assert "s3cret" not in (await c.get("/v2.0/bgp-peers", headers=ADMIN)).text
            assert (await store.get("bgp_peer", peer["id"])).body["_password"] == "s3cret"   # FRR needs it

            sid, pid = speaker["id"], peer["id"]
            r = await c.put(f"/v2.0/bgp-speakers/{sid}/add_bgp_peer", headers=ADMIN, json={"bgp_peer_id": pid})
            assert r.status_code == 200 and r.json() == {"bgp_peer_id": pid}
            network = (await c.post("/v2.0/networks", headers=ADMIN, json={"network": {
                "name": "public", "router:external": True}})).json()["network"]
            r = await c.put(f"/v2.0/bgp-speakers/{sid}/add_gateway_network", headers=ADMIN,
                            json={"network_id": network["id"]})
            assert r.status_code == 200 and r.json() == {"network_id": network["id"]}
            shown = (await c.get(f"/v2.0/bgp-speakers/{sid}", headers=ADMIN)).json()["bgp_speaker"]
            assert shown["peers"] == [pid] and shown["networks"] == [network["id"]]
            assert shown["revision_number"] == 2

            # lists, filters, fields
            r = await c.get("/v2.0/bgp-speakers", headers=ADMIN, params={"local_as": "64512", "fields": "name"})
            assert r.json() == {"bgp_speakers": [{"name": "edge"}]}
            assert (await c.get("/v2.0/bgp-speakers", headers=ADMIN, params={"peers": pid})).json()["bgp_speakers"]
            assert (await c.get("/v2.0/bgp-peers", headers=ADMIN, params={"remote_as": "1"})).json() == {
                "bgp_peers": []}

            # updates: what may change
            r = await c.put(f"/v2.0/bgp-speakers/{sid}", headers=ADMIN,
                            json={"bgp_speaker": {"advertise_tenant_networks": False, "name": "edge2"}})
            assert r.status_code == 200 and r.json()["bgp_speaker"]["advertise_tenant_networks"] is False
            r = await c.put(f"/v2.0/bgp-speakers/{sid}", headers=ADMIN, json={"bgp_speaker": {"local_as": 1}})
            assert r.status_code == 400
            r = await c.put(f"/v2.0/bgp-peers/{pid}", headers=ADMIN, json={"bgp_peer": {"password": "other"}})
            assert r.status_code == 200 and "password" not in r.json()["bgp_peer"]
            assert (await store.get("bgp_peer", pid)).body["_password"] == "other"
            r = await c.put(f"/v2.0/bgp-peers/{pid}", headers=ADMIN, json={"bgp_peer": {"remote_as": 1}})
            assert r.status_code == 400

            # removal, then deleting a peer takes it out of its speakers
            r = await c.put(f"/v2.0/bgp-speakers/{sid}/remove_gateway_network", headers=ADMIN,
                            json={"network_id": network["id"]})
            assert r.status_code == 200
            assert error(await c.put(f"/v2.0/bgp-speakers/{sid}/remove_gateway_network", headers=ADMIN,
                                     json={"network_id": network["id"]})) == (404, "BgpSpeakerNetworkNotAssociated")
            before = store.revision
            assert (await c.delete(f"/v2.0/bgp-peers/{pid}", headers=ADMIN)).status_code == 204
            assert store.revision == before + 1                        # one commit
            shown = (await c.get(f"/v2.0/bgp-speakers/{sid}", headers=ADMIN)).json()["bgp_speaker"]
            assert shown["peers"] == []
            assert (await c.delete(f"/v2.0/bgp-speakers/{sid}", headers=ADMIN)).status_code == 204
            assert error(await c.get(f"/v2.0/bgp-speakers/{sid}", headers=ADMIN)) == (404, "BgpSpeakerNotFound")
        await store.close()

    run(body())


def test_bad_requests_and_conflicts():
    async def body():
        async with client(MemNet([L2()]).core) as c:
            async def post(path, key, **values):
                return await c.post(path, headers=ADMIN, json={key: values})

            assert (await post("/v2.0/bgp-speakers", "bgp_speaker", local_as=0)).status_code == 400
            assert (await post("/v2.0/bgp-speakers", "bgp_speaker", local_as=2**32)).status_code == 400
            assert (await post("/v2.0/bgp-speakers", "bgp_speaker", local_as=1, ip_version=5)).status_code == 400
            assert (await post("/v2.0/bgp-speakers", "bgp_speaker", local_as=1, peers=["x"])).status_code == 400
            assert (await post("/v2.0/bgp-speakers", "bgp_speaker")).status_code == 400      # local_as needed
            r = await post("/v2.0/bgp-peers", "bgp_peer", peer_ip="10.0.0.300", remote_as=1)
            assert error(r) == (400, "InvalidInput") and "10.0.0.300" in r.json()["NeutronError"]["message"]
            assert (await post("/v2.0/bgp-peers", "bgp_peer", peer_ip="127.0.0.1", remote_as=1)).status_code == 400
            assert error(await post("/v2.0/bgp-peers", "bgp_peer", peer_ip="10.0.0.1", remote_as=1,
                                    auth_type="md5")) == (400, "InvalidBgpPeerMd5Authentication")
            assert error(await post("/v2.0/bgp-peers", "bgp_peer", peer_ip="10.0.0.1", remote_as=1,
                                    password="x")) == (400, "InvalidBgpPeerMd5Authentication")
            assert (await post("/v2.0/bgp-peers", "bgp_peer", peer_ip="10.0.0.1", remote_as=1, auth_type="sha",
                               password="x")).status_code == 400
            assert (await post("/v2.0/bgp-peers", "bgp_peer", peer_ip="10.0.0.1", remote_as=1, auth_type="md5",
                               password="has space")).status_code == 400

            sid = (await post("/v2.0/bgp-speakers", "bgp_speaker", local_as=65000)).json()["bgp_speaker"]["id"]
            p1 = (await post("/v2.0/bgp-peers", "bgp_peer", peer_ip="10.0.0.1", remote_as=1)).json()["bgp_peer"]["id"]
            p2 = (await post("/v2.0/bgp-peers", "bgp_peer", peer_ip="10.0.0.1", remote_as=2)).json()["bgp_peer"]["id"]
            p6 = (await post("/v2.0/bgp-peers", "bgp_peer", peer_ip="fd00::1", remote_as=2)).json()["bgp_peer"]["id"]

            async def add(peer_id):
                return await c.put(f"/v2.0/bgp-speakers/{sid}/add_bgp_peer", headers=ADMIN,
                                   json={"bgp_peer_id": peer_id})
            assert (await add(p1)).status_code == 200
            assert error(await add(p1)) == (409, "DuplicateBgpPeerIpException")
            assert error(await add(p2)) == (409, "DuplicateBgpPeerIpException")
            assert error(await add(p6)) == (400, "InvalidBgpPeerIpVersion")
            assert error(await add("nope")) == (404, "BgpPeerNotFound")
            assert error(await c.put("/v2.0/bgp-speakers/nope/add_bgp_peer", headers=ADMIN,
                                     json={"bgp_peer_id": p1})) == (404, "BgpSpeakerNotFound")
            assert error(await c.put(f"/v2.0/bgp-speakers/{sid}/remove_bgp_peer", headers=ADMIN,
                                     json={"bgp_peer_id": p2})) == (404, "BgpSpeakerPeerNotAssociated")

            internal = (await post("/v2.0/networks", "network", name="inside")).json()["network"]["id"]
            async def gateway(network_id):
                return await c.put(f"/v2.0/bgp-speakers/{sid}/add_gateway_network", headers=ADMIN,
                                   json={"network_id": network_id})
            assert error(await gateway(internal)) == (400, "BadRequest")
            assert error(await gateway("nope")) == (404, "NetworkNotFound")
            public = (await post("/v2.0/networks", "network", **{"router:external": True})).json()["network"]["id"]
            assert (await gateway(public)).status_code == 200
            assert error(await gateway(public)) == (409, "BgpSpeakerNetworkAlreadyAssociated")

    run(body())


def test_admin_only():
    async def body():
        async with client(MemNet([L2()]).core) as c:
            token = (await c.post("/v2.0/tokens", headers=ADMIN, json={"token": {"project_id": "blue"}})).json()
            blue = {"X-Auth-Token": token["token"]["token"]}
            sid = (await c.post("/v2.0/bgp-speakers", headers=ADMIN, json={"bgp_speaker": {"local_as": 1}})
                   ).json()["bgp_speaker"]["id"]
            for method, path, payload in (
                    ("GET", "/v2.0/bgp-speakers", None), ("GET", f"/v2.0/bgp-speakers/{sid}", None),
                    ("POST", "/v2.0/bgp-speakers", {"bgp_speaker": {"local_as": 1}}),
                    ("PUT", f"/v2.0/bgp-speakers/{sid}/add_bgp_peer", {"bgp_peer_id": "x"}),
                    ("DELETE", f"/v2.0/bgp-speakers/{sid}", None), ("GET", "/v2.0/bgp-peers", None),
                    ("POST", "/v2.0/bgp-peers", {"bgp_peer": {"peer_ip": "10.0.0.1", "remote_as": 1}})):
                r = await c.request(method, path, headers=blue, json=payload)
                assert r.status_code == 403, (method, path, r.text)
            assert (await c.get("/v2.0/bgp-speakers")).status_code == 401
            assert (await c.get(f"/v2.0/bgp-speakers/{sid}", headers=ADMIN)).status_code == 200

    run(body())


def test_the_openapi_document_lists_them():
    async def body():
        async with client(MemNet([L2()]).core) as c:
            paths = (await c.get("/openapi.json")).json()["paths"]
            for path in ("/v2.0/bgp-speakers", "/v2.0/bgp-speakers/{speaker_id}",
                         "/v2.0/bgp-speakers/{speaker_id}/add_bgp_peer",
                         "/v2.0/bgp-speakers/{speaker_id}/remove_gateway_network", "/v2.0/bgp-peers/{peer_id}"):
                assert path in paths

    run(body())
