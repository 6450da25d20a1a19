"""Groups: all, select (stable, weighted, live), indirect, fast-failover
(port and group liveness), chaining, loops, errors, counters."""

from __future__ import annotations

from collections import Counter

import pytest
from scapy.layers.l2 import Ether

from kumoflow import ofp
from kumoflow.ofp import OFPBAC, OFPET, OFPGMFC
from kumoflow.ofp.consts import OFPFF, OFPG, OFPGC, OFPGT, OFPP, OFPPC, OFPRR

from test_switch_helpers import MAC3, Rig, error_of, udp

SF = ofp.SetField
B = ofp.Bucket


def out(port):
    return ofp.Output(port)


_BASE = udp()


def flow_frame(sport: int) -> bytes:
    """The same UDP frame with another source port (checksums are not checked by the switch)."""
    return _BASE[:34] + sport.to_bytes(2, "big") + _BASE[36:]


def group(rig, gid, gtype, buckets, command=OFPGC.ADD):
    return rig.handle(ofp.GroupMod(command, gtype, gid, buckets))


@pytest.fixture
def rig():
    return Rig(n_ports=6)


def test_all_group_copies_independently(rig):
    group(rig, 1, OFPGT.ALL, [B([SF("eth_dst", MAC3), out(2)]), B([out(3)])])
    rig.flow({"in_port": 1}, [ofp.Group(1), out(4)])
    frame = udp()
    rig.send(1, frame)
    assert Ether(rig.out(2)[0]).dst == MAC3
    assert rig.out(3) == [frame]
    assert rig.out(4) == [frame]              # bucket changes do not leak into the flow's actions


def test_bucket_actions_apply_as_an_action_set(rig):
    # output written before set-field still sees the set-field (action-set order)
    group(rig, 1, OFPGT.INDIRECT, [B([out(2), SF("eth_dst", MAC3)])])
    rig.flow({}, [ofp.Group(1)])
    rig.send(1, udp())
    assert Ether(rig.out(2)[0]).dst == MAC3


def test_select_is_stable_per_flow_and_weighted(rig):
    group(rig, 1, OFPGT.SELECT, [B([out(2)], weight=1), B([out(3)], weight=3)])
    rig.flow({}, [ofp.Group(1)])
    for _ in range(5):
        rig.send(1, udp(sport=1234))
    chosen = rig.outputs()
    assert len(chosen) == 1 and len(next(iter(chosen.values()))) == 5
    counts = Counter()
    for sport in range(2000):
        rig.send(1, flow_frame(sport))
        for port, frames in rig.outputs().items():
            counts[port] += len(frames)
    assert sum(counts.values()) == 2000
    assert 0.18 < counts[2] / 2000 < 0.32, counts
    # a dead bucket is skipped: its flows move to the live one, whose flows stay
    before = {}
    for sport in range(200):
        rig.send(1, flow_frame(sport))
        before[sport] = next(iter(rig.outputs()))
    assert set(before.values()) == {2, 3}                  # both buckets carried flows
    rig.port(2).set_link(False)
    group(rig, 1, OFPGT.SELECT, [B([out(2)], weight=1, watch_port=2), B([out(3)], weight=3, watch_port=3)],
          OFPGC.MODIFY)
    after = {}
    for sport in range(200):
        rig.send(1, flow_frame(sport))
        after[sport] = next(iter(rig.outputs()))
    assert after == {sport: 3 for sport in before}


def test_select_with_zero_weights_shares_equally(rig):
    group(rig, 1, OFPGT.SELECT, [B([out(2)]), B([out(3)])])
    rig.flow({}, [ofp.Group(1)])
    counts = Counter()
    for sport in range(400):
        rig.send(1, flow_frame(sport))
        counts.update(rig.outputs().keys())
    assert counts[2] > 100 and counts[3] > 100


def test_fast_failover_follows_port_liveness(rig):
    group(rig, 1, OFPGT.FF, [B([out(2)], watch_port=2), B([out(3)], watch_port=3), B([out(4)], watch_port=4)])
    rig.flow({}, [ofp.Group(1)])
    rig.send(1, udp())
    assert rig.outputs().keys() == {2}
    rig.port(2).set_link(False)
    rig.send(1, udp())
    assert rig.outputs().keys() == {3}
    rig.handle(ofp.PortMod(3, rig.port(3).hw_addr, OFPPC.PORT_DOWN, OFPPC.PORT_DOWN))
    rig.send(1, udp())
    assert rig.outputs().keys() == {4}
    rig.port(4).set_link(False)
    rig.send(1, udp())
    assert rig.outputs() == {}                # no live bucket: dropped
    rig.port(2).set_link(True)
    rig.send(1, udp())
    assert rig.outputs().keys() == {2}
    rig.dp.remove_port(2)
    rig.send(1, udp())
    assert rig.outputs() == {}


def test_fast_failover_watch_group(rig):
    group(rig, 10, OFPGT.FF, [B([out(5)], watch_port=5)])
    group(rig, 1, OFPGT.FF, [B([ofp.Group(10)], watch_group=10), B([out(6)], watch_port=6)])
    rig.flow({}, [ofp.Group(1)])
    rig.send(1, udp())
    assert rig.outputs().keys() == {5}
    rig.port(5).set_link(False)
    rig.send(1, udp())
    assert rig.outputs().keys() == {6}


def test_chaining_and_counters(rig):
    group(rig, 2, OFPGT.ALL, [B([out(2)]), B([out(3)])])
    group(rig, 1, OFPGT.INDIRECT, [B([SF("eth_dst", MAC3), ofp.Group(2)])])
    rig.flow({}, [ofp.Group(1)], cookie=1)
    rig.flow({"in_port": 4}, [ofp.Group(2)], priority=1 << 15 | 1)
    frame = udp()
    rig.send(1, frame)
    rig.send(1, frame)
    outs = rig.outputs()
    assert {p: len(f) for p, f in outs.items()} == {2: 2, 3: 2}
    assert all(Ether(f).dst == MAC3 for f in outs[2])
    rig.clock.advance(3)
    stats = {g.group_id: g for g in rig.handle(ofp.GroupStatsRequest())[0].body}
    n = len(frame)
    assert (stats[1].ref_count, stats[1].packet_count, stats[1].byte_count) == (1, 2, 2 * n)
    assert stats[2].ref_count == 2                    # one flow and group 1
    assert [(b.packet_count, b.byte_count) for b in stats[2].bucket_stats] == [(2, 2 * n), (2, 2 * n)]
    assert stats[1].duration_sec == 3
    [one] = rig.handle(ofp.GroupStatsRequest(group_id=1))[0].body
    assert one.group_id == 1
    assert rig.handle(ofp.GroupStatsRequest(group_id=77))[0].body == []
    desc = rig.handle(ofp.GroupDescRequest())[0].body
    assert [(d.group_id, d.type, len(d.buckets)) for d in desc] == [(1, OFPGT.INDIRECT, 1), (2, OFPGT.ALL, 2)]
    assert desc[0].buckets[0].actions == [SF("eth_dst", MAC3), ofp.Group(2)]
    feats = rig.handle(ofp.GroupFeaturesRequest())[0]
    assert feats.types == 0b1111 and feats.capabilities == 0b1111
    assert feats.actions[0] & (1 << ofp.OFPAT.OUTPUT) and feats.actions[0] & (1 << ofp.OFPAT.GROUP)


def test_group_errors(rig):
    group(rig, 1, OFPGT.ALL, [B([out(2)])])
    group(rig, 2, OFPGT.ALL, [B([ofp.Group(1)])])
    gm = ofp.GroupMod
    h = rig.handle
    assert error_of(h, gm(OFPGC.ADD, OFPGT.ALL, 1, [])) == (OFPET.GROUP_MOD_FAILED, OFPGMFC.GROUP_EXISTS)
    assert error_of(h, gm(OFPGC.MODIFY, OFPGT.ALL, 9, [])) == (OFPET.GROUP_MOD_FAILED, OFPGMFC.UNKNOWN_GROUP)
    assert error_of(h, gm(OFPGC.ADD, OFPGT.ALL, OFPG.ALL, [])) == (OFPET.GROUP_MOD_FAILED,
                                                                   OFPGMFC.INVALID_GROUP)
    assert error_of(h, gm(OFPGC.ADD, OFPGT.INDIRECT, 5, [B([out(2)]), B([out(3)])])) == \
        (OFPET.GROUP_MOD_FAILED, OFPGMFC.INVALID_GROUP)
    assert error_of(h, gm(OFPGC.ADD, 7, 5, [])) == (OFPET.GROUP_MOD_FAILED, OFPGMFC.BAD_TYPE)
    assert error_of(h, gm(9, OFPGT.ALL, 5, [])) == (OFPET.GROUP_MOD_FAILED, OFPGMFC.BAD_COMMAND)
    assert error_of(h, gm(OFPGC.ADD, OFPGT.FF, 5, [B([out(2)])])) == (OFPET.GROUP_MOD_FAILED, OFPGMFC.BAD_WATCH)
    assert error_of(h, gm(OFPGC.ADD, OFPGT.FF, 5, [B([out(2)], watch_group=33)])) == \
        (OFPET.GROUP_MOD_FAILED, OFPGMFC.BAD_WATCH)
    assert error_of(h, gm(OFPGC.ADD, OFPGT.FF, 5, [B([out(2)], watch_port=OFPP.CONTROLLER)])) == \
        (OFPET.GROUP_MOD_FAILED, OFPGMFC.BAD_WATCH)
    assert error_of(h, gm(OFPGC.ADD, OFPGT.ALL, 5, [B([ofp.Group(5)])])) == (OFPET.GROUP_MOD_FAILED,
                                                                             OFPGMFC.LOOP)
    assert error_of(h, gm(OFPGC.MODIFY, OFPGT.ALL, 1, [B([ofp.Group(2)])])) == (OFPET.GROUP_MOD_FAILED,
                                                                                OFPGMFC.LOOP)
    assert error_of(h, gm(OFPGC.ADD, OFPGT.ALL, 5, [B([ofp.Group(99)])])) == (OFPET.BAD_ACTION,
                                                                              OFPBAC.BAD_OUT_GROUP)
    assert error_of(h, gm(OFPGC.ADD, OFPGT.ALL, 5, [B([out(OFPP.TABLE)])])) == (OFPET.BAD_ACTION,
                                                                                OFPBAC.BAD_OUT_PORT)
    assert error_of(h, gm(OFPGC.DELETE, OFPGT.ALL, 1)) == (OFPET.GROUP_MOD_FAILED, OFPGMFC.CHAINED_GROUP)
    assert sorted(rig.dp.groups.groups) == [1, 2]
    h(gm(OFPGC.DELETE, OFPGT.ALL, 12345))            # deleting a group that does not exist: no error


def test_deleting_a_group_deletes_its_flows(rig):
    group(rig, 1, OFPGT.ALL, [B([out(2)])])
    group(rig, 2, OFPGT.ALL, [B([out(3)])])
    rig.flow({"in_port": 1}, [ofp.Group(1)], cookie=11, flags=OFPFF.SEND_FLOW_REM)
    rig.flow({"in_port": 2}, instructions=[ofp.WriteActions([ofp.Group(1)])], cookie=12)
    rig.flow({"in_port": 3}, [ofp.Group(2)], cookie=13, flags=OFPFF.SEND_FLOW_REM)
    rig.handle(ofp.GroupMod(OFPGC.DELETE, OFPGT.ALL, 1))
    assert [e.cookie for e in rig.dp.flows()] == [13]
    [fr] = rig.take_events(ofp.FlowRemoved)
    assert (fr.cookie, fr.reason) == (11, OFPRR.GROUP_DELETE)
    rig.handle(ofp.GroupMod(OFPGC.DELETE, OFPGT.ALL, OFPG.ALL))
    assert rig.dp.flows() == [] and len(rig.dp.groups) == 0
    [fr] = rig.take_events(ofp.FlowRemoved)
    assert (fr.cookie, fr.reason) == (13, OFPRR.GROUP_DELETE)


def test_group_modify_keeps_flows_and_changes_forwarding(rig):
    group(rig, 1, OFPGT.ALL, [B([out(2)])])
    rig.flow({}, [ofp.Group(1)])
    rig.send(1, udp())
    group(rig, 1, OFPGT.SELECT, [B([out(3)], weight=1)], OFPGC.MODIFY)
    rig.send(1, udp())
    assert {p: len(f) for p, f in rig.outputs().items()} == {2: 1, 3: 1}
    [stats] = rig.handle(ofp.GroupStatsRequest(group_id=1))[0].body
    assert stats.packet_count == 2 and stats.bucket_stats[0].packet_count == 1


def test_group_limits(rig, monkeypatch):
    from kumoflow.switch import groups as groups_mod
    gm = ofp.GroupMod
    assert error_of(rig.handle, gm(OFPGC.DELETE, OFPGT.ALL, OFPG.ANY)) == (OFPET.GROUP_MOD_FAILED,
                                                                         OFPGMFC.INVALID_GROUP)
    assert error_of(rig.handle, gm(OFPGC.ADD, OFPGT.ALL, 1, [B([out(2)])] * 257)) == (OFPET.GROUP_MOD_FAILED,
                                                                                      OFPGMFC.OUT_OF_BUCKETS)
    monkeypatch.setattr(groups_mod, "MAX_GROUPS", 2)
    group(rig, 1, OFPGT.ALL, [])
    group(rig, 2, OFPGT.ALL, [])
    assert error_of(rig.handle, gm(OFPGC.ADD, OFPGT.ALL, 3, [])) == (OFPET.GROUP_MOD_FAILED,
                                                                   OFPGMFC.OUT_OF_GROUPS)
