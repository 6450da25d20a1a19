"""A topology's switch ``ports:`` (egress rates): validation as file:line: field,
the plan, the kumoflow switch's options and Open vSwitch's QoS rows (no root)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from kumoflow.net.errors import SwitchError
from kumoflow.net.kumoflow_kind import qos_args
from kumoflow.net.ovs import OvsSwitch, qos_rows
from kumoflow.net.plan import make_plan
from kumoflow.net.topology import PortConfig, load_topology, parse_topology
from kumoflow.switch.cli import parse_qos
from kumoflow.switch.qos import PortQos, QueueRates

from test_net_topology import errors_of, marked_line

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

BASE = """\
hosts:
  - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24}
  - {name: h2, mac: "00:00:00:00:00:02", ip: 10.0.0.2/24}
links:
  - {src: h1, dst: s1}
  - {src: h2, dst: s1, dst_port: 5}
switches:
"""


def test_the_example_file():
    topo = load_topology(EXAMPLES / "queues.yaml")
    [s1] = topo.switches
    assert s1.kind == "kumoflow"
    [config] = s1.ports
    assert config.number == 2 and config.rate_kbps == 20_000
    assert config.queues == ((1, 15_000, 20_000), (2, None, 20_000))
    assert config.qos() == PortQos(20_000, {1: QueueRates(15_000, 20_000), 2: QueueRates(max_kbps=20_000)})
    plan = make_plan(topo)
    assert [(p.number, p.config) for p in plan.switches[0].ports] == [(1, None), (2, config), (3, None)]


def test_kumoflow_switch_options_parse_back_to_the_same_rates():
    plan = make_plan(load_topology(EXAMPLES / "queues.yaml")).switches[0]
    port = plan.ports[1]
    args = qos_args(port)
    assert args == ["--port-rate", "2:20000", "--queue", "2:1:min=15000,max=20000", "--queue", "2:2:max=20000"]
    assert qos_args(plan.ports[0]) == []
    assert parse_qos(args[3::2], args[1:2], [1, 2, 3]) == {2: port.config.qos()}
    bare = type(port)(4, "x", PortConfig(4, None, ((0, 0, None), (3, None, None))))
    assert qos_args(bare) == ["--queue", "4:0:min=0", "--queue", "4:3"]


def test_open_vswitch_gets_a_linux_htb_row_with_a_queue_row_each():
    plan = make_plan(load_topology(EXAMPLES / "queues.yaml")).switches[0]
    assert qos_rows(plan.ports[0]) == []
    assert qos_rows(plan.ports[1]) == [
        "--", "set", "Port", "queues-s1-2", "qos=@qos2",
        "--", "--id=@qos2", "create", "QoS", "type=linux-htb", "other-config:max-rate=20000000",
        "queues:1=@q2x1", "queues:2=@q2x2",
        "--", "--id=@q2x1", "create", "Queue", "other-config:min-rate=15000000", "other-config:max-rate=20000000",
        "--", "--id=@q2x2", "create", "Queue", "other-config:max-rate=20000000"]
    no_rate = type(plan.ports[1])(3, "p3", PortConfig(3, None, ((0, 0, 500),)))
    assert qos_rows(no_rate)[6:] == ["--id=@qos3", "create", "QoS", "type=linux-htb", "queues:0=@q3x0",
                                     "--", "--id=@q3x0", "create", "Queue", "other-config:max-rate=500000"]


FAKE_OVS = """\
#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_LOG"
case "$*" in
  *"list Interface"*) echo '{"headings": ["name", "ofport", "error"], "data": [["queues-s1-1", 1, ["set", []]],
      ["queues-s1-2", 2, ["set", []]], ["queues-s1-3", 3, ["set", []]]]}' ;;
  *"qos/show"*) echo "$FAKE_QOS_SHOW" ;;
esac
exit 0
"""


@pytest.fixture
def fake_ovs(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ovs-vsctl", "ovs-appctl"):
        (bin_dir / tool).write_text(FAKE_OVS)
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.log"))
    return tmp_path


def test_open_vswitch_up_sets_the_qos_and_checks_vswitchd_took_it(fake_ovs, monkeypatch):
    plan = make_plan(load_topology(EXAMPLES / "queues.yaml")).switches[0]
    monkeypatch.setenv("FAKE_QOS_SHOW", "QoS: queues-s1-2 linux-htb\nmax-rate: 20000000")
    assert OvsSwitch().up(plan) == {"bridge": "queues-s1"}
    calls = (fake_ovs / "calls.log").read_text().splitlines()
    assert "set Interface queues-s1-2 ofport_request=2 -- set Port queues-s1-2 qos=@qos2" in calls[0]
    assert calls[-1] == "--timeout=20 qos/show queues-s1-2"
    monkeypatch.setenv("FAKE_QOS_SHOW", "QoS not configured on queues-s1-2")
    with pytest.raises(SwitchError, match="queues-s1-2: Open vSwitch did not configure its linux-htb QoS "
                                          r"\(QoS not configured on queues-s1-2"):
        OvsSwitch().up(plan)


def test_ports_without_rates_and_without_ports():
    topo = parse_topology(BASE + "  - {name: s1, ports: {1: {}, 5: {queues: {3: {}}}}}\n")
    [a, b] = topo.switches[0].ports
    assert (a.number, a.rate_kbps, a.queues) == (1, None, ())
    assert (b.number, b.queues) == (5, ((3, None, None),))
    assert not a.qos().scheduled and not b.qos().scheduled
    assert parse_topology(BASE + "  - {name: s1, ports: }\n").switches[0].ports == ()


CASES = {
    "port on no link": ("  - {name: s1, ports: {7: {rate_kbps: 10}}}   #!",
                        "switches[0].ports.7: switch 's1' has no port 7 (no link ends there)"),
    "port number": ("  - {name: s1, ports: {0: {rate_kbps: 10}}}   #!",
                    "switches[0].ports.0: 0 is out of range 1..65279"),
    "port not a number": ("  - {name: s1, ports: {p1: {rate_kbps: 10}}}   #!",
                          "switches[0].ports.p1: expected an integer, got 'p1'"),
    "ports a list": ("  - {name: s1, ports: [1, 5]}   #!",
                     "switches[0].ports: expected a mapping of numbers 1..65279 to settings, got a list"),
    "unknown field": ("  - {name: s1, ports: {1: {rate: 10}}}   #!",
                      "switches[0].ports.1.rate: unknown field (allowed: rate_kbps, queues); "
                      "did you mean 'rate_kbps'?"),
    "rate zero": ("  - {name: s1, ports: {1: {rate_kbps: 0}}}   #!",
                  "switches[0].ports.1.rate_kbps: 0 is out of range 1..4294967295"),
    "rate text": ("  - {name: s1, ports: {1: {rate_kbps: 10M}}}   #!",
                  "switches[0].ports.1.rate_kbps: expected an integer, got '10M'"),
    "queue id": ("  - {name: s1, ports: {1: {queues: {4294967295: {}}}}}   #!",
                 "switches[0].ports.1.queues.4294967295: 4294967295 is out of range 0..4294967294"),
    "queue field": ("  - {name: s1, ports: {1: {queues: {1: {min: 5}}}}}   #!",
                    "switches[0].ports.1.queues.1.min: unknown field (allowed: min_kbps, max_kbps)"),
    "max zero": ("  - {name: s1, ports: {1: {queues: {1: {max_kbps: 0}}}}}   #!",
                 "switches[0].ports.1.queues.1.max_kbps: 0 is out of range 1..4294967295"),
    "min above max": ("  - {name: s1, ports: {1: {queues: {1: {min_kbps: 9, max_kbps: 5}}}}}   #!",
                      "switches[0].ports.1.queues.1.min_kbps: min 9 kbit/s is above max 5 kbit/s"),
    "min above rate": ("  - {name: s1, ports: {1: {rate_kbps: 8, queues: {2: {min_kbps: 9}}}}}   #!",
                       "switches[0].ports.1.queues.2.min_kbps: min 9 kbit/s is above the port rate 8 kbit/s"),
    "mins add up": ("  - {name: s1, ports: {1: {rate_kbps: 8, queues: {1: {min_kbps: 5}, 2: {min_kbps: 5}}}}}   #!",
                    "switches[0].ports.1.queues: the queues' min rates add up to 10 kbit/s, more than the port rate "
                    "8 kbit/s"),
    "port twice": ("  - name: s1\n    ports:\n      1: {}\n      1: {rate_kbps: 5}   #!",
                   "switches[0].ports.1: 1 is given twice (first on line 10)"),
    "queue twice": ("  - name: s1\n    ports:\n      1:\n        queues:\n          0: {}\n          0: {}   #!",
                    "switches[0].ports.1.queues.0: 0 is given twice (first on line 12)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_ports_are_reported_as_file_line_field(case):
    entry, expected = CASES[case]
    text = BASE + entry + "\n"
    line = marked_line(text)
    issues = errors_of(text, "topo.yaml")
    wanted = f"topo.yaml:{line}: {expected}"
    assert any(issue.startswith(wanted) for issue in issues), issues


def test_hypervisors_do_not_take_ports():
    text = textwrap.dedent("""\
        hypervisors:
          - {name: hv1, kind: kumoflow, ports: {1: {}}}   #!
        """)
    assert any("hypervisors[0].ports: unknown field" in i for i in errors_of(text))
