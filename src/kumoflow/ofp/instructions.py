"""Instructions (section 7.2.5)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar

from .actions import Action, pack_actions, unpack_actions
from .base import TLV_HEADER, UINT32
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
        _expect(cls, o, length, 8)
        return cls(buf[o + 4])


@dataclass(slots=True)
class WriteMetadata(Instruction):
    metadata: int
    metadata_mask: int = 0xFFFFFFFFFFFFFFFF
    TYPE: ClassVar[int] = OFPIT.WRITE_METADATA

    def pack(self) -> bytes:
        return _WRITE_METADATA.pack(self.TYPE, 24, self.metadata, self.metadata_mask)

    @classmethod
    def unpack(cls, buf: bytes, o: int, length: int) -> "WriteMetadata":
        _expect(cls, o, length, 24)
        return cls(*_WRITE_METADATA.unpack_from(buf, o)[2:])


@dataclass(slots=True)
class _ActionsInstruction(Instruction):
    actions: list[Action] = field(default_factory=list)

    def pack(self) -> bytes:
        body = pack_actions(self.actions)
        return _ACTIONS_HEADER.pack(self.TYPE, 8 + len(body)) + body

    @classmethod
    def unpack(cls, buf: bytes, o: int, length: int) -> "_ActionsInstruction":
        return cls(unpack_actions(buf, o + 8, o + length))


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
        _expect(cls, o, length, 8)
        return cls()


@dataclass(slots=True)
class Meter(Instruction):
    meter_id: int
    TYPE: ClassVar[int] = OFPIT.METER

    def pack(self) -> bytes:
        return _METER.pack(self.TYPE, 8, self.meter_id)

    @classmethod
    def unpack(cls, buf: bytes, o: int, length: int) -> "Meter":
        _expect(cls, o, length, 8)
        return cls(UINT32.unpack_from(buf, o + 4)[0])


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
        return cls(UINT32.unpack_from(buf, o + 4)[0], buf[o + 8:o + length])


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
        if cls is None:
            raise CodecError(OFPET.BAD_INSTRUCTION, OFPBIC.UNKNOWN_INST, f"unknown instruction type {itype}", o)
        result.append(cls.unpack(buf, o, length))
        o += length
    return result
