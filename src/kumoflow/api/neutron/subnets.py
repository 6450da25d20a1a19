"""/v2.0/subnets: address ranges of a network.

Defaults as Neutron fills them: ``ip_version`` from the CIDR, ``gateway_ip``
the first host address (``null`` given: no gateway), ``allocation_pools``
the other host addresses (IPv4: not the network and broadcast addresses),
``enable_dhcp`` true. Subnets of one network may not overlap; subnets of
different networks may (tenants choose their addresses).
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from kumoflow.store import Record

from ..server import Caller
from .common import (BOOL, DB, DESCRIPTION, INT, NAME, PROJECT_PATTERN, STR, TAG, Body, Who, answer, bad, bumped,
                     common, conflict, errors, fields_of, find, find_own, given, list_parameters, new_id, no_content,
                     not_found, one_or_many, owns, pick, project_of, select, show_parameters, shown, visible, forbid)
from .db import NeutronDB

router = APIRouter(tags=["subnets"])

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Pool(Body):
    start: str
    end: str


class HostRoute(Body):
    destination: str
    nexthop: str


class SubnetCreate(Body):
    network_id: str = Field(max_length=64)
    cidr: str = Field(max_length=64, description="e.g. 10.0.0.0/24 (no host bits)")
    ip_version: Literal[4, 6] | None = Field(None, description="default: the CIDR's")
    name: NAME = ""
    description: DESCRIPTION = ""
    project_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    tenant_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    gateway_ip: str | None = Field("", max_length=64, description="default: the first host address; null: none")
    allocation_pools: list[Pool] | None = Field(None, max_length=64,
                                                description="default: every other host address")
    enable_dhcp: bool = True
    dns_nameservers: list[str] = Field(default_factory=list, max_length=5)
    host_routes: list[HostRoute] = Field(default_factory=list, max_length=20)
    ipv6_ra_mode: Literal["slaac", "dhcpv6-stateful", "dhcpv6-stateless"] | None = None
    ipv6_address_mode: Literal["slaac", "dhcpv6-stateful", "dhcpv6-stateless"] | None = None
    tags: list[TAG] = Field(default_factory=list, max_length=50)


class SubnetUpdate(Body):
    name: NAME | None = None
    description: DESCRIPTION | None = None
    gateway_ip: str | None = Field("", max_length=64)
    allocation_pools: list[Pool] | None = Field(None, max_length=64)
    enable_dhcp: bool | None = None
    dns_nameservers: list[str] | None = Field(None, max_length=5)
    host_routes: list[HostRoute] | None = Field(None, max_length=20)
    tags: list[TAG] | None = Field(None, max_length=50)


class SubnetCreateRequest(Body):
    subnet: SubnetCreate | None = None
    subnets: list[SubnetCreate] | None = Field(None, min_length=1, max_length=1000)


class SubnetUpdateRequest(Body):
    subnet: SubnetUpdate


class PoolOut(BaseModel):
    start: str
    end: str


class RouteOut(BaseModel):
    destination: str
    nexthop: str


class Subnet(BaseModel):
    """A subnet (every attribute is there unless `fields` asked for others)."""
    id: str = None
    name: str = None
    description: str = None
    tenant_id: str = None
    project_id: str = None
    network_id: str = None
    ip_version: Literal[4, 6] = None
    cidr: str = None
    gateway_ip: str | None = None
    allocation_pools: list[PoolOut] = None
    enable_dhcp: bool = None
    dns_nameservers: list[str] = None
    host_routes: list[RouteOut] = None
    ipv6_ra_mode: str | None = None
    ipv6_address_mode: str | None = None
    subnetpool_id: str | None = None
    segment_id: str | None = None
    service_types: list[str] = None
    tags: list[str] = None
    created_at: str = None
    updated_at: str = None
    revision_number: int = None


class SubnetResponse(BaseModel):
    subnet: Subnet


class SubnetList(BaseModel):
    subnets: list[Subnet]


ATTRS = {"id": STR, "name": STR, "description": STR, "tenant_id": STR, "project_id": STR, "network_id": STR,
         "ip_version": INT, "cidr": STR, "gateway_ip": STR, "enable_dhcp": BOOL, "ipv6_ra_mode": STR,
         "ipv6_address_mode": STR, "subnetpool_id": STR, "segment_id": STR, "revision_number": INT}


def view(r: Record) -> dict:
    return {**common(r), **shown(r.body)}


def can_see(db: NeutronDB, caller: Caller, r: Record) -> bool:
    """Own subnets, and those of a network the caller sees (shared, external)."""
    if owns(caller, r):
        return True
    network = db.get("network", r.body["network_id"])
    return network is not None and visible(caller, network)


# --- addresses ----------------------------------------------------------------------------------


def parse_ip(text: str, field: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise bad(f"'{text}' is not a valid IP address ({field})") from None


def parse_cidr(text: str, field: str = "cidr") -> IPNetwork:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise bad(f"'{text}' is not a valid IP subnet ({field})") from None
        raise bad(f"'{text}' isn't a recognized IP subnet cidr, '{loose}' is recommended ({field})") from None


def host_range(net: IPNetwork) -> tuple[int, int] | None:
    """The first and last host address (as ints), or None when there is none."""
    first, last = int(net.network_address), int(net.broadcast_address)
    if net.version == 4:
        if net.prefixlen >= 31:
            return None
        return first + 1, last - 1
    if net.prefixlen >= 127:
        return None
    return first + 1, last


def default_pools(net: IPNetwork, gateway: IPAddress | None) -> list[dict]:
    hosts = host_range(net)
    if hosts is None:
        return []
    first, last = hosts
    ranges = [(first, last)]
    if gateway is not None and first <= int(gateway) <= last:
        g = int(gateway)
        ranges = [(a, b) for a, b in ((first, g - 1), (g + 1, last)) if a <= b]
    make = type(net.network_address)
    return [{"start": str(make(a)), "end": str(make(b))} for a, b in ranges]


def check_pools(net: IPNetwork, pools: list[dict]) -> list[tuple[int, int]]:
    hosts = host_range(net)
    spans = []
    for pool in pools:
        start, end = parse_ip(pool["start"], "allocation_pools"), parse_ip(pool["end"], "allocation_pools")
        if start.version != net.version or end.version != net.version or start > end:
            raise bad(f"The allocation pool {start}-{end} spans beyond the subnet cidr {net} or is not a range.",
                      "InvalidAllocationPool")
        if hosts is None or int(start) < hosts[0] or int(end) > hosts[1]:
            raise bad(f"The allocation pool {start}-{end} spans beyond the host addresses of subnet cidr {net}.",
                      "OutOfBoundsAllocationPool")
        spans.append((int(start), int(end)))
    spans.sort()
    for (a1, b1), (a2, b2) in zip(spans, spans[1:]):
        if a2 <= b1:
            raise conflict("OverlappingAllocationPools", f"Found overlapping allocation pools in subnet {net}.")
    return spans


def in_pools(pools: list[dict], address: int) -> bool:
    return any(int(ipaddress.ip_address(p["start"])) <= address <= int(ipaddress.ip_address(p["end"]))
               for p in pools)


def _gateway(net: IPNetwork, text: str | None) -> IPAddress | None:
    if text is None:
        return None
    gateway = parse_ip(text, "gateway_ip")
    if gateway.version != net.version or gateway not in net:
        raise bad(f"gateway_ip {gateway} is not in the subnet {net}")
    hosts = host_range(net)
    if hosts is None or not hosts[0] <= int(gateway) <= hosts[1]:
        raise bad(f"gateway_ip {gateway} is not a host address of {net}")
    return gateway


def _nameservers(values: list[str]) -> list[str]:
    out = [str(parse_ip(v, "dns_nameservers")) for v in values]
    if len(set(out)) != len(out):
        raise bad("Duplicate nameserver in dns_nameservers")
    return out


def _routes(net: IPNetwork, routes: list[dict]) -> list[dict]:
    out = []
    for route in routes:
        destination = parse_cidr(route["destination"], "host_routes.destination")
        nexthop = parse_ip(route["nexthop"], "host_routes.nexthop")
        if destination.version != net.version or nexthop.version != net.version:
            raise bad("host_routes: the destination and nexthop must be of the subnet's IP version")
        out.append({"destination": str(destination), "nexthop": str(nexthop)})
    return out


def allocate(db: NeutronDB, subnet: Record, taken: set[str]) -> str | None:
    """A free address of the subnet's pools (not the gateway), or None when they are full.
    Starts after the last one handed out, so that a busy subnet is not scanned from its start."""
    used = db.ips.get(subnet.id, {})
    gateway = subnet.body.get("gateway_ip")
    make = ipaddress.ip_address
    hints = db.alloc_hints
    cached = db.alloc_spans.get(subnet.id)
    if cached is None or cached[0] != subnet.revision:
        cached = db.alloc_spans[subnet.id] = (subnet.revision, sorted(
            (int(make(p["start"])), int(make(p["end"]))) for p in subnet.body["allocation_pools"]))
    spans = cached[1]
    if not spans:
        return None
    total = sum(b - a + 1 for a, b in spans)
    hint = hints.get(subnet.id, spans[0][0])
    # walk the pools from the hint, wrapping once; give up after 2^20 candidates (a huge, full pool)
    order = [(max(a, hint), b) for a, b in spans if b >= hint] + [(a, min(b, hint - 1)) for a, b in spans if a < hint]
    tried = 0
    for a, b in order:
        n = a
        while n <= b:
            text = str(make(n))
            if text not in used and text not in taken and text != gateway:
                hints[subnet.id] = n + 1
                return text
            n += 1
            tried += 1
            if tried > min(total, 1 << 20):
                return None
    return None


# --- routes -------------------------------------------------------------------------------------


def _new_subnet(db: NeutronDB, caller: Caller, item: SubnetCreate, batch: list[dict]) -> tuple[dict, str]:
    values = given(item)
    project = project_of(caller, values)
    network = find(db, caller, "network", item.network_id)
    if not caller.admin and network.project_id != caller.project_id:
        raise forbid("create_subnet")
    net = parse_cidr(item.cidr)
    if item.ip_version is not None and item.ip_version != net.version:
        raise bad(f"ip_version {item.ip_version} does not match the cidr {net}")
    if net.version == 4 and (item.ipv6_ra_mode or item.ipv6_address_mode):
        raise bad("ipv6_ra_mode and ipv6_address_mode are for IPv6 subnets only")
    others = [s.body for s in db.referring("network", network.id, "subnet")] + [
        b for b in batch if b["network_id"] == network.id]
    for other in others:
        if parse_cidr(other["cidr"]).overlaps(net):
            raise bad(f"Requested subnet with cidr: {net} for network: {network.id} overlaps with another subnet")
    if "gateway_ip" not in item.model_fields_set or item.gateway_ip == "":
        hosts = host_range(net)
        gateway = type(net.network_address)(hosts[0]) if hosts else None
    else:
        gateway = _gateway(net, item.gateway_ip)
    if item.allocation_pools is None:
        pools = default_pools(net, gateway)
    else:
        pools = [p.model_dump() for p in item.allocation_pools]
        check_pools(net, pools)
        pools = [{"start": str(ipaddress.ip_address(p["start"])), "end": str(ipaddress.ip_address(p["end"]))}
                 for p in pools]
        if gateway is not None and in_pools(pools, int(gateway)):
            raise conflict("GatewayConflictWithAllocationPools",
                           f"Gateway ip {gateway} conflicts with allocation pool {pools}.")
    body = {"network_id": network.id, "cidr": str(net), "ip_version": net.version, "name": item.name,
            "description": item.description, "gateway_ip": None if gateway is None else str(gateway),
            "allocation_pools": pools, "enable_dhcp": item.enable_dhcp,
            "dns_nameservers": _nameservers(item.dns_nameservers),
            "host_routes": _routes(net, [r.model_dump() for r in item.host_routes]),
            "ipv6_ra_mode": item.ipv6_ra_mode, "ipv6_address_mode": item.ipv6_address_mode,
            "subnetpool_id": None, "segment_id": None, "service_types": [], "tags": list(item.tags)}
    return body, project


@router.post("/v2.0/subnets", status_code=201, summary="Create a subnet (or several: bulk)",
             response_model=SubnetResponse | SubnetList, responses=errors(403, 404, 409))
async def create_subnets(body: SubnetCreateRequest, db: DB, caller: Who) -> dict:
    items, bulk = one_or_many(body, "subnet", "subnets")
    async with db.lock:
        ops, batch = [], []
        for item in items:
            new, project = _new_subnet(db, caller, item, batch)
            batch.append(new)
            ops.append(("create", "subnet", new, project, new_id()))
        changes = await db.commit(ops)
    made = [view(c.record) for c in changes]
    return answer({"subnets": made} if bulk else {"subnet": made[0]}, 201)


@router.get("/v2.0/subnets", summary="List subnets", response_model=SubnetList, responses=errors(),
            openapi_extra=list_parameters(ATTRS))
async def list_subnets(request: Request, db: DB, caller: Who) -> dict:
    records = [r for r in db.all("subnet") if can_see(db, caller, r)]
    return answer({"subnets": select(request, records, ATTRS, render=view)})


@router.get("/v2.0/subnets/{subnet_id}", summary="Show a subnet", response_model=SubnetResponse,
            openapi_extra=show_parameters())
async def show_subnet(subnet_id: str, request: Request, db: DB, caller: Who) -> dict:
    item = view(find(db, caller, "subnet", subnet_id, lambda r: can_see(db, caller, r)))
    fields = fields_of(request)
    return answer({"subnet": pick(item, fields) if fields else item})


@router.put("/v2.0/subnets/{subnet_id}", summary="Update a subnet", response_model=SubnetResponse,
            responses=errors(403, 409))
async def update_subnet(subnet_id: str, body: SubnetUpdateRequest, db: DB, caller: Who) -> dict:
    async with db.lock:
        record = find_own(db, caller, "subnet", subnet_id, "update", lambda r: can_see(db, caller, r))
        item = body.subnet
        values = given(item)
        for name in ("name", "description", "enable_dhcp", "dns_nameservers", "host_routes", "tags",
                     "allocation_pools"):
            if name in values and values[name] is None:
                raise bad(f"{name} must not be null")
        new = dict(record.body)
        net = parse_cidr(new["cidr"])
        for name in ("name", "description", "enable_dhcp", "tags"):
            if name in values:
                new[name] = values[name]
        if "dns_nameservers" in values:
            new["dns_nameservers"] = _nameservers(values["dns_nameservers"])
        if "host_routes" in values:
            new["host_routes"] = _routes(net, values["host_routes"])
        if "gateway_ip" in values and values["gateway_ip"] != "":
            gateway = _gateway(net, values["gateway_ip"])
            new["gateway_ip"] = None if gateway is None else str(gateway)
            if new["gateway_ip"] != record.body.get("gateway_ip") and any(
                    p.body.get("device_owner") == "network:router_interface"
                    for p in db.referring("subnet", subnet_id, "port")):
                raise conflict("GatewayIpInUse", f"The gateway of subnet {subnet_id} is a router's interface; "
                                                 f"remove the interface first.")
            if new["gateway_ip"] is not None and db.ips.get(subnet_id, {}).get(new["gateway_ip"]):
                raise conflict("GatewayIpInUse", f"Gateway ip {new['gateway_ip']} is in use by a port.")
        if "allocation_pools" in values:
            check_pools(net, values["allocation_pools"])
            new["allocation_pools"] = [{"start": str(ipaddress.ip_address(p["start"])),
                                        "end": str(ipaddress.ip_address(p["end"]))}
                                       for p in values["allocation_pools"]]
        if new["gateway_ip"] is not None and in_pools(new["allocation_pools"], int(ipaddress.ip_address(
                new["gateway_ip"]))):
            raise conflict("GatewayConflictWithAllocationPools",
                           f"Gateway ip {new['gateway_ip']} conflicts with allocation pool "
                           f"{new['allocation_pools']}.")
        [change] = await db.commit([("update", "subnet", subnet_id, bumped(new))])
    return answer({"subnet": view(change.record)})


@router.delete("/v2.0/subnets/{subnet_id}", status_code=204, summary="Delete a subnet", response_class=Response,
               responses=errors(403, 409))
async def delete_subnet(subnet_id: str, db: DB, caller: Who):
    async with db.lock:
        find_own(db, caller, "subnet", subnet_id, "delete", lambda r: can_see(db, caller, r))
        if db.referring("subnet", subnet_id, "port"):
            raise conflict("SubnetInUse", f"Unable to complete operation on subnet {subnet_id}: One or more ports "
                                          f"have an IP allocation from this subnet.")
        members = db.referring("subnet", subnet_id, "member")
        if members:
            raise conflict("SubnetInUse", f"Unable to complete operation on subnet {subnet_id}: load balancer "
                                          f"member {members[0].id} (pool {members[0].body['pool_id']}) is on it.")
        await db.commit([("delete", "subnet", subnet_id)])
    return no_content()


__all__ = ["router", "allocate", "parse_ip", "parse_cidr", "not_found"]
