"""The plan of hypervisors and their underlay: names, addresses, MACs, tunnel ports.

Everything here is derived from the topology (its name, the hypervisors'
positions, the sites), so ``up --check`` shows it and ``down`` finds it
again. For hypervisor ``hv1`` (position n in ``hypervisors:``) of topology
``lab`` (interface prefix ``lab``):

* the underlay is one namespace, ``lab-underlay``: a Linux bridge per site
  (``ul-<site>``), and on a routed underlay the router -- each site
  bridge holds its site's gateway address, forwarding on;
* hv1's underlay NIC is a veth: ``lab-hv1-ul`` (in the root namespace, or
  moved into a kernel or kumoflow hypervisor's namespace as ``ul``), its peer a port of
  its site's bridge in the underlay namespace; its MAC is
  ``02:<2 bytes of a hash of the topology>:00:<n>`` (two bytes of n);
* an ``ovs`` hypervisor is two netdev bridges (notes/overlays.md): the VM
  bridge ``lab-hv1`` (the switch: VM ports and tunnel ports) and the
  underlay bridge ``lab-hv1-u`` holding the NIC and, on its LOCAL port, the
  VTEP address; its tunnel ports carry an ``egress_pkt_mark`` of its own
  and Open vSwitch's routes to the remote VTEPs carry the same mark;
* a ``kernel`` hypervisor is a namespace ``lab-hv1``: bridge ``br0`` with
  the VM ports and ``vxlan0`` (its VNI, a flood list of every remote VTEP);
* a ``kumoflow`` hypervisor is a namespace ``lab-hv1`` too, holding the VM
  ports, the NIC (``ul``, with the VTEP) and the ``kumoflow switch``
  process, whose tunnel sockets are therefore in it: its tunnel traffic
  crosses the underlay (kumoflow.net.kumoflow_kind, kumoflow.net.nsrelay);
* every remote VTEP reached on the same site is a static neighbour (its
  NIC's MAC); one on another site goes through the site's gateway, whose
  MAC (``02:<hash>:01:<site>``) is a static neighbour as well. Nothing on
  the underlay depends on ARP.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from kumoflow.net.overlay import TUNNEL_OVERHEAD, Hypervisor, tunnel_port_name, tunnel_port_number

UNDERLAY_NETNS_SUFFIX = "underlay"
KERNEL_BRIDGE = "br0"
KERNEL_VXLAN = "vxlan0"
KERNEL_NIC = "ul"
VXLAN_PORT = 4789
#: hypervisor kinds in a namespace of their own (VM ports, the underlay NIC as ``ul``, the VTEP)
OWN_NAMESPACE = ("kernel", "kumoflow")
#: Open vSwitch packet marks of hypervisors: this bit and 28 bits of a hash
MARK_BASE = 0x10000000


@dataclass(frozen=True)
class TunnelPlan:
    """One tunnel port: to one remote VTEP, of one type."""

    number: int
    name: str
    type: str
    local_ip: ipaddress.IPv4Address
    remote_ip: ipaddress.IPv4Address
    #: the remote hypervisor
    remote: str
    #: the overlay that made it
    overlay: str

    def record(self) -> dict:
        return {"number": self.number, "name": self.name, "type": self.type, "local_ip": str(self.local_ip),
                "remote_ip": str(self.remote_ip), "remote": self.remote, "overlay": self.overlay}


@dataclass(frozen=True)
class SitePlan:
    name: str
    subnet: ipaddress.IPv4Network
    #: the router's address and MAC on the site (routed underlay only)
    gateway: ipaddress.IPv4Address | None
    mac: str
    #: the site's bridge in the underlay namespace
    bridge: str


@dataclass(frozen=True)
class HypervisorPlan:
    name: str
    kind: str
    site: str
    vtep: ipaddress.IPv4Interface
    #: the underlay NIC's MAC
    mac: str
    #: the NIC (a veth end created in the root namespace) and its peer in the underlay namespace
    nic: str
    peer: str
    #: ovs/kumoflow: the switch's bridge name; kernel: the bridge in its namespace
    bridge: str
    #: ovs: the underlay bridge holding the NIC and, on LOCAL, the VTEP address, and its MAC
    underlay_bridge: str = ""
    underlay_mac: str = ""
    #: kernel, kumoflow: the hypervisor's namespace (else empty: the root namespace)
    netns: str = ""
    #: kernel: the VNI of its VXLAN device
    vni: int | None = None
    #: ovs: egress_pkt_mark of its tunnel ports and the mark of its routes
    mark: int = 0
    #: MTU of its VM ports (and of the VMs' eth0): the underlay's, less the largest tunnel overhead
    vm_mtu: int = 1500
    tunnels: tuple[TunnelPlan, ...] = ()
    #: the next hop to each remote VTEP (itself on the same site, else the gateway)
    routes: tuple[tuple[ipaddress.IPv4Address, ipaddress.IPv4Address], ...] = ()
    #: static neighbours: (next hop, its MAC)
    neighbors: tuple[tuple[ipaddress.IPv4Address, str], ...] = ()

    @property
    def nic_in_netns(self) -> str:
        """The NIC's name where it lives (a kernel hypervisor renames it)."""
        return KERNEL_NIC if self.netns else self.nic

    def record(self) -> dict:
        return {"name": self.name, "kind": self.kind, "site": self.site, "vtep": str(self.vtep),
                "mac": self.mac, "nic": self.nic, "bridge": self.bridge,
                "underlay_bridge": self.underlay_bridge, "netns": self.netns, "mark": self.mark,
                "tunnels": [t.record() for t in self.tunnels]}


@dataclass(frozen=True)
class UnderlayPlan:
    netns: str
    mtu: int
    sites: tuple[SitePlan, ...]
    #: each hypervisor's VTEP, NIC MAC and site bridge: the router's static neighbours
    vteps: tuple[tuple[ipaddress.IPv4Address, str, str], ...] = ()

    @property
    def routed(self) -> bool:
        return len(self.sites) > 1


def _hash(text: str, digits: int) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:digits]


def _mac(topology: str, kind: int, number: int) -> str:
    h = _hash(topology, 4)
    return f"02:{h[:2]}:{h[2:]}:{kind:02x}:{number >> 8:02x}:{number & 0xff:02x}"


def nic_mac(topology: str, index: int) -> str:
    return _mac(topology, 0, index)


def router_mac(topology: str, site_index: int) -> str:
    return _mac(topology, 1, site_index)


def bridge_mac(topology: str, index: int) -> str:
    """The hwaddr of an ovs hypervisor's underlay bridge (never on the wire: see ovs_underlay)."""
    return _mac(topology, 2, index)


def pkt_mark(topology: str, hypervisor: str) -> int:
    return MARK_BASE | int(_hash(f"{topology}/{hypervisor}", 7), 16)


def plan_overlay(topology, names) -> tuple[UnderlayPlan | None, tuple[HypervisorPlan, ...]]:
    """The underlay and hypervisor plans of a validated topology (``names``: its Names)."""
    underlay = topology.underlay
    if underlay is None or not topology.hypervisors:
        return None, ()
    name = topology.name
    sites = tuple(
        SitePlan(s.name, s.subnet, s.gateway, router_mac(name, i + 1), f"ul-{s.name}")
        for i, s in enumerate(underlay.sites)
    )
    site_of = {s.name: s for s in sites}
    hvs: dict[str, Hypervisor] = {h.name: h for h in topology.hypervisors}
    overhead: dict[str, int] = {}
    tunnels: dict[str, list[TunnelPlan]] = {h: [] for h in hvs}
    for overlay in topology.overlays:
        for local in overlay.hypervisors:
            overhead[local] = max(overhead.get(local, 0), TUNNEL_OVERHEAD[overlay.type])
            for remote in overlay.hypervisors:
                if remote == local:
                    continue
                r = hvs[remote]
                # Open vSwitch's port names are global to the machine: its ports add the local VTEP
                own = hvs[local].vtep.ip if hvs[local].kind == "ovs" else None
                tunnels[local].append(TunnelPlan(
                    tunnel_port_number(overlay.type, r.index), tunnel_port_name(overlay.type, r.vtep.ip, own),
                    overlay.type, hvs[local].vtep.ip, r.vtep.ip, remote, overlay.name))
    plans = []
    for hv in topology.hypervisors:
        site = site_of[hv.site]
        routes, neighbors = [], {}
        for remote in sorted({t.remote for t in tunnels[hv.name]}, key=lambda n: hvs[n].index):
            r = hvs[remote]
            if r.site == hv.site:
                routes.append((r.vtep.ip, r.vtep.ip))
                neighbors[r.vtep.ip] = nic_mac(name, r.index)
            else:
                assert site.gateway is not None
                routes.append((r.vtep.ip, site.gateway))
                neighbors[site.gateway] = site.mac
        kernel = hv.kind == "kernel"
        plans.append(HypervisorPlan(
            name=hv.name, kind=hv.kind, site=hv.site, vtep=hv.vtep, mac=nic_mac(name, hv.index),
            nic=names.ifname(hv.name, "ul"), peer=_peer_name(hv.name, hv.index),
            bridge=KERNEL_BRIDGE if kernel else names.bridge(hv.name),
            underlay_bridge=names.ifname(hv.name, "u") if hv.kind == "ovs" else "",
            underlay_mac=bridge_mac(name, hv.index) if hv.kind == "ovs" else "",
            netns=names.netns(hv.name) if hv.kind in OWN_NAMESPACE else "", vni=hv.vni,
            mark=pkt_mark(name, hv.name) if hv.kind == "ovs" else 0,
            vm_mtu=underlay.mtu - overhead.get(hv.name, 0),
            tunnels=tuple(sorted(tunnels[hv.name], key=lambda t: t.number)),
            routes=tuple(routes), neighbors=tuple(neighbors.items()),
        ))
    vteps = tuple((h.vtep.ip, h.mac, site_of[h.site].bridge) for h in plans)
    return UnderlayPlan(names.netns(UNDERLAY_NETNS_SUFFIX), underlay.mtu, sites, vteps), tuple(plans)


def _peer_name(hypervisor: str, index: int) -> str:
    """The NIC's peer in the underlay namespace: the hypervisor's name when it fits."""
    return hypervisor if len(hypervisor) <= 15 else f"{hypervisor[:10]}-{index}"
