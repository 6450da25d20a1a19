"""Emulated OpenFlow 1.3 switches for cbench.py: one tight epoll loop per process.

A worker process owns a slice of the switches. Each switch is a non-blocking
TCP socket to the controller. The handshake (hello, features, port
description, barrier, get-config, role, echo; flow, group-description and
meter-configuration requests get empty replies: the emulated switch keeps
no flows, groups or meters) is answered with messages
built by kumoflow's codec; the hot path (packet-in out, flow-mod and
packet-out in) works on raw bytes: packet-ins are one struct.pack each, and
responses are recognised from the header (type, and the flow-mod command
byte) without decoding.

Phases of a worker, driven by the parent over a pipe:

    connect    open every socket, answer the handshake; "ready" when every
               switch has answered FEATURES_REQUEST and the controller has
               been quiet for `quiet` seconds
    learn      each switch sends `learn` packet-ins whose source MACs are the
               destination MACs of the load (all behind port 1), resending
               until each is answered, so the controller knows them
    load       throughput: keep `window` packet-ins outstanding per switch;
               latency: one outstanding packet-in per switch
    hold       (scale test) no load: just answer echoes until told to stop

Every packet-in of the load carries a new source MAC from a pool of `pool`
MACs (cycling), behind port 2..nports (fixed per MAC, so a MAC never
moves), and a destination from the learned set (port 1), so a learning
switch answers each one with a FLOW_MOD (buffered packet-in: the flow-mod
carries the buffer id) or FLOW_MOD + PACKET_OUT (unbuffered). Like cbench,
every FLOW_MOD (ADD) and PACKET_OUT counts as a response.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import sys
import time
from array import array
from pathlib import Path

_SRC = Path(__file__).resolve().parents[2] / "src"
if str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

from kumoflow import ofp  # noqa: E402

OFPT_HELLO, OFPT_ERROR, OFPT_ECHO_REQUEST = 0, 1, 2
OFPT_PACKET_OUT, OFPT_FLOW_MOD = 13, 14
LEARN_BASE = 0xF000_0000          # buffer ids of learn packet-ins; load ids stay below
NO_BUFFER = 0xFFFF_FFFF

EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
HDR = struct.Struct("!BBHI")
U32 = struct.Struct("!I")


def _frame(src_hi: int, src_lo: int, dst: bytes) -> bytes:
    """A 60-byte Ethernet/IPv4/UDP frame (only the MACs vary)."""
    src = src_hi.to_bytes(2, "big") + src_lo.to_bytes(4, "big")
    ip = bytes.fromhex("4500002e00004000401100000a0000010a000002")
    udp = bytes.fromhex("04d2162e001a0000")
    return (dst + src + b"\x08\x00" + ip + udp).ljust(60, b"\x00")


#: the table the misses come from: kumoflow's l2 fills the pipeline's forward
#: table (kumoflow dispatches packet-ins by table); os-ken's app ignores it
MISS_TABLE = 40


class Template:
    """A pre-encoded PACKET_IN; `pack(xid, buffer_id, in_port, dst, src_hi, src_lo)` fills it.

    The bytes around the variable fields come from kumoflow's codec, so the
    layout is the one `ofp.PacketIn(...).pack()` produces (match = in_port).
    """

    def __init__(self, buffered: bool = True) -> None:
        frame = _frame(0, 0, bytes(6))
        raw = ofp.PacketIn(buffer_id=0 if buffered else NO_BUFFER, total_len=len(frame),
                           reason=ofp.OFPR.NO_MATCH, table_id=MISS_TABLE, match=ofp.Match(in_port=0x11223344),
                           data=frame, xid=0).pack()
        port_at = raw.index(b"\x11\x22\x33\x44")
        data_at = len(raw) - len(frame)
        assert port_at == 32 and data_at == 42, (port_at, data_at)
        self.buffered = buffered
        self.size = len(raw)
        self.prefix = raw[0:4]
        self.mid = raw[12:32]
        self.rest = raw[data_at + 12:]
        # version/type/len | xid | buffer_id | total_len..oxm header | in_port | pad | dst | src | rest
        fmt = f"!4sII20sI{data_at - 36}x6sHI{len(self.rest)}s"
        self.struct = struct.Struct(fmt)
        assert self.struct.size == self.size

    def pack(self, xid: int, buffer_id: int, in_port: int, dst: bytes, src_hi: int, src_lo: int) -> bytes:
        return self.struct.pack(self.prefix, xid, buffer_id if self.buffered else NO_BUFFER, self.mid,
                                in_port, dst, src_hi, src_lo, self.rest)


class Switch:
    __slots__ = ("sock", "fd", "index", "dpid", "rbuf", "wbuf", "featured", "learn_pending",
                 "seq", "outstanding", "answered", "sent_at", "last_rx", "src_hi", "dsts", "closed",
                 "echoes", "stalls", "hello")

    def __init__(self, index: int, dpid: int, learn: int) -> None:
        self.index = index
        self.dpid = dpid
        self.sock: socket.socket | None = None
        self.fd = -1
        self.rbuf = b""
        self.wbuf = bytearray()
        self.featured = False
        self.hello = False
        self.learn_pending: dict[int, float] = {}
        self.seq = 0
        self.outstanding = 0
        self.answered = 0
        self.sent_at = 0
        self.last_rx = 0.0
        self.src_hi = 0x0200 | (index & 0xFF)      # locally administered unicast
        self.dsts = [self.src_hi.to_bytes(2, "big") + (0x8000_0000 | j).to_bytes(4, "big") for j in range(learn)]
        self.closed = False
        self.echoes = 0
        self.stalls = 0


class _Stop(Exception):
    """The parent said stop."""


class Worker:
    """The switches of one process and their event loop."""

    def __init__(self, ctl, host: str, port: int, indexes: list[int], opts: dict) -> None:
        self.ctl = ctl                      # multiprocessing Connection to the parent
        self.host, self.port = host, port
        self.opts = opts
        self.mode = opts["mode"]            # throughput | latency | hold
        self.window = opts["window"] if self.mode == "throughput" else 1
        self.pool = opts["pool"]
        self.nports = max(2, opts["ports"])
        self.learn = max(1, opts["learn"])
        self.tpl = Template(buffered=not opts.get("unbuffered", False))
        self.switches = [Switch(i, opts["dpid_base"] + i, self.learn) for i in indexes]
        self.by_fd: dict[int, Switch] = {}
        self.ep = select.epoll()
        self.phase = "connect"
        self.total = 0                      # responses counted in the load phase
        self.packet_outs = 0                # of which PACKET_OUTs (the rest: FLOW_MODs)
        self.latencies = array("d")
        self.measuring = False
        self.last_control = time.monotonic()
        self.closed = 0
        self.errors: list[str] = []

    # --- plumbing ---------------------------------------------------------------

    def _connect_all(self) -> None:
        """Connect in batches, each batch once the previous one has heard the controller's HELLO.

        Pacing keeps the controller's accept queue from overflowing (a
        dropped SYN costs a 1 s retransmit), so connection time measures
        the controller, not TCP's backoff.
        """
        batch = self.opts.get("connect_batch", 64)
        for start in range(0, len(self.switches), batch):
            group = self.switches[start:start + batch]
            for sw in group:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(10)
                sock.connect((self.host, self.port))
                sock.setblocking(False)
                sw.sock, sw.fd = sock, sock.fileno()
                self.by_fd[sw.fd] = sw
                self.ep.register(sw.fd, EPOLLIN)
                self._send(sw, ofp.Hello(xid=1).pack())
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and not all(sw.hello or sw.closed for sw in group):
                self._poll(0.01)

    def _send(self, sw: Switch, data: bytes) -> None:
        if sw.closed:
            return
        if sw.wbuf:
            sw.wbuf += data
            return
        try:
            n = sw.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            self._close(sw, f"send: {exc}")
            return
        if n < len(data):
            sw.wbuf += data[n:]
            self.ep.modify(sw.fd, EPOLLIN | EPOLLOUT)

    def _writable(self, sw: Switch) -> None:
        try:
            n = sw.sock.send(sw.wbuf)
        except BlockingIOError:
            return
        except OSError as exc:
            self._close(sw, f"send: {exc}")
            return
        del sw.wbuf[:n]
        if not sw.wbuf:
            self.ep.modify(sw.fd, EPOLLIN)

    def _close(self, sw: Switch, why: str) -> None:
        if sw.closed:
            return
        sw.closed = True
        self.closed += 1
        if len(self.errors) < 5:
            self.errors.append(f"dpid {sw.dpid:#x}: {why}")
        try:
            self.ep.unregister(sw.fd)
        except (OSError, ValueError):
            pass
        sw.sock.close()

    # --- receiving ----------------------------------------------------------------

    def _readable(self, sw: Switch) -> None:
        try:
            data = sw.sock.recv(262144)
        except BlockingIOError:
            return
        except OSError as exc:
            self._close(sw, f"recv: {exc}")
            return
        if not data:
            self._close(sw, "closed by controller")
            return
        buf = sw.rbuf + data if sw.rbuf else data
        n = len(buf)
        o = 0
        got = 0
        outs = 0
        learning = self.phase == "learn"
        while n - o >= 8:
            length = buf[o + 2] << 8 | buf[o + 3]
            if length < 8:
                self._close(sw, "framing lost")
                return
            if n - o < length:
                break
            t = buf[o + 1]
            if t == OFPT_FLOW_MOD:
                if buf[o + 25] == 0:                    # OFPFC_ADD
                    got += 1
                    if learning:
                        self._learned(sw, U32.unpack_from(buf, o + 32)[0])
            elif t == OFPT_PACKET_OUT:
                got += 1
                outs += 1
                if learning:
                    self._learned(sw, U32.unpack_from(buf, o + 8)[0])
            elif t == OFPT_ECHO_REQUEST:
                sw.echoes += 1
                self._send(sw, b"\x04\x03" + buf[o + 2:o + length])
            else:
                self._control(sw, buf[o:o + length])
            o += length
        sw.rbuf = buf[o:] if o < n else b""
        if got and self.phase == "load":
            if self.measuring:
                self.packet_outs += outs
            self._answered(sw, got, got if self.tpl.buffered else outs)

    def _control(self, sw: Switch, raw: bytes) -> None:
        self.last_control = time.monotonic()
        t = raw[1]
        if t == OFPT_HELLO:
            sw.hello = True
            return
        try:
            msg = ofp.parse(raw)
        except ofp.CodecError as exc:
            self._send(sw, ofp.ErrorMsg.for_request(exc.type, exc.code, raw).pack())
            return
        xid = msg.xid
        reply: ofp.Message | None = None
        if isinstance(msg, ofp.FeaturesRequest):
            reply = ofp.FeaturesReply(sw.dpid, n_buffers=256 if self.tpl.buffered else 0, n_tables=254,
                                      capabilities=0x4F, xid=xid)
            sw.featured = True
        elif isinstance(msg, ofp.PortDescRequest):
            mac = sw.dpid.to_bytes(8, "big")[-3:].hex(":")
            ports = [ofp.Port(p, f"02:00:{mac}:{p:02x}", f"s{sw.dpid}-eth{p}",
                              curr=ofp.OFPPF.F_1GB_FD | ofp.OFPPF.COPPER, curr_speed=1_000_000,
                              max_speed=1_000_000) for p in range(1, self.nports + 1)]
            reply = ofp.PortDescReply(body=ports, xid=xid)
        elif isinstance(msg, ofp.DescRequest):
            reply = ofp.DescReply(mfr_desc="kumoflow", hw_desc="cbench", sw_desc="cbench.py",
                                  serial_num=str(sw.dpid), dp_desc=f"emulated switch {sw.dpid}", xid=xid)
        elif isinstance(msg, ofp.BarrierRequest):
            reply = ofp.BarrierReply(xid=xid)
        elif isinstance(msg, ofp.GetConfigRequest):
            reply = ofp.GetConfigReply(miss_send_len=128, xid=xid)
        elif isinstance(msg, ofp.RoleRequest):
            reply = ofp.RoleReply(role=msg.role, generation_id=msg.generation_id, xid=xid)
        elif isinstance(msg, (ofp.FlowStatsRequest, ofp.GroupDescRequest, ofp.MeterConfigRequest)):
            # what the switch holds: nothing yet (a controller reads it before reconciling)
            reply = {ofp.FlowStatsRequest: ofp.FlowStatsReply, ofp.GroupDescRequest: ofp.GroupDescReply,
                     ofp.MeterConfigRequest: ofp.MeterConfigReply}[type(msg)](body=[], xid=xid)
        elif isinstance(msg, ofp.MultipartRequest):
            reply = ofp.ErrorMsg.for_request(ofp.OFPET.BAD_REQUEST, ofp.OFPBRC.BAD_MULTIPART, raw)
        if reply is not None:
            self._send(sw, reply.pack())

    # --- load -----------------------------------------------------------------------

    def _packet_ins(self, sw: Switch, k: int) -> bytes:
        pack = self.tpl.struct.pack
        prefix, mid, rest = self.tpl.prefix, self.tpl.mid, self.tpl.rest
        buffered = self.tpl.buffered
        pool, ports1, dsts, learn = self.pool, self.nports - 1, sw.dsts, self.learn
        hi = sw.src_hi
        seq = sw.seq
        out = []
        for _ in range(k):
            seq += 1
            idx = seq % pool
            out.append(pack(prefix, seq & 0xFFFFFFFF, (seq % LEARN_BASE) if buffered else NO_BUFFER, mid,
                            2 + idx % ports1, dsts[idx % learn], hi, idx, rest))
        sw.seq = seq
        sw.outstanding += k
        return b"".join(out)

    def _answered(self, sw: Switch, got: int, done: int) -> None:
        """`got` responses arrived, answering `done` packet-ins (unbuffered: one PACKET_OUT each,
        the FLOW_MOD before it counts as a response but doesn't free the window)."""
        sw.last_rx = time.monotonic()
        if self.measuring:
            self.total += got
            sw.answered += got
            if self.mode == "latency":
                self.latencies.append(time.perf_counter_ns() - sw.sent_at)
        if self.mode == "latency":
            sw.outstanding = 0
            data = self._packet_ins(sw, 1)
            sw.sent_at = time.perf_counter_ns()
            self._send(sw, data)
            return
        sw.outstanding = max(0, sw.outstanding - done)
        room = self.window - sw.outstanding
        if room > 0:
            self._send(sw, self._packet_ins(sw, room))

    def _start_load(self) -> None:
        now = time.monotonic()
        for sw in self.switches:
            if sw.closed:
                continue
            sw.last_rx = now
            sw.outstanding = 0
            data = self._packet_ins(sw, self.window)
            sw.sent_at = time.perf_counter_ns()
            self._send(sw, data)

    def _check_stalls(self, stall: float) -> None:
        """A switch with nothing answered for `stall` s lost packet-ins: refill its window."""
        now = time.monotonic()
        for sw in self.switches:
            if not sw.closed and sw.outstanding and now - sw.last_rx > stall:
                sw.stalls += 1
                sw.last_rx = now
                sw.outstanding = 0
                data = self._packet_ins(sw, self.window)
                sw.sent_at = time.perf_counter_ns()
                self._send(sw, data)

    # --- learn ------------------------------------------------------------------------

    @staticmethod
    def _learned(sw: Switch, buffer_id: int) -> None:
        if buffer_id == NO_BUFFER:          # unbuffered packet-ins: answers are matched by count
            if sw.learn_pending:
                sw.learn_pending.pop(next(iter(sw.learn_pending)))
        else:
            sw.learn_pending.pop(buffer_id, None)

    def _learn_send(self, sw: Switch, ids: list[int]) -> None:
        pack = self.tpl.pack
        now = time.monotonic()
        out = []
        for bid in ids:
            j = bid - LEARN_BASE
            sw.learn_pending[bid] = now
            dst = sw.dsts[j]
            out.append(pack(bid, bid, 1, b"\xff" * 6, int.from_bytes(dst[:2], "big"), int.from_bytes(dst[2:], "big")))
        self._send(sw, b"".join(out))

    # --- loop ---------------------------------------------------------------------------

    def _poll(self, timeout: float) -> None:
        by_fd = self.by_fd
        for fd, ev in self.ep.poll(timeout, 1024):
            sw = by_fd.get(fd)
            if sw is None:
                if fd == self.ctl_fd:
                    self._command(self.ctl.recv())
                continue
            if sw.closed:
                continue
            if ev & EPOLLIN:
                self._readable(sw)
            elif ev & (select.EPOLLHUP | select.EPOLLERR):
                self._close(sw, "hangup")
                continue
            if ev & EPOLLOUT and not sw.closed:
                self._writable(sw)

    def _command(self, cmd: tuple) -> None:
        if cmd[0] == "stop":
            raise _Stop()
        self.pending_cmd = cmd

    def _wait_command(self) -> tuple:
        while self.pending_cmd is None:
            self._poll(0.5)
        cmd, self.pending_cmd = self.pending_cmd, None
        return cmd

    def run(self) -> None:
        self.ctl_fd = self.ctl.fileno()
        self.ep.register(self.ctl_fd, EPOLLIN)
        self.pending_cmd = None
        try:
            self._run()
        except _Stop:
            self._finish()
        except Exception as exc:   # report, don't hang the parent
            import traceback

            self.ctl.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))

    def _run(self) -> None:
        opts = self.opts
        t0 = time.monotonic()
        self._connect_all()
        deadline = t0 + opts["connect_timeout"]
        quiet = opts["quiet"]
        while True:
            self._poll(0.05)
            now = time.monotonic()
            live = [sw for sw in self.switches if not sw.closed]
            if all(sw.featured for sw in live) and now - self.last_control >= quiet:
                break
            if now > deadline:
                break
        featured = sum(sw.featured and not sw.closed for sw in self.switches)
        self.ctl.send(("ready", {"featured": featured, "closed": self.closed, "errors": self.errors,
                                 "connect_s": time.monotonic() - t0}))
        if self.mode == "hold":             # answer echoes until "stop" (handled by _command)
            while True:
                self._poll(0.5)
        self._wait_command()                # "learn"
        # learn phase
        self.phase = "learn"
        ids = [LEARN_BASE + j for j in range(self.learn)]
        for sw in self.switches:
            if not sw.closed:
                self._learn_send(sw, ids)
        deadline = time.monotonic() + opts["learn_timeout"]
        while True:
            self._poll(0.05)
            now = time.monotonic()
            waiting = [sw for sw in self.switches if sw.learn_pending and not sw.closed]
            if not waiting or now > deadline:
                break
            for sw in waiting:
                late = [bid for bid, at in sw.learn_pending.items() if now - at > 0.5]
                if late:
                    self._learn_send(sw, late)
        unlearned = sum(1 for sw in self.switches if sw.learn_pending and not sw.closed)
        self.ctl.send(("learned", {"unlearned_switches": unlearned, "closed": self.closed, "errors": self.errors}))
        _, start_at, warmup, duration = self._wait_command()
        # load phase
        self.phase = "load"
        while time.monotonic() < start_at:
            self._poll(max(0.0, start_at - time.monotonic()))
        self._start_load()
        measure_at = start_at + warmup
        end_at = measure_at + duration
        next_check = time.monotonic() + 1.0
        stall = opts["stall"]
        while True:
            now = time.monotonic()
            if not self.measuring and now >= measure_at:
                self.measuring = True
                m0 = time.monotonic()
                cpu0 = os.times()
            if now >= end_at:
                break
            if now >= next_check:
                self._check_stalls(stall)
                next_check = now + 0.5
            self._poll(min(0.05, max(0.0, (measure_at if not self.measuring else end_at) - now)))
        elapsed = time.monotonic() - m0
        cpu1 = os.times()
        self.measuring = False
        per = [sw.answered for sw in self.switches if not sw.closed]
        lat = sorted(self.latencies)
        self.ctl.send(("result", {
            "responses": self.total, "packet_outs": self.packet_outs, "elapsed": elapsed,
            "cpu": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
            "per_switch_min": min(per) if per else 0, "per_switch_max": max(per) if per else 0,
            "latencies_ns": lat,
            "stalls": sum(sw.stalls for sw in self.switches), "closed": self.closed, "errors": self.errors,
            "switches": len(per),
        }))
        self.phase = "drain"
        while True:                         # until "stop"
            self._poll(0.5)

    def _finish(self) -> None:
        echoes = sum(sw.echoes for sw in self.switches)
        min_echoes = min((sw.echoes for sw in self.switches), default=0)
        for sw in self.switches:
            if not sw.closed:
                sw.closed = True
                sw.sock.close()
        self.ctl.send(("done", {"echoes": echoes, "min_echoes": min_echoes, "closed": self.closed, "errors": self.errors}))


def worker_main(ctl, host: str, port: int, indexes: list[int], opts: dict) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the parent stops us (over the pipe, or as a daemon)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if opts.get("cpu") is not None:
        try:
            os.sched_setaffinity(0, {opts["cpu"]})
        except OSError:
            pass
    Worker(ctl, host, port, indexes, opts).run()
    ctl.close()


__all__ = ["Template", "Worker", "worker_main"]
