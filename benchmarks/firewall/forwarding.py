#!/usr/bin/env python3
"""Forwarding of established traffic through kumoflow's firewall with 10,000
rules installed, against the same with no rules (the goal: at least 0.9x),
in one run.

    sudo .venv/bin/python benchmarks/firewall/forwarding.py
    sudo .venv/bin/python benchmarks/firewall/forwarding.py --quick
    sudo .venv/bin/python benchmarks/firewall/forwarding.py --rules 10000,50000 --seconds 10 --repeat 3

Two VMs on an emulated kumoflow hypervisor, the real controller with
``--app tenants --app firewall`` (benchmarks/firewall/connections.py's
set-up). The server's port is in a firewall group whose ingress policy holds
--rules rules: denies of TCP from distinct /24s the client is not in, in
front of an allow for the client; ``0 rules``: port security off and no
group (nothing filters). iperf3 TCP from the client for --seconds, median
of --repeat. (A 64-byte UDP stream at full rate starves iperf3's own
control connection on this path: not measured.)
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))                 # benchmarks/: benchlib
import benchlib  # noqa: E402

_spec = importlib.util.spec_from_file_location("connections", Path(__file__).with_name("connections.py"))
connections = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(connections)

REQUIRES = ("root", "ovs")


def deny_rules(count: int) -> list[dict]:
    """`count` denies of TCP from distinct /24s of 100.64.0.0/10 (never the client's 10.30.0.0/24)."""
    base = int(ipaddress.IPv4Address("100.64.0.0"))
    return [{"protocol": "tcp", "source_ip_address": f"{ipaddress.IPv4Address(base + (i << 8))}/24",
             "action": "deny"} for i in range(count)]


def guard(cloud, server_port: str, count: int) -> int:
    """The server's port in a firewall group whose ingress policy has `count` rules and an allow."""
    ids = []
    bodies = deny_rules(count - 1) + [{"protocol": "tcp", "action": "allow"}] if count else []
    for start in range(0, len(bodies), 1000):
        made = cloud.post("/v2.0/fwaas/firewall_rules", {"firewall_rules": bodies[start:start + 1000]})
        ids += [r["id"] for r in made["firewall_rules"]]
    if not ids:
        return 0
    policy = cloud.post("/v2.0/fwaas/firewall_policies", {"firewall_policy": {"firewall_rules": ids}})
    cloud.post("/v2.0/fwaas/firewall_groups", {"firewall_group": {
        "ingress_firewall_policy_id": policy["firewall_policy"]["id"], "ports": [server_port]}})
    return len(ids)


def flows_in(cloud, dpid: int, table: int) -> int:
    return sum(1 for f in cloud.call("GET", f"/sdn/switches/{dpid}/flows")["flows"] if f["table"] == table)


def iperf(client: str, server_ip: str, seconds: float) -> float:
    """TCP bits per second delivered."""
    argv = ["iperf3", "-c", server_ip, "-t", str(seconds), "-J"]
    out = json.loads(subprocess.run(["ip", "netns", "exec", client, *argv], capture_output=True, text=True,
                                    timeout=seconds + 60).stdout)
    if "error" in out:
        raise RuntimeError(f"iperf3 {' '.join(argv[1:])}: {out['error']}")
    return out["end"]["sum_received"]["bits_per_second"]


def setup(args: argparse.Namespace, tmp: Path, count: int):
    """A running cloud with the server guarded by `count` rules: (cloud, net, rules installed in to_port)."""
    from kumoflow.net import Network
    from kumoflow.net.binding import bind_ports
    import secrets

    cloud = connections.Controller(tmp, apps=("tenants", "firewall")).start()
    try:
        network = cloud.post("/v2.0/networks", {"network": {"name": "fw", "provider:network_type": "vxlan"}})
        subnet = cloud.post("/v2.0/subnets", {"subnet": {"network_id": network["network"]["id"],
                                                         "cidr": "10.30.0.0/24", "ip_version": 4,
                                                         "gateway_ip": "10.30.0.254"}})["subnet"]
        ports = {}
        for name, mac, ip in (connections.CLIENT, connections.SERVER):
            ports[name] = cloud.post("/v2.0/ports", {"port": {
                "name": name, "network_id": network["network"]["id"], "mac_address": mac,
                "fixed_ips": [{"subnet_id": subnet["id"], "ip_address": ip}], "security_groups": [],
                "port_security_enabled": False}})["port"]["id"]
        guard(cloud, ports["s"], count)
        topo = tmp / "topo.yaml"
        topo.write_text(connections.topology(f"ff{secrets.token_hex(2)}", 100 + secrets.randbelow(100)))
        net = Network.from_file(topo, controllers=[cloud.listen])
        net.up()
        net.wait_connected(60)
        list(bind_ports(net.plan, cloud.url, "bench-admin-token"))
        dpid = next(s.dpid for s in net.plan.switches if s.name.endswith("hv1"))
        deadline = time.monotonic() + 120
        while count and flows_in(cloud, dpid, 38) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} rules: only {flows_in(cloud, dpid, 38)} flows in to_port after 120 s")
            time.sleep(1)
        return cloud, net, flows_in(cloud, dpid, 38)
    except BaseException:
        cloud.stop()
        raise


def run(args: argparse.Namespace) -> dict:
    counts = [0] + [int(c) for c in args.rules.split(",") if c]
    results = {}
    with tempfile.TemporaryDirectory(prefix="fwfwd-") as tmp:
        for count in counts:
            (Path(tmp) / str(count)).mkdir()
            cloud, net, installed = setup(args, Path(tmp) / str(count), count)
            server = subprocess.Popen(["ip", "netns", "exec", net.host("s").netns, "iperf3", "-s"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(1)
                client = net.host("c").netns
                tcp = []
                for _ in range(args.repeat):
                    tcp.append(iperf(client, connections.SERVER[2], args.seconds))
                    time.sleep(0.5)       # the server ready for the next test
                results[count] = {"flows_in_to_port": installed, "tcp_bps": statistics.median(tcp), "tcp_runs": tcp}
            finally:
                server.kill()
                server.wait()
                net.down()
                cloud.stop()
    return {"by_rules": results}


def report(results: dict) -> str:
    by = results["by_rules"]
    base = by.get(0) or by.get("0")
    lines = ["| rules | flows in to_port | TCP | vs no rules |", "|---:|---:|---:|---:|"]
    for count, r in by.items():
        lines.append(f"| {int(count):,} | {r['flows_in_to_port']:,} | {r['tcp_bps'] / 1e9:.2f} Gbit/s | "
                     f"{benchlib.ratio(r['tcp_bps'], base['tcp_bps'])} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rules", default="10000", help="policy sizes besides none, comma-separated (default 10000)")
    ap.add_argument("--seconds", type=float, default=5, help="of each iperf3 run (default 5)")
    ap.add_argument("--repeat", type=int, default=3, help="iperf3 runs per setup and kind; medians (default 3)")
    benchlib.add_output_args(ap, quick="100 rules, 1-second runs, one each: a smoke test")
    args = ap.parse_args()
    if args.quick:
        args.rules, args.seconds, args.repeat = "100", 1, 1
    return benchlib.run_main(args, run, report, root="namespaces, Open vSwitch", packages=("httpx",),
                             tools=(("iperf3", "--version"),))


if __name__ == "__main__":
    sys.exit(main())
