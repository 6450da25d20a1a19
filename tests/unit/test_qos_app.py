"""The qos app in memory: QoS policies and rules as desired-state records on tenant
VMs of two hypervisors (memnet switches running the kumoflow datapath, a fake
clock). Asserts the meters each switch holds, what the meters let through, the
DSCP of what is delivered, the queue frames leave by, that changes and removals
reach the switches, and the usage counted from the meters."""

import asyncio
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kumoflow import ofp
from kumoflow.apps import load_app
from kumoflow.apps.qos import QosApp
from kumoflow.apps.qosmodel import choose_queue
from kumoflow.apps.tenants import TenantsApp
from kumoflow.controller import pipeline
from kumoflow.packet import UDP, Ethernet, IPv4, IPv6, parse
from kumoflow.store import Change, Record
from kumoflow.switch.qos import PortQos, QueueRates

from test_tenants import Cloud, record
from test_usage import ADMIN, ok, vm, with_apps

MAC = {"a": "fa:16:3e:00:01:0a", "b": "fa:16:3e:00:01:0b", "c": "fa:16:3e:00:01:0c", "d": "fa:16:3e:00:01:0d"}
IP = {"a": "10.3.0.10", "b": "10.3.0.11", "c": "10.3.0.12", "d": "10.3.0.13"}
INTERVAL = 5.0
BLOCK = pipeline.meter_block(pipeline.FUNCTIONS["qos"])
FROM_PORT_QOS, FROM_PROJECT_QOS, TO_PORT_QOS = (pipeline.table_id(n) for n in
                                                ("from_port_qos", "from_project_qos", "to_port_qos"))


def udp(src, dst, size=1000, tos=0):
    """A UDP frame of `size` bytes from VM src to VM dst."""
    head = Ethernet(src=MAC[src], dst=MAC[dst]) / IPv4(src=IP[src], dst=IP[dst], tos=tos) / UDP(sport=5000, dport=5001)
    return bytes(head / bytes(size - len(bytes(head))))


class Shaped(Cloud):
    """VMs a (s1 port 1), c (s1 port 2, project pB), d (s1 port 3) and b (s2 port 1) on one VXLAN
    network of project pA (c's port is pB's); `policies` name -> (rules, tags, project)."""

    def __init__(self, policies=None, attach=None, network_policy=None, **options):
        self.qos = QosApp(interval=INTERVAL, **options)
        super().__init__(apps=[self.qos])
        self.policy, self.rules = {}, {}
        for name, (rules, *more) in (policies or {}).items():
            tags, project = more[0] if more else [], more[1] if len(more) > 1 else "pA"
            self.policy[name] = record("qos_policy", project, name=name, tags=list(tags))
            self.records.append(self.policy[name])
            for n, body in enumerate(rules):
                rule = record("qos_rule", project, qos_policy_id=self.policy[name].id, **body)
                self.rules[f"{name}.{n}"] = rule
                self.records.append(rule)
        self.net = record("network", "pA", **{"provider:network_type": "vxlan", "provider:segmentation_id": 5003,
                                              "qos_policy_id": self.policy[network_policy].id if network_policy
                                              else None})
        self.records.append(self.net)
        attach = attach or {}
        for name, (switch, port_no, project) in {"a": (1, 1, "pA"), "c": (1, 2, "pB"), "d": (1, 3, "pA"),
                                                 "b": (2, 1, "pA")}.items():
            policy = self.policy[attach[name]].id if name in attach else None
            self.vm(name, switch, port_no, self.net, IP[name], MAC[name], qos_policy_id=policy)
            if project != "pA":
                old = self.ports[name]
                self.ports[name] = Record(old.kind, old.id, project, old.revision, old.created_at, old.updated_at,
                                          old.body)
                self.records[self.records.index(old)] = self.ports[name]

    def change(self, kind, old, new):
        state = self.mem.core.state
        state.apply([Change(state.revision + 1, kind, (old or new).id, new, old)])
        self.mem.run()

    def edit(self, old, **body):
        new = Record(old.kind, old.id, old.project_id, old.revision + 1000, old.created_at, old.updated_at,
                     {**old.body, **body})
        self.change(old.kind, old, new)
        return new

    def meters(self, switch):
        """meter id -> (flags, [(rate, burst)]) of the qos app's meters on a switch."""
        reply = self.s[switch].dp.handle(ofp.MeterConfigRequest())
        return {m.meter_id: (m.flags, [(b.rate, b.burst_size) for b in m.bands])
                for part in reply for m in part.body if m.meter_id in BLOCK}

    def burst(self, src, dst, n, size=1000):
        """n frames from src to dst at one instant: how many arrived."""
        got = 0
        for _ in range(n):
            got += len(self.send(self.vms[src], udp(src, dst, size))[dst])
        return got

    def poll(self):
        before = self.qos.polls
        for _ in range(int(INTERVAL * 10) + 1):
            self.mem.advance(0.1)
            if self.qos.polls > before:
                return self
        raise AssertionError("no poll")


LIMITS = [{"type": "bandwidth_limit", "max_kbps": 80, "max_burst_kbps": 0, "direction": "egress"},
          {"type": "bandwidth_limit", "max_kbps": 2000, "max_burst_kbps": 40, "direction": "ingress"}]
KBPS = ofp.OFPMF.KBPS | ofp.OFPMF.BURST | ofp.OFPMF.STATS


def test_a_meter_per_port_and_direction_on_the_port_s_own_switch_with_neutron_s_burst():
    cloud = Shaped({"gold": (LIMITS,)}, attach={"a": "gold"}).start()
    meters = cloud.meters(1)
    # egress: 80 kbit/s, no burst given: 80 % of it (64 kbit); ingress as given
    assert sorted(meters.values()) == [(KBPS, [(80, 64)]), (KBPS, [(2000, 40)])]
    assert cloud.meters(2) == {}                                     # b has no policy: nothing on s2
    assert [f.match.get("in_port") for f in cloud.s[1].flows(FROM_PORT_QOS) if f.priority] == [1]
    delivered = [f for f in cloud.s[1].flows(TO_PORT_QOS) if f.priority]
    assert [f.match.get("eth_dst") for f in delivered] == [MAC["a"]]
    # 64 kbit of burst is 8 frames of 1,000 bytes at once; then 80 kbit/s: 10 frames a second
    assert cloud.burst("a", "b", 20) == 8
    cloud.mem.advance(0.5)
    assert cloud.burst("a", "b", 20) == 5
    assert cloud.burst("a", "d", 1) == 0                            # to a VM of the same switch too
    # ingress: 40 kbit of burst, 5 frames; what d (no policy) sends to a is metered, b to d is not
    assert cloud.burst("d", "a", 10) == 5
    assert cloud.burst("b", "d", 10) == 10


def test_a_port_s_own_policy_wins_over_its_network_s_and_network_ports_are_left_alone():
    slow = [{"type": "bandwidth_limit", "max_kbps": 1000, "max_burst_kbps": 0, "direction": "egress"}]
    fast = [{"type": "bandwidth_limit", "max_kbps": 5000, "max_burst_kbps": 0, "direction": "egress"}]
    cloud = Shaped({"slow": (slow,), "fast": (fast,)}, attach={"a": "fast"}, network_policy="slow")
    dhcp = cloud.records[cloud.records.index(cloud.ports["d"])]
    cloud.records[cloud.records.index(dhcp)] = Record(dhcp.kind, dhcp.id, dhcp.project_id, dhcp.revision,
                                                      dhcp.created_at, dhcp.updated_at,
                                                      {**dhcp.body, "device_owner": "network:dhcp"})
    cloud.start()
    ports = cloud.qos.model.ports
    assert (ports[cloud.ports["a"].id].policy, ports[cloud.ports["a"].id].inherited) == (cloud.policy["fast"].id,
                                                                                         False)
    assert ports[cloud.ports["b"].id].policy == cloud.policy["slow"].id and ports[cloud.ports["b"].id].inherited
    assert cloud.ports["d"].id not in ports                         # the network's own port
    assert sorted(v[1][0][0] for v in cloud.meters(1).values()) == [1000, 5000]     # c (pB): the network's
    assert [v[1][0][0] for v in cloud.meters(2).values()] == [1000]


def test_dscp_is_rewritten_in_what_the_port_sends_ipv4_and_ipv6():
    cloud = Shaped({"voice": ([{"type": "dscp_marking", "dscp_mark": 46}],)}, attach={"a": "voice"}).start()
    got = cloud.send(cloud.vms["a"], udp("a", "b", 200, tos=0x03))["b"]
    assert len(got) == 1 and parse(got[0])[IPv4].tos == 46 << 2 | 0x03      # the ECN bits kept
    v6 = bytes(Ethernet(src=MAC["a"], dst=MAC["b"]) / IPv6(src="fe80::f816:3eff:fe00:10a", dst="fe80::1", tc=0)
               / UDP(sport=1, dport=2) / b"x")
    got = cloud.send(cloud.vms["a"], v6)["b"]
    assert len(got) == 1 and parse(got[0])[IPv6].tc >> 2 == 46
    got = cloud.send(cloud.vms["b"], udp("b", "a", 200, tos=0x20))["a"]
    assert parse(got[0])[IPv4].tos == 0x20                          # what b sends is not marked
    assert cloud.meters(1) == {}                                    # no limit: no meter


CAP = [{"type": "bandwidth_limit", "max_kbps": 160, "max_burst_kbps": 0, "direction": "egress"}]


def test_an_aggregate_policy_caps_the_project_s_ports_on_each_switch_with_one_shared_meter():
    cloud = Shaped({"cap": (CAP, ["aggregate:pA"], "admin"), "own": (LIMITS,),
                    "sneaky": (CAP, ["aggregate:pA"], "pB")}, attach={"a": "own"}).start()
    assert cloud.qos.model.caps["pA"].id == cloud.policy["cap"].id      # pB's policy capping pA is ignored
    assert cloud.policy["sneaky"].id in cloud.qos.model.problems
    s1 = cloud.meters(1)
    assert sorted(s1.values()) == [(KBPS, [(80, 64)]), (KBPS, [(160, 128)]), (KBPS, [(2000, 40)])]
    [cap] = [m for m, v in s1.items() if v[1] == [(160, 128)]]
    capped = {f.match.get("in_port"): f.instructions[0].meter_id for f in cloud.s[1].flows(FROM_PROJECT_QOS)
              if f.priority}
    assert capped == {1: cap, 3: cap}                               # a and d (pA), not c (pB)
    assert [v[1] for v in cloud.meters(2).values()] == [[(160, 128)]]      # b's switch: a cap of its own
    # 128 kbit (16 frames) shared by a and d: a's own limit lets 8 through, d takes the other 8
    assert cloud.burst("a", "b", 20) == 8
    assert cloud.burst("d", "b", 20) == 8
    assert cloud.burst("c", "b", 20) == 20                          # pB is not capped
    cloud.mem.advance(1)                                            # 160 kbit/s: 20 frames, 16 at most
    assert cloud.burst("d", "b", 30) == 16


def test_the_queue_of_a_minimum_bandwidth_rule_is_the_smallest_that_guarantees_it():
    rates = {1: {0: (None, None), 1: (10_000, None), 2: (50_000, 80_000), 3: (None, 90_000)},
             2: {0: (None, None), 1: (20_000, None), 2: (50_000, None)}}
    assert choose_queue(rates, [1], 4000) == (1, None)
    assert choose_queue(rates, [1], 20_000) == (2, None)
    assert choose_queue(rates, [1, 2], 8000) == (1, None)          # on both ports
    assert choose_queue(rates, [1, 2], 15_000) == (2, None)        # queue 1 gives port 1 only 10,000
    assert choose_queue(rates, [1], 60_000)[1] == ("no queue on port(s) 1 guarantees 60000 kbit/s (the most any "
                                                   "guarantees: 50000 kbit/s)")
    assert "report no min rate" in choose_queue({1: {0: (None, None), 5: (None, None)}}, [1], 10)[1]
    assert "no uplink" in choose_queue({1: {0: (None, None)}}, [1], 10)[1]


def test_frames_of_a_port_with_minimum_bandwidth_leave_by_the_queue_the_switch_reported(caplog):
    policies = {"min": ([{"type": "minimum_bandwidth", "min_kbps": 4000, "direction": "egress"}],),
                "big": ([{"type": "minimum_bandwidth", "min_kbps": 90_000, "direction": "egress"}],)}
    cloud = Shaped(policies, attach={"a": "min", "d": "big"})
    uplink = cloud.s[1].ports[cloud.tunnels[(1, 2)]]
    uplink.curr_speed = 100_000                                     # 100 Mbit/s: rates in steps of 100 kbit/s
    uplink.set_qos(PortQos(queues={1: QueueRates(min_kbps=5000), 2: QueueRates(min_kbps=20_000),
                                   3: QueueRates(min_kbps=1000)}))
    with caplog.at_level(logging.WARNING, logger="kumoflow.app.qos"):
        cloud.start()
    a, d = cloud.qos.model.ports[cloud.ports["a"].id], cloud.qos.model.ports[cloud.ports["d"].id]
    assert (a.queue, a.unguaranteed) == (1, None)
    assert d.queue is None and "guarantees 90000 kbit/s (the most any guarantees: 20000" in d.unguaranteed
    assert sum("minimum_bandwidth 90000 kbit/s is not guaranteed" in r.message for r in caplog.records) == 1
    counted = uplink.queue_counters[1].tx_packets
    assert len(cloud.send(cloud.vms["a"], udp("a", "b"))["b"]) == 1
    assert uplink.queue_counters[1].tx_packets == counted + 1
    assert len(cloud.send(cloud.vms["d"], udp("d", "b"))["b"]) == 1      # unguaranteed: still delivered
    assert uplink.queue_counters[1].tx_packets == counted + 1
    metrics = {(m[0], tuple(sorted(m[4].items())) if len(m) > 4 else ()): m[3] for m in cloud.qos.metrics()}
    assert metrics[("minimum_bandwidth_unguaranteed_ports", ())] == 1
    assert metrics[("minimum_bandwidth_unguaranteed", (("policy", cloud.policy["big"].id),
                                                       ("port", cloud.ports["d"].id), ("project", "pA")))] == 1
    # the operator adds a bigger queue: the next read of the switch's queues (every interval) guarantees it
    uplink.set_qos(PortQos(queues={1: QueueRates(min_kbps=5000), 2: QueueRates(min_kbps=20_000),
                                   3: QueueRates(min_kbps=1000), 4: QueueRates(min_kbps=95_000)}))
    cloud.mem.advance(INTERVAL + 0.5)
    assert cloud.qos.model.ports[cloud.ports["d"].id].queue == 4


@pytest.mark.parametrize("declared, queue", [("", None), ("{uplink}:7:min=8000,max=9000 other:7:min=1", 7)])
def test_queues_a_switch_reports_without_rates_as_open_vswitch_does_take_the_rates_declared(declared, queue):
    uplink = "vxlan-0aff0002"           # s1's tunnel port to s2
    cloud = Shaped({"min": ([{"type": "minimum_bandwidth", "min_kbps": 4000, "direction": "egress"}],)},
                   attach={"a": "min"}, queue_rates=declared.format(uplink=uplink))
    cloud.s[1].ports[cloud.tunnels[(1, 2)]].add_queue(7)          # a queue id, no rate properties
    cloud.start()
    a = cloud.qos.model.ports[cloud.ports["a"].id]
    assert a.queue == queue
    if queue is None:
        assert "report no min rate (Open vSwitch does not over OpenFlow: declare them" in a.unguaranteed
    else:
        assert cloud.qos.queues[1][cloud.tunnels[(1, 2)]][7] == (8000, 9000)


def test_changes_reach_the_switches_and_a_policy_detached_or_deleted_leaves_nothing():
    cloud = Shaped({"gold": (LIMITS,), "voice": ([{"type": "dscp_marking", "dscp_mark": 46}],)},
                   attach={"a": "gold"}).start()
    cloud.rules["gold.0"] = cloud.edit(cloud.rules["gold.0"], max_kbps=800, max_burst_kbps=100)
    assert sorted(v[1] for v in cloud.meters(1).values()) == [[(800, 100)], [(2000, 40)]]
    cloud.change("qos_rule", cloud.rules["gold.1"], None)               # the ingress rule goes
    assert [v[1] for v in cloud.meters(1).values()] == [[(800, 100)]]
    assert [f for f in cloud.s[1].flows(TO_PORT_QOS) if f.priority] == []
    cloud.ports["a"] = cloud.edit(cloud.ports["a"], qos_policy_id=cloud.policy["voice"].id)    # another policy
    assert cloud.meters(1) == {}
    assert parse(cloud.send(cloud.vms["a"], udp("a", "b", 200))["b"][0])[IPv4].tos == 46 << 2
    cloud.ports["a"] = cloud.edit(cloud.ports["a"], qos_policy_id=None)                         # detached
    assert [f for t in (FROM_PORT_QOS, FROM_PROJECT_QOS, TO_PORT_QOS) for f in cloud.s[1].flows(t) if f.priority] \
        == []
    cloud.net = cloud.edit(cloud.net, qos_policy_id=cloud.policy["gold"].id)     # the network's, for all four
    assert len(cloud.meters(1)) == 3 and len(cloud.meters(2)) == 1          # (its egress rule is left)
    cloud.net = cloud.edit(cloud.net, qos_policy_id=None)
    cloud.change("qos_rule", cloud.rules["gold.0"], None)
    cloud.change("qos_policy", cloud.policy["gold"], None)
    assert cloud.meters(1) == cloud.meters(2) == {} and cloud.qos.model.ports == {}
    qos_cookies = [f for s in cloud.s.values() for f in s.flows()
                   if pipeline.cookie_function(f.cookie) == pipeline.FUNCTIONS["qos"]]
    assert qos_cookies == []


def test_usage_is_summed_per_policy_and_rule_from_the_meters_and_never_goes_back():
    cloud = Shaped({"gold": (LIMITS,), "cap": (CAP, ["aggregate:pA"])}, attach={"a": "gold", "d": "gold"}).start()
    assert cloud.burst("a", "b", 10) == 8 and cloud.burst("d", "b", 10) == 8
    assert cloud.burst("b", "a", 3) == 3
    cloud.poll()
    gold = {(u.owner.rule, u.owner.direction): u for u in cloud.qos.policy_usage(cloud.policy["gold"].id)}
    egress = gold[(cloud.rules["gold.0"].id, "egress")]          # a's meter and d's, summed
    assert (egress.packets, egress.bytes, egress.dropped_packets, egress.dropped_bytes) == (20, 20_000, 4, 4000)
    ingress = gold[(cloud.rules["gold.1"].id, "ingress")]
    assert (ingress.packets, ingress.dropped_packets) == (3, 0)
    [cap] = cloud.qos.policy_usage(cloud.policy["cap"].id)
    # what the ports' own meters let by on s1 (16), and what b sent on s2 (3)
    assert cap.owner.aggregate and (cap.packets, cap.dropped_packets) == (19, 0)
    # a meter modified keeps counting; one deleted by hand and installed again by the audit counts from 0
    cloud.rules["gold.0"] = cloud.edit(cloud.rules["gold.0"], max_kbps=8000)
    assert cloud.burst("a", "b", 2) == 2
    cloud.poll()
    assert egress.packets == 22
    meter = cloud.qos.meters[1][("egress", cloud.ports["a"].id)]
    cloud.s[1].dp.handle(ofp.MeterMod(ofp.OFPMC.DELETE, 0, meter))
    cloud.mem.clock.t += 1
    cloud.mem.core.audit()
    cloud.mem.advance(0.1, step=0.01)
    assert meter in cloud.meters(1)
    assert cloud.burst("a", "b", 3) == 3
    cloud.poll()
    assert egress.packets == 25 and egress.dropped_packets == 4
    rows = {(m[0], m[4]["rule"], m[4]["scope"]): m[3] for m in cloud.qos.metrics() if m[0].startswith("policy_")}
    assert rows[("policy_packets_total", cloud.rules["gold.0"].id, "port")] == 25
    assert rows[("policy_dropped_bytes_total", cloud.rules["gold.0"].id, "port")] == 4000
    cloud.ports["a"] = cloud.edit(cloud.ports["a"], qos_policy_id=None)
    cloud.ports["d"] = cloud.edit(cloud.ports["d"], qos_policy_id=None)
    for rule in ("gold.0", "gold.1"):
        cloud.change("qos_rule", cloud.rules[rule], None)
    cloud.change("qos_policy", cloud.policy["gold"], None)
    assert cloud.qos.policy_usage(cloud.policy["gold"].id) == []         # a deleted policy's usage goes


@pytest.mark.parametrize("options, message", [
    ({"interval": 0}, "interval 0: must be a number of seconds, more than 0"),
    ({"interval": "soon"}, "interval 'soon': must be a number of seconds"),
    ({"rate": 5}, "unknown option(s) rate"),
    ({"queue_rates": "eth1:1:fast"}, "queue_rates item 'eth1:1:fast': expected PORT:QUEUE:min=KBPS[,max=KBPS]"),
    ({"queue_rates": "eth1:1:min=5;eth1:one:min=5"}, "queue_rates item 'eth1:one:min=5'"),
    ({"queue_rates": 5}, "queue_rates 5: expected PORT:QUEUE:min=KBPS[,max=KBPS] items"),
])
def test_bad_options_are_refused_clearly(options, message):
    with pytest.raises(ValueError) as err:
        load_app("qos", **options)
    assert str(err.value).startswith("app 'qos': ") and message in str(err.value)


def test_the_api_answers_a_policy_s_usage_and_a_port_s_qos_each_project_its_own_and_metrics_label_them():
    async def body():
        async with with_apps([TenantsApp(), QosApp(interval=INTERVAL)]) as http:
            tokens = {}
            for project in ("pA", "pB"):
                r = await ok(http, "POST", "/v2.0/tokens", {"token": {"project_id": project}})
                tokens[project] = {"X-Auth-Token": r["token"]["token"]}
            a = tokens["pA"]
            policy = (await ok(http, "POST", "/v2.0/qos/policies", {"policy": {"name": "gold"}}, a))["policy"]
            rule = (await ok(http, "POST", f"/v2.0/qos/policies/{policy['id']}/bandwidth_limit_rules", {
                "bandwidth_limit_rule": {"max_kbps": 80}}, a))["bandwidth_limit_rule"]
            await ok(http, "POST", f"/v2.0/qos/policies/{policy['id']}/minimum_bandwidth_rules", {
                "minimum_bandwidth_rule": {"min_kbps": 1000}}, a)
            net = (await ok(http, "POST", "/v2.0/networks", {"network": {
                "name": "a", "provider:network_type": "vxlan"}}, a))["network"]
            await ok(http, "POST", "/v2.0/subnets", {"subnet": {"network_id": net["id"], "cidr": "10.9.0.0/24"}}, a)
            (p1, h1), (p2, h2) = await vm(http, "pA", net, 1, 1, 1), await vm(http, "pA", net, 2, 1, 2)
            await ok(http, "PUT", f"/v2.0/ports/{p1['id']}", {"port": {"qos_policy_id": policy["id"]}}, a)
            mem = http.mem
            frame = (Ethernet(src=h1.mac, dst=h2.mac) / IPv4(src=h1.ip, dst=h2.ip) / UDP(sport=1, dport=2))
            frame = bytes(frame / bytes(1000 - len(bytes(frame))))
            for _ in range(10):
                h1.send(frame)
                mem.run()
            assert len([f for f in h2.received if f == frame]) == 8
            mem.advance(INTERVAL + 0.5)

            usage = (await ok(http, "GET", f"/v2.0/qos/policies/{policy['id']}/usage", headers=a))["usage"]
            assert (usage["policy_id"], usage["project_id"]) == (policy["id"], "pA")
            assert (usage["packets"], usage["bytes"], usage["dropped_packets"], usage["dropped_bytes"]) == \
                (10, 10_000, 2, 2000)
            [row] = usage["rules"]
            assert (row["rule_id"], row["direction"], row["aggregate"], row["packets"]) == \
                (rule["id"], "egress", False, 10)
            assert usage["since"].endswith("Z") and usage["updated_at"] >= usage["since"]
            qos = (await ok(http, "GET", f"/v2.0/ports/{p1['id']}/qos", headers=a))["qos"]
            assert (qos["qos_policy_id"], qos["inherited"]) == (policy["id"], False)
            assert qos["egress"] == {"rule_id": rule["id"], "max_kbps": 80, "burst_kbits": 64}
            assert qos["ingress"] is None and qos["dscp_mark"] is None
            assert qos["minimum_bandwidth"]["min_kbps"] == 1000 and qos["minimum_bandwidth"]["queue_id"] is None
            assert "no uplink" in qos["minimum_bandwidth"]["status"]
            assert (await ok(http, "GET", f"/v2.0/ports/{p2['id']}/qos", headers=a))["qos"]["qos_policy_id"] is None
            for path, kind in ((f"/v2.0/qos/policies/{policy['id']}/usage", "QosPolicyNotFound"),
                               (f"/v2.0/ports/{p1['id']}/qos", "PortNotFound")):
                r = await http.get(path, headers=tokens["pB"])
                assert (r.status_code, r.json()["NeutronError"]["type"]) == (404, kind)

            text = (await http.get("/metrics")).text
            found = {(s.name, frozenset(s.labels.items())): s.value
                     for family in text_string_to_metric_families(text) for s in family.samples}
            labels = frozenset({"policy": policy["id"], "rule": rule["id"], "direction": "egress",
                                "scope": "port"}.items())
            assert found[("kumoflow_qos_policy_dropped_packets_total", labels)] == 2
            assert found[("kumoflow_qos_policy_bytes_total", labels)] == 10_000
            assert found[("kumoflow_qos_minimum_bandwidth_unguaranteed_ports", frozenset())] == 1

    asyncio.run(body())


def test_without_the_qos_app_the_api_says_so():
    async def body():
        async with with_apps([TenantsApp()]) as http:
            policy = (await ok(http, "POST", "/v2.0/qos/policies", {"policy": {"name": "gold"}}))["policy"]
            r = await http.get(f"/v2.0/qos/policies/{policy['id']}/usage", headers=ADMIN)
            assert (r.status_code, r.json()["NeutronError"]["type"]) == (404, "QosNotEnforced")

    asyncio.run(body())
