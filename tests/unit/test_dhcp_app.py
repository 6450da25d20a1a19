"""kumoflow.apps.dhcp: what the controller answers a tenant's DHCP client.

Every message type (RFC 2131 4.3), the addressing rules of RFC 2131 4.1, the
options a lease carries (the default route in front of the host routes in
option 121, RFC 3442), the size a client accepts, and requests that get no
answer (another server chosen, another MAC, relayed, hostile bytes).
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp import DHCP as sDHCP
from scapy.layers.l2 import Ether

from kumoflow.apps import dhcp as app
from kumoflow.packet import UDP, Ethernet, IPv4, parse
from kumoflow.packet import dhcp as d
from kumoflow.packet.dhcp import DHCP, parse_dhcp

MAC, SERVER_MAC = "fa:16:3e:00:00:05", "fa:16:3e:ff:00:01"
SUBNET = {"network_id": "n1", "cidr": "10.0.0.0/24", "ip_version": 4, "gateway_ip": "10.0.0.1", "enable_dhcp": True,
          "dns_nameservers": ["10.0.0.2", "192.0.2.53"],
          "host_routes": [{"destination": "192.168.0.0/16", "nexthop": "10.0.0.254"}]}
SUBNET6 = {"network_id": "n1", "cidr": "2001:db8::/64", "ip_version": 6, "gateway_ip": "2001:db8::1",
           "enable_dhcp": True, "dns_nameservers": [], "host_routes": []}
SUBNETS = {"s1": SUBNET, "s6": SUBNET6}
PORT = {"network_id": "n1", "mac_address": MAC.upper(), "dns_name": "vm1",
        "fixed_ips": [{"subnet_id": "s6", "ip_address": "2001:db8::5"}, {"subnet_id": "s1", "ip_address": "10.0.0.5"}]}
NETWORK = {"provider:network_type": "vxlan", "mtu": 1450}


def request(kind: int, *, src: str = "0.0.0.0", dst: str = "255.255.255.255", mac: str = MAC, chaddr: str = MAC,
            **fields) -> bytes:
    options = {d.OPT_MESSAGE_TYPE: kind, **fields.pop("options", {})}
    msg = DHCP(**{"op": d.BOOTREQUEST, "xid": 0x5EED, "chaddr": chaddr, "options": options, **fields})
    return bytes(Ethernet(src=mac, dst="ff:ff:ff:ff:ff:ff") / IPv4(src=src, dst=dst)
                 / UDP(sport=68, dport=67) / msg)


def ask(frame, port=PORT, subnets=SUBNETS, network=NETWORK, **kw):
    """The answer, parsed: (Ethernet, IPv4, UDP, DHCP), or None."""
    out = app.answer(frame, port, subnets, network, SERVER_MAC, **kw)
    if out is None:
        return None
    pkt = parse(out)
    assert pkt[IPv4].checksum_ok and pkt[UDP].checksum_ok
    return pkt[Ethernet], pkt[IPv4], pkt[UDP], parse_dhcp(pkt.payload)


# --- DISCOVER -----------------------------------------------------------------------------------

def test_discover_gets_an_offer_of_the_ports_address_unicast_to_its_mac():
    eth, ip, udp, msg = ask(request(d.DISCOVER))
    assert (eth.src, eth.dst) == (SERVER_MAC, MAC)
    assert (ip.src, ip.dst, udp.sport, udp.dport) == ("10.0.0.1", "10.0.0.5", 67, 68)
    assert (msg.op, msg.xid, msg.chaddr, msg.flags) == (d.BOOTREPLY, 0x5EED, MAC, 0)
    assert (msg.ciaddr, msg.yiaddr, msg.siaddr, msg.giaddr) == ("0.0.0.0", "10.0.0.5", "0.0.0.0", "0.0.0.0")
    assert msg.options == {
        d.OPT_MESSAGE_TYPE: d.OFFER, d.OPT_SERVER_ID: "10.0.0.1", d.OPT_LEASE_TIME: 86400,
        d.OPT_RENEWAL_TIME: 43200, d.OPT_REBINDING_TIME: 75600, d.OPT_SUBNET_MASK: "255.255.255.0",
        d.OPT_BROADCAST: "10.0.0.255", d.OPT_ROUTER: ["10.0.0.1"], d.OPT_DNS: ["10.0.0.2", "192.0.2.53"],
        d.OPT_MTU: 1450, d.OPT_CLASSLESS_ROUTES: [("0.0.0.0/0", "10.0.0.1"), ("192.168.0.0/16", "10.0.0.254")],
        d.OPT_HOSTNAME: "vm1",
    }


def test_discover_with_the_broadcast_flag_gets_a_broadcast_offer():
    eth, ip, _, msg = ask(request(d.DISCOVER, flags=d.FLAG_BROADCAST))
    assert (eth.dst, ip.dst) == ("ff:ff:ff:ff:ff:ff", "255.255.255.255")
    assert msg.flags == d.FLAG_BROADCAST and msg.yiaddr == "10.0.0.5"


def test_discover_asking_for_another_address_is_offered_the_ports():
    *_, msg = ask(request(d.DISCOVER, options={d.OPT_REQUESTED_IP: "10.0.0.99"}))
    assert msg.message_type == d.OFFER and msg.yiaddr == "10.0.0.5"


def test_scapy_reads_the_offer():
    out = app.answer(request(d.DISCOVER), PORT, SUBNETS, NETWORK, SERVER_MAC)
    options = dict((o[0], o[1:]) for o in Ether(out)[sDHCP].options if isinstance(o, tuple))
    assert options["message-type"] == (2,) and options["server_id"] == ("10.0.0.1",)
    assert options["classless_static_routes"] == (["0.0.0.0/0:10.0.0.1", "192.168.0.0/16:10.0.0.254"],)
    assert options["interface-mtu"] == (1450,) and options["name_server"] == ("10.0.0.2", "192.0.2.53")


# --- REQUEST ------------------------------------------------------------------------------------

def test_request_selecting_this_server_is_acked():
    eth, ip, _, msg = ask(request(d.REQUEST, options={d.OPT_SERVER_ID: "10.0.0.1", d.OPT_REQUESTED_IP: "10.0.0.5"}))
    assert msg.message_type == d.ACK and msg.yiaddr == "10.0.0.5" and msg.ciaddr == "0.0.0.0"
    assert (eth.dst, ip.dst) == (MAC, "10.0.0.5")
    assert msg.options[d.OPT_LEASE_TIME] == 86400 and msg.options[d.OPT_SUBNET_MASK] == "255.255.255.0"


def test_request_selecting_another_server_gets_nothing():
    assert ask(request(d.REQUEST, options={d.OPT_SERVER_ID: "10.0.0.9", d.OPT_REQUESTED_IP: "10.0.0.5"})) is None


def test_request_selecting_another_address_is_naked_by_broadcast():
    eth, ip, _, msg = ask(request(d.REQUEST, options={d.OPT_SERVER_ID: "10.0.0.1", d.OPT_REQUESTED_IP: "10.0.0.6"}))
    assert (eth.dst, ip.src, ip.dst) == ("ff:ff:ff:ff:ff:ff", "10.0.0.1", "255.255.255.255")
    assert (msg.yiaddr, msg.ciaddr) == ("0.0.0.0", "0.0.0.0")
    assert msg.options == {d.OPT_MESSAGE_TYPE: d.NAK, d.OPT_SERVER_ID: "10.0.0.1",
                           d.OPT_MESSAGE: "10.0.0.6 is not this port's address"}


@pytest.mark.parametrize("wanted,kind", [("10.0.0.5", d.ACK), ("172.16.0.5", d.NAK)])
def test_request_init_reboot(wanted, kind):
    """INIT-REBOOT: no server identifier, the address it had in option 50, ciaddr 0."""
    eth, ip, _, msg = ask(request(d.REQUEST, options={d.OPT_REQUESTED_IP: wanted}))
    assert msg.message_type == kind
    assert (eth.dst, ip.dst) == ((MAC, "10.0.0.5") if kind == d.ACK else ("ff:ff:ff:ff:ff:ff", "255.255.255.255"))


@pytest.mark.parametrize("flags", [0, d.FLAG_BROADCAST])
def test_request_renewing_or_rebinding_is_acked_unicast_to_ciaddr(flags):
    """RENEWING (unicast to the server) and REBINDING (broadcast): ciaddr set,
    no option 50 or 54; the ACK goes to ciaddr even with the broadcast flag."""
    frame = request(d.REQUEST, src="10.0.0.5", dst="10.0.0.1" if not flags else "255.255.255.255",
                    ciaddr="10.0.0.5", flags=flags)
    eth, ip, _, msg = ask(frame)
    assert msg.message_type == d.ACK and (msg.ciaddr, msg.yiaddr) == ("10.0.0.5", "10.0.0.5")
    assert (eth.dst, ip.dst) == (MAC, "10.0.0.5")


def test_request_renewing_an_address_that_is_not_the_ports_is_naked():
    eth, ip, _, msg = ask(request(d.REQUEST, src="10.0.0.7", ciaddr="10.0.0.7"))
    assert msg.message_type == d.NAK and (eth.dst, ip.dst) == ("ff:ff:ff:ff:ff:ff", "255.255.255.255")


def test_request_without_any_address_gets_nothing():
    assert ask(request(d.REQUEST)) is None


# --- RELEASE, DECLINE, INFORM, and what a client never sends -------------------------------------

@pytest.mark.parametrize("kind", [d.RELEASE, d.DECLINE])
def test_release_and_decline_get_nothing(kind):
    assert ask(request(kind, ciaddr="10.0.0.5", options={d.OPT_SERVER_ID: "10.0.0.1"})) is None


def test_inform_gets_the_configuration_without_a_lease():
    eth, ip, _, msg = ask(request(d.INFORM, src="10.0.0.5", ciaddr="10.0.0.5"))
    assert msg.message_type == d.ACK and (msg.ciaddr, msg.yiaddr) == ("10.0.0.5", "0.0.0.0")
    assert (eth.dst, ip.dst) == (MAC, "10.0.0.5")
    assert not {d.OPT_LEASE_TIME, d.OPT_RENEWAL_TIME, d.OPT_REBINDING_TIME} & set(msg.options)
    assert msg.options[d.OPT_ROUTER] == ["10.0.0.1"] and msg.options[d.OPT_MTU] == 1450


def test_inform_from_an_address_that_is_not_the_ports_gets_nothing():
    assert ask(request(d.INFORM, src="10.0.0.7", ciaddr="10.0.0.7")) is None


@pytest.mark.parametrize("kind", [d.OFFER, d.ACK, d.NAK, None, 9, 200])
def test_server_messages_and_unknown_types_get_nothing(kind):
    options = {} if kind is None else {d.OPT_MESSAGE_TYPE: kind}
    msg = DHCP(op=d.BOOTREQUEST, chaddr=MAC, options=options)
    frame = bytes(Ethernet(src=MAC, dst="ff:ff:ff:ff:ff:ff") / IPv4(src="0.0.0.0", dst="255.255.255.255")
                  / UDP(sport=68, dport=67) / msg)
    assert ask(frame) is None


def test_a_bootreply_sent_by_a_port_gets_nothing():
    assert ask(request(d.DISCOVER, op=d.BOOTREPLY)) is None


# --- who is answered ----------------------------------------------------------------------------

@pytest.mark.parametrize("change", [
    {"mac": "fa:16:3e:00:00:06"},                         # frame from another MAC
    {"chaddr": "fa:16:3e:00:00:06"},                      # chaddr of another MAC
    {"mac": "fa:16:3e:00:00:06", "chaddr": "fa:16:3e:00:00:06"},
    {"giaddr": "10.0.0.254"},                             # relayed: no relay support
    {"htype": 6},
])
def test_requests_not_from_the_port_itself_get_nothing(change):
    assert ask(request(d.DISCOVER, **change)) is None


def test_unknown_port_gets_nothing():
    assert ask(request(d.DISCOVER), port=None) is None


def test_subnet_without_dhcp_gets_nothing():
    subnets = {**SUBNETS, "s1": {**SUBNET, "enable_dhcp": False}}
    assert ask(request(d.DISCOVER), subnets=subnets) is None


def test_port_without_ipv4_address_gets_nothing():
    assert ask(request(d.DISCOVER), port={**PORT, "fixed_ips": PORT["fixed_ips"][:1]}) is None


def test_the_first_ipv4_address_on_a_dhcp_subnet_is_the_lease():
    subnets = {**SUBNETS, "s2": {**SUBNET, "cidr": "10.1.0.0/24", "gateway_ip": "10.1.0.1", "enable_dhcp": False},
               "s3": {**SUBNET, "cidr": "10.2.0.0/24", "gateway_ip": "10.2.0.1", "host_routes": []}}
    port = {**PORT, "fixed_ips": [{"subnet_id": "s2", "ip_address": "10.1.0.5"},
                                  {"subnet_id": "s3", "ip_address": "10.2.0.5"},
                                  {"subnet_id": "s1", "ip_address": "10.0.0.5"}]}
    _, ip, _, msg = ask(request(d.DISCOVER), port=port, subnets=subnets)
    assert (ip.src, msg.yiaddr) == ("10.2.0.1", "10.2.0.5")


def test_subnet_without_gateway_needs_a_configured_server_address():
    subnets = {**SUBNETS, "s1": {**SUBNET, "gateway_ip": None}}
    assert ask(request(d.DISCOVER), subnets=subnets) is None
    _, ip, _, msg = ask(request(d.DISCOVER), subnets=subnets, server_ip="169.254.169.254")
    assert ip.src == msg.options[d.OPT_SERVER_ID] == "169.254.169.254"
    assert d.OPT_ROUTER not in msg.options
    assert msg.options[d.OPT_CLASSLESS_ROUTES] == [("192.168.0.0/16", "10.0.0.254")]   # no default route


# --- the options of a lease ---------------------------------------------------------------------

def test_a_default_host_route_is_not_doubled():
    routes = [{"destination": "0.0.0.0/0", "nexthop": "10.0.0.253"}, {"destination": "10.9.0.0/16",
                                                                     "nexthop": "10.0.0.254"}]
    *_, msg = ask(request(d.DISCOVER), subnets={"s1": {**SUBNET, "host_routes": routes}})
    assert msg.options[d.OPT_CLASSLESS_ROUTES] == [("0.0.0.0/0", "10.0.0.253"), ("10.9.0.0/16", "10.0.0.254")]


def test_no_host_routes_no_option_121_and_unreadable_entries_are_left_out():
    subnet = {**SUBNET, "host_routes": [{"destination": "nonsense", "nexthop": "10.0.0.9"},
                                        {"destination": "2001:db8::/32", "nexthop": "2001:db8::1"}],
              "dns_nameservers": ["2001:db8::53", "10.0.0.2"]}
    *_, msg = ask(request(d.DISCOVER), subnets={"s1": subnet})
    assert d.OPT_CLASSLESS_ROUTES not in msg.options and msg.options[d.OPT_DNS] == ["10.0.0.2"]


def test_no_network_no_mtu_and_no_dns_name_no_host_name():
    *_, msg = ask(request(d.DISCOVER), port={**PORT, "dns_name": ""}, network=None)
    assert d.OPT_MTU not in msg.options and d.OPT_HOSTNAME not in msg.options


def test_nvgre_network_mtu_and_a_domain():
    *_, msg = ask(request(d.DISCOVER), network={"provider:network_type": "nvgre", "mtu": 1458}, domain="example.org")
    assert msg.options[d.OPT_MTU] == 1458 and msg.options[d.OPT_DOMAIN] == "example.org"
    *_, msg = ask(request(d.DISCOVER), network={**NETWORK, "dns_domain": "tenant.example."}, domain="example.org")
    assert msg.options[d.OPT_DOMAIN] == "tenant.example."


def test_lease_time_is_configurable():
    *_, msg = ask(request(d.DISCOVER), lease_time=600)
    assert (msg.options[d.OPT_LEASE_TIME], msg.options[d.OPT_RENEWAL_TIME],
            msg.options[d.OPT_REBINDING_TIME]) == (600, 300, 525)
    *_, msg = ask(request(d.DISCOVER), lease_time=0xFFFFFFFF)
    assert msg.options[d.OPT_LEASE_TIME] == 0xFFFFFFFF
    assert d.OPT_RENEWAL_TIME not in msg.options and d.OPT_REBINDING_TIME not in msg.options


def test_a_reply_too_large_for_the_client_loses_options_it_did_not_ask_for():
    subnet = {**SUBNET, "dns_nameservers": [f"10.0.0.{n}" for n in range(2, 7)],
              "host_routes": [{"destination": f"172.{16 + n}.0.0/16", "nexthop": "10.0.0.254"} for n in range(20)]}
    port = {**PORT, "dns_name": "h" * 63}
    wanted = [d.OPT_SUBNET_MASK, d.OPT_ROUTER, d.OPT_DNS, d.OPT_CLASSLESS_ROUTES, d.OPT_MTU]
    frame = request(d.DISCOVER, options={d.OPT_PARAMETERS: wanted})
    _, _, udp, msg = ask(frame, port=port, subnets={"s1": subnet}, domain="d" * 200)
    assert udp.length - 8 <= 576 - 28
    assert set(wanted) <= set(msg.options) and len(msg.options[d.OPT_CLASSLESS_ROUTES]) == 21
    assert d.OPT_DOMAIN not in msg.options
    # a client that accepts more gets everything
    frame = request(d.DISCOVER, options={d.OPT_PARAMETERS: wanted, d.OPT_MAX_SIZE: 1500})
    *_, msg = ask(frame, port=port, subnets={"s1": subnet}, domain="d" * 200)
    assert msg.options[d.OPT_DOMAIN] == "d" * 200 and msg.options[d.OPT_HOSTNAME] == "h" * 63


def test_the_api_dicts_are_not_changed():
    before = copy.deepcopy((PORT, SUBNETS, NETWORK))
    ask(request(d.DISCOVER))
    assert (PORT, SUBNETS, NETWORK) == before


def test_a_parsed_packet_is_accepted_too():
    frame = request(d.DISCOVER)
    assert app.answer(parse(frame), PORT, SUBNETS, NETWORK, SERVER_MAC) == app.answer(frame, PORT, SUBNETS,
                                                                                      NETWORK, SERVER_MAC)


def test_a_parsed_packet_without_its_ethernet_header_gets_nothing():
    inner = parse(request(d.DISCOVER)).after(Ethernet)
    assert app.client_message(inner) is not None
    assert app.answer(inner, PORT, SUBNETS, NETWORK, SERVER_MAC) is None


def test_client_message_and_lease_for():
    msg = app.client_message(request(d.DECLINE, options={d.OPT_REQUESTED_IP: "10.0.0.5"}))
    assert msg.message_type == d.DECLINE and msg.options[d.OPT_REQUESTED_IP] == "10.0.0.5"
    lease = app.lease_for(PORT, SUBNETS, NETWORK)
    assert (str(lease.ip), str(lease.subnet), str(lease.gateway), lease.mtu, lease.subnet_id) == (
        "10.0.0.5", "10.0.0.0/24", "10.0.0.1", 1450, "s1")


# --- hostile input ------------------------------------------------------------------------------

@pytest.mark.parametrize("frame", [
    b"", b"\x00" * 13, bytes(Ethernet(src=MAC, dst="ff:ff:ff:ff:ff:ff", type=0x0800)) + b"\x45",
    request(d.DISCOVER)[:42 + 100],                                   # cut inside the BOOTP header
    request(d.DISCOVER)[:42 + 240],                                   # no options: no end
    bytes(Ethernet(src=MAC, dst="ff:ff:ff:ff:ff:ff") / IPv4(src="0.0.0.0", dst="255.255.255.255")
          / UDP(sport=68, dport=67) / (bytes(236) + b"\x63\x82\x53\x63\x35\x05\x01")),
    bytes(Ethernet(src=MAC, dst="ff:ff:ff:ff:ff:ff") / IPv4(src="0.0.0.0", dst="255.255.255.255")
          / UDP(sport=68, dport=53) / bytes(DHCP(chaddr=MAC, options={53: 1}))),   # not to port 67
])
def test_malformed_or_foreign_frames_get_nothing(frame):
    assert app.answer(frame, PORT, SUBNETS, NETWORK, SERVER_MAC) is None
    assert app.client_message(frame) is None


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([d.DISCOVER, d.REQUEST, d.INFORM, d.RELEASE]), st.data())
def test_mutated_requests_never_raise(kind, data):
    frame = bytearray(request(kind, ciaddr="10.0.0.5", options={d.OPT_REQUESTED_IP: "10.0.0.5",
                                                               d.OPT_PARAMETERS: [1, 3, 121]}))
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(frame) - 1))
        frame[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frame)))
    for variant in (bytes(frame), bytes(frame[:cut])):
        out = app.answer(variant, PORT, SUBNETS, NETWORK, SERVER_MAC)
        assert out is None or parse_dhcp(parse(out).payload).op == d.BOOTREPLY
