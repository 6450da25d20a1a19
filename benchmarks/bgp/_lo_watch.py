#!/usr/bin/env python3
"""When did messages cross the loopback on one TCP port, one way: a helper of to_forwarding.py,
run in the namespace whose ``lo`` carries the stream (``ip netns exec NS python3 _lo_watch.py
PORT of|fpm``):

* ``PORT of``: the OpenFlow stream whose source port is PORT (the controller's listening port:
  what the controller sends its switch); the messages counted are FLOW_MODs;
* ``PORT fpm``: the FPM stream whose destination port is PORT (the controller's FPM port in the
  speaker's namespace: what zebra streams to the controller); the messages counted are routes
  (a frame holding RTM_NEWROUTE or RTM_DELROUTE).

A passive observer: an AF_PACKET socket on ``lo`` with a classic BPF filter (IPv4 TCP, that
port), each packet stamped by the kernel as it is delivered (SO_TIMESTAMPNS, converted to
CLOCK_MONOTONIC); ``lo`` shows each packet twice, the leaving copy is skipped. The stream is
reassembled by sequence number from the first segment seen (taken to start a message: the
helper starts while the stream is idle; a segment the tap shows ahead of a missing one is held
until that one arrives, up to 64 of them), and its messages framed by the 16-bit length both
protocols keep at bytes 2-3 of their header; a message is stamped with the segment that
completed it. Commands on standard input:

    arm       forget what was seen so far
    report    one JSON line since ``arm``: the first and last message counted and how many, bytes
              of all messages, and ``lost`` (packets the kernel dropped for want of room in the
              socket, or framing lost: then no figure)

Answers "ready" once listening.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER, SO_RCVBUFFORCE, SO_TIMESTAMPNS = 26, 33, 35
SOL_PACKET, PACKET_STATISTICS, PACKET_OUTGOING = 263, 6, 4
OFPT_FLOW_MOD = 14
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
#: segments held ahead of a missing one before it counts as lost
REORDER = 64


def bpf(port: int, source: bool) -> list[tuple[int, int, int, int]]:
    """IPv4 TCP whose source (or destination) port is `port`."""
    return [
        (0x28, 0, 0, 12),                  # ldh [12]          ethertype
        (0x15, 0, 8, 0x0800),              # IPv4 ? : drop
        (0x30, 0, 0, 23),                  # ldb [23]          protocol
        (0x15, 0, 6, 6),                   # TCP ? : drop
        (0x28, 0, 0, 20),                  # ldh [20]          fragment offset
        (0x45, 4, 0, 0x1FFF),              # a fragment: drop
        (0xB1, 0, 0, 14),                  # ldxb 4*([14]&0xf)
        (0x48, 0, 0, 14 if source else 16),  # ldh [x+14] source port / [x+16] destination port
        (0x15, 0, 1, port),                # port ? accept : drop
        (0x06, 0, 0, 0x40000),             # accept
        (0x06, 0, 0, 0),                   # drop
    ]


class Stream:
    def __init__(self, proto: str) -> None:
        self.fpm = proto == "fpm"
        self.header = 4 if self.fpm else 8
        self.next_seq: int | None = None
        self.buf = b""
        self.ahead: dict[int, tuple[float, bytes]] = {}
        self.reset()

    def reset(self) -> None:
        self.first = self.last = None
        self.counted = 0
        self.bytes = 0
        self.lost = self.gaps = self.framing = 0

    def segment(self, ts: float, seq: int, payload: bytes) -> None:
        if self.next_seq is not None:
            offset = (seq - self.next_seq) & 0xFFFFFFFF
            if offset >= 0x80000000:                 # (partly) what we have: a retransmission
                skip = (self.next_seq - seq) & 0xFFFFFFFF
                if skip >= len(payload):
                    return
                payload, seq = payload[skip:], self.next_seq
            elif offset:                             # ahead of the stream: held until what comes before
                self.ahead[seq] = (ts, payload)      # arrives (the tap can see lo's packets out of order)
                if len(self.ahead) > REORDER:        # a real gap: resynchronize on the earliest held
                    self.gaps += 1
                    self.buf = b""
                    seq = min(self.ahead, key=lambda q: (q - self.next_seq) & 0xFFFFFFFF)
                    ts, payload = self.ahead.pop(seq)
                    self.next_seq = None
                    self.segment(ts, seq, payload)
                return
        self._take(ts, seq, payload)
        while self.ahead and self.next_seq in self.ahead:
            ts, payload = self.ahead.pop(self.next_seq)
            self._take(ts, self.next_seq, payload)

    def _take(self, ts: float, seq: int, payload: bytes) -> None:
        self.next_seq = (seq + len(payload)) & 0xFFFFFFFF
        buf = self.buf + payload if self.buf else payload
        o, n, h = 0, len(buf), self.header
        fpm = self.fpm
        while n - o >= h:
            length = buf[o + 2] << 8 | buf[o + 3]
            if length < h or buf[o] != (1 if fpm else 4):
                self.framing += 1                    # framing lost: start again at the next segment
                o = n
                break
            if n - o < length:
                break
            if fpm:
                counted = length >= 10 and (buf[o + 8] | buf[o + 9] << 8) in (RTM_NEWROUTE, RTM_DELROUTE)
            else:
                counted = buf[o + 1] == OFPT_FLOW_MOD
            if counted:                              # (segments taken out of order: the extremes)
                if self.first is None or ts < self.first:
                    self.first = ts
                if self.last is None or ts > self.last:
                    self.last = ts
                self.counted += 1
            self.bytes += length
            o += length
        self.buf = buf[o:]


def main() -> int:
    port, proto = int(sys.argv[1]), sys.argv[2]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    prog = bpf(port, proto == "of")
    raw = b"".join(struct.pack("HBBI", *ins) for ins in prog)
    filt = ctypes.create_string_buffer(raw, len(raw))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HL", len(prog), ctypes.addressof(filt)))
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 256 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind(("lo", ETH_P_ALL))
    sock.setblocking(False)
    stdin = sys.stdin.fileno()
    stream = Stream(proto)
    print("ready", flush=True)
    buffered = b""
    cmsg = socket.CMSG_SPACE(16)
    while True:
        readable, _, _ = select.select([sock, stdin], [], [])
        if sock in readable:
            offset = time.time() - time.monotonic()
            while True:
                try:
                    frame, anc, _, addr = sock.recvmsg(262144, cmsg)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue
                ts = None
                for level, kind, value in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        sec, nsec = struct.unpack("qq", value[:16])
                        ts = sec + nsec / 1e9 - offset
                if ts is None:
                    ts = time.monotonic()
                ihl = (frame[14] & 0x0F) * 4
                total = struct.unpack_from("!H", frame, 16)[0] or len(frame) - 14   # 0: a BIG TCP packet
                tcp = 14 + ihl
                seq = struct.unpack_from("!I", frame, tcp + 4)[0]
                doff = (frame[tcp + 12] >> 4) * 4
                payload = frame[tcp + doff:14 + total]
                if payload:
                    stream.segment(ts, seq, payload)
        if stdin in readable:
            data = os.read(stdin, 4096)
            if not data:
                return 0
            buffered += data
            while b"\n" in buffered:
                line, buffered = buffered.split(b"\n", 1)
                _, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
                stream.lost += drops                 # packets the kernel dropped
                if line.strip() == b"arm":
                    stream.reset()
                elif line.strip() == b"report":
                    if stream.ahead:                 # still waiting for a segment: a gap
                        stream.gaps += 1
                    print(json.dumps({"first": stream.first, "last": stream.last, "count": stream.counted,
                                      "bytes": stream.bytes, "lost": stream.lost + stream.gaps + stream.framing,
                                      "dropped": stream.lost, "gaps": stream.gaps, "framing": stream.framing}),
                          flush=True)


if __name__ == "__main__":
    sys.exit(main())
