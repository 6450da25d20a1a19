"""/v2.0/floatingips: an address of an external network, and the port it is
bound to (1:1 NAT, made into flows by the router app).

As in Neutron, a floating IP holds its address through a port of its own on
the external network (``device_owner`` ``network:floatingip``, ``device_id``
the floating IP): addresses handed to floating IPs, router gateways and
ports never clash, and deleting the floating IP frees its address. The
address is allocated from the network's IPv4 subnets (``subnet_id`` names
one) unless ``floating_ip_address`` gives it (admin only, as in Neutron's
policy).

Associating (``port_id``, and ``fixed_ip_address`` when the port has more
than one IPv4 address) needs a router with its external gateway on the
floating IP's network and an interface on the subnet of that fixed address
(Neutron's rule: 404 ExternalGatewayForFloatingIPNotFound otherwise); the
router found is ``router_id`` (the one whose interface holds the subnet's
gateway address first, as Neutron picks). A fixed address has at most one
floating IP (409 FloatingIPPortAlreadyAssociated). ``status`` is ACTIVE
while associated, DOWN otherwise.

What depends on an association is guarded where it would break: deleting
the port disassociates (as Neutron does, in the same commit); removing the
router interface the association goes through is 409
RouterInterfaceInUseByFloatingIP, clearing or moving the router's gateway
409 RouterExternalGatewayInUseByFloatingIp (routers.py); changing the
port's fixed_ips so that it loses the address is 400, deleting the
floating IP's own port through /v2.0/ports 409 L3PortInUse (ports.py).
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from kumoflow.store import Record

from ..server import ApiError, Caller
from .common import (DB, DESCRIPTION, INT, PROJECT_PATTERN, STR, TAG, Body, Who, admin_only, answer, bad, bumped,
                     common, conflict, errors, fields_of, find, given, list_parameters, new_id, no_content,
                     one_or_many, owns, pick, project_of, select, show_parameters, shown)
from .db import NeutronDB
from .ports import ROUTER_GATEWAY, ROUTER_INTERFACE, Batch, assign_ips, new_mac, service_port
from .subnets import allocate, parse_ip

router = APIRouter(tags=["floatingips"])

FLOATINGIP = "network:floatingip"


class FloatingIPCreate(Body):
    floating_network_id: str = Field(max_length=64, description="a router:external network")
    floating_ip_address: str | None = Field(None, max_length=64, description="admin only; default: allocated "
                                                                             "from the network's IPv4 subnets")
    subnet_id: str | None = Field(None, max_length=64, description="the external subnet to allocate from")
    port_id: str | None = Field(None, max_length=64, description="associate with this port")
    fixed_ip_address: str | None = Field(None, max_length=64, description="the port's IPv4 address to "
                                                                          "associate (needed when it has several)")
    description: DESCRIPTION = ""
    project_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    tenant_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    tags: list[TAG] = Field(default_factory=list, max_length=50)


class FloatingIPUpdate(Body):
    port_id: str | None = Field(None, max_length=64, description="a port to associate with; null: disassociate")
    fixed_ip_address: str | None = Field(None, max_length=64)
    description: DESCRIPTION | None = None
    tags: list[TAG] | None = Field(None, max_length=50)


class FloatingIPCreateRequest(Body):
    floatingip: FloatingIPCreate | None = None
    floatingips: list[FloatingIPCreate] | None = Field(None, min_length=1, max_length=1000)


class FloatingIPUpdateRequest(Body):
    floatingip: FloatingIPUpdate


class FloatingIPModel(BaseModel):
    """A floating IP (every attribute is there unless `fields` asked for others)."""
    id: str = None
    tenant_id: str = None
    project_id: str = None
    floating_ip_address: str = None
    floating_network_id: str = None
    router_id: str | None = None
    port_id: str | None = None
    fixed_ip_address: str | None = None
    status: Literal["ACTIVE", "DOWN"] = Field(None, description="ACTIVE while associated with a port")
    description: str = None
    tags: list[str] = None
    created_at: str = None
    updated_at: str = None
    revision_number: int = None


class FloatingIPResponse(BaseModel):
    floatingip: FloatingIPModel


class FloatingIPList(BaseModel):
    floatingips: list[FloatingIPModel]


ATTRS = {"id": STR, "tenant_id": STR, "project_id": STR, "floating_ip_address": STR, "floating_network_id": STR,
         "router_id": STR, "port_id": STR, "fixed_ip_address": STR, "status": STR, "description": STR,
         "revision_number": INT}
COMPUTED = frozenset({"status"})


def view(r: Record) -> dict:
    return {**common(r), **shown(r.body), "status": "ACTIVE" if r.body.get("port_id") else "DOWN"}


def _find(db: NeutronDB, caller: Caller, fip_id: str) -> Record:
    record = db.get("floatingip", fip_id)
    if record is None or not owns(caller, record):
        raise ApiError(404, "FloatingIPNotFound", f"Floating IP {fip_id} could not be found")
    return record


def _bad(message: str) -> ApiError:
    return bad(f"Bad floatingip request: {message}.", "BadRequest")


# --- what other resources ask of floating IPs ------------------------------------------------------


def of_port(db: NeutronDB, port_id: str) -> list[Record]:
    """The floating IPs associated with the port."""
    return db.referring("port", port_id, "floatingip")


def of_router(db: NeutronDB, router_id: str) -> list[Record]:
    """The floating IPs whose association goes through the router."""
    return db.referring("router", router_id, "floatingip")


def disassociated(db: NeutronDB, port_id: str) -> list[tuple]:
    """The store updates that disassociate the port's floating IPs (the port is being deleted)."""
    return [("update", "floatingip", fip.id, bumped({**fip.body, "port_id": None, "fixed_ip_address": None,
                                                     "router_id": None}))
            for fip in of_port(db, port_id)]


def check_port_fixed_ips(db: NeutronDB, port: Record, fixed_ips: list[dict]) -> None:
    """A port's new fixed_ips: it keeps the addresses its floating IPs are associated with (400, as in
    Neutron); a floating IP's own port keeps its address (409)."""
    if port.body.get("device_owner") == FLOATINGIP and db.get("floatingip", port.body.get("device_id", "")):
        if sorted(ip["ip_address"] for ip in fixed_ips) != sorted(ip["ip_address"] for ip in port.body["fixed_ips"]):
            raise conflict("L3PortInUse", f"Port {port.id} holds the address of floating IP "
                                          f"{port.body['device_id']}; its fixed_ips cannot change.")
    kept = {ip["ip_address"] for ip in fixed_ips}
    for fip in of_port(db, port.id):
        if fip.body.get("fixed_ip_address") not in kept:
            raise bad(f"Bad port request: Cannot update the fixed_ips of the port {port.id}, because its original "
                      f"fixed_ip {fip.body.get('fixed_ip_address')} has been associated to floating ip {fip.id}.",
                      "BadRequest")


# --- addresses and associations ---------------------------------------------------------------------


def _address(db: NeutronDB, batch: Batch, network: Record, address: str | None, subnet_id: str | None
             ) -> list[dict]:
    """The fixed_ips of the floating IP's port: one IPv4 address of the external network."""
    subnets = [s for s in db.referring("network", network.id, "subnet") if s.body["ip_version"] == 4]
    if not subnets:
        raise _bad(f"Network {network.id} does not contain any IPv4 subnet")
    if subnet_id is not None and subnet_id not in {s.id for s in subnets}:
        raise _bad(f"Subnet {subnet_id} is not an IPv4 subnet of network {network.id}")
    if address is not None:
        ip = parse_ip(address, "floating_ip_address")
        if ip.version != 4:
            raise _bad(f"Floating IP address {address} is not an IPv4 address")
        spec = [{"ip_address": str(ip), **({"subnet_id": subnet_id} if subnet_id else {})}]
        return assign_ips(db, batch, network, spec, FLOATINGIP)
    for subnet in subnets:
        if subnet_id is not None and subnet.id != subnet_id:
            continue
        chosen = allocate(db, subnet, batch.ips.get(subnet.id, set()))
        if chosen is not None:
            batch.ips.setdefault(subnet.id, set()).add(chosen)
            return [{"subnet_id": subnet.id, "ip_address": chosen}]
    raise conflict("IpAddressGenerationFailure", f"No more IP addresses available on network {network.id}"
                   + (f" (subnet {subnet_id})." if subnet_id else "."))


def _router_for(db: NeutronDB, port: Record, subnet: Record, network_id: str) -> str:
    """The router that connects the fixed address's subnet to the external network (Neutron's choice:
    the one whose interface holds the subnet's gateway address, else the first)."""
    first = None
    for iface in db.referring("subnet", subnet.id, "port"):
        if iface.body.get("device_owner") != ROUTER_INTERFACE:
            continue
        candidate = db.get("router", iface.body.get("device_id", ""))
        if candidate is None:
            continue
        gateway = candidate.body.get("external_gateway_info") or {}
        gateway_port = db.get("port", candidate.body.get("_gateway_port", ""))
        if gateway.get("network_id") != network_id or gateway_port is None or \
                gateway_port.body.get("device_owner") != ROUTER_GATEWAY:
            continue
        if any(ip["subnet_id"] == subnet.id and ip["ip_address"] == subnet.body.get("gateway_ip")
               for ip in iface.body["fixed_ips"]):
            return candidate.id
        first = first or candidate.id
    if first is None:
        raise ApiError(404, "ExternalGatewayForFloatingIPNotFound",
                       f"External network {network_id} is not reachable from subnet {subnet.id}.  Therefore, "
                       f"cannot associate Port {port.id} with a Floating IP.")
    return first


def _associate(db: NeutronDB, caller: Caller, fip_id: str, fip: dict, port_id: str, fixed_ip: str | None,
               claimed: dict[tuple[str, str], str]) -> dict:
    """port_id, fixed_ip_address and router_id of the association, checked. `claimed`: the
    (port, address) pairs this request associates so far (a bulk create), to the floating IP."""
    port = find(db, caller, "port", port_id, lambda r: owns(caller, r))
    owner = port.body.get("device_owner", "")
    if owner.startswith("network:"):
        raise _bad(f"Port {port.id} is unable to be assigned a floating IP (it is the network's own, device_owner "
                   f"{owner})")
    v4 = [ip for ip in port.body["fixed_ips"] if ipaddress.ip_address(ip["ip_address"]).version == 4]
    if fixed_ip is not None:
        address = parse_ip(fixed_ip, "fixed_ip_address")
        if address.version != 4:
            raise _bad(f"Cannot process floating IP association with {fixed_ip}, since that is not an IPv4 address")
        found = [ip for ip in v4 if ip["ip_address"] == str(address)]
        if not found:
            raise _bad(f"Port {port.id} does not have fixed ip {address}")
        chosen = found[0]
    elif not v4:
        raise _bad(f"Cannot add floating IP to port {port.id} that has no fixed IPv4 addresses")
    elif len(v4) > 1:
        raise _bad(f"Port {port.id} has multiple fixed IPv4 addresses.  Must provide a specific IPv4 address "
                   f"when assigning a floating IP")
    else:
        chosen = v4[0]
    subnet = db.get("subnet", chosen["subnet_id"])
    if subnet is None or not subnet.body.get("gateway_ip"):
        raise _bad(f"Cannot add floating IP to port on subnet {chosen['subnet_id']} which has no gateway_ip")
    router_id = _router_for(db, port, subnet, fip["floating_network_id"])
    key = (port.id, chosen["ip_address"])
    others = [f for f in of_port(db, port.id) if f.id != fip_id and f.body.get("fixed_ip_address") == key[1]]
    other = others[0].id if others else claimed.get(key)
    if other is not None and other != fip_id:
        raise conflict("FloatingIPPortAlreadyAssociated",
                       f"Cannot associate floating IP {fip.get('floating_ip_address')} ({fip_id}) with port "
                       f"{port.id} using fixed IP {key[1]}, as that fixed IP already has a floating IP "
                       f"({other}).")
    claimed[key] = fip_id
    return {"port_id": port.id, "fixed_ip_address": key[1], "router_id": router_id}


# --- routes -------------------------------------------------------------------------------------


@router.post("/v2.0/floatingips", status_code=201, summary="Create a floating IP (or several: bulk)",
             response_model=FloatingIPResponse | FloatingIPList, responses=errors(403, 404, 409))
async def create_floatingips(body: FloatingIPCreateRequest, db: DB, caller: Who) -> dict:
    items, bulk = one_or_many(body, "floatingip", "floatingips")
    async with db.lock:
        ops: list[tuple] = []
        ids = []
        batch = Batch()
        claimed: dict[tuple[str, str], str] = {}
        for item in items:
            admin_only(caller, item, ("floating_ip_address",), "create_floatingip")
            values = given(item)
            project = project_of(caller, values)
            network = find(db, caller, "network", item.floating_network_id)
            if not network.body.get("router:external"):
                raise _bad(f"Network {network.id} is not a valid external network")
            if item.fixed_ip_address is not None and item.port_id is None:
                raise _bad("fixed_ip_address cannot be specified without a port_id")
            fixed = _address(db, batch, network, item.floating_ip_address, item.subnet_id)
            fip_id, port_id = new_id(), new_id()
            new = {"floating_network_id": network.id, "floating_ip_address": fixed[0]["ip_address"],
                   "port_id": None, "fixed_ip_address": None, "router_id": None, "description": item.description,
                   "tags": list(item.tags), "_floating_port": port_id}
            if item.port_id is not None:
                new.update(_associate(db, caller, fip_id, new, item.port_id, item.fixed_ip_address, claimed))
            ops.append(("create", "port", service_port(network.id, fixed, new_mac(db, batch), fip_id, FLOATINGIP),
                        project, port_id))
            ops.append(("create", "floatingip", new, project, fip_id))
            ids.append(fip_id)
        await db.commit(ops)
    made = [view(db.get("floatingip", i)) for i in ids]
    return answer({"floatingips": made} if bulk else {"floatingip": made[0]}, 201)


@router.get("/v2.0/floatingips", summary="List floating IPs", response_model=FloatingIPList, responses=errors(),
            openapi_extra=list_parameters(ATTRS))
async def list_floatingips(request: Request, db: DB, caller: Who) -> dict:
    records = [r for r in db.all("floatingip") if owns(caller, r)]
    return answer({"floatingips": select(request, records, ATTRS, render=view, computed=COMPUTED)})


@router.get("/v2.0/floatingips/{floatingip_id}", summary="Show a floating IP", response_model=FloatingIPResponse,
            openapi_extra=show_parameters())
async def show_floatingip(floatingip_id: str, request: Request, db: DB, caller: Who) -> dict:
    item = view(_find(db, caller, floatingip_id))
    fields = fields_of(request)
    return answer({"floatingip": pick(item, fields) if fields else item})


@router.put("/v2.0/floatingips/{floatingip_id}", summary="Update a floating IP: associate (port_id), "
                                                         "disassociate (port_id null), description, tags",
            response_model=FloatingIPResponse, responses=errors(409))
async def update_floatingip(floatingip_id: str, body: FloatingIPUpdateRequest, db: DB, caller: Who) -> dict:
    async with db.lock:
        record = _find(db, caller, floatingip_id)
        values = given(body.floatingip)
        for name in ("description", "tags"):
            if name in values and values[name] is None:
                raise bad(f"{name} must not be null")
        if values.get("fixed_ip_address") is not None and not values.get("port_id"):
            raise _bad("fixed_ip_address cannot be specified without a port_id")
        new = dict(record.body)
        if "port_id" in values:
            if values["port_id"] is None:
                new.update(port_id=None, fixed_ip_address=None, router_id=None)
            else:
                new.update(_associate(db, caller, record.id, new, values["port_id"], values.get("fixed_ip_address"),
                                      {}))
        for name in ("description", "tags"):
            if name in values:
                new[name] = values[name]
        [change] = await db.commit([("update", "floatingip", record.id, bumped(new))])
    return answer({"floatingip": view(change.record)})


@router.delete("/v2.0/floatingips/{floatingip_id}", status_code=204,
               summary="Delete a floating IP (its address is freed)", response_class=Response)
async def delete_floatingip(floatingip_id: str, db: DB, caller: Who):
    async with db.lock:
        record = _find(db, caller, floatingip_id)
        ops: list[tuple] = []
        port = record.body.get("_floating_port")
        if port and db.get("port", port):
            ops.append(("delete", "port", port))
        ops.append(("delete", "floatingip", record.id))
        await db.commit(ops)
    return no_content()
