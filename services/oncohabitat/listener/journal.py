"""Intake journal: the durable record of each received instance before its C-STORE success reply.

Why: a new file per instance made durable costs an inode allocation, a data fsync and a directory
fsync (0.4-0.8 ms on this project's disks), all on the reply path of a peer that waits for each
reply before it sends the next instance. Appending to a few pre-allocated files and syncing their
data costs one ``fdatasync`` (0.15-0.25 ms), and concurrent associations share it (group commit).
The instance files and index rows are then written in the background, in batches
(:mod:`.materialiser`), and made durable together by one file-system sync before the journal space
they used is reused (a *checkpoint*).

Layout under ``directory``::

    segment-000.log ... segment-NNN.log    fixed-size files, filled in order, reused in a ring
    checkpoint                             sequence number through which entries are materialised

An entry is a 64-byte header, an opaque metadata block (the store's JSON) and the payload (the
Part-10 bytes)::

    magic "OHJ1" | version u16 | flags u16 | sequence u64 | meta length u32 | payload length u32
    | header CRC-32 u32 (over the header with this field zero, plus the metadata) | pad u32
    | payload check (32 bytes)

Flags: 0x0001 (:data:`FLAG_PADDED`): the next entry starts at the following multiple of
:data:`BLOCK` bytes. 0x0002 (:data:`FLAG_PAYLOAD_CRC32`) / 0x0004 (:data:`FLAG_PAYLOAD_CRC32C`): the
payload check is the payload's CRC-32 (zlib) / CRC-32C (Castagnoli), 4 bytes then zeros, instead of
its SHA-256. :meth:`IntakeJournal.write` sets :data:`FLAG_PADDED` and a CRC flag unless the caller
passes the SHA-256: a CRC is enough to find a torn write, and the SHA-256 the index keeps is computed
by whoever reads the entry back (:class:`JournalReader`, off the reply path; recovery). It uses
CRC-32C (``google-crc32c``'s C code: 2.4 against 11.4 us for zlib's CRC-32 and 30 us for a SHA-256
of 57 KB here, on the reply path) and zlib's CRC-32 where that C code is unavailable; both are read.

Sequences increase by one per entry. Writers reserve space under a lock (so a segment is filled
in sequence order), write without the lock, then wait until an ``fdatasync`` that began after
every entry up to theirs was complete has returned: a reply is sent only once every earlier entry
is durable too. Recovery therefore scans each segment from its start until the first entry that
is incomplete or invalid (or not numbered above the one before it); nothing acknowledged can lie
behind it. After a restart the numbering jumps by more entries than the ring holds, so that valid
entries of an earlier run left behind such an entry never continue a later run's chain. Entries at or below the
checkpoint are old (already materialised durably) and skipped; the rest are handed back by
:attr:`IntakeJournal.recovered` to be materialised again (idempotently).

An entry whose writer starts its device write at once (``write(start_writeback=True)``: an
association served on its own thread) may instead be written directly and durably by one
asynchronous write (:mod:`.journal_direct`); it then counts as written once that write completes,
needs no ``fdatasync`` of its own, and is still acknowledged only once every earlier entry is
durable (the same rule).

A segment is reused only when all its entries are at or below the checkpoint. Writers that find
no reusable segment wait (``space_timeout_s``) for the materialiser to checkpoint; until then the
association is simply slower, never wrong. Entries larger than :attr:`max_entry_bytes` are not
journaled (the store writes and fsyncs them directly: for such sizes the per-file cost is small).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import BinaryIO

import google_crc32c

from oncohabitat.common.blobstore import fsync_directory, start_device_write
from oncohabitat.common.linux_aio import DirectWriter, unavailable_reason
from oncohabitat.listener.errors import ListenerError
from oncohabitat.listener.journal_direct import DirectWrites

_LOG = logging.getLogger(__name__)

MAGIC = b"OHJ1"
VERSION = 1
HEADER = struct.Struct("<4sHHQIII4x32s")
_CHECKPOINT = struct.Struct("<4sQI")
_CHECKPOINT_MAGIC = b"OHJC"
CHECKPOINT_FILE = "checkpoint"
_SEGMENT_PATTERN = "segment-{:03d}.log"
_PREPARE_CHUNK = 1024 * 1024
#: Largest entry written directly (see :mod:`.journal_direct`), bytes; larger ones go through the page cache.
DIRECT_MAX_BYTES = 1024 * 1024
_O_DIRECT = getattr(os, "O_DIRECT", 0)
#: Entries start on multiples of this (bytes): concurrent writers never share a page, so none waits
#: for a page still being written back for another's entry (4 associations, measured here: the
#: append took 0.46 ms of wall time with shared pages).
BLOCK = 4096
#: Header flag: the entry is followed by padding up to a multiple of :data:`BLOCK`.
FLAG_PADDED = 0x0001
_ZEROS = bytes(BLOCK)
#: Header flag: the payload check is a CRC-32 (little endian, zero-padded to 32 bytes), not a SHA-256.
FLAG_PAYLOAD_CRC32 = 0x0002
#: Header flag: the payload check is a CRC-32C (little endian, zero-padded to 32 bytes), not a SHA-256.
FLAG_PAYLOAD_CRC32C = 0x0004
_PAYLOAD_CRC = FLAG_PAYLOAD_CRC32 | FLAG_PAYLOAD_CRC32C
#: The CRC flag :meth:`IntakeJournal.write` uses: CRC-32C where its C implementation is installed.
WRITE_CRC_FLAG = FLAG_PAYLOAD_CRC32C if google_crc32c.implementation == "c" else FLAG_PAYLOAD_CRC32


def align_up(value: int, block: int = BLOCK) -> int:
    """``value`` rounded up to a multiple of ``block``."""
    return (value + block - 1) // block * block


class JournalError(ListenerError):
    """The journal cannot take an entry (full past its timeout, or an I/O error): refuse the instance."""


def payload_check(payload: bytes, flag: int = FLAG_PAYLOAD_CRC32) -> bytes:
    """The 32-byte payload check of an entry with CRC flag ``flag`` (:data:`FLAG_PAYLOAD_CRC32` or
    :data:`FLAG_PAYLOAD_CRC32C`)."""
    crc = google_crc32c.value(payload) if flag == FLAG_PAYLOAD_CRC32C else zlib.crc32(payload)
    return crc.to_bytes(4, "little") + bytes(28)


def _payload_valid(flags: int, payload: bytes, check: bytes) -> bool:
    if flags & _PAYLOAD_CRC:
        return payload_check(payload, flags & _PAYLOAD_CRC) == check
    return sha256(payload).digest() == check


@dataclass(frozen=True)
class JournalEntry:
    """One journaled instance: its sequence number, the store's metadata, the Part-10 bytes and
    their hex SHA-256 (computed on reading for entries written with a CRC check)."""

    sequence: int
    meta: bytes
    payload: bytes
    sha256: str


@dataclass(frozen=True)
class JournalLocation:
    """Where an appended entry lies: its sequence, segment number, byte offset and total size."""

    sequence: int
    segment: int
    offset: int
    size: int


@dataclass
class _Segment:
    """One segment file: its descriptor and the highest sequence written into it (0 = none)."""

    number: int
    path: Path
    fd: int = -1
    max_sequence: int = 0
    write_offset: int = 0
    dirty_through: int = 0  # highest sequence written here since its last fdatasync
    direct_fd: int = -1  # the same file opened with O_DIRECT (direct writes on)


@dataclass
class _SyncState:
    """Group-commit bookkeeping (guarded by the journal's condition)."""

    done_through: int = 0  # every entry <= this has been written (contiguous)
    synced_through: int = 0  # every entry <= this is durable
    syncing: bool = False
    finished: set[int] = field(default_factory=set)
    failed_at: int | None = None  # first entry whose write or sync failed: it and later ones are never durable


@dataclass
class _Flight:
    """A direct write in flight: its writer, where it goes (offset, padded length in bytes), and
    whether it was reaped (its outcome recorded, by its own writer or by a waiter behind it)."""

    direct: DirectWrites
    writer: DirectWriter
    segment: _Segment
    offset: int
    padded: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    reaped: bool = False
    error: JournalError | None = None


#: Completion errors meaning "this file or device takes no such write" (nothing was written).
_DIRECT_REFUSED = frozenset({errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP})


def encode_header(sequence: int, meta: bytes, payload_length: int, digest: bytes, flags: int = 0) -> bytes:
    """The 64-byte header of an entry (see module doc)."""
    blank = HEADER.pack(MAGIC, VERSION, flags, sequence, len(meta), payload_length, 0, digest)
    crc = zlib.crc32(meta, zlib.crc32(blank))
    return HEADER.pack(MAGIC, VERSION, flags, sequence, len(meta), payload_length, crc, digest)


class IntakeJournal:
    """Pre-allocated ring of segment files with group-committed appends (see module doc).

    Args:
        directory: journal directory (created if missing; one process at a time, as the store root).
        segment_bytes: size of one segment file in bytes (entries never span segments).
        segments: number of segment files (>= 2).
        sync: ``fdatasync`` before an append returns (False: survives a process crash only).
        space_timeout_s: longest wait for a reusable segment before :class:`JournalError`, s; after
            such a timeout appends fail at once for ``bypass_s`` (the store then writes directly).
        bypass_s: how long appends are refused after a space timeout, s.
        direct_writes: write an entry whose device write the caller starts at once
            (``write(start_writeback=True)``) directly and durably (:mod:`.journal_direct`) where
            the system allows it (Linux AIO, ``O_DIRECT``); the page cache otherwise.
        spin_s: how long a wait for a direct write polls before it sleeps, s (0 = never).

    Raises:
        JournalError: the directory or a segment cannot be prepared.
    """

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = 32 * 1024 * 1024,
        segments: int = 8,
        sync: bool = True,
        space_timeout_s: float = 5.0,
        bypass_s: float = 10.0,
        direct_writes: bool = False,
        spin_s: float = 0.0,
    ) -> None:
        if segments < 2 or segment_bytes < 1024 * 1024:
            raise ValueError("a journal needs >= 2 segments of >= 1 MiB")
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.sync = sync
        self._space_timeout_s = space_timeout_s
        self._bypass_s = bypass_s
        self._bypass_until = 0.0
        self._cond = threading.Condition()
        self._state = _SyncState()
        self._space_wanted = False
        self._direct: DirectWrites | None = None
        self._in_flight: dict[int, _Flight] = {}
        self._writing = 0  # writers between their reservation and the end of write()
        self._closing = False
        self._closed = False
        if direct_writes and sync:
            reason = unavailable_reason() or ("" if _O_DIRECT else "no O_DIRECT")
            if reason:
                _LOG.info("intake journal: direct writes off (%s)", reason)
            else:
                self._direct = DirectWrites(min(DIRECT_MAX_BYTES, segment_bytes), spin_s)
        self._direct_pool = self._direct  # closed with the journal, also once direct writes stopped
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"journal directory cannot be created: {exc.strerror}") from exc
        self.checkpointed_through = self._read_checkpoint()
        self._segments = [_Segment(k, directory / _SEGMENT_PATTERN.format(k)) for k in range(segments)]
        self.recovered, last = self._scan()
        restarted = any(segment.path.exists() for segment in self._segments)
        prepared = False
        for segment in self._segments:
            if not segment.path.exists() or segment.path.stat().st_size < segment_bytes:
                self._prepare(segment)
                prepared = True
        if prepared:
            try:
                fsync_directory(directory)
            except OSError as exc:
                raise JournalError(f"journal directory cannot be synced: {exc.strerror}") from exc
        # After a restart, numbering jumps by more than the ring can hold: entries of an earlier
        # run left behind the first invalid one (never acknowledged) then never continue a new
        # run's chain in a later scan, nor match a refusal record's sequence, and fall at or below
        # the checkpoint that recovery writes.
        gap = segments * segment_bytes // BLOCK if restarted else 0
        self._next_sequence = max(last, self.checkpointed_through) + 1 + gap
        self._state.done_through = self._state.synced_through = self._next_sequence - 1
        # Start "at the end of the last segment": the first append rotates into segment 0 through
        # the reusability check (recovered entries must be checkpointed before it is overwritten).
        self._current = segments - 1
        self._segments[-1].write_offset = segment_bytes

    @property
    def max_entry_bytes(self) -> int:
        """Largest metadata + payload size one entry can hold, in bytes."""
        return self.segment_bytes - HEADER.size

    @property
    def space_wanted(self) -> bool:
        """True while a writer waits for a checkpoint to free a segment."""
        return self._space_wanted

    @property
    def last_sequence(self) -> int:
        """Sequence number of the newest entry reserved so far."""
        with self._cond:
            return self._next_sequence - 1

    # ---- appending -------------------------------------------------------------------------

    def append(self, meta: bytes, payload: bytes, digest: str | None = None) -> JournalLocation:
        """Write one entry; returns where it lies once it (and every earlier entry) is durable.

        ``digest``: the hex SHA-256 of ``payload`` when the caller has it (stored as the payload
        check); None stores a CRC instead (see module doc).

        Raises:
            JournalError: too large, no space within ``space_timeout_s``, or an I/O error.
        """
        location = self.write(meta, payload, digest)
        self.wait_durable(location)
        return location

    def wait_durable(self, location: JournalLocation) -> None:
        """Return once the entry written by :meth:`write` (and every earlier one) is durable.

        Raises:
            JournalError: an earlier write failed, or the sync did.
        """
        self.complete(location)
        self._wait_durable(location.sequence)

    def write(
        self,
        meta: bytes,
        payload: bytes,
        digest: str | None = None,
        *,
        start_writeback: bool = False,
        wait_for_space: bool = True,
    ) -> JournalLocation:
        """Write one entry (to the page cache), without waiting for durability.

        The caller then calls :meth:`wait_durable` before acknowledging (or :meth:`complete`, for
        an entry written with ``start_writeback`` whose instance it refuses). An entry that is never
        acknowledged is harmless: recovery re-checks it (see :mod:`.recovery`).

        ``start_writeback``: also start the entry's device write now, for a caller with work to do
        before :meth:`wait_durable`: the write then proceeds meanwhile. With direct writes on (see
        the constructor) it is a direct write that syncs itself (:mod:`.journal_direct`); otherwise
        ``sync_file_range`` starts the page cache's write-back and the sync is left with the device
        flush. (Measured here, 57 KB entries: write + ``fdatasync`` 232 us against 175 us with 86 us
        of work between them. Starting it costs CPU, so it pays only with such work in between: the
        store journals a data set before checking it for this reason.)

        ``wait_for_space`` False: fail at once when the journal is full instead of waiting up to
        ``space_timeout_s`` for a checkpoint (for an entry that may be lost, such as a refusal record).

        Raises:
            JournalError: too large, no space within ``space_timeout_s``, or an I/O error.
        """
        size = HEADER.size + len(meta) + len(payload)
        if align_up(size) > self.segment_bytes:
            raise JournalError("entry larger than a journal segment")
        if digest is None:
            check, flags = payload_check(payload, WRITE_CRC_FLAG), FLAG_PADDED | WRITE_CRC_FLAG
        else:
            check, flags = bytes.fromhex(digest), FLAG_PADDED
        padded = align_up(size)
        sequence, segment, offset = self._reserve(padded, wait_for_space)
        location = JournalLocation(sequence, segment.number, offset, size)
        finished = False  # every reserved sequence is finished once, or later waiters wait forever
        try:
            header = encode_header(sequence, meta, len(payload), check, flags)
            direct = self._direct
            if start_writeback and direct is not None and segment.direct_fd >= 0 and padded <= direct.capacity:
                try:
                    writer = direct.start(segment.direct_fd, (header, meta, payload), padded, offset)
                except Exception as exc:  # noqa: BLE001 - nothing written: this entry goes through the page cache
                    if not (isinstance(exc, OSError) and exc.errno == errno.EAGAIN):  # EAGAIN: busy, try later
                        self._stop_direct_writes(direct, exc)
                else:
                    with self._cond:
                        self._in_flight[sequence] = _Flight(direct, writer, segment, offset, padded)
                    finished = True  # by whoever reaps the flight (see complete)
                    return location
            # The padding is written too: a write ending inside a page the page cache does not hold
            # (after a reboot, or once evicted) would first read that page from the device.
            buffers = [header, meta, payload, _ZEROS[: padded - size]] if padded > size else [header, meta, payload]
            try:
                written = os.pwritev(segment.fd, buffers, offset)
                if written != padded:
                    raise OSError(f"short journal write ({written} of {padded} bytes)")
            except OSError as exc:
                self._finish(sequence, segment, failed=True)
                finished = True
                raise JournalError(f"journal write failed: {exc}") from exc
            self._finish(sequence, segment, failed=False)
            finished = True
            if start_writeback and self.sync:
                start_device_write(segment.fd, offset, padded)  # a failure shows in the fdatasync
            return location
        finally:
            if not finished:  # an unexpected error: the space holds no valid entry
                self._finish(sequence, segment, failed=True)
            with self._cond:
                self._writing -= 1
                if self._closing:
                    self._cond.notify_all()

    def complete(self, location: JournalLocation) -> None:
        """Wait until the entry's own write is done, without waiting for earlier entries.

        Needed only for an entry written with ``start_writeback`` that its writer will not pass to
        :meth:`wait_durable` (its instance was refused): a direct write must complete before the
        entry counts as written (later entries wait for it). A no-op otherwise, and when repeated.

        Raises:
            JournalError: the entry's direct write failed (it and every later entry are then never
                durable: the failure is latched as for a failed sync).
        """
        with self._cond:
            flight = self._in_flight.get(location.sequence)
        if flight is None:
            return
        try:
            error = self._reap(location.sequence, flight)
        finally:
            with self._cond:
                self._in_flight.pop(location.sequence, None)
            flight.direct.release(flight.writer)
        if error is not None:
            raise error

    def _reap(self, sequence: int, flight: _Flight) -> JournalError | None:
        """Wait for a direct write and record its outcome (``_finish``), once: its writer and any
        waiter behind it may both get here; the error the write ended with, if any."""
        with flight.lock:
            if not flight.reaped:
                try:
                    flight.error = self._settle_direct(sequence, flight)
                except BaseException:
                    flight.error = JournalError("journal write interrupted")
                    self._finish(sequence, flight.segment, failed=True)
                    raise
                finally:
                    flight.reaped = True
            return flight.error

    def _settle_direct(self, sequence: int, flight: _Flight) -> JournalError | None:
        """Wait for a direct write, then ``_finish`` its entry; the error it ended with, if any."""
        segment = flight.segment
        try:
            flight.direct.wait(flight.writer)
            flight.writer.result()
        except OSError as exc:
            if exc.errno not in _DIRECT_REFUSED:
                self._finish(sequence, segment, failed=True)
                return JournalError(f"journal write failed: {exc}")
            # Refused by the kernel as it ran (a file system or device that takes no such write):
            # nothing was written; the same bytes go through the page cache instead.
            self._stop_direct_writes(flight.direct, exc)
            try:
                rewritten = os.pwrite(segment.fd, flight.writer.buffer[: flight.padded], flight.offset)
            except OSError as error:
                rewritten, exc = -1, error
            if rewritten != flight.padded:
                self._finish(sequence, segment, failed=True)
                return JournalError(f"journal write failed: {exc}")
            self._finish(sequence, segment, failed=False)  # synced by the group commit
            return None
        self._finish(sequence, segment, failed=False, durable=True)
        return None

    def _stop_direct_writes(self, direct: DirectWrites, error: Exception) -> None:
        """Turn direct writes off after the kernel refused one (writes in flight still finish)."""
        with self._cond:
            if self._direct is not direct:
                return
            self._direct = None
        _LOG.warning("intake journal: direct writes off (%s); writing through the page cache", error)

    def _reserve(self, size: int, wait: bool = True) -> tuple[int, _Segment, int]:
        """Reserve the next sequence and ``size`` bytes for it; the caller must finish it (see write).

        ``wait``: wait for a reusable segment (see :meth:`_rotate`) rather than fail at once.
        """
        with self._cond:
            if self._closing:
                raise JournalError("journal closed")
            if self._state.failed_at is not None:
                raise JournalError("journal unusable after a write or sync error")
            if time.monotonic() < self._bypass_until:
                raise JournalError("journal full: the background writer is behind")
            segment = self._segments[self._current]
            while segment.write_offset + size > self.segment_bytes:
                segment = self._rotate(wait)
            sequence = self._next_sequence
            self._next_sequence += 1
            offset = segment.write_offset
            segment.write_offset += size
            segment.max_sequence = sequence
            self._writing += 1
            return sequence, segment, offset

    def _rotate(self, wait: bool = True) -> _Segment:
        """Move to the next segment of the ring, waiting until it is reusable (lock held).

        Returns the new current segment; the caller checks it has room (another writer waiting
        here too may have rotated first and filled part of it). ``wait`` False: a segment not
        reusable at once is :class:`JournalError` (no bypass follows).
        """
        current = self._current
        following = self._segments[(current + 1) % len(self._segments)]
        if following.max_sequence > self.checkpointed_through and not wait:
            raise JournalError("journal full")
        if following.max_sequence > self.checkpointed_through:
            self._space_wanted = True
            self._cond.notify_all()
            reusable = self._cond.wait_for(
                lambda: self._current != current or following.max_sequence <= self.checkpointed_through,
                self._space_timeout_s,
            )
            self._space_wanted = False
            if self._current != current:  # another writer rotated meanwhile
                return self._segments[self._current]
            if not reusable:
                self._bypass_until = time.monotonic() + self._bypass_s
                raise JournalError("journal full: the background writer is behind")
        if following.fd < 0:
            try:
                following.fd = os.open(following.path, os.O_RDWR)
            except OSError as exc:
                raise JournalError(f"journal segment cannot be opened: {exc.strerror}") from exc
        direct = self._direct
        if direct is not None and following.direct_fd < 0:
            try:
                following.direct_fd = os.open(following.path, os.O_RDWR | _O_DIRECT)
            except OSError as exc:  # e.g. a file system without O_DIRECT
                self._direct = None
                _LOG.warning("intake journal: direct writes off (%s)", exc.strerror)
        following.write_offset = 0
        following.max_sequence = 0
        self._current = following.number
        self._cond.notify_all()  # writers waiting for the same rotation
        return following

    def _prepare(self, segment: _Segment) -> None:
        """Zero-fill a segment to its full size and sync it (once per segment file, at open).

        Written blocks (unlike ``fallocate``'s unwritten extents) make later appends pure data
        overwrites: their ``fdatasync`` then commits no file-system metadata, which would also
        carry the materialiser's file creations (measured here: 0.14-0.16 ms per 57 KB append
        instead of 0.22-0.32 ms while files are being created).

        Raises:
            JournalError: the segment cannot be written.
        """
        try:
            fd = os.open(segment.path, os.O_RDWR | os.O_CREAT, 0o640)
            try:
                size = os.fstat(fd).st_size
                zeros = bytes(_PREPARE_CHUNK)
                while size < self.segment_bytes:
                    size += os.pwrite(fd, zeros[: self.segment_bytes - size], size)
                os.fdatasync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise JournalError(f"journal segment cannot be prepared: {exc.strerror}") from exc

    def _finish(self, sequence: int, segment: _Segment, *, failed: bool, durable: bool = False) -> None:
        """Record that ``sequence`` was written (or failed: its space holds no valid entry).

        ``durable``: written directly and durably (no ``fdatasync`` of its segment needed for it).
        """
        with self._cond:
            state = self._state
            state.finished.add(sequence)
            if failed and (state.failed_at is None or sequence < state.failed_at):
                state.failed_at = sequence
            while state.done_through + 1 in state.finished:
                state.done_through += 1
                state.finished.discard(state.done_through)
            if not failed and not durable:
                segment.dirty_through = max(segment.dirty_through, sequence)
            self._cond.notify_all()

    def _wait_durable(self, sequence: int) -> None:
        """Return once an fdatasync covering every entry <= ``sequence`` has completed (group commit)."""
        if not self.sync:
            with self._cond:
                self._cond.wait_for(lambda: self._state.done_through >= sequence)
                if self._state.failed_at is not None and self._state.failed_at <= sequence:
                    raise JournalError("an earlier journal write or sync failed")
            return
        with self._cond:
            state = self._state
            while state.synced_through < sequence:
                if state.failed_at is not None and state.failed_at <= sequence:
                    raise JournalError("an earlier journal write or sync failed")
                if self._closed:
                    raise JournalError("journal closed before the entry was synced")
                if state.done_through < sequence:
                    flights = [(k, f) for k, f in self._in_flight.items() if k <= sequence and not f.reaped]
                    if not flights:
                        self._cond.wait()
                        continue
                    # An earlier entry's direct write: reap it here rather than wait until its own
                    # writer (perhaps still running slow checks) gets round to it.
                    self._cond.release()
                    try:
                        for flight_sequence, flight in sorted(flights, key=lambda item: item[0]):
                            self._reap(flight_sequence, flight)
                    finally:
                        self._cond.acquire()
                    continue
                if state.syncing:
                    self._cond.wait()
                    continue
                state.syncing = True
                covered = state.done_through
                dirty = [s for s in self._segments if s.fd >= 0 and s.dirty_through > state.synced_through]
                self._cond.release()
                error: OSError | None = None
                try:
                    for segment in dirty:
                        os.fdatasync(segment.fd)
                except OSError as exc:
                    error = exc
                finally:
                    self._cond.acquire()
                    state.syncing = False
                    if error is None:
                        state.synced_through = max(state.synced_through, covered)
                    elif state.failed_at is None or state.synced_through + 1 < state.failed_at:
                        # Latched: Linux reports a write-back error once and marks the pages clean,
                        # so a later fdatasync would return 0 for data that never reached the disk.
                        state.failed_at = state.synced_through + 1
                    self._cond.notify_all()
                if error is not None:
                    raise JournalError(f"journal sync failed: {error.strerror}") from error

    # ---- checkpoints -----------------------------------------------------------------------

    def checkpoint(self, through: int) -> None:
        """Declare every entry <= ``through`` materialised durably; their segments become reusable.

        The caller must have made the files and index rows durable first (see
        :mod:`.materialiser`). The checkpoint itself is written atomically and fsynced.

        Raises:
            OSError: the checkpoint file cannot be written (the old one stays valid).
        """
        if through <= self.checkpointed_through:
            return
        temp = self.directory / f"{CHECKPOINT_FILE}.tmp"
        data = _CHECKPOINT.pack(_CHECKPOINT_MAGIC, through, zlib.crc32(through.to_bytes(8, "little")))
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            os.write(fd, data)
            if self.sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, self.directory / CHECKPOINT_FILE)
        if self.sync:
            fsync_directory(self.directory)
        with self._cond:
            self.checkpointed_through = through
            self._bypass_until = 0.0
            self._cond.notify_all()

    def _read_checkpoint(self) -> int:
        path = self.directory / CHECKPOINT_FILE
        with contextlib.suppress(FileNotFoundError, OSError):
            (self.directory / f"{CHECKPOINT_FILE}.tmp").unlink(missing_ok=True)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise JournalError(f"journal checkpoint cannot be read: {exc.strerror}") from exc
        if len(data) != _CHECKPOINT.size:
            raise JournalError("journal checkpoint is damaged")
        magic, through, crc = _CHECKPOINT.unpack(data)
        if magic != _CHECKPOINT_MAGIC or crc != zlib.crc32(through.to_bytes(8, "little")):
            raise JournalError("journal checkpoint is damaged")
        return int(through)

    # ---- recovery --------------------------------------------------------------------------

    def _scan(self) -> tuple[list[JournalEntry], int]:
        """Valid entries above the checkpoint (by sequence) and the highest sequence seen."""
        entries: list[JournalEntry] = []
        last = 0
        for segment in self._segments:
            if not segment.path.exists():
                continue
            try:
                with segment.path.open("rb") as handle:
                    for entry_sequence, entry in _read_segment(handle, self.checkpointed_through):
                        last = max(last, entry_sequence)
                        segment.max_sequence = max(segment.max_sequence, entry_sequence)
                        if entry is not None:
                            entries.append(entry)
            except OSError as exc:
                raise JournalError(f"journal segment cannot be read: {exc.strerror}") from exc
        entries.sort(key=lambda e: e.sequence)
        if entries:
            _LOG.warning("intake journal: %d entries to re-materialise after an unclean stop", len(entries))
        return entries, last

    def close(self, timeout_s: float = 10.0) -> None:
        """Refuse new appends, let writers under way finish (up to ``timeout_s``), finish the direct
        writes in flight, then close the segment files. An entry not yet synced is then never
        reported durable (:meth:`wait_durable` raises)."""
        with self._cond:
            self._closing = True
            self._cond.wait_for(lambda: self._writing == 0, timeout_s)
            in_flight = list(self._in_flight)
        for sequence in in_flight:
            with contextlib.suppress(JournalError, OSError):
                self.complete(JournalLocation(sequence, 0, 0, 0))
        with self._cond:
            self._closed = True
            self._direct = None
            direct, self._direct_pool = self._direct_pool, None
            for segment in self._segments:
                for name in ("fd", "direct_fd"):
                    if getattr(segment, name) >= 0:
                        os.close(getattr(segment, name))
                        setattr(segment, name, -1)
            self._cond.notify_all()
        if direct is not None:
            direct.close()


def _read_segment(reader: BinaryIO, checkpoint: int) -> Iterator[tuple[int, JournalEntry | None]]:
    """Entries of one segment from its start to the first invalid one: ``(sequence, entry)``;
    ``entry`` is None for entries at or below ``checkpoint`` (their payload is not read)."""
    previous = 0
    start = 0
    while True:
        raw = reader.read(HEADER.size)
        if len(raw) < HEADER.size:
            return
        magic, version, flags, sequence, meta_length, payload_length, crc, digest = HEADER.unpack(raw)
        if magic != MAGIC or version != VERSION or sequence <= previous:
            return
        meta = reader.read(meta_length)
        blank = HEADER.pack(MAGIC, VERSION, flags, sequence, meta_length, payload_length, 0, digest)
        if len(meta) != meta_length or zlib.crc32(meta, zlib.crc32(blank)) != crc:
            return
        previous = sequence
        end = start + HEADER.size + meta_length + payload_length
        start = align_up(end) if flags & FLAG_PADDED else end
        if sequence <= checkpoint:
            reader.seek(start)
            yield sequence, None
            continue
        payload = reader.read(payload_length)
        if len(payload) != payload_length or not _payload_valid(flags, payload, digest):
            return  # torn write: never acknowledged, and nothing acknowledged lies behind it
        reader.seek(start)
        yield sequence, JournalEntry(sequence, meta, payload, _sha256_hex(flags, payload, digest))


def _sha256_hex(flags: int, payload: bytes, check: bytes) -> str:
    """Hex SHA-256 of a validated payload (stored, or computed for an entry with a CRC check)."""
    return sha256(payload).hexdigest() if flags & _PAYLOAD_CRC else check.hex()


class JournalReader:
    """Reads entries at known locations (the materialiser worker's side; segment files stay open).

    Args:
        directory: the journal directory.
    """

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
                fd = os.open(self._directory / _SEGMENT_PATTERN.format(location.segment), os.O_RDONLY)
            except OSError as exc:
                raise JournalError(f"journal segment cannot be opened: {exc.strerror}") from exc
            self._fds[location.segment] = fd
        data = os.pread(fd, location.size, location.offset)
        if len(data) != location.size:
            raise JournalError("journal entry is truncated")
        magic, version, flags, sequence, meta_length, payload_length, _crc, digest = HEADER.unpack_from(data)
        if (
            magic != MAGIC
            or version != VERSION
            or sequence != location.sequence
            or HEADER.size + meta_length + payload_length != location.size
        ):
            raise JournalError("journal entry does not match its location")
        view = memoryview(data)
        meta = bytes(view[HEADER.size : HEADER.size + meta_length])
        payload = bytes(view[HEADER.size + meta_length :])
        if not _payload_valid(flags, payload, digest):
            raise JournalError("journal entry payload does not match its check")
        return JournalEntry(sequence, meta, payload, _sha256_hex(flags, payload, digest))

    def close(self) -> None:
        """Close the segment files."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
