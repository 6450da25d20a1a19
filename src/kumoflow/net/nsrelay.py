"""TCP between the root network namespace and a hypervisor's, for a kumoflow
switch that runs in its hypervisor's namespace (its VM ports, its underlay
NIC and its tunnel sockets there, so its tunnel traffic crosses the
underlay). In that namespace 127.0.0.1 is the namespace's own loopback:
the controller, listening in the root namespace, is out of reach, and so is
the switch's passive listener from `ovs-ofctl` in the root namespace.

The relay runs in the root namespace and opens each of its sockets in the
namespace it belongs to (setns(2) around the socket() call only; a socket
stays in the namespace it was made in):

    python -m kumoflow.net.nsrelay --netns NS --status-file FILE \\
        --into PORT=HOST:HPORT    listen on 127.0.0.1:PORT in NS, connect to HOST:HPORT in the root namespace
        --out-of PORT             listen on a loopback port of the kernel's choice in the root namespace,
                                  connect to 127.0.0.1:PORT in NS

Once it listens it writes FILE: ``{"pid": ..., "out_of": {"PORT": ROOT_PORT}}``.
A connection whose far end cannot be reached is closed at once (a switch
then retries its controller as it would without the relay).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import socket
import sys
from pathlib import Path

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


class Namespaces:
    """The root namespace (the relay's own) and the hypervisor's, as open files."""

    def __init__(self, netns: str) -> None:
        self.root = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.hv = os.open(f"/run/netns/{netns}", os.O_RDONLY)

    def socket(self, inside: bool) -> socket.socket:
        """A TCP socket in the hypervisor's namespace (`inside`) or the root one."""
        if not inside:
            return _tcp()
        _setns(self.hv)
        try:
            return _tcp()
        finally:
            _setns(self.root)


def _tcp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    return sock


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


async def _listen(spaces: Namespaces, inside: bool, port: int, target: tuple[str, int]) -> asyncio.Server:
    """Listen on 127.0.0.1:port (inside the hypervisor's namespace or not) and relay each
    connection to `target` in the other namespace."""
    loop = asyncio.get_running_loop()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        far = spaces.socket(not inside)
        try:
            await loop.sock_connect(far, target)
        except OSError:
            far.close()
            writer.close()
            return
        for sock in (far, writer.get_extra_info("socket")):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        far_reader, far_writer = await asyncio.open_connection(sock=far)
        await asyncio.gather(_pump(reader, far_writer), _pump(far_reader, writer))

    listener = spaces.socket(inside)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    return await asyncio.start_server(relay, sock=listener)


def _into(text: str) -> tuple[int, tuple[str, int]]:
    port, _, target = text.partition("=")
    host, _, target_port = target.rpartition(":")
    try:
        return int(port), (host, int(target_port))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected PORT=HOST:PORT") from None


async def main(args: argparse.Namespace) -> None:
    spaces = Namespaces(args.netns)
    servers = [await _listen(spaces, True, port, target) for port, target in args.into]
    out_of = {}
    for port in args.out_of:
        server = await _listen(spaces, False, 0, ("127.0.0.1", port))
        out_of[str(port)] = server.sockets[0].getsockname()[1]
        servers.append(server)
    status = Path(args.status_file)
    temporary = status.with_suffix(".tmp")
    temporary.write_text(json.dumps({"pid": os.getpid(), "netns": args.netns, "out_of": out_of}))
    temporary.replace(status)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kumoflow.net.nsrelay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--netns", required=True)
    parser.add_argument("--status-file", required=True)
    parser.add_argument("--into", type=_into, action="append", default=[])
    parser.add_argument("--out-of", type=int, action="append", default=[])
    return parser.parse_args(argv)


if __name__ == "__main__":
    try:
        asyncio.run(main(parse_args(sys.argv[1:])))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"nsrelay: {exc}", file=sys.stderr)
        sys.exit(1)
