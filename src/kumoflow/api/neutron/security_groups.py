"""/v2.0/security-groups and /v2.0/security-group-rules.

Every project has a ``default`` group, made on first need (its first port,
or its first look at its groups) with Neutron's default rules: egress to
anywhere over IPv4 and IPv6, ingress from members of the same group. A new
group gets the two egress rules. Rules are stored as records of their own;
a group shows its rules. A rule's remote end is at most one of
``remote_ip_prefix``, ``remote_group_id`` (members of a security group) and
``remote_address_group_id`` (the CIDRs of an address group, Neutron's
address-group extension).
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from kumoflow.store import Record

from ..server import Caller
from .common import (DB, DESCRIPTION, INT, NAME, PROJECT_PATTERN, STR, TAG, Body, Who, answer, bad, bumped,
                     caller_project, common, conflict, errors, fields_of, find, given, list_parameters, new_id,
                     no_content, one_or_many, owns, pick, project_of, select, show_parameters, shown, BOOL)
from .db import NeutronDB

router = APIRouter(tags=["security groups"])

#: protocols that have ports (port_range_min/max are ports); ICMP's are type and code
PORT_PROTOCOLS = {"tcp", "udp", "sctp", "dccp", "udplite", "6", "17", "132", "33", "136"}
ICMP4 = {"icmp", "1"}
ICMP6 = {"icmpv6", "ipv6-icmp", "58"}
PROTOCOL_NAMES = {"ah", "dccp", "egp", "esp", "gre", "icmp", "icmpv6", "igmp", "ipip", "ipv6-encap", "ipv6-frag",
                  "ipv6-icmp", "ipv6-nonxt", "ipv6-opts", "ipv6-route", "ospf", "pgm", "rsvp", "sctp", "tcp", "udp",
                  "udplite", "vrrp", "any"}


class GroupCreate(Body):
    name: NAME = ""
    description: DESCRIPTION = ""
    project_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    tenant_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    stateful: bool = True
    tags: list[TAG] = Field(default_factory=list, max_length=50)


class GroupUpdate(Body):
    name: NAME | None = None
    description: DESCRIPTION | None = None
    stateful: bool | None = None
    tags: list[TAG] | None = Field(None, max_length=50)


class GroupCreateRequest(Body):
    security_group: GroupCreate | None = None
    security_groups: list[GroupCreate] | None = Field(None, min_length=1, max_length=1000)


class GroupUpdateRequest(Body):
    security_group: GroupUpdate


class RuleCreate(Body):
    security_group_id: str = Field(max_length=64)
    direction: Literal["ingress", "egress"]
    ethertype: Literal["IPv4", "IPv6"] = "IPv4"
    protocol: str | int | None = Field(None, description="a name (tcp, udp, icmp, ...) or a number 0..255; "
                                                         "null: any")
    port_range_min: int | None = Field(None, ge=0, le=65535, description="first port, or the ICMP type")
    port_range_max: int | None = Field(None, ge=0, le=65535, description="last port, or the ICMP code")
    remote_ip_prefix: str | None = Field(None, max_length=64)
    remote_group_id: str | None = Field(None, max_length=64)
    remote_address_group_id: str | None = Field(None, max_length=64, description="an address group: its CIDRs of "
                                                                                  "the rule's ethertype")
    description: DESCRIPTION = ""
    project_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    tenant_id: str | None = Field(None, pattern=PROJECT_PATTERN)


class RuleUpdate(Body):
    description: DESCRIPTION | None = None


class RuleCreateRequest(Body):
    security_group_rule: RuleCreate | None = None
    security_group_rules: list[RuleCreate] | None = Field(None, min_length=1, max_length=1000)


class RuleUpdateRequest(Body):
    security_group_rule: RuleUpdate


class Rule(BaseModel):
    """A security group rule (every attribute is there unless `fields` asked for others)."""
    id: str = None
    tenant_id: str = None
    project_id: str = None
    security_group_id: str = None
    direction: Literal["ingress", "egress"] = None
    ethertype: Literal["IPv4", "IPv6"] = None
    protocol: str | None = None
    port_range_min: int | None = None
    port_range_max: int | None = None
    remote_ip_prefix: str | None = None
    remote_group_id: str | None = None
    remote_address_group_id: str | None = None
    description: str = None
    created_at: str = None
    updated_at: str = None
    revision_number: int = None


class Group(BaseModel):
    """A security group (every attribute is there unless `fields` asked for others)."""
    id: str = None
    name: str = None
    description: str = None
    tenant_id: str = None
    project_id: str = None
    stateful: bool = None
    security_group_rules: list[Rule] = None
    tags: list[str] = None
    created_at: str = None
    updated_at: str = None
    revision_number: int = None


class GroupResponse(BaseModel):
    security_group: Group


class GroupList(BaseModel):
    security_groups: list[Group]


class RuleResponse(BaseModel):
    security_group_rule: Rule


class RuleList(BaseModel):
    security_group_rules: list[Rule]


GROUP_ATTRS = {"id": STR, "name": STR, "description": STR, "tenant_id": STR, "project_id": STR, "stateful": BOOL,
               "revision_number": INT}
RULE_ATTRS = {"id": STR, "tenant_id": STR, "project_id": STR, "security_group_id": STR, "direction": STR,
              "ethertype": STR, "protocol": STR, "port_range_min": INT, "port_range_max": INT,
              "remote_ip_prefix": STR, "remote_group_id": STR, "remote_address_group_id": STR, "description": STR,
              "revision_number": INT}


def rule_view(r: Record) -> dict:
    return {**common(r), "remote_address_group_id": None, **shown(r.body)}    # rules stored before it lack it


def group_view(db: NeutronDB, r: Record) -> dict:
    rules = [rule_view(rule) for rule in db.referring("security_group", r.id, "security_group_rule")
             if rule.body["security_group_id"] == r.id]
    return {**common(r), **shown(r.body), "security_group_rules": rules}


def _rule(group_id: str, direction: str, ethertype: str, remote_group_id: str | None = None) -> dict:
    return {"security_group_id": group_id, "direction": direction, "ethertype": ethertype, "protocol": None,
            "port_range_min": None, "port_range_max": None, "remote_ip_prefix": None,
            "remote_group_id": remote_group_id, "remote_address_group_id": None, "description": ""}


def new_group_ops(project: str, body: dict, default: bool = False) -> tuple[str, list[tuple]]:
    group_id = new_id()
    ops: list[tuple] = [("create", "security_group", {**body, **({"_default": True} if default else {})}, project,
                         group_id)]
    for ethertype in ("IPv4", "IPv6"):
        ops.append(("create", "security_group_rule", _rule(group_id, "egress", ethertype), project, new_id()))
    if default:
        for ethertype in ("IPv4", "IPv6"):
            ops.append(("create", "security_group_rule", _rule(group_id, "ingress", ethertype, group_id), project,
                        new_id()))
    return group_id, ops


def ensure_default(db: NeutronDB, project: str, made: dict[str, str], ops: list[tuple]) -> str:
    """The project's default group; its creation appended to `ops` when it has none yet."""
    found = db.default_groups.get(project) or made.get(project)
    if found:
        return found
    group_id, more = new_group_ops(project, {"name": "default", "description": "Default security group",
                                             "stateful": True, "tags": []}, default=True)
    ops.extend(more)
    made[project] = group_id
    return group_id


async def _ensure_own_default(db: NeutronDB, caller: Caller) -> None:
    if caller.admin:
        return
    async with db.lock:
        ops: list[tuple] = []
        ensure_default(db, caller.project_id, {}, ops)
        if ops:
            await db.commit(ops)


# --- groups ---------------------------------------------------------------------------------------


@router.post("/v2.0/security-groups", status_code=201, summary="Create a security group (or several: bulk)",
             response_model=GroupResponse | GroupList, responses=errors(409))
async def create_groups(body: GroupCreateRequest, db: DB, caller: Who) -> dict:
    items, bulk = one_or_many(body, "security_group", "security_groups")
    async with db.lock:
        ops: list[tuple] = []
        made: dict[str, str] = {}
        ids = []
        for item in items:
            values = given(item)
            project = project_of(caller, values)
            ensure_default(db, project, made, ops)
            if item.name == "default":
                raise conflict("SecurityGroupDefaultAlreadyExists", "Default security group already exists.")
            group_id, more = new_group_ops(project, {"name": item.name, "description": item.description,
                                                     "stateful": item.stateful, "tags": list(item.tags)})
            ops += more
            ids.append(group_id)
        await db.commit(ops)
    made_views = [group_view(db, db.get("security_group", i)) for i in ids]
    return answer({"security_groups": made_views} if bulk else {"security_group": made_views[0]}, 201)


@router.get("/v2.0/security-groups", summary="List security groups", response_model=GroupList, responses=errors(),
            openapi_extra=list_parameters(GROUP_ATTRS))
async def list_groups(request: Request, db: DB, caller: Who) -> dict:
    await _ensure_own_default(db, caller)
    items = [group_view(db, r) for r in db.all("security_group") if owns(caller, r)]
    return answer({"security_groups": select(request, items, GROUP_ATTRS)})


@router.get("/v2.0/security-groups/{security_group_id}", summary="Show a security group",
            response_model=GroupResponse, openapi_extra=show_parameters())
async def show_group(security_group_id: str, request: Request, db: DB, caller: Who) -> dict:
    item = group_view(db, find(db, caller, "security_group", security_group_id, lambda r: owns(caller, r)))
    fields = fields_of(request)
    return answer({"security_group": pick(item, fields) if fields else item})


@router.put("/v2.0/security-groups/{security_group_id}", summary="Update a security group",
            response_model=GroupResponse, responses=errors(409))
async def update_group(security_group_id: str, body: GroupUpdateRequest, db: DB, caller: Who) -> dict:
    async with db.lock:
        record = find(db, caller, "security_group", security_group_id, lambda r: owns(caller, r))
        values = given(body.security_group)
        for name, value in values.items():
            if value is None:
                raise bad(f"{name} must not be null")
        if record.body.get("_default") and values.get("name", "default") != "default":
            raise conflict("SecurityGroupCannotUpdateDefault", "Updating default security group not allowed.")
        if record.body.get("_default") is None and values.get("name") == "default":
            raise conflict("SecurityGroupDefaultAlreadyExists", "Default security group already exists.")
        [change] = await db.commit([("update", "security_group", security_group_id,
                                     bumped({**record.body, **values}))])
    return answer({"security_group": group_view(db, change.record)})


@router.delete("/v2.0/security-groups/{security_group_id}", status_code=204, summary="Delete a security group",
               response_class=Response, responses=errors(409))
async def delete_group(security_group_id: str, db: DB, caller: Who):
    async with db.lock:
        record = find(db, caller, "security_group", security_group_id, lambda r: owns(caller, r))
        if record.body.get("_default") and not caller.admin:
            raise conflict("SecurityGroupCannotRemoveDefault", "Insufficient rights for removing default security "
                                                               "group.")
        if db.referring("security_group", security_group_id, "port"):
            raise conflict("SecurityGroupInUse", f"Security Group {security_group_id} in use.")
        rules = db.referring("security_group", security_group_id, "security_group_rule")
        ops = [("delete", "security_group_rule", r.id) for r in rules]
        ops.append(("delete", "security_group", security_group_id))
        await db.commit(ops)
    return no_content()


# --- rules ----------------------------------------------------------------------------------------


def _protocol(value: str | int | None) -> str | None:
    if value is None:
        return None
    text = str(value).lower()
    if text.isdigit():
        if not 0 <= int(text) <= 255:
            raise bad(f"Security group rule protocol {value} not supported. Only protocol values [names] and integer "
                      f"representations [0 to 255] are supported.", "SecurityGroupRuleInvalidProtocol")
        return str(int(text))
    if text not in PROTOCOL_NAMES:
        raise bad(f"Security group rule protocol {value} not supported. Only protocol values "
                  f"{sorted(PROTOCOL_NAMES)} and integer representations [0 to 255] are supported.",
                  "SecurityGroupRuleInvalidProtocol")
    return None if text == "any" else text


def new_rule(db: NeutronDB, caller: Caller, item: RuleCreate, batch: list[dict]) -> tuple[dict, str]:
    group = find(db, caller, "security_group", item.security_group_id, lambda r: owns(caller, r))
    values = given(item)
    project_of(caller, values)
    protocol = _protocol(item.protocol)
    low, high = item.port_range_min, item.port_range_max
    if (low is not None or high is not None) and protocol is None:
        raise bad("Must also specify protocol if port range is given.", "SecurityGroupProtocolRequiredWithPorts")
    if protocol in PORT_PROTOCOLS and (low is not None or high is not None):
        if low is None or high is None or low < 1 or low > high:
            raise bad("For TCP/UDP protocols, port_range_min must be <= port_range_max and both 1..65535.",
                      "SecurityGroupInvalidPortRange")
    elif protocol in ICMP4 | ICMP6:
        if (low is not None and low > 255) or (high is not None and high > 255):
            raise bad("Invalid value for ICMP type or code: 0..255.", "SecurityGroupInvalidIcmpValue")
        if high is not None and low is None:
            raise bad("ICMP code (port-range-max) is given without an ICMP type (port-range-min).",
                      "SecurityGroupMissingIcmpType")
    elif low is not None or high is not None:
        raise bad(f"Protocol {protocol} has no ports.", "SecurityGroupInvalidPortRange")
    if protocol in ICMP4 and item.ethertype == "IPv6" or protocol in ICMP6 and item.ethertype == "IPv4":
        raise bad(f"Ethertype {item.ethertype} is not valid for protocol {protocol}.",
                  "SecurityGroupEthertypeConflictWithProtocol")
    prefix = item.remote_ip_prefix
    if prefix is not None:
        try:
            net = ipaddress.ip_network(prefix, strict=False)
        except ValueError:
            raise bad(f"'{prefix}' is not a valid IP prefix (remote_ip_prefix)") from None
        if f"IPv{net.version}" != item.ethertype:
            raise bad(f"Conflicting value ethertype {item.ethertype} for CIDR {prefix}",
                      "SecurityGroupRuleParameterConflict")
        prefix = str(net)
    if item.remote_group_id is not None and prefix is not None:
        raise bad("Only remote_ip_prefix or remote_group_id may be provided.",
                  "SecurityGroupRemoteGroupAndRemoteIpPrefix")
    if item.remote_address_group_id is not None and (prefix is not None or item.remote_group_id is not None):
        raise bad("Only one of remote_ip_prefix, remote_group_id and remote_address_group_id may be provided.",
                  "SecurityGroupMultipleRemoteEntites")        # sic: Neutron's name
    if item.remote_group_id is not None:
        find(db, caller, "security_group", item.remote_group_id, lambda r: owns(caller, r))
    if item.remote_address_group_id is not None:
        find(db, caller, "address_group", item.remote_address_group_id, lambda r: owns(caller, r))
    body = {"security_group_id": group.id, "direction": item.direction, "ethertype": item.ethertype,
            "protocol": protocol, "port_range_min": low, "port_range_max": high, "remote_ip_prefix": prefix,
            "remote_group_id": item.remote_group_id, "remote_address_group_id": item.remote_address_group_id,
            "description": item.description}
    key = {k: v for k, v in body.items() if k != "description"}
    for other in db.referring("security_group", group.id, "security_group_rule"):
        if other.body["security_group_id"] == group.id and all(other.body.get(k) == v for k, v in key.items()):
            raise conflict("SecurityGroupRuleExists", f"Security group rule already exists. Rule id is {other.id}.")
    if any(all(b.get(k) == v for k, v in key.items()) for b in batch):
        raise conflict("SecurityGroupRuleExists", "Security group rule already exists (twice in this request).")
    return body, group.project_id


@router.post("/v2.0/security-group-rules", status_code=201, summary="Create a rule (or several: bulk)",
             response_model=RuleResponse | RuleList, responses=errors(404, 409))
async def create_rules(body: RuleCreateRequest, db: DB, caller: Who) -> dict:
    items, bulk = one_or_many(body, "security_group_rule", "security_group_rules")
    async with db.lock:
        ops, batch = [], []
        for item in items:
            new, project = new_rule(db, caller, item, batch)
            batch.append(new)
            ops.append(("create", "security_group_rule", new, project, new_id()))
        changes = await db.commit(ops)
    made = [rule_view(c.record) for c in changes]
    return answer({"security_group_rules": made} if bulk else {"security_group_rule": made[0]}, 201)


@router.get("/v2.0/security-group-rules", summary="List security group rules", response_model=RuleList,
            responses=errors(), openapi_extra=list_parameters(RULE_ATTRS, tags=False))
async def list_rules(request: Request, db: DB, caller: Who) -> dict:
    await _ensure_own_default(db, caller)
    items = [rule_view(r) for r in db.all("security_group_rule") if owns(caller, r)]
    return answer({"security_group_rules": select(request, items, RULE_ATTRS)})


@router.get("/v2.0/security-group-rules/{rule_id}", summary="Show a security group rule",
            response_model=RuleResponse, openapi_extra=show_parameters())
async def show_rule(rule_id: str, request: Request, db: DB, caller: Who) -> dict:
    item = rule_view(find(db, caller, "security_group_rule", rule_id, lambda r: owns(caller, r)))
    fields = fields_of(request)
    return answer({"security_group_rule": pick(item, fields) if fields else item})


@router.put("/v2.0/security-group-rules/{rule_id}", summary="Update a rule's description",
            response_model=RuleResponse, responses=errors())
async def update_rule(rule_id: str, body: RuleUpdateRequest, db: DB, caller: Who) -> dict:
    async with db.lock:
        record = find(db, caller, "security_group_rule", rule_id, lambda r: owns(caller, r))
        values = given(body.security_group_rule)
        if values.get("description", "") is None:
            raise bad("description must not be null")
        [change] = await db.commit([("update", "security_group_rule", rule_id, bumped({**record.body, **values}))])
    return answer({"security_group_rule": rule_view(change.record)})


@router.delete("/v2.0/security-group-rules/{rule_id}", status_code=204, summary="Delete a rule",
               response_class=Response, responses=errors())
async def delete_rule(rule_id: str, db: DB, caller: Who):
    async with db.lock:
        find(db, caller, "security_group_rule", rule_id, lambda r: owns(caller, r))
        await db.commit([("delete", "security_group_rule", rule_id)])
    return no_content()


__all__ = ["router", "ensure_default", "caller_project"]
