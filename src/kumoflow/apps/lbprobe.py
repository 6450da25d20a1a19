"""Health checks sent by the controller through the data plane: each check
is a few frames the `lb` app sends out of the member's switch port as if
from the VIP, and the member's answers, which its switch sends back to the
controller (a flow per member: from the member's monitor address to the
VIP). Nothing here talks to a switch: a `Check` makes frames and reads
them, with the time given.

``PING``         an ICMP echo request; the echo reply passes.
``TCP``          a SYN; a SYN-ACK passes (and is answered with a RST, so
                 the member keeps no half-open connection), a RST fails.
``HTTP``         a SYN, then on the SYN-ACK the request (``GET /path
                 HTTP/1.0`` and a Host header), then a RST once the status
                 line came: it passes when its code is expected.
``UDP-CONNECT``  a datagram; an ICMP unreachable fails, silence until the
                 timeout passes (Octavia's meaning).

A check that gets no verdict by its timeout fails (UDP-CONNECT: passes).
Its latency is from the request (the SYN, the echo request; for HTTP the
request line) to the answer: what the `lb` app's load-aware weights read.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from kumoflow.packet import ICMP, TCP, UDP, Ethernet, IPv4, PacketError, parse
from kumoflow.packet.consts import TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN

ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY, ICMP_UNREACHABLE = 8, 0, 3
_STATUS = re.compile(rb"^HTTP/\d\.\d (\d{3})")


@dataclass(frozen=True)
class Result:
    ok: bool
    latency: float | None      # seconds from request to answer (None: no answer)
    detail: str


class Check:
    """One health check of one member in flight."""

    def __init__(self, monitor, src_mac: str, dst_mac: str, vip: ipaddress.IPv4Address,
                 target: tuple[ipaddress.IPv4Address, int], sport: int, isn: int, now: float) -> None:
        self.monitor, self.src_mac, self.dst_mac = monitor, src_mac, dst_mac
        self.vip, (self.address, self.port) = vip, target
        self.sport, self.isn = sport, isn
        self.sent = now
        self.deadline = now + monitor.timeout
        self._seq = (isn + 1) & 0xFFFFFFFF       # ours, after the SYN
        self._their: int | None = None          # theirs, next expected
        self._head = b""
        self._ahead: dict[int, bytes] = {}      # their segments come before the one expected, by sequence
        self._fin: int | None = None            # the sequence number their FIN takes

    # --- frames ---------------------------------------------------------------------

    def _ip(self, payload) -> bytes:
        return bytes(Ethernet(src=self.src_mac, dst=self.dst_mac) / IPv4(src=str(self.vip), dst=str(self.address),
                                                                          ttl=64) / payload)

    def _tcp(self, flags: int, seq: int, ack: int = 0, data: bytes = b"") -> bytes:
        segment = TCP(sport=self.sport, dport=self.port, seq=seq, ack=ack, flags=flags, window=65535)
        return self._ip(segment / data if data else segment)

    def first(self) -> bytes:
        kind = self.monitor.type
        if kind == "PING":
            return self._ip(ICMP(type=ICMP_ECHO_REQUEST, code=0, id=self.sport, seq=self.isn & 0xFFFF) / b"kumoflow")
        if kind == "UDP-CONNECT":
            return self._ip(UDP(sport=self.sport, dport=self.port) / b"kumoflow health check")
        return self._tcp(TCP_SYN, self.isn)

    def request(self) -> bytes:
        m = self.monitor
        host = m.domain or str(self.address)
        return f"{m.method} {m.path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: kumoflow-health\r\n\r\n".encode()

    # --- answers ----------------------------------------------------------------------

    def matches(self, frame: bytes) -> bool:
        """Is this frame (from the member to the VIP) an answer to this check?"""
        try:
            pkt = parse(frame)
        except PacketError:
            return False
        ip = pkt.get(IPv4)
        if ip is None or ip.src != str(self.address) or ip.dst != str(self.vip):
            return False
        tcp, icmp = pkt.get(TCP), pkt.get(ICMP)
        if tcp is not None:
            return tcp.sport == self.port and tcp.dport == self.sport
        if icmp is not None and icmp.type == ICMP_ECHO_REPLY:
            return icmp.id == self.sport
        return icmp is not None and icmp.type == ICMP_UNREACHABLE and bytes(pkt.payload)[20:22] == \
            self.sport.to_bytes(2, "big")       # the quoted datagram's source port

    def answer(self, frame: bytes, now: float) -> tuple[list[bytes], Result | None]:
        """What to send back, and the verdict when this frame gives it."""
        pkt = parse(frame)
        kind = self.monitor.type
        icmp = pkt.get(ICMP)
        if icmp is not None:
            if icmp.type == ICMP_UNREACHABLE:
                return [], Result(False, now - self.sent, f"ICMP unreachable (code {icmp.code})")
            return ([], Result(True, now - self.sent, "echo reply")) if kind == "PING" else ([], None)
        tcp = pkt.get(TCP)
        if tcp is None or kind not in ("TCP", "HTTP"):
            return [], None
        if tcp.flags & TCP_RST:
            return [], Result(False, now - self.sent, "connection refused (RST)")
        if tcp.flags & TCP_SYN and tcp.flags & TCP_ACK:
            if tcp.ack != self._seq:
                return [], None
            self._their = (tcp.seq + 1) & 0xFFFFFFFF
            if kind == "TCP":
                return [self._tcp(TCP_RST, self._seq)], Result(True, now - self.sent, "SYN-ACK")
            request = self.request()
            self.sent = now             # an HTTP check's latency: from the request on
            frames = [self._tcp(TCP_ACK | TCP_PSH, self._seq, self._their, request)]
            self._seq = (self._seq + len(request)) & 0xFFFFFFFF
            return frames, None
        if self._their is None or kind != "HTTP":
            return [], None
        # The member's segments come in order from the member, not always to the controller: a switch may
        # hand two packet-ins to the controller the other way round (Open vSwitch's handler threads do).
        data = bytes(pkt.payload)
        if data and (tcp.seq - self._their) & 0xFFFFFFFF < 1 << 16:      # not one already read
            self._ahead[tcp.seq] = data
        if tcp.flags & TCP_FIN:
            self._fin = (tcp.seq + len(data)) & 0xFFFFFFFF
        while self._their in self._ahead:
            chunk = self._ahead.pop(self._their)
            self._head += chunk
            self._their = (self._their + len(chunk)) & 0xFFFFFFFF
        found = _STATUS.match(self._head)
        if found is not None:
            code = int(found.group(1))
            ok = self.monitor.expects(code)
            return [self._tcp(TCP_RST, self._seq)], Result(ok, now - self.sent, f"HTTP {code}")
        if b"\r\n" in self._head or len(self._head) > 1024:
            return [self._tcp(TCP_RST, self._seq)], Result(False, now - self.sent, "not an HTTP answer")
        if self._fin == self._their:        # closed, everything before its FIN read
            return [self._tcp(TCP_RST, self._seq)], Result(False, now - self.sent, "closed before answering")
        return [], None

    def timed_out(self) -> Result:
        if self.monitor.type == "UDP-CONNECT":
            return Result(True, None, "no ICMP unreachable")
        return Result(False, None, f"no answer in {self.monitor.timeout:g} s")
