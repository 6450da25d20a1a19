"""The null responder: the least an OpenFlow 1.3 controller can do, as fast as Python can.

It says HELLO and asks FEATURES on each connection, answers ECHO_REQUEST,
and answers every PACKET_IN with a pre-encoded PACKET_OUT (flood) whose
xid, buffer id and in_port are patched in. No app, no decoding, one epoll
loop. cbench.py runs its load against it to show the load generator's own
ceiling, well above what the real controllers reach.

    python benchmarks/controller/_cbench_null.py --listen tcp:127.0.0.1:6653
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import struct
import sys
from pathlib import Path

_SRC = Path(__file__).resolve().parents[2] / "src"
if str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

from kumoflow import ofp  # noqa: E402

HELLO = ofp.Hello(xid=1).pack() + ofp.FeaturesRequest(xid=2).pack()
_PO = ofp.PacketOut(buffer_id=0, in_port=0, actions=[ofp.Output(ofp.OFPP.FLOOD)]).pack()
PO = struct.Struct(f"!4sIII{len(_PO) - 16}s")           # header | xid | buffer_id | in_port | rest
PO_HEAD, PO_REST = _PO[:4], _PO[16:]
U32 = struct.Struct("!I")
NO_BUFFER = 0xFFFFFFFF
OXM_IN_PORT = 0x80000004                                  # OFB_IN_PORT, 4 bytes


def packet_out(buf: bytes, o: int, length: int) -> bytes:
    """The PACKET_OUT answering the PACKET_IN at buf[o:o+length]."""
    xid, buffer_id = struct.unpack_from("!II", buf, o + 4)
    in_port = ofp.OFPP.CONTROLLER
    if U32.unpack_from(buf, o + 28)[0] == OXM_IN_PORT:   # the first OXM is in_port (as switches send it)
        in_port = U32.unpack_from(buf, o + 32)[0]
    if buffer_id != NO_BUFFER:
        return PO.pack(PO_HEAD, xid, buffer_id, in_port, PO_REST)
    match_len = buf[o + 26] << 8 | buf[o + 27]
    data = buf[o + 24 + ((match_len + 7) & ~7) + 2:o + length]
    msg = ofp.PacketOut(buffer_id=NO_BUFFER, in_port=in_port, actions=[ofp.Output(ofp.OFPP.FLOOD)],
                        data=bytes(data), xid=xid)
    return msg.pack()


def serve(host: str, port: int, quiet: bool = False) -> None:
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((host, port))
    lsock.listen(1024)
    lsock.setblocking(False)
    ep = select.epoll()
    ep.register(lsock.fileno(), select.EPOLLIN)
    conns: dict[int, socket.socket] = {}
    rbufs: dict[int, bytes] = {}
    wbufs: dict[int, bytearray] = {}
    print(f"listening on tcp:{host}:{lsock.getsockname()[1]}", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    lfd = lsock.fileno()
    pack_po, head, rest = PO.pack, PO_HEAD, PO_REST
    unpack2 = struct.Struct("!II").unpack_from
    u32 = U32.unpack_from

    def close(fd: int) -> None:
        ep.unregister(fd)
        conns.pop(fd).close()
        rbufs.pop(fd, None)
        wbufs.pop(fd, None)

    def send(fd: int, data: bytes) -> None:
        w = wbufs.get(fd)
        if w:
            w += data
            return
        try:
            n = conns[fd].send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            close(fd)
            return
        if n < len(data):
            wbufs[fd] = bytearray(data[n:])
            ep.modify(fd, select.EPOLLIN | select.EPOLLOUT)

    while not stop:
        try:
            events = ep.poll(1.0, 1024)
        except InterruptedError:
            continue
        for fd, ev in events:
            if fd == lfd:
                while True:
                    try:
                        sock, _ = lsock.accept()
                    except (BlockingIOError, OSError):
                        break
                    sock.setblocking(False)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conns[sock.fileno()] = sock
                    ep.register(sock.fileno(), select.EPOLLIN)
                    send(sock.fileno(), HELLO)
                continue
            sock = conns.get(fd)
            if sock is None:
                continue
            if ev & select.EPOLLOUT and fd in wbufs:
                w = wbufs[fd]
                try:
                    n = sock.send(w)
                except BlockingIOError:
                    n = 0
                except OSError:
                    close(fd)
                    continue
                del w[:n]
                if not w:
                    del wbufs[fd]
                    ep.modify(fd, select.EPOLLIN)
            if not ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                continue
            try:
                data = sock.recv(262144)
            except BlockingIOError:
                continue
            except OSError:
                close(fd)
                continue
            if not data:
                close(fd)
                continue
            pend = rbufs.get(fd)
            buf = pend + data if pend else data
            n = len(buf)
            o = 0
            out = []
            while n - o >= 8:
                length = buf[o + 2] << 8 | buf[o + 3]
                if length < 8:
                    n = -1
                    break
                if n - o < length:
                    break
                t = buf[o + 1]
                if t == 10:                                   # PACKET_IN
                    xid, bid = unpack2(buf, o + 4)
                    if bid != NO_BUFFER and u32(buf, o + 28)[0] == OXM_IN_PORT:
                        out.append(pack_po(head, xid, bid, u32(buf, o + 32)[0], rest))
                    else:
                        out.append(packet_out(buf, o, length))
                elif t == 2:                                  # ECHO_REQUEST -> ECHO_REPLY
                    out.append(b"\x04\x03" + buf[o + 2:o + length])
                elif t == 6 and not quiet:                    # FEATURES_REPLY
                    dpid = struct.unpack_from("!Q", buf, o + 8)[0]
                    print(f"switch dpid={dpid:#x} up", flush=True)
                o += length
            if n < 0:
                close(fd)
                continue
            if o < n:
                rbufs[fd] = buf[o:]
            elif pend:
                del rbufs[fd]
            if out:
                send(fd, b"".join(out))
    for sock in conns.values():
        sock.close()
    lsock.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", default="tcp:127.0.0.1:6653", metavar="tcp:HOST:PORT")
    p.add_argument("--quiet", action="store_true", help="don't print a line per switch")
    p.add_argument("--cpu", type=int, help="pin to this CPU")
    args = p.parse_args(argv)
    scheme, host, port = args.listen.split(":")
    if scheme != "tcp":
        p.error("--listen must be tcp:HOST:PORT")
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    serve(host, int(port), args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
