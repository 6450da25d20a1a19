"""Wireshark's OpenFlow 1.3 dissector as an oracle for kumoflow's encoder.

kumoflow encodes a representative set of messages; they are written into a
pcap as one TCP stream to port 6653 (a three-way handshake, then one message
per segment with consecutive sequence numbers, so tshark's reassembly sees an
ordinary connection). ``tshark -T pdml`` decodes the file once and each test
compares one message's decoded tree with what kumoflow was asked to encode:

- no "Malformed Packet", no expert info of warning or error severity, and no
  "undecoded" note anywhere in the frame;
- every byte of the message is claimed by some field of the dissection;
- the whole decoded tree, in order, equals the tree expected from the
  kumoflow objects: header, fixed fields, match (field, mask, value),
  instructions, actions, buckets, meter bands, ports, multipart bodies.

The expected trees are built here from the OpenFlow 1.3.5 specification
(type numbers, field sizes, structure lengths) and the Python values given to
kumoflow, never from kumoflow's own tables or bytes. OXM values and masks are
compared as wire bytes, converted on each side independently: tshark's shown
value (an address, a number) back to bytes, and the Python value to bytes by
the spec's size for that field.

The tests that run tshark are marked ``tshark``: skipped without tshark on a
developer machine, a failure in CI (see tests/conftest.py).
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from kumoflow import ofp


OF_PORT = 6653

# --- the specification (OpenFlow 1.3.5, section 7) -------------------------------

OFPT_NUM = {
    "HELLO": 0, "ERROR": 1, "ECHO_REQUEST": 2, "ECHO_REPLY": 3, "EXPERIMENTER": 4,
    "FEATURES_REQUEST": 5, "FEATURES_REPLY": 6, "GET_CONFIG_REQUEST": 7, "GET_CONFIG_REPLY": 8,
    "SET_CONFIG": 9, "PACKET_IN": 10, "FLOW_REMOVED": 11, "PORT_STATUS": 12, "PACKET_OUT": 13,
    "FLOW_MOD": 14, "GROUP_MOD": 15, "PORT_MOD": 16, "TABLE_MOD": 17, "MULTIPART_REQUEST": 18,
    "MULTIPART_REPLY": 19, "BARRIER_REQUEST": 20, "BARRIER_REPLY": 21, "ROLE_REQUEST": 24,
    "ROLE_REPLY": 25, "SET_ASYNC": 28, "METER_MOD": 29,
}
OFPMP_NUM = {
    "DESC": 0, "FLOW": 1, "AGGREGATE": 2, "TABLE": 3, "PORT_STATS": 4, "QUEUE": 5, "GROUP": 6,
    "GROUP_DESC": 7, "GROUP_FEATURES": 8, "METER": 9, "METER_CONFIG": 10, "METER_FEATURES": 11,
    "TABLE_FEATURES": 12, "PORT_DESC": 13,
}
OFPIT_NUM = {"GOTO_TABLE": 1, "WRITE_METADATA": 2, "WRITE_ACTIONS": 3, "APPLY_ACTIONS": 4,
             "CLEAR_ACTIONS": 5, "METER": 6}
OFPAT_NUM = {
    "OUTPUT": 0, "COPY_TTL_OUT": 11, "COPY_TTL_IN": 12, "SET_MPLS_TTL": 15, "DEC_MPLS_TTL": 16,
    "PUSH_VLAN": 17, "POP_VLAN": 18, "PUSH_MPLS": 19, "POP_MPLS": 20, "SET_QUEUE": 21, "GROUP": 22,
    "SET_NW_TTL": 23, "DEC_NW_TTL": 24, "SET_FIELD": 25, "PUSH_PBB": 26, "POP_PBB": 27,
}
OFPMBT_NUM = {"DROP": 1, "DSCP_REMARK": 2}

# OXM_OF_* (table 12): name -> (field number, payload bytes)
OXM_SPEC = {
    "in_port": (0, 4), "in_phy_port": (1, 4), "metadata": (2, 8), "eth_dst": (3, 6), "eth_src": (4, 6),
    "eth_type": (5, 2), "vlan_vid": (6, 2), "vlan_pcp": (7, 1), "ip_dscp": (8, 1), "ip_ecn": (9, 1),
    "ip_proto": (10, 1), "ipv4_src": (11, 4), "ipv4_dst": (12, 4), "tcp_src": (13, 2), "tcp_dst": (14, 2),
    "udp_src": (15, 2), "udp_dst": (16, 2), "sctp_src": (17, 2), "sctp_dst": (18, 2),
    "icmpv4_type": (19, 1), "icmpv4_code": (20, 1), "arp_op": (21, 2), "arp_spa": (22, 4),
    "arp_tpa": (23, 4), "arp_sha": (24, 6), "arp_tha": (25, 6), "ipv6_src": (26, 16), "ipv6_dst": (27, 16),
    "ipv6_flabel": (28, 4), "icmpv6_type": (29, 1), "icmpv6_code": (30, 1), "ipv6_nd_target": (31, 16),
    "ipv6_nd_sll": (32, 6), "ipv6_nd_tll": (33, 6), "mpls_label": (34, 4), "mpls_tc": (35, 1),
    "mpls_bos": (36, 1), "pbb_isid": (37, 3), "tunnel_id": (38, 8), "ipv6_exthdr": (39, 2),
}
OXM_BY_CODE = {code: name for name, (code, _) in OXM_SPEC.items()}

# Fixed-layout actions: OFPAT name -> [(tshark field after "action.", python attribute)]
ACTION_PARAMS = {
    "OUTPUT": [("output.port", "port"), ("output.max_len", "max_len")],
    "SET_MPLS_TTL": [("set_mpls_ttl.ttl", "mpls_ttl")],
    "PUSH_VLAN": [("push_vlan.ethertype", "ethertype")],
    "PUSH_MPLS": [("push_mpls.ethertype", "ethertype")],
    "POP_MPLS": [("pop_mpls.ethertype", "ethertype")],
    "SET_QUEUE": [("set_queue.queue_id", "queue_id")],
    "GROUP": [("group.group_id", "group_id")],
    "SET_NW_TTL": [("set_nw_ttl.ttl", "nw_ttl")],
    "PUSH_PBB": [("push_pbb.ethertype", "ethertype")],
}


def spec_oxm_id(name: str, masked: bool = False) -> int:
    """The 32-bit OXM header of an OpenFlow-basic field (section 7.2.3.2)."""
    code, size = OXM_SPEC[name]
    return 0x8000 << 16 | code << 9 | int(masked) << 8 | size * (2 if masked else 1)


def pad8(n: int) -> int:
    return -n & 7


def upper_snake(camel: str) -> str:
    """ApplyActions -> APPLY_ACTIONS, CopyTtlOut -> COPY_TTL_OUT."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).upper()


# --- a pcap of one TCP connection -------------------------------------------------

def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass(frozen=True)
class Endpoint:
    mac: bytes
    ip: bytes
    port: int


CONTROLLER = Endpoint(bytes.fromhex("020000000001"), bytes([192, 0, 2, 1]), 41000)
SWITCH = Endpoint(bytes.fromhex("020000000002"), bytes([192, 0, 2, 2]), OF_PORT)


def tcp_frame(src: Endpoint, dst: Endpoint, seq: int, ack: int, flags: int, payload: bytes) -> bytes:
    """Ethernet/IPv4/TCP around `payload`, with correct lengths and checksums."""
    tcp = struct.pack("!HHIIBBHHH", src.port, dst.port, seq, ack, 5 << 4, flags, 65535, 0, 0)
    pseudo = src.ip + dst.ip + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp + payload)) + tcp[18:]
    total = 20 + len(tcp) + len(payload)
    assert total <= 0xFFFF, "one message per segment must fit an IPv4 packet"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, 6, 0, src.ip, dst.ip)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return dst.mac + src.mac + b"\x08\x00" + ip + tcp + payload


SYN, ACK, PSH = 0x02, 0x10, 0x08


def build_pcap(messages: list[tuple[bool, bytes, int | None]]) -> tuple[bytes, list[int]]:
    """A pcap of one controller<->switch connection carrying `messages`.

    Each message is (to_switch, bytes, segment_size): sent as one TCP segment,
    or cut into segments of `segment_size` bytes (to exercise reassembly).
    Returns the file and, per message, the number of the frame that
    completes it (1-based, as tshark counts).
    """
    seq = {True: 100_000, False: 900_000}  # next sequence number, by direction
    frames: list[bytes] = []

    def send(to_switch: bool, flags: int, payload: bytes = b"") -> int:
        src, dst = (CONTROLLER, SWITCH) if to_switch else (SWITCH, CONTROLLER)
        ack = seq[not to_switch] if flags & ACK else 0
        frames.append(tcp_frame(src, dst, seq[to_switch], ack, flags, payload))
        seq[to_switch] += len(payload) + (1 if flags & SYN else 0)
        return len(frames)

    send(True, SYN)
    send(False, SYN | ACK)
    send(True, ACK)
    last_frames = []
    for to_switch, payload, segment_size in messages:
        step = segment_size or len(payload)
        for i in range(0, len(payload), step):
            frame = send(to_switch, PSH | ACK if i + step >= len(payload) else ACK, payload[i:i + step])
        last_frames.append(frame)

    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]  # LINKTYPE_ETHERNET
    for i, frame in enumerate(frames):
        out.append(struct.pack("<IIII", 1_700_000_000 + i // 1000, (i % 1000) * 1000, len(frame), len(frame)) + frame)
    return b"".join(out), last_frames


# --- sample frames carried in packet-in / packet-out -------------------------------

FRAME_SRC_MAC, FRAME_DST_MAC = "52:54:00:12:34:56", "52:54:00:ab:cd:ef"
FRAME_SRC_IP, FRAME_DST_IP = "10.1.2.3", "10.9.8.7"
FRAME_SPORT, FRAME_DPORT = 38001, 38002  # no dissector registered on either


def udp_frame(payload_len: int = 58) -> bytes:
    """A real Ethernet/IPv4/UDP frame (14 + 20 + 8 + payload bytes), checksums correct."""
    src_ip = ipaddress.IPv4Address(FRAME_SRC_IP).packed
    dst_ip = ipaddress.IPv4Address(FRAME_DST_IP).packed
    payload = bytes((i * 7) & 0xFF for i in range(payload_len))
    udp = struct.pack("!HHHH", FRAME_SPORT, FRAME_DPORT, 8 + len(payload), 0) + payload
    csum = _checksum(src_ip + dst_ip + struct.pack("!BBH", 0, 17, len(udp)) + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0x1234, 0, 64, 17, 0, src_ip, dst_ip)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    mac = lambda m: bytes.fromhex(m.replace(":", ""))  # noqa: E731
    return mac(FRAME_DST_MAC) + mac(FRAME_SRC_MAC) + b"\x08\x00" + ip + udp


# --- the messages ------------------------------------------------------------------

def flow_mod_ipv4_tcp() -> ofp.Message:
    """Many match fields, every instruction kind, many action kinds."""
    return ofp.FlowMod(
        cookie=0x0123456789ABCDEF, cookie_mask=0xFFFF0000FFFF0000, table_id=3, command=0,
        idle_timeout=30, hard_timeout=300, priority=40000, buffer_id=0xFFFFFFFF,
        out_port=0xFFFFFFFF, out_group=0xFFFFFFFF, flags=0b00101,
        match=ofp.Match(
            in_port=7, in_phy_port=8, metadata=(0xDEADBEEF00000000, 0xFFFFFFFF00000000),
            eth_dst=("01:00:5e:00:00:00", "ff:ff:ff:80:00:00"), eth_src=("00:11:22:33:44:55", "ff:ff:ff:ff:ff:00"),
            eth_type=0x0800, vlan_vid=(0x1000 | 100, 0x1FFF), vlan_pcp=5, ip_dscp=46, ip_ecn=1, ip_proto=6,
            ipv4_src=("10.0.0.0", "255.0.0.0"), ipv4_dst=("192.168.10.0", "255.255.255.0"),
            tcp_src=49152, tcp_dst=443, tunnel_id=(0x00AB_CDEF, 0x00FF_FFFF),
        ),
        instructions=[
            ofp.Meter(17),
            ofp.ApplyActions([
                ofp.SetField("eth_dst", "02:aa:bb:cc:dd:ee"), ofp.SetField("ipv4_src", "172.16.0.1"),
                ofp.SetField("vlan_vid", 0x1000 | 200), ofp.SetField("tcp_dst", 8443),
                ofp.PushVlan(0x88A8), ofp.SetQueue(4), ofp.DecNwTtl(), ofp.SetNwTtl(33),
                ofp.CopyTtlOut(), ofp.CopyTtlIn(), ofp.Output(2, 0xFFFF), ofp.Output(0xFFFFFFFD, 128),
            ]),
            ofp.ClearActions(),
            ofp.WriteActions([ofp.Group(9), ofp.PopVlan(), ofp.Output(3)]),
            ofp.WriteMetadata(0x00000000CAFE0000, 0x00000000FFFF0000),
            ofp.GotoTable(4),
        ],
        xid=0x11,
    )


def flow_mod_ipv6_udp() -> ofp.Message:
    return ofp.FlowMod(
        table_id=1, priority=100, command=1,
        match=ofp.Match(
            in_port=1, eth_type=0x86DD, ipv6_src=("2001:db8:1::", "ffff:ffff:ffff::"),
            ipv6_dst=("2001:db8::10", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ipv6_flabel=(0x12345, 0xFFFFF), ipv6_exthdr=(0x0004, 0x01FF), ip_proto=17, udp_src=546, udp_dst=547,
        ),
        instructions=[ofp.ApplyActions([
            ofp.SetField("ipv6_dst", "2001:db8::99"), ofp.SetField("udp_dst", 5547),
            ofp.SetField("ipv6_flabel", 0x54321), ofp.Output(5),
        ])],
        xid=0x12,
    )


def flow_mod_icmpv6_nd() -> ofp.Message:
    return ofp.FlowMod(
        table_id=2,
        match=ofp.Match(eth_type=0x86DD, ip_proto=58, icmpv6_type=135, icmpv6_code=0,
                        ipv6_nd_target="fe80::1:2ff:fe03:405", ipv6_nd_sll="00:01:02:03:04:05"),
        instructions=[ofp.ApplyActions([ofp.Output(0xFFFFFFFD, 0xFFFF)])],
        xid=0x13,
    )


def flow_mod_icmpv6_na() -> ofp.Message:
    return ofp.FlowMod(
        table_id=2,
        match=ofp.Match(eth_type=0x86DD, ip_proto=58, icmpv6_type=136, icmpv6_code=0,
                        ipv6_nd_target="2001:db8::5", ipv6_nd_tll="00:0a:0b:0c:0d:0e"),
        instructions=[ofp.ApplyActions([ofp.SetField("ipv6_nd_tll", "00:00:00:00:00:01"), ofp.Output(1)])],
        xid=0x14,
    )


def flow_mod_arp() -> ofp.Message:
    return ofp.FlowMod(
        match=ofp.Match(eth_type=0x0806, arp_op=1, arp_spa=("10.0.0.0", "255.255.0.0"),
                        arp_tpa=("10.0.3.4", "255.255.255.255"),
                        arp_sha=("00:00:00:00:00:0a", "ff:ff:ff:ff:ff:ff"),
                        arp_tha=("00:00:5e:00:00:00", "ff:ff:ff:00:00:00")),
        instructions=[ofp.ApplyActions([ofp.SetField("arp_op", 2), ofp.SetField("arp_tpa", "10.0.0.1"),
                                        ofp.SetField("arp_sha", "02:00:00:00:00:99"), ofp.Output(0xFFFFFFF8)])],
        xid=0x15,
    )


def flow_mod_icmpv4_sctp() -> ofp.Message:
    return ofp.FlowMod(
        match=ofp.Match(eth_type=0x0800, ip_proto=132, sctp_src=2905, sctp_dst=36412),
        instructions=[ofp.ApplyActions([ofp.SetField("sctp_dst", 3868), ofp.SetField("ip_dscp", 10),
                                        ofp.SetField("ip_ecn", 2), ofp.Output(0xFFFFFFFB)])],
        xid=0x16,
    )


def flow_mod_icmpv4() -> ofp.Message:
    return ofp.FlowMod(
        command=3, out_port=4, out_group=0xFFFFFFFF,
        match=ofp.Match(eth_type=0x0800, ip_proto=1, icmpv4_type=8, icmpv4_code=0),
        xid=0x17,
    )


def flow_mod_mpls() -> ofp.Message:
    return ofp.FlowMod(
        match=ofp.Match(in_port=2, eth_type=0x8847, mpls_label=0xABCDE, mpls_tc=5, mpls_bos=1),
        instructions=[ofp.ApplyActions([
            ofp.SetMplsTtl(40), ofp.DecMplsTtl(), ofp.SetField("mpls_label", 0x12345), ofp.SetField("mpls_tc", 3),
            ofp.PopMpls(0x0800), ofp.PushMpls(0x8848), ofp.SetField("mpls_bos", 1), ofp.Output(6),
        ])],
        xid=0x18,
    )


def flow_mod_pbb() -> ofp.Message:
    return ofp.FlowMod(
        match=ofp.Match(eth_type=0x88E7, pbb_isid=(0x123456, 0xFFFF00)),
        instructions=[ofp.ApplyActions([ofp.PopPbb(), ofp.PushPbb(0x88E7), ofp.SetField("pbb_isid", 0x00ABCD),
                                        ofp.SetField("tunnel_id", 0x1122334455667788), ofp.Output(7)])],
        xid=0x19,
    )


def group_mod_select() -> ofp.Message:
    return ofp.GroupMod(
        command=0, type=1, group_id=50,
        buckets=[
            ofp.Bucket([ofp.SetField("eth_dst", "00:00:00:00:01:01"), ofp.Output(1)], weight=10),
            ofp.Bucket([ofp.SetField("eth_dst", "00:00:00:00:01:02"), ofp.SetQueue(2), ofp.Output(2)], weight=20),
            ofp.Bucket([ofp.PushVlan(), ofp.SetField("vlan_vid", 0x1000 | 7), ofp.Output(3)], weight=70,
                       watch_port=3),
        ],
        xid=0x21,
    )


def group_mod_fast_failover() -> ofp.Message:
    return ofp.GroupMod(
        command=1, type=3, group_id=51,
        buckets=[ofp.Bucket([ofp.Output(1)], watch_port=1), ofp.Bucket([ofp.Group(50)], watch_group=50)],
        xid=0x22,
    )


def meter_mod() -> ofp.Message:
    return ofp.MeterMod(
        command=0, flags=0b1101, meter_id=17,
        bands=[ofp.MeterBandDrop(rate=10_000, burst_size=1_000),
               ofp.MeterBandDscpRemark(rate=5_000, burst_size=500, prec_level=2)],
        xid=0x23,
    )


def packet_in() -> ofp.Message:
    frame = udp_frame()
    return ofp.PacketIn(buffer_id=0xFFFFFFFF, total_len=len(frame), reason=1, table_id=4,
                        cookie=0xFEEDFACE, match=ofp.Match(in_port=3, metadata=42, tunnel_id=5000),
                        data=frame, xid=0)


def packet_out() -> ofp.Message:
    return ofp.PacketOut(buffer_id=0xFFFFFFFF, in_port=0xFFFFFFFD,
                         actions=[ofp.SetField("vlan_vid", 0x1000 | 10), ofp.Output(1), ofp.Output(0xFFFFFFFB)],
                         data=udp_frame(30), xid=0x31)


def port_status() -> ofp.Message:
    return ofp.PortStatus(reason=2, desc=ofp.Port(
        port_no=7, hw_addr="02:00:00:00:00:07", name="veth-sw1-7", config=0x41, state=0x4,
        curr=0x2840, advertised=0x2820, supported=0x282F, peer=0x820, curr_speed=10_000_000,
        max_speed=40_000_000), xid=0)


def failed_request() -> ofp.Message:
    return ofp.FlowMod(match=ofp.Match(in_port=1), instructions=[ofp.ApplyActions([ofp.Output(9)])], xid=0x41)


def error_msg() -> ofp.Message:
    # The data is the whole failed request. (With only its first 64 bytes,
    # Wireshark 4.0 dissects the truncated inner message and flags the
    # frame as malformed, although the spec allows exactly that.)
    return ofp.ErrorMsg(type=2, code=4, data=failed_request().pack(), xid=0x41)


def features_reply() -> ofp.Message:
    return ofp.FeaturesReply(datapath_id=0x0000_0242_AC11_0002, n_buffers=256, n_tables=254, auxiliary_id=0,
                             capabilities=0x4F, reserved=0, xid=0x51)


def flow_removed() -> ofp.Message:
    return ofp.FlowRemoved(cookie=0xC0FFEE, priority=1000, reason=1, table_id=2, duration_sec=61,
                           duration_nsec=500_000_000, idle_timeout=0, hard_timeout=60, packet_count=1234,
                           byte_count=567_890, match=ofp.Match(in_port=4, eth_type=0x0800,
                                                               ipv4_dst=("10.0.0.0", "255.255.255.0")),
                           xid=0)


def hello() -> ofp.Message:
    return ofp.Hello(xid=0x61)


def role_request() -> ofp.Message:
    return ofp.RoleRequest(role=2, generation_id=0x0102030405060708, xid=0x62)


def port_mod() -> ofp.Message:
    return ofp.PortMod(port_no=3, hw_addr="02:00:00:00:00:03", config=0x1, mask=0x1, advertise=0x28, xid=0x63)


@dataclass
class Case:
    id: str
    to_switch: bool
    build: Callable[[], ofp.Message]
    msg: ofp.Message | None = None
    data: bytes = b""
    frame: int = 0
    segment_size: int | None = None  # cut the message into TCP segments of this size


CASES = [
    Case("flow_mod_ipv4_tcp", True, flow_mod_ipv4_tcp),
    Case("flow_mod_ipv6_udp", True, flow_mod_ipv6_udp),
    Case("flow_mod_icmpv6_nd", True, flow_mod_icmpv6_nd),
    Case("flow_mod_icmpv6_na", True, flow_mod_icmpv6_na),
    Case("flow_mod_arp", True, flow_mod_arp),
    Case("flow_mod_sctp", True, flow_mod_icmpv4_sctp),
    Case("flow_mod_icmpv4_delete", True, flow_mod_icmpv4),
    Case("flow_mod_mpls", True, flow_mod_mpls),
    Case("flow_mod_pbb", True, flow_mod_pbb),
    Case("group_mod_select", True, group_mod_select),
    Case("group_mod_fast_failover", True, group_mod_fast_failover),
    Case("meter_mod", True, meter_mod),
    Case("packet_in", False, packet_in),
    Case("packet_out", True, packet_out),
    Case("port_status", False, port_status),
    Case("error", False, error_msg),
    Case("features_reply", False, features_reply),
    Case("flow_removed", False, flow_removed),
    Case("hello", True, hello),
    Case("role_request", True, role_request),
    Case("port_mod", True, port_mod),
]


def flow_stats_reply() -> ofp.Message:
    return ofp.FlowStatsReply(body=[
        ofp.FlowStats(table_id=0, duration_sec=100, duration_nsec=250, priority=10, idle_timeout=60,
                      hard_timeout=0, flags=1, cookie=0xAB, packet_count=1000, byte_count=64000,
                      match=ofp.Match(in_port=1, eth_type=0x0800, ipv4_dst=("10.0.0.0", "255.255.0.0")),
                      instructions=[ofp.ApplyActions([ofp.Output(2)]), ofp.GotoTable(1)]),
        ofp.FlowStats(table_id=1, duration_sec=5, priority=0, cookie=0, match=ofp.Match(),
                      instructions=[ofp.ApplyActions([ofp.Output(0xFFFFFFFD, 0xFFFF)])]),
        ofp.FlowStats(table_id=1, priority=200, match=ofp.Match(eth_dst="00:00:00:00:00:02", vlan_vid=0x1000 | 3),
                      instructions=[ofp.Meter(1), ofp.WriteActions([ofp.Group(7)])]),
    ], flags=1, xid=0x71)


def port_stats_reply() -> ofp.Message:
    return ofp.PortStatsReply(body=[
        ofp.PortStats(port_no=n, rx_packets=10 * n, tx_packets=11 * n, rx_bytes=1000 * n, tx_bytes=1100 * n,
                      rx_dropped=n, tx_dropped=2 * n, rx_errors=3 * n, tx_errors=4 * n, rx_frame_err=5 * n,
                      rx_over_err=6 * n, rx_crc_err=7 * n, collisions=8 * n, duration_sec=90 + n % 100,
                      duration_nsec=1000 * (n % 1000))
        for n in (1, 2, 0xFFFFFFFE)
    ], xid=0x72)


def desc_reply() -> ofp.Message:
    return ofp.DescReply(mfr_desc="kumoflow project", hw_desc="software switch", sw_desc="kumoflow 0.1.0",
                         serial_num="KF-0001", dp_desc="sw1 in the test bed", xid=0x73)


def group_desc_reply() -> ofp.Message:
    return ofp.GroupDescReply(body=[
        ofp.GroupDesc(type=1, group_id=50, buckets=[
            ofp.Bucket([ofp.Output(1)], weight=1), ofp.Bucket([ofp.SetField("ipv4_dst", "10.0.0.9"), ofp.Output(2)],
                                                              weight=3)]),
        ofp.GroupDesc(type=0, group_id=60, buckets=[ofp.Bucket([ofp.Output(1)]), ofp.Bucket([ofp.Output(2)])]),
        ofp.GroupDesc(type=2, group_id=70, buckets=[ofp.Bucket([ofp.DecNwTtl(), ofp.Output(4)])]),
    ], xid=0x74)


def meter_config_reply() -> ofp.Message:
    return ofp.MeterConfigReply(body=[
        ofp.MeterConfig(flags=0b0101, meter_id=1, bands=[ofp.MeterBandDrop(rate=1000, burst_size=100)]),
        ofp.MeterConfig(flags=0b1010, meter_id=2, bands=[
            ofp.MeterBandDscpRemark(rate=200, burst_size=20, prec_level=1), ofp.MeterBandDrop(rate=400)]),
    ], xid=0x75)


def table_features_reply() -> ofp.Message:
    tf = ofp.table_features
    return ofp.TableFeaturesReply(body=[
        ofp.TableFeatures(table_id=0, name="classifier", metadata_match=0xFFFF, metadata_write=0xFFFF0000,
                          config=0, max_entries=100_000, properties=[
                              tf.InstructionsProp(0, [1, 2, 3, 4, 5, 6]),
                              tf.InstructionsProp(1, [1, 4]),
                              tf.NextTablesProp(2, [1, 2, 3]),
                              tf.NextTablesProp(3, [1]),
                              tf.ActionsProp(4, [0, 21, 22]),
                              tf.ActionsProp(6, [0, 11, 12, 15, 16, 17, 18, 19, 20, 23, 24, 25, 26, 27]),
                              tf.OxmProp(8, [spec_oxm_id("in_port"), spec_oxm_id("eth_dst", True),
                                             spec_oxm_id("ipv4_src", True), spec_oxm_id("tcp_dst")]),
                              tf.OxmProp(10, [spec_oxm_id("in_port"), spec_oxm_id("eth_dst")]),
                              tf.OxmProp(14, [spec_oxm_id("eth_src"), spec_oxm_id("vlan_vid")]),
                          ]),
        ofp.TableFeatures(table_id=1, name="acl", max_entries=4096,
                          properties=[tf.InstructionsProp(0, [4, 5]), tf.NextTablesProp(2, [])]),
    ], xid=0x76)


def port_desc_reply() -> ofp.Message:
    return ofp.PortDescReply(body=[
        ofp.Port(port_no=1, hw_addr="02:00:00:00:01:01", name="eth1", state=4, curr=0x2820, curr_speed=1_000_000,
                 max_speed=1_000_000),
        ofp.Port(port_no=2, hw_addr="02:00:00:00:01:02", name="eth2", config=1, state=1),
        ofp.Port(port_no=0xFFFFFFFE, hw_addr="02:00:00:00:01:ff", name="br0", config=1),
    ], xid=0x77)


def aggregate_stats_reply() -> ofp.Message:
    return ofp.AggregateStatsReply(packet_count=123_456_789_012, byte_count=98_765_432_109_876, flow_count=4321,
                                   xid=0x7A)


def table_stats_reply() -> ofp.Message:
    return ofp.TableStatsReply(body=[ofp.TableStats(table_id=t, active_count=10 * t, lookup_count=1000 + t,
                                                    matched_count=900 + t) for t in (0, 1, 254)], xid=0x7B)


def queue_stats_reply() -> ofp.Message:
    return ofp.QueueStatsReply(body=[
        ofp.QueueStats(port_no=1, queue_id=0, tx_bytes=1500, tx_packets=1, tx_errors=0, duration_sec=3,
                       duration_nsec=4),
        ofp.QueueStats(port_no=2, queue_id=7, tx_bytes=2**40, tx_packets=2**33, tx_errors=5, duration_sec=6,
                       duration_nsec=7),
    ], xid=0x7C)


def group_stats_reply() -> ofp.Message:
    return ofp.GroupStatsReply(body=[
        ofp.GroupStats(group_id=50, ref_count=2, packet_count=300, byte_count=45_000, duration_sec=9,
                       duration_nsec=10, bucket_stats=[ofp.BucketCounter(100, 15_000), ofp.BucketCounter(200, 30_000)]),
        ofp.GroupStats(group_id=51, ref_count=0),
    ], xid=0x7D)


def meter_stats_reply() -> ofp.Message:
    return ofp.MeterStatsReply(body=[
        ofp.MeterStats(meter_id=17, flow_count=3, packet_in_count=5000, byte_in_count=7_500_000, duration_sec=11,
                       duration_nsec=12, band_stats=[ofp.MeterBandStats(40, 60_000), ofp.MeterBandStats(2, 3000)]),
    ], xid=0x7E)


def group_features_reply() -> ofp.Message:
    return ofp.GroupFeaturesReply(types=0b1111, capabilities=0b0101, max_groups=(100, 200, 300, 400),
                                  actions=(0x01FFF801, 0x1, 0x2000001, 0x400001), xid=0x7F)


def meter_features_reply() -> ofp.Message:
    return ofp.MeterFeaturesReply(max_meter=1024, band_types=0b110, capabilities=0b1111, max_bands=4, max_color=8,
                                  xid=0x80)


def flow_stats_entries(n: int) -> list:
    """`n` typical flow-stats entries: a few match fields and one apply-actions."""
    return [ofp.FlowStats(table_id=i % 4, duration_sec=i, duration_nsec=1000 * i, priority=i % 65536,
                          idle_timeout=60, hard_timeout=0, cookie=i, packet_count=10 * i, byte_count=1500 * i,
                          match=ofp.Match(in_port=1 + i % 48, eth_type=0x0800,
                                          ipv4_dst=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"),
                          instructions=[ofp.ApplyActions([ofp.Output(1 + (i + 1) % 48)])])
            for i in range(n)]


def flow_stats_1000() -> list[ofp.Message]:
    """1,000 entries do not fit one message (16-bit length): the sender splits them."""
    parts = ofp.split_multipart(ofp.FlowStatsReply(body=flow_stats_entries(1000), xid=0x79))
    assert len(parts) == 2
    return parts


def flow_stats_request() -> ofp.Message:
    return ofp.FlowStatsRequest(table_id=0xFF, out_port=0xFFFFFFFF, out_group=0xFFFFFFFF, cookie=0x10,
                                cookie_mask=0xF0, match=ofp.Match(in_port=1, eth_type=0x0800), xid=0x78)


CASES += [
    Case("flow_stats_reply", False, flow_stats_reply),
    Case("port_stats_reply", False, port_stats_reply),
    Case("desc_reply", False, desc_reply),
    Case("group_desc_reply", False, group_desc_reply),
    Case("meter_config_reply", False, meter_config_reply),
    Case("table_features_reply", False, table_features_reply),
    Case("port_desc_reply", False, port_desc_reply),
    Case("flow_stats_request", True, flow_stats_request),
    Case("aggregate_stats_reply", False, aggregate_stats_reply),
    Case("table_stats_reply", False, table_stats_reply),
    Case("queue_stats_reply", False, queue_stats_reply),
    Case("group_stats_reply", False, group_stats_reply),
    Case("meter_stats_reply", False, meter_stats_reply),
    Case("group_features_reply", False, group_features_reply),
    Case("meter_features_reply", False, meter_features_reply),
    # 1,000 entries, split by kumoflow into two messages (REPLY_MORE on the
    # first), each cut into 1448-byte TCP segments: tshark must reassemble.
    Case("flow_stats_1000_part1", False, lambda: flow_stats_1000()[0], segment_size=1448),
    Case("flow_stats_1000_part2", False, lambda: flow_stats_1000()[1], segment_size=1448),
]


# --- tshark and its PDML ---------------------------------------------------------

TSHARK_ARGS = [
    "-n",                                   # no name resolution
    "-o", "tcp.check_checksum:FALSE",
    "-o", "ip.check_checksum:FALSE",
    "-o", "tcp.desegment_tcp_streams:TRUE",
    "-d", f"tcp.port=={OF_PORT},openflow",  # the registered port, made explicit
    "-T", "pdml",
]
SEVERITY_WARN = 0x00600000   # expert severities: chat 0x2, note 0x4, warn 0x6, error 0x8 (<< 20)

# FT_BYTES fields whose value is a number in the spec
BYTES_AS_INT = {"table_features.config", "hello_element.version.bitmap"}
# fields whose children are a nested dissection, not bit flags
NESTED = {"error.data.body"}
PAD = re.compile(r"\.pad\d*$")
HEX = re.compile(r"0x[0-9a-fA-F]+")


def run_tshark(pcap: Path) -> ET.Element:
    tshark = shutil.which("tshark")
    if tshark is None:  # the marker skips off CI and fails in CI before we get here
        pytest.fail("tshark not found on PATH")
    proc = subprocess.run([tshark, "-r", str(pcap), *TSHARK_ARGS], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return ET.fromstring(proc.stdout)


def show_value(el: ET.Element) -> Any:
    show = el.get("show", "")
    if HEX.fullmatch(show):
        return int(show, 16)
    if show.isdigit():
        return int(show)
    return show


def oxm_bytes(fields: dict[str, ET.Element], which: str, size: int) -> bytes | None:
    """An OXM value ("value") or mask ("mask") as wire bytes, from tshark's shown form."""
    for name, el in fields.items():
        short = name.removeprefix("oxm.")
        if which == "value" and short.startswith("value_vlan_vid"):
            present = fields.get("oxm.value_vlan_present")
            vid = int(el.get("show")) | (0x1000 if present is not None and present.get("show") == "1" else 0)
            return vid.to_bytes(size, "big")
        if which == "value" and short in ("value_uint32", "value_uint24", "value_uint16", "value_ipproto",
                                          "value_ethertype"):
            return show_value(el).to_bytes(size, "big")
        if short in (f"{which}", f"{which}_etheraddr" if which == "value" else "ether_mask"):
            if short in ("value_etheraddr", "ether_mask"):
                return bytes.fromhex(el.get("show").replace(":", ""))
            return bytes.fromhex(el.get("value"))
        if (which, short) in (("value", "value_ipv4addr"), ("mask", "ipv4_mask"),
                              ("value", "value_ipv6addr"), ("mask", "ipv6_mask")):
            return ipaddress.ip_address(el.get("show")).packed
        if (which, short) == ("mask", "vlan_mask"):
            return show_value(el).to_bytes(size, "big")
    return None


def oxm_tuple(group: ET.Element, with_value: bool = True) -> tuple:
    fields = {el.get("name").removeprefix("openflow_v4."): el for el in group if el.get("name")}
    code = int(fields["oxm.field"].get("show"))
    hm = fields["oxm.hm"].get("show") == "1"
    length = int(fields["oxm.length"].get("show"))
    name = OXM_BY_CODE.get(code, code)
    head = ("OXM", show_value(fields["oxm.class"]), name, hm, length)
    if not with_value:
        return head
    size = length // 2 if hm else length
    return head + (oxm_bytes(fields, "value", size), oxm_bytes(fields, "mask", size) if hm else None)


def dissected(el: ET.Element) -> list:
    """tshark's tree under `el` as [(label, value)], pads and bit-flag children left out."""
    items: list = []
    for child in el:
        name = child.get("name", "")
        if child.tag == "proto":
            items.append((f"proto:{name}", None))
        elif name == "":
            label = child.get("show")
            if label == "OXM field":
                items.append((label, oxm_tuple(child)))
            elif label == "OXM ID":
                items.append((label, oxm_tuple(child, with_value=False)))
            elif label == "Data":
                items.append((label, bytes.fromhex(child.get("value"))))
            else:
                items.append((label, dissected(child)))
        elif name.startswith("openflow_v4."):
            short = name.removeprefix("openflow_v4.")
            if PAD.search(short):
                continue
            if short in NESTED:
                items.append((short, dissected(child)))
            elif short in BYTES_AS_INT:
                items.append((short, int(child.get("value"), 16)))
            else:
                items.append((short, show_value(child)))
        elif not name.startswith("_ws."):
            items.append((name, show_value(child)))
    return items


def problems(packet: ET.Element) -> list[str]:
    """Malformed markers, warnings/errors and undecoded notes anywhere in the frame."""
    found = []
    for el in packet.iter():
        name = el.get("name", "")
        if name.startswith("_ws.malformed") and el.tag == "proto":
            found.append(f"malformed: {el.get('showname')}")
        elif name == "_ws.expert":
            severity = next((int(c.get("show")) for c in el if c.get("name") == "_ws.expert.severity"), 0)
            undecoded = any(c.get("name", "").endswith(".undecoded") for c in el)
            if severity >= SEVERITY_WARN:
                found.append(f"expert: {el.get('showname')}")
            elif undecoded:
                found.append(f"undecoded: {el.get('showname')}")
    return found


def uncovered(proto: ET.Element) -> list[tuple[int, int]]:
    """Byte ranges of the message that no named field or nested protocol claims."""
    start, size = int(proto.get("pos")), int(proto.get("size"))
    covered = bytearray(size)
    for el in proto.iter():
        if el is proto:
            continue
        name = el.get("name", "")
        if el.tag == "proto" or (name and not name.startswith("_ws.")):
            pos, length = int(el.get("pos", 0)), int(el.get("size", 0))
            for i in range(max(pos, start), min(pos + length, start + size)):
                covered[i - start] = 1
    gaps, i = [], 0
    while i < size:
        if not covered[i]:
            j = i
            while j < size and not covered[j]:
                j += 1
            gaps.append((i, j))
            i = j
        else:
            i += 1
    return gaps


# --- what tshark should show, from the spec and the Python values --------------------

def wire(value: Any, size: int) -> bytes:
    """An OXM value or mask as the spec lays it out: big-endian int, MAC, IPv4/IPv6 address."""
    if isinstance(value, int):
        return value.to_bytes(size, "big")
    if size == 6:
        return bytes.fromhex(value.replace(":", "").replace("-", ""))
    return ipaddress.ip_address(value).packed


def exp_oxm(name: str, value: Any) -> tuple:
    code, size = OXM_SPEC[name]
    mask = None
    if isinstance(value, tuple):
        value, mask = value
    masked = mask is not None
    return ("OXM", 0x8000, name, masked, size * (2 if masked else 1), wire(value, size),
            wire(mask, size) if masked else None)


def exp_oxm_id(header: int) -> tuple:
    return ("OXM", header >> 16, OXM_BY_CODE[header >> 9 & 0x7F], bool(header >> 8 & 1), header & 0xFF)


def exp_match(match: dict) -> tuple[tuple, int]:
    """(tree item, length on the wire including padding)."""
    oxms = [exp_oxm(k, v) for k, v in match.items()]
    length = 4 + sum(4 + o[4] for o in oxms)
    return ("Match", [("match.type", 1), ("match.length", length), *[("OXM field", o) for o in oxms]]), \
        length + pad8(length)


def exp_action(action: Any) -> tuple[tuple, int]:
    name = upper_snake(type(action).__name__)
    if name == "SET_FIELD":
        oxm = exp_oxm(action.field, action.value)
        length = 4 + 4 + oxm[4]
        length += pad8(length)
        extra = [("OXM field", oxm)]
    else:
        length = 16 if name == "OUTPUT" else 8
        extra = [(f"action.{suffix}", getattr(action, attr)) for suffix, attr in ACTION_PARAMS.get(name, [])]
    return ("Action", [("action.type", OFPAT_NUM[name]), ("action.length", length), *extra]), length


def exp_actions(actions: list) -> tuple[list, int]:
    done = [exp_action(a) for a in actions]
    return [item for item, _ in done], sum(n for _, n in done)


def exp_instruction(inst: Any) -> tuple[tuple, int]:
    name = upper_snake(type(inst).__name__)
    extra: list = []
    if name == "GOTO_TABLE":
        length, extra = 8, [("instruction.goto_table.table_id", inst.table_id)]
    elif name == "WRITE_METADATA":
        length, extra = 24, [("instruction.write_metadata.value", inst.metadata),
                             ("instruction.write_metadata.mask", inst.metadata_mask)]
    elif name == "METER":
        length, extra = 8, [("instruction.meter.meter_id", inst.meter_id)]
    elif name == "CLEAR_ACTIONS":
        length = 8
    else:
        extra, acts = exp_actions(inst.actions)
        length = 8 + acts
    return ("Instruction", [("instruction.type", OFPIT_NUM[name]), ("instruction.length", length), *extra]), length


def exp_instructions(instructions: list) -> tuple[list, int]:
    done = [exp_instruction(i) for i in instructions]
    return [item for item, _ in done], sum(n for _, n in done)


def exp_bucket(bucket: Any) -> tuple[tuple, int]:
    actions, acts = exp_actions(bucket.actions)
    return ("Bucket", [("bucket.length", 16 + acts), ("bucket.weight", bucket.weight),
                       ("bucket.watch_port", bucket.watch_port), ("bucket.watch_group", bucket.watch_group),
                       *actions]), 16 + acts


def exp_band(band: Any) -> tuple:
    name = upper_snake(type(band).__name__.removeprefix("MeterBand"))
    items = [("meter_band.type", OFPMBT_NUM[name]), ("meter_band.length", 16), ("meter_band.rate", band.rate),
             ("meter_band.burst_size", band.burst_size)]
    if name == "DSCP_REMARK":
        items.append(("meter_band.dscp_remark.prec_level", band.prec_level))
    return ("Meter band", items)


def attrs(prefix: str, obj: Any, names: list[str], renamed: dict[str, str] | None = None) -> list:
    """[(prefix + tshark name, obj.attribute)]; `renamed` maps tshark name -> attribute."""
    renamed = renamed or {}
    return [(f"{prefix}{n}", getattr(obj, renamed.get(n, n))) for n in names]


def exp_port(port: Any) -> tuple:
    return ("Port", [("port.port_no", port.port_no), ("port.hw_addr", port.hw_addr.lower()), ("port.name", port.name),
                     *attrs("port.", port, ["config", "sate", "current", "advertised", "supported", "peer",
                                            "curr_speed", "max_speed"],
                            {"sate": "state", "current": "curr"})])


def exp_flow_stats(s: Any) -> tuple:
    match, match_len = exp_match(s.match)
    instructions, ins_len = exp_instructions(s.instructions)
    return ("Flow stats", [("flow_stats.length", 48 + match_len + ins_len),
                           *attrs("flow_stats.", s, ["table_id", "duration_sec", "duration_nsec", "priority",
                                                     "idle_timeout", "hard_timeout", "flags", "cookie",
                                                     "packet_count", "byte_count"]),
                           match, *instructions])


def exp_table_prop(prop: Any) -> tuple:
    kind = type(prop).__name__
    if kind == "InstructionsProp":
        ids = [("Instruction ID", [("instruction.type", i), ("instruction.length", 4)]) for i in prop.instruction_ids]
        length = 4 + 4 * len(ids)
    elif kind == "ActionsProp":
        ids = [("Action ID", [("action.type", a), ("action.length", 4)]) for a in prop.action_ids]
        length = 4 + 4 * len(ids)
    elif kind == "NextTablesProp":
        ids = [("table_feature_prop.next_tables.next_table_id", t) for t in prop.table_ids]
        length = 4 + len(ids)
    elif kind == "OxmProp":
        ids = [("OXM ID", exp_oxm_id(h)) for h in prop.oxm_ids]
        length = 4 + 4 * len(ids)
    else:
        raise AssertionError(f"no expectation for {kind}")
    return ("Table feature property", [("table_feature_prop.type", prop.type), ("table_feature_prop.length", length),
                                       *ids]), length + pad8(length)


def exp_table_features(t: Any) -> tuple:
    props = [exp_table_prop(p) for p in t.properties]
    return ("Table features", [("table_features.length", 64 + sum(n for _, n in props)),
                               *attrs("table_features.", t, ["table_id", "name", "metadata_match",
                                                             "metadata_write", "config", "max_entries"]),
                               *[item for item, _ in props]])


def exp_group_desc(g: Any) -> tuple:
    buckets = [exp_bucket(b) for b in g.buckets]
    return ("Group description", [("group_desc.length", 8 + sum(n for _, n in buckets)),
                                  ("group_desc.type", g.type), ("group_desc.group_id", g.group_id),
                                  *[item for item, _ in buckets]])


def exp_meter_config(c: Any) -> tuple:
    return ("Meter config", [("meter_config.len", 8 + 16 * len(c.bands)), ("meter_config.flags", c.flags),
                             ("meter_config.meter_id", c.meter_id), *[exp_band(b) for b in c.bands]])


def body_flow_mod(m: Any) -> list:
    instructions, _ = exp_instructions(m.instructions)
    return [*attrs("flowmod.", m, ["cookie", "cookie_mask", "table_id", "command", "idle_timeout", "hard_timeout",
                                   "priority", "buffer_id", "out_port", "out_group", "flags"]),
            exp_match(m.match)[0], *instructions]


def body_packet_out(m: Any) -> list:
    actions, acts = exp_actions(m.actions)
    return [("packet_out.buffer_id", m.buffer_id), ("packet_out.in_port", m.in_port), ("packet_out.acts_len", acts),
            *actions, ("Data", m.data)]


def body_hello(m: Any) -> list:
    bitmap = sum(1 << v for v in m.versions)
    words = max(m.versions) // 32 + 1
    return [("Element", [("hello_element.type", 1), ("hello_element.length", 4 + 4 * words),
                         ("hello_element.version.bitmap", bitmap)])]


def multipart_reply(mp: str, items: Callable[[Any], list]) -> Callable[[Any], list]:
    return lambda m: [("multipart_reply.type", OFPMP_NUM[mp]), ("multipart_reply.flags", m.flags), *items(m)]


# class name -> (OFPT name, body items)
EXPECTED: dict[str, tuple[str, Callable[[Any], list]]] = {
    "FlowMod": ("FLOW_MOD", body_flow_mod),
    "GroupMod": ("GROUP_MOD", lambda m: [
        ("groupmod.command", m.command), ("groupmod.type", m.type), ("groupmod.group_id", m.group_id),
        *[exp_bucket(b)[0] for b in m.buckets]]),
    "MeterMod": ("METER_MOD", lambda m: [
        ("metermod.command", m.command), ("metermod.flags", m.flags), ("metermod.meter_id", m.meter_id),
        *[exp_band(b) for b in m.bands]]),
    "PacketIn": ("PACKET_IN", lambda m: [
        *attrs("packet_in.", m, ["buffer_id", "total_len", "reason", "table_id", "cookie"]),
        exp_match(m.match)[0], ("Data", m.data)]),
    "PacketOut": ("PACKET_OUT", body_packet_out),
    "PortStatus": ("PORT_STATUS", lambda m: [("port_status.reason", m.reason), exp_port(m.desc)]),
    "ErrorMsg": ("ERROR", lambda m: [("error.type", m.type), ("error.code", m.code),
                                     ("error.data.body", expected(failed_request(), m.data))]),
    "FeaturesReply": ("FEATURES_REPLY", lambda m: [
        *attrs("switch_features.", m, ["datapath_id", "n_buffers", "n_tables", "auxiliary_id", "capabilities"]),
        ("switch_features_reserved", m.reserved)]),
    "FlowRemoved": ("FLOW_REMOVED", lambda m: [
        *attrs("flow_removed.", m, ["cookie", "priority", "reason", "table_id", "duration_sec", "duration_nsec",
                                    "idle_timeout", "hard_timeout", "packet_count", "byte_count"]),
        exp_match(m.match)[0]]),
    "Hello": ("HELLO", body_hello),
    "RoleRequest": ("ROLE_REQUEST", lambda m: attrs("role_request.", m, ["role", "generation_id"])),
    "PortMod": ("PORT_MOD", lambda m: [
        ("portmod.port_no", m.port_no), ("portmod.hw_addr", m.hw_addr.lower()),
        *attrs("portmod.", m, ["config", "mask", "advertise"])]),
    "FlowStatsReply": ("MULTIPART_REPLY", multipart_reply("FLOW", lambda m: [exp_flow_stats(s) for s in m.body])),
    "PortStatsReply": ("MULTIPART_REPLY", multipart_reply("PORT_STATS", lambda m: [
        ("Port stats", attrs("port_stats.", s, [
            "port_no", "rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "tx_dropped", "rx_errors",
            "tx_errors", "rx_frame_error", "rx_over_error", "rx_crc_error", "collisions", "duration_sec",
            "duration_nsec"], {"rx_frame_error": "rx_frame_err", "rx_over_error": "rx_over_err",
                               "rx_crc_error": "rx_crc_err"}))
        for s in m.body])),
    "DescReply": ("MULTIPART_REPLY", multipart_reply("DESC", lambda m: attrs(
        "switch_description.", m, ["mfr_desc", "hw_desc", "sw_desc", "serial_num", "dp_desc"]))),
    "GroupDescReply": ("MULTIPART_REPLY", multipart_reply("GROUP_DESC", lambda m: [exp_group_desc(g) for g in m.body])),
    "MeterConfigReply": ("MULTIPART_REPLY", multipart_reply(
        "METER_CONFIG", lambda m: [exp_meter_config(c) for c in m.body])),
    "TableFeaturesReply": ("MULTIPART_REPLY", multipart_reply(
        "TABLE_FEATURES", lambda m: [exp_table_features(t) for t in m.body])),
    "PortDescReply": ("MULTIPART_REPLY", multipart_reply("PORT_DESC", lambda m: [exp_port(p) for p in m.body])),
    "AggregateStatsReply": ("MULTIPART_REPLY", multipart_reply("AGGREGATE", lambda m: attrs(
        "aggregate_stats.", m, ["packet_count", "byte_count", "flow_count"]))),
    "TableStatsReply": ("MULTIPART_REPLY", multipart_reply("TABLE", lambda m: [
        ("Table stats", attrs("table_stats.", t, ["table_id", "active_count", "lookup_count", "match_count"],
                              {"match_count": "matched_count"})) for t in m.body])),
    # Wireshark 4.0 spells some field names its own way (quee_stats, and
    # names borrowed from port_stats / flow_stats); they are its names, the
    # values are what is checked.
    "QueueStatsReply": ("MULTIPART_REPLY", multipart_reply("QUEUE", lambda m: [
        ("Queue stats", [*attrs("queue_stats.", q, ["port_no", "queue_id", "tx_bytes"]),
                         ("quee_stats.tx_packets", q.tx_packets), ("port_stats.tx_errors", q.tx_errors),
                         *attrs("queue_stats.", q, ["duration_sec", "duration_nsec"])]) for q in m.body])),
    "GroupStatsReply": ("MULTIPART_REPLY", multipart_reply("GROUP", lambda m: [
        ("Group stats", [("group_stats.length", 40 + 16 * len(g.bucket_stats)),
                         *attrs("group_stats.", g, ["group_id", "ref_count", "packet_count", "byte_count"]),
                         *attrs("flow_stats.", g, ["duration_sec", "duration_nsec"]),
                         *[("Bucket counter", attrs("bucket_counter.", b, ["packet_count", "byte_count"]))
                           for b in g.bucket_stats]]) for g in m.body])),
    "MeterStatsReply": ("MULTIPART_REPLY", multipart_reply("METER", lambda m: [
        ("Meter stats", [("meter_stats.meter_id", s.meter_id), ("meter_stats.length", 40 + 16 * len(s.band_stats)),
                         *attrs("meter_stats.", s, ["flow_count", "packet_in_count", "byte_in_count",
                                                    "duration_sec", "duration_nsec"]),
                         *[("Meter band stats", attrs("meter_band_stats.", b, ["packet_band_count",
                                                                               "byte_band_count"]))
                           for b in s.band_stats]]) for s in m.body])),
    "GroupFeaturesReply": ("MULTIPART_REPLY", multipart_reply("GROUP_FEATURES", lambda m: [
        ("group_features.types", m.types), ("group_features.capabilities", m.capabilities),
        *zip([f"group_stats.max_groups.{t}" for t in ("all", "select", "indirect", "ff")], m.max_groups),
        *zip([f"group_features.actions.{t}" for t in ("all", "select", "indirect", "ff")], m.actions)])),
    "MeterFeaturesReply": ("MULTIPART_REPLY", multipart_reply("METER_FEATURES", lambda m: [
        ("meter_features.max_meter", m.max_meter), ("features.band_types", m.band_types),
        *attrs("meter_features.", m, ["capabilities", "max_bands", "max_color"])])),
    "FlowStatsRequest": ("MULTIPART_REQUEST", lambda m: [
        ("multipart_request.type", OFPMP_NUM["FLOW"]), ("multipart_request.flags", m.flags),
        *attrs("flow_stats_request.", m, ["table_id", "out_port", "out_group", "cookie", "cookie_mask"]),
        exp_match(m.match)[0]]),
}


def expected(msg: Any, data: bytes) -> list:
    type_name, body = EXPECTED[type(msg).__name__]
    return [("version", 4), ("type", OFPT_NUM[type_name]), ("length", len(data)), ("xid", msg.xid), *body(msg)]


# --- the tests -----------------------------------------------------------------------

@dataclass
class Dissection:
    msg: Any
    data: bytes
    packet: ET.Element   # the <packet> that completes the message

    @property
    def protos(self) -> list[ET.Element]:
        """Top-level OpenFlow 1.3 dissections in the frame (one message per frame here)."""
        return [p for p in self.packet if p.tag == "proto" and p.get("name") == "openflow_v4"]


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Dissection]:
    built = []
    for case in CASES:
        msg = case.build()
        built.append((case, msg, msg.pack()))
    pcap, frames = build_pcap([(case.to_switch, data, case.segment_size) for case, _, data in built])
    path = tmp_path_factory.mktemp("tshark") / "kumoflow-ofp13.pcap"
    path.write_bytes(pcap)
    root = run_tshark(path)
    packets = {}
    for packet in root.iter("packet"):
        number = packet.find("proto[@name='geninfo']/field[@name='num']")
        packets[int(number.get("show"))] = packet
    assert len(packets) == len(frames) + 3 + sum(  # handshake + one frame per segment
        -(-len(data) // case.segment_size) - 1 for case, _, data in built if case.segment_size)
    return {case.id: Dissection(msg, data, packets[frame]) for (case, msg, data), frame in zip(built, frames)}


@pytest.mark.tshark
def test_tshark_version() -> None:
    tshark = shutil.which("tshark") or "tshark"
    out = subprocess.run([tshark, "--version"], capture_output=True, text=True, timeout=60).stdout
    version = re.search(r"TShark \(Wireshark\) (\d+)\.(\d+)", out)
    assert version, out
    assert (int(version[1]), int(version[2])) >= (3, 0), "the OpenFlow 1.3 field names used here need tshark 3+"


@pytest.mark.tshark
def test_one_clean_tcp_stream(capture: dict[str, Dissection]) -> None:
    """The pcap is one well-formed connection: no retransmission/gap analysis flags."""
    for case_id, d in capture.items():
        tcp = d.packet.find("proto[@name='tcp']")
        assert tcp.find("field[@name='tcp.stream']").get("show") == "0", case_id
        flags = [el.get("showname") for el in tcp.iter() if el.get("name") == "tcp.analysis.flags"]
        assert not flags, (case_id, flags)


@pytest.mark.tshark
@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_tshark_decodes_what_kumoflow_encoded(capture: dict[str, Dissection], case_id: str) -> None:
    d = capture[case_id]
    assert len(d.protos) == 1, f"{len(d.protos)} OpenFlow 1.3 messages in the frame, expected 1"
    proto = d.protos[0]
    assert problems(d.packet) == []
    assert int(proto.get("size")) == len(d.data)
    assert uncovered(proto) == [], "bytes of the message no dissected field accounts for"
    assert dissected(proto) == expected(d.msg, d.data)


@pytest.mark.tshark
@pytest.mark.parametrize("case_id", ["packet_in", "packet_out"])
def test_carried_frame_is_dissected(capture: dict[str, Dissection], case_id: str) -> None:
    """The Ethernet frame inside packet-in/out is handed to Wireshark's own dissectors intact."""
    proto = capture[case_id].protos[0]
    shown = {}
    for el in proto.iter("field"):
        if el.get("name") in ("eth.src", "eth.dst", "eth.type", "ip.src", "ip.dst", "ip.proto", "ip.len",
                              "udp.srcport", "udp.dstport", "udp.length"):
            shown.setdefault(el.get("name"), el.get("show"))
    frame = capture[case_id].msg.data
    assert shown == {
        "eth.dst": FRAME_DST_MAC, "eth.src": FRAME_SRC_MAC, "eth.type": "0x0800",
        "ip.len": str(len(frame) - 14), "ip.proto": "17", "ip.src": FRAME_SRC_IP, "ip.dst": FRAME_DST_IP,
        "udp.srcport": str(FRAME_SPORT), "udp.dstport": str(FRAME_DPORT), "udp.length": str(len(frame) - 34),
    }


def test_cases_cover_the_protocol() -> None:
    """Every OXM field, action and instruction type appears in some encoded message."""
    oxms, actions, instructions = set(), set(), set()

    def walk_actions(acts: list) -> None:
        for a in acts:
            actions.add(upper_snake(type(a).__name__))
            if isinstance(a, ofp.SetField):
                oxms.add(a.field)

    for case in CASES:
        msg = case.build()
        matches = [getattr(msg, "match", None)] + [getattr(s, "match", None) for s in getattr(msg, "body", [])
                                                  if not isinstance(getattr(msg, "body", None), bytes)]
        for match in filter(None, matches):
            oxms.update(match)
        for inst in getattr(msg, "instructions", []):
            instructions.add(upper_snake(type(inst).__name__))
            walk_actions(getattr(inst, "actions", []))
        walk_actions(getattr(msg, "actions", []))
        for bucket in getattr(msg, "buckets", []):
            walk_actions(bucket.actions)
    assert set(OXM_SPEC) - oxms == set()
    assert set(OFPAT_NUM) - actions == set()
    assert set(OFPIT_NUM) - instructions == set()
