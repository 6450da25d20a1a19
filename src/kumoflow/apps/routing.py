"""What the `router` app compiles from: the routers of the desired state as
routing tables, and the addresses their neighbours have.

A Neutron router (``/v2.0/routers``) is a set of ports: one per subnet it
routes for (``network:router_interface``, holding the subnet's gateway
address and a MAC of its own) and, when it has an external gateway, one on
the external network (``network:router_gateway``). Its routing table is
derived from them:

* each interface's subnet is a *connected* route: a destination inside it
  is delivered to that destination's own MAC (a neighbour);
* each extra route (``routes: [{destination, nexthop}]``) and the default
  route through the external subnet's gateway send packets to a *next hop*
  in a connected subnet;
* routes learned over BGP (bgp/) join the table the same way, but are
  kept apart from it (`Router.routes` holds the others): there may be a
  hundred thousand of them, so the router app compiles each on its own;
  here they only get their next hops numbered. A learned route never
  replaces a connected, extra or default route of the same prefix.

Each router is a VRF of its own, numbered (``Router.vrf``) for the
``metadata`` field of the flows that carry a packet through its table, so
two projects' routers with the same subnets never see each other's
routes. Numbers and next-hop ids are hashes of the router's id and the
next hop's address, probed in a fixed order: a controller restarted with
the same routers compiles the same flows, byte for byte.

Nothing here talks to switches: `build` is a pure function of the records.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable

from kumoflow.controller.pipeline import METADATA, hashed_number
from kumoflow.store import Record

ROUTER_INTERFACE = "network:router_interface"
ROUTER_GATEWAY = "network:router_gateway"
ROUTER_PORTS = (ROUTER_INTERFACE, ROUTER_GATEWAY)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

VRF_SPACE = 1 << METADATA["vrf"].width
NEXTHOP_SPACE = 1 << METADATA["nexthop"].width


@dataclass(frozen=True)
class Interface:
    port_id: str
    network_id: str
    subnet_id: str
    mac: str
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface   # the gateway address with its subnet's prefix
    external: bool = False     # the router's gateway port on an external network
    ra_mode: str | None = None  # an IPv6 subnet's ipv6_ra_mode: the router advertises it (SLAAC, DHCPv6)

    @property
    def ip(self) -> IPAddress:
        return self.address.ip

    @property
    def subnet(self) -> IPNetwork:
        return self.address.network


@dataclass(frozen=True)
class Route:
    prefix: IPNetwork
    nexthop: IPAddress | None     # None: connected (deliver to the destination itself)
    origin: str                   # "connected", "static", "gateway" (the default via the external network)

    #: the route preferred when two give the same prefix (the smaller wins), as a kernel's metrics would
    RANK = {"connected": 0, "static": 1, "gateway": 2}


@dataclass
class Router:
    id: str
    project_id: str
    vrf: int
    up: bool
    interfaces: list[Interface] = field(default_factory=list)
    routes: dict[IPNetwork, Route] = field(default_factory=dict)
    nexthops: dict[IPAddress, int] = field(default_factory=dict)   # next hop address -> its id in this VRF
    floating: dict[ipaddress.IPv4Address, ipaddress.IPv4Address] = field(default_factory=dict)  # fixed -> floating
    snat: bool = False            # translate other sources leaving by the external gateway to its address
    problems: list[str] = field(default_factory=list)
    _facing: dict = field(default_factory=dict, repr=False, compare=False)   # interface_for, remembered

    @property
    def external(self) -> Interface | None:
        """The IPv4 address of its external gateway, if it has one."""
        return next((i for i in self.interfaces if i.external and i.ip.version == 4), None)

    def is_external(self, ip: IPAddress) -> bool:
        """Is `ip` reached through the external gateway (in the external subnet)?"""
        iface = self.interface_for(ip)
        return iface is not None and iface.external

    def interface_for(self, ip: IPAddress) -> Interface | None:
        """The interface whose subnet holds `ip` (the longest prefix, if several);
        remembered, as the same next hops are asked for over and over."""
        found = self._facing.get(ip, False)
        if found is False:
            found = None
            for iface in self.interfaces:
                if ip.version == iface.address.version and ip in iface.address.network:
                    if found is None or iface.address.network.prefixlen > found.address.network.prefixlen:
                        found = iface
            if len(self._facing) > 4096:
                self._facing.clear()
            self._facing[ip] = found
        return found

    def interface_by_mac(self, mac: str) -> list[Interface]:
        return [i for i in self.interfaces if i.mac == mac]

    def nexthop_address(self, number: int) -> IPAddress | None:
        for ip, n in self.nexthops.items():
            if n == number:
                return ip
        return None


def build(routers: Iterable[Record], ports: Iterable[Record], subnets: dict[str, Record],
          learned_nexthops: dict[str, set[IPAddress]] | None = None,
          floatingips: Iterable[Record] = ()) -> dict[str, Router]:
    """The routers by id, each with its interfaces, routing table, next hops
    and floating IPs. `learned_nexthops`: router id -> the next hops of the
    routes learned for it (BGP), which need numbers too."""
    by_router: dict[str, list[Record]] = {}
    for port in ports:
        if port.body.get("device_owner") in ROUTER_PORTS:
            by_router.setdefault(port.body.get("device_id", ""), []).append(port)
    records = sorted(routers, key=lambda r: (r.created_at, r.id))
    taken: set[int] = set()
    out: dict[str, Router] = {}
    for record in records:
        router = Router(record.id, record.project_id, hashed_number(record.id, VRF_SPACE, taken),
                        bool(record.body.get("admin_state_up", True)))
        for port in sorted(by_router.get(record.id, ()), key=lambda p: p.id):
            router.interfaces += _interfaces(port, subnets)
        _routes(router, record, subnets, (learned_nexthops or {}).get(record.id, set()))
        gateway = record.body.get("external_gateway_info") or {}
        router.snat = router.external is not None and bool(gateway.get("enable_snat", True))
        out[record.id] = router
    _no_chained_routers(out)
    for fip in floatingips:
        body = fip.body
        router = out.get(body.get("router_id") or "")
        try:
            fixed = ipaddress.IPv4Address(body.get("fixed_ip_address") or "")
            floating = ipaddress.IPv4Address(body.get("floating_ip_address") or "")
        except ValueError:
            continue
        if router is not None and router.external is not None and body.get("port_id"):
            router.floating[fixed] = floating
    return out


def _no_chained_routers(routers: dict[str, Router]) -> None:
    """Drop the routes (and next hops) that lead to another router's
    interface: the second router's lookup would need a table before the one
    the packet is in, and OpenFlow 1.3 cannot go back."""
    theirs = {(i.network_id, i.ip): r.id for r in routers.values() for i in r.interfaces}
    for router in routers.values():
        def other(ip: IPAddress) -> str | None:
            egress = router.interface_for(ip)
            owner = theirs.get((egress.network_id, ip)) if egress is not None else None
            return owner if owner != router.id else None

        for prefix, route in list(router.routes.items()):
            if route.nexthop is not None and other(route.nexthop):
                del router.routes[prefix]
                router.problems.append(f"router {router.id}: route {prefix} via {route.nexthop}: the next hop is "
                                       f"router {other(route.nexthop)}'s interface; chained routers are not "
                                       "supported yet")
        for ip in [ip for ip in router.nexthops if other(ip)]:
            del router.nexthops[ip]


def _interfaces(port: Record, subnets: dict[str, Record]) -> list[Interface]:
    body = port.body
    out = []
    for fixed in body.get("fixed_ips", ()):
        subnet = subnets.get(fixed.get("subnet_id", ""))
        if subnet is None:
            continue
        try:
            network = ipaddress.ip_network(subnet.body["cidr"], strict=False)
            address = ipaddress.ip_interface(f"{fixed['ip_address']}/{network.prefixlen}")
        except (KeyError, ValueError):
            continue
        out.append(Interface(port.id, body.get("network_id", ""), subnet.id, str(body.get("mac_address", "")).lower(),
                             address, body.get("device_owner") == ROUTER_GATEWAY,
                             subnet.body.get("ipv6_ra_mode") if address.version == 6 else None))
    return out


def _routes(router: Router, record: Record, subnets: dict[str, Record],
            learned_nexthops: set[IPAddress]) -> None:
    candidates: list[Route] = [Route(i.subnet, None, "connected") for i in router.interfaces]
    for route in record.body.get("routes") or ():
        try:
            candidates.append(Route(ipaddress.ip_network(route["destination"], strict=False),
                                    ipaddress.ip_address(route["nexthop"]), "static"))
        except (KeyError, ValueError):
            router.problems.append(f"extra route {route!r} is not a destination and a next hop")
    for iface in router.interfaces:
        if iface.external:
            gateway_ip = subnets[iface.subnet_id].body.get("gateway_ip")
            if gateway_ip:
                default = ipaddress.ip_network("0.0.0.0/0" if iface.ip.version == 4 else "::/0")
                candidates.append(Route(default, ipaddress.ip_address(gateway_ip), "gateway"))
    for route in candidates:
        if route.nexthop is not None and router.interface_for(route.nexthop) is None:
            router.problems.append(f"{route.origin} route {route.prefix} via {route.nexthop}: "
                                   "the next hop is in none of the router's subnets")
            continue
        old = router.routes.get(route.prefix)
        if old is None or Route.RANK[route.origin] < Route.RANK[old.origin]:
            router.routes[route.prefix] = route
    taken: set[int] = set()
    hops = {r.nexthop for r in router.routes.values() if r.nexthop is not None}
    hops |= {ip for ip in learned_nexthops if router.interface_for(ip) is not None}
    for nexthop in sorted(hops, key=lambda ip: (ip.version, ip)):
        router.nexthops[nexthop] = hashed_number(str(nexthop), NEXTHOP_SPACE, taken)
