"""Flows, groups and meters as values the reconciler can compare.

A switch reports back what it was given in its own words: match fields in
another order, an Output's max_len rewritten, an empty apply-actions left
out, a weight it ignores zeroed. So each entry is reduced to a canonical
``key`` (what identifies it on the switch: table, priority and match for a
flow, the id for a group or meter) and ``value`` (everything else that
matters), both plain bytes and ints, and two entries are the same when
those are equal. The same reduction is applied to what the controller
wants and to what it reads back, so comparing them is exact.
"""

from __future__ import annotations

from typing import Any

from kumoflow import ofp
from kumoflow.ofp.oxm import FIELDS_BY_NAME

_CONTROLLER = int(ofp.OFPP.CONTROLLER)
_OUTPUT = int(ofp.OFPAT.OUTPUT)
#: instruction order of execution (5.9): the order a switch reports them in
_ORDER = {int(t): i for i, t in enumerate((ofp.OFPIT.METER, ofp.OFPIT.APPLY_ACTIONS, ofp.OFPIT.CLEAR_ACTIONS,
                                           ofp.OFPIT.WRITE_ACTIONS, ofp.OFPIT.WRITE_METADATA,
                                           ofp.OFPIT.GOTO_TABLE, ofp.OFPIT.EXPERIMENTER))}
_ACTION_LISTS = (int(ofp.OFPIT.APPLY_ACTIONS), int(ofp.OFPIT.WRITE_ACTIONS))
_SELECT, _FF = int(ofp.OFPGT.SELECT), int(ofp.OFPGT.FF)


def _field_order(item: tuple[Any, Any]) -> tuple[int, str]:
    f = FIELDS_BY_NAME.get(item[0]) if isinstance(item[0], str) else None
    return (f.code if f is not None else 1 << 16, str(item[0]))


def match_bytes(match: ofp.Match) -> bytes:
    return ofp.Match(sorted(match.items(), key=_field_order)).pack()


def _actions(actions: list[ofp.Action]) -> bytes:
    out = []
    for a in actions:
        if a.TYPE == _OUTPUT and a.port != _CONTROLLER and a.max_len:
            a = ofp.Output(a.port, 0)   # max_len means something only towards the controller
        out.append(a.pack())
    return b"".join(out)


#: instructions_bytes of the lists seen last, by identity: apps share one list among many
#: flows (every route through one next hop); a list is never changed once in a Flow
_MEMO: dict[int, tuple[list, bytes]] = {}


def instructions_bytes(instructions: list[ofp.Instruction]) -> bytes:
    memo = _MEMO.get(id(instructions))
    if memo is not None and memo[0] is instructions:
        return memo[1]
    value = _instructions_bytes(instructions)
    if len(_MEMO) > 1024:
        _MEMO.clear()
    _MEMO[id(instructions)] = (instructions, value)
    return value


def _instructions_bytes(instructions: list[ofp.Instruction]) -> bytes:
    parts = []
    for ins in sorted(instructions, key=lambda i: _ORDER.get(i.TYPE, 99)):
        if ins.TYPE in _ACTION_LISTS:
            if not ins.actions and ins.TYPE == _ACTION_LISTS[0]:
                continue    # an empty apply-actions does nothing
            parts.append(ins.TYPE.to_bytes(2, "big") + _actions(ins.actions))
        else:
            parts.append(ins.pack())
    return b"".join(parts)


class Flow:
    """One flow entry as wanted or as read back. Its match and instructions
    are not changed once it is made (its key and value are computed then)."""

    __slots__ = ("table", "priority", "match", "instructions", "cookie", "idle_timeout", "hard_timeout",
                 "flags", "key", "value")

    def __init__(self, table: int, priority: int, match: ofp.Match, instructions: list[ofp.Instruction],
                 cookie: int = 0, idle_timeout: int = 0, hard_timeout: int = 0, flags: int = 0) -> None:
        self.table, self.priority, self.match = table, priority, match
        self.instructions, self.cookie = instructions, cookie
        self.idle_timeout, self.hard_timeout, self.flags = idle_timeout, hard_timeout, flags
        self.key = ("flow", table, priority, match_bytes(match))
        self.value = (cookie, instructions_bytes(instructions), idle_timeout, hard_timeout, int(flags))

    @classmethod
    def from_stats(cls, s: ofp.FlowStats) -> "Flow":
        return cls(s.table_id, s.priority, s.match, s.instructions, s.cookie, s.idle_timeout, s.hard_timeout,
                   s.flags)

    def add(self) -> ofp.FlowMod:
        return ofp.FlowMod(cookie=self.cookie, table_id=self.table, priority=self.priority, match=self.match,
                           instructions=self.instructions, idle_timeout=self.idle_timeout,
                           hard_timeout=self.hard_timeout, flags=self.flags)

    def modify(self) -> ofp.FlowMod:
        """Change the instructions in place: counters and duration keep counting."""
        return ofp.FlowMod(command=ofp.OFPFC.MODIFY_STRICT, table_id=self.table, priority=self.priority,
                           match=self.match, instructions=self.instructions)

    def delete(self) -> ofp.FlowMod:
        return ofp.FlowMod(command=ofp.OFPFC.DELETE_STRICT, table_id=self.table, priority=self.priority,
                           match=self.match)

    def change(self, installed: "Flow") -> ofp.FlowMod:
        """What turns `installed` (same key) into this flow. A MODIFY cannot
        change the cookie, timeouts or flags (7.3.4.1), so those take an ADD."""
        if installed.value[0] != self.value[0] or installed.value[2:] != self.value[2:]:
            return self.add()
        return self.modify()

    def __repr__(self) -> str:
        return (f"Flow(table={self.table}, priority={self.priority}, {self.match!r}, {self.instructions!r}, "
                f"cookie={self.cookie:#x})")


def _bucket(b: ofp.Bucket, gtype: int) -> bytes:
    weight = b.weight if gtype == _SELECT else 0
    watched = gtype in (_SELECT, _FF)
    body = _actions(b.actions)
    return b"".join((weight.to_bytes(2, "big"),
                     (b.watch_port if watched else ofp.OFPP.ANY).to_bytes(4, "big"),
                     (b.watch_group if watched else ofp.OFPG.ANY).to_bytes(4, "big"),
                     len(body).to_bytes(2, "big"), body))


class Group:
    __slots__ = ("group_id", "type", "buckets", "key", "value")

    def __init__(self, group_id: int, type: int, buckets: list[ofp.Bucket]) -> None:
        self.group_id, self.type, self.buckets = group_id, int(type), buckets
        self.key = ("group", group_id)
        self.value = (self.type, b"".join(_bucket(b, self.type) for b in buckets))

    @classmethod
    def from_desc(cls, d: ofp.GroupDesc) -> "Group":
        return cls(d.group_id, d.type, d.buckets)

    def add(self) -> ofp.GroupMod:
        return ofp.GroupMod(ofp.OFPGC.ADD, self.type, self.group_id, self.buckets)

    def change(self, installed: "Group") -> ofp.GroupMod:
        return ofp.GroupMod(ofp.OFPGC.MODIFY, self.type, self.group_id, self.buckets)

    def delete(self) -> ofp.GroupMod:
        return ofp.GroupMod(ofp.OFPGC.DELETE, self.type, self.group_id)

    def __repr__(self) -> str:
        return f"Group({self.group_id:#x}, type={self.type}, {self.buckets!r})"


class Meter:
    __slots__ = ("meter_id", "flags", "bands", "key", "value")

    def __init__(self, meter_id: int, flags: int, bands: list) -> None:
        self.meter_id, self.flags, self.bands = meter_id, int(flags), bands
        self.key = ("meter", meter_id)
        self.value = (self.flags, b"".join(b.pack() for b in bands))

    @classmethod
    def from_config(cls, c: ofp.MeterConfig) -> "Meter":
        return cls(c.meter_id, c.flags, c.bands)

    def add(self) -> ofp.MeterMod:
        return ofp.MeterMod(ofp.OFPMC.ADD, self.flags, self.meter_id, self.bands)

    def change(self, installed: "Meter") -> ofp.MeterMod:
        return ofp.MeterMod(ofp.OFPMC.MODIFY, self.flags, self.meter_id, self.bands)

    def delete(self) -> ofp.MeterMod:
        return ofp.MeterMod(ofp.OFPMC.DELETE, 0, self.meter_id)

    def __repr__(self) -> str:
        return f"Meter({self.meter_id}, flags={self.flags}, {self.bands!r})"


Entry = Flow | Group | Meter
