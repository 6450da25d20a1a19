"""The topology graph the fabric app compiles its flows from: switches as
nodes, links between switch ports as unit-cost undirected edges, and the
few questions hop-by-hop forwarding asks of them.

Forwarding is hop by hop: a switch sends a packet for dst to a neighbour
one hop closer to dst, which does the same. So the fabric needs the
distance to each destination from every switch, not whole paths, and one
breadth-first search from dst gives it (links are undirected):

    next_hops(src, dst)    every port on src on a shortest path, parallel
                           links included: a select group's buckets (ECMP)
    backup_hops(src, dst)  loop-free alternates (RFC 5286, inequality 1):
                           ports to a neighbour N with dist(N, dst) <
                           dist(N, src) + dist(src, dst), whose shortest paths
                           never come back through src; with unit costs, the
                           neighbours as far from dst as src is. The later
                           buckets of a fast-failover group.
    tree_ports()           a spanning forest: the only fabric ports flooding
                           may use, so broadcasts never loop
    path(src, dst)         one shortest path, hop by hop

The fabric asks next_hops for every pair of switches, so distances are
computed once per destination and kept until the graph changes: all pairs
over n switches and m links cost n searches, O(n(n + m)), and each call is
then a scan of src's own links. Every change bumps `version` and drops the
cache; callers that keep derived state key it by `version` too.

Parallel links are kept, each an equal-cost next hop. A self-loop (a cable
between two ports of one switch) is kept too, so its ports count as fabric
ports, never host ports, but it carries no path and no tree edge. A port
is expected on at most one link; should discovery report two, both are
kept and the port is listed once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["Graph", "Link", "NoPath"]


class NoPath(LookupError):
    """No path from src to dst: different components, or an unknown switch."""


@dataclass(frozen=True, order=True)
class Link:
    """One undirected link between two switch ports, (a, a_port) < (b, b_port).
    Build it with `Link.between`, which puts the ends in that order."""

    a: int
    a_port: int
    b: int
    b_port: int

    def __post_init__(self) -> None:
        if (self.a, self.a_port) >= (self.b, self.b_port):
            raise ValueError(f"{self}: ends must be in order and distinct; use Link.between")

    @classmethod
    def between(cls, dpid1: int, port1: int, dpid2: int, port2: int) -> Link:
        if (dpid1, port1) > (dpid2, port2):
            dpid1, port1, dpid2, port2 = dpid2, port2, dpid1, port1
        return cls(dpid1, port1, dpid2, port2)

    def port_on(self, dpid: int) -> int:
        """This link's port on switch dpid (for a self-loop, the a end's)."""
        if dpid == self.a:
            return self.a_port
        if dpid == self.b:
            return self.b_port
        raise ValueError(f"switch {dpid} is not an end of {self}")

    def peer_of(self, dpid: int) -> tuple[int, int]:
        """(dpid, port) at the other end from switch dpid."""
        if dpid == self.a:
            return self.b, self.b_port
        if dpid == self.b:
            return self.a, self.a_port
        raise ValueError(f"switch {dpid} is not an end of {self}")


class Graph:
    """Switches joined by unit-cost links. `switches` and `links` are for
    reading; change them through the methods, which keep `version`."""

    def __init__(self) -> None:
        self.switches: set[int] = set()
        self.links: set[Link] = set()
        self.version = 0
        self._adj: dict[int, set[Link]] = {}
        self._dist: dict[int, dict[int, int]] = {}  # dst -> distances, valid for this version

    def _changed(self) -> None:
        self.version += 1
        self._dist.clear()

    def add_switch(self, dpid: int) -> bool:
        """False when already there."""
        if dpid in self.switches:
            return False
        self.switches.add(dpid)
        self._adj[dpid] = set()
        self._changed()
        return True

    def remove_switch(self, dpid: int) -> bool:
        """Removes its links too; False when not there."""
        if dpid not in self.switches:
            return False
        for link in sorted(self._adj[dpid]):
            self.remove_link(link)
        del self._adj[dpid]
        self.switches.remove(dpid)
        self._changed()
        return True

    def add_link(self, link: Link) -> bool:
        """Adds its switches if needed; False when the link is already there."""
        if link in self.links:
            return False
        for dpid in (link.a, link.b):
            if dpid not in self.switches:
                self.switches.add(dpid)
                self._adj[dpid] = set()
        self.links.add(link)
        self._adj[link.a].add(link)
        self._adj[link.b].add(link)
        self._changed()
        return True

    def remove_link(self, link: Link) -> bool:
        """Its switches stay; False when the link is not there."""
        if link not in self.links:
            return False
        self.links.remove(link)
        self._adj[link.a].discard(link)
        self._adj[link.b].discard(link)
        self._changed()
        return True

    def links_of(self, dpid: int) -> list[Link]:
        return sorted(self._adj.get(dpid, ()))

    def fabric_ports(self, dpid: int) -> set[int]:
        """Ports of dpid at an end of some link (both ports of a self-loop)."""
        ports = set()
        for link in self._adj.get(dpid, ()):
            if link.a == dpid:
                ports.add(link.a_port)
            if link.b == dpid:
                ports.add(link.b_port)
        return ports

    def _bfs(self, dst: int) -> dict[int, int]:
        if dst not in self.switches:
            return {}
        dist = {dst: 0}
        queue = deque([dst])
        while queue:
            here = queue.popleft()
            for link in self._adj[here]:
                peer = link.peer_of(here)[0]  # a self-loop's peer is here: already seen
                if peer not in dist:
                    dist[peer] = dist[here] + 1
                    queue.append(peer)
        return dist

    def _distances(self, dst: int) -> dict[int, int]:
        dist = self._dist.get(dst)
        if dist is None:
            dist = self._dist[dst] = self._bfs(dst)
        return dist

    def distances_to(self, dst: int) -> dict[int, int]:
        """Hops to dst from every switch that reaches it (dst itself: 0)."""
        return dict(self._distances(dst))

    def _steps(self, src: int, dst: int) -> list[tuple[int, int]]:
        """(port, neighbour) for each link of src one hop closer to dst, sorted."""
        dist = self._distances(dst)
        here = dist.get(src)
        if not here:  # unreachable (None) or src == dst (0)
            return []
        steps = []
        for link in self._adj[src]:
            peer = link.peer_of(src)[0]
            if dist.get(peer) == here - 1:
                steps.append((link.port_on(src), peer))
        return sorted(steps)

    def next_hops(self, src: int, dst: int) -> list[int]:
        """Ports on src on some shortest path to dst, sorted; [] when src is
        dst or cannot reach it."""
        return sorted({port for port, _ in self._steps(src, dst)})

    def backup_hops(self, src: int, dst: int) -> list[int]:
        """Loop-free alternates: ports on src, not next hops, to a neighbour N
        with dist(N, dst) < dist(N, src) + dist(src, dst); ordered by
        (dist(N, dst), port)."""
        to_dst = self._distances(dst)
        here = to_dst.get(src)
        if not here:
            return []
        to_src = self._distances(src)
        primary = set(self.next_hops(src, dst))
        best: dict[int, int] = {}  # port -> dist(N, dst)
        for link in self._adj[src]:
            port, peer = link.port_on(src), link.peer_of(src)[0]
            if peer == src or port in primary:
                continue
            if to_dst[peer] < to_src[peer] + here:
                best[port] = min(best.get(port, to_dst[peer]), to_dst[peer])
        return sorted(best, key=lambda port: (best[port], port))

    def tree_ports(self) -> dict[int, set[int]]:
        """A spanning forest: for every switch, its ports on tree links.

        BFS from the lowest dpid of each component; a switch's neighbours in
        increasing dpid, each joined by the lowest (by Link order) of the
        parallel links to it. So the same graph always gives the same tree."""
        ports: dict[int, set[int]] = {dpid: set() for dpid in self.switches}
        seen: set[int] = set()
        for root in sorted(self.switches):
            if root in seen:
                continue
            seen.add(root)
            queue = deque([root])
            while queue:
                here = queue.popleft()
                lowest: dict[int, Link] = {}  # neighbour -> lowest link to it
                for link in self.links_of(here):
                    lowest.setdefault(link.peer_of(here)[0], link)
                for peer in sorted(lowest):
                    if peer not in seen:  # also skips a self-loop
                        seen.add(peer)
                        queue.append(peer)
                        ports[here].add(lowest[peer].port_on(here))
                        ports[peer].add(lowest[peer].port_on(peer))
        return ports

    def path(self, src: int, dst: int) -> list[tuple[int, int]]:
        """One shortest path as [(dpid, out_port), ...] from src, taking the
        lowest next-hop port at each step; [] when src is dst. Raises NoPath
        when dst cannot be reached (or either switch is unknown)."""
        if src not in self._distances(dst):
            raise NoPath(f"no path from switch {src} to switch {dst}")
        hops = []
        while src != dst:
            port, peer = self._steps(src, dst)[0]
            hops.append((src, port))
            src = peer
        return hops
