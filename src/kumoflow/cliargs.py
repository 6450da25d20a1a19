"""Checks of numeric command-line options, shared by the commands.

Each raises ValueError with a message naming the option and the value
given, e.g. ``--echo-interval 0: must be more than 0``; the commands print
it and exit with status 2.
"""

from __future__ import annotations

import math


def _finite(option: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{option} {value}: must be a finite number")


def positive(option: str, value: float) -> float:
    """``value`` > 0 (seconds between echoes, intervals that 0 would turn into a busy loop)."""
    _finite(option, value)
    if not value > 0:
        raise ValueError(f"{option} {value:g}: must be more than 0")
    return value


def non_negative(option: str, value: float) -> float:
    """``value`` >= 0 (durations where 0 means none or never)."""
    _finite(option, value)
    if value < 0:
        raise ValueError(f"{option} {value:g}: must be 0 or more")
    return value


def at_least(option: str, value: float, low: float) -> float:
    _finite(option, value)
    if not value >= low:
        raise ValueError(f"{option} {value:g}: must be at least {low:g}")
    return value
