"""Turns journaled instances into Part-10 files and index rows, off the reply path; checkpoints the journal.

:meth:`Materialiser.submit` takes a durable journal entry's location and index record. One
background thread reads entries back (usually from the page cache), computes the SHA-256 the index
keeps, writes the files and commits their rows in batches, without syncing. Until its row is
committed an instance is *pending* (:meth:`pending`, :meth:`has_pending`: duplicates and completion
consult them). While intake keeps submitting, up to ``defer_bytes`` are held back until it pauses
for ``defer_idle_s``, so that this work does not compete with the reply path during a burst.

Checkpoint: one file-system sync, then the journal learns through which sequence everything is
materialised durably, so that its space can be reused; it runs when a writer waits for journal
space, after ``checkpoint_bytes``, after ``idle_checkpoint_s`` without work, and at :meth:`stop`.
A failed batch is retried after ``retry_s``; its entries stay in the journal meanwhile.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from oncohabitat.common.blobstore import sync_filesystem
from oncohabitat.listener import metrics
from oncohabitat.listener.index import AddResult, InstanceRecord, StudyIndex
from oncohabitat.listener.journal import IntakeJournal, JournalLocation, JournalReader

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingInstance:
    """An acknowledged instance whose file and index row are not written yet."""

    location: JournalLocation
    record: InstanceRecord
    study_uid: str


#: Receives each materialised instance with its index outcome.
ResultCallback = Callable[[PendingInstance, AddResult], None]
#: Writes an instance file (path, bytes) without syncing it; a failed write leaves no partial file.
FileWriter = Callable[[Path, bytes], None]


class Materialiser:
    """Background thread materialising journaled instances (see module doc).

    Args:
        journal: the intake journal the instances were appended to.
        index: the study index the rows go to.
        root: store root (instance paths are relative to it; its file system is synced at checkpoints).
        on_result: called per materialised instance with its index outcome (late arrivals).
        write_file: writes an instance file (the store's, without fsync).
        sync: sync the file system before each checkpoint (False with a non-syncing journal).
        checkpoint_bytes: checkpoint after this many bytes of materialised entries.
        defer_bytes: most bytes of entries held back while intake is busy (0 = materialise at once).
        defer_idle_s: intake pause after which held-back entries are materialised, s.
        idle_checkpoint_s: checkpoint after this long without new work, s.
        batch_size: most instances per index transaction.
        retry_s: wait before a failed batch is tried again, s.
    """

    def __init__(
        self,
        journal: IntakeJournal,
        index: StudyIndex,
        root: Path,
        on_result: ResultCallback,
        write_file: FileWriter,
        *,
        sync: bool = True,
        checkpoint_bytes: int = 16 * 1024 * 1024,
        defer_bytes: int = 64 * 1024 * 1024,
        defer_idle_s: float = 0.05,
        idle_checkpoint_s: float = 1.0,
        batch_size: int = 256,
        retry_s: float = 1.0,
    ) -> None:
        self._journal = journal
        self._index = index
        self._root = root
        self._reader = JournalReader(journal.directory)
        self._on_result = on_result
        self._write_file = write_file
        self._sync = sync
        self._checkpoint_bytes = checkpoint_bytes
        self._defer_bytes = defer_bytes
        self._defer_idle_s = defer_idle_s
        self._idle_checkpoint_s = idle_checkpoint_s
        self._batch_size = batch_size
        self._retry_s = retry_s
        self._cond = threading.Condition()
        self._checkpoint_lock = threading.Lock()
        self._by_sequence: dict[int, PendingInstance] = {}
        self._by_sop: dict[str, PendingInstance] = {}
        self._pending_studies: dict[str, int] = {}
        self._queue: list[PendingInstance] = []  # submitted, not yet taken by the thread
        self._queued_bytes = 0
        self._done: set[int] = set()
        self._materialised_through = journal.last_sequence
        self._bytes_since_checkpoint = 0
        self._last_work = time.monotonic()
        self._checkpoint_retry_at = 0.0  # after a failed checkpoint: not before this (monotonic s)
        self._flushing = 0  # callers of flush() waiting: materialise at once
        self._stopping = False
        self._thread: threading.Thread | None = None

    def submit(self, item: PendingInstance) -> None:
        """Queue a journaled instance; it is pending from now until its index row is committed."""
        with self._cond:
            self._by_sequence[item.location.sequence] = item
            self._by_sop[item.record.sop_uid] = item
            key = item.record.study_key
            self._pending_studies[key] = self._pending_studies.get(key, 0) + 1
            metrics.JOURNAL_PENDING.set(len(self._by_sequence))
            self._queue.append(item)
            self._queued_bytes += item.location.size
            self._last_work = time.monotonic()
            if self._queued_bytes >= self._defer_bytes:
                self._cond.notify_all()

    def skip(self, sequence: int) -> None:
        """A journaled entry that will not be materialised (a duplicate): the checkpoint may pass it."""
        with self._cond:
            self._done.add(sequence)
            self._advance_mark()

    def pending(self, sop_uid: str) -> PendingInstance | None:
        """The pending instance with this SOP Instance UID, if any."""
        with self._cond:
            return self._by_sop.get(sop_uid)

    def has_pending(self, study_key: str) -> bool:
        """True while instances of this study are acknowledged but not yet indexed."""
        with self._cond:
            return study_key in self._pending_studies

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Materialise every submitted instance now and wait until all are indexed; False on timeout."""
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: not self._by_sequence, timeout_s)
            finally:
                self._flushing -= 1

    def start(self) -> None:
        """Start the background thread (no-op when running)."""
        if self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="listener-materialiser", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Materialise what is pending, stop the thread, checkpoint."""
        if self._thread is None:
            return
        if not self.flush(timeout_s):
            _LOG.error("materialiser stopping with instances pending: they are recovered from the journal at start")
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        self._thread = None
        self.checkpoint()
        self._reader.close()

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self._materialise(batch)
            if self._checkpoint_due():
                self.checkpoint()

    def _next_batch(self) -> list[PendingInstance] | None:
        """The next batch to materialise (empty: only check the checkpoint); None once stopping."""
        with self._cond:
            while True:
                if self._stopping:
                    return None
                now = time.monotonic()
                if self._queue and (
                    self._flushing
                    or self._journal.space_wanted
                    or self._queued_bytes >= self._defer_bytes
                    or now - self._last_work >= self._defer_idle_s
                ):
                    batch, self._queue = self._queue[: self._batch_size], self._queue[self._batch_size :]
                    self._queued_bytes -= sum(item.location.size for item in batch)
                    return batch
                if self._checkpoint_due():
                    return []
                busy = self._queue or self._materialised_through > self._journal.checkpointed_through
                self._cond.wait(self._defer_idle_s if busy else self._idle_checkpoint_s)

    def _materialise(self, batch: list[PendingInstance]) -> None:
        """Write the batch's files and commit its rows (retried until done or stopping), then report."""
        started = time.perf_counter()
        while True:
            try:
                items = []
                for item in batch:
                    entry = self._reader.read(item.location)
                    record = dataclasses.replace(item.record, sha256=entry.sha256)
                    if self._index.get_instance(record.sop_uid) is None:  # never rewrite an indexed file
                        self._write_file(self._root / record.path, entry.payload)
                    items.append((record, item.study_uid))
                results = self._index.add_instances(items)
                break
            except Exception as exc:  # noqa: BLE001 - retried: the entries stay durable in the journal
                metrics.JOURNAL_ERRORS.labels(stage="materialise").inc()
                _LOG.error("materialising %d journaled instance(s) failed (retrying): %s", len(batch), exc)
                with self._cond:
                    if self._cond.wait_for(lambda: self._stopping, self._retry_s):
                        return  # left to the next start's recovery
        for item, result in zip(batch, results, strict=True):
            try:
                self._on_result(item, result)
            except Exception:  # noqa: BLE001 - reporting must not stop materialisation
                _LOG.error("reporting a materialised instance failed", exc_info=True)
        with self._cond:
            for item in batch:
                sequence = item.location.sequence
                del self._by_sequence[sequence]
                if self._by_sop.get(item.record.sop_uid) is item:
                    del self._by_sop[item.record.sop_uid]
                key = item.record.study_key
                left = self._pending_studies.get(key, 0) - 1
                if left > 0:
                    self._pending_studies[key] = left
                else:
                    self._pending_studies.pop(key, None)
                self._done.add(sequence)
                self._bytes_since_checkpoint += item.location.size
            self._advance_mark()
            self._last_work = time.monotonic()
            metrics.JOURNAL_PENDING.set(len(self._by_sequence))
            self._cond.notify_all()
        metrics.MATERIALISE_SECONDS.observe(time.perf_counter() - started)

    def _advance_mark(self) -> None:
        """Move the materialised mark over contiguous finished sequences (condition held)."""
        while self._materialised_through + 1 in self._done:
            self._materialised_through += 1
            self._done.discard(self._materialised_through)

    def _checkpoint_due(self) -> bool:
        if time.monotonic() < self._checkpoint_retry_at:
            return False
        behind = self._materialised_through > self._journal.checkpointed_through
        idle = time.monotonic() - self._last_work >= self._idle_checkpoint_s
        return behind and (self._journal.space_wanted or self._bytes_since_checkpoint >= self._checkpoint_bytes or idle)

    def checkpoint(self) -> None:
        """Sync the file system and advance the journal's checkpoint to what is materialised."""
        with self._checkpoint_lock:
            with self._cond:
                through = self._materialised_through
                written = self._bytes_since_checkpoint
            if through <= self._journal.checkpointed_through:
                return
            started = time.perf_counter()
            try:
                if self._sync:
                    sync_filesystem(self._root)
                self._journal.checkpoint(through)
            except OSError as exc:
                metrics.JOURNAL_ERRORS.labels(stage="checkpoint").inc()
                _LOG.error("journal checkpoint failed (will retry): %s", exc.strerror or exc)
                self._checkpoint_retry_at = time.monotonic() + self._retry_s
                return
            with self._cond:
                self._bytes_since_checkpoint -= written
            metrics.CHECKPOINT_SECONDS.observe(time.perf_counter() - started)
