"""A tunnel underlay's read batch decoded column by column (Underlay._one_run)
against the datagram-by-datagram decoder (Underlay._runs) as the oracle: the
same runs of (port, tunnel id, frames) and the same counters, for VXLAN and
NVGRE batches that are uniform (one remote, one tunnel id: the column path
takes them) and mixed with everything the column path must leave to the
oracle (other remotes and tunnel ids, bad headers, truncation, IPv4 options
and fragments, lengths that do not add up). No sockets: the datagrams are
written into the RecvBatch as recvmmsg would."""

from __future__ import annotations

import socket
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from kumoflow.switch import encap
from kumoflow.switch.mmsg import MSG_TRUNC, RecvBatch
from kumoflow.switch.tunnelport import TunnelPort, Underlay

LOCAL = "192.0.2.1"
REMOTES = ("192.0.2.2", "192.0.2.3")
STRANGER = "192.0.2.9"
SLOT = 512


def _fill(rx: RecvBatch, datagrams: list[tuple[str, bytes]]) -> int:
    """Write (source address, datagram) pairs as recvmmsg leaves them: each in its
    slot (cut to the slot, MSG_TRUNC set and the whole length told, as the kernel
    does), its length and flags in its header, its source in its name."""
    words = memoryview(rx._msgs).cast("B").cast("I")
    for i, (source, data) in enumerate(datagrams):
        kept = data[:rx.slot]
        rx.map[i * rx.slot:i * rx.slot + len(kept)] = kept
        words[16 * i + 14] = len(data)
        words[16 * i + 12] = MSG_TRUNC if len(data) > rx.slot else 0
        rx.names[16 * i:16 * i + 16] = struct.pack("=HH4s8x", socket.AF_INET, socket.htons(4789),
                                                   socket.inet_aton(source))
    words.release()
    return len(datagrams)


def _underlay(kind: str) -> Underlay:
    u = Underlay(kind, LOCAL)
    for n, remote in enumerate(REMOTES):
        u.attach(TunnelPort(10 + n, kind, LOCAL, remote))
    u._rx = RecvBatch(-1, 64, SLOT)
    return u


def _outcome(u: Underlay, runs: list) -> tuple:
    return ([(p.port_no, tid, [bytes(f) for f in frames]) for p, tid, frames in runs],
            [(p.counters.rx_errors, p.counters.rx_frame_err) for p in u.ports.values()],
            u.unknown_remote, u.truncated)


def _both(kind: str, datagrams: list) -> tuple[tuple, tuple, bool]:
    """(what read_runs makes of the batch, what the oracle makes of it, did the column path take it)."""
    fast, slow = _underlay(kind), _underlay(kind)
    n = _fill(fast._rx, datagrams)
    _fill(slow._rx, datagrams)
    one = fast._one_run(n)
    got = _outcome(fast, one or fast._runs(n))
    return got, _outcome(slow, slow._runs(n)), one is not None


# --- the datagrams ----------------------------------------------------------------------------

def _ipv4(source: str, payload: bytes, *, options: bytes = b"", frag: int = 0, total_delta: int = 0) -> bytes:
    ihl = 5 + len(options) // 4
    total = ihl * 4 + len(payload) + total_delta
    head = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total & 0xFFFF, 1, frag, 64, 47, 0,
                       socket.inet_aton(source), socket.inet_aton(LOCAL))
    return head + options + payload


frames = st.binary(min_size=14, max_size=120)
tids = st.sampled_from([0, 7, 5001, 0xFFFFFF])


@st.composite
def vxlan_datagram(draw, uniform: bool):
    frame = draw(frames)
    if uniform:
        return REMOTES[0], encap.vxlan_header(5001) + frame
    source = draw(st.sampled_from(REMOTES + (STRANGER,)))
    kind = draw(st.sampled_from(["good", "good", "no I flag", "reserved bits", "short", "long"]))
    header = encap.vxlan_header(draw(tids))
    if kind == "no I flag":
        header = b"\x00" + header[1:]
    elif kind == "reserved bits":
        header = b"\x08\xff\xff\xff" + header[4:7] + b"\x5a"
    elif kind == "short":
        frame = frame[:draw(st.integers(0, 13))]
    elif kind == "long":
        frame = frame * (SLOT // len(frame) + 1)
    return source, header + frame


@st.composite
def nvgre_datagram(draw, uniform: bool):
    frame = draw(frames)
    key = draw(st.sampled_from([0, 5001 << 8, 5001 << 8 | 3, 0xFFFFFFFF]))
    if uniform:
        return REMOTES[1], _ipv4(REMOTES[1], encap.nvgre_header(5001 << 8) + frame)
    source = draw(st.sampled_from(REMOTES + (STRANGER,)))
    kind = draw(st.sampled_from(["good", "good", "options", "fragment", "DF", "total", "bad GRE", "short",
                                 "not IPv4"]))
    gre = encap.nvgre_header(key)
    if kind == "options":
        return source, _ipv4(source, gre + frame, options=b"\x01\x01\x01\x00")
    if kind == "fragment":
        return source, _ipv4(source, gre + frame, frag=draw(st.sampled_from([0x2000, 0x0001, 0x00B9])))
    if kind == "DF":
        return source, _ipv4(source, gre + frame, frag=0x4000)
    if kind == "total":
        return source, _ipv4(source, gre + frame, total_delta=draw(st.sampled_from([-1, 1, -30])))
    if kind == "bad GRE":
        gre = draw(st.sampled_from([b"\xa0\x00\x65\x58", b"\x20\x01\x65\x58", b"\x20\x00\x08\x00",
                                    b"\x30\x00\x65\x58"])) + gre[4:]
    elif kind == "short":
        frame = frame[:draw(st.integers(0, 13))]
    elif kind == "not IPv4":
        return source, b"\x60" + _ipv4(source, gre + frame)[1:]
    return source, _ipv4(source, gre + frame)


def batches(datagram):
    return st.one_of(st.lists(datagram(True), min_size=1, max_size=64),
                     st.lists(datagram(False), min_size=1, max_size=64),
                     st.tuples(st.lists(datagram(True), min_size=1, max_size=40), datagram(False))
                     .map(lambda t: t[0] + [t[1]]))


@settings(max_examples=300, deadline=None)
@given(batches(vxlan_datagram))
def test_vxlan_batches_read_by_column_as_one_by_one(datagrams):
    got, oracle, _ = _both(encap.VXLAN, datagrams)
    assert got == oracle


@settings(max_examples=300, deadline=None)
@given(batches(nvgre_datagram))
def test_nvgre_batches_read_by_column_as_one_by_one(datagrams):
    got, oracle, _ = _both(encap.NVGRE, datagrams)
    assert got == oracle


def test_a_uniform_batch_takes_the_column_path_and_a_mixed_one_does_not():
    inner = bytes(range(60))
    vx = [(REMOTES[0], encap.vxlan_header(5001) + inner)] * 64
    got, oracle, column = _both(encap.VXLAN, vx)
    assert column and got == oracle and got[0] == [(10, 5001, [inner] * 64)]
    gre = [(REMOTES[1], _ipv4(REMOTES[1], encap.nvgre_header(5001 << 8 | 9) + inner))] * 3
    got, oracle, column = _both(encap.NVGRE, gre)
    assert column and got == oracle and got[0] == [(11, 5001 << 8 | 9, [inner] * 3)]
    for mixed in (vx[:3] + [(REMOTES[1], vx[0][1])],                          # two remotes
                  vx[:3] + [(REMOTES[0], encap.vxlan_header(5002) + inner)],  # two VNIs
                  vx[:3] + [(STRANGER, vx[0][1])] * 4):                      # a stranger
        got, oracle, column = _both(encap.VXLAN, mixed)
        assert not column and got == oracle
