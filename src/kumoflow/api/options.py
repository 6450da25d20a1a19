"""The API's command-line options of `kumoflow controller`, and starting it.

    --api HOST:PORT          serve the API there (off unless given; port 0: any free port)
    --api-public             allow a non-loopback --api address
    --admin-token TOKEN      the admin token (else read from, or generated into, --admin-token-file)
    --admin-token-file PATH  default /var/lib/kumoflow/admin-token, written with mode 0600
    --api-tls-cert PATH, --api-tls-key PATH
                             serve HTTPS with this certificate and key (e.g. from kumoflow pki cert)
    --segment-range TYPE=LOW:HIGH
                             the segmentation ids networks of TYPE (vxlan, nvgre, vlan) get
                             when none is given (repeatable; default the whole legal range)

This module imports neither FastAPI nor uvicorn: a controller without
``--api`` never loads them.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("kumoflow.api")

DEFAULT_PORT = 9696
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
#: where the generated admin token is kept (and where `kumoflow show` looks for it)
DEFAULT_TOKEN_FILE = "/var/lib/kumoflow/admin-token"
#: the segmentation ids each network type can have at all (inclusive): the VNI and the NVGRE
#: VSID are 24 bits (0 is reserved), a VLAN id 12 bits (0 and 4095 are reserved); flat: none
LEGAL_RANGES = {"vxlan": (1, 16777215), "nvgre": (1, 16777215), "vlan": (1, 4094)}

#: network type -> the ranges (low, high), sorted, that allocation hands ids out of
SegmentRanges = dict[str, tuple[tuple[int, int], ...]]


@dataclass(frozen=True)
class ApiOptions:
    host: str
    port: int
    public: bool
    admin_token: str | None
    token_file: Path
    segment_ranges: SegmentRanges = field(default_factory=dict)
    #: HTTPS: the certificate and key files (both, or neither: HTTP)
    tls_cert: Path | None = None
    tls_key: Path | None = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("northbound API")
    g.add_argument("--api", metavar="HOST:PORT",
                   help=f"serve the REST API and /metrics on HOST:PORT (off unless given; e.g. 127.0.0.1:"
                        f"{DEFAULT_PORT}; port 0: any free port, written to --status-file)")
    g.add_argument("--api-public", action="store_true",
                   help="allow --api on an address other than loopback (then /metrics needs the admin token too)")
    g.add_argument("--admin-token", metavar="TOKEN",
                   help="the admin token (visible in process lists: prefer --admin-token-file)")
    g.add_argument("--admin-token-file", metavar="PATH", default=DEFAULT_TOKEN_FILE,
                   help=f"where the admin token is read from, or written to (mode 0600) when missing "
                        f"(default {DEFAULT_TOKEN_FILE})")
    g.add_argument("--api-tls-cert", metavar="PATH",
                   help="serve the API over HTTPS with this certificate (PEM; e.g. kumoflow pki cert DIR api "
                        "--kind controller); with --api-tls-key. Clients need no certificate: tokens as over HTTP")
    g.add_argument("--api-tls-key", metavar="PATH", help="the private key (PEM) of --api-tls-cert")
    g.add_argument("--segment-range", action="append", default=[], metavar="TYPE=LOW:HIGH",
                   help="segmentation ids to allocate to networks of TYPE (vxlan, nvgre or vlan) that are "
                        "given none, e.g. vxlan=1000:1999 (repeatable, also for several ranges of a type; "
                        "default: every legal id, vxlan/nvgre 1:16777215, vlan 1:4094)")


def parse(args: argparse.Namespace) -> ApiOptions | None:
    """The API options, checked; None without --api. ValueError says what is wrong."""
    ranges = parse_segment_ranges(getattr(args, "segment_range", None) or [])
    cert, key = getattr(args, "api_tls_cert", None), getattr(args, "api_tls_key", None)
    if not getattr(args, "api", None):
        if ranges:
            raise ValueError("--segment-range: only with --api (it is how the API allocates segmentation ids)")
        if cert or key:
            raise ValueError("--api-tls-cert/--api-tls-key: only with --api")
        return None
    if bool(cert) != bool(key):
        raise ValueError("--api-tls-cert and --api-tls-key: give both (or neither, for HTTP)")
    for what, path in (("--api-tls-cert", cert), ("--api-tls-key", key)):
        if path and not os.access(path, os.R_OK):
            raise ValueError(f"{what} {path}: " + ("cannot be read" if Path(path).exists() else "no such file"))
    host, port = parse_address(args.api)
    from .server import is_loopback          # imports FastAPI: only when --api is given

    if not is_loopback(host) and not args.api_public:
        raise ValueError(f"--api {args.api}: not a loopback address; the API would be reachable from other "
                         f"machines. Give --api-public to mean it")
    if args.admin_token is not None and not args.admin_token.strip():
        raise ValueError("--admin-token: empty")
    return ApiOptions(host, port, args.api_public, args.admin_token, Path(args.admin_token_file), ranges,
                      Path(cert) if cert else None, Path(key) if key else None)


def parse_segment_ranges(items: list[str]) -> SegmentRanges:
    """["vxlan=1000:1999", "vlan=100:199", "vlan=300:399"] -> {"vxlan": ((1000, 1999),),
    "vlan": ((100, 199), (300, 399))}. ValueError names the item and what is wrong: an unknown
    type (or flat, which has no ids), not LOW:HIGH, out of the type's legal range, LOW above
    HIGH, two ranges of a type that overlap."""
    ranges: dict[str, list[tuple[int, int]]] = {}
    for item in items:
        kind, eq, span = item.partition("=")
        kind = kind.strip()
        where = f"--segment-range {item}"
        if not eq:
            raise ValueError(f"{where}: expected TYPE=LOW:HIGH, e.g. vxlan=1000:1999")
        if kind == "flat":
            raise ValueError(f"{where}: a flat network has no segmentation id")
        if kind not in LEGAL_RANGES:
            raise ValueError(f"{where}: unknown network type {kind!r}; expected one of "
                             f"{', '.join(LEGAL_RANGES)}")
        low_text, colon, high_text = span.partition(":")
        try:
            low, high = int(low_text), int(high_text)
        except ValueError:
            raise ValueError(f"{where}: expected TYPE=LOW:HIGH with whole numbers, e.g. {kind}=100:199") from None
        if not colon:
            raise ValueError(f"{where}: expected TYPE=LOW:HIGH, e.g. {kind}=100:199")
        first, last = LEGAL_RANGES[kind]
        if not (first <= low <= last and first <= high <= last):
            raise ValueError(f"{where}: a {kind} segmentation id is {first}..{last}")
        if low > high:
            raise ValueError(f"{where}: LOW {low} is above HIGH {high}")
        for other in ranges.get(kind, ()):
            if low <= other[1] and other[0] <= high:
                raise ValueError(f"{where}: overlaps {kind}={other[0]}:{other[1]}")
        ranges.setdefault(kind, []).append((low, high))
    return {kind: tuple(sorted(spans)) for kind, spans in ranges.items()}


def parse_address(text: str) -> tuple[str, int]:
    """"127.0.0.1:9696", "[::1]:9696", "localhost:0" -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--api {text!r}: expected HOST:PORT, e.g. 127.0.0.1:{DEFAULT_PORT}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def admin_token(options: ApiOptions) -> str:
    """The given token; else the token file's; else a new one written there (0600)."""
    if options.admin_token:
        return options.admin_token.strip()
    path = options.token_file
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if token:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("%s can be read by others (mode %o); chmod 600 it", path, mode)
        log.info("admin token from %s", path)
        return token
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, path)
    log.info("admin token generated into %s", path)
    return token


async def start(controller: Any, options: ApiOptions) -> Any:
    """Serve the API of `controller` on its loop; returns the running ApiServer."""
    from .server import serve

    token = admin_token(options)
    tls = {"tls_cert": options.tls_cert, "tls_key": options.tls_key} if options.tls_cert else {}
    return await serve(controller, options.host, options.port, admin_token=token, public=options.public,
                       segment_ranges=options.segment_ranges, **tls)
