"""Packet buffers for packet-in (section 7.4.1).

A packet sent to the controller with a max_len (not OFPCML_NO_BUFFER) is
kept here under a buffer id; a packet-out or flow-mod naming that id uses
it once. Buffers expire after `timeout` seconds. Ids carry a sequence
number above the slot so a stale id is told apart from a live one:

- an id handed out and since used or expired -> OFPBRC_BUFFER_EMPTY
- an id never handed out (or long forgotten) -> OFPBRC_BUFFER_UNKNOWN
"""

from __future__ import annotations

from collections import OrderedDict, deque

from kumoflow.ofp.consts import OFP_NO_BUFFER
from kumoflow.ofp.errors import OFPBRC, OFPET

from .errors import SwitchError

DEFAULT_TIMEOUT = 5.0


class Buffered:
    __slots__ = ("buffer_id", "data", "in_port", "in_phy_port", "tunnel_id", "stored")

    def __init__(self, buffer_id: int, data: bytes, in_port: int, in_phy_port: int, tunnel_id: int,
                 stored: float) -> None:
        self.buffer_id = buffer_id
        self.data = data
        self.in_port = in_port
        self.in_phy_port = in_phy_port
        self.tunnel_id = tunnel_id
        self.stored = stored


class PacketBuffers:
    def __init__(self, n_buffers: int, clock, timeout: float = DEFAULT_TIMEOUT) -> None:
        if not 0 <= n_buffers <= 0x10000:
            raise ValueError("n_buffers must be 0..65536")
        self.n = n_buffers
        self.clock = clock
        self.timeout = timeout
        self._slots: list[Buffered | None] = [None] * n_buffers
        self._free = deque(range(n_buffers))
        self._seq = 0
        self._gone: OrderedDict[int, None] = OrderedDict()   # ids used or expired, recent first out

    def __len__(self) -> int:
        return self.n - len(self._free)

    def store(self, data: bytes, in_port: int, in_phy_port: int, tunnel_id: int = 0) -> int:
        """Keep a packet; its buffer id, or OFP_NO_BUFFER when all are busy."""
        if not self._free:
            self.expire()
            if not self._free:
                return OFP_NO_BUFFER
        slot = self._free.popleft()
        self._seq = (self._seq + 1) & 0x7FFF
        buffer_id = self._seq << 16 | slot
        self._slots[slot] = Buffered(buffer_id, bytes(data), in_port, in_phy_port, tunnel_id, self.clock())
        return buffer_id

    def take(self, buffer_id: int) -> Buffered:
        """Use a buffer (once); SwitchError BUFFER_EMPTY / BUFFER_UNKNOWN if it is not there."""
        slot = buffer_id & 0xFFFF
        if slot < self.n:
            b = self._slots[slot]
            if b is not None and b.buffer_id == buffer_id:
                if self.clock() - b.stored <= self.timeout:
                    self._release(slot)
                    return b
                self._release(slot)
        if buffer_id in self._gone:
            raise SwitchError(OFPET.BAD_REQUEST, OFPBRC.BUFFER_EMPTY,
                              f"buffer {buffer_id:#x} was already used or expired")
        raise SwitchError(OFPET.BAD_REQUEST, OFPBRC.BUFFER_UNKNOWN, f"no buffer {buffer_id:#x}")

    def _release(self, slot: int) -> None:
        b = self._slots[slot]
        if b is None:
            return
        self._slots[slot] = None
        self._free.append(slot)
        self._gone[b.buffer_id] = None
        while len(self._gone) > 4 * max(self.n, 16):
            self._gone.popitem(last=False)

    def expire(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        for slot, b in enumerate(self._slots):
            if b is not None and now - b.stored > self.timeout:
                self._release(slot)
