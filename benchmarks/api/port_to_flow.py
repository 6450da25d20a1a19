#!/usr/bin/env python3
"""From `POST /v2.0/ports` to the port's flow in its switch, with 0 and with
10,000 ports present: a kumoflow switch and Open vSwitch.

    sudo .venv/bin/python benchmarks/api/port_to_flow.py            # 200 ports per switch, 0 and 10,000 present
    sudo .venv/bin/python benchmarks/api/port_to_flow.py --quick    # 20 ports, 0 and 500 present: a smoke test
    sudo .venv/bin/python benchmarks/api/port_to_flow.py --ports 500 --present 20000

The flow: the router app compiles a *neighbour* flow (table ``neighbour``:
metadata = the router's VRF, ipv4_dst = the port's address -> set eth_dst
to its MAC) on every switch for every API port with an address in a subnet
that has a router interface, as soon as the port exists (apps/router.py).

Per switch kind its own cloud, both up at once: a real controller process
(``kumoflow controller --app router --api 127.0.0.1:0 --store
sqlite:TMP``, the store on the temporary directory's file system: every
commit waits for its fsync) with one switch connected, either ``kumoflow
switch`` (no ports) or an Open vSwitch bridge (``datapath_type=netdev``, no
ports); through the API a network, a /16 subnet, a router with an
interface on it. Then, the two clouds taking turns port by port, `--ports`
single POSTs of a port (its address allocated) with 0 ports present, then
`--present` ports made by bulk creates of 500, then `--ports` single POSTs
again.

How the time is taken (nothing polls the switch while it is being timed):

- **on the wire** (`_ofcapture.py`): a packet socket on ``lo`` with a BPF
  filter for the controller's OpenFlow and API ports, each packet stamped
  by the kernel (nanoseconds, CLOCK_REALTIME) as it is handed to the
  receiving socket; the OpenFlow streams are reassembled from their SYN.
  t0 is the POST's first segment reaching the API's socket; "FLOW_MOD at
  the switch" is the segment completing the FLOW_MOD that adds the port's
  neighbour flow reaching the switch's socket; "answer" is the first
  segment of the API's answer reaching the client. A passive observer: no
  process waits for it, and reading the socket late moves no timestamp.
- **in the table**: as soon as the capture shows that FLOW_MOD, this
  process asks the switch for the flow (a flow-stats request, table
  ``neighbour``, ``ip,nw_dst=ADDRESS``) on a connection of its own: the
  kumoflow switch's passive OpenFlow port (``--listen``), Open vSwitch's
  ``BR.mgmt`` socket (what ``ovs-ofctl`` uses); again until the reply holds
  it. The reply's arrival is an upper bound on "installed": it adds this
  process's reaction to the capture (scheduling on a busy machine) and the
  request's own round trip, which the switch answers by scanning its table
  (the kumoflow switch in Python: it grows with the table). The FLOW_MOD
  at the switch is the lower bound; the switch applies a flow-mod in
  microseconds (docs/benchmarks.md, switch forwarding). The round trip of
  such a request is measured on its own at the end ("probe RTT").

The periodic audit (every 30 s the controller reads all the switch's
flows) is left on, as a user has it; samples whose interval overlaps an
audit are counted. At the end each switch's neighbour table is read whole
and must hold every port's flow.
"""

from __future__ import annotations

import argparse
import asyncio
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
sys.path.insert(0, str(HERE))                                    # _ofcapture

import benchlib  # noqa: E402

benchlib.use_src()
import httpx  # noqa: E402

from _ofcapture import Capture  # noqa: E402
from kumoflow import ofp  # noqa: E402
from kumoflow.controller import pipeline  # noqa: E402

#: what the smoke test (tests/integration/test_benchmarks.py) marks this benchmark's quick run with
REQUIRES = ("root", "ovs")
PY = sys.executable
TOKEN = "p2f-bench-" + secrets.token_hex(8)
NEIGHBOUR = pipeline.table_id("neighbour")
T_FLOW_MOD, T_MP_REQUEST, T_MP_REPLY = int(ofp.OFPT.FLOW_MOD), int(ofp.OFPT.MULTIPART_REQUEST), \
    int(ofp.OFPT.MULTIPART_REPLY)
MP_FLOW = int(ofp.OFPMP.FLOW)
ADD_OR_MODIFY = (int(ofp.OFPFC.ADD), int(ofp.OFPFC.MODIFY), int(ofp.OFPFC.MODIFY_STRICT))
BULK = 500
ENV = {**os.environ, "PYTHONPATH": str(benchlib.SRC)}


class Probe:
    """An OpenFlow connection of our own to the switch: flow-stats requests."""

    def __init__(self) -> None:
        self.conn = ofp.Connection()
        self.pending: dict[int, tuple[asyncio.Future, list]] = {}
        self.ready = asyncio.get_running_loop().create_future()

    async def open(self, tcp: tuple[str, int] | None = None, unix: str | None = None) -> None:
        if unix:
            self.reader, self.writer = await asyncio.open_unix_connection(unix)
        else:
            self.reader, self.writer = await asyncio.open_connection(*tcp)
        self.writer.write(self.conn.data_to_send())
        self.task = asyncio.create_task(self._read())
        await asyncio.wait_for(self.ready, 10)

    async def _read(self) -> None:
        while data := await self.reader.read(1 << 20):
            now = time.time_ns()
            for msg in self.conn.receive_data(data):
                if isinstance(msg, ofp.Hello):
                    self.ready.set_result(True)
                elif isinstance(msg, ofp.Message) and msg.xid in self.pending:
                    fut, parts = self.pending[msg.xid]
                    parts.append(msg)
                    if not getattr(msg, "flags", 0) & 1:          # no REQ_MORE: the last part
                        del self.pending[msg.xid]
                        fut.set_result((now, parts))
                elif not isinstance(msg, ofp.Message):
                    raise RuntimeError(f"probe connection: {msg}")
            if out := self.conn.data_to_send():
                self.writer.write(out)
        for fut, _ in self.pending.values():
            fut.set_exception(ConnectionError("the switch closed the probe connection"))

    async def request(self, msg: ofp.Message) -> tuple[int, list]:
        fut = asyncio.get_running_loop().create_future()
        xid = self.conn.send(msg)
        self.pending[xid] = (fut, [])
        self.writer.write(self.conn.data_to_send())
        return await asyncio.wait_for(fut, 30)

    async def flows(self, ip: str | None = None) -> tuple[int, list]:
        """(arrival, [FlowStats]) of the neighbour table, or of its flows for one address."""
        match = ofp.Match({"eth_type": 0x0800, "ipv4_dst": ip}) if ip else ofp.Match()
        now, parts = await self.request(ofp.FlowStatsRequest(table_id=NEIGHBOUR, match=match))
        for part in parts:
            if isinstance(part, ofp.ErrorMsg):
                raise RuntimeError(f"flow stats: {part}")
        return now, [entry for part in parts for entry in part.body]

    def close(self) -> None:
        if hasattr(self, "writer"):
            self.writer.close()
            self.task.cancel()


class Cloud:
    """One switch kind's controller, switch, capture and API client."""

    def __init__(self, kind: str, tmp: Path, breakdown: bool) -> None:
        self.kind, self.tmp, self.breakdown = kind, tmp / kind, breakdown
        self.tmp.mkdir()
        self.procs: list[subprocess.Popen] = []
        self.bridge: str | None = None
        self.capture: Capture | None = None
        self.probe: Probe | None = None
        self.error: BaseException | None = None
        self.mods: dict[str, int] = {}            # address -> first FLOW_MOD at the switch (ns)
        self.mod_seen: dict[str, asyncio.Event] = {}
        self.posts: list[int] = []                # POST /v2.0/ports request lines at the API (ns)
        self.answers: list[int] = []              # status lines from the API (ns)
        self.audits: list[list[int]] = []         # [start, end] of each flow-stats read by the controller
        self.in_table: dict[str, asyncio.Task] = {}
        self.timing = False
        self.ports = 0

    # --- set-up ---------------------------------------------------------------------

    async def start(self) -> None:
        status = self.tmp / "status.json"
        self.log = self.tmp / "controller.log"
        argv = ["controller", "--listen", "tcp:127.0.0.1:0", "--app", "router", "--api", "127.0.0.1:0",
                "--admin-token", TOKEN, "--store", f"sqlite:{self.tmp / 'kf.db'}", "--status-file", str(status),
                "--log-level", "warning"]
        self.timings = self.tmp / "timings.json" if self.breakdown else None
        launcher = [str(HERE / "_timed_controller.py"), str(self.timings)] if self.breakdown else ["-m", "kumoflow.cli"]
        with open(self.log, "ab") as out:
            self.procs.append(subprocess.Popen([PY, *launcher, *argv], stdout=out, stderr=subprocess.STDOUT,
                                               start_new_session=True, env=ENV))
        self.controller_pid = self.procs[0].pid
        deadline = time.monotonic() + 30
        while not status.exists():
            if self.procs[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the controller did not start; see {self.log}")
            await asyncio.sleep(0.05)
        info = json.loads(status.read_text())
        self.url, target = info["api"], info["listen"][0]
        of_port, api_port = int(target.rsplit(":", 1)[1]), int(self.url.rsplit(":", 1)[1])
        # the capture before the switch connects: its streams are read from their SYN
        self.capture = Capture(of_port, api_port, self._on_message, self._on_http)
        asyncio.get_running_loop().add_reader(self.capture.fileno(), self._read_capture)
        self.http = httpx.AsyncClient(base_url=self.url, headers={"X-Auth-Token": TOKEN}, timeout=120)
        self.probe = Probe()
        if self.kind == "kumoflow":
            probe_port = benchlib.free_port()
            with open(self.tmp / "switch.log", "ab") as out:
                self.procs.append(subprocess.Popen(
                    [PY, "-m", "kumoflow.cli", "switch", "--dpid", "1", "--name", "p2f", "--controller", target,
                     "--listen", f"ptcp:{probe_port}:127.0.0.1", "--max-backoff", "1", "--log-level", "warning"],
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=ENV))
            self.switch_pid = self.procs[-1].pid
            for _ in range(100):
                try:
                    await self.probe.open(tcp=("127.0.0.1", probe_port))
                    break
                except OSError:
                    await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the kumoflow switch's passive port did not open")
        else:
            self.bridge = f"kfp2f{secrets.token_hex(2)}"
            vsctl("add-br", self.bridge, "--", "set", "Bridge", self.bridge, "datapath_type=netdev",
                  "protocols=OpenFlow13", "fail_mode=secure", "other-config:datapath-id=0000000000000001",
                  "other-config:disable-in-band=true", "external_ids:kumoflow-topology=p2f-bench",
                  "--", "set-controller", self.bridge, target)
            self.switch_pid = int(Path("/var/run/openvswitch/ovs-vswitchd.pid").read_text())
            await self.probe.open(unix=f"/var/run/openvswitch/{self.bridge}.mgmt")
        deadline = time.monotonic() + 30
        while not (await self.get("/sdn/switches", counters="false"))["switches"]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind}: the switch did not connect; see {self.log}")
            await asyncio.sleep(0.1)
        net = (await self.call("POST", "/v2.0/networks", {"network": {"name": "p2f"}}))["network"]["id"]
        self.network = net
        subnet = (await self.call("POST", "/v2.0/subnets", {"subnet": {"network_id": net, "cidr": "10.0.0.0/16",
                                                                        "ip_version": 4}}))["subnet"]["id"]
        router = (await self.call("POST", "/v2.0/routers", {"router": {"name": "p2f"}}))["router"]["id"]
        await self.call("PUT", f"/v2.0/routers/{router}/add_router_interface", {"subnet_id": subnet}, want=200)

    def _read_capture(self) -> None:
        try:
            self.capture.read()
        except BaseException as exc:      # noqa: BLE001 - a gap in the capture: report it, stop timing
            self.error = exc
            asyncio.get_running_loop().remove_reader(self.capture.fileno())

    def _on_message(self, ts: int, to_switch: bool, raw: bytes) -> None:
        kind = raw[1]
        if to_switch and kind == T_FLOW_MOD and raw[24] == NEIGHBOUR and raw[25] in ADD_OR_MODIFY:
            ip = ofp.parse(raw).match.get("ipv4_dst")
            if ip is not None and ip not in self.mods:
                self.mods[ip] = ts
                if self.timing and ip not in self.in_table:
                    self.in_table[ip] = asyncio.create_task(self._until_in_table(ip))
                event = self.mod_seen.get(ip)
                if event is not None:
                    event.set()
        elif to_switch and kind == T_MP_REQUEST and int.from_bytes(raw[8:10], "big") == MP_FLOW:
            self.audits.append([ts, 0])
        elif not to_switch and kind == T_MP_REPLY and int.from_bytes(raw[8:10], "big") == MP_FLOW \
                and not raw[11] & 1 and self.audits and not self.audits[-1][1]:
            self.audits[-1][1] = ts

    def _on_http(self, ts: int, to_api: bool, head: bytes) -> None:
        if to_api and head.startswith(b"POST /v2.0/ports "):
            self.posts.append(ts)
        elif not to_api and head.startswith(b"HTTP/1.1 "):
            self.answers.append(ts)

    async def _until_in_table(self, ip: str) -> tuple[int, int, int | None]:
        """(when the switch's reply first held the address's flow, requests made, when the last
        request whose reply did not hold it was sent: None if the first one did)."""
        missed = None
        for n in range(1, 10001):
            sent = time.time_ns()
            now, flows = await self.probe.flows(ip)
            if flows:
                return now, n, missed
            missed = sent
        raise RuntimeError(f"{self.kind}: the flow for {ip} never showed in the switch's table")

    async def call(self, method: str, path: str, body=None, want: int = 201, **params):
        r = await self.http.request(method, path, json=body, params=params or None)
        if r.status_code != want:
            raise RuntimeError(f"{self.kind}: {method} {path}: {r.status_code} {r.text[:500]}")
        return r.json() if r.content else None

    async def get(self, path: str, **params):
        return await self.call("GET", path, want=200, **params)

    # --- timing -----------------------------------------------------------------------

    async def one(self, name: str) -> dict:
        """One port POSTed and followed to its flow in the switch's table."""
        if self.error:
            raise self.error
        self.capture.read()
        posts, answers = len(self.posts), len(self.answers)
        self.timing = True
        try:
            t_client = time.time_ns()
            port = (await self.call("POST", "/v2.0/ports", {"port": {"network_id": self.network,
                                                                    "name": name}}))["port"]
            t_client_answer = time.time_ns()
            ip = port["fixed_ips"][0]["ip_address"]
            self.capture.read()
            if ip not in self.mods:
                event = self.mod_seen.setdefault(ip, asyncio.Event())
                await asyncio.wait_for(event.wait(), 30)
            seen, polls, missed = await asyncio.wait_for(self.in_table[ip], 30)
        finally:
            self.timing = False
        self.capture.read()
        if self.error:
            raise self.error
        self.ports += 1
        if len(self.posts) != posts + 1 or len(self.answers) < answers + 1:
            raise RuntimeError(f"{self.kind}: expected one POST and its answer in the capture, saw "
                               f"{len(self.posts) - posts} and {len(self.answers) - answers}")
        t0, answer, mod = self.posts[posts], self.answers[answers], self.mods[ip]
        return {"ip": ip, "t0": t0, "t_answer": answer, "t_mod": mod, "to_mod": (mod - t0) / 1e9,
                "to_table": (seen - t0) / 1e9, "to_table_lo": (max(mod, missed or 0) - t0) / 1e9,
                "answer": (answer - t0) / 1e9, "client": (t_client_answer - t_client) / 1e9, "polls": polls,
                "audit": any(start <= seen and (end or seen) >= t0 for start, end in self.audits)}

    async def warm_up(self, n: int) -> None:
        """n ports made and deleted: the first requests' one-time costs (imports, caches) out of the figures."""
        made = []
        for i in range(n):
            made.append(await self.one(f"warm-{i}"))
            self.ports -= 1
        for sample in made:
            port = (await self.get("/v2.0/ports", fixed_ips=f"ip_address={sample['ip']}"))["ports"][0]
            await self.call("DELETE", f"/v2.0/ports/{port['id']}", want=204)
        await asyncio.sleep(1.0)
        for sample in made:
            self.mods.pop(sample["ip"], None)
            self.in_table.pop(sample["ip"], None)

    async def preload(self, total: int) -> float:
        """Bulk creates until `total` ports exist; their flows at the switch. Seconds taken."""
        t = time.monotonic()
        while self.ports < total:
            n = min(BULK, total - self.ports)
            await self.call("POST", "/v2.0/ports", {"ports": [{"network_id": self.network,
                                                               "name": f"pre{self.ports + i}"} for i in range(n)]})
            self.ports += n
            if self.error:
                raise self.error
        deadline = time.monotonic() + 120
        while len(self.mods) < self.ports:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind}: {len(self.mods)} neighbour flows sent for {self.ports} ports")
            await asyncio.sleep(0.1)
        return time.monotonic() - t

    async def probe_rtt(self, ips: list[str], n: int) -> list[float]:
        """Round trips of the flow-stats request used above, for addresses whose flow is there."""
        out = []
        for i in range(n):
            t = time.time_ns()
            now, flows = await self.probe.flows(ips[i % len(ips)])
            assert flows
            out.append((now - t) / 1e9)
        return out

    async def check_table(self, ips: list[str]) -> dict:
        _, flows = await self.probe.flows()
        have = {f.match.get("ipv4_dst") for f in flows} - {None}          # (less the table's miss entry)
        return {"neighbour_flows": len(have), "missing": sorted(set(ips) - have)}

    async def close(self) -> None:
        if self.probe is not None:
            self.probe.close()
        if getattr(self, "http", None) is not None:
            await self.http.aclose()
        if self.capture is not None:
            try:
                asyncio.get_running_loop().remove_reader(self.capture.fileno())
            except Exception:      # noqa: BLE001
                pass
            self.capture.close()
        if self.bridge:
            vsctl("--if-exists", "del-br", self.bridge, check=False)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def vsctl(*args: str, check: bool = True) -> None:
    done = subprocess.run(["ovs-vsctl", "--timeout=20", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ovs-vsctl {' '.join(args[:2])}: {done.stderr.strip()}")


async def run(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="kf-p2f-"))
    clouds = [Cloud(kind, tmp, args.breakdown) for kind in args.switches]
    out: dict = {"phases": {}, "tmp": str(tmp)}
    try:
        for cloud in clouds:
            await cloud.start()
        await asyncio.sleep(args.settle)           # the controllers' settle period after a switch comes up
        for cloud in clouds:
            await cloud.warm_up(args.warmup)
        for phase, present in (("0", 0), ("present", args.present)):
            if present:
                for cloud in clouds:
                    took = await cloud.preload(present)
                    print(f"  {cloud.kind}: {cloud.ports:,} ports present ({took:.1f} s)", flush=True)
                    out.setdefault("preload_s", {})[cloud.kind] = took
                await asyncio.sleep(2.0)
            spies = start_profiles(args.profile, clouds, phase) if args.profile else []
            samples: dict[str, list] = {c.kind: [] for c in clouds}
            cpu0 = {c.kind: (benchlib.cpu_seconds(c.controller_pid), benchlib.cpu_seconds(c.switch_pid))
                    for c in clouds}
            wall, busy0 = time.monotonic(), benchlib.busy_seconds()
            for i in range(args.ports):
                for cloud in clouds:
                    samples[cloud.kind].append(await cloud.one(f"p{phase}-{i}"))
                    await asyncio.sleep(args.gap)
            wall = time.monotonic() - wall
            if spies:
                out.setdefault("profiles", {})[phase] = stop_profiles(spies)
            cpu = {c.kind: [benchlib.cpu_seconds(c.controller_pid) - cpu0[c.kind][0],
                            benchlib.cpu_seconds(c.switch_pid) - cpu0[c.kind][1]] for c in clouds}
            out["phases"][phase] = {"present_at_start": present, "samples": samples, "cpu": cpu,
                                    "machine_busy": (benchlib.busy_seconds() - busy0) / wall}
            print(f"  phase {present:,} present: done ({wall:.1f} s)", flush=True)
        for cloud in clouds:
            ips = [s["ip"] for phase in out["phases"].values() for s in phase["samples"][cloud.kind]]
            out.setdefault("checks", {})[cloud.kind] = {**await cloud.check_table(ips), "ports": cloud.ports,
                                                        "capture_drops": cloud.capture.drops(),
                                                        "audits": len(cloud.audits)}
            out.setdefault("probe_rtt", {})[cloud.kind] = await cloud.probe_rtt(ips, 50)
    finally:
        for cloud in clouds:
            await cloud.close()
    out["load_end"] = os.getloadavg()[0]
    for cloud in clouds:
        if cloud.timings is not None and cloud.timings.exists():
            commits = json.loads(cloud.timings.read_text())["records"]
            for phase in out["phases"].values():
                for sample in phase["samples"][cloud.kind]:
                    sample["commits"] = [c for c in commits if sample["t0"] <= c[0] <= sample["t_answer"]]
    return out


def start_profiles(directory: str, clouds: list[Cloud], phase: str) -> list:
    """py-spy on each controller while a phase is timed (--profile: 500 samples a second, nonblocking)."""
    spy = benchlib.py_spy()
    if spy is None:
        raise SystemExit("--profile needs py-spy (.venv/bin/pip install py-spy)")
    Path(directory).mkdir(parents=True, exist_ok=True)
    out = []
    for cloud in clouds:
        path = Path(directory) / f"controller-{cloud.kind}-{phase}.txt"
        out.append((cloud.kind, path, subprocess.Popen(
            [spy, "record", "--pid", str(cloud.controller_pid), "--rate", "500", "--nonblocking", "--format", "raw",
             "--output", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    return out


#: frames whose inclusive share --profile reports (a function name in py-spy's "name (file:line)" frames)
PROFILE_FRAMES = ("create_ports", "new_port", "_commit", "_deliver", "_compile", "_sync", "flush", "audit",
                  "_read_done", "serialize_response", "jsonable_encoder", "run_endpoint_function", "solve_dependencies",
                  "request_body_to_args", "validate_python", "data_received")


def stop_profiles(spies: list) -> dict:
    """Inclusive share of PROFILE_FRAMES in each controller's samples."""
    out = {}
    for kind, path, proc in spies:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        total, found = 0, dict.fromkeys(PROFILE_FRAMES, 0)
        for frames, count in benchlib.collapsed(path.read_text() if path.exists() else ""):
            total += count
            names = {f.split(" (", 1)[0] for f in frames}
            for name in PROFILE_FRAMES:
                if name in names:
                    found[name] += count
        out[kind] = {"samples": total, "file": str(path),
                     "share": {k: round(v / total, 3) for k, v in found.items() if v} if total else {}}
    return out


#: the parts of the time to the FLOW_MOD, as the --breakdown clocks split it (milliseconds each)
PARTS = ("HTTP, FastAPI, validation", "the port built (address, MAC, group)", "store: SQL and COMMIT (fsync)",
         "change to the apps", "compile",
         "reconcile (diff, encode)", "socket write to FLOW_MOD at the switch", "FLOW_MOD to flow seen")


def parts(sample: dict) -> list[float] | None:
    """Milliseconds of each of PARTS for one sample (None without exactly one commit in its window)."""
    if len(sample.get("commits", ())) != 1:
        return None
    start, total, deliver, compile_, sync, flush, _, _, build = sample["commits"][0]
    t0, mod = sample["t0"], sample["t_mod"]
    in_deliver = deliver - compile_ - sync - flush
    before_flush = start + (total - deliver) + in_deliver + compile_ + sync      # about when the write began
    return [(start - t0 - build) / 1e6, build / 1e6, (total - deliver) / 1e6, in_deliver / 1e6, compile_ / 1e6,
            sync / 1e6, (mod - before_flush) / 1e6, (sample["to_table"] - sample["to_mod"]) * 1e3]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def ms(v: float) -> str:
    return f"{v * 1000:.1f}" if v >= 0.01 else f"{v * 1000:.2f}"


def report(r: dict) -> str:
    lines = [*benchlib.machine_lines(r["machine"]), f"- command: `{r['command']}`",
             f"- load average at the end: {r['load_end']:.1f}", ""]
    rows, med = [], {}
    for phase in r["phases"].values():
        for kind, samples in phase["samples"].items():
            mod = [s["to_mod"] for s in samples]
            table = [s["to_table"] for s in samples]
            table_lo = [s["to_table_lo"] for s in samples]
            first = sum(s["polls"] == 1 for s in samples)
            answer = [s["answer"] for s in samples]
            before = sum(s["to_mod"] < s["answer"] for s in samples)
            med[(kind, phase["present_at_start"])] = statistics.median(mod)
            rows.append([kind, f"{phase['present_at_start']:,}", len(samples),
                         f"{ms(pct(mod, .5))} / {ms(pct(mod, .99))}",
                         f"{ms(pct(table_lo, .5))}-{ms(pct(table, .5))} / "
                         f"{ms(pct(table_lo, .99))}-{ms(pct(table, .99))}",
                         f"{first}/{len(samples)}",
                         f"{ms(pct(answer, .5))} / {ms(pct(answer, .99))}", f"{before}/{len(samples)}",
                         f"{sum(s['audit'] for s in samples)}",
                         f"{phase['cpu'][kind][0] * 1000 / len(samples):.1f} / " + (
                             f"{phase['cpu'][kind][1] * 1000 / len(samples):.1f}" if kind == "kumoflow"
                             else "(shared)")])
    lines += ["Milliseconds from the POST reaching the API (kernel timestamp) to: the FLOW_MOD adding the port's "
              "neighbour flow reaching the switch (kernel timestamp); the flow in the switch's table, bracketed by "
              "flow-stats requests asked from when the FLOW_MOD was seen (after: the FLOW_MOD, or the last request "
              "whose reply lacked the flow; by: the reply that held it); the API's answer reaching the client. "
              "p50 / p99.", "",
              benchlib.md_table(["switch", "ports present", "n", "to FLOW_MOD at the switch",
                                 "to flow in the table: after-by", "found by the first request",
                                 "to the API's answer", "FLOW_MOD before answer",
                                 "during an audit", "CPU ms per port: controller / switch"], rows)]
    kinds = list(r["checks"])
    if len(kinds) == 2:
        a, b = kinds
        lines += ["", "kumoflow / Open vSwitch, median to FLOW_MOD: " + ", ".join(
            f"{p:,} present {med[(a, p)] / med[(b, p)]:.2f}x" for p in sorted({p for _, p in med}))]
    rtt = {k: v for k, v in r["probe_rtt"].items()}
    lines += ["", "Probe RTT (one flow-stats request for one address, table full, after the runs): " + "; ".join(
        f"{k} p50 {ms(pct(v, .5))} ms, p99 {ms(pct(v, .99))} ms" for k, v in rtt.items())]
    brows = []
    for phase in r["phases"].values():
        for kind, samples in phase["samples"].items():
            split = [p for p in map(parts, samples) if p is not None]
            if split:
                brows.append([kind, f"{phase['present_at_start']:,}", len(split),
                              *(f"{statistics.median(col):.2f}" for col in zip(*split)),
                              f"{statistics.median(sum(p[:7]) for p in split):.2f}"])
    if brows:
        lines += ["", "Where the time goes (--breakdown: clocks on the store commit, the watchers, compile, "
                  "reconcile and the socket write inside the controller; medians of each part, ms, over the samples "
                  "with one commit in their POST's window; the parts' medians need not add up to the total's):", "",
                  benchlib.md_table(["switch", "present", "n", *PARTS, "sum to FLOW_MOD"], brows)]
    for phase, profiles in r.get("profiles", {}).items():
        for kind, prof in profiles.items():
            lines += ["", f"py-spy, {kind}'s controller, phase {phase} ({prof['samples']} samples, {prof['file']}): "
                      + ", ".join(f"{k} {v:.0%}" for k, v in sorted(prof["share"].items(), key=lambda kv: -kv[1]))]
    bad = []
    for kind, check in r["checks"].items():
        lines.append(f"{kind}: {check['ports']:,} ports, {check['neighbour_flows']:,} neighbour flows in the "
                     f"switch at the end, {check['audits']} audits seen, {check['capture_drops']} capture drops")
        if check["missing"]:
            bad.append(f"{kind}: {len(check['missing'])} measured ports have no flow in the switch")
    busy = [p["machine_busy"] for p in r["phases"].values()]
    lines += ["", "The machine's CPUs were busy " + ", ".join(f"{b / (r['machine']['nproc'] or 1):.0%}"
                                                          for b in busy) + " (the two phases)."]
    if bad:
        lines += ["", "**Flow check failed**: " + "; ".join(bad)]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ports", type=int, help="single POSTs timed per switch and phase (default 200; --quick 20)")
    ap.add_argument("--present", type=int, help="ports present in the second phase (default 10,000; --quick 500)")
    ap.add_argument("--gap", type=float, default=0.01, help="pause after each timed port, seconds (default 0.01)")
    ap.add_argument("--warmup", type=int, default=10,
                    help="ports made and deleted per switch before timing (default 10)")
    ap.add_argument("--settle", type=float, default=4.0, help="wait after the switches connect (default 4 s)")
    ap.add_argument("--no-breakdown", dest="breakdown", action="store_false",
                    help="run the plain controller (by default _timed_controller.py: clocks on the commit, "
                         "compile, reconcile and write, about a microsecond each)")
    ap.add_argument("--profile", metavar="DIR",
                    help="py-spy each controller while the phases are timed; raw profiles to DIR")
    ap.add_argument("--switches", default="kumoflow,ovs", help="switch kinds, in turn (default kumoflow,ovs)")
    benchlib.add_output_args(ap, "20 ports per switch, 0 and 500 present: a smoke test, not a figure")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (a packet socket on lo, Open vSwitch)", file=sys.stderr)
        return 2
    args.ports = args.ports or (20 if args.quick else 200)
    args.present = args.present or (500 if args.quick else 10000)
    args.switches = [s.strip() for s in args.switches.split(",") if s.strip()]
    if args.present < args.ports or not set(args.switches) <= {"kumoflow", "ovs"}:
        ap.error("--present must be at least --ports; --switches: kumoflow and/or ovs")
    benchlib.exit_on_sigterm()
    machine = benchlib.machine(packages=("fastapi", "uvicorn", "httpx", "uvloop"),
                               tools=(("ovs-vswitchd", "--version"),))
    results = asyncio.run(run(args))
    results.update(machine=machine, args=vars(args), command="sudo " + benchlib.command_line())
    if args.json:
        benchlib.write_json(args.json, results)
    print()
    text = report(results)
    print(text)
    return 1 if "Flow check failed" in text else 0


if __name__ == "__main__":
    sys.exit(main())
