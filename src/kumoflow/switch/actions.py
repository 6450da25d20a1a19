"""Actions: validation (at flow-mod / group-mod / packet-out time) and the
header actions executed on a `flowkey.Packet`.

`validate_actions` turns a list of ofp actions into compiled tuples
``(OFPAT type, arg, arg)`` and raises SwitchError with the code section 6.4
and 7.5.4 name for an invalid action. When given the match's `state` (what
the flow's match pins down) it also checks consistency as Open vSwitch
does for OpenFlow 1.3: set-field needs its field's prerequisites, pop VLAN
a VLAN tag, pop MPLS / MPLS TTL actions an MPLS ethertype, IP TTL actions
an IP ethertype -> BAD_ACTION/MATCH_INCONSISTENT. Pushes and pops update
the state for the actions after them.

Header actions change `pkt.data` in place, keep the flow key in step
(set-field updates the one field; push/pop re-extract the headers), and
update the IPv4 header, TCP, UDP, ICMP and ICMPv6 checksums incrementally
(RFC 1624), and SCTP's CRC32c by recomputing it, so a partial checksum
(offloads) or a first fragment stays correct.
"""

from __future__ import annotations

import struct

from kumoflow import ofp
from kumoflow.ofp.consts import OFPAT, OFPG, OFPP
from kumoflow.ofp.errors import OFPBAC, OFPET
from kumoflow.ofp.oxm import FIELDS_BY_NAME

from . import flowkey as fk
from .errors import SwitchError
from .flowmatch import FULL, MAX_VALUE, VLAN_PRESENT, prereq_ok, to_int

P = fk.PRESENT
_from = int.from_bytes

OUTPUT, COPY_TTL_OUT, COPY_TTL_IN = OFPAT.OUTPUT.value, OFPAT.COPY_TTL_OUT.value, OFPAT.COPY_TTL_IN.value
SET_MPLS_TTL, DEC_MPLS_TTL = OFPAT.SET_MPLS_TTL.value, OFPAT.DEC_MPLS_TTL.value
PUSH_VLAN, POP_VLAN, PUSH_MPLS, POP_MPLS = (OFPAT.PUSH_VLAN.value, OFPAT.POP_VLAN.value,
                                            OFPAT.PUSH_MPLS.value, OFPAT.POP_MPLS.value)
SET_QUEUE, GROUP, SET_NW_TTL, DEC_NW_TTL = (OFPAT.SET_QUEUE.value, OFPAT.GROUP.value, OFPAT.SET_NW_TTL.value,
                                            OFPAT.DEC_NW_TTL.value)
SET_FIELD, PUSH_PBB, POP_PBB = OFPAT.SET_FIELD.value, OFPAT.PUSH_PBB.value, OFPAT.POP_PBB.value

#: Fields set-field may not change: the pipeline fields (section 7.2.6.7)
#: and the ipv6_exthdr pseudo-field, which no header holds; and tcp_flags,
#: read-only in Open vSwitch too (and not a basic field: check_set_field
#: refuses it by name). (eth_type and ip_proto may be set, as the
#: specification allows; the packet is then parsed again as the new type.)
NOT_SETTABLE = frozenset((fk.IN_PORT, fk.IN_PHY_PORT, fk.METADATA, fk.IPV6_EXTHDR, fk.TCP_FLAGS))
SETTABLE = frozenset(range(fk.N_FIELDS)) - NOT_SETTABLE

#: The action set's execution order (section 5.10); set-fields go at SET_RANK.
SET_RANK = 10
_RANK = {COPY_TTL_IN: 0, POP_VLAN: 1, POP_PBB: 2, POP_MPLS: 3, PUSH_MPLS: 4, PUSH_PBB: 5, PUSH_VLAN: 6,
         COPY_TTL_OUT: 7, DEC_MPLS_TTL: 8, DEC_NW_TTL: 9, SET_MPLS_TTL: SET_RANK, SET_NW_TTL: SET_RANK,
         SET_FIELD: SET_RANK, SET_QUEUE: 11, GROUP: 12, OUTPUT: 13}


def rank(act: tuple) -> int:
    return _RANK[act[0]]


def slot(act: tuple):
    """The action set slot of a compiled action: one per type, one per set-field field."""
    return (SET_FIELD, act[1]) if act[0] == SET_FIELD else act[0]


def set_order(acts: list) -> list:
    """Compiled actions sorted into action-set order (stable)."""
    return sorted(acts, key=rank)


class ActionEnv:
    """What validation needs to know about the switch (the datapath implements it)."""

    def group_exists(self, group_id: int) -> bool:
        raise NotImplementedError

    def queue_exists(self, queue_id: int) -> bool:
        raise NotImplementedError


def _bad(code: int, detail: str) -> SwitchError:
    return SwitchError(OFPET.BAD_ACTION, code, detail)


_STATE_IP_FIELDS = frozenset(range(fk.IP_DSCP, fk.IPV6_EXTHDR + 1)) - {fk.TUNNEL_ID} | {fk.TCP_FLAGS}
_L2_KEEP = frozenset((fk.IN_PORT, fk.IN_PHY_PORT, fk.METADATA, fk.TUNNEL_ID, fk.ETH_DST, fk.ETH_SRC))
_L4_FIELDS = frozenset((fk.TCP_SRC, fk.TCP_DST, fk.UDP_SRC, fk.UDP_DST, fk.SCTP_SRC, fk.SCTP_DST, fk.ICMPV4_TYPE,
                        fk.ICMPV4_CODE, fk.ICMPV6_TYPE, fk.ICMPV6_CODE, fk.IPV6_ND_TARGET, fk.IPV6_ND_SLL,
                        fk.IPV6_ND_TLL, fk.TCP_FLAGS))


def check_set_field(action: ofp.SetField) -> tuple[int, int]:
    """(field code, value) of a set-field, or SwitchError BAD_SET_TYPE/ARGUMENT."""
    name, value = action.field, action.value
    f = FIELDS_BY_NAME.get(name) if type(name) is str else None
    if f is None:
        raise _bad(OFPBAC.BAD_SET_TYPE, f"set-field of {name!r}: not an OpenFlow basic field")
    code = f.code
    if code in NOT_SETTABLE:
        raise _bad(OFPBAC.BAD_SET_TYPE, f"set-field of {name} is not supported")
    if type(value) is tuple:
        if value[1] is not None:
            raise _bad(OFPBAC.BAD_SET_ARGUMENT, f"set-field of {name} with a mask (OpenFlow 1.3 has none)")
        value = value[0]
    try:
        v = to_int(f, value)
    except (ValueError, TypeError, OSError, AttributeError):
        raise _bad(OFPBAC.BAD_SET_ARGUMENT, f"set-field {name}: bad value {value!r}") from None
    if not 0 <= v <= MAX_VALUE.get(code, FULL[code]):
        raise _bad(OFPBAC.BAD_SET_ARGUMENT, f"set-field {name}: value {v:#x} out of range")
    if code == fk.VLAN_VID:
        if not v & 0x1000:      # 7.2.5: "the OFPVID_PRESENT bit must be set in OXM_OF_VLAN_VID set-field actions"
            raise _bad(OFPBAC.BAD_SET_ARGUMENT, f"set-field vlan_vid {v:#x} without OFPVID_PRESENT (0x1000)")
        v &= 0xFFF
    return code, v


def validate_actions(actions: list, env: ActionEnv, state: dict | None = None, *,
                     allow_table: bool = False, out_ports: set | None = None,
                     groups: set | None = None) -> list[tuple]:
    """Check an action list and compile it.

    `state` (a dict, updated in place) enables the consistency checks;
    `out_ports` / `groups` collect the ports and groups the actions send to.
    """
    compiled = []
    for a in actions:
        t = a.TYPE
        if t == OUTPUT:
            port = a.port
            if port == OFPP.TABLE:
                if not allow_table:
                    raise _bad(OFPBAC.BAD_OUT_PORT, "output to TABLE is only valid in a packet-out")
            elif port == 0 or port == OFPP.ANY or OFPP.MAX < port < OFPP.IN_PORT:
                raise _bad(OFPBAC.BAD_OUT_PORT, f"output to invalid port {port:#x}")
            if out_ports is not None:
                out_ports.add(port)
            compiled.append((OUTPUT, port, a.max_len))
        elif t == SET_FIELD:
            code, v = check_set_field(a)
            if state is not None:
                if not prereq_ok(code, state):
                    raise _bad(OFPBAC.MATCH_INCONSISTENT,
                               f"set-field {a.field}: its prerequisites are not in the match")
                if code == fk.ETH_TYPE:                 # the packet is another protocol now
                    for k in list(state):
                        if k not in _L2_KEEP and k not in (VLAN_PRESENT, fk.VLAN_VID, fk.VLAN_PCP):
                            del state[k]
                elif code == fk.IP_PROTO:
                    for k in list(state):
                        if k in _L4_FIELDS:
                            del state[k]
                state[code] = v
            compiled.append((SET_FIELD, code, v))
        elif t == GROUP:
            gid = a.group_id
            if gid > OFPG.MAX or not env.group_exists(gid):
                raise _bad(OFPBAC.BAD_OUT_GROUP, f"group {gid} does not exist")
            if groups is not None:
                groups.add(gid)
            compiled.append((GROUP, gid, None))
        elif t == SET_QUEUE:
            if not env.queue_exists(a.queue_id):
                raise _bad(OFPBAC.BAD_QUEUE, f"no port has queue {a.queue_id}")
            compiled.append((SET_QUEUE, a.queue_id, None))
        elif t == PUSH_VLAN:
            if a.ethertype not in fk.VLAN_TPIDS:
                raise _bad(OFPBAC.BAD_ARGUMENT, f"push VLAN with ethertype {a.ethertype:#06x}")
            if state is not None:
                state[VLAN_PRESENT] = True
            compiled.append((PUSH_VLAN, a.ethertype, None))
        elif t == POP_VLAN:
            if state is not None:
                if not state.get(VLAN_PRESENT):
                    raise _bad(OFPBAC.MATCH_INCONSISTENT, "pop VLAN but the match does not require a VLAN tag")
                for k in (VLAN_PRESENT, fk.VLAN_VID, fk.VLAN_PCP):
                    state.pop(k, None)
            compiled.append((POP_VLAN, None, None))
        elif t == PUSH_MPLS:
            if a.ethertype not in fk.MPLS_TYPES:
                raise _bad(OFPBAC.BAD_ARGUMENT, f"push MPLS with ethertype {a.ethertype:#06x}")
            if state is not None:
                for k in _STATE_IP_FIELDS:
                    state.pop(k, None)
                state[fk.ETH_TYPE] = a.ethertype
            compiled.append((PUSH_MPLS, a.ethertype, None))
        elif t == POP_MPLS:
            if state is not None:
                if state.get(fk.ETH_TYPE) not in fk.MPLS_TYPES:
                    raise _bad(OFPBAC.MATCH_INCONSISTENT, "pop MPLS but the match is not MPLS")
                for k in _STATE_IP_FIELDS:
                    state.pop(k, None)
                state[fk.ETH_TYPE] = a.ethertype
            compiled.append((POP_MPLS, a.ethertype, None))
        elif t == PUSH_PBB:
            if a.ethertype != fk.ETH_TYPE_PBB:
                raise _bad(OFPBAC.BAD_ARGUMENT, f"push PBB with ethertype {a.ethertype:#06x}")
            if state is not None:
                for k in list(state):
                    if k not in _L2_KEEP:
                        del state[k]
                state[fk.ETH_TYPE] = fk.ETH_TYPE_PBB
            compiled.append((PUSH_PBB, a.ethertype, None))
        elif t == POP_PBB:
            if state is not None:
                if state.get(fk.ETH_TYPE) != fk.ETH_TYPE_PBB:
                    raise _bad(OFPBAC.MATCH_INCONSISTENT, "pop PBB but the match is not PBB")
                for k in list(state):
                    if k not in _L2_KEEP:
                        del state[k]
                state.pop(fk.ETH_DST, None)
                state.pop(fk.ETH_SRC, None)
            compiled.append((POP_PBB, None, None))
        elif t in (SET_MPLS_TTL, DEC_MPLS_TTL):
            if state is not None and state.get(fk.ETH_TYPE) not in fk.MPLS_TYPES:
                raise _bad(OFPBAC.MATCH_INCONSISTENT, "MPLS TTL action but the match is not MPLS")
            compiled.append((t, getattr(a, "mpls_ttl", None), None))
        elif t in (SET_NW_TTL, DEC_NW_TTL):
            if state is not None and state.get(fk.ETH_TYPE) not in (fk.ETH_TYPE_IPV4, fk.ETH_TYPE_IPV6):
                raise _bad(OFPBAC.MATCH_INCONSISTENT, "IP TTL action but the match is not IPv4 or IPv6")
            compiled.append((t, getattr(a, "nw_ttl", None), None))
        elif t in (COPY_TTL_IN, COPY_TTL_OUT):
            compiled.append((t, None, None))
        elif t == OFPAT.EXPERIMENTER:
            raise _bad(OFPBAC.BAD_EXPERIMENTER, f"experimenter action {a.experimenter:#x} is not supported")
        else:
            raise _bad(OFPBAC.BAD_TYPE, f"action type {t} is not supported")
    return compiled


# --- checksums ------------------------------------------------------------------

def _csum_adjust(d: bytearray, at: int, old: bytes, new: bytes, udp: bool) -> None:
    """RFC 1624 update of the 16-bit checksum at `at` for a region whose
    (word-aligned) bytes `old` became `new`."""
    hc = d[at] << 8 | d[at + 1]
    if udp and hc == 0:
        return                                  # UDP over IPv4 without a checksum
    o = _from(old, "big")
    n = _from(new, "big")
    if len(old) & 1:
        o <<= 8
        n <<= 8
    s = (0xFFFF - hc + n - o) % 0xFFFF
    hc = 0xFFFF - s if s else 0
    if udp and hc == 0:
        hc = 0xFFFF
    d[at] = hc >> 8
    d[at + 1] = hc & 0xFF


def ttl_down_checksum(hc: int) -> int:
    """The IPv4 header checksum `hc` after the TTL went down by one: the word
    (TTL, protocol) lost 0x100, and _csum_adjust's RFC 1624 update gives
    this (for compiled L3 hops, which rewrite frames without a Packet)."""
    s = (0xFFFF - hc - 0x100) % 0xFFFF
    return 0xFFFF - s if s else 0


def _modify(pkt: fk.Packet, off: int, new: bytes, csums: tuple = ()) -> bool:
    """Write `new` at `off`, updating each checksum in `csums`: tuples
    (checksum offset, region start or None for a pseudo-header field, is_udp)."""
    d = pkt.data
    end = off + len(new)
    if off < 0 or end > len(d):
        return False
    spans = []
    n = len(d)
    for at, region, udp in csums:
        if at < 0 or at + 2 > n:
            continue
        if region is None:
            a, b = off, end
        else:
            a = off - ((off - region) & 1)
            b = end + ((end - region) & 1)
            if b > n:
                b = n
        spans.append((at, a, b, bytes(d[a:b]), udp))
    d[off:end] = new
    for at, a, b, old, udp in spans:
        _csum_adjust(d, at, old, bytes(d[a:b]), udp)
    return True


def _icmp_zero_sum(pkt: fk.Packet) -> None:
    """Incremental updates cannot tell +0 from -0: an ICMPv4 message (no
    pseudo-header) whose words are all zero sums to +0, checksum 0xFFFF."""
    d, l4 = pkt.data, pkt.l4
    if d[l4 + 2] == 0 and d[l4 + 3] == 0 and not any(d[l4:l4 + 2]) and not any(d[l4 + 4:pkt.ip_end]):
        d[l4 + 2] = d[l4 + 3] = 0xFF


def _ipv4_csum(pkt: fk.Packet) -> tuple:
    return (pkt.l3 + 10, pkt.l3, False)


def _l4_pseudo(pkt: fk.Packet) -> tuple:
    """Checksum entries of the transport checksum that covers the IP pseudo-header."""
    l4 = pkt.l4
    if l4 < 0:
        return ()
    proto = pkt.key[fk.IP_PROTO] & ~P
    if proto == fk.PROTO_TCP:
        return ((l4 + 16, None, False),)
    if proto == fk.PROTO_UDP:
        return ((l4 + 6, None, True),)
    if proto == fk.PROTO_ICMPV6 and pkt.key[fk.IPV6_SRC]:
        return ((l4 + 2, None, False),)
    return ()


_CRC32C = []


def _crc32c_table() -> list:
    if not _CRC32C:
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            _CRC32C.append(c)
    return _CRC32C


def crc32c(data: bytes) -> int:
    table = _crc32c_table()
    crc = 0xFFFFFFFF
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


def _sctp_recompute(pkt: fk.Packet) -> None:
    d, l4 = pkt.data, pkt.l4
    end = pkt.ip_end
    if l4 < 0 or l4 + 12 > end or pkt.frag:
        return
    d[l4 + 8:l4 + 12] = b"\0\0\0\0"
    d[l4 + 8:l4 + 12] = struct.pack("<I", crc32c(bytes(d[l4:end])))


# --- set-field --------------------------------------------------------------------

def set_field(pkt: fk.Packet, code: int, v: int) -> None:
    """Set one header field (a no-op when the packet does not have it)."""
    k = pkt.key
    if not k[code] & P:
        return
    d = pkt.data
    l3, l4 = pkt.l3, pkt.l4
    if code == fk.ETH_DST:
        d[0:6] = v.to_bytes(6, "big")
    elif code == fk.ETH_SRC:
        d[6:12] = v.to_bytes(6, "big")
    elif code == fk.ETH_TYPE:
        if pkt.et_off >= 0:
            d[pkt.et_off:pkt.et_off + 2] = v.to_bytes(2, "big")
            fk.extract(pkt)                     # a new type: parse it again
        return
    elif code == fk.IP_PROTO:
        at = pkt.nh_off
        if at >= 0:
            if k[fk.IPV4_SRC]:
                _modify(pkt, at, bytes((v,)), (_ipv4_csum(pkt),))
            else:
                d[at] = v
            fk.extract(pkt)
        return
    elif code == fk.VLAN_VID:
        o = pkt.vlan_off
        if o < 0:
            return
        tci = (d[o + 2] << 8 | d[o + 3]) & 0xF000 | v
        d[o + 2:o + 4] = tci.to_bytes(2, "big")
        k[code] = P | 0x1000 | v
        return
    elif code == fk.VLAN_PCP:
        o = pkt.vlan_off
        if o < 0:
            return
        tci = (d[o + 2] << 8 | d[o + 3]) & 0x1FFF | v << 13
        d[o + 2:o + 4] = tci.to_bytes(2, "big")
    elif code == fk.IP_DSCP or code == fk.IP_ECN:
        if k[fk.IPV4_SRC]:
            tos = d[l3 + 1]
            tos = (tos & 3 | v << 2) if code == fk.IP_DSCP else (tos & 0xFC | v)
            _modify(pkt, l3 + 1, bytes((tos,)), (_ipv4_csum(pkt),))
        else:
            tc = (d[l3] & 15) << 4 | d[l3 + 1] >> 4
            tc = (tc & 3 | v << 2) if code == fk.IP_DSCP else (tc & 0xFC | v)
            d[l3] = d[l3] & 0xF0 | tc >> 4
            d[l3 + 1] = d[l3 + 1] & 0x0F | (tc & 15) << 4
    elif code == fk.IPV4_SRC or code == fk.IPV4_DST:
        off = l3 + (12 if code == fk.IPV4_SRC else 16)
        _modify(pkt, off, v.to_bytes(4, "big"), (_ipv4_csum(pkt),) + _l4_pseudo(pkt))
    elif code == fk.IPV6_SRC or code == fk.IPV6_DST:
        off = l3 + (8 if code == fk.IPV6_SRC else 24)
        _modify(pkt, off, v.to_bytes(16, "big"), _l4_pseudo(pkt))
    elif code == fk.IPV6_FLABEL:
        d[l3 + 1] = d[l3 + 1] & 0xF0 | v >> 16
        d[l3 + 2] = (v >> 8) & 0xFF
        d[l3 + 3] = v & 0xFF
    elif code in (fk.TCP_SRC, fk.TCP_DST):
        _modify(pkt, l4 + (0 if code == fk.TCP_SRC else 2), v.to_bytes(2, "big"), ((l4 + 16, l4, False),))
    elif code in (fk.UDP_SRC, fk.UDP_DST):
        _modify(pkt, l4 + (0 if code == fk.UDP_SRC else 2), v.to_bytes(2, "big"), ((l4 + 6, l4, True),))
    elif code in (fk.SCTP_SRC, fk.SCTP_DST):
        off = l4 + (0 if code == fk.SCTP_SRC else 2)
        d[off:off + 2] = v.to_bytes(2, "big")
        _sctp_recompute(pkt)
    elif code in (fk.ICMPV4_TYPE, fk.ICMPV4_CODE, fk.ICMPV6_TYPE, fk.ICMPV6_CODE):
        off = l4 + (0 if code in (fk.ICMPV4_TYPE, fk.ICMPV6_TYPE) else 1)
        _modify(pkt, off, bytes((v,)), ((l4 + 2, l4, False),))
        if code == fk.ICMPV4_TYPE or code == fk.ICMPV4_CODE:
            _icmp_zero_sum(pkt)
    elif code == fk.IPV6_ND_TARGET:
        _modify(pkt, l4 + 8, v.to_bytes(16, "big"), ((l4 + 2, l4, False),))
    elif code == fk.IPV6_ND_SLL or code == fk.IPV6_ND_TLL:
        off = pkt.nd_sll if code == fk.IPV6_ND_SLL else pkt.nd_tll
        if off < 0:
            return                                  # no such option: nothing to set
        _modify(pkt, off, v.to_bytes(6, "big"), ((l4 + 2, l4, False),))
    elif code == fk.ARP_OP:
        d[l3 + 6:l3 + 8] = v.to_bytes(2, "big")
    elif code == fk.ARP_SHA:
        d[l3 + 8:l3 + 14] = v.to_bytes(6, "big")
    elif code == fk.ARP_SPA:
        d[l3 + 14:l3 + 18] = v.to_bytes(4, "big")
    elif code == fk.ARP_THA:
        d[l3 + 18:l3 + 24] = v.to_bytes(6, "big")
    elif code == fk.ARP_TPA:
        d[l3 + 24:l3 + 28] = v.to_bytes(4, "big")
    elif code in (fk.MPLS_LABEL, fk.MPLS_TC, fk.MPLS_BOS):
        lse = _from(d[l3:l3 + 4], "big")
        if code == fk.MPLS_LABEL:
            lse = lse & 0xFFF | v << 12
        elif code == fk.MPLS_TC:
            lse = lse & ~(7 << 9) | v << 9
        else:
            lse = lse & ~(1 << 8) | v << 8
        d[l3:l3 + 4] = lse.to_bytes(4, "big")
    elif code == fk.PBB_ISID:
        d[l3 + 1:l3 + 4] = v.to_bytes(3, "big")
    elif code == fk.TUNNEL_ID:
        pass
    else:                                            # not settable: refused at validation
        return
    k[code] = P | v


# --- push / pop -------------------------------------------------------------------

def push_vlan(pkt: fk.Packet, tpid: int) -> None:
    d = pkt.data
    if len(d) < 14:
        return
    o = pkt.vlan_off
    tci = (d[o + 2] << 8 | d[o + 3]) & 0xEFFF if o >= 0 else 0    # VID and PCP copied, DEI 0
    d[12:12] = bytes((tpid >> 8, tpid & 0xFF, tci >> 8, tci & 0xFF))
    fk.extract(pkt)


def pop_vlan(pkt: fk.Packet) -> None:
    if pkt.vlan_off >= 0:
        del pkt.data[12:16]
        fk.extract(pkt)


def _ip_ttl(pkt: fk.Packet) -> int | None:
    k = pkt.key
    if k[fk.IPV4_SRC]:
        return pkt.data[pkt.l3 + 8]
    if k[fk.IPV6_SRC]:
        return pkt.data[pkt.l3 + 7]
    return None


def push_mpls(pkt: fk.Packet, ethertype: int) -> None:
    """Push a label stack entry after the Ethernet header and VLAN tags.

    Label and TC are copied from an existing outer label (else 0), TTL from
    it or from the IP TTL (else 0); bottom of stack when there was no label.
    """
    d = pkt.data
    if pkt.et_off < 0:
        return
    k = pkt.key
    l3 = pkt.l3
    if k[fk.MPLS_LABEL]:
        lse = _from(d[l3:l3 + 4], "big") & ~(1 << 8)
    else:
        ttl = _ip_ttl(pkt) or 0
        lse = 1 << 8 | ttl
    d[pkt.et_off:pkt.et_off + 2] = ethertype.to_bytes(2, "big")
    d[l3:l3] = lse.to_bytes(4, "big")
    fk.extract(pkt)


def pop_mpls(pkt: fk.Packet, ethertype: int) -> None:
    if not pkt.key[fk.MPLS_LABEL]:
        return
    d = pkt.data
    del d[pkt.l3:pkt.l3 + 4]
    d[pkt.et_off:pkt.et_off + 2] = ethertype.to_bytes(2, "big")
    fk.extract(pkt)


def push_pbb(pkt: fk.Packet, ethertype: int) -> None:
    """Push a PBB service instance header: B-DA/B-SA copied from the
    customer addresses, I-SID from an existing I-TAG (else 0), I-PCP from
    the VLAN PCP (else 0)."""
    d = pkt.data
    if len(d) < 14:
        return
    k = pkt.key
    isid = k[fk.PBB_ISID] & ~P if k[fk.PBB_ISID] else 0
    pcp = k[fk.VLAN_PCP] & ~P if k[fk.VLAN_PCP] else 0
    itag = (pcp << 29 | isid).to_bytes(4, "big")
    d[0:0] = bytes(d[0:12]) + ethertype.to_bytes(2, "big") + itag
    fk.extract(pkt)


def pop_pbb(pkt: fk.Packet) -> None:
    if not pkt.key[fk.PBB_ISID]:
        return
    start = pkt.l3 + 4
    if start + 14 > len(pkt.data):
        return
    del pkt.data[0:start]
    fk.extract(pkt)


# --- TTLs ---------------------------------------------------------------------------

def set_nw_ttl(pkt: fk.Packet, ttl: int) -> None:
    k = pkt.key
    if k[fk.IPV4_SRC]:
        _modify(pkt, pkt.l3 + 8, bytes((ttl,)), (_ipv4_csum(pkt),))
    elif k[fk.IPV6_SRC]:
        pkt.data[pkt.l3 + 7] = ttl


def dec_nw_ttl(pkt: fk.Packet) -> bool:
    """Decrement the IP TTL; False when it is invalid (would reach 0)."""
    ttl = _ip_ttl(pkt)
    if ttl is None:
        return True
    if ttl <= 1:
        return False
    set_nw_ttl(pkt, ttl - 1)
    return True


def set_mpls_ttl(pkt: fk.Packet, ttl: int) -> None:
    if pkt.key[fk.MPLS_LABEL]:
        pkt.data[pkt.l3 + 3] = ttl


def dec_mpls_ttl(pkt: fk.Packet) -> bool:
    if not pkt.key[fk.MPLS_LABEL]:
        return True
    ttl = pkt.data[pkt.l3 + 3]
    if ttl <= 1:
        return False
    pkt.data[pkt.l3 + 3] = ttl - 1
    return True


def _inner_ttl_offset(pkt: fk.Packet) -> tuple[int, int] | None:
    """(offset of the next-to-outermost TTL, IPv4 header offset or -1) of an MPLS packet."""
    d, l3 = pkt.data, pkt.l3
    if not pkt.key[fk.MPLS_LABEL]:
        return None
    if not d[l3 + 2] & 1:                 # not bottom of stack: the next label
        return (l3 + 7, -1) if l3 + 8 <= len(d) else None
    ip = l3 + 4
    if ip + 20 <= len(d) and d[ip] >> 4 == 4:
        return ip + 8, ip
    if ip + 40 <= len(d) and d[ip] >> 4 == 6:
        return ip + 7, -1
    return None


def copy_ttl_out(pkt: fk.Packet) -> None:
    """Next-to-outermost TTL -> outermost (MPLS packets)."""
    inner = _inner_ttl_offset(pkt)
    if inner is not None:
        pkt.data[pkt.l3 + 3] = pkt.data[inner[0]]


def copy_ttl_in(pkt: fk.Packet) -> None:
    """Outermost TTL -> next-to-outermost (MPLS packets)."""
    inner = _inner_ttl_offset(pkt)
    if inner is None:
        return
    at, ip = inner
    ttl = pkt.data[pkt.l3 + 3]
    if ip >= 0:
        _modify(pkt, at, bytes((ttl,)), ((ip + 10, ip, False),))
    else:
        pkt.data[at] = ttl


def dscp_remark(pkt: fk.Packet, prec_level: int) -> None:
    """Raise the drop precedence of an Assured Forwarding DSCP (AFxy, RFC
    2597) by prec_level (y capped at 3); other code points are left alone."""
    dscp = pkt.key[fk.IP_DSCP]
    if not dscp:
        return
    dscp &= 0x3F
    cls, prec = dscp >> 3, (dscp >> 1) & 3
    if 1 <= cls <= 4 and not dscp & 1 and prec:
        new = cls << 3 | min(3, prec + prec_level) << 1
        if new != dscp:
            set_field(pkt, fk.IP_DSCP, new)
