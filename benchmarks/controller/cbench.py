#!/usr/bin/env python3
"""cbench-style OpenFlow 1.3 load generator: emulated switches flooding a controller with packet-ins.

Each emulated switch connects to the controller, answers the handshake
(hello, features with a unique dpid, port description, barrier, echo,
get-config, role), has the controller learn a set of destination MACs,
then sends table-miss PACKET_INs (reason NO_MATCH, buffered, in_port
varying) whose source MAC is new each time (from a pool of --pool MACs)
and whose destination is learned, so a learning switch answers each with a
FLOW_MOD (or PACKET_OUT). Every FLOW_MOD (add) and PACKET_OUT counts as a
response, as in cbench.

  run (default)   load one controller:
                    cbench.py --controller tcp:127.0.0.1:6653 --mode throughput|latency|latency1
                    cbench.py --null                   # against the null responder
  compare         start kumoflow (l2), os-ken (_osken_simple_switch_13.py, with its
                  default native-thread hub and with eventlet) and the null
                  responder one after another on free loopback ports, run the
                  same loads against each, print a table with ratios
  scale           connect --switches (1000) keepalive-only switches to kumoflow
                  and os-ken; count them up in the controller log; report RSS

Modes: throughput keeps --window packet-ins outstanding per switch; latency
keeps one per switch (cbench's latency mode); latency1 is latency mode with
one switch. The switches live in --procs worker processes (one epoll loop
each). Run it with the Python that has kumoflow's dependencies and os-ken:
  .venv/bin/python benchmarks/controller/cbench.py compare
  .venv/bin/python benchmarks/controller/cbench.py compare --quick   # seconds: a smoke test
  .venv/bin/python benchmarks/controller/cbench.py scale --quick

--quick (every subcommand): 2 switches (scale: 50), 0.2 s warm-up and 0.5 s
measured, a pool of 1,000 MACs, 8 learned, no waiting for a quiet machine;
compare then runs kumoflow, os-ken (native threads) and the null responder
in throughput and latency1 modes, scale holds kumoflow and os-ken for 2 s
with a 1 s echo interval. Options given explicitly win.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))                             # benchmarks/: benchlib

import benchlib  # noqa: E402
import _cbench_ctl as cbench_ctl  # noqa: E402
import _cbench_profile as cbench_profile  # noqa: E402
from _cbench_ctl import Controller  # noqa: E402
from _cbench_switch import worker_main  # noqa: E402

LABEL = {"kumoflow": "kumoflow l2", "osken": "os-ken simple_switch_13 (native threads, default hub)",
         "osken-eventlet": "os-ken simple_switch_13 (eventlet hub)", "null": "null responder"}


# --- running the switches ---------------------------------------------------------------------

class Workers:
    """--procs worker processes sharing the switches round-robin, driven over pipes."""

    def __init__(self, address: str, switches: int, procs: int, opts: dict, cpus: list[int] | None) -> None:
        scheme, host, port = address.split(":")
        if scheme != "tcp":
            raise SystemExit(f"--controller must be tcp:HOST:PORT, got {address!r}")
        ctx = multiprocessing.get_context("fork")
        procs = max(1, min(procs, switches)) if switches else 1
        self.pipes, self.procs = [], []
        for w in range(procs):
            indexes = list(range(w, switches, procs))
            o = dict(opts, cpu=cpus[w % len(cpus)] if cpus else None)
            parent, child = ctx.Pipe()
            p = ctx.Process(target=worker_main, args=(child, host, int(port), indexes, o), daemon=True)
            p.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(p)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def send(self, msg: tuple) -> None:
        for pipe in self.pipes:
            pipe.send(msg)

    def gather(self, want: str, timeout: float) -> list[dict]:
        out = []
        deadline = time.monotonic() + timeout
        for pipe in self.pipes:
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"a switch worker did not report {want!r} within {timeout:.0f}s")
            kind, body = pipe.recv()
            if kind == "error":
                raise RuntimeError(f"switch worker failed:\n{body}")
            if kind != want:
                raise RuntimeError(f"switch worker said {kind!r}, expected {want!r}: {body}")
            out.append(body)
        return out

    def close(self) -> list[dict]:
        done = []
        try:
            self.send(("stop",))
            done = self.gather("done", 30)
        except (RuntimeError, OSError, EOFError):
            pass
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
        return done


def worker_opts(args: argparse.Namespace, mode: str) -> dict:
    return {"mode": mode, "window": args.window, "pool": args.pool, "ports": args.ports, "learn": args.learn,
            "dpid_base": 1, "unbuffered": getattr(args, "unbuffered", False), "connect_timeout": args.connect_timeout,
            "quiet": 0.3, "learn_timeout": 30.0, "stall": 10.0, "connect_batch": args.connect_batch}


def wait_quiet(limit: float, threshold: float = 0.25) -> float:
    """Wait (up to `limit` s) for a second in which the machine is < `threshold` CPUs busy; return that load."""
    deadline = time.monotonic() + limit
    while True:
        b0, t0 = benchlib.busy_seconds(), time.monotonic()
        time.sleep(1.0)
        load = (benchlib.busy_seconds() - b0) / (time.monotonic() - t0)
        if load < threshold or time.monotonic() >= deadline:
            return load


def run_load(address: str, args: argparse.Namespace, mode: str, ctl: Controller | None = None,
             cpus: list[int] | None = None, spy: str | None = None) -> dict:
    """Connect, learn, warm up, measure. Returns the aggregated result.

    Mode "latency1" is latency mode with a single switch (round trips
    without queueing behind other switches). With `spy` (a file path) and a
    controller, py-spy samples the controller during the measured interval.
    """
    if mode == "latency1":
        result = run_load(address, argparse.Namespace(**(vars(args) | {"switches": 1})), "latency", ctl, cpus, spy)
        result["mode"] = "latency1"
        return result
    workers = Workers(address, args.switches, args.procs, worker_opts(args, mode), cpus)
    try:
        ready = workers.gather("ready", args.connect_timeout + 30)
        featured = sum(r["featured"] for r in ready)
        if featured < args.switches:
            errs = [e for r in ready for e in r["errors"]]
            raise RuntimeError(f"only {featured}/{args.switches} switches finished the handshake; {errs[:3]}")
        workers.send(("learn",))
        learned = workers.gather("learned", 60)
        unlearned = sum(r["unlearned_switches"] for r in learned)
        if unlearned:
            raise RuntimeError(f"{unlearned} switches never got their learn packet-ins answered")
        start_at = time.monotonic() + 0.2
        workers.send(("go", start_at, args.warmup, args.duration))
        ctl_cpu = None
        time.sleep(max(0.0, start_at + args.warmup - time.monotonic()))
        c0, b0, t0 = ctl.cpu_seconds() if ctl else 0.0, benchlib.busy_seconds(), time.monotonic()
        spying = cbench_profile.record(ctl.pid, args.duration, spy) if (spy and ctl) else None
        time.sleep(max(0.0, start_at + args.warmup + args.duration - time.monotonic()))
        t1 = time.monotonic()
        busy = (benchlib.busy_seconds() - b0) / (t1 - t0)
        if ctl is not None:
            ctl_cpu = (ctl.cpu_seconds() - c0) / (t1 - t0)
        results = workers.gather("result", args.warmup + args.duration + 60)
        rss = ctl.rss_kib() if ctl is not None else None
        if spying is not None:
            try:
                spying.wait(30)
            except subprocess.TimeoutExpired:
                spying.kill()
                spying.wait()
    finally:
        workers.close()
    elapsed = statistics.mean(r["elapsed"] for r in results)
    responses = sum(r["responses"] for r in results)
    lat = sorted(x for r in results for x in r["latencies_ns"])
    out = {
        "mode": mode, "switches": args.switches, "responses": responses, "elapsed_s": elapsed,
        "packet_outs": sum(r["packet_outs"] for r in results),
        "rate": responses / elapsed if elapsed else 0.0,
        "per_switch_min": min(r["per_switch_min"] for r in results),
        "per_switch_max": max(r["per_switch_max"] for r in results),
        "stalls": sum(r["stalls"] for r in results), "closed": sum(r["closed"] for r in results),
        "generator_cpu": sum(r["cpu"] for r in results) / elapsed if elapsed else 0.0,
        "controller_cpu": ctl_cpu, "controller_rss_kib": rss, "machine_busy": busy,
        "per_cpu_second": responses / elapsed / ctl_cpu if ctl_cpu else None,
        "errors": [e for r in results for e in r["errors"]][:5],
    }
    if lat:
        out["lat_mean_us"] = statistics.fmean(lat) / 1000
        out["lat_p50_us"] = lat[len(lat) // 2] / 1000
        out["lat_p99_us"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1000
    return out


def describe(r: dict, label: str = "") -> str:
    s = (f"{label + ': ' if label else ''}{r['mode']}, {r['switches']} switches: {r['rate']:,.0f} responses/s "
         f"({r['responses']:,} in {r['elapsed_s']:.2f}s, {r['responses'] - r['packet_outs']:,} flow-mods "
         f"+ {r['packet_outs']:,} packet-outs; per switch {r['per_switch_min']:,}..{r['per_switch_max']:,})")
    if "lat_mean_us" in r and r["mode"].startswith("latency"):
        s += f"; latency mean {r['lat_mean_us']:.0f} us, p50 {r['lat_p50_us']:.0f} us, p99 {r['lat_p99_us']:.0f} us"
    s += f"; generator CPU {r['generator_cpu']:.0%}"
    if r.get("controller_cpu") is not None:
        s += f", controller CPU {r['controller_cpu']:.0%}"
        other = r["machine_busy"] - r["generator_cpu"] - r["controller_cpu"]
        s += f", other processes {max(0.0, other):.0%} of {os.cpu_count()} CPUs"
    if r["stalls"] or r["closed"]:
        s += f"; WARNING stalls={r['stalls']} closed={r['closed']} {r['errors']}"
    return s


# --- CPU placement ----------------------------------------------------------------------------

def placement(args: argparse.Namespace) -> tuple[int | None, list[int] | None]:
    """With --pin: the controller on CPU 0, the switches on the others."""
    if not args.pin:
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[0], cpus[1:]


# --- subcommands -------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    ctl_cpu, gen_cpus = placement(args)
    ctl = None
    address = args.controller
    if args.null:
        ctl = Controller("null", cpu=ctl_cpu).start()
        address = ctl.address
        print(f"null responder: {ctl.command()} (pid {ctl.pid})")
    try:
        r = run_load(address, args, args.mode, ctl, gen_cpus)
    finally:
        if ctl is not None:
            ctl.stop()
            ctl.cleanup()
    print(describe(r, "null responder" if args.null else address))
    if args.json:
        benchlib.write_json(args.json, {"machine": machine_info(), "command": benchlib.command_line(),
                                        "result": r})
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    ctl_cpu, gen_cpus = placement(args)
    kinds = args.controllers.split(",")
    modes = args.modes.split(",")
    if args.py_spy:
        Path(args.py_spy).mkdir(parents=True, exist_ok=True)
    runs: dict[tuple[str, str], list[dict]] = {}
    commands: dict[str, str] = {}
    failed = 0
    for rep in range(args.repeat):
        for mode in modes:
            for kind in kinds:
                profile = args.profile if (kind == "kumoflow" and args.profile and mode == modes[0] and rep == 0) else None
                ctl = Controller(kind, cpu=ctl_cpu, profile=profile)
                commands[kind] = ctl.command()
                load_before = wait_quiet(args.wait_quiet) if args.wait_quiet else None
                try:
                    ctl.start()
                    time.sleep(0.5)
                    spy = (str(Path(args.py_spy) / f"{kind}-{mode}.collapsed")
                           if args.py_spy and rep == 0 and kind != "null" else None)
                    r = run_load(ctl.address, args, mode, ctl, gen_cpus, spy)
                    if spy and Path(spy).exists():
                        r["profile"] = spy
                        print(f"--- py-spy profile of {LABEL[kind]} ({mode}), {spy}\n"
                              f"{cbench_profile.summarize(spy, args.py_spy_top)}", flush=True)
                except RuntimeError as exc:
                    print(f"{LABEL[kind]} {mode}: FAILED: {exc}\n--- log tail ---\n{ctl.log_tail()}", file=sys.stderr)
                    r = None
                    failed += 1
                finally:
                    ctl.stop()
                    ctl.cleanup(keep_log=args.keep_logs)
                if r is not None:
                    r["load_before"] = load_before
                    runs.setdefault((kind, mode), []).append(r)
                    print(describe(r, LABEL[kind]), flush=True)
    print()
    print(machine_line())
    print(f"load: {args.switches} switches, {args.duration:g}s measured after {args.warmup:g}s warmup, "
          f"throughput window {args.window}/switch, pool {args.pool} MACs/switch, {args.procs} generator process(es), "
          f"{args.repeat} run(s) each, best shown"
          f"{', controller pinned to CPU %d, generator to %s' % (ctl_cpu, gen_cpus) if ctl_cpu is not None else ''}")
    print()
    print(compare_table(runs, kinds, modes))
    if args.json:
        benchlib.write_json(args.json, {
            "machine": machine_info(), "command": benchlib.command_line(),
            "args": {k: v for k, v in vars(args).items() if k != "func"},
            "commands": commands, "runs": {f"{k}/{m}": rs for (k, m), rs in runs.items()}})
    return 1 if failed else 0


def best(rs: list[dict] | None) -> dict | None:
    """The run of highest rate (the one least disturbed by anything else on the machine)."""
    return max(rs, key=lambda r: r["rate"]) if rs else None


def compare_table(runs: dict, kinds: list[str], modes: list[str]) -> str:
    results = {key: best(rs) for key, rs in runs.items()}

    def get(kind, mode, key, fmt):
        r = results.get((kind, mode))
        return fmt.format(r[key]) if r and r.get(key) is not None else "—"

    def other(kind, mode):
        r = results.get((kind, mode))
        if not r or r.get("controller_cpu") is None:
            return "—"
        return f"{max(0.0, r['machine_busy'] - r['generator_cpu'] - r['controller_cpu']):.2f}"

    def rate(kind, mode):
        rs = runs.get((kind, mode))
        if not rs:
            return "—"
        text = f"{best(rs)['rate']:,.0f}"
        if len(rs) > 1:
            text += f" (median {statistics.median(r['rate'] for r in rs):,.0f})"
        return text

    n = next((r["switches"] for (k, m), r in results.items() if m == "latency"), None)
    head = ["controller"]
    if "throughput" in modes:
        head += ["throughput (responses/s)", "controller CPU", "responses per controller CPU-second"]
    if "latency" in modes:
        head += [f"latency mode, {n} switches (responses/s)", "mean", "p50", "p99"]
    if "latency1" in modes:
        head += ["latency, 1 switch: mean", "p50", "p99"]
    head.append("other processes' CPU during " + " / ".join(modes))
    rows = []
    for kind in kinds:
        cells = [LABEL[kind]]
        if "throughput" in modes:
            cells += [rate(kind, "throughput"), get(kind, "throughput", "controller_cpu", "{:.0%}"),
                      get(kind, "throughput", "per_cpu_second", "{:,.0f}")]
        if "latency" in modes:
            cells += [rate(kind, "latency")] + [get(kind, "latency", k, "{:,.0f} µs")
                                                for k in ("lat_mean_us", "lat_p50_us", "lat_p99_us")]
        if "latency1" in modes:
            cells += [get(kind, "latency1", k, "{:,.0f} µs") for k in ("lat_mean_us", "lat_p50_us", "lat_p99_us")]
        cells.append(" / ".join(other(kind, m) for m in modes))
        rows.append(cells)
    k, kl, k1 = (results.get(("kumoflow", m)) for m in ("throughput", "latency", "latency1"))
    lines = [benchlib.md_table(head, rows), ""]
    for peer in ("osken", "osken-eventlet"):
        o, ol, o1 = (results.get((peer, m)) for m in ("throughput", "latency", "latency1"))
        if k and o and o["rate"]:
            lines.append(f"- throughput kumoflow / {LABEL[peer]}: **{k['rate'] / o['rate']:.2f}x** (goal ≥ 5x)"
                         + (f"; per controller CPU-second {k['per_cpu_second'] / o['per_cpu_second']:.2f}x"
                            if k.get("per_cpu_second") and o.get("per_cpu_second") else ""))
        if kl and ol and ol.get("lat_mean_us"):
            lines.append(f"- latency kumoflow / {LABEL[peer]}: mean **{kl['lat_mean_us'] / ol['lat_mean_us']:.2f}**, "
                         f"p50 {kl['lat_p50_us'] / ol['lat_p50_us']:.2f}, p99 {kl['lat_p99_us'] / ol['lat_p99_us']:.2f} "
                         f"(goal < 0.33); latency-mode rate {kl['rate'] / ol['rate']:.2f}x")
        if k1 and o1:
            lines.append(f"- latency with 1 switch, kumoflow / {LABEL[peer]}: mean **{k1['lat_mean_us'] / o1['lat_mean_us']:.2f}**, "
                         f"p50 {k1['lat_p50_us'] / o1['lat_p50_us']:.2f}, p99 {k1['lat_p99_us'] / o1['lat_p99_us']:.2f}")
    n = results.get(("null", "throughput"))
    if n and k:
        lines.append(f"- generator ceiling (null responder) / kumoflow throughput: {n['rate'] / k['rate']:.1f}x")
    return "\n".join(lines)


def cmd_scale(args: argparse.Namespace) -> int:
    ctl_cpu, gen_cpus = placement(args)
    kinds = args.controllers.split(",")
    head = ["controller", "switches up (log)", "went down", "echo requests answered (min per switch)",
            "time to all up (SYNs dropped)", f"RSS idle, 0 switches", f"RSS idle, {args.switches:,} switches",
            "per switch"]
    rows = []
    results = []
    ok = True
    for kind in kinds:
        ctl = Controller(kind, cpu=ctl_cpu, echo_interval=args.echo_interval)
        print(f"{kind}: {ctl.command()}", flush=True)
        workers = None
        if args.wait_quiet:
            wait_quiet(args.wait_quiet)
        try:
            ctl.start()
            time.sleep(args.settle)
            rss0 = ctl.rss_kib()
            overflows0 = cbench_ctl.listen_overflows()
            t0 = time.monotonic()
            workers = Workers(ctl.address, args.switches, args.procs, worker_opts(args, "hold"), gen_cpus)
            ready = workers.gather("ready", args.connect_timeout + 60)
            deadline = time.monotonic() + args.connect_timeout
            while ctl.count_up() < args.switches and time.monotonic() < deadline:
                time.sleep(0.1)
            up_time = time.monotonic() - t0
            overflows = cbench_ctl.listen_overflows() - overflows0
            up_at_connect = ctl.count_up()
            # Hold long enough for the controller's keepalive to echo every idle switch twice.
            time.sleep(args.hold)
            rss1 = ctl.rss_kib()
            up, down = ctl.count_up(), ctl.count_down()
            done = workers.close()
            workers = None
            echoes = sum(d["echoes"] for d in done)
            min_echoes = min((d["min_echoes"] for d in done), default=0)
            closed = sum(d["closed"] for d in done) + sum(r["closed"] for r in ready)
            per = (rss1 - rss0) / max(1, up)
            all_up = up_at_connect >= args.switches and down == 0 and closed == 0 and min_echoes > 0
            ok &= all_up
            print(f"{LABEL[kind]}: {up}/{args.switches} up ({up_time:.1f}s), {down} down, {closed} closed by "
                  f"the controller, {echoes} echo requests answered (at least {min_echoes} per switch); RSS {rss0 / 1024:.1f} MiB "
                  f"-> {rss1 / 1024:.1f} MiB ({per:.1f} KiB/switch); {overflows} SYNs dropped on a full accept queue",
                  flush=True)
            rows.append([LABEL[kind], f"{up}/{args.switches}", down, f"{echoes:,} (≥ {min_echoes})",
                         f"{up_time:.1f} s ({overflows})", f"{rss0 / 1024:.1f} MiB", f"{rss1 / 1024:.1f} MiB",
                         f"{per:.1f} KiB"])
            results.append({"controller": kind, "command": ctl.command(), "up": up, "down": down,
                            "closed": closed, "echoes": echoes, "min_echoes": min_echoes, "up_s": up_time,
                            "syns_dropped": overflows, "rss0_kib": rss0, "rss1_kib": rss1})
        except RuntimeError as exc:
            ok = False
            print(f"{kind}: FAILED: {exc}\n--- log tail ---\n{ctl.log_tail()}", file=sys.stderr)
        finally:
            if workers is not None:
                workers.close()
            ctl.stop()
            ctl.cleanup(keep_log=args.keep_logs)
    print()
    print(machine_line())
    print(f"{args.switches} switches connected {args.connect_batch} at a time, then held {args.hold:g}s idle; "
          f"controller keepalive echo interval {args.echo_interval:g}s")
    print()
    print(benchlib.md_table(head, rows))
    if args.json:
        benchlib.write_json(args.json, {"machine": machine_info(), "command": benchlib.command_line(),
                                        "args": {k: v for k, v in vars(args).items() if k != "func"},
                                        "results": results})
    return 0 if ok else 1


# --- machine ---------------------------------------------------------------------------------

def machine_info() -> dict:
    return benchlib.machine(packages=("uvloop", "os-ken", "eventlet"),
                            code=("src/kumoflow/controller", "src/kumoflow/apps", "src/kumoflow/ofp"))


def machine_line() -> str:
    m = machine_info()
    return (f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['kernel']}, Python {m['python']}, uvloop {m['uvloop']}, "
            f"os-ken {m['os-ken']}, eventlet {m['eventlet']}; kumoflow {m['commit']}; {m['date']}; "
            f"command: {benchlib.command_line()}")


# --- command line -----------------------------------------------------------------------------

def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def build_parser() -> argparse.ArgumentParser:
    def add_common(common: argparse.ArgumentParser, switches: int = 16) -> argparse.ArgumentParser:
        common.add_argument("--switches", type=int, default=switches, help=f"emulated switches (default {switches})")
        common.add_argument("--duration", type=float, default=10.0, help="measured seconds (default 10)")
        common.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring (default 2)")
        common.add_argument("--window", type=int, default=256,
                            help="throughput mode: outstanding packet-ins per switch (default 256: the pipe stays full)")
        common.add_argument("--pool", type=int, default=100_000, help="source MACs per switch (default 100000, as cbench -M)")
        common.add_argument("--learn", type=int, default=64, help="learned destination MACs per switch (default 64)")
        common.add_argument("--ports", type=int, default=4, help="ports per switch (default 4)")
        common.add_argument("--procs", type=int, default=1, help="generator processes (default 1)")
        common.add_argument("--pin", action=argparse.BooleanOptionalAction, default=False,
                            help="pin the controller to CPU 0 and the generator to the other CPUs (default off)")
        common.add_argument("--wait-quiet", type=float, default=60.0, metavar="S",
                            help="before each run wait up to S seconds for other processes to leave the CPUs "
                                 "(< 0.25 CPU busy; default 60; 0: don't wait)")
        common.add_argument("--connect-timeout", type=float, default=60.0)
        common.add_argument("--connect-batch", type=int, default=32,
                            help="switches connecting at once (default 32; os-ken's accept backlog is 50)")
        common.add_argument("--keep-logs", action="store_true", help="keep the controllers' log files")
        benchlib.add_output_args(common, "seconds: a smoke test, not a figure (see the description)")
        return common

    p = argparse.ArgumentParser(prog="cbench.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="command")
    run = sub.add_parser("run", help="load one controller (the default)")
    add_common(run)
    run.add_argument("--controller", default="tcp:127.0.0.1:6653", metavar="tcp:HOST:PORT")
    run.add_argument("--mode", choices=["throughput", "latency", "latency1"], default="throughput",
                     help="latency1: latency mode with a single switch")
    run.add_argument("--null", action="store_true", help="start the null responder and load it")
    run.add_argument("--unbuffered", action="store_true",
                     help="throughput mode: unbuffered packet-ins (answers are flow-mod + packet-out)")
    run.set_defaults(func=cmd_run)
    cmp = sub.add_parser("compare", help="kumoflow vs os-ken vs null, one run")
    add_common(cmp)
    cmp.add_argument("--controllers", default="kumoflow,osken,osken-eventlet,null",
                     help="comma-separated, of: kumoflow, osken, osken-eventlet, null (default all)")
    cmp.add_argument("--modes", default="throughput,latency,latency1",
                     help="of: throughput, latency (--switches switches), latency1 (one switch)")
    cmp.add_argument("--repeat", type=int, default=1, help="runs of each (controller, mode), interleaved; best shown")
    cmp.add_argument("--py-spy", metavar="DIR", help="sample kumoflow and os-ken with py-spy during their first "
                     "measured runs; write DIR/KIND-MODE.collapsed and print the top functions")
    cmp.add_argument("--py-spy-top", type=int, default=20, metavar="N")
    cmp.add_argument("--profile", metavar="FILE.prof", help="run kumoflow's first load under cProfile, write FILE")
    cmp.set_defaults(func=cmd_compare)
    sc = sub.add_parser("scale", help="how many idle switches a controller holds; RSS")
    add_common(sc, switches=1000)
    sc.add_argument("--controllers", default="kumoflow,osken,osken-eventlet")
    sc.add_argument("--hold", type=float, default=12.0, help="seconds to hold the switches (default 12)")
    sc.add_argument("--echo-interval", type=float, default=5.0, help="controller keepalive interval (default 5)")
    sc.add_argument("--settle", type=float, default=1.0, help="seconds after start before the idle RSS")
    sc.set_defaults(func=cmd_scale)
    return p


#: what --quick changes, unless the option is given: for every subcommand, then per subcommand
QUICK = {"switches": 2, "duration": 0.5, "warmup": 0.2, "pool": 1000, "learn": 8, "wait_quiet": 0.0,
         "connect_timeout": 20.0}
QUICK_BY_COMMAND = {"compare": {"controllers": "kumoflow,osken,null", "modes": "throughput,latency1"},
                    "scale": {"switches": 50, "controllers": "kumoflow,osken", "hold": 2.0, "echo_interval": 1.0,
                              "settle": 0.3}}


def apply_quick(args: argparse.Namespace, argv: list[str]) -> None:
    def given(dest: str) -> bool:
        opt = "--" + dest.replace("_", "-")
        return any(a == opt or a.startswith(opt + "=") for a in argv)
    for dest, value in (QUICK | QUICK_BY_COMMAND.get(args.command, {})).items():
        if not given(dest):
            setattr(args, dest, value)


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C / SIGINT must reach the cleanup (stopping controllers) even when started as a background job,
    # which inherits SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "compare", "scale", "-h", "--help"):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    if args.quick:
        apply_quick(args, argv)
    if getattr(args, "unbuffered", False) and args.mode != "throughput":
        raise SystemExit("--unbuffered is for throughput mode (two answers per packet-in)")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
