"""TCP connections timed from a namespace, and Open vSwitch hosts to time them
on: what firewall/connections.py, lb/connections.py and lb/failover.py share.

    server = serve(ns, "m1")                   # answers each connection's line with "m1"
    wait_answered(client_ns, "10.30.0.2")      # the path set up (raises after a minute)
    run = connect(client_ns, "10.30.0.2", PORT, 2000, 4)
    summary([run, ...])                        # medians of the runs, failed summed, answers counted
    stop(server)

    with ovs_hosts("lbg", HOSTS) as net:       # a netdev bridge, each host a namespace on a veth
        net.flows(...); connect(net.ns["c"], ...)

A connection: connect, send a line, read the answering line, close. Timed
per connection: the connect (SYN to SYN-ACK as the client sees it: what a
connection's first packet costs) and the whole request (connect to close).
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tenants"))     # overlay.sh
from overlay import sh  # noqa: E402

PORT = 8080

#: the server: PORT NAME; answers a line with NAME, an HTTP request (a health check) with 200 and NAME
SERVE = """\
import socketserver, sys
port, name = int(sys.argv[1]), sys.argv[2].encode()
page = b"HTTP/1.0 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n%s\\n" % (len(name) + 1, name)
class Answer(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline()
        if line.split(b" ", 1)[0] in (b"GET", b"HEAD"):
            while self.rfile.readline() not in (b"\\r\\n", b"\\n", b""):
                pass
            self.wfile.write(page)
        else:
            self.wfile.write(name + b"\\n")
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
socketserver.ThreadingTCPServer.request_queue_size = 1024
socketserver.ThreadingTCPServer(("0.0.0.0", port), Answer).serve_forever()
"""

#: the client: HOST PORT N PARALLEL [FIRST]; N connections, PARALLEL at a time, from source ports FIRST,
#: FIRST + 1, ... (0: as the kernel picks them); prints JSON: the wall time, the connect and request times (ms)
#: of those answered, the answers, the errors of those that failed
CONNECT = """\
import json, socket, sys, threading, time
host, port, n, parallel = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
first = int(sys.argv[5]) if len(sys.argv) > 5 else 0
connect, request, answers, errors, lock, left = [], [], [], [], threading.Lock(), [n]
def worker():
    while True:
        with lock:
            if not left[0]:
                return
            left[0] -= 1
            sport = first + n - 1 - left[0] if first else 0
        s = socket.socket()
        s.settimeout(5)
        if sport:
            s.bind(("0.0.0.0", sport))
        t0 = time.perf_counter()
        try:
            s.connect((host, port))
            t1 = time.perf_counter()
            s.sendall(b"hi\\n")
            answer = b""
            while not answer.endswith(b"\\n"):
                chunk = s.recv(64)
                if not chunk:
                    raise OSError("closed without an answer")
                answer += chunk
            s.close()
            t2 = time.perf_counter()
            connect.append((t1 - t0) * 1e3)
            request.append((t2 - t0) * 1e3)
            answers.append(answer.decode().strip())
        except OSError as exc:
            errors.append(type(exc).__name__ if exc.errno is None else exc.strerror or str(exc.errno))
        finally:
            s.close()
start = time.perf_counter()
threads = [threading.Thread(target=worker) for _ in range(parallel)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"wall": time.perf_counter() - start, "connect": connect, "request": request,
                  "answers": answers, "errors": errors}))
"""


def serve(ns: str, name: str = "ok", port: int = PORT) -> subprocess.Popen:
    """The server in namespace ns, answering with name. ``ip netns exec`` execs it: the pid is the server's."""
    return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVE, str(port), name],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen | None) -> None:
    """Kill a process we started and reap it."""
    if proc is not None and proc.poll() is None:
        proc.kill()
    if proc is not None:
        proc.wait()


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank q-quantile (0 < q <= 1) of sorted values."""
    return values[max(0, math.ceil(len(values) * q) - 1)] if values else None


def connect(ns: str, host: str, port: int, n: int, parallel: int, first_port: int = 0,
            timeout: float = 600) -> dict:
    """One run of the client from namespace ns: n connections, parallel at a time, from source ports
    first_port, first_port + 1, ... (0: the kernel's choice, which reuses a port as soon as its last
    connection is closed)."""
    out = json.loads(sh("ip", "netns", "exec", ns, sys.executable, "-c", CONNECT, host, str(port), str(n),
                        str(parallel), str(first_port), timeout=timeout))
    connect_ms, request_ms = sorted(out["connect"]), sorted(out["request"])
    return {"per_second": len(connect_ms) / out["wall"], "failed": len(out["errors"]),
            "errors": dict(Counter(out["errors"])), "answers": dict(Counter(out["answers"])),
            "connect_p50_ms": statistics.median(connect_ms) if connect_ms else None,
            "connect_p99_ms": percentile(connect_ms, 0.99),
            "request_p50_ms": statistics.median(request_ms) if request_ms else None,
            "request_p99_ms": percentile(request_ms, 0.99)}


FIGURES = ("per_second", "connect_p50_ms", "connect_p99_ms", "request_p50_ms", "request_p99_ms")


def summary(runs: list[dict]) -> dict:
    """The runs, the median of each figure over them, failed connections summed, answers counted."""
    answers: Counter = Counter()
    for r in runs:
        answers.update(r["answers"])
    out = {"runs": runs, "failed": sum(r["failed"] for r in runs), "answers": dict(sorted(answers.items()))}
    for key in FIGURES:
        values = [r[key] for r in runs if r[key] is not None]
        out[key] = statistics.median(values) if values else None
    return out


def wait_answered(ns: str, host: str, port: int = PORT, timeout: float = 60, first_port: int = 0) -> None:
    """Until one connection from ns to host:port is answered (the server listening, the path set up)."""
    deadline = time.monotonic() + timeout
    while connect(ns, host, port, 1, 1, first_port, timeout=60)["failed"]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{ns} does not reach {host}:{port}")
        time.sleep(0.5)


def offloads_off(dev: str, ns: str | None = None) -> None:
    """Checksum and segmentation offloads off on a veth end. Checksums left to the "NIC" reach Open
    vSwitch's userspace datapath unfilled; its conntrack then calls every segment invalid
    (../shared/notes/overlays.md: offloads off on veths to a netdev bridge)."""
    pre = ("ip", "netns", "exec", ns) if ns else ()
    sh(*pre, "ethtool", "-K", dev, "tx", "off", "rx", "off", "tso", "off", "gso", "off", check=False)


@dataclass
class OvsHosts:
    """A netdev bridge with no controller (fail mode secure) and hosts in namespaces on it."""

    bridge: str
    ns: dict[str, str] = field(default_factory=dict)         # host -> its namespace
    ofport: dict[str, int] = field(default_factory=dict)     # host -> its port on the bridge

    def ofctl(self, *args: str, version: str = "OpenFlow13") -> str:
        return sh("ovs-ofctl", "-O", version, *args)

    def flows(self, flows: Iterable[str]) -> None:
        for flow in flows:
            self.ofctl("add-flow", self.bridge, flow)


@contextlib.contextmanager
def ovs_hosts(prefix: str, hosts: Sequence[tuple[str, str, str]], prefix_len: int = 24,
              protocols: str = "OpenFlow13") -> Iterator[OvsHosts]:
    """An Open vSwitch netdev bridge and hosts (name, MAC, address) in namespaces, each on a veth with
    its offloads off, ports numbered from 1 in order; everything removed on the way out, whatever
    happened. Names: prefix + 4 random hex digits (+ the host's name: keep prefix + name within 9)."""
    tag = f"{prefix}{secrets.token_hex(2)}"
    net = OvsHosts(tag)
    made: list[str] = []
    try:
        sh("ovs-vsctl", "--timeout=10", "add-br", tag, "--", "set", "Bridge", tag, "datapath_type=netdev",
           "fail-mode=secure", f"protocols={protocols}")
        for n, (name, mac, ip) in enumerate(hosts, start=1):
            ns, outer = f"{tag}{name}", f"{tag}{name}o"
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns)
            for cmd in (["link", "set", "eth0", "address", mac], ["addr", "add", f"{ip}/{prefix_len}", "dev", "eth0"],
                        ["link", "set", "eth0", "up"], ["link", "set", "lo", "up"]):
                sh("ip", "-n", ns, *cmd)
            sh("ip", "link", "set", outer, "up")
            offloads_off("eth0", ns)
            offloads_off(outer)
            sh("ovs-vsctl", "add-port", tag, outer, "--", "set", "interface", outer, f"ofport_request={n}")
            net.ns[name], net.ofport[name] = ns, n
        yield net
    finally:
        sh("ovs-vsctl", "--if-exists", "del-br", tag, check=False)
        for ns in made:
            sh("ip", "netns", "del", ns, check=False)
