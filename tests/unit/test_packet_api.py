"""kumoflow.packet behaviour: composition, access, auto fields, errors."""

from __future__ import annotations

import struct

import pytest

from kumoflow.packet import (
    AH, ARP, GRE, ICMP, LLDP, NVGRE, TCP, UDP, VLAN, VXLAN, Ethernet, ICMPv6, ICMPv6Echo, IPv4,
    IPv6, IPv6DestOpts, IPv6Fragment, IPv6HopByHop, IPv6Routing, NDNeighborSolicit, NDOptRaw,
    NDOptSourceLinkAddr, NDRouterSolicit, Packet, PacketError, consts, decode_kind_len,
    decode_tlv6, encode_kind_len, encode_tlv6, internet_checksum, parse, parse_ethernet,
)

M1, M2 = "02:00:00:00:00:01", "02:00:00:00:00:02"


def udp4(payload=b"data", **ip):
    return (Ethernet(dst=M2, src=M1) / IPv4(src="10.0.0.1", dst="10.0.0.2", **ip)
            / UDP(sport=1000, dport=2000) / payload)


# -- composition and access ------------------------------------------------------

def test_slash_builds_a_packet():
    pkt = udp4()
    assert isinstance(pkt, Packet)
    assert [type(h) for h in pkt] == [Ethernet, IPv4, UDP]
    assert pkt.payload == b"data" and len(pkt) == 3
    assert (pkt / b"more").payload == b"datamore"
    with pytest.raises(TypeError):
        pkt / TCP()  # a header cannot follow raw payload


def test_packet_slash_packet_and_bytes_like():
    outer = Ethernet() / IPv4(src="1.1.1.1", dst="2.2.2.2") / UDP(dport=4789) / VXLAN(vni=7)
    inner = Ethernet(src=M1) / IPv4(src="10.0.0.1", dst="10.0.0.2") / ICMP() / bytearray(b"x")
    both = outer / inner
    assert [type(h) for h in both] == [Ethernet, IPv4, UDP, VXLAN, Ethernet, IPv4, ICMP]
    assert both.payload == b"x"
    assert parse(bytes(both)).after(VXLAN) == parse(bytes(inner))


def test_get_getitem_contains_all_after():
    pkt = parse(bytes(Ethernet() / VLAN(vid=1) / VLAN(vid=2) / IPv4(src="1.2.3.4", dst="4.3.2.1")
                      / TCP(sport=1, dport=2) / b"p"))
    assert pkt.get(IPv4).src == "1.2.3.4"
    assert pkt[TCP].dport == 2
    assert pkt[0] is pkt.headers[0]
    assert pkt.get(UDP) is None and pkt.get(UDP, "nope") == "nope"
    assert UDP not in pkt and VLAN in pkt
    assert [v.vid for v in pkt.all(VLAN)] == [1, 2]
    with pytest.raises(KeyError):
        pkt[ARP]
    assert [type(h) for h in pkt.after(VLAN)] == [VLAN, IPv4, TCP]
    with pytest.raises(KeyError):
        pkt.after(UDP)


def test_subclasses_are_found_by_base_class():
    pkt = parse(bytes(Ethernet() / IPv6(src="fe80::1", dst="ff02::1") / NDRouterSolicit()))
    assert isinstance(pkt[ICMPv6], NDRouterSolicit)
    frame = bytes(Ethernet() / IPv4(src="1.1.1.1", dst="2.2.2.2") / NVGRE(vsid=10) / Ethernet()
                  / ARP())
    assert isinstance(parse(frame)[GRE], NVGRE)


def test_header_pack_and_bytes():
    assert bytes(Ethernet(dst=M2, src=M1, type=0x0800)) == bytes.fromhex(
        "020000000002" "020000000001" "0800")
    assert VLAN(vid=5, type=0x86DD).pack(b"zz") == bytes.fromhex("000586dd") + b"zz"


def test_repr_is_short_and_readable():
    assert repr(Ethernet(dst=M2, src=M1, type=0x800)) == (
        "Ethernet(dst='02:00:00:00:00:02', src='02:00:00:00:00:01', type=0x0800)")
    assert repr(NVGRE(vsid=5000, flow_id=3)) == "NVGRE(vsid=5000, flow_id=3)"
    text = repr(parse(bytes(udp4())))
    assert text.startswith("Packet(Ethernet(") and "UDP(sport=1000, dport=2000" in text
    assert text.endswith("b'data')")


def test_copy_and_equality():
    ip = IPv4(src="1.1.1.1", dst="2.2.2.2", ttl=3)
    assert ip.copy(ttl=4) == IPv4(src="1.1.1.1", dst="2.2.2.2", ttl=4)
    assert NVGRE(vsid=1).copy(key=(2 << 8) | 1) == NVGRE(vsid=2, flow_id=1)
    # parse-time state (the received bytes) does not take part in equality
    assert parse(bytes(udp4())) == parse(bytes(udp4()))


# -- auto fields ---------------------------------------------------------------------

def test_types_come_from_the_next_layer():
    pkt = parse(bytes(Ethernet() / VLAN(vid=3, tpid=0x88A8) / VLAN(vid=4) / IPv6(src="::1", dst="::2")
                      / IPv6HopByHop() / IPv6Fragment() / IPv6DestOpts() / UDP()))
    eth, s_tag, c_tag, ip6, hbh, frag, dst, udp = pkt.headers
    assert (eth.type, s_tag.type, c_tag.type) == (0x88A8, 0x8100, 0x86DD)
    assert (ip6.nh, hbh.nh, frag.nh, dst.nh) == (0, 44, 60, 17)
    assert s_tag.tpid == 0x88A8 and c_tag.tpid == 0x8100
    assert parse(bytes(Ethernet() / IPv4(src="1.1.1.1", dst="2.2.2.2") / GRE() / IPv6()))[GRE].protocol == 0x86DD
    assert parse(bytes(Ethernet() / IPv6()))[IPv6].nh == consts.IPPROTO_NONE


def test_underivable_type_is_an_error():
    with pytest.raises(PacketError, match="Ethernet"):
        bytes(Ethernet() / b"raw")
    with pytest.raises(PacketError, match="IPv4"):
        bytes(Ethernet() / IPv4() / b"raw")
    with pytest.raises(PacketError, match="TCP.*IPv4/IPv6"):
        bytes(TCP())


def test_lengths_and_checksums_are_computed_and_explicit_values_kept():
    pkt = parse(bytes(udp4(b"12345")))
    assert pkt[IPv4].total_length == 20 + 8 + 5 and pkt[IPv4].ihl == 5
    assert pkt[UDP].length == 13
    assert pkt[IPv4].checksum_ok and pkt[UDP].checksum_ok
    crafted = parse(bytes(Ethernet() / IPv4(src="1.1.1.1", dst="2.2.2.2", checksum=0x1234,
                                            total_length=999) / UDP(checksum=0xBEEF) / b"x"),
                    truncated_ok=True)
    assert crafted[IPv4].checksum == 0x1234 and crafted[IPv4].checksum_ok is False
    assert crafted[IPv4].total_length == 999
    assert crafted[UDP].checksum == 0xBEEF


def test_building_does_not_mutate_headers():
    pkt = udp4()
    bytes(pkt)
    assert pkt[IPv4].checksum is None and pkt[UDP].length is None and pkt[Ethernet].type is None


def test_recompute_after_editing_a_parsed_packet():
    pkt = parse(bytes(udp4()))
    pkt[IPv4].dst = "10.9.9.9"
    stale = parse(pkt.pack())
    assert stale[IPv4].checksum_ok is False and stale[UDP].checksum_ok is False
    fresh = parse(pkt.recompute().pack())
    assert fresh[IPv4].dst == "10.9.9.9"
    assert fresh[IPv4].checksum_ok and fresh[UDP].checksum_ok


def test_udp_zero_checksum():
    # explicit 0 = "no checksum" over IPv4 ...
    pkt = parse(bytes(Ethernet() / IPv4(src="1.1.1.1", dst="2.2.2.2") / UDP(checksum=0) / b"x"))
    assert pkt[UDP].checksum == 0 and pkt[UDP].checksum_ok is True
    # ... and a computed 0 goes on the wire as 0xFFFF (RFC 768).  A payload
    # word equal to the checksum without it makes the sum come out as -0.
    base = Ethernet() / IPv4(src="1.1.1.1", dst="2.2.2.2") / UDP(sport=7)
    c0 = parse(bytes(base / b"\0\0"))[UDP].checksum
    got = parse(bytes(base / c0.to_bytes(2, "big")))[UDP]
    assert got.checksum == 0xFFFF and got.checksum_ok


def test_options_are_padded():
    pkt = parse(bytes(Ethernet() / IPv4(src="1.1.1.1", dst="2.2.2.2", options=b"\x94\x04")
                      / TCP(options=b"\x02\x04\x05\xb4\x01")))
    assert pkt[IPv4].options == b"\x94\x04\x00\x00" and pkt[IPv4].ihl == 6
    assert pkt[TCP].options == b"\x02\x04\x05\xb4\x01\x00\x00\x00" and pkt[TCP].data_offset == 7
    assert pkt[TCP].option_list() == [(2, b"\x05\xb4"), (1, b""), (0, b"")]
    v6 = parse(bytes(Ethernet() / IPv6() / IPv6HopByHop(options=encode_tlv6([(5, b"\x00\x00")]))
                     / IPv6DestOpts(options=b"") / IPv6Routing(data=b"") / b""))
    assert len(v6[IPv6HopByHop].options) == 6 and v6[IPv6HopByHop].option_list() == [(5, b"\0\0")]
    assert v6[IPv6DestOpts].options == b"\x01\x04\x00\x00\x00\x00"
    assert v6[IPv6Routing].data == bytes(4)


def test_option_codecs():
    opts = [(2, b"\x05\xb4"), (1, b""), (3, b"\x07"), (0, b"")]
    assert decode_kind_len(encode_kind_len(opts)) == opts
    assert decode_tlv6(encode_tlv6([(0, b""), (1, b"\0\0"), (5, b"ab")])) == [(5, b"ab")]
    for bad in (b"\x02", b"\x02\x01", b"\x02\x09abc"):
        with pytest.raises(PacketError):
            decode_kind_len(bad)
    with pytest.raises(PacketError):
        decode_tlv6(b"\x05\x09ab")


# -- parse behaviour -----------------------------------------------------------------

def test_parse_ethernet_fast_path():
    frame = bytes(udp4())
    eth, offset = parse_ethernet(frame)
    assert (eth.dst, eth.src, eth.type, offset) == (M2, M1, 0x0800, 14)
    with pytest.raises(PacketError, match="Ethernet at offset 0"):
        parse_ethernet(frame[:13])


def test_accepts_bytes_like():
    frame = bytes(udp4())
    assert parse(bytearray(frame)) == parse(memoryview(frame)) == parse(frame)


def test_unknown_types_stay_payload():
    pkt = parse(bytes(Ethernet(type=0x88B5) / b"local experimental"))
    assert pkt.headers == [Ethernet(dst="ff:ff:ff:ff:ff:ff", src="00:00:00:00:00:00", type=0x88B5)]
    assert pkt.payload == b"local experimental"
    pkt = parse(bytes(Ethernet() / IPv4(src="1.1.1.1", dst="2.2.2.2", proto=132) / b"sctp!"))
    assert [type(h) for h in pkt] == [Ethernet, IPv4] and pkt.payload == b"sctp!"
    pkt = parse(bytes(Ethernet(type=60) / b"802.3 length"))
    assert pkt.payload == b"802.3 length"


def test_unmodelled_variants_stay_payload():
    # ARP for a non-Ethernet link, GRE version 1 (PPTP)
    arp = struct.pack("!HHBBH", 6, 0x0800, 8, 4, 1) + bytes(24)
    assert parse(bytes(Ethernet(type=0x0806) / arp)).payload == arp
    pptp = bytes.fromhex("3001880b00000000")
    pkt = parse(bytes(Ethernet() / IPv4(src="1.1.1.1", dst="2.2.2.2", proto=47) / pptp))
    assert pkt.get(GRE) is None and pkt.payload == pptp


def test_ethernet_padding_is_the_trailer():
    frame = bytes(Ethernet(dst=M2, src=M1) / ARP(src_mac=M1, src_ip="1.1.1.1", dst_ip="1.1.1.2"))
    padded = frame + bytes(60 - len(frame))
    pkt = parse(padded)
    assert pkt.payload == b"" and pkt.trailer == bytes(18)
    assert pkt.pack() == padded
    small = bytes(udp4(b"")) + b"\xAA" * 10
    pkt = parse(small)
    assert pkt.payload == b"" and pkt.trailer == b"\xAA" * 10 and pkt[UDP].checksum_ok
    assert pkt.pack() == small


def test_fragments():
    first = parse(bytes(Ethernet() / IPv4(src="1.1.1.1", dst="2.2.2.2", flags=1)
                        / UDP(sport=1, dport=2, length=1000, checksum=1) / b"part"))
    assert first[UDP].length == 1000 and first[UDP].checksum_ok is None
    later = parse(bytes(Ethernet() / IPv4(src="1.1.1.1", dst="2.2.2.2", proto=17, frag_offset=3)
                        / b"middle of a datagram"))
    assert later.get(UDP) is None and later.payload == b"middle of a datagram"
    v6 = parse(bytes(Ethernet() / IPv6(src="::1", dst="::2") / IPv6Fragment(offset=8, nh=6)
                     / b"tail"))
    assert v6.get(TCP) is None and v6.payload == b"tail"


def test_truncated_ok_for_packet_in():
    frame = bytes(Ethernet() / IPv4(src="1.1.1.1", dst="2.2.2.2") / TCP(sport=5, dport=6)
                  / bytes(1000))
    with pytest.raises(PacketError, match="IPv4 at offset 14: total length 1040 exceeds"):
        parse(frame[:128])
    pkt = parse(frame[:128], truncated_ok=True)
    assert pkt[TCP].dport == 6 and pkt[TCP].checksum_ok is None
    assert pkt[IPv4].checksum_ok is True and len(pkt.payload) == 128 - 54
    assert pkt.pack() == frame[:128]
    with pytest.raises(PacketError, match="TCP at offset 34: truncated"):
        parse(frame[:40], truncated_ok=True)  # headers themselves must be whole


def test_routing_header_final_destination_in_pseudo_header():
    final = "2001:db8::ff"
    import socket
    rt = IPv6Routing(type=0, segments_left=1, data=bytes(4) + socket.inet_pton(socket.AF_INET6, final))
    pkt = Ethernet() / IPv6(src="2001:db8::1", dst="2001:db8::2") / rt / UDP() / b"x"
    got = parse(bytes(pkt))
    assert got[UDP].checksum_ok
    assert got[IPv6Routing].addresses == [final]
    # the same datagram sent straight to the final destination has the same checksum
    direct = parse(bytes(Ethernet() / IPv6(src="2001:db8::1", dst=final) / UDP() / b"x"))
    assert direct[UDP].checksum == got[UDP].checksum


def test_internet_checksum():
    # RFC 1071 section 3 example
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert internet_checksum(data) == (~0xDDF2) & 0xFFFF
    assert internet_checksum(b"") == 0xFFFF and internet_checksum(b"\xff\xff") == 0
    assert internet_checksum(b"\x01") == 0xFEFF  # odd length: pad with a zero byte


# -- checksum corruption -------------------------------------------------------------

CHECKSUMMED = {
    "ipv4": (udp4(), IPv4, 14 + 10),
    "udp4": (udp4(), UDP, 34 + 6),
    "udp4-payload": (udp4(), UDP, 34 + 8),
    "tcp4": (Ethernet() / IPv4(src="1.1.1.1", dst="2.2.2.2") / TCP() / b"abc", TCP, 34 + 20),
    "icmp": (Ethernet() / IPv4(src="1.1.1.1", dst="2.2.2.2") / ICMP() / b"ping", ICMP, 34 + 1),
    "tcp6": (Ethernet() / IPv6(src="::1", dst="::2") / TCP() / b"abc", TCP, 54 + 16),
    "udp6": (Ethernet() / IPv6(src="::1", dst="::2") / UDP() / b"abc", UDP, 54 + 9),
    "icmpv6": (Ethernet() / IPv6(src="::1", dst="::2") / ICMPv6Echo() / b"x", ICMPv6, 54 + 7),
    "nd": (Ethernet() / IPv6(src="fe80::1", dst="ff02::1")
           / NDNeighborSolicit(target="fe80::2", options=[NDOptSourceLinkAddr(M1)]), ICMPv6, 54 + 9),
    "gre": (Ethernet() / IPv4(src="1.1.1.1", dst="2.2.2.2") / GRE(checksum_present=True)
            / Ethernet(type=0x88B5) / b"x", GRE, 34 + 12),
}


@pytest.mark.parametrize("name", list(CHECKSUMMED))
def test_corrupted_checksum_detected(name):
    pkt, cls, pos = CHECKSUMMED[name]
    frame = bytearray(bytes(pkt))
    assert parse(bytes(frame))[cls].checksum_ok is True
    frame[pos] ^= 0x10
    assert parse(bytes(frame))[cls].checksum_ok is False


def test_pseudo_header_change_is_detected():
    frame = bytearray(bytes(udp4()))
    frame[14 + 12] ^= 1  # source address: IPv4 header and UDP pseudo-header both break
    pkt = parse(bytes(frame))
    assert pkt[IPv4].checksum_ok is False and pkt[UDP].checksum_ok is False


def test_built_headers_have_no_verdict():
    assert IPv4().checksum_ok is None and UDP().checksum_ok is None
    assert GRE().checksum_ok is None and ICMPv6().checksum_ok is None


# -- hostile input -------------------------------------------------------------------

def v4(body: bytes, proto: int) -> bytes:
    return bytes(Ethernet() / IPv4(src="1.1.1.1", dst="2.2.2.2", proto=proto) / body)


def v6(*layers, payload=b"") -> bytes:
    pkt = Ethernet() / IPv6(src="::1", dst="::2")
    for h in layers:
        pkt = pkt / h
    return bytes(pkt / payload)


BAD = {
    "short ethernet": (b"\x00" * 10, "Ethernet at offset 0: truncated: needs 14 bytes, 10 left"),
    "short vlan": (bytes(12) + b"\x81\x00\x00", "VLAN at offset 14: truncated"),
    "ipv4 ihl < 5": (bytes(Ethernet(type=0x800)) + b"\x44" + bytes(19),
                     "IPv4 at offset 14: IHL 4 is below the minimum 5"),
    "ipv4 version": (bytes(Ethernet(type=0x800)) + b"\x65" + bytes(19), "IPv4 at offset 14: version is 6"),
    "ipv4 ihl beyond buffer": (bytes(Ethernet(type=0x800)) + b"\x4f" + bytes(19),
                               "IPv4 at offset 14: truncated: needs 60 bytes, 20 left"),
    "ipv4 total < header": (bytes(Ethernet(type=0x800)) + b"\x45\x00\x00\x10" + bytes(16),
                            "IPv4 at offset 14: total length 16 is shorter"),
    "ipv4 total beyond buffer": (bytes(Ethernet(type=0x800)) + b"\x45\x00\x00\x30" + bytes(16),
                                 "IPv4 at offset 14: total length 48 exceeds the 20 bytes left"),
    "tcp offset < 5": (v4(bytes(12) + b"\x40\x00" + bytes(6), 6),
                       "TCP at offset 34: data offset 4 is below the minimum 5"),
    "tcp offset beyond": (v4(bytes(12) + b"\xf0\x00" + bytes(6), 6), "TCP at offset 34: truncated"),
    "udp length < 8": (v4(b"\x00\x01\x00\x02\x00\x07\x00\x00", 17),
                       "UDP at offset 34: length 7 is below the minimum 8"),
    "udp length beyond": (v4(b"\x00\x01\x00\x02\x00\x09\x00\x00", 17),
                          "UDP at offset 34: length 9 exceeds the 8 bytes left"),
    "icmp short": (v4(b"\x08\x00\x00", 1), "ICMP at offset 34: truncated"),
    "ipv6 payload beyond": (bytes(Ethernet(type=0x86DD)) + b"\x60" + bytes(3) + b"\x00\x10" + bytes(34),
                            "IPv6 at offset 14: payload length 16 exceeds"),
    "ipv6 ext overrun": (bytes(Ethernet() / IPv6(nh=0) / (b"\x11\x05" + bytes(6))),
                         "IPv6HopByHop at offset 54: length 48 overruns the 8 bytes left"),
    "ipv6 repeated ext": (v6(IPv6Routing(nh=43), IPv6Routing(nh=59)),
                          "IPv6Routing at offset 62: extension header repeated"),
    "ipv6 dest opts thrice": (v6(IPv6DestOpts(nh=60), IPv6DestOpts(nh=60), IPv6DestOpts(nh=59)),
                              "IPv6DestOpts at offset 70: extension header repeated"),
    "ipv6 hop-by-hop late": (v6(IPv6DestOpts(nh=0), IPv6HopByHop(nh=59)),
                             "IPv6HopByHop at offset 62: hop-by-hop options must directly follow"),
    "ah too short": (v4(b"\x06\x00\x00\x00" + bytes(8), 51),
                     "AH at offset 34: payload length 0 is below the minimum 1"),
    "nd option length 0": (v6(NDRouterSolicit(options=[NDOptRaw(9)]))[:-8] + b"\x09\x00" + bytes(6),
                           "NDRouterSolicit at offset 62: option 9 has length 0"),
    "nd option overrun": (v6(NDNeighborSolicit(options=[NDOptRaw(9, bytes(6))]))[:-8] + b"\x09\x02" + bytes(6),
                          "NDNeighborSolicit at offset 78: option 9 of 16 bytes overruns"),
    "gre short": (v4(b"\x20\x00\x65\x58\x00", 47), "GRE at offset 34: truncated: needs 8 bytes, 5 left"),
    "vxlan short": (v4(b"\x00\x01\x12\xb5\x00\x0c\x00\x00" + bytes(4), 17), "VXLAN at offset 42: truncated"),
    "lldp overrun": (bytes(Ethernet(type=0x88CC)) + b"\x02\x10\x04", "LLDP at offset 14: TLV type 1 length 16 overruns"),
    "lldp order": (bytes(Ethernet(type=0x88CC)) + b"\x04\x02\x07x" + bytes(2),
                   "LLDP at offset 14: TLV 1 must be chassis ID, got type 2"),
    "lldp no end": (bytes(Ethernet(dst=M2) / LLDP(chassis_id=b"c", port_id=b"p"))[:-2],
                    "LLDP at offset 26: missing End of LLDPDU TLV"),
    "lldp ttl length": (bytes(Ethernet(type=0x88CC)) + b"\x02\x02\x07c\x04\x02\x07p\x06\x03\x00\x00\x00\x00\x00",
                        "LLDP at offset 22: TTL TLV length 3 is not 2"),
    "lldp empty chassis": (bytes(Ethernet(type=0x88CC)) + b"\x02\x01\x07",
                           "LLDP at offset 14: chassis ID TLV length 1 is below 2"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_hostile_input(name):
    frame, message = BAD[name]
    with pytest.raises(PacketError) as info:
        parse(frame)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_every_prefix_of_a_full_stack_fails_cleanly():
    pkt = (Ethernet() / VLAN(vid=9) / IPv4(src="1.1.1.1", dst="2.2.2.2") / UDP(dport=4789)
           / VXLAN(vni=1) / Ethernet() / IPv6(src="::1", dst="::2") / IPv6HopByHop()
           / IPv6Fragment() / AH(icv=bytes(12)) / TCP(options=b"\x02\x04\x05\xb4") / b"end")
    frame = bytes(pkt)
    assert parse(frame).pack() == frame
    for n in range(len(frame)):
        with pytest.raises(PacketError):
            parse(frame[:n])


def test_build_rejects_bad_fields():
    cases = [
        Ethernet(dst="not a mac", type=0x800),
        Ethernet(dst="02:00:00:00:00", type=0x800),
        VLAN(vid=4096, type=0x800),
        IPv4(src="1.2.3", dst="1.1.1.1", proto=6),
        IPv4(src="1.1.1.1", dst="1.1.1.1", proto=6, options=bytes(44)),
        IPv6(src="fe80::1::2"),
        IPv6(flow_label=1 << 20),
        VXLAN(vni=1 << 24),
        AH(icv=b"abc", nh=59),
        LLDP(tlvs=[(9, bytes(512))]),
        ARP(src_ip="300.1.1.1"),
    ]
    for h in cases:
        with pytest.raises(PacketError) as info:
            h.pack()
        assert type(h).__name__ in str(info.value)
    with pytest.raises(PacketError, match="UDP: bad field value"):
        bytes(IPv4(src="1.1.1.1", dst="1.1.1.1") / UDP(sport=70000))
    with pytest.raises(PacketError, match="NVGRE"):
        NVGRE(vsid=1 << 24)


def test_lldp_round_trip_keeps_unknown_and_org_tlvs():
    org = bytes.fromhex("0080c2") + b"\x01\x00\x0a"
    frame = bytes(Ethernet(dst=consts.LLDP_MAC_NEAREST_BRIDGE, src=M1)
                  / LLDP(chassis_id=b"dpid:1", port_id=b"\x00\x00\x00\x02", ttl=10,
                         system_name="sw1", tlvs=[(127, org), (8, b"\x05\x01\x0a\x00\x00\x01")]))
    lldp = parse(frame + bytes(8))[LLDP]
    assert lldp.chassis_id == b"dpid:1" and lldp.port_id == b"\x00\x00\x00\x02"
    assert lldp.system_name == "sw1" and lldp.ttl == 10
    assert lldp.tlvs == [(127, org), (8, b"\x05\x01\x0a\x00\x00\x01")]


def test_vxlan_and_nvgre_inner_frames():
    inner = Ethernet(dst=M2, src=M1) / IPv4(src="10.0.0.1", dst="10.0.0.2") / ICMP() / b"hi"
    vx = parse(bytes(Ethernet() / IPv6(src="::1", dst="::2") / UDP(sport=1, dport=4789)
                     / VXLAN(vni=0xFFFFFF) / inner))
    assert vx[VXLAN].vni == 0xFFFFFF
    assert vx.after(VXLAN) == parse(bytes(inner))
    assert len(vx.all(Ethernet)) == 2
    nv = parse(bytes(Ethernet() / IPv4(src="1.1.1.1", dst="2.2.2.2") / NVGRE(vsid=77, flow_id=5)
                     / inner))
    g = nv[NVGRE]
    assert (g.vsid, g.flow_id, g.key, g.protocol) == (77, 5, (77 << 8) | 5, 0x6558)
    assert nv.after(GRE) == parse(bytes(inner))


def test_packet_error_pickles():
    import pickle
    err = PacketError("TCP", "bad", 34)
    again = pickle.loads(pickle.dumps(err))
    assert (again.header, again.offset, str(again)) == ("TCP", 34, "TCP at offset 34: bad")
