"""The asyncio switch (runtime.Switch) with in-memory ports and controllers
over loopback TCP (no root): fail-standalone and fail-secure, packet-in and
flow-removed reaching the controller, port status, the status file."""

from __future__ import annotations

import asyncio
import json
import socket

from kumoflow import ofp
from kumoflow.switch.port import MemoryPort
from kumoflow.switch.runtime import Switch

from test_switch_channel import FakeController, Peer, run, until

H1, H2, H3 = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"
BROADCAST = "ff:ff:ff:ff:ff:ff"


def frame(dst: str, src: str, size: int = 60) -> bytes:
    head = bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", "")) + b"\x08\x00"
    return head + bytes(size - len(head))


def memory_ports(n: int = 3) -> dict[int, MemoryPort]:
    return {i: MemoryPort(i, f"m{i}") for i in range(1, n + 1)}


def taken(ports) -> dict[int, int]:
    return {n: len(p.take()) for n, p in ports.items()}


async def started(ports, **kwargs) -> Switch:
    switch = Switch(1, ports, tick_interval=0.1, **kwargs)
    switch.channels.min_backoff = 0.05
    switch.channels.max_backoff = 0.2
    await switch.start()
    return switch


def test_fail_standalone_learns_without_controller_and_yields_to_one():
    async def main():
        held = socket.socket()                             # the controller's port, bound and not listening:
        held.bind(("127.0.0.1", 0))                        # refused until it listens, and no one else's
        port = held.getsockname()[1]
        ports = memory_ports()
        switch = await started(ports, controllers=[f"tcp:127.0.0.1:{port}"], fail_mode="standalone")
        assert switch.standalone
        switch.receive(1, [frame(H2, H1)])                 # unknown destination: flooded
        assert taken(ports) == {1: 0, 2: 1, 3: 1}
        switch.receive(2, [frame(H1, H2)])                 # learned: only port 1
        assert taken(ports) == {1: 1, 2: 0, 3: 0}
        switch.receive(1, [frame(H2, H1)])
        assert taken(ports) == {1: 0, 2: 1, 3: 0}

        ctl = await FakeController().start(sock=held)      # the controller comes up
        peer = await ctl.peer()
        await until(lambda: not switch.standalone)
        switch.receive(1, [frame(H2, H1)])                 # pipeline: no flows, dropped
        assert taken(ports) == {1: 0, 2: 0, 3: 0}
        # a table-miss entry to the controller: the frame arrives as a packet-in
        peer.send(ofp.FlowMod(priority=0, instructions=[ofp.ApplyActions([ofp.Output(ofp.OFPP.CONTROLLER, 0xFFFF)])]))
        await peer.reply(ofp.BarrierRequest())
        switch.receive(3, [frame(H1, H3)])
        pin = await peer.wait(lambda m: isinstance(m, ofp.PacketIn))
        assert pin.match.get("in_port") == 3 and pin.data == frame(H1, H3)

        await ctl.stop()                                   # controller lost: standalone again
        await until(lambda: switch.standalone)
        switch.receive(1, [frame(BROADCAST, H1)])
        assert taken(ports) == {1: 0, 2: 1, 3: 1}
        await switch.stop()
    run(main())


def test_fail_secure_forwards_with_installed_flows_only():
    async def main():
        ports = memory_ports()
        switch = await started(ports, listen=["ptcp:0:127.0.0.1"], fail_mode="secure")
        assert not switch.standalone and switch.listening
        switch.receive(1, [frame(H2, H1)])
        assert taken(ports) == {1: 0, 2: 0, 3: 0}          # no flows, no learning
        port = int(switch.listening[0].split(":")[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = Peer(reader, writer)
        await until(lambda: client.conn.negotiated)
        client.send(ofp.FlowMod(priority=10, match=ofp.Match(in_port=1),
                                instructions=[ofp.ApplyActions([ofp.Output(2)])]))
        await client.reply(ofp.BarrierRequest())
        await client.close()
        await until(lambda: not switch.channels.channels)
        switch.receive(1, [frame(H2, H1), frame(H3, H1)])  # the flow forwards, with no one connected
        assert taken(ports) == {1: 0, 2: 2, 3: 0}
        assert not switch.standalone                        # a listener client is not a controller
        await switch.stop()
    run(main())


def test_timeouts_port_status_and_status_file(tmp_path):
    async def main():
        ctl = await FakeController().start()
        ports = memory_ports(2)
        status = tmp_path / "status.json"
        switch = await started(ports, controllers=[f"tcp:127.0.0.1:{ctl.port}"], status_file=str(status))
        peer = await ctl.peer()
        await until(lambda: json.loads(status.read_text())["connected"])
        info = json.loads(status.read_text())
        assert info["dpid"] == 1 and info["ports"] == {"1": "m1", "2": "m2"} and not info["standalone"]

        peer.send(ofp.FlowMod(priority=5, hard_timeout=1, flags=ofp.OFPFF.SEND_FLOW_REM, cookie=0x77,
                              match=ofp.Match(in_port=1), instructions=[ofp.ApplyActions([ofp.Output(2)])]))
        await peer.reply(ofp.BarrierRequest())
        removed = await peer.wait(lambda m: isinstance(m, ofp.FlowRemoved), timeout=15)
        assert removed.cookie == 0x77 and removed.reason == ofp.OFPRR.HARD_TIMEOUT

        ports[2].set_link(False)
        status_msg = await peer.wait(lambda m: isinstance(m, ofp.PortStatus) and m.desc.port_no == 2)
        assert status_msg.reason == ofp.OFPPR.MODIFY and status_msg.desc.state & ofp.OFPPS.LINK_DOWN

        await switch.stop()
        assert not status.exists()
        await ctl.stop()
    run(main())
