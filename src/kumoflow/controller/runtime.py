"""The controller's asyncio runtime: listeners, sockets and the clock.

Everything that decides lives in the sans-IO core (core.py); this module
only moves bytes between TCP connections and the core's `Datapath`
sessions, calls `Core.tick` when the next timer is due (the core says when that
changes), and runs
coroutine handlers as tasks. With a desired-state store (kumoflow.store),
it loads the core's mirror (`core.state`) from a snapshot before listening
and feeds it the store's commits after that.

An ``ssl:HOST:PORT`` listener (given `tls`, a kumoflow.tls.TlsContexts) accepts
TCP connections and wraps each in TLS with the context current at that moment
(so a rotated certificate serves the next switch); a switch whose certificate
is missing or not signed by the CA is refused and logged with its address.
"""

from __future__ import annotations

import asyncio
import logging
import socket
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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        dp = self.controller.core.connect(f"{peer[0]}:{peer[1]}" if peer else "?")
        dp.write = transport.write            # type: ignore[attr-defined]
        dp.on_close = transport.close
        self.dp = dp
        dp.flush()

    def data_received(self, data: bytes) -> None:
        assert self.dp is not None
        self.dp.receive_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.dp is not None:
            self.dp.connection_lost(exc)


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
        self._ssl_sockets: list[socket.socket] = []
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
            if addr.scheme == "ssl":
                bound.append(await self._listen_ssl(addr))
                continue
            if addr.scheme != "tcp":
                raise ValueError(f"{address}: expected tcp:HOST:PORT or ssl:HOST:PORT")
            # A large backlog: switches reconnecting together after a restart
            # must not be dropped (each retry costs them a backoff period).
            server = await self.loop.create_server(lambda: _Channel(self), addr.host, addr.port,
                                                   reuse_address=True, backlog=1024)
            self._servers.append(server)
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                bound.append(Address(addr.scheme, host, port))
                log.info("listening on %s:%s:%d", addr.scheme, host, port)
        self.rearm()
        return bound

    # --- ssl: listeners ---------------------------------------------------------------
    # A listening socket of our own and an accept loop: each connection gets the context that is
    # current when it arrives (kumoflow.tls.TlsContexts re-reads changed files), and a failed
    # handshake is ours to log. (asyncio's and uvloop's create_server fix one context per server.)

    async def _listen_ssl(self, addr: Address) -> Address:
        if self.tls is None:
            raise ValueError(f"{addr}: an ssl: listener needs a key, a certificate and a CA (--tls-*)")
        self.tls.context()                   # the files load now, or start fails
        infos = await self.loop.getaddrinfo(addr.host or None, addr.port, type=socket.SOCK_STREAM,
                                            flags=socket.AI_PASSIVE)
        family, kind, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:                                 # as create_server does for tcp: (the same large backlog)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.listen(1024)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._ssl_sockets.append(sock)
        host, port = sock.getsockname()[:2]
        log.info("listening on ssl:%s:%d (TLS, client certificates required)", host, port)
        self.spawn(self._accept_ssl(sock, f"ssl:{host}:{port}"))
        return Address("ssl", host, port)

    async def _accept_ssl(self, sock: socket.socket, listener: str) -> None:
        while True:
            try:
                conn, peer = await self.loop.sock_accept(sock)
            except OSError as exc:           # e.g. out of file descriptors: try again a little later
                log.warning("%s: accept failed: %s", listener, exc)
                await asyncio.sleep(0.1)
                continue
            self.spawn(self._handshake(conn, peer, listener))

    async def _handshake(self, conn: socket.socket, peer: Any, listener: str) -> None:
        from kumoflow.tls import HANDSHAKE_TIMEOUT, describe_peer, refusal_reason

        who = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        try:
            assert self.tls is not None
            ctx = self.tls.context()
        except Exception as exc:
            log.error("%s: TLS connection from %s dropped: the certificate files do not load: %s",
                      listener, who, exc)
            conn.close()
            return
        try:
            transport, _ = await self.loop.connect_accepted_socket(
                lambda: _Channel(self), conn, ssl=ctx, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except asyncio.CancelledError:
            conn.close()
            raise
        except (OSError, EOFError, TimeoutError, ValueError) as exc:   # ssl.SSLError is an OSError
            log.warning("%s: TLS peer %s refused: %s", listener, who, refusal_reason(exc))
            conn.close()
            return
        log.info("%s: TLS peer %s verified: %s", listener, who, describe_peer(transport.get_extra_info("ssl_object")))

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
        for sock in self._ssl_sockets:       # their accept loops were tasks, cancelled above
            sock.close()
        self._ssl_sockets.clear()
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
