"""Shared helpers of the kumoflow switch's integration tests (no tests here).

* :class:`SwitchProcess`: ``kumoflow switch`` in a child process, stopped by pid;
* :func:`hosts_on_veths`: namespaces with one veth each, the other end in
  the root namespace as a switch port; always removed;
* :class:`ControllerProcess`: ``kumoflow controller`` or the os-ken app;
* :func:`ofctl` and parsers for ovs-ofctl's text output;
* :func:`kumoflow_topology`: an example topology with its switches made
  ``kind: kumoflow``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import kumoflow

SRC = str(Path(kumoflow.__file__).resolve().parents[1])
HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parents[1] / "examples"
ENV = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(interval)


def _stop_pid(proc: subprocess.Popen, grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


class SwitchProcess:
    """``kumoflow switch`` as a child process, with a status file and a log."""

    def __init__(self, workdir: Path, ports: dict[int, str], *, dpid: int = 1, controllers=(), listen: bool = True,
                 fail_mode: str = "secure", extra=()):
        self.workdir = Path(workdir)
        self.status_file = self.workdir / f"switch-{dpid}.json"
        self.log_file = self.workdir / f"switch-{dpid}.log"
        self.listen_port = free_port() if listen else None
        argv = [sys.executable, "-m", "kumoflow.cli", "switch", "--dpid", hex(dpid), "--fail-mode", fail_mode,
                "--status-file", str(self.status_file), "--log-level", "debug", *extra]
        for n, ifname in ports.items():
            argv += ["--port", f"{n}={ifname}"]
        for c in controllers:
            argv += ["--controller", c]
        if listen:
            argv += ["--listen", f"ptcp:{self.listen_port}:127.0.0.1"]
        self.argv = argv
        self.proc: subprocess.Popen | None = None

    @property
    def target(self) -> str:
        return f"tcp:127.0.0.1:{self.listen_port}"

    def start(self) -> "SwitchProcess":
        with open(self.log_file, "wb") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=ENV)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"switch exited with {self.proc.returncode}:\n{self.log()}")
            return self.status()
        wait_until(ready, 15, what="switch start")
        return self

    def status(self) -> dict | None:
        try:
            return json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return None

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None:
            _stop_pid(self.proc)

    def __enter__(self) -> "SwitchProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ControllerProcess:
    """A controller in a child process: kumoflow's (``--app``) or the os-ken app."""

    def __init__(self, workdir: Path, kind: str = "kumoflow", app: str = "l2", port: int | None = None):
        self.port = port or free_port()
        self.log_file = Path(workdir) / f"controller-{kind}-{self.port}.log"
        if kind == "kumoflow":
            self.argv = [sys.executable, "-m", "kumoflow.cli", "controller", "--app", app,
                         "--listen", f"tcp:127.0.0.1:{self.port}", "--log-level", "debug"]
        else:
            self.argv = [sys.executable, str(HERE / "osken_l2_app.py"), "--ofp-tcp-listen-port", str(self.port),
                         "--ofp-listen-host", "127.0.0.1"]
        self.proc: subprocess.Popen | None = None

    @property
    def target(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    def start(self) -> "ControllerProcess":
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=ENV)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"controller exited with {self.proc.returncode}:\n{self.log()}")
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0
        wait_until(listening, 20, what="controller listening")
        return self

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None:
            _stop_pid(self.proc)

    def __enter__(self) -> "ControllerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def hosts_on_veths(unique_name, count: int, offloads: bool = False, subnet: str = "10.77.0"):
    """`count` hosts: namespace h_i with eth0 at {subnet}.{i}/24 and MAC
    02:00:00:00:00:0i, wired to root-namespace interface p_i. Yields
    [(namespace, port ifname, ip, mac)]. Removed whatever happens."""
    made = []
    try:
        for i in range(1, count + 1):
            ns, port = unique_name("h"), unique_name("p")
            ip, mac = f"{subnet}.{i}", f"02:00:00:00:00:{i:02x}"
            made.append((ns, port, ip, mac))
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", port, "type", "veth", "peer", "name", port + "x")
            if not offloads:
                for dev in (port, port + "x"):
                    sh("ethtool", "-K", dev, "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off",
                       check=False)
            sh("ip", "link", "set", port + "x", "netns", ns)
            sh("ip", "-n", ns, "link", "set", port + "x", "name", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "address", mac)
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "link", "set", port, "up")
        yield made
    finally:
        for ns, port, _, _ in made:
            sh("ip", "link", "del", port, check=False)
            sh("ip", "netns", "del", ns, check=False)


def ping(ns: str, ip: str, count: int = 1, timeout: float = 2) -> bool:
    return sh("ip", "netns", "exec", ns, "ping", "-c", str(count), "-i", "0.2", "-W", str(timeout), ip,
              check=False, timeout=30).returncode == 0


# --- ovs-ofctl ------------------------------------------------------------------------------


def ofctl(target: str, *args: str, check: bool = True) -> str:
    proc = sh("ovs-ofctl", "-O", "OpenFlow13", "--timeout=10", args[0], target, *args[1:], check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"ovs-ofctl {' '.join(args)} {target}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout if check else proc.stdout + proc.stderr


_FLOW_STAT = re.compile(r"^(cookie|duration|table|n_packets|n_bytes|idle_timeout|hard_timeout|idle_age|hard_age|"
                        r"reset_counts|no_packet_counts|no_byte_counts|send_flow_rem|check_overlap|importance)\b")


def parse_flows(text: str) -> list[dict]:
    """dump-flows output -> [{'table': '0', 'priority': '100', 'match': 'ip,nw_dst=..', 'actions': '..', ...}]."""
    flows = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("OFPST_") or " actions=" not in line and not line.startswith("actions="):
            continue
        head, _, actions = line.partition("actions=")
        stats: dict[str, str] = {}
        match_parts = []
        for part in head.replace(", ", ",").strip().rstrip(",").split(","):
            part = part.strip()
            if not part:
                continue
            key, _, value = part.partition("=")
            if _FLOW_STAT.match(part) or key == "priority":
                stats[key] = value
            else:
                match_parts.append(part)
        stats["match"] = ",".join(match_parts)
        stats["actions"] = actions.strip()
        flows.append(stats)
    return flows


def flow_keys(text: str, *, counters: bool = False) -> list[tuple]:
    """What a dump-flows shows, without the times (and counters) that differ between switches."""
    out = []
    for f in parse_flows(text):
        key = [f.get("table", "0"), f.get("priority", "32768"), f["match"], f["actions"], f.get("cookie", "0x0"),
               f.get("idle_timeout", "0"), f.get("hard_timeout", "0")]
        if counters:
            key += [f.get("n_packets"), f.get("n_bytes")]
        out.append(tuple(key))
    return sorted(out)


def parse_ports_desc(text: str) -> dict[str, dict]:
    """dump-ports-desc -> {port number or LOCAL: {'name', 'addr', 'config', 'state', 'speed'}}."""
    ports: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^\s*(\w+)\((.*?)\): addr:([0-9a-f:]+)", line)
        if m:
            current = {"name": m.group(2), "addr": m.group(3)}
            ports[m.group(1)] = current
            continue
        m = re.match(r"^\s+(config|state|current|speed):?\s+(.*)$", line)
        if m and current is not None:
            current[m.group(1)] = m.group(2).strip()
    return ports


def parse_port_stats(text: str) -> dict[str, dict[str, int]]:
    """dump-ports -> {'1': {'rx_pkts': .., 'rx_bytes': .., 'rx_drop': .., 'tx_pkts': .., ...}}."""
    stats: dict[str, dict[str, int]] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^\s*port\s+\"?(\w+)\"?:\s+rx (.*)$", line)
        if m:
            current = stats.setdefault(m.group(1), {})
            rest, prefix = m.group(2), "rx_"
        else:
            m = re.match(r"^\s+tx (.*)$", line)
            if not m or current is None:
                continue
            rest, prefix = m.group(1), "tx_"
        for item in rest.split(","):
            key, _, value = item.strip().partition("=")
            if value and value != "?":
                current[prefix + key] = int(value)
    return stats


# --- the emulator ------------------------------------------------------------------------------


def kumoflow_topology(path: Path, kinds: dict[str, str] | None = None, **changes):
    """The topology in `path` with every switch (or those named in `kinds`) of kind kumoflow."""
    from kumoflow.net.topology import load_topology

    topo = load_topology(path)
    switches = tuple(dataclasses.replace(s, kind=(kinds or {}).get(s.name, "kumoflow" if kinds is None else s.kind))
                     for s in topo.switches)
    return dataclasses.replace(topo, switches=switches, **changes)
