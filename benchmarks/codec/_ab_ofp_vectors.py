#!/usr/bin/env python3
"""Two versions of kumoflow.ofp decoding os-ken's published vectors in one process, with os-ken beside them.

    .venv/bin/python benchmarks/codec/_ab_ofp_vectors.py --before 50ab544            # about 2 minutes
    .venv/bin/python benchmarks/codec/_ab_ofp_vectors.py --before HEAD~3 --only stats_reply

For a change to the codec: is it faster, and is anything slower? Run one
after the other, two benchmark runs on a shared machine differ by more
than most changes (other sessions' load moves os-ken and kumoflow alike,
but not in step). Here `kumoflow.ofp` as of the git revision --before
(extracted with `git archive`) and the one in the working tree are loaded
side by side as two packages (the codec imports only itself), and for each
vector os-ken, before and after take turns within every repeat. Times are
CPU time of the thread (`time.thread_time`), so time the process spent
waiting for a CPU is not counted; best of --repeat. Both versions must
decode every vector to the same objects (compared by repr), or the script
stops.

Prints per vector: os-ken's, before's and after's microseconds per
decode, both ratios to os-ken, and after / before (below 1: faster). The
ratios to os-ken are not bench_ofp_vectors.py's figures (that one times
wall-clock time, like a user would see); use them to compare the two
versions.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import io
import logging
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # benchmarks/: benchlib
import benchlib  # noqa: E402

from bench_ofp_vectors import VECTOR_DIR, _natural, osken_decode  # noqa: E402
from os_ken.ofproto import ofproto_parser, ofproto_v1_3_parser  # noqa: E402


def load_ofp(name: str, source: Path) -> object:
    """Import the package directory `source` (a copy of kumoflow/ofp) as `name`."""
    spec = importlib.util.spec_from_file_location(name, source / "__init__.py", submodule_search_locations=[str(source)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def extract(rev: str, into: Path) -> Path:
    """src/kumoflow/ofp as of git revision `rev`, under `into`."""
    tar = subprocess.run(["git", "-C", str(benchlib.REPO), "archive", rev, "src/kumoflow/ofp"],
                         check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(into)
    return into / "src" / "kumoflow" / "ofp"


def cpu_loop(fn, data: bytes, n: int) -> float:
    start = time.thread_time()
    for _ in range(n):
        fn(data)
    return time.thread_time() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="git revision of the kumoflow.ofp to compare with the working tree's")
    ap.add_argument("--only", metavar="TEXT[,TEXT...]", help="only the vectors whose file name contains one of these")
    ap.add_argument("--repeat", type=int, default=21, help="repeats of about --min-time each, best kept (default 21)")
    ap.add_argument("--min-time", type=float, default=0.005, help="CPU seconds per repeat (default 0.005)")
    args = ap.parse_args(argv)
    logging.getLogger("os_ken").setLevel(logging.CRITICAL)

    with tempfile.TemporaryDirectory() as tmp:
        before = load_ofp("ofp_before", extract(args.before, Path(tmp)))
        after = load_ofp("ofp_after", benchlib.SRC / "kumoflow" / "ofp")
        paths = sorted(VECTOR_DIR.glob("*.packet"), key=_natural)
        if args.only:
            paths = [p for p in paths if any(s in p.name for s in args.only.split(","))]
        print(f"# kumoflow.ofp {args.before} (before) and the working tree's (after), decoding os-ken's vectors\n")
        print(f"- command: `{benchlib.command_line(argv)}`")
        print(f"- timing: CPU time of the thread, best of {args.repeat} repeats of about {args.min_time} s, "
              "os-ken, before and after taking turns, gc off\n")
        rows = []
        gc.disable()
        for path in paths:
            data = path.read_bytes()
            if ofproto_v1_3_parser._MSG_PARSERS.get(ofproto_parser.header(data)[1]) is None:
                continue                    # os-ken has no parser for it
            if repr(before.parse(data)) != repr(after.parse(data)):
                raise SystemExit(f"{path.name}: before and after decode it differently")
            fns = {"os-ken": osken_decode, "before": before.parse, "after": after.parse}
            per_call = cpu_loop(after.parse, data, 200) / 200
            n = max(20, int(args.min_time / max(per_call, 1e-8)))
            best = {k: float("inf") for k in fns}
            for _ in range(args.repeat):
                for k, fn in fns.items():
                    best[k] = min(best[k], cpu_loop(fn, data, n) / n)
            rows.append((path.name.removesuffix(".packet"), best))
        gc.enable()
    rows.sort(key=lambda r: r[1]["os-ken"] / r[1]["after"])
    print(benchlib.md_table(
        ("vector", "os-ken µs", "before µs", "after µs", "os-ken / before", "os-ken / after", "after / before"),
        [(name, f"{b['os-ken'] * 1e6:.3f}", f"{b['before'] * 1e6:.3f}", f"{b['after'] * 1e6:.3f}",
          f"{b['os-ken'] / b['before']:.2f}x", f"{b['os-ken'] / b['after']:.2f}x", f"{b['after'] / b['before']:.3f}")
         for name, b in rows], align="lrrrrrr"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
