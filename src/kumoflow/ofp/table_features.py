"""Table features (section 7.3.5.5): what each flow table can match and do.

A TABLE_FEATURES multipart reply carries one `TableFeatures` per table; a
request may carry the controller's desired view in the same form. Each
table lists its capabilities as properties (ofp_table_feature_prop_*): a
(type, length) header, a body, and padding to a multiple of 8 that the
length does not count.

Ids inside the properties round-trip exactly:

- instruction and action ids are the OFPIT / OFPAT number (an int) when on
  the wire they are the plain 4-byte (type, len=4) header; any other id (an
  experimenter id, which carries the experimenter number, or a
  non-experimenter id written with extra bytes) is an `InstructionId` /
  `ActionId` holding the bytes after the 4-byte header;
- OXM ids are the 32-bit OXM header as an int (class, field, hasmask and
  length exactly as sent; `oxm_id("ipv4_src", masked=True)` builds one);
  experimenter-class ids (8 bytes) are an `ExperimenterOxmId` (`oxm_id`
  builds the one of tcp_flags);
- next-table ids are ints (table numbers).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar

from .base import TLV_HEADER, UINT32, fixed_string, pack_string, pad8
from .consts import OFP_MAX_TABLE_NAME_LEN, OFPAT, OFPIT, OFPTFPT, OFPXMC
from .errors import OFPBRC, OFPET, OFPTFFC, CodecError
from .oxm import EXPERIMENTER_FIELDS_BY_NAME, FIELDS_BY_NAME

_TABLE_FEATURES = struct.Struct(f"!HB5x{OFP_MAX_TABLE_NAME_LEN}sQQII")
TABLE_FEATURES_SIZE = _TABLE_FEATURES.size  # 64
_EXPERIMENTER_PROP = struct.Struct("!HHII")
_OXM_EXPERIMENTER_ID = struct.Struct("!II")


def _bad_len(detail: str, offset: int) -> CodecError:
    return CodecError(OFPET.TABLE_FEATURES_FAILED, OFPTFFC.BAD_LEN, detail, offset)


# --- ids ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class InstructionId:
    """An instruction id that is not a plain 4-byte header, kept opaque.

    `data` is everything after the (type, len) header; for an experimenter
    instruction (type 0xffff) it starts with the experimenter id.
    """

    type: int
    data: bytes = b""

    @classmethod
    def experimenter_id(cls, experimenter: int, data: bytes = b"") -> "InstructionId":
        return cls(OFPIT.EXPERIMENTER, UINT32.pack(experimenter) + data)

    @property
    def experimenter(self) -> int | None:
        if self.type == 0xFFFF and len(self.data) >= 4:
            return UINT32.unpack_from(self.data)[0]
        return None


@dataclass(frozen=True, slots=True)
class ActionId:
    """An action id that is not a plain 4-byte header, kept opaque (see InstructionId)."""

    type: int
    data: bytes = b""

    @classmethod
    def experimenter_id(cls, experimenter: int, data: bytes = b"") -> "ActionId":
        return cls(OFPAT.EXPERIMENTER, UINT32.pack(experimenter) + data)

    @property
    def experimenter(self) -> int | None:
        if self.type == 0xFFFF and len(self.data) >= 4:
            return UINT32.unpack_from(self.data)[0]
        return None


@dataclass(frozen=True, slots=True)
class ExperimenterOxmId:
    """An OXM id of class OFPXMC_EXPERIMENTER: the 32-bit header and the experimenter id."""

    header: int
    experimenter: int


def oxm_id(name: str, masked: bool = False) -> int | ExperimenterOxmId:
    """The OXM id of a field kumoflow names: the header word of an
    OpenFlow-basic field, e.g. oxm_id("in_port"); an ExperimenterOxmId for an
    experimenter field (oxm_id("tcp_flags", masked=True): header 0xffff5508,
    experimenter 0x4f4e4600, as Open vSwitch lists it)."""
    f = FIELDS_BY_NAME.get(name)
    if f is None:
        f = EXPERIMENTER_FIELDS_BY_NAME[name]
        return ExperimenterOxmId(f.header(masked), f.experimenter)
    return f.header(masked)


def _pack_tlv_ids(ids: list, opaque: type) -> bytes:
    pack = TLV_HEADER.pack
    out = []
    for i in ids:
        if type(i) is opaque:
            out.append(pack(i.type, 4 + len(i.data)) + i.data)
        else:
            out.append(pack(i, 4))
    return b"".join(out)


def _unpack_tlv_ids(buf: bytes, o: int, end: int, opaque: type, what: str) -> list:
    ids: list = []
    unpack = TLV_HEADER.unpack_from
    while o < end:
        if o + 4 > end:
            raise _bad_len(f"{what} id truncated", o)
        id_type, length = unpack(buf, o)
        if length == 4 and id_type != 0xFFFF:
            ids.append(id_type)
        elif length < 4 or o + length > end:
            raise _bad_len(f"{what} id length {length} invalid ({end - o} bytes left)", o)
        elif id_type == 0xFFFF and length < 8:
            raise _bad_len(f"experimenter {what} id of {length} bytes has no experimenter id", o)
        else:
            ids.append(opaque(id_type, buf[o + 4:o + length]))
        o += length
    return ids


# --- properties ---------------------------------------------------------------

@dataclass(slots=True)
class TableFeatureProp:
    """Base of the property classes; `type` is the OFPTFPT value."""

    TYPES: ClassVar[tuple[int, ...]]

    def pack(self) -> bytes:
        body = self._pack_body()
        length = 4 + len(body)
        return TLV_HEADER.pack(self.type, length) + body + bytes(pad8(length))

    def _check_type(self) -> None:
        if self.type not in self.TYPES:
            raise ValueError(f"{type(self).__name__} cannot have property type {self.type}")


@dataclass(slots=True)
class InstructionsProp(TableFeatureProp):
    """OFPTFPT_INSTRUCTIONS / _MISS: instruction ids (OFPIT ints or InstructionId)."""

    type: int = OFPTFPT.INSTRUCTIONS
    instruction_ids: list[int | InstructionId] = field(default_factory=list)
    TYPES: ClassVar[tuple[int, ...]] = (OFPTFPT.INSTRUCTIONS, OFPTFPT.INSTRUCTIONS_MISS)

    def _pack_body(self) -> bytes:
        self._check_type()
        return _pack_tlv_ids(self.instruction_ids, InstructionId)

    @classmethod
    def unpack(cls, buf: bytes, o: int, length: int, ptype: int) -> "InstructionsProp":
        return cls(ptype, _unpack_tlv_ids(buf, o + 4, o + length, InstructionId, "instruction"))


@dataclass(slots=True)
class NextTablesProp(TableFeatureProp):
    """OFPTFPT_NEXT_TABLES / _MISS: the table ids goto-table may go to."""

    type: int = OFPTFPT.NEXT_TABLES
    table_ids: list[int] = field(default_factory=list)
    TYPES: ClassVar[tuple[int, ...]] = (OFPTFPT.NEXT_TABLES, OFPTFPT.NEXT_TABLES_MISS)

    def _pack_body(self) -> bytes:
        self._check_type()
        return bytes(self.table_ids)

    @classmethod
    def unpack(cls, buf: bytes, o: int, length: int, ptype: int) -> "NextTablesProp":
        return cls(ptype, list(buf[o + 4:o + length]))


@dataclass(slots=True)
class ActionsProp(TableFeatureProp):
    """OFPTFPT_WRITE_ACTIONS / APPLY_ACTIONS (and _MISS): action ids (OFPAT ints or ActionId)."""

    type: int = OFPTFPT.APPLY_ACTIONS
    action_ids: list[int | ActionId] = field(default_factory=list)
    TYPES: ClassVar[tuple[int, ...]] = (OFPTFPT.WRITE_ACTIONS, OFPTFPT.WRITE_ACTIONS_MISS,
                                        OFPTFPT.APPLY_ACTIONS, OFPTFPT.APPLY_ACTIONS_MISS)

    def _pack_body(self) -> bytes:
        self._check_type()
        return _pack_tlv_ids(self.action_ids, ActionId)

    @classmethod
    def unpack(cls, buf: bytes, o: int, length: int, ptype: int) -> "ActionsProp":
        return cls(ptype, _unpack_tlv_ids(buf, o + 4, o + length, ActionId, "action"))


@dataclass(slots=True)
class OxmProp(TableFeatureProp):
    """OFPTFPT_MATCH, WILDCARDS, WRITE_SETFIELD(_MISS), APPLY_SETFIELD(_MISS): OXM ids."""

    type: int = OFPTFPT.MATCH
    oxm_ids: list[int | ExperimenterOxmId] = field(default_factory=list)
    TYPES: ClassVar[tuple[int, ...]] = (OFPTFPT.MATCH, OFPTFPT.WILDCARDS,
                                        OFPTFPT.WRITE_SETFIELD, OFPTFPT.WRITE_SETFIELD_MISS,
                                        OFPTFPT.APPLY_SETFIELD, OFPTFPT.APPLY_SETFIELD_MISS)

    def _pack_body(self) -> bytes:
        self._check_type()
        out = []
        for i in self.oxm_ids:
            if type(i) is ExperimenterOxmId:
                out.append(_OXM_EXPERIMENTER_ID.pack(i.header, i.experimenter))
            else:
                out.append(UINT32.pack(i))
        return b"".join(out)

    @classmethod
    def unpack(cls, buf: bytes, o: int, length: int, ptype: int) -> "OxmProp":
        ids: list[int | ExperimenterOxmId] = []
        p, end = o + 4, o + length
        if length & 3:
            raise _bad_len(f"OXM id list of {length - 4} bytes is not a multiple of 4", o)
        while p < end:
            header = UINT32.unpack_from(buf, p)[0]
            if header >> 16 == OFPXMC.EXPERIMENTER:
                if p + 8 > end:
                    raise _bad_len("experimenter OXM id truncated", p)
                ids.append(ExperimenterOxmId(header, UINT32.unpack_from(buf, p + 4)[0]))
                p += 8
            else:
                ids.append(header)
                p += 4
        return cls(ptype, ids)


@dataclass(slots=True)
class ExperimenterProp(TableFeatureProp):
    """OFPTFPT_EXPERIMENTER / _MISS, kept opaque."""

    type: int = OFPTFPT.EXPERIMENTER
    experimenter: int = 0
    exp_type: int = 0
    data: bytes = b""
    TYPES: ClassVar[tuple[int, ...]] = (OFPTFPT.EXPERIMENTER, OFPTFPT.EXPERIMENTER_MISS)

    def pack(self) -> bytes:
        self._check_type()
        length = 12 + len(self.data)
        return (_EXPERIMENTER_PROP.pack(self.type, length, self.experimenter, self.exp_type)
                + self.data + bytes(pad8(length)))

    @classmethod
    def unpack(cls, buf: bytes, o: int, length: int, ptype: int) -> "ExperimenterProp":
        if length < 12:
            raise _bad_len(f"experimenter property length {length}, minimum 12", o)
        _, _, experimenter, exp_type = _EXPERIMENTER_PROP.unpack_from(buf, o)
        return cls(ptype, experimenter, exp_type, buf[o + 12:o + length])


PROP_TYPES: dict[int, type[TableFeatureProp]] = {
    t: c for c in (InstructionsProp, NextTablesProp, ActionsProp, OxmProp, ExperimenterProp) for t in c.TYPES
}


def pack_properties(props: list[TableFeatureProp]) -> bytes:
    return b"".join([p.pack() for p in props])


def unpack_properties(buf: bytes, o: int, end: int) -> list[TableFeatureProp]:
    """Decode the property list in buf[o:end] (each padded to 8 bytes)."""
    props = []
    types = PROP_TYPES
    while o < end:
        if o + 4 > end:
            raise _bad_len("table feature property header truncated", o)
        ptype, length = TLV_HEADER.unpack_from(buf, o)
        if length < 4 or o + length + pad8(length) > end:
            raise _bad_len(f"table feature property length {length} invalid ({end - o} bytes left, "
                           "padded to 8)", o)
        cls = types.get(ptype)
        if cls is None:
            raise CodecError(OFPET.TABLE_FEATURES_FAILED, OFPTFFC.BAD_TYPE,
                             f"unknown table feature property type {ptype}", o)
        props.append(cls.unpack(buf, o, length, ptype))
        o += length + pad8(length)
    return props


# --- ofp_table_features -------------------------------------------------------

@dataclass(slots=True)
class TableFeatures:
    table_id: int
    name: str = ""
    metadata_match: int = 0xFFFFFFFFFFFFFFFF
    metadata_write: int = 0xFFFFFFFFFFFFFFFF
    config: int = 0
    max_entries: int = 0
    properties: list[TableFeatureProp] = field(default_factory=list)

    def pack(self) -> bytes:
        props = pack_properties(self.properties)
        return _TABLE_FEATURES.pack(TABLE_FEATURES_SIZE + len(props), self.table_id,
                                    pack_string(self.name, OFP_MAX_TABLE_NAME_LEN), self.metadata_match,
                                    self.metadata_write, self.config, self.max_entries) + props

    def prop(self, ptype: int) -> TableFeatureProp | None:
        """The first property of type `ptype` (an OFPTFPT value), or None."""
        for p in self.properties:
            if p.type == ptype:
                return p
        return None


def pack_table_features(tables: list[TableFeatures]) -> bytes:
    return b"".join([t.pack() for t in tables])


def unpack_table_features(buf: bytes, o: int, end: int) -> list[TableFeatures]:
    """Decode the ofp_table_features list in buf[o:end]."""
    tables = []
    while o < end:
        if o + TABLE_FEATURES_SIZE > end:
            raise CodecError(OFPET.BAD_REQUEST, OFPBRC.BAD_LEN,
                             f"table features truncated ({end - o} bytes left, need {TABLE_FEATURES_SIZE})", o)
        length, table_id, name, metadata_match, metadata_write, config, max_entries = \
            _TABLE_FEATURES.unpack_from(buf, o)
        if length < TABLE_FEATURES_SIZE or o + length > end:
            raise CodecError(OFPET.BAD_REQUEST, OFPBRC.BAD_LEN,
                             f"table features length {length} invalid ({end - o} bytes left)", o)
        tables.append(TableFeatures(table_id, fixed_string(name), metadata_match, metadata_write, config,
                                    max_entries, unpack_properties(buf, o + TABLE_FEATURES_SIZE, o + length)))
        o += length
    return tables
