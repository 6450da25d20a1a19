"""The fabric app on a network in memory (memnet.py): real switch datapaths
joined to the controller core through bytes, hosts that send and receive
frames, a fake clock. Where frames go, with which headers, and what the
controller sent; LLDP frames are left out of what hosts received."""

import itertools

import pytest

from kumoflow import ofp
from kumoflow.apps.fabric import Fabric
from kumoflow.controller import pipeline
from kumoflow.controller.graph import Link
from kumoflow.packet import ARP, ICMP, LLDP, Ethernet, IPv4, parse
from kumoflow.packet.consts import ARP_REPLY, ARP_REQUEST, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST

from memnet import MemNet

BROADCAST = "ff:ff:ff:ff:ff:ff"
ZERO_MAC = "00:00:00:00:00:00"
CLASSIFY, FORWARD = pipeline.table_id("classify"), pipeline.table_id("forward")


# --- networks ----------------------------------------------------------------------------------

class Net:
    """A MemNet with the fabric, its hosts numbered (host i has 10.0.0.i)
    and the packet-ins the controller got counted."""

    def __init__(self, **fabric_options):
        self.fabric = Fabric(**fabric_options)
        self.mem = MemNet([self.fabric])
        self.sw = {}
        self.hosts = []
        self.packet_ins = []
        self._count_packet_ins(self.mem.core)

    def _count_packet_ins(self, core):
        original = core.packet_in

        def counting(dp, msg):
            if msg.data[12:14] != b"\x88\xcc":
                self.packet_ins.append((dp.id, msg.match.get("in_port"), msg.data))
            original(dp, msg)
        core.packet_in = counting

    def switch(self, dpid, ports=4):
        self.sw[dpid] = self.mem.switch(dpid, ports=ports)
        return self.sw[dpid]

    def link(self, a, a_port, b, b_port):
        self.mem.link(self.sw[a], a_port, self.sw[b], b_port)

    def host(self, dpid, port):
        n = len(self.hosts) + 1
        h = self.mem.host(f"h{n}", self.sw[dpid], port)
        h.ip = f"10.0.0.{n}"
        self.hosts.append(h)
        return h

    @property
    def core(self):
        return self.mem.core

    def start(self):
        self.mem.start()
        self.mem.advance(self.core.settle + 1.5)
        return self

    def run(self):
        return self.mem.run(limit=100_000)    # far more than any test needs: a storm fails fast

    def advance(self, seconds):
        self.mem.advance(seconds)

    def clear(self):
        for h in self.hosts:
            h.received.clear()
        self.packet_ins.clear()

    def restart(self, reconnect=None, **fabric_options):
        self.fabric = Fabric(**fabric_options)
        core = self.mem.restart_controller([self.fabric], reconnect)
        self._count_packet_ins(core)
        return core


def frames(host):
    """What a host received, LLDP left out."""
    return [f for f in host.received if f[12:14] != b"\x88\xcc"]


def ring(n, ports=4, dpids=None):
    """Switches 1..n (or `dpids`) in a ring (port 1 to the next, port 2 to the
    previous), a host on port 3 of each; port 4 is spare."""
    dpids = list(dpids or range(1, n + 1))
    net = Net()
    for d in dpids:
        net.switch(d, ports)
    for i, d in enumerate(dpids):
        net.link(d, 1, dpids[(i + 1) % n], 2)
    for d in dpids:
        net.host(d, 3)
    return net


def triangle():
    """s1, s2, s3: s1:1-s2:2, s2:1-s3:2, s3:1-s1:2; hosts h1, h2, h3 on port 3."""
    return ring(3)


CORE, AGG, EDGE = 1, 11, 21


def fat_tree(k=4):
    """A k-ary fat tree (k=4: 4 core, 8 aggregation, 8 edge switches, 16 hosts).
    Pod p has aggregation switches AGG + p*k/2 + i and edge switches
    EDGE + p*k/2 + j. Edge j: ports 1..k/2 up to the pod's aggregation
    switches, ports k/2+1..k to hosts. Aggregation i: ports 1..k/2 down to the
    edges, ports k/2+1..k up to core switches i*k/2 + m, whose port p+1 is
    pod p's."""
    half = k // 2
    net = Net()
    for c in range(half * half):
        net.switch(CORE + c, k)
    for p in range(k):
        for i in range(half):
            net.switch(AGG + p * half + i, k)
            net.switch(EDGE + p * half + i, k)
    for p in range(k):
        for i in range(half):
            agg = AGG + p * half + i
            for j in range(half):
                net.link(EDGE + p * half + j, i + 1, agg, j + 1)
            for m in range(half):
                net.link(agg, half + m + 1, CORE + i * half + m, p + 1)
    for p in range(k):
        for j in range(half):
            for port in range(half + 1, k + 1):
                net.host(EDGE + p * half + j, port)
    return net


# --- frames ------------------------------------------------------------------------------------

def arp_request(src, target_ip):
    return bytes(Ethernet(src=src.mac, dst=BROADCAST) / ARP(ARP_REQUEST, src.mac, src.ip, ZERO_MAC, target_ip))


def arp_reply(src, dst):
    return bytes(Ethernet(src=src.mac, dst=dst.mac) / ARP(ARP_REPLY, src.mac, src.ip, dst.mac, dst.ip))


def echo(src, dst, type=ICMP_ECHO_REQUEST, seq=1):
    return bytes(Ethernet(src=src.mac, dst=dst.mac) / IPv4(src=src.ip, dst=dst.ip, ttl=61)
                 / ICMP(type=type, id=0x4B46, seq=seq) / b"kumoflow fabric")


def send(net, host, frame):
    """`host` sends `frame`: {host name: frames received} for every host but the sender."""
    net.clear()
    host.send(frame)
    net.run()
    return {h.name: frames(h) for h in net.hosts if h is not host}


def only(got, name, frame):
    """`name` received `frame` exactly once, unchanged, and nobody else received anything."""
    assert got[name] == [frame], f"{name} got {len(got[name])} copies"
    others = {n: len(f) for n, f in got.items() if n != name and f}
    assert not others, f"also delivered to {others}"


def everyone_once(got, frame):
    assert {n: f for n, f in got.items() if f != [frame]} == {}


def learn(net):
    """Every host announces itself (a broadcast ARP): the controller knows them all."""
    for h in net.hosts:
        send(net, h, arp_request(h, "10.0.0.254"))
    assert len(net.core.hosts) == len(net.hosts)


def ports_in(group):
    return {a.port for b in group.buckets for a in b.actions if isinstance(a, ofp.Output)} | {
        b.watch_port for b in group.buckets if b.watch_port != ofp.OFPP.ANY}


# --- reachability --------------------------------------------------------------------------------

def test_ring_every_pair_resolves_and_pings_once_with_headers_unchanged():
    net = ring(5).start()
    assert len(net.core.topology.graph.links) == 5
    for a, b in itertools.combinations(net.hosts, 2):
        request = arp_request(a, b.ip)
        everyone_once(send(net, a, request), request)          # the broadcast: every other host, once
        reply = arp_reply(b, a)
        only(send(net, b, reply), a.name, reply)
        ping = echo(a, b)
        got = send(net, a, ping)
        only(got, b.name, ping)
        pkt = parse(got[b.name][0])
        assert (pkt[Ethernet].src, pkt[Ethernet].dst) == (a.mac, b.mac)
        assert (pkt[IPv4].src, pkt[IPv4].dst, pkt[IPv4].ttl) == (a.ip, b.ip, 61)   # no hop touched it
        assert (pkt[ICMP].type, pkt[ICMP].id, pkt[ICMP].seq) == (ICMP_ECHO_REQUEST, 0x4B46, 1)
        assert pkt[IPv4].checksum_ok and pkt[ICMP].checksum_ok and pkt.payload == b"kumoflow fabric"
        pong = echo(b, a, ICMP_ECHO_REPLY)
        only(send(net, b, pong), a.name, pong)
    assert len(net.core.hosts) == 5


def test_a_broadcast_reaches_every_host_once_and_costs_one_packet_in():
    net = ring(6).start()
    h1 = net.hosts[0]
    request = arp_request(h1, "10.0.0.4")
    everyone_once(send(net, h1, request), request)
    # h1 is new: its switch asks, once; the frame goes back into the switch through h1's new flows,
    # which copy a known host's ARP to the controller (addresses, last seen)
    assert [(d, p) for d, p, _ in net.packet_ins] == [(1, 3), (1, 3)]
    assert net.core.hosts.get(h1.mac).ips == {h1.ip}
    def packet_outs():
        return sum(isinstance(m, ofp.PacketOut) and m.data[12:14] != b"\x88\xcc" for m in net.sw[1].received)

    before = packet_outs()
    for _ in range(3):
        everyone_once(send(net, h1, request), request)               # known now: flows deliver it...
        assert [(d, p) for d, p, _ in net.packet_ins] == [(1, 3)]    # ...and copy its ARP (addresses, last seen)
    assert packet_outs() == before                                   # the controller sends nothing on
    # an unknown destination is flooded the same way, once to each host
    stray = bytes(Ethernet(src=h1.mac, dst="02:00:00:00:99:99") / IPv4(src=h1.ip, dst="10.0.0.99") / ICMP())
    everyone_once(send(net, h1, stray), stray)
    assert net.packet_ins == []


def test_first_frames_of_new_hosts_are_not_lost():
    """Each new host's first frame reaches the controller, which sends it back
    into the switch once the host's flows are there."""
    net = ring(4).start()
    h1, h2, h3, h4 = net.hosts
    request = arp_request(h1, h3.ip)
    everyone_once(send(net, h1, request), request)
    reply = arp_reply(h3, h1)                     # h3 is unknown: its reply goes by the controller
    only(send(net, h3, reply), "h1", reply)
    assert [(d, p) for d, p, _ in net.packet_ins] == [(3, 3), (3, 3)]   # the frame, then its ARP copy
    net.packet_ins.clear()
    only(send(net, h3, reply), "h1", reply)       # then by flows (the controller gets a copy of ARP only)
    ping = echo(h3, h1)
    only(send(net, h3, ping), "h1", ping)
    assert net.packet_ins == []


def test_switches_with_large_datapath_ids():
    """Open vSwitch derives 48-bit dpids from a MAC; others use all 64 bits.
    Group ids then come from a hash; cookies keep the low 48 bits."""
    dpids = [0x0000_5254_00AB_CD01, 0x0000_5254_00AB_CD02, 0xFFFF_0000_0000_0001, 0x8000_0000_0000_0000]
    net = ring(4, dpids=dpids).start()
    learn(net)
    fabric = net.core.app("fabric")
    gids = [fabric.group_id(d) for d in dpids]
    assert len(set(gids)) == 4 and all(g in fabric.ids for g in gids)
    for a, b in itertools.permutations(net.hosts, 2):
        ping = echo(a, b)
        only(send(net, a, ping), b.name, ping)
    where = {h.mac: (h.dpid, h.port) for h in net.core.hosts}
    core = net.restart()
    net.advance(core.settle + 1.5)
    assert {h.mac: (h.dpid, h.port) for h in core.hosts} == where
    assert [len(s.mods()) for s in net.sw.values()] == [0, 0, 0, 0]


def test_parallel_links_and_a_self_loop():
    """s1 and s2 joined twice, s3 joined to both and cabled to itself."""
    net = Net()
    for d, ports in ((1, 5), (2, 5), (3, 6)):
        net.switch(d, ports)
    net.link(1, 1, 2, 1)
    net.link(1, 2, 2, 2)
    net.link(2, 3, 3, 1)
    net.link(3, 2, 1, 3)
    net.link(3, 3, 3, 4)
    h1, h2, h3 = net.host(1, 4), net.host(2, 4), net.host(3, 5)
    net.start()
    assert len(net.core.topology.graph.links) == 5
    learn(net)
    for h in net.hosts:
        request = arp_request(h, "10.0.0.99")
        everyone_once(send(net, h, request), request)
    for a, b in itertools.permutations(net.hosts, 2):
        ping = echo(a, b)
        only(send(net, a, ping), b.name, ping)
    fabric = net.core.app("fabric")
    g12 = net.sw[1].groups()[fabric.group_id(2)]
    assert g12.type == ofp.OFPGT.SELECT and sorted(b.watch_port for b in g12.buckets) == [1, 2]
    assert not [g for g in net.sw[3].groups().values() if {3, 4} & ports_in(g)]    # the loop carries nothing
    held = cut(net, 1, 1, 2, 1)
    ping = echo(h1, h2)
    only(send(net, h1, ping), "h2", ping)       # the other parallel link, at once
    deliver_held(net, held)
    net.advance(0.5)
    g12 = net.sw[1].groups()[fabric.group_id(2)]
    assert g12.type == ofp.OFPGT.FF and [b.watch_port for b in g12.buckets] == [2, 3]   # then s3 as the alternate
    only(send(net, h1, ping), "h2", ping)


def test_a_switch_that_joins_a_running_fabric():
    """s4 closes a ring of four after the others have settled."""
    net = ring(4)
    mem = net.mem
    mem.core.start()
    for d in (1, 2, 3):
        net.sw[d].connect()
    mem.run()
    net.advance(net.core.settle + 1.5)
    assert len(net.core.topology.graph.links) == 2
    h1, h2, h3, h4 = net.hosts
    for h in (h1, h2, h3):
        send(net, h, arp_request(h, "10.0.0.254"))
    ping = echo(h1, h3)
    only(send(net, h1, ping), "h3", ping)
    net.sw[4].connect()
    mem.run()
    net.advance(net.core.settle + 1.5)
    assert len(net.core.topology.graph.links) == 4
    learn(net)
    for h in net.hosts:
        request = arp_request(h, "10.0.0.99")
        everyone_once(send(net, h, request), request)
    for a, b in itertools.permutations(net.hosts, 2):
        ping = echo(a, b)
        only(send(net, a, ping), b.name, ping)
    assert {h.mac: (h.dpid, h.port) for h in net.core.hosts} == {h.mac: (h.switch.dpid, h.port_no) for h in net.hosts}


def fat_tree_started():
    net = fat_tree().start()
    assert len(net.core.topology.graph.links) == 32
    learn(net)
    return net


@pytest.fixture(scope="module")
def fat():
    return fat_tree_started()


def test_fat_tree_every_pair_once(fat):
    net = fat
    for a, b in itertools.permutations(net.hosts, 2):
        ping = echo(a, b)
        only(send(net, a, ping), b.name, ping)
    assert net.packet_ins == []


def test_fat_tree_broadcast_reaches_every_host_once(fat):
    net = fat
    for h in (net.hosts[0], net.hosts[7], net.hosts[15]):
        request = arp_request(h, "10.0.0.200")
        everyone_once(send(net, h, request), request)


def test_fat_tree_edges_spread_traffic_to_other_pods_over_both_uplinks(fat):
    net = fat
    fabric = net.core.app("fabric")
    half = 2
    for p in range(4):
        for j in range(half):
            edge = net.sw[EDGE + p * half + j]
            for q in range(4):
                for jj in range(half):
                    dest = EDGE + q * half + jj
                    if dest == edge.dpid:
                        continue
                    g = edge.groups()[fabric.group_id(dest)]
                    assert g.type == ofp.OFPGT.SELECT
                    assert sorted((b.watch_port, [a.port for a in b.actions]) for b in g.buckets) == [
                        (1, [1]), (2, [2])]
    # and both uplinks of an edge switch carry some of its flows to other pods
    edge = net.sw[EDGE]
    for port in edge.ports.values():
        port.take()
    local = [h for h in net.hosts if h.switch is edge]
    remote = [h for h in net.hosts if h.switch.dpid >= EDGE + half]
    for a in local:
        for b in remote:
            only(send(net, a, echo(a, b)), b.name, echo(a, b))
    carried = {n: len([f for f in edge.ports[n].take() if f[12:14] != b"\x88\xcc"]) for n in (1, 2)}
    assert sum(carried.values()) == len(local) * len(remote) and min(carried.values()) > 0


# --- link failures -----------------------------------------------------------------------------------

def cut(net, a, a_port, b, b_port):
    """Carrier lost on both ends of a link. The PORT_STATUS messages are held
    back: returns them, for `deliver_held`."""
    net.sw[a].ports[a_port].set_link(False)
    net.sw[b].ports[b_port].set_link(False)
    held = list(net.mem.queue)
    net.mem.queue.clear()
    assert held, "no PORT_STATUS from the switches"
    return held


def deliver_held(net, held):
    net.mem.queue.extend(held)
    net.run()


def test_fast_failover_moves_traffic_at_once_then_the_controller_recompiles():
    net = triangle().start()
    learn(net)
    h1, h2, h3 = net.hosts
    s1, s2, s3 = net.sw[1], net.sw[2], net.sw[3]
    fabric = net.core.app("fabric")
    g13 = s1.groups()[fabric.group_id(3)]
    assert g13.type == ofp.OFPGT.FF and [b.watch_port for b in g13.buckets] == [2, 1]   # direct, then via s2
    for s in net.sw.values():
        for p in s.ports.values():
            p.take()
    ping = echo(h1, h3)
    only(send(net, h1, ping), "h3", ping)
    assert ping in s1.ports[2].take() and ping not in s1.ports[1].take()

    held = cut(net, 1, 2, 3, 1)                 # s1:2 - s3:1 goes dark
    only(send(net, h1, ping), "h3", ping)       # before the controller hears of it
    assert ping in s1.ports[1].take() and ping in s2.ports[1].take()        # by s2
    assert s1.groups()[fabric.group_id(3)] == g13                            # the switch did it alone
    back = echo(h3, h1, ICMP_ECHO_REPLY)
    only(send(net, h3, back), "h1", back)

    deliver_held(net, held)
    net.advance(0.5)
    assert Link.between(1, 2, 3, 1) not in net.core.topology.graph.links
    for dpid, dead in ((1, 2), (3, 1)):
        for gid, g in net.sw[dpid].groups().items():
            assert dead not in ports_in(g), f"group {gid:#x} on s{dpid} still uses port {dead}"
    only(send(net, h1, ping), "h3", ping)
    only(send(net, h3, back), "h1", back)
    assert net.packet_ins == []


def test_ring_without_alternate_drops_until_the_controller_reroutes_the_other_way():
    net = ring(4).start()
    learn(net)
    h1, h2, h3, h4 = net.hosts
    s1 = net.sw[1]
    fabric = net.core.app("fabric")
    g12 = s1.groups()[fabric.group_id(2)]
    assert g12.type == ofp.OFPGT.FF and [b.watch_port for b in g12.buckets] == [1]   # no loop-free alternate
    g13 = s1.groups()[fabric.group_id(3)]
    assert g13.type == ofp.OFPGT.SELECT and sorted(b.watch_port for b in g13.buckets) == [1, 2]

    held = cut(net, 1, 1, 2, 2)
    ping = echo(h1, h2)
    assert send(net, h1, ping)["h2"] == []        # nowhere to go until the controller acts
    far = echo(h1, h3)
    only(send(net, h1, far), "h3", far)           # the select group skips its dead bucket at once

    deliver_held(net, held)
    net.advance(0.5)
    for s in net.sw.values():
        for p in s.ports.values():
            p.take()
    only(send(net, h1, ping), "h2", ping)
    for dpid in (1, 4, 3):                        # the other way round: s1, s4, s3, s2
        assert ping in net.sw[dpid].ports[2].take()
    pong = echo(h2, h1, ICMP_ECHO_REPLY)
    only(send(net, h2, pong), "h1", pong)
    assert net.sw[1].groups()[fabric.group_id(2)].buckets[0].watch_port == 2


def test_a_link_that_comes_back_is_found_again_and_used():
    net = ring(4).start()
    learn(net)
    s1 = net.sw[1]
    fabric = net.core.app("fabric")
    before = s1.groups()
    deliver_held(net, cut(net, 1, 1, 2, 2))
    net.advance(0.5)
    assert s1.groups()[fabric.group_id(3)].type == ofp.OFPGT.FF           # one way left
    net.mem.set_link(s1, 1, True)
    net.mem.set_link(net.sw[2], 2, True)
    net.advance(0.5)
    assert Link.between(1, 1, 2, 2) in net.core.topology.graph.links
    assert s1.groups() == before                  # select again: the group was modified, type and all
    assert {h.mac: (h.dpid, h.port) for h in net.core.hosts} == {h.mac: (h.switch.dpid, h.port_no) for h in net.hosts}
    for a, b in itertools.permutations(net.hosts, 2):
        ping = echo(a, b)
        only(send(net, a, ping), b.name, ping)
    request = arp_request(net.hosts[0], "10.0.0.9")
    everyone_once(send(net, net.hosts[0], request), request)


def test_fat_tree_select_groups_skip_a_dead_uplink_at_once():
    net = fat_tree_started()
    edge = net.sw[EDGE]                       # pod 0, edge 0: uplink 1 to AGG, 2 to AGG + 1
    local = [h for h in net.hosts if h.switch is edge]
    remote = [h for h in net.hosts if h.switch.dpid >= EDGE + 2]
    held = cut(net, EDGE, 1, AGG, 1)
    for a in local:            # upwards, the edge's select groups use the live uplink alone
        for b in remote:
            only(send(net, a, echo(a, b)), b.name, echo(a, b))
    # (downwards, AGG has no loop-free alternate to EDGE: that waits for the controller)
    deliver_held(net, held)
    net.advance(0.5)
    for gid, g in edge.groups().items():
        assert 1 not in ports_in(g), f"group {gid:#x} still uses the dead uplink"
    for a, b in itertools.permutations(net.hosts, 2):
        ping = echo(a, b)
        only(send(net, a, ping), b.name, ping)


def test_a_link_that_dies_silently_times_out_and_traffic_reroutes():
    net = ring(4).start()
    learn(net)
    h1, h2 = net.hosts[:2]
    fabric = net.core.app("fabric")
    dead = Link.between(1, 1, 2, 2)
    net.mem.unlink(net.sw[1], 1, net.sw[2], 2)       # no carrier change: no PORT_STATUS
    net.run()
    ping = echo(h1, h2)
    assert send(net, h1, ping)["h2"] == []            # lost on the wire
    net.advance(fabric.link_timeout - 2 * fabric.lldp_interval)
    assert dead in net.core.topology.graph.links      # not yet: LLDP may be late
    net.advance(2 * fabric.lldp_interval + 0.5)
    assert dead not in net.core.topology.graph.links
    only(send(net, h1, ping), "h2", ping)
    pong = echo(h2, h1, ICMP_ECHO_REPLY)
    only(send(net, h2, pong), "h1", pong)
    request = arp_request(h1, h2.ip)
    everyone_once(send(net, h1, request), request)     # the flood tree no longer uses the dead link


def test_a_switch_that_loses_its_channel_is_neither_a_loop_nor_a_host_port():
    """s2's channel drops; s2 keeps forwarding with the flows it holds. Its
    neighbours' ports towards it must not become host ports: a broadcast
    must not loop through s2, and no host is learned behind them."""
    net = ring(5).start()
    learn(net)
    h1, h2, h3, h4, h5 = net.hosts
    net.sw[2].disconnect()
    net.run()
    request = arp_request(h1, h3.ip)
    got = send(net, h1, request)
    assert [got[h.name] for h in (h3, h4, h5)] == [[request]] * 3
    assert got["h2"] in ([], [request])                      # behind a switch nobody controls
    assert {h.mac: (h.dpid, h.port) for h in net.core.hosts} == {
        h.mac: (h.switch.dpid, h.port_no) for h in (h1, h3, h4, h5)}
    for a, b in ((h1, h3), (h3, h1), (h5, h3)):
        ping = echo(a, b)
        got = send(net, a, ping)
        assert got[b.name] == [ping] and not [n for n, f in got.items() if f and n not in (b.name, "h2")]
    # s2 comes back: everything as before
    net.sw[2].connect()
    net.run()
    net.advance(net.core.settle + 1)
    for a, b in itertools.permutations(net.hosts, 2):
        ping = echo(a, b)
        only(send(net, a, ping), b.name, ping)


def test_a_link_that_dies_in_one_direction_times_out_and_traffic_reroutes():
    net = ring(4).start()
    learn(net)
    h1, h2 = net.hosts[:2]
    fabric = net.core.app("fabric")
    net.sw[2].ports[2].deliver = None              # s2 -> s1 lost; s1 -> s2 still delivered
    net.advance(fabric.link_timeout + 2 * fabric.lldp_interval)
    pong = echo(h2, h1, ICMP_ECHO_REPLY)
    only(send(net, h2, pong), "h1", pong)
    assert Link.between(1, 1, 2, 2) not in net.core.topology.graph.links


# --- hosts ---------------------------------------------------------------------------------------

def test_a_host_that_moves_is_found_at_its_new_place_and_its_old_flows_go():
    net = ring(4).start()
    learn(net)
    h1, h2, h3, h4 = net.hosts
    s1, s3 = net.sw[1], net.sw[3]
    fabric = net.core.app("fabric")
    net.mem.attach(h1, s3, 4)
    hello = echo(h1, h2)
    only(send(net, h1, hello), "h2", hello)
    host = net.core.hosts.get(h1.mac)
    assert (host.dpid, host.port) == (3, 4)
    for h in (h2, h4):
        ping = echo(h, h1)
        only(send(net, h, ping), "h1", ping)
    assert net.packet_ins == []
    # s1 neither admits h1 on its old port nor delivers there
    assert not [f for f in s1.flows(CLASSIFY) if f.match.get("eth_src") == h1.mac]
    [to_h1] = [f for f in s1.flows(FORWARD) if f.match.get("eth_dst") == h1.mac]
    assert to_h1.instructions == [ofp.ApplyActions([ofp.Group(fabric.group_id(3))])]
    assert {f.match["in_port"] for f in net.sw[3].flows(CLASSIFY) if f.match.get("eth_src") == h1.mac} == {4}


def test_a_host_whose_port_goes_down_is_forgotten_everywhere_and_found_again():
    net = ring(4).start()
    learn(net)
    h1, h2 = net.hosts[:2]
    net.mem.set_link(net.sw[1], 3, False)
    assert net.core.hosts.get(h1.mac) is None
    for s in net.sw.values():
        assert not [f for f in s.flows() if h1.mac in (f.match.get("eth_src"), f.match.get("eth_dst"))]
    net.mem.set_link(net.sw[1], 3, True)
    hello = echo(h1, h2)
    only(send(net, h1, hello), "h2", hello)
    assert (net.core.hosts.get(h1.mac).dpid, net.core.hosts.get(h1.mac).port) == (1, 3)
    ping = echo(h2, h1)
    only(send(net, h2, ping), "h1", ping)
    assert net.packet_ins == []


def test_a_port_recabled_from_a_switch_to_a_host_becomes_a_host_port():
    net = ring(4).start()
    learn(net)
    s1, s2 = net.sw[1], net.sw[2]
    net.mem.set_link(s1, 1, False)          # the cable to s2 is pulled...
    net.mem.set_link(s2, 2, False)
    s2.ports[2].deliver = None
    h5 = net.mem.host("h5", s1, 1)          # ...and a host plugged in instead
    h5.ip = "10.0.0.5"
    net.hosts.append(h5)
    net.mem.set_link(s1, 1, True)
    net.advance(0.5)
    request = arp_request(h5, net.hosts[2].ip)
    everyone_once(send(net, h5, request), request)
    assert (net.core.hosts.get(h5.mac).dpid, net.core.hosts.get(h5.mac).port) == (1, 1)
    for a, b in itertools.permutations(net.hosts, 2):
        ping = echo(a, b)
        only(send(net, a, ping), b.name, ping)


def test_a_restarted_controller_recovers_hosts_from_the_switches_and_resends_nothing():
    net = ring(4).start()
    learn(net)
    where = {h.mac: (h.switch.dpid, h.port_no) for h in net.hosts}
    core = net.restart()
    assert {h.mac: (h.dpid, h.port) for h in core.hosts} == where     # before any frame was seen
    net.advance(core.settle + 1.5)
    assert [len(s.mods()) for s in net.sw.values()] == [0, 0, 0, 0]
    for a, b in itertools.permutations(net.hosts, 2):
        ping = echo(a, b)
        only(send(net, a, ping), b.name, ping)
    assert net.packet_ins == []
    assert [len(s.mods()) for s in net.sw.values()] == [0, 0, 0, 0]


def test_a_restarted_controller_that_one_switch_does_not_reach_neither_loops_nor_learns_through_it():
    """After a restart, the ports that faced a switch in the previous run are
    known from their flows: the switch that stays away (still forwarding
    with what it holds) is no host, and no way round the flood tree."""
    net = ring(5).start()
    learn(net)
    h1, h2, h3, h4, h5 = net.hosts
    core = net.restart(reconnect=[s for d, s in net.sw.items() if d != 2])
    net.advance(core.settle + 1.5)
    assert sorted(core.datapaths) == [1, 3, 4, 5]
    request = arp_request(h1, h3.ip)
    got = send(net, h1, request)
    assert [got[h.name] for h in (h3, h4, h5)] == [[request]] * 3
    assert {h.mac: (h.dpid, h.port) for h in core.hosts} == {
        h.mac: (h.switch.dpid, h.port_no) for h in (h1, h3, h4, h5)}


# --- what the fabric must not believe ----------------------------------------------------------------

def state(net):
    return ({s.dpid: sorted((f.table_id, f.priority, f.match.pack(), f.cookie) for f in s.flows())
             for s in net.sw.values()},
            {s.dpid: s.groups() for s in net.sw.values()},
            set(net.core.topology.graph.links),
            {h.mac: (h.dpid, h.port) for h in net.core.hosts})


def test_an_unknown_source_on_a_fabric_port_is_not_learned():
    net = ring(4).start()
    learn(net)
    before = state(net)
    stranger = "02:00:00:00:77:77"
    frame = bytes(Ethernet(src=stranger, dst=BROADCAST) / ARP(ARP_REQUEST, stranger, "10.0.0.77", ZERO_MAC,
                                                             "10.0.0.1"))
    net.clear()
    net.sw[2].dp.receive(2, frame)       # arrives from s1 over the fabric
    net.run()
    assert net.core.hosts.get(stranger) is None and net.packet_ins == []
    assert state(net) == before
    # the same frame from a host port is learned
    net.sw[2].dp.receive(4, frame)
    net.run()
    assert (net.core.hosts.get(stranger).dpid, net.core.hosts.get(stranger).port) == (2, 4)


def test_a_frame_from_a_multicast_source_is_ignored():
    net = ring(4).start()
    learn(net)
    h1, h2 = net.hosts[:2]
    before = state(net)
    for src in ("01:00:5e:00:00:01", BROADCAST, "33:33:00:00:00:01"):
        bogus = bytes(Ethernet(src=src, dst=h2.mac) / IPv4(src=h1.ip, dst=h2.ip) / ICMP())
        got = send(net, h1, bogus)
        assert all(f == [] for f in got.values())
        bogus = bytes(Ethernet(src=src, dst=BROADCAST) / IPv4(src=h1.ip, dst=h2.ip) / ICMP())
        got = send(net, h1, bogus)
        assert all(f == [] for f in got.values())
    assert state(net) == before


def lldp(chassis, port, src="02:00:00:00:66:66"):
    return bytes(Ethernet(dst="01:80:c2:00:00:0e", src=src) / LLDP(chassis_id=chassis, port_id=port, ttl=4))


@pytest.mark.parametrize("frame", [
    lldp(b"somebody-else", b"1"),
    lldp(b"dpid:zz", b"1"),
    lldp(b"dpid:", b"1"),
    lldp(b"dpid:" + b"f" * 200, b"1"),
    lldp(b"dpid:0000000000000099", b"1"),            # no such switch
    lldp(b"dpid:0000000000000002", b"one"),
    lldp(b"dpid:0000000000000001", b"3"),            # itself, on the port it came in by
    lldp(b"dpid:0000000000000002", b"9" * 400),
    lldp(b"dpid:0000000000000002", b"99"),           # a port s2 does not have
    bytes(Ethernet(dst="01:80:c2:00:00:0e", src="02:00:00:00:66:66", type=0x88CC)) + b"\x02\x07\x07dpid",  # cut short
    bytes(Ethernet(dst="01:80:c2:00:00:0e", src="02:00:00:00:66:66", type=0x88CC)),
], ids=["foreign", "not-hex", "empty-id", "huge-id", "unknown-switch", "bad-port", "itself", "huge-port",
        "no-such-port", "truncated", "empty"])
def test_a_hostile_lldp_from_a_host_changes_nothing(frame):
    net = ring(4).start()
    learn(net)
    before = state(net)
    send(net, net.hosts[0], frame)
    net.advance(0.5)
    assert state(net) == before


def test_a_forged_lldp_naming_a_real_switch_port_changes_nothing():
    net = ring(4).start()
    learn(net)
    before = state(net)
    send(net, net.hosts[0], lldp(b"dpid:0000000000000003", b"1"))     # "I am s3 port 1"
    net.advance(0.5)
    assert state(net) == before


def test_a_known_hosts_arp_keeps_its_addresses_and_last_seen_current():
    net = ring(4).start()
    h1 = net.hosts[0]
    send(net, h1, arp_request(h1, "10.0.0.3"))
    first = net.core.hosts.get(h1.mac).last_seen
    net.advance(5)
    second_address = bytes(Ethernet(src=h1.mac) / ARP(op=ARP_REQUEST, src_mac=h1.mac, src_ip="10.0.0.201",
                                                      dst_ip="10.0.0.3"))
    send(net, h1, second_address)
    host = net.core.hosts.get(h1.mac)
    assert host.ips == {h1.ip, "10.0.0.201"} and host.last_seen == pytest.approx(first + 5)


def test_a_link_up_one_way_only_never_has_hosts_learned_behind_it():
    """s2 -> s1 is dead from the start: the link never comes up, but s2 knows a
    switch is behind its port (signed LLDP came in there), so the frames s1
    floods into it teach it nothing, and every pair still talks the long way round."""
    net = ring(4)
    net.sw[2].ports[2].deliver = None                 # what s2 sends to s1 is lost
    net.start()
    learn(net)
    assert Link.between(1, 1, 2, 2) not in net.core.topology.graph.links
    assert net.core.hosts.at(2, 2) == [] and net.core.hosts.at(1, 1) == []
    assert {(h.dpid, h.port) for h in net.core.hosts} == {(d, 3) for d in (1, 2, 3, 4)}
    for a, b in itertools.permutations(net.hosts, 2):
        ping = echo(a, b)
        only(send(net, a, ping), b.name, ping)
