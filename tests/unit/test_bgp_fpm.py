"""The FPM stream reader (kumoflow.bgp.fpm) on hand-built bytes: FPM frames around netlink
RTM_NEWROUTE/RTM_DELROUTE messages laid out as the kernel's rtnetlink documents them (nlmsghdr,
rtmsg, rtattrs), any chunking (hypothesis), multipath, next-hop objects, and bad input (one
error class; a bad frame skipped, the next one read; lost framing reported every time)."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest
from hypothesis import given, strategies as st

from kumoflow.bgp.fpm import (ADD, DELETE, FpmDecoder, FpmError, Nexthop, Route, encode_route, frame,
                              parse_netlink)

A = ipaddress.ip_address
N = ipaddress.ip_network


def rtattr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + bytes(-len(raw) % 4)


def netlink(kind: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, 0x501, 7, 0) + body


def rtmsg(family: int, dst_len: int, table: int = 254, protocol: int = 186, rtype: int = 1) -> bytes:
    return struct.pack("=BBBBBBBBI", family, dst_len, 0, 0, table, protocol, 0, rtype, 0)


def decode_all(data: bytes) -> list[Route]:
    d = FpmDecoder()
    d.feed(data)
    return d.routes()


def test_an_ipv4_route_built_by_hand():
    body = (rtmsg(socket.AF_INET, 24) + rtattr(1, bytes([203, 0, 113, 0])) + rtattr(6, struct.pack("=I", 20))
            + rtattr(5, bytes([10, 200, 0, 1])) + rtattr(4, struct.pack("=I", 2)))
    [route] = decode_all(frame(netlink(24, body)))
    assert route == Route(ADD, N("203.0.113.0/24"), (Nexthop(A("10.200.0.1"), 2, 1),), 254, 186, 20, 1)
    assert route.family == 4 and route.protocol_name == "bgp"


def test_an_ipv6_delete_and_a_table_above_255():
    body = (rtmsg(socket.AF_INET6, 48, table=252) + rtattr(1, A("2001:db8:1::").packed)
            + rtattr(15, struct.pack("=I", 1001)))
    [route] = decode_all(frame(netlink(25, body)))
    assert route.action == DELETE and route.prefix == N("2001:db8:1::/48") and route.table == 1001
    assert route.nexthops == ()


def test_multipath_with_weights():
    hops = b""
    for gw, ifindex, hops_field in ((A("10.0.0.1"), 3, 0), (A("10.0.0.2"), 4, 2)):
        inner = rtattr(5, gw.packed)
        hops += struct.pack("=HBBi", 8 + len(inner), 0, hops_field, ifindex) + inner
    body = rtmsg(socket.AF_INET, 16) + rtattr(1, bytes([10, 9, 0, 0])) + rtattr(9, hops)
    [route] = decode_all(frame(netlink(24, body)))
    assert route.nexthops == (Nexthop(A("10.0.0.1"), 3, 1), Nexthop(A("10.0.0.2"), 4, 3))


def test_a_default_route_has_no_rta_dst():
    [route] = decode_all(frame(netlink(24, rtmsg(socket.AF_INET, 0) + rtattr(5, bytes([192, 0, 2, 1])))))
    assert route.prefix == N("0.0.0.0/0") and route.nexthops[0].gateway == A("192.0.2.1")


def test_next_hop_objects_resolve_a_routes_id():
    nh = struct.pack("=BBBBI", socket.AF_INET, 0, 186, 0, 0)
    one = netlink(104, nh + rtattr(1, struct.pack("=I", 7)) + rtattr(6, bytes([10, 0, 0, 1]))
                  + rtattr(5, struct.pack("=I", 2)))
    two = netlink(104, nh + rtattr(1, struct.pack("=I", 8)) + rtattr(6, bytes([10, 0, 0, 2]))
                  + rtattr(5, struct.pack("=I", 2)))
    group = netlink(104, nh + rtattr(1, struct.pack("=I", 9)) + rtattr(2, struct.pack("=IBBH", 7, 0, 0, 0)
                                                                      + struct.pack("=IBBH", 8, 1, 0, 0)))
    route = netlink(24, rtmsg(socket.AF_INET, 8) + rtattr(1, bytes([10, 0, 0, 0])) + rtattr(30, struct.pack("=I", 9)))
    d = FpmDecoder()
    for msg in (one, two, group, route):
        d.feed(frame(msg))
    [r] = d.routes()
    assert r.nexthops == (Nexthop(A("10.0.0.1"), 2, 1), Nexthop(A("10.0.0.2"), 2, 2))
    assert d.skipped == 0
    unknown = netlink(24, rtmsg(socket.AF_INET, 8) + rtattr(1, bytes([10, 0, 0, 0])) + rtattr(30, struct.pack("=I", 99)))
    d.feed(frame(unknown))
    with pytest.raises(FpmError, match="next-hop object 99 was never sent"):
        d.routes()


def test_messages_that_are_not_routes_are_skipped_and_counted():
    d = FpmDecoder()
    d.feed(frame(netlink(28, b"\0" * 12)))          # RTM_NEWNEIGH
    d.feed(frame(encode_route(Route(ADD, N("10.1.0.0/16"), (Nexthop(A("10.0.0.1"), 1),)))))
    assert [r.prefix for r in d.routes()] == [N("10.1.0.0/16")] and d.skipped == 1


def test_several_netlink_messages_in_one_frame():
    a = encode_route(Route(ADD, N("10.1.0.0/16"), (Nexthop(A("10.0.0.1"), 1),)))
    b = encode_route(Route(DELETE, N("10.2.0.0/16")))
    assert [r.prefix for r in decode_all(frame(a + b))] == [N("10.1.0.0/16"), N("10.2.0.0/16")]


addresses4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
addresses6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)


@st.composite
def routes(draw):
    v6 = draw(st.booleans())
    address = draw(addresses6 if v6 else addresses4)
    prefix = ipaddress.ip_network((address, draw(st.integers(0, 128 if v6 else 32))), strict=False)
    action = draw(st.sampled_from([ADD, DELETE]))
    hops = ()
    if action == ADD:
        gateways = draw(st.lists(st.one_of(st.none(), addresses6 if v6 else addresses4), min_size=1, max_size=4))
        hops = tuple(Nexthop(g, draw(st.integers(0 if g is not None else 1, 2**31 - 1)),
                             draw(st.integers(1, 256)) if len(gateways) > 1 else 1) for g in gateways)
    table = draw(st.sampled_from([254, 255, 1000, 2**32 - 1]))
    return Route(action, prefix, hops, table, draw(st.sampled_from([186, 196, 11])),
                 draw(st.one_of(st.none(), st.integers(0, 2**32 - 1))), draw(st.sampled_from([1, 6])))


@given(st.lists(routes(), max_size=30), st.data())
def test_any_chunking_gives_the_same_routes(items, data):
    stream = b"".join(frame(encode_route(r, i)) for i, r in enumerate(items))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    d = FpmDecoder()
    out = []
    last = 0
    for cut in cuts + [len(stream)]:
        d.feed(stream[last:cut])
        last = cut
        out += d.routes()
    assert out == items
    assert d.buffered == 0 and d.frames == len(items)


def test_a_bad_frame_is_skipped_and_the_next_one_read():
    good = frame(encode_route(Route(ADD, N("10.1.0.0/16"), (Nexthop(A("10.0.0.1"), 1),))))
    cases = {
        "too short for a route": frame(netlink(24, b"\0" * 4)),
        "neither IPv4": frame(netlink(24, rtmsg(99, 8))),
        "prefix length 33": frame(netlink(24, rtmsg(socket.AF_INET, 33) + rtattr(1, bytes(4)))),
        "attribute of type 1 .* has length 200": frame(netlink(24, rtmsg(socket.AF_INET, 8)
                                                               + struct.pack("=HH", 200, 1) + bytes(4))),
        "RTA_GATEWAY.* of 3 bytes": frame(netlink(24, rtmsg(socket.AF_INET, 8) + rtattr(1, bytes(4))
                                                  + rtattr(5, bytes(3)))),
        "netlink message at offset 0 says length 900": frame(struct.pack("=IHHII", 900, 24, 0, 0, 0) + bytes(12)),
        "without RTA_DST": frame(netlink(24, rtmsg(socket.AF_INET, 8))),
    }
    for message, bad in cases.items():
        d = FpmDecoder()
        d.feed(good + bad + good)
        assert d.next_route().prefix == N("10.1.0.0/16")
        with pytest.raises(FpmError, match=message):
            d.next_route()
        assert not d.broken
        assert d.next_route().prefix == N("10.1.0.0/16") and d.next_route() is None
        assert d.errors == 1


@given(st.binary(min_size=4, max_size=200))
def test_garbage_is_an_fpm_error_never_another_exception(junk):
    d = FpmDecoder()
    d.feed(junk)
    try:
        for _ in range(100):
            if d.next_route() is None:
                break
    except FpmError:
        pass


def test_lost_framing_is_reported_every_time():
    d = FpmDecoder()
    d.feed(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(FpmError, match="bad frame header.*version 71"):
        d.next_route()
    assert d.broken
    d.feed(frame(encode_route(Route(DELETE, N("10.0.0.0/8")))))
    with pytest.raises(FpmError, match="framing is lost"):
        d.next_route()


def test_a_partial_frame_waits():
    data = frame(encode_route(Route(ADD, N("10.1.0.0/16"), (Nexthop(A("10.0.0.1"), 1),))))
    d = FpmDecoder()
    d.feed(data[:3])
    assert d.next_route() is None
    d.feed(data[3:-1])
    assert d.next_route() is None and d.buffered == len(data) - 1
    d.feed(data[-1:])
    assert d.next_route() is not None


def test_parse_netlink_alone():
    routes, skipped = parse_netlink(encode_route(Route(DELETE, N("fd00::/8"))) + netlink(3, b""))
    assert [r.prefix for r in routes] == [N("fd00::/8")] and skipped == 1


def test_routes_before_a_bad_frame_are_not_lost():
    good = frame(encode_route(Route(ADD, N("10.1.0.0/16"), (Nexthop(A("10.0.0.1"), 1),))))
    other = frame(encode_route(Route(DELETE, N("10.2.0.0/16"))))
    d = FpmDecoder()
    d.feed(good + frame(netlink(24, rtmsg(99, 8))) + other)
    with pytest.raises(FpmError):
        d.routes()
    assert [r.prefix for r in d.routes()] == [N("10.1.0.0/16"), N("10.2.0.0/16")]


def test_the_usual_route_and_the_general_parser_agree():
    """The decoder's fast path (one plain route per frame) gives what parse_netlink gives."""
    for route in (Route(ADD, N("10.1.0.0/16"), (Nexthop(A("10.0.0.1"), 3),), 254, 186, 20),
                  Route(ADD, N("2001:db8::/32"), (Nexthop(A("fe80::1"), 3),), 1000, 186, None),
                  Route(DELETE, N("0.0.0.0/0"), (), 254, 186, 20),
                  Route(ADD, N("10.9.0.0/16"), (), 254, 196, 20, 6)):
        raw = encode_route(route)
        assert decode_all(frame(raw)) == parse_netlink(raw)[0] == [route]


def test_a_withdrawal_gets_the_prefix_object_of_its_announcement():
    d = FpmDecoder()
    d.feed(frame(encode_route(Route(ADD, N("10.1.0.0/16"), (Nexthop(A("10.0.0.1"), 1),))))
           + frame(encode_route(Route(DELETE, N("10.1.0.0/16")))))
    add, delete = d.routes()
    assert add.prefix is delete.prefix and add.nexthops[0].gateway == A("10.0.0.1")


def test_decoded_prefixes_and_gateways_are_ipaddress_objects_that_hash_alike():
    """The fast path keeps each object's hash; they stand for the plain ones in any dict."""
    routes = decode_all(frame(encode_route(Route(ADD, N("10.1.0.0/16"), (Nexthop(A("10.0.0.1"), 1),))))
                        + frame(encode_route(Route(ADD, N("2001:db8::/32"), (Nexthop(A("fe80::1"), 3),)))))
    for route, prefix, gateway in zip(routes, (N("10.1.0.0/16"), N("2001:db8::/32")), (A("10.0.0.1"), A("fe80::1"))):
        got = route.nexthops[0].gateway
        assert isinstance(route.prefix, type(prefix)) and isinstance(got, type(gateway))
        assert route.prefix == prefix and hash(route.prefix) == hash(prefix) and {prefix: 1}[route.prefix] == 1
        assert got == gateway and hash(got) == hash(gateway) and got in route.prefix.supernet(new_prefix=0)
