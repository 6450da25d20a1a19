"""VXLAN and NVGRE tunnel ports over the kernel's sockets.

OpenFlow 1.3 has no per-flow tunnel destination, so a tunnel port reaches
one remote endpoint (``kumoflow switch --tunnel N=vxlan:LOCAL:REMOTE``),
and is named after it (:mod:`kumoflow.tunnels`: ``vxlan-0a000002``). The
tunnel id of a frame (the ``tunnel_id`` match field, set with set-field)
is the VXLAN VNI, or the whole NVGRE GRE key (VSID << 8 | FlowID, as in
Open vSwitch), on the wire (:mod:`.encap` has the headers and what is
checked on receipt).

The underlay is the kernel's: an :class:`Underlay` owns one socket per
(kind, local address) shared by every tunnel port of that kind and
address -- a UDP socket bound to LOCAL:4789 for VXLAN, a raw IPPROTO_GRE
socket bound to LOCAL for NVGRE -- and demultiplexes what it reads by the
source address to the port of that remote. The kernel routes, resolves
neighbours, builds and checks the outer IPv4 (and UDP) headers, and
reassembles fragments. The outer UDP checksum is sent as 0 (SO_NO_CHECK),
as Open vSwitch sends it and RFC 7348 recommends; received checksums are
verified by the kernel when not 0. Outer packets leave with DF clear (the
kernel fragments a frame too large for the underlay, as its own VXLAN
device does; Open vSwitch neither fragments nor reassembles: give VMs an
MTU of the underlay's minus the overhead, see encap.OVERHEAD).

Batches, as on the Linux ports (:mod:`.linuxport`): the runtime reads an
underlay socket on readiness, up to ``RX_BATCH`` datagrams with one
``recvmmsg``, and hands the frames to the datapath in runs of one port
and one tunnel id (`Underlay.read_runs`: a batch that is one run of good
datagrams, the common case, is decoded column by column as the Linux
ports read their ring; any other datagram by datagram); each tunnel port queues what it
sends in its own ``sendmmsg`` batch addressed to its remote (the header
copied in front of each frame in its slot), flushed at the end of the read
cycle like any port. Offloads need nothing here: frames from the Linux
ports arrive with checksums completed and GSO segmented, and the kernel
hands a UDP or raw socket whole datagrams. (A peer whose underlay link
hands over inner frames with partial checksums -- a Linux VXLAN device
over a veth with TX offload on -- must turn that offload off, as for
Open vSwitch: notes/overlays.md.)

Counters and state: a tunnel port counts transmission like any port
(``tx_dropped`` when the socket is full, ``tx_errors`` for a tunnel id
that does not fit 24 bits or a send the kernel refuses, e.g. no route);
the datapath counts reception. A datagram with a bad header from a known
remote is counted in that port's ``rx_errors`` (and ``rx_frame_err``);
one from an address no port reaches in the underlay's ``unknown_remote``,
a truncated one (larger than a slot) in ``truncated``; all are dropped.
A port is live while its underlay socket is open; the socket is opened
when the switch starts (a local address that is not configured, or a
port already taken, stops the start with a clear error) and closed when
it stops, each a PORT_STATUS.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
import struct
import sys

from kumoflow.tunnels import port_name

from . import encap
from .linuxport import DROP_ERRNOS, SOCKET_BUFFER, PortError
from .mmsg import RecvBatch, SendBatch
from .port import PS_LINK_DOWN, PortBase

log = logging.getLogger("kumoflow.switch.tunnel")

RX_BATCH = 64                  # datagrams read per readiness event
TX_BATCH = 64                  # frames per sendmmsg
TX_SLOT = 2048                 # header + frame; a larger frame is sent on its own
RX_SLOT = 65536                # an IPv4 datagram (reassembled by the kernel) is at most 64 KB
SO_NO_CHECK = 11
MSG_TRUNC = 0x20
_NVGRE_AT = 20                 # the GRE header after an IPv4 header without options
# header bits as a native-order read of the wire's bytes sees them (RecvBatch.words / halves)
_VXLAN_I = int.from_bytes(bytes((encap.VXLAN_FLAG_I, 0, 0, 0)), sys.byteorder)
_FRAGMENT = int.from_bytes(b"\x3f\xff", sys.byteorder)               # IPv4 MF and fragment offset
_GRE_CHECKED = int.from_bytes(struct.pack("!I", encap.GRE_CHECKED), sys.byteorder)
_GRE_FIRST = int.from_bytes(struct.pack("!I", encap.GRE_FIRST), sys.byteorder)
IP_MTU_DISCOVER, IP_PMTUDISC_DONT = 10, 0
_SOCKADDR_IN = struct.Struct("=HH4s8x")


def sockaddr_in(address: bytes, port: int) -> bytes:
    return _SOCKADDR_IN.pack(socket.AF_INET, socket.htons(port), address)


class Underlay:
    """The kernel socket of one tunnel kind on one local address, shared by its ports."""

    def __init__(self, kind: str, local: str) -> None:
        if kind not in (encap.VXLAN, encap.NVGRE):
            raise ValueError(f"tunnel kind {kind!r}: expected vxlan or nvgre")
        self.kind = kind
        self.local = str(ipaddress.IPv4Address(local))
        #: remote address (4 bytes) -> TunnelPort
        self.ports: dict[bytes, "TunnelPort"] = {}
        self.sock: socket.socket | None = None
        self._rx: RecvBatch | None = None
        self.unknown_remote = 0
        self.truncated = 0
        self.rx_datagrams = 0

    def __repr__(self) -> str:
        return f"<Underlay {self.kind} {self.local}>"

    def attach(self, port: "TunnelPort") -> None:
        if port.remote_bytes in self.ports:
            raise ValueError(f"two {self.kind} tunnel ports from {self.local} to {port.remote}: "
                             f"{self.ports[port.remote_bytes].port_no} and {port.port_no}")
        self.ports[port.remote_bytes] = port
        port.underlay = self

    def open(self) -> None:
        """Open and bind the socket (needs CAP_NET_RAW for NVGRE), then open the ports' send batches."""
        if self.sock is not None:
            return
        if self.kind == encap.VXLAN:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            where = f"UDP {self.local}:{encap.VXLAN_PORT}"
            addr = (self.local, encap.VXLAN_PORT)
        else:
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, encap.IPPROTO_GRE)
            except PermissionError as exc:
                raise PortError(f"nvgre on {self.local}: a raw GRE socket needs root (CAP_NET_RAW): {exc}") from None
            where = f"GRE {self.local}"
            addr = (self.local, 0)
        try:
            if self.kind == encap.VXLAN:
                sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
                except OSError:
                    pass
            sock.bind(addr)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            hint = " (is the address configured on an interface?)" if exc.errno == errno.EADDRNOTAVAIL else ""
            raise PortError(f"tunnel underlay {where}: cannot bind: {os.strerror(exc.errno or 0)}{hint}") from None
        self.sock = sock
        self._rx = RecvBatch(sock.fileno(), RX_BATCH, RX_SLOT)
        for port in self.ports.values():
            port._opened(sock.fileno())

    def close(self) -> None:
        if self.sock is None:
            return
        for port in self.ports.values():
            port._closed()
        self._rx.close()
        self._rx = None
        self.sock.close()
        self.sock = None

    def fileno(self) -> int:
        return self.sock.fileno() if self.sock is not None else -1

    # --- receiving -------------------------------------------------------------------------

    def read_runs(self) -> list[tuple["TunnelPort", int, list[bytes]]]:
        """One batch from the socket as runs of (port, tunnel id, frames), in arrival order."""
        rx = self._rx
        if rx is None:
            return []
        n = rx.read()
        if not n:
            return []
        self.rx_datagrams += n
        return self._one_run(n) or self._runs(n)

    def _one_run(self, n: int) -> list | None:
        """The batch's n datagrams as one run, read column by column (one strided
        read of each header field for all of them, one comprehension to copy the
        frames out), when they are the common case: all from one known remote,
        one tunnel id, whole, with a good header (for NVGRE: IPv4 without options
        or fragments, its total length the datagram's). None otherwise: then
        `_runs` takes them one by one (and says what is wrong with which)."""
        rx = self._rx
        lengths = rx.lengths(n)
        if any(f & MSG_TRUNC for f in set(rx.flags(n))):
            return None
        slot = rx.slot
        words = rx.words
        step = slot >> 2
        end = n * step
        if self.kind == encap.VXLAN:
            if min(lengths) < encap.HEADER_LEN + encap.MIN_FRAME or len(set(rx.sources(n))) != 1:
                return None
            port = self.ports.get(rx.source(0))
            if port is None or any(not w & _VXLAN_I for w in set(words[0:end:step])):
                return None
            vnis = set(words[1:end:step])
            if len(vnis) != 1:
                return None
            tid = socket.ntohl(vnis.pop()) >> 8
            skip = encap.HEADER_LEN
        else:
            if min(lengths) < _NVGRE_AT + encap.HEADER_LEN + encap.MIN_FRAME or len(set(words[3:end:step])) != 1:
                return None
            port = self.ports.get(rx.map[12:16])
            halves = rx.halves
            hstep = slot >> 1
            if (port is None or set(rx.map[0:n * slot:slot]) != {0x45}
                    or any(f & _FRAGMENT for f in set(halves[3:n * hstep:hstep]))
                    or halves[1:n * hstep:hstep].tolist() != list(map(socket.htons, lengths))
                    or any(w & _GRE_CHECKED != _GRE_FIRST for w in set(words[5:end:step]))):
                return None
            keys = set(words[6:end:step])
            if len(keys) != 1:
                return None
            tid = socket.ntohl(keys.pop())
            skip = _NVGRE_AT + encap.HEADER_LEN
        mm = rx.map
        return [(port, tid, [mm[o + skip:o + length] for o, length in zip(range(0, n * slot, slot), lengths)])]

    def _runs(self, n: int) -> list:
        """The batch's n datagrams as runs of one port and one tunnel id, one by one."""
        rx = self._rx
        view = rx.view
        slot = rx.slot
        ports = self.ports
        runs: list = []
        last_port = last_tid = None
        frames: list = []
        vxlan = self.kind == encap.VXLAN
        for i, length in enumerate(rx.lengths(n)):
            if rx.truncated(i):
                self.truncated += 1
                continue
            o = i * slot
            data = view[o:o + length]
            port = None
            try:
                if vxlan:
                    source = rx.source(i)
                    port = ports.get(source)
                    if port is None:
                        self.unknown_remote += 1
                        continue
                    tid, frame = encap.vxlan_decap(data)
                else:
                    source, start, end = encap.ipv4_payload(data)
                    port = ports.get(source)
                    if port is None:
                        self.unknown_remote += 1
                        continue
                    tid, frame = encap.nvgre_decap(data, start, end)
            except encap.BadHeader as exc:
                if port is None:                 # (an IPv4 header that does not hold together)
                    self.unknown_remote += 1
                else:
                    port.bad_header(exc)
                continue
            if port is not last_port or tid != last_tid:
                frames = []
                runs.append((port, tid, frames))
                last_port, last_tid = port, tid
            frames.append(frame)
        return runs

    def stats(self) -> dict:
        return {"datagrams": self.rx_datagrams, "unknown_remote": self.unknown_remote,
                "truncated": self.truncated}


class TunnelPort(PortBase):
    """An OpenFlow port that is a VXLAN or NVGRE tunnel to one remote endpoint."""

    tunnel = True

    def __init__(self, port_no: int, kind: str, local: str, remote: str, **kwargs) -> None:
        remote_ip = ipaddress.IPv4Address(remote)
        super().__init__(port_no, port_name(kind, remote_ip), state=PS_LINK_DOWN, **kwargs)
        self.kind = kind
        self.local = str(ipaddress.IPv4Address(local))
        self.remote = str(remote_ip)
        self.remote_bytes = remote_ip.packed
        self.underlay: Underlay | None = None
        self._tx: SendBatch | None = None
        self._fd = -1
        self._header = encap.vxlan_header if kind == encap.VXLAN else encap.nvgre_header
        self._headers: dict[int, bytes] = {}
        self._name = sockaddr_in(self.remote_bytes, encap.VXLAN_PORT if kind == encap.VXLAN else 0)
        #: called with this port when a frame is queued for sending and none was before
        self.on_pending = None

    def __repr__(self) -> str:
        return f"<TunnelPort {self.port_no} {self.name} {self.local}->{self.remote}>"

    # --- state -----------------------------------------------------------------------------

    def _opened(self, fd: int) -> None:
        self._fd = fd
        self._tx = SendBatch(fd, TX_BATCH, TX_SLOT, name=self._name)
        self._set_link(True)

    def _closed(self) -> None:
        self.flush()
        if self._tx is not None:
            self._tx.close()
        self._tx = None
        self._fd = -1
        self._set_link(False)

    def _set_link(self, up: bool) -> None:
        before = self.state
        self.state = self.state & ~PS_LINK_DOWN if up else self.state | PS_LINK_DOWN
        if self.state != before and self.datapath is not None:
            self.datapath.port_changed(self.port_no)

    def bad_header(self, exc: Exception) -> None:
        c = self.counters
        c.rx_errors += 1
        c.rx_frame_err += 1
        log.debug("%s: dropped a packet from %s: %s", self.name, self.remote, exc)

    # --- sending -----------------------------------------------------------------------------

    def header(self, tunnel_id: int) -> bytes | None:
        h = self._headers.get(tunnel_id)
        if h is None:
            h = encap.tunnel_header(self.kind, tunnel_id)
            if h is None:
                return None
            if len(self._headers) >= 4096:
                self._headers.clear()
            self._headers[tunnel_id] = h
        return h

    def send(self, frame: bytes) -> None:
        self.send_tunnel(frame, 0)

    def send_many(self, frames: list) -> None:
        self.send_tunnel_many(frames, 0)

    def send_tunnel(self, frame: bytes, tunnel_id: int) -> None:
        """Queue a frame in its tunnel header; it leaves at the next flush (at once without a runtime)."""
        h = self.header(tunnel_id)
        if h is None:
            self.counters.tx_errors += 1
            return
        tx = self._tx
        if tx is None or len(frame) + len(h) > tx.slot:
            self.flush()
            self._send_one(h + frame)
            return
        queued = tx.add_after(h, frame)
        if queued == 1:
            if self.on_pending is None:
                self.flush()
            else:
                self.on_pending(self)
        elif queued == tx.size:
            self.flush()

    def send_tunnel_many(self, frames: list, tunnel_id: int) -> None:
        h = self.header(tunnel_id)
        if h is None:
            self.counters.tx_errors += len(frames)
            return
        tx = self._tx
        if tx is None or max(map(len, frames)) + len(h) > tx.slot:
            for frame in frames:
                self.send_tunnel(frame, tunnel_id)
            return
        was_idle = not tx.count
        start = 0
        while True:
            start = tx.add_many_after(h, frames, start)
            if start == len(frames):
                break
            self.flush()
            was_idle = True
        if was_idle and tx.count:
            if self.on_pending is None:
                self.flush()
            else:
                self.on_pending(self)

    def flush(self) -> None:
        """Send the queued frames (one sendmmsg) and count them."""
        tx = self._tx
        if tx is None or not tx.count:
            return
        sent, nbytes, dropped, errors, err = tx.flush()
        c = self.counters
        c.tx_packets += sent
        c.tx_bytes += nbytes - sent * encap.HEADER_LEN         # the frames' bytes, as other ports count
        if dropped or errors:
            c.tx_dropped += dropped
            c.tx_errors += errors
            log.debug("%s: %d frames not sent: %s", self.name, dropped + errors, os.strerror(err))

    def _send_one(self, packet: bytes) -> None:
        if self._fd < 0:
            self.count_tx_dropped()
            return
        sock = self.underlay.sock
        try:
            sock.sendto(packet, (self.remote, encap.VXLAN_PORT if self.kind == encap.VXLAN else 0))
        except OSError as exc:
            if exc.errno in DROP_ERRNOS:
                self.count_tx_dropped()
            else:
                self.counters.tx_errors += 1
                log.debug("%s: send of %d bytes failed: %s", self.name, len(packet), exc)
        else:
            self.count_tx(len(packet) - encap.HEADER_LEN)


def underlays_for(ports: list[TunnelPort]) -> list[Underlay]:
    """The underlays of these ports (one per kind and local address), the ports
    attached, not opened. ValueError for two ports of one kind to one remote."""
    underlays: dict[tuple[str, str], Underlay] = {}
    for port in ports:
        u = underlays.get((port.kind, port.local))
        if u is None:
            u = underlays[(port.kind, port.local)] = Underlay(port.kind, port.local)
        u.attach(port)
    return list(underlays.values())


__all__ = ["TunnelPort", "Underlay", "underlays_for", "sockaddr_in"]
