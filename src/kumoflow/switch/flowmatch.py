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
import struct

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
    code, `fmap` code -> (value|P, mask|P), and `state` (exact values).

    `fmap` and `state` are worked out from `fields` when first asked for:
    a flow entry keeps only its fields (see flowtable.FlowEntry), and
    `Compiled(entry.fields)` is then one small object."""

    __slots__ = ("fields", "_fmap", "_state")

    def __init__(self, fields: tuple, state: dict | None = None) -> None:
        self.fields = fields
        self._fmap = None
        self._state = state

    @property
    def fmap(self) -> dict:
        m = self._fmap
        if m is None:
            m = self._fmap = {c: (v, m) for c, v, m in self.fields}
        return m

    @property
    def state(self) -> dict:
        s = self._state
        if s is None:
            s = self._state = state_of({c: (v & ~P, m & ~P) for c, v, m in self.fields})
        return s

    def matches(self, key: list) -> bool:
        for c, v, m in self.fields:
            if key[c] & m != v:
                return False
        return True

    def covers(self, other: "Compiled") -> bool:
        """Non-strict match: is every packet `other` matches matched by self?
        (self's fields all appear in other, at least as specific.)"""
        return self.covers_fields(other.fields)

    def covers_fields(self, ofields: tuple) -> bool:
        """`covers` for another match given by its fields."""
        fields = self.fields
        if not fields:
            return True
        smap = self.fmap
        found = 0
        for c, ov, om in ofields:
            e = smap.get(c)
            if e is not None:
                v, m = e
                if om & m != m or ov & m != v:
                    return False
                found += 1
        return found == len(fields)

    def overlaps(self, other: "Compiled") -> bool:
        """Could one packet match both?"""
        return self.overlaps_fields(other.fields)

    def overlaps_fields(self, ofields: tuple) -> bool:
        """`overlaps` for another match given by its fields (symmetric)."""
        smap = self.fmap
        for c, ov, om in ofields:
            e = smap.get(c)
            if e is not None:
                v, m = e
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
    return Compiled(fields_of(items), state)


_MASKS: dict[int, int] = {}


def _mask_p(m: int) -> int:
    """m | PRESENT, one int object for each mask (most flows share a few
    masks: 48 bytes less per field of every flow entry)."""
    mp = _MASKS.get(m)
    if mp is None:
        mp = m | P
        if len(_MASKS) < 65536:
            _MASKS[m] = mp
    return mp


def fields_of(items: dict[int, tuple[int, int]]) -> tuple:
    """A compiled match's fields from code -> (value, mask): sorted by code,
    PRESENT in value and mask, all-zero masks dropped."""
    return tuple(sorted([(c, v | P, _mask_p(m)) for c, (v, m) in items.items() if m]))


# --- the FLOW_MOD fast path ----------------------------------------------------------------
# OXM header word -> (code, value size, masked, full mask, largest valid value),
# for the OpenFlow-basic fields of exactly the length the codec accepts.
_RAW_OXM: dict[int, tuple[int, int, bool, int, int]] = {}
for _f in FIELDS_BY_NAME.values():
    _full = FULL[_f.code]
    _RAW_OXM[_f.header(False)] = (_f.code, _f.size, False, _full, MAX_VALUE.get(_f.code, _full))
    if _f.maskable:
        _RAW_OXM[_f.header(True)] = (_f.code, _f.size, True, _full, MAX_VALUE.get(_f.code, _full))
_PREREQ_LIST = [PREREQS.get(c) for c in range(fk.N_FIELDS)]
_HEADER = struct.Struct("!I").unpack_from
_from_bytes = int.from_bytes
_INT_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}

#: OXM header words of a match, joined -> its plan (see _make_plan), or None
#: when no match of that layout can be valid
_PLANS: dict[bytes, object] = {}
#: a match's first 8 bytes -> the plans of the valid layouts seen with them (up to 8)
_QUICK: dict[bytes, tuple] = {}
MAX_PLANS = 1024
#: what a plan returns for a match of another layout
_OTHER = object()


def compile_raw(buf: bytes, o: int, end: int):
    """The ofp_match at buf[o:end] compiled straight from its OXM TLVs:
    (fields, offset after the match's padding), or None for anything but a
    well-formed match of OpenFlow-basic fields that `compile_match` accepts
    (the caller then takes the reference path, ofp.parse + compile_match,
    which names the error).

    When this returns fields, ``compile_match(unpack_match(buf, o, end)[0])``
    succeeds, with these fields.

    Matches come in few layouts (the sequence of OXM headers: which fields,
    which masked, in which order); each layout gets a small function made
    for it (_make_plan) that reads all values, and the headers, with one
    struct and checks only what can fail for that layout. The plans tried
    first are those of the layouts seen with the match's first 8 bytes
    (type, length, first OXM header); when none has the match's headers,
    the headers are walked to find its layout."""
    if o + 8 > end:                                 # a match with its padding is 8 bytes at least
        return None
    length = buf[o + 2] << 8 | buf[o + 3]
    stop = o + length
    padded = stop + (-length & 7)
    if buf[o] or buf[o + 1] != 1 or length < 4 or padded > end:     # OFPMT_OXM
        return None
    if length == 4:
        return (), padded
    head = buf[o:o + 8]
    plans = _QUICK.get(head)
    if plans is not None:
        for plan in plans:
            fields = plan(buf, o)
            if fields is not _OTHER:
                return None if fields is None else (fields, padded)
    p = o + 4
    heads = []
    while p < stop:
        if p + 4 > stop:
            return None
        heads.append(buf[p:p + 4])
        p += 4 + buf[p + 3]
    if p != stop:
        return None
    layout = b"".join(heads)
    try:
        plan = _PLANS[layout]
    except KeyError:
        if len(_PLANS) >= MAX_PLANS:
            fields = _compile_raw_generic(buf, o + 4, stop)
            return None if fields is None else (fields, padded)
        plan = _PLANS[layout] = _make_plan(layout)
    if plan is None:
        return None
    if plans is None:
        if len(_QUICK) < MAX_PLANS:
            _QUICK[head] = (plan,)
    elif len(plans) < 8:
        _QUICK[head] = plans + (plan,)
    fields = plan(buf, o)
    return None if fields is None else (fields, padded)


def _compile_raw_generic(buf: bytes, p: int, stop: int):
    """compile_raw for the OXM TLVs at buf[p:stop], field by field."""
    items: dict[int, tuple[int, int]] = {}
    oxm = _RAW_OXM
    while p < stop:
        if p + 4 > stop:
            return None
        spec = oxm.get(_HEADER(buf, p)[0])
        if spec is None:
            return None
        code, size, masked, full, max_value = spec
        q = p + 4 + size
        if masked:
            r = q + size
            if r > stop:
                return None
            v = _from_bytes(buf[p + 4:q], "big")
            m = _from_bytes(buf[q:r], "big") & full
            p = r
        else:
            if q > stop:
                return None
            v = _from_bytes(buf[p + 4:q], "big")
            m = full
            p = q
        if v > max_value or v & ~m or code in items:
            return None
        items[code] = (v, m)
    # Prerequisites (Table 12), as prereq_ok(code, state_of(items)) checks them.
    prereqs = _PREREQ_LIST
    for code in items:
        req = prereqs[code]
        if req is None:
            continue
        on, allowed = req
        if on == VLAN_PRESENT:
            vid = items.get(fk.VLAN_VID)
            if vid is None or not vid[0] & vid[1] & 0x1000:
                return None
            continue
        e = items.get(on)
        if e is None or e[1] != FULL[on] or (allowed is not None and e[0] not in allowed):
            return None
    return fields_of(items)


def _make_plan(layout: bytes):
    """A function (buf, offset of the ofp_match) -> fields, None (invalid)
    or _OTHER (the match has another layout) for the matches of one layout
    (the OXM header words, joined), or None when no match of that layout
    is valid. The caller has checked the match's type, length (that of
    the layout) and first header. It does what _compile_raw_generic does,
    with what the layout fixes worked out once: the struct reading every
    header, value and mask, which values can be out of range, the
    prerequisites (the fields they need present, exactly, are in the
    layout or the layout is refused; their values are checked per match),
    the order of the fields by code. Only ints and field numbers go into
    the source."""
    specs = []
    for i in range(0, len(layout), 4):
        spec = _RAW_OXM.get(_HEADER(layout, i)[0])
        if spec is None:
            return None
        specs.append(spec)
    codes = [sp[0] for sp in specs]
    if len(set(codes)) != len(codes):
        return None                                   # a duplicate field: DUP_FIELD
    fmt = "!4x"
    names: dict[int, tuple[str, str | None]] = {}     # code -> (value expr, mask expr or None)
    lines = []
    checks = []
    k = 0
    for i, (code, size, masked, full, max_value) in enumerate(specs):
        f = _INT_FORMATS.get(size)
        if i == 0:
            fmt += "4x"
        else:
            fmt += "I"
            checks.append(f"r[{k}] != {_HEADER(layout, 4 * i)[0]:#x}")
            k += 1
        fmt += (f or f"{size}s") * (2 if masked else 1)
        v = f"v{code}"
        lines.append(f"{v} = r[{k}]" if f else f"{v} = fb(r[{k}], 'big')")
        k += 1
        if max_value < (1 << 8 * size) - 1:
            lines.append(f"if {v} > {max_value:#x}: return None")
        if masked:
            m = f"m{code}"
            lines.append((f"{m} = r[{k}] & {full:#x}" if f else f"{m} = fb(r[{k}], 'big') & {full:#x}"))
            k += 1
            lines.append(f"if {v} & ~{m}: return None")
            names[code] = (v, m)
        else:
            names[code] = (v, None)
    consts: dict[str, object] = {"fb": _from_bytes, "P": P, "mp": _mask_p}
    for code in codes:
        req = PREREQS.get(code)
        if req is None:
            continue
        on, allowed = req
        if on == VLAN_PRESENT:
            if fk.VLAN_VID not in names:
                return None
            v, m = names[fk.VLAN_VID]
            lines.append(f"if not {v} & {m or FULL[fk.VLAN_VID]} & 0x1000: return None")
            continue
        if on not in names:
            return None
        v, m = names[on]
        if m is not None:
            lines.append(f"if {m} != {FULL[on]:#x}: return None")
        if allowed is not None:
            name = f"A{code}"
            consts[name] = allowed
            lines.append(f"if {v} not in {name}: return None")
    parts = []
    masks = []
    for code in sorted(codes):
        v, m = names[code]
        if m is None:
            name = f"M{code}"
            consts[name] = _mask_p(FULL[code])
            parts.append((f"({code}, {v} | P, {name})", None))
        else:
            masks.append(m)
            # the shared mask object (mp), looked up inline when already known
            parts.append((f"({code}, {v} | P, mk({m}) or mp({m}))", m))
    everything = "return (" + "".join(e + ", " for e, _ in parts) + ")"
    if not masks:
        lines.append(everything)
    else:
        # A field with an all-zero mask matches anything and is left out.
        lines.append(f"if {' and '.join(masks)}: {everything}")
        lines.append("f = []")
        for e, m in parts:
            lines.append(f"f.append({e})" if m is None else f"if {m}: f.append({e})")
        lines.append("return tuple(f)")
    consts["mk"] = _MASKS.get
    consts["unpack"] = struct.Struct(fmt).unpack_from
    consts["OTHER"] = _OTHER
    if checks:
        lines.insert(0, f"if {' or '.join(checks)}: return OTHER")
    src = "def plan(buf, o):\n    r = unpack(buf, o)\n" + "".join(f"    {line}\n" for line in lines)
    exec(src, consts)      # noqa: S102
    plan = consts["plan"]
    plan.source = src
    return plan


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
