"""Source NAT connections of the routers' external gateways: which inside
(address, port) talks to which outside (address, port) through which port of
the gateway's address.

A connection is made on its first packet (the `router` app sees it at the
end of the snat table) and lives in flows: one on the switch where the
inside host's packets enter (rewriting their source), one on every switch
for the answers (rewriting their destination back; they may come in
anywhere). The outbound flow has an idle timeout and asks to be told when
it goes; that ends the connection and frees its port. ICMP echo has no
port a flow can rewrite in OpenFlow 1.3, so its identifier is translated
by the controller itself, packet by packet, and such a connection ends
after `icmp_idle` seconds without one.

Ports are handed out per (gateway address, protocol) from `ports`, the
next free one after the last given, so a port just freed is not reused at
once. When all are taken, the packet is dropped, counted in `exhausted`
and logged (at most once a minute): the gateway is full, not stuck.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

TCP, UDP, ICMP = 6, 17, 1


@dataclass(frozen=True)
class Key:
    vrf: int
    proto: int
    inside: ipaddress.IPv4Address
    inside_port: int          # the ICMP echo identifier for ICMP
    outside: ipaddress.IPv4Address
    outside_port: int         # 0 for ICMP


@dataclass
class Connection:
    key: Key
    gateway: ipaddress.IPv4Address     # the external address it leaves with
    port: int                          # ... and the port (or ICMP identifier)
    dpid: int                          # where the inside host's packets enter
    last_seen: float = 0.0


class SnatTable:
    def __init__(self, ports: range = range(1024, 65536)) -> None:
        self.ports = ports
        self.connections: dict[Key, Connection] = {}
        self._by_outside: dict[tuple[ipaddress.IPv4Address, int, int], Connection] = {}   # (gateway, proto, port)
        self._next: dict[tuple[ipaddress.IPv4Address, int], int] = {}
        self.exhausted = 0          # packets dropped for want of a port
        self.last_full_log = float("-inf")

    def __len__(self) -> int:
        return len(self.connections)

    def open(self, key: Key, gateway: ipaddress.IPv4Address, dpid: int, now: float) -> Connection | None:
        """The connection of `key`, made if new; None when no port is free."""
        conn = self.connections.get(key)
        if conn is not None:
            conn.last_seen = now
            return conn
        port = self._free_port(gateway, key.proto)
        if port is None:
            self.exhausted += 1
            return None
        conn = Connection(key, gateway, port, dpid, now)
        self.connections[key] = conn
        self._by_outside[(gateway, key.proto, port)] = conn
        return conn

    def answering(self, gateway: ipaddress.IPv4Address, proto: int, port: int) -> Connection | None:
        """The connection an answer to (gateway, port) belongs to."""
        return self._by_outside.get((gateway, proto, port))

    def close(self, key: Key) -> Connection | None:
        conn = self.connections.pop(key, None)
        if conn is not None:
            self._by_outside.pop((conn.gateway, key.proto, conn.port), None)
        return conn

    def close_vrf(self, vrf: int) -> list[Connection]:
        return [c for c in (self.close(k) for k in [k for k in self.connections if k.vrf == vrf]) if c]

    def idle(self, proto: int, before: float) -> list[Key]:
        return [k for k, c in self.connections.items() if k.proto == proto and c.last_seen < before]

    def _free_port(self, gateway: ipaddress.IPv4Address, proto: int) -> int | None:
        span = len(self.ports)
        start = self._next.get((gateway, proto), 0)
        for i in range(span):
            offset = (start + i) % span
            port = self.ports[offset]
            if (gateway, proto, port) not in self._by_outside:
                self._next[(gateway, proto)] = (offset + 1) % span
                return port
        return None
