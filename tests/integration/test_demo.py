"""`kumoflow demo` is the main job (`make demo`): the datacenter demo must
run end to end with every check passing and leave nothing behind; the
fabric demo on a mesh with loops and the classic l2 one still run."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.ovs]

KUMOFLOW = [sys.executable, "-m", "kumoflow.cli"]
ROOT = Path(__file__).resolve().parents[2]
#: the datacenter demo's checks (demo_datacenter.run_checks)
CHECKS = 14


def demo(*args: str) -> str:
    proc = subprocess.run([*KUMOFLOW, "demo", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"COLUMNS": "200", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return proc.stdout


def test_the_datacenter_demo_passes_every_check_and_leaves_nothing_behind():
    started = time.monotonic()
    out = demo()
    elapsed = time.monotonic() - started
    print(out, f"\nthe datacenter demo took {elapsed:.0f}s", file=sys.stderr)
    rows = [line for line in out.splitlines() if line.rstrip().endswith(("PASS │", "FAIL │"))]
    assert len(rows) == CHECKS and all("PASS" in row for row in rows), "\n".join(rows)
    assert f"{CHECKS} of {CHECKS} checks passed" in out
    assert re.search(r"admin token: \S+", out) and re.search(r"http://127\.0\.0\.1:\d+/(ui/|docs)", out)
    assert out.rstrip().endswith("no namespace, link, bridge or process left")
    [name] = re.findall(r"datacenter (dc\d+) up in", out)
    assert not [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
                if ns.startswith(name + "-")]
    assert name not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert name not in subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True).stdout
    assert name not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout


def test_fabric_demo_discovers_the_mesh_and_routes_around_a_cut_link():
    out = demo("--fabric")
    assert "links discovered by LLDP" in out and "hosts found by the controller" in out
    assert "links known to the controller: 9 before the cut, 8 after" in out   # examples/mesh.yaml has 9
    assert "select" in out and "fast-failover" in out
    assert out.count("FAIL") == 0 and out.rstrip().endswith("network removed, controller stopped")
    assert "all pairs reachable" in out


def test_l2_demo_learns_every_host():
    out = demo("--fabric", "--app", "l2")
    assert out.count("learned MAC addresses") == 3 and "all pairs reachable" in out and "FAIL" not in out
