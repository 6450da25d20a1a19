"""Select groups when a watched port goes down (section 5.6.1): only the
dead bucket's flows move, and they spread over the live buckets by weight;
the flows of the live buckets stay where they were (the integration test at
real rates: tests/integration/test_switch_rates.py)."""

from __future__ import annotations

from collections import Counter

from kumoflow import ofp
from kumoflow.ofp.consts import OFPGC, OFPGT

from test_switch_helpers import Rig, udp

_BASE = udp()


def flow_frame(sport: int) -> bytes:
    return _BASE[:34] + sport.to_bytes(2, "big") + _BASE[36:]


def buckets(weights: tuple[int, ...]) -> list:
    return [ofp.Bucket([ofp.Output(port)], weight=w, watch_port=port) for port, w in zip((2, 3, 4), weights)]


def placement(rig: Rig, n: int) -> dict[int, int]:
    """Source port -> the output port its flow took."""
    out = {}
    for sport in range(n):
        rig.send(1, flow_frame(sport))
        [port] = rig.outputs()
        out[sport] = port
    return out


def test_a_dead_bucket_moves_only_its_own_flows_and_spreads_them_by_weight():
    for weights in ((1, 1, 2), (1, 1, 1), (3, 1, 0), (0, 0, 0)):
        for dead in (2, 3, 4):
            rig = Rig(n_ports=6)
            rig.handle(ofp.GroupMod(OFPGC.ADD, OFPGT.SELECT, 1, buckets(weights)))
            rig.flow({"in_port": 1}, [ofp.Group(1)])
            before = placement(rig, 1500)
            rig.port(dead).set_link(False)
            rig.handle(ofp.GroupMod(OFPGC.MODIFY, OFPGT.SELECT, 1, buckets(weights)))
            after = placement(rig, 1500)
            assert dead not in after.values()
            moved = {s: p for s, p in after.items() if before[s] != p}
            assert all(before[s] == dead for s in moved), (weights, dead)          # the others stay
            assert set(moved) == {s for s, p in before.items() if p == dead}
            # the moved flows go to every live bucket that carries weight, about by weight
            live = {port: (w if any(weights) else 1) for port, w in zip((2, 3, 4), weights) if port != dead}
            live = {p: w for p, w in live.items() if w}
            counts = Counter(moved.values())
            if moved and live:
                total = sum(live.values())
                for port, w in live.items():
                    share = counts[port] / len(moved)
                    assert abs(share - w / total) < 0.12, (weights, dead, counts)
