#!/usr/bin/env python3
"""Flow installation through kumoflow's controller, for bench_switch.py.

    python benchmarks/switch/_bench_switch_ctl.py --port 6699 --rules 100000 [--seed 1]

Runs kumoflow's controller (kumoflow.controller.Controller) on
tcp:127.0.0.1:PORT with one app, ``FlowInstall``. When a switch is up
(handshake done, the controller's table reset acknowledged), the app builds
the --rules flow-mods of _bench_switch_rules.py (the same flows ``ovs-ofctl
add-flows`` installs from the generated file, here in the pipeline's forward
table, behind the miss entries the controller puts in every table of its
pipeline: ``pipeline_flows`` in the result), then starts the clock, sends
them all (``App.add_flow``: the controller encodes each one), sends a
barrier, and stops the clock when the barrier reply arrives: by then the
switch has processed every flow-mod (OpenFlow 1.3, section 6.2). Any
ERROR the switch sends back is counted. Prints one JSON line per switch and
exits after the first (or after --timeout seconds); with --hold it stays
connected after printing it, until stdin closes or it is killed, so that the
flows can be counted while the controller still holds the switch (a
restarted switch has none).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "src"))

import _bench_switch_rules as bench_switch_rules  # noqa: E402
from kumoflow import ofp  # noqa: E402
from kumoflow.controller import App, Controller  # noqa: E402
from kumoflow.controller.pipeline import TABLES  # noqa: E402


class FlowInstall(App):
    name = "flow-install"
    tables = ("forward",)
    reactive = True   # installs its own flows; the reconciler leaves them alone

    def __init__(self, n: int, seed: int, done: asyncio.Future) -> None:
        super().__init__()
        self.n, self.seed, self.done = n, seed, done
        self.errors = 0

    async def switch_up(self, dp) -> None:
        rules = bench_switch_rules.rules(self.n, self.seed)
        mods = []
        for priority, match, port in rules:
            instructions = [] if port is None else [ofp.ApplyActions([ofp.Output(port)])]
            mods.append(ofp.FlowMod(cookie=self.cookie(), table_id=self.table("forward"), priority=priority,
                                    match=ofp.Match(match), instructions=instructions))
        start = time.perf_counter()
        dp.send_many(mods, origin=self)
        sent = time.perf_counter()
        await dp.barrier()
        end = time.perf_counter()
        if not self.done.done():
            self.done.set_result({"dpid": dp.id, "flows": self.n, "seconds": round(end - start, 3),
                                  "flows_per_s": round(self.n / (end - start)),
                                  "encode_and_queue_s": round(sent - start, 3), "errors": self.errors,
                                  "pipeline_flows": len(TABLES)})     # the miss entry of every table

    def error(self, dp, msg, request) -> None:
        self.errors += 1


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rules", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--hold", action="store_true", help="stay connected after the result, until stdin closes")
    args = ap.parse_args()
    done = asyncio.get_running_loop().create_future()
    app = FlowInstall(args.rules, args.seed, done)
    ctl = Controller([app], echo_interval=60, echo_timeout=600, request_timeout=args.timeout,
                     audit_interval=0)
    await ctl.start([f"tcp:127.0.0.1:{args.port}"])
    print(json.dumps({"listening": args.port}), flush=True)
    try:
        result = await asyncio.wait_for(done, args.timeout)
    except asyncio.TimeoutError:
        result = {"error": "timeout"}
    print(json.dumps(result), flush=True)
    if args.hold:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await ctl.stop()
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    try:
        import uvloop
        sys.exit(uvloop.run(main()))
    except ImportError:
        sys.exit(asyncio.run(main()))
