"""/v2.0/l2-gateways and /v2.0/l2-gateway-connections: a tenant network joined
to a segment outside the overlay, in the shapes of Neutron's L2 gateway
extension (networking-l2gw).

An L2 gateway names switch ports (``devices``: a switch by name or datapath
id as ``binding:host_id`` names one, and its ``interfaces`` by port name, or
by number as a decimal string), each with the VLANs it carries
(``segmentation_id``, a list) or none (the port's untagged frames). A
connection joins one gateway to one tenant network (``vxlan`` or ``nvgre``):
the tenants app (apps/tenants.py) then bridges that VLAN, or the untagged
segment, into the network both ways. A connection's ``segmentation_id`` is
the VLAN of the gateway's interfaces that name none (400 when both or
neither give one and the interface is not untagged: give ``0`` for untagged).
One (switch, interface, VLAN) joins one network at a time (409
L2GatewaySegmentationIdInUse). Both resources are the admin's, as in
networking-l2gw's default policy; a gateway with connections cannot be
deleted (409 L2GatewayInUse), nor its network (networks.py).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from kumoflow.store import Record

from ..server import ApiError, Caller
from .common import (DB, INT, STR, Body, Who, answer, bad, bumped, common, conflict, errors, fields_of, find,
                     forbid, given, list_parameters, no_content, one_or_many, pick, project_of, select,
                     show_parameters, shown)
from .db import NeutronDB

router = APIRouter(tags=["l2-gateways"])

OVERLAY_TYPES = ("vxlan", "nvgre")
UNTAGGED = 0


class Interface(Body):
    name: str = Field(min_length=1, max_length=64, description="a port name, or its number as a decimal string")
    segmentation_id: list[int] | None = Field(None, max_length=4094,
                                              description="VLANs (1-4094; 0: the untagged frames)")


class Device(Body):
    device_name: str = Field(min_length=1, max_length=255, description="a switch: name or datapath id")
    interfaces: list[Interface] = Field(min_length=1, max_length=64)


class GatewayCreate(Body):
    name: str = Field("", max_length=255)
    devices: list[Device] = Field(min_length=1, max_length=16)
    project_id: str | None = None
    tenant_id: str | None = None


class GatewayUpdate(Body):
    name: str | None = Field(None, max_length=255)
    devices: list[Device] | None = Field(None, min_length=1, max_length=16)


class GatewayCreateRequest(Body):
    l2_gateway: GatewayCreate


class GatewayUpdateRequest(Body):
    l2_gateway: GatewayUpdate


class ConnectionCreate(Body):
    l2_gateway_id: str = Field(max_length=64)
    network_id: str = Field(max_length=64)
    segmentation_id: int | None = Field(None, ge=0, le=4094, description="the VLAN of interfaces that name none")
    project_id: str | None = None
    tenant_id: str | None = None


class ConnectionCreateRequest(Body):
    l2_gateway_connection: ConnectionCreate | None = None
    l2_gateway_connections: list[ConnectionCreate] | None = Field(None, min_length=1, max_length=1000)


class GatewayModel(BaseModel):
    id: str = None
    tenant_id: str = None
    project_id: str = None
    name: str = None
    devices: list[dict] = None
    created_at: str = None
    updated_at: str = None
    revision_number: int = None


class ConnectionModel(BaseModel):
    id: str = None
    tenant_id: str = None
    project_id: str = None
    l2_gateway_id: str = None
    network_id: str = None
    segmentation_id: int | None = None
    created_at: str = None
    updated_at: str = None
    revision_number: int = None


class GatewayResponse(BaseModel):
    l2_gateway: GatewayModel


class GatewayList(BaseModel):
    l2_gateways: list[GatewayModel]


class ConnectionResponse(BaseModel):
    l2_gateway_connection: ConnectionModel


class ConnectionList(BaseModel):
    l2_gateway_connections: list[ConnectionModel]


GATEWAY_ATTRS = {"id": STR, "tenant_id": STR, "project_id": STR, "name": STR, "revision_number": INT}
CONNECTION_ATTRS = {"id": STR, "tenant_id": STR, "project_id": STR, "l2_gateway_id": STR, "network_id": STR,
                    "segmentation_id": INT, "revision_number": INT}


def view(r: Record) -> dict:
    return {**common(r), **shown(r.body)}


def _admin(caller: Caller, action: str) -> None:
    if not caller.admin:
        raise forbid(action)


def _find(db: NeutronDB, kind: str, id: str) -> Record:
    record = db.get(kind, id)
    if record is None:
        raise ApiError(404, "L2GatewayNotFound" if kind == "l2_gateway" else "L2GatewayConnectionNotFound",
                       f"{'L2 gateway' if kind == 'l2_gateway' else 'L2 gateway connection'} {id} could not be "
                       "found.")
    return record


def _devices(devices: list[Device]) -> list[dict]:
    out = []
    for device in devices:
        names = [i.name for i in device.interfaces]
        if len(set(names)) != len(names):
            raise bad(f"device {device.device_name}: an interface is named twice")
        for interface in device.interfaces:
            vlans = interface.segmentation_id or []
            if any(not 0 <= v <= 4094 for v in vlans) or len(set(vlans)) != len(vlans):
                raise bad(f"device {device.device_name} interface {interface.name}: segmentation_id must be "
                          "distinct VLANs 1-4094 (0: untagged)")
        out.append({"device_name": device.device_name,
                    "interfaces": [{"name": i.name, "segmentation_id": list(i.segmentation_id or [])}
                                   for i in device.interfaces]})
    return out


def segments(gateway: dict, connection_vlan: int | None) -> list[tuple[str, str, int]]:
    """(device, interface, VLAN or 0) that a connection of `gateway` joins; 400 when an
    interface and the connection both give VLANs, or neither does."""
    out = []
    for device in gateway["devices"]:
        for interface in device["interfaces"]:
            own = interface.get("segmentation_id") or []
            if own and connection_vlan is not None:
                raise bad(f"interface {interface['name']} of {device['device_name']} has VLANs of its own: "
                          "the connection must not give segmentation_id")
            if not own and connection_vlan is None:
                raise bad(f"interface {interface['name']} of {device['device_name']} has no VLAN: the "
                          "connection must give segmentation_id (0: untagged)")
            out += [(device["device_name"], interface["name"], v) for v in (own or [connection_vlan])]
    return out


def _taken(db: NeutronDB, skip: str = "") -> dict[tuple[str, str, int], str]:
    """(device, interface, VLAN) -> the connection that joins it."""
    out = {}
    for conn in db.all("l2_gateway_connection"):
        gateway = db.get("l2_gateway", conn.body["l2_gateway_id"])
        if conn.id != skip and gateway is not None:
            for segment in segments(gateway.body, conn.body.get("segmentation_id")):
                out[segment] = conn.id
    return out


# --- gateways -----------------------------------------------------------------------------------


@router.post("/v2.0/l2-gateways", status_code=201, summary="Create an L2 gateway (admin)",
             response_model=GatewayResponse, responses=errors(400, 403))
async def create_gateway(body: GatewayCreateRequest, db: DB, caller: Who) -> dict:
    _admin(caller, "create_l2_gateway")
    item = body.l2_gateway
    async with db.lock:
        [change] = await db.commit([("create", "l2_gateway", {"name": item.name, "devices": _devices(item.devices)},
                                     project_of(caller, given(item)))])
    return answer({"l2_gateway": view(change.record)}, 201)


@router.get("/v2.0/l2-gateways", summary="List L2 gateways (admin)", response_model=GatewayList,
            responses=errors(403), openapi_extra=list_parameters(GATEWAY_ATTRS, tags=False))
async def list_gateways(request: Request, db: DB, caller: Who) -> dict:
    _admin(caller, "get_l2_gateway")
    return answer({"l2_gateways": select(request, db.all("l2_gateway"), GATEWAY_ATTRS, render=view)})


@router.get("/v2.0/l2-gateways/{gateway_id}", summary="Show an L2 gateway (admin)",
            response_model=GatewayResponse, responses=errors(403, 404), openapi_extra=show_parameters())
async def show_gateway(gateway_id: str, request: Request, db: DB, caller: Who) -> dict:
    _admin(caller, "get_l2_gateway")
    item, fields = view(_find(db, "l2_gateway", gateway_id)), fields_of(request)
    return answer({"l2_gateway": pick(item, fields) if fields else item})


@router.put("/v2.0/l2-gateways/{gateway_id}", summary="Update an L2 gateway: name; devices while unconnected",
            response_model=GatewayResponse, responses=errors(400, 403, 404, 409))
async def update_gateway(gateway_id: str, body: GatewayUpdateRequest, db: DB, caller: Who) -> dict:
    _admin(caller, "update_l2_gateway")
    async with db.lock:
        record = _find(db, "l2_gateway", gateway_id)
        new = dict(record.body)
        if body.l2_gateway.name is not None:
            new["name"] = body.l2_gateway.name
        if body.l2_gateway.devices is not None:
            if db.referring("l2_gateway", gateway_id, "l2_gateway_connection"):
                raise conflict("L2GatewayInUse", f"L2 gateway {gateway_id} has connections: its devices cannot "
                                                 "change.")
            new["devices"] = _devices(body.l2_gateway.devices)
        [change] = await db.commit([("update", "l2_gateway", gateway_id, bumped(new))])
    return answer({"l2_gateway": view(change.record)})


@router.delete("/v2.0/l2-gateways/{gateway_id}", status_code=204, summary="Delete an L2 gateway (admin)",
               response_class=Response, responses=errors(403, 404, 409))
async def delete_gateway(gateway_id: str, db: DB, caller: Who):
    _admin(caller, "delete_l2_gateway")
    async with db.lock:
        _find(db, "l2_gateway", gateway_id)
        if db.referring("l2_gateway", gateway_id, "l2_gateway_connection"):
            raise conflict("L2GatewayInUse", f"L2 gateway {gateway_id} is in use by connections: delete them "
                                             "first.")
        await db.commit([("delete", "l2_gateway", gateway_id)])
    return no_content()


# --- connections --------------------------------------------------------------------------------


@router.post("/v2.0/l2-gateway-connections", status_code=201,
             summary="Join a tenant network to an L2 gateway's segments (admin; or several: bulk)",
             response_model=ConnectionResponse | ConnectionList, responses=errors(400, 403, 404, 409))
async def create_connections(body: ConnectionCreateRequest, db: DB, caller: Who) -> dict:
    _admin(caller, "create_l2_gateway_connection")
    items, bulk = one_or_many(body, "l2_gateway_connection", "l2_gateway_connections")
    async with db.lock:
        taken = _taken(db)
        ops = []
        for n, item in enumerate(items):
            gateway = _find(db, "l2_gateway", item.l2_gateway_id)
            network = find(db, caller, "network", item.network_id)
            if network.body.get("provider:network_type") not in OVERLAY_TYPES:
                raise bad(f"network {network.id} is of type {network.body.get('provider:network_type')}: an L2 "
                          f"gateway joins a tunnelled network ({' or '.join(OVERLAY_TYPES)})")
            for segment in segments(gateway.body, item.segmentation_id):
                if segment in taken:
                    device, interface, vlan = segment
                    raise conflict("L2GatewaySegmentationIdInUse",
                                   f"VLAN {vlan or 'untagged'} of interface {interface} on {device} is joined "
                                   f"already (connection {taken[segment]}).")
                taken[segment] = f"#{n} of this request"
            ops.append(("create", "l2_gateway_connection",
                        {"l2_gateway_id": gateway.id, "network_id": network.id,
                         "segmentation_id": item.segmentation_id}, project_of(caller, given(item))))
        changes = await db.commit(ops)
    made = [view(c.record) for c in changes]
    return answer({"l2_gateway_connections": made} if bulk else {"l2_gateway_connection": made[0]}, 201)


@router.get("/v2.0/l2-gateway-connections", summary="List L2 gateway connections (admin)",
            response_model=ConnectionList, responses=errors(403),
            openapi_extra=list_parameters(CONNECTION_ATTRS, tags=False))
async def list_connections(request: Request, db: DB, caller: Who) -> dict:
    _admin(caller, "get_l2_gateway_connection")
    return answer({"l2_gateway_connections": select(request, db.all("l2_gateway_connection"), CONNECTION_ATTRS,
                                                    render=view)})


@router.get("/v2.0/l2-gateway-connections/{connection_id}", summary="Show an L2 gateway connection (admin)",
            response_model=ConnectionResponse, responses=errors(403, 404), openapi_extra=show_parameters())
async def show_connection(connection_id: str, request: Request, db: DB, caller: Who) -> dict:
    _admin(caller, "get_l2_gateway_connection")
    item, fields = view(_find(db, "l2_gateway_connection", connection_id)), fields_of(request)
    return answer({"l2_gateway_connection": pick(item, fields) if fields else item})


@router.delete("/v2.0/l2-gateway-connections/{connection_id}", status_code=204,
               summary="Part a network from an L2 gateway (admin)", response_class=Response,
               responses=errors(403, 404))
async def delete_connection(connection_id: str, db: DB, caller: Who):
    _admin(caller, "delete_l2_gateway_connection")
    async with db.lock:
        _find(db, "l2_gateway_connection", connection_id)
        await db.commit([("delete", "l2_gateway_connection", connection_id)])
    return no_content()
