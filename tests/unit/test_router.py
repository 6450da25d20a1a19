"""The router app in memory: the controller core joined to real switch
datapaths (memnet), routers and ports given as desired-state records, hosts
that send real frames. Asserts what reaches which host, with which headers."""

import ipaddress
import itertools

from kumoflow.apps.gateway import link_local, solicited_node
from kumoflow.apps.router import RouterApp
from kumoflow.controller import pipeline
from kumoflow.packet import (
    ARP, ICMP, UDP, Ethernet, ICMPv6, ICMPv6Echo, IPv4, IPv6, NDNeighborAdvert, NDNeighborSolicit, NDOptPrefixInfo,
    NDOptSourceLinkAddr, NDOptTargetLinkAddr, NDRouterAdvert, NDRouterSolicit, parse,
)
from kumoflow.packet.addr import eui64
from kumoflow.packet.consts import ARP_REPLY, ARP_REQUEST
from kumoflow.store import Change, Record, Snapshot

from memnet import MemNet

_ids = itertools.count(1)


def record(kind, project="p1", **body):
    n = next(_ids)
    return Record(kind, f"{kind}-{n}", project, n, f"2026-12-07T00:00:{n % 60:02d}Z", "2026-12-07T00:00:00Z", body)


class Cloud:
    """Two switches (s1 port 1 - s2 port 1); hosts on ports 2-4."""

    def __init__(self, **options):
        self.router_app = RouterApp(**options)
        self.mem = MemNet([self.router_app])
        self.s1, self.s2 = self.mem.switch(1, ports=5), self.mem.switch(2, ports=5)
        self.mem.link(self.s1, 1, self.s2, 1)
        self.records = []
        self.hosts = {}

    def network(self, cidr, gateway, project="p1"):
        net = record("network", project, name=cidr)
        subnet = record("subnet", project, network_id=net.id, cidr=cidr, gateway_ip=gateway,
                        ip_version=4 if ":" not in cidr else 6)
        self.records += [net, subnet]
        return net, subnet

    def router(self, subnets, project="p1", routes=(), mac_base=0x10):
        router = record("router", project, admin_state_up=True, routes=list(routes))
        self.records.append(router)
        for i, (net, subnet) in enumerate(subnets):
            self.records.append(record("port", project, network_id=net.id, device_owner="network:router_interface",
                                       device_id=router.id, mac_address=f"fa:16:3e:00:{mac_base:02x}:{i + 1:02x}",
                                       fixed_ips=[{"subnet_id": subnet.id,
                                                   "ip_address": subnet.body["gateway_ip"]}]))
        return router

    def host(self, name, switch, port, net_subnet, ip, mac, api=True):
        host = self.mem.host(name, switch, port, mac=mac)
        host.ip = ip
        net, subnet = net_subnet
        host.gateway = subnet.body["gateway_ip"]
        if api:
            self.records.append(record("port", net.project_id, network_id=net.id, device_owner="compute:nova",
                                       mac_address=mac, fixed_ips=[{"subnet_id": subnet.id, "ip_address": ip}]))
        self.hosts[name] = host
        return host

    def start(self):
        self.mem.core.state.load(Snapshot(len(self.records), list(self.records)))
        self.mem.start()
        self.mem.advance(self.mem.core.settle + 1.5)
        for host in self.hosts.values():    # each host announces itself (a VM does at boot): the fabric learns it
            self.send(host, bytes(Ethernet(src=host.mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
                op=ARP_REQUEST, src_mac=host.mac, src_ip=host.ip, dst_ip=host.ip)))
        return self

    def send(self, host, frame):
        for h in self.hosts.values():
            h.received.clear()
        host.send(frame)
        self.mem.run()
        return {name: [f for f in h.received if f[12:14] != b"\x88\xcc"] for name, h in self.hosts.items()}

    def gateway_mac(self, host):
        got = self.send(host, bytes(Ethernet(src=host.mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
            op=ARP_REQUEST, src_mac=host.mac, src_ip=host.ip, dst_ip=host.gateway)))
        replies = [parse(f)[ARP] for f in got[host.name] if parse(f).get(ARP) is not None]
        assert [(a.op, a.src_ip, a.dst_ip) for a in replies] == [(ARP_REPLY, host.gateway, host.ip)]
        return replies[0].src_mac


def ping(src, dst_ip, router_mac, ttl=64, seq=1):
    return bytes(Ethernet(src=src.mac, dst=router_mac) / IPv4(src=src.ip, dst=dst_ip, ttl=ttl)
                 / ICMP(type=8, code=0, id=0x4B46, seq=seq) / b"kumoflow router")


def three_subnets():
    cloud = Cloud()
    a, b, c = (cloud.network(f"10.0.{n}.0/24", f"10.0.{n}.1") for n in (1, 2, 3))
    cloud.router([a, b, c])
    cloud.host("h1", cloud.s1, 2, a, "10.0.1.5", "00:00:00:00:01:05")
    cloud.host("h2", cloud.s2, 2, b, "10.0.2.5", "00:00:00:00:02:05")
    cloud.host("h3", cloud.s2, 3, c, "10.0.3.5", "00:00:00:00:03:05")
    return cloud.start()


def test_hosts_in_three_subnets_are_routed_at_the_first_switch_with_ttl_and_macs_rewritten():
    cloud = three_subnets()
    h1, h2, h3 = cloud.hosts["h1"], cloud.hosts["h2"], cloud.hosts["h3"]
    gw1 = cloud.gateway_mac(h1)
    assert gw1 == "fa:16:3e:00:10:01"
    for dst, iface_mac in ((h2, "fa:16:3e:00:10:02"), (h3, "fa:16:3e:00:10:03")):
        got = cloud.send(h1, ping(h1, dst.ip, gw1))
        assert [n for n, frames in got.items() if frames] == [dst.name]
        pkt = parse(got[dst.name][0])
        assert (pkt[Ethernet].src, pkt[Ethernet].dst) == (iface_mac, dst.mac)
        assert (pkt[IPv4].src, pkt[IPv4].dst, pkt[IPv4].ttl) == (h1.ip, dst.ip, 63)
        assert pkt[IPv4].checksum_ok and pkt.payload == b"kumoflow router"
    # routed by flows: the route and the neighbour were compiled from the API, no packet reached the controller
    route = pipeline.table_id("route")
    assert any(f.table_id == route and f.packet_count for f in cloud.s1.flows())


def test_the_gateway_answers_ping_and_the_other_gateways_too():
    cloud = three_subnets()
    h1 = cloud.hosts["h1"]
    gw1 = cloud.gateway_mac(h1)
    for target in ("10.0.1.1", "10.0.3.1"):
        got = cloud.send(h1, ping(h1, target, gw1, seq=7))
        pkt = parse(got["h1"][0])
        assert (pkt[Ethernet].src, pkt[Ethernet].dst) == (gw1, h1.mac)
        assert (pkt[IPv4].src, pkt[IPv4].dst) == (target, h1.ip)
        assert (pkt[ICMP].type, pkt[ICMP].id, pkt[ICMP].seq) == (0, 0x4B46, 7)
        assert pkt[ICMP].checksum_ok and pkt.payload == b"kumoflow router"


def test_ttl_running_out_gets_time_exceeded_from_the_ingress_interface():
    cloud = three_subnets()
    h1, h2 = cloud.hosts["h1"], cloud.hosts["h2"]
    gw1 = cloud.gateway_mac(h1)
    probe = bytes(Ethernet(src=h1.mac, dst=gw1) / IPv4(src=h1.ip, dst=h2.ip, ttl=1) / UDP(sport=40000, dport=33434)
                  / b"traceroute")
    got = cloud.send(h1, probe)
    assert got["h2"] == []
    pkt = parse(got["h1"][0])
    assert (pkt[IPv4].src, pkt[IPv4].dst, pkt[ICMP].type, pkt[ICMP].code) == ("10.0.1.1", h1.ip, 11, 0)
    assert pkt.payload == probe[14:14 + 28]     # the offending header and 8 bytes of its payload


def test_no_route_gets_net_unreachable():
    cloud = three_subnets()
    h1 = cloud.hosts["h1"]
    got = cloud.send(h1, ping(h1, "192.0.2.9", cloud.gateway_mac(h1)))
    pkt = parse(got["h1"][0])
    assert (pkt[IPv4].src, pkt[ICMP].type, pkt[ICMP].code) == ("10.0.1.1", 3, 0)


def test_an_address_not_in_the_api_is_resolved_by_arp_and_the_waiting_packet_sent():
    cloud = Cloud()
    a, b = cloud.network("10.0.1.0/24", "10.0.1.1"), cloud.network("10.0.2.0/24", "10.0.2.1")
    cloud.router([a, b])
    h1 = cloud.host("h1", cloud.s1, 2, a, "10.0.1.5", "00:00:00:00:01:05")
    stranger = cloud.host("h9", cloud.s2, 2, b, "10.0.2.9", "00:00:00:00:02:09", api=False)
    cloud.start()
    got = cloud.send(h1, ping(h1, stranger.ip, cloud.gateway_mac(h1)))
    asks = [parse(f)[ARP] for f in got["h9"]]
    assert [(a.op, a.src_ip, a.dst_ip, a.src_mac) for a in asks] == [(ARP_REQUEST, "10.0.2.1", "10.0.2.9",
                                                                    "fa:16:3e:00:10:02")]
    got = cloud.send(stranger, bytes(Ethernet(src=stranger.mac, dst=asks[0].src_mac) / ARP(
        op=ARP_REPLY, src_mac=stranger.mac, src_ip=stranger.ip, dst_mac=asks[0].src_mac, dst_ip="10.0.2.1")))
    pkt = parse(got["h9"][0])       # the held ping
    assert (pkt[Ethernet].dst, pkt[IPv4].src, pkt[IPv4].ttl, pkt[ICMP].seq) == (stranger.mac, h1.ip, 63, 1)
    got = cloud.send(h1, ping(h1, stranger.ip, "fa:16:3e:00:10:01", seq=2))    # now by flows
    assert parse(got["h9"][0])[ICMP].seq == 2


def test_nobody_answering_gives_host_unreachable_after_the_retries():
    cloud = three_subnets()
    h1 = cloud.hosts["h1"]
    cloud.send(h1, ping(h1, "10.0.2.77", cloud.gateway_mac(h1)))
    h1.received.clear()
    cloud.mem.advance(cloud.router_app.arp_interval * (cloud.router_app.arp_retries + 1))
    errors = [parse(f) for f in h1.received if f[12:14] == b"\x08\x00"]
    # from the interface facing the sender, as Linux sends it
    assert [(p[IPv4].src, p[ICMP].type, p[ICMP].code) for p in errors] == [("10.0.1.1", 3, 1)]
    assert cloud.router_app._held == 0


def test_two_projects_with_the_same_subnets_are_routed_apart():
    cloud = Cloud()
    nets = {p: (cloud.network("10.0.1.0/24", "10.0.1.1", p), cloud.network("10.0.2.0/24", "10.0.2.1", p))
            for p in ("red", "blue")}
    cloud.router(nets["red"], "red", mac_base=0x10)
    cloud.router(nets["blue"], "blue", mac_base=0x20)
    r1 = cloud.host("r1", cloud.s1, 2, nets["red"][0], "10.0.1.5", "00:00:00:00:0a:01")
    r2 = cloud.host("r2", cloud.s2, 2, nets["red"][1], "10.0.2.5", "00:00:00:00:0a:02")
    b1 = cloud.host("b1", cloud.s1, 3, nets["blue"][0], "10.0.1.5", "00:00:00:00:0b:01")
    b2 = cloud.host("b2", cloud.s2, 3, nets["blue"][1], "10.0.2.5", "00:00:00:00:0b:02")
    cloud.start()
    assert cloud.gateway_mac(r1) == "fa:16:3e:00:10:01" and cloud.gateway_mac(b1) == "fa:16:3e:00:20:01"
    for src, dst, gw in ((r1, r2, "fa:16:3e:00:10:01"), (b1, b2, "fa:16:3e:00:20:01")):
        got = cloud.send(src, ping(src, "10.0.2.5", gw))
        assert [n for n, frames in got.items() if frames] == [dst.name]


def test_extra_routes_and_longest_prefix_match():
    cloud = Cloud()
    a, b = cloud.network("10.0.1.0/24", "10.0.1.1"), cloud.network("10.0.2.0/24", "10.0.2.1")
    cloud.router([a, b], routes=[{"destination": "172.16.0.0/16", "nexthop": "10.0.2.254"},
                                 {"destination": "172.16.5.0/24", "nexthop": "10.0.1.254"}])
    h1 = cloud.host("h1", cloud.s1, 2, a, "10.0.1.5", "00:00:00:00:01:05")
    gw_a = cloud.host("gwa", cloud.s1, 3, a, "10.0.1.254", "00:00:00:00:01:fe")
    gw_b = cloud.host("gwb", cloud.s2, 2, b, "10.0.2.254", "00:00:00:00:02:fe")
    cloud.start()
    gw = cloud.gateway_mac(h1)
    for dst, via in (("172.16.9.9", gw_b), ("172.16.5.9", gw_a)):
        got = cloud.send(h1, ping(h1, dst, gw))
        assert [n for n, frames in got.items() if frames] == [via.name], dst
        pkt = parse(got[via.name][0])
        assert (pkt[Ethernet].dst, pkt[IPv4].dst, pkt[IPv4].ttl) == (via.mac, dst, 63)


def test_a_new_port_gets_its_neighbour_flow_and_a_deleted_one_loses_it():
    cloud = three_subnets()
    neighbour = pipeline.table_id("neighbour")
    before = {str(f.match["ipv4_dst"]) for f in cloud.s1.flows(neighbour) if "ipv4_dst" in f.match}
    assert before == {"10.0.1.5", "10.0.2.5", "10.0.3.5"}
    net_b = next(r for r in cloud.records if r.kind == "network" and r.body["name"] == "10.0.2.0/24")
    subnet_b = next(r for r in cloud.records if r.kind == "subnet" and r.body["network_id"] == net_b.id)
    port = record("port", network_id=net_b.id, device_owner="compute:nova", mac_address="00:00:00:00:02:42",
                  fixed_ips=[{"subnet_id": subnet_b.id, "ip_address": "10.0.2.42"}])
    state = cloud.mem.core.state
    state.apply([Change(state.revision + 1, "port", port.id, port, None)])
    cloud.mem.run()
    now = {str(f.match["ipv4_dst"]): f for f in cloud.s2.flows(neighbour) if "ipv4_dst" in f.match}
    assert "10.0.2.42" in now
    state.apply([Change(state.revision + 1, "port", port.id, None, port)])
    cloud.mem.run()
    assert "10.0.2.42" not in {str(f.match["ipv4_dst"]) for f in cloud.s2.flows(neighbour) if "ipv4_dst" in f.match}


def test_a_router_that_is_down_routes_nothing():
    cloud = Cloud()
    a, b = cloud.network("10.0.1.0/24", "10.0.1.1"), cloud.network("10.0.2.0/24", "10.0.2.1")
    router = cloud.router([a, b])
    router.body["admin_state_up"] = False
    h1 = cloud.host("h1", cloud.s1, 2, a, "10.0.1.5", "00:00:00:00:01:05")
    cloud.host("h2", cloud.s2, 2, b, "10.0.2.5", "00:00:00:00:02:05")
    cloud.start()
    got = cloud.send(h1, ping(h1, "10.0.2.5", "fa:16:3e:00:10:01"))
    assert not any(got.values())
    assert not [f for f in cloud.s1.flows(pipeline.table_id("route"))
                if f.cookie >> 56 == pipeline.FUNCTIONS["router"]]
    assert cloud.mem.core.hosts.get("fa:16:3e:00:10:01") is None


# --- IPv6 ------------------------------------------------------------------------------------------------


def dual_stack():
    """h1 and h2 on two networks, each with an IPv4 and a SLAAC IPv6 subnet; one router joins them."""
    cloud = Cloud()
    nets = []
    for n in (1, 2):
        net, v4 = cloud.network(f"10.0.{n}.0/24", f"10.0.{n}.1")
        v6 = record("subnet", network_id=net.id, cidr=f"2001:db8:{n}::/64", gateway_ip=f"2001:db8:{n}::1",
                    ip_version=6, ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
        cloud.records.append(v6)
        nets.append((net, v4, v6))
    router = record("router", admin_state_up=True, routes=[])
    cloud.records.append(router)
    for i, (net, v4, v6) in enumerate(nets):
        cloud.records.append(record("port", network_id=net.id, device_owner="network:router_interface",
                                    device_id=router.id, mac_address=f"fa:16:3e:00:10:0{i + 1}",
                                    fixed_ips=[{"subnet_id": v4.id, "ip_address": v4.body["gateway_ip"]},
                                               {"subnet_id": v6.id, "ip_address": v6.body["gateway_ip"]}]))
    for i, (net, v4, v6) in enumerate(nets):
        mac = f"00:00:00:00:0{i + 1}:05"
        ip6 = str(eui64(ipaddress.IPv6Network(v6.body["cidr"]), mac))
        host = cloud.host(f"h{i + 1}", (cloud.s1, cloud.s2)[i], 2, (net, v4), f"10.0.{i + 1}.5", mac, api=False)
        host.ip6, host.gateway6 = ip6, v6.body["gateway_ip"]
        cloud.records.append(record("port", network_id=net.id, device_owner="compute:nova", mac_address=mac,
                                    fixed_ips=[{"subnet_id": v4.id, "ip_address": host.ip},
                                               {"subnet_id": v6.id, "ip_address": ip6}]))
    return cloud.start()


def test_a_router_solicitation_gets_an_advertisement_of_the_hosts_own_prefix():
    cloud = dual_stack()
    h2 = cloud.hosts["h2"]
    ll = str(link_local(h2.mac))
    got = cloud.send(h2, bytes(Ethernet(src=h2.mac, dst="33:33:00:00:00:02") / IPv6(src=ll, dst="ff02::2",
                                                                                   hop_limit=255)
                               / NDRouterSolicit(options=[NDOptSourceLinkAddr(h2.mac)])))
    [frame] = got["h2"]
    pkt = parse(frame)
    ra = pkt[NDRouterAdvert]
    assert (pkt[Ethernet].src, pkt[IPv6].src, pkt[IPv6].dst, pkt[IPv6].hop_limit) == (
        "fa:16:3e:00:10:02", str(link_local("fa:16:3e:00:10:02")), ll, 255)
    prefixes = [(o.prefix, o.prefix_len, o.flags) for o in ra.options if isinstance(o, NDOptPrefixInfo)]
    assert prefixes == [("2001:db8:2::", 64, 0xC0)]       # on-link, autonomous: SLAAC
    assert ra.router_lifetime > 0 and pkt[ICMPv6].checksum_ok
    assert got["h1"] == []


def test_ipv6_is_routed_with_hop_limit_decremented_and_the_gateway_answers_neighbour_discovery():
    cloud = dual_stack()
    h1, h2 = cloud.hosts["h1"], cloud.hosts["h2"]
    group, group_mac = solicited_node(ipaddress.IPv6Address(h1.gateway6))
    got = cloud.send(h1, bytes(Ethernet(src=h1.mac, dst=group_mac) / IPv6(src=h1.ip6, dst=group, hop_limit=255)
                               / NDNeighborSolicit(target=h1.gateway6, options=[NDOptSourceLinkAddr(h1.mac)])))
    na = [parse(f) for f in got["h1"] if parse(f).get(NDNeighborAdvert) is not None]
    assert [(p[NDNeighborAdvert].target, p[Ethernet].src, p[IPv6].dst) for p in na] == [
        (h1.gateway6, "fa:16:3e:00:10:01", h1.ip6)]
    echo = bytes(Ethernet(src=h1.mac, dst="fa:16:3e:00:10:01") / IPv6(src=h1.ip6, dst=h2.ip6, hop_limit=64)
                 / ICMPv6Echo(type=128, id=7, seq=1) / b"six")
    got = cloud.send(h1, echo)
    pkt = parse(got["h2"][0])
    assert (pkt[Ethernet].src, pkt[Ethernet].dst, pkt[IPv6].hop_limit) == ("fa:16:3e:00:10:02", h2.mac, 63)
    assert pkt[ICMPv6].checksum_ok and pkt.payload == b"six"
    got = cloud.send(h1, bytes(Ethernet(src=h1.mac, dst="fa:16:3e:00:10:01") / IPv6(src=h1.ip6, dst=h2.gateway6)
                               / ICMPv6Echo(type=128, id=7, seq=2) / b"gw"))
    reply = parse(got["h1"][0])
    assert (reply[IPv6].src, reply[ICMPv6Echo].type, reply[ICMPv6Echo].seq) == (h2.gateway6, 129, 2)


def test_ipv6_errors_time_exceeded_and_no_route():
    cloud = dual_stack()
    h1, h2 = cloud.hosts["h1"], cloud.hosts["h2"]
    for dst, hops, expected in ((h2.ip6, 1, (3, 0)), ("2001:db8:99::1", 64, (1, 0))):
        probe = bytes(Ethernet(src=h1.mac, dst="fa:16:3e:00:10:01") / IPv6(src=h1.ip6, dst=dst, hop_limit=hops)
                      / UDP(sport=40000, dport=33434) / b"probe")
        got = cloud.send(h1, probe)
        pkt = parse(got["h1"][0])
        assert (pkt[IPv6].src, pkt[ICMPv6].type, pkt[ICMPv6].code) == (h1.gateway6, *expected)
        assert pkt[ICMPv6].checksum_ok and pkt.payload == b"\0\0\0\0" + probe[14:]


def test_an_ipv6_address_not_in_the_api_is_resolved_by_neighbour_solicitation():
    cloud = dual_stack()
    h1 = cloud.hosts["h1"]
    stranger = cloud.mem.host("h9", cloud.s2, 3, mac="00:00:00:00:02:09")
    cloud.hosts["h9"] = stranger
    target = "2001:db8:2::9"
    got = cloud.send(h1, bytes(Ethernet(src=h1.mac, dst="fa:16:3e:00:10:01") / IPv6(src=h1.ip6, dst=target)
                               / ICMPv6Echo(type=128, id=9, seq=1) / b"who"))
    [ns] = [parse(f) for f in got["h9"]]
    assert (ns[NDNeighborSolicit].target, ns[IPv6].src, ns[Ethernet].dst) == (target, "2001:db8:2::1",
                                                                               "33:33:ff:00:00:09")
    got = cloud.send(stranger, bytes(Ethernet(src=stranger.mac, dst="fa:16:3e:00:10:02")
                                     / IPv6(src=target, dst="2001:db8:2::1", hop_limit=255)
                                     / NDNeighborAdvert(flags=0x60, target=target,
                                                        options=[NDOptTargetLinkAddr(stranger.mac)])))
    held = parse(got["h9"][0])
    assert (held[Ethernet].dst, held[IPv6].dst, held[IPv6].hop_limit, held.payload) == (stranger.mac, target, 63,
                                                                                        b"who")


# --- the way out: floating IPs and SNAT -----------------------------------------------------------------


def with_outside(**options):
    """h1 (10.0.1.5, floating IP 203.0.113.50) and h2 (10.0.2.5) behind a router whose external gateway is
    203.0.113.10 on an external network; `out` (203.0.113.1, the external subnet's gateway) is outside."""
    cloud = Cloud(**options)
    a, b = cloud.network("10.0.1.0/24", "10.0.1.1"), cloud.network("10.0.2.0/24", "10.0.2.1")
    ext_net, ext_subnet = cloud.network("203.0.113.0/24", "203.0.113.1", project="admin")
    ext_net.body["router:external"] = True
    router = cloud.router([a, b])
    router.body["external_gateway_info"] = {"network_id": ext_net.id, "enable_snat": True}
    cloud.records.append(record("port", network_id=ext_net.id, device_owner="network:router_gateway",
                                device_id=router.id, mac_address="fa:16:3e:00:10:ee",
                                fixed_ips=[{"subnet_id": ext_subnet.id, "ip_address": "203.0.113.10"}]))
    h1 = cloud.host("h1", cloud.s1, 2, a, "10.0.1.5", "00:00:00:00:01:05")
    cloud.host("h2", cloud.s1, 3, b, "10.0.2.5", "00:00:00:00:02:05")
    cloud.host("out", cloud.s2, 2, (ext_net, ext_subnet), "203.0.113.1", "00:00:00:00:ee:01", api=False)
    port_h1 = next(r for r in cloud.records if r.kind == "port" and r.body["mac_address"] == h1.mac)
    cloud.records.append(record("floatingip", floating_ip_address="203.0.113.50", fixed_ip_address="10.0.1.5",
                                port_id=port_h1.id, router_id=router.id, floating_network_id=ext_net.id))
    cloud.start()
    outside = cloud.hosts["out"]
    # the router asks for the outside host once, as a kernel would; it answers
    reply = bytes(Ethernet(src=outside.mac, dst="fa:16:3e:00:10:ee") / ARP(
        op=ARP_REPLY, src_mac=outside.mac, src_ip=outside.ip, dst_mac="fa:16:3e:00:10:ee", dst_ip="203.0.113.10"))
    cloud.send(outside, reply)
    return cloud


def tcp(src_mac, dst_mac, src, sport, dst, dport, flags=0x02):
    from kumoflow.packet import TCP
    return bytes(Ethernet(src=src_mac, dst=dst_mac) / IPv4(src=src, dst=dst, ttl=64)
                 / TCP(sport=sport, dport=dport, seq=1, flags=flags) / b"GET /")


def test_a_floating_ip_is_reached_from_outside_and_its_owner_goes_out_with_it():
    cloud = with_outside()
    h1, out = cloud.hosts["h1"], cloud.hosts["out"]
    got = cloud.send(out, bytes(Ethernet(src=out.mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=ARP_REQUEST, src_mac=out.mac, src_ip=out.ip, dst_ip="203.0.113.50")))
    [answer] = [parse(f)[ARP] for f in got["out"]]
    assert (answer.op, answer.src_ip, answer.src_mac) == (ARP_REPLY, "203.0.113.50", "fa:16:3e:00:10:ee")
    got = cloud.send(out, ping(out, "203.0.113.50", "fa:16:3e:00:10:ee"))
    pkt = parse(got["h1"][0])
    assert (pkt[IPv4].src, pkt[IPv4].dst, pkt[IPv4].ttl, pkt[Ethernet].dst) == ("203.0.113.1", "10.0.1.5", 63, h1.mac)
    assert pkt[IPv4].checksum_ok and pkt[ICMP].checksum_ok
    got = cloud.send(h1, ping(h1, "203.0.113.1", "fa:16:3e:00:10:01", seq=5))
    pkt = parse(got["out"][0])
    assert (pkt[IPv4].src, pkt[IPv4].dst, pkt[Ethernet].src, pkt[Ethernet].dst) == (
        "203.0.113.50", "203.0.113.1", "fa:16:3e:00:10:ee", out.mac)
    assert pkt[IPv4].checksum_ok and pkt[ICMP].checksum_ok


def test_snat_translates_a_connection_in_flows_on_its_first_packet_and_ends_it_when_idle():
    from kumoflow.packet import TCP

    cloud = with_outside(tcp_idle=30)
    h2, out = cloud.hosts["h2"], cloud.hosts["out"]
    app = cloud.router_app
    got = cloud.send(h2, tcp(h2.mac, "fa:16:3e:00:10:02", h2.ip, 40000, out.ip, 80))
    syn = parse(got["out"][0])
    port = syn[TCP].sport
    assert (syn[IPv4].src, syn[IPv4].dst, syn[TCP].dport, syn[IPv4].ttl) == ("203.0.113.10", out.ip, 80, 63)
    assert syn[IPv4].checksum_ok and syn[TCP].checksum_ok and syn.payload == b"GET /"
    assert 1024 <= port <= 65535 and len(app.snat) == 1
    got = cloud.send(out, tcp(out.mac, "fa:16:3e:00:10:ee", out.ip, 80, "203.0.113.10", port, flags=0x12))
    back = parse(got["h2"][0])
    assert (back[IPv4].src, back[IPv4].dst, back[TCP].sport, back[TCP].dport) == (out.ip, h2.ip, 80, 40000)
    assert back[TCP].checksum_ok and back[Ethernet].dst == h2.mac
    snat = pipeline.table_id("snat")
    translated = [f for f in cloud.s1.flows(snat) if f.idle_timeout]
    assert len(translated) == 1 and translated[0].packet_count == 0     # the first packet went by the controller
    assert not [f for f in cloud.s2.flows(snat) if f.idle_timeout]       # only where h2's packets enter
    got = cloud.send(h2, tcp(h2.mac, "fa:16:3e:00:10:02", h2.ip, 40000, out.ip, 80, flags=0x10))
    assert parse(got["out"][0])[TCP].sport == port
    assert [f.packet_count for f in cloud.s1.flows(snat) if f.idle_timeout] == [1]
    cloud.mem.advance(31)
    assert len(app.snat) == 0
    router_table = pipeline.table_id("router")
    assert not [f for s in (cloud.s1, cloud.s2) for f in s.flows(router_table) if "tcp_dst" in f.match]


def test_snat_pings_are_translated_by_the_controller():
    cloud = with_outside()
    h2, out = cloud.hosts["h2"], cloud.hosts["out"]
    got = cloud.send(h2, ping(h2, out.ip, "fa:16:3e:00:10:02", seq=3))
    echo = parse(got["out"][0])
    assert (echo[IPv4].src, echo[ICMP].seq) == ("203.0.113.10", 3) and echo[ICMP].checksum_ok
    reply = bytes(Ethernet(src=out.mac, dst="fa:16:3e:00:10:ee") / IPv4(src=out.ip, dst="203.0.113.10")
                  / ICMP(type=0, code=0, id=echo[ICMP].id, seq=3) / echo.payload)
    got = cloud.send(out, reply)
    back = parse(got["h2"][0])
    assert (back[IPv4].dst, back[ICMP].type, back[ICMP].id, back[ICMP].seq) == (h2.ip, 0, 0x4B46, 3)
    assert back[ICMP].checksum_ok and back[IPv4].checksum_ok and back[Ethernet].src == "fa:16:3e:00:10:02"


def test_snat_ports_running_out_drop_new_connections_and_count_them():
    cloud = with_outside(snat_ports="2000-2001")
    h2, out = cloud.hosts["h2"], cloud.hosts["out"]
    sports = []
    for sport in (41000, 41001, 41002):
        got = cloud.send(h2, tcp(h2.mac, "fa:16:3e:00:10:02", h2.ip, sport, out.ip, 80))
        sports.append([parse(f)[IPv4].src for f in got["out"]])
    assert sports == [["203.0.113.10"], ["203.0.113.10"], []]
    assert cloud.router_app.snat.exhausted == 1


def test_learned_routes_come_and_go_one_by_one_and_never_replace_the_routers_own():
    cloud = Cloud()
    a, b = cloud.network("10.0.1.0/24", "10.0.1.1"), cloud.network("10.0.2.0/24", "10.0.2.1")
    router = cloud.router([a, b], routes=[{"destination": "172.16.5.0/24", "nexthop": "10.0.1.254"}])
    h1 = cloud.host("h1", cloud.s1, 2, a, "10.0.1.5", "00:00:00:00:01:05")
    gw_a = cloud.host("gwa", cloud.s1, 3, a, "10.0.1.254", "00:00:00:00:01:fe")
    peer = cloud.host("peer", cloud.s2, 2, b, "10.0.2.254", "00:00:00:00:02:fe")
    cloud.start()
    app, route = cloud.router_app, pipeline.table_id("route")
    nets = [ipaddress.ip_network(f"198.51.{n}.0/24") for n in range(100)]
    with cloud.mem.core.batch():
        app.learn(router.id, {**{net: ipaddress.ip_address("10.0.2.254") for net in nets},
                              ipaddress.ip_network("172.16.5.0/24"): ipaddress.ip_address("10.0.2.254")})
    cloud.mem.run()
    learned = [f for f in cloud.s1.flows(route) if (f.cookie >> 48) & 0xFF == 7]
    assert len(learned) == 100           # 172.16.5.0/24 stays the extra route's
    gw = cloud.gateway_mac(h1)
    for dst, via in (("198.51.42.9", peer), ("172.16.5.9", gw_a)):
        got = cloud.send(h1, ping(h1, dst, gw))
        assert [n for n, frames in got.items() if frames] == [via.name], dst
    mods = len(cloud.s1.mods())
    with cloud.mem.core.batch():
        app.learn(router.id, {}, [nets[42]])
    cloud.mem.run()
    assert len(cloud.s1.mods()) - mods == 1          # one withdrawn prefix, one flow deleted
    got = cloud.send(h1, ping(h1, "198.51.42.9", gw))
    assert parse(got["h1"][0])[ICMP].type == 3       # no route now


def test_the_router_counts_what_it_holds_for_metrics():
    cloud = with_outside(snat_ports="2000-2000")
    h2, out = cloud.hosts["h2"], cloud.hosts["out"]
    for sport in (41000, 41001):
        cloud.send(h2, tcp(h2.mac, "fa:16:3e:00:10:02", h2.ip, sport, out.ip, 80))
    counted = {name: value for name, _, _, value in cloud.router_app.metrics()}
    assert counted["routers"] == 1 and counted["snat_connections"] == 1 and counted["snat_exhausted"] == 1
    assert counted["routes"] == 4      # three connected subnets and the default route


def test_a_route_through_another_routers_interface_is_refused_with_a_warning(caplog):
    cloud = Cloud()
    a, transit = cloud.network("10.0.1.0/24", "10.0.1.1"), cloud.network("10.9.0.0/24", "10.9.0.1")
    first = cloud.router([a, transit], routes=[{"destination": "10.0.7.0/24", "nexthop": "10.9.0.2"}])
    second = record("router", admin_state_up=True, routes=[])
    cloud.records += [second, record("port", network_id=transit[0].id, device_owner="network:router_interface",
                                     device_id=second.id, mac_address="fa:16:3e:00:20:01",
                                     fixed_ips=[{"subnet_id": transit[1].id, "ip_address": "10.9.0.2"}])]
    cloud.start()
    router = cloud.router_app.routers[first.id]
    assert ipaddress.ip_network("10.0.7.0/24") not in router.routes and not router.nexthops
    assert "chained routers are not supported yet" in caplog.text
