"""The emulator with Open vSwitch: real namespaces, veths and netdev bridges.

Every test brings up a topology under a fresh name (``unique_name``) and the
``topo_name`` fixture removes whatever is left of it, pass or fail. The
switches run with fail_mode standalone and no controller (there is none in
the tests), so OVS forwards as a learning switch. Leftovers are checked with
``ip`` and ``ovs-vsctl`` directly, not with the emulator's own code.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import kumoflow
from kumoflow.net import NetError, Network, state
from kumoflow.net.errors import SwitchError
from kumoflow.net.plan import interface_prefix

pytestmark = [pytest.mark.root, pytest.mark.ovs]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SINGLE = EXAMPLES / "single.yaml"
TREE = EXAMPLES / "tree.yaml"
SRC = str(Path(kumoflow.__file__).resolve().parents[1])
STANDALONE = {"fail_mode": "standalone", "controllers": []}


@pytest.fixture
def topo_name(unique_name):
    name = unique_name("t")
    yield name
    try:
        Network.teardown(name)
    except Exception as exc:  # report, but never leave a failing teardown unseen
        print(f"teardown of {name}: {exc}", file=sys.stderr)
    state.remove(name)


def kernel_leftovers(name: str) -> list[str]:
    """What exists of topology ``name``, asked of ip and ovs-vsctl directly."""
    prefix = interface_prefix(name) + "-"
    out = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    out += [f"netns {line.split()[0]}" for line in netns.splitlines() if line.startswith(f"{name}-")]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    for line in links.splitlines():
        ifname = line.split(":")[1].strip().split("@")[0]
        if ifname.startswith(prefix) or f"kumoflow:{name}" in line:
            out.append(f"link {ifname}")
    bridges = subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True).stdout.split()
    out += [f"bridge {b}" for b in bridges if b.startswith(prefix)]
    return out


def kumoflow_cli(*argv: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run the kumoflow command (only the emulator's subcommands) in a child."""
    code = (
        "import sys, kumoflow.cli as c; c.COMMAND_MODULES = ['kumoflow.net.cli']; "
        "sys.exit(c.main(sys.argv[1:]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": SRC}, **kwargs,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kumoflow {' '.join(argv)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def wait_listening(host, port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    """Wait until a TCP socket listens on `port` in the host's namespace
    (asked of the kernel with ss), failing at once if `proc` exits."""
    deadline = time.monotonic() + timeout
    while not host.run(["ss", "-Hltn", f"sport = :{port}"]).stdout.strip():
        assert proc.poll() is None, f"the server exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"nothing listens on port {port} in {host.netns} after {timeout}s"
        time.sleep(0.05)


def ovs_get(table: str, record: str, column: str) -> str:
    return subprocess.run(
        ["ovs-vsctl", "get", table, record, column], capture_output=True, text=True, check=True
    ).stdout.strip()


# -- a topology comes up, forwards, and goes away ----------------------------------


def test_single_all_pairs_ping_and_down_removes_everything(topo_name, tmp_path):
    net = Network.from_file(SINGLE, name=topo_name, **STANDALONE)
    net.up()
    try:
        prefix = interface_prefix(topo_name)
        bridge = f"{prefix}-s1"
        # what OVS was told
        assert ovs_get("Bridge", bridge, "datapath_type") == "netdev"
        assert ovs_get("Bridge", bridge, "protocols") == "[OpenFlow13]"
        assert ovs_get("Bridge", bridge, "fail_mode") == "standalone"
        assert ovs_get("Bridge", bridge, "other_config:datapath-id") == '"0000000000000001"'
        for port in range(1, 5):
            assert ovs_get("Interface", f"{prefix}-s1-{port}", "ofport") == str(port)
        # hosts: namespace, address, MAC, offloads off
        h1 = net.host("h1")
        assert h1.netns == f"{topo_name}-h1"
        addr = json.loads(h1.run(["ip", "-j", "addr", "show", "dev", "eth0"], check=True).stdout)[0]
        assert addr["address"] == "00:00:00:00:00:01"
        assert {"family": "inet", "local": "10.0.0.1", "prefixlen": 24}.items() <= next(
            a for a in addr["addr_info"] if a["family"] == "inet").items()
        features = h1.run(["ethtool", "-k", "eth0"], check=True).stdout
        assert "tx-checksum-ip-generic: off" in features
        assert "tcp-segmentation-offload: off" in features

        matrix = net.ping_all()
        assert matrix.ok, f"\n{matrix}"
        assert len(matrix.results) == 12

        # TCP works end to end through the userspace datapath (needs offloads off)
        (tmp_path / "blob").write_bytes(os.urandom(1 << 21))
        server = net.host("h2").popen(
            [sys.executable, "-m", "http.server", "8000", "--bind", "10.0.0.2", "--directory", str(tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_listening(net.host("h2"), 8000, server)
        fetch = 'import urllib.request; print(len(urllib.request.urlopen("http://10.0.0.2:8000/blob", timeout=30).read()))'
        got = net.host("h1").run([sys.executable, "-c", fetch], timeout=60)
        assert got.stdout.strip() == str(1 << 21), got.stderr
        assert server.poll() is None
    finally:
        report = net.down()
    assert server.poll() is not None  # down stops what popen started
    assert report.clean and not report.errors
    assert kernel_leftovers(topo_name) == []
    assert state.read(topo_name) is None


def test_tree_context_manager(topo_name):
    with Network.from_file(TREE, name=topo_name, **STANDALONE) as net:
        matrix = net.ping_all()
        assert matrix.ok, f"\n{matrix}"
        assert len(matrix.results) == 30
        prefix = interface_prefix(topo_name)
        assert ovs_get("Interface", f"{prefix}-s2-4", "ofport") == "4"  # the uplink
        assert ovs_get("Bridge", f"{prefix}-s3", "other_config:datapath-id") == '"0000000000000003"'
        record = state.read(topo_name)
        assert record["status"] == "up" and set(record["hosts"]) == {f"h{i}" for i in range(1, 7)}
    assert kernel_leftovers(topo_name) == []


def test_secure_switch_without_controller_forwards_nothing(topo_name):
    with Network.from_file(SINGLE, name=topo_name, controllers=[]) as net:  # fail_mode secure
        assert not net.ping("h1", "h2", timeout=0.5, retries=0)
    assert kernel_leftovers(topo_name) == []


# -- failures and crashes -------------------------------------------------------------


def test_failed_up_removes_what_it_made(topo_name, monkeypatch):
    from kumoflow.net.ovs import OvsSwitch

    real_up = OvsSwitch.up

    def broken_up(self, switch):
        real_up(self, switch)  # the bridge exists now
        raise SwitchError("injected failure")

    monkeypatch.setattr(OvsSwitch, "up", broken_up)
    net = Network.from_file(SINGLE, name=topo_name, **STANDALONE)
    with pytest.raises(SwitchError, match="injected failure"):
        net.up()
    assert kernel_leftovers(topo_name) == []
    assert state.read(topo_name) is None


def test_up_refuses_a_name_already_up(topo_name):
    with Network.from_file(SINGLE, name=topo_name, **STANDALONE) as net:
        with pytest.raises(NetError, match="already up"):
            Network.from_file(SINGLE, name=topo_name, **STANDALONE).up()
        assert net.ping("h1", "h4")  # the running one is untouched
    assert kernel_leftovers(topo_name) == []


def test_cli_up_exec_down(topo_name):
    kumoflow_cli("up", str(SINGLE), "--name", topo_name, "--fail-mode", "standalone", "--no-controller")
    # `up` returned: the process that made the network is gone, the network is not
    assert len(kernel_leftovers(topo_name)) > 0
    ping = kumoflow_cli("exec", "--topo", topo_name, "h1", "--", "ping", "-c1", "-W2", "10.0.0.3")
    assert "1 received" in ping.stdout
    attached = Network.attach(topo_name)  # the running network, seen from this process
    assert attached.host("h4").ip == "10.0.0.4"
    assert attached.ping_all().ok
    # a process left running in a host is stopped by down
    kumoflow_cli("exec", "--topo", topo_name, "h2", "--", "sh", "-c", "sleep 600 >/dev/null 2>&1 &")
    down = kumoflow_cli("down", str(SINGLE), "--name", topo_name)
    assert "removed" in down.stdout
    assert kernel_leftovers(topo_name) == []
    assert state.read(topo_name) is None
    again = kumoflow_cli("down", topo_name)
    assert "nothing to remove" in again.stdout


CRASH_MIDWAY = """
import os, signal, sys
from kumoflow.net import Network, hosts
real = hosts.configure_host
count = 0
def configure_then_die(host):
    global count
    real(host)
    count += 1
    if count == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup of any kind runs
hosts.configure_host = configure_then_die
Network.from_file(sys.argv[1], name=sys.argv[2], fail_mode="standalone", controllers=[]).up()
"""


def test_kill_midway_then_down_cleans_everything(topo_name):
    proc = subprocess.run([sys.executable, "-c", CRASH_MIDWAY, str(TREE), topo_name],
                          env={**os.environ, "PYTHONPATH": SRC}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = kernel_leftovers(topo_name)
    assert any(item.startswith("netns") for item in left)
    assert any(item.startswith("link") for item in left)
    assert state.read(topo_name)["status"] == "starting"
    kumoflow_cli("down", topo_name)  # by name: the record says what was made
    assert kernel_leftovers(topo_name) == []
    assert state.read(topo_name) is None


def test_down_without_record_sweeps_by_name(topo_name):
    kumoflow_cli("up", str(TREE), "--name", topo_name, "--fail-mode", "standalone", "--no-controller")
    state.remove(topo_name)  # as if the record were lost
    assert len(kernel_leftovers(topo_name)) > 0
    report = Network.teardown(topo_name)  # no record, no topology file: names only
    assert report.clean
    assert kernel_leftovers(topo_name) == []


# -- with the kumoflow controller ---------------------------------------------------------


def test_tree_secure_with_kumoflow_controller(topo_name, tmp_path):
    status = tmp_path / "controller.json"
    controller = subprocess.Popen(
        [sys.executable, "-m", "kumoflow.cli", "controller", "--listen", "tcp:127.0.0.1:0",
         "--status-file", str(status), "--store", "none"],
        env={**os.environ, "PYTHONPATH": SRC}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not status.exists():                  # written once it listens, with the port it got
            assert controller.poll() is None, controller.communicate()[0]
            assert time.monotonic() < deadline, "the controller wrote no status file"
            time.sleep(0.05)
        [target] = json.loads(status.read_text())["listen"]
        net = Network.from_file(TREE, name=topo_name, controllers=[target])  # secure
        with net:
            net.wait_connected(timeout=20)
            matrix = net.ping_all(retries=2)
            assert matrix.ok, f"\n{matrix}"
        assert kernel_leftovers(topo_name) == []
    finally:
        controller.terminate()
        try:
            output, _ = controller.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            controller.kill()
            output, _ = controller.communicate()
    assert controller.returncode == 0, output       # SIGTERM: a clean shutdown
    assert "Traceback" not in output, output
    assert not status.exists()                      # removed on the way out


def test_wait_connected_names_unconnected_switches(topo_name):
    # A port bound here and never listened on: connecting to it is refused,
    # and no other process can take it while the test runs.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        with Network.from_file(SINGLE, name=topo_name, controllers=[f"tcp:127.0.0.1:{port}"]) as net:
            with pytest.raises(NetError, match="not connected to a controller after 0.5s: s1"):
                net.wait_connected(timeout=0.5)
    assert kernel_leftovers(topo_name) == []
