"""Usage metering on the Neutron API, a kumoflow extension: what a tenant
port, or a whole tenant network, sent and was delivered, as counted by the
`usage` app (kumoflow.apps.usage says what is counted and what is not).

    GET /v2.0/ports/{id}/usage       {"usage": {"port_id", "network_id", "project_id", rx/tx/dropped
    GET /v2.0/networks/{id}/usage               packets and bytes, "since", "updated_at"}}

Project-scoped like the resources themselves: a project sees the usage of
its own ports and networks only (another project's, a shared network's
included, is 404 as if it did not exist); the admin sees all. A port or
network that has counted nothing yet answers zeros with ``since`` null.
A controller running without the `usage` app answers 404 (UsageNotMetered): nothing is metered there.
"""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter
from pydantic import BaseModel, Field

from kumoflow.apps.usage import FIELDS, Usage

from .neutron.common import DB, Who, errors, find, owns
from .server import ApiContext, ApiError, Ctx

router = APIRouter(tags=["usage"])


class UsageBody(BaseModel):
    port_id: str | None = Field(None, description="the port (null on a network's usage)")
    network_id: str
    project_id: str
    rx_packets: int = Field(description="unicast frames delivered to the port (to the network's ports)")
    rx_bytes: int
    tx_packets: int = Field(description="frames the port (the network's ports) sent that port security admitted")
    tx_bytes: int
    dropped_packets: int = Field(description="frames the port sent that port security dropped")
    dropped_bytes: int
    since: str | None = Field(description="when counting started (null: nothing counted yet)")
    updated_at: str | None = Field(description="the last poll of the switches' flow counters that counted it")


class UsageResponse(BaseModel):
    usage: UsageBody


RESPONSES = errors(404)


def _meter(ctx: ApiContext):
    try:
        return ctx.core.app("usage")
    except KeyError:
        raise ApiError(404, "UsageNotMetered", "Usage is not metered on this controller: run it with "
                                                "--app usage (kumoflow controller --app tenants --app usage).")


def _time(ctx: ApiContext, core_time: float) -> str:
    return datetime.fromtimestamp(ctx.wall_time(core_time), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _body(ctx: ApiContext, totals: Usage | None, **ids: str | None) -> dict:
    counters = {f: getattr(totals, f) if totals is not None else 0 for f in FIELDS}
    return {"usage": {**ids, **counters,
                      "since": _time(ctx, totals.since) if totals is not None else None,
                      "updated_at": _time(ctx, totals.updated) if totals is not None else None}}


@router.get("/v2.0/ports/{port_id}/usage", response_model=UsageResponse, responses=RESPONSES,
            summary="What a port sent and was delivered (kumoflow extension)")
async def port_usage(port_id: str, ctx: Ctx, db: DB, caller: Who) -> dict:
    record = find(db, caller, "port", port_id, lambda r: owns(caller, r))
    meter = _meter(ctx)
    return _body(ctx, meter.ports.get(port_id), port_id=port_id, network_id=record.body.get("network_id"),
                 project_id=record.project_id)


@router.get("/v2.0/networks/{network_id}/usage", response_model=UsageResponse, responses=RESPONSES,
            summary="What a network's ports sent and were delivered (kumoflow extension)")
async def network_usage(network_id: str, ctx: Ctx, db: DB, caller: Who) -> dict:
    record = find(db, caller, "network", network_id, lambda r: owns(caller, r))
    meter = _meter(ctx)
    return _body(ctx, meter.networks.get(network_id), network_id=network_id, project_id=record.project_id)
