"""A paced UDP probe for reroute.py, run inside a host's namespace: sends one
datagram every --interval seconds to --peer and receives the peer's.

Each datagram carries (sequence number, send time: CLOCK_MONOTONIC in ns,
which every namespace shares). On SIGTERM, SIGINT or after --duration
seconds the probe writes one JSON object to stdout:

    {"sent": N, "interval": s, "start_ns": t, "received": [[seq, send_ns, recv_ns], ...]}

Pacing: a send is due every interval from the start; a late loop sends at
once and schedules the next one an interval later (no bursts to catch up),
so gaps are measured from the send times carried in the datagrams, not
from sequence numbers alone.
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

FMT = struct.Struct("!QQ")   # seq, send time (ns)
PAD = bytes(64 - FMT.size)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", required=True, help="own address")
    ap.add_argument("--peer", required=True, help="the other probe's address")
    ap.add_argument("--port", type=int, default=47001)
    ap.add_argument("--interval", type=float, default=0.001)
    ap.add_argument("--duration", type=float, default=60.0, help="stop after this long at most")
    args = ap.parse_args()
    stop = False

    def on_signal(*_):
        nonlocal stop
        stop = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((args.bind, args.port))
    sock.setblocking(False)
    peer = (args.peer, args.port)
    interval_ns = int(args.interval * 1e9)
    received: list[tuple[int, int, int]] = []
    seq = 0
    start = time.monotonic_ns()
    end = start + int(args.duration * 1e9)
    due = start
    fd = sock.fileno()
    while not stop:
        now = time.monotonic_ns()
        if now >= end:
            break
        if now >= due:
            try:
                sock.sendto(FMT.pack(seq, now) + PAD, peer)
            except OSError:
                pass          # no route or neighbour yet: counted as lost like any other
            seq += 1
            due = due + interval_ns if now - due < interval_ns else now + interval_ns
        while True:
            try:
                data = sock.recv(2048)
            except BlockingIOError:
                break
            except OSError:
                break
            if len(data) >= FMT.size:
                s, sent_ns = FMT.unpack_from(data)
                received.append((s, sent_ns, time.monotonic_ns()))
        wait = (due - time.monotonic_ns()) / 1e9
        if wait > 0:
            try:
                select.select([fd], [], [], wait)
            except InterruptedError:
                pass
    json.dump({"sent": seq, "interval": args.interval, "start_ns": start, "received": received}, sys.stdout)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
