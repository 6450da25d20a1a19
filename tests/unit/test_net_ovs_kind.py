"""The ``ovs`` switch kind against a stand-in ovs-vsctl (no root, no OVS)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kumoflow.net.errors import SwitchError
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
        "-- set-controller lab-s1 tcp:127.0.0.1:6653",
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
