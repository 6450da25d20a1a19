#!/usr/bin/env python3
"""Switch classifier and fast path: lookup cost against the number of rules,
memory per 100,000 rules, insert and delete rates, and the per-packet cost
of the datapath with and without its decision cache.

    .venv/bin/python benchmarks/switch/bench_classifier.py            # full run, a few minutes
    .venv/bin/python benchmarks/switch/bench_classifier.py --quick    # seconds: a smoke test (fewer rules)

What is measured (all in one process, sans-IO, no sockets):

1. lookup: `Classifier.lookup` (tuple space search, the datapath's default)
   and `FlowTable.lookup` (the reference: an ordered scan) on tables of 100,
   10,000 and 100,000 rules spread over 30 match shapes (exact and masked
   fields: ports, MACs, VLANs, IPv4 prefixes /8 to /32, transport ports,
   metadata bit masks, tunnel ids), random priorities; half the keys are
   made from a rule (so most lookups hit), half at random.
2. memory (tracemalloc, current size after building): the classifier's own
   structures per 100,000 prebuilt entries, and whole flow entries installed
   with flow-mods through `Datapath.handle` (entry, match, compiled match,
   instructions, classifier), per 100,000.
3. rates: `insert` / `remove` of prebuilt entries, and ADD / DELETE_STRICT
   flow-mods through `Datapath.handle` (validation and compilation included).
4. per packet: `Datapath.receive` of 64 UDP flows cycling, with 10, 10,000
   and 100,000 rules in table 0 and the traffic's rule at the lowest
   priority (so every lookup visits every subtable: the worst case for tuple
   space search); the reference pipeline (no cache) with each table class,
   and the fast path on an exact-match hit (output only; and the L3 hop:
   Ethernet addresses rewritten, TTL decremented), on a megaflow hit
   (802.1Q-tagged frames have no fast key), and on a miss (the pipeline
   recording its decision). Ports are in-memory ports whose send only
   counts; "port.send alone" is the floor.
5. per packet under flow changes: 1,000 UDP flows cycling, each with its
   own exact rule (a reactive controller's), while one rule for a new flow
   is added every 100 (or 10) packets through `Datapath.flow_mod_raw`:
   the fast path emptying its caches on every flow change (the old
   behaviour, `FastPath.selective = False`) against selective
   invalidation, and with no flow changes at all.

Timing (benchlib.repeat_time): perf_counter around a loop, garbage collected
before and collector off during a repeat, best of --repeat. The output is Markdown, with the date, machine, Python and
git commit, for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # benchmarks/: benchlib
import benchlib  # noqa: E402
from benchlib import fmt_rate, fmt_us  # noqa: E402

from kumoflow import ofp  # noqa: E402
from kumoflow.switch import flowkey as fk  # noqa: E402
from kumoflow.switch.classifier import Classifier  # noqa: E402
from kumoflow.switch.datapath import Datapath  # noqa: E402
from kumoflow.switch.flowmatch import compile_match  # noqa: E402
from kumoflow.switch.flowtable import FlowEntry, FlowTable  # noqa: E402
from kumoflow.switch.pipeline import Program  # noqa: E402
from kumoflow.switch.port import PortBase  # noqa: E402

P = fk.PRESENT


# --- rule sets -------------------------------------------------------------------------------------------

def _mac(r: random.Random) -> str:
    return "0a:" + r.getrandbits(40).to_bytes(5, "big").hex(":")


def _ip(r: random.Random) -> int:
    return (r.randrange(100, 200) << 24) | r.getrandbits(24)       # never 10/8: the traffic's


def _prefix(r: random.Random, n: int):
    mask = (0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF
    v = _ip(r) & mask
    v4 = ".".join(str(v >> s & 0xFF) for s in (24, 16, 8, 0))
    if n == 32:
        return v4
    m4 = ".".join(str(mask >> s & 0xFF) for s in (24, 16, 8, 0))
    return (v4, m4)


IP = {"eth_type": 0x0800}
SHAPES = [
    lambda r: {"in_port": r.randrange(3, 1 << 20)},
    lambda r: {"in_port": r.randrange(3, 1 << 20), "eth_dst": _mac(r)},
    lambda r: {"eth_dst": _mac(r)},
    lambda r: {"eth_src": _mac(r)},
    lambda r: {"eth_dst": (_mac(r)[:9] + "00:00:00", "ff:ff:ff:00:00:00")},
    lambda r: {"vlan_vid": 0x1000 | r.randrange(1, 4095)},
    lambda r: {"vlan_vid": 0x1000 | r.randrange(1, 4095), "eth_dst": _mac(r)},
    lambda r: {"in_port": r.randrange(3, 1 << 20), "vlan_vid": 0x1000 | r.randrange(1, 4095)},
    lambda r: {**IP, "ipv4_dst": _prefix(r, 32)},
    lambda r: {**IP, "ipv4_dst": _prefix(r, 24)},
    lambda r: {**IP, "ipv4_dst": _prefix(r, 16)},
    lambda r: {**IP, "ipv4_dst": _prefix(r, 8)},
    lambda r: {**IP, "ipv4_src": _prefix(r, 32)},
    lambda r: {**IP, "ipv4_src": _prefix(r, 24)},
    lambda r: {**IP, "ipv4_src": _prefix(r, 16)},
    lambda r: {**IP, "ipv4_src": _prefix(r, 24), "ipv4_dst": _prefix(r, 24)},
    lambda r: {**IP, "ipv4_src": _prefix(r, 32), "ipv4_dst": _prefix(r, 32)},
    lambda r: {**IP, "ip_proto": 6, "tcp_dst": r.randrange(3000, 65536)},
    lambda r: {**IP, "ip_proto": 17, "udp_dst": r.randrange(3000, 65536)},
    lambda r: {**IP, "ip_proto": 6, "tcp_src": r.randrange(3000, 65536), "tcp_dst": r.randrange(3000, 65536)},
    lambda r: {**IP, "ip_proto": 6, "ipv4_dst": _prefix(r, 32), "tcp_dst": r.randrange(3000, 65536)},
    lambda r: {**IP, "ip_proto": 17, "ipv4_dst": _prefix(r, 24), "udp_dst": r.randrange(3000, 65536)},
    lambda r: {**IP, "ip_dscp": r.randrange(1, 64), "ipv4_dst": _prefix(r, 16)},
    lambda r: {"metadata": r.getrandbits(64) | 1 << 63},
    lambda r: {"metadata": (r.getrandbits(16) << 16 | 1 << 40, 0xFFFF0000 | 1 << 40)},
    lambda r: {"tunnel_id": r.randrange(1, 1 << 24)},
    lambda r: {"tunnel_id": r.randrange(1, 1 << 24), "eth_dst": _mac(r)},
    lambda r: {"eth_type": 0x0806, "arp_tpa": _prefix(r, 32)},
    lambda r: {"eth_type": 0x86DD, "ipv6_dst": (f"2001:db8:{r.getrandbits(16):x}::", "ffff:ffff:ffff::")},
    lambda r: {"in_port": r.randrange(3, 1 << 20), **IP, "ipv4_dst": _prefix(r, 24)},
]


def rule_set(n: int, seed: int = 1) -> list[tuple[ofp.Match, int]]:
    """n distinct (match, priority) pairs, round-robin over the shapes, priorities 100..999."""
    r = random.Random(seed)
    out, seen = [], set()
    i = 0
    while len(out) < n:
        m = ofp.Match(SHAPES[i % len(SHAPES)](r))
        i += 1
        p = r.randrange(100, 1000)
        k = (compile_match(m).fields, p)
        if k in seen:
            continue
        seen.add(k)
        out.append((m, p))
    return out


def entries_of(rules) -> list[FlowEntry]:
    return [FlowEntry(0, p, m, compile_match(m), 0, 0, 0, 0, [], Program(), 0.0, None, frozenset(), frozenset())
            for m, p in rules]


def keys_for(entries: list[FlowEntry], count: int, seed: int = 2) -> list[list]:
    """Half made from a rule's values (the rest of the key random), half random."""
    r = random.Random(seed)
    keys = []
    for i in range(count):
        k = [0] * fk.N_FIELDS
        k[fk.IN_PORT] = P | r.randrange(1, 1 << 20)
        k[fk.IN_PHY_PORT] = k[fk.IN_PORT]
        k[fk.METADATA] = P | r.getrandbits(64)
        k[fk.TUNNEL_ID] = P | r.randrange(1 << 24)
        k[fk.ETH_DST] = P | r.getrandbits(48)
        k[fk.ETH_SRC] = P | r.getrandbits(48)
        k[fk.VLAN_VID] = P | (0x1000 | r.randrange(4096) if r.random() < 0.3 else 0)
        k[fk.ETH_TYPE] = P | 0x0800
        k[fk.IP_DSCP] = P | r.randrange(64)
        k[fk.IP_ECN] = P
        k[fk.IP_PROTO] = P | r.choice((6, 17))
        k[fk.IPV4_SRC] = P | _ip(r)
        k[fk.IPV4_DST] = P | _ip(r)
        if k[fk.IP_PROTO] == P | 6:
            k[fk.TCP_SRC], k[fk.TCP_DST] = P | r.getrandbits(16), P | r.getrandbits(16)
        else:
            k[fk.UDP_SRC], k[fk.UDP_DST] = P | r.getrandbits(16), P | r.getrandbits(16)
        if i % 2 == 0 and entries:
            e = r.choice(entries)
            for c, v, m in e.fields:
                if c == fk.ETH_TYPE and v != k[c]:
                    for f in range(fk.IP_DSCP, fk.TUNNEL_ID):
                        k[f] = 0
                k[c] = (k[c] & ~m) | v | P
        keys.append(k)
    return keys


def best(fn, repeat: int) -> float:
    """Best wall time of fn() over `repeat` runs (gc off)."""
    return benchlib.repeat_time(fn, repeat).best


# --- 1. lookup -------------------------------------------------------------------------------------------

def examined(table: Classifier, key: list) -> int:
    """How many subtables a lookup probes (the classifier's loop, counted)."""
    if table._plan is None:
        table._replan()
    best, n = None, 0
    for max_priority, get, keyfn, _ in table._plan:
        if best is not None and max_priority < best.priority:
            break
        n += 1
        b = get(keyfn(key))
        if b is not None:
            b = b[0] if type(b) is list else b
            if best is None or b.sort_key < best.sort_key:
                best = b
    return n


def bench_lookup(sizes, repeat: int, quick: bool) -> list[str]:
    header = ["rules", "shapes (subtables)", "subtables probed per lookup (mean)", "Classifier µs/lookup",
              "FlowTable µs/lookup", "FlowTable / Classifier"]
    rows = []
    for n in sizes:
        entries = entries_of(rule_set(n))
        cls_t, ref = Classifier(0), FlowTable(0)
        for e in entries:
            cls_t.insert(e)
            ref.insert(e)
        keys = keys_for(entries, 2000 if not quick else 400)
        for k in keys[:50]:
            assert cls_t.lookup(k) is ref.lookup(k)
        lk = cls_t.lookup
        t_cls = best(lambda: [lk(k) for k in keys], repeat) / len(keys)
        few = keys[:max(10, 200_000 // max(n, 1))] if n > 1000 else keys
        lr = ref.lookup
        t_ref = best(lambda: [lr(k) for k in few], max(1, repeat // 3)) / len(few)
        probed = sum(examined(cls_t, k) for k in keys) / len(keys)
        rows.append([f"{n:,}", cls_t.n_subtables, f"{probed:.1f}", fmt_us(t_cls), fmt_us(t_ref),
                     f"{t_ref / t_cls:,.0f}x"])
        print(f"  lookup n={n}: classifier {t_cls * 1e6:.2f} us, flowtable {t_ref * 1e6:.1f} us", file=sys.stderr)
    return [benchlib.md_table(header, rows, align="rrrrrr")]


# --- 2. memory and 3. rates ------------------------------------------------------------------------------

def flow_mod(m: ofp.Match, p: int, command=ofp.OFPFC.ADD) -> ofp.FlowMod:
    return ofp.FlowMod(command=command, priority=p, match=m, instructions=[ofp.ApplyActions([ofp.Output(2)])])


def bench_memory_and_rates(n: int) -> tuple[list[str], list[str]]:
    rules = rule_set(n, seed=3)
    mem_rows: list[list] = []
    rate_rows: list[list] = []

    def per_rule(nbytes: int) -> list[str]:
        return [f"{nbytes / n:,.0f}", f"{nbytes / n * 100_000 / 1e6:,.1f}"]

    # classifier structures only, entries prebuilt (memory traced in a run of its own: tracing slows Python)
    results = {}
    for cls in (Classifier, FlowTable):
        entries = entries_of(rules)
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        t = cls(0)
        for e in entries:
            t.insert(e)
        size = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        del t
        t = cls(0)

        def insert_all(t=t) -> None:
            for e in entries:
                t.insert(e)
        t_ins = best(insert_all, 1)
        list(t)                                   # iteration (sorted once)
        victims = entries[:]
        random.Random(4).shuffle(victims)

        def remove_all(t=t) -> None:
            for e in victims:
                t.remove(e)
        t_del = best(remove_all, 1)
        results[cls] = (size, n / t_ins, n / t_del)
    mem_rows.append(["Classifier structures (prebuilt entries inserted)", *per_rule(results[Classifier][0])])
    mem_rows.append(["FlowTable structures, for comparison", *per_rule(results[FlowTable][0])])
    rate_rows.append([f"insert (prebuilt entries, {n:,})", fmt_rate(results[Classifier][1]),
                      fmt_rate(results[FlowTable][1])])
    rate_rows.append([f"remove (random order, {n:,})", fmt_rate(results[Classifier][2]),
                      fmt_rate(results[FlowTable][2])])

    # whole flow entries through the datapath
    adds = [flow_mod(m, p) for m, p in rules]
    dels = [flow_mod(m, p, ofp.OFPFC.DELETE_STRICT) for m, p in rules]
    random.Random(5).shuffle(dels)
    dp_rates = {}
    for cls in (Classifier, FlowTable):
        size = 0
        if cls is Classifier:
            dp = Datapath(1, n_tables=1, table_class=cls)
            gc.collect()
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            for fm in adds:
                dp.handle(fm)
            size = tracemalloc.get_traced_memory()[0] - base
            tracemalloc.stop()
            del dp
        dp = Datapath(1, n_tables=1, table_class=cls)
        for i in (1, 2):
            dp.add_port(NullPort(i))
        gc.collect()
        t0 = time.perf_counter()
        for fm in adds:
            dp.handle(fm)
        t_add = time.perf_counter() - t0
        assert len(dp.tables[0]) == n
        t0 = time.perf_counter()
        for fm in dels:
            dp.handle(fm)
        t_del = time.perf_counter() - t0
        assert len(dp.tables[0]) == 0
        dp_rates[cls] = (size, n / t_add, n / t_del)
    mem_rows.append(["whole flow entries via flow-mods (match, compiled match, instructions, entry, classifier)",
                     *per_rule(dp_rates[Classifier][0])])
    rate_rows.append([f"flow-mod ADD through Datapath.handle ({n:,})", fmt_rate(dp_rates[Classifier][1]),
                      fmt_rate(dp_rates[FlowTable][1])])
    rate_rows.append([f"flow-mod DELETE_STRICT through Datapath.handle ({n:,})", fmt_rate(dp_rates[Classifier][2]),
                      fmt_rate(dp_rates[FlowTable][2])])
    print(f"  memory/rates n={n} done", file=sys.stderr)
    return ([benchlib.md_table(["what", "bytes per rule", "MB per 100,000 rules"], mem_rows)],
            [benchlib.md_table(["operation", "Classifier /s", "FlowTable /s"], rate_rows)])


# --- 4. per packet ---------------------------------------------------------------------------------------

class NullPort(PortBase):
    """A port whose send only counts."""

    def send(self, frame: bytes) -> None:
        c = self.counters
        c.tx_packets += 1
        c.tx_bytes += len(frame)


def udp_frame(sport: int, vlan: int | None = None) -> bytes:
    from scapy.compat import raw
    from scapy.layers.inet import IP as SIP, UDP
    from scapy.layers.l2 import Dot1Q, Ether
    l2 = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    if vlan is not None:
        l2 = l2 / Dot1Q(vlan=vlan)
    return raw(l2 / SIP(src="10.0.0.1", dst="10.0.0.2", ttl=64) / UDP(sport=sport, dport=2000) / bytes(18))


def datapath(rules, table_class, fastpath: bool, routed: bool) -> Datapath:
    dp = Datapath(1, n_tables=1, table_class=table_class, fastpath=fastpath)
    for i in (1, 2):
        dp.add_port(NullPort(i, hw_addr=f"02:00:00:00:01:0{i}"))
    for m, p in rules:
        dp.handle(flow_mod(m, p))
    acts = [ofp.Output(2)]
    if routed:
        acts = [ofp.SetField("eth_src", "02:00:00:00:01:02"), ofp.SetField("eth_dst", "02:00:00:00:00:09"),
                ofp.DecNwTtl(), ofp.Output(2)]
    # The traffic's rule, at the lowest priority: every subtable is examined.
    dp.handle(ofp.FlowMod(priority=10, match=ofp.Match(in_port=1, eth_type=0x0800, ipv4_dst="10.0.0.2"),
                          instructions=[ofp.ApplyActions(acts)]))
    dp.handle(ofp.FlowMod(priority=10, match=ofp.Match(in_port=1, vlan_vid=0x1000 | 7),
                          instructions=[ofp.ApplyActions([ofp.Output(2)])]))
    return dp


def bench_packets(sizes, repeat: int, quick: bool) -> list[str]:
    frames = [udp_frame(1000 + i) for i in range(64)]
    tagged = [udp_frame(1000 + i, vlan=7) for i in range(64)]
    rounds = 4 if quick else 40
    header = ["rules", "reference pipeline, FlowTable", "reference pipeline, Classifier", "fast path: EMC hit",
              "EMC hit, L3 hop", "megaflow hit", "miss (pipeline + recording)", "reference (Classifier) / EMC hit"]
    rows = []
    floor = NullPort(9)
    t_floor = best(lambda: [floor.send(f) for _ in range(rounds) for f in frames], repeat) / (rounds * 64)
    for n in sizes:
        rules = rule_set(n, seed=7)
        res = {}

        def run(dp, pkts, count):
            rx = dp.receive
            return best(lambda: [rx(1, f) for _ in range(count) for f in pkts], repeat) / (count * len(pkts))

        # reference pipeline, both table classes
        ref_ft = datapath(rules, FlowTable, False, False)
        few = 1 if n >= 10_000 else rounds
        pk = frames if n < 100_000 else frames[:8]
        res["ref_ft"] = run(ref_ft, pk, few)
        del ref_ft
        ref_cls = datapath(rules, Classifier, False, False)
        res["ref_cls"] = run(ref_cls, frames, max(1, rounds // 4))
        del ref_cls
        # fast path
        dp = datapath(rules, Classifier, True, False)
        for f in frames + tagged:
            dp.receive(1, f)
        res["emc"] = run(dp, frames, rounds)
        res["mega"] = run(dp, tagged, rounds)
        s = dp.fastpath.stats()
        assert s["uncacheable"] == 0 and s["misses"] <= 128, s
        fp = dp.fastpath

        def miss_loop():
            for f in frames:
                fp.flush()                         # emptied: the frame goes through the pipeline
                dp.receive(1, f)
        res["miss"] = best(miss_loop, repeat) / len(frames)
        assert dp.ports[2].counters.tx_packets > 0
        del dp
        dp = datapath(rules, Classifier, True, True)
        for f in frames:
            dp.receive(1, f)
        res["routed"] = run(dp, frames, rounds)
        del dp
        rows.append([f"{n:,}", fmt_us(res['ref_ft']), fmt_us(res['ref_cls']), fmt_us(res['emc']),
                     fmt_us(res['routed']), fmt_us(res['mega']), fmt_us(res['miss']),
                     f"{res['ref_cls'] / res['emc']:,.1f}x"])
        print(f"  packets n={n}: " + ", ".join(f"{k} {v * 1e6:.2f} us" for k, v in res.items()), file=sys.stderr)
    rows = [benchlib.md_table(header, rows, align="r" * len(header)), ""]
    rows.append(f"`port.send` alone (the floor: an in-memory port that only counts): {fmt_us(t_floor)} µs per frame.")
    return rows


# --- 5. flow changes under traffic -----------------------------------------------------------------------

CHURN_ACTS = [ofp.ApplyActions([ofp.Output(2)])]


def churn_flow(sport: int) -> ofp.FlowMod:
    """What a reactive controller installs for a new UDP flow: its own exact rule."""
    return ofp.FlowMod(priority=10, match=ofp.Match(in_port=1, eth_type=0x0800, ip_proto=17, udp_src=sport),
                       instructions=CHURN_ACTS)


def churn_datapath(n: int, selective: bool) -> Datapath:
    """n active flows with a rule each, a table-miss entry to the controller."""
    dp = Datapath(1, n_tables=1)
    dp.fastpath.selective = selective
    for i in (1, 2):
        dp.add_port(NullPort(i, hw_addr=f"02:00:00:00:01:0{i}"))
    dp.handle(ofp.FlowMod(priority=0, match=ofp.Match(),
                          instructions=[ofp.ApplyActions([ofp.Output(ofp.OFPP.CONTROLLER)])]))
    for i in range(n):
        dp.handle(churn_flow(1000 + i))
    return dp


def bench_churn(n: int, every: tuple, repeat: int, quick: bool) -> list[str]:
    """Per-packet cost of n active flows (cycling) while one new,
    non-overlapping flow is added every K packets through the direct
    FLOW_MOD path (its cost included), caches flushed on every flow change
    (the old behaviour) or revalidated."""
    rounds = 5 if quick else 20
    frames = [udp_frame(1000 + i) for i in range(n)] * rounds
    header = ["active flows", "one ADD every", "no flow changes", "flush on every flow change",
              "selective invalidation", "flush / selective", "of which the ADDs themselves",
              "misses per 1,000 packets (flush; selective)"]
    rows = []

    def timed(k: int | None, selective: bool) -> tuple[float, int]:
        """Best µs per packet over `repeat` fresh datapaths, and the misses of the last."""
        adds = [churn_flow(1000 + n + j).pack() for j in range(len(frames) // (k or len(frames)) + 1)]
        chunks = [frames[i:i + k] for i in range(0, len(frames), k)] if k else [frames]
        times, misses = [], 0
        for _ in range(repeat):
            dp = churn_datapath(n, selective)
            for f in frames[:n]:
                dp.receive(1, f)                               # every flow cached
            before = dp.fastpath.stats()["misses"]
            rx, mod = dp.receive, dp.flow_mod_raw
            gc.collect()
            gc.disable()
            try:
                t = time.perf_counter()
                for chunk, fm in zip(chunks, adds):
                    if k:
                        mod(fm)
                    for f in chunk:
                        rx(1, f)
                times.append(time.perf_counter() - t)
            finally:
                gc.enable()
            assert len(dp.tables[0]) == n + 1 + (len(chunks) if k else 0)
            assert dp.ports[2].counters.tx_packets == len(frames) + n
            misses = dp.fastpath.stats()["misses"] - before
        return min(times) / len(frames), misses

    def adds_alone(k: int) -> float:
        """The same ADDs on the same table with no traffic, per packet of the run above."""
        adds = [churn_flow(1000 + n + j).pack() for j in range(-(-len(frames) // k))]
        times = []
        for _ in range(repeat):
            mod = churn_datapath(n, True).flow_mod_raw
            t = time.perf_counter()
            for fm in adds:
                mod(fm)
            times.append(time.perf_counter() - t)
        return min(times) / len(frames)

    base, _ = timed(None, True)
    for k in every:
        t_flush, m_flush = timed(k, False)
        t_sel, m_sel = timed(k, True)
        t_adds = adds_alone(k)
        per_k = 1000 / len(frames)
        rows.append([f"{n:,}", f"{k} packets", fmt_us(base), fmt_us(t_flush), fmt_us(t_sel),
                     f"{t_flush / t_sel:,.1f}x", fmt_us(t_adds), f"{m_flush * per_k:,.0f}; {m_sel * per_k:,.0f}"])
        print(f"  churn n={n} k={k}: none {base * 1e6:.2f} us, flush {t_flush * 1e6:.2f} us, "
              f"selective {t_sel * 1e6:.2f} us", file=sys.stderr)
    return [benchlib.md_table(header, rows, align="r" * len(header))]


# --- report ------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    benchlib.add_output_args(ap, "seconds: fewer rules (1,000 at most), 2 repeats, 200 flows under changes; "
                                 "a smoke test, not a figure")
    ap.add_argument("--repeat", type=int, default=None, help="timing repeats (best of; default 5, quick 2)")
    ap.add_argument("--memory-rules", type=int, default=None,
                    help="rules for memory and rates (default 100000, quick 10000)")
    args = ap.parse_args(argv)
    repeat = args.repeat or (2 if args.quick else 5)
    lookup_sizes = (100, 1_000) if args.quick else (100, 10_000, 100_000)
    packet_sizes = (10, 1_000) if args.quick else (10, 10_000, 100_000)
    mem_n = args.memory_rules or (10_000 if args.quick else 100_000)

    m = benchlib.machine(code=("src/kumoflow/switch",))
    out = ["Machine and code:", ""] + benchlib.machine_lines(m) + [f"- command: `{benchlib.command_line(argv)}`", ""]
    out += [f"Lookup ({len(SHAPES)} match shapes, random priorities; best of {repeat}):", ""]
    out += bench_lookup(lookup_sizes, repeat, args.quick) + [""]
    mem_rows, rate_rows = bench_memory_and_rates(mem_n)
    out += [f"Memory (tracemalloc, {mem_n:,} rules):", ""] + mem_rows + [""]
    out += [f"Insert and delete ({mem_n:,} rules, {len(SHAPES)} shapes):", ""] + rate_rows + [""]
    out += ["Per packet, µs (`Datapath.receive`, 64 UDP flows cycling, the traffic's rule at the lowest "
            f"priority; best of {repeat}):", ""]
    out += bench_packets(packet_sizes, repeat, args.quick) + [""]
    churn_n = 200 if args.quick else 1_000
    out += [f"Per packet under flow changes, µs (`Datapath.receive`, {churn_n:,} UDP flows cycling, each with "
            "its own rule; a new rule for another flow added with `Datapath.flow_mod_raw` every K packets, "
            f"its cost included; best of {repeat}):", ""]
    out += bench_churn(churn_n, (100,) if args.quick else (100, 10), repeat, args.quick)
    report = "\n".join(out)
    print(report)
    if args.json:
        benchlib.write_json(args.json, {"machine": m, "command": benchlib.command_line(argv), "repeat": repeat,
                                        "report": report})
    return 0


if __name__ == "__main__":
    sys.exit(main())
