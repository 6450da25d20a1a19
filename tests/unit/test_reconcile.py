"""Reconciliation: canonical forms of flows, groups and meters (flows.py), the
messages a Reconciler sends (reconcile.py), and the whole loop in memory
(memnet.py): a restarted controller sends nothing to switches that are
already right, and the audit repairs what changed behind its back."""

import pytest

from kumoflow import ofp
from kumoflow.apps.fabric import Fabric
from kumoflow.controller import App, Flow, Group, Meter, pipeline
from kumoflow.controller import reconcile
from kumoflow.controller.reconcile import Reconciler
from kumoflow.packet import ARP, ICMP, Ethernet, IPv4
from kumoflow.switch.datapath import Datapath as SwitchDatapath
from kumoflow.switch.port import MemoryPort

from memnet import MemNet

M1, M2 = "00:00:00:00:00:01", "00:00:00:00:00:02"
CLASSIFY, FORWARD = pipeline.table_id("classify"), pipeline.table_id("forward")
ADD, MODIFY_STRICT, DELETE_STRICT = int(ofp.OFPFC.ADD), int(ofp.OFPFC.MODIFY_STRICT), int(ofp.OFPFC.DELETE_STRICT)


def out(*ports, max_len=0):
    return [ofp.ApplyActions([ofp.Output(p, max_len) for p in ports])]


def same(a, b):
    return a.key == b.key and a.value == b.value


# --- canonical forms ------------------------------------------------------------------------------

def test_match_field_order_does_not_matter():
    a = Flow(40, 10, ofp.Match(in_port=1, eth_dst=M1, eth_type=0x800), out(2))
    b = Flow(40, 10, ofp.Match(eth_type=0x800, eth_dst=M1, in_port=1), out(2))
    assert a.match.pack() != b.match.pack()     # the wire forms differ...
    assert same(a, b)                           # ...the canonical ones do not


def test_output_max_len_matters_only_towards_the_controller():
    assert same(Flow(40, 10, ofp.Match(), out(2, max_len=0)), Flow(40, 10, ofp.Match(), out(2, max_len=0xFFE5)))
    to_ctl = [Flow(40, 10, ofp.Match(), out(ofp.OFPP.CONTROLLER, max_len=n)) for n in (128, ofp.OFPCML.NO_BUFFER)]
    assert to_ctl[0].key == to_ctl[1].key and to_ctl[0].value != to_ctl[1].value


def test_empty_apply_actions_is_no_instruction():
    goto = ofp.GotoTable(FORWARD)
    assert same(Flow(0, 5, ofp.Match(in_port=1), [ofp.ApplyActions([]), goto]),
                Flow(0, 5, ofp.Match(in_port=1), [goto]))
    assert same(Flow(40, 0, ofp.Match(), [ofp.ApplyActions([])]), Flow(40, 0, ofp.Match(), []))
    # an apply-actions that does something is not dropped
    assert not same(Flow(0, 5, ofp.Match(), [ofp.ApplyActions([ofp.Output(1)]), goto]),
                    Flow(0, 5, ofp.Match(), [goto]))


def test_instruction_order_does_not_matter():
    ins = [ofp.ApplyActions([ofp.Output(3)]), ofp.WriteMetadata(0x10, 0xFF), ofp.GotoTable(FORWARD)]
    a = Flow(0, 5, ofp.Match(in_port=1), ins)
    b = Flow(0, 5, ofp.Match(in_port=1), ins[::-1])
    assert same(a, b)


@pytest.mark.parametrize("change", [
    dict(priority=11),
    dict(match=ofp.Match(in_port=2, eth_dst=M1)),
    dict(match=ofp.Match(in_port=1)),
    dict(table=41),
])
def test_a_different_priority_match_or_table_is_another_flow(change):
    base = dict(table=40, priority=10, match=ofp.Match(in_port=1, eth_dst=M1), instructions=out(2), cookie=7)
    assert Flow(**base).key != Flow(**{**base, **change}).key


@pytest.mark.parametrize("change", [
    dict(cookie=8),
    dict(instructions=out(3)),
    dict(instructions=out(2, 3)),
    dict(instructions=[ofp.GotoTable(41)]),
    dict(idle_timeout=10),
    dict(hard_timeout=10),
])
def test_a_different_cookie_instructions_or_timeout_is_a_changed_flow(change):
    base = dict(table=40, priority=10, match=ofp.Match(in_port=1, eth_dst=M1), instructions=out(2), cookie=7)
    a, b = Flow(**base), Flow(**{**base, **change})
    assert a.key == b.key and a.value != b.value


def test_flow_mods_are_built_from_the_canonical_match_and_say_what_a_plain_flow_mod_says():
    match = ofp.Match(eth_type=0x800, in_port=3, ipv4_dst=("20.1.2.0", "255.255.255.0"))    # not in canonical order
    ins = [ofp.ApplyActions([ofp.DecNwTtl(), ofp.SetField("eth_src", M1)]), ofp.GotoTable(FORWARD)]
    flow = Flow(24, 124, match, ins, 0x77, idle_timeout=5, flags=1)
    for mod, command, cookie, instructions, idle, flags in ((flow.add(), ADD, 0x77, ins, 5, 1),
                                                             (flow.modify(), MODIFY_STRICT, 0, ins, 0, 0),
                                                             (flow.delete(), DELETE_STRICT, 0, [], 0, 0)):
        plain = ofp.FlowMod(cookie=cookie, table_id=24, command=command, idle_timeout=idle, priority=124, flags=flags,
                            match=ofp.Match(in_port=3, eth_type=0x800, ipv4_dst=("20.1.2.0", "255.255.255.0")),
                            instructions=instructions, xid=9)
        mod.xid = 9
        assert isinstance(mod, ofp.FlowMod) and mod.pack() == plain.pack()
        assert ofp.parse(mod.pack()) == plain and str(mod) == str(plain)


def test_a_flow_from_its_packed_match_is_the_same_flow():
    match = ofp.Match(metadata=(0x500, 0xFF00), eth_type=0x800, ipv4_dst=("20.1.2.0", "255.255.255.0"))
    ins = [ofp.GotoTable(FORWARD)]
    a, b = Flow(24, 124, match, ins, 7), Flow.packed(24, 124, match.pack(), ins, 7)
    assert same(a, b) and b.match == match and b.add().pack() == a.add().pack()


def bucket(port, weight=0, watch=ofp.OFPP.ANY):
    return ofp.Bucket([ofp.Output(port)], weight=weight, watch_port=watch)


@pytest.mark.parametrize("gtype", [ofp.OFPGT.ALL, ofp.OFPGT.INDIRECT])
def test_weight_and_watch_are_ignored_where_the_group_type_ignores_them(gtype):
    buckets = [bucket(1)] if gtype == ofp.OFPGT.INDIRECT else [bucket(1), bucket(2)]
    noisy = [bucket(b.actions[0].port, weight=5, watch=b.actions[0].port) for b in buckets]
    assert same(Group(7, gtype, buckets), Group(7, gtype, noisy))


def test_select_groups_compare_weights_and_watches():
    base = Group(7, ofp.OFPGT.SELECT, [bucket(1, 1, 1), bucket(2, 1, 2)])
    assert same(base, Group(7, ofp.OFPGT.SELECT, [bucket(1, 1, 1), bucket(2, 1, 2)]))
    assert not same(base, Group(7, ofp.OFPGT.SELECT, [bucket(1, 2, 1), bucket(2, 1, 2)]))
    assert not same(base, Group(7, ofp.OFPGT.SELECT, [bucket(1, 1, 3), bucket(2, 1, 2)]))
    assert not same(base, Group(7, ofp.OFPGT.SELECT, [bucket(2, 1, 2), bucket(1, 1, 1)]))   # order: hashing


def test_fast_failover_groups_compare_watches_and_bucket_order():
    base = Group(7, ofp.OFPGT.FF, [bucket(1, watch=1), bucket(2, watch=2)])
    assert same(base, Group(7, ofp.OFPGT.FF, [bucket(1, weight=3, watch=1), bucket(2, watch=2)]))  # weight: no
    assert not same(base, Group(7, ofp.OFPGT.FF, [bucket(1, watch=4), bucket(2, watch=2)]))
    assert not same(base, Group(7, ofp.OFPGT.FF, [bucket(2, watch=2), bucket(1, watch=1)]))


def test_group_type_and_id_matter():
    buckets = [bucket(1, 1, 1)]
    assert Group(7, ofp.OFPGT.SELECT, buckets).key != Group(8, ofp.OFPGT.SELECT, buckets).key
    assert Group(7, ofp.OFPGT.SELECT, buckets).value != Group(7, ofp.OFPGT.FF, buckets).value


def test_what_a_switch_reports_back_equals_what_was_sent():
    """The reduction is the same on both sides: entries installed into the
    switch datapath and read back compare equal to the wanted ones."""
    dp = SwitchDatapath(dpid=1, n_tables=64, n_buffers=0)
    for n in (1, 2, 3):
        dp.add_port(MemoryPort(n))
    wanted = [
        Group(5, ofp.OFPGT.SELECT, [bucket(1, 1, 1), bucket(2, 1, 2)]),
        Group(6, ofp.OFPGT.FF, [bucket(2, watch=2), bucket(3, watch=3)]),
        Group(9, ofp.OFPGT.ALL, [bucket(1), bucket(3)]),
        Meter(4, int(ofp.OFPMF.KBPS), [ofp.MeterBandDrop(rate=1000)]),
        Flow(0, 1000, ofp.Match(eth_type=0x88CC), out(ofp.OFPP.CONTROLLER, max_len=ofp.OFPCML.NO_BUFFER), 3),
        Flow(0, 100, ofp.Match(in_port=1, eth_src=M1), [ofp.ApplyActions([]), ofp.GotoTable(FORWARD)], 3),
        Flow(40, 100, ofp.Match(eth_dst=M2, in_port=2), [ofp.ApplyActions([ofp.Group(5)])], 4, idle_timeout=60),
        Flow(40, 10, ofp.Match(in_port=3), [ofp.GotoTable(41), ofp.Meter(4), ofp.ApplyActions([ofp.Output(1, 64)])]),
    ]
    for entry in wanted:
        dp.handle(ofp.parse(entry.add().pack()))     # as bytes, the way a switch gets them
    back = [*map(Flow.from_stats, (f for part in dp.handle(ofp.FlowStatsRequest(table_id=ofp.OFPTT.ALL))
                                   for f in part.body)),
            *map(Group.from_desc, (g for part in dp.handle(ofp.GroupDescRequest()) for g in part.body)),
            *map(Meter.from_config, (m for part in dp.handle(ofp.MeterConfigRequest()) for m in part.body))]
    assert {e.key: e.value for e in back} == {e.key: e.value for e in wanted}


# --- the reconciler -----------------------------------------------------------------------------

def flow(table=40, priority=10, match=None, instructions=None, cookie=0x0200000000000001, **kw):
    return Flow(table, priority, ofp.Match(in_port=1) if match is None else match,
                out(2) if instructions is None else instructions, cookie, **kw)


def stats(entry):
    """What a switch reports for an entry it holds."""
    if isinstance(entry, Flow):
        return ofp.FlowStats(table_id=entry.table, priority=entry.priority, cookie=entry.cookie, match=entry.match,
                             instructions=entry.instructions, idle_timeout=entry.idle_timeout,
                             hard_timeout=entry.hard_timeout, duration_sec=99)
    return ofp.GroupDesc(entry.type, entry.group_id, entry.buckets)


def reconciler(desired, installed=(), owned=lambda entry: True):
    r = Reconciler({e.key: e for e in desired}, owned)
    r.read([stats(e) for e in installed if isinstance(e, Flow)],
           [stats(e) for e in installed if isinstance(e, Group)],
           [ofp.MeterConfig(e.flags, e.meter_id, e.bands) for e in installed if isinstance(e, Meter)])
    return r


def describe(msgs):
    """(kind, command, table or id) of each message."""
    rows = []
    for msg, _ in msgs:
        if isinstance(msg, ofp.FlowMod):
            rows.append(("flow", int(msg.command), msg.table_id, msg.priority))
        elif isinstance(msg, ofp.GroupMod):
            rows.append(("group", int(msg.command), msg.group_id))
        elif isinstance(msg, ofp.MeterMod):
            rows.append(("meter", int(msg.command), msg.meter_id))
        else:
            rows.append((type(msg).__name__,))
    return rows


def test_nothing_is_sent_before_the_switch_was_read():
    r = Reconciler({flow().key: flow()}, lambda e: True)
    assert not r.ready and r.sync() == []


def test_an_empty_switch_gets_groups_and_meters_first_then_flows_from_the_last_table_back():
    desired = [flow(0, 5), flow(40, 10), flow(10, 7), flow(40, 11),
               Group(0x2000001, ofp.OFPGT.FF, [bucket(1, watch=1)]),
               Meter(3, int(ofp.OFPMF.KBPS), [ofp.MeterBandDrop(rate=100)]), flow(0, 6)]
    r = reconciler(desired)
    msgs = r.sync()
    rows = describe(msgs)
    assert sorted(rows[:2]) == [("group", int(ofp.OFPGC.ADD), 0x2000001), ("meter", int(ofp.OFPMC.ADD), 3)]
    assert [row[:3] for row in rows[2:]] == [("flow", ADD, 40)] * 2 + [("flow", ADD, 10)] + [("flow", ADD, 0)] * 2
    assert {key for _, key in msgs} == {e.key for e in desired}      # each message names its entry
    assert r.last == (7, 0, 0)
    assert r.sync() == []        # recorded as installed: nothing more to do


def test_unwanted_flows_go_after_a_barrier_first_table_first_and_groups_after_another():
    keep = flow(40, 10)
    extra = [flow(40, 20), flow(0, 30), flow(10, 40), Group(9, ofp.OFPGT.ALL, [bucket(1)])]
    r = reconciler([keep, flow(0, 1)], installed=[keep, *extra])
    rows = describe(r.sync())
    assert rows == [("flow", ADD, 0, 1), ("BarrierRequest",),
                    ("flow", DELETE_STRICT, 0, 30), ("flow", DELETE_STRICT, 10, 40), ("flow", DELETE_STRICT, 40, 20),
                    ("BarrierRequest",), ("group", int(ofp.OFPGC.DELETE), 9)]
    assert r.last == (1, 0, 4)


def test_deletes_alone_need_no_leading_barrier_and_name_the_exact_entry():
    gone = flow(40, 20, match=ofp.Match(in_port=3, eth_dst=M1))
    msgs = reconciler([], installed=[gone]).sync()
    [(msg, key)] = msgs
    assert msg.command == DELETE_STRICT and (msg.table_id, msg.priority, msg.match) == (40, 20, gone.match)
    assert key == gone.key


def test_a_flow_with_new_instructions_is_modified_in_place():
    have, want = flow(instructions=out(2)), flow(instructions=out(3))
    r = reconciler([want], installed=[have])
    [(msg, key)] = r.sync()
    assert msg.command == MODIFY_STRICT and key == want.key
    assert (msg.table_id, msg.priority, msg.match, msg.instructions) == (40, 10, want.match, want.instructions)
    assert r.last == (0, 1, 0) and r.sync() == []


@pytest.mark.parametrize("change", [dict(cookie=0x0200000000000002), dict(idle_timeout=30), dict(hard_timeout=5)])
def test_a_flow_with_a_new_cookie_or_timeout_is_added_again(change):
    """MODIFY keeps the cookie and timeouts (7.3.4.1): only an ADD changes them."""
    have, want = flow(), flow(**change)
    [(msg, _)] = reconciler([want], installed=[have]).sync()
    assert msg.command == ADD
    assert (msg.cookie, msg.idle_timeout, msg.hard_timeout) == (want.cookie, want.idle_timeout, want.hard_timeout)


def test_a_changed_group_is_modified_before_the_flows():
    have = Group(4, ofp.OFPGT.FF, [bucket(1, watch=1), bucket(2, watch=2)])
    want = Group(4, ofp.OFPGT.SELECT, [bucket(1, 1, 1), bucket(2, 1, 2)])
    rows = describe(reconciler([want, flow(0, 1)], installed=[have]).sync())
    assert rows == [("group", int(ofp.OFPGC.MODIFY), 4), ("flow", ADD, 0, 1)]


def test_entries_not_owned_are_never_deleted():
    foreign = flow(63, 1, cookie=0x5)
    owned = lambda entry: not (isinstance(entry, Flow) and entry.table == 63)   # noqa: E731
    r = reconciler([], installed=[foreign, flow(40, 1)], owned=owned)
    assert describe(r.sync()) == [("flow", DELETE_STRICT, 40, 1)]
    assert r.sync() == [] and r.diff() == ([], [], [])
    assert r.sync([foreign.key]) == []       # not even when asked about it


def test_adds_only_adds_and_leaves_changes_and_deletes_for_later():
    missing, have, want, extra = flow(40, 1), flow(40, 2, instructions=out(2)), flow(40, 2, instructions=out(3)), \
        flow(40, 3)
    r = reconciler([missing, want], installed=[have, extra])
    assert describe(r.sync(adds_only=True)) == [("flow", ADD, 40, 1)]
    assert r.sync(adds_only=True) == []
    # what was held back is still to do
    assert describe(r.sync()) == [("flow", MODIFY_STRICT, 40, 2), ("BarrierRequest",), ("flow", DELETE_STRICT, 40, 3)]


def test_adds_only_keeps_what_it_sent_itself_up_to_date():
    """While settling, what the switch held when read is left alone, but an
    entry the reconciler added since (compiled from less knowledge) follows
    the desired state: a group added empty gets its buckets at once."""
    held, held_now = Group(1, ofp.OFPGT.ALL, [bucket(1)]), Group(1, ofp.OFPGT.ALL, [bucket(2)])
    added, added_now = Group(2, ofp.OFPGT.ALL, []), Group(2, ofp.OFPGT.ALL, [bucket(3)])
    r = reconciler([held_now, added], installed=[held])
    desired = r.desired
    assert describe(r.sync(adds_only=True)) == [("group", int(ofp.OFPGC.ADD), 2)]
    desired[added.key] = added_now
    assert describe(r.sync(adds_only=True)) == [("group", int(ofp.OFPGC.MODIFY), 2)]
    del desired[added.key]
    assert describe(r.sync(adds_only=True)) == [("group", int(ofp.OFPGC.DELETE), 2)]
    assert describe(r.sync()) == [("group", int(ofp.OFPGC.MODIFY), 1)]     # settled: the held one too


def test_sync_of_some_keys_touches_only_those():
    a, b = flow(40, 1), flow(40, 2)
    r = reconciler([a, b], installed=[flow(40, 3)])
    assert [key for _, key in r.sync([a.key])] == [a.key]
    assert [key for _, key in r.sync()] != []      # b and the delete were left


def test_a_refused_entry_is_forgotten_and_added_again():
    a = flow()
    r = reconciler([a])
    assert len(r.sync()) == 1 and r.sync() == []
    r.forget(a.key)
    assert [key for _, key in r.sync()] == [a.key]


def test_what_is_sent_during_a_read_is_replayed_over_its_result():
    """The switch answers the read before it sees what was sent after it, so
    the read's result lacks the new flow and still has the deleted one."""
    added, deleted, untouched = flow(40, 1), flow(40, 2), flow(40, 3)
    r = reconciler([untouched], installed=[untouched, deleted])
    r.reading()                                    # an audit's read is in flight
    r.desired[added.key] = added
    assert describe(r.sync()) == [("flow", ADD, 40, 1), ("BarrierRequest",), ("flow", DELETE_STRICT, 40, 2)]
    r.read([stats(untouched), stats(deleted)], [], [])       # as the switch was when it read
    assert r.sync() == []                                    # no resend, no second delete
    # once the read is over, a flow missing from the next read is a real loss, and repaired
    r.read([stats(untouched), stats(deleted)], [], [])
    assert describe(r.sync()) == [("flow", ADD, 40, 1), ("BarrierRequest",), ("flow", DELETE_STRICT, 40, 2)]


def test_a_read_shows_drift_and_sync_repairs_it():
    a, b = flow(40, 1), flow(40, 2)
    r = reconciler([a, b], installed=[a, b])
    assert r.sync() == []
    r.reading()
    r.read([stats(a), stats(flow(40, 9))], [], [])     # b deleted by hand, a stranger added
    assert describe(r.sync()) == [("flow", ADD, 40, 2), ("BarrierRequest",), ("flow", DELETE_STRICT, 40, 9)]


# --- the whole loop, in memory ----------------------------------------------------------------------

class Metered(App):
    """A function with no table of its own: one meter on every switch."""
    name = "metered"

    def owners(self):
        return ["rate"]

    def compile(self, key, dp):
        return [Meter(self.ids.start + 1, int(ofp.OFPMF.KBPS), [ofp.MeterBandDrop(rate=1000)])]


def triangle(**options):
    """s1, s2, s3 joined in a triangle (ports 1 and 2), a host on port 3 of each."""
    net = MemNet([Fabric(), Metered()], **options)
    s1, s2, s3 = (net.switch(n, ports=4) for n in (1, 2, 3))
    net.link(s1, 1, s2, 2)
    net.link(s2, 1, s3, 2)
    net.link(s3, 1, s1, 2)
    hosts = [net.host(f"h{n}", s, 3) for n, s in enumerate((s1, s2, s3), 1)]
    return net, (s1, s2, s3), hosts


def announce(net, hosts):
    """Every host sends an ARP request, so the controller knows them all."""
    for n, h in enumerate(hosts, 1):
        h.send(bytes(Ethernet(src=h.mac) / ARP(1, h.mac, f"10.0.0.{n}", "00:00:00:00:00:00", "10.0.0.254")))
        net.run()


def ping(net, src, dst, hosts):
    """src pings dst: what every host received (LLDP aside)."""
    for h in hosts:
        h.received.clear()
    src.send(bytes(Ethernet(src=src.mac, dst=dst.mac) / IPv4(src="10.0.0.1", dst="10.0.0.2") / ICMP(id=7)))
    net.run()
    return {h.name: [f for f in h.received if f[12:14] != b"\x88\xcc"] for h in hosts}


def snapshot(switch):
    return {(f.table_id, f.priority, f.match.pack()): f for f in switch.flows()}


def started_triangle(**options):
    net, switches, hosts = triangle(**options)
    net.start()
    net.advance(3)
    announce(net, hosts)
    net.advance(1)
    assert len(net.core.hosts) == 3 and len(net.core.topology.graph.links) == 3
    return net, switches, hosts


def test_a_restarted_controller_sends_nothing_to_switches_that_are_right():
    net, switches, hosts = started_triangle()
    before = {s.dpid: snapshot(s) for s in switches}
    groups = {s.dpid: s.groups() for s in switches}
    meters = {s.dpid: s.dp.handle(ofp.MeterConfigRequest())[0].body for s in switches}
    assert all(len(groups[d]) == 2 and len(meters[d]) == 1 for d in groups)   # the network has groups and meters
    t0 = net.clock.t
    net.restart_controller([Fabric(), Metered()])
    net.advance(3)                           # past settle: reconciled in full
    net.advance(net.core.audit_interval)     # and once more by the audit
    assert [s.mods() for s in switches] == [[], [], []]
    assert any(isinstance(m, ofp.FlowStatsRequest) for m in switches[0].received)   # it did read them
    elapsed = net.clock.t - t0
    for s in switches:
        after = snapshot(s)
        assert after.keys() == before[s.dpid].keys()
        for key, f in after.items():
            old = before[s.dpid][key]
            assert f.cookie == old.cookie and f.instructions == old.instructions
            assert f.duration_sec >= old.duration_sec + int(elapsed) - 1     # the same entry, still counting
        assert s.groups() == groups[s.dpid]
    assert {h.mac for h in net.core.hosts} == {h.mac for h in hosts}
    got = ping(net, hosts[0], hosts[2], hosts)
    assert len(got["h3"]) == 1 and not got["h2"]


def test_the_audit_restores_a_flow_deleted_behind_the_controllers_back():
    net, (s1, s2, s3), hosts = started_triangle()
    h3 = hosts[2]
    [towards_h3] = [f for f in s1.flows(FORWARD) if f.match.get("eth_dst") == h3.mac]
    s1.dp.handle(ofp.FlowMod(command=ofp.OFPFC.DELETE_STRICT, table_id=FORWARD, priority=towards_h3.priority,
                             match=towards_h3.match))
    assert not [f for f in s1.flows(FORWARD) if f.match.get("eth_dst") == h3.mac]
    for s in (s1, s2, s3):
        s.received.clear()
    net.advance(net.core.audit_interval + 0.5)
    [restored] = [f for f in s1.flows(FORWARD) if f.match.get("eth_dst") == h3.mac]
    assert (restored.cookie, restored.instructions) == (towards_h3.cookie, towards_h3.instructions)
    assert [(m.command, m.match) for m in s1.mods()] == [(ofp.OFPFC.ADD, towards_h3.match)]
    assert [s2.mods(), s3.mods()] == [[], []]
    got = ping(net, hosts[0], h3, hosts)
    assert len(got["h3"]) == 1


def test_the_audit_removes_a_flow_added_behind_its_back_and_leaves_unknown_tables_alone():
    net, (s1, s2, s3), hosts = started_triangle()
    h1, h2, h3 = hosts
    # a stranger's flow sends h3's traffic out of s1's spare port 4 ... and one in a table no app uses
    rogue = ofp.FlowMod(cookie=0xBAD, table_id=FORWARD, priority=500, match=ofp.Match(eth_dst=h3.mac),
                        instructions=out(4))
    s1.dp.handle(rogue)
    s1.dp.handle(ofp.FlowMod(cookie=0xBAD, table_id=63, priority=1, match=ofp.Match(), instructions=[]))
    s1.ports[4].take()
    got = ping(net, h1, h3, hosts)
    assert not got["h3"] and len(s1.ports[4].take()) == 1    # the rogue flow works
    s1.received.clear()
    net.advance(net.core.audit_interval + 0.5)
    s1.ports[4].take()      # LLDP probes
    assert [(m.command, m.table_id, m.priority) for m in s1.mods()] == [(ofp.OFPFC.DELETE_STRICT, FORWARD, 500)]
    assert not [f for f in s1.flows() if f.priority == 500]
    assert [f.cookie for f in s1.flows(63)] == [0xBAD]
    got = ping(net, h1, h3, hosts)
    assert len(got["h3"]) == 1 and not got["h2"] and not s1.ports[4].take()


def _in_flight(net):
    """The controller's messages queued towards the switches, decoded."""
    msgs = []
    for fn, data in net.queue:
        if getattr(fn, "__name__", "") == "_from_controller":
            while data:
                length = int.from_bytes(data[2:4], "big")
                msgs.append(ofp.parse(data[:length]))
                data = data[length:]
    return msgs


def test_what_is_sent_while_an_audit_reads_is_not_sent_again():
    """The audit's reads go out; a host shows up before the switches answer,
    and its flows go out behind the reads. The read results lack them; the
    journal keeps them from being sent a second time."""
    net, switches, hosts = started_triangle()
    for s in switches:
        s.received.clear()
    net.core.audit()
    assert any(isinstance(m, ofp.FlowStatsRequest) for m in _in_flight(net))     # the reads are on their way
    newcomer = "02:00:00:00:00:99"
    with net.core.batch():
        net.core.hosts.seen(newcomer, 1, 4)
    net.run()
    net.advance(1)

    def about_newcomer(s):
        return [m for m in s.mods() if newcomer in (m.match.get("eth_src"), m.match.get("eth_dst"))]
    # on s1: admit, copy ARP and neighbour discovery (3), deliver; elsewhere: to s1
    assert [len(about_newcomer(s)) for s in switches] == [5, 1, 1]
    assert all(m.command == ofp.OFPFC.ADD for s in switches for m in about_newcomer(s))
    assert [len(s.mods()) for s in switches] == [5, 1, 1]                    # and nothing else


def test_a_large_audit_read_is_applied_a_step_at_a_time_and_loses_nothing_sent_meanwhile(monkeypatch):
    """An audit's result is turned into entries a few at a time, other events in between (the
    controller's loop is never stopped for a whole table): a host that shows up meanwhile gets
    its flows once, a flow deleted behind the controller's back is put back, and an audit due
    before the last one is applied does not start another read."""
    monkeypatch.setattr(reconcile, "READ_STEP", 10)
    net, (s1, s2, s3), hosts = started_triangle()
    [towards_h3] = [f for f in s1.flows(FORWARD) if f.match.get("eth_dst") == hosts[2].mac]
    s1.dp.handle(ofp.FlowMod(command=ofp.OFPFC.DELETE_STRICT, table_id=FORWARD, priority=towards_h3.priority,
                             match=towards_h3.match))
    for s in (s1, s2, s3):
        s.received.clear()
    net.core.audit()
    net.run()                                            # answered: the first step only
    reconciler = net.core.reconcilers[1]
    assert reconciler.reading_now and len(s1.flows()) > reconcile.READ_STEP
    newcomer = "02:00:00:00:00:99"
    with net.core.batch():
        net.core.hosts.seen(newcomer, 1, 4)
    net.run()
    net.core.audit()                                     # still applying the last one: no new read of s1
    net.run()
    assert sum(isinstance(m, ofp.FlowStatsRequest) for m in s1.received) == 1
    net.advance(3)                                       # the remaining steps, then what differs reconciled
    assert not reconciler.reading_now
    about_newcomer = [m for m in s1.mods() if newcomer in (m.match.get("eth_src"), m.match.get("eth_dst"))]
    assert len(about_newcomer) == 5 and all(m.command == ofp.OFPFC.ADD for m in about_newcomer)
    assert [(m.command, m.match) for m in s1.mods() if m not in about_newcomer] == [(ofp.OFPFC.ADD,
                                                                                    towards_h3.match)]
    assert reconciler.diff() == ([], [], [])


def test_a_flow_changed_by_the_topology_is_modified_in_place_and_keeps_counting():
    net, (s1, s2, s3), hosts = started_triangle()
    h1 = hosts[0]

    def flood_from_h1():
        [f] = [f for f in s1.flows(FORWARD) if f.priority == 10 and f.match.get("in_port") == 3]
        return f

    for _ in range(3):
        h1.send(bytes(Ethernet(src=h1.mac) / ARP(1, h1.mac, "10.0.0.1", "00:00:00:00:00:00", "10.0.0.9")))
        net.run()
    before = flood_from_h1()
    assert before.packet_count >= 3
    for s in (s1, s2, s3):
        s.received.clear()
    net.advance(5)
    net.set_link(s1, 2, False)           # s1 - s3: the flood tree changes, so does h1's flood flow
    net.set_link(s3, 1, False)
    net.advance(0.5)
    after = flood_from_h1()
    assert after.instructions != before.instructions
    [mod] = [m for m in s1.mods() if isinstance(m, ofp.FlowMod) and m.table_id == FORWARD and m.priority == 10
             and m.match.get("in_port") == 3]
    assert mod.command == ofp.OFPFC.MODIFY_STRICT
    assert after.cookie == before.cookie and after.packet_count == before.packet_count
    assert after.duration_sec >= before.duration_sec + 5


def test_while_settling_only_missing_entries_are_added():
    """A switch that comes up holding a stale flow keeps it until the settle
    time is over (the controller's view is still filling in), then loses it."""
    net, (s1, s2, s3), hosts = triangle(settle=5.0)
    stale = ofp.FlowMod(cookie=pipeline.cookie(pipeline.FUNCTIONS["fabric"], 1), table_id=FORWARD, priority=500,
                        match=ofp.Match(eth_dst=M2), instructions=out(3))
    s1.dp.handle(stale)
    net.start()
    net.advance(4)
    assert [f.priority for f in s1.flows(FORWARD) if f.priority == 500] == [500]
    assert not [m for m in s1.mods() if isinstance(m, ofp.FlowMod) and m.priority == 500]
    net.advance(1.5)
    assert not [f for f in s1.flows(FORWARD) if f.priority == 500]
    assert [m.command for m in s1.mods() if isinstance(m, ofp.FlowMod) and m.priority == 500] == [
        ofp.OFPFC.DELETE_STRICT]


def test_a_flow_the_switch_refuses_is_tried_again_by_the_audit():
    """An ERROR answering a flow-mod makes the reconciler forget the entry,
    so the next sync sends it again."""
    net, (s1, s2, s3), hosts = started_triangle()
    core = net.core
    fabric = core.app("fabric")
    # a flow the switch cannot take: to a group it does not have (BAD_OUT_GROUP)
    bad = Flow(FORWARD, 300, ofp.Match(eth_dst=M2), [ofp.ApplyActions([ofp.Group(99)])], fabric.cookie(5))
    original = fabric.compile

    def compile_with_bad(key, dp):
        entries = original(key, dp)
        return entries + [bad] if key == ("switch", 1) and dp.id == 1 else entries

    fabric.compile = compile_with_bad
    s1.received.clear()
    fabric.changed(("switch", 1), 1)
    net.run()
    sent = [m for m in s1.mods() if m.priority == 300]
    assert len(sent) == 1                                      # sent once, refused
    assert bad.key not in core.reconcilers[1].installed         # and forgotten
    assert not [f for f in s1.flows() if f.priority == 300]
    s1.received.clear()
    net.advance(core.audit_interval + 0.5)
    assert len([m for m in s1.mods() if m.priority == 300]) == 1   # tried again
