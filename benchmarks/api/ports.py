#!/usr/bin/env python3
"""The Neutron API under load: creating ports with 10,000 already present,
and a port bound to a switch port turning ACTIVE.

    .venv/bin/python benchmarks/api/ports.py              # 10,000 ports present; 1,000 single, 50 x 100 bulk
    .venv/bin/python benchmarks/api/ports.py --quick      # 1,000 present, a few of each: a smoke test

No root: a real `kumoflow controller --app fabric --api 127.0.0.1:0 --store
sqlite:TMP` process (its store on the temporary directory's file system:
every commit waits for its fsync), a real kumoflow switch process
(`_api_switch.py`: the switch runtime with ports in memory, up) connected
to it over TCP, and this process as the API client (httpx, one keep-alive
connection, requests one after another).

1. A network and a /16 subnet; `--present` ports (10,000) made with bulk
   creates of 500 (their rate is reported too).
2. single: `--single` POST /v2.0/ports, one port each (an address
   allocated, a MAC generated, the default security group): latency of
   each, p50/p99, and ports/s.
3. bulk: `--bulk` POSTs of `--batch` ports each (one store commit per
   request): latency per request, ports/s.
4. reads: GET of one port, and the list of all ports (`--present` and
   more), filtered by name (one match) and whole.
5. bound: `--bound` POSTs of a port with `binding:host_id` (the switch's
   datapath id) and `binding:profile` `{"port_no": N}` (N cycling over
   the switch's ports): the POST's latency, and the time from sending it to
   the port read as ACTIVE (the answer to the POST itself carries the
   status: a port's status is computed when read, from the controller's
   view of the switch port). The time from a POST to the port's flow in
   its switch is port_to_flow.py's (the router app's neighbour flow).

Timing is wall time per request on the client (time.perf_counter around
the call), so it includes HTTP on loopback and the client's JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # benchmarks/: benchlib
import benchlib  # noqa: E402

benchlib.use_src()

HERE = Path(__file__).resolve().parent
TOKEN = "bench-admin-token"


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


class Stack:
    """The controller and the switch, as processes."""

    def __init__(self, tmp: Path, switch_ports: int) -> None:
        self.tmp = tmp
        self.switch_ports = switch_ports
        self.procs: list[subprocess.Popen] = []

    def start(self) -> str:
        status = self.tmp / "status.json"
        log = open(self.tmp / "controller.log", "wb")
        env = {**os.environ, "PYTHONPATH": str(benchlib.SRC)}
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "kumoflow.cli", "controller", "--app", "fabric", "--listen", "tcp:127.0.0.1:0",
             "--api", "127.0.0.1:0", "--admin-token", TOKEN, "--store", f"sqlite:{self.tmp / 'kumoflow.db'}",
             "--status-file", str(status), "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT, env=env))
        deadline = time.monotonic() + 30
        while not status.exists():
            if self.procs[0].poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the controller did not start: {(self.tmp / 'controller.log').read_text()[-2000:]}")
            time.sleep(0.05)
        info = json.loads(status.read_text())
        [listen] = info["listen"]
        self.procs.append(subprocess.Popen(
            [sys.executable, str(HERE / "_api_switch.py"), "--controller", listen, "--dpid", "1",
             "--ports", str(self.switch_ports)], stdout=open(self.tmp / "switch.log", "wb"),
            stderr=subprocess.STDOUT, env=env))
        return info["api"]

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def run(args: argparse.Namespace) -> dict:
    import httpx

    with tempfile.TemporaryDirectory(prefix="kf-bench-api-") as tmp:
        stack = Stack(Path(tmp), args.switch_ports)
        try:
            url = stack.start()
            c = httpx.Client(base_url=url, headers={"X-Auth-Token": TOKEN}, timeout=120)

            def call(method: str, path: str, body=None, want: int = 200, **params):
                t0 = time.perf_counter()
                r = c.request(method, path, json=body, params=params or None)
                elapsed = time.perf_counter() - t0
                if r.status_code != want:
                    raise SystemExit(f"{method} {path}: {r.status_code} {r.text[:500]}")
                return elapsed, r.json()

            deadline = time.monotonic() + 30
            while not call("GET", "/sdn/switches", counters="false")[1]["switches"]:
                if time.monotonic() > deadline:
                    raise SystemExit("the switch did not connect")
                time.sleep(0.1)

            _, net = call("POST", "/v2.0/networks", {"network": {"name": "bench"}}, 201)
            network = net["network"]["id"]
            call("POST", "/v2.0/subnets", {"subnet": {"network_id": network, "cidr": "10.0.0.0/16"}}, 201)

            # 1. what is there before
            t0 = time.perf_counter()
            made = 0
            while made < args.present:
                n = min(500, args.present - made)
                call("POST", "/v2.0/ports", {"ports": [{"network_id": network, "name": f"pre{made + i}"}
                                                       for i in range(n)]}, 201)
                made += n
            preload = time.perf_counter() - t0

            # 2. single
            single = []
            t0 = time.perf_counter()
            for i in range(args.single):
                single.append(call("POST", "/v2.0/ports", {"port": {"network_id": network, "name": f"s{i}"}}, 201)[0])
            single_wall = time.perf_counter() - t0

            # 3. bulk
            bulk = []
            t0 = time.perf_counter()
            for b in range(args.bulk):
                bulk.append(call("POST", "/v2.0/ports", {"ports": [{"network_id": network, "name": f"b{b}-{i}"}
                                                                   for i in range(args.batch)]}, 201)[0])
            bulk_wall = time.perf_counter() - t0

            # 4. reads
            _, one = call("GET", "/v2.0/ports", name="s0")
            port_id = one["ports"][0]["id"]
            show = [call("GET", f"/v2.0/ports/{port_id}")[0] for _ in range(args.reads)]
            by_name = [call("GET", "/v2.0/ports", name="s1")[0] for _ in range(args.reads)]
            whole = []
            for _ in range(max(1, args.reads // 10)):
                elapsed, listed = call("GET", "/v2.0/ports")
                whole.append(elapsed)
            total_ports = len(listed["ports"])

            # 5. bound: POST with a binding to a switch port that is up -> ACTIVE
            bound_post, to_active, answered_active = [], [], 0
            for i in range(args.bound):
                body = {"port": {"network_id": network, "name": f"vm{i}", "binding:host_id": "0x1",
                                 "binding:profile": {"port_no": 1 + i % args.switch_ports}}}
                t0 = time.perf_counter()
                elapsed, made_port = call("POST", "/v2.0/ports", body, 201)
                status = made_port["port"]["status"]
                answered_active += status == "ACTIVE"
                while status != "ACTIVE":
                    if time.perf_counter() - t0 > 10:
                        raise SystemExit(f"port {made_port['port']['id']} not ACTIVE after 10 s")
                    status = call("GET", f"/v2.0/ports/{made_port['port']['id']}")[1]["port"]["status"]
                to_active.append(time.perf_counter() - t0)
                bound_post.append(elapsed)
            c.close()
        finally:
            stack.stop()
    return {
        "present": args.present, "preload_s": preload, "preload_rate": args.present / preload if preload else None,
        "single": single, "single_wall": single_wall, "bulk": bulk, "bulk_wall": bulk_wall, "batch": args.batch,
        "show": show, "by_name": by_name, "whole": whole, "total_ports": total_ports,
        "bound_post": bound_post, "to_active": to_active, "answered_active": answered_active,
    }


def report(r: dict, args: argparse.Namespace) -> str:
    def row(name: str, values: list[float], rate: str) -> list[str]:
        return [name, str(len(values)), ms(percentile(values, 0.5)), ms(percentile(values, 0.99)), ms(max(values)),
                rate]

    rows = [
        row("POST /v2.0/ports, 1 port", r["single"], f"{len(r['single']) / r['single_wall']:,.0f} ports/s"),
        row(f"POST /v2.0/ports, {r['batch']} ports (bulk)", r["bulk"],
            f"{len(r['bulk']) * r['batch'] / r['bulk_wall']:,.0f} ports/s"),
        row("POST /v2.0/ports, 1 port bound to a switch port", r["bound_post"], "-"),
        row("... from sending it to the port read ACTIVE", r["to_active"], "-"),
        row("GET /v2.0/ports/{id}", r["show"], "-"),
        row(f"GET /v2.0/ports?name=X (1 of {r['total_ports']:,})", r["by_name"], "-"),
        row(f"GET /v2.0/ports (all {r['total_ports']:,})", r["whole"], "-"),
    ]
    lines = [benchlib.md_table(["request", "n", "p50", "p99", "max", "rate"], rows), "",
             f"{r['present']:,} ports made first by bulk creates of 500 in {r['preload_s']:.1f} s "
             f"({r['preload_rate']:,.0f} ports/s). {r['answered_active']} of {len(r['bound_post'])} bound ports "
             f"were ACTIVE in the answer to their POST (status is computed from the switch's port when read). "
             f"The time to the port's flow in its switch: benchmarks/api/port_to_flow.py."]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--present", type=int, help="ports made before measuring (default 10,000; --quick 1,000)")
    ap.add_argument("--single", type=int, help="single-port creates measured (default 1,000; --quick 50)")
    ap.add_argument("--bulk", type=int, help="bulk creates measured (default 50; --quick 5)")
    ap.add_argument("--batch", type=int, help="ports per bulk create (default 100; --quick 20)")
    ap.add_argument("--bound", type=int, help="bound ports measured to ACTIVE (default 200; --quick 20)")
    ap.add_argument("--reads", type=int, help="reads of each kind (default 100; --quick 10)")
    ap.add_argument("--switch-ports", type=int, default=64, help="ports of the switch (default 64)")
    benchlib.add_output_args(ap, quick="1,000 ports present and a few requests of each kind: a smoke test")
    args = ap.parse_args()
    defaults = {"present": (10000, 1000), "single": (1000, 50), "bulk": (50, 5), "batch": (100, 20),
                "bound": (200, 20), "reads": (100, 10)}
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    m = benchlib.machine(packages=("fastapi", "uvicorn", "httpx", "uvloop"))
    print("\n".join(["# API: ports", "", *benchlib.machine_lines(m), "", f"`{benchlib.command_line()}`", ""]))
    results = run(args)
    print(report(results, args))
    if args.json:
        benchlib.write_json(args.json, {"machine": m, "args": vars(args), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
