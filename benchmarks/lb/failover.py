#!/usr/bin/env python3
"""A member's failure to no more new connections sent to it: the lb app's
health monitors (checks through the data plane by the controller) against
their bound, delay x max_retries_down + timeout.

    sudo .venv/bin/python benchmarks/lb/failover.py
    sudo .venv/bin/python benchmarks/lb/failover.py --quick
    sudo .venv/bin/python benchmarks/lb/failover.py --monitors TCP:1,HTTP:3 --failures kill --repeat 10

The cloud of lb/connections.py (benchmarks/lb/_lbcloud.py: the real
controller with ``--app tenants --app lb``, a load balancer made through
/v2/lbaas, a TCP listener, a ROUND_ROBIN pool of three members, one
emulated kumoflow hypervisor). A client in its VM opens a connection to
the VIP every --interval seconds (20 ms), each in a thread of its own:
connect, send a line, read the answering member's name, close; each
records its start (CLOCK_MONOTONIC, which the namespaces share with this
process) and who answered, or that it failed. Meanwhile one member fails:

* ``kill``: its server process is killed (SIGKILL). Its kernel answers
  SYNs with resets: a connection sent to it fails at once, and so does
  every health check (TCP and HTTP alike see the reset).
* ``silent``: its address is taken off its interface. Its kernel drops
  what comes to that address without a word: a connection sent to it
  times out (the client gives up after 2 s), a health check too, after the
  monitor's timeout.

Per run, from the failure: to the start of the last connection that the
lb app chose the failed member for (a failed connect: what the health
monitor decides), and to the member's ``operating_status`` ERROR, polled
through the API every 50 ms; the connections that failed. Failed
connections are told apart: chosen for the member by the controller, or
pinned to it: the client's kernel reuses a source port once its last
connection is closed (the servers close first: the TIME_WAIT is theirs;
a refused or timed-out connect leaves none), and the lb's flows of a connection stay for the
listener's idle timeout (50 s) after it, FIN or not, so a new connection
from a port whose last connection went to the member goes there again,
without the controller, ERROR or not (from the ports' history, kept over
the runs). Then the member is brought back (server restarted, address put
back) and is ONLINE again before the next run, which fails the next
member, after 2 s plus a random part of the monitor's delay (so the
failure falls anywhere in the checks' cycle). --repeat runs per monitor and failure; medians and maxima.
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))                 # benchmarks/: benchlib
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "firewall"))    # _connections
import benchlib  # noqa: E402

import _connections  # noqa: E402
from _lbcloud import IDLE, MEMBERS, VIP, VIP_PORT, VMS, LbCloud, Monitor  # noqa: E402

REQUIRES = ("root", "ovs")
FAILURES = ("kill", "silent")
#: s after a flow's idle timeout until it is gone: the switch expires flows every 0.5 s, on the use it last
#: saw, and the controller deletes the connection's other flow on hearing of the first
EXPIRY = 2.0
#: the client: HOST PORT INTERVAL; a connection every INTERVAL s until stdin closes; a line per connection:
#: its start (monotonic), its duration, the member that answered or "!" and why it failed
STREAM = """\
import socket, sys, threading, time
host, port, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
lock, done = threading.Lock(), threading.Event()
def one(t0):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((host, port))
        s.sendall(b"hi\\n")
        answer = s.recv(64).decode().strip() or "!closed"
    except OSError as exc:
        answer = "!" + (exc.strerror or type(exc).__name__).replace(" ", "_")
    finally:
        sport = s.getsockname()[1]
        s.close()
    with lock:
        print(t0, time.monotonic() - t0, sport, answer, flush=True)
def watch():
    sys.stdin.read()
    done.set()
threading.Thread(target=watch, daemon=True).start()
t = time.monotonic()
while not done.is_set():
    threading.Thread(target=one, args=(time.monotonic(),)).start()
    t += interval
    done.wait(max(0.0, t - time.monotonic()))
"""


def fail(cloud: LbCloud, vm: str, failure: str) -> None:
    if failure == "kill":
        cloud.kill(vm)
    else:
        _connections.sh("ip", "-n", cloud.ns(vm), "addr", "del", f"{VMS[vm][1]}/24", "dev", "eth0")


def restore(cloud: LbCloud, vm: str, failure: str) -> None:
    if failure == "kill":
        cloud.start(vm)
    else:
        _connections.sh("ip", "-n", cloud.ns(vm), "addr", "replace", f"{VMS[vm][1]}/24", "dev", "eth0")


def one_run(cloud: LbCloud, vm: str, failure: str, args: argparse.Namespace,
            history: dict[int, tuple[float, str]]) -> dict:
    """One member failed while the client connects; what the client saw, on this process's clock.
    history: each client port's last connection so far (its end, the member it went to), kept across runs."""
    monitor = cloud.monitor
    cloud.wait_status("ONLINE")
    client = subprocess.Popen(["ip", "netns", "exec", cloud.ns("c"), sys.executable, "-c", STREAM, VIP,
                               str(VIP_PORT), str(args.interval)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    failed_at = error_at = None
    try:
        time.sleep(2 + random.uniform(0, monitor.delay))
        failed_at = time.monotonic()
        fail(cloud, vm, failure)
        end = failed_at + monitor.bound + args.after
        while time.monotonic() < end:
            if error_at is None and cloud.status()[vm] == "ERROR":
                error_at = time.monotonic()
            time.sleep(0.05)
        out, _ = client.communicate("", timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        if failed_at is not None:
            restore(cloud, vm, failure)
    conns = sorted((float(start), float(took), int(sport), answer)
                   for start, took, sport, answer in (line.split() for line in out.splitlines()))
    failed, failed_before = [], 0
    for start, took, sport, answer in conns:
        lost = answer.startswith("!")
        if lost and start + took < failed_at:
            failed_before += 1
        elif lost:          # sent to the failed member: by the lb's choice, or by the flows of a connection
            last = history.get(sport)       # from the same port to it that are still there (pinned)
            pinned = last is not None and last[1] == vm and start - last[0] < IDLE + EXPIRY
            failed.append({"start_s": round(start - failed_at, 3), "took_s": round(took, 3), "why": answer[1:],
                           "port": sport, "pinned": pinned,
                           "port_last": None if last is None else (round(start - last[0], 3), last[1])})
        history[sport] = (start + took, vm if lost else answer)
    chosen = [f["start_s"] for f in failed if not f["pinned"]]
    pinned = [f["start_s"] for f in failed if f["pinned"]]
    error_s = error_at - failed_at if error_at is not None else None
    return {"member": vm, "connections": len(conns),
            "failed": len(chosen), "last_sent_s": max(chosen, default=None), "error_s": error_s,
            "pinned": len(pinned), "last_pinned_s": max(pinned, default=None),
            # none of these should happen: failures before the failure, answers from the failed member after
            # it, connections the lb chose for it once the API said ERROR (less the polling interval)
            "failed_before": failed_before,
            "answered_after": sum(answer == vm and start > failed_at + 0.01 for start, _, _, answer in conns),
            "chosen_after_error": sum(error_s is not None and t > error_s + 0.1 for t in chosen),
            "failed_connections": failed}


def run(args: argparse.Namespace) -> dict:
    cases = [(failure, monitor) for failure in args.failures for monitor in args.monitors]
    out = []
    victims = itertools.cycle(MEMBERS)
    history: dict[int, tuple[float, str]] = {}
    with tempfile.TemporaryDirectory(prefix="lbfail-") as tmp, LbCloud(Path(tmp), cases[0][1]) as cloud:
        for failure, monitor in cases:
            cloud.wait_status("ONLINE")
            cloud.set_monitor(monitor)
            time.sleep(2 * monitor.delay)          # checks running at the new monitor's pace
            runs = [one_run(cloud, next(victims), failure, args, history) for _ in range(args.repeat)]
            case = {"failure": failure, "monitor": str(monitor), "type": monitor.type, "delay": monitor.delay,
                    "timeout": monitor.timeout, "max_retries_down": monitor.fall, "bound_s": monitor.bound,
                    "runs": runs}
            for key in ("last_sent_s", "error_s", "failed", "pinned", "last_pinned_s"):
                values = [r[key] for r in runs if r[key] is not None]
                case[key] = {"median": statistics.median(values) if values else None,
                             "max": max(values) if values else None, "missing": len(runs) - len(values)}
            case["anomalies"] = {k: sum(r[k] for r in runs) for k in ("failed_before", "answered_after",
                                                                      "chosen_after_error")}
            out.append(case)
    return {"cases": out, "interval_s": args.interval}


def seconds(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} s"


def report(results: dict) -> str:
    rows, notes = [], []
    for c in results["cases"]:
        last, error, failed, pinned = c["last_sent_s"], c["error_s"], c["failed"], c["pinned"]
        within = "-" if last["max"] is None else ("yes" if last["max"] <= c["bound_s"] else "**no**")
        rows.append([c["failure"], c["type"], f"{c['delay']} s", f"{c['timeout']} s", c["max_retries_down"],
                     seconds(c["bound_s"]), seconds(last["median"]), seconds(last["max"]), within,
                     seconds(error["median"]), seconds(error["max"]), f"{failed['median']:g}", f"{failed['max']:g}",
                     f"{pinned['median']:g}", f"{pinned['max']:g}", seconds(c["last_pinned_s"]["max"])])
        if last["missing"] or error["missing"]:
            notes.append(f"**Warning**: {c['failure']}, {c['monitor']}: {last['missing']} runs without a failed "
                         f"connection, {error['missing']} without ERROR seen")
        if any(c["anomalies"].values()):
            notes.append(f"**Warning**: {c['failure']}, {c['monitor']}: {c['anomalies']}")
    table = benchlib.md_table(
        ["failure", "monitor", "delay", "timeout", "max_retries_down", "bound", "to the last connection chosen: p50",
         "max", "within the bound", "to ERROR (API): p50", "max", "failed: p50", "max", "pinned: p50", "max",
         "last pinned: max"], rows, align="llrrrrrrlrrrrrrr")
    runs = len(results["cases"][0]["runs"]) if results["cases"] else 0
    return "\n".join([
        table, "",
        f"{runs} runs per row; a connection every {results['interval_s'] * 1e3:g} ms; bound: delay x "
        "max_retries_down + timeout. From the failure: to the start of the last connection the lb app chose the "
        "failed member for (a failed connect), to the member's status ERROR in the API; the connections that "
        f"failed: chosen for the failed member, and pinned to it (a client port whose last connection, less than "
        f"{IDLE} s (the listener's idle timeout) + {EXPIRY:g} s before, went to that member: the lb's flows of that "
        "connection took it there).",
        *(["", *notes] if notes else [])])


def monitors(text: str) -> list[Monitor]:
    """TYPE:DELAY[:TIMEOUT[:MAX_RETRIES_DOWN]],... (timeout 1, max_retries_down 2 unless given)."""
    out = []
    for item in text.split(","):
        kind, *numbers = item.split(":")
        delay, timeout, fall = [int(n) for n in numbers] + [1, 1, 2][len(numbers):]
        out.append(Monitor(kind.upper(), delay, timeout, fall))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--monitors", type=monitors, default=monitors("TCP:1,HTTP:1,TCP:2,HTTP:2"),
                    help="TYPE:DELAY[:TIMEOUT[:MAX_RETRIES_DOWN]],... (timeout 1, max_retries_down 2 unless "
                         "given; default TCP:1,HTTP:1,TCP:2,HTTP:2)")
    ap.add_argument("--failures", type=lambda s: s.split(","), default=list(FAILURES),
                    help="kill (the server killed), silent (the address gone: nothing answers); default both")
    ap.add_argument("--repeat", type=int, default=5, help="runs per monitor and failure (default 5)")
    ap.add_argument("--interval", type=float, default=0.02, help="seconds between the client's connections (0.02)")
    ap.add_argument("--after", type=float, default=2.0,
                    help="seconds the client goes on after the bound has passed (default 2)")
    benchlib.add_output_args(ap, quick="a TCP monitor with delay 1 s, one run of each failure: a smoke test")
    args = ap.parse_args()
    if any(f not in FAILURES for f in args.failures):
        ap.error(f"--failures: {', '.join(FAILURES)}")
    if args.quick:
        args.monitors, args.repeat, args.after = monitors("TCP:1"), 1, 1.0
    return benchlib.run_main(args, run, report, root="namespaces, Open vSwitch", packages=("httpx",))


if __name__ == "__main__":
    sys.exit(main())
