#!/usr/bin/env python3
"""The bare Python loop: copy frames between two interfaces through AF_PACKET
sockets and nothing else (no parsing, no table), the floor a Python switch is
measured against in bench_switch.py.

    python benchmarks/switch/_bench_switch_loop.py IFACE_A IFACE_B [--io plain|mmsg|ring]

--io plain (the baseline): nonblocking sockets and epoll; on each readiness
event, up to 64 frames are read one ``recv_into`` at a time and each is sent
at once with ``send``. --io mmsg: ``recvmmsg``/``sendmmsg`` batches of 64
(kumoflow.switch.mmsg). --io ring: a PACKET_MMAP TPACKET_V2 receive ring
(kumoflow.switch.ring) and ``sendmmsg``. The last two are how the I/O
layer of the kumoflow switch was chosen. Runs until SIGTERM/SIGINT, then
prints one JSON line with the frames it copied.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import json
import select
import signal
import socket
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from kumoflow.switch.mmsg import SendBatch, _IOVec, _MMsgHdr, _addr  # noqa: E402
from kumoflow.switch.ring import TP_STATUS_USER, RxRing  # noqa: E402

SOL_PACKET = 263
MSG_DONTWAIT = 0x40
libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
libc.recvmmsg.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p)
libc.recvmmsg.restype = ctypes.c_int
PACKET_ADD_MEMBERSHIP = 1
PACKET_IGNORE_OUTGOING = 23
BATCH = 64


class RecvBatch:
    """Up to `size` frames of at most `slot` bytes each, read with one recvmmsg;
    `control` bytes of ancillary data per frame."""

    def __init__(self, fd: int, size: int = 64, slot: int = 2048, control: int = 0) -> None:
        self.fd = fd
        self.size = size
        self.slot = slot
        self.control = control
        self.buf = bytearray(size * slot)
        self.view = memoryview(self.buf)
        self.cbuf = bytearray(max(control, 1) * size)
        self.cview = memoryview(self.cbuf)
        self._iov = (_IOVec * size)()
        self._msgs = (_MMsgHdr * size)()
        base, cbase = _addr(self.buf), _addr(self.cbuf)
        for i in range(size):
            self._iov[i] = _IOVec(base + i * slot, slot)
            m = self._msgs[i].msg_hdr
            m.msg_iov = ctypes.addressof(self._iov) + i * ctypes.sizeof(_IOVec)
            m.msg_iovlen = 1
            if control:
                m.msg_control = cbase + i * control
                m.msg_controllen = control
        self._words = memoryview(self._msgs).cast("B").cast("I")   # 32-bit words
        self._msgs_addr = ctypes.addressof(self._msgs)

    def recv(self, limit: int | None = None) -> int:
        """Fill up to `limit` slots; how many (0 when nothing is waiting). Raises OSError."""
        n = libc.recvmmsg(self.fd, self._msgs_addr, limit or self.size, MSG_DONTWAIT, None)
        if n < 0:
            err = ctypes.get_errno()
            if err in (11, 4):          # EAGAIN, EINTR
                return 0
            raise OSError(err, os.strerror(err))
        if self.control:                # the kernel shrinks msg_controllen to what it used
            for i in range(n):
                self._msgs[i].msg_hdr.msg_controllen = self.control
        return n

    def length(self, i: int) -> int:
        """Bytes received in slot i."""
        return self._words[i * 16 + 14]

    def flags(self, i: int) -> int:
        return self._words[i * 16 + 12]

    def close(self) -> None:
        self._words.release()
        self.view.release()
        self.cview.release()


def open_socket(ifname: str, ring: bool) -> tuple[socket.socket, RxRing | None]:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    s.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)         # SO_RCVBUFFORCE
    s.setsockopt(socket.SOL_SOCKET, 32, 4 << 20)         # SO_SNDBUFFORCE
    r = RxRing(s) if ring else None
    s.bind((ifname, 0x0003))
    s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, struct.pack("=iHH8s", socket.if_nametoindex(ifname), 1, 0,
                                                                 bytes(8)))
    s.setblocking(False)
    return s, r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("iface_a")
    ap.add_argument("iface_b")
    ap.add_argument("--io", choices=("plain", "mmsg", "ring"), default="plain")
    args = ap.parse_args()
    ring = args.io == "ring"
    (sa, ra), (sb, rb) = open_socket(args.iface_a, ring), open_socket(args.iface_b, ring)
    peer = {sa.fileno(): (sa, ra, sb), sb.fileno(): (sb, rb, sa)}
    sends = {sa.fileno(): SendBatch(sa.fileno(), BATCH), sb.fileno(): SendBatch(sb.fileno(), BATCH)}
    recvs = {fd: RecvBatch(fd, BATCH) for fd in peer} if args.io == "mmsg" else {}
    copied = 0
    stop = False

    def on_signal(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ep = select.epoll()
    for fd in peer:
        ep.register(fd, select.EPOLLIN)
    buf = bytearray(65536)
    view = memoryview(buf)
    while not stop:
        try:
            events = ep.poll(0.2)
        except InterruptedError:
            continue
        for fd, _ in events:
            src, r, dst = peer[fd]
            if args.io == "plain":
                for _ in range(BATCH):
                    try:
                        n = src.recv_into(buf)
                    except BlockingIOError:
                        break
                    try:
                        dst.send(view[:n])
                    except OSError:
                        pass
                    copied += 1
            elif args.io == "mmsg":
                rb_ = recvs[fd]
                n = rb_.recv()
                out = sends[dst.fileno()]
                v = rb_.view
                for i in range(n):
                    o = i * rb_.slot
                    out.add(v[o:o + rb_.length(i)])
                out.flush()
                copied += n
            else:
                out = sends[dst.fileno()]
                u32, mm, size, frames = r.u32, r.map, r.frame_size, r.frames
                head = r.head
                for _ in range(BATCH):
                    off = head * size
                    i = off >> 2
                    if not u32[i] & TP_STATUS_USER:
                        break
                    mac = r.u16[(off >> 1) + 6]
                    out.add(mm[off + mac:off + mac + u32[i + 2]])
                    u32[i] = 0
                    head = head + 1 if head + 1 < frames else 0
                    copied += 1
                r.head = head
                out.flush()
    print(json.dumps({"io": args.io, "copied": copied}), flush=True)


if __name__ == "__main__":
    main()
