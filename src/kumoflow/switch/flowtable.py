"""Flow entries and one flow table, behind a small interface.

`FlowTable` is what the pipeline and the flow-mod code use:

    table.insert(entry)         add (the caller removed any identical entry)
    table.replace(entry)        add, in place of the entry of identical match and
                                priority if there is one (returned, else None)
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

from bisect import bisect_left
from itertools import count
from typing import Iterator

from kumoflow import ofp
from kumoflow.ofp.instructions import unpack_instructions
from kumoflow.ofp.oxm import unpack_match

from .flowmatch import Compiled, fields_of_key

_seq = count()
#: priority -> the one int object entries of that priority share (filled as they come)
_PRIORITIES: list[int | None] = [None] * 0x10000
#: instruction bytes -> their decoded instructions (FlowEntry.instructions)
_DECODED: dict[bytes, list] = {}
#: FlowEntry.sort_key: the entry's sequence number in the low SEQ_BITS bits, minus
#: its priority above them (one int: lower sorts first, i.e. higher priority,
#: then older)
SEQ_BITS = 48
SEQ_MASK = (1 << SEQ_BITS) - 1
_NO_PKT_COUNTS = int(ofp.OFPFF.NO_PKT_COUNTS)
_NO_BYT_COUNTS = int(ofp.OFPFF.NO_BYT_COUNTS)

UINT64_MAX = (1 << 64) - 1


class WireMatch(ofp.Match):
    """An ofp.Match decoded from the bytes of an ofp_match, which `pack`
    gives back as they were, but for the padding, zeroed as Match.pack
    writes it (for OpenFlow-basic fields, encoding the decoded values gives
    the same bytes). Changing the match drops the bytes: it is then packed
    from its fields."""

    __slots__ = ("wire",)

    def pack(self) -> bytes:
        raw = getattr(self, "wire", None)
        if raw is None:
            return ofp.Match.pack(self)
        length = raw[2] << 8 | raw[3]
        if raw.count(0, length) != len(raw) - length:
            raw = raw[:length] + bytes(len(raw) - length)
        return raw

    def __setitem__(self, key, value) -> None:
        self.wire = None
        super().__setitem__(key, value)

    def __delitem__(self, key) -> None:
        self.wire = None
        super().__delitem__(key)

    def __ior__(self, other):
        self.wire = None
        return super().__ior__(other)

    def clear(self) -> None:
        self.wire = None
        super().clear()

    def pop(self, *args):
        self.wire = None
        return super().pop(*args)

    def popitem(self):
        self.wire = None
        return super().popitem()

    def setdefault(self, key, default=None):
        self.wire = None
        return super().setdefault(key, default)

    def update(self, *args, **kwargs) -> None:
        self.wire = None
        super().update(*args, **kwargs)


class FlowEntry:
    """One flow entry: match, priority, instructions, counters, timeouts, cookie.

    The entry keeps what forwarding needs (`fields`, `program`, counters)
    as plain values and the match and instructions as the controller sent
    them: either the objects of an in-process ofp.FlowMod, or, for a
    flow-mod decoded straight from the wire (Datapath.flow_mod_raw), the
    bytes of its ofp_match and of its instructions, decoded again only
    when a flow stats reply or FLOW_REMOVED asks for them (`match`,
    `instructions`). The match is kept as the classifier files it:
    `shape` (shared by all entries of that shape) and `key` (its values,
    an int or a tuple of ints; see flowmatch.shape_key); `fields` and
    `compiled` are made from them on demand. Bytes are not tracked by the
    garbage collector, nor are tuples of ints once a collection has seen
    them, and `program` is shared by the entries of identical
    instructions: a full collection visits one object per entry."""

    __slots__ = ("table_id", "priority", "_match", "cookie", "idle_timeout", "hard_timeout",
                 "flags", "_instructions", "program", "packet_count", "byte_count", "created",
                 "last_used", "meter_id", "groups", "out_ports", "sort_key", "is_table_miss",
                 "count_packets", "count_bytes", "shape", "key")

    def __init__(self, table_id: int, priority: int, match, compiled: Compiled | tuple, cookie: int,
                 idle_timeout: int, hard_timeout: int, flags: int, instructions, program,
                 now: float, meter_id: int | None, groups: frozenset, out_ports: frozenset) -> None:
        """`match`: an ofp.Match or the bytes of an ofp_match; `compiled`: its
        Compiled or that one's (shape, key); `instructions`: a list of ofp
        instructions or their bytes."""
        self.table_id = table_id
        # One int object per priority value (a 16-bit field): less memory, and
        # fewer distinct objects for a full garbage collection to look at.
        if type(priority) is int and 0 <= priority <= 0xFFFF:
            p = _PRIORITIES[priority]
            if p is None:
                p = _PRIORITIES[priority] = priority
            priority = p
        self.priority = priority
        self._match = match
        shape, key = compiled if type(compiled) is tuple else (compiled.shape, compiled.key)
        self.shape = shape
        self.key = key
        self.cookie = cookie
        self.idle_timeout = idle_timeout
        self.hard_timeout = hard_timeout
        self.flags = flags
        self._instructions = instructions
        self.program = program
        self.packet_count = 0
        self.byte_count = 0
        self.created = now
        self.last_used = now
        self.meter_id = meter_id
        self.groups = groups
        self.out_ports = out_ports
        self.sort_key = next(_seq) - (priority << SEQ_BITS)
        self.is_table_miss = priority == 0 and not shape
        self.count_packets = not flags & _NO_PKT_COUNTS
        self.count_bytes = not flags & _NO_BYT_COUNTS

    @property
    def match(self) -> ofp.Match:
        """The match as the controller sent it (a new ofp.Match each time for an
        entry made from the wire, which packs to those bytes without encoding
        them again)."""
        m = self._match
        if type(m) is bytes:
            match = WireMatch(unpack_match(m, 0, len(m))[0])
            match.wire = m
            return match
        return m

    @property
    def instructions(self) -> list:
        """The instructions as the controller sent them (a new list each time
        for an entry made from the wire)."""
        ins = self._instructions
        if type(ins) is bytes:
            # Entries of identical instructions share their bytes: decode them once.
            decoded = _DECODED.get(ins)
            if decoded is None:
                decoded = unpack_instructions(ins, 0, len(ins))
                if len(_DECODED) >= 4096:
                    _DECODED.clear()
                _DECODED[ins] = decoded
            return list(decoded)
        return ins

    @instructions.setter
    def instructions(self, value) -> None:
        self._instructions = value

    @property
    def compiled(self) -> Compiled:
        return Compiled.of_key(self.shape, self.key)

    @property
    def fields(self) -> tuple:
        """The compiled match's fields ((code, value|P, mask|P), ...), made anew."""
        return fields_of_key(self.shape, self.key)

    @property
    def seq(self) -> int:
        """Order of creation (unique): among equal priorities the older entry wins."""
        return self.sort_key & SEQ_MASK

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
        # (entry, its fields) in lookup order: an entry makes its fields anew when asked
        self._rows: list[tuple[FlowEntry, tuple]] = []
        self._strict: dict[tuple[int, tuple], FlowEntry] = {}

    def insert(self, entry: FlowEntry) -> None:
        fields = entry.fields
        self._rows.insert(bisect_left(self._rows, entry.sort_key, key=_row_order), (entry, fields))
        self._strict[(entry.priority, fields)] = entry
        self.generation += 1

    def remove(self, entry: FlowEntry) -> None:
        rows = self._rows
        # Rows are ordered by sort_key (unique): find this one by bisection.
        i = bisect_left(rows, entry.sort_key, key=_row_order)
        if not (i < len(rows) and rows[i][0] is entry):
            i = [e for e, _ in rows].index(entry)          # ValueError when it is not there
        _, fields = rows.pop(i)
        k = (entry.priority, fields)
        if self._strict.get(k) is entry:
            del self._strict[k]
        self.generation += 1

    delete = remove

    def replace(self, entry: FlowEntry) -> FlowEntry | None:
        old = self._strict.get((entry.priority, entry.fields))
        if old is not None:
            self.remove(old)
        self.insert(entry)
        return old

    def lookup(self, key: list) -> FlowEntry | None:
        for entry, fields in self._rows:
            for c, v, m in fields:
                if key[c] & m != v:
                    break
            else:
                return entry
        return None

    def lookup_wc(self, key: list, wc: dict) -> FlowEntry | None:
        for entry, fields in self._rows:
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
        covers = compiled.covers_fields
        return [e for e, fields in self._rows if covers(fields)]

    def overlapping(self, priority: int, compiled: Compiled) -> FlowEntry | None:
        for e, fields in self._rows:
            if e.priority == priority and compiled.overlaps_fields(fields):
                return e
        return None

    def __iter__(self) -> Iterator[FlowEntry]:
        return iter([e for e, _ in self._rows])

    def __len__(self) -> int:
        return len(self._rows)

    def __bool__(self) -> bool:
        return True


def _row_order(row: tuple) -> int:
    return row[0].sort_key

