"""`kumoflow apply FILE.yaml`: Neutron resources declared in YAML, made so
through a running controller's API (docs/api.md has the reference).

    name: demo                      # optional: the set's name (default: the file name)
    project: blue                   # optional: the project (admin token only; default: the token's,
                                    # "admin" for the admin token)
    qos_policies:
      - name: gold
        rules:
          - {type: bandwidth_limit, max_kbps: 10000}
          - {type: dscp_marking, dscp_mark: 46}
    address_groups:
      - {name: office, addresses: [203.0.113.0/28, "2001:db8:1::/48"]}
      - {name: partners, file: partners.txt}      # one CIDR a line, # comments; relative to this file
    security_groups:
      - name: web
        rules:
          - {direction: egress}
          - {direction: ingress, protocol: tcp, port_range_min: 80, port_range_max: 80}
          - {direction: ingress, remote_group: web}
          - {direction: ingress, protocol: tcp, port_range_min: 22, port_range_max: 22, remote_address_group: office}
    networks:
      - {name: blue, provider:network_type: vxlan, qos_policy: gold}
    subnets:
      - {name: blue-v4, network: blue, cidr: 10.0.0.0/24, dns_nameservers: [10.0.0.53]}
    routers:
      - {name: r1, interfaces: [blue-v4]}
    ports:
      - name: vm1
        network: blue
        fixed_ips: [{subnet: blue-v4, ip_address: 10.0.0.10}]
        security_groups: [web]
        user_groups: [staff]
        binding:host_id: s1
        binding:profile: {port_no: 3}
    firewall_rules:
      - {name: partners-web, protocol: tcp, destination_port: 443, source_address_group: partners, action: allow}
      - {name: no-admin, protocol: tcp, destination_port: 80, http_path: /admin, action: reject, log: true}
      - {name: staff, source_user_group: staff, action: allow}
    firewall_policies:
      - {name: in, rules: [no-admin, partners-web, staff]}   # in this order
    firewall_groups:
      - {name: vms, ingress_policy: in, egress_policy: null, ports: [vm1]}
    floatingips:
      - {network: public, port: vm1}            # an address of the external network public, to vm1
      - {network: public, floating_ip_address: 203.0.113.10}   # admin token only
    loadbalancers:                              # Octavia's, under /v2/lbaas
      - name: web
        vip_subnet: blue-v4                     # or vip_network; vip_address: 10.0.0.100
        listeners:
          - {name: http, protocol: HTTP, protocol_port: 80, default_pool: www}
        pools:
          - name: www
            protocol: HTTP
            lb_algorithm: ROUND_ROBIN
            session_persistence: {type: SOURCE_IP}
            members:                            # known by address and protocol_port
              - {address: 10.0.0.10, protocol_port: 8080, weight: 2}
            healthmonitor: {type: HTTP, delay: 5, timeout: 3, max_retries: 3, url_path: /health}

Resources are known by name; references name other resources (``network``,
``subnet``, ``qos_policy``, ``security_groups``, ``remote_group``,
``interfaces``, ``external_gateway``, ``vip_subnet``, ``vip_network``, a
member's ``subnet``, ``remote_address_group``, a firewall rule's
``source_address_group`` and ``destination_address_group``, a policy's
``rules``, a firewall group's ``ingress_policy``, ``egress_policy`` and
``ports``): one declared in the file, or else one the token can see (e.g.
the admin's shared ``public`` network). Declarations may come in any order:
what is referred to is made first. A load balancer's
listeners and pools are known by name within it (a listener's
``default_pool`` names one of its pools), a pool's members by address and
``protocol_port``; a pool has at most one ``healthmonitor``.

Idempotent: each run creates what is missing, updates what differs (only
the attributes the file gives), and deletes what it created before and the
file no longer declares. Floating IPs have no name: one is known by its
``floating_ip_address`` when the file gives it, else by its ``port`` (and
``fixed_ip_address``), on its ``network``; it is associated once the
routers' interfaces are there, and goes before ports, routers and networks
are deleted. What it created carries the tag
``kumoflow-apply:NAME``; nothing else is ever deleted or changed, except
through a reference. A security group's or QoS policy's ``rules``, when
given, are exactly its rules (Neutron's automatic egress rules included:
list ``{direction: egress}`` and ``{direction: egress, ethertype: IPv6}`` to
keep them); a router's ``interfaces`` are exactly its interfaces. An address
group's ``addresses`` (or its ``file``'s) are exactly its addresses, a
firewall policy's ``rules`` exactly its rules in that order, a firewall
group's ``ports`` exactly its ports; what a firewall rule matches is exactly
what the file gives (left out: any; ``ip_version`` 4). A port the file moves
from one firewall group to another leaves the first before the other takes it.
Attributes fixed at creation (a network's type and segmentation id, a
subnet's network and CIDR, a port's network) cannot change: the message says
to rename the resource (a new one is made, the old one deleted); the
same for a load balancer's VIP, a listener's protocol and port, a pool's
protocol and a member's subnet. A load balancer's ``listeners`` and
``pools`` and a pool's ``members``, when given, are exactly those; a
health monitor of another type replaces the pool's.

The file is checked before anything is sent: errors are ``file:line:
field: message``, every one of them; what the API refuses is reported at
the line of the resource that asked for it.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kumoflow.api.options import DEFAULT_TOKEN_FILE, DEFAULT_URL
from kumoflow.apps import addresses as addrs
from kumoflow.net.errors import Issue, TopologyError
from kumoflow.net.yamlnodes import Reader, field_index, field_key, line_of

SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TAG_PREFIX = "kumoflow-apply:"


class ApplyError(Exception):
    """Something to tell the user (no traceback), with the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# --- the file's schema ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A reference by name, resolved to an id when applying."""
    kind: str
    name: str
    line: int
    field: str


@dataclass(frozen=True)
class ListOf:
    item: Any


@dataclass(frozen=True)
class Obj:
    required: tuple[str, ...]
    fields: dict[str, Any]


@dataclass(frozen=True)
class RefTo:
    kind: str
    nullable: bool = False                          # null: none (a firewall group's policy)


@dataclass(frozen=True)
class Children:
    """Declarations inside another's (NESTED): a load balancer's listeners and pools, a pool's
    members (lists), a pool's health monitor (one)."""
    kind: str
    many: bool = True


STR, INT, BOOL, IP, CIDR, MAC, ANY_IP, VERSION = "str", "int", "bool", "ip", "cidr", "mac", "ip-or-cidr", "version"
#: an address set's entry (kumoflow.apps.addresses: an address alone is its /32 or /128), a firewall rule's
#: protocol and port range and a user-group tag, each in the form the API stores
ADDRESS, PROTOCOL, PORTS, USER_GROUP = "address", "protocol", "ports", "user-group"

POOL = Obj(("start", "end"), {"start": IP, "end": IP})
ROUTE = Obj(("destination", "nexthop"), {"destination": CIDR, "nexthop": IP})
FIXED_IP = Obj((), {"subnet": RefTo("subnets"), "ip_address": IP})
PAIR = Obj(("ip_address",), {"ip_address": ANY_IP, "mac_address": MAC})
PROFILE = Obj((), {"interface": STR, "port_no": INT})
SG_RULE = Obj(("direction",), {"direction": STR, "ethertype": STR, "protocol": STR, "port_range_min": INT,
                               "port_range_max": INT, "remote_ip_prefix": CIDR, "remote_group": RefTo("security_groups"),
                               "remote_address_group": RefTo("address_groups"), "description": STR})
QOS_RULE = Obj(("type",), {"type": STR, "max_kbps": INT, "max_burst_kbps": INT, "direction": STR, "dscp_mark": INT,
                           "min_kbps": INT})
COMMON = {"name": STR, "description": STR, "tags": ListOf(STR)}
PERSISTENCE = Obj(("type",), {"type": STR, "cookie_name": STR, "persistence_timeout": INT,
                              "persistence_granularity": STR})

#: per kind (in creation order): its attributes in the file
SCHEMA: dict[str, dict[str, Any]] = {
    "qos_policies": {**COMMON, "shared": BOOL, "is_default": BOOL, "rules": ListOf(QOS_RULE)},
    "address_groups": {**COMMON, "addresses": ListOf(ADDRESS), "file": STR},
    "security_groups": {**COMMON, "stateful": BOOL, "rules": ListOf(SG_RULE)},
    "networks": {**COMMON, "admin_state_up": BOOL, "shared": BOOL, "mtu": INT, "router:external": BOOL,
                 "provider:network_type": STR, "provider:segmentation_id": INT, "provider:physical_network": STR,
                 "port_security_enabled": BOOL, "qos_policy": RefTo("qos_policies")},
    "subnets": {**COMMON, "network": RefTo("networks"), "cidr": CIDR, "ip_version": INT, "gateway_ip": IP,
                "allocation_pools": ListOf(POOL), "enable_dhcp": BOOL, "dns_nameservers": ListOf(IP),
                "host_routes": ListOf(ROUTE), "ipv6_ra_mode": STR, "ipv6_address_mode": STR},
    "routers": {**COMMON, "admin_state_up": BOOL, "external_gateway": RefTo("networks"), "enable_snat": BOOL,
                "routes": ListOf(ROUTE), "interfaces": ListOf(RefTo("subnets"))},
    "ports": {**COMMON, "network": RefTo("networks"), "admin_state_up": BOOL, "mac_address": MAC,
              "fixed_ips": ListOf(FIXED_IP), "device_id": STR, "device_owner": STR,
              "security_groups": ListOf(RefTo("security_groups")), "port_security_enabled": BOOL,
              "allowed_address_pairs": ListOf(PAIR), "binding:host_id": STR, "binding:profile": PROFILE,
              "binding:vnic_type": STR, "qos_policy": RefTo("qos_policies"), "user_groups": ListOf(USER_GROUP)},
    "firewall_rules": {**COMMON, "protocol": PROTOCOL, "ip_version": INT, "source_ip_address": ADDRESS,
                       "destination_ip_address": ADDRESS, "source_address_group": RefTo("address_groups"),
                       "destination_address_group": RefTo("address_groups"), "source_user_group": USER_GROUP,
                       "destination_user_group": USER_GROUP, "source_port": PORTS, "destination_port": PORTS,
                       "http_host": STR, "http_path": STR, "action": STR, "enabled": BOOL, "log": BOOL,
                       "shared": BOOL},
    "firewall_policies": {**COMMON, "rules": ListOf(RefTo("firewall_rules")), "shared": BOOL},
    "firewall_groups": {**COMMON, "ingress_policy": RefTo("firewall_policies", nullable=True),
                        "egress_policy": RefTo("firewall_policies", nullable=True), "ports": ListOf(RefTo("ports")),
                        "admin_state_up": BOOL, "shared": BOOL},
    "floatingips": {"network": RefTo("networks"), "port": RefTo("ports"), "fixed_ip_address": IP,
                    "floating_ip_address": IP, "description": STR, "tags": ListOf(STR)},
    "loadbalancers": {**COMMON, "vip_subnet": RefTo("subnets"), "vip_network": RefTo("networks"), "vip_address": IP,
                      "admin_state_up": BOOL, "listeners": Children("listeners"), "pools": Children("pools")},
}
#: the declarations inside a load balancer's
NESTED: dict[str, dict[str, Any]] = {
    "listeners": {**COMMON, "protocol": STR, "protocol_port": INT, "default_pool": STR, "connection_limit": INT,
                  "timeout_client_data": INT, "timeout_member_connect": INT, "timeout_member_data": INT,
                  "admin_state_up": BOOL},
    "pools": {**COMMON, "protocol": STR, "lb_algorithm": STR, "session_persistence": PERSISTENCE,
              "admin_state_up": BOOL, "members": Children("members"),
              "healthmonitor": Children("healthmonitor", many=False)},
    "members": {"name": STR, "address": IP, "protocol_port": INT, "weight": INT, "subnet": RefTo("subnets"),
                "admin_state_up": BOOL, "backup": BOOL, "monitor_address": IP, "monitor_port": INT,
                "tags": ListOf(STR)},
    "healthmonitor": {"name": STR, "type": STR, "delay": INT, "timeout": INT, "max_retries": INT,
                      "max_retries_down": INT, "http_method": STR, "url_path": STR, "expected_codes": STR,
                      "http_version": VERSION, "domain_name": STR, "admin_state_up": BOOL, "tags": ListOf(STR)},
}
REQUIRED = {"subnets": ("network", "cidr"), "ports": ("network",), "floatingips": ("network",),
            "listeners": ("protocol", "protocol_port"), "pools": ("protocol", "lb_algorithm"),
            "healthmonitor": ("type", "delay", "timeout", "max_retries")}
#: how a declaration is known (by name unless said here): a member by its address and port
IDENTITY = {"members": ("address", "protocol_port"), "healthmonitor": ()}
#: the API's collection path and its singular and plural keys, per kind
API = {"qos_policies": ("/v2.0/qos/policies", "policy", "policies"),
       "address_groups": ("/v2.0/address-groups", "address_group", "address_groups"),
       "security_groups": ("/v2.0/security-groups", "security_group", "security_groups"),
       "networks": ("/v2.0/networks", "network", "networks"),
       "subnets": ("/v2.0/subnets", "subnet", "subnets"),
       "routers": ("/v2.0/routers", "router", "routers"),
       "ports": ("/v2.0/ports", "port", "ports"),
       "firewall_rules": ("/v2.0/fwaas/firewall_rules", "firewall_rule", "firewall_rules"),
       "firewall_policies": ("/v2.0/fwaas/firewall_policies", "firewall_policy", "firewall_policies"),
       "firewall_groups": ("/v2.0/fwaas/firewall_groups", "firewall_group", "firewall_groups"),
       "loadbalancers": ("/v2/lbaas/loadbalancers", "loadbalancer", "loadbalancers")}
LBAAS = "/v2/lbaas"
#: floating IPs have no name: applied by Applier.apply_floatingip, not with the kinds of API
FLOATINGIPS = ("/v2.0/floatingips", "floatingip", "floatingips")
#: attributes set at creation only
FIXED = {"networks": ("provider:network_type", "provider:segmentation_id", "provider:physical_network"),
         "subnets": ("network", "cidr", "ip_version", "ipv6_ra_mode", "ipv6_address_mode"),
         "ports": ("network",), "loadbalancers": ("vip_subnet", "vip_network", "vip_address"),
         "listeners": ("protocol", "protocol_port"), "pools": ("protocol",), "members": ("subnet",)}
#: a reference's key in the file -> the id's attribute in the API (a list of references: the ids'; the same
#: key when not here)
REF_KEYS = {"network": "network_id", "qos_policy": "qos_policy_id", "vip_subnet": "vip_subnet_id",
            "vip_network": "vip_network_id", "subnet": "subnet_id", "source_address_group": "source_address_group_id",
            "destination_address_group": "destination_address_group_id", "rules": "firewall_rules",
            "ingress_policy": "ingress_firewall_policy_id", "egress_policy": "egress_firewall_policy_id"}
SINGULAR = {"qos_policies": "QoS policy", "security_groups": "security group", "networks": "network",
            "subnets": "subnet", "routers": "router", "ports": "port", "floatingips": "floating IP",
            "loadbalancers": "load balancer", "listeners": "listener", "pools": "pool", "members": "member",
            "healthmonitor": "health monitor", "address_groups": "address group", "firewall_rules": "firewall rule",
            "firewall_policies": "firewall policy", "firewall_groups": "firewall group"}
#: what a firewall rule matches: exactly what the file gives (left out: any; ip_version 4)
FW_MATCH = ("protocol", "source_ip_address", "destination_ip_address", "source_address_group_id",
            "destination_address_group_id", "source_user_group", "destination_user_group", "source_port",
            "destination_port", "http_host", "http_path")
#: a firewall rule's protocol, as the API stores it: these aliases, else tcp, udp, icmp, icmpv6 or a number
FW_PROTOCOLS = {"6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6", "ipv6-icmp": "icmpv6", "any": None}
SIDES = ("source", "destination")


@dataclass
class Decl:
    kind: str
    name: str
    line: int
    where: str                                   # its field path, e.g. networks[2]
    attrs: dict[str, Any]
    lines: dict[str, int] = field(default_factory=dict)


@dataclass
class Plan:
    name: str
    project: str | None
    decls: dict[str, list[Decl]]
    file: str

    @property
    def tag(self) -> str:
        return TAG_PREFIX + self.name


def load(path: str | Path) -> Plan:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TopologyError([Issue(str(path), 0, "", f"cannot read: {exc}")]) from exc
    return parse(text, str(path), _default_name(path))


def _default_name(path: Path) -> str:
    stem = path.name
    for suffix in (".yaml", ".yml"):
        stem = stem.removesuffix(suffix)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-_.")[:64] or "apply"


def parse(text: str, filename: str = "<string>", default_name: str = "apply") -> Plan:
    r = Reader(filename)
    root = r.parse(text)
    plan = None
    if root is not None:
        top = r.mapping(root, "", optional=("name", "project", *SCHEMA))
        if top is not None:
            name = r.string(top["name"], "name") if "name" in top else default_name
            if name is not None and not SET_NAME.match(name):
                r.error(top["name"], "name", "letters, digits, '_', '.', '-' (up to 64), starting with a letter "
                                             "or digit")
            project = r.string(top["project"], "project") if "project" in top else None
            if project is not None and not SET_NAME.match(project):
                r.error(top["project"], "project", "not a project id")
            decls = {kind: _read_kind(r, top.get(kind), kind) for kind in SCHEMA}
            _check_refs(r, decls)
            plan = Plan(name or default_name, project, decls, filename)
    if r.issues or plan is None:
        raise TopologyError(r.issues)
    return plan


def _read_kind(r: Reader, node: Any, kind: str, field: str | None = None) -> list[Decl]:
    """The declarations of a kind (a top-level one, or NESTED at `field`), each known once."""
    if node is None:
        return []
    if kind == "floatingips":
        return _read_floatingips(r, node)
    field = field or kind
    out: list[Decl] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(r.sequence(node, field) or []):
        decl = _read_item(r, item, field_index(field, i), kind)
        if decl is None:
            continue
        if decl.name in seen:
            named = IDENTITY.get(kind, ("name",)) == ("name",)
            r.error(decl.lines["name"] if named else item, field_key(decl.where, "name") if named else decl.where,
                    f"{SINGULAR[kind]} {decl.name!r} is declared twice (first on line {seen[decl.name]})")
            continue
        seen[decl.name] = decl.line
        out.append(decl)
    return out


def _read_item(r: Reader, item: Any, where: str, kind: str) -> Decl | None:
    """One declaration; its name is its name, or what IDENTITY says it is known by."""
    schema = SCHEMA.get(kind) or NESTED[kind]
    identity = IDENTITY.get(kind, ("name",))
    required = (*identity, *REQUIRED.get(kind, ()))
    keys = r.mapping(item, where, required=required, optional=[k for k in schema if k not in required])
    if keys is None:
        return None
    attrs, lines = {}, {}
    for key, value_node in keys.items():
        value = _value(r, value_node, field_key(where, key), schema[key])
        if value is not _BAD:
            attrs[key] = value
            lines[key] = line_of(value_node)
    if any(key not in attrs for key in identity):
        return None                                    # reported
    if identity == ("name",):
        name = attrs.pop("name")
        if not name:
            r.error(keys["name"], field_key(where, "name"), "must not be empty")
            return None
    elif identity:
        host = attrs["address"] if ":" not in attrs["address"] else f"[{attrs['address']}]"
        name = f"{host}:{attrs['protocol_port']}"
    else:
        name = attrs["type"]
    _check_decl(r, kind, attrs, keys, where)
    return Decl(kind, name, line_of(item), where, attrs, lines)


def _read_floatingips(r: Reader, node: Any) -> list[Decl]:
    """Floating IPs: no name; each is known by its floating_ip_address, else by its port (and
    fixed_ip_address), which the file gives once. Its Decl's name is that key, as words."""
    kind = "floatingips"
    out: list[Decl] = []
    seen: dict[tuple, int] = {}
    for i, item in enumerate(r.sequence(node, kind) or []):
        where = field_index(kind, i)
        keys = r.mapping(item, where, required=REQUIRED[kind],
                         optional=[k for k in SCHEMA[kind] if k not in REQUIRED[kind]])
        if keys is None:
            continue
        attrs, lines = {}, {}
        for key, value_node in keys.items():
            value = _value(r, value_node, field_key(where, key), SCHEMA[kind][key])
            if value is not _BAD:
                attrs[key] = value
                lines[key] = line_of(value_node)
        if "fixed_ip_address" in keys and "port" not in keys:
            r.error(keys["fixed_ip_address"], field_key(where, "fixed_ip_address"), "needs port")
        if "network" not in attrs:
            continue                                   # reported
        if "floating_ip_address" in attrs:
            key, name = ("address", attrs["floating_ip_address"]), attrs["floating_ip_address"]
        elif "port" in attrs:
            fixed = attrs.get("fixed_ip_address")
            key = ("port", attrs["port"].name, fixed)
            name = f"of port {attrs['port'].name}" + (f" ({fixed})" if fixed else "")
        else:
            if "floating_ip_address" not in keys and "port" not in keys:
                r.error(item, where, "a floating IP is known by its floating_ip_address or its port: give one")
            continue
        if key in seen:
            r.error(item, where, f"floating IP {name} is declared twice (first on line {seen[key]})")
            continue
        seen[key] = line_of(item)
        out.append(Decl(kind, name, line_of(item), where, attrs, lines))
    return out


_BAD = object()


def _value(r: Reader, node: Any, where: str, t: Any) -> Any:
    if isinstance(t, ListOf):
        items = r.sequence(node, where)
        if items is None:
            return _BAD
        values = [_value(r, item, field_index(where, i), t.item) for i, item in enumerate(items)]
        return _BAD if any(v is _BAD for v in values) else values
    if isinstance(t, Obj):
        keys = r.mapping(node, where, required=t.required, optional=[k for k in t.fields if k not in t.required])
        if keys is None:
            return _BAD
        out = {}
        for key, value_node in keys.items():
            value = _value(r, value_node, field_key(where, key), t.fields[key])
            if value is _BAD:
                return _BAD
            out[key] = value
        return out
    if isinstance(t, RefTo):
        if t.nullable and r.is_null(node):
            return None
        name = r.string(node, where)
        return _BAD if name is None else Ref(t.kind, name, line_of(node), where)
    if isinstance(t, Children):
        found = _read_kind(r, node, t.kind, where) if t.many else _read_item(r, node, where, t.kind)
        return _BAD if found is None else found
    if t == INT:
        value = r.integer(node, where)
    elif t == BOOL:
        value = r.boolean(node, where)
    elif t == IP and r.is_null(node):
        return None                               # gateway_ip: null
    else:
        value = r.string(node, where)
    if value is None:
        return _BAD
    try:
        if t == IP:
            return str(ipaddress.ip_address(value))
        if t == CIDR:
            return str(ipaddress.ip_network(value, strict=where.endswith("remote_ip_prefix") is False))
        if t == ANY_IP:
            return str(ipaddress.ip_network(value, strict=False)) if "/" in value else str(
                ipaddress.ip_address(value))
        if t == MAC:
            if not re.match(r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$", value):
                raise ValueError(f"{value!r} is not a MAC address")
            return value.lower().replace("-", ":")
        if t == VERSION:
            if value not in ("1.0", "1.1"):
                raise ValueError(f"{value!r}: 1.0 or 1.1")
            return float(value)
        if t == ADDRESS:
            return str(addrs.parse(value))
        if t == PROTOCOL:
            text = value.lower()
            if text in FW_PROTOCOLS or text in ("tcp", "udp", "icmp", "icmpv6"):
                return FW_PROTOCOLS.get(text, text)
            if not (text.isascii() and text.isdigit() and int(text) <= 255):
                raise ValueError(f"{value!r}: tcp, udp, icmp, icmpv6, any, or a protocol number 0..255")
            return str(int(text))
        if t == PORTS:
            match = re.match(r"^([0-9]{1,5})(?::([0-9]{1,5}))?$", value)
            low, high = (int(match[1]), int(match[2] or match[1])) if match else (0, 0)
            if not 1 <= low <= high <= 65535:
                raise ValueError(f"{value!r}: a port 1..65535, or a range N:M with N <= M")
            return str(low) if low == high else f"{low}:{high}"
        if t == USER_GROUP and not re.match(r"^[A-Za-z0-9_.-]{1,64}$", value):
            raise ValueError(f"{value!r}: a user group is letters, digits, '_', '.', '-' (up to 64)")
    except ValueError as exc:
        r.error(node, where, str(exc))
        return _BAD
    return value


def _check_decl(r: Reader, kind: str, attrs: dict, keys: dict, where: str) -> None:
    if kind == "networks" and attrs.get("provider:network_type") not in (None, "vxlan", "nvgre", "vlan", "flat"):
        r.error(keys["provider:network_type"], field_key(where, "provider:network_type"),
                "one of vxlan, nvgre, vlan, flat")
    if kind == "routers" and "enable_snat" in attrs and "external_gateway" not in attrs:
        r.error(keys["enable_snat"], field_key(where, "enable_snat"), "needs external_gateway")
    if kind == "loadbalancers":
        if "vip_subnet" not in keys and "vip_network" not in keys:
            r.error(keys.get("name"), where, "a load balancer needs vip_subnet or vip_network (its VIP's)")
        pools = {p.name for p in attrs.get("pools", [])}
        for listener in attrs.get("listeners", []):
            pool = listener.attrs.get("default_pool")
            if pool is not None and "pools" in attrs and pool not in pools:
                r.error(listener.lines["default_pool"], field_key(listener.where, "default_pool"),
                        f"no pool named {pool!r} among the load balancer's pools")
    if kind == "qos_policies":
        for i, rule in enumerate(attrs.get("rules", [])):
            if rule["type"] not in ("bandwidth_limit", "dscp_marking", "minimum_bandwidth"):
                r.error(keys["rules"], field_key(field_index(field_key(where, "rules"), i), "type"),
                        "one of bandwidth_limit, dscp_marking, minimum_bandwidth")
    if kind == "security_groups":
        for i, rule in enumerate(attrs.get("rules", [])):
            remotes = [k for k in ("remote_ip_prefix", "remote_group", "remote_address_group") if k in rule]
            if len(remotes) > 1:
                r.error(keys["rules"], field_index(field_key(where, "rules"), i),
                        f"give one of remote_ip_prefix, remote_group and remote_address_group, not "
                        f"{' and '.join(remotes)}")
    if kind == "address_groups" and "file" in keys:
        _read_addresses(r, attrs, keys, where)
    if kind == "firewall_rules":
        _check_firewall_rule(r, attrs, keys, where)
    if kind in ("firewall_policies", "firewall_groups"):
        seen: set[str] = set()
        for ref in attrs.get("rules" if kind == "firewall_policies" else "ports", []):
            if ref.name in seen:
                r.error(ref.line, ref.field, f"{SINGULAR[ref.kind]} {ref.name!r} is listed twice")
            seen.add(ref.name)


def _read_addresses(r: Reader, attrs: dict, keys: dict, where: str) -> None:
    """An address group's `file`: one entry a line, ``#`` comments (as $KUMOFLOW_COUNTRIES's files),
    relative to the YAML file; read into its ``addresses``, every bad line reported."""
    if "addresses" in keys:
        r.error(keys["file"], field_key(where, "file"), "give addresses or file, not both")
        return
    if "file" not in attrs:
        return                                          # reported
    path = Path(r.filename).parent / attrs["file"]
    try:
        attrs["addresses"] = list(dict.fromkeys(map(str, addrs.load_file(path))))
    except OSError as exc:
        r.error(keys["file"], field_key(where, "file"), f"cannot read {path}: {exc.strerror or exc}")
    except addrs.AddressError as exc:
        for problem in exc.problems:
            r.error(keys["file"], field_key(where, "file"), problem)


def _check_firewall_rule(r: Reader, attrs: dict, keys: dict, where: str) -> None:
    """What the API would refuse of a firewall rule; its action in the API's (lower) case."""
    def bad(key: str, message: str) -> None:
        r.error(keys[key], field_key(where, key), message)

    version, protocol = attrs.get("ip_version", 4), attrs.get("protocol")
    if version not in (4, 6):
        bad("ip_version", "4 or 6")
    if protocol == "icmpv6" and version == 4:
        bad("protocol", "icmpv6 in an IPv4 rule (ip_version 4)")
    if "action" in attrs:
        attrs["action"] = attrs["action"].lower()
        if attrs["action"] not in ("allow", "deny", "reject"):
            bad("action", "one of allow, deny, reject")
    for side in SIDES:
        ends = [f"{side}_{k}" for k in ("ip_address", "address_group", "user_group") if f"{side}_{k}" in keys]
        if len(ends) > 1:
            bad(ends[1], f"give one of {side}_ip_address, {side}_address_group and {side}_user_group, not "
                         f"{' and '.join(ends)}")
        address = attrs.get(f"{side}_ip_address")
        if address is not None and version in (4, 6) and ipaddress.ip_network(address).version != version:
            bad(f"{side}_ip_address", f"an IPv{6 if version == 4 else 4} address in an IPv{version} rule "
                                      f"(ip_version)")
        if f"{side}_port" in keys and protocol not in ("tcp", "udp"):
            bad(f"{side}_port", "a port needs protocol tcp or udp")
    for key in ("http_host", "http_path"):
        if key in keys and protocol != "tcp":
            bad(key, "needs protocol tcp")


def _check_refs(r: Reader, decls: dict[str, list[Decl]]) -> None:
    """A reference to a kind the file declares nothing of may name an existing resource: checked
    when applying. Here: a subnet named in fixed_ips must be on the port's network, when both are
    declared in the file; a port is in one firewall group."""
    in_group: dict[str, Decl] = {}
    for group in decls["firewall_groups"]:
        reported: set[str] = set()                        # (a port twice in the group: said once)
        for ref in group.attrs.get("ports", []):
            other = in_group.setdefault(ref.name, group)
            if other is not group and ref.name not in reported:
                reported.add(ref.name)
                r.error(ref.line, ref.field, f"port {ref.name!r} is in firewall group {other.name!r} too (line "
                                             f"{other.line}): a port is in one group at most")
    subnets = {d.name: d for d in decls["subnets"]}
    for port in decls["ports"]:
        network = port.attrs.get("network")
        for ip in port.attrs.get("fixed_ips", []):
            ref = ip.get("subnet")
            if ref is not None and ref.name in subnets and network is not None and \
                    subnets[ref.name].attrs["network"].name != network.name:
                r.error(ref.line, ref.field, f"subnet {ref.name!r} is on network "
                                             f"{subnets[ref.name].attrs['network'].name!r}, not on {network.name!r}")


# --- talking to the API ---------------------------------------------------------------------------


class Client:
    def __init__(self, url: str, token: str, client: Any = None) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.http = client or httpx.Client(base_url=self.url, timeout=60.0)
        self.headers = {"X-Auth-Token": token}

    def call(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        import httpx

        try:
            response = self.http.request(method, path, json=body, params=params, headers=self.headers)
        except httpx.HTTPError as exc:
            raise ApplyError(f"cannot reach the kumoflow API at {self.url}: {exc} (is `kumoflow controller "
                             f"--api ...` running? --api URL says where)") from None
        if response.status_code >= 400:
            try:
                body = response.json()
                if "faultstring" in body:                     # Octavia's shape (/v2/lbaas)
                    message = body["faultstring"]
                else:
                    error = body["NeutronError"]
                    message = f"{error['type']}: {error['message']}"
            except (ValueError, KeyError, TypeError):
                message = response.text.strip()[:200] or response.reason_phrase
            raise ApiRefused(response.status_code, message)
        return response.json() if response.content else None


class ApiRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --- applying -------------------------------------------------------------------------------------


class Applier:
    def __init__(self, plan: Plan, api: Client) -> None:
        self.plan = plan
        self.api = api
        self.ids: dict[tuple[str, str], str] = {}           # (kind, name) -> id, of this run
        self.current: dict[str, dict[str, dict]] = {}        # kind -> name -> resource (ours, tagged)
        self.actions: list[str] = []
        self.project: str | None = plan.project

    def at(self, decl: Decl, what: str = "") -> str:
        line = decl.lines.get(what, decl.line)
        return f"{self.plan.file}:{line}: {decl.where}" + (f".{what}" if what else "")

    def fail(self, where: str, message: str) -> ApplyError:
        return ApplyError(f"{where}: {message}")

    def call(self, decl: Decl, method: str, path: str, body: Any = None, what: str = "") -> Any:
        try:
            return self.api.call(method, path, body)
        except ApiRefused as exc:
            raise self.fail(self.at(decl, what), f"the API refused {method} {path}: {exc}") from None

    # reading what there is

    def load_current(self) -> None:
        if self.project is None:
            try:                                  # the admin token: its own resources are in project "admin"
                self.api.call("GET", "/v2.0/tokens")
                self.project = "admin"
            except ApiRefused:
                pass                              # a project token sees its own project only
        for kind, (path, _, plural) in API.items():
            params = {"tags": self.plan.tag}
            if self.project:
                params["project_id"] = self.project
            try:
                found = self.api.call("GET", path, params=params)[plural]
            except ApiRefused as exc:
                raise ApplyError(f"{self.plan.file}: listing {kind}: {exc}") from None
            if self.project is None and found:
                self.project = found[0]["project_id"]
            self.current[kind] = {}
            for item in found:
                self.current[kind].setdefault(item["name"], item)
        path, _, plural = FLOATINGIPS
        params = {"tags": self.plan.tag, **({"project_id": self.project} if self.project else {})}
        try:
            self.fips: list[dict] = self.api.call("GET", path, params=params)[plural]
        except ApiRefused as exc:
            raise ApplyError(f"{self.plan.file}: listing floatingips: {exc}") from None
        self.fip_of: dict[str, dict] = {}                     # Decl.where -> its floating IP

    def resolve(self, ref: Ref, decl: Decl) -> str:
        key = (ref.kind, ref.name)
        if key in self.ids:
            return self.ids[key]
        if ref.name in self.current.get(ref.kind, {}):
            return self.current[ref.kind][ref.name]["id"]
        if any(d.name == ref.name for d in self.plan.decls[ref.kind]):
            raise self.fail(f"{self.plan.file}:{ref.line}: {ref.field}", f"{SINGULAR[ref.kind]} {ref.name!r} is "
                                                                          f"declared but was not made")
        path, _, plural = API[ref.kind]
        found = self.api.call("GET", path, params={"name": ref.name})[plural]
        if self.project is not None and len(found) > 1:
            found = [f for f in found if f["project_id"] == self.project] or found
        if not found:
            raise self.fail(f"{self.plan.file}:{ref.line}: {ref.field}",
                            f"no {SINGULAR[ref.kind]} named {ref.name!r} (in the file or visible to the token)")
        if len(found) > 1:
            raise self.fail(f"{self.plan.file}:{ref.line}: {ref.field}",
                            f"{len(found)} {ref.kind} are named {ref.name!r}; rename one")
        self.ids[key] = found[0]["id"]
        return found[0]["id"]

    # the body the API takes, from the file's attributes

    def body(self, decl: Decl, creating: bool) -> dict:
        out: dict[str, Any] = {}
        a = decl.attrs
        schema = SCHEMA[decl.kind]
        for key, value in a.items():
            if key in ("interfaces", "external_gateway", "enable_snat", "tags", "listeners", "pools", "file") or \
                    key == "rules" and decl.kind != "firewall_policies":
                continue
            if isinstance(schema[key], RefTo):
                out[REF_KEYS[key]] = None if value is None else self.resolve(value, decl)
            elif isinstance(schema[key], ListOf) and isinstance(schema[key].item, RefTo):
                out[REF_KEYS.get(key, key)] = [self.resolve(ref, decl) for ref in value]
            elif key == "fixed_ips":
                out["fixed_ips"] = [{**({"subnet_id": self.resolve(ip["subnet"], decl)} if "subnet" in ip else {}),
                                     **({"ip_address": ip["ip_address"]} if "ip_address" in ip else {})}
                                    for ip in value]
            else:
                out[key] = value
        if "external_gateway" in a:
            out["external_gateway_info"] = {"network_id": self.resolve(a["external_gateway"], decl),
                                            **({"enable_snat": a["enable_snat"]} if "enable_snat" in a else {})}
        if creating or "tags" in a:
            out["tags"] = sorted(set(a.get("tags", [])) | {self.plan.tag})
        if creating and self.plan.project:
            out["project_id"] = self.plan.project
        if decl.kind == "routers" and creating:
            out.pop("routes", None)                  # set once the interfaces are there
        if decl.kind == "firewall_rules":            # its match is exactly the file's
            out = {**dict.fromkeys(FW_MATCH), "ip_version": 4, **out}
        return out

    def keep_fixed(self, decl: Decl, have: dict, want: dict) -> None:
        """Out of `want`: what is fixed at creation (FIXED), which must not differ from `have`."""
        for key in FIXED.get(decl.kind, ()):
            api_key = REF_KEYS.get(key, key)
            if api_key in want and want[api_key] != have.get(api_key):
                raise self.fail(self.at(decl, key), f"cannot change once the {SINGULAR[decl.kind]} exists "
                                                    f"({have.get(api_key)!r} -> {want[api_key]!r}); give it "
                                                    f"another name to have a new one made and this one deleted")
            want.pop(api_key, None)

    def differences(self, decl: Decl, have: dict, want: dict) -> dict:
        """The attributes of `want` whose value differs from `have` (compared as the API shows them)."""
        changed = {}
        for key, value in want.items():
            if key == "project_id":
                continue
            current = have.get(key)
            if key == "fixed_ips":
                if _fixed_ips_differ(current or [], value):
                    changed[key] = value
            elif key == "external_gateway_info":
                current = current or {}
                if current.get("network_id") != value["network_id"] or (
                        "enable_snat" in value and current.get("enable_snat") != value["enable_snat"]):
                    changed[key] = value
            elif key in ("security_groups", "tags", "user_groups", "ports"):         # sets
                if set(current or []) != set(value):
                    changed[key] = value
            elif key == "binding:profile":
                if (current or {}) != value:
                    changed[key] = value
            elif key == "session_persistence":                # the API shows every key, null when not given
                if {k: v for k, v in (current or {}).items() if v is not None} != value:
                    changed[key] = value
            elif current != value:
                changed[key] = value
        return changed

    # the run

    def run(self) -> list[str]:
        self.load_current()
        self.routes_first()
        self.floatingips_first()
        self.delete_gone(("firewall_groups", "loadbalancers", "ports", "routers", "subnets", "networks"))
        self.group_ports_first()
        for kind in API:
            for decl in self.plan.decls[kind]:
                self.apply_one(decl)
        for decl in self.plan.decls["security_groups"]:
            self.apply_group_rules(decl)
        for decl in self.plan.decls["routers"]:
            self.apply_router_extras(decl)
        for decl in self.plan.decls["floatingips"]:
            self.apply_floatingip(decl)
        for decl in self.plan.decls["loadbalancers"]:
            self.apply_balancer(decl)
        self.delete_gone(("firewall_policies", "firewall_rules", "security_groups", "address_groups", "qos_policies"))
        return self.actions

    def apply_one(self, decl: Decl) -> None:
        path, single, _ = API[decl.kind]
        have = self.current[decl.kind].get(decl.name)
        label = f"{SINGULAR[decl.kind]} {decl.name}"
        if have is None:
            body = {"name": decl.name, **self.body(decl, creating=True)}
            made = self.call(decl, "POST", path, {single: body})[single]
            self.ids[(decl.kind, decl.name)] = made["id"]
            self.current[decl.kind][decl.name] = made
            self.actions.append(f"created {label}")
            have = made
            if decl.kind == "qos_policies":
                self.apply_qos_rules(decl, have, created=True)
            return
        self.ids[(decl.kind, decl.name)] = have["id"]
        want = self.body(decl, creating=False)
        self.keep_fixed(decl, have, want)
        if decl.kind == "routers":
            want.pop("routes", None)                 # after the interfaces
        addresses = want.pop("addresses", None)      # an address group's: not by PUT
        changed = self.differences(decl, have, want)
        if changed:
            updated = self.call(decl, "PUT", f"{path}/{have['id']}", {single: changed})[single]
            self.current[decl.kind][decl.name] = updated
            self.actions.append(f"updated {label}: {', '.join(sorted(changed))}")
        if decl.kind == "qos_policies":
            self.apply_qos_rules(decl, self.current[decl.kind][decl.name], created=False)
        if addresses is not None:
            self.apply_addresses(decl, self.current[decl.kind][decl.name], addresses)

    def apply_addresses(self, decl: Decl, group: dict, addresses: list[str]) -> None:
        """An address group's addresses made the file's (as a set)."""
        want, have = set(addresses), set(group["addresses"])
        gone = [a for a in group["addresses"] if a not in want]
        new = [a for a in dict.fromkeys(addresses) if a not in have]
        base = f"{API['address_groups'][0]}/{group['id']}"
        what = "file" if "file" in decl.attrs else "addresses"
        for path, items in ((f"{base}/remove_addresses", gone), (f"{base}/add_addresses", new)):
            if items:
                self.call(decl, "PUT", path, {"addresses": items}, what=what)
        if gone or new:
            self.actions.append(f"updated address group {decl.name}: addresses ({len(new)} added, {len(gone)} "
                                f"removed)")

    def apply_qos_rules(self, decl: Decl, policy: dict, created: bool) -> None:
        if "rules" not in decl.attrs:
            return
        base = f"/v2.0/qos/policies/{policy['id']}"
        have = {(r["type"], r.get("direction")): r for r in (policy.get("rules") or [])}
        want = {}
        for rule in decl.attrs["rules"]:
            values = {k: v for k, v in rule.items() if k != "type"}
            if rule["type"] != "dscp_marking":
                values.setdefault("direction", "egress")
            want[(rule["type"], values.get("direction"))] = values
        label = f"QoS policy {decl.name}"
        for key, rule in have.items():
            if key not in want:
                self.call(decl, "DELETE", f"{base}/{key[0]}_rules/{rule['id']}", what="rules")
                self.actions.append(f"updated {label}: deleted its {key[0]} rule")
        for key, values in want.items():
            type = key[0]
            if key not in have:
                self.call(decl, "POST", f"{base}/{type}_rules", {f"{type}_rule": values}, what="rules")
                self.actions.append(f"updated {label}: added a {type} rule")
                continue
            current = have[key]
            changed = {k: v for k, v in values.items() if current.get(k) != v}
            if changed:
                self.call(decl, "PUT", f"{base}/{type}_rules/{current['id']}", {f"{type}_rule": changed},
                          what="rules")
                self.actions.append(f"updated {label}: its {type} rule ({', '.join(sorted(changed))})")

    def apply_group_rules(self, decl: Decl) -> None:
        if "rules" not in decl.attrs:
            return
        group = self.current["security_groups"][decl.name]
        fresh = self.api.call("GET", f"/v2.0/security-groups/{group['id']}")["security_group"]
        keys = ("direction", "ethertype", "protocol", "port_range_min", "port_range_max", "remote_ip_prefix",
                "remote_group_id", "remote_address_group_id")
        have = {tuple(r.get(k) for k in keys): r for r in fresh["security_group_rules"]}
        want = {}
        for rule in decl.attrs["rules"]:
            body = {k: v for k, v in rule.items() if k not in ("remote_group", "remote_address_group")}
            body.setdefault("ethertype", "IPv4")
            for key in ("remote_group", "remote_address_group"):
                if key in rule:
                    body[f"{key}_id"] = self.resolve(rule[key], decl)
            protocol = body.get("protocol")
            body["protocol"] = None if protocol in (None, "any") else str(protocol).lower()
            want[tuple(body.get(k) for k in keys)] = body
        label = f"security group {decl.name}"
        for key, rule in have.items():
            if key not in want:
                self.call(decl, "DELETE", f"/v2.0/security-group-rules/{rule['id']}", what="rules")
                self.actions.append(f"updated {label}: deleted rule {_rule_text(rule)}")
        for key, body in want.items():
            if key in have:
                if "description" in body and have[key].get("description") != body["description"]:
                    self.call(decl, "PUT", f"/v2.0/security-group-rules/{have[key]['id']}",
                              {"security_group_rule": {"description": body["description"]}}, what="rules")
                    self.actions.append(f"updated {label}: rule {_rule_text(body)} description")
                continue
            made = {k: v for k, v in body.items() if v is not None}
            self.call(decl, "POST", "/v2.0/security-group-rules",
                      {"security_group_rule": {"security_group_id": group["id"], **made}}, what="rules")
            self.actions.append(f"updated {label}: added rule {_rule_text(body)}")

    def apply_router_extras(self, decl: Decl) -> None:
        router = self.current["routers"][decl.name]
        base = f"/v2.0/routers/{router['id']}"
        label = f"router {decl.name}"
        if "interfaces" in decl.attrs:
            want = {self.resolve(ref, decl): ref.name for ref in decl.attrs["interfaces"]}
            ports = self.api.call("GET", "/v2.0/ports", params={"device_id": router["id"],
                                                               "device_owner": "network:router_interface"})["ports"]
            have = {ip["subnet_id"]: p for p in ports for ip in p["fixed_ips"]}
            for subnet_id in have:
                if subnet_id not in want:
                    self.call(decl, "PUT", f"{base}/remove_router_interface", {"subnet_id": subnet_id},
                              what="interfaces")
                    self.actions.append(f"updated {label}: removed the interface on subnet {subnet_id}")
            for subnet_id, name in want.items():
                if subnet_id not in have:
                    self.call(decl, "PUT", f"{base}/add_router_interface", {"subnet_id": subnet_id},
                              what="interfaces")
                    self.actions.append(f"updated {label}: added an interface on subnet {name}")
        if "routes" in decl.attrs:
            current = self.api.call("GET", base)["router"]
            if current.get("routes") != decl.attrs["routes"]:
                self.call(decl, "PUT", base, {"router": {"routes": decl.attrs["routes"]}}, what="routes")
                self.actions.append(f"updated {label}: routes")

    # floating IPs

    def _known_id(self, ref: Ref, decl: Decl) -> str | None:
        """The id `ref` names, or None when the file declares it and it is not made yet."""
        if (ref.kind, ref.name) in self.ids:
            return self.ids[(ref.kind, ref.name)]
        if ref.name in self.current.get(ref.kind, {}):
            return self.current[ref.kind][ref.name]["id"]
        if any(d.name == ref.name for d in self.plan.decls[ref.kind]):
            return None
        return self.resolve(ref, decl)

    def _match_fip(self, decl: Decl, taken: set[str]) -> dict | None:
        """The set's floating IP that `decl` is: on its network, with its address (when the file
        gives one), else with its port (and fixed address)."""
        network = self._known_id(decl.attrs["network"], decl)
        if network is None:
            return None
        a = decl.attrs
        port = self._known_id(a["port"], decl) if "port" in a and "floating_ip_address" not in a else None
        for fip in self.fips:
            if fip["id"] in taken or fip["floating_network_id"] != network:
                continue
            if "floating_ip_address" in a:
                if fip["floating_ip_address"] == a["floating_ip_address"]:
                    return fip
            elif port is not None and fip["port_id"] == port and a.get("fixed_ip_address") in (
                    None, fip["fixed_ip_address"]):
                return fip
        return None

    def floatingips_first(self) -> None:
        """Floating IPs the file no longer declares go before anything else is deleted (the router
        interfaces and gateways they need could not go)."""
        taken: set[str] = set()
        decls = self.plan.decls["floatingips"]
        for decl in sorted(decls, key=lambda d: "floating_ip_address" not in d.attrs):   # addresses first
            fip = self._match_fip(decl, taken)
            if fip is not None:
                taken.add(fip["id"])
                self.fip_of[decl.where] = fip
        path = FLOATINGIPS[0]
        for fip in self.fips:
            if fip["id"] not in taken:
                label = f"floating IP {fip['floating_ip_address']}"
                try:
                    self.api.call("DELETE", f"{path}/{fip['id']}")
                except ApiRefused as exc:
                    raise ApplyError(f"{self.plan.file}: {label} (no longer in the file): DELETE {path}/{fip['id']}: "
                                     f"{exc}") from None
                self.actions.append(f"deleted {label}")

    def apply_floatingip(self, decl: Decl) -> None:
        path, single, _ = FLOATINGIPS
        a = decl.attrs
        want: dict[str, Any] = {}
        if "port" in a:
            want["port_id"] = self.resolve(a["port"], decl)
        if "fixed_ip_address" in a:
            want["fixed_ip_address"] = a["fixed_ip_address"]
        if "description" in a:
            want["description"] = a["description"]
        have = self.fip_of.get(decl.where)
        if have is None:
            body = {"floating_network_id": self.resolve(a["network"], decl), **want,
                    "tags": sorted(set(a.get("tags", [])) | {self.plan.tag})}
            if "floating_ip_address" in a:
                body["floating_ip_address"] = a["floating_ip_address"]
            if self.plan.project:
                body["project_id"] = self.plan.project
            made = self.call(decl, "POST", path, {single: body})[single]
            self.fip_of[decl.where] = made
            self.actions.append(f"created floating IP {made['floating_ip_address']}" + (
                f" for port {a['port'].name}" if "port" in a else ""))
            return
        if "tags" in a:
            want["tags"] = sorted(set(a["tags"]) | {self.plan.tag})
        changed = {k: v for k, v in want.items() if (sorted(have.get(k) or []) if k == "tags" else have.get(k)) != v}
        if "fixed_ip_address" in changed:
            changed["port_id"] = want["port_id"]          # the API takes fixed_ip_address with port_id only
        if changed:
            self.fip_of[decl.where] = self.call(decl, "PUT", f"{path}/{have['id']}", {single: changed})[single]
            self.actions.append(f"updated floating IP {have['floating_ip_address']}: {', '.join(sorted(changed))}")

    # load balancers: their listeners and pools, the pools' members and health monitors

    def apply_balancer(self, decl: Decl) -> None:
        lb = self.current["loadbalancers"][decl.name]
        label = f"load balancer {decl.name}"
        have = {kind: {c["name"]: c for c in self.api.call("GET", f"{LBAAS}/{kind}",
                                                            params={"loadbalancer_id": lb["id"]})[kind]}
                for kind in ("listeners", "pools")}
        for kind in ("listeners", "pools"):             # what goes first: a listener renamed frees its port
            if kind not in decl.attrs:
                continue
            declared = {child.name for child in decl.attrs[kind]}
            for name, child in have[kind].items():
                if name not in declared:
                    self.call(decl, "DELETE", f"{LBAAS}/{kind}/{child['id']}", what=kind)
                    self.actions.append(f"deleted {SINGULAR[kind]} {name} of {label}")
        pools = {name: child["id"] for name, child in have["pools"].items()}
        for child in decl.attrs.get("pools", []):
            made = self.apply_child(child, f"{LBAAS}/pools", have["pools"].get(child.name),
                                    {"loadbalancer_id": lb["id"]}, f"pool {child.name} of {label}")
            pools[child.name] = made["id"]
            self.apply_members(child, made, f"pool {child.name} of {label}")
            if "healthmonitor" in child.attrs:
                self.apply_monitor(child.attrs["healthmonitor"], made, f"pool {child.name} of {label}")
        for child in decl.attrs.get("listeners", []):
            extra = {"loadbalancer_id": lb["id"]}
            pool = child.attrs.get("default_pool")
            if pool is not None:
                if pool not in pools:
                    raise self.fail(self.at(child, "default_pool"), f"no pool named {pool!r} in {label}")
                extra["default_pool_id"] = pools[pool]
            self.apply_child(child, f"{LBAAS}/listeners", have["listeners"].get(child.name), extra,
                             f"listener {child.name} of {label}")

    def child_body(self, decl: Decl) -> dict:
        """The API's attributes of a listener, pool, member or health monitor the file declares."""
        out: dict[str, Any] = {} if decl.kind in ("members", "healthmonitor") else {"name": decl.name}
        for key, value in decl.attrs.items():
            if key in ("members", "healthmonitor", "default_pool"):
                continue
            if isinstance(value, Ref):
                out[REF_KEYS[key]] = self.resolve(value, decl)
            elif key in ("protocol", "lb_algorithm", "type", "http_method"):
                out[key] = value.upper()
            elif key == "session_persistence":
                out[key] = {**value, "type": value["type"].upper()}
            elif key == "expected_codes":
                out[key] = value.replace(" ", "")
            else:
                out[key] = value
        return out

    def apply_child(self, decl: Decl, path: str, have: dict | None, extra: dict, label: str) -> dict:
        """Create or update one of a load balancer's resources; what the API answers."""
        single = {"listeners": "listener", "pools": "pool", "members": "member"}.get(decl.kind, decl.kind)
        want = {**self.child_body(decl), **extra}
        if have is None:
            made = self.call(decl, "POST", path, {single: want})[single]
            self.actions.append(f"created {label}")
            return made
        self.keep_fixed(decl, have, want)
        for key in ("loadbalancer_id", "address", "protocol_port", "pool_id"):
            want.pop(key, None)                          # what it is known by, or belongs to
        changed = self.differences(decl, have, want)
        if not changed:
            return have
        updated = self.call(decl, "PUT", f"{path}/{have['id']}", {single: changed})[single]
        self.actions.append(f"updated {label}: {', '.join(sorted(changed))}")
        return updated

    def apply_members(self, pool_decl: Decl, pool: dict, label: str) -> None:
        if "members" not in pool_decl.attrs:
            return
        path = f"{LBAAS}/pools/{pool['id']}/members"
        have = {(m["address"], m["protocol_port"]): m for m in self.api.call("GET", path)["members"]}
        want = {(m.attrs["address"], m.attrs["protocol_port"]): m for m in pool_decl.attrs["members"]}
        for key, member in have.items():
            if key not in want:
                self.call(pool_decl, "DELETE", f"{path}/{member['id']}", what="members")
                self.actions.append(f"deleted member {member['address']}:{member['protocol_port']} of {label}")
        for key, decl in want.items():
            self.apply_child(decl, path, have.get(key), {}, f"member {decl.name} of {label}")

    def apply_monitor(self, decl: Decl, pool: dict, label: str) -> None:
        path = f"{LBAAS}/healthmonitors"
        have = self.api.call("GET", f"{path}/{pool['healthmonitor_id']}")["healthmonitor"] \
            if pool.get("healthmonitor_id") else None
        if have is not None and have["type"] != decl.attrs["type"].upper():
            self.call(decl, "DELETE", f"{path}/{have['id']}", what="type")
            self.actions.append(f"deleted the {have['type']} health monitor of {label}")
            have = None
        self.apply_child(decl, path, have, {} if have is not None else {"pool_id": pool["id"]},
                         f"the health monitor of {label}")

    def routes_first(self) -> None:
        """Routes the file drops go before anything is deleted (an interface a route needs cannot go);
        a router that will be deleted loses its routes. Routes the file adds come after its interfaces."""
        declared = {d.name: d for d in self.plan.decls["routers"]}
        for name, router in self.current["routers"].items():
            decl = declared.get(name)
            want = decl.attrs.get("routes") if decl is not None else []
            if want is None or not router.get("routes") or router["routes"] == want:
                continue
            keep = [r for r in router["routes"] if r in want]
            if keep != router["routes"]:
                try:
                    self.api.call("PUT", f"/v2.0/routers/{router['id']}", {"router": {"routes": keep}})
                except ApiRefused:
                    continue                          # apply_router_extras reports it
                router["routes"] = keep
                if decl is not None:
                    self.actions.append(f"updated router {name}: routes")

    def group_ports_first(self) -> None:
        """A port the file moves from one firewall group to another leaves the first before any group is
        updated (it could not join the other while in it). The groups are read again: a port deleted
        has left its group."""
        path, single, _ = API["firewall_groups"]
        declared = self.plan.decls["firewall_groups"]
        wanted = {d.name: {self._known_id(ref, d) for ref in d.attrs.get("ports", [])} for d in declared}
        for decl in declared:
            if decl.name not in self.current["firewall_groups"]:
                continue
            have = self.api.call("GET", f"{path}/{self.current['firewall_groups'][decl.name]['id']}")[single]
            self.current["firewall_groups"][decl.name] = have
            elsewhere = set().union(*(ids for name, ids in wanted.items() if name != decl.name))
            keep = [p for p in have["ports"] if p in wanted[decl.name] or p not in elsewhere]
            if "ports" in decl.attrs and keep != have["ports"]:
                self.current["firewall_groups"][decl.name] = self.call(
                    decl, "PUT", f"{path}/{have['id']}", {single: {"ports": keep}}, what="ports")[single]
                self.actions.append(f"updated firewall group {decl.name}: ports ({len(have['ports']) - len(keep)} "
                                    f"moved to another group)")

    def delete_gone(self, kinds: tuple[str, ...]) -> None:
        for kind in kinds:
            declared = {d.name for d in self.plan.decls[kind]}
            path, _, _ = API[kind]
            for name, item in list(self.current[kind].items()):
                if name in declared:
                    continue
                if kind in ("routers", "subnets"):     # their router interfaces go first
                    params = ({"device_id": item["id"]} if kind == "routers"
                              else {"fixed_ips": f"subnet_id={item['id']}"})
                    ports = self.api.call("GET", "/v2.0/ports", params={
                        **params, "device_owner": "network:router_interface"})["ports"]
                    for port in ports:
                        self._api_or_fail(kind, name, "PUT", f"/v2.0/routers/{port['device_id']}/"
                                          f"remove_router_interface", {"port_id": port["id"]})
                if kind == "firewall_groups" and item["ports"]:                  # a group with ports cannot go
                    self._api_or_fail(kind, name, "PUT", f"{path}/{item['id']}", {"firewall_group": {"ports": []}})
                cascade = "?cascade=true" if kind == "loadbalancers" else ""      # with its listeners and pools
                self._api_or_fail(kind, name, "DELETE", f"{path}/{item['id']}{cascade}")
                del self.current[kind][name]
                self.actions.append(f"deleted {SINGULAR[kind]} {name}")

    def _api_or_fail(self, kind: str, name: str, method: str, path: str, body: Any = None) -> Any:
        try:
            return self.api.call(method, path, body)
        except ApiRefused as exc:
            raise ApplyError(f"{self.plan.file}: {SINGULAR[kind]} {name} (no longer in the file): "
                             f"{method} {path}: {exc}") from None


def _fixed_ips_differ(have: list[dict], want: list[dict]) -> bool:
    """Whether the port's addresses differ from the file's (an entry without an address is
    satisfied by any address of its subnet)."""
    if len(have) != len(want):
        return True
    remaining = list(have)
    for entry in want:
        for i, ip in enumerate(remaining):
            if all(ip.get(k) == v for k, v in entry.items()):
                del remaining[i]
                break
        else:
            return True
    return False


def _rule_text(rule: dict) -> str:
    parts = [rule.get("direction", ""), rule.get("ethertype") or "IPv4"]
    if rule.get("protocol"):
        parts.append(str(rule["protocol"]))
    if rule.get("port_range_min") is not None:
        parts.append(f"{rule['port_range_min']}-{rule.get('port_range_max')}")
    if rule.get("remote_ip_prefix"):
        parts.append(f"from {rule['remote_ip_prefix']}")
    if rule.get("remote_group_id"):
        parts.append(f"group {rule['remote_group_id']}")
    if rule.get("remote_address_group_id"):
        parts.append(f"address group {rule['remote_address_group_id']}")
    return " ".join(parts)


def apply(plan: Plan, api: Client) -> list[str]:
    """Make the API hold what `plan` declares; the actions taken (empty: nothing changed)."""
    return Applier(plan, api).run()


# --- the command ----------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("apply", help="make a running controller hold the networks, subnets, ports, "
                                            "routers, floating IPs, security groups, QoS policies, load "
                                            "balancers, address groups and firewall groups, policies and rules "
                                            "a YAML file declares",
                              description="Create, update and delete Neutron (and Octavia) resources through the "
                                          "API so that they are what FILE.yaml declares (docs/api.md).")
    p.add_argument("file", metavar="FILE.yaml")
    p.add_argument("--check", action="store_true", help="check the file only (nothing is sent)")
    p.add_argument("--api", metavar="URL", default=None,
                   help=f"the controller's API ($KUMOFLOW_API; default {DEFAULT_URL})")
    p.add_argument("--token", metavar="TOKEN", help="X-Auth-Token ($KUMOFLOW_TOKEN; else the admin token file)")
    p.add_argument("--token-file", metavar="PATH",
                   help=f"read the token from here ($KUMOFLOW_TOKEN_FILE; default {DEFAULT_TOKEN_FILE})")
    p.set_defaults(func=run_apply)


def run_apply(args: argparse.Namespace, client: Any = None) -> int:
    from kumoflow.show import ShowError, resolve_token

    try:
        plan = load(args.file)
    except TopologyError as exc:
        print(f"kumoflow apply: invalid file\n{exc}", file=sys.stderr)
        return 2
    if args.check:
        counts = ", ".join(f"{len(v)} {k.replace('_', ' ')}" for k, v in plan.decls.items() if v)
        print(f"{args.file}: valid ({counts or 'nothing declared'}; set {plan.name!r})")
        return 0
    try:
        token = resolve_token(args.token, args.token_file)
    except ShowError as exc:
        print(f"kumoflow apply: {exc}", file=sys.stderr)
        return exc.status
    url = args.api or os.environ.get("KUMOFLOW_API") or DEFAULT_URL
    try:
        actions = apply(plan, Client(url, token, client))
    except ApplyError as exc:
        print(f"kumoflow apply: {exc}", file=sys.stderr)
        return exc.status
    for action in actions:
        print(action)
    print(f"{args.file}: {len(actions)} change{'s' if len(actions) != 1 else ''}" if actions
          else f"{args.file}: nothing to change")
    return 0
