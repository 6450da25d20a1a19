"""What every benchmark shares: timing, a description of the machine, /proc
readings, tables and JSON.

An entry point (``benchmarks/<subject>/<name>.py``) finds this module with

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # benchmarks/: benchlib
    import benchlib

Timing (in-process loops)
    :func:`loop_time` runs a callable N times with the garbage collector off
    (as ``timeit`` does) and returns the seconds; :func:`calibrate` finds the
    N for which one repeat lasts a given time; :func:`interleaved` times
    several callables in turn, repeat after repeat (so that background load
    and the machine's drifting speed hit them alike), and returns a
    :class:`Timing` per callable: seconds per call of every repeat, with
    ``best`` and ``median``. :func:`repeat_time` times a whole function
    (a loop of its own) ``repeat`` times.

The machine
    :func:`machine` returns date (UTC), CPU model, CPU count, kernel, Python,
    1-minute load average, git commit (flagging uncommitted changes under the
    code measured), the versions of the Python packages and the first line
    of ``--version`` of the tools that a benchmark names (os-ken, uvloop,
    Open vSwitch, iperf3, ...); :func:`machine_lines` renders it as the
    Markdown list that docs/benchmarks.md quotes.

/proc
    :func:`cpu_seconds` and :func:`rss_kib` of a process, :func:`cpu_times` per
    CPU and :func:`cpus_busy` between two snapshots, :func:`busy_seconds` (all
    CPUs' busy time since boot) and :func:`cpu_busy` (the machine's busy
    fraction over an interval).

Output
    :func:`md_table` (a Markdown table, columns padded), :func:`fmt_rate`,
    :func:`fmt_us`, :func:`ratio`, :func:`write_json`, and
    :func:`add_output_args` for the ``--quick`` and ``--json`` options every
    entry point has; :func:`run_main`, the end of an entry point's main()
    (root check, SIGTERM, machine, run, report, JSON).

py-spy
    :func:`py_spy` finds it, :func:`collapsed` reads its raw (collapsed stack)
    output.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import hashlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

#: the repository's root and its src/ (helpers run by another Python put it on sys.path)
REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def use_src() -> None:
    """Make ``import kumoflow`` work from the checkout, whatever Python runs the script."""
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))


# --- timing ---------------------------------------------------------------------------------------

_NOARG = object()


@dataclass
class Timing:
    """Seconds per call (or per repeat) of each repeat."""

    runs: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.runs)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def rate(self) -> float:
        """Calls per second of the best repeat."""
        return 1 / self.best


def loop_time(fn: Callable, n: int, arg: Any = _NOARG, keep_gc: bool = False) -> float:
    """Seconds for n calls of fn() (or fn(arg)), the garbage collector off unless keep_gc."""
    gc_was = gc.isenabled()
    if not keep_gc:
        gc.disable()
    try:
        if arg is _NOARG:
            start = time.perf_counter()
            for _ in range(n):
                fn()
        else:
            start = time.perf_counter()
            for _ in range(n):
                fn(arg)
        return time.perf_counter() - start
    finally:
        if gc_was:
            gc.enable()


def calibrate(fn: Callable, min_time: float, arg: Any = _NOARG, keep_gc: bool = False) -> int:
    """How many calls make one repeat last about min_time seconds."""
    n = 1
    while True:
        t = loop_time(fn, n, arg, keep_gc)
        if t >= min_time / 4:
            return max(1, round(n * min_time / t))
        n *= 4 if t < min_time / 40 else 2


def interleaved(fns: dict[str, Callable], min_time: float, repeat: int, arg: Any = _NOARG,
                keep_gc: bool = False) -> dict[str, Timing]:
    """Seconds per call of each function, `repeat` repeats of about min_time each,
    the functions taking turns within every repeat."""
    counts = {name: calibrate(fn, min_time, arg, keep_gc) for name, fn in fns.items()}
    out = {name: Timing() for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            out[name].runs.append(loop_time(fn, counts[name], arg, keep_gc) / counts[name])
    return out


def repeat_time(fn: Callable[[], Any], repeat: int) -> Timing:
    """Wall time of fn() (a loop of its own), `repeat` times: garbage collected
    before each, collector off during it."""
    out = Timing()
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            fn()
            out.runs.append(time.perf_counter() - start)
        finally:
            gc.enable()
    return out


def median_of(runs: Iterable[dict], key: str) -> Any:
    """The median of r[key] over the runs that have it (None when none has)."""
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


# --- the machine ----------------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "?"


def package_version(name: str) -> str | None:
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # noqa: BLE001 - informational only
        return None


def tool_version(*argv: str) -> str | None:
    """The first line a tool prints for --version (argv: the command, with its flag)."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else None


def git_commit(code: Sequence[str] = ("src",)) -> str:
    """Short commit of the checkout, "+ uncommitted changes in ..." when the code measured differs from it."""
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", *code], capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    if commit and dirty:
        commit += f" + uncommitted changes in {', '.join(code)}"
    return commit or "?"


def source_digest(directory: Path | str) -> str:
    """sha256 (16 hex digits) of a package's *.py files: ties a figure to the code measured."""
    digest = hashlib.sha256()
    for path in sorted(Path(directory).glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def machine(packages: Sequence[str] = (), tools: Sequence[Sequence[str]] = (),
            code: Sequence[str] = ("src",)) -> dict[str, Any]:
    """Where and on what a figure was measured.

    packages: Python distributions whose versions matter ("os-ken", "uvloop");
    tools: commands printing a version (("ovs-vswitchd", "--version"));
    code: paths of the repository whose uncommitted changes are flagged.
    """
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    out: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "nproc": os.cpu_count(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load": round(load, 2) if load is not None else None,
        "commit": git_commit(code),
    }
    for name in packages:
        out[name] = package_version(name) or "not installed"
    for argv in tools:
        out[argv[0]] = tool_version(*argv) or "not found"
    return out


def machine_lines(m: dict[str, Any]) -> list[str]:
    """The machine as a Markdown list, as docs/benchmarks.md quotes it."""
    lines = [f"- date: {m['date']}",
             f"- CPU: {m['cpu']}, `nproc` {m['nproc']}"
             + (f", load average {m['load']:.1f} at the start" if m.get("load") is not None else ""),
             f"- OS: {m['kernel']}",
             f"- Python: {m['python']}"]
    known = {"date", "cpu", "nproc", "kernel", "python", "load", "commit"}
    lines += [f"- {k}: {v}" for k, v in m.items() if k not in known]
    lines.append(f"- kumoflow: commit {m['commit']}")
    return lines


def command_line(argv: Sequence[str] | None = None) -> str:
    """How this script was run, from the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_text = str(script.relative_to(REPO))
    except ValueError:
        script_text = str(script)
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join([".venv/bin/python", script_text, *args])


# --- /proc ----------------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its threads, in seconds (0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int) -> int:
    """VmRSS of a process, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _stat_total() -> list[int]:
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def busy_seconds() -> float:
    """CPU-seconds all CPUs have spent busy since boot (user .. steal, less idle and iowait)."""
    fields = _stat_total()
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def cpu_busy(interval: float = 1.0) -> float:
    """The machine's busy fraction (0..1, all CPUs) over the next `interval` seconds."""
    def snap() -> tuple[int, int]:
        v = _stat_total()
        return sum(v), v[3] + v[4]
    t0, i0 = snap()
    time.sleep(interval)
    t1, i1 = snap()
    return 1 - (i1 - i0) / max(1, t1 - t0)


def cpu_times() -> list[list[int]]:
    """Per CPU: the fields of its /proc/stat line (user, nice, system, idle, iowait, irq, softirq, steal)."""
    with open("/proc/stat") as f:
        return [list(map(int, line.split()[1:9])) for line in f if line.startswith("cpu") and line[3].isdigit()]


def cpus_busy(before: list[list[int]], after: list[list[int]]) -> list[float]:
    """Busy fraction of each CPU between two cpu_times() snapshots."""
    out = []
    for b, a in zip(before, after):
        d = [y - x for x, y in zip(b, a)]
        out.append(round(1 - (d[3] + d[4]) / max(1, sum(d)), 3))
    return out


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (another process may take it before we bind)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --- output ---------------------------------------------------------------------------------------

def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A Markdown table, columns padded so it also reads in a terminal.

    align: one letter per column, "l" or "r"; by default the first column left, the others right.
    """
    rows = [[str(c) for c in r] for r in rows]
    header = [str(c) for c in header]
    align = align or "l" + "r" * (len(header) - 1)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if a == "l" else c.rjust(w)
                                 for c, w, a in zip(cells, widths, align)) + " |"
    rule = "|" + "|".join("-" * (w + 2) if a == "l" else "-" * (w + 1) + ":" for w, a in zip(widths, align)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def fmt_rate(v: float | None) -> str:
    """1,234,567 (one decimal below 100; "-" for none)."""
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def fmt_us(seconds: float) -> str:
    """Seconds as microseconds: two decimals below 100 µs."""
    us = seconds * 1e6
    return f"{us:,.2f}" if us < 100 else f"{us:,.0f}"


def ratio(a: float | None, b: float | None) -> str:
    """a / b as "1.23x" ("-" when either is missing or zero)."""
    return f"{a / b:.2f}x" if a and b else "-"


def write_json(path: str | Path, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=1, default=str) + "\n")


def add_output_args(ap: argparse.ArgumentParser, quick: str) -> argparse.ArgumentParser:
    """--quick (a run of seconds that goes through every part: a smoke test, not a figure) and --json FILE."""
    ap.add_argument("--quick", action="store_true", help=quick)
    ap.add_argument("--json", metavar="FILE", help="also write the results, with the machine, as JSON")
    return ap


def exit_on_sigterm() -> None:
    """SIGTERM becomes ``sys.exit(143)``, so that the run's ``finally``
    clauses clean up -- in this process only. A fork of it (pyroute2 forks
    to open a socket in a network namespace, then SIGTERMs the child) dies
    at once: unwinding its copy of the parent's stack would run the
    parent's cleanup, and tear down the topology the parent is building."""
    import signal

    pid = os.getpid()

    def terminated(*_) -> None:
        if os.getpid() != pid:
            os._exit(143)
        sys.exit(143)
    signal.signal(signal.SIGTERM, terminated)


def run_main(args: argparse.Namespace, run: Callable[[argparse.Namespace], dict],
             report: Callable[[dict], str], *, root: str | None = None, packages: Sequence[str] = (),
             tools: Sequence[Sequence[str]] = ()) -> int:
    """The end of an entry point's main(): refuse to run without root when the
    benchmark needs it (`root`: what for), make SIGTERM an exit (so that the
    run's ``finally`` clauses clean up), describe the machine, run, print the
    report after the machine and the command, and write --json (results,
    machine, arguments, command). Returns the exit status: 1 when the
    results say ``"failed"`` (a check of the benchmark's own), else 0."""
    if root and os.geteuid() != 0:
        print(f"needs root ({root})", file=sys.stderr)
        return 2
    exit_on_sigterm()
    m = machine(packages=packages, tools=tools)
    command = ("sudo " if root else "") + command_line()
    results = run(args)
    print("\n".join(["", *machine_lines(m), "", f"`{command}`", "", report(results)]))
    if getattr(args, "json", None):
        write_json(args.json, {"machine": m, "args": vars(args), "command": command, "results": results})
    return 1 if results.get("failed") else 0


def inet_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of data."""
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# --- py-spy ---------------------------------------------------------------------------------------

def py_spy() -> str | None:
    """py-spy beside this Python (a venv's) or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def collapsed(text: str) -> Iterator[tuple[list[str], int]]:
    """(frames, outermost first; samples) of each line of py-spy's raw output."""
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            yield stack.split(";"), int(count)
