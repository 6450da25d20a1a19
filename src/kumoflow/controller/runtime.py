"""The controller: listeners, the app pipeline, event dispatch, keepalives."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from typing import Any, Coroutine

from kumoflow import ofp

from .address import Address, parse_address
from .app import HANDLERS, App, overridden
from .datapath import Datapath

log = logging.getLogger("kumoflow.controller")


@functools.cache
def _is_async(cls: type, handler: str) -> bool:
    return inspect.iscoroutinefunction(getattr(cls, handler))


def app_is_async(app: App, handler: str) -> bool:
    """Whether an app's handler is `async def` (decided once per class)."""
    return _is_async(type(app), handler)


class Controller:
    def __init__(self, apps: list[App], echo_interval: float = 5.0, echo_timeout: float = 15.0,
                 request_timeout: float = 10.0, miss_send_len: int = ofp.OFP_DEFAULT_MISS_SEND_LEN) -> None:
        self.apps = apps
        self.echo_interval = echo_interval
        self.echo_timeout = echo_timeout
        self.request_timeout = request_timeout
        self.miss_send_len = miss_send_len
        self.datapaths: dict[int, Datapath] = {}      # dpid -> session, for switches that are up
        self.connections: set[Datapath] = set()
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: set[asyncio.Task] = set()
        self._keepalive: asyncio.Task | None = None
        self._assign_tables()
        # table id -> the packet_in handler of the app owning that table
        self._packet_in: list[Any] = [None] * 256
        for app in apps:
            if overridden(app, "packet_in"):
                for t in range(app.table, app.table + app.tables):
                    self._packet_in[t] = app

    def _assign_tables(self) -> None:
        table = 0
        for index, app in enumerate(self.apps):
            next_table = table + app.tables if index + 1 < len(self.apps) else None
            app.attach(self, index, table, next_table)
            table += app.tables
        if table > 255:
            raise ValueError(f"the apps need {table} tables; OpenFlow has 255")

    # --- lifecycle -----------------------------------------------------------------

    async def start(self, addresses: list[str | Address]) -> list[Address]:
        """Listen on each address; returns the bound addresses (port 0 → real port)."""
        self.loop = asyncio.get_running_loop()
        for app in self.apps:
            app.start()
        bound = []
        for address in addresses:
            addr = parse_address(address) if isinstance(address, str) else address
            # A large backlog: switches reconnecting together after a restart
            # must not be dropped (each retry costs them a backoff period).
            server = await self.loop.create_server(lambda: Datapath(self), addr.host, addr.port,
                                                   reuse_address=True, backlog=1024)
            self._servers.append(server)
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                bound.append(Address("tcp", host, port))
                log.info("listening on tcp:%s:%d", host, port)
        self._keepalive = self.loop.create_task(self._keepalive_loop())
        return bound

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for dp in list(self.connections):
            dp.close()
        if self._keepalive:
            self._keepalive.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        for app in self.apps:
            app.stop()

    # --- connections and switches ------------------------------------------------------

    def connection_opened(self, dp: Datapath) -> None:
        self.connections.add(dp)
        log.debug("connection from %s", dp.peer)

    def connection_closed(self, dp: Datapath, exc: Exception | None) -> None:
        self.connections.discard(dp)
        if dp.is_up:
            dp.is_up = False
            if self.datapaths.get(dp.id) is dp:
                del self.datapaths[dp.id]
            log.info("switch %s down (%s)", dp.name, exc or "closed")
            self.dispatch(dp, "switch_down")

    async def switch_up(self, dp: Datapath) -> None:
        old = self.datapaths.get(dp.id)
        if old is not None and old is not dp:
            log.info("switch %s reconnected from %s; dropping its old channel", dp.name, dp.peer)
            old.close()
            if old.is_up:
                old.is_up = False
                self.dispatch(old, "switch_down")
        self.datapaths[dp.id] = dp
        try:
            await self._prepare_tables(dp)
        except Exception as exc:   # timeout, error or closed channel
            log.warning("%s: could not set up its tables: %s", dp, exc)
            dp.close()
            return
        dp.is_up = True
        log.info("switch %s up from %s with %d ports", dp.name, dp.peer, len(dp.ports))
        self.dispatch(dp, "switch_up")

    async def _prepare_tables(self, dp: Datapath) -> None:
        """Reset the tables the apps own and install their miss entries."""
        msgs: list[ofp.Message] = [ofp.SetConfig(miss_send_len=self.miss_send_len)]
        for app in self.apps:
            for table in range(app.table, app.table + app.tables):
                msgs.append(ofp.FlowMod(command=ofp.OFPFC.DELETE, table_id=table))
                msgs.append(ofp.FlowMod(table_id=table, priority=0, cookie=app.cookie,
                                        instructions=app.table_miss(table)))
        dp.send_many(msgs)
        await dp.barrier()

    # --- dispatch ----------------------------------------------------------------------

    def dispatch(self, dp: Datapath, handler: str, *args: Any) -> None:
        for app in self.apps:
            if overridden(app, handler):
                self.call(app, handler, dp, *args)

    def dispatch_packet_in(self, dp: Datapath, msg: ofp.PacketIn) -> None:
        if not dp.is_up:
            return
        app = self._packet_in[msg.table_id]
        if app is not None:
            self.call(app, "packet_in", dp, msg)

    def dispatch_flow_removed(self, dp: Datapath, msg: ofp.FlowRemoved) -> None:
        index = (msg.cookie >> 48) - 1
        if 0 <= index < len(self.apps):
            self.call(self.apps[index], "flow_removed", dp, msg)
        else:
            self.dispatch(dp, "flow_removed", msg)

    def call(self, app: App, handler: str, *args: Any) -> None:
        """Run an app handler; a failing app is logged and never takes the switch down."""
        method = getattr(app, handler)
        try:
            if app_is_async(app, handler):
                self.spawn(method(*args), args[0] if args else None, app)
            else:
                method(*args)
        except Exception:
            log.exception("app %s failed in %s", app.name, handler)

    def spawn(self, coro: Coroutine, dp: Datapath | None = None, app: App | None = None) -> asyncio.Task:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._task_done(t, dp, app))
        return task

    def _task_done(self, task: asyncio.Task, dp: Datapath | None, app: App | None) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            who = f"app {app.name}" if app else "controller"
            log.error("%s failed for %s", who, dp, exc_info=task.exception())

    # --- keepalive -----------------------------------------------------------------------

    async def _keepalive_loop(self) -> None:
        """Echo idle switches; close those silent for echo_timeout (dead peers)."""
        while True:
            await asyncio.sleep(self.echo_interval / 2)
            now = self.loop.time()
            for dp in list(self.connections):
                idle = now - dp.last_seen
                if idle > self.echo_timeout:
                    log.warning("%s: no message for %.0fs; closing", dp, idle)
                    dp.close()
                elif idle > self.echo_interval and dp.conn.negotiated:
                    dp.send(ofp.EchoRequest())


__all__ = ["Controller", "HANDLERS"]
