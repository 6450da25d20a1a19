"""The Internet checksum (RFC 1071), done with big integers.

Because 2**16 == 1 (mod 0xFFFF), a byte string read as one big-endian integer
is congruent to the sum of its 16-bit words modulo 0xFFFF.  So the one's
complement sum is just ``int.from_bytes(data) % 0xFFFF``, a couple of C-level
operations even for a 9000-byte jumbo frame, and pieces (pseudo-header,
header, payload) can be summed separately and added.
"""

from __future__ import annotations

_from_bytes = int.from_bytes


def csum_part(data) -> int:
    """A value congruent to the word sum of ``data`` (odd length padded with 0).

    Only the last piece of a checksummed region may have odd length.
    """
    value = _from_bytes(data, "big")
    return value << 8 if len(data) & 1 else value


def csum_finish(total: int) -> int:
    """Checksum field value for a region whose (congruent) word sum is ``total``."""
    rem = total % 0xFFFF
    if rem:
        return 0xFFFF - rem
    # rem == 0 means the folded sum is 0xFFFF (-0), unless all words were 0.
    return 0 if total else 0xFFFF


def csum_valid(total: int) -> bool:
    """True if a region including its checksum field sums to -0 (0xFFFF)."""
    return total != 0 and total % 0xFFFF == 0


def internet_checksum(data) -> int:
    """Checksum of one buffer, e.g. an IPv4 header with its checksum zeroed."""
    return csum_finish(csum_part(data))
