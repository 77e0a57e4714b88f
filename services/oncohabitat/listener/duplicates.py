"""Duplicate policy and the direct path: what a SOP Instance UID received again does, and how an
instance is written and indexed without the journal.

Direct path (no journal, data sets spooled to disk or too large for a journal segment, re-sent UIDs
with other bytes, instances the journal refused): the file is written durably (:mod:`.store_files`),
then the index row is committed; only then is success (0x0000) answered. A file without a row (crash
before the commit) was never acknowledged: the sender's retry overwrites it, and after an unclean stop
:meth:`~.recovery.StoreRecovery.reconcile` indexes it if complete or deletes it. With
``StorePolicy.fsync=False`` acknowledged instances survive a process crash (page cache), not an OS crash.

Duplicates (same SOP Instance UID): the same bytes answer success and change nothing. Different
bytes answer success, are counted (``studies.conflicts``, metric) and audited; the
:class:`DuplicatePolicy` keeps the first version (default) or replaces it (the new file gets its
own name ``<sop_key>-<sha16>.dcm``, the row is switched, then the old file is deleted; a completed
study is then treated like a late arrival). A version that arrived before the indexed one (two
associations racing) is a conflict, never a replacement.

Contract: :meth:`StoreDuplicates._commit` returns success only once the file and its row are
committed (or the UID was already indexed: identical or conflict, which change no file); any
failure is a refusal and leaves no new file behind. Commits of one UID are serialised (striped locks).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from oncohabitat.dicomio.identifiers import uid_key
from oncohabitat.listener import audit, metrics, status
from oncohabitat.listener.checks import InstanceHeader
from oncohabitat.listener.cstore import StoreResult, refuse
from oncohabitat.listener.index import AddOutcome, AddResult, InstanceRecord, StudyIndex
from oncohabitat.listener.store_files import StoreFiles, instance_path, instance_record

_LOG = logging.getLogger(__name__)

#: Number of locks the commits of SOP Instance UIDs are striped over.
LOCK_STRIPES = 64


class DuplicatePolicy(StrEnum):
    """What a re-sent SOP Instance UID with different bytes does (see module doc)."""

    KEEP_FIRST = "keep_first"
    REPLACE = "replace"


class StoreDuplicates(StoreFiles):
    """Direct-path commits and the duplicate policy (a part of :class:`~.storage.InstanceStore`)."""

    index: StudyIndex
    _clock: Callable[[], float]
    _stripes: list[threading.Lock]

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

        ``received_at`` (epoch s; None: now): a version older than the indexed one is a conflict, not a replacement.
        """
        study_key = uid_key(header.study_uid)
        sop_key = uid_key(header.sop_uid)
        relative = instance_path(header)
        with self._stripes[int(sop_key[:8], 16) % LOCK_STRIPES]:
            try:
                existing = self.index.get_instance(header.sop_uid)
            except sqlite3.Error as exc:
                _LOG.error("instance %s of study %s not indexed: %s", sop_key, study_key, type(exc).__name__)
                return refuse("index_error", status.OUT_OF_RESOURCES)
            if existing is not None:
                if existing.sha256 == sha:
                    return self._identical(existing.study_key)
                superseded = received_at is not None and existing.received_at > received_at
                if superseded or self.policy.duplicates is DuplicatePolicy.KEEP_FIRST:
                    return self._conflict(existing.study_key, sop_key)
                relative = instance_path(header, sha)
            final = self.root / relative
            try:
                place(final)
            except OSError as exc:
                _LOG.error("instance %s of study %s not written: %s", sop_key, study_key, exc.strerror)
                return refuse("write_error", status.OUT_OF_RESOURCES)
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
                return refuse("index_error", status.OUT_OF_RESOURCES)
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
