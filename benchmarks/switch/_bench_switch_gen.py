#!/usr/bin/env python3
"""64-byte UDP packet generator for bench_switch.py: a raw AF_PACKET socket
and sendmmsg(2) (ctypes), prebuilt frames sent in batches, so Python costs
one call per batch and the kernel does the rest.

Run it inside the sender's namespace, pinned to a CPU, e.g.

    ip netns exec NS taskset -c 0 python _bench_switch_gen.py --iface eth0 \\
        --src-mac .. --dst-mac .. --src-ip 10.77.0.1 --dst-ip 10.77.0.2 --seconds 3 [--rate 100000]

Frames are 60 bytes (Ethernet 14 + IPv4 20 + UDP 8 + 18 bytes of payload),
i.e. 64-byte Ethernet frames once the 4-byte FCS that a veth does not carry
is counted; --flows N varies the UDP source port over N values (N flows).
The socket bypasses the qdisc (PACKET_QDISC_BYPASS; a veth has none anyway)
and blocks when its send buffer is full.

Without --rate (or --rate 0) it sends flat out: sendmmsg calls of --batch
(256) frames back to back. With --rate R it paces: it sleeps until at least
R x --period (200 µs) frames are due, then sends everything due, at most
--burst (64) frames a call, so the average over any few milliseconds is R
and the longest run of back-to-back frames is one burst. When it falls
behind (descheduled, say), it catches up at most --catchup (128) frames and
skips the rest, so that no switch sees a long burst; "pps" is what it
actually sent either way. --prime N first sends N frames (one per flow, by default) and waits
0.2 s, so that the switch's caches hold the flows before the clock starts;
they are counted in "sent".

Prints one JSON line: "sent" (every frame the kernel accepted, primer
included: what the receiver's count is compared with), "refused" (frames
the kernel refused; not in "sent"), "seconds" and "pps" (the paced or
flat-out part alone: the rate actually offered), "target" (--rate), "cpu"
(this process's CPU seconds over "seconds": how busy the generator was),
"max_lag" (the most frames ever overdue), "skipped" (frames not sent to
keep bursts short).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import resource
import socket
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # benchmarks/: benchlib
from benchlib import inet_checksum as checksum  # noqa: E402

SOL_PACKET = 263
PACKET_QDISC_BYPASS = 20
PR_SET_TIMERSLACK = 29

libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
libc.sendmmsg.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)
libc.sendmmsg.restype = ctypes.c_int


class IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.c_void_p),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", MsgHdr), ("len", ctypes.c_uint)]


# struct mmsghdr is 64 bytes on x86-64 and arm64 (56-byte msghdr, msg_len, padding); an array
# with any other stride makes the kernel read garbage from the second message on, and
# sendmmsg then sends one frame a call
assert ctypes.sizeof(MMsgHdr) == 64


def udp_frame(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, sport: int, dport: int = 9) -> bytes:
    payload = b"kumoflow-bench-64B"                                  # 18 bytes
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                     socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) + b"\x08\x00"
    frame = eth + ip + udp
    assert len(frame) == 60
    return frame


def cpu_time() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iface", default="eth0")
    ap.add_argument("--src-mac", required=True)
    ap.add_argument("--dst-mac", required=True)
    ap.add_argument("--src-ip", required=True)
    ap.add_argument("--dst-ip", required=True)
    ap.add_argument("--flows", type=int, default=16, help="UDP source ports used (default 16)")
    ap.add_argument("--batch", type=int, default=256, help="frames per sendmmsg flat out (default 256)")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=0.0, help="frames per second (default 0: flat out)")
    ap.add_argument("--period", type=float, default=200e-6, help="paced: sleep until this much is due (s)")
    ap.add_argument("--burst", type=int, default=64, help="paced: at most this many frames a call")
    ap.add_argument("--catchup", type=int, default=128,
                    help="paced: when more frames than this are overdue, skip the excess (default 128)")
    ap.add_argument("--prime", type=int, default=None,
                    help="frames sent (and 0.2 s waited) before the clock starts (default: --flows)")
    args = ap.parse_args()

    libc.prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)          # 1 µs: sleeps end when asked, not 50 µs later
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
    sock.bind((args.iface, 0))
    size = max(args.batch, args.burst, args.flows)
    frames = [udp_frame(args.src_mac, args.dst_mac, args.src_ip, args.dst_ip, 10000 + i % args.flows)
              for i in range(size)]
    bufs = [ctypes.create_string_buffer(f, len(f)) for f in frames]
    iov = (IOVec * size)(*[IOVec(ctypes.addressof(b), len(f)) for b, f in zip(bufs, frames)])
    msgs = (MMsgHdr * size)()
    for i in range(size):
        msgs[i].hdr.iov = ctypes.addressof(iov) + i * ctypes.sizeof(IOVec)
        msgs[i].hdr.iovlen = 1
    fd, addr = sock.fileno(), ctypes.addressof(msgs)
    sendmmsg = libc.sendmmsg
    refused = 0

    def send(n: int) -> int:
        """Send frames 0..n-1 of the array; how many the kernel took (a refused frame is skipped)."""
        nonlocal refused
        done = 0
        while done < n:
            r = sendmmsg(fd, addr + done * 64, n - done, 0)
            if r > 0:
                done += r
            else:
                refused += 1
                n -= 1
        return done

    primed = send(min(args.prime if args.prime is not None else args.flows, size))
    if primed:
        time.sleep(0.2)
    sent = max_lag = skipped = 0
    monotonic, sleep = time.monotonic, time.sleep
    c0 = cpu_time()
    start = monotonic()
    end = start + args.seconds
    if args.rate <= 0:
        n = args.batch
        while True:
            for _ in range(16):
                sent += send(n)
            now = monotonic()
            if now >= end:
                break
    else:
        rate, burst, catchup = args.rate, args.burst, max(args.burst, args.catchup)
        wake = max(1, min(burst, round(rate * args.period)))       # frames due before we bother waking up
        total = round(rate * args.seconds)
        offered = 0                                                # frames handed over or refused
        while offered < total:
            now = monotonic()
            due = min(total, int((now - start) * rate)) - offered
            if due < wake and offered + due < total:
                sleep((offered + wake) / rate - (now - start))
                continue
            max_lag = max(max_lag, due)
            if due > catchup:                                     # fell behind: no long burst to catch up
                skipped += due - catchup
                offered += due - catchup
                due = catchup
            while due > 0:
                k = min(due, burst)
                sent += send(k)
                offered += k
                due -= k
        now = monotonic()
    elapsed = now - start
    cpu = cpu_time() - c0
    print(json.dumps({"sent": sent + primed, "refused": refused, "seconds": round(elapsed, 4),
                      "pps": round(sent / elapsed), "offered": round((sent + refused) / elapsed),
                      "target": args.rate or None, "cpu": round(cpu / elapsed, 3),
                      "max_lag": max_lag, "skipped": skipped, "primed": primed}), flush=True)


if __name__ == "__main__":
    main()
