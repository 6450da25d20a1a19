"""Egress queues at real rates, through the emulator: examples/queues.yaml
(h1 and h3 send to h2 through s1; s1's port 2 has a port rate of 20 Mbit/s,
queue 1 min 15 / max 20 Mbit/s, queue 2 max 20 Mbit/s), flows that put h1's
traffic in queue 1 and h3's in queue 2 (set_queue), and iperf3 between the
namespaces. What is asserted is what iperf3 reports:

* kumoflow, the port rate: one UDP stream offered at 40 Mbit/s and one TCP
  stream, alone, each come out at 20 Mbit/s +-10 % (on the wire: iperf3
  counts payload, so its rate is scaled by frame / payload size); what did
  not fit overran queue 1 (QUEUE_STATS tx_errors), and the port's
  tx_dropped counts the same frames; QUEUE_GET_CONFIG carries the rates;
* kumoflow, the min rate: h1's stream in queue 1 (UDP at 15 Mbit/s, then
  TCP) keeps at least 90 % of 15 Mbit/s while h3 floods queue 2 at
  60 Mbit/s, which overruns queue 2;
* Open vSwitch (netdev datapath) with the same file but queue 1 capped at
  5 Mbit/s: the port rate holds too (a linux-htb QoS row, tc HTB on the
  veth), but set_queue does not choose the HTB class in the userspace
  datapath: h1's stream, set to queue 1, still comes out at the port's
  20 Mbit/s, and queue 1 counts nothing (a departure, documented in
  docs/switch-runtime.md and ../shared/notes/qos.md).

Windows are generous (several seconds per stream) and nothing else is timed.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import time

import pytest

from kumoflow.net import Network, state
from kumoflow.net.topology import load_topology
from test_switch_support import EXAMPLES, ofctl, sh, wait_listening

pytestmark = [pytest.mark.root, pytest.mark.ovs]     # ovs-ofctl installs the flows on both kinds

QUEUES = EXAMPLES / "queues.yaml"
UDP_PAYLOAD = 1400
#: Ethernet + IPv4 + UDP headers: a UDP datagram of UDP_PAYLOAD bytes is a frame this much longer
UDP_OVERHEAD = 14 + 20 + 8
PORT_RATE, MIN_RATE = 20.0, 15.0           # Mbit/s, as in examples/queues.yaml


@pytest.fixture
def topo_name(unique_name):
    name = unique_name("q")
    yield name
    try:
        Network.teardown(name)
    except Exception as exc:
        print(f"teardown of {name}: {exc}", file=sys.stderr)
    state.remove(name)


class Iperf:
    """iperf3 streams to h2, each with a one-shot server of its own; every
    process is killed at the end, whatever happens."""

    def __init__(self, net: Network) -> None:
        self.net = net
        self.procs: list[subprocess.Popen] = []
        self.next_port = 5201

    def start(self, client: str, seconds: float, udp_mbps: float | None = None) -> tuple[subprocess.Popen, int]:
        server_ns = self.net.host("h2").netns
        port = self.next_port
        self.next_port += 1
        server = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-p", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(server)
        wait_listening(server_ns, port, server)
        argv = ["ip", "netns", "exec", self.net.host(client).netns, "iperf3", "-c", "10.0.0.2", "-p", str(port),
                "-t", str(seconds), "-J"]
        if udp_mbps is not None:
            argv += ["-u", "-b", f"{udp_mbps}M", "-l", str(UDP_PAYLOAD)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc, port

    @staticmethod
    def wire_mbps(proc: subprocess.Popen, timeout: float = 60) -> float:
        """What the receiver got, Mbit/s, as Ethernet frames (iperf3 counts payload)."""
        out, err = proc.communicate(timeout=timeout)
        report = json.loads(out or "{}")
        assert "error" not in report and "end" in report, f"iperf3: {report.get('error')} {err}"
        got = report["end"]["sum_received"]["bits_per_second"] / 1e6
        if report["start"]["test_start"]["protocol"] == "UDP":
            return got * (UDP_PAYLOAD + UDP_OVERHEAD) / UDP_PAYLOAD
        mss = report["start"].get("tcp_mss_default") or 1448
        return got * 1514 / mss                  # full-size segments of a 1500-byte MTU

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def up(name: str, kind: str, queues: tuple | None = None) -> tuple[Network, str]:
    """examples/queues.yaml with s1 of `kind` (and port 2's `queues`, when
    given, instead of the file's), no controller, and the flows: NORMAL for
    everything, h1 -> h2 on queue 1, h3 -> h2 on queue 2. Returns the
    network and ovs-ofctl's target for s1."""
    topo = load_topology(QUEUES)
    [s1] = topo.switches
    [port2] = s1.ports
    if queues is not None:
        port2 = dataclasses.replace(port2, queues=queues)
    topo = dataclasses.replace(topo, switches=(dataclasses.replace(s1, kind=kind, ports=(port2,)),))
    net = Network(topo, name=name, controllers=[])
    net.up()
    try:
        [sw] = state.read(name)["switches"]
        target = (f"tcp:127.0.0.1:{sw['listen'].split(':')[1]}" if kind == "kumoflow" else sw["bridge"])
        ofctl(target, "add-flow", "priority=0,actions=NORMAL")
        for src, queue in (("10.0.0.1", 1), ("10.0.0.3", 2)):
            ofctl(target, "add-flow", f"priority=10,ip,nw_src={src},nw_dst=10.0.0.2,actions=set_queue:{queue},output:2")
        assert net.ping("h1", "h2", retries=3) and net.ping("h3", "h2", retries=3)
    except BaseException:
        net.down()
        raise
    return net, target


def queue_stats(target: str) -> dict[int, dict[str, int]]:
    """ovs-ofctl queue-stats of port 2: {queue: {bytes, pkts, errors}}."""
    out = ofctl(target, "queue-stats", "2")
    return {int(q): {"bytes": int(b), "pkts": int(p), "errors": int(e)}
            for q, b, p, e in re.findall(r"queue (\d+): bytes=(\d+), pkts=(\d+), errors=(\d+)", out)}


def port_tx_dropped(target: str) -> int:
    return int(re.search(r"tx pkts=\d+, bytes=\d+, drop=(\d+)", ofctl(target, "dump-ports", "2")).group(1))


def within(value: float, goal: float, fraction: float) -> bool:
    return goal * (1 - fraction) <= value <= goal * (1 + fraction)


def test_kumoflow_port_rate_holds(topo_name):
    net, target = up(topo_name, "kumoflow")
    iperf = Iperf(net)
    try:
        udp, _ = iperf.start("h1", 8, udp_mbps=40)
        udp_rate = iperf.wire_mbps(udp)
        tcp, _ = iperf.start("h1", 8)
        tcp_rate = iperf.wire_mbps(tcp)
        print(f"port rate 20 Mbit/s: UDP {udp_rate:.2f}, TCP {tcp_rate:.2f} Mbit/s on the wire")
        assert within(udp_rate, PORT_RATE, 0.10), f"UDP offered at 40 Mbit/s came out at {udp_rate:.2f} Mbit/s"
        assert within(tcp_rate, PORT_RATE, 0.10), f"TCP came out at {tcp_rate:.2f} Mbit/s"
        # what did not fit was dropped by queue 1, and counted there and in the port
        stats = queue_stats(target)
        assert stats[1]["errors"] > 0 and port_tx_dropped(target) == sum(q["errors"] for q in stats.values())
        # QUEUE_GET_CONFIG: the rates, in tenths of a percent of the veth's 10 Gbit/s (15 Mbit/s
        # guaranteed: at least 0.1 %; at most 20 Mbit/s: 0.2 %)
        config = ofctl(target, "queue-get-config", "2")
        assert re.search(r"queue 1: min_rate:0\.1% max_rate:0\.2%", config), config
    finally:
        iperf.close()
        net.down()


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
def test_kumoflow_min_rate_holds_against_a_flood(topo_name, protocol):
    net, target = up(topo_name, "kumoflow")
    iperf = Iperf(net)
    try:
        flood, _ = iperf.start("h3", 12, udp_mbps=60)
        time.sleep(1)
        guarded, _ = iperf.start("h1", 8, udp_mbps=MIN_RATE if protocol == "udp" else None)
        rate = iperf.wire_mbps(guarded)
        flood_rate = iperf.wire_mbps(flood)
        print(f"queue 1 ({protocol}) {rate:.2f} Mbit/s, flood in queue 2 {flood_rate:.2f} Mbit/s over its run")
        assert rate >= 0.9 * MIN_RATE, (f"queue 1 ({protocol}) got {rate:.2f} Mbit/s against the flood "
                                        f"(which got {flood_rate:.2f} Mbit/s over its run)")
        stats = queue_stats(target)
        assert stats[2]["errors"] > 0 and stats[2]["pkts"] > 0, stats     # the flood overran queue 2
    finally:
        iperf.close()
        net.down()


def test_open_vswitch_port_rate_holds_but_set_queue_takes_queue_0(topo_name):
    # queue 1 capped at 5 Mbit/s: if set_queue chose it, h1 would get 5 Mbit/s, not the port's 20
    net, target = up(topo_name, "ovs", queues=((1, None, 5_000), (2, None, 20_000)))
    iperf = Iperf(net)
    try:
        ifname = net.plan.switches[0].ports[1].ifname
        classes = sh("tc", "class", "show", "dev", ifname).stdout
        # linux-htb: the root class 1:fffe at the port rate, queue N as class 1:(N+1)
        assert re.search(r"class htb 1:fffe root rate 20Mbit", classes), classes
        assert re.search(r"class htb 1:2 parent 1:fffe .* ceil 5Mbit", classes), classes
        udp, _ = iperf.start("h1", 8, udp_mbps=40)
        rate = iperf.wire_mbps(udp)
        print(f"Open vSwitch, port rate 20 Mbit/s, h1 set to queue 1 (max 5): UDP {rate:.2f} Mbit/s on the wire")
        # the port rate holds; queue 1's max does not: Open vSwitch's userspace datapath does not carry
        # the queue (the skb priority HTB classifies on) into the kernel, so HTB's default class,
        # queue 0, sent h1's frames (a departure). (Queue 0's counters are no witness: ovs-vswitchd
        # re-creates that class when it reconfigures, which zeroes them.)
        assert within(rate, PORT_RATE, 0.10), f"UDP offered at 40 Mbit/s came out at {rate:.2f} Mbit/s"
        assert queue_stats(target)[1]["pkts"] == 0
    finally:
        iperf.close()
        net.down()
