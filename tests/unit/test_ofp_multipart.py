"""Multipart messages (OpenFlow 1.3.5 section 7.3.5) and table features.

Oracles: os-ken's published of13 test vectors (bytes), os-ken's parser for
the replies (os-ken decodes only what a controller receives), and os-ken's
published JSON decodings for the requests.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import os_ken
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kumoflow import ofp
from kumoflow.ofp import multipart as mp
from kumoflow.ofp import table_features as tf
from kumoflow.ofp.base import MULTIPART_REPLIES, MULTIPART_REQUESTS, MESSAGE_TYPES, parse
from kumoflow.ofp.consts import OFPIT, OFPMP, OFPMPF, OFPT, OFPTFPT
from kumoflow.ofp.errors import OFPBMC, OFPBRC, OFPET, OFPTFFC, CodecError

from ofp_strategies import bands, buckets, instruction_lists, matches, ports, uint, xids

OSKEN = Path(os_ken.__file__).parent / "tests"
VECTOR_DIR = OSKEN / "packet_data" / "of13"
JSON_DIR = OSKEN / "unit" / "ofproto" / "json" / "of13"

# Every multipart vector os-ken publishes, and the class it must decode to.
VECTOR_CLASSES = {
    "4-0-ofp_desc_reply": mp.DescReply,
    "4-11-ofp_flow_stats_request": mp.FlowStatsRequest,
    "4-12-ofp_flow_stats_reply": mp.FlowStatsReply,
    "4-24-ofp_desc_request": mp.DescRequest,
    "4-25-ofp_aggregate_stats_request": mp.AggregateStatsRequest,
    "4-26-ofp_aggregate_stats_reply": mp.AggregateStatsReply,
    "4-27-ofp_table_stats_request": mp.TableStatsRequest,
    "4-28-ofp_table_stats_reply": mp.TableStatsReply,
    "4-29-ofp_port_stats_request": mp.PortStatsRequest,
    "4-30-ofp_port_stats_reply": mp.PortStatsReply,
    "4-31-ofp_group_features_request": mp.GroupFeaturesRequest,
    "4-32-ofp_group_features_reply": mp.GroupFeaturesReply,
    "4-33-ofp_group_desc_request": mp.GroupDescRequest,
    "4-34-ofp_group_desc_reply": mp.GroupDescReply,
    "4-37-ofp_queue_stats_request": mp.QueueStatsRequest,
    "4-38-ofp_queue_stats_reply": mp.QueueStatsReply,
    "4-47-ofp_meter_config_request": mp.MeterConfigRequest,
    "4-48-ofp_meter_config_reply": mp.MeterConfigReply,
    "4-49-ofp_meter_stats_request": mp.MeterStatsRequest,
    "4-50-ofp_meter_stats_reply": mp.MeterStatsReply,
    "4-51-ofp_meter_features_request": mp.MeterFeaturesRequest,
    "4-52-ofp_meter_features_reply": mp.MeterFeaturesReply,
    "4-53-ofp_port_desc_request": mp.PortDescRequest,
    "4-54-ofp_port_desc_reply": mp.PortDescReply,
    "4-55-ofp_table_features_request": mp.TableFeaturesRequest,
    "4-56-ofp_table_features_reply": mp.TableFeaturesReply,
    "4-57-ofp_group_stats_request": mp.GroupStatsRequest,
    "4-58-ofp_group_stats_reply": mp.GroupStatsReply,
    "4-61-ofp_experimenter_request": mp.ExperimenterMultipartRequest,
    "4-62-ofp_experimenter_reply": mp.ExperimenterMultipartReply,
    "4-63-onf_flow_monitor_request": mp.ExperimenterMultipartRequest,
}


def _read(name: str) -> bytes:
    return (VECTOR_DIR / f"{name}.packet").read_bytes()


def _json(name: str) -> dict:
    (value,) = json.loads((JSON_DIR / f"{name}.packet.json").read_text()).values()
    return value


def _osken(data: bytes):
    from os_ken.ofproto import ofproto_parser, ofproto_v1_3, ofproto_v1_3_parser

    class Datapath:
        ofproto = ofproto_v1_3
        ofproto_parser = ofproto_v1_3_parser

    version, msg_type, length, xid = ofproto_parser.header(data)
    msg = ofproto_parser.msg(Datapath, version, msg_type, length, xid, data)
    assert msg is not None
    return msg


def _attrs(obj, names: str) -> list:
    return [getattr(obj, n) for n in names.split()]


# --- registration ----------------------------------------------------------------

def test_one_handler_per_ofpt_and_every_multipart_type_registered():
    assert MESSAGE_TYPES[OFPT.MULTIPART_REQUEST] is mp.MultipartRequest
    assert MESSAGE_TYPES[OFPT.MULTIPART_REPLY] is mp.MultipartReply
    assert set(MULTIPART_REQUESTS) == set(OFPMP)
    assert set(MULTIPART_REPLIES) == set(OFPMP)
    for mp_type, cls in MULTIPART_REQUESTS.items():
        assert issubclass(cls, mp.MultipartRequest) and cls.msg_type == OFPT.MULTIPART_REQUEST
        assert cls.mp_type == mp_type
    for mp_type, cls in MULTIPART_REPLIES.items():
        assert issubclass(cls, mp.MultipartReply) and cls.msg_type == OFPT.MULTIPART_REPLY
        assert cls.mp_type == mp_type


def test_registering_a_class_without_its_own_decoder_is_refused():
    from dataclasses import dataclass

    with pytest.raises(TypeError):
        @mp.multipart_reply(0x7777)
        @dataclass(slots=True)
        class Broken(mp.MultipartReply):
            pass
    assert 0x7777 not in MULTIPART_REPLIES


def test_names_are_exported_from_the_package():
    for name in ("FlowStatsReply", "FlowStats", "TableFeatures", "InstructionsProp", "split_multipart",
                 "MultipartRequest", "MultipartReply", "ExperimenterMultipartReply"):
        assert hasattr(ofp, name), name


# --- os-ken's vectors --------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(VECTOR_CLASSES))
def test_vector_decodes_to_its_class_and_round_trips(name):
    data = _read(name)
    msg = parse(data)
    assert type(msg) is VECTOR_CLASSES[name]
    assert isinstance(msg, mp.MultipartRequest if data[1] == OFPT.MULTIPART_REQUEST else mp.MultipartReply)
    assert msg.pack() == data
    assert parse(msg.pack()) == msg


def test_every_published_multipart_vector_is_covered():
    published = {p.stem for p in VECTOR_DIR.glob("*.packet")
                 if (d := p.read_bytes())[:1] == b"\x04" and len(d) > 1 and d[1] in (18, 19)}
    assert published == set(VECTOR_CLASSES)


def test_desc_reply_agrees_with_osken():
    data = _read("4-0-ofp_desc_reply")
    ours, theirs = parse(data), _osken(data).body
    names = "mfr_desc hw_desc sw_desc serial_num dp_desc"
    assert _attrs(ours, names) == [v.decode() for v in _attrs(theirs, names)]
    assert ours.mfr_desc == "mfr"


def test_flow_stats_reply_agrees_with_osken():
    data = _read("4-12-ofp_flow_stats_reply")
    ours, theirs = parse(data), _osken(data)
    assert ours.flags == theirs.flags
    assert len(ours.body) == len(theirs.body) == 4
    names = ("table_id duration_sec duration_nsec priority idle_timeout hard_timeout flags cookie "
             "packet_count byte_count")
    for a, b in zip(ours.body, theirs.body):
        assert _attrs(a, names) == _attrs(b, names)
        assert dict(a.match) == dict(b.match.items())
        assert [i.TYPE for i in a.instructions] == [i.type for i in b.instructions]
        for ia, ib in zip(a.instructions, b.instructions):
            if hasattr(ib, "actions"):
                assert [x.TYPE for x in ia.actions] == [x.type for x in ib.actions]


def test_aggregate_reply_agrees_with_osken():
    data = _read("4-26-ofp_aggregate_stats_reply")
    ours, theirs = parse(data), _osken(data).body
    names = "packet_count byte_count flow_count"
    assert _attrs(ours, names) == _attrs(theirs, names) == [7, 574, 6]


def test_table_stats_reply_agrees_with_osken():
    data = _read("4-28-ofp_table_stats_reply")
    ours, theirs = parse(data), _osken(data)
    names = "table_id active_count lookup_count matched_count"
    assert [_attrs(a, names) for a in ours.body] == [_attrs(b, names) for b in theirs.body]


def test_port_stats_reply_agrees_with_osken():
    data = _read("4-30-ofp_port_stats_reply")
    ours, theirs = parse(data), _osken(data)
    names = ("port_no rx_packets tx_packets rx_bytes tx_bytes rx_dropped tx_dropped rx_errors tx_errors "
             "rx_frame_err rx_over_err rx_crc_err collisions duration_sec duration_nsec")
    assert [_attrs(a, names) for a in ours.body] == [_attrs(b, names) for b in theirs.body]
    assert len(ours.body) == 2


def test_queue_stats_reply_agrees_with_osken():
    data = _read("4-38-ofp_queue_stats_reply")
    ours, theirs = parse(data), _osken(data)
    names = "port_no queue_id tx_bytes tx_packets tx_errors duration_sec duration_nsec"
    assert [_attrs(a, names) for a in ours.body] == [_attrs(b, names) for b in theirs.body]


def test_group_stats_reply_agrees_with_osken():
    data = _read("4-58-ofp_group_stats_reply")
    ours, theirs = parse(data), _osken(data)
    names = "group_id ref_count packet_count byte_count duration_sec duration_nsec"
    for a, b in zip(ours.body, theirs.body, strict=True):
        assert _attrs(a, names) == _attrs(b, names)
        assert [(c.packet_count, c.byte_count) for c in a.bucket_stats] == [
            (c.packet_count, c.byte_count) for c in b.bucket_stats]


def test_group_desc_reply_agrees_with_osken():
    data = _read("4-34-ofp_group_desc_reply")
    ours, theirs = parse(data), _osken(data)
    for a, b in zip(ours.body, theirs.body, strict=True):
        assert (a.type, a.group_id) == (b.type, b.group_id)
        for ba, bb in zip(a.buckets, b.buckets, strict=True):
            assert (ba.weight, ba.watch_port, ba.watch_group) == (bb.weight, bb.watch_port, bb.watch_group)
            assert [(x.port, x.max_len) for x in ba.actions] == [(x.port, x.max_len) for x in bb.actions]


def test_group_features_reply_agrees_with_osken():
    data = _read("4-32-ofp_group_features_reply")
    ours, theirs = parse(data), _osken(data).body
    assert (ours.types, ours.capabilities) == (theirs.types, theirs.capabilities)
    assert list(ours.max_groups) == theirs.max_groups and list(ours.actions) == theirs.actions


def test_meter_stats_reply_agrees_with_osken():
    data = _read("4-50-ofp_meter_stats_reply")
    ours, theirs = parse(data), _osken(data)
    names = "meter_id flow_count packet_in_count byte_in_count duration_sec duration_nsec"
    for a, b in zip(ours.body, theirs.body, strict=True):
        assert _attrs(a, names) == _attrs(b, names)
        assert [(s.packet_band_count, s.byte_band_count) for s in a.band_stats] == [
            (s.packet_band_count, s.byte_band_count) for s in b.band_stats]


def test_meter_config_reply_agrees_with_osken():
    data = _read("4-48-ofp_meter_config_reply")
    ours, theirs = parse(data), _osken(data)
    for a, b in zip(ours.body, theirs.body, strict=True):
        assert (a.flags, a.meter_id) == (b.flags, b.meter_id)
        assert [(x.TYPE, x.rate, x.burst_size) for x in a.bands] == [
            (x.type, x.rate, x.burst_size) for x in b.bands]


def test_meter_features_reply_agrees_with_osken():
    data = _read("4-52-ofp_meter_features_reply")
    ours, (theirs,) = parse(data), _osken(data).body
    names = "max_meter band_types capabilities max_bands max_color"
    assert _attrs(ours, names) == _attrs(theirs, names)


def test_port_desc_reply_agrees_with_osken():
    data = _read("4-54-ofp_port_desc_reply")
    ours, theirs = parse(data), _osken(data)
    names = "port_no hw_addr config state curr advertised supported peer curr_speed max_speed"
    for a, b in zip(ours.body, theirs.body, strict=True):
        assert _attrs(a, names) == _attrs(b, names)
        assert a.name == b.name.decode()


def test_experimenter_reply_agrees_with_osken():
    data = _read("4-62-ofp_experimenter_reply")
    ours, theirs = parse(data), _osken(data).body
    assert _attrs(ours, "experimenter exp_type data") == _attrs(theirs, "experimenter exp_type data")


def _their_prop(p) -> tuple:
    """os-ken's table feature property as (type, comparable payload)."""
    name = type(p).__name__
    if name == "OFPTableFeaturePropInstructions":
        return p.type, [(i.type, i.len) for i in p.instruction_ids]
    if name == "OFPTableFeaturePropActions":
        return p.type, [(i.type, i.len) for i in p.action_ids]
    if name == "OFPTableFeaturePropNextTables":
        return p.type, list(p.table_ids)
    if name == "OFPTableFeaturePropOxm":
        return p.type, [(i.type, int(i.hasmask), i.length) for i in p.oxm_ids]
    if name == "OFPTableFeaturePropExperimenter":
        return p.type, (p.experimenter, p.exp_type, list(p.data))
    raise AssertionError(f"unexpected os-ken property {name}")


def _our_prop(p: tf.TableFeatureProp) -> tuple:
    def tlv(i):
        return (i, 4) if isinstance(i, int) else (i.type, 4 + len(i.data))

    if isinstance(p, tf.InstructionsProp):
        return p.type, [tlv(i) for i in p.instruction_ids]
    if isinstance(p, tf.ActionsProp):
        return p.type, [tlv(i) for i in p.action_ids]
    if isinstance(p, tf.NextTablesProp):
        return p.type, p.table_ids
    if isinstance(p, tf.OxmProp):
        return p.type, [(ofp.FIELDS_BY_CODE[(h >> 9) & 0x7F].name, (h >> 8) & 1, h & 0xFF) for h in p.oxm_ids]
    assert isinstance(p, tf.ExperimenterProp)
    return p.type, (p.experimenter, p.exp_type, list(struct.unpack(f"!{len(p.data) // 4}I", p.data)))


def test_table_features_reply_agrees_with_osken():
    data = _read("4-56-ofp_table_features_reply")
    ours, theirs = parse(data), _osken(data)
    assert ours.flags == theirs.flags == OFPMPF.REPLY_MORE
    assert len(ours.body) == len(theirs.body) > 1
    names = "table_id metadata_match metadata_write config max_entries"
    for a, b in zip(ours.body, theirs.body):
        assert _attrs(a, names) == _attrs(b, names)
        their_name = b.name.decode() if isinstance(b.name, bytes) else b.name
        assert a.name == their_name
        assert [_our_prop(p) for p in a.properties] == [_their_prop(p) for p in b.properties]
    assert ours.body[0].name == "私のテーブル"
    kinds = {type(p) for t in ours.body for p in t.properties}
    assert kinds == {tf.InstructionsProp, tf.NextTablesProp, tf.ActionsProp, tf.OxmProp, tf.ExperimenterProp}


# Requests: os-ken does not decode them; its published JSON decodings are the oracle.

@pytest.mark.parametrize("name, fields", [
    ("4-11-ofp_flow_stats_request", "flags table_id out_port out_group cookie cookie_mask"),
    ("4-25-ofp_aggregate_stats_request", "flags table_id out_port out_group cookie cookie_mask"),
    ("4-29-ofp_port_stats_request", "flags port_no"),
    ("4-37-ofp_queue_stats_request", "flags port_no queue_id"),
    ("4-47-ofp_meter_config_request", "flags meter_id"),
    ("4-49-ofp_meter_stats_request", "flags meter_id"),
    ("4-57-ofp_group_stats_request", "flags group_id"),
    ("4-24-ofp_desc_request", "flags"),
    ("4-27-ofp_table_stats_request", "flags"),
    ("4-31-ofp_group_features_request", "flags"),
    ("4-33-ofp_group_desc_request", "flags"),
    ("4-51-ofp_meter_features_request", "flags"),
    ("4-53-ofp_port_desc_request", "flags"),
])
def test_request_agrees_with_osken_json(name, fields):
    ours, theirs = parse(_read(name)), _json(name)
    assert ours.mp_type == theirs["type"]
    assert _attrs(ours, fields) == [theirs[f] for f in fields.split()]
    if "match" in theirs:
        assert ours.match == ofp.Match() and theirs["match"]["OFPMatch"]["oxm_fields"] == []


def test_experimenter_request_agrees_with_osken_json():
    import base64

    ours, theirs = parse(_read("4-61-ofp_experimenter_request")), _json("4-61-ofp_experimenter_request")
    assert (ours.experimenter, ours.exp_type, ours.data) == (
        theirs["experimenter"], theirs["exp_type"], base64.b64decode(theirs["data"]))


def test_table_features_request_agrees_with_osken_json():
    ours, theirs = parse(_read("4-55-ofp_table_features_request")), _json("4-55-ofp_table_features_request")
    assert ours.flags == theirs["flags"] == OFPMPF.REQ_MORE
    assert len(ours.body) == len(theirs["body"])
    for a, b in zip(ours.body, theirs["body"]):
        (b,) = b.values()
        assert (a.table_id, a.name, a.metadata_match, a.metadata_write, a.config, a.max_entries) == (
            b["table_id"], b["name"], b["metadata_match"], b["metadata_write"], b["config"], b["max_entries"])
        assert len(a.properties) == len(b["properties"])
        for pa, pb in zip(a.properties, b["properties"]):
            ((kind, pb),) = pb.items()
            assert pa.type == pb["type"], kind
            if kind == "OFPTableFeaturePropNextTables":
                assert pa.table_ids == pb["table_ids"]
            elif kind == "OFPTableFeaturePropInstructions":
                assert pa.instruction_ids == [i["OFPInstructionId"]["type"] for i in pb["instruction_ids"]]
            elif kind == "OFPTableFeaturePropActions":
                assert pa.action_ids == [i["OFPActionId"]["type"] for i in pb["action_ids"]]
            elif kind == "OFPTableFeaturePropOxm":
                assert [ofp.FIELDS_BY_CODE[(h >> 9) & 0x7F].name for h in pa.oxm_ids] == [
                    i["OFPOxmId"]["type"] for i in pb["oxm_ids"]]


# --- round trips of every class ------------------------------------------------------

flags = uint(16)
desc = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=255)


def _filter_request(cls):
    return st.builds(cls, uint(8), uint(32), uint(32), uint(64), uint(64), matches(), flags=flags, xid=xids)


flow_stats = st.builds(mp.FlowStats, uint(8), uint(32), uint(32), uint(16), uint(16), uint(16), uint(16),
                       uint(64), uint(64), uint(64), matches(), instruction_lists)

_plain_id = st.integers(0, 0xFFFE)
_instruction_ids = st.lists(st.one_of(
    _plain_id,
    st.builds(tf.InstructionId, _plain_id, st.binary(min_size=1, max_size=12)),
    st.builds(tf.InstructionId.experimenter_id, uint(32), st.binary(max_size=8))), max_size=6)
_action_ids = st.lists(st.one_of(
    _plain_id,
    st.builds(tf.ActionId, _plain_id, st.binary(min_size=1, max_size=12)),
    st.builds(tf.ActionId.experimenter_id, uint(32), st.binary(max_size=8))), max_size=6)
_oxm_ids = st.lists(st.one_of(
    st.integers(0, 0xFFFEFFFF),
    st.builds(tf.ExperimenterOxmId, st.integers(0xFFFF0000, 0xFFFFFFFF), uint(32))), max_size=6)
table_feature_props = st.one_of(
    st.builds(tf.InstructionsProp, st.sampled_from(tf.InstructionsProp.TYPES), _instruction_ids),
    st.builds(tf.NextTablesProp, st.sampled_from(tf.NextTablesProp.TYPES), st.lists(uint(8), max_size=20)),
    st.builds(tf.ActionsProp, st.sampled_from(tf.ActionsProp.TYPES), _action_ids),
    st.builds(tf.OxmProp, st.sampled_from(tf.OxmProp.TYPES), _oxm_ids),
    st.builds(tf.ExperimenterProp, st.sampled_from(tf.ExperimenterProp.TYPES), uint(32), uint(32),
              st.binary(max_size=12)),
)
table_features = st.builds(tf.TableFeatures, uint(8), st.text(st.characters(min_codepoint=33, max_codepoint=126),
                                                              max_size=31),
                           uint(64), uint(64), uint(32), uint(32), st.lists(table_feature_props, max_size=6))

multipart_messages = st.one_of(
    st.builds(mp.DescRequest, flags=flags, xid=xids),
    st.builds(mp.DescReply, desc, desc, desc, st.text(st.characters(min_codepoint=32, max_codepoint=126),
                                                      max_size=31), desc, flags=flags, xid=xids),
    _filter_request(mp.FlowStatsRequest),
    st.builds(mp.FlowStatsReply, st.lists(flow_stats, max_size=4), flags=flags, xid=xids),
    _filter_request(mp.AggregateStatsRequest),
    st.builds(mp.AggregateStatsReply, uint(64), uint(64), uint(32), flags=flags, xid=xids),
    st.builds(mp.TableStatsRequest, flags=flags, xid=xids),
    st.builds(mp.TableStatsReply, st.lists(st.builds(mp.TableStats, uint(8), uint(32), uint(64), uint(64)),
                                           max_size=4), flags=flags, xid=xids),
    st.builds(mp.PortStatsRequest, uint(32), flags=flags, xid=xids),
    st.builds(mp.PortStatsReply, st.lists(st.builds(mp.PortStats, uint(32), *[uint(64)] * 12, uint(32), uint(32)),
                                          max_size=3), flags=flags, xid=xids),
    st.builds(mp.QueueStatsRequest, uint(32), uint(32), flags=flags, xid=xids),
    st.builds(mp.QueueStatsReply, st.lists(st.builds(mp.QueueStats, uint(32), uint(32), uint(64), uint(64),
                                                     uint(64), uint(32), uint(32)), max_size=3),
              flags=flags, xid=xids),
    st.builds(mp.GroupStatsRequest, uint(32), flags=flags, xid=xids),
    st.builds(mp.GroupStatsReply, st.lists(st.builds(
        mp.GroupStats, uint(32), uint(32), uint(64), uint(64), uint(32), uint(32),
        st.lists(st.builds(mp.BucketCounter, uint(64), uint(64)), max_size=3)), max_size=3),
        flags=flags, xid=xids),
    st.builds(mp.GroupDescRequest, flags=flags, xid=xids),
    st.builds(mp.GroupDescReply, st.lists(st.builds(mp.GroupDesc, uint(8), uint(32), st.lists(buckets, max_size=3)),
                                          max_size=3), flags=flags, xid=xids),
    st.builds(mp.GroupFeaturesRequest, flags=flags, xid=xids),
    st.builds(mp.GroupFeaturesReply, uint(32), uint(32), st.tuples(*[uint(32)] * 4), st.tuples(*[uint(32)] * 4),
              flags=flags, xid=xids),
    st.builds(mp.MeterStatsRequest, uint(32), flags=flags, xid=xids),
    st.builds(mp.MeterStatsReply, st.lists(st.builds(
        mp.MeterStats, uint(32), uint(32), uint(64), uint(64), uint(32), uint(32),
        st.lists(st.builds(mp.MeterBandStats, uint(64), uint(64)), max_size=3)), max_size=3),
        flags=flags, xid=xids),
    st.builds(mp.MeterConfigRequest, uint(32), flags=flags, xid=xids),
    st.builds(mp.MeterConfigReply, st.lists(st.builds(mp.MeterConfig, uint(16), uint(32),
                                                      st.lists(bands, max_size=3)), max_size=3),
              flags=flags, xid=xids),
    st.builds(mp.MeterFeaturesRequest, flags=flags, xid=xids),
    st.builds(mp.MeterFeaturesReply, uint(32), uint(32), uint(32), uint(8), uint(8), flags=flags, xid=xids),
    st.builds(mp.TableFeaturesRequest, st.lists(table_features, max_size=3), flags=flags, xid=xids),
    st.builds(mp.TableFeaturesReply, st.lists(table_features, max_size=3), flags=flags, xid=xids),
    st.builds(mp.PortDescRequest, flags=flags, xid=xids),
    st.builds(mp.PortDescReply, st.lists(ports, max_size=4), flags=flags, xid=xids),
    st.builds(mp.ExperimenterMultipartRequest, uint(32), uint(32), st.binary(max_size=32), flags=flags, xid=xids),
    st.builds(mp.ExperimenterMultipartReply, uint(32), uint(32), st.binary(max_size=32), flags=flags, xid=xids),
)


@settings(max_examples=600, deadline=None)
@given(multipart_messages)
def test_every_class_round_trips(msg):
    data = msg.pack()
    assert struct.unpack_from("!BBHI", data) == (4, msg.msg_type, len(data), msg.xid)
    assert struct.unpack_from("!HH4x", data, 8) == (msg.mp_type, msg.flags)
    back = parse(data)
    assert type(back) is type(msg)
    assert back == msg
    assert back.pack() == data


def test_every_class_is_covered_by_the_round_trip_strategy():
    names = repr(multipart_messages)          # lists each st.builds target by name
    for cls in list(MULTIPART_REQUESTS.values()) + list(MULTIPART_REPLIES.values()):
        assert f"builds({cls.__name__}," in names, cls.__name__


def test_defaults_match_the_spec():
    assert mp.FlowStatsRequest().pack() == _read("4-11-ofp_flow_stats_request")[:8] + (
        b"\x00\x01\x00\x00\x00\x00\x00\x00" + b"\xff\x00\x00\x00" + b"\xff" * 8 + bytes(4 + 16)
        + b"\x00\x01\x00\x04\x00\x00\x00\x00")
    assert mp.AggregateStatsRequest().pack() == _read("4-25-ofp_aggregate_stats_request")
    assert mp.PortStatsRequest().pack() == _read("4-29-ofp_port_stats_request")
    assert mp.QueueStatsRequest().pack() == _read("4-37-ofp_queue_stats_request")
    assert mp.GroupStatsRequest().pack() == _read("4-57-ofp_group_stats_request")
    assert mp.MeterStatsRequest().pack() == _read("4-49-ofp_meter_stats_request")
    assert mp.MeterConfigRequest().pack() == _read("4-47-ofp_meter_config_request")
    assert mp.DescRequest().pack() == _read("4-24-ofp_desc_request")
    assert mp.TableFeaturesRequest().pack() == bytes.fromhex("04120010 00000000 000c0000 00000000")


def test_flow_stats_reply_builds_byte_exact_entries():
    s = mp.FlowStats(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ofp.Match(in_port=1),
                     [ofp.ApplyActions([ofp.Output(2)])])
    entry = s.pack()
    assert struct.unpack_from("!H", entry)[0] == len(entry) == 48 + 16 + 24
    data = mp.FlowStatsReply([s, s], flags=OFPMPF.REPLY_MORE, xid=3).pack()
    assert data[16:] == entry * 2
    assert parse(data).body == [s, s]


# --- table features ----------------------------------------------------------------

def test_table_features_ids_keep_experimenter_and_odd_lengths():
    props = [
        tf.InstructionsProp(OFPTFPT.INSTRUCTIONS, [OFPIT.GOTO_TABLE, tf.InstructionId.experimenter_id(0x2320, b"\1\2")]),
        tf.ActionsProp(OFPTFPT.APPLY_ACTIONS_MISS, [0, tf.ActionId(22, bytes(4)), tf.ActionId.experimenter_id(0x2320)]),
        tf.OxmProp(OFPTFPT.WILDCARDS, [tf.oxm_id("in_port"), tf.oxm_id("ipv4_src", masked=True),
                                       tf.ExperimenterOxmId(0xFFFF0204, 0x4F4E4600)]),
        tf.NextTablesProp(OFPTFPT.NEXT_TABLES_MISS, [1, 2, 254]),
        tf.ExperimenterProp(OFPTFPT.EXPERIMENTER_MISS, 0x2320, 7, b"abc"),
    ]
    t = tf.TableFeatures(3, "t3", 0xFF, 0xF0, 3, 1000, props)
    raw = t.pack()
    assert len(raw) % 8 == 0
    back = parse(mp.TableFeaturesReply([t]).pack()).body[0]
    assert back == t
    assert back.prop(OFPTFPT.INSTRUCTIONS).instruction_ids[1].experimenter == 0x2320
    assert back.prop(OFPTFPT.WILDCARDS).oxm_ids[:2] == [0x80000004, 0x80001708]
    # Property lengths exclude the padding: experimenter prop is 12 + 3 bytes, padded to 16.
    exp = raw[-16:]
    assert struct.unpack_from("!HH", exp) == (OFPTFPT.EXPERIMENTER_MISS, 15) and exp[-1:] == b"\0"


def test_table_feature_prop_with_wrong_type_for_its_class_is_refused_on_pack():
    with pytest.raises(ValueError):
        tf.InstructionsProp(OFPTFPT.MATCH, []).pack()


def _table_features_reply(*props: bytes) -> bytes:
    body = b"".join(props)
    entry = struct.pack("!HB5x32sQQII", 64 + len(body), 0, b"t", 0, 0, 0, 0) + body
    return struct.pack("!BBHIHH4x", 4, 19, 16 + len(entry), 1, OFPMP.TABLE_FEATURES, 0) + entry


@pytest.mark.parametrize("prop, code", [
    (struct.pack("!HH4x", 9, 4), OFPTFFC.BAD_TYPE),                       # no property type 9
    (struct.pack("!HH4x", 0x7777, 4), OFPTFFC.BAD_TYPE),
    (struct.pack("!HH4x", OFPTFPT.INSTRUCTIONS, 2), OFPTFFC.BAD_LEN),     # shorter than its header
    (struct.pack("!HH4x", OFPTFPT.INSTRUCTIONS, 24), OFPTFFC.BAD_LEN),    # overruns the table
    (struct.pack("!HHHH", OFPTFPT.INSTRUCTIONS, 8, 1, 4), b""),          # fine: one instruction id
    (struct.pack("!HHHH", OFPTFPT.INSTRUCTIONS, 8, 1, 2), OFPTFFC.BAD_LEN),   # id length 2
    (struct.pack("!HHHH", OFPTFPT.INSTRUCTIONS, 8, 0xFFFF, 4), OFPTFFC.BAD_LEN),  # experimenter id w/o id
    (struct.pack("!HHHH", OFPTFPT.APPLY_ACTIONS, 8, 0, 12), OFPTFFC.BAD_LEN),  # id overruns
    (struct.pack("!HHH2x", OFPTFPT.INSTRUCTIONS, 6, 1), OFPTFFC.BAD_LEN),  # id truncated
    (struct.pack("!HHI", OFPTFPT.MATCH, 6, 0), OFPTFFC.BAD_LEN),          # OXM ids not a multiple of 4
    (struct.pack("!HHI", OFPTFPT.MATCH, 8, 0xFFFF0004), OFPTFFC.BAD_LEN),  # experimenter OXM id truncated
    (struct.pack("!HHI", OFPTFPT.EXPERIMENTER, 8, 1), OFPTFFC.BAD_LEN),   # no exp_type
    (struct.pack("!HHBBBB", OFPTFPT.NEXT_TABLES, 5, 1, 0, 0, 0), b""),   # fine, padded
    (struct.pack("!HHB", OFPTFPT.NEXT_TABLES, 5, 1), OFPTFFC.BAD_LEN),   # padding missing
])
def test_bad_table_feature_properties(prop, code):
    data = _table_features_reply(prop)
    if code == b"":
        assert parse(data).pack() == data
        return
    with pytest.raises(CodecError) as info:
        parse(data)
    assert (info.value.type, info.value.code) == (OFPET.TABLE_FEATURES_FAILED, code)
    assert info.value.offset is not None and 80 <= info.value.offset < len(data)


def test_table_features_entry_length_errors():
    good = _table_features_reply()
    for length in (0, 63, 72):
        data = good[:16] + struct.pack("!H", length) + good[18:]
        with pytest.raises(CodecError) as info:
            parse(data)
        assert (info.value.type, info.value.code, info.value.offset) == (OFPET.BAD_REQUEST, OFPBRC.BAD_LEN, 16)


# --- errors ------------------------------------------------------------------------

@pytest.mark.parametrize("msg_type", [OFPT.MULTIPART_REQUEST, OFPT.MULTIPART_REPLY])
@pytest.mark.parametrize("mp_type", [14, 100, 0xFFFE])
def test_unknown_multipart_type_is_bad_multipart(msg_type, mp_type):
    data = struct.pack("!BBHIHH4x", 4, msg_type, 16, 9, mp_type, 0)
    with pytest.raises(CodecError) as info:
        parse(data)
    assert (info.value.type, info.value.code, info.value.offset) == (OFPET.BAD_REQUEST, OFPBRC.BAD_MULTIPART, 8)


@pytest.mark.parametrize("msg_type", [OFPT.MULTIPART_REQUEST, OFPT.MULTIPART_REPLY])
@pytest.mark.parametrize("size", [8, 9, 10, 12, 15])
def test_message_shorter_than_the_multipart_header_is_bad_len(msg_type, size):
    data = struct.pack("!BBHI", 4, msg_type, size, 1) + bytes(size - 8)
    with pytest.raises(CodecError) as info:
        parse(data)
    assert (info.value.type, info.value.code) == (OFPET.BAD_REQUEST, OFPBRC.BAD_LEN)


def test_concrete_decoder_checks_the_multipart_type():
    data = _read("4-0-ofp_desc_reply")
    with pytest.raises(CodecError) as info:
        mp.FlowStatsReply.unpack_body(data, 0)
    assert (info.value.type, info.value.code) == (OFPET.BAD_REQUEST, OFPBRC.BAD_MULTIPART)


def _with_length(data: bytes) -> bytes:
    return data[:2] + struct.pack("!H", len(data)) + data[4:]


@pytest.mark.parametrize("name, extra", [
    ("4-24-ofp_desc_request", b"\0" * 8),
    ("4-0-ofp_desc_reply", b"\0"),
    ("4-29-ofp_port_stats_request", b"\0" * 8),
    ("4-26-ofp_aggregate_stats_reply", b"\0" * 8),
    ("4-11-ofp_flow_stats_request", b"\0" * 8),
    ("4-28-ofp_table_stats_reply", b"\0" * 8),
    ("4-30-ofp_port_stats_reply", b"\0" * 8),
    ("4-52-ofp_meter_features_reply", b"\0" * 8),
])
def test_trailing_bytes_are_bad_len(name, extra):
    with pytest.raises(CodecError) as info:
        parse(_with_length(_read(name) + extra))
    assert (info.value.type, info.value.code) == (OFPET.BAD_REQUEST, OFPBRC.BAD_LEN)


@pytest.mark.parametrize("length", [0, 8, 48, 55, 57, 0x1000])
def test_flow_stats_entry_with_bad_length(length):
    data = bytearray(_read("4-12-ofp_flow_stats_reply"))
    struct.pack_into("!H", data, 16, length)
    with pytest.raises(CodecError) as info:
        parse(bytes(data))
    assert info.value.type in (OFPET.BAD_REQUEST, OFPET.BAD_MATCH, OFPET.BAD_INSTRUCTION)
    if length < 56 or length > len(data) - 16:
        assert (info.value.type, info.value.code, info.value.offset) == (OFPET.BAD_REQUEST, OFPBRC.BAD_LEN, 16)


def test_flow_stats_match_padding_must_fit_the_entry():
    # An entry whose length stops inside the match's padding.
    s = mp.FlowStats(match=ofp.Match(in_port=1))          # match 12 bytes + 4 padding
    data = bytearray(mp.FlowStatsReply([s]).pack())
    struct.pack_into("!H", data, 16, 48 + 12)
    data = _with_length(bytes(data[:16 + 60]))
    with pytest.raises(CodecError) as info:
        parse(data)
    assert (info.value.type, info.value.code) == (OFPET.BAD_MATCH, OFPBMC.BAD_LEN)


@pytest.mark.parametrize("name, at, value", [
    ("4-58-ofp_group_stats_reply", 16, 41),        # not 40 + n * 16
    ("4-58-ofp_group_stats_reply", 16, 39),
    ("4-50-ofp_meter_stats_reply", 20, 57),
    ("4-50-ofp_meter_stats_reply", 20, 0),
    ("4-34-ofp_group_desc_reply", 16, 4),
    ("4-48-ofp_meter_config_reply", 16, 4),
])
def test_entry_length_errors(name, at, value):
    data = bytearray(_read(name))
    struct.pack_into("!H", data, at, value)
    with pytest.raises(CodecError) as info:
        parse(bytes(data))
    assert (info.value.type, info.value.code) == (OFPET.BAD_REQUEST, OFPBRC.BAD_LEN)


@pytest.mark.parametrize("name", sorted(VECTOR_CLASSES))
def test_every_truncation_is_a_codec_error(name):
    data = _read(name)
    step = 1 if len(data) < 2048 else 13
    for cut in range(8, len(data), step):
        part = _with_length(data[:cut])
        try:
            msg = parse(part)
        except CodecError:
            continue
        # Some cuts land on an entry boundary and leave a valid, shorter message.
        assert msg.pack() == part


_VECTORS = [_read(n) for n in sorted(VECTOR_CLASSES) if len(_read(n)) < 2048] + [
    mp.TableFeaturesReply(parse(_read("4-56-ofp_table_features_reply")).body[:1]).pack()]


@st.composite
def damaged(draw):
    data = bytearray(draw(st.sampled_from(_VECTORS)))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(8, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        del data[draw(st.integers(8, len(data))):]
    if draw(st.booleans()):
        data += draw(st.binary(min_size=1, max_size=16))
    return _with_length(bytes(data))


@settings(max_examples=1000, deadline=None)
@given(damaged())
def test_damaged_multipart_raises_only_codec_error(data):
    try:
        msg = parse(data)
    except CodecError as exc:
        assert exc.offset is None or 0 <= exc.offset <= len(data)
        return
    # Whatever decodes re-encodes and decodes again.
    again = parse(msg.pack())
    assert type(again) is type(msg)


@settings(max_examples=300, deadline=None)
@given(multipart_messages, st.data())
def test_damaged_generated_messages_raise_only_codec_error(msg, data):
    raw = bytearray(msg.pack())
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(8, len(raw) - 1))] = data.draw(st.integers(0, 255))
    raw = _with_length(bytes(raw[:data.draw(st.integers(8, len(raw)))]))
    try:
        msg = parse(raw)
    except CodecError as exc:
        assert exc.offset is None or 0 <= exc.offset <= len(raw)
        return
    # Whatever decodes re-encodes and decodes again.
    assert type(parse(msg.pack())) is type(msg)


# --- splitting ------------------------------------------------------------------------

def test_split_keeps_xid_sets_more_and_fits():
    body = [mp.FlowStats(cookie=i, match=ofp.Match(in_port=i), instructions=[ofp.ApplyActions([ofp.Output(1)])])
            for i in range(1500)]
    parts = mp.split_multipart(mp.FlowStatsReply(body, xid=42))
    assert len(parts) > 1
    assert [p.flags for p in parts] == [OFPMPF.REPLY_MORE] * (len(parts) - 1) + [0]
    assert {p.xid for p in parts} == {42}
    assert all(len(p.pack()) <= 0xFFFF for p in parts)
    assert [e for p in parts for e in p.body] == body


def test_split_small_and_bodyless_messages_come_back_alone():
    small = mp.PortStatsReply([mp.PortStats(1)])
    assert mp.split_multipart(small) == [small]
    desc = mp.DescReply("a")
    assert mp.split_multipart(desc) == [desc]
    req = mp.TableFeaturesRequest([tf.TableFeatures(i, properties=[tf.NextTablesProp(
        OFPTFPT.NEXT_TABLES, list(range(200)))]) for i in range(3)], xid=5)
    parts = mp.split_multipart(req, max_len=16 + 2 * 272)
    assert [len(p.body) for p in parts] == [2, 1]
    assert [p.flags for p in parts] == [OFPMPF.REQ_MORE, 0]
    with pytest.raises(ValueError):
        mp.split_multipart(req, max_len=100)
