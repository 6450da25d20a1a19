"""The event stream: what happens in the network, pushed to browsers as server-sent events.

    POST /sdn/events/tickets            {"ticket", "expires_in": 30, "admin", "project_id"}  (X-Auth-Token)
    GET  /sdn/events?ticket=T[&switch=S][&interval=SECONDS]     text/event-stream

A browser's ``EventSource`` cannot send headers, so the stream is opened with a
ticket instead of the token: a random string the caller got a moment before
with its token (``POST /sdn/events/tickets``), good for one stream, for 30
seconds, and for nothing else. The token itself never goes into a URL, where it
would land in proxies' logs and the browser's history. A stream that ends is
opened again with a new ticket (the UI does so).

What the stream carries (each an SSE ``event:`` of that name, its ``data:`` JSON):

``hello``          first: {"interval", "heartbeat", "admin", "apps": the controller's apps}
``ping``           every `HEARTBEAT` seconds, so a client tells a dead controller from
                   a quiet one
``switch_up`` / ``switch_down``     {"dpid", "name"}
``port``           {"dpid", "port_no", "name", "reason": add|delete|modify, "up"}
``link_up`` / ``link_down``         {"a": {"dpid", "port_no"}, "b": {...}}
``host_found`` / ``host_moved`` / ``host_lost``    {"mac", "ips", "dpid", "port_no"} (moved: "from")
``record``         a desired-state record changed: {"kind", "id", "op": create|update|delete,
                   "project_id"}
``counters``       every `interval` seconds: {"time", "switches": {dpid: {port_no: [rx_packets,
                   tx_packets, rx_bytes, tx_bytes, rx_dropped, tx_dropped, rx_errors, tx_errors]}}}
``flows``          with ``switch=S``, every `interval` seconds: {"dpid", "flows": [[table, priority,
                   match, n_packets, n_bytes], ...]} (match in ovs-ofctl syntax)
``denied``         what the firewall logged since the last period (GET /v2.0/fwaas/denied's records)

The admin sees everything; a project token sees only ``record`` events of its own
project (and shared records), ``denied`` at its own ports, and the heartbeats.

How it stays off the controller's back: the controller core calls `EventHub.on_event`
for every event it dispatches to its apps (``core.listeners``), which turns it into a
small dict and appends it to each subscriber's queue, a bounded deque: a browser that
reads slowly loses its oldest events (the next one it gets says how many, as
``"lost"``, so it can read the whole view again) and never holds the controller up.
Counters are asked of the switches once per period for all subscribers together,
and only while someone listens.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import secrets
import time
from typing import Any, AsyncIterator

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from kumoflow import ofp
from kumoflow.ofp import text

from .server import ApiContext, ApiError, Caller, Ctx, ProjectCaller, context_of

log = logging.getLogger("kumoflow.api.events")

router = APIRouter(prefix="/sdn", tags=["events"])

#: seconds between heartbeats
HEARTBEAT = 2.0
#: seconds a ticket is good for
TICKET_LIFE = 30.0
#: events a subscriber's queue holds before it loses the oldest
QUEUE_SIZE = 2000
#: tickets outstanding at most (the oldest are dropped)
MAX_TICKETS = 1000

_REASONS = {ofp.OFPPR.ADD: "add", ofp.OFPPR.DELETE: "delete", ofp.OFPPR.MODIFY: "modify"}


class Subscriber:
    """One open stream: a bounded queue of events and what it wants."""

    def __init__(self, caller: Caller, switch: int | None, size: int = QUEUE_SIZE) -> None:
        self.caller = caller
        self.switch = switch                     # dpid whose flow counters it wants, or None
        self.queue: collections.deque[tuple[str, Any]] = collections.deque(maxlen=size)
        self.lost = 0                            # events dropped since the last one delivered
        self.wake = asyncio.Event()
        self.closed = False

    def put(self, name: str, data: Any) -> None:
        if len(self.queue) == self.queue.maxlen:
            self.lost += 1                       # the deque drops the oldest
        self.queue.append((name, data))
        self.wake.set()

    def take(self) -> list[tuple[str, Any]]:
        items = list(self.queue)
        self.queue.clear()
        self.wake.clear()
        if self.lost and items:
            name, data = items[0]
            items[0] = (name, {**data, "lost": self.lost})
            self.lost = 0
        return items


class EventHub:
    """Subscribers, the hook into the controller core, and the counter poller."""

    def __init__(self, ctx: ApiContext, interval: float = 1.0, queue_size: int = QUEUE_SIZE) -> None:
        self.ctx = ctx
        self.interval = interval
        self.queue_size = queue_size
        self.subscribers: set[Subscriber] = set()
        self.tickets: dict[str, tuple[Caller, float]] = {}
        self.closed = False
        self._poller: asyncio.Task | None = None
        self._denied_seen: int | None = None
        self.published = 0                       # events published (for tests and metrics)
        listeners = getattr(ctx.core, "listeners", None)
        if listeners is not None:
            listeners.append(self.on_event)

    # --- tickets --------------------------------------------------------------------------

    def issue(self, caller: Caller) -> str:
        now = time.monotonic()
        for ticket, (_, expires) in list(self.tickets.items()):
            if expires < now:
                del self.tickets[ticket]
        while len(self.tickets) >= MAX_TICKETS:
            del self.tickets[next(iter(self.tickets))]
        ticket = secrets.token_urlsafe(24)
        self.tickets[ticket] = (caller, now + TICKET_LIFE)
        return ticket

    def redeem(self, ticket: str) -> Caller | None:
        """The caller a ticket was issued to, once; None if unknown, used or expired."""
        found = self.tickets.pop(ticket, None)
        if found is None or found[1] < time.monotonic():
            return None
        caller = found[0]
        # a token revoked since: the ticket dies with it
        if not caller.admin and self.ctx.tokens.get(caller.token_id or "") is None:
            return None
        return caller

    # --- subscribers ----------------------------------------------------------------------

    def subscribe(self, caller: Caller, switch: int | None = None) -> Subscriber:
        sub = Subscriber(caller, switch, self.queue_size)
        self.subscribers.add(sub)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="kumoflow-api-events")
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        sub.closed = True
        self.subscribers.discard(sub)

    def close(self) -> None:
        """End every stream (the API is stopping) and leave the core alone."""
        self.closed = True
        for sub in list(self.subscribers):
            sub.closed = True
            sub.wake.set()
        self.subscribers.clear()
        listeners = getattr(self.ctx.core, "listeners", None)
        if listeners is not None and self.on_event in listeners:
            listeners.remove(self.on_event)
        if self._poller is not None:
            self._poller.cancel()

    def publish(self, name: str, data: dict, project: str | None | bool = False) -> None:
        """Queue an event for every subscriber who may see it: the admin always; a project
        caller when `project` is its project or None (shared); False: the admin only."""
        self.published += 1
        for sub in self.subscribers:
            caller = sub.caller
            if caller.admin or (project is not False and (project is None or project == caller.project_id)):
                sub.put(name, data)

    # --- the hook: events the core dispatches ---------------------------------------------

    def on_event(self, handler: str, args: tuple) -> None:
        if not self.subscribers:
            return
        convert = _CONVERT.get(handler)
        if convert is None:
            return
        try:
            converted = convert(self, *args)
        except Exception:
            log.exception("cannot turn %s into an event", handler)
            return
        if converted is not None:
            name, data, project = converted
            self.publish(name, data, project)

    def _dpid(self, dpid: int) -> str:
        return f"{dpid:016x}"

    def _switch(self, dp: Any) -> dict:
        from .sdn import switch_name
        return {"dpid": self._dpid(dp.id), "name": switch_name(dp, self.ctx)}

    def _switch_up(self, dp: Any) -> tuple:
        return "switch_up", self._switch(dp), False

    def _switch_down(self, dp: Any) -> tuple:
        return "switch_down", self._switch(dp), False

    def _port_status(self, dp: Any, msg: ofp.PortStatus) -> tuple:
        p = msg.desc
        up = not (p.config & ofp.OFPPC.PORT_DOWN or p.state & ofp.OFPPS.LINK_DOWN)
        return "port", {"dpid": self._dpid(dp.id), "port_no": p.port_no, "name": p.name,
                        "reason": _REASONS.get(msg.reason, str(msg.reason)), "up": up}, False

    def _link(self, name: str, link: Any) -> tuple:
        return name, {"a": {"dpid": self._dpid(link.a), "port_no": link.a_port},
                      "b": {"dpid": self._dpid(link.b), "port_no": link.b_port}}, False

    def _host(self, name: str, host: Any, old: Any = None) -> tuple:
        data = {"mac": host.mac, "ips": sorted(host.ips), "dpid": self._dpid(host.dpid), "port_no": host.port}
        if old is not None:
            data["from"] = {"dpid": self._dpid(old.dpid), "port_no": old.port}
        return name, data, False

    def _record(self, change: Any) -> tuple | None:
        record = change.record if change.record is not None else change.old
        if record is None or change.kind == "token":
            return None
        op = "delete" if change.record is None else "create" if change.old is None else "update"
        shared = bool((getattr(record, "body", None) or {}).get("shared"))
        project = None if shared else (getattr(record, "project_id", None) or None)
        return "record", {"kind": change.kind, "id": change.id, "op": op, "project_id": project}, project

    # --- the poller: counters, flows, what the firewall denied --------------------------------

    async def _poll(self) -> None:
        try:
            while self.subscribers and not self.closed:
                started = asyncio.get_running_loop().time()
                try:
                    await self.snapshot()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("counter snapshot failed")
                spent = asyncio.get_running_loop().time() - started
                await asyncio.sleep(max(0.05, self.interval - spent))
        except asyncio.CancelledError:
            pass

    async def snapshot(self) -> None:
        """One period: port counters of every switch, flow counters of the switches watched,
        new denied records."""
        from .sdn import ask

        core = self.ctx.core
        dps = [dp for dp in core.datapaths.values() if dp.is_up]
        timeout = min(self.ctx.switch_timeout, max(1.0, 2 * self.interval))
        admins = any(sub.caller.admin for sub in self.subscribers)

        async def ports(dp: Any) -> tuple[Any, Any]:
            try:
                return dp, await asyncio.wait_for(ask(self.ctx, dp, ofp.PortStatsRequest()), timeout)
            except (ApiError, asyncio.TimeoutError):
                return dp, None

        watched = {sub.switch for sub in self.subscribers if sub.switch is not None and sub.caller.admin}

        async def flows(dpid: int) -> tuple[int, Any]:
            dp = core.datapaths.get(dpid)
            if dp is None or not dp.is_up:
                return dpid, None
            try:
                return dpid, await asyncio.wait_for(ask(self.ctx, dp, ofp.FlowStatsRequest()), timeout)
            except (ApiError, asyncio.TimeoutError):
                return dpid, None

        if admins:
            port_replies, flow_replies = await asyncio.gather(asyncio.gather(*(ports(dp) for dp in dps)),
                                                              asyncio.gather(*(flows(d) for d in watched)))
            switches = {}
            stats_cache = self.ctx.extra.setdefault("port_stats", {})
            for dp, reply in port_replies:
                if reply is None:
                    continue
                stats = {p.port_no: p for p in reply.body}
                stats_cache[dp.id] = (dp, stats)
                switches[self._dpid(dp.id)] = {
                    str(p.port_no): [p.rx_packets, p.tx_packets, p.rx_bytes, p.tx_bytes, p.rx_dropped,
                                     p.tx_dropped, p.rx_errors, p.tx_errors] for p in reply.body}
            self.publish("counters", {"time": time.time(), "switches": switches})
            for dpid, reply in flow_replies:
                if reply is None:
                    continue
                rows = [[f.table_id, f.priority, text.format_match(f.match), f.packet_count, f.byte_count]
                        for f in reply.body]
                data = {"dpid": self._dpid(dpid), "flows": rows}
                for sub in self.subscribers:
                    if sub.switch == dpid and sub.caller.admin:
                        sub.put("flows", data)
        self._denied()

    def _denied(self) -> None:
        try:
            firewall = self.ctx.core.app("firewall")
        except (KeyError, AttributeError):
            return
        total = sum(firewall.logged.values())
        if self._denied_seen is None:
            self._denied_seen = total
            return
        new, self._denied_seen = total - self._denied_seen, total
        if new <= 0:
            return
        from .firewall_log import _shown

        records = list(firewall.denied)[-min(new, len(firewall.denied)):] if firewall.denied else []
        db_get = self.ctx.core.state.get
        for record in records:
            port = db_get("port", record["port"])
            self.publish("denied", _shown(self.ctx, record), port.project_id if port is not None else False)


_CONVERT: dict[str, Any] = {
    "switch_up": EventHub._switch_up,
    "switch_down": EventHub._switch_down,
    "port_status": EventHub._port_status,
    "link_up": lambda hub, link: hub._link("link_up", link),
    "link_down": lambda hub, link: hub._link("link_down", link),
    "host_found": lambda hub, host: hub._host("host_found", host),
    "host_moved": lambda hub, host, old: hub._host("host_moved", host, old),
    "host_lost": lambda hub, host: hub._host("host_lost", host),
    "record_changed": EventHub._record,
}


def hub_of(ctx: ApiContext) -> EventHub:
    hub = ctx.extra.get("events")
    if hub is None:
        hub = ctx.extra["events"] = EventHub(ctx)
        ctx.on_stop.append(hub.close)
    return hub


def setup(app: Any, ctx: ApiContext) -> None:
    hub_of(ctx)


# --- routes ---------------------------------------------------------------------------------


class Ticket(BaseModel):
    ticket: str = Field(description="pass as ?ticket= to GET /sdn/events; good once, for expires_in seconds")
    expires_in: float
    admin: bool = Field(description="whether the token is the admin's (the UI shows the admin's pages then)")
    project_id: str | None = Field(description="a project token's project; null for the admin")


def _frame(name: str, data: Any, seq: int) -> bytes:
    return f"id: {seq}\nevent: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@router.post("/events/tickets", status_code=201, response_model=Ticket,
             summary="A ticket to open the event stream with (EventSource sends no headers)")
async def new_ticket(ctx: Ctx, caller: ProjectCaller) -> dict:
    return {"ticket": hub_of(ctx).issue(caller), "expires_in": TICKET_LIFE, "admin": caller.admin,
            "project_id": caller.project_id}


@router.get("/events", summary="The event stream (server-sent events)", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "events, as they happen"}})
async def events(request: Request, ticket: str = Query(description="from POST /sdn/events/tickets"),
                 switch: str | None = Query(None, description="also stream this switch's flow counters "
                                                              "(admin only)")) -> StreamingResponse:
    ctx = context_of(request)
    hub = hub_of(ctx)
    caller = hub.redeem(ticket)
    if caller is None:
        raise ApiError(401, "HTTPUnauthorized", "Authentication failed: the ticket is not valid (unknown, used or "
                                                "expired); get another with POST /sdn/events/tickets.")
    dpid = None
    if switch is not None:
        from .sdn import find_switch
        if not caller.admin:
            raise ApiError(403, "HTTPForbidden", "Flow counters need the admin token; a project token may not "
                                                 "have them.")
        dpid = (await find_switch(ctx, switch)).id
    if hub.closed:
        raise ApiError(503, "HTTPServiceUnavailable", "The API is stopping.")
    sub = hub.subscribe(caller, dpid)

    async def stream() -> AsyncIterator[bytes]:
        seq = 0
        try:
            seq += 1
            yield _frame("hello", {"interval": hub.interval, "heartbeat": HEARTBEAT, "admin": caller.admin,
                                   "apps": [app.name for app in getattr(ctx.core, "apps", ())]}, seq)
            while not sub.closed:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(sub.wake.wait(), HEARTBEAT)
                items = sub.take()
                if not items:
                    items = [("ping", {"time": time.time()})]
                chunk = b""
                for name, data in items:
                    seq += 1
                    chunk += _frame(name, data, seq)
                yield chunk
        finally:
            hub.unsubscribe(sub)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


__all__ = ["EventHub", "Subscriber", "hub_of", "router", "setup"]
