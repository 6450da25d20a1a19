#!/usr/bin/env python3
"""BGP routes into the controller: 100,000 prefixes announced by a peer FRR until all reached
the Speaker's callback (FRR -> bgpd -> zebra -> FPM -> kumoflow.bgp), side by side with the
same routes reaching the Linux kernel FIB through the same zebra, in the same run; then the
withdrawal of all of them. Goal (issue 14): no slower than the kernel path.

    .venv/bin/python benchmarks/bgp/fpm_rate.py               # 100,000 IPv4 /24, 3 runs
    .venv/bin/python benchmarks/bgp/fpm_rate.py --quick       # 2,000 prefixes, 1 run: a smoke test

Root: two network namespaces joined by a veth. In one, the peer router: FRR (zebra and bgpd,
AS 65001; kumoflow.bgp.frr) over N blackhole routes in its kernel (20.0.0.0/24 onwards, added
with ``ip -batch`` and read by its zebra as kernel routes before anything is timed: loading
them as static routes through staticd's configuration takes minutes, one northbound commit
per line), its session to the speaker up, announcing nothing. In
the other, the cloud's speaker (kumoflow.bgp.speaker.Speaker, AS 65002): FRR's zebra with
``-M dplane_fpm_nl``, staticd and bgpd, and this process as the FPM end. zebra installs every
best route into the namespace's kernel FIB and streams it over FPM: the two paths share
everything up to zebra's data plane, where the kernel provider runs first and the FPM
provider after it, route batch by route batch.

Each run: at t0 the peer starts announcing (``redistribute kernel`` through vtysh); the
figures are the times from t0 until

* **FPM**: the callback (a plain dict of prefix -> route, the least a router app does) holds
  all N routes;
* **kernel**: the kernel has added all N prefixes of protocol bgp to the speaker namespace's
  FIB: counted from its route notifications (netlink RTNLGRP_IPV4_ROUTE, one per route as the
  kernel installs it) by ``_fib_watch.py``, a process of its own in that namespace, and
  checked afterwards against /proc/PID/net/route of the speaker's zebra (N more routes than
  before);

then the same for the withdrawal (``no redistribute kernel``): until the callback holds none
and the kernel has deleted all N (the FIB back to its count before). Also reported: this process's CPU seconds (FPM
decoding and the callback) and zebra's and bgpd's of the speaker during the announcement.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # benchmarks/: benchlib
import benchlib  # noqa: E402

benchlib.use_src()

from kumoflow.bgp.frr import FrrRouter  # noqa: E402
from kumoflow.bgp.speaker import Speaker  # noqa: E402

REQUIRES = ("root",)
HERE = Path(__file__).resolve().parent
PEER_IP, CLOUD_IP = "10.201.0.1", "10.201.0.2"
FIRST = int(ipaddress.IPv4Address("20.0.0.0"))


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def prefixes(n: int) -> list[str]:
    return [f"{ipaddress.IPv4Address(FIRST + (i << 8))}/24" for i in range(n)]


def fib_count(pid: int) -> int:
    with open(f"/proc/{pid}/net/route", "rb") as f:
        return f.read().count(b"\n") - 1


class App:
    """The callback: what a router app would keep, and when it had it all."""

    def __init__(self) -> None:
        self.routes: dict = {}
        self.target = 0
        self.reached: float | None = None
        self.first: float | None = None
        self.batches = 0
        self.event = asyncio.Event()

    def __call__(self, adds, deletes) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        self.batches += 1
        routes = self.routes
        for r in deletes:
            routes.pop(r.prefix, None)
        for r in adds:
            routes[r.prefix] = r
        if self.reached is None and len(routes) == self.target:
            self.reached = now
            self.event.set()

    def arm(self, target: int) -> None:
        self.target, self.reached, self.first, self.batches = target, None, None, 0
        self.event.clear()


async def wait_for(test, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)


async def measure(args) -> dict:
    n = args.prefixes
    T0 = time.monotonic()
    tag = f"{int(time.time()) % 100000:05d}"
    peer_ns, cloud_ns, veth = f"bgpbp{tag}", f"bgpbc{tag}", f"vbb{tag}"
    app = App()
    results: list[dict] = []
    peer = speaker = watch = None
    try:
        sh("ip", "netns", "add", peer_ns)
        sh("ip", "netns", "add", cloud_ns)
        sh("ip", "link", "add", veth + "a", "netns", peer_ns, "type", "veth", "peer", "name", veth + "b",
           "netns", cloud_ns)
        for ns, dev, ip in ((peer_ns, veth + "a", PEER_IP), (cloud_ns, veth + "b", CLOUD_IP)):
            sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        # the peer's prefixes: blackhole routes in its kernel (ip -batch: a second for 100,000), which its
        # zebra reads as kernel routes at start; `redistribute kernel` announces them all at once
        subprocess.run(["ip", "-n", peer_ns, "-batch", "-"], check=True, text=True,
                       input="".join(f"route add blackhole {p}\n" for p in prefixes(n)))
        peer = FrrRouter(peer_ns, {"bgpd": f"""router bgp 65001
 bgp router-id {PEER_IP}
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor {CLOUD_IP} remote-as 65002
 neighbor {CLOUD_IP} timers connect 1
 address-family ipv4 unicast
  neighbor {CLOUD_IP} activate
 exit-address-family
exit"""})
        await peer.start()

        async def peer_rib() -> int:
            summary = await peer.vtysh_json("show ip route summary json")
            return sum(r.get("rib", 0) for r in summary.get("routes", []) if r.get("type") == "kernel")
        deadline = time.monotonic() + 300
        while await peer_rib() < n:
            if time.monotonic() > deadline:
                raise TimeoutError("the peer's zebra did not read its kernel routes")
            await asyncio.sleep(0.5)
        print(f"{time.monotonic() - T0:.1f} s: peer up with {n:,} kernel routes", file=sys.stderr)
        speaker = Speaker(app, namespace=cloud_ns)
        await speaker.start()
        print(f"{time.monotonic() - T0:.1f} s: speaker started", file=sys.stderr)
        await speaker.configure(65002, CLOUD_IP, peers=[(PEER_IP, 65001)])
        deadline = time.monotonic() + 60
        while True:
            states = [p["state"] for p in await speaker.peers()]
            if states == ["Established"]:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"session not established: {states}")
            await asyncio.sleep(0.2)
        zebra, bgpd = speaker._pids["zebra"], speaker._pids["bgpd"]
        base = fib_count(zebra)
        print(f"{time.monotonic() - T0:.1f} s: session up; speaker FIB {base} routes", file=sys.stderr)
        # the kernel side: a process of its own in the namespace, counting the kernel's route notifications
        watch = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", cloud_ns, sys.executable, str(HERE / "_fib_watch.py"),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        if (await asyncio.wait_for(watch.stdout.readline(), 10)).strip() != b"ready":
            raise RuntimeError("_fib_watch.py did not start")
        for run in range(args.runs):
            row: dict = {"run": run + 1}
            for phase, command, target_app, target_fib, kind in (
                    ("announce", "redistribute kernel", n, base + n, "add"),
                    ("withdraw", "no redistribute kernel", 0, base, "del")):
                app.arm(target_app)
                watch.stdin.write(f"arm {kind} {n}\n".encode())
                await watch.stdin.drain()
                await asyncio.sleep(0.2)          # armed before t0
                cpu0 = {"self": time.thread_time(),     # the event loop's thread: FPM and the callback
                        "zebra": benchlib.cpu_seconds(zebra), "bgpd": benchlib.cpu_seconds(bgpd)}
                t0 = time.monotonic()
                await peer.vtysh("configure terminal", "router bgp 65001", "address-family ipv4 unicast", command)
                await asyncio.wait_for(app.event.wait(), args.timeout)
                answer = (await asyncio.wait_for(watch.stdout.readline(), args.timeout)).decode().split()
                if answer[:1] != ["reached"]:
                    raise RuntimeError(f"{phase}: the kernel's notifications: {' '.join(answer)}")
                kernel_first, kernel_all = float(answer[1]), float(answer[2])
                count = fib_count(zebra)         # and the FIB itself agrees
                if count != target_fib:
                    raise RuntimeError(f"{phase}: the FIB holds {count} routes, expected {target_fib}")
                row[phase] = {
                    "fpm_s": app.reached - t0, "fpm_first_s": app.first - t0 if app.first else None,
                    "kernel_s": kernel_all - t0, "kernel_first_s": kernel_first - t0,
                    "batches": app.batches,
                    "cpu_self_s": time.thread_time() - cpu0["self"],
                    "cpu_zebra_s": benchlib.cpu_seconds(zebra) - cpu0["zebra"],
                    "cpu_bgpd_s": benchlib.cpu_seconds(bgpd) - cpu0["bgpd"]}
                print(f"  run {run + 1} {phase}: FPM {row[phase]['fpm_s']:.2f} s, kernel "
                      f"{row[phase]['kernel_s']:.2f} s ({app.batches} batches)", file=sys.stderr)
                await asyncio.sleep(1.0)
            results.append(row)
        errors = speaker.fpm_errors
    finally:
        if watch is not None and watch.returncode is None:
            watch.stdin.close()
            try:
                await asyncio.wait_for(watch.wait(), 5)
            except asyncio.TimeoutError:
                watch.kill()
        if speaker is not None:
            await speaker.stop()
        if peer is not None:
            await peer.stop()
        for ns in (peer_ns, cloud_ns):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
    return {"prefixes": n, "runs": results, "fpm_errors": errors}


def report(data: dict, m: dict) -> str:
    runs = data["runs"]

    def med(phase: str, key: str) -> float:
        return statistics.median(r[phase][key] for r in runs)

    n = data["prefixes"]
    lines = [f"## BGP: {n:,} IPv4 prefixes from a peer FRR to the controller (FPM) and to the kernel FIB", ""]
    lines += benchlib.machine_lines(m)
    lines += [f"- command: `{benchlib.command_line()}`",
              f"- {len(runs)} run(s); the kernel side timed by its route notifications (netlink), checked "
              f"against /proc/PID/net/route after each phase; FPM frames that did not decode: {data['fpm_errors']}",
              ""]
    rows = []
    for phase in ("announce", "withdraw"):
        fpm, kernel = med(phase, "fpm_s"), med(phase, "kernel_s")
        paired = statistics.median(r[phase]["kernel_s"] / r[phase]["fpm_s"] for r in runs)
        gap = statistics.median(r[phase]["fpm_s"] - r[phase]["kernel_s"] for r in runs)
        rows.append([phase, f"{fpm:.2f} s", f"{kernel:.2f} s", f"{paired:.2f}x", f"{gap:+.2f} s",
                     f"{n / fpm:,.0f}/s", f"{med(phase, 'fpm_first_s'):.2f} / {med(phase, 'kernel_first_s'):.2f} s",
                     f"{med(phase, 'cpu_self_s'):.2f} s", f"{med(phase, 'cpu_zebra_s'):.2f} s",
                     f"{med(phase, 'cpu_bgpd_s'):.2f} s"])
    lines.append(benchlib.md_table(
        ["", "all in the callback (FPM)", "all in the kernel FIB", "kernel / FPM", "FPM - kernel", "FPM rate",
         "first: FPM / kernel", "CPU: controller", "CPU: zebra", "CPU: bgpd"], rows))
    lines += ["", "Times are medians over the runs; kernel / FPM and FPM - kernel are the medians of each "
              "run's own ratio and difference (the two paths timed in the same run)."]
    lines += ["", "Every run:", ""]
    lines.append(benchlib.md_table(
        ["run", "announce: FPM", "announce: kernel", "withdraw: FPM", "withdraw: kernel", "callback batches"],
        [[r["run"], f"{r['announce']['fpm_s']:.2f} s", f"{r['announce']['kernel_s']:.2f} s",
          f"{r['withdraw']['fpm_s']:.2f} s", f"{r['withdraw']['kernel_s']:.2f} s",
          f"{r['announce']['batches']} + {r['withdraw']['batches']}"] for r in runs]))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefixes", type=int, default=100_000, help="IPv4 /24 prefixes the peer announces")
    ap.add_argument("--runs", type=int, default=3, help="announce + withdraw cycles (medians reported)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds a phase may take")
    benchlib.add_output_args(ap, quick="2,000 prefixes, one run: a smoke test")
    args = ap.parse_args()
    if args.quick:
        args.prefixes, args.runs = 2000, 1
    if os.geteuid() != 0:
        print("fpm_rate.py needs root (namespaces, FRR)", file=sys.stderr)
        return 2
    m = benchlib.machine(tools=[("/usr/lib/frr/zebra", "--version")], code=("src",))
    data = asyncio.run(measure(args))
    print(report(data, m))
    if args.json:
        benchlib.write_json(args.json, {"machine": m, "args": vars(args), **data})
    return 0


if __name__ == "__main__":
    sys.exit(main())
