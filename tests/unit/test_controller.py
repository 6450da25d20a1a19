"""The controller runtime and the l2 app against scripted switches over real TCP."""

import asyncio
import logging

import pytest

from kumoflow import ofp
from kumoflow.apps.l2 import LearningSwitch
from kumoflow.controller import App, Controller, OpenFlowError, pipeline

from fake_switch import FakeSwitch

H1, H2, H3 = "00:00:00:00:00:01", "00:00:00:00:00:02", "00:00:00:00:00:03"
BROADCAST = "ff:ff:ff:ff:ff:ff"
FORWARD = pipeline.table_id("forward")


def frame(dst: str, src: str, ethertype: int = 0x0800, size: int = 60) -> bytes:
    head = bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", "")) + ethertype.to_bytes(2, "big")
    return head + bytes(size - len(head))


def packet_in(in_port: int, data: bytes, buffer_id: int = ofp.OFP_NO_BUFFER) -> ofp.PacketIn:
    """A miss of l2's table (packet-ins reach the app that fills their table)."""
    return ofp.PacketIn(buffer_id=buffer_id, total_len=len(data), table_id=FORWARD, match=ofp.Match(in_port=in_port),
                        data=data)


class Recorder(App):
    name = "recorder"

    def __init__(self):
        super().__init__()
        self.events = []
        self.up = asyncio.Event()

    def switch_up(self, dp):
        self.events.append(("up", dp.id, sorted(dp.ports)))
        self.up.set()

    def switch_down(self, dp):
        self.events.append(("down", dp.id))

    def error(self, dp, msg, request):
        self.events.append(("error", msg.type, msg.code, request))

    def port_status(self, dp, msg):
        self.events.append(("port", msg.desc.port_no))


async def started(*apps, **kwargs):
    controller = Controller(list(apps), **kwargs)
    [address] = await controller.start(["tcp:127.0.0.1:0"])
    return controller, address.port


async def until(predicate, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_handshake_reads_the_switch_then_installs_only_what_is_missing():
    async def main():
        rec = Recorder()
        controller, port = await started(rec)
        sw = await FakeSwitch(0xA, ports=[1, 2, 3, 4]).connect(port)
        # the classify table's miss entry is already there: it must not be sent again
        cookie = pipeline.cookie(pipeline.FUNCTIONS["pipeline"], 0)
        sw.flows = [ofp.FlowStats(table_id=0, priority=0, cookie=cookie,
                                  instructions=[ofp.GotoTable(pipeline.table_id("forward"))])]
        await asyncio.wait_for(rec.up.wait(), 5)
        assert rec.events == [("up", 0xA, [1, 2, 3, 4])]      # both multipart parts merged
        assert controller.datapaths[0xA].features.n_tables == 254
        reads = [type(m) for m in sw.received if isinstance(m, ofp.MultipartRequest)]
        assert reads == [ofp.FlowStatsRequest, ofp.GroupDescRequest, ofp.MeterConfigRequest]
        await until(lambda: any(isinstance(m, ofp.FlowMod) for m in sw.received))
        mods = [m for m in sw.received if isinstance(m, ofp.FlowMod)]
        # no flush: just the miss entries of the other tables (forward's: drop; nothing fills it)
        assert sorted((m.command, m.table_id, m.priority, m.instructions) for m in mods) == [
            (ofp.OFPFC.ADD, t.id, 0, pipeline.miss_instructions(t)) for t in pipeline.TABLES if t.name != "classify"]
        await sw.close()
        await until(lambda: ("down", 0xA) in rec.events)
        assert 0xA not in controller.datapaths
        await controller.stop()
    run(main())


def test_l2_floods_unknown_then_installs_flow_and_packet_out():
    async def main():
        l2 = LearningSwitch(idle_timeout=30)
        controller, port = await started(l2)
        sw = await FakeSwitch(1).connect(port)
        await until(lambda: 1 in controller.datapaths and controller.datapaths[1].is_up)
        await until(lambda: any(isinstance(m, ofp.FlowMod) and m.table_id == FORWARD for m in sw.received))
        miss = [m for m in sw.received if isinstance(m, ofp.FlowMod) and m.table_id == FORWARD][0]
        assert miss.priority == 0 and miss.instructions == [ofp.ApplyActions([ofp.Output(ofp.OFPP.CONTROLLER, 128)])]
        sw.received.clear()

        sw.send(packet_in(1, frame(H2, H1)))                    # h1 -> h2: h2 unknown
        [out] = await sw.wait_type(ofp.PacketOut)
        assert out.actions == [ofp.Output(ofp.OFPP.FLOOD)] and out.in_port == 1 and out.data == frame(H2, H1)
        sw.received.clear()

        sw.send(packet_in(2, frame(H1, H2)))                    # h2 -> h1: h1 known on port 1
        await sw.wait_type(ofp.PacketOut)
        [mod] = [m for m in sw.received if isinstance(m, ofp.FlowMod)]
        assert mod.match == ofp.Match(in_port=2, eth_dst=H1, eth_src=H2)
        assert mod.instructions == [ofp.ApplyActions([ofp.Output(1)])]
        assert (mod.idle_timeout, mod.table_id, mod.cookie >> 56) == (30, FORWARD, pipeline.FUNCTIONS["l2"])
        [out] = [m for m in sw.received if isinstance(m, ofp.PacketOut)]
        assert out.actions == [ofp.Output(1)] and out.data == frame(H1, H2)
        assert l2.mac_table(1) == {H1: 1, H2: 2}
        await sw.close()
        await controller.stop()
    run(main())


def test_l2_uses_buffer_id_when_switch_buffered():
    async def main():
        controller, port = await started(LearningSwitch())
        sw = await FakeSwitch(1, n_buffers=256).connect(port)
        await until(lambda: 1 in controller.datapaths and controller.datapaths[1].is_up)
        sw.send(packet_in(1, frame(H2, H1), buffer_id=7))
        [out] = await sw.wait_type(ofp.PacketOut)
        assert (out.buffer_id, out.data) == (7, b"")
        sw.received.clear()
        sw.send(packet_in(2, frame(H1, H2)[:32], buffer_id=8))
        [mod] = [m for m in await sw.wait_type(ofp.FlowMod)]
        assert mod.buffer_id == 8
        await asyncio.sleep(0.1)
        assert not [m for m in sw.received if isinstance(m, ofp.PacketOut)]   # the flow-mod released it
        await sw.close()
        await controller.stop()
    run(main())


def test_l2_broadcast_floods_and_mac_move_deletes_old_flows():
    async def main():
        l2 = LearningSwitch()
        controller, port = await started(l2)
        sw = await FakeSwitch(1).connect(port)
        await until(lambda: 1 in controller.datapaths and controller.datapaths[1].is_up)
        sw.received.clear()
        sw.send(packet_in(1, frame(BROADCAST, H1, 0x0806)))
        [out] = await sw.wait_type(ofp.PacketOut)
        assert out.actions == [ofp.Output(ofp.OFPP.FLOOD)]
        sw.received.clear()
        sw.send(packet_in(3, frame(BROADCAST, H1, 0x0806)))     # h1 now behind port 3
        await sw.wait_type(ofp.PacketOut)
        [delete] = [m for m in sw.received if isinstance(m, ofp.FlowMod)]
        assert delete.command == ofp.OFPFC.DELETE and delete.match == ofp.Match(eth_dst=H1)
        assert delete.cookie == l2.cookie() and delete.cookie_mask == 0xFF << 56
        assert l2.mac_table(1) == {H1: 3}
        await sw.close()
        await controller.stop()
    run(main())


def test_l2_port_down_forgets_macs_and_deletes_flows():
    async def main():
        l2, rec = LearningSwitch(), Recorder()
        controller, port = await started(l2, rec)
        sw = await FakeSwitch(1).connect(port)
        await asyncio.wait_for(rec.up.wait(), 5)
        sw.send(packet_in(1, frame(BROADCAST, H1)))
        sw.send(packet_in(2, frame(BROADCAST, H2)))
        await sw.wait_type(ofp.PacketOut, 2)
        sw.received.clear()
        down = ofp.Port(1, "02:00:00:00:01:01", "s1-eth1", state=ofp.OFPPS.LINK_DOWN)
        sw.send(ofp.PortStatus(ofp.OFPPR.MODIFY, down))
        deletes = await sw.wait_type(ofp.FlowMod, 2)
        assert {(d.out_port, tuple(d.match.items())) for d in deletes} == {
            (1, ()), (ofp.OFPP.ANY, (("in_port", 1),))}
        assert l2.mac_table(1) == {H2: 2}
        assert ("port", 1) in rec.events
        assert controller.datapaths[1].ports[1].state == ofp.OFPPS.LINK_DOWN
        await sw.close()
        await controller.stop()
    run(main())


def test_error_reaches_the_app_that_caused_it(caplog):
    async def main():
        rec = Recorder()
        controller, port = await started(rec)
        sw = await FakeSwitch(1).connect(port)
        await asyncio.wait_for(rec.up.wait(), 5)
        dp = controller.datapaths[1]
        bad = ofp.FlowMod(table_id=200, match=ofp.Match(in_port=9))
        xid = rec.send(dp, bad)
        await sw.wait_for(lambda r: any(m.xid == xid for m in r))
        sw.send(ofp.ErrorMsg.for_request(ofp.OFPET.FLOW_MOD_FAILED, ofp.OFPFMFC.BAD_TABLE_ID, bad.pack()))
        await until(lambda: any(e[0] == "error" for e in rec.events))
        [event] = [e for e in rec.events if e[0] == "error"]
        assert event == ("error", ofp.OFPET.FLOW_MOD_FAILED, ofp.OFPFMFC.BAD_TABLE_ID, bad)
        await sw.close()
        await controller.stop()
    with caplog.at_level(logging.WARNING, logger="kumoflow.controller"):
        run(main())
    assert "FLOW_MOD_FAILED/BAD_TABLE_ID" in caplog.text and "in_port=9" in caplog.text


def test_hostile_switch_does_not_disturb_others():
    async def main():
        rec = Recorder()
        controller, port = await started(LearningSwitch(), rec)
        good = await FakeSwitch(1).connect(port)
        await asyncio.wait_for(rec.up.wait(), 5)
        # A second switch that sends garbage after a valid handshake, then broken framing.
        evil = await FakeSwitch(2).connect(port)
        await until(lambda: 2 in controller.datapaths)
        evil.send_raw(b"\x04\x63\x00\x08\x00\x00\x00\x01")               # unknown type
        evil.send_raw(ofp.PacketIn(match=ofp.Match(in_port=1), data=b"\x01").pack())   # runt frame
        [err] = await evil.wait_type(ofp.ErrorMsg)
        assert (err.type, err.code) == (ofp.OFPET.BAD_REQUEST, ofp.OFPBRC.BAD_TYPE)
        evil.send_raw(b"\x04\x0a\x00\x02")                                # length < 8: framing lost
        await until(lambda: 2 not in controller.datapaths)
        # The good switch is still served.
        good.received.clear()
        good.send(packet_in(1, frame(BROADCAST, H1)))
        [out] = await good.wait_type(ofp.PacketOut)
        assert out.actions == [ofp.Output(ofp.OFPP.FLOOD)]
        await good.close()
        await evil.close()
        await controller.stop()
    run(main())


def test_dead_peer_is_detected_by_echo_timeout():
    async def main():
        rec = Recorder()
        controller, port = await started(rec, echo_interval=0.2, echo_timeout=0.6)
        sw = await FakeSwitch(1, answer_echo=False).connect(port)
        await asyncio.wait_for(rec.up.wait(), 5)
        echoes = await sw.wait_type(ofp.EchoRequest, timeout=3)
        assert echoes
        await until(lambda: ("down", 1) in rec.events, timeout=3)
        await sw.close()
        await controller.stop()
    run(main())


def test_reconnecting_switch_replaces_its_old_session():
    async def main():
        rec = Recorder()
        controller, port = await started(rec)
        first = await FakeSwitch(5).connect(port)
        await asyncio.wait_for(rec.up.wait(), 5)
        rec.up.clear()
        second = await FakeSwitch(5).connect(port)
        await asyncio.wait_for(rec.up.wait(), 5)
        assert [e for e in rec.events if e[0] in ("up", "down")] == [
            ("up", 5, [1, 2, 3]), ("down", 5), ("up", 5, [1, 2, 3])]
        assert controller.datapaths[5].is_up
        await first.close()
        await second.close()
        await controller.stop()
    run(main())


def test_apps_fill_named_tables_and_get_their_own_cookies():
    class Other(App):
        name = "other"
        tables = ("classify",)

    l2, other = LearningSwitch(), Other()
    controller = Controller([other, l2])
    assert controller.core._table_app == {0: other, FORWARD: l2}
    assert other.cookie() >> 56 == pipeline.CUSTOM_FUNCTIONS and l2.cookie() >> 56 == pipeline.FUNCTIONS["l2"]
    assert list(other.ids) != list(l2.ids) and not set(other.ids) & set(l2.ids)

    class Rival(App):
        name = "rival"
        tables = ("forward",)

    with pytest.raises(ValueError, match="both fill table forward"):
        Controller([l2, Rival()])


class Wire:
    """Where a sans-IO Datapath's bytes go."""

    def __init__(self):
        self.writes = []

    def __call__(self, data):
        self.writes.append(data)


def test_send_many_writes_as_it_encodes_in_order():
    from kumoflow.controller import Core
    from kumoflow.controller.datapath import SEND_MANY_BATCH

    core = Core([])
    dp = core.connect()
    dp.write = wire = Wire()
    dp.flush()                                               # our HELLO
    wire.writes.clear()
    mods = [ofp.FlowMod(priority=i, match=ofp.Match(in_port=i + 1)) for i in range(2 * SEND_MANY_BATCH + 3)]
    dp.send_many(mods, origin=App())
    # the switch gets the first ones while the rest are encoded
    assert [len(w) for w in wire.writes] == [sum(len(m.pack()) for m in part) for part in
                                            (mods[:SEND_MANY_BATCH], mods[SEND_MANY_BATCH:-3], mods[-3:])]
    assert b"".join(wire.writes) == b"".join(m.pack() for m in mods)
    assert [m.xid for m in mods] == list(range(mods[0].xid, mods[0].xid + len(mods)))
    # inside an event (a batch) single sends wait for its end
    wire.writes.clear()
    with core.batch():
        for i in range(3):
            dp.send(ofp.FlowMod(priority=i))
        assert wire.writes == []
    assert len(wire.writes) == 1


def test_errors_are_routed_for_the_last_messages_sent():
    from kumoflow.controller import Core
    from kumoflow.controller.datapath import SENT_MEMORY

    app = App()
    dp = Core([]).connect()
    msgs = [ofp.FlowMod(priority=i) for i in range(SENT_MEMORY + 10)]
    dp.send_many(msgs[:5])                                  # no origin: not remembered
    dp.send_many(msgs[5:], origin=app)
    assert list(dp._sent) == [m.xid for m in msgs[10:]]
    assert all(dp._sent[m.xid] == (app, m) for m in msgs[10:])


def test_request_raises_on_error_and_on_timeout():
    async def main():
        rec = Recorder()
        controller, port = await started(rec)
        sw = await FakeSwitch(1).connect(port)
        await asyncio.wait_for(rec.up.wait(), 5)
        dp = controller.datapaths[1]
        asking = asyncio.ensure_future(dp.request(ofp.DescRequest()))
        [desc] = await sw.wait_type(ofp.DescRequest)            # the fake switch records it, answers nothing
        sw.send(ofp.ErrorMsg.for_request(ofp.OFPET.BAD_REQUEST, ofp.OFPBRC.BAD_MULTIPART, desc.pack()))
        with pytest.raises(OpenFlowError) as caught:
            await asking
        assert (caught.value.error.code, type(caught.value.request)) == (ofp.OFPBRC.BAD_MULTIPART, ofp.DescRequest)
        with pytest.raises(asyncio.TimeoutError):
            await dp.request(ofp.DescRequest(), timeout=0.2)     # unanswered
        assert dp.is_up                                          # a failed request leaves the switch alone
        await sw.close()
        await controller.stop()
    run(main())
