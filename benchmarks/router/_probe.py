#!/usr/bin/env python3
"""UDP probes for interface.py, run inside the emulator's hosts.

    python _probe.py send DST PORT [--interval 0.001]   # until killed: a datagram every interval
    python _probe.py recv ADDR PORT [--timeout 15]       # prints the first datagram's arrival, then exits

A datagram carries its send time (CLOCK_MONOTONIC, which every namespace
shares) and a sequence number. ``recv`` prints one JSON line for the first
datagram it gets: "arrived" (CLOCK_MONOTONIC), "sent", "seq", and "ttl"
(IP_RECVTTL: 63 after one router hop from a Linux sender's 64), or
{"timeout": true}. ``send`` ignores send errors (ICMP unreachable from the
router before the route exists).
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import time

IP_RECVTTL, IP_TTL = 12, 2      # the option; the type of the control message it brings


def send(dst: str, port: int, interval: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    seq = 0
    nxt = time.monotonic()
    while True:
        seq += 1
        try:
            sock.sendto(struct.pack("!dQ", time.monotonic(), seq), (dst, port))
        except OSError:
            pass
        nxt += interval
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            nxt = time.monotonic()


def recv(addr: str, port: int, timeout: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
    sock.bind((addr, port))
    sock.settimeout(timeout)
    print(json.dumps({"ready": True}), flush=True)
    try:
        data, anc, _, _ = sock.recvmsg(64, socket.CMSG_SPACE(4))
    except socket.timeout:
        print(json.dumps({"timeout": True}), flush=True)
        return
    arrived = time.monotonic()
    ttl = next((struct.unpack("i", d[:4])[0] for lvl, typ, d in anc if typ == IP_TTL), None)
    sent, seq = struct.unpack("!dQ", data[:16])
    print(json.dumps({"arrived": arrived, "sent": sent, "seq": seq, "ttl": ttl}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("send", "recv"))
    ap.add_argument("addr")
    ap.add_argument("port", type=int)
    ap.add_argument("--interval", type=float, default=0.001)
    ap.add_argument("--timeout", type=float, default=15.0)
    args = ap.parse_args()
    if args.mode == "send":
        send(args.addr, args.port, args.interval)
    else:
        recv(args.addr, args.port, args.timeout)


if __name__ == "__main__":
    main()
