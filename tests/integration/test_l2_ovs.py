"""The l2 app driving real Open vSwitch bridges (userspace datapath) that join
real network namespaces. Open vSwitch's own counters are the oracle for
what reached the controller: every packet-in passes the table-miss entry."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kumoflow.controller import pipeline
from kumoflow.net import Network

from controller_process import Cable, ControllerProcess

pytestmark = [pytest.mark.root, pytest.mark.ovs]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
H1_MAC = "00:00:00:00:00:01"


@pytest.fixture
def controller(tmp_path):
    ctl = ControllerProcess(log=tmp_path / "controller.log").start()       # on a port of its own choosing
    yield ctl
    status = ctl.stop()
    print((tmp_path / "controller.log").read_text()[-3000:], file=sys.stderr)
    assert status == 0, f"controller exited with {status} on SIGTERM"   # clean shutdown


@pytest.fixture
def network(unique_name, controller):
    """examples/single.yaml under a unique name, switches in fail-secure mode."""
    nets = []

    def make(example: str = "single.yaml") -> Network:
        net = Network.from_file(EXAMPLES / example, name=unique_name("l2"), fail_mode="secure",
                                controllers=[controller.target])
        nets.append(net)
        net.up()
        net.wait_connected(20)
        return net

    yield make
    for net in nets:
        try:
            net.down()
        except Exception as exc:
            print(f"teardown of {net.name}: {exc}", file=sys.stderr)
            Network.teardown(net.name)


def dump_flows(bridge: str) -> list[dict]:
    out = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", bridge],
                         capture_output=True, text=True, check=True).stdout
    flows = []
    for line in out.splitlines():
        if "n_packets=" not in line:
            continue
        flows.append({
            "n_packets": int(re.search(r"n_packets=(\d+)", line).group(1)),
            "priority": int(re.search(r"priority=(\d+)", line).group(1)) if "priority=" in line else 32768,
            "text": line.strip(),
        })
    return flows


def revalidated() -> None:
    """Open vSwitch moves the datapath's counters to the flows in its
    revalidator cycles: wait for a whole cycle, then they are current."""
    subprocess.run(["ovs-appctl", "revalidator/wait"], check=True, capture_output=True, timeout=30)


def table_miss_packets(bridge: str) -> int:
    [miss] = [f for f in dump_flows(bridge) if f["priority"] == 0 and "CONTROLLER" in f["text"]
              and f"table={pipeline.table_id('forward')}," in f["text"]]
    return miss["n_packets"]


def wait_until(predicate, timeout=15.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def test_all_pairs_ping_on_one_switch(network):
    net = network("single.yaml")
    matrix = net.ping_all(retries=2)
    assert matrix.ok, str(matrix)


def test_all_pairs_ping_on_a_tree(network):
    net = network("tree.yaml")
    matrix = net.ping_all(retries=2)
    assert matrix.ok, str(matrix)


def test_learned_traffic_no_longer_reaches_the_controller(network):
    net = network("single.yaml")
    bridge = net.plan.switches[0].bridge
    for host in net.hosts:
        # IPv6 autoconfiguration multicasts (router solicitations, MLD) would
        # reach the controller too; this test counts only h1 <-> h2 traffic.
        host.run("sysctl -qw net.ipv6.conf.all.disable_ipv6=1")
    assert net.ping("h1", "h2", retries=2)
    assert net.ping("h2", "h1", retries=2)
    learned = lambda: sum(f["n_packets"] for f in dump_flows(bridge) if f["priority"] == 10)  # noqa: E731
    revalidated()
    before, learned_before = table_miss_packets(bridge), learned()
    result = net.host("h1").run(["ping", "-c", "10", "-i", "0.05", "-W", "1", net.host("h2").ip])
    assert " 0% packet loss" in result.stdout, result.stdout
    revalidated()
    assert learned() - learned_before >= 20             # the 10 requests and 10 replies, on the learned flows
    assert table_miss_packets(bridge) == before         # and none of them on the table-miss entry


def test_a_host_moving_to_another_port(network):
    net = network("single.yaml")
    bridge = net.plan.switches[0].bridge
    assert net.ping_all(retries=2).ok
    h1, h4 = net.host("h1"), net.host("h4")
    # h1 "migrates": its interface goes away and h4's port now carries h1's MAC and IP.
    h1.run("ip link set eth0 down")
    h4.run(f"ip link set eth0 down && ip link set eth0 address {H1_MAC} && ip addr flush dev eth0 "
           f"&& ip addr add {h1.ip}/24 dev eth0 && ip link set eth0 up")
    # Like a migrated VM, it announces itself (its first packet reaches the controller from port 4).
    assert wait_until(lambda: h4.run(["ping", "-c1", "-W1", net.host("h2").ip]).returncode == 0)
    assert net.host("h2").run(["ping", "-c3", "-W1", h1.ip]).returncode == 0
    towards_h1 = [f["text"] for f in dump_flows(bridge) if f"dl_dst={H1_MAC}" in f["text"]]
    assert towards_h1 and all("output:4" in t for t in towards_h1), towards_h1


def test_switch_disconnecting_and_reconnecting(unique_name, controller):
    cable = Cable(controller.port).mend()
    net = Network.from_file(EXAMPLES / "single.yaml", name=unique_name("l2"), fail_mode="secure",
                            controllers=[cable.target])
    try:
        net.up()
        net.wait_connected(20)
        bridge = net.plan.switches[0].bridge
        assert net.ping_all(retries=2).ok
        cable.cut()
        assert wait_until(lambda: not is_connected(bridge), timeout=10)
        # fail-secure: the learned flows keep forwarding with no controller.
        assert net.ping("h1", "h2")
        cable.mend()
        net.wait_connected(30)          # OVS reconnects on its own, with backoff
        # The controller reset its table on reconnect: learning starts over and works.
        assert net.ping_all(retries=2).ok
        assert any(f["priority"] == 10 for f in dump_flows(bridge))
    finally:
        cable.close()
        net.down()


def is_connected(bridge: str) -> bool:
    target = subprocess.run(["ovs-vsctl", "get-controller", bridge], capture_output=True, text=True).stdout.strip()
    out = subprocess.run(["ovs-vsctl", "--bare", "--columns=is_connected", "find", "controller",
                          f'target="{target}"'], capture_output=True, text=True).stdout
    return out.strip() == "true"


class Pinger:
    """`ping` from one host to an address, its replies (icmp_seq) collected as they come."""

    def __init__(self, host, ip: str) -> None:
        self.proc = host.popen(["ping", "-i", "0.1", "-W", "1", ip], stdout=subprocess.PIPE, text=True)
        self.replied: list[int] = []
        self.output: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.output.append(line)
            if m := re.search(r"icmp_seq=(\d+) ", line):
                self.replied.append(int(m.group(1)))

    def more_replies(self, count: int, timeout: float) -> bool:
        """Wait for `count` replies more than there are now."""
        want = len(self.replied) + count
        return wait_until(lambda: len(self.replied) >= want, timeout=timeout, interval=0.05)

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(10)
        self._thread.join(10)
        return "".join(self.output)


def test_controller_restart_while_hosts_keep_pinging(network, controller):
    net = network("single.yaml")
    bridge = net.plan.switches[0].bridge
    assert net.ping_all(retries=2).ok
    h1, h2 = net.host("h1"), net.host("h2")
    pinger = Pinger(h1, h2.ip)
    try:
        assert pinger.more_replies(5, timeout=10), pinger.output
        controller.stop()
        assert wait_until(lambda: not is_connected(bridge), timeout=10)
        # no controller: fail-secure keeps the learned flows forwarding
        assert pinger.more_replies(10, timeout=10), pinger.output
        assert controller.proc.poll() is not None and not is_connected(bridge)   # all of them while it was away
        controller.start()
        net.wait_connected(20)
        assert pinger.more_replies(10, timeout=15), pinger.output                  # and after the restart
    finally:
        pinger.stop()
