"""Running the asyncio programs (controller, switch) on uvloop when it is installed."""

from __future__ import annotations

import asyncio
import gc
from typing import Coroutine

#: generation-0 threshold of the garbage collector in a long-lived process (Python's is 700)
GC_THRESHOLD0 = 10_000


def run(main: Coroutine) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def quiet_gc(threshold0: int = GC_THRESHOLD0) -> None:
    """The collector policy of a process that holds many flow-sized objects (the controller:
    a learned route is a dozen containers; call once, after start-up's imports and objects).

    What exists now is frozen out of the collector's sight after a full collection (never
    scanned again; the price: a cycle among those objects that later dies is never freed),
    and the young generation's threshold goes from 700 to `threshold0`. Collections follow
    the net growth of containers, and a burst of routes is exactly that: with Python's
    default, 100,000 routes cost the controller ~40% more CPU in collections, most of them
    full ones over every route already held (benchmarks/bgp/_controller_cost.py --no-gc).
    Cyclic garbage waits longer; what is not cyclic is freed by reference counting at once."""
    gc.collect()
    gc.freeze()
    t0, t1, t2 = gc.get_threshold()
    gc.set_threshold(max(t0, threshold0), t1, t2)
