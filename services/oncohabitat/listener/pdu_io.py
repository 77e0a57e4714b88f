"""Bounded reading and writing of DICOM Upper Layer PDUs on a blocking socket (PS3.8 section 9.3).

Every PDU starts with a 6-byte header: type (1 byte), reserved (1), big-endian length (4) of the rest.
The announced length is checked against a per-type limit *before* the body is read or allocated: a
4 GiB announcement costs 6 bytes and gets :class:`PduTooLargeError` (pynetdicom's reader would grow an
unbounded ``bytearray``). Every receive waits at most the socket's timeout. Association-level PDUs:
:mod:`.negotiation` (pynetdicom's classes).
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from oncohabitat.listener.errors import ListenerError

ASSOCIATE_RQ = 0x01
ASSOCIATE_AC = 0x02
ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
RELEASE_RQ = 0x05
RELEASE_RP = 0x06
ABORT = 0x07

HEADER = struct.Struct(">BBL")
_PDV_HEADER = struct.Struct(">LBB")

#: Message control header bits of a presentation data value (PS3.8 annex E.2).
CONTROL_COMMAND = 0x01
CONTROL_LAST = 0x02

RELEASE_RP_PDU = HEADER.pack(RELEASE_RP, 0, 4) + b"\x00\x00\x00\x00"


class PduError(ListenerError):
    """The peer violated the Upper Layer protocol; the association is aborted."""


class PduTooLargeError(PduError):
    """A PDU announced more bytes than allowed for its type (``announced``/``limit`` in bytes)."""

    def __init__(self, pdu_type: int, announced: int, limit: int) -> None:
        super().__init__(f"PDU type 0x{pdu_type:02X} announces {announced} bytes, limit {limit}")
        self.pdu_type = pdu_type
        self.announced = announced
        self.limit = limit


class ConnectionClosedError(ListenerError):
    """The peer closed the TCP connection (possibly in the middle of a PDU)."""


@dataclass(frozen=True)
class Pdu:
    """One received PDU: its type and its body (everything after the 6-byte header)."""

    pdu_type: int
    body: bytearray


#: Linux TCP_QUICKACK (None elsewhere): acknowledge at once instead of delaying the ACK.
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def quick_ack(sock: socket.socket) -> None:
    """ACK received data at once (Linux; it resets itself, so call it per read): a peer using Nagle's
    algorithm (pynetdicom, dcmtk without ``TCP_NODELAY=1``) would stall ~40 ms per message on delayed ACKs."""
    if _QUICKACK is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)


def _recv_into(sock: socket.socket, view: memoryview, received: int = 0) -> None:
    """Fill ``view`` from byte ``received`` on; ConnectionClosedError (peer closed first), TimeoutError."""
    size = len(view)
    while received < size:
        count = sock.recv_into(view[received:])
        if count == 0:
            raise ConnectionClosedError(f"connection closed after {received} of {size} bytes")
        received += count
        quick_ack(sock)


def _checked_length(header: bytes | bytearray, offset: int, limits: dict[int, int]) -> tuple[int, int]:
    """``(pdu_type, body length)`` of the header at ``offset``, checked against ``limits`` (bytes by type)."""
    pdu_type, _, length = HEADER.unpack_from(header, offset)
    limit = limits.get(pdu_type)
    if limit is None:
        raise PduError(f"unexpected PDU type 0x{pdu_type:02X}")
    if length > limit:
        raise PduTooLargeError(pdu_type, length, limit)
    return pdu_type, length


def read_pdu(sock: socket.socket, limits: dict[int, int]) -> Pdu:
    """Read one PDU (exactly its bytes) whose body length must not exceed ``limits[pdu_type]`` bytes.

    Raises:
        PduError: unknown PDU type (``limits`` lacks it); PduTooLargeError: announced length above
            the type's limit (nothing more is read); ConnectionClosedError, TimeoutError.
    """
    header = bytearray(HEADER.size)
    _recv_into(sock, memoryview(header))
    pdu_type, length = _checked_length(header, 0, limits)
    body = bytearray(length)
    _recv_into(sock, memoryview(body))
    return Pdu(pdu_type, body)


class PduReader:
    """Reads PDUs from one blocking socket through a read-ahead buffer of ``chunk`` bytes.

    Fewer system calls than :func:`read_pdu` (one ``recv`` usually brings a header, the start of its
    body and small PDUs after it); a body is allocated only after its length passed the limit check.
    """

    def __init__(self, sock: socket.socket, chunk: int = 65_536) -> None:
        self._sock = sock
        self._buffer = bytearray(chunk)
        self._view = memoryview(self._buffer)
        self._start = 0
        self._end = 0

    def _fill(self) -> None:
        """Read more into the buffer (after moving what is left to its front)."""
        if self._start:
            left = self._end - self._start
            self._view[:left] = self._view[self._start : self._end]
            self._start, self._end = 0, left
        count = self._sock.recv_into(self._view[self._end :])
        quick_ack(self._sock)
        if count == 0:
            raise ConnectionClosedError(f"connection closed with {self._end - self._start} bytes of a PDU read")
        self._end += count

    def read(self, limits: dict[int, int]) -> Pdu:
        """The next PDU, as :func:`read_pdu`; bytes received stay buffered when a receive fails."""
        while self._end - self._start < HEADER.size:
            self._fill()
        pdu_type, length = _checked_length(self._buffer, self._start, limits)
        self._start += HEADER.size
        body = bytearray(length)
        taken = min(length, self._end - self._start)
        body[:taken] = self._view[self._start : self._start + taken]
        self._start += taken
        if self._start == self._end:
            self._start = self._end = 0
        _recv_into(self._sock, memoryview(body), taken)
        return Pdu(pdu_type, body)


def iter_pdvs(body: bytearray) -> Iterator[tuple[int, int, memoryview]]:
    """Split a P-DATA-TF body into ``(context_id, control_header, data)`` without copying.

    Raises:
        PduError: an item length runs past the PDU or is shorter than its 2-byte header.
    """
    view = memoryview(body)
    offset, end = 0, len(body)
    if end == 0:
        raise PduError("P-DATA-TF without presentation data values")
    while offset < end:
        if end - offset < _PDV_HEADER.size:
            raise PduError("truncated presentation data value item")
        item_length, context_id, control = _PDV_HEADER.unpack_from(body, offset)
        if item_length < 2 or offset + 4 + item_length > end:
            raise PduError("presentation data value item length out of range")
        yield context_id, control, view[offset + 6 : offset + 4 + item_length]
        offset += 4 + item_length


def encode_pdata(context_id: int, control: int, data: bytes) -> bytes:
    """One P-DATA-TF PDU carrying a single presentation data value."""
    return HEADER.pack(P_DATA_TF, 0, 6 + len(data)) + _PDV_HEADER.pack(2 + len(data), context_id, control) + data


def encode_abort(source: int = 0x02, reason: int = 0x00) -> bytes:
    """An A-ABORT PDU (source 0x00 = service user, 0x02 = service provider; PS3.8 9.3.8)."""
    return HEADER.pack(ABORT, 0, 4) + bytes((0, 0, source, reason))
