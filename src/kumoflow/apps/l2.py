"""`l2`: the MAC-learning switch.

The classic exchange: the table-miss entry sends packets to the controller;
the controller learns source MAC -> in-port, and for a known destination
installs a flow (in_port, eth_src, eth_dst -> output) with an idle timeout
plus a packet-out for the packet in hand (or, when the switch buffered it,
a flow-mod that carries the buffer id and so releases it); unknown and
broadcast destinations are flooded. A MAC seen on a new port moves (the
flows towards its old port are deleted), a port going down forgets what
was learned behind it, and learned entries age out after `mac_age` seconds.
"""

from __future__ import annotations

from kumoflow import ofp
from kumoflow.apps import options as check
from kumoflow.controller import App

LLDP = b"\x88\xcc"


class LearningSwitch(App):
    name = "l2"
    tables = ("forward",)
    reactive = True   # it adds its own flows as it learns

    def __init__(self, idle_timeout: int = 60, hard_timeout: int = 0, priority: int = 10,
                 mac_age: float = 300.0, **options) -> None:
        super().__init__(**options)
        self.idle_timeout = check.integer("idle_timeout", idle_timeout, 0, 0xFFFF)
        self.hard_timeout = check.integer("hard_timeout", hard_timeout, 0, 0xFFFF)
        self.priority = check.integer("priority", priority, 0, 0xFFFF)
        self.mac_age = check.seconds("mac_age", mac_age)
        # dpid -> mac -> (port, last seen)
        self.macs: dict[int, dict[str, tuple[int, float]]] = {}

    def table_miss(self, table: str) -> list[ofp.Instruction]:
        # 128 bytes lets a switch with buffers keep the packet and send its head.
        return [ofp.ApplyActions([ofp.Output(ofp.OFPP.CONTROLLER, ofp.OFP_DEFAULT_MISS_SEND_LEN)])]

    def mac_table(self, dpid: int) -> dict[str, int]:
        """The learned MAC -> port table of a switch (entries not yet aged out)."""
        now = self.core.now()
        return {mac: port for mac, (port, seen) in self.macs.get(dpid, {}).items() if now - seen < self.mac_age}

    def switch_up(self, dp) -> None:
        self.macs[dp.id] = {}

    def switch_down(self, dp) -> None:
        self.macs.pop(dp.id, None)

    def packet_in(self, dp, msg: ofp.PacketIn) -> None:
        data = msg.data
        in_port = msg.match.get("in_port")
        if len(data) < 14 or in_port is None or data[12:14] == LLDP:
            return
        dst, src = data[0:6].hex(":"), data[6:12].hex(":")
        table = self.macs.setdefault(dp.id, {})
        now = self.core.now()
        if not data[6] & 1:   # never learn a group address as a source
            self._learn(dp, table, src, in_port, now)
        out_port = None
        if not data[0] & 1:
            entry = table.get(dst)
            if entry is not None and now - entry[1] < self.mac_age:
                out_port = entry[0]
        if out_port == in_port:
            return   # the destination is behind the port it came from: nothing to do
        if out_port is None:
            self._packet_out(dp, msg, in_port, ofp.OFPP.FLOOD)
            return
        buffered = msg.buffer_id != ofp.OFP_NO_BUFFER
        self.add_flow(dp, ofp.Match(in_port=in_port, eth_dst=dst, eth_src=src),
                      [ofp.ApplyActions([ofp.Output(out_port)])], priority=self.priority,
                      idle_timeout=self.idle_timeout, hard_timeout=self.hard_timeout,
                      buffer_id=msg.buffer_id)
        if not buffered:
            self._packet_out(dp, msg, in_port, out_port)

    def _learn(self, dp, table: dict, src: str, in_port: int, now: float) -> None:
        old = table.get(src)
        table[src] = (in_port, now)
        if old is not None and old[0] != in_port:
            self.log.info("%s: %s moved from port %d to %d", dp.name, src, old[0], in_port)
            # Flows towards the old port are wrong now; flows from it just expire.
            self.delete_flows(dp, ofp.Match(eth_dst=src))

    def _packet_out(self, dp, msg: ofp.PacketIn, in_port: int, out_port: int) -> None:
        buffered = msg.buffer_id != ofp.OFP_NO_BUFFER
        self.send(dp, ofp.PacketOut(buffer_id=msg.buffer_id, in_port=in_port, actions=[ofp.Output(out_port)],
                                    data=b"" if buffered else msg.data))

    def port_status(self, dp, msg: ofp.PortStatus) -> None:
        port = msg.desc
        gone = (msg.reason == ofp.OFPPR.DELETE or port.state & ofp.OFPPS.LINK_DOWN
                or port.config & ofp.OFPPC.PORT_DOWN)
        if not gone:
            return
        table = self.macs.get(dp.id, {})
        forgotten = [mac for mac, (p, _) in table.items() if p == port.port_no]
        for mac in forgotten:
            del table[mac]
        self.log.info("%s: port %d down, forgot %d MACs", dp.name, port.port_no, len(forgotten))
        self.delete_flows(dp, out_port=port.port_no)
        self.delete_flows(dp, ofp.Match(in_port=port.port_no))
