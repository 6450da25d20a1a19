#!/usr/bin/env python3
"""The controller's CPU per BGP route, in one process: zebra's FPM bytes to FLOW_MOD bytes.

    .venv/bin/python benchmarks/bgp/_controller_cost.py                  # 100,000 /24, 1 switch, 3 repeats
    .venv/bin/python benchmarks/bgp/_controller_cost.py --switches 2 --profile

A developer's tool (no peer; to_forwarding.py is the benchmark against the kernel): the part of
to_forwarding.py's path that is the controller's, without FRR, sockets or a switch. The FPM
stream (`fpm.encode_route` frames, as zebra sends them: RTA_DST, RTA_PRIORITY, RTA_GATEWAY,
RTA_OIF) is fed to the speaker's own reader (`FpmDecoder`, `Speaker._deliver`) in 256 kB reads,
whose callback is the `bgp` app's (`BgpApp._routes`) on a real `Core` with the router app: the
learned routes compiled, reconciled and encoded to each switch's channel. The switches are
null: they answer the handshake and the read (holding nothing) and keep the bytes, which are
checked after timing (one FLOW_MOD ADD per prefix announced and switch, one DELETE_STRICT per
prefix withdrawn). Times are the process's CPU time; the garbage collector stays on (as in the
controller).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import ipaddress
import pstats
import statistics
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # benchmarks/: benchlib
import benchlib  # noqa: E402

benchlib.use_src()

from kumoflow import ofp  # noqa: E402
from kumoflow.apps.bgp import BgpApp  # noqa: E402
from kumoflow.bgp import fpm  # noqa: E402
from kumoflow.bgp.speaker import Speaker  # noqa: E402
from kumoflow.controller import Core, pipeline  # noqa: E402
from kumoflow.store import Record, Snapshot  # noqa: E402

READ = 1 << 18                  # what the speaker reads from zebra's socket at once
NEXTHOP = "203.0.113.1"         # the peer, on the router's external subnet
_FLOW_MOD = int(ofp.OFPT.FLOW_MOD)


def _record(n: int, kind: str, **body) -> Record:
    return Record(kind, f"{kind}-{n}", "p1", n, f"2026-12-07T00:00:{n:02d}Z", "2026-12-07T00:00:00Z", body)


def records() -> list[Record]:
    """The cloud of to_forwarding.py: a router with a tenant subnet and its external gateway on
    `public` (SNAT off), a BGP speaker whose gateway network is `public`."""
    public = _record(1, "network", name="public", **{"router:external": True})
    ext = _record(2, "subnet", network_id=public.id, cidr="203.0.113.0/24", gateway_ip=None, ip_version=4)
    tenant = _record(3, "network", name="tenant")
    sub = _record(4, "subnet", network_id=tenant.id, cidr="10.0.1.0/24", gateway_ip="10.0.1.1", ip_version=4)
    router = _record(5, "router", admin_state_up=True, routes=[],
                     external_gateway_info={"network_id": public.id, "enable_snat": False})
    ports = [_record(6, "port", network_id=tenant.id, device_owner="network:router_interface", device_id=router.id,
                     mac_address="fa:16:3e:00:10:01", fixed_ips=[{"subnet_id": sub.id, "ip_address": "10.0.1.1"}]),
             _record(7, "port", network_id=public.id, device_owner="network:router_gateway", device_id=router.id,
                     mac_address="fa:16:3e:00:10:ee", fixed_ips=[{"subnet_id": ext.id, "ip_address": "203.0.113.10"}])]
    speaker = _record(8, "bgp_speaker", local_as=64512, peers=[], networks=[public.id],
                      advertise_tenant_networks=True, advertise_floating_ip_host_routes=True)
    return [public, ext, tenant, sub, router, *ports, speaker]


class NullSwitch:
    """Answers the handshake and the read (an empty switch); keeps every later byte."""

    def __init__(self, core: Core, dpid: int) -> None:
        self.dpid, self.conn = dpid, ofp.Connection()
        self.session = core.connect(f"null:{dpid}")
        self.chunks: list[bytes] = []
        self.session.write = self._from_controller
        self._reply()

    def _from_controller(self, data: bytes) -> None:
        if self.session.is_up:
            self.chunks.append(data)
            return
        for msg in self.conn.receive_data(data):
            if isinstance(msg, ofp.FeaturesRequest):
                self.conn.send(ofp.FeaturesReply(self.dpid, n_buffers=0, n_tables=254, xid=msg.xid))
            elif isinstance(msg, ofp.PortDescRequest):
                self.conn.send(ofp.PortDescReply(body=[ofp.Port(1, "02:00:00:00:00:01", "eth1")], xid=msg.xid))
            elif isinstance(msg, ofp.FlowStatsRequest):
                self.conn.send(ofp.FlowStatsReply(body=[], xid=msg.xid))
            elif isinstance(msg, ofp.GroupDescRequest):
                self.conn.send(ofp.GroupDescReply(body=[], xid=msg.xid))
            elif isinstance(msg, ofp.MeterConfigRequest):
                self.conn.send(ofp.MeterConfigReply(body=[], xid=msg.xid))
        self._reply()

    def _reply(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.session.receive_data(data)

    def flow_mods(self) -> dict[int, int]:
        """FLOW_MOD command -> how many were sent since the last call (headers walked, nothing decoded)."""
        data, self.chunks = b"".join(self.chunks), []
        counts: dict[int, int] = {}
        pos = 0
        while pos + 8 <= len(data):
            kind, length = data[pos + 1], struct.unpack_from("!H", data, pos + 2)[0]
            if kind == _FLOW_MOD:
                command = data[pos + 25]
                counts[command] = counts.get(command, 0) + 1
            pos += length
        return counts


def stream(prefixes: list[ipaddress.IPv4Network], action: str) -> list[bytes]:
    hop = (fpm.Nexthop(ipaddress.IPv4Address(NEXTHOP), 2, 1),)
    data = b"".join(fpm.frame(fpm.encode_route(fpm.Route(action, p, hop if action == fpm.ADD else (), metric=20),
                                               seq=i)) for i, p in enumerate(prefixes))
    return [data[i:i + READ] for i in range(0, len(data), READ)]


async def feed(speaker: Speaker, decoder: fpm.FpmDecoder, chunks: list[bytes]) -> None:
    """What Speaker._serve_fpm does with each read (its socket and logging aside)."""
    for chunk in chunks:
        decoder.feed(chunk)
        routes = decoder.routes()
        if routes:
            await speaker._deliver(routes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--routes", type=int, default=100_000)
    ap.add_argument("--switches", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="cProfile one more announce + withdraw")
    ap.add_argument("--no-gc", action="store_true", help="the garbage collector off (how much it costs)")
    ap.add_argument("--gc-threshold", default="", help="freeze, then these thresholds (T0[,T1[,T2]])")
    ap.add_argument("--sort", default="tottime", help="the profile's order (tottime, cumulative)")
    ap.add_argument("--top", type=int, default=18, help="the profile's length")
    args = ap.parse_args()

    core = Core([BgpApp()], clock=time.monotonic, settle=0, audit_interval=0)
    core.spawn = lambda coro: coro.close()           # the bgp app's speaker task: no FRR here
    core.state.load(Snapshot(8, records()))
    core.start()
    bgp = core.app("bgp")
    bgp.applied = {}                                 # as if the speaker were configured
    switches = [NullSwitch(core, dpid) for dpid in range(1, args.switches + 1)]
    assert all(s.session.is_up for s in switches), "a null switch did not come up"
    for s in switches:
        s.flow_mods()
    speaker = Speaker(bgp._routes)
    decoder = fpm.FpmDecoder()                       # one connection: withdrawals meet their announcements' prefixes
    base = ipaddress.IPv4Network("20.0.0.0/24")
    prefixes = [ipaddress.IPv4Network((int(base.network_address) + (i << 8), 24)) for i in range(args.routes)]
    announce, withdraw = stream(prefixes, fpm.ADD), stream(prefixes, fpm.DELETE)
    route_table = pipeline.table_id("route")

    def phase(chunks: list[bytes], command: int) -> float:
        t = time.process_time()
        asyncio.run(feed(speaker, decoder, chunks))
        spent = time.process_time() - t
        for s in switches:
            counts = s.flow_mods()
            assert counts.get(command, 0) == args.routes, (command, counts)
        return spent

    if args.no_gc:
        gc.disable()
    elif args.gc_threshold:
        gc.collect()
        gc.freeze()
        given = [int(t) for t in args.gc_threshold.split(",")]
        gc.set_threshold(*given, *gc.get_threshold()[len(given):])
    times: dict[str, list[float]] = {"announce": [], "withdraw": []}
    for _ in range(args.repeat):
        gc.collect()
        times["announce"].append(phase(announce, int(ofp.OFPFC.ADD)))
        assert sum(1 for k in core.desired[1] if k[1] == route_table) >= args.routes
        times["withdraw"].append(phase(withdraw, int(ofp.OFPFC.DELETE_STRICT)))
    n = args.routes
    print(f"{n:,} routes, {args.switches} switch(es), {args.repeat} repeats; controller CPU per route "
          f"(median, min-max), FPM bytes in to FLOW_MOD bytes out")
    for name, spent in times.items():
        us = [t / n * 1e6 for t in spent]
        print(f"  {name:8s} {statistics.median(us):6.1f} us  ({min(us):.1f}-{max(us):.1f})  "
              f"{statistics.median(spent):.2f} s")
    if args.profile:
        for chunks, command, name in ((announce, int(ofp.OFPFC.ADD), "announce"),
                                      (withdraw, int(ofp.OFPFC.DELETE_STRICT), "withdraw")):
            prof = cProfile.Profile()
            prof.enable()
            asyncio.run(feed(speaker, decoder, chunks))
            prof.disable()
            for s in switches:
                s.flow_mods()
            print(f"\n--- {name}: {args.sort}")
            pstats.Stats(prof).sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
