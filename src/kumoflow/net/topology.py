"""Topology files: the schema, its validation, and the validated model.

(The user's reference, with examples: docs/emulator.md.)

A topology file is YAML::

    name: single                 # optional; default: the file name without .yaml
    controller: tcp:127.0.0.1:6653   # optional; one target or a list
    max_backoff: 1               # optional, seconds, default 1 (see below)
    offloads: false              # optional, default false (see below)
    hosts:
      - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24, gateway: 10.0.0.254}
    switches:
      - {name: s1, kind: ovs, dpid: 1, fail_mode: secure}
    links:
      - {src: h1, dst: s1, dst_port: 1}

``hosts``: each host is a network namespace with one interface, ``eth0``,
on its one link. ``mac`` (unicast) is required, and ``ip``: one address
with prefix length or a list of them, IPv4 and/or IPv6 (``ip`` may be left
out when ``slaac`` is true). ``gateway``, one address or a list with at
most one per family, each in one of the host's subnets of its family (an
IPv6 gateway may also be link-local), adds default routes. ``slaac: true``
makes eth0 accept router advertisements (addresses by SLAAC and the IPv6
default route from whoever sends them); without it eth0 ignores them.
``loopback``: extra addresses (one or a list) on ``lo``, e.g. prefixes a
router host owns and announces. ``run``: a command (a string, run by
``sh -c``, or a list: the program and its arguments) started in the host
once the network is up, stopped at ``down``. ``frr``: the host is an FRR
router: ``config`` (the integrated frr.conf text) or ``file`` (a path,
relative to the topology file), and ``daemons`` besides zebra (default
bgpd and staticd); see :mod:`kumoflow.net.services`. ``port`` names the
controller API's port (Neutron) the host is, by name or id: ``kumoflow up
--api URL`` binds it to the host's switch port (:mod:`kumoflow.net.binding`).

``switches``: ``kind`` is one of :func:`kumoflow.net.switches.kind_names`
(default ``ovs``). ``dpid`` is an integer or 16 hex digits (colons allowed);
by default the number in the switch's name (``s3`` -> 3), else the lowest
unused. ``fail_mode`` is ``secure`` (default: no forwarding without a
controller) or ``standalone`` (the switch acts as a learning switch while no
controller is connected). ``protocols`` defaults to ``[OpenFlow13]``.
``controller`` overrides the topology's controller for this switch (an
empty list or ``none`` means no controller). ``max_backoff`` overrides the
topology's for this switch. ``ports`` gives switch ports egress rates,
keyed by port number (a port of one of the switch's links)::

    ports:
      2:
        rate_kbps: 20000                # what the port sends at most, shared by its queues
        queues:                         # queue id (set_queue) -> rates, each optional
          1: {min_kbps: 15000, max_kbps: 20000}
          2: {max_kbps: 20000}

in kbit/s; a queue's ``min_kbps`` at most its ``max_kbps`` and the port's
``rate_kbps``, and the min rates add up to no more than ``rate_kbps``
(:func:`kumoflow.switch.qos.qos_problems`). A ``kumoflow`` switch
schedules them itself (``--port-rate`` / ``--queue``); an ``ovs`` switch
gets a ``linux-htb`` QoS row with a Queue row per queue (see
:mod:`kumoflow.net.ovs` for what its userspace datapath does with them).
What a kind cannot do is refused here, where
the file says it (:meth:`~kumoflow.net.switches.SwitchKind.protocol_problem`,
``controller_problem``): a ``kumoflow`` switch speaks ``OpenFlow13`` only and
reaches controllers over ``tcp:`` only.

``links``: veth pairs; ``src`` and ``dst`` name nodes, at least one of them a
switch. ``src_port``/``dst_port`` set the OpenFlow port number of a switch
end (1..65279); unset ends get the lowest free number on that switch.

``offloads``: when false (the default) checksum and segmentation offloads
are turned off on every veth. A userspace switch reads frames whose
checksums the kernel has not computed yet; forwarded as they are, TCP
segments arrive with bad checksums and TCP stalls, while ping still works.
Set true only if every switch is in the kernel.

``max_backoff``: the longest wait, in whole seconds (1..3600), between a
switch's attempts to reach a controller it lost or could not reach. Both
kinds back off exponentially up to it: Open vSwitch retries after 1 s, then
2, 4 ... seconds (the Controller row's ``max_backoff``, in ms; its own
default is 8 s), the kumoflow switch after 0.5 s, then 1, 2 ... seconds
(``kumoflow switch --max-backoff``; 8 s by default). With the emulator's
default of 1 s a switch is back within about a second of its controller
returning, e.g. after a controller restart; a switch whose controller stays
away retries once a second. Open vSwitch counts whole seconds, hence
integers. Open vSwitch 3.1.0 (Debian 12) applies the setting only to a
connection that is up when its bridge is reconfigured, which
``Network.wait_connected()`` does (see :mod:`kumoflow.net.ovs`); before its
first connection an Open vSwitch bridge backs off up to 8 s. The inactivity
probe is left at its default (Open vSwitch probes an idle channel after
5 s and drops it 5 s later; the kumoflow switch echoes after 5 s and drops
after 15 s); a controller that dies closes its connections at once, so it
does not matter for a restart.

Controller targets: ``tcp:IP[:PORT]``, ``ssl:IP[:PORT]`` (IPv6 as
``tcp:[::1]:6653``), or ``unix:PATH``; the default port is 6653.

Everything is checked before anything is created; a bad file raises
:class:`~kumoflow.net.errors.TopologyError` listing every problem as
``file:line: field: message``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from pathlib import Path

from yaml.nodes import MappingNode, Node, ScalarNode

from kumoflow.net.errors import Issue, TopologyError
from kumoflow.net.overlay import Hypervisor, Overlay, Underlay, read_hypervisors, read_overlays
from kumoflow.net.switches import get_kind, kind_names
from kumoflow.net.yamlnodes import Reader, field_index, field_key, line_of
from kumoflow.switch.qos import MAX_KBPS, MAX_QUEUE_ID, PortQos, QueueRates, qos_problems

TOPOLOGY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
#: node names have no '-', so generated names (prefix-node-port) stay unambiguous
NODE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
FAIL_MODES = ("secure", "standalone")
PROTOCOLS = ("OpenFlow10", "OpenFlow11", "OpenFlow12", "OpenFlow13", "OpenFlow14", "OpenFlow15")
DEFAULT_PROTOCOLS = ("OpenFlow13",)
DEFAULT_CONTROLLER_PORT = 6653
#: OVS accepts ofport_request 1..65279; OpenFlow reserves the ports above.
MAX_PORT = 65279
MAX_DPID = (1 << 64) - 1
#: seconds; see ``max_backoff`` in the module docstring
DEFAULT_MAX_BACKOFF = 1
MAX_BACKOFF_LIMIT = 3600

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


#: FRR daemons a host may run besides zebra (always started first); ``frr.daemons``
FRR_DAEMONS = (
    "bgpd", "staticd", "ospfd", "ospf6d", "ripd", "ripngd", "isisd", "bfdd",
    "pimd", "ldpd", "nhrpd", "eigrpd", "babeld", "pbrd", "fabricd", "vrrpd", "pathd",
)
#: bgpd for BGP, staticd for ``ip route`` lines (FRR 8 moved static routes out of zebra)
DEFAULT_FRR_DAEMONS = ("bgpd", "staticd")
#: top-level configuration lines and the daemon that takes them: vtysh drops
#: a line whose daemon is not running, silently, so the file check refuses it
FRR_LINE_DAEMONS = (
    (re.compile(r"^ip(v6)? route\s"), "staticd"),
    (re.compile(r"^router bgp(\s|$)"), "bgpd"),
    (re.compile(r"^router ospf(\s|$)"), "ospfd"),
    (re.compile(r"^router ospf6(\s|$)"), "ospf6d"),
    (re.compile(r"^router rip(\s|$)"), "ripd"),
    (re.compile(r"^router ripng(\s|$)"), "ripngd"),
    (re.compile(r"^router isis\s"), "isisd"),
    (re.compile(r"^router openfabric\s"), "fabricd"),
    (re.compile(r"^router eigrp\s"), "eigrpd"),
    (re.compile(r"^router babel(\s|$)"), "babeld"),
    (re.compile(r"^bfd(\s|$)"), "bfdd"),
)
IPV6_LINK_LOCAL = ipaddress.ip_network("fe80::/10")


@dataclass(frozen=True)
class FrrConfig:
    """An FRR router in a host: the integrated configuration (``frr.conf``
    text) and the daemons to run."""

    text: str
    #: zebra first, then the daemons asked for
    daemons: tuple[str, ...] = ("zebra", *DEFAULT_FRR_DAEMONS)
    #: where the text came from, for messages: the topology file (inline
    #: ``config:``) or the ``file:`` named
    source: str = "<string>"
    #: line in ``source`` of the text's first line (0: unknown)
    first_line: int = 0
    #: the topology's field that gave the text (``hosts[2].frr.config``), for messages
    field: str = "frr"


@dataclass(frozen=True)
class Host:
    name: str
    mac: str
    #: eth0's static addresses, in file order (``ip:``); empty only for a SLAAC-only host
    addresses: tuple[IPInterface, ...] = ()
    #: at most one per family: default routes through them
    gateways: tuple[IPAddress, ...] = ()
    line: int = 0
    #: the API port (name or id) this host is: bound to its switch port by ``up --api`` (net/binding.py)
    port: str | None = None
    #: accept router advertisements on eth0 (SLAAC addresses, default route)
    slaac: bool = False
    #: extra addresses on ``lo``
    loopback: tuple[IPInterface, ...] = ()
    #: a command started in the background once the network is up: a string
    #: for ``sh -c``, or an argv tuple
    run: str | tuple[str, ...] | None = None
    frr: FrrConfig | None = None

    @property
    def ip(self) -> IPInterface | None:
        """The first static address (None for a SLAAC-only host)."""
        return self.addresses[0] if self.addresses else None

    @property
    def gateway(self) -> IPAddress | None:
        """The first gateway (None if none)."""
        return self.gateways[0] if self.gateways else None


@dataclass(frozen=True)
class PortConfig:
    """A switch port's egress rates (``switches[i].ports.N``), kbit/s."""

    number: int
    #: what the port sends at most (None: its link's speed)
    rate_kbps: int | None = None
    #: queue id -> (min_kbps, max_kbps), each None when not given, in queue id order
    queues: tuple[tuple[int, int | None, int | None], ...] = ()
    line: int = 0
    #: the field that gave it, for messages
    field: str = ""

    def qos(self) -> PortQos:
        return PortQos(self.rate_kbps, {q: QueueRates(lo, hi) for q, lo, hi in self.queues})


@dataclass(frozen=True)
class Switch:
    name: str
    kind: str = "ovs"
    dpid: int = 1
    fail_mode: str = "secure"
    protocols: tuple[str, ...] = DEFAULT_PROTOCOLS
    #: None: use the topology's controllers
    controllers: tuple[str, ...] | None = None
    #: None: use the topology's max_backoff
    max_backoff: int | None = None
    line: int = 0
    #: egress rates of some of its ports, in port order
    ports: tuple[PortConfig, ...] = ()


@dataclass(frozen=True)
class Endpoint:
    node: str
    #: OpenFlow port number for a switch end (always set after loading), None for a host
    port: int | None = None


@dataclass(frozen=True)
class Link:
    src: Endpoint
    dst: Endpoint
    line: int = 0


@dataclass(frozen=True)
class Topology:
    name: str
    hosts: tuple[Host, ...] = ()
    switches: tuple[Switch, ...] = ()
    links: tuple[Link, ...] = ()
    controllers: tuple[str, ...] = ()
    #: seconds between reconnection attempts, at most (see the module docstring)
    max_backoff: int = DEFAULT_MAX_BACKOFF
    offloads: bool = False
    source: str = "<string>"
    #: hypervisors (kumoflow.net.overlay): the OpenFlow ones are in ``switches`` too
    hypervisors: tuple[Hypervisor, ...] = ()
    underlay: Underlay | None = None
    overlays: tuple[Overlay, ...] = ()

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(f"no host {name!r} in topology {self.name!r}")

    def switch(self, name: str) -> Switch:
        for switch in self.switches:
            if switch.name == name:
                return switch
        raise KeyError(f"no switch {name!r} in topology {self.name!r}")

    def is_host(self, name: str) -> bool:
        return any(h.name == name for h in self.hosts)

    def controllers_of(self, switch: Switch) -> tuple[str, ...]:
        return self.controllers if switch.controllers is None else switch.controllers

    def max_backoff_of(self, switch: Switch) -> int:
        return self.max_backoff if switch.max_backoff is None else switch.max_backoff

    def with_overrides(
        self,
        *,
        name: str | None = None,
        fail_mode: str | None = None,
        controllers: list[str] | tuple[str, ...] | None = None,
    ) -> Topology:
        """A copy with the topology name, every switch's fail mode, or every
        switch's controllers replaced (each argument optional)."""
        issues = []
        if name is not None and not TOPOLOGY_NAME.fullmatch(name):
            issues.append(f"name: {name!r} is not a valid topology name ({_NAME_RULE})")
        if fail_mode is not None and fail_mode not in FAIL_MODES:
            issues.append(f"fail_mode: {fail_mode!r} is not one of {', '.join(FAIL_MODES)}")
        targets = None
        if controllers is not None:
            targets = []
            for target in controllers:
                normal, problem = parse_controller(target)
                if problem:
                    issues.append(f"controller: {problem}")
                else:
                    targets.append(normal)
                    for refusal, names in controller_refusals(self.switches, normal).items():
                        issues.append(f"controller: {normal}: {refusal} (used by {_switches_named(names)})")
        if issues:
            raise TopologyError([Issue("override", 0, "", i) for i in issues])
        switches = self.switches
        if fail_mode is not None:
            switches = tuple(replace(s, fail_mode=fail_mode) for s in switches)
        if targets is not None:
            switches = tuple(replace(s, controllers=tuple(targets)) for s in switches)
        return replace(self, name=name or self.name, switches=switches)


_NAME_RULE = "letters, digits, '_' and '-', at most 32, starting with a letter or digit"
_NODE_RULE = "a letter, then letters, digits or '_', at most 32"


# -- entry points -----------------------------------------------------------


def load_topology(path: str | Path) -> Topology:
    """Read and validate a topology file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TopologyError([Issue(str(path), 0, "", f"cannot read: {exc}")]) from exc
    return parse_topology(text, filename=str(path), default_name=default_name(path))


def parse_topology(text: str, filename: str = "<string>", default_name: str = "topo") -> Topology:
    """Validate YAML ``text``; errors name ``filename``."""
    reader = Reader(filename)
    root = reader.parse(text)
    topology = _Builder(reader).build(root, default_name) if root is not None else None
    if reader.issues or topology is None:
        raise TopologyError(reader.issues)
    return replace(topology, source=filename)


def default_name(path: str | Path) -> str:
    """A topology name from a file name: ``my topo.yaml`` -> ``my-topo``."""
    stem = Path(path).name
    for suffix in (".yaml", ".yml"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-_")[:32]
    return name or "topo"


def parse_controller(text: str) -> tuple[str, str | None]:
    """(normalized target, None) or (text, problem) for an OVS-style target."""
    proto, sep, rest = text.partition(":")
    if not sep or proto not in ("tcp", "ssl", "unix"):
        return text, f"{text!r} is not tcp:IP[:PORT], ssl:IP[:PORT] or unix:PATH"
    if proto == "unix":
        return (text, None) if rest else (text, "unix: needs a socket path")
    match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", rest)
    if not match:
        return text, f"{text!r}: expected {proto}:IP[:PORT] (IPv6 in brackets)"
    host = match.group(1) or match.group(3)
    port_text = match.group(2) or match.group(4)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return text, f"{host!r} is not an IP address"
    port = int(port_text) if port_text else DEFAULT_CONTROLLER_PORT
    if not 1 <= port <= 65535:
        return text, f"port {port} is out of range 1..65535"
    shown = f"[{ip}]" if ip.version == 6 else str(ip)
    return f"{proto}:{shown}:{port}", None


def controller_refusals(switches: tuple[Switch, ...] | list[Switch], target: str) -> dict[str, list[str]]:
    """{why: [switch names]} for the switches whose kind cannot use
    controller ``target`` (see :meth:`SwitchKind.controller_problem`)."""
    refusals: dict[str, list[str]] = {}
    for switch in switches:
        problem = get_kind(switch.kind).controller_problem(target)
        if problem:
            refusals.setdefault(problem, []).append(switch.name)
    return refusals


def _switches_named(names: list[str]) -> str:
    quoted = ", ".join(repr(n) for n in names)
    return f"switch {quoted}" if len(names) == 1 else f"switches {quoted}"


# -- validation ---------------------------------------------------------------


class _Builder:
    def __init__(self, reader: Reader):
        self.r = reader
        #: node name -> (field, line) where first defined
        self.nodes: dict[str, tuple[str, int]] = {}
        #: dpid -> who has it, across switches and hypervisors
        self.dpids: dict[int, str] = {}
        #: hypervisor name -> (its entry's keys, its field), for checks made once the underlay is read
        self.hypervisor_keys: dict[str, tuple[dict[str, Node], str]] = {}

    def build(self, root: Node, default: str) -> Topology | None:
        r = self.r
        top = r.mapping(
            root, "",
            optional=("name", "controller", "max_backoff", "offloads", "hosts", "switches",
                      "underlay", "hypervisors", "overlays", "links")
        )
        if top is None:
            return None
        name = default
        if "name" in top:
            name = r.string(top["name"], "name") or default
            if not TOPOLOGY_NAME.fullmatch(name):
                r.error(top["name"], "name", f"{name!r} is not a valid topology name ({_NAME_RULE})")
        controllers: tuple[str, ...] = ()
        #: (target, node, field) of each topology-wide controller, for the switches that inherit it
        shared: list[tuple[str, Node, str]] = []
        if "controller" in top:
            shared = self.controller_items(top["controller"], "controller")
            controllers = tuple(target for target, _, _ in shared)
        max_backoff = DEFAULT_MAX_BACKOFF
        if "max_backoff" in top:
            max_backoff = r.integer(top["max_backoff"], "max_backoff", 1, MAX_BACKOFF_LIMIT) or max_backoff
        offloads = False
        if "offloads" in top:
            offloads = bool(r.boolean(top["offloads"], "offloads"))
        # in file order, so a duplicate name is reported where it comes second
        hosts: list[Host] = []
        entries: dict[str, list[tuple[Switch, Node | None]]] = {"switches": [], "hypervisors": []}
        hypervisors: list[Hypervisor] = []
        sections = ("hosts", "switches", "hypervisors")
        for key in sorted(sections, key=lambda k: line_of(top.get(k))):
            if key == "hosts":
                hosts = self.hosts(top.get("hosts"))
            elif key == "switches":
                entries["switches"] = self.switches(top.get("switches"))
            elif "hypervisors" in top:
                hypervisors, entries["hypervisors"] = read_hypervisors(self, top["hypervisors"])
        switches = self.default_dpids(entries["switches"] + entries["hypervisors"])
        # what each kind cannot use, reported where the controller is written
        inheriting = [s for s in switches if s.controllers is None]
        for target, node, where in shared:
            for refusal, names in controller_refusals(inheriting, target).items():
                r.error(node, where, f"{target}: {refusal} (used by {_switches_named(names)})")
        links = self.links(top.get("links"), {h.name: h for h in hosts},
                           [s.name for s in switches] + [h.name for h in hypervisors if h.kind == "kernel"])
        self.check_port_configs(switches, links)
        underlay, overlays = read_overlays(self, top, hypervisors, links, {h.name for h in hosts})
        return Topology(
            name=name,
            hosts=tuple(hosts),
            switches=tuple(switches),
            links=tuple(links),
            controllers=controllers,
            max_backoff=max_backoff,
            offloads=offloads,
            hypervisors=tuple(hypervisors),
            underlay=underlay,
            overlays=tuple(overlays),
        )

    # -- nodes ------------------------------------------------------------

    def node_name(self, node: Node, field: str) -> str | None:
        name = self.r.string(node, field)
        if name is None:
            return None
        if not NODE_NAME.fullmatch(name):
            self.r.error(node, field, f"{name!r} is not a valid node name ({_NODE_RULE})")
            return None
        if name in self.nodes:
            other, line = self.nodes[name]
            self.r.error(node, field, f"duplicate name {name!r} (also {other}, line {line})")
            return None
        self.nodes[name] = (field.rsplit(".", 1)[0], line_of(node))
        return name

    def hosts(self, node: Node | None) -> list[Host]:
        r = self.r
        items = r.sequence(node, "hosts") if node is not None else []
        hosts: list[Host] = []
        macs: dict[str, str] = {}
        #: address -> [(a host entry that has it, whether that host is an API port)]
        ips: dict[object, list[tuple[str, bool]]] = {}
        for i, item in enumerate(items or ()):
            where = field_index("hosts", i)
            keys = r.mapping(
                item, where, required=("name", "mac"),
                optional=("ip", "gateway", "slaac", "loopback", "run", "frr", "port"),
            )
            if keys is None:
                continue
            name = self.node_name(keys["name"], field_key(where, "name")) if "name" in keys else None
            mac = self.mac(keys["mac"], field_key(where, "mac"), macs) if "mac" in keys else None
            ok = bool(name and mac)
            slaac = False
            if "slaac" in keys:
                slaac = bool(r.boolean(keys["slaac"], field_key(where, "slaac")))
            addresses: list[IPInterface] = []
            bound = "port" in keys  # an API port: the API says which addresses may overlap
            if "ip" in keys:
                found = self.addresses(keys["ip"], field_key(where, "ip"), ips, bound)
                ok = ok and found is not None
                addresses = found or []
                if found == [] and not slaac:
                    r.error(keys["ip"], field_key(where, "ip"), "at least one address is needed (or slaac: true)")
                    ok = False
            elif not slaac:
                r.error(item, field_key(where, "ip"), "missing required field (an address, or slaac: true)")
                ok = False
            gateways: list[IPAddress] = []
            if "gateway" in keys and ok:
                found_gw = self.gateways(keys["gateway"], field_key(where, "gateway"), addresses, slaac)
                ok = found_gw is not None
                gateways = found_gw or []
            loopback: list[IPInterface] = []
            if "loopback" in keys:
                found = self.addresses(keys["loopback"], field_key(where, "loopback"), ips, bound)
                ok = ok and found is not None
                loopback = found or []
                if found:
                    ok = self.loopback_apart(keys["loopback"], field_key(where, "loopback"), found, addresses) and ok
            run = None
            if "run" in keys:
                run = self.command(keys["run"], field_key(where, "run"))
                ok = ok and run is not None
            frr = None
            if "frr" in keys:
                frr = self.frr(keys["frr"], field_key(where, "frr"))
                ok = ok and frr is not None
            port = None
            if "port" in keys:
                port = r.string(keys["port"], field_key(where, "port"))
                if port is not None and not port.strip():
                    r.error(keys["port"], field_key(where, "port"), "an API port's name or id, not empty")
                    port = None
            if ok and name and mac:
                hosts.append(Host(
                    name, mac, tuple(addresses), tuple(gateways), line_of(item), port,
                    slaac=slaac, loopback=tuple(loopback), run=run, frr=frr,
                ))
        return hosts

    def mac(self, node: Node, field: str, seen: dict[str, str]) -> str | None:
        text = self.r.string(node, field)
        if text is None:
            return None
        if not MAC.fullmatch(text):
            self.r.error(node, field, f"{text!r} is not a MAC address (six hex pairs: 00:00:00:00:00:01)")
            return None
        mac = text.lower()
        if int(mac[:2], 16) & 1:
            self.r.error(node, field, f"{text} is a multicast address; a host needs a unicast MAC")
            return None
        if mac == "00:00:00:00:00:00":
            self.r.error(node, field, "the all-zero MAC is not a valid host address")
            return None
        if mac in seen:
            self.r.error(node, field, f"MAC {mac} is already used by {seen[mac]}")
            return None
        seen[mac] = field.rsplit(".", 1)[0]
        return mac

    def one_or_many(self, node: Node, field: str) -> list[tuple[Node, str]] | None:
        """A field that takes one value or a list: (node, its field path) each; None if not a list."""
        if isinstance(node, ScalarNode) and not self.r.is_null(node):
            return [(node, field)]
        items = self.r.sequence(node, field)
        if items is None:
            return None
        return [(item, field_index(field, i)) for i, item in enumerate(items)]

    def addresses(
        self, node: Node, field: str, seen: dict[object, list[tuple[str, bool]]], bound: bool = False
    ) -> list[IPInterface] | None:
        """One address or a list of them (``ip:``, ``loopback:``); None if any
        is bad. ``bound``: the host is an API port (see :meth:`ip`)."""
        entries = self.one_or_many(node, field)
        if entries is None:
            return None
        result: list[IPInterface] = []
        ok = True
        for item, where in entries:
            ip = self.ip(item, where, seen, bound)
            if ip is None:
                ok = False
            else:
                result.append(ip)
        return result if ok else None

    def ip(
        self, node: Node, field: str, seen: dict[object, list[tuple[str, bool]]], bound: bool = False
    ) -> IPInterface | None:
        """An address with prefix length, unique in the file -- except between
        two hosts that are API ports (``port:``): tenants' networks may
        overlap, and the API keeps addresses unique where they must be."""
        text = self.r.string(node, field)
        if text is None:
            return None
        if "/" not in text:
            example = "2001:db8::1/64" if ":" in text else "10.0.0.1/24"
            self.r.error(node, field, f"{text!r} needs a prefix length, e.g. {example}")
            return None
        try:
            ip = ipaddress.ip_interface(text)
        except ValueError:
            self.r.error(node, field, f"{text!r} is not an IP address with prefix length")
            return None
        net = ip.network
        if ip.version == 4 and net.prefixlen < 31 and ip.ip in (net.network_address, net.broadcast_address):
            kind = "network" if ip.ip == net.network_address else "broadcast"
            self.r.error(node, field, f"{ip.ip} is the {kind} address of {net}")
            return None
        if ip.ip.is_multicast or ip.ip.is_unspecified or ip.ip.is_loopback:
            self.r.error(node, field, f"{ip.ip} cannot be a host address")
            return None
        if ip.version == 6 and ip.ip in IPV6_LINK_LOCAL:
            self.r.error(node, field, f"{ip.ip} is link-local: eth0 makes its own (fe80::/64 from the MAC)")
            return None
        owner = re.sub(r"\.(ip|loopback)(\[\d+\])?$", "", field)
        users = seen.setdefault(ip.ip, [])
        for other, other_bound in users:
            if other == owner or not (bound and other_bound):
                self.r.error(node, field, f"address {ip.ip} is already used by {other}")
                return None
        users.append((owner, bound))
        return ip

    def gateways(
        self, node: Node, field: str, addresses: list[IPInterface], slaac: bool
    ) -> list[IPAddress] | None:
        """One gateway or a list, at most one per family; None if any is bad."""
        entries = self.one_or_many(node, field)
        if entries is None:
            return None
        result: list[IPAddress] = []
        ok = True
        for item, where in entries:
            gateway = self.gateway(item, where, addresses, slaac)
            if gateway is None:
                ok = False
                continue
            other = next((g for g in result if g.version == gateway.version), None)
            if other is not None:
                self.r.error(item, where, f"a second IPv{gateway.version} gateway (the first is {other}): "
                                          "a host has one default route per family")
                ok = False
                continue
            result.append(gateway)
        return result if ok else None

    def gateway(
        self, node: Node, field: str, addresses: list[IPInterface], slaac: bool
    ) -> IPAddress | None:
        text = self.r.string(node, field)
        if text is None:
            return None
        try:
            gateway = ipaddress.ip_address(text)
        except ValueError:
            self.r.error(node, field, f"{text!r} is not an IP address")
            return None
        if gateway.version == 6 and slaac:
            self.r.error(node, field, f"{gateway}: with slaac: true the IPv6 default route comes from "
                                      "router advertisements; give no IPv6 gateway")
            return None
        subnets = [a.network for a in addresses if a.version == gateway.version]
        if gateway.version == 6 and gateway in IPV6_LINK_LOCAL:
            if gateway.is_multicast or gateway == IPV6_LINK_LOCAL.network_address:
                self.r.error(node, field, f"{gateway} cannot be a gateway")
                return None
            return gateway  # on eth0's link-local subnet, which every host has
        if not subnets:
            self.r.error(node, field, f"{gateway}: the host has no IPv{gateway.version} address")
            return None
        if not any(gateway in net for net in subnets):
            if len(subnets) == 1:
                self.r.error(node, field, f"{gateway} is not in the host's subnet {subnets[0]}")
            else:
                shown = ", ".join(str(n) for n in subnets)
                self.r.error(node, field, f"{gateway} is not in any of the host's IPv{gateway.version} subnets ({shown})")
            return None
        if any(gateway == a.ip for a in addresses):
            self.r.error(node, field, f"{gateway} is the host's own address")
            return None
        return gateway

    def loopback_apart(
        self, node: Node, field: str, loopback: list[IPInterface], addresses: list[IPInterface]
    ) -> bool:
        """Loopback prefixes must not overlap eth0's subnets (the host could not tell them apart)."""
        ok = True
        items = [node] if isinstance(node, ScalarNode) else list(node.value)
        paths = [field] if isinstance(node, ScalarNode) else [field_index(field, i) for i in range(len(items))]
        for ip, item, where in zip(loopback, items, paths, strict=True):
            for eth in addresses:
                if ip.version == eth.version and ip.network.overlaps(eth.network):
                    self.r.error(item, where, f"{ip} overlaps eth0's subnet {eth.network}")
                    ok = False
                    break
        return ok

    def command(self, node: Node, field: str) -> str | tuple[str, ...] | None:
        """``run:``: a string (for ``sh -c``) or a list of strings (an argv)."""
        r = self.r
        if isinstance(node, ScalarNode) and not r.is_null(node):
            text = r.string(node, field)
            if text is not None and not text.strip():
                r.error(node, field, "an empty command")
                return None
            return text
        items = r.sequence(node, field)
        if items is None:
            return None
        if not items:
            r.error(node, field, "an empty command (give a string for sh -c, or a list: the program and its arguments)")
            return None
        argv = []
        for i, item in enumerate(items):
            text = r.string(item, field_index(field, i))  # numbers as written: [iperf3, -p, 5201]
            if text is None:
                return None
            argv.append(text)
        if not argv[0].strip():
            r.error(items[0], field_index(field, 0), "the program's name is empty")
            return None
        return tuple(argv)

    def frr(self, node: Node, field: str) -> FrrConfig | None:
        """``frr: {config: TEXT | file: PATH, daemons: [...]}``."""
        r = self.r
        if not isinstance(node, MappingNode):
            r.error(node, field, "expected a mapping: config: (the frr.conf text) or file: (a path to it), "
                                 "and optionally daemons:")
            return None
        keys = r.mapping(node, field, optional=("config", "file", "daemons"))
        if keys is None:
            return None
        daemons = ["zebra", *DEFAULT_FRR_DAEMONS]
        ok = True
        if "daemons" in keys:
            daemons = ["zebra"]
            items = r.sequence(keys["daemons"], field_key(field, "daemons"))
            if items is None:
                ok = False
            for i, item in enumerate(items or ()):
                where = field_index(field_key(field, "daemons"), i)
                text = r.string(item, where)
                if text is None:
                    ok = False
                elif text == "zebra":
                    continue  # always there
                elif text not in FRR_DAEMONS:
                    r.error(item, where, f"{text!r} is not an FRR daemon (zebra always runs; "
                                         f"others: {', '.join(FRR_DAEMONS)})")
                    ok = False
                elif text not in daemons:
                    daemons.append(text)
        if ("config" in keys) == ("file" in keys):
            r.error(node, field, "give the configuration once: config: (frr.conf text) or file: (a path to it)")
            return None
        if "config" in keys:
            text = r.string(keys["config"], field_key(field, "config"))
            if text is None:
                return None
            config = keys["config"]
            # a block scalar (| or >) starts on the line after its indicator
            first = line_of(config) + (1 if getattr(config, "style", None) in ("|", ">") else 0)
            frr = FrrConfig(text, tuple(daemons), self.r.filename, first, field_key(field, "config"))
        else:
            name = r.string(keys["file"], field_key(field, "file"))
            if name is None:
                return None
            base = Path(self.r.filename).parent if self.r.filename != "<string>" else Path.cwd()
            path = (base / name) if not Path(name).is_absolute() else Path(name)
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                r.error(keys["file"], field_key(field, "file"), f"cannot read {str(path)!r}: {reason}")
                return None
            frr = FrrConfig(text, tuple(daemons), str(path), 1, field_key(field, "file"))
        if not frr.text.strip():
            r.error(node, field, "the FRR configuration is empty")
            return None
        for number, line in enumerate(frr.text.splitlines(), 1):
            for pattern, daemon in FRR_LINE_DAEMONS:
                if pattern.match(line) and daemon not in frr.daemons:
                    where = frr.first_line + number - 1 if frr.first_line else line_of(node)
                    self.r.issues.append(Issue(frr.source, where, frr.field,
                                               f"line {number} ({line.strip()!r}) needs {daemon}, "
                                               f"which is not in {field}.daemons"))
                    ok = False
        return frr if ok else None

    # -- switches ---------------------------------------------------------

    #: the fields of a switch entry besides ``name`` and ``kind``
    SWITCH_FIELDS = ("dpid", "fail_mode", "protocols", "controller", "max_backoff")

    def switches(self, node: Node | None) -> list[tuple[Switch, Node | None]]:
        """The ``switches:`` entries, each with its ``dpid`` node (None: default
        dpid, given by :meth:`default_dpids` once hypervisors are read too)."""
        r = self.r
        items = r.sequence(node, "switches") if node is not None else []
        found: list[tuple[Switch, Node | None]] = []
        for i, item in enumerate(items or ()):
            where = field_index("switches", i)
            keys = r.mapping(item, where, required=("name",), optional=("kind", *self.SWITCH_FIELDS, "ports"))
            if keys is None:
                continue
            name = self.node_name(keys["name"], field_key(where, "name")) if "name" in keys else None
            kind = "ovs"
            if "kind" in keys:
                text = r.string(keys["kind"], field_key(where, "kind"))
                if text is not None and text not in kind_names():
                    r.error(keys["kind"], field_key(where, "kind"),
                            f"unknown switch kind {text!r} (known: {', '.join(kind_names())})")
                elif text is not None:
                    kind = text
            switch = self.switch_fields(Switch(name or "", kind=kind, line=line_of(item)), keys, where)
            if "ports" in keys:
                switch = replace(switch, ports=self.port_configs(keys["ports"], field_key(where, "ports")))
            if name:
                found.append((switch, keys.get("dpid")))
        return found

    def numbered(self, node: Node, field: str, low: int, high: int) -> list[tuple[int, Node, str]]:
        """The entries of a mapping keyed by numbers ``low..high`` (port
        numbers, queue ids): (number, value node, its field), in file order."""
        r = self.r
        if r.is_null(node):
            return []
        if not isinstance(node, MappingNode):
            r.error(node, field, f"expected a mapping of numbers {low}..{high} to settings, got "
                                 f"{'a list' if not isinstance(node, ScalarNode) else repr(node.value)}")
            return []
        seen: dict[int, int] = {}
        result = []
        for key, value in node.value:
            where = field_key(field, key.value if isinstance(key, ScalarNode) else "?")
            number = r.integer(key, where, low, high)
            if number is None:
                continue
            if number in seen:
                r.error(key, where, f"{number} is given twice (first on line {seen[number]})")
                continue
            seen[number] = line_of(key)
            result.append((number, value, where))
        return result

    def port_configs(self, node: Node, field: str) -> tuple[PortConfig, ...]:
        """A switch's ``ports:`` (see the module docstring)."""
        r = self.r
        configs = []
        for number, value, where in self.numbered(node, field, 1, MAX_PORT):
            keys = r.mapping(value, where, optional=("rate_kbps", "queues"))
            if keys is None:
                continue
            rate = None
            if "rate_kbps" in keys:
                rate = r.integer(keys["rate_kbps"], field_key(where, "rate_kbps"), 1, MAX_KBPS)
            queues = []
            #: (queue id or None, "rate" / "min" / "max") -> (node, field) for qos_problems' messages
            places: dict[tuple[int | None, str], tuple[Node, str]] = {
                (None, "rate"): (keys.get("rate_kbps", value), field_key(where, "rate_kbps")),
                (None, "min"): (keys.get("queues", value), field_key(where, "queues"))}
            ok = rate is not None or "rate_kbps" not in keys
            items = []
            if "queues" in keys:
                items = self.numbered(keys["queues"], field_key(where, "queues"), 0, MAX_QUEUE_ID)
            for qid, qnode, qwhere in items:
                qkeys = r.mapping(qnode, qwhere, optional=("min_kbps", "max_kbps"))
                if qkeys is None:
                    ok = False
                    continue
                rates = {}
                for name, low in (("min_kbps", 0), ("max_kbps", 1)):
                    if name in qkeys:
                        rates[name] = r.integer(qkeys[name], field_key(qwhere, name), low, MAX_KBPS)
                        ok = ok and rates[name] is not None
                        places[(qid, name[:3])] = (qkeys[name], field_key(qwhere, name))
                queues.append((qid, rates.get("min_kbps"), rates.get("max_kbps")))
            config = PortConfig(number, rate, tuple(sorted(queues)), line_of(value), where)
            if ok:
                for qid, what, why in qos_problems(config.qos()):
                    at, place = places.get((qid, what), places[(None, "min")])
                    r.error(at, place, why)
            configs.append(config)
        return tuple(sorted(configs, key=lambda c: c.number))

    def switch_fields(self, switch: Switch, keys: dict[str, Node], where: str) -> Switch:
        """``switch`` with the switch fields of an entry (:data:`SWITCH_FIELDS`)
        applied; a given ``dpid`` is checked for uniqueness here."""
        r = self.r
        if "fail_mode" in keys:
            mode = r.string(keys["fail_mode"], field_key(where, "fail_mode"))
            if mode is not None and mode not in FAIL_MODES:
                r.error(keys["fail_mode"], field_key(where, "fail_mode"),
                        f"{mode!r} is not one of {', '.join(FAIL_MODES)}")
            elif mode is not None:
                switch = replace(switch, fail_mode=mode)
        if "protocols" in keys:
            protocols = self.protocols(keys["protocols"], field_key(where, "protocols"), switch.kind)
            switch = replace(switch, protocols=protocols)
        if "controller" in keys:
            items = self.controller_items(keys["controller"], field_key(where, "controller"))
            for target, item, item_field in items:
                problem = get_kind(switch.kind).controller_problem(target)
                if problem:
                    r.error(item, item_field, f"{target}: {problem}")
            switch = replace(switch, controllers=tuple(target for target, _, _ in items))
        if "max_backoff" in keys:
            backoff = r.integer(keys["max_backoff"], field_key(where, "max_backoff"), 1, MAX_BACKOFF_LIMIT)
            if backoff is not None:
                switch = replace(switch, max_backoff=backoff)
        dpid_node = keys.get("dpid")
        if dpid_node is not None:
            dpid = self.dpid(dpid_node, field_key(where, "dpid"))
            if dpid is not None:
                if dpid in self.dpids:
                    r.error(dpid_node, field_key(where, "dpid"), f"dpid {dpid:#x} is already used by {self.dpids[dpid]}")
                else:
                    self.dpids[dpid] = f"switch {switch.name!r}"
                    switch = replace(switch, dpid=dpid)
        return switch

    def check_port_configs(self, switches: list[Switch], links: list[Link]) -> None:
        """Every port given rates in ``ports:`` is the end of one of the switch's links."""
        ends = {(end.node, end.port) for link in links for end in (link.src, link.dst)}
        for switch in switches:
            for config in switch.ports:
                if (switch.name, config.number) not in ends:
                    self.r.error(config.line, config.field,
                                 f"switch {switch.name!r} has no port {config.number} (no link ends there)")

    def default_dpids(self, found: list[tuple[Switch, Node | None]]) -> list[Switch]:
        """Default dpids for the entries without one: the number in the name
        when free (first pass), else the lowest free number (second pass)."""
        dpids = self.dpids
        chosen: dict[int, int] = {}
        for i, (switch, dpid_node) in enumerate(found):
            if dpid_node is None:
                digits = re.findall(r"\d+", switch.name)
                dpid = int(digits[-1]) if digits else 0
                if 1 <= dpid <= MAX_DPID and dpid not in dpids:
                    dpids[dpid] = f"switch {switch.name!r}"
                    chosen[i] = dpid
        result = []
        for i, (switch, dpid_node) in enumerate(found):
            if dpid_node is None:
                dpid = chosen.get(i, 0)
                if not dpid:
                    dpid = 1
                    while dpid in dpids:
                        dpid += 1
                    dpids[dpid] = f"switch {switch.name!r}"
                switch = replace(switch, dpid=dpid)
            result.append(switch)
        return result

    def dpid(self, node: Node, field: str) -> int | None:
        r = self.r
        if r.is_int(node):
            return r.integer(node, field, 1, MAX_DPID)
        text = r.string(node, field)
        if text is None:
            return None
        digits = text.replace(":", "")
        if not re.fullmatch(r"[0-9A-Fa-f]{16}", digits):
            r.error(node, field, f"{text!r} is not a datapath id (an integer or 16 hex digits)")
            return None
        value = int(digits, 16)
        if value == 0:
            r.error(node, field, "the datapath id must not be zero")
            return None
        return value

    def protocols(self, node: Node, field: str, kind: str) -> tuple[str, ...]:
        r = self.r
        if isinstance(node, ScalarNode) and not r.is_null(node):
            items, paths = [node], [field]
        else:
            items = r.sequence(node, field)
            if items is None:
                return DEFAULT_PROTOCOLS
            paths = [field_index(field, i) for i in range(len(items))]
        if not items:
            r.error(node, field, "at least one protocol is needed")
        result: list[str] = []
        for item, where in zip(items, paths, strict=True):
            text = r.string(item, where)
            if text is None:
                continue
            if text not in PROTOCOLS:
                r.error(item, where, f"{text!r} is not one of {', '.join(PROTOCOLS)}")
            elif problem := get_kind(kind).protocol_problem(text):
                r.error(item, where, f"{text}: {problem}")
            elif text not in result:
                result.append(text)
        return tuple(result) or DEFAULT_PROTOCOLS

    def controller_items(self, node: Node, field: str) -> list[tuple[str, Node, str]]:
        """The valid targets of a ``controller:`` value, each with its node and field."""
        r = self.r
        if r.is_null(node):
            return []
        if isinstance(node, ScalarNode):
            if node.value == "none":
                return []
            items, paths = [node], [field]
        else:
            items = r.sequence(node, field) or []
            paths = [field_index(field, i) for i in range(len(items))]
        result: list[tuple[str, Node, str]] = []
        for item, where in zip(items, paths, strict=True):
            text = r.string(item, where)
            if text is None:
                continue
            target, problem = parse_controller(text)
            if problem:
                r.error(item, where, problem)
            elif any(target == seen for seen, _, _ in result):
                r.error(item, where, f"controller {target} is listed twice")
            else:
                result.append((target, item, where))
        return result

    # -- links ------------------------------------------------------------

    def links(self, node: Node | None, hosts: dict[str, Host], switch_names: list[str]) -> list[Link]:
        """``links:``; ``switch_names``: the nodes with numbered ports (switches and hypervisors)."""
        r = self.r
        items = r.sequence(node, "links") if node is not None else []
        #: (switch, port) -> field of the link using it
        used: dict[tuple[str, int], str] = {}
        host_link: dict[str, str] = {}
        mentioned: set[str] = set()
        parsed: list[tuple[list[Endpoint], int]] = []
        for i, item in enumerate(items or ()):
            where = field_index("links", i)
            keys = r.mapping(item, where, required=("src", "dst"), optional=("src_port", "dst_port"))
            if keys is None:
                continue
            ends: list[Endpoint] = []
            ok = True
            for side in ("src", "dst"):
                if side not in keys:
                    ok = False
                    continue
                name_field = field_key(where, side)
                port_field = field_key(where, f"{side}_port")
                name = r.string(keys[side], name_field)
                if name is None:
                    ok = False
                    continue
                mentioned.add(name)
                if name not in hosts and name not in switch_names:
                    if name in self.nodes:  # defined, but its entry was invalid
                        ok = False
                        continue
                    r.error(keys[side], name_field, f"unknown node {name!r}")
                    ok = False
                    continue
                port = None
                if f"{side}_port" in keys:
                    port_node = keys[f"{side}_port"]
                    if name in hosts:
                        r.error(port_node, port_field,
                                f"{name!r} is a host; ports are numbered only on switch ends")
                        ok = False
                        continue
                    port = r.integer(port_node, port_field, 1, MAX_PORT)
                    if port is None:
                        ok = False
                        continue
                    if (name, port) in used:
                        r.error(port_node, port_field,
                                f"port {port} of {name!r} is already used by {used[(name, port)]}")
                        ok = False
                        continue
                    used[(name, port)] = where
                if name in hosts:
                    if name in host_link:
                        r.error(keys[side], name_field,
                                f"host {name!r} already has a link ({host_link[name]}); hosts have one interface")
                        ok = False
                        continue
                    host_link[name] = where
                ends.append(Endpoint(name, port))
            if not ok or len(ends) != 2:
                continue
            if ends[0].node == ends[1].node:
                r.error(item, where, f"a link cannot connect {ends[0].node!r} to itself")
                continue
            if ends[0].node in hosts and ends[1].node in hosts:
                r.error(item, where, "a link needs at least one switch end (host to host is not supported)")
                continue
            parsed.append((ends, line_of(item)))
        for name, host in hosts.items():
            if name not in mentioned:
                r.error(host.line, field_key(self.nodes[name][0], "name"), f"host {name!r} has no link")
        # unnumbered switch ends get the lowest free port, in link order
        links = []
        for ends, line in parsed:
            numbered = []
            for end in ends:
                if end.node in switch_names and end.port is None:
                    port = 1
                    while (end.node, port) in used:
                        port += 1
                    used[(end.node, port)] = "auto"
                    end = replace(end, port=port)
                numbered.append(end)
            links.append(Link(numbered[0], numbered[1], line))
        return links
