"""Topology files: validation errors name file, line and field (no root needed)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kumoflow.net.errors import TopologyError
from kumoflow.net.switches import SWITCH_KINDS, SwitchKind, register_kind
from kumoflow.net.topology import default_name, load_topology, parse_controller, parse_topology

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

GOOD = """\
name: lab
controller: tcp:127.0.0.1:6653
switches:
  - {name: s1}
  - {name: s2, dpid: 7, fail_mode: standalone}
hosts:
  - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24, gateway: 10.0.0.254}
  - {name: h2, mac: "00:00:00:00:00:02", ip: 10.0.0.2/24}
links:
  - {src: h1, dst: s1}
  - {src: s1, dst: s2, src_port: 5}
  - {src: h2, dst: s2}
"""


def errors_of(text: str, filename: str = "topo.yaml") -> list[str]:
    with pytest.raises(TopologyError) as info:
        parse_topology(textwrap.dedent(text), filename)
    return [str(issue) for issue in info.value.issues]


def marked_line(text: str) -> int:
    """1-based line of the line carrying the ``#!`` marker."""
    for number, line in enumerate(textwrap.dedent(text).splitlines(), 1):
        if "#!" in line:
            return number
    raise AssertionError("no #! marker")


# -- valid files ---------------------------------------------------------------


def test_examples_are_valid():
    single = load_topology(EXAMPLES / "single.yaml")
    assert single.name == "single"
    assert [h.name for h in single.hosts] == ["h1", "h2", "h3", "h4"]
    assert [str(h.ip) for h in single.hosts] == [f"10.0.0.{i}/24" for i in range(1, 5)]
    assert [s.name for s in single.switches] == ["s1"]
    assert single.controllers == ("tcp:127.0.0.1:6653",)
    assert [link.dst.port for link in single.links] == [1, 2, 3, 4]

    tree = load_topology(EXAMPLES / "tree.yaml")
    assert [s.name for s in tree.switches] == ["s1", "s2", "s3"]
    assert [s.dpid for s in tree.switches] == [1, 2, 3]
    attached = {
        (link.src.node if tree.is_host(link.src.node) else None): link.dst.node
        for link in tree.links
        if tree.is_host(link.src.node)
    }
    assert attached == {"h1": "s2", "h2": "s2", "h3": "s2", "h4": "s3", "h5": "s3", "h6": "s3"}
    uplinks = [(link.src.node, link.dst.node) for link in tree.links if not tree.is_host(link.src.node)]
    assert uplinks == [("s1", "s2"), ("s1", "s3")]



def _switch_links(topo):
    """{(switch, port): (switch, port)} for every switch-to-switch link, both ways."""
    ends = {}
    for link in topo.links:
        if not topo.is_host(link.src.node) and not topo.is_host(link.dst.node):
            a, b = (link.src.node, link.src.port), (link.dst.node, link.dst.port)
            ends[a], ends[b] = b, a
    return ends


def _host_ports(topo):
    """{host: (switch, port)}"""
    out = {}
    for link in topo.links:
        host, sw = (link.src, link.dst) if topo.is_host(link.src.node) else (link.dst, link.src)
        if topo.is_host(host.node):
            out[host.node] = (sw.node, sw.port)
    return out


def test_fattree_example_is_a_k4_fat_tree():
    topo = load_topology(EXAMPLES / "fattree.yaml")
    assert len(topo.switches) == 20 and len(topo.hosts) == 16
    assert {s.fail_mode for s in topo.switches} == {"secure"}
    layer = {"c": 1, "a": 2, "e": 3}
    for s in topo.switches:
        assert s.dpid == 0x100 * layer[s.name[0]] + int(s.name[1:]), s.name
    for i in range(1, 17):
        h = topo.host(f"h{i}")
        assert (h.mac, str(h.ip)) == (f"00:00:00:00:00:{i:02x}", f"10.0.0.{i}/24")
    assert _host_ports(topo) == {f"h{h}": (f"e{(h + 1) // 2}", (h - 1) % 2 + 1) for h in range(1, 17)}
    wired = _switch_links(topo)
    expected = {}
    for pod in range(1, 5):
        for j in (1, 2):                      # aggregation switch j of the pod
            agg = f"a{2 * pod - 2 + j}"
            for i in (1, 2):                  # edge switch i of the pod
                expected[(agg, i)] = (f"e{2 * pod - 2 + i}", 2 + j)
            for up in (3, 4):                 # to core 2j-1 (port 3) and 2j (port 4)
                expected[(agg, up)] = (f"c{2 * j - 4 + up}", pod)
    expected.update({v: k for k, v in expected.items()})
    assert wired == expected
    ports = {}
    for (sw, port) in list(wired) + list(_host_ports(topo).values()):
        ports.setdefault(sw, set()).add(port)
    assert all(p == {1, 2, 3, 4} for p in ports.values()) and len(ports) == 20


def test_ring_example_is_a_ring():
    topo = load_topology(EXAMPLES / "ring.yaml")
    assert [s.dpid for s in topo.switches] == [1, 2, 3, 4, 5, 6]
    assert {s.fail_mode for s in topo.switches} == {"secure"}
    wired = _switch_links(topo)
    for i in range(1, 7):
        assert wired[(f"s{i}", 1)] == (f"s{i % 6 + 1}", 2)
    assert len(wired) == 12
    hosts = _host_ports(topo)
    assert hosts == {**{f"h{i}": (f"s{i}", 3) for i in range(1, 7)}, "h7": ("s1", 4), "h8": ("s4", 4)}


def test_mesh_example_mixes_kinds_with_redundant_links():
    topo = load_topology(EXAMPLES / "mesh.yaml")
    kinds = {s.name: s.kind for s in topo.switches}
    assert kinds == {"s1": "kumoflow", "s2": "kumoflow", "s3": "ovs", "s4": "ovs", "s5": "kumoflow"}
    assert {s.fail_mode for s in topo.switches} == {"secure"}
    assert [s.dpid for s in topo.switches] == [1, 2, 3, 4, 5]
    wired = _switch_links(topo)
    # port N goes to sN; a second parallel link uses 10 + N
    for (sw, port), (peer, _) in wired.items():
        assert int(peer[1:]) == port % 10, (sw, port, peer)
    assert wired[("s2", 13)] == ("s3", 12)
    assert len(wired) == 18
    # host ports are 100 + the host's number
    assert all(port == 100 + int(h[1:]) for h, (_, port) in _host_ports(topo).items())

def test_good_file_model():
    topo = parse_topology(GOOD, "lab.yaml")
    assert topo.source == "lab.yaml"
    s1, s2 = topo.switches
    assert (s1.dpid, s1.fail_mode, s1.kind, s1.protocols) == (1, "secure", "ovs", ("OpenFlow13",))
    assert (s2.dpid, s2.fail_mode) == (7, "standalone")
    h1 = topo.host("h1")
    assert (h1.mac, str(h1.ip), str(h1.gateway)) == ("00:00:00:00:00:01", "10.0.0.1/24", "10.0.0.254")
    assert topo.host("h2").gateway is None
    # auto-numbered ports: lowest free per switch, explicit ones kept
    ports = [(link.src.port, link.dst.port) for link in topo.links]
    assert ports == [(None, 1), (5, 1), (None, 2)]
    assert topo.offloads is False


def test_yaml_1_1_traps_stay_strings():
    # 10:00:00:00:00:01 is a base-60 integer in YAML 1.1; it must stay a MAC
    text = GOOD.replace('"00:00:00:00:00:01"', "10:00:00:00:00:01")
    assert parse_topology(text).host("h1").mac == "10:00:00:00:00:01"


def test_dpid_forms_and_defaults():
    topo = parse_topology(textwrap.dedent("""\
        switches:
          - {name: s3}
          - {name: core}
          - {name: s9, dpid: "00:00:00:00:00:00:00:0a"}
          - {name: x, dpid: 0x20}
          - {name: s10, dpid: 3}
          - {name: s1}
        """))
    assert {s.name: s.dpid for s in topo.switches} == {
        "s3": 2,    # 3 is taken explicitly by s10: lowest free
        "core": 4,  # no digits: lowest free (1 is s1's by its name)
        "s9": 10,
        "x": 32,
        "s10": 3,
        "s1": 1,
    }


def test_controller_targets():
    assert parse_controller("tcp:127.0.0.1") == ("tcp:127.0.0.1:6653", None)
    assert parse_controller("ssl:10.0.0.1:6633") == ("ssl:10.0.0.1:6633", None)
    assert parse_controller("tcp:[::1]:7000") == ("tcp:[::1]:7000", None)
    assert parse_controller("unix:/run/c.sock") == ("unix:/run/c.sock", None)
    for bad in ("127.0.0.1:6653", "tcp:localhost:6653", "tcp:1.2.3.4:70000", "udp:1.2.3.4", "tcp:::1"):
        assert parse_controller(bad)[1] is not None, bad


def test_controller_forms_in_file():
    text = GOOD.replace("  - {name: s1}", "  - {name: s1, controller: [tcp:10.0.0.9, ssl:10.0.0.8:1]}")
    text = text.replace("fail_mode: standalone}", "fail_mode: standalone, controller: none}")
    topo = parse_topology(text)
    s1, s2 = topo.switches
    assert topo.controllers_of(s1) == ("tcp:10.0.0.9:6653", "ssl:10.0.0.8:1")
    assert topo.controllers_of(s2) == ()


def test_max_backoff_default_file_and_switch():
    topo = parse_topology(GOOD)
    assert topo.max_backoff == 1
    assert [topo.max_backoff_of(s) for s in topo.switches] == [1, 1]
    text = GOOD.replace("controller: tcp:127.0.0.1:6653\n", "controller: tcp:127.0.0.1:6653\nmax_backoff: 8\n")
    text = text.replace("  - {name: s1}", "  - {name: s1, max_backoff: 2}")
    topo = parse_topology(text)
    assert topo.max_backoff == 8
    assert [topo.max_backoff_of(s) for s in topo.switches] == [2, 8]


def test_overrides():
    topo = parse_topology(GOOD).with_overrides(name="other", fail_mode="standalone", controllers=[])
    assert topo.name == "other"
    assert {s.fail_mode for s in topo.switches} == {"standalone"}
    assert all(topo.controllers_of(s) == () for s in topo.switches)
    with pytest.raises(TopologyError, match="fail_mode"):
        topo.with_overrides(fail_mode="open")
    with pytest.raises(TopologyError, match="name"):
        topo.with_overrides(name="bad name")


def test_default_name_from_file(tmp_path):
    assert default_name("my topo.yaml") == "my-topo"
    assert default_name("/x/tree.yml") == "tree"
    path = tmp_path / "office.yaml"
    path.write_text(GOOD.replace("name: lab\n", ""))
    assert load_topology(path).name == "office"


def test_merge_keys_expand():
    text = textwrap.dedent("""\
        switches:
          - &base {name: s1, fail_mode: standalone}
          - {<<: *base, name: s2}
        """)
    topo = parse_topology(text)
    assert [(s.name, s.fail_mode) for s in topo.switches] == [("s1", "standalone"), ("s2", "standalone")]


# -- errors: file:line: field: message ---------------------------------------

CASES = {
    "unknown node": (
        """\
        switches: [{name: s1}]
        hosts:
          - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24}
        links:
          - {src: h1, dst: s1}
          - {src: s1, dst: h9}   #!
        """,
        "links[1].dst: unknown node 'h9'",
    ),
    "duplicate name across hosts and switches": (
        """\
        switches: [{name: s1}]
        hosts:
          - {name: s1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24}   #!
        """,
        "hosts[0].name: duplicate name 's1' (also switches[0], line 1)",
    ),
    "bad mac": (
        """\
        hosts:
          - name: h1
            mac: 00:00:00:00:01    #!
            ip: 10.0.0.1/24
        """,
        "hosts[0].mac: '00:00:00:00:01' is not a MAC address",
    ),
    "multicast mac": (
        """\
        hosts:
          - {name: h1, mac: "01:00:5e:00:00:01", ip: 10.0.0.1/24}   #!
        """,
        "hosts[0].mac: 01:00:5e:00:00:01 is a multicast address",
    ),
    "duplicate mac": (
        """\
        hosts:
          - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24}
          - {name: h2, mac: "00:00:00:00:00:01", ip: 10.0.0.2/24}   #!
        """,
        "hosts[1].mac: MAC 00:00:00:00:00:01 is already used by hosts[0]",
    ),
    "ip without prefix": (
        """\
        hosts:
          - name: h1
            mac: "00:00:00:00:00:01"
            ip: 10.0.0.1   #!
        """,
        "hosts[0].ip: '10.0.0.1' needs a prefix length",
    ),
    "bad ip": (
        """\
        hosts:
          - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.300/24}   #!
        """,
        "hosts[0].ip: '10.0.0.300/24' is not an IP address",
    ),
    "network address": (
        """\
        hosts:
          - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.0/24}   #!
        """,
        "hosts[0].ip: 10.0.0.0 is the network address of 10.0.0.0/24",
    ),
    "duplicate ip": (
        """\
        hosts:
          - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24}
          - {name: h2, mac: "00:00:00:00:00:02", ip: 10.0.0.1/16}   #!
        """,
        "hosts[1].ip: address 10.0.0.1 is already used by hosts[0]",
    ),
    "gateway outside subnet": (
        """\
        hosts:
          - name: h1
            mac: "00:00:00:00:00:01"
            ip: 10.0.0.1/24
            gateway: 10.0.1.1   #!
        """,
        "hosts[0].gateway: 10.0.1.1 is not in the host's subnet 10.0.0.0/24",
    ),
    "unknown key with suggestion": (
        """\
        links:
          - src: h1
            dst: s1
            dst_prot: 3   #!
        """,
        "links[0].dst_prot: unknown field (allowed: src, dst, src_port, dst_port); did you mean 'dst_port'?",
    ),
    "unknown top-level key": (
        """\
        hosts: []
        swiches: []   #!
        """,
        "swiches: unknown field",
    ),
    "missing required field": (
        """\
        switches:
          - {name: s1}
        hosts:
          - {name: h1, ip: 10.0.0.1/24}   #!
        """,
        "hosts[0].mac: missing required field",
    ),
    "port used twice": (
        """\
        switches: [{name: s1}]
        hosts:
          - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24}
          - {name: h2, mac: "00:00:00:00:00:02", ip: 10.0.0.2/24}
        links:
          - {src: h1, dst: s1, dst_port: 1}
          - {src: h2, dst: s1, dst_port: 1}   #!
        """,
        "links[1].dst_port: port 1 of 's1' is already used by links[0]",
    ),
    "port out of range": (
        """\
        switches: [{name: s1}]
        hosts:
          - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24}
        links:
          - {src: h1, dst: s1, dst_port: 65280}   #!
        """,
        "links[0].dst_port: 65280 is out of range 1..65279",
    ),
    "port on a host end": (
        """\
        switches: [{name: s1}]
        hosts:
          - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24}
        links:
          - {src: h1, src_port: 2, dst: s1}   #!
        """,
        "links[0].src_port: 'h1' is a host; ports are numbered only on switch ends",
    ),
    "host with two links": (
        """\
        switches: [{name: s1}, {name: s2}]
        hosts:
          - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24}
        links:
          - {src: h1, dst: s1}
          - {src: h1, dst: s2}   #!
        """,
        "links[1].src: host 'h1' already has a link (links[0])",
    ),
    "host without link": (
        """\
        switches: [{name: s1}]
        hosts:
          - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24}   #!
        """,
        "hosts[0].name: host 'h1' has no link",
    ),
    "self loop": (
        """\
        switches: [{name: s1}]
        links:
          - {src: s1, dst: s1}   #!
        """,
        "links[0]: a link cannot connect 's1' to itself",
    ),
    "host to host": (
        """\
        hosts:
          - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24}
          - {name: h2, mac: "00:00:00:00:00:02", ip: 10.0.0.2/24}
        links:
          - {src: h1, dst: h2}   #!
        """,
        "links[0]: a link needs at least one switch end",
    ),
    "unknown switch kind": (
        """\
        switches:
          - {name: s1, kind: cisco}   #!
        """,
        "switches[0].kind: unknown switch kind 'cisco' (known: kumoflow, ovs",
    ),
    "bad fail mode": (
        """\
        switches:
          - {name: s1, fail_mode: open}   #!
        """,
        "switches[0].fail_mode: 'open' is not one of secure, standalone",
    ),
    "duplicate dpid": (
        """\
        switches:
          - {name: s1, dpid: 5}
          - {name: s2, dpid: 5}   #!
        """,
        "switches[1].dpid: dpid 0x5 is already used by switch 's1'",
    ),
    "bad dpid": (
        """\
        switches:
          - {name: s1, dpid: "xyz"}   #!
        """,
        "switches[0].dpid: 'xyz' is not a datapath id",
    ),
    "bad protocol": (
        """\
        switches:
          - {name: s1, protocols: [OpenFlow13, OpenFlow19]}   #!
        """,
        "switches[0].protocols[1]: 'OpenFlow19' is not one of",
    ),
    "bad controller": (
        """\
        controller: 127.0.0.1:6653   #!
        """,
        "controller: '127.0.0.1:6653' is not tcp:IP[:PORT]",
    ),
    "bad node name": (
        """\
        switches:
          - {name: s-1}   #!
        """,
        "switches[0].name: 's-1' is not a valid node name",
    ),
    "bad topology name": (
        """\
        name: "my lab"   #!
        """,
        "name: 'my lab' is not a valid topology name",
    ),
    "duplicate key": (
        """\
        switches:
          - name: s1
            name: s2   #!
        """,
        "switches[0].name: duplicate key (first given on line 2)",
    ),
    "wrong type": (
        """\
        hosts: {name: h1}   #!
        """,
        "hosts: expected a list, got a mapping",
    ),
    "integer expected": (
        """\
        switches: [{name: s1}]
        hosts:
          - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24}
        links:
          - {src: h1, dst: s1, dst_port: "one"}   #!
        """,
        "links[0].dst_port: expected an integer, got 'one'",
    ),
    "offloads not a boolean": (
        """\
        offloads: sometimes   #!
        """,
        "offloads: expected true or false, got 'sometimes'",
    ),
    "max_backoff out of range": (
        """\
        max_backoff: 0   #!
        """,
        "max_backoff: 0 is out of range 1..3600",
    ),
    "max_backoff not whole seconds": (
        """\
        switches:
          - {name: s1, max_backoff: 0.5}   #!
        """,
        "switches[0].max_backoff: expected an integer, got '0.5'",
    ),
    "top level not a mapping": (
        """\
        - just a list   #!
        """,
        "expected a mapping, got a list",
    ),
    "invalid yaml": (
        """\
        hosts:
          - {name: h1, mac: [
        switches: oops: here   #!
        """,
        "invalid YAML",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_error_names_file_line_and_field(case):
    text, expected = CASES[case]
    line = marked_line(text)
    issues = errors_of(text, "topo.yaml")
    wanted = f"topo.yaml:{line}: {expected}"
    assert any(issue.startswith(wanted) for issue in issues), "\n".join(issues)


def test_brief_example_message():
    text = """\
    name: x
    switches: [{name: s1}, {name: s2}]
    hosts:
      - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24}
      - {name: h2, mac: "00:00:00:00:00:02", ip: 10.0.0.2/24}
      - {name: h3, mac: "00:00:00:00:00:03", ip: 10.0.0.3/24}
    links:
      - {src: h1, dst: s1}
      - {src: h2, dst: s1}
      - {src: h3, dst: s2}
      - src: s1
        dst: h9
    """
    assert errors_of(text) == ["topo.yaml:12: links[3].dst: unknown node 'h9'"]


def test_all_errors_reported_at_once_in_line_order():
    text = """\
    name: ok
    switches:
      - {name: s1, fail_mode: open}
    hosts:
      - {name: h1, mac: "zz", ip: 10.0.0.1/24}
      - {name: h2, mac: "00:00:00:00:00:02", ip: nope}
    links:
      - {src: h1, dst: s1}
      - {src: h2, dst: s1, dst_port: 0}
    """
    with pytest.raises(TopologyError) as info:
        parse_topology(textwrap.dedent(text), "t.yaml")
    lines = str(info.value).splitlines()
    assert [line.split(":")[1] for line in lines] == ["3", "5", "6", "9"]
    assert lines[0].startswith("t.yaml:3: switches[0].fail_mode:")
    assert lines[3].startswith("t.yaml:9: links[1].dst_port: 0 is out of range")


def test_empty_and_unreadable_files(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(TopologyError, match=r"empty.yaml:1: the file is empty"):
        load_topology(empty)
    with pytest.raises(TopologyError, match=r"missing.yaml: cannot read"):
        load_topology(tmp_path / "missing.yaml")


def test_error_is_a_value_error_and_names_the_path(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("switches:\n  - {name: s1, kind: nope}\n")
    with pytest.raises(ValueError) as info:
        load_topology(path)
    assert str(info.value).startswith(f"{path}:2: switches[0].kind:")


def test_a_registered_kind_is_accepted():
    class Fake(SwitchKind):
        name = "fake"

        def check(self): ...
        def up(self, switch): return {}
        def down(self, record): return []
        def sweep(self, topology, prefix): return []
        def leftovers(self, topology, prefix): return []

    register_kind("fake", Fake)
    try:
        topo = parse_topology("switches: [{name: s1, kind: fake}]\n")
        assert topo.switches[0].kind == "fake"
    finally:
        SWITCH_KINDS.pop("fake")
