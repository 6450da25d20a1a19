"""The switch's controller channels over real TCP on loopback (no root):
roles and generation ids, slave restrictions, async filtering, several
controllers, the passive listener, keepalive and reconnection."""

from __future__ import annotations

import asyncio
import socket
import struct
import sys

import pytest

from kumoflow import ofp
from kumoflow.switch import channel as channel_module
from kumoflow.switch.channel import GENERATION_ID_UNSET, Channels
from kumoflow.switch.datapath import Datapath
from kumoflow.switch.port import MemoryPort

MASTER, SLAVE, EQUAL, NOCHANGE = (ofp.OFPCR.ROLE_MASTER, ofp.OFPCR.ROLE_SLAVE, ofp.OFPCR.ROLE_EQUAL,
                                  ofp.OFPCR.ROLE_NOCHANGE)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def until(predicate, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


def datapath():
    """The real datapath with two in-memory ports; `dp.handled` records what
    the channels handed to it."""
    dp = Datapath(dpid=1, n_tables=64, n_buffers=256)
    dp.add_port(MemoryPort(1, "p1"))
    dp.add_port(MemoryPort(2, "p2"))
    dp.handled = []
    real = dp.handle

    def handle(msg):
        dp.handled.append(msg)
        return real(msg)

    dp.handle = handle
    return dp


class Peer:
    """The far end of a channel: a controller or a management client."""

    def __init__(self, reader, writer, answer_echo: bool = True):
        self.reader, self.writer = reader, writer
        self.answer_echo = answer_echo
        # echoes are answered here (not by the Connection) so tests can count them
        self.conn = ofp.Connection(auto_echo=False)
        self.received: list = []
        self.closed = asyncio.Event()
        self._flush()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def send(self, msg: ofp.Message) -> int:
        xid = self.conn.send(msg)
        self._flush()
        return xid

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    def _flush(self):
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)

    async def _run(self):
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                for event in self.conn.receive_data(data):
                    self.received.append(event)
                    if self.answer_echo and isinstance(event, ofp.EchoRequest):
                        self.conn.send(ofp.EchoReply(event.data, xid=event.xid))
                self._flush()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.closed.set()

    async def reply(self, msg: ofp.Message, timeout: float = 3.0):
        """Send a request; the first message back with its xid."""
        xid = self.send(msg)
        return await self.wait(lambda m: isinstance(m, ofp.Message) and m.xid == xid
                               and not isinstance(m, ofp.Hello), timeout)

    async def wait(self, predicate, timeout: float = 3.0):
        await until(lambda: any(predicate(m) for m in self.received), timeout)
        return next(m for m in self.received if predicate(m))

    def of_type(self, cls) -> list:
        return [m for m in self.received if type(m) is cls]

    async def role(self, role: int, generation_id: int = 0):
        return await self.reply(ofp.RoleRequest(role, generation_id))

    async def close(self):
        self.writer.close()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class FakeController:
    """A TCP server the switch's active channel connects to."""

    def __init__(self, answer_echo: bool = True):
        self.answer_echo = answer_echo
        self.peers: list[Peer] = []
        self.server = None
        self.port = 0

    async def start(self, *, sock: socket.socket | None = None) -> "FakeController":
        """Listen on a port of the kernel's choosing, or on `sock` (bound, not
        yet listening: a port held for this controller, see `stop`)."""
        if sock is None:
            self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0, reuse_port=True)
        else:
            self.server = await asyncio.start_server(self._accept, sock=sock)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def _accept(self, reader, writer):
        self.peers.append(Peer(reader, writer, self.answer_echo))

    async def peer(self, index: int = 0, timeout: float = 5.0) -> Peer:
        await until(lambda: len(self.peers) > index, timeout)
        peer = self.peers[index]
        await until(lambda: peer.conn.negotiated, timeout)
        return peer

    async def stop(self, hold_port: bool = False) -> socket.socket | None:
        """Stop listening and close every connection. With `hold_port`, return
        a socket still bound to the port, not listening: connecting is refused
        and no other process can take the port until a controller starts on it."""
        hold = None
        if hold_port:
            hold = socket.socket()
            hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            hold.bind(("127.0.0.1", self.port))
        self.server.close()
        for peer in self.peers:
            await peer.close()
        await self.server.wait_closed()
        return hold


async def switch_with(*controllers: FakeController, listen: bool = False, **kwargs):
    dp = datapath()
    changes = []
    kwargs.setdefault("min_backoff", 0.05)
    kwargs.setdefault("max_backoff", 0.2)
    channels = Channels(dp, on_change=lambda: changes.append(channels.controller_connected), **kwargs)
    for c in controllers:
        channels.connect(f"tcp:127.0.0.1:{c.port}")
    port = None
    if listen:
        [bound] = await channels.listen("ptcp:0:127.0.0.1")
        port = bound.port
    return channels, dp, changes, port


async def client(port: int) -> Peer:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    peer = Peer(reader, writer)
    await until(lambda: peer.conn.negotiated)
    return peer


def error_of(msg) -> tuple[int, int]:
    assert isinstance(msg, ofp.ErrorMsg), msg
    return msg.type, msg.code


# --- basics -------------------------------------------------------------------------------


def test_requests_go_to_the_datapath_and_replies_keep_their_xid():
    async def main():
        ctl = await FakeController().start()
        channels, dp, changes, _ = await switch_with(ctl)
        peer = await ctl.peer()
        features = await peer.reply(ofp.FeaturesRequest())
        assert isinstance(features, ofp.FeaturesReply) and features.datapath_id == 1
        # xid 0 is kept as it is
        peer.send_raw(ofp.BarrierRequest().pack())
        await peer.wait(lambda m: isinstance(m, ofp.BarrierReply) and m.xid == 0)
        # echo from the controller is answered by the channel itself
        echo = await peer.reply(ofp.EchoRequest(b"ping"))
        assert isinstance(echo, ofp.EchoReply) and echo.data == b"ping"
        assert not any(isinstance(m, ofp.EchoRequest) for m in dp.handled)
        assert channels.controller_connected and changes == [True]
        await channels.close()
        await ctl.stop()
    run(main())


def test_switch_error_becomes_error_message_and_channel_stays_up():
    async def main():
        ctl = await FakeController().start()
        channels, dp, _, _ = await switch_with(ctl)
        peer = await ctl.peer()
        mod = ofp.FlowMod(table_id=200, match=ofp.Match(in_port=1, eth_type=0x0800, ipv4_dst="10.0.0.1"),
                          instructions=[ofp.ApplyActions([ofp.Output(2)])], xid=77)
        raw = mod.pack()
        peer.send_raw(raw)
        err = await peer.wait(lambda m: isinstance(m, ofp.ErrorMsg) and m.xid == 77)
        assert error_of(err) == (ofp.OFPET.FLOW_MOD_FAILED, ofp.OFPFMFC.BAD_TABLE_ID)
        assert err.data == raw[:64]
        # undecodable: unknown message type -> BAD_REQUEST/BAD_TYPE
        peer.send_raw(struct.pack("!BBHI", 4, 99, 8, 78))
        err = await peer.wait(lambda m: isinstance(m, ofp.ErrorMsg) and m.xid == 78)
        assert error_of(err) == (ofp.OFPET.BAD_REQUEST, ofp.OFPBRC.BAD_TYPE)
        # wrong version -> BAD_VERSION
        peer.send_raw(struct.pack("!BBHI", 1, 20, 8, 79))
        err = await peer.wait(lambda m: isinstance(m, ofp.ErrorMsg) and m.xid == 79)
        assert error_of(err) == (ofp.OFPET.BAD_REQUEST, ofp.OFPBRC.BAD_VERSION)
        # a datapath bug answers EPERM and keeps the channel
        def broken(msg):
            raise RuntimeError("a datapath bug")
        dp.handle = broken
        err = await peer.reply(ofp.DescRequest())
        assert error_of(err) == (ofp.OFPET.BAD_REQUEST, ofp.OFPBRC.EPERM)
        dp.handle = Datapath.handle.__get__(dp)
        assert isinstance(await peer.reply(ofp.BarrierRequest()), ofp.BarrierReply)
        assert len(channels.channels) == 1
        await channels.close()
        await ctl.stop()
    run(main())


# --- roles --------------------------------------------------------------------------------


def test_roles_and_generation_ids():
    async def main():
        a, b = await FakeController().start(), await FakeController().start()
        channels, dp, _, _ = await switch_with(a, b)
        pa, pb = await a.peer(), await b.peer()

        reply = await pa.role(NOCHANGE)
        assert (reply.role, reply.generation_id) == (EQUAL, GENERATION_ID_UNSET)
        reply = await pa.role(EQUAL, 12345)       # equal ignores the generation id
        assert (reply.role, reply.generation_id) == (EQUAL, GENERATION_ID_UNSET)

        reply = await pa.role(MASTER, 5)
        assert (reply.role, reply.generation_id) == (MASTER, 5)
        reply = await pb.role(MASTER, 6)          # b takes over: a becomes slave
        assert (reply.role, reply.generation_id) == (MASTER, 6)
        reply = await pa.role(NOCHANGE)
        assert (reply.role, reply.generation_id) == (SLAVE, 6)

        err = await pa.role(MASTER, 4)            # older generation: stale
        assert error_of(err) == (ofp.OFPET.ROLE_REQUEST_FAILED, ofp.OFPRRFC.STALE)
        assert err.data == ofp.RoleRequest(MASTER, 4, xid=err.xid).pack()
        assert (await pa.role(NOCHANGE)).role == SLAVE
        err = await pa.role(SLAVE, 5)
        assert error_of(err) == (ofp.OFPET.ROLE_REQUEST_FAILED, ofp.OFPRRFC.STALE)

        reply = await pa.role(MASTER, 6)          # same generation is not stale
        assert reply.role == MASTER
        assert (await pb.role(NOCHANGE)).role == SLAVE

        err = await pa.role(7)
        assert error_of(err) == (ofp.OFPET.ROLE_REQUEST_FAILED, ofp.OFPRRFC.BAD_ROLE)

        # two masters are impossible, but equals are many
        reply = await pb.role(EQUAL)
        assert reply.role == EQUAL and (await pa.role(NOCHANGE)).role == MASTER
        roles = sorted(c.role for c in channels.channels)
        assert roles == [EQUAL, MASTER]
        await channels.close()
        await a.stop()
        await b.stop()
    run(main())


def test_generation_id_comparison_wraps_around():
    async def main():
        ctl = await FakeController().start()
        channels, dp, _, _ = await switch_with(ctl)
        peer = await ctl.peer()
        top = 0xFFFFFFFFFFFFFFFF
        assert (await peer.role(MASTER, top - 1)).generation_id == top - 1
        # 1 - (2**64 - 2) == 3 (mod 2**64): newer, accepted
        reply = await peer.role(SLAVE, 1)
        assert (reply.role, reply.generation_id) == (SLAVE, 1)
        # (2**64 - 2) - 1 is negative as int64: stale
        err = await peer.role(MASTER, top - 1)
        assert error_of(err) == (ofp.OFPET.ROLE_REQUEST_FAILED, ofp.OFPRRFC.STALE)
        # half the space away counts as older
        assert error_of(await peer.role(MASTER, 1 + (1 << 63))) == (ofp.OFPET.ROLE_REQUEST_FAILED,
                                                                     ofp.OFPRRFC.STALE)
        assert (await peer.role(MASTER, (1 << 63))).generation_id == 1 << 63
        await channels.close()
        await ctl.stop()
    run(main())


def test_slave_is_read_only():
    async def main():
        a, b = await FakeController().start(), await FakeController().start()
        channels, dp, _, _ = await switch_with(a, b)
        pa, pb = await a.peer(), await b.peer()
        await pa.role(MASTER, 1)
        assert (await pb.role(SLAVE, 1)).role == SLAVE
        denied = [
            ofp.FlowMod(instructions=[ofp.ApplyActions([ofp.Output(1)])]),
            ofp.GroupMod(ofp.OFPGC.ADD, ofp.OFPGT.ALL, 1, []),
            ofp.MeterMod(ofp.OFPMC.ADD, ofp.OFPMF.KBPS, 1, [ofp.MeterBandDrop(1000)]),
            ofp.PortMod(1, config=ofp.OFPPC.PORT_DOWN, mask=ofp.OFPPC.PORT_DOWN),
            ofp.TableMod(0, 0),
            ofp.PacketOut(actions=[ofp.Output(1)], data=bytes(60)),
            ofp.SetConfig(miss_send_len=0xFFFF),
        ]
        before = len(dp.handled)
        for msg in denied:
            raw = msg.pack()
            err = await pb.reply(msg)
            assert error_of(err) == (ofp.OFPET.BAD_REQUEST, ofp.OFPBRC.IS_SLAVE), type(msg).__name__
            assert err.data == raw[:64] or err.data[8:] == raw[8:64]
        assert len(dp.handled) == before           # none reached the datapath
        assert dp.flows() == [] and dp.ports[2].sent == []
        # reads are allowed
        assert isinstance(await pb.reply(ofp.FeaturesRequest()), ofp.FeaturesReply)
        assert isinstance(await pb.reply(ofp.BarrierRequest()), ofp.BarrierReply)
        await pb.reply(ofp.GetAsyncRequest())
        # the master may do all of it
        assert not any(isinstance(m, ofp.ErrorMsg) for m in pa.received)
        pa.send(ofp.FlowMod(instructions=[ofp.ApplyActions([ofp.Output(1)])]))
        await pa.reply(ofp.BarrierRequest())
        assert isinstance(dp.handled[-2], ofp.FlowMod)
        assert not any(isinstance(m, ofp.ErrorMsg) for m in pa.received)
        assert len(dp.flows()) == 1
        # a slave that becomes equal may write again
        assert (await pb.role(EQUAL)).role == EQUAL
        pb.send(ofp.FlowMod(instructions=[]))
        await pb.reply(ofp.BarrierRequest())
        assert isinstance(dp.handled[-2], ofp.FlowMod)
        await channels.close()
        await a.stop()
        await b.stop()
    run(main())


# --- asynchronous messages ----------------------------------------------------------------


def packet_in(reason=ofp.OFPR.NO_MATCH, buffer_id=7):
    return ofp.PacketIn(buffer_id=buffer_id, total_len=60, reason=reason, match=ofp.Match(in_port=1),
                        data=bytes(60))


def port_status(reason=ofp.OFPPR.MODIFY):
    return ofp.PortStatus(reason, ofp.Port(1, "02:00:00:00:00:01", "p1"))


def flow_removed(reason=ofp.OFPRR.IDLE_TIMEOUT):
    return ofp.FlowRemoved(cookie=9, reason=reason, match=ofp.Match(in_port=1))


def test_async_messages_follow_roles_and_default_async_config():
    async def main():
        a, b, c = [await FakeController().start() for _ in range(3)]
        channels, dp, _, _ = await switch_with(a, b, c)
        pa, pb, pc = await a.peer(), await b.peer(), await c.peer()
        await pa.role(MASTER, 1)
        await pb.role(SLAVE, 1)       # pc stays equal

        for msg in (packet_in(), packet_in(ofp.OFPR.ACTION), packet_in(ofp.OFPR.INVALID_TTL),
                    port_status(), flow_removed(), flow_removed(ofp.OFPRR.DELETE)):
            channels.send_async(msg)
        await pa.reply(ofp.BarrierRequest())
        await pb.reply(ofp.BarrierRequest())
        await pc.reply(ofp.BarrierRequest())

        def summary(peer):
            return sorted((type(m).__name__, m.reason) for m in peer.received
                          if isinstance(m, (ofp.PacketIn, ofp.PortStatus, ofp.FlowRemoved)))

        wanted = [("FlowRemoved", 0), ("FlowRemoved", 2), ("PacketIn", 0), ("PacketIn", 1), ("PortStatus", 2)]
        assert summary(pa) == wanted                   # no INVALID_TTL by default
        assert summary(pc) == wanted                   # equal: as master
        assert summary(pb) == [("PortStatus", 2)]      # slave: port status only

        # the same packet-in (same buffer id, same bytes) went to both
        [pin_a] = [m for m in pa.of_type(ofp.PacketIn) if m.reason == 0]
        [pin_c] = [m for m in pc.of_type(ofp.PacketIn) if m.reason == 0]
        assert pin_a == pin_c and pin_a.buffer_id == 7

        # default async config as GET_ASYNC shows it
        got = await pb.reply(ofp.GetAsyncRequest())
        assert got.packet_in_mask == (0b011, 0)
        assert got.port_status_mask == (0b111, 0b111)
        assert got.flow_removed_mask == (0b1111, 0)
        await channels.close()
        for ctl in (a, b, c):
            await ctl.stop()
    run(main())


def test_set_async_is_per_channel():
    async def main():
        a, b = await FakeController().start(), await FakeController().start()
        channels, dp, _, _ = await switch_with(a, b)
        pa, pb = await a.peer(), await b.peer()
        await pa.role(MASTER, 1)
        await pb.role(SLAVE, 1)
        # the slave asks for packet-ins with INVALID_TTL only, and no port status
        pb.send(ofp.SetAsync(packet_in_mask=(0, 1 << ofp.OFPR.INVALID_TTL), port_status_mask=(0, 0),
                             flow_removed_mask=(0, 1 << ofp.OFPRR.HARD_TIMEOUT)))
        # the master wants no packet-ins at all
        pa.send(ofp.SetAsync(packet_in_mask=(0, 0), port_status_mask=(0b111, 0b111),
                             flow_removed_mask=(0b1111, 0)))
        got = await pb.reply(ofp.GetAsyncRequest())
        assert got.packet_in_mask == (0, 4) and got.port_status_mask == (0, 0) and got.flow_removed_mask == (0, 2)
        got = await pa.reply(ofp.GetAsyncRequest())
        assert got.packet_in_mask == (0, 0)
        assert not pa.of_type(ofp.ErrorMsg) and not pb.of_type(ofp.ErrorMsg)   # slaves may SET_ASYNC

        channels.send_async(packet_in(ofp.OFPR.NO_MATCH))
        channels.send_async(packet_in(ofp.OFPR.INVALID_TTL))
        channels.send_async(port_status())
        channels.send_async(flow_removed(ofp.OFPRR.HARD_TIMEOUT))
        await pa.reply(ofp.BarrierRequest())
        await pb.reply(ofp.BarrierRequest())
        assert [(type(m).__name__, m.reason) for m in pb.received
                if isinstance(m, (ofp.PacketIn, ofp.PortStatus, ofp.FlowRemoved))] == [
            ("PacketIn", ofp.OFPR.INVALID_TTL), ("FlowRemoved", ofp.OFPRR.HARD_TIMEOUT)]
        assert [(type(m).__name__, m.reason) for m in pa.received
                if isinstance(m, (ofp.PacketIn, ofp.PortStatus, ofp.FlowRemoved))] == [
            ("PortStatus", ofp.OFPPR.MODIFY), ("FlowRemoved", ofp.OFPRR.HARD_TIMEOUT)]

        # a role change switches to the other half of the masks
        await pb.role(MASTER, 2)
        channels.send_async(packet_in(ofp.OFPR.NO_MATCH))
        channels.send_async(port_status(ofp.OFPPR.ADD))
        await pb.reply(ofp.BarrierRequest())
        await pa.reply(ofp.BarrierRequest())
        assert [m.reason for m in pb.of_type(ofp.PacketIn)] == [ofp.OFPR.INVALID_TTL]   # master half: none
        assert [m.reason for m in pa.of_type(ofp.PortStatus)] == [ofp.OFPPR.MODIFY, ofp.OFPPR.ADD]  # now slave
        await channels.close()
        await a.stop()
        await b.stop()
    run(main())


def test_async_messages_wait_for_negotiation():
    async def main():
        dp = datapath()
        channels = Channels(dp)
        [bound] = await channels.listen("ptcp:0:127.0.0.1")
        reader, writer = await asyncio.open_connection("127.0.0.1", bound.port)
        await until(lambda: len(channels.channels) == 1)
        assert channels.send_async(packet_in()) == 0     # no HELLO yet: nothing sent
        peer = Peer(reader, writer)
        await until(lambda: channels.channels[0].negotiated)
        assert channels.send_async(packet_in()) == 1
        await peer.wait(lambda m: isinstance(m, ofp.PacketIn))
        await peer.close()
        await channels.close()
    run(main())


# --- listener, several controllers, fail-mode signal ------------------------------------------


def test_passive_listener_takes_many_clients_and_is_not_a_controller():
    async def main():
        channels, dp, changes, port = await switch_with(listen=True)
        clients = [await client(port) for _ in range(3)]
        for i, c in enumerate(clients):
            reply = await c.reply(ofp.FeaturesRequest())
            assert isinstance(reply, ofp.FeaturesReply)
        assert len(channels.channels) == 3
        assert not channels.controller_connected and changes == []
        await clients[0].close()
        await until(lambda: len(channels.channels) == 2)
        assert isinstance(await clients[1].reply(ofp.BarrierRequest()), ofp.BarrierReply)
        for c in clients[1:]:
            await c.close()
        await channels.close()
    run(main())


def test_reconnects_after_the_controller_restarts(caplog):
    async def main():
        ctl = await FakeController().start()
        port = ctl.port
        channels, dp, changes, _ = await switch_with(ctl)
        first = await ctl.peer()
        await first.role(MASTER, 3)
        await until(lambda: channels.controller_connected)

        held = await ctl.stop(hold_port=True)              # the controller goes away
        await until(lambda: not channels.controller_connected)
        assert changes == [True, False]
        await until(lambda: f"controller tcp:127.0.0.1:{port}: cannot connect" in caplog.text)   # refused

        ctl2 = await FakeController().start(sock=held)     # and comes back on the same port
        assert ctl2.port == port
        again = await ctl2.peer(timeout=5)
        await until(lambda: channels.controller_connected)
        assert changes == [True, False, True]
        # a new channel starts equal, with the default async config; the
        # switch remembers the generation id
        reply = await again.role(NOCHANGE)
        assert (reply.role, reply.generation_id) == (EQUAL, 3)
        assert error_of(await again.role(MASTER, 2))[1] == ofp.OFPRRFC.STALE
        assert isinstance(await again.reply(ofp.FeaturesRequest()), ofp.FeaturesReply)
        await channels.close()
        await ctl2.stop()
    run(main())


class WaitsRecorded:
    """The channel module's `asyncio`, whose `sleep` records the waits of the
    reconnect loop and lets them pass at once (the others sleep as usual)."""

    def __init__(self) -> None:
        self.backoffs: list[float] = []

    def __getattr__(self, name):
        return getattr(asyncio, name)

    async def sleep(self, delay, result=None):
        if sys._getframe(1).f_code.co_name == "_connect_loop":    # the coroutine awaiting this one
            self.backoffs.append(delay)
            delay = 0
        return await asyncio.sleep(delay, result)


def test_backoff_grows_and_is_capped(monkeypatch):
    waits = WaitsRecorded()
    monkeypatch.setattr(channel_module, "asyncio", waits)

    async def main():
        attempts = []

        async def count(reader, writer):
            attempts.append(len(waits.backoffs))
            writer.close()                                 # accept and drop at once: never negotiated

        server = await asyncio.start_server(count, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        channels = Channels(datapath(), min_backoff=0.05, max_backoff=0.2)
        channels.connect(f"tcp:127.0.0.1:{port}")
        await until(lambda: len(attempts) >= 6, timeout=10)
        await channels.close()
        server.close()
        await server.wait_closed()
        return attempts

    attempts = run(main())
    assert attempts[:6] == [0, 1, 2, 3, 4, 5]              # one wait between attempts
    assert waits.backoffs[:5] == [0.05, 0.1, 0.2, 0.2, 0.2]  # doubling from the least, capped


def test_dead_controller_is_detected_by_echo_and_reconnected():
    async def main():
        ctl = await FakeController(answer_echo=False).start()
        channels, dp, changes, _ = await switch_with(ctl, echo_interval=0.2, echo_timeout=0.6)
        peer = await ctl.peer()
        # silent controller: the switch sends echo requests, then gives up
        await peer.wait(lambda m: isinstance(m, ofp.EchoRequest), timeout=10)
        await asyncio.wait_for(peer.closed.wait(), 10)
        await until(lambda: len(ctl.peers) >= 2, timeout=10)   # and reconnects
        assert changes[:2] == [True, False]
        await channels.close()
        await ctl.stop()
    run(main())


def test_live_controller_answering_echoes_stays_connected():
    async def main():
        ctl = await FakeController(answer_echo=True).start()
        channels, dp, changes, _ = await switch_with(ctl, echo_interval=0.1, echo_timeout=2.0)
        peer = await ctl.peer()
        # Echoes go out at least echo_interval apart: 25 of them span 2.4 s of
        # the switch's clock, longer than echo_timeout. Only the replies kept
        # the channel up that long.
        await until(lambda: len(peer.of_type(ofp.EchoRequest)) >= 25 or peer.closed.is_set(), timeout=30)
        assert not peer.closed.is_set() and len(ctl.peers) == 1 and changes == [True]
        await channels.close()
        await ctl.stop()
    run(main())


def test_hello_failure_closes_only_that_channel():
    async def main():
        channels, dp, changes, port = await switch_with(listen=True)
        good = await client(port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # an OpenFlow 1.0-only peer: HELLO version 1 without bitmap
        writer.write(struct.pack("!BBHI", 1, 0, 8, 1))
        data = b""
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 3)
            if not chunk:
                break                         # the switch closed this channel
            data += chunk
        hello_len = struct.unpack_from("!H", data, 2)[0]
        version, msg_type, _, _, err_type, code = struct.unpack_from("!BBHIHH", data, hello_len)
        assert (version, msg_type) == (1, ofp.OFPT.ERROR)
        assert (err_type, code) == (ofp.OFPET.HELLO_FAILED, ofp.OFPHFC.INCOMPATIBLE)
        await until(lambda: len(channels.channels) == 1)
        assert isinstance(await good.reply(ofp.BarrierRequest()), ofp.BarrierReply)
        writer.close()
        await good.close()
        await channels.close()
    run(main())


def test_bad_addresses_are_refused():
    async def main():
        channels = Channels(datapath())
        with pytest.raises(ValueError):
            channels.connect("ptcp:6653")
        with pytest.raises(ValueError):
            await channels.listen("tcp:127.0.0.1:6653")
        await channels.close()
    run(main())
