"""`kumoflow ofp ...` subcommands.

    kumoflow ofp decode FILE [--hex]

reads a byte stream of concatenated OpenFlow messages (a capture of one
direction of a connection, a file of test vectors, ``-`` for stdin), splits
it by the length field of each header and prints every message as
``ovs-ofctl ofp-print`` would. A message that does not decode gets one
line saying where it starts in the stream and why (the CodecError), and
decoding goes on with the next message; a length field that cannot be
trusted (shorter than a header) or a stream that ends inside a message ends
the run. The exit status is 1 if anything failed to decode, else 0.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any, Iterator

HEADER_LEN = 8


@dataclass(slots=True)
class Decoded:
    """One item of a stream: a message, or the reason bytes at `offset` are not one."""

    offset: int
    raw: bytes
    message: Any = None
    error: str | None = None


def _type_name(msg_type: int) -> str:
    from .consts import OFPT

    try:
        return "OFPT_" + OFPT(msg_type).name
    except ValueError:
        return f"type {msg_type}"


def decode_stream(data: bytes) -> Iterator[Decoded]:
    """Split `data` into messages by their header length and decode each.

    Yields a Decoded per message; `error` is set (and `message` None) for one
    that does not decode. Stops after an error that makes the rest of the
    stream unframeable: a length field below 8, or a message running past
    the end of the data.
    """
    from .base import parse
    from .errors import CodecError

    data = bytes(data)
    o, end = 0, len(data)
    while o < end:
        left = end - o
        if left < HEADER_LEN:
            yield Decoded(o, data[o:], error=f"truncated: {left} bytes left, shorter than the "
                                             f"{HEADER_LEN}-byte OpenFlow header")
            return
        version, msg_type, length = data[o], data[o + 1], int.from_bytes(data[o + 2:o + 4], "big")
        what = f"{_type_name(msg_type)}, version {version:#04x}"
        if length < HEADER_LEN:
            yield Decoded(o, data[o:o + HEADER_LEN],
                          error=f"header length {length} is shorter than the header ({what}); "
                                "cannot find the next message, stopping")
            return
        if length > left:
            yield Decoded(o, data[o:], error=f"truncated message: header length {length} but only {left} "
                                             f"bytes left ({what})")
            return
        raw = data[o:o + length]
        try:
            yield Decoded(o, raw, message=parse(raw))
        except CodecError as exc:
            where = f"; stream offset {o + exc.offset}" if exc.offset is not None else ""
            yield Decoded(o, raw, error=f"cannot decode {what}, {length} bytes: {exc}{where}")
        o += length


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()


def cmd_decode(args: argparse.Namespace) -> int:
    from .text import format_message, hexdump

    try:
        data = _read(args.file)
    except OSError as exc:
        print(f"kumoflow ofp decode: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    out = sys.stdout
    failed = 0
    count = 0
    for item in decode_stream(data):
        count += 1
        if item.error is not None:
            failed += 1
            out.write(f"*** error at offset {item.offset} ({item.offset:#x}): {item.error}\n")
            if args.hex and item.raw:
                out.write(hexdump(item.raw) + "\n")
            continue
        out.write(format_message(item.message) + "\n")
        if args.hex:
            out.write(hexdump(item.raw) + "\n")
    if failed:
        print(f"kumoflow ofp decode: {failed} of {count} messages failed to decode", file=sys.stderr)
        return 1
    return 0


def register(subparsers: Any) -> None:
    """Add `kumoflow ofp` and its subcommands."""
    ofp = subparsers.add_parser(
        "ofp", help="OpenFlow 1.3 protocol tools",
        description="OpenFlow 1.3 protocol tools.")
    sub = ofp.add_subparsers(dest="ofp_command", metavar="SUBCOMMAND", required=True)
    decode = sub.add_parser(
        "decode", help="print the OpenFlow messages in a byte stream",
        description="Read concatenated OpenFlow 1.3 messages from FILE (or - for standard input), split "
                    "them by their header length and print each in ovs-ofctl's syntax. A message that "
                    "does not decode is reported with its offset and the reason; decoding continues "
                    "with the next message when the header's length allows. Exit status 1 if any "
                    "message failed to decode.")
    decode.add_argument("file", metavar="FILE", help="file of concatenated messages, or - for stdin")
    decode.add_argument("--hex", action="store_true", help="also print each message's bytes as a hex dump")
    decode.set_defaults(func=cmd_decode)
