"""Hypothesis strategies for OpenFlow messages (shared by the codec tests)."""

import socket
import struct

from hypothesis import strategies as st

from kumoflow import ofp
from kumoflow.ofp.oxm import IPV4, IPV6, MAC


#: every field a Match names: the basic ones and tcp_flags (an experimenter OXM)
NAMED_FIELDS = ofp.FIELDS + ofp.EXPERIMENTER_FIELDS


def uint(bits):
    return st.integers(0, (1 << bits) - 1)


def _value(field):
    if field.kind == MAC:
        return st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":"))
    if field.kind == IPV4:
        return st.binary(min_size=4, max_size=4).map(lambda b: socket.inet_ntop(socket.AF_INET, b))
    if field.kind == IPV6:
        return st.binary(min_size=16, max_size=16).map(lambda b: socket.inet_ntop(socket.AF_INET6, b))
    return uint(8 * field.size)


def _field_value(field):
    plain = _value(field)
    if not field.maskable:
        return plain
    return st.one_of(plain, st.tuples(_value(field), _value(field)))


@st.composite
def matches(draw, max_fields=8):
    chosen = draw(st.lists(st.sampled_from(NAMED_FIELDS), max_size=max_fields, unique_by=lambda f: f.name))
    m = ofp.Match()
    for f in chosen:
        m[f.name] = draw(_field_value(f))
    if draw(st.booleans()):
        # An opaque experimenter OXM: class 0xffff, field 1, 4-byte id + payload.
        payload = draw(st.binary(max_size=8))
        header = (0xFFFF << 16) | (1 << 9) | (4 + len(payload))
        m[(0xFFFF, 1, 0x00002320)] = struct.pack("!II", header, 0x2320) + payload
    return m


@st.composite
def set_fields(draw):
    f = draw(st.sampled_from(NAMED_FIELDS))
    return ofp.SetField(f.name, draw(_value(f)))


simple_actions = st.one_of(
    st.builds(ofp.Output, uint(32), uint(16)),
    st.builds(ofp.CopyTtlOut), st.builds(ofp.CopyTtlIn),
    st.builds(ofp.SetMplsTtl, uint(8)), st.builds(ofp.DecMplsTtl),
    st.builds(ofp.PushVlan, uint(16)), st.builds(ofp.PopVlan),
    st.builds(ofp.PushMpls, uint(16)), st.builds(ofp.PopMpls, uint(16)),
    st.builds(ofp.SetQueue, uint(32)), st.builds(ofp.Group, uint(32)),
    st.builds(ofp.SetNwTtl, uint(8)), st.builds(ofp.DecNwTtl),
    st.builds(ofp.PushPbb, uint(16)), st.builds(ofp.PopPbb),
    set_fields(),
    st.builds(ofp.ExperimenterAction, uint(32), st.sampled_from([b"", bytes(8), b"\1" * 16])),
)
action_lists = st.lists(simple_actions, max_size=5)

instructions = st.one_of(
    st.builds(ofp.GotoTable, uint(8)),
    st.builds(ofp.WriteMetadata, uint(64), uint(64)),
    st.builds(ofp.WriteActions, action_lists),
    st.builds(ofp.ApplyActions, action_lists),
    st.builds(ofp.ClearActions),
    st.builds(ofp.Meter, uint(32)),
    st.builds(ofp.ExperimenterInstruction, uint(32), st.sampled_from([b"", b"\1" * 8])),
)
instruction_lists = st.lists(instructions, max_size=4)

xids = uint(32)
names = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=15)
macs = st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":"))

ports = st.builds(ofp.Port, uint(32), macs, names, uint(32), uint(32), uint(32), uint(32), uint(32),
                  uint(32), uint(32), uint(32))
buckets = st.builds(ofp.Bucket, action_lists, uint(16), uint(32), uint(32))
bands = st.one_of(
    st.builds(ofp.MeterBandDrop, uint(32), uint(32)),
    st.builds(ofp.MeterBandDscpRemark, uint(32), uint(32), uint(8)),
    st.builds(ofp.MeterBandExperimenter, uint(32), uint(32), uint(32), st.sampled_from([b"", b"\2" * 8])),
)
queues = st.builds(ofp.PacketQueue, uint(32), uint(32), st.lists(st.one_of(
    st.builds(ofp.QueuePropMinRate, uint(16)), st.builds(ofp.QueuePropMaxRate, uint(16)),
    st.builds(ofp.QueuePropExperimenter, uint(32), st.sampled_from([b"", b"\3" * 8]))), max_size=3))
pairs = st.tuples(uint(32), uint(32))

messages = st.one_of(
    st.builds(ofp.Hello, st.frozensets(st.integers(1, 100), min_size=1), xid=xids),
    st.builds(ofp.ErrorMsg, uint(15), uint(16), st.binary(max_size=64), xid=xids),
    st.builds(ofp.ErrorMsg, st.just(0xFFFF), uint(16), st.binary(max_size=64), uint(32), xid=xids),
    st.builds(ofp.EchoRequest, st.binary(max_size=64), xid=xids),
    st.builds(ofp.EchoReply, st.binary(max_size=64), xid=xids),
    st.builds(ofp.Experimenter, uint(32), uint(32), st.binary(max_size=64), xid=xids),
    st.builds(ofp.FeaturesRequest, xid=xids),
    st.builds(ofp.FeaturesReply, uint(64), uint(32), uint(8), uint(8), uint(32), uint(32), xid=xids),
    st.builds(ofp.GetConfigRequest, xid=xids),
    st.builds(ofp.GetConfigReply, uint(16), uint(16), xid=xids),
    st.builds(ofp.SetConfig, uint(16), uint(16), xid=xids),
    st.builds(ofp.PacketIn, uint(32), uint(16), uint(8), uint(8), uint(64), matches(), st.binary(max_size=128),
              xid=xids),
    st.builds(ofp.FlowRemoved, uint(64), uint(16), uint(8), uint(8), uint(32), uint(32), uint(16), uint(16),
              uint(64), uint(64), matches(), xid=xids),
    st.builds(ofp.PortStatus, uint(8), ports, xid=xids),
    st.builds(ofp.PacketOut, uint(32), uint(32), action_lists, st.binary(max_size=128), xid=xids),
    st.builds(ofp.FlowMod, uint(64), uint(64), uint(8), uint(8), uint(16), uint(16), uint(16), uint(32),
              uint(32), uint(32), uint(16), matches(), instruction_lists, xid=xids),
    st.builds(ofp.GroupMod, uint(16), uint(8), uint(32), st.lists(buckets, max_size=3), xid=xids),
    st.builds(ofp.PortMod, uint(32), macs, uint(32), uint(32), uint(32), xid=xids),
    st.builds(ofp.TableMod, uint(8), uint(32), xid=xids),
    st.builds(ofp.BarrierRequest, xid=xids),
    st.builds(ofp.BarrierReply, xid=xids),
    st.builds(ofp.QueueGetConfigRequest, uint(32), xid=xids),
    st.builds(ofp.QueueGetConfigReply, uint(32), st.lists(queues, max_size=3), xid=xids),
    st.builds(ofp.RoleRequest, uint(32), uint(64), xid=xids),
    st.builds(ofp.RoleReply, uint(32), uint(64), xid=xids),
    st.builds(ofp.GetAsyncRequest, xid=xids),
    st.builds(ofp.GetAsyncReply, pairs, pairs, pairs, xid=xids),
    st.builds(ofp.SetAsync, pairs, pairs, pairs, xid=xids),
    st.builds(ofp.MeterMod, uint(16), uint(16), uint(32), st.lists(bands, max_size=3), xid=xids),
)
