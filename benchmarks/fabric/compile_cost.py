#!/usr/bin/env python3
"""Compile and reconcile cost of the `fabric` app as the network grows, in memory.

    .venv/bin/python benchmarks/fabric/compile_cost.py            # k=4, 8, 12; 1 and 2 hosts per edge switch
    .venv/bin/python benchmarks/fabric/compile_cost.py --quick    # k=4 only, a few seconds: a smoke test
    .venv/bin/python benchmarks/fabric/compile_cost.py --k 4,8 --hosts 2 --cold 4

No root, no sockets: the controller core (kumoflow.controller.Core with the
fabric) joined to real kumoflow switch datapaths through bytes, on a fake
clock (tests/unit/memnet.py, loaded by path). The network is a k-ary
fat-tree (k=4: 20 switches; 8: 80; 12: 180) with 1 or 2 hosts on every edge
switch. For each size:

(a) initial: what the whole network costs to compile and install once, with
    the topology and the hosts known: every object of the fabric compiled
    for every switch (`Fabric.compile`), then each switch's entries
    reconciled against an empty switch (`Reconciler.sync`, the messages
    encoded) -- the floor a controller that coalesced discovery would pay;
    and a recompile of everything through the core in one batch when
    nothing changed (it must send nothing).
    Separately, `--cold`: the start as the core does it today (switches
    connect one after another, LLDP finds the links one by one, then every
    host announces itself), from the first connection to every host known.
(b) one host moving to another switch (another pod) and sending a frame
    there: the compile calls by object kind, the entries sent (FLOW_MOD,
    GROUP_MOD), the reads of a switch (must be 0), the time of the whole
    event (wall: controller and the in-memory switches), and of the core's
    compile and reconcile parts alone. Must stay O(switches), not O(network).
(c) one link failing (both ends lose carrier: PORT_STATUS from both
    switches): the same figures; and the link coming back (LLDP finds it).

Medians over --moves and --cuts events (different hosts, different links).
Times are CPU time of the process (time.process_time: a shared machine
moves it less than wall time; wall times are in the JSON). "all"
includes the in-memory switches' work; "core" is the time spent in
Core._compile and Core._sync (compile; diff, messages built and encoded),
counted by wrapping them (about 1 µs per call of overhead).

To reach a converged network quickly for the sizes not in --cold, the
benchmark defers the fabric's recompile-on-topology-change while the
switches connect and LLDP runs, then calls it once (the converged state is
the same; checked: a full recompile sends nothing and unicast reaches the
right host).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # benchmarks/: benchlib
import benchlib  # noqa: E402

benchlib.use_src()
sys.path.insert(0, str(benchlib.REPO / "tests" / "unit"))       # memnet.py
from memnet import MemNet  # noqa: E402

from kumoflow import ofp  # noqa: E402
from kumoflow.apps.fabric import Fabric  # noqa: E402
from kumoflow.controller.core import PIPELINE, Core  # noqa: E402
from kumoflow.controller.reconcile import Reconciler  # noqa: E402
from kumoflow.packet import ARP, ICMP, Ethernet, IPv4  # noqa: E402
from kumoflow.packet.consts import ARP_REQUEST, ICMP_ECHO_REQUEST  # noqa: E402

MODS = (ofp.FlowMod, ofp.GroupMod, ofp.MeterMod)
READS = (ofp.FlowStatsRequest, ofp.GroupDescRequest, ofp.MeterConfigRequest)
#: datapath ids: core 0x01.., aggregation 0x40.., edge 0xa0.. (memnet's port MACs take one byte of dpid)
CORE, AGG, EDGE = 0x01, 0x40, 0xA0


# --- instrumentation -----------------------------------------------------------------------------

class Probe:
    """Counts and times (CPU time of this process) Core._compile (by object kind) and Core._sync."""

    def __init__(self) -> None:
        self.compiles: Counter = Counter()
        self.compile_s = 0.0
        self.syncs = 0
        self.sync_s = 0.0
        self._orig = (Core._compile, Core._sync)
        probe = self
        compile_, sync = self._orig

        def _compile(core, owner, dpid):
            source, key = owner
            probe.compiles["pipeline" if source is core else key[0] if isinstance(key, tuple) else str(key)] += 1
            t = time.process_time()
            try:
                return compile_(core, owner, dpid)
            finally:
                probe.compile_s += time.process_time() - t

        def _sync(core, dpid, keys):
            probe.syncs += 1
            t = time.process_time()
            try:
                return sync(core, dpid, keys)
            finally:
                probe.sync_s += time.process_time() - t

        Core._compile, Core._sync = _compile, _sync

    def reset(self) -> None:
        self.compiles.clear()
        self.compile_s = self.sync_s = 0.0
        self.syncs = 0

    def close(self) -> None:
        Core._compile, Core._sync = self._orig


# --- the network ----------------------------------------------------------------------------------

class FatTree:
    """A k-ary fat-tree in memory with `per_edge` hosts on every edge switch.

    Pod p: aggregation AGG + p*k/2 + i, edge EDGE + p*k/2 + j. Edge: ports
    1..k/2 up (to the pod's aggregation switches), k/2+1..k for hosts, k+1
    spare (somewhere to move a host to).
    Aggregation i: ports 1..k/2 down, k/2+1..k up to core i*k/2 + m (whose
    port p+1 is pod p's)."""

    def __init__(self, k: int, per_edge: int, probe: Probe) -> None:
        assert k % 2 == 0 and 1 <= per_edge <= k // 2
        self.k, self.half, self.per_edge, self.probe = k, k // 2, per_edge, probe
        self.fabric = Fabric()
        self.net = MemNet([self.fabric])
        half = self.half
        self.sw: dict[int, Any] = {}
        for c in range(half * half):
            self.sw[CORE + c] = self.net.switch(CORE + c, k)
        self.edges: list[int] = []
        for p in range(k):
            for i in range(half):
                self.sw[AGG + p * half + i] = self.net.switch(AGG + p * half + i, k)
                self.sw[EDGE + p * half + i] = self.net.switch(EDGE + p * half + i, k + 1)   # + a spare port
                self.edges.append(EDGE + p * half + i)
        self.links: list[tuple[int, int, int, int]] = []
        for p in range(k):
            for i in range(half):
                agg = AGG + p * half + i
                for j in range(half):
                    self.links.append((EDGE + p * half + j, i + 1, agg, j + 1))
                for m in range(half):
                    self.links.append((agg, half + m + 1, CORE + i * half + m, p + 1))
        for a, ap, b, bp in self.links:
            self.net.link(self.sw[a], ap, self.sw[b], bp)
        self.hosts = []
        for e in self.edges:
            for n in range(per_edge):
                h = self.net.host(f"h{len(self.hosts) + 1}", self.sw[e], half + 1 + n)
                h.ip = f"10.0.{len(self.hosts) >> 8}.{len(self.hosts) & 255}"
                self.hosts.append(h)

    @property
    def core(self) -> Core:
        return self.net.core

    def pod_of(self, dpid: int) -> int:
        return (dpid - EDGE) // self.half

    # --- traffic ---

    def announce(self, h) -> None:
        h.send(bytes(Ethernet(src=h.mac, dst="ff:ff:ff:ff:ff:ff")
                     / ARP(ARP_REQUEST, h.mac, h.ip, "00:00:00:00:00:00", "10.255.255.254")))

    def echo(self, a, b) -> bytes:
        return bytes(Ethernet(src=a.mac, dst=b.mac) / IPv4(src=a.ip, dst=b.ip, ttl=64)
                     / ICMP(type=ICMP_ECHO_REQUEST, id=1, seq=1) / b"compile_cost")

    def clear(self) -> None:
        """Drop what ports and hosts kept (memory) ."""
        for s in self.sw.values():
            s.received.clear()
            for port in s.ports.values():
                port.sent.clear()
        for h in self.hosts:
            h.received.clear()

    def delivered(self, a, b) -> bool:
        """a's echo to b reaches b, once."""
        for h in self.hosts:
            h.received.clear()
        frame = self.echo(a, b)
        a.send(frame)
        self.net.run()
        return b.received.count(frame) == 1 and all(frame not in h.received for h in self.hosts if h is not b)

    # --- counters ---

    def sent_total(self) -> int:
        return sum(r.sent for r in self.core.reconcilers.values())

    def received(self) -> tuple[int, int]:
        """(FLOW_MOD/GROUP_MOD/METER_MOD, flow/group/meter reads) the switches have received."""
        mods = reads = 0
        for s in self.sw.values():
            for m in s.received:
                if isinstance(m, MODS):
                    mods += 1
                elif isinstance(m, READS):
                    reads += 1
        return mods, reads

    def desired_entries(self) -> tuple[int, int]:
        """(all entries the core wants, most on one switch)."""
        sizes = [len(d) for d in self.core.desired.values()]
        return sum(sizes), max(sizes)

    # --- start ---

    def start(self, cold: bool) -> dict | None:
        """Bring the network to a converged state; `cold`: as the core does it
        (and measure it), else with the fabric's recompile deferred until
        discovery is done."""
        net, probe, fabric = self.net, self.probe, self.fabric
        probe.reset()
        t0, c0 = time.perf_counter(), time.process_time()
        if not cold:
            fabric._topology_changed = lambda: None        # deferred, then called once below
        net.start()
        net.advance(self.core.settle + 1.5)
        if not cold:
            del fabric._topology_changed
            with self.core.batch():
                fabric._topology_changed()
            net.run()
        for h in self.hosts:
            self.announce(h)
            net.run()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        links = len(self.core.topology.graph.links)
        assert links == len(self.links), f"{links} links discovered of {len(self.links)}"
        assert len(self.core.hosts) == len(self.hosts), f"{len(self.core.hosts)} hosts known of {len(self.hosts)}"
        mods, reads = self.received()
        out = {"wall_s": wall, "cpu_s": cpu, "compiles": sum(probe.compiles.values()),
               "compiles_by_kind": dict(probe.compiles), "compile_s": probe.compile_s, "sync_s": probe.sync_s,
               "entries_sent": self.sent_total(), "mods_received": mods}
        self.clear()
        return out if cold else None


# --- measurements ---------------------------------------------------------------------------------

def cpu_time(fn, repeat: int) -> benchlib.Timing:
    """CPU seconds of fn(), `repeat` times (garbage collected before each, collector off during it):
    on a shared machine, CPU time moves less than wall time."""
    out = benchlib.Timing()
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            t = time.process_time()
            fn()
            out.runs.append(time.process_time() - t)
        finally:
            gc.enable()
    return out


def measure_initial(ft: FatTree, repeat: int) -> dict:
    """(a): compile every object for every switch; reconcile each switch from empty; recompile all in one batch."""
    core, fabric = ft.core, ft.fabric
    dps = list(core.datapaths.values())
    owners = list(fabric.owners())
    per_switch: dict[int, dict] = {}

    def compile_all() -> None:
        per_switch.clear()
        for dp in dps:
            desired = {e.key: e for e in core._pipeline_entries(dp)}
            for key in owners:
                for e in fabric.compile(key, dp):
                    desired[e.key] = e
            per_switch[dp.id] = desired

    msgs_total = [0]

    def reconcile_all() -> None:
        n = 0
        for dp in dps:
            r = Reconciler(per_switch[dp.id], core._owns)
            r.installed = {}
            for msg, _ in r.sync():
                msg.pack()
                n += 1
        msgs_total[0] = n

    t_compile = cpu_time(compile_all, repeat)
    t_reconcile = cpu_time(reconcile_all, repeat)
    entries = sum(len(d) for d in per_switch.values())
    flows = sum(1 for d in per_switch.values() for k in d if k[0] == "flow")
    # the same through the core, in one batch, when nothing changed: it must send nothing
    ft.probe.reset()
    before_sent, (before_mods, _) = ft.sent_total(), ft.received()
    t0 = time.process_time()
    with core.batch():
        for dpid in list(core.datapaths):
            core._compile_switch(dpid)
    ft.net.run()
    recompile_cpu = time.process_time() - t0
    resent = ft.sent_total() - before_sent
    mods = ft.received()[0] - before_mods
    assert resent == 0 and mods == 0, f"a recompile with nothing changed sent {resent} entries ({mods} mods)"
    core_total, core_max = ft.desired_entries()
    assert core_total == entries, (core_total, entries)
    return {"owners": len(owners) * len(dps) + len(dps), "entries": entries, "flows": flows,
            "groups": entries - flows, "entries_max_switch": core_max, "messages": msgs_total[0],
            "compile_s": t_compile.median, "reconcile_s": t_reconcile.median,
            "recompile_batch_s": recompile_cpu, "recompile_compiles": sum(ft.probe.compiles.values()),
            "recompile_sent": resent}


def _event(ft: FatTree, action) -> dict:
    probe = ft.probe
    probe.reset()
    sent0, (mods0, reads0) = ft.sent_total(), ft.received()
    t0, c0 = time.perf_counter(), time.process_time()
    action()
    ft.net.run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    mods, reads = ft.received()
    return {"wall_s": wall, "cpu_s": cpu, "core_s": probe.compile_s + probe.sync_s, "compile_s": probe.compile_s,
            "sync_s": probe.sync_s, "compiles": sum(probe.compiles.values()),
            "compiles_by_kind": dict(probe.compiles), "entries_sent": ft.sent_total() - sent0,
            "mods_received": mods - mods0, "reads": reads - reads0}


def measure_moves(ft: FatTree, n: int) -> list[dict]:
    """(b): n hosts, each moved to a free host port of an edge switch in the next pod."""
    out = []
    half, net = ft.half, ft.net
    taken = {(h.switch.dpid, h.port_no) for h in ft.hosts}
    for i in range(n):
        host = ft.hosts[(i * 7) % len(ft.hosts)]
        pod = (ft.pod_of(host.switch.dpid) + 1) % ft.k
        target = next((e, p) for e in ft.edges if ft.pod_of(e) == pod
                      for p in range(half + 1, ft.k + 2) if (e, p) not in taken)
        taken.discard((host.switch.dpid, host.port_no))
        taken.add(target)
        old = host.switch.dpid
        net.attach(host, ft.sw[target[0]], target[1])
        peer = next(h for h in ft.hosts if h is not host and h.switch.dpid not in (old, target[0]))
        r = _event(ft, lambda: host.send(ft.echo(host, peer)))
        moved = ft.core.hosts.get(host.mac)
        assert (moved.dpid, moved.port) == target, "the move was not seen"
        assert ft.delivered(peer, host) and ft.delivered(host, peer), "unicast does not reach the moved host"
        out.append(r)
        ft.clear()
    return out


def measure_cuts(ft: FatTree, n: int) -> tuple[list[dict], list[dict]]:
    """(c): n links (alternately aggregation-core and edge-aggregation) lose carrier at both ends;
    then come back (LLDP finds them again)."""
    downs, ups = [], []
    net = ft.net
    agg_core = [link for link in ft.links if link[2] < AGG]
    edge_agg = [link for link in ft.links if link[2] >= AGG]
    a_host, b_host = ft.hosts[0], ft.hosts[-1]
    for i in range(n):
        pool = agg_core if i % 2 == 0 else edge_agg
        a, ap, b, bp = pool[(i * 5) % len(pool)]
        pa, pb = ft.sw[a].ports[ap], ft.sw[b].ports[bp]

        def cut(up: bool) -> None:
            pa.set_link(up)
            pb.set_link(up)

        graph = ft.core.topology.graph
        before = len(graph.links)
        downs.append(_event(ft, lambda: cut(False)))
        assert len(graph.links) == before - 1, "the link was not lost"
        assert ft.delivered(a_host, b_host), "unicast does not reach across after the cut"
        r = _event(ft, lambda: (cut(True), net.advance(ft.fabric.lldp_interval + 0.2)))
        assert len(graph.links) == before, "the link did not come back"
        ups.append(r)
        ft.clear()
    return downs, ups


def med(runs: list[dict], key: str) -> Any:
    return statistics.median(r[key] for r in runs) if runs else None


def run_size(k: int, per_edge: int, args, cold: bool) -> dict:
    probe = Probe()
    try:
        ft = FatTree(k, per_edge, probe)
        cold = ft.start(cold=cold)
        initial = measure_initial(ft, args.repeat)
        moves = measure_moves(ft, args.moves)
        downs, ups = measure_cuts(ft, args.cuts)
    finally:
        probe.close()
    n_sw = len(ft.sw)
    result = {"k": k, "per_edge": per_edge, "switches": n_sw, "hosts": len(ft.hosts), "links": len(ft.links),
              "initial": initial, "cold": cold, "moves": moves, "cuts": downs, "restores": ups}
    print(f"  k={k}, {per_edge} per edge: {n_sw} switches, {len(ft.hosts)} hosts: {initial['entries']:,} entries; "
          f"move {med(moves, 'compiles')} compiles, {med(moves, 'entries_sent')} sent; "
          f"cut {med(downs, 'compiles')} compiles, {med(downs, 'entries_sent')} sent", file=sys.stderr)
    return result


# --- output ---------------------------------------------------------------------------------------

def num(v: Any) -> str:
    """A count (a median of an even number of runs may end in .5)."""
    if v is None:
        return "-"
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"


def ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:,.1f}" if s < 10 else f"{s * 1e3:,.0f}"


def report(results: list[dict], m: dict, args) -> str:
    lines = ["# Fabric: compile and reconcile cost as the network grows (in memory)", ""]
    lines += benchlib.machine_lines(m)
    lines += [f"- command: `{benchlib.command_line()}`", ""]
    lines += ["## (a) The whole network, compiled and installed once", ""]
    rows = []
    for r in results:
        i = r["initial"]
        rows.append([f"k={r['k']}", r["switches"], r["hosts"], f"{i['entries']:,}", f"{i['flows']:,}",
                     f"{i['groups']:,}", f"{i['entries_max_switch']:,}", ms(i["compile_s"]), ms(i["reconcile_s"]),
                     ms(i["recompile_batch_s"]), i["recompile_sent"]])
    lines.append(benchlib.md_table(
        ["fat-tree", "switches", "hosts", "entries", "flows", "groups", "most on a switch", "compile all ms",
         "reconcile from empty ms", "recompile in core, unchanged ms", "sent"], rows))
    lines += ["", "compile all: `Fabric.compile` of every object for every switch; reconcile from empty: "
              "`Reconciler.sync` of each switch against nothing installed, messages encoded (CPU time, median of "
              f"{args.repeat}). recompile: `_compile_switch` of every switch in one core batch (must send 0).", ""]
    colds = [r for r in results if r["cold"]]
    if colds:
        lines += ["## (a') Cold start as the core does it (switches connect one by one, LLDP finds links one by one)",
                  ""]
        rows = []
        for r in colds:
            c = r["cold"]
            byk = c["compiles_by_kind"]
            rows.append([f"k={r['k']}", r["switches"], r["hosts"], f"{c['compiles']:,}", f"{byk.get('dest', 0):,}",
                         f"{c['entries_sent']:,}", f"{c['compile_s'] + c['sync_s']:.1f}", f"{c['cpu_s']:.1f}",
                         f"{r['initial']['owners']:,}"])
        lines.append(benchlib.md_table(["fat-tree", "switches", "hosts", "compile calls", "of them dest groups",
                                        "entries sent", "core s", "all s", "compile calls needed once"], rows))
        lines.append("")
    lines += [f"## (b) One host moves (median of {args.moves}), (c) one link fails and comes back "
              f"(median of {args.cuts})", ""]
    rows = []
    for r in results:
        mv, dn, up = r["moves"], r["cuts"], r["restores"]
        rows.append([f"k={r['k']}", r["switches"], r["hosts"],
                     num(med(mv, "compiles")), num(med(mv, "entries_sent")),
                     max((x["reads"] for x in mv), default="-"), ms(med(mv, "core_s")), ms(med(mv, "cpu_s")),
                     num(med(dn, "compiles")), num(med(dn, "entries_sent")), ms(med(dn, "core_s")),
                     ms(med(dn, "cpu_s")), num(med(up, "compiles")), num(med(up, "entries_sent")),
                     ms(med(up, "core_s"))])
    lines.append(benchlib.md_table(
        ["fat-tree", "switches", "hosts", "move: compiles", "sent", "reads", "core ms", "all ms",
         "link down: compiles", "sent", "core ms", "all ms", "link up: compiles", "sent", "core ms"], rows))
    lines += ["", "compiles: Core._compile calls (one object on one switch); sent: entries the reconcilers "
              "sent (FLOW_MOD + GROUP_MOD); reads: flow/group/meter reads of a switch caused by the event; "
              "core: CPU time in compile + reconcile; all: CPU time of the whole event, in-memory switches "
              "included (wall times in the JSON).", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--k", default="4,8,12", help="fat-tree sizes (even k), comma-separated (default 4,8,12)")
    ap.add_argument("--hosts", default="1,2", help="hosts per edge switch, comma-separated (default 1,2)")
    ap.add_argument("--cold", default="4,8", help="sizes whose cold start is measured as the core does it "
                                                  "(default 4,8; k=8 takes a minute or two, k=12 far longer)")
    ap.add_argument("--moves", type=int, default=9, help="host moves per size (default 9)")
    ap.add_argument("--cuts", type=int, default=6, help="link failures per size (default 6)")
    ap.add_argument("--repeat", type=int, default=3, help="repeats of the whole-network compile (default 3)")
    benchlib.add_output_args(ap, quick="k=4, 1 host per edge switch, 3 moves, 2 cuts: a smoke test")
    args = ap.parse_args()
    if args.quick:
        args.k, args.hosts, args.cold, args.moves, args.cuts, args.repeat = "4", "1", "4", 3, 2, 1
    args.cold = {int(x) for x in args.cold.split(",") if x}
    sizes = [int(x) for x in args.k.split(",") if x]
    per_edge = [int(x) for x in args.hosts.split(",") if x]
    m = benchlib.machine(code=("src/kumoflow/controller", "src/kumoflow/apps"))
    logging.getLogger("kumoflow").setLevel(logging.WARNING)
    results = []
    for k in sizes:
        for h in per_edge:   # the cold start once per size (hosts change little of it)
            results.append(run_size(k, h, args, cold=k in args.cold and h == per_edge[0]))
    m["load average at the end"] = round(os.getloadavg()[0], 2)
    print(report(results, m, args))
    if args.json:
        benchlib.write_json(args.json, {"machine": m, "args": {k: (sorted(v) if isinstance(v, set) else v)
                                                               for k, v in vars(args).items()},
                                        "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
