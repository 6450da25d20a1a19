"""The fast path (decision caches in front of the pipeline) against the
reference: two datapaths side by side, one with the tuple space
classifier and the cache (the default), one with the ordered-scan
FlowTable and no cache, fed the same random tables, the same random
packets and the same random changes in between; every frame sent, every
message to the controller and every counter must be the same.

Then targeted cases: the cache is really used (and for which decisions),
megaflows are as wide as they may be and no wider, it is emptied on every
change that can alter a decision but flow-table changes, and those remove
only the decisions they can affect (selective invalidation).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os

import pytest
from hypothesis import Phase, event, given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether

from kumoflow import ofp
from kumoflow.ofp.consts import OFPFC, OFPGC, OFPGT, OFPIT, OFPMC, OFPMF, OFPP
from kumoflow.switch import actions as act
from kumoflow.switch import flowkey as fk
from kumoflow.switch.datapath import SwitchError
from kumoflow.switch.classifier import FULL_P
from kumoflow.switch.fastpath import Decision, _MaskGroup, _overlapping
from kumoflow.switch.flowmatch import FIELD_NAMES, PREREQS, VLAN_PRESENT, compile_match, from_int
from kumoflow.switch.flowtable import FlowTable
from kumoflow.switch.port import PS_BLOCKED, MemoryPort, wire

from test_switch_helpers import MAC1, MAC2, MAC3, Rig, ip_match, tcp, udp

# KUMOFLOW_SWITCH_EXAMPLES=5000 for a longer hunt; KUMOFLOW_NO_SHRINK=1 to report a failure without
# minimising it (fast, e.g. to check that a deliberately broken cache is caught).
EXAMPLES = int(os.environ.get("KUMOFLOW_SWITCH_EXAMPLES", "200"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    phases=[p for p in Phase if p != Phase.shrink or not os.environ.get("KUMOFLOW_NO_SHRINK")])

N_TABLES = 4
OFPIT_APPLY = int(OFPIT.APPLY_ACTIONS)
PORTS = (1, 2, 3, 4)
NO_BUFFER = ofp.OFPCML.NO_BUFFER


# --- the two datapaths ------------------------------------------------------------------------------

class Pair:
    """The reference (FlowTable, no cache) and the subject (defaults), in step."""

    def __init__(self) -> None:
        self.ref = Rig(n_tables=N_TABLES, n_buffers=8, table_class=FlowTable, fastpath=False)
        self.sub = Rig(n_tables=N_TABLES, n_buffers=8)
        assert self.ref.dp.fastpath is None and self.sub.dp.fastpath is not None
        for rig in (self.ref, self.sub):
            rig.port(2).add_queue(1)

    def handle(self, msg) -> None:
        results = []
        for rig in (self.ref, self.sub):
            try:
                results.append(("ok", rig.handle(msg)))
            except SwitchError as exc:
                results.append(("error", exc.type, exc.code))
        assert results[0] == results[1], msg
        self.check()

    def flow_mod_raw(self, fm: ofp.FlowMod) -> None:
        """A flow-mod as the channel applies it: the subject takes the direct
        path (Datapath.flow_mod_raw) when it can, the ordinary one with the
        decoded message otherwise; the reference always the ordinary one."""
        data = fm.pack()
        results = []
        for rig in (self.ref, self.sub):
            try:
                if rig is self.sub and rig.dp.flow_mod_raw(data):
                    results.append(("ok", []))
                    continue
                results.append(("ok", rig.handle(ofp.parse(data))))
            except (SwitchError, ofp.CodecError) as exc:
                results.append(("error", exc.type, exc.code))
        assert results[0] == results[1], fm
        self.check()

    def receive(self, port: int, frame: bytes, tunnel_id: int = 0) -> None:
        for rig in (self.ref, self.sub):
            rig.dp.receive(port, frame, tunnel_id=tunnel_id)
        self.check(frame)

    def receive_batch(self, port: int, frames: list[bytes]) -> None:
        """The subject takes the frames as one batch (Datapath.receive_batch),
        the reference one by one. The batch may reorder frames of different
        flows on an output port, never those of one flow."""
        for frame in frames:
            self.ref.dp.receive(port, frame)
        self.sub.dp.receive_batch(port, frames)
        ref, sub = self.ref.outputs(), self.sub.outputs()
        assert sub.keys() == ref.keys(), frames
        for out_port, sent in ref.items():
            assert sorted(sub[out_port]) == sorted(sent), (out_port, frames)
            assert per_flow(sub[out_port]) == per_flow(sent), (out_port, frames)
        assert self.sub.take_events() == self.ref.take_events(), frames

    def link(self, port: int, up: bool) -> None:
        for rig in (self.ref, self.sub):
            rig.port(port).set_link(up)
        self.check()

    def block(self, port: int, blocked: bool) -> None:
        """What a spanning tree would do (OFPPS_BLOCKED)."""
        for rig in (self.ref, self.sub):
            p = rig.port(port)
            p.state = p.state | PS_BLOCKED if blocked else p.state & ~PS_BLOCKED
            rig.dp.port_changed(port)
        self.check()

    def advance(self, dt: float) -> None:
        for rig in (self.ref, self.sub):
            rig.clock.advance(dt)
            rig.dp.tick()
        self.check()

    def check(self, frame: bytes | None = None) -> None:
        """Same frames out of every port, same messages to the controller."""
        assert self.sub.outputs() == self.ref.outputs(), frame
        assert self.sub.take_events() == self.ref.take_events(), frame

    def check_counters(self) -> None:
        for req in (ofp.FlowStatsRequest(), ofp.AggregateStatsRequest(), ofp.TableStatsRequest(),
                    ofp.PortStatsRequest(), ofp.QueueStatsRequest(), ofp.GroupStatsRequest(),
                    ofp.GroupDescRequest(), ofp.MeterStatsRequest()):
            assert self.sub.handle(req) == self.ref.handle(req), type(req).__name__


def per_flow(frames: list[bytes]) -> dict:
    """Frames in the order sent, by flow (fast key; None for frames without one)."""
    flows: dict = {}
    for f in frames:
        flows.setdefault(fk.fast_key(f), []).append(f)
    return flows


class Shown:
    """A drawn value that Hypothesis reports with repr(): its pretty-printer
    takes the ofp message dataclasses apart field by field and trips on
    their class-level attributes."""

    def __init__(self, value) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self.value))


# --- frames: a small pool, sent again and again with small variations --------------------------------

u8, u16 = st.integers(0, 0xFF), st.integers(0, 0xFFFF)
macs = st.sampled_from([MAC1, MAC2, MAC3, "ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01"])
ip4s = st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.1.7", "192.168.3.4"])
ip6s = st.sampled_from(["fe80::1", "2001:db8::2", "2001:db8::3:4"])
small_ports = st.sampled_from([53, 80, 443, 1000, 2000])
tcp_flags = st.sampled_from(["S", "SA", "A", "PA", "FA", "R", "RA"])
KINDS = ["udp", "udp", "tcp", "tcp", "icmp", "udp_vlan", "qinq", "arp", "udp6", "ns", "mpls", "frag",
         "frag_later", "ipopt", "short", "pbb"]


@st.composite
def base_frames(draw, kinds: list[str] = KINDS) -> bytes:
    kind = draw(st.sampled_from(kinds))
    l2 = Ether(src=draw(macs), dst=draw(macs))
    ip = IP(src=draw(ip4s), dst=draw(ip4s), tos=draw(st.sampled_from([0, 0x28, 0x48, 0xb8])),
            ttl=draw(st.sampled_from([1, 2, 64])))
    payload = b"p" * draw(st.integers(0, 30))
    if kind == "udp":
        pkt = l2 / ip / UDP(sport=draw(small_ports), dport=draw(small_ports)) / payload
    elif kind == "tcp":
        pkt = l2 / ip / TCP(sport=draw(small_ports), dport=draw(small_ports), flags=draw(tcp_flags)) / payload
    elif kind == "icmp":
        pkt = l2 / ip / ICMP(type=draw(st.sampled_from([0, 8])), code=0) / payload
    elif kind == "udp_vlan":
        pkt = l2 / Dot1Q(vlan=draw(st.sampled_from([10, 20])), prio=draw(st.integers(0, 7))) / ip / UDP() / payload
    elif kind == "qinq":
        pkt = (l2 / Dot1Q(vlan=draw(st.sampled_from([10, 20])), type=0x8100)
               / Dot1Q(vlan=draw(st.sampled_from([30, 40])), prio=draw(st.sampled_from([0, 5]))) / ip / UDP() / payload)
    elif kind == "arp":
        pkt = Ether(src=MAC1, dst="ff:ff:ff:ff:ff:ff") / ARP(op=draw(st.integers(1, 2)), hwsrc=MAC1,
                                                             psrc=draw(ip4s), pdst=draw(ip4s))
    elif kind == "udp6":
        pkt = l2 / IPv6(src=draw(ip6s), dst=draw(ip6s), hlim=draw(st.sampled_from([1, 64]))) / UDP() / payload
    elif kind == "ns":
        pkt = (l2 / IPv6(src=draw(ip6s), dst="ff02::1") / ICMPv6ND_NS(tgt=draw(ip6s))
               / ICMPv6NDOptSrcLLAddr(lladdr=MAC1))
    elif kind == "mpls":
        pkt = (Ether(src=MAC1, dst=MAC2, type=0x8847) / MPLS(label=draw(st.sampled_from([16, 17])), s=1,
                                                             ttl=draw(st.sampled_from([1, 9]))) / ip / payload)
    elif kind == "frag":
        pkt = l2 / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF") / UDP(sport=53) / payload
    elif kind == "frag_later":
        pkt = l2 / IP(src="10.0.0.1", dst="10.0.0.2", frag=3) / payload
    elif kind == "ipopt":
        pkt = l2 / IP(src="10.0.0.1", dst="10.0.0.2", options=b"\x01\x01\x01\x00") / UDP() / payload
    elif kind == "pbb":
        return raw(Ether(src=MAC1, dst=MAC2, type=0x88E7)) + bytes(4) + raw(l2 / ip / UDP())
    else:
        return raw(l2)[:draw(st.integers(0, 13))]
    return raw(pkt)


def vary(frame: bytes, ttl: int | None, ip_id: int, extra: int) -> bytes:
    """The same flow with another TTL, IP identification and length."""
    pkt = fk.Packet(frame, 1)
    d = bytearray(frame)
    if pkt.key[fk.IPV4_SRC] and pkt.l3 >= 0:
        d[pkt.l3 + 4:pkt.l3 + 6] = ip_id.to_bytes(2, "big")
        if ttl is not None:
            d[pkt.l3 + 8] = ttl
    elif pkt.key[fk.IPV6_SRC] and ttl is not None:
        d[pkt.l3 + 7] = ttl
    return bytes(d) + b"z" * extra


# --- flow tables ----------------------------------------------------------------------------------------

MASKABLE = {f.code for f in ofp.FIELDS_BY_NAME.values() if f.maskable} | {fk.TCP_FLAGS}
#: +fin, +rst, +fin or +rst, +syn-ack, all but ack
TCP_FLAG_MASKS = [0x001, 0x004, 0x005, 0x012, 0xFEF]
#: fields whose value a match may change freely (kind 6 of `matches`)
PERTURBABLE = {fk.ETH_SRC, fk.ETH_DST, fk.VLAN_PCP, fk.IP_DSCP, fk.IPV4_SRC, fk.IPV4_DST, fk.TCP_SRC, fk.TCP_DST,
               fk.UDP_SRC, fk.UDP_DST, fk.IPV6_SRC, fk.IPV6_DST, fk.MPLS_LABEL, fk.ARP_SPA, fk.ARP_TPA}


def _close(chosen: list[int]) -> list[int]:
    todo = list(chosen)
    while todo:
        c = todo.pop()
        req = PREREQS.get(c)
        if req is None:
            continue
        on = fk.VLAN_VID if req[0] == VLAN_PRESENT else req[0]
        if on not in chosen:
            chosen.append(on)
            todo.append(on)
    return chosen


#: Values the set-fields below write, with the fields their matches need:
#: matches on what an earlier table may have rewritten.
REWRITTEN = [
    {"vlan_vid": 0x1000 | 10}, {"vlan_vid": 0x1000 | 20}, {"vlan_vid": 0x1000 | 30}, {"vlan_vid": 0},
    {"vlan_vid": (0x1000, 0x1000)}, {"vlan_vid": (0x1000, 0x1000), "vlan_pcp": 5},
    {"eth_dst": MAC3}, {"eth_src": (MAC3, "ff:ff:ff:00:00:00")},
    {"eth_type": 0x0800, "ipv4_dst": "10.0.0.2"}, {"eth_type": 0x0800, "ipv4_dst": ("10.0.0.0", "255.255.255.0")},
    {"eth_type": 0x0800, "ip_dscp": 12}, {"eth_type": 0x0800, "ip_dscp": 14}, {"eth_type": 0x0800, "ip_ecn": 1},
    {"eth_type": 0x0800, "ip_proto": 17, "udp_dst": 53}, {"eth_type": 0x0800, "ip_proto": 6},
    {"eth_type": 0x8847, "mpls_label": 16}, {"eth_type": 0x8847, "mpls_label": 99}, {"eth_type": 0x8847},
    {"eth_type": 0x86DD, "ipv6_dst": "2001:db8::2"}, {"eth_type": 0x88E7},
    {"eth_type": 0x86DD, "ip_proto": 58, "icmpv6_type": 135, "ipv6_nd_sll": MAC2},
    {"tunnel_id": 5}, {"tunnel_id": 7}, {"metadata": 1}, {"metadata": (2, 3)}, {"arp_op": 2, "eth_type": 0x0806},
]


@st.composite
def matches(draw, pool: list[bytes]):
    """A match made of some fields of a pool frame (masked at random), or of
    values the set-fields write; sometimes in_port, metadata or tunnel_id too."""
    m: dict = {}
    kind = draw(st.integers(0, 6))
    if (kind <= 2 or kind == 6) and pool:
        pkt = fk.Packet(draw(st.sampled_from(pool)), 1)
        present = [c for c in range(fk.N_FIELDS) if pkt.key[c] & fk.PRESENT and c not in fk.PIPELINE_FIELDS]
        if present:
            chosen = _close(draw(st.lists(st.sampled_from(present), unique=True, max_size=3)))
            for c in chosen:
                v = pkt.field(c)
                if c in MASKABLE and c != fk.VLAN_VID and draw(st.integers(0, 2)) == 0:
                    width = fk.WIDTHS[c]
                    mask = draw(st.sampled_from(TCP_FLAG_MASKS if c == fk.TCP_FLAGS else
                                                [(1 << width) - 1 ^ 0xFF, 0xF0, 1, (1 << width) - 1 ^ 1]))
                    mask &= (1 << width) - 1
                    if mask:
                        m[FIELD_NAMES[c]] = (from_int(c, v & mask), from_int(c, mask))
                        continue
                m[FIELD_NAMES[c]] = from_int(c, v)
            # kind 6: one value changed, so the match is beside a flow of the pool (not overlapping it)
            others = [c for c in chosen if c in PERTURBABLE and type(m[FIELD_NAMES[c]]) is not tuple]
            if kind == 6 and others:
                c = draw(st.sampled_from(others))
                m[FIELD_NAMES[c]] = from_int(c, pkt.field(c) ^ draw(st.sampled_from([1, 2])))
    elif kind <= 4:
        m.update(draw(st.sampled_from(REWRITTEN)))
    if draw(st.integers(0, 3)) == 0:
        m["in_port"] = draw(st.sampled_from(PORTS))
    if draw(st.integers(0, 5)) == 0:
        m["metadata"] = draw(st.sampled_from([1, 2, (1, 1), (2, 3)]))
    return ofp.Match(m)


SETS = {
    "eth_src": st.sampled_from([MAC1, MAC3]), "eth_dst": st.sampled_from([MAC2, MAC3]),
    "vlan_vid": st.sampled_from([10, 0x1000 | 20, 30]), "vlan_pcp": st.sampled_from([0, 5]),
    "ip_dscp": st.sampled_from([0, 10, 12, 46]), "ip_ecn": st.integers(0, 3), "ipv4_src": ip4s, "ipv4_dst": ip4s,
    "tcp_dst": small_ports, "udp_src": small_ports, "udp_dst": small_ports, "arp_op": st.integers(1, 2),
    "ipv6_dst": ip6s, "ipv6_nd_sll": st.sampled_from([MAC2]), "mpls_label": st.sampled_from([16, 99]),
    "tunnel_id": st.sampled_from([0, 5, 7]), "eth_type": st.sampled_from([0x0800, 0x86DD]),
    "ip_proto": st.sampled_from([6, 17]),
}
OUT_PORTS = [1, 2, 3, 4, 1, 2, 3, 4, OFPP.IN_PORT, OFPP.FLOOD, OFPP.ALL, OFPP.CONTROLLER, OFPP.CONTROLLER,
             OFPP.LOCAL, OFPP.NORMAL]
HEADER_ACTIONS = [ofp.PushVlan(), ofp.PopVlan(), ofp.PopVlan(), ofp.PushMpls(), ofp.PopMpls(), ofp.PushVlan(0x88A8),
                  ofp.PushPbb(), ofp.PopPbb(), ofp.DecNwTtl(), ofp.DecNwTtl(), ofp.SetNwTtl(3), ofp.DecMplsTtl(),
                  ofp.CopyTtlIn(), ofp.CopyTtlOut(), ofp.SetMplsTtl(1), ofp.SetQueue(1), ofp.SetQueue(0)]


class _Env(act.ActionEnv):
    """What action validation asks the switch, for building valid action lists."""

    def __init__(self, groups) -> None:
        self.groups = groups

    def group_exists(self, group_id: int) -> bool:
        return group_id in self.groups

    def queue_exists(self, queue_id: int) -> bool:
        return queue_id in (0, 1)


def consistent(acts: list, state: dict | None, groups) -> tuple[list, dict | None]:
    """The actions of `acts` that validate in sequence (state: what the match pins down)."""
    env = _Env(groups)
    out = []
    for a in acts:
        trial = None if state is None else dict(state)
        try:
            act.validate_actions([a], env, trial)
        except SwitchError:
            continue
        out.append(a)
        state = trial
    return out, state


@st.composite
def actions(draw, max_size: int = 4, groups: bool = True):
    out = []
    for _ in range(draw(st.integers(0, max_size))):
        kind = draw(st.integers(0, 9))
        if kind <= 2:
            port = draw(st.sampled_from(OUT_PORTS))
            out.append(ofp.Output(port, draw(st.sampled_from([0, 64, NO_BUFFER]))))
        elif kind <= 5:
            name = draw(st.sampled_from(sorted(SETS)))
            out.append(ofp.SetField(name, draw(SETS[name])))
        elif kind <= 7:
            out.append(draw(st.sampled_from(HEADER_ACTIONS)))
        elif kind == 8 and groups:
            out.append(ofp.Group(draw(st.integers(1, 4))))
        else:
            out.append(ofp.Output(draw(st.sampled_from(PORTS))))
    return out


@st.composite
def flow_mods(draw, pool: list[bytes], groups=(1, 2, 3, 4), meters=(1, 2, 3), adding: bool = False,
              table_id: int | None = None, match: ofp.Match | None = None, priority: int | None = None):
    """A flow-mod whose actions are mostly consistent with its match (so that
    it is accepted): actions the match does not allow are left out."""
    if table_id is None:
        table_id = draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))
    if match is None:
        match = draw(matches(pool))
    try:
        state = compile_match(match).state
    except SwitchError:
        state = None
    instructions = []
    if draw(st.integers(0, 2)) == 0:                  # plain forwarding (decisions replayed without parsing)
        instructions.append(ofp.ApplyActions(draw(st.lists(st.sampled_from(
            [ofp.Output(p) for p in PORTS + (OFPP.IN_PORT, OFPP.FLOOD, OFPP.ALL)]), min_size=1, max_size=2))))
    elif draw(st.integers(0, 4)):
        acts, state = consistent(draw(actions()), state, groups)
        instructions.append(ofp.ApplyActions(acts))
    if draw(st.integers(0, 2)) == 0:
        instructions.append(ofp.WriteActions(consistent(draw(actions(3)), state, groups)[0]))
    if draw(st.integers(0, 5)) == 0:
        instructions.append(ofp.ClearActions())
    if draw(st.integers(0, 3)) == 0:
        instructions.append(ofp.WriteMetadata(draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([1, 3, 0xFF]))))
    if table_id < N_TABLES - 1 and draw(st.integers(0, 1)) == 0:
        instructions.append(ofp.GotoTable(draw(st.integers(table_id + 1, N_TABLES - 1))))
    if meters and draw(st.integers(0, 4)) == 0:
        instructions.append(ofp.Meter(draw(st.sampled_from(meters))))
    command = OFPFC.ADD if adding else draw(st.sampled_from([OFPFC.ADD] * 6 + [
        OFPFC.MODIFY, OFPFC.MODIFY_STRICT, OFPFC.DELETE, OFPFC.DELETE_STRICT]))
    if priority is None:
        priority = draw(st.sampled_from([0, 1, 5, 5, 100, 0x8000]))
    return ofp.FlowMod(
        cookie=draw(st.integers(0, 3)), cookie_mask=draw(st.sampled_from([0, 0, 3])), table_id=table_id,
        command=command, idle_timeout=draw(st.sampled_from([0, 0, 0, 1, 3])),
        hard_timeout=draw(st.sampled_from([0, 0, 0, 2, 6])), priority=priority,
        out_port=draw(st.sampled_from([OFPP.ANY] * 4 + [2])),
        out_group=draw(st.sampled_from([ofp.OFPG.ANY] * 4 + [1])),
        flags=draw(st.sampled_from([0, 0, 1, 2, 4, 8, 16, 1 | 4])), match=match, instructions=instructions)


@st.composite
def group_mods(draw, group_id: int | None = None, existing=(1, 2, 3, 4), adding: bool = False):
    """A group-mod; chained and watched groups among `existing`."""
    gid = draw(st.integers(1, 4)) if group_id is None else group_id
    gtype = draw(st.sampled_from([OFPGT.ALL, OFPGT.SELECT, OFPGT.SELECT, OFPGT.INDIRECT, OFPGT.FF]))
    n = 1 if gtype == OFPGT.INDIRECT else draw(st.integers(0, 3))
    others = [g for g in existing if g != gid]
    buckets = []
    for _ in range(n):
        acts = consistent(draw(actions(2, groups=False)), None, ())[0]
        if others and draw(st.integers(0, 4)) == 0:
            acts.append(ofp.Group(draw(st.sampled_from(others))))          # chaining
        elif draw(st.integers(0, 3)):
            acts.append(ofp.Output(draw(st.sampled_from(PORTS))))
        watch_port = draw(st.sampled_from([OFPP.ANY, OFPP.ANY, 1, 2, 3]))
        watch_group = draw(st.sampled_from([ofp.OFPG.ANY] * 3 + others))
        if gtype == OFPGT.FF and watch_port == OFPP.ANY and watch_group == ofp.OFPG.ANY:
            watch_port = draw(st.sampled_from(PORTS))
        buckets.append(ofp.Bucket(acts, weight=draw(st.sampled_from([0, 1, 1, 2, 3])), watch_port=watch_port,
                                  watch_group=watch_group))
    command = OFPGC.ADD if adding else draw(st.sampled_from([OFPGC.ADD, OFPGC.MODIFY, OFPGC.MODIFY, OFPGC.DELETE]))
    return ofp.GroupMod(command, gtype, gid, buckets)


@st.composite
def meter_mods(draw, meter_id: int | None = None, adding: bool = False):
    bands = [draw(st.sampled_from([ofp.MeterBandDrop(draw(st.integers(1, 4)), draw(st.integers(1, 3))),
                                   ofp.MeterBandDscpRemark(draw(st.integers(1, 4)), draw(st.integers(1, 3)), 1)]))
             for _ in range(draw(st.integers(1, 2)))]
    command = OFPMC.ADD if adding else draw(st.sampled_from([OFPMC.ADD, OFPMC.MODIFY, OFPMC.MODIFY, OFPMC.DELETE]))
    mid = draw(st.integers(1, 3)) if meter_id is None else meter_id
    return ofp.MeterMod(command, draw(st.sampled_from([OFPMF.PKTPS | OFPMF.BURST, OFPMF.KBPS | OFPMF.BURST])),
                        mid, bands)


@st.composite
def port_changes(draw):
    port = draw(st.sampled_from(PORTS))
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return ("link", port, draw(st.booleans()))
    if kind == 1:
        return ("blocked", port, draw(st.booleans()))
    bits = draw(st.sampled_from([0, 1, 4, 16, 32, 64]))
    return ("msg", ofp.PortMod(port, f"02:00:00:00:01:{port:02x}", bits, draw(st.sampled_from([bits, 1, 4, 16,
                                                                                               32, 64]))))


@st.composite
def tables(draw, pool: list[bytes]) -> list:
    """Groups (each chaining to or watching only groups made before it) and
    meters first, so flows can use them; then flows, with a catch-all in
    table 0 so every frame does something."""
    mods: list = []
    groups: list[int] = []
    for gid in draw(st.lists(st.integers(1, 4), unique=True, max_size=4)):
        mods.append(draw(group_mods(gid, tuple(groups), adding=True)))
        groups.append(gid)
    meters = draw(st.lists(st.integers(1, 3), unique=True, max_size=2))
    mods += [draw(meter_mods(mid, adding=True)) for mid in meters]
    mods.append(draw(flow_mods(pool, groups, meters, True, table_id=0, match=ofp.Match(), priority=0)))
    mods += draw(st.lists(flow_mods(pool, groups, meters, True), min_size=1, max_size=16))
    return mods


@st.composite
def retargeted(draw, pool: list[bytes], flows: list):
    """A flow-mod aimed at an existing entry (same table, match and priority):
    modify or delete it (strict or not), or replace it with an ADD."""
    fm = draw(st.sampled_from(flows))
    new = draw(flow_mods(pool, table_id=fm.table_id, match=fm.match, priority=fm.priority))
    command = draw(st.sampled_from([OFPFC.ADD, OFPFC.MODIFY, OFPFC.MODIFY_STRICT, OFPFC.MODIFY_STRICT,
                                    OFPFC.DELETE, OFPFC.DELETE_STRICT, OFPFC.DELETE_STRICT]))
    return dataclasses.replace(new, command=command, cookie_mask=0, out_port=OFPP.ANY,
                               out_group=ofp.OFPG.ANY)


@st.composite
def flow_changes(draw, pool: list[bytes], setup: list):
    """A burst of flow changes with no packet in between (the fast path
    applies them together): new flow-mods, flow-mods aimed at entries of the
    setup, each through the ordinary or the direct path, now and then
    another change in the middle."""
    flows = [m for m in setup if isinstance(m, ofp.FlowMod)]
    one = st.one_of(
        flow_mods(pool).map(lambda m: ("msg", m)),
        flow_mods(pool, adding=True).map(lambda m: ("msg", m)),
        flow_mods(pool, adding=True).map(lambda m: ("raw", m)),
        flow_mods(pool, adding=True).map(lambda m: ("raw", m)),
        retargeted(pool, flows).map(lambda m: ("msg", m)),
        retargeted(pool, flows).map(lambda m: ("raw", m)),
        st.one_of(group_mods(), meter_mods()).map(lambda m: ("msg", m)),
    )
    return ("flows", draw(st.lists(one, min_size=1, max_size=5)))


@st.composite
def scripts(draw):
    pool = draw(st.lists(base_frames(), min_size=2, max_size=8))
    setup = draw(tables(pool))
    # (in port, frame of the pool, TTL, IP id, extra bytes, tunnel id, seconds to wait first)
    frame = st.tuples(st.sampled_from([1, 1, 1, 2, 3, 4]), st.integers(0, len(pool) - 1),
                      st.sampled_from([None, None, 1, 2, 64]), u16, st.sampled_from([0, 0, 0, 40]),
                      st.sampled_from([0] * 9 + [5]), st.sampled_from([0] * 6 + [0.4]))
    change = st.one_of(
        st.none(),
        flow_mods(pool).map(lambda m: ("msg", m)),
        flow_changes(pool, setup),
        flow_changes(pool, setup),
        st.one_of(group_mods(), meter_mods()).map(lambda m: ("msg", m)),
        port_changes(),
        st.tuples(st.just("config"), st.sampled_from([0, 4, 1, 5]), st.sampled_from([64, 128, NO_BUFFER])),
        st.tuples(st.just("time"), st.sampled_from([0.1, 0.5, 1.0, 2.5])),
        st.tuples(st.just("packet_out"), st.integers(0, len(pool) - 1), st.sampled_from(PORTS)),
    )
    # A change, then a burst of frames from the pool (so the caches fill and hit).
    steps = draw(st.lists(st.tuples(change, st.lists(frame, min_size=1, max_size=12)), min_size=1, max_size=10))
    return Shown((pool, setup, steps))


@SETTINGS
@given(scripts())
def test_fast_path_decides_as_the_reference_pipeline(script):
    run_script(script, batched=False)


@SETTINGS
@given(scripts())
def test_batches_decide_as_the_reference_pipeline(script):
    """The same with frames handed over in batches, as the runtime does."""
    run_script(script, batched=True)


def run_script(script, batched: bool) -> None:
    pool, setup, steps = script.value
    pair = Pair()
    pair.handle(ofp.SetConfig(miss_send_len=64))
    for msg in setup:
        pair.handle(msg)
    for step, burst in steps:
        kind = step[0] if step is not None else None
        if kind == "msg":
            pair.handle(step[1])
        elif kind == "flows":
            for how, msg in step[1]:
                if how == "raw":
                    pair.flow_mod_raw(msg)
                else:
                    pair.handle(msg)
        elif kind == "link":
            pair.link(step[1], step[2])
        elif kind == "blocked":
            pair.block(step[1], step[2])
        elif kind == "config":
            pair.handle(ofp.SetConfig(flags=step[1], miss_send_len=step[2]))
        elif kind == "time":
            pair.advance(step[1])
        elif kind == "packet_out":
            _, i, port = step
            pair.handle(ofp.PacketOut(actions=[ofp.Output(port), ofp.Output(OFPP.TABLE)], data=pool[i],
                                      in_port=OFPP.CONTROLLER))
        if batched:
            # runs of frames from one port, no tunnel id, no waits: one batch each
            runs: list = []
            for port, i, ttl, ip_id, extra, _, _ in burst:
                if not runs or runs[-1][0] != port:
                    runs.append((port, []))
                runs[-1][1].append(vary(pool[i], ttl, ip_id, extra))
            for port, frames in runs:
                pair.receive_batch(port, frames)
            continue
        for port, i, ttl, ip_id, extra, tunnel_id, wait in burst:
            if wait:
                pair.advance(wait)
            pair.receive(port, vary(pool[i], ttl, ip_id, extra), tunnel_id)
    pair.check_counters()
    s = pair.sub.dp.fastpath.stats()
    for name in ("emc_hits", "megaflow_hits", "uncacheable", "revalidations", "invalidated"):
        if s[name]:
            event(f"fast path: some {name}")


@SETTINGS
@given(st.lists(base_frames(), min_size=1, max_size=6), st.data())
def test_fast_path_on_a_fixed_table_hits_and_agrees(pool, data):
    """No changes between packets: most frames are answered from the caches."""
    pair = Pair()
    for msg in data.draw(tables(pool).map(Shown)).value:
        pair.handle(msg)
    for _ in range(3):
        for i, frame in enumerate(pool):
            pair.receive(1 + i % 4, frame)
            pair.receive(1 + i % 4, vary(frame, None, 7, 3))
    pair.check_counters()
    s = pair.sub.dp.fastpath.stats()
    event(f"hits {(s['emc_hits'] + s['megaflow_hits']) * 10 // (6 * len(pool)) * 10}%")


T0_MATCHES = [{}, {"vlan_vid": (0x1000, 0x1000)}, {"vlan_vid": (0x1000, 0x1000)}, {"vlan_vid": (0x1000, 0x1000)},
              {"eth_type": 0x0800},
              {"eth_type": 0x8847}, {"eth_type": 0x88E7}, {"eth_type": 0x86DD}, {"eth_type": 0x0800, "ip_proto": 17},
              {"vlan_vid": 0}, {"vlan_vid": 0x1000 | 10}, {"eth_dst": MAC2},
              {"eth_type": 0x0800, "ipv4_dst": "10.0.0.1"}]
REWRITES = ([ofp.PushVlan(), ofp.PopVlan(), ofp.PopVlan(), ofp.PopVlan(), ofp.PushMpls(), ofp.PopMpls(), ofp.PushPbb(),
             ofp.PopPbb(), ofp.SetField("eth_type", 0x0800), ofp.SetField("ip_proto", 6), ofp.SetField("vlan_vid", 30),
             ofp.SetField("vlan_vid", 10), ofp.SetField("vlan_pcp", 5), ofp.SetField("ipv6_nd_sll", MAC2),
             ofp.SetField("mpls_label", 99), ofp.SetField("ip_dscp", 12), ofp.SetField("ipv4_dst", "10.0.0.2"),
             ofp.SetField("udp_dst", 53), ofp.SetField("eth_dst", MAC3), ofp.SetField("tunnel_id", 5)])
LOOKUPS = ([{"vlan_vid": 0x1000 | v} for v in (10, 20, 30, 40)] + [{"vlan_vid": 0}, {"vlan_vid": (0x1000, 0x1000)},
           {"vlan_vid": (0x1000, 0x1000), "vlan_pcp": 5}, {"vlan_vid": (0x1000, 0x1000), "vlan_pcp": 0},
           {"vlan_vid": (0x1000 | 8, 0x1008)}]
           + [{"eth_type": t} for t in (0x0800, 0x86DD, 0x8847, 0x88E7, 0x0806)]
           + [{"eth_type": 0x8847, "mpls_label": v} for v in (16, 17, 99)]
           + [{"eth_type": 0x0800, "ip_proto": p} for p in (1, 6, 17)]
           + [{"eth_type": 0x86DD, "ip_proto": 58, "icmpv6_type": 135, "ipv6_nd_sll": MAC2},
              {"eth_type": 0x86DD, "ip_proto": 58, "icmpv6_type": 135, "ipv6_nd_sll": MAC1},
              {"eth_type": 0x0800, "ip_dscp": 12}, {"eth_type": 0x0800, "ipv4_dst": "10.0.0.2"},
              {"eth_type": 0x0800, "ip_proto": 17, "udp_dst": 53}, {"eth_dst": MAC3}, {"tunnel_id": 5}])
#: matches on values REWRITES writes (a rule a rewritten key meets in table 1)
WRITTEN = [{"vlan_vid": 0x1000 | 30}, {"vlan_vid": 0x1000 | 10}, {"vlan_vid": (0x1000, 0x1000)}, {"eth_dst": MAC3},
           {"eth_type": 0x0800, "ipv4_dst": "10.0.0.2"}, {"eth_type": 0x8847, "mpls_label": 99},
           {"eth_type": 0x0800, "ip_dscp": 12}, {"eth_type": 0x0800, "ip_proto": 17, "udp_dst": 53},
           {"tunnel_id": 5}, {"vlan_vid": (0x1000, 0x1000), "vlan_pcp": 5}]
FAMILY = ["udp", "tcp", "udp_vlan", "udp_vlan", "qinq", "qinq", "qinq", "qinq", "mpls", "mpls", "pbb", "ns", "udp6",
          "arp", "short"]


@st.composite
def rewrite_then_lookup(draw, pool: list[bytes]) -> list:
    """Table 0 rewrites headers and goes to table 1, whose rules look at
    what was rewritten: the megaflow must be keyed on the right original bits."""
    mods = [ofp.GroupMod(OFPGC.ADD, OFPGT.SELECT, 1, [ofp.Bucket([ofp.Output(p)], weight=1) for p in (2, 3)])]
    for _ in range(draw(st.integers(1, 3))):
        match = ofp.Match(draw(st.sampled_from(T0_MATCHES)))
        acts = consistent(draw(st.lists(st.sampled_from(REWRITES), min_size=1, max_size=3)),
                          compile_match(match).state, ())[0]
        mods.append(ofp.FlowMod(table_id=0, match=match, priority=draw(st.integers(0, 3)),
                                instructions=[ofp.ApplyActions(acts), ofp.GotoTable(1)]))
    for _ in range(draw(st.integers(1, 6))):
        out = draw(st.sampled_from([ofp.Output(2), ofp.Output(3), ofp.Output(4), ofp.Output(OFPP.CONTROLLER),
                                    ofp.Group(1)]))
        mods.append(ofp.FlowMod(table_id=1, match=ofp.Match(draw(st.sampled_from(LOOKUPS))),
                                priority=draw(st.integers(0, 3)), instructions=[ofp.ApplyActions([out])]))
    return mods


@settings(SETTINGS, max_examples=2 * EXAMPLES)
@given(st.lists(base_frames(FAMILY), min_size=2, max_size=10), st.data())
def test_rewrites_then_lookups_agree(pool, data):
    """(With rules added, changed and removed in table 1 between frames: the
    decisions reach it with a rewritten key, which their megaflows do not hold.)"""
    pair = Pair()
    for msg in data.draw(rewrite_then_lookup(pool).map(Shown)).value:
        pair.handle(msg)
    order = data.draw(st.lists(st.integers(0, len(pool) - 1), min_size=len(pool), max_size=4 * len(pool)))
    changes = data.draw(st.lists(st.tuples(st.integers(0, len(order)), table1_changes().map(Shown)), max_size=4))
    for n, i in enumerate(order):
        for at, fm in changes:
            if at == n:
                pair.handle(fm.value)
        pair.receive(1, pool[i])
    pair.check_counters()


@st.composite
def table1_changes(draw) -> ofp.FlowMod:
    command = draw(st.sampled_from([OFPFC.ADD] * 4 + [OFPFC.MODIFY_STRICT, OFPFC.DELETE_STRICT, OFPFC.DELETE]))
    out = draw(st.sampled_from([ofp.Output(2), ofp.Output(3), ofp.Output(4), ofp.Output(OFPP.CONTROLLER)]))
    match = draw(st.sampled_from(LOOKUPS if draw(st.booleans()) else WRITTEN))
    return ofp.FlowMod(table_id=1, command=command, match=ofp.Match(match),
                       priority=draw(st.integers(0, 3)), instructions=[ofp.ApplyActions([out])])


#: (table 0 match, its rewrite, a table 1 match the rewritten key meets and the received one does not)
REWRITE_PAIRS = [
    ({"eth_dst": MAC2}, [ofp.SetField("eth_dst", MAC3)], {"eth_dst": MAC3}),
    ({"vlan_vid": 0x1000 | 10}, [ofp.SetField("vlan_vid", 30)], {"vlan_vid": 0x1000 | 30}),
    ({"vlan_vid": 0}, [ofp.PushVlan(), ofp.SetField("vlan_vid", 30)], {"vlan_vid": 0x1000 | 30}),
    ({"vlan_vid": 0}, [ofp.PushVlan()], {"vlan_vid": (0x1000, 0x1000)}),
    ({"eth_type": 0x0800, "ipv4_dst": "10.0.0.1"}, [ofp.SetField("ipv4_dst", "10.0.0.2")],
     {"eth_type": 0x0800, "ipv4_dst": "10.0.0.2"}),
    ({"eth_type": 0x0800, "ip_dscp": 0}, [ofp.SetField("ip_dscp", 12)], {"eth_type": 0x0800, "ip_dscp": 12}),
    ({"eth_type": 0x0800}, [ofp.PushMpls(), ofp.SetField("mpls_label", 99)], {"eth_type": 0x8847, "mpls_label": 99}),
]


@settings(SETTINGS, max_examples=EXAMPLES)
@given(st.lists(base_frames(["udp", "tcp", "udp_vlan", "udp_vlan"]), min_size=2, max_size=8), st.data())
def test_rules_for_a_rewritten_key_agree(pool, data):
    """Table 0 matches a field and rewrites it; rules added to (and changed,
    removed from) table 1 between frames match the new value, which the
    megaflows, keyed on the received bits, do not hold."""
    pair = Pair()
    pairs = data.draw(st.lists(st.sampled_from(REWRITE_PAIRS), min_size=1, max_size=3))
    for t0, acts, _ in pairs:
        pair.handle(ofp.FlowMod(match=ofp.Match(t0), priority=data.draw(st.integers(1, 3)),
                                instructions=[ofp.ApplyActions(acts), ofp.GotoTable(1)]))
    pair.handle(in1({}, 2, 0))
    t1 = [t1 for _, _, t1 in pairs]
    order = data.draw(st.lists(st.integers(0, len(pool) - 1), min_size=len(pool), max_size=3 * len(pool)))
    for i in order:
        if data.draw(st.integers(0, 3)) == 0:
            command = data.draw(st.sampled_from([OFPFC.ADD, OFPFC.ADD, OFPFC.MODIFY_STRICT, OFPFC.DELETE_STRICT]))
            pair.handle(ofp.FlowMod(table_id=1, command=command, match=ofp.Match(data.draw(st.sampled_from(t1))),
                                    priority=data.draw(st.integers(0, 2)),
                                    instructions=[ofp.ApplyActions([ofp.Output(data.draw(st.integers(3, 4)))])]))
        pair.receive(1, pool[i])
    pair.check_counters()


#: A small space of UDP flows (so rules and frames meet often), and masks that cut across it.
FLOW_IPS = ["10.0.0.1", "10.0.0.2", "10.0.1.2", "10.1.0.2"]
FLOW_PORTS = [53, 54, 80]
IP_MASKS = ["255.255.255.255", "255.255.255.0", "255.255.0.0", "255.0.0.0", "255.255.255.254", "0.0.255.255"]


@st.composite
def flow_frames(draw) -> bytes:
    return udp(src=draw(st.sampled_from([MAC1, MAC3])), ip_src=draw(st.sampled_from(FLOW_IPS)),
               ip_dst=draw(st.sampled_from(FLOW_IPS)), sport=draw(st.sampled_from(FLOW_PORTS)),
               dport=draw(st.sampled_from(FLOW_PORTS)))


@st.composite
def flow_space_matches(draw) -> dict:
    """1 to 3 of eth_src, ipv4_src/dst (masked or not), udp_src/dst, sometimes in_port."""
    m: dict = {}
    for name in draw(st.lists(st.sampled_from(["eth_src", "ipv4_src", "ipv4_dst", "udp_src", "udp_dst", "in_port"]),
                              unique=True, min_size=1, max_size=3)):
        if name == "eth_src":
            m[name] = draw(st.sampled_from([MAC1, MAC3]))
        elif name == "in_port":
            m[name] = draw(st.sampled_from([1, 2]))
        elif name.startswith("ipv4"):
            ip, mask = draw(st.sampled_from(FLOW_IPS)), draw(st.sampled_from(IP_MASKS))
            masked = str(ipaddress.IPv4Address(int(ipaddress.IPv4Address(ip)) & int(ipaddress.IPv4Address(mask))))
            m[name] = ip if mask == IP_MASKS[0] else (masked, mask)
        else:
            m[name] = draw(st.sampled_from(FLOW_PORTS))
    if any(k.startswith(("ipv4", "udp")) for k in m):
        m["eth_type"] = 0x0800
    if any(k.startswith("udp") for k in m):
        m["ip_proto"] = 17
    return m


@st.composite
def flow_space_mods(draw, table_id: int | None = None) -> ofp.FlowMod:
    """A flow-mod of table 0 or 1: output, or (table 0) a rewrite of ipv4_dst and goto 1."""
    if table_id is None:
        table_id = draw(st.integers(0, 1))
    acts = [ofp.Output(draw(st.integers(2, 4)))]
    instructions = [ofp.ApplyActions(acts)]
    if table_id == 0 and draw(st.integers(0, 2)) == 0:
        if draw(st.booleans()):
            acts.insert(0, ofp.SetField("ipv4_dst", draw(st.sampled_from(FLOW_IPS))))
        instructions = [ofp.ApplyActions(acts[:-1]), ofp.GotoTable(1)]
    match = draw(flow_space_matches())
    if any(i.TYPE == OFPIT_APPLY and any(isinstance(a, ofp.SetField) for a in i.actions) for i in instructions):
        match.update(eth_type=0x0800)
    command = draw(st.sampled_from([OFPFC.ADD] * 5 + [OFPFC.MODIFY_STRICT, OFPFC.DELETE_STRICT, OFPFC.DELETE,
                                                      OFPFC.MODIFY]))
    return ofp.FlowMod(table_id=table_id, command=command, match=ofp.Match(match),
                       priority=draw(st.sampled_from([1, 5, 5, 10, 20])),
                       hard_timeout=draw(st.sampled_from([0, 0, 0, 1])), instructions=instructions)


@settings(SETTINGS, max_examples=EXAMPLES)
@given(st.lists(flow_frames(), min_size=2, max_size=8), st.lists(flow_space_mods(), min_size=1, max_size=8),
       st.data())
def test_flow_changes_on_cached_flows_agree(pool, rules, data):
    """Rules of two tables over a small space of UDP flows (overlapping,
    beside one another, masked across one another, at every priority),
    changed between frames while the frames' decisions are cached: the
    checks of selective invalidation, densely."""
    pair = Pair()
    pair.handle(ofp.FlowMod(table_id=0, priority=0, instructions=[ofp.ApplyActions([ofp.Output(OFPP.CONTROLLER)])]))
    pair.handle(ofp.FlowMod(table_id=1, priority=0, instructions=[ofp.ApplyActions([ofp.Output(2)])]))
    for fm in rules:
        pair.handle(dataclasses.replace(fm, command=OFPFC.ADD))
    for _ in range(data.draw(st.integers(2, 8))):
        for i in data.draw(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=2 * len(pool))):
            pair.receive(data.draw(st.sampled_from([1, 1, 2])), pool[i])
        for fm in data.draw(st.lists(st.one_of(flow_space_mods(), flow_space_mods(),
                                               st.sampled_from(rules)).map(Shown), max_size=4)):
            if data.draw(st.booleans()):
                pair.flow_mod_raw(fm.value)
            else:
                pair.handle(fm.value)
        if data.draw(st.integers(0, 4)) == 0:
            pair.advance(1.0)
    pair.check_counters()


# --- targeted cases -----------------------------------------------------------------------------------

def fp(rig: Rig):
    return rig.dp.fastpath


def test_a_flow_is_answered_from_the_exact_match_cache():
    rig = Rig()
    rig.flow({"in_port": 1}, [ofp.Output(2)])
    for i in range(5):
        rig.send(1, udp(payload=b"x" * i))
    assert len(rig.out(2)) == 5
    s = fp(rig).stats()
    assert (s["misses"], s["megaflow_hits"], s["emc_hits"]) == (1, 0, 4)
    [(mask, _, d)] = fp(rig).megaflows()
    assert mask == ((fk.IN_PORT, fk.PRESENT | 0xFFFFFFFF),) and d.simple
    [e] = rig.dp.flows()
    assert (e.packet_count, e.byte_count) == (5, sum(len(udp(payload=b"x" * i)) for i in range(5)))


def test_a_megaflow_is_only_as_wide_as_the_subtables_examined():
    rig = Rig()
    rig.flow({"eth_type": 0x0800, "ipv4_dst": ("10.0.0.0", "255.255.255.0")}, [ofp.Output(2)], priority=10)
    rig.flow({"eth_type": 0x0800, "ip_proto": 6, "tcp_dst": 22}, [], priority=20)     # ssh: drop
    rig.send(1, udp(ip_dst="10.0.0.5", sport=1))
    rig.send(1, udp(ip_dst="10.0.0.6", sport=2))        # same megaflow: only the /24 and ip_proto examined
    rig.send(1, tcp(ip_dst="10.0.0.7", dport=80))
    rig.send(1, tcp(ip_dst="10.0.0.7", dport=22))
    assert len(rig.out(2)) == 3
    s = fp(rig).stats()
    assert (s["misses"], s["megaflow_hits"]) == (3, 1)
    # The ssh subtable (priority 20) is examined first; a hit there ends the
    # lookup, a miss goes on to the /24 subtable.
    masks = {m for m, _, _ in fp(rig).megaflows()}
    assert {tuple(c for c, _ in m) for m in masks} == {(fk.ETH_TYPE, fk.IP_PROTO, fk.TCP_DST),
                                                        (fk.ETH_TYPE, fk.IP_PROTO, fk.IPV4_DST, fk.TCP_DST)}
    for m in masks:
        assert dict(m).get(fk.IPV4_DST, fk.PRESENT | 0xFFFFFF00) == fk.PRESENT | 0xFFFFFF00


def test_a_high_priority_hit_does_not_examine_lower_subtables():
    rig = Rig()
    rig.flow({"in_port": 1}, [ofp.Output(2)], priority=100)
    rig.flow({"eth_type": 0x0800, "ipv4_src": "10.0.0.1"}, [ofp.Output(3)], priority=50)
    rig.send(1, udp())
    rig.send(2, udp())
    assert rig.out(2) == [udp()] and rig.out(3) == [udp()]
    masks = sorted(tuple(c for c, _ in m) for m, _, _ in fp(rig).megaflows())
    assert masks == [(fk.IN_PORT,), (fk.IN_PORT, fk.ETH_TYPE, fk.IPV4_SRC)]


def test_set_field_then_match_in_the_next_table():
    rig = Rig()
    rig.flow({"eth_type": 0x0800}, instructions=[ofp.ApplyActions([ofp.SetField("ipv4_dst", "10.9.9.9")]),
                                                 ofp.GotoTable(1)])
    rig.flow({"eth_type": 0x0800, "ipv4_dst": "10.9.9.9"}, [ofp.Output(2)], table_id=1)
    for dst in ("10.0.0.2", "10.0.0.3", "10.0.0.4"):
        rig.send(1, udp(ip_dst=dst))
    assert len(rig.out(2)) == 3
    # the original ipv4_dst does not matter (only that the packet has one): one megaflow
    [(mask, _, _)] = fp(rig).megaflows()
    assert dict(mask)[fk.IPV4_DST] == fk.PRESENT
    assert fp(rig).stats()["misses"] == 1


def test_pop_vlan_then_match_the_inner_tag_is_not_cached():
    rig = Rig()
    rig.flow({"vlan_vid": (0x1000, 0x1000)}, instructions=[ofp.ApplyActions([ofp.PopVlan()]), ofp.GotoTable(1)])
    rig.flow({"vlan_vid": 0x1000 | 30}, [ofp.Output(2)], table_id=1)
    rig.flow({"vlan_vid": 0x1000 | 40}, [ofp.Output(3)], table_id=1)

    def qinq(inner):
        return raw(Ether(src=MAC1, dst=MAC2) / Dot1Q(vlan=10, type=0x8100) / Dot1Q(vlan=inner) / IP() / UDP())
    for inner in (30, 40, 30, 40):
        rig.send(1, qinq(inner))
    assert len(rig.out(2)) == 2 and len(rig.out(3)) == 2
    assert fp(rig).stats()["uncacheable"] == 4


def agree(mods: list, frames: list[bytes], rounds: int = 3) -> Pair:
    pair = Pair()
    for m in mods:
        pair.handle(m)
    for _ in range(rounds):
        for f in frames:
            pair.receive(1, f)
    pair.check_counters()
    return pair


def goto1(match: dict, acts: list) -> ofp.FlowMod:
    return ofp.FlowMod(match=ofp.Match(match), instructions=[ofp.ApplyActions(acts), ofp.GotoTable(1)])


def in1(match: dict, port: int, priority: int = 1) -> ofp.FlowMod:
    return ofp.FlowMod(table_id=1, priority=priority, match=ofp.Match(match),
                       instructions=[ofp.ApplyActions([ofp.Output(port)])])


def test_fields_set_from_bytes_the_key_lacks_are_not_cached():
    """After these actions a field's value comes from bytes the flow key does
    not hold (an option, an inner header): a later lookup on it is not cached."""
    ns = IPv6(src="fe80::1", dst="ff02::1") / ICMPv6ND_NS(tgt="fe80::2")
    with_sll = raw(Ether(src=MAC1, dst=MAC2) / ns / ICMPv6NDOptSrcLLAddr(lladdr="00:00:00:00:00:00"))
    without = raw(Ether(src=MAC1, dst=MAC2) / ns)
    nd = {"eth_type": 0x86DD, "ip_proto": 58, "icmpv6_type": 135}
    pair = agree([goto1(nd, [ofp.SetField("ipv6_nd_sll", MAC2)]), in1({**nd, "ipv6_nd_sll": MAC2}, 2),
                  in1({}, 3, 0)], [with_sll, without])
    assert pair.sub.dp.fastpath.stats()["uncacheable"] == 6

    inner = [raw(Ether(src=MAC1, dst=MAC2, type=0x8847) / MPLS(label=16, s=1) / IP(dst=d) / UDP())
             for d in ("10.0.0.1", "10.0.0.2")]
    agree([goto1({"eth_type": 0x8847}, [ofp.PopMpls(0x0800)]),
           in1({"eth_type": 0x0800, "ipv4_dst": "10.0.0.2"}, 2), in1({}, 3, 0)], inner)

    retyped = [raw(Ether(src=MAC1, dst=MAC2, type=0x1234) / IP(dst=d) / UDP()) for d in ("10.0.0.1", "10.0.0.2")]
    agree([goto1({"eth_type": 0x1234}, [ofp.SetField("eth_type", 0x0800)]),
           in1({"eth_type": 0x0800, "ipv4_dst": "10.0.0.2"}, 2), in1({}, 3, 0)], retyped)

    pbb = [raw(Ether(src=MAC1, dst=MAC2, type=0x88E7)) + bytes(4) + raw(Ether(src=MAC3, dst=d) / IP() / UDP())
           for d in (MAC1, MAC2)]
    agree([goto1({"eth_type": 0x88E7}, [ofp.PopPbb()]), in1({"eth_dst": MAC2}, 2), in1({}, 3, 0)], pbb)


def test_dscp_remarking_meter_then_match_dscp():
    af11 = raw(Ether(src=MAC1, dst=MAC2) / IP(tos=10 << 2) / UDP())
    remark = ofp.MeterMod(OFPMC.ADD, OFPMF.PKTPS | OFPMF.BURST, 1, [ofp.MeterBandDscpRemark(1, 1, 1)])
    flow = ofp.FlowMod(match=ofp.Match(eth_type=0x0800), instructions=[ofp.Meter(1), ofp.GotoTable(1)])
    pair = agree([remark, flow, in1({"eth_type": 0x0800, "ip_dscp": 10}, 2), in1({}, 3, 0)], [af11], rounds=4)
    assert pair.sub.dp.fastpath.stats()["uncacheable"] == 4
    # remarking with nothing looking at the DSCP afterwards is cached
    pair = agree([remark, ofp.FlowMod(match=ofp.Match(eth_type=0x0800),
                                      instructions=[ofp.Meter(1), ofp.ApplyActions([ofp.Output(2)])])],
                 [af11], rounds=4)
    assert pair.sub.dp.fastpath.stats()["emc_hits"] == 3


def test_push_mpls_then_match_the_label():
    rig = Rig()
    rig.flow({"eth_type": 0x0800}, instructions=[
        ofp.ApplyActions([ofp.PushMpls(), ofp.SetField("mpls_label", 77)]), ofp.GotoTable(1)])
    rig.flow({"eth_type": 0x8847, "mpls_label": 77}, [ofp.Output(2)], table_id=1)
    for i in range(3):
        rig.send(1, udp(sport=i))
    assert len(rig.out(2)) == 3
    assert fp(rig).stats()["misses"] == 1


def test_select_group_is_stable_per_flow_and_cached_per_flow():
    rig = Rig()
    rig.handle(ofp.GroupMod(OFPGC.ADD, OFPGT.SELECT, 1, [ofp.Bucket([ofp.Output(p)], weight=1) for p in (2, 3, 4)]))
    rig.flow({}, [ofp.Group(1)])
    ref = Rig(fastpath=False)
    ref.handle(ofp.GroupMod(OFPGC.ADD, OFPGT.SELECT, 1, [ofp.Bucket([ofp.Output(p)], weight=1) for p in (2, 3, 4)]))
    ref.flow({}, [ofp.Group(1)])
    for rnd in range(2):
        for sport in range(20):
            rig.send(1, udp(sport=sport))
            ref.send(1, udp(sport=sport))
    assert rig.outputs() == ref.outputs()
    assert len({k for _, k, _ in fp(rig).megaflows()}) == 20
    assert fp(rig).stats()["emc_hits"] == 20


def test_meter_applies_per_packet_on_cache_hits():
    rig = Rig()
    rig.handle(ofp.MeterMod(OFPMC.ADD, OFPMF.PKTPS | OFPMF.BURST, 1, [ofp.MeterBandDrop(2, 3)]))
    rig.flow({}, instructions=[ofp.Meter(1), ofp.ApplyActions([ofp.Output(2)])])
    for _ in range(10):
        rig.send(1, udp())
    assert len(rig.out(2)) == 3                            # the burst
    rig.clock.advance(1.0)
    for _ in range(10):
        rig.send(1, udp())
    assert len(rig.out(2)) == 2                            # the rate
    [stats] = rig.handle(ofp.MeterStatsRequest())[0].body
    assert stats.packet_in_count == 20 and stats.band_stats[0].packet_band_count == 15
    assert fp(rig).stats()["emc_hits"] >= 15


def test_dec_ttl_is_replayed_not_remembered():
    rig = Rig()
    rig.flow({"eth_type": 0x0800}, [ofp.DecNwTtl(), ofp.Output(2)])
    rig.send(1, udp(ttl=64))
    rig.send(1, udp(ttl=1))                                    # same EMC key: TTL is not part of it
    rig.send(1, udp(ttl=2))
    out = rig.out(2)
    assert [IP(f[14:]).ttl for f in out] == [63, 1]
    [pin] = rig.take_events(ofp.PacketIn)
    assert pin.reason == ofp.OFPR.INVALID_TTL
    assert fp(rig).stats()["emc_hits"] == 2


@settings(SETTINGS, max_examples=max(50, EXAMPLES // 2))
@given(st.lists(st.tuples(st.sampled_from(["udp", "tcp", "icmp"]), st.integers(0, 255),
                          st.one_of(st.sampled_from([0, 0xFFFF, 0xFF00, 0xFEFF, 0xFF01, 0x00FF, 0x0100]), u16), u8),
                min_size=1, max_size=6), st.integers(1, 2), st.booleans())
def test_routed_frames_rewritten_in_place_agree(flows, decrements, flood):
    """The L3 hop (Ethernet addresses rewritten, TTL decremented, in one or
    two tables) replayed on the bytes of fast-key frames: same bytes,
    checksums and invalid-TTL packet-ins as the reference, whatever the TTL
    and checksum."""
    mods = [ofp.SetConfig(miss_send_len=128),
            ofp.FlowMod(match=ofp.Match(eth_type=0x0800), instructions=[
                ofp.ApplyActions([ofp.SetField("eth_src", MAC3), ofp.DecNwTtl()]), ofp.GotoTable(1)])]
    acts = [ofp.SetField("eth_dst", MAC2)] + [ofp.DecNwTtl()] * (decrements - 1)
    acts.append(ofp.Output(OFPP.FLOOD) if flood else ofp.Output(2))
    mods.append(ofp.FlowMod(table_id=1, match=ofp.Match(eth_type=0x0800), instructions=[ofp.ApplyActions(acts)]))
    frames = []
    for kind, ttl, csum, tos in flows:
        l4 = UDP(sport=53) if kind == "udp" else TCP(dport=80) if kind == "tcp" else ICMP()
        frame = bytearray(raw(Ether(src=MAC1, dst=MAC2) / IP(ttl=ttl, tos=tos) / l4 / b"data"))
        frame[24:26] = csum.to_bytes(2, "big")         # any checksum, right or not
        frames.append(bytes(frame))
    pair = agree(mods, frames, rounds=3)
    dying = sum(1 for _, ttl, _, _ in flows if ttl <= decrements)     # cut short: never cached
    assert pair.sub.dp.fastpath.stats()["misses"] <= len(frames) + 2 * dying


def test_idle_timeout_sees_cache_hits():
    rig = Rig()
    rig.flow({"in_port": 1}, [ofp.Output(2)], idle_timeout=2, flags=ofp.OFPFF.SEND_FLOW_REM)
    for _ in range(5):
        rig.send(1, udp())
        rig.clock.advance(1.5)
        rig.dp.tick()
    assert len(rig.dp.flows()) == 1                        # kept alive by packets answered from the cache
    rig.clock.advance(2.5)
    rig.dp.tick()
    assert rig.dp.flows() == []
    [rem] = rig.take_events(ofp.FlowRemoved)
    assert rem.reason == ofp.OFPRR.IDLE_TIMEOUT and rem.packet_count == 5
    rig.send(1, udp())
    assert rig.out(2) == [udp()] * 5                       # the removed flow no longer forwards


def test_every_change_reaches_the_cache():
    rig = Rig()
    rig.handle(ofp.GroupMod(OFPGC.ADD, OFPGT.FF, 1, [ofp.Bucket([ofp.Output(2)], watch_port=2),
                                                     ofp.Bucket([ofp.Output(3)], watch_port=3)]))
    rig.flow({}, [ofp.Group(1)])

    def route() -> list[int]:
        rig.send(1, udp())
        return sorted(rig.outputs())
    assert route() == [2] and route() == [2]
    rig.port(2).set_link(False)                            # fast failover
    assert route() == [3]
    rig.port(2).set_link(True)
    assert route() == [2]
    rig.handle(ofp.PortMod(2, "02:00:00:00:01:02", ofp.OFPPC.PORT_DOWN, ofp.OFPPC.PORT_DOWN))
    assert route() == [3]
    rig.handle(ofp.GroupMod(OFPGC.MODIFY, OFPGT.INDIRECT, 1, [ofp.Bucket([ofp.Output(4)])]))
    assert route() == [4]
    rig.flow({"in_port": 1}, [ofp.Output(2), ofp.Output(3)], priority=40000)
    assert route() == [3]                                  # 2 is down
    rig.flow({"in_port": 1}, [], priority=40000, command=OFPFC.DELETE_STRICT)
    assert route() == [4]
    rig.flow({}, [ofp.Output(1), ofp.Output(3)], hard_timeout=1, priority=50000)
    assert route() == [3]
    rig.clock.advance(1.0)
    rig.dp.tick()                                          # the timeout removes it
    assert route() == [4]
    s = fp(rig).stats()
    assert s["flushes"] >= 4 and s["revalidations"] >= 4  # ports and groups flush; flow changes revalidate


def test_packet_out_does_not_empty_the_cache():
    rig = Rig()
    rig.flow({}, [ofp.Output(2)])
    rig.send(1, udp())
    g = rig.dp.generation
    rig.handle(ofp.PacketOut(actions=[ofp.Output(3)], data=udp(), in_port=OFPP.CONTROLLER))
    assert rig.dp.generation == g
    rig.send(1, udp())
    assert fp(rig).stats()["emc_hits"] == 1


def test_flow_mod_with_a_bad_buffer_still_moves_the_generation():
    rig = Rig()
    rig.flow({}, [ofp.Output(3)], priority=1)
    rig.send(1, udp())
    rig.send(1, udp())
    g = rig.dp.generation
    with pytest.raises(SwitchError) as unknown:             # the flow is added, the packet-out part fails
        rig.flow({}, [ofp.Output(2)], buffer_id=1234, priority=7)
    assert (unknown.value.type, unknown.value.code) == (ofp.OFPET.BAD_REQUEST, ofp.OFPBRC.BUFFER_UNKNOWN)
    assert rig.dp.generation > g and len(rig.dp.flows()) == 2
    rig.send(1, udp())                                     # the cached decision is gone
    assert rig.out(3) == [udp()] * 2 and rig.out(2) == [udp()]


def test_normal_is_never_cached():
    rig = Rig()
    rig.flow({}, [ofp.Output(OFPP.NORMAL)])
    rig.send(1, udp(src=MAC1, dst=MAC2))
    rig.send(2, udp(src=MAC2, dst=MAC1))
    rig.send(1, udp(src=MAC1, dst=MAC2))
    assert fp(rig).stats()["uncacheable"] == 3
    assert len(rig.out(2)) == 2 and len(rig.out(1)) == 1


def test_frag_drop_applies_on_the_fast_key_path():
    rig = Rig()
    rig.flow({}, [ofp.Output(2)])
    frag = raw(Ether(src=MAC1, dst=MAC2) / IP(flags="MF") / UDP() / (b"x" * 20))
    rig.send(1, frag)
    rig.send(1, frag)
    rig.handle(ofp.SetConfig(flags=1, miss_send_len=128))        # OFPC_FRAG_DROP
    rig.send(1, frag)
    rig.send(1, frag)
    assert len(rig.out(2)) == 2


def test_fast_key_decides_the_flow_key():
    """Frames with one fast key have one flow key."""
    frames = [udp(), udp(ttl=3), udp(id=7), udp(payload=b"q" * 40), tcp(), tcp(ttl=9, id=3),
              udp(vlan=5), udp(vlan=5, ttl=2, id=9), udp(vlan=6)]
    seen: dict = {}
    for f in frames:
        k = fk.fast_key(f)
        assert k is not None
        seen.setdefault(k, set()).add(tuple(fk.Packet(f, 1).key))
    assert len(seen) == 4 and all(len(v) == 1 for v in seen.values())
    assert fk.fast_key(raw(Ether() / IP(options=b"\x01\x01\x01\x00") / UDP())) is None
    assert fk.fast_key(raw(Ether() / Dot1Q(type=0x8100) / Dot1Q() / IP() / UDP())) is None      # two tags
    assert fk.fast_key(raw(Ether(type=0x88A8) / Dot1Q() / IP() / UDP())) is None                 # 802.1ad
    assert fk.fast_key(raw(Ether() / Dot1Q() / IP() / TCP())[:54]) is None      # tagged, TCP cut short
    assert fk.fast_key(raw(Ether() / IP() / TCP())[:50]) is None          # TCP header cut short
    assert fk.fast_key(raw(Ether() / IP(frag=2) / UDP())) is None


def _segment(flags: str, seq: int, size: int = 20) -> bytes:
    """A segment of one TCP connection (10.0.0.1:40000 -> 10.0.0.2:80)."""
    return raw(Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2")
               / TCP(sport=40000, dport=80, flags=flags, seq=seq) / (b"d" * size))


TCP4 = {"eth_type": 0x0800, "ip_proto": 6}


@pytest.mark.parametrize("batched", [False, True], ids=["one_by_one", "batches"])
def test_a_fin_after_cached_data_of_its_connection_takes_the_tcp_flags_flow(batched):
    """The data of a connection is answered from the exact-match cache; then
    its FIN and RST (same addresses, ports and length) must not replay that
    decision: the fast key holds the TCP flags. One frame at a time
    (Datapath.receive) and in read batches (receive_batch, no checks of the
    frame but its protocol byte)."""
    rig = Rig()
    rig.flow({**TCP4, "tcp_dst": 80}, [ofp.Output(2)], priority=10)                   # the connection
    rig.flow({**TCP4, "tcp_flags": (0x001, 0x001)}, [ofp.Output(3)], priority=20)     # +fin
    rig.flow({**TCP4, "tcp_flags": (0x004, 0x004)}, [ofp.Output(4)], priority=20)     # +rst

    def send(frames):
        if batched:
            rig.dp.receive_batch(1, frames)
        else:
            for f in frames:
                rig.send(1, f)

    data = [_segment("PA", 1000 + i) for i in range(6)]
    send(data[:1])
    send(data[1:])
    assert rig.out(2) == data
    s = fp(rig).stats()
    assert (s["misses"], s["emc_hits"]) == (1, 5)                       # the data: cached, then hits
    fin, rst = _segment("FA", 2000), _segment("RA", 2001)
    assert (len(fin), len(rst)) == (len(data[0]),) * 2
    send([fin, data[0], rst, data[1]])
    assert rig.out(2) == data[:2] and rig.out(3) == [fin] and rig.out(4) == [rst]
    send([_segment("FA", 3000), _segment("RA", 3001)])                  # now cached too
    assert rig.out(3) == [_segment("FA", 3000)] and rig.out(4) == [_segment("RA", 3001)]
    counts = {e.priority if "tcp_dst" in e.match else e.match["tcp_flags"]: e.packet_count for e in rig.dp.flows()}
    assert counts == {10: 8, (0x001, 0x001): 2, (0x004, 0x004): 2}
    s = fp(rig).stats()
    assert (s["misses"], s["emc_hits"]) == (3, 9)
    # the data's megaflow holds the bits of the flags the two subtables examined, and no more:
    # a pure ACK (other flags, so another fast key) shares it
    [(mask, _, _)] = [m for m in fp(rig).megaflows() if m[2].ops[0][2].priority == 10]
    assert dict(mask)[fk.TCP_FLAGS] == fk.PRESENT | 0x005
    send([_segment("A", 4000)])
    assert rig.out(2) == [_segment("A", 4000)] and fp(rig).stats()["megaflow_hits"] == 1


def test_an_icmp_frame_in_a_batch_never_takes_another_icmp_type_s_decision():
    """The batch path reads untagged UDP and TCP frames without checks; an
    ICMP frame read that way would give the 4 bytes of its type, code and
    checksum where an ICMP fast key has 2 (type and code): an echo reply
    with checksum 0x0800 would look like the echo request's key (type 8,
    code 0). ICMP frames take the checked path."""
    rig = Rig()
    icmp4 = {"eth_type": 0x0800, "ip_proto": 1}
    rig.flow({**icmp4, "icmpv4_type": 8}, [ofp.Output(2)])
    rig.flow({**icmp4, "icmpv4_type": 0}, [ofp.Output(3)])
    l3 = Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2")
    request = raw(l3 / ICMP(type=8, code=0) / (b"p" * 16))
    reply = raw(l3 / ICMP(type=0, code=0, chksum=0x0800) / (b"p" * 16))
    assert len(reply) >= fk.EMC_MIN_LEN and fk.EMC_KEY(reply) == fk.fast_key(request)
    rig.dp.receive_batch(1, [request])
    rig.dp.receive_batch(1, [reply])
    assert rig.out(2) == [request] and rig.out(3) == [reply]


def test_a_frame_looping_back_while_recorded_is_forwarded():
    """Two datapaths wired back to back that flood: frames come back into the
    datapath that is recording the one that sent them."""
    a, b = Rig(n_ports=0), Rig(n_ports=0)
    ra, rb = Rig(n_ports=0, fastpath=False), Rig(n_ports=0, fastpath=False)
    for x, y in ((a, b), (ra, rb)):
        for rig in (x, y):
            for i in (1, 2):
                rig.dp.add_port(MemoryPort(i, f"p{i}", f"02:00:00:00:01:0{i}", clock=rig.clock))
        wire(x.port(1), y.port(1))
        ttl_loop = [ofp.DecNwTtl(), ofp.Output(1), ofp.Output(OFPP.IN_PORT), ofp.Output(2)]
        x.flow({"eth_type": 0x0800}, ttl_loop)
        y.flow({"eth_type": 0x0800}, ttl_loop)
    for x in (a, ra):
        x.dp.receive(2, udp(ttl=6))
        x.dp.receive(2, udp(ttl=6))
    for x, y in ((a, ra), (b, rb)):
        for i in (1, 2):
            assert x.port(i).sent == y.port(i).sent
    assert len(b.port(2).sent) == 4 and fp(a).stats()["uncacheable"] > 0


def test_decisions_describe_themselves():
    rig = Rig()
    rig.flow({}, [ofp.SetField("eth_dst", MAC3), ofp.Output(2)])
    rig.send(1, udp())
    [(_, _, d)] = fp(rig).megaflows()
    assert isinstance(d, Decision) and not d.simple
    assert "SETF" in repr(d) and "OUT 2" in repr(d)


def test_a_port_that_raises_leaves_no_frames_behind():
    """Frames collected per decision are handed over once: a port that
    raises in the middle of a batch leaves no frames of other decisions
    behind, to come out late or block later batches."""
    rig = Rig()
    rig.flow({"eth_type": 0x0800, "ip_proto": 17, "udp_src": 1}, [ofp.Output(2)])
    rig.flow({"eth_type": 0x0800, "ip_proto": 17, "udp_src": 2}, [ofp.Output(3)])
    to2 = [udp(sport=1, payload=bytes([i]) * 20) for i in range(3)]
    to3 = [udp(sport=2, payload=bytes([i]) * 20) for i in range(3)]
    rig.dp.receive_batch(1, [to2[0], to3[0]])                # records both decisions
    assert rig.out(2) == to2[:1] and rig.out(3) == to3[:1]
    port = rig.port(2)
    real = port.send_many

    def broken(batch):
        raise OSError("the port went away")

    port.send_many = broken
    with pytest.raises(OSError, match="the port went away"):
        rig.dp.receive_batch(1, [to2[1], to3[1]])
    port.send_many = real
    rig.dp.receive_batch(1, [to2[2], to3[2]])
    assert rig.out(2) == to2[2:]
    assert rig.out(3) in (to3[2:], to3[1:])                # sent before or after the failure, never later


def test_an_l3_hop_on_tagged_and_untagged_frames_of_one_megaflow():
    """A router's decision (new MACs, TTL - 1) shared by tagged and untagged
    frames: the byte rewrite at fixed offsets is for untagged frames only;
    a tagged frame's TTL and checksum sit 4 bytes further on."""
    hop = ofp.FlowMod(match=ofp.Match(in_port=1, eth_type=0x0800), instructions=[ofp.ApplyActions([
        ofp.SetField("eth_src", MAC3), ofp.SetField("eth_dst", MAC1), ofp.DecNwTtl(), ofp.Output(2)])])
    # (ids of 0x4000 and more: in a tagged frame, the id's high byte sits where an untagged one has its TTL)
    frames = [udp(ttl=9), udp(vlan=7, ttl=9, id=0x4000), tcp(ttl=2), udp(vlan=7, ttl=1, id=0x9000),
              udp(vlan=8, ttl=30, id=0x7777)]
    pair = agree([hop], frames)
    assert pair.sub.dp.tables[0].matched_count == 15
    assert pair.sub.dp.fastpath.stats()["emc_hits"] == 11          # all but the first of each fast key


# --- routers: L3 hops compiled, and megaflows as wide as the routes ----------------------------------

ROUTER_MAC, HOST_B = "02:77:00:00:00:01", "02:77:00:00:00:0b"
#: the router's own addresses (to the controller, above every route) and its routes (prefix, length)
OWN = ["10.1.1.1", "10.1.2.1", "2001:db8:1::1"]
ROUTES = [("20.0.0.0", 8), ("21.0.0.0", 8), ("21.5.0.0", 16), ("10.1.2.0", 24), ("2001:db8:2::", 48),
          ("2001:db8::", 32)]
#: destinations: in the routes, beside them, the router's own
DESTS = ["20.0.0.1", "20.77.3.4", "21.0.0.9", "21.5.3.3", "21.6.0.1", "10.1.2.10", "10.1.1.1", "10.1.2.1",
         "22.0.0.1", "2001:db8:2::10", "2001:db8:5::1", "2001:db8:1::1", "2001:db9::1"]


def route_mod(prefix: str, length: int, command=OFPFC.ADD) -> ofp.FlowMod:
    """A route in table 2 as the router app makes one: longest prefix by priority, TTL
    decremented, source MAC the router's, the next hop into metadata, then table 3."""
    net = ipaddress.ip_network(f"{prefix}/{length}")
    field, et = ("ipv4_dst", 0x0800) if net.version == 4 else ("ipv6_dst", 0x86DD)
    return ofp.FlowMod(table_id=2, command=command, priority=100 + length, match=ofp.Match(
        {"metadata": 1, "eth_type": et, field: (str(net.network_address), str(net.netmask))}), instructions=[
        ofp.ApplyActions([ofp.DecNwTtl(), ofp.SetField("eth_src", ROUTER_MAC)]),
        ofp.WriteMetadata(0x100, 0xF00), ofp.GotoTable(3)])


def router_tables(routes=ROUTES) -> list:
    """classify (0) -> router (1: the router's MAC, its VRF into metadata) -> route (2) -> next hop (3)."""
    mods = [ofp.SetConfig(miss_send_len=128),
            ofp.FlowMod(table_id=0, match=ofp.Match(in_port=1), instructions=[ofp.GotoTable(1)])]
    for et in (0x0800, 0x86DD):
        mods.append(ofp.FlowMod(table_id=1, priority=10, match=ofp.Match(eth_dst=ROUTER_MAC, eth_type=et),
                                instructions=[ofp.WriteMetadata(1, 0xFF), ofp.GotoTable(2)]))
    for addr in OWN:
        field, et = ("ipv4_dst", 0x0800) if ":" not in addr else ("ipv6_dst", 0x86DD)
        mods.append(ofp.FlowMod(table_id=2, priority=1000, match=ofp.Match({"metadata": 1, "eth_type": et,
                                                                             field: addr}),
                                instructions=[ofp.ApplyActions([ofp.Output(OFPP.CONTROLLER)])]))
    mods.append(ofp.FlowMod(table_id=2, priority=1, match=ofp.Match(metadata=1),
                            instructions=[ofp.ApplyActions([ofp.Output(OFPP.CONTROLLER)])]))
    mods += [route_mod(prefix, length) for prefix, length in routes]
    mods.append(ofp.FlowMod(table_id=3, priority=10, match=ofp.Match(metadata=(0x101, 0xFFF)), instructions=[
        ofp.ApplyActions([ofp.SetField("eth_dst", HOST_B), ofp.Output(2)])]))
    return mods


@st.composite
def routed_frames(draw) -> bytes:
    """Frames to the router's MAC, to any destination: untagged or tagged, IPv4 with or
    without options, fragments (first, later), IPv6, a broken IPv4 header; any TTL or hop
    limit (0 and 1 included), right or wrong IPv4 checksums."""
    dst = draw(st.sampled_from(DESTS))
    kind = draw(st.sampled_from(["udp", "udp", "tcp", "icmp", "vlan", "options", "frag", "frag_later", "broken"]))
    ttl = draw(st.sampled_from([0, 1, 2, 3, 64, 255]))
    l2 = Ether(src=MAC1, dst=ROUTER_MAC)
    payload = b"r" * draw(st.integers(0, 20))
    sport = draw(st.sampled_from([1000, 1001]))
    if ":" in dst:
        return raw(l2 / IPv6(src="2001:db8:1::10", dst=dst, hlim=ttl) / UDP(sport=sport) / payload)
    ip = dict(src="10.1.1.10", dst=dst, ttl=ttl, id=draw(u16), tos=draw(st.sampled_from([0, 0xb8])))
    if kind == "vlan":
        frame = raw(l2 / Dot1Q(vlan=7) / IP(**ip) / UDP(sport=sport) / payload)
    elif kind == "options":
        frame = raw(l2 / IP(options=b"\x01\x01\x01\x00", **ip) / UDP(sport=sport) / payload)
    elif kind == "frag":
        frame = raw(l2 / IP(flags="MF", **ip) / UDP(sport=sport) / payload)
    elif kind == "frag_later":
        frame = raw(l2 / IP(frag=draw(st.integers(1, 100)), **ip) / payload)
    elif kind == "broken":                              # eth_type IPv4, header too short to be one
        return raw(l2 / IP(**ip))[:14 + draw(st.integers(0, 19))]
    else:
        l4 = UDP(sport=sport) if kind == "udp" else TCP(sport=sport) if kind == "tcp" else ICMP()
        frame = raw(l2 / IP(**ip) / l4 / payload)
    if draw(st.integers(0, 3)) == 0:                    # any checksum, right or not
        b = bytearray(frame)
        at = 24 if kind != "vlan" else 28
        b[at:at + 2] = draw(st.sampled_from([0, 0xFFFF, 0xFEFF, 0x0100, draw(u16)])).to_bytes(2, "big")
        frame = bytes(b)
    return frame


@settings(SETTINGS, max_examples=EXAMPLES)
@given(st.lists(routed_frames(), min_size=1, max_size=10),
       st.lists(st.tuples(st.sampled_from(["one", "batch", "change"]), st.lists(st.integers(0, 9), max_size=12),
                          st.sampled_from(ROUTES + [("21.5.3.0", 24), ("20.128.0.0", 9), ("2001:db8:2:1::", 64)]),
                          st.booleans()), min_size=1, max_size=8))
def test_routed_frames_decide_as_the_reference_pipeline(pool, steps):
    """A router's tables (own addresses above the routes, routes by priority, a next-hop
    table): every frame, one by one and in batches, leaves as the reference pipeline
    sends it (bytes, checksums, invalid-TTL packet-ins), with routes added and removed
    between frames (megaflows as wide as the routes: prefix tracking)."""
    pair = Pair()
    for m in router_tables():
        pair.handle(m)
    for how, picks, (prefix, length), add in steps:
        frames = [pool[i % len(pool)] for i in picks]
        if how == "change":
            pair.handle(route_mod(prefix, length, OFPFC.ADD if add else OFPFC.DELETE_STRICT))
        elif how == "batch":
            pair.receive_batch(1, frames)
        for f in frames if how != "batch" else ():
            pair.receive(1, f)
    pair.check_counters()


def ipv4_checksum(header: bytes) -> int:
    """The IPv4 header checksum computed from scratch (RFC 791), the checksum field taken as zero."""
    h = header[:10] + b"\0\0" + header[12:]
    s = sum(int.from_bytes(h[i:i + 2], "big") for i in range(0, len(h), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


@pytest.mark.parametrize("batched", [False, True])
def test_a_routed_frame_leaves_with_the_checksum_computed_from_scratch(batched):
    """Every TTL from 2 to 255 and header contents whose checksums sit at the edges
    (0x0000, 0xFFFF, carries), through the compiled hop on the exact-match path, the
    megaflow path (IP options: no fast key) and in batches: the IPv4 checksum of
    every frame out is the one computed from scratch; TTL 0 and 1 go to the controller."""
    rig = Rig()
    for m in router_tables():
        rig.handle(m)
    frames = []
    for ttl in range(0, 256):
        for ip_id in (0, 0x00FF, 0xFF00, 0xFFFF, 0x1234 + ttl):
            for options in ({}, {"options": b"\x01\x01\x01\x00"}):
                frames.append(raw(Ether(src=MAC1, dst=ROUTER_MAC) / IP(src="10.1.1.10", dst="20.0.0.1", ttl=ttl,
                                                                         id=ip_id, **options)
                                  / UDP(sport=1000) / (b"x" * 18)))
    for rnd in range(2):
        send(rig, frames, batched)
        out = rig.out(2)
        assert len(out) == len(frames) - 2 * 10
        for f in out:
            pkt = fk.Packet(f, 2)
            header = f[pkt.l3:pkt.l4]
            assert f[0:12] == bytes.fromhex(HOST_B.replace(":", "") + ROUTER_MAC.replace(":", ""))
            assert int.from_bytes(header[10:12], "big") == ipv4_checksum(header), f.hex()
        assert {p.reason for p in rig.take_events(ofp.PacketIn)} == {ofp.OFPR.INVALID_TTL}
    s = fp(rig).stats()
    assert s["megaflow_hits"] > 0 and s["emc_hits"] > 0


def test_routed_frames_take_the_compiled_hop_on_every_path():
    """An IPv6 hop limit and IPv4 with options (megaflow hits: no fast key), tagged and
    untagged IPv4 (exact-match hits): each through the compiled hop (no replay on a
    parsed packet), and in batches the exact-match hits as one lot."""
    rig = Rig()
    for m in router_tables():
        rig.handle(m)
    v6 = [raw(Ether(src=MAC1, dst=ROUTER_MAC) / IPv6(src="2001:db8:1::10", dst=f"2001:db8:2::{i:x}", hlim=9)
              / UDP()) for i in range(1, 6)]
    opts = [raw(Ether(src=MAC1, dst=ROUTER_MAC) / IP(dst=f"20.0.0.{i}", ttl=9, options=b"\x01\x01\x01\x00")
                / UDP()) for i in range(1, 6)]
    for f in v6 + opts:
        rig.send(1, f)
    assert len(rig.out(2)) == 10
    replays = []
    fastpath = fp(rig)
    fastpath._replay = lambda *a: replays.append(a)          # any replay on a Packet is counted, not run
    for f in v6 + opts:
        rig.send(1, f)
    out = rig.out(2)
    assert replays == [] and len(out) == 10
    assert [IPv6(f[14:]).hlim for f in out[:5]] == [8] * 5 and [IP(f[14:]).ttl for f in out[5:]] == [8] * 5
    v4 = [udp(dst=ROUTER_MAC, ip_dst=f"20.0.{i}.1", ttl=9, vlan=7 if i % 2 else None) for i in range(6)]
    for f in v4:
        rig.send(1, f)
    rig.outputs()
    before = fastpath.stats()
    for f in v4:
        rig.send(1, f)
    rig.dp.receive_batch(1, v4)
    assert replays == [] and fastpath.stats()["emc_hits"] - before["emc_hits"] == 12
    assert [IP(f[18 if f[12] == 0x81 else 14:]).ttl for f in rig.out(2)] == [8] * 12


@pytest.mark.parametrize("macs", [[], ["eth_dst"], ["eth_src"], ["eth_src", "eth_dst"], ["eth_dst", "eth_dst"]])
@pytest.mark.parametrize("decrements", [0, 1, 2])
def test_every_shape_of_hop_agrees(macs, decrements):
    """Hops that set no MAC, one, both (or one twice) and decrement the TTL 0-2 times, on
    IPv4 (exact-match and megaflow hits, one by one and in batches) and IPv6."""
    acts = [ofp.SetField(m, MAC3 if i else ROUTER_MAC) for i, m in enumerate(macs)] + [ofp.DecNwTtl()] * decrements
    mods = [ofp.SetConfig(miss_send_len=128)] + [
        ofp.FlowMod(match=ofp.Match(eth_type=et), instructions=[ofp.ApplyActions(acts + [ofp.Output(2)])])
        for et in (0x0800, 0x86DD)]
    frames = [udp(ttl=t, ip_dst=f"10.0.0.{t}") for t in (1, 2, 3, 64)] + [udp(vlan=5, ttl=9)] + [
        raw(Ether(src=MAC1, dst=MAC2) / IP(ttl=t, options=b"\x01\x01\x01\x00") / UDP()) for t in (2, 9)] + [
        raw(Ether(src=MAC1, dst=MAC2) / IPv6(hlim=t) / UDP()) for t in (0, 2, 64)]
    pair = agree(mods, frames)
    pair.receive_batch(1, frames * 2)
    pair.check_counters()


def test_a_route_s_destinations_share_one_megaflow_as_routes_come_and_go():
    """Ten /8 routes and the router's own /32s: 1,000 destinations make about one megaflow
    per route, not one per destination (prefix tracking); a longer route added inside one
    of them takes its destinations at once, and gives them back when removed."""
    routes = [(f"{i}.0.0.0", 8) for i in range(20, 30)]
    pair = Pair()
    for m in router_tables(routes):
        pair.handle(m)
    dests = [f"{20 + i % 10}.{i % 7}.{i // 7 % 256}.1" for i in range(1000)]
    frames = [udp(dst=ROUTER_MAC, ip_src="10.1.1.10", ip_dst=d, ttl=64) for d in dests]
    for f in frames:
        pair.receive(1, f)
    assert len(pair.sub.dp.fastpath.megaflows()) <= len(routes)
    inner = route_mod("20.3.0.0", 16)
    pair.handle(inner)
    for f in frames:
        pair.receive(1, f)
    # 20/8's destinations now also depend on the 16 bits that rule 20.3/16 in or out: one
    # megaflow per second octet there (7), as many as before elsewhere
    assert len(pair.sub.dp.fastpath.megaflows()) <= len(routes) - 1 + 7
    pair.handle(dataclasses.replace(inner, command=OFPFC.DELETE_STRICT))
    pair.receive_batch(1, frames)
    pair.check_counters()


# --- selective invalidation: flow changes remove exactly what they can affect ------------------------

N_FLOWS = 100


def many_flows(batched: bool = False) -> tuple[Rig, list[bytes]]:
    """N_FLOWS UDP flows, each with its own rule (table 0, priority 10, to
    port 2), a table-miss entry to the controller; every flow cached."""
    rig = Rig()
    rig.flow({}, [ofp.Output(OFPP.CONTROLLER)], priority=0)
    for i in range(N_FLOWS):
        rig.flow(flow_match(1000 + i), [ofp.Output(2)], priority=10)
    frames = [udp(sport=1000 + i) for i in range(N_FLOWS)]
    send(rig, frames, batched)
    assert rig.out(2) == frames
    assert fp(rig).stats()["misses"] == N_FLOWS
    return rig, frames


def flow_match(sport: int) -> dict:
    return {"eth_type": 0x0800, "ip_proto": 17, "udp_src": sport}


def send(rig: Rig, frames: list[bytes], batched: bool) -> None:
    if batched:
        rig.dp.receive_batch(1, frames)
    else:
        for f in frames:
            rig.send(1, f)


def cache_moves(rig: Rig, before: dict) -> dict:
    """How the fast path's counters moved since `before`."""
    after = fp(rig).stats()
    return {k: after[k] - before[k] for k in ("misses", "emc_hits", "megaflow_hits", "flushes", "revalidations",
                                                "invalidated")}


def add_flow(rig: Rig, priority: int, sport: int, port: int, raw_path: bool, **kw) -> None:
    """An ADD of flow `sport` to `port`, through the direct path (flow_mod_raw) or the ordinary one."""
    fm = ofp.FlowMod(priority=priority, match=ofp.Match(flow_match(sport)),
                     instructions=[ofp.ApplyActions([ofp.Output(port)])], **kw)
    if raw_path:
        assert rig.dp.flow_mod_raw(fm.pack())
    else:
        rig.dp.handle(fm)


def entry_of(rig: Rig, sport: int, priority: int = 10):
    [e] = [e for e in rig.dp.flows(0) if e.priority == priority
           and (fk.UDP_SRC, fk.PRESENT | sport, fk.PRESENT | 0xFFFF) in e.fields]
    return e


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("raw_path", [False, True])
def test_a_non_overlapping_add_keeps_every_cached_decision(batched, raw_path):
    rig, frames = many_flows(batched)
    before = fp(rig).stats()
    add_flow(rig, 10, 5000, 3, raw_path)
    send(rig, frames, batched)
    assert rig.out(2) == frames and rig.out(3) == []
    moved = cache_moves(rig, before)
    assert moved == {"misses": 0, "emc_hits": N_FLOWS, "megaflow_hits": 0, "flushes": 0, "revalidations": 1,
                     "invalidated": 0}
    assert fp(rig).stats()["megaflows"] == N_FLOWS
    assert all(e.packet_count == 2 for e in rig.dp.flows(0) if e.priority == 10 and e.packet_count)


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("raw_path", [False, True])
def test_an_overlapping_higher_priority_add_changes_that_flow_at_once(batched, raw_path):
    rig, frames = many_flows(batched)
    before = fp(rig).stats()
    add_flow(rig, 20, 1042, 3, raw_path)
    old = entry_of(rig, 1042)
    send(rig, frames, batched)
    assert rig.out(3) == [frames[42]]                      # its very next packet (an EMC hit before)
    assert rig.out(2) == frames[:42] + frames[43:]
    moved = cache_moves(rig, before)
    assert moved["invalidated"] == 1 and moved["misses"] == 1 and moved["flushes"] == 0
    assert moved["emc_hits"] == N_FLOWS - 1
    assert old.packet_count == 1


@pytest.mark.parametrize("priority", [5, 10])
def test_an_overlapping_add_that_loses_changes_nothing(priority):
    """Lower priority: the decision stands and is kept. Equal priority (and
    another match: an identical one would replace the entry): the older
    entry wins the tie (kept or not, forwarding must not change)."""
    rig, frames = many_flows()
    before = fp(rig).stats()
    rig.flow({**flow_match(1042), "ipv4_src": "10.0.0.1"}, [ofp.Output(3)], priority=priority)
    send(rig, frames, False)
    assert rig.out(2) == frames and rig.out(3) == []
    moved = cache_moves(rig, before)
    assert moved["flushes"] == 0
    assert moved["invalidated"] == (0 if priority < 10 else 1)
    assert moved["misses"] == moved["invalidated"]


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("command", [OFPFC.DELETE_STRICT, OFPFC.DELETE])
def test_a_deleted_entry_stops_forwarding_and_counting_at_once(batched, command):
    rig, frames = many_flows(batched)
    victim = entry_of(rig, 1042)
    rig.take_events()
    before = fp(rig).stats()
    rig.flow(flow_match(1042), [], priority=10, command=command)
    assert victim not in rig.dp.flows()
    counted = (victim.packet_count, victim.byte_count, victim.last_used)
    for _ in range(2):
        send(rig, frames, batched)
    assert rig.out(2) == (frames[:42] + frames[43:]) * 2
    assert [e.data for e in rig.take_events(ofp.PacketIn)] == [frames[42]] * 2     # the table-miss entry now
    assert (victim.packet_count, victim.byte_count, victim.last_used) == counted
    moved = cache_moves(rig, before)
    assert moved["invalidated"] == 1 and moved["misses"] == 1 and moved["flushes"] == 0


@pytest.mark.parametrize("batched", [False, True])
def test_a_modified_entry_changes_only_its_flows(batched):
    rig, frames = many_flows(batched)
    before = fp(rig).stats()
    rig.flow(flow_match(1042), [ofp.Output(4)], priority=10, command=OFPFC.MODIFY_STRICT)
    send(rig, frames, batched)
    assert rig.out(4) == [frames[42]] and rig.out(2) == frames[:42] + frames[43:]
    moved = cache_moves(rig, before)
    assert moved["invalidated"] == 1 and moved["misses"] == 1 and moved["flushes"] == 0
    assert entry_of(rig, 1042).packet_count == 2


@pytest.mark.parametrize("raw_path", [False, True])
def test_replacing_an_entry_changes_only_its_flows(raw_path):
    """An ADD of identical match and priority replaces the entry: a modify."""
    rig, frames = many_flows()
    old = entry_of(rig, 1042)
    before = fp(rig).stats()
    add_flow(rig, 10, 1042, 4, raw_path, flags=ofp.OFPFF.RESET_COUNTS)
    send(rig, frames, False)
    assert rig.out(4) == [frames[42]] and rig.out(2) == frames[:42] + frames[43:]
    assert old.packet_count == 1 and entry_of(rig, 1042).packet_count == 1
    assert cache_moves(rig, before)["invalidated"] == 1


def test_a_timeout_invalidates_only_the_expired_flow():
    rig, frames = many_flows()
    rig.flow(flow_match(1042), [ofp.Output(3)], priority=30, hard_timeout=5)
    rig.flow(flow_match(1043), [ofp.Output(3)], priority=30, idle_timeout=5)
    send(rig, frames, False)
    assert rig.out(3) == frames[42:44]
    rig.clock.advance(3)
    send(rig, frames[43:44], False)                        # keeps the idle one alive
    rig.clock.advance(3)
    rig.dp.tick()
    assert entry_of(rig, 1043, 30) and [e.priority for e in rig.dp.flows(0)].count(30) == 1
    rig.outputs()
    before = fp(rig).stats()
    send(rig, frames, False)
    assert rig.out(3) == [frames[43]] and rig.out(2) == frames[:43] + frames[44:]
    moved = cache_moves(rig, before)
    assert moved["invalidated"] == 1 and moved["misses"] == 1 and moved["flushes"] == 0


def test_an_add_in_a_table_reached_after_a_set_field():
    """The key at table 1 is not the received one: table 0 matched eth_dst
    MAC2 and rewrote it to MAC3. A rule for MAC3 in table 1 overlaps no
    megaflow on the original bits, and still changes the decision."""
    rig = Rig()
    rig.flow({"eth_dst": MAC2}, instructions=[ofp.ApplyActions([ofp.SetField("eth_dst", MAC3)]), ofp.GotoTable(1)])
    rig.flow({}, [ofp.Output(2)], table_id=1, priority=0)
    rig.flow({"eth_dst": MAC1}, [ofp.Output(4)], table_id=1, priority=5)
    frames = [udp(sport=i) for i in range(3)]
    for _ in range(2):
        send(rig, frames, False)
    assert len(rig.out(2)) == 6
    [(mask, _, _)] = fp(rig).megaflows()
    assert dict(mask)[fk.ETH_DST] == fk.PRESENT | 0xFFFFFFFFFFFF
    rig.flow({"eth_dst": MAC3}, [ofp.Output(3)], table_id=1, priority=5)
    send(rig, frames, False)
    assert len(rig.out(3)) == 3 and rig.out(2) == []


def test_an_add_in_a_table_the_flow_never_reaches_changes_nothing():
    rig, frames = many_flows()
    before = fp(rig).stats()
    rig.flow({}, [ofp.Output(3)], table_id=1, priority=100)
    send(rig, frames, False)
    assert rig.out(2) == frames
    assert cache_moves(rig, before)["invalidated"] == 0


def test_a_burst_of_flow_mods_is_checked_once_or_flushed():
    rig, frames = many_flows()
    before = fp(rig).stats()
    for i in range(50):                                    # within the budget: one pass at the next packet
        rig.flow(flow_match(6000 + i), [ofp.Output(3)], priority=10)
    send(rig, frames, False)
    assert cache_moves(rig, before) == {"misses": 0, "emc_hits": N_FLOWS, "megaflow_hits": 0, "flushes": 0,
                                        "revalidations": 1, "invalidated": 0}
    before = fp(rig).stats()
    for i in range(5000):                                  # past it: flushing is cheaper
        rig.flow(flow_match(7000 + i), [ofp.Output(3)], priority=10)
    assert fp(rig)._added == []                            # (no longer written down)
    send(rig, frames, False)
    moved = cache_moves(rig, before)
    assert moved["flushes"] == 1 and moved["revalidations"] == 0 and moved["misses"] == N_FLOWS
    assert rig.out(2) == frames * 2


@pytest.mark.parametrize("order", ["flow first", "group first"])
def test_a_flow_change_next_to_another_change_flushes(order):
    rig, frames = many_flows()
    changes = [lambda: rig.flow(flow_match(5000), [ofp.Output(3)], priority=10),
               lambda: rig.handle(ofp.GroupMod(OFPGC.ADD, OFPGT.ALL, 1, [ofp.Bucket([ofp.Output(3)])]))]
    for change in (changes if order == "flow first" else changes[::-1]):
        change()
    before = fp(rig).stats()
    send(rig, frames, False)
    assert rig.out(2) == frames
    moved = cache_moves(rig, before)
    assert moved["flushes"] == 1 and moved["revalidations"] == 0


def test_flushing_on_flow_changes_can_be_asked_for():
    """FastPath.selective = False: the old behaviour (for comparisons)."""
    rig, frames = many_flows()
    fp(rig).selective = False
    before = fp(rig).stats()
    rig.flow(flow_match(5000), [ofp.Output(3)], priority=10)
    send(rig, frames, False)
    assert rig.out(2) == frames
    moved = cache_moves(rig, before)
    assert moved["flushes"] == 1 and moved["misses"] == N_FLOWS


@pytest.mark.parametrize("batched", [False, True])
def test_a_dead_exact_match_entry_is_never_replayed(batched):
    """An EMC entry whose decision was removed (its megaflow is gone) on
    every EMC path: simple, rewritten in place, parsed."""
    rig = Rig()
    rig.flow({"udp_src": 1, "eth_type": 0x0800, "ip_proto": 17}, [ofp.Output(2)])
    rig.flow({"udp_src": 2, "eth_type": 0x0800, "ip_proto": 17}, [ofp.SetField("eth_dst", MAC3), ofp.Output(2)])
    rig.flow({"udp_src": 3, "eth_type": 0x0800, "ip_proto": 17}, [ofp.SetField("ipv4_dst", "10.9.9.9"),
                                                                  ofp.Output(2)])
    frames = [udp(sport=i) for i in (1, 2, 3)]
    send(rig, frames, False)
    decisions = [d for _, _, d in fp(rig).megaflows()]
    assert sum(1 for d in decisions if d.fast) == 1 and sum(1 for d in decisions if d.rewrite) == 1
    rig.outputs()
    victims = rig.dp.flows()
    for sport in (1, 2, 3):
        rig.flow({"udp_src": sport, "eth_type": 0x0800, "ip_proto": 17}, [], command=OFPFC.DELETE_STRICT)
    send(rig, frames, batched)
    assert rig.outputs() == {} and all(d.dead for d in decisions)
    assert [e.packet_count for e in victims] == [1, 1, 1] and fp(rig).stats()["emc_hits"] == 0


def test_an_add_masked_across_a_megaflow():
    """The megaflow holds all of ipv4_dst, the new rule a /24 of it: they
    overlap when the /24 has the address, and only then."""
    rig = Rig()
    rig.flow(ip_match(ipv4_dst="10.0.0.1"), [ofp.Output(2)], priority=5)
    rig.flow(ip_match(ipv4_dst="10.0.1.1"), [ofp.Output(2)], priority=5)
    frames = [udp(ip_dst="10.0.0.1"), udp(ip_dst="10.0.1.1")]
    send(rig, frames, False)
    assert rig.out(2) == frames
    before = fp(rig).stats()
    rig.flow(ip_match(ipv4_dst=("10.0.0.0", "255.255.255.0")), [ofp.Output(3)], priority=10)
    send(rig, frames, False)
    assert rig.out(3) == frames[:1] and rig.out(2) == frames[1:]
    assert cache_moves(rig, before)["invalidated"] == 1


def test_an_add_on_fields_no_megaflow_holds_reaches_every_flow():
    """The megaflows say nothing of eth_dst: a rule on it overlaps them all."""
    rig, frames = many_flows()
    before = fp(rig).stats()
    rig.flow({"eth_dst": MAC2}, [ofp.Output(3)], priority=20)
    send(rig, frames, False)
    assert rig.out(3) == frames and rig.out(2) == []
    assert cache_moves(rig, before)["invalidated"] == N_FLOWS


@pytest.mark.parametrize("table_id", [0, 1])
def test_an_add_wider_than_a_megaflow_on_the_one_field_they_share(table_id):
    """The megaflows' mask holds eth_type, the VLAN present bit and vlan_pcp
    (the subtables of the first two rules); the new rule matches all of
    vlan_vid and nothing else. They share one field, on which the rule's
    mask covers the megaflows': its value must still be cut to their bits
    (0x100a under 0x1000) before it is compared, or the tagged flow's
    cached miss outlives the rule that now takes it. (Found by
    test_rewrites_then_lookups_agree in table 1; the table does not matter.)"""
    def rule(match: dict, port: int) -> ofp.FlowMod:
        return dataclasses.replace(in1(match, port, 0), table_id=table_id)

    mods = [rule({"vlan_vid": (0x1000, 0x1000), "vlan_pcp": 5}, 2), rule({"eth_type": 0x86DD}, 2)]
    if table_id:
        mods.insert(0, goto1({}, []))
    untagged, tagged, other_vlan = udp(), udp(vlan=10), udp(vlan=20)
    frames = [untagged, tagged, other_vlan]
    pair = agree(mods, frames, rounds=2)                 # every one dropped (a miss), cached
    fast = fp(pair.sub)
    assert fast.stats()["megaflows"] == 2               # untagged; tagged with pcp 0 (either VLAN)
    before = fast.stats()
    pair.handle(rule({"vlan_vid": 0x1000 | 10}, 3))
    for f in frames:
        for rig in (pair.ref, pair.sub):
            rig.send(1, f)
    assert pair.ref.outputs() == {3: [tagged]}
    assert pair.sub.outputs() == {3: [tagged]}
    moved = cache_moves(pair.sub, before)
    assert moved["invalidated"] == 1 and moved["flushes"] == 0      # the untagged megaflow is kept
    pair.check_counters()


_OV_FIELDS = (fk.METADATA, fk.ETH_TYPE, fk.VLAN_VID)
_OV_BITS = [0, 1, 3, 6, 0xF]                       # the masks' low bits (the PRESENT bit is always in)


@st.composite
def _ov_shapes(draw, min_size: int = 0) -> tuple:
    fields = draw(st.lists(st.sampled_from(_OV_FIELDS), unique=True, min_size=min_size))
    return tuple(sorted((c, draw(st.sampled_from(_OV_BITS + [FULL_P[c]])) | fk.PRESENT) for c in fields))


@settings(SETTINGS, max_examples=4 * EXAMPLES)
@given(_ov_shapes(1), _ov_shapes(), st.lists(st.lists(st.integers(0, 0xF), min_size=3, max_size=3), max_size=12),
       st.lists(st.integers(0, 0xF), min_size=3, max_size=3))
def test_overlap_candidates_are_exactly_the_overlapping_megaflows(mask, shape, packets, values):
    """fastpath._overlapping, every plan (one probe, all, a scan with or
    without masking), against the definition: a megaflow and a match
    overlap when, on every field both constrain, the bits both masks hold
    agree."""
    g = _MaskGroup(mask)
    packet_of = {}                                  # decision -> the flow key it was made for
    for vs in packets:
        key = [0] * fk.N_FIELDS
        for c, v in zip(_OV_FIELDS, vs):
            key[c] = fk.PRESENT | v
        if g.keyfn(key) not in g.flows:
            d = g.flows[g.keyfn(key)] = Decision((), True)
            packet_of[d] = key
    match = [0] * fk.N_FIELDS                      # the match's values, under its masks (as compiled)
    for c, m in shape:
        match[c] = (fk.PRESENT | values[_OV_FIELDS.index(c)]) & m
    smap = dict(shape)
    want = {d for d, key in packet_of.items()
            if all(key[c] & gm & smap[c] == match[c] & gm for c, gm in mask if c in smap)}
    assert set(_overlapping(g, shape, match)) == want


#: Matches on fields without prerequisites (so a rule can share a single field
#: with a megaflow), exact and masked, narrower and wider than one another.
LOOSE = {
    "in_port": st.sampled_from([1, 2]),
    "eth_dst": st.sampled_from([MAC2, MAC3, ("02:00:00:00:00:00", "ff:ff:ff:ff:ff:00"),
                                ("01:00:00:00:00:00", "01:00:00:00:00:00"),
                                ("00:00:00:00:00:02", "00:00:00:00:00:0f")]),
    "eth_src": st.sampled_from([MAC1, MAC3]),
    "vlan_vid": st.sampled_from([0, 0x1000 | 10, 0x1000 | 20, (0x1000, 0x1000), (0x1000 | 8, 0x1008),
                                 (0x1000 | 2, 0x1002)]),
    "metadata": st.sampled_from([0, 1, 3, (1, 1), (2, 2), (2, 3), (0, 0xF0)]),
    "eth_type": st.sampled_from([0x0800, 0x86DD]),
}


@st.composite
def loose_matches(draw) -> dict:
    m = {name: draw(LOOSE[name]) for name in draw(st.lists(st.sampled_from(sorted(LOOSE)), unique=True, max_size=3))}
    vid = m.get("vlan_vid")
    if vid not in (None, 0) and draw(st.booleans()):
        m["vlan_pcp"] = draw(st.sampled_from([0, 5]))
    return m


@st.composite
def loose_flow_mods(draw, adding: bool = False) -> ofp.FlowMod:
    table_id = draw(st.sampled_from([0, 0, 1, 1, 2, 3]))
    match = draw(loose_matches())
    acts = []
    if draw(st.integers(0, 3)) == 0:
        acts.append(ofp.SetField("eth_dst", draw(st.sampled_from([MAC2, MAC3]))))
    if draw(st.integers(0, 2)):
        acts.append(ofp.Output(draw(st.sampled_from([2, 3, 4]))))
    instructions = [ofp.ApplyActions(acts)]
    if draw(st.integers(0, 2)) == 0:
        instructions.append(ofp.WriteMetadata(draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([1, 3, 0xFF]))))
    if table_id < N_TABLES - 1 and draw(st.integers(0, 2)):
        instructions.append(ofp.GotoTable(draw(st.integers(table_id + 1, N_TABLES - 1))))
    command = OFPFC.ADD if adding else draw(st.sampled_from(
        [OFPFC.ADD] * 5 + [OFPFC.MODIFY, OFPFC.MODIFY_STRICT, OFPFC.DELETE, OFPFC.DELETE_STRICT]))
    return ofp.FlowMod(table_id=table_id, command=command, match=ofp.Match(match),
                       priority=draw(st.sampled_from([0, 1, 5, 5, 10])), instructions=instructions)


@st.composite
def loose_frames(draw) -> bytes:
    l2 = Ether(src=draw(st.sampled_from([MAC1, MAC3])),
               dst=draw(st.sampled_from([MAC2, MAC3, "02:00:00:00:00:12", "01:00:5e:00:00:01"])))
    vid = draw(st.sampled_from([None, 10, 20, 2, 8]))
    if vid is not None:
        l2 = l2 / Dot1Q(vlan=vid, prio=draw(st.sampled_from([0, 5])))
    return raw(l2 / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=draw(small_ports)) / (b"z" * 8))


@settings(SETTINGS, max_examples=EXAMPLES)
@given(st.lists(loose_frames(), min_size=2, max_size=8), st.lists(loose_flow_mods(adding=True), max_size=10),
       st.data())
def test_loose_rules_over_four_tables_agree(pool, rules, data):
    """Rules on fields without prerequisites (one shared field between a
    rule and a megaflow is common), masked and exact, over four tables with
    goto chains, write-metadata and eth_dst rewrites; added, modified and
    removed in any table while the frames' decisions are cached."""
    pair = Pair()
    for fm in rules:
        pair.handle(fm)
    for _ in range(data.draw(st.integers(2, 6))):
        for i in data.draw(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=2 * len(pool))):
            pair.receive(data.draw(st.sampled_from([1, 1, 2])), pool[i])
        for fm in data.draw(st.lists(loose_flow_mods().map(Shown), max_size=4)):
            if data.draw(st.booleans()):
                pair.flow_mod_raw(fm.value)
            else:
                pair.handle(fm.value)
    pair.check_counters()
    s = pair.sub.dp.fastpath.stats()
    for name in ("emc_hits", "megaflow_hits", "revalidations", "invalidated"):
        if s[name]:
            event(f"fast path: some {name}")
