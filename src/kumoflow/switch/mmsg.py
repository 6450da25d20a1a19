"""Batched sending with ``sendmmsg(2)``, called through ctypes.

:class:`SendBatch` queues frames for one socket and sends them all with one
system call. Everything is allocated once: one ``bytearray`` with a slot of
``slot`` bytes per frame, the C arrays of ``struct iovec`` and ``struct
mmsghdr`` pointing into it, and an optional header shared by every message
as its first iovec (the switch's all-zero virtio-net header). Queuing a
frame costs a copy into its slot and its length written into its iovec,
through a ``memoryview`` of the iovec array cast to 64-bit words (plain
integer stores, far cheaper than ctypes field access); nothing is allocated
per frame.

A batch may have one destination address for every message (``name``, a
``struct sockaddr``: a tunnel port's remote endpoint on the switch's shared
underlay socket), and a frame may be queued behind a few bytes of its own
(``add_after``: a tunnel header), both copied into its slot.

``flush()`` sends the batch (MSG_DONTWAIT). The kernel may stop part-way:
a frame it refuses with EMSGSIZE or the like is counted as failed and the
rest are tried; EAGAIN / ENOBUFS (our socket buffer or the peer's backlog
is full) and ENETDOWN / ENXIO drop the rest of the batch, as a single
send would have dropped each of them.

Why sendmmsg and not a PACKET_TX_RING: a TX ring hands the kernel our slots
*by reference* (the skb points into the ring), and on a veth a slot stays
taken until whoever receives the frame frees it, for example a TCP receive
queue in the peer namespace; sendmmsg copies, so a slot is ours again as
soon as the call returns. The receive side is a PACKET_MMAP ring
(:mod:`.ring`), which measured faster than ``recvmmsg`` here
(docs/benchmarks.md, "Switch forwarding vs Open vSwitch").
"""

from __future__ import annotations

import array
import ctypes
import ctypes.util
import errno
import mmap

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_sendmmsg = _libc.sendmmsg
_sendmmsg.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)
_sendmmsg.restype = ctypes.c_int

MSG_DONTWAIT = 0x40
_DROP_REST = (errno.EAGAIN, errno.ENOBUFS, errno.ENETDOWN, errno.ENXIO)


class _IOVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.c_void_p), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


assert ctypes.sizeof(_MMsgHdr) == 64          # flush() steps through the array in 64-byte strides


def _addr(buf) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(buf))


class SendBatch:
    """Up to `size` frames of at most `slot` bytes each, sent with one sendmmsg
    (to the address `name`, a packed struct sockaddr, when given)."""

    def __init__(self, fd: int, size: int = 64, slot: int = 2048, header: bytes = b"", name: bytes = b"") -> None:
        self.fd = fd
        self.size = size
        self.slot = slot
        self.count = 0
        self.buf = bytearray(size * slot)
        self._view = memoryview(self.buf)
        self._header = ctypes.create_string_buffer(header, len(header)) if header else None
        per = 2 if header else 1
        self._iov = (_IOVec * (size * per))()
        self._msgs = (_MMsgHdr * size)()
        self._name = ctypes.create_string_buffer(name, len(name)) if name else None
        base = _addr(self.buf)
        for i in range(size):
            if name:
                self._msgs[i].msg_hdr.msg_name = ctypes.addressof(self._name)
                self._msgs[i].msg_hdr.msg_namelen = len(name)
            if header:
                self._iov[2 * i] = _IOVec(ctypes.addressof(self._header), len(header))
            self._iov[per * i + per - 1].iov_base = base + i * slot
            m = self._msgs[i].msg_hdr
            m.msg_iov = ctypes.addressof(self._iov) + per * i * ctypes.sizeof(_IOVec)
            m.msg_iovlen = per
        # the iovecs as 64-bit words: frame i's length is word stride * i + len_word
        self._words = memoryview(self._iov).cast("B").cast("Q")
        self._stride = 2 * per
        self._len_word = 2 * per - 1
        #: (offset in buf, word of iov_len) of each slot
        self._slots = tuple((i * slot, i * 2 * per + 2 * per - 1) for i in range(size))
        self._msgs_addr = ctypes.addressof(self._msgs)

    def add(self, frame) -> int:
        """Queue a frame (len(frame) <= slot; the batch not full): how many are queued now."""
        i = self.count
        o, w = self._slots[i]
        n = len(frame)
        self._view[o:o + n] = frame
        self._words[w] = n
        self.count = i = i + 1
        return i

    def add_many(self, frames: list, start: int = 0) -> int:
        """Queue frames[start:] (each len <= slot) until the batch is full:
        the index of the first frame not queued (len(frames) when all were)."""
        i = self.count
        room = self.size - i
        end = min(len(frames), start + room)
        view, words, slots = self._view, self._words, self._slots
        for frame in frames[start:end] if start or end < len(frames) else frames:
            o, w = slots[i]
            n = len(frame)
            view[o:o + n] = frame
            words[w] = n
            i += 1
        self.count = i
        return end

    def add_after(self, prefix: bytes, frame) -> int:
        """`add` for prefix + frame (len(prefix) + len(frame) <= slot)."""
        i = self.count
        o, w = self._slots[i]
        p = len(prefix)
        n = len(frame)
        view = self._view
        view[o:o + p] = prefix
        view[o + p:o + p + n] = frame
        self._words[w] = p + n
        self.count = i = i + 1
        return i

    def add_many_after(self, prefix: bytes, frames: list, start: int = 0) -> int:
        """`add_many` with `prefix` before each frame."""
        i = self.count
        end = min(len(frames), start + self.size - i)
        view, words, slots = self._view, self._words, self._slots
        p = len(prefix)
        for k in range(start, end):
            frame = frames[k]
            o, w = slots[i]
            n = len(frame)
            view[o:o + p] = prefix
            view[o + p:o + p + n] = frame
            words[w] = p + n
            i += 1
        self.count = i
        return end

    def length(self, i: int) -> int:
        return self._words[self._slots[i][1]]

    def flush(self) -> tuple[int, int, int, int, int]:
        """Send what is queued; the batch is empty afterwards whatever happened.
        Returns (frames sent, their bytes, frames dropped, frames failed,
        errno of the last failure)."""
        total = self.count
        self.count = 0
        nbytes = sum(self._words[self._len_word:total * self._stride:self._stride])
        i = dropped = failed = err = 0
        while i < total:
            n = _sendmmsg(self.fd, self._msgs_addr + i * 64, total - i, MSG_DONTWAIT)
            if n > 0:
                i += n
                continue
            err = ctypes.get_errno() if n < 0 else errno.EAGAIN
            if err == errno.EINTR:
                continue
            if err in _DROP_REST:
                stop = total
                dropped += total - i
            else:
                stop = i + 1
                failed += 1
            for k in range(i, stop):
                nbytes -= self.length(k)
            i = stop
        return total - dropped - failed, nbytes, dropped, failed, err

    def close(self) -> None:
        self._words.release()
        self._view.release()


_recvmmsg = _libc.recvmmsg
_recvmmsg.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p)
_recvmmsg.restype = ctypes.c_int
MSG_TRUNC = 0x20
_SOCKADDR_SPACE = 16                          # struct sockaddr_in


class RecvBatch:
    """Up to `size` datagrams of at most `slot` bytes each, read with one
    ``recvmmsg`` (MSG_DONTWAIT) together with their source addresses (as
    ``struct sockaddr_in``): the tunnel ports' shared underlay sockets.

    `read()` returns how many were read (0 when none was waiting); then
    datagram i is at ``i * slot`` in `map` (an anonymous mmap: a slice of it
    is a ``bytes`` in one copy) and `view` (valid until the next read),
    `truncated(i)` says it did not fit its slot, `source(i)` is its source
    IPv4 address as 4 bytes. Column by column, for a whole batch at once:
    `lengths(n)`, `flags(n)`, `sources(n)` (the addresses as native 32-bit
    words), and `words` / `halves`, the buffer as native 32- / 16-bit
    words, for strided reads of one header field of every datagram."""

    def __init__(self, fd: int, size: int = 64, slot: int = 65536) -> None:
        self.fd = fd
        self.size = size
        self.slot = slot
        self.map = mmap.mmap(-1, size * slot)
        self.buf = self.map
        self.view = memoryview(self.map)
        self.words = self.view.cast("I")
        self.halves = self.view.cast("H")
        self.names = bytearray(size * _SOCKADDR_SPACE)
        self._names32 = memoryview(self.names).cast("I")
        self._iov = (_IOVec * size)()
        self._msgs = (_MMsgHdr * size)()
        base = _addr(self.buf)
        names = _addr(self.names)
        for i in range(size):
            self._iov[i] = _IOVec(base + i * slot, slot)
            m = self._msgs[i].msg_hdr
            m.msg_iov = ctypes.addressof(self._iov) + i * ctypes.sizeof(_IOVec)
            m.msg_iovlen = 1
            m.msg_name = names + i * _SOCKADDR_SPACE
        self._msgs_addr = ctypes.addressof(self._msgs)
        # the headers as 32-bit words, 16 a message: msg_namelen is word 2, msg_flags
        # word 12, msg_len word 14 (plain integer access, far cheaper than ctypes fields)
        self._u32 = memoryview(self._msgs).cast("B").cast("I")
        self._namelens = array.array("I", [_SOCKADDR_SPACE]) * size
        self.error = 0

    def read(self) -> int:
        self._u32[2::16] = self._namelens     # the kernel shortened them to what it wrote
        while True:
            n = _recvmmsg(self.fd, self._msgs_addr, self.size, MSG_DONTWAIT, None)
            if n >= 0:
                return n
            err = ctypes.get_errno()
            if err == errno.EINTR:
                continue
            self.error = err                 # EAGAIN: nothing waiting
            return 0

    def lengths(self, n: int) -> list[int]:
        """The lengths of datagrams 0..n-1 as read."""
        return self._u32[14:16 * n:16].tolist()

    def flags(self, n: int) -> list[int]:
        """The msg_flags of datagrams 0..n-1 (MSG_TRUNC: did not fit)."""
        return self._u32[12:16 * n:16].tolist()

    def sources(self, n: int) -> list[int]:
        """The source addresses of datagrams 0..n-1 as native 32-bit words."""
        return self._names32[1:4 * n:4].tolist()

    def truncated(self, i: int) -> bool:
        return bool(self._u32[16 * i + 12] & MSG_TRUNC)

    def source(self, i: int) -> bytes:
        o = i * _SOCKADDR_SPACE
        return bytes(self.names[o + 4:o + 8])

    def close(self) -> None:
        self._u32.release()
        self._names32.release()
        self.words.release()
        self.halves.release()
        self.view.release()
        self.map.close()


__all__ = ["SendBatch", "RecvBatch"]
