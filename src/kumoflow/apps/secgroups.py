"""Security groups as a pure model: their rules, and the verdict of a
port's rules on one packet (acl.py says which ports have which).

A port's rules are the union of its groups' rules: every rule allows,
nothing denies, and what no rule allows is dropped -- inbound by default,
outbound too once a group has no egress rule (a new group allows all
egress).

A rule names its remote side by one of:

* ``remote_ip_prefix``: a CIDR (none of the three: anywhere);
* ``remote_group_id``: the addresses of the group's member ports (fixed
  IPs and allowed address pairs), bound or not -- followed as ports join
  and leave, the model being rebuilt at each change;
* ``remote_address_group_id``: an address group's CIDRs.

Remote addresses are aggregated (adjacent and covered prefixes merged,
apps/addresses.py) before they become flows: a country set of thousands of
CIDRs costs the flows of its aggregate.

A stateful rule (its group's ``stateful``, the default) lets the answers
of a connection it allowed come back: the connection is a pair of flows
the controller installs on the connection's first packet (firewall.py);
a stateless rule allows exactly what it says, one direction, and its
flows do the whole job when they can say it (a port range that is not a
single port cannot be said in OpenFlow 1.3's unmaskable transport ports:
the controller decides those connection by connection too).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Mapping

from kumoflow.apps import addresses
from kumoflow.store import Record

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

TCP, UDP, ICMP, ICMPV6, SCTP = 6, 17, 1, 58, 132
#: protocols whose rules have port ranges
PORT_PROTOCOLS = {6, 17, 132, 33, 136}
PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132, "dccp": 33,
                    "udplite": 136, "gre": 47, "esp": 50, "ah": 51, "igmp": 2, "ipip": 4, "ipv6-encap": 41,
                    "ipv6-frag": 44, "ipv6-nonxt": 59, "ipv6-opts": 60, "ipv6-route": 43, "ospf": 89, "pgm": 113,
                    "rsvp": 46, "vrrp": 112, "egp": 8}
#: ICMP echo request -> reply, per family: the answers a stateful rule lets back
ECHO_REPLY = {(4, 8): 0, (6, 128): 129}


@dataclass(frozen=True)
class Rule:
    id: str
    ingress: bool                        # else egress (what the port sends)
    version: int                         # 4 or 6
    protocol: int | None                 # None: any
    ports: tuple[int, int] | None        # destination port range, for PORT_PROTOCOLS
    icmp: tuple[int | None, int | None]  # (type, code), for ICMP
    remotes: tuple[IPNetwork, ...] | None    # None: anywhere
    stateful: bool

    def exact(self) -> bool:
        """Can flows say this rule whole (no port range wider than one port)?"""
        return self.ports is None or self.ports[0] == self.ports[1]


@dataclass(frozen=True)
class Packet:
    """What a rule looks at in a packet: its IP header and transport ports (ICMP: type and code)."""
    version: int
    protocol: int
    src: IPAddress
    dst: IPAddress
    sport: int = 0                       # ICMP: type
    dport: int = 0                       # ICMP: code

    def reversed(self) -> "Packet | None":
        """The answer's header: addresses and ports swapped (an echo's reply type); None
        for ICMP other than echo (no answer to let back)."""
        if self.protocol in (ICMP, ICMPV6):
            reply = ECHO_REPLY.get((self.version, self.sport))
            return None if reply is None else Packet(self.version, self.protocol, self.dst, self.src, reply, 0)
        return Packet(self.version, self.protocol, self.dst, self.src, self.dport, self.sport)


def allows(rule: Rule, ingress: bool, packet: Packet) -> bool:
    """Does `rule` allow `packet`, coming in to its port (`ingress`) or going out?"""
    if rule.ingress != ingress or rule.version != packet.version:
        return False
    if rule.protocol is not None and rule.protocol != packet.protocol:
        return False
    if rule.ports is not None and not rule.ports[0] <= packet.dport <= rule.ports[1]:
        return False
    if rule.protocol in (ICMP, ICMPV6):
        kind, code = rule.icmp
        if kind is not None and kind != packet.sport or code is not None and code != packet.dport:
            return False
    remote = packet.src if ingress else packet.dst
    return rule.remotes is None or any(remote in net for net in rule.remotes)


def verdict(rules: Iterable[Rule], ingress: bool, packet: Packet) -> Rule | None:
    """The rule that allows `packet` in to (or out of) a port with these rules, the stateful
    first; None: dropped."""
    found = [r for r in rules if allows(r, ingress, packet)]
    return next((r for r in found if r.stateful), found[0] if found else None)


def group_rules(groups: Iterable[Record], rules: Iterable[Record], members: Mapping[str, list[IPNetwork]],
                address_groups: Mapping[str, list[str]], problems: dict[str, str]) -> dict[str, list[Rule]]:
    """Security group id -> its rules. `members`: group id -> its ports' addresses; a rule
    that cannot be read is left out (it allows nothing) and reported in `problems`."""
    stateful = {g.id: bool(g.body.get("stateful", True)) for g in groups}
    out: dict[str, list[Rule]] = {}
    for record in sorted(rules, key=lambda r: (r.created_at, r.id)):
        rule = _rule(record, stateful, members, address_groups, problems)
        if rule is not None:
            out.setdefault(record.body.get("security_group_id", ""), []).append(rule)
    return out


def _rule(record: Record, stateful: Mapping[str, bool], members: Mapping[str, list[IPNetwork]],
          sets: Mapping[str, list[str]], problems: dict[str, str]) -> Rule | None:
    body = record.body
    group = body.get("security_group_id", "")
    if group not in stateful:
        return None
    version = 6 if body.get("ethertype") == "IPv6" else 4
    remotes: list[IPNetwork] | None = None
    try:
        protocol = _protocol(body.get("protocol"), version)
        if body.get("remote_ip_prefix"):
            remotes = [ipaddress.ip_network(body["remote_ip_prefix"], strict=False)]
        elif body.get("remote_group_id"):
            if body["remote_group_id"] not in stateful:
                raise ValueError(f"remote group {body['remote_group_id']} does not exist")
            remotes = members.get(body["remote_group_id"], [])
        elif body.get("remote_address_group_id"):
            if body["remote_address_group_id"] not in sets:
                raise ValueError(f"address group {body['remote_address_group_id']} does not exist")
            remotes = addresses.parse_list(sets[body["remote_address_group_id"]])
    except ValueError as exc:       # addresses.AddressError is one
        problems[record.id] = str(exc)
        return None
    low, high = body.get("port_range_min"), body.get("port_range_max")
    ports = icmp = None
    if protocol in PORT_PROTOCOLS and low is not None:
        ports = (low, high if high is not None else low)
    if protocol in (ICMP, ICMPV6):
        icmp = (low, high)
    if remotes is not None:
        remotes = [n for n in addresses.aggregate(remotes) if n.version == version]
    return Rule(record.id, body.get("direction") == "ingress", version, protocol, ports, icmp or (None, None),
                None if remotes is None else tuple(remotes), stateful[group])


def _protocol(value, version: int) -> int | None:
    if value is None or value == "any":
        return None
    text = str(value).lower()
    number = int(text) if text.isdigit() else PROTOCOL_NUMBERS.get(text)
    if number is None or not 0 <= number <= 255:
        raise ValueError(f"protocol {value!r} is unknown")
    if number == ICMP and version == 6:      # "icmp" in an IPv6 rule means ICMPv6, as Neutron takes it
        return ICMPV6
    return number
