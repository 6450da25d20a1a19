#!/usr/bin/env python3
"""Switch forwarding: the kumoflow switch vs Open vSwitch's userspace datapath.

    sudo .venv/bin/python benchmarks/switch/bench_switch.py            # everything, ~15 minutes on an idle machine
    sudo .venv/bin/python benchmarks/switch/bench_switch.py --quick    # under a minute: a smoke test, not a figure
    sudo .venv/bin/python benchmarks/switch/bench_switch.py --repeat 1 --window 2 --trial 2 --tcp-seconds 2 \
        --rules 10000                                                  # one search of each, ~4 minutes
    sudo .venv/bin/python benchmarks/switch/bench_switch.py --only pps,tcp --rules 0

Each switch joins two emulated hosts (namespaces) on veth links of their
own, made the same way (_bench_switch_net.py: offloads off, as the emulator
leaves them): Open vSwitch as a bridge with ``datapath_type=netdev`` (the
userspace datapath; no kernel module), kumoflow as ``kumoflow switch`` with
its default configuration, and, for packet rate, the bare Python copy loop
(_bench_switch_loop.py). All are up at once; measurements of the arms are
interleaved, trial by trial, so that background load and the host's speed,
which both drift, hit all of them alike, and each figure is reported with
its ratio kumoflow / Open vSwitch.

Arrangement (two CPUs: one for the hosts, one for the switch under test):

CPU 0    the generator, iperf3, ping, this script and every command it runs,
         and the input of the hosts' eth0.
CPU 1    the switch: every thread of ovs-vswitchd (``taskset -a``; the
         original affinities are put back at the end, also on failure or
         ^C, and by ``--sweep`` after a kill), the kumoflow switch and the
         loop (``taskset -c 1``), and the input of the switch's ports.

"Input" is the kernel's receive processing of a frame that arrives on an
interface: for a switch port, delivery into the switch's packet socket or
ring. A veth does it on the *sender's* CPU, inside the sender's transmit
call, so by default the generator pays for the switch's input (and the
switch for host b's). Here each switch port's input runs in a NAPI kernel
thread pinned to CPU 1 (``--ingress napi``): with GRO on, a veth receives
through NAPI (the sender only puts the frame on the receiver's 256-frame
ring and wakes the poll), and ``/sys/class/net/IF/threaded`` runs that poll
in a kernel thread of its own, which the script pins to CPU 1 and makes
SCHED_FIFO (``--napi-fifo 50``) so that it preempts the switch the way a
NIC's softirq would: a switch pays for its own input, in batches, as with
a NIC whose interrupts go to the switch's CPU. The hosts' eth0 get the same
treatment on CPU 0. GRO merges nothing here (UDP, no UDP GRO forwarding),
but it would merge TCP segments into 64 kB packets that no userspace switch
can forward as frames, so for tcp and ping the switch ports run with GRO
off (their input then on the sender's CPU, CPU 0).

Why not RPS (``--ingress rps``, which writes ``rps_cpus`` of the switch
ports, mask of CPU 1, and of the hosts' eth0, CPU 0): it does take effect
on a veth in this kernel (softnet_stat: CPU 1's backlog takes in every
frame), but it hands frames over one at a time and raises an
inter-processor interrupt whenever the target's backlog is idle: 254,289
RPS interrupts for 733,575 frames in one sink run. In this VM (nested
virtualization) an IPI is expensive for both sides: the paced generator
used up to 91% of CPU 0 to offer 135,000 frames/s into a switch (35-43%
at 141,000-185,000 frames/s with NAPI threads), and under overload the
softirq starves the switch (livelock). Its results on 2026-11-28 (one
search of each, 2 s trials, 10,000 rules: what --quick was then):
ovs 81,531, kumoflow 110,365, loop 100,841 frames/s, a kumoflow/OVS ratio
close to the NAPI one (1.35x vs 1.36x). ``--ingress sender`` is no
steering at all (the generator pays the switch's input, the switch pays
host b's).

Host b's input (the sink: frames are addressed to a MAC host b does not
own, counted in rx_packets and dropped at once as PACKET_OTHERHOST, see
sink_mac) is taken in on CPU 0 too, so that the sink's work is not charged
to the switch, whose transmit then ends where a NIC's would: at the
hand-over (a frame on the ring, now and then a wake-up of the host's NAPI
thread). What it saves the switch is small and depends on the switch's
batches: a stand-in switch (_bench_switch_gen.py on CPU 1 sending into host
b through the switch's port at 100,000 frames/s, medians of 3) spent 2.4
µs of CPU per frame with 64-frame bursts (2.9 with host b's input on its
own CPU), 3.0 with 16-frame bursts (3.0), 6.1 with 4-frame bursts (5.7).
``--no-steer-hosts`` leaves the hosts' input on the sender's CPU.

Figures (--only picks some: ceiling, pps, tcp, ping, rules, install, profile):

ceiling  the generator's own rate, flat out, into a sink pair in the same
         arrangement (a veth pair with no switch: its input on CPU 1,
         dropped by the root namespace). Also the upper bound of the search.
pps      throughput, RFC 2544 style: the highest rate of 64-byte UDP frames
         (16 flows) that the switch forwards with loss <= --loss (0.1%).
         A trial: _bench_switch_gen.py in host a, pinned to CPU 0, offers
         --trial (3) seconds of frames paced at a rate (sendmmsg bursts of
         at most 64 frames every 200 µs or so; one frame per flow first, so
         the switch's caches are warm); the script waits --drain (0.25) s
         and counts rx_packets of host b's eth0; loss = 1 - received /
         offered, where offered counts the frames the kernel refused
         because the switch port's ring was full (that is the switch's
         loss too). Rates are what the generator actually sent, which it
         reports with its own CPU use. The search starts at a quarter of
         the generator ceiling (later repeats: at the arm's last result),
         steps by 1.5x (later: 1.05x; squared after each step the same
         way) until a trial passes and one fails, then bisects until the
         failing rate is within --precision (2%) of the passing one; the
         result is the highest passing rate. Trials of the three arms are
         interleaved; --repeat searches, median and range reported.
         Before it, "overload": each arm flooded flat out for --window
         seconds, forwarded rate reported (with the NAPI threads at FIFO
         priority the input starves the switch, so this is receive
         livelock, not a capacity; kept for reference).
tcp      iperf3 -c (host a) to iperf3 -s (host b), -t 5: received bit rate.
ping     ping -c 50 -i 0.01 a -> b after 3 warm-up pings: mean and median RTT;
         then ping -c 200 -i 0.001. At 10 ms apart each ping finds the switch
         asleep, and on this VM waking it (and its cold caches) costs more
         than the forwarding; 1 ms apart shows more of the forwarding itself.
         The bare loop is pinged too (the floor).
rules    throughput and tcp again with 10,000 and 100,000 wildcard rules of
         ~40 shapes installed (_bench_switch_rules.py: above the forwarding
         rules in priority, matching none of the traffic).
install  flow installation: the 100,000-rule file through
         ``ovs-ofctl -O OpenFlow13 add-flows`` (wall time of the command;
         Open vSwitch through its bridge's management socket, kumoflow
         through its passive listener), and the same flows from kumoflow's
         controller (_bench_switch_ctl.py: flow-mods + barrier, timed to the
         barrier reply; median of --repeat runs, the arms interleaved, as
         single runs varied by 1.7x); flow counts checked (dump-aggregate)
         while the controller still holds the switch.
profile  (not in the default set) py-spy samples the kumoflow switch while
         it forwards at 90% of its throughput; the time per frame by where
         it goes (_bench_switch_profile.py).

The generator is not the bottleneck, and the report says by how much: its
flat-out ceiling against the highest throughput, and the most CPU the
generator used in any passing trial that gave a figure. A search that ends
because the generator could not offer more is flagged "generator-bound".

The machine may be shared: before each measurement the script waits (up
to --idle-wait s) for it to be idle, and a measurement during which other
processes used more than --foreign (0.1) of a CPU is taken again (up to
--attempts times; the cleanest one counts; "foreign" in the JSON). A
switch of ours that keeps a CPU busy for 5 s with no traffic is recorded as
an incident (with a py-spy dump) and restarted with its rules. Everything
made is removed at the end, also on failure or ^C (_bench_switch_net.Lab);
``--sweep`` removes leftovers of a killed run (do not run it while another
run is going: it removes every kfb* namespace, link and bridge).

Caveats. The two vCPUs are not independent: with both busy each runs at
~60-75% of its speed alone, and a busy vCPU stalls for ~8 ms at a time (the
host time-slices them), so the generator's load slows the switch a little
and a switch sees an occasional burst; the host's speed also drifts over an
hour (by up to 2x). Absolute rates are for this machine and moment; the
ratios, from interleaved trials, are the figures. Open vSwitch runs with
its defaults, including a 212,992-byte socket buffer per port (about 270
queued 64-byte frames; kumoflow's ring holds 1,024), which loses frames in
bursts before its CPU is saturated. Frames taken in through a NAPI poll
with GRO on arrive with their checksums checked (CHECKSUM_UNNECESSARY, as
from a NIC with receive checksum offload), which a packet socket reports as
TP_STATUS_CSUM_VALID and, with a virtio-net header,
VIRTIO_NET_HDR_F_DATA_VALID; a switch whose fast path expects an all-zero
header (kumoflow's ring reader, at the time of writing) takes a slower path
for them. Another run on the same ovs-vswitchd (another bench_switch.py,
tests) is invisible to the foreign-load check for the Open vSwitch arm; do
not overlap runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))                             # benchmarks/: benchlib

import benchlib  # noqa: E402
from benchlib import (REPO, cpu_busy, cpu_seconds, cpu_times, cpus_busy, fmt_rate, free_port,  # noqa: E402
                      median_of, ratio, rss_kib)
import _bench_switch_profile as bench_switch_profile  # noqa: E402
import _bench_switch_rules as rules_mod  # noqa: E402
from _bench_switch_net import (HOST_CPU, SWITCH_CPU, Lab, Pair, napi_threads, sh, softnet, sweep,  # noqa: E402
                              thread_affinity, wait_for)

#: what the smoke test (tests/integration/test_benchmarks.py) marks this benchmark's quick run with
REQUIRES = ("root", "ovs")
PY = sys.executable
OVS_PIDFILE = "/var/run/openvswitch/ovs-vswitchd.pid"
GEN_CPU = str(HOST_CPU)
ON_SWITCH_CPU = ["taskset", "-c", str(SWITCH_CPU)]
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- machine ------------------------------------------------------------------------------


def process_cpu(ours: set[int]) -> dict[int, float]:
    """CPU seconds used so far by each user process but this one, its helpers
    and `ours` (kernel threads are left out too)."""
    seen = {}
    skip = ours | {os.getpid()}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] in ("0", "2") or int(fields[1]) == os.getpid():   # kernel threads; our own commands
            continue
        seen[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return seen


def foreign(before: dict[int, float], after: dict[int, float], seconds: float) -> float:
    """CPUs' worth of other people's work between two process_cpu() snapshots.
    A busy process that ended in between counts as a whole CPU (unknown share)."""
    used = sum(t - before.get(pid, 0.0) for pid, t in after.items())
    if any(t > 0.5 and pid not in after for pid, t in before.items()):
        used += seconds
    return round(used / seconds, 3)


def machine() -> dict:
    return benchlib.machine(tools=(("ovs-vswitchd", "--version"), ("iperf3", "--version")))


# --- the switches ------------------------------------------------------------------------


class Arm:
    """One switch between the hosts of its own pair."""

    name = "?"
    pid = 0
    restartable = False

    def log_tail(self) -> str:
        return ""

    def restart(self) -> None:
        pass

    def __init__(self, lab: Lab, pair: Pair) -> None:
        self.lab, self.pair = lab, pair

    def ofctl(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return sh("ovs-ofctl", "-O", "OpenFlow13", *args[:1], self.target, *args[1:], timeout=timeout)

    def forward(self) -> None:
        self.ofctl("del-flows")
        for line in rules_mod.FORWARD:
            self.ofctl("add-flow", line)
        self.rules_file = None

    def add_flows(self, path: str) -> float:
        start = time.perf_counter()
        self.ofctl("add-flows", path)
        self.rules_file = path
        return time.perf_counter() - start

    rules_file: str | None = None

    def reinstall(self) -> None:
        """After a restart: the forwarding rules, and the rule file last added."""
        path = self.rules_file
        self.forward()
        if path:
            self.ofctl("add-flows", path)
            self.rules_file = path

    def flow_count(self) -> int:
        out = self.ofctl("dump-aggregate").stdout
        return int(out.split("flow_count=")[1].split()[0])


class OvsArm(Arm):
    name = "ovs"

    def __init__(self, lab: Lab, pair: Pair) -> None:
        super().__init__(lab, pair)
        self.bridge = lab.ovs_bridge(pair)
        self.target = self.bridge
        self.pid = int(Path(OVS_PIDFILE).read_text())

    def connect(self, port: int) -> None:
        sh("ovs-vsctl", "--timeout=10", "set-controller", self.bridge, f"tcp:127.0.0.1:{port}")

    def disconnect(self) -> None:
        sh("ovs-vsctl", "--timeout=10", "del-controller", self.bridge)


class KumoflowArm(Arm):
    name = "kumoflow"
    restartable = True

    def log_tail(self) -> str:
        try:
            return self.log.read_text()[-1500:]
        except OSError:
            return ""

    def __init__(self, lab: Lab, pair: Pair, tmp: Path) -> None:
        super().__init__(lab, pair)
        self.tmp = tmp
        self.proc = None
        self.start()

    def start(self, controller: int | None = None) -> None:
        status = self.tmp / f"{self.pair.tag}.json"
        status.unlink(missing_ok=True)
        self.log = self.tmp / f"{self.pair.tag}.log"
        argv = ON_SWITCH_CPU + [PY, "-m", "kumoflow.cli", "switch", "--dpid", "0x2", "--port", f"1={self.pair.port_a}",
                "--port", f"2={self.pair.port_b}", "--listen", "ptcp:0:127.0.0.1", "--status-file", str(status)]
        if controller:
            argv += ["--controller", f"tcp:127.0.0.1:{controller}"]
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
        with open(self.log, "ab") as log:
            self.proc = self.lab.start(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        if not wait_for(lambda: status.exists() and json.loads(status.read_text() or "{}").get("listen"), 20):
            raise RuntimeError(f"the kumoflow switch did not start; see {self.log}")
        listen = json.loads(status.read_text())["listen"][0]          # ptcp:PORT:HOST
        self.target = f"tcp:127.0.0.1:{listen.split(':')[1]}"
        self.pid = self.proc.pid

    def restart(self, controller: int | None = None) -> None:
        self.lab.stop(self.proc)
        self.start(controller)

    def connect(self, port: int) -> None:
        self.restart(controller=port)

    def disconnect(self) -> None:
        self.restart()


class LoopArm(Arm):
    name = "loop"
    restartable = True

    def __init__(self, lab: Lab, pair: Pair) -> None:
        super().__init__(lab, pair)
        self.start()

    def start(self) -> None:
        self.proc = self.lab.start(ON_SWITCH_CPU + [PY, str(HERE / "_bench_switch_loop.py"), self.pair.port_a,
                                                    self.pair.port_b], stdout=subprocess.DEVNULL)
        self.pid = self.proc.pid
        time.sleep(0.3)

    def restart(self) -> None:
        self.lab.stop(self.proc)
        self.start()

    def forward(self) -> None:
        pass


# --- the measurements -----------------------------------------------------------------------


class Bench:
    def __init__(self, args, lab: Lab) -> None:
        self.args, self.lab = args, lab
        self.idle_interval = 0.1 if args.quick else 0.5     # how long idle() watches the machine at a time
        self.arms: list[Arm] = []           # watched while idle (see idle())
        self.incidents: list[dict] = []

    def idle(self) -> float:
        """Wait (at most --idle-wait s) until the machine is idle; a switch of ours
        that keeps a CPU busy with no traffic is recorded as an incident and restarted."""
        interval = self.idle_interval
        end = time.monotonic() + self.args.idle_wait
        spinning: dict[str, int] = {}
        while True:
            arms = [a for a in self.arms if a.restartable]
            c0 = {a.name: cpu_seconds(a.pid) for a in arms}
            busy = cpu_busy(interval)
            for arm in arms:
                used = (cpu_seconds(arm.pid) - c0[arm.name]) / interval
                spinning[arm.name] = spinning.get(arm.name, 0) + 1 if used > 0.5 else 0
                if spinning[arm.name] * interval >= 5:
                    try:
                        stack = sh(self.args.py_spy, "dump", "--pid", str(arm.pid), check=False).stdout
                    except OSError as exc:
                        stack = f"py-spy: {exc}"
                    self.incidents.append({"arm": arm.name, "cpu_while_idle": round(used, 2),
                                           "time": time.strftime("%H:%M:%S"), "py_spy_dump": stack[-3000:],
                                           "log_tail": arm.log_tail()})
                    print(f"  !! {arm.name} kept {used:.2f} CPU busy for 5 s with no traffic; restarting it",
                          flush=True)
                    arm.restart()
                    arm.reinstall()
                    spinning[arm.name] = 0
            if busy <= self.args.foreign or time.monotonic() >= end:
                return round(busy, 3)

    def clean(self, measure, *args) -> dict:
        """Run a measurement until no other process used more than --foreign of a
        CPU during it (at most --attempts times); the cleanest run counts."""
        best = None
        for _ in range(self.args.attempts):
            self.idle()
            result = measure(*args)
            if best is None or result["foreign"] < best["foreign"]:
                best = result
            if result["foreign"] <= self.args.foreign:
                break
        return best

    def gen(self, pair: Pair, seconds: float, rate: float = 0) -> subprocess.Popen:
        """_bench_switch_gen.py in host a, on the host CPU: flat out, or paced at `rate`."""
        argv = ["ip", "netns", "exec", pair.ns_a, "taskset", "-c", GEN_CPU, PY, str(HERE / "_bench_switch_gen.py"),
                "--src-mac", pair.mac_a, "--dst-mac", sink_mac(pair), "--src-ip", pair.ip_a, "--dst-ip", pair.ip_b,
                "--seconds", str(seconds)]
        if rate:
            argv += ["--rate", str(round(rate))]
        return self.lab.start(argv, stdout=subprocess.PIPE, text=True)

    # -- flat out: the generator as fast as it goes, for `window` seconds after a 1 s warm-up

    def flood(self, pair: Pair, pid: int = 0, sink: bool = False) -> dict:
        return self.clean(self._flood, pair, pid, sink)

    def _flood(self, pair: Pair, pid: int, sink: bool) -> dict:
        warm, window = 1.0, self.args.window
        gen = self.gen(pair, warm + window + 1)
        time.sleep(warm)
        ours = {gen.pid, pid}
        rx = (lambda: pair.root_counters(pair.port_a)) if sink else (lambda: pair.counters(pair.ns_b))
        a0, b0, c0, f0, s0, n0, t0 = (pair.counters(pair.ns_a), rx(), cpu_seconds(pid), process_cpu(ours),
                                      cpu_times(), softnet(), time.monotonic())
        time.sleep(window)
        a1, b1, c1, f1, s1, n1, t1 = (pair.counters(pair.ns_a), rx(), cpu_seconds(pid), process_cpu(ours),
                                      cpu_times(), softnet(), time.monotonic())
        out, _ = gen.communicate(timeout=60)
        self.lab.procs.remove(gen)
        dt = t1 - t0
        return {"pps": round((b1["rx_packets"] - b0["rx_packets"]) / dt),
                "offered": round((a1["tx_packets"] - a0["tx_packets"]) / dt),
                "switch_cpu": round((c1 - c0) / dt, 2) if pid else None,
                "cpu_busy": cpus_busy(s0, s1), "softnet": softnet_delta(n0, n1),
                "gen": json.loads(out.strip().splitlines()[-1]), "foreign": foreign(f0, f1, dt)}

    # -- throughput: paced trials, RFC 2544 style

    def trial(self, pair: Pair, pid: int, rate: float) -> dict:
        return self.clean(self._trial, pair, pid, rate)

    def _trial(self, pair: Pair, pid: int, rate: float) -> dict:
        """Offer `rate` frames/s for --trial seconds; count what host b received, after
        the generator stopped and the switch had --drain seconds to empty its queues."""
        b0, p0, q0, n0, s0, c0, t0 = (pair.counters(pair.ns_b), pair.root_counters(pair.port_a),
                                      pair.root_counters(pair.port_b), softnet(), cpu_times(), cpu_seconds(pid),
                                      time.monotonic())
        f0 = process_cpu({pid})
        gen = self.gen(pair, self.args.trial, rate)
        out, _ = gen.communicate(timeout=self.args.trial + 60)
        self.lab.procs.remove(gen)
        s1, c1, t1 = cpu_times(), cpu_seconds(pid), time.monotonic()
        f1 = process_cpu({pid})
        time.sleep(self.args.drain)
        b1, p1, q1, n1 = (pair.counters(pair.ns_b), pair.root_counters(pair.port_a), pair.root_counters(pair.port_b),
                          softnet())
        g = json.loads(out.strip().splitlines()[-1])
        received = b1["rx_packets"] - b0["rx_packets"]
        offered = g["sent"] + g["refused"]              # a frame the kernel refused: the switch's port was full
        return {"target": round(rate), "offered": g["offered"], "sent": g["sent"], "refused": g["refused"],
                "received": received, "loss": round(1 - received / max(1, offered), 6),
                "ingress_dropped": p1["rx_dropped"] - p0["rx_dropped"],
                "switch_tx": q1["tx_packets"] - q0["tx_packets"],             # frames the switch handed to host b's link
                "egress_dropped": q1["tx_dropped"] - q0["tx_dropped"] + b1["rx_dropped"] - b0["rx_dropped"],
                "gen_cpu": g["cpu"], "gen_skipped": g["skipped"], "gen_max_lag": g["max_lag"],
                "cpu_busy": cpus_busy(s0, s1), "softnet": softnet_delta(n0, n1),
                "switch_cpu": round((c1 - c0) / (t1 - t0), 2) if pid else None, "foreign": foreign(f0, f1, t1 - t0)}

    def throughput(self, arms: list, label: str, start: dict[str, float] | None = None) -> dict:
        """--repeat searches per arm for the highest rate forwarded with loss <= --loss;
        the arms' trials interleaved, one trial of each in turn."""
        runs: dict[str, list] = {a.name: [] for a in arms}
        guess = dict(start or {})
        for rep in range(self.args.repeat):
            searches = {a.name: RateSearch(guess.get(a.name) or self.args.start_rate, self.args.max_rate,
                                           self.args.loss, self.args.precision,
                                           factor=1.5 if a.name not in guess else 1.05,
                                           max_trials=4 if self.args.quick else RateSearch.MAX_TRIALS)
                        for a in arms}
            while not all(sr.done for sr in searches.values()):
                for arm in arms:
                    sr = searches[arm.name]
                    if sr.done:
                        continue
                    t = self.trial(arm.pair, arm.pid, sr.next)
                    sr.record(t)
                    print(f"  {label} {arm.name} #{rep + 1}: {t['target']:,} -> offered {t['offered']:,}, "
                          f"loss {t['loss'] * 100:.3f}% ({'pass' if t['pass'] else 'fail'}), "
                          f"CPU busy {t['cpu_busy']}, generator {t['gen_cpu']}", flush=True)
            for arm in arms:
                res = searches[arm.name].result()
                runs[arm.name].append(res)
                if res["throughput"]:
                    guess[arm.name] = res["throughput"]
        return runs

    def tcp(self, pair: Pair, pid: int = 0) -> dict:
        return self.clean(self._tcp, pair, pid)

    def _tcp(self, pair: Pair, pid: int) -> dict:
        server = self.lab.start(["ip", "netns", "exec", pair.ns_b, "iperf3", "-s", "-1", "-B", pair.ip_b],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.4)
            client = self.lab.start(["ip", "netns", "exec", pair.ns_a, "iperf3", "-c", pair.ip_b,
                                     "-t", str(self.args.tcp_seconds), "-J", "--connect-timeout", "3000"],
                                    stdout=subprocess.PIPE, text=True)
            ours = {server.pid, client.pid, pid}
            f0, s0, t0 = process_cpu(ours), cpu_times(), time.monotonic()
            out, _ = client.communicate(timeout=self.args.tcp_seconds + 60)
            f1, s1, t1 = process_cpu(ours), cpu_times(), time.monotonic()
            self.lab.procs.remove(client)
        finally:
            self.lab.stop(server)
        report = json.loads(out)
        fgn = foreign(f0, f1, t1 - t0)
        if "error" in report:
            return {"error": report["error"], "foreign": fgn}
        end = report["end"]
        return {"bps": round(end["sum_received"]["bits_per_second"]),
                "retransmits": end["sum_sent"].get("retransmits"), "cpu_busy": cpus_busy(s0, s1), "foreign": fgn}

    def ping(self, pair: Pair, interval: float = 0.01, count: int = 50) -> dict:
        return self.clean(self._ping, pair, interval, count)

    def _ping(self, pair: Pair, interval: float, count: int) -> dict:
        sh("ip", "netns", "exec", pair.ns_a, "ping", "-c", "3", "-i", "0.05", "-W", "1", pair.ip_b, check=False)
        f0, t0 = process_cpu(set()), time.monotonic()
        out = sh("ip", "netns", "exec", pair.ns_a, "ping", "-c", str(count), "-i", str(interval), "-W", "1",
                 pair.ip_b, check=False).stdout
        f1, t1 = process_cpu(set()), time.monotonic()
        times = [float(line.split("time=")[1].split()[0]) for line in out.splitlines() if "time=" in line]
        fgn = foreign(f0, f1, t1 - t0)
        if not times:
            return {"error": "no replies", "foreign": fgn}
        return {"mean_ms": round(statistics.fmean(times), 3), "p50_ms": round(statistics.median(times), 3),
                "max_ms": round(max(times), 3), "replies": len(times), "foreign": fgn}


def controller_install(bench: Bench, lab: Lab, arm: Arm, n: int) -> dict:
    """One controller installation of n flows into arm's switch (_bench_switch_ctl.py),
    its flows counted while the controller still holds the switch."""
    arm.ofctl("del-flows")
    port = free_port()
    ctl = lab.start([PY, str(HERE / "_bench_switch_ctl.py"), "--port", str(port), "--rules", str(n), "--hold"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                    env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
    ctl.stdout.readline()                                   # listening
    bench.idle()
    arm.connect(port)
    try:
        line = ctl.stdout.readline()                        # the result, or "" if it died
        res = json.loads(line) if line.strip() else {"error": "the controller exited"}
        res["flow_count"] = arm.flow_count()                # while the controller holds the switch
        res["expected_flows"] = n + res.get("pipeline_flows", 1)   # + the controller's miss entries
    finally:
        lab.stop(ctl)
        arm.disconnect()
    arm.forward()
    return res


class RateSearch:
    """The highest offered rate with loss <= `loss`: from `start`, steps up (or
    down) by `factor`, squared after each step the same way (at most 2x), until
    a trial passes and one fails; then bisects until the failing rate is
    within `precision` of the passing one. Rates are what the generator really
    offered (its "pps"), not what it was asked for."""

    MAX_TRIALS = 14

    def __init__(self, start: float, ceiling: float, loss: float, precision: float, factor: float,
                 max_trials: int = MAX_TRIALS) -> None:
        self.next, self.ceiling, self.loss, self.precision, self.factor = start, ceiling, loss, precision, factor
        self.max_trials = max_trials
        self.best: dict | None = None           # highest passing trial
        self.fail: float | None = None          # lowest failing offered rate above it
        self.trials: list[dict] = []
        self.done = False
        self.generator_bound = False

    def record(self, t: dict) -> None:
        t["pass"] = t["loss"] <= self.loss
        self.trials.append(t)
        rate = t["offered"]
        if t["pass"]:
            if self.best is None or rate > self.best["offered"]:
                self.best = t
            if self.fail is not None and self.fail <= rate:          # noise: a pass above a fail
                self.fail = None
            if rate < 0.97 * t["target"] and t["gen_cpu"] > 0.9:     # the generator could not go faster
                self.generator_bound = self.done = True
                return
        elif self.fail is None or rate < self.fail:
            self.fail = rate
        lo = self.best["offered"] if self.best else None
        if len(self.trials) >= self.max_trials:
            self.done = True
        elif lo is not None and self.fail is not None:
            self.done = self.fail <= lo * (1 + self.precision)
            self.next = (lo + self.fail) / 2
        elif self.fail is None:                                      # all passed: up
            if lo >= self.ceiling:
                self.generator_bound = self.done = True
            self.next = min(lo * self.factor, self.ceiling)
            self.factor = min(self.factor ** 2, 2.0)
        else:                                                        # all failed: down
            self.next = self.fail / self.factor
            self.factor = min(self.factor ** 2, 2.0)
            self.done = self.next < 1000

    def result(self) -> dict:
        b = self.best or {}
        return {"throughput": b.get("offered", 0), "loss": b.get("loss"), "received": b.get("received"),
                "lowest_fail": self.fail, "generator_bound": self.generator_bound,
                "gen_cpu": b.get("gen_cpu"), "cpu_busy": b.get("cpu_busy"), "switch_cpu": b.get("switch_cpu"),
                "trials": self.trials}


def softnet_delta(before: list[dict], after: list[dict]) -> list[dict]:
    return [{k: a[k] - b[k] for k in a} for b, a in zip(before, after)]


def sink_mac(pair: Pair) -> str:
    """Where the UDP frames go: host b's MAC with the last byte changed. The
    switches forward on in_port alone, so nothing changes for them; host b's
    kernel counts each frame (rx_packets) and drops it at once as not its own
    (PACKET_OTHERHOST), instead of running UDP and ICMP port-unreachable for
    it, which would be charged to the CPU of whichever switch sent the frame."""
    return pair.mac_b[:-2] + "99"


def fmt_bps(v) -> str:
    return f"{v / 1e6:,.0f} Mbit/s" if v else "-"


# --- the run ------------------------------------------------------------------------------------


def run(args) -> dict:
    only = set(args.only.split(","))
    results: dict = {"machine": machine(), "args": vars(args), "figures": {}}
    fig = results["figures"]
    tmp = Path(tempfile.mkdtemp(prefix="kfbench-"))
    os.sched_setaffinity(0, {HOST_CPU})             # this script and every command it runs: the host CPU
    with Lab(ingress=args.ingress, steer_hosts=not args.no_steer_hosts, napi_fifo=args.napi_fifo) as lab:
        bench = Bench(args, lab)
        ovs = OvsArm(lab, lab.pair())
        kf = KumoflowArm(lab, lab.pair(), tmp)
        arms = [ovs, kf]
        for arm in arms:
            arm.forward()
        loop = LoopArm(lab, lab.pair()) if only & {"pps", "ping"} else None
        bench.arms = arms + ([loop] if loop else [])
        sink = lab.pair() if only & {"ceiling", "pps", "rules"} else None
        results["ovs_affinity_before"] = {str(k): v for k, v in lab.pin_ovs(ovs.pid).items()}
        results["arrangement"] = arrangement(lab, ovs, [kf] + ([loop] if loop else []))
        time.sleep(1)
        if sink is not None:
            fig["ceiling"] = [bench.flood(sink, sink=True) for _ in range(args.repeat)]
            print(f"generator into a sink: {fmt_rate(median_of(fig['ceiling'], 'offered'))} frames/s sent, "
                  f"steering: {steering(fig['ceiling'][0])}", flush=True)
        ceiling = median_of(fig.get("ceiling", []), "offered") or args.max_rate
        if not args.start_rate and ceiling == args.max_rate:
            args.start_rate = 100_000

        def pps_and_tcp(label: str, with_loop: bool, start: dict | None = None, pps: bool = True,
                        tcp: bool = True) -> None:
            these = arms + ([loop] if with_loop and loop else [])
            if pps:
                if args.flat and not label:                 # overload, for reference: without extra rules only
                    flat = {a.name: [] for a in these}
                    for _ in range(args.repeat):
                        for arm in these:
                            flat[arm.name].append(bench.flood(arm.pair, arm.pid))
                    fig[f"flat{label}"] = flat
                    print(f"flat out{label}: " + ", ".join(
                        f"{k} {fmt_rate(median_of(v, 'pps'))} of {fmt_rate(median_of(v, 'offered'))}"
                        for k, v in flat.items()), flush=True)
                bench.args.max_rate = ceiling
                if not args.start_rate:
                    bench.args.start_rate = ceiling / 4
                runs = bench.throughput(these, f"pps{label}", start)
                fig[f"pps{label}"] = runs
                print(f"throughput{label} (loss <= {args.loss:.1%}): " + ", ".join(
                    f"{k} {fmt_rate(median_of(v, 'throughput'))}" for k, v in runs.items()), flush=True)
            if tcp:
                runs = {a.name: [] for a in arms}
                for arm in arms:
                    lab.port_input(arm.pair, napi=False)
                for _ in range(args.repeat):
                    for arm in arms:
                        runs[arm.name].append(bench.tcp(arm.pair, arm.pid))
                for arm in arms:
                    lab.port_input(arm.pair, napi=True)
                fig[f"tcp{label}"] = runs
                print(f"tcp{label}: " + ", ".join(f"{k} {fmt_bps(median_of(v, 'bps'))}" for k, v in runs.items()),
                      flush=True)

        pps_and_tcp("", with_loop=True, pps="pps" in only, tcp="tcp" in only)
        if "profile" in only:
            kf_rate = median_of(fig.get("pps", {}).get("kumoflow", []), "throughput")
            fig["profile"] = bench_switch_profile.profile(bench, kf, args.py_spy, tmp,
                                                          rate=0.9 * kf_rate if kf_rate else 0)
            print(bench_switch_profile.report(fig["profile"]), flush=True)
        if "ping" in only:
            # one ping every 10 ms: each finds the switch asleep (wake-up and cold caches
            # included); every 1 ms: closer to the cost of the forwarding itself
            pinged = arms + ([loop] if loop else [])
            for arm in pinged:
                lab.port_input(arm.pair, napi=False)
            for key, interval, count in (("ping", 0.01, 50), ("ping_1ms", 0.001, 200)):
                fig[key] = {a.name: [] for a in pinged}
                for _ in range(args.repeat):
                    for arm in pinged:
                        fig[key][arm.name].append(bench.ping(arm.pair, interval, count))
                print(f"{key}: " + ", ".join(f"{k} p50 {median_of(v, 'p50_ms')} ms" for k, v in fig[key].items()),
                      flush=True)
            for arm in pinged:
                lab.port_input(arm.pair, napi=True)
        counts = [int(n) for n in args.rules.split(",") if n and int(n)]
        if "rules" in only or "install" in only:
            base = {k: median_of(v, "throughput") for k, v in fig.get("pps", {}).items()}
            for n in counts:
                path = tmp / f"rules-{n}.txt"
                rules_mod.write_file(path, n, seed=1)
                fig[f"add_flows_{n}"] = {}
                for arm in arms:
                    arm.forward()
                    rss0 = rss_kib(arm.pid)
                    busy = bench.idle()
                    seconds = arm.add_flows(str(path))
                    flows = arm.flow_count()
                    fig[f"add_flows_{n}"][arm.name] = {
                        "seconds": round(seconds, 3), "flows_per_s": round(n / seconds), "flow_count": flows,
                        "expected_flows": n + len(rules_mod.FORWARD),
                        "rss_delta_kib": rss_kib(arm.pid) - rss0, "busy_before": busy}
                print(f"ovs-ofctl add-flows {n}: " + ", ".join(
                    f"{k} {v['seconds']} s ({v['flow_count']} flows)" for k, v in fig[f"add_flows_{n}"].items()),
                    flush=True)
                if "rules" in only:
                    pps_and_tcp(f"_{n}", with_loop=False, start={k: v for k, v in base.items() if v} or None)
                for arm in arms:
                    arm.forward()
        if "install" in only:
            n = max(counts) if counts else 100_000
            runs: dict[str, list[dict]] = {arm.name: [] for arm in arms}
            for _ in range(args.repeat):                        # interleaved, like the trials
                for arm in arms:
                    runs[arm.name].append(controller_install(bench, lab, arm, n))
            fig["controller_install"] = {}
            for name, rs in runs.items():
                seconds = median_of(rs, "seconds")
                fig["controller_install"][name] = dict(
                    rs[-1], seconds=seconds, flows_per_s=round(n / seconds) if seconds else None,
                    flow_count=min(r.get("flow_count", -1) for r in rs), runs=rs)
            print("controller install: " + ", ".join(
                f"{k} {v.get('seconds')} s ({v.get('flow_count')} flows)"
                for k, v in fig["controller_install"].items()),
                flush=True)
        results["ovs_affinity_during"] = {str(k): v for k, v in thread_affinity(ovs.pid).items()}
        results["incidents"] = bench.incidents
    results["ovs_affinity_after"] = {str(k): v for k, v in thread_affinity(ovs.pid).items()}
    shutil.rmtree(tmp, ignore_errors=True)
    return results


def arrangement(lab: Lab, ovs: OvsArm, others: list) -> dict:
    """Where everything runs, as the kernel reports it."""
    def rps(ifname, ns=None):
        prefix = ("ip", "netns", "exec", ns) if ns else ()
        return sh(*prefix, "cat", f"/sys/class/net/{ifname}/queues/rx-0/rps_cpus").stdout.strip()
    pair = ovs.pair

    def napi(ifname):
        out = {}
        for pid in napi_threads(ifname):
            policy = os.sched_getscheduler(pid)
            out[str(pid)] = {"cpus": sorted(os.sched_getaffinity(pid)),
                             "policy": {os.SCHED_FIFO: "FIFO", os.SCHED_OTHER: "OTHER"}.get(policy, policy),
                             "priority": os.sched_getparam(pid).sched_priority}
        return out
    return {"host_cpu": HOST_CPU, "switch_cpu": SWITCH_CPU, "ingress": lab.ingress,
            "napi_switch_ports": {p: napi(p) for p in (pair.port_a, pair.port_b)},
            "rps_switch_ports": [rps(pair.port_a), rps(pair.port_b)],
            "rps_hosts": [rps("eth0", pair.ns_a), rps("eth0", pair.ns_b)],
            "ovs_threads": {str(k): v for k, v in thread_affinity(ovs.pid).items()},
            "switch_affinity": {a.name: sorted(os.sched_getaffinity(a.pid)) for a in others},
            "bench_affinity": sorted(os.sched_getaffinity(0))}


def steering(flood: dict) -> str:
    """What a sink run says about where frames were taken in (softnet_stat): per CPU."""
    return ", ".join(f"CPU {i} took in {d['processed']:,} frames ({d['received_rps']:,} RPS interrupts)"
                     for i, d in enumerate(flood["softnet"]))


# --- the report ----------------------------------------------------------------------------------


def report(results: dict) -> str:
    fig, m, a = results["figures"], results["machine"], results["args"]
    lines = benchlib.machine_lines(m) + [f"- command: `{results.get('command', 'bench_switch.py')}`"]
    lines.append(f"- arrangement: {describe_arrangement(results)}")
    if results.get("incidents"):
        lines.append(f"- incidents: {len(results['incidents'])} (a switch kept a CPU busy with no traffic and was "
                     "restarted; see the JSON)")

    pps_keys = ["pps"] + sorted((k for k in fig if k.startswith("pps_")), key=lambda k: int(k.split("_")[1]))
    pps_keys = [k for k in pps_keys if k in fig]
    if pps_keys:
        lines += ["", f"Throughput, RFC 2544 style: the highest rate of 64-byte UDP frames (16 flows) offered for "
                      f"{a['trial']:g} s that each switch forwarded with at most {a['loss']:.1%} loss, found by a "
                      f"search to within {a['precision']:.0%}; " + (f"median of {a['repeat']} searches (lowest-highest), "
                      f"the arms' trials interleaved." if a['repeat'] > 1 else "one search per arm, the arms' trials "
                      "interleaved."), ""]
        rows = []
        for key in pps_keys:
            runs = fig[key]
            label = "forwarding rules only" if key == "pps" else f"{int(key.split('_')[1]):,} extra rules"
            o, k = median_of(runs["ovs"], "throughput"), median_of(runs["kumoflow"], "throughput")
            lo = median_of(runs["loop"], "throughput") if "loop" in runs else None
            rows.append([label, spread(runs['ovs']), spread(runs['kumoflow']), ratio(k, o),
                         spread(runs['loop']) if lo else '-', ratio(lo, o) if lo else '-'])
        lines += [benchlib.md_table(["throughput, frames/s", "Open vSwitch (netdev)", "kumoflow", "kumoflow / OVS",
                                     "bare Python loop", "loop / OVS"], rows),
                  "", generator_note(results, pps_keys)]
        bound = [f"{k} {arm}" for k in pps_keys for arm, runs in fig[k].items()
                 if any(r.get("generator_bound") for r in runs)]
        if bound:
            lines.append(f"**Generator-bound** (the generator could not offer more; the figure is a lower bound): "
                         f"{', '.join(bound)}.")

    other: list[list] = []

    def row(label, key, unit_fmt, field, with_loop=False):
        runs = fig.get(key)
        if not runs:
            return
        o, k = median_of(runs["ovs"], field), median_of(runs["kumoflow"], field)
        lo = median_of(runs["loop"], field) if with_loop and "loop" in runs else None
        other.append([label, unit_fmt(o), unit_fmt(k), ratio(k, o), unit_fmt(lo) if lo else '-',
                      ratio(lo, o) if lo else '-'])

    for key in ["flat"] + sorted((k for k in fig if k.startswith("flat_")), key=lambda k: int(k.split("_")[1])):
        if key in fig:
            offered = median_of([r for v in fig[key].values() for r in v], "offered")
            extra = "" if key == "flat" else f", {int(key.split('_')[1]):,} extra rules"
            row(f"overload: forwarded frames/s with the generator flat out (~{fmt_rate(offered)} offered; "
                f"not throughput){extra}", key, fmt_rate, "pps", with_loop=True)
    row("iperf3 TCP", "tcp", fmt_bps, "bps")
    for key, every in (("ping", "10 ms"), ("ping_1ms", "1 ms")):
        for f, what in (("mean_ms", "mean"), ("p50_ms", "p50")):
            runs = fig.get(key, {})
            o, k, lp = (median_of(runs.get(name, []), f) for name in ("ovs", "kumoflow", "loop"))
            if o is not None and k is not None:
                loop_cells = [f"{lp:.3f}", ratio(lp, o)] if lp is not None else ["-", "-"]
                other.append([f"ping RTT {what}, one every {every} (ms; lower is better)", f"{o:.3f}", f"{k:.3f}",
                              ratio(k, o), *loop_cells])
    for key in sorted((k for k in fig if k.startswith("tcp_")), key=lambda k: int(k.split("_")[1])):
        row(f"iperf3 TCP, {int(key.split('_')[1]):,} extra rules", key, fmt_bps, "bps")
    for key in sorted((k for k in fig if k.startswith("add_flows_")), key=lambda k: int(k.split("_")[2])):
        n = int(key.split("_")[2])
        o, k = fig[key]["ovs"], fig[key]["kumoflow"]
        other.append([f"`ovs-ofctl add-flows`, {n:,} flows, flows/s", f"{o['flows_per_s']:,}",
                      f"{k['flows_per_s']:,}", ratio(k['flows_per_s'], o['flows_per_s']), "-", "-"])
    if "controller_install" in fig:
        c = fig["controller_install"]
        o, k = c["ovs"].get("flows_per_s"), c["kumoflow"].get("flows_per_s")
        n, runs = c["ovs"].get("flows", 0), len(c["ovs"].get("runs", [0]))
        other.append([f"kumoflow controller, {n:,} flow-mods + barrier, flows/s (median of {runs})", fmt_rate(o),
                      fmt_rate(k), ratio(k, o), "-", "-"])
    if other:
        lines += ["", benchlib.md_table(["other figures", "Open vSwitch (netdev)", "kumoflow", "kumoflow / OVS",
                                         "bare Python loop", "loop / OVS"], other)]
    wrong = [f"{key} {arm}: {v.get('flow_count')} flows, expected {v.get('expected_flows', v.get('flows'))}"
             for key in fig if key.startswith("add_flows_") or key == "controller_install"
             for arm, v in fig[key].items()
             if v.get("flow_count") is not None and v.get("flow_count") != v.get("expected_flows", v.get("flows"))]
    if wrong:
        lines += ["", "**Flow counts differ from what was installed**: " + "; ".join(wrong) + "."]
    return "\n".join(lines)


def spread(runs: list[dict]) -> str:
    values = [r["throughput"] for r in runs if r.get("throughput")]
    if not values:
        return "-"
    med = fmt_rate(statistics.median(values))
    return med if len(values) == 1 else f"{med} ({fmt_rate(min(values))}-{fmt_rate(max(values))})"


def describe_arrangement(results: dict) -> str:
    arr, a = results.get("arrangement", {}), results["args"]
    host, switch = arr.get("host_cpu", HOST_CPU), arr.get("switch_cpu", SWITCH_CPU)
    n_ovs = len(arr.get("ovs_threads", {}))
    fifo = f", SCHED_FIFO {a['napi_fifo']} so that it preempts the switch as a softirq would" if a.get("napi_fifo") \
        else ""
    how = {"napi": f"each switch port's input taken in by a NAPI kernel thread pinned to CPU {switch}{fifo} "
                   "(veth with GRO on and `threaded` NAPI; packet-rate figures only: for tcp and ping GRO is off on "
                   "the switch ports, whose input is then taken in on the sender's CPU)",
           "rps": f"each switch port's input steered to CPU {switch} with RPS",
           "sender": "no steering: a switch port's input is taken in on the sender's CPU"}[a["ingress"]]
    if not a["no_steer_hosts"] and a["ingress"] != "sender":
        hosts = f"the hosts' eth0 input likewise on CPU {host}"
    else:
        hosts = "the hosts' eth0 input on the sender's CPU (a switch pays for its sink)"
    return (f"generator, iperf3, ping and this script on CPU {host}; each switch alone on CPU {switch} "
            f"(Open vSwitch: all {n_ovs} threads of ovs-vswitchd, `taskset -a`, put back afterwards; kumoflow "
            f"and the loop: `taskset -c {switch}`); {how}; {hosts}")


def generator_note(results: dict, pps_keys: list[str]) -> str:
    fig = results["figures"]
    best = max((r["throughput"] for k in pps_keys for v in fig[k].values() for r in v if r.get("throughput")),
               default=0)
    gen_cpu = max((r["gen_cpu"] for k in pps_keys for v in fig[k].values() for r in v if r.get("gen_cpu")),
                  default=None)
    cpu0 = max((r["cpu_busy"][HOST_CPU] for k in pps_keys for v in fig[k].values() for r in v if r.get("cpu_busy")),
               default=None)
    text = []
    if "ceiling" in fig:
        ceil = median_of(fig["ceiling"], "offered")
        where = f"taken in on CPU {SWITCH_CPU}" if results["args"]["ingress"] != "sender" else "taken in on its own CPU"
        text.append(f"Generator ceiling in the same arrangement (flat out into a pair with no switch, the frames "
                    f"{where} and dropped; {steering(fig['ceiling'][0])}): {fmt_rate(ceil)} frames/s, "
                    f"{ceil / best:.1f}x the highest throughput above." if best else
                    f"Generator ceiling: {fmt_rate(ceil)} frames/s.")
    if gen_cpu is not None:
        verdict = "so it was not the limit" if gen_cpu < 0.8 else "CLOSE TO ITS LIMIT: check the generator"
        text.append(f"In the passing trials that gave these figures the generator process used at most "
                    f"{gen_cpu:.0%} of CPU {HOST_CPU} (CPU {HOST_CPU} busy at most {cpu0:.0%}), {verdict}.")
    return " ".join(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="ceiling,pps,tcp,ping,rules,install",
                    help="figures to measure (comma list); 'profile' adds a py-spy breakdown of kumoflow")
    ap.add_argument("--py-spy", default=benchlib.py_spy() or "py-spy",
                    help="py-spy, for --only profile and incident reports")
    ap.add_argument("--rules", default="10000,100000", help="rule counts for the rules figures (comma list)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--window", type=float, default=3.0, help="flat-out measuring window, seconds")
    ap.add_argument("--trial", type=float, default=3.0, help="throughput: seconds of traffic per trial")
    ap.add_argument("--drain", type=float, default=0.25, help="throughput: wait this long after a trial to count")
    ap.add_argument("--loss", type=float, default=0.001, help="throughput: loss tolerated (default 0.001 = 0.1%%)")
    ap.add_argument("--precision", type=float, default=0.02,
                    help="throughput: stop when the lowest failing rate is within this of the highest passing one")
    ap.add_argument("--start-rate", type=float, default=0,
                    help="throughput: first rate tried, without a hint (default: a quarter of the generator ceiling)")
    ap.add_argument("--max-rate", type=float, default=1_000_000,
                    help="throughput: highest rate tried (the generator's ceiling when measured)")
    ap.add_argument("--no-flat", dest="flat", action="store_false",
                    help="skip the flat-out (overload) runs before each throughput search")
    ap.add_argument("--ingress", choices=("rps", "sender", "napi"), default="napi",
                    help="where a switch port's input is taken in (see _bench_switch_net.py)")
    ap.add_argument("--napi-fifo", type=int, default=50, metavar="PRIO",
                    help="NAPI threads SCHED_FIFO at this priority, as a softirq preempts a process (0: SCHED_OTHER)")
    ap.add_argument("--no-steer-hosts", action="store_true",
                    help="leave the hosts' eth0 unsteered (frames the switch sends are taken in on its CPU)")
    ap.add_argument("--tcp-seconds", type=int, default=5)
    ap.add_argument("--idle-wait", type=float, default=120.0, help="wait this long at most for an idle machine")
    ap.add_argument("--foreign", type=float, default=0.10,
                    help="a measurement counts as clean when other processes used at most this much CPU")
    ap.add_argument("--attempts", type=int, default=4, help="tries per measurement to get a clean one")
    benchlib.add_output_args(ap, "under a minute, a smoke test, not a figure: --repeat 1 --window 0.5 "
                                 "--trial 0.5 --drain 0.1 --precision 0.5 --tcp-seconds 1 --rules 1000 "
                                 "--idle-wait 0 --attempts 1 --no-flat, searches of at most 4 trials (for one "
                                 "search of each, ~4 minutes: --repeat 1 --window 2 --trial 2 --tcp-seconds 2 "
                                 "--rules 10000)")
    ap.add_argument("--sweep", action="store_true", help="remove leftovers of a killed run and exit")
    args = ap.parse_args()
    if args.sweep:
        print("\n".join(sweep()) or "nothing to remove")
        return 0
    if os.geteuid() != 0:
        print("needs root (namespaces, raw sockets, Open vSwitch)", file=sys.stderr)
        return 2
    if args.quick:
        args.repeat, args.window, args.trial, args.drain, args.precision = 1, 0.5, 0.5, 0.1, 0.5
        args.tcp_seconds, args.rules, args.idle_wait, args.attempts, args.flat = 1, "1000", 0.0, 1, False
    benchlib.exit_on_sigterm()
    results = run(args)
    results["command"] = "sudo " + benchlib.command_line()
    if args.json:
        benchlib.write_json(args.json, results)
    print()
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
