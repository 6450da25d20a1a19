"""Channel addresses in the Open vSwitch style: tcp:HOST:PORT, tcp:PORT, ptcp:PORT[:HOST], and
ssl:HOST:PORT (the tcp form over TLS: kumoflow.tls)."""

from __future__ import annotations

from dataclasses import dataclass

from .consts import OFP_TCP_PORT


@dataclass(frozen=True, slots=True)
class Address:
    scheme: str   # "tcp" or "ssl" (active; a controller listens on them), "ptcp" (passive)
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}:{host}:{self.port}"


def parse_address(text: str, default_host: str = "0.0.0.0") -> Address:
    """Parse 'tcp:127.0.0.1:6653', 'tcp:[::1]:6653', 'tcp:6653', 'ptcp:6634', 'ptcp:6634:127.0.0.1',
    'ssl:127.0.0.1:6653' (ssl: takes the forms of tcp:)."""
    scheme, sep, rest = text.partition(":")
    if not sep or scheme not in ("tcp", "ssl", "ptcp"):
        raise ValueError(f"bad address {text!r}: expected tcp:HOST:PORT, ssl:HOST:PORT or ptcp:PORT[:HOST]")
    host, port = default_host, str(OFP_TCP_PORT)
    if scheme == "ptcp":
        port, _, host_part = rest.partition(":")
        host = host_part.strip("[]") or default_host
    elif rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail.lstrip(":") or port
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    elif rest.isdigit():
        port = rest
    elif rest:
        host = rest
    try:
        number = int(port or OFP_TCP_PORT)
    except ValueError:
        raise ValueError(f"bad port in address {text!r}") from None
    if not 0 <= number < 65536:   # 0: any free port
        raise ValueError(f"port {number} out of range in {text!r}")
    return Address(scheme, host, number)
