"""Message base class, the type registry and `parse`.

Every decoder works on the whole message buffer with absolute offsets
(struct.unpack_from), so nothing is sliced until a value is produced and
every error can name the byte where it happened.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable, ClassVar

from .consts import OFP_VERSION, OFPT
from .errors import OFPBRC, OFPET, CodecError

HEADER = struct.Struct("!BBHI")
UINT16 = struct.Struct("!H")
UINT32 = struct.Struct("!I")
UINT64 = struct.Struct("!Q")
TLV_HEADER = struct.Struct("!HH")
MAX_BODY = 0xFFFF - 8
_HELLO = int(OFPT.HELLO)   # plain int: enum lookups are slow on the hot path

# OFPT -> message class, for every type but multipart (see MULTIPART_*).
MESSAGE_TYPES: dict[int, type["Message"]] = {}
# OFPMP -> request / reply class.
MULTIPART_REQUESTS: dict[int, type["Message"]] = {}
MULTIPART_REPLIES: dict[int, type["Message"]] = {}

# Low-level failures inside a decoder mean the bytes ran out or a length
# field lied; `parse` turns them into BAD_LEN so nothing else escapes.
_LOW_LEVEL = (struct.error, IndexError, ValueError, KeyError, OverflowError, UnicodeError)


def pad8(n: int) -> int:
    """Bytes of padding that bring `n` to a multiple of 8."""
    return -n & 7


def fixed_string(raw: bytes) -> str:
    """A NUL-padded fixed-length string field (port and table names, descs)."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def pack_string(text: str, size: int) -> bytes:
    raw = text.encode("utf-8")[: size - 1]
    raw = raw.decode("utf-8", "ignore").encode("utf-8")   # never cut a character in half
    return raw + bytes(size - len(raw))


@dataclass(slots=True)
class Message:
    """An OpenFlow message. Subclasses are dataclasses of the body fields.

    ``str(msg)`` gives readable text (ovs-ofctl syntax where one exists),
    ``repr(msg)`` the fields; messages compare by value.
    """

    xid: int = field(default=0, kw_only=True)

    msg_type: ClassVar[int]

    def pack(self) -> bytes:
        body = self.pack_body()
        if len(body) > MAX_BODY:
            raise ValueError(f"{type(self).__name__} of {8 + len(body)} bytes exceeds OpenFlow's 65535-byte "
                             "limit (split multipart replies into parts with the MORE flag)")
        return HEADER.pack(OFP_VERSION, self.msg_type, 8 + len(body), self.xid) + body

    def pack_body(self) -> bytes:
        return b""

    @classmethod
    def unpack_body(cls, buf: bytes, xid: int) -> "Message":
        """Decode the body of `buf` (a whole message, header at 0)."""
        if len(buf) != 8:
            raise CodecError(OFPET.BAD_REQUEST, OFPBRC.BAD_LEN,
                             f"{cls.__name__} has no body, got {len(buf) - 8} bytes", 8)
        return cls(xid=xid)

    def __str__(self) -> str:
        from .text import format_message

        return format_message(self)


def register(msg_type: int) -> Callable[[type], type]:
    def decorate(cls: type) -> type:
        cls.msg_type = msg_type
        MESSAGE_TYPES[msg_type] = cls
        return cls

    return decorate


def parse(data: bytes) -> Message:
    """Decode one complete OpenFlow 1.3 message.

    Raises CodecError (and nothing else) when the bytes are not a valid
    message; its type/code are what the receiver should answer with.
    """
    if type(data) is not bytes:
        data = bytes(data)
    if len(data) < 8:
        raise CodecError(OFPET.BAD_REQUEST, OFPBRC.BAD_LEN,
                         f"message of {len(data)} bytes is shorter than the header", 0)
    version, msg_type, length, xid = HEADER.unpack_from(data)
    if length != len(data):
        raise CodecError(OFPET.BAD_REQUEST, OFPBRC.BAD_LEN,
                         f"header length {length} but {len(data)} bytes given", 2)
    if msg_type == _HELLO:
        # Hello of any version is decodable: version negotiation needs it.
        from .messages import Hello

        return _decode(Hello, data, xid)
    if version != OFP_VERSION:
        raise CodecError(OFPET.BAD_REQUEST, OFPBRC.BAD_VERSION,
                         f"version {version:#x}, only OpenFlow 1.3 (0x04) is supported", 0)
    cls = MESSAGE_TYPES.get(msg_type)
    if cls is None:
        raise CodecError(OFPET.BAD_REQUEST, OFPBRC.BAD_TYPE, f"unknown message type {msg_type}", 1)
    return _decode(cls, data, xid)


def _decode(cls: type[Message], data: bytes, xid: int) -> Message:
    try:
        return cls.unpack_body(data, xid)
    except CodecError:
        raise
    except _LOW_LEVEL as exc:
        raise CodecError(OFPET.BAD_REQUEST, OFPBRC.BAD_LEN,
                         f"{cls.__name__}: truncated or inconsistent body ({exc})") from None


def check_length(buf: bytes, offset: int, length: int, minimum: int, end: int,
                 err_type: int, code: int, what: str) -> None:
    """Validate a TLV length field: at least `minimum` and within `end`."""
    if length < minimum or offset + length > end:
        raise CodecError(err_type, code,
                         f"{what} length {length} is invalid (minimum {minimum}, "
                         f"{end - offset} bytes left)", offset)
