"""Address sets: lists of CIDRs as the firewall will use them (pure: no I/O but reading a file).

A set arrives as text (a file, one CIDR or address per line, ``#`` comments)
or as a list (the API's ``addresses``). Parsing is strict and reports every
bad entry at once, each as ``where: message`` (``countries/DE.txt:12: ...``,
``addresses[3]: ...``), so a 10,000-line file with three typos is fixed in
one round. An address alone is its /32 or /128; a CIDR with host bits set
(``10.0.0.1/24``) is refused rather than guessed at, as is a netmask or a
scope id: a firewall should not widen or narrow what its user wrote.

A flow matches one prefix, so what a set costs in flows is the number of
prefixes that cover it. `aggregate` gives the fewest prefixes covering
exactly the set's addresses: each family's prefixes become integer ranges,
overlapping and adjacent ranges are merged, and each merged range is cut
into the largest aligned blocks it holds (a greedy cut is optimal for one
range, and no block of a minimal cover can straddle a gap between ranges).
`subtract` is "A except B" the same way (allow a region but not a country
in it), so an allow and a deny need not depend on flow priorities.

Country lists are files named by their ISO 3166 code in a directory the user
provides (``DE.txt`` or ``de.txt``); nothing is fetched.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_BITS = {4: 32, 6: 128}
_CLASS = {4: ipaddress.IPv4Network, 6: ipaddress.IPv6Network}
COUNTRY_PATTERN = r"^[A-Za-z]{2}$"


class AddressError(ValueError):
    """Bad entries; `problems` holds one ``where: message`` per entry."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        super().__init__("\n".join(shown))


def parse(text: str) -> Network:
    """One address or CIDR: ``192.0.2.0/24``, ``2001:db8::/32``, ``192.0.2.7`` (a /32).
    ValueError says what is wrong."""
    text = text.strip()
    address, slash, length = text.partition("/")
    if not text:
        raise ValueError("empty")
    if "%" in address:
        raise ValueError(f"{text!r}: a scope id (%...) has no place in an address set")
    if slash and not (length.isascii() and length.isdigit() and len(length) <= 3):
        raise ValueError(f"{text!r}: the prefix length must be a number 0..128 (no netmask)")
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        pass
    try:                                            # why not: say it plainly
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv4 or IPv6 address or CIDR") from None
    bits = _BITS[ip.version]
    if int(length) > bits:
        raise ValueError(f"{text!r}: an IPv{ip.version} prefix length is 0..{bits}")
    net = ipaddress.ip_network(text, strict=False)
    raise ValueError(f"{text!r} has host bits set (the network is {net})")


def parse_list(items: Iterable[str], where: str = "addresses") -> list[Network]:
    """Each item parsed; AddressError names every bad one as ``where[i]: message``."""
    found, problems = [], []
    for i, item in enumerate(items):
        try:
            if not isinstance(item, str):
                raise ValueError(f"{item!r} is not text")
            found.append(parse(item))
        except ValueError as exc:
            problems.append(f"{where}[{i}]: {exc}")
    if problems:
        raise AddressError(problems)
    return found


def parse_lines(lines: Iterable[str], where: str = "<text>") -> list[Network]:
    """One entry per line; ``#`` starts a comment, blank lines are skipped. AddressError names
    every bad line as ``where:line: message``."""
    found, problems = [], []
    for number, line in enumerate(lines, 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            found.append(parse(entry))
        except ValueError as exc:
            problems.append(f"{where}:{number}: {exc}")
    if problems:
        raise AddressError(problems)
    return found


def load_file(path: str | Path) -> list[Network]:
    """A file of entries (`parse_lines`); OSError when it cannot be read, AddressError when it
    is not UTF-8 text or has bad lines."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AddressError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    return parse_lines(text.splitlines(), str(path))


def country_file(directory: str | Path, code: str) -> Path:
    """The file of country `code` in `directory`: ``XA.txt``, else ``xa.txt``. ValueError for a
    code that is not two letters, or no such file."""
    if not re.match(COUNTRY_PATTERN, code or ""):
        raise ValueError(f"country {code!r}: expected a two-letter code such as DE")
    directory = Path(directory)
    for name in (f"{code.upper()}.txt", f"{code.lower()}.txt"):
        if (directory / name).is_file():
            return directory / name
    raise ValueError(f"country {code.upper()}: no list {code.upper()}.txt in {directory}")


def load_country(directory: str | Path, code: str) -> list[Network]:
    """Country `code`'s list from `directory` (`country_file`, `load_file`)."""
    return load_file(country_file(directory, code))


# --- set algebra over integer ranges ----------------------------------------------------------

Ranges = dict[int, list[tuple[int, int]]]     # IP version -> sorted, disjoint, non-adjacent [first, last]


def ranges(networks: Iterable[Network]) -> Ranges:
    """The addresses of `networks` as merged ranges per IP version."""
    spans: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
    for net in networks:
        first = int(net.network_address)
        spans[net.version].append((first, first + net.num_addresses - 1))
    merged: Ranges = {}
    for version, items in spans.items():
        items.sort()
        out: list[tuple[int, int]] = []
        for first, last in items:
            if out and first <= out[-1][1] + 1:
                if last > out[-1][1]:
                    out[-1] = (out[-1][0], last)
            else:
                out.append((first, last))
        merged[version] = out
    return merged


def prefixes(spans: Ranges) -> list[Network]:
    """The fewest prefixes covering `spans` exactly: IPv4 first, each family in address order."""
    out: list[Network] = []
    for version in (4, 6):
        bits, cls = _BITS[version], _CLASS[version]
        for first, last in spans.get(version, ()):
            while first <= last:
                align = (first & -first).bit_length() - 1 if first else bits     # log2 of the largest aligned block
                fits = (last - first + 1).bit_length() - 1                        # log2 of the largest that fits
                size = min(align, fits)
                out.append(cls((first, bits - size)))
                first += 1 << size
    return out


def aggregate(networks: Iterable[Network]) -> list[Network]:
    """The fewest prefixes covering exactly the addresses of `networks` (adjacent and contained
    prefixes merged), IPv4 first, in address order."""
    return prefixes(ranges(networks))


def subtract(allow: Iterable[Network], deny: Iterable[Network]) -> list[Network]:
    """The fewest prefixes covering the addresses of `allow` that are not in `deny`."""
    a, b = ranges(allow), ranges(deny)
    out: Ranges = {}
    for version in (4, 6):
        holes, kept, i = b[version], [], 0
        for first, last in a[version]:
            while i < len(holes) and holes[i][1] < first:
                i += 1
            j = i
            while first <= last and j < len(holes) and holes[j][0] <= last:
                if holes[j][0] > first:
                    kept.append((first, holes[j][0] - 1))
                first = max(first, holes[j][1] + 1)
                j += 1
            if first <= last:
                kept.append((first, last))
        out[version] = kept
    return prefixes(out)


def contains(networks: Iterable[Network], address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether one of `networks` holds `address`."""
    ip = ipaddress.ip_address(address)
    return any(ip in net for net in networks if net.version == ip.version)


__all__ = ["AddressError", "Network", "aggregate", "contains", "country_file", "load_country", "load_file",
           "parse", "parse_lines", "parse_list", "prefixes", "ranges", "subtract"]
