"""`qos`: Neutron QoS policies enforced as flows and meters at each tenant
port, on the port's own switch (qosmodel.py says which policy a port has
and what each rule becomes).

Where: three tables of the pipeline (controller/pipeline.py), each
matching only the ports whose policy needs it; every other frame misses
and goes on.

``from_port_qos``     what the port sends (by in_port, after port security
                      and the network stage, before the firewall): its
                      egress bandwidth_limit meter, its DSCP mark on IPv4
                      and IPv6 (set_field ip_dscp), and the egress queue of
                      its minimum_bandwidth rule (set_queue; the switch's
                      queues are read with QUEUE_GET_CONFIG).
``from_project_qos``  then its project's aggregate meter, shared by the
                      project's ports on the switch (an OpenFlow flow entry
                      carries one meter: a port with both needs two tables).
``to_port_qos``       what is delivered to the port (by its MAC in its
                      network), after routing and before the firewall's
                      to_port and forward: its ingress bandwidth_limit
                      meter. Every frame for the port passes here on its
                      own switch, bridged or routed, come through a tunnel
                      or not (the router goes on to the stage after snat).

Meters: one per port and direction, one per capped project, on each switch
that needs them; KBPS, a drop band at the rule's rate and burst, STATS.
Their ids come from the app's block (1,024 a switch), a hash of what they
are for probed past those taken and kept while it lasts, so a restarted
controller finds the same ids in use.

Switch by switch the app reads the queues (QUEUE_GET_CONFIG, when the
switch comes up, when a port changes, and every ``interval``; a queue
reported without rates, as Open vSwitch reports all of its queues, takes
those the option ``queue_rates`` declares for its port's name) and the meter
counters (METER_STATS every ``interval``, the reply handled when it comes;
a switch whose last reply has not come is skipped). A meter's counters are
added to its policy and rule: what the meter saw and what its band dropped,
never going backwards (a meter installed again counts from 0 and all it
holds is added, as are a band's counters that went back when its meter
was modified; what a meter counted between the last poll and its deletion
is lost).

A port whose minimum_bandwidth no queue guarantees keeps its other rules;
it is logged once, counted (``kumoflow_qos_minimum_bandwidth_unguaranteed``)
and told by ``GET /v2.0/ports/{id}/qos``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Hashable, Iterable

from kumoflow import ofp
from kumoflow.apps import options as check
from kumoflow.apps.qosmodel import Limit, Model, PortQos, build, parse_queue_rates, queue_rates
from kumoflow.controller import Flow, Meter, ModelApp, pipeline

NETWORK = pipeline.METADATA["network"]
KIND_PORT = 1
PORT_PRIORITY, DSCP_PRIORITY = 100, 110
IPV4_TYPE, IPV6_TYPE = 0x0800, 0x86DD
METER_FLAGS = ofp.OFPMF.KBPS | ofp.OFPMF.BURST | ofp.OFPMF.STATS
DEFAULT_INTERVAL = 10.0
#: a meter whose install time moved later by more than this (seconds) is another meter
REINSTALLED = 1.0
FIELDS = ("packets", "bytes", "dropped_packets", "dropped_bytes")


@dataclass(frozen=True)
class Owner:
    """What a meter counts for."""
    policy: str
    rule: str
    direction: str
    aggregate: bool


@dataclass
class RuleUsage:
    """What one bandwidth_limit rule's meters counted, on every port and switch; times are
    the core's clock."""
    owner: Owner
    since: float
    updated: float
    packets: int = 0
    bytes: int = 0
    dropped_packets: int = 0
    dropped_bytes: int = 0


class QosApp(ModelApp):
    name = "qos"
    tables = ("from_port_qos", "from_project_qos", "to_port_qos")
    requires = ("tenants",)
    model_kinds = frozenset(("network", "port", "qos_policy", "qos_rule"))

    def __init__(self, interval: float = DEFAULT_INTERVAL, queue_rates: str = "", **options: Any) -> None:
        super().__init__(**options)
        self.interval = check.seconds("interval", interval)
        if not isinstance(queue_rates, str):
            raise ValueError(f"queue_rates {queue_rates!r}: expected PORT:QUEUE:min=KBPS[,max=KBPS] items")
        #: port name -> queue id -> (min, max) kbit/s: the rates of queues a switch reports without them
        self.queue_rates = parse_queue_rates(queue_rates)
        self.model = Model()
        #: dpid -> port -> queue id -> (min, max) kbit/s, as the switch last reported them
        self.queues: dict[int, dict[int, dict[int, tuple]]] = {}
        #: dpid -> what a meter is for (("egress" | "ingress", port id) or ("cap", project)) -> meter id
        self.meters: dict[int, dict[tuple[str, str], int]] = {}
        self._owners: dict[tuple[int, int], Owner] = {}
        #: policy id -> (rule id, aggregate) -> totals
        self.usage: dict[str, dict[tuple[str, bool], RuleUsage]] = {}
        #: (dpid, meter id) -> (owner, install time, counters) at the last poll
        self._seen: dict[tuple[int, int], tuple[Owner | None, float, tuple[int, ...]]] = {}
        self._asking: set[int] = set()
        self.polls = 0
        self._problems: dict[str, str] = {}

    def start(self) -> None:
        super().start()
        self.core.call_every(self.interval, self.poll)

    # --- the model -----------------------------------------------------------------

    def rebuild(self) -> None:
        old, old_meters = self.model, self.meters
        new = build(self.core.state, self.peers["tenants"].overlay, self.queues)
        self.model, self.meters = new, self._assign(new)
        self._owners = {}
        for port in new.ports.values():
            dpid = port.place[0]
            for direction, limit in (("egress", port.egress), ("ingress", port.ingress)):
                if limit is not None and (direction, port.id) in self.meters.get(dpid, {}):
                    self._owners[(dpid, self.meters[dpid][(direction, port.id)])] = \
                        Owner(port.policy, limit.rule, direction, False)
            cap = new.caps.get(port.project) if port.cap else None
            if cap is not None and ("cap", port.project) in self.meters.get(dpid, {}):
                self._owners[(dpid, self.meters[dpid][("cap", port.project)])] = \
                    Owner(cap.id, cap.egress.rule, "egress", True)
        for port_id in set(old.ports) | set(new.ports):
            if self._signature(old, old_meters, port_id) != self._signature(new, self.meters, port_id):
                self.changed(("port", port_id))
        for project in set(old.caps) | set(new.caps):
            before = (old.caps.get(project), {d: m.get(("cap", project)) for d, m in old_meters.items()})
            after = (new.caps.get(project), {d: m.get(("cap", project)) for d, m in self.meters.items()})
            if before != after:
                self.changed(("cap", project))
        self._tell(new)

    @staticmethod
    def _signature(model: Model, meters: dict, port_id: str) -> tuple:
        port = model.ports.get(port_id)
        if port is None:
            return (None,)
        mine = meters.get(port.place[0], {})
        return (port, mine.get(("egress", port_id)), mine.get(("ingress", port_id)), mine.get(("cap", port.project)))

    def _assign(self, model: Model) -> dict[int, dict[tuple[str, str], int]]:
        """Meter ids on each switch: those in use kept, new ones from a hash of what they are for
        (in sorted order: a restarted controller makes the same)."""
        wanted: dict[int, set[tuple[str, str]]] = {}
        for port in model.ports.values():
            keys = wanted.setdefault(port.place[0], set())
            keys |= {(d, port.id) for d, limit in (("egress", port.egress), ("ingress", port.ingress)) if limit}
            if port.cap is not None:
                keys.add(("cap", port.project))
        space = len(self.meter_ids)
        out = {}
        for dpid, keys in wanted.items():
            held = {k: m for k, m in self.meters.get(dpid, {}).items() if k in keys}
            taken = {m - self.meter_ids.start for m in held.values()}
            for key in sorted(keys - set(held)):
                if len(taken) >= space - 1:
                    model.problems[f"meters:{dpid:#x}"] = (f"switch {dpid:#x}: all {space - 1} meter ids of the "
                                                           "app are taken; some limits are not enforced there")
                    break
                held[key] = self.meter_ids.start + pipeline.hashed_number(repr(key), space, taken)
            out[dpid] = held
        return out

    def _tell(self, model: Model) -> None:
        """Log each problem once, when it appears."""
        problems = dict(model.problems)
        problems.update({f"minimum:{p.id}": f"port {p.id}: minimum_bandwidth {p.minimum[1]} kbit/s is not "
                                            f"guaranteed: {p.unguaranteed}"
                         for p in model.ports.values() if p.unguaranteed})
        for key, text in sorted(problems.items()):
            if self._problems.get(key) != text:
                self.log.warning("%s", text)
        self._problems = problems

    # --- compiling -------------------------------------------------------------------

    def owners(self) -> Iterable[Hashable]:
        for port_id in self.model.ports:
            yield ("port", port_id)
        for project in self.model.caps:
            yield ("cap", project)

    def compile(self, key: Hashable, dp) -> list:
        kind, subject = key
        if kind == "port":
            port = self.model.ports.get(subject)
            return self._compile_port(port) if port is not None and port.place[0] == dp.id else []
        if kind == "cap":
            cap, meter = self.model.caps.get(subject), self.meters.get(dp.id, {}).get(("cap", subject))
            return [_meter(meter, cap.egress)] if cap is not None and meter is not None else []
        return []

    def _compile_port(self, port: PortQos) -> list:
        dpid, port_no = port.place
        meters = self.meters.get(dpid, {})
        cookie = self.cookie(KIND_PORT << 48 | zlib.crc32(port.id.encode()))
        entries: list = []
        out, after_out = self.table("from_port_qos"), pipeline.next_table("from_port_qos")
        metered: list[ofp.Instruction] = []
        if port.egress is not None and ("egress", port.id) in meters:
            entries.append(_meter(meters[("egress", port.id)], port.egress))
            metered.append(ofp.Meter(meters[("egress", port.id)]))
        queue = [ofp.SetQueue(port.queue)] if port.queue is not None else []
        if metered or queue or port.dscp is not None:
            if port.dscp is not None:
                entries += [Flow(out, DSCP_PRIORITY, ofp.Match(in_port=port_no, eth_type=eth_type),
                                 [*metered, ofp.ApplyActions([ofp.SetField("ip_dscp", port.dscp), *queue]),
                                  ofp.GotoTable(after_out)], cookie) for eth_type in (IPV4_TYPE, IPV6_TYPE)]
            entries.append(Flow(out, PORT_PRIORITY, ofp.Match(in_port=port_no),
                                [*metered, *([ofp.ApplyActions(queue)] if queue else []), ofp.GotoTable(after_out)],
                                cookie))
        if port.cap is not None and ("cap", port.project) in meters:
            entries.append(Flow(self.table("from_project_qos"), PORT_PRIORITY, ofp.Match(in_port=port_no),
                                [ofp.Meter(meters[("cap", port.project)]),
                                 ofp.GotoTable(pipeline.next_table("from_project_qos"))], cookie))
        if port.ingress is not None and ("ingress", port.id) in meters:
            meter = meters[("ingress", port.id)]
            entries.append(_meter(meter, port.ingress))
            in_net = (NETWORK.value(port.network), NETWORK.mask)
            entries += [Flow(self.table("to_port_qos"), PORT_PRIORITY, ofp.Match(metadata=in_net, eth_dst=mac),
                             [ofp.Meter(meter), ofp.GotoTable(pipeline.next_table("to_port_qos"))], cookie)
                        for mac in port.macs]
        return entries

    # --- queues and meter counters, switch by switch -----------------------------------------

    def switch_up(self, dp) -> None:
        super().switch_up(dp)
        self._read_queues(dp)

    def switch_down(self, dp) -> None:
        super().switch_down(dp)
        self._asking.discard(dp.id)
        self.queues.pop(dp.id, None)

    def port_status(self, dp, msg: ofp.PortStatus) -> None:
        super().port_status(dp, msg)
        self._read_queues(dp)

    def _read_queues(self, dp) -> None:
        dp.expect(ofp.QueueGetConfigRequest(port=ofp.OFPP.ANY), lambda reply: self._queues_read(dp, reply))

    def _queues_read(self, dp, reply: Any) -> None:
        if self.core.datapaths.get(dp.id) is not dp:
            return
        if isinstance(reply, Exception):
            self.log.debug("%s: no queue configuration: %s", dp.name, reply)
            queues = {}
        else:
            queues = queue_rates(reply.queues, {n: p.curr_speed for n, p in dp.ports.items()},
                                 {n: p.name for n, p in dp.ports.items()}, self.queue_rates)
        if self.queues.get(dp.id) != queues:
            self.queues[dp.id] = queues
            self.rebuild_soon()

    def poll(self) -> None:
        """Ask every switch up with meters of the app's for their counters (and its queues)."""
        for dp in list(self.core.datapaths.values()):
            if dp.is_up and dp.id not in self._asking and self.meters.get(dp.id):
                self._asking.add(dp.id)
                dp.expect(ofp.MeterStatsRequest(meter_id=ofp.OFPM.ALL), lambda reply, dp=dp: self._count(dp, reply))
            if dp.is_up:
                self._read_queues(dp)

    def _count(self, dp, reply: Any) -> None:
        """Add what each of the app's meters counted since the switch's last reply to its
        policy's rule: to the owner it had then (a new meter's: to its owner now)."""
        self._asking.discard(dp.id)
        if isinstance(reply, Exception):
            self.log.debug("%s: no meter counters this time: %s", dp.name, reply)
            return
        now, block = self.core.now(), self.meter_ids
        seen = {}
        for stats in reply.body:
            if stats.meter_id not in block:
                continue
            key = (dp.id, stats.meter_id)
            band = stats.band_stats[0] if stats.band_stats else ofp.MeterBandStats(0, 0)
            counters = (stats.packet_in_count, stats.byte_in_count, band.packet_band_count, band.byte_band_count)
            installed = now - stats.duration_sec - stats.duration_nsec / 1e9
            owner, before = self._owners.get(key), self._seen.get(key)
            if before is None or installed > before[1] + REINSTALLED:
                credit, delta = owner, counters
            else:       # a pair that went back restarted (a meter modified in place may restart its bands')
                credit, installed = before[0], before[1]
                delta = ()
                for now_pair, then in ((counters[:2], before[2][:2]), (counters[2:], before[2][2:])):
                    went_back = any(c < b for c, b in zip(now_pair, then))
                    delta += now_pair if went_back else tuple(c - b for c, b in zip(now_pair, then))
            seen[key] = (owner, installed, counters)
            if credit is not None and any(delta) and credit.policy in self.model.policies:
                totals = self.usage.setdefault(credit.policy, {}).setdefault(
                    (credit.rule, credit.aggregate), RuleUsage(credit, installed, now))
                totals.since = min(totals.since, installed)
                totals.updated = now
                for name, value in zip(FIELDS, delta):
                    setattr(totals, name, getattr(totals, name) + value)
        self._seen = {k: v for k, v in self._seen.items() if k[0] != dp.id}
        self._seen.update(seen)
        self.polls += 1

    def record_changed(self, change) -> None:
        super().record_changed(change)
        if change.kind == "qos_policy" and change.record is None:
            self.usage.pop(change.id, None)       # its meters' series end

    # --- what the API and /metrics read -----------------------------------------------

    def policy_usage(self, policy_id: str) -> list[RuleUsage]:
        return sorted(self.usage.get(policy_id, {}).values(), key=lambda u: (u.owner.rule, u.owner.aggregate))

    def metrics(self) -> Iterable[tuple]:
        yield "ports", "Tenant ports with a QoS policy or a project cap enforced", "gauge", len(self.model.ports)
        yield "meters", "Meters of the qos app, on all switches", "gauge", sum(map(len, self.meters.values()))
        yield "polls_total", "Meter counter replies of switches handled", "counter", self.polls
        unguaranteed = sorted((p for p in self.model.ports.values() if p.unguaranteed), key=lambda p: p.id)
        yield ("minimum_bandwidth_unguaranteed_ports", "Ports whose minimum_bandwidth rule no switch queue "
               "guarantees", "gauge", len(unguaranteed))
        for port in unguaranteed:
            yield ("minimum_bandwidth_unguaranteed", "1 for a port whose minimum_bandwidth rule no switch queue "
                   "guarantees", "gauge", 1, {"port": port.id, "policy": port.policy, "project": port.project})
        for policy_id in sorted(self.usage):
            for totals in self.policy_usage(policy_id):
                labels = {"policy": policy_id, "rule": totals.owner.rule, "direction": totals.owner.direction,
                          "scope": "project" if totals.owner.aggregate else "port"}
                for name in FIELDS:
                    yield (f"policy_{name}_total", f"QoS policy {name.replace('_', ' ')}: what its bandwidth "
                           "limit meters saw (dropped: over the limit)", "counter", getattr(totals, name), labels)


def _meter(meter_id: int, limit: Limit) -> Meter:
    return Meter(meter_id, METER_FLAGS, [ofp.MeterBandDrop(limit.kbps, limit.burst)])
