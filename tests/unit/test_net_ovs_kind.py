"""The ``ovs`` switch kind against a stand-in ovs-vsctl (no root, no OVS); and
the reconnection backoff both kinds get from the emulator."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from kumoflow.net import kumoflow_kind
from kumoflow.net.errors import SwitchError
from kumoflow.net.kumoflow_kind import KumoflowSwitch
from kumoflow.net.ovs import OvsSwitch
from kumoflow.net.plan import make_plan
from kumoflow.net.topology import load_topology

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

FAKE = """\
#!/bin/sh
# records each call, one JSON argv per line; answers a few queries
printf '%s\\n' "$*" >> "$FAKE_LOG"
case "$*" in
  *"list Interface"*) cat "$FAKE_INTERFACES" ;;
  *datapath_types*) echo "${FAKE_DATAPATHS:-[netdev, system]}"; exit ${FAKE_DB_RC:-0} ;;
  *"find Bridge"*) echo "$FAKE_BRIDGES" ;;
  *"list Bridge"*) cat "$FAKE_DIR/bridges.json" ;;
  *"list Controller"*) cat "$FAKE_DIR/controllers.json" ;;
esac
exit 0
"""


@pytest.fixture
def fake_ovs(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ovs-vsctl", "ovs-appctl"):
        script = bin_dir / tool
        script.write_text(FAKE)
        script.chmod(0o755)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_INTERFACES", str(tmp_path / "interfaces.json"))
    monkeypatch.setenv("FAKE_DIR", str(tmp_path))
    return tmp_path


def calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "calls.log").read_text().splitlines()


def interfaces(tmp_path: Path, rows: list[list]) -> None:
    (tmp_path / "interfaces.json").write_text(json.dumps({"headings": ["name", "ofport", "error"], "data": rows}))


def single_switch(fail_mode="secure"):
    topo = load_topology(EXAMPLES / "single.yaml").with_overrides(name="lab", fail_mode=fail_mode)
    return make_plan(topo).switches[0]


def test_up_is_one_transaction_with_everything(fake_ovs):
    switch = single_switch("standalone")
    interfaces(fake_ovs, [[f"lab-s1-{n}", n, ["set", []]] for n in range(1, 5)])
    assert OvsSwitch().up(switch) == {"bridge": "lab-s1"}
    add = calls(fake_ovs)[0]
    assert add.startswith("--timeout=")
    for part in (
        "add-br lab-s1 -- set Bridge lab-s1 datapath_type=netdev protocols=OpenFlow13 fail_mode=standalone",
        "other-config:datapath-id=0000000000000001",
        "other-config:disable-in-band=true",
        "external_ids:kumoflow-topology=lab",
        "-- add-port lab-s1 lab-s1-3 -- set Interface lab-s1-3 ofport_request=3",
        '-- --id=@c0 create Controller target="tcp:127.0.0.1:6653" max_backoff=1000',
        "-- set Bridge lab-s1 controller=@c0",
    ):
        assert part in add
    assert "list Interface lab-s1-1 lab-s1-2 lab-s1-3 lab-s1-4" in calls(fake_ovs)[1]


def test_up_reports_port_errors(fake_ovs):
    switch = single_switch()
    interfaces(fake_ovs, [["lab-s1-1", 1, ["set", []]], ["lab-s1-2", -1, "could not open network device lab-s1-2"],
                          ["lab-s1-3", 3, ["set", []]], ["lab-s1-4", 4, ["set", []]]])
    with pytest.raises(SwitchError, match="lab-s1-2: could not open network device"):
        OvsSwitch().up(switch)
    interfaces(fake_ovs, [[f"lab-s1-{n}", n + 10, ["set", []]] for n in range(1, 5)])
    with pytest.raises(SwitchError, match="got OpenFlow port 11, not the requested 1"):
        OvsSwitch().up(switch)


def test_check_says_how_to_start_ovs(fake_ovs, monkeypatch):
    monkeypatch.setenv("FAKE_DB_RC", "1")
    with pytest.raises(SwitchError, match="ovs-ctl start"):
        OvsSwitch().check()
    monkeypatch.setenv("FAKE_DB_RC", "0")
    monkeypatch.setenv("FAKE_DATAPATHS", "[system]")
    with pytest.raises(SwitchError, match="no netdev datapath"):
        OvsSwitch().check()
    monkeypatch.setenv("FAKE_DATAPATHS", "[netdev, system]")
    OvsSwitch().check()


def test_sweep_deletes_marked_bridges(fake_ovs, monkeypatch):
    monkeypatch.setenv("FAKE_BRIDGES", "lab-s1 lab-s2")
    assert OvsSwitch().sweep("lab", "lab") == ["ovs bridge lab-s1", "ovs bridge lab-s2"]
    log = calls(fake_ovs)
    assert "find Bridge external_ids:kumoflow-topology=lab" in log[0]
    assert log[1].endswith("--if-exists del-br lab-s1") and log[2].endswith("--if-exists del-br lab-s2")


def test_missing_ovs_vsctl(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SwitchError, match="ovs-vsctl not found"):
        OvsSwitch().check()
    assert OvsSwitch().sweep("lab", "lab") == []
    assert OvsSwitch().leftovers("lab", "lab") == []


def test_connected_reads_controller_status(fake_ovs):
    plans = make_plan(load_topology(EXAMPLES / "tree.yaml").with_overrides(name="lab")).switches
    (fake_ovs / "bridges.json").write_text(json.dumps({"headings": ["name", "controller"], "data": [
        ["lab-s1", ["uuid", "u1"]],                                   # one controller
        ["lab-s2", ["set", [["uuid", "u2"], ["uuid", "u3"]]]],        # two
        ["lab-s3", ["set", []]],                                      # none
    ]}))
    (fake_ovs / "controllers.json").write_text(json.dumps({"headings": ["_uuid", "is_connected"], "data": [
        [["uuid", "u1"], True], [["uuid", "u2"], False], [["uuid", "u3"], True],
    ]}))
    assert OvsSwitch().connected(list(plans)) == {"s1": True, "s2": True, "s3": False}


def test_controllers_get_a_short_max_backoff(fake_ovs):
    """One Controller row per target, each with max_backoff in ms (default 1 s)."""
    switch = replace(single_switch(), controllers=("tcp:127.0.0.1:6653", "tcp:[::1]:7000"), max_backoff=3)
    interfaces(fake_ovs, [[f"lab-s1-{n}", n, ["set", []]] for n in range(1, 5)])
    OvsSwitch().up(switch)
    add = calls(fake_ovs)[0]
    assert '-- --id=@c0 create Controller target="tcp:127.0.0.1:6653" max_backoff=3000' in add
    assert '-- --id=@c1 create Controller target="tcp:[::1]:7000" max_backoff=3000' in add
    assert add.endswith("-- set Bridge lab-s1 controller=@c0,@c1")
    assert "set-controller" not in add


def test_no_controller_rows_without_controllers(fake_ovs):
    switch = replace(single_switch(), controllers=())
    interfaces(fake_ovs, [[f"lab-s1-{n}", n, ["set", []]] for n in range(1, 5)])
    OvsSwitch().up(switch)
    add = calls(fake_ovs)[0]
    assert "Controller" not in add and "controller=" not in add


def test_max_backoff_reaches_the_plan():
    text = (EXAMPLES / "tree.yaml").read_text().replace(
        "controller: tcp:127.0.0.1:6653", "controller: tcp:127.0.0.1:6653\nmax_backoff: 4").replace(
        "{name: s3, kind: ovs, dpid: 3, fail_mode: secure}", "{name: s3, kind: ovs, dpid: 3, max_backoff: 2}")
    from kumoflow.net.topology import parse_topology
    plans = make_plan(parse_topology(text)).switches
    assert [s.max_backoff for s in plans] == [4, 4, 2]
    assert {s.max_backoff for s in make_plan(load_topology(EXAMPLES / "mixed.yaml")).switches} == {1}


class _FakePopen:
    """Stands in for the switch process: writes its status file at once, with
    the port its listener got (asked for port 0)."""

    argv: list[str] = []

    def __init__(self, argv, **kwargs):
        type(self).argv = list(argv)
        self.pid = 4242
        status = argv[argv.index("--status-file") + 1]
        assert argv[argv.index("--listen") + 1] == "ptcp:0:127.0.0.1"
        Path(status).write_text(json.dumps({"pid": self.pid, "connected": False,
                                            "listen": ["ptcp:34567:127.0.0.1"]}))

    def poll(self):
        return None


def test_kumoflow_switch_gets_max_backoff(tmp_path, monkeypatch):
    monkeypatch.setenv("KUMOFLOW_RUN_DIR", str(tmp_path))
    monkeypatch.setattr(kumoflow_kind.subprocess, "Popen", _FakePopen)
    plan = make_plan(load_topology(EXAMPLES / "mixed.yaml").with_overrides(name="lab")).switches[0]
    assert plan.kind == "kumoflow"
    record = KumoflowSwitch().up(plan)
    argv = _FakePopen.argv
    assert record["pid"] == 4242
    assert record["listen"] == "ptcp:34567:127.0.0.1"          # the port it reported, not one guessed before
    assert argv[argv.index("--max-backoff") + 1] == "1"
    assert argv[argv.index("--controller") + 1] == "tcp:127.0.0.1:6653"
    KumoflowSwitch().up(replace(plan, max_backoff=5))
    assert _FakePopen.argv[_FakePopen.argv.index("--max-backoff") + 1] == "5"


def test_switch_cli_accepts_max_backoff():
    """The option the emulator passes exists and is checked."""
    import argparse

    from kumoflow.switch import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    assert parser.parse_args(["switch"]).max_backoff == 8.0
    assert parser.parse_args(["switch", "--max-backoff", "1"]).max_backoff == 1.0
    args = parser.parse_args(["switch", "--max-backoff", "0.1"])
    assert cli.run(args) == 2


def test_on_connected_reconfigures_the_bridges(fake_ovs):
    """OVS 3.1.0 applies max_backoff to a live connection only on a reconfiguration."""
    plans = make_plan(load_topology(EXAMPLES / "tree.yaml").with_overrides(name="lab")).switches
    OvsSwitch().on_connected(list(plans[:2]))
    [call] = calls(fake_ovs)
    assert "set Bridge lab-s1 external_ids:kumoflow-connected=" in call
    assert "-- set Bridge lab-s2 external_ids:kumoflow-connected=" in call
    OvsSwitch().on_connected([])
    assert len(calls(fake_ovs)) == 1


def test_wait_connected_hands_each_switch_to_on_connected_once():
    from kumoflow.net.network import Network
    from kumoflow.net.switches import SWITCH_KINDS, SwitchKind, register_kind

    seen: list[list[str]] = []
    polls = iter([{"s1": True, "s2": False, "s3": False}, {"s1": True, "s2": True, "s3": False}])

    class Fake(SwitchKind):
        name = "fakeconn"

        def check(self): ...
        def up(self, switch): return {}
        def down(self, record): return []
        def sweep(self, topology, prefix): return []
        def leftovers(self, topology, prefix): return []

        def connected(self, switches):
            return next(polls, {s.name: True for s in switches})

        def on_connected(self, switches):
            seen.append([s.name for s in switches])

    register_kind("fakeconn", Fake)
    try:
        topo = load_topology(EXAMPLES / "tree.yaml")
        topo = replace(topo, switches=tuple(replace(s, kind="fakeconn") for s in topo.switches))
        net = Network(topo, name="lab")
        net.wait_connected(timeout=5)
        assert seen == [["s1"], ["s2"], ["s3"]]
        net.wait_connected(timeout=5)
        assert seen == [["s1"], ["s2"], ["s3"]]
    finally:
        SWITCH_KINDS.pop("fakeconn")
