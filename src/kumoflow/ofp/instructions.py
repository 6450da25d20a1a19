"""Instructions (section 7.2.5)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar

from .actions import Action, unpack_actions
from .base import _MAKE, TLV_HEADER, UINT32
from .consts import OFPIT
from .errors import OFPBIC, OFPET, CodecError

INSTRUCTION_TYPES: dict[int, type["Instruction"]] = {}

_GOTO = struct.Struct("!HHB3x")
_WRITE_METADATA = struct.Struct("!HH4xQQ")
_ACTIONS_HEADER = struct.Struct("!HH4x")
_METER = struct.Struct("!HHI")


@dataclass(slots=True)
class Instruction:
    TYPE: ClassVar[int]

    def __init_subclass__(cls, **kwargs) -> None:
        if "TYPE" in cls.__dict__:
            cls.TYPE = int(cls.TYPE)   # a plain int: enum lookups are slow on the hot path
            INSTRUCTION_TYPES[cls.TYPE] = cls


def _expect(cls: type, o: int, length: int, size: int) -> None:
    if length != size:
        raise CodecError(OFPET.BAD_INSTRUCTION, OFPBIC.BAD_LEN,
                         f"{cls.__name__} length {length}, expected {size}", o)


@dataclass(slots=True)
class GotoTable(Instruction):
    table_id: int
    TYPE: ClassVar[int] = OFPIT.GOTO_TABLE

    def pack(self) -> bytes:
        return _GOTO.pack(self.TYPE, 8, self.table_id)

    @classmethod
    def unpack(cls, buf: bytes, o: int, length: int) -> "GotoTable":
        if length != 8:
            _expect(cls, o, length, 8)
        return _MAKE[cls](buf[o + 4])


@dataclass(slots=True)
class WriteMetadata(Instruction):
    metadata: int
    metadata_mask: int = 0xFFFFFFFFFFFFFFFF
    TYPE: ClassVar[int] = OFPIT.WRITE_METADATA

    def pack(self) -> bytes:
        return _WRITE_METADATA.pack(self.TYPE, 24, self.metadata, self.metadata_mask)

    @classmethod
    def unpack(cls, buf: bytes, o: int, length: int) -> "WriteMetadata":
        if length != 24:
            _expect(cls, o, length, 24)
        _, _, metadata, mask = _WRITE_METADATA.unpack_from(buf, o)
        return _MAKE[cls](metadata, mask)


@dataclass(slots=True)
class _ActionsInstruction(Instruction):
    actions: list[Action] = field(default_factory=list)

    def pack(self) -> bytes:
        items = self.actions
        if type(items) is list and len(items) <= 16:   # a short list: quicker than a comprehension
            body = b""
            for a in items:
                body += a.pack()
        else:
            body = b"".join([a.pack() for a in items])
        return _ACTIONS_HEADER.pack(self.TYPE, 8 + len(body)) + body

    @classmethod
    def unpack(cls, buf: bytes, o: int, length: int) -> "_ActionsInstruction":
        return _MAKE[cls](unpack_actions(buf, o + 8, o + length))


@dataclass(slots=True)
class WriteActions(_ActionsInstruction):
    TYPE: ClassVar[int] = OFPIT.WRITE_ACTIONS


@dataclass(slots=True)
class ApplyActions(_ActionsInstruction):
    TYPE: ClassVar[int] = OFPIT.APPLY_ACTIONS


@dataclass(slots=True)
class ClearActions(Instruction):
    TYPE: ClassVar[int] = OFPIT.CLEAR_ACTIONS

    def pack(self) -> bytes:
        return _ACTIONS_HEADER.pack(self.TYPE, 8)

    @classmethod
    def unpack(cls, buf: bytes, o: int, length: int) -> "ClearActions":
        if length != 8:
            _expect(cls, o, length, 8)
        return _MAKE[cls]()


@dataclass(slots=True)
class Meter(Instruction):
    meter_id: int
    TYPE: ClassVar[int] = OFPIT.METER

    def pack(self) -> bytes:
        return _METER.pack(self.TYPE, 8, self.meter_id)

    @classmethod
    def unpack(cls, buf: bytes, o: int, length: int) -> "Meter":
        if length != 8:
            _expect(cls, o, length, 8)
        return _MAKE[cls](UINT32.unpack_from(buf, o + 4)[0])


@dataclass(slots=True)
class ExperimenterInstruction(Instruction):
    """An experimenter instruction, kept opaque."""

    experimenter: int
    data: bytes = b""
    TYPE: ClassVar[int] = OFPIT.EXPERIMENTER

    def pack(self) -> bytes:
        return TLV_HEADER.pack(self.TYPE, 8 + len(self.data)) + UINT32.pack(self.experimenter) + self.data

    @classmethod
    def unpack(cls, buf: bytes, o: int, length: int) -> "ExperimenterInstruction":
        return _MAKE[cls](UINT32.unpack_from(buf, o + 4)[0], buf[o + 8:o + length])


def pack_instructions(instructions: list[Instruction]) -> bytes:
    return b"".join([i.pack() for i in instructions])


def unpack_instructions(buf: bytes, o: int, end: int) -> list[Instruction]:
    """Decode the instruction list in buf[o:end]."""
    result = []
    types = INSTRUCTION_TYPES
    while o < end:
        if o + 4 > end:
            raise CodecError(OFPET.BAD_INSTRUCTION, OFPBIC.BAD_LEN, "instruction header truncated", o)
        itype, length = TLV_HEADER.unpack_from(buf, o)
        if length < 8 or length & 7 or o + length > end:
            raise CodecError(OFPET.BAD_INSTRUCTION, OFPBIC.BAD_LEN,
                             f"instruction length {length} invalid ({end - o} bytes left)", o)
        cls = types.get(itype)
        if cls is ApplyActions or cls is WriteActions:
            # their unpack inlined: the most frequent instructions
            result.append(_MAKE[cls](unpack_actions(buf, o + 8, o + length)))
        elif cls is None:
            raise CodecError(OFPET.BAD_INSTRUCTION, OFPBIC.UNKNOWN_INST, f"unknown instruction type {itype}", o)
        else:
            result.append(cls.unpack(buf, o, length))
        o += length
    return result
