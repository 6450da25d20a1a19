"""/v2.0/ports: a network's attachment points, and their binding to a switch port.

Defaults as Neutron fills them: a MAC address ``fa:16:3e:xx:xx:xx`` (unique),
an address from each of the network's subnets (the first IPv4 and the first
IPv6 subnet with a free address in its pools) unless ``fixed_ips`` says
which (a subnet, an address, or both: checked to be in the network's subnet
and free, else 400 / 409 IpAddressAlreadyAllocated), the project's
``default`` security group (made on first need) unless port security is off
or the port belongs to the network itself (``device_owner`` ``network:...``).

Binding, the link to the data plane: ``binding:host_id`` names the switch
the port's host hangs off (its name: an Open vSwitch bridge's name, a
kumoflow switch's ``--name`` as its DESC reply gives it, also the
emulator's switch name ``s1`` for its ``<topology>-s1``; or its datapath
id: ``0x1``, ``1``, 16 hex digits), ``binding:profile`` the switch
port: ``{"interface": NAME}`` or ``{"port_no": N}``. ``status`` is computed
when read, from what the controller observes: ACTIVE when the port is
administratively up, that switch is connected and that port is up (carrier
and not PORT_DOWN), else DOWN. Binding needs the admin token (as in
Neutron, where the compute service binds).

``user_groups`` is kumoflow's extension: tags naming the user groups of
whoever is behind the port (up to 32, each ``[A-Za-z0-9_.-]{1,64}``), which
firewall rules match by ``source_user_group`` / ``destination_user_group``.
Deleting a port takes it out of its firewall group, as Neutron does.
"""

from __future__ import annotations

import ipaddress
import random
import re
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, field_validator

from kumoflow import ofp
from kumoflow.packet.addr import eui64
from kumoflow.store import Record

from ..sdn import learn_names, resolve_switch
from ..server import ApiError, Caller, Ctx
from . import fwaas, security_groups
from .common import (BOOL, DB, DESCRIPTION, INT, LIST, NAME, PROJECT_PATTERN, STR, TAG, USER_GROUP, Body, Who,
                     admin_only, answer, bad, bumped, common, conflict, errors, fields_of, find, forbid, given,
                     list_parameters, new_id, no_content, one_or_many, owns, pick, project_of, select,
                     show_parameters, shown)
from .db import NeutronDB
from .subnets import allocate, parse_ip

router = APIRouter(tags=["ports"])

MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$")
MAC_PREFIX = "fa:16:3e"
ROUTER_INTERFACE = "network:router_interface"
ROUTER_GATEWAY = "network:router_gateway"
VNIC_TYPES = Literal["normal", "direct", "macvtap", "baremetal", "direct-physical", "virtio-forwarder", "smart-nic"]


class FixedIP(Body):
    subnet_id: str | None = Field(None, max_length=64)
    ip_address: str | None = Field(None, max_length=64)


class AddressPair(Body):
    ip_address: str = Field(max_length=64, description="an address or a CIDR")
    mac_address: str | None = Field(None, max_length=17)


class PortCreate(Body):
    network_id: str = Field(max_length=64)
    name: NAME = ""
    description: DESCRIPTION = ""
    project_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    tenant_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    admin_state_up: bool = True
    mac_address: str | None = Field(None, max_length=17, description="default: fa:16:3e:xx:xx:xx, unique")
    fixed_ips: list[FixedIP] | None = Field(None, max_length=32, description="default: an address from the "
                                                                              "network's subnets")
    device_id: str = Field("", max_length=255)
    device_owner: str = Field("", max_length=255)
    security_groups: list[str] | None = Field(None, max_length=32, description="default: the project's default "
                                                                               "group")
    port_security_enabled: bool | None = Field(None, description="default: the network's")
    allowed_address_pairs: list[AddressPair] = Field(default_factory=list, max_length=32)
    host_id: str = Field("", alias="binding:host_id", max_length=255,
                         description="the switch: its name or datapath id (admin only)")
    profile: dict[str, Any] = Field(default_factory=dict, alias="binding:profile",
                                    description='the switch port: {"interface": NAME} or {"port_no": N} (admin only)')
    vnic_type: VNIC_TYPES = Field("normal", alias="binding:vnic_type")
    qos_policy_id: str | None = None
    tags: list[TAG] = Field(default_factory=list, max_length=50)
    user_groups: list[USER_GROUP] = Field(default_factory=list, max_length=32,
                                          description="kumoflow: the port's user-group tags (firewall rules)")

    @field_validator("mac_address")
    @classmethod
    def _mac(cls, v: str | None) -> str | None:
        return None if v is None else check_mac(v)


class PortUpdate(Body):
    name: NAME | None = None
    description: DESCRIPTION | None = None
    admin_state_up: bool | None = None
    mac_address: str | None = Field(None, max_length=17)
    fixed_ips: list[FixedIP] | None = Field(None, max_length=32)
    device_id: str | None = Field(None, max_length=255)
    device_owner: str | None = Field(None, max_length=255)
    security_groups: list[str] | None = Field(None, max_length=32)
    port_security_enabled: bool | None = None
    allowed_address_pairs: list[AddressPair] | None = Field(None, max_length=32)
    host_id: str | None = Field(None, alias="binding:host_id", max_length=255)
    profile: dict[str, Any] | None = Field(None, alias="binding:profile")
    vnic_type: VNIC_TYPES | None = Field(None, alias="binding:vnic_type")
    qos_policy_id: str | None = None
    tags: list[TAG] | None = Field(None, max_length=50)
    user_groups: list[USER_GROUP] | None = Field(None, max_length=32)

    @field_validator("mac_address")
    @classmethod
    def _mac(cls, v: str | None) -> str | None:
        return None if v is None else check_mac(v)


class PortCreateRequest(Body):
    port: PortCreate | None = None
    ports: list[PortCreate] | None = Field(None, min_length=1, max_length=1000)


class PortUpdateRequest(Body):
    port: PortUpdate


class FixedIPOut(BaseModel):
    subnet_id: str
    ip_address: str


class AddressPairOut(BaseModel):
    ip_address: str
    mac_address: str


class Port(BaseModel):
    """A port (every attribute is there unless `fields` asked for others)."""
    id: str = None
    name: str = None
    description: str = None
    tenant_id: str = None
    project_id: str = None
    network_id: str = None
    admin_state_up: bool = None
    status: Literal["ACTIVE", "DOWN"] = Field(None, description="ACTIVE: bound to a switch port that is up")
    mac_address: str = None
    fixed_ips: list[FixedIPOut] = None
    device_id: str = None
    device_owner: str = None
    security_groups: list[str] = None
    port_security_enabled: bool = None
    allowed_address_pairs: list[AddressPairOut] = None
    host_id: str = Field(None, alias="binding:host_id")
    profile: dict[str, Any] = Field(None, alias="binding:profile")
    vif_type: str = Field(None, alias="binding:vif_type")
    vif_details: dict[str, Any] = Field(None, alias="binding:vif_details")
    vnic_type: str = Field(None, alias="binding:vnic_type")
    qos_policy_id: str | None = None
    tags: list[str] = None
    user_groups: list[str] = Field(None, description="kumoflow: the port's user-group tags")
    created_at: str = None
    updated_at: str = None
    revision_number: int = None


class PortResponse(BaseModel):
    port: Port


class PortList(BaseModel):
    ports: list[Port]


ATTRS = {"id": STR, "name": STR, "description": STR, "tenant_id": STR, "project_id": STR, "network_id": STR,
         "admin_state_up": BOOL, "status": STR, "mac_address": STR, "device_id": STR, "device_owner": STR,
         "security_groups": LIST, "port_security_enabled": BOOL, "binding:host_id": STR, "binding:vnic_type": STR,
         "binding:vif_type": STR, "qos_policy_id": STR, "user_groups": LIST, "revision_number": INT}


COMPUTED = frozenset({"status", "binding:vif_type"})


def check_mac(text: str) -> str:
    if not MAC.match(text):
        raise ValueError(f"'{text}' is not a valid MAC address")
    mac = text.lower().replace("-", ":")
    if int(mac[:2], 16) & 1:
        raise ValueError(f"'{text}' is a multicast MAC address; a port needs a unicast one")
    if mac == "00:00:00:00:00:00":
        raise ValueError("the all-zero MAC address is not valid")
    return mac


# --- binding: which switch port, and is it up? ----------------------------------------------------


class Switches:
    """Resolves binding:host_id to a connected switch (memoised for one request), as
    ``/sdn/switches/{switch}`` does (kumoflow.api.sdn.resolve_switch): a name (an Open vSwitch
    bridge's LOCAL port name, a kumoflow switch's ``--name`` from its DESC reply), the one
    name ending in ``-host`` (the emulator's ``s1``), or a datapath id. `prepare` first learns
    the names kumoflow switches give only in their DESC reply, when a host needs it."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self._found: dict[str, Any] = {}

    async def prepare(self, hosts: Any) -> None:
        """Before rendering ports bound to `hosts`: if one of them is neither an exact name nor a
        datapath id of a switch up, read the DESC reply of switches whose name the API has not
        learned (once per switch session): a short name must be unique among all of them."""
        if any(host and resolve_switch(self.ctx, host, suffix=False) is None for host in set(hosts)):
            if await learn_names(self.ctx):
                self._found.clear()

    def find(self, host: str) -> Any:
        if host in self._found:
            return self._found[host]
        dp = resolve_switch(self.ctx, host)
        self._found[host] = dp
        return dp


def switch_port(dp: Any, profile: dict) -> Any:
    if not isinstance(profile, dict):
        return None
    if isinstance(profile.get("port_no"), int):
        return dp.ports.get(profile["port_no"])
    name = profile.get("interface")
    if isinstance(name, str):
        for port in dp.ports.values():
            if port.name == name:
                return port
    return None


def status_of(switches: Switches, body: dict) -> str:
    if not body.get("admin_state_up", True) or not body.get("binding:host_id"):
        return "DOWN"
    dp = switches.find(body["binding:host_id"])
    if dp is None:
        return "DOWN"
    port = switch_port(dp, body.get("binding:profile") or {})
    if port is None or port.config & ofp.OFPPC.PORT_DOWN or port.state & ofp.OFPPS.LINK_DOWN:
        return "DOWN"
    return "ACTIVE"


def view(switches: Switches, r: Record) -> dict:
    body = r.body
    return {**common(r), "user_groups": [], **shown(body), "status": status_of(switches, body),
            "binding:vif_type": "other" if body.get("binding:host_id") else "unbound", "binding:vif_details": {}}


def check_profile(profile: dict) -> dict:
    if "port_no" in profile:
        n = profile["port_no"]
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= int(ofp.OFPP.MAX):
            raise bad(f"binding:profile port_no must be a switch port number 1..{int(ofp.OFPP.MAX)}, not {n!r}")
    if "interface" in profile and not (isinstance(profile["interface"], str) and profile["interface"]):
        raise bad("binding:profile interface must be a port name")
    return profile


# --- addresses and groups -------------------------------------------------------------------------


class Batch:
    """What one request has handed out so far (bulk create: before any of it is committed)."""

    def __init__(self) -> None:
        self.ips: dict[str, set[str]] = {}
        self.macs: set[str] = set()
        self.groups: dict[str, str] = {}     # project -> default group made in this request


def new_mac(db: NeutronDB, batch: Batch) -> str:
    while True:
        mac = MAC_PREFIX + "".join(f":{random.randrange(256):02x}" for _ in range(3))
        if mac not in db.macs and mac not in batch.macs:
            batch.macs.add(mac)
            return mac


def check_mac_free(db: NeutronDB, batch: Batch, network_id: str, mac: str, port_id: str | None = None) -> None:
    users = [p for p in db.macs.get(mac, ()) if p != port_id]
    if mac in batch.macs or any(db.get("port", p).body["network_id"] == network_id for p in users):
        raise conflict("MacAddressInUse", f"Unable to complete operation for network {network_id}. The mac address "
                                          f"{mac} is in use.")
    batch.macs.add(mac)


def assign_ips(db: NeutronDB, batch: Batch, network: Record, spec: list[dict] | None, device_owner: str,
               port_id: str | None = None, mac: str | None = None) -> list[dict]:
    """The port's fixed_ips: allocated (spec None) or checked (spec given). On
    an IPv6 subnet whose ipv6_address_mode is slaac or dhcpv6-stateless, the
    address a port gets without asking is the one the host will take itself,
    EUI-64 from its MAC (as Neutron does); spec None gives one on every such
    subnet of the network."""
    subnets = db.referring("network", network.id, "subnet")
    out: list[dict] = []
    auto = {s.id for s in subnets if s.body.get("ipv6_address_mode") in ("slaac", "dhcpv6-stateless")} if mac else set()

    def allocate_in(subnet: Record) -> str | None:
        if subnet.id in auto and device_owner not in (ROUTER_INTERFACE, ROUTER_GATEWAY):
            address = str(eui64(ipaddress.IPv6Network(subnet.body["cidr"]), mac))
            held = db.ips.get(subnet.id, {}).get(address)
            if (held is not None and held != port_id) or address in batch.ips.get(subnet.id, set()):
                raise conflict("IpAddressAlreadyAllocated", f"IP address {address} already allocated in subnet "
                                                            f"{subnet.id}.")
            return address
        return allocate(db, subnet, batch.ips.get(subnet.id, set()))

    def take(subnet: Record, address: str) -> None:
        batch.ips.setdefault(subnet.id, set()).add(address)
        out.append({"subnet_id": subnet.id, "ip_address": address})

    if spec is None:
        for subnet in subnets:
            if subnet.id in auto and device_owner not in (ROUTER_INTERFACE, ROUTER_GATEWAY):
                take(subnet, allocate_in(subnet))
        for version in (4, 6):
            for subnet in subnets:
                if subnet.body["ip_version"] != version or subnet.id in auto:
                    continue
                address = allocate(db, subnet, batch.ips.get(subnet.id, set()))
                if address is not None:
                    take(subnet, address)
                    break
        if subnets and not out:
            raise conflict("IpAddressGenerationFailure", f"No more IP addresses available on network {network.id}.")
        return out
    by_id = {s.id: s for s in subnets}
    seen = set()
    for entry in spec:
        subnet_id, text = entry.get("subnet_id"), entry.get("ip_address")
        if subnet_id is None and text is None:
            raise bad("fixed_ips: each entry needs a subnet_id, an ip_address or both")
        address = parse_ip(text, "fixed_ips") if text is not None else None
        if subnet_id is not None:
            subnet = by_id.get(subnet_id)
            if subnet is None:
                raise bad(f"Failed to create port on network {network.id}, because fixed_ips included invalid "
                          f"subnet {subnet_id}")
        else:
            found = [s for s in subnets if address in ipaddress.ip_network(s.body["cidr"])]
            if not found:
                raise bad(f"IP address {address} is not a valid IP for any of the subnets on the specified "
                          f"network.", "InvalidIpForNetwork")
            subnet = found[0]
        if address is None:
            chosen = allocate_in(subnet)
            if chosen is None:
                raise conflict("IpAddressGenerationFailure", f"No more IP addresses available for subnet "
                                                             f"{subnet.id}.")
            take(subnet, chosen)
            continue
        net = ipaddress.ip_network(subnet.body["cidr"])
        text = str(address)
        if address not in net or (net.version == 4 and net.prefixlen < 31
                                  and address in (net.network_address, net.broadcast_address)):
            raise bad(f"IP address {text} is not a valid IP for the specified subnet.", "InvalidIpForSubnet")
        if (subnet.id, text) in seen:
            raise bad(f"fixed_ips: {text} is given twice")
        seen.add((subnet.id, text))
        holder = db.ips.get(subnet.id, {}).get(text)
        if (holder is not None and holder != port_id) or text in batch.ips.get(subnet.id, set()):
            raise conflict("IpAddressAlreadyAllocated", f"IP address {text} already allocated in subnet "
                                                        f"{subnet.id}.")
        if text == subnet.body.get("gateway_ip") and device_owner not in (ROUTER_INTERFACE, ROUTER_GATEWAY):
            raise conflict("IpAddressAlreadyAllocated", f"IP address {text} is the gateway of subnet {subnet.id}; "
                                                        f"only a router interface may have it.")
        take(subnet, text)
    return out


def check_groups(db: NeutronDB, caller: Caller, project: str, groups: list[str]) -> list[str]:
    out = []
    for group_id in dict.fromkeys(groups):
        group = db.get("security_group", group_id)
        if group is None or (group.project_id != project and not caller.admin) or not (
                caller.admin or owns(caller, group)):
            raise ApiError(404, "SecurityGroupNotFound", f"Security group {group_id} does not exist.")
        out.append(group_id)
    return out


def check_pairs(pairs: list[dict], mac: str) -> list[dict]:
    out = []
    for pair in pairs:
        text = pair["ip_address"]
        try:
            address = str(ipaddress.ip_network(text, strict=False)) if "/" in text else str(ipaddress.ip_address(text))
        except ValueError:
            raise bad(f"allowed_address_pairs: '{text}' is not an IP address or CIDR") from None
        pair_mac = pair.get("mac_address")
        try:
            pair_mac = check_mac(pair_mac) if pair_mac is not None else mac
        except ValueError as exc:
            raise bad(f"allowed_address_pairs: {exc}") from None
        out.append({"ip_address": address, "mac_address": pair_mac})
    return out


def network_owned(device_owner: str) -> bool:
    return device_owner.startswith("network:")


def service_port(network_id: str, fixed_ips: list[dict], mac: str, device_id: str, device_owner: str,
                 name: str = "") -> dict:
    """The body of a port that holds addresses for a service (a floating IP, a load balancer's VIP):
    no security groups, no port security, not bound."""
    return {"network_id": network_id, "name": name, "description": "", "admin_state_up": True, "mac_address": mac,
            "fixed_ips": fixed_ips, "device_id": device_id, "device_owner": device_owner, "security_groups": [],
            "port_security_enabled": False, "allowed_address_pairs": [], "binding:host_id": "",
            "binding:profile": {}, "binding:vnic_type": "normal", "qos_policy_id": None, "tags": []}


def new_port(db: NeutronDB, caller: Caller, item: PortCreate, batch: Batch, ops: list[tuple]) -> tuple[dict, str]:
    """The body and project of a new port (and any default group it needs, appended to `ops`)."""
    admin_only(caller, item, ("host_id", "profile"), "create_port")
    values = given(item)
    project = project_of(caller, values)
    network = find(db, caller, "network", item.network_id)
    if not caller.admin and network.project_id != caller.project_id and not network.body.get("shared"):
        raise forbid("create_port:network")
    mac = item.mac_address
    if mac is None:
        mac = new_mac(db, batch)
    else:
        check_mac_free(db, batch, network.id, mac)
    spec = None if item.fixed_ips is None else [f.model_dump() for f in item.fixed_ips]
    fixed = assign_ips(db, batch, network, spec, item.device_owner, mac=mac)
    security = item.port_security_enabled
    if security is None:
        security = bool(network.body.get("port_security_enabled", True))
    if item.security_groups is not None:
        if item.security_groups and not security:
            raise bad("Port has security group associated. Cannot disable port security or ip address until "
                      "security group is removed", "PortSecurityAndIPRequiredForSecurityGroups")
        groups = check_groups(db, caller, project, item.security_groups)
    elif security and not network_owned(item.device_owner):
        groups = [security_groups.ensure_default(db, project, batch.groups, ops)]
    else:
        groups = []
    if item.qos_policy_id is not None:
        find(db, caller, "qos_policy", item.qos_policy_id)
    body = {"network_id": network.id, "name": item.name, "description": item.description,
            "admin_state_up": item.admin_state_up, "mac_address": mac, "fixed_ips": fixed,
            "device_id": item.device_id, "device_owner": item.device_owner, "security_groups": groups,
            "port_security_enabled": security,
            "allowed_address_pairs": check_pairs([p.model_dump() for p in item.allowed_address_pairs], mac),
            "binding:host_id": item.host_id, "binding:profile": check_profile(dict(item.profile)),
            "binding:vnic_type": item.vnic_type, "qos_policy_id": item.qos_policy_id, "tags": list(item.tags),
            "user_groups": list(dict.fromkeys(item.user_groups))}
    return body, project


# --- routes -------------------------------------------------------------------------------------


def _fixed_ips_filter(item: dict, values: list[str]) -> bool:
    """?fixed_ips=ip_address=10.0.0.5 / ?fixed_ips=subnet_id=ID: any value matches one of the port's."""
    for value in values:
        key, eq, wanted = value.partition("=")
        if not eq or key not in ("ip_address", "subnet_id", "ip_address_substr"):
            raise ApiError(400, "HTTPBadRequest", f"fixed_ips filter {value!r}: expected ip_address=ADDRESS or "
                                                  f"subnet_id=ID")
        for ip in item.get("fixed_ips", ()):
            if key == "ip_address_substr" and wanted in ip["ip_address"]:
                return True
            if key != "ip_address_substr" and ip[key] == wanted:
                return True
    return False


FILTER_PARAMS = {"parameters": [{"name": "fixed_ips", "in": "query", "required": False, "style": "form",
                                 "explode": True, "description": "ip_address=ADDRESS or subnet_id=ID",
                                 "schema": {"type": "array", "items": {"type": "string",
                                                                       "pattern": "^(ip_address|subnet_id)=.*$"}}}]}


@router.post("/v2.0/ports", status_code=201, summary="Create a port (or several: bulk)",
             response_model=PortResponse | PortList, responses=errors(403, 404, 409))
async def create_ports(body: PortCreateRequest, ctx: Ctx, db: DB, caller: Who) -> dict:
    items, bulk = one_or_many(body, "port", "ports")
    async with db.lock:
        ops: list[tuple] = []
        batch = Batch()
        for item in items:
            new, project = new_port(db, caller, item, batch, ops)
            ops.append(("create", "port", new, project, new_id()))
        changes = await db.commit(ops)
    switches = Switches(ctx)
    await switches.prepare(c.record.body.get("binding:host_id") for c in changes if c.kind == "port")
    made = [view(switches, c.record) for c in changes if c.kind == "port"]
    return answer({"ports": made} if bulk else {"port": made[0]}, 201)


@router.get("/v2.0/ports", summary="List ports", response_model=PortList, responses=errors(),
            openapi_extra={"parameters": list_parameters(ATTRS)["parameters"] + FILTER_PARAMS["parameters"]})
async def list_ports(request: Request, ctx: Ctx, db: DB, caller: Who) -> dict:
    switches = Switches(ctx)
    records = [r for r in db.all("port") if owns(caller, r)]
    await switches.prepare(r.body.get("binding:host_id") for r in records)
    return answer({"ports": select(request, records, ATTRS, {"fixed_ips": _fixed_ips_filter},
                                   render=lambda r: view(switches, r), computed=COMPUTED)})


@router.get("/v2.0/ports/{port_id}", summary="Show a port", response_model=PortResponse,
            openapi_extra=show_parameters())
async def show_port(port_id: str, request: Request, ctx: Ctx, db: DB, caller: Who) -> dict:
    record = find(db, caller, "port", port_id, lambda r: owns(caller, r))
    switches = Switches(ctx)
    await switches.prepare([record.body.get("binding:host_id")])
    item = view(switches, record)
    fields = fields_of(request)
    return answer({"port": pick(item, fields) if fields else item})


@router.put("/v2.0/ports/{port_id}", summary="Update a port (binding: admin only)", response_model=PortResponse,
            responses=errors(403, 409))
async def update_port(port_id: str, body: PortUpdateRequest, ctx: Ctx, db: DB, caller: Who) -> dict:
    item = body.port
    async with db.lock:
        record = find(db, caller, "port", port_id, lambda r: owns(caller, r))
        admin_only(caller, item, ("host_id", "profile"), "update_port")
        values = given(item)
        for name, value in values.items():
            if value is None and name != "qos_policy_id":
                raise bad(f"{name} must not be null")
        new = dict(record.body)
        batch = Batch()
        ops: list[tuple] = []
        network = db.get("network", new["network_id"])
        if "mac_address" in values and values["mac_address"] != new["mac_address"]:
            if new.get("binding:host_id") and values.get("binding:host_id", new["binding:host_id"]):
                raise conflict("PortBound", f"Unable to complete operation on port {port_id}: its MAC address "
                                            f"cannot change while it is bound.")
            check_mac_free(db, batch, new["network_id"], values["mac_address"], port_id)
            new["mac_address"] = values["mac_address"]
        for name in ("name", "description", "admin_state_up", "device_id", "device_owner", "binding:host_id",
                     "binding:vnic_type", "tags"):
            if name in values:
                new[name] = values[name]
        if "binding:profile" in values:
            new["binding:profile"] = check_profile(values["binding:profile"])
        if "user_groups" in values:
            new["user_groups"] = list(dict.fromkeys(values["user_groups"]))
        if "fixed_ips" in values:
            new["fixed_ips"] = assign_ips(db, batch, network, values["fixed_ips"], new["device_owner"], port_id,
                                             mac=new["mac_address"])
            from .floatingips import check_port_fixed_ips
            check_port_fixed_ips(db, record, new["fixed_ips"])
            for lb in db.referring("port", port_id, "loadbalancer"):
                if lb.body["vip_address"] not in {ip["ip_address"] for ip in new["fixed_ips"]}:
                    raise conflict("PortInUse", f"Port {port_id} holds the VIP {lb.body['vip_address']} of load "
                                                f"balancer {lb.id}; its fixed_ips must keep it.")
        if "port_security_enabled" in values:
            new["port_security_enabled"] = values["port_security_enabled"]
        if "security_groups" in values:
            new["security_groups"] = check_groups(db, caller, record.project_id, values["security_groups"])
        if new["security_groups"] and not new["port_security_enabled"]:
            raise bad("Port has security group associated. Cannot disable port security or ip address until "
                      "security group is removed", "PortSecurityAndIPRequiredForSecurityGroups")
        if "allowed_address_pairs" in values:
            new["allowed_address_pairs"] = check_pairs(values["allowed_address_pairs"], new["mac_address"])
        if "qos_policy_id" in values:
            if values["qos_policy_id"] is not None:
                find(db, caller, "qos_policy", values["qos_policy_id"])
            new["qos_policy_id"] = values["qos_policy_id"]
        ops.append(("update", "port", port_id, bumped(new)))
        changes = await db.commit(ops)
    switches = Switches(ctx)
    await switches.prepare([changes[-1].record.body.get("binding:host_id")])
    return answer({"port": view(switches, changes[-1].record)})


@router.delete("/v2.0/ports/{port_id}", status_code=204, summary="Delete a port", response_class=Response,
               responses=errors(403, 409))
async def delete_port(port_id: str, db: DB, caller: Who):
    async with db.lock:
        from .floatingips import FLOATINGIP, disassociated
        record = find(db, caller, "port", port_id, lambda r: owns(caller, r))
        owner, device = record.body.get("device_owner", ""), record.body.get("device_id", "")
        if (owner in (ROUTER_INTERFACE, ROUTER_GATEWAY) and db.get("router", device)) or (
                owner == FLOATINGIP and db.get("floatingip", device)):
            raise conflict("L3PortInUse", f"Port {port_id} has owner {owner} and therefore cannot be deleted "
                                          f"directly via the port API.")
        balancers = db.referring("port", port_id, "loadbalancer")
        if balancers:
            raise conflict("PortInUse", f"Port {port_id} holds the VIP of load balancer {balancers[0].id}: it goes "
                                        f"with the load balancer (DELETE /v2/lbaas/loadbalancers/{balancers[0].id}).")
        # its floating IPs disassociated, its firewall group without it, in the same commit
        await db.commit([*disassociated(db, port_id), *fwaas.without_port(db, port_id), ("delete", "port", port_id)])
    return no_content()
