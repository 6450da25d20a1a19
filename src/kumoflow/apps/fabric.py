"""`fabric`: one switching fabric out of any topology of switches, found by
LLDP and forwarded hop by hop.

What it observes (its handlers):

* links between switches, by LLDP frames it sends out of every port every
  ``lldp_interval`` seconds and receives back as packet-ins (signed with a
  secret of this run, so hosts cannot fake them; a link is up once seen
  both ways, and answered at once when seen one way); a link goes
  when a PORT_STATUS says its port is down, or when no LLDP crossed it for
  ``link_timeout`` seconds (a link that dies without losing carrier);
* hosts, by the first frame a new source sends from a port that is not a
  fabric link (the only frames that reach the controller); their IPv4 and
  IPv6 addresses from ARP and IP headers. A host that shows up elsewhere
  has moved. After a controller restart the hosts come back from the
  switches themselves: each host's admission flow names it (`recover`).

What it compiles (three kinds of object, so a change recompiles little):

``("switch", S)``  on S only. classify: LLDP to the controller; frames from
                   fabric ports go on. forward: per in_port, broadcast and
                   unknown unicast to every *flood port* but the one it came
                   from. Flood ports are S's ports on the spanning tree of
                   the fabric plus its edge ports, so a broadcast reaches
                   every host exactly once and rings never storm. A port is
                   an edge port once a host was seen there, or once S has
                   settled (core.py) without LLDP finding a link on it. A
                   port that was ever the end of a link is no edge port (no
                   flooding, no learning) until its carrier drops: the
                   switch at the other end may have lost its channel to the
                   controller and still forward with the flows it holds.
                   Until S has settled, a switch that came up holding flood
                   flows gets them for those in_ports only: the spanning
                   tree of a topology still being rediscovered (a controller
                   restart) has other ports, and their flows would be added
                   at once (settling adds what is missing) only to be
                   deleted once S settles.
``("dest", D)``    on every other switch S: group D, the way from S to D.
                   Equal-cost next hops make a select group (the switch
                   hashes each flow onto one; buckets watch their port, so
                   a dead one is skipped at once); a single next hop makes a
                   fast-failover group whose later buckets are loop-free
                   alternates (graph.py), so the switch itself reroutes the
                   moment a port goes down, before the controller hears of
                   it. Then the controller recompiles the groups.
``("host", M)``    on M's switch: admit M on its port (and copy its ARP and
                   neighbour discovery to the controller, which keeps its
                   addresses and last-seen time current); deliver to its port.
                   On every other switch: eth_dst=M to group M's switch.
                   Topology changes never touch host flows, only groups.

A frame from an unknown host reaches the controller once: the controller
learns the host and, once the host's flows are installed, sends the frame
back into the switch's pipeline (a packet-out to OFPP_TABLE), so no frame
is lost and later stages (a router) see it too. A known host's frame that
raced its flows is sent out of the ports the flows would use.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import zlib
from typing import Any, Hashable, Iterable

from kumoflow import ofp
from kumoflow.apps import options as check
from kumoflow.controller import App, Flow, Group, pipeline
from kumoflow.controller.graph import Link
from kumoflow.packet import Ethernet, PacketError, parse
from kumoflow.packet.lldp import LLDP
from kumoflow.tunnels import parse_port_name

LLDP_TYPE = 0x88CC
LLDP_DST = "01:80:c2:00:00:0e"
CHASSIS_PREFIX = b"dpid:"
#: LLDP frames carry an organisationally specific TLV (type 127): an OUI-like
#: tag, then a keyed hash of chassis and port under this run's secret, so a
#: host cannot fake a link by sending LLDP of its own
LLDP_ORG_TLV, SIGNATURE_OUI, SIGNATURE_SIZE = 127, b"kfl\x01", 16
#: cookie object ids: the kind in the top byte of the function's 56 bits
KIND_SWITCH, KIND_HOST = 1, 2
MAC48 = (1 << 48) - 1
#: priorities within the fabric's tables
LLDP_PRIORITY, WATCH_PRIORITY, ADMIT_PRIORITY, HOST_PRIORITY, FLOOD_PRIORITY = 1000, 110, 100, 100, 10
#: what a known host sends that the controller wants a copy of (addresses, last seen):
#: ARP, and IPv6 neighbour solicitations and advertisements
WATCHED = (ofp.Match(eth_type=0x0806),
           ofp.Match(eth_type=0x86DD, ip_proto=58, icmpv6_type=135),
           ofp.Match(eth_type=0x86DD, ip_proto=58, icmpv6_type=136))

_TO_CONTROLLER = [ofp.ApplyActions([ofp.Output(ofp.OFPP.CONTROLLER, ofp.OFPCML.NO_BUFFER)])]
_LINK_DOWN, _PORT_DOWN, _MAX_PORT = int(ofp.OFPPS.LINK_DOWN), int(ofp.OFPPC.PORT_DOWN), int(ofp.OFPP.MAX)


def port_up(port: ofp.Port) -> bool:
    return port.port_no <= _MAX_PORT and not port.state & _LINK_DOWN and not port.config & _PORT_DOWN


def fabric_candidate(port: ofp.Port) -> bool:
    """A port up that may lead to a switch or a host: not a tunnel port (a tenant
    network's, apps/tenants.py: no LLDP into it, no flooding, no host learned from it)."""
    return port_up(port) and parse_port_name(port.name) is None


def mac_text(raw: bytes) -> str:
    return raw.hex(":")


def source_ips(frame: bytes) -> list[str]:
    """The sender's IP address in an ARP, IPv4 or IPv6 frame (untagged)."""
    ethertype = frame[12:14]
    try:
        if ethertype == b"\x08\x06" and len(frame) >= 32:
            ip = ipaddress.IPv4Address(frame[28:32])
        elif ethertype == b"\x08\x00" and len(frame) >= 34:
            ip = ipaddress.IPv4Address(frame[26:30])
        elif ethertype == b"\x86\xdd" and len(frame) >= 38:
            ip = ipaddress.IPv6Address(frame[22:38])
        else:
            return []
    except ValueError:
        return []
    return [] if ip.is_unspecified or ip.is_multicast else [str(ip)]


class Fabric(App):
    name = "fabric"
    tables = ("classify", "forward")

    def __init__(self, lldp_interval: float = 1.0, link_timeout: float | None = None, fast_failover: bool = True,
                 **options: Any) -> None:
        super().__init__(**options)
        self.fast_failover = check.boolean("fast_failover", fast_failover)
        self.lldp_interval = check.seconds("lldp_interval", lldp_interval)
        self.link_timeout = (check.seconds("link_timeout", link_timeout) if link_timeout is not None
                             else 3.5 * self.lldp_interval)
        self._group_ids: dict[int, int] = {}    # dpid -> group id
        self._group_owner: dict[int, int] = {}  # group id -> dpid
        self._tree: tuple[int, dict[int, set[int]]] = (-1, {})
        self._secret = os.urandom(32)
        self._switch_facing: set[tuple[int, int]] = set()   # (dpid, port) ever a link's end, carrier not lost since
        self._ways: dict[tuple[int, int], tuple] = {}   # (src, dest) -> the way the compiled group takes
        self._held_floods: dict[int, set[int]] = {}   # dpid -> in_ports of the flood flows it held on connect

    # --- shared views --------------------------------------------------------------

    @property
    def graph(self):
        return self.core.topology.graph

    def start(self) -> None:
        self.core.call_every(self.lldp_interval, self._lldp_round)

    def group_id(self, dpid: int) -> int:
        """Group of the way to switch `dpid`: the dpid itself when it fits in
        the block (the usual small dpids), a hash otherwise."""
        gid = self._group_ids.get(dpid)
        if gid is None:
            span = len(self.ids) - 1
            offset = dpid if 0 < dpid <= span else zlib.crc32(dpid.to_bytes(8, "big")) % span + 1
            while self.ids.start + offset in self._group_owner:
                offset = offset % span + 1
            gid = self.ids.start + offset
            self._group_ids[dpid], self._group_owner[gid] = gid, dpid
        return gid

    def tree_ports(self, dpid: int) -> set[int]:
        version, tree = self._tree
        if version != self.graph.version:
            tree = self.graph.tree_ports()
            self._tree = (self.graph.version, tree)
        return tree.get(dpid, set())

    def edge_ports(self, dp) -> set[int]:
        topology, hosts = self.core.topology, self.core.hosts
        others = [app for app in self.core.apps if app is not self]
        return {p.port_no for p in dp.ports.values()
                if fabric_candidate(p) and not topology.is_fabric_port(dp.id, p.port_no)
                and not any(app.claims_port(dp.id, p.port_no) for app in others)
                and (dp.id, p.port_no) not in self._switch_facing
                and (dp.settled or hosts.at(dp.id, p.port_no))}

    def flood_ports(self, dp) -> set[int]:
        return ((self.tree_ports(dp.id) & {p.port_no for p in dp.ports.values() if fabric_candidate(p)})
                | self.edge_ports(dp))

    # --- compiling -------------------------------------------------------------------

    def owners(self) -> Iterable[Hashable]:
        for dpid in self.core.datapaths:
            yield ("switch", dpid)
            yield ("dest", dpid)
        for mac in self.core.hosts.by_mac:
            yield ("host", mac)

    def table_miss(self, table: str) -> list[ofp.Instruction] | None:
        return _TO_CONTROLLER if table == "classify" else None

    def compile(self, key: Hashable, dp) -> list:
        kind, subject = key
        if kind == "switch":
            return self._compile_switch(dp) if subject == dp.id else []
        if kind == "dest":
            return self._compile_dest(subject, dp) if subject != dp.id and subject in self.core.datapaths else []
        return self._compile_host(subject, dp)

    def _compile_switch(self, dp) -> list:
        classify, forward, admitted = self.table("classify"), self.table("forward"), pipeline.next_table("classify")
        cookie = self.cookie(KIND_SWITCH << 48 | dp.id & MAC48)
        flows = [Flow(classify, LLDP_PRIORITY, ofp.Match(eth_type=LLDP_TYPE), _TO_CONTROLLER, cookie)]
        for port in sorted(self.graph.fabric_ports(dp.id)):
            flows.append(Flow(classify, ADMIT_PRIORITY, ofp.Match(in_port=port), [ofp.GotoTable(admitted)], cookie))
        flood = self.flood_ports(dp)
        held = None if dp.settled else self._held_floods.get(dp.id)
        for port in sorted(flood if held is None else flood & held):
            outputs = [ofp.Output(p) for p in sorted(flood - {port})]
            flows.append(Flow(forward, FLOOD_PRIORITY, ofp.Match(in_port=port),
                              [ofp.ApplyActions(outputs)] if outputs else [], cookie))
        return flows

    def way(self, src: int, dest: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(next hops, loop-free alternates) from switch src towards dest: all a group depends on."""
        hops = tuple(self.graph.next_hops(src, dest))
        backups = tuple(self.graph.backup_hops(src, dest)) if self.fast_failover and len(hops) == 1 else ()
        return hops, backups

    def _compile_dest(self, dest: int, dp) -> list:
        gid = self.group_id(dest)
        hops, backups = self._ways[(dp.id, dest)] = self.way(dp.id, dest)
        if not self.fast_failover:    # the controller alone reroutes (for comparison)
            if len(hops) > 1:
                return [Group(gid, ofp.OFPGT.SELECT, [ofp.Bucket([ofp.Output(p)], weight=1) for p in hops])]
            return [Group(gid, ofp.OFPGT.ALL, [ofp.Bucket([ofp.Output(p)]) for p in hops])]
        if len(hops) > 1:
            return [Group(gid, ofp.OFPGT.SELECT,
                          [ofp.Bucket([ofp.Output(p)], weight=1, watch_port=p) for p in hops])]
        if hops:
            return [Group(gid, ofp.OFPGT.FF, [ofp.Bucket([ofp.Output(p)], watch_port=p) for p in hops + backups])]
        return [Group(gid, ofp.OFPGT.ALL, [])]     # no way there now: drop

    def _compile_host(self, mac: str, dp) -> list:
        host = self.core.hosts.get(mac)
        if host is None or host.dpid not in self.core.datapaths:
            return []
        cookie = self.cookie(KIND_HOST << 48 | int(mac.replace(":", ""), 16))
        forward = self.table("forward")
        if host.dpid != dp.id:
            return [Flow(forward, HOST_PRIORITY, ofp.Match(eth_dst=mac),
                         [ofp.ApplyActions([ofp.Group(self.group_id(host.dpid))])], cookie)]
        classify, admit, admitted = self.table("classify"), ofp.Match(in_port=host.port, eth_src=mac), \
            ofp.GotoTable(pipeline.next_table("classify"))
        copy = [ofp.ApplyActions([ofp.Output(ofp.OFPP.CONTROLLER, ofp.OFPCML.NO_BUFFER)]), admitted]
        return [Flow(classify, ADMIT_PRIORITY, admit, [admitted], cookie),
                *(Flow(classify, WATCH_PRIORITY, ofp.Match({**admit, **watched}), copy, cookie) for watched in WATCHED),
                Flow(forward, HOST_PRIORITY, ofp.Match(eth_dst=mac), [ofp.ApplyActions([ofp.Output(host.port)])],
                     cookie)]

    def _topology_changed(self) -> None:
        """Recompile every switch's own flows (its flood ports may have moved)
        and the groups whose way changed: a link that changes nothing for a
        pair of switches costs that pair a comparison, not a compilation."""
        switches = list(self.core.datapaths)
        for src in switches:
            self.changed(("switch", src), src)
            for dest in switches:
                if dest != src and self._ways.get((src, dest)) != self.way(src, dest):
                    self.changed(("dest", dest), src)

    # --- observing ---------------------------------------------------------------------

    def recover(self, dp, flows: list[ofp.FlowStats]) -> None:
        """Hosts from their admission flows, left by a previous run; the
        ports that were links' ends then (their admission flows match in_port
        alone); and the in_ports the switch floods for (until it settles)."""
        classify, forward = self.table("classify"), self.table("forward")
        floods = {f.match["in_port"] for f in flows
                  if f.table_id == forward and f.cookie >> 56 == self.function and f.priority == FLOOD_PRIORITY
                  and (f.cookie >> 48) & 0xFF == KIND_SWITCH and "in_port" in f.match}
        if floods:
            self._held_floods[dp.id] = floods
        else:
            self._held_floods.pop(dp.id, None)
        for f in flows:
            if f.table_id != classify or f.cookie >> 56 != self.function or "in_port" not in f.match:
                continue
            kind = (f.cookie >> 48) & 0xFF
            if kind == KIND_HOST and "eth_src" in f.match:
                self.core.hosts.seen(str(f.match["eth_src"]).lower(), dp.id, f.match["in_port"])
            elif kind == KIND_SWITCH and len(f.match) == 1:
                self._switch_facing.add((dp.id, f.match["in_port"]))

    def switch_up(self, dp) -> None:
        self.core.topology.add_switch(dp.id)
        self._topology_changed()
        self._probe(dp)

    def switch_down(self, dp) -> None:
        self.core.hosts.lose_port(dp.id)
        self.core.topology.remove_switch(dp.id)
        self._ways = {pair: way for pair, way in self._ways.items() if dp.id not in pair}
        self.changed(("dest", dp.id))           # its group goes from every other switch
        self._topology_changed()

    def link_up(self, link: Link) -> None:
        self.log.info("link up: %#x port %d <-> %#x port %d", link.a, link.a_port, link.b, link.b_port)
        for end in ((link.a, link.a_port), (link.b, link.b_port)):
            self._switch_facing.add(end)
            self.core.hosts.lose_port(*end)    # learned there before the link was known
        self._topology_changed()

    def link_down(self, link: Link) -> None:
        self.log.info("link down: %#x port %d <-> %#x port %d", link.a, link.a_port, link.b, link.b_port)
        self._topology_changed()

    def host_found(self, host) -> None:
        self.log.info("host %s at %#x port %d %s", host.mac, host.dpid, host.port, sorted(host.ips))
        self._host_changed(host.mac, host.dpid)

    def host_moved(self, host, old) -> None:
        self.log.info("host %s moved from %#x port %d to %#x port %d", host.mac, old.dpid, old.port, host.dpid,
                      host.port)
        self._host_changed(host.mac, old.dpid, host.dpid)

    def host_lost(self, host) -> None:
        self._host_changed(host.mac, host.dpid)

    def _host_changed(self, mac: str, *dpids: int) -> None:
        self.changed(("host", mac))
        for dpid in dpids:   # its port's edge status may have changed
            self.changed(("switch", dpid), dpid)

    def port_status(self, dp, msg: ofp.PortStatus) -> None:
        port = msg.desc
        if msg.reason == ofp.OFPPR.DELETE or not port_up(port):
            self._switch_facing.discard((dp.id, port.port_no))
            self.core.topology.lose_port(dp.id, port.port_no)
            self.core.hosts.lose_port(dp.id, port.port_no)
        elif dp.is_up:
            self._probe(dp, [port])
        self.changed(("switch", dp.id), dp.id)

    def packet_in(self, dp, msg: ofp.PacketIn) -> None:
        data, in_port = msg.data, msg.match.get("in_port")
        if len(data) < 14 or in_port is None:
            return
        if data[12:14] == b"\x88\xcc":
            self._lldp_in(dp, in_port, data)
            return
        if msg.reason == ofp.OFPR.ACTION and msg.cookie >> 48 == self.cookie(KIND_HOST << 48) >> 48:
            # a copy of a known host's ARP or neighbour discovery: the flows forward the frame itself
            if self.core.hosts.get(mac_text(data[6:12])) is not None:
                self.core.hosts.seen(mac_text(data[6:12]), dp.id, in_port, source_ips(data))
            return
        port = dp.ports.get(in_port)
        if (port is None or not fabric_candidate(port) or self.core.topology.is_fabric_port(dp.id, in_port)
                or (dp.id, in_port) in self._switch_facing or data[6] & 1):
            return   # not from a host: a frame in flight while the fabric's flows change
        mac = mac_text(data[6:12])
        known = self.core.hosts.get(mac)
        placed = known is not None and (known.dpid, known.port) == (dp.id, in_port)
        self.core.hosts.seen(mac, dp.id, in_port, source_ips(data))
        if placed:   # its flows are on their way already: send the frame where they will send the next ones
            self._deliver(dp, in_port, data)
        else:        # learned just now: the frame takes the flows being installed for it, and every stage after
            self.core.send_after_flows(dp, ofp.PacketOut(in_port=in_port, actions=[ofp.Output(ofp.OFPP.TABLE)],
                                                         data=data))

    def _deliver(self, dp, in_port: int, data: bytes) -> None:
        """Send a frame where the flows being installed will send the next ones."""
        host = None if data[0] & 1 else self.core.hosts.get(mac_text(data[0:6]))
        if host is None:
            ports = sorted(self.flood_ports(dp) - {in_port})
        elif host.dpid == dp.id:
            ports = [host.port]
        else:
            ports = self.graph.next_hops(dp.id, host.dpid)[:1]
        if ports and ports != [in_port]:
            self.send(dp, ofp.PacketOut(in_port=in_port, actions=[ofp.Output(p) for p in ports], data=data))

    def deliver(self, data: bytes, after_flows: bool = False) -> None:
        """Send a frame from the controller to the host its destination MAC
        names; a broadcast, or a frame for a host not seen yet, goes out of
        every switch's edge ports. `after_flows`: once the flows this event
        compiled are in the switch it leaves from (its answer will meet them)."""
        host = None if data[0] & 1 else self.core.hosts.get(mac_text(data[0:6]))
        dp = self.core.datapaths.get(host.dpid) if host is not None else None
        if dp is not None:
            sends = [(dp, [host.port])]
        else:
            sends = [(dp, sorted(self.edge_ports(dp))) for dp in self.core.datapaths.values() if dp.is_up]
        for dp, ports in sends:
            if ports:
                msg = ofp.PacketOut(actions=[ofp.Output(p) for p in ports], data=data)
                if after_flows:
                    self.core.send_after_flows(dp, msg)
                else:
                    dp.send(msg)

    # --- LLDP --------------------------------------------------------------------------

    def _lldp_round(self) -> None:
        self.core.topology.expire(self.core.now() - self.link_timeout)
        for dp in self.core.datapaths.values():
            if dp.is_up:
                self._probe(dp)

    def _probe(self, dp, ports: Iterable[ofp.Port] | None = None) -> None:
        for port in (dp.ports.values() if ports is None else ports):
            if fabric_candidate(port):
                chassis, port_id = CHASSIS_PREFIX + b"%016x" % dp.id, b"%d" % port.port_no
                frame = bytes(Ethernet(dst=LLDP_DST, src=port.hw_addr) / LLDP(
                    chassis_id=chassis, port_id=port_id, ttl=max(1, round(self.link_timeout)),
                    tlvs=[(LLDP_ORG_TLV, SIGNATURE_OUI + self._sign(chassis, port_id))]))
                dp.send(ofp.PacketOut(actions=[ofp.Output(port.port_no)], data=frame))

    def _sign(self, chassis: bytes, port_id: bytes) -> bytes:
        return hmac.new(self._secret, chassis + b"/" + port_id, "sha256").digest()[:SIGNATURE_SIZE]

    def _lldp_in(self, dp, in_port: int, data: bytes) -> None:
        try:
            lldp = parse(data)[LLDP]
            if not lldp.chassis_id.startswith(CHASSIS_PREFIX):
                return    # another system's LLDP
            signature = self._sign(lldp.chassis_id, lldp.port_id)
            if not any(t == LLDP_ORG_TLV and hmac.compare_digest(v, SIGNATURE_OUI + signature) for t, v in lldp.tlvs):
                return    # not sent by this controller: forged, or left from a previous run
            peer, peer_port = int(lldp.chassis_id[len(CHASSIS_PREFIX):], 16), int(lldp.port_id)
        except (PacketError, KeyError, ValueError):
            return
        sender = self.core.datapaths.get(peer)
        if sender is None or peer_port not in sender.ports or (peer, peer_port) == (dp.id, in_port):
            return    # no such switch port: a stale frame, not a link
        if (dp.id, in_port) not in self._switch_facing:
            # a switch is behind this port, even while the link is up one way only: no host is learned
            # or flooded to here (a one-way link would swallow their traffic)
            self._switch_facing.add((dp.id, in_port))
            self.core.hosts.lose_port(dp.id, in_port)
            self.changed(("switch", dp.id), dp.id)
        link = Link.between(peer, peer_port, dp.id, in_port)
        if not self.core.topology.seen(link, (peer, peer_port)) and link not in self.graph.links:
            port = dp.ports.get(in_port)
            if port is not None:
                self._probe(dp, [port])   # answer at once: the link needs LLDP both ways

