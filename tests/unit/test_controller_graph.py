"""The topology graph: exact answers on hand-made topologies (a line,
rings, a k=4 fat-tree, parallel links, self-loops, a disconnected graph),
and on random small multigraphs the same answers as brute force: distances
against Floyd-Warshall, next hops against the first hops of every shortest
simple path found by enumeration, backups against the RFC 5286 inequality
and against the paths they lead to; the spanning forest is a forest that
spans; next hops always lead to dst in exactly dist steps."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kumoflow.controller.graph import Graph, Link, NoPath

SETTINGS = settings(max_examples=200, deadline=None)
INF = float("inf")


def graph_of(*links: tuple[int, int, int, int], switches: tuple[int, ...] = ()) -> Graph:
    g = Graph()
    for dpid in switches:
        g.add_switch(dpid)
    for link in links:
        g.add_link(Link.between(*link))
    return g


def line(n: int) -> Graph:
    """1 - 2 - ... - n; port 2 towards higher dpids, port 1 towards lower."""
    return graph_of(*[(i, 2, i + 1, 1) for i in range(1, n)])


def ring(n: int) -> Graph:
    """A line 1..n closed by n:2 - 1:1."""
    return graph_of(*[(i, 2, i % n + 1, 1) for i in range(1, n + 1)])


def core(c: int) -> int: return 100 + c
def agg(p: int, i: int) -> int: return 200 + 10 * p + i
def edge(p: int, j: int) -> int: return 300 + 10 * p + j


def fat_tree() -> Graph:
    """k=4: 4 cores, 4 pods of 2 aggregation and 2 edge switches (20 switches).
    edge(p, j) port 3+i - agg(p, i) port 1+j; agg(p, i) port 3+m - core(2i+m)
    port p+1. Edge ports 1 and 2 are for hosts."""
    g = Graph()
    for p, i, j in itertools.product(range(4), range(2), range(2)):
        g.add_link(Link.between(edge(p, j), 3 + i, agg(p, i), 1 + j))
    for p, i, m in itertools.product(range(4), range(2), range(2)):
        g.add_link(Link.between(agg(p, i), 3 + m, core(2 * i + m), p + 1))
    return g


# -- Link ---------------------------------------------------------------------

def test_link_is_normalized_and_answers_for_both_ends():
    link = Link.between(7, 3, 2, 9)
    assert link == Link(2, 9, 7, 3) == Link.between(2, 9, 7, 3)
    assert len({link, Link.between(2, 9, 7, 3)}) == 1
    assert (link.port_on(7), link.port_on(2)) == (3, 9)
    assert (link.peer_of(7), link.peer_of(2)) == ((2, 9), (7, 3))
    with pytest.raises(ValueError):
        link.port_on(5)
    with pytest.raises(ValueError):
        link.peer_of(5)
    with pytest.raises(ValueError):
        Link(7, 3, 2, 9)  # out of order: only between() may take any order
    with pytest.raises(ValueError):
        Link.between(4, 1, 4, 1)
    assert Link.between(4, 2, 4, 1) == Link(4, 1, 4, 2)  # a self-loop is a link
    assert sorted([Link(2, 5, 3, 1), Link(1, 9, 9, 9), Link(2, 4, 3, 2)]) == [
        Link(1, 9, 9, 9), Link(2, 4, 3, 2), Link(2, 5, 3, 1)]


# -- changes and the cache ----------------------------------------------------

def test_changes_bump_version_and_no_ops_do_not():
    g = Graph()
    assert g.version == 0
    assert g.add_switch(1) and g.version == 1
    assert not g.add_switch(1) and g.version == 1
    link = Link.between(1, 1, 2, 1)
    assert g.add_link(link) and g.version == 2
    assert g.switches == {1, 2} and g.links == {link}  # a link brings its switches
    assert not g.add_link(Link.between(2, 1, 1, 1)) and g.version == 2
    assert g.remove_link(link) and g.version == 3 and g.switches == {1, 2}
    assert not g.remove_link(link) and g.version == 3
    assert not g.remove_switch(9) and g.version == 3


def test_remove_switch_removes_its_links():
    g = graph_of((1, 1, 2, 1), (2, 2, 3, 1), (2, 3, 3, 2), (1, 2, 3, 3))
    v = g.version
    assert g.remove_switch(2)
    assert g.version > v
    assert g.switches == {1, 3}
    assert g.links == {Link(1, 2, 3, 3)}
    assert g.links_of(1) == [Link(1, 2, 3, 3)]
    assert g.fabric_ports(3) == {3}
    assert g.links_of(2) == [] and g.fabric_ports(2) == set()
    assert g.next_hops(1, 3) == [2]


def test_distances_are_computed_once_per_destination_and_version(monkeypatch):
    searches = []
    real = Graph._bfs
    monkeypatch.setattr(Graph, "_bfs", lambda self, dst: searches.append(dst) or real(self, dst))
    g = fat_tree()
    for _ in range(2):
        for src, dst in itertools.product(sorted(g.switches), repeat=2):
            g.next_hops(src, dst)
            g.backup_hops(src, dst)
            g.distances_to(dst)
    assert sorted(searches) == sorted(g.switches)  # 20 searches for 2 x 400 pairs
    # a change drops the cache: the new link is seen at once
    assert g.next_hops(edge(0, 0), edge(1, 0)) == [3, 4]
    g.add_link(Link.between(edge(0, 0), 5, edge(1, 0), 5))
    assert g.next_hops(edge(0, 0), edge(1, 0)) == [5]
    assert g.distances_to(edge(1, 0))[edge(0, 0)] == 1
    assert len(searches) == 21
    g.remove_link(Link.between(edge(0, 0), 5, edge(1, 0), 5))
    assert g.next_hops(edge(0, 0), edge(1, 0)) == [3, 4]


def test_distances_to_returns_a_copy():
    g = line(3)
    g.distances_to(3)[1] = 99
    assert g.distances_to(3) == {3: 0, 2: 1, 1: 2}


# -- hand-made topologies -----------------------------------------------------

def test_line():
    g = line(4)
    assert g.distances_to(4) == {4: 0, 3: 1, 2: 2, 1: 3}
    assert g.distances_to(2) == {2: 0, 1: 1, 3: 1, 4: 2}
    assert [g.next_hops(s, 4) for s in (1, 2, 3, 4)] == [[2], [2], [2], []]
    assert [g.next_hops(s, 1) for s in (1, 2, 3, 4)] == [[], [1], [1], [1]]
    assert g.path(1, 4) == [(1, 2), (2, 2), (3, 2)]
    assert g.path(4, 2) == [(4, 1), (3, 1)]
    assert g.path(3, 3) == []
    assert g.backup_hops(2, 4) == []
    assert g.links_of(2) == [Link(1, 2, 2, 1), Link(2, 2, 3, 1)]
    assert g.fabric_ports(1) == {2} and g.fabric_ports(2) == {1, 2}
    assert g.tree_ports() == {1: {2}, 2: {1, 2}, 3: {1, 2}, 4: {1}}


def test_ring_of_six_far_side_has_two_next_hops_and_no_backup():
    g = ring(6)
    assert g.distances_to(4) == {4: 0, 3: 1, 5: 1, 2: 2, 6: 2, 1: 3}
    assert g.next_hops(1, 4) == [1, 2]  # port 1 to 6, port 2 to 2: both 3 hops
    assert g.next_hops(1, 3) == [2]
    assert g.next_hops(6, 3) == [1, 2]
    assert g.path(1, 4) == [(1, 1), (6, 1), (5, 1)]  # lowest port at every step
    # going back from 6 to 3 through 1 costs 3 = 1 + 2: not loop-free
    assert g.backup_hops(1, 3) == []
    assert g.backup_hops(1, 4) == []
    # the tree cuts the ring once, on the far side from switch 1: BFS reaches 4
    # from 3 (lower dpid than 5, so first in the queue), leaving 4:2 - 5:1 out
    tree = g.tree_ports()
    assert tree == {1: {1, 2}, 2: {1, 2}, 3: {1, 2}, 4: {1}, 5: {2}, 6: {1, 2}}
    assert_spanning_forest(g, tree)


def test_odd_ring_and_triangle_have_loop_free_alternates():
    g = ring(5)
    assert g.next_hops(1, 3) == [2]
    assert g.backup_hops(1, 3) == [1]  # 5 is 2 hops from 3, as close as 1 is
    assert g.backup_hops(1, 2) == []   # from 5, 3 hops away: only back through 1
    tri = graph_of((1, 1, 2, 1), (2, 2, 3, 1), (1, 2, 3, 2))
    assert tri.next_hops(1, 3) == [2]
    assert tri.backup_hops(1, 3) == [1]
    assert tri.backup_hops(2, 3) == [1]
    assert tri.backup_hops(3, 3) == []


def test_fat_tree():
    g = fat_tree()
    assert len(g.switches) == 20 and len(g.links) == 32
    src, dst = edge(0, 0), edge(1, 0)
    assert g.distances_to(dst)[src] == 4
    assert g.next_hops(src, dst) == [3, 4]            # both aggregation switches
    assert g.next_hops(agg(0, 0), dst) == [3, 4]      # both its cores
    assert g.next_hops(agg(0, 1), dst) == [3, 4]
    assert g.next_hops(core(0), dst) == [2]           # down into pod 1 only
    assert g.next_hops(agg(1, 0), dst) == [1]
    assert g.next_hops(src, edge(0, 1)) == [3, 4]     # same pod: via either aggregation
    assert g.distances_to(edge(0, 1))[src] == 2
    assert g.next_hops(agg(0, 0), edge(0, 1)) == [2]
    assert g.path(src, dst) == [(src, 3), (agg(0, 0), 3), (core(0), 2), (agg(1, 0), 1)]
    # every pair: distances by layer, and no loop-free alternate anywhere up-down
    d = {s: g.distances_to(s) for s in g.switches}
    for p, q, j, k in itertools.product(range(4), range(4), range(2), range(2)):
        assert d[edge(q, k)][edge(p, j)] == (0 if (p, j) == (q, k) else 2 if p == q else 4)
        assert g.backup_hops(edge(p, j), edge(q, k)) == []
    assert_spanning_forest(g, g.tree_ports())
    assert g.fabric_ports(edge(2, 1)) == {3, 4} and g.fabric_ports(core(3)) == {1, 2, 3, 4}


def test_parallel_links():
    g = graph_of((1, 1, 2, 1), (1, 2, 2, 2), (2, 3, 3, 1))
    assert g.next_hops(1, 3) == [1, 2]
    assert g.next_hops(1, 2) == [1, 2]
    assert g.next_hops(3, 1) == [1]
    assert g.backup_hops(1, 3) == []  # the parallel link is a next hop, not a backup
    assert g.path(1, 3) == [(1, 1), (2, 3)]
    assert g.tree_ports() == {1: {1}, 2: {1, 3}, 3: {1}}
    g.remove_link(Link.between(1, 1, 2, 1))
    assert g.next_hops(1, 3) == [2]
    assert g.path(1, 3) == [(1, 2), (2, 3)]
    assert g.tree_ports() == {1: {2}, 2: {2, 3}, 3: {1}}


def test_self_loop_is_a_fabric_link_but_no_path_or_tree_edge():
    g = graph_of((1, 5, 1, 6), (1, 1, 2, 1))
    assert g.fabric_ports(1) == {1, 5, 6}
    assert g.links_of(1) == [Link(1, 1, 2, 1), Link(1, 5, 1, 6)]
    assert g.distances_to(1) == {1: 0, 2: 1}
    assert g.next_hops(1, 2) == [1] and g.backup_hops(1, 2) == []
    assert g.next_hops(1, 1) == []
    assert g.tree_ports() == {1: {1}, 2: {1}}
    lone = graph_of((7, 1, 7, 2))
    assert lone.tree_ports() == {7: set()} and lone.distances_to(7) == {7: 0}


def test_disconnected():
    g = graph_of((1, 1, 2, 1), (3, 1, 4, 1), switches=(5,))
    assert g.distances_to(3) == {3: 0, 4: 1}
    assert g.distances_to(5) == {5: 0}
    assert g.distances_to(9) == {}  # unknown switch: nobody reaches it
    assert g.next_hops(1, 3) == [] and g.backup_hops(1, 3) == []
    assert g.next_hops(1, 2) == [1]
    for src, dst in [(1, 3), (5, 1), (1, 9), (9, 9)]:
        with pytest.raises(NoPath):
            g.path(src, dst)
    with pytest.raises(LookupError):
        g.path(4, 2)
    assert g.path(5, 5) == []
    assert g.tree_ports() == {1: {1}, 2: {1}, 3: {1}, 4: {1}, 5: set()}
    assert_spanning_forest(g, g.tree_ports())


def test_tree_is_deterministic_bfs_with_lowest_parallel_link():
    # BFS from 1 meets 2 before 3 (lower dpid first), so 4 hangs off 2, not 3
    # (though 3's link to 4 was added first and 3 - 4 uses lower ports).
    # 5 hangs off 4 by the lowest Link: (4, 7, 5, 2) < (4, 8, 5, 1), though the
    # other has the lower port on 5. 7 is reached only from 8, a higher dpid:
    # (7, 2, 8, 9) < (7, 3, 8, 1) by Link order, though 8's lower port is 1.
    g = graph_of((3, 1, 4, 1), (1, 2, 3, 9), (1, 1, 2, 1), (2, 2, 4, 2),
                 (4, 8, 5, 1), (4, 7, 5, 2), (5, 3, 8, 5), (8, 1, 7, 3), (8, 9, 7, 2),
                 switches=(19, 18))
    assert g.tree_ports() == {1: {1, 2}, 2: {1, 2}, 3: {9}, 4: {2, 7}, 5: {2, 3}, 8: {5, 9}, 7: {2},
                              18: set(), 19: set()}
    assert_spanning_forest(g, g.tree_ports())


# -- brute force --------------------------------------------------------------

def floyd_warshall(switches, links) -> dict[int, dict[int, float]]:
    d = {u: {v: 0 if u == v else INF for v in switches} for u in switches}
    for link in links:
        if link.a != link.b:
            d[link.a][link.b] = d[link.b][link.a] = 1
    for k, i, j in itertools.product(switches, repeat=3):
        d[i][j] = min(d[i][j], d[i][k] + d[k][j])
    return d


def simple_paths(links, src, dst):
    """Every simple path from src to dst, as a list of (dpid, out_port, next dpid)."""
    def walk(here, seen, hops):
        if here == dst:
            yield hops
            return
        for link in links:
            if here in (link.a, link.b) and link.a != link.b:
                peer = link.peer_of(here)[0]
                if peer not in seen:
                    yield from walk(peer, seen | {peer}, hops + [(here, link.port_on(here), peer)])
    yield from walk(src, {src}, [])


def port_map(links) -> dict[tuple[int, int], int]:
    """(dpid, port) -> neighbour; ports are unique per switch in random graphs."""
    out = {}
    for link in links:
        out[link.a, link.a_port] = link.b
        out[link.b, link.b_port] = link.a
    return out


def components(switches, links) -> list[set[int]]:
    parent = {s: s for s in switches}

    def find(s):
        while parent[s] != s:
            s = parent[s]
        return s
    for link in links:
        parent[find(link.a)] = find(link.b)
    groups: dict[int, set[int]] = {}
    for s in switches:
        groups.setdefault(find(s), set()).add(s)
    return list(groups.values())


def assert_spanning_forest(g: Graph, tree: dict[int, set[int]]) -> None:
    """tree has every switch; its links are the links whose ports are on both
    ends' tree ports; they number switches - components, join each component
    and make no cycle (each joins two parts not yet joined)."""
    assert set(tree) == g.switches
    tree_links = [l for l in g.links if l.a != l.b and l.a_port in tree[l.a] and l.b_port in tree[l.b]]
    used = {(l.a, l.a_port) for l in tree_links} | {(l.b, l.b_port) for l in tree_links}
    assert used == {(s, p) for s, ports in tree.items() for p in ports}  # no stray port
    comps = components(g.switches, g.links)
    assert len(tree_links) == len(g.switches) - len(comps)
    parent = {s: s for s in g.switches}

    def find(s):
        while parent[s] != s:
            s = parent[s]
        return s
    for link in tree_links:
        ra, rb = find(link.a), find(link.b)
        assert ra != rb, f"tree link {link} closes a cycle"
        parent[ra] = rb
    assert sorted(map(sorted, components(g.switches, tree_links))) == sorted(map(sorted, comps))


@st.composite
def graphs(draw):
    """A random multigraph of 1-7 switches with parallel links and self-loops,
    ports numbered per switch in the order links arrive; queried once (so the
    cache is full), then changed by removals. Returns the graph and the
    switches and links it should hold, tracked apart from it."""
    dpids = draw(st.lists(st.integers(1, 40), min_size=1, max_size=7, unique=True))
    ends = draw(st.lists(st.tuples(st.sampled_from(dpids), st.sampled_from(dpids)), max_size=11))
    first = draw(st.integers(1, 3))
    next_port = dict.fromkeys(dpids, first)
    links = []
    for u, v in ends:
        pu = next_port[u]
        next_port[u] += 1
        pv = next_port[v]
        next_port[v] += 1
        links.append(Link.between(u, pu, v, pv))
    g = Graph()
    for dpid in dpids:
        g.add_switch(dpid)
    for link in links:
        assert g.add_link(link)
    for src, dst in itertools.product(dpids, repeat=2):
        g.next_hops(src, dst)
    switches = set(dpids)
    for link in draw(st.lists(st.sampled_from(links), max_size=3, unique=True)) if links else []:
        assert g.remove_link(link)
        links.remove(link)
    if len(dpids) > 1 and draw(st.booleans()):
        gone = draw(st.sampled_from(dpids))
        assert g.remove_switch(gone)
        switches.discard(gone)
        links = [l for l in links if gone not in (l.a, l.b)]
    assert g.switches == switches and g.links == set(links)
    return g, switches, links


@SETTINGS
@given(graphs())
def test_distances_and_next_hops_match_brute_force(case):
    g, switches, links = case
    fw = floyd_warshall(switches, links)
    for dst in switches:
        assert g.distances_to(dst) == {s: fw[s][dst] for s in switches if fw[s][dst] < INF}
    for src, dst in itertools.product(switches, repeat=2):
        paths = list(simple_paths(links, src, dst))
        if src == dst or not paths:
            assert g.next_hops(src, dst) == []
            continue
        shortest = min(map(len, paths))
        assert shortest == fw[src][dst]
        assert g.next_hops(src, dst) == sorted({p[0][1] for p in paths if len(p) == shortest})


@SETTINGS
@given(graphs())
def test_next_hops_reach_dst_in_exactly_dist_steps(case):
    g, switches, links = case
    peer = port_map(links)
    for src, dst in itertools.product(switches, repeat=2):
        dist = g.distances_to(dst).get(src)
        if dist is None:
            with pytest.raises(NoPath):
                g.path(src, dst)
            continue
        # every choice of next hop, all at once: dst is reached at step dist, not before
        frontier = {src}
        for _ in range(dist):
            assert dst not in frontier
            frontier = {peer[s, port] for s in frontier for port in g.next_hops(s, dst)}
            assert frontier
        assert frontier == {dst}
        # the one path: lowest next hop each step, dist hops, ending at dst
        path = g.path(src, dst)
        assert len(path) == dist
        here = src
        for dpid, port in path:
            assert dpid == here and port == g.next_hops(here, dst)[0]
            here = peer[dpid, port]
        assert here == dst


@SETTINGS
@given(graphs())
def test_backup_hops_are_the_loop_free_alternates(case):
    g, switches, links = case
    fw = floyd_warshall(switches, links)
    peer = port_map(links)
    for src, dst in itertools.product(switches, repeat=2):
        backups = g.backup_hops(src, dst)
        if src == dst or fw[src][dst] == INF:
            assert backups == []
            continue
        primary = g.next_hops(src, dst)
        assert not set(backups) & set(primary)
        expected = sorted((fw[peer[src, p]][dst], p) for p in g.fabric_ports(src)
                          if peer[src, p] != src and p not in primary
                          and fw[peer[src, p]][dst] < fw[peer[src, p]][src] + fw[src][dst])
        assert backups == [p for _, p in expected]
        for port in backups:
            n = peer[src, port]
            assert fw[n][dst] < fw[n][src] + fw[src][dst]
            # what loop-free means: no shortest path from N to dst passes src
            paths = list(simple_paths(links, n, dst))
            shortest = min(map(len, paths))
            assert all(src not in [hop[0] for hop in p] for p in paths if len(p) == shortest)


@SETTINGS
@given(graphs())
def test_tree_ports_are_a_spanning_forest(case):
    g, switches, links = case
    tree = g.tree_ports()
    assert_spanning_forest(g, tree)
    assert tree == g.tree_ports()  # deterministic
    for s in switches:
        assert tree[s] <= g.fabric_ports(s)
