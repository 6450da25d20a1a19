"""The firewall app in memory: security groups on tenant VMs of two
hypervisors (memnet switches running the kumoflow datapath), real TCP, UDP
and ICMP frames. Asserts what reaches which VM, what the controller was
asked, and that rules changed or deleted act on connections already made."""

import ipaddress

import pytest

from kumoflow.apps.firewall import (CONNECTION_PRIORITY, END_GRACE, END_PRIORITY, PUNT_PRIORITY, FirewallApp,
                                    parse_header)
from kumoflow.apps.secgroups import Packet
from kumoflow.packet import ARP, ICMP, TCP, UDP, Ethernet, ICMPv6, IPv4, IPv6, parse
from kumoflow.packet.addr import link_local
from kumoflow.packet.consts import ARP_REPLY, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN
from kumoflow.controller import pipeline
from kumoflow.store import Change, Snapshot

from test_tenants import Cloud, record

MAC = {"a": "fa:16:3e:00:00:0a", "b": "fa:16:3e:00:00:0b", "c": "fa:16:3e:00:00:0c"}
IP = {"a": "10.1.0.10", "b": "10.1.0.11", "c": "10.1.0.12"}


def tcp(src, dst, sport, dport, flags=TCP_SYN):
    return bytes(Ethernet(src=MAC[src], dst=MAC[dst]) / IPv4(src=IP[src], dst=IP[dst])
                 / TCP(sport=sport, dport=dport, flags=flags))


def udp(src, dst, sport, dport):
    return bytes(Ethernet(src=MAC[src], dst=MAC[dst]) / IPv4(src=IP[src], dst=IP[dst])
                 / UDP(sport=sport, dport=dport) / b"x")


def ping(src, dst, reply=False):
    return bytes(Ethernet(src=MAC[src], dst=MAC[dst]) / IPv4(src=IP[src], dst=IP[dst])
                 / ICMP(type=0 if reply else 8, code=0, id=7, seq=1))


class Firewalled(Cloud):
    """VMs a (s1 port 1), b (s2 port 1), c (s2 port 2) on one VXLAN network; groups and
    rules as records; every port in the groups `groups[name]`."""

    def __init__(self, rules, groups=None, stateful=True, **options):
        self.fw = FirewallApp(**options)
        super().__init__(apps=[self.fw])
        self.net = self.network(5001)
        self.group = {name: record("security_group", stateful=stateful, name=name) for name in ("web", "ssh", "db")}
        self.records += self.group.values()
        self.rules = {}
        for name, (group, body) in rules.items():
            self.rules[name] = record("security_group_rule", security_group_id=self.group[group].id,
                                      **{"ethertype": "IPv4", "protocol": None, "port_range_min": None,
                                         "port_range_max": None, "remote_ip_prefix": None,
                                         "remote_group_id": None, **body})
            if body.get("remote_group_id") in self.group:
                self.rules[name].body["remote_group_id"] = self.group[body["remote_group_id"]].id
        self.records += self.rules.values()
        groups = groups or {}
        for name, (switch, port_no) in {"a": (1, 1), "b": (2, 1), "c": (2, 2)}.items():
            self.vm(name, switch, port_no, self.net, IP[name], MAC[name],
                    security_groups=[self.group[g].id for g in groups.get(name, ())])

    def change(self, kind, old, new):
        state = self.mem.core.state
        state.apply([Change(state.revision + 1, kind, (old or new).id, new, old)])
        self.mem.run()

    def got(self, frame, to):
        return [f for f in self.vms[to].received if f == frame]

    def exchange(self, src, dst, frame):
        return self.send(self.vms[src], frame)[dst]


EGRESS_ALL = {"out": ("web", {"direction": "egress"})}


def test_allowed_inbound_with_answers_and_unsolicited_blocked():
    cloud = Firewalled({**EGRESS_ALL, "http": ("web", {"direction": "ingress", "protocol": "tcp",
                                                        "port_range_min": 80, "port_range_max": 80})},
                       groups={"a": ["web"], "b": ["web"]}).start()
    asked, punted = cloud.fw.counts["allowed"], []
    packet_in = cloud.fw.packet_in
    cloud.fw.packet_in = lambda dp, msg: (punted.append(msg.table_id), packet_in(dp, msg))
    syn = tcp("a", "b", 40000, 80)
    assert cloud.exchange("a", "b", syn) == [syn]          # a's egress, b's ingress: both decided
    assert cloud.fw.counts["allowed"] == asked + 2
    assert punted == [12]                                  # at once, on a's side: one round trip
    answer = tcp("b", "a", 80, 40000, TCP_SYN | TCP_ACK)
    assert cloud.exchange("b", "a", answer) == [answer]      # b's answer and a's return: connection flows
    assert cloud.fw.counts["allowed"] == asked + 2
    data = tcp("a", "b", 40000, 80, TCP_ACK)
    assert cloud.exchange("a", "b", data) == [data]
    assert cloud.fw.counts["allowed"] == asked + 2           # no packet-in once the flows are in
    assert cloud.exchange("a", "b", tcp("a", "b", 40001, 22)) == []      # no rule for ssh
    assert cloud.exchange("b", "a", tcp("b", "a", 80, 40005, TCP_SYN | TCP_ACK)) == []   # unsolicited "answer"


def test_a_port_without_groups_drops_all_but_arp_and_dhcp_and_unguarded_ports_pass():
    cloud = Firewalled(EGRESS_ALL, groups={"a": ["web"]})
    cloud.records[cloud.records.index(cloud.ports["c"])].body["port_security_enabled"] = False
    cloud.start()
    assert cloud.exchange("a", "b", udp("a", "b", 5000, 53)) == []       # b: port security, no group
    assert cloud.exchange("a", "c", udp("a", "c", 5000, 53)) == [udp("a", "c", 5000, 53)]   # c: unguarded
    arp = bytes(Ethernet(src=MAC["b"], dst=MAC["a"], type=0x0806)
                / ARP(op=ARP_REPLY, src_mac=MAC["b"], src_ip=IP["b"], dst_mac=MAC["a"], dst_ip=IP["a"]))
    assert cloud.exchange("b", "a", arp) == [arp]       # out of b, in to a: exempt both ways
    na = bytes(Ethernet(src=MAC["b"], dst=MAC["a"]) / IPv6(src=str(link_local(MAC["b"])), dst=str(link_local(MAC["a"])), hop_limit=255)
               / ICMPv6(type=136, code=0) / (b"\0" * 20))
    assert cloud.exchange("b", "a", na) == [na]


def test_remote_group_follows_ports_as_they_join():
    rules = {**EGRESS_ALL, "ssh-out": ("ssh", {"direction": "egress"}),
             "ssh": ("db", {"direction": "ingress", "protocol": "tcp", "port_range_min": 22,
                            "port_range_max": 22, "remote_group_id": "ssh"})}
    cloud = Firewalled(rules, groups={"a": ["web"], "b": ["db"], "c": ["ssh"]}).start()
    assert cloud.exchange("a", "b", tcp("a", "b", 40000, 22)) == []      # a is not in ssh
    assert cloud.exchange("c", "b", tcp("c", "b", 40000, 22)) == [tcp("c", "b", 40000, 22)]
    cloud.update("a", security_groups=[cloud.group["web"].id, cloud.group["ssh"].id])
    assert cloud.exchange("a", "b", tcp("a", "b", 40002, 22)) == [tcp("a", "b", 40002, 22)]


def test_deleting_the_rule_cuts_its_connections():
    cloud = Firewalled({**EGRESS_ALL, "http": ("web", {"direction": "ingress", "protocol": "tcp",
                                                        "port_range_min": 80, "port_range_max": 80})},
                       groups={"a": ["web"], "b": ["web"]}).start()
    syn = tcp("a", "b", 40000, 80)
    assert cloud.exchange("a", "b", syn) == [syn]
    s2 = cloud.s[2]
    assert any(f.priority == CONNECTION_PRIORITY for f in s2.flows(38))        # b's connection flow in to_port
    cloud.change("security_group_rule", cloud.rules["http"], None)
    assert not any(f.priority == CONNECTION_PRIORITY and f.instructions for f in s2.flows(38))
    data = tcp("a", "b", 40000, 80, TCP_ACK)
    assert cloud.exchange("a", "b", data) == []


def test_port_ranges_and_stateless_rules():
    rules = {"out": ("web", {"direction": "egress", "protocol": "udp"}),
             "range": ("web", {"direction": "ingress", "protocol": "udp", "port_range_min": 5000,
                               "port_range_max": 5010}),
             "dns": ("web", {"direction": "ingress", "protocol": "udp", "port_range_min": 53,
                             "port_range_max": 53})}
    cloud = Firewalled(rules, groups={"a": ["web"], "b": ["web"]}, stateful=False).start()
    dns = udp("a", "b", 3333, 53)
    assert cloud.exchange("a", "b", dns) == [dns]
    assert cloud.fw.connections == {}          # stateless rules flows say whole: the controller decides nothing
    in_range, out_of_range = udp("a", "b", 3333, 5004), udp("a", "b", 3333, 5011)
    assert cloud.exchange("a", "b", in_range) == [in_range]
    assert cloud.exchange("a", "b", out_of_range) == []
    assert len(cloud.fw.connections) == 2      # the range: decided per connection, one way only
    assert {c.decision.stateful for c in cloud.fw.connections.values()} == {False}
    # stateless: b's answer from 53 is a new packet in to a, and a allows udp in only to 53 and 5000-5010
    assert cloud.exchange("b", "a", udp("b", "a", 53, 3333)) == []


def test_icmp_echo_and_its_reply():
    rules = {**EGRESS_ALL, "ping": ("db", {"direction": "ingress", "protocol": "icmp", "port_range_min": 8})}
    cloud = Firewalled(rules, groups={"a": ["web"], "b": ["db"]}).start()     # db: no egress rule at all
    assert cloud.exchange("a", "b", ping("a", "b")) == [ping("a", "b")]
    assert cloud.exchange("b", "a", ping("b", "a", reply=True)) == [ping("b", "a", reply=True)]
    assert cloud.exchange("b", "a", ping("b", "a")) == []       # b may send only answers


def test_connections_end_by_idle_timeout():
    cloud = Firewalled({**EGRESS_ALL, "http": ("web", {"direction": "ingress", "protocol": "tcp",
                                                        "port_range_min": 80, "port_range_max": 80})},
                       groups={"a": ["web"], "b": ["web"]}, connection_idle=5).start()
    cloud.exchange("a", "b", tcp("a", "b", 40000, 80))
    assert len(cloud.fw.connections) == 2
    cloud.mem.advance(8)
    assert cloud.fw.connections == {}
    assert not any(f.priority == CONNECTION_PRIORITY for s in cloud.s.values() for t in (12, 38) for f in s.flows(t))


HTTP_IN = {**EGRESS_ALL, "http": ("web", {"direction": "ingress", "protocol": "tcp",
                                           "port_range_min": 80, "port_range_max": 80})}


def connection_flows(cloud):
    return [f for s in cloud.s.values() for t in (12, 38) for f in s.flows(t) if f.priority == CONNECTION_PRIORITY]


def test_a_tcp_connection_ends_a_moment_after_a_fin_each_way():
    cloud = Firewalled(HTTP_IN, groups={"a": ["web"], "b": ["web"]}).start()
    cloud.exchange("a", "b", tcp("a", "b", 40000, 80))
    cloud.exchange("b", "a", tcp("b", "a", 80, 40000, TCP_SYN | TCP_ACK))
    assert len(cloud.fw.connections) == 2 and len(connection_flows(cloud)) == 4
    fin = tcp("a", "b", 40000, 80, TCP_FIN | TCP_ACK)
    assert cloud.exchange("a", "b", fin) == [fin]              # a copy to the controller, the segment on its way
    cloud.mem.advance(END_GRACE + 1)
    assert len(cloud.fw.connections) == 2                      # half closed: b may still send
    data = tcp("b", "a", 80, 40000, TCP_ACK)
    assert cloud.exchange("b", "a", data) == [data]
    fin_back = tcp("b", "a", 80, 40000, TCP_FIN | TCP_ACK)
    assert cloud.exchange("b", "a", fin_back) == [fin_back]
    last_ack = tcp("a", "b", 40000, 80, TCP_ACK)
    assert cloud.exchange("a", "b", last_ack) == [last_ack]    # within the grace: still the connection's
    asked = cloud.fw.counts["allowed"]
    cloud.mem.advance(END_GRACE + 0.5)
    assert cloud.fw.connections == {} and connection_flows(cloud) == []
    assert cloud.fw.counts["ended"] == 2 and cloud.fw.counts["allowed"] == asked
    copies = sum(f.packet_count for s in cloud.s.values() for t in (13, 39) for f in s.flows(t)
                 if f.priority == END_PRIORITY)
    assert copies == 2            # each FIN copied once, as it left its guarded sender, not again on arrival
    assert cloud.exchange("b", "a", data) == []                # no connection: an unsolicited segment to a


def test_a_reset_ends_a_connection_and_a_fin_of_none_is_judged_as_a_first_packet():
    cloud = Firewalled(HTTP_IN, groups={"a": ["web"], "b": ["web"]}).start()
    cloud.exchange("a", "b", tcp("a", "b", 40000, 80))
    rst = tcp("b", "a", 80, 40000, TCP_RST | TCP_ACK)
    assert cloud.exchange("b", "a", rst) == [rst]
    cloud.mem.advance(END_GRACE + 0.5)
    assert cloud.fw.connections == {} and connection_flows(cloud) == []
    stray_fin = tcp("b", "a", 80, 40001, TCP_FIN | TCP_ACK)   # b's egress allows it; a's ingress has no rule
    assert cloud.exchange("b", "a", stray_fin) == []
    udp_flow = udp("a", "b", 5000, 53)
    cloud.exchange("a", "b", udp_flow)
    gotos = [[i.table_id for i in f.instructions if hasattr(i, "table_id")] for f in cloud.s[1].flows(12)
             if f.priority == CONNECTION_PRIORITY and f.match.get("ip_proto") == 17]
    assert gotos == [[pipeline.next_table("from_port_end")]]      # a's UDP: not through from_port_end
    assert sorted(f.priority for f in cloud.s[1].flows(13)) == [0] + [END_PRIORITY] * 4


def test_punts_are_metered_per_switch():
    cloud = Firewalled(EGRESS_ALL, groups={"a": ["web"]}, punt_rate=50).start()
    punts = [f for f in cloud.s[1].flows(12) if f.priority == PUNT_PRIORITY]
    assert punts and all(any(getattr(i, "meter_id", None) == cloud.fw.meter_ids.start for i in f.instructions)
                         for f in punts)
    sent = [m for m in cloud.s[1].mods() if type(m).__name__ == "MeterMod"]
    start = cloud.fw.meter_ids.start
    assert sorted((m.meter_id, m.bands[0].rate) for m in sent) == [(start, 50), (start + 1, 100),   # the log's
                                                              (start + 2, 200)]   # FIN and RST copies


@pytest.mark.parametrize("frame,expected", [
    (tcp("a", "b", 1, 2), Packet(4, 6, ipaddress.ip_address(IP["a"]), ipaddress.ip_address(IP["b"]), 1, 2)),
    (ping("a", "b"), Packet(4, 1, ipaddress.ip_address(IP["a"]), ipaddress.ip_address(IP["b"]), 8, 0)),
    (bytes(Ethernet(src=MAC["a"], dst=MAC["b"]) / IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=7, dport=9) / b"x"),
     Packet(6, 17, ipaddress.ip_address("fd00::1"), ipaddress.ip_address("fd00::2"), 7, 9)),
    (tcp("a", "b", 1, 2)[:37], None),
    (bytes(Ethernet(src=MAC["a"], dst=MAC["b"], type=0x0806)) + b"\0" * 28, None),
])
def test_parse_header(frame, expected):
    assert parse_header(frame) == expected


def test_on_a_fabric_network_hop_by_hop():
    """Ports of a network the fabric carries (not tunnelled): two switches linked, the hosts
    found by the fabric, the firewall deciding at each guarded end."""
    from memnet import MemNet
    fw = FirewallApp()
    mem = MemNet([fw])
    s1, s2 = mem.switch(1, ports=4), mem.switch(2, ports=4)
    mem.link(s1, 4, s2, 4)
    hosts = {"a": mem.host("a", s1, 1, mac=MAC["a"]), "b": mem.host("b", s2, 1, mac=MAC["b"])}
    net = record("network", **{"provider:network_type": "flat"})
    web = record("security_group", stateful=True, name="web")
    rules = [record("security_group_rule", security_group_id=web.id, direction=d, ethertype="IPv4", **extra)
             for d, extra in (("egress", {}), ("ingress", dict(protocol="tcp", port_range_min=80,
                                                                 port_range_max=80)))]
    ports = [record("port", network_id=net.id, mac_address=MAC[n], security_groups=[web.id], admin_state_up=True,
                    fixed_ips=[{"ip_address": IP[n]}], **{"binding:host_id": f"{dpid:#x}",
                                                           "binding:profile": {"port_no": 1}})
             for n, dpid in (("a", 1), ("b", 2))]
    everything = [net, web, *rules, *ports]
    mem.core.state.load(Snapshot(len(everything), everything))
    mem.start()
    mem.advance(mem.core.settle + 1.5)

    def exchange(src, dst, frame):
        for h in hosts.values():
            h.received.clear()
        hosts[src].send(frame)
        mem.run()
        return [f for f in hosts[dst].received if f == frame]

    syn, answer = tcp("a", "b", 40000, 80), tcp("b", "a", 80, 40000, TCP_SYN | TCP_ACK)
    assert exchange("a", "b", syn) == [syn]
    assert exchange("b", "a", answer) == [answer]
    assert exchange("a", "b", tcp("a", "b", 40001, 22)) == []
    assert exchange("b", "a", tcp("b", "a", 22, 40002)) == []       # unsolicited, though b may send anything
    # each connection decided at both ends when its sender's is: the receiver's side with it (allowed
    # for 40000->80, dropped for the others), so that the first packet meets flows at the receiver too
    assert sorted((k[1], k[2].sport, k[2].dport, c.decision.action) for k, c in fw.connections.items()) == \
        [(False, 22, 40002, "allow"), (False, 40000, 80, "allow"), (False, 40001, 22, "allow"),
         (True, 22, 40002, "deny"), (True, 40000, 80, "allow"), (True, 40001, 22, "deny")]
    assert fw.counts["allowed"] + fw.counts["denied"] == 6


# --- firewall policies (FWaaS v2) ---------------------------------------------------------------


class Policied(Firewalled):
    """The same VMs, port security off; b in a firewall group whose ingress policy is `ingress`
    (a list of firewall rule bodies, in order). `tags`: user groups per VM."""

    def __init__(self, ingress, tags=None, sets=None, egress=None, guarded="b", **options):
        super().__init__({}, **options)
        for name in ("a", "b", "c"):
            self.ports[name].body.update(port_security_enabled=False, user_groups=(tags or {}).get(name, []))
        self.sets = {name: record("address_group", addresses=cidrs) for name, cidrs in (sets or {}).items()}
        self.records += self.sets.values()
        self.fw_rules = []
        policies = {}
        for way, bodies in (("ingress", ingress), ("egress", egress)):
            if bodies is None:
                continue
            rules = []
            for body in bodies:
                body = dict(body)
                if "source_address_group_id" in body:
                    body["source_address_group_id"] = self.sets[body["source_address_group_id"]].id
                rules.append(record("firewall_rule", **{"ip_version": 4, "enabled": True, **body}))
            policies[way] = record("firewall_policy", firewall_rules=[r.id for r in rules])
            self.fw_rules += rules
        self.fw_group = record("firewall_group", ports=[self.ports[guarded].id], admin_state_up=True,
                               **{f"{way}_firewall_policy_id": policies[way].id if way in policies else None
                                  for way in ("ingress", "egress")})
        self.records += [*self.fw_rules, *policies.values(), self.fw_group]


def test_policy_rules_in_order_deny_beats_a_later_allow():
    cloud = Policied([{"protocol": "tcp", "destination_port": "22", "action": "deny"},
                      {"protocol": "tcp", "action": "allow"}]).start()
    asked = cloud.fw.counts["allowed"] + cloud.fw.counts["denied"]
    assert cloud.exchange("a", "b", tcp("a", "b", 40000, 22)) == []
    assert cloud.fw.counts["allowed"] + cloud.fw.counts["denied"] == asked     # dropped by its flow, unasked
    assert cloud.exchange("a", "b", tcp("a", "b", 40000, 80)) == [tcp("a", "b", 40000, 80)]
    answer = tcp("b", "a", 80, 40000, TCP_SYN | TCP_ACK)
    assert cloud.exchange("b", "a", answer) == [answer]           # b's egress is not filtered
    assert cloud.exchange("a", "b", udp("a", "b", 5000, 53)) == []     # no rule matches: denied


def test_reject_answers_with_a_reset_or_port_unreachable():
    cloud = Policied([{"protocol": "tcp", "destination_port": "23", "action": "reject"},
                      {"protocol": "udp", "destination_port": "5000:6000", "action": "reject"}]).start()
    got = cloud.send(cloud.vms["a"], tcp("a", "b", 40000, 23))
    assert got["b"] == []
    [reset] = [parse(f) for f in got["a"]]
    assert (reset[TCP].flags & (TCP_RST | TCP_ACK), reset[TCP].sport, reset[TCP].dport, reset[TCP].ack) == \
        (TCP_RST | TCP_ACK, 23, 40000, 1)
    assert (reset[IPv4].src, reset[IPv4].dst) == (IP["b"], IP["a"])
    got = cloud.send(cloud.vms["a"], udp("a", "b", 3333, 5500))
    [unreachable] = [parse(f) for f in got["a"]]
    assert (unreachable[ICMP].type, unreachable[ICMP].code, unreachable[IPv4].src) == (3, 3, IP["b"])
    assert cloud.fw.counts["rejected"] == 2


def test_denied_with_a_log_is_recorded_once_per_connection_through_the_log_meter():
    cloud = Policied([{"protocol": "tcp", "destination_port": "22", "action": "deny", "log": True},
                      {"action": "allow"}]).start()
    rule = cloud.fw_rules[0].id
    log_punts = [f for f in cloud.s[2].flows(38)
                 if any(getattr(i, "meter_id", None) == cloud.fw.meter_ids.start + 1 for i in f.instructions)]
    assert len(log_punts) == 1
    for _ in range(3):
        assert cloud.exchange("a", "b", tcp("a", "b", 40000, 22)) == []
    assert [(r["rule"], r["action"], r["src"], r["dport"], r["port"]) for r in cloud.fw.denied] == \
        [(rule, "deny", IP["a"], 22, cloud.ports["b"].id)]
    assert cloud.fw.logged[rule] == 1            # the retries met the connection's drop flow


def test_address_sets_and_user_groups_as_sources():
    country = [f"10.{n}.{m}.0/24" for n in range(1, 3) for m in range(256)]     # 512 /24s: two /16s
    cloud = Policied([{"source_address_group_id": "country", "protocol": "tcp", "action": "deny"},
                      {"source_user_group": "staff", "protocol": "tcp", "action": "allow"}],
                     tags={"c": ["staff"]}, sets={"country": country}).start()
    deny_flows = [f for f in cloud.s[2].flows(38) if f.priority == 19000]
    assert len(deny_flows) == 2                   # 10.1/16 and 10.2/16
    assert cloud.exchange("a", "b", tcp("a", "b", 40000, 80)) == []      # a is 10.1.0.10: in the set
    assert cloud.exchange("c", "b", tcp("c", "b", 40000, 80)) == []      # c is too (10.1.0.12), before staff
    cloud.change("address_group", cloud.sets["country"],
                 type(cloud.sets["country"])(**{**cloud.sets["country"].__dict__,
                                                "body": {"addresses": ["10.2.0.0/16"]}}))
    assert cloud.exchange("c", "b", tcp("c", "b", 40001, 80)) == [tcp("c", "b", 40001, 80)]    # staff
    assert cloud.exchange("a", "b", tcp("a", "b", 40002, 80)) == []      # not staff: no rule, denied


# --- web applications: the connection's request decides ------------------------------------------


def request(src, dst, sport, dport, seq, head):
    return bytes(Ethernet(src=MAC[src], dst=MAC[dst]) / IPv4(src=IP[src], dst=IP[dst])
                 / TCP(sport=sport, dport=dport, seq=seq, ack=1, flags=TCP_ACK) / head)


def handshake(cloud, sport, client="a", server="b"):
    """SYN (seq 0), SYN-ACK, ACK: what reached the server, and the client."""
    got = [cloud.exchange(client, server, tcp(client, server, sport, 80))]
    got.append(cloud.exchange(server, client, tcp(server, client, 80, sport, TCP_SYN | TCP_ACK)))
    got.append(cloud.exchange(client, server, request(client, server, sport, 80, 1, b"")))
    return [len(g) for g in got]


WEB = [{"protocol": "tcp", "destination_port": "80", "http_path": "/admin", "action": "deny", "log": True},
       {"protocol": "tcp", "http_host": "*.blocked.test", "action": "reject"},
       {"protocol": "tcp", "action": "allow"}]


@pytest.mark.parametrize("way", ["ingress", "egress"])
def test_a_connection_is_decided_by_its_request(way):
    """The server b guarded on its way in, or the client a on its way out: the same policy."""
    cloud = (Policied(WEB) if way == "ingress" else Policied(None, egress=WEB, guarded="a")).start()
    assert handshake(cloud, 40000) == [1, 1, 1]        # the handshake passes while the request is awaited
    get = request("a", "b", 40000, 80, 1, b"GET /index.html HTTP/1.1\r\nHost: www.site.test\r\n\r\n")
    assert cloud.exchange("a", "b", get) == [get]
    asked = cloud.fw.counts["inspected"]
    more = request("a", "b", 40000, 80, 1 + 47, b"GET /admin HTTP/1.1\r\nHost: www.site.test\r\n\r\n")
    assert cloud.exchange("a", "b", more) == [more]     # decided: the first request only, by flows now
    assert cloud.fw.counts["inspected"] == asked
    decided = {k: c.decision.action for k, c in cloud.fw.connections.items() if k[2].sport == 40000}
    cloud.update("c", description="renamed")            # the model made again: judged again with its request
    assert {k: c.decision.action for k, c in cloud.fw.connections.items() if k[2].sport == 40000} == decided
    assert set(decided.values()) == {"allow"}

    assert handshake(cloud, 40001) == [1, 1, 1]
    admin = request("a", "b", 40001, 80, 1, b"GET /x/../admin/users HTTP/1.1\r\nHost: www.site.test\r\n\r\n")
    assert cloud.exchange("a", "b", admin) == []
    assert cloud.exchange("a", "b", admin) == []        # its retransmission meets the connection's drop flow
    assert [(r["rule"], r["dport"]) for r in cloud.fw.denied] == [(cloud.fw_rules[0].id, 80)]

    assert handshake(cloud, 40002) == [1, 1, 1]
    split = b"GET / HTTP/1.1\r\nHost: shop.blocked.test\r\n\r\n"
    assert cloud.exchange("a", "b", request("a", "b", 40002, 80, 1, split[:10])) != []    # a head in pieces
    got = cloud.send(cloud.vms["a"], request("a", "b", 40002, 80, 11, split[10:]))
    assert got["b"] == []
    [reset] = [parse(f) for f in got["a"]]
    assert reset[TCP].flags & TCP_RST and reset[TCP].dport == 40002


def test_a_denied_connection_stays_denied_though_the_server_may_send_anything():
    """b with security groups (anything out, HTTP in) and a firewall group denying /admin: once
    the request decided, b's answers open no connection of their own that would let a's
    retransmissions in (the flows of both would say the same; only one could be kept)."""
    cloud = Firewalled({**EGRESS_ALL, "http": ("web", {"direction": "ingress", "protocol": "tcp",
                                                        "port_range_min": 80, "port_range_max": 80})},
                       groups={"a": ["web"], "b": ["web"]})
    rules = [record("firewall_rule", ip_version=4, enabled=True, **body) for body in WEB]
    policy = record("firewall_policy", firewall_rules=[r.id for r in rules])
    cloud.records += [*rules, policy, record("firewall_group", ports=[cloud.ports["b"].id], admin_state_up=True,
                                             ingress_firewall_policy_id=policy.id, egress_firewall_policy_id=None)]
    cloud.start()
    assert handshake(cloud, 40001) == [1, 1, 1]
    admin = request("a", "b", 40001, 80, 1, b"GET /admin HTTP/1.1\r\nHost: www.site.test\r\n\r\n")
    assert cloud.exchange("a", "b", admin) == []
    connections = len(cloud.fw.connections)
    assert cloud.exchange("b", "a", tcp("b", "a", 80, 40001, TCP_SYN | TCP_ACK)) == []    # dropped at b
    assert len(cloud.fw.connections) == connections
    assert cloud.exchange("a", "b", admin) == []


def test_a_web_rule_holds_up_only_connections_whose_fate_it_could_change():
    from kumoflow.apps.fwpolicy import UNSEEN, FwRule, Seen, first_match
    web_deny = FwRule("w", "deny", 4, 6, None, None, None, None, http_path="/admin")
    web_reject = FwRule("r", "reject", 4, 6, None, None, None, None, http_host="*.blocked.test")
    ssh_deny = FwRule("s", "deny", 4, 6, None, None, None, (22, 22))
    allow = FwRule("a", "allow", 4, 6, None, None, None, None)
    ssh = Packet(4, 6, ipaddress.ip_address(IP["a"]), ipaddress.ip_address(IP["b"]), 40000, 22)
    web = Packet(4, 6, ipaddress.ip_address(IP["a"]), ipaddress.ip_address(IP["b"]), 40000, 80)
    policy = [web_deny, web_reject, ssh_deny, allow]
    assert first_match(policy, ssh) is ssh_deny          # denied whatever its request: at once
    assert first_match(policy, web) is UNSEEN
    assert first_match(policy, web, Seen("www.site.test", "/admin/x")) is web_deny
    assert first_match(policy, web, Seen("shop.blocked.test", "/")) is web_reject
    assert first_match(policy, web, Seen("shop.blocked.test", None)) is web_reject    # TLS: the name only
    assert first_match(policy, web, Seen(None, None)) is allow
    assert first_match([FwRule("x", "allow", 4, 6, None, None, None, None, http_host="a.test"), allow], web) is allow
    assert first_match([web_deny], web) is None          # denied with or without: no rule allows it
