"""What a newcomer met: `up --check` refuses what `up` refuses, with the same
file:line: field messages; numeric options and app options are checked
before anything starts; `demo --topology` with a bad file is a clear error.
All in-process and before anything is created: no root needed."""

from __future__ import annotations

import logging
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from kumoflow import cli
from kumoflow.apps import load_app
from kumoflow.net.errors import SwitchError, TopologyError
from kumoflow.net.kumoflow_kind import KumoflowSwitch
from kumoflow.net.plan import make_plan
from kumoflow.net.topology import load_topology, parse_topology

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

HOSTS = """\
hosts:
  - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24}
  - {name: h2, mac: "00:00:00:00:00:02", ip: 10.0.0.2/24}
links:
  - {src: h1, dst: s1}
  - {src: h2, dst: s1}
"""

#: files `up` used to refuse only once it had created namespaces and links;
#: the one expected message each (line, field, text)
REFUSED = {
    "ssl controller for a kumoflow switch": (
        "controller: ssl:127.0.0.1:6653\nswitches:\n  - {name: s1, kind: kumoflow}\n",
        "1: controller: ssl:127.0.0.1:6653: the kumoflow switch connects to controllers over tcp: only "
        "(used by switch 's1')",
    ),
    "unix controller of its own": (
        "switches:\n  - {name: s1, kind: kumoflow, controller: [tcp:127.0.0.1, unix:/run/c.sock]}\n",
        "2: switches[0].controller[1]: unix:/run/c.sock: the kumoflow switch connects to controllers "
        "over tcp: only",
    ),
    "OpenFlow 1.0 on a kumoflow switch": (
        "switches:\n  - {name: s1, kind: kumoflow, protocols: OpenFlow10}\n",
        "2: switches[0].protocols: OpenFlow10: the kumoflow switch speaks OpenFlow13 only",
    ),
    "OpenFlow 1.0 beside 1.3": (
        "switches:\n  - name: s1\n    kind: kumoflow\n    protocols: [OpenFlow13, OpenFlow10]\n",
        "4: switches[0].protocols[1]: OpenFlow10: the kumoflow switch speaks OpenFlow13 only",
    ),
}


def write(tmp_path: Path, text: str, name: str = "topo.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# -- up --check refuses what up refuses ---------------------------------------------


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_check_and_up_refuse_the_same_file_the_same_way(case, tmp_path, capsys, monkeypatch):
    text, expected = REFUSED[case]
    path = write(tmp_path, text + HOSTS)
    # `up` must refuse before it touches anything: no root check, no switch kind started
    monkeypatch.setattr(KumoflowSwitch, "up", lambda self, plan: pytest.fail("a switch was started"))
    checked = run_cli(capsys, "up", str(path), "--check")
    brought_up = run_cli(capsys, "up", str(path))
    assert checked[0] == brought_up[0] == 2
    assert checked[2] == brought_up[2] == f"kumoflow: invalid topology\n{path}:{expected}\n"
    assert checked[1] == brought_up[1] == ""


def test_every_refusal_is_reported_at_once(tmp_path):
    text = """\
    controller: [tcp:127.0.0.1, ssl:10.0.0.9]
    switches:
      - {name: s1, kind: kumoflow, protocols: [OpenFlow10]}
      - {name: s2, kind: kumoflow}
      - {name: s3, kind: kumoflow, controller: tcp:127.0.0.1}
      - {name: s4, kind: ovs, protocols: [OpenFlow10]}
    """
    with pytest.raises(TopologyError) as info:
        parse_topology(textwrap.dedent(text), "t.yaml")
    assert str(info.value).splitlines() == [
        "t.yaml:1: controller[1]: ssl:10.0.0.9:6653: the kumoflow switch connects to controllers over tcp: only "
        "(used by switches 's1', 's2')",
        "t.yaml:3: switches[0].protocols[0]: OpenFlow10: the kumoflow switch speaks OpenFlow13 only",
    ]


def test_what_open_vswitch_accepts_stays_valid():
    text = """\
    controller: [ssl:10.0.0.9, unix:/run/c.sock]
    switches:
      - {name: s1, protocols: [OpenFlow10, OpenFlow13]}
      - {name: s2, kind: kumoflow, controller: tcp:127.0.0.1}
    """
    topo = parse_topology(textwrap.dedent(text))
    assert [topo.controllers_of(s) for s in topo.switches] == [
        ("ssl:10.0.0.9:6653", "unix:/run/c.sock"), ("tcp:127.0.0.1:6653",)]


def test_overridden_controllers_are_checked_against_the_kinds(tmp_path, capsys):
    mixed = EXAMPLES / "mixed.yaml"            # s1 is a kumoflow switch, s2 and s3 Open vSwitch
    for argv in (("--check",), ()):
        status, out, err = run_cli(capsys, "up", str(mixed), "--controller", "ssl:127.0.0.1", *argv)
        assert status == 2 and out == ""
        assert err == ("kumoflow: invalid topology\noverride: controller: ssl:127.0.0.1:6653: the kumoflow "
                       "switch connects to controllers over tcp: only (used by switch 's1')\n")
    topo = load_topology(mixed)
    with pytest.raises(TopologyError, match="override: controller: unix:/x"):
        topo.with_overrides(controllers=["unix:/x"])
    # a file that is valid on its own takes any override its kinds accept
    none = topo.with_overrides(controllers=[])
    assert [none.controllers_of(s) for s in none.switches] == [(), (), ()]


def test_check_of_a_valid_file_shows_the_plan(capsys):
    status, out, err = run_cli(capsys, "up", str(EXAMPLES / "mixed.yaml"), "--check")
    assert status == 0 and err == ""
    assert "topology 'mixed' is valid" in out and "kumoflow" in out


def test_the_kumoflow_kind_checks_a_plan_made_by_hand():
    plan = make_plan(load_topology(EXAMPLES / "mixed.yaml").with_overrides(name="lab")).switches[0]
    assert plan.kind == "kumoflow"
    with pytest.raises(SwitchError, match="s1: protocols: OpenFlow10: the kumoflow switch speaks OpenFlow13 only"):
        KumoflowSwitch().up(replace(plan, protocols=("OpenFlow10", "OpenFlow13")))
    with pytest.raises(SwitchError, match="s1: controller: ssl:127.0.0.1:1: the kumoflow switch connects"):
        KumoflowSwitch().up(replace(plan, controllers=("ssl:127.0.0.1:1",)))


# -- numeric options ------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["--echo-interval", "0"], "--echo-interval 0: must be more than 0"),
    (["--echo-interval", "-2"], "--echo-interval -2: must be more than 0"),
    (["--echo-interval", "nan"], "--echo-interval nan: must be a finite number"),
    (["--settle", "-1"], "--settle -1: must be 0 or more"),
    (["--audit-interval", "-0.5"], "--audit-interval -0.5: must be 0 or more"),
    (["--audit-interval", "inf"], "--audit-interval inf: must be a finite number"),
    (["--set", "l2.idle_timeout=-1"], "app 'l2': idle_timeout -1: must be a whole number 0..65535"),
    (["--set", "l2.idle_timeout=thirty"], "app 'l2': idle_timeout 'thirty': must be a whole number 0..65535"),
    (["--set", "l2.hard_timeout=65536"], "app 'l2': hard_timeout 65536: must be a whole number 0..65535"),
    (["--set", "l2.mac_age=0"], "app 'l2': mac_age 0: must be a number of seconds, more than 0"),
    (["--app", "fabric", "--set", "fabric.lldp_interval=0"],
     "app 'fabric': lldp_interval 0: must be a number of seconds, more than 0"),
    (["--app", "fabric", "--set", "fabric.fast_failover=no"], "app 'fabric': fast_failover 'no': must be true or false"),
    (["--segment-range", "vxlan=1:9"], "--segment-range: only with --api (it is how the API allocates "
                                       "segmentation ids)"),
    (["--api", "127.0.0.1:0", "--segment-range", "vxlan=0:9"], "--segment-range vxlan=0:9: a vxlan segmentation "
                                                               "id is 1..16777215"),
    (["--api", "127.0.0.1:0", "--segment-range", "vlan=100:4095"], "--segment-range vlan=100:4095: a vlan "
                                                                   "segmentation id is 1..4094"),
    (["--api", "127.0.0.1:0", "--segment-range", "vlan=200:100"], "--segment-range vlan=200:100: LOW 200 is "
                                                                  "above HIGH 100"),
    (["--api", "127.0.0.1:0", "--segment-range", "vlan=1:10", "--segment-range", "vlan=10:20"],
     "--segment-range vlan=10:20: overlaps vlan=1:10"),
    (["--api", "127.0.0.1:0", "--segment-range", "gre=1:10"], "--segment-range gre=1:10: unknown network type "
                                                              "'gre'; expected one of vxlan, nvgre, vlan"),
    (["--api", "127.0.0.1:0", "--segment-range", "flat=1:10"], "--segment-range flat=1:10: a flat network has "
                                                               "no segmentation id"),
    (["--api", "127.0.0.1:0", "--segment-range", "vxlan=1000"], "--segment-range vxlan=1000: expected "
                                                                "TYPE=LOW:HIGH with whole numbers, e.g. "
                                                                "vxlan=100:199"),
    (["--api", "127.0.0.1:0", "--segment-range", "vxlan"], "--segment-range vxlan: expected TYPE=LOW:HIGH, "
                                                           "e.g. vxlan=1000:1999"),
])
def test_controller_refuses_bad_numbers_before_listening(argv, message, caplog):
    with caplog.at_level(logging.ERROR):
        status = cli.main(["controller", "--listen", "tcp:127.0.0.1:0", *argv])
    assert status == 2
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [message]


@pytest.mark.parametrize("argv, message", [
    (["--echo-interval", "0"], "--echo-interval 0: must be more than 0"),
    (["--echo-interval", "-1"], "--echo-interval -1: must be more than 0"),
    (["--max-backoff", "0.1"], "--max-backoff 0.1: must be at least 0.5"),
    (["--max-backoff", "inf"], "--max-backoff inf: must be a finite number"),
    (["--buffers", "-1"], "--buffers -1: must be 0..65536"),
    (["--buffers", "65537"], "--buffers 65537: must be 0..65536"),
    (["--tables", "0"], "--tables 0: must be 1..254"),
    (["--name", "0x1"], "--name '0x1': that is how a datapath id is written; a name must not look like one"),
    (["--name", "12"], "--name '12': that is how a datapath id is written; a name must not look like one"),
    (["--name", "lab s1"], "--name 'lab s1': expected letters, digits and _.- (up to 64, the first a letter or "
                           "digit)"),
])
def test_switch_refuses_bad_numbers_before_opening_ports(argv, message, caplog):
    with caplog.at_level(logging.ERROR):
        status = cli.main(["switch", "--port", "1=lo", *argv])
    assert status == 2
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [message]


def test_a_switch_name_is_its_desc_replys_dp_desc():
    from kumoflow import ofp
    from kumoflow.switch.runtime import Switch

    [reply] = Switch(1, {}, name="lab-s1").datapath.handle(ofp.DescRequest())
    assert (reply.mfr_desc, reply.dp_desc) == ("kumoflow", "lab-s1")
    [reply] = Switch(1, {}).datapath.handle(ofp.DescRequest())
    assert reply.dp_desc == "kumoflow datapath 0x0000000000000001"
    with pytest.raises(ValueError, match="switch name '0x1': that is how a datapath id is written"):
        Switch(1, {}, name="0x1")


def test_segment_ranges_are_parsed_per_type_and_sorted():
    from kumoflow.api.options import parse_segment_ranges

    assert parse_segment_ranges([]) == {}
    assert parse_segment_ranges(["vxlan=1000:1999", "vlan=300:399", "vlan=100:199", "nvgre=7:7"]) == {
        "vxlan": ((1000, 1999),), "vlan": ((100, 199), (300, 399)), "nvgre": ((7, 7),)}


def test_app_options_reach_the_app():
    l2 = load_app("l2", idle_timeout=30, hard_timeout=30.0, mac_age=10)
    assert (l2.idle_timeout, l2.hard_timeout, l2.mac_age) == (30, 30, 10.0)
    fabric = load_app("fabric", lldp_interval=0.5, fast_failover=False)
    assert (fabric.lldp_interval, fabric.link_timeout, fabric.fast_failover) == (0.5, 1.75, False)
    with pytest.raises(ValueError, match="app 'l2': priority True: must be a whole number"):
        load_app("l2", priority=True)


# -- the demo with a bad file -----------------------------------------------------------


def test_demo_with_a_bad_topology_is_a_clear_error(tmp_path, capsys):
    bad = write(tmp_path, "switches: [{name: s1, kind: nope}]\n", "bad.yaml")
    status, out, err = run_cli(capsys, "demo", "--topology", str(bad))
    assert status == 2
    assert err == (f"kumoflow: invalid topology\n{bad}:1: switches[0].kind: unknown switch kind 'nope' "
                   "(known: kumoflow, ovs)\n")
    status, _, err = run_cli(capsys, "demo", "--topology", str(tmp_path / "missing.yaml"))
    assert status == 2 and "missing.yaml: cannot read" in err and "Traceback" not in err
    empty = write(tmp_path, "name: nothing\n", "empty.yaml")
    status, _, err = run_cli(capsys, "demo", "--topology", str(empty))
    assert status == 2 and "the demo needs a switch and at least two hosts" in err


# -- packaging ----------------------------------------------------------------------------


def test_license_typing_marker_and_module_entry_point():
    assert "Apache License" in (ROOT / "LICENSE").read_text() and "Version 2.0" in (ROOT / "LICENSE").read_text()
    assert (ROOT / "src" / "kumoflow" / "py.typed").is_file()
    import tomllib
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data["kumoflow"]
    assert (ROOT / "src" / "kumoflow" / "__main__.py").is_file()
