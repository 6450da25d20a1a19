"""Checks of app options (``kumoflow controller --set APP.OPTION=VALUE``).

An app's constructor checks each option with these; a bad value raises
ValueError naming the option and the value, which ``kumoflow controller``
prints before it starts (exit status 2)::

    kumoflow controller --set l2.idle_timeout=-1
    ... ERROR root: app 'l2': idle_timeout -1: must be a whole number 0..65535
"""

from __future__ import annotations

import math


def integer(name: str, value: object, low: int, high: int) -> int:
    """A whole number in ``low..high`` (an integral float such as 30.0 too)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} {value!r}: must be a whole number {low}..{high}")
    return value


def seconds(name: str, value: object) -> float:
    """A number of seconds, more than 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} {value!r}: must be a number of seconds, more than 0")
    return float(value)


def boolean(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} {value!r}: must be true or false")
    return value
