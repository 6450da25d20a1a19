"""The meter table (section 5.7): token-bucket rate limiters.

Every band has its own token bucket, filled at the band's rate (kbit/s,
or packets/s with OFPMF_PKTPS) by the datapath's clock, holding at most
the burst size (OFPMF_BURST and a non-zero burst_size; otherwise one
second's worth of the rate), and full when the meter is created. A packet
costs its length in bits (KBPS) or one token (PKTPS); each band whose
bucket holds the cost pays it, the others are exceeded. The band applied
is the exceeded band with the highest rate (section 5.7.1): a drop band
drops the packet, a DSCP-remark band raises the drop precedence of an AF
code point by prec_level.

So a drop band of rate R pkt/s and burst B lets through B packets at once
and then R per second: N packets arriving within t seconds pass
min(N, B + R*t).
"""

from __future__ import annotations

from kumoflow import ofp
from kumoflow.ofp.consts import OFPM, OFPMBT, OFPMC, OFPMF
from kumoflow.ofp.errors import OFPET, OFPMMFC

from .errors import SwitchError
from .port import split_duration

MAX_METERS = 65536
MAX_BANDS = 16
METER_FLAGS = int(OFPMF.KBPS | OFPMF.PKTPS | OFPMF.BURST | OFPMF.STATS)


def _bad(code: int, detail: str) -> SwitchError:
    return SwitchError(OFPET.METER_MOD_FAILED, code, detail)


class Band:
    __slots__ = ("desc", "type", "rate", "capacity", "tokens", "last", "packet_count", "byte_count",
                 "prec_level")

    def __init__(self, desc, flags: int, now: float) -> None:
        self.desc = desc
        self.type = desc.TYPE
        pktps = bool(flags & OFPMF.PKTPS)
        # Tokens: packets for PKTPS, bits for KBPS.
        self.rate = desc.rate if pktps else desc.rate * 1000
        burst = desc.burst_size if flags & OFPMF.BURST and desc.burst_size else desc.rate
        self.capacity = burst if pktps else burst * 1000
        self.tokens = float(self.capacity)
        self.last = now
        self.packet_count = 0
        self.byte_count = 0
        self.prec_level = getattr(desc, "prec_level", 0)


class Meter:
    __slots__ = ("meter_id", "flags", "bands", "pktps", "packet_in_count", "byte_in_count", "created")

    def __init__(self, meter_id: int, flags: int, bands: list, now: float) -> None:
        self.meter_id = meter_id
        self.flags = flags
        self.pktps = bool(flags & OFPMF.PKTPS)
        self.bands = [Band(b, flags, now) for b in bands]
        self.packet_in_count = 0
        self.byte_in_count = 0
        self.created = now

    def apply(self, length: int, now: float) -> Band | None:
        """Meter one packet of `length` bytes; the band applied, or None."""
        self.packet_in_count += 1
        self.byte_in_count += length
        cost = 1 if self.pktps else length * 8
        chosen = None
        for b in self.bands:
            elapsed = now - b.last
            if elapsed > 0:
                b.tokens = min(b.capacity, b.tokens + elapsed * b.rate)
                b.last = now
            if b.tokens >= cost - 1e-6:        # tolerate float error in the refill
                b.tokens -= cost
            elif chosen is None or b.rate > chosen.rate:
                chosen = b
        if chosen is not None:
            chosen.packet_count += 1
            chosen.byte_count += length
        return chosen

    def config(self) -> ofp.MeterConfig:
        return ofp.MeterConfig(self.flags, self.meter_id, [b.desc for b in self.bands])

    def stats(self, flow_count: int, now: float) -> ofp.MeterStats:
        sec, nsec = split_duration(now - self.created)
        return ofp.MeterStats(self.meter_id, flow_count, self.packet_in_count, self.byte_in_count, sec, nsec,
                              [ofp.MeterBandStats(b.packet_count, b.byte_count) for b in self.bands])


class MeterTable:
    def __init__(self, clock) -> None:
        self.clock = clock
        self.meters: dict[int, Meter] = {}

    def get(self, meter_id: int) -> Meter | None:
        return self.meters.get(meter_id)

    def __contains__(self, meter_id: int) -> bool:
        return meter_id in self.meters

    def __len__(self) -> int:
        return len(self.meters)

    def build(self, mm: ofp.MeterMod) -> Meter:
        mid = mm.meter_id
        if not 0 < mid <= OFPM.MAX:
            raise _bad(OFPMMFC.INVALID_METER, f"meter id {mid:#x} is not supported")
        flags = mm.flags
        if flags & ~METER_FLAGS or (flags & OFPMF.KBPS and flags & OFPMF.PKTPS):
            raise _bad(OFPMMFC.BAD_FLAGS, f"meter flags {flags:#x}")
        if len(mm.bands) > MAX_BANDS:
            raise _bad(OFPMMFC.OUT_OF_BANDS, f"{len(mm.bands)} bands, at most {MAX_BANDS}")
        for b in mm.bands:
            if b.TYPE not in (OFPMBT.DROP, OFPMBT.DSCP_REMARK):
                raise _bad(OFPMMFC.BAD_BAND, f"meter band type {b.TYPE:#x} is not supported")
            if b.rate == 0:
                raise _bad(OFPMMFC.BAD_RATE, "meter band rate 0")
        return Meter(mid, flags, list(mm.bands), self.clock())

    def add(self, mm: ofp.MeterMod) -> Meter:
        if mm.meter_id in self.meters:
            raise _bad(OFPMMFC.METER_EXISTS, f"meter {mm.meter_id} exists")
        meter = self.build(mm)
        if len(self.meters) >= MAX_METERS:
            raise _bad(OFPMMFC.OUT_OF_METERS, f"at most {MAX_METERS} meters")
        self.meters[meter.meter_id] = meter
        return meter

    def modify(self, mm: ofp.MeterMod) -> Meter:
        meter = self.build(mm)
        old = self.meters.get(mm.meter_id)
        if old is None:
            raise _bad(OFPMMFC.UNKNOWN_METER, f"meter {mm.meter_id} does not exist")
        meter.packet_in_count, meter.byte_in_count, meter.created = (old.packet_in_count, old.byte_in_count,
                                                                     old.created)
        self.meters[meter.meter_id] = meter
        return meter

    def delete(self, meter_id: int) -> list[int]:
        if meter_id == OFPM.ALL:
            ids = list(self.meters)
            self.meters.clear()
            return ids
        if not 0 < meter_id <= OFPM.MAX:
            raise _bad(OFPMMFC.INVALID_METER, f"meter id {meter_id:#x} is not supported")
        return [meter_id] if self.meters.pop(meter_id, None) is not None else []

    @staticmethod
    def check_command(command: int) -> None:
        if command not in (OFPMC.ADD, OFPMC.MODIFY, OFPMC.DELETE):
            raise _bad(OFPMMFC.BAD_COMMAND, f"meter command {command}")
