"""Firewall policies (Neutron's firewall-as-a-service v2) as a pure model:
ordered rules that allow, deny or reject, the first that matches deciding.

A firewall group puts its ports under an ingress policy (what comes in to
them) and an egress policy (what they send). A policy is an ordered list of
rules; a packet that no enabled rule of the policy matches is denied, as
in Neutron. A direction without a policy is not filtered by the group.

A rule matches on the IP version, the protocol, source and destination
(each one of: a CIDR, an address group's CIDRs, or the addresses of the
ports tagged with a user group -- kumoflow's extension), and TCP or UDP
source and destination ports or ranges (``"80"``, ``"8000:8080"``).
kumoflow's ``http_host``/``http_path`` (web applications: decided on the
connection's request, firewall.py) narrow an allow or deny rule to the
HTTP requests (and TLS server names) they name; ``log`` records what a
deny or reject rule stops.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import Iterable, Mapping

from kumoflow.apps import addresses
from kumoflow.apps.secgroups import PROTOCOL_NUMBERS, Packet
from kumoflow.packet.http import HostPattern, PathPrefix

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class FwRule:
    id: str
    action: str                                  # allow, deny, reject
    version: int
    protocol: int | None
    sources: tuple[IPNetwork, ...] | None        # None: any
    destinations: tuple[IPNetwork, ...] | None
    sport: tuple[int, int] | None
    dport: tuple[int, int] | None
    log: bool = False
    http_host: str | None = None
    http_path: str | None = None

    @property
    def web(self) -> bool:
        """Decided on the connection's request (Host, path, TLS server name)?"""
        return bool(self.http_host or self.http_path)


def matches(rule: FwRule, packet: Packet) -> bool:
    """Does the rule match the packet's header (its web part aside)?"""
    if rule.version != packet.version or rule.protocol is not None and rule.protocol != packet.protocol:
        return False
    if rule.sport is not None and not rule.sport[0] <= packet.sport <= rule.sport[1]:
        return False
    if rule.dport is not None and not rule.dport[0] <= packet.dport <= rule.dport[1]:
        return False
    return (rule.sources is None or any(packet.src in n for n in rule.sources)) and \
        (rule.destinations is None or any(packet.dst in n for n in rule.destinations))


@dataclass(frozen=True)
class Seen:
    """What a connection's first bytes said (packet/http.py): the host of an HTTP request
    or a TLS ClientHello's server name, and an HTTP request's path (None for TLS)."""
    host: str | None
    path: str | None


#: first_match's answer when a rule on the web part matches the header and nothing is seen yet
UNSEEN = object()


def first_match(policy: Iterable[FwRule], packet: Packet, seen: Seen | None = None):
    """The first rule that matches: a FwRule, None (no rule: denied), or UNSEEN when the
    connection's request must be seen first: `seen` is None, a web rule matches the header,
    and whether it matches the request would change whether the connection is allowed. (When
    it would not, the first rule after it that needs no request decides: a web reject before
    a deny, say, does not hold up a connection that is not allowed either way.)"""
    pending = []            # allows? of the web rules that match the header, before the deciding one
    decided = None
    for rule in policy:
        if not matches(rule, packet):
            continue
        if rule.web:
            if seen is None:
                pending.append(rule.action == "allow")
                continue
            if not web_matches(rule, seen):
                continue
        decided = rule
        break
    allowed = decided is not None and decided.action == "allow"
    if any(p != allowed for p in pending):
        return UNSEEN
    return decided


def web_matches(rule: FwRule, seen: Seen) -> bool:
    """A path rule needs a path: over TLS it matches nothing."""
    return (not rule.http_host or _host(rule.http_host).matches(seen.host)) and \
        (not rule.http_path or _path(rule.http_path).matches(seen.path))


@functools.lru_cache(maxsize=4096)
def _host(text: str) -> HostPattern:
    return HostPattern(text)


@functools.lru_cache(maxsize=4096)
def _path(text: str) -> PathPrefix:
    return PathPrefix(text)


def build_policies(policies: Iterable, rules: Iterable, address_groups: Mapping[str, list[str]],
                   user_groups: Mapping[str, list[IPNetwork]], problems: dict[str, str]) -> dict[str, tuple[FwRule, ...]]:
    """Policy id -> its enabled rules in order. A rule that cannot be read (an address group
    gone) is left out and reported in `problems`: what it would have allowed is denied,
    what it would have denied may pass a later rule (the log says which)."""
    by_id = {}
    for record in rules:
        try:
            by_id[record.id] = _rule(record, address_groups, user_groups)
        except ValueError as exc:
            problems[record.id] = str(exc)
    out = {}
    for policy in policies:
        out[policy.id] = tuple(by_id[r] for r in policy.body.get("firewall_rules") or ()
                               if r in by_id and by_id[r] is not None)
    return out


def _rule(record, address_groups: Mapping[str, list[str]],
          user_groups: Mapping[str, list[IPNetwork]]) -> FwRule | None:
    body = record.body
    if not body.get("enabled", True):
        return None
    version = int(body.get("ip_version") or 4)
    protocol = body.get("protocol")
    if protocol is not None:
        text = str(protocol).lower()
        protocol = int(text) if text.isdigit() else PROTOCOL_NUMBERS.get(text)
        if protocol is None:
            raise ValueError(f"protocol {body.get('protocol')!r} is unknown")
        if protocol == 1 and version == 6:
            protocol = 58
    ends = []
    for side in ("source", "destination"):
        nets: list[IPNetwork] | None = None
        if body.get(f"{side}_ip_address"):
            nets = [ipaddress.ip_network(body[f"{side}_ip_address"], strict=False)]
        elif body.get(f"{side}_address_group_id"):
            group = body[f"{side}_address_group_id"]
            if group not in address_groups:
                raise ValueError(f"address group {group} does not exist")
            nets = addresses.parse_list(address_groups[group])
        elif body.get(f"{side}_user_group"):
            nets = list(user_groups.get(body[f"{side}_user_group"], ()))
        ends.append(None if nets is None else tuple(n for n in addresses.aggregate(nets) if n.version == version))
    return FwRule(record.id, body.get("action") or "deny", version, protocol, ends[0], ends[1],
                  _ports(body.get("source_port")), _ports(body.get("destination_port")), bool(body.get("log")),
                  body.get("http_host") or None, body.get("http_path") or None)


def _ports(text) -> tuple[int, int] | None:
    if text in (None, ""):
        return None
    low, _, high = str(text).partition(":")
    return int(low), int(high or low)
