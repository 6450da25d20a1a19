"""The lb app in memory: a VIP on a tenant network of two hypervisors (memnet
switches running the kumoflow datapath), a client and three members as VMs
sending real frames. Asserts what reaches which VM with which addresses,
how connections spread, and what health checks the controller sends and
makes of the answers it is given."""

import collections

import pytest

from kumoflow.apps.lb import Health, LoadBalancerApp
from kumoflow.packet import ARP, TCP, Ethernet, IPv4, parse
from kumoflow.packet.consts import ARP_REPLY, ARP_REQUEST, TCP_ACK, TCP_RST, TCP_SYN
from kumoflow.store import Change, Record

from test_tenants import BROADCAST, Cloud, record

VIP, VIP_MAC = "10.2.0.100", "fa:16:3e:00:01:00"
MAC = {"c": "fa:16:3e:00:02:01", "d": "fa:16:3e:00:02:02", "m1": "fa:16:3e:00:02:11", "m2": "fa:16:3e:00:02:12",
       "m3": "fa:16:3e:00:02:13"}
IP = {"c": "10.2.0.5", "d": "10.2.0.6", "m1": "10.2.0.11", "m2": "10.2.0.12", "m3": "10.2.0.13"}
PLACES = {"c": (1, 1), "d": (1, 4), "m1": (1, 2), "m2": (2, 1), "m3": (2, 2)}


class Balanced(Cloud):
    """VMs c, d (clients) and m1-m3 (members, port 8080) on one VXLAN network; a VIP listening on
    TCP 80 with a pool of the members."""

    def __init__(self, algorithm="ROUND_ROBIN", members=("m1", "m2", "m3"), monitor=None, persistence=None,
                 **options):
        self.lb = LoadBalancerApp(**options)
        super().__init__(apps=[self.lb])
        self.net = self.network(6001)
        for name, (switch, port_no) in PLACES.items():
            self.vm(name, switch, port_no, self.net, IP[name], MAC[name])
        self.vip_port = record("port", network_id=self.net.id, mac_address=VIP_MAC, device_owner="Octavia",
                               fixed_ips=[{"subnet_id": "x", "ip_address": VIP}], admin_state_up=True)
        self.balancer = record("loadbalancer", vip_address=VIP, vip_port_id=self.vip_port.id,
                               vip_network_id=self.net.id, admin_state_up=True)
        self.pool = record("pool", loadbalancer_id=self.balancer.id, lb_algorithm=algorithm, admin_state_up=True,
                           protocol="TCP", session_persistence=persistence)
        self.listener = record("listener", loadbalancer_id=self.balancer.id, protocol="TCP", protocol_port=80,
                               default_pool_id=self.pool.id, admin_state_up=True, timeout_client_data=20000)
        self.members = {name: record("member", pool_id=self.pool.id, address=IP[name], protocol_port=8080,
                                     weight=1, admin_state_up=True, backup=False) for name in members}
        self.records += [self.vip_port, self.balancer, self.pool, self.listener, *self.members.values()]
        if monitor is not None:
            self.monitor = record("healthmonitor", pool_id=self.pool.id, admin_state_up=True, **monitor)
            self.records.append(self.monitor)

    def change(self, old: Record | None, new: Record | None):
        state = self.mem.core.state
        state.apply([Change(state.revision + 1, (old or new).kind, (old or new).id, new, old)])
        self.mem.run()

    def edit(self, old: Record, **body) -> Record:
        new = Record(old.kind, old.id, old.project_id, old.revision + 1000, old.created_at, old.updated_at,
                     {**old.body, **body})
        self.change(old, new)
        return new

    def connect(self, client="c", sport=40000):
        """A SYN to the VIP: (the member that got it, the frame it got)."""
        got = self.send(self.vms[client], syn(client, sport))
        hits = [(name, frames[0]) for name, frames in got.items() if frames and name.startswith("m")]
        assert len(hits) <= 1, hits
        return hits[0] if hits else (None, None)


def syn(client, sport, flags=TCP_SYN, dst=VIP, dport=80, dst_mac=VIP_MAC):
    return bytes(Ethernet(src=MAC[client], dst=dst_mac) / IPv4(src=IP[client], dst=dst)
                 / TCP(sport=sport, dport=dport, flags=flags))


def answer(member, client, sport, flags=TCP_SYN | TCP_ACK):
    return bytes(Ethernet(src=MAC[member], dst=MAC[client]) / IPv4(src=IP[member], dst=IP[client])
                 / TCP(sport=8080, dport=sport, flags=flags))


def test_arp_for_the_vip_is_answered_with_its_mac():
    cloud = Balanced().start()
    ask = bytes(Ethernet(src=MAC["c"], dst=BROADCAST, type=0x0806)
                / ARP(op=ARP_REQUEST, src_mac=MAC["c"], src_ip=IP["c"], dst_mac="00:00:00:00:00:00", dst_ip=VIP))
    got = cloud.send(cloud.vms["c"], ask)
    reply = parse(got["c"][0])[ARP]
    assert (reply.op, reply.src_mac, reply.src_ip) == (ARP_REPLY, VIP_MAC, VIP)
    assert all(not frames for name, frames in got.items() if name != "c")     # answered, not flooded


def test_a_connection_is_translated_both_ways_and_its_next_packets_stay_in_the_switches():
    cloud = Balanced().start()
    member, frame = cloud.connect()
    assert member is not None
    ip, tcp = parse(frame)[IPv4], parse(frame)[TCP]
    assert (parse(frame)[Ethernet].dst, ip.src, ip.dst, tcp.sport, tcp.dport) == \
        (MAC[member], IP["c"], IP[member], 40000, 8080)
    back = cloud.send(cloud.vms[member], answer(member, "c", 40000))["c"]
    pkt = parse(back[0])
    assert (pkt[Ethernet].src, pkt[IPv4].src, pkt[TCP].sport, pkt[IPv4].dst, pkt[TCP].dport) == \
        (VIP_MAC, VIP, 80, IP["c"], 40000)
    asked = cloud.lb.counted[cloud.listener.id]["total_connections"]
    assert cloud.connect() == (member, frame)           # the same connection: its flows, no new choice
    assert cloud.lb.counted[cloud.listener.id]["total_connections"] == asked == 1
    assert cloud.lb.stats("loadbalancer", cloud.balancer.id)["active_connections"] == 1


def test_round_robin_spreads_evenly_and_weights_count():
    cloud = Balanced().start()
    spread = collections.Counter(cloud.connect(sport=41000 + n)[0] for n in range(9))
    assert spread == {"m1": 3, "m2": 3, "m3": 3}
    cloud.members["m1"] = cloud.edit(cloud.members["m1"], weight=2)
    spread = collections.Counter(cloud.connect(sport=42000 + n)[0] for n in range(8))
    assert spread == {"m1": 4, "m2": 2, "m3": 2}


def test_least_connections_fills_the_emptiest():
    cloud = Balanced("LEAST_CONNECTIONS").start()
    first = [cloud.connect(sport=43000 + n)[0] for n in range(3)]
    assert sorted(first) == ["m1", "m2", "m3"]
    cloud.mem.advance(25)                    # all idle: their flows time out
    assert cloud.lb.connections == {}
    busy = cloud.connect(sport=43100)[0]
    assert cloud.connect(sport=43101)[0] != busy


@pytest.mark.parametrize("algorithm,persistence", [("SOURCE_IP", None), ("ROUND_ROBIN", {"type": "SOURCE_IP"})])
def test_a_client_sticks_to_its_member(algorithm, persistence):
    cloud = Balanced(algorithm, persistence=persistence).start()
    assert len({cloud.connect("c", 44000 + n)[0] for n in range(6)}) == 1
    assert len({cloud.connect("d", 44100 + n)[0] for n in range(6)}) == 1


def test_rendezvous_moves_only_the_clients_of_a_member_that_goes():
    cloud = Balanced("SOURCE_IP_PORT").start()
    before = {n: cloud.connect(sport=45000 + n)[0] for n in range(30)}
    assert set(before.values()) == {"m1", "m2", "m3"}
    cloud.mem.advance(25)
    cloud.members["m3"] = cloud.edit(cloud.members["m3"], admin_state_up=False)
    after = {n: cloud.connect(sport=45000 + n)[0] for n in range(30)}
    assert all(after[n] == member for n, member in before.items() if member != "m3")
    assert "m3" not in after.values()


def test_weight_zero_drains_and_an_existing_connection_survives_a_member_added():
    cloud = Balanced(members=("m1", "m2")).start()
    member, frame = cloud.connect(sport=46000)
    cloud.members[member] = cloud.edit(cloud.members[member], weight=0)
    assert {cloud.connect(sport=46001 + n)[0] for n in range(4)} == {"m1", "m2"} - {member}
    assert cloud.lb.operating_status("member", cloud.members[member].id) == "DRAINING"
    m3 = record("member", pool_id=cloud.pool.id, address=IP["m3"], protocol_port=8080, weight=1,
                admin_state_up=True, backup=False)
    cloud.change(None, m3)
    data = syn("c", 46000, TCP_ACK)
    assert cloud.send(cloud.vms["c"], data)[member]      # the drained member keeps its connection


def test_a_deleted_member_takes_its_connections_with_it():
    cloud = Balanced(members=("m1",)).start()
    cloud.connect(sport=47000)
    cloud.change(cloud.members["m1"], None)
    assert cloud.lb.connections == {}
    assert not any(f.priority == 20000 for s in cloud.s.values() for f in s.flows(16))
    got = cloud.send(cloud.vms["c"], syn("c", 47001))
    reset = parse(got["c"][0])[TCP]             # no member: the VIP resets the connection
    assert reset.flags & TCP_RST and cloud.lb.counted[cloud.listener.id]["request_errors"] == 1


def probes_at(cloud, member):
    return [parse(f) for f in cloud.vms[member].received if parse(f).get(IPv4) is not None
            and parse(f)[IPv4].src == VIP]


def serve(cloud, name, status=b"HTTP/1.0 204 No Content\r\n\r\n", seconds=1.0):
    """Let the clock run while member `name` answers its health checks as a web server would;
    the requests it got."""
    requests = []
    for _ in range(int(seconds / 0.5)):
        cloud.mem.advance(0.5)
        for _ in range(3):                  # the SYN, then the request it brings
            probes, cloud.vms[name].received[:] = probes_at(cloud, name), []
            for probe in probes:
                if probe[TCP].flags & TCP_SYN:
                    cloud.vms[name].send(http_answer(probe, b""))
                elif bytes(probe.payload).startswith(b"GET "):
                    requests.append(bytes(probe.payload))
                    cloud.vms[name].send(http_answer(probe, status, TCP_ACK))
            cloud.mem.run()
    return requests


def test_health_checks_take_a_silent_member_out_and_bring_it_back_when_it_answers():
    monitor = dict(type="HTTP", delay=2, timeout=1, max_retries=2, max_retries_down=2, url_path="/health",
                   expected_codes="200-204", http_method="GET")
    cloud = Balanced(members=("m1", "m2"), monitor=monitor).start()
    ids = {name: r.id for name, r in cloud.members.items()}
    cloud.vms["m2"].received.clear()
    for _ in range(10):                       # m1 answers, m2 does not: two checks of m2 failed
        serve(cloud, "m1")
    assert probes_at(cloud, "m2") and all(p[TCP].flags == TCP_SYN and p[TCP].dport == 8080
                                         for p in probes_at(cloud, "m2"))
    assert cloud.lb.operating_status("member", ids["m2"]) == "ERROR"
    assert cloud.lb.operating_status("member", ids["m1"]) == "ONLINE"
    assert cloud.lb.operating_status("pool", cloud.pool.id) == "DEGRADED"
    assert cloud.lb.operating_status("loadbalancer", cloud.balancer.id) == "DEGRADED"
    assert {cloud.connect(sport=48000 + n)[0] for n in range(4)} == {"m1"}
    requests = []
    for _ in range(5):                        # m2 answers now: two checks passed
        cloud.vms["m2"].received.clear()
        serve(cloud, "m1")
        requests += serve(cloud, "m2", seconds=0.5)
    assert requests and requests[0].startswith(b"GET /health HTTP/1.0\r\nHost: 10.2.0.12\r\n")
    assert cloud.lb.operating_status("member", ids["m2"]) == "ONLINE"
    assert cloud.lb.health[ids["m2"]].latency is not None
    assert {cloud.connect(sport=48100 + n)[0] for n in range(4)} == {"m1", "m2"}
    serve(cloud, "m2", status=b"HTTP/1.0 500 Oops\r\n\r\n", seconds=6)     # an unexpected code fails
    assert cloud.lb.operating_status("member", ids["m2"]) == "ERROR"
    assert cloud.lb.health[ids["m2"]].detail == "HTTP 500"


def http_answer(probe, data, flags=TCP_SYN | TCP_ACK):
    """A member's answer to a health check's segment: SYN-ACK to the SYN, data to the request."""
    tcp = probe[TCP]
    ack = (tcp.seq + (1 if tcp.flags & TCP_SYN else len(bytes(probe.payload)))) & 0xFFFFFFFF
    segment = TCP(sport=tcp.dport, dport=tcp.sport, seq=1000 if flags & TCP_SYN else 1001, ack=ack, flags=flags)
    return bytes(Ethernet(src=probe[Ethernet].dst, dst=probe[Ethernet].src)
                 / IPv4(src=probe[IPv4].dst, dst=probe[IPv4].src) / (segment / data if data else segment))


def test_a_silent_member_fails_a_check_every_delay_when_its_timeout_is_the_delay():
    cloud = Balanced(members=("m1",), monitor=dict(type="TCP", delay=2, timeout=2, max_retries=1,
                                                   max_retries_down=3)).start()
    member_id = cloud.members["m1"].id
    cloud.lb.health.pop(member_id, None)
    cloud.vms["m1"].received.clear()
    cloud.mem.advance(7)                     # checks sent every 2 s, each judged at its timeout
    assert len(probes_at(cloud, "m1")) >= 3
    assert cloud.lb.health[member_id].failed >= 3 and cloud.lb.health[member_id].status == "ERROR"


def test_a_slow_member_gets_fewer_new_connections_within_the_bounds():
    cloud = Balanced(monitor=dict(type="HTTP", delay=30, timeout=10, max_retries=1, max_retries_down=3),
                     min_share=0.25).start()
    ids = {name: r.id for name, r in cloud.members.items()}
    for name, latency in (("m1", 0.005), ("m2", 0.005), ("m3", 0.5)):
        cloud.lb.health.setdefault(ids[name], Health()).latency = latency
    spread = collections.Counter(cloud.connect(sport=49000 + n)[0] for n in range(18))
    assert spread["m3"] == 2 and spread["m1"] == spread["m2"] == 8      # 0.25 : 1 : 1
    for name, latency in (("m1", 0.002), ("m2", 0.004), ("m3", 0.015)):     # jitter, within the slack
        cloud.lb.health[ids[name]].latency = latency
    spread = collections.Counter(cloud.connect(sport=49100 + n)[0] for n in range(9))
    assert spread == {"m1": 3, "m2": 3, "m3": 3}


def test_status_and_stats_for_the_api():
    cloud = Balanced(members=("m1",)).start()
    assert cloud.lb.operating_status("loadbalancer", cloud.balancer.id) == "ONLINE"
    assert cloud.lb.operating_status("member", cloud.members["m1"].id) == "NO_MONITOR"
    member, _ = cloud.connect(sport=50000)
    cloud.send(cloud.vms[member], answer(member, "c", 50000))
    cloud.mem.advance(25)                    # idle: both flows go, with their counts
    stats = cloud.lb.stats("listener", cloud.listener.id)
    assert stats["total_connections"] == 1 and stats["active_connections"] == 0
    assert stats["bytes_in"] > 0 and stats["bytes_out"] > 0
    cloud.balancer = cloud.edit(cloud.balancer, admin_state_up=False)
    assert cloud.lb.operating_status("loadbalancer", cloud.balancer.id) == "OFFLINE"
    assert not any(f.priority > 0 for s in cloud.s.values() for f in s.flows(16))
