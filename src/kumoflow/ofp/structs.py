"""Structures shared by several messages: ports, buckets, meter bands, queues."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar

from .actions import Action, unpack_actions
from .base import _MAKE, TLV_HEADER, UINT32, check_length, pack_string
from .consts import OFPG, OFPMBT, OFPP, OFPQT
from .errors import OFPBRC, OFPET, OFPGMFC, OFPMMFC, CodecError
from .oxm import mac_to_bytes

# --- ofp_port (7.2.1) ---------------------------------------------------------

_PORT = struct.Struct("!I4x6s2x16sIIIIIIII")
PORT_SIZE = _PORT.size  # 64


@dataclass(slots=True)
class Port:
    port_no: int
    hw_addr: str = "00:00:00:00:00:00"
    name: str = ""
    config: int = 0
    state: int = 0
    curr: int = 0
    advertised: int = 0
    supported: int = 0
    peer: int = 0
    curr_speed: int = 0
    max_speed: int = 0

    def pack(self) -> bytes:
        return _PORT.pack(self.port_no, mac_to_bytes(self.hw_addr), pack_string(self.name, 16),
                          self.config, self.state, self.curr, self.advertised, self.supported,
                          self.peer, self.curr_speed, self.max_speed)

    @classmethod
    def unpack(cls, buf: bytes, o: int) -> "Port":
        (port_no, hw_addr, name, config, state, curr, advertised, supported, peer, curr_speed,
         max_speed) = _PORT.unpack_from(buf, o)
        # the name decoded as fixed_string does, without the call
        return _MAKE[cls](port_no, hw_addr.hex(":"), name.split(b"\0", 1)[0].decode("utf-8", "replace"), config,
                          state, curr, advertised, supported, peer, curr_speed, max_speed)


def unpack_ports(buf: bytes, o: int, end: int) -> list[Port]:
    if (end - o) % PORT_SIZE:
        raise CodecError(OFPET.BAD_REQUEST, OFPBRC.BAD_LEN,
                         f"port list of {end - o} bytes is not a multiple of {PORT_SIZE}", o)
    return [Port.unpack(buf, p) for p in range(o, end, PORT_SIZE)]


# --- ofp_bucket (7.3.4.2) -----------------------------------------------------

_BUCKET = struct.Struct("!HHII4x")


@dataclass(slots=True)
class Bucket:
    actions: list[Action] = field(default_factory=list)
    weight: int = 0
    watch_port: int = OFPP.ANY
    watch_group: int = OFPG.ANY

    def pack(self) -> bytes:
        items = self.actions
        if type(items) is list and len(items) <= 16:   # a short list: quicker than a comprehension
            body = b""
            for a in items:
                body += a.pack()
        else:
            body = b"".join([a.pack() for a in items])
        return _BUCKET.pack(16 + len(body), self.weight, self.watch_port, self.watch_group) + body


def pack_buckets(buckets: list[Bucket]) -> bytes:
    return b"".join([b.pack() for b in buckets])


_new_bucket = _MAKE[Bucket]     # looked up once, not per bucket


def unpack_buckets(buf: bytes, o: int, end: int) -> list[Bucket]:
    buckets = []
    make = _new_bucket
    while o < end:
        if o + 16 > end:
            raise CodecError(OFPET.GROUP_MOD_FAILED, OFPGMFC.BAD_BUCKET, "bucket header truncated", o)
        length, weight, watch_port, watch_group = _BUCKET.unpack_from(buf, o)
        if length < 16 or o + length > end:
            check_length(buf, o, length, 16, end, OFPET.GROUP_MOD_FAILED, OFPGMFC.BAD_BUCKET, "bucket")
        buckets.append(make(unpack_actions(buf, o + 16, o + length), weight, watch_port, watch_group))
        o += length
    return buckets


# --- meter bands (7.3.4.5) ----------------------------------------------------

METER_BAND_TYPES: dict[int, type["MeterBand"]] = {}
_BAND = struct.Struct("!HHII")
_BAND_DROP = struct.Struct("!HHII4x")
_BAND_EXPERIMENTER = struct.Struct("!HHIII")
_OFPMBT_DROP = int(OFPMBT.DROP)               # plain ints: enum lookups are slow on the hot path
_OFPMBT_DSCP_REMARK = int(OFPMBT.DSCP_REMARK)
_OFPMBT_EXPERIMENTER = int(OFPMBT.EXPERIMENTER)


@dataclass(slots=True)
class MeterBand:
    TYPE: ClassVar[int]


@dataclass(slots=True)
class MeterBandDrop(MeterBand):
    rate: int
    burst_size: int = 0
    TYPE: ClassVar[int] = OFPMBT.DROP

    def pack(self) -> bytes:
        return _BAND_DROP.pack(_OFPMBT_DROP, 16, self.rate, self.burst_size)

    @classmethod
    def unpack(cls, buf: bytes, o: int, length: int) -> "MeterBandDrop":
        _, _, rate, burst = _BAND.unpack_from(buf, o)
        return _MAKE[cls](rate, burst)


@dataclass(slots=True)
class MeterBandDscpRemark(MeterBand):
    rate: int
    burst_size: int = 0
    prec_level: int = 1
    TYPE: ClassVar[int] = OFPMBT.DSCP_REMARK

    def pack(self) -> bytes:
        return _BAND.pack(_OFPMBT_DSCP_REMARK, 16, self.rate, self.burst_size) + bytes((self.prec_level, 0, 0, 0))

    @classmethod
    def unpack(cls, buf: bytes, o: int, length: int) -> "MeterBandDscpRemark":
        _, _, rate, burst = _BAND.unpack_from(buf, o)
        return _MAKE[cls](rate, burst, buf[o + 12])


@dataclass(slots=True)
class MeterBandExperimenter(MeterBand):
    rate: int
    burst_size: int = 0
    experimenter: int = 0
    data: bytes = b""
    TYPE: ClassVar[int] = OFPMBT.EXPERIMENTER

    def pack(self) -> bytes:
        return (_BAND_EXPERIMENTER.pack(_OFPMBT_EXPERIMENTER, 16 + len(self.data), self.rate, self.burst_size,
                                        self.experimenter) + self.data)

    @classmethod
    def unpack(cls, buf: bytes, o: int, length: int) -> "MeterBandExperimenter":
        _, _, rate, burst = _BAND.unpack_from(buf, o)
        return _MAKE[cls](rate, burst, UINT32.unpack_from(buf, o + 12)[0], buf[o + 16:o + length])


for _cls in (MeterBandDrop, MeterBandDscpRemark, MeterBandExperimenter):
    METER_BAND_TYPES[int(_cls.TYPE)] = _cls     # plain int keys: the decoder looks up plain ints


def pack_bands(bands: list[MeterBand]) -> bytes:
    return b"".join([b.pack() for b in bands])


_new_drop_band = _MAKE[MeterBandDrop]     # looked up once, not per band


def unpack_bands(buf: bytes, o: int, end: int) -> list[MeterBand]:
    bands = []
    unpack, new_drop = _BAND.unpack_from, _new_drop_band
    while o < end:
        if o + 16 > end:        # no room for a band: say what is wrong
            if o + 4 > end:
                raise CodecError(OFPET.METER_MOD_FAILED, OFPMMFC.BAD_BAND, "meter band truncated", o)
            btype, length = TLV_HEADER.unpack_from(buf, o)
            check_length(buf, o, length, 16, end, OFPET.METER_MOD_FAILED, OFPMMFC.BAD_BAND, "meter band")
        btype, length, rate, burst = unpack(buf, o)     # every band starts so
        if length < 16 or o + length > end:
            check_length(buf, o, length, 16, end, OFPET.METER_MOD_FAILED, OFPMMFC.BAD_BAND, "meter band")
        cls = METER_BAND_TYPES.get(btype)
        if cls is None:
            raise CodecError(OFPET.METER_MOD_FAILED, OFPMMFC.BAD_BAND, f"unknown meter band type {btype}", o)
        if cls is not MeterBandExperimenter and length != 16:
            raise CodecError(OFPET.METER_MOD_FAILED, OFPMMFC.BAD_BAND, f"meter band length {length}, expected 16", o)
        if cls is MeterBandDrop:    # MeterBandDrop.unpack inlined: the most frequent band
            bands.append(new_drop(rate, burst))
        else:
            bands.append(cls.unpack(buf, o, length))
        o += length
    return bands


# --- queues (7.3.6) -----------------------------------------------------------

_QUEUE = struct.Struct("!IIH6x")
_QUEUE_PROP = struct.Struct("!HH4x")
_RATE_PROP = struct.Struct("!HH4xH6x")


@dataclass(slots=True)
class QueuePropMinRate:
    rate: int
    TYPE: ClassVar[int] = OFPQT.MIN_RATE

    def pack(self) -> bytes:
        return _RATE_PROP.pack(self.TYPE, 16, self.rate)


@dataclass(slots=True)
class QueuePropMaxRate:
    rate: int
    TYPE: ClassVar[int] = OFPQT.MAX_RATE

    def pack(self) -> bytes:
        return _RATE_PROP.pack(self.TYPE, 16, self.rate)


@dataclass(slots=True)
class QueuePropExperimenter:
    experimenter: int
    data: bytes = b""
    TYPE: ClassVar[int] = OFPQT.EXPERIMENTER

    def pack(self) -> bytes:
        return (_QUEUE_PROP.pack(self.TYPE, 16 + len(self.data)) + UINT32.pack(self.experimenter)
                + bytes(4) + self.data)


QueueProp = QueuePropMinRate | QueuePropMaxRate | QueuePropExperimenter


@dataclass(slots=True)
class PacketQueue:
    queue_id: int
    port: int
    properties: list[QueueProp] = field(default_factory=list)

    def pack(self) -> bytes:
        body = b"".join([p.pack() for p in self.properties])
        return _QUEUE.pack(self.queue_id, self.port, 16 + len(body)) + body


_OFPQT_MIN_RATE = int(OFPQT.MIN_RATE)           # plain ints: enum lookups are slow on the hot path
_OFPQT_MAX_RATE = int(OFPQT.MAX_RATE)
_OFPQT_EXPERIMENTER = int(OFPQT.EXPERIMENTER)


_QUEUE_MAKERS = (_MAKE[PacketQueue], _MAKE[QueuePropMinRate], _MAKE[QueuePropMaxRate],
                 _MAKE[QueuePropExperimenter])     # looked up once, not per queue


def unpack_queues(buf: bytes, o: int, end: int) -> list[PacketQueue]:
    """The ofp_packet_queue list in buf[o:end], each with its properties
    (one loop inside the other: a queue has a few properties, a call each
    would cost more than decoding them)."""
    queues = []
    new_queue, new_min, new_max, new_experimenter = _QUEUE_MAKERS
    unpack_queue, unpack_prop, unpack_rate = _QUEUE.unpack_from, _QUEUE_PROP.unpack_from, _RATE_PROP.unpack_from
    unpack_uint32 = UINT32.unpack_from
    while o < end:
        queue_id, port, length = unpack_queue(buf, o)
        stop = o + length
        if length < 16 or stop > end:
            check_length(buf, o, length, 16, end, OFPET.BAD_REQUEST, OFPBRC.BAD_LEN, "queue")
        props: list[QueueProp] = []
        p = o + 16
        while p < stop:
            if p + 16 > stop:       # no room for a property: check_length says what is wrong
                ptype, plen = unpack_prop(buf, p)
                check_length(buf, p, plen, 16, stop, OFPET.BAD_REQUEST, OFPBRC.BAD_LEN, "queue property")
            ptype, plen, rate = unpack_rate(buf, p)     # type, length and (if it is one) a rate property's rate
            if plen < 16 or p + plen > stop:
                check_length(buf, p, plen, 16, stop, OFPET.BAD_REQUEST, OFPBRC.BAD_LEN, "queue property")
            if ptype == _OFPQT_MIN_RATE:
                props.append(new_min(rate))
            elif ptype == _OFPQT_MAX_RATE:
                props.append(new_max(rate))
            elif ptype == _OFPQT_EXPERIMENTER:
                props.append(new_experimenter(unpack_uint32(buf, p + 8)[0], buf[p + 16:p + plen]))
            else:
                raise CodecError(OFPET.BAD_REQUEST, OFPBRC.BAD_TYPE, f"unknown queue property {ptype}", p)
            p += plen
        queues.append(new_queue(queue_id, port, props))
        o = stop
    return queues
