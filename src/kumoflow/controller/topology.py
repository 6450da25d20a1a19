"""The topology service: switches and the links between them, as apps see it.

The `fabric` app feeds it (LLDP, PORT_STATUS, timeouts); any app reads it
(`core.topology.graph`, graph.py) and hears `link_up(link)` and
`link_down(link)`. A switch port is the end of at most one link: a link
seen on a port that had another replaces it (a recabled port).

A link is up only while it is seen both ways (LLDP from each end reaching
the other): a link that carries frames one way only is down, since
forwarding over it would lose everything sent the other way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .graph import Graph, Link

if TYPE_CHECKING:
    from .core import Core


class Topology:
    def __init__(self, core: "Core") -> None:
        self.core = core
        self.graph = Graph()
        self.last_seen: dict[tuple[Link, tuple[int, int]], float] = {}   # (link, sending end) -> time
        self._by_port: dict[tuple[int, int], Link] = {}

    def link_at(self, dpid: int, port: int) -> Link | None:
        return self._by_port.get((dpid, port))

    def is_fabric_port(self, dpid: int, port: int) -> bool:
        return (dpid, port) in self._by_port

    def add_switch(self, dpid: int) -> None:
        self.graph.add_switch(dpid)

    def remove_switch(self, dpid: int) -> None:
        for link in self.graph.links_of(dpid):
            self.lose(link)
        self.graph.remove_switch(dpid)

    def seen(self, link: Link, sender: tuple[int, int]) -> bool:
        """A link was seen carrying a frame from `sender` (dpid, port). True
        when that makes it up (it has now been seen both ways)."""
        self.last_seen[(link, sender)] = self.core.now()
        if link in self.graph.links:
            return False
        ends = ((link.a, link.a_port), (link.b, link.b_port))
        other = ends[1] if sender == ends[0] else ends[0]
        if (link, other) not in self.last_seen:
            return False
        for end in ends:
            old = self._by_port.get(end)
            if old is not None:
                self.lose(old)
        self.graph.add_link(link)
        self._by_port[ends[0]] = self._by_port[ends[1]] = link
        self.core.dispatch("link_up", link)
        return True

    def lose(self, link: Link) -> None:
        for end in ((link.a, link.a_port), (link.b, link.b_port)):
            self.last_seen.pop((link, end), None)
        if not self.graph.remove_link(link):
            return
        for end in ((link.a, link.a_port), (link.b, link.b_port)):
            if self._by_port.get(end) == link:
                del self._by_port[end]
        self.core.dispatch("link_down", link)

    def lose_port(self, dpid: int, port: int) -> None:
        link = self._by_port.get((dpid, port))
        if link is not None:
            self.lose(link)

    def expire(self, older_than: float) -> None:
        """Take down links not seen both ways since `older_than`."""
        for (link, sender), seen in list(self.last_seen.items()):
            if seen < older_than:
                del self.last_seen[(link, sender)]
                self.lose(link)
