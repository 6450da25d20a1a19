"""The guarded ports as a pure model, and the decision on one packet: what
the `firewall` app compiles and asks. Nothing here talks to a switch.

A port is guarded by its security groups when port security is on (the
default) and it is not the network's own (``device_owner`` ``network:*``:
router interfaces, DHCP ports), and by its firewall group when it is in
one that is up. Either way it must be bound to a switch port. A packet
passes a guarded port when its firewall group's policy for that
direction allows it (secgroups.py and fwpolicy.py say how each decides)
and then its security groups do; a policy's deny or reject decides at
once.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Mapping

from kumoflow.apps.fwpolicy import UNSEEN, FwRule, Seen, build_policies, first_match
from kumoflow.apps.overlay import OVERLAY_TYPES, network_numbers, place_of
from kumoflow.apps.secgroups import Packet, Rule, group_rules, verdict
from kumoflow.controller.datapath import Datapath
from kumoflow.store import Record

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Guarded:
    id: str
    mac: str
    place: tuple[int, int]                   # (dpid, port_no)
    network: int | None                      # a tenant network's number (metadata); None on the fabric
    security: bool                           # its security groups apply
    rules: tuple[Rule, ...]                  # ... which have these rules
    egress: tuple[FwRule, ...] | None        # its firewall group's policies, None: that way is not filtered
    ingress: tuple[FwRule, ...] | None
    addresses: tuple[IPNetwork, ...] = ()    # its fixed IPs and allowed address pairs

    def policy(self, ingress: bool) -> tuple[FwRule, ...] | None:
        return self.ingress if ingress else self.egress

    def filters(self, ingress: bool) -> bool:
        return self.security or self.policy(ingress) is not None


@dataclass(frozen=True)
class Decision:
    action: str             # allow, deny, reject; inspect: the connection's request decides (firewall.py)
    stateful: bool          # allowed: its answers come back too
    rule: str | None        # the rule that decided; None: nothing allowed it
    log: bool = False       # a deny or reject to be logged


INSPECT = Decision("inspect", True, None)


def decide(port: Guarded, ingress: bool, packet: Packet, seen: Seen | None = None) -> Decision:
    """The firewall group's policy, then the security groups. `seen`: what the connection's
    request said, once it has been seen."""
    policy = port.policy(ingress)
    decided_by = None
    if policy is not None:
        rule = first_match(policy, packet, seen)
        if rule is UNSEEN:
            return INSPECT
        if rule is None:
            return Decision("deny", False, None)
        if rule.action != "allow":
            return Decision(rule.action, False, rule.id, rule.log)
        decided_by = rule.id
    if not port.security:
        return Decision("allow", True, decided_by)
    allowing = verdict(port.rules, ingress, packet)
    if allowing is None:
        return Decision("deny", False, None)
    return Decision("allow", allowing.stateful, allowing.id)


@dataclass
class Model:
    ports: dict[str, Guarded]
    #: rule id -> what is wrong with it (an unknown remote group, a bad prefix, an address group gone)
    problems: dict[str, str]
    #: (network number or None on the fabric, address) -> the guarded port that has it
    at: dict[tuple[int | None, IPAddress], Guarded] = field(default_factory=dict)


def build(state, datapaths: Mapping[int, Datapath]) -> Model:
    """The model from the desired state (`state.all(kind)`) and the switches up."""
    networks, ports = list(state.all("network")), list(state.all("port"))
    numbers = network_numbers(networks)
    overlay = {r.id for r in networks if r.body.get("provider:network_type") in OVERLAY_TYPES}
    members: dict[str, list[IPNetwork]] = {}        # security group -> its ports' addresses
    tagged: dict[str, list[IPNetwork]] = {}         # user group -> its ports' addresses
    for record in ports:
        mine = addresses_of(record.body)
        for group in record.body.get("security_groups") or ():
            members.setdefault(group, []).extend(mine)
        for tag in record.body.get("user_groups") or ():
            tagged.setdefault(tag, []).extend(mine)
    sets = {g.id: g.body.get("addresses") or [] for g in state.all("address_group")}
    problems: dict[str, str] = {}
    rules = group_rules(state.all("security_group"), state.all("security_group_rule"), members, sets, problems)
    policies = build_policies(state.all("firewall_policy"), state.all("firewall_rule"), sets, tagged, problems)
    firewall_of: dict[str, Record] = {}
    for group in sorted(state.all("firewall_group"), key=lambda r: (r.created_at, r.id)):
        if group.body.get("admin_state_up", True):
            for port_id in group.body.get("ports") or ():
                firewall_of.setdefault(port_id, group)
    model = Model({}, problems)
    for record in ports:
        body = record.body
        if not body.get("mac_address") or not body.get("admin_state_up", True):
            continue
        security = bool(body.get("port_security_enabled", True)) and \
            not (body.get("device_owner") or "").startswith("network:")
        group = firewall_of.get(record.id)
        egress = ingress = None
        if group is not None:
            egress = policies.get(group.body.get("egress_firewall_policy_id") or "")
            ingress = policies.get(group.body.get("ingress_firewall_policy_id") or "")
        place = place_of(body, datapaths)
        if not (security or egress is not None or ingress is not None) or not isinstance(place, tuple):
            continue
        network = body.get("network_id", "")
        model.ports[record.id] = Guarded(
            record.id, body["mac_address"].lower(), place, numbers.get(network) if network in overlay else None,
            security, tuple(r for g in body.get("security_groups") or () for r in rules.get(g, ())), egress, ingress,
            tuple(addresses_of(body)))
    for port in model.ports.values():
        for net in port.addresses:
            if net.num_addresses == 1:
                model.at.setdefault((port.network, net.network_address), port)
    return model


def addresses_of(body: dict) -> list[IPNetwork]:
    """A port's addresses: its fixed IPs and allowed address pairs."""
    out = []
    for text in [f.get("ip_address") for f in body.get("fixed_ips") or () if isinstance(f, dict)] + \
                [p.get("ip_address") for p in body.get("allowed_address_pairs") or () if isinstance(p, dict)]:
        try:
            out.append(ipaddress.ip_network(text, strict=False))
        except (TypeError, ValueError):
            pass
    return out
