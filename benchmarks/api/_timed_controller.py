#!/usr/bin/env python3
"""`kumoflow controller` with clocks on the path from a store commit to the
flow-mods written, for benchmarks/api/port_to_flow.py (``--breakdown``).

    _timed_controller.py OUT.json controller --app router --api ... (the usual arguments)

Runs ``kumoflow.cli.main`` in this process after wrapping, on the classes
(nothing in src/ changes):

- ``kumoflow.api.neutron.ports.new_port``: the API building a port's body
  (checks, an address allocated, a MAC generated, the default security
  group), before the commit;
- ``SQLiteStore._commit``: one store commit, from parsing the operations to
  the watchers having run (SQL, ``COMMIT`` with its fsync, then delivery);
- ``SQLiteStore._deliver``: the watchers: the controller's mirror applying
  the change, the apps marking what changed, and at the end of that batch
  compiling, reconciling and flushing (``Core._end_batch``);
- ``Core._compile`` (an owner's entries compiled for one switch),
  ``Core._sync`` (the reconciler's diff and the messages encoded),
  ``Datapath.flush`` (the socket write).

Per commit one record: its start (CLOCK_REALTIME, ns, comparable with the
capture's kernel timestamps) and the nanoseconds spent in each part. The
wrappers add two clock reads and a call per wrapped call (about a
microsecond). Written to OUT.json when the controller exits (SIGTERM).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # benchmarks/: benchlib
import benchlib  # noqa: E402

benchlib.use_src()

from kumoflow import cli  # noqa: E402
from kumoflow.controller import core as core_mod  # noqa: E402
from kumoflow.controller import datapath as dp_mod  # noqa: E402
from kumoflow.store import sqlite as store_mod  # noqa: E402

records: list[list[int]] = []   # [start_ns, total, deliver, compile, sync, flush, compiles, ops, build]
_current: list[int] | None = None
_built = 0                       # ns in new_port (the port's body: address, MAC, groups) since the last commit
clock = time.perf_counter_ns


def _timed(cls, name: str, slot: int) -> None:
    orig = getattr(cls, name)

    def wrapper(*args, **kwargs):
        rec = _current
        if rec is None:
            return orig(*args, **kwargs)
        t = clock()
        try:
            return orig(*args, **kwargs)
        finally:
            rec[slot] += clock() - t
            if slot == 3:
                rec[6] += 1
    wrapper.__wrapped__ = orig
    setattr(cls, name, wrapper)


def _wrap_commit() -> None:
    orig = store_mod.SQLiteStore._commit

    def _commit(self, ops):
        global _current
        if _current is not None:             # a commit from inside a watcher: counted in the outer one
            return orig(self, ops)
        global _built
        rec = _current = [time.time_ns(), 0, 0, 0, 0, 0, 0, len(ops), _built]
        _built = 0
        t = clock()
        try:
            return orig(self, ops)
        finally:
            rec[1] = clock() - t
            _current = None
            records.append(rec)
    store_mod.SQLiteStore._commit = _commit


def _wrap_new_port() -> None:
    from kumoflow.api.neutron import ports
    orig = ports.new_port

    def new_port(*args, **kwargs):
        global _built
        t = clock()
        try:
            return orig(*args, **kwargs)
        finally:
            _built += clock() - t
    ports.new_port = new_port          # create_ports looks it up in its module when called


def main() -> int:
    out = Path(sys.argv[1])
    _wrap_commit()
    _wrap_new_port()
    _timed(store_mod.SQLiteStore, "_deliver", 2)
    _timed(core_mod.Core, "_compile", 3)
    _timed(core_mod.Core, "_sync", 4)
    _timed(dp_mod.Datapath, "flush", 5)
    try:
        return cli.main(sys.argv[2:])
    finally:
        out.write_text(json.dumps({"fields": ["start_ns", "total", "deliver", "compile", "sync", "flush",
                                              "compiles", "ops", "build"], "records": records}))


if __name__ == "__main__":
    sys.exit(main())
