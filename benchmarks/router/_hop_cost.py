#!/usr/bin/env python3
"""CPU per routed frame in the kumoflow datapath alone, in one process: a
developer's tool (no peer; before and after a change of the fast path).

    .venv/bin/python benchmarks/router/_hop_cost.py                   # this tree
    git archive REV | tar -x -C /tmp/rev && \\
        .venv/bin/python benchmarks/router/_hop_cost.py --src /tmp/rev/src    # REV's datapath

A datapath with in-memory ports (`MemoryPort`) holds a router's tables as
the router app makes them (classify, router, route, next hop): the
router's two addresses above the routes, then 10 routes (/8s) or N routes
(/24s from 20.0.0.0), each with TTL decremented, source MAC set and the
next hop into metadata. 64-byte UDP frames to 1 destination (16 flows)
or D destinations (each in a route of its own when there are enough
routes) go through `Datapath.receive_batch` in batches of 64, as a port's
read cycle hands them over, once to fill the caches and then timed:
process CPU time per frame, the best of --repeat passes; and the number of
megaflows and exact-match entries the traffic made.

What this leaves out, the kernel's and the event loop's part, the real
benchmark measures (forwarding.py, beside Open vSwitch).
"""

from __future__ import annotations

import argparse
import ipaddress
import struct
import sys
import time
from pathlib import Path

ROUTER_MAC, HOST_A_MAC, HOST_B_MAC = "02:77:00:00:00:01", "02:77:00:00:00:0a", "02:77:00:00:00:0b"


def udp_frame(dst_ip: str, sport: int) -> bytes:
    """An Ethernet / IPv4 / UDP frame of 64 bytes from host a to the router's MAC, TTL 64."""
    payload = bytes(18)
    udp = struct.pack("!HHHH", sport, 2000, 8 + len(payload), 0) + payload
    src = ipaddress.IPv4Address("10.1.1.10").packed
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, src,
                      ipaddress.IPv4Address(dst_ip).packed)
    s = sum(struct.unpack("!10H", hdr))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    hdr = hdr[:10] + struct.pack("!H", ~s & 0xFFFF) + hdr[12:]
    eth = bytes.fromhex(ROUTER_MAC.replace(":", "")) + bytes.fromhex(HOST_A_MAC.replace(":", "")) + b"\x08\x00"
    return eth + hdr + udp


def router_tables(ofp, n_routes: int) -> tuple[list, list]:
    """The router's flow-mods and its routes ((network, length), ...)."""
    OFPP = ofp.OFPP
    mods = [ofp.FlowMod(table_id=0, match=ofp.Match(in_port=1), instructions=[ofp.GotoTable(1)]),
            ofp.FlowMod(table_id=1, priority=10, match=ofp.Match(eth_dst=ROUTER_MAC, eth_type=0x0800),
                        instructions=[ofp.WriteMetadata(1, 0xFF), ofp.GotoTable(2)])]
    for own in ("10.1.1.1", "10.1.2.1"):
        mods.append(ofp.FlowMod(table_id=2, priority=1000, match=ofp.Match(metadata=1, eth_type=0x0800, ipv4_dst=own),
                                instructions=[ofp.ApplyActions([ofp.Output(OFPP.CONTROLLER)])]))
    if n_routes <= 10:
        routes = [(f"{20 + i}.0.0.0", 8) for i in range(n_routes)]
    else:
        routes = [(str(ipaddress.IPv4Address((20 << 24) + (i << 8))), 24) for i in range(n_routes)]
    for net, length in routes:
        mask = str(ipaddress.ip_network(f"{net}/{length}").netmask)
        mods.append(ofp.FlowMod(table_id=2, priority=100 + length, match=ofp.Match(
            metadata=1, eth_type=0x0800, ipv4_dst=(net, mask)), instructions=[
            ofp.ApplyActions([ofp.DecNwTtl(), ofp.SetField("eth_src", ROUTER_MAC)]),
            ofp.WriteMetadata(0x100, 0xF00), ofp.GotoTable(3)]))
    mods.append(ofp.FlowMod(table_id=3, priority=10, match=ofp.Match(metadata=(0x101, 0xFFF)), instructions=[
        ofp.ApplyActions([ofp.SetField("eth_dst", HOST_B_MAC), ofp.Output(2)])]))
    return mods, routes


def measure(n_routes: int, n_dst: int, repeat: int, frames_per_pass: int) -> dict:
    from kumoflow import ofp
    from kumoflow.switch.datapath import Datapath
    from kumoflow.switch.port import MemoryPort

    dp = Datapath(1, n_tables=8)
    for i in (1, 2):
        dp.add_port(MemoryPort(i, f"p{i}", f"02:00:00:00:01:{i:02x}"))
    mods, routes = router_tables(ofp, n_routes)
    for m in mods:
        dp.handle(m)
    if n_dst == 1:
        frames = [udp_frame(str(ipaddress.ip_network(f"{routes[0][0]}/{routes[0][1]}")[1]), 1000 + i)
                  for i in range(16)]
    else:
        step = max(1, len(routes) // n_dst)
        frames = []
        for i in range(n_dst):
            net = ipaddress.ip_network("%s/%d" % routes[(i * step) % len(routes)])
            frames.append(udp_frame(str(net[1 + (i * step) // len(routes) % (net.num_addresses - 2)]), 1000))
    batches = [frames[i:i + 64] for i in range(0, len(frames), 64)]
    while sum(map(len, batches)) < 64:
        batches = [(batches[0] * 64)[:64]]
    out = dp.ports[2]
    for b in batches:
        dp.receive_batch(1, b)
    assert len(out.sent) == sum(map(len, batches)), "frames not forwarded"
    out.sent.clear()
    rounds = max(1, frames_per_pass // sum(map(len, batches)))
    best = float("inf")
    for _ in range(repeat):
        t0, n = time.process_time(), 0
        for _ in range(rounds):
            for b in batches:
                dp.receive_batch(1, b)
                n += len(b)
            out.sent.clear()
        best = min(best, (time.process_time() - t0) / n * 1e6)
    s = dp.fastpath.stats()
    return {"routes": n_routes, "destinations": n_dst, "us_per_frame": round(best, 2), "megaflows": s["megaflows"],
            "emc_entries": s["emc_entries"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[2] / "src",
                    help="the kumoflow source tree to measure (default: this one's)")
    ap.add_argument("--routes", default="10,100000", help="route counts (comma list)")
    ap.add_argument("--destinations", default="1,10000", help="destination counts (comma list)")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes; the best counts")
    ap.add_argument("--frames", type=int, default=20000, help="frames per timed pass (about)")
    args = ap.parse_args()
    sys.path.insert(0, str(args.src))
    import kumoflow
    print(f"kumoflow from {Path(kumoflow.__file__).parent}")
    for n in (int(x) for x in args.routes.split(",")):
        for d in (int(x) for x in args.destinations.split(",")):
            r = measure(n, d, args.repeat, args.frames)
            print(f"{n:>7,} routes {d:>6,} destinations: {r['us_per_frame']:5.2f} µs per frame, "
                  f"{r['megaflows']:,} megaflows, {r['emc_entries']:,} exact-match entries", flush=True)


if __name__ == "__main__":
    main()
