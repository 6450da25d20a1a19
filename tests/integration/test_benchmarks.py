"""Every benchmark's entry point runs: ``--help``, and ``--quick`` with ``--json``.

A quick run takes seconds and goes through the whole path of its benchmark
(peers started, checks before timing, every table printed), so a change
that breaks a benchmark shows up here rather than when someone next wants
a figure. Nothing here looks at the figures: quick runs are noise, and
tests assert behaviour, not speed (docs/benchmarks.md has the figures).

A benchmark that needs root or a service says so with a module-level
``REQUIRES = ("root", "ovs")``; its quick run gets those markers, and runs
only when its test is selected and not skipped. The runs start together in
a module fixture (those with requirements one after another, beside the
rest) and the tests read their results, which keeps the time this adds to
the suite near that of the longest run.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"

#: entry points: the scripts in a subject folder whose names do not start with "_"; each runs
#: once with --quick, or once per argument list here
QUICK_ARGS: dict[str, list[list[str]]] = {
    "controller/cbench.py": [["compare"], ["scale"]],
}
TIMEOUT = 300


def entry_points() -> list[str]:
    return sorted(str(p.relative_to(BENCH)) for p in BENCH.glob("*/*.py") if not p.name.startswith("_"))


def requires(script: str) -> tuple[str, ...]:
    """The script's REQUIRES (markers of tests/conftest.py: root, ovs, tshark), read without importing it."""
    for node in ast.parse((BENCH / script).read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "REQUIRES" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    return ()


def quick_runs() -> list:
    return [pytest.param(script, args, id=run_id(script, args),
                         marks=[getattr(pytest.mark, r) for r in requires(script)])
            for script in entry_points() for args in QUICK_ARGS.get(script, [[]])]


def start(script: str, args: list[str], json_path: Path | None) -> subprocess.Popen:
    argv = [sys.executable, str(BENCH / script), *args]
    if json_path is not None:
        argv += ["--quick", "--json", str(json_path)]
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return -1, out + f"\n(killed after {TIMEOUT} s)"
    return proc.returncode, out


def run_id(script: str, args: list[str]) -> str:
    return " ".join([script, *args])


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory) -> dict[str, tuple[int, str, Path | None]]:
    """The --help and quick runs of the tests that will run (selected, not skipped), all started at once."""
    tmp = tmp_path_factory.mktemp("bench")
    will_run = {(item.originalname, item.callspec.id) for item in request.session.items
                if hasattr(item, "callspec") and not item.get_closest_marker("skip")}
    procs, serial = {}, []
    for script in entry_points():
        if ("test_help", script) in will_run:
            procs[run_id(script, ["--help"])] = (start(script, ["--help"], None), None)
    for script in entry_points():
        for args in QUICK_ARGS.get(script, [[]]):
            if ("test_quick", run_id(script, args)) not in will_run:
                continue
            path = tmp / (run_id(script, args).replace("/", "_").replace(" ", "_") + ".json")
            if requires(script):            # root, Open vSwitch: one at a time (they share ovs-vswitchd)
                serial.append((script, args, path))
            else:
                procs[run_id(script, args)] = (start(script, args, path), path)
    results = {}

    def run_serial() -> None:
        for script, args, path in serial:
            results[run_id(script, args)] = (*finish(start(script, args, path)), path)
    thread = threading.Thread(target=run_serial)
    thread.start()
    results.update({key: (*finish(proc), path) for key, (proc, path) in procs.items()})
    thread.join()
    return results


def check_quick(rc: int, out: str, path: Path) -> None:
    """Exit 0, a Markdown table printed, the JSON written with the machine in it."""
    assert rc == 0, out[-4000:]
    assert "| " in out and "|--" in out, f"no Markdown table in the output:\n{out[-4000:]}"
    assert "Flow counts differ" not in out, out[-4000:]     # bench_switch.py: flows installed and counted
    # router/forwarding.py: every sample routed (MACs rewritten, TTL 63), the same flows in both switches;
    # router/interface.py: every run saw its first routed packet
    assert "Routing check failed" not in out and "Runs without a figure" not in out, out[-4000:]
    # api/port_to_flow.py: every timed port's flow is in its switch's table at the end
    assert "Flow check failed" not in out, out[-4000:]
    if "router/forwarding.py" in out:
        for figure in json.loads(path.read_text())["figures"].values():
            same = figure["same_flows"]
            assert same["only_ovs"] == same["only_kumoflow"] == 0, same
    data = json.loads(path.read_text())
    assert data["machine"]["nproc"] and data["machine"]["commit"]
    # bgp/to_forwarding.py: both switch kinds measured; in every phase the probe to the last prefix was
    # forwarded (TTL 63), and the controller sent one FLOW_MOD per prefix (when the capture saw everything)
    if "bgp/to_forwarding.py" in out:
        assert sorted(data["results"]) == ["kumoflow", "ovs"], data["results"].keys()
        for res in data["results"].values():
            for run in res["runs"]:
                for phase in ("announce", "withdraw"):
                    p = run[phase]
                    assert p["forwarded_s"] is not None and p["probe_ttls"] == [63], p
                    assert p["capture_lost"] or p["flow_mods"] == data["args"]["prefixes"], p


def test_every_entry_point_is_in_the_benchmarks_readme():
    readme = (BENCH / "README.md").read_text()
    missing = [s for s in entry_points() if f"benchmarks/{s}" not in readme]
    assert not missing, f"benchmarks/README.md does not say how to run {missing}"


@pytest.mark.parametrize("script", entry_points())
def test_help(runs, script):
    rc, out, _ = runs[run_id(script, ["--help"])]
    assert rc == 0, out
    assert "--quick" in out or "compare" in out       # cbench.py: --quick is on its subcommands


@pytest.mark.parametrize("script,args", quick_runs())
def test_quick(runs, script, args):
    check_quick(*runs[run_id(script, args)])
