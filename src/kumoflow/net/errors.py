"""Exceptions of the emulator.

Every error the emulator raises on purpose is a :class:`NetError`, so the
command line can print it in one line and exit non-zero, with no traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class NetError(Exception):
    """Something the emulator could not do; the message says what and why."""


@dataclass(frozen=True)
class Issue:
    """One problem in a topology file, located by file, line and field."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        if self.field:
            return f"{where}: {self.field}: {self.message}"
        return f"{where}: {self.message}"


class TopologyError(NetError, ValueError):
    """A topology file is invalid. ``issues`` lists every problem found.

    ``str(error)`` is one ``file:line: field: message`` line per issue, in
    file order.
    """

    def __init__(self, issues: list[Issue]):
        self.issues = sorted(issues, key=lambda i: (i.line, i.field))
        super().__init__("\n".join(str(i) for i in self.issues))


class SwitchError(NetError):
    """A switch could not be created, configured or removed."""


class TeardownError(NetError):
    """``down`` finished but some of what the topology made is still there."""

    def __init__(self, name: str, leftovers: list[str], errors: list[str]):
        self.leftovers = leftovers
        self.errors = errors
        lines = [f"topology {name!r} not fully removed"]
        lines += [f"  still present: {item}" for item in leftovers]
        lines += [f"  error: {err}" for err in errors]
        super().__init__("\n".join(lines))
