"""Durable instance store: every acknowledged C-STORE is on disk and indexed before the reply.

Layout under ``root``::

    root/.lock                                   exclusive flock: one process per root
    root/index.sqlite3                           StudyIndex (WAL, synchronous=FULL)
    root/instances/<study_key>/<series_key>/<sop_key>.dcm

Keys are truncated SHA-256 digests of the validated UIDs (:func:`identifiers.uid_key`): raw
UIDs never name files. Storing one instance: write the Part-10 bytes to a temporary file in
the destination directory, ``fsync`` it, ``os.replace`` it into place, ``fsync`` the directory,
then commit the index row; only then is success (0x0000) answered. A crash at any point leaves
either nothing acknowledged or a complete file with its row; partial temporary files are
removed at start-up. A complete file without a row (crash between rename and commit) was
never acknowledged; the sender's retry overwrites it.

Duplicates: the same SOP Instance UID with the same bytes answers success and changes nothing;
with different bytes the first version is kept, success is answered and the conflict counted
(metric and ``studies.conflicts``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import sqlite3
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import IO, Any, Protocol

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from oncohabitat.listener import metrics, status
from oncohabitat.listener.errors import InvalidInstanceError, StorageWriteError
from oncohabitat.listener.identifiers import is_valid_uid, uid_key
from oncohabitat.listener.index import AddOutcome, InstanceRecord, StudyIndex

_LOG = logging.getLogger(__name__)

TEMP_SUFFIX = ".tmp"
INSTANCES_DIR = "instances"
INDEX_FILE = "index.sqlite3"
LOCK_FILE = ".lock"
_LOCK_STRIPES = 64
_MAX_MODALITY_LENGTH = 16

_IDENTITY_TAGS = ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality"]
_REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


@dataclass(frozen=True)
class InstanceIdentity:
    """The validated UIDs (and modality) that place an instance in the store."""

    sop_class_uid: str
    sop_uid: str
    study_uid: str
    series_uid: str
    modality: str


@dataclass(frozen=True)
class StoreResult:
    """Outcome of storing one instance.

    ``status`` is the DIMSE status to answer (see :mod:`status`); ``outcome`` is None when the
    instance was rejected, ``reason`` then holds the stable rejection code.
    """

    status: int
    outcome: AddOutcome | None = None
    study_key: str | None = None
    reason: str = ""


class StoreEvent(Protocol):
    """The part of ``pynetdicom.events.Event`` that :meth:`InstanceStore.handle_store` uses.

    ``request`` is the C-STORE primitive (``AffectedSOPClassUID``, ``AffectedSOPInstanceUID``).
    """

    request: Any

    def encoded_dataset(self, include_meta: bool = True) -> bytes: ...  # pragma: no cover


def _raw_text(ds: Dataset, keyword: str) -> str | None:
    """An element's text without pydicom's value conversion/validation (which logs bad values).

    Trailing NUL/space padding is removed; bytes that are not ASCII become U+FFFD (invalid UID).
    """
    element = ds.get_item(keyword)
    if element is None:
        return None
    value = element.value
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if not isinstance(value, str):
        return ""  # multi-valued or otherwise not a single text value
    return value.rstrip("\x00 ")


def read_identity(part10: bytes) -> InstanceIdentity:
    """Parse and validate the identifying UIDs of a Part-10 byte string.

    Raises:
        InvalidInstanceError: unreadable data set (``unreadable``, 0xC001), a required UID
            missing (``missing_uid``, 0xC002) or non-conformant (``invalid_uid``, 0xC003).
    """
    try:
        ds = dcmread(BytesIO(part10), stop_before_pixels=True, specific_tags=list(_IDENTITY_TAGS))
        values = {name: _raw_text(ds, name) for name in _IDENTITY_TAGS}
    except (InvalidDicomError, ValueError, TypeError, KeyError, EOFError, OSError, struct.error) as exc:
        raise InvalidInstanceError("unreadable", status.CANNOT_PARSE, "data set could not be parsed") from exc
    for name in _REQUIRED_UIDS:
        value = values[name]
        if not value:
            raise InvalidInstanceError("missing_uid", status.MISSING_UID, f"{name} is missing")
        if not is_valid_uid(value):
            raise InvalidInstanceError(
                "invalid_uid", status.INVALID_UID, f"{name} is not a conformant UID (digits and dots, <= 64)"
            )
    return InstanceIdentity(
        sop_class_uid=str(values["SOPClassUID"]),
        sop_uid=str(values["SOPInstanceUID"]),
        study_uid=str(values["StudyInstanceUID"]),
        series_uid=str(values["SeriesInstanceUID"]),
        modality=(values["Modality"] or "").strip()[:_MAX_MODALITY_LENGTH],
    )


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class InstanceStore:
    """Durable Part-10 file store plus :class:`StudyIndex` rows, safe for concurrent associations.

    Args:
        root: store root directory (created if missing); one process may use it at a time.
        index: the study index (usually ``StudyIndex(root / INDEX_FILE)``).
        clock: wall clock in epoch seconds (tests may inject one).

    Raises:
        StorageWriteError: the root cannot be created or another process holds its lock.
    """

    def __init__(self, root: Path, index: StudyIndex, *, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.index = index
        self._clock = clock
        self._instances_dir = root / INSTANCES_DIR
        self._stripes = [threading.Lock() for _ in range(_LOCK_STRIPES)]
        self._known_dirs: set[Path] = set()
        self._dirs_lock = threading.Lock()
        try:
            self._instances_dir.mkdir(parents=True, exist_ok=True)
            self._lock_handle: IO[bytes] | None = (root / LOCK_FILE).open("ab")
        except OSError as exc:
            raise StorageWriteError(f"store root cannot be prepared: {exc.strerror}") from exc
        try:
            fcntl.flock(self._lock_handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock_handle.close()
            raise StorageWriteError("store root is in use by another process") from exc
        self.orphans_removed = self._remove_orphan_temp_files()

    def close(self) -> None:
        """Release the root's lock (the index is closed by its owner)."""
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def path_of(self, record: InstanceRecord) -> Path:
        """Absolute path of an indexed instance's file."""
        return self.root / record.path

    # ---- receiving -------------------------------------------------------------------------

    def handle_store(self, event: StoreEvent) -> int:
        """pynetdicom ``EVT_C_STORE`` handler: store durably, return the DIMSE status.

        Never raises for bad input or write errors; they map to failure statuses.
        """
        sop_class_uid = getattr(event.request, "AffectedSOPClassUID", None)
        sop_uid = getattr(event.request, "AffectedSOPInstanceUID", None)
        if not (is_valid_uid(sop_class_uid) and is_valid_uid(sop_uid)):
            return self._reject("invalid_uid", status.INVALID_UID).status
        try:
            data = event.encoded_dataset(include_meta=True)
        except (AttributeError, ValueError, TypeError) as exc:
            _LOG.warning("C-STORE data set could not be encoded as a Part-10 file: %s", type(exc).__name__)
            return self._reject("unreadable", status.CANNOT_PARSE).status
        return self.store_part10(
            data,
            expected_sop_class_uid=str(sop_class_uid),
            expected_sop_uid=str(sop_uid),
        ).status

    def store_part10(
        self,
        data: bytes,
        *,
        expected_sop_class_uid: str | None = None,
        expected_sop_uid: str | None = None,
    ) -> StoreResult:
        """Store one Part-10 byte string durably and index it (see module doc).

        ``expected_*`` are the C-STORE request's Affected SOP Class/Instance UIDs; a data set
        disagreeing with them is refused with 0xA900. Never raises for bad input or I/O errors.
        """
        started = time.perf_counter()
        try:
            identity = read_identity(data)
        except InvalidInstanceError as exc:
            return self._reject(exc.reason, exc.status)
        if (expected_sop_class_uid is not None and identity.sop_class_uid != expected_sop_class_uid) or (
            expected_sop_uid is not None and identity.sop_uid != expected_sop_uid
        ):
            return self._reject("sop_mismatch", status.DATASET_MISMATCH)

        study_key = uid_key(identity.study_uid)
        series_key = uid_key(identity.series_uid)
        sop_key = uid_key(identity.sop_uid)
        sha = hashlib.sha256(data).hexdigest()
        relative = f"{INSTANCES_DIR}/{study_key}/{series_key}/{sop_key}.dcm"
        with self._stripes[int(sop_key[:8], 16) % _LOCK_STRIPES]:
            try:
                existing = self.index.get_instance(identity.sop_uid)
                if existing is not None and existing.sha256 != sha:
                    self.index.record_conflict(existing.study_key)
            except sqlite3.Error as exc:
                _LOG.error("instance %s of study %s not indexed: %s", sop_key, study_key, type(exc).__name__)
                return self._reject("index_error", status.OUT_OF_RESOURCES)
            if existing is not None:
                return self._duplicate(existing.sha256 == sha, existing.study_key, sop_key)
            try:
                self._write_durably(self.root / relative, data)
            except OSError as exc:
                _LOG.error("instance %s of study %s not written: %s", sop_key, study_key, exc.strerror)
                return self._reject("write_error", status.OUT_OF_RESOURCES)
            record = InstanceRecord(
                sop_uid=identity.sop_uid,
                study_key=study_key,
                series_key=series_key,
                series_uid=identity.series_uid,
                sop_class_uid=identity.sop_class_uid,
                modality=identity.modality,
                path=relative,
                sha256=sha,
                size=len(data),
                received_at=self._clock(),
            )
            try:
                result = self.index.add_instance(record, identity.study_uid)
            except sqlite3.Error as exc:
                _LOG.error("instance %s of study %s not indexed: %s", sop_key, study_key, type(exc).__name__)
                return self._reject("index_error", status.OUT_OF_RESOURCES)
        if result.outcome is not AddOutcome.STORED:
            return self._duplicate(result.outcome is AddOutcome.IDENTICAL, study_key, sop_key)
        if result.reopened_from is not None:
            metrics.STUDIES_REOPENED.inc()
            _LOG.info("study %s reopened (was %s)", study_key, result.reopened_from.value)
        metrics.INSTANCES_STORED.inc()
        metrics.BYTES_STORED.inc(len(data))
        metrics.STORE_SECONDS.observe(time.perf_counter() - started)
        _LOG.debug("stored instance %s of study %s (%d bytes)", sop_key, study_key, len(data))
        return StoreResult(status.SUCCESS, AddOutcome.STORED, study_key)

    # ---- helpers ---------------------------------------------------------------------------

    def _reject(self, reason: str, dimse_status: int) -> StoreResult:
        metrics.INSTANCES_REJECTED.labels(reason=reason).inc()
        _LOG.warning("C-STORE refused: %s (status 0x%04X)", reason, dimse_status)
        return StoreResult(dimse_status, None, None, reason)

    def _duplicate(self, identical: bool, study_key: str, sop_key: str) -> StoreResult:
        if identical:
            metrics.DUPLICATES.labels(kind="identical").inc()
            return StoreResult(status.SUCCESS, AddOutcome.IDENTICAL, study_key)
        metrics.DUPLICATES.labels(kind="conflict").inc()
        _LOG.warning("instance %s of study %s re-sent with different bytes: first kept", sop_key, study_key)
        return StoreResult(status.SUCCESS, AddOutcome.CONFLICT, study_key)

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
                _fsync_directory(path.parent)
            self._known_dirs.add(directory)

    def _write_durably(self, final: Path, data: bytes) -> None:
        """Temp file in the same directory, fsync, atomic rename, fsync the directory.

        Raises:
            OSError: any step failed; the temporary file has been removed.
        """
        directory = final.parent
        self._ensure_directory(directory)
        temp = directory / f"{final.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, final)
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
        _fsync_directory(directory)

    def _remove_orphan_temp_files(self) -> int:
        """Delete temporary files left by a crash mid-write; returns how many were removed."""
        removed = 0
        for temp in self._instances_dir.rglob(f"*{TEMP_SUFFIX}"):
            try:
                temp.unlink()
            except FileNotFoundError:
                continue
            removed += 1
        if removed:
            metrics.TEMP_FILES_REMOVED.inc(removed)
            _LOG.warning("removed %d orphan temporary file(s) from an interrupted write", removed)
        return removed
