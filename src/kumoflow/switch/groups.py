"""The group table (section 5.6): all, select, indirect and fast-failover
groups, bucket liveness, chaining, loop checks, counters.

Validation raises SwitchError with the OFPET_GROUP_MOD_FAILED code the spec
names (GROUP_EXISTS, INVALID_GROUP, UNKNOWN_GROUP, BAD_TYPE, BAD_COMMAND,
BAD_BUCKET, BAD_WATCH, LOOP, CHAINED_GROUP, OUT_OF_GROUPS, OUT_OF_BUCKETS)
or OFPET_BAD_ACTION for a bucket's actions.

A bucket's actions are executed in action-set order (section 5.6.1: "the
actions in a bucket are always applied as an action set"), but all of them
are kept, so a bucket may output to several ports.
"""

from __future__ import annotations

from kumoflow import ofp
from kumoflow.ofp.consts import OFPG, OFPGT, OFPP
from kumoflow.ofp.errors import OFPET, OFPGMFC

from . import actions as act
from .errors import SwitchError
from .flowkey import flow_hash

MAX_GROUPS = 65536
MAX_BUCKETS = 256


class Bucket:
    __slots__ = ("desc", "actions", "weight", "watch_port", "watch_group", "packet_count", "byte_count",
                 "forwards_to")

    def __init__(self, desc: ofp.Bucket, compiled: list, forwards_to: frozenset) -> None:
        self.desc = desc
        self.actions = compiled
        self.weight = desc.weight
        self.watch_port = desc.watch_port
        self.watch_group = desc.watch_group
        self.forwards_to = forwards_to
        self.packet_count = 0
        self.byte_count = 0


class Group:
    __slots__ = ("group_id", "type", "buckets", "packet_count", "byte_count", "created")

    def __init__(self, group_id: int, gtype: int, buckets: list[Bucket], now: float) -> None:
        self.group_id = group_id
        self.type = gtype
        self.buckets = buckets
        self.packet_count = 0
        self.byte_count = 0
        self.created = now

    def references(self) -> set[int]:
        """Groups this group forwards to (group actions in its buckets)."""
        out: set[int] = set()
        for b in self.buckets:
            out |= b.forwards_to
        return out

    def watches(self) -> set[int]:
        return {b.watch_group for b in self.buckets if b.watch_group != OFPG.ANY}

    def desc(self) -> ofp.GroupDesc:
        return ofp.GroupDesc(self.type, self.group_id, [b.desc for b in self.buckets])


def _by_weight(buckets: list[tuple[Bucket, int]], point: int) -> Bucket:
    """Of (bucket, weight) pairs, the bucket whose share of the weights' sum
    holds point (0 <= point < the sum)."""
    for b, w in buckets:
        point -= w
        if point < 0:
            return b
    return buckets[-1][0]


def _bad(code: int, detail: str) -> SwitchError:
    return SwitchError(OFPET.GROUP_MOD_FAILED, code, detail)


class GroupTable:
    """Groups by id, with the liveness and selection logic."""

    def __init__(self, ports: dict, env: act.ActionEnv, clock) -> None:
        self.ports = ports           # the datapath's port_no -> PortBase
        self.env = env
        self.clock = clock
        self.groups: dict[int, Group] = {}

    def get(self, group_id: int) -> Group | None:
        return self.groups.get(group_id)

    def __contains__(self, group_id: int) -> bool:
        return group_id in self.groups

    def __len__(self) -> int:
        return len(self.groups)

    # -- group-mod ---------------------------------------------------------------
    def build(self, gm: ofp.GroupMod) -> Group:
        """Validate an ADD/MODIFY and return the new group (not installed)."""
        gid = gm.group_id
        if gid > OFPG.MAX:
            raise _bad(OFPGMFC.INVALID_GROUP, f"group id {gid:#x} is reserved")
        if gm.type not in (OFPGT.ALL, OFPGT.SELECT, OFPGT.INDIRECT, OFPGT.FF):
            raise _bad(OFPGMFC.BAD_TYPE, f"group type {gm.type}")
        if len(gm.buckets) > MAX_BUCKETS:
            raise _bad(OFPGMFC.OUT_OF_BUCKETS, f"{len(gm.buckets)} buckets, at most {MAX_BUCKETS}")
        if gm.type == OFPGT.INDIRECT and len(gm.buckets) != 1:
            raise _bad(OFPGMFC.INVALID_GROUP, f"an indirect group needs exactly one bucket, got {len(gm.buckets)}")
        buckets = []
        for b in gm.buckets:
            if b.watch_port != OFPP.ANY and not (0 < b.watch_port <= OFPP.MAX or b.watch_port == OFPP.LOCAL):
                raise _bad(OFPGMFC.BAD_WATCH, f"watch_port {b.watch_port:#x}")
            if b.watch_group != OFPG.ANY:
                if b.watch_group == gid:
                    raise _bad(OFPGMFC.LOOP, f"group {gid} watches itself")
                if b.watch_group > OFPG.MAX or b.watch_group not in self.groups:
                    raise _bad(OFPGMFC.BAD_WATCH, f"watch_group {b.watch_group} does not exist")
            if gm.type == OFPGT.FF and b.watch_port == OFPP.ANY and b.watch_group == OFPG.ANY:
                raise _bad(OFPGMFC.BAD_WATCH, "a fast-failover bucket needs a watch port or watch group")
            groups: set[int] = set()
            for a in b.actions:
                if a.TYPE == act.GROUP and a.group_id == gid:
                    raise _bad(OFPGMFC.LOOP, f"group {gid} forwards to itself")
            compiled = act.validate_actions(b.actions, self.env, None, groups=groups)
            buckets.append(Bucket(b, act.set_order(compiled), frozenset(groups)))
        group = Group(gid, gm.type, buckets, self.clock())
        # Loops through other groups: does anything this group reaches lead back to it?
        todo = list(group.references() | group.watches())
        seen = set()
        while todo:
            g = todo.pop()
            if g == gid:
                raise _bad(OFPGMFC.LOOP, f"group {gid} would loop back to itself")
            if g in seen:
                continue
            seen.add(g)
            other = self.groups.get(g)
            if other is not None:
                todo.extend(other.references() | other.watches())
        return group

    def add(self, gm: ofp.GroupMod) -> Group:
        if gm.group_id in self.groups:
            raise _bad(OFPGMFC.GROUP_EXISTS, f"group {gm.group_id} exists")
        if gm.group_id <= OFPG.MAX and len(self.groups) >= MAX_GROUPS:
            raise _bad(OFPGMFC.OUT_OF_GROUPS, f"at most {MAX_GROUPS} groups")
        group = self.build(gm)
        self.groups[group.group_id] = group
        return group

    def modify(self, gm: ofp.GroupMod) -> Group:
        if gm.group_id <= OFPG.MAX and gm.group_id not in self.groups:
            raise _bad(OFPGMFC.UNKNOWN_GROUP, f"group {gm.group_id} does not exist")
        group = self.build(gm)
        old = self.groups[group.group_id]
        group.packet_count, group.byte_count, group.created = old.packet_count, old.byte_count, old.created
        self.groups[group.group_id] = group
        return group

    def referrers(self, group_id: int) -> list[int]:
        """Groups that forward to group_id."""
        return [g.group_id for g in self.groups.values() if group_id in g.references()]

    def delete(self, group_id: int) -> list[int]:
        """Delete one group or all (OFPG_ALL); return the ids deleted."""
        if group_id == OFPG.ALL:
            ids = list(self.groups)
            self.groups.clear()
            return ids
        if group_id > OFPG.MAX:
            raise _bad(OFPGMFC.INVALID_GROUP, f"group id {group_id:#x} is reserved")
        if group_id not in self.groups:
            return []
        chained = self.referrers(group_id)
        if chained:
            raise _bad(OFPGMFC.CHAINED_GROUP, f"groups {chained} forward to group {group_id}")
        del self.groups[group_id]
        return [group_id]

    # -- forwarding --------------------------------------------------------------
    def port_live(self, port_no: int) -> bool:
        port = self.ports.get(port_no)
        return port is not None and port.live

    def bucket_live(self, b: Bucket, depth: int = 0) -> bool:
        if b.watch_port != OFPP.ANY and not self.port_live(b.watch_port):
            return False
        if b.watch_group != OFPG.ANY:
            g = self.groups.get(b.watch_group)
            if g is None or depth > 32 or not self.group_live(g, depth + 1):
                return False
        return True

    def group_live(self, g: Group, depth: int = 0) -> bool:
        return any(self.bucket_live(b, depth) for b in g.buckets)

    def choose(self, g: Group, key: list) -> list[Bucket]:
        """The buckets a packet goes through."""
        t = g.type
        if t == OFPGT.ALL:
            return g.buckets
        if t == OFPGT.INDIRECT:
            return g.buckets[:1]
        if t == OFPGT.FF:
            for b in g.buckets:
                if self.bucket_live(b):
                    return [b]
            return []
        # select: weighted by a stable hash of the flow. The flow is placed
        # among all the buckets first, live or not, so that a bucket going
        # down moves only its own flows (5.6.1: restricting the choice to the
        # remaining buckets "may reduce the disruption"); those flows are then
        # placed among the live buckets, by weight, with the hash's other bits.
        # Buckets of weight 0 are never chosen, unless all weights are 0 (a
        # controller that leaves them unset): then they share equally.
        h = flow_hash(key)
        weighted = [(b, b.weight) for b in g.buckets if b.weight] or [(b, 1) for b in g.buckets]
        total = sum(w for _, w in weighted)
        if not total:
            return []
        b = _by_weight(weighted, h % total)
        if self.bucket_live(b):
            return [b]
        live = [(b, w) for b, w in weighted if self.bucket_live(b)]
        if not live:
            # No weighted bucket is live: any live bucket of weight 0, equally.
            rest = [b for b in g.buckets if self.bucket_live(b)]
            return [rest[h % len(rest)]] if rest else []
        return [_by_weight(live, (h // total) % sum(w for _, w in live))]

    def stats(self, g: Group, ref_count: int, now: float) -> ofp.GroupStats:
        from .port import split_duration
        sec, nsec = split_duration(now - g.created)
        return ofp.GroupStats(g.group_id, ref_count, g.packet_count, g.byte_count, sec, nsec,
                              [ofp.BucketCounter(b.packet_count, b.byte_count) for b in g.buckets])
