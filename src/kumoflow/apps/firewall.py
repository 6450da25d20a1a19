"""`firewall`: security groups and firewall groups as flows at every
guarded port, stateful without connection tracking in the switch.

Where: two tables of the pipeline (controller/pipeline.py), both on the
guarded port's own switch. ``from_port`` sees what the port sends (by
in_port, after port security), ``to_port`` what is delivered to it (by its
MAC, and its network for a tenant port) after routing, just before
``forward``: every frame for the port passes there, bridged or routed,
come over a fabric link or out of a tunnel. Frames of unguarded ports miss
both tables and go on.

What each guarded port gets, per direction it filters (acl.py has the
model, secgroups.py and fwpolicy.py the two kinds of rules):

``exempt``      ARP, DHCP (v4 and v6) and IPv6 neighbour and router
                discovery and MLD pass, whatever the rules: a port without
                them has no network at all.
``connection``  a connection the controller decided: allowed, a flow per
                direction (the answers' only when stateful), exact on
                addresses, protocol and ports (ICMP: type), with an idle
                timeout, the other deleted when either goes; denied, both
                directions dropped for a short while (its retries, and a
                server's answers, meet that, not the controller);
                inspected (a web rule waits for its request), the client's
                side to the controller. A TCP connection's flows go on
                through ``from_port_end`` / ``to_port_end``, which copy its
                FIN and RST segments to the controller (through a meter of
                their own).
``policy``      the firewall group's policy, rule n at a priority below
                rule n-1: a deny that flows can say whole drops (or goes
                to the controller through the log meter when it logs);
                any other rule sends the packet to the controller.
``rule``        without a policy that way, the security groups' rules (one
                flow per remote prefix): a stateless rule that flows can
                say whole passes; any other punts the packet to the
                controller.
``drop``        the rest.

Packets reach the controller through a meter per switch (``punt_rate``
packets per second: a scan or a flood costs the controller that much, no
more), logged ones through another (``log_rate``). The first packet of a
connection thus goes to the controller, which asks the model
(`acl.decide`), installs the connection's flows and sends the packet on
once they are in (to the port itself when it came in to it; back through
the pipeline when the port sent it). A connection ends by idle timeout;
sooner, ``END_GRACE`` seconds after a TCP connection's RST or its second
FIN (one each way: the last ACK and a FIN sent again still pass), both
seen in copies from the ``*_end`` tables (OpenFlow 1.3 matches TCP flags
only through the ONF experimenter field ``tcp_flags``, which Open vSwitch
and the kumoflow switch both have); when its port goes; or when the rules
no longer decide it the same way: the model is rebuilt at every change of
ports, groups, rules, policies or address groups, and every connection is
judged again -- deleting a rule cuts the connections it allowed.
docs/firewall.md says it for users, web applications included.
"""

from __future__ import annotations

import collections
import ipaddress
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Hashable, Iterable

from kumoflow import ofp
from kumoflow.apps import gateway
from kumoflow.apps import options as check
from kumoflow.apps.acl import Decision, Guarded, Model, build, decide
from kumoflow.apps.fwpolicy import FwRule, Seen
from kumoflow.apps.secgroups import ICMP, ICMPV6, PORT_PROTOCOLS, SCTP, TCP, UDP, Packet, Rule
from kumoflow.controller import Flow, Meter, ModelApp, pipeline
from kumoflow.packet import IPv4, IPv6, PacketError, parse
from kumoflow.packet import TCP as TcpHeader
from kumoflow.packet import http
from kumoflow.packet.consts import TCP_FIN, TCP_RST, TCP_SYN

NETWORK, REMOTE = pipeline.METADATA["network"], pipeline.METADATA["remote"]
KIND_PORT, KIND_CONNECTION = 1, 2
#: a connection's number, in the low bits of its flows' cookie
NUMBER_MASK = (1 << 48) - 1
EXEMPT_PRIORITY, CONNECTION_PRIORITY, DROP_PRIORITY = 30000, 20000, 1
#: a firewall policy's rule n: POLICY_PRIORITY - n (the first rule that matches decides)
POLICY_PRIORITY, MAX_POLICY_RULES = 19000, 18000
#: a security group rule's flows: one that passes (a stateless rule said whole) above one that punts (the
#: controller decides), which may match more than its rule does (a port range)
PASS_PRIORITY, PUNT_PRIORITY = 110, 100
#: the meters on each switch (offsets in the app's block): first packets, what is denied with a log, and the
#: copies of FIN and RST segments
PUNT_METER, LOG_METER, END_METER = 0, 1, 2
#: a TCP connection's FIN or RST copied to the controller: the flows in the *_end tables; END_RATE copies
#: per first packet (up to two FINs, at each guarded end)
END_PRIORITY, END_RATE = 10, 4
#: seconds from a connection's RST or second FIN to the end of its flows
END_GRACE = 2.0
#: classify: what the controller sends on for a port, come in from the controller, skips the port's from_port
RESEND_PRIORITY = 500
IPV4_TYPE, ARP_TYPE, IPV6_TYPE = 0x0800, 0x0806, 0x86DD
#: a connection no rule allowed: its drop flow's idle timeout (its retries meet that, not the controller)
DENIED_IDLE = 10
#: transport ports OpenFlow 1.3 can match, by protocol
PORT_FIELDS = {TCP: ("tcp_src", "tcp_dst"), UDP: ("udp_src", "udp_dst"), SCTP: ("sctp_src", "sctp_dst")}
ICMP_FIELDS = {4: ("icmpv4_type", "icmpv4_code"), 6: ("icmpv6_type", "icmpv6_code")}
ADDRESS_FIELDS = {4: ("ipv4_src", "ipv4_dst"), 6: ("ipv6_src", "ipv6_dst")}
_PROTOCOL_NAMES = {TCP: "tcp", UDP: "udp", ICMP: "icmp", ICMPV6: "icmpv6", SCTP: "sctp"}

#: what passes whatever the rules, out of a port and in to it: ARP; DHCP client to server, or back;
#: router and neighbour discovery and MLD; DHCPv6 the same
_EXEMPT_OUT = [dict(eth_type=ARP_TYPE), dict(eth_type=IPV4_TYPE, ip_proto=UDP, udp_src=68, udp_dst=67),
               *(dict(eth_type=IPV6_TYPE, ip_proto=ICMPV6, icmpv6_type=t) for t in (130, 131, 132, 133, 135, 136, 143)),
               dict(eth_type=IPV6_TYPE, ip_proto=UDP, udp_src=546, udp_dst=547)]
_EXEMPT_IN = [dict(eth_type=ARP_TYPE), dict(eth_type=IPV4_TYPE, ip_proto=UDP, udp_src=67, udp_dst=68),
              *(dict(eth_type=IPV6_TYPE, ip_proto=ICMPV6, icmpv6_type=t) for t in (130, 131, 132, 134, 135, 136, 143)),
              dict(eth_type=IPV6_TYPE, ip_proto=UDP, udp_src=547, udp_dst=546)]


@dataclass(frozen=True)
class Connection:
    port: str            # the guarded port
    ingress: bool        # its first packet came in to the port
    packet: Packet       # the first packet's header
    decision: Decision
    number: int          # in its flows' cookie
    seen: Seen | None = None     # what its request said, when that decided it


class FirewallApp(ModelApp):
    name = "firewall"
    tables = ("from_port", "from_port_end", "to_port", "to_port_end")
    requires = ("fabric",)
    model_kinds = frozenset(("network", "port", "security_group", "security_group_rule", "address_group",
                             "firewall_rule", "firewall_policy", "firewall_group"))

    def __init__(self, connection_idle: int = 300, max_connections: int = 100_000, punt_rate: int = 1000,
                 log_rate: int = 100, log_size: int = 10_000, **options: Any) -> None:
        super().__init__(**options)
        self.connection_idle = check.integer("connection_idle", connection_idle, 1, 65535)
        self.max_connections = check.integer("max_connections", max_connections, 1, 10_000_000)
        self.punt_rate = check.integer("punt_rate", punt_rate, 1, 1_000_000)
        self.log_rate = check.integer("log_rate", log_rate, 1, 1_000_000)
        self.model = Model({}, {})
        self._by_cookie: dict[int, Guarded] = {}
        self.connections: dict[tuple[str, bool, Packet], Connection] = {}
        self._by_number: dict[int, tuple[str, bool, Packet]] = {}
        #: the connections by their first packet's header (a connection between two guarded ports has one
        #: at each end), and the FINs seen of those ending: True for their first packet's way, False for back
        self._by_header: dict[Packet, set[tuple[str, bool, Packet]]] = {}
        self._fins: dict[tuple[str, bool, Packet], set[bool]] = {}
        self._next_number = 1
        self.counts = {"allowed": 0, "denied": 0, "rejected": 0, "full": 0, "inspected": 0, "ended": 0}
        #: connections whose request decides: their reader, and the sequence number of the next client byte
        self._inspecting: dict[tuple[str, bool, Packet], tuple[http.Reader, int]] = {}
        #: what was denied or rejected with a log: the newest `log_size` records, and counts per rule
        self.denied: collections.deque[dict] = collections.deque(maxlen=check.integer("log_size", log_size, 1,
                                                                                       10_000_000))
        self.logged: collections.Counter[str] = collections.Counter()
        self._last_full_log = float("-inf")
        self._problems: dict[str, str] = {}

    # --- the model -----------------------------------------------------------------

    def rebuild(self) -> None:
        old, new = self.model, build(self.core.state, self.core.datapaths)
        self.model = new
        self._by_cookie = {self._port_cookie(p.id): p for p in new.ports.values()}
        for port_id in set(old.ports) | set(new.ports):
            if old.ports.get(port_id) != new.ports.get(port_id):
                self.changed(("port", port_id))
        for dpid in {p.place[0] for p in old.ports.values()} ^ {p.place[0] for p in new.ports.values()}:
            self.changed(("meters", dpid), dpid)
        for key, conn in list(self.connections.items()):
            port = new.ports.get(conn.port)
            if port is None or not _same(decide(port, conn.ingress, conn.packet, conn.seen), conn.decision):
                self._forget(key)
            elif port != old.ports.get(conn.port):      # moved, say: its flows go with it
                self.changed(("connection", key))
        for rule_id, problem in new.problems.items():
            if self._problems.get(rule_id) != problem:
                self.log.warning("rule %s is left out: %s", rule_id, problem)
        self._problems = dict(new.problems)

    def _port_cookie(self, port_id: str) -> int:
        return self.cookie(KIND_PORT << 48 | zlib.crc32(port_id.encode()))

    # --- compiling -------------------------------------------------------------------

    def owners(self) -> Iterable[Hashable]:
        for port_id in self.model.ports:
            yield ("port", port_id)
        for dpid in {p.place[0] for p in self.model.ports.values()}:
            yield ("meters", dpid)
        for key in self.connections:
            yield ("connection", key)

    def compile(self, key: Hashable, dp) -> list:
        kind, subject = key
        if kind == "port":
            port = self.model.ports.get(subject)
            return self._compile_port(port) if port is not None and port.place[0] == dp.id else []
        if kind == "meters":
            return self._compile_switch() if subject == dp.id else []
        if kind == "connection":
            conn = self.connections.get(subject)
            port = self.model.ports.get(conn.port) if conn is not None else None
            return self._compile_connection(conn, port) if port is not None and port.place[0] == dp.id else []
        return []

    def _compile_switch(self) -> list:
        """What a switch with guarded ports has once: the meters, and the flows copying FIN and RST."""
        entries: list = [Meter(self.meter_ids.start + offset, ofp.OFPMF.PKTPS | ofp.OFPMF.BURST,
                               [ofp.MeterBandDrop(rate, rate)])
                         for offset, rate in ((PUNT_METER, self.punt_rate), (LOG_METER, self.log_rate),
                                              (END_METER, END_RATE * self.punt_rate))]
        for name in ("from_port_end", "to_port_end"):
            table = self.table(name)
            copy = [*self._to_controller(END_METER), ofp.GotoTable(pipeline.next_table(name))]
            entries += [Flow(table, END_PRIORITY, ofp.Match(eth_type=eth_type, ip_proto=TCP, tcp_flags=(flag, flag)),
                             copy, self.cookie()) for eth_type in (IPV4_TYPE, IPV6_TYPE) for flag in (TCP_FIN, TCP_RST)]
        return entries

    def _side(self, port: Guarded, ingress: bool) -> tuple[int, dict, int]:
        """(table, what names the port in it, the table after it and its *_end table)."""
        table = "to_port" if ingress else "from_port"
        if ingress:
            names: dict[str, Any] = dict(eth_dst=port.mac)
            if port.network is not None:
                names["metadata"] = (NETWORK.value(port.network), NETWORK.mask)
        else:
            names = dict(in_port=port.place[1])
        return self.table(table), names, pipeline.next_table(f"{table}_end")

    def _onwards(self, port: Guarded, ingress: bool, packet: Packet) -> list:
        """Where an allowed connection's packets (headed `packet`) go from its table: a TCP
        connection's through the *_end table, where its FIN and RST are copied to the controller;
        but what comes in to the port from a guarded port of its network that has the connection
        too is copied there already, as it left (one copy of each FIN, not two)."""
        table = "to_port" if ingress else "from_port"
        tapped = packet.protocol == TCP
        if tapped and ingress:
            sender = self.model.at.get((port.network, packet.src))
            if sender is not None and not sender.filters(False):     # no connection flows where it sends
                sender = None
            made = self.connections.get((sender.id, False, packet)) if sender is not None else None
            answered = self.connections.get((sender.id, True, packet.reversed())) if sender is not None else None
            tapped = not any(c is not None and c.decision.action == "allow" and (c is made or c.decision.stateful)
                             for c in (made, answered))
        return [ofp.GotoTable(pipeline.next_table(table) if tapped else pipeline.next_table(f"{table}_end"))]

    def _to_controller(self, meter: int) -> list:
        return [ofp.Meter(self.meter_ids.start + meter),
                ofp.ApplyActions([ofp.Output(ofp.OFPP.CONTROLLER, ofp.OFPCML.NO_BUFFER)])]

    def _compile_port(self, port: Guarded) -> list:
        cookie = self._port_cookie(port.id)
        punt = self._to_controller(PUNT_METER)
        flows = []
        if port.filters(False):     # what the port sent and the controller let go, past from_port (_send_on)
            resend = [ofp.GotoTable(pipeline.next_table("from_port_end"))]
            if port.network is not None:
                resend.insert(0, ofp.WriteMetadata(NETWORK.value(port.network), NETWORK.mask | REMOTE.mask))
            flows.append(Flow(self.table("classify"), RESEND_PRIORITY,
                              ofp.Match(in_port=ofp.OFPP.CONTROLLER, eth_src=port.mac), resend, cookie))
        for ingress, exempt in ((False, _EXEMPT_OUT), (True, _EXEMPT_IN)):
            if not port.filters(ingress):
                continue
            table, names, after = self._side(port, ingress)
            go_on = [ofp.GotoTable(after)]
            flows += [Flow(table, EXEMPT_PRIORITY, ofp.Match({**names, **m}), go_on, cookie) for m in exempt]
            policy = port.policy(ingress)
            if policy is not None:      # the policy decides first; what it allows, the controller takes on
                for n, rule in enumerate(policy[:MAX_POLICY_RULES]):
                    if rule.action == "deny" and _fw_sayable(rule):
                        action = self._to_controller(LOG_METER) if rule.log else []
                    else:
                        action = punt
                    flows += [Flow(table, POLICY_PRIORITY - n, ofp.Match({**names, **m}), action, cookie)
                              for m in _policy_matches(rule)]
            else:
                for rule in port.rules:
                    if rule.ingress == ingress:
                        passes = not rule.stateful and _sayable(rule)
                        flows += [Flow(table, PASS_PRIORITY if passes else PUNT_PRIORITY, ofp.Match({**names, **m}),
                                       go_on if passes else punt, cookie) for m in _rule_matches(rule)]
            flows.append(Flow(table, DROP_PRIORITY, ofp.Match(names), [], cookie))
        return list({f.key: f for f in flows}.values())      # two rules may say the same

    def _compile_connection(self, conn: Connection, port: Guarded) -> list:
        cookie = self.cookie(KIND_CONNECTION << 48 | conn.number)
        table, names, after = self._side(port, conn.ingress)
        if conn.decision.action not in ("allow", "inspect"):      # dropped, and its answers too
            flows = [Flow(table, CONNECTION_PRIORITY, ofp.Match({**names, **_header(conn.packet)}), [], cookie,
                          idle_timeout=DENIED_IDLE, flags=ofp.OFPFF.SEND_FLOW_REM)]
            answer = conn.packet.reversed()
            if answer is not None and port.filters(not conn.ingress):
                table, names, _ = self._side(port, not conn.ingress)
                flows.append(Flow(table, CONNECTION_PRIORITY, ofp.Match({**names, **_header(answer)}), [], cookie,
                                  idle_timeout=DENIED_IDLE, flags=ofp.OFPFF.SEND_FLOW_REM))
            return flows
        onwards = (self._to_controller(PUNT_METER) if conn.decision.action == "inspect"
                   else self._onwards(port, conn.ingress, conn.packet))
        flows = [Flow(table, CONNECTION_PRIORITY, ofp.Match({**names, **_header(conn.packet)}), onwards, cookie,
                      idle_timeout=self.connection_idle, flags=ofp.OFPFF.SEND_FLOW_REM)]
        answer = conn.packet.reversed() if conn.decision.stateful else None
        if answer is not None and port.filters(not conn.ingress):
            table, names, _ = self._side(port, not conn.ingress)
            flows.append(Flow(table, CONNECTION_PRIORITY, ofp.Match({**names, **_header(answer)}),
                              self._onwards(port, not conn.ingress, answer), cookie, idle_timeout=self.connection_idle,
                              flags=ofp.OFPFF.SEND_FLOW_REM))
        return flows

    # --- first packets -----------------------------------------------------------------

    def packet_in(self, dp, msg: ofp.PacketIn) -> None:
        if msg.table_id in (self.table("from_port_end"), self.table("to_port_end")):
            self._tcp_end(msg.data)
            return
        port = self._by_cookie.get(msg.cookie)
        if port is None and (msg.cookie >> 48) & 0xFF == KIND_CONNECTION:     # an inspected connection's
            owner = self._by_number.get(msg.cookie & NUMBER_MASK)
            port = self.model.ports.get(owner[0]) if owner is not None else None
        packet = parse_header(msg.data)
        if port is None or packet is None or port.place[0] != dp.id:
            return
        ingress = msg.table_id == self.table("to_port")
        key = (port.id, ingress, packet)
        conn = self.connections.get(key)
        answer = packet.reversed()
        if conn is None and answer is not None:
            made = self.connections.get((port.id, not ingress, answer))
            if made is not None:        # an answer of a connection made the other way: it decides
                if made.decision.action == "allow" and made.decision.stateful:
                    self._send_on(dp, port, ingress, msg.data)     # its flow is on its way
                return
        if conn is not None and conn.decision.action == "inspect":
            decision = self._inspect(dp, port, key, msg.data)
            if decision is None:            # not decided yet: this segment goes on
                self._send_on(dp, port, ingress, msg.data, inspected=True)
                return
        else:
            decision = conn.decision if conn is not None else decide(port, ingress, packet)
        if decision.log:
            self._log(port, ingress, packet, decision)
        if decision.action == "reject":
            self.counts["rejected"] += 1
            self._reject(dp, port, ingress, msg)
            if conn is None:
                return
        if conn is None:
            if not self._open(dp, key, decision):
                return
            if not ingress and decision.action == "allow":
                self._decide_the_other_end(port, packet)
        if decision.action == "inspect":
            self._inspecting[key] = (http.Reader(), _next_seq(msg.data))
        if decision.action in ("allow", "inspect"):
            inspected = decision.action == "inspect" or conn is not None and conn.decision.action == "inspect"
            self._send_on(dp, port, ingress, msg.data, inspected)

    def _decide_the_other_end(self, port: Guarded, packet: Packet) -> None:
        """A connection a guarded port opens to another guarded port of its network: that
        port's side decided now too, so that the first packet meets its flows instead of
        coming back to the controller (one round trip where there were two)."""
        other = self.model.at.get((port.network, packet.dst))
        if other is None or other is port:
            return
        key = (other.id, True, packet)
        if key not in self.connections and (other.id, False, packet.reversed()) not in self.connections:
            dp, decision = self.core.datapaths.get(other.place[0]), decide(other, True, packet)
            if dp is not None and decision.action != "inspect":     # a request to read: its own first packet
                self._open(dp, key, decision)

    def _send_on(self, dp, port: Guarded, ingress: bool, data: bytes, inspected: bool = False) -> None:
        """A packet the controller let go, on its way once the flows this event made are in:
        to the port itself when it was coming in to it (to_port is the last stage before
        forward); through the pipeline from the port when the port sent it (the connection's
        flow takes it past from_port), or, while its connection's flow still sends it to the
        controller (`inspected`), from the controller (classify takes it past from_port)."""
        if ingress:
            out = ofp.PacketOut(actions=[ofp.Output(port.place[1])], data=data)
        else:
            out = ofp.PacketOut(in_port=ofp.OFPP.CONTROLLER if inspected else port.place[1],
                                actions=[ofp.Output(ofp.OFPP.TABLE)], data=data)
        self.core.send_after_flows(dp, out)

    def _inspect(self, dp, port: Guarded, key: tuple[str, bool, Packet], data: bytes) -> Decision | None:
        """Feed a segment of an inspected connection to its reader; the connection's decision
        once its first bytes say enough (its flows then become allow or drop), else None."""
        state = self._inspecting.get(key)
        if state is None:
            return None
        try:
            pkt = parse(data)
            tcp = pkt[TcpHeader]
        except (PacketError, KeyError, TypeError):
            return None
        payload = pkt.payload
        if not payload:
            return None
        reader, expected = state
        if tcp.seq != expected:         # a retransmission (already fed) or out of order (sent again later)
            return None
        self._inspecting[key] = (reader, (expected + len(payload)) & 0xFFFFFFFF)
        verdict = reader.feed(bytes(payload))
        if verdict is http.NEED_MORE:
            return None
        if isinstance(verdict, http.Request):
            seen = Seen(verdict.host, verdict.path)
        else:
            seen = Seen(verdict.server_name, None)
        decision = decide(port, key[1], key[2], seen)
        if decision.action == "inspect":        # cannot be: a seen request matches or skips every web rule
            decision = Decision("deny", False, None)
        del self._inspecting[key]
        old = self.connections[key]
        self.connections[key] = Connection(old.port, old.ingress, old.packet, decision, old.number, seen)
        self.counts["inspected"] += 1
        self.changed(("connection", key), dp.id)
        return decision

    def _tcp_end(self, frame: bytes) -> None:
        """A FIN or RST of a connection's: a RST, or a FIN each way, ends the connection (at each
        guarded end) END_GRACE seconds later."""
        packet = parse_header(frame)
        try:
            flags = parse(frame)[TcpHeader].flags
        except (PacketError, KeyError, TypeError):
            return
        if packet is None:
            return
        for forward, header in ((True, packet), (False, packet.reversed())):
            for key in tuple(self._by_header.get(header, ())):
                fins = self._fins.setdefault(key, set())
                if flags & TCP_FIN:
                    fins.add(forward)
                if flags & TCP_RST or len(fins) == 2:
                    number = self.connections[key].number
                    self.core.call_later(END_GRACE, lambda key=key, number=number: self._end(key, number))

    def _end(self, key: tuple[str, bool, Packet], number: int) -> None:
        conn = self.connections.get(key)
        if conn is not None and conn.number == number:     # not ended since, nor opened again
            self.counts["ended"] += 1
            self._forget(key)

    def _open(self, dp, key: tuple[str, bool, Packet], decision: Decision) -> bool:
        """A connection's flows, allowed or dropped; False when the table is full."""
        if len(self.connections) >= self.max_connections:
            self.counts["full"] += 1
            now = self.core.now()
            if now - self._last_full_log > 60:
                self._last_full_log = now
                self.log.warning("%d connections: the table is full (max_connections); new ones are dropped "
                                 "(%d so far)", len(self.connections), self.counts["full"])
            return False
        conn = Connection(key[0], key[1], key[2], decision, self._next_number)
        self._next_number = self._next_number % NUMBER_MASK + 1
        self.connections[key] = conn
        self._by_number[conn.number] = key
        if key[2].protocol == TCP and decision.action in ("allow", "inspect"):
            self._by_header.setdefault(key[2], set()).add(key)
        self.counts["allowed" if decision.action == "allow" else "denied"] += 1
        self.changed(("connection", key), dp.id)
        return True

    def _reject(self, dp, port: Guarded, ingress: bool, msg: ofp.PacketIn) -> None:
        """Answer a rejected packet: TCP with a reset, the rest with ICMP port unreachable,
        sent back the way it came."""
        try:
            pkt = parse(msg.data)
        except PacketError:
            return
        ip = pkt.get(IPv4) or pkt.get(IPv6)
        answer = gateway.tcp_reset(pkt) or gateway.icmp_error(
            pkt, msg.data, "port_unreachable", mac=msg.data[0:6].hex(":"), source=ipaddress.ip_address(ip.dst))
        if answer is None:
            return
        if ingress:           # back out of where it came in (into the tunnel it came from)
            tunnel = msg.match.get("tunnel_id")
            actions = ([ofp.SetField("tunnel_id", tunnel)] if tunnel is not None else []) + \
                [ofp.Output(ofp.OFPP.IN_PORT)]
            self.send(dp, ofp.PacketOut(in_port=msg.match.get("in_port", ofp.OFPP.CONTROLLER), actions=actions,
                                        data=answer))
        else:                 # the port sent it: the answer goes to the port
            self.send(dp, ofp.PacketOut(actions=[ofp.Output(port.place[1])], data=answer))

    def _log(self, port: Guarded, ingress: bool, packet: Packet, decision: Decision) -> None:
        record = {"time": self.core.now(), "rule": decision.rule, "action": decision.action, "port": port.id,
                  "direction": "ingress" if ingress else "egress", "protocol": packet.protocol,
                  "src": str(packet.src), "dst": str(packet.dst), "sport": packet.sport, "dport": packet.dport}
        self.denied.append(record)
        self.logged[decision.rule or "default"] += 1
        self.log.info("%s %s %s port %s: %s %s:%d -> %s:%d (rule %s)", decision.action, record["direction"],
                      _PROTOCOL_NAMES.get(packet.protocol, packet.protocol), port.id, record["protocol"],
                      record["src"], packet.sport, record["dst"], packet.dport, decision.rule)

    def flow_removed(self, dp, msg: ofp.FlowRemoved) -> None:
        if (msg.cookie >> 48) & 0xFF == KIND_CONNECTION:
            key = self._by_number.get(msg.cookie & NUMBER_MASK)
            if key is not None:
                self._forget(key)

    def _forget(self, key: tuple[str, bool, Packet]) -> None:
        self._inspecting.pop(key, None)
        self._fins.pop(key, None)
        conn = self.connections.pop(key, None)
        if conn is not None:
            self._by_number.pop(conn.number, None)
            ends = self._by_header.get(conn.packet)
            if ends is not None:
                ends.discard(key)
                if not ends:
                    del self._by_header[conn.packet]
            self.changed(("connection", key))

    def metrics(self) -> Iterable[tuple[str, str, str, float]]:
        yield ("guarded_ports", "ports with security groups or a firewall group enforced", "gauge",
               len(self.model.ports))
        yield ("connections", "connections with flows (allowed or denied)", "gauge", len(self.connections))
        yield ("connections_allowed_total", "first packets allowed", "counter", self.counts["allowed"])
        yield ("connections_denied_total", "first packets denied", "counter", self.counts["denied"])
        yield ("packets_rejected_total", "packets rejected (answered with a reset or unreachable)", "counter",
               self.counts["rejected"])
        yield ("connections_refused_total", "first packets dropped: the connection table was full", "counter",
               self.counts["full"])
        for rule, count in sorted(self.logged.items()):
            yield ("logged_total", "denied or rejected connections logged, by rule (default: no rule allowed)",
                   "counter", count, {"rule": rule})
        yield ("connections_inspected_total", "connections decided by their HTTP request or TLS server name",
               "counter", self.counts["inspected"])
        yield ("connections_ended_total", "connection ends whose flows went on a TCP FIN each way or a RST "
               "(at each guarded end)", "counter", self.counts["ended"])


def _sayable(rule: Rule) -> bool:
    """Can flows say the rule whole? Not a port range wider than one port, nor ports
    of a protocol OpenFlow 1.3 cannot match them for."""
    return rule.ports is None or rule.ports[0] == rule.ports[1] and rule.protocol in PORT_FIELDS


def _same(now: Decision, then: Decision) -> bool:
    """Would a connection decided `then` be decided the same way `now`?"""
    return (now.action, now.stateful) == (then.action, then.stateful)


def _fw_sayable(rule: FwRule) -> bool:
    """Can flows say a policy rule whole (ports single or none, no web part)?"""
    return not rule.web and all(p is None or p[0] == p[1] and rule.protocol in PORT_FIELDS
                                for p in (rule.sport, rule.dport))


def _policy_matches(rule: FwRule) -> list[dict]:
    """A policy rule's matches: one per (source, destination) prefix pair; ports where single."""
    base: dict[str, Any] = dict(eth_type=IPV4_TYPE if rule.version == 4 else IPV6_TYPE)
    if rule.protocol is not None:
        base["ip_proto"] = rule.protocol
    for n, ports in enumerate((rule.sport, rule.dport)):
        if ports is not None and ports[0] == ports[1] and rule.protocol in PORT_FIELDS:
            base[PORT_FIELDS[rule.protocol][n]] = ports[0]
    src_field, dst_field = ADDRESS_FIELDS[rule.version]
    sources = [None] if rule.sources is None else rule.sources
    destinations = [None] if rule.destinations is None else rule.destinations
    return [{**base, **({src_field: _prefix(s)} if s is not None else {}),
             **({dst_field: _prefix(d)} if d is not None else {})} for s in sources for d in destinations]


def _rule_matches(rule: Rule) -> list[dict]:
    """The matches of a rule's flows: one per remote prefix (none for an empty remote group)."""
    base: dict[str, Any] = dict(eth_type=IPV4_TYPE if rule.version == 4 else IPV6_TYPE)
    if rule.protocol is not None:
        base["ip_proto"] = rule.protocol
    if rule.ports is not None and _sayable(rule):
        base[PORT_FIELDS[rule.protocol][1]] = rule.ports[0]
    if rule.protocol in (ICMP, ICMPV6):
        kind, code = rule.icmp
        fields = ICMP_FIELDS[rule.version]
        if kind is not None:
            base[fields[0]] = kind
            if code is not None:
                base[fields[1]] = code
    if rule.remotes is None:
        return [base]
    field = ADDRESS_FIELDS[rule.version][0 if rule.ingress else 1]
    return [{**base, field: _prefix(net)} for net in rule.remotes]


def _prefix(net) -> Any:
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return (str(net.network_address), str(net.netmask))


def _header(packet: Packet) -> dict:
    """A connection's exact match: addresses, protocol, ports (ICMP: the type)."""
    src, dst = ADDRESS_FIELDS[packet.version]
    out: dict[str, Any] = dict(eth_type=IPV4_TYPE if packet.version == 4 else IPV6_TYPE, ip_proto=packet.protocol,
                               **{src: str(packet.src), dst: str(packet.dst)})
    if packet.protocol in PORT_FIELDS:
        out[PORT_FIELDS[packet.protocol][0]], out[PORT_FIELDS[packet.protocol][1]] = packet.sport, packet.dport
    elif packet.protocol in (ICMP, ICMPV6):
        out[ICMP_FIELDS[packet.version][0]] = packet.sport
    return out


def _next_seq(frame: bytes) -> int:
    """The sequence number of the first byte after this TCP segment's own (a SYN takes one)."""
    try:
        pkt = parse(frame)
        tcp = pkt[TcpHeader]
    except (PacketError, KeyError, TypeError):
        return 0
    return (tcp.seq + len(pkt.payload) + bool(tcp.flags & TCP_SYN)) & 0xFFFFFFFF


_V4 = struct.Struct("!BBHHHBBH4s4s")


def parse_header(frame: bytes) -> Packet | None:
    """The header a rule looks at, from an untagged Ethernet frame; None when it is not IP
    (or too short to say). ICMP's type and code stand for the ports."""
    if len(frame) < 34:
        return None
    ethertype = frame[12] << 8 | frame[13]
    if ethertype == IPV4_TYPE:
        ver_ihl, _, _, _, frag, _, proto, _, src, dst = _V4.unpack_from(frame, 14)
        l4 = 14 + (ver_ihl & 0x0F) * 4
        packet = Packet(4, proto, ipaddress.IPv4Address(src), ipaddress.IPv4Address(dst))
        if frag & 0x1FFF:           # a later fragment has no transport header
            return packet
    elif ethertype == IPV6_TYPE and len(frame) >= 54:
        proto, l4 = frame[20], 54
        packet = Packet(6, proto, ipaddress.IPv6Address(frame[22:38]), ipaddress.IPv6Address(frame[38:54]))
    else:
        return None
    if proto in PORT_PROTOCOLS or proto in (ICMP, ICMPV6):
        if len(frame) < l4 + 4:
            return None
        if proto in PORT_PROTOCOLS:
            return Packet(packet.version, proto, packet.src, packet.dst, *struct.unpack_from("!HH", frame, l4))
        return Packet(packet.version, proto, packet.src, packet.dst, frame[l4], frame[l4 + 1])
    return packet
