"""`kumoflow demo` is the main job (`make demo`): it must run end to end,
both the fabric demo on a mesh with loops and the classic l2 one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.ovs]

KUMOFLOW = [sys.executable, "-m", "kumoflow.cli"]
ROOT = Path(__file__).resolve().parents[2]


def demo(*args: str) -> str:
    proc = subprocess.run([*KUMOFLOW, "demo", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"COLUMNS": "200", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_fabric_demo_discovers_the_mesh_and_routes_around_a_cut_link():
    out = demo()
    assert "links discovered by LLDP" in out and "hosts found by the controller" in out
    assert "links known to the controller: 9 before the cut, 8 after" in out   # examples/mesh.yaml has 9
    assert "select" in out and "fast-failover" in out
    assert out.count("FAIL") == 0 and out.rstrip().endswith("network removed, controller stopped")
    assert "all pairs reachable" in out


def test_l2_demo_learns_every_host():
    out = demo("--app", "l2")
    assert out.count("learned MAC addresses") == 3 and "all pairs reachable" in out and "FAIL" not in out
