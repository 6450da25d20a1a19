"""What provisioning.py and move.py share: the controller with the tenants app
and its API as a process, an Open vSwitch netdev bridge as a hypervisor, the
flows a switch holds, and py-spy on the controller.

    cloud = Controller(tmp).start()          # kumoflow controller --app tenants --api ...
    cloud.post("/v2.0/networks", {...})      # the API as admin (httpx, one keep-alive connection)
    ...
    cloud.stop()
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # benchmarks/: benchlib
import benchlib  # noqa: E402

from overlay import sh  # noqa: E402  (benchmarks/tenants/overlay.py)

TOKEN = "bench-admin-token"
#: the kumoflow the processes run: this checkout's src/, or another copy (KUMOFLOW_SRC=DIR, e.g. the src/ of
#: `git archive COMMIT src`, to measure a commit while the working tree moves on)
SRC = os.environ.get("KUMOFLOW_SRC") or str(benchlib.SRC)
ENV = {**os.environ, "PYTHONPATH": SRC}


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM one process we started, SIGKILL after `timeout`."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_file(path: Path, proc: subprocess.Popen, log: Path, what: str, timeout: float = 30) -> dict:
    """The JSON a process writes to `path` once it is up."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    return json.loads(path.read_text())


class Controller:
    """`kumoflow controller --app tenants --api` (or other `apps`) in a process of its own, its store in `tmp`."""

    def __init__(self, tmp: Path, audit_interval: float = 0, log_level: str = "warning",
                 echo_interval: float = 5.0, apps: tuple[str, ...] = ("tenants",)) -> None:
        self.tmp, self.audit_interval, self.log_level, self.apps = tmp, audit_interval, log_level, apps
        self.echo_interval = echo_interval
        self.proc: subprocess.Popen | None = None
        self.http = None
        self.listen = self.url = ""

    def start(self) -> "Controller":
        import httpx

        status, log = self.tmp / "controller.json", self.tmp / "controller.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kumoflow.cli", "controller", *(a for app in self.apps for a in ("--app", app)),
             "--listen", "tcp:127.0.0.1:0",
             "--api", "127.0.0.1:0", "--admin-token", TOKEN, "--store", f"sqlite:{self.tmp / 'kumoflow.db'}",
             "--audit-interval", str(self.audit_interval), "--echo-interval", str(self.echo_interval),
             "--status-file", str(status),
             "--log-level", self.log_level], stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=ENV)
        info = wait_file(status, self.proc, log, "the controller")
        [self.listen] = info["listen"]
        self.url = info["api"]
        self.http = httpx.Client(base_url=self.url, headers={"X-Auth-Token": TOKEN}, timeout=300)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def call(self, method: str, path: str, body: dict | None = None, want: int = 200, **params) -> dict:
        r = self.http.request(method, path, json=body, params=params or None)
        if r.status_code != want:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:500]}")
        return r.json()

    def post(self, path: str, body: dict) -> dict:
        return self.call("POST", path, body, 201)

    def wait_switches(self, dpids: set[int], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            up = {int(s["dpid"], 16) if isinstance(s["dpid"], str) else s["dpid"]
                  for s in self.call("GET", "/sdn/switches", counters="false")["switches"]}
            if dpids <= up:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"switches {sorted(dpids - up)} did not connect")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.http is not None:
            self.http.close()
        if self.proc is not None:
            stop_process(self.proc)


def load() -> str:
    """The load averages, as uptime prints them."""
    return sh("uptime").split("load average:")[1].strip()


def vsctl(*args: str, timeout: float = 600) -> str:
    try:
        return sh("ovs-vsctl", f"--timeout={int(timeout)}", *args, timeout=timeout + 10)
    except RuntimeError as exc:       # the command may be thousands of words: say what failed, not all of it
        raise RuntimeError(f"ovs-vsctl {' '.join(args[:6])} ...: {str(exc)[-300:]}") from None


def add_internal_ports(bridge: str, names: dict[int, str], chunk: int = 400) -> None:
    """Internal ports (port number -> name) on a bridge, `chunk` an OVSDB transaction (one argument
    each, within the kernel's 128 KB): ovs-vsctl checks each add-port against every port there is,
    minutes for 5,000."""
    items = list(names.items())
    for start in range(0, len(items), chunk):
        ops: list = ["Open_vSwitch"]
        ports = []
        for n, name in items[start:start + chunk]:
            ops.append({"op": "insert", "table": "Interface", "uuid-name": f"i{n}",
                        "row": {"name": name, "type": "internal", "ofport_request": n}})
            ops.append({"op": "insert", "table": "Port", "uuid-name": f"p{n}",
                        "row": {"name": name, "interfaces": ["named-uuid", f"i{n}"]}})
            ports.append(["named-uuid", f"p{n}"])
        ops.append({"op": "mutate", "table": "Bridge", "where": [["name", "==", bridge]],
                    "mutations": [["ports", "insert", ["set", ports]]]})
        out = sh("ovsdb-client", "transact", json.dumps(ops, separators=(",", ":")), timeout=600)
        if '"error"' in out:
            raise RuntimeError(f"adding ports to {bridge}: {out[-500:]}")


def ovs_bridge(name: str, dpid: int, ports: list[str] = ()) -> None:
    """A netdev bridge, fail mode secure, OpenFlow 1.3 (no controller yet: ``vsctl("set-controller", ...)``);
    `ports`: ovs-vsctl arguments appended to the same transaction."""
    vsctl("add-br", name, "--", "set", "bridge", name, "datapath_type=netdev", "fail_mode=secure",
          "protocols=OpenFlow13", f"other-config:datapath-id={dpid:016x}", *ports)


def flow_count(target: str) -> int:
    """The flows a switch holds (OpenFlow aggregate stats): a bridge's name, or tcp:HOST:PORT."""
    out = sh("ovs-ofctl", "-O", "OpenFlow13", "dump-aggregate", target, timeout=120)
    return int(out.split("flow_count=")[1].split()[0])


def py_spy(pid: int, path: Path) -> subprocess.Popen | None:
    """py-spy recording a process (raw, collapsed stacks) until stopped with SIGINT."""
    spy = benchlib.py_spy()
    if spy is None:
        print("py-spy not found: no profile", file=sys.stderr)
        return None
    return subprocess.Popen([spy, "record", "--format", "raw", "--rate", "50", "--nonblocking", "-p", str(pid),
                             "-o", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def spy_done(proc: subprocess.Popen | None, path: Path, top: int = 12) -> dict[str, list[tuple[str, float]]]:
    """Stop py-spy; the functions of kumoflow's own code with the largest share of samples, inclusive
    (less the frames that every sample has: the entry point and the loop) and self (the leaf)."""
    if proc is None:
        return {}
    import signal

    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if not path.exists():
        return {}

    def short(frame: str) -> str:       # "fn (path/file.py:line)" -> "fn (file.py)"
        name, _, where = frame.partition(" (")
        return f"{name} ({where.split(':')[0].rsplit('/', 1)[-1]})" if where else name

    total, inclusive, leaf = 0, {}, {}
    for frames, count in benchlib.collapsed(path.read_text()):
        total += count
        for name in {short(f) for f in frames if "kumoflow/" in f}:
            inclusive[name] = inclusive.get(name, 0) + count
        leaf[short(frames[-1])] = leaf.get(short(frames[-1]), 0) + count
    if not total:
        return {}

    def ranked(counts: dict[str, int]) -> list[tuple[str, float]]:
        return [(n, c / total) for n, c in sorted(counts.items(), key=lambda kv: -kv[1])
                if c < 0.97 * total][:top]
    return {"inclusive": ranked(inclusive), "self": ranked(leaf)}
