"""Meters: token buckets that really limit rates by the (fake) clock."""

from __future__ import annotations

from scapy.layers.inet import IP
from scapy.layers.l2 import Ether

from kumoflow import ofp
from kumoflow.ofp import OFPET, OFPMMFC
from kumoflow.ofp.consts import OFPFF, OFPM, OFPMC, OFPMF, OFPRR

from test_switch_helpers import Rig, error_of, udp

DROP = ofp.MeterBandDrop
REMARK = ofp.MeterBandDscpRemark


def meter(rig, mid, flags, bands, command=OFPMC.ADD):
    return rig.handle(ofp.MeterMod(command, flags, mid, bands))


def metered_flow(rig, mid, **kw):
    rig.flow({"in_port": 1}, instructions=[ofp.Meter(mid), ofp.ApplyActions([ofp.Output(2)])], **kw)


def burst(rig, n, frame=None):
    frame = frame or udp()
    for _ in range(n):
        rig.send(1, frame)
    return len(rig.out(2))


def test_pktps_drop_band_limits_rate():
    rig = Rig()
    meter(rig, 1, OFPMF.PKTPS | OFPMF.BURST, [DROP(rate=10, burst_size=20)])
    metered_flow(rig, 1)
    assert burst(rig, 30) == 20               # the burst, then nothing at the same instant
    rig.clock.advance(1.0)
    assert burst(rig, 30) == 10               # 10 tokens refilled in one second
    rig.clock.advance(0.25)
    assert burst(rig, 30) == 2                # 2.5 tokens: 2 packets
    rig.clock.advance(100)
    assert burst(rig, 30) == 20               # capped at the burst size
    # spread evenly at the rate: all pass
    passed = 0
    for _ in range(30):
        rig.clock.advance(0.1)
        passed += burst(rig, 1)
    assert passed == 30
    [stats] = rig.handle(ofp.MeterStatsRequest(meter_id=1))[0].body
    assert stats.packet_in_count == 150 and stats.flow_count == 1
    assert stats.band_stats[0].packet_band_count == 150 - 20 - 10 - 2 - 20 - 30


def test_kbps_rate_and_default_burst():
    rig = Rig()
    meter(rig, 1, OFPMF.KBPS, [DROP(rate=80)])           # 80 kbit/s = 10,000 bytes/s; burst one second's worth
    metered_flow(rig, 1)
    frame = udp(payload=b"x" * (1000 - 42))
    assert len(frame) == 1000
    assert burst(rig, 50, frame) == 10                  # 80,000 bits of tokens = 10 frames of 8,000 bits
    rig.clock.advance(0.5)
    assert burst(rig, 50, frame) == 5


def test_highest_exceeded_band_applies_and_dscp_remark():
    rig = Rig()
    # 5 pkt/s: remark AF11 -> AF13 (prec_level 2); beyond 10 pkt/s: drop
    meter(rig, 1, OFPMF.PKTPS | OFPMF.BURST, [REMARK(rate=5, burst_size=5, prec_level=2),
                                             DROP(rate=10, burst_size=10)])
    metered_flow(rig, 1)
    frame = udp(tos=10 << 2)                            # DSCP 10 = AF11
    for _ in range(12):
        rig.send(1, frame)
    frames = rig.out(2)
    assert len(frames) == 10                            # drop band: 10 tokens
    dscps = [Ether(f)[IP].tos >> 2 for f in frames]
    assert dscps == [10] * 5 + [14] * 5                 # first 5 untouched, then AF13
    assert all(Ether(f)[IP].chksum == Ether(udp(tos=d << 2))[IP].chksum for f, d in zip(frames, dscps))
    [stats] = rig.handle(ofp.MeterStatsRequest())[0].body
    assert [b.packet_band_count for b in stats.band_stats] == [5, 2]


def test_meter_config_features_and_stats_listing():
    rig = Rig()
    meter(rig, 2, OFPMF.KBPS | OFPMF.STATS, [DROP(rate=1000, burst_size=0)])
    meter(rig, 1, OFPMF.PKTPS, [REMARK(rate=7, prec_level=1)])
    cfg = rig.handle(ofp.MeterConfigRequest())[0].body
    assert [(c.meter_id, c.flags) for c in cfg] == [(1, OFPMF.PKTPS), (2, OFPMF.KBPS | OFPMF.STATS)]
    assert cfg[0].bands == [REMARK(rate=7, prec_level=1)]
    assert rig.handle(ofp.MeterConfigRequest(meter_id=2))[0].body[0].meter_id == 2
    assert rig.handle(ofp.MeterConfigRequest(meter_id=3))[0].body == []
    feats = rig.handle(ofp.MeterFeaturesRequest())[0]
    assert feats.band_types == 0b110 and feats.capabilities == 0b1111 and feats.max_meter > 0
    rig.clock.advance(4)
    stats = rig.handle(ofp.MeterStatsRequest(meter_id=OFPM.ALL))[0].body
    assert [s.meter_id for s in stats] == [1, 2] and stats[0].duration_sec == 4


def test_meter_modify_and_delete_removes_flows():
    rig = Rig()
    meter(rig, 1, OFPMF.PKTPS | OFPMF.BURST, [DROP(rate=1, burst_size=1)])
    metered_flow(rig, 1, cookie=5, flags=OFPFF.SEND_FLOW_REM)
    assert burst(rig, 5) == 1
    meter(rig, 1, OFPMF.PKTPS | OFPMF.BURST, [DROP(rate=100, burst_size=100)], OFPMC.MODIFY)
    assert burst(rig, 5) == 5
    meter(rig, 1, 0, [], OFPMC.DELETE)
    assert rig.dp.flows() == []
    [fr] = rig.take_events(ofp.FlowRemoved)
    assert (fr.cookie, fr.reason) == (5, OFPRR.DELETE)
    meter(rig, 1, 0, [], OFPMC.DELETE)             # already gone: no error


def test_meter_errors():
    rig = Rig()
    meter(rig, 1, OFPMF.KBPS, [DROP(rate=10)])
    mm = ofp.MeterMod
    h = rig.handle
    assert error_of(h, mm(OFPMC.ADD, OFPMF.KBPS, 1, [DROP(rate=10)])) == (OFPET.METER_MOD_FAILED,
                                                                         OFPMMFC.METER_EXISTS)
    assert error_of(h, mm(OFPMC.MODIFY, OFPMF.KBPS, 2, [DROP(rate=10)])) == (OFPET.METER_MOD_FAILED,
                                                                            OFPMMFC.UNKNOWN_METER)
    assert error_of(h, mm(OFPMC.ADD, OFPMF.KBPS, 0, [])) == (OFPET.METER_MOD_FAILED, OFPMMFC.INVALID_METER)
    assert error_of(h, mm(OFPMC.ADD, OFPMF.KBPS, OFPM.CONTROLLER, [])) == (OFPET.METER_MOD_FAILED,
                                                                          OFPMMFC.INVALID_METER)
    assert error_of(h, mm(OFPMC.ADD, OFPMF.KBPS | OFPMF.PKTPS, 3, [])) == (OFPET.METER_MOD_FAILED,
                                                                          OFPMMFC.BAD_FLAGS)
    assert error_of(h, mm(OFPMC.ADD, 1 << 7, 3, [])) == (OFPET.METER_MOD_FAILED, OFPMMFC.BAD_FLAGS)
    assert error_of(h, mm(OFPMC.ADD, OFPMF.KBPS, 3, [DROP(rate=0)])) == (OFPET.METER_MOD_FAILED,
                                                                        OFPMMFC.BAD_RATE)
    assert error_of(h, mm(OFPMC.ADD, OFPMF.KBPS, 3, [ofp.MeterBandExperimenter(5, 0, 0x2320)])) == \
        (OFPET.METER_MOD_FAILED, OFPMMFC.BAD_BAND)
    assert error_of(h, mm(OFPMC.ADD, OFPMF.KBPS, 3, [DROP(rate=1)] * 100)) == (OFPET.METER_MOD_FAILED,
                                                                              OFPMMFC.OUT_OF_BANDS)
    assert error_of(h, mm(7, OFPMF.KBPS, 3, [])) == (OFPET.METER_MOD_FAILED, OFPMMFC.BAD_COMMAND)
    assert error_of(h, mm(OFPMC.DELETE, 0, OFPM.SLOWPATH, [])) == (OFPET.METER_MOD_FAILED,
                                                                    OFPMMFC.INVALID_METER)
    assert list(rig.dp.meters.meters) == [1]


def test_meter_limit(monkeypatch):
    from kumoflow.switch import meters as meters_mod
    monkeypatch.setattr(meters_mod, "MAX_METERS", 1)
    rig = Rig()
    meter(rig, 1, OFPMF.KBPS, [DROP(rate=10)])
    assert error_of(rig.handle, ofp.MeterMod(OFPMC.ADD, OFPMF.KBPS, 2, [DROP(rate=10)])) == \
        (OFPET.METER_MOD_FAILED, OFPMMFC.OUT_OF_METERS)
