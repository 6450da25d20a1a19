"""From a validated topology to the exact kernel and switch names it will use.

Every name is derived from the topology name, so two topologies (or a rerun
of a test with a fresh name) never collide, and ``down`` can find everything
again from the name alone:

* namespace of host ``h1`` in topology ``lab``: ``lab-h1``
* interface prefix: the topology name when it is at most 6 lowercase
  letters/digits, else 2 of its letters and 4 hex digits of a hash of it
  (``single`` -> ``single``, ``t3f9a2c01`` -> ``t3`` + hash)
* OVS bridge of switch ``s1``: ``<prefix>-s1``
* switch port ``n`` of ``s1`` (a veth end in the root namespace):
  ``<prefix>-s1-<n>``
* a host's end of its link: created as ``<prefix>-h1`` in the root
  namespace, then moved into the host's namespace and renamed ``eth0``

Linux interface names hold at most 15 characters (IFNAMSIZ - 1); a name
that would be longer becomes ``<prefix>-`` plus a hash of the long form.
Node names cannot contain '-', so the prefix is always the part before the
first '-'. Root-namespace veth ends also carry the interface alias
``kumoflow:<topology>``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from kumoflow.net.overlay_plan import KERNEL_NIC, HypervisorPlan, TunnelPlan, UnderlayPlan, plan_overlay
from kumoflow.net.topology import FrrConfig, IPAddress, IPInterface, PortConfig, Topology

IFNAMSIZ = 16
MAX_IFNAME = IFNAMSIZ - 1
PREFIX_LEN = 6
HOST_IFNAME = "eth0"
ALIAS_PREFIX = "kumoflow:"
#: the node name of the underlay's end of a hypervisor's NIC (links)
UNDERLAY_NODE = "underlay"


def _digest(text: str, length: int) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:length]


def interface_prefix(topology: str) -> str:
    """The short prefix of every interface name of ``topology``."""
    if re.fullmatch(r"[a-z0-9]{1,%d}" % PREFIX_LEN, topology):
        return topology
    letters = re.sub(r"[^a-z0-9]", "", topology.lower())[:2] or "kf"
    return letters + _digest(topology, PREFIX_LEN - len(letters))


@dataclass(frozen=True)
class Names:
    """The naming scheme of one topology instance."""

    topology: str

    @property
    def prefix(self) -> str:
        return interface_prefix(self.topology)

    @property
    def alias(self) -> str:
        """Interface alias marking root-namespace veth ends of this topology."""
        return ALIAS_PREFIX + self.topology

    def ifname(self, *parts: str) -> str:
        name = "-".join((self.prefix, *parts))
        if len(name) <= MAX_IFNAME:
            return name
        return f"{self.prefix}-{_digest(name, MAX_IFNAME - len(self.prefix) - 1)}"

    def netns(self, host: str) -> str:
        return f"{self.topology}-{host}"

    def netns_pattern(self) -> re.Pattern[str]:
        """Matches exactly the namespace names this topology can make."""
        return re.compile(re.escape(self.topology) + r"-[A-Za-z][A-Za-z0-9_]*")

    def bridge(self, switch: str) -> str:
        return self.ifname(switch)

    def port(self, switch: str, number: int) -> str:
        return self.ifname(switch, str(number))

    def host_end(self, host: str) -> str:
        return self.ifname(host)

    def owns_ifname(self, ifname: str) -> bool:
        return ifname.startswith(self.prefix + "-")


@dataclass(frozen=True)
class HostPlan:
    name: str
    netns: str
    ifname: str
    mac: str
    #: eth0's static addresses (empty for a SLAAC-only host)
    addresses: tuple[IPInterface, ...]
    #: default routes, at most one per family
    gateways: tuple[IPAddress, ...] = ()
    #: the switch and port the host is attached to
    switch: str = ""
    port: int = 0
    topology: str = ""
    #: accept router advertisements on eth0
    slaac: bool = False
    #: extra addresses on lo
    loopback: tuple[IPInterface, ...] = ()
    #: started in the background once the network is up (kumoflow.net.services)
    run: str | tuple[str, ...] | None = None
    #: an FRR router: zebra and the daemons asked for (kumoflow.net.services)
    frr: FrrConfig | None = None
    #: the directory of the topology file: where ``run`` starts
    workdir: str = ""
    #: eth0's MTU (0: the kernel's default); a VM's is its hypervisor's ``vm_mtu``
    mtu: int = 0

    @property
    def ip(self) -> IPInterface | None:
        """The first static address (None for a SLAAC-only host)."""
        return self.addresses[0] if self.addresses else None

    @property
    def gateway(self) -> IPAddress | None:
        return self.gateways[0] if self.gateways else None

    @property
    def forwarding(self) -> bool:
        """Routes packets (an FRR router): IPv4 and IPv6 forwarding on in its namespace."""
        return self.frr is not None

    def record(self) -> dict:
        return {
            "name": self.name,
            "netns": self.netns,
            "ifname": self.ifname,
            "mac": self.mac,
            # the first address and gateway, as records before lists had them
            "ip": str(self.ip) if self.ip else None,
            "gateway": str(self.gateway) if self.gateway else None,
            "addresses": [str(a) for a in self.addresses],
            "gateways": [str(g) for g in self.gateways],
            "slaac": self.slaac,
            "loopback": [str(a) for a in self.loopback],
            "switch": self.switch,
            "port": self.port,
            "topology": self.topology,
        }


@dataclass(frozen=True)
class VethEnd:
    """One end of a veth pair, created in the root namespace as ``ifname``."""

    node: str
    ifname: str
    #: OpenFlow port number on a switch end
    port: int | None = None
    #: for a host end: the namespace it moves to and its name there
    netns: str | None = None
    final_ifname: str | None = None
    #: a MAC of its own (else the kernel's random one)
    mac: str | None = None


@dataclass(frozen=True)
class LinkPlan:
    index: int
    #: ``a`` is a switch end: it stays in the root namespace, except a kernel or kumoflow hypervisor's (``a.netns``)
    a: VethEnd
    b: VethEnd
    #: MTU of both ends (0: the kernel's default)
    mtu: int = 0


@dataclass(frozen=True)
class PortPlan:
    number: int
    ifname: str
    #: its egress rates (the switch's ``ports:`` entry), None for none
    config: PortConfig | None = None


@dataclass(frozen=True)
class SwitchPlan:
    name: str
    kind: str
    topology: str
    bridge: str
    dpid: int
    fail_mode: str
    protocols: tuple[str, ...]
    controllers: tuple[str, ...]
    ports: tuple[PortPlan, ...] = ()
    #: seconds between attempts to reach a controller, at most
    max_backoff: int = 1
    #: a hypervisor's tunnel ports (kumoflow.net.overlay_plan)
    tunnels: tuple[TunnelPlan, ...] = ()
    #: ovs hypervisor: the egress_pkt_mark of its tunnel ports
    tunnel_mark: int = 0
    #: kumoflow hypervisor: the namespace its switch, VM ports and underlay NIC are in
    netns: str = ""

    def record(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "topology": self.topology,
            "bridge": self.bridge,
            "dpid": self.dpid,
            "ports": [p.ifname for p in self.ports],
        }


@dataclass(frozen=True)
class Plan:
    topology: Topology
    names: Names
    hosts: tuple[HostPlan, ...] = ()
    switches: tuple[SwitchPlan, ...] = ()
    links: tuple[LinkPlan, ...] = field(default=())
    underlay: UnderlayPlan | None = None
    hypervisors: tuple[HypervisorPlan, ...] = ()

    @property
    def name(self) -> str:
        return self.topology.name

    def namespaces(self) -> list[str]:
        """Hosts', kernel and kumoflow hypervisors' and the underlay's namespaces."""
        extra = [h.netns for h in self.hypervisors if h.netns]
        return [h.netns for h in self.hosts] + extra + ([self.underlay.netns] if self.underlay else [])

    def root_ifnames(self) -> list[str]:
        """Every interface name the plan creates in the root namespace
        (veth ends, including host ends before they move, and bridges)."""
        names = []
        for link in self.links:
            names.append(link.a.ifname)
            names.append(link.b.ifname)
        names += [s.bridge for s in self.switches]
        names += [h.underlay_bridge for h in self.hypervisors if h.underlay_bridge]
        return names


def make_plan(topology: Topology) -> Plan:
    names = Names(topology.name)
    underlay, hypervisors = plan_overlay(topology, names)
    by_hypervisor = {h.name: h for h in hypervisors}
    attach: dict[str, tuple[str, int]] = {}
    mtu: dict[str, int] = {}
    links = []
    ports: dict[str, list[PortPlan]] = {s.name: [] for s in topology.switches}
    configs = {(s.name, c.number): c for s in topology.switches for c in s.ports}
    for index, link in enumerate(topology.links):
        ends = []
        for end in (link.src, link.dst):
            if topology.is_host(end.node):
                ends.append(VethEnd(end.node, names.host_end(end.node), None,
                                    names.netns(end.node), HOST_IFNAME))
            elif end.node in ports:
                ifname = names.port(end.node, end.port)
                netns = by_hypervisor[end.node].netns if end.node in by_hypervisor else ""
                # a kumoflow hypervisor's port goes into its namespace, under the same name
                ends.append(VethEnd(end.node, ifname, end.port, netns or None, ifname if netns else None))
                ports[end.node].append(PortPlan(end.port, ifname, configs.get((end.node, end.port))))
            else:  # a kernel hypervisor: the port goes into its namespace, under the same name
                ifname = names.port(end.node, end.port)
                netns = by_hypervisor[end.node].netns
                ends.append(VethEnd(end.node, ifname, end.port, netns, ifname))
        a, b = ends
        if topology.is_host(a.node):  # keep the switch end first
            a, b = b, a
        link_mtu = by_hypervisor[a.node].vm_mtu if a.node in by_hypervisor else 0
        if topology.is_host(b.node):
            attach[b.node] = (a.node, a.port)
            if link_mtu:
                mtu[b.node] = link_mtu
        links.append(LinkPlan(index, a, b, link_mtu))
    # each hypervisor's underlay NIC: a veth to its site's bridge in the underlay namespace
    for hv in hypervisors:
        assert underlay is not None
        nic = VethEnd(hv.name, hv.nic, None, hv.netns or None, KERNEL_NIC if hv.netns else None, hv.mac)
        peer = VethEnd(UNDERLAY_NODE, names.ifname(hv.name, "ulp"), None, underlay.netns, hv.peer)
        links.append(LinkPlan(len(links), nic, peer, underlay.mtu))
    workdir = str(Path(topology.source).resolve().parent) if topology.source != "<string>" else ""
    hosts = tuple(
        HostPlan(h.name, names.netns(h.name), HOST_IFNAME, h.mac, h.addresses, h.gateways,
                 *attach.get(h.name, ("", 0)), topology=topology.name, slaac=h.slaac,
                 loopback=h.loopback, run=h.run, frr=h.frr, workdir=workdir, mtu=mtu.get(h.name, 0))
        for h in topology.hosts
    )
    switches = tuple(
        SwitchPlan(
            name=s.name,
            kind=s.kind,
            topology=topology.name,
            bridge=names.bridge(s.name),
            dpid=s.dpid,
            fail_mode=s.fail_mode,
            protocols=s.protocols,
            controllers=topology.controllers_of(s),
            ports=tuple(sorted(ports[s.name], key=lambda p: p.number)),
            max_backoff=topology.max_backoff_of(s),
            tunnels=by_hypervisor[s.name].tunnels if s.name in by_hypervisor else (),
            tunnel_mark=by_hypervisor[s.name].mark if s.name in by_hypervisor else 0,
            netns=by_hypervisor[s.name].netns if s.name in by_hypervisor else "",
        )
        for s in topology.switches
    )
    plan = Plan(topology, names, hosts, switches, tuple(links), underlay, hypervisors)
    seen: set[str] = set()
    for ifname in plan.root_ifnames():
        if ifname in seen:  # only a hash collision of two long names can do this
            raise ValueError(f"interface name {ifname!r} would be used twice; rename a node")
        seen.add(ifname)
    return plan
