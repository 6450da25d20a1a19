"""`tenants`: tenant networks carried over VXLAN and NVGRE tunnels between
hypervisors, with port security, an ARP proxy and DHCP answered by the
controller.

Every bound port of a ``vxlan`` or ``nvgre`` network (overlay.py says how
the controller knows where ports and tunnel endpoints are) is compiled on
the switches that need it; there is no flood-and-learn over the underlay:
the controller knows every port's MAC and where it is plugged.

``("port", id)``     on its own switch: classify admits only the port's MAC
                     with its fixed IPs, allowed address pairs, DHCP from
                     0.0.0.0, ARP probes and IPv6 link-local and DAD (port
                     security; all of it when ``port_security_enabled`` is
                     false), writes the network into metadata and goes on
                     to ``network``; anything else from the port is
                     dropped. forward: the port's MAC to the port. On every
                     other switch with a port on the network: the port's MAC
                     into the tunnel to the port's hypervisor, tunnel id =
                     the network's segment. On all of them: ARP requests for
                     the port's IPv4 addresses to the controller, which
                     answers from the port table (no broadcast crosses the
                     underlay for a known address).
``("network", id)``  on each switch with a port on it: what comes out of a
                     tunnel port of the network's kind with its segment is
                     classified into the network, marked remote; broadcast,
                     multicast and unknown unicast go to a group holding the
                     network's local ports and one tunnel per other endpoint
                     with a port on it (head-end replication), or, when
                     marked remote, to the local ports only (split horizon:
                     the sender's hypervisor reached every endpoint itself);
                     DHCP requests to the controller.
``("tunnels", dpid)`` on the switch: frames from its tunnel ports that no
                     network claims are dropped (not learned as hosts by the
                     fabric).

A port moved to another switch (its binding changed, or its VM's link
moved) is recompiled everywhere: its old switch forgets it, the others
point their tunnels at the new one.
"""

from __future__ import annotations

import ipaddress
import re
import zlib
from typing import Any, Hashable, Iterable

from kumoflow import ofp
from kumoflow.apps import dhcp, gateway
from kumoflow.apps import options as check
from kumoflow.apps.overlay import Network, Overlay, Port, Segment, build
from kumoflow.apps.routing import ROUTER_PORTS
from kumoflow.controller import Flow, Group, ModelApp, pipeline
from kumoflow.packet import ARP, UDP, Ethernet, IPv6, NDNeighborSolicit, PacketError, parse
from kumoflow.packet.addr import link_local
from kumoflow.packet.consts import ARP_REQUEST

NETWORK, REMOTE = pipeline.METADATA["network"], pipeline.METADATA["remote"]
KIND_PORT, KIND_NETWORK, KIND_TUNNELS, KIND_SEGMENT = 1, 2, 3, 4
#: priorities: above the fabric's (LLDP 1000 aside: LLDP from a VM is refused by its signature)
ADMIT_PRIORITY, PORT_DROP_PRIORITY = 300, 250
UNICAST_PRIORITY, REMOTE_FLOOD_PRIORITY, FLOOD_PRIORITY = 300, 210, 200
PROXY_PRIORITY = 100
#: an L2 gateway's segment in table network: learned sources go on, others are copied to the controller too
#: (above the ARP proxy: the physical side's ARP is flooded, and answered by the VM)
LEARN_PRIORITY, LEARNED_PRIORITY = 105, 106
#: sources learned behind one segment, at most
MAX_BEHIND = 4096
IPV4_TYPE, ARP_TYPE, IPV6_TYPE = 0x0800, 0x0806, 0x86DD
ICMPV6, UDP_PROTO = 58, 17
#: IPv6 messages a port may send from the unspecified address: DAD's neighbour solicitation,
#: and MLD reports (v1 and v2)
UNSPECIFIED_ICMPV6 = (135, 131, 143)

#: the DHCP server's MAC (locally administered), and what a MAC looks like
DHCP_MAC = "fa:16:3f:00:d4:c9"
MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")

_TO_CONTROLLER = [ofp.ApplyActions([ofp.Output(ofp.OFPP.CONTROLLER, ofp.OFPCML.NO_BUFFER)])]


class TenantsApp(ModelApp):
    name = "tenants"
    tables = ("network",)
    requires = ("fabric",)
    model_kinds = frozenset(("network", "port", "subnet", "l2_gateway", "l2_gateway_connection"))

    def __init__(self, dhcp_lease: int = dhcp.DEFAULT_LEASE_TIME, dhcp_mac: str = DHCP_MAC, **options: Any) -> None:
        super().__init__(**options)
        self.dhcp_lease = check.integer("dhcp_lease", dhcp_lease, 60, 2**31 - 1)
        self.dhcp_mac = str(dhcp_mac).lower()
        if not MAC.fullmatch(self.dhcp_mac) or int(self.dhcp_mac[:2], 16) & 1:
            raise ValueError(f"dhcp_mac {dhcp_mac!r}: must be a unicast MAC address xx:xx:xx:xx:xx:xx")
        self.overlay = Overlay()
        self.answered = {"arp": 0, "nd": 0, "dhcp": 0}
        #: segment key -> the MACs learned behind it (L2 gateways), and the segments whose MACs changed
        self._behind: dict[tuple[int, int, int], set[str]] = {}
        self._behind_changed: set[tuple[int, int, int]] = set()
        self.dropped_learning = 0
        self._problems: set[str] = set()
        #: (network id, address) -> MAC, for the ARP and neighbour discovery proxy
        self._addresses: dict[tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address], str] = {}
        #: network id -> the DHCP server's addresses on it (answered for ARP), sorted
        self._servers: dict[str, list[ipaddress.IPv4Address]] = {}

    # --- the model -----------------------------------------------------------------

    def rebuild(self) -> None:
        """The overlay from the desired state and the switches up; mark what changed."""
        state = self.core.state
        old = self.overlay
        new = build(state.all("network"), state.all("port"), self.core.datapaths, state.all("l2_gateway"),
                    state.all("l2_gateway_connection"), self._behind)
        self.overlay = new
        old_servers = {k: m for k, m in self._addresses.items() if m == self.dhcp_mac}
        servers = self._dhcp_servers(new)
        self._servers = {}
        for network_id, ip in sorted(servers):
            self._servers.setdefault(network_id, []).append(ip)
        self._addresses = dict(servers)
        self._addresses.update({(p.network, ip): p.mac for p in new.ports.values()
                                if p.owner not in ROUTER_PORTS for ip in _answered(p)})
        everything = old.endpoints != new.endpoints or old.tunnels != new.tunnels
        networks = {n for n in set(old.networks) | set(new.networks)
                    if everything or old.networks.get(n) != new.networks.get(n)
                    or old.members.get(n) != new.members.get(n)}
        for n in set(old.routed) | set(new.routed):      # a router joined or left: the others' ports too
            if old.routed.get(n) != new.routed.get(n):
                networks |= {n} | old.routed.get(n, set()) | new.routed.get(n, set())
        networks |= {r for n in networks for r in new.routed.get(n, ())}
        if servers != old_servers:     # a DHCP server address came or went
            networks |= {n for n, _ in servers.keys() ^ old_servers.keys()}
        for network_id in networks:
            self.changed(("network", network_id))
        for port_id in set(old.ports) | set(new.ports):
            before, after = old.ports.get(port_id), new.ports.get(port_id)
            if before != after or (after or before).network in networks:
                self.changed(("port", port_id))
        if everything:
            for dpid in set(old.tunnels) | set(new.tunnels):
                self.changed(("tunnels", dpid), dpid)
        for key in set(old.segments) | set(new.segments):
            before, after = old.segments.get(key), new.segments.get(key)
            if before != after or key in self._behind_changed:
                self.changed(("segment", key), key[0])
        self._behind_changed = set()
        for dpid in {d for d, _ in old.claimed() ^ new.claimed()}:     # the fabric floods elsewhere now
            self.fabric.changed(("switch", dpid), dpid)
        # told once each, and only about switches past their settle time (the first switch up
        # of a mesh has no peer to tell its address by)
        problems = {text for dpid, text in new.problems if getattr(self.core.datapaths.get(dpid), "settled", False)}
        for problem in sorted(problems - self._problems):
            self.log.warning("%s", problem)
        self._problems = problems

    def _dhcp_servers(self, overlay: Overlay) -> dict[tuple[str, ipaddress.IPv4Address], str]:
        """The DHCP server's own address on each tenant subnet with DHCP and no router
        on its gateway address: the gateway address, at the server's MAC (a renewing
        client sends to its server identifier, the gateway address, by unicast)."""
        routed = {(r.body.get("network_id"), _v4(ip["ip_address"])) for r in self.core.state.all("port")
                   if r.body.get("device_owner") in ROUTER_PORTS for ip in r.body.get("fixed_ips") or ()
                   if isinstance(ip, dict) and "ip_address" in ip}
        out = {}
        for subnet in self.core.state.all("subnet"):
            body = subnet.body
            key = (body.get("network_id"), _v4(body.get("gateway_ip")))
            if key[0] in overlay.networks and key[1] is not None and body.get("enable_dhcp", True) \
                    and key not in routed:
                out[key] = self.dhcp_mac
        return out

    @property
    def fabric(self):
        return self.peers["fabric"]

    def claims_port(self, dpid: int, port_no: int) -> bool:
        return (dpid, port_no) in self.overlay.claimed()





    # --- compiling -------------------------------------------------------------------

    def owners(self) -> Iterable[Hashable]:
        for port_id in self.overlay.ports:
            yield ("port", port_id)
        for network_id in self.overlay.networks:
            yield ("network", network_id)
        for dpid in self.overlay.tunnels:
            yield ("tunnels", dpid)
        for key in self.overlay.segments:
            yield ("segment", key)

    def compile(self, key: Hashable, dp) -> list:
        kind, subject = key
        if kind == "port":
            port = self.overlay.ports.get(subject)
            return self._compile_port(port, dp) if port is not None else []
        if kind == "network":
            return self._compile_network(subject, dp) if subject in self.overlay.networks else []
        if kind == "segment":
            segment = self.overlay.segments.get(subject)
            return self._compile_segment(segment) if segment is not None and segment.place[0] == dp.id else []
        if kind == "tunnels" and subject == dp.id:
            cookie = self.cookie(KIND_TUNNELS << 48)
            return [Flow(self.table("classify"), PORT_DROP_PRIORITY, ofp.Match(in_port=port_no), [], cookie)
                    for port_no in sorted(self.overlay.tunnels.get(dp.id, {}).values())]
        return []

    def _compile_port(self, port: Port, dp) -> list:
        overlay = self.overlay
        if dp.id not in overlay.senders_to(port.network):
            return []
        net = overlay.networks[port.network]
        cookie = self.cookie(KIND_PORT << 48 | zlib.crc32(port.id.encode()))
        forward, network_table = self.table("forward"), self.table("network")
        in_net = (NETWORK.value(net.number), NETWORK.mask)
        macs = sorted({port.mac, *(mac for mac, _ in port.pairs)})
        flows = [Flow(network_table, PROXY_PRIORITY, _asking_for(in_net, ip), _TO_CONTROLLER, cookie)
                 for ip in (_answered(port) if port.owner not in ROUTER_PORTS else ())]
        if _on(port, dp.id):
            if port.vlan is None:      # behind an L2 gateway, the segment admits it (_compile_segment)
                flows += self._admit(port, net.number, cookie)
            deliver = [ofp.ApplyActions(_out(port.place[1], port.vlan))]
        else:
            tunnel = overlay.tunnel_to(dp.id, net.kind, port.place)
            if tunnel is None:
                return flows
            deliver = [ofp.ApplyActions([ofp.SetField("tunnel_id", net.tunnel_id), ofp.Output(tunnel)])]
        flows += [Flow(forward, UNICAST_PRIORITY, ofp.Match(metadata=in_net, eth_dst=mac), deliver, cookie)
                  for mac in macs]
        return flows

    def _admit(self, port: Port, number: int, cookie: int) -> list:
        """Port security: what the port may send, into its network."""
        classify, in_port = self.table("classify"), port.place[1]
        admit = [ofp.WriteMetadata(NETWORK.value(number), NETWORK.mask | REMOTE.mask),
                 ofp.GotoTable(self.table("network"))]
        drop = Flow(classify, PORT_DROP_PRIORITY, ofp.Match(in_port=in_port), [], cookie)
        if not port.security:
            return [Flow(classify, ADMIT_PRIORITY, ofp.Match(in_port=in_port), admit, cookie), drop]
        matches = [dict(eth_src=port.mac, eth_type=IPV4_TYPE, ipv4_src="0.0.0.0", ip_proto=UDP_PROTO, udp_src=68,
                        udp_dst=67),
                   dict(eth_src=port.mac, eth_type=ARP_TYPE, arp_spa="0.0.0.0", arp_sha=port.mac),
                   *(dict(eth_src=port.mac, eth_type=IPV6_TYPE, ipv6_src="::", ip_proto=ICMPV6, icmpv6_type=t)
                     for t in UNSPECIFIED_ICMPV6)]
        allowed = [(port.mac, ipaddress.ip_network(ip)) for ip in port.ips] + list(port.pairs)
        allowed += [(mac, ipaddress.ip_network(link_local(mac))) for mac in sorted({m for m, _ in allowed})]
        for mac, prefix in dict.fromkeys(allowed):
            value = _address(prefix)
            if prefix.version == 4:
                matches.append(dict(eth_src=mac, eth_type=IPV4_TYPE, ipv4_src=value))
                matches.append(dict(eth_src=mac, eth_type=ARP_TYPE, arp_spa=value, arp_sha=mac))
            else:
                matches.append(dict(eth_src=mac, eth_type=IPV6_TYPE, ipv6_src=value))
        return [Flow(classify, ADMIT_PRIORITY, ofp.Match(in_port=in_port, **m), admit, cookie)
                for m in matches] + [drop]

    def _compile_network(self, network_id: str, dp) -> list:
        overlay = self.overlay
        if dp.id not in overlay.switches_of(network_id):
            return []
        net = overlay.networks[network_id]
        cookie = self.cookie(KIND_NETWORK << 48 | net.number)
        classify, forward, network_table = self.table("classify"), self.table("forward"), self.table("network")
        local = [_out(p.place[1], None) for p in overlay.ports_of(network_id) if _on(p, dp.id) and p.vlan is None]
        local += [_out(s.place[1], s.vlan) for s in overlay.segments.values()
                  if s.network == network_id and s.place[0] == dp.id]
        local.sort(key=repr)
        remotes = overlay.remotes(network_id, dp.id)
        group_id, local_group = self.ids.start + 2 * net.number, self.ids.start + 2 * net.number + 1
        buckets = [ofp.Bucket(actions) for actions in local]
        buckets += [ofp.Bucket([ofp.SetField("tunnel_id", net.tunnel_id), ofp.Output(t)])
                    for _, t in sorted(remotes.items())]
        from_tunnel = [ofp.WriteMetadata(NETWORK.value(net.number) | REMOTE.value(1), NETWORK.mask | REMOTE.mask),
                       ofp.GotoTable(network_table)]
        entries = [Group(group_id, ofp.OFPGT.ALL, buckets),
                   Group(local_group, ofp.OFPGT.ALL, [ofp.Bucket(actions) for actions in local])]
        entries += [Flow(classify, ADMIT_PRIORITY,
                         ofp.Match(in_port=t, tunnel_id=(net.tunnel_id, net.tunnel_mask)), from_tunnel, cookie)
                    for (kind, _), t in sorted(overlay.tunnels.get(dp.id, {}).items()) if kind == net.kind]
        entries += [
            Flow(forward, FLOOD_PRIORITY, ofp.Match(metadata=(NETWORK.value(net.number), NETWORK.mask | REMOTE.mask)),
                 [ofp.ApplyActions([ofp.Group(group_id)])], cookie),
            Flow(forward, REMOTE_FLOOD_PRIORITY,
                 ofp.Match(metadata=(NETWORK.value(net.number) | REMOTE.value(1), NETWORK.mask | REMOTE.mask)),
                 [ofp.ApplyActions([ofp.Group(local_group)])], cookie),
            Flow(network_table, PROXY_PRIORITY,
                 ofp.Match(metadata=(NETWORK.value(net.number), NETWORK.mask | REMOTE.mask), eth_type=IPV4_TYPE,
                           ip_proto=UDP_PROTO, udp_dst=67), _TO_CONTROLLER, cookie),
        ]
        entries += [Flow(network_table, PROXY_PRIORITY, _asking_for((NETWORK.value(net.number), NETWORK.mask), ip),
                         _TO_CONTROLLER, cookie)
                    for ip in self._servers.get(network_id, ())]
        return entries

    def _compile_segment(self, segment: Segment) -> list:
        """An L2 gateway's segment, on its switch: its frames (their VLAN tag popped) into
        the network; from a source not learned yet, a copy to the controller, which learns
        it (flows for it, below, then take its frames without the copy)."""
        net = self.overlay.networks[segment.network]
        cookie = self.cookie(KIND_SEGMENT << 48 | zlib.crc32(repr(segment.key).encode()))
        in_port, vlan = segment.place[1], segment.vlan
        tagged = dict(vlan_vid=vlan | ofp.OFPVID.PRESENT) if vlan else dict(vlan_vid=ofp.OFPVID.NONE)
        admit = ([ofp.ApplyActions([ofp.PopVlan()])] if vlan else []) + [
            ofp.WriteMetadata(NETWORK.value(net.number), NETWORK.mask | REMOTE.mask),
            ofp.GotoTable(self.table("network"))]
        in_net = (NETWORK.value(net.number), NETWORK.mask | REMOTE.mask)
        after = ofp.GotoTable(pipeline.next_table("network"))
        flows = [Flow(self.table("classify"), ADMIT_PRIORITY, ofp.Match(in_port=in_port, **tagged), admit, cookie),
                 Flow(self.table("classify"), PORT_DROP_PRIORITY, ofp.Match(in_port=in_port), [], cookie),
                 Flow(self.table("network"), LEARN_PRIORITY, ofp.Match(in_port=in_port, metadata=in_net),
                      [*_TO_CONTROLLER, after], cookie)]
        flows += [Flow(self.table("network"), LEARNED_PRIORITY, ofp.Match(in_port=in_port, metadata=in_net,
                                                                           eth_src=mac), [after], cookie)
                  for mac in sorted(self._behind.get(segment.key, ()))]
        return flows

    def _learn(self, dp, in_port: int, metadata: int, mac: str) -> None:
        """A source seen behind an L2 gateway's segment: a port of its network from now on
        (until its connection goes, or it shows up behind another segment)."""
        number = NETWORK.of(metadata)
        segment = next((s for s in self.overlay.segments.values() if s.place == (dp.id, in_port)
                        and self.overlay.networks[s.network].number == number), None)
        if segment is None or int(mac[:2], 16) & 1 or mac in self._behind.get(segment.key, ()):
            return
        if len(self._behind.get(segment.key, ())) >= MAX_BEHIND:
            self.dropped_learning += 1
            return
        for key, macs in self._behind.items():     # moved from another segment
            if mac in macs and self.overlay.segments.get(key) is not None \
                    and self.overlay.segments[key].network == segment.network:
                macs.discard(mac)
                self._behind_changed.add(key)
        self._behind.setdefault(segment.key, set()).add(mac)
        self._behind_changed.add(segment.key)
        self.rebuild_soon()

    # --- answering -------------------------------------------------------------------

    def packet_in(self, dp, msg: ofp.PacketIn) -> None:
        try:
            pkt = parse(msg.data)
        except PacketError:
            return
        in_port = msg.match.get("in_port")
        if msg.reason == ofp.OFPR.ACTION and msg.table_id == self.table("network") and \
                any(s.place == (dp.id, in_port) for s in self.overlay.segments.values()):
            self._learn(dp, in_port, msg.match.get("metadata", 0), pkt[Ethernet].src)
            return
        found = self._sender(dp, msg)
        if found is None:
            return
        network, back = found
        arp = pkt.get(ARP)
        reply = None
        if arp is not None and arp.op == ARP_REQUEST:
            target = ipaddress.IPv4Address(arp.dst_ip)
            mac = self._addresses.get((network.id, target))
            if mac is not None:
                reply, kind = gateway.arp_reply(mac, target, arp.src_mac, arp.src_ip), "arp"
        elif pkt.get(NDNeighborSolicit) is not None and pkt[IPv6].src != "::":    # DAD is left unanswered
            target = ipaddress.IPv6Address(pkt[NDNeighborSolicit].target)
            mac = self._addresses.get((network.id, target))
            if mac is not None:
                reply = gateway.neighbour_advert(mac, target, pkt[Ethernet].src, pkt[IPv6].src, router=False)
                kind = "nd"
        elif pkt.get(UDP) is not None and pkt[UDP].dport == 67:
            reply, kind = self._dhcp(dp, msg, pkt, network), "dhcp"
        if reply is not None:
            self.answered[kind] += 1
            self.send(dp, ofp.PacketOut(actions=back, data=reply))

    def _dhcp(self, dp, msg: ofp.PacketIn, pkt, network: Network) -> bytes | None:
        """The answer to a port's DHCP request (apps/dhcp.py), from the API's records."""
        state, in_port = self.core.state, msg.match.get("in_port")
        port = self.overlay.port_at((dp.id, in_port))
        record = state.get("port", port.id) if port is not None else None
        net = state.get("network", network.id)
        if record is None or net is None:
            return None
        subnets = {r.id: r.body for r in state.all("subnet") if r.body.get("network_id") == network.id}
        return dhcp.answer(pkt, record.body, subnets, net.body, self.dhcp_mac, lease_time=self.dhcp_lease)

    def metrics(self) -> Iterable[tuple[str, str, str, float]]:
        yield "networks", "Tenant networks carried in tunnels", "gauge", len(self.overlay.networks)
        yield "ports", "Tenant ports bound to a switch port or a tunnel endpoint", "gauge", len(self.overlay.ports)
        yield "arp_answered", "ARP requests the controller answered for a tenant port", "counter", self.answered["arp"]
        yield "nd_answered", "Neighbour solicitations the controller answered for a tenant port", "counter", \
            self.answered["nd"]
        yield "dhcp_answered", "DHCP requests answered", "counter", self.answered["dhcp"]

    def _sender(self, dp, msg: ofp.PacketIn) -> tuple[Network, list[ofp.Action]] | None:
        """The network a packet-in's frame is in, and the actions that send an answer back
        to its sender: out of its port, or into the tunnel it came from."""
        in_port = msg.match.get("in_port")
        port = self.overlay.port_at((dp.id, in_port))
        if port is not None:
            return self.overlay.networks[port.network], [ofp.Output(in_port)]
        kind = next((k for (k, _), t in self.overlay.tunnels.get(dp.id, {}).items() if t == in_port), None)
        tunnel_id = msg.match.get("tunnel_id")
        for net in self.overlay.networks.values():
            if kind == net.kind and isinstance(tunnel_id, int) and tunnel_id & net.tunnel_mask == net.tunnel_id:
                return net, [ofp.SetField("tunnel_id", net.tunnel_id), ofp.Output(in_port)]
        return None


def _v4(text: Any) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None


def _out(port_no: int, vlan: int | None) -> list[ofp.Action]:
    """Out of a switch port: into a segment's VLAN, when it has one."""
    if not vlan:
        return [ofp.Output(port_no)]
    return [ofp.PushVlan(0x8100), ofp.SetField("vlan_vid", vlan | ofp.OFPVID.PRESENT), ofp.Output(port_no)]


def _answered(port: Port) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses the controller answers ARP or neighbour solicitations for: the
    port's fixed IPs and, with IPv6, its link-local address."""
    out = list(port.ips)
    if any(ip.version == 6 for ip in out):
        out.append(link_local(port.mac))
    return out


def _asking_for(metadata: tuple[int, int], ip) -> ofp.Match:
    """ARP requests, or neighbour solicitations, for `ip` in a network."""
    if ip.version == 4:
        return ofp.Match(metadata=metadata, eth_type=ARP_TYPE, arp_op=ARP_REQUEST, arp_tpa=str(ip))
    return ofp.Match(metadata=metadata, eth_type=IPV6_TYPE, ip_proto=ICMPV6, icmpv6_type=135,
                     ipv6_nd_target=str(ip))


def _on(port: Port, dpid: int) -> bool:
    """Is the port plugged into switch `dpid`?"""
    return not port.remote and port.place[0] == dpid


def _address(prefix: ipaddress.IPv4Network | ipaddress.IPv6Network):
    """A match value: the address alone for a host prefix, else (address, mask)."""
    if prefix.prefixlen == prefix.max_prefixlen:
        return str(prefix.network_address)
    return str(prefix.network_address), str(prefix.netmask)
