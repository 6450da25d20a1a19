"""os-ken's published OpenFlow 1.3 test vectors decode and re-encode byte for byte."""

from pathlib import Path

import os_ken
import pytest

from kumoflow import ofp

VECTOR_DIR = Path(os_ken.__file__).parent / "tests" / "packet_data" / "of13"
VECTORS = sorted(p for p in VECTOR_DIR.glob("*.packet"))


def test_vectors_present():
    # The published set has 100+ files; a packaging change must not silently empty the test.
    assert len(VECTORS) > 90


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.name)
def test_vector_round_trips(path):
    data = path.read_bytes()
    msg = ofp.parse(data)
    assert isinstance(msg, ofp.Message)
    assert msg.msg_type == data[1]
    assert msg.pack() == data
    # Decoding what we encoded gives the same message back.
    assert ofp.parse(msg.pack()) == msg


def test_truncated_vector_is_a_codec_error():
    # libofproto-OFP13-flow_mod.truncated64 is published empty: not a message.
    with pytest.raises(ofp.CodecError) as info:
        ofp.parse((VECTOR_DIR / "libofproto-OFP13-flow_mod.truncated64").read_bytes())
    assert (info.value.type, info.value.code) == (ofp.OFPET.BAD_REQUEST, ofp.OFPBRC.BAD_LEN)


def _osken(data):
    from os_ken.ofproto import ofproto_parser, ofproto_v1_3, ofproto_v1_3_parser

    class Datapath:
        ofproto = ofproto_v1_3
        ofproto_parser = ofproto_v1_3_parser

    version, msg_type, length, xid = ofproto_parser.header(data)
    return ofproto_parser.msg(Datapath, version, msg_type, length, xid, data)


def _read(name):
    return (VECTOR_DIR / name).read_bytes()


def test_flow_mod_fields_agree_with_osken():
    data = _read("4-2-ofp_flow_mod.packet")
    ours, theirs = ofp.parse(data), _osken(data)
    assert (ours.cookie, ours.table_id, ours.command, ours.idle_timeout, ours.hard_timeout,
            ours.priority, ours.buffer_id, ours.out_port, ours.out_group, ours.flags) == (
        theirs.cookie, theirs.table_id, theirs.command, theirs.idle_timeout, theirs.hard_timeout,
        theirs.priority, theirs.buffer_id, theirs.out_port, theirs.out_group, theirs.flags)
    assert dict(ours.match) == {k: v for k, v in theirs.match.items()}
    assert [type(i).__name__ for i in ours.instructions] == [
        {"OFPInstructionActions": {3: "WriteActions", 4: "ApplyActions"}.get(i.type),
         "OFPInstructionGotoTable": "GotoTable"}.get(type(i).__name__, type(i).__name__)
        for i in theirs.instructions]


def test_packet_in_fields_agree_with_osken():
    data = _read("4-4-ofp_packet_in.packet")
    ours, theirs = ofp.parse(data), _osken(data)
    assert (ours.buffer_id, ours.total_len, ours.reason, ours.table_id, ours.cookie, ours.data) == (
        theirs.buffer_id, theirs.total_len, theirs.reason, theirs.table_id, theirs.cookie, theirs.data)
    assert dict(ours.match) == dict(theirs.match.items())


def test_features_reply_agrees_with_osken():
    data = _read("4-6-ofp_features_reply.packet")
    ours, theirs = ofp.parse(data), _osken(data)
    assert (ours.datapath_id, ours.n_buffers, ours.n_tables, ours.auxiliary_id, ours.capabilities) == (
        theirs.datapath_id, theirs.n_buffers, theirs.n_tables, theirs.auxiliary_id, theirs.capabilities)


def test_flow_removed_agrees_with_osken():
    data = _read("4-40-ofp_flow_removed.packet")
    ours, theirs = ofp.parse(data), _osken(data)
    fields = ("cookie", "priority", "reason", "table_id", "duration_sec", "duration_nsec",
              "idle_timeout", "hard_timeout", "packet_count", "byte_count")
    assert [getattr(ours, f) for f in fields] == [getattr(theirs, f) for f in fields]
    assert dict(ours.match) == dict(theirs.match.items())


def test_port_status_agrees_with_osken():
    data = _read("4-39-ofp_port_status.packet")
    ours, theirs = ofp.parse(data), _osken(data)
    assert ours.reason == theirs.reason
    fields = ("port_no", "hw_addr", "name", "config", "state", "curr", "advertised", "supported",
              "peer", "curr_speed", "max_speed")
    theirs_desc = [getattr(theirs.desc, f) for f in fields]
    theirs_desc[2] = theirs_desc[2].decode()
    assert [getattr(ours.desc, f) for f in fields] == theirs_desc
