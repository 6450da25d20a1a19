#!/usr/bin/env python3
"""A peer FRR's 100,000 prefixes to flows in the switch and packets forwarded, through the real
controller, side by side with the same prefixes into a Linux kernel FIB through the speaker's own
zebra, in the same run; then their withdrawal. Goal (issue 14): no slower than the kernel path.

    sudo .venv/bin/python benchmarks/bgp/to_forwarding.py             # 100,000 /24, 3 runs per switch
    sudo .venv/bin/python benchmarks/bgp/to_forwarding.py --quick     # 2,000 prefixes, 1 run: a smoke test
    sudo .venv/bin/python benchmarks/bgp/to_forwarding.py --switches ovs --runs 5

Per switch kind (kumoflow, then ovs: one cloud at a time, each torn down before the next), the
cloud of tests/integration/test_bgp_emulator.py:

* a real controller process, ``kumoflow controller --app bgp --api 127.0.0.1:0 --store
  sqlite:TMP --set bgp.namespace=<netnode> --set bgp.hold_time=H --audit-interval A`` (the
  periodic audit re-reads every flow of the switch; it is off by default here so that it does
  not land inside a timed phase at random: --audit-interval);
* ``kumoflow apply``: an external network ``public`` (203.0.113.0/24, no gateway), a tenant
  network and subnet (10.0.1.0/24), a router with an interface on it and its external gateway
  on ``public`` (SNAT off: a routed packet never waits for the controller), h1's port;
* ``kumoflow up`` of one switch s1 of that kind (a kumoflow switch, or an Open vSwitch bridge
  with ``datapath_type=netdev``) and three hosts: h1 (10.0.1.5, the tenant's), netnode
  (203.0.113.2: the speaker's namespace) and isp (203.0.113.1, loopback 198.51.100.1/24);
* through the API: a BGP speaker (AS 64512), a peer (203.0.113.1, AS 65001), the peer added to
  the speaker, ``public`` as its gateway network. The controller runs the speaker (its own FRR)
  in the netnode namespace; zebra there installs what it learns into that namespace's kernel
  FIB *and* streams it over FPM to the controller, whose bgp app hands it to the router app:
  one flow per prefix in table ``route`` (24) of the switch;
* the peer router: FRR (zebra, bgpd: ``kumoflow.bgp.frr.FrrRouter``) in the isp namespace over
  N blackhole routes in its kernel (20.0.0.0/24 onwards, read by its zebra as kernel routes
  before anything is timed, as in fpm_rate.py), its session up, announcing only
  198.51.100.0/24 (``network``): h1 pings 198.51.100.1 before timing, so the next hop's MAC is
  resolved and the fabric knows every host.

Each run: t0 is the moment ``redistribute kernel`` is sent to the peer's bgpd (vtysh, its
session established); the figures are the times from t0 until

* **switch**: table 24 of the switch holds N more flows than before t0 (its own count,
  OFPMP_TABLE ``active_count``: ``ovs-ofctl -O OpenFlow13 dump-tables`` on the bridge, or on the
  kumoflow switch's passive listener, every --poll seconds; so up to one --poll late);
* **forwarded**: the first probe datagram to an address of the numerically last prefix reaches
  the peer (h1 sends one every --probe-interval with benchmarks/router/_probe.py; ``_forwarded``
  receives them in the isp namespace and checks TTL 63). Before its route exists a probe goes
  to the controller (no route: ICMP unreachable), so the probes cost the controller
  1/--probe-interval packet-ins a second; FRR does not announce in numeric order, so this is
  not necessarily the last route installed;
* **kernel**: the speaker namespace's kernel has added all N routes of protocol bgp (its route
  notifications, counted by fpm_rate.py's ``_fib_watch.py`` in that namespace): the same zebra,
  the same routes, the same run;

then the withdrawal (``no redistribute kernel``): until table 24 is back to its count before,
the last probe forwarded, the kernel has deleted all N.

Where the time goes, from the loopback (``_lo_watch.py``: kernel timestamps of the segments,
nothing reassembled): **FPM** first and last data zebra sent the controller (in the speaker's
namespace); **flow-mods** first and last batch (a segment over 64 bytes) the controller sent the
switch; and CPU seconds of the controller, the switch (the kumoflow switch's process, or
ovs-vswitchd), the speaker's zebra and bgpd, and the benchmark's own processes during each
phase. ``--profile`` adds one more cycle per switch, not in the figures, with py-spy sampling
the controller: where its time goes, by function.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import re
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

from kumoflow.bgp.frr import FrrRouter  # noqa: E402
from kumoflow.net import kumoflow_kind  # noqa: E402

#: what the smoke test (tests/integration/test_benchmarks.py) marks this benchmark's quick run with
REQUIRES = ("root", "ovs")
PY = sys.executable
TOKEN = "bgp-fwd-bench-" + secrets.token_hex(8)
FIRST = int(ipaddress.IPv4Address("20.0.0.0"))
ROUTE_TABLE = 24
PEER_IP, SPEAKER_IP, H1_IP = "203.0.113.1", "203.0.113.2", "10.0.1.5"
PROBE_PORT = 7007

CLOUD = f"""\
name: bgpfwd
networks:
  - {{name: public, router:external: true, shared: true}}
  - {{name: red-n1}}
subnets:
  - name: public-v4
    network: public
    cidr: 203.0.113.0/24
    gateway_ip: null
    allocation_pools: [{{start: 203.0.113.10, end: 203.0.113.200}}]
  - {{name: red-s1, network: red-n1, cidr: 10.0.1.0/24}}
routers:
  - {{name: red-router, interfaces: [red-s1], external_gateway: public, enable_snat: false}}
ports:
  - {{name: red-h1, network: red-n1, mac_address: "fa:16:3e:01:00:05", fixed_ips: [{{subnet: red-s1, ip_address: {H1_IP}}}]}}
"""


def topology(kind: str) -> str:
    return f"""\
name: bgpfwd
switches:
  - {{name: s1, kind: {kind}, dpid: 1, fail_mode: secure}}
hosts:
  - {{name: h1, mac: "fa:16:3e:01:00:05", ip: {H1_IP}/24, gateway: 10.0.1.1, port: red-h1}}
  - {{name: netnode, mac: "02:00:00:00:ee:02", ip: {SPEAKER_IP}/24}}
  - {{name: isp, mac: "02:00:00:00:ee:01", ip: {PEER_IP}/24, loopback: 198.51.100.1/24}}
links:
  - {{src: h1, dst: s1, dst_port: 1}}
  - {{src: isp, dst: s1, dst_port: 2}}
  - {{src: netnode, dst: s1, dst_port: 3}}
"""


def peer_config() -> str:
    return f"""router bgp 65001
 bgp router-id {PEER_IP}
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor {SPEAKER_IP} remote-as 64512
 neighbor {SPEAKER_IP} timers connect 1
 address-family ipv4 unicast
  neighbor {SPEAKER_IP} activate
  network 198.51.100.0/24
 exit-address-family
exit"""


def prefixes(n: int) -> list[str]:
    return [f"{ipaddress.IPv4Address(FIRST + (i << 8))}/24" for i in range(n)]


def probe_address(n: int) -> str:
    """An address in the numerically last prefix."""
    return str(ipaddress.IPv4Address(FIRST + ((n - 1) << 8) + 1))


def sh(*argv: str, check: bool = True) -> str:
    return subprocess.run(argv, check=check, capture_output=True, text=True).stdout


def kumoflow(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "kumoflow.cli", *argv], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(benchlib.SRC)})


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_table_active(text: str, table: int) -> int | None:
    """active_count of `table` in ``ovs-ofctl dump-tables`` output (its "tables A...B: ditto" lines too)."""
    last = None
    current = None
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"table (\d+)", line)
        if m and line.endswith(":"):
            current = int(m.group(1))
            continue
        m = re.match(r"tables (\d+)\.\.\.(\d+): ditto", line)
        if m:
            if int(m.group(1)) <= table <= int(m.group(2)):
                return last
            continue
        m = re.match(r"active=(\d+)", line)
        if m and current is not None:
            last = int(m.group(1))
            if current == table:
                return last
    return None


class Helper:
    """A helper process in a namespace that takes commands on stdin and answers lines."""

    def __init__(self, ns: str, *argv: str) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, PY, *argv], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, start_new_session=True)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"{argv[0]} in {ns} did not start: {line!r}")

    def send(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def ask(self, command: str) -> dict:
        self.send(command)
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class Cloud:
    """One switch kind's controller, emulated network, API objects and peer router."""

    def __init__(self, kind: str, tmp: Path, args) -> None:
        self.kind, self.args = kind, args
        self.tmp = tmp / kind
        self.tmp.mkdir()
        self.name = f"bf{kind[0]}{secrets.token_hex(2)[:3]}"
        self.ctl: subprocess.Popen | None = None
        self.up = False
        self.peer: FrrRouter | None = None
        self.helpers: list[Helper] = []
        self.sender: subprocess.Popen | None = None
        self.log_path = self.tmp / "controller.log"
        self.profiled: dict | None = None

    def ns(self, host: str) -> str:
        return f"{self.name}-{host}"

    # --- bring-up ----------------------------------------------------------------------------

    async def start(self) -> None:
        args = self.args
        status = self.tmp / "status.json"
        with open(self.log_path, "ab") as out:
            self.ctl = subprocess.Popen(
                [PY, "-m", "kumoflow.cli", "controller", "--listen", "tcp:127.0.0.1:0", "--app", "bgp",
                 "--api", "127.0.0.1:0", "--admin-token", TOKEN, "--store", f"sqlite:{self.tmp / 'kf.db'}",
                 "--status-file", str(status), "--log-level", "info",
                 "--audit-interval", str(args.audit_interval),
                 "--set", f"bgp.namespace={self.ns('netnode')}", "--set", f"bgp.hold_time={args.hold_time}"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "PYTHONPATH": str(benchlib.SRC)})
        deadline = time.monotonic() + 30
        while not status.exists():
            if self.ctl.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the controller did not start; see {self.log_path}")
            await asyncio.sleep(0.05)
        info = json.loads(status.read_text())
        self.url, self.target = info["api"], info["listen"][0]
        self.of_port = int(self.target.rsplit(":", 1)[1])
        self.http = httpx.Client(base_url=self.url, headers={"X-Auth-Token": TOKEN}, timeout=60)
        (self.tmp / "cloud.yaml").write_text(CLOUD)
        done = kumoflow("apply", str(self.tmp / "cloud.yaml"), "--api", self.url, "--token", TOKEN)
        if done.returncode != 0:
            raise RuntimeError(f"kumoflow apply: {done.stdout}{done.stderr}")
        (self.tmp / "topo.yaml").write_text(topology(self.kind))
        up = kumoflow("up", str(self.tmp / "topo.yaml"), "--name", self.name, "--controller", self.target,
                      "--api", self.url, "--token", TOKEN)
        if up.returncode != 0:
            kumoflow("down", self.name)
            raise RuntimeError(f"{self.kind}: kumoflow up: {(up.stderr or up.stdout).strip()[-500:]}")
        self.up = True
        if self.kind == "ovs":
            self.of_target = f"{self.name}-s1"
            self.switch_pid = int(Path("/var/run/openvswitch/ovs-vswitchd.pid").read_text())
        else:
            switch = kumoflow_kind.read_status(kumoflow_kind.status_path(self.name, "s1"))
            if not switch:
                raise RuntimeError(f"{self.kind}: no status file of the switch")
            _, port, host = switch["listen"][0].split(":")
            self.of_target = f"tcp:{host}:{port}"
            self.switch_pid = int(switch["pid"])
        # the BGP speaker and its peer, through the API (as tests/integration/test_bgp_emulator.py)
        public = self.get("/v2.0/networks", name="public")["networks"][0]
        speaker = self.http.post("/v2.0/bgp-speakers", json={"bgp_speaker": {
            "name": "edge", "local_as": 64512, "ip_version": 4}}).json()["bgp_speaker"]
        peer = self.http.post("/v2.0/bgp-peers", json={"bgp_peer": {
            "name": "isp", "peer_ip": PEER_IP, "remote_as": 65001}}).json()["bgp_peer"]
        for action, body in (("add_bgp_peer", {"bgp_peer_id": peer["id"]}),
                             ("add_gateway_network", {"network_id": public["id"]})):
            r = self.http.put(f"/v2.0/bgp-speakers/{speaker['id']}/{action}", json=body)
            if r.status_code != 200:
                raise RuntimeError(f"{action}: {r.status_code} {r.text[:300]}")
        # the peer's prefixes: blackhole routes in its kernel, read by its zebra at start
        n = args.prefixes
        isp = self.ns("isp")
        subprocess.run(["ip", "-n", isp, "-batch", "-"], check=True, text=True,
                       input="".join(f"route add blackhole {p}\n" for p in prefixes(n)))
        sh("ip", "-n", isp, "addr", "add", f"{probe_address(n)}/32", "dev", "lo")
        self.peer = FrrRouter(isp, {"bgpd": peer_config()}, name=f"peer-{self.name}")
        await self.peer.start()
        t = time.monotonic()
        while await self.peer_kernel_routes() < n:
            if time.monotonic() - t > 300:
                raise RuntimeError("the peer's zebra did not read its kernel routes")
            await asyncio.sleep(0.5)
        t = time.monotonic()
        while await self.session() != "Established":
            if time.monotonic() - t > 120:
                raise RuntimeError(f"{self.kind}: the BGP session is not up; see {self.log_path}")
            await asyncio.sleep(0.5)
        # the peer's own prefix learned and reached: the next hop resolved, the hosts known
        for _ in range(60):
            if self.host("h1", "ping", "-c", "1", "-W", "1", "198.51.100.1").returncode == 0:
                break
            await asyncio.sleep(0.5)
        else:
            raise RuntimeError(f"{self.kind}: h1 cannot reach 198.51.100.1 (the peer's prefix); see "
                               f"{self.log_path}")
        self.zebra, self.bgpd = (int(Path(f"/var/run/frr/kumoflow-{self.ns('netnode')}/{d}.pid").read_text())
                                 for d in ("zebra", "bgpd"))
        m = re.search(r"FPM port (\d+)", self.log_path.read_text(errors="replace"))
        if not m:
            raise RuntimeError("no FPM port in the controller's log")
        self.fpm_port = int(m.group(1))
        # the watchers: the kernel FIB (fpm_rate.py's), the loopbacks, the probe's receiver
        self.fib = Helper(self.ns("netnode"), str(HERE / "_fib_watch.py"))
        self.fpm = Helper(self.ns("netnode"), str(HERE / "_lo_watch.py"), str(self.fpm_port), "fpm")
        self.helpers += [self.fib, self.fpm]
        self.flowmods = Helper_root(str(HERE / "_lo_watch.py"), str(self.of_port), "of")
        self.helpers.append(self.flowmods)
        if args.probe_interval > 0:
            self.recv = Helper(isp, str(HERE / "_forwarded.py"), probe_address(n), str(PROBE_PORT))
            self.helpers.append(self.recv)
            self.sender = subprocess.Popen(
                ["ip", "netns", "exec", self.ns("h1"), PY, str(HERE.parent / "router" / "_probe.py"), "send",
                 probe_address(n), str(PROBE_PORT), "--interval", str(args.probe_interval)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        else:
            self.recv = None

    def get(self, path: str, **params) -> dict:
        r = self.http.get(path, params=params)
        r.raise_for_status()
        return r.json()

    def host(self, host: str, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.ns(host), *argv], capture_output=True, text=True,
                              timeout=30)

    async def peer_kernel_routes(self) -> int:
        summary = await self.peer.vtysh_json("show ip route summary json")
        return sum(r.get("rib", 0) for r in summary.get("routes", []) if r.get("type") == "kernel")

    async def session(self) -> str:
        summary = await self.peer.vtysh_json("show bgp ipv4 unicast summary json")
        return summary.get("peers", {}).get(SPEAKER_IP, {}).get("state", "?")

    async def flows(self) -> int:
        """Flows in table 24 of the switch, by its own count (TABLE stats)."""
        proc = await asyncio.create_subprocess_exec("ovs-ofctl", "-O", "OpenFlow13", "dump-tables", self.of_target,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        count = parse_table_active(out.decode(), ROUTE_TABLE)
        if proc.returncode != 0 or count is None:
            raise RuntimeError(f"ovs-ofctl dump-tables {self.of_target}: {err.decode().strip()[-300:]}")
        return count

    def cpu(self) -> dict:
        """CPU seconds so far: the controller, the switch, the speaker's zebra and bgpd, and this
        benchmark itself (this process, the ovs-ofctl it runs, its watchers and probes) in one figure."""
        helpers = [h.proc.pid for h in self.helpers] + ([self.sender.pid] if self.sender else [])
        mine = os.times()                # this process, and the ovs-ofctl and vtysh it ran and reaped
        return {"controller": benchlib.cpu_seconds(self.ctl.pid), "switch": benchlib.cpu_seconds(self.switch_pid),
                "zebra": benchlib.cpu_seconds(self.zebra), "bgpd": benchlib.cpu_seconds(self.bgpd),
                "helpers": sum(benchlib.cpu_seconds(pid) for pid in helpers) + mine.user + mine.system
                + mine.children_user + mine.children_system}

    def sched(self) -> dict:
        """Seconds the main threads of the controller and the switch have run, and have waited
        runnable for a CPU (/proc/PID/schedstat)."""
        out = {}
        for who, pid in (("controller", self.ctl.pid), ("switch", self.switch_pid)):
            try:
                run, wait, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
            except (OSError, ValueError):
                run = wait = 0
            out[who] = (int(run) / 1e9, int(wait) / 1e9)
        return out

    def profile_start(self, announce: bool) -> tuple | None:
        """py-spy on the controller (--profile: a cycle of its own after the timed ones)."""
        if benchlib.py_spy() is None:
            return None
        path = self.tmp / f"profile-{'announce' if announce else 'withdraw'}.txt"
        proc = subprocess.Popen([benchlib.py_spy(), "record", "--pid", str(self.ctl.pid), "--rate", "100",
                                 "--format", "raw", "--nonblocking", "--output", str(path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)                                    # attached
        return proc, path

    def profile_stop(self, spy: tuple | None) -> dict | None:
        """Samples of the controller's main thread by the function they were in (own) and by the
        functions on their stack (inclusive), for the report's top lists."""
        if spy is None:
            return None
        proc, path = spy
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if not path.exists():
            return None
        own: dict[str, int] = {}
        inclusive: dict[str, int] = {}
        total = 0
        entry = ("(cli.py)", "(controller/cli.py)", "(eventloop.py)")
        for frames, count in benchlib.collapsed(path.read_text()):
            names, ours = [], set()
            for f in frames:                 # "func (path/file.py:line)" -> "func (file within kumoflow)"
                m = re.match(r"(.*) \((.*?)(?::\d+)?\)$", f)
                func, where = (m.group(1), m.group(2)) if m else (f, "")
                k = where.rfind("kumoflow/")
                name = f"{func} ({where[k + 9:] if k >= 0 else where.rsplit('/', 1)[-1]})"
                names.append(name)
                if k >= 0 and not name.endswith(entry):
                    ours.add(name)
            total += count
            own[names[-1]] = own.get(names[-1], 0) + count
            for name in ours:
                inclusive[name] = inclusive.get(name, 0) + count
        top = lambda d: sorted(d.items(), key=lambda kv: -kv[1])[:25]   # noqa: E731
        return {"samples": total, "own": top(own), "inclusive": top(inclusive)}

    # --- a run -------------------------------------------------------------------------------

    async def stable_flows(self, quiet: float = 2.0, timeout: float = 120) -> int:
        """Table 24's count once it has not moved for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        last, since = await self.flows(), time.monotonic()
        while time.monotonic() - since < quiet:
            if time.monotonic() > deadline:
                raise RuntimeError("table 24 does not settle")
            await asyncio.sleep(0.25)
            now = await self.flows()
            if now != last:
                last, since = now, time.monotonic()
        return last

    async def phase(self, announce: bool, base: int, profile: bool = False) -> dict:
        args, n = self.args, self.args.prefixes
        target = base + n if announce else base - n
        self.fib.send(f"arm {'add' if announce else 'del'} {n}")
        for h in (self.fpm, self.flowmods, *([self.recv] if self.recv else [])):
            h.ask("report")           # a round trip: the helper has read what came before
            h.send("arm")
        await asyncio.sleep(0.3)
        cpu0, sched0 = self.cpu(), self.sched()
        busy0 = benchlib.busy_seconds()
        spy = self.profile_start(announce) if profile else None
        t0 = time.monotonic()
        await self.peer.vtysh("configure terminal", "router bgp 65001", "address-family ipv4 unicast",
                              "redistribute kernel" if announce else "no redistribute kernel")
        first_flow = done = None
        polls = 0
        deadline = t0 + args.timeout
        while True:
            count = await self.flows()
            polls += 1
            now = time.monotonic()
            if first_flow is None and count != base:
                first_flow = now
            if count == target:
                done = now
                break
            if now > deadline:
                raise RuntimeError(f"{self.kind}: table 24 holds {count} flows {args.timeout} s after t0, "
                                   f"expected {target}")
            await asyncio.sleep(args.poll)
        cpu1, sched1 = self.cpu(), self.sched()
        wall = time.monotonic() - t0
        profile = self.profile_stop(spy)
        busy = (benchlib.busy_seconds() - busy0) / wall
        answer = await asyncio.wait_for(asyncio.to_thread(self.fib.proc.stdout.readline), args.timeout)
        words = answer.split()
        if words[:1] != ["reached"]:
            raise RuntimeError(f"{self.kind}: the kernel's notifications: {answer.strip()}")
        kernel_first, kernel_all = float(words[1]), float(words[2])
        await asyncio.sleep(max(1.0, 3 * args.probe_interval))   # the probes: what still arrives
        fpm, mods = self.fpm.ask("report"), self.flowmods.ask("report")
        probe = self.recv.ask("report") if self.recv else None
        if fpm["lost"] or mods["lost"]:       # the loopback capture missed something: no times from it
            fpm = {**fpm, "first": None, "last": None}
            mods = {**mods, "first": None, "last": None}
        row = {"switch_s": done - t0, "switch_first_s": first_flow - t0 if first_flow else None,
               "kernel_s": kernel_all - t0, "kernel_first_s": kernel_first - t0, "polls": polls,
               "fpm_first_s": fpm["first"] - t0 if fpm["first"] else None,
               "fpm_last_s": fpm["last"] - t0 if fpm["last"] else None, "fpm_routes": fpm["count"],
               "fpm_bytes": fpm["bytes"],
               "mods_first_s": mods["first"] - t0 if mods["first"] else None,
               "mods_last_s": mods["last"] - t0 if mods["last"] else None, "flow_mods": mods["count"],
               "capture_lost": fpm["lost"] + mods["lost"],
               "capture": {"fpm": {k: fpm[k] for k in ("dropped", "gaps", "framing")},
                           "flow_mods": {k: mods[k] for k in ("dropped", "gaps", "framing")}},
               "cpu": {k: cpu1[k] - cpu0[k] for k in cpu0}, "machine_busy": busy, "wall_s": wall,
               "ran_s": {k: sched1[k][0] - sched0[k][0] for k in sched0},
               "waited_s": {k: sched1[k][1] - sched0[k][1] for k in sched0}}
        if profile is not None:
            row["profile"] = profile
        if probe is not None:
            row["probe_ttls"] = probe["ttls"]
            row["probes"] = probe["count"]
            if announce:
                row["forwarded_s"] = probe["first"] - t0 if probe["first"] else None
            else:
                row["forwarded_s"] = probe["last"] - t0 if probe["last"] else None
        return row

    async def run(self) -> list[dict]:
        args = self.args
        out = []
        base = await self.stable_flows()
        log(f"{self.kind}: table 24 holds {base} flows before the runs")
        for i in range(args.runs):
            row = {"run": i + 1}
            row["announce"] = await self.phase(True, base)
            log(f"  {self.kind} run {i + 1} announce: switch {row['announce']['switch_s']:.2f} s, kernel "
                f"{row['announce']['kernel_s']:.2f} s, forwarded {fmt_s(row['announce'].get('forwarded_s'))}")
            await self.stable_flows(quiet=1.0)
            row["withdraw"] = await self.phase(False, base + args.prefixes)
            log(f"  {self.kind} run {i + 1} withdraw: switch {row['withdraw']['switch_s']:.2f} s, kernel "
                f"{row['withdraw']['kernel_s']:.2f} s, last forwarded {fmt_s(row['withdraw'].get('forwarded_s'))}")
            after = await self.stable_flows(quiet=1.0)
            if after != base:
                raise RuntimeError(f"{self.kind}: table 24 holds {after} flows after the withdrawal, not {base}")
            out.append(row)
        if args.profile:                 # one more cycle, under py-spy: not in the figures
            row = {"run": "profiled"}
            row["announce"] = await self.phase(True, base, profile=True)
            await self.stable_flows(quiet=1.0)
            row["withdraw"] = await self.phase(False, base + args.prefixes, profile=True)
            await self.stable_flows(quiet=1.0)
            self.profiled = row
        return out

    async def close(self) -> None:
        if self.sender is not None and self.sender.poll() is None:
            os.killpg(self.sender.pid, signal.SIGTERM)
            self.sender.wait()
        for h in self.helpers:
            h.close()
        if self.peer is not None:
            await self.peer.stop()
        if self.ctl is not None and self.ctl.poll() is None:     # the speaker stops with it
            os.killpg(self.ctl.pid, signal.SIGTERM)
            try:
                self.ctl.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.ctl.pid, signal.SIGKILL)
        if self.up:
            down = kumoflow("down", self.name)
            if down.returncode != 0:
                log(f"{self.kind}: kumoflow down {self.name}: {down.stdout}{down.stderr}")


class Helper_root(Helper):
    """A Helper in the root namespace (the controller's and the switch's loopback)."""

    def __init__(self, *argv: str) -> None:
        self.proc = subprocess.Popen([PY, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     start_new_session=True)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"{argv[0]} did not start: {line!r}")


def fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} s"


async def measure(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="kfbgpfwd-"))
    results: dict = {}
    for kind in args.switches:
        cloud = Cloud(kind, tmp, args)
        try:
            t = time.monotonic()
            await cloud.start()
            log(f"{kind}: cloud up, {args.prefixes:,} routes in the peer, session up "
                f"({time.monotonic() - t:.1f} s)")
            results[kind] = {"runs": await cloud.run()}
            if cloud.profiled:
                results[kind]["profiled"] = cloud.profiled
        finally:
            await cloud.close()
    return results


def report(data: dict) -> str:
    args = data["args"]
    n = args["prefixes"]
    lines = [f"## BGP: {n:,} prefixes from a peer FRR to flows in the switch and packets forwarded, "
             f"vs the kernel FIB", ""]
    lines += benchlib.machine_lines(data["machine"])
    lines += [f"- command: `{data['command']}`",
              f"- {args['runs']} announce + withdraw cycle(s) per switch; switch flows polled every {args['poll']} s "
              f"(OFPMP_TABLE active_count of table 24); probes every {args['probe_interval']} s; audit interval "
              f"{args['audit_interval']} s; hold time {args['hold_time']} s", ""]
    rows, bad, partial = [], [], []
    for kind, res in data["results"].items():
        runs = res["runs"]
        for phase in ("announce", "withdraw"):
            ph = [r[phase] for r in runs]

            def med(key: str, ph=ph):
                v = [p[key] for p in ph if p.get(key) is not None]
                return statistics.median(v) if v else None

            ratio = statistics.median(p["kernel_s"] / p["switch_s"] for p in ph)
            cpu = {k: statistics.median(p["cpu"][k] for p in ph) for k in ph[0]["cpu"]}
            rows.append([kind, phase, fmt_s(med("switch_s")), fmt_s(med("forwarded_s")), fmt_s(med("kernel_s")),
                         f"{ratio:.2f}x", f"{fmt_s(med('fpm_first_s'))} / {fmt_s(med('fpm_last_s'))}",
                         f"{fmt_s(med('mods_first_s'))} / {fmt_s(med('mods_last_s'))}",
                         f"{cpu['controller']:.1f} / {cpu['switch']:.1f} / {cpu['zebra']:.1f} / {cpu['bgpd']:.1f} / "
                         f"{cpu.get('helpers', 0):.1f} s",
                         f"{statistics.median(p['machine_busy'] for p in ph):.2f}"])
            for r in runs:
                p = r[phase]
                if p.get("probe_ttls") and p["probe_ttls"] != [63]:
                    bad.append(f"{kind} run {r['run']} {phase}: probes with TTL {p['probe_ttls']}")
                if p.get("capture_lost"):
                    partial.append(f"{kind} run {r['run']} {phase}: {json.dumps(p['capture'])}")
                if args["probe_interval"] > 0 and phase == "announce" and p.get("forwarded_s") is None:
                    bad.append(f"{kind} run {r['run']} {phase}: no probe forwarded")
    lines.append(benchlib.md_table(
        ["switch", "", "all flows in the switch", "probe forwarded (first / last)", "all in the kernel FIB",
         "kernel / switch", "FPM first / last", "flow-mods first / last", "CPU: controller / switch / zebra / bgpd / benchmark",
         "CPUs busy"], rows))
    split = []
    for kind, res in data["results"].items():
        for phase in ("announce", "withdraw"):
            ph = [r[phase] for r in res["runs"] if "ran_s" in r[phase]]
            if not ph:
                continue

            def m(f, ph=ph):
                return statistics.median(f(p) for p in ph)
            split.append([kind, phase, fmt_s(m(lambda p: p["switch_s"])),
                          fmt_s(m(lambda p: p["ran_s"]["controller"])), fmt_s(m(lambda p: p["waited_s"]["controller"])),
                          fmt_s(m(lambda p: p["switch_s"] - p["ran_s"]["controller"] - p["waited_s"]["controller"])),
                          f"{m(lambda p: p['cpu']['controller']) / data['args']['prefixes'] * 1e6:.0f} µs",
                          fmt_s(m(lambda p: p["ran_s"]["switch"])), fmt_s(m(lambda p: p["waited_s"]["switch"]))])
    if split:
        lines += ["", "The controller's main thread from t0 to all flows in the switch (/proc/PID/schedstat): "
                  "running, runnable but waiting for a CPU, and the rest (waiting for input); the switch's main "
                  "thread the same:", ""]
        lines.append(benchlib.md_table(
            ["switch", "", "t0 to all flows", "controller ran", "waited for a CPU", "idle", "controller CPU a route",
             "switch ran", "switch waited"], split))
    lines += ["", "Times from t0 (the peer told to announce or withdraw), medians over the runs; kernel / switch "
              "is the median of each run's own ratio (both timed in the same run: above 1.00x the switch was "
              "faster). The probe column is the first datagram forwarded to the last prefix (announce) and the "
              "last one (withdraw). CPUs busy: the machine's busy CPUs during the phase (of "
              f"{data['machine']['nproc']}).", "", "Every run:", ""]
    lines.append(benchlib.md_table(
        ["switch", "run", "announce: switch", "forwarded", "kernel", "withdraw: switch", "last forwarded", "kernel",
         "FPM routes / flow-mods seen"],
        [[kind, r["run"], fmt_s(r["announce"]["switch_s"]), fmt_s(r["announce"].get("forwarded_s")),
          fmt_s(r["announce"]["kernel_s"]), fmt_s(r["withdraw"]["switch_s"]), fmt_s(r["withdraw"].get("forwarded_s")),
          fmt_s(r["withdraw"]["kernel_s"]),
          f"{r['announce']['fpm_routes']:,} / {r['announce']['flow_mods']:,} + "
          f"{r['withdraw']['fpm_routes']:,} / {r['withdraw']['flow_mods']:,}"]
         for kind, res in data["results"].items() for r in res["runs"]]))
    for kind, res in data["results"].items():
        for phase in ("announce", "withdraw"):
            profiled = res.get("profiled", {}).get(phase, {})
            prof = profiled.get("profile")
            if not prof or not prof["samples"]:
                continue
            total = prof["samples"]
            lines += ["", f"The controller's profile, {kind}, {phase}: a cycle of its own under py-spy (not in the "
                      f"figures above; switch {fmt_s(profiled['switch_s'])}, kernel {fmt_s(profiled['kernel_s'])}, "
                      f"controller CPU {profiled['cpu']['controller']:.1f} s), {total} samples at 100/s of its "
                      "busy time:", ""]
            lines.append(benchlib.md_table(
                ["own time in (function, file)", "share", "on the stack (kumoflow's functions)", "share"],
                [[a[0][:90], f"{a[1] / total:.0%}", b[0][:90], f"{b[1] / total:.0%}"]
                 for a, b in zip(prof["own"][:15], prof["inclusive"][:15])], align="lrlr"))
    if partial:
        lines += ["", "The loopback capture missed packets (dropped by the kernel: the watcher starved of CPU) or "
                  "lost the framing in these phases, whose FPM and flow-mod times are left out of the medians: "
                  + "; ".join(partial)]
    if bad:
        lines += ["", "**Runs without a figure**: " + "; ".join(bad)]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--prefixes", type=int, default=100_000, help="IPv4 /24 prefixes the peer announces")
    ap.add_argument("--runs", type=int, default=3, help="announce + withdraw cycles per switch (medians reported)")
    ap.add_argument("--switches", default="kumoflow,ovs", help="switch kinds, one cloud each (default kumoflow,ovs)")
    ap.add_argument("--poll", type=float, default=0.1, help="seconds between counts of the switch's flows")
    ap.add_argument("--probe-interval", type=float, default=0.01,
                    help="seconds between probe datagrams to the last prefix (0: no probes)")
    ap.add_argument("--hold-time", type=int, default=30, help="bgp.hold_time of the controller (seconds)")
    ap.add_argument("--audit-interval", type=float, default=0, help="the controller's --audit-interval (0: none)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds a phase may take")
    ap.add_argument("--profile", action="store_true",
                    help="after the timed runs, one more cycle per switch with py-spy on the controller: its profile")
    benchlib.add_output_args(ap, quick="2,000 prefixes, one run per switch: a smoke test")
    args = ap.parse_args()
    if args.quick:
        args.prefixes, args.runs = 2000, 1
    args.switches = [s.strip() for s in args.switches.split(",") if s.strip()]
    if os.geteuid() != 0:
        print("to_forwarding.py needs root (namespaces, FRR, Open vSwitch)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    m = benchlib.machine(tools=[("/usr/lib/frr/zebra", "--version"), ("ovs-vswitchd", "--version")], code=("src",))
    results = asyncio.run(measure(args))
    data = {"machine": m, "args": vars(args), "command": "sudo " + benchlib.command_line(), "results": results}
    print(report(data))
    if args.json:
        benchlib.write_json(args.json, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
