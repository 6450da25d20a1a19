#!/usr/bin/env python3
"""A kumoflow switch whose ports are in memory (no root, no interfaces), for
benchmarks/api/ports.py: the real switch runtime (kumoflow.switch.runtime)
with its OpenFlow channel to a controller over TCP, and N ports that are up;
optionally tunnel ports in memory too (named as kumoflow.tunnels.port_name
makes them, so a controller's overlay model sees them; they carry nothing)
and a passive listener for ovs-ofctl.

    _api_switch.py --controller tcp:127.0.0.1:6653 --dpid 1 --ports 64
    _api_switch.py ... --tunnel 60001=vxlan:127.0.0.2 --listen ptcp:0:127.0.0.1 --status-file S.json
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

from kumoflow.switch.port import PS_LINK_DOWN, MemoryPort  # noqa: E402
from kumoflow.switch.runtime import Switch  # noqa: E402
from kumoflow.tunnels import port_name  # noqa: E402


async def main(args: argparse.Namespace) -> None:
    ports = {n: MemoryPort(n, f"m{n}", f"02:00:00:00:{n >> 8 & 0xff:02x}:{n & 0xff:02x}")
             for n in range(1, args.ports + 1)}
    for port in ports.values() if args.down else ():
        port.state |= PS_LINK_DOWN
    for spec in args.tunnel:
        number, _, rest = spec.partition("=")
        kind, _, remote = rest.partition(":")
        ports[int(number)] = MemoryPort(int(number), port_name(kind, remote))
    switch = Switch(args.dpid, ports, controllers=[args.controller], max_backoff=1.0, listen=args.listen,
                    status_file=args.status_file, echo_interval=args.echo_interval)
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
    ap.add_argument("--tunnel", action="append", default=[], metavar="N=KIND:REMOTE_IP",
                    help="port N a tunnel port (in memory) named KIND-<remote hex> (repeatable)")
    ap.add_argument("--listen", action="append", default=[], metavar="ptcp:PORT[:HOST]")
    ap.add_argument("--echo-interval", type=float, default=5.0,
                    help="echo an idle controller after this long; give up after 3 times it (default 5)")
    ap.add_argument("--down", action="store_true", help="the N ports' links down (the tunnel ports' up)")
    ap.add_argument("--status-file", help="the switch's JSON status (listen addresses with their ports)")
    asyncio.run(main(ap.parse_args()))
