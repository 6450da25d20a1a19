#!/usr/bin/env python3
"""A router interface made through the API to the first packet it routes:
a kumoflow switch vs Open vSwitch.

    sudo .venv/bin/python benchmarks/router/interface.py               # 9 runs per switch, ~3 minutes
    sudo .venv/bin/python benchmarks/router/interface.py --quick       # 2 runs per switch: a smoke test
    sudo .venv/bin/python benchmarks/router/interface.py --runs 15

Per switch kind (kumoflow, ovs), its own cloud, both up at once: a real
controller process (``kumoflow controller --app router --api 127.0.0.1:0
--store sqlite:TMP``); ``kumoflow apply`` of networks A and B with a subnet
each, the hosts' ports, and a router with an interface on subnet A only;
then ``kumoflow up --api URL`` of an emulated network of one switch of that
kind and two hosts, h1 (10.2.1.5/24, gateway 10.2.1.1) and h2 (10.2.2.5/24,
gateway 10.2.2.1), each bound to its API port (``port:``).

A run: h2 listens (_probe.py recv: the first datagram's arrival time and
TTL); h1 sends a UDP datagram to h2 every --interval (1 ms), which the
router cannot route yet (no route to 10.2.2.0/24: the controller answers
ICMP net unreachable, at most 100 a second); after 1 s the clock starts and
``PUT /v2.0/routers/ID/add_router_interface {"subnet_id": B}`` is sent; the
figure is the time until h2 has the first datagram, which must have TTL 63
(routed, not bridged). Also: the API's answer, and the time from the answer
to that datagram. Then ``remove_router_interface``, and a pause until
nothing arrives any more. The switches' runs alternate; median, min and max
of --runs.

What the time holds: the API's store commit, the router app rebuilding the
router and compiling its flows (the controller compiles at the end of each
batch of work), the flow-mods and the switch applying them, and up to one
--interval of the probe's own period.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))                             # benchmarks/: benchlib

import benchlib  # noqa: E402

benchlib.use_src()
import httpx  # noqa: E402

#: what the smoke test (tests/integration/test_benchmarks.py) marks this benchmark's quick run with
REQUIRES = ("root", "ovs")
PY = sys.executable
TOKEN = "router-bench-" + secrets.token_hex(8)
H1, H2, GW1, GW2 = "10.2.1.5", "10.2.2.5", "10.2.1.1", "10.2.2.1"
MAC1, MAC2 = "fa:16:3e:21:00:05", "fa:16:3e:22:00:05"
PORT = 5001

CLOUD = f"""\
name: rb
project: rb
networks:
  - {{name: rb-a}}
  - {{name: rb-b}}
subnets:
  - {{name: rb-sa, network: rb-a, cidr: 10.2.1.0/24}}
  - {{name: rb-sb, network: rb-b, cidr: 10.2.2.0/24}}
routers:
  - {{name: rb-r, interfaces: [rb-sa]}}
ports:
  - {{name: rb-h1, network: rb-a, mac_address: "{MAC1}", fixed_ips: [{{subnet: rb-sa, ip_address: {H1}}}]}}
  - {{name: rb-h2, network: rb-b, mac_address: "{MAC2}", fixed_ips: [{{subnet: rb-sb, ip_address: {H2}}}]}}
"""


def topology(kind: str) -> str:
    return f"""\
name: rb
switches:
  - {{name: s1, kind: {kind}, dpid: 1, fail_mode: secure}}
hosts:
  - {{name: h1, mac: "{MAC1}", ip: {H1}/24, gateway: {GW1}, port: rb-h1}}
  - {{name: h2, mac: "{MAC2}", ip: {H2}/24, gateway: {GW2}, port: rb-h2}}
links:
  - {{src: h1, dst: s1, dst_port: 1}}
  - {{src: h2, dst: s1, dst_port: 2}}
"""


def kumoflow(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "kumoflow.cli", *argv], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(benchlib.SRC)})


class Cloud:
    """One switch kind's controller, network and API client; close() removes them."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind, self.tmp = kind, tmp / kind
        self.tmp.mkdir()
        self.name = ""                  # the topology's name, once up
        self.ctl: subprocess.Popen | None = None
        self.probes: list[subprocess.Popen] = []
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        kind = self.kind
        status = self.tmp / "status.json"
        self.log = self.tmp / "controller.log"
        with open(self.log, "ab") as out:
            self.ctl = subprocess.Popen([PY, "-m", "kumoflow.cli", "controller", "--listen", "tcp:127.0.0.1:0",
                                         "--app", "router", "--api", "127.0.0.1:0", "--admin-token", TOKEN,
                                         "--store", f"sqlite:{self.tmp / 'kf.db'}", "--status-file", str(status),
                                         "--log-level", "info"],
                                        stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                        env={**os.environ, "PYTHONPATH": str(benchlib.SRC)})
        deadline = time.monotonic() + 30
        while not status.exists():
            if self.ctl.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the controller did not start; see {self.log}")
            time.sleep(0.05)
        info = json.loads(status.read_text())
        self.url, self.target = info["api"], info["listen"][0]
        self.http = httpx.Client(base_url=self.url, headers={"X-Auth-Token": TOKEN}, timeout=30)
        (self.tmp / "cloud.yaml").write_text(CLOUD)
        done = kumoflow("apply", str(self.tmp / "cloud.yaml"), "--api", self.url, "--token", TOKEN)
        if done.returncode != 0:
            raise RuntimeError(f"kumoflow apply: {done.stdout}{done.stderr}")
        self.router = self.get("/v2.0/routers", name="rb-r")["routers"][0]["id"]
        self.subnet = self.get("/v2.0/subnets", name="rb-sb")["subnets"][0]["id"]
        (self.tmp / "topo.yaml").write_text(topology(kind))
        # `kumoflow up` in a process of its own, as a user runs it, which also binds the hosts' ports
        self.name = f"rb{kind[0]}{secrets.token_hex(2)[:3]}"
        up = kumoflow("up", str(self.tmp / "topo.yaml"), "--name", self.name, "--controller", self.target,
                      "--api", self.url, "--token", TOKEN)
        if up.returncode != 0:             # close() takes down what came up
            raise RuntimeError(f"{kind}: kumoflow up failed: {(up.stderr or up.stdout).strip()[-300:]}")
        # h2 makes itself known to the fabric (a VM sends something when it boots); h1 reaches its gateway
        self.host("h2", "ping", "-c", "1", "-W", "1", GW2)
        for _ in range(30):
            if self.host("h1", "ping", "-c", "1", "-W", "1", GW1).returncode == 0:
                break
        else:
            raise RuntimeError(f"{kind}: h1 cannot ping its gateway; see {self.log}")

    def get(self, path: str, **params) -> dict:
        r = self.http.get(path, params=params)
        r.raise_for_status()
        return r.json()

    def interface(self, add: bool) -> float:
        """PUT add_router_interface (or remove_...) for subnet B; the seconds its answer took."""
        verb = "add_router_interface" if add else "remove_router_interface"
        t0 = time.monotonic()
        r = self.http.put(f"/v2.0/routers/{self.router}/{verb}", json={"subnet_id": self.subnet})
        if r.status_code >= 400:
            raise RuntimeError(f"{verb}: {r.status_code} {r.text[:300]}")
        return time.monotonic() - t0

    def host(self, host: str, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", f"{self.name}-{host}", *argv], capture_output=True, text=True,
                              timeout=30)

    def probe(self, mode: str, *args: str) -> subprocess.Popen:
        ns = f"{self.name}-{'h1' if mode == 'send' else 'h2'}"
        proc = subprocess.Popen(["ip", "netns", "exec", ns, PY, str(HERE / "_probe.py"), mode, *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.probes.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=10)
        if proc in self.probes:
            self.probes.remove(proc)

    def run_once(self, interval: float) -> dict:
        """One add_router_interface timed to the first routed datagram at h2."""
        recv = self.probe("recv", H2, str(PORT), "--timeout", "20")
        recv.stdout.readline()                                  # ready
        send = self.probe("send", H2, str(PORT), "--interval", str(interval))
        time.sleep(1.0)
        try:
            t0 = time.monotonic()
            api = self.interface(add=True)
            out, err = recv.communicate(timeout=30)
            if not out.strip():
                raise RuntimeError(f"{self.kind}: the receiving probe printed nothing: {err[-500:]}")
            got = json.loads(out.strip().splitlines()[-1])
        finally:
            self.stop(send)
            if recv in self.probes:
                self.stop(recv)
        if got.get("timeout"):
            return {"error": "no datagram within 20 s"}
        if got["arrived"] < t0:
            return {"error": "a datagram arrived before the interface was made (the last run's flows?)"}
        return {"seconds": got["arrived"] - t0, "api": api, "after_answer": got["arrived"] - t0 - api,
                "ttl": got["ttl"], "sent_after_start": got["sent"] - t0}

    def reset(self, interval: float) -> None:
        """Remove the interface; wait until nothing gets through any more."""
        self.interface(add=False)
        for _ in range(20):
            time.sleep(0.5)
            recv = self.probe("recv", H2, str(PORT), "--timeout", "0.5")
            recv.stdout.readline()
            send = self.probe("send", H2, str(PORT), "--interval", str(interval))
            out, _ = recv.communicate(timeout=10)
            self.probes.remove(recv)
            self.stop(send)
            if json.loads(out.strip().splitlines()[-1]).get("timeout"):
                return
        raise RuntimeError(f"{self.kind}: datagrams still routed 10 s after remove_router_interface")

    def close(self) -> None:
        for proc in list(self.probes):
            try:
                self.stop(proc)
            except Exception:
                pass
        if self.name:
            down = kumoflow("down", self.name)
            if down.returncode != 0:
                print(f"{self.kind}: kumoflow down {self.name}: {down.stdout}{down.stderr}", file=sys.stderr)
        if self.ctl is not None and self.ctl.poll() is None:
            os.killpg(self.ctl.pid, signal.SIGTERM)
            try:
                self.ctl.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.ctl.pid, signal.SIGKILL)


def run(args) -> dict:
    results: dict = {"machine": benchlib.machine(tools=(("ovs-vswitchd", "--version"),)), "args": vars(args),
                     "runs": {}}
    tmp = Path(tempfile.mkdtemp(prefix="kfrif-"))
    clouds: list[Cloud] = []
    try:
        for kind in ("kumoflow", "ovs"):
            clouds.append(Cloud(kind, tmp))
            results["runs"][kind] = []
        time.sleep(args.settle)
        busy = []
        for i in range(args.runs):
            for cloud in clouds:
                b0 = benchlib.busy_seconds()
                t = time.monotonic()
                r = cloud.run_once(args.interval)
                r["machine_busy"] = round((benchlib.busy_seconds() - b0) / (time.monotonic() - t), 2)
                busy.append(r["machine_busy"])
                results["runs"][cloud.kind].append(r)
                print(f"  #{i + 1} {cloud.kind}: " + (f"{r['seconds'] * 1000:.1f} ms (API answer "
                      f"{r['api'] * 1000:.1f} ms, TTL {r['ttl']})" if "seconds" in r else r["error"]), flush=True)
                cloud.reset(args.interval)
        results["load_end"] = os.getloadavg()[0]
    finally:
        for cloud in clouds:
            cloud.close()
    return results


def report(results: dict) -> str:
    lines = benchlib.machine_lines(results["machine"]) + [f"- command: `{results.get('command', '')}`",
                                                          f"- load average at the end: {results.get('load_end', 0):.1f}"]
    rows, bad = [], []
    med = {}
    for kind, runs in results["runs"].items():
        ok = [r for r in runs if "seconds" in r and r.get("ttl") == 63]
        bad += [f"{kind}: {r.get('error') or 'TTL %s' % r.get('ttl')}" for r in runs if r not in ok]
        if not ok:
            rows.append([kind, "-", "-", "-", "-", f"0/{len(runs)}"])
            continue
        s = [r["seconds"] * 1000 for r in ok]
        med[kind] = statistics.median(s)
        rows.append([kind, f"{statistics.median(s):.1f} ms", f"{min(s):.1f} / {max(s):.1f} ms",
                     f"{statistics.median(r['api'] * 1000 for r in ok):.1f} ms",
                     f"{statistics.median(r['after_answer'] * 1000 for r in ok):.1f} ms", f"{len(ok)}/{len(runs)}"])
    busy = [r["machine_busy"] for runs in results["runs"].values() for r in runs if "machine_busy" in r]
    lines += ["", f"add_router_interface to the first routed datagram (TTL 63) at the other host; probes every "
              f"{results['args']['interval'] * 1000:g} ms; the two switches' runs alternating.", "",
              benchlib.md_table(["switch", "median", "min / max", "API answer (median)",
                                 "answer to first packet (median)", "runs"], rows)]
    if "kumoflow" in med and "ovs" in med:
        lines += ["", f"kumoflow / Open vSwitch (median time, lower is better): {med['kumoflow'] / med['ovs']:.2f}x"]
    if busy:
        lines += ["", f"The machine's CPUs were {statistics.median(busy) / 2:.0%} busy (median over the runs; "
                  f"2 CPUs)."]
    if bad:
        lines += ["", "**Runs without a figure**: " + "; ".join(bad)]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=9, help="runs per switch (default 9)")
    ap.add_argument("--interval", type=float, default=0.001, help="probe period, seconds (default 0.001)")
    ap.add_argument("--settle", type=float, default=4.0, help="wait after the networks are up (default 4 s)")
    benchlib.add_output_args(ap, "2 runs per switch: a smoke test, not a figure")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (namespaces, Open vSwitch)", file=sys.stderr)
        return 2
    if args.quick:
        args.runs = 2
    benchlib.exit_on_sigterm()
    results = run(args)
    results["command"] = "sudo " + benchlib.command_line()
    if args.json:
        benchlib.write_json(args.json, results)
    print()
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
