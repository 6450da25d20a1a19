"""The switch's one way out (switch/egress.py) with tunnel ports: the tunnel
id a frame leaves with, from the pipeline, from the fast path's cached
decisions (one frame, a batch, a megaflow replay) and from the standalone
bridge; frames of different tunnel ids never share a cached decision."""

from __future__ import annotations

from kumoflow import ofp
from kumoflow.ofp.consts import OFPP
from kumoflow.switch import flowkey as fk
from kumoflow.switch.port import PC_NO_FWD, PS_LINK_DOWN, MemoryPort
from kumoflow.switch.standalone import LearningBridge

from test_switch_helpers import MAC1, MAC2, Rig, tcp, udp

TUN = 9


class TunnelMemoryPort(MemoryPort):
    """A tunnel port that keeps (frame, tunnel id) of what it sends."""

    tunnel = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tunneled: list[tuple[bytes, int]] = []

    def send_tunnel(self, frame: bytes, tunnel_id: int) -> None:
        self.tunneled.append((bytes(frame), tunnel_id))
        self.count_tx(len(frame))


def rig_with_tunnel(**kwargs) -> Rig:
    rig = Rig(n_ports=2, **kwargs)
    rig.dp.add_port(TunnelMemoryPort(TUN, "vxlan-0a000002", clock=rig.clock))
    return rig


def out(n: int) -> ofp.Output:
    return ofp.Output(n)


def test_pipeline_sends_the_received_tunnel_id_and_set_field_changes_it() -> None:
    rig = rig_with_tunnel(fastpath=False)
    rig.flow({"in_port": 1}, [out(TUN)])
    rig.flow({"in_port": 2}, [ofp.SetField("tunnel_id", 5001), out(TUN)])
    rig.send(1, udp())
    rig.send(2, udp())
    port = rig.port(TUN)
    assert [t for _, t in port.tunneled] == [0, 5001]
    assert port.counters.tx_packets == 2
    assert port.queue_counters[0].tx_packets == 2


def test_received_tunnel_id_goes_out_again_through_every_cache_path() -> None:
    rig = rig_with_tunnel()
    rig.flow({"in_port": TUN}, [out(2), out(TUN)], priority=1)
    rig.flow({"in_port": 1}, [out(TUN)], priority=1)
    port = rig.port(TUN)
    frames = [udp(sport=1000 + i) for i in range(3)]
    for vni in (7, 8):
        for f in frames * 2:                       # a miss, then exact-match hits
            rig.dp.receive(TUN, f, tunnel_id=vni)
        rig.dp.receive_batch(TUN, frames * 2, vni)  # batched exact-match hits
    # frames from the tunnel port come back out of it only with OFPP_IN_PORT: none here
    assert port.tunneled == []
    assert len(rig.out(2)) == 24
    rig.flow({"in_port": TUN}, [out(OFPP.IN_PORT)], priority=2)
    for vni in (7, 8):
        for f in frames * 2:
            rig.dp.receive(TUN, f, tunnel_id=vni)
        rig.dp.receive_batch(TUN, frames, vni)
    assert [t for _, t in port.tunneled] == [7] * 9 + [8] * 9
    stats = rig.dp.fastpath.stats()
    assert stats["emc_hits"] > 0


def test_frames_of_different_tunnel_ids_do_not_share_a_decision() -> None:
    """A decision recorded for VNI 7 (no table looks at the tunnel id) is not
    taken for VNI 8: the megaflows of a datapath with tunnel ports are keyed
    on the tunnel id, and the exact-match cache is per (port, tunnel id)."""
    rig = rig_with_tunnel()
    rig.flow({"eth_dst": MAC2}, [out(OFPP.IN_PORT)])
    f = tcp(dst=MAC2)
    rig.dp.receive(TUN, f, tunnel_id=7)
    rig.dp.receive(TUN, f, tunnel_id=8)
    fp = rig.dp.fastpath
    assert fp.stats()["misses"] == 2
    assert all(dict(mask).get(fk.TUNNEL_ID) for mask, _, _ in fp.megaflows())
    rig.dp.receive(TUN, f, tunnel_id=7)
    rig.dp.receive(TUN, f, tunnel_id=8)
    assert fp.stats()["emc_hits"] == 2
    assert [t for _, t in rig.port(TUN).tunneled] == [7, 8, 7, 8]


def test_megaflow_replay_carries_the_tunnel_id() -> None:
    """A frame with no fast key (ARP) takes the megaflow replay."""
    from test_switch_helpers import arp

    rig = rig_with_tunnel()
    rig.flow({"in_port": TUN}, [out(OFPP.IN_PORT)])
    for vni in (3, 3, 4, 4):
        rig.dp.receive(TUN, arp(), tunnel_id=vni)
    assert [t for _, t in rig.port(TUN).tunneled] == [3, 3, 4, 4]
    assert rig.dp.fastpath.stats()["megaflow_hits"] == 2


def _tunnel_set_rig(fastpath: bool) -> Rig:
    """Flows that set the tunnel id on the way into a tunnel, as a hypervisor's do:
    port 1 -> VNI 5001 into the tunnel; port 2 -> VNI 6 to the tunnel and its frames
    also to port 1 (an output before the set-field keeps the arrived id); a router's
    hop (MACs set, TTL decremented) into the tunnel with VNI 77; the tunnel back."""
    rig = rig_with_tunnel(fastpath=fastpath)
    rig.flow({"in_port": 1}, [ofp.SetField("tunnel_id", 5001), out(TUN)])
    rig.flow({"in_port": 2}, [out(1), ofp.SetField("tunnel_id", 6), out(TUN)])
    rig.flow({"in_port": 1, "eth_type": 0x0800, "ipv4_dst": ("10.9.0.0", "255.255.0.0")},
             [ofp.SetField("eth_dst", MAC1), ofp.SetField("eth_src", MAC2), ofp.DecNwTtl(),
              ofp.SetField("tunnel_id", 77), out(TUN)], priority=0x9000)
    rig.flow({"in_port": TUN, "tunnel_id": 5001}, [out(2)])
    return rig


def test_set_field_tunnel_id_through_every_fast_path_route_as_the_pipeline_does() -> None:
    """A decision that sets tunnel_id is compiled (set-field tunnel_id changes no
    byte of the frame): one frame, a read batch, a router's hop; the plain pipeline
    (no fast path) is the oracle for what leaves where, with which tunnel id, and
    for every counter."""
    frames = [udp(sport=1000 + i % 3) for i in range(8)] + [tcp(sport=7), udp(ip_dst="10.9.0.5"),
                                                            udp(ip_dst="10.9.0.6", sport=9)]
    results = []
    for fastpath in (False, True):
        rig = _tunnel_set_rig(fastpath)
        for _ in range(2):                          # misses, then exact-match hits
            for f in frames:
                rig.dp.receive(1, f)
                rig.dp.receive(2, f)
            rig.dp.receive_batch(1, frames)
            rig.dp.receive_batch(2, frames * 2)
            rig.dp.receive_batch(TUN, frames, 5001)
        port = rig.port(TUN)
        flows = [(e.packet_count, e.byte_count) for t in rig.dp.tables for e in t]
        results.append((sorted(port.tunneled), port.counters.tx_packets, sorted(rig.out(1)), sorted(rig.out(2)),
                        flows, rig.dp.ports[1].counters.tx_bytes))
        if fastpath:
            stats = rig.dp.fastpath.stats()
            assert stats["emc_hits"] > 0
            compiled = [d for _, _, d in rig.dp.fastpath.megaflows()]
            assert compiled and all(d.fast is not None or d.rewrite is not None for d in compiled)
    assert results[0] == results[1]
    assert {t for _, t in results[0][0]} == {5001, 6, 77}


def test_a_port_that_cannot_forward_counts_tx_dropped() -> None:
    rig = rig_with_tunnel()
    rig.flow({"in_port": 1}, [out(TUN)])
    port = rig.port(TUN)
    port.config |= PC_NO_FWD
    rig.send(1, udp())
    rig.dp.receive_batch(1, [udp(), udp()])
    port.config &= ~PC_NO_FWD
    port.state |= PS_LINK_DOWN
    rig.send(1, udp())
    assert port.tunneled == []
    assert port.counters.tx_dropped == 4


def test_standalone_bridge_keeps_the_tunnel_id() -> None:
    rig = rig_with_tunnel()
    bridge = LearningBridge(rig.dp.ports, clock=rig.clock)
    bridge.receive(TUN, udp(src=MAC1, dst=MAC2), tunnel_id=42)       # unknown: flooded
    assert len(rig.out(1)) == 1 and len(rig.out(2)) == 1
    bridge.receive(1, udp(src=MAC2, dst=MAC1))                        # learned behind the tunnel
    assert [t for _, t in rig.port(TUN).tunneled] == [0]
