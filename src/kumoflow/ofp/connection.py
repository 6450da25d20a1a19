"""A sans-IO OpenFlow channel: bytes in, messages out; messages in, bytes out.

The same class serves the controller end and the switch end. The I/O layer
feeds whatever it read to `receive_data` (any chunking), acts on the events
returned, and writes `data_to_send()` to the socket.

    conn = Connection()
    sock.send(conn.data_to_send())          # our HELLO, queued at creation
    for event in conn.receive_data(sock.recv(65536)):
        ...
    sock.send(conn.data_to_send())

Version negotiation follows section 6.3.1 of the specification: each side
sends HELLO; with version bitmaps on both sides the highest common version
wins, otherwise the lower of the two header versions. kumoflow speaks 1.3
only, so anything else ends the channel with HELLO_FAILED/INCOMPATIBLE.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Message, parse
from .consts import OFP_VERSION, OFPT
from .errors import OFPET, OFPHFC, CodecError
from .messages import EchoReply, EchoRequest, ErrorMsg, Hello

SUPPORTED_VERSIONS = frozenset({OFP_VERSION})


@dataclass(slots=True)
class BadMessage:
    """A framed message that did not decode. Answer it with `conn.reject(event)`."""

    data: bytes
    error: CodecError


@dataclass(slots=True)
class ChannelClosed:
    """The channel cannot go on (failed negotiation, broken framing)."""

    reason: str


class Connection:
    def __init__(self, versions: frozenset[int] = SUPPORTED_VERSIONS, auto_echo: bool = True,
                 first_xid: int = 1) -> None:
        self.versions = versions
        self.auto_echo = auto_echo
        self.version: int | None = None       # negotiated version, once known
        self.closed = False
        self._pending = b""
        self._out: list[bytes] = []
        self._xid = first_xid - 1
        self._out.append(Hello(versions, max(versions), xid=self.next_xid()).pack())

    @property
    def negotiated(self) -> bool:
        return self.version is not None

    def next_xid(self) -> int:
        """A fresh transaction id (never 0)."""
        self._xid = self._xid % 0xFFFFFFFF + 1
        return self._xid

    # --- outgoing -------------------------------------------------------------

    def send(self, msg: Message) -> int:
        """Queue a message; gives it a fresh xid when its xid is 0. Returns the xid."""
        if msg.xid == 0:
            msg.xid = self.next_xid()
        self._out.append(msg.pack())
        return msg.xid

    def send_raw(self, data: bytes) -> None:
        self._out.append(bytes(data))

    def reject(self, bad: BadMessage) -> None:
        """Answer an undecodable message with the ERROR the spec names."""
        self._out.append(ErrorMsg.for_request(bad.error.type, bad.error.code, bad.data).pack())

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    # --- incoming -------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Message | BadMessage | ChannelClosed]:
        if self.closed:
            return []
        buf = self._pending + data if self._pending else bytes(data)
        events: list[Message | BadMessage | ChannelClosed] = []
        o, n = 0, len(buf)
        while n - o >= 4 and not self.closed:
            length = buf[o + 2] << 8 | buf[o + 3]
            if length < 8:
                events.append(self._close(f"header length {length} at stream byte {o}: framing lost"))
                break
            if n - o < length:
                break
            raw = buf if (o == 0 and length == n) else buf[o:o + length]
            o += length
            self._receive_one(raw, events)
        self._pending = buf[o:]
        return events

    def _receive_one(self, raw: bytes, events: list) -> None:
        if self.version is None:
            self._negotiate(raw, events)
            return
        try:
            msg = parse(raw)
        except CodecError as exc:
            events.append(BadMessage(raw, exc))
            return
        if self.auto_echo and type(msg) is EchoRequest:
            self._out.append(EchoReply(msg.data, xid=msg.xid).pack())
            return
        events.append(msg)

    def _negotiate(self, raw: bytes, events: list) -> None:
        if raw[1] != OFPT.HELLO:
            self._fail(raw[0], "expected HELLO first, got message type %d" % raw[1], OFPHFC.EPERM, events)
            return
        try:
            hello = parse(raw)
        except CodecError as exc:
            events.append(BadMessage(raw, exc))
            self._fail(raw[0], f"undecodable HELLO: {exc}", OFPHFC.INCOMPATIBLE, events)
            return
        assert isinstance(hello, Hello)
        if hello.versions is not None:
            common = self.versions & hello.versions
            version = max(common) if common else None
        else:
            version = min(max(self.versions), hello.version)
            version = version if version in self.versions else None
        if version is None:
            peer = sorted(hello.versions) if hello.versions is not None else [hello.version]
            self._fail(min(hello.version, max(self.versions)),
                       f"no common OpenFlow version: we support {sorted(self.versions)}, peer {peer}",
                       OFPHFC.INCOMPATIBLE, events)
            return
        self.version = version
        events.append(hello)

    def _fail(self, version: int, reason: str, code: int, events: list) -> None:
        # Sent in the peer's (lower) version so an older peer can read it.
        err = ErrorMsg(OFPET.HELLO_FAILED, code, reason.encode(), xid=self.next_xid()).pack()
        self._out.append(bytes((version,)) + err[1:])
        events.append(self._close(reason))

    def _close(self, reason: str) -> ChannelClosed:
        self.closed = True
        return ChannelClosed(reason)


__all__ = ["BadMessage", "ChannelClosed", "Connection", "SUPPORTED_VERSIONS"]
