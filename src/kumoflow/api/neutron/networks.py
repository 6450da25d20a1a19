"""/v2.0/networks: tenant networks, with their provider attributes.

``provider:network_type`` is ``vxlan`` (the default), ``nvgre`` (kumoflow's
own: NVGRE, RFC 7637, a 24-bit virtual subnet id in the GRE key), ``vlan``
or ``flat``. ``provider:segmentation_id`` (the VNI, VSID or VLAN id) is
allocated when not given, lowest free first, from the type's ranges
(``--segment-range TYPE=LOW:HIGH``: ApiContext.segment_ranges; else the
whole legal range, `LEGAL_RANGES`): none free is 503 NoNetworkAvailable, as
in Neutron. One the admin gives may lie outside those ranges, within the
legal range (400 otherwise), as a provider network in Neutron. It is unique
per type (a vlan id per physical network; one flat network per physical
network): a clash is 409. Projects may choose the type; the segmentation id,
physical network, ``shared`` and ``router:external`` need the admin.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from kumoflow.store import Record

from ..options import LEGAL_RANGES
from ..server import ApiError, Ctx
from .common import (BOOL, DB, DESCRIPTION, INT, LIST, NAME, PROJECT_PATTERN, STR, TAG, Body, Who, admin_only,
                     answer, bad, bumped, common, conflict, errors, fields_of, find, find_own, given, list_parameters,
                     new_id, no_content, one_or_many, pick, project_of, select, show_parameters, shown, visible)
from .db import NeutronDB, segment_key

router = APIRouter(tags=["networks"])

NETWORK_TYPES = ("vxlan", "nvgre", "vlan", "flat")
DEFAULT_TYPE = "vxlan"
#: the segmentation ids a network type can have (inclusive); what is allocated is configurable
RANGES = LEGAL_RANGES
#: the MTU a network gets by default: 1500 less the encapsulation (VXLAN over IPv4: 50 bytes;
#: NVGRE: 42, outer IPv4 + GRE with key + inner Ethernet)
DEFAULT_MTU = {"vxlan": 1450, "nvgre": 1458, "vlan": 1500, "flat": 1500}

NetworkType = Literal["vxlan", "nvgre", "vlan", "flat"]


class NetworkCreate(Body):
    name: NAME = ""
    description: DESCRIPTION = ""
    admin_state_up: bool = True
    shared: bool = Field(False, description="visible to every project (admin only)")
    project_id: str | None = Field(None, pattern=PROJECT_PATTERN, description="admin only: another project")
    tenant_id: str | None = Field(None, pattern=PROJECT_PATTERN, description="the same as project_id")
    mtu: int | None = Field(None, ge=68, le=65535, description="default: 1500 less the encapsulation")
    router_external: bool = Field(False, alias="router:external", description="admin only")
    network_type: NetworkType | None = Field(None, alias="provider:network_type",
                                             description="vxlan (default), nvgre (kumoflow's), vlan or flat")
    physical_network: str | None = Field(None, alias="provider:physical_network", min_length=1, max_length=64,
                                         description="vlan and flat only (admin only)")
    segmentation_id: int | None = Field(None, alias="provider:segmentation_id", ge=0, le=2**32,
                                        description="VNI/VSID 1..16777215, VLAN id 1..4094; allocated when not "
                                                    "given (admin only)")
    port_security_enabled: bool = True
    qos_policy_id: str | None = None
    tags: list[TAG] = Field(default_factory=list, max_length=50)


class NetworkUpdate(Body):
    name: NAME | None = None
    description: DESCRIPTION | None = None
    admin_state_up: bool | None = None
    shared: bool | None = None
    mtu: int | None = Field(None, ge=68, le=65535)
    router_external: bool | None = Field(None, alias="router:external")
    port_security_enabled: bool | None = None
    qos_policy_id: str | None = None
    tags: list[TAG] | None = Field(None, max_length=50)


class NetworkCreateRequest(Body):
    network: NetworkCreate | None = None
    networks: list[NetworkCreate] | None = Field(None, min_length=1, max_length=1000)


class NetworkUpdateRequest(Body):
    network: NetworkUpdate


class Network(BaseModel):
    """A network (every attribute is there unless `fields` asked for others)."""
    id: str = None
    name: str = None
    description: str = None
    tenant_id: str = None
    project_id: str = None
    admin_state_up: bool = None
    status: Literal["ACTIVE", "DOWN"] = None
    shared: bool = None
    subnets: list[str] = Field(None, description="ids of its subnets")
    mtu: int = None
    router_external: bool = Field(None, alias="router:external")
    network_type: NetworkType = Field(None, alias="provider:network_type")
    physical_network: str | None = Field(None, alias="provider:physical_network")
    segmentation_id: int | None = Field(None, alias="provider:segmentation_id")
    port_security_enabled: bool = None
    qos_policy_id: str | None = None
    tags: list[str] = None
    availability_zone_hints: list[str] = None
    availability_zones: list[str] = None
    created_at: str = None
    updated_at: str = None
    revision_number: int = None


class NetworkResponse(BaseModel):
    network: Network


class NetworkList(BaseModel):
    networks: list[Network]


ATTRS = {"id": STR, "name": STR, "description": STR, "tenant_id": STR, "project_id": STR, "admin_state_up": BOOL,
         "status": STR, "shared": BOOL, "subnets": LIST, "mtu": INT, "router:external": BOOL,
         "provider:network_type": STR, "provider:physical_network": STR, "provider:segmentation_id": INT,
         "port_security_enabled": BOOL, "qos_policy_id": STR, "revision_number": INT}


def view(db: NeutronDB, r: Record) -> dict:
    return {**common(r), **shown(r.body), "status": "ACTIVE" if r.body.get("admin_state_up", True) else "DOWN",
            "subnets": [s.id for s in db.referring("network", r.id, "subnet")]}


def check_qos(db: NeutronDB, caller, policy_id: str | None) -> None:
    if policy_id is not None:
        find(db, caller, "qos_policy", policy_id)


def _segment(db: NeutronDB, body: dict, taken: set, ranges: dict | None = None) -> None:
    """Fill in and check the provider attributes of a new network's `body` (in place); an id
    is allocated from `ranges` (type -> ((low, high), ...); a type not there: its legal range)."""
    if body.get("provider:network_type") is None:
        body["provider:network_type"] = DEFAULT_TYPE
    kind = body["provider:network_type"]
    physnet = body.get("provider:physical_network")
    seg = body.get("provider:segmentation_id")
    if kind == "flat":
        if seg is not None:
            raise bad("provider:segmentation_id must not be given for a flat network")
    elif kind in ("vxlan", "nvgre") and physnet is not None:
        raise bad(f"provider:physical_network must not be given for a {kind} network")
    if kind in RANGES:
        low, high = RANGES[kind]
        if seg is not None and not low <= seg <= high:
            raise bad(f"provider:segmentation_id {seg} is out of range {low}..{high} for {kind}")
        if seg is None:
            spans = (ranges or {}).get(kind) or ((low, high),)
            seg = _lowest_free(db, body, taken, spans)
            if seg is None:
                text = ", ".join(f"{a}..{b}" for a, b in spans)
                raise ApiError(503, "NoNetworkAvailable", f"Unable to create the network. No tenant network is "
                                                          f"available for allocation: no {kind} segmentation id "
                                                          f"is free in {text}.")
            body["provider:segmentation_id"] = seg
    body.setdefault("provider:physical_network", None)
    body.setdefault("provider:segmentation_id", None)
    key = segment_key(body)
    if key in db.segments or key in taken:
        if kind == "vlan":
            raise conflict("VlanIdInUse", f"Unable to create the network. The VLAN {seg} on physical network "
                                          f"{physnet} is in use.")
        if kind == "flat":
            raise conflict("FlatNetworkInUse", f"Unable to create the flat network. Physical network {physnet} "
                                               f"is in use.")
        raise conflict("TunnelIdInUse", f"Unable to create the network. The tunnel ID {seg} ({kind}) is in use.")
    taken.add(key)


def _lowest_free(db: NeutronDB, body: dict, taken: set, spans) -> int | None:
    """The lowest segmentation id in `spans` that no network of `body`'s type (and physical
    network, for vlan) has, nor one of this request; None when all are taken."""
    for low, high in spans:
        # from where the last search found every id below taken (a walk from `low` each time made
        # creating N networks quadratic); the floor moves over ids the store holds, not this request's
        floors, span = db.segment_floors, (segment_key({**body, "provider:segmentation_id": None}), low, high)
        floor = floors.get(span, low)
        for seg in range(floor, high + 1):
            key = segment_key({**body, "provider:segmentation_id": seg})
            if key in db.segments:
                if seg == floor:
                    floor += 1
            elif key not in taken:
                floors[span] = floor
                return seg
        floors[span] = floor
    return None


@router.post("/v2.0/networks", status_code=201, summary="Create a network (or several: bulk)",
             response_model=NetworkResponse | NetworkList, responses=errors(403, 404, 409, 503))
async def create_networks(body: NetworkCreateRequest, ctx: Ctx, db: DB, caller: Who) -> dict:
    items, bulk = one_or_many(body, "network", "networks")
    async with db.lock:
        taken: set = set()
        ops = []
        for item in items:
            admin_only(caller, item, ("shared", "router_external", "physical_network", "segmentation_id"),
                       "create_network")
            values = given(item)
            project = project_of(caller, values)
            values.pop("project_id", None)
            values.pop("tenant_id", None)
            new = {"name": "", "description": "", "admin_state_up": True, "shared": False,
                   "router:external": False, "port_security_enabled": True, "qos_policy_id": None, "tags": [],
                   "availability_zone_hints": [], "availability_zones": [], **values}
            _segment(db, new, taken, ctx.segment_ranges)
            if new.get("mtu") is None:
                new["mtu"] = DEFAULT_MTU[new["provider:network_type"]]
            check_qos(db, caller, new["qos_policy_id"])
            ops.append(("create", "network", new, project, new_id()))
        changes = await db.commit(ops)
    made = [view(db, c.record) for c in changes]
    return answer({"networks": made} if bulk else {"network": made[0]}, 201)


@router.get("/v2.0/networks", summary="List networks", response_model=NetworkList, responses=errors(),
            openapi_extra=list_parameters(ATTRS))
async def list_networks(request: Request, db: DB, caller: Who) -> dict:
    records = [r for r in db.all("network") if visible(caller, r)]
    return answer({"networks": select(request, records, ATTRS, render=lambda r: view(db, r),
                                      computed=frozenset({"status", "subnets"}))})


@router.get("/v2.0/networks/{network_id}", summary="Show a network", response_model=NetworkResponse,
            openapi_extra=show_parameters())
async def show_network(network_id: str, request: Request, db: DB, caller: Who) -> dict:
    item = view(db, find(db, caller, "network", network_id))
    fields = fields_of(request)
    return answer({"network": pick(item, fields) if fields else item})


@router.put("/v2.0/networks/{network_id}", summary="Update a network", response_model=NetworkResponse,
            responses=errors(403, 409))
async def update_network(network_id: str, body: NetworkUpdateRequest, db: DB, caller: Who) -> dict:
    async with db.lock:
        record = find_own(db, caller, "network", network_id, "update")
        admin_only(caller, body.network, ("shared", "router_external"), "update_network")
        values = {k: v for k, v in given(body.network).items()}
        for name in ("name", "description", "admin_state_up", "shared", "router:external", "port_security_enabled",
                     "tags", "mtu"):
            if name in values and values[name] is None:
                raise bad(f"{name} must not be null")
        if "qos_policy_id" in values:
            check_qos(db, caller, values["qos_policy_id"])
        if values.get("router:external") is False and record.body.get("router:external") and (
                db.referring("network", network_id, "router") or db.referring("network", network_id, "floatingip")):
            raise conflict("ExternalNetworkInUse", f"External network {network_id} cannot be updated to be made "
                                                   f"non-external, since it has existing gateway ports or floating "
                                                   f"IPs.")
        if values.get("shared") is False and record.body.get("shared"):
            others = [p for p in db.referring("network", network_id, "port") if p.project_id != record.project_id]
            if others:
                raise conflict("InvalidSharedSetting", f"Unable to reconfigure sharing settings for network "
                                                       f"{network_id}. Multiple tenants are using it.")
        [change] = await db.commit([("update", "network", network_id, bumped({**record.body, **values}))])
    return answer({"network": view(db, change.record)})


@router.delete("/v2.0/networks/{network_id}", status_code=204, summary="Delete a network (and its subnets)",
               response_class=Response, responses=errors(403, 409))
async def delete_network(network_id: str, db: DB, caller: Who):
    async with db.lock:
        find_own(db, caller, "network", network_id, "delete")
        if db.referring("network", network_id, "port"):
            raise conflict("NetworkInUse", f"Unable to complete operation on network {network_id}. There are one "
                                           f"or more ports still in use on the network.")
        joined = db.referring("network", network_id, "l2_gateway_connection")
        if joined:
            raise conflict("NetworkInUse", f"Unable to complete operation on network {network_id}. It is joined to "
                                           f"L2 gateway {joined[0].body['l2_gateway_id']} (connection {joined[0].id}).")
        routers = db.referring("network", network_id, "router")
        if routers:
            raise conflict("NetworkInUse", f"Unable to complete operation on network {network_id}. It is the "
                                           f"external gateway of router {routers[0].id}.")
        subnets = db.referring("network", network_id, "subnet")
        members = [m for s in subnets for m in db.referring("subnet", s.id, "member")]
        if members:
            raise conflict("NetworkInUse", f"Unable to complete operation on network {network_id}. Load balancer "
                                           f"member {members[0].id} (pool {members[0].body['pool_id']}) is on subnet "
                                           f"{members[0].body['subnet_id']}.")
        ops = [("delete", "subnet", s.id) for s in subnets]
        ops.append(("delete", "network", network_id))
        await db.commit(ops)
    return no_content()
