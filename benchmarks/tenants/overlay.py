#!/usr/bin/env python3
"""VM to VM across two emulated hypervisors over VXLAN and NVGRE: kumoflow's
tunnel ports against Open vSwitch's userspace vxlan/gre ports, in one run.

Each endpoint (kumoflow, ovs) and tunnel type (vxlan, nvgre) gets two
hypervisors, each with one VM (a namespace, MTU 1450), joined by an
underlay that is a Linux bridge in a namespace (one veth per hypervisor):

* ovs: the emulator (kumoflow.net) with two ``kind: ovs`` hypervisors on a
  switched underlay: two netdev bridges each (notes/overlays.md), tunnel
  ports ``options:key=flow``;
* kumoflow: each hypervisor a namespace holding its underlay NIC and a
  ``kumoflow switch --port 1=VM --tunnel 10=KIND:LOCAL:REMOTE`` process (the
  switch's sockets on the hypervisor's own stack, as on a real host).

Both get the same two flows per hypervisor (ovs-ofctl): from the VM, set the
tunnel id (VNI 5001; NVGRE: the GRE key 5001 << 8) and out of the tunnel;
from the tunnel with that tunnel id, to the VM. Measured, side by side:

* 64-byte packet rate: iperf3 UDP with 18-byte payloads (60-byte frames,
  64 on a wire with the FCS) sent as fast as iperf3 can for `--seconds`;
  the rate the receiving VM got (the sender alone is the ceiling: it is
  reported too, as sent);
* TCP: iperf3, one stream, `--seconds`, the receiver's bit rate;
* RTT: 100 pings 10 ms apart, the mean.

Each figure is the median of `--repeat` runs, the endpoints interleaved
run by run. Every veth has its offloads off, as in notes/overlays.md;
`--vm-tso` turns TSO (and the checksum and scatter-gather offloads it
needs) back on for the hypervisor's end of each kumoflow VM's veth, as a
virtio-net backend would offer it: the kumoflow switch then hands the VM
joined TCP segments whole (docs/overlays.md). Open vSwitch's userspace
ports cannot use it, so its side is unchanged. Usage (root, Open vSwitch
running):

    .venv/bin/python benchmarks/tenants/overlay.py [--quick] [--repeat 3] [--seconds 5] [--vm-tso] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import benchlib  # noqa: E402

benchlib.use_src()

REQUIRES = ("root", "ovs")
VNI = 5001
VM_A, VM_B = "10.77.0.1", "10.77.0.2"
TYPES = ("vxlan", "nvgre")
ENDPOINTS = ("kumoflow", "ovs")


def sh(*cmd: str, check: bool = True, timeout: float = 60) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} -> {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def tunnel_id(kind: str) -> int:
    return VNI if kind == "vxlan" else VNI << 8


def _offloads_off(dev: str, ns: str | None = None) -> None:
    pre = ["ip", "netns", "exec", ns] if ns else []
    sh(*pre, "ethtool", "-K", dev, "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off", check=False)


class KumoflowPair:
    """Two kumoflow hypervisors in namespaces, a bridge namespace as the underlay."""

    def __init__(self, kind: str, workdir: Path, vm_tso: bool = False) -> None:
        self.kind = kind
        self.workdir = workdir
        self.vm_tso = vm_tso
        tag = secrets.token_hex(3)
        self.tag = tag
        self.ul = f"ku{tag}"
        self.hv = [f"kh{tag}{i}" for i in (1, 2)]
        self.vm = [f"kv{tag}{i}" for i in (1, 2)]
        self.vtep = ["10.78.0.1", "10.78.0.2"]
        self.procs: list[subprocess.Popen] = []
        self.namespaces: list[str] = []

    def up(self) -> "KumoflowPair":
        for ns in [self.ul, *self.hv, *self.vm]:
            sh("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.ul, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.ul, "link", "set", "br0", "up")
        for i in range(2):
            hv, vm = self.hv[i], self.vm[i]
            nic, peer = f"kn{self.tag}{i}", f"kp{self.tag}{i}"
            sh("ip", "link", "add", nic, "type", "veth", "peer", "name", peer)
            sh("ip", "link", "set", nic, "netns", hv)
            sh("ip", "link", "set", peer, "netns", self.ul)
            sh("ip", "-n", self.ul, "link", "set", peer, "master", "br0", "up")
            _offloads_off(peer, self.ul)
            sh("ip", "-n", hv, "addr", "add", f"{self.vtep[i]}/24", "dev", nic)
            sh("ip", "-n", hv, "link", "set", nic, "up")
            _offloads_off(nic, hv)
            inside, outside = f"ki{self.tag}{i}", f"ko{self.tag}{i}"
            sh("ip", "link", "add", inside, "type", "veth", "peer", "name", outside)
            sh("ip", "link", "set", inside, "netns", vm)
            sh("ip", "link", "set", outside, "netns", hv)
            sh("ip", "-n", vm, "addr", "add", f"{(VM_A, VM_B)[i]}/24", "dev", inside)
            sh("ip", "-n", vm, "link", "set", inside, "mtu", "1450", "up")
            sh("ip", "-n", hv, "link", "set", outside, "up")
            _offloads_off(inside, vm)
            _offloads_off(outside, hv)
            if self.vm_tso:
                sh("ip", "netns", "exec", hv, "ethtool", "-K", outside, "tx", "on", "sg", "on", "tso", "on")
            status = self.workdir / f"{hv}.json"
            log = open(self.workdir / f"{hv}.log", "wb")
            argv = ["ip", "netns", "exec", hv, sys.executable, "-m", "kumoflow.cli", "switch", "--dpid", str(i + 1),
                    "--port", f"1={outside}", "--tunnel", f"10={self.kind}:{self.vtep[i]}:{self.vtep[1 - i]}",
                    "--listen", "ptcp:0:127.0.0.1", "--status-file", str(status), "--log-level", "warning"]
            env = {**os.environ, "PYTHONPATH": str(benchlib.SRC)}
            self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env))
            deadline = time.monotonic() + 20
            while not status.exists():
                if time.monotonic() > deadline or self.procs[-1].poll() is not None:
                    raise RuntimeError(f"kumoflow switch in {hv} did not start: {(self.workdir / f'{hv}.log').read_text()}")
                time.sleep(0.1)
            target = "tcp:127.0.0.1:" + json.loads(status.read_text())["listen"][0].split(":")[1]
            tid = tunnel_id(self.kind)
            for flow in (f"in_port=1,actions=set_field:{tid}->tun_id,output:10",
                         f"in_port=10,tun_id={tid},actions=output:1"):
                sh("ip", "netns", "exec", hv, "ovs-ofctl", "-O", "OpenFlow13", "add-flow", target, flow)
        return self

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def down(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)


class OvsPair:
    """Two Open vSwitch hypervisors made by the emulator (switched underlay)."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.name = f"ob{secrets.token_hex(2)}"
        self.file = workdir / f"{self.name}.yaml"
        self.file.write_text(f"""name: {self.name}
underlay: {{subnet: 10.79.0.0/24}}
hypervisors:
  - {{name: hv1, kind: ovs, vtep: 10.79.0.11}}
  - {{name: hv2, kind: ovs, vtep: 10.79.0.12}}
overlays:
  - {{name: t, type: {kind}}}
hosts:
  - {{name: vm1, mac: "02:77:00:00:00:01", ip: {VM_A}/24}}
  - {{name: vm2, mac: "02:77:00:00:00:02", ip: {VM_B}/24}}
links:
  - {{src: vm1, dst: hv1, dst_port: 1}}
  - {{src: vm2, dst: hv2, dst_port: 1}}
""")
        self.net = None
        self.vm: list[str] = []

    def up(self) -> "OvsPair":
        from kumoflow.net import Network

        self.net = Network.from_file(self.file, controllers=[])
        self.net.up()
        self.vm = [self.net.host("vm1").netns, self.net.host("vm2").netns]
        base = 1000 if self.kind == "vxlan" else 2000
        tid = tunnel_id(self.kind)
        for hv, remote in (("hv1", 2), ("hv2", 1)):
            br = f"{self.name}-{hv}"
            for flow in (f"in_port=1,actions=set_field:{tid}->tun_id,output:{base + remote}",
                         f"in_port={base + remote},tun_id={tid},actions=output:1"):
                sh("ovs-ofctl", "-O", "OpenFlow13", "add-flow", br, flow)
        return self

    def pids(self) -> list[int]:
        out = sh("pidof", "ovs-vswitchd", check=False).split()
        return [int(p) for p in out]

    def down(self) -> None:
        if self.net is not None:
            self.net.down()


def ns_run(ns: str, *cmd: str, timeout: float = 60) -> str:
    return sh("ip", "netns", "exec", ns, *cmd, timeout=timeout)


def wait_ping(pair) -> None:
    deadline = time.monotonic() + 30
    while subprocess.run(["ip", "netns", "exec", pair.vm[0], "ping", "-c", "1", "-W", "1", VM_B],
                         capture_output=True).returncode:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{type(pair).__name__} {pair.kind}: VM B unreachable")


@contextlib.contextmanager
def iperf_server(pair):
    server = subprocess.Popen(["ip", "netns", "exec", pair.vm[1], "iperf3", "-s", "-1", "-B", VM_B],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while "5201" not in sh("ip", "netns", "exec", pair.vm[1], "ss", "-Hltn"):
            if time.monotonic() > deadline:
                raise RuntimeError("iperf3 server did not listen")
            time.sleep(0.05)
        yield
    finally:
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def measure(pair, seconds: float) -> dict:
    wait_ping(pair)
    cpu0 = sum(benchlib.cpu_seconds(p) for p in pair.pids())
    with iperf_server(pair):
        out = json.loads(ns_run(pair.vm[0], "iperf3", "-c", VM_B, "-u", "-b", "0", "-l", "18", "-t", str(seconds),
                                "-J", timeout=seconds + 30))
    end = out["end"]
    recv = end.get("sum_received") or end["sum"]
    sent_pkts = end["sum_sent"]["packets"] if "sum_sent" in end and "packets" in end["sum_sent"] else end["sum"]["packets"]
    got_pkts = recv["packets"] - recv.get("lost_packets", 0)
    cpu1 = sum(benchlib.cpu_seconds(p) for p in pair.pids())
    with iperf_server(pair):
        tcp = json.loads(ns_run(pair.vm[0], "iperf3", "-c", VM_B, "-t", str(seconds), "-J", timeout=seconds + 30))
    ping = ns_run(pair.vm[0], "ping", "-c", "100", "-i", "0.01", "-q", VM_B)
    rtt = float(ping.rsplit("=", 1)[1].split("/")[1])
    return {"pps": got_pkts / seconds, "sent_pps": sent_pkts / seconds, "udp_cpu_s": cpu1 - cpu0,
            "tcp_gbps": tcp["end"]["sum_received"]["bits_per_second"] / 1e9, "rtt_ms": rtt}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each iperf3 run (default 5)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per endpoint and type, interleaved (default 3)")
    ap.add_argument("--vm-tso", action="store_true",
                    help="TSO on at the hypervisor's end of kumoflow's VM veths (Open vSwitch cannot use it)")
    benchlib.add_output_args(ap, "one 1-second run of each")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds, args.repeat = 1.0, 1
    if os.geteuid() != 0:
        print("needs root (namespaces, Open vSwitch)", file=sys.stderr)
        return 2
    m = benchlib.machine(tools=[("ovs-vswitchd", "--version"), ("iperf3", "--version")])
    runs: dict = {(e, k): [] for e in ENDPOINTS for k in TYPES}
    with tempfile.TemporaryDirectory(prefix="kf-overlay-") as tmp:
        for kind in TYPES:
            pairs = {"kumoflow": KumoflowPair(kind, Path(tmp), args.vm_tso), "ovs": OvsPair(kind, Path(tmp))}
            try:
                for p in pairs.values():
                    p.up()
                for _ in range(args.repeat):
                    for e in ENDPOINTS:
                        runs[(e, kind)].append(measure(pairs[e], args.seconds))
            finally:
                for p in pairs.values():
                    try:
                        p.down()
                    except Exception as exc:
                        print(f"cleanup: {exc}", file=sys.stderr)

    def med(e, k, key):
        return statistics.median(r[key] for r in runs[(e, k)])

    print(f"# Overlays: VM to VM over two hypervisors, kumoflow vs Open vSwitch\n\n`{benchlib.command_line()}`\n")
    print("\n".join(benchlib.machine_lines(m)) + "\n")
    rows = []
    for k in TYPES:
        for key, label, fmt in (("pps", "64-byte packets/s received", lambda v: f"{v / 1e3:.0f}k"),
                                ("tcp_gbps", "TCP Gbit/s", lambda v: f"{v:.2f}"),
                                ("rtt_ms", "RTT ms (lower is better)", lambda v: f"{v:.3f}")):
            a, b = med("kumoflow", k, key), med("ovs", k, key)
            r = (b / a) if key == "rtt_ms" else (a / b)
            rows.append([k, label, fmt(a), fmt(b), f"{r:.2f}x"])
    print(benchlib.md_table(["tunnel", "figure", "kumoflow", "Open vSwitch", "kumoflow/OVS"], rows))
    print(f"\nmedian of {args.repeat} run(s) of {args.seconds:g} s each, interleaved; iperf3 sent "
          + ", ".join(f"{e}/{k} {med(e, k, 'sent_pps') / 1e3:.0f}k pps" for k in TYPES for e in ENDPOINTS))
    if args.json:
        benchlib.write_json(args.json, {"machine": m, "runs": {f"{e}/{k}": v for (e, k), v in runs.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
