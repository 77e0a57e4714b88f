"""Journaled intake: a checked instance received in memory is acknowledged once its journal entry is durable.

After the checks (:mod:`.checks`; a refused instance is written nowhere) the Part-10 bytes and the
checked index record (:mod:`.journal_meta`) are appended to the :class:`~.journal.IntakeJournal`,
which returns once the entry is durable. Then a new SOP Instance UID goes to the
:class:`~.materialiser.Materialiser` and a duplicate through the direct path (:mod:`.duplicates`),
its entry skipped; only then is the result answered. From the acknowledgement until its row is
committed an instance is pending (:meth:`StoreIntake.has_pending`). An instance the journal cannot
take (full past its timeout, an I/O error) takes the direct path. After a crash, recovery
(:mod:`.recovery`) stores every entry as journaled, also one whose reply was never sent (its peer
sends it again: an identical duplicate).
"""

from __future__ import annotations

import logging
import sqlite3

from oncohabitat.dicomio.identifiers import uid_key
from oncohabitat.listener import metrics, status
from oncohabitat.listener.checks import InstanceHeader
from oncohabitat.listener.cstore import StoreResult
from oncohabitat.listener.duplicates import LOCK_STRIPES, StoreDuplicates
from oncohabitat.listener.index import AddOutcome, AddResult
from oncohabitat.listener.journal import IntakeJournal, JournalError
from oncohabitat.listener.journal_meta import encode_record_meta
from oncohabitat.listener.materialiser import Materialiser, PendingInstance
from oncohabitat.listener.spool import DatasetSpool
from oncohabitat.listener.store_files import instance_path, instance_record

_LOG = logging.getLogger(__name__)


class StoreIntake(StoreDuplicates):
    """The journal path of a store (a part of :class:`~.storage.InstanceStore`)."""

    journal: IntakeJournal | None
    _materialiser: Materialiser | None

    def has_pending(self, study_key: str) -> bool:
        """True while acknowledged instances of the study are not yet indexed (journal path)."""
        return self._materialiser is not None and self._materialiser.has_pending(study_key)

    def _wait_for_journaled_version(self, sop_uid: str) -> None:
        """Before a direct-path store: let the worker index a journaled version of ``sop_uid`` first.

        Otherwise it and the direct write would both claim the UID's path and row (the row could
        then name other bytes than the file).
        """
        materialiser = self._materialiser
        if materialiser is not None and materialiser.pending(sop_uid) is not None:
            materialiser.flush()

    def _store_journaled(self, header: InstanceHeader, transfer_syntax: str, spool: DatasetSpool) -> StoreResult | None:
        """Journal a checked instance durably, then hand it on; the result to answer.

        None when it must take the direct path: no journal, spooled to disk, too large for an
        entry, or the journal refused it (full past its timeout, or failed).
        """
        journal, materialiser = self.journal, self._materialiser
        if materialiser is None or journal is None or not spool.in_memory:
            return None
        data = spool.getvalue()
        record = instance_record(header, transfer_syntax, instance_path(header), "", len(data), self._clock())
        meta = encode_record_meta(record, header.study_uid)
        if len(meta) + len(data) > journal.max_entry_bytes:
            return None
        try:
            location = journal.append(meta, data)
        except JournalError as exc:
            metrics.JOURNAL_ERRORS.labels(stage="append").inc()
            _LOG.error("intake journal refused an instance (stored directly instead): %s", exc)
            return None
        return self._hand_on(PendingInstance(location, record, header.study_uid), header, data, spool)

    def _hand_on(self, item: PendingInstance, header: InstanceHeader, data: bytes, spool: DatasetSpool) -> StoreResult:
        """A durable journaled instance: to the materialiser when new, else the duplicate policy.

        A SOP Instance UID that is neither pending nor indexed is submitted (the usual case). A
        duplicate goes through the direct path (:meth:`~.duplicates.StoreDuplicates._commit`:
        identical, conflict or replace, by policy) once any pending version of it is indexed; its
        journal entry is then skipped (also when that fails: the failure is answered, nothing was
        acknowledged, and the peer sends the instance again).
        If the index cannot be read the instance is submitted anyway: the worker indexes it
        without overwriting an indexed file (a conflict then keeps the first version).
        """
        materialiser = self._materialiser
        assert materialiser is not None
        record = item.record
        sop_key = uid_key(record.sop_uid)
        with self._stripes[int(sop_key[:8], 16) % LOCK_STRIPES]:
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
        try:
            return self._commit(
                header,
                record.transfer_syntax,
                spool.sha256(),
                record.size,
                lambda final: self._write_durably(final, data),
                received_at=record.received_at,
            )
        finally:
            materialiser.skip(item.location.sequence)

    def _materialised(self, item: PendingInstance, result: AddResult) -> None:
        """Report the index outcome of a journaled instance (late arrivals are audited)."""
        self._late(item.record.study_key, result)
