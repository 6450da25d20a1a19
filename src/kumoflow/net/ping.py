"""Ping between hosts, all pairs at once, and the matrix of results."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass

from kumoflow.net.hosts import Host

_RTT = re.compile(r"= [\d.]+/([\d.]+)/")


@dataclass(frozen=True)
class PingResult:
    src: str
    dst: str
    address: str
    ok: bool
    #: average round trip in milliseconds, when any reply came back
    rtt_ms: float | None
    output: str


class PingMatrix:
    """Results of pinging every ordered pair of hosts.

    ``matrix[src, dst]`` is True when ``src`` got a reply from ``dst``;
    ``matrix.ok`` is True when every pair did; ``str(matrix)`` draws the grid
    (rows: source, columns: destination, ``.`` reply, ``X`` none).
    """

    def __init__(self, hosts: list[str], results: Iterable[PingResult]):
        self.hosts = list(hosts)
        self.results = {(r.src, r.dst): r for r in results}

    def __getitem__(self, pair: tuple[str, str]) -> bool:
        return self.results[pair].ok

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results.values())

    @property
    def failures(self) -> list[PingResult]:
        return [r for r in self.results.values() if not r.ok]

    @property
    def loss(self) -> float:
        """Fraction of pairs without a reply (0.0 .. 1.0)."""
        return len(self.failures) / len(self.results) if self.results else 0.0

    def __str__(self) -> str:
        width = max((len(h) for h in self.hosts), default=2)
        lines = [" " * width + " " + " ".join(h.rjust(width) for h in self.hosts)]
        for src in self.hosts:
            cells = []
            for dst in self.hosts:
                mark = "-" if src == dst else ("." if self[src, dst] else "X")
                cells.append(mark.rjust(width))
            lines.append(src.rjust(width) + " " + " ".join(cells))
        lines.append(f"{len(self.results) - len(self.failures)}/{len(self.results)} pairs reachable")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<PingMatrix {len(self.results) - len(self.failures)}/{len(self.results)} ok>"


def ping_command(address: str, count: int, timeout: float) -> list[str]:
    return ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", f"{timeout:g}", address]


def ping_pairs(
    pairs: list[tuple[Host, Host]],
    *,
    count: int = 1,
    timeout: float = 1.0,
    retries: int = 1,
    parallel: int = 64,
) -> list[PingResult]:
    """Ping ``dst`` from ``src`` for each pair, up to ``parallel`` at a time;
    a pair without a reply is tried ``retries`` more times (the first
    packets of a flow may be spent on ARP or on a controller's set-up)."""
    results: dict[int, PingResult] = {}
    todo = list(range(len(pairs)))
    for _attempt in range(retries + 1):
        running: list[tuple[int, subprocess.Popen]] = []
        queue = list(todo)
        while queue or running:
            while queue and len(running) < parallel:
                i = queue.pop(0)
                src, dst = pairs[i]
                proc = subprocess.Popen(
                    src.command(ping_command(dst.ip, count, timeout)),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                running.append((i, proc))
            still = []
            for i, proc in running:
                if proc.poll() is None:
                    still.append((i, proc))
                    continue
                out, _ = proc.communicate()
                src, dst = pairs[i]
                match = _RTT.search(out)
                results[i] = PingResult(
                    src.name, dst.name, dst.ip, proc.returncode == 0,
                    float(match.group(1)) if match else None, out,
                )
            running = still
            if running:
                time.sleep(0.02)
        todo = [i for i in todo if not results[i].ok]
        if not todo:
            break
    return [results[i] for i in range(len(pairs))]
