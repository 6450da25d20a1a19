"""A scripted OpenFlow switch for controller tests: answers the handshake,
barriers and echoes, and records everything else the controller sends."""

from __future__ import annotations

import asyncio

from kumoflow import ofp


class FakeSwitch:
    def __init__(self, dpid: int, ports: list[int] = (1, 2, 3), n_buffers: int = 0, answer_echo: bool = True):
        self.dpid = dpid
        self.ports = [ofp.Port(p, f"02:00:00:00:{dpid:02x}:{p:02x}", f"s{dpid}-eth{p}") for p in ports]
        self.n_buffers = n_buffers
        self.answer_echo = answer_echo
        self.conn = ofp.Connection(auto_echo=answer_echo)
        self.received: list[ofp.Message] = []
        self.flows: list[ofp.FlowStats] = []
        self.arrived = asyncio.Condition()
        self.reader = self.writer = None
        self._task = None

    async def connect(self, port: int) -> "FakeSwitch":
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self._flush()
        self._task = asyncio.create_task(self._run())
        return self

    def send(self, msg: ofp.Message) -> None:
        self.conn.send(msg)
        self._flush()

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def close(self) -> None:
        if self.writer:
            self.writer.close()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def wait_for(self, predicate, timeout: float = 5.0) -> list[ofp.Message]:
        """Wait until predicate(received) is true; return the matching messages."""
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: predicate(self.received)), timeout)
        return self.received

    async def wait_type(self, cls, count: int = 1, timeout: float = 5.0) -> list:
        await self.wait_for(lambda r: sum(isinstance(m, cls) for m in r) >= count, timeout)
        return [m for m in self.received if isinstance(m, cls)]

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)

    async def _run(self) -> None:
        while True:
            data = await self.reader.read(65536)
            if not data:
                return
            for msg in self.conn.receive_data(data):
                self._answer(msg)
            self._flush()
            async with self.arrived:
                self.arrived.notify_all()

    def _answer(self, msg) -> None:
        if isinstance(msg, ofp.FeaturesRequest):
            self.conn.send(ofp.FeaturesReply(self.dpid, n_buffers=self.n_buffers, n_tables=254, xid=msg.xid))
        elif isinstance(msg, ofp.PortDescRequest):
            half = len(self.ports) // 2
            # Two parts, to exercise multipart reassembly.
            self.conn.send(ofp.PortDescReply(body=self.ports[:half], flags=ofp.OFPMPF.REPLY_MORE, xid=msg.xid))
            self.conn.send(ofp.PortDescReply(body=self.ports[half:], xid=msg.xid))
        elif isinstance(msg, ofp.BarrierRequest):
            self.conn.send(ofp.BarrierReply(xid=msg.xid))
        elif isinstance(msg, (ofp.FlowStatsRequest, ofp.GroupDescRequest, ofp.MeterConfigRequest)):
            # what the switch holds: nothing (plus any flows a test put in self.flows)
            self.received.append(msg)
            reply = {ofp.FlowStatsRequest: ofp.FlowStatsReply, ofp.GroupDescRequest: ofp.GroupDescReply,
                     ofp.MeterConfigRequest: ofp.MeterConfigReply}[type(msg)]
            body = list(self.flows) if reply is ofp.FlowStatsReply else []
            self.conn.send(reply(body=body, xid=msg.xid))
        elif isinstance(msg, ofp.Hello):
            pass
        else:
            self.received.append(msg)
