#!/usr/bin/env python3
"""New TCP connections through a stateful firewall: kumoflow's (the controller
decides every connection's first packet, firewall.py) against Open vSwitch's
own userspace conntrack (``ct()`` flows on a netdev bridge), and kumoflow with
no firewall, in one run.

    sudo .venv/bin/python benchmarks/firewall/connections.py
    sudo .venv/bin/python benchmarks/firewall/connections.py --quick
    sudo .venv/bin/python benchmarks/firewall/connections.py --connections 3000 --parallel 8

Two VMs on one hypervisor, a client and a server (a threaded TCP server that
answers one line). The client opens --connections connections, --parallel at
a time, each: connect, send a line, read the answer, close. Reported:
connections per second, and the connect time (SYN to SYN-ACK seen by the
client: what the first packet costs) median and 99th percentile.

* ``kumoflow firewall``: an emulated kumoflow hypervisor, the real controller
  with ``--app tenants --app firewall``; the server's security group lets in
  the port from the client's group, the client's lets anything out: both ends
  guarded, so every connection is two first packets at the controller
  (egress at the client, ingress at the server).
* ``kumoflow, no firewall``: the same with port security off on both ports.
* ``Open vSwitch conntrack``: an Open vSwitch netdev bridge, no controller:
  ``ct(table=1)``, then new connections from the client to the port
  committed, established ones passed, everything else dropped; ARP flooded.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))                 # benchmarks/: benchlib
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tenants"))     # _cloud
import benchlib  # noqa: E402

benchlib.use_src()

import _connections  # noqa: E402  (benchmarks/firewall/_connections.py: the client, the server, OVS hosts)
from _cloud import Controller  # noqa: E402
from _connections import PORT  # noqa: E402

REQUIRES = ("root", "ovs")
CLIENT, SERVER = ("c", "fa:16:3e:30:00:01", "10.30.0.1"), ("s", "fa:16:3e:30:00:02", "10.30.0.2")


def topology(name: str, net: int) -> str:
    hosts = "\n".join(f'  - {{name: {n}, mac: "{mac}", ip: {ip}/24, port: {n}}}' for n, mac, ip in (CLIENT, SERVER))
    return f"""name: {name}
underlay: {{subnet: 198.18.{net}.0/24}}
hypervisors:
  - {{name: hv1, kind: kumoflow, vtep: 198.18.{net}.11}}
  - {{name: hv2, kind: kumoflow, vtep: 198.18.{net}.12}}
overlays:
  - {{name: t, type: vxlan}}
hosts:
{hosts}
links:
  - {{src: c, dst: hv1, dst_port: 1}}
  - {{src: s, dst: hv1, dst_port: 2}}
"""


def measure(client_ns: str, server_ns: str, args: argparse.Namespace) -> dict:
    server = _connections.serve(server_ns)
    try:
        _connections.wait_answered(client_ns, SERVER[2])
        return _connections.summary([_connections.connect(client_ns, SERVER[2], PORT, args.connections,
                                                          args.parallel) for _ in range(args.repeat)])
    finally:
        _connections.stop(server)


def kumoflow(args: argparse.Namespace, tmp: Path, firewall: bool) -> dict:
    from kumoflow.net import Network
    from kumoflow.net.binding import bind_ports

    cloud = Controller(tmp, apps=("tenants", "firewall")).start()
    net = None
    try:
        network = cloud.post("/v2.0/networks", {"network": {"name": "fw", "provider:network_type": "vxlan"}})
        subnet = cloud.post("/v2.0/subnets", {"subnet": {"network_id": network["network"]["id"],
                                                         "cidr": "10.30.0.0/24", "ip_version": 4,
                                                         "gateway_ip": "10.30.0.254"}})["subnet"]
        groups = {}
        for name in ("clients", "servers"):
            groups[name] = cloud.post("/v2.0/security-groups", {"security_group": {"name": name}})["security_group"]
        cloud.post("/v2.0/security-group-rules", {"security_group_rule": {
            "security_group_id": groups["servers"]["id"], "direction": "ingress", "protocol": "tcp",
            "port_range_min": PORT, "port_range_max": PORT, "remote_group_id": groups["clients"]["id"]}})
        for (name, mac, ip), group in ((CLIENT, "clients"), (SERVER, "servers")):
            body = {"name": name, "network_id": network["network"]["id"], "mac_address": mac,
                    "fixed_ips": [{"subnet_id": subnet["id"], "ip_address": ip}]}
            body.update({"security_groups": [groups[group]["id"]]} if firewall else
                        {"security_groups": [], "port_security_enabled": False})
            cloud.post("/v2.0/ports", {"port": body})
        topo = tmp / "topo.yaml"
        topo.write_text(topology(f"fc{secrets.token_hex(2)}", 100 + secrets.randbelow(100)))
        net = Network.from_file(topo, controllers=[cloud.listen])
        net.up()
        net.wait_connected(60)
        list(bind_ports(net.plan, cloud.url, "bench-admin-token"))
        return measure(net.host("c").netns, net.host("s").netns, args)
    finally:
        if net is not None:
            net.down()
        cloud.stop()


def ovs(args: argparse.Namespace) -> dict:
    with _connections.ovs_hosts("fwct", (CLIENT, SERVER)) as net:
        net.flows(["table=0,priority=10,arp,actions=NORMAL",
                   "table=0,priority=10,ip,actions=ct(table=1)",
                   f"table=1,priority=10,ct_state=+trk+new,tcp,in_port=1,tp_dst={PORT},actions=ct(commit),NORMAL",
                   "table=1,priority=10,ct_state=+trk+est,actions=NORMAL",
                   "table=1,priority=1,actions=drop"])
        return measure(net.ns["c"], net.ns["s"], args)


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="fwbench-") as tmp:
        tmp = Path(tmp)
        (tmp / "fw").mkdir()
        (tmp / "open").mkdir()
        return {"kumoflow firewall": kumoflow(args, tmp / "fw", True),
                "kumoflow, no firewall": kumoflow(args, tmp / "open", False),
                "Open vSwitch conntrack": ovs(args)}


def report(results: dict) -> str:
    peer = results["Open vSwitch conntrack"]
    lines = ["| setup | connections/s | connect p50 | connect p99 | failed | connections/s vs OVS conntrack |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['per_second']:,.0f} | {r['connect_p50_ms']:.2f} ms | {r['connect_p99_ms']:.2f} ms "
                     f"| {r['failed']} | {benchlib.ratio(r['per_second'], peer['per_second'])} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--connections", type=int, default=2000, help="connections per run (default 2000)")
    ap.add_argument("--parallel", type=int, default=4, help="connections opened at a time (default 4)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per setup; medians reported (default 3)")
    benchlib.add_output_args(ap, quick="200 connections, one run per setup: a smoke test")
    args = ap.parse_args()
    if args.quick:
        args.connections, args.repeat = 200, 1
    return benchlib.run_main(args, run, report, root="namespaces, Open vSwitch", packages=("httpx",),
                             tools=(("ovs-vswitchd", "--version"),))


if __name__ == "__main__":
    sys.exit(main())
