"""Where the kumoflow switch's time goes per forwarded packet (bench_switch.py --only profile).

While the generator sends to the switch (paced at 90% of the throughput
bench_switch.py measured for kumoflow in the same run, or flat out when it
measured none), py-spy samples the switch process (``py-spy record --format
raw --nonblocking``: it reads the process's memory without stopping it, and
leaves out samples where the process is idle in epoll). Each sample is put
in the first category, going from the innermost frame outwards, that one of
its frames belongs to (:data:`CATEGORIES`); the share of samples times the
switch's CPU seconds per forwarded packet is the time per packet.

A sample inside ``SendBatch.flush`` is the ``sendmmsg`` system call: the
kernel building the skbs, the veth transmit and, in the same call, the
receiving host's kernel taking the frame in (softirq). py-spy attributes
time in C code and in the kernel to the Python line that called it.
"""

from __future__ import annotations

import collections
import subprocess
import time
from pathlib import Path

import benchlib

#: (category, function-name markers), first match from the innermost frame wins
CATEGORIES = [
    ("kernel: sendmmsg (transmit, and the receiver's softirq)", ("SendBatch.flush ",)),
    ("port: read the receive ring", ("LinuxPort.read_frames ", "LinuxPort._read_slots ", "LinuxPort._slot_frames ",
                                     "LinuxPort._recv_frames ", "LinuxPort._finish ")),
    ("port: queue frames for sendmmsg", ("SendBatch.add ", "LinuxPort.send ", "LinuxPort.flush ")),
    ("runtime: read cycle, flush", ("Switch._flush ", "Switch._tx_pending ")),
    ("datapath: fast path, pipeline", ("kumoflow/switch/datapath.py", "kumoflow/switch/fastpath.py",
                                       "kumoflow/switch/pipeline.py", "kumoflow/switch/flowkey.py",
                                       "kumoflow/switch/classifier.py", "kumoflow/switch/flowtable.py",
                                       "kumoflow/switch/actions.py", "kumoflow/switch/groups.py",
                                       "kumoflow/switch/meters.py", "kumoflow/switch/flowmatch.py")),
    ("runtime: read cycle, flush", ("Switch.receive ", "Switch._readable ")),
    ("channels, timers", ("kumoflow/switch/channel.py", "kumoflow/ofp/", "Switch._tick_loop", "Switch._poll_loop")),
]
OTHER = "event loop (uvloop, epoll) and the rest"


def categorize(raw: str) -> tuple[collections.Counter, collections.Counter, int]:
    """(samples per category, samples per innermost function, total) of a py-spy raw file."""
    per_cat: collections.Counter = collections.Counter()
    per_leaf: collections.Counter = collections.Counter()
    total = 0
    for frames, n in benchlib.collapsed(raw):
        total += n
        per_leaf[frames[-1].split(" (")[0]] += n
        for frame in reversed(frames):
            name = frame + " "
            cat = next((c for c, marks in CATEGORIES if any(m in name for m in marks)), None)
            if cat is not None:
                per_cat[cat] += n
                break
        else:
            per_cat[OTHER] += n
    return per_cat, per_leaf, total


def profile(bench, arm, py_spy: str, tmp: Path, rate: float = 0) -> dict:
    """Send to `arm` (the kumoflow switch) at `rate` (0: flat out) and sample it; the breakdown per packet."""
    cpu_seconds = benchlib.cpu_seconds
    pair, lab, window = arm.pair, bench.lab, bench.args.window
    bench.idle()
    gen = bench.gen(pair, window + 4, rate)
    time.sleep(1.0)
    out = tmp / "py-spy.txt"
    b0, c0, t0 = pair.counters(pair.ns_b), cpu_seconds(arm.pid), time.monotonic()
    subprocess.run([py_spy, "record", "--rate", "250", "--duration", str(int(window)), "--format", "raw",
                    "--output", str(out), "--pid", str(arm.pid), "--nonblocking"],
                   capture_output=True, timeout=window + 60)
    b1, c1, t1 = pair.counters(pair.ns_b), cpu_seconds(arm.pid), time.monotonic()
    gen.communicate(timeout=60)
    lab.procs.remove(gen)
    packets = b1["rx_packets"] - b0["rx_packets"]
    per_packet_us = (c1 - c0) / max(packets, 1) * 1e6
    per_cat, per_leaf, total = categorize(out.read_text())
    return {"rate": round(rate) or "flat out", "pps": round(packets / (t1 - t0)),
            "switch_cpu": round((c1 - c0) / (t1 - t0), 2),
            "us_per_packet": round(per_packet_us, 2), "samples": total,
            "categories": {c: {"share": round(n / total, 3), "us": round(n / total * per_packet_us, 2)}
                           for c, n in per_cat.most_common()},
            "top_functions": [(f, round(n / total, 3)) for f, n in per_leaf.most_common(15)]}


def report(prof: dict) -> str:
    lines = [f"kumoflow switch at {prof['pps']:,} frames/s (offered: {prof.get('rate', 'flat out')}), "
             f"{prof['switch_cpu']} CPU: "
             f"{prof['us_per_packet']} µs of CPU per forwarded frame ({prof['samples']} py-spy samples)", "",
             "| where | share | µs per frame |", "|---|--:|--:|"]
    for cat, v in prof["categories"].items():
        lines.append(f"| {cat} | {v['share'] * 100:.0f}% | {v['us']:.2f} |")
    lines += ["", "Innermost functions (share of samples): " + ", ".join(
        f"{f} {s * 100:.1f}%" for f, s in prof["top_functions"][:10])]
    return "\n".join(lines)
