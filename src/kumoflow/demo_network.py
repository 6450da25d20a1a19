"""The network demo: emulated hosts and Open vSwitch bridges, kumoflow's
controller with the l2 app, all-pairs ping, MAC tables and flows."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

from rich.console import Console
from rich.table import Table

from kumoflow import ofp
from kumoflow.apps.l2 import LearningSwitch
from kumoflow.controller import Controller
from kumoflow.ofp.text import format_flow


KIND_NAMES = {"ovs": "(Open vSwitch, userspace datapath)", "kumoflow": "(kumoflow switch)"}


class BackgroundController:
    """A controller on its own event loop in a thread, so the demo can drive
    the network synchronously and still ask the controller things."""

    def __init__(self, apps) -> None:
        self.controller = Controller(apps)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.address = None

    def start(self) -> str:
        self.thread.start()
        [self.address] = self.call(self.controller.start(["tcp:127.0.0.1:0"]))
        return f"tcp:127.0.0.1:{self.address.port}"

    def call(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.call(self.controller.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def run_network(topology: Path) -> int:
    from kumoflow.net import NetError, Network

    console = Console(highlight=False)
    console.width = max(console.width, 150)   # flows are long lines
    if os.geteuid() != 0:
        console.print("[red]the network demo needs root (namespaces, links, Open vSwitch)[/]")
        return 1
    l2 = LearningSwitch()
    ctl = BackgroundController([l2])
    target = ctl.start()
    console.print(f"[bold]kumoflow controller[/] (app l2) listening on {target}")
    net = Network.from_file(topology, name=f"demo{os.getpid() % 10000}", controllers=[target], fail_mode="secure")
    try:
        with console.status(f"bringing up {topology.name} ..."):
            net.up()
            net.wait_connected(30)
        kinds = ", ".join(f"{s.name} {KIND_NAMES.get(s.kind, s.kind)}" for s in net.plan.switches)
        console.print(f"[bold]{topology.name}[/]: {len(net.hosts)} hosts (each a network namespace), "
                      f"switches: {kinds}\n")
        with console.status("pinging every pair of hosts ..."):
            matrix = net.ping_all(retries=2)
        console.print(_ping_table(matrix, [h.name for h in net.hosts]))
        by_dpid = {s.dpid: s.name for s in net.plan.switches}
        for dpid, dp in sorted(ctl.controller.datapaths.items()):
            name = by_dpid.get(dpid, f"{dpid:#x}")
            console.print(_mac_table(name, l2.mac_table(dpid), net))
            reply = ctl.call(dp.request(ofp.FlowStatsRequest()))
            console.print(_flow_table(name, reply.body))
        ok = matrix.ok
        console.print(f"[bold {'green' if ok else 'red'}]{'all' if ok else 'NOT all'} pairs reachable[/]")
        return 0 if ok else 1
    except NetError as exc:
        console.print(f"[red]{exc}[/]")
        return 1
    finally:
        with console.status("tearing down ..."):
            try:
                net.down()
            finally:
                ctl.stop()
        console.print("network removed, controller stopped")


def _ping_table(matrix, names: list[str]) -> Table:
    table = Table(title="ping (row pings column)")
    table.add_column("")
    for name in names:
        table.add_column(name, justify="center")
    for src in names:
        cells = []
        for dst in names:
            if src == dst:
                cells.append("")
            else:
                cells.append("[green]ok[/]" if matrix[src, dst] else "[red]FAIL[/]")
        table.add_row(src, *cells)
    return table


def _mac_table(switch: str, macs: dict[str, int], net) -> Table:
    owner = {h.mac: h.name for h in net.hosts}
    table = Table(title=f"{switch}: learned MAC addresses")
    table.add_column("MAC")
    table.add_column("host")
    table.add_column("port", justify="right")
    for mac, port in sorted(macs.items(), key=lambda item: (item[1], item[0])):
        table.add_row(mac, owner.get(mac, "?"), str(port))
    return table


def _flow_table(switch: str, flows: list) -> Table:
    table = Table(title=f"{switch}: flows (OpenFlow flow-stats reply)")
    table.add_column("table", justify="right")
    table.add_column("prio", justify="right")
    table.add_column("packets", justify="right")
    table.add_column("bytes", justify="right")
    table.add_column("idle", justify="right")
    table.add_column("flow")
    for f in sorted(flows, key=lambda f: (f.table_id, -f.priority, -f.packet_count)):
        table.add_row(str(f.table_id), str(f.priority), str(f.packet_count), str(f.byte_count),
                      str(f.idle_timeout or ""), format_flow(f.match, f.instructions))
    return table
