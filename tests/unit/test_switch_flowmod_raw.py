"""FLOW_MOD straight from the wire (Datapath.flow_mod_raw, flowmatch.compile_raw)
against the reference path (ofp.parse + Datapath.handle).

The raw path must either decline (return False, nothing changed) or leave
the datapath exactly as the reference path does; errors always come from
the reference path. These tests feed both the same flow-mods -- valid ones,
invalid ones, and the bytes of valid ones mangled -- and compare outcomes
and the whole flow state, then check the channel takes the raw path,
answers errors as before, and never applies a flow-mod twice when the
direct path fails.
"""

from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kumoflow import ofp
from kumoflow.ofp.consts import OFPFC, OFPFF, OFPGT, OFPMC, OFPMF, OFPTT
from kumoflow.switch import flowmatch as fmatch
from kumoflow.switch.channel import Channels
from kumoflow.switch.datapath import Datapath, SwitchError
from kumoflow.switch.flowmatch import compile_match, compile_raw, compile_raw_key
from kumoflow.switch.port import MemoryPort

from ofp_strategies import instruction_lists, matches, uint
from test_switch_helpers import Clock

IP, IPV6, ARP, MPLS, PBB = 0x0800, 0x86DD, 0x0806, 0x8847, 0x88E7


# --- strategies: flow-mods that mostly pass validation, and their bytes mangled ------------------

def _mask(width: int):
    return st.one_of(st.just((1 << width) - 1), st.integers(0, width).map(lambda n: ((1 << n) - 1) << (width - n)),
                     st.integers(0, (1 << width) - 1))


def _masked_value(width: int, maskable: bool, text=None):
    """(value, mask) or value: values within the mask most of the time."""
    def build(vm):
        v, m, keep, masked = vm
        v = v & m if keep else v
        conv = text or (lambda x: x)
        return (conv(v), conv(m)) if masked else conv(v)
    masked = st.booleans() if maskable else st.just(False)
    return st.tuples(st.integers(0, (1 << width) - 1), _mask(width), st.integers(0, 9).map(bool), masked).map(build)


def _ipv4(x: int) -> str:
    return ".".join(str(b) for b in x.to_bytes(4, "big"))


def _mac(x: int) -> str:
    return x.to_bytes(6, "big").hex(":")


@st.composite
def plausible_matches(draw):
    """Matches built along the prerequisites (with a chance of breaking them)."""
    m = ofp.Match()
    fields = []
    if draw(st.booleans()):
        fields.append(("in_port", draw(st.integers(1, 70000))))
    if draw(st.integers(0, 3)) == 0:
        fields.append(("metadata", draw(_masked_value(64, True))))
    if draw(st.integers(0, 2)) == 0:
        fields.append(("eth_dst", draw(_masked_value(48, True, _mac))))
    if draw(st.integers(0, 3)) == 0:
        fields.append(("eth_src", draw(_masked_value(48, True, _mac))))
    if draw(st.integers(0, 3)) == 0:
        vid = draw(st.sampled_from([0, 0x1000 | 5, 0x1000, (0x1000, 0x1000), (0x1005, 0x1FFF), 0x2000]))
        fields.append(("vlan_vid", vid))
        if draw(st.booleans()):
            fields.append(("vlan_pcp", draw(st.integers(0, 8))))
    eth_type = draw(st.sampled_from([None, IP, IP, IP, IPV6, ARP, MPLS, PBB, 0x88CC]))
    if eth_type is not None:
        # now and then another ethertype than the fields below need
        fields.append(("eth_type", eth_type if draw(st.integers(0, 7)) else
                       draw(st.sampled_from([IP, IPV6, ARP, MPLS, PBB]))))
    if eth_type in (IP, IPV6, None):
        if draw(st.integers(0, 3)) == 0:
            fields.append(("ip_dscp", draw(st.integers(0, 64))))
        proto = draw(st.sampled_from([None, 6, 17, 1, 58, 132, 47]))
        if proto is not None:
            fields.append(("ip_proto", proto if draw(st.integers(0, 7)) else
                           draw(st.sampled_from([6, 17, 1, 58, 132]))))
        if eth_type != IPV6 and draw(st.booleans()):
            fields.append(("ipv4_dst", draw(_masked_value(32, True, _ipv4))))
        if eth_type != IP and draw(st.integers(0, 3)) == 0:
            fields.append(("ipv6_src", (f"2001:db8::{draw(st.integers(0, 0xffff)):x}", "ffff:ffff::")))
        l4 = {6: "tcp", 17: "udp", 132: "sctp"}.get(proto)
        if l4 and draw(st.booleans()):
            fields.append((f"{l4}_dst", draw(st.integers(0, 0xFFFF))))
        if (proto == 6 or proto is None) and draw(st.integers(0, 3)) == 0:
            fields.append(("tcp_flags", draw(st.one_of(_masked_value(12, True),          # (an experimenter OXM)
                                                       st.sampled_from([0x1000, (0x1000, 0x1000), (1, 0xFFFF)])))))
        if proto == 1 and draw(st.booleans()):
            fields.append(("icmpv4_type", draw(st.integers(0, 255))))
        if proto == 58 and draw(st.booleans()):
            t = draw(st.sampled_from([135, 136, 1]))
            fields.append(("icmpv6_type", t))
            if draw(st.booleans()):
                fields.append(("ipv6_nd_target", "fe80::1"))
    elif eth_type == ARP:
        fields.append(("arp_tpa", draw(_masked_value(32, True, _ipv4))))
        if draw(st.booleans()):
            fields.append(("arp_op", draw(st.integers(0, 4))))
    elif eth_type == MPLS:
        fields.append(("mpls_label", draw(st.integers(0, 0x1FFFFF))))
    elif eth_type == PBB:
        fields.append(("pbb_isid", draw(_masked_value(24, True))))
    if draw(st.integers(0, 5)) == 0:
        fields.append(("tunnel_id", draw(_masked_value(64, True))))
    order = draw(st.permutations(range(len(fields))))
    for i in order:
        name, value = fields[i]
        m[name] = value
    return m


def _outputs():
    return st.lists(st.builds(ofp.Output, st.sampled_from([1, 2, 3, 0xFFFFFFFD, 0xFFFFFFFB, 0xFFFFFFF9, 0,
                                                           0xFFFFFFFF]), st.sampled_from([0xFFE5, 0, 128])),
                    max_size=2)


plausible_actions = st.lists(st.one_of(
    st.builds(ofp.Output, st.sampled_from([1, 2, 3, 0xFFFFFFFD, 0xFFFFFFFB, 0xFFFFFFF9, 0, 0xFFFFFFFF]),
              st.sampled_from([0xFFE5, 0, 128])),
    st.builds(ofp.Group, st.sampled_from([1, 7])),
    st.builds(ofp.SetQueue, st.sampled_from([0, 1, 9])),
    st.builds(ofp.PushVlan, st.sampled_from([0x8100, 0x88A8, 0x0800])),
    st.builds(ofp.PopVlan), st.builds(ofp.DecNwTtl), st.builds(ofp.CopyTtlOut),
    st.builds(ofp.PushMpls, st.sampled_from([0x8847, 0x0800])),
    st.builds(ofp.SetField, st.sampled_from(["eth_dst", "ipv4_src", "tcp_dst", "vlan_vid"]),
              st.sampled_from(["02:00:00:00:00:09", "10.0.0.9", 80, 0x1005])),
), max_size=3)

plausible_instructions = st.lists(st.one_of(
    st.builds(ofp.ApplyActions, plausible_actions),
    st.builds(ofp.ApplyActions, _outputs()),
    st.builds(ofp.WriteActions, plausible_actions),
    st.builds(ofp.GotoTable, st.sampled_from([0, 1, 5, 63, 64])),
    st.builds(ofp.WriteMetadata, uint(64), uint(64)),
    st.builds(ofp.ClearActions),
    st.builds(ofp.Meter, st.sampled_from([1, 2])),
), max_size=3)


@st.composite
def flow_mods(draw, pool=None):
    """Flow-mods; their instructions from `pool` (a list of instruction lists)
    when given, so that flows share instruction bytes."""
    match = draw(st.one_of(plausible_matches(), plausible_matches(), matches(max_fields=4)))
    if pool:
        instructions = draw(st.sampled_from(pool))
    else:
        instructions = draw(st.one_of(plausible_instructions, plausible_instructions, instruction_lists))
    flags = draw(st.sampled_from([0, 0, 0, OFPFF.SEND_FLOW_REM, OFPFF.CHECK_OVERLAP, OFPFF.RESET_COUNTS,
                                  OFPFF.NO_PKT_COUNTS | OFPFF.NO_BYT_COUNTS]))
    if draw(st.booleans()):          # an ADD the raw path may take
        command, table_id, buffer_id = OFPFC.ADD, draw(st.sampled_from([0, 0, 1])), ofp.OFP_NO_BUFFER
    else:
        command = draw(st.sampled_from([OFPFC.ADD] * 3 + [OFPFC.MODIFY, OFPFC.MODIFY_STRICT, OFPFC.DELETE,
                                                          OFPFC.DELETE_STRICT, 7]))
        table_id = draw(st.sampled_from([0, 0, 1, 63, 64, OFPTT.ALL]))
        buffer_id = draw(st.sampled_from([ofp.OFP_NO_BUFFER] * 5 + [7]))
        flags |= draw(st.sampled_from([0, 0, 1 << 7]))
    return ofp.FlowMod(cookie=draw(st.sampled_from([0, 1, 0xFFFFFFFFFFFFFFFF])), table_id=table_id,
                       command=command, idle_timeout=draw(st.sampled_from([0, 0, 10])),
                       hard_timeout=draw(st.sampled_from([0, 0, 30])),
                       priority=draw(st.sampled_from([0, 1, 100, 100, 0x8000, 0xFFFF])), buffer_id=buffer_id,
                       flags=int(flags), match=match, instructions=instructions)


def _pack(fm: ofp.FlowMod) -> bytes | None:
    try:
        return fm.pack()
    except (ValueError, TypeError, struct.error, OverflowError):
        return None


@st.composite
def mangled(draw, raw: bytes) -> bytes:
    """raw with a few bytes changed, or cut, or grown (length field kept right)."""
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.integers(0, 3))
        if kind <= 1 and len(data) > 8:
            i = draw(st.integers(8, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        elif kind == 2 and len(data) > 8:
            del data[draw(st.integers(8, len(data) - 1)):]
        else:
            data += bytes(draw(st.sampled_from([4, 8, 16])))
    struct.pack_into("!H", data, 2, len(data))
    return bytes(data)


# --- the two paths --------------------------------------------------------------------------------

def _datapath() -> Datapath:
    dp = Datapath(1, clock=Clock())
    for i in (1, 2, 3):
        port = MemoryPort(i, f"p{i}", f"02:00:00:00:01:{i:02x}")
        port.add_queue(1)
        dp.add_port(port)
    dp.handle(ofp.GroupMod(ofp.OFPGC.ADD, OFPGT.ALL, 1, [ofp.Bucket([ofp.Output(2)])]))
    dp.handle(ofp.MeterMod(OFPMC.ADD, OFPMF.PKTPS, 1, [ofp.MeterBandDrop(100)]))
    return dp


def _reference(dp: Datapath, raw: bytes):
    try:
        dp.handle(ofp.parse(raw))
    except (ofp.CodecError, SwitchError) as exc:
        return (int(exc.type), int(exc.code))
    return None


def _raw_path(dp: Datapath, raw: bytes):
    before = _state(dp)
    staged = dp.stage_flow_mod_raw(raw)
    assert _state(dp) == before, "stage_flow_mod_raw changed the datapath"
    if staged is not None:
        dp.commit_flow_mod_raw(staged)
        return None
    return _reference(dp, raw)


def _state(dp: Datapath) -> list:
    out = [dp.generation]
    for e in dp.flows():
        p = e.program
        out.append((e.table_id, e.priority, e.fields, e.cookie, e.idle_timeout, e.hard_timeout, e.flags, e.match,
                    e.instructions, p.meter_id, p.apply, p.clear, p.write, p.metadata, p.metadata_mask, p.goto,
                    e.meter_id, e.groups, e.out_ports, e.packet_count, e.byte_count, e.created, e.is_table_miss,
                    e.count_packets, e.count_bytes, e.reported_packets, e.reported_bytes))
    return out


def _compare(raws: list[bytes]) -> None:
    a, b = _datapath(), _datapath()
    for raw in raws:
        assert _raw_path(a, raw) == _reference(b, raw), raw.hex()
        assert _state(a) == _state(b), raw.hex()
        # flow stats and FLOW_REMOVED see the match and instructions as sent, to the byte
        req = ofp.FlowStatsRequest(table_id=OFPTT.ALL)
        replies = a.handle(req)
        assert replies == b.handle(req)
        assert [r.pack() for r in replies] == [r.pack() for r in b.handle(req)]
    removed = []
    for dp in (a, b):
        events: list = []
        dp.on_async = events.append
        dp.handle(ofp.FlowMod(command=OFPFC.DELETE, table_id=OFPTT.ALL))
        removed.append(events)
    assert removed[0] == removed[1]
    assert [m.pack() for m in removed[0]] == [m.pack() for m in removed[1]]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_raw_path_is_the_reference_path(data):
    clean = st.sampled_from([[], [ofp.ApplyActions([ofp.Output(1)])], [ofp.ApplyActions([ofp.Output(2)]),
                                                                        ofp.GotoTable(5)],
                             [ofp.WriteActions([ofp.Output(3)]), ofp.WriteMetadata(1, 0xFF)],
                             [ofp.Meter(1), ofp.ApplyActions([ofp.Group(1)])], [ofp.ClearActions()],
                             [ofp.ApplyActions([ofp.PushVlan(), ofp.Output(0xFFFFFFFD)])]])
    pool = data.draw(st.lists(st.one_of(clean, clean, plausible_instructions, instruction_lists), min_size=1,
                              max_size=3))
    if data.draw(st.booleans()):
        # valid or not depending on the match (set-field prerequisites, pop VLAN, IP TTL)
        pool.append(data.draw(st.sampled_from([
            [ofp.ApplyActions([ofp.SetField("ipv4_src", "10.0.0.9"), ofp.Output(1)])],
            [ofp.WriteActions([ofp.SetField("tcp_dst", 80)])],
            [ofp.ApplyActions([ofp.PopVlan()])], [ofp.ApplyActions([ofp.DecNwTtl()])]])))
    mods = data.draw(st.lists(flow_mods(pool), min_size=1, max_size=8))
    raws = [r for r in map(_pack, mods) if r is not None]
    _compare(raws + raws[:2])          # adds of identical flows: replacement


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mangled_flow_mods_get_the_reference_errors(data):
    raws = []
    for fm in data.draw(st.lists(flow_mods(), min_size=1, max_size=4)):
        raw = _pack(fm)
        if raw is not None:
            raws.append(raw)
            raws.append(data.draw(mangled(raw)))
    _compare(raws)


def test_the_raw_path_takes_the_common_flow_mods():
    dp = _datapath()
    mods = [
        ofp.FlowMod(priority=10, match=ofp.Match(in_port=1), instructions=[ofp.ApplyActions([ofp.Output(2)])]),
        ofp.FlowMod(priority=11, match=ofp.Match(eth_type=IP, ipv4_dst=("10.0.0.0", "255.0.0.0"), ip_proto=6,
                                                 tcp_dst=80), instructions=[]),
        ofp.FlowMod(priority=12, match=ofp.Match(eth_type=IP, ip_proto=17, udp_src=53),
                    instructions=[ofp.ApplyActions([ofp.Group(1)]), ofp.GotoTable(3)]),
        ofp.FlowMod(priority=13, match=ofp.Match(vlan_vid=0x1005, vlan_pcp=3), flags=OFPFF.CHECK_OVERLAP,
                    instructions=[ofp.ApplyActions([ofp.PopVlan(), ofp.Output(1)])]),
        ofp.FlowMod(priority=14, match=ofp.Match(eth_src=("02:00:00:00:00:00", "ff:ff:ff:00:00:00")),
                    instructions=[ofp.Meter(1), ofp.WriteActions([ofp.Output(3)])]),
    ]
    for fm in mods:
        assert dp.flow_mod_raw(fm.pack()), fm
    assert all(type(e._match) is bytes and type(e._instructions) is bytes for e in dp.flows())
    assert [e.match for e in dp.flows()] == [fm.match for fm in reversed(mods)]
    assert [e.instructions for e in dp.flows()] == [fm.instructions for fm in reversed(mods)]


@pytest.mark.parametrize("fm", [
    ofp.FlowMod(command=OFPFC.MODIFY, match=ofp.Match(in_port=1)),
    ofp.FlowMod(buffer_id=3, match=ofp.Match(in_port=1)),
    ofp.FlowMod(match=ofp.Match(tcp_dst=80)),                                        # BAD_PREREQ
    ofp.FlowMod(match=ofp.Match(in_port=1, eth_type=IP), instructions=[ofp.ApplyActions([ofp.Group(9)])]),
    ofp.FlowMod(match=ofp.Match(in_port=1), instructions=[ofp.Meter(9)]),
    ofp.FlowMod(match=ofp.Match(in_port=1), instructions=[ofp.GotoTable(0)]),
    ofp.FlowMod(match=ofp.Match(in_port=1), instructions=[ofp.ApplyActions([ofp.PopVlan()])]),
    ofp.FlowMod(table_id=64, match=ofp.Match(in_port=1)),
    ofp.FlowMod(flags=1 << 9, match=ofp.Match(in_port=1)),
])
def test_the_raw_path_declines_what_it_does_not_apply(fm):
    dp = _datapath()
    before = _state(dp)
    assert not dp.flow_mod_raw(fm.pack())
    assert _state(dp) == before


def test_instruction_results_are_reused_only_when_context_free():
    dp = _datapath()
    out = [ofp.ApplyActions([ofp.Output(2)])]
    assert dp.flow_mod_raw(ofp.FlowMod(priority=1, match=ofp.Match(in_port=1), instructions=out).pack())
    assert dp.flow_mod_raw(ofp.FlowMod(priority=2, match=ofp.Match(in_port=2), instructions=out).pack())
    e1, e2 = dp.flows()
    assert e1.program is e2.program and e1._instructions is e2._instructions
    # a set-field depends on the match: valid for one, MATCH_INCONSISTENT for the other
    sf = [ofp.ApplyActions([ofp.SetField("ipv4_src", "10.0.0.1")])]
    assert dp.flow_mod_raw(ofp.FlowMod(priority=3, match=ofp.Match(eth_type=IP), instructions=sf).pack())
    assert not dp.flow_mod_raw(ofp.FlowMod(priority=4, match=ofp.Match(eth_type=ARP), instructions=sf).pack())
    # a group that goes away: the next flow-mod is checked again
    grp = [ofp.ApplyActions([ofp.Group(1)])]
    assert dp.flow_mod_raw(ofp.FlowMod(priority=5, match=ofp.Match(in_port=1), instructions=grp).pack())
    dp.handle(ofp.GroupMod(ofp.OFPGC.DELETE, group_id=1))
    assert not dp.flow_mod_raw(ofp.FlowMod(priority=6, match=ofp.Match(in_port=1), instructions=grp).pack())


# --- compile_raw against compile_match ---------------------------------------------------------------

def _match_bytes(m: ofp.Match) -> bytes | None:
    try:
        return m.pack()
    except ValueError:
        return None


def _check_compile(m: ofp.Match) -> None:
    raw = _match_bytes(m)
    if raw is None:
        return
    got = compile_raw(raw, 0, len(raw))
    located = compile_raw_key(raw, 0, len(raw))
    assert (got is None) == (located is None)
    try:
        decoded, end = ofp.oxm.unpack_match(raw, 0, len(raw))
        compiled = compile_match(decoded)
        want = compiled.fields
    except (ofp.CodecError, SwitchError):
        want = None
    if got is not None:
        assert want is not None and got == (want, end), m
        # as the classifier files it, and as a flow entry keeps it: the one shape object
        assert located == (compiled.shape, compiled.key), m
        assert located[0] is compiled.shape
        assert fmatch.shape_key(want) == located
        assert fmatch.fields_of_key(*located) == want
    elif want is not None:
        # everything compile_match takes is taken, except non-basic OXMs
        assert any(type(k) is not str for k in m), m


@settings(max_examples=500, deadline=None)
@given(st.one_of(plausible_matches(), matches(max_fields=6)))
def test_compile_raw_is_compile_match(m):
    _check_compile(m)


@settings(max_examples=200, deadline=None)
@given(st.one_of(plausible_matches(), matches(max_fields=6)))
def test_compile_raw_without_layout_plans(m):
    saved = fmatch.MAX_PLANS, dict(fmatch._PLANS), dict(fmatch._QUICK)
    fmatch.MAX_PLANS = 0
    fmatch._PLANS.clear()
    fmatch._QUICK.clear()
    try:
        _check_compile(m)
    finally:
        fmatch.MAX_PLANS = saved[0]
        fmatch._PLANS.update(saved[1])
        fmatch._QUICK.update(saved[2])


# --- through a channel ----------------------------------------------------------------------------

def test_channel_applies_flow_mods_directly_and_answers_errors_as_before():
    async def main():
        dp = _datapath()
        channels = Channels(dp)
        [bound] = await channels.listen("ptcp:0:127.0.0.1")
        reader, writer = await asyncio.open_connection("127.0.0.1", bound.port)
        conn = ofp.Connection()
        writer.write(conn.data_to_send())

        good = ofp.FlowMod(priority=5, match=ofp.Match(in_port=1), instructions=[ofp.ApplyActions([ofp.Output(2)])],
                           xid=100).pack()
        prereq = ofp.FlowMod(priority=5, match=ofp.Match(tcp_dst=80), xid=101).pack()
        short_oxm = bytearray(ofp.FlowMod(priority=6, match=ofp.Match(in_port=1), xid=102).pack())
        short_oxm[55] = 3                                        # in_port OXM claims 3 bytes
        bad_barrier = struct.pack("!BBHI", 4, 20, 12, 104) + bytes(4)
        stream = (good + prereq + bytes(short_oxm) + struct.pack("!BBHI", 4, 20, 8, 103) + bad_barrier)
        replies = []
        writer.write(stream)
        while len([m for m in replies if isinstance(m, ofp.Message) and not isinstance(m, ofp.Hello)]) < 4:
            data = await asyncio.wait_for(reader.read(65536), 5)
            assert data
            replies.extend(conn.receive_data(data))
        msgs = [m for m in replies if isinstance(m, ofp.Message) and not isinstance(m, ofp.Hello)]
        errors = [m for m in msgs if isinstance(m, ofp.ErrorMsg)]
        assert [(e.xid, e.type, e.code) for e in errors] == [
            (101, ofp.OFPET.BAD_MATCH, ofp.OFPBMC.BAD_PREREQ),
            (102, ofp.OFPET.BAD_MATCH, ofp.OFPBMC.BAD_LEN),
            (104, ofp.OFPET.BAD_REQUEST, ofp.OFPBRC.BAD_LEN)]
        assert errors[0].data == prereq[:64] and errors[1].data == bytes(short_oxm)[:64]
        assert [m.xid for m in msgs if isinstance(m, ofp.BarrierReply)] == [103]
        [entry] = dp.flows()
        assert type(entry._match) is bytes                      # it went the direct way
        assert entry.match == ofp.Match(in_port=1)
        writer.close()
        await channels.close()

    asyncio.run(asyncio.wait_for(main(), 30))


class _FailingDatapath(Datapath):
    """A datapath whose direct FLOW_MOD path raises in one of its halves
    (`fail`: "stage" or "commit", after the commit has changed the table),
    counting the flow-mods the ordinary path takes."""

    def __init__(self, fail: str) -> None:
        super().__init__(1, clock=Clock())
        self.fail = fail
        self.ordinary = 0

    def _flow_mod(self, fm):
        self.ordinary += 1
        return super()._flow_mod(fm)

    def stage_flow_mod_raw(self, raw):
        staged = super().stage_flow_mod_raw(raw)
        if self.fail == "stage":
            raise RuntimeError("stage failed")
        return staged

    def commit_flow_mod_raw(self, staged):
        super().commit_flow_mod_raw(staged)
        if self.fail == "commit":
            raise RuntimeError("commit failed after changing the table")


def _through_channel(dp: Datapath, stream: bytes, until_xid: int) -> list:
    """Send `stream` to a channel of dp; the messages answered, up to the one of xid until_xid."""
    async def main():
        channels = Channels(dp)
        [bound] = await channels.listen("ptcp:0:127.0.0.1")
        reader, writer = await asyncio.open_connection("127.0.0.1", bound.port)
        conn = ofp.Connection()
        writer.write(conn.data_to_send() + stream)
        msgs: list = []
        while not any(getattr(m, "xid", None) == until_xid for m in msgs):
            data = await asyncio.wait_for(reader.read(65536), 5)
            assert data
            msgs.extend(m for m in conn.receive_data(data)
                        if isinstance(m, ofp.Message) and not isinstance(m, ofp.Hello))
        writer.close()
        await channels.close()
        return msgs

    return asyncio.run(asyncio.wait_for(main(), 30))


@pytest.mark.parametrize("fail", ["stage", "commit"])
def test_a_failing_direct_path_never_applies_a_flow_mod_twice(fail):
    dp = _FailingDatapath(fail)
    generation = dp.generation
    fms = [ofp.FlowMod(priority=5, match=ofp.Match(in_port=port), instructions=[ofp.ApplyActions([ofp.Output(2)])],
                       xid=200 + port) for port in (1, 2)]
    msgs = _through_channel(dp, b"".join(fm.pack() for fm in fms) + ofp.BarrierRequest(xid=210).pack(), 210)
    errors = [(m.xid, m.type, m.code) for m in msgs if isinstance(m, ofp.ErrorMsg)]
    assert len(dp.flows()) == 2 and dp.generation == generation + 2
    if fail == "stage":         # nothing had changed: the ordinary path applied them
        assert dp.ordinary == 2 and errors == []
        assert all(type(e._match) is not bytes for e in dp.flows())
    else:                       # applied once each, the failures reported, not applied again
        assert dp.ordinary == 0
        assert errors == [(201, ofp.OFPET.BAD_REQUEST, ofp.OFPBRC.EPERM), (202, ofp.OFPET.BAD_REQUEST,
                                                                            ofp.OFPBRC.EPERM)]
    assert [m.xid for m in msgs if isinstance(m, ofp.BarrierReply)] == [210]


def test_a_wire_match_packs_as_its_fields_would():
    dp = _datapath()
    match = ofp.Match(in_port=1, eth_dst=("02:00:00:00:00:00", "ff:ff:ff:00:00:00"))
    raw = bytearray(ofp.FlowMod(priority=1, match=match).pack())
    raw[-4:] = b"\x01\x02\x03\x04"            # padding after the OXMs: not echoed
    assert dp.flow_mod_raw(bytes(raw))
    [entry] = dp.flows()
    got = entry.match
    assert got == match and got.pack() == match.pack()
    got["in_port"] = 2                          # changed: packed from its fields
    assert got.pack() == ofp.Match(in_port=2, eth_dst=("02:00:00:00:00:00", "ff:ff:ff:00:00:00")).pack()
    assert entry.match == match                 # the entry's own is untouched
