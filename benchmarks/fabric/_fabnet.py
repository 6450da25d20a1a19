"""What reroute.py and convergence.py share: an example topology brought up
under a name of its own, a `kumoflow controller --app fabric` process, its
log, links cut and mended, groups read back.

Everything made here is removed again by `Lab.close()` (also on an error or
Ctrl-C): processes this run started (by pid), links it set down (set up
again), the topology (`Network.down`). Names: ``fb`` + a letter for the
topology + 3 hex digits of this process's id and a random number, so two
runs (or another user's topologies) never collide.
"""

from __future__ import annotations

import datetime
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import benchlib

benchlib.use_src()
from kumoflow.net import Network  # noqa: E402
from kumoflow.net import state  # noqa: E402

EXAMPLES = benchlib.REPO / "examples"
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def unique_name(topology: str) -> str:
    return f"fb{topology[0]}{secrets.token_hex(2)[:3]}"


def sh(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout)


def log_time(line: str) -> float | None:
    """The wall-clock time (epoch seconds) of a controller log line."""
    m = LOG_TIME.match(line)
    if not m:
        return None
    return datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


class Controller:
    """`kumoflow controller --app fabric` on a loopback port, stopped by pid."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.options: tuple[str, ...] = ()
        self.started_wall = 0.0
        self.started_mono = 0.0
        self._offset = 0      # where this process's lines start in the log

    @property
    def target(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    def start(self, options: tuple[str, ...] = (), log_level: str = "info", wait: bool = True) -> "Controller":
        argv = [sys.executable, "-m", "kumoflow.cli", "controller", "--listen", self.target, "--app", "fabric",
                "--log-level", log_level, *options]
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        out = open(self.log, "ab")
        out.write(f"=== {' '.join(argv[3:])}\n".encode())
        out.flush()
        self.started_wall, self.started_mono = time.time(), time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONPATH": str(benchlib.SRC)})
        out.close()
        self.options = tuple(options)
        if wait:
            self.wait_listening()
        return self

    def wait_listening(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"controller exited with {self.proc.returncode}; see {self.log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("controller did not start listening")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def lines(self) -> list[str]:
        """This process's log lines so far."""
        with open(self.log, "rb") as f:
            f.seek(self._offset)
            return f.read().decode(errors="replace").splitlines()

    def grep(self, text: str, since_wall: float = 0.0) -> list[tuple[float, str]]:
        out = []
        for line in self.lines():
            if text in line:
                t = log_time(line)
                if t is not None and t >= since_wall - 0.0005:
                    out.append((t, line))
        return out

    def wait_for(self, text: str, count: int = 1, since_wall: float = 0.0, timeout: float = 20.0) -> list:
        deadline = time.monotonic() + timeout
        while True:
            found = self.grep(text, since_wall)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise RuntimeError(f"controller log: {len(found)} of {count} {text!r} after {timeout:g}s "
                                   f"(see {self.log})")
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"controller exited with {self.proc.returncode}; see {self.log}")
            time.sleep(0.05)


class Lab:
    """One example topology, up under a unique name, and its controller."""

    def __init__(self, topology: str, workdir: Path) -> None:
        self.topology = topology
        self.name = unique_name(topology)
        self.workdir = workdir
        self.port = benchlib.free_port()
        self.net = Network.from_file(EXAMPLES / f"{topology}.yaml", name=self.name,
                                     controllers=[f"tcp:127.0.0.1:{self.port}"])
        self.controller = Controller(self.port, workdir / f"controller-{self.name}.log")
        self.down_links: set[str] = set()
        self.procs: list[subprocess.Popen] = []
        self.switch_links = [link for link in self.net.topology.links
                             if not self.net.topology.is_host(link.src.node)
                             and not self.net.topology.is_host(link.dst.node)]

    def up(self) -> "Lab":
        self.net.up()
        return self

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        self.controller.stop()
        for ifname in list(self.down_links):
            self.set_link(ifname, True, check=False)
        try:
            self.net.down()
        except Exception as exc:   # noqa: BLE001 - report, and let the caller's error through
            print(f"warning: tearing down {self.name}: {exc}", file=sys.stderr)

    # --- names ---

    def ifname(self, switch: str, port: int) -> str:
        """The root-namespace veth end that is port `port` of `switch`."""
        return self.net.plan.names.port(switch, port)

    def dpid(self, switch: str) -> int:
        return next(s.dpid for s in self.net.plan.switches if s.name == switch)

    def ofctl_target(self, switch: str) -> str:
        """What ovs-ofctl connects to for `switch`: an OVS bridge, or a kumoflow switch's listener."""
        plan = next(s for s in self.net.plan.switches if s.name == switch)
        if plan.kind == "ovs":
            return plan.bridge
        record = state.read(self.name) or {}
        for s in record.get("switches", []):
            if s.get("name") == switch and s.get("listen"):
                _, port, host = s["listen"].split(":")
                return f"tcp:{host}:{port}"
        raise RuntimeError(f"no OpenFlow listener for {switch}")

    def dump_groups(self, switch: str) -> str:
        return sh("ovs-ofctl", "-O", "OpenFlow13", "dump-groups", self.ofctl_target(switch)).stdout

    def dump_flows(self, switch: str) -> str:
        return sh("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", self.ofctl_target(switch)).stdout

    # --- links ---

    def set_link(self, ifname: str, up: bool, check: bool = True) -> None:
        sh("ip", "link", "set", ifname, "up" if up else "down", check=check)
        if up:
            self.down_links.discard(ifname)
        else:
            self.down_links.add(ifname)

    @staticmethod
    def counter(ifname: str, name: str) -> int:
        return int(Path(f"/sys/class/net/{ifname}/statistics/{name}").read_text())

    # --- processes in hosts ---

    def popen_in(self, host: str, argv: list[str]) -> subprocess.Popen:
        proc = self.net.host(host).popen(argv)
        self.procs.append(proc)
        return proc

    def static_neighbours(self) -> None:
        """Every host knows every other host's MAC (no ARP needed)."""
        hosts = self.net.hosts
        for h in hosts:
            for other in hosts:
                if other is not h:
                    h.run(["ip", "neigh", "replace", other.ip, "lladdr", other.mac, "dev", h.ifname,
                           "nud", "permanent"], check=True)

    # --- the controller ---

    def wait_converged(self, since_wall: float, timeout: float = 60.0) -> None:
        """Every switch connected and every switch-to-switch link found."""
        self.net.wait_connected(timeout)
        self.controller.wait_for("link up:", len(self.switch_links), since_wall, timeout)
