#!/usr/bin/env python3
"""How long the controller's event loop stalls while the periodic audit reads a switch holding
many flows (the longest time nothing else, a packet-in, an echo, an API call, could run).

    .venv/bin/python benchmarks/controller/audit_stall.py                  # 10,000 and 100,000 routes, 5 audits each
    .venv/bin/python benchmarks/controller/audit_stall.py --quick          # 2,000 routes, 2 audits: a smoke test
    .venv/bin/python benchmarks/controller/audit_stall.py --routes 10000 --audits 9

The real controller runtime (`kumoflow.controller.Controller`, asyncio, uvloop when installed)
in this process with the router app and N learned routes (the cloud of
benchmarks/bgp/_controller_cost.py: one flow per route in table `route`), and a real kumoflow
switch in a process of its own (`kumoflow switch`, no ports) connected to it over TCP. Once every
flow is in the switch (a barrier answered), the audit (`Core.audit`: flow, group and meter stats
read back, compared with the desired state, nothing to repair) runs --audits times. A task in the
controller's loop sleeps 1 ms at a time and notes how late it wakes: the longest lateness during
an audit is its stall. The process runs with the controller's collector policy
(`eventloop.quiet_gc`, as `kumoflow controller` does). Reported per N: the idle loop's longest lateness (the same task, no audit),
the audit's longest stall and its time from request to compared (medians, and the worst).
No peer: the figure to compare is the same command before and after a change (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))                    # benchmarks/: benchlib
import benchlib  # noqa: E402

benchlib.use_src()
sys.path.insert(0, str(HERE.parent / "bgp"))
from _controller_cost import NEXTHOP, records  # noqa: E402

from kumoflow.apps.bgp import BgpApp  # noqa: E402
from kumoflow.controller import Controller  # noqa: E402
from kumoflow.eventloop import quiet_gc, run as run_loop  # noqa: E402
from kumoflow.store import Snapshot  # noqa: E402

REQUIRES = ()


class Lateness:
    """A task that sleeps `tick` at a time and keeps the longest lateness since `reset`."""

    def __init__(self, tick: float = 0.001) -> None:
        self.tick, self.worst = tick, 0.0
        self.task = asyncio.get_running_loop().create_task(self._run())

    def reset(self) -> None:
        self.worst = 0.0

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(self.tick)
            self.worst = max(self.worst, loop.time() - t - self.tick)


async def measure(routes: int, audits: int) -> dict:
    ctl = Controller([BgpApp()], settle=0, audit_interval=0)
    core = ctl.core
    core.state.load(Snapshot(8, records()))
    bgp = core.app("bgp")
    bgp.applied = {}                                   # as if its speaker were configured: no FRR here
    core.spawn = lambda coro: coro.close()
    [address] = await ctl.start(["tcp:127.0.0.1:0"])
    switch = subprocess.Popen([sys.executable, "-m", "kumoflow.cli", "switch", "--dpid", "1", "--tables", "64",
                               "--controller", f"tcp:127.0.0.1:{address.port}", "--log-level", "warning"],
                              env={**os.environ, "PYTHONPATH": str(benchlib.SRC)})
    try:
        while 1 not in core.datapaths or not core.datapaths[1].is_up:
            await asyncio.sleep(0.05)
            if switch.poll() is not None:
                raise RuntimeError(f"the switch exited ({switch.returncode})")
        dp = core.datapaths[1]
        router = next(iter(core.app("router").routers))
        hop = ipaddress.IPv4Address(NEXTHOP)
        with core.batch():
            core.app("router").learn(router, {ipaddress.IPv4Network((0x14000000 + (i << 8), 24)): hop
                                              for i in range(routes)})
        await dp.barrier()
        reconciler = core.reconcilers[1]
        late = Lateness()
        await asyncio.sleep(1.0)                            # the idle loop, for reference
        idle = late.worst
        stalls, times = [], []
        for _ in range(audits):
            runs = reconciler.runs
            late.reset()
            t = time.perf_counter()
            core.audit()
            while reconciler.runs == runs:                   # read back and compared (then synced: nothing)
                await asyncio.sleep(0.001)
            times.append(time.perf_counter() - t)
            await asyncio.sleep(0.05)
            stalls.append(late.worst)
            assert reconciler.last == (0, 0, 0), f"the audit found differences: {reconciler.last}"
        held = len(reconciler.installed or {})
        assert held >= routes, f"the switch reports {held} entries, fewer than the {routes} routes"
        late.task.cancel()
        return {"routes": routes, "entries": held, "idle_ms": idle * 1e3, "stall_ms": [s * 1e3 for s in stalls],
                "audit_s": times}
    finally:
        switch.terminate()
        try:
            switch.wait(10)
        except subprocess.TimeoutExpired:
            switch.kill()
        await ctl.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--routes", default="10000,100000", help="comma-separated route counts")
    ap.add_argument("--audits", type=int, default=5)
    benchlib.add_output_args(ap, "2,000 routes, 2 audits")
    args = ap.parse_args()
    machine = benchlib.machine(packages=("uvloop",))
    counts = [2000] if args.quick else [int(n) for n in args.routes.split(",")]
    audits = 2 if args.quick else args.audits
    quiet_gc()                         # the collector policy of `kumoflow controller`
    results = [run_loop(measure(n, audits)) for n in counts]
    print("## The audit's longest event-loop stall\n")
    print("\n".join(["```sh", benchlib.command_line(), "```", "", *benchlib.machine_lines(machine), ""]))
    print("| routes | entries read | idle loop: longest lateness | audit: longest stall, median (max) "
          "| audit: request to compared, median (max) |")
    print("|--:|--:|--:|--:|--:|")
    for r in results:
        print(f"| {r['routes']:,} | {r['entries']:,} | {r['idle_ms']:.1f} ms | "
              f"{statistics.median(r['stall_ms']):.0f} ms ({max(r['stall_ms']):.0f}) | "
              f"{statistics.median(r['audit_s']):.2f} s ({max(r['audit_s']):.2f}) |")
    if args.json:
        benchlib.write_json(args.json, {"command": benchlib.command_line(), "machine": machine, "results": results})


if __name__ == "__main__":
    main()
