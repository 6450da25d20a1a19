"""Wildcard rules of many shapes for bench_switch.py, none matching the test traffic.

:func:`rules` makes N distinct table-0 rules drawn from :data:`SHAPES`
(about 40 combinations of fields and prefix lengths, so about 40 distinct
masks: a classifier has that many subtables to look in). Values are chosen
so that no rule matches the benchmark's traffic between 10.77.0.0/16 hosts
(UDP from ports 10000-10063 to port 9, ICMP echo, and iperf3 TCP on port
5201 with ephemeral client ports): IPv4 addresses in 20.0.0.0-99.255.255.255,
L4 ports below 32768 other than 9, 5201 and 10000-10063, locally
administered MACs starting 0a:, VLAN tags (the traffic is untagged), in_port
3 and up, metadata values other than 0, IPv6 and ARP (neither is sent:
IPv6 is off and the hosts have static neighbour entries), ICMP types the
traffic does not use. Priorities are 2 to 40,000, above the two
forwarding rules (priority 1, :data:`FORWARD`), so every packet the
pipeline looks up has to rule out all of them.

Each rule renders as an ``ovs-ofctl add-flows`` line (:func:`ofctl_line`)
and as a kumoflow ``ofp.FlowMod`` (:func:`flow_mod`), the same flows
either way. Actions: a third drop, a third output:1, a third output:2.
"""

from __future__ import annotations

import ipaddress
import random

#: the forwarding rules: what the traffic matches
FORWARD = ["priority=1,in_port=1,actions=output:2", "priority=1,in_port=2,actions=output:1"]

# OXM name -> ovs-ofctl name (where they differ)
_OFCTL = {"ipv4_src": "nw_src", "ipv4_dst": "nw_dst", "icmpv4_type": "icmp_type", "icmpv4_code": "icmp_code"}

IP, IPV6, ARP = 0x0800, 0x86DD, 0x0806


def _ip(r: random.Random) -> str:
    return str(ipaddress.IPv4Address(r.randrange(20 << 24, 100 << 24)))


def _net(r: random.Random, plen: int) -> tuple[str, str]:
    net = ipaddress.IPv4Network(f"{_ip(r)}/{plen}", strict=False)
    return str(net.network_address), str(net.netmask)


def _net6(r: random.Random, plen: int) -> tuple[str, str]:
    net = ipaddress.IPv6Network((r.getrandbits(128) | (0x2001 << 112), plen), strict=False)
    return str(net.network_address), str(net.netmask)


def _port(r: random.Random) -> int:
    while True:
        p = r.randrange(1, 32768)
        if p not in (9, 5201) and not 10000 <= p < 10064:
            return p


def _mac(r: random.Random) -> str:
    return "0a:" + ":".join(f"{r.randrange(256):02x}" for _ in range(5))


def _shapes() -> list:
    S = []
    for plen in (8, 12, 16, 20, 24, 28, 32):
        S.append(lambda r, p=plen: [("eth_type", IP), ("ipv4_dst", _net(r, p))])
    for plen in (8, 16, 24, 32):
        S.append(lambda r, p=plen: [("eth_type", IP), ("ipv4_src", _net(r, p))])
    for a, b in ((16, 16), (24, 24), (32, 32), (8, 24)):
        S.append(lambda r, a=a, b=b: [("eth_type", IP), ("ipv4_src", _net(r, a)), ("ipv4_dst", _net(r, b))])
    for proto, name in ((6, "tcp"), (17, "udp")):
        S.append(lambda r, p=proto, n=name: [("eth_type", IP), ("ip_proto", p), (f"{n}_dst", _port(r))])
        S.append(lambda r, p=proto, n=name: [("eth_type", IP), ("ip_proto", p), (f"{n}_src", _port(r))])
        S.append(lambda r, p=proto, n=name: [("eth_type", IP), ("ipv4_dst", _net(r, 24)), ("ip_proto", p),
                                             (f"{n}_dst", _port(r))])
        S.append(lambda r, p=proto, n=name: [("eth_type", IP), ("ipv4_dst", _net(r, 32)), ("ip_proto", p),
                                             (f"{n}_src", _port(r)), (f"{n}_dst", _port(r))])
    S += [
        lambda r: [("eth_dst", _mac(r))],
        lambda r: [("eth_src", _mac(r))],
        lambda r: [("eth_src", (_mac(r)[:9] + "00:00:00", "ff:ff:ff:00:00:00"))],
        lambda r: [("eth_dst", _mac(r)), ("eth_type", IP)],
        lambda r: [("eth_src", _mac(r)), ("eth_dst", _mac(r))],
        lambda r: [("vlan_vid", 0x1000 | r.randrange(1, 4095))],
        lambda r: [("vlan_vid", 0x1000 | r.randrange(1, 4095)), ("eth_dst", _mac(r))],
        lambda r: [("eth_type", IP), ("ip_dscp", r.randrange(1, 64))],
        lambda r: [("eth_type", IP), ("ip_dscp", r.randrange(1, 64)), ("ipv4_dst", _net(r, 16))],
        lambda r: [("eth_type", IP), ("ip_proto", r.choice((2, 4, 41, 47, 50, 51, 89, 132)))],
        lambda r: [("eth_type", IP), ("ip_proto", 1), ("icmpv4_type", r.choice((4, 5, 9, 10, 12, 13, 14)))],
        lambda r: [("in_port", r.randrange(3, 60000))],
        lambda r: [("in_port", r.randrange(3, 60000)), ("eth_type", IP)],
        lambda r: [("metadata", (r.randrange(1, 1 << 16), 0xFFFF))],
        lambda r: [("eth_type", ARP), ("arp_tpa", _net(r, 24))],
        lambda r: [("eth_type", ARP), ("arp_op", r.choice((3, 4, 8, 9)))],
        lambda r: [("eth_type", IPV6), ("ipv6_dst", _net6(r, 64))],
        lambda r: [("eth_type", IPV6), ("ipv6_src", _net6(r, 48))],
        lambda r: [("eth_type", r.choice((0x88CC, 0x8847, 0x88E5, 0x8906, 0x22F0)))],
    ]
    return S


SHAPES = _shapes()


def rules(n: int, seed: int = 1) -> list[tuple[int, list, int | None]]:
    """N distinct rules: (priority, match [(field, value or (value, mask))], output port or None)."""
    r = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        priority = r.randrange(2, 40001)
        match = r.choice(SHAPES)(r)
        key = (priority, tuple(match))
        if key in seen:
            continue
        seen.add(key)
        out.append((priority, match, r.choice((None, 1, 2))))
    return out


def _mask_text(value, mask) -> str:
    if isinstance(value, int):
        return f"{value:#x}/{mask:#x}"
    try:                                    # an IPv4/IPv6 netmask: prefix length
        return f"{value}/{bin(int(ipaddress.ip_address(mask))).count('1')}"
    except ValueError:                      # an Ethernet mask
        return f"{value}/{mask}"


def ofctl_line(rule) -> str:
    priority, match, port = rule
    fields = []
    for name, value in match:
        text = _mask_text(*value) if isinstance(value, tuple) else (f"{value:#x}" if name in ("eth_type", "vlan_vid")
                                                                   else str(value))
        fields.append(f"{_OFCTL.get(name, name)}={text}")
    action = "drop" if port is None else f"output:{port}"
    return f"priority={priority}," + ",".join(fields) + f",actions={action}"


def flow_mod(rule):
    from kumoflow import ofp

    priority, match, port = rule
    instructions = [] if port is None else [ofp.ApplyActions([ofp.Output(port)])]
    return ofp.FlowMod(priority=priority, match=ofp.Match(match), instructions=instructions)


def write_file(path, n: int, seed: int = 1) -> None:
    with open(path, "w") as f:
        for rule in rules(n, seed):
            f.write(ofctl_line(rule) + "\n")
