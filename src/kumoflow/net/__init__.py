"""kumoflow.net: the emulator -- namespaces, links, switches, YAML topologies.

Public API (imported lazily, so ``import kumoflow.net`` stays cheap)::

    Network              build, start, use and remove a topology instance
    Host                 a running host: .run(), .popen(), .ip, .netns
    PingMatrix           result of Network.ping_all()
    load_topology        read and validate a topology file -> Topology
    parse_topology       the same from a string
    Topology             the validated model (hosts, switches, links)
    TopologyError        invalid topology: .issues, one file:line: field: message each
    NetError             base of the emulator's errors
    TeardownError        down left something behind
    register_kind        plug in a switch kind (see kumoflow.net.switches)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Network": "kumoflow.net.network",
    "Host": "kumoflow.net.hosts",
    "PingMatrix": "kumoflow.net.ping",
    "PingResult": "kumoflow.net.ping",
    "load_topology": "kumoflow.net.topology",
    "parse_topology": "kumoflow.net.topology",
    "Topology": "kumoflow.net.topology",
    "TopologyError": "kumoflow.net.errors",
    "NetError": "kumoflow.net.errors",
    "TeardownError": "kumoflow.net.errors",
    "SwitchError": "kumoflow.net.errors",
    "SwitchKind": "kumoflow.net.switches",
    "register_kind": "kumoflow.net.switches",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'kumoflow.net' has no attribute {name!r}")
