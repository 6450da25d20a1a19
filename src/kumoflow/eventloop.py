"""Running the asyncio programs (controller, switch) on uvloop when it is installed."""

from __future__ import annotations

import asyncio
from typing import Coroutine


def run(main: Coroutine) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
