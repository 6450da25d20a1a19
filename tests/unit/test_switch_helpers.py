"""Shared helpers for the switch datapath tests (no tests here).

A fake clock, a datapath with in-memory ports, shorthand for flow-mods,
and frames built with scapy.
"""

from __future__ import annotations

import pytest
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from kumoflow import ofp
from kumoflow.switch.datapath import Datapath, SwitchError
from kumoflow.switch.port import MemoryPort

MAC1, MAC2, MAC3 = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"


def E(**kwargs) -> Ether:
    """An Ethernet header with fixed addresses (scapy resolves nothing)."""
    return Ether(src=kwargs.pop("src", MAC1), dst=kwargs.pop("dst", MAC2), **kwargs)


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> float:
        self.t += dt
        return self.t


class Rig:
    """A datapath with ports 1..n (MemoryPort), a fake clock, async events."""

    def __init__(self, n_ports: int = 4, **kwargs) -> None:
        self.clock = Clock()
        self.dp = Datapath(1, clock=self.clock, **kwargs)
        self.events: list[ofp.Message] = []
        self.dp.on_async = self.events.append
        for i in range(1, n_ports + 1):
            self.dp.add_port(MemoryPort(i, f"p{i}", f"02:00:00:00:01:{i:02x}", clock=self.clock))
        self.events.clear()

    def port(self, n: int) -> MemoryPort:
        return self.dp.ports[n]

    def handle(self, msg: ofp.Message) -> list:
        return self.dp.handle(msg)

    def flow(self, match: dict | None = None, actions: list | None = None, *, instructions: list | None = None,
             **kwargs) -> list:
        if instructions is None:
            instructions = [ofp.ApplyActions(actions)] if actions is not None else []
        return self.dp.handle(ofp.FlowMod(match=ofp.Match(match or {}), instructions=instructions, **kwargs))

    def send(self, port: int, frame: bytes) -> None:
        self.dp.receive(port, frame)

    def out(self, port: int) -> list[bytes]:
        return self.port(port).take()

    def outputs(self) -> dict[int, list[bytes]]:
        """Frames sent since the last call, by port (ports with none left out)."""
        result = {}
        for n, p in self.dp.ports.items():
            frames = p.take()
            if frames:
                result[n] = frames
        return result

    def take_events(self, cls=None) -> list:
        out = [e for e in self.events if cls is None or isinstance(e, cls)]
        self.events.clear()
        return out


def error_of(fn, *args, **kwargs) -> tuple[int, int]:
    with pytest.raises(SwitchError) as info:
        fn(*args, **kwargs)
    return info.value.type, info.value.code


def udp(src=MAC1, dst=MAC2, ip_src="10.0.0.1", ip_dst="10.0.0.2", sport=1000, dport=2000, payload=b"x" * 18,
        vlan=None, **ip_kw) -> bytes:
    l2 = Ether(src=src, dst=dst)
    if vlan is not None:
        l2 = l2 / Dot1Q(vlan=vlan)
    return raw(l2 / IP(src=ip_src, dst=ip_dst, **ip_kw) / UDP(sport=sport, dport=dport) / payload)


def tcp(src=MAC1, dst=MAC2, ip_src="10.0.0.1", ip_dst="10.0.0.2", sport=1000, dport=80, payload=b"y" * 10,
        **ip_kw) -> bytes:
    return raw(Ether(src=src, dst=dst) / IP(src=ip_src, dst=ip_dst, **ip_kw) / TCP(sport=sport, dport=dport)
               / payload)


def icmp(src=MAC1, dst=MAC2, ip_src="10.0.0.1", ip_dst="10.0.0.2", **ip_kw) -> bytes:
    return raw(Ether(src=src, dst=dst) / IP(src=ip_src, dst=ip_dst, **ip_kw) / ICMP(type=8, id=1, seq=1)
               / b"ping")


def arp(src=MAC1, psrc="10.0.0.1", pdst="10.0.0.2", op=1) -> bytes:
    return raw(Ether(src=src, dst="ff:ff:ff:ff:ff:ff") / ARP(op=op, hwsrc=src, psrc=psrc, pdst=pdst))


def ip_match(**kw) -> dict:
    m = {"eth_type": 0x0800}
    m.update(kw)
    return m


def udp_match(**kw) -> dict:
    m = {"eth_type": 0x0800, "ip_proto": 17}
    m.update(kw)
    return m
