"""TCP segments joined into GSO frames for a VM's port (switch/coalesce.py),
with the switch's own software segmentation (linuxport.segment, which
recomputes every checksum, IP id and flag from scratch) as the oracle: cut
again, a joined frame gives back exactly the frames it joined, and every
frame that was not joined goes out as it came, in order."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from kumoflow.switch.coalesce import MIN_RUN, join
from kumoflow.switch.linuxport import GSO_TCPV4, VNET_F_NEEDS_CSUM, VNET_HDR, segment

TS = [("NOP", None), ("NOP", None), ("Timestamp", (1, 2))]


def seg(seq: int, size: int, ip_id: int, *, flags="A", sport=5000, opts=TS, ttl=64, tos=0, ip_opts=None,
        frag="DF", fill=None, tag=False) -> bytes:
    ip = IP(src="10.77.0.1", dst="10.77.0.2", id=ip_id, flags=frag, ttl=ttl, tos=tos)
    if ip_opts:
        ip.options = ip_opts
    l2 = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    if tag:
        l2 = l2 / Dot1Q(vlan=5)
    body = bytes([(seq + i) & 0xFF for i in range(size)]) if fill is None else fill * size
    return bytes(l2 / ip / TCP(sport=sport, dport=80, seq=seq, ack=77, window=500, flags=flags, options=opts)
                 / Raw(body))


def expand(items: list) -> list[bytes]:
    """What the receiver gets: joined frames cut again by the oracle, the others as they are."""
    out = []
    for item in items:
        if type(item) is tuple:
            vnet, frame, segments = item
            flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack(vnet)
            assert (flags, gso_type, csum_start, csum_offset) == (VNET_F_NEEDS_CSUM, GSO_TCPV4, 34, 16)
            assert len(segments) >= MIN_RUN and hdr_len == len(segments[0]) - gso_size
            again = segment(frame, gso_type, gso_size, csum_start)
            assert again == segments
            out += again
        else:
            out.append(item)
    return out


def test_a_run_joins_and_cuts_back_into_the_same_frames():
    frames = [seg(1000 + 1398 * i, 1398, 40 + i) for i in range(44)] + [seg(1000 + 1398 * 44, 700, 84, flags="PA")]
    items = join(frames)
    assert len(items) == 1 and len(items[0][2]) == 45
    assert expand(items) == frames
    vnet, frame, _ = items[0]
    assert struct.unpack_from("!H", frame, 16)[0] == len(frame) - 14 and len(frame) - 14 <= 65535


def test_at_most_64k_of_ip_packet_a_frame():
    frames = [seg(1000 * i, 1000, i) for i in range(100)]
    items = join(frames)
    assert all(len(i[1]) - 14 <= 65535 for i in items if type(i) is tuple)
    assert sum(type(i) is tuple for i in items) >= 2
    assert expand(items) == frames


def test_what_does_not_join():
    good = [seg(1000 + 100 * i, 100, 7 + i) for i in range(3)]
    damaged = bytearray(good[1])
    damaged[-1] ^= 0xFF                                            # the payload changed on the way
    cases = [
        [good[0], bytes(damaged), good[2]],
        [good[0], seg(1100, 100, 8, flags="PA"), good[2]],         # PSH mid-run ends it: [0,1] join, 2 alone
        [good[0], seg(1150, 100, 8), good[2]],                     # sequence gap
        [good[0], seg(1100, 100, 9), good[2]],                     # IP ids not consecutive
        [good[0], seg(1100, 100, 8, ttl=9), good[2]],              # another TTL
        [good[0], seg(1100, 100, 8, tos=1), good[2]],              # ECN/DSCP differs
        [good[0], seg(1100, 100, 8, opts=[("NOP", None), ("NOP", None), ("Timestamp", (1, 3))]), good[2]],
        [good[0], seg(1100, 100, 8, sport=5001), good[2]],         # another flow
        [good[0], seg(1100, 120, 8), good[2]],                     # larger than the first
        [seg(1000, 100, 7, flags="SA"), seg(1100, 100, 8, flags="SA")],
        [seg(1000, 100, 7, flags="FA"), seg(1100, 100, 8, flags="FA")],
        [seg(1000, 100, 7, tag=True), seg(1100, 100, 8, tag=True)],
        [seg(1000, 100, 7, ip_opts=[b"\x01" * 4]), seg(1100, 100, 8, ip_opts=[b"\x01" * 4])],
        [seg(1000, 100, 7, frag="MF"), seg(1100, 100, 8, frag="MF")],
        [seg(1000, 100, 7)[:-3], seg(1100, 100, 8)],               # cut short
        [seg(1000, 100, 7) + b"\0\0", seg(1100, 100, 8)],          # padded past the IP length
        [seg(1000, 0, 7), seg(1000, 0, 8)],                        # no payload (pure ACKs)
    ]
    for frames in cases:
        items = join(frames)
        assert items is None or expand(items) == frames
        assert not any(type(i) is tuple and len(i[2]) == 3 for i in items or [])
    assert expand(join(good)) == good
    pushed = [good[0], seg(1100, 100, 8, flags="PA"), good[2]]          # PSH ends a run: 2 joined, then 1
    assert [len(i[2]) if type(i) is tuple else 1 for i in join(pushed)] == [2, 1]


@st.composite
def streams(draw):
    """Segments of two flows interleaved in runs, with now and then something that must not join."""
    frames = []
    state = {5000: [1000, 10], 5001: [99999, 60000]}
    for _ in range(draw(st.integers(1, 40))):
        sport = draw(st.sampled_from([5000, 5001]))
        seq, ip_id = state[sport]
        size = draw(st.sampled_from([1398, 1398, 1398, 700, 1]))
        kind = draw(st.sampled_from(["ok"] * 6 + ["psh", "gap", "bad", "other", "ack"]))
        if kind == "gap":
            seq += 5
        if kind == "ack":
            frames.append(seg(seq, 0, ip_id, sport=sport))
            state[sport] = [seq, (ip_id + 1) & 0xFFFF]
            continue
        f = seg(seq, size, ip_id, sport=sport, flags="PA" if kind == "psh" else "A")
        if kind == "bad":
            f = f[:-1] + bytes([f[-1] ^ 1])
        if kind == "other":
            f = b"\xff" * 12 + b"\x08\x06" + f[14:]
        frames.append(f)
        state[sport] = [(seq + size) & 0xFFFFFFFF, (ip_id + 1) & 0xFFFF]
    return frames


@settings(max_examples=150, deadline=None)
@given(streams())
def test_joined_or_not_the_receiver_gets_the_same_frames_in_order(frames):
    items = join(frames)
    assert items is None or expand(items) == frames


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=200), max_size=8))
def test_hostile_frames_are_left_alone(frames):
    tcpish = [b"\0" * 12 + b"\x08\x00\x45" + f for f in frames]
    for batch in (frames, tcpish):
        items = join(batch)
        assert items is None or expand(items) == batch
