"""Suite-wide pytest set-up: requirement markers and unique names.

Markers (declared in pyproject.toml, not here):

``root``    the test needs root (namespaces, raw sockets, Open vSwitch).
``ovs``     the test needs Open vSwitch running (``ovs-vsctl show`` answers).
``tshark``  the test needs Wireshark's ``tshark`` on PATH.

``make test`` installs and starts all of these. When a requirement is not met
the test is skipped on a developer machine, but fails in CI (environment
variable ``CI`` set to true/1/yes), or anywhere with ``KUMOFLOW_STRICT=1``, so
that CI can never pass by skipping what it was meant to test.

Fixture ``unique_name``: a function returning short names, unique across runs,
for namespaces, links and bridges; see its docstring.

Hypothesis runs under one of two profiles, loaded here before any test module
is imported (a test's own ``@settings`` only overrides what it names):

``dev``  (off CI) random examples; a failure prints its example and the
         ``@reproduce_failure(...)`` blob that replays it exactly.
``ci``   (CI or KUMOFLOW_STRICT) the same, plus ``derandomize``: the examples
         are a function of the test alone, so a red CI run is red again on any
         machine with the same code, and never red because a new random
         example turned up beside an unrelated change. Searching wider is the
         job of a local run (or ``HYPOTHESIS_PROFILE=dev``).

Both have no deadline: a test's speed on a loaded machine is not its result
(timing goals live in benchmarks/). ``HYPOTHESIS_PROFILE`` picks a profile by
name; ``pytest --hypothesis-seed=N`` fixes the seed of a random run.
"""

from __future__ import annotations

import functools
import itertools
import os
import secrets
import shutil
import subprocess

import pytest
from hypothesis import settings

_TRUE = {"1", "true", "yes", "on"}


def _strict() -> bool:
    return (
        os.environ.get("CI", "").strip().lower() in _TRUE
        or os.environ.get("KUMOFLOW_STRICT", "").strip().lower() in _TRUE
    )


settings.register_profile("dev", deadline=None, print_blob=True)
settings.register_profile("ci", deadline=None, print_blob=True, derandomize=True, database=None)
_HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if _strict() else "dev")
settings.load_profile(_HYPOTHESIS_PROFILE)


def _is_root() -> bool:
    return os.geteuid() == 0


@functools.cache
def _ovs_problem() -> str | None:
    """None when Open vSwitch answers, else why not. Checked once a session."""
    if shutil.which("ovs-vsctl") is None:
        return "ovs-vsctl not found (install openvswitch-switch: run `make test`)"
    try:
        proc = subprocess.run(
            ["ovs-vsctl", "--timeout=5", "show"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"ovs-vsctl show failed: {exc}"
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        why = detail[-1] if detail else f"exit status {proc.returncode}"
        return (
            f"Open vSwitch is not reachable (ovs-vsctl show: {why}); "
            "`make test` starts it, as root"
        )
    return None


def _requirement_problem(marker: str) -> str | None:
    if marker == "root":
        if not _is_root():
            return f"needs root (running as uid {os.geteuid()})"
    elif marker == "ovs":
        return _ovs_problem()
    elif marker == "tshark":
        if shutil.which("tshark") is None:
            return "tshark not found (install tshark: run `make test`)"
    return None


_REQUIREMENT_MARKERS = ("root", "ovs", "tshark")


def pytest_report_header(config: pytest.Config) -> list[str]:
    have = []
    for marker in _REQUIREMENT_MARKERS:
        problem = _requirement_problem(marker)
        have.append(f"{marker}={'yes' if problem is None else 'no'}")
    mode = "fail" if _strict() else "skip"
    examples = "derandomized" if settings.default.derandomize else "random"
    return [f"kumoflow requirements: {' '.join(have)} (unmet -> {mode})",
            f"hypothesis profile: {_HYPOTHESIS_PROFILE} ({examples} examples; a failure prints its @reproduce_failure)"]


def _problems(item: pytest.Item) -> list[str]:
    return [
        f"[{marker}] {problem}"
        for marker in _REQUIREMENT_MARKERS
        if item.get_closest_marker(marker) is not None
        and (problem := _requirement_problem(marker)) is not None
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Off CI: skip with the reason, reported at the test's own location.
    if _strict():
        return
    for item in items:
        problems = _problems(item)
        if problems:
            item.add_marker(pytest.mark.skip(reason="; ".join(problems)))


def pytest_runtest_setup(item: pytest.Item) -> None:
    # In CI: a test whose requirement is missing is an error, never a skip.
    if not _strict():
        return
    problems = _problems(item)
    if problems:
        pytest.fail(
            "requirement not met in CI, refusing to skip: " + "; ".join(problems),
            pytrace=False,
        )


# --- unique names ----------------------------------------------------------

#: Longest name unique_name returns. Linux interface names hold 15 bytes;
#: staying at 12 leaves room for a short suffix such as "-p1" or ".10".
MAX_NAME = 12
_counter = itertools.count()


def _new_name(prefix: str) -> str:
    if not prefix or len(prefix) > 4 or not prefix.isascii() or not prefix.isalnum():
        raise ValueError(f"unique_name prefix must be 1-4 ASCII letters/digits, got {prefix!r}")
    # Random part differs between runs and concurrent sessions; the counter
    # part differs between calls within this session.
    tail = f"{secrets.randbits(20):05x}{next(_counter) % 0x1000:03x}"
    return (prefix + tail)[:MAX_NAME]


def _cleanup_leftovers(names: list[str]) -> None:
    """Best effort: delete bridges, namespaces and links a test left behind."""
    if not names or not _is_root():
        return
    run = functools.partial(subprocess.run, capture_output=True, timeout=15, check=False)
    if shutil.which("ovs-vsctl") and _ovs_problem() is None:
        bridges = run(["ovs-vsctl", "--timeout=5", "list-br"], text=True).stdout.split()
        for name in set(names) & set(bridges):
            run(["ovs-vsctl", "--timeout=5", "--if-exists", "del-br", name])
    if shutil.which("ip"):
        netns = {
            line.split()[0]
            for line in run(["ip", "netns", "list"], text=True).stdout.splitlines()
            if line.strip()
        }
        for name in names:
            if name in netns:
                run(["ip", "netns", "delete", name])
        for name in names:
            if run(["ip", "link", "show", "dev", name]).returncode == 0:
                run(["ip", "link", "delete", "dev", name])


@pytest.fixture
def unique_name():
    """Return a function ``unique_name(prefix="kf") -> str``.

    Each call gives a new name of at most 12 characters: the prefix (1-4
    letters/digits) followed by hex digits that are random per call, so a
    rerun, or a leftover from a crashed run, does not collide. Use it for
    network namespaces, veth/tap links and OVS bridges::

        def test_x(unique_name):
            ns, br = unique_name("ns"), unique_name("br")

    At teardown, any OVS bridge, namespace or link still carrying a name
    handed out here is deleted (when running as root), as a safety net; tests
    should still clean up after themselves.
    """
    issued: list[str] = []

    def make(prefix: str = "kf") -> str:
        name = _new_name(prefix)
        issued.append(name)
        return name

    yield make
    _cleanup_leftovers(issued)
