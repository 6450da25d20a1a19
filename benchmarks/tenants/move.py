#!/usr/bin/env python3
"""VM move: the gap in a VM's traffic while its port moves to another
hypervisor, re-plugged there and its binding changed through the API.

The cloud: `kumoflow controller --app tenants --api` (_cloud.py) and an
emulated network (kumoflow.net) of three hypervisors on a switched
underlay, VXLAN between every pair: hv1 a kumoflow switch, hv2 Open
vSwitch, hv3 a kumoflow switch (the emulator allows one Open vSwitch
hypervisor per tunnel remote, so not two with a third). Through the API: a
vxlan network, a /24 subnet, port A bound to hv1 port 1 and port B bound
to hv3 port 1 (MACs and addresses given: port security admits only them).
VM A and VM B are the emulator's hosts on those ports; a third host, on
hv2 port 1, only lends its link: at set-up its eth0 is moved into VM A's
namespace as ``eth1``, down, so VM A has a link into each of hv1 and hv2
(the emulator has no move of its own; its hosts have one link each).

A and B send each other a UDP datagram every `--interval` (1 ms;
benchmarks/fabric/_probe.py), with static neighbour entries (no ARP). A
move, every `--spacing` seconds, alternately hv1 -> hv2 and back: VM A's
live link goes down, the other one takes A's MAC and address and comes
up (the VM's NIC re-plugged into the other hypervisor), then
``PUT /v2.0/ports/A`` with the new binding (``binding:host_id`` the
datapath id, ``binding:profile {"port_no": 1}``). The controller then
moves A's flows: port security and delivery on the new switch, none on
the old one, and B's hypervisor points A's MAC into the tunnel to the new
one.

The gap of each move and direction: from the last datagram received
before the move began to the first received after it (receive times,
CLOCK_MONOTONIC, the same in every namespace). Its parts, on the same
clock: the re-plug (link down, MAC and address moved, link up), the PUT
(sent to answered: the store's commit), and from the PUT's answer to the
first datagram through. Median, min and max over `--moves` moves per
direction.

    sudo .venv/bin/python benchmarks/tenants/move.py                 # 10 moves each way
    sudo .venv/bin/python benchmarks/tenants/move.py --quick         # 2 moves each way: a smoke test
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # benchmarks/: benchlib
import benchlib  # noqa: E402

benchlib.use_src()

from _cloud import Controller, load  # noqa: E402
from overlay import sh  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
from _ofcapture import Capture  # noqa: E402  (benchmarks/api/_ofcapture.py)

REQUIRES = ("root", "ovs")     # tests/integration/test_benchmarks.py: run alone, as root

PROBE = str(Path(__file__).resolve().parents[1] / "fabric" / "_probe.py")
MAC_A, MAC_B = "fa:16:3e:44:00:0a", "fa:16:3e:44:00:0b"
IP_A, IP_B = "10.66.0.10", "10.66.0.11"
HYPERVISORS = {"hv1": "kumoflow", "hv2": "ovs", "hv3": "kumoflow"}


def topology(name: str, net: int) -> str:
    return f"""name: {name}
underlay: {{subnet: 10.{net}.0.0/24}}
hypervisors:
  - {{name: hv1, kind: kumoflow, vtep: 10.{net}.0.11}}
  - {{name: hv2, kind: ovs, vtep: 10.{net}.0.12}}
  - {{name: hv3, kind: kumoflow, vtep: 10.{net}.0.13}}
overlays:
  - {{name: t, type: vxlan}}
hosts:
  - {{name: a, mac: "{MAC_A}", ip: {IP_A}/24}}
  - {{name: spare, mac: "fa:16:3e:44:00:0c", ip: 10.66.0.12/24}}
  - {{name: b, mac: "{MAC_B}", ip: {IP_B}/24}}
links:
  - {{src: a, dst: hv1, dst_port: 1}}
  - {{src: spare, dst: hv2, dst_port: 1}}
  - {{src: b, dst: hv3, dst_port: 1}}
"""


def ip(ns: str, *args: str) -> None:
    sh("ip", "-n", ns, *args)


def replug(ns: str, old: str, new: str) -> None:
    """VM A's NIC from link `old` to link `new`: MAC, address and the neighbour B with it."""
    ip(ns, "link", "set", old, "down")
    ip(ns, "addr", "flush", "dev", old)
    ip(ns, "link", "set", new, "address", MAC_A)
    ip(ns, "addr", "add", f"{IP_A}/24", "dev", new)
    ip(ns, "link", "set", new, "up")
    ip(ns, "neigh", "replace", IP_B, "lladdr", MAC_B, "dev", new, "nud", "permanent")


def gap(received: list, t0: int, t1: int) -> tuple[int, int] | None:
    """The longest silence between two receptions of a probe from t0 to t1 (ns):
    (last receive time before it, first after)."""
    times = sorted(r for _, _, r in received if t0 <= r < t1)
    pairs = list(zip(times, times[1:]))
    return max(pairs, key=lambda p: p[1] - p[0]) if pairs else None


class Mods(threading.Thread):
    """FLOW_MODs and GROUP_MODs to the switches, as they reach them (benchmarks/api/_ofcapture.py on lo),
    their times on CLOCK_MONOTONIC."""

    def __init__(self, of_port: int, api_port: int) -> None:
        super().__init__(daemon=True)
        self.offset = time.time_ns() - time.monotonic_ns()
        self.times: list[int] = []
        self.capture = Capture(of_port, api_port, self._message, lambda *_: None)
        self.stop = threading.Event()

    def _message(self, ts: int, to_switch: bool, raw: bytes) -> None:
        if to_switch and raw[1] in (14, 15):      # OFPT_FLOW_MOD, OFPT_GROUP_MOD
            self.times.append(ts - self.offset)

    def run(self) -> None:
        import select
        while not self.stop.is_set():
            if select.select([self.capture], [], [], 0.2)[0]:
                self.capture.read()

    def between(self, t0: int, t1: int) -> list[int]:
        return [t for t in self.times if t0 <= t < t1]


def run(args: argparse.Namespace) -> dict:
    from kumoflow.net import Network

    tag = secrets.token_hex(2)
    moves: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="tenantbench-move-") as tmp:
        tmp = Path(tmp)
        cloud = Controller(tmp).start()
        mods = Mods(int(cloud.listen.rsplit(":", 1)[1]), int(cloud.url.rsplit(":", 1)[1].strip("/")))
        mods.start()
        topo = tmp / "move.yaml"
        topo.write_text(topology(f"mv{tag}", 80 + secrets.randbelow(40)))
        net = Network.from_file(topo, controllers=[cloud.listen])
        probes: dict[str, subprocess.Popen] = {}
        try:
            net.up()
            dpid = {s.name: s.dpid for s in net.plan.switches}
            cloud.wait_switches({dpid[h] for h in HYPERVISORS})
            a, b, spare = (net.host(h).netns for h in ("a", "b", "spare"))
            ip(spare, "link", "set", "eth0", "down")
            ip(spare, "addr", "flush", "dev", "eth0")
            ip(spare, "link", "set", "eth0", "name", "eth1")
            ip(spare, "link", "set", "eth1", "netns", a)
            links = {"hv1": "eth0", "hv2": "eth1"}
            network = cloud.post("/v2.0/networks", {"network": {"name": "move", "provider:network_type": "vxlan"}})
            nid = network["network"]["id"]
            cloud.post("/v2.0/subnets", {"subnet": {"network_id": nid, "ip_version": 4, "cidr": "10.66.0.0/24"}})
            port = {}
            for name, mac, addr, hv in (("a", MAC_A, IP_A, "hv1"), ("b", MAC_B, IP_B, "hv3")):
                port[name] = cloud.post("/v2.0/ports", {"port": {
                    "network_id": nid, "name": name, "mac_address": mac, "fixed_ips": [{"ip_address": addr}],
                    "binding:host_id": f"{dpid[hv]:#x}", "binding:profile": {"port_no": 1}}})["port"]["id"]
            ip(a, "neigh", "replace", IP_B, "lladdr", MAC_B, "dev", "eth0", "nud", "permanent")
            ip(b, "neigh", "replace", IP_A, "lladdr", MAC_A, "dev", "eth0", "nud", "permanent")
            deadline = time.monotonic() + 30
            while subprocess.run(["ip", "netns", "exec", a, "ping", "-c", "1", "-W", "1", IP_B],
                                 capture_output=True).returncode:
                if time.monotonic() > deadline:
                    raise RuntimeError("VM A cannot reach VM B before any move")
            common = ["--interval", str(args.interval), "--duration", str(60 + args.moves * 2 * args.spacing * 2)]
            probes = {"a": subprocess.Popen(["ip", "netns", "exec", a, sys.executable, PROBE, "--bind", IP_A,
                                             "--peer", IP_B, *common], stdout=subprocess.PIPE, text=True),
                      "b": subprocess.Popen(["ip", "netns", "exec", b, sys.executable, PROBE, "--bind", IP_B,
                                             "--peer", IP_A, *common], stdout=subprocess.PIPE, text=True)}
            time.sleep(args.spacing)
            where = "hv1"
            for i in range(2 * args.moves):
                to = "hv2" if where == "hv1" else "hv1"
                t0 = time.monotonic_ns()
                replug(a, links[where], links[to])
                t1 = time.monotonic_ns()
                cloud.call("PUT", f"/v2.0/ports/{port['a']}", {"port": {
                    "binding:host_id": f"{dpid[to]:#x}", "binding:profile": {"port_no": 1}}})
                t2 = time.monotonic_ns()
                moves.append({"from": where, "to": to, "start_ns": t0, "plugged_ns": t1, "put_ns": t2})
                where = to
                time.sleep(args.spacing)
        finally:
            received = {}
            for name, proc in probes.items():
                if proc.poll() is None:
                    proc.terminate()
                out, _ = proc.communicate(timeout=30)
                received[name] = json.loads(out)["received"] if out.strip() else []
            mods.stop.set()
            try:
                net.down()
            finally:
                cloud.stop()
    for m, after in zip(moves, moves[1:] + [None]):
        end = after["start_ns"] if after else m["put_ns"] + int(args.spacing * 1e9)
        for direction, rx in (("a->b", received.get("b", [])), ("b->a", received.get("a", []))):
            g = gap(rx, m["start_ns"] - int(0.1e9), end)
            if g is not None:
                m[direction] = {"gap_ms": (g[1] - g[0]) / 1e6, "after_put_ms": (g[1] - m["put_ns"]) / 1e6,
                                "gap_start_ms": (g[0] - m["start_ns"]) / 1e6}
        m["plug_ms"] = (m["plugged_ns"] - m["start_ns"]) / 1e6
        m["put_ms"] = (m["put_ns"] - m["plugged_ns"]) / 1e6
        sent = mods.between(m["plugged_ns"], end)
        if sent:     # from the PUT sent: its first and last FLOW_MOD / GROUP_MOD at a switch
            m["mods"] = len(sent)
            m["first_mod_ms"], m["last_mod_ms"] = ((t - m["plugged_ns"]) / 1e6 for t in (sent[0], sent[-1]))
    return {"moves": moves, "interval": args.interval, "load": load()}


def report(results: dict) -> str:
    def stats(values: list[float]) -> str:
        if not values:
            return "-"
        return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"

    rows = []
    for way in (("hv1", "hv2"), ("hv2", "hv1")):
        ms = [m for m in results["moves"] if (m["from"], m["to"]) == way]
        label = f"{way[0]} ({HYPERVISORS[way[0]]}) -> {way[1]} ({HYPERVISORS[way[1]]})"
        for direction in ("a->b", "b->a"):
            have = [m[direction] for m in ms if direction in m]
            rows.append([label, direction, str(len(have)), stats([h["gap_ms"] for h in have]),
                         stats([h["gap_start_ms"] for h in have]), stats([m["plug_ms"] for m in ms]),
                         stats([m["put_ms"] for m in ms]), stats([m["first_mod_ms"] for m in ms if "mods" in m]),
                         stats([m["last_mod_ms"] for m in ms if "mods" in m]),
                         stats([h["after_put_ms"] for h in have])])
    return "\n".join([
        benchlib.md_table(["move", "traffic", "moves", "gap ms: median (min-max)", "gap began ms", "re-plug ms",
                           "PUT ms", "first mod ms", "last mod ms", "PUT answered to first datagram ms"], rows),
        "\n(gap began: after the move's start; first/last mod: FLOW_MOD or GROUP_MOD reaching a switch, "
        "after the PUT was sent; every figure median (min-max) over the moves)",
        f"\ndatagrams every {results['interval'] * 1e3:g} ms each way; load after: {results['load']}"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moves", type=int, default=10, help="moves each way (default 10)")
    ap.add_argument("--interval", type=float, default=0.001, help="probe period, seconds (default 0.001)")
    ap.add_argument("--spacing", type=float, default=1.5, help="seconds between moves (default 1.5)")
    benchlib.add_output_args(ap, "2 moves each way: a smoke test, not a figure")
    args = ap.parse_args()
    if args.quick:
        args.moves = 2
    return benchlib.run_main(args, run, report, root="namespaces, Open vSwitch", packages=("httpx",),
                             tools=(("ovs-vswitchd", "--version"),))


if __name__ == "__main__":
    sys.exit(main())
