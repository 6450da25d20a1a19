"""Reconciliation: what one switch holds made equal to what it should hold,
with the fewest messages and no moment where a packet has nowhere to go.

A `Reconciler` keeps two views of one switch, both keyed by `Entry.key`:
``desired`` (what compilation says; the controller core keeps it current)
and ``installed`` (what the switch holds). ``installed`` is first read
from the switch itself (flow, group and meter stats on connect), then
kept by recording what is sent, and read again by the periodic audit, so
a flow someone deleted by hand is noticed and put back.

`sync` compares the two for some keys (or all) and returns the messages
that make them equal, in this order:

1. groups and meters added or changed (flows about to point at them must
   find them);
2. flows added or changed, the last table first (a goto never lands in a
   table whose flows are not there yet); a changed flow is modified in
   place, so its counters and duration keep counting;
3. a barrier, then the flows no longer wanted, the first table first;
4. a barrier, then groups and meters no longer wanted.

The barriers are sent without waiting: a switch finishes everything before
a barrier before it starts on what follows (6.2 of the specification), so
packets always find either the old entries or the new ones. An entry the
switch refuses (an ERROR answering its message) is forgotten, so the next
audit tries again.

A restart of the controller, or a switch reconnecting, reads the switch
first: when what it holds is already right, `sync` sends nothing at all.
Only entries the reconciler owns (`owned`) are ever deleted; flows in
tables of apps that manage their own (the reactive `l2`) are left alone.

While a read is in flight, what is sent is journaled and replayed over the
read's result: the switch answers the read before it sees those messages.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

from kumoflow import ofp

from .flows import Entry, Flow, Group, Meter

Key = tuple
#: entries a read turns into Flows (Groups, Meters) between two yields: ~10-25 ms of CPU
READ_STEP = 1000


class Reconciler:
    def __init__(self, desired: dict[Key, Entry], owned: Callable[[Entry], bool]) -> None:
        self.desired = desired
        self.owned = owned
        self.installed: dict[Key, Entry] | None = None   # None until first read
        self._journal: dict[Key, Entry | None] | None = None
        self._ours: set[Key] = set()   # keys sync has sent since the switch was first read
        self.differing: set[Key] = set()   # keys the last audit found different (audit_in_steps)
        self.sent = 0          # entries sent by sync (adds, changes, deletes), for tests and benchmarks
        self.last = (0, 0, 0)  # (added, changed, deleted) by the last sync
        self.runs = 0          # syncs done, and (added, changed, deleted) by all of them (metrics)
        self.totals = (0, 0, 0)

    # --- reading what the switch holds ----------------------------------------------

    @staticmethod
    def read_requests() -> list[ofp.Message]:
        return [ofp.FlowStatsRequest(table_id=ofp.OFPTT.ALL), ofp.GroupDescRequest(), ofp.MeterConfigRequest()]

    def reading(self) -> None:
        """A read was just sent: journal what goes out until its result comes back."""
        self._journal = {}

    def read(self, flows: Iterable[ofp.FlowStats], groups: Iterable[ofp.GroupDesc],
             meters: Iterable[ofp.MeterConfig]) -> None:
        for _ in self.read_in_steps(flows, groups, meters):
            pass

    def read_in_steps(self, flows: Iterable[ofp.FlowStats], groups: Iterable[ofp.GroupDesc],
                      meters: Iterable[ofp.MeterConfig], step: int | None = None) -> Iterator[None]:
        """`read`, `step` entries at a time: a generator that yields between steps (the caller
        lets other work run) and applies the result when exhausted. A read of 100,000 flows
        is seconds of CPU; the periodic audit must not stop the controller that long."""
        installed: dict[Key, Entry] = {}
        n, step = 0, step or READ_STEP
        for make, items in ((Flow.from_stats, flows), (Group.from_desc, groups), (Meter.from_config, meters)):
            for item in items:
                entry = make(item)
                installed[entry.key] = entry
                n += 1
                if not n % step:
                    yield
        for key, entry in (self._journal or {}).items():
            if entry is None:
                installed.pop(key, None)
            else:
                installed[key] = entry
        self.installed = installed
        self._journal = None

    @property
    def ready(self) -> bool:
        return self.installed is not None

    @property
    def reading_now(self) -> bool:
        """A read was sent and its result is not applied yet."""
        return self._journal is not None

    def audit_in_steps(self, flows: Iterable[ofp.FlowStats], groups: Iterable[ofp.GroupDesc],
                       meters: Iterable[ofp.MeterConfig]) -> Iterator[None]:
        """An audit's read applied in steps (`read_in_steps`), then the keys that differ found
        in steps too, into `differing`: the reconcile that follows looks at those alone (a
        comparison of 100,000 entries in one go stops the controller for half a second)."""
        yield from self.read_in_steps(flows, groups, meters)
        installed, desired, step = self.installed or {}, self.desired, READ_STEP
        keys = [*desired, *(k for k, e in installed.items() if k not in desired and self.owned(e))]
        differing: set[Key] = set()
        for i in range(0, len(keys), step):
            adds, changes, deletes = self.diff(keys[i:i + step])
            differing.update(e.key for e in adds)
            differing.update(want.key for want, _ in changes)
            differing.update(e.key for e in deletes)
            yield
        self.differing = differing

    def read_failed(self) -> None:
        """The read got no answer: stop journaling (the next audit reads again)."""
        self._journal = None

    def forget(self, key: Key) -> None:
        """The switch refused an entry: it may hold anything there now."""
        self._ours.discard(key)
        if self.installed is not None:
            self.installed.pop(key, None)

    # --- making it right ------------------------------------------------------------

    def diff(self, keys: Iterable[Key] | None = None) -> tuple[list[Entry], list[tuple[Entry, Entry]], list[Entry]]:
        """(to add, (wanted, installed) to change, to delete) for `keys` (None: every key)."""
        installed = self.installed or {}
        if keys is None:
            keys = self.desired.keys() | {k for k, e in installed.items() if self.owned(e)}
        adds, changes, deletes = [], [], []
        for key in keys:
            want, have = self.desired.get(key), installed.get(key)
            if want is None:
                if have is not None and self.owned(have):
                    deletes.append(have)
            elif have is None:
                adds.append(want)
            elif have.value != want.value:
                changes.append((want, have))
        return adds, changes, deletes

    def sync(self, keys: Iterable[Key] | None = None, adds_only: bool = False) -> list[tuple[ofp.Message, Key | None]]:
        """The messages (each with the key it is about) that make `keys` right.
        `adds_only`: add what is missing; change and delete nothing the switch
        held when it was read, only what sync itself sent since (that was
        compiled from what the controller knew then, and it knows more now)."""
        if self.installed is None:
            return []
        adds, changes, deletes = self.diff(keys)
        if adds_only:
            ours = self._ours
            changes = [(want, have) for want, have in changes if want.key in ours]
            deletes = [have for have in deletes if have.key in ours]
        out: list[tuple[ofp.Message, Key | None]] = []
        for want in adds:
            if not isinstance(want, Flow):
                out.append((want.add(), want.key))
        for want, have in changes:
            if not isinstance(want, Flow):
                out.append((want.change(have), want.key))
        flow_mods = [(want.table, want.add(), want) for want in adds if isinstance(want, Flow)]
        flow_mods += [(want.table, want.change(have), want) for want, have in changes if isinstance(want, Flow)]
        for _, msg, want in sorted(flow_mods, key=lambda t: -t[0]):
            out.append((msg, want.key))
        flow_deletes = sorted((e for e in deletes if isinstance(e, Flow)), key=lambda e: e.table)
        other_deletes = [e for e in deletes if not isinstance(e, Flow)]
        for batch in (flow_deletes, other_deletes):
            if batch:
                if out:
                    out.append((ofp.BarrierRequest(), None))
                out.extend((e.delete(), e.key) for e in batch)
        self._record(adds, changes, deletes)
        self.last = (len(adds), len(changes), len(deletes))
        self.sent += sum(self.last)
        self.runs += 1
        self.totals = (self.totals[0] + self.last[0], self.totals[1] + self.last[1], self.totals[2] + self.last[2])
        return out

    def _record(self, adds: list[Entry], changes: list[tuple[Entry, Entry]], deletes: list[Entry]) -> None:
        installed = self.installed
        assert installed is not None
        for entry in [*adds, *(want for want, _ in changes)]:
            installed[entry.key] = entry
            self._ours.add(entry.key)
            if self._journal is not None:
                self._journal[entry.key] = entry
        for entry in deletes:
            installed.pop(entry.key, None)
            self._ours.discard(entry.key)
            if self._journal is not None:
                self._journal[entry.key] = None
