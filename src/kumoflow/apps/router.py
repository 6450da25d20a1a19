"""`router`: Neutron routers as flows, routed at the first switch a packet
enters (a distributed router: no packet hairpins through a central box).

Every switch holds every router's tables; a packet a host sends to its
gateway's MAC is routed where it enters, then crosses the fabric to its
destination with the destination's MAC, like any other frame. The stages
(pipeline.py) are those of a router's forwarding plane:

``router``    ``eth_dst`` = an interface's MAC names the router: its VRF
              number goes into ``metadata`` and the frame is looked up in
              that router's table alone (two projects' routers with the
              same subnets never mix). ARP for a router's address, and ARP
              addressed to a router, go to the controller, which answers
              and learns the sender.
``route``     longest prefix match within the VRF: one flow per route,
              the priority growing with the prefix length, so the switch's
              own priority order is the longest-prefix rule. A match
              decrements the TTL (an expired packet reaches the controller,
              which answers ICMP time exceeded from the interface it came
              in on: traceroute sees each router) and rewrites the source
              MAC to the egress interface's; a connected destination goes
              on to ``neighbour``, anything else writes its next hop's id
              into ``metadata`` and goes on to ``nexthop``. The router's own
              addresses go to the controller (echo replies, port
              unreachable); a destination without a route gets ICMP
              destination unreachable.
``nexthop``   a next hop's MAC.
``neighbour`` a connected destination's MAC.
``snat``      what leaves by a router's external gateway: a floating IP's
              owner takes its floating address (and what comes in for the
              floating address has its destination translated back in
              ``router``); any other source is translated per connection to
              the gateway's address and a port of its own (snat.py): the
              first packet reaches the controller, which adds the
              connection's two flows and sends the packet on translated.
              ICMP echo, whose identifier OpenFlow 1.3 cannot rewrite, is
              translated by the controller packet by packet.

Neighbours (next hops and connected destinations) are known from the API
first: a port on one of the router's networks says which MAC has which of
its addresses, so a VM's flows exist before it sends anything. Other
addresses are resolved on demand: the first packet towards one reaches the
controller, which holds it (a few per address, a bounded number overall),
sends ARP from the egress interface, and on the reply installs the
neighbour's flow and sends what it held; no reply after `arp_retries`
attempts, and the held packets' senders get ICMP host unreachable.

What is compiled:

``("router", id)``      on every switch: the router's interfaces (table
                        router), routes (route) and resolved next hops
                        (nexthop); while its admin state is down, only a
                        drop of what is sent to its MACs.
``("arp", address)``    ARP requests for a gateway address: to the
                        controller (one object per address, as two
                        projects' routers may share one).
``("neighbour", vrf, address)``  a connected destination's MAC.
``("learned", id, prefix)``  a route learned for the router (BGP, apps/bgp.py):
                        one object per prefix, so a hundred thousand of
                        them come and go one by one.
``("snat", key)``       a translated TCP or UDP connection: its outbound
                        flow (idle timeout, flow-removed on expiry) where
                        its packets enter, its inbound flow everywhere.

The controller answers ICMP at most ``icmp_rate`` messages a second per
destination (a kernel's icmp_ratelimit), so a flood of expiring or
unroutable packets costs little.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from socket import inet_ntoa
from typing import Any, Hashable, Iterable

from kumoflow import ofp
from kumoflow.apps import options as check
from kumoflow.apps import gateway
from kumoflow.apps.overlay import network_numbers
from kumoflow.apps.routing import ROUTER_PORTS, Interface, IPAddress, IPNetwork, Router, build
from kumoflow.apps.snat import ICMP as P_ICMP, TCP as P_TCP, UDP as P_UDP, Key, SnatTable
from kumoflow.controller import App, Flow, pipeline
from kumoflow.controller.flows import match_bytes
from kumoflow.packet import (
    ARP, ICMP, TCP, UDP, Ethernet, ICMPv6Echo, IPv4, IPv6, NDNeighborAdvert, NDNeighborSolicit, NDOptSourceLinkAddr,
    NDOptTargetLinkAddr, NDRouterSolicit, PacketError, parse,
)
from kumoflow.packet.consts import ARP_REPLY, ARP_REQUEST, ND_NEIGHBOR_SOLICIT, ND_ROUTER_SOLICIT

VRF, NEXTHOP = pipeline.METADATA["vrf"], pipeline.METADATA["nexthop"]
NETWORK, REMOTE = pipeline.METADATA["network"], pipeline.METADATA["remote"]
#: API ports whose addresses no host answers for: a router's own, and a floating IP's
NOT_NEIGHBOURS = (*ROUTER_PORTS, "network:floatingip")
KIND_ROUTER, KIND_ARP, KIND_NEIGHBOUR, KIND_ND, KIND_RS, KIND_SNAT, KIND_LEARNED = 1, 2, 3, 4, 5, 6, 7
#: priorities: the router's own addresses above every route; routes at BASE + prefix length;
#: translated answers above floating IPs above plain interfaces
OWN_PRIORITY, ROUTE_BASE, IFACE_PRIORITY, IFACE_DROP_PRIORITY = 1000, 100, 100, 10
FLOATING_PRIORITY, CONNECTION_PRIORITY, SNAT_MISS_PRIORITY = 110, 120, 1
IPV4_TYPE, ARP_TYPE, IPV6_TYPE = 0x0800, 0x0806, 0x86DD
#: held packets: per address, and in all
HOLD_PER_ADDRESS, HOLD_TOTAL = 8, 1024

_TO_CONTROLLER = [ofp.ApplyActions([ofp.Output(ofp.OFPP.CONTROLLER, ofp.OFPCML.NO_BUFFER)])]
#: where a routed frame goes on (its destination MAC set, its source translated): the table after snat,
#: where delivery starts and which every frame for a port passes (controller/pipeline.py)
DELIVERY = pipeline.next_table("snat")
_NO_MATCH, _INVALID_TTL = int(ofp.OFPR.NO_MATCH), int(ofp.OFPR.INVALID_TTL)


class _Pending:
    """An address being resolved: the packets waiting for it, ARPs sent."""
    __slots__ = ("router_id", "frames", "tries")

    def __init__(self, router_id: str) -> None:
        self.router_id = router_id
        self.frames: deque[bytes] = deque(maxlen=HOLD_PER_ADDRESS)
        self.tries = 0


class RouterApp(App):
    name = "router"
    tables = ("router", "route", "nexthop", "neighbour", "snat")
    requires = ("fabric",)

    def __init__(self, arp_interval: float = 1.0, arp_retries: int = 3, icmp_rate: int = 100,
                 ra_interval: float = 30.0, snat_ports: str = "1024-65535", tcp_idle: int = 300, udp_idle: int = 60,
                 icmp_idle: int = 60, **options: Any) -> None:
        super().__init__(**options)
        low, _, high = str(snat_ports).partition("-")
        if not (low.isdigit() and high.isdigit() and 1 <= int(low) <= int(high) <= 65535):
            raise ValueError(f"snat_ports {snat_ports!r}: must be LOW-HIGH, 1 <= LOW <= HIGH <= 65535")
        self.snat = SnatTable(range(int(low), int(high) + 1))
        self.idle = {P_TCP: check.integer("tcp_idle", tcp_idle, 1, 65535),
                     P_UDP: check.integer("udp_idle", udp_idle, 1, 65535),
                     P_ICMP: check.integer("icmp_idle", icmp_idle, 1, 65535)}
        self.arp_interval = check.seconds("arp_interval", arp_interval)
        self.ra_interval = check.seconds("ra_interval", ra_interval)
        self.arp_retries = check.integer("arp_retries", arp_retries, 1, 100)
        self.icmp_rate = check.integer("icmp_rate", icmp_rate, 1, 100_000)
        self.routers: dict[str, Router] = {}
        self.by_vrf: dict[int, Router] = {}
        #: router id -> prefix key -> (prefix, next hop): routes learned (BGP). A prefix key is
        #: (version, address as an int, length): a hundred thousand of them pass through the
        #: core's dicts, and an ipaddress network hashes (and prints) slowly
        self.learned: dict[str, dict[tuple[int, int, int], tuple[IPNetwork, IPAddress]]] = {}
        self._api_neighbours: dict[tuple[int, IPAddress], str] = {}   # (vrf, address) -> MAC, from API ports
        self._arp_neighbours: dict[tuple[int, IPAddress], str] = {}   # ... resolved by ARP
        self._pending: dict[tuple[int, IPAddress], _Pending] = {}
        self._held = 0
        self._icmp_tokens: dict[str, tuple[float, float]] = {}       # destination -> (tokens, when)
        self._problems: set[str] = set()
        self._learned_flows: dict[tuple[str, tuple], tuple[Router, IPAddress, list]] = {}
        self._via_cache: dict[tuple[int, IPAddress], tuple[Router, list]] = {}
        self.network_numbers: dict[str, int] = {}

    @property
    def fabric(self):
        return self.peers["fabric"]

    def start(self) -> None:
        self.core.call_every(self.arp_interval, self._retry)
        self.core.call_every(self.ra_interval, self._advertise)
        self.core.call_every(1.0, self._age_icmp)
        self._rebuild()

    # --- the model -----------------------------------------------------------------

    def _rebuild(self) -> None:
        """Routers from the desired state; mark what changed."""
        state = self.core.state
        subnets = {r.id: r for r in state.all("subnet")}
        old_routers = self.routers
        hops = {router_id: {hop for _, hop in routes.values()} for router_id, routes in self.learned.items()}
        self.routers = build(state.all("router"), state.all("port"), subnets, hops, state.all("floatingip"))
        self.network_numbers = network_numbers(state.all("network"))
        self.by_vrf = {r.vrf: r for r in self.routers.values()}
        for key in list(self.snat.connections):     # a router gone, or its gateway: its connections too
            router = self.by_vrf.get(key.vrf)
            conn = self.snat.connections[key]
            if router is None or not router.snat or router.external.ip != conn.gateway:
                self._close(key)
        for router_id in set(old_routers) | set(self.routers):
            self.changed(("router", router_id))
            old, new = old_routers.get(router_id), self.routers.get(router_id)
            if _table_shape(old) != _table_shape(new):     # its learned routes compile differently now
                for prefix in self.learned.get(router_id, ()):
                    self.changed(("learned", router_id, prefix))
        for key in set(_resolution_keys(old_routers)) | set(_resolution_keys(self.routers)):
            self.changed(key)
        old_neighbours, self._api_neighbours = self._api_neighbours, {}
        for port in state.all("port"):
            self._api_neighbours.update(self._port_neighbours(port.body))
        self._arp_neighbours = {key: mac for key, mac in self._arp_neighbours.items() if key[0] in self.by_vrf}
        for key in set(old_neighbours) | set(self._api_neighbours):
            if old_neighbours.get(key) != self._api_neighbours.get(key):
                self.changed(("neighbour", *key))
        problems = {p for r in self.routers.values() for p in r.problems}
        for problem in sorted(problems - self._problems):     # each once, not at every change
            self.log.warning("%s", problem)
        self._problems = problems

    def _port_neighbours(self, body: dict | None) -> dict[tuple[int, IPAddress], str]:
        """(vrf, address) -> MAC for each address of an API port that lies in
        one of its network's router interfaces' subnets."""
        if not body or body.get("device_owner") in NOT_NEIGHBOURS or not body.get("mac_address"):
            return {}     # a router's own port, or the port that holds a floating address (no host has it)
        out = {}
        network = body.get("network_id")
        for fixed in body.get("fixed_ips", ()):
            try:
                ip = ipaddress.ip_address(fixed["ip_address"])
            except (KeyError, ValueError):
                continue
            for router in self.routers.values():
                for iface in router.interfaces:
                    if iface.network_id == network and ip.version == iface.ip.version and ip in iface.subnet:
                        out[(router.vrf, ip)] = str(body["mac_address"]).lower()
        return out

    def neighbour(self, vrf: int, ip: IPAddress) -> str | None:
        return self._api_neighbours.get((vrf, ip)) or self._arp_neighbours.get((vrf, ip))

    def record_changed(self, change) -> None:
        if change.kind in ("router", "subnet", "floatingip", "network"):
            self.core.before_compile(self._rebuild)      # once for all the records of an event
        elif change.kind == "port":
            old = change.old.body if change.old is not None else None
            new = change.record.body if change.record is not None else None
            if any(b and b.get("device_owner") in ROUTER_PORTS for b in (old, new)):
                self.core.before_compile(self._rebuild)
                return
            before, after = self._port_neighbours(old), self._port_neighbours(new)
            for key in before:
                self._api_neighbours.pop(key, None)
            self._api_neighbours.update(after)
            for key in set(before) | set(after):
                self.changed(("neighbour", *key))
                if key in self._api_neighbours:
                    self._resolved(*key)

    def learn(self, router_id: str, adds: dict[IPNetwork, IPAddress], deletes: Iterable[IPNetwork] = ()) -> None:
        """Routes learned for a router (BGP) come and go: each is compiled on its own."""
        routes = self.learned.setdefault(router_id, {})
        router = self.routers.get(router_id)
        for prefix in deletes:
            key = _prefix_key(prefix)
            if routes.pop(key, None) is not None:
                self._learned_flows.pop((router_id, key), None)
                self.changed(("learned", router_id, key))
        new_hops = False
        for prefix, nexthop in adds.items():
            key = _prefix_key(prefix)
            old = routes.get(key)
            if old is None or old[1] != nexthop:
                routes[key] = (prefix, nexthop)
                self.changed(("learned", router_id, key))
                new_hops = new_hops or router is None or nexthop not in router.nexthops
        if not routes:
            del self.learned[router_id]
        if new_hops:
            self._rebuild()

    def metrics(self):
        yield "routers", "Routers (each its own routing table)", "gauge", len(self.routers)
        yield "routes", "Routes of the routers' own (connected, extra, default)", "gauge", sum(
            len(r.routes) for r in self.routers.values())
        yield "learned_routes", "Routes learned for the routers (BGP)", "gauge", sum(
            len(routes) for routes in self.learned.values())
        yield "neighbours", "Neighbours known, from the API and by ARP or neighbour discovery", "gauge", len(
            set(self._api_neighbours) | set(self._arp_neighbours))
        yield "held_packets", "Packets waiting for an address to be resolved", "gauge", self._held
        yield "snat_connections", "Connections translated to a gateway's address", "gauge", len(self.snat)
        yield "snat_exhausted", "Packets dropped because a gateway had no free source port", "counter", \
            self.snat.exhausted

    # --- compiling -----------------------------------------------------------------

    def owners(self) -> Iterable[Hashable]:
        for router_id in self.routers:
            yield ("router", router_id)
        yield from _resolution_keys(self.routers)
        for vrf, ip in set(self._api_neighbours) | set(self._arp_neighbours):
            yield ("neighbour", vrf, ip)
        for key in self.snat.connections:
            if key.proto != P_ICMP:
                yield ("snat", key)
        for router_id, routes in self.learned.items():
            for prefix in routes:
                yield ("learned", router_id, prefix)

    def compile(self, key: Hashable, dp) -> list:
        kind = key[0]
        if kind == "router":
            router = self.routers.get(key[1])
            return self._compile_router(router) if router is not None else []
        if kind in ("arp", "nd", "rs"):
            return self._compile_resolution(key)
        if kind == "snat":
            return self._compile_connection(key[1], dp)
        if kind == "learned":
            return self._compile_learned(*key[1:])
        router = self.by_vrf.get(key[1])
        mac = self.neighbour(key[1], key[2])
        if router is None or not router.up or mac is None:
            return []
        return [Flow(self.table("neighbour"), ROUTE_BASE, _match(router.vrf, key[2], host=True),
                     [ofp.ApplyActions([ofp.SetField("eth_dst", mac)]), ofp.GotoTable(self._after(router, key[2]))],
                     self.cookie(KIND_NEIGHBOUR << 48 | router.vrf))]

    def _after(self, router: Router, ip: IPAddress) -> int:
        """Where a packet goes once its destination MAC is set: through the
        snat table when it leaves by the external gateway, on to delivery
        otherwise."""
        return self.table("snat") if router.external is not None and router.is_external(ip) else DELIVERY

    def _compile_router(self, router: Router) -> list:
        cookie = self.cookie(KIND_ROUTER << 48 | router.vrf)
        table, route_table = self.table("router"), self.table("route")
        flows = []
        vrf_only = VRF.value(router.vrf)
        if not router.up:      # its MACs lead nowhere (not flooded as unknown unicast)
            return [Flow(table, IFACE_DROP_PRIORITY, ofp.Match(eth_dst=mac), [], cookie)
                    for mac in sorted({i.mac for i in router.interfaces})]
        for mac in sorted({i.mac for i in router.interfaces}):
            versions = {i.ip.version for i in router.interfaces if i.mac == mac}
            for ethertype in [IPV4_TYPE] * (4 in versions) + [IPV6_TYPE] * (6 in versions):
                flows.append(Flow(table, IFACE_PRIORITY, ofp.Match(eth_dst=mac, eth_type=ethertype),
                                  [ofp.WriteMetadata(vrf_only, VRF.mask), ofp.GotoTable(route_table)], cookie))
            if 4 in versions:
                flows.append(Flow(table, IFACE_PRIORITY, ofp.Match(eth_dst=mac, eth_type=ARP_TYPE),
                                  _TO_CONTROLLER, cookie))
            flows.append(Flow(table, IFACE_DROP_PRIORITY, ofp.Match(eth_dst=mac), [], cookie))
        for address in sorted(_own_addresses(router), key=lambda ip: (ip.version, ip)):
            flows.append(Flow(route_table, OWN_PRIORITY, _match(router.vrf, address, host=True), _TO_CONTROLLER,
                              cookie))
        for route in router.routes.values():
            flow = self._route_flow(router, route.prefix, route.nexthop, cookie)
            if flow is not None:
                flows.append(flow)
        for ip, number in router.nexthops.items():
            mac = self.neighbour(router.vrf, ip)
            if mac is not None:
                metadata = VRF.value(router.vrf) | NEXTHOP.value(number)
                flows.append(Flow(self.table("nexthop"), ROUTE_BASE,
                                  ofp.Match(metadata=(metadata, VRF.mask | NEXTHOP.mask)),
                                  [ofp.ApplyActions([ofp.SetField("eth_dst", mac)]),
                                   ofp.GotoTable(self._after(router, ip))], cookie))
        return flows + self._compile_nat(router, cookie)

    def _route_flow(self, router: Router, prefix: IPNetwork, nexthop: IPAddress | None, cookie: int,
                    key: tuple[int, int, int] | None = None) -> Flow | None:
        """The route table's flow for a prefix (`key`: its _prefix_key, when known): to the
        neighbour table (connected) or a next hop."""
        if nexthop is None:
            egress = router.interface_for(prefix.network_address)
            if egress is None:
                return None
            instructions = [ofp.ApplyActions([ofp.DecNwTtl(), ofp.SetField("eth_src", egress.mac)]),
                            ofp.WriteMetadata(self._network_value(egress), NETWORK.mask | REMOTE.mask),
                            ofp.GotoTable(self.table("neighbour"))]
        else:
            instructions = self._via(router, nexthop)
            if instructions is None:
                return None
        return Flow.packed(self.table("route"), ROUTE_BASE + prefix.prefixlen,
                           _route_match(router.vrf, *(key or _prefix_key(prefix))), instructions, cookie)

    def _via(self, router: Router, nexthop: IPAddress) -> list | None:
        """The instructions of every route through one next hop: one list,
        built once per router model (thousands of learned routes share it)."""
        cached = self._via_cache.get((id(router), nexthop))
        if cached is not None and cached[0] is router:
            return cached[1]
        egress = router.interface_for(nexthop)
        if egress is None or nexthop not in router.nexthops:
            return None
        instructions = [ofp.ApplyActions([ofp.DecNwTtl(), ofp.SetField("eth_src", egress.mac)]),
                        ofp.WriteMetadata(NEXTHOP.value(router.nexthops[nexthop]) | self._network_value(egress),
                                          NEXTHOP.mask | NETWORK.mask | REMOTE.mask),
                        ofp.GotoTable(self.table("nexthop"))]
        if len(self._via_cache) > 4096:
            self._via_cache.clear()
        self._via_cache[(id(router), nexthop)] = (router, instructions)
        return instructions

    def _network_value(self, egress: Interface) -> int:
        """The metadata of the network a packet is routed into (a tenant network's
        flows in forward deliver by it: apps/tenants.py)."""
        return NETWORK.value(self.network_numbers.get(egress.network_id, 0))

    def _compile_learned(self, router_id: str, key: tuple) -> list:
        """The same flow on every switch: compiled once, for the first switch
        that asks, while the router and the route stay what they were."""
        router = self.routers.get(router_id)
        learned = self.learned.get(router_id, {}).get(key)
        if router is None or not router.up or learned is None:
            return []
        prefix, nexthop = learned
        cached = self._learned_flows.get((router_id, key))
        if cached is not None and cached[0] is router and cached[1] == nexthop:
            return cached[2]
        flow = None if prefix in router.routes else \
            self._route_flow(router, prefix, nexthop, self.cookie(KIND_LEARNED << 48 | router.vrf), key)
        flows = [flow] if flow is not None else []     # a connected, extra or default route of the prefix wins
        self._learned_flows[(router_id, key)] = (router, nexthop, flows)
        return flows

    def _compile_nat(self, router: Router, cookie: int) -> list:
        """Floating IPs both ways, and the end of the snat table for the router:
        to the controller (a new connection) or on, untranslated."""
        external = router.external
        if external is None:
            return []
        snat, vrf = self.table("snat"), (VRF.value(router.vrf), VRF.mask)
        flows = []
        for fixed, floating in sorted(router.floating.items()):
            flows.append(Flow(self.table("router"), FLOATING_PRIORITY,
                              ofp.Match(eth_dst=external.mac, eth_type=IPV4_TYPE, ipv4_dst=str(floating)),
                              [ofp.ApplyActions([ofp.SetField("ipv4_dst", str(fixed))]),
                               ofp.WriteMetadata(*vrf), ofp.GotoTable(self.table("route"))], cookie))
            flows.append(Flow(snat, ROUTE_BASE, ofp.Match(metadata=vrf, eth_type=IPV4_TYPE, ipv4_src=str(fixed)),
                              [ofp.ApplyActions([ofp.SetField("ipv4_src", str(floating))]),
                               ofp.GotoTable(DELIVERY)], cookie))
        flows.append(Flow(snat, SNAT_MISS_PRIORITY, ofp.Match(metadata=vrf),
                          _TO_CONTROLLER if router.snat else [ofp.GotoTable(DELIVERY)], cookie))
        return flows

    def _compile_connection(self, key: Key, dp) -> list:
        """A translated connection: its source rewritten where its packets
        enter, its answers' destination rewritten wherever they come in."""
        conn = self.snat.connections.get(key)
        router = self.by_vrf.get(key.vrf)
        if conn is None or router is None or router.external is None:
            return []
        cookie = self.cookie(KIND_SNAT << 48 | key.proto << 16 | conn.port)
        l4 = "tcp" if key.proto == P_TCP else "udp"
        flows = [Flow(self.table("router"), CONNECTION_PRIORITY,
                      ofp.Match({"eth_dst": router.external.mac, "eth_type": IPV4_TYPE, "ip_proto": key.proto,
                                 "ipv4_src": str(key.outside), "ipv4_dst": str(conn.gateway),
                                 f"{l4}_src": key.outside_port, f"{l4}_dst": conn.port}),
                      [ofp.ApplyActions([ofp.SetField("ipv4_dst", str(key.inside)),
                                         ofp.SetField(f"{l4}_dst", key.inside_port)]),
                       ofp.WriteMetadata(VRF.value(router.vrf), VRF.mask), ofp.GotoTable(self.table("route"))],
                      cookie)]
        if dp.id == conn.dpid:
            flows.append(Flow(self.table("snat"), CONNECTION_PRIORITY,
                              ofp.Match({"metadata": (VRF.value(router.vrf), VRF.mask), "eth_type": IPV4_TYPE,
                                         "ip_proto": key.proto, "ipv4_src": str(key.inside),
                                         "ipv4_dst": str(key.outside), f"{l4}_src": key.inside_port,
                                         f"{l4}_dst": key.outside_port}),
                              [ofp.ApplyActions([ofp.SetField("ipv4_src", str(conn.gateway)),
                                                 ofp.SetField(f"{l4}_src", conn.port)]),
                               ofp.GotoTable(DELIVERY)],
                              cookie, idle_timeout=self.idle[key.proto], flags=int(ofp.OFPFF.SEND_FLOW_REM)))
        return flows

    def _compile_resolution(self, key: tuple) -> list:
        """ARP requests and neighbour solicitations for a router's address, and
        router solicitations: to the controller, while a router wants them."""
        if key not in _resolution_keys(self.routers):
            return []
        kind, table = key[0], self.table("router")
        if kind == "arp":
            match = ofp.Match(eth_type=ARP_TYPE, arp_op=ARP_REQUEST, arp_tpa=str(key[1]))
            cookie = self.cookie(KIND_ARP << 48 | int(key[1]))
        elif kind == "nd":
            match = ofp.Match(eth_type=IPV6_TYPE, ip_proto=58, icmpv6_type=ND_NEIGHBOR_SOLICIT,
                              ipv6_nd_target=str(key[1]))
            cookie = self.cookie(KIND_ND << 48 | int(key[1]) & (1 << 48) - 1)
        else:
            match = ofp.Match(eth_type=IPV6_TYPE, ip_proto=58, icmpv6_type=ND_ROUTER_SOLICIT)
            cookie = self.cookie(KIND_RS << 48)
        return [Flow(table, IFACE_PRIORITY, match, _TO_CONTROLLER, cookie)]

    # --- packets ---------------------------------------------------------------------

    def packet_in(self, dp, msg: ofp.PacketIn) -> None:
        data, in_port = msg.data, msg.match.get("in_port")
        if len(data) < 14 or in_port is None:
            return
        try:
            pkt = parse(data)
        except PacketError:
            return
        table = msg.table_id
        if table == self.table("router"):
            if pkt.get(ARP) is not None:
                self._arp_in(dp, in_port, pkt[Ethernet], pkt[ARP])
            elif pkt.get(NDNeighborSolicit) is not None:
                self._solicit_in(dp, in_port, pkt)
            elif pkt.get(NDRouterSolicit) is not None:
                self._router_solicit_in(dp, in_port, pkt)
            return
        router = self.by_vrf.get(VRF.of(msg.match.get("metadata", 0)))
        ip = pkt.get(IPv4) or pkt.get(IPv6)
        if router is None or ip is None:
            return
        if table == self.table("snat"):
            self._snat_in(dp, router, pkt, data)
        elif table == self.table("route"):
            self._route_in(dp, in_port, msg.reason, router, pkt, data)
        elif table == self.table("neighbour"):
            self._hold(router, ipaddress.ip_address(ip.dst), data)
        elif table == self.table("nexthop"):
            nexthop = router.nexthop_address(NEXTHOP.of(msg.match.get("metadata", 0)))
            if nexthop is not None:
                self._hold(router, nexthop, data)

    def _route_in(self, dp, in_port: int, reason: int, router: Router, pkt, data: bytes) -> None:
        eth = pkt[Ethernet]
        ip = pkt.get(IPv4) or pkt[IPv6]
        ingress = self._facing(router, eth.dst, ipaddress.ip_address(ip.src))
        if ingress is None:
            return
        if reason == _INVALID_TTL:
            self._error(dp, in_port, pkt, data, "time_exceeded", ingress.mac, ingress.ip)
        elif reason == _NO_MATCH:
            self._error(dp, in_port, pkt, data, "net_unreachable", ingress.mac, ingress.ip)
        else:     # for the router itself
            target = ipaddress.ip_address(ip.dst)
            if pkt.get(NDNeighborAdvert) is not None:
                self._advert_in(router, pkt)
            elif pkt.get(NDNeighborSolicit) is not None:     # a unicast probe of the router (NUD)
                self._solicit_in(dp, in_port, pkt)
            elif pkt.get(ICMP) is not None and pkt[ICMP].type == 0 and ingress.external:
                self._icmp_answer_in(router, pkt, data)     # an echo reply to a translated ping
            elif pkt.get(ICMP) is not None or pkt.get(ICMPv6Echo) is not None:
                reply = gateway.echo_reply(data, ingress.mac)
                if reply is not None and self._may_answer(ip.src):
                    self._send(dp, in_port, reply)
            elif ip_proto(ip) == 17:    # UDP to the router: port unreachable (the end of a traceroute to it)
                self._error(dp, in_port, pkt, data, "port_unreachable", ingress.mac, target)

    def _facing(self, router: Router, mac: str, towards: IPAddress) -> Interface | None:
        """The interface with `mac` of the address family of `towards`: the one that holds it, else any."""
        ifaces = [i for i in router.interface_by_mac(mac) if i.ip.version == towards.version]
        return next((i for i in ifaces if towards in i.subnet), ifaces[0] if ifaces else None)

    def _error(self, dp, in_port: int, pkt, data: bytes, error: str, mac: str, source: IPAddress,
               to_mac: str | None = None) -> None:
        """An ICMP error about `pkt` (parsed from `data`), rate-limited per sender; out of
        `in_port` of `dp`, or (dp None) to `to_mac` wherever the fabric has it."""
        who = gateway.sender(pkt)
        if who is None or not self._may_answer(str(who)):
            return
        frame = gateway.icmp_error(pkt, data, error, mac, source, to_mac)
        if frame is not None:
            if dp is None:
                self.fabric.deliver(frame)
            else:
                self._send(dp, in_port, frame)

    def _may_answer(self, destination: str) -> bool:
        """A token bucket per destination: icmp_rate a second, as many at once."""
        now = self.core.now()
        tokens, when = self._icmp_tokens.get(destination, (float(self.icmp_rate), now))
        tokens = min(float(self.icmp_rate), tokens + (now - when) * self.icmp_rate)
        if len(self._icmp_tokens) > 10_000:
            self._icmp_tokens.clear()
        if tokens < 1:
            self._icmp_tokens[destination] = (tokens, now)
            return False
        self._icmp_tokens[destination] = (tokens - 1, now)
        return True

    @staticmethod
    def _send(dp, port: int, frame: bytes) -> None:
        dp.send(ofp.PacketOut(actions=[ofp.Output(port)], data=frame))

    # --- source NAT --------------------------------------------------------------------

    def _snat_in(self, dp, router: Router, pkt, data: bytes) -> None:
        """The first packet of a connection leaving by the external gateway
        (or any ICMP echo, which flows cannot translate): give it a port, add
        its flows, send it on translated."""
        external, ip = router.external, pkt.get(IPv4)
        if external is None or not router.snat or ip is None:
            return
        l4 = pkt.get(TCP) or pkt.get(UDP)
        icmp = pkt.get(ICMP)
        if l4 is not None:
            proto, ports = (P_TCP if isinstance(l4, TCP) else P_UDP), (l4.sport, l4.dport)
        elif icmp is not None and icmp.type == 8:
            proto, ports = P_ICMP, (icmp.id, 0)
        else:
            return
        key = Key(router.vrf, proto, ipaddress.IPv4Address(ip.src), ports[0], ipaddress.IPv4Address(ip.dst), ports[1])
        now = self.core.now()
        new = key not in self.snat.connections
        conn = self.snat.open(key, external.ip, dp.id, now)
        if conn is None:
            if now - self.snat.last_full_log > 60:
                self.snat.last_full_log = now
                self.log.warning("router %s: no free source port on %s for protocol %d (%d packets dropped so far)",
                                 router.id, external.ip, proto, self.snat.exhausted)
            return
        if proto == P_ICMP:
            frame = gateway.translate(data, src=conn.gateway, icmp_id=conn.port)
        else:
            frame = gateway.translate(data, src=conn.gateway, sport=conn.port)
            if new:
                self.changed(("snat", key))
        if frame is not None:     # its answer must find the connection's flows in place
            self.fabric.deliver(frame, after_flows=new and proto != P_ICMP)

    def _icmp_answer_in(self, router: Router, pkt, data: bytes) -> None:
        """An echo reply to the gateway's address: back to the inside host whose ping it answers."""
        conn = self.snat.answering(ipaddress.IPv4Address(pkt[IPv4].dst), P_ICMP, pkt[ICMP].id)
        if conn is None or conn.key.vrf != router.vrf:
            return
        conn.last_seen = self.core.now()
        inside = conn.key.inside
        iface, mac = router.interface_for(inside), self.neighbour(router.vrf, inside)
        if iface is None or mac is None or pkt[IPv4].ttl <= 1:
            return
        frame = gateway.translate(data, dst=inside, icmp_id=conn.key.inside_port, eth_src=iface.mac, eth_dst=mac,
                                  ttl_down=True)
        if frame is not None:
            self.fabric.deliver(frame)

    def _close(self, key: Key) -> None:
        if self.snat.close(key) is not None and key.proto != P_ICMP:
            self.changed(("snat", key))

    def _age_icmp(self) -> None:
        for key in self.snat.idle(P_ICMP, self.core.now() - self.idle[P_ICMP]):
            self._close(key)

    def flow_removed(self, dp, msg: ofp.FlowRemoved) -> None:
        """A connection's outbound flow went idle: the connection ends."""
        if (msg.cookie >> 48) & 0xFF != KIND_SNAT or msg.table_id != self.table("snat"):
            return
        match = msg.match
        proto = match.get("ip_proto")
        l4 = "tcp" if proto == P_TCP else "udp"
        router = self.by_vrf.get(VRF.of(_value(match.get("metadata", 0))))
        try:
            key = Key(router.vrf if router else -1, proto, ipaddress.IPv4Address(match["ipv4_src"]),
                      match[f"{l4}_src"], ipaddress.IPv4Address(match["ipv4_dst"]), match[f"{l4}_dst"])
        except (KeyError, ValueError):
            return
        conn = self.snat.connections.get(key)
        if conn is not None and conn.dpid == dp.id:
            self._close(key)

    def switch_down(self, dp) -> None:
        for key, conn in list(self.snat.connections.items()):
            if conn.dpid == dp.id:
                self._close(key)

    # --- ARP and neighbour discovery ---------------------------------------------------

    def _arp_in(self, dp, in_port: int, eth, arp) -> None:
        target, sender = _ip(arp.dst_ip), _ip(arp.src_ip)
        if target is None or sender is None:
            return
        if arp.op == ARP_REQUEST:
            iface = self._answering(eth.src, target, sender)
            if iface is not None:
                self._learn(self._router_of(iface), sender, arp.src_mac)
                self._send(dp, in_port, gateway.arp_reply(iface.mac, target, eth.src, arp.src_ip))
        elif arp.op == ARP_REPLY:
            for router in self.routers.values():
                if any(sender in i.subnet for i in router.interface_by_mac(eth.dst) if i.ip.version == 4):
                    self._learn(router, sender, arp.src_mac)

    def _solicit_in(self, dp, in_port: int, pkt) -> None:
        """A neighbour solicitation for a router address (global or link-local): advertise it."""
        ns, ip6 = pkt[NDNeighborSolicit], pkt[IPv6]
        target, sender = _ip(ns.target), _ip(ip6.src)
        if target is None or sender is None:
            return
        iface = self._answering(pkt[Ethernet].src, target, sender)
        if iface is None:
            return
        mac = next((o.mac for o in ns.options if isinstance(o, NDOptSourceLinkAddr)), None)
        if mac is not None and not sender.is_unspecified and not sender.is_link_local:
            self._learn(self._router_of(iface), sender, mac)
        self._send(dp, in_port, gateway.neighbour_advert(iface.mac, target, pkt[Ethernet].src, ip6.src))

    def _advert_in(self, router: Router, pkt) -> None:
        na = pkt[NDNeighborAdvert]
        target = _ip(na.target)
        mac = next((o.mac for o in na.options if isinstance(o, NDOptTargetLinkAddr)), pkt[Ethernet].src)
        if target is not None and any(target in i.subnet for i in router.interface_by_mac(pkt[Ethernet].dst)
                                      if i.ip.version == 6):
            self._learn(router, target, mac)

    def _router_solicit_in(self, dp, in_port: int, pkt) -> None:
        eth, ip6 = pkt[Ethernet], pkt[IPv6]
        for mac, prefixes in self._advertised(eth.src).items():
            to = ip6.src if not ipaddress.ip_address(ip6.src).is_unspecified else gateway.ALL_NODES
            self._send(dp, in_port, gateway.router_advert(mac, prefixes, eth.src, to))

    def _advertised(self, host_mac: str) -> dict[str, list]:
        """Interface MAC -> the (prefix, ra mode) it advertises to the host with
        `host_mac`: those on the host's network (its API port's), else those of
        the one router interface that advertises, when there is only one."""
        offered: dict[str, list] = {}
        networks = self._networks_of(host_mac)
        for router in self.routers.values():
            if not router.up:
                continue
            for iface in router.interfaces:
                if iface.ra_mode and (not networks or iface.network_id in networks):
                    offered.setdefault(iface.mac, []).append((iface.subnet, iface.ra_mode))
        return offered if networks or len(offered) == 1 else {}

    def _advertise(self) -> None:
        """Unsolicited router advertisements to every known host that gets some."""
        for host in list(self.core.hosts):
            dp = self.core.datapaths.get(host.dpid)
            if dp is None or not dp.is_up:
                continue
            for mac, prefixes in self._advertised(host.mac).items():
                self._send(dp, host.port, gateway.router_advert(mac, prefixes, host.mac))

    def _networks_of(self, mac: str) -> set[str]:
        return {p.body.get("network_id") for p in self.core.state.all("port")
                if str(p.body.get("mac_address", "")).lower() == mac}

    def _answering(self, mac: str, target: IPAddress, sender: IPAddress) -> Interface | None:
        """The interface with address `target` (or link-local address) that a
        host (MAC, address) asks for: on the network of the API port with that
        MAC; else the one whose subnet holds the sender, when only one does."""
        candidates = [i for r in self.routers.values() if r.up for i in r.interfaces
                      if i.ip == target or (target.version == 6 and i.ip.version == 6
                                            and gateway.link_local(i.mac) == target)
                      or (i.external and i.ip.version == 4 and target in r.floating.values())]
        if len(candidates) > 1:
            networks = self._networks_of(mac)
            candidates = ([i for i in candidates if i.network_id in networks] if networks
                          else [i for i in candidates if sender in i.subnet])
            if len({i.mac for i in candidates}) == 1:
                candidates = candidates[:1]
        return candidates[0] if len(candidates) == 1 else None

    def _router_of(self, iface) -> Router:
        return next(r for r in self.routers.values() if iface in r.interfaces)

    def _learn(self, router: Router, ip: IPAddress, mac: str) -> None:
        key = (router.vrf, ip)
        if router.interface_for(ip) is None or key in self._api_neighbours or int(mac[:2], 16) & 1:
            return    # the API's word stands
        if self._arp_neighbours.get(key) != mac:
            self._arp_neighbours[key] = mac
            self.changed(("neighbour", router.vrf, ip))
            if ip in router.nexthops:
                self.changed(("router", router.id))
        self._resolved(router.vrf, ip)

    def _resolved(self, vrf: int, ip: IPAddress) -> None:
        """Send what waited for `ip`, now that its MAC is known."""
        pending = self._pending.pop((vrf, ip), None)
        mac = self.neighbour(vrf, ip)
        if pending is None or mac is None:
            return
        self._held -= len(pending.frames)
        for frame in pending.frames:
            self._deliver_to(mac, frame)

    def _deliver_to(self, mac: str, frame: bytes) -> None:
        """A routed frame that waited for its destination MAC: that MAC in, and on its way."""
        self.fabric.deliver(bytes.fromhex(mac.replace(":", "")) + frame[6:])

    def _hold(self, router: Router, ip: IPAddress, frame: bytes) -> None:
        """Keep a packet for an address being resolved; ask for it now if new."""
        mac = self.neighbour(router.vrf, ip)
        if mac is not None:    # resolved while the packet was on its way
            self._deliver_to(mac, frame)
            return
        key = (router.vrf, ip)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(router.id)
            self._solicit(router, ip)
            pending.tries = 1
        if self._held < HOLD_TOTAL or len(pending.frames) == pending.frames.maxlen:
            if len(pending.frames) < pending.frames.maxlen:
                self._held += 1
            pending.frames.append(frame)

    def _solicit(self, router: Router, ip: IPAddress) -> None:
        """ARP (IPv4) or a neighbour solicitation (IPv6) from the interface facing `ip`."""
        iface = router.interface_for(ip)
        if iface is None:
            return
        if ip.version == 4:
            self.fabric.deliver(gateway.arp_request(iface.mac, iface.ip, ip))
        else:
            self.fabric.deliver(gateway.neighbour_solicit(iface.mac, iface.ip, ip))

    def _retry(self) -> None:
        for key, pending in list(self._pending.items()):
            router = self.routers.get(pending.router_id)
            if router is None or router.vrf != key[0]:
                self._drop_pending(key)
            elif pending.tries >= self.arp_retries:
                self._unreachable(router, key[1])
            else:
                pending.tries += 1
                self._solicit(router, key[1])

    def _unreachable(self, router: Router, ip: IPAddress) -> None:
        """Nobody answered for `ip`: its waiting packets' senders hear so, from
        the interface facing them (as Linux answers)."""
        for frame in self._drop_pending((router.vrf, ip)):
            try:
                pkt = parse(frame)
            except PacketError:
                continue
            who = gateway.sender(pkt)
            if who is None:
                continue
            iface, mac = router.interface_for(who), self.neighbour(router.vrf, who)
            if iface is not None and mac is not None:
                self._error(None, 0, pkt, frame, "host_unreachable", iface.mac, iface.ip, to_mac=mac)

    def _drop_pending(self, key) -> list[bytes]:
        pending = self._pending.pop(key, None)
        if pending is None:
            return []
        self._held -= len(pending.frames)
        return list(pending.frames)

    def host_lost(self, host) -> None:
        for key, mac in list(self._arp_neighbours.items()):
            if mac == host.mac:
                del self._arp_neighbours[key]
                self.changed(("neighbour", *key))
                router = self.by_vrf.get(key[0])
                if router is not None and key[1] in router.nexthops:
                    self.changed(("router", router.id))


def _own_addresses(router: Router) -> set[IPAddress]:
    """The router's addresses: its interfaces', and the link-local address of each IPv6 interface's MAC."""
    return ({i.ip for i in router.interfaces}
            | {gateway.link_local(i.mac) for i in router.interfaces if i.ip.version == 6})


def _resolution_keys(routers: dict[str, Router]) -> list[tuple]:
    """The ("arp", address), ("nd", address) and ("rs",) objects the routers need."""
    keys: dict[tuple, None] = {}
    for router in routers.values():
        if not router.up:
            continue
        for address in [*_own_addresses(router), *router.floating.values()]:
            keys[("arp" if address.version == 4 else "nd", address)] = None
        if any(i.ra_mode for i in router.interfaces):
            keys[("rs",)] = None
    return list(keys)


def _table_shape(router: Router | None) -> tuple | None:
    """What a learned route's flow depends on, besides the route itself."""
    if router is None:
        return None
    return (router.vrf, router.up, tuple(router.interfaces), tuple(sorted(router.nexthops.items(), key=str)),
            frozenset(router.routes))


_NETMASKS = [str(ipaddress.IPv4Network((0, n)).netmask) for n in range(33)]


def _prefix_key(prefix: IPNetwork) -> tuple[int, int, int]:
    return (prefix.version, int(prefix.network_address), prefix.prefixlen)


def _value(field: Any) -> int:
    """A match field's value, masked or not."""
    return field[0] if isinstance(field, tuple) else field


def ip_proto(ip) -> int | None:
    return ip.proto if isinstance(ip, IPv4) else ip.nh


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _match(vrf: int, destination: IPAddress | IPNetwork, host: bool = False) -> ofp.Match:
    """Within VRF `vrf`: packets to an address (host) or a prefix. (Called
    once per route: a hundred thousand learned ones too, so kept cheap.)"""
    metadata = (vrf << VRF.offset, VRF.mask)
    if host:
        if destination.version == 4:
            return ofp.Match(metadata=metadata, eth_type=IPV4_TYPE, ipv4_dst=str(destination))
        return ofp.Match(metadata=metadata, eth_type=IPV6_TYPE, ipv6_dst=str(destination))
    length = destination.prefixlen
    if destination.version == 4:
        address = inet_ntoa(destination.network_address.packed)     # quicker than ipaddress's str
        value = address if length == 32 else (address, _NETMASKS[length])
        return (ofp.Match(metadata=metadata, eth_type=IPV4_TYPE, ipv4_dst=value) if length
                else ofp.Match(metadata=metadata, eth_type=IPV4_TYPE))
    address, _, mask = destination.with_netmask.partition("/")
    value = address if length == 128 else (address, mask)
    return (ofp.Match(metadata=metadata, eth_type=IPV6_TYPE, ipv6_dst=value) if length
            else ofp.Match(metadata=metadata, eth_type=IPV6_TYPE))


#: (vrf, version, length) -> the bytes of a route's match before and after its address
_ROUTE_MATCH: dict[tuple[int, int, int], tuple[bytes, bytes]] = {}


def _route_match(vrf: int, version: int, address: int, length: int) -> bytes:
    """A route's match packed (canonical order): only the address differs between the
    routes of one prefix length, so the rest is packed once and the address spliced in."""
    parts = _ROUTE_MATCH.get((vrf, version, length))
    if parts is None:
        if len(_ROUTE_MATCH) > 4096:
            _ROUTE_MATCH.clear()
        parts = _ROUTE_MATCH[(vrf, version, length)] = _route_match_parts(vrf, version, length)
    head, tail = parts
    return head + address.to_bytes(4 if version == 4 else 16, "big") + tail if length else head


def _route_match_parts(vrf: int, version: int, length: int) -> tuple[bytes, bytes]:
    network = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
    packed = match_bytes(_match(vrf, network((0, length))))
    if not length:
        return packed, b""
    size = 4 if version == 4 else 16
    end = int.from_bytes(packed[2:4], "big")       # the match's length: its last field is the address
    start = end - (2 * size if length < size * 8 else size)
    return packed[:start], packed[start + size:]
