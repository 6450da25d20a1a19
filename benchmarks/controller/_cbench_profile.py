"""Sampling profiles of a controller under cbench load, with py-spy (pip install py-spy).

`record(pid, seconds, path)` starts `py-spy record` on a running controller
(raw "collapsed stack" output); `summarize(path)` turns the samples into
the functions where the time goes: self time (the function itself) and
inclusive time (it and what it calls), as % of samples.

    python benchmarks/controller/_cbench_profile.py FILE.collapsed [TOP]
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # benchmarks/: benchlib
import benchlib  # noqa: E402

_FRAME = re.compile(r" \((?:.*/)?([^/]+?\.py|<[^>]+>)(?::\d+)?\)$")


def record(pid: int, seconds: float, path: str, rate: int = 250) -> subprocess.Popen | None:
    exe = benchlib.py_spy()
    if exe is None:
        print("py-spy not found (pip install py-spy): no profile", file=sys.stderr)
        return None
    return subprocess.Popen([exe, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", str(rate),
                             "-f", "raw", "-o", path, "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


def _name(frame: str) -> str:
    """'packet_in (kumoflow/apps/l2.py:63)' -> 'packet_in (l2.py)'."""
    return _FRAME.sub(lambda m: f" ({m.group(1)})", frame)


def summarize(path: str, top: int = 20) -> str:
    self_time: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    total = 0
    for stack, n in benchlib.collapsed(Path(path).read_text()):
        frames = [_name(f) for f in stack if not f.startswith("process ")]
        if not frames:
            continue
        total += n
        self_time[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    if not total:
        return "(no samples)"
    out = [f"{total} samples", "self time:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in self_time.most_common(top)]
    out.append("inclusive time (function and its callees):")
    skip = {f for f, n in inclusive.items() if n == total}   # the loop's own frames: 100% everywhere
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top + len(skip)) if f not in skip][:top]
    return "\n".join(out)


if __name__ == "__main__":
    print(summarize(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20))
