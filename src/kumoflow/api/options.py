"""The API's command-line options of `kumoflow controller`, and starting it.

    --api HOST:PORT          serve the API there (off unless given; port 0: any free port)
    --api-public             allow a non-loopback --api address
    --admin-token TOKEN      the admin token (else read from, or generated into, --admin-token-file)
    --admin-token-file PATH  default /var/lib/kumoflow/admin-token, written with mode 0600

This module imports neither FastAPI nor uvicorn: a controller without
``--api`` never loads them.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("kumoflow.api")

DEFAULT_PORT = 9696
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
#: where the generated admin token is kept (and where `kumoflow show` looks for it)
DEFAULT_TOKEN_FILE = "/var/lib/kumoflow/admin-token"


@dataclass(frozen=True)
class ApiOptions:
    host: str
    port: int
    public: bool
    admin_token: str | None
    token_file: Path


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


def parse(args: argparse.Namespace) -> ApiOptions | None:
    """The API options, checked; None without --api. ValueError says what is wrong."""
    if not getattr(args, "api", None):
        return None
    host, port = parse_address(args.api)
    from .server import is_loopback          # imports FastAPI: only when --api is given

    if not is_loopback(host) and not args.api_public:
        raise ValueError(f"--api {args.api}: not a loopback address; the API would be reachable from other "
                         f"machines. Give --api-public to mean it")
    if args.admin_token is not None and not args.admin_token.strip():
        raise ValueError("--admin-token: empty")
    return ApiOptions(host, port, args.api_public, args.admin_token, Path(args.admin_token_file))


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
    return await serve(controller, options.host, options.port, admin_token=token, public=options.public)
