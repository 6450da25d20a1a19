"""Switch ports: what the datapath needs from a port, and an in-memory port.

`PortBase` is the contract between the datapath and the runtime's ports
(AF_PACKET interfaces, :mod:`.linuxport`; VXLAN and NVGRE tunnel ports,
:mod:`.tunnelport`). A port has its OpenFlow description (number, name,
address, config, state, features, speeds), counters, a queue table, and
`send(frame)`. Frames reach a port only through :mod:`.egress`, the
switch's one way out.

Counting is split so nothing is counted twice:

- the datapath counts reception (`rx_packets`, `rx_bytes`, and
  `rx_dropped` for frames refused by NO_RECV / PORT_DOWN) in
  `Datapath.receive`, and output it refused (`tx_dropped` for a port that
  is down or NO_FWD);
- a port's `send` counts what it transmits (`count_tx`) or fails to
  transmit (`count_tx_dropped` / `tx_errors`), since only the port knows.

Egress queues (:mod:`.qos`): `set_qos` gives a port a rate and queues
with min / max rates; a port with any rate gets an egress scheduler
(`scheduler`), through which egress sends its frames. Without one
(`scheduler is None`, the default) frames go straight to `send`.

A tunnel port sets `tunnel = True`; egress then calls
`send_tunnel(frame, tunnel_id)` / `send_tunnel_many(frames, tunnel_id)`
instead of `send` / `send_many`, and the port passes the tunnel id of
received frames to `Datapath.receive(..., tunnel_id=...)` /
`Datapath.receive_batch(..., tunnel_id)`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from kumoflow import ofp
from kumoflow.ofp.consts import OFPPF

if TYPE_CHECKING:
    from .qos import EgressScheduler, PortQos

# Plain ints for the hot paths (IntFlag arithmetic is slow).
PC_PORT_DOWN, PC_NO_RECV, PC_NO_FWD, PC_NO_PACKET_IN = 1 << 0, 1 << 2, 1 << 5, 1 << 6
PS_LINK_DOWN, PS_BLOCKED, PS_LIVE = 1 << 0, 1 << 1, 1 << 2

#: OFPPC_NO_FLOOD (1 << 4): an OpenFlow 1.0 bit that 1.3 dropped; kumoflow,
#: like Open vSwitch, still honours it in PORT_MOD (FLOOD skips the port).
OFPPC_NO_FLOOD = 1 << 4
#: Config bits a PORT_MOD may set.
PORT_CONFIG_BITS = PC_PORT_DOWN | PC_NO_RECV | PC_NO_FWD | PC_NO_PACKET_IN | OFPPC_NO_FLOOD
#: State bits a port reports (OFPPS_LIVE is computed).
PORT_STATE_BITS = PS_LINK_DOWN | PS_BLOCKED | PS_LIVE


@dataclass(slots=True)
class PortCounters:
    rx_packets: int = 0
    tx_packets: int = 0
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_dropped: int = 0
    tx_dropped: int = 0
    rx_errors: int = 0
    tx_errors: int = 0
    rx_frame_err: int = 0
    rx_over_err: int = 0
    rx_crc_err: int = 0
    collisions: int = 0

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, 0)


@dataclass(slots=True)
class QueueCounters:
    tx_packets: int = 0
    tx_bytes: int = 0
    tx_errors: int = 0
    created: float = 0.0


def random_mac() -> str:
    """A locally administered unicast address."""
    raw = bytearray(os.urandom(6))
    raw[0] = (raw[0] & 0xFC) | 0x02
    return raw.hex(":")


class PortBase:
    """One OpenFlow port. Subclasses implement `send`.

    `config` holds OFPPC bits (PORT_MOD changes them through `set_config`,
    which a runtime port may override to act on the interface); `state`
    holds OFPPS bits the port observes (LINK_DOWN, BLOCKED); OFPPS_LIVE is
    added by `desc()` when the port can forward. `queues` maps queue id ->
    list of ofp queue properties (QueuePropMinRate / QueuePropMaxRate)
    reported as given, unless `set_qos` configured the queue's rates (then
    they are computed from the rates and the speed: `queue_config`);
    every port has the default queue 0.
    """

    tunnel = False

    def __init__(self, port_no: int, name: str = "", hw_addr: str | None = None, *,
                 config: int = 0, state: int = 0,
                 curr: int = int(OFPPF.F_10GB_FD | OFPPF.COPPER),
                 advertised: int = 0,
                 supported: int = int(OFPPF.F_10GB_FD | OFPPF.COPPER),
                 peer: int = 0, curr_speed: int = 10_000_000, max_speed: int = 10_000_000,
                 queues: dict[int, list] | None = None, clock=time.monotonic) -> None:
        if not 0 < port_no <= ofp.OFPP.MAX and port_no != ofp.OFPP.LOCAL:
            raise ValueError(f"port number {port_no:#x} is not a valid switch port")
        self.port_no = int(port_no)
        self.name = name or f"port{port_no}"
        self.hw_addr = (hw_addr or random_mac()).lower()
        self.config = int(config)
        self.state = int(state)
        self.curr = int(curr)
        self.advertised = int(advertised)
        self.supported = int(supported)
        self.peer = int(peer)
        self.curr_speed = int(curr_speed)
        self.max_speed = int(max_speed)
        self.counters = PortCounters()
        self.clock = clock
        self.created = clock()
        self.queues: dict[int, list] = {0: []} if queues is None else dict(queues)
        self.queue_counters: dict[int, QueueCounters] = {q: QueueCounters(created=self.created)
                                                         for q in self.queues}
        self.datapath = None       # set by Datapath.add_port
        #: the port's rates, None when set_qos was never called
        self.qos: PortQos | None = None
        #: the egress scheduler of a port with a rate, else None
        self.scheduler: EgressScheduler | None = None

    # -- what the datapath asks ------------------------------------------------
    @property
    def live(self) -> bool:
        """Up for forwarding: not administratively down, link up, not blocked."""
        return not (self.config & PC_PORT_DOWN or self.state & (PS_LINK_DOWN | PS_BLOCKED))

    def desc(self) -> ofp.Port:
        state = self.state & ~PS_LIVE
        if self.live:
            state |= PS_LIVE
        return ofp.Port(self.port_no, self.hw_addr, self.name, self.config, int(state), self.curr,
                        self.advertised, self.supported, self.peer, self.curr_speed, self.max_speed)

    def stats(self, now: float | None = None) -> ofp.PortStats:
        now = self.clock() if now is None else now
        c = self.counters
        sec, nsec = split_duration(now - self.created)
        return ofp.PortStats(self.port_no, c.rx_packets, c.tx_packets, c.rx_bytes, c.tx_bytes,
                             c.rx_dropped, c.tx_dropped, c.rx_errors, c.tx_errors, c.rx_frame_err,
                             c.rx_over_err, c.rx_crc_err, c.collisions, sec, nsec)

    def set_config(self, config: int) -> None:
        """Apply new OFPPC bits (PORT_MOD). Runtime ports may act on them."""
        self.config = int(config)

    def set_advertised(self, advertised: int) -> None:
        self.advertised = int(advertised)

    def add_queue(self, queue_id: int, properties: list | None = None) -> None:
        self.queues[queue_id] = list(properties or [])
        self.queue_counters.setdefault(queue_id, QueueCounters(created=self.clock()))

    def set_qos(self, qos: PortQos) -> None:
        """Configure the port rate and queue rates: every queue named is
        added; a port with any rate gets an egress scheduler."""
        from .qos import EgressScheduler

        for qid in qos.queues:
            self.add_queue(qid)
        self.qos = qos
        self.scheduler = EgressScheduler(self, qos) if qos.scheduled else None

    def queue_config(self) -> list[tuple[int, list]]:
        """(queue id, properties) of every queue, in id order, for QUEUE_GET_CONFIG:
        a queue with configured rates reports them against the port's speed
        (the port rate when the link reports none; :func:`.qos.rate_properties`)."""
        from .qos import rate_properties

        queues = sorted(self.queues.items())
        if self.qos is None:
            return [(qid, list(props)) for qid, props in queues]
        rated = self.qos.queues
        speed = self.curr_speed or self.qos.rate_kbps or 0
        return [(qid, rate_properties(rated[qid], speed) if qid in rated else list(props)) for qid, props in queues]

    # -- transmission ----------------------------------------------------------
    def send(self, frame: bytes) -> None:
        """Transmit one frame; count it with count_tx (or count_tx_dropped)."""
        raise NotImplementedError

    def send_many(self, frames: list) -> None:
        """Transmit frames in order (a batch from the fast path); ports with
        batched I/O override it."""
        for frame in frames:
            self.send(frame)

    def send_tunnel(self, frame: bytes, tunnel_id: int) -> None:
        """Transmit with the packet's tunnel id (ports with `tunnel = True`)."""
        self.send(frame)

    def send_tunnel_many(self, frames: list, tunnel_id: int) -> None:
        """Transmit frames in order, all with one tunnel id (`tunnel = True`)."""
        for frame in frames:
            self.send_tunnel(frame, tunnel_id)

    def count_tx(self, nbytes: int) -> None:
        c = self.counters
        c.tx_packets += 1
        c.tx_bytes += nbytes

    def count_tx_dropped(self) -> None:
        self.counters.tx_dropped += 1

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.port_no} {self.name} {self.hw_addr}>"


def split_duration(seconds: float) -> tuple[int, int]:
    """(sec, nsec) of a non-negative duration, as OpenFlow reports durations."""
    if seconds < 0:
        seconds = 0.0
    sec = int(seconds)
    nsec = int((seconds - sec) * 1e9)
    return sec, min(nsec, 999_999_999)


class MemoryPort(PortBase):
    """A port that keeps what it sends, for tests and in-process networks.

    `sent` is the list of frames transmitted (bytes). `peer_port` may be set
    to another MemoryPort's (datapath, port_no) delivery function: `wire`
    connects two ports so that what one sends the other receives.
    """

    def __init__(self, port_no: int, name: str = "", hw_addr: str | None = None, **kwargs) -> None:
        super().__init__(port_no, name, hw_addr, **kwargs)
        self.sent: list[bytes] = []
        self.deliver = None        # optional callable(frame) for a wired peer

    def send(self, frame: bytes) -> None:
        if self.state & PS_LINK_DOWN:
            self.count_tx_dropped()
            return
        self.sent.append(bytes(frame))
        self.count_tx(len(frame))
        if self.deliver is not None:
            self.deliver(bytes(frame))

    def set_link(self, up: bool) -> None:
        """Bring the link up or down, and tell the datapath (PORT_STATUS, liveness)."""
        if up:
            self.state &= ~PS_LINK_DOWN
        else:
            self.state |= PS_LINK_DOWN
        if self.datapath is not None:
            self.datapath.port_changed(self.port_no)

    def take(self) -> list[bytes]:
        """The frames sent since the last take()."""
        out, self.sent = self.sent, []
        return out


def wire(a: MemoryPort, b: MemoryPort) -> None:
    """Connect two attached MemoryPorts back to back."""
    def to(port: MemoryPort):
        def deliver(frame: bytes) -> None:
            if port.datapath is not None:
                port.datapath.receive(port.port_no, frame)
        return deliver
    a.deliver = to(b)
    b.deliver = to(a)
