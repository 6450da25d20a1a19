"""The switch's one way out: every frame that leaves a port goes through here.

Three parts of the switch decide to send frames: the OpenFlow pipeline
(`Pipeline.send`), the fast path replaying a cached decision on a frame or
on a batch of one flow's frames (`FastPath._send`, `_send_many`), and the
fail-standalone learning bridge. All of them call `transmit` (one frame)
or `transmit_many` (frames of one flow, in order), which

* refuse output to a port that cannot forward -- administratively down
  (OFPPC_PORT_DOWN), NO_FWD, or its link down -- and count the frames in
  the port's ``tx_dropped``;
* on a port with an egress scheduler (``port.scheduler``: a port rate or
  a queue with a rate, :mod:`kumoflow.switch.qos`), hand them to it with
  their queue and tunnel id: it counts them in their queue and sends them
  to the port (below) as the rates allow, or holds or drops them. A port
  without one pays for this one attribute test, nothing else;
* count the frames in the queue they leave by (queue 0 unless a set-queue
  action chose another; a queue the port does not have is not counted);
* hand them to the port: ``send(frame)`` / ``send_many(frames)``, or for a
  tunnel port (``port.tunnel``) ``send_tunnel(frame, tunnel_id)`` /
  ``send_tunnel_many(frames, tunnel_id)``, which put the frames in their
  outer headers with that tunnel id (the VXLAN VNI, the NVGRE GRE key).

The tunnel id is the packet's ``tunnel_id`` field at output: the one it
arrived with (a frame from a non-tunnel port has 0) unless a set-field
changed it. A frame that reaches a tunnel port with tunnel id 0 leaves
with VNI 0 / GRE key 0 (as Open vSwitch's ``key=flow`` tunnel ports send
it); a tunnel id the header cannot carry is the port's business (see
:mod:`kumoflow.switch.encap`).

The port counts what it transmits (``tx_packets``/``tx_bytes``) or fails
to (``tx_dropped``/``tx_errors``), since only it knows (see :mod:`.port`).
"""

from __future__ import annotations

from .port import PC_NO_FWD, PC_PORT_DOWN, PS_LINK_DOWN

_NO_OUTPUT = PC_PORT_DOWN | PC_NO_FWD


def transmit(port, frame: bytes, tunnel_id: int = 0, queue_id: int = 0) -> None:
    """Send one frame out of `port` (see the module docstring)."""
    if port.config & _NO_OUTPUT or port.state & PS_LINK_DOWN:
        port.counters.tx_dropped += 1
        return
    if port.scheduler is not None:
        port.scheduler.enqueue(frame, tunnel_id, queue_id)
        return
    qc = port.queue_counters.get(queue_id)
    if qc is not None:
        qc.tx_packets += 1
        qc.tx_bytes += len(frame)
    if port.tunnel:
        port.send_tunnel(frame, tunnel_id)
    else:
        port.send(frame)


def transmit_many(port, frames: list, nbytes: int, tunnel_id: int = 0) -> None:
    """Send frames (of `nbytes` in all) out of `port` in order, on queue 0."""
    if port.config & _NO_OUTPUT or port.state & PS_LINK_DOWN:
        port.counters.tx_dropped += len(frames)
        return
    if port.scheduler is not None:
        port.scheduler.enqueue_many(frames, tunnel_id)
        return
    qc = port.queue_counters.get(0)
    if qc is not None:
        qc.tx_packets += len(frames)
        qc.tx_bytes += nbytes
    if port.tunnel:
        port.send_tunnel_many(frames, tunnel_id)
    else:
        port.send_many(frames)


__all__ = ["transmit", "transmit_many"]
