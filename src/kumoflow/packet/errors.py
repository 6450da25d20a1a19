"""The one exception the packet library raises for bad bytes or bad fields."""

from __future__ import annotations


class PacketError(ValueError):
    """A frame could not be parsed, or a header could not be built.

    ``header`` names the protocol layer ("IPv4", "TCP", ...) and ``offset`` is
    the byte offset of that layer in the frame (None when building), so a log
    line says exactly where a hostile or truncated packet went wrong.
    """

    def __init__(self, header: str, message: str, offset: int | None = None) -> None:
        self.header = header
        self.offset = offset
        self.reason = message
        where = header if offset is None else f"{header} at offset {offset}"
        super().__init__(f"{where}: {message}")

    def __reduce__(self):  # keep pickling working despite the custom __init__
        return (type(self), (self.header, self.reason, self.offset))


def truncated(header: str, offset: int, need: int, have: int) -> PacketError:
    """Shared wording for the most common failure: too few bytes left."""
    return PacketError(header, f"truncated: needs {need} bytes, {max(have, 0)} left", offset)
