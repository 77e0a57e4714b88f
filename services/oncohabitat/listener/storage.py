"""Durable instance store: every acknowledged C-STORE is durable before the reply, then filed and indexed.

Layout under ``root``::

    root/.lock                                   exclusive flock: one process per root
    root/index.sqlite3                           StudyIndex (WAL; see index.py for synchronous)
    root/journal/                                intake journal (journal.py), when enabled
    root/incoming/<random>.tmp                   large data sets while they arrive (spool.py)
    root/instances/<study_key>/<series_key>/<sop_key>.dcm
    root/quarantine/journal-<sequence>-<sha16>.dcm (+ .json)   journal entries recovery kept aside

Keys are truncated SHA-256 digests of the validated UIDs (:func:`identifiers.uid_key`): raw
UIDs never name files.

Journal path (``StorePolicy.journal_segments > 0``, the service default) for an instance received
in memory: the Part-10 bytes are appended to the :class:`~.journal.IntakeJournal` with what the
C-STORE request says (:mod:`.journal_meta`) *before* the checks below run, so that the device
write proceeds while they do (one association, measured here: median 1,788 -> 1,950 instances/s);
then the entry is synced and success is answered. An instance the checks refuse has its entry
skipped and gets a refusal record in the journal (:mod:`.journal_meta`). Recovery checks every
entry again: one its checks refuse is not stored; if no refusal record names it (lost in the
crash, or the checks of this release are stricter than those that acknowledged it) its data set is
kept in ``quarantine/`` with a JSON note (reason, journal sequence, SOP key, arrival time), never
dropped. Only then, in the
result's ``follow_up`` (run by the association after its reply), is the SOP Instance UID checked
against pending and indexed instances: every duplicate outcome answers success as well, so the
checks need not delay the reply. A new instance goes to the :class:`~.materialiser.Materialiser`,
which writes the file and commits the row within milliseconds, then advances the journal checkpoint
after a file-system sync; a duplicate takes the direct path below and its entry is skipped. A crash
before that checkpoint is repaired at the next start (:meth:`InstanceStore._recover`). While
pending, the instance counts for duplicate detection and holds back its study's completion. The
SHA-256 the index keeps is computed off the reply path (by the materialiser worker; the journal
entry carries a CRC).

Direct path (no journal, data sets spooled to disk or too large for a journal segment, re-sent UIDs
with other bytes): write the Part-10 bytes to a temporary file in the destination directory (or
finish the spool file), ``os.replace`` it into place, ``fsync`` the file and the directory, then
commit the index row; only then is success (0x0000) answered. A crash at any point leaves either
nothing acknowledged or a complete, fsynced file with its row; temporary files are removed at
start-up; a write error removes the partial file at once. A file without a row (crash before the
commit) was never acknowledged: the sender's retry overwrites it, and after an unclean stop
:meth:`InstanceStore.reconcile` indexes it if it is complete or deletes it if it is not (with the
index at ``synchronous=NORMAL`` this also restores rows a power loss dropped). With
``StorePolicy.fsync=False`` nothing is synced: acknowledged instances then survive a crash of the
process (they are in the OS page cache) but not of the OS.

Before anything is written, :mod:`.checks` validates the identity UIDs, the deflate budget and
the declared pixel budget, and the :class:`DiskGuard` the free-space watermark.

Duplicates (same SOP Instance UID): the same bytes answer success and change nothing. Different
bytes answer success, are counted (``studies.conflicts``, metric) and audited; the
:class:`DuplicatePolicy` keeps the first version (default) or replaces it (the new file gets its
own name ``<sop_key>-<sha16>.dcm``, the row is switched, then the old file is deleted; a completed
study is then treated like a late arrival).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import struct
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from io import BytesIO
from pathlib import Path
from typing import IO

from pydicom.filereader import read_dataset

from oncohabitat.common.blobstore import fsync_directory, sync_filesystem
from oncohabitat.common.polling import DEFAULT_POLL_WINDOW_S
from oncohabitat.dicomio.identifiers import is_valid_uid, uid_key
from oncohabitat.listener import audit, metrics, status
from oncohabitat.listener.checks import Budgets, InstanceHeader, inspect_body
from oncohabitat.listener.dimse import raw_text
from oncohabitat.listener.diskguard import DiskGuard
from oncohabitat.listener.errors import InvalidInstanceError, StorageWriteError
from oncohabitat.listener.index import AddOutcome, AddResult, InstanceRecord, StudyIndex
from oncohabitat.listener.journal import IntakeJournal, JournalEntry, JournalError, JournalLocation
from oncohabitat.listener.journal_meta import (
    IntakeMeta,
    RecordMeta,
    RefusalMeta,
    decode_journal_meta,
    encode_intake_meta,
    encode_refusal_meta,
)
from oncohabitat.listener.materialiser import Materialiser, PendingInstance
from oncohabitat.listener.materialiser_worker import WorkerConfig
from oncohabitat.listener.part10 import file_meta_prefix
from oncohabitat.listener.spool import TEMP_SUFFIX, DatasetSpool

_LOG = logging.getLogger(__name__)

INSTANCES_DIR = "instances"
INCOMING_DIR = "incoming"
INDEX_FILE = "index.sqlite3"
JOURNAL_DIR = "journal"
QUARANTINE_DIR = "quarantine"
LOCK_FILE = ".lock"
_LOCK_STRIPES = 64
#: First and longest wait before a failed after-reply step of a journaled instance is retried (s).
_RESOLVE_RETRY_FIRST_S = 1.0
_RESOLVE_RETRY_MAX_S = 60.0
_META_GROUP = struct.Struct("<HH2sHL")

__all__ = [
    "INDEX_FILE",
    "INSTANCES_DIR",
    "JOURNAL_DIR",
    "QUARANTINE_DIR",
    "TEMP_SUFFIX",
    "DuplicatePolicy",
    "InstanceStore",
    "StorePolicy",
    "StoreResult",
]


class DuplicatePolicy(StrEnum):
    """What a re-sent SOP Instance UID with different bytes does (see module doc)."""

    KEEP_FIRST = "keep_first"
    REPLACE = "replace"


@dataclass(frozen=True)
class StorePolicy:
    """How instances are stored.

    Attributes:
        fsync: fsync file and directory before acknowledging (survives OS crash / power loss).
        duplicates: policy for a re-sent instance with different bytes.
        budgets: deflate and pixel budgets (bytes).
        memory_limit_bytes: data sets up to this size are received in memory, larger ones spooled to disk.
        max_dataset_bytes: largest data set accepted over the wire (bytes; larger ones are refused).
        journal_segments: number of intake journal segments; 0 = no journal (every instance file is
            fsynced, with its directory, before the reply).
        journal_segment_bytes: size of one journal segment (bytes).
        defer_bytes: journaled bytes whose files/rows may wait while intake is busy (capped at a
            quarter of the journal; 0 = materialise at once; see materialiser.py).
        journal_direct: an instance stored on its association's own thread is journaled with a
            direct write that syncs itself (see journal_direct.py), where the system allows it.
        spin_s: how long the wait for such a write polls before it sleeps, s (0 = never).
    """

    fsync: bool = True
    duplicates: DuplicatePolicy = DuplicatePolicy.KEEP_FIRST
    budgets: Budgets = field(default_factory=Budgets)
    memory_limit_bytes: int = 8 * 1024 * 1024
    max_dataset_bytes: int = 1024 * 1024 * 1024
    journal_segments: int = 0
    journal_segment_bytes: int = 32 * 1024 * 1024
    defer_bytes: int = 64 * 1024 * 1024
    journal_direct: bool = True
    spin_s: float = DEFAULT_POLL_WINDOW_S


@dataclass(frozen=True)
class StoreResult:
    """Outcome of storing one instance.

    ``status`` is the DIMSE status to answer (see :mod:`status`); ``outcome`` is None when the
    instance was refused, ``reason`` then holds the stable rejection code. ``settle``, set only
    when the caller asked to defer the sync (``store_spool(defer_sync=True)``), must be called
    before replying: it waits until the instance is durable and returns the result to answer.
    ``follow_up``, when set, must be called once the reply is sent: it finishes the work that need
    not delay the reply and returns the final result (e.g. ``IDENTICAL`` for a re-sent instance).
    ``follow_up_waits``: asked right before the follow-up runs, True when it would wait for the
    materialiser (an earlier version of the same UID is not indexed yet: up to the whole held-back
    backlog); a caller serving several associations on one thread then runs it elsewhere.
    """

    status: int
    outcome: AddOutcome | None = None
    study_key: str | None = None
    reason: str = ""
    follow_up: Callable[[], StoreResult] | None = field(default=None, compare=False, repr=False)
    settle: Callable[[], StoreResult] | None = field(default=None, compare=False, repr=False)
    follow_up_waits: Callable[[], bool] | None = field(default=None, compare=False, repr=False)


def _timed(settle: Callable[[], StoreResult], started: float) -> Callable[[], StoreResult]:
    """``settle`` observing the store time (``started``: ``perf_counter`` when storing began) once durable."""

    def timed() -> StoreResult:
        result = settle()
        metrics.STORE_SECONDS.observe(time.perf_counter() - started)
        return result

    return timed


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def split_part10(data: bytes) -> tuple[str, int]:
    """Transfer syntax and data set offset of a Part-10 byte string.

    Raises:
        InvalidInstanceError: ``unreadable`` when there is no valid preamble and file meta group.
    """
    unreadable = InvalidInstanceError("unreadable", status.CANNOT_PARSE, "not a Part-10 file")
    if len(data) < 144 or data[128:132] != b"DICM":
        raise unreadable
    group, element, vr, length, group_length = _META_GROUP.unpack_from(data, 132)
    if (group, element, vr, length) != (2, 0, b"UL", 4) or 144 + group_length > len(data):
        raise unreadable
    try:
        meta = read_dataset(BytesIO(data[144 : 144 + group_length]), False, True)
        syntax = raw_text(meta, "TransferSyntaxUID")
    except (ValueError, TypeError, KeyError, EOFError, struct.error) as exc:
        raise unreadable from exc
    if not syntax or not is_valid_uid(syntax):
        raise unreadable
    return syntax, 144 + group_length


def _journal_meta(entry: JournalEntry) -> IntakeMeta | RefusalMeta | RecordMeta:
    """The decoded metadata of a journal entry found at recovery.

    Raises:
        JournalError: a layout this release cannot read (the store then does not start: the
            entry may be acknowledged and is never skipped unread).
    """
    try:
        return decode_journal_meta(entry.meta)
    except ValueError as exc:
        raise JournalError(
            f"entry {entry.sequence} has metadata of an unknown layout (a newer release's?); "
            "not starting, so that it is not lost"
        ) from exc


def _instance_path(header: InstanceHeader, sha: str = "") -> str:
    """The Part-10 file of an instance, relative to the store root (POSIX); ``sha``: a replacement's
    hex SHA-256 (see :func:`_replacement_path`)."""
    path = f"{INSTANCES_DIR}/{uid_key(header.study_uid)}/{uid_key(header.series_uid)}/{uid_key(header.sop_uid)}.dcm"
    return _replacement_path(path, sha) if sha else path


def _replacement_path(path: str, sha: str) -> str:
    """The file of a replacement version of the instance at ``path``: named apart by its hex SHA-256."""
    return f"{path.removesuffix('.dcm')}-{sha[:16]}.dcm"


def instance_record(
    header: InstanceHeader, transfer_syntax: str, relative: str, sha: str, size: int, received_at: float
) -> InstanceRecord:
    """The index record of a checked instance stored at ``relative`` (keys from its UIDs)."""
    return InstanceRecord(
        sop_uid=header.sop_uid,
        study_key=uid_key(header.study_uid),
        series_key=uid_key(header.series_uid),
        series_uid=header.series_uid,
        sop_class_uid=header.sop_class_uid,
        modality=header.modality,
        path=relative,
        sha256=sha,
        size=size,
        received_at=received_at,
        series_number=header.series_number,
        series_description=header.series_description,
        transfer_syntax=transfer_syntax,
    )


class InstanceStore:
    """Durable Part-10 file store plus :class:`StudyIndex` rows, safe for concurrent associations.

    Args:
        root: store root directory (created if missing); one process may use it at a time.
        index: the study index (usually ``StudyIndex(root / INDEX_FILE)``).
        policy: durability, duplicates and budgets.
        disk: free-space watermark; None = never refuse for disk space.
        clock: wall clock in epoch seconds (tests may inject one).

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
        self._stripes = [threading.Lock() for _ in range(_LOCK_STRIPES)]
        #: Journaled instances per study whose after-reply work has not run yet: neither pending in
        #: the materialiser nor indexed, yet acknowledged (or about to be). Completion waits for them.
        self._unresolved: Counter[str] = Counter()
        self._unresolved_uids: Counter[str] = Counter()  # the same, by SOP Instance UID
        self._unresolved_lock = threading.Lock()
        self._closing = threading.Event()
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
                direct_writes=self.policy.journal_direct,
                spin_s=self.policy.spin_s,
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
        config = WorkerConfig(
            root=str(self.root),
            index_path=str(self.index.db_path),
            journal_dir=str(journal.directory),
            late_policy=self.index.late_policy.value,
            synchronous=self.index.synchronous,
        )
        self._materialiser = Materialiser(
            journal,
            self.root,
            config,
            self._materialised,
            sync=self.policy.fsync,
            checkpoint_bytes=max(self.policy.journal_segments * self.policy.journal_segment_bytes // 2, 1),
            defer_bytes=min(
                self.policy.defer_bytes, self.policy.journal_segments * self.policy.journal_segment_bytes // 4
            ),
        )
        try:
            self._materialiser.start()
        except (OSError, subprocess.SubprocessError) as exc:
            self.close()
            raise StorageWriteError(f"materialiser worker cannot be started: {exc}") from exc

    def close(self) -> None:
        """Materialise and checkpoint journaled instances, then release the root's lock.

        The index is closed by its owner, after this.
        """
        self._closing.set()  # pending retries end: their entries stay in the journal
        if self._materialiser is not None:
            self._materialiser.stop()
            self._materialiser = None
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def has_pending(self, study_key: str) -> bool:
        """True while acknowledged instances of the study are not yet indexed (journal path)."""
        if self._materialiser is None:
            return False
        with self._unresolved_lock:
            if self._unresolved[study_key]:
                return True
        return self._materialiser.has_pending(study_key)

    def _wait_for_journaled_version(self, sop_uid: str) -> None:
        """Before a direct-path store: let the worker index a journaled version of ``sop_uid`` first.

        Otherwise it and the direct write would both claim the UID's path and row (the row could
        then name other bytes than the file).
        """
        materialiser = self._materialiser
        if materialiser is not None and materialiser.pending(sop_uid) is not None:
            materialiser.flush()

    def _retry_resolution(
        self, resolve: Callable[[], StoreResult], study_key: str, sop_uid: str, delay_s: float
    ) -> None:
        """Run an acknowledged instance's failed after-reply work again in ``delay_s`` (doubling, capped).

        Until it succeeds the study stays pending and no checkpoint passes the journal entry; a
        stop leaves it to the next start (recovery stores it from the journal).
        """

        def attempt() -> None:
            if self._closing.is_set():
                return
            try:
                done = resolve().outcome is not None
            except Exception:  # noqa: BLE001 - retried: the entry stays in the journal meanwhile
                _LOG.error("after-reply work of a journaled instance failed again", exc_info=True)
                done = False
            if done:
                self._resolved(study_key, sop_uid)
            else:
                self._retry_resolution(resolve, study_key, sop_uid, min(delay_s * 2, _RESOLVE_RETRY_MAX_S))

        timer = threading.Timer(delay_s, attempt)
        timer.daemon = True
        timer.name = "listener-resolve-retry"
        timer.start()

    def _resolved(self, study_key: str, sop_uid: str) -> None:
        """One journaled instance of the study no longer awaits its after-reply work."""
        with self._unresolved_lock:
            for counter, key in ((self._unresolved, study_key), (self._unresolved_uids, sop_uid)):
                counter[key] -= 1
                if not counter[key]:
                    del counter[key]

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every acknowledged instance is indexed; False on timeout."""
        return self._materialiser is None or self._materialiser.flush(timeout_s)

    def path_of(self, record: InstanceRecord) -> Path:
        """Absolute path of an indexed instance's file."""
        return self.root / record.path

    def accepting(self) -> bool:
        """False while free disk space is below the watermark."""
        return self.disk is None or self.disk.accepting()

    # ---- receiving -------------------------------------------------------------------------

    def open_spool(self, sop_class_uid: str, sop_uid: str, transfer_syntax: str) -> DatasetSpool:
        """A spool for the data set of a C-STORE whose command UIDs were validated."""
        return DatasetSpool(
            file_meta_prefix(sop_class_uid, sop_uid, transfer_syntax),
            self._incoming_dir,
            memory_limit=self.policy.memory_limit_bytes,
            max_bytes=self.policy.max_dataset_bytes,
        )

    def store_spool(
        self,
        spool: DatasetSpool,
        *,
        sop_class_uid: str,
        sop_uid: str,
        transfer_syntax: str,
        defer_sync: bool = False,
    ) -> StoreResult:
        """Check and store a completely received data set (never raises for bad input or I/O).

        ``sop_class_uid``/``sop_uid`` are the C-STORE request's Affected SOP Class/Instance UIDs.
        ``defer_sync``: a journaled instance is returned written but not yet durable, with
        :attr:`StoreResult.settle` to call before replying (the reactor syncs once for all the
        instances of a round); otherwise this returns once the instance is durable.
        """
        started = time.perf_counter()
        if spool.overflowed:
            return self.refuse("dataset_too_large", status.PIXEL_BUDGET_EXCEEDED)
        if not self.accepting():
            spool.discard()
            return self.refuse("disk_low", status.OUT_OF_RESOURCES)
        # Journaled before the checks, so that its device write proceeds while they run (only the
        # sync waits for it); an entry whose instance is then refused is skipped (see _recover).
        journaled = self._journal_intake(spool, sop_class_uid, sop_uid, transfer_syntax, start_writeback=not defer_sync)
        refusal = "internal_error"  # an unexpected exception below is answered as a failure too
        try:
            checked = self._checked_header(spool, transfer_syntax, sop_class_uid, sop_uid)
            if isinstance(checked, StoreResult):
                refusal = checked.reason
                return checked
            header = checked
            if journaled is not None:
                location, received_at = journaled
                result = self._commit_journaled(header, transfer_syntax, spool, location, received_at, defer_sync)
                journaled = None  # its entry is the result's now (acknowledged, or skipped by settle)
                if result.settle is not None:
                    return dataclasses.replace(result, settle=_timed(result.settle, started))
                metrics.STORE_SECONDS.observe(time.perf_counter() - started)
                return result
        finally:
            if journaled is not None:  # refused: never acknowledged
                self._journal_refusal(journaled[0], refusal)

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
        """The checked header of a received data set, or the refusal to answer (its spool discarded).

        ``sop_class_uid``/``sop_uid``: the C-STORE request's UIDs, which the data set must carry.
        """
        try:
            with spool.open_body() as stream:
                header = inspect_body(stream, transfer_syntax, self.policy.budgets)
        except InvalidInstanceError as exc:
            spool.discard()
            return self.refuse(exc.reason, exc.status)
        except OSError as exc:
            spool.discard()
            _LOG.error("spooled data set cannot be read back: %s", exc.strerror)
            return self.refuse("write_error", status.OUT_OF_RESOURCES)
        if header.sop_class_uid != sop_class_uid or header.sop_uid != sop_uid:
            spool.discard()
            return self.refuse("sop_mismatch", status.DATASET_MISMATCH)
        return header

    def _journal_refusal(self, location: JournalLocation, reason: str) -> None:
        """Skip the entry of a refused instance and record its refusal in the journal (no sync).

        The record (see :mod:`.journal_meta`) tells recovery that the entry was never
        acknowledged; where it is lost (a crash before the next sync) recovery keeps the data
        set in quarantine instead.
        """
        materialiser, journal = self._materialiser, self.journal
        if materialiser is None or journal is None:
            return
        try:
            journal.complete(location)  # its write may still be in flight
        except JournalError as exc:
            _LOG.error("intake journal: the write of a refused instance failed: %s", exc)
        materialiser.skip(location.sequence)
        try:
            # Never waits for journal space: a refusal is answered at once, and a lost record only
            # means that recovery quarantines the entry instead of skipping it.
            meta = encode_refusal_meta(RefusalMeta(location.sequence, reason))
            record = journal.write(meta, b"", wait_for_space=False)
        except JournalError as exc:
            _LOG.warning("intake journal: refusal of entry %d not recorded (%s)", location.sequence, exc)
            return
        materialiser.skip(record.sequence)

    def _journal_intake(
        self, spool: DatasetSpool, sop_class_uid: str, sop_uid: str, transfer_syntax: str, *, start_writeback: bool
    ) -> tuple[JournalLocation, float] | None:
        """Journal a received data set before its checks; its location and arrival time (epoch s).

        None when it must take the direct path: no journal, spooled to disk, too large for an
        entry, or the journal refused it (full or failed). ``start_writeback``: start the device
        write now (the caller syncs this entry alone, after the checks).
        """
        journal = self.journal
        if self._materialiser is None or journal is None or not spool.in_memory:
            return None
        received_at = self._clock()
        meta = encode_intake_meta(IntakeMeta(sop_class_uid, sop_uid, transfer_syntax, received_at, self.policy.budgets))
        data = spool.getvalue()
        if len(meta) + len(data) > journal.max_entry_bytes:
            return None
        try:
            return journal.write(meta, data, start_writeback=start_writeback), received_at
        except JournalError as exc:
            metrics.JOURNAL_ERRORS.labels(stage="append").inc()
            _LOG.error("intake journal refused an instance (stored directly instead): %s", exc)
            return None

    def store_part10(
        self,
        data: bytes,
        *,
        expected_sop_class_uid: str | None = None,
        expected_sop_uid: str | None = None,
    ) -> StoreResult:
        """Check and store one Part-10 byte string as it is (never raises for bad input or I/O).

        ``expected_*`` are a C-STORE request's Affected SOP Class/Instance UIDs; a data set
        disagreeing with them is refused with 0xA900.
        """
        if not self.accepting():
            return self.refuse("disk_low", status.OUT_OF_RESOURCES)
        try:
            transfer_syntax, offset = split_part10(data)
            header = inspect_body(BytesIO(data[offset:]), transfer_syntax, self.policy.budgets)
        except InvalidInstanceError as exc:
            return self.refuse(exc.reason, exc.status)
        if (expected_sop_class_uid is not None and header.sop_class_uid != expected_sop_class_uid) or (
            expected_sop_uid is not None and header.sop_uid != expected_sop_uid
        ):
            return self.refuse("sop_mismatch", status.DATASET_MISMATCH)
        sha = hashlib.sha256(data).hexdigest()
        return self._commit(header, transfer_syntax, sha, len(data), lambda final: self._write_durably(final, data))

    def refuse(self, reason: str, dimse_status: int) -> StoreResult:
        """Count and log a refused instance; the result to answer."""
        metrics.INSTANCES_REJECTED.labels(reason=reason).inc()
        _LOG.warning("C-STORE refused: %s (status 0x%04X)", reason, dimse_status)
        return StoreResult(dimse_status, None, None, reason)

    # ---- committing ------------------------------------------------------------------------

    def _commit_journaled(
        self,
        header: InstanceHeader,
        transfer_syntax: str,
        spool: DatasetSpool,
        location: JournalLocation,
        received_at: float,
        defer_sync: bool,
    ) -> StoreResult:
        """Acknowledge a checked instance once its journal entry is durable; sort out duplicates after the reply.

        The entry (written by :meth:`_journal_intake`, with a CRC payload check, no SHA-256 yet)
        is synced (by the returned result's :attr:`StoreResult.settle` when ``defer_sync``),
        then success is answered: every duplicate outcome answers success too (see the module
        doc), so the duplicate checks need not delay the reply. They run in
        :attr:`StoreResult.follow_up`, which the association calls once the reply is sent (and
        which must always be called: until then the journal cannot be checkpointed past the
        entry). If the sync fails the instance is stored through the direct path instead.
        """
        materialiser, journal = self._materialiser, self.journal
        assert materialiser is not None and journal is not None
        study_key = uid_key(header.study_uid)
        data = spool.getvalue()
        record = instance_record(header, transfer_syntax, _instance_path(header), "", len(data), received_at)
        sop_uid = record.sop_uid
        with self._unresolved_lock:  # from now until its follow-up has run (see has_pending)
            self._unresolved[study_key] += 1
            self._unresolved_uids[sop_uid] += 1

        def resolve() -> StoreResult:
            return self._resolve_journaled(PendingInstance(location, record, header.study_uid), header, data, spool)

        def follow_up() -> StoreResult:
            result: StoreResult | None = None
            try:
                result = resolve()
                return result
            finally:
                if result is not None and result.outcome is not None:
                    self._resolved(study_key, sop_uid)
                else:  # nothing written: the entry is kept (see _resolve_journaled) and retried
                    self._retry_resolution(resolve, study_key, sop_uid, _RESOLVE_RETRY_FIRST_S)

        def settle() -> StoreResult:
            try:
                journal.wait_durable(location)
            except JournalError as exc:  # the sync failed: not acknowledged, stored directly instead
                try:
                    materialiser.skip(location.sequence)
                    metrics.JOURNAL_ERRORS.labels(stage="append").inc()
                    _LOG.error("intake journal could not sync an instance (stored directly instead): %s", exc)
                    self._wait_for_journaled_version(header.sop_uid)
                    return self._commit(
                        header,
                        transfer_syntax,
                        spool.sha256(),
                        len(data),
                        lambda final: self._write_durably(final, data),
                    )
                finally:
                    self._resolved(study_key, sop_uid)

            def waits() -> bool:
                """True when an earlier version of the UID is pending, or acknowledged and not yet
                handed on (its after-reply work still to run, perhaps on another association's
                thread, or in this very round): this version's check would then wait for it."""
                if materialiser.pending(sop_uid) is not None:
                    return True
                with self._unresolved_lock:
                    return self._unresolved_uids[sop_uid] > 1  # this version counts itself

            return StoreResult(status.SUCCESS, AddOutcome.STORED, study_key, follow_up=follow_up, follow_up_waits=waits)

        if defer_sync:
            return StoreResult(status.SUCCESS, AddOutcome.STORED, study_key, settle=settle)
        return settle()

    def _resolve_journaled(
        self, item: PendingInstance, header: InstanceHeader, data: bytes, spool: DatasetSpool
    ) -> StoreResult:
        """After the reply: hand a new instance to the materialiser, or settle a duplicate.

        A SOP Instance UID that is neither pending nor indexed is submitted (the usual case). A
        duplicate goes through the direct path (:meth:`_commit`: identical, conflict or replace,
        by policy) once any pending version of it is indexed; its journal entry is then skipped.
        If the index cannot be read the instance is submitted anyway: the worker indexes it
        without overwriting an indexed file (a conflict then keeps the first version).
        """
        materialiser = self._materialiser
        assert materialiser is not None
        record = item.record
        sop_key = uid_key(record.sop_uid)
        with self._stripes[int(sop_key[:8], 16) % _LOCK_STRIPES]:
            try:
                pending = materialiser.pending(record.sop_uid)
                existing = self.index.get_instance(record.sop_uid) if pending is None else None
            except sqlite3.Error as exc:
                _LOG.error("instance %s: duplicate check failed (%s); indexed later", sop_key, type(exc).__name__)
                pending = existing = None
            if pending is None and existing is None:
                materialiser.submit(item)
                metrics.INSTANCES_STORED.inc()
                metrics.BYTES_STORED.inc(record.size)
                return StoreResult(status.SUCCESS, AddOutcome.STORED, record.study_key)
        if pending is not None:
            materialiser.flush()
        result = self._commit(
            header,
            record.transfer_syntax,
            spool.sha256(),
            record.size,
            lambda final: self._write_durably(final, data),
            received_at=record.received_at,  # resolved late (background, retry): never over a newer one
        )
        if result.outcome is None:
            # Nothing could be written (disk full, index error): the acknowledged entry stays
            # unresolved, so no checkpoint passes it; the follow-up retries it (and a restart
            # stores it from the journal).
            _LOG.error(
                "instance %s: a re-sent version could not be stored (%s); its journal entry is kept",
                sop_key,
                result.reason,
            )
            return result
        materialiser.skip(item.location.sequence)
        return result

    def _materialised(self, item: PendingInstance, result: AddResult) -> None:
        """Report the index outcome of a journaled instance (late arrivals are audited)."""
        self._late(item.record.study_key, result)

    def _recover(self, entries: list[JournalEntry]) -> int:
        """Re-materialise journal entries left by an unclean stop (idempotent); returns how many.

        An entry named by a refusal record (:mod:`.journal_meta`) was refused at intake and is
        not stored. Every other entry's data set is checked again as at intake
        (:meth:`_journaled_instance`); one that fails is not stored either but kept in quarantine
        (:meth:`_quarantine`): its refusal record may have been lost in the crash, or it was
        acknowledged under less strict checks. An entry whose SOP Instance UID is indexed
        with the same SHA-256 only gets its file checked (rewritten when missing or different).
        One indexed with other bytes is a re-sent version whose duplicate handling the stop
        interrupted (it runs after the reply) or that a later version superseded: under the
        "replace" policy a version received after the indexed one replaces it now; otherwise the
        indexed version stays.
        """
        refusals: dict[int, str] = {}
        instances: list[tuple[JournalEntry, IntakeMeta | RecordMeta]] = []
        for entry in entries:
            meta = _journal_meta(entry)
            if isinstance(meta, RefusalMeta):
                refusals[meta.refused_sequence] = meta.reason
            else:
                instances.append((entry, meta))
        done = refused = quarantined = 0
        for entry, meta in instances:
            if entry.sequence in refusals:  # refused at intake: not even checked again
                refused += 1
                continue
            journaled = self._journaled_instance(entry, meta)
            if isinstance(journaled, str):
                self._quarantine(entry, meta, journaled)
                quarantined += 1
                continue
            record, study_uid = journaled
            existing = self.index.get_instance(record.sop_uid)
            if existing is None:
                self._write_durably(self.root / record.path, entry.payload, fsync=False)
                self._late(record.study_key, self.index.add_instance(record, study_uid))
                done += 1
            elif existing.sha256 == entry.sha256:
                path = self.root / existing.path
                try:
                    intact = hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256
                except OSError:
                    intact = False
                if not intact:
                    self._write_durably(path, entry.payload, fsync=False)
                    done += 1
            elif self.policy.duplicates is DuplicatePolicy.REPLACE and record.received_at > existing.received_at:
                replacement = dataclasses.replace(record, path=_replacement_path(record.path, entry.sha256))
                self._write_durably(self.root / replacement.path, entry.payload, fsync=False)
                if self.index.replace_instance(replacement).outcome is AddOutcome.REPLACED:
                    self._replaced(existing, replacement)
                done += 1
        if done:
            _LOG.warning("intake journal: %d acknowledged instance(s) re-materialised after an unclean stop", done)
        if refused:
            _LOG.info("intake journal: %d entries of instances refused at intake not stored", refused)
        if quarantined:
            _LOG.warning("intake journal: %d entries kept in %s/ (see the log above)", quarantined, QUARANTINE_DIR)
        return done

    def _journaled_instance(
        self, entry: JournalEntry, meta: IntakeMeta | RecordMeta
    ) -> tuple[InstanceRecord, str] | str:
        """The index record (with its SHA-256) and Study Instance UID of a journaled instance, or
        the reason code its checks refuse it with.

        Entries are journaled before the checks (see :mod:`.journal_meta`): the data set is
        checked again here with the budgets journaled with it (not today's settings: the decision
        at intake is repeated exactly) against its C-STORE's UIDs.

        Raises:
            JournalError: checks that fail unexpectedly (the store then does not start: an entry
                that may be acknowledged is never dropped unexplained).
        """
        if not isinstance(meta, IntakeMeta):  # first layout: checked before it was journaled
            record, study_uid = meta
            return dataclasses.replace(record, sha256=entry.sha256), study_uid
        sop_key = uid_key(meta.sop_uid) if is_valid_uid(meta.sop_uid) else "?"
        try:
            transfer_syntax, offset = split_part10(entry.payload)
            header = inspect_body(BytesIO(entry.payload[offset:]), transfer_syntax, meta.budgets)
        except InvalidInstanceError as exc:
            return exc.reason
        except Exception as exc:
            raise JournalError(
                f"entry {entry.sequence} (instance {sop_key}) cannot be checked ({type(exc).__name__}); not starting"
            ) from exc
        if (header.sop_class_uid, header.sop_uid, transfer_syntax) != (
            meta.sop_class_uid,
            meta.sop_uid,
            meta.transfer_syntax,
        ):
            return "sop_mismatch"
        record = instance_record(
            header, transfer_syntax, _instance_path(header), entry.sha256, len(entry.payload), meta.received_at
        )
        return record, header.study_uid

    def _quarantine(self, entry: JournalEntry, meta: IntakeMeta | RecordMeta, reason: str) -> None:
        """Keep a journaled data set its checks refuse, though no refusal record names it, in ``quarantine/``.

        Such an entry was refused at intake and its refusal record lost in the crash, or it was
        acknowledged by a release whose checks were less strict: it is never dropped. The Part-10
        file is kept as journaled (a bomb is not inflated), named by journal sequence and SHA-256
        (never by a UID), with a JSON note beside it: reason code, journal sequence, SOP key,
        SOP Class UID, transfer syntax, arrival time (epoch s), SHA-256 and size (bytes). Written
        without fsync: recovery syncs the file system before its checkpoint.

        Raises:
            JournalError: it cannot be written (the store then does not start; the entry stays).
        """
        sop_uid = meta.sop_uid if isinstance(meta, IntakeMeta) else meta[0].sop_uid
        sop_key = uid_key(sop_uid) if is_valid_uid(sop_uid) else "?"
        name = f"journal-{entry.sequence:012d}-{entry.sha256[:16]}"
        note = {
            "reason": reason,
            "journal_sequence": entry.sequence,
            "sop_key": sop_key,
            "sop_class_uid": meta.sop_class_uid if isinstance(meta, IntakeMeta) else meta[0].sop_class_uid,
            "transfer_syntax": meta.transfer_syntax if isinstance(meta, IntakeMeta) else meta[0].transfer_syntax,
            "received_at": meta.received_at if isinstance(meta, IntakeMeta) else meta[0].received_at,
            "sha256": entry.sha256,
            "size_bytes": len(entry.payload),
        }
        directory = self.root / QUARANTINE_DIR
        try:
            self._write_durably(directory / f"{name}.dcm", entry.payload, fsync=False)
            self._write_durably(directory / f"{name}.json", json.dumps(note, indent=1).encode(), fsync=False)
        except OSError as exc:
            raise JournalError(
                f"entry {entry.sequence} (instance {sop_key}) cannot be quarantined ({exc.strerror}); not starting"
            ) from exc
        metrics.JOURNAL_QUARANTINED.labels(reason=reason).inc()
        _LOG.warning(
            "intake journal: entry %d (instance %s) is refused by its checks (%s) and no refusal record names"
            " it; kept in %s/%s.dcm, not stored",
            entry.sequence,
            sop_key,
            reason,
            QUARANTINE_DIR,
            name,
        )

    def _commit(
        self,
        header: InstanceHeader,
        transfer_syntax: str,
        sha: str,
        size: int,
        place: Callable[[Path], None],
        received_at: float | None = None,
    ) -> StoreResult:
        """Write and index an instance directly (identical, conflict or replace for a known UID).

        ``received_at``: when this version arrived (epoch s), for one resolved after its reply
        (journaled): a version older than the indexed one is a conflict, never a replacement (a
        newer version was acknowledged and indexed meanwhile). None: now.
        """
        study_key = uid_key(header.study_uid)
        sop_key = uid_key(header.sop_uid)
        relative = _instance_path(header)
        with self._stripes[int(sop_key[:8], 16) % _LOCK_STRIPES]:
            try:
                existing = self.index.get_instance(header.sop_uid)
            except sqlite3.Error as exc:
                _LOG.error("instance %s of study %s not indexed: %s", sop_key, study_key, type(exc).__name__)
                return self.refuse("index_error", status.OUT_OF_RESOURCES)
            if existing is not None:
                if existing.sha256 == sha:
                    return self._identical(existing.study_key)
                superseded = received_at is not None and existing.received_at > received_at
                if superseded or self.policy.duplicates is DuplicatePolicy.KEEP_FIRST:
                    return self._conflict(existing.study_key, sop_key)
                relative = _instance_path(header, sha)
            final = self.root / relative
            try:
                place(final)
            except OSError as exc:
                _LOG.error("instance %s of study %s not written: %s", sop_key, study_key, exc.strerror)
                return self.refuse("write_error", status.OUT_OF_RESOURCES)
            arrival = self._clock() if received_at is None else received_at
            record = instance_record(header, transfer_syntax, relative, sha, size, arrival)
            try:
                if existing is None:
                    result = self.index.add_instance(record, header.study_uid)
                else:
                    result = self.index.replace_instance(record)
            except sqlite3.Error as exc:
                with contextlib.suppress(FileNotFoundError):
                    final.unlink()
                _LOG.error("instance %s of study %s not indexed: %s", sop_key, study_key, type(exc).__name__)
                return self.refuse("index_error", status.OUT_OF_RESOURCES)
            if result.outcome is AddOutcome.REPLACED and existing is not None:
                self._replaced(existing, record)
        if result.outcome is AddOutcome.IDENTICAL:
            return self._identical(study_key)
        if result.outcome is AddOutcome.CONFLICT:
            return self._conflict(study_key, sop_key)
        self._late(study_key, result)
        metrics.INSTANCES_STORED.inc()
        metrics.BYTES_STORED.inc(size)
        return StoreResult(status.SUCCESS, result.outcome, study_key)

    def _identical(self, study_key: str) -> StoreResult:
        metrics.DUPLICATES.labels(kind="identical").inc()
        return StoreResult(status.SUCCESS, AddOutcome.IDENTICAL, study_key)

    def _conflict(self, study_key: str, sop_key: str) -> StoreResult:
        metrics.DUPLICATES.labels(kind="conflict").inc()
        if self.policy.duplicates is DuplicatePolicy.KEEP_FIRST:
            self.index.record_conflict(study_key)
        detail = {"instance_key": sop_key, "policy": self.policy.duplicates.value}
        self._audit("instance_conflict", study_key, detail)
        return StoreResult(status.SUCCESS, AddOutcome.CONFLICT, study_key)

    def _replaced(self, old: InstanceRecord, new: InstanceRecord) -> None:
        metrics.DUPLICATES.labels(kind="replaced").inc()
        if old.path != new.path:
            with contextlib.suppress(FileNotFoundError):
                (self.root / old.path).unlink()
        self._audit("instance_replaced", new.study_key, {"instance_key": uid_key(new.sop_uid)})

    def _late(self, study_key: str, result: AddResult) -> None:
        previous = result.reopened_from or result.held_in
        if previous is None:
            return
        action = "rerun" if result.reopened_from is not None else "hold"
        metrics.STUDIES_UPDATED.labels(action=action).inc()
        if result.reopened_from is not None:
            metrics.STUDIES_REOPENED.inc()
        self._audit("study_updated", study_key, {"previous_state": previous.value, "action": action})

    def _audit(self, event: str, study_key: str, detail: dict[str, str]) -> None:
        audit.emit(event, study_key=study_key, **detail)
        try:
            self.index.add_audit(self._clock(), event, study_key, detail)
        except sqlite3.Error as exc:
            _LOG.error("audit event %s not persisted: %s", event, type(exc).__name__)

    # ---- files -----------------------------------------------------------------------------

    def _ensure_directory(self, directory: Path) -> None:
        """Create ``directory`` (and parents) and fsync each parent whose entries changed."""
        with self._dirs_lock:
            if directory in self._known_dirs:
                return
            missing: list[Path] = []
            current = directory
            while not current.is_dir():
                missing.append(current)
                current = current.parent
            for path in reversed(missing):
                path.mkdir(exist_ok=True)
                if self.policy.fsync:
                    fsync_directory(path.parent)
            self._known_dirs.add(directory)

    def _write_durably(self, final: Path, data: bytes, *, fsync: bool | None = None) -> None:
        """Temp file in the same directory, atomic rename, fsync the file, fsync the directory.

        ``fsync`` overrides the policy (the materialiser writes without: its checkpoint syncs).

        The rename comes before the file's fsync so that one journal commit carries both (on
        ext4 the directory fsync then finds nothing left to commit). Until the index row is
        committed the file is not acknowledged, whatever state a crash leaves it in (start-up
        reconciliation checks such files and deletes the unusable ones).

        Raises:
            OSError: any step failed; the temporary or partial file has been removed.
        """
        durable = self.policy.fsync if fsync is None else fsync
        directory = final.parent
        self._ensure_directory(directory)
        temp = directory / f"{final.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}"
        written: Path = temp
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                _write_all(fd, data)
                os.replace(temp, final)
                written = final
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            if durable:
                fsync_directory(directory)
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                written.unlink()
            raise

    def _move_durably(self, spool: DatasetSpool, final: Path) -> None:
        """Finish (fsync) the spool file and rename it into place; fsync the directory."""
        self._ensure_directory(final.parent)
        temp = spool.path
        try:
            temp = spool.finish_file(self.policy.fsync)
            os.replace(temp, final)
        except OSError:
            if temp is not None:
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
            raise
        if self.policy.fsync:
            fsync_directory(final.parent)

    def reconcile(self) -> int:
        """Index instance files that have no row (after an unclean stop); returns how many.

        With ``synchronous=NORMAL`` a power loss can drop the last index commits while their
        (fsynced) files survive: those acknowledged instances are re-indexed from their headers.
        Files that fail the checks (a write cut short before it was acknowledged) are deleted.
        A replacement file (duplicate policy "replace", named ``<uid key>-<sha16>.dcm``) whose
        commit was lost takes over its UID's row when the row's file is gone (the old file is
        unlinked right after the commit) or is older than the replacement.
        """
        indexed = self.index.indexed_paths()
        added = removed = 0
        # first-received files (``<uid key>.dcm``) before replacements (``<uid key>-<sha16>.dcm``)
        for path in sorted(self._instances_dir.glob("*/*/*.dcm"), key=lambda p: ("-" in p.stem, p.as_posix())):
            relative = path.relative_to(self.root).as_posix()
            if relative in indexed:
                continue
            try:
                data = path.read_bytes()
                transfer_syntax, offset = split_part10(data)
                header = inspect_body(BytesIO(data[offset:]), transfer_syntax, self.policy.budgets)
            except (InvalidInstanceError, OSError):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                removed += 1
                continue
            keys = (uid_key(header.study_uid), uid_key(header.series_uid), uid_key(header.sop_uid))
            sha = hashlib.sha256(data).hexdigest()
            record = instance_record(header, transfer_syntax, relative, sha, len(data), path.stat().st_mtime)
            if relative != "{}/{}/{}/{}.dcm".format(INSTANCES_DIR, *keys):
                if self.policy.duplicates is not DuplicatePolicy.REPLACE:
                    continue  # not ours to decide: such files exist only under the replace policy
                current = self.index.get_instance(record.sop_uid)
                if current is None:  # both commits lost: the replacement is the version acknowledged last
                    outcome = self.index.add_instance(record, header.study_uid).outcome
                    added += outcome is AddOutcome.STORED
                elif self._replacement_lost(record, current):
                    self.index.replace_instance(record)
                    added += 1
                continue
            if self.index.add_instance(record, header.study_uid).outcome is AddOutcome.STORED:
                added += 1
        if added or removed:
            _LOG.warning("unclean stop: %d instance file(s) re-indexed, %d unusable file(s) removed", added, removed)
        return added

    def _replacement_lost(self, replacement: InstanceRecord, indexed: InstanceRecord) -> bool:
        """True when an unindexed replacement file should take over its UID's row (see :meth:`reconcile`)."""
        if indexed.sha256 == replacement.sha256:
            return False
        current = self.root / indexed.path
        return not current.exists() or indexed.received_at < replacement.received_at

    def _remove_orphan_temp_files(self) -> int:
        """Delete temporary files left by a crash mid-write; returns how many were removed."""
        removed = 0
        for directory in (self._instances_dir, self._incoming_dir, self.root / QUARANTINE_DIR):
            for temp in directory.rglob(f"*{TEMP_SUFFIX}"):
                try:
                    temp.unlink()
                except FileNotFoundError:
                    continue
                removed += 1
        if removed:
            metrics.TEMP_FILES_REMOVED.inc(removed)
            _LOG.warning("removed %d orphan temporary file(s) from an interrupted write", removed)
        return removed
