#!/usr/bin/env python3
"""os-ken's published OpenFlow 1.3 test vectors: decode and encode, kumoflow side by side with os-ken.

    .venv/bin/python benchmarks/codec/bench_ofp_vectors.py             # every vector (a few minutes)
    .venv/bin/python benchmarks/codec/bench_ofp_vectors.py --quick     # seconds: a smoke test
    .venv/bin/python benchmarks/codec/bench_ofp_vectors.py --only flow_mod,meter --profile

The vectors are the of13 ``*.packet`` files that os-ken ships as test
data (``os_ken/tests/packet_data/of13``, 105 messages: os-ken's own, Open
vSwitch's ovs-ofctl and libofproto's); next to them os-ken ships one JSON
file each (``os_ken/tests/unit/ofproto/json/of13/<name>.json``), what its
own parser test decodes to and encodes from.

Per vector, in one process, the same bytes for both libraries:

- **decode** (bytes -> objects): kumoflow ``ofp.parse(data)``; os-ken
  ``ofproto_parser.header(data)`` + ``ofproto_parser.msg(dp, version,
  msg_type, msg_len, xid, data)`` (what its Datapath does per message) with
  a ``ProtocolDesc`` as the datapath. os-ken parses only what a controller
  receives (and flow-mod); for a message it has no parser for, its column
  is "-".
- **encode** (an object -> bytes): kumoflow ``msg.pack()`` of the message it
  decoded; os-ken ``msg.serialize()`` of the message it decoded, or, where
  it has no parser, of the message built from the vector's JSON with
  ``ofproto_parser.ofp_msg_from_jsondict`` (os-ken's own test does the
  same). os-ken serializes only what a controller sends (and the symmetric
  messages); where its serializer does not give back the vector's bytes
  (for switch-to-controller messages it writes the 8-byte header only) its
  column is "-". Object construction is not timed here (bench_ofp.py times
  it, on three workloads).

Checked before timing, the script stops if not: kumoflow decodes every
vector and re-encodes it byte for byte; os-ken's decode of a vector gives
the published JSON (as os-ken's test checks); os-ken's serialize, where it is
timed, gives the vector's bytes, twice in a row.

Timing (benchlib.interleaved): per vector and operation, kumoflow and
os-ken repeats interleaved, each a loop of N calls (N calibrated so a
repeat lasts --min-time) with the garbage collector off; best of --repeat.
With --runs N every vector is measured in N passes over the whole set
(a burst of load on a shared machine then hits one pass, not all), and
each comparison reports the pass with the median ratio.
The table lists every vector, a second table the slowest ratios; the
ratios, not the rates, are the figure on a shared machine.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import pstats
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # benchmarks/: benchlib
import benchlib  # noqa: E402

from kumoflow import ofp  # noqa: E402

import os_ken  # noqa: E402
from os_ken.ofproto import ofproto_parser, ofproto_protocol, ofproto_v1_3_parser  # noqa: E402

GOAL = 3.0
OSKEN = Path(os_ken.__file__).resolve().parent
VECTOR_DIR = OSKEN / "tests" / "packet_data" / "of13"
JSON_DIR = OSKEN / "tests" / "unit" / "ofproto" / "json" / "of13"
DP = ofproto_protocol.ProtocolDesc(version=4)


def osken_decode(data: bytes) -> Any:
    version, msg_type, msg_len, xid = ofproto_parser.header(data)
    return ofproto_parser.msg(DP, version, msg_type, msg_len, xid, data)


@dataclass
class Vector:
    name: str
    data: bytes
    kind: str                                   # kumoflow's class name
    kf_msg: Any
    ok_msg: Any = None                          # what os-ken serializes, None if it cannot
    ok_decodes: bool = False
    ok_source: str = "-"                        # "decoded" or "json" (where ok_msg came from)
    notes: list[str] = field(default_factory=list)

    def kf_decode(self) -> Callable[[], Any]:
        parse, data = ofp.parse, self.data
        return lambda: parse(data)

    def ok_decode(self) -> Callable[[], Any] | None:
        if not self.ok_decodes:
            return None
        data = self.data
        return lambda: osken_decode(data)

    def kf_encode(self) -> Callable[[], Any]:
        return self.kf_msg.pack

    def ok_encode(self) -> Callable[[], Any] | None:
        return self.ok_msg.serialize if self.ok_msg is not None else None


def load_vectors(only: list[str] | None) -> list[Vector]:
    paths = sorted(VECTOR_DIR.glob("*.packet"), key=_natural)
    if not paths:
        raise SystemExit(f"no vectors in {VECTOR_DIR}: is os-ken installed with its test data?")
    if only:
        paths = [p for p in paths if any(s in p.name for s in only)]
    vectors = []
    for path in paths:
        data = path.read_bytes()
        msg = ofp.parse(data)
        if msg.pack() != data or ofp.parse(msg.pack()) != msg:
            raise SystemExit(f"{path.name}: kumoflow does not round-trip it byte for byte")
        v = Vector(path.name, data, type(msg).__name__, msg)
        _osken_side(v, json.loads((JSON_DIR / (path.name + ".json")).read_text()))
        vectors.append(v)
    return vectors


def _natural(path: Path) -> tuple:
    """4-2 before 4-10: os-ken's numbering, then the other sources by name."""
    parts = path.name.split("-", 2)
    if parts[0] == "4" and parts[1].isdigit():
        return (0, int(parts[1]), path.name)
    return (1, 0, path.name)


def _osken_side(v: Vector, published: dict) -> None:
    """What os-ken can do with the vector, checked against its own JSON and the bytes."""
    version, msg_type, _, xid = ofproto_parser.header(v.data)
    decoded = None
    if ofproto_v1_3_parser._MSG_PARSERS.get(msg_type) is not None:
        decoded = osken_decode(v.data)
        if decoded.to_jsondict() != published:
            raise SystemExit(f"{v.name}: os-ken's decode differs from its published JSON")
        v.ok_decodes = True
    else:
        v.notes.append("os-ken: no parser")
    if decoded is not None:
        candidate, source = decoded, "decoded"
    else:
        body = json.loads(json.dumps(published))
        body[next(iter(body))].pop("xid", None)
        candidate, source = ofproto_parser.ofp_msg_from_jsondict(DP, body), "json"
        candidate.set_xid(xid)
    try:
        candidate.serialize()
        first = bytes(candidate.buf)
        candidate.serialize()
        same = first == bytes(candidate.buf) == v.data
    except Exception as exc:    # noqa: BLE001 - os-ken raises what it raises; the column says "-"
        v.notes.append(f"os-ken: serialize raises {type(exc).__name__}")
        return
    if same:
        v.ok_msg, v.ok_source = candidate, source
    else:
        v.notes.append(f"os-ken: serialize gives {len(first)} of {len(v.data)} bytes")


@dataclass
class Result:
    vector: str
    size: int
    kind: str
    op: str
    kumoflow_per_s: float
    osken_per_s: float | None
    run_ratios: list[float] = field(default_factory=list)    # every pass's ratio (--runs)

    @property
    def ratio(self) -> float | None:
        return self.kumoflow_per_s / self.osken_per_s if self.osken_per_s else None


def measure(vectors: list[Vector], min_time: float, repeat: int, keep_gc: bool) -> list[Result]:
    results = []
    for v in vectors:
        for op, kf, ok in (("decode", v.kf_decode(), v.ok_decode()), ("encode", v.kf_encode(), v.ok_encode())):
            fns = {"kumoflow": kf} if ok is None else {"kumoflow": kf, "os-ken": ok}
            t = benchlib.interleaved(fns, min_time, repeat, keep_gc=keep_gc)
            results.append(Result(v.name, len(v.data), v.kind, op, t["kumoflow"].rate,
                                  t["os-ken"].rate if ok is not None else None))
    return results


def median_of_runs(runs: list[list[Result]]) -> list[Result]:
    """Per comparison, the pass whose ratio is the median (the lower middle one
    for an even count), with every pass's ratio kept in run_ratios."""
    out = []
    for same in zip(*runs):
        if same[0].ratio is None:
            out.append(same[0])
            continue
        ranked = sorted(same, key=lambda r: r.ratio)
        pick = ranked[(len(ranked) - 1) // 2]
        out.append(Result(pick.vector, pick.size, pick.kind, pick.op, pick.kumoflow_per_s, pick.osken_per_s,
                          [r.ratio for r in same]))
    return out


def machine() -> dict[str, Any]:
    m = benchlib.machine(packages=("os-ken",), code=("src/kumoflow/ofp",))
    m["kumoflow.ofp source sha256"] = benchlib.source_digest(Path(ofp.__file__).resolve().parent)
    return m


def _ratio(r: float | None) -> str:
    return f"{r:.2f}x" if r is not None else "-"


def _table(vectors: list[Vector], results: list[Result], goal: float) -> str:
    by = {(r.vector, r.op): r for r in results}
    rows = []
    for v in vectors:
        d, e = by[(v.name, "decode")], by[(v.name, "encode")]
        flag = " ".join(f"{op} BELOW" for op, r in (("decode", d), ("encode", e))
                        if r.ratio is not None and r.ratio < goal)
        rows.append((v.name.removesuffix(".packet"), f"{len(v.data):,}", v.kind,
                     benchlib.fmt_rate(d.kumoflow_per_s), benchlib.fmt_rate(d.osken_per_s), _ratio(d.ratio),
                     benchlib.fmt_rate(e.kumoflow_per_s), benchlib.fmt_rate(e.osken_per_s), _ratio(e.ratio),
                     flag))
    return benchlib.md_table(("vector", "bytes", "kumoflow class", "decode kf /s", "os-ken /s", "ratio",
                              "encode kf /s", "os-ken /s", "ratio", f"< {goal:g}x"), rows, align="lrlrrrrrrl")


def _slowest(results: list[Result], n: int, goal: float) -> str:
    compared = sorted((r for r in results if r.ratio is not None), key=lambda r: r.ratio)
    rows = [(r.vector.removesuffix(".packet"), r.op, r.kind, benchlib.fmt_rate(r.kumoflow_per_s),
             benchlib.fmt_rate(r.osken_per_s), _ratio(r.ratio), "met" if r.ratio >= goal else "BELOW")
            for r in compared[:n]]
    return benchlib.md_table(("vector", "op", "kumoflow class", "kumoflow /s", "os-ken /s", "kumoflow / os-ken",
                              f"goal {goal:g}x"), rows, align="lllrrrr")


def _summary(vectors: list[Vector], results: list[Result], goal: float) -> list[str]:
    lines = [f"- vectors: {len(vectors)} (of13 *.packet in {VECTOR_DIR.relative_to(OSKEN.parent)})"]
    for op in ("decode", "encode"):
        ratios = [r.ratio for r in results if r.op == op and r.ratio is not None]
        alone = sum(1 for r in results if r.op == op and r.ratio is None)
        below = sum(1 for x in ratios if x < goal)
        if ratios:
            lines.append(f"- {op}: compared on {len(ratios)} vectors (os-ken cannot {op} the other {alone}); "
                         f"kumoflow / os-ken min {min(ratios):.2f}x, median {statistics.median(ratios):.2f}x, "
                         f"max {max(ratios):.2f}x; {below} below {goal:g}x")
        else:
            lines.append(f"- {op}: os-ken cannot {op} any of these vectors")
    return lines


def profile(vectors: list[Vector], seconds: float, top: int) -> None:
    for v in vectors:
        for op, fn in (("decode", v.kf_decode()), ("encode", v.kf_encode())):
            n = benchlib.calibrate(fn, seconds)
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(n):
                fn()
            prof.disable()
            print(f"\n### cProfile, kumoflow {op}: {v.name} ({n} calls), top {top} by own time\n")
            pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    benchlib.add_output_args(ap, "seconds (0.005 s per repeat, 2 repeats): a smoke test, not a figure")
    ap.add_argument("--min-time", type=float, default=None, help="seconds per timed repeat (default 0.05)")
    ap.add_argument("--repeat", type=int, default=None, help="repeats, best kept (default 9)")
    ap.add_argument("--runs", type=int, default=1,
                    help="passes over every vector; each comparison reports the pass with the median ratio "
                         "(default 1)")
    ap.add_argument("--only", metavar="TEXT[,TEXT...]",
                    help="only the vectors whose file name contains one of these")
    ap.add_argument("--slowest", type=int, default=10, help="rows in the table of the slowest ratios (default 10)")
    ap.add_argument("--goal", type=float, default=GOAL, help=f"target kumoflow/os-ken ratio (default {GOAL:g})")
    ap.add_argument("--check", action="store_true", help="exit 1 when a ratio is below --goal")
    ap.add_argument("--gc", action="store_true", help="leave the garbage collector on while timing")
    ap.add_argument("--profile", action="store_true", help="also cProfile kumoflow's side of each vector")
    args = ap.parse_args(argv)
    min_time = args.min_time or (0.005 if args.quick else 0.05)
    repeat = args.repeat or (2 if args.quick else 9)

    # os-ken logs (with a traceback) every message it cannot parse; the checks above ask first
    logging.getLogger("os_ken").setLevel(logging.CRITICAL)
    vectors = load_vectors(args.only.split(",") if args.only else None)   # stops if a check fails
    if not vectors:
        raise SystemExit(f"no vector matches --only {args.only}")
    m = machine()
    print("# OpenFlow 1.3 codec on os-ken's published vectors: kumoflow vs os-ken\n")
    print("\n".join(benchlib.machine_lines(m)))
    print(f"- command: `{benchlib.command_line(argv)}`")
    runs = f"; {args.runs} passes over every vector, the pass with the median ratio shown" if args.runs > 1 else ""
    print(f"- timing: best of {repeat} x {min_time} s per vector and operation{runs}, kumoflow and os-ken interleaved, "
          f"gc {'on' if args.gc else 'off'} while timing; encode does not include building the message")
    print("- checked first: kumoflow round-trips every vector byte for byte; os-ken's decode equals its "
          "published JSON; os-ken's serialize gives the vector's bytes where it is timed\n")

    results = median_of_runs([measure(vectors, min_time, repeat, args.gc) for _ in range(args.runs)])
    print(_table(vectors, results, args.goal))
    print(f"\n## The {args.slowest} smallest ratios\n")
    print(_slowest(results, args.slowest, args.goal))
    print()
    print("\n".join(_summary(vectors, results, args.goal)))
    print("- \"-\": os-ken has no parser for the message (decode) or no serializer that gives its bytes (encode)")

    if args.json:
        benchlib.write_json(args.json, {
            "machine": m, "command": benchlib.command_line(argv), "min_time": min_time, "repeat": repeat,
            "runs": args.runs, "gc": args.gc, "goal": args.goal,
            "vectors": [{"vector": v.name, "bytes": len(v.data), "kind": v.kind, "osken_decodes": v.ok_decodes,
                         "osken_encodes_from": v.ok_source, "notes": v.notes} for v in vectors],
            "results": [{"vector": r.vector, "op": r.op, "kumoflow_per_s": r.kumoflow_per_s,
                         "osken_per_s": r.osken_per_s, "ratio": r.ratio, "run_ratios": r.run_ratios}
                        for r in results]})

    if args.profile:
        profile(vectors, max(min_time, 0.3), 20)
    below = any(r.ratio is not None and r.ratio < args.goal for r in results)
    return 1 if args.check and below else 0


if __name__ == "__main__":
    sys.exit(main())
