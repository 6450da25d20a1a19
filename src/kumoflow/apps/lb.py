"""`lb`: load balancers in the shapes of Octavia as flows, the member of
each connection chosen by the controller, health checked through the data
plane, weights shifted away from slow members.

Where: the pipeline's ``balance`` table (controller/pipeline.py), after
admission and the firewall's from_port, before routing, on the switch a
frame enters by: the client's for what a client sends, the member's for
what a member answers. lbmodel.py has the model (where VIPs, clients and
members are; how frames are rewritten), lbprobe.py the health checks.

What each switch gets:

``balancer``    on every switch with a port in a network that reaches a
                VIP (its own network, or one a router joins to it): ARP
                for the VIP and pings to it go to the controller, which
                answers; a connection's first packet to one of its
                listeners goes to the controller (through a meter per
                switch: ``punt_rate`` packets per second); anything else
                to the VIP is dropped.
``connection``  on the client's switch: the client's packets to the VIP
                have their destination translated to the member (address,
                port; MAC when the member is beside the client, or the
                router's when it is routed); on the member's switch: its
                answers have their source translated back to the VIP. Both
                with the listener's idle timeout (``timeout_client_data``),
                the other deleted when either goes.
``probe``       on a monitored member's switch: what it sends from its
                monitor address to the VIP (the answers to health checks)
                goes to the controller.

The choice is the controller's, per connection, for every algorithm (an
OpenFlow 1.3 select group hashes as the switch likes and moves existing
connections when its buckets change; per-connection flows do not):
ROUND_ROBIN is smooth weighted round robin, LEAST_CONNECTIONS the fewest
connections per unit of weight, SOURCE_IP and SOURCE_IP_PORT weighted
rendezvous hashing (a client stays where it was when other members come or
go). Session persistence SOURCE_IP keeps a client on its member for
``persistence_timeout``. Weight 0 drains (no new connections; those made
stay), as does an administratively down member; backups serve only when no
other member can. A member that fails ``max_retries_down`` checks in a row
gets no new connections until it passes ``max_retries``.

Load-aware (``load_aware``, on by default): each member's check latency
(HTTP: request to status line; TCP: SYN to SYN-ACK; PING: echo) is
smoothed, and a member slower than its pool's median by more than
``latency_slack`` (jitter is not slowness) gets its weight scaled by
(median + slack) / its latency, never below ``min_share`` of it: slow
members get fewer new connections, and get them back when they recover.
docs/lb.md says it for users.
"""

from __future__ import annotations

import collections
import ipaddress
import math
import random
import statistics
import zlib
from dataclasses import dataclass
from typing import Any, Hashable, Iterable

from kumoflow import ofp
from kumoflow.apps import gateway
from kumoflow.apps import options as check
from kumoflow.apps.firewall import parse_header
from kumoflow.apps.lbmodel import TCP, UDP, Balancer, Listener, Member, Model, Pool, build, rewrite
from kumoflow.apps.lbprobe import Check, Result
from kumoflow.controller import Flow, Meter, ModelApp, pipeline
from kumoflow.packet import ARP, PacketError, parse
from kumoflow.packet.consts import ARP_REQUEST

NETWORK = pipeline.METADATA["network"]
KIND_BALANCER, KIND_CONNECTION, KIND_PROBE = 1, 2, 3
NUMBER_MASK = (1 << 48) - 1
CONNECTION_PRIORITY, PROBE_PRIORITY, LISTENER_PRIORITY, VIP_DROP_PRIORITY = 20000, 300, 200, 10
PUNT_METER, PROBE_METER = 0, 1
PROBE_RATE = 1000
IPV4_TYPE, ARP_TYPE = 0x0800, 0x0806
PORT_FIELDS = {TCP: ("tcp_src", "tcp_dst"), UDP: ("udp_src", "udp_dst")}
#: how much of a new latency sample moves a member's smoothed latency
LATENCY_WEIGHT = 0.5
#: source ports of health checks (from the VIP)
PROBE_PORTS = range(33000, 60000)


@dataclass(frozen=True)
class Connection:
    listener: str
    network: str               # the client's
    client: ipaddress.IPv4Address
    client_port: int
    member: str
    client_dpid: int
    number: int


@dataclass
class Health:
    status: str = "ONLINE"     # ONLINE or ERROR
    passed: int = 0            # in a row
    failed: int = 0
    latency: float | None = None
    detail: str = ""


class LoadBalancerApp(ModelApp):
    name = "lb"
    tables = ("balance",)
    requires = ("tenants",)
    model_kinds = frozenset(("loadbalancer", "listener", "pool", "member", "healthmonitor", "port", "subnet",
                             "network", "router"))

    def __init__(self, punt_rate: int = 2000, load_aware: bool = True, min_share: float = 0.2,
                 latency_slack: float = 0.02, max_connections: int = 100_000, **options: Any) -> None:
        super().__init__(**options)
        self.punt_rate = check.integer("punt_rate", punt_rate, 1, 1_000_000)
        self.load_aware = check.boolean("load_aware", load_aware)
        self.min_share = float(min_share)
        if not 0 < self.min_share <= 1:
            raise ValueError(f"min_share {min_share!r}: must be above 0 and at most 1")
        self.latency_slack = check.seconds("latency_slack", latency_slack)
        self.max_connections = check.integer("max_connections", max_connections, 1, 10_000_000)
        self.model = Model()
        self.connections: dict[tuple[str, str, ipaddress.IPv4Address, int], Connection] = {}
        self._by_number: dict[int, tuple] = {}
        self._next_number = 1
        self._active: collections.Counter[str] = collections.Counter()      # member -> connections
        self._per_listener: collections.Counter[str] = collections.Counter()
        #: connections ended whose second flow's counters are still to come: number -> listener
        self._ending: dict[int, str] = {}
        self.counted: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.health: dict[str, Health] = {}
        self._checks: dict[str, Check] = {}
        self._probing: dict[str, int] = {}      # member -> the generation of its probe timer
        self._generation = 0
        self._rr: dict[str, dict[str, float]] = {}
        self._sticky: dict[tuple[str, ipaddress.IPv4Address], tuple[str, float]] = {}
        self._numbers: dict[int, str] = {}      # network number -> id
        #: (a network that reaches it, its address) -> the load balancer
        self._vips: dict[tuple[str, str], Balancer] = {}
        #: the switches each load balancer's flows are on, and all of them (they have the meters)
        self._placed: dict[str, frozenset[int]] = {}
        self._meter_switches: set[int] = set()
        self._problems: dict[str, str] = {}
        self._random = random.Random()

    # --- the model -----------------------------------------------------------------

    @property
    def overlay(self):
        return self.peers["tenants"].overlay

    def rebuild(self) -> None:
        old, new = self.model, build(self.core.state, self.overlay)
        self.model = new
        self._numbers = {n.number: n.id for n in self.overlay.networks.values()}
        self._vips = {(network, str(b.vip)): b for b in new.balancers.values() if b.enabled for network in b.reach}
        placed, self._placed = self._placed, {b.id: self._switches_of(b) for b in new.balancers.values()}
        for balancer_id in set(old.balancers) | set(new.balancers):
            if old.balancers.get(balancer_id) != new.balancers.get(balancer_id) or \
                    placed.get(balancer_id) != self._placed.get(balancer_id) or \
                    self._listeners_of(old, balancer_id) != self._listeners_of(new, balancer_id):
                self.changed(("balancer", balancer_id))
        for member_id in set(old.members) | set(new.members):
            if self._probed(old, member_id) != self._probed(new, member_id):
                self.changed(("probe", member_id))
        switches, self._meter_switches = self._meter_switches, set().union(*self._placed.values())
        for dpid in switches ^ self._meter_switches:
            self.changed(("meters", dpid), dpid)
        for key, conn in list(self.connections.items()):       # a weight, a state: the connection stays
            if _path(new, conn) != _path(old, conn):
                self._forget(key)
        for member_id in list(self.health):
            if member_id not in new.members:
                del self.health[member_id]
        for member_id in new.members:
            self._schedule_probe(member_id)
        if any(getattr(dp, "settled", False) for dp in self.core.datapaths.values()):    # not while starting
            for record_id, problem in new.problems.items():
                if self._problems.get(record_id) != problem:
                    self.log.warning("%s is left out: %s", record_id, problem)
            self._problems = dict(new.problems)

    @staticmethod
    def _listeners_of(model: Model, balancer_id: str) -> list:
        balancer = model.balancers.get(balancer_id)
        if balancer is None:
            return []
        return [(model.listeners.get(i), model.pools.get(getattr(model.listeners.get(i), "pool", None) or ""))
                for i in balancer.listeners]

    def _probed(self, model: Model, member_id: str) -> tuple | None:
        member = model.members.get(member_id)
        pool = model.pools.get(member.pool) if member is not None else None
        balancer = model.balancers.get(model.pool_balancer.get(member.pool, "")) if member is not None else None
        if member is None or pool is None or pool.monitor is None or balancer is None:
            return None
        return (member, pool.monitor, balancer)

    def _switches_of(self, balancer: Balancer) -> frozenset[int]:
        """The switches with a port in a network that reaches the VIP: they get its flows."""
        return frozenset().union(*(self.overlay.switches_of(n) for n in balancer.reach))

    # --- compiling -------------------------------------------------------------------

    def owners(self) -> Iterable[Hashable]:
        for balancer_id in self.model.balancers:
            yield ("balancer", balancer_id)
        for member_id in self.model.members:
            yield ("probe", member_id)
        for dpid in self._meter_switches:
            yield ("meters", dpid)
        for key in self.connections:
            yield ("connection", key)

    def compile(self, key: Hashable, dp) -> list:
        kind, subject = key
        if kind == "balancer":
            balancer = self.model.balancers.get(subject)
            return self._compile_balancer(balancer, dp) if balancer is not None and balancer.enabled else []
        if kind == "probe":
            probed = self._probed(self.model, subject)
            return self._compile_probe(*probed) if probed is not None and \
                probed[0].monitor_port.place[0] == dp.id else []
        if kind == "meters":
            if subject != dp.id:
                return []
            return [Meter(self.meter_ids.start + offset, ofp.OFPMF.PKTPS | ofp.OFPMF.BURST,
                          [ofp.MeterBandDrop(rate, rate)])
                    for offset, rate in ((PUNT_METER, self.punt_rate), (PROBE_METER, PROBE_RATE))]
        if kind == "connection":
            conn = self.connections.get(subject)
            return self._compile_connection(conn, dp) if conn is not None else []
        return []

    def _metadata(self, network_id: str) -> tuple[int, int]:
        return (NETWORK.value(self.overlay.networks[network_id].number), NETWORK.mask)

    def _to_controller(self, meter: int) -> list:
        return [ofp.Meter(self.meter_ids.start + meter),
                ofp.ApplyActions([ofp.Output(ofp.OFPP.CONTROLLER, ofp.OFPCML.NO_BUFFER)])]

    def _compile_balancer(self, balancer: Balancer, dp) -> list:
        cookie = self.cookie(KIND_BALANCER << 48 | zlib.crc32(balancer.id.encode()))
        punt, vip = self._to_controller(PUNT_METER), str(balancer.vip)
        flows = []
        for network in balancer.reach:
            if dp.id not in self.overlay.switches_of(network):
                continue
            meta = self._metadata(network)
            to_vip = dict(metadata=meta, eth_type=IPV4_TYPE, ipv4_dst=vip)
            if network == balancer.network:
                flows.append(Flow(self.table("balance"), LISTENER_PRIORITY,
                                  ofp.Match(metadata=meta, eth_type=ARP_TYPE, arp_op=ARP_REQUEST, arp_tpa=vip),
                                  punt, cookie))
            flows.append(Flow(self.table("balance"), LISTENER_PRIORITY,
                              ofp.Match(**to_vip, ip_proto=1, icmpv4_type=8), punt, cookie))
            for listener_id in balancer.listeners:
                listener = self.model.listeners.get(listener_id)
                if listener is None or not listener.enabled or listener.pool not in self.model.pools:
                    continue
                flows.append(Flow(self.table("balance"), LISTENER_PRIORITY,
                                  ofp.Match(**to_vip, ip_proto=listener.protocol,
                                            **{PORT_FIELDS[listener.protocol][1]: listener.port}), punt, cookie))
            flows.append(Flow(self.table("balance"), VIP_DROP_PRIORITY, ofp.Match(**to_vip), [], cookie))
        return flows

    def _compile_probe(self, member: Member, monitor, balancer: Balancer) -> list:
        cookie = self.cookie(KIND_PROBE << 48 | zlib.crc32(member.id.encode()))
        address, port = member.monitor
        match = dict(metadata=self._metadata(member.monitor_port.network), eth_type=IPV4_TYPE,
                     ipv4_src=str(address), ipv4_dst=str(balancer.vip))
        if monitor.type in ("TCP", "HTTP"):
            match.update(ip_proto=TCP, tcp_src=port)
        else:
            match.update(ip_proto=1)
        return [Flow(self.table("balance"), PROBE_PRIORITY, ofp.Match(**match), self._to_controller(PROBE_METER),
                     cookie)]

    def _compile_connection(self, conn: Connection, dp) -> list:
        member, listener = self.model.members.get(conn.member), self.model.listeners.get(conn.listener)
        balancer = self.model.balancers.get(listener.balancer) if listener is not None else None
        if member is None or balancer is None:
            return []
        cookie = self.cookie(KIND_CONNECTION << 48 | conn.number)
        how = rewrite(balancer, conn.network, member)
        src_field, dst_field = PORT_FIELDS[listener.protocol]
        after = [ofp.GotoTable(pipeline.next_table("balance"))]
        flows = []
        common = dict(idle_timeout=listener.idle, flags=ofp.OFPFF.SEND_FLOW_REM)
        if dp.id == conn.client_dpid:
            actions = [ofp.SetField("ipv4_dst", str(member.address)), ofp.SetField(dst_field, member.port)]
            if how.dst_mac is not None:
                actions.append(ofp.SetField("eth_dst", how.dst_mac))
            match = ofp.Match(metadata=self._metadata(conn.network), eth_type=IPV4_TYPE, ip_proto=listener.protocol,
                              ipv4_src=str(conn.client), ipv4_dst=str(balancer.vip),
                              **{src_field: conn.client_port, dst_field: listener.port})
            flows.append(Flow(self.table("balance"), CONNECTION_PRIORITY, match,
                              [ofp.ApplyActions(actions), *after], cookie, **common))
        if dp.id == member.target.place[0]:
            actions = [ofp.SetField("ipv4_src", str(balancer.vip)), ofp.SetField(src_field, listener.port)]
            if how.src_mac is not None:
                actions.append(ofp.SetField("eth_src", how.src_mac))
            match = ofp.Match(metadata=self._metadata(member.target.network), eth_type=IPV4_TYPE,
                              ip_proto=listener.protocol, ipv4_src=str(member.address), ipv4_dst=str(conn.client),
                              **{src_field: member.port, dst_field: conn.client_port})
            flows.append(Flow(self.table("balance"), CONNECTION_PRIORITY, match,
                              [ofp.ApplyActions(actions), *after], cookie, **common))
        return flows

    # --- packets ---------------------------------------------------------------------

    def packet_in(self, dp, msg: ofp.PacketIn) -> None:
        kind = (msg.cookie >> 48) & 0xFF
        if kind == KIND_PROBE:
            self._probe_answer(msg.data)
            return
        if kind != KIND_BALANCER:
            return
        network = self._numbers.get(NETWORK.of(msg.match.get("metadata", 0)))
        try:
            pkt = parse(msg.data)
        except PacketError:
            return
        in_port = msg.match.get("in_port", ofp.OFPP.CONTROLLER)
        arp = pkt.get(ARP)
        if arp is not None:
            balancer = self._balancer_at(network, arp.dst_ip)
            if balancer is not None and arp.op == ARP_REQUEST:
                self._back(dp, in_port, gateway.arp_reply(balancer.mac, balancer.vip, arp.src_mac, arp.src_ip))
            return
        packet = parse_header(msg.data)
        if packet is None or network is None:
            return
        balancer = self._balancer_at(network, str(packet.dst))
        if balancer is None:
            return
        if packet.protocol == 1:
            mac = balancer.mac if network == balancer.network else balancer.router_mac(network)
            answer = gateway.echo_reply(msg.data, mac) if mac is not None else None
            if answer is not None:
                self._back(dp, in_port, answer)
            return
        listener = next((self.model.listeners[i] for i in balancer.listeners
                         if i in self.model.listeners and self.model.listeners[i].protocol == packet.protocol
                         and self.model.listeners[i].port == packet.dport), None)
        if listener is None:
            return
        key = (listener.id, network, packet.src, packet.sport)
        if key in self.connections:         # its flows are on their way: the packet too
            self.core.send_after_flows(dp, ofp.PacketOut(in_port=in_port, actions=[ofp.Output(ofp.OFPP.TABLE)],
                                                         data=msg.data))
            return
        member = self._choose(listener, packet.src, packet.sport)
        if member is None:
            self.counted[listener.id]["request_errors"] += 1
            self._refuse(dp, in_port, pkt, msg.data, balancer, network)
            return
        conn = Connection(listener.id, network, packet.src, packet.sport, member.id, dp.id, self._next_number)
        self._next_number = self._next_number % NUMBER_MASK + 1
        self.connections[key] = conn
        self._by_number[conn.number] = key
        self._active[member.id] += 1
        self._per_listener[listener.id] += 1
        self.counted[listener.id]["total_connections"] += 1
        self.changed(("connection", key), dp.id)
        if member.target.place[0] != dp.id:
            self.changed(("connection", key), member.target.place[0])
        self.core.send_after_flows(dp, ofp.PacketOut(in_port=in_port, actions=[ofp.Output(ofp.OFPP.TABLE)],
                                                     data=msg.data))

    def _balancer_at(self, network: str | None, address: str) -> Balancer | None:
        return self._vips.get((network, address))

    def _back(self, dp, in_port: int, frame: bytes) -> None:
        self.send(dp, ofp.PacketOut(in_port=in_port, actions=[ofp.Output(ofp.OFPP.IN_PORT)], data=frame))

    def _refuse(self, dp, in_port: int, pkt, data: bytes, balancer: Balancer, network: str) -> None:
        """No member can take the connection: a reset (TCP) or port unreachable (UDP), from the VIP."""
        mac = balancer.mac if network == balancer.network else balancer.router_mac(network)
        answer = gateway.tcp_reset(pkt) or (gateway.icmp_error(pkt, data, "port_unreachable", mac=mac,
                                                               source=balancer.vip) if mac else None)
        if answer is not None:
            self._back(dp, in_port, answer)

    # --- choosing a member --------------------------------------------------------------

    def _eligible(self, pool: Pool) -> list[Member]:
        members = [self.model.members[m] for m in pool.members if m in self.model.members]
        usable = [m for m in members if m.enabled and m.weight > 0
                  and (pool.monitor is None or self.health.get(m.id, Health()).status == "ONLINE")]
        primary = [m for m in usable if not m.backup]
        return primary or [m for m in usable if m.backup]

    def weights(self, pool: Pool, members: list[Member]) -> dict[str, float]:
        """Each member's weight for new connections: its own, scaled down when it answers its
        checks slower than the pool's median and the slack (load_aware), never below min_share of it."""
        out = {m.id: float(m.weight) for m in members}
        if not self.load_aware:
            return out
        latencies = {m.id: self.health[m.id].latency for m in members
                     if m.id in self.health and self.health[m.id].latency}
        if len(latencies) < 2:
            return out
        median = statistics.median(latencies.values())
        for member_id, latency in latencies.items():
            out[member_id] *= max(self.min_share, min(1.0, (median + self.latency_slack) / latency))
        return out

    def _choose(self, listener: Listener, client: ipaddress.IPv4Address, client_port: int) -> Member | None:
        pool = self.model.pools.get(listener.pool or "")
        if pool is None or not pool.enabled or len(self.connections) >= self.max_connections:
            return None
        if listener.limit is not None and self._per_listener[listener.id] >= listener.limit:
            return None
        members = self._eligible(pool)
        if not members:
            return None
        now = self.core.now()
        if pool.persistence == "SOURCE_IP":
            stuck = self._sticky.get((pool.id, client))
            if stuck is not None and stuck[1] > now and any(m.id == stuck[0] for m in members):
                self._sticky[(pool.id, client)] = (stuck[0], now + pool.persistence_timeout)
                return self.model.members[stuck[0]]
        weights = self.weights(pool, members)
        if pool.algorithm == "LEAST_CONNECTIONS":
            chosen = min(members, key=lambda m: ((self._active[m.id] + 1) / weights[m.id], m.id))
        elif pool.algorithm in ("SOURCE_IP", "SOURCE_IP_PORT"):
            key = str(client) if pool.algorithm == "SOURCE_IP" else f"{client}:{client_port}"
            chosen = max(members, key=lambda m: _rendezvous(key, m.id, weights[m.id]))
        else:
            chosen = self._round_robin(pool.id, members, weights)
        if pool.persistence == "SOURCE_IP":
            self._sticky[(pool.id, client)] = (chosen.id, now + pool.persistence_timeout)
        return chosen

    def _round_robin(self, pool_id: str, members: list[Member], weights: dict[str, float]) -> Member:
        """Smooth weighted round robin: each member's credit grows by its weight; the richest
        is chosen and pays the total. Spreads even with weights, never bunches. Credits start
        again from nothing when the members that can be chosen change (one gone down, say):
        what the others had saved was for the old round."""
        credit = self._rr.get(pool_id)
        if credit is None or credit.keys() != {m.id for m in members}:
            credit = self._rr[pool_id] = {m.id: 0.0 for m in members}
        total = sum(weights.values())
        for m in members:
            credit[m.id] += weights[m.id]
        chosen = max(members, key=lambda m: (credit[m.id], m.id))
        credit[chosen.id] -= total
        return chosen

    # --- connections ending ---------------------------------------------------------------

    def flow_removed(self, dp, msg: ofp.FlowRemoved) -> None:
        if (msg.cookie >> 48) & 0xFF != KIND_CONNECTION:
            return
        number = msg.cookie & NUMBER_MASK
        key = self._by_number.get(number)
        listener = self.connections[key].listener if key is not None else self._ending.pop(number, None)
        if listener is not None:
            listener_id = self.model.listeners.get(listener)
            inward = listener_id is not None and msg.match.get("tcp_dst", msg.match.get("udp_dst")) == listener_id.port
            self.counted[listener]["bytes_in" if inward else "bytes_out"] += msg.byte_count
        if key is not None:
            self._ending[number] = self.connections[key].listener
            if len(self._ending) > self.max_connections:
                self._ending.pop(next(iter(self._ending)))
            self._forget(key)

    def _forget(self, key: tuple) -> None:
        conn = self.connections.pop(key, None)
        if conn is None:
            return
        self._by_number.pop(conn.number, None)
        self._active[conn.member] -= 1
        if self._active[conn.member] <= 0:
            del self._active[conn.member]
        self._per_listener[conn.listener] -= 1
        if self._per_listener[conn.listener] <= 0:
            del self._per_listener[conn.listener]
        self.changed(("connection", key))

    # --- health checks -----------------------------------------------------------------

    def _schedule_probe(self, member_id: str) -> None:
        """A member's checks every `delay` seconds, while its pool has a monitor."""
        probed = self._probed(self.model, member_id)
        if probed is None:
            self._probing.pop(member_id, None)
            return
        if member_id in self._probing:
            return
        self._generation += 1
        generation = self._probing[member_id] = self._generation
        self.core.call_later(self._random.uniform(0, min(1.0, probed[1].delay)),
                             lambda: self._probe(member_id, generation))

    def _probe(self, member_id: str, generation: int) -> None:
        if self._probing.get(member_id) != generation:
            return
        probed = self._probed(self.model, member_id)
        if probed is None:
            self._probing.pop(member_id, None)
            return
        member, monitor, balancer = probed
        try:
            self._check(member_id, member, monitor, balancer)
        finally:       # after the check's timeout: with timeout == delay, the timeout is judged first
            self.core.call_later(monitor.delay, lambda: self._probe(member_id, generation))

    def _check(self, member_id: str, member: Member, monitor, balancer: Balancer) -> None:
        """Send a member one health check, and judge it at its timeout if no answer did."""
        if member_id in self._checks:       # the last one is still out
            return
        dp = self.core.datapaths.get(member.monitor_port.place[0])
        if dp is None or not getattr(dp, "is_up", True) or not balancer.enabled:
            return
        src_mac = balancer.mac if member.monitor_port.network == balancer.network else \
            balancer.router_mac(member.monitor_port.network)
        if src_mac is None:
            return
        now = self.core.now()
        probe = Check(monitor, src_mac, member.monitor_port.mac, balancer.vip, member.monitor,
                      self._random.choice(PROBE_PORTS), self._random.getrandbits(32), now)
        self._checks[member_id] = probe
        self.send(dp, ofp.PacketOut(actions=[ofp.Output(member.monitor_port.place[1])], data=probe.first()))
        self.core.call_later(monitor.timeout, lambda: self._probe_timeout(member_id, probe))

    def _probe_timeout(self, member_id: str, probe: Check) -> None:
        if self._checks.get(member_id) is probe:
            del self._checks[member_id]
            self._judge(member_id, probe.timed_out())

    def _probe_answer(self, frame: bytes) -> None:
        for member_id, probe in list(self._checks.items()):
            if probe.matches(frame):
                frames, result = probe.answer(frame, self.core.now())
                member = self.model.members.get(member_id)
                dp = self.core.datapaths.get(member.monitor_port.place[0]) if member is not None else None
                for out in frames if dp is not None else ():
                    self.send(dp, ofp.PacketOut(actions=[ofp.Output(member.monitor_port.place[1])], data=out))
                if result is not None:
                    del self._checks[member_id]
                    self._judge(member_id, result)
                return

    def _judge(self, member_id: str, result: Result) -> None:
        probed = self._probed(self.model, member_id)
        if probed is None:
            return
        monitor = probed[1]
        health = self.health.setdefault(member_id, Health())
        health.detail = result.detail
        if result.ok:
            health.passed, health.failed = health.passed + 1, 0
            if result.latency is not None:
                health.latency = result.latency if health.latency is None else \
                    (1 - LATENCY_WEIGHT) * health.latency + LATENCY_WEIGHT * result.latency
            if health.status == "ERROR" and health.passed >= monitor.rise:
                health.status = "ONLINE"
                self.log.info("member %s is back (%s)", member_id, result.detail)
        else:
            health.passed, health.failed = 0, health.failed + 1
            if health.status == "ONLINE" and health.failed >= monitor.fall:
                health.status = "ERROR"
                self.log.warning("member %s failed %d checks: %s; no new connections go to it", member_id,
                                 health.failed, result.detail)

    # --- status and statistics (the API's /v2/lbaas) ----------------------------------------

    def operating_status(self, kind: str, record_id: str) -> str | None:
        m = self.model
        if record_id in m.problems:
            return "ERROR"
        if kind == "member":
            member = m.members.get(record_id)
            if member is None:
                return None
            pool = m.pools.get(member.pool)
            if not member.enabled:
                return "OFFLINE"
            if member.weight == 0:
                return "DRAINING"
            if pool is None or pool.monitor is None:
                return "NO_MONITOR"
            return self.health.get(record_id, Health()).status
        if kind == "healthmonitor":
            return "ONLINE" if any(p.monitor is not None and p.monitor.id == record_id
                                   for p in m.pools.values()) else "OFFLINE"
        if kind == "pool":
            pool = m.pools.get(record_id)
            if pool is None:
                return None
            if not pool.enabled:
                return "OFFLINE"
            return _worst(self.operating_status("member", i) for i in pool.members)
        if kind == "listener":
            listener = m.listeners.get(record_id)
            if listener is None:
                return None
            if not listener.enabled:
                return "OFFLINE"
            return _worst([self.operating_status("pool", listener.pool)] if listener.pool else [])
        if kind == "loadbalancer":
            balancer = m.balancers.get(record_id)
            if balancer is None:
                return None
            if not balancer.enabled:
                return "OFFLINE"
            return _worst(self.operating_status("listener", i) for i in balancer.listeners)
        return None

    def stats(self, kind: str, record_id: str) -> dict | None:
        if kind == "listener":
            listeners = [record_id]
        elif kind == "loadbalancer" and record_id in self.model.balancers:
            listeners = list(self.model.balancers[record_id].listeners)
        else:
            return None
        out = {"bytes_in": 0, "bytes_out": 0, "active_connections": 0, "total_connections": 0, "request_errors": 0}
        for listener_id in listeners:
            counted = self.counted.get(listener_id, {})
            for name in ("bytes_in", "bytes_out", "total_connections", "request_errors"):
                out[name] += counted.get(name, 0)
            out["active_connections"] += self._per_listener.get(listener_id, 0)
        return out

    def metrics(self) -> Iterable[tuple]:
        yield ("balancers", "load balancers compiled", "gauge", len(self.model.balancers))
        yield ("connections", "connections with flows", "gauge", len(self.connections))
        for member_id, member in sorted(self.model.members.items()):
            labels = {"member": member_id, "pool": member.pool}
            yield ("member_connections", "connections per member", "gauge", self._active.get(member_id, 0), labels)
            health = self.health.get(member_id)
            if health is not None:
                yield ("member_up", "1 when the member passes its health checks", "gauge",
                       int(health.status == "ONLINE"), labels)
                if health.latency is not None:
                    yield ("member_latency_seconds", "smoothed health check latency", "gauge", health.latency,
                           labels)
        for listener_id, counted in sorted(self.counted.items()):
            labels = {"listener": listener_id}
            yield ("connections_total", "connections balanced", "counter", counted["total_connections"], labels)
            yield ("request_errors_total", "connections no member could take", "counter",
                   counted["request_errors"], labels)


def _path(model: Model, conn: Connection) -> tuple | None:
    """What a connection's flows are made of: where they go, and what the listener is."""
    member, listener = model.members.get(conn.member), model.listeners.get(conn.listener)
    if member is None or listener is None:
        return None
    balancer = model.balancers.get(listener.balancer)
    return (member.address, member.port, member.target, listener.protocol, listener.port, listener.idle,
            balancer.vip if balancer is not None else None, balancer.mac if balancer is not None else None,
            balancer.routers if balancer is not None else None)


def _worst(statuses: Iterable[str | None]) -> str:
    """A parent's status from its children's: ERROR when all are, DEGRADED when some are."""
    seen = [s for s in statuses if s != "OFFLINE"]
    errors = sum(s == "ERROR" for s in seen)
    if seen and errors == len(seen):
        return "ERROR"
    if errors or "DEGRADED" in seen:
        return "DEGRADED"
    return "ONLINE"


def _rendezvous(key: str, member_id: str, weight: float) -> float:
    """Weighted rendezvous hashing's score: the highest wins; a member's going moves only its own clients."""
    h = (zlib.crc32(f"{key}|{member_id}".encode()) + 0.5) / 2**32
    return -weight / math.log(h)
