"""The fast path: forwarding decisions cached in front of the pipeline, as
Open vSwitch caches them ("The Design and Implementation of Open vSwitch",
NSDI 2015: the exact-match cache and the megaflow cache).

    fp = FastPath(dp)                 # the datapath makes one (Datapath(fastpath=True))
    fp.receive(in_port, frame)        # from Datapath.receive, after the port's rx counters
    fp.receive_batch(in_port, frames) # from Datapath.receive_batch (a port's read batch)
    fp.stats()                        # hits, misses, flushes, revalidations

A *decision* is what the pipeline did with a packet, as a list of
operations replayed on the next packets of the flow:

    (HIT, table, entry)               a table matched: count the table, the entry
                                      (packets, bytes, last used)
    (MISS, table)                     a table missed with no table-miss entry: drop
    (METER, meter_id)                 meter the packet (token buckets run per packet)
    (SETF, field, value)              set-field
    (HDR, action, entry)              any other header action (push/pop, TTLs, queue)
    (META, value)                     write-metadata
    (OUT, port, max_len, entry, depth)   output, including to the controller
    (GROUP, group, [(bucket, ops)], clone)   group and the buckets chosen, each
                                      with its own operations

Replaying runs the same functions the pipeline runs (pipeline.output,
act.set_field, ...) on the new packet, so what depends only on that
packet's bytes comes out right by construction: checksums, a TTL that
runs out (dec_ttl is executed, not remembered, and stops the replay where
it stops the pipeline), meters (applied to each packet, a drop stops the
replay), buffers and packet-ins, flood sets, the ingress port. Counters
and idle timeouts stay exact because every entry, table, group and bucket
the pipeline touched is counted again by reference. What a decision
cannot be allowed to remember is the *path*: which entries matched, which
buckets were chosen. That depends on some bits of the flow key, and the
two caches are keyed on exactly those bits:

- the exact-match cache (EMC), per ingress port, keyed by
  flowkey.fast_key: a few fields unpacked straight from the bytes of an
  Ethernet/IPv4/TCP, UDP or ICMP frame, untagged or with one 802.1Q tag,
  which decide the whole flow key. (The TTL is not part of it: dec_ttl
  is replayed, see above.) No parsing on a hit: a decision with a
  compiled form (below) is replayed on the frame's bytes; any other gets
  a Packet built from the remembered flow key (flowkey.fast_packet).
  Other frames go straight to the megaflows. The key of a TCP frame
  holds its flags: a FIN does not take the decision cached for the data
  before it. A read batch
  (`receive_batch`) looks up untagged TCP and UDP frames of 54 bytes or
  more with no checks at all (flowkey.EMC_KEY or EMC_KEY_TCP, by the
  protocol byte) and replays the hits of
  each decision with a compiled form as a lot: the frames rewritten one
  by one if it rewrites, then counted once and handed to the output
  port together.

- the megaflow cache, keyed by the flow key under the union of the masks
  of every classifier subtable the lookups examined, in every table the
  packet went through (Classifier.lookup_wc), plus the fields a select
  group hashes on. Megaflows are grouped by mask: one dict per mask, one
  probe per mask on a lookup. A subtable of routes that missed adds only
  the address bits that rule it out (classifier.py, "Prefix tracking"),
  so the destinations of one route share its megaflow. A hit is replayed
  from the decision's compiled form when it has one, else from `ops` on
  the Packet parsed for the lookup.

A decision is recorded by running the packet through a recording
pipeline (the same pipeline with every step also written down). The
flow key changes on the way (set-field, push/pop): a field examined
after an action changed it is traced back to the original bits it came
from (set-field: whether the field is present; push VLAN: the old tag;
push MPLS: the old ethertype and label), and a field whose new value
comes from bytes the key does not hold (after pop VLAN, pop MPLS, PBB,
a set of eth_type or ip_proto, a DSCP-remarking meter) makes the
decision uncacheable if anything examines it later. Also uncacheable:
OFPP_NORMAL (it learns MACs), and a packet whose path was cut short (a
meter drop or an invalid TTL): the next packet of the flow is recorded
instead.

Compiled forms. Most decisions need no parsed packet to be replayed,
and are compiled at install for `_simple` (one frame) and
`_simple_batch` (a lot): counters, meters without DSCP remarking,
set-field tunnel_id (it changes no byte of the frame, only the id the
outputs after it send with: how every frame into a tunnel leaves) and
outputs to ports, IN_PORT, FLOOD or ALL (`Decision.fast`, for any
frame); and those of an L3 hop, whose header changes are Ethernet
addresses set and TTL / hop limit decremented, all before the first
output (`Decision.rewrite`, with the changes in `Decision.hop`). A hop
is done on a copy of the frame (`_hopped`) once per frame, whatever
tables it came from: both addresses written, the TTL lowered by the
number of decrements and the IPv4 header checksum updated as
dec_nw_ttl updates it (RFC 1624), or the IPv6 hop limit lowered. Where
the TTL is depends on the frame (the megaflow of a route holds neither
VLAN tags nor IP options nor whether IPv4 or IPv6 is well formed): an
exact-match hit reads it at the fixed offset of a fast-key frame, a
megaflow hit from the Packet it parsed for the lookup; a frame that is
neither IPv4 nor IPv6 keeps its TTL, as dec_nw_ttl leaves it. A frame
whose TTL would run out (not above the number of decrements) takes
`ops`, which stop where the pipeline stops and report it. Anything
else (set-field of other fields, groups, packet-ins, queues, header
pushes) is replayed from `ops` on a Packet.

Invalidation: `Datapath.generation` moves on every change that can alter
a decision. Group, meter, port, table and switch config changes (and
anything else) empty both caches at the next packet. Flow-table changes
(flow-mods, the direct FLOW_MOD path, timeouts) also tell the fast path
which entries changed (`flow_added`, `flows_changed`); it writes them
down, and the next packet (`receive` or `receive_batch`, before any
replay) removes only the decisions they can affect:

- an entry modified or removed (MODIFY, DELETE, strict or not, a
  timeout, an ADD replacing an entry of identical match and priority):
  the decisions that hit it. A decision is valid for every packet of
  its megaflow: each table it looked up gave the entry it hit (or a
  miss) for all of them. Taking away or changing an entry none of them
  got leaves that entry, the best match among fewer, the answer; and a
  replacement has the same match and priority as the entry it replaces
  and is younger, so where the old one lost (to a higher priority or an
  older entry of equal priority) the new one loses too. No decision
  that is kept references the entry, so its counters stop exactly there.
- an entry E added to table T at priority p: the decisions that looked
  T up and missed there or hit priority <= p (equal: E would lose the
  tie, but the check stays on the safe side), and either (a) reached T
  with the key unchanged and have a megaflow E's match overlaps (some
  packet agrees with both: on every field both constrain, the values
  agree on the bits both masks have), or (b) reached T after anything
  that may have changed the key (set-field, any header action,
  write-metadata, a group, a DSCP-remarking meter), whose megaflow,
  keyed on the original bits, says nothing about E. A decision outside
  these keeps its path: E matches none of its packets at T, or they
  found better there; tables it never reached do not matter.

Removed decisions leave the megaflows and are marked `dead` for the
exact-match cache, which costs nothing on its hit path: a dead
decision has no `fast`, `rewrite` or `batchable`, and the only other
path checks `dead` and drops the entry. Removed and modified entries
cost a dict probe each (decisions are indexed by the entries they hit).
An ADD costs one probe per mask group when its match constrains every
bit of the group's mask (then only the megaflow of its own values can
overlap), else a look at each megaflow of the group, plus a look at each
decision that reached its table with a changed key. Changes are collected
between packets, so a burst of flow-mods costs one pass; when that work
would pass `_budget()` (about what re-recording the cached flows costs),
the next packet flushes instead. `selective = False` brings back the
flush on every flow change (for comparisons). A cached decision
therefore never outlives an entry, group, meter or port it references.
Packet-outs and flow-mods with a buffer id run the pipeline directly and
never touch the cache.

Tunnel ids: a frame from a tunnel port carries its tunnel id (VNI,
VSID) into the pipeline and out to tunnel ports (:mod:`.egress`). The
exact-match cache is kept per (in port, tunnel id), and on a datapath
with tunnel ports every megaflow is keyed on the whole tunnel id: frames
of different VNIs never share a cached decision, even one no table
looked at the tunnel id for. The compiled operations (`_simple`) are
given the frame's tunnel id for what they send.

Re-entrancy: `on_async` must not change the datapath synchronously (the
runtime queues messages); a decision recorded while the generation moved
is not installed. A frame that comes back into the datapath while one is
being recorded (in-memory ports wired in a loop) goes through the
pipeline uncached.

Sizes: at most `emc_size` EMC entries and `max_megaflows` megaflows, 65,536
each (an EMC entry costs about 240 bytes, 16 MB when full; a router's traffic to 10,000
destinations must fit, or every frame takes the slower megaflow replay); a
full cache is emptied and refilled (misses cost a pipeline run plus the
recording, a few times the pipeline alone).
"""

from __future__ import annotations

from operator import itemgetter

from kumoflow.ofp.consts import OFPGT

from . import actions as act
from . import flowkey as fk
from .classifier import FULL_P, key_function
from .pipeline import (MAX_DEPTH, MBT_DROP, MBT_DSCP_REMARK, P_ALL, P_CONTROLLER, P_FLOOD, P_IN_PORT, P_LOCAL, P_MAX,
                       P_NORMAL, P_TABLE, Pipeline)
from .egress import transmit, transmit_many
from .port import OFPPC_NO_FLOOD, PC_PORT_DOWN, PS_BLOCKED, PS_LINK_DOWN

__all__ = ["FastPath", "Decision"]

P = fk.PRESENT
HIT, MISS, METER, OUT, SETF, HDR, META, GROUP = range(8)
OP_NAMES = ("HIT", "MISS", "METER", "OUT", "SETF", "HDR", "META", "GROUP")
# Operations as `_simple` runs them (compiled at install: module docstring, "Compiled forms").
SEND, SEND_IN_PORT, FLOOD, HITS = 8, 9, 10, 11       # HITS: ((table, entry), ...) of consecutive HITs
TUN = 12                       # (TUN, tunnel id): set-field tunnel_id, the id the next outputs send with
TUNNEL_ID = fk.TUNNEL_ID
IPV4_SRC, IPV6_SRC, ETH_DST, ETH_SRC = fk.IPV4_SRC, fk.IPV6_SRC, fk.ETH_DST, fk.ETH_SRC
ttl_down_checksum = act.ttl_down_checksum
OUTPUT, SET_FIELD, GROUP_ACT = act.OUTPUT, act.SET_FIELD, act.GROUP
GT_SELECT = int(OFPGT.SELECT)
METADATA, IP_DSCP, VLAN_VID, VLAN_PCP, ETH_TYPE = fk.METADATA, fk.IP_DSCP, fk.VLAN_VID, fk.VLAN_PCP, fk.ETH_TYPE
FRAG_DROP = 1                  # OFPC_FRAG_DROP in the switch config flags (& 3)
EMC_MIN_LEN = fk.EMC_MIN_LEN
PROTO_TCP, PROTO_UDP = fk.PROTO_TCP, fk.PROTO_UDP

# Groups of header fields for the effect of actions that re-parse the frame.
_PIPELINE = frozenset((fk.IN_PORT, fk.IN_PHY_PORT, fk.METADATA, fk.TUNNEL_ID))
_L2 = frozenset((fk.ETH_DST, fk.ETH_SRC, fk.VLAN_VID, fk.VLAN_PCP))
_MPLS = (fk.MPLS_LABEL, fk.MPLS_TC, fk.MPLS_BOS)
_HEADERS = tuple(sorted(frozenset(range(fk.N_FIELDS)) - _PIPELINE))
_ABOVE_L2 = tuple(sorted(frozenset(_HEADERS) - _L2))
_ABOVE_MPLS = tuple(sorted(frozenset(_ABOVE_L2) - {fk.ETH_TYPE} - frozenset(_MPLS)))

#: In `_Recorder.mod`: the field's value now depends on bytes the flow key does not hold.
TAINT = None
_SAME = object()
_NOTHING: tuple = ()
_NO_EMC: dict = {}

#: FastPath._budget: revalidation work allowed per megaflow cached, and in any case.
#: A unit is about a megaflow scanned (0.2-1 µs); a mask group probed for an ADD
#: counts PROBE_WORK. A miss (pipeline and recording) costs some 40 µs.
REVALIDATE_WORK_PER_MEGAFLOW = 32
REVALIDATE_WORK_MIN = 1024
PROBE_WORK = 4


class Decision:
    """A cached decision: `ops`, the operations to replay.

    `simple` when they need no parsed packet (table and entry counters,
    meters without DSCP remarking, write-metadata, output to ports,
    IN_PORT, FLOOD or ALL); then `fast` holds them compiled for
    `FastPath._simple`, for any frame. An L3 hop (module docstring,
    "Compiled forms") has them in `rewrite` and its header changes in
    `hop`: (start, the new MAC bytes, end: where they go in the frame;
    the number of TTL decrements). `ttls`: what a frame's TTL must be above for a compiled
    form (the decrements, or -1: any); a frame whose TTL is not takes `ops`.

    `visits`: (table id, priority of the entry hit or -1 for a miss, whether
    the key had been changed on the way there) for each table the packet
    went through; `where`: (mask, masked key) of its megaflow. Both
    serve selective invalidation (`FastPath._revalidate`). A decision it
    removes is `dead`: its `fast`, `rewrite` and `batchable` are cleared, so
    an exact-match entry still pointing to it falls through to the check
    of `dead` on the one path that replays `ops`.
    """

    __slots__ = ("ops", "simple", "fast", "rewrite", "hop", "ttls", "batchable", "visits", "where", "dead")

    def __init__(self, ops: tuple, simple: bool, visits: tuple = ()) -> None:
        self.ops = ops
        self.simple = simple
        self.visits = visits
        self.where: tuple | None = None
        self.dead = False
        self.fast: tuple | None = None
        self.rewrite: tuple | None = None
        self.hop: tuple | None = None
        self.ttls = -1
        #: `fast` or `rewrite`, and no port gets a frame twice: frames can be replayed
        #: as a lot (`_simple_batch`) and still leave each port in the order they came
        self.batchable = False

    def __repr__(self) -> str:
        return f"<Decision {'simple ' if self.simple else ''}{describe(self.ops)}>"


def describe(ops) -> str:
    parts = []
    for op in ops:
        code = op[0]
        if code == GROUP:
            inner = "; ".join(f"bucket: {describe(sub)}" for _, sub in op[2])
            parts.append(f"GROUP {op[1].group_id} [{inner}]")
        elif code == HIT:
            parts.append(f"HIT t{op[1].table_id} p{op[2].priority}")
        elif code == MISS:
            parts.append(f"MISS t{op[1].table_id}")
        else:
            parts.append(OP_NAMES[code] + " " + " ".join(str(x) for x in op[1:3]))
    return ", ".join(parts)


PINNED, ALL, SCAN = range(3)


def _overlap_plan(mask: tuple, shape: tuple) -> tuple:
    """How to find the megaflows of `mask` that a match of `shape` ((field,
    mask), ...) can overlap, whatever its values: (PINNED,) when it
    constrains every bit of the mask (one probe finds the only one); (ALL,)
    when the two constrain no field in common (all of them); else (SCAN,
    covered, [(position in the megaflow key, field, bits both look at)]),
    `covered` when the match's masks hold all of the megaflows' on those
    fields (the megaflows' keys then need no masking; the match's values,
    under a wider mask, still do)."""
    smap = dict(shape)
    common = []
    pinned = covered = True
    for i, (c, gm) in enumerate(mask):
        m = smap.get(c)
        if m is None:
            pinned = False
            continue
        both = m & gm
        if both != gm:
            pinned = covered = False
        if both:
            common.append((i, c, both))
    if pinned:
        return (PINNED,)
    if not common:
        return (ALL,)
    return (SCAN, covered, common)


def _overlapping(g: "_MaskGroup", shape: tuple, key: list):
    """The decisions of the megaflows of g that a match overlaps (some packet
    agrees with both: on every field both constrain, the bits both masks
    have agree; a field only one side constrains rules nothing out). The
    match is given by its shape and by `key`, a flow key holding its values.
    A tuple when one probe answered, else a list or a view (a scan)."""
    plan = g.plans.get(shape)
    if plan is None:
        if len(g.plans) >= 256:
            g.plans.clear()
        plan = g.plans[shape] = _overlap_plan(g.mask, shape)
    kind = plan[0]
    flows = g.flows
    if kind == PINNED:              # the match's own values under the mask
        d = flows.get(g.keyfn(key))
        return () if d is None else (d,)
    if kind == ALL:
        return flows.values()
    _, covered, common = plan
    if g.scalar:                    # (one exact field, which the match masks)
        _, c, both = common[0]
        want = key[c] & both
        return [d for k, d in flows.items() if k & both == want]
    if covered:
        # The megaflow keys hold exactly the bits to compare (both == the group's
        # mask); the match's values may hold more (a wider mask): mask those.
        get = itemgetter(*[i for i, _, _ in common])
        want = tuple(key[c] & both for _, c, both in common)
        if len(common) == 1:        # (itemgetter of one position gives the value itself)
            want = want[0]
        return [d for k, d in flows.items() if get(k) == want]
    want = [(i, both, key[c] & both) for i, c, both in common]
    return [d for k, d in flows.items() if all(k[i] & both == w for i, both, w in want)]


def _hopped(frames: list, hop: tuple, ttl_at: int, csum_at: int) -> list:
    """Copies of frames after an L3 hop (Decision.hop: the new MAC bytes
    and where they go, the TTL decrements), the TTL at ttl_at (-1: none)
    and the IPv4 header checksum at csum_at (-1: none), as set_field and
    dec_nw_ttl leave them (module docstring, "Compiled forms"). Every TTL
    is above the decrements. (Per frame as few steps as can be: a lot of
    1,500-byte TCP segments spends a third of the switch's time here.)"""
    at, macs, end, ttls = hop
    dec = ttls if ttl_at >= 0 else 0
    out = []
    append = out.append
    for frame in frames:
        b = bytearray(frame)
        b[at:end] = macs
        if dec:
            b[ttl_at] -= dec
            if csum_at >= 0:
                hc = ttl_down_checksum(b[csum_at] << 8 | b[csum_at + 1])
                for _ in range(dec - 1):
                    hc = ttl_down_checksum(hc)
                b[csum_at] = hc >> 8
                b[csum_at + 1] = hc & 0xFF
        append(bytes(b))
    return out


class _MaskGroup:
    """The megaflows of one mask: masked key -> Decision."""

    __slots__ = ("mask", "keyfn", "flows", "scalar", "plans")

    def __init__(self, mask: tuple) -> None:
        self.mask = mask
        self.keyfn = key_function(mask)
        self.flows: dict = {}
        #: keys are the field's value, not a tuple (key_function: one exact field)
        self.scalar = len(mask) == 1 and mask[0][1] == FULL_P[mask[0][0]]
        #: the shape of an added match -> _overlap_plan (FastPath._affected_by_add)
        self.plans: dict = {}


class FastPath:
    """The exact-match and megaflow caches of one datapath."""

    def __init__(self, dp, emc_size: int = 65536, max_megaflows: int = 65536) -> None:
        self.dp = dp
        self.pipeline: Pipeline = dp.pipeline
        self.recorder = _Recorder(dp)
        self.emc_size = emc_size
        self.max_megaflows = max_megaflows
        self.generation = dp.generation
        # in_port -> {fast key: (Decision, the flow key of such a frame, or None for a simple one)}
        self.emc: dict[int, dict] = {}
        self.emc_count = 0
        self.masks: list[_MaskGroup] = []
        self._by_mask: dict[tuple, _MaskGroup] = {}
        self.megaflow_count = 0
        self.emc_hits = self.megaflow_hits = self.misses = self.uncacheable = self.flushes = 0
        # Selective invalidation (see "Invalidation" in the module docstring).
        #: False: every flow change empties both caches, as any other change does
        self.selective = True
        #: the datapath generation up to which every move was a flow change noted
        #: below (None: something else changed too; the next packet flushes)
        self._noted = dp.generation
        self._added: list = []             # flow entries added since the last packet
        self._dead: set = set()            # entries modified or removed since, that some decision hit
        self._by_entry: dict = {}          # flow entry -> the decisions that hit it
        self._rewritten: dict = {}         # table id -> the decisions that reach it with a changed key
        self.revalidations = self.invalidated = 0

    # -- the contract ------------------------------------------------------------------------
    def receive(self, in_port: int, frame, tunnel_id: int = 0, in_phy_port: int | None = None) -> None:
        """Process one received frame (Datapath.receive did the port checks and rx counters)."""
        dp = self.dp
        if dp.generation != self.generation:
            self._catch_up()
        if type(frame) is not bytes:
            frame = bytes(frame)
        fkey = None
        # the exact-match cache of the frames from this port with this tunnel id
        source = (in_port, tunnel_id) if tunnel_id else in_port
        if in_phy_port is None or in_phy_port == in_port:
            fkey = fk.fast_key(frame)
            if fkey is not None:
                if dp.flags & 3 == FRAG_DROP and fk.more_fragments(frame):
                    return
                emc = self.emc.get(source)
                if emc is not None:
                    hit = emc.get(fkey)
                    if hit is not None:
                        d = hit[0]
                        if d.fast is not None:
                            self.emc_hits += 1
                            self._simple(d.fast, frame, in_port, dp.clock(), tunnel_id)
                            return
                        if d.rewrite is not None:
                            ttl_at = 22 if frame[12] == 8 else 26       # IPv4 without options, one tag or none
                            if frame[ttl_at] > d.ttls:
                                self.emc_hits += 1
                                self._simple(d.rewrite, _hopped([frame], d.hop, ttl_at, ttl_at + 2)[0], in_port,
                                             dp.clock(), tunnel_id)
                                return
                        if not d.dead:
                            self.emc_hits += 1
                            self._replay(d.ops, fk.fast_packet(frame, in_port, hit[1]), dp.clock())
                            return
                        del emc[fkey]                   # a flow change invalidated it (_forget)
                        self.emc_count -= 1
        pkt = fk.Packet(frame, in_port, in_phy_port, tunnel_id)
        if pkt.frag and dp.flags & 3 == FRAG_DROP:
            return
        key = pkt.key
        for g in self.masks:
            d = g.flows.get(g.keyfn(key))
            if d is not None:
                self.megaflow_hits += 1
                if fkey is not None:
                    self._emc_put(source, fkey, d, key)
                if d.fast is not None:
                    self._simple(d.fast, frame, in_port, dp.clock(), tunnel_id)
                elif d.rewrite is not None and pkt.l3 >= 0:
                    if key[IPV4_SRC]:
                        ttl_at, csum_at = pkt.l3 + 8, pkt.l3 + 10
                    elif key[IPV6_SRC]:
                        ttl_at, csum_at = pkt.l3 + 7, -1
                    else:
                        ttl_at = csum_at = -1                    # no TTL: dec_nw_ttl leaves the frame alone
                    if ttl_at < 0 or frame[ttl_at] > d.ttls:
                        self._simple(d.rewrite, _hopped([frame], d.hop, ttl_at, csum_at)[0], in_port, dp.clock(),
                                     tunnel_id)
                    else:
                        self._replay(d.ops, pkt, dp.clock())
                else:
                    self._replay(d.ops, pkt, dp.clock())
                return
        self.misses += 1
        if self.recorder.busy:
            # A frame sent while another is being recorded came back to this
            # datapath (in-memory ports wired in a loop): the reference pipeline.
            self.uncacheable += 1
            self.pipeline.run(pkt)
            return
        orig = list(key)
        gen = dp.generation
        d, wc = self.recorder.record(pkt)
        if d is None or dp.generation != gen:
            self.uncacheable += 1
            return
        if dp.tunnel_ports:
            wc[fk.TUNNEL_ID] = FULL_P[fk.TUNNEL_ID]    # one VNI's frames never take another's decision
        self._install(orig, wc, d)
        if fkey is not None:
            self._emc_put(source, fkey, d, orig)

    def receive_batch(self, in_port: int, frames: list, tunnel_id: int = 0) -> None:
        """Process frames received together on in_port, all with tunnel id
        `tunnel_id` (Datapath.receive_batch did the port checks and rx counters).

        Exact-match hits on decisions with a compiled form (a frame of an L3
        hop only when its TTL allows) are collected per decision and
        replayed once for the lot (a hop's frames rewritten one by one
        first; `_simple_batch`: counters added once, the frames handed to
        the output port together); anything else goes through `receive`,
        after the frames collected so far, so each flow's frames keep their
        order."""
        dp = self.dp
        if dp.generation != self.generation:
            self._catch_up()
        if dp.flags & 3 == FRAG_DROP:                 # fragments need a look at each frame
            for frame in frames:
                self.receive(in_port, frame, tunnel_id)
            return
        source = (in_port, tunnel_id) if tunnel_id else in_port
        emc_key, emc_key_tcp = fk.EMC_KEY, fk.EMC_KEY_TCP
        emc_get = self.emc.get(source, _NO_EMC).get
        waiting: dict = {}             # decision -> its frames of this batch, in order
        for frame in frames:
            # a hit needs no checks of the frame: see flowkey.EMC_KEY (untagged IPv4: the TTL at 22)
            proto = frame[23] if len(frame) >= EMC_MIN_LEN else 0
            hit = (emc_get(emc_key(frame)) if proto == PROTO_UDP else
                   emc_get(emc_key_tcp(frame)) if proto == PROTO_TCP else None)
            if hit is not None and hit[0].batchable and frame[22] > hit[0].ttls:
                lot = waiting.get(hit[0])
                if lot is None:
                    waiting[hit[0]] = [frame]
                else:
                    lot.append(frame)
                continue
            if waiting:
                self._replay_waiting(waiting, in_port, tunnel_id)
                waiting = {}
            self.receive(in_port, frame, tunnel_id)
            emc_get = self.emc.get(source, _NO_EMC).get      # made, or emptied, by that frame
        if waiting:
            self._replay_waiting(waiting, in_port, tunnel_id)

    def _replay_waiting(self, waiting: dict, in_port: int, tunnel_id: int) -> None:
        """Replay each decision's lot (waiting: decision -> frames); what they
        send to a port goes in one hand-over (each flow's frames in order,
        flows one after another). (The compiled forms are taken first: a
        frame looping back into the datapath may revalidate meanwhile.)"""
        now = self.dp.clock()
        lots = [(d.fast, d.rewrite, d.hop, frames) for d, frames in waiting.items()]
        out: dict = {}
        for fast, rewrite, hop, frames in lots:
            self.emc_hits += len(frames)
            if fast is not None:
                self._simple_batch(fast, frames, in_port, now, tunnel_id, out)
            else:
                self._simple_batch(rewrite, _hopped(frames, hop, 22, 24), in_port, now, tunnel_id, out)
        for port, frames, tid in out.values():
            self._send_many(port, frames, sum(map(len, frames)), tid)

    def flush(self) -> None:
        """Forget every cached decision."""
        self.emc.clear()
        self.emc_count = 0
        self.masks = []
        self._by_mask.clear()
        self.megaflow_count = 0
        self._by_entry.clear()
        self._rewritten.clear()
        self._added = []
        self._dead = set()
        self.generation = self._noted = self.dp.generation
        self.flushes += 1

    def stats(self) -> dict:
        """Counters: cache hits and misses; `flushes` (both caches emptied),
        `revalidations` (flow changes applied selectively) and `invalidated`
        (decisions those removed); the caches' sizes."""
        return {"emc_hits": self.emc_hits, "megaflow_hits": self.megaflow_hits, "misses": self.misses,
                "uncacheable": self.uncacheable, "flushes": self.flushes, "revalidations": self.revalidations,
                "invalidated": self.invalidated, "emc_entries": self.emc_count,
                "megaflows": self.megaflow_count, "masks": len(self.masks)}

    def megaflows(self) -> list[tuple[tuple, object, Decision]]:
        """(mask, masked key, decision) of every megaflow (for tests and tools)."""
        return [(g.mask, k, d) for g in self.masks for k, d in g.flows.items()]

    # -- flow changes: selective invalidation ----------------------------------------------------
    def flow_added(self, entry, old, generation: int) -> None:
        """Datapath: `entry` was added (replacing `old`, of identical match and
        priority, or None), which moved the datapath to `generation`."""
        if not self._note(generation):
            return
        if old is not None:
            # A replacement: only decisions that hit `old` can change (module docstring).
            if old in self._by_entry:
                self._dead.add(old)
            return
        added = self._added
        added.append(entry)
        if len(added) * len(self.masks) * PROBE_WORK > self._budget():
            self._give_up()                 # a burst: flushing costs less than checking it all

    def flows_changed(self, entries, generation: int) -> None:
        """Datapath: `entries` were modified in place or removed (flow-mod,
        timeout), which moved the datapath to `generation`."""
        if not self._note(generation):
            return
        by_entry = self._by_entry
        dead = self._dead
        for e in entries:
            if e in by_entry:               # no cached decision hit it: none can change
                dead.add(e)

    def _note(self, generation: int) -> bool:
        """Is the flow change that moved the datapath to `generation` to be
        written down? Not when the next packet flushes anyway, nor when
        nothing is cached."""
        if self._noted != generation - 1 or not self.selective:
            self._give_up()                 # another change came first (or in between)
            return False
        self._noted = generation
        if not self.megaflow_count and self.generation == generation - 1:
            self.generation = generation    # nothing cached, nothing pending: still exact
            return False
        return True

    def _give_up(self) -> None:
        """Let the next packet flush instead of revalidating."""
        self._noted = None
        self._added = []
        self._dead = set()

    def _budget(self) -> int:
        """Work worth spending on flow changes before a flush is cheaper (a
        megaflow looked at is one unit, well under a µs; a mask group probed
        PROBE_WORK): a flush costs a recording (tens of µs) per megaflow
        still in use."""
        return REVALIDATE_WORK_PER_MEGAFLOW * self.megaflow_count + REVALIDATE_WORK_MIN

    def _catch_up(self) -> None:
        """The datapath changed since the caches were exact: revalidate when
        only noted flow changes happened, else flush."""
        if self._noted == self.dp.generation:
            self._revalidate()
        else:
            self.flush()

    def _revalidate(self) -> None:
        """Remove the decisions the noted flow changes can affect (every one
        of them, and a few more: see "Invalidation" in the module docstring)."""
        added, dead = self._added, self._dead
        self._added, self._dead = [], set()
        doomed: set = set()
        by_entry = self._by_entry
        for e in dead:
            doomed.update(by_entry.get(e, ()))
        budget = self._budget()
        for e in added:
            budget -= self._affected_by_add(e, doomed)
            if budget < 0:
                self.flush()
                return
        for d in doomed:
            self._forget(d)
        if doomed and any(not g.flows for g in self.masks):
            self.masks = [g for g in self.masks if g.flows]
            self._by_mask = {g.mask: g for g in self.masks}
        self.generation = self._noted
        self.revalidations += 1
        self.invalidated += len(doomed)

    def _affected_by_add(self, e, out: set) -> int:
        """Add to `out` the cached decisions a new entry e can change: those
        that looked table e.table_id up and missed or hit priority <=
        e.priority, and either reached it with the original key and have a
        megaflow e's match overlaps, or reached it with a changed key.
        Returns the work done (for the budget)."""
        table_id, priority, shape = e.table_id, e.priority, e.shape
        key = [0] * fk.N_FIELDS             # e's values, where a flow key has them
        for (c, _), v in zip(shape, e.key if type(e.key) is tuple else (e.key,)):
            key[c] = v
        work = 0
        for g in self.masks:
            candidates = _overlapping(g, shape, key)
            work += PROBE_WORK if type(candidates) is tuple else PROBE_WORK + len(g.flows)
            for d in candidates:
                for t, q, _ in d.visits:
                    if t == table_id:
                        if q <= priority:   # equal priority: e would lose the tie, but be safe
                            out.add(d)
                        break
        # The key those reached the table with is not the original one: the megaflow says nothing.
        rewritten = self._rewritten.get(table_id, ())
        work += len(rewritten)
        for d in rewritten:
            for t, q, changed in d.visits:
                if t == table_id:
                    if changed and q <= priority:
                        out.add(d)
                    break
        return work

    def _index(self, d: Decision) -> None:
        """File an installed decision under the entries it hit and the tables it reached with a changed key."""
        by_entry = self._by_entry
        for op in d.ops:
            if op[0] == HIT:
                s = by_entry.get(op[2])
                if s is None:
                    s = by_entry[op[2]] = set()
                s.add(d)
        for t, _, changed in d.visits:
            if changed:
                s = self._rewritten.get(t)
                if s is None:
                    s = self._rewritten[t] = set()
                s.add(d)

    def _forget(self, d: Decision) -> None:
        """Remove a decision from the megaflows and the indexes, and mark it
        dead for the exact-match entries that may still point to it."""
        mask, k = d.where
        flows = self._by_mask[mask].flows
        if flows.get(k) is d:
            del flows[k]
            self.megaflow_count -= 1
        by_entry = self._by_entry
        for op in d.ops:
            if op[0] == HIT:
                s = by_entry.get(op[2])
                if s is not None:
                    s.discard(d)
                    if not s:
                        del by_entry[op[2]]
        for t, _, changed in d.visits:
            if changed:
                s = self._rewritten.get(t)
                if s is not None:
                    s.discard(d)
                    if not s:
                        del self._rewritten[t]
        d.dead = True
        d.fast = d.rewrite = None
        d.batchable = False

    # -- installing ------------------------------------------------------------------------------
    def _install(self, orig_key: list, wc: dict, d: Decision) -> None:
        if self.megaflow_count >= self.max_megaflows:
            self.flush()
        if d.simple or not any(op[0] == HDR or op[0] == SETF and op[1] != TUNNEL_ID for op in d.ops):
            # (set-field tunnel_id, how every frame into a tunnel leaves, changes no byte of the frame)
            compiled = d.fast = self._compile(d.ops)
        else:
            compiled = d.rewrite = self._compile_hop(d)
        if compiled is not None:
            outs = [op for op in compiled if op[0] in (SEND, SEND_IN_PORT, FLOOD)]
            d.batchable = len(outs) <= 1 or (all(op[0] == SEND for op in outs)
                                             and len({op[1] for op in outs}) == len(outs))
        mask = tuple(sorted((c, m) for c, m in wc.items() if m))
        g = self._by_mask.get(mask)
        if g is None:
            g = self._by_mask[mask] = _MaskGroup(mask)
            self.masks.append(g)
        k = g.keyfn(orig_key)
        old = g.flows.get(k)
        if old is not None:
            self._forget(old)               # (not expected: the lookup would have found it)
        g.flows[k] = d
        self.megaflow_count += 1
        d.where = (mask, k)                 # (not the group itself: no reference cycle to collect)
        self._index(d)

    def _emc_put(self, source, fkey: tuple, d: Decision, key: list) -> None:
        """Remember d for fkey among the frames of `source` (the in port, or
        (in port, tunnel id) for a non-zero tunnel id); `key` (the frame's flow
        key as parsed, before the pipeline changed it) serves to build the
        packets of later hits."""
        if self.emc_count >= self.emc_size:
            self.emc.clear()
            self.emc_count = 0
        emc = self.emc.get(source)
        if emc is None:
            emc = self.emc[source] = {}
        if fkey not in emc:
            self.emc_count += 1
        emc[fkey] = (d, None if d.fast is not None else list(key))     # a copy: replays change pkt.key

    def _compile_hop(self, d: Decision) -> tuple | None:
        """An L3 hop's operations for `_simple` with its header changes taken
        out into d.hop and d.ttls (module docstring, "Compiled forms"); None
        when the decision is something else, or changes a header after
        an output."""
        ops = []
        macs = {ETH_DST: None, ETH_SRC: None}
        ttls = 0
        sent = False
        for op in d.ops:
            code = op[0]
            if code == SETF and op[1] in macs:
                macs[op[1]] = op[2].to_bytes(6, "big")
            elif code == HDR and op[1][0] == act.DEC_NW_TTL:
                ttls += 1
            else:
                sent = sent or code == OUT
                ops.append(op)
                continue
            if sent:
                return None
        compiled = self._compile(tuple(ops))
        if compiled is not None:
            dst, src = macs[ETH_DST], macs[ETH_SRC]
            if dst is None:
                d.hop = (6, src, 12, ttls) if src is not None else (0, b"", 0, ttls)
            else:
                d.hop = (0, dst + src, 12, ttls) if src is not None else (0, dst, 6, ttls)
            d.ttls = ttls if ttls else -1
        return compiled

    def _compile(self, ops: tuple) -> tuple | None:
        """A decision's operations for `_simple`, outputs resolved to the port
        objects (which a port change would flush). None when something else
        is in the way."""
        out = []
        ports = self.dp.ports
        for op in ops:
            code = op[0]
            if code == OUT:
                port_no = op[1]
                if port_no <= P_MAX or port_no == P_LOCAL:
                    out.append((SEND, port_no, ports.get(port_no)))
                elif port_no == P_IN_PORT:
                    out.append((SEND_IN_PORT,))
                elif port_no == P_FLOOD or port_no == P_ALL:
                    out.append((FLOOD, port_no == P_FLOOD))
                else:
                    return None
            elif code == HIT:
                if out and out[-1][0] == HITS:
                    out[-1] = (HITS, out[-1][1] + ((op[1], op[2]),))
                else:
                    out.append((HITS, ((op[1], op[2]),)))
            elif code == MISS:
                out.append(op)
            elif code == METER:
                m = self.dp.meters.get(op[1])
                if m is not None and any(b.type == MBT_DSCP_REMARK for b in m.bands):
                    return None
                out.append(op)
            elif code == META:
                pass                            # nothing here reads the metadata
            elif code == SETF and op[1] == TUNNEL_ID:
                out.append((TUN, op[2]))
            else:
                return None
        return tuple(out)

    # -- replaying -------------------------------------------------------------------------------
    def _replay(self, ops: tuple, pkt: fk.Packet, now: float) -> bool:
        """Run a decision's operations on a packet; False where the pipeline would have stopped."""
        pl = self.pipeline
        for op in ops:
            code = op[0]
            if code == HIT:
                t = op[1]
                e = op[2]
                t.lookup_count += 1
                t.matched_count += 1
                if e.count_packets:
                    e.packet_count += 1
                if e.count_bytes:
                    e.byte_count += len(pkt.data)
                e.last_used = now
            elif code == OUT:
                pl.output(pkt, op[1], op[2], op[3], op[4])
            elif code == SETF:
                act.set_field(pkt, op[1], op[2])
            elif code == HDR:
                if not pl.header_action(pkt, op[1], op[2]):
                    return False
            elif code == METER:
                if not pl.meter(pkt, op[1], now):
                    return False
            elif code == META:
                pkt.key[METADATA] = op[1]
            elif code == GROUP:
                g = op[1]
                branches = op[2]
                n = len(pkt.data)
                g.packet_count += 1
                g.byte_count += n
                last = len(branches) - 1
                clone = op[3]
                for i, (b, sub) in enumerate(branches):
                    b.packet_count += 1
                    b.byte_count += n
                    self._replay(sub, pkt.copy() if clone or i < last else pkt, now)
            else:                                        # MISS
                op[1].lookup_count += 1
        return True

    def _simple(self, ops: tuple, frame: bytes, in_port: int, now: float, tunnel_id: int = 0) -> None:
        """Replay compiled operations on the frame's bytes, no packet parsed:
        the steps Pipeline.run / output / send take for these. `frame` is
        the frame as it leaves (an L3 hop's already `_hopped`); `tunnel_id`
        the one it arrived with, until a TUN operation (set-field tunnel_id)
        changes it for the outputs after it."""
        n = len(frame)
        for op in ops:
            code = op[0]
            if code == HITS:
                for t, e in op[1]:
                    t.lookup_count += 1
                    t.matched_count += 1
                    if e.count_packets:
                        e.packet_count += 1
                    if e.count_bytes:
                        e.byte_count += n
                    e.last_used = now
            elif code == SEND:
                port = op[2]
                if op[1] != in_port and port is not None:
                    self._send(port, frame, tunnel_id)
            elif code == SEND_IN_PORT:
                port = self.dp.ports.get(in_port)
                if port is not None:
                    self._send(port, frame, tunnel_id)
            elif code == FLOOD:
                for port in self._flood_ports(in_port, op[1]):
                    self._send(port, frame, tunnel_id)
            elif code == METER:
                m = self.dp.meters.get(op[1])
                if m is not None:
                    band = m.apply(n, now)
                    if band is not None and band.type == MBT_DROP:
                        return
            elif code == TUN:
                tunnel_id = op[1]
            else:                                        # MISS
                op[1].lookup_count += 1

    def _simple_batch(self, ops: tuple, frames: list, in_port: int, now: float, tunnel_id: int = 0,
                      out: dict | None = None) -> None:
        """`_simple` for frames that share a decision, each step taken once
        for all of them (counters added up, outputs handed over together).
        With `out`, frames for a port (SEND) are added to out[port number]
        = (port, frames, tunnel id) (keyed (port number, tunnel id) when a
        TUN operation changed the tunnel id), for the caller to send with
        those of other decisions."""
        arrived = tunnel_id
        count = len(frames)
        nbytes = sum(map(len, frames))
        for op in ops:
            code = op[0]
            if code == HITS:
                for t, e in op[1]:
                    t.lookup_count += count
                    t.matched_count += count
                    if e.count_packets:
                        e.packet_count += count
                    if e.count_bytes:
                        e.byte_count += nbytes
                    e.last_used = now
            elif code == SEND:
                port = op[2]
                if op[1] != in_port and port is not None:
                    if out is None:
                        self._send_many(port, frames, nbytes, tunnel_id)
                    else:
                        where = op[1] if tunnel_id == arrived else (op[1], tunnel_id)
                        sending = out.get(where)
                        if sending is None:
                            out[where] = (port, list(frames), tunnel_id)
                        else:
                            sending[1].extend(frames)
            elif code == SEND_IN_PORT:
                port = self.dp.ports.get(in_port)
                if port is not None:
                    self._send_many(port, frames, nbytes, tunnel_id)
            elif code == FLOOD:
                for port in self._flood_ports(in_port, op[1]):
                    self._send_many(port, frames, nbytes, tunnel_id)
            elif code == METER:
                m = self.dp.meters.get(op[1])
                if m is not None:
                    passed = []
                    for f in frames:
                        band = m.apply(len(f), now)
                        if band is None or band.type != MBT_DROP:
                            passed.append(f)
                    if not passed:
                        return
                    if len(passed) < count:
                        frames = passed
                        count = len(frames)
                        nbytes = sum(map(len, frames))
            elif code == TUN:
                tunnel_id = op[1]
            else:                                        # MISS
                op[1].lookup_count += count

    def _flood_ports(self, in_port: int, flood: bool) -> list:
        """The ports FLOOD (flood=True) or ALL sends to, in port order."""
        ports = self.dp.ports
        out = []
        for p in sorted(ports):
            if p == in_port or p == P_LOCAL:
                continue
            port = ports[p]
            if port.config & PC_PORT_DOWN or port.state & PS_LINK_DOWN:
                continue
            if flood and (port.config & OFPPC_NO_FLOOD or port.state & PS_BLOCKED):
                continue
            out.append(port)
        return out

    @staticmethod
    def _send_many(port, frames: list, nbytes: int, tunnel_id: int) -> None:
        """Pipeline.send for frames of one flow with no queue set."""
        transmit_many(port, frames, nbytes, tunnel_id)

    @staticmethod
    def _send(port, frame: bytes, tunnel_id: int) -> None:
        """Pipeline.send for a packet with no queue set."""
        transmit(port, frame, tunnel_id)


class _Recorder(Pipeline):
    """The pipeline, writing down what it does (see the module docstring).

    It forwards the packet exactly as `Pipeline` does (the methods below
    keep the structure of Pipeline's and call into it for the work) and
    collects: `ops`, the decision; `wc`, the mask over the *original* flow
    key the path depends on; `mod`, for each field an action changed, what
    its value now depends on: a tuple of (original field, mask), or TAINT;
    `visits`, the tables looked up (Decision.visits), with `changed`: has
    anything run yet that may have changed the key (set-field, any header
    action, write-metadata, a group, a DSCP-remarking meter)?
    """

    def __init__(self, dp) -> None:
        super().__init__(dp)
        self.mac_table = dp.pipeline.mac_table     # OFPP_NORMAL learns into the datapath's one table
        self.ops: list = []
        self.wc: dict = {}
        self.mod: dict = {}
        self.cacheable = True
        self.simple = True
        self.busy = False
        self.visits: list = []
        self.changed = False

    def record(self, pkt: fk.Packet) -> tuple[Decision | None, dict]:
        self.ops = []
        self.wc = {}
        self.mod = {}
        self.visits = []
        self.cacheable = True
        self.simple = True
        self.changed = False
        self.busy = True
        try:
            self.run(pkt)
        finally:
            self.busy = False
        ops, wc, visits = self.ops, self.wc, self.visits
        self.ops, self.wc, self.mod, self.visits = [], {}, {}, []
        if not self.cacheable:
            return None, wc
        return Decision(tuple(ops), self.simple, tuple(visits)), wc

    # -- what the path depends on ------------------------------------------------------------
    def _examine(self, c: int, m: int) -> None:
        """The path depends on bits m of the current value of field c."""
        d = self.mod.get(c, _SAME)
        wc = self.wc
        if d is _SAME:
            wc[c] = wc.get(c, 0) | m
        elif d is TAINT:
            self.cacheable = False
        else:
            for oc, om in d:
                wc[oc] = wc.get(oc, 0) | om

    def _dep(self, c: int, m: int):
        """What bits m of the current field c are a function of."""
        d = self.mod.get(c, _SAME)
        return ((c, m),) if d is _SAME else d

    @staticmethod
    def _join(*deps):
        if any(d is TAINT for d in deps):
            return TAINT
        return tuple(x for d in deps for x in d)

    def _effect(self, a: tuple) -> None:
        """Track what an action does to the flow key (before it runs)."""
        t = a[0]
        mod = self.mod
        if t == SET_FIELD:
            code = a[1]
            if code == fk.ETH_TYPE or code == fk.IP_PROTO:     # the frame is parsed again as something else
                for c in _ABOVE_L2:
                    mod[c] = TAINT
            elif code == fk.IPV6_ND_SLL or code == fk.IPV6_ND_TLL:
                mod[code] = TAINT                   # set only when the option is there, which the key does not say
            elif code == VLAN_VID:
                mod[code] = self._dep(VLAN_VID, P | 0x1000)    # set only on a tagged frame
            else:
                mod[code] = self._dep(code, P)      # set when present: the new value is constant
        elif t == act.PUSH_VLAN:
            d = self._join(self._dep(VLAN_VID, FULL_P[VLAN_VID]), self._dep(VLAN_PCP, FULL_P[VLAN_PCP]))
            mod[VLAN_VID] = mod[VLAN_PCP] = d       # the new tag copies the old one
        elif t == act.POP_VLAN:
            mod[VLAN_VID] = mod[VLAN_PCP] = TAINT   # the inner tag (if any) is not in the key
        elif t == act.PUSH_MPLS:
            et = self._dep(ETH_TYPE, P)
            d = self._join(et, self._dep(fk.MPLS_LABEL, FULL_P[fk.MPLS_LABEL]),
                           self._dep(fk.MPLS_TC, FULL_P[fk.MPLS_TC]))
            for c in _ABOVE_MPLS:
                mod[c] = _NOTHING                   # an MPLS frame has none of these
            mod[ETH_TYPE] = et
            for c in _MPLS:
                mod[c] = d
        elif t == act.POP_MPLS:
            for c in _ABOVE_L2:
                mod[c] = TAINT
        elif t == act.PUSH_PBB or t == act.POP_PBB:
            for c in _HEADERS:
                mod[c] = TAINT
        # TTL actions and set-queue leave the key alone.

    # -- the pipeline, recorded --------------------------------------------------------------
    def run(self, pkt: fk.Packet, table_id: int = 0, depth: int = 0) -> None:
        dp = self.dp
        tables = dp.tables
        now = dp.clock()
        action_set: dict = {}
        entry = None
        key = pkt.key
        ops = self.ops
        examine = self._examine
        while True:
            table = tables[table_id]
            table.lookup_count += 1
            wc: dict = {}
            entry = table.lookup_wc(key, wc)
            for c, m in wc.items():
                examine(c, m)
            if entry is None:
                ops.append((MISS, table))
                self.visits.append((table_id, -1, self.changed))
                return
            self.visits.append((table_id, entry.priority, self.changed))
            table.matched_count += 1
            if entry.count_packets:
                entry.packet_count += 1
            if entry.count_bytes:
                entry.byte_count += len(pkt.data)
            entry.last_used = now
            ops.append((HIT, table, entry))
            prog = entry.program
            if prog.meter_id is not None and not self.meter(pkt, prog.meter_id, now):
                return
            if prog.apply is not None and not self.apply_actions(pkt, prog.apply, entry, depth):
                return
            if prog.clear:
                action_set.clear()
            if prog.write is not None:
                for s, a in prog.write:
                    action_set[s] = a
            if prog.metadata is not None:
                m = prog.metadata_mask
                key[METADATA] = P | (key[METADATA] & ~m | prog.metadata & m) & 0xFFFFFFFFFFFFFFFF
                ops.append((META, key[METADATA]))
                self.mod[METADATA] = _NOTHING       # receive() starts every packet at metadata 0
                self.changed = True
            if prog.goto is None:
                break
            table_id = prog.goto
        if action_set:
            self.action_set(pkt, action_set, entry, depth)

    def meter(self, pkt: fk.Packet, meter_id: int, now: float) -> bool:
        m = self.dp.meters.get(meter_id)
        if m is not None and any(b.type == MBT_DSCP_REMARK for b in m.bands):
            self.simple = False
            self.changed = True
            self.mod[IP_DSCP] = TAINT               # remarked or not depends on the token buckets
        self.ops.append((METER, meter_id))
        if super().meter(pkt, meter_id, now):
            return True
        self.cacheable = False                      # dropped: what follows for a passing packet is unknown
        return False

    def apply_actions(self, pkt: fk.Packet, acts: list, entry, depth: int) -> bool:
        for a in acts:
            t = a[0]
            if t == OUTPUT:
                self.output(pkt, a[1], a[2], entry, depth)
            elif t == SET_FIELD:
                self._set_field(pkt, a)
            elif t == GROUP_ACT:
                self.group(pkt, a[1], entry, depth)
            elif not self.header_action(pkt, a, entry):
                return False
        return True

    def _set_field(self, pkt: fk.Packet, a: tuple) -> None:
        self.simple = False
        self.changed = True
        self._effect(a)
        self.ops.append((SETF, a[1], a[2]))
        act.set_field(pkt, a[1], a[2])

    def header_action(self, pkt: fk.Packet, a: tuple, entry) -> bool:
        self.simple = False
        self.changed = True
        self._effect(a)
        self.ops.append((HDR, a, entry))
        if super().header_action(pkt, a, entry):
            return True
        self.cacheable = False                      # invalid TTL: the path was cut short
        return False

    def action_set(self, pkt: fk.Packet, action_set: dict, entry, depth: int) -> None:
        ordered = sorted(action_set.values(), key=act.rank)
        group = None
        output = None
        for a in ordered:
            t = a[0]
            if t == OUTPUT:
                output = a
            elif t == GROUP_ACT:
                group = a
            elif t == SET_FIELD:
                self._set_field(pkt, a)
            elif not self.header_action(pkt, a, entry):
                return
        if group is not None:
            self.group(pkt, group[1], entry, depth, clone=False)
        elif output is not None:
            self.output(pkt, output[1], output[2], entry, depth)

    def group(self, pkt: fk.Packet, group_id: int, entry, depth: int, clone: bool = True) -> None:
        groups = self.dp.groups
        g = groups.get(group_id)
        if g is None or depth > MAX_DEPTH:
            return
        self.simple = False
        self.changed = True                         # (buckets act on copies; counted as a change all the same)
        if g.type == GT_SELECT and len(g.buckets) > 1:
            for f in fk.HASH_FIELDS:                # the bucket is chosen by a hash of these
                self._examine(f, FULL_P[f])
        n = len(pkt.data)
        g.packet_count += 1
        g.byte_count += n
        buckets = groups.choose(g, pkt.key)
        branches: list = []
        self.ops.append((GROUP, g, branches, clone))
        outer_ops, outer_mod = self.ops, self.mod
        last = len(buckets) - 1
        for i, b in enumerate(buckets):
            b.packet_count += 1
            b.byte_count += n
            copy = clone or i < last
            p = pkt.copy() if copy else pkt
            sub: list = []
            self.ops = sub
            self.mod = dict(outer_mod) if copy else outer_mod
            self.apply_actions(p, b.actions, entry, depth + 1)
            branches.append((b, tuple(sub)))
        self.ops, self.mod = outer_ops, outer_mod

    def output(self, pkt: fk.Packet, port_no: int, max_len: int, entry, depth: int = 0) -> None:
        if port_no == P_NORMAL or port_no == P_TABLE:
            self.cacheable = False                  # MAC learning; a packet-out's resubmission
        elif port_no == P_CONTROLLER:
            self.simple = False
        self.ops.append((OUT, port_no, max_len, entry, depth))
        super().output(pkt, port_no, max_len, entry, depth)
