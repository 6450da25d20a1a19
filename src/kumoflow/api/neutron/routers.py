"""/v2.0/routers, with add_router_interface / remove_router_interface.

An interface on a subnet is a port of the router (``device_owner``
``network:router_interface``, ``device_id`` the router) holding the subnet's
gateway address. ``external_gateway_info`` names a ``router:external``
network; the router gets a port there (``network:router_gateway``) with an
address from it. ``routes`` (extra routes) need a next hop inside one of the
router's subnets (its interfaces' and its gateway's), not one of its own
addresses.

Checked as Neutron checks them, each refusal leaving everything as it was:
an interface on a subnet that overlaps one the router has (gateway
included) is 400; a subnet without a gateway address cannot be added by
subnet_id (400); a route whose destination is not a CIDR or whose next hop
is not connected is 400 InvalidRoutes; a gateway network that does not
exist is 404 NetworkNotFound, one that is not ``router:external`` 400;
removing an interface a route's next hop needs is 409
RouterInterfaceInUseByRoute, one a floating IP goes through 409
RouterInterfaceInUseByFloatingIP; clearing or moving a gateway that
floating IPs need is 409 RouterExternalGatewayInUseByFloatingIp (and one
a route's next hop needs, 409 RouterInterfaceInUseByRoute).
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from kumoflow.store import Record

from ..server import ApiError, Caller
from .common import (BOOL, DB, DESCRIPTION, INT, NAME, PROJECT_PATTERN, STR, TAG, Body, Who, answer, bad, bumped,
                     common, conflict, errors, fields_of, find, given, list_parameters, new_id, no_content,
                     one_or_many, owns, pick, project_of, select, show_parameters, shown)
from .db import NeutronDB
from .floatingips import of_router
from .fwaas import without_port
from .ports import ROUTER_GATEWAY, ROUTER_INTERFACE, Batch, FixedIP, assign_ips, new_mac
from .subnets import parse_cidr, parse_ip

router = APIRouter(tags=["routers"])


class GatewayInfo(Body):
    network_id: str = Field(max_length=64, description="a router:external network")
    enable_snat: bool = True
    external_fixed_ips: list[FixedIP] | None = Field(None, max_length=8)


class Route(Body):
    destination: str = Field(max_length=64)
    nexthop: str = Field(max_length=64)


class RouterCreate(Body):
    name: NAME = ""
    description: DESCRIPTION = ""
    project_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    tenant_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    admin_state_up: bool = True
    external_gateway_info: GatewayInfo | None = None
    tags: list[TAG] = Field(default_factory=list, max_length=50)


class RouterUpdate(Body):
    name: NAME | None = None
    description: DESCRIPTION | None = None
    admin_state_up: bool | None = None
    external_gateway_info: GatewayInfo | None = None
    routes: list[Route] | None = Field(None, max_length=128)
    tags: list[TAG] | None = Field(None, max_length=50)


class RouterCreateRequest(Body):
    router: RouterCreate | None = None
    routers: list[RouterCreate] | None = Field(None, min_length=1, max_length=1000)


class RouterUpdateRequest(Body):
    router: RouterUpdate


class InterfaceRequest(Body):
    subnet_id: str | None = Field(None, max_length=64)
    port_id: str | None = Field(None, max_length=64)


class FixedIPOut(BaseModel):
    subnet_id: str
    ip_address: str


class GatewayOut(BaseModel):
    network_id: str
    enable_snat: bool
    external_fixed_ips: list[FixedIPOut]


class RouteOut(BaseModel):
    destination: str
    nexthop: str


class RouterModel(BaseModel):
    """A router (every attribute is there unless `fields` asked for others)."""
    id: str = None
    name: str = None
    description: str = None
    tenant_id: str = None
    project_id: str = None
    admin_state_up: bool = None
    status: Literal["ACTIVE", "DOWN"] = None
    external_gateway_info: GatewayOut | None = None
    routes: list[RouteOut] = None
    distributed: bool = None
    ha: bool = None
    tags: list[str] = None
    created_at: str = None
    updated_at: str = None
    revision_number: int = None


class RouterResponse(BaseModel):
    router: RouterModel


class RouterList(BaseModel):
    routers: list[RouterModel]


class Interface(BaseModel):
    id: str = Field(description="the router")
    tenant_id: str
    project_id: str
    port_id: str
    subnet_id: str
    subnet_ids: list[str]
    network_id: str


ATTRS = {"id": STR, "name": STR, "description": STR, "tenant_id": STR, "project_id": STR, "admin_state_up": BOOL,
         "status": STR, "distributed": BOOL, "ha": BOOL, "revision_number": INT}


def interfaces(db: NeutronDB, router_id: str) -> list[Record]:
    return [p for p in db.referring("router", router_id, "port")
            if p.body.get("device_owner") == ROUTER_INTERFACE and p.body.get("device_id") == router_id]


def view(db: NeutronDB, r: Record) -> dict:
    body = shown(r.body)
    gateway = r.body.get("external_gateway_info")
    if gateway:
        port = db.get("port", r.body.get("_gateway_port", ""))
        body["external_gateway_info"] = {**gateway, "external_fixed_ips": port.body["fixed_ips"] if port else []}
    return {**common(r), **body, "status": "ACTIVE" if r.body.get("admin_state_up", True) else "DOWN"}


def _gateway_ops(db: NeutronDB, caller: Caller, router_id: str, project: str, info: dict | None,
                 ops: list[tuple], batch: Batch) -> tuple[str | None, list[dict]]:
    """The gateway port's creation appended to `ops`: its id and fixed_ips ((None, []) without a
    gateway). Its subnets must not overlap the router's interfaces."""
    if not info:
        return None, []
    network = find(db, caller, "network", info["network_id"])
    if not network.body.get("router:external"):
        raise bad(f"Bad router request: Network {network.id} is not an external network", "BadRequest")
    spec = info.get("external_fixed_ips")
    fixed = assign_ips(db, batch, network, spec, ROUTER_GATEWAY)
    for ip in fixed:
        _check_overlap(db, router_id, db.get("subnet", ip["subnet_id"]), with_gateway=False)
    port_id = new_id()
    ops.append(("create", "port", {
        "network_id": network.id, "name": "", "description": "", "admin_state_up": True,
        "mac_address": new_mac(db, batch), "fixed_ips": fixed, "device_id": router_id,
        "device_owner": ROUTER_GATEWAY, "security_groups": [], "port_security_enabled": False,
        "allowed_address_pairs": [], "binding:host_id": "", "binding:profile": {}, "binding:vnic_type": "normal",
        "qos_policy_id": None, "tags": []}, project, port_id))
    return port_id, fixed


@router.post("/v2.0/routers", status_code=201, summary="Create a router (or several: bulk)",
             response_model=RouterResponse | RouterList, responses=errors(404, 409))
async def create_routers(body: RouterCreateRequest, db: DB, caller: Who) -> dict:
    items, bulk = one_or_many(body, "router", "routers")
    async with db.lock:
        ops: list[tuple] = []
        ids = []
        batch = Batch()                     # addresses and MACs handed out by this request
        for item in items:
            values = given(item)
            project = project_of(caller, values)
            router_id = new_id()
            info = values.get("external_gateway_info")
            gateway_ops: list[tuple] = []
            gateway_port, _ = _gateway_ops(db, caller, router_id, project, info, gateway_ops, batch)
            new = {"name": item.name, "description": item.description, "admin_state_up": item.admin_state_up,
                   "external_gateway_info": ({"network_id": info["network_id"],
                                              "enable_snat": info.get("enable_snat", True)} if info else None),
                   "routes": [], "distributed": False, "ha": False, "tags": list(item.tags)}
            if gateway_port:
                new["_gateway_port"] = gateway_port
            ops += [("create", "router", new, project, router_id), *gateway_ops]
            ids.append(router_id)
        await db.commit(ops)
    made = [view(db, db.get("router", i)) for i in ids]
    return answer({"routers": made} if bulk else {"router": made[0]}, 201)


@router.get("/v2.0/routers", summary="List routers", response_model=RouterList, responses=errors(),
            openapi_extra=list_parameters(ATTRS))
async def list_routers(request: Request, db: DB, caller: Who) -> dict:
    items = [view(db, r) for r in db.all("router") if owns(caller, r)]
    return answer({"routers": select(request, items, ATTRS)})


@router.get("/v2.0/routers/{router_id}", summary="Show a router", response_model=RouterResponse,
            openapi_extra=show_parameters())
async def show_router(router_id: str, request: Request, db: DB, caller: Who) -> dict:
    item = view(db, find(db, caller, "router", router_id, lambda r: owns(caller, r)))
    fields = fields_of(request)
    return answer({"router": pick(item, fields) if fields else item})


def _gateway_fixed(db: NeutronDB, record: Record) -> list[dict]:
    port = db.get("port", record.body.get("_gateway_port", ""))
    return port.body["fixed_ips"] if port is not None else []


def _connected(db: NeutronDB, router_id: str, gateway_fixed: list[dict], without_subnets: tuple[str, ...] = ()
               ) -> list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network, str]]:
    """(subnet id, its CIDR, the router's address there) of each interface and of the gateway
    (`gateway_fixed`: its port's fixed_ips), but `without_subnets`: what a next hop may be in."""
    out = []
    fixed = [ip for port in interfaces(db, router_id) for ip in port.body["fixed_ips"]] + list(gateway_fixed)
    for ip in fixed:
        subnet = db.get("subnet", ip["subnet_id"])
        if subnet is not None and subnet.id not in without_subnets:
            out.append((subnet.id, ipaddress.ip_network(subnet.body["cidr"]), ip["ip_address"]))
    return out


def _check_routes(connected: list[tuple], routes: list[dict]) -> list[dict]:
    """The extra routes, checked (400 InvalidRoutes, or InvalidInput for a malformed one) and
    normalised: a destination CIDR, a next hop of its IP version in a connected subnet that is not
    one of the router's own addresses, no route twice."""
    out = []
    for route in routes:
        destination = parse_cidr(route["destination"], "routes.destination")
        if "/" not in route["destination"]:        # an address alone, as Neutron's validator says
            raise bad(f"'{route['destination']}' isn't a recognized IP subnet cidr, '{destination}' is recommended "
                      f"(routes.destination)")
        nexthop = parse_ip(route["nexthop"], "routes.nexthop")
        text = {"destination": str(destination), "nexthop": str(nexthop)}
        if destination.version != nexthop.version:
            raise bad(f"Invalid format for routes: {text}, the nexthop and destination are of different IP "
                      f"versions", "InvalidRoutes")
        if not any(nexthop in net for _, net, _ in connected):
            raise bad(f"Invalid format for routes: {text}, the nexthop is not connected with router (it lies in "
                      f"none of the router's subnets)", "InvalidRoutes")
        if any(str(nexthop) == own for _, _, own in connected):
            raise bad(f"Invalid format for routes: {text}, the nexthop is used by router", "InvalidRoutes")
        if text in out:
            raise bad(f"Duplicate hostroute '{text}' (routes)")
        out.append(text)
    return out


def _in_use_by_route(router_id: str, what: str) -> ApiError:
    return conflict("RouterInterfaceInUseByRoute", f"Router interface for {what} on router {router_id} cannot be "
                                                   f"deleted, as it is required by one or more routes.")


@router.put("/v2.0/routers/{router_id}", summary="Update a router", response_model=RouterResponse,
            responses=errors(404, 409))
async def update_router(router_id: str, body: RouterUpdateRequest, db: DB, caller: Who) -> dict:
    async with db.lock:
        record = find(db, caller, "router", router_id, lambda r: owns(caller, r))
        values = given(body.router)
        for name in ("name", "description", "admin_state_up", "routes", "tags"):
            if name in values and values[name] is None:
                raise bad(f"{name} must not be null")
        new = dict(record.body)
        ops: list[tuple] = []
        for name in ("name", "description", "admin_state_up", "tags"):
            if name in values:
                new[name] = values[name]
        gateway_fixed = _gateway_fixed(db, record)
        if "external_gateway_info" in values:
            info = values["external_gateway_info"]
            old = record.body.get("external_gateway_info") or {}
            if info and old.get("network_id") == info["network_id"] and info.get("external_fixed_ips") is None \
                    and db.get("port", record.body.get("_gateway_port", "")):
                # the same network: the port and its address stay; only enable_snat may change
                new["external_gateway_info"] = {"network_id": info["network_id"],
                                                "enable_snat": info.get("enable_snat", True)}
            else:
                if old.get("network_id") and (not info or info["network_id"] != old["network_id"]) and any(
                        f.body.get("floating_network_id") == old["network_id"] for f in of_router(db, router_id)):
                    raise conflict("RouterExternalGatewayInUseByFloatingIp",
                                   f"Gateway cannot be updated for router {router_id}, since a gateway to external "
                                   f"network {old['network_id']} is required by one or more floating IPs.")
                old_port = new.pop("_gateway_port", None)
                if old_port and db.get("port", old_port):
                    ops.append(("delete", "port", old_port))
                new["external_gateway_info"] = None
                port_id, gateway_fixed = _gateway_ops(db, caller, router_id, record.project_id, info, ops, Batch())
                if port_id:
                    new["_gateway_port"] = port_id
                    new["external_gateway_info"] = {"network_id": info["network_id"],
                                                    "enable_snat": info.get("enable_snat", True)}
                if "routes" not in values:
                    try:
                        _check_routes(_connected(db, router_id, gateway_fixed), new.get("routes", []))
                    except ApiError:
                        raise _in_use_by_route(router_id, f"the external gateway on network "
                                                          f"{old.get('network_id')}") from None
        if "routes" in values:
            new["routes"] = _check_routes(_connected(db, router_id, gateway_fixed), values["routes"])
        ops.append(("update", "router", router_id, bumped(new)))
        await db.commit(ops)
    return answer({"router": view(db, db.get("router", router_id))})


@router.delete("/v2.0/routers/{router_id}", status_code=204, summary="Delete a router (and its gateway port)",
               response_class=Response, responses=errors(409))
async def delete_router(router_id: str, db: DB, caller: Who):
    async with db.lock:
        record = find(db, caller, "router", router_id, lambda r: owns(caller, r))
        if interfaces(db, router_id):
            raise conflict("RouterInUse", f"Router {router_id} still has ports")
        ops: list[tuple] = []
        gateway = record.body.get("_gateway_port")
        if gateway and db.get("port", gateway):
            ops.append(("delete", "port", gateway))
        ops.append(("delete", "router", router_id))
        await db.commit(ops)
    return no_content()


def _interface(record: Record, port: Record, subnet_id: str) -> dict:
    return {"id": record.id, "tenant_id": record.project_id, "project_id": record.project_id, "port_id": port.id,
            "subnet_id": subnet_id, "subnet_ids": [ip["subnet_id"] for ip in port.body["fixed_ips"]],
            "network_id": port.body["network_id"]}


def _attached_subnets(db: NeutronDB, router_id: str, with_gateway: bool = True) -> list[str]:
    """The subnets of the router's interfaces (and of its gateway)."""
    fixed = [ip for p in interfaces(db, router_id) for ip in p.body["fixed_ips"]]
    if with_gateway:
        record = db.get("router", router_id)
        fixed += _gateway_fixed(db, record) if record is not None else []
    return list(dict.fromkeys(ip["subnet_id"] for ip in fixed))


def _check_overlap(db: NeutronDB, router_id: str, subnet: Record | None, with_gateway: bool = True) -> None:
    """400 unless `subnet` is new to the router and overlaps none of its subnets (Neutron's check)."""
    if subnet is None:
        return
    attached = _attached_subnets(db, router_id, with_gateway)
    if subnet.id in attached:
        raise bad(f"Bad router request: Router already has a port on subnet {subnet.id}", "BadRequest")
    net = ipaddress.ip_network(subnet.body["cidr"])
    for other_id in attached:
        other = db.get("subnet", other_id)
        if other is not None and ipaddress.ip_network(other.body["cidr"]).overlaps(net):
            raise bad(f"Bad router request: Cidr {net} of subnet {subnet.id} overlaps with cidr {other.body['cidr']} "
                      f"of subnet {other.id}", "BadRequest")


def _check_attachable(db: NeutronDB, router_id: str, subnet: Record) -> None:
    _check_overlap(db, router_id, subnet)


@router.put("/v2.0/routers/{router_id}/add_router_interface", summary="Add an interface on a subnet (or a port)",
            response_model=Interface, responses=errors(409))
async def add_router_interface(router_id: str, body: InterfaceRequest, db: DB, caller: Who) -> dict:
    if (body.subnet_id is None) == (body.port_id is None):
        raise bad("Either subnet_id or port_id must be specified", "BadRequest")
    async with db.lock:
        record = find(db, caller, "router", router_id, lambda r: owns(caller, r))
        if body.port_id is not None:
            port = find(db, caller, "port", body.port_id, lambda r: owns(caller, r))
            if port.body.get("device_id") or port.body.get("device_owner"):
                raise conflict("PortInUse", f"Unable to complete operation on port {port.id} for network "
                                            f"{port.body['network_id']}. Port already has an attached device "
                                            f"{port.body.get('device_id') or port.body.get('device_owner')}.")
            if not port.body["fixed_ips"]:
                raise bad("Router port must have at least one fixed IP", "BadRequest")
            for ip in port.body["fixed_ips"]:
                _check_attachable(db, router_id, db.get("subnet", ip["subnet_id"]))
            new = bumped({**port.body, "device_owner": ROUTER_INTERFACE, "device_id": router_id,
                          "security_groups": []})
            [change] = await db.commit([("update", "port", port.id, new)])
            made = change.record
            subnet_id = made.body["fixed_ips"][0]["subnet_id"]
        else:
            subnet = db.get("subnet", body.subnet_id)
            network = db.get("network", subnet.body["network_id"]) if subnet is not None else None
            if subnet is None or not (owns(caller, subnet) or (network is not None and find(
                    db, caller, "network", network.id))):
                raise ApiError(404, "SubnetNotFound", f"Subnet {body.subnet_id} could not be found.")
            gateway = subnet.body.get("gateway_ip")
            if not gateway:
                raise bad(f"Bad router request: Subnet {subnet.id} does not have a gateway IP", "BadRequest")
            _check_attachable(db, router_id, subnet)
            batch = Batch()
            fixed = assign_ips(db, batch, network, [{"subnet_id": subnet.id, "ip_address": gateway}],
                               ROUTER_INTERFACE)
            port_id = new_id()
            port_body = {"network_id": network.id, "name": "", "description": "", "admin_state_up": True,
                         "mac_address": new_mac(db, batch), "fixed_ips": fixed, "device_id": router_id,
                         "device_owner": ROUTER_INTERFACE, "security_groups": [], "port_security_enabled": False,
                         "allowed_address_pairs": [], "binding:host_id": "", "binding:profile": {},
                         "binding:vnic_type": "normal", "qos_policy_id": None, "tags": []}
            [change] = await db.commit([("create", "port", port_body, record.project_id, port_id)])
            made = change.record
            subnet_id = subnet.id
    return answer(_interface(record, made, subnet_id))


@router.put("/v2.0/routers/{router_id}/remove_router_interface", summary="Remove an interface (by subnet or port)",
            response_model=Interface, responses=errors(409))
async def remove_router_interface(router_id: str, body: InterfaceRequest, db: DB, caller: Who) -> dict:
    if body.subnet_id is None and body.port_id is None:
        raise bad("Either subnet_id or port_id must be specified", "BadRequest")
    async with db.lock:
        record = find(db, caller, "router", router_id, lambda r: owns(caller, r))
        ports = interfaces(db, router_id)
        if body.port_id is not None:
            found = [p for p in ports if p.id == body.port_id]
            if not found:
                raise ApiError(404, "RouterInterfaceNotFound", f"Router {router_id} does not have an interface with "
                                                               f"id {body.port_id}")
            port = found[0]
            subnets = [ip["subnet_id"] for ip in port.body["fixed_ips"]]
            if body.subnet_id is not None and body.subnet_id not in subnets:
                raise conflict("SubnetMismatchForPort", f"Subnet {body.subnet_id} is not on port {port.id}")
            subnet_id = body.subnet_id or (subnets[0] if subnets else "")
        else:
            found = [p for p in ports if any(ip["subnet_id"] == body.subnet_id for ip in p.body["fixed_ips"])]
            if not found:
                raise ApiError(404, "RouterInterfaceNotFoundForSubnet", f"Router {router_id} has no interface on "
                                                                        f"subnet {body.subnet_id}")
            port, subnet_id = found[0], body.subnet_id
        for gone in [ip["subnet_id"] for ip in port.body["fixed_ips"]]:
            subnet = db.get("subnet", gone)
            cidr = ipaddress.ip_network(subnet.body["cidr"]) if subnet is not None else None
            if cidr is not None and any(f.body.get("fixed_ip_address") and ipaddress.ip_address(
                    f.body["fixed_ip_address"]) in cidr for f in of_router(db, router_id)):
                raise conflict("RouterInterfaceInUseByFloatingIP", f"Router interface for subnet {gone} on router "
                                                                   f"{router_id} cannot be deleted, as it is required "
                                                                   f"by one or more floating IPs.")
            try:
                _check_routes(_connected(db, router_id, _gateway_fixed(db, record), (gone,)),
                              record.body.get("routes", []))
            except ApiError:
                raise _in_use_by_route(router_id, f"subnet {gone}") from None
        await db.commit([*without_port(db, port.id), ("delete", "port", port.id)])   # out of its firewall group
    return answer(_interface(record, port, subnet_id))
