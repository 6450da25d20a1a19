"""Controller-to-switch messages other than flow/group/meter mods: config,
ports, tables, packet-out, barrier, queues, every multipart request, errors."""

from __future__ import annotations

import pytest

from kumoflow import ofp
from kumoflow.ofp import OFPBAC, OFPBRC, OFPET, OFPPMFC, OFPQOFC, OFPSCFC, OFPTFFC, OFPTMFC
from kumoflow.ofp.consts import OFPC, OFPCML, OFPMPF, OFPP, OFPPC, OFPPF, OFPPR, OFPPS, OFPR, OFPTFPT, OFPTT
from kumoflow.switch.port import MemoryPort

from test_switch_helpers import Rig, error_of, udp


@pytest.fixture
def rig():
    return Rig()


def roundtrip(msgs):
    """Every reply packs, fits a message, and parses back to itself."""
    for m in msgs:
        data = m.pack()
        assert len(data) <= 0xFFFF
        assert ofp.parse(data) == m
    return msgs


def test_features_and_config(rig):
    [fr] = roundtrip(rig.handle(ofp.FeaturesRequest(xid=77)))
    assert fr.xid == 77 and fr.datapath_id == 1 and fr.n_tables == 64 and fr.n_buffers == 256
    assert fr.capabilities == OFPC.FLOW_STATS | OFPC.TABLE_STATS | OFPC.PORT_STATS | OFPC.GROUP_STATS | \
        OFPC.QUEUE_STATS
    [cfg] = rig.handle(ofp.GetConfigRequest(xid=3))
    assert (cfg.flags, cfg.miss_send_len, cfg.xid) == (0, 128, 3)
    assert rig.handle(ofp.SetConfig(flags=1, miss_send_len=OFPCML.NO_BUFFER)) == []
    [cfg] = rig.handle(ofp.GetConfigRequest())
    assert (cfg.flags, cfg.miss_send_len) == (1, OFPCML.NO_BUFFER)
    assert error_of(rig.handle, ofp.SetConfig(flags=2)) == (OFPET.SWITCH_CONFIG_FAILED, OFPSCFC.BAD_FLAGS)
    # bit 2 was OFPC_INVALID_TTL_TO_CONTROLLER in OpenFlow 1.1 and 1.2; 1.3 does not define it
    assert error_of(rig.handle, ofp.SetConfig(flags=4)) == (OFPET.SWITCH_CONFIG_FAILED, OFPSCFC.BAD_FLAGS)
    assert error_of(rig.handle, ofp.SetConfig(flags=8)) == (OFPET.SWITCH_CONFIG_FAILED, OFPSCFC.BAD_FLAGS)
    assert error_of(rig.handle, ofp.SetConfig(miss_send_len=0xFFF0)) == (OFPET.SWITCH_CONFIG_FAILED,
                                                                         OFPSCFC.BAD_LEN)
    [cfg] = rig.handle(ofp.GetConfigRequest())
    assert cfg.flags == 1                     # failed requests change nothing


def test_frag_drop(rig):
    rig.flow({}, [ofp.Output(2)])
    rig.handle(ofp.SetConfig(flags=1))
    rig.send(1, udp(flags="MF"))
    rig.send(1, udp(frag=10))
    rig.send(1, udp())
    assert len(rig.out(2)) == 1


def test_port_status_on_add_remove_and_change(rig):
    p = MemoryPort(9, "p9", "02:00:00:00:09:09")
    rig.dp.add_port(p)
    [ps] = rig.take_events()
    assert ps.reason == OFPPR.ADD and ps.desc.port_no == 9 and ps.desc.state == OFPPS.LIVE
    p.set_link(False)
    [ps] = rig.take_events()
    assert ps.reason == OFPPR.MODIFY and ps.desc.state == OFPPS.LINK_DOWN
    rig.dp.remove_port(9)
    [ps] = rig.take_events()
    assert ps.reason == OFPPR.DELETE and ps.desc.port_no == 9
    with pytest.raises(ValueError):
        rig.dp.add_port(MemoryPort(1))


def test_port_mod(rig):
    hw = rig.port(2).hw_addr
    rig.handle(ofp.PortMod(2, hw, OFPPC.NO_FWD | OFPPC.NO_PACKET_IN, OFPPC.NO_FWD | OFPPC.NO_PACKET_IN))
    [ps] = rig.take_events()
    assert ps.reason == OFPPR.MODIFY and ps.desc.config == OFPPC.NO_FWD | OFPPC.NO_PACKET_IN
    rig.handle(ofp.PortMod(2, hw, 0, OFPPC.NO_FWD))           # mask: only NO_FWD changes
    [ps] = rig.take_events()
    assert ps.desc.config == OFPPC.NO_PACKET_IN
    rig.handle(ofp.PortMod(2, hw, 0, 0))                      # nothing changes: no PORT_STATUS
    assert rig.take_events() == []
    rig.handle(ofp.PortMod(2, hw, OFPPC.PORT_DOWN, OFPPC.PORT_DOWN))
    [ps] = rig.take_events()
    assert not ps.desc.state & OFPPS.LIVE
    rig.handle(ofp.PortMod(2, hw, 0, 0, advertise=OFPPF.F_10GB_FD))
    [ps] = rig.take_events()
    assert ps.desc.advertised == OFPPF.F_10GB_FD
    h = rig.handle
    assert error_of(h, ofp.PortMod(42, hw)) == (OFPET.PORT_MOD_FAILED, OFPPMFC.BAD_PORT)
    assert error_of(h, ofp.PortMod(2, "02:00:00:00:00:99")) == (OFPET.PORT_MOD_FAILED, OFPPMFC.BAD_HW_ADDR)
    assert error_of(h, ofp.PortMod(2, hw, 1 << 1, 1 << 1)) == (OFPET.PORT_MOD_FAILED, OFPPMFC.BAD_CONFIG)
    assert error_of(h, ofp.PortMod(2, hw, advertise=OFPPF.F_1TB_FD)) == (OFPET.PORT_MOD_FAILED,
                                                                         OFPPMFC.BAD_ADVERTISE)


def test_table_mod(rig):
    assert rig.handle(ofp.TableMod(3, 3)) == []
    assert rig.handle(ofp.TableMod(OFPTT.ALL, 0)) == []
    assert error_of(rig.handle, ofp.TableMod(64, 0)) == (OFPET.TABLE_MOD_FAILED, OFPTMFC.BAD_TABLE)
    assert error_of(rig.handle, ofp.TableMod(0, 4)) == (OFPET.TABLE_MOD_FAILED, OFPTMFC.BAD_CONFIG)


# --- packet-out -----------------------------------------------------------------------------------

def test_packet_out_with_data_and_reserved_ports(rig):
    frame = udp()
    rig.handle(ofp.PacketOut(in_port=OFPP.CONTROLLER, actions=[ofp.Output(2), ofp.Output(3)], data=frame))
    assert rig.out(2) == [frame] and rig.out(3) == [frame]
    rig.handle(ofp.PacketOut(in_port=1, actions=[ofp.Output(OFPP.FLOOD)], data=frame))
    assert sorted(rig.outputs()) == [2, 3, 4]
    rig.handle(ofp.PacketOut(in_port=3, actions=[ofp.Output(OFPP.IN_PORT)], data=frame))
    assert sorted(rig.outputs()) == [3]
    rig.handle(ofp.PacketOut(in_port=OFPP.CONTROLLER, actions=[ofp.Output(OFPP.CONTROLLER)], data=frame))
    [pin] = rig.take_events(ofp.PacketIn)
    assert pin.reason == OFPR.ACTION and pin.cookie == 0xFFFFFFFFFFFFFFFF
    rig.handle(ofp.PacketOut(in_port=OFPP.ANY, actions=[], data=frame))       # no actions: dropped
    assert rig.outputs() == {}


def test_packet_out_to_table_runs_the_pipeline_with_its_in_port(rig):
    rig.flow({"in_port": 3}, [ofp.Output(4)])
    rig.flow({}, [ofp.Output(OFPP.CONTROLLER)], priority=0)
    rig.handle(ofp.PacketOut(in_port=3, actions=[ofp.Output(OFPP.TABLE)], data=udp()))
    assert len(rig.out(4)) == 1
    rig.handle(ofp.PacketOut(in_port=OFPP.CONTROLLER, actions=[ofp.Output(OFPP.TABLE)], data=udp()))
    [pin] = rig.take_events(ofp.PacketIn)
    assert pin.reason == OFPR.NO_MATCH and pin.match["in_port"] == OFPP.CONTROLLER
    [t0] = [t for t in rig.handle(ofp.TableStatsRequest())[0].body if t.table_id == 0]
    assert t0.lookup_count == 2


def test_packet_out_with_buffer(rig):
    rig.flow({}, [ofp.Output(OFPP.CONTROLLER, 16)], priority=0)
    frame = udp()
    rig.send(1, frame)
    [pin] = rig.take_events(ofp.PacketIn)
    assert len(pin.data) == 16
    rig.handle(ofp.PacketOut(pin.buffer_id, 1, [ofp.Output(OFPP.IN_PORT)]))
    assert rig.out(1) == [frame]
    assert error_of(rig.handle, ofp.PacketOut(pin.buffer_id, 1, [ofp.Output(2)])) == (OFPET.BAD_REQUEST,
                                                                                     OFPBRC.BUFFER_EMPTY)
    assert error_of(rig.handle, ofp.PacketOut(77, 1, [ofp.Output(2)])) == (OFPET.BAD_REQUEST,
                                                                          OFPBRC.BUFFER_UNKNOWN)


def test_packet_out_errors(rig):
    h = rig.handle
    assert error_of(h, ofp.PacketOut(in_port=0, data=udp())) == (OFPET.BAD_REQUEST, OFPBRC.BAD_PORT)
    assert error_of(h, ofp.PacketOut(in_port=OFPP.FLOOD, data=udp())) == (OFPET.BAD_REQUEST, OFPBRC.BAD_PORT)
    assert error_of(h, ofp.PacketOut(actions=[ofp.Output(0)], data=udp())) == (OFPET.BAD_ACTION,
                                                                               OFPBAC.BAD_OUT_PORT)
    assert error_of(h, ofp.PacketOut(actions=[ofp.Group(3)], data=udp())) == (OFPET.BAD_ACTION,
                                                                              OFPBAC.BAD_OUT_GROUP)
    assert error_of(h, ofp.PacketOut(actions=[ofp.PushVlan(0x1234)], data=udp())) == (OFPET.BAD_ACTION,
                                                                                      OFPBAC.BAD_ARGUMENT)


# --- simple requests ---------------------------------------------------------------------------------

def test_barrier_echo_desc_and_unknown_requests(rig):
    [b] = rig.handle(ofp.BarrierRequest(xid=9))
    assert isinstance(b, ofp.BarrierReply) and b.xid == 9
    [e] = rig.handle(ofp.EchoRequest(b"abc", xid=4))
    assert e == ofp.EchoReply(b"abc", xid=4)
    [d] = roundtrip(rig.handle(ofp.DescRequest(xid=5)))
    assert d.mfr_desc == "kumoflow" and d.xid == 5 and d.dp_desc
    assert error_of(rig.handle, ofp.FeaturesReply(1)) == (OFPET.BAD_REQUEST, OFPBRC.BAD_TYPE)
    assert error_of(rig.handle, ofp.Experimenter(0x2320, 1)) == (OFPET.BAD_REQUEST, OFPBRC.BAD_EXPERIMENTER)
    assert error_of(rig.handle, ofp.ExperimenterMultipartRequest(0x2320, 1)) == (OFPET.BAD_REQUEST,
                                                                                 OFPBRC.BAD_EXPERIMENTER)


def test_queue_get_config_and_queue_stats(rig):
    rig.port(3).add_queue(5, [ofp.QueuePropMinRate(10), ofp.QueuePropMaxRate(500)])
    [r] = roundtrip(rig.handle(ofp.QueueGetConfigRequest(3)))
    assert [(q.queue_id, q.port) for q in r.queues] == [(0, 3), (5, 3)]
    assert r.queues[1].properties == [ofp.QueuePropMinRate(10), ofp.QueuePropMaxRate(500)]
    [r] = rig.handle(ofp.QueueGetConfigRequest(OFPP.ANY))
    assert len(r.queues) == 5
    assert error_of(rig.handle, ofp.QueueGetConfigRequest(99)) == (OFPET.QUEUE_OP_FAILED, OFPQOFC.BAD_PORT)
    [s] = roundtrip(rig.handle(ofp.QueueStatsRequest()))
    assert len(s.body) == 5
    [s] = rig.handle(ofp.QueueStatsRequest(port_no=3, queue_id=5))
    assert [(q.port_no, q.queue_id) for q in s.body] == [(3, 5)]
    assert error_of(rig.handle, ofp.QueueStatsRequest(port_no=99)) == (OFPET.QUEUE_OP_FAILED,
                                                                       OFPQOFC.BAD_PORT)
    assert error_of(rig.handle, ofp.QueueStatsRequest(port_no=2, queue_id=5)) == (OFPET.QUEUE_OP_FAILED,
                                                                                  OFPQOFC.BAD_QUEUE)
    rig.flow({}, [ofp.SetQueue(5), ofp.Output(2)])          # a queue on some port: accepted


def test_port_desc_and_port_stats(rig):
    [d] = roundtrip(rig.handle(ofp.PortDescRequest()))
    assert [p.port_no for p in d.body] == [1, 2, 3, 4]
    assert d.body[0].hw_addr == "02:00:00:00:01:01" and d.body[0].name == "p1"
    rig.flow({}, [ofp.Output(2)])
    frame = udp()
    rig.send(1, frame)
    rig.send(1, frame)
    rig.clock.advance(7)
    [s] = roundtrip(rig.handle(ofp.PortStatsRequest()))
    st = {p.port_no: p for p in s.body}
    assert (st[1].rx_packets, st[1].rx_bytes) == (2, 2 * len(frame))
    assert (st[2].tx_packets, st[2].tx_bytes) == (2, 2 * len(frame))
    assert st[2].duration_sec == 7
    [s] = rig.handle(ofp.PortStatsRequest(port_no=2))
    assert [p.port_no for p in s.body] == [2]
    [s] = rig.handle(ofp.PortStatsRequest(port_no=42))
    assert s.body == []


def test_table_stats_and_features(rig):
    [ts] = roundtrip(rig.handle(ofp.TableStatsRequest()))
    assert len(ts.body) == 64
    replies = roundtrip(rig.handle(ofp.TableFeaturesRequest(xid=11)))
    assert len(replies) >= 2
    assert all(r.xid == 11 for r in replies)
    assert all(r.flags & OFPMPF.REPLY_MORE for r in replies[:-1]) and not replies[-1].flags & OFPMPF.REPLY_MORE
    tables = [t for r in replies for t in r.body]
    assert [t.table_id for t in tables] == list(range(64))
    first, last = tables[0], tables[-1]
    assert first.prop(OFPTFPT.NEXT_TABLES).table_ids == list(range(1, 64))
    assert last.prop(OFPTFPT.NEXT_TABLES).table_ids == []
    assert ofp.OFPIT.GOTO_TABLE in first.prop(OFPTFPT.INSTRUCTIONS).instruction_ids
    assert ofp.OFPIT.GOTO_TABLE not in last.prop(OFPTFPT.INSTRUCTIONS).instruction_ids
    match = first.prop(OFPTFPT.MATCH).oxm_ids
    assert ofp.oxm_id("ipv4_src", masked=True) in match and ofp.oxm_id("in_port") in match
    setf = first.prop(OFPTFPT.APPLY_SETFIELD).oxm_ids
    assert ofp.oxm_id("ipv4_src") in setf and ofp.oxm_id("in_port") not in setf
    body = [ofp.TableFeatures(0, "t0")]
    assert error_of(rig.handle, ofp.TableFeaturesRequest(body)) == (OFPET.TABLE_FEATURES_FAILED, OFPTFFC.EPERM)


def test_flow_stats_split_over_several_replies():
    rig = Rig()
    for i in range(1500):
        rig.flow({"eth_type": 0x0800, "ipv4_dst": f"10.{i // 250}.{i % 250}.1"},
                 [ofp.SetField("eth_dst", "02:00:00:00:00:09"), ofp.Output(2)])
    replies = rig.handle(ofp.FlowStatsRequest(xid=21))
    assert len(replies) >= 2
    for r in replies:
        assert r.xid == 21 and len(r.pack()) <= 0xFFFF
    assert sum(len(r.body) for r in replies) == 1500
    [agg] = rig.handle(ofp.AggregateStatsRequest(match=ofp.Match(eth_type=0x0800, ipv4_dst=("10.1.0.0",
                                                                                          "255.255.0.0"))))
    assert agg.flow_count == 250
    [fs] = rig.handle(ofp.FlowStatsRequest(table_id=1))
    assert fs.body == []
    assert error_of(rig.handle, ofp.FlowStatsRequest(table_id=64)) == (OFPET.BAD_REQUEST, OFPBRC.BAD_TABLE_ID)
    assert error_of(rig.handle, ofp.AggregateStatsRequest(table_id=99)) == (OFPET.BAD_REQUEST,
                                                                             OFPBRC.BAD_TABLE_ID)
    [fs] = rig.handle(ofp.FlowStatsRequest(cookie=1, cookie_mask=1))
    assert fs.body == []


def test_flow_stats_reports_what_was_installed(rig):
    ins = [ofp.ApplyActions([ofp.Output(2)]), ofp.GotoTable(4)]
    rig.flow({"in_port": 1, "eth_type": 0x0800}, instructions=ins, priority=7, cookie=0xAB, idle_timeout=5,
             hard_timeout=9)
    [fs] = roundtrip(rig.handle(ofp.FlowStatsRequest()))
    [s] = fs.body
    assert (s.priority, s.cookie, s.idle_timeout, s.hard_timeout, s.table_id) == (7, 0xAB, 5, 9, 0)
    assert s.match == ofp.Match(in_port=1, eth_type=0x0800)
    assert s.instructions == ins
