"""The controller core's paths that matter when things go wrong, in memory
against real switch datapaths and a fake clock: errors reach the app that
caused them and no other, requests fail on ERROR and on timeout, a failing
app is isolated, FLOW_REMOVED finds its owner by cookie, a switch that
cannot be read is not brought up."""

from __future__ import annotations

import logging

from kumoflow import ofp
from kumoflow.controller import App, Flow, OpenFlowError, pipeline

from memnet import MemNet

FORWARD = pipeline.table_id("forward")


class Recorder(App):
    def __init__(self, name: str, table: str | None = None) -> None:
        self.name = name
        self.tables = (table,) if table else ()
        super().__init__()
        self.events: list[tuple] = []

    def table_miss(self, table):
        return [ofp.ApplyActions([ofp.Output(ofp.OFPP.CONTROLLER, ofp.OFPCML.NO_BUFFER)])]

    def switch_up(self, dp):
        self.events.append(("up", dp.id))

    def error(self, dp, msg, request):
        self.events.append(("error", msg.type, msg.code, request))

    def flow_removed(self, dp, msg):
        self.events.append(("removed", msg.cookie, msg.reason))

    def packet_in(self, dp, msg):
        self.events.append(("packet_in", msg.table_id))


def network(*apps, **options) -> MemNet:
    net = MemNet(list(apps), **options)
    net.switch(1, ports=2)
    net.start()
    return net


def test_an_error_reaches_the_app_that_caused_it_and_no_other(caplog):
    a, b = Recorder("a"), Recorder("b")
    net = network(a, b)
    dp = net.core.datapaths[1]
    bad = ofp.FlowMod(table_id=200, match=ofp.Match(in_port=1))    # the switch has 64 tables
    a.send(dp, bad)
    with caplog.at_level(logging.WARNING, logger="kumoflow.controller"):
        net.run()
    assert [e for e in a.events if e[0] == "error"] == [
        ("error", ofp.OFPET.FLOW_MOD_FAILED, ofp.OFPFMFC.BAD_TABLE_ID, bad)]
    assert not [e for e in b.events if e[0] == "error"]
    assert "FLOW_MOD_FAILED/BAD_TABLE_ID" in caplog.text


def test_expect_gets_the_error_then_a_timeout():
    net = network(Recorder("a"))
    dp = net.core.datapaths[1]
    answers = []
    dp.expect(ofp.FlowStatsRequest(table_id=201), answers.append)   # no such table
    net.run()
    [error] = answers
    assert isinstance(error, OpenFlowError) and isinstance(error.request, ofp.FlowStatsRequest)
    assert (error.error.type, error.error.code) == (ofp.OFPET.BAD_REQUEST, ofp.OFPBRC.BAD_TABLE_ID)

    switch = net.switches[1]
    switch._from_controller = lambda data: None         # the switch stops answering
    late = []
    dp.expect(ofp.BarrierRequest(), late.append, timeout=2.0)
    net.run()
    net.advance(1.9)
    assert late == []
    net.advance(0.2)
    assert len(late) == 1 and isinstance(late[0], TimeoutError)


def test_a_failing_handler_is_isolated_from_the_switch_and_the_other_apps(caplog):
    class Broken(Recorder):
        def switch_up(self, dp):
            raise RuntimeError("boom")

        def compile(self, key, dp):
            raise RuntimeError("compile boom")

        def owners(self):
            return ["x"]

    broken, fine = Broken("broken"), Recorder("fine", "forward")
    with caplog.at_level(logging.ERROR):
        net = network(broken, fine)
    assert ("up", 1) in fine.events and net.core.datapaths[1].is_up
    assert "app broken failed in switch_up" in caplog.text and "compile boom" in caplog.text
    # the switch still works: a miss of fine's table reaches fine
    net.switches[1].dp.receive(1, bytes.fromhex("ffffffffffff0a0000000001" "0800") + bytes(46))
    net.run()
    assert ("packet_in", FORWARD) in fine.events


def test_flow_removed_reaches_the_owner_by_cookie():
    class Timed(Recorder):
        def owners(self):
            return ["flow"]

        def compile(self, key, dp):
            return [Flow(FORWARD, 5, ofp.Match(in_port=1), [], self.cookie(7), hard_timeout=2,
                         flags=ofp.OFPFF.SEND_FLOW_REM)]

    owner, other = Timed("owner", "forward"), Recorder("other")
    net = network(other, owner, settle=0, audit_interval=0)
    net.advance(2.5)
    assert [e for e in owner.events if e[0] == "removed"] == [
        ("removed", owner.cookie(7), ofp.OFPRR.HARD_TIMEOUT)]
    assert not [e for e in other.events if e[0] == "removed"]


def test_a_switch_that_cannot_be_read_is_not_brought_up(caplog):
    app = Recorder("a")
    net = MemNet([app])
    switch = net.switch(1, ports=2)
    answer = switch.dp.handle
    switch.dp.handle = lambda msg: [] if isinstance(msg, ofp.FlowStatsRequest) else answer(msg)   # never replies
    with caplog.at_level(logging.WARNING, logger="kumoflow.controller"):
        net.start()
        net.advance(net.core.request_timeout + 1)
    assert app.events == [] and 1 not in net.core.datapaths
    assert "cannot read what the switch holds" in caplog.text
    assert not [m for m in switch.received if isinstance(m, ofp.FlowMod)]   # nothing sent blind


def test_an_undecodable_flow_stats_reply_fails_fast_and_the_switch_still_comes_up(caplog):
    """Open vSwitch reports some flows with OpenFlow 1.5 fields (packet_type, OXM basic 44)."""
    app = Recorder("a")
    net = MemNet([app], settle=0)
    switch = net.switch(1, ports=2)
    answer = switch.dp.handle

    def handle(msg):
        if not isinstance(msg, ofp.FlowStatsRequest):
            return answer(msg)
        flow = ofp.FlowStats(table_id=0, priority=5, match=ofp.Match(in_port=1))
        raw = bytearray(ofp.FlowStatsReply(body=[flow], xid=msg.xid).pack())
        at = raw.index((0x80000004).to_bytes(4, "big"))          # in_port's OXM header...
        raw[at:at + 4] = ((0x8000 << 16) | (44 << 9) | 4).to_bytes(4, "big")   # ...becomes packet_type
        switch.conn.send_raw(bytes(raw))
        return []

    switch.dp.handle = handle
    with caplog.at_level(logging.WARNING, logger="kumoflow.controller"):
        net.start()                                             # no clock advance: no timeout involved
    assert app.events == [("up", 1)]
    assert "cannot read its flows" in caplog.text
    errors = [m for m in switch.received if isinstance(m, ofp.ErrorMsg)]
    assert [(e.type, e.code) for e in errors] == [(ofp.OFPET.BAD_MATCH, ofp.OFPBMC.BAD_FIELD)]


def test_an_app_loads_what_it_requires_once_and_before_itself():
    from kumoflow.apps.fabric import Fabric

    class OnTop(App):
        name = "on-top"
        requires = ("fabric",)

    net = MemNet([OnTop()])
    assert [a.name for a in net.core.apps] == ["fabric", "on-top"]
    mine = Fabric(lldp_interval=0.5)
    net = MemNet([OnTop(), mine])                      # given explicitly: that instance, loaded first
    assert [a.name for a in net.core.apps] == ["fabric", "on-top"] and net.core.apps[0] is mine
    assert net.core.apps[1].peers["fabric"] is mine


def test_what_a_before_compile_callback_marks_is_compiled_and_sent_in_one_pass():
    class Model(App):
        name = "model"
        tables = ("forward",)

        def __init__(self):
            super().__init__()
            self.keys = []

        def owners(self):
            return list(self.keys)

        def compile(self, key, dp):
            return [Flow(FORWARD, 10, ofp.Match(eth_type=0x0800, ipv4_dst=f"10.0.0.{key}"), [], self.cookie(key))]

        def rebuild(self):
            self.keys = [1, 2, 3]
            for key in self.keys:
                self.changed(key)

    app = Model()
    net = network(app)
    syncs = []
    sync = net.core._sync
    net.core._sync = lambda dpid, keys: (syncs.append(dpid), sync(dpid, keys))
    net.core.before_compile(app.rebuild)
    net.run()
    assert syncs == [1]
    assert len([f for f in net.switches[1].flows(FORWARD) if f.priority == 10]) == 3
