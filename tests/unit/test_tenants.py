"""The tenants app in memory: hypervisors (memnet switches) joined by VXLAN
and NVGRE tunnel ports, networks and ports given as desired-state records,
VMs that send real frames. Asserts what reaches which VM, and what crossed
the underlay with which tunnel id."""

import ipaddress
import itertools

import pytest

from kumoflow.apps.tenants import TenantsApp
from kumoflow.packet import ARP, ICMP, Ethernet, IPv4, parse
from kumoflow.packet.consts import ARP_REPLY, ARP_REQUEST
from kumoflow.store import Change, Record, Snapshot

from memnet import MemNet

_ids = itertools.count(1)
BROADCAST = "ff:ff:ff:ff:ff:ff"


def record(kind, project="p1", **body):
    n = next(_ids)
    return Record(kind, f"{kind}-{n:04d}", project, n, f"2026-12-07T00:{n // 60 % 60:02d}:{n % 60:02d}Z",
                  "2026-12-07T00:00:00Z", body)


class Cloud:
    """Hypervisors s1, s2 (VMs on ports 1-4) with a tunnel between them; `apps`: more
    apps beside tenants (tests/unit/test_firewall.py)."""

    def __init__(self, kind="vxlan", switches=2, apps=()):
        self.app = TenantsApp()
        self.mem = MemNet([self.app, *apps])
        self.s = {n: self.mem.switch(n, ports=4) for n in range(1, switches + 1)}
        self.tunnels = {}
        for a, b in itertools.combinations(self.s.values(), 2):
            self.tunnels[(a.dpid, b.dpid)], self.tunnels[(b.dpid, a.dpid)] = self.mem.tunnel(a, b, kind)
        self.records, self.vms, self.ports = [], {}, {}

    def network(self, segment, kind="vxlan", project="p1"):
        net = record("network", project, **{"provider:network_type": kind, "provider:segmentation_id": segment})
        self.records.append(net)
        return net

    def vm(self, name, switch, port_no, net, ip, mac, **port_body):
        vm = self.mem.host(name, self.s[switch], port_no, mac=mac)
        vm.ip = ip
        body = dict(network_id=net.id, device_owner="compute:nova", mac_address=mac,
                    fixed_ips=[{"subnet_id": "x", "ip_address": ip}], admin_state_up=True,
                    **{"binding:host_id": f"{switch:#x}", "binding:profile": {"port_no": port_no}})
        body.update(port_body)
        port = record("port", net.project_id, **body)
        self.records.append(port)
        self.vms[name], self.ports[name] = vm, port
        return vm

    def start(self):
        self.mem.core.state.load(Snapshot(len(self.records), list(self.records)))
        self.mem.start()
        self.mem.advance(self.mem.core.settle + 1.5)
        return self

    def update(self, name, **body):
        old = self.ports[name]
        new = Record(old.kind, old.id, old.project_id, old.revision + 1000, old.created_at, old.updated_at,
                     {**old.body, **body})
        self.ports[name] = new
        self.mem.core.state.apply([Change(self.mem.core.state.revision + 1, "port", old.id, new, old)])
        self.mem.run()

    def send(self, vm, frame):
        for v in self.vms.values():
            v.received.clear()
        for s in self.s.values():
            for p in s.ports.values():
                getattr(p, "sent_ids", []).clear()
        vm.send(frame)
        self.mem.run()
        return {name: [f for f in v.received if f[12:14] != b"\x88\xcc"] for name, v in self.vms.items()}

    def underlay(self, a, b):
        """Tunnel ids of what crossed from switch a to switch b in the last send."""
        return list(self.s[a].ports[self.tunnels[(a, b)]].sent_ids)


def ping(src, dst, src_mac=None, src_ip=None):
    return bytes(Ethernet(src=src_mac or src.mac, dst=dst.mac) / IPv4(src=src_ip or src.ip, dst=dst.ip)
                 / ICMP(type=8, code=0, id=1, seq=1) / b"tenant")


def arp_request(src, target_ip):
    return bytes(Ethernet(src=src.mac, dst=BROADCAST) / ARP(op=ARP_REQUEST, src_mac=src.mac, src_ip=src.ip,
                                                            dst_ip=target_ip))


def two_tenants(kind="vxlan", segments=(5001, 5002)):
    """Tenants A and B with the same subnet and addresses on both hypervisors."""
    cloud = Cloud(kind)
    a, b = cloud.network(segments[0], kind, "pA"), cloud.network(segments[1], kind, "pB")
    cloud.vm("a1", 1, 1, a, "10.0.0.1", "02:00:00:0a:00:01")
    cloud.vm("a2", 2, 1, a, "10.0.0.2", "02:00:00:0a:00:02")
    cloud.vm("b1", 1, 2, b, "10.0.0.1", "02:00:00:0b:00:01")
    cloud.vm("b2", 2, 2, b, "10.0.0.2", "02:00:00:0b:00:02")
    return cloud.start()


def reached(got):
    return sorted(name for name, frames in got.items() if frames)


@pytest.mark.parametrize("kind, tunnel_ids", [("vxlan", (5001, 5002)), ("nvgre", (5001 << 8, 5002 << 8))])
def test_unicast_crosses_the_tunnel_of_its_own_network_only(kind, tunnel_ids):
    cloud = two_tenants(kind)
    vms = cloud.vms
    got = cloud.send(vms["a1"], ping(vms["a1"], vms["a2"]))
    assert reached(got) == ["a2"]
    assert cloud.underlay(1, 2) == [tunnel_ids[0]]
    assert parse(got["a2"][0])[IPv4].dst == "10.0.0.2" and parse(got["a2"][0]).payload == b"tenant"
    got = cloud.send(vms["b2"], ping(vms["b2"], vms["b1"]))
    assert reached(got) == ["b1"] and cloud.underlay(2, 1) == [tunnel_ids[1]]


def test_broadcast_reaches_its_network_on_every_hypervisor_and_no_other():
    cloud = two_tenants()
    vms = cloud.vms
    frame = bytes(Ethernet(src=vms["a1"].mac, dst=BROADCAST) / IPv4(src="10.0.0.1", dst="10.0.0.255")
                  / ICMP(type=8, code=0, id=1, seq=1))
    got = cloud.send(vms["a1"], frame)
    assert reached(got) == ["a2"] and cloud.underlay(1, 2) == [5001]
    # what came out of the tunnel is not sent back into it (split horizon)
    assert cloud.underlay(2, 1) == []


def test_arp_for_a_known_address_is_answered_by_the_controller_and_crosses_no_tunnel():
    cloud = two_tenants()
    vms = cloud.vms
    for asker, target_mac in (("a1", "02:00:00:0a:00:02"), ("b1", "02:00:00:0b:00:02")):
        got = cloud.send(vms[asker], arp_request(vms[asker], "10.0.0.2"))
        assert reached(got) == [asker]
        reply = parse(got[asker][0])[ARP]
        assert (reply.op, reply.src_mac, reply.src_ip, reply.dst_mac) == (ARP_REPLY, target_mac, "10.0.0.2",
                                                                            vms[asker].mac)
        assert cloud.underlay(1, 2) == []
    # an address nobody has is flooded in the network like any broadcast
    got = cloud.send(vms["a1"], arp_request(vms["a1"], "10.0.0.99"))
    assert reached(got) == ["a2"]


def test_port_security_drops_a_spoofed_mac_or_address():
    cloud = two_tenants()
    vms = cloud.vms
    assert reached(cloud.send(vms["a1"], ping(vms["a1"], vms["a2"], src_mac="02:00:00:0a:00:99"))) == []
    assert reached(cloud.send(vms["a1"], ping(vms["a1"], vms["a2"], src_ip="10.0.0.77"))) == []
    # a frame claiming b1's MAC from a1's port goes nowhere either (b1 is on the same hypervisor)
    assert reached(cloud.send(vms["a1"], ping(vms["a1"], vms["b2"], src_mac=vms["b1"].mac))) == []
    # allowed address pairs widen what a port may send
    cloud.update("a1", allowed_address_pairs=[{"ip_address": "10.0.0.64/26"}])
    assert reached(cloud.send(vms["a1"], ping(vms["a1"], vms["a2"], src_ip="10.0.0.77"))) == ["a2"]
    # and port security off admits anything
    cloud.update("a1", port_security_enabled=False)
    assert reached(cloud.send(vms["a1"], ping(vms["a1"], vms["a2"], src_mac="02:00:00:0a:00:99"))) == ["a2"]


def test_segment_ids_above_sixteen_million_and_many_networks():
    cloud = Cloud()
    nets = [cloud.network(16_777_000 + i) for i in range(200)]
    last = nets[-1]
    cloud.vm("x1", 1, 1, last, "192.168.0.1", "02:00:00:00:00:01")
    cloud.vm("x2", 2, 1, last, "192.168.0.2", "02:00:00:00:00:02")
    cloud.start()
    got = cloud.send(cloud.vms["x1"], ping(cloud.vms["x1"], cloud.vms["x2"]))
    assert reached(got) == ["x2"] and cloud.underlay(1, 2) == [16_777_199]


def test_a_port_moved_to_another_hypervisor_is_reached_there():
    cloud = two_tenants()
    vms = cloud.vms
    # a2 moves from s2 port 1 to s1 port 3
    cloud.mem.attach(vms["a2"], cloud.s[1], 3)
    cloud.update("a2", **{"binding:host_id": "0x1", "binding:profile": {"port_no": 3}})
    got = cloud.send(vms["a1"], ping(vms["a1"], vms["a2"]))
    assert reached(got) == ["a2"] and cloud.underlay(1, 2) == []
    got = cloud.send(vms["a2"], ping(vms["a2"], vms["a1"]))
    assert reached(got) == ["a1"]
    # s2 has no port of network A left: it holds none of A's flows
    assert not [f for f in cloud.s[2].flows() if f.match.get("tunnel_id") in (5001, (5001, 0xFFFFFF))]


def test_a_port_bound_to_an_endpoint_without_openflow_is_reached_through_the_tunnel():
    cloud = Cloud(switches=3)
    net = cloud.network(7000)
    cloud.vm("v1", 1, 1, net, "10.1.0.1", "02:00:00:01:00:01")
    # a VM behind a kernel VXLAN host at 10.255.0.3 (the tunnel ports to s3 lead there)
    cloud.records.append(record("port", "p1", network_id=net.id, mac_address="02:00:00:01:00:03", admin_state_up=True,
                                fixed_ips=[{"ip_address": "10.1.0.3"}], **{"binding:host_id": "vtep:10.255.0.3"}))
    cloud.start()
    v1 = cloud.vms["v1"]
    frame = bytes(Ethernet(src=v1.mac, dst="02:00:00:01:00:03") / IPv4(src=v1.ip, dst="10.1.0.3")
                  / ICMP(type=8, code=0, id=1, seq=1))
    cloud.send(v1, frame)
    assert cloud.underlay(1, 3) == [7000] and cloud.underlay(1, 2) == []
    got = cloud.send(v1, arp_request(v1, "10.1.0.3"))
    assert parse(got["v1"][0])[ARP].src_mac == "02:00:00:01:00:03"


def test_the_fabric_sends_no_lldp_into_tunnels_and_finds_no_link_over_them():
    cloud = two_tenants()
    cloud.mem.advance(3)
    for (a, _), port_no in cloud.tunnels.items():
        assert not cloud.mem.core.topology.is_fabric_port(a, port_no)
        assert not [f for f in cloud.s[a].ports[port_no].sent if f[12:14] == b"\x88\xcc"]


def test_a_router_routes_between_tenant_networks_across_hypervisors():
    from kumoflow.apps.router import RouterApp

    cloud = Cloud()
    cloud.mem = MemNet([cloud.app, RouterApp()])
    cloud.s = {n: cloud.mem.switch(n, ports=4) for n in (1, 2)}
    cloud.tunnels[(1, 2)], cloud.tunnels[(2, 1)] = cloud.mem.tunnel(cloud.s[1], cloud.s[2])
    nets = []
    for n, segment in ((1, 6001), (2, 6002)):
        net = cloud.network(segment)
        subnet = record("subnet", "p1", network_id=net.id, cidr=f"10.0.{n}.0/24", gateway_ip=f"10.0.{n}.1",
                        ip_version=4)
        cloud.records.append(subnet)
        nets.append((net, subnet))
    router = record("router", "p1", admin_state_up=True, routes=[])
    cloud.records.append(router)
    for i, (net, subnet) in enumerate(nets):
        cloud.records.append(record("port", "p1", network_id=net.id, device_owner="network:router_interface",
                                    device_id=router.id, mac_address=f"fa:16:3e:00:00:{i + 1:02x}",
                                    fixed_ips=[{"subnet_id": subnet.id, "ip_address": subnet.body["gateway_ip"]}]))
    a1 = cloud.vm("a1", 1, 1, nets[0][0], "10.0.1.5", "02:00:00:00:01:05",
                  fixed_ips=[{"subnet_id": nets[0][1].id, "ip_address": "10.0.1.5"}])
    b2 = cloud.vm("b2", 2, 1, nets[1][0], "10.0.2.5", "02:00:00:00:02:05",
                  fixed_ips=[{"subnet_id": nets[1][1].id, "ip_address": "10.0.2.5"}])
    cloud.start()
    got = cloud.send(a1, arp_request(a1, "10.0.1.1"))
    gateway_mac = parse(got["a1"][0])[ARP].src_mac
    assert gateway_mac == "fa:16:3e:00:00:01" and cloud.underlay(1, 2) == []
    frame = bytes(Ethernet(src=a1.mac, dst=gateway_mac) / IPv4(src=a1.ip, dst=b2.ip, ttl=64)
                  / ICMP(type=8, code=0, id=1, seq=1) / b"routed")
    got = cloud.send(a1, frame)
    assert reached(got) == ["b2"]
    # routed at s1, then carried in network 2's tunnel
    assert cloud.underlay(1, 2) == [6002]
    pkt = parse(got["b2"][0])
    assert (pkt[Ethernet].src, pkt[Ethernet].dst, pkt[IPv4].ttl) == ("fa:16:3e:00:00:02", b2.mac, 63)


def test_dhcp_is_answered_by_the_controller_on_the_vms_own_hypervisor():
    from kumoflow.packet import UDP
    from kumoflow.packet import dhcp as d

    cloud = Cloud()
    net = cloud.network(5100)
    net.body["mtu"] = 1450
    subnet = record("subnet", "p1", network_id=net.id, cidr="10.9.0.0/24", gateway_ip="10.9.0.1", ip_version=4,
                    enable_dhcp=True, dns_nameservers=["10.9.0.2"], host_routes=[])
    cloud.records.append(subnet)
    v1 = cloud.vm("v1", 1, 1, net, "10.9.0.5", "02:00:00:09:00:05",
                  fixed_ips=[{"subnet_id": subnet.id, "ip_address": "10.9.0.5"}])
    cloud.vm("v2", 2, 1, net, "10.9.0.6", "02:00:00:09:00:06",
             fixed_ips=[{"subnet_id": subnet.id, "ip_address": "10.9.0.6"}])
    cloud.start()
    discover = d.DHCP(op=d.BOOTREQUEST, xid=7, chaddr=v1.mac, options={d.OPT_MESSAGE_TYPE: d.DISCOVER})
    frame = bytes(Ethernet(src=v1.mac, dst=BROADCAST) / IPv4(src="0.0.0.0", dst="255.255.255.255")
                  / UDP(sport=68, dport=67) / discover)
    got = cloud.send(v1, frame)
    assert reached(got) == ["v1"] and cloud.underlay(1, 2) == []
    offer = d.parse_dhcp(parse(got["v1"][0]).payload)
    assert offer.options[d.OPT_MESSAGE_TYPE] == d.OFFER and offer.yiaddr == "10.9.0.5"
    assert offer.options[d.OPT_MTU] == 1450 and offer.options[d.OPT_SERVER_ID] == "10.9.0.1"
    # no router holds the gateway address: the server answers ARP for it (a renewal is unicast there)
    got = cloud.send(v1, arp_request(v1, "10.9.0.1"))
    assert parse(got["v1"][0])[ARP].src_mac == cloud.app.dhcp_mac
    assert dict((m[0], m[3]) for m in cloud.app.metrics())["dhcp_answered"] == 1


def gateway_cloud():
    """Network N (VNI 8000): VM v2 on s2; an L2 gateway joins VLAN 100 of s1 port 4, and the
    untagged frames of s1 port 3, to it."""
    cloud = Cloud()
    net = cloud.network(8000)
    cloud.vm("v2", 2, 1, net, "10.8.0.2", "02:00:00:08:00:02")
    gateway = record("l2_gateway", "admin", name="gw", devices=[
        {"device_name": "0x1", "interfaces": [{"name": "4", "segmentation_id": []},
                                              {"name": "s1-eth3", "segmentation_id": [0]}]}])
    cloud.records += [gateway, record("l2_gateway_connection", "admin", l2_gateway_id=gateway.id,
                                      network_id=net.id, segmentation_id=100)]
    tagged = cloud.mem.host("p100", cloud.s[1], 4, mac="02:00:00:00:01:00")
    plain = cloud.mem.host("plain", cloud.s[1], 3, mac="02:00:00:00:00:03")
    cloud.vms.update(p100=tagged, plain=plain)
    return cloud.start()


def test_an_l2_gateway_joins_a_vlan_and_an_untagged_segment_to_a_tenant_network_both_ways():
    from kumoflow.packet.ethernet import VLAN

    cloud = gateway_cloud()
    vms = cloud.vms
    v2, p100 = vms["v2"], vms["p100"]
    hello = bytes(Ethernet(src=p100.mac, dst=BROADCAST) / VLAN(vid=100) / ARP(
        op=ARP_REQUEST, src_mac=p100.mac, src_ip="10.8.0.100", dst_ip="10.8.0.77"))
    got = cloud.send(p100, hello)
    # into the network, tag popped, across the tunnel; the untagged segment hears it too
    assert reached(got) == ["plain", "v2"] and cloud.underlay(1, 2) == [8000]
    assert parse(got["v2"][0]).get(VLAN) is None
    # the controller learned where p100 is: v2's answer goes straight there, tagged again
    answer = bytes(Ethernet(src=v2.mac, dst=p100.mac) / IPv4(src=v2.ip, dst="10.8.0.100")
                   / ICMP(type=0, code=0, id=1, seq=1))
    got = cloud.send(v2, answer)
    assert reached(got) == ["p100"] and cloud.underlay(2, 1) == [8000]
    assert parse(got["p100"][0])[VLAN].vid == 100 and parse(got["p100"][0])[IPv4].src == v2.ip
    assert cloud.app._behind[(1, 4, 100)] == {p100.mac}
    # another VLAN on the same port is not joined
    other = bytes(Ethernet(src=p100.mac, dst=BROADCAST) / VLAN(vid=200) / ARP(
        op=ARP_REQUEST, src_mac=p100.mac, src_ip="10.8.0.100", dst_ip="10.8.0.2"))
    assert reached(cloud.send(p100, other)) == []
    # the untagged segment: frames from it reach v2 untagged, and v2's broadcast reaches both, each its way
    got = cloud.send(v2, bytes(Ethernet(src=v2.mac, dst=BROADCAST) / ARP(
        op=ARP_REQUEST, src_mac=v2.mac, src_ip=v2.ip, dst_ip="10.8.0.3")))
    assert reached(got) == ["p100", "plain"]
    assert parse(got["p100"][0])[VLAN].vid == 100 and parse(got["plain"][0]).get(VLAN) is None


def test_a_host_outside_every_tenant_network_floods_into_no_vm():
    cloud = Cloud()
    a = cloud.network(5001)
    cloud.vm("a1", 1, 1, a, "10.0.0.1", "02:00:00:0a:00:01")
    cloud.vm("a2", 2, 1, a, "10.0.0.2", "02:00:00:0a:00:02")
    outsider = cloud.mem.host("outsider", cloud.s[1], 3, mac="02:00:00:99:00:01")
    cloud.vms["outsider"] = outsider
    cloud.start()
    got = cloud.send(outsider, bytes(Ethernet(src=outsider.mac, dst=BROADCAST) / ARP(
        op=ARP_REQUEST, src_mac=outsider.mac, src_ip="10.0.0.9", dst_ip="10.0.0.1")))
    assert reached(got) == [] and cloud.underlay(1, 2) == []


def test_many_records_in_one_commit_rebuild_the_model_once():
    cloud = two_tenants()
    rebuilds = []
    rebuild = cloud.app.rebuild
    cloud.app.rebuild = lambda: (rebuilds.append(1), rebuild())
    net = cloud.network(5999)
    ports = [record("port", "p1", network_id=net.id, mac_address=f"02:00:00:59:00:{i:02x}", admin_state_up=True,
                    fixed_ips=[{"ip_address": f"10.59.0.{i}"}], **{"binding:host_id": "0x1",
                                                                  "binding:profile": {"port_no": 4}})
             for i in range(1, 4)]
    state = cloud.mem.core.state
    state.apply([Change(state.revision + 1, r.kind, r.id, r, None) for r in (net, *ports)])
    cloud.mem.run()
    assert rebuilds == [1] and net.id in cloud.app.overlay.networks


def test_neighbour_solicitations_for_a_known_ipv6_address_are_answered_by_the_controller():
    from kumoflow.apps.gateway import solicited_node
    from kumoflow.packet import NDNeighborAdvert, NDNeighborSolicit, NDOptSourceLinkAddr
    from kumoflow.packet import IPv6 as IP6
    from kumoflow.packet.consts import ND_NA_ROUTER, ND_NA_SOLICITED

    cloud = Cloud()
    net = cloud.network(6100)
    v1 = cloud.vm("v1", 1, 1, net, "2001:db8::1", "02:00:00:61:00:01")
    cloud.vm("v2", 2, 1, net, "2001:db8::2", "02:00:00:61:00:02")
    cloud.start()

    def solicit(source, target):
        group, group_mac = solicited_node(ipaddress.IPv6Address(target))
        return bytes(Ethernet(src=v1.mac, dst=group_mac) / IP6(src=source, dst=group, hop_limit=255)
                     / NDNeighborSolicit(target=target, options=[NDOptSourceLinkAddr(v1.mac)]))

    got = cloud.send(v1, solicit("2001:db8::1", "2001:db8::2"))
    assert reached(got) == ["v1"] and cloud.underlay(1, 2) == []
    advert = parse(got["v1"][0])
    assert advert[NDNeighborAdvert].target == "2001:db8::2" and advert[Ethernet].src == "02:00:00:61:00:02"
    assert advert[NDNeighborAdvert].flags & (ND_NA_ROUTER | ND_NA_SOLICITED) == ND_NA_SOLICITED   # not a router
    # duplicate address detection (from ::) is not answered: the VM would think its address taken
    assert reached(cloud.send(v1, solicit("::", "2001:db8::2"))) == []


def test_a_dual_stack_vm_beside_the_dhcp_server_address_compiles_its_network():
    """The network's flows hold the DHCP server's ARP answer; the VM's IPv6 address
    beside it (an IPv4 and an IPv6 address cannot be sorted together) breaks nothing."""
    cloud = Cloud()
    net = cloud.network(5101)
    subnet = record("subnet", "p1", network_id=net.id, cidr="10.9.0.0/24", gateway_ip="10.9.0.1", ip_version=4,
                    enable_dhcp=True)
    cloud.records.append(subnet)
    v1 = cloud.vm("v1", 1, 1, net, "10.9.0.5", "02:00:00:09:00:05",
                  fixed_ips=[{"subnet_id": subnet.id, "ip_address": "10.9.0.5"},
                             {"subnet_id": "v6", "ip_address": "2001:db8::5"}])
    cloud.vm("v2", 2, 1, net, "10.9.0.6", "02:00:00:09:00:06")
    cloud.start()
    got = cloud.send(v1, arp_request(v1, "10.9.0.1"))
    assert parse(got["v1"][0])[ARP].src_mac == cloud.app.dhcp_mac
    assert reached(cloud.send(v1, ping(v1, cloud.vms["v2"]))) == ["v2"]


def test_a_routers_external_gateway_joins_its_network_to_the_routers_others():
    """A router routes at the first switch into its external network too (SNAT, floating IPs): a switch
    with a port on one of its tenant networks gets the external network's unicast flows, and the
    reverse."""
    from kumoflow.apps.overlay import build

    tenant, public, other = (record("network", **{"provider:network_type": "vxlan", "provider:segmentation_id": n})
                             for n in (7101, 7102, 7103))
    router = record("router")
    ports = [record("port", network_id=tenant.id, device_owner="network:router_interface", device_id=router.id),
             record("port", network_id=public.id, device_owner="network:router_gateway", device_id=router.id)]
    overlay = build([tenant, public, other], ports, {})
    assert overlay.routed[tenant.id] == {public.id} and overlay.routed[public.id] == {tenant.id}
    assert other.id not in overlay.routed
