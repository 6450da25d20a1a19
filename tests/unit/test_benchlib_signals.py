"""benchmarks/benchlib.exit_on_sigterm: SIGTERM unwinds the benchmark's own
process (its ``finally`` clauses clean up) but kills a fork of it outright.

pyroute2 forks to open a socket in a network namespace and SIGTERMs the
child; a child that unwound its copy of the benchmark's stack tore down the
topology its parent was building (CI: "eth0 is missing in namespace").
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"

#: forks a child that sleeps inside the parent's try/finally, SIGTERMs it, then itself
SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    sys.path.insert(0, sys.argv[1])
    import benchlib
    parent = os.getpid()
    benchlib.exit_on_sigterm()
    try:
        child = os.fork()
        if child == 0:
            time.sleep(30)
            os._exit(0)
        time.sleep(0.2)
        os.kill(child, signal.SIGTERM)
        _, status = os.waitpid(child, 0)
        print("child", os.waitstatus_to_exitcode(status), flush=True)
        os.kill(parent, signal.SIGTERM)
        time.sleep(30)
    finally:
        with open(sys.argv[2], "a") as f:
            f.write("cleanup in " + ("parent" if os.getpid() == parent else "child") + "\\n")
""")


def test_sigterm_unwinds_the_process_and_kills_its_forks(tmp_path):
    cleanups = tmp_path / "cleanups"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(BENCH), str(cleanups)],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "child 143", done.stderr
    assert done.returncode == 143
    assert cleanups.read_text() == "cleanup in parent\n"
