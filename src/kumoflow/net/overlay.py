"""Hypervisors, overlays and the underlay: their part of a topology file.

A cloud's hypervisor is a virtual switch with VMs behind it and an address
on the physical network (its VTEP, the tunnel endpoint); the VMs of one
tenant network reach each other across hypervisors through tunnels over
that physical network, the underlay. The emulator builds exactly that::

    underlay:
      sites:                           # routed: one subnet per site, a router between
        - {name: east, subnet: 192.168.10.0/24}          # gateway: .1 by default
        - {name: west, subnet: 192.168.20.0/24, gateway: 192.168.20.254}
    hypervisors:
      - {name: hv1, kind: ovs, vtep: 192.168.10.11, site: east}
      - {name: hv2, kind: kernel, vtep: 192.168.20.12, site: west, vni: 5001}
    overlays:
      - {name: tenants, type: vxlan}   # every hypervisor, full mesh

``underlay: {subnet: ...}`` instead of ``sites`` is a switched underlay:
one L2 segment, no router. A hypervisor is ``ovs`` (Open vSwitch),
``kumoflow`` (the kumoflow switch) -- both OpenFlow switches, with the
fields of a switch (dpid, fail_mode, controller ...) -- or ``kernel``: a
Linux bridge and VXLAN device in a namespace of its own that runs no
OpenFlow and carries one VNI (``vni:``), the interoperation peer. VMs are
the topology's hosts, linked to their hypervisor under ``links:`` like hosts
to a switch. Each overlay joins its hypervisors (default: all) in a full
mesh of tunnel ports of its type, ``vxlan`` or ``nvgre``; the kernel kind
does VXLAN only (this kernel has no gretap device, notes/overlays.md).

This module reads and checks these sections (every problem reported at
once, ``file:line: field: message``, with the rest of the file), and holds
the numbering and naming rules the plan uses: a tunnel port is named after
the remote VTEP (``vxlan-0a000002`` for 10.0.0.2, the name the kumoflow
switch gives its own tunnel ports) and numbered from the remote
hypervisor's position in ``hypervisors:`` -- ``1000 + n`` for VXLAN,
``2000 + n`` for NVGRE -- so a port's number and name say which remote it
reaches, and adding a hypervisor at the end renumbers nothing. VM ports are
therefore below 1000.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from yaml.nodes import Node

from kumoflow.net.yamlnodes import field_index, field_key, line_of
from kumoflow.tunnels import port_name

if TYPE_CHECKING:
    from kumoflow.net.topology import Link, Switch, _Builder

#: tunnel types and what each costs in bytes on the underlay (outer Ethernet included)
TUNNEL_OVERHEAD = {"vxlan": 50, "nvgre": 42}
#: hypervisor kinds and the tunnel types each can terminate
HYPERVISOR_KINDS = {"ovs": ("vxlan", "nvgre"), "kumoflow": ("vxlan", "nvgre"), "kernel": ("vxlan",)}
#: tunnel port number = base of its type + the remote hypervisor's position (1-based)
TUNNEL_PORT_BASE = {"vxlan": 1000, "nvgre": 2000}
MAX_HYPERVISORS = 999
#: VM ports of a hypervisor stay below the tunnel ports
MAX_VM_PORT = min(TUNNEL_PORT_BASE.values()) - 1
DEFAULT_MTU = 1500
MAX_VNI = (1 << 24) - 1
SITE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,11}$")
#: the name of the single site of a switched underlay
SWITCHED_SITE = "lan"
#: the underlay's namespace is <topology>-underlay, so no node may take that name
RESERVED_NODE = "underlay"


def tunnel_port_name(kind: str, remote: ipaddress.IPv4Address | str,
                     local: ipaddress.IPv4Address | str | None = None) -> str:
    """``vxlan-0a000002``: the type and the remote VTEP as 8 hex digits; with
    ``local``, its 8 hex digits after a ``-`` (``vxlan-0a000002-0a000001``):
    Open vSwitch's names are unique across all its bridges, so two emulated
    hypervisors cannot both have ``vxlan-0a000002``. The first 15 characters
    are the OpenFlow port name (``vxlan-0a000002-``): type and remote first."""
    name = port_name(kind, remote)  # the one helper the switch and the controller use too
    return f"{name}-{int(ipaddress.IPv4Address(local)):08x}" if local is not None else name


def tunnel_port_number(kind: str, remote_index: int) -> int:
    return TUNNEL_PORT_BASE[kind] + remote_index


@dataclass(frozen=True)
class Site:
    """One L2 segment of the underlay; with several, a router joins them."""

    name: str
    subnet: ipaddress.IPv4Network
    #: the router's address on this site (None on a switched underlay)
    gateway: ipaddress.IPv4Address | None = None
    line: int = 0


@dataclass(frozen=True)
class Underlay:
    sites: tuple[Site, ...]
    mtu: int = DEFAULT_MTU
    line: int = 0

    @property
    def routed(self) -> bool:
        return len(self.sites) > 1

    def site(self, name: str) -> Site:
        return next(s for s in self.sites if s.name == name)


@dataclass(frozen=True)
class Hypervisor:
    name: str
    #: ovs, kumoflow or kernel
    kind: str
    #: the underlay address with its site's prefix length
    vtep: ipaddress.IPv4Interface
    site: str
    #: 1-based position in ``hypervisors:``, which numbers the tunnel ports to it
    index: int
    #: kernel kind: the VNI of its VXLAN device
    vni: int | None = None
    line: int = 0


@dataclass(frozen=True)
class Overlay:
    name: str
    type: str
    #: member hypervisors, in ``hypervisors:`` order
    hypervisors: tuple[str, ...]
    line: int = 0


_KERNEL_REFUSES = ("dpid", "fail_mode", "protocols", "controller", "max_backoff")


def read_hypervisors(builder: _Builder, node: Node) -> tuple[list[Hypervisor], list[tuple[Switch, Node | None]]]:
    """``hypervisors:``: the hypervisors (VTEP not yet checked against the
    underlay) and, for the OpenFlow kinds, their switches with their dpid
    nodes (see ``_Builder.default_dpids``)."""
    from kumoflow.net.topology import Switch

    r = builder.r
    items = r.sequence(node, "hypervisors") or []
    if len(items) > MAX_HYPERVISORS:
        r.error(node, "hypervisors", f"{len(items)} hypervisors: at most {MAX_HYPERVISORS} (tunnel port numbers)")
    hypervisors: list[Hypervisor] = []
    switches: list[tuple[Switch, Node | None]] = []
    for i, item in enumerate(items):
        where = field_index("hypervisors", i)
        keys = r.mapping(item, where, required=("name", "vtep"),
                         optional=("kind", "site", "vni", *builder.SWITCH_FIELDS))
        if keys is None:
            continue
        name = builder.node_name(keys["name"], field_key(where, "name")) if "name" in keys else None
        kind = "ovs"
        if "kind" in keys:
            kind = r.string(keys["kind"], field_key(where, "kind")) or ""
            if kind and kind not in HYPERVISOR_KINDS:
                r.error(keys["kind"], field_key(where, "kind"),
                        f"unknown hypervisor kind {kind!r} (known: {', '.join(HYPERVISOR_KINDS)})")
                kind = ""
        vtep = None
        if "vtep" in keys:
            text = r.string(keys["vtep"], field_key(where, "vtep"))
            try:
                vtep = ipaddress.IPv4Address(text) if text is not None else None
            except ValueError:
                r.error(keys["vtep"], field_key(where, "vtep"),
                        f"{text!r} is not an IPv4 address (the prefix length comes from the site's subnet)")
        site = ""
        if "site" in keys:
            site = r.string(keys["site"], field_key(where, "site")) or ""
        vni = None
        if kind == "kernel":
            for key in _KERNEL_REFUSES:
                if key in keys:
                    r.error(keys[key], field_key(where, key),
                            "a kernel hypervisor runs no OpenFlow (a Linux bridge and a VXLAN device)")
            if "vni" not in keys:
                r.error(item, field_key(where, "vni"),
                        "missing required field: the VNI of a kernel hypervisor's VXLAN device")
            else:
                vni = r.integer(keys["vni"], field_key(where, "vni"), 1, MAX_VNI)
        elif "vni" in keys:
            r.error(keys["vni"], field_key(where, "vni"),
                    f"only a kernel hypervisor has a fixed VNI; a {kind or 'ovs'} hypervisor's flows choose it")
        if not (name and kind and vtep is not None):
            continue
        # a placeholder prefix until the underlay says which subnet it is in
        hypervisors.append(Hypervisor(name, kind, ipaddress.IPv4Interface(vtep), site, i + 1, vni, line_of(item)))
        builder.hypervisor_keys[name] = (keys, where)
        if kind != "kernel":
            switch = builder.switch_fields(Switch(name, kind=kind, line=line_of(item)), keys, where)
            switches.append((switch, keys.get("dpid")))
    return hypervisors, switches


def read_overlays(
    builder: _Builder, top: dict[str, Node], hypervisors: list[Hypervisor], links: list[Link], hosts: set[str]
) -> tuple[Underlay | None, list[Overlay]]:
    """``underlay:`` and ``overlays:``, checked with the hypervisors and their links."""
    r = builder.r
    underlay = None
    if "underlay" in top:
        underlay = _underlay(builder, top["underlay"])
    elif hypervisors:
        r.error(1, "underlay", "hypervisors need an underlay: subnet: (switched) or sites: (routed)")
    if "overlays" in top and not hypervisors:
        r.error(top["overlays"], "overlays", "overlays join hypervisors, and there are none")
    if "underlay" in top and not hypervisors:
        r.error(top["underlay"], "underlay", "an underlay without hypervisors")
    if (underlay is not None or hypervisors) and RESERVED_NODE in builder.nodes:
        field, line = builder.nodes[RESERVED_NODE]
        r.error(line, field_key(field, "name"),
                f"{RESERVED_NODE!r} is reserved: it names the underlay's namespace")
    checked = _placed(builder, hypervisors, underlay) if underlay is not None else []
    _vm_links(builder, hypervisors, links, hosts)
    overlays = _overlays(builder, top["overlays"], checked) if "overlays" in top and hypervisors else []
    return underlay, overlays


def _underlay(builder: _Builder, node: Node) -> Underlay | None:
    r = builder.r
    keys = r.mapping(node, "underlay", optional=("subnet", "sites", "mtu"))
    if keys is None:
        return None
    mtu = DEFAULT_MTU
    if "mtu" in keys:
        mtu = r.integer(keys["mtu"], "underlay.mtu", 1280, 9000) or DEFAULT_MTU
    if ("subnet" in keys) == ("sites" in keys):
        r.error(node, "underlay", "give subnet: (a switched underlay, one segment) "
                                  "or sites: (a routed one, a subnet each), not both")
        return None
    if "subnet" in keys:
        subnet = _subnet(builder, keys["subnet"], "underlay.subnet")
        return Underlay((Site(SWITCHED_SITE, subnet, None, line_of(node)),), mtu, line_of(node)) if subnet else None
    items = r.sequence(keys["sites"], "underlay.sites")
    if items is None:
        return None
    if len(items) < 2:
        r.error(keys["sites"], "underlay.sites", "a routed underlay has at least two sites "
                                                 "(one segment: underlay: {subnet: ...})")
    sites: list[Site] = []
    ok = True
    for i, item in enumerate(items):
        where = field_index("underlay.sites", i)
        site_keys = r.mapping(item, where, required=("name", "subnet"), optional=("gateway",))
        if site_keys is None:
            ok = False
            continue
        name = r.string(site_keys["name"], field_key(where, "name")) if "name" in site_keys else None
        if name is not None and not SITE_NAME.fullmatch(name):
            r.error(site_keys["name"], field_key(where, "name"),
                    f"{name!r} is not a valid site name (a letter, then letters, digits or '_', at most 12)")
            name = None
        elif name is not None and any(s.name == name for s in sites):
            r.error(site_keys["name"], field_key(where, "name"), f"duplicate site {name!r}")
            name = None
        subnet = _subnet(builder, site_keys["subnet"], field_key(where, "subnet")) if "subnet" in site_keys else None
        if subnet is not None:
            other = next((s for s in sites if s.subnet.overlaps(subnet)), None)
            if other is not None:
                r.error(site_keys["subnet"], field_key(where, "subnet"),
                        f"{subnet} overlaps site {other.name!r} ({other.subnet})")
                subnet = None
        if not (name and subnet):
            ok = False
            continue
        gateway = next(subnet.hosts())
        if "gateway" in site_keys:
            gateway = _address_in(builder, site_keys["gateway"], field_key(where, "gateway"), subnet)
            if gateway is None:
                ok = False
                continue
        sites.append(Site(name, subnet, gateway, line_of(item)))
    return Underlay(tuple(sites), mtu, line_of(node)) if ok and len(sites) >= 2 else None


def _subnet(builder: _Builder, node: Node, field: str) -> ipaddress.IPv4Network | None:
    text = builder.r.string(node, field)
    if text is None:
        return None
    try:
        subnet = ipaddress.IPv4Network(text)
    except ValueError:
        builder.r.error(node, field, f"{text!r} is not an IPv4 subnet (e.g. 192.168.10.0/24; "
                                     "host bits must be zero)")
        return None
    if subnet.prefixlen > 30:
        builder.r.error(node, field, f"{subnet} is too small for hypervisors (at most /30)")
        return None
    return subnet


def _address_in(builder: _Builder, node: Node, field: str, subnet: ipaddress.IPv4Network):
    """An address of ``subnet`` that a node can have, or None (reported)."""
    text = builder.r.string(node, field)
    if text is None:
        return None
    try:
        ip = ipaddress.IPv4Address(text)
    except ValueError:
        builder.r.error(node, field, f"{text!r} is not an IPv4 address")
        return None
    if ip not in subnet:
        builder.r.error(node, field, f"{ip} is outside the subnet {subnet}")
        return None
    if ip in (subnet.network_address, subnet.broadcast_address):
        kind = "network" if ip == subnet.network_address else "broadcast"
        builder.r.error(node, field, f"{ip} is the {kind} address of {subnet}")
        return None
    return ip


def _placed(builder: _Builder, hypervisors: list[Hypervisor], underlay: Underlay) -> list[Hypervisor]:
    """Each hypervisor on its site, with its VTEP checked against the site's
    subnet and every other underlay address (replaced in place)."""
    r = builder.r
    used: dict[ipaddress.IPv4Address, str] = {s.gateway: f"the gateway of site {s.name!r}"
                                              for s in underlay.sites if s.gateway is not None}
    names = [s.name for s in underlay.sites]
    placed = []
    for i, hv in enumerate(hypervisors):
        keys, where = builder.hypervisor_keys[hv.name]
        if underlay.routed:
            if not hv.site:
                r.error(hv.line, field_key(where, "site"),
                        f"missing required field: the routed underlay's sites are {', '.join(names)}")
                continue
            if hv.site not in names:
                r.error(keys["site"], field_key(where, "site"),
                        f"unknown site {hv.site!r} (the underlay's sites: {', '.join(names)})")
                continue
        elif "site" in keys:
            r.error(keys["site"], field_key(where, "site"), "a switched underlay (subnet:) has no sites")
            continue
        site = underlay.site(hv.site or SWITCHED_SITE)
        ip = _address_in(builder, keys["vtep"], field_key(where, "vtep"), site.subnet)
        if ip is None:
            continue
        if ip in used:
            r.error(keys["vtep"], field_key(where, "vtep"), f"underlay address {ip} is already used by {used[ip]}")
            continue
        used[ip] = f"hypervisor {hv.name!r}"
        hv = replace(hv, site=site.name, vtep=ipaddress.IPv4Interface((ip, site.subnet.prefixlen)))
        hypervisors[i] = hv
        placed.append(hv)
    return placed


def _vm_links(builder: _Builder, hypervisors: list[Hypervisor], links: list[Link], hosts: set[str]) -> None:
    """A hypervisor links to VMs (hosts) only, on ports below the tunnel ports."""
    r = builder.r
    kinds = {h.name: h for h in hypervisors}
    for link in links:
        ends = (link.src, link.dst)
        for end, other in (ends, ends[::-1]):
            if end.node not in kinds:
                continue
            if other.node not in hosts:
                r.error(link.line, "links", f"{end.node!r} is a hypervisor: it links to VMs (hosts) only; "
                                            "the underlay joins hypervisors")
                break
            if end.port is not None and end.port > MAX_VM_PORT:
                r.error(link.line, "links", f"port {end.port} of hypervisor {end.node!r}: VM ports are "
                                            f"1..{MAX_VM_PORT}, the tunnel ports are numbered above")


def _overlays(builder: _Builder, node: Node, hypervisors: list[Hypervisor]) -> list[Overlay]:
    r = builder.r
    items = r.sequence(node, "overlays") or []
    by_name = {h.name: h for h in hypervisors}
    declared = builder.hypervisor_keys
    overlays: list[Overlay] = []
    #: (hypervisor, hypervisor, type) -> the overlay that has that tunnel already
    pairs: dict[tuple[str, str, str], str] = {}
    #: (remote hypervisor, type) -> the ovs hypervisor that has a tunnel of that type to it
    ovs_remotes: dict[tuple[str, str], str] = {}
    for i, item in enumerate(items):
        where = field_index("overlays", i)
        keys = r.mapping(item, where, required=("name", "type"), optional=("hypervisors",))
        if keys is None:
            continue
        name = r.string(keys["name"], field_key(where, "name")) if "name" in keys else None
        if name is not None and any(o.name == name for o in overlays):
            r.error(keys["name"], field_key(where, "name"), f"duplicate overlay {name!r}")
            name = None
        kind = r.string(keys["type"], field_key(where, "type")) if "type" in keys else None
        if kind is not None and kind not in TUNNEL_OVERHEAD:
            r.error(keys["type"], field_key(where, "type"),
                    f"{kind!r} is not a tunnel type ({', '.join(TUNNEL_OVERHEAD)})")
            kind = None
        members: list[str] = []
        ok = bool(name and kind)
        if "hypervisors" in keys:
            entries = r.sequence(keys["hypervisors"], field_key(where, "hypervisors")) or []
            for j, entry in enumerate(entries):
                at = field_index(field_key(where, "hypervisors"), j)
                member = r.string(entry, at)
                if member is None:
                    ok = False
                elif member not in declared:
                    r.error(entry, at, f"unknown hypervisor {member!r}")
                    ok = False
                elif member in members:
                    r.error(entry, at, f"{member!r} is listed twice")
                    ok = False
                elif member not in by_name:
                    ok = False  # its own entry is invalid, reported there
                else:
                    members.append(member)
                    ok = _can_do(builder, by_name[member], kind, entry, at) and ok
        else:
            members = [h.name for h in hypervisors]
            for member in members:
                ok = _can_do(builder, by_name[member], kind, keys.get("type"), field_key(where, "type"),
                             " (overlays without hypervisors: take every hypervisor)") and ok
        if ok and len(members) < 2:
            r.error(item, where, "an overlay joins at least two hypervisors")
            ok = False
        if not ok:
            continue
        assert name is not None and kind is not None
        ordered = tuple(h.name for h in hypervisors if h.name in members)
        for a in ordered:
            for b in ordered:
                if a < b and (a, b, kind) in pairs:
                    r.error(item, where, f"{a} and {b} already share a {kind} tunnel "
                                         f"(overlay {pairs[(a, b, kind)]!r}): one tunnel port per remote and type")
                    ok = False
                pairs.setdefault((a, b, kind), name)
        # one ovs-vswitchd serves every ovs hypervisor: it tells tunnel ports apart by remote and
        # key only (a local_ip would, but then its marked routes fail), so two ovs hypervisors
        # cannot both have a tunnel of one type to the same remote
        for remote in ordered:
            users = [h for h in ordered if h != remote and by_name[h].kind == "ovs"]
            for h in users:
                first = ovs_remotes.setdefault((remote, kind), h)
                if first != h:
                    r.error(item, where, f"ovs hypervisors {first} and {h} would both have a {kind} tunnel to "
                                         f"{remote}: Open vSwitch (one for all of them) cannot tell such ports "
                                         "apart; give each remote one ovs peer per tunnel type")
                    ok = False
                    break
        if ok:
            overlays.append(Overlay(name, kind, ordered, line_of(item)))
    return overlays


def _can_do(builder: _Builder, hv: Hypervisor, kind: str | None, node, field: str, note: str = "") -> bool:
    if kind is None or kind in HYPERVISOR_KINDS[hv.kind]:
        return True
    builder.r.error(node, field, f"{kind}: a {hv.kind} hypervisor ({hv.name!r}) cannot terminate {kind} "
                                 f"tunnels (it does {', '.join(HYPERVISOR_KINDS[hv.kind])}){note}")
    return False
