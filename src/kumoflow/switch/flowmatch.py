"""Compile and validate an ofp.Match into int (field, value, mask) tuples.

`compile_match(match)` checks a match the way section 7.2.3 of the
specification asks and raises SwitchError(OFPET_BAD_MATCH, code):

- a field that is not an OpenFlow-basic OXM kumoflow knows (nor tcp_flags,
  the ONF experimenter OXM of Open vSwitch) -> BAD_FIELD
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

The same match as the classifier files it: its `shape` (the fields'
(number, mask) pairs, one shared object per distinct shape) and its `key`
(the values; see `shape_key`). A flow entry keeps only these two.
"""

from __future__ import annotations

import socket
import struct

from kumoflow.ofp.errors import OFPBMC, OFPET
from kumoflow.ofp.oxm import FIELDS_BY_NAME, IPV4, IPV6, MAC, ONF_TCP_FLAGS, Match, OxmField

from . import flowkey as fk
from .errors import SwitchError

P = fk.PRESENT
FULL = {code: (1 << w) - 1 for code, w in fk.WIDTHS.items()}
#: A field's all-ones mask with the PRESENT bit, as compiled matches carry it.
FULL_P = {c: m | P for c, m in FULL.items()}
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
    fk.TCP_FLAGS: (fk.IP_PROTO, frozenset((6,))),
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

#: The fields a match may have, by name: (the OXM field, its index in the flow
#: key): the basic fields at their numbers, tcp_flags past them (flowkey).
MATCH_FIELDS: dict[str, tuple[OxmField, int]] = {f.name: (f, f.code) for f in FIELDS_BY_NAME.values()}
MATCH_FIELDS[ONF_TCP_FLAGS.name] = (ONF_TCP_FLAGS, fk.TCP_FLAGS)
FIELD_NAMES = {code: name for name, (_, code) in MATCH_FIELDS.items()}
_BY_CODE = {code: f for f, code in MATCH_FIELDS.values()}


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


class Compiled:
    """A validated match: `fields` ((code, value|P, mask|P), ...) sorted by
    code, `fmap` code -> (value|P, mask|P), `state` (exact values), and
    `shape` and `key`, the match as the classifier files it.

    A Compiled is made from fields (and then has its shape and key at
    once) or from a shape and a key (`Compiled.of_key`; its fields are
    then made when first asked for): a flow entry keeps only its shape and
    key (see flowtable.FlowEntry), and `entry.compiled` is one small object."""

    __slots__ = ("_fields", "shape", "key", "_fmap", "_state")

    def __init__(self, fields: tuple, state: dict | None = None) -> None:
        self._fields = fields
        self.shape, self.key = shape_key(fields)
        self._fmap = None
        self._state = state

    @classmethod
    def of_key(cls, shape: tuple, key) -> "Compiled":
        """The match of a shape and a key (see shape_key)."""
        c = cls.__new__(cls)
        c._fields = c._fmap = c._state = None
        c.shape = shape
        c.key = key
        return c

    @property
    def fields(self) -> tuple:
        f = self._fields
        if f is None:
            f = self._fields = fields_of_key(self.shape, self.key)
        return f

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


#: interned shapes: one object for all matches (and flow entries) of a shape
_SHAPES: dict[tuple, tuple] = {}
MAX_SHAPES = 65536


def intern_shape(shape: tuple) -> tuple:
    """The shared object for a shape (beyond MAX_SHAPES distinct ones, the shape itself)."""
    s = _SHAPES.get(shape)
    if s is None:
        if len(_SHAPES) >= MAX_SHAPES:
            return shape
        s = _SHAPES[shape] = shape
    return s


def shape_key(fields: tuple) -> tuple:
    """(shape, key) of a compiled match's fields: shape ((code, mask|P), ...),
    interned; key the values (value|P), as a tuple, or the value alone when
    the shape is one field matched exactly (as the classifier's
    key_function computes it from a packet)."""
    shape = intern_shape(tuple([(c, m) for c, _, m in fields]))
    if len(fields) == 1 and fields[0][2] == FULL_P[fields[0][0]]:
        return shape, fields[0][1]
    return shape, tuple([v for _, v, _ in fields])


def fields_of_key(shape: tuple, key) -> tuple:
    """The fields of a match given by its shape and key (shape_key, reversed)."""
    values = key if type(key) is tuple else (key,)
    return tuple([(c, v, m) for (c, m), v in zip(shape, values)])


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
        spec = MATCH_FIELDS.get(name)
        if spec is None:
            raise _bad(OFPBMC.BAD_FIELD, f"unknown OXM field {name!r}")
        f, code = spec
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
# OXM header word -> (code, value size, masked, full mask, largest valid value,
# experimenter id or None), for the fields of MATCH_FIELDS of exactly the
# length the codec accepts. (An experimenter OXM's header is followed by the
# experimenter id: one of another experimenter is not ours.)
_RAW_OXM: dict[int, tuple[int, int, bool, int, int, int | None]] = {}
for _f, _code in MATCH_FIELDS.values():
    _full = FULL[_code]
    _RAW_OXM[_f.header(False)] = (_code, _f.size, False, _full, MAX_VALUE.get(_code, _full), _f.experimenter)
    if _f.maskable:
        _RAW_OXM[_f.header(True)] = (_code, _f.size, True, _full, MAX_VALUE.get(_code, _full), _f.experimenter)
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
#: (shape, key) of the empty match
_NO_MATCH = (intern_shape(()), ())


def compile_raw(buf: bytes, o: int, end: int):
    """The ofp_match at buf[o:end] compiled straight from its OXM TLVs:
    (fields, offset after the match's padding), or None for anything but a
    well-formed match of OpenFlow-basic fields that `compile_match` accepts
    (the caller then takes the reference path, ofp.parse + compile_match,
    which names the error).

    When this returns fields, ``compile_match(unpack_match(buf, o, end)[0])``
    succeeds, with these fields. See compile_raw_key, which does the work."""
    r = compile_raw_key(buf, o, end)
    if r is None:
        return None
    length = buf[o + 2] << 8 | buf[o + 3]
    return fields_of_key(*r), o + length + (-length & 7)


def compile_raw_key(buf: bytes, o: int, end: int):
    """compile_raw giving the match as the classifier files it: (shape,
    key) as shape_key(fields) gives them, or None. (The match, padded,
    ends at o + its length rounded up to a multiple of 8.)

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
    if o + length + (-length & 7) > end:
        return None
    head = buf[o:o + 8]
    plans = _QUICK.get(head)                        # (then the type is OXM and the length valid)
    if plans is not None:
        r = plans[0](buf, o)                        # most heads have one layout
        if r is not _OTHER:
            return r
        for plan in plans[1:]:
            r = plan(buf, o)
            if r is not _OTHER:
                return r
    return _compile_raw_layout(buf, o, length, head, plans)


def _compile_raw_layout(buf: bytes, o: int, length: int, head: bytes, plans: tuple | None):
    """compile_raw_key for a match of a layout not tried yet: its headers
    walked, the plan of the layout made (or found) and remembered for the
    match's first 8 bytes (`head`, whose plans so far are `plans`)."""
    if buf[o] or buf[o + 1] != 1 or length < 4:     # OFPMT_OXM
        return None
    if length == 4:
        return _NO_MATCH
    stop = o + length
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
            return None if fields is None else shape_key(fields)
        plan = _PLANS[layout] = _make_plan(layout)
    if plan is None:
        return None
    if plans is None:
        if len(_QUICK) < MAX_PLANS:
            _QUICK[head] = (plan,)
    elif len(plans) < 8:
        _QUICK[head] = plans + (plan,)
    return plan(buf, o)


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
        code, size, masked, full, max_value, experimenter = spec
        if experimenter is not None:
            if p + 8 > stop or _HEADER(buf, p + 4)[0] != experimenter:
                return None
            p += 4                                  # (the value follows the experimenter id)
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
    """A function (buf, offset of the ofp_match) -> (shape, key) (see
    shape_key), None (invalid) or _OTHER (the match has another layout)
    for the matches of one layout (the OXM header words, joined), or None
    when no match of that layout is valid. The caller has checked the
    match's type, length (that of the layout) and first header. It does
    what _compile_raw_generic does, with what the layout fixes worked out
    once: the struct reading every header, value and mask, which values
    can be out of range, the prerequisites (the fields they need present,
    exactly, are in the layout or the layout is refused; their values are
    checked per match), the order of the fields by code, the shape. Only
    ints and field numbers go into the source."""
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
    targets = []                                      # the names struct.unpack_from fills, in order
    names: dict[int, tuple[str, str | None]] = {}     # code -> (value name, mask name or None)
    checks = []                                       # the other headers: else another layout
    lines = []
    for i, (code, size, masked, full, max_value, experimenter) in enumerate(specs):
        f = _INT_FORMATS.get(size)
        if i == 0:
            fmt += "4x"                               # the caller has seen the first header
        else:
            fmt += "I"
            targets.append(f"h{i}")
            checks.append(f"h{i} != {_HEADER(layout, 4 * i)[0]:#x}")
        if experimenter is not None:
            fmt += "I"
            targets.append(f"x{i}")
            lines.append(f"if x{i} != {experimenter:#x}: return None")
        fmt += (f or f"{size}s") * (2 if masked else 1)
        v, m = f"v{code}", f"m{code}" if masked else None
        for name in (v, m) if masked else (v,):
            targets.append(name if f else f"b_{name}")
            if not f:
                lines.append(f"{name} = fb(b_{name}, 'big')")
        if max_value < (1 << 8 * size) - 1:
            lines.append(f"if {v} > {max_value:#x}: return None")
        if masked:
            if full < (1 << 8 * size) - 1:
                lines.append(f"{m} &= {full:#x}")
            lines.append(f"if {v} & ~{m}: return None")
        names[code] = (v, m)
    consts: dict[str, object] = {"fb": _from_bytes, "P": P, "mp": _mask_p}
    prereqs = _plan_prereqs(codes, names, consts)
    if prereqs is None:
        return None
    lines += prereqs
    lines += _plan_result(sorted(codes), names, consts)
    consts["unpack"] = struct.Struct(fmt).unpack_from
    consts["OTHER"] = _OTHER
    if checks:
        lines.insert(0, f"if {' or '.join(checks)}: return OTHER")
    src = ("def plan(buf, o):\n"
           f"    {''.join(t + ', ' for t in targets)}= unpack(buf, o)\n" + "".join(f"    {line}\n" for line in lines))
    exec(src, consts)      # noqa: S102
    plan = consts["plan"]
    plan.source = src
    return plan


def _plan_prereqs(codes: list[int], names: dict, consts: dict) -> list[str] | None:
    """The lines of a plan that check the prerequisites (Table 12) of the
    fields of a layout, or None when the layout lacks a field one needs.
    A field several others need (eth_type for ip_proto and ipv4_dst) is
    checked once, against the values all of them allow."""
    lines = []
    allowed_by: dict[int, frozenset | None] = {}
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
        if on not in allowed_by:
            allowed_by[on] = allowed
        elif allowed is not None:
            before = allowed_by[on]
            allowed_by[on] = allowed if before is None else before & allowed
    for on, allowed in allowed_by.items():
        v, m = names[on]
        if m is not None:
            lines.append(f"if {m} != {FULL[on]:#x}: return None")     # needed exactly
        if allowed is not None:
            consts[f"A{on}"] = allowed
            lines.append(f"if {v} not in A{on}: return None")
    return lines


def _plan_result(order: list[int], names: dict, consts: dict) -> list[str]:
    """The lines of a plan that return (shape, key) from the values (and
    masks) read, fields in code order: the shape is a constant for a
    layout without masks, else looked up by the masks' values."""
    values = [f"{names[c][0]} | P" for c in order]
    masks = [names[c][1] for c in order if names[c][1] is not None]
    key = values[0] if len(order) == 1 else "(" + "".join(v + ", " for v in values) + ")"
    if not masks:
        consts["SH"] = intern_shape(tuple([(c, FULL_P[c]) for c in order]))
        return [f"return SH, {key}"]
    consts["sget"], consts["smake"] = _shape_maker(order, [c for c in order if names[c][1] is not None])
    mkey = masks[0] if len(masks) == 1 else "(" + "".join(m + ", " for m in masks) + ")"
    if len(order) == 1:             # one field, masked: the key is a scalar when the mask is full
        code = order[0]
        key = f"{values[0]} if {masks[0]} == {FULL[code]:#x} else ({values[0]},)"
    lines = [f"if {' and '.join(masks)}: return sget({mkey}) or smake({mkey}), {key}"]
    # A field with an all-zero mask matches anything and is left out.
    consts["sk"] = shape_key
    lines.append("f = []")
    for c in order:
        v, m = names[c]
        if m is None:
            consts[f"M{c}"] = FULL_P[c]
            lines.append(f"f.append(({c}, {v} | P, M{c}))")
        else:
            lines.append(f"if {m}: f.append(({c}, {v} | P, mp({m})))")
    lines.append("return sk(tuple(f))")
    return lines


def _shape_maker(order: list[int], masked: list[int]):
    """(get, make) for the shapes of one layout by the values of its masks
    (one int, or a tuple for several masked fields; none zero)."""
    cache: dict = {}

    def make(masks):
        by_code = dict(zip(masked, masks if type(masks) is tuple else (masks,)))
        shape = intern_shape(tuple([(c, _mask_p(by_code[c]) if c in by_code else FULL_P[c]) for c in order]))
        if len(cache) < 4096:
            cache[masks] = shape
        return shape

    return cache.get, make


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
