#!/usr/bin/env python3
"""OpenFlow 1.3 codec throughput: kumoflow side by side with os-ken.

    .venv/bin/python benchmarks/codec/bench_ofp.py            # full run (about a minute)
    .venv/bin/python benchmarks/codec/bench_ofp.py --quick    # a few seconds: a smoke test
    .venv/bin/python benchmarks/codec/bench_ofp.py --profile  # + cProfile of kumoflow's side

Workloads (the same bytes for both libraries, in one process, one run):

- packet-in: a 100-byte Ethernet/IPv4/UDP frame, match with in_port;
- flow-mod: 10 match fields and 3 instructions (apply-actions with a
  set-field and an output, write-metadata, goto-table);
- flow-stats reply of 1,000 entries (3 match fields and one apply-actions
  each). A message cannot exceed 65,535 bytes, so the 1,000 entries travel
  as two multipart messages (REPLY_MORE on the first), split where kumoflow's
  split_multipart splits them; one operation decodes or encodes both.

Decode is bytes -> objects: ``kumoflow.ofp.parse(data)`` against os-ken's
``ofproto_parser.header(data)`` + ``ofproto_parser.msg(datapath, version,
msg_type, msg_len, xid, data)`` (what os-ken's Datapath does per message),
with a stub datapath.

Encode is plain values -> bytes, object construction included on both
sides: kumoflow builds its dataclasses and calls ``pack()``; os-ken builds
its OFP* objects and serializes them. os-ken ships no serializer for
switch-to-controller messages (OFPPacketIn and OFPFlowStatsReply only
parse), so for those two its side is the serializer os-ken's own messages
would have: its pack strings (ofproto_v1_3) plus its OFPMatch /
OFPInstruction / OFPAction ``serialize`` methods, written here in the style
of its OFPFlowMod._serialize_body. os-ken leaves a bytearray in ``msg.buf``;
it is not copied to bytes (a socket takes either).

Before timing, every workload is checked: both encoders produce identical
bytes, both decoders decode those bytes to the same values, and each
library re-encodes its own decoded objects to the same bytes.

Timing (benchlib.interleaved): time.perf_counter around a loop of N calls
(N calibrated so one repeat lasts --min-time), the garbage collector off
during a repeat (as timeit does), kumoflow and os-ken repeats interleaved,
best of --repeat.
Many short interleaved repeats make the best-of figures steadier on a
machine that is doing other work.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # benchmarks/: benchlib
import benchlib  # noqa: E402

from kumoflow import ofp  # noqa: E402

from os_ken.lib.pack_utils import msg_pack_into  # noqa: E402
from os_ken.ofproto import ofproto_parser, ofproto_v1_3 as osp, ofproto_v1_3_parser as osk  # noqa: E402

GOAL = 3.0


class Datapath:
    """The two attributes os-ken's parsers and serializers use."""

    ofproto = osp
    ofproto_parser = osk


DP = Datapath()


def osken_decode(data: bytes) -> Any:
    version, msg_type, msg_len, xid = ofproto_parser.header(data)
    return ofproto_parser.msg(DP, version, msg_type, msg_len, xid, data)


def udp_frame(size: int = 100) -> bytes:
    """An Ethernet/IPv4/UDP frame of `size` bytes with valid checksums."""
    src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    payload = bytes(i & 0xFF for i in range(size - 42))
    udp = struct.pack("!HHHH", 40001, 40002, 8 + len(payload), 0) + payload
    csum = benchlib.inet_checksum(src + dst + struct.pack("!BBH", 0, 17, len(udp)) + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", benchlib.inet_checksum(ip)) + ip[12:]
    return bytes.fromhex("020000000002020000000001") + b"\x08\x00" + ip + udp


# --- packet-in -------------------------------------------------------------------

FRAME = udp_frame(100)
PI = dict(buffer_id=0xFFFFFFFF, total_len=len(FRAME), reason=0, table_id=0, cookie=0)
PI_IN_PORT = 3


def kf_encode_packet_in() -> bytes:
    return ofp.PacketIn(buffer_id=0xFFFFFFFF, total_len=len(FRAME), reason=0, table_id=0, cookie=0,
                        match=ofp.Match(in_port=PI_IN_PORT), data=FRAME).pack()


def osken_pack_packet_in(msg: Any) -> bytearray:
    """OFPPacketIn has a parser but no serializer: this one uses os-ken's own parts."""
    buf = bytearray(osp.OFP_HEADER_SIZE)
    msg_pack_into(osp.OFP_PACKET_IN_PACK_STR, buf, osp.OFP_HEADER_SIZE,
                  msg.buffer_id, msg.total_len, msg.reason, msg.table_id, msg.cookie)
    offset = osp.OFP_PACKET_IN_SIZE - osp.OFP_MATCH_SIZE
    offset += msg.match.serialize(buf, offset)
    buf += b"\0\0"
    buf += msg.data
    struct.pack_into(osp.OFP_HEADER_PACK_STR, buf, 0, osp.OFP_VERSION, osp.OFPT_PACKET_IN, len(buf), msg.xid or 0)
    return buf


def ok_encode_packet_in() -> bytearray:
    return osken_pack_packet_in(osk.OFPPacketIn(DP, buffer_id=0xFFFFFFFF, total_len=len(FRAME), reason=0,
                                                table_id=0, cookie=0, match=osk.OFPMatch(in_port=PI_IN_PORT),
                                                data=FRAME))


def check_packet_in(data: bytes) -> None:
    ours, theirs = ofp.parse(data), osken_decode(data)
    assert (ours.buffer_id, ours.total_len, ours.reason, ours.table_id, ours.cookie) == (
        theirs.buffer_id, theirs.total_len, theirs.reason, theirs.table_id, theirs.cookie)
    assert dict(ours.match) == dict(theirs.match.items()) == {"in_port": PI_IN_PORT}
    assert ours.data == theirs.data == FRAME
    assert ours.pack() == data
    assert bytes(osken_pack_packet_in(theirs)) == data


# --- flow-mod --------------------------------------------------------------------

# 10 match fields, in OXM-number order (os-ken sorts its match fields that way)
FM_MATCH = dict(in_port=1, eth_dst=("00:aa:00:00:00:00", "ff:ff:00:00:00:00"), eth_src="00:11:22:33:44:55",
                eth_type=0x0800, vlan_vid=0x1000 | 10, ip_proto=6, ipv4_src=("10.0.0.0", "255.255.255.0"),
                ipv4_dst="192.168.1.1", tcp_src=12345, tcp_dst=80)
FM = dict(cookie=0x1234, cookie_mask=0, table_id=0, command=0, idle_timeout=60, hard_timeout=0, priority=100,
          buffer_id=0xFFFFFFFF, out_port=0xFFFFFFFF, out_group=0xFFFFFFFF, flags=1)
FM_XID = 0x1234


def kf_encode_flow_mod() -> bytes:
    return ofp.FlowMod(
        cookie=0x1234, cookie_mask=0, table_id=0, command=0, idle_timeout=60, hard_timeout=0, priority=100,
        buffer_id=0xFFFFFFFF, out_port=0xFFFFFFFF, out_group=0xFFFFFFFF, flags=1,
        match=ofp.Match(in_port=1, eth_dst=("00:aa:00:00:00:00", "ff:ff:00:00:00:00"),
                        eth_src="00:11:22:33:44:55", eth_type=0x0800, vlan_vid=0x1000 | 10, ip_proto=6,
                        ipv4_src=("10.0.0.0", "255.255.255.0"), ipv4_dst="192.168.1.1", tcp_src=12345, tcp_dst=80),
        instructions=[ofp.ApplyActions([ofp.SetField("eth_dst", "02:00:00:00:00:02"), ofp.Output(2)]),
                      ofp.WriteMetadata(0x1, 0xFF), ofp.GotoTable(1)],
        xid=FM_XID).pack()


def ok_encode_flow_mod() -> bytearray:
    msg = osk.OFPFlowMod(
        DP, cookie=0x1234, cookie_mask=0, table_id=0, command=0, idle_timeout=60, hard_timeout=0, priority=100,
        buffer_id=0xFFFFFFFF, out_port=0xFFFFFFFF, out_group=0xFFFFFFFF, flags=1,
        match=osk.OFPMatch(in_port=1, eth_dst=("00:aa:00:00:00:00", "ff:ff:00:00:00:00"),
                           eth_src="00:11:22:33:44:55", eth_type=0x0800, vlan_vid=0x1000 | 10, ip_proto=6,
                           ipv4_src=("10.0.0.0", "255.255.255.0"), ipv4_dst="192.168.1.1", tcp_src=12345,
                           tcp_dst=80),
        instructions=[osk.OFPInstructionActions(osp.OFPIT_APPLY_ACTIONS, [
                          osk.OFPActionSetField(eth_dst="02:00:00:00:00:02"), osk.OFPActionOutput(2)]),
                      osk.OFPInstructionWriteMetadata(0x1, 0xFF), osk.OFPInstructionGotoTable(1)])
    msg.xid = FM_XID
    msg.serialize()
    return msg.buf


def check_flow_mod(data: bytes) -> None:
    ours, theirs = ofp.parse(data), osken_decode(data)
    assert {k: getattr(ours, k) for k in FM} == {k: getattr(theirs, k) for k in FM} == FM
    assert dict(ours.match) == dict(theirs.match.items()) == FM_MATCH
    assert [type(i).__name__ for i in ours.instructions] == ["ApplyActions", "WriteMetadata", "GotoTable"]
    assert [type(i).__name__ for i in theirs.instructions] == [
        "OFPInstructionActions", "OFPInstructionWriteMetadata", "OFPInstructionGotoTable"]
    set_field, output = ours.instructions[0].actions
    their_set_field, their_output = theirs.instructions[0].actions
    assert (set_field.field, set_field.value) == (their_set_field.key, their_set_field.value)
    assert output.port == their_output.port == 2
    assert ours.pack() == data
    theirs.serialize()
    assert bytes(theirs.buf) == data


# --- flow-stats reply of 1,000 entries ---------------------------------------------

N_FLOWS = 1000
FS_XID = 0x5678


def flow_rows(n: int) -> list[tuple]:
    """Plain values for n entries: the input both encoders start from."""
    return [(i % 4, 1000 + i, 1000 * i, i % 65536, 60, 0, 0, 0xC000 + i, 10 * i, 1500 * i,
             1 + i % 48, f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 1 + (i + 1) % 48)
            for i in range(n)]


ROWS = flow_rows(N_FLOWS)


def kf_flow_stats(rows: list[tuple]) -> list:
    FlowStats, Match, ApplyActions, Output = ofp.FlowStats, ofp.Match, ofp.ApplyActions, ofp.Output
    return [FlowStats(table_id=t, duration_sec=ds, duration_nsec=dn, priority=p, idle_timeout=it,
                      hard_timeout=ht, flags=f, cookie=c, packet_count=pc, byte_count=bc,
                      match=Match(in_port=port, eth_type=0x0800, ipv4_dst=dst),
                      instructions=[ApplyActions([Output(out)])])
            for t, ds, dn, p, it, ht, f, c, pc, bc, port, dst, out in rows]


def _split_points() -> list[tuple[int, int, int]]:
    """(start, stop, flags) of each message, as kumoflow's split_multipart splits."""
    parts = ofp.split_multipart(ofp.FlowStatsReply(body=kf_flow_stats(ROWS), xid=FS_XID))
    points, start = [], 0
    for part in parts:
        points.append((start, start + len(part.body), part.flags))
        start += len(part.body)
    assert start == N_FLOWS and len(points) == 2
    return points


SPLIT = _split_points()


def kf_encode_flow_stats() -> list[bytes]:
    return [ofp.FlowStatsReply(body=kf_flow_stats(ROWS[a:b]), flags=flags, xid=FS_XID).pack()
            for a, b, flags in SPLIT]


def osken_pack_flow_stats_reply(body: list, flags: int, xid: int) -> bytearray:
    """OFPFlowStatsReply has a parser but no serializer: this one uses os-ken's own parts."""
    buf = bytearray(osp.OFP_MULTIPART_REPLY_SIZE)
    msg_pack_into(osp.OFP_MULTIPART_REPLY_PACK_STR, buf, osp.OFP_HEADER_SIZE, osp.OFPMP_FLOW, flags)
    offset = osp.OFP_MULTIPART_REPLY_SIZE
    for s in body:
        start = offset
        offset += osp.OFP_FLOW_STATS_0_SIZE
        offset += s.match.serialize(buf, offset)
        for inst in s.instructions:
            inst.serialize(buf, offset)
            offset += inst.len
        msg_pack_into(osp.OFP_FLOW_STATS_0_PACK_STR, buf, start, offset - start, s.table_id, s.duration_sec,
                      s.duration_nsec, s.priority, s.idle_timeout, s.hard_timeout, s.flags, s.cookie,
                      s.packet_count, s.byte_count)
    struct.pack_into(osp.OFP_HEADER_PACK_STR, buf, 0, osp.OFP_VERSION, osp.OFPT_MULTIPART_REPLY, len(buf), xid)
    return buf


def ok_flow_stats(rows: list[tuple]) -> list:
    FlowStats, Match, Actions, Output = osk.OFPFlowStats, osk.OFPMatch, osk.OFPInstructionActions, osk.OFPActionOutput
    apply = osp.OFPIT_APPLY_ACTIONS
    return [FlowStats(table_id=t, duration_sec=ds, duration_nsec=dn, priority=p, idle_timeout=it,
                      hard_timeout=ht, flags=f, cookie=c, packet_count=pc, byte_count=bc,
                      match=Match(in_port=port, eth_type=0x0800, ipv4_dst=dst),
                      instructions=[Actions(apply, [Output(out)])])
            for t, ds, dn, p, it, ht, f, c, pc, bc, port, dst, out in rows]


def ok_encode_flow_stats() -> list[bytearray]:
    return [osken_pack_flow_stats_reply(ok_flow_stats(ROWS[a:b]), flags, FS_XID) for a, b, flags in SPLIT]


FS_FIELDS = ("table_id", "duration_sec", "duration_nsec", "priority", "idle_timeout", "hard_timeout", "flags",
             "cookie", "packet_count", "byte_count")


def check_flow_stats(messages: list[bytes]) -> None:
    assert all(len(m) <= 0xFFFF for m in messages)
    ours = [ofp.parse(m) for m in messages]
    theirs = [osken_decode(m) for m in messages]
    assert [m.flags for m in ours] == [m.flags for m in theirs] == [1, 0]
    our_body = [s for m in ours for s in m.body]
    their_body = [s for m in theirs for s in m.body]
    assert len(our_body) == len(their_body) == N_FLOWS
    for row, a, b in zip(ROWS, our_body, their_body):
        assert tuple(getattr(a, k) for k in FS_FIELDS) == tuple(getattr(b, k) for k in FS_FIELDS) == row[:10]
        assert dict(a.match) == dict(b.match.items()) == {"in_port": row[10], "eth_type": 0x0800,
                                                          "ipv4_dst": row[11]}
        assert a.instructions[0].actions[0].port == b.instructions[0].actions[0].port == row[12]
    assert [m.pack() for m in ours] == messages
    assert [bytes(osken_pack_flow_stats_reply(m.body, m.flags, m.xid)) for m in theirs] == messages


# --- harness ---------------------------------------------------------------------

@dataclass
class Workload:
    name: str
    unit: str
    wire: list[bytes]
    kf_decode: Callable[[], Any]
    ok_decode: Callable[[], Any]
    kf_encode: Callable[[], Any]
    ok_encode: Callable[[], Any]


def build_workloads() -> list[Workload]:
    pi = kf_encode_packet_in()
    assert bytes(ok_encode_packet_in()) == pi, "the two packet-in encoders disagree"
    check_packet_in(pi)

    fm = kf_encode_flow_mod()
    assert bytes(ok_encode_flow_mod()) == fm, "the two flow-mod encoders disagree"
    check_flow_mod(fm)

    fs = kf_encode_flow_stats()
    assert [bytes(b) for b in ok_encode_flow_stats()] == fs, "the two flow-stats encoders disagree"
    check_flow_stats(fs)

    parse = ofp.parse
    fs0, fs1 = fs
    return [
        Workload(f"packet-in ({len(pi)} B, {len(FRAME)} B frame)", "msgs", [pi],
                 lambda: parse(pi), lambda: osken_decode(pi), kf_encode_packet_in, ok_encode_packet_in),
        Workload(f"flow-mod ({len(fm)} B, 10 fields, 3 instr.)", "msgs", [fm],
                 lambda: parse(fm), lambda: osken_decode(fm), kf_encode_flow_mod, ok_encode_flow_mod),
        Workload(f"flow-stats reply, {N_FLOWS} entries ({len(fs0) + len(fs1):,} B in 2 msgs)", "replies", fs,
                 lambda: (parse(fs0), parse(fs1)), lambda: (osken_decode(fs0), osken_decode(fs1)),
                 kf_encode_flow_stats, ok_encode_flow_stats),
    ]


def rates(kf: Callable[[], Any], ok: Callable[[], Any], min_time: float, repeat: int,
          keep_gc: bool) -> tuple[float, float]:
    """Best-of-`repeat` calls per second of each, repeats interleaved."""
    t = benchlib.interleaved({"kumoflow": kf, "os-ken": ok}, min_time, repeat, keep_gc=keep_gc)
    return t["kumoflow"].rate, t["os-ken"].rate


def machine() -> dict[str, Any]:
    ofp_dir = Path(ofp.__file__).resolve().parent
    m = benchlib.machine(packages=("os-ken",), code=("src/kumoflow/ofp",))
    # The codec's source as measured, so a figure can be tied to the code.
    m["kumoflow.ofp source sha256"] = benchlib.source_digest(ofp_dir)
    return m


def profile(workloads: list[Workload], seconds: float, top: int) -> None:
    for w in workloads:
        for op, fn in (("decode", w.kf_decode), ("encode", w.kf_encode)):
            n = benchlib.calibrate(fn, seconds)
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(n):
                fn()
            prof.disable()
            print(f"\n### cProfile, kumoflow {op}: {w.name} ({n} calls), top {top} by own time\n")
            stats = pstats.Stats(prof)
            stats.sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    benchlib.add_output_args(ap, "a few seconds (0.05 s per repeat, 3 repeats): a smoke test, not a figure")
    ap.add_argument("--min-time", type=float, default=None, help="seconds per timed repeat (default 0.1)")
    ap.add_argument("--repeat", type=int, default=None, help="repeats, best kept (default 15)")
    ap.add_argument("--goal", type=float, default=GOAL, help=f"target kumoflow/os-ken ratio (default {GOAL})")
    ap.add_argument("--check", action="store_true", help="exit 1 when a ratio is below --goal")
    ap.add_argument("--gc", action="store_true", help="leave the garbage collector on while timing")
    ap.add_argument("--profile", action="store_true", help="also cProfile kumoflow's side of each workload")
    args = ap.parse_args(argv)
    min_time = args.min_time or (0.05 if args.quick else 0.1)
    repeat = args.repeat or (3 if args.quick else 15)

    workloads = build_workloads()  # raises if the two sides disagree
    m = machine()
    print("# OpenFlow 1.3 codec: kumoflow vs os-ken\n")
    print("\n".join(benchlib.machine_lines(m)))
    print(f"- command: `{benchlib.command_line(argv)}`")
    print(f"- timing: best of {repeat} x {min_time} s, gc {'on' if args.gc else 'off'} while timing, "
          "encode includes object construction")
    print("- checked first: identical bytes from both encoders; equal values from both decoders\n")

    header = ("workload", "op", "kumoflow /s", "os-ken /s", "kumoflow / os-ken", f"goal {args.goal:g}x")
    rows, results = [], []
    below = False
    for w in workloads:
        for op, kf, ok in (("decode", w.kf_decode, w.ok_decode), ("encode", w.kf_encode, w.ok_encode)):
            r_kf, r_ok = rates(kf, ok, min_time, repeat, args.gc)
            ratio = r_kf / r_ok
            below |= ratio < args.goal
            rows.append((w.name, f"{op} ({w.unit})", benchlib.fmt_rate(r_kf), benchlib.fmt_rate(r_ok),
                         f"{ratio:.2f}x", "met" if ratio >= args.goal else "BELOW"))
            results.append({"workload": w.name, "op": op, "unit": w.unit, "kumoflow_per_s": r_kf,
                            "osken_per_s": r_ok, "ratio": ratio})
    print(benchlib.md_table(header, rows, align="llrrrr"))
    print(f"\n(one reply = {N_FLOWS} entries in 2 messages; entries/s = replies/s x {N_FLOWS})")
    if args.json:
        benchlib.write_json(args.json, {"machine": m, "command": benchlib.command_line(argv),
                                        "min_time": min_time, "repeat": repeat, "gc": args.gc,
                                        "results": results})

    if args.profile:
        profile(workloads, max(min_time, 0.5), 20)
    return 1 if args.check and below else 0


if __name__ == "__main__":
    sys.exit(main())
