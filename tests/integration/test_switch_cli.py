"""The `kumoflow switch` command: argument errors, clean shutdown on SIGTERM and
SIGINT, several controllers at once, and reconnection to a restarted
controller -- with real processes."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest

from kumoflow.switch.cli import _dpid, parse_ports
from test_switch_support import ENV, ControllerProcess, SwitchProcess, hosts_on_veths, ofctl, ping, wait_until


def kumoflow(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kumoflow.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def test_port_and_dpid_parsing():
    assert parse_ports(["1=a", "b", "3=c", "d"]) == {1: "a", 3: "c", 2: "b", 4: "d"}
    for bad in (["x=a"], ["1=a", "1=b"], ["1=a", "2=a"], ["0=a"], ["1="]):
        with pytest.raises(ValueError):
            parse_ports(bad)
    assert _dpid("0x1") == 1 and _dpid("10") == 10 and _dpid("00:00:00:00:00:00:00:0a") == 10
    assert _dpid("000000000000000b") == 11


def test_bad_arguments_are_refused_with_a_clear_message():
    proc = kumoflow("switch", "--port", "1=definitely-not-an-interface")
    assert proc.returncode == 1 and "no network interface 'definitely-not-an-interface'" in proc.stderr
    proc = kumoflow("switch", "--port", "1=lo", "--controller", "ptcp:6653")
    assert proc.returncode == 2 and "expected tcp:HOST:PORT" in proc.stderr
    proc = kumoflow("switch", "--tables", "300")
    assert proc.returncode == 2 and "--tables 300" in proc.stderr
    proc = kumoflow("switch", "--dpid", "zz")
    assert proc.returncode == 2 and "bad datapath id" in proc.stderr
    assert "--fail-mode" in kumoflow("switch", "--help").stdout


@pytest.mark.root
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_clean_shutdown_on_signals(unique_name, tmp_path, sig):
    with hosts_on_veths(unique_name, 2) as hosts:
        switch = SwitchProcess(tmp_path, {1: hosts[0][1], 2: hosts[1][1]}).start()
        try:
            assert switch.status()["pid"] == switch.proc.pid
            switch.proc.send_signal(sig)
            assert switch.proc.wait(timeout=10) == 0, switch.log()
            assert not switch.status_file.exists()
            assert "shutting down" in switch.log() and "Traceback" not in switch.log()
        finally:
            switch.stop()


@pytest.mark.root
def test_two_controllers_and_reconnect_after_restart(unique_name, tmp_path):
    """Two kumoflow controllers (l2) at once; one restarts; forwarding goes on."""
    with hosts_on_veths(unique_name, 2) as hosts, \
            ControllerProcess(tmp_path) as a, ControllerProcess(tmp_path) as b:
        switch = SwitchProcess(tmp_path, {1: hosts[0][1], 2: hosts[1][1]},
                               controllers=[a.target, b.target], extra=["--echo-interval", "1"]).start()
        try:
            wait_until(lambda: switch.status()["connected"], 15, what="connected")
            wait_until(lambda: "switch dpid=0x1 up" in a.log() and "switch dpid=0x1 up" in b.log(), 15,
                       what="both controllers see the switch")
            assert ping(hosts[0][0], hosts[1][2], count=2)
            a.stop()
            wait_until(lambda: re.search(rf"<controller 127\.0\.0\.1:{a.port} \w+>: disconnected", switch.log()),
                       15, what="the switch noticed a is gone")
            assert switch.status()["connected"]                  # b is still there
            assert ping(hosts[1][0], hosts[0][2], count=2)
            a.start()                                            # a comes back on the same port
            wait_until(lambda: a.log().count("switch dpid=0x1 up") >= 2, 20, what="reconnected to a")
            assert ping(hosts[0][0], hosts[1][2], count=2)
            # the management listener works beside the controllers
            assert "n_packets=" in ofctl(switch.target, "dump-flows")
            assert switch.proc.poll() is None
        finally:
            switch.stop()
            print(switch.log()[-3000:])


@pytest.mark.root
@pytest.mark.ovs
def test_port_reattaches_when_its_interface_is_recreated(unique_name, tmp_path):
    from test_switch_support import parse_ports_desc, sh
    with hosts_on_veths(unique_name, 2) as hosts:
        switch = SwitchProcess(tmp_path, {1: hosts[0][1], 2: hosts[1][1]}).start()
        try:
            ofctl(switch.target, "add-flow", "in_port=1,actions=output:2")
            ofctl(switch.target, "add-flow", "in_port=2,actions=output:1")
            assert ping(hosts[0][0], hosts[1][2], count=1)
            ns, port, ip, mac = hosts[1]
            sh("ip", "link", "del", port)                       # the port's interface goes away
            wait_until(lambda: "LINK_DOWN" in parse_ports_desc(ofctl(switch.target, "dump-ports-desc"))["2"]["state"],
                       5, what="port 2 down")
            sh("ip", "link", "add", port, "type", "veth", "peer", "name", port + "x")   # and comes back
            sh("ip", "link", "set", port + "x", "netns", ns)
            sh("ip", "-n", ns, "link", "set", port + "x", "name", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "address", mac)
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            wait_until(lambda: parse_ports_desc(ofctl(switch.target, "dump-ports-desc"))["2"]["state"] == "LIVE",
                       10, what="port 2 live on the new interface")
            assert ping(hosts[0][0], hosts[1][2], count=2, timeout=3), switch.log()[-3000:]
            assert "re-attached" in switch.log()
        finally:
            switch.stop()
