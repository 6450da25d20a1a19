"""The egress scheduler (switch/qos.py) on a fake clock: port rate, queue min
and max rates, backlog bounds, order, timers; the queues as OpenFlow reports
them (QUEUE_GET_CONFIG, QUEUE_STATS); set-queue through the pipeline and the
fast path into a scheduled port."""

from __future__ import annotations

import heapq
import struct

import pytest

from kumoflow import ofp
from kumoflow.ofp.consts import OFPP
from kumoflow.switch import egress
from kumoflow.switch.port import PC_NO_FWD, MemoryPort
from kumoflow.switch.qos import (BACKLOG_BYTES, BURST_SECONDS, MIN_WAIT, PortQos, QueueRates, qos_problems,
                                 rate_properties)

from test_switch_helpers import Clock, Rig, udp

KBPS = 125          # bytes/s per kbit/s


class TimedPort(MemoryPort):
    """A MemoryPort that writes down when each frame left."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.log: list[tuple[float, bytes]] = []
        self.tunnel_log: list[tuple[bytes, int]] = []

    def send(self, frame: bytes) -> None:
        self.log.append((self.clock(), bytes(frame)))
        super().send(frame)

    def send_tunnel(self, frame: bytes, tunnel_id: int) -> None:
        self.tunnel_log.append((bytes(frame), tunnel_id))
        self.send(frame)


def frame(queue: int, seq: int, size: int = 1000) -> bytes:
    """A frame that says which queue and which number it is, `size` bytes long."""
    return struct.pack("!II", queue, seq) + bytes(size - 8)


def shaped(qos: PortQos, clock: Clock | None = None, **kwargs) -> tuple[TimedPort, Clock, list]:
    clock = clock or Clock(0.0)
    port = TimedPort(2, "p2", clock=clock, **kwargs)
    port.set_qos(qos)
    wakes: list[float] = []
    if port.scheduler is not None:
        port.scheduler.on_wake = wakes.append
    return port, clock, wakes


def drive(port: TimedPort, clock: Clock, offers: dict[int, float], seconds: float, size: int = 1000) -> dict:
    """Offer `size`-byte frames on each queue at its rate (kbit/s) for `seconds`,
    running the scheduler whenever it asks to be woken; then let it drain
    (offers stop). Returns {queue: frames offered}."""
    sched = port.scheduler
    events = []
    offered = {}
    for q, kbps in offers.items():
        gap = size / (kbps * KBPS)
        n = int(seconds / gap)
        offered[q] = n
        for i in range(n):
            heapq.heappush(events, (clock.t + i * gap, q, i))
    while events or sched.wake_at is not None:
        if events and (sched.wake_at is None or events[0][0] <= sched.wake_at):
            t, q, i = heapq.heappop(events)
            clock.t = max(clock.t, t)
            egress.transmit(port, frame(q, i, size), 0, q)
        else:
            clock.t = max(clock.t, sched.wake_at)
            sched.run()
    return offered


def drain(port: TimedPort, clock: Clock) -> None:
    """Run the scheduler at each wake-up it asks for until it holds nothing."""
    while port.scheduler.wake_at is not None:
        clock.t = port.scheduler.wake_at
        port.scheduler.run()


def sent_by_queue(port: TimedPort) -> dict[int, list[tuple[float, int]]]:
    out: dict[int, list[tuple[float, int]]] = {}
    for t, f in port.log:
        q, seq = struct.unpack_from("!II", f)
        out.setdefault(q, []).append((t, seq))
    return out


def bytes_between(port: TimedPort, t0: float, t1: float, queue: int | None = None) -> int:
    return sum(len(f) for t, f in port.log
               if t0 <= t <= t1 and (queue is None or struct.unpack_from("!I", f)[0] == queue))


def worst_excess(port: TimedPort, kbps: int, queue: int | None = None) -> float:
    """The most any window [t_i, t_j] of sent frames carried above rate x (t_j - t_i), in bytes."""
    times = [(t, len(f)) for t, f in port.log if queue is None or struct.unpack_from("!I", f)[0] == queue]
    rate = kbps * KBPS
    worst = 0.0
    # max over j of (bytes up to j) - rate*t_j - min over i<=j of (bytes before i) - rate*t_i
    best_start = float("inf")
    total = 0
    for t, n in times:
        best_start = min(best_start, total - rate * t)
        total += n
        worst = max(worst, total - rate * t - best_start)
    return worst


# -- no scheduler, no change ----------------------------------------------------------------------------


def test_a_port_without_rates_has_no_scheduler_and_sends_at_once():
    port, clock, _ = shaped(PortQos(queues={1: QueueRates()}))
    assert port.scheduler is None and 1 in port.queues
    egress.transmit(port, frame(1, 0), 0, 1)
    egress.transmit_many(port, [frame(0, 1), frame(0, 2)], 2000)
    assert len(port.sent) == 3
    assert port.queue_counters[1].tx_packets == 1 and port.queue_counters[0].tx_packets == 2
    assert MemoryPort(3).scheduler is None


# -- the port rate -----------------------------------------------------------------------------------


@pytest.mark.parametrize("offer", [40_000, 200_000])
def test_port_rate_is_never_exceeded(offer):
    port, clock, _ = shaped(PortQos(rate_kbps=20_000))
    offered = drive(port, clock, {0: offer}, 2.0)
    rate = 20_000 * KBPS
    # any window: at most rate x window + the burst + one frame
    assert worst_excess(port, 20_000) <= rate * BURST_SECONDS + 1000 + 1e-6
    # and it is used: the first 2 s carry the rate, to within a burst and a frame
    sent = bytes_between(port, 0.0, 2.0)
    assert abs(sent - rate * 2.0) <= rate * BURST_SECONDS + 2000
    dropped = port.counters.tx_dropped
    assert dropped > 0 and port.queue_counters[0].tx_errors == dropped
    assert port.counters.tx_packets + dropped == offered[0]          # all held frames went in the end


def test_port_rate_follows_the_link_speed_without_a_port_rate():
    # queues with rates and no port rate: the queues share the link's speed (curr_speed, kbit/s)
    port, clock, _ = shaped(PortQos(queues={1: QueueRates(min_kbps=1_000)}), curr_speed=8_000)
    drive(port, clock, {1: 16_000}, 1.0)
    assert worst_excess(port, 8_000) <= 8_000 * KBPS * BURST_SECONDS + 1000
    assert bytes_between(port, 0.0, 1.0) >= 8_000 * KBPS * 0.98
    # the link's speed changes: the scheduler follows it
    port.log.clear()
    port.curr_speed = 4_000
    start = clock.t
    drive(port, clock, {1: 16_000}, 1.0)
    assert bytes_between(port, start + 0.1, start + 1.0) <= 4_000 * KBPS * 0.9 + 4_000 * KBPS * BURST_SECONDS + 1000


# -- queue rates -----------------------------------------------------------------------------------


def test_min_rate_is_guaranteed_against_a_flood_in_another_queue():
    qos = PortQos(rate_kbps=20_000, queues={1: QueueRates(min_kbps=15_000, max_kbps=20_000),
                                            2: QueueRates(max_kbps=20_000)})
    port, clock, _ = shaped(qos)
    offered = drive(port, clock, {1: 15_000, 2: 60_000}, 3.0)
    sent = sent_by_queue(port)
    # queue 1 offered its min rate: every frame went (none held back for the flood)
    assert len(sent[1]) == offered[1]
    assert port.queue_counters[1].tx_errors == 0
    # the flood takes what is left: 5 Mbit/s, and the port stays at 20
    q2 = bytes_between(port, 0.5, 3.0, queue=2)
    assert abs(q2 - 5_000 * KBPS * 2.5) <= 0.05 * 5_000 * KBPS * 2.5
    assert worst_excess(port, 20_000) <= 20_000 * KBPS * BURST_SECONDS + 1000
    assert port.queue_counters[2].tx_errors > 0


def test_min_rate_queue_waits_no_longer_than_a_frame_behind_the_flood():
    qos = PortQos(rate_kbps=20_000, queues={1: QueueRates(min_kbps=15_000), 2: QueueRates()})
    port, clock, _ = shaped(qos)
    drive(port, clock, {1: 10_000, 2: 60_000}, 2.0)
    # queue 1 (below its min) never builds a backlog: each of its frames leaves within
    # the time the port takes to earn one frame's tokens, plus the wake-up granularity
    sent = dict((seq, t) for t, seq in sent_by_queue(port)[1])
    gap = 1000 / (10_000 * KBPS)
    worst = max(t - seq * gap for seq, t in sent.items())
    assert worst <= 1000 / (20_000 * KBPS) + MIN_WAIT + 1e-9


def test_max_rate_is_enforced_even_with_the_port_idle():
    qos = PortQos(rate_kbps=20_000, queues={1: QueueRates(max_kbps=5_000)})
    port, clock, _ = shaped(qos)
    drive(port, clock, {1: 20_000}, 2.0)
    assert worst_excess(port, 5_000, queue=1) <= 5_000 * KBPS * BURST_SECONDS + 1000
    assert bytes_between(port, 0.0, 2.0) >= 5_000 * KBPS * 2.0 * 0.98


def test_a_queue_borrows_unused_capacity_up_to_its_max():
    qos = PortQos(rate_kbps=20_000, queues={1: QueueRates(min_kbps=2_000, max_kbps=12_000),
                                            2: QueueRates(min_kbps=2_000)})
    port, clock, _ = shaped(qos)
    drive(port, clock, {1: 40_000}, 2.0)
    q1 = bytes_between(port, 0.0, 2.0, queue=1)
    assert abs(q1 - 12_000 * KBPS * 2.0) <= 12_000 * KBPS * BURST_SECONDS + 2000
    # both flood: each gets its min, and they share the rest
    port.log.clear()
    start = clock.t
    drive(port, clock, {1: 40_000, 2: 40_000}, 2.0)
    q1 = bytes_between(port, start + 0.2, start + 2.0, queue=1)
    q2 = bytes_between(port, start + 0.2, start + 2.0, queue=2)
    assert q1 >= 2_000 * KBPS * 1.8 and q2 >= 2_000 * KBPS * 1.8
    assert abs((q1 + q2) - 20_000 * KBPS * 1.8) <= 0.03 * 20_000 * KBPS * 1.8
    assert q1 <= 12_000 * KBPS * 1.8 + 12_000 * KBPS * BURST_SECONDS + 1000


def test_unknown_queue_goes_as_the_default_queue():
    port, clock, _ = shaped(PortQos(rate_kbps=1_000, queues={1: QueueRates(max_kbps=500)}))
    egress.transmit(port, frame(9, 0), 0, 9)
    assert port.queue_counters[0].tx_packets == 1 and 9 not in port.queue_counters


# -- backlog, order, drops ---------------------------------------------------------------------------


def test_backlog_is_bounded_and_overruns_are_counted():
    port, clock, wakes = shaped(PortQos(rate_kbps=1_000))
    burst = int(1_000 * KBPS * BURST_SECONDS // 1000) + 1       # frames the full bucket lets through
    n = burst + BACKLOG_BYTES // 1000 + 50
    for i in range(n):
        egress.transmit(port, frame(0, i), 0, 0)
    frames, held = port.scheduler.backlog()[0]
    assert held <= BACKLOG_BYTES and frames == BACKLOG_BYTES // 1000
    dropped = n - frames - len(port.sent)
    assert dropped == 50 and port.counters.tx_dropped == 50 and port.queue_counters[0].tx_errors == 50
    stats = port.queue_counters[0]
    assert stats.tx_packets == len(port.sent)
    # what was held all goes, in order, when time allows
    drain(port, clock)
    seqs = [struct.unpack_from("!II", f)[1] for f in port.sent]
    assert seqs == sorted(seqs) and len(seqs) == n - 50
    assert port.counters.tx_packets == n - 50


def test_held_frames_keep_their_order_per_queue():
    qos = PortQos(rate_kbps=5_000, queues={1: QueueRates(min_kbps=1_000), 2: QueueRates(min_kbps=1_000)})
    port, clock, _ = shaped(qos)
    drive(port, clock, {0: 3_000, 1: 3_000, 2: 3_000}, 1.0, size=600)
    for q, sent in sent_by_queue(port).items():
        seqs = [seq for _, seq in sent]
        assert seqs == sorted(seqs), q


def test_no_timer_when_nothing_is_held():
    port, clock, wakes = shaped(PortQos(rate_kbps=10_000))
    # within the burst: straight out, no wake-up asked
    for i in range(5):
        egress.transmit(port, frame(0, i), 0, 0)
        clock.t += 0.01
    assert len(port.sent) == 5 and wakes == [] and port.scheduler.wake_at is None
    # over it: held, one wake-up asked, at least MIN_WAIT ahead
    for i in range(40):
        egress.transmit(port, frame(0, 100 + i), 0, 0)
    assert port.scheduler.held and len(wakes) == 1 and wakes[0] >= clock.t + MIN_WAIT
    held = port.scheduler.held
    drain(port, clock)
    assert port.scheduler.held == 0 and port.scheduler.wake_at is None
    # every wake-up sent something: no more of them than frames held
    count = len(wakes)
    assert count <= held
    clock.t += 5.0
    port.scheduler.run()
    assert len(wakes) == count          # idle: nothing more asked for


def test_batches_go_as_far_as_the_tokens_allow_and_the_rest_waits():
    port, clock, wakes = shaped(PortQos(rate_kbps=8_000))       # a 10 kB burst
    frames = [frame(0, i) for i in range(30)]
    egress.transmit_many(port, frames, 30_000)
    first = len(port.sent)
    assert 10 <= first <= 11 and port.scheduler.held == 30 - first and wakes
    drain(port, clock)
    assert [struct.unpack_from("!II", f)[1] for f in port.sent] == list(range(30))
    assert port.queue_counters[0].tx_packets == 30 and port.queue_counters[0].tx_bytes == 30_000


def test_a_tunnel_port_keeps_each_held_frames_tunnel_id():
    clock = Clock(0.0)
    port = TimedPort(7, "vx", clock=clock)
    port.tunnel = True
    port.set_qos(PortQos(rate_kbps=800))       # a 1 kB burst
    for i in range(4):
        egress.transmit(port, frame(0, i), 100 + i, 0)
    drain(port, clock)
    assert [tid for _, tid in port.tunnel_log] == [100, 101, 102, 103]


def test_held_frames_of_a_port_that_stopped_forwarding_are_dropped():
    port, clock, _ = shaped(PortQos(rate_kbps=800))
    for i in range(5):
        egress.transmit(port, frame(0, i), 0, 0)
    held = port.scheduler.held
    assert held == 3 and len(port.sent) == 2      # a 1 kB burst: one frame, and one more into debt
    port.set_config(PC_NO_FWD)
    drain(port, clock)
    assert port.counters.tx_dropped == held and len(port.sent) == 2


# -- configuration and what OpenFlow reports ------------------------------------------------------------


def test_qos_problems():
    assert qos_problems(PortQos(20_000, {1: QueueRates(15_000, 20_000), 2: QueueRates(max_kbps=5_000)})) == []
    assert qos_problems(PortQos(queues={1: QueueRates(min_kbps=0)})) == []
    [(q, what, why)] = qos_problems(PortQos(queues={1: QueueRates(30, 20)}))
    assert (q, what) == (1, "min") and "above max" in why
    [(q, what, why)] = qos_problems(PortQos(20_000, {1: QueueRates(15_000), 2: QueueRates(10_000)}))
    assert q is None and "add up to 25000" in why
    assert qos_problems(PortQos(0))[0][1] == "rate"
    assert qos_problems(PortQos(queues={1: QueueRates(max_kbps=0)}))[0][1] == "max"
    assert qos_problems(PortQos(queues={0xFFFFFFFF: QueueRates()}))[0][1] == "queue"


def test_rate_properties_in_tenths_of_a_percent_of_the_speed():
    speed = 100_000                               # 100 Mbit/s
    assert rate_properties(QueueRates(15_000, 20_000), speed) == [ofp.QueuePropMinRate(150),
                                                                   ofp.QueuePropMaxRate(200)]
    # above the speed: disabled (> 1000); only what is configured is reported
    assert rate_properties(QueueRates(max_kbps=200_000), speed) == [ofp.QueuePropMaxRate(0xFFFF)]
    assert rate_properties(QueueRates(min_kbps=100_000), speed) == [ofp.QueuePropMinRate(1000)]
    # rounded so that they stay true: a guarantee down, a cap up
    assert rate_properties(QueueRates(15_000, 15_000), 10_000_000) == [ofp.QueuePropMinRate(1),
                                                                       ofp.QueuePropMaxRate(2)]
    assert rate_properties(QueueRates(5_000, 40), 10_000_000) == [ofp.QueuePropMinRate(0), ofp.QueuePropMaxRate(1)]
    assert rate_properties(QueueRates(20_000, 20_000), 10_000_000) == [ofp.QueuePropMinRate(2),
                                                                       ofp.QueuePropMaxRate(2)]
    assert rate_properties(QueueRates(min_kbps=0), speed) == [ofp.QueuePropMinRate(0)]
    # no speed known: disabled
    assert rate_properties(QueueRates(1, 2), 0) == [ofp.QueuePropMinRate(0xFFFF), ofp.QueuePropMaxRate(0xFFFF)]


def _rig_with_queues() -> Rig:
    rig = Rig()
    p2 = rig.port(2)
    p2.curr_speed = 100_000
    p2.set_qos(PortQos(20_000, {1: QueueRates(15_000, 20_000), 2: QueueRates(max_kbps=500_000)}))
    return rig


def test_queue_get_config_reports_the_rates_on_the_wire():
    rig = _rig_with_queues()
    [reply] = rig.handle(ofp.QueueGetConfigRequest(port=2))
    raw = reply.pack()
    # header, port, pad; then per queue: queue_id, port, len, pad; properties: type, len, pad, rate, pad
    assert raw[8:16] == struct.pack("!I4x", 2)
    q0 = struct.pack("!IIH6x", 0, 2, 16)
    q1 = (struct.pack("!IIH6x", 1, 2, 48) + struct.pack("!HH4xH6x", 1, 16, 150)
          + struct.pack("!HH4xH6x", 2, 16, 200))
    q2 = struct.pack("!IIH6x", 2, 2, 32) + struct.pack("!HH4xH6x", 2, 16, 0xFFFF)
    assert raw[16:] == q0 + q1 + q2
    assert ofp.parse(raw).queues == reply.queues
    # the port's speed is the reference, read when asked: a faster link, smaller tenths
    rig.port(2).curr_speed = 1_000_000
    [reply] = rig.handle(ofp.QueueGetConfigRequest(port=2))
    assert reply.queues[1].properties == [ofp.QueuePropMinRate(15), ofp.QueuePropMaxRate(20)]
    rig.port(2).curr_speed = 10_000_000         # a veth: 15 Mbit/s is 1.5 tenths, guaranteed at least 1
    [reply] = rig.handle(ofp.QueueGetConfigRequest(port=2))
    assert reply.queues[1].properties == [ofp.QueuePropMinRate(1), ofp.QueuePropMaxRate(2)]
    # a link without a speed: the port rate is the reference
    rig.port(2).curr_speed = 0
    [reply] = rig.handle(ofp.QueueGetConfigRequest(port=2))
    assert reply.queues[1].properties == [ofp.QueuePropMinRate(750), ofp.QueuePropMaxRate(1000)]


def test_queue_stats_count_what_left_and_overruns_as_errors():
    rig = _rig_with_queues()
    rig.flow({"in_port": 1}, [ofp.SetQueue(1), ofp.Output(2)])
    rig.flow({"in_port": 3}, [ofp.SetQueue(2), ofp.Output(2)])
    frame1, frame3 = udp(payload=bytes(1000)), udp(ip_src="10.0.0.3", payload=bytes(1000))
    for _ in range(400):                      # one instant: the burst goes, the backlog fills, the rest drops
        rig.send(1, frame1)
        rig.send(3, frame3)
    sched = rig.port(2).scheduler
    assert sched.held
    body = {q.queue_id: q for q in rig.handle(ofp.QueueStatsRequest(port_no=2))[0].body}
    c = rig.port(2).counters
    assert body[1].tx_packets + body[2].tx_packets == c.tx_packets
    assert body[1].tx_errors + body[2].tx_errors == c.tx_dropped > 0
    held = sum(n for n, _ in sched.backlog().values())
    assert c.tx_packets + c.tx_dropped + held == 800
    raw = rig.handle(ofp.QueueStatsRequest(port_no=2))[0].pack()
    # ofp_queue_stats: port_no, queue_id, tx_bytes, tx_packets, tx_errors (after the 16-byte multipart header)
    entries = {struct.unpack_from("!I", raw, 16 + 40 * i + 4)[0]: struct.unpack_from("!QQQ", raw, 16 + 40 * i + 8)
               for i in range(3)}
    assert entries[1] == (body[1].tx_bytes, body[1].tx_packets, body[1].tx_errors)


@pytest.mark.parametrize("fastpath", [True, False])
def test_set_queue_reaches_the_scheduler_through_pipeline_and_fast_path(fastpath):
    rig = Rig(fastpath=fastpath)
    rig.port(2).set_qos(PortQos(queues={1: QueueRates(max_kbps=8_000)}))    # 10 kB burst for queue 1
    rig.flow({"in_port": 1}, [ofp.SetQueue(1), ofp.Output(2)])
    rig.flow({"in_port": 3}, [ofp.Output(2)])
    f1, f3 = udp(payload=bytes(958)), udp(ip_src="10.0.0.3", payload=bytes(958))
    assert len(f1) == 1000
    for _ in range(10):
        rig.send(1, f1)
    rig.dp.receive_batch(1, [f1] * 10)      # a read batch of set_queue frames: each replayed with its queue
    rig.dp.receive_batch(3, [f3] * 20)      # queue 0: unlimited, all at once (one batch)
    q = rig.port(2).queue_counters
    # queue 1 got its burst (10 frames; the 11th takes the bucket into debt) and holds the rest
    assert q[1].tx_packets == 11 and rig.port(2).scheduler.backlog()[1][0] == 9
    assert q[0].tx_packets == 20
    rig.clock.advance(1.0)
    rig.port(2).scheduler.run()
    assert q[1].tx_packets == 20
    if fastpath:
        stats = rig.dp.fastpath.stats()
        assert stats["emc_hits"] + stats["megaflow_hits"] >= 38


def test_packet_out_with_set_queue_is_scheduled():
    rig = _rig_with_queues()
    data = udp(payload=bytes(1000))
    rig.handle(ofp.PacketOut(actions=[ofp.SetQueue(1), ofp.Output(2)], data=data, in_port=OFPP.CONTROLLER))
    assert rig.port(2).queue_counters[1].tx_packets == 1


# -- the runtime and the command line ---------------------------------------------------------------------


def test_the_runtime_wakes_a_holding_scheduler_and_stops_when_idle():
    import asyncio

    from kumoflow.switch.runtime import Switch

    async def main():
        ports = {1: MemoryPort(1, "m1"), 2: MemoryPort(2, "m2")}
        switch = Switch(1, ports, qos={2: PortQos(rate_kbps=800)})     # 1 kB burst, 10 ms a frame
        await switch.start()
        try:
            switch.datapath.handle(ofp.FlowMod(match=ofp.Match(in_port=1),
                                               instructions=[ofp.ApplyActions([ofp.Output(2)])]))
            switch.receive(1, [udp(payload=bytes(958))] * 6)
            assert len(ports[2].sent) == 2 and 2 in switch._wakeups
            for _ in range(200):                  # 40 ms of frames: generous
                await asyncio.sleep(0.01)
                if len(ports[2].sent) == 6 and not switch._wakeups:
                    break
            assert len(ports[2].sent) == 6 and ports[2].scheduler.wake_at is None
            assert not switch._wakeups          # idle: no timer armed
        finally:
            await switch.stop()

    asyncio.run(main())


def test_switch_refuses_qos_for_a_port_it_does_not_have():
    from kumoflow.switch.runtime import Switch

    with pytest.raises(ValueError, match="port 3"):
        Switch(1, {1: MemoryPort(1)}, qos={3: PortQos(rate_kbps=10)})


def test_cli_parses_queues_and_port_rates():
    from kumoflow.switch.cli import parse_qos

    qos = parse_qos(["2:1:min=15000,max=20000", "2:2:max=5000", "3:0x7", "2:0:min=0"], ["2:20000"], [1, 2, 3])
    assert qos == {2: PortQos(20_000, {1: QueueRates(15_000, 20_000), 2: QueueRates(max_kbps=5_000),
                                       0: QueueRates(min_kbps=0)}),
                   3: PortQos(None, {7: QueueRates()})}
    assert not qos[3].scheduled and qos[2].scheduled
    assert parse_qos([], ["1:10"], [1]) == {1: PortQos(10)}


@pytest.mark.parametrize("queues, rates, message", [
    (["4:1:min=1"], [], "--queue 4:1:min=1: no port 4"),
    (["x:1"], [], "'x' is not a port number"),
    (["1"], [], "expected PORT:QUEUE"),
    (["1:q"], [], "'q' is not a queue id"),
    (["1:4294967295"], [], "queue id 4294967295 is out of range"),
    (["1:1", "1:1:max=5"], [], "queue 1 of port 1 is given twice"),
    (["1:1:rate=5"], [], "'rate=5': expected min=KBPS or max=KBPS"),
    (["1:1:min=5,min=6"], [], "min is given twice"),
    (["1:1:max=0"], [], "max 0 kbit/s is out of range 1.."),
    (["1:1:min=-1"], [], "min -1 kbit/s is out of range 0.."),
    (["1:1:max=1.5"], [], "max '1.5' is not a whole number"),
    (["1:1:min=20,max=10"], [], "port 1 queue 1: min 20 kbit/s is above max 10 kbit/s"),
    (["1:1:min=600", "1:2:min=600"], ["1:1000"], "port 1: the queues' min rates add up to 1200"),
    (["1:1:min=2000"], ["1:1000"], "min 2000 kbit/s is above the port rate"),
    ([], ["1"], "--port-rate 1: expected PORT:KBPS"),
    ([], ["1:0"], "rate 0 kbit/s is out of range"),
    ([], ["1:5", "1:6"], "port 1 has a rate already"),
    ([], ["9:5"], "no port 9"),
])
def test_cli_refuses_bad_queues_and_rates(queues, rates, message):
    from kumoflow.switch.cli import parse_qos

    with pytest.raises(ValueError) as info:
        parse_qos(queues, rates, [1, 2])
    assert message in str(info.value)


def test_describe():
    assert (PortQos(20_000, {2: QueueRates(max_kbps=5), 1: QueueRates(15, 20), 3: QueueRates()}).describe()
            == "rate 20000 kbit/s; queue 1 min 15 max 20; queue 2 max 5; queue 3")
    assert PortQos(queues={0: QueueRates(min_kbps=0)}).describe() == "rate: the link's speed; queue 0 min 0"


def test_kumoflow_switch_reports_a_bad_queue_before_opening_ports(caplog):
    import logging

    from kumoflow import cli

    with caplog.at_level(logging.ERROR):
        status = cli.main(["switch", "--port", "1=lo", "--port-rate", "1:1000", "--queue", "1:1:min=2000"])
    assert status == 2
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        "port 1 queue 1: min 2000 kbit/s is above the port rate 1000 kbit/s"]
