"""App options end to end: `kumoflow controller --set l2.idle_timeout=30` as a
real process, its flows read back from a real Open vSwitch bridge; and
`python -m kumoflow` as a user would type it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kumoflow.net import Network

from controller_process import ControllerProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.root
@pytest.mark.ovs
def test_set_l2_idle_timeout_reaches_the_switch(unique_name, tmp_path):
    ctl = ControllerProcess(log=tmp_path / "controller.log", args=("--set", "l2.idle_timeout=30")).start()
    net = Network.from_file(EXAMPLES / "single.yaml", name=unique_name("opt"), fail_mode="secure",
                            controllers=[ctl.target])
    try:
        net.up()
        net.wait_connected(20)
        assert net.ping("h1", "h2", retries=2)
        out = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", net.plan.switches[0].bridge],
                             capture_output=True, text=True, check=True).stdout
        learned = [line for line in out.splitlines() if "priority=10," in line]
        assert learned, out
        assert all("idle_timeout=30," in line for line in learned), out
    finally:
        net.down()
        assert ctl.stop() == 0, (tmp_path / "controller.log").read_text()[-2000:]


def test_python_dash_m_kumoflow():
    src = str(Path(__file__).resolve().parents[2] / "src")
    proc = subprocess.run([sys.executable, "-m", "kumoflow", "--version"], capture_output=True, text=True,
                          timeout=60, env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and proc.stdout.startswith("kumoflow "), proc.stderr
    proc = subprocess.run([sys.executable, "-m", "kumoflow", "up", "--help"], capture_output=True, text=True,
                          timeout=60, env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and "usage: kumoflow up" in proc.stdout
