"""Durable instance store: every acknowledged C-STORE is durable before the reply, then filed and indexed.

:class:`InstanceStore` is the :class:`~.cstore.StoreHandler` the associations call per C-STORE. It
owns the store root and composes :mod:`.store_files` (layout, Part-10 parsing, durable writes),
:mod:`.duplicates` (direct path: file, index row, then success; duplicate policy), :mod:`.intake`
(journaled path: journal entry synced, then success; files and rows later, by the
:class:`~.materialiser.Materialiser`) and :mod:`.recovery` (start-up repairs).

Layout under ``root``::

    root/.lock                                   exclusive flock: one process per root
    root/index.sqlite3                           StudyIndex (WAL; see index.py for synchronous)
    root/journal/                                intake journal (journal.py), when enabled
    root/incoming/<random>.tmp                   large data sets while they arrive (spool.py)
    root/instances/<study_key>/<series_key>/<sop_key>.dcm

Before anything is written (journal included) the :class:`DiskGuard` checks the free-space watermark
and :mod:`.checks` the UIDs and budgets. An instance received in memory then goes through the journal
(``StorePolicy.journal_segments > 0``, the service default) unless it is too large for an entry or the
journal refuses it; everything else takes the direct path.

Contract about "acknowledged": success is returned only once the instance survives a crash (with
``StorePolicy.fsync``, also an OS crash or power loss): its journal entry is synced, or its file and
index row are committed. Recovery at the next start brings every acknowledged instance back.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import IO

from oncohabitat.common.blobstore import sync_filesystem
from oncohabitat.listener import metrics, status
from oncohabitat.listener.checks import Budgets, InstanceHeader, inspect_body
from oncohabitat.listener.cstore import StoreRequest, StoreResult, refuse
from oncohabitat.listener.diskguard import DiskGuard
from oncohabitat.listener.duplicates import LOCK_STRIPES, DuplicatePolicy
from oncohabitat.listener.errors import InvalidInstanceError, StorageWriteError
from oncohabitat.listener.index import InstanceRecord, StudyIndex
from oncohabitat.listener.intake import StoreIntake
from oncohabitat.listener.journal import IntakeJournal, JournalError
from oncohabitat.listener.materialiser import Materialiser
from oncohabitat.listener.part10 import file_meta_prefix
from oncohabitat.listener.recovery import StoreRecovery
from oncohabitat.listener.spool import TEMP_SUFFIX, DatasetSpool
from oncohabitat.listener.store_files import (
    INCOMING_DIR,
    INDEX_FILE,
    INSTANCES_DIR,
    JOURNAL_DIR,
    LOCK_FILE,
    instance_record,
    split_part10,
)

_LOG = logging.getLogger(__name__)

__all__ = [
    "INDEX_FILE",
    "INSTANCES_DIR",
    "JOURNAL_DIR",
    "TEMP_SUFFIX",
    "DuplicatePolicy",
    "InstanceStore",
    "StorePolicy",
    "StoreResult",
    "instance_record",
    "split_part10",
]


@dataclass(frozen=True)
class StorePolicy:
    """How instances are stored (sizes in bytes).

    Attributes:
        fsync: fsync file and directory before acknowledging (survives OS crash / power loss).
        duplicates: policy for a re-sent instance with different bytes.
        memory_limit_bytes: data sets up to this size are received in memory, larger ones spooled to disk.
        max_dataset_bytes: largest data set accepted over the wire (larger ones are refused).
        journal_segments: intake journal segments; 0 = no journal (every file and its directory fsynced
            before the reply).
        defer_bytes: journaled bytes whose files/rows may wait while intake is busy (at most a quarter
            of the journal; 0 = materialise at once; see materialiser.py).
    """

    fsync: bool = True
    duplicates: DuplicatePolicy = DuplicatePolicy.KEEP_FIRST
    budgets: Budgets = field(default_factory=Budgets)
    memory_limit_bytes: int = 8 * 1024 * 1024
    max_dataset_bytes: int = 1024 * 1024 * 1024
    journal_segments: int = 0
    journal_segment_bytes: int = 32 * 1024 * 1024
    defer_bytes: int = 64 * 1024 * 1024


class InstanceStore(StoreIntake, StoreRecovery):
    """Durable Part-10 file store plus :class:`StudyIndex` rows, safe for concurrent associations.

    ``root`` is created if missing; one process may use it at a time. ``disk``: None = never refuse for
    disk space; ``clock``: wall clock, epoch s.

    Raises:
        StorageWriteError: the root cannot be created or another process holds its lock.
    """

    def __init__(
        self,
        root: Path,
        index: StudyIndex,
        *,
        policy: StorePolicy | None = None,
        disk: DiskGuard | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self.index = index
        self.policy = policy or StorePolicy()
        self.disk = disk
        self._clock = clock
        self._instances_dir = root / INSTANCES_DIR
        self._incoming_dir = root / INCOMING_DIR
        self._stripes = [threading.Lock() for _ in range(LOCK_STRIPES)]
        self._known_dirs: set[Path] = set()
        self._dirs_lock = threading.Lock()
        try:
            self._instances_dir.mkdir(parents=True, exist_ok=True)
            self._incoming_dir.mkdir(parents=True, exist_ok=True)
            self._lock_handle: IO[bytes] | None = (root / LOCK_FILE).open("ab")
        except OSError as exc:
            raise StorageWriteError(f"store root cannot be prepared: {exc.strerror}") from exc
        try:
            fcntl.flock(self._lock_handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock_handle.close()
            raise StorageWriteError("store root is in use by another process") from exc
        self.orphans_removed = self._remove_orphan_temp_files()
        self.journal: IntakeJournal | None = None
        self._materialiser: Materialiser | None = None
        self.rematerialised = 0
        if self.policy.journal_segments > 0:
            self._open_journal()
        self.reindexed = 0
        if index.unclean_start:
            self.reindexed = self.reconcile()
            index.mark_reconciled()

    def _open_journal(self) -> None:
        """Open the intake journal, re-materialise what a crash left in it, start the materialiser."""
        try:
            journal = IntakeJournal(
                self.root / JOURNAL_DIR,
                segment_bytes=self.policy.journal_segment_bytes,
                segments=self.policy.journal_segments,
                sync=self.policy.fsync,
            )
        except JournalError as exc:
            self.close()
            raise StorageWriteError(f"intake journal cannot be used: {exc}") from exc
        try:
            self.rematerialised = self._recover(journal.recovered)
        except JournalError as exc:
            journal.close()
            self.close()
            raise StorageWriteError(f"intake journal cannot be replayed: {exc}") from exc
        if self.rematerialised or journal.last_sequence > journal.checkpointed_through:
            if self.policy.fsync:
                sync_filesystem(self.root)
            journal.checkpoint(journal.last_sequence)
        journal.recovered = []
        self.journal = journal
        segments_bytes = self.policy.journal_segments * self.policy.journal_segment_bytes
        self._materialiser = Materialiser(
            journal,
            self.index,
            self.root,
            self._materialised,
            lambda path, data: self._write_durably(path, data, fsync=False),
            sync=self.policy.fsync,
            checkpoint_bytes=max(segments_bytes // 2, 1),
            defer_bytes=min(self.policy.defer_bytes, segments_bytes // 4),
        )
        self._materialiser.start()

    def close(self) -> None:
        """Materialise and checkpoint journaled instances, then release the root's lock (the owner closes the index)."""
        if self._materialiser is not None:
            self._materialiser.stop()
            self._materialiser = None
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every acknowledged instance is indexed; False on timeout."""
        return self._materialiser is None or self._materialiser.flush(timeout_s)

    def path_of(self, record: InstanceRecord) -> Path:
        """Absolute path of an indexed instance's file."""
        return self.root / record.path

    def accepting(self) -> bool:
        """False while free disk space is below the watermark."""
        return self.disk is None or self.disk.accepting()

    def open_spool(self, sop_class_uid: str, sop_uid: str, transfer_syntax: str) -> DatasetSpool:
        """A spool for the data set of a C-STORE whose command UIDs were validated."""
        return DatasetSpool(
            file_meta_prefix(sop_class_uid, sop_uid, transfer_syntax),
            self._incoming_dir,
            memory_limit=self.policy.memory_limit_bytes,
            max_bytes=self.policy.max_dataset_bytes,
        )

    def store_spool(
        self, spool: DatasetSpool, *, sop_class_uid: str, sop_uid: str, transfer_syntax: str
    ) -> StoreResult:
        """Check and store a completely received data set (never raises for bad input or I/O).

        ``sop_class_uid``/``sop_uid``: the C-STORE's Affected UIDs. Returns once durable (or refused: nothing written).
        """
        started = time.perf_counter()
        if spool.overflowed:
            return refuse("dataset_too_large", status.PIXEL_BUDGET_EXCEEDED)
        if not self.accepting():
            spool.discard()
            return refuse("disk_low", status.OUT_OF_RESOURCES)
        header = self._checked_header(spool, transfer_syntax, sop_class_uid, sop_uid)
        if isinstance(header, StoreResult):
            return header
        result = self._store_journaled(header, transfer_syntax, spool)
        if result is None:

            def place(final: Path) -> None:
                if spool.in_memory:
                    self._write_durably(final, spool.getvalue())
                else:
                    self._move_durably(spool, final)

            self._wait_for_journaled_version(header.sop_uid)
            result = self._commit(header, transfer_syntax, spool.sha256(), spool.size, place)
            spool.discard()
        if result.outcome is not None:
            metrics.STORE_SECONDS.observe(time.perf_counter() - started)
        return result

    def _checked_header(
        self, spool: DatasetSpool, transfer_syntax: str, sop_class_uid: str, sop_uid: str
    ) -> InstanceHeader | StoreResult:
        """The checked header of a received data set carrying the C-STORE's UIDs, or the refusal to answer
        (its spool discarded)."""
        try:
            with spool.open_body() as stream:
                header = inspect_body(stream, transfer_syntax, self.policy.budgets)
        except InvalidInstanceError as exc:
            spool.discard()
            return refuse(exc.reason, exc.status)
        except OSError as exc:
            spool.discard()
            _LOG.error("spooled data set cannot be read back: %s", exc.strerror)
            return refuse("write_error", status.OUT_OF_RESOURCES)
        if header.sop_class_uid != sop_class_uid or header.sop_uid != sop_uid:
            spool.discard()
            return refuse("sop_mismatch", status.DATASET_MISMATCH)
        return header

    def store_part10(
        self,
        data: bytes,
        *,
        expected_sop_class_uid: str | None = None,
        expected_sop_uid: str | None = None,
    ) -> StoreResult:
        """Check and store one Part-10 byte string as it is (never raises for bad input or I/O).

        A data set disagreeing with ``expected_*`` (a C-STORE's Affected UIDs) is refused with 0xA900.
        """
        if not self.accepting():
            return refuse("disk_low", status.OUT_OF_RESOURCES)
        try:
            transfer_syntax, offset = split_part10(data)
            header = inspect_body(BytesIO(data[offset:]), transfer_syntax, self.policy.budgets)
        except InvalidInstanceError as exc:
            return refuse(exc.reason, exc.status)
        if (expected_sop_class_uid is not None and header.sop_class_uid != expected_sop_class_uid) or (
            expected_sop_uid is not None and header.sop_uid != expected_sop_uid
        ):
            return refuse("sop_mismatch", status.DATASET_MISMATCH)
        sha = hashlib.sha256(data).hexdigest()
        return self._commit(header, transfer_syntax, sha, len(data), lambda final: self._write_durably(final, data))

    def refuse(self, reason: str, dimse_status: int) -> StoreResult:
        """Count and log a refused instance; the result to answer."""
        return refuse(reason, dimse_status)

    def handle_store(self, request: StoreRequest) -> StoreResult:
        """The :class:`~.cstore.StoreHandler` seam: :meth:`store_spool` of a completely received C-STORE."""
        return self.store_spool(
            request.spool,
            sop_class_uid=request.sop_class_uid,
            sop_uid=request.sop_uid,
            transfer_syntax=request.transfer_syntax,
        )
