"""OXM fields (section 7.2.3) and the flow match built from them.

A `Match` is an ordered dict: field name -> value, or (value, mask) for a
masked field. Values are ints, except Ethernet addresses
("aa:bb:cc:dd:ee:ff") and IPv4/IPv6 addresses ("10.0.0.1", "fe80::1").
OXMs of other classes (Nicira NXM, experimenter) are kept opaque so they
round-trip: key (oxm_class, field) or (0xffff, field, experimenter_id),
value the whole TLV as bytes. One experimenter OXM has a name:
"tcp_flags", Open vSwitch's ONFOXM_ET_TCP_FLAGS (oxm_class 0xffff, field
42, experimenter ONF 0x4f4e4600, then 2 bytes of flags, and 2 of mask
when masked; oxm_length counts the experimenter id: 6, or 8), the TCP
flags in OpenFlow 1.3, where no basic field holds them.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from .base import UINT32
from .consts import OFPMT, OFPXMC
from .errors import OFPBMC, OFPET, CodecError

MATCH_HEADER = struct.Struct("!HH")
_OXM = int(OFPMT.OXM)   # plain int: enum lookups are slow on the hot path

MAC, IPV4, IPV6 = "mac", "ipv4", "ipv6"

#: The ONF's experimenter id ("ONF\0"), of its OXMs in OpenFlow 1.3.
ONF_EXPERIMENTER = 0x4F4E4600


@dataclass(frozen=True, slots=True)
class OxmField:
    name: str
    code: int          # field number within OFPXMC_OPENFLOW_BASIC (or within the experimenter's)
    size: int          # value bytes
    maskable: bool
    kind: str | None = None   # MAC/IPV4/IPV6, or None for an integer
    #: for a field of class OFPXMC_EXPERIMENTER: the experimenter id that
    #: follows the header (oxm_length counts its 4 bytes)
    experimenter: int | None = None

    def header(self, masked: bool = False) -> int:
        size = self.size * 2 if masked else self.size
        if self.experimenter is not None:
            return (OFPXMC.EXPERIMENTER << 16) | (self.code << 9) | (int(masked) << 8) | (4 + size)
        return (OFPXMC.OPENFLOW_BASIC << 16) | (self.code << 9) | (int(masked) << 8) | size

    def prefix(self, masked: bool = False) -> bytes:
        """What comes before the value in the TLV: the header (and experimenter id)."""
        head = UINT32.pack(self.header(masked))
        return head if self.experimenter is None else head + UINT32.pack(self.experimenter)


FIELDS = [
    OxmField("in_port", 0, 4, False),
    OxmField("in_phy_port", 1, 4, False),
    OxmField("metadata", 2, 8, True),
    OxmField("eth_dst", 3, 6, True, MAC),
    OxmField("eth_src", 4, 6, True, MAC),
    OxmField("eth_type", 5, 2, False),
    OxmField("vlan_vid", 6, 2, True),
    OxmField("vlan_pcp", 7, 1, False),
    OxmField("ip_dscp", 8, 1, False),
    OxmField("ip_ecn", 9, 1, False),
    OxmField("ip_proto", 10, 1, False),
    OxmField("ipv4_src", 11, 4, True, IPV4),
    OxmField("ipv4_dst", 12, 4, True, IPV4),
    OxmField("tcp_src", 13, 2, False),
    OxmField("tcp_dst", 14, 2, False),
    OxmField("udp_src", 15, 2, False),
    OxmField("udp_dst", 16, 2, False),
    OxmField("sctp_src", 17, 2, False),
    OxmField("sctp_dst", 18, 2, False),
    OxmField("icmpv4_type", 19, 1, False),
    OxmField("icmpv4_code", 20, 1, False),
    OxmField("arp_op", 21, 2, False),
    OxmField("arp_spa", 22, 4, True, IPV4),
    OxmField("arp_tpa", 23, 4, True, IPV4),
    OxmField("arp_sha", 24, 6, True, MAC),
    OxmField("arp_tha", 25, 6, True, MAC),
    OxmField("ipv6_src", 26, 16, True, IPV6),
    OxmField("ipv6_dst", 27, 16, True, IPV6),
    OxmField("ipv6_flabel", 28, 4, True),
    OxmField("icmpv6_type", 29, 1, False),
    OxmField("icmpv6_code", 30, 1, False),
    OxmField("ipv6_nd_target", 31, 16, False, IPV6),
    OxmField("ipv6_nd_sll", 32, 6, False, MAC),
    OxmField("ipv6_nd_tll", 33, 6, False, MAC),
    OxmField("mpls_label", 34, 4, False),
    OxmField("mpls_tc", 35, 1, False),
    OxmField("mpls_bos", 36, 1, False),
    OxmField("pbb_isid", 37, 3, True),
    OxmField("tunnel_id", 38, 8, True),
    OxmField("ipv6_exthdr", 39, 2, True),
]
FIELDS_BY_NAME = {f.name: f for f in FIELDS}
FIELDS_BY_CODE = {f.code: f for f in FIELDS}

#: Open vSwitch's ONFOXM_ET_TCP_FLAGS (ovs-fields(7)): the 12 low bits of the
#: TCP flags (FIN 0x001 ... NS 0x100, and the 3 reserved bits), maskable;
#: prerequisite TCP. (OpenFlow 1.5 has it as the basic field 42.)
ONF_TCP_FLAGS = OxmField("tcp_flags", 42, 2, True, experimenter=ONF_EXPERIMENTER)
#: Experimenter OXMs decoded to a name; any other experimenter OXM stays opaque.
EXPERIMENTER_FIELDS = [ONF_TCP_FLAGS]
EXPERIMENTER_FIELDS_BY_NAME = {f.name: f for f in EXPERIMENTER_FIELDS}


# --- value codecs -----------------------------------------------------------

def _int_reader(size: int) -> Callable[[bytes, int], int]:
    if size in (1, 2, 4, 8):
        unpack = struct.Struct("!" + {1: "B", 2: "H", 4: "I", 8: "Q"}[size]).unpack_from
        return lambda buf, o: unpack(buf, o)[0]
    return lambda buf, o: int.from_bytes(buf[o:o + size], "big")


def _reader(f: OxmField) -> Callable[[bytes, int], Any]:
    if f.kind == MAC:
        return lambda buf, o: buf[o:o + 6].hex(":")
    if f.kind == IPV4:
        return lambda buf, o: socket.inet_ntop(socket.AF_INET, buf[o:o + 4])
    if f.kind == IPV6:
        return lambda buf, o: socket.inet_ntop(socket.AF_INET6, buf[o:o + 16])
    return _int_reader(f.size)


_MAC_CACHE: dict[str, bytes] = {}


def mac_to_bytes(mac: str | bytes) -> bytes:
    # Controllers encode the same few MACs over and over: remember them.
    raw = _MAC_CACHE.get(mac) if type(mac) is str else None
    if raw is not None:
        return raw
    raw = mac if isinstance(mac, (bytes, bytearray)) else bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"not an Ethernet address: {mac!r}")
    raw = bytes(raw)
    if type(mac) is str:
        if len(_MAC_CACHE) >= 65536:
            _MAC_CACHE.clear()
        _MAC_CACHE[mac] = raw
    return raw


def _writer(f: OxmField) -> Callable[[Any], bytes]:
    if f.kind == MAC:
        return mac_to_bytes
    if f.kind == IPV4:
        return lambda v: v if isinstance(v, bytes) else socket.inet_pton(socket.AF_INET, v)
    if f.kind == IPV6:
        return lambda v: v if isinstance(v, bytes) else socket.inet_pton(socket.AF_INET6, v)
    size = f.size
    return lambda v: v.to_bytes(size, "big")


# header word -> (name, decoder returning the value or (value, mask), payload size)
_DECODERS: dict[int, tuple[str, Callable[[bytes, int], Any], int]] = {}
# the named experimenter fields by (field, experimenter id): the field and its
# decoders by header word (decode_oxm, which checks the experimenter id)
_EXPERIMENTER_DECODERS: dict[tuple[int, int], tuple[OxmField, dict[int, Callable[[bytes, int], Any]]]] = {}
# name -> encoder returning the whole TLV
_ENCODERS: dict[str, Callable[[Any], bytes]] = {}
# name -> an encoder giving the same TLV sooner, which may raise where the
# encoder above does not (then Match.pack takes that one)
_FAST_ENCODERS: dict[str, Callable[[Any], bytes]] = {}


def _install(f: OxmField) -> None:
    read, write, size = _reader(f), _writer(f), f.size
    read_masked = lambda buf, o: (read(buf, o), read(buf, o + size))       # noqa: E731
    if f.experimenter is None:
        _DECODERS[f.header(False)] = (f.name, read, size)
        if f.maskable:
            _DECODERS[f.header(True)] = (f.name, read_masked, 2 * size)
    else:
        # (a header word alone does not say which experimenter: see decode_oxm)
        reads = {f.header(False): read}
        if f.maskable:
            reads[f.header(True)] = read_masked
        _EXPERIMENTER_DECODERS[(f.code, f.experimenter)] = (f, reads)
    plain = f.prefix(False)
    masked = f.prefix(True) if f.maskable else None

    def encode(value: Any) -> bytes:
        if type(value) is tuple:
            v, m = value
            if m is not None:
                if masked is None:
                    raise ValueError(f"OXM field {f.name} cannot be masked")
                return masked + write(v) + write(m)
            value = v
        return plain + write(value)

    _ENCODERS[f.name] = encode
    _FAST_ENCODERS[f.name] = _int_encoder(f) or _text_encoder(f, plain, masked) or encode


def _int_encoder(f: OxmField) -> Callable[[Any], bytes] | None:
    """For an integer field of 1, 2, 4 or 8 bytes, `encode` in one struct
    call for int values and (int, int or None) tuples. Anything else
    raises (Match.pack then lets encode_oxm take it), so this never
    accepts what `encode` refuses."""
    code = {1: "B", 2: "H", 4: "I", 8: "Q"}.get(f.size)
    if f.kind is not None or code is None or f.experimenter is not None:
        return None
    plain, header = struct.Struct("!I" + code).pack, f.header(False)
    masked = struct.Struct("!I" + code + code).pack if f.maskable else None
    masked_header = f.header(True)

    def encode_int(value: Any) -> bytes:
        if type(value) is int:
            return plain(header, value)
        v, m = value if type(value) is tuple else (None, None)
        if type(v) is not int:
            raise TypeError(value)
        if m is None:
            return plain(header, v)
        if type(m) is not int or masked is None:
            raise TypeError(value)
        return masked(masked_header, v, m)

    return encode_int


def _text_encoder(f: OxmField, plain: bytes, masked: bytes | None) -> Callable[[Any], bytes] | None:
    """For an address field, `encode` for text values and (text, text or
    None) tuples, with one call to what makes the bytes. Anything else
    raises (Match.pack then lets encode_oxm take it)."""
    if f.kind == MAC:
        to_bytes = mac_to_bytes
    elif f.kind in (IPV4, IPV6):
        to_bytes = partial(socket.inet_pton, socket.AF_INET if f.kind == IPV4 else socket.AF_INET6)
    else:
        return None

    def encode_text(value: Any) -> bytes:
        if type(value) is str:
            return plain + to_bytes(value)
        v, m = value if type(value) is tuple else (None, None)
        if type(v) is not str:
            raise TypeError(value)
        if m is None:
            return plain + to_bytes(v)
        if type(m) is not str or masked is None:
            raise TypeError(value)
        return masked + to_bytes(v) + to_bytes(m)

    return encode_text


for _f in FIELDS + EXPERIMENTER_FIELDS:
    _install(_f)


_BASIC = int(OFPXMC.OPENFLOW_BASIC)       # plain ints: enum lookups are slow on the hot path
_EXPERIMENTER = int(OFPXMC.EXPERIMENTER)


def oxm_key(buf: bytes, o: int) -> tuple:
    """Dict key for a non-basic OXM at offset o."""
    header = UINT32.unpack_from(buf, o)[0]
    oxm_class, field = header >> 16, (header >> 9) & 0x7F
    if oxm_class == _EXPERIMENTER:
        return (oxm_class, field, UINT32.unpack_from(buf, o + 4)[0])
    return (oxm_class, field)


def decode_oxm(buf: bytes, o: int, end: int, err_type: int = OFPET.BAD_MATCH) -> tuple[Any, Any, int]:
    """Decode one OXM TLV at offset o: (key, value, offset after it)."""
    if o + 4 > end:
        raise CodecError(err_type, OFPBMC.BAD_LEN, "OXM header truncated", o)
    header = UINT32.unpack_from(buf, o)[0]
    spec = _DECODERS.get(header)
    if spec is not None:
        name, read, size = spec
        after = o + 4 + size
        if after > end:
            raise CodecError(err_type, OFPBMC.BAD_LEN, f"OXM {name} truncated", o)
        return name, read(buf, o + 4), after
    oxm_class, code, hasmask, length = header >> 16, (header >> 9) & 0x7F, (header >> 8) & 1, header & 0xFF
    after = o + 4 + length
    if after > end:
        raise CodecError(err_type, OFPBMC.BAD_LEN, f"OXM class {oxm_class:#x} field {code} overruns", o)
    if oxm_class == _BASIC:
        f = FIELDS_BY_CODE.get(code)
        if f is None:
            raise CodecError(err_type, OFPBMC.BAD_FIELD, f"unknown OXM basic field {code}", o)
        if hasmask and not f.maskable:
            raise CodecError(err_type, OFPBMC.BAD_MASK, f"OXM {f.name} cannot be masked", o)
        raise CodecError(err_type, OFPBMC.BAD_LEN,
                         f"OXM {f.name} length {length}, expected {f.size * (1 + hasmask)}", o)
    if oxm_class == _EXPERIMENTER:
        if length < 4:
            raise CodecError(err_type, OFPBMC.BAD_LEN, "experimenter OXM without experimenter id", o)
        named = _EXPERIMENTER_DECODERS.get((code, UINT32.unpack_from(buf, o + 4)[0]))
        if named is not None:
            f, reads = named
            read = reads.get(header)
            if read is None:
                if hasmask and not f.maskable:
                    raise CodecError(err_type, OFPBMC.BAD_MASK, f"OXM {f.name} cannot be masked", o)
                raise CodecError(err_type, OFPBMC.BAD_LEN, f"OXM {f.name} length {length}, expected "
                                 f"{4 + f.size * (1 + hasmask)}", o)
            return f.name, read(buf, o + 8), after
    return oxm_key(buf, o), buf[o:after], after


def encode_oxm(key: Any, value: Any) -> bytes:
    """One OXM TLV for a Match key and value."""
    if type(key) is str:
        try:
            return _ENCODERS[key](value)
        except KeyError:
            raise ValueError(f"unknown OXM field {key!r}") from None
        except (TypeError, OverflowError, OSError, AttributeError) as exc:
            raise ValueError(f"bad value for OXM field {key}: {value!r} ({exc})") from None
    return bytes(value)


class Match(dict):
    """An OpenFlow match: ordered OXM fields, e.g. Match(in_port=1, eth_type=0x800)."""

    __slots__ = ()

    def pack(self) -> bytes:
        fast = _FAST_ENCODERS
        try:
            # a key that is not a field name is an opaque OXM: its value is the
            # TLV (bytes(value), as encode_oxm has it)
            if len(self) <= 16:                  # most matches: quicker than a comprehension
                body = b""
                for k, v in self.items():
                    body += fast[k](v) if type(k) is str else bytes(v)
            else:
                body = b"".join([fast[k](v) if type(k) is str else bytes(v) for k, v in self.items()])
        except Exception:
            # not only basic fields with plain values: encode_oxm encodes them or names the error
            body = b"".join([encode_oxm(k, v) for k, v in self.items()])
        length = 4 + len(body)
        return MATCH_HEADER.pack(_OXM, length) + body + bytes(-length & 7)

    def __repr__(self) -> str:
        return "Match(" + ", ".join(
            f"{k}={v!r}" if type(k) is str else f"{k!r}: {v!r}" for k, v in self.items()
        ) + ")"


def unpack_match(buf: bytes, o: int, end: int) -> tuple[Match, int]:
    """Decode an ofp_match at offset o: (match, offset after its padding)."""
    if o + 4 > end:
        raise CodecError(OFPET.BAD_MATCH, OFPBMC.BAD_LEN, "match header truncated", o)
    match_type, length = MATCH_HEADER.unpack_from(buf, o)
    if match_type != _OXM:
        raise CodecError(OFPET.BAD_MATCH, OFPBMC.BAD_TYPE, f"match type {match_type}, expected OXM (1)", o)
    stop = o + length
    padded = o + length + (-length & 7)
    if length < 4 or padded > end:
        raise CodecError(OFPET.BAD_MATCH, OFPBMC.BAD_LEN, f"match length {length} invalid", o)
    match = Match()
    p = o + 4
    decoders, unpack_header = _DECODERS, UINT32.unpack_from
    while p < stop:
        # Fast path for basic fields; decode_oxm handles the rest and errors.
        spec = decoders.get(unpack_header(buf, p)[0]) if p + 4 <= stop else None
        if spec is not None and p + 4 + spec[2] <= stop:
            key, read, size = spec
            value = read(buf, p + 4)
            at, p = p, p + 4 + size
        else:
            at = p
            key, value, p = decode_oxm(buf, p, stop)
        if key in match:
            raise CodecError(OFPET.BAD_MATCH, OFPBMC.DUP_FIELD, f"OXM {key} appears twice", at)
        match[key] = value
    return match, padded
