"""Message base class, the type registry and `parse`.

Every decoder works on the whole message buffer with absolute offsets
(struct.unpack_from), so nothing is sliced until a value is produced and
every error can name the byte where it happened.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from .consts import OFP_VERSION, OFPT
from .errors import OFPBRC, OFPET, CodecError

HEADER = struct.Struct("!BBHI")
UINT16 = struct.Struct("!H")
UINT32 = struct.Struct("!I")
UINT64 = struct.Struct("!Q")
TLV_HEADER = struct.Struct("!HH")
MAX_BODY = 0xFFFF - 8
_HELLO = int(OFPT.HELLO)   # plain int: enum lookups are slow on the hot path
_VERSION = OFP_VERSION
_unpack_header = HEADER.unpack_from
_pack_header = HEADER.pack

# OFPT -> message class, for every type but multipart (see MULTIPART_*).
MESSAGE_TYPES: dict[int, type["Message"]] = {}
# OFPMP -> request / reply class.
MULTIPART_REQUESTS: dict[int, type["Message"]] = {}
MULTIPART_REPLIES: dict[int, type["Message"]] = {}
# For MultipartRequest and MultipartReply (the classes MESSAGE_TYPES holds
# for the two OFPT numbers): OFPMP -> the decoder of the concrete class,
# decoder(buf, xid, flags) -> message, called once the multipart header is
# read (multipart.py fills it in). parse reads that header and calls the
# decoder itself, as the two classes' unpack_body would.
_MULTIPART_DECODERS: dict[type["Message"], dict[int, Callable[[bytes, int, int], "Message"]]] = {}
_MP_REQUEST = int(OFPT.MULTIPART_REQUEST)
_MP_REPLY = int(OFPT.MULTIPART_REPLY)
_unpack_mp_header = struct.Struct("!HH").unpack_from    # multipart type, flags (at byte 8)

# Low-level failures inside a decoder mean the bytes ran out or a length
# field lied; `parse` turns them into BAD_LEN so nothing else escapes.
_LOW_LEVEL = (struct.error, IndexError, ValueError, KeyError, OverflowError, UnicodeError)


def _maker(cls: type, positional: bool = False) -> Callable[..., Any]:
    """A function that builds `cls` as calling it would: the same parameters
    (positional, defaults, default factories, keyword-only), the same
    instance, without the cost of calling a class (type.__call__ and
    __init__ with keywords). For a dataclass that is not frozen and has no
    __post_init__ and no init=False field; any other class is its own maker.

    positional=True gives a builder: the same parameters in the same order
    (the keyword-only ones last, as in __init__), but every one positional
    and required, which is the quickest call; for a class that is not such
    a dataclass, a function that calls it so.
    """
    params = getattr(cls, "__dataclass_params__", None)
    fields = dataclasses.fields(cls) if params is not None else ()
    if params is None or params.frozen or hasattr(cls, "__post_init__") or any(not f.init for f in fields):
        return _calling(cls) if positional else cls
    env: dict[str, Any] = {"_new": object.__new__, "_cls": cls, "_FACTORY": _FACTORY}
    args, kwargs, body = [], [], []
    for i, f in enumerate(fields):
        if positional:
            param = f.name
        elif f.default is not dataclasses.MISSING:
            env[f"_d{i}"] = f.default
            param = f"{f.name}=_d{i}"
        elif f.default_factory is not dataclasses.MISSING:
            env[f"_f{i}"] = f.default_factory
            param = f"{f.name}=_FACTORY"
        else:
            param = f.name
        (kwargs if f.kw_only else args).append(param)
        value = f"_f{i}() if {f.name} is _FACTORY else {f.name}" if f"_f{i}" in env else f.name
        body.append(f"    self.{f.name} = {value}\n")
    if positional:
        signature = ", ".join(args + kwargs)
    else:
        signature = ", ".join(args + (["*"] + kwargs if kwargs else []))
    exec(f"def make({signature}):\n    self = _new(_cls)\n{''.join(body)}    return self\n", env)
    make = env["make"]
    make.__qualname__ = f"{cls.__qualname__}.<{'builder' if positional else 'maker'}>"
    return make


def _calling(cls: type) -> Callable[..., Any]:
    """The builder of a class _maker cannot build faster: it calls the class,
    giving the values of its keyword-only parameters (the last ones) by keyword."""
    fields = [f for f in dataclasses.fields(cls) if f.init] if dataclasses.is_dataclass(cls) else []
    keywords = [f.name for f in fields if f.kw_only]
    if not keywords:
        return cls
    n = len(fields) - len(keywords)
    return lambda *values: cls(*values[:n], **dict(zip(keywords, values[n:])))


_FACTORY = object()   # "the default factory's value", as dataclasses' own __init__ marks it


class _Makers(dict):
    def __init__(self, positional: bool = False) -> None:
        super().__init__()
        self.positional = positional

    def __missing__(self, cls: type) -> Callable[..., Any]:
        make = self[cls] = _maker(cls, self.positional)
        return make


#: _MAKE[cls](...) is cls(...), faster (see _maker): the decoders build their objects with it.
_MAKE: dict[type, Callable[..., Any]] = _Makers()
#: _BUILD[cls](...) is cls(...) with every parameter given, positionally, in
#: the order of its __init__ (keyword-only ones last): quicker still, where
#: a decoder has every value at hand. A multipart reply: build(body, xid, flags).
_BUILD: dict[type, Callable[..., Any]] = _Makers(positional=True)


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
            raise _too_long(self, 8 + len(body))
        return HEADER.pack(OFP_VERSION, self.msg_type, 8 + len(body), self.xid) + body

    def pack_body(self) -> bytes:
        return b""

    def __init_subclass__(cls, **kwargs: object) -> None:
        # A class that writes its own body never keeps a pack that a parent
        # wrote for its body (a @_whole_message pack, or the header-only one
        # `register` gives a bodiless class): it gets the generic one back.
        if ("pack_body" in cls.__dict__ and "pack" not in cls.__dict__
                and getattr(cls.pack, "_whole_message", False)):
            cls.pack = Message.pack

    @classmethod
    def unpack_body(cls, buf: bytes, xid: int) -> "Message":
        """Decode the body of `buf` (a whole message, header at 0)."""
        if len(buf) != 8:
            raise CodecError(OFPET.BAD_REQUEST, OFPBRC.BAD_LEN,
                             f"{cls.__name__} has no body, got {len(buf) - 8} bytes", 8)
        return _BUILD[cls](xid)

    def __str__(self) -> str:
        from .text import format_message

        return format_message(self)


def _too_long(msg: Message, length: int) -> ValueError:
    return ValueError(f"{type(msg).__name__} of {length} bytes exceeds OpenFlow's 65535-byte "
                      "limit (split multipart replies into parts with the MORE flag)")


def _whole_message(pack: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """Mark a class's `pack` that writes the header and its body at once,
    for speed: it must give what Message.pack gives from the class's
    pack_body (and raise the same ValueError past 65,535 bytes). A subclass
    that writes its own pack_body gets Message.pack back."""
    pack._whole_message = True      # type: ignore[attr-defined]
    return pack


@_whole_message
def _pack_header_only(self: Message) -> bytes:
    """Message.pack for a class without a body: the header alone, in one struct call."""
    return _pack_header(OFP_VERSION, self.msg_type, 8, self.xid)


def register(msg_type: int) -> Callable[[type], type]:
    def decorate(cls: type) -> type:
        cls.msg_type = msg_type
        MESSAGE_TYPES[int(msg_type)] = cls     # plain int keys: parse looks up plain ints
        if cls.pack is Message.pack and cls.pack_body is Message.pack_body:
            cls.pack = _pack_header_only
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
    version, msg_type, length, xid = _unpack_header(data)
    if length != len(data):
        raise CodecError(OFPET.BAD_REQUEST, OFPBRC.BAD_LEN,
                         f"header length {length} but {len(data)} bytes given", 2)
    if version != _VERSION or msg_type == _HELLO:
        if msg_type == _HELLO:
            # Hello of any version is decodable: version negotiation needs it.
            hello = _HELLO_CLASS
            if hello is None:
                from .messages import Hello as hello
            return _decode(hello, data, xid)
        raise CodecError(OFPET.BAD_REQUEST, OFPBRC.BAD_VERSION,
                         f"version {version:#x}, only OpenFlow 1.3 (0x04) is supported", 0)
    cls = MESSAGE_TYPES.get(msg_type)
    if cls is None:
        raise CodecError(OFPET.BAD_REQUEST, OFPBRC.BAD_TYPE, f"unknown message type {msg_type}", 1)
    # _decode inlined: one call less on every message
    try:
        if (msg_type == _MP_REPLY or msg_type == _MP_REQUEST) and len(data) >= 16:
            # what MultipartReply/Request.unpack_body would do: the concrete class's decoder
            decoders = _MULTIPART_DECODERS.get(cls)
            if decoders is not None:
                mp_type, flags = _unpack_mp_header(data, 8)
                decode = decoders.get(mp_type)
                if decode is not None:
                    return decode(data, xid, flags)
        return cls.unpack_body(data, xid)
    except CodecError:
        raise
    except _LOW_LEVEL as exc:
        raise CodecError(OFPET.BAD_REQUEST, OFPBRC.BAD_LEN,
                         f"{cls.__name__}: truncated or inconsistent body ({exc})") from None


_HELLO_CLASS: type[Message] | None = None     # messages.Hello, once messages.py has been imported


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
