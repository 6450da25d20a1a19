"""What crosses the loopback between a controller and its switch, with the
kernel's timestamps: for benchmarks/api/port_to_flow.py.

A passive observer: an AF_PACKET socket on ``lo`` with a classic BPF
filter (IPv4 TCP from or to the controller's OpenFlow port, or to its API
port), every packet stamped by the kernel as it is delivered
(``SO_TIMESTAMPNS``: CLOCK_REALTIME, nanoseconds). Nobody waits for it: the
controller and the switch run as they would without it, and reading the
socket late does not move a timestamp. What it costs them is the kernel
handing a copy of each matching packet to one more socket.

``lo`` shows every packet twice to a packet socket (leaving and arriving);
the leaving copy is skipped (as libpcap does), so a timestamp is the moment
the packet was handed to the receiving socket's TCP: for a FLOW_MOD, the
moment the switch could read it.

The OpenFlow streams (both directions) are reassembled from their SYN on,
so the capture must start before the switch connects; a gap (a lost
capture packet: the socket's buffer overflowed) is an error, never a guess.
Each complete OpenFlow message is handed to ``on_message(ts_ns,
to_switch, raw)`` with the timestamp of the segment that completed it. An
HTTP segment to or from the API port is handed to ``on_http(ts_ns,
to_api, first_bytes)`` (not reassembled: the caller looks for the start of
a request line or a status line).
"""

from __future__ import annotations

import ctypes
import socket
import struct
from typing import Callable

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SO_TIMESTAMPNS = 35
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
TCP_SYN, TCP_FIN, TCP_RST = 0x02, 0x01, 0x04


def _bpf(of_port: int, api_port: int) -> list[tuple[int, int, int, int]]:
    """IPv4 TCP from or to of_port or api_port (the shape `tcpdump -dd 'tcp and port P'` gives)."""
    return [
        (0x28, 0, 0, 12),            # 0  ldh [12]            ethertype
        (0x15, 0, 11, 0x0800),       # 1  jeq IPv4 ? : drop
        (0x30, 0, 0, 23),            # 2  ldb [23]            protocol
        (0x15, 0, 9, 6),             # 3  jeq TCP ? : drop
        (0x28, 0, 0, 20),            # 4  ldh [20]            fragment offset
        (0x45, 7, 0, 0x1FFF),        # 5  jset -> drop
        (0xB1, 0, 0, 14),            # 6  ldxb 4*([14]&0xf)   IP header length
        (0x48, 0, 0, 14),            # 7  ldh [x+14]          source port
        (0x15, 5, 0, of_port),       # 8  jeq -> accept
        (0x15, 4, 0, api_port),      # 9  jeq -> accept
        (0x48, 0, 0, 16),            # 10 ldh [x+16]          destination port
        (0x15, 2, 0, of_port),       # 11 jeq -> accept
        (0x15, 1, 0, api_port),      # 12 jeq -> accept
        (0x06, 0, 0, 0),             # 13 drop
        (0x06, 0, 0, 0x40000),       # 14 accept
    ]


class _Stream:
    __slots__ = ("next_seq", "buf")

    def __init__(self, next_seq: int) -> None:
        self.next_seq = next_seq
        self.buf = b""


class Capture:
    def __init__(self, of_port: int, api_port: int, on_message: Callable[[int, bool, bytes], None],
                 on_http: Callable[[int, bool, bytes], None], rcvbuf: int = 256 << 20) -> None:
        self.of_port, self.api_port = of_port, api_port
        self.on_message, self.on_http = on_message, on_http
        # protocol 0: no packet reaches the socket until bind() names lo and the protocol, by which time
        # the filter and the buffer size are in place
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        prog = _bpf(of_port, api_port)
        raw = b"".join(struct.pack("HBBI", *ins) for ins in prog)
        self._filter = ctypes.create_string_buffer(raw, len(raw))
        fprog = struct.pack("HL", len(prog), ctypes.addressof(self._filter))
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind(("lo", ETH_P_ALL))
        sock.setblocking(False)
        self.sock = sock
        self.drops()                     # the kernel's counters restart at each read
        self.streams: dict[tuple[int, int], _Stream] = {}
        self.packets = 0
        self.messages = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def drops(self) -> int:
        """Packets the kernel dropped for want of room in this socket since the last call (a gap)."""
        packets, drops = struct.unpack("II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        return drops

    def read(self) -> int:
        """Handle everything queued now; returns the number of packets read."""
        n = 0
        recvmsg, cmsg_space = self.sock.recvmsg, socket.CMSG_SPACE(16)
        while True:
            try:
                data, anc, _flags, addr = recvmsg(262144, cmsg_space)
            except BlockingIOError:
                break
            if addr[2] == PACKET_OUTGOING:
                continue
            ts = 0
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    ts = sec * 1_000_000_000 + nsec
            n += 1
            self._packet(ts, data)
        self.packets += n
        return n

    def _packet(self, ts: int, frame: bytes) -> None:
        ip = 14
        ihl = (frame[ip] & 0x0F) * 4
        total = struct.unpack_from("!H", frame, ip + 2)[0] or len(frame) - ip   # 0: a BIG TCP packet
        tcp = ip + ihl
        sport, dport, seq = struct.unpack_from("!HHI", frame, tcp)
        doff = (frame[tcp + 12] >> 4) * 4
        flags = frame[tcp + 13]
        payload = frame[tcp + doff:ip + total]
        if dport == self.api_port or sport == self.api_port:
            if payload:
                self.on_http(ts, dport == self.api_port, payload[:64])
            return
        key = (sport, dport)
        if flags & TCP_SYN:
            self.streams[key] = _Stream((seq + 1) & 0xFFFFFFFF)
            return
        stream = self.streams.get(key)
        if stream is None:
            return                       # a connection that began before the capture: not ours to read
        if flags & (TCP_RST | TCP_FIN) and not payload:
            self.streams.pop(key, None)
            return
        if not payload:
            return
        offset = (seq - stream.next_seq) & 0xFFFFFFFF
        if offset >= 0x80000000:         # (partly) a retransmission of what we have
            skip = (stream.next_seq - seq) & 0xFFFFFFFF
            if skip >= len(payload):
                return
            payload = payload[skip:]
        elif offset:
            raise RuntimeError(f"capture: {offset} bytes missing in the stream {sport} -> {dport} "
                               f"(the capture socket overflowed?)")
        stream.next_seq = (stream.next_seq + len(payload)) & 0xFFFFFFFF
        buf = stream.buf + payload if stream.buf else payload
        to_switch = sport == self.of_port
        o, n = 0, len(buf)
        while n - o >= 8:
            length = buf[o + 2] << 8 | buf[o + 3]
            if length < 8:
                raise RuntimeError(f"capture: OpenFlow framing lost in {sport} -> {dport}")
            if n - o < length:
                break
            self.messages += 1
            self.on_message(ts, to_switch, buf[o:o + length])
            o += length
        stream.buf = buf[o:]

    def close(self) -> None:
        self.sock.close()
