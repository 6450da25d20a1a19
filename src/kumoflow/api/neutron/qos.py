"""/v2.0/qos/policies and their rules: bandwidth_limit_rules,
dscp_marking_rules, minimum_bandwidth_rules (sub-resources of a policy).

A policy is attached to a network or a port by ``qos_policy_id``; it cannot
be deleted while attached (409 QosPolicyInUse). A policy holds at most one
rule of each type per direction (one DSCP marking rule): another is 409.

Enforcement (the `qos` app, apps/qos.py; kumoflow extensions, each project
its own, the admin all; 404 QosNotEnforced without the app):

    GET /v2.0/qos/policies/{id}/usage   what the policy's bandwidth_limit
                                        meters saw and dropped, per rule and summed
    GET /v2.0/ports/{id}/qos            what is enforced at a port: its policy
                                        (its own or its network's), limits with
                                        their bursts, DSCP mark, queue (or why
                                        none guarantees its minimum), its
                                        project's cap
"""

from datetime import datetime, timezone
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from kumoflow.store import Record

from ..server import ApiError, Ctx
from .common import (BOOL, DB, DESCRIPTION, INT, NAME, PROJECT_PATTERN, STR, TAG, Body, Who, admin_only, answer,
                     bad, bumped, common, conflict, errors, fields_of, find, find_own, given, list_parameters,
                     new_id, no_content, one_or_many, owns, pick, project_of, select, show_parameters, shown,
                     visible)
from .db import NeutronDB

router = APIRouter(tags=["qos"])

#: the DSCP values Neutron accepts (RFC 2474 class selectors, RFC 2597 AF, RFC 3246 EF)
DSCP_MARKS = (0, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40, 46, 48, 56)
Direction = Literal["egress", "ingress"]


class PolicyCreate(Body):
    name: NAME = ""
    description: DESCRIPTION = ""
    project_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    tenant_id: str | None = Field(None, pattern=PROJECT_PATTERN)
    shared: bool = Field(False, description="usable by every project (admin only)")
    is_default: bool = False
    tags: list[TAG] = Field(default_factory=list, max_length=50)


class PolicyUpdate(Body):
    name: NAME | None = None
    description: DESCRIPTION | None = None
    shared: bool | None = None
    is_default: bool | None = None
    tags: list[TAG] | None = Field(None, max_length=50)


class PolicyCreateRequest(Body):
    policy: PolicyCreate | None = None
    policies: list[PolicyCreate] | None = Field(None, min_length=1, max_length=1000)


class PolicyUpdateRequest(Body):
    policy: PolicyUpdate


class BandwidthLimitCreate(Body):
    max_kbps: int = Field(ge=0, le=2**31 - 1)
    max_burst_kbps: int = Field(0, ge=0, le=2**31 - 1)
    direction: Direction = "egress"


class BandwidthLimitUpdate(Body):
    max_kbps: int | None = Field(None, ge=0, le=2**31 - 1)
    max_burst_kbps: int | None = Field(None, ge=0, le=2**31 - 1)
    direction: Direction | None = None


class DscpCreate(Body):
    dscp_mark: int = Field(ge=0, le=63, description=f"one of {', '.join(map(str, DSCP_MARKS))}")


class DscpUpdate(Body):
    dscp_mark: int | None = Field(None, ge=0, le=63)


class MinimumCreate(Body):
    min_kbps: int = Field(ge=0, le=2**31 - 1)
    direction: Direction = "egress"


class MinimumUpdate(Body):
    min_kbps: int | None = Field(None, ge=0, le=2**31 - 1)
    direction: Direction | None = None


class BandwidthLimitCreateRequest(Body):
    bandwidth_limit_rule: BandwidthLimitCreate


class BandwidthLimitUpdateRequest(Body):
    bandwidth_limit_rule: BandwidthLimitUpdate


class DscpCreateRequest(Body):
    dscp_marking_rule: DscpCreate


class DscpUpdateRequest(Body):
    dscp_marking_rule: DscpUpdate


class MinimumCreateRequest(Body):
    minimum_bandwidth_rule: MinimumCreate


class MinimumUpdateRequest(Body):
    minimum_bandwidth_rule: MinimumUpdate


class RuleOut(BaseModel):
    id: str = None
    type: Literal["bandwidth_limit", "dscp_marking", "minimum_bandwidth"] = None
    qos_policy_id: str = None
    max_kbps: int = None
    max_burst_kbps: int = None
    direction: Direction = None
    dscp_mark: int = None
    min_kbps: int = None


class Policy(BaseModel):
    """A QoS policy (every attribute is there unless `fields` asked for others)."""
    id: str = None
    name: str = None
    description: str = None
    tenant_id: str = None
    project_id: str = None
    shared: bool = None
    is_default: bool = None
    rules: list[RuleOut] = None
    tags: list[str] = None
    created_at: str = None
    updated_at: str = None
    revision_number: int = None


class PolicyResponse(BaseModel):
    policy: Policy


class PolicyList(BaseModel):
    policies: list[Policy]


ATTRS = {"id": STR, "name": STR, "description": STR, "tenant_id": STR, "project_id": STR, "shared": BOOL,
         "is_default": BOOL, "revision_number": INT}


def rule_view(r: Record) -> dict:
    body = shown(r.body)
    return {"id": r.id, **body}


def view(db: NeutronDB, r: Record) -> dict:
    rules = [rule_view(rule) for rule in db.referring("qos_policy", r.id, "qos_rule")]
    return {**common(r), **shown(r.body), "rules": rules}


@router.post("/v2.0/qos/policies", status_code=201, summary="Create a QoS policy (or several: bulk)",
             response_model=PolicyResponse | PolicyList, responses=errors(403))
async def create_policies(body: PolicyCreateRequest, db: DB, caller: Who) -> dict:
    items, bulk = one_or_many(body, "policy", "policies")
    async with db.lock:
        ops = []
        for item in items:
            admin_only(caller, item, ("shared",), "create_policy")
            values = given(item)
            project = project_of(caller, values)
            ops.append(("create", "qos_policy", {"name": item.name, "description": item.description,
                                                 "shared": item.shared, "is_default": item.is_default,
                                                 "tags": list(item.tags)}, project, new_id()))
        changes = await db.commit(ops)
    made = [view(db, c.record) for c in changes]
    return answer({"policies": made} if bulk else {"policy": made[0]}, 201)


@router.get("/v2.0/qos/policies", summary="List QoS policies", response_model=PolicyList, responses=errors(),
            openapi_extra=list_parameters(ATTRS))
async def list_policies(request: Request, db: DB, caller: Who) -> dict:
    items = [view(db, r) for r in db.all("qos_policy") if visible(caller, r)]
    return answer({"policies": select(request, items, ATTRS)})


@router.get("/v2.0/qos/policies/{policy_id}", summary="Show a QoS policy", response_model=PolicyResponse,
            openapi_extra=show_parameters())
async def show_policy(policy_id: str, request: Request, db: DB, caller: Who) -> dict:
    item = view(db, find(db, caller, "qos_policy", policy_id))
    fields = fields_of(request)
    return answer({"policy": pick(item, fields) if fields else item})


@router.put("/v2.0/qos/policies/{policy_id}", summary="Update a QoS policy", response_model=PolicyResponse,
            responses=errors(403))
async def update_policy(policy_id: str, body: PolicyUpdateRequest, db: DB, caller: Who) -> dict:
    async with db.lock:
        record = find_own(db, caller, "qos_policy", policy_id, "update")
        admin_only(caller, body.policy, ("shared",), "update_policy")
        values = given(body.policy)
        for name, value in values.items():
            if value is None:
                raise bad(f"{name} must not be null")
        [change] = await db.commit([("update", "qos_policy", policy_id, bumped({**record.body, **values}))])
    return answer({"policy": view(db, change.record)})


@router.delete("/v2.0/qos/policies/{policy_id}", status_code=204, summary="Delete a QoS policy",
               response_class=Response, responses=errors(403, 409))
async def delete_policy(policy_id: str, db: DB, caller: Who):
    async with db.lock:
        find_own(db, caller, "qos_policy", policy_id, "delete")
        for kind in ("network", "port"):
            users = db.referring("qos_policy", policy_id, kind)
            if users:
                raise conflict("QosPolicyInUse", f"QoS Policy {policy_id} is used by {kind} {users[0].id}.")
        ops = [("delete", "qos_rule", r.id) for r in db.referring("qos_policy", policy_id, "qos_rule")]
        ops.append(("delete", "qos_policy", policy_id))
        await db.commit(ops)
    return no_content()


# --- rules: one set of five routes per rule type ----------------------------------------------------


def _rule_routes(type: str, path: str, key: str, create: type, update: type, create_body: type,
                 update_body: type, unique: tuple[str, ...]) -> None:
    """GET/POST {path}, GET/PUT/DELETE {path}/{rule_id} under /v2.0/qos/policies/{policy_id}/."""
    base = f"/v2.0/qos/policies/{{policy_id}}/{path}"
    tag = f"QoS {type.replace('_', ' ')} rules"

    one_model = type_model(key, False)
    many_model = type_model(path, True)
    # filters (and sort keys) of the list: the rule's attributes
    rule_attrs = {name: INT if field.annotation is int else STR
                  for name, field in one_model.model_fields[key].annotation.model_fields.items()}

    def rules_of(db: NeutronDB, policy_id: str) -> list[Record]:
        return [r for r in db.referring("qos_policy", policy_id, "qos_rule") if r.body["type"] == type]

    def find_rule(db: NeutronDB, policy_id: str, rule_id: str) -> Record:
        rule = db.get("qos_rule", rule_id)
        if rule is None or rule.body["qos_policy_id"] != policy_id or rule.body["type"] == "" or \
                rule.body["type"] != type:
            raise ApiError(404, "QosRuleNotFound", f"QoS rule {rule_id} for policy {policy_id} could not be found.")
        return rule

    def check(db: NeutronDB, policy_id: str, values: dict, rule_id: str | None = None) -> None:
        if type == "dscp_marking" and values.get("dscp_mark") not in DSCP_MARKS:
            raise bad(f"dscp_mark {values.get('dscp_mark')} is not one of {list(DSCP_MARKS)}")
        for other in rules_of(db, policy_id):
            if other.id != rule_id and all(other.body.get(k) == values.get(k) for k in unique):
                raise conflict("QoSRulesConflict", f"Rule {type} conflicts with rule {other.id} which already "
                                                   f"exists in QoS Policy {policy_id}.")

    def out(r: Record) -> dict:
        return {k: v for k, v in rule_view(r).items() if k not in ("type", "qos_policy_id")}

    async def create_rule(policy_id: str, body: create_body, db: DB, caller: Who):   # type: ignore[valid-type]
        async with db.lock:
            find_own(db, caller, "qos_policy", policy_id, "create_policy_rule")
            values = {"type": type, "qos_policy_id": policy_id, **getattr(body, key).model_dump()}
            check(db, policy_id, values)
            [change] = await db.commit([("create", "qos_rule", values, db.get("qos_policy", policy_id).project_id,
                                         new_id())])
        return answer({key: out(change.record)}, 201)

    async def list_rules(policy_id: str, request: Request, db: DB, caller: Who):
        find(db, caller, "qos_policy", policy_id)
        return answer({path: select(request, [out(r) for r in rules_of(db, policy_id)], rule_attrs)})

    async def show_rule(policy_id: str, rule_id: str, db: DB, caller: Who):
        find(db, caller, "qos_policy", policy_id)
        return answer({key: out(find_rule(db, policy_id, rule_id))})

    async def update_rule(policy_id: str, rule_id: str, body: update_body, db: DB, caller: Who):  # type: ignore
        async with db.lock:
            find_own(db, caller, "qos_policy", policy_id, "update_policy_rule")
            rule = find_rule(db, policy_id, rule_id)
            values = given(getattr(body, key))
            for name, value in values.items():
                if value is None:
                    raise bad(f"{name} must not be null")
            new = {**rule.body, **values}
            check(db, policy_id, new, rule_id)
            [change] = await db.commit([("update", "qos_rule", rule_id, new)])
        return answer({key: out(change.record)})

    async def delete_rule(policy_id: str, rule_id: str, db: DB, caller: Who):
        async with db.lock:
            find_own(db, caller, "qos_policy", policy_id, "delete_policy_rule")
            find_rule(db, policy_id, rule_id)
            await db.commit([("delete", "qos_rule", rule_id)])
        return no_content()

    router.add_api_route(base, create_rule, methods=["POST"], status_code=201, tags=[tag],
                         summary=f"Create a {type} rule", response_model=one_model, responses=errors(403, 409))
    router.add_api_route(base, list_rules, methods=["GET"], tags=[tag], summary=f"List a policy's {type} rules",
                         response_model=many_model, responses=errors(404),
                         openapi_extra=list_parameters(rule_attrs, tags=False))
    router.add_api_route(base + "/{rule_id}", show_rule, methods=["GET"], tags=[tag], summary=f"Show a {type} rule",
                         response_model=one_model)
    router.add_api_route(base + "/{rule_id}", update_rule, methods=["PUT"], tags=[tag],
                         summary=f"Update a {type} rule", response_model=one_model, responses=errors(403, 409))
    router.add_api_route(base + "/{rule_id}", delete_rule, methods=["DELETE"], status_code=204,
                         response_class=Response, tags=[tag], summary=f"Delete a {type} rule",
                         responses=errors(403))


class BandwidthLimitOut(BaseModel):
    id: str
    max_kbps: int
    max_burst_kbps: int
    direction: Direction


class DscpOut(BaseModel):
    id: str
    dscp_mark: int


class MinimumOut(BaseModel):
    id: str
    min_kbps: int
    direction: Direction


class BandwidthLimitRuleResponse(BaseModel):
    bandwidth_limit_rule: BandwidthLimitOut


class BandwidthLimitRuleList(BaseModel):
    bandwidth_limit_rules: list[BandwidthLimitOut]


class DscpMarkingRuleResponse(BaseModel):
    dscp_marking_rule: DscpOut


class DscpMarkingRuleList(BaseModel):
    dscp_marking_rules: list[DscpOut]


class MinimumBandwidthRuleResponse(BaseModel):
    minimum_bandwidth_rule: MinimumOut


class MinimumBandwidthRuleList(BaseModel):
    minimum_bandwidth_rules: list[MinimumOut]


_MODELS: dict[tuple[str, bool], Any] = {
    ("bandwidth_limit_rule", False): BandwidthLimitRuleResponse,
    ("bandwidth_limit_rules", True): BandwidthLimitRuleList,
    ("dscp_marking_rule", False): DscpMarkingRuleResponse,
    ("dscp_marking_rules", True): DscpMarkingRuleList,
    ("minimum_bandwidth_rule", False): MinimumBandwidthRuleResponse,
    ("minimum_bandwidth_rules", True): MinimumBandwidthRuleList,
}


def type_model(key: str, many: bool) -> Any:
    return _MODELS[(key, many)]


_rule_routes("bandwidth_limit", "bandwidth_limit_rules", "bandwidth_limit_rule", BandwidthLimitCreate,
             BandwidthLimitUpdate, BandwidthLimitCreateRequest, BandwidthLimitUpdateRequest, ("direction",))
_rule_routes("dscp_marking", "dscp_marking_rules", "dscp_marking_rule", DscpCreate, DscpUpdate, DscpCreateRequest,
             DscpUpdateRequest, ())
_rule_routes("minimum_bandwidth", "minimum_bandwidth_rules", "minimum_bandwidth_rule", MinimumCreate,
             MinimumUpdate, MinimumCreateRequest, MinimumUpdateRequest, ("direction",))


# --- enforcement: what the qos app does with a policy (kumoflow extension) ---------------------------


class QosRuleUsage(BaseModel):
    rule_id: str
    direction: Direction
    aggregate: bool = Field(description="the project's cap (a policy tagged aggregate:PROJECT), not a port's limit")
    packets: int = Field(description="what the rule's meters saw")
    bytes: int
    dropped_packets: int = Field(description="what they dropped: over the limit")
    dropped_bytes: int


class QosPolicyUsage(BaseModel):
    policy_id: str
    project_id: str
    packets: int = Field(description="the rules' sums")
    bytes: int
    dropped_packets: int
    dropped_bytes: int
    rules: list[QosRuleUsage] = Field(description="per bandwidth_limit rule, its meters on every port and switch summed")
    since: str | None = Field(description="when counting started (null: nothing counted yet)")
    updated_at: str | None = Field(description="the last poll of the switches' meter counters that counted")


class QosPolicyUsageResponse(BaseModel):
    usage: QosPolicyUsage


class EnforcedLimit(BaseModel):
    rule_id: str
    max_kbps: int
    burst_kbits: int = Field(description="the meter band's burst: max_burst_kbps, or 80 % of max_kbps when 0")


class EnforcedCap(EnforcedLimit):
    qos_policy_id: str


class EnforcedMinimum(BaseModel):
    rule_id: str
    min_kbps: int
    queue_id: int | None = Field(description="the egress queue the port's frames are sent to")
    guaranteed: bool
    status: str


class PortQos(BaseModel):
    port_id: str
    project_id: str
    qos_policy_id: str | None = Field(description="the policy enforced at the port (null: none, or not bound)")
    inherited: bool = Field(description="the policy is the network's")
    egress: EnforcedLimit | None
    ingress: EnforcedLimit | None
    dscp_mark: int | None
    minimum_bandwidth: EnforcedMinimum | None
    aggregate: EnforcedCap | None = Field(description="the cap of the port's project, shared by its ports per switch")


class PortQosResponse(BaseModel):
    qos: PortQos


def _enforcer(ctx: Any) -> Any:
    try:
        return ctx.core.app("qos")
    except KeyError:
        raise ApiError(404, "QosNotEnforced", "QoS policies are not enforced on this controller: run it with "
                                              "--app qos (kumoflow controller --app qos).") from None


def _when(ctx: Any, core_time: float | None) -> str | None:
    if core_time is None:
        return None
    return datetime.fromtimestamp(ctx.wall_time(core_time), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@router.get("/v2.0/qos/policies/{policy_id}/usage", response_model=QosPolicyUsageResponse, responses=errors(404),
            summary="What a policy's bandwidth limits let through and dropped (kumoflow extension)")
async def policy_usage(policy_id: str, ctx: Ctx, db: DB, caller: Who) -> dict:
    record = find(db, caller, "qos_policy", policy_id, lambda r: owns(caller, r))
    rows = _enforcer(ctx).policy_usage(policy_id)
    counters = ("packets", "bytes", "dropped_packets", "dropped_bytes")
    return {"usage": {
        "policy_id": policy_id, "project_id": record.project_id,
        **{name: sum(getattr(u, name) for u in rows) for name in counters},
        "rules": [{"rule_id": u.owner.rule, "direction": u.owner.direction, "aggregate": u.owner.aggregate,
                   **{name: getattr(u, name) for name in counters}} for u in rows],
        "since": _when(ctx, min((u.since for u in rows), default=None)),
        "updated_at": _when(ctx, max((u.updated for u in rows), default=None))}}


@router.get("/v2.0/ports/{port_id}/qos", response_model=PortQosResponse, responses=errors(404),
            summary="The QoS enforced at a port: its policy, meters, DSCP mark, queue (kumoflow extension)")
async def port_qos(port_id: str, ctx: Ctx, db: DB, caller: Who) -> dict:
    record = find(db, caller, "port", port_id, lambda r: owns(caller, r))
    app = _enforcer(ctx)
    port = app.model.ports.get(port_id)

    def limit(limit) -> dict | None:
        return None if limit is None else {"rule_id": limit.rule, "max_kbps": limit.kbps, "burst_kbits": limit.burst}

    out: dict[str, Any] = {"port_id": port_id, "project_id": record.project_id, "qos_policy_id": None,
                           "inherited": False, "egress": None, "ingress": None, "dscp_mark": None,
                           "minimum_bandwidth": None, "aggregate": None}
    if port is not None:
        out.update(qos_policy_id=port.policy, inherited=port.inherited, egress=limit(port.egress),
                   ingress=limit(port.ingress), dscp_mark=port.dscp)
        if port.minimum is not None:
            rule, kbps = port.minimum
            status = port.unguaranteed or (f"queue {port.queue} guarantees it" if port.queue is not None
                                           else "the switch's queues are not read yet")
            out["minimum_bandwidth"] = {"rule_id": rule, "min_kbps": kbps, "queue_id": port.queue,
                                        "guaranteed": port.queue is not None, "status": status}
        cap = app.model.caps.get(port.project) if port.cap else None
        if cap is not None:
            out["aggregate"] = {"qos_policy_id": cap.id, **limit(cap.egress)}
    return {"qos": out}
