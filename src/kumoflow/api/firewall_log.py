"""The firewall's log of what it denied, a kumoflow extension of the FWaaS API:

    GET /v2.0/fwaas/denied[?port_id=...&firewall_rule_id=...&limit=N]
        {"denied": [{"time", "firewall_rule_id", "action", "port_id", "direction", "protocol",
                     "source_ip_address", "source_port", "destination_ip_address", "destination_port"}]}

Newest first. What is logged: the first packet of each connection that a
firewall rule with ``log: true`` denies or rejects (kumoflow.apps.firewall;
the connection's retries then meet its drop flow for a while, and are not
logged again). Project-scoped: a project sees what was denied at its own
ports; the admin sees all. A controller without the `firewall` app answers
404 (FirewallNotRunning).
"""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from .neutron.common import DB, Who, errors
from .server import ApiContext, ApiError, Ctx

router = APIRouter(tags=["firewall"])


class Denied(BaseModel):
    time: str
    firewall_rule_id: str | None = Field(description="the rule that denied it (null: no rule allowed it)")
    action: str = Field(description="deny or reject")
    port_id: str
    direction: str = Field(description="ingress: to the port; egress: from it")
    protocol: int
    source_ip_address: str
    source_port: int = Field(description="ICMP: the type")
    destination_ip_address: str
    destination_port: int = Field(description="ICMP: the code")


class DeniedList(BaseModel):
    denied: list[Denied]


@router.get("/v2.0/fwaas/denied", response_model=DeniedList, responses=errors(404),
            summary="What the firewall denied or rejected with a log, newest first (kumoflow extension)")
async def denied(ctx: Ctx, db: DB, caller: Who, port_id: str | None = None, firewall_rule_id: str | None = None,
                 limit: int = Query(100, ge=1, le=10_000)) -> dict:
    firewall = _firewall(ctx)
    out = []
    for record in reversed(firewall.denied):
        if port_id is not None and record["port"] != port_id or \
                firewall_rule_id is not None and record["rule"] != firewall_rule_id:
            continue
        if not caller.admin:
            port = db.get("port", record["port"])
            if port is None or port.project_id != caller.project_id:
                continue
        out.append(_shown(ctx, record))
        if len(out) == limit:
            break
    return {"denied": out}


def _firewall(ctx: ApiContext):
    try:
        return ctx.core.app("firewall")
    except KeyError:
        raise ApiError(404, "FirewallNotRunning", "No firewall runs on this controller: run it with --app firewall "
                                                  "(kumoflow controller --app tenants --app firewall).")


def _shown(ctx: ApiContext, record: dict) -> dict:
    when = datetime.fromtimestamp(ctx.wall_time(record["time"]), timezone.utc)
    return {"time": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "firewall_rule_id": record["rule"],
            "action": record["action"], "port_id": record["port"], "direction": record["direction"],
            "protocol": record["protocol"], "source_ip_address": record["src"], "source_port": record["sport"],
            "destination_ip_address": record["dst"], "destination_port": record["dport"]}
