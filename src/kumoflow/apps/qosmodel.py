"""QoS policies as a pure model: what the `qos` app enforces at each tenant
port, made from the desired state (Neutron's QoS policies and rules, the
ports' and networks' ``qos_policy_id``), the `tenants` app's overlay (where
each port is plugged) and the queues the switches report. Nothing here
talks to a switch.

Which policy a port has (Neutron's rule): its own ``qos_policy_id``; else
its network's, unless the port belongs to the network itself
(``device_owner`` ``network:...``: router interfaces, DHCP), which a
network's policy leaves alone. Only ports bound to a switch port are
enforced (not those behind an L2 gateway's segment nor those on an endpoint
without OpenFlow).

What a policy's rules become:

``bandwidth_limit``   a `Limit` per direction: ``max_kbps``, and a burst of
                      ``max_burst_kbps`` kilobits, or 80 % of ``max_kbps``
                      when that is 0 (what Neutron's Open vSwitch and Linux
                      bridge agents use then). ``max_kbps`` 0 limits
                      nothing (Open vSwitch's ``ingress_policing_rate`` 0
                      neither).
``dscp_marking``      the mark set on what the port sends.
``minimum_bandwidth`` egress: the queue chosen for the port (`choose_queue`);
                      ingress: not enforced (Neutron's own agents use it for
                      placement only).

An *aggregate* policy caps a whole project: a policy tagged
``aggregate:PROJECT`` whose owner is PROJECT itself or the admin (a cap the
operator sets in the admin's project is out of the tenant's sight and
reach; one naming another project from a tenant's own policy is ignored).
Its egress bandwidth_limit rule is what all of the project's ports on one
switch may send together (the network's own ports aside, as above). Its
other rules cap nothing (reported in `Model.problems`); attached to a port
or a network it is also an ordinary policy there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from kumoflow import ofp
from kumoflow.apps.overlay import Overlay
from kumoflow.store import Record

#: the admin's project (kumoflow.api.neutron.common.ADMIN_PROJECT)
ADMIN_PROJECT = "admin"
AGGREGATE_TAG = "aggregate:"
#: the burst of a bandwidth_limit rule without one: this share of max_kbps, in kilobits
DEFAULT_BURST = 0.8
#: a queue rate property above this (tenths of a percent) is disabled (OpenFlow 1.3.5, 7.2.2)
RATE_DISABLED = 1000

#: a switch's queues: port number -> queue id -> (min kbit/s, max kbit/s), None where not reported
Queues = Mapping[int, Mapping[int, tuple[int | None, int | None]]]


@dataclass(frozen=True)
class Limit:
    """A bandwidth_limit rule as a meter's drop band."""
    rule: str
    kbps: int
    burst: int          # kilobits

    @classmethod
    def of(cls, rule: Record) -> "Limit | None":
        kbps = rule.body.get("max_kbps") or 0
        if kbps <= 0:
            return None
        burst = rule.body.get("max_burst_kbps") or max(1, int(kbps * DEFAULT_BURST))
        return cls(rule.id, kbps, burst)


@dataclass(frozen=True)
class Policy:
    id: str
    project: str
    egress: Limit | None = None
    ingress: Limit | None = None
    dscp: tuple[str, int] | None = None          # (rule id, mark)
    minimum: tuple[str, int] | None = None       # egress: (rule id, min kbit/s)
    caps: str | None = None                      # the project an aggregate policy caps


@dataclass(frozen=True)
class PortQos:
    """What is enforced at one port, on its own switch."""
    id: str
    project: str
    policy: str | None              # its policy (None: only its project's cap)
    inherited: bool                 # the policy is its network's
    place: tuple[int, int]
    network: int                    # the network's number (metadata)
    macs: tuple[str, ...]           # its MAC and its allowed address pairs'
    egress: Limit | None = None
    ingress: Limit | None = None
    dscp: int | None = None
    minimum: tuple[str, int] | None = None
    queue: int | None = None        # the egress queue that guarantees `minimum`
    unguaranteed: str | None = None     # why no queue does (neither: the switch's queues are not read yet)
    cap: str | None = None          # its project's aggregate policy


@dataclass
class Model:
    policies: dict[str, Policy] = field(default_factory=dict)
    ports: dict[str, PortQos] = field(default_factory=dict)
    #: project -> its aggregate policy (the one whose egress limit is lowest when several are)
    caps: dict[str, Policy] = field(default_factory=dict)
    #: object (a rule, a policy) -> what is not enforced of it, and why
    problems: dict[str, str] = field(default_factory=dict)

    def capped_on(self, dpid: int, project: str) -> list[PortQos]:
        return [p for p in self.ports.values() if p.cap is not None and p.project == project and p.place[0] == dpid]


def policies(state: Any, problems: dict[str, str]) -> dict[str, Policy]:
    """Every QoS policy with its rules."""
    rules: dict[str, list[Record]] = {}
    for rule in sorted(state.all("qos_rule"), key=lambda r: (r.created_at, r.id)):
        rules.setdefault(rule.body.get("qos_policy_id", ""), []).append(rule)
    out = {}
    for record in state.all("qos_policy"):
        values: dict[str, Any] = {}
        for rule in rules.get(record.id, ()):
            kind, direction = rule.body.get("type"), rule.body.get("direction", "egress")
            if kind == "bandwidth_limit":
                values[direction] = Limit.of(rule)
            elif kind == "dscp_marking":
                values["dscp"] = (rule.id, int(rule.body.get("dscp_mark", 0)))
            elif kind == "minimum_bandwidth" and direction == "egress":
                values["minimum"] = (rule.id, int(rule.body.get("min_kbps", 0)))
            elif kind == "minimum_bandwidth":
                problems[rule.id] = "an ingress minimum_bandwidth rule is not enforced (no switch queues delivery)"
        caps = [t[len(AGGREGATE_TAG):] for t in record.body.get("tags") or () if t.startswith(AGGREGATE_TAG)]
        for project in caps:
            if record.project_id in (project, ADMIN_PROJECT):
                values["caps"] = project
            else:
                problems[record.id] = (f"tag {AGGREGATE_TAG}{project} is ignored: only the admin or {project} "
                                       "itself may cap that project")
        out[record.id] = Policy(record.id, record.project_id, **values)
    return out


def build(state: Any, overlay: Overlay, queues: Mapping[int, Queues]) -> Model:
    """The model: `queues` maps each switch up to the queues it reported."""
    model = Model()
    model.policies = policies(state, model.problems)
    for policy in sorted(model.policies.values(), key=lambda p: p.id):
        if policy.caps is None:
            continue
        if policy.egress is None:
            model.problems[policy.id] = "an aggregate policy without an egress bandwidth_limit rule caps nothing"
            continue
        if policy.ingress is not None or policy.dscp is not None or policy.minimum is not None:
            model.problems[policy.id] = ("an aggregate policy caps what the project's ports send only: its "
                                         "other rules apply where it is attached, not to the project")
        held = model.caps.get(policy.caps)
        if held is None or policy.egress.kbps < held.egress.kbps:
            model.caps[policy.caps] = policy
    networks = {r.id: r for r in state.all("network")}
    for port in overlay.ports.values():
        record = state.get("port", port.id)
        net = overlay.networks.get(port.network)
        if record is None or net is None or port.remote or port.vlan is not None:
            continue
        policy_id, inherited = record.body.get("qos_policy_id"), False
        the_networks = str(record.body.get("device_owner") or "").startswith("network:")
        if policy_id is None and not the_networks:
            network = networks.get(port.network)
            policy_id, inherited = (network.body.get("qos_policy_id") if network is not None else None), True
        policy = model.policies.get(policy_id) if policy_id else None
        cap = model.caps.get(record.project_id) if not the_networks else None
        if policy is None and cap is None:
            continue
        values: dict[str, Any] = {}
        if policy is not None:
            values = dict(egress=policy.egress, ingress=policy.ingress,
                          dscp=policy.dscp[1] if policy.dscp else None, minimum=policy.minimum)
            if policy.minimum is not None and port.place[0] in queues:     # (not read yet: neither)
                values["queue"], values["unguaranteed"] = choose_queue(
                    queues[port.place[0]], uplinks(overlay, port.place[0], queues), policy.minimum[1])
        macs = tuple(sorted({port.mac, *(mac for mac, _ in port.pairs)}))
        model.ports[port.id] = PortQos(port.id, record.project_id, policy.id if policy else None, inherited,
                                       port.place, net.number, macs, cap=cap.id if cap else None, **values)
    return model


def uplinks(overlay: Overlay, dpid: int, queues: Mapping[int, Queues]) -> list[int]:
    """The ports of a switch a tenant port's frames leave it by towards others: those the
    overlay holds for no VM nor segment (tunnel ports, links to other switches)."""
    claimed = overlay.claimed()
    return sorted(p for p in queues.get(dpid, {}) if (dpid, p) not in claimed and p <= ofp.OFPP.MAX)


def choose_queue(queues: Queues, ports: list[int], min_kbps: int) -> tuple[int | None, str | None]:
    """The queue id that guarantees `min_kbps` on every port of `ports` that has queues with
    a min rate (set_queue names one id for whichever port a frame leaves by): of those
    that do, the one whose guarantee is smallest (its largest over the ports, then the
    lowest id). -> (queue id, None), or (None, why none does)."""
    rated = {p: {q: rates[0] for q, rates in queues.get(p, {}).items() if rates[0] is not None} for p in ports}
    rated = {p: qs for p, qs in rated.items() if qs}
    if not rated:
        unrated = sorted(p for p in ports if any(q for q in queues.get(p, {})))
        if unrated:
            return None, (f"port(s) {', '.join(map(str, unrated))} have queues but report no min rate "
                          "(Open vSwitch does not over OpenFlow: declare them in the option queue_rates)")
        return None, "no uplink of the switch has a queue with a min rate"
    fits = None
    for queue_id in sorted(set.intersection(*(set(qs) for qs in rated.values()))):
        rates = [qs[queue_id] for qs in rated.values()]
        if min(rates) >= min_kbps and (fits is None or (max(rates), queue_id) < fits):
            fits = (max(rates), queue_id)
    if fits is None:
        best = max(max(qs.values()) for qs in rated.values())
        return None, (f"no queue on port(s) {', '.join(map(str, sorted(rated)))} guarantees {min_kbps} kbit/s "
                      f"(the most any guarantees: {best} kbit/s)")
    return fits[1], None


def queue_rates(reply_queues: list[ofp.PacketQueue], speeds: Mapping[int, int], names: Mapping[int, str] | None = None,
                declared: Mapping[str, Mapping[int, tuple]] | None = None) -> dict[int, dict[int, tuple]]:
    """A QUEUE_GET_CONFIG reply's queues as kbit/s: its rate properties are tenths of a percent
    of the port's current speed (`speeds`, kbit/s, from PORT_DESC); above 1000, disabled. A queue
    reported without rates takes those `declared` for its port's name (`names`), if any."""
    out: dict[int, dict[int, tuple]] = {}
    for queue in reply_queues:
        speed = speeds.get(queue.port, 0)
        rates = [None, None]
        for prop in queue.properties:
            slot = 0 if isinstance(prop, ofp.QueuePropMinRate) else 1 if isinstance(prop, ofp.QueuePropMaxRate) \
                else None
            if slot is not None and prop.rate <= RATE_DISABLED and speed:
                rates[slot] = prop.rate * speed // RATE_DISABLED
        if not any(isinstance(p, (ofp.QueuePropMinRate, ofp.QueuePropMaxRate)) for p in queue.properties):
            rates = list((declared or {}).get((names or {}).get(queue.port, ""), {}).get(queue.queue_id, rates))
        out.setdefault(queue.port, {})[queue.queue_id] = (rates[0], rates[1])
    return out


def parse_queue_rates(text: str) -> dict[str, dict[int, tuple[int | None, int | None]]]:
    """The ``queue_rates`` option: ``PORT:QUEUE:min=KBPS[,max=KBPS]`` items (as the kumoflow switch's
    ``--queue``), separated by spaces or ``;``, PORT a port's name -> {name: {queue: (min, max)}}."""
    out: dict[str, dict[int, tuple[int | None, int | None]]] = {}
    for item in text.replace(";", " ").split():
        port, _, rest = item.partition(":")
        queue, _, rates = rest.partition(":")
        values: dict[str, int] = {}
        for part in rates.split(","):
            key, eq, value = part.partition("=")
            if key not in ("min", "max") or not eq or not value.isdigit() or key in values:
                values = {}
                break
            values[key] = int(value)
        if not port or not queue.isdigit() or not values:
            raise ValueError(f"queue_rates item {item!r}: expected PORT:QUEUE:min=KBPS[,max=KBPS]")
        out.setdefault(port, {})[int(queue)] = (values.get("min"), values.get("max"))
    return out
