"""Instance files: the store's layout, Part-10 parsing, and how instance bytes reach disk durably.

Layout under the store root (see :mod:`.storage`)::

    root/incoming/<random>.tmp                   large data sets while they arrive (spool.py)
    root/instances/<study_key>/<series_key>/<sop_key>.dcm        first version of an instance
    root/instances/<study_key>/<series_key>/<sop_key>-<sha16>.dcm  a replacement (duplicates.py)

Keys are truncated SHA-256 digests of the validated UIDs (:func:`identifiers.uid_key`): raw UIDs never name files.

Contract: when :meth:`StoreFiles._write_durably` (bytes) or :meth:`StoreFiles._move_durably` (a spool
file) returns, the file is complete and (if synced) survives a crash; when they raise, the temporary or
partial file is gone. A file alone is never "acknowledged": that takes its index row (direct path,
:mod:`.duplicates`) or its synced journal entry (:mod:`.intake`).
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import uuid
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom.filereader import read_dataset

from oncohabitat.common.blobstore import fsync_directory
from oncohabitat.dicomio.identifiers import is_valid_uid, uid_key
from oncohabitat.listener import status
from oncohabitat.listener.checks import InstanceHeader
from oncohabitat.listener.dimse import raw_text
from oncohabitat.listener.errors import InvalidInstanceError
from oncohabitat.listener.index import InstanceRecord
from oncohabitat.listener.spool import TEMP_SUFFIX, DatasetSpool

if TYPE_CHECKING:
    from oncohabitat.listener.storage import StorePolicy

INSTANCES_DIR = "instances"
INCOMING_DIR = "incoming"
INDEX_FILE = "index.sqlite3"
JOURNAL_DIR = "journal"
LOCK_FILE = ".lock"
_META_GROUP = struct.Struct("<HH2sHL")


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


def instance_path(header: InstanceHeader, sha: str = "") -> str:
    """The Part-10 file of an instance, relative to the store root (POSIX); ``sha``: a replacement's
    hex SHA-256 (see :func:`replacement_path`)."""
    path = f"{INSTANCES_DIR}/{uid_key(header.study_uid)}/{uid_key(header.series_uid)}/{uid_key(header.sop_uid)}.dcm"
    return replacement_path(path, sha) if sha else path


def replacement_path(path: str, sha: str) -> str:
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


class StoreFiles:
    """The instance files of a store root (a part of :class:`~.storage.InstanceStore`)."""

    root: Path
    policy: StorePolicy
    _instances_dir: Path
    _incoming_dir: Path
    _known_dirs: set[Path]
    _dirs_lock: threading.Lock

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

        ``fsync`` overrides the policy (the materialiser writes without: its checkpoint syncs). The rename
        precedes the file's fsync so that one journal commit carries both (on ext4 the directory fsync then
        finds nothing left to commit). Until its index row is committed the file is not acknowledged,
        whatever a crash leaves (start-up reconciliation deletes unusable files).

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
