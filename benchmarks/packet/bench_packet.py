#!/usr/bin/env python3
"""Packet header parse/build throughput: kumoflow.packet next to os-ken and scapy.

    .venv/bin/python benchmarks/packet/bench_packet.py            # full run
    .venv/bin/python benchmarks/packet/bench_packet.py --quick    # a few seconds: a smoke test
    .venv/bin/python benchmarks/packet/bench_packet.py --no-scapy # skip the slow peer

Workloads (the same bytes for every library, in one process):

- eth-only: just the Ethernet addresses and type of a 100-byte frame (the L2
  learning switch's need): ``parse_ethernet`` against os-ken's
  ``ethernet.parser`` and scapy's ``Ether`` (which always decodes everything);
- udp4: whole-stack decode of a 100-byte Ethernet/IPv4/UDP frame;
- tcp-vlan: Ethernet/802.1Q/IPv4/TCP(with options), 200 bytes;
- vxlan: Ethernet/IPv4/UDP/VXLAN/Ethernet/IPv4/TCP;
- ns6: IPv6 neighbor solicitation with a source link-layer option;
- build-udp4: values -> bytes for Ethernet/IPv4/UDP, lengths and checksums
  computed by each library.

Before timing, every workload is checked: the libraries agree on the
decoded field values / produce identical bytes.  Timing
(benchlib.interleaved): perf_counter around N calls (N calibrated so that
a repeat lasts --min-time), gc off during a repeat, libraries interleaved,
best of --repeat; reported as microseconds per operation and as the peer's
time divided by kumoflow's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # benchmarks/: benchlib
import benchlib  # noqa: E402

from os_ken.lib.packet import ethernet as ok_eth  # noqa: E402
from os_ken.lib.packet import packet as ok_packet  # noqa: E402
from os_ken.lib.packet import ipv4 as ok_ipv4  # noqa: E402
from os_ken.lib.packet import udp as ok_udp  # noqa: E402

from kumoflow.packet import (  # noqa: E402
    ICMPv6, IPv4, IPv6, NDNeighborSolicit, NDOptSourceLinkAddr, TCP, UDP, VLAN, VXLAN, Ethernet,
    Packet, parse, parse_ethernet,
)

M1, M2 = "02:00:00:00:00:01", "02:00:00:00:00:02"


def kf_udp4(size: int = 100) -> Packet:
    return (Ethernet(dst=M2, src=M1) / IPv4(src="10.0.0.1", dst="10.0.0.2", id=1)
            / UDP(sport=40001, dport=40002) / bytes(i & 0xFF for i in range(size - 42)))


UDP4 = bytes(kf_udp4())
TCP_VLAN = bytes(Ethernet(dst=M2, src=M1) / VLAN(vid=10) / IPv4(src="10.0.0.1", dst="10.0.0.2")
                 / TCP(sport=40000, dport=443, seq=1, ack=2, flags=0x18,
                       options=bytes.fromhex("0101080a0000000100000002")) / bytes(130))
VXLAN_FRAME = bytes(Ethernet(dst=M2, src=M1) / IPv4(src="172.16.0.1", dst="172.16.0.2")
                    / UDP(sport=49152, dport=4789) / VXLAN(vni=5000)
                    / Ethernet(dst=M1, src=M2) / IPv4(src="10.0.0.1", dst="10.0.0.2")
                    / TCP(sport=1, dport=2, flags=0x10) / bytes(64))
NS6 = bytes(Ethernet(dst="33:33:ff:00:00:02", src=M1)
            / IPv6(src="fe80::1", dst="ff02::1:ff00:2", hop_limit=255)
            / NDNeighborSolicit(target="fe80::2", options=[NDOptSourceLinkAddr(M1)]))


# -- the operations ------------------------------------------------------------------

def kf_eth(data: bytes) -> Any:
    return parse_ethernet(data)[0]


def ok_eth_only(data: bytes) -> Any:
    return ok_eth.ethernet.parser(data)[0]


def ok_parse(data: bytes) -> Any:
    return ok_packet.Packet(data)


def kf_build() -> bytes:
    return bytes(Ethernet(dst=M2, src=M1) / IPv4(src="10.0.0.1", dst="10.0.0.2", id=1)
                 / UDP(sport=40001, dport=40002) / PAYLOAD)


PAYLOAD = UDP4[42:]


def ok_build() -> bytes:
    p = ok_packet.Packet()
    p.add_protocol(ok_eth.ethernet(dst=M2, src=M1, ethertype=0x0800))
    p.add_protocol(ok_ipv4.ipv4(src="10.0.0.1", dst="10.0.0.2", proto=17, identification=1,
                                ttl=64))
    p.add_protocol(ok_udp.udp(src_port=40001, dst_port=40002))
    p.add_protocol(PAYLOAD)
    p.serialize()
    return p.data


def _scapy():
    from scapy.compat import raw
    from scapy.layers.inet import IP, UDP as sUDP
    from scapy.layers.l2 import Ether
    from scapy.layers.inet6 import ICMPv6ND_NS  # noqa: F401  (binds the layers)
    from scapy.layers.vxlan import VXLAN as sVXLAN  # noqa: F401

    def build() -> bytes:
        return raw(Ether(dst=M2, src=M1) / IP(src="10.0.0.1", dst="10.0.0.2", id=1)
                   / sUDP(sport=40001, dport=40002) / PAYLOAD)
    return Ether, build


# -- checks before timing ---------------------------------------------------------------

def check(with_scapy: bool) -> None:
    e = kf_eth(UDP4)
    o = ok_eth_only(UDP4)
    assert (e.dst, e.src, e.type) == (o.dst, o.src, o.ethertype)
    for frame in (UDP4, TCP_VLAN, VXLAN_FRAME, NS6):
        ours, theirs = parse(frame), ok_parse(frame)
        assert ours.pack() == frame
        ip = ours.get(IPv4)
        if ip is not None:
            oip = theirs.get_protocol(ok_ipv4.ipv4)
            assert (ip.src, ip.dst, ip.proto, ip.total_length) == (
                oip.src, oip.dst, oip.proto, oip.total_length)
        assert all(getattr(h, "checksum_ok", True) for h in ours.headers)
    assert isinstance(parse(NS6)[ICMPv6], NDNeighborSolicit)
    assert kf_build() == bytes(ok_build()) == UDP4
    if with_scapy:
        ether, build = _scapy()
        assert build() == UDP4
        assert ether(UDP4).src == M1


# -- main --------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    benchlib.add_output_args(ap, "a few seconds (0.05 s per repeat, 3 repeats): a smoke test, not a figure")
    ap.add_argument("--no-scapy", action="store_true", help="leave scapy out")
    ap.add_argument("--min-time", type=float, default=None, help="seconds per timed repeat (default 0.3)")
    ap.add_argument("--repeat", type=int, default=None, help="repeats, best kept (default 7)")
    args = ap.parse_args(argv)
    min_time = args.min_time or (0.05 if args.quick else 0.3)
    repeat = args.repeat or (3 if args.quick else 7)
    with_scapy = not args.no_scapy
    check(with_scapy)
    ether, scapy_build = _scapy() if with_scapy else (None, None)

    workloads: list[tuple[str, Any, dict[str, Callable]]] = [
        ("eth-only", UDP4, {"kumoflow": kf_eth, "os-ken": ok_eth_only}),
        ("udp4", UDP4, {"kumoflow": parse, "os-ken": ok_parse}),
        ("tcp-vlan", TCP_VLAN, {"kumoflow": parse, "os-ken": ok_parse}),
        ("vxlan", VXLAN_FRAME, {"kumoflow": parse, "os-ken": ok_parse}),
        ("ns6", NS6, {"kumoflow": parse, "os-ken": ok_parse}),
        ("build-udp4", None, {"kumoflow": kf_build, "os-ken": ok_build}),
    ]
    if with_scapy:
        for name, arg, fns in workloads:
            fns["scapy"] = scapy_build if arg is None else ether

    m = benchlib.machine(packages=("os-ken", "scapy") if with_scapy else ("os-ken",),
                         code=("src/kumoflow/packet",))
    print("# Packet headers: kumoflow vs os-ken" + (" and scapy" if with_scapy else "") + "\n")
    print("\n".join(benchlib.machine_lines(m)))
    print(f"- command: `{benchlib.command_line(argv)}`")
    print(f"- timing: best of {repeat} x {min_time} s, gc off while timing; µs per operation, "
          "and the peer's time / kumoflow's\n")
    header = ["workload", "kumoflow µs", "os-ken µs", "os-ken / kumoflow"]
    if with_scapy:
        header += ["scapy µs", "scapy / kumoflow"]
    rows, results = [], []
    for name, arg, fns in workloads:
        t = benchlib.interleaved(fns, min_time, repeat, arg=arg) if arg is not None else \
            benchlib.interleaved(fns, min_time, repeat)
        kf = t["kumoflow"].best
        row = [name, f"{kf * 1e6:.2f}", f"{t['os-ken'].best * 1e6:.2f}", f"{t['os-ken'].best / kf:.1f}x"]
        if with_scapy:
            row += [f"{t['scapy'].best * 1e6:.2f}", f"{t['scapy'].best / kf:.1f}x"]
        rows.append(row)
        results.append({"workload": name, **{f"{lib}_us": v.best * 1e6 for lib, v in t.items()}})
    print(benchlib.md_table(header, rows))
    if args.json:
        benchlib.write_json(args.json, {"machine": m, "command": benchlib.command_line(argv),
                                        "min_time": min_time, "repeat": repeat, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
