"""A third-party controller drives the kumoflow switch unchanged: a learning
switch written against os-ken's API (osken_l2_app.py, run as osken-manager
would run it) makes the hosts of an emulated topology ping and talk TCP
through kumoflow switches."""

from __future__ import annotations

import re
import sys

import pytest

from kumoflow.net import Network, state
from test_switch_emulator import assert_all_ping, switch_logs, tcp_works
from test_switch_support import EXAMPLES, ControllerProcess, kumoflow_topology, wait_until

pytestmark = [pytest.mark.root]


@pytest.fixture
def topo_name(unique_name):
    name = unique_name("t")
    yield name
    try:
        Network.teardown(name)
    except Exception as exc:
        print(f"teardown of {name}: {exc}", file=sys.stderr)
    state.remove(name)


@pytest.fixture
def osken(tmp_path):
    ctl = ControllerProcess(tmp_path, kind="osken")
    ctl.start()
    yield ctl
    ctl.stop()
    print(ctl.log()[-3000:])


def test_osken_learning_switch_drives_a_kumoflow_switch(topo_name, osken):
    net = Network(kumoflow_topology(EXAMPLES / "single.yaml"), name=topo_name, controllers=[osken.target])
    net.up()
    try:
        net.wait_connected(20)
        wait_until(lambda: "OSKEN-PORTS" in osken.log(), 10, what="os-ken port description")
        assert re.search(r"OSKEN-PORTS dpid=1 ports=\[1, 2, 3, 4\]", osken.log()), osken.log()
        assert "OSKEN-SWITCH dpid=1 n_tables=64" in osken.log()
        assert_all_ping(net)
        tcp_works(net, "h2", "h4")
        flows = re.findall(r"OSKEN-FLOW dpid=1 (\S+)->(\S+) out (\d+)", osken.log())
        assert ("00:00:00:00:00:01", "00:00:00:00:00:02", "2") in flows
        assert "OSKEN-ERROR" not in osken.log(), osken.log()
    finally:
        logs = switch_logs(net)
        net.down()
    assert "Traceback" not in logs, logs


def test_osken_drives_a_tree_of_kumoflow_switches(topo_name, osken):
    net = Network(kumoflow_topology(EXAMPLES / "tree.yaml"), name=topo_name, controllers=[osken.target])
    net.up()
    try:
        net.wait_connected(20)
        assert_all_ping(net)
        assert "OSKEN-ERROR" not in osken.log(), osken.log()
    finally:
        net.down()
