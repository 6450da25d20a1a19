"""The sans-IO datapath: flow tables, groups, meters, buffers, ports, and
every controller-to-switch message but HELLO, ECHO, ROLE and ASYNC config.

    dp = Datapath(dpid=1, n_tables=64, n_buffers=256, clock=time.monotonic)
    dp.on_async = send_to_controllers          # PacketIn, FlowRemoved, PortStatus
    dp.add_port(MemoryPort(1)); dp.add_port(MemoryPort(2))
    replies = dp.handle(msg)                   # raises SwitchError(type, code)
    dp.receive(1, frame)                       # run the pipeline
    dp.tick()                                  # timeouts, buffer and MAC ageing

`handle` returns the replies to send (same xid as the request, multipart
replies already split to fit 64 KB). When the specification names an
error it raises `SwitchError`; nothing has changed then, except that a
flow-mod with an unusable buffer_id is still applied (the spec defines it
as a flow-mod followed by a packet-out, so only the packet-out fails).

Time comes from the injectable `clock` (seconds, monotonic): flow
durations and timeouts, meter token buckets, buffer and MAC ageing.

Flow tables are `classifier.Classifier` (tuple space search) unless
`table_class` says otherwise. Received frames go through the decision
cache of fastpath.py in front of the pipeline (`fastpath=False` runs
every frame through the pipeline itself, the reference the cache is
tested against). `generation` moves on every change that can alter a
forwarding decision; the cache empties itself when it does, but for
flow-table changes, which it is told of entry by entry and revalidates
(fastpath.py, "Invalidation").
"""

from __future__ import annotations

import struct
import time

from kumoflow import __version__, ofp
from kumoflow.ofp.consts import (OFP_NO_BUFFER, OFPC, OFPC_FRAG, OFPCML, OFPFC, OFPFF, OFPG, OFPGC, OFPIT,
                                 OFPM, OFPMC, OFPP, OFPPR, OFPQ_ALL, OFPRR, OFPTT)
from kumoflow.ofp.errors import (OFPBIC, OFPBRC, OFPET, OFPFMFC, OFPMMFC, OFPPMFC, OFPQOFC, OFPSCFC, OFPTFFC,
                                 OFPTMFC)
from kumoflow.ofp.instructions import unpack_instructions

from . import actions as act
from . import flowkey as fk
from .buffers import PacketBuffers
from .classifier import Classifier
from .errors import SwitchError
from .fastpath import FastPath
from .features import group_features, meter_features, table_features
from .flowmatch import Compiled, compile_match, compile_raw_key
from .flowtable import FlowEntry, UINT64_MAX
from .groups import GroupTable
from .meters import MeterTable
from .pipeline import Pipeline, Program
from .port import PC_NO_RECV, PC_PORT_DOWN, PORT_CONFIG_BITS, PS_LINK_DOWN, PortBase, split_duration

__all__ = ["Datapath", "SwitchError"]

FLOW_MOD_FLAGS = int(OFPFF.SEND_FLOW_REM | OFPFF.CHECK_OVERLAP | OFPFF.RESET_COUNTS | OFPFF.NO_PKT_COUNTS
                     | OFPFF.NO_BYT_COUNTS)
#: the switch config flags OpenFlow 1.3 defines: the fragment bits only (1.1 and 1.2 had
#: OFPC_INVALID_TTL_TO_CONTROLLER; 1.3 leaves INVALID_TTL packet-ins to the async configuration)
CONFIG_FLAGS = int(OFPC_FRAG.MASK)
CAPABILITIES = int(OFPC.FLOW_STATS | OFPC.TABLE_STATS | OFPC.PORT_STATS | OFPC.GROUP_STATS | OFPC.QUEUE_STATS)
# Instructions in the order they execute (section 5.9), which is also the
# order they are checked in.
_INSTRUCTION_ORDER = {OFPIT.METER: 0, OFPIT.APPLY_ACTIONS: 1, OFPIT.CLEAR_ACTIONS: 2, OFPIT.WRITE_ACTIONS: 3,
                      OFPIT.WRITE_METADATA: 4, OFPIT.GOTO_TABLE: 5, OFPIT.EXPERIMENTER: 6}
_INSTRUCTION_ORDER = {int(k): v for k, v in _INSTRUCTION_ORDER.items()}

# Plain ints: IntFlag / IntEnum arithmetic runs Python code (enum.py) on every use.
IT_GOTO_TABLE, IT_WRITE_METADATA, IT_WRITE_ACTIONS, IT_APPLY_ACTIONS, IT_CLEAR_ACTIONS, IT_METER, IT_EXPERIMENTER = (
    int(OFPIT.GOTO_TABLE), int(OFPIT.WRITE_METADATA), int(OFPIT.WRITE_ACTIONS), int(OFPIT.APPLY_ACTIONS),
    int(OFPIT.CLEAR_ACTIONS), int(OFPIT.METER), int(OFPIT.EXPERIMENTER))
FC_ADD, FC_MODIFY, FC_MODIFY_STRICT, FC_DELETE, FC_DELETE_STRICT = (
    int(OFPFC.ADD), int(OFPFC.MODIFY), int(OFPFC.MODIFY_STRICT), int(OFPFC.DELETE), int(OFPFC.DELETE_STRICT))
FF_SEND_FLOW_REM, FF_CHECK_OVERLAP, FF_RESET_COUNTS = (int(OFPFF.SEND_FLOW_REM), int(OFPFF.CHECK_OVERLAP),
                                                       int(OFPFF.RESET_COUNTS))
TT_ALL = int(OFPTT.ALL)
P_ANY, P_MAX, P_LOCAL = int(OFPP.ANY), int(OFPP.MAX), int(OFPP.LOCAL)
G_ANY = int(OFPG.ANY)
_NO_BUFFER = int(OFP_NO_BUFFER)

#: the fixed part of a FLOW_MOD after the header (ofp.messages._FLOW_MOD), less what an
#: ADD does not use (cookie mask, out port, out group)
_FLOW_MOD_ADD = struct.Struct("!Q8xBBHHHI8xH2x").unpack_from
_FLOW_MOD_TYPE = int(ofp.OFPT.FLOW_MOD)
_OFP_VERSION = ofp.OFP_VERSION
#: Actions whose validation depends neither on the match (set-field
#: prerequisites, pops, TTLs) nor on the switch's groups, meters and
#: queues: a list of only these, with OFPIT goto / write-metadata /
#: clear-actions, compiles the same for every flow of one table.
_CONTEXT_FREE_ACTIONS = frozenset((act.OUTPUT, act.COPY_TTL_OUT, act.COPY_TTL_IN, act.PUSH_VLAN, act.PUSH_MPLS,
                                   act.PUSH_PBB))
_CONTEXT_FREE_INSTRUCTIONS = frozenset((IT_GOTO_TABLE, IT_WRITE_METADATA, IT_CLEAR_ACTIONS))
_ACTION_INSTRUCTIONS = frozenset((IT_APPLY_ACTIONS, IT_WRITE_ACTIONS))
#: bounds of the per-datapath caches of compiled instructions and programs
MAX_CACHED_INSTRUCTIONS = 4096
MAX_SHARED_PROGRAMS = 65536


def _context_free(instructions: list) -> bool:
    """Does this (decoded) instruction list compile the same whatever the
    match and the switch's groups, meters and queues? (Then its result can
    be kept for the next flow-mod of the same bytes.)"""
    for ins in instructions:
        t = ins.TYPE
        if t in _ACTION_INSTRUCTIONS:
            for a in ins.actions:
                if a.TYPE not in _CONTEXT_FREE_ACTIONS:
                    return False
        elif t not in _CONTEXT_FREE_INSTRUCTIONS:
            return False
    return True


def _fm_error(code: int, detail: str) -> SwitchError:
    return SwitchError(OFPET.FLOW_MOD_FAILED, code, detail)


_SHARED: dict[frozenset, frozenset] = {}


def _shared(items: set) -> frozenset:
    """One frozenset object for equal sets of groups / ports (most flows have
    the same few): 200 bytes less per flow entry for each."""
    f = frozenset(items)
    s = _SHARED.get(f)
    if s is None:
        if len(_SHARED) >= 4096:
            return f
        s = _SHARED[f] = f
    return s


def _valid_port_number(port_no: int) -> bool:
    return 0 < port_no <= P_MAX or port_no == P_LOCAL


class Datapath(act.ActionEnv):

    def __init__(self, dpid: int, n_tables: int = 64, n_buffers: int = 256, *, clock=time.monotonic,
                 dp_desc: str = "", max_entries: int = 1_000_000, buffer_timeout: float = 5.0,
                 serial_num: str = "", table_class=Classifier, fastpath: bool = True) -> None:
        if not 1 <= n_tables <= 254:
            raise ValueError("n_tables must be 1..254")
        self.dpid = dpid
        self.n_tables = n_tables
        self.n_buffers = n_buffers
        self.clock = clock
        self.ports: dict[int, PortBase] = {}
        #: how many of the ports are tunnel ports (the fast path keys its megaflows on tunnel ids then)
        self.tunnel_ports = 0
        self.tables = [table_class(i, max_entries) for i in range(n_tables)]
        self.groups = GroupTable(self.ports, self, clock)
        self.meters = MeterTable(clock)
        self.buffers = PacketBuffers(n_buffers, clock, buffer_timeout)
        self.pipeline = Pipeline(self)
        self.flags = 0
        self.miss_send_len = ofp.OFP_DEFAULT_MISS_SEND_LEN
        self.on_async = None
        self.dp_desc = dp_desc or f"kumoflow datapath {dpid:#018x}"
        self.serial_num = serial_num
        #: Bumped by every change that can alter forwarding (flows, groups,
        #: meters, ports, config, timeouts): a decision cache keyed on it is never
        #: stale. Flow changes also say which entries changed (_flow_added,
        #: _flows_changed), so the cache can forget only what they affect.
        self.generation = 0
        #: The decision cache in front of the pipeline (None: no cache).
        self.fastpath = FastPath(self) if fastpath else None
        self._timed: set[FlowEntry] = set()
        #: per table, instruction bytes -> (program, groups, out ports, the bytes):
        #: context-free instruction lists compiled once (flow_mod_raw)
        self._ins_cache: list[dict[bytes, tuple]] = [{} for _ in range(n_tables)]
        #: one Program object for all flow entries of identical compiled instructions
        self._programs: dict[tuple, Program] = {}
        self._group_flows: dict[int, set[FlowEntry]] = {}
        self._meter_flows: dict[int, set[FlowEntry]] = {}
        self._handlers = {
            ofp.FeaturesRequest: self._features,
            ofp.GetConfigRequest: self._get_config,
            ofp.SetConfig: self._set_config,
            ofp.FlowMod: self._flow_mod,
            ofp.GroupMod: self._group_mod,
            ofp.MeterMod: self._meter_mod,
            ofp.PortMod: self._port_mod,
            ofp.TableMod: self._table_mod,
            ofp.PacketOut: self._packet_out,
            ofp.BarrierRequest: lambda m: [ofp.BarrierReply()],
            ofp.EchoRequest: lambda m: [ofp.EchoReply(m.data)],
            ofp.QueueGetConfigRequest: self._queue_get_config,
            ofp.DescRequest: self._desc,
            ofp.FlowStatsRequest: self._flow_stats,
            ofp.AggregateStatsRequest: self._aggregate_stats,
            ofp.TableStatsRequest: self._table_stats,
            ofp.TableFeaturesRequest: self._table_features,
            ofp.PortDescRequest: lambda m: [ofp.PortDescReply([p.desc() for _, p in sorted(self.ports.items())])],
            ofp.PortStatsRequest: self._port_stats,
            ofp.QueueStatsRequest: self._queue_stats,
            ofp.GroupStatsRequest: self._group_stats,
            ofp.GroupDescRequest: lambda m: [ofp.GroupDescReply([g.desc() for _, g in
                                                                 sorted(self.groups.groups.items())])],
            ofp.GroupFeaturesRequest: lambda m: [group_features()],
            ofp.MeterStatsRequest: self._meter_stats,
            ofp.MeterConfigRequest: self._meter_config,
            ofp.MeterFeaturesRequest: lambda m: [meter_features()],
        }

    # -- the contract ---------------------------------------------------------------------
    def handle(self, msg: ofp.Message) -> list[ofp.Message]:
        """Process one controller request; its replies (raises SwitchError)."""
        handler = self._handlers.get(type(msg))
        if handler is None:
            if isinstance(msg, (ofp.Experimenter, ofp.ExperimenterMultipartRequest)):
                raise SwitchError(OFPET.BAD_REQUEST, OFPBRC.BAD_EXPERIMENTER,
                                  f"experimenter {msg.experimenter:#x} is not supported")
            if isinstance(msg, ofp.MultipartRequest):
                raise SwitchError(OFPET.BAD_REQUEST, OFPBRC.BAD_MULTIPART, f"{type(msg).__name__} not supported")
            raise SwitchError(OFPET.BAD_REQUEST, OFPBRC.BAD_TYPE, f"{type(msg).__name__} is not a request the "
                              "datapath handles")
        replies = handler(msg)
        if not replies and type(msg) is not ofp.PacketOut and type(msg) is not ofp.FlowMod:
            # a mod (a packet-out changes no forwarding state; flow-mods move the
            # generation change by change, in _flow_added / _flows_changed)
            self.generation += 1
        out = []
        for r in replies:
            r.xid = msg.xid
            if isinstance(r, ofp.MultipartReply):
                out.extend(ofp.split_multipart(r))
            else:
                out.append(r)
        return out

    def add_port(self, port: PortBase) -> None:
        if port.port_no in self.ports:
            raise ValueError(f"port {port.port_no} already exists")
        self.ports[port.port_no] = port
        port.datapath = self
        self.tunnel_ports += bool(port.tunnel)
        self.generation += 1
        self.emit(ofp.PortStatus(OFPPR.ADD, port.desc()))

    def remove_port(self, port_no: int) -> None:
        port = self.ports.pop(port_no, None)
        if port is None:
            return
        port.datapath = None
        self.tunnel_ports -= bool(port.tunnel)
        self.generation += 1
        self.pipeline.forget_port(port_no)
        self.emit(ofp.PortStatus(OFPPR.DELETE, port.desc()))

    def port_changed(self, port_no: int) -> None:
        port = self.ports.get(port_no)
        if port is None:
            return
        self.generation += 1
        if not port.live:
            self.pipeline.forget_port(port_no)
        self.emit(ofp.PortStatus(OFPPR.MODIFY, port.desc()))

    def receive(self, in_port: int, frame: bytes, *, tunnel_id: int = 0, in_phy_port: int | None = None) -> None:
        """A frame arrived on in_port: count it and run the pipeline."""
        port = self.ports.get(in_port)
        if port is None:
            return
        c = port.counters
        c.rx_packets += 1
        c.rx_bytes += len(frame)
        if port.config & (PC_NO_RECV | PC_PORT_DOWN) or port.state & PS_LINK_DOWN:
            c.rx_dropped += 1
            return
        if self.fastpath is not None:
            self.fastpath.receive(in_port, frame, tunnel_id, in_phy_port)
            return
        pkt = fk.Packet(frame, in_port, in_phy_port, tunnel_id)
        if pkt.frag and self.flags & 3 == 1:       # OFPC_FRAG_DROP
            return
        self.pipeline.run(pkt)

    def receive_batch(self, in_port: int, frames: list, tunnel_id: int = 0) -> None:
        """Frames that arrived together on in_port (a port's read batch), all
        with tunnel id `tunnel_id`: the same as receive() on each in turn,
        with the per-port work done once.
        The fast path may send frames of different flows in a different
        order than they came; each flow's frames keep their order."""
        port = self.ports.get(in_port)
        if port is None or not frames:
            return
        c = port.counters
        c.rx_packets += len(frames)
        c.rx_bytes += sum(map(len, frames))
        if port.config & (PC_NO_RECV | PC_PORT_DOWN) or port.state & PS_LINK_DOWN:
            c.rx_dropped += len(frames)
            return
        if self.fastpath is not None:
            self.fastpath.receive_batch(in_port, frames, tunnel_id)
            return
        for frame in frames:
            pkt = fk.Packet(frame, in_port, None, tunnel_id)
            if not (pkt.frag and self.flags & 3 == 1):       # OFPC_FRAG_DROP
                self.pipeline.run(pkt)

    def tick(self, now: float | None = None) -> None:
        """Expire flows (idle and hard timeouts -> FLOW_REMOVED), buffers, MACs."""
        now = self.clock() if now is None else now
        expired = []
        for e in self._timed:
            if e.hard_timeout and now - e.created >= e.hard_timeout:
                expired.append((e, OFPRR.HARD_TIMEOUT))
            elif e.idle_timeout and now - e.last_used >= e.idle_timeout:
                expired.append((e, OFPRR.IDLE_TIMEOUT))
        expired.sort(key=lambda x: x[0].seq)
        for e, reason in expired:
            self._remove_flow(e, reason, now)
        if expired:
            self._flows_changed([e for e, _ in expired])
        self.buffers.expire(now)
        self.pipeline.age(now)

    def emit(self, msg: ofp.Message) -> None:
        if self.on_async is not None:
            self.on_async(msg)

    # -- ActionEnv ---------------------------------------------------------------------------
    def group_exists(self, group_id: int) -> bool:
        return group_id in self.groups

    def queue_exists(self, queue_id: int) -> bool:
        return any(queue_id in p.queues for p in self.ports.values()) or (queue_id == 0)

    # -- switch configuration ----------------------------------------------------------------
    def _features(self, msg) -> list:
        return [ofp.FeaturesReply(self.dpid, self.n_buffers, self.n_tables, 0, CAPABILITIES, 0)]

    def _get_config(self, msg) -> list:
        return [ofp.GetConfigReply(self.flags, self.miss_send_len)]

    def _set_config(self, msg: ofp.SetConfig) -> list:
        if msg.flags & ~CONFIG_FLAGS or msg.flags & OFPC_FRAG.MASK not in (OFPC_FRAG.NORMAL, OFPC_FRAG.DROP):
            raise SwitchError(OFPET.SWITCH_CONFIG_FAILED, OFPSCFC.BAD_FLAGS,
                              f"config flags {msg.flags:#x} (fragment reassembly is not supported)")
        if OFPCML.MAX < msg.miss_send_len < OFPCML.NO_BUFFER:
            raise SwitchError(OFPET.SWITCH_CONFIG_FAILED, OFPSCFC.BAD_LEN, f"miss_send_len {msg.miss_send_len}")
        self.flags = msg.flags
        self.miss_send_len = msg.miss_send_len
        return []

    def _table_mod(self, msg: ofp.TableMod) -> list:
        if msg.table_id != OFPTT.ALL and msg.table_id >= self.n_tables:
            raise SwitchError(OFPET.TABLE_MOD_FAILED, OFPTMFC.BAD_TABLE, f"no table {msg.table_id}")
        if msg.config & ~int(ofp.OFPTC.DEPRECATED_MASK):
            raise SwitchError(OFPET.TABLE_MOD_FAILED, OFPTMFC.BAD_CONFIG, f"table config {msg.config:#x}")
        for t in (self.tables if msg.table_id == OFPTT.ALL else [self.tables[msg.table_id]]):
            t.config = msg.config
        return []

    def _port_mod(self, msg: ofp.PortMod) -> list:
        port = self.ports.get(msg.port_no)
        if port is None:
            raise SwitchError(OFPET.PORT_MOD_FAILED, OFPPMFC.BAD_PORT, f"no port {msg.port_no}")
        if msg.hw_addr.lower() != port.hw_addr.lower():
            raise SwitchError(OFPET.PORT_MOD_FAILED, OFPPMFC.BAD_HW_ADDR,
                              f"hw_addr {msg.hw_addr} is not port {msg.port_no}'s {port.hw_addr}")
        if msg.mask & ~PORT_CONFIG_BITS:
            raise SwitchError(OFPET.PORT_MOD_FAILED, OFPPMFC.BAD_CONFIG, f"config mask {msg.mask:#x}")
        if msg.advertise & ~port.supported:
            raise SwitchError(OFPET.PORT_MOD_FAILED, OFPPMFC.BAD_ADVERTISE,
                              f"advertise {msg.advertise:#x} not within supported {port.supported:#x}")
        config = port.config & ~msg.mask | msg.config & msg.mask
        changed = False
        if config != port.config:
            was_live = port.live
            port.set_config(config)
            changed = True
            if was_live and not port.live:
                self.pipeline.forget_port(port.port_no)
        if msg.advertise and msg.advertise != port.advertised:
            port.set_advertised(msg.advertise)
            changed = True
        if changed:
            self.emit(ofp.PortStatus(OFPPR.MODIFY, port.desc()))
        return []

    # -- flow-mod --------------------------------------------------------------------------------
    def flow_mod_raw(self, raw: bytes) -> bool:
        """Apply a FLOW_MOD straight from its bytes (an OpenFlow 1.3 message,
        header included, length checked by the framing), without decoding
        it into ofp objects: the common case of the channel (an ADD without
        a buffer id, a match of OpenFlow-basic fields, instructions that
        are valid). Returns False, having changed nothing, for anything
        else, and for any flow-mod that would fail: the caller then takes
        the reference path, ``handle(ofp.parse(raw))``, which applies it or
        names the error (the codec's or the datapath's, exactly as always).

        When it returns True, the datapath is as ``handle(ofp.parse(raw))``
        would have left it (the entry keeps the match and instruction bytes
        instead of their objects; see FlowEntry).

        It is stage_flow_mod_raw (all the checks, no change) and then
        commit_flow_mod_raw (the change): a caller that falls back to the
        reference path when something raises must catch only the first."""
        staged = self.stage_flow_mod_raw(raw)
        if staged is None:
            return False
        self.commit_flow_mod_raw(staged)
        return True

    def stage_flow_mod_raw(self, raw: bytes):
        """The first half of flow_mod_raw: decode and check the flow-mod and
        build its entry, changing nothing in the datapath (it may fill the
        caches of compiled matches and instructions, which depend only on
        their keys). Returns the entry for commit_flow_mod_raw, or None when
        flow_mod_raw would return False."""
        if type(raw) is not bytes:
            raw = bytes(raw)
        end = len(raw)
        if end < 56 or raw[0] != _OFP_VERSION or raw[1] != _FLOW_MOD_TYPE or (raw[2] << 8 | raw[3]) != end:
            return None
        cookie, table_id, command, idle_timeout, hard_timeout, priority, buffer_id, flags = _FLOW_MOD_ADD(raw, 8)
        if (command != FC_ADD or table_id >= self.n_tables or flags & ~FLOW_MOD_FLAGS
                or buffer_id != _NO_BUFFER):
            return None
        located = compile_raw_key(raw, 48, end)         # (shape, key): see FlowEntry
        if located is None:
            return None
        length = raw[50] << 8 | raw[51]
        o = 48 + length + (-length & 7)              # the instructions follow the padded match
        ins_raw = raw[o:]
        cached = self._ins_cache[table_id].get(ins_raw)
        if cached is None:
            cached = self._compile_raw_instructions(ins_raw, table_id, Compiled.of_key(*located))
            if cached is None:
                return None
        program, groups, out_ports, ins_raw = cached
        table = self.tables[table_id]
        if flags & FF_CHECK_OVERLAP and table.overlapping(priority, Compiled.of_key(*located)) is not None:
            return None
        # A full table takes only a replacement (else TABLE_FULL, which the reference path names).
        if len(table) >= table.max_entries and table.find_strict(priority, Compiled.of_key(*located)) is None:
            return None
        return FlowEntry(table_id, priority, raw[48:o], located, cookie, idle_timeout, hard_timeout, flags, ins_raw,
                         program, self.clock(), program.meter_id, groups, out_ports)

    def commit_flow_mod_raw(self, entry: FlowEntry) -> None:
        """The second half of flow_mod_raw: add the entry stage_flow_mod_raw
        returned (nothing may have changed the datapath in between), in
        place of the one of identical match and priority if there is one."""
        old = self.tables[entry.table_id].replace(entry)
        if old is not None:
            if not entry.flags & FF_RESET_COUNTS:
                entry.packet_count, entry.byte_count = old.packet_count, old.byte_count
            self._forget(old)
        self._link(entry)
        self._flow_added(entry, old)

    def _compile_raw_instructions(self, ins_raw: bytes, table_id: int, compiled: Compiled):
        """(program, groups, out ports, ins_raw) for instruction bytes, or None
        when they do not decode or do not validate. Kept for the next
        flow-mod of the same bytes when the result cannot depend on the
        match or on the switch's state (_context_free)."""
        try:
            instructions = unpack_instructions(ins_raw, 0, len(ins_raw))
            program, groups, out_ports = self._compile_instructions(instructions, table_id, compiled)
        except Exception:                   # CodecError, SwitchError, ...: the reference path says which
            return None
        result = (program, groups, out_ports, ins_raw)
        if _context_free(instructions):
            cache = self._ins_cache[table_id]
            if len(cache) >= MAX_CACHED_INSTRUCTIONS:
                cache.clear()
            cache[ins_raw] = result
        return result

    def _flow_mod(self, fm: ofp.FlowMod) -> list:
        cmd = fm.command
        if cmd not in (FC_ADD, FC_MODIFY, FC_MODIFY_STRICT, FC_DELETE, FC_DELETE_STRICT):
            raise _fm_error(OFPFMFC.BAD_COMMAND, f"flow-mod command {cmd}")
        deleting = cmd == FC_DELETE or cmd == FC_DELETE_STRICT
        if fm.table_id == TT_ALL:
            if not deleting:
                raise _fm_error(OFPFMFC.BAD_TABLE_ID, "table OFPTT_ALL is only valid for deletes")
        elif fm.table_id >= self.n_tables:
            raise _fm_error(OFPFMFC.BAD_TABLE_ID, f"no table {fm.table_id} (the switch has {self.n_tables})")
        if fm.flags & ~FLOW_MOD_FLAGS:
            raise _fm_error(OFPFMFC.BAD_FLAGS, f"flow-mod flags {fm.flags:#x}")
        compiled = compile_match(fm.match)
        if deleting:
            self._delete_flows(fm, compiled, cmd == FC_DELETE_STRICT)
            return []
        program, groups, out_ports = self._compile_instructions(fm.instructions, fm.table_id, compiled)
        if cmd == FC_ADD:
            self._add_flow(fm, compiled, program, groups, out_ports)
        else:
            self._modify_flows(fm, compiled, program, groups, out_ports, cmd == FC_MODIFY_STRICT)
        if fm.buffer_id != _NO_BUFFER:
            # (applied, and the generation moved, even if the buffer turns out unusable)
            b = self.buffers.take(fm.buffer_id)
            self.pipeline.run(fk.Packet(b.data, b.in_port, b.in_phy_port, b.tunnel_id))
        return []

    def _compile_instructions(self, instructions: list, table_id: int, compiled: Compiled):
        seen = set()
        prog = Program()
        groups: set[int] = set()
        out_ports: set[int] = set()
        state = dict(compiled.state)
        for ins in sorted(instructions, key=lambda i: _INSTRUCTION_ORDER.get(i.TYPE, 7)):
            t = ins.TYPE
            if t in seen:
                raise SwitchError(OFPET.BAD_INSTRUCTION, OFPBIC.UNSUP_INST,
                                  f"instruction type {t} appears twice")
            seen.add(t)
            if t == IT_GOTO_TABLE:
                if ins.table_id <= table_id or ins.table_id >= self.n_tables:
                    raise SwitchError(OFPET.BAD_INSTRUCTION, OFPBIC.BAD_TABLE_ID,
                                      f"goto table {ins.table_id} from table {table_id}")
                prog.goto = ins.table_id
            elif t == IT_WRITE_METADATA:
                prog.metadata = ins.metadata & ins.metadata_mask
                prog.metadata_mask = ins.metadata_mask
            elif t == IT_APPLY_ACTIONS:
                prog.apply = act.validate_actions(ins.actions, self, state, out_ports=out_ports, groups=groups)
            elif t == IT_WRITE_ACTIONS:
                compiled_acts = act.validate_actions(sorted(ins.actions, key=_action_rank), self, dict(state),
                                                     out_ports=out_ports, groups=groups)
                prog.write = [(act.slot(a), a) for a in compiled_acts]
            elif t == IT_CLEAR_ACTIONS:
                prog.clear = True
            elif t == IT_METER:
                if ins.meter_id not in self.meters:
                    raise SwitchError(OFPET.METER_MOD_FAILED, OFPMMFC.UNKNOWN_METER,
                                      f"meter {ins.meter_id} does not exist")
                prog.meter_id = ins.meter_id
            elif t == IT_EXPERIMENTER:
                raise SwitchError(OFPET.BAD_INSTRUCTION, OFPBIC.BAD_EXPERIMENTER,
                                  f"experimenter instruction {ins.experimenter:#x}")
            else:
                raise SwitchError(OFPET.BAD_INSTRUCTION, OFPBIC.UNKNOWN_INST, f"instruction type {t}")
        return self._shared_program(prog), _shared(groups), _shared(out_ports)

    def _shared_program(self, prog: Program) -> Program:
        """One Program object for equal compiled instructions (programs are
        never changed once made: a modify gives an entry another one)."""
        key = (prog.meter_id, None if prog.apply is None else tuple(prog.apply), prog.clear,
               None if prog.write is None else tuple(prog.write), prog.metadata, prog.metadata_mask, prog.goto)
        programs = self._programs
        shared = programs.get(key)
        if shared is None:
            if len(programs) >= MAX_SHARED_PROGRAMS:
                programs.clear()
            shared = programs[key] = prog
        return shared

    def _add_flow(self, fm: ofp.FlowMod, compiled: Compiled, program: Program, groups, out_ports) -> None:
        table = self.tables[fm.table_id]
        if fm.flags & FF_CHECK_OVERLAP:
            e = table.overlapping(fm.priority, compiled)
            if e is not None:
                raise _fm_error(OFPFMFC.OVERLAP, f"overlaps {e!r}")
        old = table.find_strict(fm.priority, compiled)
        if old is None and len(table) >= table.max_entries:
            raise _fm_error(OFPFMFC.TABLE_FULL, f"table {fm.table_id} holds {table.max_entries} entries")
        now = self.clock()
        entry = FlowEntry(fm.table_id, fm.priority, fm.match, compiled, fm.cookie, fm.idle_timeout,
                          fm.hard_timeout, fm.flags, list(fm.instructions), program, now, program.meter_id,
                          groups, out_ports)
        if old is not None:
            if not fm.flags & FF_RESET_COUNTS:
                entry.packet_count, entry.byte_count = old.packet_count, old.byte_count
            self._unlink(old)
        table.insert(entry)
        self._link(entry)
        self._flow_added(entry, old)

    def _modify_flows(self, fm: ofp.FlowMod, compiled: Compiled, program: Program, groups, out_ports,
                      strict: bool) -> None:
        table = self.tables[fm.table_id]
        if strict:
            e = table.find_strict(fm.priority, compiled)
            targets = [e] if e is not None else []
        else:
            targets = table.covered(compiled)
        mask = fm.cookie_mask
        for e in targets:
            if mask and (e.cookie ^ fm.cookie) & mask:
                continue
            self._unref(e)
            e.instructions = list(fm.instructions)
            e.program = program
            e.meter_id = program.meter_id
            e.groups = groups
            e.out_ports = out_ports
            if fm.flags & FF_RESET_COUNTS:
                e.packet_count = e.byte_count = 0
            self._ref(e)
            table.generation += 1
        self._flows_changed(targets)        # (those the cookie left alone too: harmless)

    def _delete_flows(self, fm: ofp.FlowMod, compiled: Compiled, strict: bool) -> None:
        victims = self._select_flows(fm.table_id, fm.out_port, fm.out_group, fm.cookie, fm.cookie_mask,
                                     compiled, fm.priority if strict else None)
        now = self.clock()
        for e in victims:
            self._remove_flow(e, OFPRR.DELETE, now)
        self._flows_changed(victims)

    def _select_flows(self, table_id: int, out_port: int, out_group: int, cookie: int, cookie_mask: int,
                      compiled: Compiled, strict_priority: int | None = None) -> list[FlowEntry]:
        tables = self.tables if table_id == TT_ALL else [self.tables[table_id]]
        out = []
        for t in tables:
            if strict_priority is not None:
                e = t.find_strict(strict_priority, compiled)
                candidates = [e] if e is not None else []
            elif not compiled.fields:
                candidates = t
            else:
                candidates = t.covered(compiled)
            for e in candidates:
                if cookie_mask and (e.cookie ^ cookie) & cookie_mask:
                    continue
                if out_port != P_ANY and out_port not in e.out_ports:
                    continue
                if out_group != G_ANY and out_group not in e.groups:
                    continue
                out.append(e)
        return out

    # flow changes: the generation, and what the decision cache is told
    def _flow_added(self, entry: FlowEntry, old: FlowEntry | None) -> None:
        """entry was added, replacing old (same match and priority) unless None."""
        self.generation += 1
        if self.fastpath is not None:
            self.fastpath.flow_added(entry, old, self.generation)

    def _flows_changed(self, entries) -> None:
        """entries were modified in place or removed (not by a group or meter delete)."""
        self.generation += 1
        if self.fastpath is not None:
            self.fastpath.flows_changed(entries, self.generation)

    # flow bookkeeping: timeouts, group and meter references
    def _ref(self, e: FlowEntry) -> None:
        for g in e.groups:
            self._group_flows.setdefault(g, set()).add(e)
        if e.meter_id is not None:
            self._meter_flows.setdefault(e.meter_id, set()).add(e)

    def _unref(self, e: FlowEntry) -> None:
        for g in e.groups:
            s = self._group_flows.get(g)
            if s is not None:
                s.discard(e)
                if not s:
                    del self._group_flows[g]
        if e.meter_id is not None:
            s = self._meter_flows.get(e.meter_id)
            if s is not None:
                s.discard(e)
                if not s:
                    del self._meter_flows[e.meter_id]

    def _link(self, e: FlowEntry) -> None:
        if e.idle_timeout or e.hard_timeout:
            self._timed.add(e)
        if e.groups or e.meter_id is not None:
            self._ref(e)

    def _unlink(self, e: FlowEntry) -> None:
        self.tables[e.table_id].remove(e)
        self._forget(e)

    def _forget(self, e: FlowEntry) -> None:
        """The bookkeeping of an entry no longer in its table (timeouts, references)."""
        self._timed.discard(e)
        self._unref(e)

    def _remove_flow(self, e: FlowEntry, reason: int, now: float) -> None:
        self._unlink(e)
        if e.flags & FF_SEND_FLOW_REM:
            sec, nsec = split_duration(now - e.created)
            self.emit(ofp.FlowRemoved(e.cookie, e.priority, reason, e.table_id, sec, nsec, e.idle_timeout,
                                      e.hard_timeout, e.reported_packets, e.reported_bytes, e.match))

    # -- groups and meters -----------------------------------------------------------------------
    def _group_mod(self, gm: ofp.GroupMod) -> list:
        if gm.command == OFPGC.ADD:
            self.groups.add(gm)
        elif gm.command == OFPGC.MODIFY:
            self.groups.modify(gm)
        elif gm.command == OFPGC.DELETE:
            now = self.clock()
            for gid in self.groups.delete(gm.group_id):
                for e in sorted(self._group_flows.get(gid, ()), key=lambda e: e.seq):
                    self._remove_flow(e, OFPRR.GROUP_DELETE, now)
        else:
            raise SwitchError(OFPET.GROUP_MOD_FAILED, ofp.OFPGMFC.BAD_COMMAND, f"group command {gm.command}")
        return []

    def _meter_mod(self, mm: ofp.MeterMod) -> list:
        MeterTable.check_command(mm.command)
        if mm.command == OFPMC.ADD:
            self.meters.add(mm)
        elif mm.command == OFPMC.MODIFY:
            self.meters.modify(mm)
        else:
            now = self.clock()
            for mid in self.meters.delete(mm.meter_id):
                for e in sorted(self._meter_flows.get(mid, ()), key=lambda e: e.seq):
                    self._remove_flow(e, OFPRR.DELETE, now)
        return []

    # -- packet-out ------------------------------------------------------------------------------
    def _packet_out(self, po: ofp.PacketOut) -> list:
        in_port = po.in_port
        if not (_valid_port_number(in_port) or in_port in (OFPP.CONTROLLER, OFPP.ANY)):
            raise SwitchError(OFPET.BAD_REQUEST, OFPBRC.BAD_PORT, f"packet-out in_port {in_port:#x}")
        compiled = act.validate_actions(po.actions, self, None, allow_table=True)
        if po.buffer_id != OFP_NO_BUFFER:
            b = self.buffers.take(po.buffer_id)
            pkt = fk.Packet(b.data, in_port, None, b.tunnel_id)
        else:
            pkt = fk.Packet(po.data, in_port)
        self.pipeline.apply_actions(pkt, compiled, None, 0)
        return []

    # -- multipart -------------------------------------------------------------------------------
    def _desc(self, msg) -> list:
        return [ofp.DescReply("kumoflow", "kumoflow software switch", f"kumoflow {__version__}",
                              self.serial_num, self.dp_desc)]

    def _stats_tables(self, table_id: int) -> None:
        if table_id != OFPTT.ALL and table_id >= self.n_tables:
            raise SwitchError(OFPET.BAD_REQUEST, OFPBRC.BAD_TABLE_ID, f"no table {table_id}")

    def _flow_stats(self, req: ofp.FlowStatsRequest) -> list:
        self._stats_tables(req.table_id)
        compiled = compile_match(req.match)
        now = self.clock()
        body = []
        for e in self._select_flows(req.table_id, req.out_port, req.out_group, req.cookie, req.cookie_mask,
                                    compiled):
            sec, nsec = split_duration(now - e.created)
            body.append(ofp.FlowStats(e.table_id, sec, nsec, e.priority, e.idle_timeout, e.hard_timeout, e.flags,
                                      e.cookie, e.reported_packets, e.reported_bytes, e.match, e.instructions))
        return [ofp.FlowStatsReply(body)]

    def _aggregate_stats(self, req: ofp.AggregateStatsRequest) -> list:
        self._stats_tables(req.table_id)
        compiled = compile_match(req.match)
        packets = nbytes = count = 0
        for e in self._select_flows(req.table_id, req.out_port, req.out_group, req.cookie, req.cookie_mask,
                                    compiled):
            count += 1
            if e.count_packets:
                packets += e.packet_count
            if e.count_bytes:
                nbytes += e.byte_count
        return [ofp.AggregateStatsReply(packets & UINT64_MAX, nbytes & UINT64_MAX, count)]

    def _table_stats(self, msg) -> list:
        return [ofp.TableStatsReply([ofp.TableStats(t.table_id, len(t), t.lookup_count, t.matched_count)
                                     for t in self.tables])]

    def _table_features(self, req: ofp.TableFeaturesRequest) -> list:
        if req.body or req.flags & ofp.OFPMPF.REQ_MORE:
            raise SwitchError(OFPET.TABLE_FEATURES_FAILED, OFPTFFC.EPERM,
                              "kumoflow's tables cannot be reconfigured with a table features request")
        return [ofp.TableFeaturesReply([table_features(t.table_id, self.n_tables, t.name, t.max_entries, t.config)
                                        for t in self.tables])]

    def _port_stats(self, req: ofp.PortStatsRequest) -> list:
        now = self.clock()
        if req.port_no == OFPP.ANY:
            ports = [p for _, p in sorted(self.ports.items())]
        else:
            ports = [self.ports[req.port_no]] if req.port_no in self.ports else []
        return [ofp.PortStatsReply([p.stats(now) for p in ports])]

    def _queue_ports(self, port_no: int) -> list[PortBase]:
        if port_no == OFPP.ANY:
            return [p for _, p in sorted(self.ports.items())]
        port = self.ports.get(port_no)
        if port is None:
            raise SwitchError(OFPET.QUEUE_OP_FAILED, OFPQOFC.BAD_PORT, f"no port {port_no:#x}")
        return [port]

    def _queue_stats(self, req: ofp.QueueStatsRequest) -> list:
        now = self.clock()
        body = []
        ports = self._queue_ports(req.port_no)
        for p in ports:
            for qid in sorted(p.queues):
                if req.queue_id != OFPQ_ALL and qid != req.queue_id:
                    continue
                qc = p.queue_counters[qid]
                sec, nsec = split_duration(now - qc.created)
                body.append(ofp.QueueStats(p.port_no, qid, qc.tx_bytes, qc.tx_packets, qc.tx_errors, sec, nsec))
        if req.queue_id != OFPQ_ALL and not body and req.port_no != OFPP.ANY:
            raise SwitchError(OFPET.QUEUE_OP_FAILED, OFPQOFC.BAD_QUEUE,
                              f"port {req.port_no} has no queue {req.queue_id}")
        return [ofp.QueueStatsReply(body)]

    def _queue_get_config(self, req: ofp.QueueGetConfigRequest) -> list:
        port_no = req.port
        ports = self._queue_ports(port_no)
        queues = [ofp.PacketQueue(qid, p.port_no, props) for p in ports for qid, props in p.queue_config()]
        return [ofp.QueueGetConfigReply(port_no, queues)]

    def _group_stats(self, req: ofp.GroupStatsRequest) -> list:
        now = self.clock()
        groups = self.groups.groups
        if req.group_id == OFPG.ALL:
            selected = [g for _, g in sorted(groups.items())]
        else:
            selected = [groups[req.group_id]] if req.group_id in groups else []
        body = []
        for g in selected:
            refs = len(self._group_flows.get(g.group_id, ())) + len(self.groups.referrers(g.group_id))
            body.append(self.groups.stats(g, refs, now))
        return [ofp.GroupStatsReply(body)]

    def _meters_for(self, meter_id: int) -> list:
        meters = self.meters.meters
        if meter_id == OFPM.ALL:
            return [m for _, m in sorted(meters.items())]
        return [meters[meter_id]] if meter_id in meters else []

    def _meter_stats(self, req: ofp.MeterStatsRequest) -> list:
        now = self.clock()
        return [ofp.MeterStatsReply([m.stats(len(self._meter_flows.get(m.meter_id, ())), now)
                                     for m in self._meters_for(req.meter_id)])]

    def _meter_config(self, req: ofp.MeterConfigRequest) -> list:
        return [ofp.MeterConfigReply([m.config() for m in self._meters_for(req.meter_id)])]

    # -- conveniences for tests and tools ---------------------------------------------------------
    def flows(self, table_id: int | None = None) -> list[FlowEntry]:
        """Flow entries (of one table or all), in lookup order."""
        tables = self.tables if table_id is None else [self.tables[table_id]]
        return [e for t in tables for e in t]


def _action_rank(a) -> int:
    try:
        return act._RANK[a.TYPE]
    except KeyError:
        return 99
