#!/usr/bin/env python3
"""The browser UI with a big network: time to first render, counter update latency, API calls per page.

    sudo .venv/bin/python benchmarks/ui/render.py            # the k=4 fat-tree (20 kumoflow switches), 1,000 flows each
    sudo .venv/bin/python benchmarks/ui/render.py --quick    # the ring (6 Open vSwitch bridges), 100 flows each
    sudo .venv/bin/python benchmarks/ui/render.py --topology fattree --flows 2000 --loads 5 --samples 20

Needs root and Open vSwitch (the emulator), and Debian's chromium (driven
by Playwright, pointed at the system browser). The topology comes up under
a name of its own with `kumoflow controller --app fabric --api`, every pair
of hosts pings, and --flows flows are added by hand to each switch in table
60, outside the controller's pipeline (so its reconciler leaves them
alone), with ovs-ofctl. Then, in headless chromium at 1280x800, logged in:

1. First render. The page loaded anew (--loads times): the topology page
   until every switch and every link is drawn, a switch page (the switch
   with the most flows) until every flow row is there, the tenants page
   until its tables are. Reported: milliseconds from the start of the
   navigation (the page's own performance.now()), median and max.
2. API calls per page load: the requests each page makes to the API (its
   own files aside; the event stream counted apart).
3. Counter update latency. On the switch page of h1's edge switch, one
   ping from h1 (--samples times, a random 0-1 s apart): from just before
   the ping is sent to the moment the page shows the new count, for the
   port counter of h1's port (rx packets, from the stream's port counters)
   and for h1's flow (its n_packets, from the stream's flow counters: a
   FLOW_STATS of the whole switch each period). The controller snapshots
   counters once a period (1 s), so half a period is expected on average.
4. What an open page costs the controller: its CPU over --idle seconds with
   no page, with the topology page, and with the switch page open.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # benchmarks/: benchlib
import benchlib  # noqa: E402

benchlib.use_src()
from kumoflow.net import Network, state  # noqa: E402

#: what its quick run needs (tests/integration/test_benchmarks.py marks it so)
REQUIRES = ("root", "ovs")
EXAMPLES = benchlib.REPO / "examples"
TABLE = 60          # outside the pipeline (pipeline.py ends at 40): the reconciler leaves it alone


def ofctl_target(net: Network, switch: str) -> str:
    plan = next(s for s in net.plan.switches if s.name == switch)
    if plan.kind == "ovs":
        return plan.bridge
    record = state.read(net.name) or {}
    listen = next(s["listen"] for s in record.get("switches", []) if s["name"] == switch)
    port, host = listen.removeprefix("ptcp:").split(":")
    return f"tcp:{host}:{port}"


def add_flows(net: Network, switch: str, n: int, tmp: Path) -> None:
    lines = [f"table={TABLE},priority={100 + i % 50},tcp,nw_dst=10.{200 + i // 65536 % 50}.{i // 256 % 256}.{i % 256},"
             f"tp_dst={1 + i % 60000},actions=drop" for i in range(n)]
    path = tmp / f"flows-{switch}.txt"
    path.write_text("\n".join(lines) + "\n")
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "add-flows", ofctl_target(net, switch), str(path)],
                   check=True, capture_output=True, timeout=120)


class Controller:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.api_port = benchlib.free_port()
        self.token = secrets.token_urlsafe(24)
        self.proc: subprocess.Popen | None = None
        self.listen = ""

    def start(self) -> None:
        status = self.tmp / "status.json"
        log = open(self.tmp / "controller.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kumoflow.cli", "controller", "--app", "fabric", "--listen", "tcp:127.0.0.1:0",
             "--api", f"127.0.0.1:{self.api_port}", "--admin-token", self.token, "--store", "none",
             "--status-file", str(status), "--settle", "2"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(benchlib.REPO / "src")})
        deadline = time.monotonic() + 30
        while not status.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the controller did not start (see controller.log)")
            time.sleep(0.05)
        self.listen = json.loads(status.read_text())["listen"][0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def wait_until(predicate, timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def run(args: argparse.Namespace) -> dict:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("Debian's chromium is not installed (make setup installs it)")
    tmp = Path(tempfile.mkdtemp(prefix="kf-ui-bench-"))
    controller = Controller(tmp)
    name = f"ub{args.topology[0]}{secrets.token_hex(2)[:3]}"
    net = None
    results: dict[str, Any] = {"topology": args.topology, "flows_per_switch": args.flows}
    try:
        controller.start()
        net = Network.from_file(EXAMPLES / f"{args.topology}.yaml", name=name, fail_mode="secure",
                                controllers=[controller.listen])
        t = time.monotonic()
        net.up()
        net.wait_connected(120)
        results["network_up_s"] = round(time.monotonic() - t, 1)
        switches = [s.name for s in net.plan.switches]
        import yaml
        declared = yaml.safe_load((EXAMPLES / f"{args.topology}.yaml").read_text())["links"]
        expected_links = sum(1 for link in declared if link["src"] in switches and link["dst"] in switches)
        results["switches"] = len(switches)
        if not wait_until(lambda: net.ping_all(retries=1).ok, timeout=120, interval=1):
            raise RuntimeError("not every pair of hosts pings")
        for switch in switches:
            add_flows(net, switch, args.flows, tmp)
        import httpx

        api = httpx.Client(base_url=controller.url, headers={"X-Auth-Token": controller.token}, timeout=60)

        def topology_ready() -> bool:
            topo = api.get("/sdn/topology").json()
            return len(topo["switches"]) == len(switches) and len(topo["links"]) == expected_links
        if not wait_until(topology_ready, timeout=60):
            raise RuntimeError("the controller did not find every switch and link")
        n_links = len(api.get("/sdn/topology").json()["links"])
        results["links"] = n_links
        h1 = net.hosts[0]
        where = next(h for h in api.get("/sdn/hosts").json()["hosts"] if h["mac"] == h1.mac)
        edge = where["dpid"]
        edge_flows = len(api.get(f"/sdn/switches/{edge}/flows").json()["flows"])
        results["flows_on_the_switch_page"] = edge_flows

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(f"{controller.url}/ui/#/login")
            page.evaluate("t => { sessionStorage.setItem('kumoflow.token', t);"
                          " sessionStorage.setItem('kumoflow.role', 'admin'); }", controller.token)

            def load(route: str, ready: str) -> tuple[float, list[str]]:
                requests.clear()
                page.goto("about:blank")
                page.goto(f"{controller.url}/ui/{route}")
                page.wait_for_function(ready, timeout=120_000, polling="raf")
                ms = page.evaluate("performance.now()")
                page.wait_for_function("document.getElementById('status').dataset.state === 'live'",
                                       timeout=30_000)
                calls = [u for u in requests if u.startswith("http") and not urlparse(u).path.startswith("/ui/")]
                return ms, calls

            pages = {
                "topology": ("#/topology", f"document.querySelectorAll('svg.map g.switch').length === {len(switches)}"
                                           f" && document.querySelectorAll('svg.map path.link').length === {n_links}"),
                "switch": (f"#/switch/{edge}", f"document.querySelectorAll('tr[data-key]').length === {edge_flows}"),
                "tenants": ("#/tenants", "document.querySelector('#create-network') !== null"),
            }
            render: dict[str, Any] = {}
            for key, (route, ready) in pages.items():
                times, calls = [], []
                for _ in range(args.loads):
                    ms, calls = load(route, ready)
                    times.append(ms)
                stream = [u for u in calls if "/sdn/events?" in u]
                fetched = [u for u in calls if u not in stream]
                render[key] = {"ms": times, "median_ms": statistics.median(times), "max_ms": max(times),
                               "api_calls": len(fetched), "streams": len(stream),
                               "calls": sorted({urlparse(u).path.replace(edge, "{switch}") for u in fetched})}
                print(f"  {key}: first render {statistics.median(times):.0f} ms (median of {len(times)}), "
                      f"{len(fetched)} API calls + {len(stream)} stream", file=sys.stderr)
            results["render"] = render

            # counter update latency on h1's edge switch page
            page.goto("about:blank")
            page.goto(f"{controller.url}/ui/#/switch/{edge}")
            page.wait_for_function(pages["switch"][1], timeout=120_000)
            page.wait_for_function("document.getElementById('status').dataset.state === 'live'", timeout=30_000)
            page.evaluate("""([port, mac]) => {
                window.__seen = {port: [], flow: []};
                const watch = (el, kind) => new MutationObserver(() =>
                    window.__seen[kind].push(performance.timeOrigin + performance.now())).observe(el,
                    {childList: true, characterData: true, subtree: true});
                watch(document.querySelector(`tr[data-port="${port}"] td.rx_packets`), 'port');
                for (const row of document.querySelectorAll('tr[data-key]')) {
                    if (row.dataset.key.includes('dl_src=' + mac) && row.dataset.key.startsWith('0|'))
                        watch(row.querySelector('td.n_packets'), 'flow');
                }
            }""", [str(where["port_no"]), h1.mac])
            target = net.hosts[-1].ip
            port_lat, flow_lat = [], []
            for _ in range(args.samples):
                time.sleep(random.uniform(1.2, 2.2))      # past the last change, at a random phase of the period
                page.evaluate("window.__seen = {port: [], flow: []}")
                sent = time.time() * 1000
                h1.run(["ping", "-c", "1", "-W", "1", target], check=False)
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    seen = page.evaluate("window.__seen")
                    if seen["port"] and seen["flow"]:
                        break
                    time.sleep(0.02)
                if seen["port"]:
                    port_lat.append(min(seen["port"]) - sent)
                if seen["flow"]:
                    flow_lat.append(min(seen["flow"]) - sent)
            results["latency"] = {"port_ms": port_lat, "flow_ms": flow_lat, "samples": args.samples}
            print(f"  counter latency: port {statistics.median(port_lat) if port_lat else '-'} ms, "
                  f"flow {statistics.median(flow_lat) if flow_lat else '-'} ms", file=sys.stderr)

            # what an open page costs the controller
            pid = controller.proc.pid
            cpu: dict[str, float] = {}
            for key, route in (("no page", None), ("topology page", "#/topology"),
                               ("switch page", f"#/switch/{edge}")):
                page.goto("about:blank")
                if route:
                    page.goto(f"{controller.url}/ui/{route}")
                    page.wait_for_function("document.getElementById('status').dataset.state === 'live'",
                                           timeout=30_000)
                time.sleep(1)
                before = benchlib.cpu_seconds(pid)
                time.sleep(args.idle)
                cpu[key] = (benchlib.cpu_seconds(pid) - before) / args.idle
            results["controller_cpu"] = cpu
            results["console_errors"] = errors
            browser.close()
    finally:
        try:
            if net is not None:
                net.down()
        finally:
            controller.stop()
    results["failed"] = bool(results.get("console_errors")) or not results.get("latency", {}).get("port_ms")
    return results


def stats_ms(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"{statistics.median(values):.0f} / {p90:.0f} / {max(values):.0f}"


def report(r: dict) -> str:
    lines = [f"# UI: {r['topology']} ({r['switches']} switches, {r['links']} links), {r['flows_per_switch']:,} flows "
             f"added per switch; the switch page shows {r['flows_on_the_switch_page']:,} flows", ""]
    rows = [[page, f"{v['median_ms']:.0f}", f"{v['max_ms']:.0f}", v["api_calls"], v["streams"], ", ".join(v["calls"])]
            for page, v in r["render"].items()]
    lines.append(benchlib.md_table(["page", "first render ms (median)", "max", "API calls", "event streams",
                                    "what it asks"], rows))
    lat = r["latency"]
    lines += ["", f"Counter update latency, from the packet sent to the number shown (ms, median / p90 / max of "
                  f"{lat['samples']}; counters are snapshot every 1 s):", ""]
    lines.append(benchlib.md_table(["counter", "ms"], [["port rx packets (PORT_STATS of every switch)",
                                                        stats_ms(lat["port_ms"])],
                                                       ["flow n_packets (FLOW_STATS of the switch shown)",
                                                        stats_ms(lat["flow_ms"])]]))
    lines += ["", "The controller's CPU (share of one core) with:", ""]
    lines.append(benchlib.md_table(["open", "CPU"], [[k, f"{v * 100:.1f} %"] for k, v in r["controller_cpu"].items()]))
    if r.get("console_errors"):
        lines += ["", f"Console errors (a failure): {r['console_errors']}"]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--topology", default="fattree", help="an example: fattree (default), ring or mesh")
    ap.add_argument("--flows", type=int, default=1000, help="flows added to each switch (default 1000)")
    ap.add_argument("--loads", type=int, default=5, help="page loads timed per page (default 5)")
    ap.add_argument("--samples", type=int, default=20, help="counter latency samples (default 20)")
    ap.add_argument("--idle", type=float, default=10.0, help="seconds the controller's CPU is read (default 10)")
    benchlib.add_output_args(ap, quick="the ring, 100 flows per switch, 2 loads, 3 samples: a smoke test")
    args = ap.parse_args()
    if args.quick:
        args.topology, args.flows, args.loads, args.samples, args.idle = "ring", 100, 2, 3, 2.0
    return benchlib.run_main(args, run, report, root="namespaces, links, switches",
                             packages=["playwright"], tools=[("chromium", "--version"), ("ovs-vswitchd", "--version")])


if __name__ == "__main__":
    sys.exit(main())
