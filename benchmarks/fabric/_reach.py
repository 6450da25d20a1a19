"""Reachability probe for convergence.py, run inside a host's namespace:
every --interval seconds it sends one UDP datagram to each of --peers, and
records when a datagram from each peer arrives.

On SIGTERM or SIGINT (or after --duration) it writes one JSON object to
stdout:

    {"self": IP, "rounds": N, "start_ns": t, "arrivals": {peer IP: [[round, CLOCK_MONOTONIC ns], ...]}}

Each datagram carries its round number, so a loss is a missing round, not
a long wait (a sender that stalls on a busy machine loses nothing).

CLOCK_MONOTONIC is shared by every namespace, so the arrival times compare
with the orchestrator's clock.
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import struct
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--self", dest="me", required=True)
    ap.add_argument("--peers", required=True, help="comma-separated addresses")
    ap.add_argument("--port", type=int, default=47002)
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--duration", type=float, default=600.0)
    args = ap.parse_args()
    stop = False

    def on_signal(*_):
        nonlocal stop
        stop = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    peers = [p for p in args.peers.split(",") if p]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((args.me, args.port))
    sock.setblocking(False)
    arrivals: dict[str, list[tuple[int, int]]] = {p: [] for p in peers}
    fmt = struct.Struct("!I")
    interval_ns = int(args.interval * 1e9)
    start = time.monotonic_ns()
    end = start + int(args.duration * 1e9)
    due = start
    rounds = 0
    while not stop:
        now = time.monotonic_ns()
        if now >= end:
            break
        if now >= due:
            payload = fmt.pack(rounds)
            for p in peers:
                try:
                    sock.sendto(payload, (p, args.port))
                except OSError:
                    pass
            rounds += 1
            due = due + interval_ns if now - due < interval_ns else now + interval_ns
        while True:
            try:
                data, (src, _) = sock.recvfrom(256)
            except (BlockingIOError, OSError):
                break
            times = arrivals.get(src)
            if times is not None and len(data) >= fmt.size:
                times.append((fmt.unpack_from(data)[0], time.monotonic_ns()))
        wait = (due - time.monotonic_ns()) / 1e9
        if wait > 0:
            try:
                select.select([sock], [], [], wait)
            except InterruptedError:
                pass
    json.dump({"self": args.me, "rounds": rounds, "start_ns": start, "arrivals": arrivals}, sys.stdout)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
