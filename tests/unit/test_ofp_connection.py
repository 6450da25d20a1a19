"""The sans-IO channel: framing in any chunking, version negotiation, echo, xids."""

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from kumoflow import ofp
from kumoflow.ofp import OFPET, OFPHFC


def _pair():
    """A controller end and a switch end joined through memory."""
    controller, switch = ofp.Connection(), ofp.Connection()
    assert switch.receive_data(controller.data_to_send())[0] == ofp.Hello(xid=1)
    assert isinstance(controller.receive_data(switch.data_to_send())[0], ofp.Hello)
    assert controller.version == switch.version == 4
    return controller, switch


def test_hello_exchange_through_memory():
    controller, switch = _pair()
    xid = controller.send(ofp.FeaturesRequest())
    [request] = switch.receive_data(controller.data_to_send())
    assert request == ofp.FeaturesRequest(xid=xid)
    switch.send(ofp.FeaturesReply(datapath_id=7, xid=request.xid))
    [reply] = controller.receive_data(switch.data_to_send())
    assert reply == ofp.FeaturesReply(datapath_id=7, xid=xid)


STREAM = [
    ofp.EchoReply(b"abc", xid=11),
    ofp.FlowMod(priority=5, match=ofp.Match(in_port=3), instructions=[ofp.ApplyActions([ofp.Output(1)])], xid=12),
    ofp.PacketIn(match=ofp.Match(in_port=2), data=bytes(range(60)), xid=13),
    ofp.BarrierRequest(xid=14),
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 64), max_size=40))
def test_any_chunking_gives_the_same_messages(cuts):
    _, switch = _pair()
    data = b"".join(m.pack() for m in STREAM)
    events, o = [], 0
    for size in cuts:
        events += switch.receive_data(data[o:o + size])
        o += size
    events += switch.receive_data(data[o:])
    assert events == STREAM


def test_echo_requests_are_answered_automatically():
    controller, switch = _pair()
    controller.send(ofp.EchoRequest(b"ping", xid=99))
    assert switch.receive_data(controller.data_to_send()) == []
    assert controller.receive_data(switch.data_to_send()) == [ofp.EchoReply(b"ping", xid=99)]


def test_xids_are_fresh_and_never_zero():
    conn = ofp.Connection(first_xid=0xFFFFFFFE)
    xids = [conn.next_xid() for _ in range(4)]
    assert 0 not in xids and len(set(xids)) == 4


def test_bad_message_is_reported_and_channel_stays_up():
    controller, switch = _pair()
    bad = struct.pack("!BBHI", 4, 99, 8, 42)
    events = switch.receive_data(bad + ofp.BarrierRequest(xid=43).pack())
    assert isinstance(events[0], ofp.BadMessage)
    assert events[0].error.code == ofp.OFPBRC.BAD_TYPE
    assert events[1] == ofp.BarrierRequest(xid=43)
    switch.reject(events[0])
    [error] = controller.receive_data(switch.data_to_send())
    assert (error.type, error.code, error.xid, error.data) == (OFPET.BAD_REQUEST, ofp.OFPBRC.BAD_TYPE, 42, bad)
    assert not switch.closed


def test_version_bitmap_negotiates_highest_common():
    conn = ofp.Connection()
    conn.data_to_send()
    [hello] = conn.receive_data(ofp.Hello(versions=frozenset({1, 4, 5}), version=5).pack())
    assert conn.version == 4 and hello.versions == {1, 4, 5}


def test_peer_without_bitmap_negotiates_lower_version():
    conn = ofp.Connection()
    conn.data_to_send()
    conn.receive_data(ofp.Hello(versions=None, version=6).pack())
    assert conn.version == 4


def test_openflow10_peer_gets_hello_failed_incompatible():
    conn = ofp.Connection()
    conn.data_to_send()
    events = conn.receive_data(ofp.Hello(versions=None, version=1).pack())
    assert isinstance(events[-1], ofp.ChannelClosed) and conn.closed
    out = conn.data_to_send()
    assert out[0] == 1            # answered in the peer's version
    err = ofp.parse(b"\x04" + out[1:])
    assert (err.type, err.code) == (OFPET.HELLO_FAILED, OFPHFC.INCOMPATIBLE)
    assert b"1.3" in err.data or b"[4]" in err.data


def test_no_common_version_in_bitmaps_fails():
    conn = ofp.Connection()
    conn.data_to_send()
    events = conn.receive_data(ofp.Hello(versions=frozenset({1, 2, 3}), version=3).pack())
    assert isinstance(events[-1], ofp.ChannelClosed)


def test_message_before_hello_fails():
    conn = ofp.Connection()
    conn.data_to_send()
    events = conn.receive_data(ofp.BarrierRequest(xid=1).pack())
    assert isinstance(events[-1], ofp.ChannelClosed)
    err = ofp.parse(conn.data_to_send())
    assert err.type == OFPET.HELLO_FAILED


def test_broken_framing_closes():
    _, switch = _pair()
    events = switch.receive_data(struct.pack("!BBHI", 4, 0, 4, 0))
    assert isinstance(events[-1], ofp.ChannelClosed) and switch.closed
    assert switch.receive_data(ofp.BarrierRequest().pack()) == []
