"""Linux native asynchronous I/O: one direct write in flight per :class:`DirectWriter`.

A caller copies what it wants written into the writer's page-aligned buffer, starts the write
(``io_submit``: the kernel queues it to the device and returns), does other work, then polls
(``io_getevents`` without waiting) or waits for the completion. With ``O_DIRECT`` and
``RWF_DSYNC`` the completion means the data is on stable storage: the kernel flushes the device's
write cache (or writes with FUA) before it reports the write complete, so no ``fdatasync`` follows.

The three system calls are made through ctypes (``syscall(2)``; glibc has no wrappers for them and
the only Python binding, python-libaio, needs the C library libaio installed as well). Linux on
x86-64 and AArch64 only; :func:`unavailable_reason` says why it cannot be used elsewhere.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import platform
import sys
from collections.abc import Callable
from typing import Final, cast

#: ``io_setup``, ``io_destroy``, ``io_getevents``, ``io_submit`` by machine (asm/unistd.h).
_SYSCALLS: Final = {"x86_64": (206, 207, 208, 209), "aarch64": (0, 1, 4, 2)}
_IOCB_CMD_PWRITE: Final = 1
#: ``aio_rw_flags`` bit: the write completes once its data is durable (Linux >= 4.13).
RWF_DSYNC: Final = 0x00000002
#: ``io_setup``'s ``nr_events``: requests in flight per context (one here; the kernel rounds up).
_EVENTS: Final = 1


class _Iocb(ctypes.Structure):
    """``struct iocb`` (linux/aio_abi.h), little-endian layout."""

    _fields_ = [
        ("aio_data", ctypes.c_uint64),
        ("aio_key", ctypes.c_uint32),
        ("aio_rw_flags", ctypes.c_int32),
        ("aio_lio_opcode", ctypes.c_uint16),
        ("aio_reqprio", ctypes.c_int16),
        ("aio_fildes", ctypes.c_uint32),
        ("aio_buf", ctypes.c_uint64),
        ("aio_nbytes", ctypes.c_uint64),
        ("aio_offset", ctypes.c_int64),
        ("aio_reserved2", ctypes.c_uint64),
        ("aio_flags", ctypes.c_uint32),
        ("aio_resfd", ctypes.c_uint32),
    ]


class _IoEvent(ctypes.Structure):
    """``struct io_event``: ``res`` is the byte count written or a negative errno."""

    _fields_ = [
        ("data", ctypes.c_uint64),
        ("obj", ctypes.c_uint64),
        ("res", ctypes.c_int64),
        ("res2", ctypes.c_int64),
    ]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _load_syscall() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    function = libc.syscall
    function.restype = ctypes.c_long
    return cast(Callable[..., int], function)


_SYSCALL = _load_syscall() if sys.platform == "linux" else None
_NUMBERS = _SYSCALLS.get(platform.machine())
_NO_WAIT = _Timespec(0, 0)


def unavailable_reason() -> str | None:
    """Why :class:`DirectWriter` cannot be used on this system, or None when it can."""
    if sys.platform != "linux" or _SYSCALL is None:
        return "not Linux"
    if _NUMBERS is None or sys.byteorder != "little" or ctypes.sizeof(ctypes.c_void_p) != 8:
        return f"unsupported machine {platform.machine()} (64-bit x86-64 or AArch64 only)"
    return None


def _call(number: int, *args: object) -> int:
    assert _SYSCALL is not None
    result = int(_SYSCALL(ctypes.c_long(number), *args))
    if result < 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))
    return result


class DirectWriter:
    """An AIO context and a page-aligned buffer of ``capacity`` bytes; one write in flight at a time.

    Not thread-safe: one thread uses a writer between :meth:`submit` and the completion.

    Raises:
        OSError: the context cannot be created (``EAGAIN``: the system's ``aio-max-nr`` is used up;
            ``ENOSYS``: AIO is compiled out or filtered).
    """

    def __init__(self, capacity: int) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise OSError(f"Linux AIO unavailable: {reason}")
        assert _NUMBERS is not None
        self._setup, self._destroy, self._getevents, self._submit = _NUMBERS
        self.capacity = capacity
        self._context = ctypes.c_ulong(0)
        _call(self._setup, ctypes.c_long(_EVENTS), ctypes.byref(self._context))
        try:
            #: Write what is to be written here (anonymous mapping: page-aligned, as O_DIRECT needs).
            self.buffer = mmap.mmap(-1, capacity)
        except BaseException:
            _call(self._destroy, self._context)
            raise
        self._address = ctypes.addressof(ctypes.c_char.from_buffer(self.buffer))
        self._iocb = _Iocb()
        self._iocbs = (ctypes.POINTER(_Iocb) * 1)(ctypes.pointer(self._iocb))
        self._event = _IoEvent()
        self._length = 0
        self.in_flight = False

    def submit(self, fd: int, length: int, offset: int, *, rw_flags: int = 0) -> None:
        """Start writing the buffer's first ``length`` bytes at byte ``offset`` of ``fd``.

        For an ``O_DIRECT`` descriptor ``length`` and ``offset`` must be multiples of the device's
        logical block size. ``rw_flags``: e.g. :data:`RWF_DSYNC`.

        Raises:
            OSError: refused before it started (``EINVAL``: misaligned, or a flag this kernel does
                not know); nothing was written.
        """
        if self.in_flight:
            raise RuntimeError("a write is already in flight")
        if not 0 < length <= self.capacity:
            raise ValueError(f"length {length} outside 1..{self.capacity}")
        iocb = self._iocb
        iocb.aio_lio_opcode = _IOCB_CMD_PWRITE
        iocb.aio_fildes = fd
        iocb.aio_buf = self._address
        iocb.aio_nbytes = length
        iocb.aio_offset = offset
        iocb.aio_rw_flags = rw_flags
        _call(self._submit, self._context, ctypes.c_long(1), self._iocbs)
        self._length = length
        self.in_flight = True

    def poll(self) -> bool:
        """True once the write in flight has completed (then :meth:`result` gives its outcome); no wait."""
        if not self.in_flight:
            return True
        if _call(self._getevents, self._context, ctypes.c_long(0), ctypes.c_long(1), ctypes.byref(self._event),
                 ctypes.byref(_NO_WAIT)):  # fmt: skip
            self.in_flight = False
        return not self.in_flight

    def wait(self) -> None:
        """Wait (sleeping, the GIL released) until the write in flight has completed."""
        while self.in_flight:
            try:
                count = _call(self._getevents, self._context, ctypes.c_long(1), ctypes.c_long(1),
                              ctypes.byref(self._event), None)  # fmt: skip
            except InterruptedError:
                continue
            if count:
                self.in_flight = False

    def result(self) -> None:
        """Raise unless the completed write wrote all its bytes.

        Raises:
            OSError: the write failed (its errno) or was short.
        """
        written = int(self._event.res)
        if written < 0:
            raise OSError(-written, os.strerror(-written))
        if written != self._length:
            raise OSError(f"short direct write ({written} of {self._length} bytes)")

    def close(self) -> None:
        """Wait for a write in flight, then release the context and the buffer."""
        self.wait()
        if self._context.value:
            _call(self._destroy, self._context)
            self._context = ctypes.c_ulong(0)
        self.buffer.close()
