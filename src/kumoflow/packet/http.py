"""What a client's first bytes on a TCP connection say, for web-application rules (sans-IO).

OpenFlow sees no further than the TCP header, so a rule on the HTTP Host or
path is decided per connection: the firewall holds the connection, collects
the client's first segment(s) and asks `inspect` (or a `Reader`) what they
are:

* ``NEED_MORE``: the head is not complete yet (feed more);
* a `Request`: an HTTP/1.x request head, with its method, its path
  normalised (below) and its host;
* `NotHttp`: anything else, with a reason. A TLS ClientHello is one, with
  the server name the client asked for (SNI), so that a host rule can still
  apply to HTTPS.

A decision is final: bytes after the first request's head (its body,
pipelined requests) are never looked at; only the first request decides
the connection. Buffering is bounded: a head not complete within
`MAX_HEAD` bytes (8 KiB, the smallest of the common servers' default
limits) is `NotHttp`. A protocol whose server speaks first (SMTP, SSH)
sends no client bytes at all: the caller needs a timeout of its own.

**Requests** are parsed as RFC 9112 says a server must: one request line of
``method SP request-target SP HTTP/1.x`` (bare LF tolerated, leading empty
lines skipped), header fields ``name: value`` with no whitespace before the
colon and no obsolete line folding; an HTTP/1.1 request needs exactly one
Host field and no request may have two (both would be a server's 400, and
two Hosts is how a firewall and a server are made to disagree). What fails
is `NotHttp` with the reason; it is never guessed at.

**Host**: from an absolute-form target's authority when there is one (it
wins over the Host field, RFC 9112 section 3.2.2), else the Host field;
lowercased, the port dropped, one trailing dot dropped, an IPv6 literal
without brackets in its compressed form. User info in the authority and
anything but letters, digits, ``-``, ``_`` and ``.`` in a name are
malformed. ``None`` when the request names none (an HTTP/1.0 request
without Host, an empty Host field).

**Path**: the target's path without query, normalised as RFC 3986 section
6.2.2 says (percent-encoded unreserved characters decoded, the hex digits
of the others uppercased, dot segments removed, after decoding, so
``/a/%2E%2E/admin`` is ``/admin``), and one step further: runs of ``/`` are
merged first (``//admin`` is ``/admin``), as nginx and most servers route,
so that a deny rule on ``/admin`` cannot be walked around with slashes.
What a normalisation cannot settle is reported in `Request.ambiguous`
rather than guessed: an encoded ``/`` (``%2F``) or backslash, a raw
backslash, a bad percent sequence, ``;`` parameters (servers disagree on
all of these); a firewall may deny such requests outright. CONNECT's path
is ``""`` (authority-form), ``OPTIONS *``'s is ``*``.

**TLS**: the ClientHello is read record by record (handshake records only,
at most `MAX_RECORDS`, the hello itself within `MAX_HEAD`), every length
checked against what holds it. Limits: with Encrypted Client Hello
(``ech``) the name seen is the outer, public one, not the site; a client
may send no SNI at all (``server_name`` None; an address-only HTTPS
connection); HTTP/2 cleartext with prior knowledge (``PRI * HTTP/2.0``) is
`NotHttp`, its headers being HPACK-compressed frames.

**Rules**: `HostPattern` is a name (exactly it) or ``*.`` and a name: any
name below it, at any depth, and *not* the name itself (``*.example.test``
matches ``a.example.test`` and ``a.b.example.test``, not ``example.test``),
as a wildcard reads in DNS and TLS certificates; a rule meant for the apex
too names both. `PathPrefix` ``/admin`` matches ``/admin`` and everything
under ``/admin/``, never ``/administrator``; case-sensitive as RFC 3986
paths are, ``ignore_case=True`` for servers that are not.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

#: the most bytes of a request head (or of a TLS ClientHello) held before deciding
MAX_HEAD = 8192
#: the most TLS records a ClientHello may be spread over
MAX_RECORDS = 8
#: the longest method accepted (the longest registered one, UPDATEREDIRECTREF, is 17)
MAX_METHOD = 32

_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])\Z")
_TARGET = re.compile(rb"[\x21-\x7e]+\Z")
_FIELD_VALUE = re.compile(rb"[\x20-\x7e\x80-\xff\t]*\Z")
_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\Z")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


class NeedMore:
    """The head is not complete: feed more bytes."""

    def __repr__(self) -> str:
        return "NEED_MORE"


NEED_MORE = NeedMore()


@dataclass(frozen=True)
class Request:
    method: str
    target: str                 # the request-target as sent
    path: str                   # normalised (see the module's text)
    host: str | None
    version: str                # "HTTP/1.1"
    head_length: int            # bytes of the head, its empty line included
    ambiguous: str | None = None  # why the path may mean something else to a server, if it may


@dataclass(frozen=True)
class NotHttp:
    reason: str
    tls: bool = False            # a TLS ClientHello
    server_name: str | None = None
    ech: bool = False            # the ClientHello offers Encrypted Client Hello: server_name is the outer one


Verdict = NeedMore | Request | NotHttp


class PatternError(ValueError):
    """A host pattern or path prefix that cannot be a rule."""


class _Malformed(Exception):
    pass


def inspect(data: bytes, max_head: int = MAX_HEAD) -> Verdict:
    """What the client's first bytes `data` are (never raises for any bytes)."""
    data = bytes(data)
    if not data:
        return NEED_MORE
    if data[0] == 0x16:
        return _tls(data, max_head)
    try:
        return _http(data, max_head)
    except _Malformed as exc:
        return NotHttp(str(exc))


class Reader:
    """Bytes of one connection fed as they come; the first decision sticks, and at most
    `max_head` bytes are held."""

    def __init__(self, max_head: int = MAX_HEAD) -> None:
        self.max_head = max_head
        self.buffer = bytearray()
        self.verdict: Verdict = NEED_MORE

    def feed(self, data: bytes) -> Verdict:
        if self.verdict is NEED_MORE:
            self.buffer += data[:self.max_head + 5 * MAX_RECORDS + 1 - len(self.buffer)]
            self.verdict = inspect(bytes(self.buffer), self.max_head)
            if self.verdict is not NEED_MORE:
                self.buffer = bytearray()
        return self.verdict


def host_of(verdict: Verdict) -> str | None:
    """The host a connection is for: a request's host, a ClientHello's server name."""
    if isinstance(verdict, Request):
        return verdict.host
    if isinstance(verdict, NotHttp):
        return verdict.server_name
    return None


# --- HTTP/1.x -------------------------------------------------------------------------------------


def _http(data: bytes, max_head: int) -> Verdict:
    start = 0
    while start < len(data) and data[start] in b"\r\n":        # empty lines before the request line
        start += 1
    if start >= min(len(data), max_head):
        return NEED_MORE if len(data) < max_head else NotHttp(f"no request line in {max_head} bytes")
    if data[start] not in _TCHAR:
        raise _Malformed("not an HTTP request: the first byte cannot start a method")
    end = data.find(b"\n", start)
    if end < 0:
        head = data[start:start + MAX_METHOD + 1]
        space = head.find(b" ")
        if not _TOKEN.match(head if space < 0 else head[:space]) or (space < 0 and len(head) > MAX_METHOD):
            raise _Malformed("not an HTTP request: no method")
        if len(data) >= max_head:
            raise _Malformed(f"request line longer than {max_head} bytes")
        return NEED_MORE
    method, target, version = _request_line(data[start:end].removesuffix(b"\r"))
    fields, head_end = [], end + 1
    while True:
        if head_end > max_head:
            raise _Malformed(f"request head longer than {max_head} bytes")
        nl = data.find(b"\n", head_end)
        if nl < 0:
            if len(data) >= max_head:
                raise _Malformed(f"request head longer than {max_head} bytes")
            return NEED_MORE
        line = data[head_end:nl].removesuffix(b"\r")
        head_end = nl + 1
        if not line:
            break
        fields.append(line)
    if head_end > max_head:
        raise _Malformed(f"request head longer than {max_head} bytes")
    hosts = []
    for line in fields:
        if line[:1] in (b" ", b"\t"):
            raise _Malformed("obsolete line folding in the header")
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.match(name):
            raise _Malformed(f"malformed header field {line[:40]!r}")
        value = value.strip(b" \t")
        if not _FIELD_VALUE.match(value):
            raise _Malformed(f"control characters in header field {name.decode()!r}")
        if name.lower() == b"host":
            hosts.append(value)
    if len(hosts) > 1:
        raise _Malformed("more than one Host header field")
    if not hosts and version == "HTTP/1.1":
        raise _Malformed("an HTTP/1.1 request without Host")
    host = _host(hosts[0].decode("latin-1")) if hosts else None
    text = target.decode("ascii")
    if text.startswith("/"):
        path = text
    elif text == "*":
        if method != "OPTIONS":
            raise _Malformed("request-target * is for OPTIONS only")
        return Request(method, text, "*", host, version, head_end)
    elif method == "CONNECT":
        return Request(method, text, "", _host(text, need_port=True), version, head_end)
    else:
        scheme, sep, rest = text.partition("://")
        if not sep or not re.match(r"[A-Za-z][A-Za-z0-9+.-]*\Z", scheme):
            raise _Malformed(f"request-target {text[:40]!r} is not a path, an absolute URI, * or an authority")
        authority, tail = re.match(r"([^/?#]*)(.*)", rest, re.S).groups()
        if "@" in authority:
            raise _Malformed("user info in the request-target's authority")
        host = _host(authority)
        path = tail if tail.startswith("/") else "/"
    path = path.partition("?")[0].partition("#")[0]
    normal, ambiguous = _normalise(path)
    return Request(method, text, normal, host, version, head_end, ambiguous)


def _request_line(line: bytes) -> tuple[str, bytes, str]:
    parts = line.split(b" ")
    if len(parts) != 3:
        raise _Malformed("malformed request line (expected: method SP target SP version)")
    method, target, version = parts
    if not _TOKEN.match(method) or len(method) > MAX_METHOD:
        raise _Malformed("malformed method")
    match = _VERSION.match(version)
    if match is None:
        raise _Malformed("malformed HTTP version")
    if match.group(1) != b"1":
        if line == b"PRI * HTTP/2.0":
            raise _Malformed("HTTP/2 with prior knowledge (its headers are compressed frames)")
        raise _Malformed(f"{version.decode()} is not HTTP/1")
    if not _TARGET.match(target):
        raise _Malformed("malformed request-target (spaces, controls or non-ASCII)")
    return method.decode(), target, version.decode()


def _host(text: str, need_port: bool = False) -> str | None:
    """host[:port] -> the host lowercased, its port and one trailing dot dropped; None for ""."""
    if not text:
        if need_port:
            raise _Malformed("CONNECT without host:port")
        return None
    if text.startswith("["):
        literal, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise _Malformed("unclosed [ in host")
        try:
            if "%" in literal:
                raise ValueError("a zone id")
            host = ipaddress.IPv6Address(literal).compressed
        except ValueError:
            raise _Malformed("malformed IPv6 literal in host") from None
        if rest and not rest.startswith(":"):
            raise _Malformed(f"malformed host {text[:64]!r}")
        port = rest[1:] if rest else None
    else:
        host, colon, port = text.rpartition(":") if ":" in text else (text, "", "")
        port = port if colon else None
        host = host.lower().removesuffix(".")
        if not _NAME.match(host) or len(host) > 253:
            raise _Malformed(f"malformed host {text[:64]!r}")
    if port and not (port.isascii() and port.isdigit() and len(port) <= 5):     # "host:" is allowed (RFC 3986)
        raise _Malformed(f"malformed port in host {text[:64]!r}")
    if need_port and not port:
        raise _Malformed("CONNECT without a port")
    return host


def _normalise(path: str) -> tuple[str, str | None]:
    ambiguous = []

    def percent(match: re.Match) -> str:
        char = chr(int(match.group(1), 16))
        if char in _UNRESERVED:
            return char
        code = match.group(1).upper()
        if code in ("2F", "5C"):
            ambiguous.append(f"an encoded {'/' if code == '2F' else 'backslash'} (%{code})")
        return "%" + code

    path = _PERCENT.sub(percent, path)
    if "%" in _PERCENT.sub("", path):
        ambiguous.append("a bad percent sequence")
    if "\\" in path:
        ambiguous.append("a backslash")
    if ";" in path:
        ambiguous.append("a ; parameter")
    return _remove_dots(re.sub("/{2,}", "/", path)), ", ".join(dict.fromkeys(ambiguous)) or None


def _remove_dots(path: str) -> str:
    """RFC 3986 section 5.2.4 for an absolute path."""
    segments = path.split("/")[1:]
    out: list[str] = []
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
            continue
        if last:
            out.append("")
    return "/" + "/".join(out)


def normalise_path(path: str) -> str:
    """An absolute path (query dropped) as `Request.path` has it."""
    return _normalise(path.partition("?")[0].partition("#")[0])[0]


# --- TLS ClientHello ------------------------------------------------------------------------------


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise _Malformed("ClientHello: a length runs past its end")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def number(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vector(self, n: int) -> bytes:
        return self.take(self.number(n))

    def left(self) -> int:
        return len(self.data) - self.pos


def _tls(data: bytes, max_head: int) -> Verdict:
    handshake, pos, records = bytearray(), 0, 0
    while True:
        if len(handshake) >= 4:
            if handshake[0] != 1:
                return NotHttp("TLS: the first handshake message is not a ClientHello", tls=True)
            length = int.from_bytes(handshake[1:4], "big")
            if length + 4 > max_head:
                return NotHttp(f"TLS: a ClientHello of {length} bytes, more than {max_head}", tls=True)
            if len(handshake) >= 4 + length:
                try:
                    return _client_hello(bytes(handshake[4:4 + length]))
                except _Malformed as exc:
                    return NotHttp(str(exc), tls=True)
        if pos == len(data):
            return NEED_MORE
        if len(data) - pos < 5:
            return NEED_MORE if data[pos] == 0x16 else NotHttp("TLS: the ClientHello is cut by another record",
                                                               tls=records > 0)
        kind, major, minor, size = data[pos], data[pos + 1], data[pos + 2], int.from_bytes(data[pos + 3:pos + 5],
                                                                                            "big")
        if kind != 0x16 or major != 3 or minor > 4:
            if records == 0:
                return NotHttp("not HTTP, and not a TLS record")
            return NotHttp("TLS: the ClientHello is cut by another record", tls=True)
        if size == 0 or size > 16384:
            return NotHttp(f"TLS: a record of {size} bytes", tls=True)
        records += 1
        if records > MAX_RECORDS:
            return NotHttp(f"TLS: a ClientHello over more than {MAX_RECORDS} records", tls=True)
        fragment = data[pos + 5:pos + 5 + size]
        handshake += fragment
        pos += 5 + len(fragment)


def _client_hello(body: bytes) -> NotHttp:
    c = _Cursor(body)
    c.take(2 + 32)                                  # legacy_version, random
    if len(c.vector(1)) > 32:
        raise _Malformed("ClientHello: a session id longer than 32 bytes")
    suites = c.vector(2)
    if not suites or len(suites) % 2:
        raise _Malformed("ClientHello: malformed cipher suites")
    if not c.vector(1):
        raise _Malformed("ClientHello: no compression methods")
    name, ech, seen = None, False, set()
    if c.left():
        extensions = _Cursor(c.vector(2))
        if c.left():
            raise _Malformed("ClientHello: bytes after the extensions")
        while extensions.left():
            kind, data = extensions.number(2), extensions.vector(2)
            if kind in seen:
                raise _Malformed(f"ClientHello: extension {kind} twice")
            seen.add(kind)
            if kind == 0xfe0d:
                ech = True
            elif kind == 0:
                name = _server_name(data)
    if name is None:
        return NotHttp("TLS ClientHello without server_name", tls=True, ech=ech)
    return NotHttp("TLS ClientHello", tls=True, server_name=name, ech=ech)


def _server_name(data: bytes) -> str | None:
    c = _Cursor(data)
    names = _Cursor(c.vector(2))
    if c.left():
        raise _Malformed("ClientHello: bytes after the server name list")
    found = None
    while names.left():
        kind, value = names.number(1), names.vector(2)
        if kind == 0 and found is None:
            found = value
    if found is None:
        return None
    try:
        text = found.decode("ascii").lower()
    except UnicodeDecodeError:
        raise _Malformed("ClientHello: a server name that is not ASCII") from None
    text = text[:-1] if text.endswith(".") else text
    if not _NAME.match(text) or len(text) > 253:
        raise _Malformed("ClientHello: a malformed server name")
    return text


# --- rule patterns --------------------------------------------------------------------------------


class HostPattern:
    """``example.test`` (exactly) or ``*.example.test`` (any name below it, not itself); also an
    IPv4 or IPv6 address. PatternError for anything else."""

    def __init__(self, text: str) -> None:
        self.text = text
        raw = text.strip().lower()
        self.wildcard = raw.startswith("*.")
        name = raw[2:] if self.wildcard else raw
        if "*" in name:
            raise PatternError(f"host pattern {text!r}: only a leading '*.' is a wildcard")
        try:
            self.name = ipaddress.ip_address(name.removeprefix("[").removesuffix("]")).compressed
        except ValueError:
            self.name = name.removesuffix(".")
            if not _NAME.match(self.name) or len(self.name) > 253:
                raise PatternError(f"host pattern {text!r}: expected a name such as example.test or "
                                   f"*.example.test, or an address") from None
        else:
            if self.wildcard:
                raise PatternError(f"host pattern {text!r}: an address has no names below it")

    def matches(self, host: str | None) -> bool:
        if not host:
            return False
        host = host.lower().removesuffix(".")
        if self.wildcard:
            return host.endswith("." + self.name)
        return host == self.name

    def __repr__(self) -> str:
        return f"HostPattern({self.text!r})"


class PathPrefix:
    """``/admin``: the path ``/admin`` and everything under ``/admin/`` (normalised as request
    paths are); ``/`` is every path. PatternError for anything else."""

    def __init__(self, text: str, ignore_case: bool = False) -> None:
        self.text, self.ignore_case = text, ignore_case
        if not (text.startswith("/") and text.isascii() and _TARGET.match(text.encode()) and "?" not in text
                and "#" not in text):
            raise PatternError(f"path prefix {text!r}: expected an absolute path such as /admin (printable ASCII, "
                               f"no query)")
        prefix = normalise_path(text).rstrip("/")
        self.prefix = prefix.lower() if ignore_case else prefix

    def matches(self, path: str | None) -> bool:
        if path is None:
            return False
        if self.ignore_case:
            path = path.lower()
        return not self.prefix or path == self.prefix or path.startswith(self.prefix + "/")

    def __repr__(self) -> str:
        return f"PathPrefix({self.text!r})"


__all__ = ["MAX_HEAD", "MAX_RECORDS", "NEED_MORE", "HostPattern", "NeedMore", "NotHttp", "PathPrefix", "PatternError",
           "Reader", "Request", "Verdict", "host_of", "inspect", "normalise_path"]
