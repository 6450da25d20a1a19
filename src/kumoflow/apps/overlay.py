"""The tenant overlay as a pure model: which networks are carried in
tunnels, which port is plugged where, and which switch is which tunnel
endpoint. The `tenants` app compiles flows from it; nothing here talks to
a switch.

A network whose ``provider:network_type`` is ``vxlan`` or ``nvgre`` is one
L2 domain across every hypervisor that has a port on it. Its packets
cross the underlay in tunnels keyed by the network's segmentation id: the
VXLAN VNI, or the NVGRE VSID, which OpenFlow sees in ``tunnel_id`` as the
whole 32-bit GRE key, VSID << 8 | FlowID (RFC 7637; Open vSwitch's ``gre``
ports the same). Inside a switch a network is a number (``Network.number``)
in the ``network`` bits of ``metadata``, a hash of its id probed in
creation order, so a restarted controller compiles the same flows.

Where things are:

* a port is bound to a switch port by the API (``binding:host_id`` a
  datapath id or a bridge's name, ``binding:profile`` ``{"port_no": N}`` or
  ``{"interface": NAME}``), or to a tunnel endpoint that runs no OpenFlow
  at all (``binding:host_id`` ``vtep:A.B.C.D``: a Linux kernel VXLAN host,
  a hardware VTEP), whose addresses are then reached through the tunnel;
* a switch's tunnel ports name the endpoint they reach, as Neutron's Open
  vSwitch agent names them: ``vxlan-0a000002`` is VXLAN to 10.0.0.2,
  ``nvgre-0a000002`` NVGRE (kumoflow.tunnels);
* a switch's own endpoint address is not visible over OpenFlow: it is the
  address every other switch's tunnels reach and its own do not (in a full
  mesh, exactly one). A switch whose address cannot be told that way (no
  tunnels yet, a partial mesh) is reported in `Overlay.problems` and its
  ports are reached by no one until it can.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from kumoflow import ofp
from kumoflow.apps.routing import ROUTER_PORTS
from kumoflow.controller.datapath import Datapath, local_name, named_switch
from kumoflow.controller.pipeline import METADATA, hashed_number
from kumoflow.store import Record
from kumoflow.tunnels import parse_port_name

OVERLAY_TYPES = ("vxlan", "nvgre")
VTEP_PREFIX = "vtep:"
NETWORK_SPACE = 1 << METADATA["network"].width

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: a place a port can be: a switch port (dpid, port_no), or a remote endpoint's address
Place = tuple[int, int] | ipaddress.IPv4Address


@dataclass(frozen=True)
class Network:
    id: str
    number: int
    kind: str          # vxlan or nvgre
    segment: int       # VNI or VSID

    @property
    def tunnel_id(self) -> int:
        return self.segment if self.kind == "vxlan" else self.segment << 8

    @property
    def tunnel_mask(self) -> int:
        """What of tunnel_id names the network: the NVGRE key's low byte is a FlowID (entropy)."""
        return 0xFFFFFF if self.kind == "vxlan" else 0xFFFFFF00


@dataclass(frozen=True)
class Port:
    id: str
    network: str
    mac: str
    ips: tuple[IPAddress, ...]
    pairs: tuple[tuple[str, IPNetwork], ...]     # allowed address pairs (MAC, prefix)
    security: bool                               # port_security_enabled
    place: Place
    owner: str = ""                              # device_owner
    vlan: int | None = None                      # behind an L2 gateway: its segment's VLAN (0: untagged)

    @property
    def remote(self) -> bool:
        """Bound to an endpoint without OpenFlow."""
        return isinstance(self.place, ipaddress.IPv4Address)


@dataclass(frozen=True)
class Segment:
    """A segment outside the overlay that an L2 gateway joins to a network: a
    switch port's VLAN, or its untagged frames (VLAN 0)."""
    connection: str
    network: str
    place: tuple[int, int]
    vlan: int

    @property
    def key(self) -> tuple[int, int, int]:
        return (*self.place, self.vlan)


@dataclass
class Overlay:
    networks: dict[str, Network] = field(default_factory=dict)
    ports: dict[str, Port] = field(default_factory=dict)
    #: dpid -> its tunnel endpoint address
    endpoints: dict[int, ipaddress.IPv4Address] = field(default_factory=dict)
    #: dpid -> (kind, remote address) -> OpenFlow port
    tunnels: dict[int, dict[tuple[str, ipaddress.IPv4Address], int]] = field(default_factory=dict)
    #: network id -> the places of its ports
    members: dict[str, set[Place]] = field(default_factory=dict)
    #: (dpid, port, VLAN) -> the segment an L2 gateway joins to a network there
    segments: dict[tuple[int, int, int], Segment] = field(default_factory=dict)
    #: network id -> the other networks a router joins it to
    routed: dict[str, set[str]] = field(default_factory=dict)
    #: (dpid, what is wrong with that switch's place in the overlay)
    problems: list[tuple[int, str]] = field(default_factory=list)
    _claimed: set[tuple[int, int]] | None = field(default=None, repr=False, compare=False)
    _at: dict[tuple[int, int], Port] | None = field(default=None, repr=False, compare=False)
    _of: dict[str, list[Port]] | None = field(default=None, repr=False, compare=False)

    def ports_of(self, network_id: str) -> list[Port]:
        """A network's ports, from an index made once per overlay (compiling each of
        10,000 networks by a walk over every port was quadratic)."""
        if self._of is None:
            self._of = {}
            for port in self.ports.values():
                self._of.setdefault(port.network, []).append(port)
        return self._of.get(network_id, [])

    def port_at(self, place: tuple[int, int]) -> Port | None:
        """The VM port plugged into a switch port (not one learned behind a gateway)."""
        if self._at is None:
            self._at = {p.place: p for p in self.ports.values() if not p.remote and p.vlan is None}
        return self._at.get(place)

    def claimed(self) -> set[tuple[int, int]]:
        """The switch ports the overlay holds: its ports' and its segments'."""
        if self._claimed is None:
            self._claimed = {p.place for p in self.ports.values() if not p.remote}
            self._claimed |= {s.place for s in self.segments.values()}
        return self._claimed

    def endpoint_of(self, place: Place) -> ipaddress.IPv4Address | None:
        if isinstance(place, ipaddress.IPv4Address):
            return place
        return self.endpoints.get(place[0])

    def switches_of(self, network_id: str) -> set[int]:
        """The switches with a port on a network."""
        return {p[0] for p in self.members.get(network_id, ()) if isinstance(p, tuple)}

    def senders_to(self, network_id: str) -> set[int]:
        """The switches that may send into a network: those with a port on it, and
        those with a port on a network routed to it (routing happens at the first
        switch, which then needs the destination network's ports)."""
        out = self.switches_of(network_id)
        for other in self.routed.get(network_id, ()):
            out |= self.switches_of(other)
        return out

    def remotes(self, network_id: str, dpid: int) -> dict[ipaddress.IPv4Address, int]:
        """Endpoint address -> tunnel port on `dpid`, for every other endpoint with a port on the network."""
        net = self.networks[network_id]
        mine = self.endpoints.get(dpid)
        out = {}
        for place in self.members.get(network_id, ()):
            address = self.endpoint_of(place)
            if address is None or address == mine:
                continue
            port_no = self.tunnels.get(dpid, {}).get((net.kind, address))
            if port_no is not None:
                out[address] = port_no
        return out

    def tunnel_to(self, dpid: int, kind: str, place: Place) -> int | None:
        address = self.endpoint_of(place)
        return None if address is None else self.tunnels.get(dpid, {}).get((kind, address))


def tunnel_ports(dp: Datapath) -> dict[tuple[str, ipaddress.IPv4Address], int]:
    """(kind, remote address) -> port number, from the names of the switch's ports."""
    out = {}
    for port in dp.ports.values():
        parsed = parse_port_name(port.name)
        if parsed is not None:
            out[parsed] = port.port_no
    return out


def network_numbers(networks: Iterable[Record]) -> dict[str, int]:
    """Every network's number (overlay or not: a router writes the number of the
    network a packet is routed into, whatever its type)."""
    taken: set[int] = set()
    return {r.id: hashed_number(r.id, NETWORK_SPACE, taken)
            for r in sorted(networks, key=lambda r: (r.created_at, r.id))}


def build(networks: Iterable[Record], ports: Iterable[Record], datapaths: Mapping[int, Datapath],
          gateways: Iterable[Record] = (), connections: Iterable[Record] = (),
          learned: Mapping[tuple[int, int, int], Iterable[str]] | None = None) -> Overlay:
    """The overlay; `learned`: the MACs seen behind each segment (by its key), which
    become ports of the segment's network."""
    overlay = Overlay()
    networks = list(networks)
    numbers = network_numbers(networks)
    for record in networks:
        body = record.body
        kind, segment = body.get("provider:network_type"), body.get("provider:segmentation_id")
        if kind in OVERLAY_TYPES and isinstance(segment, int):
            overlay.networks[record.id] = Network(record.id, numbers[record.id], kind, segment)
    for dpid, dp in datapaths.items():
        if dp.is_up:
            overlay.tunnels[dpid] = tunnel_ports(dp)
    overlay.endpoints = _endpoints(overlay.tunnels, overlay.problems)
    routers: dict[str, set[str]] = {}
    for record in ports:
        body = record.body
        # a router joins its interfaces' networks and its external gateway's: it routes at the first switch
        # into any of them, so that switch needs their unicast flows too
        if body.get("device_owner") in ROUTER_PORTS and body.get("network_id") in overlay.networks:
            routers.setdefault(body.get("device_id", ""), set()).add(body["network_id"])
        port = _port(record, overlay, datapaths)
        if port is not None:
            overlay.ports[port.id] = port
            overlay.members.setdefault(port.network, set()).add(port.place)
    for joined in routers.values():
        for network_id in joined:
            overlay.routed.setdefault(network_id, set()).update(joined - {network_id})
    _segments(overlay, {g.id: g for g in gateways}, connections, datapaths, learned or {})
    return overlay


def _segments(overlay: Overlay, gateways: dict[str, Record], connections: Iterable[Record],
              datapaths: Mapping[int, Datapath], learned: Mapping[tuple[int, int, int], Iterable[str]]) -> None:
    """The L2 gateways' segments, and the MACs learned behind them as ports."""
    for conn in sorted(connections, key=lambda r: (r.created_at, r.id)):
        gateway, network = gateways.get(conn.body.get("l2_gateway_id", "")), conn.body.get("network_id")
        if gateway is None or network not in overlay.networks:
            continue
        for device in gateway.body.get("devices") or ():
            dp = named_switch(datapaths.values(), device.get("device_name", ""), local_name)
            for interface in device.get("interfaces") or () if dp is not None else ():
                port_no = _port_named(dp, interface.get("name", ""))
                vlans = interface.get("segmentation_id") or [conn.body.get("segmentation_id")]
                for vlan in vlans if port_no is not None else ():
                    if isinstance(vlan, int) and (dp.id, port_no, vlan) not in overlay.segments:
                        segment = Segment(conn.id, network, (dp.id, port_no), vlan)
                        overlay.segments[segment.key] = segment
                        overlay.members.setdefault(network, set()).add(segment.place)
    taken = {p.mac for p in overlay.ports.values()}
    for key, macs in learned.items():
        segment = overlay.segments.get(key)
        for mac in sorted(macs) if segment is not None else ():
            if mac not in taken:
                port = Port(f"segment:{key[0]:x}:{key[1]}:{key[2]}:{mac}", segment.network, mac, (), (), False,
                            segment.place, "network:l2_gateway", segment.vlan)
                overlay.ports[port.id] = port
                taken.add(mac)


def _port_named(dp: Datapath, name: str) -> int | None:
    """A switch port by its name, or by its number written in decimal."""
    for port in dp.ports.values():
        if port.name == name and port.port_no <= ofp.OFPP.MAX:
            return port.port_no
    return int(name) if name.isdigit() and int(name) in dp.ports else None


def _endpoints(tunnels: dict[int, dict[tuple[str, ipaddress.IPv4Address], int]],
               problems: list[tuple[int, str]]) -> dict[int, ipaddress.IPv4Address]:
    """Each switch's own address: reached by the other switches' tunnels and not by its own."""
    reach = {dpid: {address for _, address in ports} for dpid, ports in tunnels.items()}
    out = {}
    for dpid, mine in reach.items():
        if not mine:
            continue
        others = set().union(*(r for d, r in reach.items() if d != dpid)) - mine
        if len(others) == 1:
            out[dpid] = others.pop()
        else:
            problems.append((dpid, f"switch {dpid:#x}: its tunnel endpoint address is "
                                   f"{'unknown' if not others else 'ambiguous'} (each switch needs a tunnel to every "
                                   "other)"))
    return out


def _port(record: Record, overlay: Overlay, datapaths: Mapping[int, Datapath]) -> Port | None:
    body = record.body
    network = overlay.networks.get(body.get("network_id", ""))
    if network is None or not body.get("admin_state_up", True) or not body.get("mac_address"):
        return None
    place = place_of(body, datapaths)
    if place is None:
        return None
    ips = []
    for fixed in body.get("fixed_ips") or ():
        try:
            ips.append(ipaddress.ip_address(fixed.get("ip_address", "")))
        except ValueError:
            pass
    pairs = []
    for pair in body.get("allowed_address_pairs") or ():
        try:
            pairs.append((pair.get("mac_address") or body["mac_address"],
                          ipaddress.ip_network(pair.get("ip_address", ""), strict=False)))
        except ValueError:
            pass
    return Port(record.id, network.id, body["mac_address"].lower(), tuple(ips), tuple(pairs),
                bool(body.get("port_security_enabled", True)), place, body.get("device_owner") or "")


def place_of(body: dict, datapaths: Mapping[int, Datapath]) -> Place | None:
    """Where an API port is bound: a switch port, a remote endpoint's address, or nowhere (yet)."""
    host = body.get("binding:host_id") or ""
    if host.startswith(VTEP_PREFIX):
        try:
            return ipaddress.IPv4Address(host[len(VTEP_PREFIX):])
        except ValueError:
            return None
    if not host:
        return None
    dp = named_switch(datapaths.values(), host, local_name)
    if dp is None:
        return None
    profile = body.get("binding:profile") or {}
    port_no = profile.get("port_no") if isinstance(profile, dict) else None
    if isinstance(port_no, int) and port_no in dp.ports:
        return (dp.id, port_no)
    name = profile.get("interface") if isinstance(profile, dict) else None
    for port in dp.ports.values():
        if name and port.name == name and port.port_no <= ofp.OFPP.MAX:
            return (dp.id, port.port_no)
    return None
