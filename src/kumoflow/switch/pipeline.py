"""The OpenFlow pipeline (section 5): tables, instructions, the action set,
groups, meters, output and packet-in.

`Pipeline.run(pkt)` takes a packet through the tables from table 0:
lookup (highest priority match; no match and no table-miss entry: drop),
counters, then the entry's instructions in the spec's order: meter,
apply-actions, clear-actions, write-actions, write-metadata, goto-table.
When no goto-table follows, the action set runs in the order of section
5.10: copy TTL in, pop, push-MPLS, push-PBB, push-VLAN, copy TTL out,
decrement TTL, set, qos, group, output (output ignored when a group is
set).

A flow entry's instructions are compiled once (at flow-mod) into a
`Program`; actions into tuples (see actions.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kumoflow import ofp
from kumoflow.ofp.consts import OFP_NO_BUFFER, OFPCML, OFPMBT, OFPP, OFPR

from . import actions as act
from . import flowkey as fk
from .egress import transmit
from .port import OFPPC_NO_FLOOD, PC_NO_PACKET_IN, PC_PORT_DOWN, PS_BLOCKED, PS_LINK_DOWN

if TYPE_CHECKING:
    from .datapath import Datapath
    from .flowtable import FlowEntry

P = fk.PRESENT
NO_COOKIE = 0xFFFFFFFFFFFFFFFF
MAX_DEPTH = 32                    # group chains and output:TABLE recursion
MAC_AGE = 300.0
# A PACKET_IN is at most 65535 bytes: header, fixed part, match (<= 48 bytes
# here: in_port, in_phy_port, metadata, tunnel_id), 2 bytes of padding.
MAX_PACKET_IN_DATA = 0xFFFF - 8 - 16 - 48 - 2

OUTPUT, GROUP, SET_FIELD, SET_QUEUE = act.OUTPUT, act.GROUP, act.SET_FIELD, act.SET_QUEUE
P_MAX, P_IN_PORT, P_TABLE, P_NORMAL, P_FLOOD, P_ALL, P_CONTROLLER, P_LOCAL = (
    int(OFPP.MAX), int(OFPP.IN_PORT), int(OFPP.TABLE), int(OFPP.NORMAL), int(OFPP.FLOOD), int(OFPP.ALL),
    int(OFPP.CONTROLLER), int(OFPP.LOCAL))
MBT_DROP, MBT_DSCP_REMARK = int(OFPMBT.DROP), int(OFPMBT.DSCP_REMARK)


class Program:
    """A flow entry's compiled instructions."""

    __slots__ = ("meter_id", "apply", "clear", "write", "metadata", "metadata_mask", "goto")

    def __init__(self, meter_id=None, apply=None, clear=False, write=None, metadata=None, metadata_mask=0,
                 goto=None) -> None:
        self.meter_id = meter_id
        self.apply = apply            # list of compiled actions or None
        self.clear = clear
        self.write = write            # list of (slot, compiled action) or None
        self.metadata = metadata      # int or None
        self.metadata_mask = metadata_mask
        self.goto = goto


class Pipeline:
    def __init__(self, dp: "Datapath") -> None:
        self.dp = dp
        self.mac_table: dict[tuple[int, int], tuple[int, float]] = {}   # (vlan, mac) -> (port, seen)

    # -- tables ---------------------------------------------------------------------
    def run(self, pkt: fk.Packet, table_id: int = 0, depth: int = 0) -> None:
        dp = self.dp
        tables = dp.tables
        now = dp.clock()
        action_set: dict = {}
        entry = None
        key = pkt.key
        while True:
            table = tables[table_id]
            table.lookup_count += 1
            entry = table.lookup(key)
            if entry is None:
                return                                     # table miss, no miss entry: drop
            table.matched_count += 1
            if entry.count_packets:
                entry.packet_count += 1
            if entry.count_bytes:
                entry.byte_count += len(pkt.data)
            entry.last_used = now
            prog = entry.program
            if prog.meter_id is not None and not self.meter(pkt, prog.meter_id, now):
                return
            if prog.apply is not None and not self.apply_actions(pkt, prog.apply, entry, depth):
                return
            if prog.clear:
                action_set.clear()
            if prog.write is not None:
                for s, a in prog.write:
                    action_set[s] = a
            if prog.metadata is not None:
                m = prog.metadata_mask
                key[fk.METADATA] = P | (key[fk.METADATA] & ~m | prog.metadata & m) & 0xFFFFFFFFFFFFFFFF
            if prog.goto is None:
                break
            table_id = prog.goto
        if action_set:
            self.action_set(pkt, action_set, entry, depth)

    def meter(self, pkt: fk.Packet, meter_id: int, now: float) -> bool:
        m = self.dp.meters.get(meter_id)
        if m is None:
            return True
        band = m.apply(len(pkt.data), now)
        if band is None:
            return True
        if band.type == MBT_DROP:
            return False
        if band.type == MBT_DSCP_REMARK:
            act.dscp_remark(pkt, band.prec_level)
        return True

    # -- actions -----------------------------------------------------------------------
    def apply_actions(self, pkt: fk.Packet, acts: list, entry: "FlowEntry | None", depth: int) -> bool:
        """Run an action list in order; False when the packet was dropped (invalid TTL)."""
        for a in acts:
            t = a[0]
            if t == OUTPUT:
                self.output(pkt, a[1], a[2], entry, depth)
            elif t == SET_FIELD:
                act.set_field(pkt, a[1], a[2])
            elif t == GROUP:
                self.group(pkt, a[1], entry, depth)
            elif not self.header_action(pkt, a, entry):
                return False
        return True

    def header_action(self, pkt: fk.Packet, a: tuple, entry) -> bool:
        t = a[0]
        if t == act.PUSH_VLAN:
            act.push_vlan(pkt, a[1])
        elif t == act.POP_VLAN:
            act.pop_vlan(pkt)
        elif t == act.SET_QUEUE:
            pkt.queue_id = a[1]
        elif t == act.DEC_NW_TTL:
            if not act.dec_nw_ttl(pkt):
                self.invalid_ttl(pkt, entry)
                return False
        elif t == act.DEC_MPLS_TTL:
            if not act.dec_mpls_ttl(pkt):
                self.invalid_ttl(pkt, entry)
                return False
        elif t == act.SET_NW_TTL:
            act.set_nw_ttl(pkt, a[1])
        elif t == act.SET_MPLS_TTL:
            act.set_mpls_ttl(pkt, a[1])
        elif t == act.PUSH_MPLS:
            act.push_mpls(pkt, a[1])
        elif t == act.POP_MPLS:
            act.pop_mpls(pkt, a[1])
        elif t == act.PUSH_PBB:
            act.push_pbb(pkt, a[1])
        elif t == act.POP_PBB:
            act.pop_pbb(pkt)
        elif t == act.COPY_TTL_OUT:
            act.copy_ttl_out(pkt)
        elif t == act.COPY_TTL_IN:
            act.copy_ttl_in(pkt)
        return True

    def action_set(self, pkt: fk.Packet, action_set: dict, entry, depth: int) -> None:
        ordered = sorted(action_set.values(), key=act.rank)
        group = None
        output = None
        for a in ordered:
            t = a[0]
            if t == OUTPUT:
                output = a
            elif t == GROUP:
                group = a
            elif t == SET_FIELD:
                act.set_field(pkt, a[1], a[2])
            elif not self.header_action(pkt, a, entry):
                return
        if group is not None:
            self.group(pkt, group[1], entry, depth, clone=False)
        elif output is not None:
            self.output(pkt, output[1], output[2], entry, depth)

    def group(self, pkt: fk.Packet, group_id: int, entry, depth: int, clone: bool = True) -> None:
        groups = self.dp.groups
        g = groups.get(group_id)
        if g is None or depth > MAX_DEPTH:
            return
        n = len(pkt.data)
        g.packet_count += 1
        g.byte_count += n
        buckets = groups.choose(g, pkt.key)
        last = len(buckets) - 1
        for i, b in enumerate(buckets):
            b.packet_count += 1
            b.byte_count += n
            p = pkt.copy() if clone or i < last else pkt
            self.apply_actions(p, b.actions, entry, depth + 1)

    # -- output --------------------------------------------------------------------------
    def output(self, pkt: fk.Packet, port_no: int, max_len: int, entry, depth: int = 0) -> None:
        dp = self.dp
        if port_no <= P_MAX or port_no == P_LOCAL:
            if port_no != pkt.in_port:                 # back out the in port only with IN_PORT
                self.send(pkt, port_no)
        elif port_no == P_CONTROLLER:
            reason = OFPR.NO_MATCH if entry is not None and entry.is_table_miss else OFPR.ACTION
            self.packet_in(pkt, reason, max_len, entry)
        elif port_no == P_IN_PORT:
            self.send(pkt, pkt.in_port)
        elif port_no == P_FLOOD or port_no == P_ALL:
            flood = port_no == P_FLOOD
            # Standard ports (not LOCAL) but the ingress port and those down;
            # FLOOD also skips blocked and NO_FLOOD ports.
            for p in sorted(dp.ports):
                if p == pkt.in_port or p == P_LOCAL:
                    continue
                port = dp.ports[p]
                if port.config & PC_PORT_DOWN or port.state & PS_LINK_DOWN:
                    continue
                if flood and (port.config & OFPPC_NO_FLOOD or port.state & PS_BLOCKED):
                    continue
                self.send(pkt, p)
        elif port_no == P_TABLE:
            if depth < MAX_DEPTH:
                self.run(pkt.copy(), 0, depth + 1)
        elif port_no == P_NORMAL:
            self.normal(pkt)

    def send(self, pkt: fk.Packet, port_no: int) -> None:
        port = self.dp.ports.get(port_no)
        if port is not None:
            transmit(port, bytes(pkt.data), pkt.key[fk.TUNNEL_ID] & ~P,
                     pkt.queue_id if pkt.queue_id is not None else 0)

    def normal(self, pkt: fk.Packet) -> None:
        """OFPP_NORMAL: a MAC-learning bridge (per VLAN), flooding the unknown."""
        key = pkt.key
        if not key[fk.ETH_SRC]:
            return
        now = self.dp.clock()
        vlan = key[fk.VLAN_VID] & 0xFFF
        src = key[fk.ETH_SRC] & ~P
        dst = key[fk.ETH_DST] & ~P
        if not src >> 40 & 1:                          # never learn a multicast source
            self.mac_table[(vlan, src)] = (pkt.in_port, now)
        if not dst >> 40 & 1:
            hit = self.mac_table.get((vlan, dst))
            if hit is not None and now - hit[1] <= MAC_AGE and hit[0] in self.dp.ports:
                if hit[0] != pkt.in_port:
                    self.send(pkt, hit[0])
                return
        self.output(pkt, P_FLOOD, 0, None)

    def forget_port(self, port_no: int) -> None:
        for k in [k for k, v in self.mac_table.items() if v[0] == port_no]:
            del self.mac_table[k]

    def age(self, now: float) -> None:
        for k in [k for k, v in self.mac_table.items() if now - v[1] > MAC_AGE]:
            del self.mac_table[k]

    # -- to the controller ------------------------------------------------------------
    def invalid_ttl(self, pkt: fk.Packet, entry) -> None:
        """Always reported: each channel's async configuration decides who hears it (off by default)."""
        self.packet_in(pkt, OFPR.INVALID_TTL, self.dp.miss_send_len, entry)

    def packet_in(self, pkt: fk.Packet, reason: int, max_len: int, entry) -> None:
        dp = self.dp
        if dp.on_async is None:
            return
        in_port = dp.ports.get(pkt.in_port)
        if in_port is not None and in_port.config & PC_NO_PACKET_IN:
            return
        data = bytes(pkt.data)
        total = len(data)
        buffer_id = OFP_NO_BUFFER
        if max_len != OFPCML.NO_BUFFER:
            buffer_id = dp.buffers.store(data, pkt.in_port, pkt.in_phy_port, pkt.tunnel_id)
            if buffer_id != OFP_NO_BUFFER:
                data = data[:max_len]
        if len(data) > MAX_PACKET_IN_DATA:            # an offloaded 64 KB frame: what fits a message
            data = data[:MAX_PACKET_IN_DATA]
        total = min(total, 0xFFFF)
        key = pkt.key
        match = ofp.Match(in_port=pkt.in_port)
        phy = key[fk.IN_PHY_PORT] & ~P
        if phy != pkt.in_port:
            match["in_phy_port"] = phy
        md = key[fk.METADATA] & ~P
        if md:
            match["metadata"] = md
        tid = key[fk.TUNNEL_ID] & ~P
        if tid:
            match["tunnel_id"] = tid
        if entry is not None:
            cookie, table_id = entry.cookie, entry.table_id
        else:
            cookie, table_id = NO_COOKIE, 0xFF
        dp.emit(ofp.PacketIn(buffer_id, total, reason, table_id, cookie, match, data))
