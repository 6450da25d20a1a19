"""A flow table by tuple space search: lookup cost grows with the number of
distinct match shapes, not with the number of rules.

A rule's *shape* is the set of (field, mask) pairs of its match (its
compiled fields without the values). Rules of one shape live in one
*subtable*: a dict from the masked key (the tuple of the rule's values,
which already have the mask applied) to the rule, or to the rules of
equal match ordered best first when several priorities share it. Looking
a packet up in a subtable is one masked-key computation and one dict
probe, whatever the number of rules in it. This is the classifier design
of Open vSwitch ("The Design and Implementation of Open vSwitch", NSDI
2015, section 4, after Srinivasan et al.'s tuple space search).

`lookup` visits subtables in decreasing order of the highest priority
they hold and stops as soon as no remaining subtable can beat the best
match found so far, so high-priority matches are found without touching
the subtables of lower priority. `lookup_wc` does the same and records
the union of the masks of the subtables it examined: a packet that
agrees with this one on those bits gets the same answer, which is what
the megaflow cache (fastpath.py) keys on.

**Prefix tracking.** A subtable that misses would add its whole mask to
those bits, which for a routing table is ruinous: the router's own
addresses (/32s above every route) would make every megaflow recorded
through it hold the whole destination address, one megaflow per
destination. Open vSwitch avoids this with prefix tries ("The Design and
Implementation of Open vSwitch", section 5.4). Here a subtable whose
shape masks an IP address with a prefix (the first of ipv4_dst,
ipv6_dst, ipv4_src, ipv6_src it has) keeps, once a `lookup_wc` first
misses in it, the prefixes of its rules' addresses at a few *levels*:
every W/8 bits (W the address width: 4 for IPv4, 16 for IPv6) and at
its own length L, each with a count of the rules under it. A miss then
asks the levels from the shortest: the first level j whose j-bit
prefix of the packet's address no rule has rules out the whole
subtable for every packet that shares those j bits, whatever its other
fields, so only they (and the address's presence) are recorded instead
of the subtable's mask. A miss no level explains (the address is
there, another field differed) records the mask as before. With ten
/8 routes and the router's /32s a destination costs 8 bits; among
100,000 /20-/24 routes, about its route's length. The counts follow
inserts and removals; a subtable never missed in `lookup_wc` keeps none.

The interface and the OpenFlow semantics are those of
`flowtable.FlowTable` (the reference: an ordered scan), so the datapath
does not know which one it has:

    insert(entry) / remove(entry) (delete)     O(1) amortized, plus O(log n)
                                               when the subtable's top priority moves
    replace(entry)                             insert, in place of the entry of
                                               identical match and priority
    lookup(key) / lookup_wc(key, wc)           highest priority; among equal
                                               priorities the rule added first
    find_strict(priority, compiled)            identical match and priority
    covered(compiled)                          rules a non-strict match selects
    overlapping(priority, compiled)            CHECK_OVERLAP
    iter(table), len(table)                    lookup order (sorted lazily, cached)

Nothing re-sorts all rules on insert or delete: a subtable keeps its
maximum priority, and once a rule has been removed from it also a count
per priority and a heap of its priorities (lazily pruned) to find the
next maximum; only the short list of subtables is re-ordered, at the next
lookup after a maximum changed. Iteration (flow stats, dumps) sorts once
and keeps the order until the next change.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from functools import lru_cache
from heapq import heapify, heappop, heappush
from operator import attrgetter, itemgetter
from typing import Iterator

from . import flowkey as fk
from .flowmatch import FULL_P, Compiled
from .flowtable import SEQ_BITS, FlowEntry

__all__ = ["Classifier", "key_function", "FULL_P"]

P = fk.PRESENT
_SORT_KEY = attrgetter("sort_key")


def _index(bucket: list, entry: FlowEntry) -> int:
    """Where entry is in a bucket (ordered by sort_key, which is unique), or -1."""
    i = bisect_left(bucket, entry.sort_key, key=_SORT_KEY)
    return i if i < len(bucket) and bucket[i] is entry else -1


def _no_fields(key: list) -> tuple:
    return ()


@lru_cache(maxsize=4096)
def key_function(shape: tuple):
    """A function from a flow key (the list of flowkey) to the hashable key of
    its bits under `shape` (((field, mask), ...) sorted by field).

    Fields matched exactly need no masking: a present field holds
    PRESENT | value with the value within the field's width, so
    ``key[f] & FULL_P[f] == key[f]``. A shape of exact fields only is then
    one C call (operator.itemgetter); a shape with partial masks gets a
    small generated function with the masks as constants. The key of a
    rule is the tuple of its compiled values (a scalar for a shape of one
    exact field, as itemgetter returns), see flowmatch.shape_key. Functions are kept
    by shape: a megaflow cache refilled after a flush asks for them again.
    """
    if not shape:
        return _no_fields
    if all(m == FULL_P[c] for c, m in shape):
        return itemgetter(*[c for c, _ in shape])
    parts = ", ".join(f"k[{c}]" if m == FULL_P[c] else f"k[{c}] & {m:#x}" for c, m in shape)
    # Only field numbers and integer masks go into the source text.
    return eval(f"lambda k: ({parts},)")     # noqa: S307


def _scalar(shape: tuple) -> bool:
    return len(shape) == 1 and shape[0][1] == FULL_P[shape[0][0]]


#: Address fields whose prefixes a subtable tracks (the first its shape masks with a prefix).
PREFIX_FIELDS = (fk.IPV4_DST, fk.IPV6_DST, fk.IPV4_SRC, fk.IPV6_SRC)


def _prefix_field(shape: tuple) -> tuple[int, int, int]:
    """(position in the shape, field, prefix length) of the address field a
    subtable of this shape tracks, or (-1, -1, 0)."""
    for f in PREFIX_FIELDS:
        for i, (c, m) in enumerate(shape):
            if c == f:
                full = FULL_P[c] ^ P
                inv = full ^ (m & full)
                if inv & (inv + 1) == 0:            # leading ones, then zeros: a prefix
                    return i, c, fk.WIDTHS[c] - inv.bit_length()
    return -1, -1, 0


class _Subtable:
    """The rules of one shape."""

    __slots__ = ("shape", "keyfn", "scalar", "rules", "counts", "heap", "max_priority", "n",
                 "ppos", "pfield", "plen", "levels")

    def __init__(self, shape: tuple) -> None:
        self.shape = shape
        self.keyfn = key_function(shape)
        self.scalar = _scalar(shape)
        #: the tracked address field (module docstring, "Prefix tracking"): its
        #: position in the shape, its code (-1: none) and prefix length
        self.ppos, self.pfield, self.plen = _prefix_field(shape)
        #: [(shift, {prefix: rules}, mask recorded when no rule has the prefix)]
        #: by increasing length; None until a lookup_wc first misses here
        self.levels: list | None = None
        #: masked key -> FlowEntry, or a list of FlowEntry (2+) best first
        self.rules: dict = {}
        #: priority -> rules of that priority, made (counted()) when a rule is
        #: first removed or an overlap check asks: a subtable that only grows
        #: needs only its maximum
        self.counts: dict[int, int] | None = None
        #: -priority, stale entries pruned lazily; made when the maximum is first removed
        self.heap: list[int] | None = None
        self.max_priority = -1
        self.n = 0

    def entries(self) -> Iterator[FlowEntry]:
        for b in self.rules.values():
            if type(b) is list:
                yield from b
            else:
                yield b

    # -- prefix tracking ------------------------------------------------------------------------
    def ruled_out(self, key: list) -> int | None:
        """After a miss: a mask of the tracked field under which no rule of this
        subtable can match any packet that agrees with `key`, or None."""
        v = key[self.pfield]
        if not v & P:
            return P                                # no address: no rule here matches
        levels = self.levels
        if levels is None:
            levels = self._track()
        v ^= P                                      # (small ints hash and shift faster)
        for shift, seen, mask in levels:
            if v >> shift not in seen:
                return mask
        return None

    def _track(self) -> list:
        """Make the levels from the rules there are."""
        width, length = fk.WIDTHS[self.pfield], self.plen
        step = width // 8
        self.levels = []
        for j in sorted(set(range(step, length, step)) | {length}):
            self.levels.append((width - j, {}, P | ((1 << j) - 1) << (width - j)))
        for e in self.entries():
            self.track(e, 1)
        return self.levels

    def track(self, entry: FlowEntry, n: int) -> None:
        """Count a rule in the levels (n = 1) or uncount it (n = -1)."""
        key = entry.key
        v = (key if self.scalar else key[self.ppos]) ^ P
        for shift, seen, _ in self.levels:
            p = v >> shift
            c = seen.get(p, 0) + n
            if c:
                seen[p] = c
            else:
                del seen[p]

    def counted(self) -> dict[int, int]:
        """`counts`, counted from the rules the first time."""
        counts = self.counts
        if counts is None:
            counts = self.counts = {}
            for e in self.entries():
                counts[e.priority] = counts.get(e.priority, 0) + 1
        return counts

    def add_priority(self, p: int) -> bool:
        """Count a rule of priority p (already in `rules`); True when the maximum changed."""
        counts = self.counts
        if counts is not None:
            c = counts.get(p)
            if c is not None:
                counts[p] = c + 1
                return False
            counts[p] = 1
            if self.heap is not None:
                heappush(self.heap, -p)
        if p > self.max_priority:
            self.max_priority = p
            return True
        return False

    def drop_priority(self, p: int) -> bool:
        """Uncount a rule of priority p (counted() before it left `rules`);
        True when the maximum changed."""
        counts = self.counts
        c = counts[p] - 1
        if c:
            counts[p] = c
            return False
        del counts[p]
        heap = self.heap
        if heap is not None and len(heap) > 2 * len(counts) + 16:     # too many stale entries
            heap = self.heap = None
        if p != self.max_priority:
            return False
        if heap is None:
            heap = self.heap = [-q for q in counts]
            heapify(heap)
        while heap and -heap[0] not in counts:
            heappop(heap)
        self.max_priority = -heap[0] if heap else -1
        return True


def _pseudo_key(fields: tuple) -> list:
    """A flow key holding a match's values (for probing subtables with a match)."""
    k = [0] * fk.N_FIELDS
    for c, v, _ in fields:
        k[c] = v
    return k


def _entries_where(st: _Subtable, tests: list) -> Iterator[FlowEntry]:
    """The entries of a subtable whose values pass every test (position
    in the shape, mask, value): ``values[position] & mask == value``."""
    for key, b in st.rules.items():
        values = key if type(key) is tuple else (key,)
        for i, m, v in tests:
            if values[i] & m != v:
                break
        else:
            if type(b) is list:
                yield from b
            else:
                yield b


class Classifier:
    """One OpenFlow flow table: tuple space search (see the module docstring)."""

    def __init__(self, table_id: int, max_entries: int = 1_000_000) -> None:
        self.table_id = table_id
        self.max_entries = max_entries
        self.name = f"table{table_id}"
        self.config = 0
        self.lookup_count = 0
        self.matched_count = 0
        self.generation = 0
        self._subtables: dict[tuple, _Subtable] = {}
        # (max priority, rules.get, keyfn) by decreasing max priority; None:
        # rebuild at the next lookup. _unions[i]: the union of the masks of
        # the first i + 1 subtables of the plan, as ((field, mask), ...).
        self._plan: list | None = []
        self._unions: list[tuple] = []
        self._sorted: list[FlowEntry] | None = []
        self._n = 0

    # -- changes ---------------------------------------------------------------------------
    def insert(self, entry: FlowEntry) -> None:
        """Add an entry (the caller removed any entry of identical match and
        priority; if not, both are kept, the older first, as FlowTable does)."""
        st = self._subtable(entry.shape)
        rules = st.rules
        key = entry.key
        b = rules.setdefault(key, entry)                # one probe when the key is new
        if b is not entry:
            if type(b) is list:
                insort(b, entry)
            else:
                rules[key] = [b, entry] if b.sort_key < entry.sort_key else [entry, b]
        if st.levels is not None:
            st.track(entry, 1)
        self._added(st, entry.priority)

    def replace(self, entry: FlowEntry) -> FlowEntry | None:
        """insert(entry), or, when an entry of identical match and priority is
        there, put entry in its place and return it. (In a bucket no other
        entry has that priority: the place is the same in lookup order.)
        Every flow-mod ADD comes here: what _subtable and _added do is
        written out."""
        shape = entry.shape
        st = self._subtables.get(shape)
        if st is None:
            st = self._subtables[shape] = _Subtable(shape)
        rules = st.rules
        key, priority = entry.key, entry.priority
        b = rules.setdefault(key, entry)                # one probe when the key is new
        if b is not entry:
            if type(b) is list:
                # the first entry of this priority or lower (by -priority, then age)
                i = bisect_left(b, -(priority << SEQ_BITS), key=_SORT_KEY)
                if i < len(b) and b[i].priority == priority:
                    old, b[i] = b[i], entry
                    self._changed()
                    return old
                b.insert(i, entry)
            elif b.priority == priority:
                rules[key] = entry
                self._changed()
                return b
            else:
                rules[key] = [b, entry] if b.sort_key < entry.sort_key else [entry, b]
        if st.levels is not None:
            st.track(entry, 1)
        st.n += 1
        if st.counts is not None:
            if st.add_priority(priority) or st.n == 1:
                self._plan = None
        elif priority > st.max_priority:                # (add_priority, for a subtable not counted)
            st.max_priority = priority
            self._plan = None
        self._n += 1
        self._sorted = None
        self.generation += 1
        return None

    def _subtable(self, shape: tuple) -> _Subtable:
        st = self._subtables.get(shape)
        if st is None:
            st = self._subtables[shape] = _Subtable(shape)
        return st

    def _added(self, st: _Subtable, priority: int) -> None:
        """Count a rule just put in st."""
        st.n += 1
        if st.add_priority(priority) or st.n == 1:
            self._plan = None
        self._n += 1
        self._changed()

    def _changed(self) -> None:
        self._sorted = None
        self.generation += 1

    def remove(self, entry: FlowEntry) -> None:
        shape, key = entry.shape, entry.key
        st = self._subtables.get(shape)
        if st is None:
            raise ValueError(f"{entry!r} is not in table {self.table_id}")
        st.counted()                                    # (before the entry leaves `rules`)
        rules = st.rules
        b = rules.get(key)
        if b is entry:
            del rules[key]
        elif type(b) is list and _index(b, entry) >= 0:
            del b[_index(b, entry)]
            if len(b) == 1:
                rules[key] = b[0]
        else:
            raise ValueError(f"{entry!r} is not in table {self.table_id}")
        if st.levels is not None:
            st.track(entry, -1)
        st.n -= 1
        if st.n == 0:
            del self._subtables[shape]
            self._plan = None
        elif st.drop_priority(entry.priority):
            self._plan = None
        self._n -= 1
        self._sorted = None
        self.generation += 1

    delete = remove

    # -- lookup ----------------------------------------------------------------------------
    def _replan(self) -> list:
        order = sorted(self._subtables.values(), key=attrgetter("max_priority"), reverse=True)
        self._plan = plan = [(st.max_priority, st.rules.get, st.keyfn, st) for st in order]
        unions = []
        acc: dict[int, int] = {}
        for st in order:
            for c, m in st.shape:
                acc[c] = acc.get(c, 0) | m
            unions.append(tuple(acc.items()))
        self._unions = unions
        return plan

    def lookup(self, key: list) -> FlowEntry | None:
        """The highest-priority entry matching a flow key (the first added among equals)."""
        plan = self._plan
        if plan is None:
            plan = self._replan()
        best = None
        best_priority = -1
        for max_priority, get, keyfn, _ in plan:
            if max_priority < best_priority:
                break                              # nothing further down can win
            b = get(keyfn(key))
            if b is not None:
                if type(b) is list:
                    b = b[0]
                if best is None or b.sort_key < best.sort_key:
                    best = b
                    best_priority = b.priority
        return best

    def lookup_wc(self, key: list, wc: dict) -> FlowEntry | None:
        """`lookup`, also OR-ing into wc (field -> mask) the mask of every
        subtable examined: the bits of the key the answer depends on. (The
        subtables examined are a prefix of the plan, whose unions are kept.)
        A subtable that missed and whose tracked prefixes rule it out gives
        only the bits that did (module docstring, "Prefix tracking")."""
        plan = self._plan
        if plan is None:
            plan = self._replan()
        best = None
        best_priority = -1
        examined = 0
        narrowed = None
        for max_priority, get, keyfn, st in plan:
            if max_priority < best_priority:
                break
            b = get(keyfn(key))
            if b is None:
                if st.pfield >= 0:
                    m = st.ruled_out(key)
                    if m is not None:
                        if narrowed is None:
                            narrowed = {}
                        narrowed[examined] = m
            else:
                if type(b) is list:
                    b = b[0]
                if best is None or b.sort_key < best.sort_key:
                    best = b
                    best_priority = b.priority
            examined += 1
        if narrowed is not None:
            for i in range(examined):
                st = plan[i][3]
                bits = narrowed.get(i)
                if bits is None:
                    for c, m in st.shape:
                        wc[c] = wc.get(c, 0) | m
                else:
                    c = st.pfield
                    wc[c] = wc.get(c, 0) | bits
        elif examined:
            for c, m in self._unions[examined - 1]:
                wc[c] = wc.get(c, 0) | m
        return best

    # -- flow-mod and stats helpers -------------------------------------------------------------
    def find_strict(self, priority: int, compiled: Compiled) -> FlowEntry | None:
        """The entry of identical match (same shape, same key) and priority."""
        st = self._subtables.get(compiled.shape)
        if st is None:
            return None
        b = st.rules.get(compiled.key)
        if type(b) is list:                      # best first: by -priority, then age
            i = bisect_left(b, -(priority << SEQ_BITS), key=_SORT_KEY)
            if i < len(b) and b[i].priority == priority:
                return b[i]
            return None
        return b if b is not None and b.priority == priority else None

    def covered(self, compiled: Compiled) -> list[FlowEntry]:
        """Entries a non-strict match selects (compiled.covers(entry)), in lookup order.

        Only subtables whose shape has every field of the match with at least
        its mask can hold one; in the subtable of exactly the match's shape
        they are the ones under its key, in the others those whose values
        agree with the match's under its masks."""
        fields = compiled.fields
        if not fields:
            return list(self)
        cshape = compiled.shape
        out: list[FlowEntry] = []
        for shape, st in self._subtables.items():
            if shape == cshape:
                b = st.rules.get(compiled.key)
                if type(b) is list:
                    out.extend(b)
                elif b is not None:
                    out.append(b)
                continue
            position = {c: (i, m) for i, (c, m) in enumerate(shape)}
            tests = []
            for c, v, m in fields:
                sm = position.get(c)
                if sm is None or sm[1] & m != m:
                    break
                tests.append((sm[0], m, v))
            else:
                out.extend(_entries_where(st, tests))
        out.sort(key=_SORT_KEY)
        return out

    def overlapping(self, priority: int, compiled: Compiled) -> FlowEntry | None:
        """The first entry (lookup order) of this priority one packet could
        match together with `compiled` (CHECK_OVERLAP), or None.

        When the match pins every field of a subtable's shape at least as
        specifically as the shape, the overlapping rules of that subtable
        are exactly those under the match's masked key: one probe. Else
        they are those whose values agree with the match's on the bits both
        look at."""
        cmap = compiled.fmap
        pseudo = None
        found: list[FlowEntry] = []
        for shape, st in self._subtables.items():
            if priority not in st.counted():
                continue
            for c, m in shape:
                e = cmap.get(c)
                if e is None or e[1] & m != m:
                    break
            else:
                if pseudo is None:
                    pseudo = _pseudo_key(compiled.fields)
                b = st.rules.get(st.keyfn(pseudo))
                if b is not None:
                    found.extend(e for e in (b if type(b) is list else (b,)) if e.priority == priority)
                continue
            tests = []
            for i, (c, m) in enumerate(shape):
                e = cmap.get(c)
                if e is not None:
                    common = m & e[1]
                    tests.append((i, common, e[0] & common))
            found.extend(e for e in _entries_where(st, tests) if e.priority == priority)
        return min(found, key=_SORT_KEY) if found else None

    def __iter__(self) -> Iterator[FlowEntry]:
        s = self._sorted
        if s is None:
            s = []
            for st in self._subtables.values():
                s.extend(st.entries())
            s.sort(key=_SORT_KEY)
            self._sorted = s
        return iter(s)

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return True

    # -- introspection ------------------------------------------------------------------------
    @property
    def n_subtables(self) -> int:
        return len(self._subtables)

    def shapes(self) -> list[tuple[tuple, int, int]]:
        """(shape, rules, max priority) of every subtable, in lookup order."""
        order = sorted(self._subtables.values(), key=attrgetter("max_priority"), reverse=True)
        return [(st.shape, st.n, st.max_priority) for st in order]
