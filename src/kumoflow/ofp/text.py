"""Readable text for OpenFlow 1.3 messages, in the syntax of ``ovs-ofctl``.

    format_message(msg)          one message; ``str(msg)`` calls this
    format_match(match)          "tcp,in_port=1,nw_dst=10.0.0.0/24"
    format_actions(actions)      "set_field:00:00:00:00:00:01->eth_dst,output:2"
    format_instructions(instrs)  "meter:1,output:2,goto_table:1"
    format_flow(...)             "priority=100,in_port=1 actions=output:2"
    hexdump(data)                the ``ovs-ofctl`` hex dump layout
    format_tcp_flags(v, mask)    "+fin-syn", "syn|ack": a tcp_flags match
    parse_tcp_flags(text)        the other way: "+fin-syn" -> (0x001, 0x003)

The text follows what ``ovs-ofctl -O OpenFlow13 ofp-print`` prints for the
same bytes (OVS 3.x): message headers "OFPT_FLOW_MOD (OF1.3) (xid=0x5): ...",
OVS field names in matches (dl_src, nw_dst, tp_src, ...), its protocol
shorthands (ip, tcp, arp, icmp6, ...), its field order, its action syntax,
``dump-flows`` lines for flow statistics, ``dump-groups`` / ``dump-meters`` /
``dump-ports-desc`` layouts. Deliberate differences, all where OVS has no
syntax or would hide something the message carries:

- OpenFlow fields OVS does not know print under their OpenFlow names:
  in_phy_port, pbb_isid, ipv6_exthdr; actions copy_ttl_in/out, push_pbb,
  pop_pbb; experimenter actions and instructions, and OXMs of other classes
  (but Open vSwitch's tcp_flags), print as opaque hex.
- A flow mod's out_group, and a flow stats request's cookie/out_group, are
  shown when set (OVS omits them).
- Group and table numbers with reserved meanings print by name (ALL, ANY)
  wherever they appear.
- A table mod's config, and an error's unknown code, are shown.
- Async config lists only the OpenFlow 1.3 reasons (no ROLE_STATUS etc.);
  a HELLO without a version bitmap says so instead of implying one.
- Table and group features name actions and fields as flows do (pop_vlan,
  in_port; OVS: strip_vlan, in_port_oxm), list actions in wire order and
  print bitmaps as names, not hex; no "ditto" for repeated tables.
- The packet line under a packet-in/out omits OVS's trailing checksum word
  and its empty second-VLAN slot, and shows the real dl_type of 802.3
  frames (OVS: 0x05ff).
- Role names are OVS's (primary/secondary for master/slave).
- Instructions print in execution order (meter, apply, clear, write,
  write-metadata, goto), as OVS does, whatever their order on the wire;
  ports in a port-desc reply are sorted by number, as OVS does.

Decoded values stay ints in the codec; names are given here. Nothing here
raises for a well-formed object of an unknown class: anything without a
specific formatter gets "NAME (OF1.3) (xid=..): field=value, ...".
"""

from __future__ import annotations

import dataclasses
import re
import socket
from enum import Enum
from typing import Any, Callable, Iterable

from .consts import (OFP_DEFAULT_PRIORITY, OFP_NO_BUFFER, OFPAT, OFPC, OFPC_FRAG, OFPCR, OFPFC, OFPFF,
                     OFPG, OFPGC, OFPGFC, OFPGT, OFPIT, OFPM, OFPMBT, OFPMC, OFPMF, OFPMP, OFPP, OFPPC,
                     OFPPF, OFPPR, OFPPS, OFPR, OFPRR, OFPT, OFPTFPT, OFPTT, OFPXMC)
from .errors import ERROR_CODES, OFPET

__all__ = [
    "format_message", "message_name", "format_match", "format_actions", "format_action",
    "format_instructions", "format_instruction", "format_flow", "format_flow_stats", "format_field_value",
    "format_port_no", "format_port", "format_bucket", "format_group", "format_band", "format_meter",
    "format_table_features", "format_duration", "packet_flow", "packet_summary", "hexdump", "FIELD_NAMES",
    "format_tcp_flags", "parse_tcp_flags", "TCP_FLAG_NAMES",
]

_VERSIONS = {1: "OF1.0", 2: "OF1.1", 3: "OF1.2", 4: "OF1.3", 5: "OF1.4", 6: "OF1.5"}
_U64 = 0xFFFFFFFFFFFFFFFF


# =============================================================================
# small helpers
# =============================================================================

def hexdump(data: bytes, limit: int | None = None) -> str:
    """Hex dump in ovs-ofctl's layout: offset, 16 bytes, ASCII.

    With `limit`, at most that many bytes are shown and a last line says how
    many were left out.
    """
    data = bytes(data)
    shown = data if limit is None else data[:limit]
    lines = []
    for start in range(0, len(shown), 16):
        chunk = shown[start:start + 16]
        cells = []
        for i in range(16):
            sep = "" if i == 0 else ("-" if i == 8 and i < len(chunk) else " ")
            cells.append(sep + (f"{chunk[i]:02x}" if i < len(chunk) else "  "))
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{start:08x}  {''.join(cells)} |{text:<16}|")
    if len(shown) < len(data):
        lines.append(f"... ({len(data) - len(shown)} more bytes)")
    return "\n".join(lines)


def _flag_names(value: int, names: Iterable[tuple[int, str]], empty: str = "0") -> str:
    """Space-separated names of the bits set in `value`; unnamed bits as hex."""
    out, rest = [], value
    for bit, name in names:
        if value & bit:
            out.append(name)
            rest &= ~bit
    if rest:
        out.append(f"{rest:#x}")
    return " ".join(out) if out else empty


def format_duration(sec: int, nsec: int = 0) -> str:
    """"1.500s", "90000s", "0.000001s" (at least milliseconds once fractional)."""
    text = str(sec)
    if nsec:
        frac = f"{nsec:09d}".rstrip("0")
        text += "." + frac.ljust(3, "0")
    return text + "s"


def _counter(value: int) -> str:
    """A statistics counter; all-ones means 'not available' (ovs-ofctl's ?)."""
    return "?" if value == _U64 else str(value)


_PORT_NAMES = {
    OFPP.IN_PORT: "IN_PORT", OFPP.TABLE: "TABLE", OFPP.NORMAL: "NORMAL", OFPP.FLOOD: "FLOOD",
    OFPP.ALL: "ALL", OFPP.CONTROLLER: "CONTROLLER", OFPP.LOCAL: "LOCAL", OFPP.ANY: "ANY",
}


def format_port_no(port: int) -> str:
    """A port number: reserved ports by name (LOCAL, CONTROLLER, ...), others in decimal."""
    return _PORT_NAMES.get(port, str(port))


def _group_no(group_id: int) -> str:
    return {OFPG.ALL: "ALL", OFPG.ANY: "ANY"}.get(group_id, str(group_id))


def _table_no(table_id: int) -> str:
    return "ALL" if table_id == OFPTT.ALL else str(table_id)


def _meter_no(meter_id: int) -> str:
    return {OFPM.ALL: "all", OFPM.CONTROLLER: "controller", OFPM.SLOWPATH: "slowpath"}.get(meter_id, str(meter_id))


def _attr(obj: Any, *names: str, default: Any = None) -> Any:
    """The first of `names` that `obj` has (the multipart classes' field names may vary)."""
    for name in names:
        if hasattr(obj, name):
            return getattr(obj, name)
    return default


# =============================================================================
# OXM fields: names and values
# =============================================================================

# OXM field -> name in an ovs-ofctl *match* (ovs-fields(7) / ovs-ofctl(8)).
_MATCH_NAMES = {
    "in_port": "in_port", "in_phy_port": "in_phy_port", "metadata": "metadata",
    "eth_dst": "dl_dst", "eth_src": "dl_src", "eth_type": "dl_type",
    "ip_dscp": "nw_tos", "ip_ecn": "nw_ecn", "ip_proto": "nw_proto",
    "ipv4_src": "nw_src", "ipv4_dst": "nw_dst",
    "tcp_src": "tp_src", "tcp_dst": "tp_dst", "udp_src": "tp_src", "udp_dst": "tp_dst",
    "sctp_src": "tp_src", "sctp_dst": "tp_dst",
    "icmpv4_type": "icmp_type", "icmpv4_code": "icmp_code",
    "icmpv6_type": "icmp_type", "icmpv6_code": "icmp_code",
    "arp_op": "arp_op", "arp_spa": "arp_spa", "arp_tpa": "arp_tpa", "arp_sha": "arp_sha", "arp_tha": "arp_tha",
    "ipv6_src": "ipv6_src", "ipv6_dst": "ipv6_dst", "ipv6_flabel": "ipv6_label",
    "ipv6_nd_target": "nd_target", "ipv6_nd_sll": "nd_sll", "ipv6_nd_tll": "nd_tll",
    "mpls_label": "mpls_label", "mpls_tc": "mpls_tc", "mpls_bos": "mpls_bos",
    "pbb_isid": "pbb_isid", "tunnel_id": "tun_id", "ipv6_exthdr": "ipv6_exthdr", "tcp_flags": "tcp_flags",
}

# OXM field -> the field's own name in OVS (set_field:...->NAME, table features).
FIELD_NAMES = {
    "in_port": "in_port", "in_phy_port": "in_phy_port", "metadata": "metadata",
    "eth_dst": "eth_dst", "eth_src": "eth_src", "eth_type": "eth_type",
    "vlan_vid": "vlan_vid", "vlan_pcp": "vlan_pcp",
    "ip_dscp": "ip_dscp", "ip_ecn": "nw_ecn", "ip_proto": "nw_proto",
    "ipv4_src": "ip_src", "ipv4_dst": "ip_dst",
    "tcp_src": "tcp_src", "tcp_dst": "tcp_dst", "udp_src": "udp_src", "udp_dst": "udp_dst",
    "sctp_src": "sctp_src", "sctp_dst": "sctp_dst",
    "icmpv4_type": "icmp_type", "icmpv4_code": "icmp_code",
    "icmpv6_type": "icmpv6_type", "icmpv6_code": "icmpv6_code",
    "arp_op": "arp_op", "arp_spa": "arp_spa", "arp_tpa": "arp_tpa", "arp_sha": "arp_sha", "arp_tha": "arp_tha",
    "ipv6_src": "ipv6_src", "ipv6_dst": "ipv6_dst", "ipv6_flabel": "ipv6_label",
    "ipv6_nd_target": "nd_target", "ipv6_nd_sll": "nd_sll", "ipv6_nd_tll": "nd_tll",
    "mpls_label": "mpls_label", "mpls_tc": "mpls_tc", "mpls_bos": "mpls_bos",
    "pbb_isid": "pbb_isid", "tunnel_id": "tun_id", "ipv6_exthdr": "ipv6_exthdr", "tcp_flags": "tcp_flags",
}

# Integer fields OVS shows in hex (the rest are decimal).
_HEX_FIELDS = {"metadata", "tunnel_id", "ipv6_exthdr"}
_PORT_FIELDS = {"in_port", "in_phy_port"}

_MAC, _IPV4, _IPV6 = "mac", "ipv4", "ipv6"


def _field_specs() -> dict[str, tuple[str | None, int]]:
    from .oxm import FIELDS

    return {f.name: (f.kind, f.size) for f in FIELDS}


_SPECS = _field_specs()


def _mac_bytes(v: Any) -> bytes:
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    raw = bytes.fromhex(str(v).replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(v)
    return raw


def _addr_bytes(kind: str, v: Any) -> bytes:
    if kind == _MAC:
        return _mac_bytes(v)
    family = socket.AF_INET if kind == _IPV4 else socket.AF_INET6
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    return socket.inet_pton(family, str(v))


def _addr_str(kind: str, raw: bytes) -> str:
    if kind == _MAC:
        return raw.hex(":")
    return socket.inet_ntop(socket.AF_INET if kind == _IPV4 else socket.AF_INET6, raw)


def _prefix_len(mask: int, bits: int) -> int | None:
    n = bin(mask).count("1")
    return n if mask == ((1 << n) - 1) << (bits - n) else None


def _split(value: Any) -> tuple[Any, Any]:
    if type(value) is tuple and len(value) == 2:
        return value
    return value, None


def _addr_masked(kind: str, value: Any, mask: Any) -> str | None:
    """Address with optional mask: exact, CIDR (IPv4/IPv6), or value/mask; None if wildcarded."""
    try:
        raw = _addr_bytes(kind, value)
    except (ValueError, OSError, TypeError):
        return f"{value}" if mask is None else f"{value}/{mask}"
    if mask is None:
        return _addr_str(kind, raw)
    try:
        mraw = _addr_bytes(kind, mask)
    except (ValueError, OSError, TypeError):
        return f"{_addr_str(kind, raw)}/{mask}"
    bits = len(mraw) * 8
    m = int.from_bytes(mraw, "big")
    if m == 0:
        return None
    if m == (1 << bits) - 1:
        return _addr_str(kind, raw)
    if kind != _MAC:
        n = _prefix_len(m, bits)
        if n is not None:
            return f"{_addr_str(kind, raw)}/{n}"
    return f"{_addr_str(kind, raw)}/{_addr_str(kind, mraw)}"


def _int_masked(value: int, mask: int | None, size: int, hex_always: bool, width: int = 0) -> str | None:
    full = (1 << (8 * size)) - 1
    if mask is not None and mask == 0:
        return None
    if mask is None or mask == full:
        return f"{value:#0{width + 2}x}" if hex_always else str(value)
    return f"{value:#0{width + 2}x}/{mask:#0{width + 2}x}"


# The TCP flag bits, lowest first, as ovs-fields(7) names them (the reserved
# bits 9-11 by their value in brackets).
TCP_FLAG_NAMES = ("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr", "ns", "[200]", "[400]", "[800]")
_TCP_FLAG_BITS = {name: 1 << i for i, name in enumerate(TCP_FLAG_NAMES)}
_TCP_FLAGS_ALL = 0x0FFF          # the 12 bits the field has (the wire's 16 bits less 4 that must be 0)


def format_tcp_flags(value: int, mask: int | None = None) -> str | None:
    """A tcp_flags match as ovs-ofctl prints it: exact, the flags set joined
    by "|" ("syn|ack"; "0" for none); masked, each bit of the mask as +name
    (set) or -name (clear), lowest first ("+fin-syn"). A mask of all 12 bits
    is exact (bits above them are ignored, as OVS ignores them); a mask of
    none gives None (no match on the field). What OVS would refuse (a value
    above 12 bits or outside its mask) prints as numbers, "0x5/0x3", so that
    nothing is hidden."""
    m = _TCP_FLAGS_ALL if mask is None else mask & _TCP_FLAGS_ALL
    if value > _TCP_FLAGS_ALL or value & ~m:
        return f"{value:#x}" if mask is None else f"{value:#x}/{mask:#x}"
    if not m:
        return None
    if m == _TCP_FLAGS_ALL:
        return "|".join([n for i, n in enumerate(TCP_FLAG_NAMES) if value >> i & 1]) or "0"
    return "".join([("+" if value >> i & 1 else "-") + n for i, n in enumerate(TCP_FLAG_NAMES) if m >> i & 1])


_C_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")     # C's strtoul with base 0


def _flags_number(text: str) -> int:
    """A number as ovs-ofctl reads it: as C does with base 0 (0x hex, 0
    octal: "010" is 8) when the whole text is one, else in decimal ("08")."""
    if _C_NUMBER.fullmatch(text):
        base = 16 if text[1:2] in ("x", "X") else 8 if text[:1] == "0" else 10
    elif re.fullmatch(r"[0-9]+", text):
        base = 10
    else:
        raise ValueError
    n = int(text, base)
    if n > _TCP_FLAGS_ALL:
        raise ValueError
    return n


def parse_tcp_flags(text: str) -> int | tuple[int, int]:
    """A tcp_flags value in ovs-ofctl's syntax, as an ofp.Match value:
    "+fin-syn" -> (0x001, 0x003) (flags that must be set or clear, each once),
    "syn|ack" -> 0x012 and "0" -> 0 (exact), "0x001/0x001" -> (1, 1) and
    "18" -> 18 (numbers in decimal, 0x hex or 0 octal, 12 bits at most; a
    value's bits outside its mask are dropped, as ovs-ofctl drops them).
    Flag names are TCP_FLAG_NAMES, lower case. Raises ValueError for what
    ovs-ofctl refuses."""
    try:
        if text[:1] in ("+", "-"):
            value = mask = 0
            for sign, name in re.findall(r"([+-])([^+-]*)", text):
                bit = _TCP_FLAG_BITS.get(name)
                if bit is None or mask & bit:
                    raise ValueError
                mask |= bit
                if sign == "+":
                    value |= bit
            return value, mask
        if "/" in text:
            v, m = text.split("/", 1)
            mask = _flags_number(m)
            return _flags_number(v) & mask, mask
        if text[:1].isdigit():
            return _flags_number(text)
        value = 0
        for name in text.split("|"):
            bit = _TCP_FLAG_BITS.get(name)
            if bit is None or value & bit:
                raise ValueError
            value |= bit
        return value
    except ValueError:
        raise ValueError(f"tcp_flags: {text!r} is not a TCP flags match (e.g. +fin-syn, syn|ack, 0x001/0x001)") \
            from None


def format_field_value(name: str, value: Any) -> str:
    """A field's value as set_field and table features show it (OVS field formats)."""
    v, m = _split(value)
    kind, size = _SPECS.get(name, (None, 0))
    if kind is not None:
        text = _addr_masked(kind, v, m)
        return text if text is not None else f"{v}/{m}"
    if not isinstance(v, int):
        return repr(v) if m is None else f"{v!r}/{m!r}"
    if name in _PORT_FIELDS and m is None:
        return format_port_no(v)
    if name == "ipv6_flabel" or name in _HEX_FIELDS:
        return f"{v:#x}" if m is None else f"{v:#x}/{m:#x}"
    return str(v) if m is None else f"{v:#x}/{m:#x}"


# A few Nicira (NXM_1) fields that OVS-built flows commonly carry, by field number.
_NXM1_NAMES = {**{i: f"reg{i}" for i in range(16)}, 31: "tun_src", 32: "tun_dst", 33: "pkt_mark"}
_NXM1_IPV4 = {31, 32}


def _oxm_opaque(key: tuple, raw: Any) -> str:
    """An OXM of a class other than OpenFlow-basic, kept opaque by the codec.

    A few common Nicira fields get their OVS names (reg0.., tun_src, tun_dst,
    pkt_mark); anything else prints as oxm(class=..,field=..)=0xVALUE[/0xMASK].
    """
    raw = bytes(raw) if isinstance(raw, (bytes, bytearray)) else b""
    if len(key) == 2 and key[0] == OFPXMC.NXM_1 and key[1] in _NXM1_NAMES and len(raw) >= 8:
        hasmask, payload = raw[2] & 1, raw[4:]
        value, mask = (payload[:len(payload) // 2], payload[len(payload) // 2:]) if hasmask else (payload, None)
        if key[1] in _NXM1_IPV4 and len(value) == 4:
            text = _addr_masked(_IPV4, value, mask)
        else:
            text = f"0x{int.from_bytes(value, 'big'):x}" + (f"/0x{int.from_bytes(mask, 'big'):x}" if mask else "")
        if text is not None:
            return f"{_NXM1_NAMES[key[1]]}={text}"
    if key and key[0] == OFPXMC.EXPERIMENTER and len(key) >= 3:
        label = f"oxm(experimenter={key[2]:#x},field={key[1]})"
        payload = raw[8:]
    else:
        label = f"oxm(class={key[0]:#06x},field={key[1]})" if len(key) >= 2 else f"oxm{key!r}"
        payload = raw[4:]
    hasmask = len(raw) >= 4 and raw[2] & 1
    if hasmask and payload and len(payload) % 2 == 0:
        half = len(payload) // 2
        return f"{label}=0x{payload[:half].hex()}/0x{payload[half:].hex()}"
    return f"{label}=0x{payload.hex()}" if payload else label


# =============================================================================
# matches
# =============================================================================

_SHORTHAND_IP = {1: "icmp", 6: "tcp", 17: "udp", 132: "sctp"}
_SHORTHAND_IPV6 = {58: "icmp6", 6: "tcp6", 17: "udp6", 132: "sctp6"}
_SHORTHAND_ETH = {0x0806: "arp", 0x8035: "rarp", 0x8847: "mpls", 0x8848: "mplsm"}

# The order ovs-ofctl prints fields in (lib/match.c's match_format), with the
# OpenFlow fields OVS lacks placed next to their neighbours.
_ORDER = [
    *[(OFPXMC.NXM_1, i) for i in range(16)], "tunnel_id", (OFPXMC.NXM_1, 31), (OFPXMC.NXM_1, 32), "metadata",
    "in_port", "in_phy_port", "<vlan>", "eth_src", "eth_dst", "eth_type",
    "ipv6_src", "ipv6_dst", "ipv6_flabel", "ipv6_exthdr", "arp_spa", "arp_tpa", "ipv4_src", "ipv4_dst",
    "ip_proto", "arp_op", "arp_sha", "arp_tha", "ip_dscp", "ip_ecn", "mpls_label", "mpls_tc", "mpls_bos",
    "pbb_isid", "icmpv4_type", "icmpv4_code", "icmpv6_type", "icmpv6_code", "ipv6_nd_target",
    "ipv6_nd_sll", "ipv6_nd_tll", "tcp_src", "tcp_dst", "udp_src", "udp_dst", "sctp_src", "sctp_dst",
    "tcp_flags",
]


def _vlan_text(match: dict) -> str | None:
    """vlan_vid/vlan_pcp as OVS shows the 802.1Q TCI: dl_vlan=, dl_vlan_pcp= or vlan_tci=."""
    value = mask = 0
    if "vlan_vid" in match:
        vid, vmask = _split(match["vlan_vid"])
        vmask = 0x1FFF if vmask is None else vmask & 0x1FFF
        value |= vid & vmask & 0x1FFF
        mask |= vmask
    if "vlan_pcp" in match:
        pcp = match["vlan_pcp"]
        pcp = _split(pcp)[0]
        value |= ((pcp & 7) << 13) | 0x1000
        mask |= 0xF000
    if not mask:
        return None
    vid_mask, pcp_mask, cfi = mask & 0x0FFF, mask & 0xE000, mask & 0x1000
    if (cfi and value & 0x1000 and vid_mask in (0, 0x0FFF) and pcp_mask in (0, 0xE000)
            and (vid_mask or pcp_mask)):
        parts = []
        if vid_mask:
            parts.append(f"dl_vlan={value & 0x0FFF}")
        if pcp_mask:
            parts.append(f"dl_vlan_pcp={value >> 13}")
        return ",".join(parts)
    if mask == 0xFFFF:
        return f"vlan_tci={value:#06x}"
    return f"vlan_tci={value:#06x}/{mask:#06x}"


def _match_field(name: str, value: Any) -> str | None:
    """'ovs_name=value' for one OXM field in a match, or None when fully wildcarded."""
    v, m = _split(value)
    kind, size = _SPECS.get(name, (None, 0))
    if kind is not None:
        text = _addr_masked(kind, v, m)
    elif not isinstance(v, int):
        text = repr(v) if m is None else f"{v!r}/{m!r}"
    elif name == "tcp_flags":
        text = format_tcp_flags(v, m)
    elif name in _PORT_FIELDS:
        text = format_port_no(v) if m is None else f"{v:#x}/{m:#x}"
    elif name == "ip_dscp":
        text = str((v & 0x3F) << 2)
    elif name == "eth_type":
        text = f"{v:#06x}"
    elif name == "ipv6_flabel":
        text = _int_masked(v, m, 4, True, 5)
        if m is not None and m == 0xFFFFF:   # 20-bit field: all ones is exact
            text = f"{v:#07x}"
    elif name in _HEX_FIELDS:
        text = _int_masked(v, m, size, True)
    else:
        text = _int_masked(v, m, size, False)
    return None if text is None else f"{_MATCH_NAMES.get(name, name)}={text}"


def format_match(match: Any, priority: int | None = None) -> str:
    """A match in ovs-ofctl flow syntax, fields in OVS's order.

    `priority` (if given and not the default 0x8000) leads, as ovs-ofctl
    prints it. An empty match gives "" (or just "priority=N").
    """
    parts: list[str] = []
    if priority is not None and priority != OFP_DEFAULT_PRIORITY:
        parts.append(f"priority={priority}")
    fields = dict(match) if match else {}
    used: set = set()

    eth_type = fields.get("eth_type")
    ip_proto = fields.get("ip_proto")
    if isinstance(eth_type, int) and eth_type in (0x0800, 0x86DD):
        table = _SHORTHAND_IP if eth_type == 0x0800 else _SHORTHAND_IPV6
        used.add("eth_type")
        if isinstance(ip_proto, int) and ip_proto in table:
            parts.append(table[ip_proto])
            used.add("ip_proto")
        else:
            parts.append("ip" if eth_type == 0x0800 else "ipv6")
    elif isinstance(eth_type, int) and eth_type in _SHORTHAND_ETH:
        parts.append(_SHORTHAND_ETH[eth_type])
        used.add("eth_type")

    names_taken: set[str] = set()
    for name in _ORDER:
        if name == "<vlan>":
            text = _vlan_text(fields)
            used.update({"vlan_vid", "vlan_pcp"})
            if text:
                parts.append(text)
            continue
        if name not in fields or name in used:
            continue
        used.add(name)
        if type(name) is tuple:
            parts.append(_oxm_opaque(name, fields[name]))
            continue
        text = _match_field(name, fields[name])
        if text is None:
            continue
        ovs = text.split("=", 1)[0]
        if ovs in names_taken:  # e.g. tcp_src and udp_src together: both would be tp_src
            text = name + text[len(ovs):]
        names_taken.add(ovs)
        parts.append(text)

    for key, value in fields.items():
        if key in used:
            continue
        if type(key) is str:
            text = _match_field(key, value)
            if text is not None:
                parts.append(text)
        else:
            parts.append(_oxm_opaque(key, value))
    return ",".join(parts)


# =============================================================================
# actions and instructions
# =============================================================================

def _experimenter_text(kind: str, experimenter: Any, data: Any) -> str:
    exp = f"{experimenter:#x}" if isinstance(experimenter, int) else str(experimenter)
    data = bytes(data or b"")
    return f"{kind}(id={exp},data=0x{data.hex()})" if data else f"{kind}(id={exp})"


def format_action(action: Any) -> str:
    """One action in ovs-ofctl syntax (output:1, set_field:...->eth_dst, ...)."""
    t = getattr(action, "TYPE", None)
    if t == OFPAT.OUTPUT:
        port = action.port
        if port == OFPP.CONTROLLER:
            return f"CONTROLLER:{action.max_len}"
        if port in _PORT_NAMES and port != OFPP.ANY:
            return _PORT_NAMES[port]
        return f"output:{format_port_no(port)}"
    simple = {
        OFPAT.COPY_TTL_OUT: "copy_ttl_out", OFPAT.COPY_TTL_IN: "copy_ttl_in",
        OFPAT.DEC_MPLS_TTL: "dec_mpls_ttl", OFPAT.POP_VLAN: "pop_vlan", OFPAT.DEC_NW_TTL: "dec_ttl",
        OFPAT.POP_PBB: "pop_pbb",
    }
    if t in simple:
        return simple[t]
    if t == OFPAT.SET_MPLS_TTL:
        return f"set_mpls_ttl({action.mpls_ttl})"
    if t == OFPAT.PUSH_VLAN:
        return f"push_vlan:{action.ethertype:#06x}"
    if t == OFPAT.PUSH_MPLS:
        return f"push_mpls:{action.ethertype:#06x}"
    if t == OFPAT.POP_MPLS:
        return f"pop_mpls:{action.ethertype:#06x}"
    if t == OFPAT.PUSH_PBB:
        return f"push_pbb:{action.ethertype:#06x}"
    if t == OFPAT.SET_QUEUE:
        return f"set_queue:{action.queue_id}"
    if t == OFPAT.GROUP:
        return f"group:{_group_no(action.group_id)}"
    if t == OFPAT.SET_NW_TTL:
        return f"mod_nw_ttl:{action.nw_ttl}"
    if t == OFPAT.SET_FIELD:
        key = action.field
        if type(key) is not str:
            return "set_field:" + _oxm_opaque(key, action.value)
        return f"set_field:{format_field_value(key, action.value)}->{FIELD_NAMES.get(key, key)}"
    if t == OFPAT.EXPERIMENTER:
        return _experimenter_text("experimenter", getattr(action, "experimenter", None),
                                  getattr(action, "data", b""))
    return _generic_object(action)


def format_actions(actions: Iterable[Any] | None) -> str:
    """Actions joined by commas; "drop" for none (as ovs-ofctl prints an empty list)."""
    parts = [format_action(a) for a in actions or ()]
    return ",".join(parts) if parts else "drop"


# Execution order of the instruction types (spec 5.9); unknown types go last.
_INSTRUCTION_ORDER = {OFPIT.METER: 0, OFPIT.APPLY_ACTIONS: 1, OFPIT.CLEAR_ACTIONS: 2,
                      OFPIT.WRITE_ACTIONS: 3, OFPIT.WRITE_METADATA: 4, OFPIT.GOTO_TABLE: 5}


def format_instruction(instruction: Any) -> str:
    """One instruction; apply-actions gives its actions ("" when it has none)."""
    t = getattr(instruction, "TYPE", None)
    if t == OFPIT.APPLY_ACTIONS:
        return ",".join(format_action(a) for a in instruction.actions)
    if t == OFPIT.WRITE_ACTIONS:
        return f"write_actions({format_actions(instruction.actions)})"
    if t == OFPIT.CLEAR_ACTIONS:
        return "clear_actions"
    if t == OFPIT.GOTO_TABLE:
        return f"goto_table:{instruction.table_id}"
    if t == OFPIT.METER:
        return f"meter:{instruction.meter_id}"
    if t == OFPIT.WRITE_METADATA:
        if instruction.metadata_mask == _U64:
            return f"write_metadata:{instruction.metadata:#x}"
        return f"write_metadata:{instruction.metadata:#x}/{instruction.metadata_mask:#x}"
    if t == OFPIT.EXPERIMENTER:
        return _experimenter_text("experimenter_instruction", getattr(instruction, "experimenter", None),
                                  getattr(instruction, "data", b""))
    return _generic_object(instruction)


def format_instructions(instructions: Iterable[Any] | None) -> str:
    """A flow's instructions as the text after ovs-ofctl's "actions=".

    "meter:1,output:2,clear_actions,write_actions(group:1),write_metadata:0x1/0xff,goto_table:3";
    "drop" when there is nothing to do.
    """
    items = sorted(instructions or (), key=lambda i: _INSTRUCTION_ORDER.get(getattr(i, "TYPE", None), 9))
    parts = [text for text in (format_instruction(i) for i in items) if text]
    return ",".join(parts) if parts else "drop"


def format_flow(match: Any, instructions: Iterable[Any] | None = None, priority: int | None = None) -> str:
    """"priority=100,in_port=1 actions=output:2" (match, then instructions)."""
    head = format_match(match, priority)
    tail = "actions=" + format_instructions(instructions)
    return f"{head} {tail}" if head else tail


# =============================================================================
# structures
# =============================================================================

_PORT_CONFIG = [(OFPPC.PORT_DOWN, "PORT_DOWN"), (OFPPC.NO_RECV, "NO_RECV"), (OFPPC.NO_FWD, "NO_FWD"),
                (OFPPC.NO_PACKET_IN, "NO_PACKET_IN")]
_PORT_STATE = [(OFPPS.LINK_DOWN, "LINK_DOWN"), (OFPPS.BLOCKED, "BLOCKED"), (OFPPS.LIVE, "LIVE")]
_PORT_FEATURES = [
    (OFPPF.F_10MB_HD, "10MB-HD"), (OFPPF.F_10MB_FD, "10MB-FD"), (OFPPF.F_100MB_HD, "100MB-HD"),
    (OFPPF.F_100MB_FD, "100MB-FD"), (OFPPF.F_1GB_HD, "1GB-HD"), (OFPPF.F_1GB_FD, "1GB-FD"),
    (OFPPF.F_10GB_FD, "10GB-FD"), (OFPPF.F_40GB_FD, "40GB-FD"), (OFPPF.F_100GB_FD, "100GB-FD"),
    (OFPPF.F_1TB_FD, "1TB-FD"), (OFPPF.OTHER, "OTHER"), (OFPPF.COPPER, "COPPER"), (OFPPF.FIBER, "FIBER"),
    (OFPPF.AUTONEG, "AUTO_NEG"), (OFPPF.PAUSE, "AUTO_PAUSE"), (OFPPF.PAUSE_ASYM, "AUTO_PAUSE_ASYM"),
]


def format_port(port: Any) -> str:
    """An ofp_port as ovs-ofctl dump-ports-desc shows it (one leading space, several lines)."""
    lines = [f" {format_port_no(port.port_no)}({port.name}): addr:{port.hw_addr}",
             f"     config:     {_flag_names(port.config, _PORT_CONFIG)}",
             f"     state:      {_flag_names(port.state, _PORT_STATE)}"]
    for label, value in (("current", port.curr), ("advertised", port.advertised),
                         ("supported", port.supported), ("peer", port.peer)):
        if value:
            lines.append(f"     {label + ':':<12}{_flag_names(value, _PORT_FEATURES)}")
    lines.append(f"     speed: {port.curr_speed // 1000} Mbps now, {port.max_speed // 1000} Mbps max")
    return "\n".join(lines)


_GROUP_TYPES = {OFPGT.ALL: "all", OFPGT.SELECT: "select", OFPGT.INDIRECT: "indirect", OFPGT.FF: "ff"}


def format_bucket(bucket: Any, group_type: int | None = None) -> str:
    """"bucket=weight:50,watch_port:3,actions=output:2" (weight when not the type's default)."""
    parts = []
    default_weight = 1 if group_type == OFPGT.SELECT else 0
    if bucket.weight != default_weight:
        parts.append(f"weight:{bucket.weight}")
    if bucket.watch_port != OFPP.ANY:
        parts.append(f"watch_port:{format_port_no(bucket.watch_port)}")
    if bucket.watch_group != OFPG.ANY:
        parts.append(f"watch_group:{_group_no(bucket.watch_group)}")
    parts.append("actions=" + format_actions(bucket.actions))
    return "bucket=" + ",".join(parts)


def format_group(group_id: int, group_type: int, buckets: Iterable[Any]) -> str:
    """"group_id=1,type=select,bucket=...,bucket=..." as ovs-ofctl dump-groups prints."""
    text = f"group_id={_group_no(group_id)},type={_GROUP_TYPES.get(group_type, group_type)}"
    for bucket in buckets:
        text += "," + format_bucket(bucket, group_type)
    return text


def format_band(band: Any) -> str:
    t = getattr(band, "TYPE", None)
    burst = f" burst_size={band.burst_size}" if getattr(band, "burst_size", 0) else ""
    if t == OFPMBT.DROP:
        return f"type=drop rate={band.rate}{burst}"
    if t == OFPMBT.DSCP_REMARK:
        return f"type=dscp_remark rate={band.rate}{burst} prec_level={band.prec_level}"
    if t == OFPMBT.EXPERIMENTER:
        data = bytes(getattr(band, "data", b""))
        extra = f" data=0x{data.hex()}" if data else ""
        return f"type=experimenter rate={band.rate}{burst} experimenter={band.experimenter:#x}{extra}"
    return _generic_object(band)


_METER_FLAGS = [(OFPMF.KBPS, "kbps"), (OFPMF.PKTPS, "pktps"), (OFPMF.BURST, "burst"), (OFPMF.STATS, "stats")]


def format_meter(meter_id: int, flags: int, bands: Iterable[Any]) -> str:
    """"meter=1 kbps burst stats bands=\\ntype=drop rate=1000 burst_size=100" (dump-meters)."""
    flag_text = _flag_names(flags, _METER_FLAGS, empty="")
    head = f"meter={_meter_no(meter_id)}" + (f" {flag_text}" if flag_text else "") + " bands="
    return "\n".join([head] + [format_band(b) for b in bands])


# =============================================================================
# packets carried in packet-in / packet-out
# =============================================================================

def _packet_fields(pkt: Any) -> tuple[dict, dict]:
    """(OXM fields, OVS-only extras) of a decoded kumoflow.packet.Packet."""
    flow: dict[str, Any] = {}
    extra: dict[str, str] = {}
    l3 = l4 = False
    for h in getattr(pkt, "headers", ()):
        kind = type(h).__name__
        if kind == "Ethernet" and "eth_dst" not in flow:
            flow["eth_dst"], flow["eth_src"] = h.dst, h.src
            if h.type is not None:
                flow["eth_type"] = h.type
        elif kind == "VLAN" and "vlan_vid" not in flow and not l3:
            flow["vlan_vid"], flow["vlan_pcp"] = 0x1000 | h.vid, h.pcp
            if h.type is not None:
                flow["eth_type"] = h.type
        elif kind == "ARP" and not l3:
            l3 = True
            flow.update(arp_op=h.op, arp_spa=h.src_ip, arp_tpa=h.dst_ip, arp_sha=h.src_mac, arp_tha=h.dst_mac)
        elif kind == "IPv4" and not l3:
            l3 = True
            flow.update(ipv4_src=h.src, ipv4_dst=h.dst, ip_dscp=h.tos >> 2, ip_ecn=h.tos & 3)
            if h.proto is not None:
                flow["ip_proto"] = h.proto
            extra["nw_ttl"] = str(h.ttl)
            fragment = bool(h.flags & 1) or bool(h.frag_offset)
            extra["nw_frag"] = ("later" if h.frag_offset else "first") if fragment else "no"
        elif kind == "IPv6" and not l3:
            l3 = True
            flow.update(ipv6_src=h.src, ipv6_dst=h.dst, ipv6_flabel=h.flow_label, ip_dscp=h.tc >> 2,
                        ip_ecn=h.tc & 3)
            if h.nh is not None:
                flow["ip_proto"] = h.nh
            extra["nw_ttl"] = str(h.hop_limit)
            extra["nw_frag"] = "no"
        elif l3 and not l4 and kind.startswith(("IPv6", "AH")) and getattr(h, "nh", None) is not None:
            flow["ip_proto"] = h.nh          # extension headers: the last one names the transport
            if kind == "IPv6Fragment":
                extra["nw_frag"] = "later" if h.offset else "first"
        elif kind in ("TCP", "UDP") and l3 and not l4:
            l4 = True
            prefix = kind.lower()
            flow[f"{prefix}_src"], flow[f"{prefix}_dst"] = h.sport, h.dport
            if kind == "TCP":
                extra["tcp_flags"] = format_tcp_flags(h.flags & _TCP_FLAGS_ALL)
        elif kind == "ICMP" and l3 and not l4:
            l4 = True
            flow.update(icmpv4_type=h.type, icmpv4_code=h.code)
        elif kind.startswith(("ICMPv6", "ND")) and l3 and not l4:
            l4 = True
            flow.update(icmpv6_type=h.type, icmpv6_code=h.code)
            if kind.startswith("NDNeighbor"):
                flow["ipv6_nd_target"] = h.target
                flow["ipv6_nd_sll"] = flow["ipv6_nd_tll"] = "00:00:00:00:00:00"
                for option in getattr(h, "options", ()):
                    name = type(option).__name__
                    if name == "NDOptSourceLinkAddr":
                        flow["ipv6_nd_sll"] = option.mac
                    elif name == "NDOptTargetLinkAddr":
                        flow["ipv6_nd_tll"] = option.mac
    return flow, extra


def packet_flow(pkt: Any) -> dict:
    """The OXM fields of a decoded packet (a kumoflow.packet.Packet): what a
    flow entry would match it on, e.g. {"eth_type": 0x800, "ipv4_src": ...}."""
    return _packet_fields(pkt)[0]


def packet_summary(data: bytes) -> str:
    """One line describing an Ethernet frame in flow syntax, like the line
    ovs-ofctl prints under a packet-in or packet-out
    ("tcp,vlan_tci=0x0000,dl_src=...,nw_ttl=64,nw_frag=no,tp_src=...,tcp_flags=syn").

    Uses kumoflow.packet to decode (OVS's trailing checksum word is left
    out). A frame it cannot decode shows its Ethernet header if that much
    is there, then its length and first bytes in hex.
    """
    data = bytes(data)
    if not data:
        return ""
    try:
        from kumoflow import packet as packet_module
    except ImportError:
        packet_module = None
    if packet_module is not None:
        try:
            pkt = packet_module.parse(data, truncated_ok=True)   # packet-in data is often cut short
            flow, extra = _packet_fields(pkt)
        except Exception:  # noqa: BLE001 - a frame we cannot decode still gets printed
            flow, extra = {}, {}
            try:
                eth, _ = packet_module.parse_ethernet(data)
                flow = {"eth_dst": eth.dst, "eth_src": eth.src, "eth_type": eth.type}
            except Exception:  # noqa: BLE001
                pass
        if flow:
            return _flow_line(flow, extra)
    head = data[:64].hex()
    more = "..." if len(data) > 64 else ""
    return f"{len(data)} bytes: {head}{more}"


def _flow_line(flow: dict, extra: dict) -> str:
    parts = format_match(flow).split(",")
    if "vlan_vid" not in flow:   # untagged: OVS shows the all-zero TCI
        parts.insert(1 if parts and "=" not in parts[0] else 0, "vlan_tci=0x0000")
    after_ecn = [f"{k}={extra[k]}" for k in ("nw_ttl", "nw_frag") if k in extra]
    for i, part in enumerate(parts):
        if part.startswith("nw_ecn="):
            parts[i + 1:i + 1] = after_ecn
            break
    if "tcp_flags" in extra:
        parts.append(f"tcp_flags={extra['tcp_flags']}")
    return ",".join(p for p in parts if p)


# =============================================================================
# messages
# =============================================================================

_MP_NAMES = {
    OFPMP.DESC: "DESC", OFPMP.FLOW: "FLOW", OFPMP.AGGREGATE: "AGGREGATE", OFPMP.TABLE: "TABLE",
    OFPMP.PORT_STATS: "PORT", OFPMP.QUEUE: "QUEUE", OFPMP.GROUP: "GROUP", OFPMP.GROUP_DESC: "GROUP_DESC",
    OFPMP.GROUP_FEATURES: "GROUP_FEATURES", OFPMP.METER: "METER", OFPMP.METER_CONFIG: "METER_CONFIG",
    OFPMP.METER_FEATURES: "METER_FEATURES", OFPMP.TABLE_FEATURES: "TABLE_FEATURES",
    OFPMP.PORT_DESC: "PORT_DESC", OFPMP.EXPERIMENTER: "EXPERIMENTER",
}


def _mp_type(msg: Any) -> int | None:
    t = getattr(type(msg), "mp_type", None)
    if t is None:
        t = getattr(msg, "mp_type", None)
    return t if isinstance(t, int) else None


def message_name(msg: Any) -> str:
    """"OFPT_FLOW_MOD", "OFPST_FLOW reply", or the class name for unknown objects."""
    msg_type = getattr(msg, "msg_type", None)
    if msg_type in (OFPT.MULTIPART_REQUEST, OFPT.MULTIPART_REPLY):
        mp = _mp_type(msg)
        if mp is not None:
            kind = "request" if msg_type == OFPT.MULTIPART_REQUEST else "reply"
            return f"OFPST_{_MP_NAMES.get(mp, str(mp))} {kind}"
    if isinstance(msg_type, int):
        try:
            return "OFPT_" + OFPT(msg_type).name
        except ValueError:
            return f"OFPT_{msg_type}"
    return type(msg).__name__


def _header(msg: Any) -> str:
    version = getattr(msg, "version", 4)
    label = _VERSIONS.get(version, f"0x{version:02x}") if isinstance(version, int) else "OF1.3"
    xid = getattr(msg, "xid", 0)
    xid_text = f"{xid:#x}" if isinstance(xid, int) else str(xid)
    return f"{message_name(msg)} ({label}) (xid={xid_text}):"


_FORMATTERS: dict[int, Callable[[Any], str]] = {}
_MP_FORMATTERS: dict[tuple[int, int], Callable[[Any], str]] = {}


def _formats(msg_type: int, mp_type: int | None = None):
    def decorate(fn: Callable[[Any], str]) -> Callable[[Any], str]:
        if mp_type is None:
            _FORMATTERS[msg_type] = fn
        else:
            _MP_FORMATTERS[(msg_type, mp_type)] = fn
        return fn

    return decorate


def format_message(msg: Any) -> str:
    """Readable text for one message (several lines for multi-part bodies).

    Never raises: an object without a specific formatter, or one whose
    specific formatter fails on odd field values, gets the generic
    "NAME (OF1.3) (xid=..): field=value, ..." text.
    """
    try:
        return _format_strict(msg)
    except Exception:  # noqa: BLE001 - printing must never fail
        try:
            return _format_generic(msg)
        except Exception:  # noqa: BLE001
            return f"{type(msg).__name__}: (unprintable)"


def _format_strict(msg: Any) -> str:
    """format_message without the safety net (tests use it to see formatter bugs)."""
    fn = _find_formatter(msg)
    if fn is None:
        return _format_generic(msg)
    return _header(msg) + fn(msg)


def _find_formatter(msg: Any) -> Callable[[Any], str] | None:
    msg_type = getattr(msg, "msg_type", None)
    if msg_type in (OFPT.MULTIPART_REQUEST, OFPT.MULTIPART_REPLY):
        mp = _mp_type(msg)
        fn = _MP_FORMATTERS.get((msg_type, mp))
        return fn if fn is not None else (_mp_generic if mp is not None else None)
    if type(msg).__module__.endswith(".ofp.messages"):
        return _FORMATTERS.get(msg_type)
    return None


# --- generic ------------------------------------------------------------------

def _generic_value(value: Any) -> str:
    from .oxm import Match

    if isinstance(value, Match):
        return format_match(value) or "any"
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value) if value < 0x10000 else f"{value:#x}"
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) <= 32:
            return "0x" + raw.hex() if raw else "''"
        return f"{len(raw)} bytes 0x{raw[:32].hex()}..."
    if isinstance(value, (list, tuple, frozenset, set)):
        items = list(value)
        if items and all(getattr(i, "TYPE", None) is not None and type(i).__module__.endswith(".actions")
                         for i in items):
            return "[" + format_actions(items) + "]"
        if items and all(type(i).__module__.endswith(".instructions") for i in items):
            return "[actions=" + format_instructions(items) + "]"
        if isinstance(value, (frozenset, set)):
            items = sorted(items, key=repr)
        return "[" + ", ".join(_generic_value(i) for i in items) + "]"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if type(value).__module__.endswith(".actions"):
            return format_action(value)
        if type(value).__module__.endswith(".instructions"):
            return format_instruction(value) or "apply_actions()"
        return _generic_object(value)
    if isinstance(value, str):
        return value
    return repr(value)


def _generic_fields(obj: Any) -> list[str]:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names = [f.name for f in dataclasses.fields(obj) if f.name != "xid"]
    else:
        names = [n for n in getattr(obj, "__dict__", {}) if not n.startswith("_") and n != "xid"]
    return [f"{name}={_generic_value(getattr(obj, name))}" for name in names]


def _generic_object(obj: Any) -> str:
    """Name(field=value,...) for a structure without its own format."""
    return f"{type(obj).__name__}(" + ", ".join(_generic_fields(obj)) + ")"


def _format_generic(msg: Any) -> str:
    fields = ", ".join(_generic_fields(msg))
    if getattr(msg, "msg_type", None) is not None:
        return _header(msg) + (" " + fields if fields else "")
    return f"{type(msg).__name__}:" + (" " + fields if fields else "")


def _mp_generic(msg: Any) -> str:
    flags = _mp_flags(msg)
    fields = [f for f in _generic_fields(msg) if not f.startswith("flags=")]
    body = " " + ", ".join(fields) if fields else ""
    return flags + body


# --- symmetric / setup messages --------------------------------------------------

@_formats(OFPT.HELLO)
def _hello(msg: Any) -> str:
    lines = []
    if msg.versions is None:
        lines.append(" no version bitmap")
    else:
        lines.append(" version bitmap: " + ", ".join(f"0x{v:02x}" for v in sorted(msg.versions)))
    for element in msg.elements:
        element = bytes(element)
        etype = int.from_bytes(element[:2], "big") if len(element) >= 2 else -1
        lines.append(f" unknown element type={etype} length={len(element)}")
    return "\n" + "\n".join(lines)


def _error_code_name(err_type: int, code: int) -> str:
    codes = ERROR_CODES.get(err_type)
    if codes is not None:
        try:
            return f"{codes.__name__}_{codes(code).name}"
        except ValueError:
            pass
    try:
        return f"OFPET_{OFPET(err_type).name} code={code}"
    except ValueError:
        return f"type={err_type} code={code}"


def _embedded_message(data: bytes) -> str | None:
    """The failed request inside an ERROR, decoded if its bytes allow."""
    from .base import HEADER, parse
    from .errors import CodecError

    if len(data) < 8:
        return None
    version, msg_type, length, xid = HEADER.unpack_from(data)
    if version != 4 or length < 8:
        return None
    if length == len(data):
        try:
            return format_message(parse(data))
        except CodecError:
            return None
    if length < len(data):
        return None
    # The usual case: only the first 64 bytes were sent back. Decode what is
    # there as if it were the whole message; say so.
    note = f"(***truncated to {len(data)} bytes from {length}***)"
    try:
        text = format_message(parse(data[:2] + len(data).to_bytes(2, "big") + data[4:]))
    except CodecError:
        try:
            name = "OFPT_" + OFPT(msg_type).name
        except ValueError:
            name = f"OFPT_{msg_type}"
        return f"{name} (OF1.3) (xid={xid:#x}):\n{note}\n{hexdump(data)}"
    return f"{text}\n{note}"


@_formats(OFPT.ERROR)
def _error(msg: Any) -> str:
    data = bytes(msg.data)
    if msg.type == OFPET.EXPERIMENTER:
        exp = msg.experimenter if msg.experimenter is not None else 0
        head = f" OFPET_EXPERIMENTER exp_type={msg.code} experimenter={exp:#x}"
    else:
        head = " " + _error_code_name(msg.type, msg.code)
    if not data:
        return head
    if msg.type == OFPET.HELLO_FAILED:
        return f"{head}\n{data.decode('utf-8', 'replace')}"
    embedded = _embedded_message(data)
    if embedded is not None:
        return f"{head}\n{embedded}"
    return f"{head}\n({len(data)} bytes of data)\n{hexdump(data)}"


def _payload(msg: Any) -> str:
    data = bytes(msg.data)
    text = f" {len(data)} bytes of payload"
    return text + ("\n" + hexdump(data) if data else "")


_FORMATTERS[OFPT.ECHO_REQUEST] = _payload
_FORMATTERS[OFPT.ECHO_REPLY] = _payload


@_formats(OFPT.EXPERIMENTER)
def _experimenter(msg: Any) -> str:
    data = bytes(msg.data)
    text = f" experimenter={msg.experimenter:#x} exp_type={msg.exp_type} data_len={len(data)}"
    return text + ("\n" + hexdump(data) if data else "")


def _empty(msg: Any) -> str:
    return ""


for _t in (OFPT.FEATURES_REQUEST, OFPT.GET_CONFIG_REQUEST, OFPT.BARRIER_REQUEST, OFPT.BARRIER_REPLY,
           OFPT.GET_ASYNC_REQUEST):
    _FORMATTERS[_t] = _empty

_CAPABILITIES = [(OFPC.FLOW_STATS, "FLOW_STATS"), (OFPC.TABLE_STATS, "TABLE_STATS"),
                 (OFPC.PORT_STATS, "PORT_STATS"), (OFPC.GROUP_STATS, "GROUP_STATS"),
                 (OFPC.IP_REASM, "IP_REASM"), (OFPC.QUEUE_STATS, "QUEUE_STATS"),
                 (OFPC.PORT_BLOCKED, "PORT_BLOCKED")]


@_formats(OFPT.FEATURES_REPLY)
def _features_reply(msg: Any) -> str:
    aux = f", auxiliary_id:{msg.auxiliary_id}" if msg.auxiliary_id else ""
    return (f" dpid:{msg.datapath_id:016x}\n"
            f"n_tables:{msg.n_tables}, n_buffers:{msg.n_buffers}{aux}\n"
            f"capabilities: {_flag_names(msg.capabilities, _CAPABILITIES)}")


_FRAGS = {OFPC_FRAG.NORMAL: "normal", OFPC_FRAG.DROP: "drop", OFPC_FRAG.REASM: "reassemble"}


def _config(msg: Any) -> str:
    frag = msg.flags & OFPC_FRAG.MASK
    text = f" frags={_FRAGS.get(frag, f'{frag:#x}')}"
    if msg.flags & ~OFPC_FRAG.MASK:
        text += f" flags={msg.flags:#x}"
    return text + f" miss_send_len={msg.miss_send_len}"


_FORMATTERS[OFPT.GET_CONFIG_REPLY] = _config
_FORMATTERS[OFPT.SET_CONFIG] = _config


# --- asynchronous messages ---------------------------------------------------------

_PACKET_IN_REASONS = {OFPR.NO_MATCH: "no_match", OFPR.ACTION: "action", OFPR.INVALID_TTL: "invalid_ttl"}


def _buffer(buffer_id: int) -> str:
    return "(unbuffered)" if buffer_id == OFP_NO_BUFFER else f"buffer={buffer_id:#010x}"


@_formats(OFPT.PACKET_IN)
def _packet_in(msg: Any) -> str:
    parts = []
    if msg.table_id:
        parts.append(f"table_id={msg.table_id}")
    if msg.cookie != _U64:
        parts.append(f"cookie={msg.cookie:#x}")
    parts.append(f"total_len={msg.total_len}")
    match = format_match(msg.match)
    if match:
        parts.append(match)
    parts.append(f"(via {_PACKET_IN_REASONS.get(msg.reason, msg.reason)})")
    parts.append(f"data_len={len(msg.data)}")
    parts.append(_buffer(msg.buffer_id))
    text = " " + " ".join(parts)
    summary = packet_summary(msg.data)
    return text + ("\n" + summary if summary else "")


_FLOW_REMOVED_REASONS = {OFPRR.IDLE_TIMEOUT: "idle", OFPRR.HARD_TIMEOUT: "hard", OFPRR.DELETE: "delete",
                         OFPRR.GROUP_DELETE: "group_delete"}


@_formats(OFPT.FLOW_REMOVED)
def _flow_removed(msg: Any) -> str:
    parts = []
    match = format_match(msg.match, msg.priority)
    if match:
        parts.append(match)
    parts.append(f"reason={_FLOW_REMOVED_REASONS.get(msg.reason, msg.reason)}")
    parts.append(f"table_id={msg.table_id}")
    if msg.cookie:
        parts.append(f"cookie:{msg.cookie:#x}")
    parts.append("duration" + format_duration(msg.duration_sec, msg.duration_nsec))
    parts.append(f"idle{msg.idle_timeout}")
    if msg.hard_timeout:
        parts.append(f"hard{msg.hard_timeout}")
    parts.append(f"pkts{msg.packet_count}")
    parts.append(f"bytes{msg.byte_count}")
    return " " + " ".join(parts)


_PORT_REASONS = {OFPPR.ADD: "ADD", OFPPR.DELETE: "DEL", OFPPR.MODIFY: "MOD"}


@_formats(OFPT.PORT_STATUS)
def _port_status(msg: Any) -> str:
    return f" {_PORT_REASONS.get(msg.reason, f'reason={msg.reason}')}:" + format_port(msg.desc)


# --- controller commands ---------------------------------------------------------------

@_formats(OFPT.PACKET_OUT)
def _packet_out(msg: Any) -> str:
    text = f" in_port={format_port_no(msg.in_port)} actions={format_actions(msg.actions)}"
    if msg.buffer_id != OFP_NO_BUFFER:
        text += f" buffer={msg.buffer_id:#010x}"
    data = bytes(msg.data)
    if data:
        text += f" data_len={len(data)}\n" + packet_summary(data)
    return text


_FLOW_COMMANDS = {OFPFC.ADD: "ADD", OFPFC.MODIFY: "MOD", OFPFC.MODIFY_STRICT: "MOD_STRICT",
                  OFPFC.DELETE: "DEL", OFPFC.DELETE_STRICT: "DEL_STRICT"}
_FLOW_FLAGS = [(OFPFF.SEND_FLOW_REM, "send_flow_rem"), (OFPFF.CHECK_OVERLAP, "check_overlap"),
               (OFPFF.RESET_COUNTS, "reset_counts"), (OFPFF.NO_PKT_COUNTS, "no_packet_counts"),
               (OFPFF.NO_BYT_COUNTS, "no_byte_counts")]


def _flow_flags(flags: int) -> list[str]:
    if not flags:
        return []
    text = _flag_names(flags, _FLOW_FLAGS, empty="")
    return [w if not w.startswith("0x") else f"flags:{w}" for w in text.split()]


@_formats(OFPT.FLOW_MOD)
def _flow_mod(msg: Any) -> str:
    parts = [_FLOW_COMMANDS.get(msg.command, f"cmd:{msg.command}")]
    if msg.table_id:
        parts.append(f"table:{msg.table_id}")
    match = format_match(msg.match, msg.priority)
    if match:
        parts.append(match)
    if msg.command == OFPFC.ADD:
        if msg.cookie:
            parts.append(f"cookie:{msg.cookie:#x}")
    elif msg.cookie_mask:
        parts.append(f"cookie:{msg.cookie:#x}/{msg.cookie_mask:#x}")
    if msg.idle_timeout:
        parts.append(f"idle:{msg.idle_timeout}")
    if msg.hard_timeout:
        parts.append(f"hard:{msg.hard_timeout}")
    if msg.buffer_id != OFP_NO_BUFFER:
        parts.append(f"buf:{msg.buffer_id:#x}")
    if msg.out_port != OFPP.ANY:
        parts.append(f"out_port:{format_port_no(msg.out_port)}")
    if msg.out_group != OFPG.ANY:
        parts.append(f"out_group:{_group_no(msg.out_group)}")
    parts.extend(_flow_flags(msg.flags))
    parts.append("actions=" + format_instructions(msg.instructions))
    return " " + " ".join(parts)


_GROUP_COMMANDS = {OFPGC.ADD: "ADD", OFPGC.MODIFY: "MOD", OFPGC.DELETE: "DEL"}


@_formats(OFPT.GROUP_MOD)
def _group_mod(msg: Any) -> str:
    command = _GROUP_COMMANDS.get(msg.command, f"cmd:{msg.command}")
    return f"\n {command} " + format_group(msg.group_id, msg.type, msg.buckets)


@_formats(OFPT.PORT_MOD)
def _port_mod(msg: Any) -> str:
    advertise = _flag_names(msg.advertise, _PORT_FEATURES) if msg.advertise else "UNCHANGED"
    return (f" port: {format_port_no(msg.port_no)}: addr:{msg.hw_addr}\n"
            f"     config: {_flag_names(msg.config, _PORT_CONFIG)}\n"
            f"     mask:   {_flag_names(msg.mask, _PORT_CONFIG)}\n"
            f"     advertise: {advertise}")


@_formats(OFPT.TABLE_MOD)
def _table_mod(msg: Any) -> str:
    text = f" table_id={_table_no(msg.table_id)}"
    return text + (f" config={msg.config:#x}" if msg.config else "")


@_formats(OFPT.QUEUE_GET_CONFIG_REQUEST)
def _queue_get_config_request(msg: Any) -> str:
    return f" port={format_port_no(msg.port)}"


def _queue_prop(prop: Any) -> str:
    from .structs import QueuePropExperimenter, QueuePropMaxRate, QueuePropMinRate

    if isinstance(prop, (QueuePropMinRate, QueuePropMaxRate)):
        name = "min_rate" if isinstance(prop, QueuePropMinRate) else "max_rate"
        if prop.rate > 1000:  # 0xffff: not configured
            return ""
        return f"{name}:{prop.rate / 10:.1f}%"
    if isinstance(prop, QueuePropExperimenter):
        data = bytes(prop.data)
        return f"experimenter:{prop.experimenter:#x}" + (f",data=0x{data.hex()}" if data else "")
    return _generic_object(prop)


@_formats(OFPT.QUEUE_GET_CONFIG_REPLY)
def _queue_get_config_reply(msg: Any) -> str:
    lines = [f" port={format_port_no(msg.port)}"]
    for queue in msg.queues:
        props = " ".join(p for p in (_queue_prop(p) for p in queue.properties) if p)
        lines.append(f"queue {queue.queue_id}:" + (f" {props}" if props else ""))
    return "\n".join(lines)


_ROLES = {OFPCR.ROLE_NOCHANGE: "nochange", OFPCR.ROLE_EQUAL: "equal", OFPCR.ROLE_MASTER: "primary",
          OFPCR.ROLE_SLAVE: "secondary"}


def _role(msg: Any) -> str:
    text = f" role={_ROLES.get(msg.role, msg.role)}"
    if msg.role != OFPCR.ROLE_NOCHANGE and msg.generation_id != _U64:
        text += f" generation_id={msg.generation_id}"
    return text


_FORMATTERS[OFPT.ROLE_REQUEST] = _role
_FORMATTERS[OFPT.ROLE_REPLY] = _role

_ASYNC_REASONS = [
    ("PACKET_IN", "packet_in_mask", ["no_match", "action", "invalid_ttl"]),
    ("PORT_STATUS", "port_status_mask", ["add", "delete", "modify"]),
    ("FLOW_REMOVED", "flow_removed_mask", ["idle", "hard", "delete", "group_delete"]),
]


def _async(msg: Any) -> str:
    lines = []
    for index, role in enumerate(("primary", "secondary")):
        lines.append(f" {role}:")
        for label, attr, names in _ASYNC_REASONS:
            bits = getattr(msg, attr)[index]
            words = [names[i] if i < len(names) else f"bit{i}" for i in range(32) if bits >> i & 1]
            lines.append(f"{label:>16}: {' '.join(words) if words else '(off)'}")
        lines.append("")
    return "\n" + "\n".join(lines[:-1])


_FORMATTERS[OFPT.GET_ASYNC_REPLY] = _async
_FORMATTERS[OFPT.SET_ASYNC] = _async

_METER_COMMANDS = {OFPMC.ADD: "ADD", OFPMC.MODIFY: "MOD", OFPMC.DELETE: "DEL"}


@_formats(OFPT.METER_MOD)
def _meter_mod(msg: Any) -> str:
    command = _METER_COMMANDS.get(msg.command, f"cmd:{msg.command}")
    return f" {command} " + format_meter(msg.meter_id, msg.flags, msg.bands)


# --- multipart ---------------------------------------------------------------------

REQ, REP = OFPT.MULTIPART_REQUEST, OFPT.MULTIPART_REPLY


def _mp_flags(msg: Any) -> str:
    flags = getattr(msg, "flags", 0) or 0
    if not isinstance(flags, int) or not flags:
        return ""
    if flags == 1:
        return " flags=[more]"
    return f" flags={flags:#x}"


def _body(msg: Any) -> list:
    body = _attr(msg, "body", "entries", "stats", default=None)
    if body is None:
        return []
    return list(body) if isinstance(body, (list, tuple)) else [body]


def _mp_empty(msg: Any) -> str:
    return _mp_flags(msg)


for _mp in (OFPMP.DESC, OFPMP.TABLE, OFPMP.GROUP_DESC, OFPMP.GROUP_FEATURES, OFPMP.METER_FEATURES,
            OFPMP.PORT_DESC):
    _MP_FORMATTERS[(REQ, _mp)] = _mp_empty


@_formats(REP, OFPMP.DESC)
def _desc_reply(msg: Any) -> str:
    desc = _body(msg)[0] if _body(msg) else msg
    return _mp_flags(msg) + (
        f"\nManufacturer: {_attr(desc, 'mfr_desc', default='')}"
        f"\nHardware: {_attr(desc, 'hw_desc', default='')}"
        f"\nSoftware: {_attr(desc, 'sw_desc', default='')}"
        f"\nSerial Num: {_attr(desc, 'serial_num', default='')}"
        f"\nDP Description: {_attr(desc, 'dp_desc', default='')}")


def _flow_stats_request(msg: Any) -> str:
    parts = []
    table_id = _attr(msg, "table_id", default=OFPTT.ALL)
    if table_id != OFPTT.ALL:
        parts.append(f"table={table_id}")
    out_port = _attr(msg, "out_port", default=OFPP.ANY)
    if out_port != OFPP.ANY:
        parts.append(f"out_port={format_port_no(out_port)}")
    out_group = _attr(msg, "out_group", default=OFPG.ANY)
    if out_group != OFPG.ANY:
        parts.append(f"out_group={_group_no(out_group)}")
    cookie_mask = _attr(msg, "cookie_mask", default=0)
    if cookie_mask:
        parts.append(f"cookie={_attr(msg, 'cookie', default=0):#x}/{cookie_mask:#x}")
    match = format_match(_attr(msg, "match", default=None))
    if match:
        parts.append(match)
    return _mp_flags(msg) + ("" if not parts else " " + " ".join(parts))


_MP_FORMATTERS[(REQ, OFPMP.FLOW)] = _flow_stats_request
_MP_FORMATTERS[(REQ, OFPMP.AGGREGATE)] = _flow_stats_request


def format_flow_stats(entry: Any) -> str:
    """One flow entry as ovs-ofctl dump-flows prints it (leading space included)."""
    parts = [f" cookie={entry.cookie:#x}",
             f"duration={format_duration(entry.duration_sec, entry.duration_nsec)}",
             f"table={entry.table_id}", f"n_packets={_counter(entry.packet_count)}",
             f"n_bytes={_counter(entry.byte_count)}"]
    if entry.idle_timeout:
        parts.append(f"idle_timeout={entry.idle_timeout}")
    if entry.hard_timeout:
        parts.append(f"hard_timeout={entry.hard_timeout}")
    text = ", ".join(parts) + ", "
    flags = _flow_flags(_attr(entry, "flags", default=0))
    if flags:
        text += " ".join(flags) + " "
    return text + format_flow(entry.match, entry.instructions, entry.priority)


@_formats(REP, OFPMP.FLOW)
def _flow_stats_reply(msg: Any) -> str:
    return _mp_flags(msg) + "".join("\n" + format_flow_stats(e) for e in _body(msg))


@_formats(REP, OFPMP.AGGREGATE)
def _aggregate_reply(msg: Any) -> str:
    body = _body(msg)
    agg = body[0] if body else msg
    return _mp_flags(msg) + (f" packet_count={_attr(agg, 'packet_count', default=0)}"
                             f" byte_count={_attr(agg, 'byte_count', default=0)}"
                             f" flow_count={_attr(agg, 'flow_count', default=0)}")


@_formats(REP, OFPMP.TABLE)
def _table_stats_reply(msg: Any) -> str:
    chunks = []
    for t in _body(msg):
        chunks.append(f"  table {t.table_id}:\n"
                      f"    active={t.active_count}, lookup={t.lookup_count}, matched={t.matched_count}")
    return _mp_flags(msg) + ("\n" + "\n\n".join(chunks) if chunks else "")


def _port_request(msg: Any) -> str:
    return _mp_flags(msg) + f" port_no={format_port_no(_attr(msg, 'port_no', 'port', default=OFPP.ANY))}"


_MP_FORMATTERS[(REQ, OFPMP.PORT_STATS)] = _port_request


@_formats(REP, OFPMP.PORT_STATS)
def _port_stats_reply(msg: Any) -> str:
    body = _body(msg)
    lines = [f" {len(body)} ports"]
    for p in body:
        c = _counter
        lines.append(f"  port {format_port_no(p.port_no):>2}: rx pkts={c(p.rx_packets)}, bytes={c(p.rx_bytes)}, "
                     f"drop={c(p.rx_dropped)}, errs={c(p.rx_errors)}, frame={c(p.rx_frame_err)}, "
                     f"over={c(p.rx_over_err)}, crc={c(p.rx_crc_err)}")
        lines.append(f"           tx pkts={c(p.tx_packets)}, bytes={c(p.tx_bytes)}, drop={c(p.tx_dropped)}, "
                     f"errs={c(p.tx_errors)}, coll={c(p.collisions)}")
        duration_sec = _attr(p, "duration_sec", default=None)
        if duration_sec is not None and duration_sec != 0xFFFFFFFF:
            lines.append(f"           duration={format_duration(duration_sec, _attr(p, 'duration_nsec', default=0))}")
    return _mp_flags(msg) + "\n".join(lines)


def _queue_no(queue_id: int) -> str:
    return "ALL" if queue_id == 0xFFFFFFFF else str(queue_id)


@_formats(REQ, OFPMP.QUEUE)
def _queue_stats_request(msg: Any) -> str:
    port = _attr(msg, "port_no", "port", default=OFPP.ANY)
    queue = _queue_no(_attr(msg, "queue_id", default=0xFFFFFFFF))
    return _mp_flags(msg) + f" port={format_port_no(port)} queue={queue}"


@_formats(REP, OFPMP.QUEUE)
def _queue_stats_reply(msg: Any) -> str:
    body = _body(msg)
    lines = [f" {len(body)} queues"]
    for q in body:
        duration = ""
        if _attr(q, "duration_sec", default=0xFFFFFFFF) != 0xFFFFFFFF:
            duration = f", duration={format_duration(q.duration_sec, _attr(q, 'duration_nsec', default=0))}"
        lines.append(f"  port {format_port_no(q.port_no)} queue {q.queue_id}: bytes={_counter(q.tx_bytes)}, "
                     f"pkts={_counter(q.tx_packets)}, errors={_counter(q.tx_errors)}{duration}")
    return _mp_flags(msg) + "\n".join(lines)


def _group_request(msg: Any) -> str:
    return _mp_flags(msg) + f" group_id={_group_no(_attr(msg, 'group_id', default=OFPG.ALL))}"


_MP_FORMATTERS[(REQ, OFPMP.GROUP)] = _group_request


@_formats(REP, OFPMP.GROUP)
def _group_stats_reply(msg: Any) -> str:
    lines = []
    for g in _body(msg):
        text = (f" group_id={_group_no(g.group_id)},"
                f"duration={format_duration(g.duration_sec, _attr(g, 'duration_nsec', default=0))},"
                f"ref_count={g.ref_count},packet_count={_counter(g.packet_count)},"
                f"byte_count={_counter(g.byte_count)}")
        for i, b in enumerate(_attr(g, "bucket_stats", "buckets", default=[]) or []):
            text += f",bucket{i}:packet_count={_counter(b.packet_count)},byte_count={_counter(b.byte_count)}"
        lines.append(text)
    return _mp_flags(msg) + "".join("\n" + line for line in lines)


@_formats(REP, OFPMP.GROUP_DESC)
def _group_desc_reply(msg: Any) -> str:
    return _mp_flags(msg) + "".join(
        "\n " + format_group(g.group_id, g.type, g.buckets) for g in _body(msg))


_GROUP_CAPABILITIES = [(OFPGFC.SELECT_WEIGHT, "select_weight"), (OFPGFC.SELECT_LIVENESS, "select_liveness"),
                       (OFPGFC.CHAINING, "chaining"), (OFPGFC.CHAINING_CHECKS, "chaining_checks")]
_ACTION_NAMES = {
    OFPAT.OUTPUT: "output", OFPAT.COPY_TTL_OUT: "copy_ttl_out", OFPAT.COPY_TTL_IN: "copy_ttl_in",
    OFPAT.SET_MPLS_TTL: "set_mpls_ttl", OFPAT.DEC_MPLS_TTL: "dec_mpls_ttl", OFPAT.PUSH_VLAN: "push_vlan",
    OFPAT.POP_VLAN: "pop_vlan", OFPAT.PUSH_MPLS: "push_mpls", OFPAT.POP_MPLS: "pop_mpls",
    OFPAT.SET_QUEUE: "set_queue", OFPAT.GROUP: "group", OFPAT.SET_NW_TTL: "mod_nw_ttl",
    OFPAT.DEC_NW_TTL: "dec_ttl", OFPAT.SET_FIELD: "set_field", OFPAT.PUSH_PBB: "push_pbb",
    OFPAT.POP_PBB: "pop_pbb", OFPAT.EXPERIMENTER: "experimenter",
}
_INSTRUCTION_NAMES = {
    OFPIT.GOTO_TABLE: "goto_table", OFPIT.WRITE_METADATA: "write_metadata", OFPIT.WRITE_ACTIONS: "write_actions",
    OFPIT.APPLY_ACTIONS: "apply_actions", OFPIT.CLEAR_ACTIONS: "clear_actions", OFPIT.METER: "meter",
    OFPIT.EXPERIMENTER: "experimenter",
}


def _action_bitmap(bits: int) -> str:
    names = [_ACTION_NAMES.get(i, f"action{i}") for i in range(32) if bits >> i & 1]
    return " ".join(names) if names else "<none>"


@_formats(REP, OFPMP.GROUP_FEATURES)
def _group_features_reply(msg: Any) -> str:
    f = _body(msg)[0] if _body(msg) else msg
    types = _attr(f, "types", default=0)
    lines = [" Group table:",
             f"    Types:  {_flag_names(types, [(1 << t, n) for t, n in _GROUP_TYPES.items()])}",
             f"    Capabilities:  {_flag_names(_attr(f, 'capabilities', default=0), _GROUP_CAPABILITIES)}"]
    max_groups = list(_attr(f, "max_groups", default=[0, 0, 0, 0]))
    actions = list(_attr(f, "actions", default=[0, 0, 0, 0]))
    labels = {OFPGT.ALL: "all", OFPGT.SELECT: "select", OFPGT.INDIRECT: "indirect", OFPGT.FF: "fast failover"}
    for t in range(4):
        if types & (1 << t):
            lines.append(f"    {labels[t]} group:")
            lines.append(f"       max_groups={max_groups[t] if t < len(max_groups) else 0}")
            lines.append(f"       actions: {_action_bitmap(actions[t] if t < len(actions) else 0)}")
    return _mp_flags(msg) + "\n" + "\n".join(lines)


def _meter_request(msg: Any) -> str:
    return _mp_flags(msg) + f" meter={_meter_no(_attr(msg, 'meter_id', default=OFPM.ALL))}"


_MP_FORMATTERS[(REQ, OFPMP.METER)] = _meter_request
_MP_FORMATTERS[(REQ, OFPMP.METER_CONFIG)] = _meter_request


@_formats(REP, OFPMP.METER)
def _meter_stats_reply(msg: Any) -> str:
    lines = []
    for m in _body(msg):
        lines.append(f"meter:{_meter_no(m.meter_id)} flow_count:{m.flow_count} "
                     f"packet_in_count:{_counter(m.packet_in_count)} byte_in_count:{_counter(m.byte_in_count)} "
                     f"duration:{format_duration(m.duration_sec, _attr(m, 'duration_nsec', default=0))} bands:")
        for i, b in enumerate(_attr(m, "band_stats", "bands", default=[]) or []):
            packets = _attr(b, "packet_band_count", "packet_count", default=0)
            octets = _attr(b, "byte_band_count", "byte_count", default=0)
            lines.append(f"{i}: packet_count:{_counter(packets)} byte_count:{_counter(octets)}")
    return _mp_flags(msg) + "".join("\n" + line for line in lines)


@_formats(REP, OFPMP.METER_CONFIG)
def _meter_config_reply(msg: Any) -> str:
    chunks = [format_meter(m.meter_id, m.flags, m.bands) for m in _body(msg)]
    return _mp_flags(msg) + ("\n" + "\n\n".join(chunks) if chunks else "")


_BAND_TYPES = [(1 << OFPMBT.DROP, "drop"), (1 << OFPMBT.DSCP_REMARK, "dscp_remark")]


@_formats(REP, OFPMP.METER_FEATURES)
def _meter_features_reply(msg: Any) -> str:
    f = _body(msg)[0] if _body(msg) else msg
    return _mp_flags(msg) + (
        f"\nmax_meter:{_attr(f, 'max_meter', default=0)} max_bands:{_attr(f, 'max_bands', default=0)}"
        f" max_color:{_attr(f, 'max_color', default=0)}"
        f"\nband_types: {_flag_names(_attr(f, 'band_types', default=0), _BAND_TYPES, empty='<none>')}"
        f"\ncapabilities: {_flag_names(_attr(f, 'capabilities', default=0), _METER_FLAGS, empty='<none>')}")


@_formats(REP, OFPMP.PORT_DESC)
def _port_desc_reply(msg: Any) -> str:
    ports = sorted(_body(msg), key=lambda p: p.port_no)   # as ovs-ofctl dump-ports-desc lists them
    return _mp_flags(msg) + "".join("\n" + format_port(p) for p in ports)


# --- table features ----------------------------------------------------------------

def _ranges(numbers: Iterable[int]) -> str:
    nums = sorted(set(numbers))
    if not nums:
        return "none"
    out, start, prev = [], nums[0], nums[0]
    for n in nums[1:] + [None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ",".join(out)


def _id_name(names: dict, ident: Any) -> str:
    if isinstance(ident, int):
        return names.get(ident, str(ident))
    exp = getattr(ident, "experimenter", None)
    if exp is not None:
        return f"experimenter({exp:#x})"
    data = bytes(getattr(ident, "data", b""))
    return f"{names.get(getattr(ident, 'type', None), getattr(ident, 'type', '?'))}(0x{data.hex()})"


def _oxm_id_name(ident: Any) -> tuple[str, bool]:
    from .oxm import EXPERIMENTER_FIELDS, FIELDS_BY_CODE

    header = getattr(ident, "header", ident)
    if not isinstance(header, int):
        return str(ident), False
    oxm_class, field, hasmask = header >> 16, (header >> 9) & 0x7F, bool(header >> 8 & 1)
    exp = getattr(ident, "experimenter", None)
    if oxm_class == OFPXMC.OPENFLOW_BASIC and field in FIELDS_BY_CODE:
        name = FIELDS_BY_CODE[field].name
        return FIELD_NAMES.get(name, name), hasmask
    if exp is not None:
        for f in EXPERIMENTER_FIELDS:
            if (f.code, f.experimenter) == (field, exp):
                return FIELD_NAMES.get(f.name, f.name), hasmask
        return f"oxm(experimenter={exp:#x},field={field})", hasmask
    return f"oxm(class={oxm_class:#06x},field={field})", hasmask


def _oxm_names(ids: Iterable[Any]) -> str:
    names = [_oxm_id_name(i)[0] for i in ids]
    return " ".join(names) if names else "<none>"


def _prop_map(props: Iterable[Any]) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for p in props:
        out.setdefault(getattr(p, "type", None), p)
    return out


def _prop_values(prop: Any) -> Any:
    if prop is None:
        return None
    for name in ("instruction_ids", "table_ids", "action_ids", "oxm_ids"):
        if hasattr(prop, name):
            return list(getattr(prop, name))
    return prop


def _instruction_section(props: dict, miss: bool) -> list[str]:
    o = 1 if miss else 0
    lines = []
    nxt = _prop_values(props.get(OFPTFPT.NEXT_TABLES + o))
    if nxt is not None:
        lines.append(f"      next tables: {_ranges(nxt)}")
    ins = _prop_values(props.get(OFPTFPT.INSTRUCTIONS + o))
    if ins is not None:
        ins = sorted(ins, key=lambda i: _INSTRUCTION_ORDER.get(i, 9) if isinstance(i, int) else 10)
        lines.append("      instructions: " + (" ".join(_id_name(_INSTRUCTION_NAMES, i) for i in ins) or "<none>"))
    wa, aa = _prop_values(props.get(OFPTFPT.WRITE_ACTIONS + o)), _prop_values(props.get(OFPTFPT.APPLY_ACTIONS + o))
    ws, as_ = (_prop_values(props.get(OFPTFPT.WRITE_SETFIELD + o)),
               _prop_values(props.get(OFPTFPT.APPLY_SETFIELD + o)))

    def features(label: str, actions: Any, setfields: Any) -> None:
        if actions is None and setfields is None:
            return
        lines.append(f"      {label} features:")
        if actions is not None:
            lines.append("        actions: " + (" ".join(_id_name(_ACTION_NAMES, a) for a in actions) or "<none>"))
        if setfields is not None:
            lines.append("        supported on Set-Field: " + _oxm_names(setfields))

    if wa == aa and ws == as_:
        features("Write-Actions and Apply-Actions", wa, ws)
    else:
        features("Write-Actions", wa, ws)
        features("Apply-Actions", aa, as_)
    return lines


def format_table_features(t: Any) -> str:
    """One ofp_table_features entry, laid out like ovs-ofctl dump-table-features."""
    lines = [f"  table {t.table_id} (\"{t.name}\"):",
             f"    metadata: match={t.metadata_match:#x} write={t.metadata_write:#x}"]
    if t.config:
        lines.append(f"    config={t.config:#x}")
    lines.append(f"    max_entries={t.max_entries}")
    props = _prop_map(t.properties)
    hit, miss = _instruction_section(props, False), _instruction_section(props, True)
    if hit and (not miss or miss == hit):   # no _MISS properties means "same as the others"
        lines.append("    instructions (table miss and others):")
        lines.extend(hit)
    else:
        if hit:
            lines.append("    instructions (other than table miss):")
            lines.extend(hit)
        if miss:
            lines.append("    instructions (table miss):")
            lines.extend(miss)
    match_ids = _prop_values(props.get(OFPTFPT.MATCH))
    wildcard_ids = _prop_values(props.get(OFPTFPT.WILDCARDS)) or []
    if match_ids is not None:
        wild = {_oxm_id_name(i)[0] for i in wildcard_ids}
        arbitrary, optional, exact = [], [], []
        for ident in match_ids:
            name, masked = _oxm_id_name(ident)
            (arbitrary if masked else optional if name in wild else exact).append(name)
        lines.append("    matching:")
        if arbitrary:
            lines.append("      arbitrary mask: " + " ".join(arbitrary))
        if optional:
            lines.append("      exact match or wildcard: " + " ".join(optional))
        if exact:
            lines.append("      must exact match: " + " ".join(exact))
    known = {OFPTFPT.NEXT_TABLES, OFPTFPT.NEXT_TABLES_MISS, OFPTFPT.INSTRUCTIONS, OFPTFPT.INSTRUCTIONS_MISS,
             OFPTFPT.WRITE_ACTIONS, OFPTFPT.WRITE_ACTIONS_MISS, OFPTFPT.APPLY_ACTIONS,
             OFPTFPT.APPLY_ACTIONS_MISS, OFPTFPT.WRITE_SETFIELD, OFPTFPT.WRITE_SETFIELD_MISS,
             OFPTFPT.APPLY_SETFIELD, OFPTFPT.APPLY_SETFIELD_MISS, OFPTFPT.MATCH, OFPTFPT.WILDCARDS}
    for p in t.properties:
        ptype = getattr(p, "type", None)
        if ptype in known:
            continue
        if ptype in (OFPTFPT.EXPERIMENTER, OFPTFPT.EXPERIMENTER_MISS):
            data = bytes(getattr(p, "data", b""))
            miss_text = " (table miss)" if ptype == OFPTFPT.EXPERIMENTER_MISS else ""
            lines.append(f"    experimenter property{miss_text}: experimenter={p.experimenter:#x} "
                         f"exp_type={p.exp_type}" + (f" data=0x{data.hex()}" if data else ""))
        else:
            lines.append(f"    {_generic_object(p)}")
    return "\n".join(lines)


def _table_features(msg: Any) -> str:
    return _mp_flags(msg) + "".join("\n" + format_table_features(t) for t in _body(msg))


_MP_FORMATTERS[(REQ, OFPMP.TABLE_FEATURES)] = _table_features
_MP_FORMATTERS[(REP, OFPMP.TABLE_FEATURES)] = _table_features


def _mp_experimenter(msg: Any) -> str:
    data = bytes(_attr(msg, "data", default=b"") or b"")
    text = (f" experimenter={_attr(msg, 'experimenter', default=0):#x}"
            f" exp_type={_attr(msg, 'exp_type', default=0)} data_len={len(data)}")
    return _mp_flags(msg) + text + ("\n" + hexdump(data) if data else "")


_MP_FORMATTERS[(REQ, OFPMP.EXPERIMENTER)] = _mp_experimenter
_MP_FORMATTERS[(REP, OFPMP.EXPERIMENTER)] = _mp_experimenter
