"""Switch kinds: what a topology's ``kind:`` names, and the interface each implements.

A kind turns a planned switch (name, bridge/interface names, datapath id,
fail mode, OpenFlow versions, controllers, and the ports with their numbers)
into a running switch, and removes it again. The emulator creates every
link before it starts the switches, so the port interfaces already exist
when :meth:`SwitchKind.up` runs, and removes switches before links.

Kinds are listed in :data:`SWITCH_KINDS` by import path and loaded on first
use. Validating a topology loads the kinds it names, to ask each what it
cannot do (:meth:`SwitchKind.protocol_problem`,
:meth:`SwitchKind.controller_problem`), so a kind's module imports its heavy
dependencies inside the methods that need them. Adding a kind is one
entry::

    SWITCH_KINDS["mykind"] = "mypackage.mymodule:MySwitch"

or ``register_kind("kumoflow", KumoflowSwitch)`` at run time.

What ``up`` returns is stored in the topology's state record and handed
back to ``down`` -- even from another process after a crash -- so a kind
that runs a process records its pid there. ``sweep`` removes anything of the
kind that belongs to the topology but was not recorded.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kumoflow.net.plan import SwitchPlan

#: kind name -> "module:Class" (or the class itself, once registered)
SWITCH_KINDS: dict[str, Any] = {
    "ovs": "kumoflow.net.ovs:OvsSwitch",
    "kumoflow": "kumoflow.net.kumoflow_kind:KumoflowSwitch",
}

_instances: dict[str, SwitchKind] = {}


class SwitchKind(ABC):
    """One way of running an OpenFlow switch in the emulator."""

    #: the ``kind:`` value in topology files
    name: str = ""

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`~kumoflow.net.errors.SwitchError` saying how to fix
        the environment if switches of this kind cannot be created now."""

    @abstractmethod
    def up(self, switch: SwitchPlan) -> dict[str, Any]:
        """Create the switch with all its ports; return JSON-able facts that
        :meth:`down` needs (stored in the state record)."""

    @abstractmethod
    def down(self, record: dict[str, Any]) -> list[str]:
        """Remove the switch described by ``record`` (``SwitchPlan.record()``
        merged with what :meth:`up` returned). Missing is not an error.
        Returns a description of each thing removed."""

    @abstractmethod
    def sweep(self, topology: str, prefix: str) -> list[str]:
        """Remove every switch of this kind belonging to ``topology`` (found by
        a marker or by the interface-name ``prefix``). Returns what it removed."""

    @abstractmethod
    def leftovers(self, topology: str, prefix: str) -> list[str]:
        """Describe what of ``topology`` still exists (empty when clean)."""

    def protocol_problem(self, protocol: str) -> str | None:
        """Why a switch of this kind cannot be made to speak ``protocol``
        (``OpenFlow10`` ... ``OpenFlow15``), or None. Checked when a topology
        is loaded, so ``kumoflow up --check`` refuses what ``up`` would; the
        default accepts every version."""
        return None

    def controller_problem(self, target: str) -> str | None:
        """Why a switch of this kind cannot use the controller ``target``
        (normalized: ``tcp:IP:PORT``, ``ssl:IP:PORT`` or ``unix:PATH``), or
        None. Checked when a topology is loaded and when its controllers
        are overridden; the default accepts every target."""
        return None

    def connected(self, switches: list[SwitchPlan]) -> dict[str, bool]:
        """For each switch (by name): is it connected to at least one of its
        controllers? A kind that cannot tell answers True."""
        return {s.name: True for s in switches}

    def on_connected(self, switches: list[SwitchPlan]) -> None:
        """Called by ``Network.wait_connected`` with switches it has just
        seen connected for the first time, for settings that only take
        effect on a live connection (see :mod:`kumoflow.net.ovs`). The
        default does nothing."""


def kind_names() -> list[str]:
    return sorted(SWITCH_KINDS)


def register_kind(name: str, target: str | type[SwitchKind]) -> None:
    """Add or replace a kind: ``target`` is a class or ``"module:Class"``."""
    SWITCH_KINDS[name] = target
    _instances.pop(name, None)


def get_kind(name: str) -> SwitchKind:
    """The (shared) instance of kind ``name``."""
    if name not in _instances:
        target = SWITCH_KINDS[name]
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module), attr)
        _instances[name] = target()
    return _instances[name]
