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

The controller answers ICMP at most ``icmp_rate`` messages a second per
destination (a kernel's icmp_ratelimit), so a flood of expiring or
unroutable packets costs little.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from typing import Any, Hashable, Iterable

from kumoflow import ofp
from kumoflow.apps import options as check
from kumoflow.apps.routing import ROUTER_PORTS, IPAddress, IPNetwork, Router, build
from kumoflow.controller import App, Flow, pipeline
from kumoflow.packet import ARP, ICMP, Ethernet, IPv4, PacketError, parse
from kumoflow.packet.consts import ARP_REPLY, ARP_REQUEST

VRF, NEXTHOP = pipeline.METADATA["vrf"], pipeline.METADATA["nexthop"]
KIND_ROUTER, KIND_ARP, KIND_NEIGHBOUR = 1, 2, 3
#: priorities: the router's own addresses above every route; routes at BASE + prefix length
OWN_PRIORITY, ROUTE_BASE, IFACE_PRIORITY, IFACE_DROP_PRIORITY = 1000, 100, 100, 10
IPV4_TYPE, ARP_TYPE, IPV6_TYPE = 0x0800, 0x0806, 0x86DD
BROADCAST = "ff:ff:ff:ff:ff:ff"
#: held packets: per address, and in all
HOLD_PER_ADDRESS, HOLD_TOTAL = 8, 1024

_TO_CONTROLLER = [ofp.ApplyActions([ofp.Output(ofp.OFPP.CONTROLLER, ofp.OFPCML.NO_BUFFER)])]
_NO_MATCH, _ACTION, _INVALID_TTL = int(ofp.OFPR.NO_MATCH), int(ofp.OFPR.ACTION), int(ofp.OFPR.INVALID_TTL)
# ICMP types and codes (RFC 792)
ECHO_REPLY, UNREACHABLE, ECHO_REQUEST, TIME_EXCEEDED = 0, 3, 8, 11
NET_UNREACHABLE, HOST_UNREACHABLE, PORT_UNREACHABLE = 0, 1, 3


class _Pending:
    """An address being resolved: the packets waiting for it, ARPs sent."""
    __slots__ = ("router_id", "frames", "tries")

    def __init__(self, router_id: str) -> None:
        self.router_id = router_id
        self.frames: deque[bytes] = deque(maxlen=HOLD_PER_ADDRESS)
        self.tries = 0


class RouterApp(App):
    name = "router"
    tables = ("router", "route", "nexthop", "neighbour")
    requires = ("fabric",)

    def __init__(self, arp_interval: float = 1.0, arp_retries: int = 3, icmp_rate: int = 100,
                 **options: Any) -> None:
        super().__init__(**options)
        self.arp_interval = check.seconds("arp_interval", arp_interval)
        self.arp_retries = check.integer("arp_retries", arp_retries, 1, 100)
        self.icmp_rate = check.integer("icmp_rate", icmp_rate, 1, 100_000)
        self.routers: dict[str, Router] = {}
        self.by_vrf: dict[int, Router] = {}
        self.learned_routes: dict[str, dict[IPNetwork, IPAddress]] = {}   # router id -> BGP routes
        self._api_neighbours: dict[tuple[int, IPAddress], str] = {}   # (vrf, address) -> MAC, from API ports
        self._arp_neighbours: dict[tuple[int, IPAddress], str] = {}   # ... resolved by ARP
        self._pending: dict[tuple[int, IPAddress], _Pending] = {}
        self._held = 0
        self._icmp_tokens: dict[str, tuple[float, float]] = {}       # destination -> (tokens, when)
        self._stale = True

    @property
    def fabric(self):
        return self.peers["fabric"]

    def start(self) -> None:
        self.core.call_every(self.arp_interval, self._retry_arp)
        self._rebuild()

    # --- the model -----------------------------------------------------------------

    def _rebuild(self) -> None:
        """Routers from the desired state; mark what changed."""
        state = self.core.state
        subnets = {r.id: r for r in state.all("subnet")}
        old_routers = self.routers
        self.routers = build(state.all("router"), state.all("port"), subnets, self.learned_routes)
        self.by_vrf = {r.vrf: r for r in self.routers.values()}
        for router_id in set(old_routers) | set(self.routers):
            self.changed(("router", router_id))
        for address in _gateway_addresses(old_routers) | _gateway_addresses(self.routers):
            self.changed(("arp", address))
        old_neighbours, self._api_neighbours = self._api_neighbours, {}
        for port in state.all("port"):
            self._api_neighbours.update(self._port_neighbours(port.body))
        self._arp_neighbours = {key: mac for key, mac in self._arp_neighbours.items() if key[0] in self.by_vrf}
        for key in set(old_neighbours) | set(self._api_neighbours):
            if old_neighbours.get(key) != self._api_neighbours.get(key):
                self.changed(("neighbour", *key))
        for problem in (p for r in self.routers.values() for p in r.problems):
            self.log.warning("%s", problem)

    def _port_neighbours(self, body: dict | None) -> dict[tuple[int, IPAddress], str]:
        """(vrf, address) -> MAC for each address of an API port that lies in
        one of its network's router interfaces' subnets."""
        if not body or body.get("device_owner") in ROUTER_PORTS or not body.get("mac_address"):
            return {}
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
        if change.kind in ("router", "subnet"):
            self._rebuild()
        elif change.kind == "port":
            old = change.old.body if change.old is not None else None
            new = change.record.body if change.record is not None else None
            if any(b and b.get("device_owner") in ROUTER_PORTS for b in (old, new)):
                self._rebuild()
                return
            before, after = self._port_neighbours(old), self._port_neighbours(new)
            for key in before:
                self._api_neighbours.pop(key, None)
            self._api_neighbours.update(after)
            for key in set(before) | set(after):
                self.changed(("neighbour", *key))
                if key in self._api_neighbours:
                    self._resolved(*key)

    def set_learned_routes(self, router_id: str, routes: dict[IPNetwork, IPAddress]) -> None:
        """Routes learned for a router (BGP): they join its table."""
        if routes:
            self.learned_routes[router_id] = dict(routes)
        else:
            self.learned_routes.pop(router_id, None)
        self._rebuild()

    # --- compiling -----------------------------------------------------------------

    def owners(self) -> Iterable[Hashable]:
        for router_id in self.routers:
            yield ("router", router_id)
        for address in _gateway_addresses(self.routers):
            yield ("arp", address)
        for vrf, ip in set(self._api_neighbours) | set(self._arp_neighbours):
            yield ("neighbour", vrf, ip)

    def compile(self, key: Hashable, dp) -> list:
        kind = key[0]
        if kind == "router":
            router = self.routers.get(key[1])
            return self._compile_router(router) if router is not None else []
        if kind == "arp":
            return self._compile_arp(key[1])
        router = self.by_vrf.get(key[1])
        mac = self.neighbour(key[1], key[2])
        if router is None or not router.up or mac is None:
            return []
        return [Flow(self.table("neighbour"), ROUTE_BASE, _match(router.vrf, key[2], host=True),
                     [ofp.ApplyActions([ofp.SetField("eth_dst", mac)]), ofp.GotoTable(self.table("forward"))],
                     self.cookie(KIND_NEIGHBOUR << 48 | router.vrf))]

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
        for iface in router.interfaces:
            flows.append(Flow(route_table, OWN_PRIORITY, _match(router.vrf, iface.ip, host=True), _TO_CONTROLLER,
                              cookie))
        for route in router.routes.values():
            egress = router.interface_for(route.nexthop if route.nexthop is not None else route.prefix.network_address)
            if egress is None:
                continue
            actions = ofp.ApplyActions([ofp.DecNwTtl(), ofp.SetField("eth_src", egress.mac)])
            if route.nexthop is None:
                instructions = [actions, ofp.GotoTable(self.table("neighbour"))]
            else:
                instructions = [actions, ofp.WriteMetadata(NEXTHOP.value(router.nexthops[route.nexthop]), NEXTHOP.mask),
                                ofp.GotoTable(self.table("nexthop"))]
            flows.append(Flow(route_table, ROUTE_BASE + route.prefix.prefixlen, _match(router.vrf, route.prefix),
                              instructions, cookie))
        for ip, number in router.nexthops.items():
            mac = self.neighbour(router.vrf, ip)
            if mac is not None:
                metadata = VRF.value(router.vrf) | NEXTHOP.value(number)
                flows.append(Flow(self.table("nexthop"), ROUTE_BASE,
                                  ofp.Match(metadata=(metadata, VRF.mask | NEXTHOP.mask)),
                                  [ofp.ApplyActions([ofp.SetField("eth_dst", mac)]),
                                   ofp.GotoTable(self.table("forward"))], cookie))
        return flows

    def _compile_arp(self, address: IPAddress) -> list:
        if not any(r.up and any(i.ip == address for i in r.interfaces) for r in self.routers.values()):
            return []
        return [Flow(self.table("router"), IFACE_PRIORITY,
                     ofp.Match(eth_type=ARP_TYPE, arp_op=ARP_REQUEST, arp_tpa=str(address)), _TO_CONTROLLER,
                     self.cookie(KIND_ARP << 48 | int(address)))]

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
            return
        router = self.by_vrf.get(VRF.of(msg.match.get("metadata", 0)))
        ip = pkt.get(IPv4)
        if router is None or ip is None:
            return
        if table == self.table("route"):
            self._route_in(dp, in_port, msg.reason, router, pkt, data)
        elif table == self.table("neighbour"):
            self._hold(router, ipaddress.ip_address(ip.dst), data)
        elif table == self.table("nexthop"):
            nexthop = router.nexthop_address(NEXTHOP.of(msg.match.get("metadata", 0)))
            if nexthop is not None:
                self._hold(router, nexthop, data)

    def _route_in(self, dp, in_port: int, reason: int, router: Router, pkt, data: bytes) -> None:
        eth, ip = pkt[Ethernet], pkt[IPv4]
        ingress = next(iter(router.interface_by_mac(eth.dst)), None)
        if ingress is None:
            return
        if reason == _INVALID_TTL:
            self._icmp_error(dp, in_port, ingress, eth, data, TIME_EXCEEDED, 0)
        elif reason == _NO_MATCH:
            self._icmp_error(dp, in_port, ingress, eth, data, UNREACHABLE, NET_UNREACHABLE)
        else:     # for the router itself
            icmp = pkt.get(ICMP)
            target = ipaddress.ip_address(ip.dst)
            own = next((i for i in router.interfaces if i.ip == target), None)
            if own is None:
                return
            if icmp is not None and icmp.type == ECHO_REQUEST and self._may_answer(ip.src):
                reply = (Ethernet(src=ingress.mac, dst=eth.src) / IPv4(src=ip.dst, dst=ip.src, ttl=64)
                         / ICMP(type=ECHO_REPLY, code=0, id=icmp.id, seq=icmp.seq) / pkt.payload)
                self._send(dp, in_port, bytes(reply))
            elif ip.proto == 17:    # UDP to the router: port unreachable (the end of a traceroute to it)
                self._icmp_error(dp, in_port, own, eth, data, UNREACHABLE, PORT_UNREACHABLE, source=own.ip)

    def _icmp_error(self, dp, in_port: int, iface, eth, data: bytes, kind: int, code: int,
                    source: IPAddress | None = None) -> None:
        """ICMP `kind`/`code` about the IPv4 packet in `data` to its sender (RFC 1812 4.3.2.7:
        never about an ICMP error, a fragment other than the first, or a non-unicast)."""
        offending = data[14:]
        try:
            original = parse(data)
            ip = original[IPv4]
        except (PacketError, KeyError):
            return
        icmp = original.get(ICMP)
        sender = ipaddress.ip_address(ip.src)
        if (eth.src[1] in "13579bdf" or ip.frag_offset or sender.is_multicast or sender.is_unspecified
                or ipaddress.ip_address(ip.dst).is_multicast
                or (icmp is not None and icmp.type not in (ECHO_REQUEST, ECHO_REPLY, 13, 15, 17))):
            return
        if not self._may_answer(ip.src):
            return
        quoted = offending[:ip.ihl * 4 + 8] if ip.ihl else offending[:28]
        error = (Ethernet(src=iface.mac, dst=eth.src) / IPv4(src=str(source or iface.ip), dst=ip.src, ttl=64)
                 / ICMP(type=kind, code=code) / quoted)
        self._send(dp, in_port, bytes(error))

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

    # --- ARP ---------------------------------------------------------------------------

    def _arp_in(self, dp, in_port: int, eth, arp) -> None:
        target, sender = _ip(arp.dst_ip), _ip(arp.src_ip)
        if target is None or sender is None:
            return
        if arp.op == ARP_REQUEST:
            iface = self._answering(eth.src, target, sender)
            if iface is None:
                return
            router = self._router_of(iface)
            self._learn(router, sender, arp.src_mac)
            reply = Ethernet(src=iface.mac, dst=eth.src) / ARP(op=ARP_REPLY, src_mac=iface.mac, src_ip=str(iface.ip),
                                                               dst_mac=arp.src_mac, dst_ip=arp.src_ip)
            self._send(dp, in_port, bytes(reply))
        elif arp.op == ARP_REPLY:
            for router in self.routers.values():
                for iface in router.interface_by_mac(eth.dst):
                    if sender in iface.subnet:
                        self._learn(router, sender, arp.src_mac)

    def _answering(self, mac: str, target: IPAddress, sender: IPAddress):
        """The interface with address `target` that a host (MAC, address) asks
        for: on the network of the API port with that MAC; else the one whose
        subnet holds the sender, when only one does."""
        candidates = [i for r in self.routers.values() if r.up for i in r.interfaces if i.ip == target]
        if len(candidates) > 1:
            networks = {p.body.get("network_id") for p in self.core.state.all("port")
                        if str(p.body.get("mac_address", "")).lower() == mac}
            candidates = ([i for i in candidates if i.network_id in networks] if networks
                          else [i for i in candidates if sender in i.subnet])
        return candidates[0] if len(candidates) == 1 else None

    def _router_of(self, iface) -> Router:
        return next(r for r in self.routers.values() if iface in r.interfaces)

    def _learn(self, router: Router, ip: IPAddress, mac: str) -> None:
        key = (router.vrf, ip)
        if router.interface_for(ip) is None or key in self._api_neighbours or mac == BROADCAST:
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
        raw = bytes.fromhex(mac.replace(":", ""))
        for frame in pending.frames:
            self.fabric.deliver(raw + frame[6:])

    def _hold(self, router: Router, ip: IPAddress, frame: bytes) -> None:
        """Keep a packet for an address being resolved; ARP for it now if new."""
        mac = self.neighbour(router.vrf, ip)
        if mac is not None:    # resolved while the packet was on its way
            self.fabric.deliver(bytes.fromhex(mac.replace(":", "")) + frame[6:])
            return
        key = (router.vrf, ip)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(router.id)
            self._arp(router, ip)
            pending.tries = 1
        if self._held < HOLD_TOTAL or len(pending.frames) == pending.frames.maxlen:
            if len(pending.frames) < pending.frames.maxlen:
                self._held += 1
            pending.frames.append(frame)

    def _arp(self, router: Router, ip: IPAddress) -> None:
        iface = router.interface_for(ip)
        if iface is None or ip.version != 4:
            return
        request = Ethernet(src=iface.mac, dst=BROADCAST) / ARP(op=ARP_REQUEST, src_mac=iface.mac,
                                                               src_ip=str(iface.ip), dst_ip=str(ip))
        self.fabric.deliver(bytes(request))

    def _retry_arp(self) -> None:
        for key, pending in list(self._pending.items()):
            router = self.routers.get(pending.router_id)
            if router is None or router.vrf != key[0]:
                self._drop_pending(key)
            elif pending.tries >= self.arp_retries:
                self._unreachable(router, key[1])
            else:
                pending.tries += 1
                self._arp(router, key[1])

    def _unreachable(self, router: Router, ip: IPAddress) -> None:
        """Nobody answered for `ip`: its waiting packets' senders hear so."""
        for frame in self._drop_pending((router.vrf, ip)):
            try:
                pkt = parse(frame)
                sender = ipaddress.ip_address(pkt[IPv4].src)
            except (PacketError, KeyError, ValueError):
                continue
            iface, mac = router.interface_for(sender), self.neighbour(router.vrf, sender)
            if iface is None or mac is None:
                continue
            error = (Ethernet(src=iface.mac, dst=mac) / IPv4(src=str(iface.ip), dst=str(sender), ttl=64)
                     / ICMP(type=UNREACHABLE, code=HOST_UNREACHABLE) / frame[14:14 + pkt[IPv4].ihl * 4 + 8])
            if self._may_answer(str(sender)):
                self.fabric.deliver(bytes(error))

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


def _gateway_addresses(routers: dict[str, Router]) -> set[IPAddress]:
    return {i.ip for r in routers.values() for i in r.interfaces if i.ip.version == 4}


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _match(vrf: int, destination, host: bool = False) -> ofp.Match:
    """Within VRF `vrf`: packets to an address (host) or a prefix."""
    network = ipaddress.ip_network(destination) if not host else ipaddress.ip_network(f"{destination}")
    v4 = network.version == 4
    fields: dict[str, Any] = {"metadata": (VRF.value(vrf), VRF.mask), "eth_type": IPV4_TYPE if v4 else IPV6_TYPE}
    if network.prefixlen == network.max_prefixlen:
        fields["ipv4_dst" if v4 else "ipv6_dst"] = str(network.network_address)
    elif network.prefixlen:
        fields["ipv4_dst" if v4 else "ipv6_dst"] = (str(network.network_address), str(network.netmask))
    return ofp.Match(fields)
