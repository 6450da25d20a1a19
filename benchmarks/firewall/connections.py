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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))                 # benchmarks/: benchlib
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tenants"))     # _cloud, overlay
import benchlib  # noqa: E402

benchlib.use_src()

from _cloud import Controller  # noqa: E402
from overlay import sh  # noqa: E402

REQUIRES = ("root", "ovs")
PORT = 8080
CLIENT, SERVER = ("c", "fa:16:3e:30:00:01", "10.30.0.1"), ("s", "fa:16:3e:30:00:02", "10.30.0.2")

SERVE = """\
import socketserver
class Answer(socketserver.StreamRequestHandler):
    def handle(self):
        self.rfile.readline()
        self.wfile.write(b"ok\\n")
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.request_queue_size = 1024
socketserver.ThreadingTCPServer(("0.0.0.0", %d), Answer).serve_forever()
""" % PORT

#: the client: N connections, P at a time; prints the wall time and each connect time (ms)
CONNECT = """\
import socket, sys, time, threading
host, port, n, parallel = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
times, failed, lock, left = [], [0], threading.Lock(), [n]
def worker():
    while True:
        with lock:
            if not left[0]:
                return
            left[0] -= 1
        s = socket.socket()
        s.settimeout(5)
        t0 = time.perf_counter()
        try:
            s.connect((host, port))
            t1 = time.perf_counter()
            s.sendall(b"hi\\n")
            s.recv(16)
            times.append((t1 - t0) * 1e3)
        except OSError:
            failed[0] += 1
        finally:
            s.close()
start = time.perf_counter()
threads = [threading.Thread(target=worker) for _ in range(parallel)]
for t in threads: t.start()
for t in threads: t.join()
print(time.perf_counter() - start, failed[0], *times)
"""


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
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, sys.executable, "-c", SERVE],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60          # the server listening, the path there set up
        while int(sh("ip", "netns", "exec", client_ns, sys.executable, "-c", CONNECT, SERVER[2], str(PORT), "1", "1",
                     timeout=60).split()[1]):
            if time.monotonic() > deadline:
                raise RuntimeError("the client does not reach the server")
            time.sleep(0.5)
        runs = []
        for _ in range(args.repeat):
            out = sh("ip", "netns", "exec", client_ns, sys.executable, "-c", CONNECT, SERVER[2], str(PORT),
                     str(args.connections), str(args.parallel), timeout=600).split()
            wall, failed, times = float(out[0]), int(out[1]), sorted(float(t) for t in out[2:])
            runs.append({"per_second": len(times) / wall, "failed": failed,
                         "connect_p50_ms": statistics.median(times) if times else None,
                         "connect_p99_ms": times[int(len(times) * 0.99) - 1] if times else None})
        return {"runs": runs, **{k: statistics.median(r[k] for r in runs if r[k] is not None)
                                 for k in ("per_second", "connect_p50_ms", "connect_p99_ms")},
                "failed": sum(r["failed"] for r in runs)}
    finally:
        server.kill()
        server.wait()


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
    tag = secrets.token_hex(2)
    bridge, made = f"fwct{tag}", []
    try:
        sh("ovs-vsctl", "--timeout=10", "add-br", bridge, "--", "set", "Bridge", bridge, "datapath_type=netdev",
           "fail-mode=secure", "protocols=OpenFlow13")
        for n, (name, mac, ip) in enumerate((CLIENT, SERVER), start=1):
            ns, outer = f"fwct{tag}{name}", f"fwct{tag}{name}o"
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns)
            for cmd in (["link", "set", "eth0", "address", mac], ["addr", "add", f"{ip}/24", "dev", "eth0"],
                        ["link", "set", "eth0", "up"], ["link", "set", "lo", "up"]):
                sh("ip", "-n", ns, *cmd)
            sh("ip", "link", "set", outer, "up")
            # checksums left to the "NIC" reach the userspace datapath unfilled; its conntrack then calls
            # every segment invalid (../shared/notes/overlays.md: offloads off on veths to a netdev bridge)
            sh("ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off", "rx", "off", "tso", "off", "gso", "off",
               check=False)
            sh("ethtool", "-K", outer, "tx", "off", "rx", "off", "tso", "off", "gso", "off", check=False)
            sh("ovs-vsctl", "add-port", bridge, outer, "--", "set", "interface", outer, f"ofport_request={n}")
        flows = ["table=0,priority=10,arp,actions=NORMAL",
                 "table=0,priority=10,ip,actions=ct(table=1)",
                 f"table=1,priority=10,ct_state=+trk+new,tcp,in_port=1,tp_dst={PORT},actions=ct(commit),NORMAL",
                 "table=1,priority=10,ct_state=+trk+est,actions=NORMAL",
                 "table=1,priority=1,actions=drop"]
        for flow in flows:
            sh("ovs-ofctl", "-O", "OpenFlow13", "add-flow", bridge, flow)
        return measure(f"fwct{tag}c", f"fwct{tag}s", args)
    finally:
        sh("ovs-vsctl", "--if-exists", "del-br", bridge, check=False)
        for ns in made:
            sh("ip", "netns", "del", ns, check=False)


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
