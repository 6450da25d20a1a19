"""Tunnel port names, shared by the switch, the emulator and the controller.

OpenFlow 1.3 has no per-flow tunnel destination, so a switch has one
tunnel port per remote endpoint, and a controller must learn from the
port itself where it leads. The port's name says it, the way Neutron's
Open vSwitch agent names its tunnel ports: the kind, a dash, the remote
IPv4 address as 8 hex digits (``vxlan-0a000002`` is VXLAN to 10.0.0.2;
``nvgre-0a000002`` NVGRE, GRE keyed VSID << 8). 14 characters: within the
15 of a Linux interface name and the 16 of an OpenFlow port name. A name
may go on after another dash (Open vSwitch port names are unique across
all its bridges, so the emulator names them ``vxlan-<remote>-<local>``,
which OpenFlow cuts to 15 characters): what follows is not read.
"""

from __future__ import annotations

import ipaddress

KINDS = ("vxlan", "nvgre")


def port_name(kind: str, remote: str | ipaddress.IPv4Address) -> str:
    if kind not in KINDS:
        raise ValueError(f"tunnel kind {kind!r}: must be one of {', '.join(KINDS)}")
    return f"{kind}-{ipaddress.IPv4Address(remote).packed.hex()}"


def parse_port_name(name: str) -> tuple[str, ipaddress.IPv4Address] | None:
    """(kind, remote address) for a tunnel port's name; None for any other name."""
    kind, dash, rest = name.partition("-")
    digits, _, _ = rest.partition("-")
    if kind not in KINDS or not dash or len(digits) != 8:
        return None
    try:
        return kind, ipaddress.IPv4Address(bytes.fromhex(digits))
    except ValueError:
        return None
