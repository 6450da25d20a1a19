"""/v2.0/bgp-speakers and /v2.0/bgp-peers: neutron-dynamic-routing's BGP resources (admin only).

A BGP speaker is the cloud's side of BGP sessions: its AS (``local_as``), the IP version of the
routes it announces (``ip_version``), what it announces (``advertise_tenant_networks``: the
tenant subnets behind routers on its gateway networks, with the routers' gateway addresses as
next hops; ``advertise_floating_ip_host_routes``: floating IPs as /32 and /128 host routes), the
external networks it serves (``networks``, by ``add_gateway_network``) and its peers
(``peers``, by ``add_bgp_peer``). A BGP peer is a router outside: ``peer_ip``, ``remote_as``,
``auth_type`` ``none`` or ``md5`` with a ``password`` (written, never shown).

Everything here needs the admin token (403 otherwise), as in Neutron. Records of kinds
``bgp_speaker`` and ``bgp_peer`` in the desired-state store; the peer's password is kept in the
record (``_password``, never rendered) because FRR needs it. Deleting a peer takes it out of
every speaker (one commit). The speaker that runs these sessions is kumoflow.bgp.speaker;
docs/routing.md tells how they meet (the ``bgp`` app runs it from these records).
``get_advertised_routes`` lists what a speaker announces, computed as the ``bgp`` app computes
it (from the router app's view when it runs, else from the records).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from kumoflow.store import NotFound, Record

from kumoflow.apps.bgp import advertised
from kumoflow.apps.routing import build

from ..server import AdminCaller, ApiError, Ctx
from .common import (BOOL, DB, INT, LIST, NAME, PROJECT_PATTERN, STR, Body, answer, bad, bumped, common,
                     conflict, errors, fields_of, given, list_parameters, new_id, no_content, pick, project_of,
                     select, show_parameters, shown)
from .db import NeutronDB

router = APIRouter(tags=["bgp"])

ASN = Annotated[int, Field(ge=1, le=4294967295, description="an AS number (4-byte ASNs allowed)")]
PASSWORD = Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[!-~]+$",
                                description="the TCP MD5 key (printable, no spaces); written, never shown")]


class SpeakerCreate(Body):
    name: NAME = ""
    local_as: ASN
    ip_version: Literal[4, 6] = 4
    advertise_floating_ip_host_routes: bool = True
    advertise_tenant_networks: bool = True
    project_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    tenant_id: str | None = Field(None, pattern=PROJECT_PATTERN)


class SpeakerUpdate(Body):
    name: NAME | None = None
    advertise_floating_ip_host_routes: bool | None = None
    advertise_tenant_networks: bool | None = None


class SpeakerCreateRequest(Body):
    bgp_speaker: SpeakerCreate


class SpeakerUpdateRequest(Body):
    bgp_speaker: SpeakerUpdate


class SpeakerModel(BaseModel):
    """A BGP speaker (every attribute is there unless `fields` asked for others)."""
    id: str = None
    name: str = None
    tenant_id: str = None
    project_id: str = None
    local_as: int = None
    ip_version: int = None
    advertise_floating_ip_host_routes: bool = None
    advertise_tenant_networks: bool = None
    networks: list[str] = None
    peers: list[str] = None
    created_at: str = None
    updated_at: str = None
    revision_number: int = None


class SpeakerResponse(BaseModel):
    bgp_speaker: SpeakerModel


class SpeakerList(BaseModel):
    bgp_speakers: list[SpeakerModel]


class PeerCreate(Body):
    name: NAME = ""
    peer_ip: str = Field(max_length=64)
    remote_as: ASN
    auth_type: Literal["none", "md5"] = "none"
    password: PASSWORD | None = None
    project_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    tenant_id: str | None = Field(None, pattern=PROJECT_PATTERN)


class PeerUpdate(Body):
    name: NAME | None = None
    password: PASSWORD | None = None


class PeerCreateRequest(Body):
    bgp_peer: PeerCreate


class PeerUpdateRequest(Body):
    bgp_peer: PeerUpdate


class PeerModel(BaseModel):
    """A BGP peer (its password is never shown)."""
    id: str = None
    name: str = None
    tenant_id: str = None
    project_id: str = None
    peer_ip: str = None
    remote_as: int = None
    auth_type: str = None
    created_at: str = None
    updated_at: str = None
    revision_number: int = None


class PeerResponse(BaseModel):
    bgp_peer: PeerModel


class PeerList(BaseModel):
    bgp_peers: list[PeerModel]


class PeerRef(Body):
    bgp_peer_id: str = Field(max_length=64)


class NetworkRef(Body):
    network_id: str = Field(max_length=64)


SPEAKER_ATTRS = {"id": STR, "name": STR, "tenant_id": STR, "project_id": STR, "local_as": INT, "ip_version": INT,
                 "advertise_floating_ip_host_routes": BOOL, "advertise_tenant_networks": BOOL, "networks": LIST,
                 "peers": LIST, "revision_number": INT}
PEER_ATTRS = {"id": STR, "name": STR, "tenant_id": STR, "project_id": STR, "peer_ip": STR, "remote_as": INT,
              "auth_type": STR, "revision_number": INT}


def speaker_view(r: Record) -> dict:
    return {**common(r), **shown(r.body)}


def peer_view(r: Record) -> dict:
    return {**common(r), **shown(r.body)}


async def _get(db: NeutronDB, kind: str, id: str) -> Record:
    try:
        return await db.store.get(kind, id)
    except NotFound:
        if kind == "bgp_speaker":
            raise ApiError(404, "BgpSpeakerNotFound", f"BGP speaker {id} could not be found.") from None
        raise ApiError(404, "BgpPeerNotFound", f"BGP peer {id} could not be found.") from None


def _peer_ip(text: str) -> str:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise bad(f"'{text}' is not a valid IP address (peer_ip)") from None
    if ip.is_unspecified or ip.is_multicast or ip.is_loopback or ip.is_link_local:
        raise bad(f"'{text}' cannot be a BGP peer's address (unspecified, loopback, link-local or multicast)")
    return str(ip)


def _check_auth(auth_type: str, password: str | None) -> None:
    if auth_type == "md5" and not password:
        raise bad("A password is required for auth_type md5.", "InvalidBgpPeerMd5Authentication")
    if auth_type == "none" and password:
        raise bad("A password is only allowed with auth_type md5.", "InvalidBgpPeerMd5Authentication")


# --- speakers -----------------------------------------------------------------------------------


@router.post("/v2.0/bgp-speakers", status_code=201, summary="Create a BGP speaker", response_model=SpeakerResponse,
             responses=errors(400, 403))
async def create_speaker(body: SpeakerCreateRequest, db: DB, caller: AdminCaller) -> dict:
    item = body.bgp_speaker
    project = project_of(caller, given(item))
    new = {"name": item.name, "local_as": item.local_as, "ip_version": item.ip_version,
           "advertise_floating_ip_host_routes": item.advertise_floating_ip_host_routes,
           "advertise_tenant_networks": item.advertise_tenant_networks, "networks": [], "peers": []}
    async with db.lock:
        [change] = await db.commit([("create", "bgp_speaker", new, project, new_id())])
    return answer({"bgp_speaker": speaker_view(change.record)}, 201)


@router.get("/v2.0/bgp-speakers", summary="List BGP speakers", response_model=SpeakerList, responses=errors(403),
            openapi_extra=list_parameters(SPEAKER_ATTRS, tags=False))
async def list_speakers(request: Request, db: DB, caller: AdminCaller) -> dict:
    items = [speaker_view(r) for r in await db.store.list("bgp_speaker")]
    return answer({"bgp_speakers": select(request, items, SPEAKER_ATTRS)})


@router.get("/v2.0/bgp-speakers/{speaker_id}", summary="Show a BGP speaker", response_model=SpeakerResponse,
            responses=errors(403, 404), openapi_extra=show_parameters())
async def show_speaker(speaker_id: str, request: Request, db: DB, caller: AdminCaller) -> dict:
    item = speaker_view(await _get(db, "bgp_speaker", speaker_id))
    fields = fields_of(request)
    return answer({"bgp_speaker": pick(item, fields) if fields else item})


class AdvertisedRoute(BaseModel):
    destination: str
    next_hop: str


class AdvertisedRoutes(BaseModel):
    advertised_routes: list[AdvertisedRoute]


@router.get("/v2.0/bgp-speakers/{speaker_id}/get_advertised_routes", response_model=AdvertisedRoutes,
            summary="The prefixes a BGP speaker announces, and their next hops", responses=errors(403, 404))
async def get_advertised_routes(speaker_id: str, ctx: Ctx, db: DB, caller: AdminCaller) -> dict:
    speaker = await _get(db, "bgp_speaker", speaker_id)
    try:      # the routers as the running router app sees them
        routers = ctx.core.app("router").routers.values()
    except (AttributeError, KeyError):   # no router app: the same model, from the records
        records = db.records
        routers = build(records["router"].values(), records["port"].values(), records["subnet"],
                        floatingips=records["floatingip"].values()).values()
    return answer({"advertised_routes": [{"destination": prefix, "next_hop": hop}
                                         for prefix, hop in advertised(speaker.body, routers)]})


@router.put("/v2.0/bgp-speakers/{speaker_id}", summary="Update a BGP speaker (name, what it advertises)",
            response_model=SpeakerResponse, responses=errors(400, 403, 404))
async def update_speaker(speaker_id: str, body: SpeakerUpdateRequest, db: DB, caller: AdminCaller) -> dict:
    values = given(body.bgp_speaker)
    for name, value in values.items():
        if value is None:
            raise bad(f"{name} must not be null")
    async with db.lock:
        record = await _get(db, "bgp_speaker", speaker_id)
        [change] = await db.commit([("update", "bgp_speaker", speaker_id, bumped({**record.body, **values}))])
    return answer({"bgp_speaker": speaker_view(change.record)})


@router.delete("/v2.0/bgp-speakers/{speaker_id}", status_code=204, summary="Delete a BGP speaker",
               response_class=Response, responses=errors(403, 404))
async def delete_speaker(speaker_id: str, db: DB, caller: AdminCaller):
    async with db.lock:
        await _get(db, "bgp_speaker", speaker_id)
        await db.commit([("delete", "bgp_speaker", speaker_id)])
    return no_content()


@router.put("/v2.0/bgp-speakers/{speaker_id}/add_bgp_peer", summary="Add a peer to a BGP speaker",
            response_model=PeerRef, responses=errors(400, 403, 404, 409))
async def add_bgp_peer(speaker_id: str, body: PeerRef, db: DB, caller: AdminCaller) -> dict:
    async with db.lock:
        speaker = await _get(db, "bgp_speaker", speaker_id)
        peer = await _get(db, "bgp_peer", body.bgp_peer_id)
        ip = ipaddress.ip_address(peer.body["peer_ip"])
        if ip.version != speaker.body["ip_version"]:
            raise bad(f"BGP peer {peer.id} ({ip}) is IPv{ip.version}; BGP speaker {speaker_id} is "
                      f"IPv{speaker.body['ip_version']}", "InvalidBgpPeerIpVersion")
        for other_id in speaker.body["peers"]:
            other = await db.store.get("bgp_peer", other_id)
            if other.id == peer.id or other.body["peer_ip"] == peer.body["peer_ip"]:
                raise conflict("DuplicateBgpPeerIpException", f"BGP speaker {speaker_id} already has a peer with "
                                                               f"address {ip} ({other.id}).")
        new = bumped({**speaker.body, "peers": [*speaker.body["peers"], peer.id]})
        await db.commit([("update", "bgp_speaker", speaker_id, new)])
    return answer({"bgp_peer_id": peer.id})


@router.put("/v2.0/bgp-speakers/{speaker_id}/remove_bgp_peer", summary="Remove a peer from a BGP speaker",
            response_model=PeerRef, responses=errors(403, 404))
async def remove_bgp_peer(speaker_id: str, body: PeerRef, db: DB, caller: AdminCaller) -> dict:
    async with db.lock:
        speaker = await _get(db, "bgp_speaker", speaker_id)
        if body.bgp_peer_id not in speaker.body["peers"]:
            raise ApiError(404, "BgpSpeakerPeerNotAssociated", f"BGP peer {body.bgp_peer_id} is not associated "
                                                               f"with BGP speaker {speaker_id}.")
        new = bumped({**speaker.body, "peers": [p for p in speaker.body["peers"] if p != body.bgp_peer_id]})
        await db.commit([("update", "bgp_speaker", speaker_id, new)])
    return answer({"bgp_peer_id": body.bgp_peer_id})


@router.put("/v2.0/bgp-speakers/{speaker_id}/add_gateway_network",
            summary="Serve an external network (announce what is routed behind it)", response_model=NetworkRef,
            responses=errors(400, 403, 404, 409))
async def add_gateway_network(speaker_id: str, body: NetworkRef, db: DB, caller: AdminCaller) -> dict:
    async with db.lock:
        speaker = await _get(db, "bgp_speaker", speaker_id)
        network = db.get("network", body.network_id)
        if network is None:
            raise ApiError(404, "NetworkNotFound", f"Network {body.network_id} could not be found.")
        if not network.body.get("router:external"):
            raise bad(f"Network {network.id} is not an external network (router:external): a BGP speaker "
                      f"serves external networks", "BadRequest")
        if network.id in speaker.body["networks"]:
            raise conflict("BgpSpeakerNetworkAlreadyAssociated", f"Network {network.id} is already a gateway "
                                                                 f"network of BGP speaker {speaker_id}.")
        new = bumped({**speaker.body, "networks": [*speaker.body["networks"], network.id]})
        await db.commit([("update", "bgp_speaker", speaker_id, new)])
    return answer({"network_id": network.id})


@router.put("/v2.0/bgp-speakers/{speaker_id}/remove_gateway_network", summary="Stop serving an external network",
            response_model=NetworkRef, responses=errors(403, 404))
async def remove_gateway_network(speaker_id: str, body: NetworkRef, db: DB, caller: AdminCaller) -> dict:
    async with db.lock:
        speaker = await _get(db, "bgp_speaker", speaker_id)
        if body.network_id not in speaker.body["networks"]:
            raise ApiError(404, "BgpSpeakerNetworkNotAssociated", f"Network {body.network_id} is not a gateway "
                                                                  f"network of BGP speaker {speaker_id}.")
        new = bumped({**speaker.body, "networks": [n for n in speaker.body["networks"] if n != body.network_id]})
        await db.commit([("update", "bgp_speaker", speaker_id, new)])
    return answer({"network_id": body.network_id})


# --- peers --------------------------------------------------------------------------------------


@router.post("/v2.0/bgp-peers", status_code=201, summary="Create a BGP peer", response_model=PeerResponse,
             responses=errors(400, 403))
async def create_peer(body: PeerCreateRequest, db: DB, caller: AdminCaller) -> dict:
    item = body.bgp_peer
    project = project_of(caller, given(item))
    _check_auth(item.auth_type, item.password)
    new = {"name": item.name, "peer_ip": _peer_ip(item.peer_ip), "remote_as": item.remote_as,
           "auth_type": item.auth_type}
    if item.password:
        new["_password"] = item.password
    async with db.lock:
        [change] = await db.commit([("create", "bgp_peer", new, project, new_id())])
    return answer({"bgp_peer": peer_view(change.record)}, 201)


@router.get("/v2.0/bgp-peers", summary="List BGP peers", response_model=PeerList, responses=errors(403),
            openapi_extra=list_parameters(PEER_ATTRS, tags=False))
async def list_peers(request: Request, db: DB, caller: AdminCaller) -> dict:
    items = [peer_view(r) for r in await db.store.list("bgp_peer")]
    return answer({"bgp_peers": select(request, items, PEER_ATTRS)})


@router.get("/v2.0/bgp-peers/{peer_id}", summary="Show a BGP peer", response_model=PeerResponse,
            responses=errors(403, 404), openapi_extra=show_parameters())
async def show_peer(peer_id: str, request: Request, db: DB, caller: AdminCaller) -> dict:
    item = peer_view(await _get(db, "bgp_peer", peer_id))
    fields = fields_of(request)
    return answer({"bgp_peer": pick(item, fields) if fields else item})


@router.put("/v2.0/bgp-peers/{peer_id}", summary="Update a BGP peer (name, password)", response_model=PeerResponse,
            responses=errors(400, 403, 404))
async def update_peer(peer_id: str, body: PeerUpdateRequest, db: DB, caller: AdminCaller) -> dict:
    values = given(body.bgp_peer)
    async with db.lock:
        record = await _get(db, "bgp_peer", peer_id)
        new = dict(record.body)
        if values.get("name") is not None:
            new["name"] = values["name"]
        elif "name" in values:
            raise bad("name must not be null")
        if "password" in values:
            _check_auth(record.body["auth_type"], values["password"])
            new["_password"] = values["password"]
        [change] = await db.commit([("update", "bgp_peer", peer_id, bumped(new))])
    return answer({"bgp_peer": peer_view(change.record)})


@router.delete("/v2.0/bgp-peers/{peer_id}", status_code=204, summary="Delete a BGP peer (and take it out of "
               "every speaker)", response_class=Response, responses=errors(403, 404))
async def delete_peer(peer_id: str, db: DB, caller: AdminCaller):
    async with db.lock:
        await _get(db, "bgp_peer", peer_id)
        ops: list[tuple] = []
        for speaker in await db.store.list("bgp_speaker"):
            if peer_id in speaker.body["peers"]:
                ops.append(("update", "bgp_speaker", speaker.id,
                            bumped({**speaker.body, "peers": [p for p in speaker.body["peers"] if p != peer_id]})))
        ops.append(("delete", "bgp_peer", peer_id))
        await db.commit(ops)
    return no_content()
