"""/v2/lbaas/...: load balancers in the shapes of OpenStack Octavia's v2 API, which the `lb`
app (kumoflow.apps.lb) compiles into flows and whose members it probes.

    /v2/lbaas/loadbalancers[/{id}]          (+ /{id}/status: the status tree, /{id}/stats)
    /v2/lbaas/listeners[/{id}]              (+ /{id}/stats)
    /v2/lbaas/pools[/{id}]
    /v2/lbaas/pools/{pool_id}/members[/{id}] (PUT on the list: Octavia's batch update)
    /v2/lbaas/healthmonitors[/{id}]
    /v2/lbaas/providers

A **load balancer** has a virtual IP: an address that a port of its own holds
(``device_owner`` ``Octavia``, ``device_id`` the load balancer, named
``octavia-lb-<id>``, in its project), so that IPAM never hands it to a VM;
the port goes with the load balancer. The address comes from
``vip_subnet_id`` or ``vip_network_id`` (allocated unless ``vip_address``
says which), or is one of a free port's (``vip_port_id``: a port of the
load balancer's project with no ``device_owner``, which the load balancer
takes while it exists and gives back, addresses and all, when it goes). A
**listener** takes connections on the VIP (``protocol`` TCP, UDP or HTTP,
``protocol_port``) to its ``default_pool_id``; a **pool** holds the
**members** it spreads them over (``lb_algorithm``, ``session_persistence``)
and at most one **health monitor** that probes them.

Writes are one store commit each, and the controller compiles from the
store: there is nothing pending to observe, so ``provisioning_status`` is
``ACTIVE`` after every successful write. ``operating_status`` is the
running `lb` app's (``ctx.core.app("lb").operating_status(kind, id)``:
ONLINE, OFFLINE, DEGRADED, ERROR, NO_MONITOR, DRAINING); a resource whose
``admin_state_up`` is false is OFFLINE, and so is everything when the
controller runs no `lb` app or the app does not know (None). Stats
(``bytes_in``, ``bytes_out``, ``active_connections``,
``total_connections``, ``request_errors``) are the app's
(``app.stats("loadbalancer" | "listener", id)``), zero without it.

Errors under /v2/lbaas have Octavia's body, ``{"faultcode": "Client" (4xx)
or "Server" (5xx), "faultstring": the message, "debuginfo": null}``
(`ERROR_SHAPE`, registered by the package's ``setup``). A project sees and
changes its own load balancer resources only (another project's are 404, as
if they did not exist); the admin sees all. A listener, pool, member or
health monitor belongs to its load balancer's project.

Stored records, one kind per resource, for the app to compile with no
lookup but by id (besides the record's id and project_id):

    loadbalancer   name, description, admin_state_up, vip_address, vip_subnet_id, vip_network_id,
                   vip_port_id, provider ("kumoflow"), flavor_id (null), tags
                   (+ _vip_port_given: the VIP port was the user's, given back on delete)
    listener       name, description, admin_state_up, loadbalancer_id, protocol ("TCP" | "UDP" |
                   "HTTP"), protocol_port, default_pool_id (or null), connection_limit (-1: none),
                   timeout_client_data, timeout_member_connect, timeout_member_data (ms),
                   insert_headers ({}), tags
    pool           name, description, admin_state_up, loadbalancer_id, listeners (ids of the
                   listeners whose default pool it is), protocol, lb_algorithm ("ROUND_ROBIN" |
                   "LEAST_CONNECTIONS" | "SOURCE_IP" | "SOURCE_IP_PORT"), session_persistence
                   (null or {type: "SOURCE_IP" | "HTTP_COOKIE" | "APP_COOKIE", cookie_name,
                   persistence_timeout (s), persistence_granularity (a netmask)}: each key there,
                   null when not given), tags
    member         name, admin_state_up, pool_id, address, protocol_port, weight (0-256; 0 drains),
                   subnet_id (always set: given, or the subnet found holding the address), backup,
                   monitor_address, monitor_port (null: the member's), tags
    healthmonitor  name, admin_state_up, pool_id, type ("TCP" | "HTTP" | "PING" | "UDP-CONNECT"),
                   delay, timeout (s), max_retries, max_retries_down, http_method, url_path,
                   expected_codes, http_version (1.0 | 1.1), domain_name (the http_* ones, url_path,
                   expected_codes: null unless type HTTP), tags

``expected_codes`` is stored as text, as shown: codes separated by commas
(``"200,202"``) or one range (``"200-204"``), each 100-599, no spaces;
`code_ranges` reads it. The user's guide is docs/api.md.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, StrictInt

from kumoflow.store import Record

from ..server import ApiError, Caller, Ctx, ErrorShape
from .common import (BOOL, DB, DESCRIPTION, INT, NAME, PROJECT_PATTERN, STR, TAG, Body, Who, answer, bumped,
                     conflict, fields_of, find, given, list_parameters, new_id, no_content, one_or_many, owns, pick,
                     project_of, select, show_parameters, shown)
from .db import NeutronDB, references
from .ports import Batch, assign_ips, new_mac, service_port
from .subnets import allocate, can_see

router = APIRouter(tags=["load balancers (Octavia v2)"])

PREFIX = "/v2/lbaas"
OCTAVIA = "Octavia"                 # the VIP port's device_owner, as Octavia sets it
PROVIDER = "kumoflow"
PROTOCOLS = ("TCP", "UDP", "HTTP")
#: a pool's protocol -> the listener protocols it may be the default pool of
POOL_FITS = {"HTTP": ("HTTP",), "TCP": ("TCP", "HTTP"), "UDP": ("UDP",)}
ALGORITHMS = ("ROUND_ROBIN", "LEAST_CONNECTIONS", "SOURCE_IP", "SOURCE_IP_PORT")
PERSISTENCE = ("SOURCE_IP", "HTTP_COOKIE", "APP_COOKIE")
MONITORS = ("TCP", "HTTP", "PING", "UDP-CONNECT")
#: a pool's protocol -> the health monitor types that can probe its members
MONITOR_FITS = {"TCP": ("TCP", "HTTP", "PING"), "HTTP": ("TCP", "HTTP", "PING"), "UDP": ("UDP-CONNECT", "TCP", "HTTP")}
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "PATCH", "CONNECT")
#: what kumoflow refuses, and why
NO_TLS = ("HTTPS", "TERMINATED_HTTPS", "TLS-HELLO")
NOT_HERE = ("SCTP", "PROMETHEUS", "PROXY", "PROXYV2")
TIMEOUTS = ("timeout_client_data", "timeout_member_connect", "timeout_member_data")
TIMEOUT_DEFAULTS = {"timeout_client_data": 50000, "timeout_member_connect": 5000, "timeout_member_data": 50000}
MAX_TIMEOUT = 24 * 60 * 60 * 1000            # ms, as Octavia
HTTP_ONLY = ("http_method", "url_path", "expected_codes", "http_version", "domain_name")
STATS = ("bytes_in", "bytes_out", "active_connections", "total_connections", "request_errors")
OPERATING = ("ONLINE", "OFFLINE", "DEGRADED", "ERROR", "NO_MONITOR", "DRAINING")
NAMES = {"loadbalancer": "Load Balancer", "listener": "Listener", "pool": "Pool", "member": "Member",
         "healthmonitor": "Health Monitor"}
EXPECTED_CODES = re.compile(r"^(\d{3}(,\d{3})*|\d{3}-\d{3})$")
COOKIE_NAME = re.compile(r"^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]{1,255}$")     # RFC 6265 token characters
DOMAIN_NAME = re.compile(r"^(?=.{1,255}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                         r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")
ID = Field(None, max_length=64)


# --- errors: Octavia's body -----------------------------------------------------------------------


class OctaviaError(BaseModel):
    """An error of the load balancer API (Octavia's shape)."""
    faultcode: str = Field(description="Client (4xx: the request) or Server (5xx)")
    faultstring: str = Field(description="what went wrong, for a person")
    debuginfo: str | None = Field(None, description="always null")


def octavia_error(status: int, type: str, message: str, detail: str) -> dict:
    faultstring = message if not detail or detail in message else f"{message} ({detail})"
    return {"faultcode": "Client" if status < 500 else "Server", "faultstring": faultstring, "debuginfo": None}


ERROR_SHAPE = ErrorShape(octavia_error, OctaviaError)


def errors(*codes: int) -> dict:
    text = {400: "Invalid request", 404: "Not found (or of another project)", 409: "In conflict with what exists"}
    return {code: {"model": OctaviaError, "description": text[code]} for code in codes}


def invalid(message: str) -> ApiError:
    return ApiError(400, "ValidationException", f"Validation failure: {message}")


def not_found(kind: str, id: str) -> ApiError:
    return ApiError(404, "NotFound", f"{NAMES[kind]} {id} not found.")


def _find(db: NeutronDB, caller: Caller, kind: str, id: str | None) -> Record:
    """A load balancer resource of the caller's project (any, for the admin), else 404."""
    record = db.get(kind, id) if id else None
    if record is None or not owns(caller, record):
        raise not_found(kind, str(id))
    return record


# --- one request's writes -------------------------------------------------------------------------


class Tx:
    """A request's writes, committed at once. Its checks read the bodies as its earlier writes
    leave them (a bulk create, a listener and the pool it takes as its default)."""

    def __init__(self, db: NeutronDB) -> None:
        self.db = db
        #: (kind, id) -> ("create", project, body) | ("update", body) | ("delete",), in order
        self.ops: dict[tuple[str, str], tuple] = {}

    def body(self, kind: str, id: str) -> dict:
        op = self.ops.get((kind, id))
        return self.db.get(kind, id).body if op is None else op[-1]

    def create(self, kind: str, id: str, body: dict, project: str) -> None:
        self.ops[(kind, id)] = ("create", project, body)

    def update(self, kind: str, id: str, body: dict) -> None:
        op = self.ops.get((kind, id))
        self.ops[(kind, id)] = ("create", op[1], body) if op and op[0] == "create" else ("update", body)

    def delete(self, kind: str, id: str) -> None:
        if self.ops.get((kind, id), ("",))[0] == "create":
            del self.ops[(kind, id)]
        else:
            self.ops[(kind, id)] = ("delete",)

    def referring(self, kind: str, id: str, of_kind: str) -> dict[str, dict]:
        """id -> body of the records of `of_kind` that refer to (kind, id), after this request."""
        found = {r.id: r.body for r in self.db.referring(kind, id, of_kind)}
        for (k, i), op in self.ops.items():
            if k != of_kind:
                continue
            if op[0] != "delete" and (kind, id) in references(Record(k, i, "", 0, "", "", op[-1])):
                found[i] = op[-1]
            else:
                found.pop(i, None)
        return found

    async def commit(self) -> None:
        ops: list[tuple] = []
        for (kind, id), op in self.ops.items():
            if op[0] == "create":
                ops.append(("create", kind, op[2], op[1], id))
            elif op[0] == "update":
                ops.append(("update", kind, id, bumped(op[1])))
            else:
                ops.append(("delete", kind, id))
        await self.db.commit(ops)


# --- what the lb app says -------------------------------------------------------------------------


class Health:
    """operating_status and stats from the controller's `lb` app, when it runs one."""

    def __init__(self, ctx: Any) -> None:
        try:
            self.app = ctx.core.app("lb")
        except KeyError:
            self.app = None

    def status(self, kind: str, record: Record) -> str:
        if self.app is None or not record.body.get("admin_state_up", True):
            return "OFFLINE"
        return self.app.operating_status(kind, record.id) or "OFFLINE"

    def stats(self, kind: str, id: str) -> dict:
        counted = (self.app.stats(kind, id) if self.app is not None else None) or {}
        return {"stats": {name: int(counted.get(name, 0)) for name in STATS}}


# --- bodies ---------------------------------------------------------------------------------------


class _Owned(Body):
    name: NAME = ""
    project_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    tenant_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    admin_state_up: bool = True
    tags: list[TAG] = Field(default_factory=list, max_length=50)


class _Change(Body):
    name: NAME | None = None
    admin_state_up: bool | None = None
    tags: list[TAG] | None = Field(None, max_length=50)


class LoadBalancerCreate(_Owned):
    description: DESCRIPTION = ""
    vip_subnet_id: str | None = Field(None, max_length=64, description="allocate the VIP from this subnet")
    vip_network_id: str | None = Field(None, max_length=64, description="allocate the VIP from this network")
    vip_port_id: str | None = Field(None, max_length=64, description="a free port of the project that holds the "
                                                                    "VIP address")
    vip_address: str | None = Field(None, max_length=64, description="this address (default: allocated)")
    provider: str | None = Field(None, max_length=64, description='"kumoflow" (the only one)')
    flavor_id: str | None = Field(None, max_length=64, description="null: kumoflow has no flavors")


class LoadBalancerUpdate(_Change):
    description: DESCRIPTION | None = None


class ListenerCreate(_Owned):
    description: DESCRIPTION = ""
    loadbalancer_id: str = Field(max_length=64)
    protocol: str = Field(max_length=32, description="TCP, UDP or HTTP")
    protocol_port: StrictInt = Field(description="1-65535, unique per load balancer and TCP/UDP")
    default_pool_id: str | None = ID
    connection_limit: StrictInt = Field(-1, description="-1: no limit")
    timeout_client_data: StrictInt = Field(50000, description="ms")
    timeout_member_connect: StrictInt = Field(5000, description="ms")
    timeout_member_data: StrictInt = Field(50000, description="ms")
    insert_headers: dict[str, str] = Field(default_factory=dict, description="{} only: no header is inserted")


class ListenerUpdate(_Change):
    description: DESCRIPTION | None = None
    default_pool_id: str | None = ID
    connection_limit: StrictInt | None = None
    timeout_client_data: StrictInt | None = None
    timeout_member_connect: StrictInt | None = None
    timeout_member_data: StrictInt | None = None
    insert_headers: dict[str, str] | None = None


class SessionPersistence(Body):
    type: str = Field(max_length=32, description="SOURCE_IP, HTTP_COOKIE or APP_COOKIE")
    cookie_name: str | None = Field(None, max_length=255, description="APP_COOKIE only, and needed there")
    persistence_timeout: StrictInt | None = Field(None, description="s (SOURCE_IP)")
    persistence_granularity: str | None = Field(None, max_length=64, description="a netmask (SOURCE_IP)")


class PoolCreate(_Owned):
    description: DESCRIPTION = ""
    loadbalancer_id: str | None = ID
    listener_id: str | None = Field(None, max_length=64, description="the pool becomes this listener's default pool")
    protocol: str = Field(max_length=32, description="TCP, UDP or HTTP")
    lb_algorithm: str = Field(max_length=32, description=", ".join(ALGORITHMS))
    session_persistence: SessionPersistence | None = None


class PoolUpdate(_Change):
    description: DESCRIPTION | None = None
    lb_algorithm: str | None = Field(None, max_length=32)
    session_persistence: SessionPersistence | None = None


class MemberCreate(_Owned):
    address: str = Field(max_length=64)
    protocol_port: StrictInt
    weight: StrictInt = Field(1, description="0-256; 0: no new connections (drain)")
    subnet_id: str | None = Field(None, max_length=64, description="default: the subnet that holds the address")
    backup: bool = False
    monitor_address: str | None = Field(None, max_length=64)
    monitor_port: StrictInt | None = None


class MemberUpdate(_Change):
    weight: StrictInt | None = None
    backup: bool | None = None
    monitor_address: str | None = Field(None, max_length=64)
    monitor_port: StrictInt | None = None


class HealthMonitorCreate(_Owned):
    pool_id: str = Field(max_length=64)
    type: str = Field(max_length=32, description=", ".join(MONITORS))
    delay: StrictInt = Field(description="s between probes, >= 1")
    timeout: StrictInt = Field(description="s a probe may take, 1..delay")
    max_retries: StrictInt = Field(description="1-10 successes to be ONLINE")
    max_retries_down: StrictInt = Field(3, description="1-10 failures to be ERROR")
    http_method: str | None = Field(None, max_length=16, description="HTTP: default GET")
    url_path: str | None = Field(None, max_length=2048, description='HTTP: default "/"')
    expected_codes: str | None = Field(None, max_length=64, description='HTTP: "200" (default), "200,202", "200-204"')
    http_version: float | None = Field(None, description="HTTP: 1.0 (default) or 1.1")
    domain_name: str | None = Field(None, max_length=255, description="HTTP 1.1: the Host header")


class HealthMonitorUpdate(_Change):
    delay: StrictInt | None = None
    timeout: StrictInt | None = None
    max_retries: StrictInt | None = None
    max_retries_down: StrictInt | None = None
    http_method: str | None = Field(None, max_length=16)
    url_path: str | None = Field(None, max_length=2048)
    expected_codes: str | None = Field(None, max_length=64)
    http_version: float | None = None
    domain_name: str | None = Field(None, max_length=255)


class LoadBalancerCreateRequest(Body):
    loadbalancer: LoadBalancerCreate | None = None
    loadbalancers: list[LoadBalancerCreate] | None = Field(None, min_length=1, max_length=100)


class LoadBalancerUpdateRequest(Body):
    loadbalancer: LoadBalancerUpdate


class ListenerCreateRequest(Body):
    listener: ListenerCreate | None = None
    listeners: list[ListenerCreate] | None = Field(None, min_length=1, max_length=100)


class ListenerUpdateRequest(Body):
    listener: ListenerUpdate


class PoolCreateRequest(Body):
    pool: PoolCreate | None = None
    pools: list[PoolCreate] | None = Field(None, min_length=1, max_length=100)


class PoolUpdateRequest(Body):
    pool: PoolUpdate


class MemberCreateRequest(Body):
    member: MemberCreate | None = None
    members: list[MemberCreate] | None = Field(None, min_length=1, max_length=1000)


class MemberUpdateRequest(Body):
    member: MemberUpdate


class MembersBatchRequest(Body):
    members: list[MemberCreate] = Field(max_length=1000, description="the pool's members, as they are to be")


class HealthMonitorCreateRequest(Body):
    healthmonitor: HealthMonitorCreate | None = None
    healthmonitors: list[HealthMonitorCreate] | None = Field(None, min_length=1, max_length=100)


class HealthMonitorUpdateRequest(Body):
    healthmonitor: HealthMonitorUpdate


# --- answers --------------------------------------------------------------------------------------


class Ref(BaseModel):
    id: str


class _Shown(BaseModel):
    id: str = None
    name: str = None
    project_id: str = None
    admin_state_up: bool = None
    provisioning_status: str = Field(None, description="ACTIVE: every write is done when it is answered")
    operating_status: str = Field(None, description=f"{', '.join(OPERATING)}: the lb app's (OFFLINE without it)")
    tags: list[str] = None
    created_at: str = None
    updated_at: str = None


class LoadBalancer(_Shown):
    """A load balancer (every attribute is there unless `fields` asked for others)."""
    description: str = None
    vip_address: str = None
    vip_subnet_id: str = None
    vip_network_id: str = None
    vip_port_id: str = None
    provider: str = None
    flavor_id: str | None = None
    listeners: list[Ref] = None
    pools: list[Ref] = None


class Listener(_Shown):
    """A listener (every attribute is there unless `fields` asked for others)."""
    description: str = None
    loadbalancer_id: str = None
    loadbalancers: list[Ref] = None
    protocol: str = None
    protocol_port: int = None
    default_pool_id: str | None = None
    connection_limit: int = None
    timeout_client_data: int = None
    timeout_member_connect: int = None
    timeout_member_data: int = None
    insert_headers: dict[str, str] = None
    l7policies: list[Ref] = None


class SessionPersistenceOut(BaseModel):
    type: str
    cookie_name: str | None = None
    persistence_timeout: int | None = None
    persistence_granularity: str | None = None


class Pool(_Shown):
    """A pool (every attribute is there unless `fields` asked for others)."""
    description: str = None
    loadbalancer_id: str = None
    loadbalancers: list[Ref] = None
    listeners: list[Ref] = None
    protocol: str = None
    lb_algorithm: str = None
    session_persistence: SessionPersistenceOut | None = None
    members: list[Ref] = None
    healthmonitor_id: str | None = None


class Member(_Shown):
    """A member (every attribute is there unless `fields` asked for others)."""
    pool_id: str = None
    address: str = None
    protocol_port: int = None
    weight: int = None
    subnet_id: str = None
    backup: bool = None
    monitor_address: str | None = None
    monitor_port: int | None = None


class HealthMonitor(_Shown):
    """A health monitor (every attribute is there unless `fields` asked for others)."""
    pool_id: str = None
    pools: list[Ref] = None
    type: str = None
    delay: int = None
    timeout: int = None
    max_retries: int = None
    max_retries_down: int = None
    http_method: str | None = None
    url_path: str | None = None
    expected_codes: str | None = None
    http_version: float | None = None
    domain_name: str | None = None


class LoadBalancerResponse(BaseModel):
    loadbalancer: LoadBalancer


class LoadBalancerList(BaseModel):
    loadbalancers: list[LoadBalancer]


class ListenerResponse(BaseModel):
    listener: Listener


class ListenerList(BaseModel):
    listeners: list[Listener]


class PoolResponse(BaseModel):
    pool: Pool


class PoolList(BaseModel):
    pools: list[Pool]


class MemberResponse(BaseModel):
    member: Member


class MemberList(BaseModel):
    members: list[Member]


class HealthMonitorResponse(BaseModel):
    healthmonitor: HealthMonitor


class HealthMonitorList(BaseModel):
    healthmonitors: list[HealthMonitor]


class Stats(BaseModel):
    bytes_in: int
    bytes_out: int
    active_connections: int
    total_connections: int
    request_errors: int


class StatsResponse(BaseModel):
    stats: Stats


class StatusResponse(BaseModel):
    statuses: dict[str, Any] = Field(description='{"loadbalancer": {id, name, provisioning_status, '
                                                 'operating_status, listeners: [{..., pools: [{..., health_monitor, '
                                                 'members: [...]}]}]}}')


class Provider(BaseModel):
    name: str
    description: str


class ProviderList(BaseModel):
    providers: list[Provider]


_ATTRS = {"id": STR, "name": STR, "project_id": STR, "admin_state_up": BOOL, "provisioning_status": STR,
          "operating_status": STR}
LB_ATTRS = {**_ATTRS, "description": STR, "vip_address": STR, "vip_subnet_id": STR, "vip_network_id": STR,
            "vip_port_id": STR, "provider": STR, "flavor_id": STR}
LISTENER_ATTRS = {**_ATTRS, "description": STR, "loadbalancer_id": STR, "protocol": STR, "protocol_port": INT,
                  "default_pool_id": STR, "connection_limit": INT, "timeout_client_data": INT,
                  "timeout_member_connect": INT, "timeout_member_data": INT}
POOL_ATTRS = {**_ATTRS, "description": STR, "loadbalancer_id": STR, "protocol": STR, "lb_algorithm": STR,
              "healthmonitor_id": STR}
MEMBER_ATTRS = {**_ATTRS, "address": STR, "protocol_port": INT, "weight": INT, "subnet_id": STR, "backup": BOOL,
                "monitor_address": STR, "monitor_port": INT}
MONITOR_ATTRS = {**_ATTRS, "pool_id": STR, "type": STR, "delay": INT, "timeout": INT, "max_retries": INT,
                 "max_retries_down": INT, "http_method": STR, "url_path": STR, "expected_codes": STR}
STATUSES = frozenset({"provisioning_status", "operating_status"})


# --- views --------------------------------------------------------------------------------------


def _refs(ids: Any) -> list[dict]:
    return [{"id": i} for i in ids]


def _base(kind: str, health: Health, r: Record) -> dict:
    return {"id": r.id, "project_id": r.project_id, **shown(r.body), "provisioning_status": "ACTIVE",
            "operating_status": health.status(kind, r), "created_at": r.created_at, "updated_at": r.updated_at}


def lb_view(db: NeutronDB, health: Health, r: Record) -> dict:
    return {**_base("loadbalancer", health, r),
            "listeners": _refs(x.id for x in db.referring("loadbalancer", r.id, "listener")),
            "pools": _refs(x.id for x in db.referring("loadbalancer", r.id, "pool"))}


def listener_view(health: Health, r: Record) -> dict:
    return {**_base("listener", health, r), "loadbalancers": _refs([r.body["loadbalancer_id"]]), "l7policies": []}


def _monitor_of(db: NeutronDB, pool_id: str) -> Record | None:
    found = db.referring("pool", pool_id, "healthmonitor")
    return found[0] if found else None


def pool_view(db: NeutronDB, health: Health, r: Record) -> dict:
    monitor = _monitor_of(db, r.id)
    return {**_base("pool", health, r), "loadbalancers": _refs([r.body["loadbalancer_id"]]),
            "listeners": _refs(r.body["listeners"]),
            "members": _refs(m.id for m in db.referring("pool", r.id, "member")),
            "healthmonitor_id": monitor.id if monitor is not None else None}


def member_view(health: Health, r: Record) -> dict:
    return _base("member", health, r)


def monitor_view(health: Health, r: Record) -> dict:
    return {**_base("healthmonitor", health, r), "pools": _refs([r.body["pool_id"]])}


def status_tree(db: NeutronDB, health: Health, lb: Record) -> dict:
    """Octavia's status tree: the load balancer, its listeners, their default pools with their
    health monitor and members."""

    def node(kind: str, r: Record, **more: Any) -> dict:
        return {"id": r.id, "name": r.body["name"], "provisioning_status": "ACTIVE",
                "operating_status": health.status(kind, r), **more}

    listeners = []
    for listener in db.referring("loadbalancer", lb.id, "listener"):
        pools = []
        pool = db.get("pool", listener.body["default_pool_id"] or "")
        if pool is not None:
            members = [node("member", m, address=m.body["address"], protocol_port=m.body["protocol_port"])
                       for m in db.referring("pool", pool.id, "member")]
            monitor = _monitor_of(db, pool.id)
            extra = {"health_monitor": node("healthmonitor", monitor, type=monitor.body["type"])} if monitor else {}
            pools.append(node("pool", pool, **extra, members=members))
        listeners.append(node("listener", listener, pools=pools))
    return {"statuses": {"loadbalancer": node("loadbalancer", lb, listeners=listeners)}}


# --- checks -------------------------------------------------------------------------------------


def _no_nulls(values: dict, nullable: tuple[str, ...] = ()) -> None:
    for name, value in values.items():
        if value is None and name not in nullable:
            raise invalid(f"{name} must not be null")


def _within(name: str, value: int, low: int, high: int | None = None) -> int:
    if value < low or (high is not None and value > high):
        raise invalid(f"{name} {value} is out of range {low}.." + (str(high) if high is not None else ""))
    return value


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> str:
    """`value` (any case) as one of `allowed`, or 400 saying why not."""
    upper = value.upper()
    if upper in allowed:
        return upper
    if upper in NO_TLS:
        why = "kumoflow does not terminate TLS" + (" (a TCP listener passes TLS through to the members)"
                                                    if name == "protocol" else "")
    elif upper in NOT_HERE:
        why = "kumoflow does not have it"
    else:
        why = "unknown"
    raise invalid(f"{name} {value!r} is not available: {why}; {name}s: {', '.join(allowed)}")


def _ip(name: str, text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise invalid(f"{name} {text!r} is not an IP address") from None


def _project(caller: Caller, values: dict, lb: Record) -> str:
    """A load balancer's listener, pool, member or monitor is in its project (naming another: 400)."""
    if not {"project_id", "tenant_id"} & set(values):
        return lb.project_id
    project = project_of(caller, values)
    if project != lb.project_id:
        raise invalid(f"project_id {project} is not the load balancer's ({lb.project_id})")
    return project


def _usable(db: NeutronDB, project: str, subnet: Record) -> bool:
    """A subnet of a network the project may use: its own, shared or external."""
    network = db.get("network", subnet.body["network_id"])
    return network is not None and (network.project_id == project or bool(
        network.body.get("shared") or network.body.get("router:external")))


# load balancers and their VIP


def _vip(tx: Tx, caller: Caller, item: LoadBalancerCreate, project: str, lb_id: str, batch: Batch) -> dict:
    """The VIP attributes of a new load balancer; the port that holds its address made (or taken)
    in `tx`."""
    db = tx.db
    if not (item.vip_subnet_id or item.vip_network_id or item.vip_port_id):
        raise invalid("a load balancer needs a VIP: give vip_subnet_id, vip_network_id or vip_port_id")
    subnet = network = None
    if item.vip_subnet_id:
        subnet = find(db, caller, "subnet", item.vip_subnet_id, lambda r: can_see(db, caller, r))
    if item.vip_network_id:
        network = find(db, caller, "network", item.vip_network_id)
        if subnet is not None and subnet.body["network_id"] != network.id:
            raise invalid(f"vip_subnet_id {subnet.id} is not a subnet of vip_network_id {network.id}")
    address = _ip("vip_address", item.vip_address) if item.vip_address is not None else None
    if item.vip_port_id:
        return _taken_port(tx, caller, item.vip_port_id, project, lb_id, network, subnet, address)
    network = network or db.get("network", subnet.body["network_id"])
    if subnet is not None or address is not None:
        spec = {**({"subnet_id": subnet.id} if subnet is not None else {}),
                **({"ip_address": address} if address is not None else {})}
        fixed = assign_ips(db, batch, network, [spec], OCTAVIA)
    else:
        fixed = [_free_address(db, batch, network)]
    port_id = new_id()
    tx.create("port", port_id, service_port(network.id, fixed, new_mac(db, batch), lb_id, OCTAVIA,
                                            name=f"octavia-lb-{lb_id}"), project)
    return {"vip_address": fixed[0]["ip_address"], "vip_subnet_id": fixed[0]["subnet_id"],
            "vip_network_id": network.id, "vip_port_id": port_id}


def _free_address(db: NeutronDB, batch: Batch, network: Record) -> dict:
    """An address of the network (its IPv4 subnets first), as a fixed IP."""
    subnets = sorted(db.referring("network", network.id, "subnet"), key=lambda s: s.body["ip_version"])
    if not subnets:
        raise invalid(f"vip_network_id {network.id} has no subnet to take a VIP address from")
    for subnet in subnets:
        address = allocate(db, subnet, batch.ips.get(subnet.id, set()))
        if address is not None:
            batch.ips.setdefault(subnet.id, set()).add(address)
            return {"subnet_id": subnet.id, "ip_address": address}
    raise conflict("IpAddressGenerationFailure", f"No more IP addresses available on network {network.id}.")


def _taken_port(tx: Tx, caller: Caller, port_id: str, project: str, lb_id: str, network: Record | None,
                subnet: Record | None, address: str | None) -> dict:
    """vip_port_id: a free port of the load balancer's project, one of whose addresses becomes the VIP."""
    port = find(tx.db, caller, "port", port_id, lambda r: owns(caller, r))
    body = tx.body("port", port_id)          # (taken by a load balancer made earlier in this request?)
    if port.project_id != project:
        raise invalid(f"vip_port_id {port_id} is a port of project {port.project_id}, not of the load balancer's "
                      f"({project})")
    if body.get("device_owner") or body.get("device_id"):
        raise conflict("PortInUse", f"vip_port_id {port_id} is in use (device_owner {body.get('device_owner')!r}, "
                                    f"device_id {body.get('device_id')!r}): a VIP needs a free port.")
    if network is not None and body["network_id"] != network.id:
        raise invalid(f"vip_port_id {port_id} is not on vip_network_id {network.id}")
    fits = [ip for ip in body["fixed_ips"] if (subnet is None or ip["subnet_id"] == subnet.id)
            and (address is None or ip["ip_address"] == address)]
    if not fits:
        raise invalid(f"vip_port_id {port_id} has no address" + (f" {address}" if address else "")
                      + (f" on vip_subnet_id {subnet.id}" if subnet is not None else ""))
    chosen = min(fits, key=lambda ip: ipaddress.ip_address(ip["ip_address"]).version)      # IPv4 first
    tx.update("port", port_id, {**body, "device_owner": OCTAVIA, "device_id": lb_id})
    return {"vip_address": chosen["ip_address"], "vip_subnet_id": chosen["subnet_id"],
            "vip_network_id": body["network_id"], "vip_port_id": port_id, "_vip_port_given": True}


def _release_vip(tx: Tx, lb: Record) -> None:
    """The VIP port goes with the load balancer; a port the user gave is given back."""
    port_id = lb.body["vip_port_id"]
    port = tx.db.get("port", port_id)
    if port is None:
        return
    if lb.body.get("_vip_port_given"):
        tx.update("port", port_id, {**port.body, "device_owner": "", "device_id": ""})
    else:
        tx.delete("port", port_id)


# listeners


def _pool_fits(pool: dict, listener: dict, what: str) -> None:
    if listener["protocol"] not in POOL_FITS[pool["protocol"]]:
        raise invalid(f"{what}: a {pool['protocol']} pool cannot serve a {listener['protocol']} listener (an HTTP "
                      f"pool serves HTTP listeners, a TCP pool TCP or HTTP ones, a UDP pool UDP ones)")


def _family(protocol: str) -> str:
    return "UDP" if protocol == "UDP" else "TCP"


def checked_listener(tx: Tx, caller: Caller, new: dict, listener_id: str) -> dict:
    """A listener's attributes (all of them: given, defaulted or stored) checked; its default pool,
    if any, takes it in `tx`."""
    new["protocol"] = _one_of("protocol", new["protocol"], PROTOCOLS)
    _within("protocol_port", new["protocol_port"], 1, 65535)
    for other_id, other in tx.referring("loadbalancer", new["loadbalancer_id"], "listener").items():
        if other_id != listener_id and other["protocol_port"] == new["protocol_port"] and \
                _family(other["protocol"]) == _family(new["protocol"]):
            raise conflict("DuplicateListener", f"Another Listener on this Load Balancer is already using "
                                                f"protocol_port {new['protocol_port']} ({_family(new['protocol'])}): "
                                                f"listener {other_id}.")
    if new["connection_limit"] != -1 and new["connection_limit"] < 1:
        raise invalid(f"connection_limit {new['connection_limit']} must be -1 (no limit) or at least 1")
    for name in TIMEOUTS:
        _within(name, new[name], 0, MAX_TIMEOUT)
    if new["insert_headers"]:
        raise invalid(f"insert_headers {new['insert_headers']}: kumoflow forwards connections and inserts no "
                      f"header; give {{}}")
    pool_id = new["default_pool_id"]
    if pool_id is not None:
        pool = _find(tx.db, caller, "pool", pool_id)
        body = tx.body("pool", pool.id)
        if body["loadbalancer_id"] != new["loadbalancer_id"]:
            raise invalid(f"default_pool_id {pool_id} is a pool of load balancer {body['loadbalancer_id']}, not of "
                          f"{new['loadbalancer_id']}")
        _pool_fits(body, new, f"default_pool_id {pool_id}")
        if listener_id not in body["listeners"]:
            tx.update("pool", pool_id, {**body, "listeners": [*body["listeners"], listener_id]})
    return new


def _leave_pool(tx: Tx, pool_id: str | None, listener_id: str) -> None:
    """The listener no longer has `pool_id` as its default pool."""
    if pool_id is None or tx.db.get("pool", pool_id) is None:
        return
    body = tx.body("pool", pool_id)
    tx.update("pool", pool_id, {**body, "listeners": [i for i in body["listeners"] if i != listener_id]})


# pools


def _persistence(value: dict | None, protocol: str) -> dict | None:
    if value is None:
        return None
    kind = _one_of("session_persistence type", value["type"], PERSISTENCE)
    out = {"type": kind, "cookie_name": value.get("cookie_name"),
           "persistence_timeout": value.get("persistence_timeout"),
           "persistence_granularity": value.get("persistence_granularity")}
    if kind != "SOURCE_IP" and protocol != "HTTP":
        raise invalid(f"session_persistence type {kind} needs an HTTP pool, not {protocol}")
    if kind == "APP_COOKIE":
        if not out["cookie_name"]:
            raise invalid("session_persistence type APP_COOKIE needs a cookie_name")
        if not COOKIE_NAME.match(out["cookie_name"]):
            raise invalid(f"session_persistence cookie_name {out['cookie_name']!r} is not a cookie name")
    elif out["cookie_name"] is not None:
        raise invalid(f"session_persistence cookie_name is for type APP_COOKIE, not {kind}")
    for name in ("persistence_timeout", "persistence_granularity"):
        if out[name] is not None and kind != "SOURCE_IP":
            raise invalid(f"session_persistence {name} is for type SOURCE_IP, not {kind}")
    if out["persistence_timeout"] is not None:
        _within("session_persistence persistence_timeout", out["persistence_timeout"], 1)
    if out["persistence_granularity"] is not None:
        out["persistence_granularity"] = _netmask(out["persistence_granularity"])
    return out


def _netmask(text: str) -> str:
    try:
        mask = ipaddress.ip_address(text)
    except ValueError:
        mask = None
    bits = int(mask) if mask is not None else -1
    ones = bin(bits).count("1") if mask is not None else 0
    if mask is None or bits != ((1 << ones) - 1) << (mask.max_prefixlen - ones):
        raise invalid(f"session_persistence persistence_granularity {text!r} is not a netmask (e.g. 255.255.255.0)")
    return str(mask)


def checked_pool(new: dict) -> dict:
    new["lb_algorithm"] = _one_of("lb_algorithm", new["lb_algorithm"], ALGORITHMS)
    new["session_persistence"] = _persistence(new["session_persistence"], new["protocol"])
    return new


# members


def _member_subnet(db: NeutronDB, caller: Caller, lb: dict, project: str, address: str, subnet_id: str | None) -> str:
    """The member's subnet: the one given, which must hold the address; else the one that holds it
    among the subnets the project may use (the VIP's first)."""
    ip = ipaddress.ip_address(address)
    if subnet_id is not None:
        subnet = find(db, caller, "subnet", subnet_id, lambda r: can_see(db, caller, r))
        if ip not in ipaddress.ip_network(subnet.body["cidr"]):
            raise invalid(f"member address {address} is not in subnet_id {subnet_id} ({subnet.body['cidr']})")
        return subnet.id
    vip = db.get("subnet", lb["vip_subnet_id"])
    if vip is not None and ip in ipaddress.ip_network(vip.body["cidr"]):
        return vip.id
    found = [s.id for s in db.all("subnet") if ip in ipaddress.ip_network(s.body["cidr"]) and _usable(db, project, s)]
    if not found:
        raise invalid(f"member address {address} is in no subnet of a network project {project} may use: give "
                      f"subnet_id, or an address of one")
    if len(found) > 1:
        raise invalid(f"member address {address} is in several subnets ({', '.join(found)}): give subnet_id")
    return found[0]


def new_member(tx: Tx, caller: Caller, item: MemberCreate, pool: Record, lb: Record) -> tuple[dict, str]:
    """A new member's body and project, checked (its address and port free in the pool, in `tx`)."""
    project = _project(caller, given(item), lb)
    address = _ip("address", item.address)
    vip = ipaddress.ip_address(lb.body["vip_address"])
    if ipaddress.ip_address(address).version != vip.version:
        raise invalid(f"member address {address} is IPv{6 if vip.version == 4 else 4}, the load balancer's VIP "
                      f"{vip} IPv{vip.version}: kumoflow does not translate between IP versions")
    _within("protocol_port", item.protocol_port, 1, 65535)
    for other_id, other in tx.referring("pool", pool.id, "member").items():
        if (other["address"], other["protocol_port"]) == (address, item.protocol_port):
            raise conflict("DuplicateMemberEntry", f"Another member on this pool is already using ip {address} on "
                                                   f"protocol_port {item.protocol_port}: member {other_id}.")
    body = {"name": item.name, "admin_state_up": item.admin_state_up, "pool_id": pool.id, "address": address,
            "protocol_port": item.protocol_port, "weight": item.weight,
            "subnet_id": _member_subnet(tx.db, caller, lb.body, project, address, item.subnet_id),
            "backup": item.backup, "monitor_address": item.monitor_address, "monitor_port": item.monitor_port,
            "tags": list(item.tags)}
    return checked_member(body), project


def checked_member(new: dict) -> dict:
    _within("weight", new["weight"], 0, 256)
    if new["monitor_address"] is not None:
        new["monitor_address"] = _ip("monitor_address", new["monitor_address"])
    if new["monitor_port"] is not None:
        _within("monitor_port", new["monitor_port"], 1, 65535)
    return new


# health monitors


def code_ranges(text: str) -> list[tuple[int, int]]:
    """A health monitor's expected_codes as (low, high) ranges: "200,202" is [(200, 200), (202, 202)],
    "200-204" [(200, 204)]. ValueError if it is not one of those forms, with codes 100-599."""
    text = text.replace(" ", "")
    if not EXPECTED_CODES.match(text):
        raise ValueError(f"expected_codes {text!r}: give a code (200), codes (200,202) or a range (200-204)")
    if "-" in text:
        low, high = map(int, text.split("-"))
        ranges = [(low, high)]
    else:
        ranges = [(int(code), int(code)) for code in text.split(",")]
    for low, high in ranges:
        if not 100 <= low <= high <= 599:
            raise ValueError(f"expected_codes {text!r}: HTTP status codes are 100-599, a range low-high")
    return ranges


def checked_monitor(new: dict, pool_protocol: str) -> dict:
    """A health monitor's attributes (all of them) checked; the HTTP ones defaulted for type HTTP."""
    new["type"] = _one_of("type", new["type"], MONITORS)
    if new["type"] not in MONITOR_FITS[pool_protocol]:
        raise invalid(f"type {new['type']} cannot probe the members of a {pool_protocol} pool: "
                      f"{', '.join(MONITOR_FITS[pool_protocol])} can")
    _within("delay", new["delay"], 1)
    _within("timeout", new["timeout"], 1)
    if new["timeout"] > new["delay"]:
        raise invalid(f"timeout {new['timeout']} must not be longer than delay {new['delay']}")
    _within("max_retries", new["max_retries"], 1, 10)
    _within("max_retries_down", new["max_retries_down"], 1, 10)
    if new["type"] != "HTTP":
        for name in HTTP_ONLY:
            if new[name] is not None:
                raise invalid(f"{name} is for HTTP health monitors, not {new['type']}")
        return new
    new["http_method"] = _one_of("http_method", new["http_method"] or "GET", HTTP_METHODS)
    path = new["url_path"] if new["url_path"] is not None else "/"
    if not path.startswith("/") or any(c.isspace() or ord(c) < 32 for c in path):
        raise invalid(f"url_path {path!r} must start with '/' and hold no spaces")
    new["url_path"] = path
    try:
        code_ranges(new["expected_codes"] if new["expected_codes"] is not None else "200")
    except ValueError as exc:
        raise invalid(str(exc)) from None
    new["expected_codes"] = (new["expected_codes"] or "200").replace(" ", "")
    version = new["http_version"] if new["http_version"] is not None else 1.0
    if version not in (1.0, 1.1):
        raise invalid(f"http_version {version} is not 1.0 or 1.1")
    new["http_version"] = version
    if new["domain_name"] is not None:
        if version != 1.1:
            raise invalid("domain_name needs http_version 1.1")
        if not DOMAIN_NAME.match(new["domain_name"]):
            raise invalid(f"domain_name {new['domain_name']!r} is not a domain name")
    return new


# --- routes: load balancers -------------------------------------------------------------------------


def _show(request: Request, key: str, item: dict) -> Any:
    fields = fields_of(request)
    return answer({key: pick(item, fields) if fields else item})


def _made(plural: str, single: str, items: list[dict], bulk: bool) -> Any:
    return answer({plural: items} if bulk else {single: items[0]}, 201)


def _list(request: Request, caller: Caller, key: str, records: list[Record], attrs: dict,
          render: Callable[[Record], dict], computed: frozenset = STATUSES) -> Any:
    return answer({key: select(request, [r for r in records if owns(caller, r)], attrs, render=render,
                               computed=computed)})


@router.post(f"{PREFIX}/loadbalancers", status_code=201, summary="Create a load balancer (or several: bulk)",
             response_model=LoadBalancerResponse | LoadBalancerList, responses=errors(400, 404, 409))
async def create_loadbalancers(body: LoadBalancerCreateRequest, ctx: Ctx, db: DB, caller: Who) -> Any:
    items, bulk = one_or_many(body, "loadbalancer", "loadbalancers")
    async with db.lock:
        tx, batch, ids = Tx(db), Batch(), []
        for item in items:
            project = project_of(caller, given(item))
            if item.provider not in (None, PROVIDER):
                raise invalid(f"provider {item.provider!r} is not available: kumoflow's load balancers are provider "
                              f"{PROVIDER!r}")
            if item.flavor_id is not None:
                raise invalid(f"flavor_id {item.flavor_id!r}: kumoflow has no flavors (give null)")
            lb_id = new_id()
            vip = _vip(tx, caller, item, project, lb_id, batch)
            tx.create("loadbalancer", lb_id, {
                "name": item.name, "description": item.description, "admin_state_up": item.admin_state_up, **vip,
                "provider": PROVIDER, "flavor_id": None, "tags": list(item.tags)}, project)
            ids.append(lb_id)
        await tx.commit()
    health = Health(ctx)
    return _made("loadbalancers", "loadbalancer", [lb_view(db, health, db.get("loadbalancer", i)) for i in ids], bulk)


@router.get(f"{PREFIX}/loadbalancers", summary="List load balancers", response_model=LoadBalancerList,
            responses=errors(400), openapi_extra=list_parameters(LB_ATTRS))
async def list_loadbalancers(request: Request, ctx: Ctx, db: DB, caller: Who) -> Any:
    health = Health(ctx)
    return _list(request, caller, "loadbalancers", db.all("loadbalancer"), LB_ATTRS,
                 lambda r: lb_view(db, health, r))


@router.get(PREFIX + "/loadbalancers/{loadbalancer_id}", summary="Show a load balancer",
            response_model=LoadBalancerResponse, responses=errors(404), openapi_extra=show_parameters())
async def show_loadbalancer(loadbalancer_id: str, request: Request, ctx: Ctx, db: DB, caller: Who) -> Any:
    return _show(request, "loadbalancer", lb_view(db, Health(ctx), _find(db, caller, "loadbalancer", loadbalancer_id)))


@router.put(PREFIX + "/loadbalancers/{loadbalancer_id}", summary="Update a load balancer",
            response_model=LoadBalancerResponse, responses=errors(400, 404))
async def update_loadbalancer(loadbalancer_id: str, body: LoadBalancerUpdateRequest, ctx: Ctx, db: DB,
                              caller: Who) -> Any:
    async with db.lock:
        record = _find(db, caller, "loadbalancer", loadbalancer_id)
        values = given(body.loadbalancer)
        _no_nulls(values)
        tx = Tx(db)
        tx.update("loadbalancer", record.id, {**record.body, **values})
        await tx.commit()
    return answer({"loadbalancer": lb_view(db, Health(ctx), db.get("loadbalancer", record.id))})


@router.delete(PREFIX + "/loadbalancers/{loadbalancer_id}", status_code=204, response_class=Response,
               summary="Delete a load balancer (with cascade=true: and its listeners, pools, members, monitors)",
               responses=errors(404, 409))
async def delete_loadbalancer(loadbalancer_id: str, db: DB, caller: Who, cascade: bool = False):
    async with db.lock:
        lb = _find(db, caller, "loadbalancer", loadbalancer_id)
        listeners = db.referring("loadbalancer", lb.id, "listener")
        pools = db.referring("loadbalancer", lb.id, "pool")
        if (listeners or pools) and not cascade:
            raise conflict("LoadBalancerInUse", f"Cannot delete Load Balancer {lb.id}: it has {len(listeners)} "
                                                f"listener(s) and {len(pools)} pool(s). Delete them first, or "
                                                f"DELETE with ?cascade=true.")
        tx = Tx(db)
        for pool in pools:
            _drop_pool(tx, pool.id)
        for listener in listeners:
            tx.delete("listener", listener.id)
        _release_vip(tx, lb)
        tx.delete("loadbalancer", lb.id)
        await tx.commit()
    return no_content()


@router.get(PREFIX + "/loadbalancers/{loadbalancer_id}/status", summary="A load balancer's status tree",
            response_model=StatusResponse, responses=errors(404))
async def loadbalancer_status(loadbalancer_id: str, ctx: Ctx, db: DB, caller: Who) -> Any:
    return answer(status_tree(db, Health(ctx), _find(db, caller, "loadbalancer", loadbalancer_id)))


@router.get(PREFIX + "/loadbalancers/{loadbalancer_id}/stats", summary="A load balancer's counters",
            response_model=StatsResponse, responses=errors(404))
async def loadbalancer_stats(loadbalancer_id: str, ctx: Ctx, db: DB, caller: Who) -> Any:
    return answer(Health(ctx).stats("loadbalancer", _find(db, caller, "loadbalancer", loadbalancer_id).id))


@router.get(f"{PREFIX}/providers", summary="The load balancer providers: kumoflow's", response_model=ProviderList)
async def list_providers(caller: Who) -> Any:
    return answer({"providers": [{"name": PROVIDER, "description": "kumoflow: load balancing in OpenFlow flows"}]})


# --- routes: listeners ------------------------------------------------------------------------------


@router.post(f"{PREFIX}/listeners", status_code=201, summary="Create a listener (or several: bulk)",
             response_model=ListenerResponse | ListenerList, responses=errors(400, 404, 409))
async def create_listeners(body: ListenerCreateRequest, ctx: Ctx, db: DB, caller: Who) -> Any:
    items, bulk = one_or_many(body, "listener", "listeners")
    async with db.lock:
        tx, ids = Tx(db), []
        for item in items:
            lb = _find(db, caller, "loadbalancer", item.loadbalancer_id)
            project = _project(caller, given(item), lb)
            listener_id = new_id()
            new = checked_listener(tx, caller, item.model_dump(exclude={"project_id", "tenant_id"}), listener_id)
            tx.create("listener", listener_id, new, project)
            ids.append(listener_id)
        await tx.commit()
    health = Health(ctx)
    return _made("listeners", "listener", [listener_view(health, db.get("listener", i)) for i in ids], bulk)


@router.get(f"{PREFIX}/listeners", summary="List listeners", response_model=ListenerList, responses=errors(400),
            openapi_extra=list_parameters(LISTENER_ATTRS))
async def list_listeners(request: Request, ctx: Ctx, db: DB, caller: Who) -> Any:
    health = Health(ctx)
    return _list(request, caller, "listeners", db.all("listener"), LISTENER_ATTRS,
                 lambda r: listener_view(health, r))


@router.get(PREFIX + "/listeners/{listener_id}", summary="Show a listener", response_model=ListenerResponse,
            responses=errors(404), openapi_extra=show_parameters())
async def show_listener(listener_id: str, request: Request, ctx: Ctx, db: DB, caller: Who) -> Any:
    return _show(request, "listener", listener_view(Health(ctx), _find(db, caller, "listener", listener_id)))


@router.put(PREFIX + "/listeners/{listener_id}", summary="Update a listener (default_pool_id null: none)",
            response_model=ListenerResponse, responses=errors(400, 404, 409))
async def update_listener(listener_id: str, body: ListenerUpdateRequest, ctx: Ctx, db: DB, caller: Who) -> Any:
    async with db.lock:
        record = _find(db, caller, "listener", listener_id)
        values = given(body.listener)
        _no_nulls(values, ("default_pool_id",))
        tx = Tx(db)
        old_pool = record.body["default_pool_id"]
        if "default_pool_id" in values and values["default_pool_id"] != old_pool:
            _leave_pool(tx, old_pool, record.id)
        new = checked_listener(tx, caller, {**record.body, **values}, record.id)
        tx.update("listener", record.id, new)
        await tx.commit()
    return answer({"listener": listener_view(Health(ctx), db.get("listener", record.id))})


@router.delete(PREFIX + "/listeners/{listener_id}", status_code=204, response_class=Response,
               summary="Delete a listener (its default pool stays)", responses=errors(404))
async def delete_listener(listener_id: str, db: DB, caller: Who):
    async with db.lock:
        record = _find(db, caller, "listener", listener_id)
        tx = Tx(db)
        _leave_pool(tx, record.body["default_pool_id"], record.id)
        tx.delete("listener", record.id)
        await tx.commit()
    return no_content()


@router.get(PREFIX + "/listeners/{listener_id}/stats", summary="A listener's counters", response_model=StatsResponse,
            responses=errors(404))
async def listener_stats(listener_id: str, ctx: Ctx, db: DB, caller: Who) -> Any:
    return answer(Health(ctx).stats("listener", _find(db, caller, "listener", listener_id).id))


# --- routes: pools ----------------------------------------------------------------------------------


def _drop_pool(tx: Tx, pool_id: str) -> None:
    """A pool goes with its members and health monitor; the listeners it served have no default pool."""
    for kind in ("member", "healthmonitor"):
        for child in tx.referring("pool", pool_id, kind):
            tx.delete(kind, child)
    for listener_id, listener in tx.referring("pool", pool_id, "listener").items():
        tx.update("listener", listener_id, {**listener, "default_pool_id": None})
    tx.delete("pool", pool_id)


@router.post(f"{PREFIX}/pools", status_code=201, summary="Create a pool (or several: bulk)",
             response_model=PoolResponse | PoolList, responses=errors(400, 404, 409))
async def create_pools(body: PoolCreateRequest, ctx: Ctx, db: DB, caller: Who) -> Any:
    items, bulk = one_or_many(body, "pool", "pools")
    async with db.lock:
        tx, ids = Tx(db), []
        for item in items:
            listener = _find(db, caller, "listener", item.listener_id) if item.listener_id else None
            if listener is None and not item.loadbalancer_id:
                raise invalid("a pool needs a loadbalancer_id or a listener_id")
            lb = _find(db, caller, "loadbalancer", item.loadbalancer_id or listener.body["loadbalancer_id"])
            if listener is not None and listener.body["loadbalancer_id"] != lb.id:
                raise invalid(f"listener_id {listener.id} is a listener of load balancer "
                              f"{listener.body['loadbalancer_id']}, not of loadbalancer_id {lb.id}")
            project = _project(caller, given(item), lb)
            pool_id = new_id()
            persistence = item.session_persistence
            new = checked_pool({"name": item.name, "description": item.description,
                                "admin_state_up": item.admin_state_up, "loadbalancer_id": lb.id,
                                "listeners": [listener.id] if listener is not None else [],
                                "protocol": _one_of("protocol", item.protocol, PROTOCOLS),
                                "lb_algorithm": item.lb_algorithm,
                                "session_persistence": persistence.model_dump() if persistence else None,
                                "tags": list(item.tags)})
            if listener is not None:
                taken = tx.body("listener", listener.id)
                if taken["default_pool_id"] is not None:
                    raise conflict("DuplicatePoolEntry", f"Listener {listener.id} already has a default pool "
                                                         f"({taken['default_pool_id']}).")
                _pool_fits(new, taken, f"protocol {new['protocol']} on listener_id {listener.id}")
                tx.update("listener", listener.id, {**taken, "default_pool_id": pool_id})
            tx.create("pool", pool_id, new, project)
            ids.append(pool_id)
        await tx.commit()
    health = Health(ctx)
    return _made("pools", "pool", [pool_view(db, health, db.get("pool", i)) for i in ids], bulk)


@router.get(f"{PREFIX}/pools", summary="List pools", response_model=PoolList, responses=errors(400),
            openapi_extra=list_parameters(POOL_ATTRS))
async def list_pools(request: Request, ctx: Ctx, db: DB, caller: Who) -> Any:
    health = Health(ctx)
    return _list(request, caller, "pools", db.all("pool"), POOL_ATTRS, lambda r: pool_view(db, health, r),
                 STATUSES | {"healthmonitor_id"})


@router.get(PREFIX + "/pools/{pool_id}", summary="Show a pool", response_model=PoolResponse, responses=errors(404),
            openapi_extra=show_parameters())
async def show_pool(pool_id: str, request: Request, ctx: Ctx, db: DB, caller: Who) -> Any:
    return _show(request, "pool", pool_view(db, Health(ctx), _find(db, caller, "pool", pool_id)))


@router.put(PREFIX + "/pools/{pool_id}", summary="Update a pool (session_persistence null: none)",
            response_model=PoolResponse, responses=errors(400, 404))
async def update_pool(pool_id: str, body: PoolUpdateRequest, ctx: Ctx, db: DB, caller: Who) -> Any:
    async with db.lock:
        record = _find(db, caller, "pool", pool_id)
        values = given(body.pool)
        _no_nulls(values, ("session_persistence",))
        tx = Tx(db)
        tx.update("pool", record.id, checked_pool({**record.body, **values}))
        await tx.commit()
    return answer({"pool": pool_view(db, Health(ctx), db.get("pool", record.id))})


@router.delete(PREFIX + "/pools/{pool_id}", status_code=204, response_class=Response,
               summary="Delete a pool, its members and its health monitor", responses=errors(404))
async def delete_pool(pool_id: str, db: DB, caller: Who):
    async with db.lock:
        record = _find(db, caller, "pool", pool_id)
        tx = Tx(db)
        _drop_pool(tx, record.id)
        await tx.commit()
    return no_content()


# --- routes: members --------------------------------------------------------------------------------


def _pool_and_lb(db: NeutronDB, caller: Caller, pool_id: str) -> tuple[Record, Record]:
    pool = _find(db, caller, "pool", pool_id)
    return pool, db.get("loadbalancer", pool.body["loadbalancer_id"])


def _member_of(db: NeutronDB, caller: Caller, pool_id: str, member_id: str) -> Record:
    pool = _find(db, caller, "pool", pool_id)
    member = db.get("member", member_id)
    if member is None or member.body["pool_id"] != pool.id:
        raise not_found("member", member_id)
    return member


@router.post(PREFIX + "/pools/{pool_id}/members", status_code=201, summary="Create a member (or several: bulk)",
             response_model=MemberResponse | MemberList, responses=errors(400, 404, 409))
async def create_members(pool_id: str, body: MemberCreateRequest, ctx: Ctx, db: DB, caller: Who) -> Any:
    items, bulk = one_or_many(body, "member", "members")
    async with db.lock:
        pool, lb = _pool_and_lb(db, caller, pool_id)
        tx, ids = Tx(db), []
        for item in items:
            new, project = new_member(tx, caller, item, pool, lb)
            member_id = new_id()
            tx.create("member", member_id, new, project)
            ids.append(member_id)
        await tx.commit()
    health = Health(ctx)
    return _made("members", "member", [member_view(health, db.get("member", i)) for i in ids], bulk)


@router.put(PREFIX + "/pools/{pool_id}/members", status_code=202, response_class=Response,
            summary="Set a pool's members (Octavia's batch update): matched by address and protocol_port, those "
                    "given are created or updated, the others deleted (unless additive_only=true)",
            responses=errors(400, 404, 409))
async def batch_members(pool_id: str, body: MembersBatchRequest, db: DB, caller: Who, additive_only: bool = False):
    async with db.lock:
        pool, lb = _pool_and_lb(db, caller, pool_id)
        tx = Tx(db)
        have = {(m.body["address"], m.body["protocol_port"]): m for m in db.referring("pool", pool.id, "member")}
        kept: set[str] = set()
        for item in body.members:
            match = have.get((_ip("address", item.address), item.protocol_port))
            if match is None:
                new, project = new_member(tx, caller, item, pool, lb)
                tx.create("member", new_id(), new, project)
                continue
            if match.id in kept:
                raise conflict("DuplicateMemberEntry", f"Member {item.address}:{item.protocol_port} is given twice.")
            kept.add(match.id)
            values = given(item)
            if values.get("subnet_id", match.body["subnet_id"]) != match.body["subnet_id"]:
                raise invalid(f"member {item.address}:{item.protocol_port}: subnet_id cannot change "
                              f"({match.body['subnet_id']} -> {values['subnet_id']})")
            changed = {k: v for k, v in values.items() if k in MemberUpdate.model_fields}
            if any(match.body[k] != v for k, v in changed.items()):
                tx.update("member", match.id, checked_member({**match.body, **changed}))
        if not additive_only:
            for member in have.values():
                if member.id not in kept:
                    tx.delete("member", member.id)
        await tx.commit()
    return Response(status_code=202)


@router.get(PREFIX + "/pools/{pool_id}/members", summary="List a pool's members", response_model=MemberList,
            responses=errors(400, 404), openapi_extra=list_parameters(MEMBER_ATTRS))
async def list_members(pool_id: str, request: Request, ctx: Ctx, db: DB, caller: Who) -> Any:
    pool = _find(db, caller, "pool", pool_id)
    health = Health(ctx)
    return _list(request, caller, "members", db.referring("pool", pool.id, "member"), MEMBER_ATTRS,
                 lambda r: member_view(health, r))


@router.get(PREFIX + "/pools/{pool_id}/members/{member_id}", summary="Show a member", response_model=MemberResponse,
            responses=errors(404), openapi_extra=show_parameters())
async def show_member(pool_id: str, member_id: str, request: Request, ctx: Ctx, db: DB, caller: Who) -> Any:
    return _show(request, "member", member_view(Health(ctx), _member_of(db, caller, pool_id, member_id)))


@router.put(PREFIX + "/pools/{pool_id}/members/{member_id}", summary="Update a member", response_model=MemberResponse,
            responses=errors(400, 404))
async def update_member(pool_id: str, member_id: str, body: MemberUpdateRequest, ctx: Ctx, db: DB,
                        caller: Who) -> Any:
    async with db.lock:
        record = _member_of(db, caller, pool_id, member_id)
        values = given(body.member)
        _no_nulls(values, ("monitor_address", "monitor_port"))
        tx = Tx(db)
        tx.update("member", record.id, checked_member({**record.body, **values}))
        await tx.commit()
    return answer({"member": member_view(Health(ctx), db.get("member", record.id))})


@router.delete(PREFIX + "/pools/{pool_id}/members/{member_id}", status_code=204, response_class=Response,
               summary="Delete a member", responses=errors(404))
async def delete_member(pool_id: str, member_id: str, db: DB, caller: Who):
    async with db.lock:
        record = _member_of(db, caller, pool_id, member_id)
        await db.commit([("delete", "member", record.id)])
    return no_content()


# --- routes: health monitors ------------------------------------------------------------------------


@router.post(f"{PREFIX}/healthmonitors", status_code=201, summary="Create a health monitor (or several: bulk)",
             response_model=HealthMonitorResponse | HealthMonitorList, responses=errors(400, 404, 409))
async def create_monitors(body: HealthMonitorCreateRequest, ctx: Ctx, db: DB, caller: Who) -> Any:
    items, bulk = one_or_many(body, "healthmonitor", "healthmonitors")
    async with db.lock:
        tx, ids = Tx(db), []
        for item in items:
            pool, lb = _pool_and_lb(db, caller, item.pool_id)
            project = _project(caller, given(item), lb)
            others = tx.referring("pool", pool.id, "healthmonitor")
            if others:
                raise conflict("DuplicateHealthMonitor", f"Pool {pool.id} already has a health monitor "
                                                         f"({next(iter(others))}).")
            new = checked_monitor(item.model_dump(exclude={"project_id", "tenant_id"}), pool.body["protocol"])
            monitor_id = new_id()
            tx.create("healthmonitor", monitor_id, new, project)
            ids.append(monitor_id)
        await tx.commit()
    health = Health(ctx)
    return _made("healthmonitors", "healthmonitor", [monitor_view(health, db.get("healthmonitor", i)) for i in ids],
                 bulk)


@router.get(f"{PREFIX}/healthmonitors", summary="List health monitors", response_model=HealthMonitorList,
            responses=errors(400), openapi_extra=list_parameters(MONITOR_ATTRS))
async def list_monitors(request: Request, ctx: Ctx, db: DB, caller: Who) -> Any:
    health = Health(ctx)
    return _list(request, caller, "healthmonitors", db.all("healthmonitor"), MONITOR_ATTRS,
                 lambda r: monitor_view(health, r))


@router.get(PREFIX + "/healthmonitors/{healthmonitor_id}", summary="Show a health monitor",
            response_model=HealthMonitorResponse, responses=errors(404), openapi_extra=show_parameters())
async def show_monitor(healthmonitor_id: str, request: Request, ctx: Ctx, db: DB, caller: Who) -> Any:
    return _show(request, "healthmonitor", monitor_view(Health(ctx), _find(db, caller, "healthmonitor",
                                                                            healthmonitor_id)))


@router.put(PREFIX + "/healthmonitors/{healthmonitor_id}", summary="Update a health monitor",
            response_model=HealthMonitorResponse, responses=errors(400, 404))
async def update_monitor(healthmonitor_id: str, body: HealthMonitorUpdateRequest, ctx: Ctx, db: DB,
                         caller: Who) -> Any:
    async with db.lock:
        record = _find(db, caller, "healthmonitor", healthmonitor_id)
        values = given(body.healthmonitor)
        _no_nulls(values, HTTP_ONLY)
        pool = db.get("pool", record.body["pool_id"])
        tx = Tx(db)
        tx.update("healthmonitor", record.id, checked_monitor({**record.body, **values}, pool.body["protocol"]))
        await tx.commit()
    return answer({"healthmonitor": monitor_view(Health(ctx), db.get("healthmonitor", record.id))})


@router.delete(PREFIX + "/healthmonitors/{healthmonitor_id}", status_code=204, response_class=Response,
               summary="Delete a health monitor", responses=errors(404))
async def delete_monitor(healthmonitor_id: str, db: DB, caller: Who):
    async with db.lock:
        record = _find(db, caller, "healthmonitor", healthmonitor_id)
        await db.commit([("delete", "healthmonitor", record.id)])
    return no_content()


__all__ = ["router", "ERROR_SHAPE", "PREFIX", "OCTAVIA", "code_ranges"]
