"""Egress queues that schedule: a port rate, and per queue a min and a max rate.

    qos = PortQos(rate_kbps=20_000, queues={1: QueueRates(min_kbps=15_000, max_kbps=20_000)})
    port.set_qos(qos)                 # port.scheduler: an EgressScheduler (None without any rate)
    transmit(port, frame, tid, qid)   # egress.py hands the port's frames to it
    port.scheduler.wake_at            # when it wants run() again (None: it holds nothing)
    port.scheduler.run()              # send what the rates now allow

Configuration (``kumoflow switch --port-rate PORT:KBPS --queue PORT:QUEUE:min=KBPS,max=KBPS``,
or a topology file's switch ``ports:``): rates in kbit/s (1,000 bit/s) of
Ethernet frame bytes as the switch sends them (no preamble, FCS or gap),
as Linux HTB and Open vSwitch's ``linux-htb`` count.

The port's *capacity* is what its queues share: the port rate when one is
given (Open vSwitch's QoS ``other_config:max-rate``), else the link's
current speed (``curr_speed``, re-read as the link changes: a veth says
10 Gbit/s), else -- a link without a speed and no port rate -- nothing
limits the total and min rates guarantee nothing.

Semantics (HTB's, with one level of classes under the port):

* every frame a port with a scheduler sends is charged to three token
  buckets, in bytes: the port's (refilled at the capacity), its queue's
  max bucket (at the queue's max rate; none without one), and, when the
  queue sends within its guarantee, its queue's min bucket (at its min
  rate; none without one, or with min 0);
* a queue whose min and max buckets hold tokens is *green*: it sends
  within its guarantee, before any other queue, whenever the port bucket
  holds tokens. A queue whose min bucket is empty but whose max bucket is
  not is *yellow*: it borrows capacity the green queues leave unused; its
  min bucket is not charged for that (as HTB does not charge a leaf's own
  rate when it borrows). Yellow queues take turns frame by frame (round
  robin; HTB shares in proportion to quantums). A queue with an empty max
  bucket waits;
* a bucket holds at most BURST_SECONDS of its rate (a bucket starts full)
  and a frame may go while the buckets it needs are not in debt, which it
  may put them in (a frame larger than the burst still goes). So over any
  interval T the port sends at most capacity x T + burst + one frame, and
  a queue at most max x T + its burst + one frame; a green queue offered
  no more than its min rate never waits for another queue's traffic
  (provided the min rates add up to no more than the capacity, which the
  configuration checks when the port rate is given);
* held frames go in order per queue (a new frame joins the back of its
  queue); each queue holds at most `limit` bytes (BACKLOG_BYTES, 256 KiB,
  at least one frame): a frame that does not fit is dropped and counted
  in the port's ``tx_dropped`` and the queue's ``tx_errors`` (the
  specification's "packets dropped due to overrun"). A queue's
  ``tx_packets``/``tx_bytes`` count frames as they are handed to the port;
* a frame set to a queue the port does not have goes (and counts) as
  queue 0's, the default queue (Open vSwitch's linux-htb sends frames of
  an unknown class to the default class likewise);
* a frame whose port can no longer send when its turn comes (down,
  NO_FWD, link down) is dropped and counted in ``tx_dropped``.

Timers: the scheduler never sleeps or polls. When it holds frames it asks
for a wake-up (``on_wake(when)``, set by the runtime; ``wake_at`` says
when) at the earliest moment one of them can go, at least MIN_WAIT
(1 ms) ahead, so a wake-up sends every frame that became due by then
rather than one at a time; ``run()`` sends them and asks again while
anything is held. With nothing held it asks for nothing. Every frame that
arrives while frames are held also runs it. Time comes from the injected
clock (the port's), as everywhere in the datapath.

A port without any rate has no scheduler (``port.scheduler is None``) and
its frames go as they always went: egress pays one attribute test.

QUEUE_GET_CONFIG (`rate_properties`): OFPQT_MIN_RATE / OFPQT_MAX_RATE
carry a rate "in 1/10 of a percent; >1000 -> disabled" (OpenFlow 1.3.5,
7.2.2), here of the port's speed (``curr_speed``, what PORT_DESC
reports; the port rate when the link reports no speed). A tenth of a
percent of a 10 Gbit/s veth is 10 Mbit/s, so the value is rounded the
way that keeps it true: a min rate down (the queue is guaranteed at least
that), a max rate up (it sends at most that); a rate above the speed is
reported as 0xFFFF (disabled, as OFPQ_MIN_RATE_UNCFG /
OFPQ_MAX_RATE_UNCFG). Only the rates configured are reported.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from kumoflow.ofp.consts import OFPQ_MAX_RATE_UNCFG, OFPQ_MIN_RATE_UNCFG
from kumoflow.ofp.structs import QueuePropMaxRate, QueuePropMinRate

from .port import PC_NO_FWD, PC_PORT_DOWN, PS_LINK_DOWN

__all__ = ["QueueRates", "PortQos", "EgressScheduler", "qos_problems", "rate_properties",
           "BACKLOG_BYTES", "BURST_SECONDS", "MIN_WAIT", "MAX_KBPS", "MAX_QUEUE_ID"]

#: bytes per second in one kbit/s
BYTES_PER_KBPS = 125
#: a token bucket holds at most this many seconds of its rate
BURST_SECONDS = 0.01
#: a wake-up is asked for at least this far ahead (no timer storms)
MIN_WAIT = 0.001
#: what one queue may hold, in bytes (always at least one frame)
BACKLOG_BYTES = 256 * 1024
#: rates are kbit/s in 32 bits, as OpenFlow's port speeds
MAX_KBPS = 0xFFFFFFFF
#: queue ids: 32 bits, but OFPQ_ALL
MAX_QUEUE_ID = 0xFFFFFFFE

_NO_OUTPUT = PC_PORT_DOWN | PC_NO_FWD


@dataclass(frozen=True, slots=True)
class QueueRates:
    """One queue's rates in kbit/s; None: not configured."""

    min_kbps: int | None = None
    max_kbps: int | None = None

    @property
    def rated(self) -> bool:
        return self.min_kbps is not None or self.max_kbps is not None


@dataclass(frozen=True)
class PortQos:
    """A port's rate (kbit/s; None: its link's speed) and queues (id -> rates)."""

    rate_kbps: int | None = None
    queues: dict[int, QueueRates] = field(default_factory=dict)

    @property
    def scheduled(self) -> bool:
        """Does the port need a scheduler (a port rate, or a queue with a rate)?"""
        return self.rate_kbps is not None or any(q.rated for q in self.queues.values())

    def describe(self) -> str:
        """``rate 20000 kbit/s; queue 1 min 15000 max 20000; queue 2`` (rates in kbit/s)."""
        parts = [f"rate {self.rate_kbps} kbit/s" if self.rate_kbps is not None else "rate: the link's speed"]
        for qid, q in sorted(self.queues.items()):
            rates = "".join(f" {name} {v}" for name, v in (("min", q.min_kbps), ("max", q.max_kbps)) if v is not None)
            parts.append(f"queue {qid}{rates}")
        return "; ".join(parts)


def qos_problems(qos: PortQos) -> list[tuple[int | None, str, str]]:
    """What is wrong with a port's configuration: (queue id or None, what, why)
    for each problem; empty when it is good. Checks ranges, min <= max, and
    that the min rates fit in the port rate when one is given."""
    problems: list[tuple[int | None, str, str]] = []
    if qos.rate_kbps is not None and not 1 <= qos.rate_kbps <= MAX_KBPS:
        problems.append((None, "rate", f"{qos.rate_kbps} kbit/s is out of range 1..{MAX_KBPS}"))
    for qid, q in sorted(qos.queues.items()):
        if not 0 <= qid <= MAX_QUEUE_ID:
            problems.append((qid, "queue", f"queue id {qid} is out of range 0..{MAX_QUEUE_ID}"))
        if q.min_kbps is not None and not 0 <= q.min_kbps <= MAX_KBPS:
            problems.append((qid, "min", f"{q.min_kbps} kbit/s is out of range 0..{MAX_KBPS}"))
        if q.max_kbps is not None and not 1 <= q.max_kbps <= MAX_KBPS:
            problems.append((qid, "max", f"{q.max_kbps} kbit/s is out of range 1..{MAX_KBPS}"))
        if q.min_kbps is not None and q.max_kbps is not None and q.min_kbps > q.max_kbps:
            problems.append((qid, "min", f"min {q.min_kbps} kbit/s is above max {q.max_kbps} kbit/s"))
        if q.min_kbps is not None and qos.rate_kbps is not None and q.min_kbps > qos.rate_kbps:
            problems.append((qid, "min", f"min {q.min_kbps} kbit/s is above the port rate "
                                         f"{qos.rate_kbps} kbit/s"))
    guaranteed = sum(q.min_kbps or 0 for q in qos.queues.values())
    if qos.rate_kbps is not None and guaranteed > qos.rate_kbps and not problems:
        problems.append((None, "min", f"the queues' min rates add up to {guaranteed} kbit/s, more than the "
                                      f"port rate {qos.rate_kbps} kbit/s: they cannot all be guaranteed"))
    return problems


def tenths_of_percent(rate_kbps: int, speed_kbps: int, disabled: int, up: bool) -> int:
    """A rate as OpenFlow's queue properties carry it, rounded down or `up`
    (module docstring)."""
    if speed_kbps <= 0 or rate_kbps > speed_kbps:
        return disabled
    if up:
        return -(-rate_kbps * 1000 // speed_kbps)
    return rate_kbps * 1000 // speed_kbps


def rate_properties(rates: QueueRates, speed_kbps: int) -> list:
    """The QUEUE_GET_CONFIG properties of a queue with these rates, on a port of this speed."""
    props: list = []
    if rates.min_kbps is not None:
        props.append(QueuePropMinRate(tenths_of_percent(rates.min_kbps, speed_kbps, OFPQ_MIN_RATE_UNCFG, False)))
    if rates.max_kbps is not None:
        props.append(QueuePropMaxRate(tenths_of_percent(rates.max_kbps, speed_kbps, OFPQ_MAX_RATE_UNCFG, True)))
    return props


class Bucket:
    """A token bucket in bytes: refilled at `rate` bytes/s up to `burst`; may
    go into debt (a frame may take it below zero)."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.burst = rate * BURST_SECONDS
        self.tokens = self.burst
        self.stamp = now

    def fill(self, now: float) -> float:
        if now > self.stamp:
            t = self.tokens + (now - self.stamp) * self.rate
            self.tokens = t if t < self.burst else self.burst
            self.stamp = now
        return self.tokens

    def set_rate(self, rate: float, now: float) -> None:
        self.fill(now)
        self.rate = rate
        self.burst = rate * BURST_SECONDS
        if self.tokens > self.burst:
            self.tokens = self.burst

    def wait(self) -> float:
        """Seconds until the bucket is out of debt (as of its last fill; a
        nanosecond more, so that a wake-up then finds it so despite rounding)."""
        return -self.tokens / self.rate + 1e-9 if self.tokens < 0 else 0.0


class _Queue:
    __slots__ = ("queue_id", "min", "max", "held", "held_bytes", "counters")

    def __init__(self, queue_id: int, rates: QueueRates, counters, now: float) -> None:
        self.queue_id = queue_id
        self.min = Bucket(rates.min_kbps * BYTES_PER_KBPS, now) if rates.min_kbps else None
        self.max = Bucket(rates.max_kbps * BYTES_PER_KBPS, now) if rates.max_kbps is not None else None
        self.held: deque = deque()        # (frame, tunnel id), oldest first
        self.held_bytes = 0
        self.counters = counters          # the port's QueueCounters of this queue


class EgressScheduler:
    """The egress scheduler of one port (see the module docstring)."""

    def __init__(self, port, qos: PortQos, clock=None, limit: int = BACKLOG_BYTES) -> None:
        self.port = port
        self.clock = clock or getattr(port, "clock", None) or time.monotonic
        self.rate_kbps = qos.rate_kbps           # None: the link's speed, read as it changes
        self.limit = limit
        now = self.clock()
        self._speed = self._capacity_kbps()
        self.port_bucket = Bucket(self._speed * BYTES_PER_KBPS, now) if self._speed else None
        self.queues: dict[int, _Queue] = {}
        for qid in sorted(set(port.queues) | set(qos.queues) | {0}):
            if qid not in port.queue_counters:
                port.add_queue(qid)
            self.queues[qid] = _Queue(qid, qos.queues.get(qid, QueueRates()), port.queue_counters[qid], now)
        self._order = list(self.queues.values())
        self._turn = 0                           # where the next round robin starts
        #: frames held in all queues
        self.held = 0
        #: when a wake-up was asked for (None: none pending)
        self.wake_at: float | None = None
        #: callable(when): ask the runtime to call run() at `when` (the clock's time)
        self.on_wake = None

    def _capacity_kbps(self) -> int:
        return self.rate_kbps if self.rate_kbps is not None else int(self.port.curr_speed)

    # -- what egress calls -------------------------------------------------------------------
    def enqueue(self, frame: bytes, tunnel_id: int, queue_id: int) -> None:
        """One frame for queue `queue_id` (egress.transmit)."""
        q = self.queues.get(queue_id) or self.queues[0]
        now = self.clock()
        if self.held:                            # others wait: take a place in line, then serve in order
            self._hold(q, frame, tunnel_id)
            self._run(now)
            return
        if self._may_send(q, now):
            self._charge(q, len(frame), q.min is not None and q.min.tokens >= 0)
            self._out(q, frame, tunnel_id)
            return
        self._hold(q, frame, tunnel_id)
        self._ask(now)

    def enqueue_many(self, frames: list, tunnel_id: int) -> None:
        """Frames of one flow for queue 0, in order (egress.transmit_many): those
        the buckets allow go to the port together, the rest are held."""
        q = self.queues[0]
        now = self.clock()
        i = 0
        if not self.held:
            n = len(frames)
            nbytes = 0
            while i < n and self._may_send(q, now):
                size = len(frames[i])
                self._charge(q, size, q.min is not None and q.min.tokens >= 0)
                nbytes += size
                i += 1
            if i:
                self._out_many(q, frames if i == n else frames[:i], nbytes, tunnel_id)
                if i == n:
                    return
        for frame in frames[i:] if i else frames:
            self._hold(q, frame, tunnel_id)
        self._run(now)

    def run(self, now: float | None = None) -> None:
        """Send what the rates allow now (the runtime's wake-up)."""
        self.wake_at = None
        self._run(self.clock() if now is None else now)

    # -- scheduling ---------------------------------------------------------------------------
    def _fill_port(self, now: float) -> bool:
        """Refill the port bucket; does it allow a frame?"""
        if self.rate_kbps is None:               # the link's speed: follow it
            speed = int(self.port.curr_speed)
            if speed != self._speed:
                self._speed = speed
                if not speed:
                    self.port_bucket = None
                elif self.port_bucket is None:
                    self.port_bucket = Bucket(speed * BYTES_PER_KBPS, now)
                else:
                    self.port_bucket.set_rate(speed * BYTES_PER_KBPS, now)
        b = self.port_bucket
        return b is None or b.fill(now) >= 0

    def _may_send(self, q: _Queue, now: float) -> bool:
        """Can q send a frame now, all else being equal (port and max buckets)?
        Refills q's min bucket too, for the caller's green test."""
        if not self._fill_port(now):
            return False
        if q.min is not None:
            q.min.fill(now)
        return q.max is None or q.max.fill(now) >= 0

    def _charge(self, q: _Queue, size: int, green: bool) -> None:
        if self.port_bucket is not None:
            self.port_bucket.tokens -= size
        if q.max is not None:
            q.max.tokens -= size
        if green:
            q.min.tokens -= size

    def _run(self, now: float) -> None:
        order = self._order
        count = len(order)
        while self.held and self._fill_port(now):
            pick = None
            green = False
            start = self._turn
            for k in range(count):               # green first: within their min rate
                q = order[(start + k) % count]
                if q.held and q.min is not None and q.min.fill(now) >= 0 and (q.max is None or q.max.fill(now) >= 0):
                    pick, green = q, True
                    break
            if pick is None:                     # then yellow: borrowing up to their max
                for k in range(count):
                    q = order[(start + k) % count]
                    if q.held and (q.max is None or q.max.fill(now) >= 0):
                        pick = q
                        break
            if pick is None:
                break
            self._turn = (order.index(pick) + 1) % count
            frame, tunnel_id = pick.held.popleft()
            size = len(frame)
            pick.held_bytes -= size
            self.held -= 1
            self._charge(pick, size, green)
            self._out(pick, frame, tunnel_id)
        if self.held:
            self._ask(now)

    def _ask(self, now: float) -> None:
        """Ask for a wake-up when the first held frame can go (at least MIN_WAIT ahead)."""
        b = self.port_bucket
        wait = b.wait() if b is not None else 0.0
        ready = min((q.max.wait() if q.max is not None else 0.0) for q in self._order if q.held)
        when = now + max(wait, ready, MIN_WAIT)
        if self.wake_at is None or when < self.wake_at:
            self.wake_at = when
            if self.on_wake is not None:
                self.on_wake(when)

    def _hold(self, q: _Queue, frame: bytes, tunnel_id: int) -> None:
        size = len(frame)
        if q.held and q.held_bytes + size > self.limit:
            q.counters.tx_errors += 1
            self.port.counters.tx_dropped += 1
            return
        q.held.append((frame, tunnel_id))
        q.held_bytes += size
        self.held += 1

    # -- to the port ------------------------------------------------------------------------
    def _out(self, q: _Queue, frame: bytes, tunnel_id: int) -> None:
        port = self.port
        if port.config & _NO_OUTPUT or port.state & PS_LINK_DOWN:
            port.counters.tx_dropped += 1
            return
        qc = q.counters
        qc.tx_packets += 1
        qc.tx_bytes += len(frame)
        if port.tunnel:
            port.send_tunnel(frame, tunnel_id)
        else:
            port.send(frame)

    def _out_many(self, q: _Queue, frames: list, nbytes: int, tunnel_id: int) -> None:
        port = self.port
        if port.config & _NO_OUTPUT or port.state & PS_LINK_DOWN:
            port.counters.tx_dropped += len(frames)
            return
        qc = q.counters
        qc.tx_packets += len(frames)
        qc.tx_bytes += nbytes
        if port.tunnel:
            port.send_tunnel_many(frames, tunnel_id)
        else:
            port.send_many(frames)

    def backlog(self) -> dict[int, tuple[int, int]]:
        """Per queue id: (frames, bytes) held."""
        return {q.queue_id: (len(q.held), q.held_bytes) for q in self._order}
