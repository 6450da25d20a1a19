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
import subprocess
import sys
import time
from pathlib import Path

import kumoflow

SRC = str(Path(kumoflow.__file__).resolve().parents[1])
HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parents[1] / "examples"
ENV = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


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


def wait_listening(ns: str, port: int, proc: subprocess.Popen | None = None, timeout: float = 20) -> None:
    """Wait until a TCP socket listens on `port` in network namespace `ns`
    (asked of the kernel with ss); fail at once if `proc` exits."""
    def listening():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}: {proc.communicate()}")
        return sh("ip", "netns", "exec", ns, "ss", "-Hltn", f"sport = :{port}").stdout.strip()
    wait_until(listening, timeout, interval=0.05, what=f"a listener on port {port} in {ns}")


_TCP_SERVER = """
import hashlib, socket, sys
s = socket.socket()
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
s.settimeout(60)
c, _ = s.accept()
c.settimeout(60)
h, n = hashlib.sha256(), 0
while data := c.recv(1 << 16):
    h.update(data)
    n += len(data)
c.close()
print(n, h.hexdigest())
"""

_TCP_CLIENT = """
import hashlib, os, socket, sys
data = os.urandom(int(sys.argv[3]))
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
c.sendall(data)
c.shutdown(socket.SHUT_WR)
assert c.recv(1) == b""             # the server closes once it has read everything
print(len(data), hashlib.sha256(data).hexdigest())
"""

TCP_BYTES = 4 << 20


def tcp_transfer(client_ns: str, server_ns: str, server_ip: str, size: int = TCP_BYTES, port: int = 5001) -> None:
    """`size` random bytes over one TCP connection from namespace `client_ns`
    to a server at `server_ip`:`port` in `server_ns` (a fixed port: the
    namespace is the test's own), once it listens; the server must get every
    byte, intact (same length and sha256). How fast does not matter."""
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, sys.executable, "-c", _TCP_SERVER, server_ip,
                               str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_listening(server_ns, port, server)
        client = sh("ip", "netns", "exec", client_ns, sys.executable, "-c", _TCP_CLIENT, server_ip, str(port),
                    str(size), timeout=120)
        out, err = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0, err
    sent = client.stdout.split()
    assert sent[0] == str(size) and out.split() == sent, f"sent {sent}, received {out.split()}"


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
    """``kumoflow switch`` as a child process, with a status file and a log.
    Its passive listener (``listen``) binds port 0: the port the kernel gave
    it comes from the status file once the switch is up (`target`)."""

    def __init__(self, workdir: Path, ports: dict[int, str], *, dpid: int = 1, controllers=(), listen: bool = True,
                 fail_mode: str = "secure", extra=()):
        self.workdir = Path(workdir)
        self.status_file = self.workdir / f"switch-{dpid}.json"
        self.log_file = self.workdir / f"switch-{dpid}.log"
        self.listen_port: int | None = None
        argv = [sys.executable, "-m", "kumoflow.cli", "switch", "--dpid", hex(dpid), "--fail-mode", fail_mode,
                "--status-file", str(self.status_file), "--log-level", "debug", *extra]
        for n, ifname in ports.items():
            argv += ["--port", f"{n}={ifname}"]
        for c in controllers:
            argv += ["--controller", c]
        if listen:
            argv += ["--listen", "ptcp:0:127.0.0.1"]
        self.listen = listen
        self.argv = argv
        self.proc: subprocess.Popen | None = None

    @property
    def target(self) -> str:
        assert self.listen_port, "no listener: not started, or started without one"
        return f"tcp:127.0.0.1:{self.listen_port}"

    def start(self) -> "SwitchProcess":
        with open(self.log_file, "wb") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=ENV)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"switch exited with {self.proc.returncode}:\n{self.log()}")
            return self.status()
        status = wait_until(ready, 15, what="switch start")
        if self.listen:
            [listening] = status["listen"]                          # ptcp:PORT:127.0.0.1
            self.listen_port = int(listening.split(":")[1])
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
    """A controller in a child process: kumoflow's (``--app``) or the os-ken app.

    It binds port 0 and writes the port it got to a status file, which is
    also how `start` knows it listens; a restart (`stop`, then `start`)
    binds that port again, so switches configured with `target` find it."""

    _count = 0

    def __init__(self, workdir: Path, kind: str = "kumoflow", app: str = "l2"):
        ControllerProcess._count += 1
        name = f"controller-{kind}-{ControllerProcess._count}"
        self.kind, self.app, self.port = kind, app, 0
        self.log_file = Path(workdir) / f"{name}.log"
        self.status_file = Path(workdir) / f"{name}.json"
        self.proc: subprocess.Popen | None = None

    @property
    def target(self) -> str:
        assert self.port, "the controller has not been started: its port is not known yet"
        return f"tcp:127.0.0.1:{self.port}"

    def _argv(self) -> list[str]:
        if self.kind == "kumoflow":
            return [sys.executable, "-m", "kumoflow.cli", "controller", "--app", self.app,
                    "--listen", f"tcp:127.0.0.1:{self.port}", "--status-file", str(self.status_file),
                    "--log-level", "debug", "--store", "none"]
        return [sys.executable, str(HERE / "osken_l2_app.py"), "--status-file", str(self.status_file),
                "--ofp-tcp-listen-port", str(self.port), "--ofp-listen-host", "127.0.0.1"]

    def start(self) -> "ControllerProcess":
        self.status_file.unlink(missing_ok=True)
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(self._argv(), stdout=log, stderr=subprocess.STDOUT, env=ENV)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"controller exited with {self.proc.returncode}:\n{self.log()}")
            try:
                return json.loads(self.status_file.read_text())["listen"]
            except (OSError, ValueError):
                return None
        [address] = wait_until(listening, 20, what="controller listening")
        self.port = int(address.rsplit(":", 1)[1])
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
def hosts_on_veths(unique_name, count: int, offloads: bool = False, subnet: str = "10.77.0", quiet: bool = False):
    """`count` hosts: namespace h_i with eth0 at {subnet}.{i}/24 and MAC
    02:00:00:00:00:0i, wired to root-namespace interface p_i. Yields
    [(namespace, port ifname, ip, mac)]. Removed whatever happens.
    `quiet`: IPv6 off on both ends, so the kernel sends nothing of its own
    (no router solicitations, no MLD): only what a test sends reaches the switch."""
    made = []
    try:
        for i in range(1, count + 1):
            ns, port = unique_name("h"), unique_name("p")
            ip, mac = f"{subnet}.{i}", f"02:00:00:00:00:{i:02x}"
            made.append((ns, port, ip, mac))
            sh("ip", "netns", "add", ns)
            if quiet:
                sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                   "net.ipv6.conf.default.disable_ipv6=1")
            sh("ip", "link", "add", port, "type", "veth", "peer", "name", port + "x")
            if quiet:
                sh("sysctl", "-qw", f"net.ipv6.conf.{port}.disable_ipv6=1")
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
