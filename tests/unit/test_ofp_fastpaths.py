"""The codec's fast paths give what the plain code they stand in for gives.

For speed the codec has a second way of doing a few things: messages that
write their header and body in one `pack`, fixed-layout actions with a
pack and unpack written out for their fields, makers and builders that
build an object without calling its class, a hello that keeps its version
bitmap, a shortcut in `parse` to the concrete multipart class's decoder,
and decoders that read the usual shape (one bucket's counters, an output
action) in one go. Each is checked here against the general way.
"""

import dataclasses
import inspect
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kumoflow import ofp
from kumoflow.ofp import actions as ofp_actions
from kumoflow.ofp import base, messages as ofp_messages, multipart as mp
from kumoflow.ofp.base import _BUILD, _MAKE, HEADER, Message

from ofp_strategies import action_lists, messages, simple_actions, uint, xids

FUZZ = settings(max_examples=300, deadline=None)


def _general_pack(msg: Message) -> bytes:
    """Message.pack's way: the header, then pack_body (Hello: its own version)."""
    body = msg.pack_body()
    version = msg.version if isinstance(msg, ofp.Hello) else ofp.OFP_VERSION
    return HEADER.pack(version, msg.msg_type, 8 + len(body), msg.xid) + body


multipart_messages = st.one_of(
    st.builds(ofp.DescRequest, flags=uint(16), xid=xids),
    st.builds(ofp.TableStatsRequest, flags=uint(16), xid=xids),
    st.builds(ofp.PortDescRequest, flags=uint(16), xid=xids),
    st.builds(ofp.PortStatsRequest, uint(32), flags=uint(16), xid=xids),
    st.builds(ofp.GroupStatsRequest, uint(32), flags=uint(16), xid=xids),
    st.builds(ofp.MeterStatsRequest, uint(32), flags=uint(16), xid=xids),
    st.builds(ofp.MeterConfigRequest, uint(32), flags=uint(16), xid=xids),
    st.builds(ofp.QueueStatsRequest, uint(32), uint(32), flags=uint(16), xid=xids),
    st.builds(ofp.FlowStatsRequest, uint(8), uint(32), uint(32), uint(64), uint(64), flags=uint(16), xid=xids),
    st.builds(ofp.AggregateStatsRequest, uint(8), uint(32), uint(32), uint(64), uint(64), flags=uint(16),
              xid=xids),
    st.builds(ofp.TableStatsReply, st.lists(st.builds(ofp.TableStats, uint(8), uint(32), uint(64), uint(64)),
                                            max_size=3), flags=uint(16), xid=xids),
    st.builds(ofp.GroupStatsReply, st.lists(st.builds(
        ofp.GroupStats, uint(32), uint(32), uint(64), uint(64), uint(32), uint(32),
        st.lists(st.builds(ofp.BucketCounter, uint(64), uint(64)), max_size=3)), max_size=3),
        flags=uint(16), xid=xids),
    st.builds(ofp.MeterStatsReply, st.lists(st.builds(
        ofp.MeterStats, uint(32), uint(32), uint(64), uint(64), uint(32), uint(32),
        st.lists(st.builds(ofp.MeterBandStats, uint(64), uint(64)), max_size=3)), max_size=3),
        flags=uint(16), xid=xids),
)


@FUZZ
@given(st.one_of(messages, multipart_messages))
def test_every_pack_gives_the_header_and_pack_body(msg):
    assert msg.pack() == _general_pack(msg)
    assert ofp.parse(msg.pack()) == msg


def _too_big(cls, **kw):
    with pytest.raises(ValueError, match="exceeds OpenFlow's 65535-byte limit"):
        cls(**kw).pack()


def test_whole_message_packs_refuse_what_message_pack_refuses():
    big = bytes(70000)
    _too_big(ofp.ErrorMsg, type=1, code=2, data=big)
    _too_big(ofp.ErrorMsg, type=0xFFFF, code=2, data=big, experimenter=5)
    _too_big(ofp.EchoRequest, data=big)
    _too_big(ofp.Experimenter, experimenter=1, data=big)
    _too_big(ofp.PacketIn, data=big)
    _too_big(ofp.PacketOut, data=big)
    _too_big(ofp.FlowMod, instructions=[ofp.ApplyActions([ofp.Output(1)] * 3000)] * 2)
    _too_big(ofp.GroupMod, command=0, buckets=[ofp.Bucket([ofp.Output(1)] * 3000)] * 2)
    _too_big(ofp.MeterMod, command=0, bands=[ofp.MeterBandDrop(1)] * 5000)
    _too_big(ofp.FlowStatsRequest, match=ofp.Match({(0xFFFF, 1, 1): bytes(65480)}))


def _error(fn) -> Exception:
    try:
        fn()
    except Exception as exc:    # noqa: BLE001 - the point is which one
        return exc
    raise AssertionError(f"{fn} raised nothing")


def _same_error(fast, general):
    mine, theirs = _error(fast), _error(general)
    assert (type(mine), str(mine)) == (type(theirs), str(theirs))


@pytest.mark.parametrize("msg", [
    ofp.PacketOut(actions=[ofp.Output(1)] * 5000),          # actions_len past 16 bits: a struct error
    ofp.FlowMod(cookie=-1, match=ofp.Match(in_port="x")),    # two bad values: the one the general way meets first
    ofp.PacketIn(match=ofp.Match(nope=1), data="text"),
    ofp.ErrorMsg(1, 70000),
    ofp.SetAsync((1, 2, 3)),
    ofp.TableMod(256),
    ofp.EchoRequest("text"),
    ofp.GroupMod(0, buckets=[ofp.Bucket([ofp.Output(-1)])]),
    ofp.FlowStatsRequest(table_id=300),
    ofp.Hello(frozenset({4}), elements=None),
], ids=lambda m: type(m).__name__)
def test_bad_values_raise_what_the_general_way_raises(msg):
    _same_error(msg.pack, lambda: _general_pack(msg))


def test_a_class_with_a_body_of_its_own_gets_the_general_pack():
    @dataclasses.dataclass(slots=True)
    class Tagged(ofp.BarrierRequest):
        tag: bytes = b"tag!"

        def pack_body(self) -> bytes:
            return self.tag

    @dataclasses.dataclass(slots=True)
    class Louder(ofp.EchoRequest):
        def pack_body(self) -> bytes:
            return self.data.upper()

    assert Tagged.pack is Message.pack and Louder.pack is Message.pack
    assert Tagged(xid=7).pack() == HEADER.pack(4, ofp.OFPT.BARRIER_REQUEST, 12, 7) + b"tag!"
    assert Louder(b"hi", xid=1).pack() == HEADER.pack(4, ofp.OFPT.ECHO_REQUEST, 10, 1) + b"HI"
    # a class that only inherits keeps the fast one
    assert ofp.BarrierReply.pack is not Message.pack and ofp.EchoReply.pack is ofp.EchoRequest.pack


def _dataclasses_of_ofp():
    seen = []
    for module in (ofp_messages, mp, ofp_actions, ofp.instructions, ofp.structs, ofp.table_features):
        for obj in vars(module).values():
            if (inspect.isclass(obj) and dataclasses.is_dataclass(obj) and obj.__module__ == module.__name__
                    and obj not in seen):
                seen.append(obj)
    return seen


@pytest.mark.parametrize("cls", _dataclasses_of_ofp(), ids=lambda c: c.__name__)
def test_a_maker_builds_what_its_class_builds(cls):
    make = _MAKE[cls]
    params = dataclasses.fields(cls)
    if cls.__dataclass_params__.frozen:
        assert make is cls
        return
    assert [p.name for p in inspect.signature(make).parameters.values()] == \
        [p.name for p in inspect.signature(cls).parameters.values()]
    required = {f.name: i for i, f in enumerate(params)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    kwargs = {name: 1000 + i for name, i in required.items()}
    a, b = make(**kwargs), cls(**kwargs)
    assert type(a) is cls and a == b
    for f in params:
        assert getattr(a, f.name) == getattr(b, f.name)
        if f.default_factory is not dataclasses.MISSING:     # a fresh one each time, as the class does
            assert getattr(a, f.name) is not getattr(make(**kwargs), f.name)


@pytest.mark.parametrize("cls", _dataclasses_of_ofp(), ids=lambda c: c.__name__)
def test_a_builder_builds_what_its_class_builds_from_every_value_in_order(cls):
    build = _BUILD[cls]
    params = [p for p in inspect.signature(cls).parameters.values()]
    values = [1000 + i for i in range(len(params))]
    expected = cls(*[v for p, v in zip(params, values) if p.kind is not p.KEYWORD_ONLY],
                   **{p.name: v for p, v in zip(params, values) if p.kind is p.KEYWORD_ONLY})
    a = build(*values)
    assert type(a) is cls and a == expected
    for f in dataclasses.fields(cls):
        assert getattr(a, f.name) == getattr(expected, f.name)
    if values and not cls.__dataclass_params__.frozen:
        with pytest.raises(TypeError):
            build(*values[:-1])       # every value, no defaults


def test_a_builder_of_a_class_that_is_not_a_plain_dataclass_calls_it():
    @dataclasses.dataclass
    class Checked:
        x: int
        y: int = 0
        z: int = dataclasses.field(default=0, kw_only=True)

        def __post_init__(self):
            assert self.x > 0

    assert _BUILD[Checked](1, 2, 3) == Checked(1, 2, z=3)
    with pytest.raises(AssertionError):
        _BUILD[Checked](0, 2, 3)


def test_a_class_that_is_not_a_plain_dataclass_is_its_own_maker():
    @dataclasses.dataclass
    class Checked:
        x: int

        def __post_init__(self):
            assert self.x > 0

    assert _MAKE[Checked] is Checked and _MAKE[ofp.Match] is ofp.Match


@FUZZ
@given(simple_actions)
def test_written_out_action_codecs_agree_with_the_generic_ones(action):
    data = action.pack()
    cls = type(action)
    if cls not in (ofp.SetField, ofp.ExperimenterAction, ofp.Output):
        assert data == ofp_actions.Action.pack(action)
    if cls not in (ofp.SetField, ofp.ExperimenterAction):
        generic = ofp_actions._GENERIC_UNPACK.__get__(None, cls)
        assert cls.unpack(data, 0, len(data)) == generic(data, 0, len(data)) == action
        mine = _error(lambda: cls.unpack(data + bytes(8), 0, len(data) + 8))
        theirs = _error(lambda: generic(data + bytes(8), 0, len(data) + 8))
        assert isinstance(mine, ofp.CodecError)
        assert (mine.type, mine.code, str(mine)) == (theirs.type, theirs.code, str(theirs))


def test_an_action_subclass_gets_codecs_for_itself():
    @dataclasses.dataclass(slots=True)
    class Mine(ofp.SetMplsTtl):
        pass

    class Renumbered(ofp.SetQueue):            # not a dataclass of its own: the generic codecs
        TYPE = 0x77

    assert Mine(9).pack() == ofp.SetMplsTtl(9).pack()
    assert type(Mine.unpack(ofp.SetMplsTtl(9).pack(), 0, 8)) is Mine
    assert Renumbered(5).pack()[:2] == b"\x00\x77"
    assert type(Renumbered.unpack(Renumbered(5).pack(), 0, 8)) is Renumbered
    assert ofp.ACTION_TYPES[ofp.OFPAT.SET_QUEUE] is ofp.SetQueue


@FUZZ
@given(action_lists)
def test_set_field_fast_encoding_matches_encode_oxm(actions):
    for a in actions:
        if isinstance(a, ofp.SetField):
            oxm = ofp.encode_oxm(a.field, a.value)
            length = 4 + len(oxm)
            assert a.pack() == struct.pack("!HH", 25, length + (-length & 7)) + oxm + bytes(-length & 7)


def test_set_field_errors_are_those_of_encode_oxm():
    for field, value in (("nope", 1), ("in_port", "x"), ("eth_type", (1, 2)), ("eth_dst", 5), ("in_port", -1)):
        _same_error(lambda: ofp.SetField(field, value).pack(), lambda: ofp.encode_oxm(field, value))


def test_hello_versions_are_kept_and_give_the_same_answers():
    for versions in (frozenset({4}), frozenset({1, 4, 33, 70}), frozenset()):
        msg = ofp.Hello(versions, xid=3)
        assert msg.pack() == msg.pack() == _general_pack(msg)
        assert ofp.parse(msg.pack()) == msg
        assert ofp.parse(msg.pack()).versions == versions
    # a plain set is not hashable: packed each time, same bytes
    assert ofp.Hello({1, 4}).pack() == ofp.Hello(frozenset({1, 4})).pack()
    assert ofp.Hello(None, elements=[b"\x00\x02\x00\x08abcd"]).pack() == _general_pack(
        ofp.Hello(None, elements=[b"\x00\x02\x00\x08abcd"]))
    for _ in range(base.__dict__.get("_CACHE_SIZE", 64) + 70):    # the caches stay small
        ofp.parse(ofp.Hello(frozenset({1, 2, 3, _ % 90 + 5})).pack())
    assert len(ofp_messages._VERSION_SETS) <= ofp_messages._CACHE_SIZE
    assert len(ofp_messages._VERSION_ELEMENTS) <= ofp_messages._CACHE_SIZE


def test_every_multipart_class_is_decoded_by_its_registered_decode_body():
    for decoders, registry in ((mp.REQUEST_DECODERS, ofp.base.MULTIPART_REQUESTS),
                               (mp.REPLY_DECODERS, ofp.base.MULTIPART_REPLIES)):
        assert set(decoders) == set(registry)
        for mp_type, decode in decoders.items():
            assert decode.__self__ is registry[mp_type]
            assert decode.__func__ is registry[mp_type].decode_body.__func__


@pytest.mark.parametrize("cls, counter, length_at", [
    (ofp.GroupStatsReply, ofp.BucketCounter, 0), (ofp.MeterStatsReply, ofp.MeterBandStats, 1)])
def test_stats_entries_read_with_their_first_counters_decode_as_read_apart(cls, counter, length_at):
    layout = mp._GROUP_STATS if cls is ofp.GroupStatsReply else mp._METER_STATS
    for counts in ([1], [0], [2], [1, 1], [0, 1], [1, 0], [3, 1, 0], [1, 2]):
        entries = []
        for n in counts:      # fields 1000, 1001, ... and the length; counter pairs (k, k + 1)
            fields = [1000 + i for i in range(6)]
            fields.insert(length_at, layout.size + 16 * n)
            entries.append(layout.pack(*fields) + b"".join(struct.pack("!QQ", k, k + 1) for k in range(n)))
        body = b"".join(entries)
        data = struct.pack("!BBHIHH4x", 4, 19, 16 + len(body), 5, cls.mp_type, 1) + body
        msg = ofp.parse(data)
        assert type(msg) is cls and msg.pack() == data
        assert [len(getattr(e, "bucket_stats", getattr(e, "band_stats", None))) for e in msg.body] == counts
        for e in msg.body:
            pairs = getattr(e, "bucket_stats", getattr(e, "band_stats", None))
            assert all(type(p) is counter for p in pairs)
            assert [(p.packet_count if hasattr(p, "packet_count") else p.packet_band_count) for p in pairs] == \
                list(range(len(pairs)))
        # cut anywhere: the entries before the cut, or BAD_LEN inside an entry
        ends = [16 + sum(len(e) for e in entries[:i]) for i in range(len(entries) + 1)]
        for cut in range(16, len(data)):
            short = data[:2] + struct.pack("!H", cut) + data[4:cut]
            if cut in ends:
                assert ofp.parse(short).body == msg.body[:ends.index(cut)]
                continue
            with pytest.raises(ofp.CodecError) as info:
                ofp.parse(short)
            assert (info.value.type, info.value.code) == (ofp.OFPET.BAD_REQUEST, ofp.OFPBRC.BAD_LEN)


def test_parse_hands_multipart_to_the_concrete_class_with_the_same_errors():
    data = ofp.TableStatsReply([ofp.TableStats(1, 2, 3, 4)], xid=9).pack()
    assert ofp.parse(data) == mp.MultipartReply.unpack_body(data, 9)
    # a body that lies: the error names the class parse was given, as before
    bad = data[:-1]
    bad = bad[:2] + struct.pack("!H", len(bad)) + bad[4:]
    with pytest.raises(ofp.CodecError) as info:
        ofp.parse(bad)
    assert (info.value.type, info.value.code) == (ofp.OFPET.BAD_REQUEST, ofp.OFPBRC.BAD_LEN)
    # when the registry holds another class, parse follows it
    saved = base.MESSAGE_TYPES[ofp.OFPT.MULTIPART_REPLY]
    try:
        base.MESSAGE_TYPES[ofp.OFPT.MULTIPART_REPLY] = ofp.BarrierReply
        with pytest.raises(ofp.CodecError, match="BarrierReply has no body"):
            ofp.parse(data)
    finally:
        base.MESSAGE_TYPES[ofp.OFPT.MULTIPART_REPLY] = saved
