"""The network demo: emulated hosts and switches of both kinds, kumoflow's
controller with the fabric app (or the classic l2 app): links and hosts it
discovered, all-pairs ping, the flows and groups it compiled, and a link
cut that traffic routes around."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kumoflow import ofp
from kumoflow.apps.fabric import Fabric
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


def run_network(topology: Path, app: str = "fabric") -> int:
    from kumoflow.net import NetError, Network, load_topology

    console = Console(highlight=False)
    console.width = max(console.width, 150)   # flows are long lines
    # the file first (no root needed), with the overrides the demo applies
    try:
        topo = load_topology(topology).with_overrides(
            name=f"demo{os.getpid() % 10000}", controllers=["tcp:127.0.0.1:6653"], fail_mode="secure")
        Network(topo)                          # the plan (interface names) can be refused too
    except (NetError, ValueError) as exc:
        print(f"kumoflow: invalid topology\n{exc}", file=sys.stderr)
        return 2
    if not topo.switches or len(topo.hosts) < 2:
        print(f"kumoflow: {topology}: the demo needs a switch and at least two hosts", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        console.print("[red]the network demo needs root (namespaces, links, Open vSwitch)[/]")
        return 1
    main = Fabric() if app == "fabric" else LearningSwitch()
    ctl = BackgroundController([main])
    target = ctl.start()
    console.print(f"[bold]kumoflow controller[/] (app {app}) listening on {target}")
    net = Network(topo, controllers=[target])
    try:
        with console.status(f"bringing up {topology.name} ..."):
            net.up()
            net.wait_connected(30)
        kinds = ", ".join(f"{s.name} {KIND_NAMES.get(s.kind, s.kind)}" for s in net.plan.switches)
        console.print(f"[bold]{topology.name}[/]: {len(net.hosts)} hosts (each a network namespace), "
                      f"switches: {kinds}\n")
        names = {s.dpid: s.name for s in net.plan.switches}
        with console.status("pinging every pair of hosts ..."):
            matrix = net.ping_all(retries=4)
        console.print(_ping_table(matrix, [h.name for h in net.hosts]))
        ok = matrix.ok
        if app == "fabric":
            ok = _show_fabric(console, ctl, net, names) and ok
        else:
            for dpid, dp in sorted(ctl.controller.datapaths.items()):
                console.print(_mac_table(names.get(dpid, f"{dpid:#x}"), main.mac_table(dpid), net))
                console.print(_flow_table(names.get(dpid, f"{dpid:#x}"), ctl.call(dp.request(ofp.FlowStatsRequest())).body))
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


def _show_fabric(console: Console, ctl: BackgroundController, net, names: dict[int, str]) -> bool:
    """Links and hosts found, one switch's flows and groups, then a link cut."""
    core = ctl.controller.core

    async def view():
        links = sorted(core.topology.graph.links)
        hosts = sorted((h.mac, h.dpid, h.port, sorted(h.ips)) for h in core.hosts)
        return links, hosts

    links, hosts = ctl.call(view())
    console.print(_links_table(links, names))
    console.print(_hosts_table(hosts, names, net))
    first = min(core.datapaths)
    dp = core.datapaths[first]
    console.print(_flow_table(names.get(first, f"{first:#x}"), ctl.call(dp.request(ofp.FlowStatsRequest())).body))
    console.print(_group_table(names.get(first, f"{first:#x}"),
                               ctl.call(dp.request(ofp.GroupDescRequest())).body))
    # cut the first link between two switches and ping again
    cut = next((link for link in net.plan.links if link.b.netns is None), None)
    if cut is None:
        console.print("no link between two switches to cut in this topology")
        return True
    console.print(f"[bold]cutting the link {cut.a.node} port {cut.a.port} - {cut.b.node} port {cut.b.port}[/] "
                  f"(ip link set {cut.a.ifname} down)")
    subprocess.run(["ip", "link", "set", cut.a.ifname, "down"], check=True)
    with console.status("pinging every pair of hosts again ..."):
        matrix = net.ping_all(retries=4)
    console.print(_ping_table(matrix, [h.name for h in net.hosts]))
    links_after, _ = ctl.call(view())
    console.print(f"links known to the controller: {len(links)} before the cut, {len(links_after)} after")
    return matrix.ok and len(links_after) == len(links) - 1


def _links_table(links, names: dict[int, str]) -> Table:
    table = Table(title="links discovered by LLDP")
    for column in ("switch", "port", "switch", "port"):
        table.add_column(column)
    for link in links:
        table.add_row(names.get(link.a, f"{link.a:#x}"), str(link.a_port), names.get(link.b, f"{link.b:#x}"),
                      str(link.b_port))
    return table


def _hosts_table(hosts, names: dict[int, str], net) -> Table:
    owner = {h.mac: h.name for h in net.hosts}
    table = Table(title="hosts found by the controller")
    for column in ("MAC", "host", "switch", "port", "addresses"):
        table.add_column(column)
    for mac, dpid, port, ips in hosts:
        table.add_row(mac, owner.get(mac, "?"), names.get(dpid, f"{dpid:#x}"), str(port), " ".join(ips))
    return table


def _group_table(switch: str, groups: list) -> Table:
    kinds = {int(ofp.OFPGT.ALL): "all", int(ofp.OFPGT.SELECT): "select", int(ofp.OFPGT.INDIRECT): "indirect",
             int(ofp.OFPGT.FF): "fast-failover"}
    table = Table(title=f"{switch}: groups (the way to each other switch: select = equal-cost paths, "
                        "fast-failover = a backup where the topology has one)")
    table.add_column("group", justify="right")
    table.add_column("type")
    table.add_column("buckets")
    for g in sorted(groups, key=lambda g: g.group_id):
        buckets = "; ".join(
            ",".join(f"output:{a.port}" for a in b.actions if isinstance(a, ofp.Output))
            + (f" (watch port {b.watch_port})" if b.watch_port != ofp.OFPP.ANY else "") for b in g.buckets)
        table.add_row(f"{g.group_id:#x}", kinds.get(g.type, str(g.type)), escape(buckets) or "(none: drop)")
    return table


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
