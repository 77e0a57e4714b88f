"""The intake journal's on-disk entry format: encoding an entry, reading entries back.

An entry is a 64-byte header, a metadata block (the store's JSON) and the payload (the Part-10
bytes), padded with zeros to a multiple of :data:`BLOCK` bytes::

    magic "OHJ1" | version u16 | flags u16 | sequence u64 | meta length u32 | payload length u32
    | header CRC-32 u32 (over the header with this field zero, plus the metadata) | pad u32
    | payload check (32 bytes: the payload's CRC-32C, little endian, then zeros)

``flags`` is always :data:`FLAGS`. A CRC finds a torn write (the index's SHA-256 is computed by the
reader, off the reply path). An entry with a valid header but other flags is an earlier release's:
reading it raises :class:`JournalError` (an entry that may be acknowledged is never skipped unread).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import BinaryIO

import google_crc32c

from oncohabitat.listener.errors import ListenerError

MAGIC = b"OHJ1"
VERSION = 1
HEADER = struct.Struct("<4sHHQIII4x32s")
SEGMENT_PATTERN = "segment-{:03d}.log"
#: Entries start on multiples of this (bytes): concurrent writers never share a page.
BLOCK = 4096
#: Header flags of every entry written: 0x0001 padded to :data:`BLOCK`, 0x0004 CRC-32C payload check.
FLAGS = 0x0005


class JournalError(ListenerError):
    """The journal cannot take an entry (full past its timeout, or an I/O error): refuse the instance."""


@dataclass(frozen=True)
class JournalEntry:
    """One journaled instance: its sequence number, the store's metadata, the Part-10 bytes and
    their hex SHA-256 (computed on reading)."""

    sequence: int
    meta: bytes
    payload: bytes
    sha256: str


@dataclass(frozen=True)
class JournalLocation:
    """Where an appended entry lies: its sequence, segment number, byte offset and size (bytes, unpadded)."""

    sequence: int
    segment: int
    offset: int
    size: int


def align_up(value: int) -> int:
    """``value`` rounded up to a multiple of :data:`BLOCK`."""
    return (value + BLOCK - 1) // BLOCK * BLOCK


def payload_check(payload: bytes) -> bytes:
    """The 32-byte payload check of an entry."""
    return google_crc32c.value(payload).to_bytes(4, "little") + bytes(28)


def encode_header(sequence: int, meta: bytes, payload: bytes) -> bytes:
    """The 64-byte header of an entry (see module doc)."""
    check = payload_check(payload)
    blank = HEADER.pack(MAGIC, VERSION, FLAGS, sequence, len(meta), len(payload), 0, check)
    crc = zlib.crc32(meta, zlib.crc32(blank))
    return HEADER.pack(MAGIC, VERSION, FLAGS, sequence, len(meta), len(payload), crc, check)


def _entry(sequence: int, flags: int, meta: bytes, payload: bytes, check: bytes) -> JournalEntry | None:
    """The entry, or None when its payload does not match its check (a torn write).

    Raises:
        JournalError: an entry of an earlier release's format.
    """
    if flags != FLAGS:
        raise JournalError(
            f"entry {sequence} was written by an earlier release (flags {flags:#06x}); not starting, so that it is"
            " not lost: stop the listener cleanly before an upgrade or a downgrade"
        )
    if payload_check(payload) != check:
        return None
    return JournalEntry(sequence, meta, payload, sha256(payload).hexdigest())


def read_segment(reader: BinaryIO, checkpoint: int) -> Iterator[tuple[int, JournalEntry | None]]:
    """Entries of one segment from its start to the first invalid one: ``(sequence, entry)``;
    ``entry`` is None for entries at or below ``checkpoint`` (their payload is not read).

    Raises:
        JournalError: an entry of an earlier release's format past the checkpoint.
    """
    previous = start = 0
    while True:
        raw = reader.read(HEADER.size)
        if len(raw) < HEADER.size:
            return
        magic, version, flags, sequence, meta_length, payload_length, crc, check = HEADER.unpack(raw)
        if magic != MAGIC or version != VERSION or sequence <= previous:
            return
        meta = reader.read(meta_length)
        blank = HEADER.pack(MAGIC, VERSION, flags, sequence, meta_length, payload_length, 0, check)
        if len(meta) != meta_length or zlib.crc32(meta, zlib.crc32(blank)) != crc:
            return
        previous = sequence
        start = align_up(start + HEADER.size + meta_length + payload_length)
        if sequence <= checkpoint:
            reader.seek(start)
            yield sequence, None
            continue
        payload = reader.read(payload_length)
        entry = _entry(sequence, flags, meta, payload, check) if len(payload) == payload_length else None
        if entry is None:
            return  # torn write: never acknowledged, and nothing acknowledged lies behind it
        reader.seek(start)
        yield sequence, entry


class JournalReader:
    """Reads entries at known locations in the journal ``directory`` (materialiser side; files stay open)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._fds: dict[int, int] = {}

    def read(self, location: JournalLocation) -> JournalEntry:
        """The entry at ``location`` (header checked: magic, sequence, sizes; payload: its check).

        Raises:
            JournalError: the bytes there are not that entry.
        """
        fd = self._fds.get(location.segment)
        if fd is None:
            try:
                fd = os.open(self._directory / SEGMENT_PATTERN.format(location.segment), os.O_RDONLY)
            except OSError as exc:
                raise JournalError(f"journal segment cannot be opened: {exc.strerror}") from exc
            self._fds[location.segment] = fd
        data = os.pread(fd, location.size, location.offset)
        if len(data) != location.size:
            raise JournalError("journal entry is truncated")
        magic, version, flags, sequence, meta_length, payload_length, _crc, check = HEADER.unpack_from(data)
        if (magic, version, sequence) != (MAGIC, VERSION, location.sequence) or (
            HEADER.size + meta_length + payload_length != location.size
        ):
            raise JournalError("journal entry does not match its location")
        meta, payload = data[HEADER.size : HEADER.size + meta_length], data[HEADER.size + meta_length :]
        entry = _entry(sequence, flags, meta, payload, check)
        if entry is None:
            raise JournalError("journal entry payload does not match its check")
        return entry

    def close(self) -> None:
        """Close the segment files."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
