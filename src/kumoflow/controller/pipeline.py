"""The pipeline: every flow table a packet can cross, in packet order, and
the shared resources that keep network functions apart.

Read ``TABLES`` top to bottom and you have the whole packet path. Each
table says what it is for, what its flows match on, which function fills
it, and where a packet that matches nothing goes (its miss entry). The
controller installs that miss entry itself, so an empty stage passes
packets on and a function slots in without anyone else changing.

Table ids leave gaps on purpose: a stage added later (an ACL, a router)
takes an id in between, and no existing flow has to move.

The shared resources are handed out here, from fixed tables, so that
what a function gets does not depend on which other functions run or in
what order (a controller restarted with the same functions compiles the
same flows, byte for byte):

* the **cookie** of every flow: the top byte names the function (``FUNCTIONS``),
  the low 56 bits are the function's own object id. A flow's cookie names
  the object that owns it, so a reader of ``ovs-ofctl dump-flows`` knows
  why a flow is there, FLOW_REMOVED reaches its owner, and flows left by a
  previous run are recognised.
* **group ids** and **meter ids**: each function owns a block of ids
  starting at its function number times the block size: ``1 << BLOCK_BITS``
  group ids, ``1 << METER_BITS`` meter ids (Open vSwitch takes meter ids
  up to 262,144 only).
* **metadata bits** (``METADATA``): named bit fields that must never overlap.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from kumoflow import ofp

#: The network functions, by the number that leads their cookies and
#: numbers their blocks of group and meter ids. Apps not listed here get
#: numbers from CUSTOM_FUNCTIONS on in load order.
FUNCTIONS = {
    "pipeline": 1,   # the miss entries the controller installs in every table
    "fabric": 2,
    "l2": 3,
    "router": 4,
    "tenants": 5,
    "firewall": 6,
    "lb": 7,
    "qos": 8,
}
CUSTOM_FUNCTIONS = 0x80
COOKIE_SHIFT = 56
OBJECT_MASK = (1 << COOKIE_SHIFT) - 1
FUNCTION_MASK = 0xFF << COOKIE_SHIFT

#: group ids per function: 2**24 each (OpenFlow allows up to 0xffffff00)
BLOCK_BITS = 24
#: meter ids per function and switch: 1024 each (Open vSwitch's userspace datapath has 2**18 in all)
METER_BITS = 10


@dataclass(frozen=True)
class Table:
    id: int
    name: str
    purpose: str
    match: tuple[str, ...]    # the fields its flows match on
    filled_by: str            # the function that compiles its flows
    miss: str                 # where a packet matching nothing goes: a table name, "controller" or "drop"


TABLES: tuple[Table, ...] = (
    Table(0, "classify",
          "where a packet enters: LLDP to the controller; frames from fabric links and from known hosts "
          "on their own ports go on; a frame from an unknown source goes to the controller, which learns it. "
          "The tenants app adds its own ports' flows here, above the fabric's: a port of a tenant network admits "
          "only its own MAC and addresses (port security) and writes the network into metadata; a tunnel port "
          "maps the tunnel id to the network",
          ("eth_type", "in_port", "eth_src", "tunnel_id", "arp_spa", "ipv4_src", "ipv6_src"), "fabric", "forward"),
    Table(8, "network",
          "a tenant network's frames (classify wrote the network into metadata): ARP requests for an address "
          "of a port on the network, and DHCP requests, go to the controller, which answers; the rest goes on",
          ("metadata", "eth_type", "arp_op", "arp_tpa", "ip_proto", "udp_dst"), "tenants", "from_port_qos"),
    Table(10, "from_port_qos",
          "what a port with a QoS policy sends (matched by in_port, on the port's own switch): its egress "
          "bandwidth meter, its DSCP mark (IPv4 and IPv6), the egress queue of its minimum bandwidth; other "
          "ports' frames pass", ("in_port", "eth_type"), "qos", "from_project_qos"),
    Table(11, "from_project_qos",
          "what a port of a project with an aggregate QoS cap sends (in_port): the project's meter on that "
          "switch, shared by its ports there (a flow entry carries one meter: hence a table of its own)",
          ("in_port",), "qos", "from_port"),
    Table(12, "from_port",
          "what a port with security groups or a firewall group sends (matched by in_port, on the port's own "
          "switch): ARP, DHCP and neighbour discovery pass; a packet of a connection the port may make passes; "
          "the first packet of one a rule may allow goes to the controller, which decides and installs the "
          "connection's flows both ways; the rest is dropped. Other ports' packets pass",
          ("in_port", "eth_type", "ip_proto", "ipv4_src", "ipv4_dst", "ipv6_src", "ipv6_dst", "tcp_src", "tcp_dst",
           "udp_src", "udp_dst", "icmpv4_type", "icmpv6_type"), "firewall", "balance"),
    Table(13, "from_port_end",
          "the TCP segments of a connection from_port passed (its flows come here, no others do): a FIN or RST "
          "is copied to the controller, which ends the connection's flows; every segment goes on",
          ("eth_type", "ip_proto", "tcp_flags"), "firewall", "balance"),
    Table(16, "balance",
          "a load balancer's virtual IPs, in the networks that reach them: ARP for a VIP to the controller, "
          "which answers; a connection's first packet to a listener to the controller, which picks a member and "
          "installs the connection's flows: here on the client's switch, the destination translated to the "
          "member; here on the member's switch, its answers' source translated back to the VIP; health probes' "
          "answers (to a VIP from a member) to the controller",
          ("metadata", "eth_type", "arp_op", "arp_tpa", "ip_proto", "ipv4_src", "ipv4_dst", "tcp_src", "tcp_dst",
           "udp_src", "udp_dst", "icmpv4_type"), "lb", "router"),
    # ids 1-7, 9, 14-15 and 17-19 are kept for stages between admission and routing
    Table(20, "router",
          "frames addressed to a router: an interface's MAC names the router, whose routing table (VRF) the "
          "frame is looked up in; ARP for a router's addresses goes to the controller, which answers; what comes "
          "in for a floating IP, or back to a translated connection, has its destination translated here",
          ("eth_dst", "eth_type", "arp_op", "arp_tpa", "ipv4_dst", "ipv4_src", "ip_proto", "tcp_dst", "udp_dst"),
          "router", "to_port_qos"),
    Table(24, "route",
          "longest prefix match in the router's table: the priority grows with the prefix length; TTL "
          "decremented, source MAC rewritten to the egress interface's; the router's own addresses go to the "
          "controller (ping), no route to the controller (ICMP unreachable)",
          ("metadata", "eth_type", "ipv4_dst", "ipv6_dst"), "router", "controller"),
    Table(28, "nexthop",
          "a route's next hop: the destination MAC of the next router; one unresolved goes to the controller, "
          "which resolves it by ARP or neighbour discovery",
          ("metadata",), "router", "controller"),
    Table(32, "neighbour",
          "a directly connected destination: its MAC; one unresolved goes to the controller as above",
          ("metadata", "eth_type", "ipv4_dst", "ipv6_dst"), "router", "controller"),
    Table(36, "snat",
          "packets leaving a router through its external gateway: a floating IP's owner takes its floating "
          "address; other sources are translated per connection (address and port of the gateway) by flows the "
          "controller adds on the connection's first packet",
          ("metadata", "eth_type", "ip_proto", "ipv4_src", "ipv4_dst", "tcp_src", "tcp_dst", "udp_src", "udp_dst",
           "icmpv4_type"), "router", "to_port_qos"),
    Table(37, "to_port_qos",
          "what is delivered to a port with an ingress QoS bandwidth limit (its MAC in its network, on the "
          "port's own switch): its meter. Delivery starts here: routing's tables and their misses go on to the "
          "table after snat, so every frame for a port passes, routed or not, come through a tunnel or not",
          ("metadata", "eth_dst"), "qos", "to_port"),
    Table(38, "to_port",
          "what is delivered to a port with security groups or a firewall group (matched by its MAC, and its "
          "network for a tenant port, on the port's own switch, where every frame for it passes, routed or "
          "not, come through a tunnel or not): as from_port, the other way; frames for other ports pass",
          ("metadata", "eth_dst", "eth_type", "ip_proto", "ipv4_src", "ipv4_dst", "ipv6_src", "ipv6_dst",
           "tcp_src", "tcp_dst", "udp_src", "udp_dst", "icmpv4_type", "icmpv6_type"), "firewall", "forward"),
    Table(39, "to_port_end",
          "as from_port_end, for the connections to_port passed", ("eth_type", "ip_proto", "tcp_flags"),
          "firewall", "forward"),
    Table(40, "forward",
          "where a packet goes: unicast towards the switch of its destination host (a group per destination "
          "switch), broadcast and unknown unicast along the loop-free tree, per in_port. A tenant network's "
          "frames (the tenants app's flows, above the fabric's, by metadata): a port's MAC to its switch port "
          "or into the tunnel to its hypervisor; the rest to every port of the network (a group: local ports "
          "and one tunnel per remote hypervisor), or, come from a tunnel, to the local ports only",
          ("metadata", "eth_dst", "in_port"), "fabric", "drop"),
)

TABLE = {t.name: t for t in TABLES}
BY_ID = {t.id: t for t in TABLES}


def table_id(name: str) -> int:
    return TABLE[name].id


def next_table(name: str) -> int:
    """The table after `name` in packet order (where its frames go on)."""
    index = TABLES.index(TABLE[name])
    return TABLES[index + 1].id



def miss_instructions(table: Table) -> list[ofp.Instruction]:
    """The default miss entry of a table (an app may override it)."""
    if table.miss == "drop":
        return []
    if table.miss == "controller":
        return [ofp.ApplyActions([ofp.Output(ofp.OFPP.CONTROLLER, ofp.OFPCML.NO_BUFFER)])]
    return [ofp.GotoTable(TABLE[table.miss].id)]


# --- cookies, groups, meters -------------------------------------------------------

def cookie(function: int, object_id: int) -> int:
    if not 0 <= object_id <= OBJECT_MASK:
        raise ValueError(f"object id {object_id:#x} does not fit in {COOKIE_SHIFT} bits")
    return function << COOKIE_SHIFT | object_id


def cookie_function(value: int) -> int:
    return value >> COOKIE_SHIFT


def id_block(function: int) -> range:
    """The group ids that belong to a function."""
    start = function << BLOCK_BITS
    return range(start, start + (1 << BLOCK_BITS))


def meter_block(function: int) -> range:
    """The meter ids that belong to a function."""
    start = function << METER_BITS
    return range(start, start + (1 << METER_BITS))


def function_of(kind: str, ident: int) -> int:
    """The function that owns a group id (`kind` "group") or a meter id ("meter")."""
    return ident >> (BLOCK_BITS if kind == "group" else METER_BITS)


# --- metadata ------------------------------------------------------------------------

@dataclass(frozen=True)
class Bits:
    name: str
    offset: int
    width: int

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.offset

    def of(self, metadata: int) -> int:
        """This field's number in a metadata value."""
        return (metadata & self.mask) >> self.offset

    def value(self, n: int) -> int:
        if not 0 <= n < 1 << self.width:
            raise ValueError(f"{self.name} {n} does not fit in {self.width} bits")
        return n << self.offset


def check_layout(fields: tuple[Bits, ...]) -> dict[str, Bits]:
    """The fields by name, after checking that none overlaps another or leaves 64 bits."""
    taken = 0
    for f in fields:
        if f.offset < 0 or f.width <= 0 or f.offset + f.width > 64:
            raise ValueError(f"metadata field {f.name} lies outside 64 bits")
        if taken & f.mask:
            raise ValueError(f"metadata field {f.name} overlaps another field")
        taken |= f.mask
    return {f.name: f for f in fields}


#: Named bit fields of the 64-bit OpenFlow metadata: the router (VRF) a frame
#: is routed in, the next hop a route chose (numbered within its VRF), the
#: tenant network a frame is in (a number of the controller's, not the VNI:
#: VXLAN and NVGRE segments may share an id) and whether it came out of a
#: tunnel (it is then flooded to local ports only: split horizon).
METADATA = check_layout((
    Bits("nexthop", 0, 16),
    Bits("vrf", 16, 24),
    Bits("network", 40, 23),
    Bits("remote", 63, 1),
))


def hashed_number(key: str, space: int, taken: set[int]) -> int:
    """A number in 1..space-1 from a hash of `key`, probing past those taken: given
    the keys in a fixed order, the same numbers in every run of the controller."""
    n = zlib.crc32(key.encode()) % (space - 1) + 1
    while n in taken:
        n = n % (space - 1) + 1
    taken.add(n)
    return n
