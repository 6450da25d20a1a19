"""One switch's session with the controller, sans-IO: bytes in, bytes out.

It performs the handshake (hello, features, port description), matches
replies to requests by xid (reassembling multipart replies), expires
requests that get no answer, tracks ports, routes errors to whoever sent
the message that caused them, and hands everything else to the core.
Nothing a switch sends can raise out of here: undecodable messages are
answered with an ERROR, and an internal failure closes only this
switch's channel.

The I/O layer (runtime.py, or a test joining the core to a switch in
memory) sets ``write`` (called with bytes to send) and ``on_close``,
feeds what it reads to `receive_data`, and calls `connection_lost`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Iterable

from kumoflow import ofp

if TYPE_CHECKING:
    from .core import Core

log = logging.getLogger("kumoflow.controller")

#: how many recently sent messages are remembered for routing ERRORs
SENT_MEMORY = 4096
#: send_many hands bytes to the transport after this many messages
SEND_MANY_BATCH = 256

Reply = Callable[[Any], None]    # called with the reply message or an exception


class OpenFlowError(Exception):
    """The switch answered a request with an ERROR."""

    def __init__(self, error: ofp.ErrorMsg, request: ofp.Message | None) -> None:
        self.error = error
        self.request = request
        super().__init__(f"{ofp.error_name(error.type, error.code)} in reply to {type(request).__name__}")


class UndecodableReply(Exception):
    """The switch answered a request with bytes that do not decode."""

    def __init__(self, error: Exception, request: ofp.Message) -> None:
        self.request = request
        super().__init__(f"undecodable reply to {type(request).__name__}: {error}")


class _Pending:
    __slots__ = ("on_reply", "request", "parts")

    def __init__(self, on_reply: Reply, request: ofp.Message) -> None:
        self.on_reply = on_reply
        self.request = request
        self.parts: list[ofp.Message] = []


class Datapath:
    def __init__(self, core: "Core", peer: str = "?") -> None:
        self.core = core
        self.conn = ofp.Connection()
        self.peer = peer
        self.id: int | None = None
        self.features: ofp.FeaturesReply | None = None
        self.ports: dict[int, ofp.Port] = {}
        self.is_up = False
        self.up_since = 0.0
        self.settled = False      # past the settle time: reconciled in full
        self.closed = False
        self.last_seen = core.now()
        self.write: Callable[[bytes], None] | None = None
        self.on_close: Callable[[], None] | None = None
        self.packet_ins = 0       # PACKET_INs received
        self.sent_by_type: dict[type, int] = {}   # messages sent, by class (FlowMod: the flow-mods)
        self._pending: dict[int, _Pending] = {}
        self._sent: OrderedDict[int, tuple[Any, ofp.Message]] = OrderedDict()
        self._lost = False

    def __repr__(self) -> str:
        return f"<Datapath {self.name} {self.peer}>"

    @property
    def name(self) -> str:
        return f"dpid={self.id:#x}" if self.id is not None else "dpid=?"

    # --- bytes in ------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        self.last_seen = self.core.now()
        with self.core.batch():
            try:
                for event in self.conn.receive_data(data):
                    self._dispatch(event)
            except Exception:
                log.exception("%s: internal error handling switch data; closing its channel", self)
                self.close()

    def connection_lost(self, exc: Exception | None = None) -> None:
        if self._lost:
            return
        self._lost = self.closed = True
        with self.core.batch():
            pending, self._pending = self._pending, {}
            for p in pending.values():
                self._answer(p, ConnectionError(f"{self.name}: channel closed"))
            self.core.connection_closed(self, exc)

    # --- bytes out -----------------------------------------------------------------

    def send(self, msg: ofp.Message, origin: Any = None) -> int:
        """Queue a message (a fresh xid when msg.xid is 0). Returns the xid.
        `origin` (an app, or a callable taking the ERROR) hears an ERROR it causes."""
        xid = self.conn.send(msg)
        counts = self.sent_by_type
        kind = ofp.FlowMod if isinstance(msg, ofp.FlowMod) else type(msg)   # a flow's pre-packed one too (flows.py)
        counts[kind] = counts.get(kind, 0) + 1
        if origin is not None:
            self._sent[xid] = (origin, msg)
            if len(self._sent) > SENT_MEMORY:
                self._sent.popitem(last=False)
        self.core.wrote(self)
        return xid

    def send_many(self, msgs: list[ofp.Message], origin: Any = None) -> None:
        """send() each message; the bytes go out every SEND_MANY_BATCH messages,
        so the switch works on the first ones while the rest are encoded."""
        with self.core.batch():
            for i, msg in enumerate(msgs, 1):
                self.send(msg, origin)
                if not i % SEND_MANY_BATCH:
                    self.flush()

    def flush(self) -> None:
        if self.write is None or self.closed:
            return     # not wired yet (bytes stay queued), or gone
        data = self.conn.data_to_send()
        if data:
            self.write(data)

    def expect(self, msg: ofp.Message, on_reply: Reply, timeout: float | None = None) -> int:
        """Send a request; `on_reply` gets the reply (multipart parts merged),
        an OpenFlowError, a TimeoutError or a ConnectionError."""
        if self.closed:
            on_reply(ConnectionError(f"{self.name}: channel closed"))
            return 0
        xid = msg.xid = self.conn.next_xid()
        self._pending[xid] = _Pending(on_reply, msg)
        self.core.call_later(timeout or self.core.request_timeout, lambda: self._expire(xid))
        return self.send(msg)

    def _expire(self, xid: int) -> None:
        pending = self._pending.pop(xid, None)
        if pending is not None:
            self._answer(pending, TimeoutError(f"{self.name}: no reply to {type(pending.request).__name__}"))

    async def request(self, msg: ofp.Message, timeout: float | None = None) -> Any:
        """`expect` for coroutines: returns the reply or raises OpenFlowError,
        asyncio.TimeoutError or ConnectionError."""
        future = asyncio.get_running_loop().create_future()

        def settle(reply: Any) -> None:
            if not future.done():
                if isinstance(reply, TimeoutError):
                    future.set_exception(asyncio.TimeoutError(str(reply)))
                elif isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)

        self.expect(msg, settle, timeout)
        self.flush()
        return await future

    async def barrier(self) -> None:
        await self.request(ofp.BarrierRequest())

    def close(self) -> None:
        if not self.closed:
            self.flush()
            self.closed = True
            if self.on_close is not None:
                self.on_close()

    # --- receiving -----------------------------------------------------------------

    def _dispatch(self, event: Any) -> None:
        pending = self._pending.get(event.xid) if isinstance(event, ofp.Message) else None
        if pending is not None and not isinstance(event, ofp.Hello):
            self._reply(event.xid, pending, event)
            return
        kind = type(event)
        if kind is ofp.PacketIn:
            self.packet_ins += 1
            if self.is_up:
                self.core.packet_in(self, event)
        elif kind is ofp.PortStatus:
            self._port_status(event)
        elif kind is ofp.FlowRemoved:
            if self.is_up:
                self.core.flow_removed(self, event)
        elif kind is ofp.ErrorMsg:
            self._unsolicited_error(event)
        elif kind is ofp.Hello:
            self._handshake()
        elif kind is ofp.BadMessage:
            log.warning("%s: undecodable message from switch: %s", self, event.error)
            self.conn.reject(event)
            self.core.wrote(self)
            xid = int.from_bytes(event.data[4:8], "big") if len(event.data) >= 8 else None
            pending = self._pending.pop(xid, None)
            if pending is not None:    # a reply we cannot read: fail the request now, not at its timeout
                self._answer(pending, UndecodableReply(event.error, pending.request))
        elif kind is ofp.ChannelClosed:
            log.warning("%s: closing channel: %s", self, event.reason)
            self.close()
        elif kind is not ofp.EchoReply:
            log.debug("%s: unsolicited %s", self, kind.__name__)

    def _reply(self, xid: int, pending: _Pending, msg: ofp.Message) -> None:
        if isinstance(msg, ofp.ErrorMsg):
            del self._pending[xid]
            self._answer(pending, OpenFlowError(msg, pending.request))
        elif isinstance(msg, ofp.MultipartReply) and msg.flags & ofp.OFPMPF.REPLY_MORE:
            pending.parts.append(msg)
        else:
            del self._pending[xid]
            self._answer(pending, _merge_multipart(pending.parts + [msg]) if pending.parts else msg)

    def _answer(self, pending: _Pending, reply: Any) -> None:
        try:
            pending.on_reply(reply)
        except Exception:
            log.exception("%s: failure handling the reply to %s", self, type(pending.request).__name__)

    def _port_status(self, msg: ofp.PortStatus) -> None:
        if msg.reason == ofp.OFPPR.DELETE:
            self.ports.pop(msg.desc.port_no, None)
        else:
            self.ports[msg.desc.port_no] = msg.desc
        if self.is_up:
            self.core.port_status(self, msg)

    def _unsolicited_error(self, msg: ofp.ErrorMsg) -> None:
        origin, request = self._sent.pop(msg.xid, (None, None))
        if request is None:
            request = _decode_quietly(msg.data)
        log.warning("%s: switch reported %s for %s", self, ofp.error_name(msg.type, msg.code),
                    str(request) if request is not None else f"xid {msg.xid} ({msg.data[:64].hex()})")
        if origin is not None:
            self.core.error(self, origin, msg, request)

    def _handshake(self) -> None:
        def ports(reply: Any) -> None:
            if isinstance(reply, Exception):
                return self._handshake_failed(reply)
            self.ports = {p.port_no: p for p in reply.body}
            self.core.switch_connected(self)

        def features(reply: Any) -> None:
            if isinstance(reply, Exception):
                return self._handshake_failed(reply)
            self.features = reply
            self.id = reply.datapath_id
            self.expect(ofp.PortDescRequest(), ports)

        self.expect(ofp.FeaturesRequest(), features)

    def _handshake_failed(self, exc: Exception) -> None:
        log.warning("%s: handshake failed: %s", self, exc)
        self.close()


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


def parse_dpid(ident: str) -> int | None:
    """A datapath id in any spelling (``0x1a``, ``000000000000001a``, ``00:00:...:1a``,
    ``dpid:...``, decimal ``26``), or None."""
    text = ident.strip().lower().removeprefix("dpid:")
    try:
        if text.startswith("0x"):
            dpid = int(text, 16)
        elif ":" in text or len(text) == 16:
            dpid = int(text.replace(":", ""), 16)
        elif text.isdigit():
            dpid = int(text)
        else:
            return None
    except ValueError:
        return None
    return dpid if 0 <= dpid < 1 << 64 else None


def local_name(dp: Datapath) -> str | None:
    """The name of the switch's LOCAL port (an Open vSwitch bridge's name), if it has one."""
    local = dp.ports.get(ofp.OFPP.LOCAL)
    return local.name if local is not None and local.name else None


def named_switch(datapaths: Iterable[Datapath], ident: str, name_of: Callable[[Datapath], str | None] = local_name,
                 suffix: bool = True) -> Datapath | None:
    """The switch up that `ident` names, or None (none, or more than one).

    In this order: a switch whose name (`name_of`) is `ident`; the one switch whose name ends in
    ``-ident`` (the emulator's ``s1`` for its ``<topology>-s1``); the switch with that datapath id.
    Names come first, as for Open vSwitch; a kumoflow switch's name cannot look like a datapath
    id. `suffix` False: exact names and datapath ids only."""
    up = [dp for dp in datapaths if dp.is_up]
    names = [(dp, name_of(dp)) for dp in up]
    exact = [dp for dp, name in names if name == ident]
    if exact:
        return exact[0] if len(exact) == 1 else None
    suffixed = [dp for dp, name in names if suffix and name is not None and name.endswith("-" + ident)]
    if suffixed:
        return suffixed[0] if len(suffixed) == 1 else None
    dpid = parse_dpid(ident)
    return next((dp for dp in up if dp.id == dpid), None) if dpid is not None else None
