"""Prometheus metrics of a controller: ``GET /metrics`` (prometheus-client's
text format).

No token is needed while the API listens on a loopback address (whoever can
reach it runs on this machine; of tenants, the metrics name only ids of ports,
networks and projects, beside their usage). With
``--api-public`` the admin token is needed, as ``X-Auth-Token`` or as
``Authorization: Bearer TOKEN`` (what Prometheus's ``authorization``
scrape setting sends).

Each controller has its own registry (``ctx.extra["metrics"].registry``),
not prometheus-client's global one, so several controllers (tests) never
mix. Values are read from the controller when scraped; each scrape first
asks every switch for its port counters (PORT_STATS, a switch that does not
answer in time keeps its last counters).

    kumoflow_switches_connected                 switches up
    kumoflow_switch_info{dpid,name,peer}        1 per switch up
    kumoflow_links, kumoflow_hosts              links discovered, hosts known
    kumoflow_packet_ins_total{dpid}             PACKET_INs received from the switch
    kumoflow_flow_mods_total{dpid}              FLOW_MODs sent to it (also group_mods, meter_mods)
    kumoflow_reconcile_runs_total{dpid}         reconciliations of the switch
    kumoflow_reconcile_differences_total{dpid,kind}   entries they added, changed, deleted
    kumoflow_reconcile_pending{dpid}            entries that differ now (desired vs installed)
    kumoflow_port_{rx,tx}_{packets,bytes,dropped,errors}_total{dpid,port,name}
    kumoflow_port_up{dpid,port,name}            carrier up and not administratively down
    kumoflow_api_requests_total{method,route,status}
    kumoflow_tenant_port_{rx,tx,dropped}_{packets,bytes}_total{port,network,project}
    kumoflow_tenant_network_{rx,tx,dropped}_{packets,bytes}_total{network,project}
                                                usage metering (the `usage` app, apps/usage.py:
                                                tx what a VM sent, rx unicast delivered to it)
    kumoflow_APP_NAME                           what an app counts (App.metrics), e.g.
                                                kumoflow_router_snat_exhausted_total

Per-switch counters start again from 0 when a switch reconnects (a new
session), which Prometheus treats as a counter reset.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any, Iterable

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from kumoflow import ofp

from .server import ApiContext, ApiError, context_of
from .sdn import dpid_text, learn_names, port_stats, switch_name

router = APIRouter(tags=["metrics"])

#: seconds a scrape waits for port counters before answering with the last ones
SCRAPE_TIMEOUT = 2.0


class Metrics:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("kumoflow_api_requests", "API requests answered, by method, route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.registry.register(_ControllerCollector(ctx))


def setup(app: Any, ctx: ApiContext) -> None:
    metrics = ctx.extra["metrics"] = Metrics(ctx)
    app.add_middleware(_CountRequests, metrics=metrics)


class _CountRequests:
    """Pure ASGI middleware: counts every HTTP request by method, route template and status."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = [500]

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], template, str(status[0])).inc()


class _ControllerCollector:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterable[Metric]:
        core = self.ctx.core
        dps = sorted((dp for dp in core.datapaths.values() if dp.is_up and dp.id is not None), key=lambda d: d.id)
        yield GaugeMetricFamily("kumoflow_switches_connected", "Switches connected and up", value=len(dps))
        info = GaugeMetricFamily("kumoflow_switch_info", "A switch up (always 1), with its name and peer",
                                 labels=["dpid", "name", "peer"])
        packet_ins = CounterMetricFamily("kumoflow_packet_ins", "PACKET_INs received", labels=["dpid"])
        mods = {kind: CounterMetricFamily(f"kumoflow_{name}_mods", f"{name.upper()}_MODs sent", labels=["dpid"])
                for kind, name in ((ofp.FlowMod, "flow"), (ofp.GroupMod, "group"), (ofp.MeterMod, "meter"))}
        runs = CounterMetricFamily("kumoflow_reconcile_runs", "Reconciliations of a switch", labels=["dpid"])
        found = CounterMetricFamily("kumoflow_reconcile_differences",
                                    "Entries reconciliation found different (and sent): added, changed, deleted",
                                    labels=["dpid", "kind"])
        pending = GaugeMetricFamily("kumoflow_reconcile_pending", "Entries that differ now, desired vs installed",
                                    labels=["dpid"])
        for dp in dps:
            dpid = dpid_text(dp.id)
            info.add_metric([dpid, switch_name(dp, self.ctx) or "", dp.peer], 1)
            packet_ins.add_metric([dpid], dp.packet_ins)
            for kind, family in mods.items():
                family.add_metric([dpid], dp.sent_by_type.get(kind, 0))
            reconciler = core.reconcilers.get(dp.id)
            if reconciler is not None:
                runs.add_metric([dpid], reconciler.runs)
                for kind, n in zip(("added", "changed", "deleted"), reconciler.totals):
                    found.add_metric([dpid, kind], n)
                if reconciler.ready:
                    adds, changes, deletes = reconciler.diff()
                    pending.add_metric([dpid], len(adds) + len(changes) + len(deletes))
        yield from (info, packet_ins, *mods.values(), runs, found, pending)
        yield GaugeMetricFamily("kumoflow_links", "Links discovered between switches",
                                value=len(core.topology.graph.links))
        yield GaugeMetricFamily("kumoflow_hosts", "Hosts known", value=len(core.hosts))
        for app in core.apps:      # what an app counts of its own (App.metrics)
            yield from _app_metrics(app)
        yield from self._ports(dps)
        yield from _usage(core)

    def _ports(self, dps: list) -> Iterable[Metric]:
        labels = ["dpid", "port", "name"]
        fields = [f"{d}_{what}" for what in ("packets", "bytes", "dropped", "errors") for d in ("rx", "tx")]
        families = {f: CounterMetricFamily(f"kumoflow_port_{f}", f"Port {f.replace('_', ' ')} (PORT_STATS)",
                                           labels=labels) for f in fields}
        up = GaugeMetricFamily("kumoflow_port_up", "Port carrier up and not administratively down", labels=labels)
        cached = self.ctx.extra.get("port_stats", {})
        for dp in dps:
            dpid = dpid_text(dp.id)
            for port_no, p in sorted(dp.ports.items()):
                up.add_metric([dpid, str(port_no), p.name],
                              0 if p.config & ofp.OFPPC.PORT_DOWN or p.state & ofp.OFPPS.LINK_DOWN else 1)
            session, stats = cached.get(dp.id, (None, {}))
            if session is not dp:
                continue          # counters of an older session of this switch
            for port_no, s in sorted(stats.items()):
                port = dp.ports.get(port_no)
                values = [dpid, str(port_no), port.name if port is not None else ""]
                for f in fields:
                    families[f].add_metric(values, getattr(s, f))
        yield up
        yield from families.values()


def _usage(core: Any) -> Iterable[Metric]:
    """The usage app's totals per tenant port and per network (none when it does not run)."""
    meter = next((app for app in core.apps if app.name == "usage"), None)
    if meter is None:
        return
    from kumoflow.apps.usage import FIELDS

    for what, totals, labels in (("port", meter.ports, ["port", "network", "project"]),
                                 ("network", meter.networks, ["network", "project"])):
        families = {f: CounterMetricFamily(f"kumoflow_tenant_{what}_{f}",
                                           f"Tenant {what} {f.replace('_', ' ')} (usage metering, flow counters)",
                                           labels=labels) for f in FIELDS}
        for id, usage in sorted(totals.items()):
            record = core.state.get(what, id)
            if record is None:
                continue
            values = [id, record.body.get("network_id", ""), record.project_id] if what == "port" \
                else [id, record.project_id]
            for f, family in families.items():
                family.add_metric(values, getattr(usage, f))
        yield from families.values()


def _authorized(request: Request, ctx: ApiContext) -> bool:
    if not ctx.public:
        return True
    token = request.headers.get("x-auth-token")
    if token is None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else None
    return bool(token) and hmac.compare_digest(token.encode(), ctx.tokens.admin_token.encode())


async def refresh_port_stats(ctx: ApiContext, timeout: float = SCRAPE_TIMEOUT) -> None:
    """Ask every switch for its port counters (and learn the names kumoflow switches report in
    their DESC reply, for kumoflow_switch_info), waiting at most `timeout`."""
    dps = [dp for dp in ctx.core.datapaths.values() if dp.is_up]
    if not dps:
        return
    tasks = [asyncio.ensure_future(port_stats(ctx, dp)) for dp in dps]
    tasks.append(asyncio.ensure_future(learn_names(ctx)))     # the names of kumoflow switches (DESC)
    done, late = await asyncio.wait(tasks, timeout=timeout)
    for task in late:
        task.cancel()
    for task in done:
        task.exception()      # retrieved: a switch that failed keeps its last counters


@router.get("/metrics", response_class=Response, summary="Prometheus metrics",
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}})
async def metrics(request: Request) -> Response:
    ctx = context_of(request)
    if not _authorized(request, ctx):
        raise ApiError(401, "HTTPUnauthorized", "The API is public: /metrics needs the admin token "
                                                "(X-Auth-Token, or Authorization: Bearer).")
    await refresh_port_stats(ctx)
    return Response(generate_latest(ctx.extra["metrics"].registry), media_type=CONTENT_TYPE_LATEST)


def _app_metrics(app) -> Iterable[Metric]:
    """An app's metrics, one family per name: (name, help, kind, value) or, with labels,
    (name, help, kind, value, {label: value}) once per label set."""
    families: dict[str, Metric] = {}
    for name, help, kind, value, *rest in app.metrics():
        labels = rest[0] if rest else {}
        family = families.get(name)
        if family is None:
            make = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            family = families[name] = make(f"kumoflow_{app.name}_{name}", help, labels=sorted(labels))
        family.add_metric([str(labels[k]) for k in sorted(labels)], value)
    return families.values()
