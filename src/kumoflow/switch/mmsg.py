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

import ctypes
import ctypes.util
import errno

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
    """Up to `size` frames of at most `slot` bytes each, sent with one sendmmsg."""

    def __init__(self, fd: int, size: int = 64, slot: int = 2048, header: bytes = b"") -> None:
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
        base = _addr(self.buf)
        for i in range(size):
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


__all__ = ["SendBatch"]
