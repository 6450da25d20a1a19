"""kumoflow.packet.dhcp: the DHCPv4 codec (RFC 2131, 2132, 3396, 3442).

* random messages survive build -> parse with the same fields and options,
  and re-build to the same bytes;
* scapy as the oracle: scapy's BOOTP/DHCP dissector reads what we build,
  and we parse what scapy builds, to the same values;
* the RFC 3442 encodings of the RFC's own examples, RFC 3396 long options;
* truncated, mutated and random bytes raise PacketError and nothing else.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP as sBOOTP
from scapy.layers.dhcp import DHCP as sDHCP
from scapy.layers.dhcp import DHCPOptions
from scapy.layers.inet import IP as sIP
from scapy.layers.inet import UDP as sUDP
from scapy.layers.l2 import Ether

from kumoflow.packet import UDP, Ethernet, IPv4, PacketError, parse
from kumoflow.packet import dhcp as d
from kumoflow.packet.dhcp import DHCP, parse_dhcp

SETTINGS = settings(max_examples=300, deadline=None)

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
ip4s = st.binary(min_size=4, max_size=4).map(socket.inet_ntoa)
texts = st.binary(min_size=1, max_size=60).map(lambda b: b.decode("utf-8", "surrogateescape"))


def _route(value: int, width: int) -> str:
    return str(ipaddress.IPv4Network((value, width), strict=False))


routes = st.lists(st.tuples(st.builds(_route, u32, st.integers(0, 32)), ip4s), min_size=1, max_size=10)

#: option code -> strategy for its typed value
TYPED = {
    d.OPT_SUBNET_MASK: ip4s, d.OPT_BROADCAST: ip4s, d.OPT_REQUESTED_IP: ip4s, d.OPT_SERVER_ID: ip4s,
    d.OPT_ROUTER: st.lists(ip4s, min_size=1, max_size=8), d.OPT_DNS: st.lists(ip4s, min_size=1, max_size=8),
    d.OPT_HOSTNAME: texts, d.OPT_DOMAIN: texts, d.OPT_MESSAGE: texts,
    d.OPT_MTU: u16, d.OPT_MAX_SIZE: u16, d.OPT_MESSAGE_TYPE: st.integers(0, 255),
    d.OPT_LEASE_TIME: u32, d.OPT_RENEWAL_TIME: u32, d.OPT_REBINDING_TIME: u32,
    d.OPT_PARAMETERS: st.lists(st.integers(0, 255), min_size=1, max_size=40),
    d.OPT_CLIENT_ID: st.binary(min_size=2, max_size=40),
    d.OPT_CLASSLESS_ROUTES: routes,
}
assert set(TYPED) == set(d.KINDS)
#: codes scapy does not know: their values are raw bytes on both sides
UNKNOWN = [c for c in range(1, 255) if c not in DHCPOptions and c not in d.KINDS]


@st.composite
def option_maps(draw, max_raw: int = 300):
    chosen = draw(st.lists(st.sampled_from(sorted(TYPED)), unique=True, max_size=len(TYPED)))
    options = {code: draw(TYPED[code]) for code in chosen}
    for code in draw(st.lists(st.sampled_from(UNKNOWN), unique=True, max_size=3)):
        options[code] = draw(st.binary(min_size=1, max_size=max_raw))
    keys = draw(st.permutations(list(options)))
    return {k: options[k] for k in keys}


def _no_trailing_nul(size: int):
    return st.binary(max_size=size).map(lambda b: b.rstrip(b"\0"))


@st.composite
def messages(draw, max_raw: int = 300, hlen_max: int = 16):
    return DHCP(op=draw(st.integers(0, 255)), xid=draw(u32),
                chaddr=draw(st.binary(max_size=hlen_max)).hex(":"),
                ciaddr=draw(ip4s), yiaddr=draw(ip4s), siaddr=draw(ip4s), giaddr=draw(ip4s),
                flags=draw(u16), secs=draw(u16), hops=draw(st.integers(0, 255)), htype=draw(st.integers(0, 255)),
                sname=draw(_no_trailing_nul(64)), file=draw(_no_trailing_nul(128)),
                options=draw(option_maps(max_raw)))


# --- round trip ---------------------------------------------------------------------------------

@SETTINGS
@given(messages())
def test_build_parse_round_trip(msg):
    data = bytes(msg)
    assert len(data) >= d.MIN_LEN
    again = parse_dhcp(data)
    assert again == msg
    assert bytes(again) == data


@SETTINGS
@given(messages(max_raw=200))
def test_in_a_frame_it_is_the_udp_payload(msg):
    frame = bytes(Ethernet(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff")
                  / IPv4(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67) / msg)
    pkt = parse(frame)
    assert pkt[UDP].checksum_ok
    assert parse_dhcp(pkt.payload, 42) == msg


# --- scapy as the oracle ------------------------------------------------------------------------

def _scapy_value(code: int, value):
    """Our typed value as scapy shows it, and takes it to build: (name, *values)."""
    spec = DHCPOptions.get(code)
    name = code if spec is None else spec if isinstance(spec, str) else spec.name
    if code in (d.OPT_ROUTER, d.OPT_DNS):
        return (name, *value)
    if code in (d.OPT_HOSTNAME, d.OPT_DOMAIN, d.OPT_MESSAGE):
        return (name, value.encode("utf-8", "surrogateescape"))
    if code == d.OPT_CLASSLESS_ROUTES:
        return (name, [f"{dest}:{router}" for dest, router in value])
    return (name, value)


@SETTINGS
@given(messages(max_raw=200))
def test_scapy_reads_what_we_build(msg):
    # scapy does not join long options (RFC 3396): keep each value under 256 bytes
    if any(len(d.encode_option(c, v)) > 257 for c, v in msg.options.items()):
        return
    frame = bytes(Ethernet(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff")
                  / IPv4(src="10.0.0.1", dst="255.255.255.255") / UDP(sport=67, dport=68) / msg)
    s = Ether(frame)
    b = s[sBOOTP]
    hlen = len(bytes.fromhex(msg.chaddr.replace(":", "")))
    assert (b.op, b.htype, b.hlen, b.hops, b.xid, b.secs, int(b.flags)) == (
        msg.op, msg.htype, hlen, msg.hops, msg.xid, msg.secs, msg.flags)
    assert (b.ciaddr, b.yiaddr, b.siaddr, b.giaddr) == (msg.ciaddr, msg.yiaddr, msg.siaddr, msg.giaddr)
    assert b.chaddr[:hlen].hex(":") == msg.chaddr
    assert b.sname.rstrip(b"\0") == msg.sname and b.file.rstrip(b"\0") == msg.file
    theirs = [o for o in s[sDHCP].options if o not in ("end", "pad")]
    assert theirs == [_scapy_value(c, v) for c, v in msg.options.items()]


@SETTINGS
@given(messages(max_raw=200, hlen_max=6))
def test_we_parse_what_scapy_builds(msg):
    if any(len(d.encode_option(c, v)) > 257 for c, v in msg.options.items()):
        return
    chaddr = bytes.fromhex(msg.chaddr.replace(":", ""))
    pkt = (Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / sIP(src="0.0.0.0", dst="255.255.255.255")
           / sUDP(sport=68, dport=67)
           / sBOOTP(op=msg.op, htype=msg.htype, hlen=len(chaddr), hops=msg.hops, xid=msg.xid, secs=msg.secs,
                    flags=msg.flags, ciaddr=msg.ciaddr, yiaddr=msg.yiaddr, siaddr=msg.siaddr, giaddr=msg.giaddr,
                    chaddr=chaddr.ljust(16, b"\0"), sname=msg.sname, file=msg.file)
           / sDHCP(options=[_scapy_value(c, v) for c, v in msg.options.items()] + ["end"]))
    ours = parse(bytes(pkt))
    assert ours[UDP].checksum_ok
    assert parse_dhcp(ours.payload) == msg


def test_scapy_example_request():
    """A request as a client sends it, built by scapy alone."""
    pkt = (sBOOTP(chaddr=bytes.fromhex("020000000001"), xid=0xCAFE, flags=0x8000)
           / sDHCP(options=[("message-type", "request"), ("requested_addr", "10.0.0.9"),
                            ("server_id", "10.0.0.1"), ("param_req_list", [1, 3, 6, 26, 121]),
                            ("client_id", b"\x01\x02\x00\x00\x00\x00\x01"), ("hostname", b"vm1"), "end"]))
    msg = parse_dhcp(bytes(pkt))
    assert msg.message_type == d.REQUEST and msg.broadcast and msg.chaddr == "02:00:00:00:00:01"
    assert msg.options == {53: 3, 50: "10.0.0.9", 54: "10.0.0.1", 55: [1, 3, 6, 26, 121],
                           61: b"\x01\x02\x00\x00\x00\x00\x01", 12: "vm1"}


# --- RFC 3442 and RFC 3396 ----------------------------------------------------------------------

@pytest.mark.parametrize("dest,encoded", [
    ("0.0.0.0/0", "00"),
    ("10.0.0.0/8", "080a"),
    ("10.17.0.0/16", "100a11"),
    ("10.27.129.0/24", "180a1b81"),
    ("10.229.0.128/25", "190ae50080"),
    ("10.198.122.47/32", "200ac67a2f"),
])
def test_classless_route_encoding_examples_of_rfc3442(dest, encoded):
    router = "192.0.2.1"
    wire = d.encode_option(d.OPT_CLASSLESS_ROUTES, [(dest, router)])
    value = bytes.fromhex(encoded) + socket.inet_aton(router)
    assert wire == bytes((121, len(value))) + value
    assert d.KINDS[121][1][0](value) == [(dest, router)]


def test_a_long_option_is_split_and_joined_rfc3396():
    value = bytes(range(256)) * 2                        # 512 bytes: 255 + 255 + 2
    msg = DHCP(chaddr="02:00:00:00:00:01", options={d.OPT_MESSAGE_TYPE: d.ACK, 224: value})
    data = bytes(msg)
    opts = data[d.HEADER_LEN:]
    assert opts[:3] == b"\x35\x01\x05"
    assert (opts[3], opts[4]) == (224, 255) and (opts[260], opts[261]) == (224, 255)
    assert (opts[517], opts[518]) == (224, 2) and opts[521] == 255
    assert parse_dhcp(data).options[224] == value


def test_built_messages_are_padded_to_300_bytes():
    data = bytes(DHCP(options={53: 1}))
    assert len(data) == 300 and data[d.HEADER_LEN:d.HEADER_LEN + 4] == b"\x35\x01\x01\xff"
    assert data[d.HEADER_LEN + 4:] == bytes(56)


def test_pad_options_are_skipped_and_bytes_after_end_ignored():
    base = bytes(DHCP(options={}))[:d.HEADER_LEN]
    msg = parse_dhcp(base + b"\x00\x00\x35\x01\x03\x00\xff" + b"junk after the end")
    assert msg.options == {53: 3}


# --- strictness ---------------------------------------------------------------------------------

HDR = bytes(DHCP(options={}))[:d.HEADER_LEN]


@pytest.mark.parametrize("data,words", [
    (HDR[:100], "truncated"),
    (HDR[:236] + b"\x00\x00\x00\x00\xff", "magic cookie"),
    (HDR + b"\x35\x01\x01", "no end option"),
    (HDR + b"\x35", "no length"),
    (HDR + b"\x35\x05\x01\xff", "runs past"),
    (HDR + b"\x35\x02\x01\x01\xff", "option 53 (message type): length 2, not 1"),
    (HDR + b"\x35\x01\x01\x35\x01\x02\xff", "option 53"),                 # repeated: joined, then too long
    (HDR + b"\x36\x03\x0a\x00\x00\xff", "option 54"),
    (HDR + b"\x03\x06" + bytes(6) + b"\xff", "not a multiple of 4"),
    (HDR + b"\x0c\x00\xff", "option 12 (host name): empty"),
    (HDR + b"\x37\x00\xff", "option 55"),
    (HDR + b"\x3d\x01\x01\xff", "option 61"),
    (HDR + b"\x34\x01\x03\xff", "overload"),
    (HDR + b"\x79\x05\x21\x01\x02\x03\x04\xff", "prefix length 33"),
    (HDR + b"\x79\x05\x08\x0a\x01\x02\x03\xff", "runs past the option"),
    (HDR + b"\x79\x07\x08\x0a\x01\x02\x03\x04\x09\xff", "runs past the option"),
    (HDR + b"\x79\x06\x07\x0b\x01\x02\x03\x04\xff", "host bits"),
    (HDR[:2] + b"\x11" + HDR[3:] + b"\xff", "hardware address length 17"),
])
def test_malformed_messages_raise_packet_error(data, words):
    with pytest.raises(PacketError) as err:
        parse_dhcp(data)
    assert words in str(err.value)
    assert err.value.header == "DHCP"


@pytest.mark.parametrize("msg,words", [
    (DHCP(ciaddr="10.0.0.256"), "ciaddr"),
    (DHCP(chaddr="zz"), "chaddr"),
    (DHCP(chaddr="00:" * 16 + "00"), "chaddr of 17 bytes"),
    (DHCP(sname=b"x" * 65), "sname"),
    (DHCP(options={53: 256}), "option 53"),
    (DHCP(options={3: ["10.0.0.1", "nope"]}), "option 3"),
    (DHCP(options={121: [("10.0.0.1/8", "10.0.0.1")]}), "option 121"),
    (DHCP(options={200: 5}), "give its value as bytes"),
    (DHCP(options={255: b""}), "option code 255"),
    (DHCP(xid=-1), "DHCP"),
])
def test_bad_fields_raise_packet_error_on_build(msg, words):
    with pytest.raises(PacketError) as err:
        bytes(msg)
    assert words in str(err.value)


def _only_packet_error(data: bytes) -> None:
    try:
        msg = parse_dhcp(data)
    except PacketError:
        return
    assert parse_dhcp(bytes(msg)) == msg     # whatever is accepted builds again to the same message


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_packet_error(data):
    _only_packet_error(data)
    _only_packet_error(HDR + data)


@SETTINGS
@given(messages(), st.data())
def test_truncated_and_mutated_messages_raise_only_packet_error(msg, data):
    raw = bytearray(bytes(msg))
    _only_packet_error(bytes(raw[:data.draw(st.integers(0, len(raw)))]))
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(d.HEADER_LEN - 10, len(raw) - 1))
        raw[pos] = data.draw(st.sampled_from([0, 1, 2, 4, 5, 7, 0x21, 0x34, 0x35, 0x79, 0x80, 0xFF]))
    _only_packet_error(bytes(raw))
