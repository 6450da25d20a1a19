"""The asyncio switch: ports, channels, timers and fail modes around the datapath.

    switch = Switch(dpid=1, ports={1: "veth1", 2: "veth2"},
                    controllers=["tcp:127.0.0.1:6653"], listen=["ptcp:6634"],
                    fail_mode="secure")
    await switch.start()
    ...
    await switch.stop()

What it does:

* each port's raw socket is read with ``loop.add_reader``; each readiness
  event is one read cycle: a batch of frames from the port's receive ring
  (:mod:`kumoflow.switch.linuxport`) goes to ``datapath.receive(port_no,
  frame)`` (or to the standalone learning bridge, see below), and then every
  port the batch produced output for sends it with one ``sendmmsg``.
  Frames sent outside a read cycle (packet-outs, the learning bridge on a
  timer) are flushed by a callback scheduled with ``loop.call_soon``;
* tunnel ports (:mod:`kumoflow.switch.tunnelport`) share one kernel socket
  per kind and local address (an ``Underlay``), which is read the same way:
  a batch of datagrams per readiness event, handed to the datapath in runs
  of one port and one tunnel id, then every port with output flushes;
* a port with a rate (``qos``: ``--port-rate`` / ``--queue``) gets an
  egress scheduler (:mod:`kumoflow.switch.qos`); when it holds frames it
  asks for a wake-up, which is one ``loop.call_later`` per port (a new
  request earlier than the armed one replaces it); the wake-up runs the
  scheduler and flushes what it sent. With nothing held, no timer runs;
* ``datapath.tick(time.monotonic())`` every ``tick_interval`` (0.5 s): idle
  and hard timeouts, FLOW_REMOVED;
* ``datapath.on_async`` messages (packet-in, flow removed, port status) go
  to the channels that want them (:mod:`kumoflow.switch.channel`);
* link changes: a netlink socket subscribed to RTM_NEWLINK/RTM_DELLINK
  events, plus a poll every ``poll_interval`` (2 s) as a safety net, makes
  each port re-read its state; a change calls ``datapath.port_changed``,
  which sends PORT_STATUS. Each time, a socket error the interface going
  down left pending is collected and the port's reader re-added (uvloop
  stops polling a socket with an error pending: see ``_rearm``);
* a PORT_MOD that sets or clears OFPPC_PORT_DOWN takes the interface
  administratively down or up (``LinuxPort.set_config``), which the link
  watcher then reports as LINK_DOWN / link up;
* fail modes: ``secure`` keeps forwarding with the installed flows when no
  controller is connected (packets for the controller are dropped, flows
  still expire); ``standalone`` hands frames to a MAC-learning bridge while
  no configured controller is connected and returns them to the pipeline as
  soon as one is (:mod:`kumoflow.switch.standalone` says exactly how).
  Clients of the passive listener do not count as controllers.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

from kumoflow import ofp

from .channel import Channels
from .linuxport import LinuxPort
from .standalone import LearningBridge
from .tunnelport import TunnelPort, underlays_for

log = logging.getLogger("kumoflow.switch")

FAIL_MODES = ("secure", "standalone")
NETLINK_ROUTE = 0
RTMGRP_LINK = 1
RTM_NEWLINK, RTM_DELLINK = 16, 17
_NLMSG = struct.Struct("=IHHII")


#: Generation-0 threshold of the garbage collector in a switch process
#: (Python's default is 700; see configure_gc).
GC_THRESHOLD0 = 10_000


def configure_gc() -> None:
    """The garbage-collector policy of a switch process (`kumoflow switch`
    calls it once, after its imports and before the switch starts; it is
    process-wide, so a library user of `Switch` decides for itself).

    * Everything alive at that point (modules, classes, the datapath) is
      moved out of the collector's sight (``gc.freeze()``, after a full
      collection): no later collection scans it again. The cost of
      freezing: an object frozen then that later becomes unreachable *in a
      reference cycle* is never reclaimed. Before any port, listener or
      channel exists, that is only what lives as long as the process.
    * The generation-0 threshold goes from 700 to GC_THRESHOLD0 (thresholds
      1 and 2 unchanged). Collections are triggered by the net growth of
      container objects, and installing flows is exactly that: with the
      default, every ~70,000 new containers (about 10,000 flow entries)
      Python considers a full collection, which visits every flow entry
      (~0.15 s at 100,000 entries) and which it runs whenever the heap has
      grown by a quarter: a 100,000-flow burst cost ~15 of them. With
      10,000, a burst of 100,000 flows triggers none and pays only the
      young collections. The price: cyclic garbage waits longer to be
      collected (up to 10,000 net new containers for the young generation,
      ~100x that before a full collection is considered), and a young
      collection scans up to 10,000 objects at a time (about a millisecond).
      Flow entries are not cyclic: a removed entry is freed by reference
      counting at once, whatever the thresholds.
    """
    gc.collect()
    gc.freeze()
    t0, t1, t2 = gc.get_threshold()
    gc.set_threshold(max(t0, GC_THRESHOLD0), t1, t2)


class Switch:
    def __init__(self, dpid: int, ports: dict[int, Any], *, controllers: list[str] = (),
                 listen: list[str] = (), n_tables: int = 64, n_buffers: int = 256,
                 fail_mode: str = "secure", echo_interval: float = 5.0, max_backoff: float = 8.0,
                 tick_interval: float = 0.5, poll_interval: float = 2.0,
                 status_file: str | None = None, datapath: Any = None, name: str | None = None,
                 qos: dict[int, Any] | None = None, tls: Any = None) -> None:
        """`ports`: OpenFlow port number -> interface name (a LinuxPort is made)
        or a ready port object (any PortBase, e.g. for tests). `name`: the switch's name,
        reported as the DESC reply's dp_desc (kumoflow.switch.NAME). `qos`: port number ->
        its rate and queues (kumoflow.switch.qos.PortQos). `tls`: kumoflow.tls.TlsContexts
        (client side) for ssl: controllers."""
        if fail_mode not in FAIL_MODES:
            raise ValueError(f"fail mode {fail_mode!r}: expected one of {', '.join(FAIL_MODES)}")
        if name is not None:
            from . import name_problem

            if problem := name_problem(name):
                raise ValueError(f"switch name {name!r}: {problem}")
        self.dpid = dpid
        self.name = name
        self.fail_mode = fail_mode
        self.controllers = list(controllers)
        self.listen = list(listen)
        self.tick_interval = tick_interval
        self.poll_interval = poll_interval
        self.status_file = Path(status_file) if status_file else None
        if datapath is None:
            from .datapath import Datapath

            datapath = Datapath(dpid=dpid, n_tables=n_tables, n_buffers=n_buffers, dp_desc=name or "")
        elif name is not None:
            datapath.dp_desc = name
        self.datapath = datapath
        self._port_specs = dict(ports)
        self._qos = dict(qos or {})
        unknown = sorted(set(self._qos) - set(self._port_specs))
        if unknown:
            raise ValueError(f"queues or a rate for port {unknown[0]}, which is not a port of the switch")
        #: port number -> the armed wake-up of its egress scheduler
        self._wakeups: dict[int, asyncio.TimerHandle] = {}
        self.ports: dict[int, Any] = {}
        self.channels = Channels(self.datapath, echo_interval=echo_interval, max_backoff=max_backoff,
                                 on_change=self._mode_changed, tls=tls)
        self.bridge = LearningBridge(self.ports)
        self.standalone = False
        self.listening: list[str] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []
        self._netlink: socket.socket | None = None
        self._readers: dict[int, int] = {}      # port number -> fd being read
        self.underlays: list[Any] = []           # the tunnel ports' shared sockets (tunnelport.Underlay)
        self._pending: list[Any] = []            # ports with frames queued for sending
        self._in_cycle = False
        self._flush_scheduled = False

    def __repr__(self) -> str:
        return f"<Switch dpid={self.dpid:#x}>"

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the ports, start listeners and controller channels. Raises
        PortError / OSError / ValueError without leaving anything open."""
        self.loop = asyncio.get_running_loop()
        self.datapath.on_async = self._on_async
        try:
            for port_no, spec in sorted(self._port_specs.items()):
                port = LinuxPort(port_no, spec) if isinstance(spec, str) else spec
                if isinstance(port, LinuxPort):
                    port.open()
                if port_no in self._qos:
                    port.set_qos(self._qos[port_no])
                self._attach_scheduler(port)
                self.ports[port_no] = port
                self.datapath.add_port(port)
                self._watch(port)
            self._open_underlays()
            self._open_netlink()
            for target in self.listen:
                for addr in await self.channels.listen(target):
                    self.listening.append(f"ptcp:{addr.port}:{addr.host}")
            for target in self.controllers:
                self.channels.connect(target)
        except BaseException:
            await self.stop()
            raise
        self._tasks.append(self.loop.create_task(self._tick_loop()))
        self._tasks.append(self.loop.create_task(self._poll_loop()))
        self._mode_changed()
        log.info("switch dpid=%#x running: %d ports, fail mode %s, controllers %s%s", self.dpid,
                 len(self.ports), self.fail_mode, ", ".join(self.controllers) or "none",
                 f", listening on {', '.join(self.listening)}" if self.listening else "")
        self._write_status()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.channels.close()
        for handle in self._wakeups.values():
            handle.cancel()
        self._wakeups.clear()
        if self.loop is not None:
            for fd in self._readers.values():
                self.loop.remove_reader(fd)
            if self._netlink is not None:
                self.loop.remove_reader(self._netlink.fileno())
        self._readers.clear()
        for underlay in self.underlays:
            if self.loop is not None and underlay.fileno() >= 0:
                self.loop.remove_reader(underlay.fileno())
            underlay.close()
        self.underlays = []
        if self._netlink is not None:
            self._netlink.close()
            self._netlink = None
        for port in self.ports.values():
            close = getattr(port, "close", None)
            if close is not None:
                close()
        if self.status_file is not None:
            try:
                self.status_file.unlink()
            except OSError:
                pass

    # --- frames ------------------------------------------------------------------------

    def _readable(self, port: Any) -> None:
        """One read cycle: a batch of frames from the port through the pipeline,
        then every port that has frames to send sends them."""
        frames = port.read_frames()
        if frames:
            self._in_cycle = True
            try:
                self.receive(port.port_no, frames)
            finally:
                self._in_cycle = False
                self._flush()
        if getattr(port, "rearm", False):
            self._rearm(port)

    def _open_underlays(self) -> None:
        """The tunnel ports' sockets: one per kind and local address, read like a port."""
        tunnels = [p for p in self.ports.values() if isinstance(p, TunnelPort)]
        self.underlays = underlays_for(tunnels)
        for port in tunnels:
            port.on_pending = self._tx_pending
        for underlay in self.underlays:
            underlay.open()
            self.loop.add_reader(underlay.fileno(), self._underlay_readable, underlay)

    def _underlay_readable(self, underlay: Any) -> None:
        """One read cycle of a tunnel underlay: its runs of frames (one port, one
        tunnel id each) through the pipeline, then every port sends what it got."""
        runs = underlay.read_runs()
        if runs:
            self._in_cycle = True
            try:
                for port, tunnel_id, frames in runs:
                    self.receive(port.port_no, frames, tunnel_id)
            finally:
                self._in_cycle = False
                self._flush()

    def _tx_pending(self, port: Any) -> None:
        """A port queued its first frame: flush it at the end of this read
        cycle, or soon when the frame came from elsewhere (packet-out, timer)."""
        self._pending.append(port)
        if not self._in_cycle and not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        for port in pending:
            port.flush()
            if getattr(port, "rearm", False):
                self._rearm(port)

    # --- egress schedulers ------------------------------------------------------------------

    def _attach_scheduler(self, port: Any) -> None:
        sched = getattr(port, "scheduler", None)
        if sched is None:
            return
        sched.on_wake = lambda when: self._wake_at(port, when)
        qos = port.qos
        log.info("port %d (%s): egress scheduler: %s (link speed %d kbit/s)", port.port_no,
                 getattr(port, "name", "?"), qos.describe(), port.curr_speed)
        if qos.rate_kbps is None:
            guaranteed = sum(q.min_kbps or 0 for q in qos.queues.values())
            if not port.curr_speed and guaranteed:
                log.warning("port %d: no port rate and the link reports no speed: nothing limits the port's "
                            "total, so min rates guarantee nothing (give --port-rate)", port.port_no)
            elif guaranteed > port.curr_speed:
                log.warning("port %d: the min rates add up to %d kbit/s, more than the link's %d kbit/s",
                            port.port_no, guaranteed, port.curr_speed)

    def _wake_at(self, port: Any, when: float) -> None:
        """The port's scheduler asks to run at `when` (its clock): one timer per port."""
        old = self._wakeups.pop(port.port_no, None)
        if old is not None:
            old.cancel()
        if self.loop is not None:
            delay = max(0.0, when - port.scheduler.clock())
            self._wakeups[port.port_no] = self.loop.call_later(delay, self._scheduler_due, port)

    def _scheduler_due(self, port: Any) -> None:
        """A scheduler's wake-up: send what is due, as one flush."""
        self._wakeups.pop(port.port_no, None)
        self._in_cycle = True
        try:
            port.scheduler.run()
        except Exception:
            log.exception("port %d: egress scheduler failed", port.port_no)
        finally:
            self._in_cycle = False
            self._flush()

    def _watch(self, port: Any) -> None:
        if hasattr(port, "fileno") and port.fileno() >= 0:
            if hasattr(port, "flush"):
                port.on_pending = self._tx_pending
            self.loop.add_reader(port.fileno(), self._readable, port)
            self._readers[port.port_no] = port.fileno()

    def _unwatch(self, port: Any) -> None:
        fd = self._readers.pop(port.port_no, None)
        if fd is not None and self.loop is not None:
            self.loop.remove_reader(fd)

    def _rearm(self, port: Any) -> None:
        """Re-add a port's reader: uvloop stops polling a socket after an
        error (ENETDOWN when the interface goes down), even once it is back up.
        The error is collected first: a reader re-added while it is still
        pending is stopped again after at most one read, and with frames
        arriving that read never finds the ring empty, the only time the
        port itself collects it (LinuxPort.take_error)."""
        take_error = getattr(port, "take_error", None)
        if take_error is not None:
            take_error()
        port.rearm = False
        if port.port_no in self._readers:
            self._unwatch(port)
            self._watch(port)

    def _reattach(self, port: Any) -> bool:
        """The port's interface was deleted and made again: a new socket on it."""
        self._unwatch(port)
        try:
            port.reopen()
        except Exception as exc:   # PortError: the next link event tries again
            log.warning("port %d (%s): cannot re-attach: %s", port.port_no, port.name, exc)
            return False
        log.info("port %d (%s): interface re-created; re-attached", port.port_no, port.name)
        self._watch(port)
        return True

    def receive(self, port_no: int, frames: list[bytes], tunnel_id: int = 0) -> None:
        """Frames that arrived on a port (with this tunnel id: a tunnel port's
        VNI or VSID): to the pipeline, or to the learning bridge while
        fail-standalone is in force."""
        if self.standalone:
            for frame in frames:
                try:
                    self.bridge.receive(port_no, frame, tunnel_id)
                except Exception:
                    log.exception("port %d: failed to process a %d-byte frame", port_no, len(frame))
            return
        try:
            self.datapath.receive_batch(port_no, frames, tunnel_id)
        except Exception:
            log.exception("port %d: failed to process a batch of %d frames", port_no, len(frames))

    def _on_async(self, msg: ofp.Message) -> None:
        self.channels.send_async(msg)

    # --- timers and link state ------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            try:
                self.datapath.tick(time.monotonic())
            except Exception:
                log.exception("datapath tick failed")

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            self._refresh_ports()
            self._read_stalled()

    def _read_stalled(self) -> None:
        """Re-arm and read the ports whose receive ring holds frames that no
        wake-up came for since the last poll: uvloop stops polling a socket on
        an error, and an error that a failed send collected (so `take_error`
        never sees it) left no trace but that (seen on VM ports as a topology
        comes up)."""
        for port in list(self.ports.values()):
            if getattr(port, "stalled", None) is not None and port.stalled():
                log.warning("%s: frames waiting in the receive ring without a wake-up; polling it again",
                            port.ifname)
                self._rearm(port)
                self._readable(port)

    def _open_netlink(self) -> None:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
            sock.bind((0, RTMGRP_LINK))
            sock.setblocking(False)
        except OSError as exc:
            log.warning("no netlink link events (%s); polling link state every %.0fs", exc, self.poll_interval)
            return
        self._netlink = sock
        self.loop.add_reader(sock.fileno(), self._netlink_readable)

    def _netlink_readable(self) -> None:
        """Any link event: every port re-reads its state (cheap, and it also
        catches a port's interface re-created under a new index)."""
        seen = False
        while True:
            try:
                data = self._netlink.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:          # ENOBUFS: events were lost; look at everything
                log.debug("netlink: %s", exc)
                seen = True
                # uvloop stops polling a socket that reported an error
                self.loop.remove_reader(self._netlink.fileno())
                self.loop.add_reader(self._netlink.fileno(), self._netlink_readable)
                break
            o = 0
            while o + _NLMSG.size <= len(data):
                length, kind = _NLMSG.unpack_from(data, o)[:2]
                if length < _NLMSG.size:
                    break
                seen = seen or kind in (RTM_NEWLINK, RTM_DELLINK)
                o += (length + 3) & ~3
        if seen:
            self._refresh_ports()

    def _refresh_ports(self) -> None:
        for port in list(self.ports.values()):
            self._port_maybe_changed(port)

    def _port_maybe_changed(self, port: Any) -> None:
        # an error left on the socket by the interface going down (and up
        # again, maybe, before this event was read): the reader was stopped on it
        take_error = getattr(port, "take_error", None)
        errored = take_error is not None and take_error()
        reattached = getattr(port, "replaced", False) and self._reattach(port)
        refresh = getattr(port, "refresh", None)
        changed = refresh is not None and (refresh() or reattached)
        if errored or changed and hasattr(port, "rearm"):
            self._rearm(port)
        if not changed:
            return
        down = bool(port.state & ofp.OFPPS.LINK_DOWN or port.config & ofp.OFPPC.PORT_DOWN)
        log.info("port %d (%s): link %s", port.port_no, getattr(port, "name", "?"), "down" if down else "up")
        if down:
            self.bridge.forget_port(port.port_no)
        try:
            self.datapath.port_changed(port.port_no)
        except Exception:
            log.exception("port %d: port_changed failed", port.port_no)

    # --- fail modes --------------------------------------------------------------------------

    def _mode_changed(self) -> None:
        connected = self.channels.controller_connected
        standalone = self.fail_mode == "standalone" and not connected
        if standalone != self.standalone:
            self.standalone = standalone
            self.bridge.clear()
            if standalone:
                log.info("no controller connected: forwarding as a learning switch (fail-standalone)")
            else:
                log.info("controller connected: forwarding with the OpenFlow pipeline")
        elif self.fail_mode == "secure" and not connected and self.loop is not None:
            log.info("no controller connected: forwarding with the installed flows (fail-secure)")
        self._write_status()

    def _write_status(self) -> None:
        """The status file tells the emulator the switch is up and whether it is connected."""
        if self.status_file is None or self.loop is None:
            return
        status = {
            "pid": os.getpid(),
            "dpid": self.dpid,
            "name": self.name,
            "state": "running",
            "connected": self.channels.controller_connected,
            "standalone": self.standalone,
            "listen": self.listening,
            "ports": {str(n): getattr(p, "name", "") for n, p in self.ports.items()},
        }
        tmp = self.status_file.with_name(f".{self.status_file.name}.tmp")
        try:
            tmp.write_text(json.dumps(status, indent=1) + "\n")
            os.replace(tmp, self.status_file)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.status_file, exc)


__all__ = ["Switch", "FAIL_MODES", "configure_gc"]
