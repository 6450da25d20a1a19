#!/usr/bin/env python3
"""Routed forwarding: the router app's flows in a kumoflow switch vs Open vSwitch.

    sudo .venv/bin/python benchmarks/router/forwarding.py               # 10 and 100,000 routes, ~25 minutes
    sudo .venv/bin/python benchmarks/router/forwarding.py --quick       # a smoke test, not a figure (1,000 routes, 100 destinations)
    sudo .venv/bin/python benchmarks/router/forwarding.py --routes 100000 --destinations 1,10000,100000

Two pairs of hosts (network namespaces) made as in the switch benchmark
(benchmarks/switch/_bench_switch_net.py: veth links, offloads off, NAPI
input threads, the switch alone on CPU 1), one joined by an Open vSwitch
bridge (``datapath_type=netdev``), one by a kumoflow switch. Each pair is
re-addressed into two subnets: host a 10.1.1.10/24 (subnet A), host b
10.1.2.10/24 (subnet B), each with its gateway (the router's interface) as
default route and a static neighbour entry for it, so no ARP crosses the
switch while measuring. Both pairs have the same MAC addresses.

The flows: the real controller with the router app (and the fabric it
requires), one process per switch (_router_ctl.py), each with the same
desired state (one router with an interface in A and one in B, the hosts'
API ports) and the same N learned routes (``RouterApp.learn``, as the
BGP app gives them), every one via host b. So both switches get the same
flows, compiled and installed by the controller; the script checks it
(``ovs-ofctl dump-flows --no-stats`` of both, compared line by line, the
fabric's host flows included once both hosts are learned). Routes: 10 (ten
/8s, 20.0.0.0/8 to 29.0.0.0/8) and 100,000 (disjoint prefixes from
20.0.0.0 on, six in ten /24, the rest /23 to /20, all inside those /8s).

A packet's path, both switches: classify (admit host a on its port) ->
router (eth_dst = the interface's MAC: the router's VRF into metadata) ->
route (longest prefix match among the N routes: TTL decremented, eth_src
the egress interface's MAC, the next hop's id into metadata) -> nexthop
(eth_dst = host b's MAC) -> forward (host b's port).

Traffic (_router_gen.py, the switch benchmark's generator going round a
list of destinations): 64-byte UDP frames from host a to its gateway's MAC,
addressed to destinations in the learned prefixes:

- "1 destination": one address (in one prefix), 16 UDP source ports;
- "D destinations" (--destinations): D addresses, each in a prefix of its
  own in the 100,000-route table (every (100,000/D)-th prefix), one flow
  each. The same addresses with 10 routes (they all lie in the ten /8s).
  10,000 is more than either switch's exact-match cache holds (8,192), so
  most packets are looked up in the megaflow caches (OVS: dpcls; kumoflow:
  its megaflows) and their first packet in the classifier among the N
  routes.

Host b receives the frames (not its addresses: its kernel counts them in
rx_packets and drops them, forwarding off, no ICMP). Before timing, once per
route count and switch, a sample of routed frames is captured in host b
(tcpdump -e -v): source MAC the router's interface B, destination host b's
MAC, TTL 63 (sent with 64), destinations from the list; a figure whose
sample fails is flagged in the report.

Figures, per route count:

- throughput: the switch benchmark's RFC 2544 search (bench_switch.Bench,
  RateSearch): the highest rate forwarded with loss <= --loss (0.1%),
  trials of the two switches interleaved, median (range) of --repeat
  searches; before every trial, learning frames (RFC 2544, section 23):
  each frame of the list once at --prime-rate (10,000/s), then 0.5 s of
  quiet, not counted, so that the caches hold every flow;
- TCP: iperf3 from host a to host b's own address (the connected route
  10.1.2.0/24 and its neighbour flow), --tcp-seconds, --repeat runs;
- installation: from the switch's connection to the controller to every
  flow in place (dump-aggregate polled every 0.5 s), and the flow counts.

The machine may be shared: each measurement waits up to --idle-wait s for
an idle machine and is taken again (up to --attempts) when other processes
used more than --foreign of a CPU during it (bench_switch.Bench.clean).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "switch"))
sys.path.insert(0, str(HERE.parent))                             # benchmarks/: benchlib

import benchlib  # noqa: E402
from benchlib import REPO, fmt_rate, median_of, ratio  # noqa: E402
import bench_switch  # noqa: E402
import _bench_switch_profile as bench_switch_profile  # noqa: E402
from bench_switch import Bench, KumoflowArm, OvsArm, fmt_bps  # noqa: E402
from _bench_switch_net import HOST_CPU, Lab, Pair, sh, sweep, wait_for  # noqa: E402
import _router_ctl as ctl  # noqa: E402

#: what the smoke test (tests/integration/test_benchmarks.py) marks this benchmark's quick run with
REQUIRES = ("root", "ovs")
PY = sys.executable
MAC_A, MAC_B = "02:77:00:00:00:0a", "02:77:00:00:00:0b"


# --- the hosts ------------------------------------------------------------------------------------

def routed(pair: Pair) -> Pair:
    """The pair's hosts moved into subnets A and B behind the router's interfaces."""
    for ns, mac, ip, gw, gw_mac in ((pair.ns_a, MAC_A, ctl.HOST_A, ctl.GATEWAY_A, ctl.ROUTER_MAC_A),
                                    (pair.ns_b, MAC_B, ctl.HOST_B, ctl.GATEWAY_B, ctl.ROUTER_MAC_B)):
        sh("ip", "-n", ns, "neigh", "flush", "dev", "eth0")
        sh("ip", "-n", ns, "addr", "flush", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "address", mac)
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "neigh", "replace", gw, "lladdr", gw_mac, "dev", "eth0", "nud", "permanent")
        sh("ip", "-n", ns, "route", "add", "default", "via", gw)
    return Pair(pair.tag, pair.ns_a, pair.ns_b, pair.port_a, pair.port_b, MAC_A, MAC_B, ctl.HOST_A, ctl.HOST_B)


class RouterBench(Bench):
    """The switch benchmark's measurements, with _router_gen.py sending to self.dst_file,
    and learning frames before each trial (RFC 2544, section 23): every frame of the
    trial's list once, at --prime-rate, not counted in the trial."""

    dst_file = ""

    def gen(self, pair: Pair, seconds: float, rate: float = 0, prime: bool = False) -> subprocess.Popen:
        argv = ["ip", "netns", "exec", pair.ns_a, "taskset", "-c", str(HOST_CPU), PY, str(HERE / "_router_gen.py"),
                "--src-mac", pair.mac_a, "--dst-mac", ctl.ROUTER_MAC_A, "--src-ip", pair.ip_a,
                "--dst-file", self.dst_file, "--seconds", str(seconds)]
        if prime:
            argv += ["--prime", "--prime-rate", str(round(self.args.prime_rate))]
        if rate:
            argv += ["--rate", str(round(rate))]
        return self.lab.start(argv, stdout=subprocess.PIPE, text=True)

    def _trial(self, pair: Pair, pid: int, rate: float) -> dict:
        learn = self.gen(pair, 0, rate=1, prime=True)
        learn.communicate(timeout=600)
        self.lab.procs.remove(learn)
        time.sleep(0.3)
        return super()._trial(pair, pid, rate)


# --- the controller -------------------------------------------------------------------------------

class Ctl:
    """_router_ctl.py for one switch: the router with `routes` learned routes."""

    def __init__(self, lab: Lab, routes: int, log: Path) -> None:
        self.lab = lab
        with open(log, "ab") as out:
            self.proc = lab.start([PY, str(HERE / "_router_ctl.py"), "--routes", str(routes), "--mac-a", MAC_A,
                                   "--mac-b", MAC_B], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=out,
                                  env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
        line = self.proc.stdout.readline()
        if not line.strip():
            raise RuntimeError(f"_router_ctl.py exited; see {log}")
        self.info = json.loads(line)
        self.port = self.info["listening"]

    def stop(self) -> None:
        self.lab.stop(self.proc)


def flows_of(arm) -> list[str]:
    """The switch's flows as ovs-ofctl prints them without statistics, sorted."""
    out = arm.ofctl("dump-flows", "--no-stats", timeout=600).stdout
    return sorted(line.strip() for line in out.splitlines() if line.strip() and "reply" not in line)


def install(arms: list, ctls: dict[str, Ctl], settle: float) -> dict[str, dict]:
    """Connect each switch to its controller (OVS emptied first; the kumoflow
    switch restarts empty); the seconds until its flows stop changing."""
    out = {}
    for arm in arms:
        if arm.name == "ovs":
            arm.ofctl("del-flows")
        t0 = time.monotonic()
        arm.connect(ctls[arm.name].port)
        last, since, count = -1, time.monotonic(), 0
        while True:
            time.sleep(0.5)
            try:
                count = arm.flow_count()
            except RuntimeError:
                continue
            now = time.monotonic()
            if count != last:
                last, since = count, now
            elif count > ctls[arm.name].info["router_flows"] and now - since >= max(1.5, settle):
                break
            if now - t0 > 900:
                raise RuntimeError(f"{arm.name}: flows still changing after 900 s ({count})")
        out[arm.name] = {"seconds": round(since - t0, 2), "flows": count}
    return out


def warm_hosts(pair: Pair) -> bool:
    """Both hosts seen by the fabric (their first frames reach the controller) and a ping routed."""
    def ok() -> bool:
        a = sh("ip", "netns", "exec", pair.ns_a, "ping", "-c", "1", "-W", "1", pair.ip_b, check=False)
        return a.returncode == 0
    return wait_for(ok, timeout=30, interval=0.5)


SAMPLE = re.compile(r"(?P<src>[0-9a-f:]{17}) > (?P<dst>[0-9a-f:]{17}), ethertype IPv4.*?ttl (?P<ttl>\d+),.*?\n\s+"
                    r"(?P<sip>[\d.]+)\.\d+ > (?P<dip>[\d.]+)\.\d+: UDP", re.S)


def sample(bench: RouterBench, pair: Pair, dsts: list[str], frames: int = 20) -> dict:
    """Routed frames as host b sees them: MACs rewritten, TTL decremented, destinations from the list."""
    dump = bench.lab.start(["ip", "netns", "exec", pair.ns_b, "tcpdump", "-i", "eth0", "-nn", "-e", "-v", "-l",
                            "-c", str(frames), "udp"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(1.0)
    gen = bench.gen(pair, 0.5, rate=2000)
    gen.communicate(timeout=60)
    bench.lab.procs.remove(gen)
    try:
        out, _ = dump.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        bench.lab.stop(dump)
        out = ""
    if dump in bench.lab.procs:
        bench.lab.procs.remove(dump)
    got = [m.groupdict() for m in SAMPLE.finditer(out)]
    wanted = set(dsts)
    good = [g for g in got if g["src"] == ctl.ROUTER_MAC_B and g["dst"] == MAC_B and g["ttl"] == "63"
            and g["sip"] == pair.ip_a and g["dip"] in wanted]
    return {"captured": len(got), "routed": len(good), "ok": bool(got) and len(good) == len(got),
            "example": got[0] if got else None}


# --- the run --------------------------------------------------------------------------------------

def run(args) -> dict:
    results: dict = {"machine": bench_switch.machine(), "args": vars(args), "figures": {}}
    tmp = Path(tempfile.mkdtemp(prefix="kfrouter-"))
    os.sched_setaffinity(0, {HOST_CPU})
    routes = [int(n) for n in args.routes.split(",")]
    dests = [int(n) for n in args.destinations.split(",")]
    big = max([n for n in routes if n > len(ctl.WIDE)] or [100_000])
    with Lab(ingress="napi", steer_hosts=True, napi_fifo=args.napi_fifo) as lab:
        bench = RouterBench(args, lab)
        ovs = OvsArm(lab, routed(lab.pair()))
        # the kumoflow switch's datapath id (its --dpid): the fabric's cookies name the switch
        sh("ovs-vsctl", "--timeout=10", "set", "bridge", ovs.bridge, "other-config:datapath-id=0000000000000002")
        kf = KumoflowArm(lab, routed(lab.pair()), tmp)
        kf.restartable = False              # (bench_switch would restart a busy switch with its own rules)
        arms = [ovs, kf]
        bench.arms = arms
        results["ovs_affinity_before"] = {str(k): v for k, v in lab.pin_ovs(ovs.pid).items()}
        hint: dict[str, float] = {}
        for n in routes:
            fig = results["figures"][str(n)] = {}
            ctls = {arm.name: Ctl(lab, n, tmp / f"ctl-{arm.name}-{n}.log") for arm in arms}
            fig["controller"] = {k: c.info for k, c in ctls.items()}
            print(f"{n:,} routes: controller compiled {ctls['ovs'].info['router_flows']:,} router flows "
                  f"in {ctls['ovs'].info['compile_s']} s", flush=True)
            fig["install"] = install(arms, ctls, settle=3.5)
            for arm in arms:
                if not warm_hosts(arm.pair):
                    raise RuntimeError(f"{arm.name}: host a cannot ping host b through the router ({n} routes)")
            time.sleep(2)                           # the hosts' flows in place
            fig["install"] = {k: dict(v, flows=arms[i].flow_count()) for i, (k, v) in enumerate(fig["install"].items())}
            a, b = flows_of(ovs), flows_of(kf)
            only_ovs, only_kf = sorted(set(a) - set(b)), sorted(set(b) - set(a))
            fig["same_flows"] = {"ovs": len(a), "kumoflow": len(b), "only_ovs": len(only_ovs),
                                 "only_kumoflow": len(only_kf), "examples": (only_ovs[:3], only_kf[:3])}
            print(f"  flows: ovs {len(a):,}, kumoflow {len(b):,}, differing {len(only_ovs)} / {len(only_kf)}; "
                  f"installed in {fig['install']['ovs']['seconds']} / {fig['install']['kumoflow']['seconds']} s",
                  flush=True)
            table = n if n > len(ctl.WIDE) else big        # every destination in a prefix of its own there
            for d in dests:
                dsts = ctl.destinations(d, table) if d > 1 else [ctl.destinations(2, table)[1]]
                path = tmp / f"dst-{d}.txt"
                path.write_text("\n".join(dsts) + "\n")
                bench.dst_file = str(path)
                fig.setdefault("sample", {})[str(d)] = {arm.name: sample(bench, arm.pair, dsts) for arm in arms}
                print(f"  sample, {d:,} destinations: " + ", ".join(
                    f"{k} {v['routed']}/{v['captured']} routed" for k, v in fig["sample"][str(d)].items()), flush=True)
                runs = bench.throughput(arms, f"{n} routes, {d} dst", hint.get(str(d)))
                fig[f"pps_{d}"] = runs
                hint[str(d)] = {k: median_of(v, "throughput") for k, v in runs.items() if median_of(v, "throughput")}
                print(f"  throughput, {d:,} destinations: " + ", ".join(
                    f"{k} {fmt_rate(median_of(v, 'throughput'))}" for k, v in runs.items()), flush=True)
                if args.dpflows:
                    fig.setdefault("ovs_datapath_flows", {})[str(d)] = ovs_dp_flows()
                if args.profile:
                    rate = median_of(runs["kumoflow"], "throughput")
                    learn = bench.gen(kf.pair, 0, rate=1, prime=True)
                    learn.communicate(timeout=600)
                    lab.procs.remove(learn)
                    prof = fig.setdefault("profile", {})[str(d)] = bench_switch_profile.profile(
                        bench, kf, args.py_spy, tmp, rate=0.9 * rate if rate else 0)
                    print(bench_switch_profile.report(prof), flush=True)
            if args.tcp_seconds:
                tcp = {a.name: [] for a in arms}
                for arm in arms:
                    lab.port_input(arm.pair, napi=False)
                for _ in range(args.repeat):
                    for arm in arms:
                        tcp[arm.name].append(bench.tcp(arm.pair, arm.pid))
                for arm in arms:
                    lab.port_input(arm.pair, napi=True)
                fig["tcp"] = tcp
                if args.profile:
                    lab.port_input(kf.pair, napi=False)
                    fig["profile_tcp"] = profile_tcp(bench, kf, args.py_spy, tmp, args.window)
                    lab.port_input(kf.pair, napi=True)
                    print("  profile, kumoflow under iperf3: " + json.dumps(fig["profile_tcp"]), flush=True)
                print("  tcp: " + ", ".join(f"{k} {fmt_bps(median_of(v, 'bps'))}" for k, v in tcp.items()), flush=True)
            fig["rss_kib"] = {"kumoflow_switch": benchlib.rss_kib(kf.pid)}
            for arm in arms:
                arm.disconnect()
            for c in ctls.values():
                c.stop()
        results["incidents"] = bench.incidents
        results["load_end"] = os.getloadavg()[0]
    return results


def profile_tcp(bench: RouterBench, arm, py_spy: str, tmp: Path, seconds: float) -> dict:
    """py-spy samples of the kumoflow switch while iperf3 runs through it: the share of
    its samples by where they fall (_bench_switch_profile.CATEGORIES)."""
    pair, lab = arm.pair, bench.lab
    server = lab.start(["ip", "netns", "exec", pair.ns_b, "iperf3", "-s", "-1", "-B", pair.ip_b],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.4)
    client = lab.start(["ip", "netns", "exec", pair.ns_a, "iperf3", "-c", pair.ip_b, "-t", str(int(seconds) + 3),
                        "-J"], stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    out = tmp / "py-spy-tcp.txt"
    c0, t0 = benchlib.cpu_seconds(arm.pid), time.monotonic()
    subprocess.run([py_spy, "record", "--rate", "250", "--duration", str(int(seconds)), "--format", "raw",
                    "--output", str(out), "--pid", str(arm.pid), "--nonblocking"], capture_output=True,
                   timeout=seconds + 60)
    c1, t1 = benchlib.cpu_seconds(arm.pid), time.monotonic()
    report, _ = client.communicate(timeout=seconds + 60)
    lab.procs.remove(client)
    lab.stop(server)
    per_cat, per_leaf, total = bench_switch_profile.categorize(out.read_text())
    try:
        bps = json.loads(report)["end"]["sum_received"]["bits_per_second"]
    except (ValueError, KeyError):
        bps = None
    return {"bps": bps, "switch_cpu": round((c1 - c0) / (t1 - t0), 2), "samples": total,
            "categories": {c: round(n / total, 3) for c, n in per_cat.most_common()},
            "top_functions": [(f, round(n / total, 3)) for f, n in per_leaf.most_common(12)]}


def ovs_dp_flows() -> int:
    out = sh("ovs-appctl", "dpctl/dump-flows", "netdev@ovs-netdev", check=False, timeout=120).stdout
    return sum(1 for line in out.splitlines() if "in_port" in line)


# --- the report -----------------------------------------------------------------------------------

def cpu_per_frame(runs: list[dict]) -> float | None:
    """µs of the switch's CPU per frame, median over the passing trials above 5,000 frames/s."""
    per = [t["switch_cpu"] / t["offered"] * 1e6 for r in runs for t in r.get("trials", [])
           if t.get("pass") and t.get("switch_cpu") and t.get("offered", 0) > 5000]
    return statistics.median(per) if per else None


def spread(runs: list[dict]) -> str:
    return bench_switch.spread(runs)


def report(results: dict) -> str:
    a = results["args"]
    lines = benchlib.machine_lines(results["machine"]) + [f"- command: `{results.get('command', '')}`",
                                                          f"- load average at the end: {results.get('load_end', 0):.1f}"]
    rows, tcp_rows, inst_rows, checks = [], [], [], []
    for n, fig in results["figures"].items():
        n_text = f"{int(n):,}"
        for key in sorted((k for k in fig if k.startswith("pps_")), key=lambda k: int(k.split("_")[1])):
            d = int(key.split("_")[1])
            runs = fig[key]
            o, k = median_of(runs["ovs"], "throughput"), median_of(runs["kumoflow"], "throughput")
            s = fig.get("sample", {}).get(str(d), {})
            ok = all(v.get("ok") for v in s.values()) if s else False
            co, ck = cpu_per_frame(runs["ovs"]), cpu_per_frame(runs["kumoflow"])
            rows.append([n_text, "1 (16 flows)" if d == 1 else f"{d:,}", spread(runs["ovs"]), spread(runs["kumoflow"]),
                         ratio(k, o), f"{co:.1f}" if co else "-", f"{ck:.1f}" if ck else "-",
                         "yes" if ok else "**NO**"])
        if "tcp" in fig:
            o, k = median_of(fig["tcp"]["ovs"], "bps"), median_of(fig["tcp"]["kumoflow"], "bps")
            tcp_rows.append([n_text, fmt_bps(o), fmt_bps(k), ratio(k, o)])
        inst = fig["install"]
        same = fig["same_flows"]
        inst_rows.append([n_text, f"{inst['ovs']['flows']:,}", f"{inst['kumoflow']['flows']:,}",
                          f"{inst['ovs']['seconds']:.1f} s", f"{inst['kumoflow']['seconds']:.1f} s",
                          "identical" if not (same["only_ovs"] or same["only_kumoflow"])
                          else f"{same['only_ovs']} / {same['only_kumoflow']} differ",
                          f"{fig['controller']['ovs']['compile_s']:.2f} s"])
        for d, s in fig.get("sample", {}).items():
            for arm, v in s.items():
                if not v.get("ok"):
                    checks.append(f"{n_text} routes, {d} destinations, {arm}: {v['routed']} of {v['captured']} "
                                  f"sampled frames routed as expected (example {v.get('example')})")
    lines += ["", f"Throughput, 64-byte frames/s forwarded with at most {a['loss']:.1%} loss (RFC 2544 search to "
              f"{a['precision']:.0%}, {a['trial']:g} s trials, the switches' trials interleaved); median "
              f"(lowest-highest) of {a['repeat']} searches; \"routed\": a sample captured in host b had its MACs "
              "rewritten and TTL 63.", "",
              benchlib.md_table(["routes", "destinations", "Open vSwitch (netdev)", "kumoflow", "kumoflow / OVS",
                                 "CPU µs/frame, OVS", "kumoflow", "routed"], rows),
              "", "CPU µs/frame: the switch's CPU time (every thread of ovs-vswitchd; the kumoflow switch process) "
              "per frame offered, median over the passing trials above 5,000 frames/s: what a frame costs, which "
              "the load of other processes moves less than the loss-free rate."]
    if tcp_rows:
        lines += ["", benchlib.md_table(["routes", "iperf3 TCP, OVS", "kumoflow", "kumoflow / OVS"], tcp_rows)]
    lines += ["", benchlib.md_table(["routes", "flows in OVS", "flows in kumoflow", "OVS: connect to all installed",
                                     "kumoflow", "flow tables", "controller compile"], inst_rows)]
    gen_cpu = [r.get("gen_cpu") for fig in results["figures"].values() for k, v in fig.items() if k.startswith("pps_")
               for runs in v.values() for r in runs if r.get("gen_cpu")]
    if gen_cpu:
        lines += ["", f"The generator used at most {max(gen_cpu):.0%} of CPU {HOST_CPU} in the passing trials that "
                  "gave these figures."]
    trials = [t for fig in results["figures"].values() for k, v in fig.items() if k.startswith("pps_")
              for runs in v.values() for r in runs for t in r.get("trials", [])]
    fg = [t["foreign"] for t in trials if t.get("foreign") is not None]
    if fg:
        lines += ["", f"Other processes (not the switches, the generator or this script) used a median "
                  f"{statistics.median(fg):.2f} CPU (at most {max(fg):.2f}) during the {len(fg)} trials: the machine "
                  "was shared."]
    if checks:
        lines += ["", "**Routing check failed**: " + "; ".join(checks)]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--routes", default="10,100000", help="route counts (comma list; default 10,100000)")
    ap.add_argument("--destinations", default="1,10000",
                    help="destination counts (comma list; 1 = one address, 16 flows; default 1,10000)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--trial", type=float, default=2.0, help="seconds of traffic per trial")
    ap.add_argument("--drain", type=float, default=0.25)
    ap.add_argument("--loss", type=float, default=0.001)
    ap.add_argument("--precision", type=float, default=0.03)
    ap.add_argument("--start-rate", type=float, default=60_000, help="first rate tried (default 60,000/s)")
    ap.add_argument("--max-rate", type=float, default=600_000)
    ap.add_argument("--prime-rate", type=float, default=10_000,
                    help="learning frames before each trial: every destination once at this rate (default 10,000/s)")
    ap.add_argument("--tcp-seconds", type=int, default=5, help="0: no TCP")
    ap.add_argument("--napi-fifo", type=int, default=50)
    ap.add_argument("--idle-wait", type=float, default=3.0,
                    help="wait this long at most for an idle machine before a measurement (default 3 s)")
    ap.add_argument("--foreign", type=float, default=0.3,
                    help="a measurement counts as clean when other processes used at most this much CPU")
    ap.add_argument("--attempts", type=int, default=1,
                    help="tries per measurement to get a clean one (default 1: on a busy machine, take what comes "
                         "and report the load)")
    ap.add_argument("--dpflows", action="store_true", help="count Open vSwitch's datapath flows after each search")
    ap.add_argument("--profile", action="store_true",
                    help="after each search, py-spy samples the kumoflow switch at 90%% of its throughput "
                         "(benchmarks/switch/_bench_switch_profile.py): where its time per frame goes")
    ap.add_argument("--window", type=float, default=5.0, help="--profile: seconds sampled")
    ap.add_argument("--py-spy", default=benchlib.py_spy() or "py-spy")
    benchlib.add_output_args(ap, "a smoke test: 1,000 routes, 100 destinations, one short search, "
                                 "1 s of TCP, no waiting")
    ap.add_argument("--sweep", action="store_true", help="remove leftovers of a killed run and exit")
    args = ap.parse_args()
    if args.sweep:
        print("\n".join(sweep()) or "nothing to remove")
        return 0
    if os.geteuid() != 0:
        print("needs root (namespaces, raw sockets, Open vSwitch)", file=sys.stderr)
        return 2
    if args.quick:
        args.routes, args.destinations, args.repeat, args.trial, args.drain = "1000", "100", 1, 0.5, 0.1
        args.precision, args.tcp_seconds, args.idle_wait, args.attempts = 0.5, 1, 0.0, 1
    benchlib.exit_on_sigterm()
    results = run(args)
    results["command"] = "sudo " + benchlib.command_line()
    if args.json:
        benchlib.write_json(args.json, results)
    print()
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
