"""/v2.0/fwaas/firewall_rules, /v2.0/fwaas/firewall_policies and /v2.0/fwaas/firewall_groups:
firewall-as-a-service in the shapes of Neutron's FWaaS v2.

A rule says what it matches (protocol, IP version, source and destination
address and port) and what to do with it (``allow``, ``deny``, ``reject``);
a policy is an ordered list of rules (``firewall_rules``; ``PUT
.../insert_rule`` and ``.../remove_rule`` edit it in place); a group applies
an ingress and an egress policy to its ``ports``. As in Neutron: a rule may
be in several policies (its ``firewall_policy_id`` lists them, null when
none) but once in each; a port is in one group at most (409
FirewallGroupPortInUse) and in the group's project; a rule, policy or group
is another project's to see only when ``shared`` (which needs the admin),
and a shared policy holds only shared rules. What is in use cannot go: a
rule in a policy (409 FirewallRuleInUse), a policy of a group (409
FirewallPolicyInUse), a group with ports (409 FirewallGroupInUse). Deleting
a port takes it out of its group. Changing a policy, or one of its rules,
clears its ``audited``.

kumoflow's extensions of a rule (absent from Neutron): ``source_address_group_id``
/ ``destination_address_group_id`` (an address group's CIDRs) and
``source_user_group`` / ``destination_user_group`` (the ports whose
``user_groups`` have the tag), each side one of these or ``*_ip_address``;
``log`` (log what the rule denies or rejects); ``http_host`` (``example.test``
or ``*.example.test``) and ``http_path`` (a path prefix such as ``/admin``),
with protocol tcp only (kumoflow.packet.http's HostPattern and PathPrefix
check them). Rules, policies and groups have ``tags``, as Neutron's other
resources have (neutron-fwaas's have none): `kumoflow apply` knows what it made
by them.

Stored forms, for the apps that compile them: ``protocol`` is null (any),
``tcp``, ``udp``, ``icmp`` (ICMPv6 in an IPv6 rule, as Neutron takes it),
``icmpv6`` or another protocol's number as text (``"47"``); addresses are
CIDRs in canonical text (``10.0.0.5`` is stored ``10.0.0.5/32``); ports are
``"N"`` or ``"N:M"`` (N < M); ``action`` is lower case.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, StrictInt

from kumoflow.packet.http import HostPattern, PathPrefix
from kumoflow.store import Record

from ..server import ApiError, Caller
from .common import (BOOL, DB, DESCRIPTION, INT, LIST, NAME, PROJECT_PATTERN, STR, TAG, USER_GROUP, Body, Who,
                     admin_only, answer, bad, bumped, common, conflict, errors, fields_of, find, find_own, given,
                     list_parameters, new_id, no_content, one_or_many, owns, pick, project_of, select, show_parameters,
                     shown, visible)
from .db import NeutronDB

router = APIRouter(tags=["firewall (FWaaS v2)"])

#: protocol as given (lower case) -> as stored; null is any protocol
PROTOCOLS = {"tcp": "tcp", "6": "tcp", "udp": "udp", "17": "udp", "icmp": "icmp", "1": "icmp",
             "icmpv6": "icmpv6", "ipv6-icmp": "icmpv6", "58": "icmpv6", "any": None}
ACTIONS = ("allow", "deny", "reject")
PORT_RANGE = re.compile(r"^([0-9]{1,5})(?::([0-9]{1,5}))?$")
#: the one network-owned port a group may hold (ports.ROUTER_INTERFACE; ports imports this module)
ROUTER_INTERFACE = "network:router_interface"
SIDES = ("source", "destination")
#: attributes a rule update may set to null (the others must keep a value)
NULLABLE = {"protocol", "source_ip_address", "destination_ip_address", "source_port", "destination_port",
            "source_address_group_id", "destination_address_group_id", "source_user_group", "destination_user_group",
            "http_host", "http_path"}
ID = Field(None, max_length=64)


# --- bodies -----------------------------------------------------------------------------------------


class FirewallRuleCreate(Body):
    name: NAME = ""
    description: DESCRIPTION = ""
    project_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    tenant_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    tags: list[TAG] = Field(default_factory=list, max_length=50)
    protocol: str | StrictInt | None = Field(None, description="tcp, udp, icmp, icmpv6, or a number 0..255; null: any")
    ip_version: Literal[4, 6] = 4
    source_ip_address: str | None = Field(None, max_length=64, description="an address or CIDR of ip_version")
    destination_ip_address: str | None = Field(None, max_length=64, description="an address or CIDR of ip_version")
    source_port: str | StrictInt | None = Field(None, description='"N" or "N:M" (1..65535), tcp and udp only')
    destination_port: str | StrictInt | None = Field(None, description='"N" or "N:M" (1..65535), tcp and udp only')
    action: str = Field("deny", max_length=16, description="allow, deny or reject")
    enabled: bool = True
    shared: bool = Field(False, description="usable by every project (admin only)")
    source_address_group_id: str | None = Field(None, max_length=64, description="kumoflow: an address group's "
                                                "CIDRs as the source (not with source_ip_address)")
    destination_address_group_id: str | None = Field(None, max_length=64, description="kumoflow: an address "
                                                     "group's CIDRs as the destination")
    source_user_group: USER_GROUP | None = Field(None, description="kumoflow: from ports with this user group")
    destination_user_group: USER_GROUP | None = Field(None, description="kumoflow: to ports with this user group")
    log: bool = Field(False, description="kumoflow: log what this rule denies or rejects")
    http_host: str | None = Field(None, max_length=255, description="kumoflow: example.test or *.example.test "
                                                                    "(tcp only)")
    http_path: str | None = Field(None, max_length=1024, description="kumoflow: a path prefix such as /admin "
                                                                     "(tcp only)")


class FirewallRuleUpdate(Body):
    name: NAME | None = None
    description: DESCRIPTION | None = None
    tags: list[TAG] | None = Field(None, max_length=50)
    protocol: str | StrictInt | None = None
    ip_version: Literal[4, 6] | None = None
    source_ip_address: str | None = Field(None, max_length=64)
    destination_ip_address: str | None = Field(None, max_length=64)
    source_port: str | StrictInt | None = None
    destination_port: str | StrictInt | None = None
    action: str | None = Field(None, max_length=16)
    enabled: bool | None = None
    shared: bool | None = None
    source_address_group_id: str | None = Field(None, max_length=64)
    destination_address_group_id: str | None = Field(None, max_length=64)
    source_user_group: USER_GROUP | None = None
    destination_user_group: USER_GROUP | None = None
    log: bool | None = None
    http_host: str | None = Field(None, max_length=255)
    http_path: str | None = Field(None, max_length=1024)


class FirewallRuleCreateRequest(Body):
    firewall_rule: FirewallRuleCreate | None = None
    firewall_rules: list[FirewallRuleCreate] | None = Field(None, min_length=1, max_length=1000)


class FirewallRuleUpdateRequest(Body):
    firewall_rule: FirewallRuleUpdate


class FirewallPolicyCreate(Body):
    name: NAME = ""
    description: DESCRIPTION = ""
    project_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    tenant_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    tags: list[TAG] = Field(default_factory=list, max_length=50)
    firewall_rules: list[str] | None = Field(None, max_length=10000, description="rule ids, the first first")
    shared: bool = Field(False, description="usable by every project (admin only)")
    audited: bool = False


class FirewallPolicyUpdate(Body):
    name: NAME | None = None
    description: DESCRIPTION | None = None
    tags: list[TAG] | None = Field(None, max_length=50)
    firewall_rules: list[str] | None = Field(None, max_length=10000)
    shared: bool | None = None
    audited: bool | None = None


class FirewallPolicyCreateRequest(Body):
    firewall_policy: FirewallPolicyCreate | None = None
    firewall_policies: list[FirewallPolicyCreate] | None = Field(None, min_length=1, max_length=1000)


class FirewallPolicyUpdateRequest(Body):
    firewall_policy: FirewallPolicyUpdate


class InsertRuleRequest(Body):
    firewall_rule_id: str | None = ID
    insert_before: str | None = Field(None, max_length=64, description="before this rule of the policy")
    insert_after: str | None = Field(None, max_length=64, description="after this rule (when no insert_before); "
                                                                      "neither: first")


class RemoveRuleRequest(Body):
    firewall_rule_id: str | None = ID


class FirewallGroupCreate(Body):
    name: NAME = ""
    description: DESCRIPTION = ""
    project_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    tenant_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    tags: list[TAG] = Field(default_factory=list, max_length=50)
    ingress_firewall_policy_id: str | None = ID
    egress_firewall_policy_id: str | None = ID
    ports: list[str] | None = Field(None, max_length=1000, description="port ids of the group's project")
    admin_state_up: bool = True
    shared: bool = Field(False, description="visible to every project (admin only)")


class FirewallGroupUpdate(Body):
    name: NAME | None = None
    description: DESCRIPTION | None = None
    tags: list[TAG] | None = Field(None, max_length=50)
    ingress_firewall_policy_id: str | None = ID
    egress_firewall_policy_id: str | None = ID
    ports: list[str] | None = Field(None, max_length=1000)
    admin_state_up: bool | None = None
    shared: bool | None = None


class FirewallGroupCreateRequest(Body):
    firewall_group: FirewallGroupCreate | None = None
    firewall_groups: list[FirewallGroupCreate] | None = Field(None, min_length=1, max_length=1000)


class FirewallGroupUpdateRequest(Body):
    firewall_group: FirewallGroupUpdate


# --- answers --------------------------------------------------------------------------------------


class FirewallRule(BaseModel):
    """A firewall rule (every attribute is there unless `fields` asked for others)."""
    id: str = None
    name: str = None
    description: str = None
    tenant_id: str = None
    project_id: str = None
    tags: list[str] = None
    protocol: str | None = None
    ip_version: int = None
    source_ip_address: str | None = None
    destination_ip_address: str | None = None
    source_port: str | None = None
    destination_port: str | None = None
    action: str = None
    enabled: bool = None
    shared: bool = None
    firewall_policy_id: list[str] | None = Field(None, description="the policies that hold it (that the token "
                                                                   "sees); null: none")
    source_address_group_id: str | None = None
    destination_address_group_id: str | None = None
    source_user_group: str | None = None
    destination_user_group: str | None = None
    log: bool = None
    http_host: str | None = None
    http_path: str | None = None
    created_at: str = None
    updated_at: str = None
    revision_number: int = None


class FirewallPolicy(BaseModel):
    """A firewall policy (every attribute is there unless `fields` asked for others)."""
    id: str = None
    name: str = None
    description: str = None
    tenant_id: str = None
    project_id: str = None
    tags: list[str] = None
    firewall_rules: list[str] = None
    shared: bool = None
    audited: bool = None
    created_at: str = None
    updated_at: str = None
    revision_number: int = None


class FirewallGroup(BaseModel):
    """A firewall group (every attribute is there unless `fields` asked for others)."""
    id: str = None
    name: str = None
    description: str = None
    tenant_id: str = None
    project_id: str = None
    tags: list[str] = None
    ingress_firewall_policy_id: str | None = None
    egress_firewall_policy_id: str | None = None
    ports: list[str] = None
    admin_state_up: bool = None
    shared: bool = None
    status: Literal["ACTIVE", "INACTIVE", "DOWN"] = Field(None, description="DOWN: not admin_state_up; ACTIVE: "
                                                                            "it has ports; else INACTIVE")
    created_at: str = None
    updated_at: str = None
    revision_number: int = None


class FirewallRuleResponse(BaseModel):
    firewall_rule: FirewallRule


class FirewallRuleList(BaseModel):
    firewall_rules: list[FirewallRule]


class FirewallPolicyResponse(BaseModel):
    firewall_policy: FirewallPolicy


class FirewallPolicyList(BaseModel):
    firewall_policies: list[FirewallPolicy]


class FirewallGroupResponse(BaseModel):
    firewall_group: FirewallGroup


class FirewallGroupList(BaseModel):
    firewall_groups: list[FirewallGroup]


_COMMON_ATTRS = {"id": STR, "name": STR, "description": STR, "tenant_id": STR, "project_id": STR, "shared": BOOL,
                 "revision_number": INT}
RULE_ATTRS = {**_COMMON_ATTRS, "protocol": STR, "ip_version": INT, "source_ip_address": STR,
              "destination_ip_address": STR, "source_port": STR, "destination_port": STR, "action": STR,
              "enabled": BOOL, "firewall_policy_id": LIST, "source_address_group_id": STR,
              "destination_address_group_id": STR, "source_user_group": STR, "destination_user_group": STR,
              "log": BOOL, "http_host": STR, "http_path": STR}
POLICY_ATTRS = {**_COMMON_ATTRS, "firewall_rules": LIST, "audited": BOOL}
GROUP_ATTRS = {**_COMMON_ATTRS, "ingress_firewall_policy_id": STR, "egress_firewall_policy_id": STR, "ports": LIST,
               "admin_state_up": BOOL, "status": STR}


def _view(r: Record) -> dict:
    """A rule, policy or group as shown (a policy: all of it). A record stored before tags lacks them."""
    return {**common(r), "tags": [], **shown(r.body)}


def rule_view(db: NeutronDB, caller: Caller, r: Record) -> dict:
    policies = [p.id for p in db.referring("firewall_rule", r.id, "firewall_policy") if visible(caller, p)]
    return {**_view(r), "firewall_policy_id": policies or None}


def group_status(body: dict) -> str:
    if not body["admin_state_up"]:
        return "DOWN"
    return "ACTIVE" if body["ports"] else "INACTIVE"


def group_view(r: Record) -> dict:
    return {**_view(r), "status": group_status(r.body)}


def without_port(db: NeutronDB, port_id: str) -> list[tuple]:
    """The store updates that take a port being deleted out of its firewall group (as Neutron drops
    the association with the port)."""
    return [("update", "firewall_group", g.id,
             bumped({**g.body, "ports": [p for p in g.body["ports"] if p != port_id]}))
            for g in db.referring("port", port_id, "firewall_group")]


def _no_nulls(values: dict, nullable: set[str] = frozenset()) -> None:
    for name, value in values.items():
        if value is None and name not in nullable:
            raise bad(f"{name} must not be null")


# --- rules ----------------------------------------------------------------------------------------


def _protocol(value: str | int | None) -> str | None:
    if value is None:
        return None
    text = str(value).lower()
    if not (text in PROTOCOLS or text.isdigit() and int(text) <= 255):
        raise bad(f"protocol {value!r}: expected tcp, udp, icmp, icmpv6, any, or a protocol number 0..255")
    return PROTOCOLS[text] if text in PROTOCOLS else str(int(text))


def _address(text: str | None, version: int, name: str) -> str | None:
    """A CIDR in canonical text (an address alone: its /32 or /128), of the rule's IP version."""
    if text is None:
        return None
    try:
        net = ipaddress.ip_network(text)
    except ValueError as exc:
        raise bad(f"{name}: '{text}' is not an address or CIDR ({exc})") from None
    if net.version != version:
        raise bad(f"{name} {text} is IPv{net.version}, the rule's ip_version is {version}: IP addresses do not "
                  f"agree with IP version.", "FirewallIpAddressConflict")
    return str(net)


def _port_range(value: str | int | None, name: str) -> str | None:
    """``"N"`` or ``"N:M"`` with 1 <= N <= M <= 65535 (N:N is stored as N)."""
    if value is None:
        return None
    match = PORT_RANGE.match(str(value))
    low, high = (int(match[1]), int(match[2] or match[1])) if match else (0, 0)
    if not 1 <= low <= high <= 65535:
        raise bad(f"Invalid value for port {value} ({name}): a port 1..65535, or a range N:M with N <= M.",
                  "FirewallRuleInvalidPortValue")
    return str(low) if low == high else f"{low}:{high}"


def _protocol_fits(protocol: str | None, version: int, ports: str | None) -> None:
    """Ports only with tcp and udp; no ICMPv6 in an IPv4 rule."""
    if ports and protocol is None:
        raise bad("Source/destination port requires a protocol (tcp or udp).",
                  "FirewallRuleWithPortWithoutProtocolInvalid")
    if ports and protocol not in ("tcp", "udp"):
        raise bad(f"Source, destination port are not allowed when protocol is {protocol}: only tcp and udp have "
                  f"ports.", "FirewallRuleInvalidICMPParameter")
    if protocol == "icmpv6" and version == 4:       # (icmp in an IPv6 rule is ICMPv6, as Neutron takes it)
        raise bad("protocol icmpv6 does not go with ip_version 4")


def _one_end(rule: dict, side: str) -> None:
    """A side is an address or CIDR, an address group or a user group: one of them at most."""
    named = [f"{side}_{k}" for k in ("ip_address", "address_group_id", "user_group") if rule[f"{side}_{k}"] is not None]
    if len(named) > 1:
        raise bad(f"give one of {side}_ip_address, {side}_address_group_id and {side}_user_group, not "
                  f"{' and '.join(named)}")


def _action(text: str) -> str:
    if text.lower() not in ACTIONS:
        raise bad(f"action '{text}' is not one of {', '.join(ACTIONS)}")
    return text.lower()


def _http(rule: dict, protocol: str | None) -> None:
    """http_host and http_path: valid patterns, on a tcp rule."""
    if rule["http_host"] is None and rule["http_path"] is None:
        return
    if protocol != "tcp":
        raise bad("http_host and http_path match HTTP requests: they need protocol tcp")
    try:
        if rule["http_host"] is not None:
            HostPattern(rule["http_host"])
        if rule["http_path"] is not None:
            PathPrefix(rule["http_path"])
    except ValueError as exc:
        raise bad(str(exc)) from None


def checked_rule(db: NeutronDB, caller: Caller, rule: dict, changed: set[str]) -> dict:
    """`rule` (every attribute: given, defaulted or stored) checked, in its stored form. The address
    groups named in `changed` (the attributes this request gives) must be ones the caller sees."""
    protocol = _protocol(rule["protocol"])
    version = rule["ip_version"]
    out = {"name": rule["name"], "description": rule["description"], "protocol": protocol, "ip_version": version}
    for side in SIDES:
        out[f"{side}_ip_address"] = _address(rule[f"{side}_ip_address"], version, f"{side}_ip_address")
    for side in SIDES:
        out[f"{side}_port"] = _port_range(rule[f"{side}_port"], f"{side}_port")
    _protocol_fits(protocol, version, out["source_port"] or out["destination_port"])
    for side in SIDES:
        _one_end(rule, side)
        group = rule[f"{side}_address_group_id"]
        if group is not None and f"{side}_address_group_id" in changed:
            find(db, caller, "address_group", group, lambda r: owns(caller, r))
        out[f"{side}_address_group_id"] = group
        out[f"{side}_user_group"] = rule[f"{side}_user_group"]
    _http(rule, protocol)
    out["action"] = _action(rule["action"])
    for name in ("enabled", "shared", "log", "http_host", "http_path"):
        out[name] = rule[name]
    out["tags"] = list(rule.get("tags") or [])
    return out


@router.post("/v2.0/fwaas/firewall_rules", status_code=201, summary="Create a firewall rule (or several: bulk)",
             response_model=FirewallRuleResponse | FirewallRuleList, responses=errors(403, 404))
async def create_rules(body: FirewallRuleCreateRequest, db: DB, caller: Who) -> dict:
    items, bulk = one_or_many(body, "firewall_rule", "firewall_rules")
    async with db.lock:
        ops = []
        for item in items:
            admin_only(caller, item, ("shared",), "create_firewall_rule")
            values = given(item)
            project = project_of(caller, values)
            rule = checked_rule(db, caller, item.model_dump(exclude={"project_id", "tenant_id"}), set(values))
            ops.append(("create", "firewall_rule", rule, project, new_id()))
        changes = await db.commit(ops)
    made = [rule_view(db, caller, c.record) for c in changes]
    return answer({"firewall_rules": made} if bulk else {"firewall_rule": made[0]}, 201)


@router.get("/v2.0/fwaas/firewall_rules", summary="List firewall rules", response_model=FirewallRuleList,
            responses=errors(), openapi_extra=list_parameters(RULE_ATTRS))
async def list_rules(request: Request, db: DB, caller: Who) -> dict:
    records = [r for r in db.all("firewall_rule") if visible(caller, r)]
    return answer({"firewall_rules": select(request, records, RULE_ATTRS, render=lambda r: rule_view(db, caller, r),
                                            computed=frozenset({"firewall_policy_id"}))})


@router.get("/v2.0/fwaas/firewall_rules/{firewall_rule_id}", summary="Show a firewall rule",
            response_model=FirewallRuleResponse, responses=errors(404), openapi_extra=show_parameters())
async def show_rule(firewall_rule_id: str, request: Request, db: DB, caller: Who) -> dict:
    item = rule_view(db, caller, find(db, caller, "firewall_rule", firewall_rule_id))
    fields = fields_of(request)
    return answer({"firewall_rule": pick(item, fields) if fields else item})


def _check_unsharing(db: NeutronDB, rule: Record) -> None:
    """A rule that stops being shared must not be in a shared policy or another project's."""
    for policy in db.referring("firewall_rule", rule.id, "firewall_policy"):
        if policy.body["shared"] or policy.project_id != rule.project_id:
            raise conflict("FirewallRuleInUse", f"Firewall rule {rule.id} is in firewall policy {policy.id}, which "
                                                f"is shared or another project's: the rule must stay shared.")


@router.put("/v2.0/fwaas/firewall_rules/{firewall_rule_id}", summary="Update a firewall rule",
            response_model=FirewallRuleResponse, responses=errors(403, 404, 409))
async def update_rule(firewall_rule_id: str, body: FirewallRuleUpdateRequest, db: DB, caller: Who) -> dict:
    async with db.lock:
        record = find_own(db, caller, "firewall_rule", firewall_rule_id, "update")
        admin_only(caller, body.firewall_rule, ("shared",), "update_firewall_rule")
        values = given(body.firewall_rule)
        _no_nulls(values, NULLABLE)
        new = checked_rule(db, caller, {**shown(record.body), **values}, set(values))
        if record.body["shared"] and not new["shared"]:
            _check_unsharing(db, record)
        ops = [("update", "firewall_policy", p.id, bumped({**p.body, "audited": False}))    # a rule of theirs changed
               for p in db.referring("firewall_rule", record.id, "firewall_policy") if p.body["audited"]]
        ops.append(("update", "firewall_rule", record.id, bumped({**record.body, **new})))
        changes = await db.commit(ops)
    return answer({"firewall_rule": rule_view(db, caller, changes[-1].record)})


@router.delete("/v2.0/fwaas/firewall_rules/{firewall_rule_id}", status_code=204, summary="Delete a firewall rule",
               response_class=Response, responses=errors(403, 404, 409))
async def delete_rule(firewall_rule_id: str, db: DB, caller: Who):
    async with db.lock:
        find_own(db, caller, "firewall_rule", firewall_rule_id, "delete")
        policies = db.referring("firewall_rule", firewall_rule_id, "firewall_policy")
        if policies:
            raise conflict("FirewallRuleInUse", f"Firewall rule {firewall_rule_id} is being used (by firewall policy "
                                                f"{policies[0].id}).")
        await db.commit([("delete", "firewall_rule", firewall_rule_id)])
    return no_content()


# --- policies -------------------------------------------------------------------------------------


def _rule_fits(rule: Record, project: str, shared: bool, policy_id: str) -> None:
    """A policy holds its own project's rules and shared ones; a shared policy only shared ones."""
    if shared and not rule.body["shared"]:
        raise ApiError(404, "FirewallRuleSharingConflict", f"Firewall policy {policy_id} is shared; firewall rule "
                                                           f"{rule.id} is not, so the policy cannot hold it.")
    if not rule.body["shared"] and rule.project_id != project:
        raise conflict("FirewallRuleConflict", f"Firewall rule {rule.id} is not shared and belongs to another "
                                               f"project ({rule.project_id}).")


def checked_rules(db: NeutronDB, caller: Caller, ids: list[str], project: str, shared: bool,
                  policy_id: str) -> list[str]:
    """A policy's rules: each visible (404 FirewallRuleNotFound), fitting the policy, once."""
    seen: set[str] = set()
    for rule_id in ids:
        if rule_id in seen:
            raise bad(f"firewall_rules: firewall rule {rule_id} is listed twice")
        seen.add(rule_id)
        _rule_fits(find(db, caller, "firewall_rule", rule_id), project, shared, policy_id)
    return list(ids)


@router.post("/v2.0/fwaas/firewall_policies", status_code=201, summary="Create a firewall policy (or several: bulk)",
             response_model=FirewallPolicyResponse | FirewallPolicyList, responses=errors(403, 404, 409))
async def create_policies(body: FirewallPolicyCreateRequest, db: DB, caller: Who) -> dict:
    items, bulk = one_or_many(body, "firewall_policy", "firewall_policies")
    async with db.lock:
        ops = []
        for item in items:
            admin_only(caller, item, ("shared",), "create_firewall_policy")
            project = project_of(caller, given(item))
            policy_id = new_id()
            rules = checked_rules(db, caller, item.firewall_rules or [], project, item.shared, policy_id)
            ops.append(("create", "firewall_policy", {"name": item.name, "description": item.description,
                                                      "firewall_rules": rules, "shared": item.shared,
                                                      "audited": item.audited, "tags": list(item.tags)},
                        project, policy_id))
        changes = await db.commit(ops)
    made = [_view(c.record) for c in changes]
    return answer({"firewall_policies": made} if bulk else {"firewall_policy": made[0]}, 201)


@router.get("/v2.0/fwaas/firewall_policies", summary="List firewall policies", response_model=FirewallPolicyList,
            responses=errors(), openapi_extra=list_parameters(POLICY_ATTRS))
async def list_policies(request: Request, db: DB, caller: Who) -> dict:
    records = [r for r in db.all("firewall_policy") if visible(caller, r)]
    return answer({"firewall_policies": select(request, records, POLICY_ATTRS, render=_view)})


@router.get("/v2.0/fwaas/firewall_policies/{firewall_policy_id}", summary="Show a firewall policy",
            response_model=FirewallPolicyResponse, responses=errors(404), openapi_extra=show_parameters())
async def show_policy(firewall_policy_id: str, request: Request, db: DB, caller: Who) -> dict:
    item = _view(find(db, caller, "firewall_policy", firewall_policy_id))
    fields = fields_of(request)
    return answer({"firewall_policy": pick(item, fields) if fields else item})


def _rules_shared(db: NeutronDB, policy: Record) -> None:
    """Before a policy is shared, its rules are."""
    for rule_id in policy.body["firewall_rules"]:
        if not db.get("firewall_rule", rule_id).body["shared"]:
            raise conflict("FirewallPolicySharingConflict", f"Share firewall rule {rule_id} before sharing firewall "
                                                            f"policy {policy.id}.")


def _no_other_groups(db: NeutronDB, policy: Record) -> None:
    """A policy that stops being shared is used by no other project's group."""
    for group in db.referring("firewall_policy", policy.id, "firewall_group"):
        if group.project_id != policy.project_id:
            raise conflict("FirewallPolicyInUse", f"Firewall policy {policy.id} is used by firewall group {group.id} "
                                                  f"of another project: it must stay shared.")


@router.put("/v2.0/fwaas/firewall_policies/{firewall_policy_id}", summary="Update a firewall policy",
            response_model=FirewallPolicyResponse, responses=errors(403, 404, 409))
async def update_policy(firewall_policy_id: str, body: FirewallPolicyUpdateRequest, db: DB, caller: Who) -> dict:
    async with db.lock:
        record = find_own(db, caller, "firewall_policy", firewall_policy_id, "update")
        admin_only(caller, body.firewall_policy, ("shared",), "update_firewall_policy")
        values = given(body.firewall_policy)
        _no_nulls(values)
        new = {**record.body, "audited": False, **values}       # any change un-audits it, unless it says
        shared, was_shared = new["shared"], record.body["shared"]
        if "firewall_rules" in values:
            new["firewall_rules"] = checked_rules(db, caller, values["firewall_rules"], record.project_id, shared,
                                                  record.id)
        elif shared and not was_shared:
            _rules_shared(db, record)
        if was_shared and not shared:
            _no_other_groups(db, record)
        [change] = await db.commit([("update", "firewall_policy", record.id, bumped(new))])
    return answer({"firewall_policy": _view(change.record)})


@router.delete("/v2.0/fwaas/firewall_policies/{firewall_policy_id}", status_code=204,
               summary="Delete a firewall policy", response_class=Response, responses=errors(403, 404, 409))
async def delete_policy(firewall_policy_id: str, db: DB, caller: Who):
    async with db.lock:
        find_own(db, caller, "firewall_policy", firewall_policy_id, "delete")
        groups = db.referring("firewall_policy", firewall_policy_id, "firewall_group")
        if groups:
            raise conflict("FirewallPolicyInUse", f"Firewall policy {firewall_policy_id} is being used (by firewall "
                                                  f"group {groups[0].id}).")
        await db.commit([("delete", "firewall_policy", firewall_policy_id)])
    return no_content()


def _rule_info(rule_id: str | None) -> str:
    if not rule_id:
        raise bad("Missing rule info argument for insert/remove rule operation: give firewall_rule_id.",
                  "FirewallRuleInfoMissing")
    return rule_id


def _not_in_policy(rule_id: str, policy_id: str) -> ApiError:
    return bad(f"Firewall rule {rule_id} is not associated with firewall policy {policy_id}.",
               "FirewallRuleNotAssociatedWithPolicy")


@router.put("/v2.0/fwaas/firewall_policies/{firewall_policy_id}/insert_rule",
            summary="Insert a rule into a policy (first, or before/after one of its rules)",
            response_model=FirewallPolicy, responses=errors(400, 403, 404, 409))
async def insert_rule(firewall_policy_id: str, body: InsertRuleRequest, db: DB, caller: Who) -> dict:
    rule_id = _rule_info(body.firewall_rule_id)
    async with db.lock:
        policy = find_own(db, caller, "firewall_policy", firewall_policy_id, "insert_rule")
        rules = list(policy.body["firewall_rules"])
        if rule_id in rules:
            raise conflict("FirewallRuleAlreadyAssociated", f"Firewall rule {rule_id} is already in firewall policy "
                                                            f"{policy.id}.")
        _rule_fits(find(db, caller, "firewall_rule", rule_id), policy.project_id, policy.body["shared"], policy.id)
        anchor = body.insert_before or body.insert_after       # insert_before wins, as in Neutron
        if anchor and anchor not in rules:
            raise _not_in_policy(anchor, policy.id)
        at = 0 if not anchor else rules.index(anchor) + (0 if body.insert_before else 1)
        rules.insert(at, rule_id)
        [change] = await db.commit([("update", "firewall_policy", policy.id,
                                     bumped({**policy.body, "firewall_rules": rules, "audited": False}))])
    return answer(_view(change.record))


@router.put("/v2.0/fwaas/firewall_policies/{firewall_policy_id}/remove_rule", summary="Remove a rule from a policy",
            response_model=FirewallPolicy, responses=errors(400, 403, 404))
async def remove_rule(firewall_policy_id: str, body: RemoveRuleRequest, db: DB, caller: Who) -> dict:
    rule_id = _rule_info(body.firewall_rule_id)
    async with db.lock:
        policy = find_own(db, caller, "firewall_policy", firewall_policy_id, "remove_rule")
        find(db, caller, "firewall_rule", rule_id)
        rules = policy.body["firewall_rules"]
        if rule_id not in rules:
            raise _not_in_policy(rule_id, policy.id)
        [change] = await db.commit([("update", "firewall_policy", policy.id, bumped({
            **policy.body, "firewall_rules": [r for r in rules if r != rule_id], "audited": False}))])
    return answer(_view(change.record))


# --- groups ---------------------------------------------------------------------------------------


def checked_policy(db: NeutronDB, caller: Caller, policy_id: str | None, project: str) -> str | None:
    """A group's ingress or egress policy: visible, and the group's project's unless shared."""
    if policy_id is None:
        return None
    policy = find(db, caller, "firewall_policy", policy_id)
    if not policy.body["shared"] and policy.project_id != project:
        raise ApiError(404, "FirewallPolicyConflict", f"Firewall policy {policy_id} is another project's and not "
                                                      f"shared: firewall groups of {project} cannot use it.")
    return policy_id


def checked_ports(db: NeutronDB, caller: Caller, ids: list[str], project: str, group_id: str,
                  taken: dict[str, str]) -> list[str]:
    """A group's ports: each the caller's and the group's project's, a VM's port or a router interface,
    in no other group (`taken`: port -> group, of groups made earlier in this request)."""
    ports = list(dict.fromkeys(ids))
    in_use = []
    for port_id in ports:
        port = find(db, caller, "port", port_id, lambda r: owns(caller, r))
        if port.project_id != project:
            raise conflict("FirewallGroupPortInvalidProject", f"Port {port_id} is in project {port.project_id}, not "
                                                              f"in the firewall group's ({project}).")
        owner = port.body.get("device_owner", "")
        if owner.startswith("network:") and owner != ROUTER_INTERFACE:
            raise conflict("FirewallGroupPortInvalid", f"Port {port_id} of {owner} cannot be in a firewall group: "
                                                       f"only a VM's port or a router interface can.")
        others = [g for g in db.referring("port", port_id, "firewall_group") if g.id != group_id]
        if others or taken.get(port_id, group_id) != group_id:
            in_use.append(port_id)
    if in_use:
        raise conflict("FirewallGroupPortInUse", f"Port(s) {in_use} already in another firewall group.")
    for port_id in ports:
        taken[port_id] = group_id
    return ports


@router.post("/v2.0/fwaas/firewall_groups", status_code=201, summary="Create a firewall group (or several: bulk)",
             response_model=FirewallGroupResponse | FirewallGroupList, responses=errors(403, 404, 409))
async def create_groups(body: FirewallGroupCreateRequest, db: DB, caller: Who) -> dict:
    items, bulk = one_or_many(body, "firewall_group", "firewall_groups")
    async with db.lock:
        ops = []
        taken: dict[str, str] = {}
        for item in items:
            admin_only(caller, item, ("shared",), "create_firewall_group")
            project = project_of(caller, given(item))
            group_id = new_id()
            ops.append(("create", "firewall_group", {
                "name": item.name, "description": item.description,
                "ingress_firewall_policy_id": checked_policy(db, caller, item.ingress_firewall_policy_id, project),
                "egress_firewall_policy_id": checked_policy(db, caller, item.egress_firewall_policy_id, project),
                "ports": checked_ports(db, caller, item.ports or [], project, group_id, taken),
                "admin_state_up": item.admin_state_up, "shared": item.shared, "tags": list(item.tags)},
                project, group_id))
        changes = await db.commit(ops)
    made = [group_view(c.record) for c in changes]
    return answer({"firewall_groups": made} if bulk else {"firewall_group": made[0]}, 201)


@router.get("/v2.0/fwaas/firewall_groups", summary="List firewall groups", response_model=FirewallGroupList,
            responses=errors(), openapi_extra=list_parameters(GROUP_ATTRS))
async def list_groups(request: Request, db: DB, caller: Who) -> dict:
    records = [r for r in db.all("firewall_group") if visible(caller, r)]
    return answer({"firewall_groups": select(request, records, GROUP_ATTRS, render=group_view,
                                             computed=frozenset({"status"}))})


@router.get("/v2.0/fwaas/firewall_groups/{firewall_group_id}", summary="Show a firewall group",
            response_model=FirewallGroupResponse, responses=errors(404), openapi_extra=show_parameters())
async def show_group(firewall_group_id: str, request: Request, db: DB, caller: Who) -> dict:
    item = group_view(find(db, caller, "firewall_group", firewall_group_id))
    fields = fields_of(request)
    return answer({"firewall_group": pick(item, fields) if fields else item})


@router.put("/v2.0/fwaas/firewall_groups/{firewall_group_id}", summary="Update a firewall group",
            response_model=FirewallGroupResponse, responses=errors(403, 404, 409))
async def update_group(firewall_group_id: str, body: FirewallGroupUpdateRequest, db: DB, caller: Who) -> dict:
    async with db.lock:
        record = find_own(db, caller, "firewall_group", firewall_group_id, "update")
        admin_only(caller, body.firewall_group, ("shared",), "update_firewall_group")
        values = given(body.firewall_group)
        _no_nulls(values, {"ingress_firewall_policy_id", "egress_firewall_policy_id"})
        new = {**record.body, **values}
        for name in ("ingress_firewall_policy_id", "egress_firewall_policy_id"):
            if name in values:
                new[name] = checked_policy(db, caller, values[name], record.project_id)
        if "ports" in values:
            new["ports"] = checked_ports(db, caller, values["ports"], record.project_id, record.id, {})
        [change] = await db.commit([("update", "firewall_group", record.id, bumped(new))])
    return answer({"firewall_group": group_view(change.record)})


@router.delete("/v2.0/fwaas/firewall_groups/{firewall_group_id}", status_code=204, summary="Delete a firewall group",
               response_class=Response, responses=errors(403, 404, 409))
async def delete_group(firewall_group_id: str, db: DB, caller: Who):
    async with db.lock:
        record = find_own(db, caller, "firewall_group", firewall_group_id, "delete")
        if record.body["ports"]:
            raise conflict("FirewallGroupInUse", f"Firewall group {firewall_group_id} still has ports: take them out "
                                                 f"(PUT ports: []) first.")
        await db.commit([("delete", "firewall_group", firewall_group_id)])
    return no_content()


__all__ = ["router", "without_port", "checked_rule"]
