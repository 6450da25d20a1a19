"""Actions (section 7.2.6).

Fixed-layout actions declare their wire format after the (type, len)
header as `_FMT`; the dataclass fields follow that format in order, so one
generic pack/unpack serves them. Output, the most frequent action, has a
hand-written pack for speed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from .base import _MAKE, TLV_HEADER, UINT32
from .consts import OFPAT, OFPCML
from .errors import OFPBAC, OFPBMC, OFPET, CodecError
from .oxm import _FAST_ENCODERS, decode_oxm, encode_oxm

ACTION_TYPES: dict[int, type["Action"]] = {}


@dataclass(slots=True)
class Action:
    TYPE: ClassVar[int]
    _FMT: ClassVar[str] = ""
    _struct: ClassVar[struct.Struct]
    _names: ClassVar[tuple[str, ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if "TYPE" in cls.__dict__:
            cls.TYPE = int(cls.TYPE)   # a plain int: enum lookups are slow on the hot path
            ACTION_TYPES[cls.TYPE] = cls
            cls._struct = struct.Struct("!HH" + cls._FMT)
        _specialize(cls)

    def pack(self) -> bytes:
        st = self._struct
        return st.pack(self.TYPE, st.size, *[getattr(self, n) for n in self._field_names()])

    @classmethod
    def _field_names(cls) -> tuple[str, ...]:
        # Computed on first use: dataclass fields do not exist yet when
        # __init_subclass__ runs.
        try:
            return cls.__dict__["_names_cache"]
        except KeyError:
            names = tuple(f.name for f in fields(cls))
            setattr(cls, "_names_cache", names)
            return names

    @classmethod
    def unpack(cls, buf: bytes, o: int, length: int) -> "Action":
        st = cls._struct
        if length != st.size:
            raise CodecError(OFPET.BAD_ACTION, OFPBAC.BAD_LEN,
                             f"{cls.__name__} length {length}, expected {st.size}", o)
        return cls(*st.unpack_from(buf, o)[2:])


# The generic pack and unpack above serve any action with a _FMT; _specialize
# gives each fixed-layout action class of its own the same two written out
# for its fields (no per-field getattr, no slicing, a constant for those
# without fields). Marked so that a subclass can tell them from a pack or
# unpack a class writes itself.
Action.pack._auto = True                      # type: ignore[attr-defined]
Action.unpack.__func__._auto = True           # type: ignore[attr-defined]
_GENERIC_UNPACK = Action.__dict__["unpack"]


def _own(cls: type, name: str) -> bool:
    """Does `cls` itself define `name` (not one set by _specialize)?"""
    attr = cls.__dict__.get(name)
    if attr is None:
        return False
    return not getattr(getattr(attr, "__func__", attr), "_auto", False)


def _specialize(cls: type) -> None:
    own_pack, own_unpack = _own(cls, "pack"), _own(cls, "unpack")
    if own_pack and own_unpack:
        return
    # Fields are known in the class that @dataclass(slots=True) builds (its
    # __dict__ holds __dataclass_fields__ when this runs); a class without
    # them gets the generic methods back rather than its parent's.
    st = cls.__dict__.get("_struct") or getattr(cls, "_struct", None)
    known = "__dataclass_fields__" in cls.__dict__ and "TYPE" in cls.__dict__ and st is not None
    names = tuple(f.name for f in fields(cls)) if known else ()
    if known and len(st.unpack(bytes(st.size))) != 2 + len(names):
        known = False                         # a _FMT that does not follow the fields: stay generic
    if not own_pack:
        cls.pack = _make_pack(cls, st, names) if known else Action.pack
    if not own_unpack:
        cls.unpack = _make_unpack(cls, st, names) if known else _GENERIC_UNPACK


def _make_pack(cls: type, st: struct.Struct, names: tuple[str, ...]) -> Any:
    if not names:
        raw = st.pack(cls.TYPE, st.size)

        def pack(self: Action) -> bytes:
            return raw
    else:
        env = {"_pack": st.pack, "_TYPE": cls.TYPE, "_SIZE": st.size}
        args = ", ".join(f"self.{n}" for n in names)
        exec(f"def pack(self):\n    return _pack(_TYPE, _SIZE, {args})\n", env)
        pack = env["pack"]
    pack._auto = True
    pack.__qualname__ = f"{cls.__qualname__}.pack"
    return pack


def _make_unpack(cls: type, st: struct.Struct, names: tuple[str, ...]) -> Any:
    env = {"_unpack": st.unpack_from, "_SIZE": st.size, "_make": _MAKE[cls], "_bad": _bad_action_len}
    values = ", ".join(f"v{i}" for i in range(len(names)))
    exec("def unpack(cls, buf, o, length):\n"
         "    if length != _SIZE:\n"
         "        raise _bad(cls, o, length, _SIZE)\n"
         + (f"    _t, _l, {values} = _unpack(buf, o)\n" if names else "")
         + f"    return _make({values})\n", env)
    unpack = env["unpack"]
    unpack._auto = True
    unpack.__qualname__ = f"{cls.__qualname__}.unpack"
    return classmethod(unpack)


def _bad_action_len(cls: type, o: int, length: int, size: int) -> CodecError:
    return CodecError(OFPET.BAD_ACTION, OFPBAC.BAD_LEN, f"{cls.__name__} length {length}, expected {size}", o)


@dataclass(slots=True)
class Output(Action):
    port: int
    max_len: int = OFPCML.MAX
    TYPE: ClassVar[int] = OFPAT.OUTPUT
    _FMT: ClassVar[str] = "IH6x"

    def pack(self) -> bytes:
        return _OUTPUT.pack(0, 16, self.port, self.max_len)


_OUTPUT = struct.Struct("!HHIH6x")
_unpack_output = _OUTPUT.unpack_from
_new_output = _MAKE[Output]


@dataclass(slots=True)
class CopyTtlOut(Action):
    TYPE: ClassVar[int] = OFPAT.COPY_TTL_OUT
    _FMT: ClassVar[str] = "4x"


@dataclass(slots=True)
class CopyTtlIn(Action):
    TYPE: ClassVar[int] = OFPAT.COPY_TTL_IN
    _FMT: ClassVar[str] = "4x"


@dataclass(slots=True)
class SetMplsTtl(Action):
    mpls_ttl: int
    TYPE: ClassVar[int] = OFPAT.SET_MPLS_TTL
    _FMT: ClassVar[str] = "B3x"


@dataclass(slots=True)
class DecMplsTtl(Action):
    TYPE: ClassVar[int] = OFPAT.DEC_MPLS_TTL
    _FMT: ClassVar[str] = "4x"


@dataclass(slots=True)
class PushVlan(Action):
    ethertype: int = 0x8100
    TYPE: ClassVar[int] = OFPAT.PUSH_VLAN
    _FMT: ClassVar[str] = "H2x"


@dataclass(slots=True)
class PopVlan(Action):
    TYPE: ClassVar[int] = OFPAT.POP_VLAN
    _FMT: ClassVar[str] = "4x"


@dataclass(slots=True)
class PushMpls(Action):
    ethertype: int = 0x8847
    TYPE: ClassVar[int] = OFPAT.PUSH_MPLS
    _FMT: ClassVar[str] = "H2x"


@dataclass(slots=True)
class PopMpls(Action):
    ethertype: int = 0x0800
    TYPE: ClassVar[int] = OFPAT.POP_MPLS
    _FMT: ClassVar[str] = "H2x"


@dataclass(slots=True)
class SetQueue(Action):
    queue_id: int
    TYPE: ClassVar[int] = OFPAT.SET_QUEUE
    _FMT: ClassVar[str] = "I"


@dataclass(slots=True)
class Group(Action):
    group_id: int
    TYPE: ClassVar[int] = OFPAT.GROUP
    _FMT: ClassVar[str] = "I"


@dataclass(slots=True)
class SetNwTtl(Action):
    nw_ttl: int
    TYPE: ClassVar[int] = OFPAT.SET_NW_TTL
    _FMT: ClassVar[str] = "B3x"


@dataclass(slots=True)
class DecNwTtl(Action):
    TYPE: ClassVar[int] = OFPAT.DEC_NW_TTL
    _FMT: ClassVar[str] = "4x"


@dataclass(slots=True)
class PushPbb(Action):
    ethertype: int = 0x88E7
    TYPE: ClassVar[int] = OFPAT.PUSH_PBB
    _FMT: ClassVar[str] = "H2x"


@dataclass(slots=True)
class PopPbb(Action):
    TYPE: ClassVar[int] = OFPAT.POP_PBB
    _FMT: ClassVar[str] = "4x"


# decode_oxm reports match codes; inside set-field they become set codes.
_SET_FIELD_CODES = {OFPBMC.BAD_FIELD: OFPBAC.BAD_SET_TYPE, OFPBMC.BAD_LEN: OFPBAC.BAD_SET_LEN}


@dataclass(slots=True)
class SetField(Action):
    """Set one header field: SetField("eth_dst", "00:00:00:00:00:01")."""

    field: Any
    value: Any
    TYPE: ClassVar[int] = OFPAT.SET_FIELD

    def pack(self) -> bytes:
        try:
            oxm = _FAST_ENCODERS[self.field](self.value)
        except Exception:
            # not a basic field with a plain value: encode_oxm encodes it or names the error
            oxm = encode_oxm(self.field, self.value)
        length = 4 + len(oxm)
        padded = length + (-length & 7)
        return TLV_HEADER.pack(self.TYPE, padded) + oxm + bytes(padded - length)

    @classmethod
    def unpack(cls, buf: bytes, o: int, length: int) -> "SetField":
        try:
            key, value, after = decode_oxm(buf, o + 4, o + length, OFPET.BAD_ACTION)
        except CodecError as exc:
            raise CodecError(OFPET.BAD_ACTION, _SET_FIELD_CODES.get(exc.code, OFPBAC.BAD_SET_ARGUMENT),
                             f"set-field: {exc.detail}", exc.offset) from None
        if after + (-(after - o) & 7) != o + length:
            raise CodecError(OFPET.BAD_ACTION, OFPBAC.BAD_SET_LEN,
                             f"set-field length {length} does not fit its OXM", o)
        return _MAKE[cls](key, value)


@dataclass(slots=True)
class ExperimenterAction(Action):
    """An experimenter action, kept opaque: data is everything after the id."""

    experimenter: int
    data: bytes = b""
    TYPE: ClassVar[int] = OFPAT.EXPERIMENTER

    def pack(self) -> bytes:
        return TLV_HEADER.pack(self.TYPE, 8 + len(self.data)) + UINT32.pack(self.experimenter) + self.data

    @classmethod
    def unpack(cls, buf: bytes, o: int, length: int) -> "ExperimenterAction":
        return _MAKE[cls](UINT32.unpack_from(buf, o + 4)[0], buf[o + 8:o + length])


def pack_actions(actions: list[Action]) -> bytes:
    return b"".join([a.pack() for a in actions])


def unpack_actions(buf: bytes, o: int, end: int) -> list[Action]:
    """Decode the action list in buf[o:end]."""
    actions = []
    types = ACTION_TYPES
    while o < end:
        if o + 16 <= end:
            # the header, and an output action's fields if that is what it is: one read
            atype, length, port, max_len = _unpack_output(buf, o)
        elif o + 8 <= end:
            atype, length = TLV_HEADER.unpack_from(buf, o)
        else:
            raise CodecError(OFPET.BAD_ACTION, OFPBAC.BAD_LEN, "action header truncated", o)
        if length < 8 or length & 7 or o + length > end:
            raise CodecError(OFPET.BAD_ACTION, OFPBAC.BAD_LEN,
                             f"action length {length} invalid ({end - o} bytes left)", o)
        cls = types.get(atype)
        if cls is Output and length == 16:
            # Output.unpack inlined: the most frequent action (port and max_len read above)
            actions.append(_new_output(port, max_len))
        elif cls is None:
            raise CodecError(OFPET.BAD_ACTION, OFPBAC.BAD_TYPE, f"unknown action type {atype}", o)
        else:
            actions.append(cls.unpack(buf, o, length))
        o += length
    return actions


