"""The codec against itself and against hostile bytes: round trips, and errors
that carry the type and code the specification names."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kumoflow import ofp
from kumoflow.ofp import OFPBAC, OFPBIC, OFPBMC, OFPBRC, OFPET

from ofp_strategies import matches, messages

FUZZ = settings(max_examples=300, deadline=None)


@FUZZ
@given(messages)
def test_generated_messages_round_trip(msg):
    data = msg.pack()
    assert struct.unpack_from("!H", data, 2)[0] == len(data)
    decoded = ofp.parse(data)
    assert decoded == msg
    assert decoded.pack() == data


@FUZZ
@given(matches())
def test_match_is_padded_to_8_and_round_trips(match):
    data = ofp.PacketIn(match=match).pack()
    assert ofp.parse(data).match == match


def _with_length(data: bytes) -> bytes:
    """Fix the header length so decoding reaches the body."""
    return data[:2] + struct.pack("!H", len(data)) + data[4:]


def _only_codec_errors(data: bytes) -> None:
    try:
        msg = ofp.parse(data)
    except ofp.CodecError as exc:
        assert isinstance(exc.type, int) and isinstance(exc.code, int)
        assert str(exc)
        return
    # Whatever decodes must encode again (exact bytes are not promised for
    # non-canonical input such as nonzero padding).
    msg.pack()


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_codec_errors(data):
    _only_codec_errors(data)


@FUZZ
@given(st.integers(0, 29), st.binary(max_size=300))
def test_random_bodies_of_every_type_raise_only_codec_errors(msg_type, body):
    _only_codec_errors(_with_length(struct.pack("!BBHI", 4, msg_type, 0, 7) + body))


@FUZZ
@given(messages, st.data())
def test_mutated_messages_raise_only_codec_errors(msg, data):
    raw = bytearray(msg.pack())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(8, max(8, len(raw) - 1)))
        if i < len(raw):
            raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(8, len(raw)))
    _only_codec_errors(_with_length(bytes(raw[:cut])))


# --- the error each kind of bad input gets ------------------------------------

def _error(data: bytes) -> tuple[int, int]:
    with pytest.raises(ofp.CodecError) as info:
        ofp.parse(data)
    return info.value.type, info.value.code


FLOW_MOD = ofp.FlowMod(match=ofp.Match(in_port=1), instructions=[ofp.ApplyActions([ofp.Output(2)])]).pack()
MATCH_AT = 48                      # ofp_match starts here in a flow-mod
OXM_AT = MATCH_AT + 4
INSTRUCTION_AT = MATCH_AT + 16     # match of one 8-byte OXM, padded to 16
ACTION_AT = INSTRUCTION_AT + 8


def _patch(data: bytes, offset: int, fmt: str, *values) -> bytes:
    raw = bytearray(data)
    struct.pack_into(fmt, raw, offset, *values)
    return bytes(raw)


def test_short_message_is_bad_len():
    assert _error(b"\x04\x00\x00") == (OFPET.BAD_REQUEST, OFPBRC.BAD_LEN)


def test_length_field_disagreeing_with_data_is_bad_len():
    assert _error(FLOW_MOD[:-8]) == (OFPET.BAD_REQUEST, OFPBRC.BAD_LEN)


def test_other_version_is_bad_version():
    assert _error(b"\x01" + FLOW_MOD[1:]) == (OFPET.BAD_REQUEST, OFPBRC.BAD_VERSION)


def test_unknown_type_is_bad_type():
    assert _error(struct.pack("!BBHI", 4, 99, 8, 1)) == (OFPET.BAD_REQUEST, OFPBRC.BAD_TYPE)


def test_unknown_multipart_type_is_bad_multipart():
    data = struct.pack("!BBHIHH4x", 4, ofp.OFPT.MULTIPART_REQUEST, 16, 1, 77, 0)
    assert _error(data) == (OFPET.BAD_REQUEST, OFPBRC.BAD_MULTIPART)


def test_unknown_oxm_field_is_bad_field():
    data = _patch(FLOW_MOD, OXM_AT, "!I", (0x8000 << 16) | (90 << 9) | 4)
    assert _error(data) == (OFPET.BAD_MATCH, OFPBMC.BAD_FIELD)


def test_masked_unmaskable_field_is_bad_mask():
    data = _patch(FLOW_MOD, OXM_AT, "!I", (0x8000 << 16) | (0 << 9) | (1 << 8) | 4)
    assert _error(data) == (OFPET.BAD_MATCH, OFPBMC.BAD_MASK)


def test_wrong_oxm_length_is_bad_len():
    data = _patch(FLOW_MOD, OXM_AT, "!I", (0x8000 << 16) | (5 << 9) | 4)   # eth_type is 2 bytes
    assert _error(data) == (OFPET.BAD_MATCH, OFPBMC.BAD_LEN)


def test_duplicate_field_is_dup_field():
    data = ofp.FlowMod(match=ofp.Match(in_port=1)).pack()
    oxm = data[OXM_AT:OXM_AT + 8]
    body = data[:MATCH_AT] + struct.pack("!HH", 1, 20) + oxm + oxm + bytes(4)
    assert _error(_with_length(body)) == (OFPET.BAD_MATCH, OFPBMC.DUP_FIELD)


def test_non_oxm_match_is_bad_type():
    assert _error(_patch(FLOW_MOD, MATCH_AT, "!H", 0)) == (OFPET.BAD_MATCH, OFPBMC.BAD_TYPE)


def test_match_overrunning_is_bad_len():
    assert _error(_patch(FLOW_MOD, MATCH_AT + 2, "!H", 400)) == (OFPET.BAD_MATCH, OFPBMC.BAD_LEN)


def test_unknown_instruction_is_unknown_inst():
    assert _error(_patch(FLOW_MOD, INSTRUCTION_AT, "!H", 77)) == (OFPET.BAD_INSTRUCTION, OFPBIC.UNKNOWN_INST)


def test_bad_instruction_length_is_bad_len():
    assert _error(_patch(FLOW_MOD, INSTRUCTION_AT + 2, "!H", 12)) == (OFPET.BAD_INSTRUCTION, OFPBIC.BAD_LEN)


def test_unknown_action_is_bad_type():
    assert _error(_patch(FLOW_MOD, ACTION_AT, "!H", 99)) == (OFPET.BAD_ACTION, OFPBAC.BAD_TYPE)


def test_bad_action_length_is_bad_len():
    data = _patch(FLOW_MOD, ACTION_AT + 2, "!H", 8)   # output is 16 bytes
    assert _error(data) == (OFPET.BAD_ACTION, OFPBAC.BAD_LEN)


def test_set_field_of_unknown_field_is_bad_set_type():
    data = ofp.FlowMod(instructions=[ofp.ApplyActions([ofp.SetField("in_port", 1)])]).pack()
    at = 48 + 8 + 8 + 4   # match(8) instruction(8) action header(4)
    assert _error(_patch(data, at, "!I", (0x8000 << 16) | (90 << 9) | 4)) == (OFPET.BAD_ACTION,
                                                                             OFPBAC.BAD_SET_TYPE)


def test_error_carries_offset():
    with pytest.raises(ofp.CodecError) as info:
        ofp.parse(_patch(FLOW_MOD, ACTION_AT, "!H", 99))
    assert info.value.offset == ACTION_AT
    assert f"byte {ACTION_AT}" in str(info.value)


def test_error_reply_for_a_bad_request():
    bad = _patch(FLOW_MOD, ACTION_AT, "!H", 99)
    with pytest.raises(ofp.CodecError) as info:
        ofp.parse(bad)
    reply = ofp.parse(ofp.ErrorMsg.from_codec_error(info.value, bad).pack())
    assert (reply.type, reply.code) == (OFPET.BAD_ACTION, OFPBAC.BAD_TYPE)
    assert reply.data == bad[:64]
    assert reply.xid == struct.unpack_from("!I", bad, 4)[0]


# --- API niceties --------------------------------------------------------------

def test_messages_compare_and_print():
    a = ofp.FlowMod(priority=10, match=ofp.Match(in_port=1), instructions=[ofp.ApplyActions([ofp.Output(2)])])
    b = ofp.FlowMod(priority=10, match=ofp.Match(in_port=1), instructions=[ofp.ApplyActions([ofp.Output(2)])])
    assert a == b
    assert a != ofp.FlowMod(priority=11)
    assert "in_port=1" in repr(a) and "Output(port=2" in repr(a)


def test_hello_of_another_version_decodes():
    hello = ofp.parse(ofp.Hello(versions=None, version=1).pack())
    assert (hello.version, hello.versions) == (1, None)


def test_cidr_free_masks_round_trip():
    m = ofp.Match(ipv4_dst=("10.0.0.0", "255.255.255.0"), eth_src=("00:00:00:00:00:01", "ff:ff:ff:ff:ff:00"),
                  ipv6_src=("fe80::", "ffff:ffff::"), vlan_vid=(0x1000, 0x1000), metadata=(1, 0xFF))
    assert ofp.parse(ofp.FlowMod(match=m).pack()).match == m


def _outcome(pack):
    try:
        return pack()
    except Exception as exc:                      # the same exception, with the same text
        return type(exc), str(exc)


@pytest.mark.parametrize("field", ofp.oxm.FIELDS + ofp.oxm.EXPERIMENTER_FIELDS, ids=lambda f: f.name)
def test_match_pack_encodes_as_encode_oxm_does(field):
    """Match.pack's fast encoders give encode_oxm's bytes, or let it name the error."""
    values = [0, 1, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1, 2**64, -1, True, 1.5, "x", None, b"ab",
              "10.0.0.1", "02:00:00:00:00:01", "fe80::1", (5, None), (5, 255), (5, -1), (True, 1), (1, "b"),
              ("a", 1), (1,), (1, 2, 3), [1, 2], ("10.0.0.0", "255.0.0.0"), ("02:00:00:00:00:00", None)]

    def slow(m):
        body = b"".join(ofp.oxm.encode_oxm(k, v) for k, v in m.items())
        return struct.pack("!HH", 1, 4 + len(body)) + body + bytes(-(4 + len(body)) & 7)

    for value in values:
        m = ofp.Match()
        m[field.name] = value
        m[(0x8001, 3)] = b"\x00\x01\x06\x04\x00\x00\x00\x09"      # and an opaque OXM after it
        assert _outcome(m.pack) == _outcome(lambda: slow(m)), (field.name, value)
        del m[(0x8001, 3)]
        assert _outcome(m.pack) == _outcome(lambda: slow(m)), (field.name, value)


def test_unencodable_values_are_clear_value_errors():
    with pytest.raises(ValueError, match="in_port"):
        ofp.FlowMod(match=ofp.Match(in_port=1 << 40)).pack()
    with pytest.raises(ValueError, match="eth_type cannot be masked"):
        ofp.FlowMod(match=ofp.Match(eth_type=(0x800, 0xFFFF))).pack()
    with pytest.raises(ValueError, match="unknown OXM field"):
        ofp.FlowMod(match=ofp.Match(nonsense=1)).pack()


# --- tcp_flags: Open vSwitch's ONF experimenter OXM --------------------------------------------

def _match_with(oxm: bytes) -> bytes:
    """A flow-mod whose match is eth_type=IPv4, ip_proto=TCP and `oxm`."""
    body = struct.pack("!IH", 0x80000A02, 0x0800) + struct.pack("!IB", 0x80001401, 6) + oxm
    match = struct.pack("!HH", 1, 4 + len(body)) + body
    return _with_length(FLOW_MOD[:MATCH_AT] + match + bytes(-len(match) & 7))


def test_tcp_flags_is_the_onf_experimenter_oxm():
    """Class 0xffff, field 42, hasmask, oxm_length counting the 4-byte ONF
    experimenter id (6, or 8 with a mask), the 2-byte flags and mask: the
    bytes ovs-ofctl 3.1 sends for tcp,tcp_flags=+fin and fin|rst (the FLOW_MODs
    themselves: test_ofp_text.OVS_TCP_FLAGS_FLOW_MODS)."""
    assert (ofp.ONF_TCP_FLAGS.header(), ofp.ONF_TCP_FLAGS.header(True)) == (0xFFFF5406, 0xFFFF5508)
    tcp = ofp.Match(eth_type=0x0800, ip_proto=6)
    assert ofp.Match(tcp, tcp_flags=(0x001, 0x001)).pack().hex() == (
        "0001001b" "80000a020800" "8000140106" "ffff5508" "4f4e4600" "0001" "0001" "0000000000")
    assert ofp.Match(tcp, tcp_flags=0x005).pack().hex() == (
        "00010019" "80000a020800" "8000140106" "ffff5406" "4f4e4600" "0005" "00000000000000")
    for value in (0x005, (0x004, 0x006), (0, 0), 0xFFFF, (0xFFFF, 0xFFFF)):
        m = ofp.Match(tcp, tcp_flags=value)
        assert ofp.parse(ofp.FlowMod(match=m).pack()).match == m
    with pytest.raises(ValueError, match="tcp_flags"):
        ofp.Match(tcp_flags=0x10000).pack()
    with pytest.raises(ValueError, match="tcp_flags"):
        ofp.Match(tcp_flags=(1, "x")).pack()


def test_tcp_flags_of_a_wrong_length_is_bad_len():
    onf = struct.pack("!I", 0x4F4E4600)
    for header, payload in ((0xFFFF5407, b"\x00\x01\x00"),            # unmasked, 3 bytes
                            (0xFFFF5506, b"\x00\x01"),                # masked, no mask
                            (0xFFFF5408, b"\x00\x01\x00\x01")):       # unmasked, 4 bytes
        assert _error(_match_with(struct.pack("!I", header) + onf + payload)) == (OFPET.BAD_MATCH, OFPBMC.BAD_LEN)
    # an overrun and an experimenter OXM without its id, as before
    assert _error(_match_with(struct.pack("!I", 0xFFFF5420) + onf + b"\x00\x01")) == (OFPET.BAD_MATCH,
                                                                                     OFPBMC.BAD_LEN)
    assert _error(_match_with(struct.pack("!IH", 0xFFFF5402, 1))) == (OFPET.BAD_MATCH, OFPBMC.BAD_LEN)


def test_other_experimenter_oxms_stay_opaque():
    """Field 42 of another experimenter, and another ONF field, round-trip as bytes."""
    for key, tlv in (((0xFFFF, 42, 0x2320), "ffff5406" "00002320" "0001"),
                     ((0xFFFF, 43, 0x4F4E4600), "ffff5608" "4f4e4600" "00000001")):
        m = ofp.parse(_match_with(bytes.fromhex(tlv))).match
        assert list(m) == ["eth_type", "ip_proto", key] and m[key] == bytes.fromhex(tlv)
        assert ofp.FlowMod(match=m).pack() == _match_with(bytes.fromhex(tlv))


def test_tcp_flags_in_set_field_and_table_features_ids():
    """A set-field of tcp_flags encodes (switches refuse it: read-only);
    its table features id is the 8-byte experimenter id Open vSwitch lists."""
    from kumoflow.ofp.table_features import ExperimenterOxmId, OxmProp, oxm_id
    action = ofp.SetField("tcp_flags", 0x004)
    assert action.pack().hex() == "0019" "0010" "ffff5406" "4f4e4600" "0004" "0000"
    fm = ofp.FlowMod(instructions=[ofp.ApplyActions([action])])
    assert ofp.parse(fm.pack()) == fm
    assert oxm_id("tcp_flags", masked=True) == ExperimenterOxmId(0xFFFF5508, 0x4F4E4600)
    assert oxm_id("tcp_flags") == ExperimenterOxmId(0xFFFF5406, 0x4F4E4600)
    prop = OxmProp(ofp.OFPTFPT.MATCH, [oxm_id("tcp_dst"), oxm_id("tcp_flags", masked=True)])
    assert prop.pack().hex() == "0008" "0010" "80001c02" "ffff5508" "4f4e4600"
