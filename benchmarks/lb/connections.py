#!/usr/bin/env python3
"""New TCP connections through a load balancer: kumoflow's (the controller
picks a member for every connection's first packet and installs its NAT
flows, apps/lb.py) against Open vSwitch's own userspace load balancing (a
select group of ct(nat) buckets, as OVN builds its load balancers), and
kumoflow without balancing (the client straight to one member), in one run.

    sudo .venv/bin/python benchmarks/lb/connections.py
    sudo .venv/bin/python benchmarks/lb/connections.py --quick
    sudo .venv/bin/python benchmarks/lb/connections.py --connections 3000 --parallel 8 --repeat 5

One client VM and three member VMs on one hypervisor; each member runs a
threaded TCP server that answers a line with its own name. The client opens
--connections connections, --parallel at a time, each: connect, send a
line, read the answer, close. Reported: connections per second; the connect
time (SYN to SYN-ACK as the client sees it: what the first packet costs)
and the whole request (connect to close), median and 99th percentile; the
connections that failed; how they spread over the members (from the
answers). The setups take turns, run by run (--repeat runs each; medians).

* ``kumoflow lb, VIP``: an emulated kumoflow hypervisor, the real controller
  with ``--app tenants --app lb``; through /v2/lbaas a load balancer, a TCP
  listener on port 80, a ROUND_ROBIN pool of the three members (port 8080)
  and a TCP health monitor (benchmarks/lb/_lbcloud.py); the client connects
  to the VIP (its ARP answered by the controller).
* ``kumoflow, one member directly``: the same cloud, the client connecting to
  member m1's address and port: what the balancing costs.
* ``Open vSwitch select group + ct(nat)``: an Open vSwitch netdev bridge, no
  controller, the client and three members in namespaces on veths with
  their checksum offloads off. IP is tracked, ``ct(table=1,zone=Z)``; a
  new connection to the VIP's port goes to a select group
  (``selection_method=dp_hash``, OpenFlow 1.5) whose buckets are
  ``ct(commit,table=2,zone=Z,nat(dst=MEMBER:8080))``; established packets
  are translated, both ways, by ``ct(table=2,zone=Z,nat)``: OVN's
  pre-stateful ct_next and ct_lb. Table 2 sets the destination MAC by
  address and, towards the client, the source MAC to the VIP's. The client
  knows the VIP's MAC from a static neighbour entry; other ARP is switched
  NORMAL. Checked before timing: every connection answered, by every member.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))                 # benchmarks/: benchlib
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "firewall"))    # _connections
import benchlib  # noqa: E402

import _connections  # noqa: E402
from _connections import PORT  # noqa: E402
from _lbcloud import MEMBERS, VIP, VIP_PORT, VMS, LbCloud, Monitor  # noqa: E402

REQUIRES = ("root", "ovs")
LB, DIRECT, OVS = "kumoflow lb, VIP", "kumoflow, one member directly", "Open vSwitch select group + ct(nat)"
#: where each setup's connections should go
SPREAD = {LB: MEMBERS, DIRECT: ("m1",), OVS: MEMBERS}
VIP_MAC = "fa:16:3e:31:00:64"
ZONE = 7
#: the lb's health monitor while timing (it is not what is measured)
MONITOR = Monitor("TCP", delay=2, timeout=1, fall=2)
#: the client's source ports, below the kernel's ephemeral range (where the cloud's first connection's comes
#: from): a block per setup, taken in turn, never one port twice in a block until it wraps. The lb's flows of a
#: connection stay for the listener's idle timeout (_lbcloud.IDLE) after it: a new connection from its port
#: to the VIP would take them to the same member without the controller (not a new connection), and one
#: straight to that member would have its answers turned into the VIP's by them (and fail).
PORTS = range(10000, 32768)


def ovs_program(net: _connections.OvsHosts) -> list[str]:
    """The bridge's group and flows (as OVN's ct_lb makes them), and the client's neighbour entry for the
    VIP; returns the group and the flows."""
    buckets = ",".join(f"bucket=bucket_id:{i},weight:100,actions=ct(commit,table=2,zone={ZONE},"
                       f"nat(dst={VMS[m][1]}:{PORT}))" for i, m in enumerate(MEMBERS))
    group = f"group_id=1,type=select,selection_method=dp_hash,{buckets}"
    net.ofctl("add-group", net.bridge, group, version="OpenFlow15")
    client_mac, client_ip = VMS["c"]
    # tracked first without NAT, so that a new connection's retransmitted SYN (still +new, and translated by
    # ct(nat)) is seen to the VIP again and goes through the group (its ct(commit,nat) keeps the entry's
    # translation); established packets are translated by a second ct, both ways: OVN's pre-stateful ct_next,
    # then ct_lb
    flows = ["table=0,priority=100,arp,actions=NORMAL",
             f"table=0,priority=10,ip,actions=ct(table=1,zone={ZONE})",
             f"table=1,priority=100,ct_state=+new+trk,tcp,nw_dst={VIP},tp_dst={VIP_PORT},actions=group:1",
             f"table=1,priority=90,ct_state=+est+trk,ip,actions=ct(table=2,zone={ZONE},nat)",
             "table=1,priority=0,actions=drop",
             f"table=2,priority=10,ip,nw_dst={client_ip},actions=mod_dl_src:{VIP_MAC},mod_dl_dst:{client_mac},"
             f"output:{net.ofport['c']}",
             *(f"table=2,priority=10,ip,nw_dst={VMS[m][1]},actions=mod_dl_dst:{VMS[m][0]},output:{net.ofport[m]}"
               for m in MEMBERS)]
    net.flows(flows)
    _connections.sh("ip", "-n", net.ns["c"], "neigh", "replace", VIP, "lladdr", VIP_MAC, "dev", "eth0",
                    "nud", "permanent")
    return [group, *flows]


class Ports:
    """Source ports for each setup from its own block of PORTS, in turn, never one twice until it wraps."""

    def __init__(self, names: list[str]) -> None:
        self.size = len(PORTS) // len(names)
        self.blocks = {name: PORTS[i * self.size:(i + 1) * self.size] for i, name in enumerate(names)}
        self.cursor = dict.fromkeys(names, 0)

    def take(self, name: str, n: int) -> int:
        """The first of n ports for a setup's connections."""
        if self.cursor[name] + n > self.size:
            self.cursor[name] = 0           # wrapped: the lb app's count of connections balanced tells if it mattered
        self.cursor[name] += n
        return self.blocks[name][self.cursor[name] - n]


def ovs_vswitchd_pid() -> int:
    return int(Path("/var/run/openvswitch/ovs-vswitchd.pid").read_text())


def dp_hash_values(net: _connections.OvsHosts) -> int | None:
    """How many hash values the datapath's dp_hash picks a bucket by (its flows' mask + 1): Open vSwitch
    maps them onto the buckets, in proportion to their weights as near as that many allow."""
    masks = {int(m, 16) for m in re.findall(r"dp_hash\(0x[0-9a-f]+/(0x[0-9a-f]+)\)",
                                             _connections.sh("ovs-appctl", "dpif/dump-flows", net.bridge))}
    return max(masks) + 1 if masks else None


def check(name: str, ns: str, host: str, port: int, ports: Ports) -> dict:
    """Before timing: 30 connections one at a time, every one answered, by every member the setup should
    reach."""
    _connections.wait_answered(ns, host, port, first_port=ports.take(name, 1))
    r = _connections.connect(ns, host, port, 30, 1, ports.take(name, 30))
    if r["failed"] or set(r["answers"]) != set(SPREAD[name]):
        raise RuntimeError(f"{name}: check before timing failed: answers {r['answers']}, errors {r['errors']}")
    return r["answers"]


def spread(name: str, answers: dict[str, int]) -> dict:
    """How a setup's connections spread over the members, and whether that is even where it should be:
    within 10 % of an even share, or 3 standard deviations of a uniform random choice, whichever is more."""
    members = SPREAD[name]
    total = sum(answers.values())
    share = total / len(members)
    tolerance = max(0.1 * share, 3 * math.sqrt(total * (1 / len(members)) * (1 - 1 / len(members))))
    counts = {m: answers.get(m, 0) for m in MEMBERS}
    strays = {m: c for m, c in answers.items() if m not in members}
    even = not strays and all(abs(counts[m] - share) <= tolerance for m in members)
    return {"counts": counts, "strays": strays, "even_share": share, "tolerance": tolerance, "even": even}


def run(args: argparse.Namespace) -> dict:
    hosts = [(vm, *VMS[vm]) for vm in ("c", *MEMBERS)]
    with tempfile.TemporaryDirectory(prefix="lbbench-") as tmp, LbCloud(Path(tmp), MONITOR) as cloud, \
            _connections.ovs_hosts("lbg", hosts, protocols="OpenFlow13,OpenFlow15") as net:
        servers = [_connections.serve(net.ns[m], m) for m in MEMBERS]
        try:
            program = ovs_program(net)
            targets = {LB: (cloud.ns("c"), VIP, VIP_PORT), DIRECT: (cloud.ns("c"), VMS["m1"][1], PORT),
                       OVS: (net.ns["c"], VIP, VIP_PORT)}
            names = list(targets)
            ports = Ports(names)
            checked = {name: check(name, *target, ports) for name, target in targets.items()}
            runs: dict[str, list[dict]] = {name: [] for name in targets}
            kumoflow = {"controller": cloud.controller.pid, "switch": cloud.switch_pid()}
            procs = {LB: kumoflow, DIRECT: kumoflow, OVS: {"switch": ovs_vswitchd_pid()}}
            for i in range(args.repeat):                    # the setups take turns, the order rotating
                for name in names[i % len(names):] + names[:i % len(names)]:
                    balanced = cloud.balanced()
                    cpu = {k: benchlib.cpu_seconds(pid) for k, pid in procs[name].items()}
                    r = _connections.connect(*targets[name], args.connections, args.parallel,
                                             ports.take(name, args.connections))
                    r["cpu_us"] = {k: (benchlib.cpu_seconds(pid) - cpu[k]) / args.connections * 1e6
                                   for k, pid in procs[name].items()}
                    if name == LB:                          # every connection balanced by the controller
                        r["balanced"] = cloud.balanced() - balanced
                    if name == OVS:                         # while its datapath flows are there
                        r["dp_hash_values"] = dp_hash_values(net)
                    runs[name].append(r)
            out = {}
            for name in targets:
                out[name] = _connections.summary(runs[name])
                out[name]["cpu_us"] = {k: statistics.median(r["cpu_us"][k] for r in runs[name])
                                       for k in procs[name]}
                out[name]["spread"] = spread(name, out[name]["answers"])
                out[name]["checked"] = checked[name]
            out[LB]["balanced"] = sum(r["balanced"] for r in runs[LB])
            out[OVS]["program"] = program
            out[OVS]["dp_hash_values"] = max((r["dp_hash_values"] or 0 for r in runs[OVS]), default=0) or None
            return {"setups": out, "monitor": str(MONITOR)}
        finally:
            for server in servers:
                _connections.stop(server)


def ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} ms"


def report(results: dict) -> str:
    setups = results["setups"]
    peer, direct = setups[OVS]["per_second"], setups[DIRECT]["per_second"]
    lines = [benchlib.md_table(
        ["setup", "connections/s", "connect p50", "connect p99", "request p50", "request p99", "failed",
         "connections/s vs OVS select group", "vs kumoflow direct"],
        [[name, benchlib.fmt_rate(r["per_second"]), ms(r["connect_p50_ms"]), ms(r["connect_p99_ms"]),
          ms(r["request_p50_ms"]), ms(r["request_p99_ms"]), r["failed"], benchlib.ratio(r["per_second"], peer),
          benchlib.ratio(r["per_second"], direct)] for name, r in setups.items()]), "",
        "CPU per connection (µs, median of the runs; Open vSwitch: all of ovs-vswitchd, whose other bridges "
        "are idle or another session's):", "",
        benchlib.md_table(["setup", "controller", "switch"],
                          [[name, *(f"{r['cpu_us'][k]:,.0f}" if k in r["cpu_us"] else "-"
                                    for k in ("controller", "switch"))] for name, r in setups.items()]), "",
        "Connections per member (from the members' answers, all runs):", ""]
    rows, warnings = [], []
    for name, r in setups.items():
        s = r["spread"]
        should = "even" if len(SPREAD[name]) > 1 else "all to m1"
        rows.append([name, *(s["counts"][m] for m in MEMBERS), should,
                     f"{s['even_share']:,.0f} ± {s['tolerance']:,.0f}" if len(SPREAD[name]) > 1 else "-",
                     "yes" if s["even"] else "**no**"])
        if not s["even"]:
            elsewhere = f", elsewhere {s['strays']}" if s["strays"] else ""
            warnings.append(f"**Warning**: {name}: the connections did not spread as they should ({should}): "
                            f"{s['counts']}{elsewhere}")
    lines.append(benchlib.md_table(["setup", *MEMBERS, "should be", "even share", "as it should"], rows,
                                   align="lrrrlrl"))
    lb = setups[LB]
    made = sum(lb["answers"].values()) + lb["failed"]
    if lb["balanced"] != made:
        warnings.append(f"**Warning**: {LB}: the lb app balanced {lb['balanced']:,} of the {made:,} connections; "
                        "the others took the flows of an earlier connection from the same port")
    values = setups[OVS].get("dp_hash_values")
    if values:
        n = len(MEMBERS)
        split = ":".join(str(values // n + (i < values % n)) for i in range(n))
        lines += ["", f"{OVS}: the datapath's dp_hash picks the bucket by {values} hash values, which {n} equal "
                  f"buckets share at best {split}: the spread to expect."]
    lines += ["", f"{LB}: the lb app balanced {lb['balanced']:,} of the {made:,} connections timed (its stats)."]
    if warnings:
        lines += ["", *warnings]
    lines += ["", f"kumoflow's health monitor while timing: {results['monitor']}."]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--connections", type=int, default=2000, help="connections per run (default 2000)")
    ap.add_argument("--parallel", type=int, default=4, help="connections opened at a time (default 4)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per setup, taking turns; medians (default 3)")
    benchlib.add_output_args(ap, quick="200 connections, one run per setup: a smoke test")
    args = ap.parse_args()
    if args.quick:
        args.connections, args.repeat = 200, 1
    if args.connections > len(PORTS) // len(SPREAD):
        ap.error(f"--connections: at most {len(PORTS) // len(SPREAD)} (the source ports of a setup)")
    return benchlib.run_main(args, run, report, root="namespaces, Open vSwitch", packages=("httpx",),
                             tools=(("ovs-vswitchd", "--version"),))


if __name__ == "__main__":
    sys.exit(main())
