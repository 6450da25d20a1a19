"""Every OpenFlow 1.3 message except multipart (see multipart.py)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from . import base
from .actions import Action, pack_actions, unpack_actions
from .base import _BUILD, HEADER, TLV_HEADER, UINT32, Message, _whole_message, pad8, register
from .consts import (OFP_DEFAULT_MISS_SEND_LEN, OFP_DEFAULT_PRIORITY, OFP_NO_BUFFER, OFP_VERSION, OFPCR,
                     OFPFC, OFPG, OFPGT, OFPHET, OFPP, OFPT, OFPTT)
from .errors import OFPBRC, OFPET, CodecError
from .instructions import Instruction, pack_instructions, unpack_instructions
from .oxm import Match, mac_to_bytes, unpack_match
from .structs import (Bucket, MeterBand, PacketQueue, Port, PORT_SIZE, pack_bands, pack_buckets,
                      unpack_bands, unpack_buckets, unpack_queues)


def _bad_len(cls: type, detail: str, offset: int | None = None) -> CodecError:
    return CodecError(OFPET.BAD_REQUEST, OFPBRC.BAD_LEN, f"{cls.__name__}: {detail}", offset)


def _expect_size(cls: type, buf: bytes, size: int) -> None:
    if len(buf) != size:
        raise _bad_len(cls, f"length {len(buf)}, expected {size}", 2)


# --- symmetric and controller-switch messages ---------------------------------

@register(OFPT.HELLO)
@dataclass(slots=True)
class Hello(Message):
    """HELLO with the versions the sender supports (version bitmap element).

    `version` is the header version (any version's HELLO decodes);
    `versions` is the set from the bitmap, or None when the HELLO has none.
    Unknown elements are kept as raw TLVs.
    """

    versions: frozenset[int] | None = frozenset({OFP_VERSION})
    version: int = OFP_VERSION
    elements: list[bytes] = field(default_factory=list)

    def pack(self) -> bytes:
        body = self.pack_body()
        return HEADER.pack(self.version, _HELLO, 8 + len(body), self.xid) + body

    def pack_body(self) -> bytes:
        parts = []
        versions = self.versions
        if versions is not None:
            try:
                element = _VERSION_ELEMENTS.get(versions)
                cache = True
            except TypeError:                 # not hashable (a set): not kept
                element, cache = None, False
            if element is None:
                element = _version_element(versions)
                if cache:
                    if len(_VERSION_ELEMENTS) >= _CACHE_SIZE:
                        _VERSION_ELEMENTS.clear()
                    _VERSION_ELEMENTS[versions] = element
            parts.append(element)
        parts.extend(self.elements)
        return b"".join(parts)

    @classmethod
    def unpack_body(cls, buf: bytes, xid: int) -> "Hello":
        versions, elements, o, end = None, [], 8, len(buf)
        while o + 4 <= end:
            etype, length = _unpack_tlv(buf, o)
            if length < 4 or o + length > end:
                raise CodecError(OFPET.HELLO_FAILED, 0, f"hello element length {length} invalid", o)
            stop = o + length + (-length & 7)
            if etype == _VERSIONBITMAP:
                bitmap = buf[o + 4:o + 4 + (length - 4) // 4 * 4]
                versions = _VERSION_SETS.get(bitmap)
                if versions is None:
                    versions = _versions(bitmap)
            else:
                elements.append(buf[o:min(stop, end)])
            o = stop
        return _BUILD[cls](versions, buf[0], elements, xid)


base._HELLO_CLASS = Hello                 # what parse decodes a HELLO of any version with
_HELLO = int(OFPT.HELLO)                  # plain ints: enum lookups are slow on the hot path
_VERSIONBITMAP = int(OFPHET.VERSIONBITMAP)
_unpack_tlv = TLV_HEADER.unpack_from
# Both ends send the same version bitmap over and over: its element, and the
# versions it decodes to, are immutable, so they are kept (a few at most).
_CACHE_SIZE = 64
_VERSION_ELEMENTS: dict[frozenset[int], bytes] = {}
_VERSION_SETS: dict[bytes, frozenset[int]] = {}


def _version_element(versions: frozenset[int]) -> bytes:
    """The OFPHET_VERSIONBITMAP element (padded to 8 bytes) for `versions`."""
    words = [0] * (max(versions, default=0) // 32 + 1)
    for v in versions:
        words[v // 32] |= 1 << (v % 32)
    length = 4 + 4 * len(words)
    return (TLV_HEADER.pack(_VERSIONBITMAP, length) + struct.pack(f"!{len(words)}I", *words)
            + bytes(pad8(length)))


def _versions(bitmap: bytes) -> frozenset[int]:
    """The versions in a bitmap of 32-bit words (bit b of word i: version 32 * i + b)."""
    words = struct.unpack(f"!{len(bitmap) // 4}I", bitmap)
    versions = frozenset(32 * i + b for i, w in enumerate(words) for b in range(32) if w >> b & 1)
    if len(_VERSION_SETS) >= _CACHE_SIZE:
        _VERSION_SETS.clear()
    _VERSION_SETS[bitmap] = versions
    return versions


_ERROR = struct.Struct("!HH")
_ERROR_EXP = struct.Struct("!HHI")
_ERROR_MSG = struct.Struct("!BBHIHH")
_ERROR_EXP_MSG = struct.Struct("!BBHIHHI")
_OFPET_EXPERIMENTER = int(OFPET.EXPERIMENTER)


@register(OFPT.ERROR)
@dataclass(slots=True)
class ErrorMsg(Message):
    """ERROR: type, code and (usually) the first bytes of the failed request.

    For type EXPERIMENTER (0xffff), `code` holds exp_type and `experimenter`
    the experimenter id.
    """

    type: int
    code: int
    data: bytes = b""
    experimenter: int | None = None

    @_whole_message
    def pack(self) -> bytes:
        try:
            data = self.data
            if self.type == _OFPET_EXPERIMENTER:
                length = 16 + len(data)
                return _ERROR_EXP_MSG.pack(OFP_VERSION, self.msg_type, length, self.xid, self.type, self.code,
                                           self.experimenter or 0) + data
            length = 12 + len(data)
            return _ERROR_MSG.pack(OFP_VERSION, self.msg_type, length, self.xid, self.type, self.code) + data
        except Exception:
            return Message.pack(self)     # the general way: its bytes, or its error

    def pack_body(self) -> bytes:
        if self.type == _OFPET_EXPERIMENTER:
            return _ERROR_EXP.pack(self.type, self.code, self.experimenter or 0) + self.data
        return _ERROR.pack(self.type, self.code) + self.data

    @classmethod
    def unpack_body(cls, buf: bytes, xid: int) -> "ErrorMsg":
        err_type, code = _ERROR.unpack_from(buf, 8)
        if err_type == _OFPET_EXPERIMENTER:
            return _BUILD[cls](err_type, code, buf[16:], UINT32.unpack_from(buf, 12)[0], xid)
        return _BUILD[cls](err_type, code, buf[12:], None, xid)

    @classmethod
    def for_request(cls, err_type: int, code: int, request: bytes, xid: int | None = None) -> "ErrorMsg":
        """The ERROR answering `request`: at least its first 64 bytes, same xid."""
        if xid is None:
            xid = HEADER.unpack_from(request)[3] if len(request) >= 8 else 0
        return cls(err_type, code, bytes(request[:64]), xid=xid)

    @classmethod
    def from_codec_error(cls, exc: CodecError, request: bytes) -> "ErrorMsg":
        return cls.for_request(exc.type, exc.code, request)


@dataclass(slots=True)
class _DataMessage(Message):
    data: bytes = b""

    @_whole_message
    def pack(self) -> bytes:
        try:
            data = self.data
            length = 8 + len(data)
            return _pack_header(OFP_VERSION, self.msg_type, length, self.xid) + data
        except Exception:
            return Message.pack(self)     # the general way: its bytes, or its error

    def pack_body(self) -> bytes:
        return self.data

    @classmethod
    def unpack_body(cls, buf: bytes, xid: int) -> "_DataMessage":
        return _BUILD[cls](buf[8:], xid)


@register(OFPT.ECHO_REQUEST)
@dataclass(slots=True)
class EchoRequest(_DataMessage):
    pass


@register(OFPT.ECHO_REPLY)
@dataclass(slots=True)
class EchoReply(_DataMessage):
    pass


_EXPERIMENTER = struct.Struct("!II")
_EXPERIMENTER_MSG = struct.Struct("!BBHIII")
_pack_header = HEADER.pack


@register(OFPT.EXPERIMENTER)
@dataclass(slots=True)
class Experimenter(Message):
    experimenter: int
    exp_type: int = 0
    data: bytes = b""

    @_whole_message
    def pack(self) -> bytes:
        try:
            data = self.data
            length = 16 + len(data)
            return _EXPERIMENTER_MSG.pack(OFP_VERSION, self.msg_type, length, self.xid, self.experimenter,
                                          self.exp_type) + data
        except Exception:
            return Message.pack(self)     # the general way: its bytes, or its error

    def pack_body(self) -> bytes:
        return _EXPERIMENTER.pack(self.experimenter, self.exp_type) + self.data

    @classmethod
    def unpack_body(cls, buf: bytes, xid: int) -> "Experimenter":
        if len(buf) < 16:
            raise _bad_len(cls, "shorter than 16 bytes", 8)
        experimenter, exp_type = _EXPERIMENTER.unpack_from(buf, 8)
        return _BUILD[cls](experimenter, exp_type, buf[16:], xid)


@register(OFPT.FEATURES_REQUEST)
@dataclass(slots=True)
class FeaturesRequest(Message):
    pass


_FEATURES = struct.Struct("!QIBB2xII")
_FEATURES_MSG = struct.Struct("!BBHIQIBB2xII")


@register(OFPT.FEATURES_REPLY)
@dataclass(slots=True)
class FeaturesReply(Message):
    datapath_id: int
    n_buffers: int = 0
    n_tables: int = 1
    auxiliary_id: int = 0
    capabilities: int = 0
    reserved: int = 0

    @_whole_message
    def pack(self) -> bytes:
        try:
            return _FEATURES_MSG.pack(OFP_VERSION, self.msg_type, 32, self.xid, self.datapath_id, self.n_buffers,
                                      self.n_tables, self.auxiliary_id, self.capabilities, self.reserved)
        except Exception:
            return Message.pack(self)     # the general way: its bytes, or its error

    def pack_body(self) -> bytes:
        return _FEATURES.pack(self.datapath_id, self.n_buffers, self.n_tables, self.auxiliary_id,
                              self.capabilities, self.reserved)

    @classmethod
    def unpack_body(cls, buf: bytes, xid: int) -> "FeaturesReply":
        if len(buf) != 32:
            _expect_size(cls, buf, 32)
        datapath_id, n_buffers, n_tables, auxiliary_id, capabilities, reserved = _FEATURES.unpack_from(buf, 8)
        return _BUILD[cls](datapath_id, n_buffers, n_tables, auxiliary_id, capabilities, reserved, xid)


@register(OFPT.GET_CONFIG_REQUEST)
@dataclass(slots=True)
class GetConfigRequest(Message):
    pass


_CONFIG = struct.Struct("!HH")
_CONFIG_MSG = struct.Struct("!BBHIHH")


@dataclass(slots=True)
class _Config(Message):
    flags: int = 0
    miss_send_len: int = OFP_DEFAULT_MISS_SEND_LEN

    @_whole_message
    def pack(self) -> bytes:
        try:
            return _CONFIG_MSG.pack(OFP_VERSION, self.msg_type, 12, self.xid, self.flags, self.miss_send_len)
        except Exception:
            return Message.pack(self)     # the general way: its bytes, or its error

    def pack_body(self) -> bytes:
        return _CONFIG.pack(self.flags, self.miss_send_len)

    @classmethod
    def unpack_body(cls, buf: bytes, xid: int) -> "_Config":
        if len(buf) != 12:
            _expect_size(cls, buf, 12)
        flags, miss_send_len = _CONFIG.unpack_from(buf, 8)
        return _BUILD[cls](flags, miss_send_len, xid)


@register(OFPT.GET_CONFIG_REPLY)
@dataclass(slots=True)
class GetConfigReply(_Config):
    pass


@register(OFPT.SET_CONFIG)
@dataclass(slots=True)
class SetConfig(_Config):
    pass


# --- asynchronous messages from the switch ------------------------------------

_PACKET_IN = struct.Struct("!IHBBQ")
_PACKET_IN_MSG = struct.Struct("!BBHIIHBBQ")


@register(OFPT.PACKET_IN)
@dataclass(slots=True)
class PacketIn(Message):
    buffer_id: int = OFP_NO_BUFFER
    total_len: int = 0
    reason: int = 0
    table_id: int = 0
    cookie: int = 0
    match: Match = field(default_factory=Match)
    data: bytes = b""

    @_whole_message
    def pack(self) -> bytes:
        try:
            match, data = self.match.pack(), self.data
            length = 26 + len(match) + len(data)
            return b"".join((_PACKET_IN_MSG.pack(OFP_VERSION, self.msg_type, length, self.xid, self.buffer_id,
                                                 self.total_len, self.reason, self.table_id, self.cookie),
                             match, b"\0\0", data))
        except Exception:
            return Message.pack(self)     # the general way: its bytes, or its error

    def pack_body(self) -> bytes:
        return (_PACKET_IN.pack(self.buffer_id, self.total_len, self.reason, self.table_id, self.cookie)
                + self.match.pack() + b"\0\0" + self.data)

    @classmethod
    def unpack_body(cls, buf: bytes, xid: int) -> "PacketIn":
        buffer_id, total_len, reason, table_id, cookie = _PACKET_IN.unpack_from(buf, 8)
        match, o = unpack_match(buf, 24, len(buf))
        if o + 2 > len(buf):
            raise _bad_len(cls, "truncated after the match", o)
        return _BUILD[cls](buffer_id, total_len, reason, table_id, cookie, match, buf[o + 2:], xid)


_FLOW_REMOVED = struct.Struct("!QHBBIIHHQQ")
_FLOW_REMOVED_MSG = struct.Struct("!BBHIQHBBIIHHQQ")


@register(OFPT.FLOW_REMOVED)
@dataclass(slots=True)
class FlowRemoved(Message):
    cookie: int = 0
    priority: int = OFP_DEFAULT_PRIORITY
    reason: int = 0
    table_id: int = 0
    duration_sec: int = 0
    duration_nsec: int = 0
    idle_timeout: int = 0
    hard_timeout: int = 0
    packet_count: int = 0
    byte_count: int = 0
    match: Match = field(default_factory=Match)

    @_whole_message
    def pack(self) -> bytes:
        try:
            match = self.match.pack()
            length = 48 + len(match)
            return _FLOW_REMOVED_MSG.pack(OFP_VERSION, self.msg_type, length, self.xid, self.cookie, self.priority,
                                          self.reason, self.table_id, self.duration_sec, self.duration_nsec,
                                          self.idle_timeout, self.hard_timeout, self.packet_count,
                                          self.byte_count) + match
        except Exception:
            return Message.pack(self)     # the general way: its bytes, or its error

    def pack_body(self) -> bytes:
        return _FLOW_REMOVED.pack(self.cookie, self.priority, self.reason, self.table_id, self.duration_sec,
                                  self.duration_nsec, self.idle_timeout, self.hard_timeout,
                                  self.packet_count, self.byte_count) + self.match.pack()

    @classmethod
    def unpack_body(cls, buf: bytes, xid: int) -> "FlowRemoved":
        (cookie, priority, reason, table_id, duration_sec, duration_nsec, idle_timeout, hard_timeout,
         packet_count, byte_count) = _FLOW_REMOVED.unpack_from(buf, 8)
        match, o = unpack_match(buf, 48, len(buf))
        if o != len(buf):
            raise _bad_len(cls, "bytes after the match", o)
        return _BUILD[cls](cookie, priority, reason, table_id, duration_sec, duration_nsec, idle_timeout,
                           hard_timeout, packet_count, byte_count, match, xid)


@register(OFPT.PORT_STATUS)
@dataclass(slots=True)
class PortStatus(Message):
    reason: int
    desc: Port

    def pack_body(self) -> bytes:
        return bytes((self.reason,)) + bytes(7) + self.desc.pack()

    @classmethod
    def unpack_body(cls, buf: bytes, xid: int) -> "PortStatus":
        if len(buf) != 16 + PORT_SIZE:
            _expect_size(cls, buf, 16 + PORT_SIZE)
        return _BUILD[cls](buf[8], Port.unpack(buf, 16), xid)


# --- controller-to-switch messages --------------------------------------------

_PACKET_OUT = struct.Struct("!IIH6x")
_PACKET_OUT_MSG = struct.Struct("!BBHIIIH6x")


@register(OFPT.PACKET_OUT)
@dataclass(slots=True)
class PacketOut(Message):
    buffer_id: int = OFP_NO_BUFFER
    in_port: int = OFPP.CONTROLLER
    actions: list[Action] = field(default_factory=list)
    data: bytes = b""

    @_whole_message
    def pack(self) -> bytes:
        try:
            items = self.actions
            if type(items) is list and len(items) <= 16:   # a short list: quicker than a comprehension
                actions = b""
                for a in items:
                    actions += a.pack()
            else:
                actions = b"".join([a.pack() for a in items])
            data = self.data
            length = 24 + len(actions) + len(data)
            return b"".join((_PACKET_OUT_MSG.pack(OFP_VERSION, self.msg_type, length, self.xid, self.buffer_id,
                                                  self.in_port, len(actions)), actions, data))
        except Exception:
            return Message.pack(self)     # the general way: its bytes, or its error

    def pack_body(self) -> bytes:
        actions = pack_actions(self.actions)
        return _PACKET_OUT.pack(self.buffer_id, self.in_port, len(actions)) + actions + self.data

    @classmethod
    def unpack_body(cls, buf: bytes, xid: int) -> "PacketOut":
        buffer_id, in_port, actions_len = _PACKET_OUT.unpack_from(buf, 8)
        end = 24 + actions_len
        if end > len(buf):
            raise _bad_len(cls, f"actions_len {actions_len} overruns the message", 16)
        return _BUILD[cls](buffer_id, in_port, unpack_actions(buf, 24, end), buf[end:], xid)


_FLOW_MOD = struct.Struct("!QQBBHHHIIIH2x")
_FLOW_MOD_MSG = struct.Struct("!BBHIQQBBHHHIIIH2x")


@register(OFPT.FLOW_MOD)
@dataclass(slots=True)
class FlowMod(Message):
    cookie: int = 0
    cookie_mask: int = 0
    table_id: int = 0
    command: int = OFPFC.ADD
    idle_timeout: int = 0
    hard_timeout: int = 0
    priority: int = OFP_DEFAULT_PRIORITY
    buffer_id: int = OFP_NO_BUFFER
    out_port: int = OFPP.ANY
    out_group: int = OFPG.ANY
    flags: int = 0
    match: Match = field(default_factory=Match)
    instructions: list[Instruction] = field(default_factory=list)

    @_whole_message
    def pack(self) -> bytes:
        try:
            match = self.match.pack()
            items = self.instructions
            if type(items) is list and len(items) <= 16:   # a short list: quicker than a comprehension
                instructions = b""
                for i in items:
                    instructions += i.pack()
            else:
                instructions = b"".join([i.pack() for i in items])
            length = 48 + len(match) + len(instructions)
            return b"".join((_FLOW_MOD_MSG.pack(OFP_VERSION, self.msg_type, length, self.xid, self.cookie,
                                                self.cookie_mask, self.table_id, self.command, self.idle_timeout,
                                                self.hard_timeout, self.priority, self.buffer_id, self.out_port,
                                                self.out_group, self.flags), match, instructions))
        except Exception:
            return Message.pack(self)     # the general way: its bytes, or its error

    def pack_body(self) -> bytes:
        return (_FLOW_MOD.pack(self.cookie, self.cookie_mask, self.table_id, self.command, self.idle_timeout,
                               self.hard_timeout, self.priority, self.buffer_id, self.out_port,
                               self.out_group, self.flags)
                + self.match.pack() + pack_instructions(self.instructions))

    @classmethod
    def unpack_body(cls, buf: bytes, xid: int) -> "FlowMod":
        (cookie, cookie_mask, table_id, command, idle_timeout, hard_timeout, priority, buffer_id, out_port,
         out_group, flags) = _FLOW_MOD.unpack_from(buf, 8)
        match, o = unpack_match(buf, 48, len(buf))
        return _BUILD[cls](cookie, cookie_mask, table_id, command, idle_timeout, hard_timeout, priority, buffer_id,
                           out_port, out_group, flags, match, unpack_instructions(buf, o, len(buf)), xid)


_GROUP_MOD = struct.Struct("!HBxI")
_GROUP_MOD_MSG = struct.Struct("!BBHIHBxI")


@register(OFPT.GROUP_MOD)
@dataclass(slots=True)
class GroupMod(Message):
    command: int
    type: int = OFPGT.ALL
    group_id: int = 0
    buckets: list[Bucket] = field(default_factory=list)

    @_whole_message
    def pack(self) -> bytes:
        try:
            items = self.buckets
            if type(items) is list and len(items) <= 16:   # a short list: quicker than a comprehension
                buckets = b""
                for b in items:
                    buckets += b.pack()
            else:
                buckets = b"".join([b.pack() for b in items])
            length = 16 + len(buckets)
            return _GROUP_MOD_MSG.pack(OFP_VERSION, self.msg_type, length, self.xid, self.command, self.type,
                                       self.group_id) + buckets
        except Exception:
            return Message.pack(self)     # the general way: its bytes, or its error

    def pack_body(self) -> bytes:
        return _GROUP_MOD.pack(self.command, self.type, self.group_id) + pack_buckets(self.buckets)

    @classmethod
    def unpack_body(cls, buf: bytes, xid: int) -> "GroupMod":
        command, gtype, group_id = _GROUP_MOD.unpack_from(buf, 8)
        return _BUILD[cls](command, gtype, group_id, unpack_buckets(buf, 16, len(buf)), xid)


_PORT_MOD = struct.Struct("!I4x6s2xIII4x")


@register(OFPT.PORT_MOD)
@dataclass(slots=True)
class PortMod(Message):
    port_no: int
    hw_addr: str = "00:00:00:00:00:00"
    config: int = 0
    mask: int = 0
    advertise: int = 0

    def pack_body(self) -> bytes:
        return _PORT_MOD.pack(self.port_no, mac_to_bytes(self.hw_addr), self.config, self.mask, self.advertise)

    @classmethod
    def unpack_body(cls, buf: bytes, xid: int) -> "PortMod":
        _expect_size(cls, buf, 40)
        port_no, hw_addr, config, mask, advertise = _PORT_MOD.unpack_from(buf, 8)
        return cls(port_no, hw_addr.hex(":"), config, mask, advertise, xid=xid)


_TABLE_MOD = struct.Struct("!B3xI")
_TABLE_MOD_MSG = struct.Struct("!BBHIB3xI")


@register(OFPT.TABLE_MOD)
@dataclass(slots=True)
class TableMod(Message):
    table_id: int = OFPTT.ALL
    config: int = 0

    @_whole_message
    def pack(self) -> bytes:
        try:
            return _TABLE_MOD_MSG.pack(OFP_VERSION, self.msg_type, 16, self.xid, self.table_id, self.config)
        except Exception:
            return Message.pack(self)     # the general way: its bytes, or its error

    def pack_body(self) -> bytes:
        return _TABLE_MOD.pack(self.table_id, self.config)

    @classmethod
    def unpack_body(cls, buf: bytes, xid: int) -> "TableMod":
        if len(buf) != 16:
            _expect_size(cls, buf, 16)
        table_id, config = _TABLE_MOD.unpack_from(buf, 8)
        return _BUILD[cls](table_id, config, xid)


@register(OFPT.BARRIER_REQUEST)
@dataclass(slots=True)
class BarrierRequest(Message):
    pass


@register(OFPT.BARRIER_REPLY)
@dataclass(slots=True)
class BarrierReply(Message):
    pass


_QUEUE_GET_CONFIG = struct.Struct("!I4x")


@register(OFPT.QUEUE_GET_CONFIG_REQUEST)
@dataclass(slots=True)
class QueueGetConfigRequest(Message):
    port: int = OFPP.ANY

    def pack_body(self) -> bytes:
        return _QUEUE_GET_CONFIG.pack(self.port)

    @classmethod
    def unpack_body(cls, buf: bytes, xid: int) -> "QueueGetConfigRequest":
        _expect_size(cls, buf, 16)
        return cls(UINT32.unpack_from(buf, 8)[0], xid=xid)


@register(OFPT.QUEUE_GET_CONFIG_REPLY)
@dataclass(slots=True)
class QueueGetConfigReply(Message):
    port: int
    queues: list[PacketQueue] = field(default_factory=list)

    def pack_body(self) -> bytes:
        return _QUEUE_GET_CONFIG.pack(self.port) + b"".join([q.pack() for q in self.queues])

    @classmethod
    def unpack_body(cls, buf: bytes, xid: int) -> "QueueGetConfigReply":
        port = UINT32.unpack_from(buf, 8)[0]
        return _BUILD[cls](port, unpack_queues(buf, 16, len(buf)), xid)


_ROLE = struct.Struct("!I4xQ")
_ROLE_MSG = struct.Struct("!BBHII4xQ")


@dataclass(slots=True)
class _Role(Message):
    role: int = OFPCR.ROLE_NOCHANGE
    generation_id: int = 0

    @_whole_message
    def pack(self) -> bytes:
        try:
            return _ROLE_MSG.pack(OFP_VERSION, self.msg_type, 24, self.xid, self.role, self.generation_id)
        except Exception:
            return Message.pack(self)     # the general way: its bytes, or its error

    def pack_body(self) -> bytes:
        return _ROLE.pack(self.role, self.generation_id)

    @classmethod
    def unpack_body(cls, buf: bytes, xid: int) -> "_Role":
        if len(buf) != 24:
            _expect_size(cls, buf, 24)
        role, generation_id = _ROLE.unpack_from(buf, 8)
        return _BUILD[cls](role, generation_id, xid)


@register(OFPT.ROLE_REQUEST)
@dataclass(slots=True)
class RoleRequest(_Role):
    pass


@register(OFPT.ROLE_REPLY)
@dataclass(slots=True)
class RoleReply(_Role):
    pass


@register(OFPT.GET_ASYNC_REQUEST)
@dataclass(slots=True)
class GetAsyncRequest(Message):
    pass


_ASYNC = struct.Struct("!IIIIII")
_ASYNC_MSG = struct.Struct("!BBHIIIIIII")


@dataclass(slots=True)
class _Async(Message):
    """Async config; each mask is (master/equal, slave) as in the spec."""

    packet_in_mask: tuple[int, int] = (0, 0)
    port_status_mask: tuple[int, int] = (0, 0)
    flow_removed_mask: tuple[int, int] = (0, 0)

    @_whole_message
    def pack(self) -> bytes:
        try:
            return _ASYNC_MSG.pack(OFP_VERSION, self.msg_type, 32, self.xid, *self.packet_in_mask,
                                   *self.port_status_mask, *self.flow_removed_mask)
        except Exception:
            return Message.pack(self)     # the general way: its bytes, or its error

    def pack_body(self) -> bytes:
        return _ASYNC.pack(*self.packet_in_mask, *self.port_status_mask, *self.flow_removed_mask)

    @classmethod
    def unpack_body(cls, buf: bytes, xid: int) -> "_Async":
        if len(buf) != 32:
            _expect_size(cls, buf, 32)
        a, b, c, d, e, f = _ASYNC.unpack_from(buf, 8)
        return _BUILD[cls]((a, b), (c, d), (e, f), xid)


@register(OFPT.GET_ASYNC_REPLY)
@dataclass(slots=True)
class GetAsyncReply(_Async):
    pass


@register(OFPT.SET_ASYNC)
@dataclass(slots=True)
class SetAsync(_Async):
    pass


_METER_MOD = struct.Struct("!HHI")
_METER_MOD_MSG = struct.Struct("!BBHIHHI")


@register(OFPT.METER_MOD)
@dataclass(slots=True)
class MeterMod(Message):
    command: int
    flags: int = 0
    meter_id: int = 0
    bands: list[MeterBand] = field(default_factory=list)

    @_whole_message
    def pack(self) -> bytes:
        try:
            items = self.bands
            if type(items) is list and len(items) <= 16:   # a short list: quicker than a comprehension
                bands = b""
                for b in items:
                    bands += b.pack()
            else:
                bands = b"".join([b.pack() for b in items])
            length = 16 + len(bands)
            return _METER_MOD_MSG.pack(OFP_VERSION, self.msg_type, length, self.xid, self.command, self.flags,
                                       self.meter_id) + bands
        except Exception:
            return Message.pack(self)     # the general way: its bytes, or its error

    def pack_body(self) -> bytes:
        return _METER_MOD.pack(self.command, self.flags, self.meter_id) + pack_bands(self.bands)

    @classmethod
    def unpack_body(cls, buf: bytes, xid: int) -> "MeterMod":
        command, flags, meter_id = _METER_MOD.unpack_from(buf, 8)
        return _BUILD[cls](command, flags, meter_id, unpack_bands(buf, 16, len(buf)), xid)
