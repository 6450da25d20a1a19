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

import struct
from typing import Any

from kumoflow import ofp
from kumoflow.ofp.base import _BUILD, OFP_VERSION as _OFP_VERSION
from kumoflow.ofp.oxm import FIELDS_BY_NAME, unpack_match

_CONTROLLER = int(ofp.OFPP.CONTROLLER)
_OUTPUT = int(ofp.OFPAT.OUTPUT)
#: instruction order of execution (5.9): the order a switch reports them in
_ORDER = {int(t): i for i, t in enumerate((ofp.OFPIT.METER, ofp.OFPIT.APPLY_ACTIONS, ofp.OFPIT.CLEAR_ACTIONS,
                                           ofp.OFPIT.WRITE_ACTIONS, ofp.OFPIT.WRITE_METADATA,
                                           ofp.OFPIT.GOTO_TABLE, ofp.OFPIT.EXPERIMENTER))}
_ACTION_LISTS = (int(ofp.OFPIT.APPLY_ACTIONS), int(ofp.OFPIT.WRITE_ACTIONS))
_SELECT, _FF = int(ofp.OFPGT.SELECT), int(ofp.OFPGT.FF)
_FLOW_MOD_HEAD = struct.Struct("!BBHIQQBBHHHIIIH2x").pack     # the header and ofp_flow_mod up to its match
_FLOW_MOD_TYPE = int(ofp.OFPT.FLOW_MOD)
_PLAIN = _BUILD[ofp.FlowMod]
_ADD, _MODIFY_STRICT, _DELETE_STRICT = int(ofp.OFPFC.ADD), int(ofp.OFPFC.MODIFY_STRICT), int(ofp.OFPFC.DELETE_STRICT)
_NO_BUFFER, _ANY_PORT, _ANY_GROUP = int(ofp.OFP_NO_BUFFER), int(ofp.OFPP.ANY), int(ofp.OFPG.ANY)


def _field_order(item: tuple[Any, Any]) -> tuple[int, str]:
    f = FIELDS_BY_NAME.get(item[0]) if isinstance(item[0], str) else None
    return (f.code if f is not None else 1 << 16, str(item[0]))


#: field names in the order a match gives them -> True when that is already the canonical order
_IN_ORDER: dict[tuple, bool] = {}


def match_bytes(match: ofp.Match) -> bytes:
    """The match's fields in canonical order, packed (most matches are built in that order)."""
    if _in_order(match):
        return match.pack()
    return ofp.Match(sorted(match.items(), key=_field_order)).pack()


def _in_order(match: ofp.Match) -> bool:
    names = tuple(match)
    in_order = _IN_ORDER.get(names)
    if in_order is None:
        in_order = [item for item, _ in sorted(match.items(), key=_field_order)] == list(names)
        if len(_IN_ORDER) < 4096:
            _IN_ORDER[names] = in_order
    return in_order


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


#: the wire bytes of the instruction lists seen last, by identity (as _MEMO): every route
#: through one next hop shares one list, packed once for all its FLOW_MODs
_WIRE: dict[int, tuple[list, bytes]] = {}


def _wire_instructions(instructions: list[ofp.Instruction]) -> bytes:
    memo = _WIRE.get(id(instructions))
    if memo is not None and memo[0] is instructions:
        return memo[1]
    value = b"".join([i.pack() for i in instructions])
    if len(_WIRE) > 1024:
        _WIRE.clear()
    _WIRE[id(instructions)] = (instructions, value)
    return value


class Flow:
    """One flow entry as wanted or as read back. Its match and instructions
    are not changed once it is made (its key and value are computed then).

    The key holds the match packed in canonical order, which is also a valid
    wire form: the FLOW_MODs are built from it, and the `match` object itself
    is only decoded when someone looks (`Flow.packed` makes a flow from those
    bytes alone, for compilers that make a great many flows of one shape)."""

    __slots__ = ("table", "priority", "_match", "instructions", "cookie", "idle_timeout", "hard_timeout",
                 "flags", "key", "value")

    def __init__(self, table: int, priority: int, match: ofp.Match, instructions: list[ofp.Instruction],
                 cookie: int = 0, idle_timeout: int = 0, hard_timeout: int = 0, flags: int = 0) -> None:
        self.table, self.priority, self._match = table, priority, match
        self.instructions, self.cookie = instructions, cookie
        self.idle_timeout, self.hard_timeout, self.flags = idle_timeout, hard_timeout, flags
        self.key = ("flow", table, priority, match_bytes(match))
        self.value = (cookie, instructions_bytes(instructions), idle_timeout, hard_timeout, int(flags))

    @classmethod
    def packed(cls, table: int, priority: int, match: bytes, instructions: list[ofp.Instruction],
               cookie: int = 0) -> "Flow":
        """A flow from its match already packed in canonical order (fields by OXM code, as
        `match_bytes` gives them): no Match object is made unless one is asked for."""
        flow = _new_flow(cls)
        flow.table, flow.priority, flow._match, flow.instructions, flow.cookie = table, priority, None, \
            instructions, cookie
        flow.idle_timeout = flow.hard_timeout = flow.flags = 0
        flow.key = ("flow", table, priority, match)
        flow.value = (cookie, instructions_bytes(instructions), 0, 0, 0)
        return flow

    @property
    def match(self) -> ofp.Match:
        if self._match is None:
            self._match = unpack_match(self.key[3], 0, len(self.key[3]))[0]
        return self._match

    @classmethod
    def from_stats(cls, s: ofp.FlowStats) -> "Flow":
        return cls(s.table_id, s.priority, s.match, s.instructions, s.cookie, s.idle_timeout, s.hard_timeout,
                   s.flags)

    def add(self) -> ofp.FlowMod:
        return _flow_mod(self, self.cookie, _ADD, self.idle_timeout, self.hard_timeout, self.flags,
                         self.instructions, self.key[3] + _wire_instructions(self.instructions))

    def modify(self) -> ofp.FlowMod:
        """Change the instructions in place: counters and duration keep counting."""
        return _flow_mod(self, 0, _MODIFY_STRICT, 0, 0, 0, self.instructions,
                         self.key[3] + _wire_instructions(self.instructions))

    def delete(self) -> ofp.FlowMod:
        return _flow_mod(self, 0, _DELETE_STRICT, 0, 0, 0, [], self.key[3])

    def change(self, installed: "Flow") -> ofp.FlowMod:
        """What turns `installed` (same key) into this flow. A MODIFY cannot
        change the cookie, timeouts or flags (7.3.4.1), so those take an ADD."""
        if installed.value[0] != self.value[0] or installed.value[2:] != self.value[2:]:
            return self.add()
        return self.modify()

    def __repr__(self) -> str:
        return (f"Flow(table={self.table}, priority={self.priority}, {self.match!r}, {self.instructions!r}, "
                f"cookie={self.cookie:#x})")


_new_flow = object.__new__


class _FlowMod(ofp.FlowMod):
    """A flow's FLOW_MOD, its match and instructions packed already (`tail`): packing it is
    one struct call. Its `match` is the flow's, decoded only if someone looks."""
    __slots__ = ("flow", "tail")

    match = property(lambda self: self.flow.match)     # type: ignore[assignment]

    def pack(self) -> bytes:
        tail = self.tail
        return _FLOW_MOD_HEAD(_OFP_VERSION, _FLOW_MOD_TYPE, 48 + len(tail), self.xid, self.cookie, 0, self.table_id,
                              self.command, self.idle_timeout, self.hard_timeout, self.priority, _NO_BUFFER,
                              _ANY_PORT, _ANY_GROUP, self.flags) + tail

    def __str__(self) -> str:     # printed as the FLOW_MOD it is
        return str(_PLAIN(self.cookie, 0, self.table_id, self.command, self.idle_timeout, self.hard_timeout,
                          self.priority, self.buffer_id, self.out_port, self.out_group, self.flags, self.match,
                          self.instructions, self.xid))


def _flow_mod(flow: Flow, cookie: int, command: int, idle: int, hard: int, flags: int,
              instructions: list[ofp.Instruction], tail: bytes) -> ofp.FlowMod:
    # every field set by hand: FlowMod's __init__ would assign `match`, which here is the flow's
    mod = _new_flow(_FlowMod)
    mod.xid, mod.cookie, mod.cookie_mask, mod.table_id, mod.command = 0, cookie, 0, flow.table, command
    mod.idle_timeout, mod.hard_timeout, mod.priority, mod.buffer_id = idle, hard, flow.priority, _NO_BUFFER
    mod.out_port, mod.out_group, mod.flags, mod.instructions = _ANY_PORT, _ANY_GROUP, flags, instructions
    mod.flow, mod.tail = flow, tail
    return mod


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
