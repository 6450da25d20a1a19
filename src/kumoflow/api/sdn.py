"""The SDN view: what the controller knows of the network and what each
switch holds, read-only, for the admin.

    GET /sdn/switches                   every switch up: ports (state, live counters), uptime...
    GET /sdn/switches/{switch}          one switch
    GET /sdn/switches/{switch}/flows    its flow entries as it reports them (FLOW_STATS), with
                                        counters, each also as an ``ovs-ofctl dump-flows`` line
    GET /sdn/switches/{switch}/groups   its groups (GROUP_DESC), also in ``ovs-ofctl dump-groups`` syntax
    GET /sdn/switches/{switch}/meters   its meters (METER_CONFIG), also in ``ovs-ofctl dump-meters`` syntax
    GET /sdn/switches/{switch}/diff     desired vs installed: what the reconciler would add, change
                                        and delete on it now
    GET /sdn/links                      links discovered (LLDP, seen both ways)
    GET /sdn/hosts                      hosts found, where they are, their addresses
    GET /sdn/topology                   all of the above but counters in one answer (the UI's map):
                                        switches with their kind, links, hosts, tunnels
    GET /sdn/path?src=H&dst=H           the switches and ports a packet from host H to host H
                                        crosses (hosts by MAC or IP address)

``{switch}`` is a datapath id (``0x1a``, 16 hex digits as ovs-ofctl shows
them, or decimal) or a switch's name (the name of its LOCAL port: an Open
vSwitch bridge's name; or a kumoflow switch's ``--name``, which it reports
as its DESC reply's ``dp_desc``), or the end of a name after a ``-`` when
one switch only has it (the emulator's ``s1`` for ``<topology>-s1``):
`resolve_switch`. Datapath ids and cookies are hexadecimal strings,
since JSON numbers lose 64-bit precision in many clients.

Flows, groups, meters and port counters are asked of the switch for each
request (``await dp.request``): a switch that does not answer within the
API's switch timeout gives 504, one that went away 404. The diff and the
installed counts are the controller's own view (what it read and sent).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from kumoflow import ofp
from kumoflow.controller import pipeline
from kumoflow.controller.datapath import Datapath, OpenFlowError, local_name, named_switch, parse_dpid
from kumoflow.controller.flows import Flow, Group, Meter
from kumoflow.ofp import text

from .server import AdminCaller, ApiContext, ApiError, Ctx, NeutronError

router = APIRouter(prefix="/sdn", tags=["sdn"])

#: what a route that asks a switch may also answer (besides 400, 401, 403, 404)
SWITCH_ERRORS: dict = {502: {"model": NeutronError, "description": "The switch refused the request or answered "
                                                                   "with bytes that do not decode"},
                       504: {"model": NeutronError, "description": "The switch did not answer in time"}}

SwitchParam = Path(description="a datapath id (0x1a, 000000000000001a or 26) or the switch's name")


# --- models ------------------------------------------------------------------------------------


class PortCounters(BaseModel):
    rx_packets: int
    tx_packets: int
    rx_bytes: int
    tx_bytes: int
    rx_dropped: int
    tx_dropped: int
    rx_errors: int
    tx_errors: int
    duration: float | None = Field(None, description="seconds the port has existed, if the switch says")


class SwitchPort(BaseModel):
    port_no: int
    port: str = Field(description="the number as ovs-ofctl prints it (LOCAL for the local port)")
    name: str
    hw_addr: str
    up: bool = Field(description="carrier up and not administratively down")
    link_down: bool
    admin_down: bool = Field(description="config PORT_DOWN")
    live: bool
    blocked: bool
    speed_kbps: int
    link: "PortRef | None" = Field(None, description="the other end, when the port is the end of a link")
    counters: PortCounters | None = Field(None, description="from PORT_STATS; null when not asked or not answered")


class PortRef(BaseModel):
    dpid: str
    switch: str | None = Field(None, description="the switch's name, if known")
    port_no: int
    port_name: str | None = None


class Installed(BaseModel):
    """What the controller's reconciler believes the switch holds."""
    flows: int
    groups: int
    meters: int


class Description(BaseModel):
    manufacturer: str
    hardware: str
    software: str
    serial: str
    datapath: str


class Switch(BaseModel):
    dpid: str = Field(description="16 hex digits, as ovs-ofctl shows it")
    name: str | None = Field(None, description="its LOCAL port's name (an Open vSwitch bridge's name), or the "
                                               "name a kumoflow switch reports in its DESC reply; null if none")
    peer: str = Field(description="the address its OpenFlow channel comes from")
    up_since: datetime
    uptime: float = Field(description="seconds")
    settled: bool = Field(description="past the settle time: reconciled in full")
    n_tables: int | None = None
    n_buffers: int | None = None
    description: Description | None = Field(None, description="its DESC reply")
    installed: Installed | None = Field(None, description="null until the switch was first read")
    differences: int | None = Field(None, description="entries the reconciler would add, change or delete now")
    ports: list[SwitchPort]


class SwitchList(BaseModel):
    switches: list[Switch]


class SwitchResponse(BaseModel):
    switch: Switch


class LinkEnd(PortRef):
    pass


class LinkModel(BaseModel):
    a: LinkEnd
    b: LinkEnd


class LinkList(BaseModel):
    links: list[LinkModel]


class HostModel(BaseModel):
    mac: str
    ips: list[str]
    dpid: str
    switch: str | None = None
    port_no: int
    port_name: str | None = None
    last_seen: datetime
    age: float = Field(description="seconds since last seen")


class HostList(BaseModel):
    hosts: list[HostModel]


class FlowEntry(BaseModel):
    table: int
    priority: int
    cookie: str = Field(description="hexadecimal")
    owner: str | None = Field(None, description="the function the cookie names (fabric, l2, pipeline...)")
    match: str = Field(description="ovs-ofctl syntax, without the priority")
    actions: str = Field(description="ovs-ofctl syntax (the instructions)")
    n_packets: int
    n_bytes: int
    duration: float = Field(description="seconds")
    idle_timeout: int
    hard_timeout: int
    flags: int
    text: str = Field(description="the whole entry as an ovs-ofctl dump-flows line")


class FlowList(BaseModel):
    dpid: str
    flows: list[FlowEntry]


class BucketModel(BaseModel):
    weight: int
    watch_port: int | None = None
    watch_group: int | None = None
    actions: str


class GroupEntry(BaseModel):
    group_id: int
    type: str
    owner: str | None = None
    buckets: list[BucketModel]
    text: str = Field(description="as ovs-ofctl dump-groups prints it")


class GroupList(BaseModel):
    dpid: str
    groups: list[GroupEntry]


class MeterEntry(BaseModel):
    meter_id: int
    flags: list[str]
    owner: str | None = None
    bands: list[str]
    text: str = Field(description="as ovs-ofctl dump-meters prints it")


class MeterList(BaseModel):
    dpid: str
    meters: list[MeterEntry]


class DiffEntry(BaseModel):
    kind: str = Field(description="flow, group or meter")
    owner: str | None = None
    text: str = Field(description="ovs-ofctl syntax")


class DiffChange(BaseModel):
    want: DiffEntry
    have: DiffEntry


class Diff(BaseModel):
    dpid: str
    ready: bool = Field(description="the switch was read; before that nothing is known to differ")
    settled: bool = Field(description="false: while settling, only adds are sent")
    in_sync: bool
    add: list[DiffEntry]
    change: list[DiffChange]
    delete: list[DiffEntry]


SwitchPort.model_rebuild()


# --- helpers (metrics.py uses some) --------------------------------------------------------------


def dpid_text(dpid: int) -> str:
    return f"{dpid:016x}"


def desc_name(desc: ofp.DescReply | None) -> str | None:
    """The name a kumoflow switch reports in its DESC reply (``kumoflow switch --name NAME``: its
    ``dp_desc`` is NAME); None for another switch's reply, or a kumoflow switch without a name
    (whose ``dp_desc`` is ``kumoflow datapath ID``, which is no name)."""
    from kumoflow.switch import MANUFACTURER, name_problem

    if desc is None or desc.mfr_desc != MANUFACTURER or name_problem(desc.dp_desc):
        return None
    return desc.dp_desc


def switch_name(dp: Datapath, ctx: ApiContext | None = None) -> str | None:
    """Its LOCAL port's name (an Open vSwitch bridge's name); else, with `ctx`, the name its DESC
    reply gave (a kumoflow switch's ``--name``), once the API has read that reply."""
    local = local_name(dp)
    if local is not None:
        return local
    if ctx is not None:
        info = ctx.switch_info.get(dp)
        if info is not None:
            return desc_name(info.get("desc"))
    return None


#: seconds before the API asks again a switch that did not answer its DESC request
DESC_RETRY = 30.0
#: seconds a switch has to answer the DESC request that learns its name, at most
DESC_TIMEOUT = 2.0


def resolve_switch(ctx: ApiContext, ident: str, suffix: bool = True) -> Datapath | None:
    """The switch up that `ident` names, or None (none, or more than one): `named_switch` over
    the names the API knows (`switch_name`: LOCAL port names and DESC replies read)."""
    return named_switch(ctx.core.datapaths.values(), ident, lambda dp: switch_name(dp, ctx), suffix)


async def learn_names(ctx: ApiContext) -> bool:
    """Read the DESC reply of every switch up that has no LOCAL port name and whose reply the
    API has not read yet (concurrently; each at most `DESC_TIMEOUT` s, a switch that did not
    answer asked again after `DESC_RETRY` s). The controller does not ask for DESC itself: the
    API asks, once per switch session (ctx.switch_info). True when a reply was read."""
    loop = asyncio.get_running_loop()
    now = loop.time()
    wanted = []
    for dp in ctx.core.datapaths.values():
        if not dp.is_up or switch_name(dp) is not None:
            continue
        info = ctx.switch_info.setdefault(dp, {})
        if "desc" not in info and now >= info.get("desc_retry", 0.0):
            wanted.append((dp, info))
    if not wanted:
        return False
    timeout = min(ctx.switch_timeout, DESC_TIMEOUT)

    async def one(dp: Datapath, info: dict) -> bool:
        try:
            # wait_for too: the core's own timeout runs on the core's clock
            info["desc"] = await asyncio.wait_for(ask(ctx, dp, ofp.DescRequest()), timeout)
            return True
        except (ApiError, asyncio.TimeoutError):
            info["desc_retry"] = loop.time() + DESC_RETRY
            return False

    return any(await asyncio.gather(*(one(dp, info) for dp, info in wanted)))


async def find_switch(ctx: ApiContext, ident: str) -> Datapath:
    """The switch up that `ident` names (`resolve_switch`, after learning the names of switches
    that have one only in their DESC reply unless `ident` is an exact name or a datapath id), or
    404."""
    if resolve_switch(ctx, ident, suffix=False) is None:
        await learn_names(ctx)          # a name ending in -ident may be among those not learned yet
    dp = resolve_switch(ctx, ident)
    if dp is None:
        raise ApiError(404, "SwitchNotFound", f"Switch {ident} could not be found (not connected, no such "
                                              f"datapath id or name, or a name more than one switch has).")
    return dp


async def ask(ctx: ApiContext, dp: Datapath, msg: ofp.Message) -> Any:
    """A request to a switch; its failures as API errors (504, 404, 502)."""
    try:
        return await dp.request(msg, timeout=ctx.switch_timeout)
    except asyncio.TimeoutError:
        raise ApiError(504, "SwitchTimeout", f"Switch {dp.name} did not answer {type(msg).__name__} within "
                                             f"{ctx.switch_timeout:g}s.") from None
    except ConnectionError:
        raise ApiError(404, "SwitchNotFound", f"Switch {dp.name} went away.") from None
    except OpenFlowError as exc:
        raise ApiError(502, "SwitchError", f"Switch {dp.name} refused {type(msg).__name__}.", str(exc)) from None
    except Exception as exc:
        raise ApiError(502, "SwitchError", f"Switch {dp.name} answered {type(msg).__name__} with something "
                                           f"that does not decode.", str(exc)) from None


async def port_stats(ctx: ApiContext, dp: Datapath) -> dict[int, ofp.PortStats]:
    """PORT_STATS of every port, also kept for /metrics (ctx.extra["port_stats"])."""
    reply = await ask(ctx, dp, ofp.PortStatsRequest())
    stats = {p.port_no: p for p in reply.body}
    ctx.extra.setdefault("port_stats", {})[dp.id] = (dp, stats)
    return stats


async def description(ctx: ApiContext, dp: Datapath) -> ofp.DescReply | None:
    """The switch's DESC reply, asked once per session."""
    info = ctx.switch_info.setdefault(dp, {})
    if "desc" not in info:
        try:
            info["desc"] = await ask(ctx, dp, ofp.DescRequest())
        except ApiError:
            return None
    return info["desc"]


def owner_of_cookie(ctx: ApiContext, cookie: int) -> str | None:
    return _function_name(ctx, pipeline.cookie_function(cookie))


def owner_of_id(ctx: ApiContext, kind: str, ident: int) -> str | None:
    """The function owning a group id (`kind` "group") or a meter id ("meter")."""
    return _function_name(ctx, pipeline.function_of(kind, ident))


def _function_name(ctx: ApiContext, number: int) -> str | None:
    if number == pipeline.FUNCTIONS["pipeline"]:
        return "pipeline"
    for app in ctx.core.apps:
        if app.function == number:
            return app.name
    return None


def _port_ref(ctx: ApiContext, dpid: int, port_no: int) -> dict:
    dp = ctx.core.datapaths.get(dpid)
    port = dp.ports.get(port_no) if dp is not None else None
    return {"dpid": dpid_text(dpid), "switch": switch_name(dp, ctx) if dp is not None else None,
            "port_no": port_no, "port_name": port.name if port is not None else None}


def _counters(s: ofp.PortStats) -> dict:
    duration = None
    if s.duration_sec != 0xFFFFFFFF:
        duration = s.duration_sec + s.duration_nsec / 1e9
    return {"rx_packets": s.rx_packets, "tx_packets": s.tx_packets, "rx_bytes": s.rx_bytes,
            "tx_bytes": s.tx_bytes, "rx_dropped": s.rx_dropped, "tx_dropped": s.tx_dropped,
            "rx_errors": s.rx_errors, "tx_errors": s.tx_errors, "duration": duration}


def _switch(ctx: ApiContext, dp: Datapath, stats: dict[int, ofp.PortStats] | None,
            desc: ofp.DescReply | None) -> dict:
    core = ctx.core
    ports = []
    for port_no, p in sorted(dp.ports.items()):
        link = core.topology.link_at(dp.id, port_no)
        s = stats.get(port_no) if stats else None
        ports.append({
            "port_no": port_no, "port": text.format_port_no(port_no), "name": p.name, "hw_addr": p.hw_addr,
            "up": not (p.config & ofp.OFPPC.PORT_DOWN or p.state & ofp.OFPPS.LINK_DOWN),
            "link_down": bool(p.state & ofp.OFPPS.LINK_DOWN), "admin_down": bool(p.config & ofp.OFPPC.PORT_DOWN),
            "live": bool(p.state & ofp.OFPPS.LIVE), "blocked": bool(p.state & ofp.OFPPS.BLOCKED),
            "speed_kbps": p.curr_speed,
            "link": _port_ref(ctx, *link.peer_of(dp.id)) if link is not None else None,
            "counters": _counters(s) if s is not None else None,
        })
    reconciler = core.reconcilers.get(dp.id)
    installed = differences = None
    if reconciler is not None and reconciler.ready:
        kinds = [key[0] for key in reconciler.installed]
        installed = {"flows": kinds.count("flow"), "groups": kinds.count("group"), "meters": kinds.count("meter")}
        adds, changes, deletes = reconciler.diff()
        differences = len(adds) + len(changes) + len(deletes)
    features = dp.features
    return {
        "dpid": dpid_text(dp.id), "name": switch_name(dp, ctx), "peer": dp.peer,
        "up_since": datetime.fromtimestamp(ctx.wall_time(dp.up_since), timezone.utc),
        "uptime": max(0.0, core.now() - dp.up_since), "settled": dp.settled,
        "n_tables": features.n_tables if features else None, "n_buffers": features.n_buffers if features else None,
        "description": {"manufacturer": desc.mfr_desc, "hardware": desc.hw_desc, "software": desc.sw_desc,
                        "serial": desc.serial_num, "datapath": desc.dp_desc} if desc is not None else None,
        "installed": installed, "differences": differences, "ports": ports,
    }


async def _switch_view(ctx: ApiContext, dp: Datapath, counters: bool, strict: bool) -> dict:
    stats = None
    if counters:
        try:
            stats = await port_stats(ctx, dp)
        except ApiError:
            if strict:
                raise
    desc = await description(ctx, dp)
    return _switch(ctx, dp, stats, desc)


def _flow_text(entry: Flow) -> str:
    parts = [f"cookie={entry.cookie:#x}", f"table={entry.table}"]
    if entry.idle_timeout:
        parts.append(f"idle_timeout={entry.idle_timeout}")
    if entry.hard_timeout:
        parts.append(f"hard_timeout={entry.hard_timeout}")
    return ", ".join(parts) + ", " + text.format_flow(entry.match, entry.instructions, entry.priority)


def _entry(ctx: ApiContext, entry: Any) -> dict:
    if isinstance(entry, Flow):
        return {"kind": "flow", "owner": owner_of_cookie(ctx, entry.cookie), "text": _flow_text(entry)}
    if isinstance(entry, Group):
        return {"kind": "group", "owner": owner_of_id(ctx, "group", entry.group_id),
                "text": text.format_group(entry.group_id, entry.type, entry.buckets)}
    assert isinstance(entry, Meter)
    return {"kind": "meter", "owner": owner_of_id(ctx, "meter", entry.meter_id),
            "text": text.format_meter(entry.meter_id, entry.flags, entry.bands)}


_METER_FLAGS = [(ofp.OFPMF.KBPS, "kbps"), (ofp.OFPMF.PKTPS, "pktps"), (ofp.OFPMF.BURST, "burst"),
                (ofp.OFPMF.STATS, "stats")]
_GROUP_TYPES = {ofp.OFPGT.ALL: "all", ofp.OFPGT.SELECT: "select", ofp.OFPGT.INDIRECT: "indirect",
                ofp.OFPGT.FF: "ff"}


# --- routes ---------------------------------------------------------------------------------------


@router.get("/switches", response_model=SwitchList, responses=SWITCH_ERRORS, summary="Switches connected, with their ports")
async def list_switches(ctx: Ctx, caller: AdminCaller,
                        counters: bool = Query(True, description="ask each switch for its port counters")) -> dict:
    dps = sorted((dp for dp in ctx.core.datapaths.values() if dp.is_up), key=lambda dp: dp.id)
    views = await asyncio.gather(*(_switch_view(ctx, dp, counters, strict=False) for dp in dps))
    return {"switches": list(views)}


@router.get("/switches/{switch}", response_model=SwitchResponse, responses=SWITCH_ERRORS, summary="One switch, with its ports")
async def show_switch(ctx: Ctx, caller: AdminCaller, switch: str = SwitchParam,
                      counters: bool = Query(True, description="ask the switch for its port counters")) -> dict:
    dp = await find_switch(ctx, switch)
    return {"switch": await _switch_view(ctx, dp, counters, strict=True)}


@router.get("/switches/{switch}/flows", response_model=FlowList, responses=SWITCH_ERRORS, summary="The switch's flow entries")
async def switch_flows(ctx: Ctx, caller: AdminCaller, switch: str = SwitchParam,
                       table: int | None = Query(None, ge=0, le=254, description="one table only")) -> dict:
    dp = await find_switch(ctx, switch)
    if table is not None and dp.features is not None and table >= dp.features.n_tables:
        raise ApiError(404, "TableNotFound", f"Switch {dp.name} has no table {table} "
                                             f"(it has {dp.features.n_tables}: 0-{dp.features.n_tables - 1}).")
    reply = await ask(ctx, dp, ofp.FlowStatsRequest(table_id=ofp.OFPTT.ALL if table is None else table))
    flows = []
    for f in sorted(reply.body, key=lambda f: (f.table_id, -f.priority)):
        flows.append({
            "table": f.table_id, "priority": f.priority, "cookie": f"{f.cookie:#x}",
            "owner": owner_of_cookie(ctx, f.cookie), "match": text.format_match(f.match),
            "actions": text.format_instructions(f.instructions), "n_packets": f.packet_count,
            "n_bytes": f.byte_count, "duration": f.duration_sec + f.duration_nsec / 1e9,
            "idle_timeout": f.idle_timeout, "hard_timeout": f.hard_timeout, "flags": int(f.flags),
            "text": text.format_flow_stats(f).strip(),
        })
    return {"dpid": dpid_text(dp.id), "flows": flows}


@router.get("/switches/{switch}/groups", response_model=GroupList, responses=SWITCH_ERRORS, summary="The switch's groups")
async def switch_groups(ctx: Ctx, caller: AdminCaller, switch: str = SwitchParam) -> dict:
    dp = await find_switch(ctx, switch)
    reply = await ask(ctx, dp, ofp.GroupDescRequest())
    groups = []
    for g in sorted(reply.body, key=lambda g: g.group_id):
        groups.append({
            "group_id": g.group_id, "type": _GROUP_TYPES.get(g.type, str(g.type)),
            "owner": owner_of_id(ctx, "group", g.group_id),
            "buckets": [{"weight": b.weight,
                         "watch_port": None if b.watch_port == ofp.OFPP.ANY else b.watch_port,
                         "watch_group": None if b.watch_group == ofp.OFPG.ANY else b.watch_group,
                         "actions": text.format_actions(b.actions)} for b in g.buckets],
            "text": text.format_group(g.group_id, g.type, g.buckets),
        })
    return {"dpid": dpid_text(dp.id), "groups": groups}


@router.get("/switches/{switch}/meters", response_model=MeterList, responses=SWITCH_ERRORS, summary="The switch's meters")
async def switch_meters(ctx: Ctx, caller: AdminCaller, switch: str = SwitchParam) -> dict:
    dp = await find_switch(ctx, switch)
    try:
        body = (await ask(ctx, dp, ofp.MeterConfigRequest())).body
    except ApiError as exc:
        if exc.type != "SwitchError":
            raise
        body = []          # a switch without meters refuses the request: it holds none
    meters = []
    for m in sorted(body, key=lambda m: m.meter_id):
        meters.append({
            "meter_id": m.meter_id, "flags": [name for bit, name in _METER_FLAGS if m.flags & bit],
            "owner": owner_of_id(ctx, "meter", m.meter_id), "bands": [text.format_band(b) for b in m.bands],
            "text": text.format_meter(m.meter_id, m.flags, m.bands),
        })
    return {"dpid": dpid_text(dp.id), "meters": meters}


@router.get("/switches/{switch}/diff", response_model=Diff, summary="Desired vs installed on the switch")
async def switch_diff(ctx: Ctx, caller: AdminCaller, switch: str = SwitchParam) -> dict:
    dp = await find_switch(ctx, switch)
    reconciler = ctx.core.reconcilers.get(dp.id)
    ready = reconciler is not None and reconciler.ready
    adds, changes, deletes = reconciler.diff() if ready else ([], [], [])
    order = {"group": 0, "meter": 1, "flow": 2}

    def key(entry: Any) -> tuple:
        return (order[entry.key[0]], entry.key[1:2], entry.key)

    return {
        "dpid": dpid_text(dp.id), "ready": ready, "settled": dp.settled,
        "in_sync": ready and not (adds or changes or deletes),
        "add": [_entry(ctx, e) for e in sorted(adds, key=key)],
        "change": [{"want": _entry(ctx, w), "have": _entry(ctx, h)} for w, h in sorted(changes, key=lambda c: key(c[0]))],
        "delete": [_entry(ctx, e) for e in sorted(deletes, key=key)],
    }


@router.get("/links", response_model=LinkList, summary="Links between switches (LLDP, seen both ways)")
async def list_links(ctx: Ctx, caller: AdminCaller) -> dict:
    await learn_names(ctx)
    links = sorted(ctx.core.topology.graph.links)
    return {"links": [{"a": _port_ref(ctx, link.a, link.a_port), "b": _port_ref(ctx, link.b, link.b_port)}
                      for link in links]}


@router.get("/hosts", response_model=HostList, summary="Hosts found, where they are attached")
async def list_hosts(ctx: Ctx, caller: AdminCaller) -> dict:
    await learn_names(ctx)
    now = ctx.core.now()
    hosts = []
    for h in sorted(ctx.core.hosts, key=lambda h: (h.dpid, h.port, h.mac)):
        ref = _port_ref(ctx, h.dpid, h.port)
        hosts.append({"mac": h.mac, "ips": sorted(h.ips), "dpid": ref["dpid"], "switch": ref["switch"],
                      "port_no": h.port, "port_name": ref["port_name"],
                      "last_seen": datetime.fromtimestamp(ctx.wall_time(h.last_seen), timezone.utc),
                      "age": max(0.0, now - h.last_seen)})
    return {"hosts": hosts}


# --- the whole map, and paths ------------------------------------------------------------------


class TopologyPort(BaseModel):
    port_no: int
    name: str
    up: bool
    tunnel: "TunnelEnd | None" = Field(None, description="a tunnel port: its kind and the endpoint it reaches")


class TunnelEnd(BaseModel):
    kind: str = Field(description="vxlan or nvgre")
    remote: str = Field(description="the endpoint address the port's name names")


class TopologySwitch(BaseModel):
    dpid: str
    name: str | None = None
    kind: str | None = Field(None, description="kumoflow, ovs (Open vSwitch), or another maker's name; null "
                                               "until its DESC reply is read")
    endpoint: str | None = Field(None, description="its tunnel endpoint address, when its tunnels tell it (the "
                                                   "address the others' tunnels reach and its own do not)")
    ports: list[TopologyPort]


class Tunnel(BaseModel):
    dpid: str
    port_no: int
    kind: str
    remote: str
    remote_dpid: str | None = Field(None, description="the switch whose endpoint that is, if known")


class Topology(BaseModel):
    switches: list[TopologySwitch]
    links: list[LinkModel]
    hosts: list[HostModel]
    tunnels: list[Tunnel]


class PathHop(BaseModel):
    dpid: str
    switch: str | None = None
    in_port: int
    out_port: int


class PathModel(BaseModel):
    src: HostModel
    dst: HostModel
    hops: list[PathHop] = Field(description="from the source's switch to the destination's, in order")
    equal_cost: bool = Field(description="true when other paths as short exist: the fabric spreads flows over "
                                         "them (select groups), so a given flow may take another; this is "
                                         "the one through the lowest port at each switch")


TopologyPort.model_rebuild()


def _kind(desc: ofp.DescReply | None) -> str | None:
    from kumoflow.switch import MANUFACTURER

    if desc is None:
        return None
    if desc.mfr_desc == MANUFACTURER:
        return "kumoflow"
    if "nicira" in desc.mfr_desc.lower() or "open vswitch" in desc.sw_desc.lower():
        return "ovs"
    return desc.mfr_desc or None


def tunnel_endpoints(tunnels: dict[int, set[str]]) -> dict[int, str]:
    """dpid -> its own endpoint address, from what each switch's tunnel ports reach
    (`tunnels`: dpid -> addresses): the one address every other switch's tunnels may reach and
    its own do not; a switch for which that is not exactly one address is left out."""
    out = {}
    for dpid, mine in tunnels.items():
        others = set().union(*(reach for other, reach in tunnels.items() if other != dpid)) - mine
        if len(others) == 1:
            out[dpid] = next(iter(others))
    return out


def _host(ctx: ApiContext, h: Any) -> dict:
    ref = _port_ref(ctx, h.dpid, h.port)
    return {"mac": h.mac, "ips": sorted(h.ips), "dpid": ref["dpid"], "switch": ref["switch"],
            "port_no": h.port, "port_name": ref["port_name"],
            "last_seen": datetime.fromtimestamp(ctx.wall_time(h.last_seen), timezone.utc),
            "age": max(0.0, ctx.core.now() - h.last_seen)}


@router.get("/topology", response_model=Topology, summary="Switches, links, hosts and tunnels in one answer")
async def topology(ctx: Ctx, caller: AdminCaller) -> dict:
    from kumoflow.tunnels import parse_port_name

    await learn_names(ctx)
    dps = sorted((dp for dp in ctx.core.datapaths.values() if dp.is_up), key=lambda dp: dp.id)
    descs = await asyncio.gather(*(description(ctx, dp) for dp in dps))
    reach: dict[int, set[str]] = {}
    tunnels = []
    switches = []
    for dp, desc in zip(dps, descs):
        ports = []
        for port_no, p in sorted(dp.ports.items()):
            parsed = parse_port_name(p.name)
            tunnel = {"kind": parsed[0], "remote": str(parsed[1])} if parsed else None
            if tunnel is not None:
                reach.setdefault(dp.id, set()).add(tunnel["remote"])
                tunnels.append({"dpid": dp.id, "port_no": port_no, **tunnel})
            ports.append({"port_no": port_no, "name": p.name, "tunnel": tunnel,
                          "up": not (p.config & ofp.OFPPC.PORT_DOWN or p.state & ofp.OFPPS.LINK_DOWN)})
        switches.append({"dpid": dpid_text(dp.id), "name": switch_name(dp, ctx), "kind": _kind(desc),
                         "ports": ports, "endpoint": None})
    endpoints = tunnel_endpoints(reach)
    by_address = {address: dpid for dpid, address in endpoints.items()}
    for view, dp in zip(switches, dps):
        view["endpoint"] = endpoints.get(dp.id)
    for t in tunnels:
        remote = by_address.get(t["remote"])
        t["remote_dpid"] = dpid_text(remote) if remote is not None else None
        t["dpid"] = dpid_text(t["dpid"])
    links = [{"a": _port_ref(ctx, link.a, link.a_port), "b": _port_ref(ctx, link.b, link.b_port)}
             for link in sorted(ctx.core.topology.graph.links)]
    hosts = [_host(ctx, h) for h in sorted(ctx.core.hosts, key=lambda h: (h.dpid, h.port, h.mac))]
    return {"switches": switches, "links": links, "hosts": hosts, "tunnels": tunnels}


def find_host(ctx: ApiContext, ident: str) -> Any:
    """The host whose MAC or one of whose IP addresses `ident` is, or 404."""
    wanted = ident.strip().lower()
    host = ctx.core.hosts.get(wanted)
    if host is None:
        host = next((h for h in ctx.core.hosts if wanted in {ip.lower() for ip in h.ips}), None)
    if host is None:
        raise ApiError(404, "HostNotFound", f"Host {ident} could not be found (no host seen with that MAC or IP "
                                            f"address).")
    return host


@router.get("/path", response_model=PathModel, summary="The way a packet goes from one host to another")
async def host_path(ctx: Ctx, caller: AdminCaller,
                    src: str = Query(description="the source host: its MAC or an IP address"),
                    dst: str = Query(description="the destination host: its MAC or an IP address")) -> dict:
    from kumoflow.controller.graph import NoPath

    await learn_names(ctx)
    a, b = find_host(ctx, src), find_host(ctx, dst)
    graph = ctx.core.topology.graph
    try:
        steps = graph.path(a.dpid, b.dpid)
    except NoPath:
        raise ApiError(409, "NoPath", f"Host {b.mac} cannot be reached from host {a.mac}: no path between their "
                                      f"switches {a.dpid:#x} and {b.dpid:#x}.") from None
    hops = []
    in_port = a.port
    equal_cost = False
    for dpid, out_port in steps:
        hops.append({"dpid": dpid_text(dpid), "switch": _port_ref(ctx, dpid, out_port)["switch"],
                     "in_port": in_port, "out_port": out_port})
        equal_cost = equal_cost or len(graph.next_hops(dpid, b.dpid)) > 1
        link = ctx.core.topology.link_at(dpid, out_port)
        in_port = link.peer_of(dpid)[1] if link is not None else 0
    hops.append({"dpid": dpid_text(b.dpid), "switch": _port_ref(ctx, b.dpid, b.port)["switch"],
                 "in_port": in_port, "out_port": b.port})
    return {"src": _host(ctx, a), "dst": _host(ctx, b), "hops": hops, "equal_cost": equal_cost}


__all__ = ["router", "find_switch", "ask", "port_stats", "dpid_text", "switch_name", "desc_name", "resolve_switch",
           "learn_names", "parse_dpid"]
