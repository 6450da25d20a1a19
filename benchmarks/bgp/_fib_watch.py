#!/usr/bin/env python3
"""When did the kernel FIB of this namespace take N routes (or lose them)? A helper of
fpm_rate.py, run inside the speaker's namespace (``ip netns exec NS python3 _fib_watch.py``).

It listens to the kernel's route notifications (netlink, RTNLGRP_IPV4_ROUTE: one message per
route the kernel adds or deletes, sent as it does) and takes commands on standard input:

    arm add N     count the distinct prefixes of protocol bgp (186) added from now on
    arm del N     ... deleted from now on

and answers ``reached T_FIRST T_ALL COUNT`` (CLOCK_MONOTONIC, as Python's time.monotonic in
any process) once N are counted, or ``overrun`` if the kernel dropped notifications (the
socket's buffer was full: then no figure). A process of its own, so that its counting costs
no CPU of the process that reads FPM.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import time

NETLINK_ROUTE = 0
RTMGRP_IPV4_ROUTE = 0x40
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTPROT_BGP = 186
HEADER = struct.Struct("=IH")
RTATTR = struct.Struct("=HH")


def main() -> int:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    sock.setsockopt(socket.SOL_SOCKET, 33, 512 << 20)          # SO_RCVBUFFORCE (root): 512 MB
    sock.bind((0, RTMGRP_IPV4_ROUTE))
    sock.setblocking(False)
    out = sys.stdout
    wanted_type = target = None
    seen: set[bytes] = set()
    first = None
    stdin = sys.stdin.fileno()
    out.write("ready\n")
    out.flush()
    while True:
        readable, _, _ = select.select([sock, stdin], [], [])
        if stdin in readable:
            line = os.read(stdin, 4096).decode()
            if not line:
                return 0
            words = line.split()
            if words[:1] == ["arm"]:
                wanted_type = RTM_NEWROUTE if words[1] == "add" else RTM_DELROUTE
                target, seen, first = int(words[2]), set(), None
        if sock in readable:
            while True:
                try:
                    data = sock.recv(1 << 20)
                except BlockingIOError:
                    break
                except OSError as e:                              # ENOBUFS: notifications were lost
                    if target is not None:
                        out.write(f"overrun {e}\n")
                        out.flush()
                        target = None
                    continue
                now = time.monotonic()
                if target is None:
                    continue
                pos, end = 0, len(data)
                while pos + 16 <= end:
                    length, kind = HEADER.unpack_from(data, pos)
                    if length < 16:
                        break
                    if kind == wanted_type and pos + 28 <= end and data[pos + 21] == RTPROT_BGP:
                        a, stop = pos + 28, pos + length
                        while a + 4 <= stop:
                            alen, akind = RTATTR.unpack_from(data, a)
                            if alen < 4:
                                break
                            if akind == 1:                       # RTA_DST
                                seen.add(data[a + 4:a + alen] + bytes([data[pos + 17]]))
                                break
                            a += (alen + 3) & ~3
                        if first is None:
                            first = now
                    pos += (length + 3) & ~3
                if target is not None and len(seen) >= target:
                    out.write(f"reached {first} {now} {len(seen)}\n")
                    out.flush()
                    target = None


if __name__ == "__main__":
    sys.exit(main())
