#!/usr/bin/env python3
"""64-byte UDP frames to many destinations, for forwarding.py: the generator
of benchmarks/switch/_bench_switch_gen.py (its frame builder, its ctypes
sendmmsg and its pacing rules), with the frames going round an array of one
frame per destination, so that every destination gets its turn whatever
the burst size. (_bench_switch_gen.py always sends the first frames of its
array, which suits its 16 flows, not 10,000 destinations.)

    ip netns exec NS taskset -c 0 python _router_gen.py --src-mac .. --dst-mac ROUTER_MAC \\
        --src-ip 10.1.1.10 --dst-file FILE --seconds 3 [--rate 100000] [--flows 16]

--dst-file: one IPv4 address a line (or --dst-ip A for one). With one
destination, --flows N UDP source ports make N flows (as the switch
benchmark's 16); with many, one flow each (source port 10000). Frames are
60 bytes (64 on a wire with its FCS), addressed to --dst-mac: the router's
interface, the sender's gateway.

Pacing as in _bench_switch_gen.py: sleep until --period (200 µs) of frames
are due, send them in calls of at most --burst (64), skip what is more than
--catchup (128) overdue. --prime first sends every frame once, at
--prime-rate (10,000/s), and waits 0.2 s: the switches' caches hold every
flow before the clock starts (counted in "sent").

Prints the same JSON line as _bench_switch_gen.py.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "switch"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _bench_switch_gen import (PACKET_QDISC_BYPASS, PR_SET_TIMERSLACK, SOL_PACKET, IOVec, MMsgHdr,  # noqa: E402
                               cpu_time, libc, udp_frame)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iface", default="eth0")
    ap.add_argument("--src-mac", required=True)
    ap.add_argument("--dst-mac", required=True)
    ap.add_argument("--src-ip", required=True)
    ap.add_argument("--dst-ip", help="one destination")
    ap.add_argument("--dst-file", help="destinations, one a line")
    ap.add_argument("--flows", type=int, default=16, help="UDP source ports with one destination (default 16)")
    ap.add_argument("--batch", type=int, default=256, help="frames per sendmmsg flat out (default 256)")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=0.0, help="frames per second (default 0: flat out)")
    ap.add_argument("--period", type=float, default=200e-6)
    ap.add_argument("--burst", type=int, default=64)
    ap.add_argument("--catchup", type=int, default=128)
    ap.add_argument("--prime", action="store_true", help="send every frame once first (see above)")
    ap.add_argument("--prime-rate", type=float, default=10_000)
    args = ap.parse_args()

    dsts = [args.dst_ip] if args.dst_ip else Path(args.dst_file).read_text().split()
    if len(dsts) == 1:
        frames = [udp_frame(args.src_mac, args.dst_mac, args.src_ip, dsts[0], 10000 + i) for i in range(args.flows)]
    else:
        frames = [udp_frame(args.src_mac, args.dst_mac, args.src_ip, d, 10000) for d in dsts]
    n = len(frames)
    span = max(args.batch, args.burst)
    ring = [frames[i % n] for i in range(n + span)]        # any window of up to `span` frames is contiguous
    bufs = [ctypes.create_string_buffer(f, len(f)) for f in ring]
    iov = (IOVec * len(ring))(*[IOVec(ctypes.addressof(b), len(f)) for b, f in zip(bufs, ring)])
    msgs = (MMsgHdr * len(ring))()
    for i in range(len(ring)):
        msgs[i].hdr.iov = ctypes.addressof(iov) + i * ctypes.sizeof(IOVec)
        msgs[i].hdr.iovlen = 1

    libc.prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
    sock.bind((args.iface, 0))
    fd, base = sock.fileno(), ctypes.addressof(msgs)
    sendmmsg = libc.sendmmsg
    refused = 0
    pos = 0

    def send(k: int) -> int:
        """The next k frames of the round (k <= span); how many the kernel took."""
        nonlocal refused, pos
        done = 0
        while done < k:
            r = sendmmsg(fd, base + (pos + done) * 64, k - done, 0)
            if r > 0:
                done += r
            else:
                refused += 1
                k -= 1
        pos = (pos + done) % n
        return done

    monotonic, sleep = time.monotonic, time.sleep

    def paced(rate: float, total: int) -> tuple[int, int, int]:
        """Send `total` frames at `rate`: (sent, max_lag, skipped)."""
        nonlocal pos
        sent = max_lag = skipped = offered = 0
        wake = max(1, min(args.burst, round(rate * args.period)))
        catchup = max(args.burst, args.catchup)
        start = monotonic()
        while offered < total:
            now = monotonic()
            due = min(total, int((now - start) * rate)) - offered
            if due < wake and offered + due < total:
                sleep((offered + wake) / rate - (now - start))
                continue
            max_lag = max(max_lag, due)
            if due > catchup:
                skipped += due - catchup
                offered += due - catchup
                pos = (pos + due - catchup) % n
                due = catchup
            while due > 0:
                k = min(due, args.burst)
                sent += send(k)
                offered += k
                due -= k
        return sent, max_lag, skipped

    primed = 0
    if args.prime:
        primed = paced(args.prime_rate, n)[0]
        pos = 0
        time.sleep(0.2)
    sent = max_lag = skipped = 0
    c0 = cpu_time()
    start = monotonic()
    if args.rate <= 0:
        end = start + args.seconds
        while True:
            for _ in range(16):
                sent += send(args.batch)
            if monotonic() >= end:
                break
    else:
        sent, max_lag, skipped = paced(args.rate, round(args.rate * args.seconds))
    elapsed = max(monotonic() - start, 1e-6)
    cpu = cpu_time() - c0
    print(json.dumps({"sent": sent + primed, "refused": refused, "seconds": round(elapsed, 4),
                      "pps": round(sent / elapsed), "offered": round((sent + refused) / elapsed),
                      "target": args.rate or None, "cpu": round(cpu / elapsed, 3),
                      "max_lag": max_lag, "skipped": skipped, "primed": primed, "destinations": len(dsts)}),
          flush=True)


if __name__ == "__main__":
    main()
