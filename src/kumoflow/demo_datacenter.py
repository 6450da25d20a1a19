"""The datacenter demo (`kumoflow demo`, `make demo`): kumoflow's controller
with every cloud app and its API, a virtual datacenter on the emulator
(examples/datacenter.yaml: two sites, hypervisors of both switch kinds, two
tenants with the same addresses, web servers, an ISP's BGP router),
provisioned through the API with `kumoflow apply` (examples/datacenter-*.yaml),
then checked with real ping, traceroute, curl, nc and iperf3: a report of
PASS/FAIL with the figures. Everything is removed at the end, or with
``--keep`` when Ctrl-C is pressed. docs/demo.md says what each check proves.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.table import Table

#: the cloud files, applied in this order (the admin's public network first)
CLOUD_FILES = ("datacenter-public.yaml", "datacenter-red.yaml", "datacenter-blue.yaml")
APPS = ("tenants", "router", "bgp", "firewall", "lb", "qos")
RED = ("red1", "red2", "web1", "web2", "web3")
BLUE = ("blue1", "blue2", "blue3")
WEB = ("web1", "web2", "web3")
VIP = "10.0.1.100"
FLOATING = "203.0.113.50"          # red2's floating IP (datacenter-red.yaml)
OUTSIDE = "198.51.100.1"           # the ISP's web page, on its loopback: reached by a route learned over BGP
LIMIT_MBPS = 10.0                  # red1's QoS policy
LOCAL_AS, PEER_AS = 64512, 65001
REQUESTS = 9                       # to the VIP
IPERF_SECONDS, IPERF_OMIT = 5, 2


@dataclass
class Check:
    area: str
    what: str
    ok: bool
    figure: str


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    def add(self, area: str, what: str, ok: bool, figure: str) -> bool:
        self.checks.append(Check(area, what, bool(ok), figure))
        return bool(ok)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def table(self) -> Table:
        table = Table(title="the datacenter, checked")
        for column in ("area", "check", "figure", ""):
            table.add_column(column)
        for c in self.checks:
            table.add_row(c.area, c.what, c.figure, "[green]PASS[/]" if c.ok else "[red]FAIL[/]")
        return table


class Controller:
    """`kumoflow controller` as a process of its own, stopped by its PID."""

    def __init__(self, tmp: Path, token: str, namespace: str) -> None:
        self.tmp, self.token, self.namespace = tmp, token, namespace
        self.proc: subprocess.Popen | None = None
        self.status: dict = {}
        self.log = tmp / "controller.log"

    def start(self, timeout: float = 30.0) -> None:
        status = self.tmp / "status.json"
        argv = [sys.executable, "-m", "kumoflow.cli", "controller", "--listen", "tcp:127.0.0.1:0",
                "--status-file", str(status), "--store", f"sqlite:{self.tmp / 'kumoflow.db'}",
                "--api", "127.0.0.1:0", "--admin-token", self.token, "--echo-interval", "2",
                "--set", f"bgp.namespace={self.namespace}", "--set", "bgp.hold_time=3"]
        for app in APPS:
            argv += ["--app", app]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)   # Ctrl-C is the demo's to handle
        deadline = time.monotonic() + timeout
        while not status.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the controller exited with {self.proc.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the controller did not start within {timeout:g}s: {self.tail()}")
            time.sleep(0.05)
        self.status = json.loads(status.read_text())

    @property
    def target(self) -> str:
        return self.status["listen"][0]

    @property
    def api(self) -> str:
        return self.status["api"]

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def tail(self, n: int = 15) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join([line for line in lines if " DEBUG " not in line][-n:])


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def run_datacenter(examples: Path, keep: bool = False) -> int:
    from kumoflow.net import Network

    console = Console(highlight=False)
    console.width = max(console.width, 120)
    if os.geteuid() != 0:
        console.print("[red]the datacenter demo needs root (namespaces, links, Open vSwitch, FRR)[/]")
        return 1
    started = time.monotonic()
    name = f"dc{os.getpid() % 10000}"
    net = Network.from_file(examples / "datacenter.yaml", name=name)
    token = secrets.token_urlsafe(18)
    tmp = Path(tempfile.mkdtemp(prefix="kumoflow-demo-"))
    controller = Controller(tmp, token, net["netnode"].netns)
    report = Report()
    is_up = False
    # SIGTERM tears down as Ctrl-C does
    previous = signal.signal(signal.SIGTERM, _interrupt)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    status = 1
    try:
        with console.status("starting the controller ..."):
            controller.start()
        console.print(f"[bold]kumoflow controller[/] (apps {', '.join(APPS)}) on {controller.target}, "
                      f"API {controller.api}")
        with console.status("provisioning the cloud with kumoflow apply ..."):
            for file in CLOUD_FILES:
                done = subprocess.run([sys.executable, "-m", "kumoflow.cli", "apply", str(examples / file),
                                       "--api", controller.api, "--token", token],
                                      capture_output=True, text=True, timeout=120)
                if done.returncode != 0:
                    raise RuntimeError(f"kumoflow apply {file}: {done.stdout}{done.stderr}")
                summary = (done.stdout.strip().splitlines() or [""])[-1].rsplit(": ", 1)[-1]
                console.print(f"kumoflow apply examples/{file}: {summary}")
        import httpx

        api = httpx.Client(base_url=controller.api, headers={"X-Auth-Token": token}, timeout=30)
        with console.status("bringing up the datacenter (namespaces, hypervisors, tunnels, FRR) ..."):
            net = Network.from_file(examples / "datacenter.yaml", name=name, controllers=[controller.target])
            net.up()
            is_up = True
            net.wait_connected(60)
            from kumoflow.net.binding import bind_ports

            bind_ports(net.plan, controller.api, token)
            extras(api)
        kinds = ", ".join(f"{s.name} ({'Open vSwitch' if s.kind == 'ovs' else 'kumoflow switch'})"
                          for s in net.plan.switches)
        console.print(f"[bold]datacenter {name}[/] up in {time.monotonic() - started:.0f}s: {len(net.hosts)} hosts "
                      f"(namespaces), hypervisors {kinds}; sites east and west with a routed underlay")
        run_checks(console, net, api, report)
        console.print(report.table())
        passed = sum(c.ok for c in report.checks)
        console.print(f"[bold {'green' if report.ok else 'red'}]{passed} of {len(report.checks)} checks "
                      f"passed[/] in {time.monotonic() - started:.0f}s")
        if not report.ok:
            console.print("[dim]the controller's last lines:[/]")
            console.print(controller.tail(), markup=False)
        status = 0 if report.ok else 1
        ui = controller.api.rstrip("/") + "/ui/"
        try:
            has_ui = httpx.get(ui, timeout=5).status_code == 200
        except httpx.HTTPError:
            has_ui = False
        console.print(f"[bold]{'the UI' if has_ui else 'the API docs'}:[/] "
                      f"{ui if has_ui else controller.api.rstrip('/') + '/docs'}   [bold]admin token:[/] {token}")
        if keep:
            console.print(f"everything stays up (topology {name}): `kumoflow exec --topo {name} HOST -- COMMAND` "
                          f"in a host ({', '.join(h.name for h in net.hosts)}); Ctrl-C removes it all")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                console.print()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        status = 130
    except Exception as exc:        # a bring-up that failed: say why, then remove what was made
        console.print(str(exc), style="red", markup=False)
        console.print(controller.tail(), markup=False)
        status = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)      # a second Ctrl-C must not cut the teardown short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with console.status("tearing down ..."):
            left = teardown(net if is_up else None, controller, name)
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        if left:
            console.print(f"[red]left behind: {', '.join(left)}[/]")
            status = status or 1
        else:
            console.print("datacenter removed, controller stopped: no namespace, link, bridge or process left")
    return status


def _interrupt(signum, frame):
    raise KeyboardInterrupt()


def teardown(net, controller: Controller, name: str) -> list[str]:
    from kumoflow.net import Network
    from kumoflow.net.errors import TeardownError

    left: list[str] = []
    try:
        if net is not None:
            net.down()
        else:
            Network.teardown(name)
    except TeardownError as exc:
        left += exc.leftovers or [str(exc)]
    except Exception as exc:          # whatever happens, the controller is stopped too
        left.append(f"topology {name}: {exc}")
    code = controller.stop()
    if code not in (0, None):
        left.append(f"the controller exited with {code}")
    return left


def extras(api) -> None:
    """What the cloud files cannot say yet: the BGP speaker and its peer (the admin's), and red's firewall
    group on red2 (an ingress policy: ssh from outside denied and logged, the rest on to the security
    groups)."""
    def ok(response):
        if response.status_code >= 400:
            raise RuntimeError(f"{response.request.method} {response.request.url.path}: {response.status_code} "
                               f"{response.text[:300]}")
        return response.json()

    public = ok(api.get("/v2.0/networks", params={"name": "public"}))["networks"][0]
    speaker = ok(api.post("/v2.0/bgp-speakers", json={"bgp_speaker": {
        "name": "edge", "local_as": LOCAL_AS, "ip_version": 4, "advertise_tenant_networks": False,
        "advertise_floating_ip_host_routes": True}}))["bgp_speaker"]
    peer = ok(api.post("/v2.0/bgp-peers", json={"bgp_peer": {
        "name": "isp", "peer_ip": "203.0.113.1", "remote_as": PEER_AS}}))["bgp_peer"]
    ok(api.put(f"/v2.0/bgp-speakers/{speaker['id']}/add_bgp_peer", json={"bgp_peer_id": peer["id"]}))
    ok(api.put(f"/v2.0/bgp-speakers/{speaker['id']}/add_gateway_network", json={"network_id": public["id"]}))
    red2 = ok(api.get("/v2.0/ports", params={"name": "red2"}))["ports"][0]
    deny = ok(api.post("/v2.0/fwaas/firewall_rules", json={"firewall_rule": {
        "name": "no-ssh-from-outside", "project_id": "red", "protocol": "tcp", "destination_port": "22",
        "source_ip_address": "203.0.113.0/24", "action": "deny", "log": True}}))["firewall_rule"]
    allow = ok(api.post("/v2.0/fwaas/firewall_rules", json={"firewall_rule": {
        "name": "the-rest", "project_id": "red", "action": "allow"}}))["firewall_rule"]
    policy = ok(api.post("/v2.0/fwaas/firewall_policies", json={"firewall_policy": {
        "name": "edge-in", "project_id": "red", "firewall_rules": [deny["id"], allow["id"]]}}))["firewall_policy"]
    ok(api.post("/v2.0/fwaas/firewall_groups", json={"firewall_group": {
        "name": "edge", "project_id": "red", "ingress_firewall_policy_id": policy["id"],
        "ports": [red2["id"]]}}))


# --- the checks -----------------------------------------------------------------------------------

def ping(net, src: str, dst: str, *args: str) -> subprocess.CompletedProcess:
    return net[src].run(["ping", "-n", "-c", "1", "-W", "1", *args, dst], timeout=30)


def address(net, host: str) -> str:
    return net[host].ip


def echoes_received(net, host: str) -> int:
    """ICMP echo requests the host's kernel answered (InEchos of its /proc/net/snmp)."""
    lines = [line.split() for line in net[host].run(["cat", "/proc/net/snmp"]).stdout.splitlines()
             if line.startswith("Icmp:")]
    return int(lines[1][lines[0].index("InEchos")])


def reach_matrix(net, hosts: tuple[str, ...]) -> dict[tuple[str, str], bool]:
    pairs = [(a, b) for a in hosts for b in hosts if a != b]

    def one(pair):
        a, b = pair
        return pair, any(ping(net, a, address(net, b)).returncode == 0 for _ in range(3))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return dict(pool.map(one, pairs))


def curl(net, src: str, url: str, timeout: float = 2) -> str | None:
    done = net[src].run(["curl", "-s", "--connect-timeout", str(timeout), "-m", "5", url], timeout=30)
    return done.stdout.strip() if done.returncode == 0 else None


def tcp_open(net, src: str, dst: str, port: int) -> bool:
    return net[src].run(["nc", "-z", "-w", "2", dst, str(port)], timeout=30).returncode == 0


def run_checks(console: Console, net, api, report: Report) -> None:
    with console.status("waiting for the tenants' VMs to reach each other ..."):
        wait_until(lambda: ping(net, "red1", "10.0.2.11").returncode == 0
                   and ping(net, "blue1", "10.0.2.11").returncode == 0, 60)
    # isolation: the same addresses, two worlds
    with console.status("checking isolation and reachability ..."):
        red = reach_matrix(net, RED)
        blue = reach_matrix(net, BLUE)
    console.print(_reach_table("red's VMs (row pings column)", net, RED, red))
    console.print(_reach_table("blue's VMs, the same addresses", net, BLUE, blue))
    report.add("isolation", "red's VMs reach each other across sites and switch kinds",
               all(red.values()), f"{sum(red.values())}/{len(red)} pairs")
    report.add("isolation", "blue's VMs reach each other", all(blue.values()), f"{sum(blue.values())}/{len(blue)} pairs")
    figures = []
    apart = True
    for src, mine, theirs in (("red1", "red2", "blue2"), ("blue1", "blue2", "red2")):
        before = echoes_received(net, mine), echoes_received(net, theirs)
        ping(net, src, "10.0.2.11", "-c", "3", "-i", "0.2")
        after = echoes_received(net, mine), echoes_received(net, theirs)
        got = after[0] - before[0], after[1] - before[1]
        apart = apart and got == (3, 0)
        figures.append(f"{src} -> 10.0.2.11: {mine} {got[0]}, {theirs} {got[1]}")
    report.add("isolation", "the same address reaches the tenant's own VM, never the other's", apart,
               "; ".join(figures))
    leak = ping(net, "red1", "10.0.1.12").returncode == 0      # blue3's address; red has none there
    report.add("isolation", "red cannot reach blue's 10.0.1.12", not leak, "no answer" if not leak else "answered")

    # routing
    with console.status("checking routing ..."):
        out = ping(net, "red1", "10.0.2.11").stdout
        ttl = re.search(r"ttl=(\d+)", out)
        trace = net["red1"].run(["traceroute", "-I", "-n", "-q", "1", "-w", "1", "-m", "4", "10.0.2.11"], timeout=30).stdout
        hops = [line.split()[1] for line in trace.splitlines()[1:] if len(line.split()) > 1]
    report.add("routing", "red1 (10.0.1.11) -> red2 (10.0.2.11) through red's router",
               ttl is not None and ttl.group(1) == "63" and hops == ["10.0.1.1", "10.0.2.11"],
               f"ttl={ttl.group(1) if ttl else '-'}, traceroute {' > '.join(hops) or '-'}")
    gateways = {}
    for router in ("red-router", "blue-router"):
        found = api.get("/v2.0/routers", params={"name": router}).json()["routers"]
        info = (found[0].get("external_gateway_info") or {}) if found else {}
        gateways[router] = next((ip["ip_address"] for ip in info.get("external_fixed_ips") or ()), "?")
    with console.status("reaching the outside through the external gateways and the route learned over BGP ..."):
        # red1 and blue1 (same address, a kumoflow hypervisor) leave by SNAT to their router's gateway address;
        # red2 (behind Open vSwitch) has a floating IP: what it sends leaves as that address
        for src, how, expected in (("red1", "SNAT by red-router", gateways["red-router"]),
                                   ("blue1", "SNAT by blue-router", gateways["blue-router"]),
                                   ("red2", "its floating IP", FLOATING)):
            page = wait_until(lambda: curl(net, src, f"http://{OUTSIDE}:8080/"), 30, 1)
            seen = _sources(net["isp"].run_log)
            report.add("routing", f"{src} -> the ISP's web page {OUTSIDE} ({how})",
                       page is not None and expected in seen,
                       f"{'HTTP 200' if page else 'no answer'}, the ISP saw {expected}"
                       if expected in seen else f"the ISP saw {', '.join(sorted(seen)) or 'nobody'}")
        routes = _isp_routes(net)
    console.print(_bgp_table(routes))
    fip = f"{FLOATING}/32"
    report.add("routing", "BGP: the ISP learned red2's floating IP from the cloud", fip in routes,
               f"{fip} via {routes[fip]}" if fip in routes else f"ISP has {', '.join(routes) or 'nothing'}")

    # firewall
    with console.status("checking the firewall ..."):
        page = wait_until(lambda: curl(net, "isp", f"http://{FLOATING}/"), 20, 1)
        report.add("firewall", f"the outside -> red2's floating IP {FLOATING}:80 allowed", page == "red2",
                   f"HTTP answered by {page}" if page else "no answer")
        ssh_in = tcp_open(net, "red1", "10.0.2.11", 22)
        report.add("firewall", "ssh from red's subnet (red1 -> red2:22) allowed", ssh_in,
                   "connected" if ssh_in else "refused")
        ssh_out = tcp_open(net, "isp", FLOATING, 22)
        denied = wait_until(lambda: [d for d in api.get("/v2.0/fwaas/denied").json().get("denied", [])
                                     if d.get("destination_port") == 22], 10, 0.5) or []
        report.add("firewall", "ssh from outside (isp -> red2's floating IP :22) denied, in the denied log",
                   not ssh_out and bool(denied),
                   ("not connected" if not ssh_out else "CONNECTED")
                   + (f"; logged: {denied[0].get('source_ip_address')} -> {denied[0].get('destination_ip_address')}"
                      f":22 {denied[0].get('action')}" if denied else "; not logged"))

    # load balancing
    with console.status(f"{REQUESTS} requests to the load balancer's VIP ..."):
        wait_until(lambda: curl(net, "red1", f"http://{VIP}/"), 30, 0.5)
        spread = collections.Counter(curl(net, "red1", f"http://{VIP}/") for _ in range(REQUESTS))
    # round robin, its weights shifted away from a member that answers slower than the others: every member
    # serves, about a third each; every request is answered
    spread_ok = set(spread) == set(WEB)
    report.add("load balancer", f"{REQUESTS} requests to {VIP} spread over web1..3 (round robin)", spread_ok,
               ", ".join(f"{k or 'failed'} {v}" for k, v in sorted(spread.items(), key=lambda kv: str(kv[0]))))

    # QoS
    with console.status(f"iperf3 red1 -> red2 for {IPERF_SECONDS}s under the QoS limit ..."):
        mbps = _iperf(net, "red1", "red2")
    report.add("qos", f"red1's {LIMIT_MBPS:g} Mbit/s bandwidth limit (iperf3 TCP to red2, ±10 %)",
               mbps is not None and abs(mbps - LIMIT_MBPS) <= LIMIT_MBPS * 0.10,
               f"{mbps:.2f} Mbit/s" if mbps is not None else "iperf3 failed")


def _sources(log: Path) -> set[str]:
    """The client addresses python's http.server logged (the first word of each line)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return set()
    return {m.group(1) for m in re.finditer(r"^(\d+\.\d+\.\d+\.\d+) - ", text, re.M)}


def _isp_routes(net) -> dict[str, str]:
    """The ISP's BGP table: prefix -> next hop (its own prefixes: 'local')."""
    def read():
        try:
            data = json.loads(net["isp"].vtysh("show ip bgp json"))
        except Exception:
            return {}
        found = {}
        for prefix, paths in (data.get("routes") or {}).items():
            hop = next((h.get("ip") for p in paths for h in p.get("nexthops", ())), None)
            found[prefix] = "local" if hop in (None, "0.0.0.0") else hop
        return found

    return wait_until(lambda: (lambda r: r if f"{FLOATING}/32" in r else None)(read()), 30, 1) or read()


def _iperf(net, client: str, server: str) -> float | None:
    srv = net[server].popen(["iperf3", "-s", "-1", "-p", "5201"])
    try:
        time.sleep(0.3)
        done = net[client].run(["iperf3", "-c", address(net, server), "-p", "5201", "-t", str(IPERF_SECONDS),
                                "-O", str(IPERF_OMIT), "-J"], timeout=IPERF_SECONDS + 30)
        if done.returncode != 0:
            return None
        return json.loads(done.stdout)["end"]["sum_received"]["bits_per_second"] / 1e6
    finally:
        srv.kill()
        srv.wait(timeout=10)


def _reach_table(title: str, net, hosts: tuple[str, ...], matrix: dict) -> Table:
    table = Table(title=title)
    table.add_column("")
    for h in hosts:
        table.add_column(f"{h}\n{address(net, h)}", justify="center")
    for a in hosts:
        table.add_row(a, *("" if a == b else "[green]ok[/]" if matrix[a, b] else "[red]FAIL[/]" for b in hosts))
    return table


def _bgp_table(routes: dict[str, str]) -> Table:
    table = Table(title="the ISP's BGP table (FRR, AS 65001; the cloud is AS 64512)")
    table.add_column("prefix")
    table.add_column("next hop")
    for prefix, hop in sorted(routes.items()):
        table.add_row(prefix, hop)
    return table
