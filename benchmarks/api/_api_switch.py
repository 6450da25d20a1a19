#!/usr/bin/env python3
"""A kumoflow switch whose ports are in memory (no root, no interfaces), for
benchmarks/api/ports.py: the real switch runtime (kumoflow.switch.runtime)
with its OpenFlow channel to a controller over TCP, and N ports that are up.

    _api_switch.py --controller tcp:127.0.0.1:6653 --dpid 1 --ports 64
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # benchmarks/: benchlib
import benchlib  # noqa: E402

benchlib.use_src()

from kumoflow.switch.port import MemoryPort  # noqa: E402
from kumoflow.switch.runtime import Switch  # noqa: E402


async def main(args: argparse.Namespace) -> None:
    ports = {n: MemoryPort(n, f"m{n}", f"02:00:00:00:{n >> 8 & 0xff:02x}:{n & 0xff:02x}")
             for n in range(1, args.ports + 1)}
    switch = Switch(args.dpid, ports, controllers=[args.controller], max_backoff=1.0)
    await switch.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await switch.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--controller", required=True)
    ap.add_argument("--dpid", type=int, default=1)
    ap.add_argument("--ports", type=int, default=64)
    asyncio.run(main(ap.parse_args()))
