"""Naming, plans, state records, ping matrices and the CLI's checks (no root)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from kumoflow.net import state
from kumoflow.net.links import offload_features
from kumoflow.net.ping import PingMatrix, PingResult
from kumoflow.net.plan import MAX_IFNAME, Names, interface_prefix, make_plan
from kumoflow.net.topology import load_topology, parse_topology

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KUMOFLOW_RUN_DIR", str(tmp_path / "run"))
    return tmp_path / "run"


# -- names ---------------------------------------------------------------------


def test_prefix_rules():
    assert interface_prefix("single") == "single"
    assert interface_prefix("t1") == "t1"
    long = interface_prefix("t3f9a2c01")
    assert len(long) == 6 and long.startswith("t3") and long != interface_prefix("t3f9a2c02")
    assert interface_prefix("Single") != "single"  # only exact lowercase names are kept
    assert interface_prefix("my-lab") != interface_prefix("mylab")
    assert interface_prefix("a-b") != "a-b"  # never a '-' inside: it separates the prefix


def test_names_fit_ifnamsiz_and_are_unique():
    names = Names("averyveryverylongtopologyname")
    produced = {
        names.bridge("switch_with_a_long_name"),
        names.port("switch_with_a_long_name", 65279),
        names.port("switch_with_a_long_name", 65278),
        names.host_end("host_with_a_long_name"),
        names.bridge("s1"),
        names.port("s1", 1),
    }
    assert len(produced) == 6
    for name in produced:
        assert len(name) <= MAX_IFNAME, name
        assert names.owns_ifname(name)
    assert Names("single").port("s1", 4) == "single-s1-4"
    assert Names("single").netns("h1") == "single-h1"


def test_netns_pattern_does_not_reach_other_topologies():
    pattern = Names("lab").netns_pattern()
    assert pattern.fullmatch("lab-h1")
    assert not pattern.fullmatch("lab-b-h1")  # host h1 of topology "lab-b"
    assert not pattern.fullmatch("lab2-h1")
    assert not pattern.fullmatch("xlab-h1")


def test_plan_of_tree_example():
    plan = make_plan(load_topology(EXAMPLES / "tree.yaml"))
    assert plan.namespaces() == [f"tree-h{i}" for i in range(1, 7)]
    s2 = next(s for s in plan.switches if s.name == "s2")
    assert s2.bridge == "tree-s2"
    assert [(p.number, p.ifname) for p in s2.ports] == [(i, f"tree-s2-{i}") for i in range(1, 5)]
    assert s2.controllers == ("tcp:127.0.0.1:6653",)
    h5 = next(h for h in plan.hosts if h.name == "h5")
    assert (h5.switch, h5.port, h5.ifname, h5.netns) == ("s3", 2, "eth0", "tree-h5")
    host_link = next(link for link in plan.links if link.b.node == "h1")
    assert (host_link.a.ifname, host_link.b.ifname, host_link.b.final_ifname) == ("tree-s2-1", "tree-h1", "eth0")
    trunk = plan.links[0]
    assert (trunk.a.ifname, trunk.b.ifname, trunk.b.netns) == ("tree-s1-1", "tree-s2-4", None)
    roots = plan.root_ifnames()
    assert len(roots) == len(set(roots)) == 8 * 2 + 3


def test_host_end_is_second_whatever_the_file_order():
    topo = parse_topology(textwrap.dedent("""\
        switches: [{name: s1}]
        hosts: [{name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24}]
        links: [{src: s1, dst: h1}]
        """))
    [link] = make_plan(topo).links
    assert (link.a.node, link.b.node, link.b.netns) == ("s1", "h1", "topo-h1")


# -- state records -------------------------------------------------------------------


def test_state_round_trip(run_dir):
    assert state.read("lab") is None
    assert state.all_records() == []
    path = state.write({"name": "lab", "hosts": {"h1": {"netns": "lab-h1"}}})
    assert path == run_dir / "lab.json"
    assert json.loads(path.read_text())["version"] == state.VERSION
    state.write({"name": "lab2", "hosts": {"h1": {"netns": "lab2-h1"}, "h2": {}}})
    assert [r["name"] for r in state.all_records()] == ["lab", "lab2"]
    assert [r["name"] for r in state.find_host("h1")] == ["lab", "lab2"]
    assert [r["name"] for r in state.find_host("h1", "lab2")] == ["lab2"]
    assert state.find_host("h2", "lab") == []
    (run_dir / "junk.json").write_text("{not json")
    assert [r["name"] for r in state.all_records()] == ["lab", "lab2"]
    state.remove("lab")
    state.remove("lab")  # absent: fine
    assert state.read("lab") is None
    assert not list(run_dir.glob(".*.tmp"))


# -- offloads, ping matrix -------------------------------------------------------


def test_offload_features_selected():
    features = [
        "tx-checksum-ip-generic", "tx-checksum-sctp", "tx-scatter-gather", "tx-tcp-segmentation",
        "tx-tcp6-segmentation", "tx-generic-segmentation", "tx-gso-list", "rx-gro", "rx-gro-list",
        "rx-checksum", "rx-udp-gro-forwarding", "highdma", "tx-vlan-hw-insert", "rx-vlan-hw-parse",
    ]
    off = offload_features(features)
    assert "highdma" not in off and "tx-vlan-hw-insert" not in off and "rx-vlan-hw-parse" not in off
    assert set(features) - set(off) == {"highdma", "tx-vlan-hw-insert", "rx-vlan-hw-parse"}


def test_ping_matrix():
    hosts = ["h1", "h2", "h3"]
    results = [
        PingResult(a, b, "x", not (a == "h3" and b == "h1"), 0.1, "")
        for a in hosts for b in hosts if a != b
    ]
    matrix = PingMatrix(hosts, results)
    assert matrix["h1", "h2"] and not matrix["h3", "h1"]
    assert not matrix.ok
    assert [(r.src, r.dst) for r in matrix.failures] == [("h3", "h1")]
    assert matrix.loss == pytest.approx(1 / 6)
    text = str(matrix)
    assert text.splitlines()[3] == "h3  X  .  -"
    assert "5/6 pairs reachable" in text


# -- the command line (checks that need no root) -------------------------------------


def kumoflow(monkeypatch, *argv):
    import kumoflow.cli as cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", ["kumoflow.net.cli"])
    return cli.main(list(argv))


def test_cli_up_check_reports_bad_file(monkeypatch, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("switches:\n  - {name: s1}\nlinks:\n  - {src: s1, dst: h9}\n")
    assert kumoflow(monkeypatch, "up", str(bad), "--check") == 2
    err = capsys.readouterr().err
    assert f"{bad}:4: links[0].dst: unknown node 'h9'" in err


def test_cli_up_check_shows_plan(monkeypatch, capsys):
    assert kumoflow(monkeypatch, "up", str(EXAMPLES / "single.yaml"), "--check", "--name", "x1",
                    "--fail-mode", "standalone", "--no-controller") == 0
    out = capsys.readouterr().out
    assert "topology 'x1' is valid" in out and "x1-s1" in out and "standalone" in out


def test_cli_exec_finds_host_in_records(monkeypatch, run_dir, capsys):
    assert kumoflow(monkeypatch, "exec", "h1", "--", "true") == 1
    assert "no host 'h1' in any running topology" in capsys.readouterr().err
    for name in ("a", "b"):
        state.write({"name": name, "hosts": {"h1": {"netns": f"{name}-h1"}}})
    assert kumoflow(monkeypatch, "exec", "h1", "--", "true") == 2
    assert "several topologies (a, b); choose one with --topo" in capsys.readouterr().err
    # the namespace of a recorded host that is not running
    assert kumoflow(monkeypatch, "exec", "--topo", "a", "h1", "--", "true") == 1
    assert "no namespace a-h1" in capsys.readouterr().err
