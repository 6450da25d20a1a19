#!/usr/bin/env python3
"""The real controller with the router app (and the fabric it requires), one
router with N routes, for forwarding.py.

    python benchmarks/router/_router_ctl.py --port 6699 --routes 100000 --mac-a .. --mac-b ..

Runs ``kumoflow.controller.Controller([RouterApp()])`` on tcp:127.0.0.1:PORT
(the fabric app is loaded as the router requires it; audits off, so that no
read of 100,000 flows lands in a measurement). Its desired state is given as
records, as the store would give them (no store, no API): two networks with
a subnet each, A (:data:`SUBNET_A`) and B (:data:`SUBNET_B`); a router with an
interface on each (:data:`ROUTER_MAC_A`, :data:`ROUTER_MAC_B`); and the API
ports of the two hosts (--mac-a at :data:`HOST_A`, --mac-b at :data:`HOST_B`),
from which the router knows its neighbours' MACs. Then the router is given
--routes prefixes learned as BGP would give them
(``RouterApp.learn``: one compiled object per prefix), every one via host b (:data:`HOST_B`, a
neighbour in subnet B): :func:`prefixes` says which.

forward.py runs one of these per switch, with the same arguments, so both
switches are compiled the same flows, byte for byte (the router's VRF number
and the next hop's id are hashes of the router id and the next hop's
address, both fixed here).

Prints one JSON line once listening ({"listening": PORT, "compile_s": ...,
"route_flows": ...}) and runs until stdin closes or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import signal
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "src"))

from kumoflow.apps.router import RouterApp  # noqa: E402
from kumoflow.controller import Controller  # noqa: E402
from kumoflow.store import Record, Snapshot  # noqa: E402

SUBNET_A, SUBNET_B = "10.1.1.0/24", "10.1.2.0/24"
GATEWAY_A, GATEWAY_B = "10.1.1.1", "10.1.2.1"
HOST_A, HOST_B = "10.1.1.10", "10.1.2.10"
ROUTER_MAC_A, ROUTER_MAC_B = "fa:16:3e:00:00:01", "fa:16:3e:00:00:02"
ROUTER_ID = "4f1c0b6e-0000-4000-8000-00000000beef"
PROJECT = "bench"
#: prefix lengths of the learned routes, in turn (most of an Internet table is /24)
LENGTHS = (24, 24, 24, 24, 24, 24, 23, 22, 21, 20)
#: where the learned prefixes start; with LENGTHS, 100,000 of them end at 25.126.x.x
BASE = int(ipaddress.IPv4Address("20.0.0.0"))
#: the 10-route table: ten /8s covering every prefix of the 100,000-route table
WIDE = [ipaddress.IPv4Network(f"{20 + i}.0.0.0/8") for i in range(10)]


def prefixes(n: int) -> list[ipaddress.IPv4Network]:
    """The learned prefixes of an n-route table. Up to 10: the /8s of WIDE (so the
    same destinations are routed by 10 prefixes as by 100,000). Above: n disjoint
    prefixes from 20.0.0.0 on, their lengths in turn from LENGTHS."""
    if n <= len(WIDE):
        return WIDE[:n]
    out, cursor = [], BASE
    for i in range(n):
        length = LENGTHS[i % len(LENGTHS)]
        size = 1 << (32 - length)
        cursor = (cursor + size - 1) // size * size          # aligned
        out.append(ipaddress.IPv4Network((cursor, length)))
        cursor += size
    return out


def destinations(count: int, table: int = 100_000) -> list[str]:
    """`count` destination addresses, the first host of every (table/count)-th
    prefix of the 100,000-route table: each in a prefix of its own there, and
    all inside WIDE."""
    nets = prefixes(table)
    step = max(1, len(nets) // count)
    return [str(nets[i * step].network_address + 1) for i in range(count)]


def records(mac_a: str, mac_b: str) -> list[Record]:
    out: list[Record] = []

    def add(kind: str, id: str, **body) -> Record:
        n = len(out) + 1
        rec = Record(kind, id, PROJECT, n, f"2026-12-07T00:00:{n:02d}Z", "2026-12-07T00:00:00Z", body)
        out.append(rec)
        return rec

    add("router", ROUTER_ID, name="r", admin_state_up=True, routes=[])
    for tag, cidr, gw, rmac, host, hmac in (("a", SUBNET_A, GATEWAY_A, ROUTER_MAC_A, HOST_A, mac_a),
                                            ("b", SUBNET_B, GATEWAY_B, ROUTER_MAC_B, HOST_B, mac_b)):
        net = add("network", f"net-{tag}", name=f"net-{tag}")
        sub = add("subnet", f"subnet-{tag}", network_id=net.id, cidr=cidr, gateway_ip=gw, ip_version=4)
        add("port", f"rif-{tag}", network_id=net.id, device_owner="network:router_interface", device_id=ROUTER_ID,
            mac_address=rmac, fixed_ips=[{"subnet_id": sub.id, "ip_address": gw}])
        add("port", f"host-{tag}", network_id=net.id, device_owner="compute:bench", mac_address=hmac,
            fixed_ips=[{"subnet_id": sub.id, "ip_address": host}])
    return out


async def serve(args) -> None:
    router = RouterApp()
    controller = Controller([router], audit_interval=0, echo_interval=5.0, echo_timeout=60.0)
    recs = records(args.mac_a.lower(), args.mac_b.lower())
    controller.core.state.load(Snapshot(len(recs), recs))
    bound = await controller.start([f"tcp:127.0.0.1:{args.port}"])
    start = time.perf_counter()
    nexthop = ipaddress.ip_address(HOST_B)
    routes = {p: nexthop for p in prefixes(args.routes)}
    router.learn(ROUTER_ID, routes)
    flows = [f for key in router.owners() if key[0] in ("router", "learned") for f in router.compile(key, None)]
    compile_s = time.perf_counter() - start
    print(json.dumps({"listening": bound[0].port, "compile_s": round(compile_s, 3),
                      "router_flows": len(flows), "learned": len(routes)}), flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.buffer.read1(4096) else None)
    await stop.wait()
    await controller.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--routes", type=int, default=10, help="learned prefixes (default 10)")
    ap.add_argument("--mac-a", required=True, help="host a's MAC (its API port)")
    ap.add_argument("--mac-b", required=True, help="host b's MAC (its API port)")
    args = ap.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
