"""Controller channels of the software switch: several at once, with roles.

A :class:`Channels` object owns every OpenFlow channel of one switch:

* active channels (``tcp:HOST:PORT``): the switch connects, and reconnects
  with exponential backoff (``min_backoff`` doubling up to ``max_backoff``,
  8 s by default) whenever the channel drops or the connection is refused;
* passive listeners (``ptcp:PORT[:HOST]``) for management tools such as
  ``ovs-ofctl``; any number of clients at once.

Each channel is an asyncio protocol around the sans-IO :class:`ofp.Connection`
(hello negotiation, framing, echo replies). The channel itself handles what
belongs to the channel rather than to the datapath (section 6.3 of the
OpenFlow 1.3.5 specification):

* keepalive: an ECHO_REQUEST when the peer has been silent for
  ``echo_interval``; the channel is closed (and an active one reconnects)
  after ``echo_timeout`` of silence;
* ROLE_REQUEST: equal / master / slave / nochange, the generation id with
  the specification's wrap-around stale check (ROLE_REQUEST_FAILED/STALE,
  BAD_ROLE for an unknown role); a new master turns every other master into
  a slave; the reply carries the current generation id, or 2**64-1 while no
  controller has set one;
* slaves are read-only: flow/group/meter/port/table mods, packet-out,
  SET_CONFIG and table-features requests that set tables are answered with
  BAD_REQUEST/IS_SLAVE;
* GET_ASYNC / SET_ASYNC per channel; the initial async configuration is the
  specification's: master/equal get every packet-in but INVALID_TTL, every
  port status and every flow removed; slaves get port status only;
* asynchronous messages from the datapath (packet-in, flow removed, port
  status) go to each channel whose role and async configuration want them.
  A packet-in is encoded once and the same bytes (same buffer id) go to
  every such channel.

Everything else is handed to ``datapath.handle(msg)``; its replies are sent
as they are (same xid), a :class:`~kumoflow.switch.datapath.SwitchError`
becomes an ERROR carrying the first 64 bytes of the request, and an
undecodable message gets the error the codec names. The channel stays up
in every one of these cases.

Passive (listener) channels are full OpenFlow channels too (they may take
roles and receive asynchronous messages) but they do not count as
"a controller is connected" for the fail modes -- as in Open vSwitch,
where service connections do not take a bridge out of fail-open.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from kumoflow import ofp
from kumoflow.ofp.address import Address, parse_address

from .datapath import Datapath
from .errors import SwitchError

log = logging.getLogger("kumoflow.switch.channel")

#: generation id in a ROLE_REPLY while no controller has set one (7.3.9)
GENERATION_ID_UNSET = 0xFFFFFFFFFFFFFFFF

_ALL_PACKET_IN = 1 << ofp.OFPR.NO_MATCH | 1 << ofp.OFPR.ACTION | 1 << ofp.OFPR.INVALID_TTL
#: packet-in reasons on by default for master/equal: all but INVALID_TTL
DEFAULT_PACKET_IN = _ALL_PACKET_IN & ~(1 << ofp.OFPR.INVALID_TTL)
DEFAULT_PORT_STATUS = 1 << ofp.OFPPR.ADD | 1 << ofp.OFPPR.DELETE | 1 << ofp.OFPPR.MODIFY
DEFAULT_FLOW_REMOVED = (1 << ofp.OFPRR.IDLE_TIMEOUT | 1 << ofp.OFPRR.HARD_TIMEOUT
                        | 1 << ofp.OFPRR.DELETE | 1 << ofp.OFPRR.GROUP_DELETE)


def default_async() -> list[int]:
    """[packet-in master/equal, slave, port-status m/e, slave, flow-removed m/e, slave]."""
    return [DEFAULT_PACKET_IN, 0, DEFAULT_PORT_STATUS, DEFAULT_PORT_STATUS, DEFAULT_FLOW_REMOVED, 0]


# Message types a slave may not send (6.3.6: "read-only access").
_SLAVE_DENIED = frozenset({
    ofp.OFPT.FLOW_MOD, ofp.OFPT.GROUP_MOD, ofp.OFPT.PORT_MOD, ofp.OFPT.TABLE_MOD,
    ofp.OFPT.METER_MOD, ofp.OFPT.PACKET_OUT, ofp.OFPT.SET_CONFIG,
})

_OFP_VERSION = ofp.OFP_VERSION
_DATAPATH_HANDLE = Datapath.handle
_ROLE_SLAVE = int(ofp.OFPCR.ROLE_SLAVE)
_BARRIER_REQUEST = int(ofp.OFPT.BARRIER_REQUEST)
_FLOW_MOD = int(ofp.OFPT.FLOW_MOD)
_BARRIER_REPLY_HEAD = bytes((ofp.OFP_VERSION, int(ofp.OFPT.BARRIER_REPLY), 0, 8))

#: index into the async masks of each asynchronous message class
_ASYNC_KIND = {ofp.PacketIn: 0, ofp.PortStatus: 2, ofp.FlowRemoved: 4}

#: an active channel's transport buffer beyond which packet-ins are dropped
#: (a slow controller must not make the switch buffer without bound)
MAX_BUFFERED = 4 * 1024 * 1024


def _stale(generation_id: int, cached: int) -> bool:
    """The specification's check: (int64)(generation_id - cached) < 0."""
    return (generation_id - cached) & 0xFFFFFFFFFFFFFFFF >= 1 << 63


class Channel(asyncio.Protocol):
    """One OpenFlow channel (one TCP connection) of the switch."""

    def __init__(self, channels: "Channels", active: bool, target: str = "") -> None:
        self.channels = channels
        self.active = active
        self.target = target
        self.conn = ofp.Connection()
        self.transport: asyncio.Transport | None = None
        self.peer = target or "?"
        self.role = ofp.OFPCR.ROLE_EQUAL
        self.async_config = default_async()
        self.last_seen = 0.0
        self.is_closed = False
        self.done: asyncio.Future = channels.loop.create_future()
        self._buf = b""
        self._receiving = False
        self.dropped_async = 0
        self.echo_sent_at = 0.0

    def __repr__(self) -> str:
        kind = "controller" if self.active else "client"
        return f"<{kind} {self.peer} {ofp.OFPCR(self.role).name.removeprefix('ROLE_').lower()}>"

    @property
    def negotiated(self) -> bool:
        return self.conn.negotiated and not self.is_closed

    # --- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"
        self.last_seen = self.channels.loop.time()
        self.channels._opened(self)
        self._flush()   # our HELLO

    def data_received(self, data: bytes) -> None:
        self.last_seen = self.channels.loop.time()
        self._receiving = True
        try:
            conn = self.conn
            # FLOW_MOD and BARRIER_REQUEST, most of what a controller sends,
            # skip the decoding into objects when they can (see _direct_datapath).
            datapath = self._direct_datapath()
            frames = self._frames(data)
            i, n = 0, len(frames)
            while i < n:
                raw = frames[i]
                if datapath is not None and raw[0] == _OFP_VERSION:
                    t = raw[1]
                    if t == _FLOW_MOD:
                        j = self._flow_mods_direct(datapath, frames, i)
                        if j > i:
                            i = j
                            continue
                    elif t == _BARRIER_REQUEST and len(raw) == 8 and raw[3] == 8 and not raw[2]:
                        # Every message before it has been processed: the reply, same xid.
                        conn.send_raw(_BARRIER_REPLY_HEAD + raw[4:8])
                        i += 1
                        continue
                for event in conn.receive_data(raw):
                    self._handle(event, raw)
                if self.is_closed:
                    break
                datapath = self._direct_datapath()     # the role or the negotiation may have changed
                i += 1
        except Exception:
            log.exception("%r: internal error; closing the channel", self)
            self.close()
        finally:
            self._receiving = False
            self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        was_negotiated = self.conn.negotiated
        self.is_closed = True
        if not self.done.done():
            self.done.set_result(was_negotiated)
        self.channels._closed(self, was_negotiated, exc)

    # --- framing ---------------------------------------------------------------------

    def _frames(self, data: bytes) -> list[bytes]:
        """Split the stream into whole messages, so each event has its request bytes."""
        buf = self._buf + data if self._buf else data
        frames = []
        o, n = 0, len(buf)
        while n - o >= 4:
            length = buf[o + 2] << 8 | buf[o + 3]
            if length < 8:          # framing is lost: let the Connection say so
                frames.append(buf[o:])
                o = n
                break
            if n - o < length:
                break
            frames.append(buf[o:o + length])
            o += length
        self._buf = buf[o:]
        return frames

    def _flow_mods_direct(self, datapath: Datapath, frames: list[bytes], i: int) -> int:
        """Apply FLOW_MODs frames[i], frames[i + 1], ... the direct way
        (Datapath.flow_mod_raw in its two halves) up to the first frame that
        is not a FLOW_MOD or that the direct way does not take; returns the
        index of that frame (i when frames[i] is one), which the ordinary
        path then takes. Only the checking half, which changes nothing, may
        fall back: once the change has begun the flow-mod must not be
        applied a second time, so a failure there is answered as the
        ordinary path answers an internal failure (BAD_REQUEST/EPERM)."""
        stage, commit = datapath.stage_flow_mod_raw, datapath.commit_flow_mod_raw
        n = len(frames)
        while i < n:
            raw = frames[i]
            if raw[1] != _FLOW_MOD or raw[0] != _OFP_VERSION:
                break
            try:
                staged = stage(raw)
            except Exception:
                log.exception("%r: stage_flow_mod_raw failed; taking the ordinary path", self)
                break
            if staged is None:
                break
            try:
                commit(staged)
            except Exception:
                log.exception("%r: datapath failed applying a FLOW_MOD; answering BAD_REQUEST/EPERM", self)
                self._error(ofp.OFPET.BAD_REQUEST, ofp.OFPBRC.EPERM, raw)
            i += 1
        return i

    def _direct_datapath(self) -> "Datapath | None":
        """The datapath, when FLOW_MODs and BARRIER_REQUESTs may skip the
        ordinary path (Connection -> _handle -> datapath.handle) because the
        direct one gives exactly what it would: after negotiation, on a
        channel that is not a slave, with kumoflow's Datapath (its own
        `handle`, not one wrapped or replaced to see every message) and no
        on_handled hook. Else None. A flow-mod that `flow_mod_raw` does not
        take (anything unusual, anything that fails) goes the ordinary way,
        which answers errors as always; so does a barrier with a body."""
        conn = self.conn
        if (conn.version is None or conn.closed or self.is_closed or self.role == _ROLE_SLAVE
                or self.channels.on_handled is not None):
            return None
        datapath = self.channels.datapath
        handle = getattr(datapath, "handle", None)
        if getattr(handle, "__func__", None) is not _DATAPATH_HANDLE or not isinstance(datapath, Datapath):
            return None
        return datapath

    # --- sending ---------------------------------------------------------------------

    def send(self, msg: ofp.Message) -> None:
        """Send a message as it is (its xid unchanged, even 0)."""
        self.send_raw(msg.pack())

    def send_raw(self, data: bytes) -> None:
        self.conn.send_raw(data)
        if not self._receiving:
            self._flush()

    def send_async(self, data: bytes, droppable: bool) -> None:
        if droppable and self.transport is not None and self.transport.get_write_buffer_size() > MAX_BUFFERED:
            self.dropped_async += 1
            if self.dropped_async in (1, 100) or self.dropped_async % 10000 == 0:
                log.warning("%r: controller is not keeping up; %d packet-ins dropped", self, self.dropped_async)
            return
        self.send_raw(data)

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._flush()
            self.transport.close()
        self.is_closed = True

    def wants(self, kind: int, reason: int) -> bool:
        """Does this channel take an async message of `kind` (0/2/4) and `reason`?"""
        if not self.negotiated:
            return False
        mask = self.async_config[kind + (self.role == ofp.OFPCR.ROLE_SLAVE)]
        return bool(mask >> reason & 1) if reason < 32 else False

    # --- receiving -------------------------------------------------------------------

    def _handle(self, event: Any, raw: bytes) -> None:
        kind = type(event)
        if kind is ofp.Hello:
            log.info("%r: OpenFlow 1.3 negotiated", self)
            self.channels._negotiated(self)
        elif kind is ofp.BadMessage:
            log.warning("%r: undecodable message: %s", self, event.error)
            self.conn.reject(event)
        elif kind is ofp.ChannelClosed:
            log.warning("%r: closing: %s", self, event.reason)
            self.close()
        elif kind is ofp.EchoReply:
            pass
        elif kind is ofp.ErrorMsg:
            log.warning("%r: peer reported %s (xid %d)", self, ofp.error_name(event.type, event.code), event.xid)
        elif kind is ofp.RoleRequest:
            self._role_request(event, raw)
        elif kind is ofp.GetAsyncRequest:
            c = self.async_config
            self.send(ofp.GetAsyncReply((c[0], c[1]), (c[2], c[3]), (c[4], c[5]), xid=event.xid))
        elif kind is ofp.SetAsync:
            self.async_config = [*event.packet_in_mask, *event.port_status_mask, *event.flow_removed_mask]
        elif self.role == ofp.OFPCR.ROLE_SLAVE and _state_changing(event):
            self._error(ofp.OFPET.BAD_REQUEST, ofp.OFPBRC.IS_SLAVE, raw)
        else:
            self._to_datapath(event, raw)

    def _to_datapath(self, msg: ofp.Message, raw: bytes) -> None:
        try:
            replies = self.channels.datapath.handle(msg)
        except SwitchError as exc:
            self._error(exc.type, exc.code, raw)
            return
        except Exception:
            log.exception("%r: datapath failed on %s; answering BAD_REQUEST/EPERM", self, type(msg).__name__)
            self._error(ofp.OFPET.BAD_REQUEST, ofp.OFPBRC.EPERM, raw)
            return
        for reply in replies or ():
            self.send(reply)
        if self.channels.on_handled is not None:
            self.channels.on_handled(msg)

    def _error(self, err_type: int, code: int, raw: bytes) -> None:
        log.debug("%r: answering %s", self, ofp.error_name(err_type, code))
        self.send(ofp.ErrorMsg.for_request(err_type, code, raw))

    def _role_request(self, msg: ofp.RoleRequest, raw: bytes) -> None:
        channels = self.channels
        role = msg.role
        if role not in (ofp.OFPCR.ROLE_NOCHANGE, ofp.OFPCR.ROLE_EQUAL, ofp.OFPCR.ROLE_MASTER,
                        ofp.OFPCR.ROLE_SLAVE):
            self._error(ofp.OFPET.ROLE_REQUEST_FAILED, ofp.OFPRRFC.BAD_ROLE, raw)
            return
        if role in (ofp.OFPCR.ROLE_MASTER, ofp.OFPCR.ROLE_SLAVE):
            cached = channels.generation_id
            if cached is not None and _stale(msg.generation_id, cached):
                log.info("%r: stale role request (generation %d < %d)", self, msg.generation_id, cached)
                self._error(ofp.OFPET.ROLE_REQUEST_FAILED, ofp.OFPRRFC.STALE, raw)
                return
            channels.generation_id = msg.generation_id
        if role != ofp.OFPCR.ROLE_NOCHANGE:
            if role == ofp.OFPCR.ROLE_MASTER:
                for other in channels.channels:
                    if other is not self and other.role == ofp.OFPCR.ROLE_MASTER:
                        other.role = ofp.OFPCR.ROLE_SLAVE
                        log.info("%r: now slave (%r became master)", other, self)
            if role != self.role:
                log.info("%r: role %s", self, ofp.OFPCR(role).name)
            self.role = role
        gen = channels.generation_id
        self.send(ofp.RoleReply(self.role, GENERATION_ID_UNSET if gen is None else gen, xid=msg.xid))


def _state_changing(msg: ofp.Message) -> bool:
    if msg.msg_type in _SLAVE_DENIED:
        return True
    # A TABLE_FEATURES request with a body sets the tables' features.
    return type(msg) is ofp.TableFeaturesRequest and bool(getattr(msg, "body", None))


class Channels:
    """Every channel of one switch, and the role state they share."""

    def __init__(self, datapath: Any, *, echo_interval: float = 5.0, echo_timeout: float | None = None,
                 min_backoff: float = 0.5, max_backoff: float = 8.0,
                 on_change: Callable[[], None] | None = None,
                 on_handled: Callable[[ofp.Message], None] | None = None, tls: Any = None) -> None:
        self.datapath = datapath
        #: kumoflow.tls.TlsContexts (client side) for ssl: controllers
        self.tls = tls
        self.echo_interval = echo_interval
        self.echo_timeout = echo_timeout if echo_timeout is not None else 3 * echo_interval
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        #: called when an active channel comes up or goes down (fail modes)
        self.on_change = on_change
        #: called with each message the datapath accepted (e.g. PORT_MOD -> the interface)
        self.on_handled = on_handled
        self.channels: list[Channel] = []
        #: the generation id of the last successful master/slave role request
        self.generation_id: int | None = None
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: set[asyncio.Task] = set()
        self._keepalive: asyncio.Task | None = None
        self._stopping = False

    # --- lifecycle -------------------------------------------------------------------

    def _start(self) -> None:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        if self._keepalive is None:
            self._keepalive = self.loop.create_task(self._keepalive_loop())

    def connect(self, target: str | Address) -> asyncio.Task:
        """Keep an active channel to `target` (tcp:HOST:PORT, or ssl:HOST:PORT with `tls`) up until close()."""
        addr = parse_address(target, default_host="127.0.0.1") if isinstance(target, str) else target
        if addr.scheme not in ("tcp", "ssl"):
            raise ValueError(f"controller {target!s}: expected tcp:HOST:PORT or ssl:HOST:PORT")
        if addr.scheme == "ssl" and self.tls is None:
            raise ValueError(f"controller {target!s}: ssl: needs a key, a certificate and a CA (--tls-*)")
        self._start()
        task = self.loop.create_task(self._connect_loop(addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def listen(self, target: str | Address) -> list[Address]:
        """Accept management clients on `target` (ptcp:PORT[:HOST]); returns the bound addresses."""
        self._start()
        addr = parse_address(target) if isinstance(target, str) else target
        if addr.scheme != "ptcp":
            raise ValueError(f"listener {target!s}: expected ptcp:PORT[:HOST]")
        server = await self.loop.create_server(lambda: Channel(self, False), addr.host, addr.port,
                                               reuse_address=True)
        self._servers.append(server)
        bound = []
        for sock in server.sockets:
            host, port = sock.getsockname()[:2]
            bound.append(Address("ptcp", host, port))
            log.info("listening for OpenFlow clients on ptcp:%d:%s", port, host)
        return bound

    async def close(self) -> None:
        self._stopping = True
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._keepalive is not None:
            self._keepalive.cancel()
        for channel in list(self.channels):
            channel.close()
        await asyncio.gather(*self._tasks, *([self._keepalive] if self._keepalive else []),
                             return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        # let connection_lost callbacks run
        await asyncio.sleep(0)

    async def _connect_loop(self, addr: Address) -> None:
        backoff = self.min_backoff
        target = f"{addr.scheme}:{addr.host}:{addr.port}"
        failures = 0
        while not self._stopping:
            try:
                tls: dict[str, Any] = {}
                if addr.scheme == "ssl":
                    from kumoflow.tls import HANDSHAKE_TIMEOUT
                    # the context of the files as they are now: a rotated certificate is used from the
                    # next attempt on; the controller's certificate must name addr.host (kumoflow.tls)
                    tls = {"ssl": self.tls.context(), "server_hostname": addr.host,
                           "ssl_handshake_timeout": HANDSHAKE_TIMEOUT}
                _, channel = await self.loop.create_connection(lambda: Channel(self, True, target),
                                                               addr.host, addr.port, **tls)
            except (OSError, ValueError, TimeoutError) as exc:
                failures += 1
                if failures == 1 or failures % 10 == 0:
                    from kumoflow.tls import refusal_reason
                    why = refusal_reason(exc) if addr.scheme == "ssl" else (exc.strerror or exc)
                    log.warning("controller %s: cannot connect (%s); retrying", target, why)
            else:
                failures = 0
                negotiated = await asyncio.shield(channel.done)
                if negotiated:
                    backoff = self.min_backoff
                log.info("controller %s: channel closed; reconnecting in %.1fs", target, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    # --- state -----------------------------------------------------------------------

    @property
    def controller_connected(self) -> bool:
        """Is an active (configured) controller channel up and negotiated?"""
        return any(c.active and c.negotiated for c in self.channels)

    def _opened(self, channel: Channel) -> None:
        self.channels.append(channel)
        log.debug("%r: connected", channel)

    def _negotiated(self, channel: Channel) -> None:
        if channel.active and self.on_change is not None:
            self.on_change()

    def _closed(self, channel: Channel, was_negotiated: bool, exc: Exception | None) -> None:
        if channel in self.channels:
            self.channels.remove(channel)
        log.info("%r: disconnected%s", channel, f" ({exc})" if exc else "")
        if channel.active and was_negotiated and self.on_change is not None:
            self.on_change()

    # --- asynchronous messages ---------------------------------------------------------

    def send_async(self, msg: ofp.Message) -> int:
        """Send an async message to every channel that wants it; returns how many got it."""
        kind = _ASYNC_KIND.get(type(msg))
        reason = getattr(msg, "reason", 0)
        data = None
        sent = 0
        droppable = kind == 0
        for channel in self.channels:
            if kind is None:
                if not channel.negotiated or channel.role == ofp.OFPCR.ROLE_SLAVE:
                    continue
            elif not channel.wants(kind, reason):
                continue
            if data is None:
                data = msg.pack()
            channel.send_async(data, droppable)
            sent += 1
        return sent

    # --- keepalive -----------------------------------------------------------------------

    async def _keepalive_loop(self) -> None:
        while True:
            await asyncio.sleep(min(self.echo_interval / 2, 1.0))
            now = self.loop.time()
            for channel in list(self.channels):
                idle = now - channel.last_seen
                if idle > self.echo_timeout:
                    log.warning("%r: nothing received for %.0fs; closing", channel, idle)
                    channel.close()
                    if channel.transport is not None:
                        channel.transport.abort()
                elif idle > self.echo_interval and channel.negotiated:
                    if now - channel.echo_sent_at >= self.echo_interval:
                        channel.echo_sent_at = now
                        channel.conn.send(ofp.EchoRequest())
                        channel._flush()


__all__ = ["Channel", "Channels", "GENERATION_ID_UNSET", "default_async"]
