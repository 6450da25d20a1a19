#!/usr/bin/env python3
"""Which probe datagrams got through, and when: a helper of to_forwarding.py, run inside the
peer router's namespace (``ip netns exec NS python3 _forwarded.py ADDR PORT``), where ADDR is
an address of the last prefix the peer announces (on its ``lo``).

benchmarks/router/_probe.py sends a datagram every interval from the tenant host to ADDR; each
one that arrives here was forwarded by the cloud's router (TTL 63: one routed hop). Commands on
standard input:

    arm       forget what arrived so far
    report    answer with one JSON line: the first and last arrival since ``arm``
              (CLOCK_MONOTONIC, as Python's time.monotonic in any process), how many, the TTLs seen

Answers "ready" once listening.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import sys
import time

IP_RECVTTL, IP_TTL = 12, 2


def main() -> int:
    addr, port = sys.argv[1], int(sys.argv[2])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
    sock.bind((addr, port))
    sock.setblocking(False)
    stdin = sys.stdin.fileno()
    first = last = None
    count, ttls = 0, set()
    print("ready", flush=True)
    buffered = b""
    while True:
        readable, _, _ = select.select([sock, stdin], [], [])
        if sock in readable:
            while True:
                try:
                    _, anc, _, _ = sock.recvmsg(64, socket.CMSG_SPACE(4))
                except BlockingIOError:
                    break
                now = time.monotonic()
                first = now if first is None else first
                last = now
                count += 1
                ttls.update(struct.unpack("i", d[:4])[0] for _, typ, d in anc if typ == IP_TTL)
        if stdin in readable:
            data = os.read(stdin, 4096)
            if not data:
                return 0
            buffered += data
            while b"\n" in buffered:
                line, buffered = buffered.split(b"\n", 1)
                if line.strip() == b"arm":
                    first = last = None
                    count, ttls = 0, set()
                elif line.strip() == b"report":
                    print(json.dumps({"first": first, "last": last, "count": count, "ttls": sorted(ttls)}),
                          flush=True)


if __name__ == "__main__":
    sys.exit(main())
