"""The host table: every end host the controller has seen, where it is
attached (switch and port), its addresses and when it was last seen.

The `fabric` app learns hosts from the packets that reach the controller
(ARP, IPv4, IPv6 and neighbour discovery) and recovers them from the
switches after a restart; any app reads the table and hears
`host_found(host)`, `host_moved(host, old)` and `host_lost(host)`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from .core import Core


@dataclass
class Host:
    mac: str
    dpid: int
    port: int
    ips: set[str] = field(default_factory=set)
    last_seen: float = 0.0


class HostTable:
    def __init__(self, core: "Core") -> None:
        self.core = core
        self.by_mac: dict[str, Host] = {}
        self._by_port: dict[tuple[int, int], set[str]] = {}   # (dpid, port) -> MACs

    def __iter__(self):
        return iter(self.by_mac.values())

    def __len__(self) -> int:
        return len(self.by_mac)

    def get(self, mac: str) -> Host | None:
        return self.by_mac.get(mac)

    def at(self, dpid: int, port: int | None = None) -> list[Host]:
        if port is not None:
            return [self.by_mac[mac] for mac in self._by_port.get((dpid, port), ())]
        return [h for h in self.by_mac.values() if h.dpid == dpid]

    def _place(self, host: Host, dpid: int, port: int) -> None:
        here = self._by_port.get((host.dpid, host.port))
        if here is not None:
            here.discard(host.mac)
            if not here:
                del self._by_port[(host.dpid, host.port)]
        host.dpid, host.port = dpid, port
        self._by_port.setdefault((dpid, port), set()).add(host.mac)

    def seen(self, mac: str, dpid: int, port: int, ips: Iterable[str] = ()) -> Host:
        """Record a host seen at (dpid, port): found, moved, or just refreshed."""
        now = self.core.now()
        host = self.by_mac.get(mac)
        if host is None:
            host = self.by_mac[mac] = Host(mac, dpid, port, set(ips), now)
            self._by_port.setdefault((dpid, port), set()).add(mac)
            self.core.dispatch("host_found", host)
        elif (host.dpid, host.port) != (dpid, port):
            old = dataclasses.replace(host, ips=set(host.ips))
            self._place(host, dpid, port)
            host.last_seen = now
            host.ips.update(ips)
            self.core.dispatch("host_moved", host, old)
        else:
            host.last_seen = now
            host.ips.update(ips)
        return host

    def lose(self, mac: str) -> None:
        host = self.by_mac.pop(mac, None)
        if host is not None:
            here = self._by_port[(host.dpid, host.port)]
            here.discard(mac)
            if not here:
                del self._by_port[(host.dpid, host.port)]
            self.core.dispatch("host_lost", host)

    def lose_port(self, dpid: int, port: int | None = None) -> None:
        """Forget the hosts behind a port (or a whole switch)."""
        for host in self.at(dpid, port):
            self.lose(host.mac)
