"""Multipart messages (section 7.3.5): statistics and descriptions.

OFPT_MULTIPART_REQUEST and OFPT_MULTIPART_REPLY share one layout: the
header, then type (OFPMP), flags (OFPMPF_REQ_MORE / REPLY_MORE) and 4 bytes
of padding, then a body that depends on the type. `MultipartRequest` and
`MultipartReply` are what MESSAGE_TYPES holds for the two OFPT numbers;
their decoder reads the multipart type and hands the message to the
concrete class registered for it, so `parse` returns e.g. a
`FlowStatsReply` directly. Every concrete class has a keyword-only `flags`
field and packs the multipart header itself.

Decoding is table-driven: every concrete class has a `decode_body(buf,
xid, flags)`, called once the multipart header has been read and checked,
and registering the class files it under its multipart type, where
`parse` finds it. Most are made from a description of the body's layout
(`_fixed_body`: one struct; `_array_body`: fixed-size records); the
others are written out.

A long reply is split by the sender into several messages with the MORE
flag set on all but the last; joining them is the receiver's business.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from itertools import starmap
from typing import Callable, ClassVar

from .base import (_BUILD, _MAKE, _MULTIPART_DECODERS, MULTIPART_REPLIES, MULTIPART_REQUESTS, OFP_VERSION,
                   Message, _whole_message, fixed_string, pack_string, register)
from .consts import (DESC_STR_LEN, OFP_DEFAULT_PRIORITY, OFPG, OFPM, OFPMP, OFPMPF, OFPP, OFPQ_ALL, OFPT,
                     OFPTT, SERIAL_NUM_LEN)
from .errors import OFPBRC, OFPET, CodecError
from .instructions import Instruction, pack_instructions, unpack_instructions
from .oxm import Match, unpack_match
from .structs import (Bucket, MeterBand, Port, pack_bands, pack_buckets, unpack_bands, unpack_buckets,
                      unpack_ports)
from .table_features import TableFeatures, pack_table_features, unpack_table_features

_MP = struct.Struct("!HH4x")          # type, flags, pad — after the 8-byte header
MP_HEADER_LEN = 16                    # ofp_header + the multipart header above
_MP_MSG = struct.Struct("!BBHIHH4x")  # the header and the multipart header: a bodiless request
_ID_MSG = struct.Struct("!BBHIHH4xI4x")   # ... and a port_no / group_id / meter_id + pad
_unpack_mp = _MP.unpack_from


def _bad_len(cls: type, detail: str, offset: int | None = None) -> CodecError:
    return CodecError(OFPET.BAD_REQUEST, OFPBRC.BAD_LEN, f"{cls.__name__}: {detail}", offset)


def _mp_flags(cls: type, buf: bytes) -> int:
    """Check the multipart header of `buf` against `cls`; return its flags."""
    if len(buf) < 16:
        raise _bad_len(cls, f"{len(buf)} bytes, shorter than the 16-byte multipart header", 8)
    mp_type, flags = _unpack_mp(buf, 8)
    if mp_type != cls.mp_type:
        raise CodecError(OFPET.BAD_REQUEST, OFPBRC.BAD_MULTIPART,
                         f"{cls.__name__}: multipart type {mp_type}, expected {cls.mp_type}", 8)
    return flags


def _expect_size(cls: type, buf: bytes, size: int) -> None:
    if len(buf) != size:
        raise _bad_len(cls, f"length {len(buf)}, expected {size}", 2)


# --- the two message types, decoding and registration ------------------------

# OFPMP -> decoder(buf, xid, flags) of the concrete class registered for it
# (its bound decode_body), for parse and the two base classes' unpack_body.
REQUEST_DECODERS: dict[int, Callable[[bytes, int, int], Message]] = {}
REPLY_DECODERS: dict[int, Callable[[bytes, int, int], Message]] = {}


def _unpack_multipart(cls: type, buf: bytes, xid: int) -> Message:
    """unpack_body of every multipart class. MultipartRequest and
    MultipartReply hand the message to the decoder registered for its
    multipart type; a concrete class checks that the type is its own and
    decodes the body itself."""
    decoders = _MULTIPART_DECODERS.get(cls)
    if decoders is None:
        return cls.decode_body(buf, xid, _mp_flags(cls, buf))
    kind = "request" if decoders is REQUEST_DECODERS else "reply"
    if len(buf) < MP_HEADER_LEN:
        raise CodecError(OFPET.BAD_REQUEST, OFPBRC.BAD_LEN,
                         f"multipart {kind} of {len(buf)} bytes is shorter than its 16-byte header", 8)
    mp_type, flags = _unpack_mp(buf, 8)
    decode = decoders.get(mp_type)
    if decode is None:
        raise CodecError(OFPET.BAD_REQUEST, OFPBRC.BAD_MULTIPART, f"unknown multipart {kind} type {mp_type}", 8)
    return decode(buf, xid, flags)


def _no_body(cls: type, buf: bytes, xid: int, flags: int) -> Message:
    """decode_body(buf, xid, flags): the message in `buf` (whole, header at
    0), its multipart header checked and its flags read. Every concrete
    class defines its own; the two base classes have none."""
    raise TypeError(f"{cls.__name__} is abstract: it has no body to decode")


@register(OFPT.MULTIPART_REQUEST)
@dataclass(slots=True)
class MultipartRequest(Message):
    """Base of every multipart request; decodes to the concrete class."""

    flags: int = field(default=0, kw_only=True)
    mp_type: ClassVar[int]

    def pack_body(self) -> bytes:
        raise TypeError(f"{type(self).__name__} is abstract: build a concrete multipart class")

    @classmethod
    def unpack_body(cls, buf: bytes, xid: int) -> Message:
        return _unpack_multipart(cls, buf, xid)

    decode_body = classmethod(_no_body)


@register(OFPT.MULTIPART_REPLY)
@dataclass(slots=True)
class MultipartReply(Message):
    """Base of every multipart reply; decodes to the concrete class."""

    flags: int = field(default=0, kw_only=True)
    mp_type: ClassVar[int]

    def pack_body(self) -> bytes:
        raise TypeError(f"{type(self).__name__} is abstract: build a concrete multipart class")

    @classmethod
    def unpack_body(cls, buf: bytes, xid: int) -> Message:
        return _unpack_multipart(cls, buf, xid)

    decode_body = classmethod(_no_body)


_MULTIPART_DECODERS[MultipartRequest] = REQUEST_DECODERS
_MULTIPART_DECODERS[MultipartReply] = REPLY_DECODERS


def _registrar(base: type, registry: dict[int, type[Message]],
               decoders: dict[int, Callable[[bytes, int, int], Message]]) -> Callable[[int], Callable[[type], type]]:
    def multipart_type(mp_type: int) -> Callable[[type], type]:
        def decorate(cls: type) -> type:
            if not issubclass(cls, base):
                raise TypeError(f"{cls.__name__} must subclass {base.__name__}")
            if cls.decode_body.__func__ is _no_body:
                raise TypeError(f"{cls.__name__} must define its own decode_body")
            cls.msg_type = base.msg_type
            cls.mp_type = int(mp_type)   # a plain int: cheap to read when packing, and to look up
            registry[cls.mp_type] = cls
            decoders[cls.mp_type] = cls.decode_body
            return cls

        return decorate

    return multipart_type


#: Class decorators: @multipart_request(OFPMP.X) / @multipart_reply(OFPMP.X)
#: set msg_type and mp_type and register the class (and its decode_body).
multipart_request = _registrar(MultipartRequest, MULTIPART_REQUESTS, REQUEST_DECODERS)
multipart_reply = _registrar(MultipartReply, MULTIPART_REPLIES, REPLY_DECODERS)


# --- decoders made from a layout ----------------------------------------------

def _fixed_body(layout: struct.Struct) -> classmethod:
    """decode_body of a class whose body is one `layout` (exactly), its
    values the class's fields in order."""
    size, unpack = MP_HEADER_LEN + layout.size, layout.unpack_from

    def decode_body(cls: type, buf: bytes, xid: int, flags: int) -> Message:
        if len(buf) != size:
            _expect_size(cls, buf, size)
        return _BUILD[cls](*unpack(buf, MP_HEADER_LEN), xid, flags)

    return classmethod(decode_body)


def _array_body(record: type, layout: struct.Struct) -> classmethod:
    """decode_body of a reply whose body is a list of fixed-size records,
    each record(*values of layout)."""
    size, unpack = layout.size, layout.unpack_from

    def decode_body(cls: type, buf: bytes, xid: int, flags: int) -> Message:
        end = len(buf)
        if (end - MP_HEADER_LEN) % size:
            raise _bad_len(cls, f"body of {end - MP_HEADER_LEN} bytes is not a multiple of {size}", MP_HEADER_LEN)
        body, o = [], MP_HEADER_LEN
        while o < end:                      # a few records, most often: quicker than iter_unpack
            body.append(record(*unpack(buf, o)))    # calling the class: quickest with a tuple
            o += size
        return _BUILD[cls](body, xid, flags)

    return classmethod(decode_body)


@dataclass(slots=True)
class _EmptyRequest(MultipartRequest):
    """A request whose body is empty."""

    @_whole_message
    def pack(self) -> bytes:
        try:
            return _MP_MSG.pack(OFP_VERSION, self.msg_type, 16, self.xid, self.mp_type, self.flags)
        except Exception:
            return Message.pack(self)     # the general way: its bytes, or its error

    def pack_body(self) -> bytes:
        return _MP.pack(self.mp_type, self.flags)

    decode_body = _fixed_body(struct.Struct("!"))   # no body at all


_ID_BODY = struct.Struct("!I4x")      # port_no / group_id / meter_id + pad


def _counters(make: Callable, buf: bytes, start: int, stop: int) -> list:
    """make(packet_count, byte_count) for each 16-byte counter pair in buf[start:stop]."""
    return list(starmap(make, _COUNTER_PAIR.iter_unpack(buf[start:stop])))


# --- description (OFPMP_DESC) -------------------------------------------------

_DESC = struct.Struct(f"!{DESC_STR_LEN}s{DESC_STR_LEN}s{DESC_STR_LEN}s{SERIAL_NUM_LEN}s{DESC_STR_LEN}s")


@multipart_request(OFPMP.DESC)
@dataclass(slots=True)
class DescRequest(_EmptyRequest):
    pass


@multipart_reply(OFPMP.DESC)
@dataclass(slots=True)
class DescReply(MultipartReply):
    mfr_desc: str = ""
    hw_desc: str = ""
    sw_desc: str = ""
    serial_num: str = ""
    dp_desc: str = ""

    def pack_body(self) -> bytes:
        return _MP.pack(self.mp_type, self.flags) + _DESC.pack(
            pack_string(self.mfr_desc, DESC_STR_LEN), pack_string(self.hw_desc, DESC_STR_LEN),
            pack_string(self.sw_desc, DESC_STR_LEN), pack_string(self.serial_num, SERIAL_NUM_LEN),
            pack_string(self.dp_desc, DESC_STR_LEN))

    @classmethod
    def decode_body(cls, buf: bytes, xid: int, flags: int) -> "DescReply":
        if len(buf) != MP_HEADER_LEN + _DESC.size:
            _expect_size(cls, buf, MP_HEADER_LEN + _DESC.size)
        mfr, hw, sw, serial, dp = _DESC.unpack_from(buf, MP_HEADER_LEN)
        return _BUILD[cls](fixed_string(mfr), fixed_string(hw), fixed_string(sw), fixed_string(serial),
                           fixed_string(dp), xid, flags)


# --- individual flow statistics (OFPMP_FLOW) ----------------------------------

# table_id, pad, out_port, out_group, pad, cookie, cookie_mask; then a match
_FLOW_FILTER = struct.Struct("!B3xII4xQQ")
_FLOW_FILTER_MSG = struct.Struct("!BBHIHH4xB3xII4xQQ")


@dataclass(slots=True)
class _FlowFilterRequest(MultipartRequest):
    table_id: int = OFPTT.ALL
    out_port: int = OFPP.ANY
    out_group: int = OFPG.ANY
    cookie: int = 0
    cookie_mask: int = 0
    match: Match = field(default_factory=Match)

    @_whole_message
    def pack(self) -> bytes:
        try:
            match = self.match.pack()
            length = 48 + len(match)
            return _FLOW_FILTER_MSG.pack(OFP_VERSION, self.msg_type, length, self.xid, self.mp_type, self.flags,
                                         self.table_id, self.out_port, self.out_group, self.cookie,
                                         self.cookie_mask) + match
        except Exception:
            return Message.pack(self)     # the general way: its bytes, or its error

    def pack_body(self) -> bytes:
        return (_MP.pack(self.mp_type, self.flags)
                + _FLOW_FILTER.pack(self.table_id, self.out_port, self.out_group, self.cookie, self.cookie_mask)
                + self.match.pack())

    @classmethod
    def decode_body(cls, buf: bytes, xid: int, flags: int) -> "_FlowFilterRequest":
        if len(buf) < MP_HEADER_LEN + _FLOW_FILTER.size:
            raise _bad_len(cls, f"length {len(buf)}, shorter than {MP_HEADER_LEN + _FLOW_FILTER.size}", 2)
        table_id, out_port, out_group, cookie, cookie_mask = _FLOW_FILTER.unpack_from(buf, MP_HEADER_LEN)
        at = MP_HEADER_LEN + _FLOW_FILTER.size
        match, o = unpack_match(buf, at, len(buf))
        if o != len(buf):
            raise _bad_len(cls, f"match (with its padding) ends at byte {o}, the message at {len(buf)}", at)
        return _BUILD[cls](table_id, out_port, out_group, cookie, cookie_mask, match, xid, flags)


@multipart_request(OFPMP.FLOW)
@dataclass(slots=True)
class FlowStatsRequest(_FlowFilterRequest):
    pass


# length, table_id, pad, duration_sec, duration_nsec, priority, idle_timeout,
# hard_timeout, flags, pad, cookie, packet_count, byte_count; then match, instructions
# (48 bytes; an entry is at least 56, with the smallest match). The hot loops
# below use these numbers as literals.
_FLOW_STATS = struct.Struct("!HBxIIHHHH4xQQQ")
_FLOW_STATS_SIZE = _FLOW_STATS.size


@dataclass(slots=True)
class FlowStats:
    """One flow entry in a flow stats reply (ofp_flow_stats)."""

    table_id: int = 0
    duration_sec: int = 0
    duration_nsec: int = 0
    priority: int = OFP_DEFAULT_PRIORITY
    idle_timeout: int = 0
    hard_timeout: int = 0
    flags: int = 0
    cookie: int = 0
    packet_count: int = 0
    byte_count: int = 0
    match: Match = field(default_factory=Match)
    instructions: list[Instruction] = field(default_factory=list)

    def pack(self) -> bytes:
        tail = self.match.pack() + pack_instructions(self.instructions)
        return _FLOW_STATS.pack(_FLOW_STATS_SIZE + len(tail), self.table_id, self.duration_sec,
                                self.duration_nsec, self.priority, self.idle_timeout, self.hard_timeout,
                                self.flags, self.cookie, self.packet_count, self.byte_count) + tail


@multipart_reply(OFPMP.FLOW)
@dataclass(slots=True)
class FlowStatsReply(MultipartReply):
    body: list[FlowStats] = field(default_factory=list)

    def pack_body(self) -> bytes:
        # The hot path of flow monitoring: one loop, no per-entry method calls
        # beyond the match and instructions.
        pack = _FLOW_STATS.pack
        parts = [_MP.pack(self.mp_type, self.flags)]
        append = parts.append
        for s in self.body:
            match = s.match.pack()
            ins = b"".join([i.pack() for i in s.instructions])
            append(pack(48 + len(match) + len(ins), s.table_id, s.duration_sec, s.duration_nsec,
                        s.priority, s.idle_timeout, s.hard_timeout, s.flags, s.cookie,
                        s.packet_count, s.byte_count))
            append(match)
            append(ins)
        return b"".join(parts)

    @classmethod
    def decode_body(cls, buf: bytes, xid: int, flags: int) -> "FlowStatsReply":
        end = len(buf)
        body: list[FlowStats] = []
        append = body.append
        unpack = _FLOW_STATS.unpack_from
        new = _MAKE[FlowStats]
        match_at = unpack_match
        instructions_at = unpack_instructions
        o = MP_HEADER_LEN
        while o < end:
            if o + 56 > end:
                raise _bad_len(cls, f"flow stats entry truncated ({end - o} bytes left)", o)
            (length, table_id, duration_sec, duration_nsec, priority, idle_timeout, hard_timeout,
             fflags, cookie, packet_count, byte_count) = unpack(buf, o)
            stop = o + length
            if length < 56 or stop > end:
                raise _bad_len(cls, f"flow stats length {length} invalid ({end - o} bytes left)", o)
            match, p = match_at(buf, o + 48, stop)
            append(new(table_id, duration_sec, duration_nsec, priority, idle_timeout, hard_timeout, fflags,
                       cookie, packet_count, byte_count, match, instructions_at(buf, p, stop)))
            o = stop
        return _BUILD[cls](body, xid, flags)


# --- aggregate flow statistics (OFPMP_AGGREGATE) ------------------------------

@multipart_request(OFPMP.AGGREGATE)
@dataclass(slots=True)
class AggregateStatsRequest(_FlowFilterRequest):
    pass


_AGGREGATE = struct.Struct("!QQI4x")


@multipart_reply(OFPMP.AGGREGATE)
@dataclass(slots=True)
class AggregateStatsReply(MultipartReply):
    packet_count: int = 0
    byte_count: int = 0
    flow_count: int = 0

    def pack_body(self) -> bytes:
        return _MP.pack(self.mp_type, self.flags) + _AGGREGATE.pack(self.packet_count, self.byte_count,
                                                                       self.flow_count)

    decode_body = _fixed_body(_AGGREGATE)


# --- table statistics (OFPMP_TABLE) -------------------------------------------

_TABLE_STATS = struct.Struct("!B3xIQQ")


@dataclass(slots=True)
class TableStats:
    table_id: int
    active_count: int = 0
    lookup_count: int = 0
    matched_count: int = 0

    def pack(self) -> bytes:
        return _TABLE_STATS.pack(self.table_id, self.active_count, self.lookup_count, self.matched_count)

    @classmethod
    def unpack(cls, buf: bytes, o: int) -> "TableStats":
        return cls(*_TABLE_STATS.unpack_from(buf, o))


@multipart_request(OFPMP.TABLE)
@dataclass(slots=True)
class TableStatsRequest(_EmptyRequest):
    pass


@multipart_reply(OFPMP.TABLE)
@dataclass(slots=True)
class TableStatsReply(MultipartReply):
    body: list[TableStats] = field(default_factory=list)

    def pack_body(self) -> bytes:
        return _MP.pack(self.mp_type, self.flags) + b"".join([t.pack() for t in self.body])

    decode_body = _array_body(TableStats, _TABLE_STATS)


# --- port statistics (OFPMP_PORT_STATS) ---------------------------------------

@multipart_request(OFPMP.PORT_STATS)
@dataclass(slots=True)
class PortStatsRequest(MultipartRequest):
    port_no: int = OFPP.ANY

    @_whole_message
    def pack(self) -> bytes:
        try:
            return _ID_MSG.pack(OFP_VERSION, self.msg_type, 24, self.xid, self.mp_type, self.flags, self.port_no)
        except Exception:
            return Message.pack(self)     # the general way: its bytes, or its error

    def pack_body(self) -> bytes:
        return _MP.pack(self.mp_type, self.flags) + _ID_BODY.pack(self.port_no)

    decode_body = _fixed_body(_ID_BODY)


_PORT_STATS = struct.Struct("!I4x12QII")


@dataclass(slots=True)
class PortStats:
    port_no: int
    rx_packets: int = 0
    tx_packets: int = 0
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_dropped: int = 0
    tx_dropped: int = 0
    rx_errors: int = 0
    tx_errors: int = 0
    rx_frame_err: int = 0
    rx_over_err: int = 0
    rx_crc_err: int = 0
    collisions: int = 0
    duration_sec: int = 0
    duration_nsec: int = 0

    def pack(self) -> bytes:
        return _PORT_STATS.pack(self.port_no, self.rx_packets, self.tx_packets, self.rx_bytes, self.tx_bytes,
                                self.rx_dropped, self.tx_dropped, self.rx_errors, self.tx_errors,
                                self.rx_frame_err, self.rx_over_err, self.rx_crc_err, self.collisions,
                                self.duration_sec, self.duration_nsec)

    @classmethod
    def unpack(cls, buf: bytes, o: int) -> "PortStats":
        return cls(*_PORT_STATS.unpack_from(buf, o))


@multipart_reply(OFPMP.PORT_STATS)
@dataclass(slots=True)
class PortStatsReply(MultipartReply):
    body: list[PortStats] = field(default_factory=list)

    def pack_body(self) -> bytes:
        return _MP.pack(self.mp_type, self.flags) + b"".join([p.pack() for p in self.body])

    decode_body = _array_body(PortStats, _PORT_STATS)


# --- queue statistics (OFPMP_QUEUE) -------------------------------------------

_QUEUE_REQUEST = struct.Struct("!II")
_QUEUE_REQUEST_MSG = struct.Struct("!BBHIHH4xII")


@multipart_request(OFPMP.QUEUE)
@dataclass(slots=True)
class QueueStatsRequest(MultipartRequest):
    port_no: int = OFPP.ANY
    queue_id: int = OFPQ_ALL

    @_whole_message
    def pack(self) -> bytes:
        try:
            return _QUEUE_REQUEST_MSG.pack(OFP_VERSION, self.msg_type, 24, self.xid, self.mp_type, self.flags,
                                           self.port_no, self.queue_id)
        except Exception:
            return Message.pack(self)     # the general way: its bytes, or its error

    def pack_body(self) -> bytes:
        return _MP.pack(self.mp_type, self.flags) + _QUEUE_REQUEST.pack(self.port_no, self.queue_id)

    decode_body = _fixed_body(_QUEUE_REQUEST)


_QUEUE_STATS = struct.Struct("!IIQQQII")


@dataclass(slots=True)
class QueueStats:
    port_no: int
    queue_id: int
    tx_bytes: int = 0
    tx_packets: int = 0
    tx_errors: int = 0
    duration_sec: int = 0
    duration_nsec: int = 0

    def pack(self) -> bytes:
        return _QUEUE_STATS.pack(self.port_no, self.queue_id, self.tx_bytes, self.tx_packets, self.tx_errors,
                                 self.duration_sec, self.duration_nsec)

    @classmethod
    def unpack(cls, buf: bytes, o: int) -> "QueueStats":
        return cls(*_QUEUE_STATS.unpack_from(buf, o))


@multipart_reply(OFPMP.QUEUE)
@dataclass(slots=True)
class QueueStatsReply(MultipartReply):
    body: list[QueueStats] = field(default_factory=list)

    def pack_body(self) -> bytes:
        return _MP.pack(self.mp_type, self.flags) + b"".join([q.pack() for q in self.body])

    decode_body = _array_body(QueueStats, _QUEUE_STATS)


# --- group statistics (OFPMP_GROUP) -------------------------------------------

@multipart_request(OFPMP.GROUP)
@dataclass(slots=True)
class GroupStatsRequest(MultipartRequest):
    group_id: int = OFPG.ALL

    @_whole_message
    def pack(self) -> bytes:
        try:
            return _ID_MSG.pack(OFP_VERSION, self.msg_type, 24, self.xid, self.mp_type, self.flags, self.group_id)
        except Exception:
            return Message.pack(self)     # the general way: its bytes, or its error

    def pack_body(self) -> bytes:
        return _MP.pack(self.mp_type, self.flags) + _ID_BODY.pack(self.group_id)

    decode_body = _fixed_body(_ID_BODY)


_COUNTER_PAIR = struct.Struct("!QQ")


@dataclass(slots=True)
class BucketCounter:
    packet_count: int = 0
    byte_count: int = 0


# length, pad, group_id, ref_count, pad, packet_count, byte_count, duration_sec, duration_nsec
_GROUP_STATS = struct.Struct("!H2xII4xQQII")
_unpack_group_stats = _GROUP_STATS.unpack_from
_unpack_group_stats_1 = struct.Struct(_GROUP_STATS.format + "QQ").unpack_from   # ... and one bucket's counters


@dataclass(slots=True)
class GroupStats:
    group_id: int
    ref_count: int = 0
    packet_count: int = 0
    byte_count: int = 0
    duration_sec: int = 0
    duration_nsec: int = 0
    bucket_stats: list[BucketCounter] = field(default_factory=list)

    def pack(self) -> bytes:
        pack = _COUNTER_PAIR.pack
        buckets = b"".join([pack(b.packet_count, b.byte_count) for b in self.bucket_stats])
        return _GROUP_STATS.pack(_GROUP_STATS.size + len(buckets), self.group_id, self.ref_count,
                                 self.packet_count, self.byte_count, self.duration_sec,
                                 self.duration_nsec) + buckets


_new_group_stats = _MAKE[GroupStats]     # looked up once, not per record


@multipart_reply(OFPMP.GROUP)
@dataclass(slots=True)
class GroupStatsReply(MultipartReply):
    body: list[GroupStats] = field(default_factory=list)

    def pack_body(self) -> bytes:
        return _MP.pack(self.mp_type, self.flags) + b"".join([g.pack() for g in self.body])

    @classmethod
    def decode_body(cls, buf: bytes, xid: int, flags: int) -> "GroupStatsReply":
        body, o, end = [], MP_HEADER_LEN, len(buf)
        fixed, new = _GROUP_STATS.size, _new_group_stats
        while o < end:
            if o + fixed + 16 <= end:
                # room for an entry with one bucket, the usual: read as one, the counters last
                (length, group_id, ref_count, packet_count, byte_count, duration_sec,
                 duration_nsec, bucket_packets, bucket_bytes) = _unpack_group_stats_1(buf, o)
            elif o + fixed <= end:
                (length, group_id, ref_count, packet_count, byte_count, duration_sec,
                 duration_nsec) = _unpack_group_stats(buf, o)
            else:
                raise _bad_len(cls, f"group stats entry truncated ({end - o} bytes left)", o)
            if length < fixed or o + length > end or (length - fixed) % 16:
                raise _bad_len(cls, f"group stats length {length} invalid ({end - o} bytes left)", o)
            if length == fixed + 16:
                buckets = [BucketCounter(bucket_packets, bucket_bytes)]
            else:
                buckets = _counters(BucketCounter, buf, o + fixed, o + length)
            body.append(new(group_id, ref_count, packet_count, byte_count, duration_sec, duration_nsec, buckets))
            o += length
        return _BUILD[cls](body, xid, flags)


# --- group descriptions (OFPMP_GROUP_DESC) ------------------------------------

@multipart_request(OFPMP.GROUP_DESC)
@dataclass(slots=True)
class GroupDescRequest(_EmptyRequest):
    pass


_GROUP_DESC = struct.Struct("!HBxI")


@dataclass(slots=True)
class GroupDesc:
    type: int
    group_id: int
    buckets: list[Bucket] = field(default_factory=list)

    def pack(self) -> bytes:
        buckets = pack_buckets(self.buckets)
        return _GROUP_DESC.pack(8 + len(buckets), self.type, self.group_id) + buckets


_new_group_desc = _MAKE[GroupDesc]     # looked up once, not per record


@multipart_reply(OFPMP.GROUP_DESC)
@dataclass(slots=True)
class GroupDescReply(MultipartReply):
    body: list[GroupDesc] = field(default_factory=list)

    def pack_body(self) -> bytes:
        return _MP.pack(self.mp_type, self.flags) + b"".join([g.pack() for g in self.body])

    @classmethod
    def decode_body(cls, buf: bytes, xid: int, flags: int) -> "GroupDescReply":
        body, o, end = [], MP_HEADER_LEN, len(buf)
        while o < end:
            if o + 8 > end:
                raise _bad_len(cls, f"group desc entry truncated ({end - o} bytes left)", o)
            length, gtype, group_id = _GROUP_DESC.unpack_from(buf, o)
            if length < 8 or o + length > end:
                raise _bad_len(cls, f"group desc length {length} invalid ({end - o} bytes left)", o)
            body.append(_new_group_desc(gtype, group_id, unpack_buckets(buf, o + 8, o + length)))
            o += length
        return _BUILD[cls](body, xid, flags)


# --- group features (OFPMP_GROUP_FEATURES) ------------------------------------

@multipart_request(OFPMP.GROUP_FEATURES)
@dataclass(slots=True)
class GroupFeaturesRequest(_EmptyRequest):
    pass


_GROUP_FEATURES = struct.Struct("!II4I4I")


@multipart_reply(OFPMP.GROUP_FEATURES)
@dataclass(slots=True)
class GroupFeaturesReply(MultipartReply):
    """types / capabilities are bitmaps (1 << OFPGT, OFPGFC); max_groups and
    actions have one entry per group type (all, select, indirect, ff)."""

    types: int = 0
    capabilities: int = 0
    max_groups: tuple[int, int, int, int] = (0, 0, 0, 0)
    actions: tuple[int, int, int, int] = (0, 0, 0, 0)

    def pack_body(self) -> bytes:
        return _MP.pack(self.mp_type, self.flags) + _GROUP_FEATURES.pack(
            self.types, self.capabilities, *self.max_groups, *self.actions)

    @classmethod
    def decode_body(cls, buf: bytes, xid: int, flags: int) -> "GroupFeaturesReply":
        _expect_size(cls, buf, MP_HEADER_LEN + _GROUP_FEATURES.size)
        v = _GROUP_FEATURES.unpack_from(buf, MP_HEADER_LEN)
        return _BUILD[cls](v[0], v[1], v[2:6], v[6:10], xid, flags)


# --- meter statistics (OFPMP_METER) -------------------------------------------

@dataclass(slots=True)
class _MeterIdRequest(MultipartRequest):
    meter_id: int = OFPM.ALL

    @_whole_message
    def pack(self) -> bytes:
        try:
            return _ID_MSG.pack(OFP_VERSION, self.msg_type, 24, self.xid, self.mp_type, self.flags, self.meter_id)
        except Exception:
            return Message.pack(self)     # the general way: its bytes, or its error

    def pack_body(self) -> bytes:
        return _MP.pack(self.mp_type, self.flags) + _ID_BODY.pack(self.meter_id)

    decode_body = _fixed_body(_ID_BODY)


@multipart_request(OFPMP.METER)
@dataclass(slots=True)
class MeterStatsRequest(_MeterIdRequest):
    pass


@dataclass(slots=True)
class MeterBandStats:
    packet_band_count: int = 0
    byte_band_count: int = 0


# meter_id, len, pad, flow_count, packet_in_count, byte_in_count, duration_sec, duration_nsec
_METER_STATS = struct.Struct("!IH6xIQQII")
_unpack_meter_stats = _METER_STATS.unpack_from
_unpack_meter_stats_1 = struct.Struct(_METER_STATS.format + "QQ").unpack_from   # ... and one band's counters


@dataclass(slots=True)
class MeterStats:
    meter_id: int
    flow_count: int = 0
    packet_in_count: int = 0
    byte_in_count: int = 0
    duration_sec: int = 0
    duration_nsec: int = 0
    band_stats: list[MeterBandStats] = field(default_factory=list)

    def pack(self) -> bytes:
        pack = _COUNTER_PAIR.pack
        bands = b"".join([pack(b.packet_band_count, b.byte_band_count) for b in self.band_stats])
        return _METER_STATS.pack(self.meter_id, _METER_STATS.size + len(bands), self.flow_count,
                                 self.packet_in_count, self.byte_in_count, self.duration_sec,
                                 self.duration_nsec) + bands


_new_meter_stats = _MAKE[MeterStats]     # looked up once, not per record


@multipart_reply(OFPMP.METER)
@dataclass(slots=True)
class MeterStatsReply(MultipartReply):
    body: list[MeterStats] = field(default_factory=list)

    def pack_body(self) -> bytes:
        return _MP.pack(self.mp_type, self.flags) + b"".join([m.pack() for m in self.body])

    @classmethod
    def decode_body(cls, buf: bytes, xid: int, flags: int) -> "MeterStatsReply":
        body, o, end = [], MP_HEADER_LEN, len(buf)
        fixed, new = _METER_STATS.size, _new_meter_stats
        while o < end:
            if o + fixed + 16 <= end:
                # room for an entry with one band, the usual: read as one, the counters last
                (meter_id, length, flow_count, packet_in_count, byte_in_count, duration_sec,
                 duration_nsec, band_packets, band_bytes) = _unpack_meter_stats_1(buf, o)
            elif o + fixed <= end:
                (meter_id, length, flow_count, packet_in_count, byte_in_count, duration_sec,
                 duration_nsec) = _unpack_meter_stats(buf, o)
            else:
                raise _bad_len(cls, f"meter stats entry truncated ({end - o} bytes left)", o)
            if length < fixed or o + length > end or (length - fixed) % 16:
                raise _bad_len(cls, f"meter stats length {length} invalid ({end - o} bytes left)", o + 4)
            if length == fixed + 16:
                bands = [MeterBandStats(band_packets, band_bytes)]
            else:
                bands = _counters(MeterBandStats, buf, o + fixed, o + length)
            body.append(new(meter_id, flow_count, packet_in_count, byte_in_count, duration_sec, duration_nsec,
                            bands))
            o += length
        return _BUILD[cls](body, xid, flags)


# --- meter configuration (OFPMP_METER_CONFIG) ---------------------------------

@multipart_request(OFPMP.METER_CONFIG)
@dataclass(slots=True)
class MeterConfigRequest(_MeterIdRequest):
    pass


_METER_CONFIG = struct.Struct("!HHI")


@dataclass(slots=True)
class MeterConfig:
    flags: int
    meter_id: int
    bands: list[MeterBand] = field(default_factory=list)

    def pack(self) -> bytes:
        bands = pack_bands(self.bands)
        return _METER_CONFIG.pack(8 + len(bands), self.flags, self.meter_id) + bands


_new_meter_config = _MAKE[MeterConfig]     # looked up once, not per record


@multipart_reply(OFPMP.METER_CONFIG)
@dataclass(slots=True)
class MeterConfigReply(MultipartReply):
    body: list[MeterConfig] = field(default_factory=list)

    def pack_body(self) -> bytes:
        return _MP.pack(self.mp_type, self.flags) + b"".join([m.pack() for m in self.body])

    @classmethod
    def decode_body(cls, buf: bytes, xid: int, flags: int) -> "MeterConfigReply":
        body, o, end = [], MP_HEADER_LEN, len(buf)
        while o < end:
            if o + 8 > end:
                raise _bad_len(cls, f"meter config entry truncated ({end - o} bytes left)", o)
            length, mflags, meter_id = _METER_CONFIG.unpack_from(buf, o)
            if length < 8 or o + length > end:
                raise _bad_len(cls, f"meter config length {length} invalid ({end - o} bytes left)", o)
            body.append(_new_meter_config(mflags, meter_id, unpack_bands(buf, o + 8, o + length)))
            o += length
        return _BUILD[cls](body, xid, flags)


# --- meter features (OFPMP_METER_FEATURES) ------------------------------------

@multipart_request(OFPMP.METER_FEATURES)
@dataclass(slots=True)
class MeterFeaturesRequest(_EmptyRequest):
    pass


_METER_FEATURES = struct.Struct("!IIIBB2x")


@multipart_reply(OFPMP.METER_FEATURES)
@dataclass(slots=True)
class MeterFeaturesReply(MultipartReply):
    """band_types is a bitmap of 1 << OFPMBT; capabilities of OFPMF flags."""

    max_meter: int = 0
    band_types: int = 0
    capabilities: int = 0
    max_bands: int = 0
    max_color: int = 0

    def pack_body(self) -> bytes:
        return _MP.pack(self.mp_type, self.flags) + _METER_FEATURES.pack(
            self.max_meter, self.band_types, self.capabilities, self.max_bands, self.max_color)

    decode_body = _fixed_body(_METER_FEATURES)


# --- table features (OFPMP_TABLE_FEATURES) ------------------------------------

@multipart_request(OFPMP.TABLE_FEATURES)
@dataclass(slots=True)
class TableFeaturesRequest(MultipartRequest):
    """An empty body asks for the features; a non-empty one sets them."""

    body: list[TableFeatures] = field(default_factory=list)

    def pack_body(self) -> bytes:
        return _MP.pack(self.mp_type, self.flags) + pack_table_features(self.body)

    @classmethod
    def decode_body(cls, buf: bytes, xid: int, flags: int) -> "TableFeaturesRequest":
        return _BUILD[cls](unpack_table_features(buf, MP_HEADER_LEN, len(buf)), xid, flags)


@multipart_reply(OFPMP.TABLE_FEATURES)
@dataclass(slots=True)
class TableFeaturesReply(MultipartReply):
    body: list[TableFeatures] = field(default_factory=list)

    def pack_body(self) -> bytes:
        return _MP.pack(self.mp_type, self.flags) + pack_table_features(self.body)

    @classmethod
    def decode_body(cls, buf: bytes, xid: int, flags: int) -> "TableFeaturesReply":
        return _BUILD[cls](unpack_table_features(buf, MP_HEADER_LEN, len(buf)), xid, flags)


# --- port descriptions (OFPMP_PORT_DESC) --------------------------------------

@multipart_request(OFPMP.PORT_DESC)
@dataclass(slots=True)
class PortDescRequest(_EmptyRequest):
    pass


@multipart_reply(OFPMP.PORT_DESC)
@dataclass(slots=True)
class PortDescReply(MultipartReply):
    body: list[Port] = field(default_factory=list)

    def pack_body(self) -> bytes:
        return _MP.pack(self.mp_type, self.flags) + b"".join([p.pack() for p in self.body])

    @classmethod
    def decode_body(cls, buf: bytes, xid: int, flags: int) -> "PortDescReply":
        return _BUILD[cls](unpack_ports(buf, MP_HEADER_LEN, len(buf)), xid, flags)


# --- experimenter (OFPMP_EXPERIMENTER) ----------------------------------------

_EXPERIMENTER = struct.Struct("!II")


class _ExperimenterMultipart:
    """Shared code of the experimenter request and reply (body kept opaque)."""

    __slots__ = ()

    def pack_body(self) -> bytes:
        return (_MP.pack(self.mp_type, self.flags) + _EXPERIMENTER.pack(self.experimenter, self.exp_type)
                + self.data)

    @classmethod
    def decode_body(cls, buf: bytes, xid: int, flags: int):
        if len(buf) < MP_HEADER_LEN + 8:
            raise _bad_len(cls, f"length {len(buf)}, shorter than {MP_HEADER_LEN + 8}", 2)
        experimenter, exp_type = _EXPERIMENTER.unpack_from(buf, MP_HEADER_LEN)
        return _BUILD[cls](experimenter, exp_type, buf[MP_HEADER_LEN + 8:], xid, flags)


@multipart_request(OFPMP.EXPERIMENTER)
@dataclass(slots=True)
class ExperimenterMultipartRequest(_ExperimenterMultipart, MultipartRequest):
    experimenter: int = 0
    exp_type: int = 0
    data: bytes = b""


@multipart_reply(OFPMP.EXPERIMENTER)
@dataclass(slots=True)
class ExperimenterMultipartReply(_ExperimenterMultipart, MultipartReply):
    experimenter: int = 0
    exp_type: int = 0
    data: bytes = b""


# --- splitting a long request or reply ----------------------------------------

MAX_MESSAGE_LEN = 0xFFFF


def split_multipart(msg: MultipartRequest | MultipartReply, max_len: int = MAX_MESSAGE_LEN) -> list:
    """Split a multipart message with a list `body` into messages of at most
    `max_len` bytes, as section 7.3.5 asks of a sender: same type and xid,
    OFPMPF_REPLY_MORE (REQ_MORE for a request) set on all but the last.
    A message that fits, or has no list body, comes back alone.
    """
    body = getattr(msg, "body", None)
    if not isinstance(body, list):
        return [msg]
    room = max_len - MP_HEADER_LEN
    chunks: list[list] = [[]]
    used = 0
    for entry in body:
        size = len(entry.pack())
        if size > room:
            raise ValueError(f"a {type(entry).__name__} of {size} bytes cannot fit a message of {max_len}")
        if used + size > room:
            chunks.append([])
            used = 0
        chunks[-1].append(entry)
        used += size
    if len(chunks) == 1:
        return [msg]
    more = msg.flags | int(OFPMPF.REPLY_MORE)
    last = msg.flags & ~int(OFPMPF.REPLY_MORE)
    return [replace(msg, body=chunk, flags=more if i < len(chunks) - 1 else last, xid=msg.xid)
            for i, chunk in enumerate(chunks)]
