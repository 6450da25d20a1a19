#!/usr/bin/env python3
"""Compile cost of a country set in the `firewall` app: N country-like CIDRs in
an address group, used by a security group rule (remote_address_group_id) and
by a firewall policy's deny rule (source_address_group_id) of one guarded port.

    .venv/bin/python benchmarks/firewall/compile_cost.py                 # 1,000 and 10,000 CIDRs
    .venv/bin/python benchmarks/firewall/compile_cost.py --quick         # 1,000 only, one repeat
    .venv/bin/python benchmarks/firewall/compile_cost.py --counts 10000,50000 --repeat 5

In memory, no switch: the desired state as records, the model built
(`acl.build`: address groups parsed and aggregated, rules read) and the
port's flows compiled (`FirewallApp._compile_port`) -- what a change of the
address group costs the controller before anything is sent. Against the same
compile without aggregation (each CIDR a flow, as a controller that does not
merge prefixes would install them): the flow counts and their ratio. The
CIDRs are benchmarks/firewall/_aggregate.py's country-like allocations
(runs of /16../24 inside a few /8s). Best of --repeat, CPU time.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # benchmarks/: benchlib
import benchlib  # noqa: E402

benchlib.use_src()

from kumoflow.apps import acl, addresses  # noqa: E402
from kumoflow.apps.firewall import FirewallApp  # noqa: E402
from kumoflow.store import Record  # noqa: E402

_spec = importlib.util.spec_from_file_location("_aggregate", Path(__file__).with_name("_aggregate.py"))
_aggregate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_aggregate)


class State:
    """The records of the desired state, as the controller's mirror serves them."""

    def __init__(self, records: list[Record]) -> None:
        self.by_kind: dict[str, list[Record]] = {}
        for r in records:
            self.by_kind.setdefault(r.kind, []).append(r)

    def all(self, kind: str) -> list[Record]:
        return self.by_kind.get(kind, [])


class Switch:
    """What place_of asks of a switch: up, its id, its ports."""

    def __init__(self, dpid: int) -> None:
        self.id, self.is_up = dpid, True
        self.ports = {1: mock.Mock(port_no=1, name="vm1")}


def record(kind: str, n: int, **body) -> Record:
    return Record(kind, f"{kind}-{n}", "p1", n, f"2026-12-08T00:00:{n % 60:02d}Z", "2026-12-08T00:00:00Z", body)


def state(cidrs: list[str]) -> State:
    group = record("address_group", 1, addresses=cidrs)
    sg = record("security_group", 2, stateful=True)
    rules = [record("security_group_rule", 3, security_group_id=sg.id, direction="ingress", ethertype="IPv4",
                    protocol="tcp", port_range_min=443, port_range_max=443, remote_address_group_id=group.id),
             record("security_group_rule", 4, security_group_id=sg.id, direction="egress", ethertype="IPv4")]
    deny = record("firewall_rule", 5, ip_version=4, protocol="tcp", source_address_group_id=group.id,
                  action="deny", enabled=True)
    allow = record("firewall_rule", 6, ip_version=4, action="allow", enabled=True)
    policy = record("firewall_policy", 7, firewall_rules=[deny.id, allow.id])
    port = record("port", 8, network_id="net", mac_address="fa:16:3e:00:00:01", security_groups=[sg.id],
                  fixed_ips=[{"ip_address": "10.0.0.1"}], **{"binding:host_id": "0x1",
                                                             "binding:profile": {"port_no": 1}})
    fw_group = record("firewall_group", 9, ingress_firewall_policy_id=policy.id, egress_firewall_policy_id=None,
                      ports=[port.id], admin_state_up=True)
    return State([group, sg, *rules, deny, allow, policy, port, fw_group])


def best(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.process_time()
        result = fn()
        times.append(time.process_time() - start)
    return min(times), result


def measure(count: int, repeat: int, seed: int) -> dict:
    cidrs = _aggregate.country_like(count, seed)
    app = FirewallApp()
    app.function = 6
    switches = {1: Switch(1)}
    desired = state(cidrs)
    build_s, model = best(lambda: acl.build(desired, switches), repeat)
    [port] = model.ports.values()
    compile_s, flows = best(lambda: app._compile_port(port), repeat)
    with mock.patch.object(addresses, "aggregate", lambda nets: list(nets)):     # the same, unmerged
        plain_build_s, plain = best(lambda: acl.build(desired, switches), repeat)
        [plain_port] = plain.ports.values()
        plain_compile_s, plain_flows = best(lambda: app._compile_port(plain_port), repeat)
    return {"cidrs": count, "prefixes": len(addresses.aggregate(addresses.parse_list(cidrs))),
            "flows": len(flows), "build_s": build_s, "compile_s": compile_s,
            "unmerged_flows": len(plain_flows), "unmerged_build_s": plain_build_s,
            "unmerged_compile_s": plain_compile_s}


def run(args: argparse.Namespace) -> dict:
    counts = [int(c) for c in args.counts.split(",") if c]
    return {"sizes": [measure(n, args.repeat, args.seed) for n in counts]}


def report(results: dict) -> str:
    lines = ["| CIDRs | prefixes after merging | flows of the port | build | compile | flows unmerged | "
             "compile unmerged | flows: merged / unmerged |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["sizes"]:
        lines.append(f"| {r['cidrs']:,} | {r['prefixes']:,} | {r['flows']:,} | {r['build_s'] * 1e3:,.0f} ms | "
                     f"{r['compile_s'] * 1e3:,.0f} ms | {r['unmerged_flows']:,} | "
                     f"{r['unmerged_compile_s'] * 1e3:,.0f} ms | {benchlib.ratio(r['flows'], r['unmerged_flows'])} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--counts", default="1000,10000", help="address group sizes, comma-separated (default 1000,10000)")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many builds and compiles (default 3)")
    ap.add_argument("--seed", type=int, default=16, help="of the CIDRs (default 16)")
    benchlib.add_output_args(ap, quick="1,000 CIDRs, one repeat: a smoke test")
    args = ap.parse_args()
    if args.quick:
        args.counts, args.repeat = "1000", 1
    return benchlib.run_main(args, run, report)


if __name__ == "__main__":
    sys.exit(main())
