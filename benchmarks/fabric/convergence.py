#!/usr/bin/env python3
"""Fabric convergence: from controller start to every pair of hosts reachable, and what a controller restart sends.

    sudo .venv/bin/python benchmarks/fabric/convergence.py            # the k=4 fat-tree (20 kumoflow switches), 3 runs
    sudo .venv/bin/python benchmarks/fabric/convergence.py --quick    # the ring (6 OVS bridges), 1 run: a smoke test
    sudo .venv/bin/python benchmarks/fabric/convergence.py --topology ring --repeat 5

Needs root and Open vSwitch (for the ring and mesh). Each run brings the
topology up afresh under a name of its own (switches hold no flows) and
removes it afterwards.

1. Cold start. The network comes up first: its switches (fail mode secure,
   so they forward nothing on their own) retry the controller every second
   at most. Every host knows every other's MAC (static neighbour entries:
   the figure is the fabric's, not Linux's ARP retry timer), and sends a
   UDP datagram to every other host every --poll seconds (_reach.py).
   --wait seconds later the controller starts (`kumoflow controller --app
   fabric`). Reported, from the controller's start: every switch up, every
   link found, every host known (its log), the first datagram of the last
   pair to get one through, and "stable": when the last pair had its last
   loss of more than two datagrams in a row.
2. Restart. --restarts times, the controller is killed (SIGKILL) and a new
   one started at once (logging at debug, which names every message the
   reconciler sends). After --settle (3 s, the default) plus --after
   seconds, the new controller's FLOW_MOD / GROUP_MOD / METER_MOD messages
   are counted (goal 0: nothing changed), with its own summary lines
   ("reconciled: N added, N changed, N deleted", summed), the time until
   every switch was back, and the datagrams lost meanwhile between any pair
   (goal 0).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # benchmarks/: benchlib
sys.path.insert(0, str(Path(__file__).resolve().parent))         # _fabnet
import benchlib  # noqa: E402
from _fabnet import Lab  # noqa: E402

#: what its quick run needs (tests/integration/test_benchmarks.py marks it so)
REQUIRES = ("root", "ovs")
REACH = str(Path(__file__).resolve().parent / "_reach.py")
RECONCILED = re.compile(r"reconciled.*?: (\d+) added, (\d+) changed, (\d+) deleted")
SENT = re.compile(r": reconcile: (\w+)\(")
MAIN_PID = os.getpid()


# --- reachability ---------------------------------------------------------------------------------

def pairs_of(data: dict[str, dict]) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """(source IP, receiver IP) -> [(round, arrival time)] in round order."""
    return {(src, d["self"]): sorted(map(tuple, got)) for d in data.values() for src, got in d["arrivals"].items()}


def cold_figures(pairs: dict, t0: int, until: int) -> dict:
    """First arrival of every pair after t0, and its last loss (a missing round) before `until`."""
    firsts, stables, missing = [], [], []
    late = []
    for pair, got in pairs.items():
        got = [(r, t) for r, t in got if t0 <= t < until]
        if not got:
            missing.append(pair)
            continue
        first = min(t for _, t in got)
        firsts.append(first - t0)
        stable = first
        for (r1, _), (r2, t2) in zip(got, got[1:]):
            if r2 - r1 > 1:
                stable = max(stable, t2)
        stables.append(stable - t0)
        late.append((round((stable - t0) / 1e9, 2), round((first - t0) / 1e9, 2), *pair))
    return {"pairs": len(pairs), "unreachable": [list(p) for p in missing],
            "first_s": max(firsts) / 1e9 if firsts and not missing else None,
            "first_median_s": statistics.median(firsts) / 1e9 if firsts else None,
            "stable_s": max(stables) / 1e9 if stables and not missing else None,
            "latest_pairs": sorted(late, reverse=True)[:8]}


def window_loss(pairs: dict, start: int, end: int, interval_ns: int) -> dict:
    """Datagrams lost between start and end: rounds missing between two that
    arrived (the later one after start, the earlier before end), or after the
    last one that arrived."""
    lost, pairs_hit, where = 0, 0, []
    for pair, got in pairs.items():
        n = 0
        for (r1, t1), (r2, t2) in zip(got, got[1:]):
            if r2 - r1 > 1 and t2 > start and t1 < end:
                n += r2 - r1 - 1
                where.append((*pair, r2 - r1 - 1, round((t1 - start) / 1e6), round((t2 - start) / 1e6)))
        last = max((t for _, t in got if t < end), default=start)
        if end - last > 2.5 * interval_ns:
            n += round((end - last) / interval_ns) - 1
            where.append((*pair, "open", round((last - start) / 1e6)))
        lost += n
        pairs_hit += n > 0
    return {"lost": lost, "pairs_with_loss": pairs_hit, "losses": where[:20]}


# --- one run --------------------------------------------------------------------------------------

def log_milestones(lab: Lab, since_wall: float) -> dict:
    ctl = lab.controller
    n_sw, n_links, n_hosts = len(lab.net.plan.switches), len(lab.switch_links), len(lab.net.hosts)
    out = {}
    for key, text, n in (("switches_s", " up from ", n_sw), ("links_s", "link up:", n_links),
                         ("hosts_s", "fabric: host ", n_hosts)):
        found = ctl.grep(text, since_wall)
        out[key] = (found[n - 1][0] - since_wall) if len(found) >= n else None
    return out


def restart_counts(lines: list[str]) -> dict:
    sent: dict[str, int] = {}
    summary = [0, 0, 0]
    for line in lines:
        m = SENT.search(line)
        if m:
            sent[m.group(1)] = sent.get(m.group(1), 0) + 1
            continue
        m = RECONCILED.search(line)
        if m:
            for i in range(3):
                summary[i] += int(m.group(i + 1))
    mods = sum(n for kind, n in sent.items() if kind in ("FlowMod", "GroupMod", "MeterMod"))
    return {"mods": mods, "messages": sent, "reconciled": summary}


def run_once(topology: str, args, workdir: Path, rep: int) -> dict:
    lab = Lab(topology, workdir)
    print(f"{topology} run {rep + 1}: up as {lab.name}", file=sys.stderr)
    interval_ns = int(args.poll * 1e9)
    result: dict[str, Any] = {"topology": topology, "repeat": rep}
    try:
        t = time.monotonic()
        lab.up()
        result["network_up_s"] = time.monotonic() - t
        lab.static_neighbours()
        hosts = lab.net.hosts
        probes = {}
        for h in hosts:
            peers = ",".join(o.ip for o in hosts if o is not h)
            probes[h.name] = lab.popen_in(h.name, [sys.executable, REACH, "--self", h.ip, "--peers", peers,
                                                   "--interval", str(args.poll)])
        time.sleep(args.wait)
        ctl = lab.controller
        t0_wall, t0 = time.time(), time.monotonic_ns()
        ctl.start(("--settle", str(args.settle)))
        lab.wait_converged(t0_wall, timeout=90)
        ctl.wait_for("fabric: host ", len(hosts), t0_wall, timeout=90)
        time.sleep(max(0.0, args.observe - (time.monotonic_ns() - t0) / 1e9))
        result["cold"] = log_milestones(lab, t0_wall)
        cold_end = time.monotonic_ns()
        restarts = []
        for i in range(args.restarts):
            kill_wall, kill_ns = time.time(), time.monotonic_ns()
            ctl.stop(signal.SIGKILL)
            ctl.start(("--settle", str(args.settle)), log_level="debug")
            ctl.wait_for(" up from ", len(lab.net.plan.switches), kill_wall, timeout=60)
            time.sleep(args.settle + args.after)
            r = restart_counts(ctl.lines())
            r.update(log_milestones(lab, kill_wall))
            r["start_ns"], r["end_ns"] = kill_ns, time.monotonic_ns()
            restarts.append(r)
            print(f"  restart {i + 1}: {r['mods']} flow/group/meter mods, reconciled {r['reconciled']}, "
                  f"switches back in {r['switches_s']:.2f} s", file=sys.stderr)
        data = {}
        for name, proc in probes.items():
            proc.send_signal(signal.SIGTERM)
        for name, proc in probes.items():
            out, err = proc.communicate(timeout=30)
            if proc.returncode != 0 or not out.strip():
                raise RuntimeError(f"reach probe in {name} failed: {err.strip()[-300:]}")
            data[name] = json.loads(out)
        matrix = lab.net.ping_all(timeout=1, retries=2)
        result["ping_all_ok"] = matrix.ok
    finally:
        lab.close()
    pairs = pairs_of(data)
    result["cold"].update(cold_figures(pairs, t0, cold_end))
    for r in restarts:
        r.update(window_loss(pairs, r["start_ns"], r["end_ns"], interval_ns))
    result["restarts"] = restarts
    c = result["cold"]
    print(f"  cold: switches {c['switches_s']:.2f} s, links {c['links_s']:.2f} s, hosts {c['hosts_s']:.2f} s, "
          f"all pairs {c['first_s']} s, stable {c['stable_s']} s", file=sys.stderr)
    return result


# --- report ---------------------------------------------------------------------------------------

def fmt(v: Any, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def median_max(values: list, digits: int = 2) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{statistics.median(values):.{digits}f} / {max(values):.{digits}f}"


def report(results: list[dict], m: dict, args) -> str:
    lines = ["# Fabric: convergence and controller restart", ""]
    lines += benchlib.machine_lines(m)
    lines += [f"- command: `{benchlib.command_line()}`",
              f"- topology: {args.topology}; every host sends to every other every {args.poll * 1e3:g} ms; "
              f"controller --settle {args.settle:g}", ""]
    lines += ["## Cold start: seconds from the controller's start (median / max of "
              f"{len(results)} runs)", ""]
    cold = [r["cold"] for r in results]
    rows = [["every switch up", median_max([c["switches_s"] for c in cold])],
            ["every link found (LLDP)", median_max([c["links_s"] for c in cold])],
            ["every host known", median_max([c["hosts_s"] for c in cold])],
            ["every pair: first datagram through", median_max([c["first_s"] for c in cold])],
            ["every pair: no more loss (stable)", median_max([c["stable_s"] for c in cold])],
            ["pairs never reached", max(len(c["unreachable"]) for c in cold)],
            ["network up before (s, not counted)", median_max([r["network_up_s"] for r in results], 1)]]
    lines.append(benchlib.md_table(["milestone", "s"], rows))
    restarts = [x for r in results for x in r["restarts"]]
    if restarts:
        lines += ["", f"## Controller restart (SIGKILL, start at once): {len(restarts)} restarts", ""]
        rows = []
        for i, x in enumerate(restarts):
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(x["messages"].items())) or "none"
            rows.append([i + 1, x["mods"], "/".join(map(str, x["reconciled"])), kinds, fmt(x["switches_s"]),
                         fmt(x["links_s"]), x["lost"], x["pairs_with_loss"]])
        lines.append(benchlib.md_table(["restart", "flow/group/meter mods", "reconciled added/changed/deleted",
                                        "messages from the reconciler", "switches back s", "links back s",
                                        "datagrams lost", "pairs with loss"], rows))
    lines += ["", f"ping_all after the restarts: {'ok' if all(r['ping_all_ok'] for r in results) else 'FAILED'} "
              f"in {sum(r['ping_all_ok'] for r in results)} of {len(results)} runs.", ""]
    return "\n".join(lines)


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
    ap.add_argument("--topology", default="fattree", help="an example: fattree (default), ring or mesh")
    ap.add_argument("--repeat", type=int, default=3, help="runs, each on a fresh network (default 3)")
    ap.add_argument("--restarts", type=int, default=2, help="controller restarts per run (default 2)")
    ap.add_argument("--poll", type=float, default=0.1,
                    help="seconds between a host's datagrams to each other host (default 0.1)")
    ap.add_argument("--wait", type=float, default=3.0,
                    help="seconds between the network up and the controller start (default 3)")
    ap.add_argument("--observe", type=float, default=15.0,
                    help="seconds from the controller start to the first restart (default 15)")
    ap.add_argument("--settle", type=float, default=3.0, help="the controller's --settle (default 3)")
    ap.add_argument("--after", type=float, default=4.0,
                    help="seconds after a restart's settle time before counting (default 4)")
    ap.add_argument("--keep", action="store_true", help="keep the controller logs")
    benchlib.add_output_args(ap, quick="the ring, 1 run, 1 restart: a smoke test")
    args = ap.parse_args()
    if args.quick:
        args.topology, args.repeat, args.restarts, args.observe, args.wait = "ring", 1, 1, 8.0, 1.0
    if os.geteuid() != 0:
        print("convergence.py needs root (namespaces, links, switches)", file=sys.stderr)
        return 2
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    m = benchlib.machine(tools=[("ovs-vswitchd", "--version")], code=("src",))
    workdir = Path(tempfile.mkdtemp(prefix="kf-convergence-"))
    results, errors = [], []
    try:
        for rep in range(args.repeat):
            try:
                results.append(run_once(args.topology, args, workdir, rep))
            except RuntimeError as exc:      # one bad run: note it, go on with a fresh network
                print(f"run {rep + 1} FAILED: {exc}", file=sys.stderr)
                errors.append(f"run {rep + 1}: {exc}")
    finally:
        if args.keep or errors or sys.exc_info()[0] is not None:
            print(f"controller logs in {workdir}", file=sys.stderr)
        else:
            for p in workdir.iterdir():
                p.unlink()
            workdir.rmdir()
    m["load average at the end"] = round(os.getloadavg()[0], 2)
    if not results:
        print("every run failed:\n" + "\n".join(errors), file=sys.stderr)
        return 1
    print(report(results, m, args) + "".join(f"\nFailed (not in the figures): {e}" for e in errors))
    if args.json:
        benchlib.write_json(args.json, {"machine": m, "args": vars(args), "results": results, "errors": errors})
    return 0


if __name__ == "__main__":
    sys.exit(main())
