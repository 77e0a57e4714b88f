"""Intake journal: the durable record of each checked instance before its C-STORE success reply.

Appending to a pre-written segment costs one ``fdatasync``, shared by the associations appending at
the same time (group commit); a file per instance would cost an inode, a data and a directory flush
(docs/decisions/0002-listener-intake-tuning.md). Instance files and index rows are written in the
background (:mod:`.materialiser`) and made durable by one file-system sync before the journal space
they used is reused (a *checkpoint*).

Layout under ``directory``::

    segment-000.log ... segment-NNN.log    fixed-size files, filled in order, reused in a ring
    checkpoint                             sequence number through which entries are materialised

Entry layout: :mod:`.journal_format`; sequences increase by one per entry. Writers reserve space under
a lock (a segment is filled in sequence order), write without it, then wait until an ``fdatasync``
that began after every entry up to theirs was written has returned: a reply is sent only once every
earlier entry is durable too. Recovery therefore scans each segment from its start to the first
incomplete or invalid entry (or one not numbered above the one before it): nothing acknowledged lies
behind it. After a restart the numbering jumps by more entries than the ring holds, so that an earlier
run's entries never continue a later run's chain. :attr:`IntakeJournal.recovered`: entries above the checkpoint.

A segment is reused only when all its entries are at or below the checkpoint. Writers that find no
reusable segment wait up to ``space_timeout_s`` for the materialiser to checkpoint; past it,
appends fail for ``bypass_s`` and the store writes instances directly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from oncohabitat.common.blobstore import fsync_directory
from oncohabitat.listener.journal_format import (
    BLOCK,
    HEADER,
    SEGMENT_PATTERN,
    JournalEntry,
    JournalError,
    JournalLocation,
    JournalReader,
    align_up,
    encode_header,
    read_segment,
)

__all__ = ["CHECKPOINT_FILE", "IntakeJournal", "JournalEntry", "JournalError", "JournalLocation", "JournalReader"]

_LOG = logging.getLogger(__name__)

_CHECKPOINT = struct.Struct("<4sQI")
_CHECKPOINT_MAGIC = b"OHJC"
CHECKPOINT_FILE = "checkpoint"
_PREPARE_CHUNK = 1024 * 1024
_ZEROS = bytes(BLOCK)


@dataclass
class _Segment:
    """One segment file: its descriptor and the highest sequence written into it (0 = none)."""

    number: int
    path: Path
    fd: int = -1
    max_sequence: int = 0
    write_offset: int = 0
    dirty_through: int = 0  # highest sequence written here since its last fdatasync


@dataclass
class _SyncState:
    """Group-commit bookkeeping (guarded by the journal's condition)."""

    done_through: int = 0  # every entry <= this has been written (contiguous)
    synced_through: int = 0  # every entry <= this is durable
    syncing: bool = False
    finished: set[int] = field(default_factory=set)
    failed_at: int | None = None  # first entry whose write or sync failed: it and later ones are never durable


class IntakeJournal:
    """Pre-allocated ring of segment files with group-committed appends (see module doc).

    Args:
        directory: journal directory (created if missing; one process at a time, as the store root).
        segment_bytes: size of one segment file in bytes (entries never span segments).
        segments: number of segment files (>= 2).
        sync: ``fdatasync`` before an append returns (False: survives a process crash only).
        space_timeout_s: longest wait for a reusable segment before :class:`JournalError`, s; appends
            then fail at once for ``bypass_s`` (s; the store writes directly meanwhile).

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
        self._writing = 0  # writers between their reservation and the end of write()
        self._closing = False
        self._closed = False
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"journal directory cannot be created: {exc.strerror}") from exc
        self.checkpointed_through = self._read_checkpoint()
        self._segments = [_Segment(k, directory / SEGMENT_PATTERN.format(k)) for k in range(segments)]
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
        # After a restart, numbering jumps by more than the ring can hold (see module doc).
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

    def append(self, meta: bytes, payload: bytes) -> JournalLocation:
        """Write one entry; returns where it lies once it (and every earlier entry) is durable.

        Raises:
            JournalError: too large, no space within ``space_timeout_s``, or an I/O error.
        """
        location = self.write(meta, payload)
        self.wait_durable(location)
        return location

    def write(self, meta: bytes, payload: bytes) -> JournalLocation:
        """Write one entry to the page cache, without waiting for durability.

        The caller calls :meth:`wait_durable` before acknowledging. An entry never acknowledged (the
        process stops first) is harmless: it was checked, and recovery stores it (its peer sends it again).

        Raises:
            JournalError: too large, no space within ``space_timeout_s``, or an I/O error.
        """
        size = HEADER.size + len(meta) + len(payload)
        if align_up(size) > self.segment_bytes:
            raise JournalError("entry larger than a journal segment")
        padded = align_up(size)
        sequence, segment, offset = self._reserve(padded)
        failed = True  # every reserved sequence is finished once, or later waiters wait forever
        try:
            header = encode_header(sequence, meta, payload)
            # The padding is written too: a write ending inside a page the page cache does not hold
            # (after a reboot, or once evicted) would first read that page from the device.
            buffers = [header, meta, payload, _ZEROS[: padded - size]] if padded > size else [header, meta, payload]
            try:
                written = os.pwritev(segment.fd, buffers, offset)
                if written != padded:
                    raise OSError(f"short journal write ({written} of {padded} bytes)")
            except OSError as exc:
                raise JournalError(f"journal write failed: {exc}") from exc
            failed = False
            return JournalLocation(sequence, segment.number, offset, size)
        finally:
            self._finish(sequence, segment, failed=failed)
            with self._cond:
                self._writing -= 1
                if self._closing:
                    self._cond.notify_all()

    def _reserve(self, size: int) -> tuple[int, _Segment, int]:
        """Reserve the next sequence and ``size`` bytes for it; the caller must finish it (see write)."""
        with self._cond:
            if self._closing:
                raise JournalError("journal closed")
            if self._state.failed_at is not None:
                raise JournalError("journal unusable after a write or sync error")
            if time.monotonic() < self._bypass_until:
                raise JournalError("journal full: the background writer is behind")
            segment = self._segments[self._current]
            while segment.write_offset + size > self.segment_bytes:
                segment = self._rotate()
            sequence = self._next_sequence
            self._next_sequence += 1
            offset = segment.write_offset
            segment.write_offset += size
            segment.max_sequence = sequence
            self._writing += 1
            return sequence, segment, offset

    def _rotate(self) -> _Segment:
        """Move to the next segment of the ring, waiting until it is reusable (lock held).

        Returns the new current segment; the caller checks it has room (another writer waiting
        here too may have rotated first and filled part of it).
        """
        current = self._current
        following = self._segments[(current + 1) % len(self._segments)]
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
        following.write_offset = 0
        following.max_sequence = 0
        self._current = following.number
        self._cond.notify_all()  # writers waiting for the same rotation
        return following

    def _prepare(self, segment: _Segment) -> None:
        """Zero-fill a segment to its full size and sync it (once per segment file, at open).

        Written blocks (unlike ``fallocate``'s unwritten extents) make later appends pure data overwrites,
        whose ``fdatasync`` commits no file-system metadata (which would carry the materialiser's files too).

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

    def _finish(self, sequence: int, segment: _Segment, *, failed: bool) -> None:
        """Record that ``sequence`` was written (or failed: its space holds no valid entry)."""
        with self._cond:
            state = self._state
            state.finished.add(sequence)
            if failed and (state.failed_at is None or sequence < state.failed_at):
                state.failed_at = sequence
            while state.done_through + 1 in state.finished:
                state.done_through += 1
                state.finished.discard(state.done_through)
            if not failed:
                segment.dirty_through = max(segment.dirty_through, sequence)
            self._cond.notify_all()

    def wait_durable(self, location: JournalLocation) -> None:
        """Return once an ``fdatasync`` covering the entry written by :meth:`write` and every earlier
        one has completed (group commit).

        Raises:
            JournalError: an earlier write failed, or the sync did.
        """
        sequence = location.sequence
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
                if state.done_through < sequence or state.syncing:
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

    def _scan(self) -> tuple[list[JournalEntry], int]:
        """Valid entries above the checkpoint (by sequence) and the highest sequence seen."""
        entries: list[JournalEntry] = []
        last = 0
        for segment in self._segments:
            if not segment.path.exists():
                continue
            try:
                with segment.path.open("rb") as handle:
                    for entry_sequence, entry in read_segment(handle, self.checkpointed_through):
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
        """Refuse new appends, let writers under way finish (up to ``timeout_s``), then close the
        segment files. An entry not yet synced is then never reported durable (:meth:`wait_durable`
        raises)."""
        with self._cond:
            self._closing = True
            self._cond.wait_for(lambda: self._writing == 0, timeout_s)
            self._closed = True
            for segment in self._segments:
                if segment.fd >= 0:
                    os.close(segment.fd)
                    segment.fd = -1
            self._cond.notify_all()
