#!/usr/bin/env python3
"""The reroute gap of the fabric on a link cut: fast failover in the switch vs the controller recomputing.

    sudo .venv/bin/python benchmarks/fabric/reroute.py                   # mesh, ring, fat-tree; 10 cuts per case and arm
    sudo .venv/bin/python benchmarks/fabric/reroute.py --quick           # the mesh, one cut each: a smoke test
    sudo .venv/bin/python benchmarks/fabric/reroute.py --topology ring --repeat 20

Needs root, Open vSwitch running, and the examples' topologies (mesh: 3
kumoflow switches and 2 Open vSwitch bridges; ring: 6 Open vSwitch bridges;
fattree: 20 kumoflow switches). Each topology is brought up under a name of
its own and removed afterwards.

How: two hosts exchange UDP datagrams, one every --interval (1 ms) each way
(_probe.py in each namespace: sequence number and send time in every
datagram). After a warm-up, one veth end of a link on their path is set
down (`ip link set IF down`: that switch sees its port go down, the switch
at the other end sees carrier loss; both send PORT_STATUS). --after seconds
later the probes stop and the link comes back (and is found again by LLDP
before the next cut).

    gap    = datagrams lost around the cut x interval, per direction;
    round trip = the intervals in which a datagram was lost either way
             (each lost datagram placed evenly between the send times of
             its received neighbours): what ping every interval would lose;
    outage = the time between the send times of the last datagram before
             and the first after a loss: an upper bound, since a sender that
             stalls (a busy machine) sends nothing for a while and loses
             nothing then.

Two arms in one run, alternating (ABBA) with a controller restart between:
"fast failover" (the default fabric: fast-failover groups with loop-free
alternates and select groups whose buckets watch their ports, so the switch
moves traffic itself) and "recompute" (`--set fabric.fast_failover=false`:
groups without watched buckets; traffic moves when the controller has heard
PORT_STATUS and sent new groups). Before measuring an arm the script checks
the groups on the cut switch (watch_port present or not).

Cases:
  mesh     h1-h3 over s1-s2 (kumoflow-kumoflow), h4-h6 over s3-s4 (OVS-OVS),
           h1-h6 over s1-s4 (kumoflow-OVS): direct links with a loop-free
           alternate (via s5) at both ends; the cut end is s1, s3, s1.
  ring     h1-h2 over s1-s2 (OVS): no loop-free alternate; both arms rely
           on the controller.
  fattree  h1-h5 (pod 1 to pod 2): the uplink of e1 that carries h1's
           datagrams (found from the veth counters), an ECMP select group
           at e1; the return traffic crosses core and aggregation switches
           that have no alternate towards e1 (a fat-tree has none), so the
           reverse direction waits for the controller in both arms.

Medians and maxima over --repeat cuts per case and arm; "ctl" is the
time from the cut to the controller's "link down" log line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # benchmarks/: benchlib
sys.path.insert(0, str(Path(__file__).resolve().parent))         # _fabnet, _probe
import benchlib  # noqa: E402
from _fabnet import Lab  # noqa: E402

#: what the smoke test (tests/integration/test_benchmarks.py) marks this benchmark's quick run with
REQUIRES = ("root", "ovs")
PROBE = str(Path(__file__).resolve().parent / "_probe.py")
ARMS = {"fast failover": (), "recompute": ("--set", "fabric.fast_failover=false")}


@dataclass(frozen=True)
class Case:
    label: str
    src: str
    dst: str
    switch: str                  # the switch whose veth end is set down
    ports: tuple[int, ...]       # its candidate ports: the one carrying src's datagrams is cut


CASES = {
    "mesh": [Case("s1-s2, kumoflow-kumoflow (LFA)", "h1", "h3", "s1", (2,)),
             Case("s3-s4, OVS-OVS (LFA)", "h4", "h6", "s3", (4,)),
             Case("s1-s4, kumoflow-OVS (LFA)", "h1", "h6", "s1", (4,))],
    "ring": [Case("s1-s2, OVS (no LFA)", "h1", "h2", "s1", (1,))],
    "fattree": [Case("e1 uplink, kumoflow (ECMP)", "h1", "h5", "e1", (3, 4))],
}


# --- one cut ------------------------------------------------------------------------------------

def start_probes(lab: Lab, case: Case, interval: float) -> dict[str, Any]:
    a, b = lab.net.host(case.src), lab.net.host(case.dst)
    common = ["--interval", str(interval), "--duration", "120"]
    return {case.src: lab.popen_in(case.src, [sys.executable, PROBE, "--bind", a.ip, "--peer", b.ip, *common]),
            case.dst: lab.popen_in(case.dst, [sys.executable, PROBE, "--bind", b.ip, "--peer", a.ip, *common])}


def stop_probes(probes: dict[str, Any]) -> dict[str, dict]:
    out = {}
    for name, proc in probes.items():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for name, proc in probes.items():
        stdout, stderr = proc.communicate(timeout=20)
        if proc.returncode != 0 or not stdout.strip():
            raise RuntimeError(f"probe in {name} failed ({proc.returncode}): {stderr.strip()[-500:]}")
        out[name] = json.loads(stdout)
    return out


def holes(received: list, end_ns: int, interval_ns: int) -> list[tuple[int, int, int]]:
    """(lost, from_ns, to_ns) for every run of missing sequence numbers among
    the datagrams sent before end_ns: the send times of the datagrams received
    just before and just after it. A hole still open at end_ns (nothing
    received after it for 20 intervals) runs to end_ns, its loss estimated
    from the time."""
    got = sorted({(s, t) for s, t, _ in received if t <= end_ns})
    out = []
    for (s1, t1), (s2, t2) in zip(got, got[1:]):
        if s2 - s1 > 1:
            out.append((s2 - s1 - 1, t1, t2))
    if got and end_ns - got[-1][1] > 20 * interval_ns:
        out.append(((end_ns - got[-1][1]) // interval_ns, got[-1][1], end_ns))
    return out


def analyse(runs: dict[str, dict], case: Case, cut_ns: int, end_ns: int, interval: float) -> dict:
    """Per direction: datagrams lost around the cut (sent before end_ns), and the round trip."""
    interval_ns = int(interval * 1e9)
    out: dict[str, Any] = {"rerouted": True}
    lost_slots: set[int] = set()     # interval slots (from the cut) in which a datagram was lost, either way
    for receiver, sender in ((case.dst, case.src), (case.src, case.dst)):
        received = runs[receiver]["received"]
        lost = background = 0
        outage_ns = 0
        where = []
        for n, t1, t2 in holes(received, end_ns, interval_ns):
            if t2 <= cut_ns:          # over before the cut: not the cut's doing
                background += n
                continue
            lost += n
            outage_ns += max(0, t2 - t1 - interval_ns)
            for i in range(1, n + 1):    # the lost ones, spread evenly between their neighbours
                lost_slots.add(round((t1 + (t2 - t1) * i / (n + 1) - cut_ns) / interval_ns))
            where.append((n, round((t1 - cut_ns) / 1e6, 1), round((t2 - cut_ns) / 1e6, 1)))
            if t2 == end_ns:
                out["rerouted"] = False
        out[f"{sender}->{receiver}"] = {"lost": lost, "gap_ms": lost * interval * 1e3,
                                        "outage_ms": outage_ns / 1e6, "background_lost": background,
                                        "received": len(received), "holes": where}
    out["round_trip_ms"] = len(lost_slots) * interval * 1e3
    return out


def cut_once(lab: Lab, case: Case, args) -> dict:
    net, ctl = lab.net, lab.controller
    for a, b in ((case.src, case.dst), (case.dst, case.src)):     # neighbours known, the path in place
        if not net.ping(a, b, count=1, timeout=1, retries=5):
            raise RuntimeError(f"{a} does not reach {b} before the cut")
    probes = start_probes(lab, case, args.interval)
    try:
        time.sleep(args.warmup)
        ifnames = {p: lab.ifname(case.switch, p) for p in case.ports}
        before = {p: (lab.counter(i, "tx_packets"), lab.counter(i, "rx_packets")) for p, i in ifnames.items()}
        time.sleep(0.3)
        carried = {p: lab.counter(i, "tx_packets") - before[p][0] for p, i in ifnames.items()}
        returned = {p: lab.counter(i, "rx_packets") - before[p][1] for p, i in ifnames.items()}
        port = max(carried, key=carried.get)
        if carried[port] < 0.3 / args.interval * 0.3:
            raise RuntimeError(f"{case.switch}: no port of {case.ports} carries {case.src}'s datagrams "
                               f"({carried})")
        ifname = ifnames[port]
        cut_wall, cut_ns = time.time(), time.monotonic_ns()
        lab.set_link(ifname, False)
        time.sleep(args.after)
        end_ns = time.monotonic_ns() - 100_000_000      # later datagrams may be in flight when the probes stop
        runs = stop_probes(probes)
    finally:
        for proc in probes.values():
            if proc.poll() is None:
                proc.kill()
    result = analyse(runs, case, cut_ns, end_ns, args.interval)
    result["port"] = port
    result["return_via_cut"] = None
    if len(ifnames) > 1:    # ECMP: did the reverse direction come in over the cut link too?
        result["return_via_cut"] = max(returned, key=returned.get) == port
    down = ctl.grep("link down:", since_wall=cut_wall)
    result["ctl_link_down_ms"] = (down[0][0] - cut_wall) * 1e3 if down else None
    # mend, and wait until LLDP has found the link again
    n_up = len(ctl.grep("link up:", since_wall=cut_wall))
    mend_wall = time.time()
    lab.set_link(ifname, True)
    ctl.wait_for("link up:", n_up + 1, since_wall=cut_wall, timeout=15)
    result["relink_s"] = time.time() - mend_wall
    time.sleep(args.rest)
    return result


# --- arms ---------------------------------------------------------------------------------------

def use_arm(lab: Lab, arm: str, args) -> None:
    """(Re)start the controller for `arm` and wait until the groups are the arm's."""
    ctl = lab.controller
    options = ARMS[arm] + tuple(args.controller_args)
    if ctl.proc is not None and ctl.options == options:
        return
    ctl.stop()
    start_wall = time.time()
    ctl.start(options)
    lab.wait_converged(start_wall, timeout=60)
    time.sleep(args.settle + 1.5)      # the full reconciliation after settling changes the groups
    for case in CASES[lab.topology]:
        deadline = time.monotonic() + 15
        while True:
            groups = lab.dump_groups(case.switch)
            watched = "watch_port" in groups
            if watched == (arm == "fast failover") and "group_id" in groups:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{arm}: groups on {case.switch} are not the arm's:\n{groups}")
            time.sleep(0.5)


def run_topology(topology: str, args, workdir: Path) -> list[dict]:
    lab = Lab(topology, workdir)
    results = []
    print(f"{topology}: up as {lab.name}", file=sys.stderr)
    try:
        lab.up()
        order = list(ARMS)
        for rep in range(args.repeat):
            arms = order if rep % 2 == 0 else order[::-1]     # ABBA: one controller restart per repeat
            for arm in arms:
                for attempt in (1, 2):
                    try:
                        use_arm(lab, arm, args)
                        break
                    except RuntimeError as exc:    # noted in the results; a second controller start, then give up
                        print(f"  {arm}: controller start {attempt} failed: {exc}", file=sys.stderr)
                        results.append(dict(topology=topology, case="(controller start)", arm=arm, repeat=rep,
                                            error=str(exc)))
                        lab.controller.stop()
                        if attempt == 2:
                            raise
                for case in CASES[topology]:
                    try:
                        r = cut_once(lab, case, args)
                    except RuntimeError as exc:     # one bad cut: note it, mend, go on
                        print(f"  {rep + 1}/{args.repeat} {arm:13} {case.label:32} FAILED: {exc}", file=sys.stderr)
                        results.append(dict(topology=topology, case=case.label, arm=arm, repeat=rep,
                                            error=str(exc)))
                        for ifname in list(lab.down_links):
                            lab.set_link(ifname, True, check=False)
                        time.sleep(3)
                        continue
                    r.update(topology=topology, case=case.label, arm=arm, repeat=rep, load=os.getloadavg()[0])
                    results.append(r)
                    print(f"  {rep + 1}/{args.repeat} {arm:13} {case.label:32} round trip "
                          f"{r['round_trip_ms']:7.1f} ms  " + "  ".join(
                              f"{k} {v['gap_ms']:.0f} ms" for k, v in r.items() if isinstance(v, dict))
                          + (f"  ctl {r['ctl_link_down_ms']:.0f} ms" if r["ctl_link_down_ms"] is not None else ""),
                          file=sys.stderr)
    finally:
        lab.close()
    return results


# --- report -------------------------------------------------------------------------------------

def stat(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{statistics.median(values):.1f} / {max(values):.1f}"


def report(results: list[dict], m: dict, args) -> str:
    lines = ["# Fabric: reroute gap on a link cut", ""]
    lines += benchlib.machine_lines(m)
    lines += [f"- command: `{benchlib.command_line()}`",
              f"- datagrams every {args.interval * 1e3:g} ms each way; {args.repeat} cuts per case and arm, "
              f"arms alternating (ABBA)", ""]
    rows = []
    seen = []
    for r in results:
        key = (r["topology"], r["case"], r["arm"])
        if key not in seen:
            seen.append(key)
    for topology, case, arm in seen:
        failed = [r for r in results if (r["topology"], r["case"], r["arm"]) == (topology, case, arm)
                  and "error" in r]
        rs = [r for r in results if (r["topology"], r["case"], r["arm"]) == (topology, case, arm)
              and "error" not in r]
        if not rs:
            rows.append([topology, case, arm, f"0 ({len(failed)} failed)"] + ["-"] * 7)
            continue
        dirs = [k for k, v in rs[0].items() if isinstance(v, dict)]
        row = [topology, case, arm, f"{len(rs)}" + (f" ({len(failed)} failed)" if failed else ""),
               stat([r["round_trip_ms"] for r in rs])]
        for d in dirs:
            row.append(f"{d}: " + stat([r[d]["gap_ms"] for r in rs]))
        row.append(stat([max(r[d]["outage_ms"] for d in dirs) for r in rs]))
        row.append(stat([r["ctl_link_down_ms"] for r in rs]))
        row.append(sum(r[d]["background_lost"] for r in rs for d in dirs))
        row.append(sum(1 for r in rs if not r["rerouted"]))
        rows.append(row)
    lines.append(benchlib.md_table(
        ["topology", "link cut", "arm", "cuts", "round trip gap ms (median / max)", "forward gap ms",
         "reverse gap ms", "outage ms", "ctl ms", "lost before cuts", "not rerouted"], rows, align="lllrrrrrrrr"))
    ecmp = [r for r in results if r.get("return_via_cut") is not None]
    errors = [r for r in results if "error" in r]
    if errors:
        lines += ["", "Failed cuts (not in the figures):"] + [
            f"- {r['topology']} {r['case']} {r['arm']} #{r['repeat'] + 1}: {r['error']}" for r in errors]
    if ecmp:
        lines += ["", f"ECMP cases: the reverse direction came in over the cut link in "
                      f"{sum(1 for r in ecmp if r['return_via_cut'])} of {len(ecmp)} cuts."]
    lines += ["", "gap = datagrams lost x interval (median / max over the cuts); round trip = intervals in which "
              "a datagram was lost either way (what ping every interval would lose); outage = the longer "
              "direction's time between the last datagram before and the first after a loss (send times; an "
              "upper bound when the sender's pacing stalls, which lost x interval does not count); ctl = cut to the controller's `link down` "
              "log line; lost before cuts = datagrams lost in the warm-ups (background loss, all cuts); not rerouted = "
              "cuts after which traffic had not come back by the end (their gap runs to the end).", ""]
    return "\n".join(lines)


MAIN_PID = os.getpid()


def interrupted(sig: int, _frame: Any) -> None:
    """SIGTERM/SIGHUP: unwind, so that everything made is removed on the way out. A child
    forked by a library (pyroute2 forks helpers and stops them with SIGTERM) just dies."""
    if os.getpid() != MAIN_PID:
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        return
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--topology", default="mesh,ring,fattree", help="comma-separated (default mesh,ring,fattree)")
    ap.add_argument("--repeat", type=int, default=10, help="cuts per case and arm (default 10)")
    ap.add_argument("--interval", type=float, default=0.001, help="seconds between datagrams (default 0.001)")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of traffic before the cut (default 1)")
    ap.add_argument("--after", type=float, default=1.5, help="seconds of traffic after the cut (default 1.5)")
    ap.add_argument("--rest", type=float, default=0.5, help="seconds after the link is found again (default 0.5)")
    ap.add_argument("--settle", type=float, default=1.5, help="the controller's --settle (default 1.5)")
    ap.add_argument("--keep", action="store_true", help="keep the controller logs (printed at the end)")
    benchlib.add_output_args(ap, quick="the mesh, one cut per case and arm: a smoke test")
    args = ap.parse_args()
    if args.quick:
        args.topology, args.repeat = "mesh", 1
    args.controller_args = ["--settle", str(args.settle)]
    if os.geteuid() != 0:
        print("reroute.py needs root (namespaces, links, Open vSwitch)", file=sys.stderr)
        return 2
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    m = benchlib.machine(tools=[("ovs-vswitchd", "--version")], code=("src",))
    workdir = Path(tempfile.mkdtemp(prefix="kf-reroute-"))
    results = []
    try:
        for topology in args.topology.split(","):
            results += run_topology(topology, args, workdir)
    finally:
        if args.keep or any("error" in r for r in results) or sys.exc_info()[0] is not None:
            print(f"controller logs in {workdir}", file=sys.stderr)
        else:
            for p in workdir.iterdir():
                p.unlink()
            workdir.rmdir()
    m["load average at the end"] = round(os.getloadavg()[0], 2)
    print(report(results, m, args))
    if args.json:
        benchlib.write_json(args.json, {"machine": m, "args": vars(args), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
