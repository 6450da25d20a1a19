"""Fail-standalone forwarding: a plain MAC-learning bridge.

With ``--fail-mode standalone`` the switch forwards on its own while no
controller is connected -- at start-up before the first controller answers,
after every controller is lost, and always when none is configured. What
this does, and how it differs from Open vSwitch:

* While standalone is active, frames received on the ports go to this
  bridge **instead of** the OpenFlow pipeline (as Open vSwitch's fail-open
  mode does with its hidden highest-priority NORMAL flow). The bridge
  installs no flow entries, so nothing has to be removed when a controller
  connects: from then on every frame goes through the pipeline again, with
  whatever flows the controller (or anyone before it) installed. The
  learned MAC table is forgotten on every change of mode.
* Learning: source MAC -> in-port (group addresses are never learned);
  entries age out after ``age`` seconds (300 by default, as in 802.1D and
  Open vSwitch); a MAC seen on another port moves there.
* Forwarding: to the learned port of a unicast destination, dropped when
  that is the in-port; otherwise flooded to every other port. Ports that
  are down (link or OFPPC_PORT_DOWN) and ``NO_FWD`` ports send nothing,
  ``NO_RECV`` ports take nothing in, ``NO_FLOOD`` ports get no flooded
  frames; frames to the 802.1D reserved group
  01:80:c2:00:00:00-0f (STP, LACP, LLDP, ...) are not forwarded.
* Only loop-free topologies work: there is no spanning tree.
* Port counters are updated by the ports themselves; flow and table
  counters do not move (no flow is used).
* Frames leave through the switch's one way out (:mod:`.egress`); a frame
  that came from a tunnel port keeps its tunnel id out to other tunnel
  ports, others leave them with tunnel id 0. The MAC table is one for all
  tunnel ids (no per-VNI learning: standalone is a fallback, not a tenant
  network).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

from kumoflow import ofp

from .egress import transmit
from .port import OFPPC_NO_FLOOD

DEFAULT_AGE = 300.0
_RESERVED = bytes.fromhex("0180c20000")
_UNUSABLE = ofp.OFPPC.PORT_DOWN | ofp.OFPPC.NO_FWD


class LearningBridge:
    def __init__(self, ports: Mapping[int, Any], age: float = DEFAULT_AGE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        #: port number -> port (a PortBase)
        self.ports = ports
        self.age = age
        self.clock = clock
        #: MAC (6 bytes) -> (port number, last seen)
        self.table: dict[bytes, tuple[int, float]] = {}
        self.flooded = 0
        self.forwarded = 0
        self.dropped = 0

    def clear(self) -> None:
        self.table.clear()

    def forget_port(self, port_no: int) -> None:
        """A port went down: forget what was learned behind it."""
        for mac in [m for m, (p, _) in self.table.items() if p == port_no]:
            del self.table[mac]

    def lookup(self, mac: bytes) -> int | None:
        entry = self.table.get(mac)
        if entry is None or self.clock() - entry[1] >= self.age:
            return None
        return entry[0]

    def receive(self, in_port: int, frame: bytes, tunnel_id: int = 0) -> None:
        if len(frame) < 14:
            self.dropped += 1
            return
        port = self.ports.get(in_port)
        if port is None or port.config & (ofp.OFPPC.PORT_DOWN | ofp.OFPPC.NO_RECV):
            self.dropped += 1
            return
        dst, src = frame[0:6], frame[6:12]
        if not src[0] & 1:
            self.table[src] = (in_port, self.clock())
        if dst[:5] == _RESERVED and dst[5] < 0x10:
            self.dropped += 1
            return
        if not dst[0] & 1:
            out = self.lookup(dst)
            if out is not None:
                target = self.ports.get(out)
                if out == in_port or target is None or not _usable(target):
                    self.dropped += 1
                    return
                transmit(target, frame, tunnel_id)
                self.forwarded += 1
                return
        self.flooded += 1
        for port_no, target in self.ports.items():
            if port_no != in_port and _usable(target) and not target.config & OFPPC_NO_FLOOD:
                transmit(target, frame, tunnel_id)


def _usable(port: Any) -> bool:
    return not port.config & _UNUSABLE and not port.state & (ofp.OFPPS.LINK_DOWN | ofp.OFPPS.BLOCKED)


__all__ = ["LearningBridge", "DEFAULT_AGE"]
