"""Compile and validate an ofp.Match into int (field, value, mask) tuples.

`compile_match(match)` checks a match the way section 7.2.3 of the
specification asks and raises SwitchError(OFPET_BAD_MATCH, code):

- a field that is not an OpenFlow-basic OXM kumoflow knows -> BAD_FIELD
- a mask on a field that cannot be masked -> BAD_MASK
- a value with 1-bits where its mask has 0-bits -> BAD_WILDCARDS
- a value out of the field's range (vlan_pcp > 7, an MPLS label over 20
  bits, ...) -> BAD_VALUE
- a field whose prerequisite (Table 12: eth_type for IP fields, ip_proto
  for ports, ...) is not in the match -> BAD_PREREQ

The result is a `Compiled`: the fields sorted by number, with
flowkey.PRESENT in value and mask (see flowkey), fields with an all-zero
mask dropped (they match anything), and `state`: what the match pins down
exactly, used to check set-field prerequisites (MATCH_INCONSISTENT).
"""

from __future__ import annotations

import socket

from kumoflow.ofp.errors import OFPBMC, OFPET
from kumoflow.ofp.oxm import FIELDS_BY_NAME, IPV4, IPV6, MAC, Match, OxmField

from . import flowkey as fk
from .errors import SwitchError

P = fk.PRESENT
FULL = {code: (1 << w) - 1 for code, w in fk.WIDTHS.items()}
# Largest valid value where narrower than the wire size (section 7.2.3.7).
MAX_VALUE = {fk.VLAN_VID: 0x1FFF, fk.VLAN_PCP: 7, fk.IP_DSCP: 63, fk.IP_ECN: 3, fk.IPV6_FLABEL: 0xFFFFF,
             fk.MPLS_LABEL: 0xFFFFF, fk.MPLS_TC: 7, fk.MPLS_BOS: 1, fk.IPV6_EXTHDR: 0x1FF}

#: Key of `state` that says the match guarantees a VLAN tag.
VLAN_PRESENT = -1

_IP = frozenset((fk.ETH_TYPE_IPV4, fk.ETH_TYPE_IPV6))
_V4 = frozenset((fk.ETH_TYPE_IPV4,))
_V6 = frozenset((fk.ETH_TYPE_IPV6,))
# field -> (field it depends on, values it must have); VLAN_PRESENT / IN_PORT special.
PREREQS: dict[int, tuple[int, frozenset | None]] = {
    fk.IN_PHY_PORT: (fk.IN_PORT, None),
    fk.VLAN_PCP: (VLAN_PRESENT, None),
    fk.IP_DSCP: (fk.ETH_TYPE, _IP), fk.IP_ECN: (fk.ETH_TYPE, _IP), fk.IP_PROTO: (fk.ETH_TYPE, _IP),
    fk.IPV4_SRC: (fk.ETH_TYPE, _V4), fk.IPV4_DST: (fk.ETH_TYPE, _V4),
    fk.TCP_SRC: (fk.IP_PROTO, frozenset((6,))), fk.TCP_DST: (fk.IP_PROTO, frozenset((6,))),
    fk.UDP_SRC: (fk.IP_PROTO, frozenset((17,))), fk.UDP_DST: (fk.IP_PROTO, frozenset((17,))),
    fk.SCTP_SRC: (fk.IP_PROTO, frozenset((132,))), fk.SCTP_DST: (fk.IP_PROTO, frozenset((132,))),
    fk.ICMPV4_TYPE: (fk.IP_PROTO, frozenset((1,))), fk.ICMPV4_CODE: (fk.IP_PROTO, frozenset((1,))),
    fk.ARP_OP: (fk.ETH_TYPE, frozenset((fk.ETH_TYPE_ARP,))),
    fk.ARP_SPA: (fk.ETH_TYPE, frozenset((fk.ETH_TYPE_ARP,))),
    fk.ARP_TPA: (fk.ETH_TYPE, frozenset((fk.ETH_TYPE_ARP,))),
    fk.ARP_SHA: (fk.ETH_TYPE, frozenset((fk.ETH_TYPE_ARP,))),
    fk.ARP_THA: (fk.ETH_TYPE, frozenset((fk.ETH_TYPE_ARP,))),
    fk.IPV6_SRC: (fk.ETH_TYPE, _V6), fk.IPV6_DST: (fk.ETH_TYPE, _V6),
    fk.IPV6_FLABEL: (fk.ETH_TYPE, _V6), fk.IPV6_EXTHDR: (fk.ETH_TYPE, _V6),
    fk.ICMPV6_TYPE: (fk.IP_PROTO, frozenset((58,))), fk.ICMPV6_CODE: (fk.IP_PROTO, frozenset((58,))),
    fk.IPV6_ND_TARGET: (fk.ICMPV6_TYPE, frozenset((135, 136))),
    fk.IPV6_ND_SLL: (fk.ICMPV6_TYPE, frozenset((135,))),
    fk.IPV6_ND_TLL: (fk.ICMPV6_TYPE, frozenset((136,))),
    fk.MPLS_LABEL: (fk.ETH_TYPE, fk.MPLS_TYPES), fk.MPLS_TC: (fk.ETH_TYPE, fk.MPLS_TYPES),
    fk.MPLS_BOS: (fk.ETH_TYPE, fk.MPLS_TYPES),
    fk.PBB_ISID: (fk.ETH_TYPE, frozenset((fk.ETH_TYPE_PBB,))),
}

FIELD_NAMES = {f.code: f.name for f in FIELDS_BY_NAME.values()}


def prereq_ok(code: int, state: dict) -> bool:
    """Does `state` (exact values known of a packet) satisfy code's prerequisite?"""
    req = PREREQS.get(code)
    if req is None:
        return True
    on, allowed = req
    if on == VLAN_PRESENT:
        return bool(state.get(VLAN_PRESENT))
    if allowed is None:
        return on in state
    return state.get(on) in allowed


def to_int(f: OxmField, value) -> int:
    """An ofp.Match value (int, MAC or IP text, or bytes) as an int."""
    if type(value) is int:
        return value
    if isinstance(value, (bytes, bytearray)):
        return int.from_bytes(value, "big")
    if f.kind == MAC:
        raw = bytes.fromhex(value.replace(":", "").replace("-", ""))
        if len(raw) != 6:
            raise ValueError(value)
        return int.from_bytes(raw, "big")
    if f.kind == IPV4:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, value), "big")
    if f.kind == IPV6:
        return int.from_bytes(socket.inet_pton(socket.AF_INET6, value), "big")
    return int(value)


def from_int(code: int, value: int):
    """The ofp.Match representation of a field value given as an int."""
    f = _BY_CODE[code]
    if f.kind == MAC:
        return value.to_bytes(6, "big").hex(":")
    if f.kind == IPV4:
        return socket.inet_ntop(socket.AF_INET, value.to_bytes(4, "big"))
    if f.kind == IPV6:
        return socket.inet_ntop(socket.AF_INET6, value.to_bytes(16, "big"))
    return value


_BY_CODE = {f.code: f for f in FIELDS_BY_NAME.values()}


class Compiled:
    """A validated match: `fields` ((code, value|P, mask|P), ...) sorted by
    code, `fmap` code -> (value|P, mask|P), and `state` (exact values)."""

    __slots__ = ("fields", "fmap", "state")

    def __init__(self, fields: tuple, state: dict) -> None:
        self.fields = fields
        self.fmap = {c: (v, m) for c, v, m in fields}
        self.state = state

    def matches(self, key: list) -> bool:
        for c, v, m in self.fields:
            if key[c] & m != v:
                return False
        return True

    def covers(self, other: "Compiled") -> bool:
        """Non-strict match: is every packet `other` matches matched by self?
        (self's fields all appear in other, at least as specific.)"""
        omap = other.fmap
        for c, v, m in self.fields:
            e = omap.get(c)
            if e is None:
                return False
            ev, em = e
            if em & m != m or ev & m != v:
                return False
        return True

    def overlaps(self, other: "Compiled") -> bool:
        """Could one packet match both?"""
        omap = other.fmap
        for c, v, m in self.fields:
            e = omap.get(c)
            if e is not None:
                ov, om = e
                common = m & om
                if v & common != ov & common:
                    return False
        return True

    def __eq__(self, other) -> bool:
        return isinstance(other, Compiled) and self.fields == other.fields

    def __hash__(self) -> int:
        return hash(self.fields)

    def __repr__(self) -> str:
        parts = []
        for c, v, m in self.fields:
            v &= ~P
            m &= ~P
            parts.append(f"{FIELD_NAMES[c]}={v:#x}" + ("" if m == FULL[c] else f"/{m:#x}"))
        return "Compiled(" + ", ".join(parts) + ")"


EMPTY = Compiled((), {})


def _bad(code: int, detail: str) -> SwitchError:
    return SwitchError(OFPET.BAD_MATCH, code, detail)


def compile_match(match: Match) -> Compiled:
    """Validate `match` and compile it (see module docstring)."""
    if not match:
        return EMPTY
    items: dict[int, tuple[int, int]] = {}
    for name, value in match.items():
        if type(name) is not str:
            raise _bad(OFPBMC.BAD_FIELD, f"OXM {name!r} is not an OpenFlow basic field kumoflow supports")
        f = FIELDS_BY_NAME.get(name)
        if f is None:
            raise _bad(OFPBMC.BAD_FIELD, f"unknown OXM field {name!r}")
        code = f.code
        full = FULL[code]
        mask = None
        if type(value) is tuple:
            value, mask = value
            if mask is not None and not f.maskable:
                raise _bad(OFPBMC.BAD_MASK, f"{name} cannot be masked")
        try:
            v = to_int(f, value)
            m = full if mask is None else to_int(f, mask)
        except (ValueError, TypeError, OSError, AttributeError):
            raise _bad(OFPBMC.BAD_VALUE, f"bad value for {name}: {value!r}") from None
        wire_max = (1 << (8 * f.size)) - 1
        if not 0 <= v <= wire_max or v > MAX_VALUE.get(code, full):
            raise _bad(OFPBMC.BAD_VALUE, f"{name} value {v:#x} out of range")
        if not 0 <= m <= wire_max:
            raise _bad(OFPBMC.BAD_MASK, f"{name} mask {m:#x} out of range")
        m &= full
        if v & ~m:
            raise _bad(OFPBMC.BAD_WILDCARDS, f"{name} value {v:#x} has bits outside its mask {m:#x}")
        items[code] = (v, m)
    state = state_of(items)
    for code in items:
        if not prereq_ok(code, state):
            on = PREREQS[code][0]
            what = "a VLAN tag (vlan_vid with OFPVID_PRESENT)" if on == VLAN_PRESENT else FIELD_NAMES[on]
            raise _bad(OFPBMC.BAD_PREREQ, f"{FIELD_NAMES[code]} needs {what} in the match")
    fields = tuple(sorted((c, v | P, m | P) for c, (v, m) in items.items() if m))
    return Compiled(fields, state)


def state_of(items: dict[int, tuple[int, int]]) -> dict:
    """Exact values a match pins down (code -> value), plus VLAN_PRESENT."""
    state: dict = {}
    for code, (v, m) in items.items():
        if m == FULL[code]:
            state[code] = v
    vid = items.get(fk.VLAN_VID)
    if vid is not None and vid[0] & vid[1] & 0x1000:
        state[VLAN_PRESENT] = True
    return state
