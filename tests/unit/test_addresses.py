"""Address sets (kumoflow.apps.addresses): strict parsing that reports every bad entry at once,
country files, and aggregation / subtraction checked by brute force over small address spaces."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from kumoflow.apps.addresses import (AddressError, aggregate, contains, country_file, load_country, load_file, parse,
                                     parse_lines, parse_list, ranges, subtract)

COUNTRIES = Path(__file__).parent.parent / "data" / "countries"
net = ipaddress.ip_network


# --- parsing --------------------------------------------------------------------------------------


def test_parse_addresses_and_cidrs():
    assert parse("192.0.2.0/24") == net("192.0.2.0/24")
    assert parse(" 192.0.2.7 ") == net("192.0.2.7/32")
    assert parse("2001:db8::/32") == net("2001:db8::/32")
    assert parse("2001:db8::1") == net("2001:db8::1/128")
    assert parse("0.0.0.0/0") == net("0.0.0.0/0")


@pytest.mark.parametrize("text, says", [
    ("10.0.0.1/24", "host bits set (the network is 10.0.0.0/24)"),
    ("2001:db8::1/32", "host bits set (the network is 2001:db8::/32)"),
    ("10.0.0.0/33", "prefix length is 0..32"),
    ("2001:db8::/129", "prefix length is 0..128"),
    ("10.0.0.0/255.0.0.0", "no netmask"),
    ("10.0.0.0/", "no netmask"),
    ("1.2.3", "not an IPv4 or IPv6 address or CIDR"),
    ("example.test", "not an IPv4 or IPv6 address or CIDR"),
    ("fe80::1%eth0", "scope id"),
    ("", "empty"),
])
def test_parse_refuses_with_a_reason(text, says):
    with pytest.raises(ValueError) as caught:
        parse(text)
    assert says in str(caught.value)


def test_lines_report_every_bad_line_with_its_number():
    text = ["# a comment", "192.0.2.0/24  # trailing comment", "", "bogus", "198.51.100.0/24", "10.0.0.1/8",
            "   ", "2001:db8::/32"]
    with pytest.raises(AddressError) as caught:
        parse_lines(text, "DE.txt")
    assert caught.value.problems == [
        "DE.txt:4: 'bogus' is not an IPv4 or IPv6 address or CIDR",
        "DE.txt:6: '10.0.0.1/8' has host bits set (the network is 10.0.0.0/8)",
    ]
    assert parse_lines(["192.0.2.0/24 # x", "#", "2001:db8::/32"]) == [net("192.0.2.0/24"), net("2001:db8::/32")]


def test_list_reports_every_bad_item_by_index():
    with pytest.raises(AddressError) as caught:
        parse_list(["192.0.2.0/24", 7, "x", "203.0.113.0/24"])
    assert [p.split(":")[0] for p in caught.value.problems] == ["addresses[1]", "addresses[2]"]


def test_many_problems_are_all_kept_and_the_message_is_bounded():
    with pytest.raises(AddressError) as caught:
        parse_lines([f"bad{i}" for i in range(500)], "big.txt")
    assert len(caught.value.problems) == 500
    assert str(caught.value).count("\n") == 20 and str(caught.value).endswith("and 480 more")


def test_files_and_countries(tmp_path):
    xa = load_country(COUNTRIES, "XA")
    assert aggregate(xa) == [net("192.0.2.0/24"), net("198.51.100.0/24"), net("2001:db8::/33")]
    assert aggregate(load_country(COUNTRIES, "xb")) == [net("203.0.113.0/24"), net("2001:db8:8000::/33")]
    assert country_file(COUNTRIES, "xa").name == "XA.txt"
    (tmp_path / "xc.txt").write_text("192.0.2.0/24\n")
    assert country_file(tmp_path, "XC").name == "xc.txt"
    with pytest.raises(ValueError, match="no list XZ.txt"):
        country_file(COUNTRIES, "XZ")
    for bad in ("X", "XAA", "../XA", "1A", ""):
        with pytest.raises(ValueError, match="two-letter code"):
            country_file(COUNTRIES, bad)
    (tmp_path / "BAD.txt").write_bytes(b"192.0.2.0/24\n\xff\xfe\n")
    with pytest.raises(AddressError, match="not UTF-8"):
        load_file(tmp_path / "BAD.txt")
    (tmp_path / "QQ.txt").write_text("192.0.2.0/24\n192.0.2.300\n")
    with pytest.raises(AddressError) as caught:
        load_country(tmp_path, "QQ")
    assert caught.value.problems == [f"{tmp_path / 'QQ.txt'}:2: '192.0.2.300' is not an IPv4 or IPv6 address or CIDR"]


# --- aggregation and subtraction --------------------------------------------------------------------


def test_aggregate_merges_adjacent_and_contained():
    got = aggregate([net("10.0.0.0/25"), net("10.0.0.128/25"), net("10.0.1.0/24"), net("10.0.0.5/32"),
                     net("10.0.3.0/24"), net("2001:db8:8000::/33"), net("2001:db8::/33")])
    assert got == [net("10.0.0.0/23"), net("10.0.3.0/24"), net("2001:db8::/32")]
    assert aggregate([]) == []
    assert aggregate([net("0.0.0.0/1"), net("128.0.0.0/1")]) == [net("0.0.0.0/0")]
    # adjacent but not alignable: stays two
    assert aggregate([net("10.0.1.0/24"), net("10.0.2.0/24")]) == [net("10.0.1.0/24"), net("10.0.2.0/24")]


def test_subtract():
    assert subtract([net("10.0.0.0/8")], [net("10.0.0.0/9")]) == [net("10.128.0.0/9")]
    assert subtract([net("10.0.0.0/24")], [net("10.0.0.0/24")]) == []
    assert subtract([net("10.0.0.0/24")], [net("192.0.2.0/24"), net("2001:db8::/32")]) == [net("10.0.0.0/24")]
    assert subtract([net("0.0.0.0/0"), net("::/0")], [net("0.0.0.0/1"), net("::/1")]) == [
        net("128.0.0.0/1"), net("8000::/1")]
    # allow everything except country XA
    rest = subtract([net("192.0.0.0/8")], load_country(COUNTRIES, "XA"))
    assert not contains(rest, "192.0.2.9") and contains(rest, "192.0.3.1") and contains(rest, "192.0.1.255")


def _brute(networks) -> set[tuple[int, int]]:
    return {(n.version, int(a)) for n in networks for a in n}


def _maximal(result, addresses) -> bool:
    """Each prefix of `result` is as large as it can be: its parent is not wholly in the set."""
    for n in result:
        if n.prefixlen == 0:
            continue
        if _brute([n.supernet()]) <= addresses:
            return False
    return True


def _small(version: int):
    """Prefixes inside 192.0.2.0/24 or 2001:db8::/120 (256 addresses each)."""
    base = {4: int(ipaddress.ip_address("192.0.2.0")), 6: int(ipaddress.ip_address("2001:db8::"))}[version]
    bits = {4: 32, 6: 128}[version]
    return st.integers(0, 8).flatmap(lambda size: st.integers(0, (256 >> size) - 1).map(
        lambda k: ipaddress.ip_network((base + (k << size), bits - size))))


small_sets = st.lists(st.one_of(_small(4), _small(6)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(small_sets)
def test_aggregate_covers_exactly_the_same_addresses_with_maximal_disjoint_prefixes(networks):
    got = aggregate(networks)
    addresses = _brute(networks)
    assert _brute(got) == addresses
    assert sum(n.num_addresses for n in got) == len(addresses)          # disjoint
    assert _maximal(got, addresses)                                      # hence the fewest
    assert got == sorted(got, key=lambda n: (n.version, int(n.network_address)))
    assert aggregate(got) == got
    assert got == [*ipaddress.collapse_addresses(n for n in networks if n.version == 4),     # Python's own, an oracle
                   *ipaddress.collapse_addresses(n for n in networks if n.version == 6)]


@settings(max_examples=300, deadline=None)
@given(small_sets, small_sets)
def test_subtract_is_set_difference(allow, deny):
    got = subtract(allow, deny)
    addresses = _brute(allow) - _brute(deny)
    assert _brute(got) == addresses
    assert sum(n.num_addresses for n in got) == len(addresses)
    assert _maximal(got, addresses)


def test_ten_thousand_country_like_prefixes():
    """Allocations as registries make them (runs of /24../16 blocks inside a few /8s):
    the aggregate is the same address set in fewer prefixes."""
    rng = random.Random(16)
    networks = []
    for _ in range(10_000):
        first_octet = rng.choice((2, 5, 31, 46, 77, 78, 79, 80, 85, 87, 91, 109, 176, 185, 188, 193, 194, 212, 217))
        length = rng.choice((24, 24, 24, 23, 22, 22, 21, 20, 19, 16))
        rest = rng.getrandbits(24) >> (32 - length) << (32 - length)
        networks.append(ipaddress.ip_network(((first_octet << 24) | rest, length)))
    got = aggregate(networks)
    assert len(got) < len(networks)
    assert ranges(got) == ranges(networks)
