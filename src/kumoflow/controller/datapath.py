"""One switch's session with the controller: an asyncio protocol around the
sans-IO `ofp.Connection`.

It performs the handshake (hello, features, port description), matches
replies to requests by xid (reassembling multipart replies), tracks ports,
routes errors to the app whose message caused them, and hands everything
else to the controller's dispatch. Nothing a switch sends can raise out of
here: undecodable messages are answered with an ERROR, and an internal
failure closes only this switch's channel.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from kumoflow import ofp

if TYPE_CHECKING:
    from .app import App
    from .runtime import Controller

log = logging.getLogger("kumoflow.controller")

# How many recently sent app messages are remembered for routing ERRORs.
SENT_MEMORY = 256
#: send_many writes to the transport after this many messages (tens of KB for
#: flow-mods: a few system calls per thousand messages)
SEND_MANY_BATCH = 256


class OpenFlowError(Exception):
    """The switch answered a request with an ERROR."""

    def __init__(self, error: ofp.ErrorMsg, request: ofp.Message | None) -> None:
        self.error = error
        self.request = request
        super().__init__(f"{ofp.error_name(error.type, error.code)} in reply to {type(request).__name__}")


class _Pending:
    __slots__ = ("future", "request", "parts")

    def __init__(self, future: asyncio.Future, request: ofp.Message) -> None:
        self.future = future
        self.request = request
        self.parts: list[ofp.Message] = []


class Datapath(asyncio.Protocol):
    def __init__(self, controller: "Controller") -> None:
        self.controller = controller
        self.conn = ofp.Connection()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.id: int | None = None
        self.features: ofp.FeaturesReply | None = None
        self.ports: dict[int, ofp.Port] = {}
        self.is_up = False
        self.closed = False
        self.last_seen = 0.0
        self._pending: dict[int, _Pending] = {}
        self._sent: OrderedDict[int, tuple["App", ofp.Message]] = OrderedDict()
        self._receiving = False

    def __repr__(self) -> str:
        return f"<Datapath {self.name} {self.peer}>"

    @property
    def name(self) -> str:
        return f"dpid={self.id:#x}" if self.id is not None else "dpid=?"

    # --- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.last_seen = asyncio.get_running_loop().time()
        self.controller.connection_opened(self)
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.last_seen = self.controller.loop.time()
        self._receiving = True
        try:
            for event in self.conn.receive_data(data):
                self._dispatch(event)
        except Exception:
            log.exception("%s: internal error handling switch data; closing its channel", self)
            self.close()
        finally:
            self._receiving = False
            self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(ConnectionError(f"{self.name}: channel closed"))
        self._pending.clear()
        self.controller.connection_closed(self, exc)

    # --- sending -------------------------------------------------------------------

    def send(self, msg: ofp.Message, origin: "App | None" = None) -> int:
        """Send a message (a fresh xid is assigned when msg.xid is 0). Returns the xid."""
        xid = self.conn.send(msg)
        if origin is not None:
            self._remember(xid, origin, msg)
        if not self._receiving:
            self._flush()
        return xid

    def _remember(self, xid: int, origin: "App", msg: ofp.Message) -> None:
        """Keep the last SENT_MEMORY messages an app sent, for routing ERRORs."""
        self._sent[xid] = (origin, msg)
        if len(self._sent) > SENT_MEMORY:
            self._sent.popitem(last=False)

    def send_many(self, msgs: list[ofp.Message], origin: "App | None" = None) -> None:
        """send() each message in turn. The encoded bytes go out every
        SEND_MANY_BATCH messages rather than all at the end, so the switch
        works on the first ones while the later ones are being encoded
        (inside a data_received callback, at its end as always). Only the
        last SENT_MEMORY messages are remembered for routing ERRORs, as
        send() would leave it: nothing can arrive in between."""
        receiving, self._receiving = self._receiving, True
        try:
            send = self.conn.send
            remember_from = len(msgs) - SENT_MEMORY if origin is not None else len(msgs)
            for i, msg in enumerate(msgs, 1):
                xid = send(msg)
                if i > remember_from:
                    self._remember(xid, origin, msg)
                if not i % SEND_MANY_BATCH and not receiving:
                    self._flush()
        finally:
            self._receiving = receiving
        if not receiving:
            self._flush()

    async def request(self, msg: ofp.Message, timeout: float | None = None) -> Any:
        """Send a request and wait for its reply (multipart parts merged into one).

        Raises OpenFlowError if the switch answers with an ERROR,
        asyncio.TimeoutError if nothing comes back in time.
        """
        future = self.controller.loop.create_future()
        xid = self.conn.next_xid()
        msg.xid = xid
        self._pending[xid] = _Pending(future, msg)
        self.send(msg)
        try:
            return await asyncio.wait_for(future, timeout or self.controller.request_timeout)
        finally:
            self._pending.pop(xid, None)

    async def barrier(self) -> None:
        await self.request(ofp.BarrierRequest())

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self._flush()
            self.transport.close()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # --- receiving -----------------------------------------------------------------

    def _dispatch(self, event: Any) -> None:
        pending = self._pending.get(event.xid) if isinstance(event, ofp.Message) else None
        if pending is not None and not isinstance(event, ofp.Hello):
            self._reply(pending, event)
            return
        kind = type(event)
        if kind is ofp.PacketIn:
            self.controller.dispatch_packet_in(self, event)
        elif kind is ofp.PortStatus:
            self._port_status(event)
        elif kind is ofp.FlowRemoved:
            self.controller.dispatch_flow_removed(self, event)
        elif kind is ofp.ErrorMsg:
            self._unsolicited_error(event)
        elif kind is ofp.Hello:
            self.controller.spawn(self._handshake(), self)
        elif kind is ofp.BadMessage:
            log.warning("%s: undecodable message from switch: %s", self, event.error)
            self.conn.reject(event)
        elif kind is ofp.ChannelClosed:
            log.warning("%s: closing channel: %s", self, event.reason)
            self.close()
        elif kind is not ofp.EchoReply:
            log.debug("%s: unsolicited %s", self, kind.__name__)

    def _reply(self, pending: _Pending, msg: ofp.Message) -> None:
        if pending.future.done():
            return
        if isinstance(msg, ofp.ErrorMsg):
            pending.future.set_exception(OpenFlowError(msg, pending.request))
            return
        if isinstance(msg, ofp.MultipartReply) and msg.flags & ofp.OFPMPF.REPLY_MORE:
            pending.parts.append(msg)
            return
        if pending.parts:
            msg = _merge_multipart(pending.parts + [msg])
        pending.future.set_result(msg)

    def _port_status(self, msg: ofp.PortStatus) -> None:
        if msg.reason == ofp.OFPPR.DELETE:
            self.ports.pop(msg.desc.port_no, None)
        else:
            self.ports[msg.desc.port_no] = msg.desc
        if self.is_up:
            self.controller.dispatch(self, "port_status", msg)

    def _unsolicited_error(self, msg: ofp.ErrorMsg) -> None:
        origin, request = self._sent.pop(msg.xid, (None, None))
        if request is None:
            request = _decode_quietly(msg.data)
        log.warning("%s: switch reported %s for %s", self, ofp.error_name(msg.type, msg.code),
                    str(request) if request is not None else f"xid {msg.xid} ({msg.data[:64].hex()})")
        if origin is not None:
            self.controller.call(origin, "error", self, msg, request)

    async def _handshake(self) -> None:
        try:
            self.features = await self.request(ofp.FeaturesRequest())
            self.id = self.features.datapath_id
            ports = await self.request(ofp.PortDescRequest())
            self.ports = {p.port_no: p for p in ports.body}
        except (asyncio.TimeoutError, OpenFlowError, ConnectionError) as exc:
            log.warning("%s: handshake failed: %s", self, exc or "timeout")
            self.close()
            return
        await self.controller.switch_up(self)


def _merge_multipart(parts: list[ofp.Message]) -> ofp.Message:
    """One reply whose body is every part's body, in order."""
    first = parts[0]
    if hasattr(first, "body") and isinstance(first.body, list):
        return dataclasses.replace(first, body=[item for part in parts for item in part.body], flags=0)
    return parts[-1]


def _decode_quietly(data: bytes) -> ofp.Message | None:
    try:
        return ofp.parse(data)
    except ofp.CodecError:
        return None
