#!/usr/bin/env python3
"""Provisioning at scale: N tenant networks (``provider:network_type``
vxlan), each with a /24 subnet and one port bound to a hypervisor's switch
port, made through the API, until every port's flows are in its switch.

One run per `--networks` size (1,000 and 10,000 by default), each on a
fresh cloud:

* the controller: `kumoflow controller --app tenants --api` (_cloud.py),
  its store on the temporary directory, the periodic audit off by default
  (`--audit-interval`: a full read of a switch would land inside the
  timed phase);
* two hypervisors with a VXLAN tunnel port to each other, named as
  kumoflow.tunnels.port_name makes them, their endpoint addresses on
  loopback (the tunnels carry nothing here): a kumoflow switch process
  (benchmarks/api/_api_switch.py: the switch runtime and its OpenFlow
  channel, its ports in memory: one per VM, plus the tunnel port; a
  `kumoflow switch` takes ports only on Linux interfaces, and each of
  those has a 2 MB receive ring: 5,000 of them would be 10 GB) and an Open
  vSwitch netdev bridge (fail mode secure) whose VM ports are internal
  ports (tap devices, left down) and whose tunnel port is ``type=vxlan
  options:key=flow``;
* the VM ports' links down: the fabric app, which the tenants app
  requires, gives every edge port that is up and unbound a flood flow to
  every other such port,
  N flows of N-1 outputs per switch (at 2,500 ports 100 MB of FLOW_MODs):
  a switch whose VM ports all exist before any is bound costs that, and
  it is not what is measured here. The tenants app's flows for a port do
  not depend on its link state;
* network i's port on the kumoflow switch when i is even, on the Open
  vSwitch bridge when odd, each on a switch port of its own
  (``binding:host_id`` the datapath id, ``binding:profile {"port_no": N}``).

The controller and both switches echo each other after `--echo-interval`
seconds idle (30; the product's default is 5) and drop the peer after 3
times that: at 10,000 networks the controller's event loop is at times busy
for more than 15 s (a bulk create's commit, model rebuild and compile), and
with 5 the switches were dropped, read again in full and dropped again.
The Open vSwitch VM ports are made in OVSDB transactions of 400 (ovs-vsctl
takes minutes for 5,000), and the switches connect only once they all
exist (else each port is a PORT_STATUS and a rebuild of the tenants model).

Timed from the first POST: bulk creates of `--batch` networks, then their
subnets, then their ports, batch after batch; the time the API took for
all of them; and the time until both switches hold all the flows, read
every `--poll` seconds with OpenFlow aggregate flow stats (ovs-ofctl
dump-aggregate, on the bridge and on the kumoflow switch's passive
listener): done when the count has not moved for `--stable` seconds; the
time taken is that of the first reading at the final count. Then checked:
every bound switch port has its port-security flows (in_port) in its
switch. Reported: the times, per network, the flows and groups per network
on a switch, the controller's RSS and CPU seconds, the kumoflow switch's
RSS, and ovs-vswitchd's RSS growth (shared with whatever else uses it).
`--profile DIR`: py-spy on the controller during the timed phase, the
functions with the most samples.

    sudo .venv/bin/python benchmarks/tenants/provisioning.py                      # 1,000 and 10,000 networks
    sudo .venv/bin/python benchmarks/tenants/provisioning.py --quick              # 200 networks: a smoke test
    sudo .venv/bin/python benchmarks/tenants/provisioning.py --networks 2000 --profile /tmp/spy
"""

from __future__ import annotations

import argparse
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # benchmarks/: benchlib
import benchlib  # noqa: E402

benchlib.use_src()

from _cloud import (ENV, SRC, Controller, add_internal_ports, flow_count, ovs_bridge, py_spy,  # noqa: E402
                    load, spy_done, stop_process, vsctl, wait_file)
from overlay import sh  # noqa: E402

from kumoflow.tunnels import port_name  # noqa: E402

REQUIRES = ("root", "ovs")     # tests/integration/test_benchmarks.py: run alone, as root

API_SWITCH = Path(__file__).resolve().parents[1] / "api" / "_api_switch.py"
TUNNEL_PORT = 60000
KF_DPID, OVS_DPID = 0xA1, 0xA2


class Hypervisors:
    """The kumoflow switch and the Open vSwitch bridge, `ports` VM ports each, tunnels to each other."""

    def __init__(self, tmp: Path, controller: str, ports: int, echo_interval: float) -> None:
        tag = secrets.token_hex(2)
        self.echo_interval = echo_interval
        self.tmp, self.controller, self.ports, self.tag = tmp, controller, ports, tag
        # endpoint addresses on loopback, random so that no other bridge's vxlan port has the same
        a, b = secrets.randbelow(250) + 1, secrets.randbelow(250) + 1
        self.vtep = {"kumoflow": f"127.{a}.{b}.11", "ovs": f"127.{a}.{b}.12"}
        self.bridge = f"kt{tag}"
        self.switch: subprocess.Popen | None = None
        self.kf_target = ""
        self.made: list[str] = []

    def up(self) -> "Hypervisors":
        tunnel = f"{port_name('vxlan', self.vtep['kumoflow'])}-{self.tag}"
        ovs_bridge(self.bridge, OVS_DPID,
                   ["--", "add-port", self.bridge, tunnel, "--", "set", "interface", tunnel, "type=vxlan",
                    f"options:remote_ip={self.vtep['kumoflow']}", f"options:local_ip={self.vtep['ovs']}",
                    "options:key=flow", f"ofport_request={TUNNEL_PORT}"])
        self.made.append(self.bridge)
        add_internal_ports(self.bridge, {n: f"kt{self.tag}v{n}" for n in range(1, self.ports + 1)})
        # connected only once ovs-vswitchd has made every port: else each comes as a PORT_STATUS of its own,
        # and the tenants app rebuilds its model for each (docs/benchmarks.md, Tenants)
        deadline = time.monotonic() + 600
        while sh("ovs-ofctl", "-O", "OpenFlow13", "dump-ports-desc",
                 self.bridge).count(f"(kt{self.tag}v") < self.ports:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.bridge}: ovs-vswitchd did not make {self.ports} ports in 600 s")
            time.sleep(1)
        vsctl("set-controller", self.bridge, self.controller, "--", "set", "controller", self.bridge,
              f"inactivity_probe={int(self.echo_interval * 1000)}")
        # the kumoflow switch after the bridge's taps: it reads every port again at each link event
        status, log = self.tmp / "switch.json", self.tmp / "switch.log"
        script = self.tmp / f"hv{self.tag}.py"       # a name of its own: no one's cleanup of _api_switch.py hits it
        script.symlink_to(API_SWITCH)
        self.switch = subprocess.Popen(
            [sys.executable, str(script), "--controller", self.controller, "--dpid", str(KF_DPID),
             "--ports", str(self.ports), "--tunnel", f"{TUNNEL_PORT}=vxlan:{self.vtep['ovs']}",
             "--listen", "ptcp:0:127.0.0.1", "--status-file", str(status), "--down",
             "--echo-interval", str(self.echo_interval)],
            stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=ENV)
        listen = wait_file(status, self.switch, log, "the kumoflow switch")["listen"][0]
        self.kf_target = "tcp:127.0.0.1:" + listen.split(":")[1]
        return self

    def targets(self) -> dict[str, str]:
        return {"kumoflow": self.kf_target, "ovs": self.bridge}

    def down(self) -> None:
        if self.switch is not None:
            stop_process(self.switch)
        for br in reversed(self.made):
            try:
                vsctl("--if-exists", "del-br", br, timeout=900)
            except Exception as exc:  # noqa: BLE001 - clean up the rest
                print(f"cleanup {br}: {exc}", file=sys.stderr)


def ovs_pid() -> int:
    return int(sh("pidof", "ovs-vswitchd").split()[0])


def count_groups(target: str) -> int:
    return sh("ovs-ofctl", "-O", "OpenFlow13", "dump-groups", target, timeout=120).count("group_id=")


def ports_with_flows(target: str) -> set[int]:
    """The in_port of every flow with one (a bound port's port security, the tunnel's classify)."""
    return {int(n) for n in re.findall(r"in_port=(\d+)", sh("ovs-ofctl", "-O", "OpenFlow13", "dump-flows",
                                                               target, timeout=600))}


class Poller(threading.Thread):
    """Every `interval` seconds: (time since t0, flows per switch, controller CPU seconds)."""

    def __init__(self, targets: dict[str, str], controller_pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.targets, self.pid, self.interval = targets, controller_pid, interval
        self.samples: list[tuple[float, dict[str, int], float]] = []
        self.t0 = time.perf_counter()
        self.stop = threading.Event()
        self.error = ""

    def read(self) -> tuple[float, dict[str, int], float]:
        counts = {name: flow_count(t) for name, t in self.targets.items()}
        return time.perf_counter() - self.t0, counts, benchlib.cpu_seconds(self.pid)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.samples.append(self.read())
            except RuntimeError as exc:      # a switch gone: the main thread's wait times out and says so
                self.error = str(exc)
                return
            self.stop.wait(self.interval)


def provision(args: argparse.Namespace, networks: int, tmp: Path) -> dict:
    per_switch = (networks + 1) // 2
    cloud = Controller(tmp, audit_interval=args.audit_interval, echo_interval=args.echo_interval).start()
    hvs = Hypervisors(tmp, cloud.listen, per_switch, args.echo_interval)
    spy = None
    try:
        hvs.up()
        cloud.wait_switches({KF_DPID, OVS_DPID})
        time.sleep(args.settle)                      # the switches past their settle time: reconciled in full
        targets = hvs.targets()
        base, last = None, {}
        while base != last:                          # and their flows (a few per switch port) all in
            base, last = last, {name: flow_count(t) for name, t in targets.items()}
            time.sleep(1)
        rss0 = {"controller": benchlib.rss_kib(cloud.pid), "switch": benchlib.rss_kib(hvs.switch.pid),
                "ovs-vswitchd": benchlib.rss_kib(ovs_pid())}
        cpu0 = benchlib.cpu_seconds(cloud.pid)
        if args.profile:
            spy_path = Path(args.profile) / f"controller-{networks}.txt"
            spy_path.parent.mkdir(parents=True, exist_ok=True)
            spy = py_spy(cloud.pid, spy_path)
        poller = Poller(targets, cloud.pid, args.poll)
        poller.start()
        t0 = poller.t0
        for start in range(0, networks, args.batch):
            idx = range(start, min(networks, start + args.batch))
            made = cloud.post("/v2.0/networks", {"networks": [
                {"name": f"t{i}", "provider:network_type": "vxlan"} for i in idx]})["networks"]
            ids = [n["id"] for n in made]
            cloud.post("/v2.0/subnets", {"subnets": [
                {"network_id": nid, "ip_version": 4, "cidr": f"10.{i >> 8 & 255}.{i & 255}.0/24"}
                for i, nid in zip(idx, ids)]})
            cloud.post("/v2.0/ports", {"ports": [
                {"network_id": nid, "name": f"vm{i}", "binding:host_id": f"{(KF_DPID, OVS_DPID)[i % 2]:#x}",
                 "binding:profile": {"port_no": i // 2 + 1}} for i, nid in zip(idx, ids)]})
        api_s = time.perf_counter() - t0
        # until the counts stand still for --stable seconds (and the controller has stopped working)
        deadline = t0 + args.timeout
        while True:
            time.sleep(args.poll)
            last = poller.samples[-1]
            still = [s for s in poller.samples if s[0] >= last[0] - args.stable]
            if (last[0] > api_s + args.stable and still[0][0] <= last[0] - args.stable + args.poll
                    and all(s[1] == last[1] for s in still) and last[2] - still[0][2] < 0.2 * args.stable):
                break
            if poller.error or time.perf_counter() > deadline:
                why = poller.error or f"still changing after {args.timeout:.0f} s"
                raise RuntimeError(f"{networks} networks: {why}")
        poller.stop.set()
        poller.join()
        if spy is not None:
            top = spy_done(spy, spy_path)
            spy = None
        else:
            top = {}
        final = poller.samples[-1][1]
        first_at = {name: next(t for t, c, _ in poller.samples if c[name] == final[name]) for name in targets}
        cpu = benchlib.cpu_seconds(cloud.pid) - cpu0
        rss = {"controller": benchlib.rss_kib(cloud.pid), "switch": benchlib.rss_kib(hvs.switch.pid),
               "ovs-vswitchd": benchlib.rss_kib(ovs_pid())}
        on = {"kumoflow": (networks + 1) // 2, "ovs": networks // 2}
        missing = {}
        for name, t in targets.items():
            have = ports_with_flows(t)
            missing[name] = sorted(set(range(1, on[name] + 1)) - have)[:5]
        groups = {name: count_groups(t) for name, t in targets.items()}
        return {
            "networks": networks, "api_s": api_s, "flows_s": max(first_at.values()), "first_at": first_at,
            "base": base, "final": final, "on": on, "groups": groups, "missing": missing,
            "flows_per_network": {n: (final[n] - base[n]) / on[n] for n in targets if on[n]},
            "groups_per_network": {n: groups[n] / on[n] for n in targets if on[n]},
            "controller_cpu_s": cpu, "rss0_kib": rss0, "rss_kib": rss, "profile": top,
            "samples": [(round(t, 2), c) for t, c, _ in poller.samples],
            "load": load(),
        }
    finally:
        if spy is not None:
            spy_done(spy, spy_path)
        hvs.down()
        cloud.stop()
        # the last run's logs, for a post-mortem
        logs = Path(tempfile.gettempdir()) / f"tenantbench-provision-logs-{networks}"
        logs.mkdir(exist_ok=True)
        for log in tmp.glob("*.log"):
            shutil.copy(log, logs / log.name)


def run(args: argparse.Namespace) -> dict:
    runs = []
    for networks in args.networks:
        with tempfile.TemporaryDirectory(prefix="tenantbench-provision-") as tmp:
            r = provision(args, networks, Path(tmp))
            print(f"{networks} networks: API {r['api_s']:.1f} s, flows {r['flows_s']:.1f} s, "
                  f"final {r['final']}, load {r['load']}", file=sys.stderr)
            runs.append(r)
    return {"runs": runs, "code": SRC, "failed": any(any(r["missing"].values()) for r in runs)}


def report(results: dict) -> str:
    rows = []
    for r in results["runs"]:
        n = r["networks"]
        rows.append([f"{n:,}", f"{r['api_s']:.1f} s", f"{r['api_s'] / n * 1e3:.2f} ms",
                     f"{r['flows_s']:.1f} s", f"{r['flows_s'] / n * 1e3:.2f} ms",
                     f"{r['controller_cpu_s']:.1f} s",
                     " / ".join(f"{r['flows_per_network'][k]:.1f}" for k in ("kumoflow", "ovs")),
                     " / ".join(f"{r['groups_per_network'][k]:.1f}" for k in ("kumoflow", "ovs")),
                     f"{r['rss0_kib']['controller'] / 1024:.0f} -> {r['rss_kib']['controller'] / 1024:.0f} MiB",
                     f"{r['rss0_kib']['switch'] / 1024:.0f} -> {r['rss_kib']['switch'] / 1024:.0f} MiB",
                     f"+{(r['rss_kib']['ovs-vswitchd'] - r['rss0_kib']['ovs-vswitchd']) / 1024:.0f} MiB",
                     r["load"]])
    out = [f"kumoflow run from {results['code']}\n", benchlib.md_table(
        ["networks", "API", "API per network", "all flows in", "per network", "controller CPU",
         "flows per network (kumoflow / OVS)", "groups per network", "controller RSS", "kumoflow switch RSS",
         "ovs-vswitchd RSS", "load after"], rows)]
    for r in results["runs"]:
        if any(r["missing"].values()):
            out.append(f"\nFlow check failed at {r['networks']}: switch ports without flows {r['missing']}")
        out.append(f"\n{r['networks']:,} networks: flows before {r['base']}, after {r['final']}; all in at "
                   + ", ".join(f"{k} {v:.1f} s" for k, v in r["first_at"].items()))
        for kind, ranked in (r["profile"] or {}).items():
            out.append(f"controller profile, share of samples ({kind}):\n"
                       + "\n".join(f"  {share:6.1%}  {name}" for name, share in ranked))
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--networks", default="1000,10000", help="sizes, a run each (default 1000,10000)")
    ap.add_argument("--batch", type=int, default=500, help="records per bulk create (default 500; at most 1,000)")
    ap.add_argument("--poll", type=float, default=0.5, help="seconds between flow counts (default 0.5)")
    ap.add_argument("--stable", type=float, default=5.0, help="done when the counts stood still this long (5 s)")
    ap.add_argument("--settle", type=float, default=4.0, help="wait after the switches connect (default 4 s)")
    ap.add_argument("--timeout", type=float, default=3600, help="give up on a size after this long (default 1 h)")
    ap.add_argument("--echo-interval", type=float, default=30.0,
                    help="controller and switches: echo after this long idle, drop after 3 times it (OVS: its "
                         "inactivity probe) (default 30, not 5: at 10,000 the controller's loop stalls for more "
                         "than 15 s at times, and switches dropped and read again make it worse)")
    ap.add_argument("--audit-interval", type=float, default=0, help="the controller's audit (default 0: none)")
    ap.add_argument("--profile", metavar="DIR", help="py-spy the controller while timed; raw profiles to DIR")
    benchlib.add_output_args(ap, "200 networks: a smoke test, not a figure")
    args = ap.parse_args()
    args.networks = [200] if args.quick else [int(n) for n in args.networks.split(",")]
    return benchlib.run_main(args, run, report, root="Open vSwitch", packages=("fastapi", "uvicorn", "httpx"),
                             tools=(("ovs-vswitchd", "--version"),))


if __name__ == "__main__":
    sys.exit(main())
