"""Address groups (/v2.0/address-groups) in process: Neutron's shape and its add/remove actions,
the country shorthand from $KUMOFLOW_COUNTRIES, projects kept apart, every bad address named at
once, and every refusal leaving the store as it was (its revision does not move)."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest

from kumoflow.store.sqlite import SQLiteStore

from test_api_l3 import Api

COUNTRIES = Path(__file__).parent.parent / "data" / "countries"


def run(coro):
    return asyncio.run(coro)


async def _api() -> Api:
    return Api(await SQLiteStore.open(":memory:"))


def test_create_show_list_update_delete():
    async def go():
        api = await _api()
        made = (await api.ok("POST", "/v2.0/address-groups", {"address_group": {
            "name": "partners", "description": "who may reach us",
            "addresses": ["192.0.2.0/24", "198.51.100.7", "2001:db8::/32", "192.0.2.0/24"]}}))["address_group"]
        assert made["addresses"] == ["192.0.2.0/24", "198.51.100.7/32", "2001:db8::/32"]   # canonical, once each
        assert made["name"] == "partners" and made["country"] is None and made["revision_number"] == 0
        assert made["project_id"] == made["tenant_id"] == "admin"
        gid = made["id"]
        assert (await api.ok("GET", f"/v2.0/address-groups/{gid}"))["address_group"] == made
        assert (await api.ok("GET", f"/v2.0/address-groups/{gid}?fields=id&fields=addresses"))["address_group"] == {
            "id": gid, "addresses": made["addresses"]}
        other = (await api.ok("POST", "/v2.0/address-groups", {"address_group": {"name": "empty"}}))["address_group"]
        assert other["addresses"] == []
        listed = (await api.ok("GET", "/v2.0/address-groups", sort_key="name", sort_dir="asc"))["address_groups"]
        assert [g["name"] for g in listed] == ["empty", "partners"]
        by_member = (await api.ok("GET", "/v2.0/address-groups", addresses="2001:db8::/32"))["address_groups"]
        assert [g["id"] for g in by_member] == [gid]
        changed = (await api.ok("PUT", f"/v2.0/address-groups/{gid}", {"address_group": {"name": "friends"}}))
        assert changed["address_group"]["name"] == "friends" and changed["address_group"]["revision_number"] == 1
        assert changed["address_group"]["addresses"] == made["addresses"]
        await api.ok("DELETE", f"/v2.0/address-groups/{gid}")
        assert (await api.do("GET", f"/v2.0/address-groups/{gid}")).status_code == 404
        bulk = (await api.ok("POST", "/v2.0/address-groups", {"address_groups": [
            {"name": "a", "addresses": ["10.0.0.0/8"]}, {"name": "b", "addresses": ["fd00::/8"]}]}))
        assert [g["addresses"] for g in bulk["address_groups"]] == [["10.0.0.0/8"], ["fd00::/8"]]
    run(go())


def test_add_and_remove_addresses():
    async def go():
        api = await _api()
        gid = (await api.ok("POST", "/v2.0/address-groups", {"address_group": {
            "addresses": ["192.0.2.0/24"]}}))["address_group"]["id"]
        added = (await api.ok("PUT", f"/v2.0/address-groups/{gid}/add_addresses",
                              {"addresses": ["203.0.113.0/24", "2001:db8::1"]}))["address_group"]
        assert added["addresses"] == ["192.0.2.0/24", "203.0.113.0/24", "2001:db8::1/128"]
        assert added["revision_number"] == 1
        removed = (await api.ok("PUT", f"/v2.0/address-groups/{gid}/remove_addresses",
                                {"addresses": ["192.0.2.0/24", "2001:db8::1/128"]}))["address_group"]
        assert removed["addresses"] == ["203.0.113.0/24"] and removed["revision_number"] == 2

        assert await api.refused("PUT", f"/v2.0/address-groups/{gid}/add_addresses",
                                 {"addresses": ["198.51.100.0/24", "203.0.113.0/24"]}) == (
            400, "AddressesAlreadyExist",
            f"Addresses ['203.0.113.0/24'] already exist in the address group {gid}.")
        assert await api.refused("PUT", f"/v2.0/address-groups/{gid}/remove_addresses",
                                 {"addresses": ["203.0.113.0/24", "192.0.2.0/24"]}) == (
            404, "AddressesNotFound", f"Addresses ['192.0.2.0/24'] not found in the address group {gid}.")
        status, kind, message = await api.refused("PUT", f"/v2.0/address-groups/{gid}/add_addresses",
                                                  {"addresses": ["10.0.0.1/8"]})
        assert (status, kind) == (400, "InvalidInput") and "addresses[0]: '10.0.0.1/8' has host bits set" in message
        assert (await api.refused("PUT", f"/v2.0/address-groups/{gid}/add_addresses", {"addresses": []}))[0] == 400
        assert (await api.ok("GET", f"/v2.0/address-groups/{gid}"))["address_group"]["addresses"] == [
            "203.0.113.0/24"]
    run(go())


def test_bad_requests_name_every_bad_address_and_write_nothing():
    async def go():
        api = await _api()
        r = await api.do("POST", "/v2.0/address-groups", {"address_group": {
            "addresses": ["192.0.2.0/24", "bogus", "10.0.0.1/8", "2001:db8::/129", "10.1.0.0/16", "x"]}})
        assert r.status_code == 400
        error = r.json()["NeutronError"]
        assert error["type"] == "InvalidInput"
        assert error["message"].startswith("Invalid input for operation: 4 bad entries: address_group.addresses[1]: "
                                           "'bogus' is not an IPv4 or IPv6 address or CIDR; ")
        assert error["message"].endswith("and 1 more (see detail)")
        assert error["detail"].splitlines() == [
            "address_group.addresses[1]: 'bogus' is not an IPv4 or IPv6 address or CIDR",
            "address_group.addresses[2]: '10.0.0.1/8' has host bits set (the network is 10.0.0.0/8)",
            "address_group.addresses[3]: '2001:db8::/129': an IPv6 prefix length is 0..128",
            "address_group.addresses[5]: 'x' is not an IPv4 or IPv6 address or CIDR"]
        assert api.store.revision == 0
        # a bulk create with one bad group makes none
        status, kind, message = await api.refused("POST", "/v2.0/address-groups", {"address_groups": [
            {"name": "fine", "addresses": ["10.0.0.0/8"]}, {"name": "bad", "addresses": ["10.0.0.0/33"]}]})
        assert (status, kind) == (400, "InvalidInput") and "address_groups[1].addresses[0]" in message
        for body in ({"address_group": {"addresses": "10.0.0.0/8"}},           # not a list
                     {"address_group": {"addresses": [7]}},                     # not text
                     {"address_group": {"addresses": ["1" * 100]}},             # absurdly long
                     {"address_group": {"colour": "red"}},                      # no such attribute
                     {"address_group": {"country": "Germany"}},                 # not a code
                     {"address_group": {"country": "XA", "addresses": ["10.0.0.0/8"]}}):
            assert (await api.refused("POST", "/v2.0/address-groups", body))[0] == 400, body
        gid = (await api.ok("POST", "/v2.0/address-groups", {"address_group": {"name": "g"}}))["address_group"]["id"]
        for body in ({"address_group": {"addresses": ["10.0.0.0/8"]}}, {"address_group": {"country": "XA"}},
                     {"address_group": {"name": None}}, {"address_group": {"id": "x"}}):
            status, kind, message = await api.refused("PUT", f"/v2.0/address-groups/{gid}", body)
            assert status == 400, body
        assert "add_addresses" in (await api.refused("PUT", f"/v2.0/address-groups/{gid}", {
            "address_group": {"addresses": []}}))[2]
    run(go())


def test_country_shorthand(monkeypatch, tmp_path):
    async def go():
        api = await _api()
        monkeypatch.delenv("KUMOFLOW_COUNTRIES", raising=False)
        status, kind, message = await api.refused("POST", "/v2.0/address-groups", {"address_group": {"country": "XA"}})
        assert status == 400 and "KUMOFLOW_COUNTRIES" in message
        monkeypatch.setenv("KUMOFLOW_COUNTRIES", str(COUNTRIES))
        xa = (await api.ok("POST", "/v2.0/address-groups", {"address_group": {
            "name": "xa", "country": "xa"}}))["address_group"]
        assert xa["country"] == "XA"
        assert xa["addresses"] == ["192.0.2.0/25", "192.0.2.128/25", "198.51.100.0/24", "198.51.100.77/32",
                                   "2001:db8::/33"]               # as the file gives them: aggregated when compiled
        assert [g["id"] for g in (await api.ok("GET", "/v2.0/address-groups", country="XA"))["address_groups"]] == [
            xa["id"]]
        # the group holds its addresses: the file may change or go, the group stays as made
        monkeypatch.setenv("KUMOFLOW_COUNTRIES", str(tmp_path))
        assert (await api.ok("GET", f"/v2.0/address-groups/{xa['id']}"))["address_group"]["addresses"] == xa[
            "addresses"]
        status, kind, message = await api.refused("POST", "/v2.0/address-groups", {"address_group": {"country": "XB"}})
        assert status == 400 and "no list XB.txt" in message
        (tmp_path / "XC.txt").write_text("192.0.2.0/24\n# fine\n192.0.2.1/24\nnope\n")
        status, kind, message = await api.refused("POST", "/v2.0/address-groups", {"address_group": {"country": "XC"}})
        assert status == 400 and f"{tmp_path / 'XC.txt'}:3: '192.0.2.1/24' has host bits set" in message
        assert f"{tmp_path / 'XC.txt'}:4: 'nope'" in message
    run(go())


def test_thousands_of_addresses():
    async def go():
        api = await _api()
        many = [f"10.{i >> 8}.{i & 255}.0/24" for i in range(5000)] + [f"2001:db8:{i:x}::/48" for i in range(5000)]
        made = (await api.ok("POST", "/v2.0/address-groups", {"address_group": {"addresses": many}}))["address_group"]
        assert made["addresses"] == [str(ipaddress.ip_network(a)) for a in many]      # canonical: 2001:db8::/48
        status, kind, message = await api.refused("POST", "/v2.0/address-groups", {"address_groups": [
            {"addresses": many * 10}, {"addresses": many * 10}, {"addresses": ["192.0.2.0/24"]}]})
        assert status == 400 and "more than 200000 addresses in one request" in message
        more = [f"172.16.{i}.0/24" for i in range(200)]
        added = (await api.ok("PUT", f"/v2.0/address-groups/{made['id']}/add_addresses", {"addresses": more}))
        assert len(added["address_group"]["addresses"]) == 10_200
    run(go())


def test_projects_are_kept_apart():
    async def go():
        api = await _api()
        blue, red = await api.token("blue"), await api.token("red")
        gid = (await api.ok("POST", "/v2.0/address-groups", {"address_group": {
            "name": "mine", "addresses": ["192.0.2.0/24"]}}, blue))["address_group"]["id"]
        assert (await api.ok("GET", "/v2.0/address-groups", headers=red))["address_groups"] == []
        assert [g["id"] for g in (await api.ok("GET", "/v2.0/address-groups", headers=blue))["address_groups"]] == [gid]
        for method, path, body in (("GET", f"/v2.0/address-groups/{gid}", None),
                                   ("PUT", f"/v2.0/address-groups/{gid}", {"address_group": {"name": "x"}}),
                                   ("PUT", f"/v2.0/address-groups/{gid}/add_addresses", {"addresses": ["10.0.0.0/8"]}),
                                   ("PUT", f"/v2.0/address-groups/{gid}/remove_addresses",
                                    {"addresses": ["192.0.2.0/24"]}),
                                   ("DELETE", f"/v2.0/address-groups/{gid}", None)):
            assert (await api.refused(method, path, body, red))[:2] == (404, "AddressGroupNotFound")
        assert (await api.refused("POST", "/v2.0/address-groups", {"address_group": {"project_id": "red"}},
                                  blue))[0] == 400
        assert (await api.ok("GET", f"/v2.0/address-groups/{gid}"))["address_group"]["project_id"] == "blue"  # admin
    run(go())


def test_a_group_in_use_cannot_be_deleted():
    """Whatever refers to a group by remote_address_group_id (the firewall's rules, to come) holds it."""
    async def go():
        api = await _api()
        gid = (await api.ok("POST", "/v2.0/address-groups", {"address_group": {"name": "g"}}))["address_group"]["id"]
        await api.store.commit([("create", "security_group_rule", {"security_group_id": "sg",
                                                                   "remote_address_group_id": gid}, "admin", "r1")])
        assert await api.refused("DELETE", f"/v2.0/address-groups/{gid}") == (
            409, "AddressGroupInUse", f"Address group {gid} is in use on one or more security group rules.")
    run(go())


def test_tags():
    """Tags, as on Neutron's other resources (kumoflow apply knows what it made by them)."""
    async def go():
        api = await _api()
        made = (await api.ok("POST", "/v2.0/address-groups", {"address_group": {
            "name": "a", "addresses": ["10.0.0.0/8"], "tags": ["x", "y"]}}))["address_group"]
        await api.ok("POST", "/v2.0/address-groups", {"address_group": {"name": "b"}})
        assert made["tags"] == ["x", "y"]
        assert [g["name"] for g in (await api.ok("GET", "/v2.0/address-groups", tags="x"))["address_groups"]] == ["a"]
        path = f"/v2.0/address-groups/{made['id']}"
        changed = (await api.ok("PUT", path, {"address_group": {"tags": ["z"]}}))["address_group"]
        assert (changed["tags"], changed["addresses"]) == (["z"], ["10.0.0.0/8"])
        changed = (await api.ok("PUT", f"{path}/add_addresses", {"addresses": ["fd00::/8"]}))["address_group"]
        assert changed["tags"] == ["z"]
        assert (await api.refused("PUT", path, {"address_group": {"tags": ["a,b"]}}))[0] == 400
    run(go())


def test_openapi_lists_the_resource():
    async def go():
        api = await _api()
        doc = (await api.http.get("/openapi.json")).json()
        assert {"/v2.0/address-groups", "/v2.0/address-groups/{address_group_id}",
                "/v2.0/address-groups/{address_group_id}/add_addresses",
                "/v2.0/address-groups/{address_group_id}/remove_addresses"} <= set(doc["paths"])
    run(go())


@pytest.fixture(autouse=True)
def _no_countries(monkeypatch):
    monkeypatch.delenv("KUMOFLOW_COUNTRIES", raising=False)
