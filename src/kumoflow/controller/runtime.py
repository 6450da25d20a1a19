"""The controller's asyncio runtime: listeners, sockets and the clock.

Everything that decides lives in the sans-IO core (core.py); this module
only moves bytes between TCP connections and the core's `Datapath`
sessions, calls `Core.tick` when the next timer is due (the core says when that
changes), and runs
coroutine handlers as tasks. With a desired-state store (kumoflow.store),
it loads the core's mirror (`core.state`) from a snapshot before listening
and feeds it the store's commits after that.

An ``ssl:HOST:PORT`` listener (given `tls`, a kumoflow.tls.TlsContexts) accepts
TCP and then upgrades each connection with the context current at that moment
(so a rotated certificate serves the next switch); a switch whose certificate
is missing or not signed by the CA is refused and logged with its address.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Coroutine

from kumoflow.ofp.address import Address, parse_address

from .app import App
from .core import Core
from .datapath import Datapath

if TYPE_CHECKING:
    from kumoflow.store import Store

log = logging.getLogger("kumoflow.controller")


class _Channel(asyncio.Protocol):
    """One TCP connection, feeding one Datapath."""

    def __init__(self, controller: "Controller") -> None:
        self.controller = controller
        self.dp: Datapath | None = None
        #: bytes that a TLS transport delivered before its handshake's coroutine called connection_made
        self._early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        dp = self.controller.core.connect(f"{peer[0]}:{peer[1]}" if peer else "?")
        dp.write = transport.write            # type: ignore[attr-defined]
        dp.on_close = transport.close
        self.dp = dp
        dp.flush()
        for data in self._early:
            dp.receive_data(data)
        self._early.clear()

    def data_received(self, data: bytes) -> None:
        if self.dp is None:
            self._early.append(data)
            return
        self.dp.receive_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.dp is not None:
            self.dp.connection_lost(exc)


class _TlsAccept(asyncio.Protocol):
    """A TCP connection to an ssl: listener until its TLS handshake is done: then a _Channel
    over the TLS transport; or refused (logged) when the handshake fails."""

    def __init__(self, controller: "Controller") -> None:
        self.controller = controller

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.pause_reading()            # type: ignore[attr-defined]  # the handshake reads first
        self.controller.spawn(self._handshake(transport))

    async def _handshake(self, transport: asyncio.BaseTransport) -> None:
        from kumoflow.tls import HANDSHAKE_TIMEOUT, describe_peer, refusal_reason

        peer = transport.get_extra_info("peername")
        who = f"{peer[0]}:{peer[1]}" if peer else "?"
        here = transport.get_extra_info("sockname")
        listener = f"ssl:{here[0]}:{here[1]}" if here else "ssl"
        tls = self.controller.tls
        try:
            assert tls is not None
            ctx = tls.context()
        except Exception as exc:
            log.error("%s: TLS connection from %s dropped: the certificate files do not load: %s",
                      listener, who, exc)
            transport.abort()                # type: ignore[attr-defined]
            return
        channel = _Channel(self.controller)
        try:
            tls_transport = await self.controller.loop.start_tls(
                transport, channel, ctx, server_side=True, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except asyncio.CancelledError:
            transport.abort()                # type: ignore[attr-defined]
            raise
        except (OSError, EOFError, TimeoutError, ValueError) as exc:
            log.warning("%s: TLS peer %s refused: %s", listener, who, refusal_reason(exc))
            transport.abort()                # type: ignore[attr-defined]
            return
        if tls_transport is None or tls_transport.is_closing():
            return
        log.info("%s: TLS peer %s verified: %s", listener, who,
                 describe_peer(tls_transport.get_extra_info("ssl_object")))
        channel.connection_made(tls_transport)

    def data_received(self, data: bytes) -> None:   # reading is paused until start_tls takes over
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        pass


class Controller:
    """The core plus listeners: `await start([...])`, `await stop()`. A `store`
    given is followed from `start` and closed by `stop`."""

    def __init__(self, apps: list[App], store: "Store | None" = None, *, tls: Any = None, **options: Any) -> None:
        self.core = Core(apps, **options)
        #: kumoflow.tls.TlsContexts (server side) for ssl: listeners
        self.tls = tls
        self.store = store
        self.core.spawn = self.spawn
        self.core.on_timers_changed = self.rearm
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: set[asyncio.Task] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    @property
    def apps(self) -> list[App]:
        return self.core.apps

    @property
    def datapaths(self) -> dict[int, Datapath]:
        return self.core.datapaths

    async def start(self, addresses: list[str | Address]) -> list[Address]:
        """Listen on each address; returns the bound addresses (port 0 → real port)."""
        self.loop = asyncio.get_running_loop()
        self.core.now = self.loop.time
        self.core.start()
        if self.store is not None:
            # Nothing can commit between the snapshot and the watch: the SQLite store answers
            # without suspending (a remote backend must start its watch at the snapshot's revision).
            self.core.state.load(await self.store.snapshot())
            self.store.watch(self.core.state.apply)
        bound = []
        for address in addresses:
            addr = parse_address(address) if isinstance(address, str) else address
            # A large backlog: switches reconnecting together after a restart
            # must not be dropped (each retry costs them a backoff period).
            if addr.scheme == "ssl":
                if self.tls is None:
                    raise ValueError(f"{address}: an ssl: listener needs a key, a certificate and a CA (--tls-*)")
                self.tls.context()           # the files load now, or start fails
                factory: Any = lambda: _TlsAccept(self)  # noqa: E731
            elif addr.scheme == "tcp":
                factory = lambda: _Channel(self)  # noqa: E731
            else:
                raise ValueError(f"{address}: expected tcp:HOST:PORT or ssl:HOST:PORT")
            server = await self.loop.create_server(factory, addr.host, addr.port,
                                                   reuse_address=True, backlog=1024)
            self._servers.append(server)
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                bound.append(Address(addr.scheme, host, port))
                log.info("listening on %s:%s:%d", addr.scheme, host, port)
        self.rearm()
        return bound

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for dp in list(self.core.connections):
            dp.close()
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self.core.stop()
        if self.store is not None:
            await self.store.close()

    def rearm(self) -> None:
        """Schedule the next tick at the core's next deadline."""
        when = self.core.next_deadline()
        if when is None or when == self._timer_at or self.loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._tick)

    def _tick(self) -> None:
        self._timer = self._timer_at = None
        self.core.tick()
        self.rearm()

    def spawn(self, coro: Coroutine) -> asyncio.Task:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


__all__ = ["Controller"]
