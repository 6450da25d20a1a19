"""A whole network in memory: the controller core joined to real switch
datapaths (kumoflow.switch.datapath) through bytes, links between switch
ports, and hosts that send and receive frames. No sockets, no asyncio, a
fake clock: tests assert where packets go, with which headers.

    net = MemNet([Fabric()])
    s1, s2 = net.switch(1, ports=3), net.switch(2, ports=3)
    net.link(s1, 1, s2, 1)
    h1, h2 = net.host("h1", s1, 2), net.host("h2", s2, 2)
    net.start()                    # connect every switch, run until quiet
    net.advance(5)                 # let the clock run: LLDP, settle, audits
    h1.send(frame); net.run()
    assert h2.received ...
"""

from __future__ import annotations

from collections import deque

from kumoflow import ofp
from kumoflow.controller import Core
from kumoflow.switch.datapath import Datapath as SwitchDatapath
from kumoflow.switch.errors import SwitchError
from kumoflow.switch.port import MemoryPort
from kumoflow.tunnels import port_name


def _mac(first: int, dpid: int, port: int) -> str:
    """first:00:00:00:dpid:port for small numbers; else the low 24 bits of
    the dpid and 16 of the port."""
    if dpid <= 0xFF and port <= 0xFF:
        return f"{first:02x}:00:00:00:{dpid:02x}:{port:02x}"
    return ":".join(f"{b:02x}" for b in (first << 40 | (dpid & 0xFFFFFF) << 16 | port & 0xFFFF).to_bytes(6, "big"))


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class MemSwitch:
    """A switch datapath with an OpenFlow channel that speaks bytes."""

    def __init__(self, net: "MemNet", dpid: int, ports: int) -> None:
        self.net = net
        self.dpid = dpid
        self.conn: ofp.Connection | None = None
        self.session = None         # the controller's Datapath for this switch
        self.dp = SwitchDatapath(dpid=dpid, n_tables=64, n_buffers=0, clock=net.clock)
        self.dp.on_async = self._async
        self.ports: dict[int, MemoryPort] = {}
        for n in range(1, ports + 1):
            port = MemoryPort(n, f"s{dpid}-eth{n}", _mac(0x0A, dpid, n))
            self.dp.add_port(port)
            self.ports[n] = port
        self.received: list[ofp.Message] = []   # what the controller sent, decoded

    def connect(self) -> None:
        self.conn = ofp.Connection()
        session = self.net.core.connect(f"mem:{self.dpid}")
        self.session = session
        session.write = lambda data: self.net.queue.append((self._from_controller, data))
        session.on_close = lambda: self.net.queue.append((self._closed, session))
        self._to_controller()

    def disconnect(self) -> None:
        """The channel drops (the switch keeps its flows)."""
        session, self.session, self.conn = self.session, None, None
        if session is not None:
            session.connection_lost(ConnectionResetError("unplugged"))

    def _closed(self, session) -> None:
        if session is self.session:
            self.disconnect()

    def _from_controller(self, data: bytes) -> None:
        if self.conn is None:
            return
        for event in self.conn.receive_data(data):
            if isinstance(event, (ofp.Hello, ofp.BadMessage, ofp.ChannelClosed)):
                continue
            self.received.append(event)
            if isinstance(event, (ofp.SetAsync, ofp.GetAsyncRequest)):
                continue    # the switch's channel answers these (switch/channel.py); memory has no channel
            try:
                for reply in self.dp.handle(event):
                    self.conn.send(reply)
            except SwitchError as err:
                self.conn.send(ofp.ErrorMsg.for_request(err.type, err.code, event.pack()[:64], xid=event.xid))
        self._to_controller()

    def _async(self, msg: ofp.Message) -> None:
        if self.conn is not None and self.conn.negotiated:
            self.conn.send(msg)
            self._to_controller()

    def _to_controller(self) -> None:
        data = self.conn.data_to_send() if self.conn is not None else b""
        if data:
            session = self.session
            self.net.queue.append((lambda d: session.receive_data(d) if session is self.session else None, data))

    def flows(self, table: int | None = None):
        """The flow stats (ofp.FlowStats) of every flow entry, or of one table's."""
        reply = self.dp.handle(ofp.FlowStatsRequest(table_id=ofp.OFPTT.ALL if table is None else table))
        return [f for part in reply for f in part.body]

    def groups(self) -> dict:
        """group id -> ofp.GroupDesc of every group the switch holds."""
        return {g.group_id: g for part in self.dp.handle(ofp.GroupDescRequest()) for g in part.body}

    def mods(self) -> list:
        """The FLOW_MOD, GROUP_MOD and METER_MOD messages received from the controller."""
        return [m for m in self.received if isinstance(m, (ofp.FlowMod, ofp.GroupMod, ofp.MeterMod))]


class MemTunnelPort(MemoryPort):
    """A VXLAN or NVGRE port in memory: what it sends arrives at the peer's port
    with the tunnel id the header can carry (24 bits of VNI, or the 32-bit GRE key)."""
    tunnel = True

    def __init__(self, port_no: int, kind: str, remote: str) -> None:
        super().__init__(port_no, port_name(kind, remote), _mac(0x0E, 0, port_no))
        self.kind = kind
        self.sent_ids: list[int] = []
        self.far_end = None     # (switch datapath, port number)

    def send_tunnel(self, frame: bytes, tunnel_id: int) -> None:
        tunnel_id &= 0xFFFFFF if self.kind == "vxlan" else 0xFFFFFFFF
        self.sent_ids.append(tunnel_id)
        self.send(frame)
        if self.far_end is not None:
            dp, port_no = self.far_end
            self.deliver_to(lambda f: dp.receive(port_no, f, tunnel_id=tunnel_id), frame)


class MemHost:
    def __init__(self, net: "MemNet", name: str, mac: str) -> None:
        self.net, self.name, self.mac = net, name, mac
        self.received: list[bytes] = []
        self.switch: MemSwitch | None = None
        self.port_no = 0

    def send(self, frame: bytes) -> None:
        switch, port = self.switch, self.port_no
        self.net.queue.append((lambda f: switch.dp.receive(port, f), frame))


class MemNet:
    def __init__(self, apps, **options) -> None:
        self.clock = Clock()
        options.setdefault("settle", 2.0)
        options.setdefault("audit_interval", 30.0)
        self.options = dict(options)
        self.core = Core(apps, clock=self.clock, **options)
        self.switches: dict[int, MemSwitch] = {}
        self.hosts: dict[str, MemHost] = {}
        self.queue: deque = deque()

    def switch(self, dpid: int, ports: int = 4) -> MemSwitch:
        s = self.switches[dpid] = MemSwitch(self, dpid, ports)
        return s

    def link(self, a: MemSwitch, a_port: int, b: MemSwitch, b_port: int) -> None:
        pa, pb = a.ports[a_port], b.ports[b_port]
        pa.deliver = lambda f: self.queue.append((lambda f: b.dp.receive(b_port, f), f))
        pb.deliver = lambda f: self.queue.append((lambda f: a.dp.receive(a_port, f), f))

    def tunnel(self, a: MemSwitch, b: MemSwitch, kind: str = "vxlan") -> tuple[int, int]:
        """A tunnel port on each switch to the other, numbered 100 + the peer's dpid; a
        switch's endpoint address is 10.255.0.<dpid>. Before start(). -> the two port numbers."""
        pa = MemTunnelPort(100 + b.dpid, kind, f"10.255.0.{b.dpid}")
        pb = MemTunnelPort(100 + a.dpid, kind, f"10.255.0.{a.dpid}")
        a.dp.add_port(pa)
        b.dp.add_port(pb)
        a.ports[pa.port_no], b.ports[pb.port_no] = pa, pb
        pa.far_end, pb.far_end = (b.dp, pb.port_no), (a.dp, pa.port_no)
        pa.deliver_to = pb.deliver_to = lambda fn, frame: self.queue.append((fn, frame))
        return pa.port_no, pb.port_no

    def host(self, name: str, switch: MemSwitch, port: int, mac: str | None = None) -> MemHost:
        h = MemHost(self, name, mac or _mac(0x00, switch.dpid, port))
        self.attach(h, switch, port)
        self.hosts[name] = h
        return h

    def attach(self, host: MemHost, switch: MemSwitch, port: int) -> None:
        if host.switch is not None:
            host.switch.ports[host.port_no].deliver = None
        host.switch, host.port_no = switch, port
        switch.ports[port].deliver = host.received.append

    def unlink(self, a: MemSwitch, a_port: int, b: MemSwitch, b_port: int) -> None:
        """The cable stops carrying frames, both ways, with no carrier change."""
        a.ports[a_port].deliver = b.ports[b_port].deliver = None

    def set_link(self, switch: MemSwitch, port: int, up: bool) -> None:
        """Carrier up/down on a port (and on its peer, as with a veth pair)."""
        switch.ports[port].set_link(up)
        self.run()

    def start(self) -> None:
        self.core.start()
        for s in self.switches.values():
            s.connect()
        self.run()

    def restart_controller(self, apps, reconnect=None, **options) -> Core:
        """The controller dies without a word and a new one (a fresh Core with
        `apps`) takes over the same switches (or those in `reconnect`), which
        keep their flows. Each switch's `received` starts empty again."""
        self.run()
        for s in self.switches.values():
            s.session, s.conn = None, None
            s.received.clear()
        self.core = Core(apps, clock=self.clock, **{**self.options, **options})
        self.core.start()
        for s in (self.switches.values() if reconnect is None else reconnect):
            s.connect()
        self.run()
        return self.core

    def run(self, limit: int = 1_000_000) -> int:
        """Deliver everything queued (and what that causes) until quiet."""
        n = 0
        while self.queue:
            fn, data = self.queue.popleft()
            fn(data)
            n += 1
            if n > limit:
                raise AssertionError("the network did not go quiet (a loop or a storm?)")
        return n

    def advance(self, seconds: float, step: float = 0.1) -> None:
        """Let time pass in steps, running the controller's and switches' timers."""
        end = self.clock.t + seconds
        while self.clock.t < end - 1e-9:
            self.clock.t = min(end, self.clock.t + step)
            self.core.tick()
            for s in self.switches.values():
                s.dp.tick()
            self.run()
