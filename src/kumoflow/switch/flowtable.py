"""Flow entries and one flow table, behind a small interface.

`FlowTable` is what the pipeline and the flow-mod code use:

    table.insert(entry)         add (the caller removed any identical entry)
    table.remove(entry)         (alias: delete)
    table.lookup(key)           the highest-priority entry matching a flow key, or None
    table.lookup_wc(key, wc)    the same, OR-ing into wc (field -> mask) the bits
                                of the key the answer depended on (fastpath.py)
    table.find_strict(priority, compiled)   the entry with that exact match and priority
    table.covered(compiled)     the entries a non-strict match selects, in lookup order
    table.overlapping(priority, compiled)   an entry CHECK_OVERLAP refuses, or None
    iter(table), len(table)     in lookup order

plus the attributes the datapath reads or sets: table_id, max_entries,
name, config, lookup_count, matched_count, generation.

This reference implementation keeps entries in one list ordered by
priority (highest first, then insertion order) and scans it. The
datapath's default is the tuple space search of classifier.py, which
keeps these semantics exactly; `Datapath(table_class=FlowTable)` selects
this one (the differential tests use it as the oracle). `generation`
increases on every change so a cache in front of it can tell when it is
stale. Among overlapping entries of equal priority (undefined by the
specification) the one added first wins.
"""

from __future__ import annotations

from bisect import insort
from itertools import count
from typing import Iterator

from kumoflow import ofp

from .flowmatch import Compiled

_seq = count()

UINT64_MAX = (1 << 64) - 1


class FlowEntry:
    """One flow entry: match, priority, instructions, counters, timeouts, cookie."""

    __slots__ = ("table_id", "priority", "match", "compiled", "cookie", "idle_timeout", "hard_timeout",
                 "flags", "instructions", "program", "packet_count", "byte_count", "created",
                 "last_used", "meter_id", "groups", "out_ports", "seq", "sort_key", "is_table_miss",
                 "count_packets", "count_bytes", "fields")

    def __init__(self, table_id: int, priority: int, match: ofp.Match, compiled: Compiled, cookie: int,
                 idle_timeout: int, hard_timeout: int, flags: int, instructions: list, program,
                 now: float, meter_id: int | None, groups: frozenset, out_ports: frozenset) -> None:
        self.table_id = table_id
        self.priority = priority
        self.match = match
        self.compiled = compiled
        self.fields = compiled.fields
        self.cookie = cookie
        self.idle_timeout = idle_timeout
        self.hard_timeout = hard_timeout
        self.flags = flags
        self.instructions = instructions
        self.program = program
        self.packet_count = 0
        self.byte_count = 0
        self.created = now
        self.last_used = now
        self.meter_id = meter_id
        self.groups = groups
        self.out_ports = out_ports
        self.seq = next(_seq)
        self.sort_key = (-priority, self.seq)
        self.is_table_miss = priority == 0 and not compiled.fields
        self.count_packets = not flags & ofp.OFPFF.NO_PKT_COUNTS
        self.count_bytes = not flags & ofp.OFPFF.NO_BYT_COUNTS

    def __lt__(self, other: "FlowEntry") -> bool:
        return self.sort_key < other.sort_key

    @property
    def reported_packets(self) -> int:
        """Packet count as reported (all ones when NO_PKT_COUNTS: not kept)."""
        return self.packet_count if self.count_packets else UINT64_MAX

    @property
    def reported_bytes(self) -> int:
        return self.byte_count if self.count_bytes else UINT64_MAX

    def __repr__(self) -> str:
        return (f"<FlowEntry table={self.table_id} priority={self.priority} {self.compiled!r} "
                f"cookie={self.cookie:#x}>")


class FlowTable:
    """One OpenFlow flow table (reference classifier: ordered scan)."""

    def __init__(self, table_id: int, max_entries: int = 1_000_000) -> None:
        self.table_id = table_id
        self.max_entries = max_entries
        self.name = f"table{table_id}"
        self.config = 0
        self.lookup_count = 0
        self.matched_count = 0
        self.generation = 0
        self._entries: list[FlowEntry] = []
        self._strict: dict[tuple[int, tuple], FlowEntry] = {}

    def insert(self, entry: FlowEntry) -> None:
        insort(self._entries, entry)
        self._strict[(entry.priority, entry.compiled.fields)] = entry
        self.generation += 1

    def remove(self, entry: FlowEntry) -> None:
        entries = self._entries
        # Entries are ordered by sort_key: find this one by bisection.
        lo, hi = 0, len(entries)
        key = entry.sort_key
        while lo < hi:
            mid = (lo + hi) // 2
            if entries[mid].sort_key < key:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(entries) and entries[lo] is entry:
            del entries[lo]
        else:
            entries.remove(entry)
        k = (entry.priority, entry.compiled.fields)
        if self._strict.get(k) is entry:
            del self._strict[k]
        self.generation += 1

    delete = remove

    def lookup(self, key: list) -> FlowEntry | None:
        for entry in self._entries:
            for c, v, m in entry.fields:
                if key[c] & m != v:
                    break
            else:
                return entry
        return None

    def lookup_wc(self, key: list, wc: dict) -> FlowEntry | None:
        for entry in self._entries:
            fields = entry.fields
            for c, v, m in fields:
                wc[c] = wc.get(c, 0) | m
            for c, v, m in fields:
                if key[c] & m != v:
                    break
            else:
                return entry
        return None

    def find_strict(self, priority: int, compiled: Compiled) -> FlowEntry | None:
        return self._strict.get((priority, compiled.fields))

    def covered(self, compiled: Compiled) -> list[FlowEntry]:
        return [e for e in self._entries if compiled.covers(e.compiled)]

    def overlapping(self, priority: int, compiled: Compiled) -> FlowEntry | None:
        for e in self._entries:
            if e.priority == priority and e.compiled.overlaps(compiled):
                return e
        return None

    def __iter__(self) -> Iterator[FlowEntry]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return True
