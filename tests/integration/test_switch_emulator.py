"""kumoflow switches in emulated topologies, driven by kumoflow's controller
with the l2 app: all pairs ping, TCP works (every byte arrives), a topology mixing
kumoflow and Open vSwitch switches works, the fail modes do what they say,
and ``down`` stops the switch processes."""

from __future__ import annotations

import sys

import pytest

from kumoflow.net import Network, state
from kumoflow.net.kumoflow_kind import _alive, log_path
from test_switch_support import EXAMPLES, ControllerProcess, kumoflow_topology, tcp_transfer, wait_until

pytestmark = [pytest.mark.root]

SINGLE = EXAMPLES / "single.yaml"
TREE = EXAMPLES / "tree.yaml"


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
def controller(tmp_path):
    ctl = ControllerProcess(tmp_path)
    ctl.start()
    yield ctl
    ctl.stop()


def switch_logs(net: Network) -> str:
    out = []
    for s in net.plan.switches:
        if s.kind == "kumoflow":
            try:
                out.append(f"--- {s.name}\n" + log_path(s.topology, s.name).read_text()[-4000:])
            except OSError:
                pass
    return "\n".join(out)


def up(topology, name, **overrides) -> Network:
    net = Network(topology, name=name, **overrides)
    net.up()
    return net


def assert_all_ping(net: Network) -> None:
    matrix = net.ping_all(timeout=2, retries=2)
    assert matrix.ok, f"{matrix}\n{switch_logs(net)}"


def tcp_works(net: Network, client: str, server: str) -> None:
    """Every byte of a TCP transfer from `client` to `server` arrives intact."""
    try:
        tcp_transfer(net.host(client).netns, net.host(server).netns, net.host(server).ip)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{switch_logs(net)}") from exc


def test_single_l2_all_pairs_ping_and_tcp(topo_name, controller):
    net = up(kumoflow_topology(SINGLE), topo_name, controllers=[controller.target])
    try:
        record = state.read(topo_name)
        [sw] = record["switches"]
        pid = sw["pid"]
        assert sw["kind"] == "kumoflow" and _alive(pid)
        net.wait_connected(15)
        assert_all_ping(net)
        tcp_works(net, "h1", "h2")
        assert "switch dpid=0x1 up" in controller.log()
    finally:
        net.down()
    assert not _alive(pid)
    assert net.leftovers() == []


def test_tree_l2_all_pairs_ping(topo_name, controller):
    net = up(kumoflow_topology(TREE), topo_name, controllers=[controller.target])
    try:
        net.wait_connected(15)
        assert_all_ping(net)
    finally:
        net.down()


@pytest.mark.ovs
def test_tree_mixing_kumoflow_and_open_vswitch(topo_name, controller):
    topo = kumoflow_topology(TREE, kinds={"s1": "kumoflow", "s2": "ovs", "s3": "kumoflow"})
    net = up(topo, topo_name, controllers=[controller.target])
    try:
        assert [s.kind for s in net.plan.switches] == ["kumoflow", "ovs", "kumoflow"]
        net.wait_connected(20)
        assert_all_ping(net)
        # TCP from behind the OVS leaf, through the kumoflow root, to a kumoflow leaf
        tcp_works(net, "h1", "h5")
    finally:
        net.down()


def test_tcp_with_veth_offloads_on(topo_name, controller):
    topo = kumoflow_topology(SINGLE, offloads=True)
    net = up(topo, topo_name, controllers=[controller.target])
    try:
        net.wait_connected(15)
        assert net.ping("h1", "h2", retries=3)
        tcp_works(net, "h1", "h2")
        tcp_works(net, "h3", "h4")
    finally:
        net.down()


def test_standalone_without_controller_is_a_learning_switch(topo_name):
    net = up(kumoflow_topology(TREE), topo_name, fail_mode="standalone", controllers=[])
    try:
        assert_all_ping(net)
        tcp_works(net, "h1", "h6")
    finally:
        net.down()


def test_fail_secure_keeps_installed_flows_and_reconnects(topo_name, controller):
    net = up(kumoflow_topology(SINGLE), topo_name, controllers=[controller.target])
    try:
        net.wait_connected(15)
        assert net.ping("h1", "h2", count=2, retries=2)      # l2 installs h1<->h2 flows (idle 60 s)
        controller.stop()
        wait_until(lambda: not any(net_connected(net).values()), 10, what="switch notices the controller is gone")
        assert net.ping("h1", "h2", count=2)                # installed flows still forward
        assert not net.ping("h3", "h4", count=1, retries=0)  # nothing new is learned: secure
        controller.start()                                   # same port: the switch reconnects
        net.wait_connected(20)
        assert_all_ping(net)
    finally:
        net.down()


def test_fail_standalone_forwards_while_the_controller_is_away(topo_name, controller):
    net = up(kumoflow_topology(SINGLE), topo_name, fail_mode="standalone", controllers=[controller.target])
    try:
        net.wait_connected(15)
        assert_all_ping(net)
        controller.stop()
        wait_until(lambda: not any(net_connected(net).values()), 10, what="controller gone")
        assert_all_ping(net)                                 # the learning bridge forwards
        controller.start()
        net.wait_connected(20)
        assert_all_ping(net)                                 # and the pipeline again
        status = read_status(net)
        assert status["connected"] and not status["standalone"]
    finally:
        net.down()


def net_connected(net: Network) -> dict[str, bool]:
    from kumoflow.net.switches import get_kind
    return get_kind("kumoflow").connected([s for s in net.plan.switches if s.kind == "kumoflow"])


def read_status(net: Network) -> dict:
    [s] = [s for s in net.plan.switches if s.kind == "kumoflow"]
    from kumoflow.net.kumoflow_kind import read_status as read, status_path
    return read(status_path(s.topology, s.name))


def test_down_after_a_crash_stops_the_switch(topo_name):
    """`Network.teardown` from the state record alone (another process) stops the switch."""
    up(kumoflow_topology(SINGLE), topo_name, fail_mode="standalone", controllers=[])
    pid = state.read(topo_name)["switches"][0]["pid"]
    assert _alive(pid)
    report = Network.teardown(topo_name)   # no plan: record and sweep only
    assert not _alive(pid)
    assert report.clean and not report.errors, report
    assert state.read(topo_name) is None
