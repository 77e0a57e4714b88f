"""Journaled intake: a C-STORE received in memory is acknowledged once its journal entry is durable.

The Part-10 bytes are appended to the :class:`~.journal.IntakeJournal` with what the C-STORE
request says (:mod:`.journal_meta`) *before* the checks run, so that the device write proceeds
while they do (one association, measured here: median 1,788 -> 1,950 instances/s); then the entry
is synced and success is answered. An instance the checks refuse has its entry skipped and gets a
refusal record in the journal (:mod:`.journal_meta`; recovery, :mod:`.recovery`, treats an entry
whose refusal record was lost as never acknowledged and keeps it in quarantine).

Only then, in the result's ``follow_up`` (run by the association after its reply), is the SOP
Instance UID checked against pending and indexed instances: every duplicate outcome answers
success as well, so the checks need not delay the reply. A new instance goes to the
:class:`~.materialiser.Materialiser`, which writes the file and commits the row within
milliseconds, then advances the journal checkpoint after a file-system sync; a duplicate takes the
direct path (:mod:`.duplicates`) and its entry is skipped. A crash before that checkpoint is
repaired at the next start (:mod:`.recovery`). The SHA-256 the index keeps is computed off the
reply path (by the materialiser worker; the journal entry carries a CRC).

Contract about "acknowledged": success is answered for a journaled instance only once its entry
is durable (:meth:`StoreIntake._commit_journaled`'s settle); if the sync fails the instance is
stored through the direct path instead, or refused. From the acknowledgement until its after-reply
work has handed it on, the instance counts as pending (:meth:`StoreIntake.has_pending`: it holds
back its study's completion) and for duplicate detection; no checkpoint passes its entry until it
is indexed. Failed after-reply work is retried (1 s, doubling, at most 60 s) until it succeeds or
the store closes (the entry then stays for the next start's recovery).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable

from oncohabitat.dicomio.identifiers import uid_key
from oncohabitat.listener import metrics, status
from oncohabitat.listener.checks import InstanceHeader
from oncohabitat.listener.cstore import StoreResult
from oncohabitat.listener.duplicates import LOCK_STRIPES, StoreDuplicates
from oncohabitat.listener.index import AddOutcome, AddResult
from oncohabitat.listener.journal import IntakeJournal, JournalError, JournalLocation
from oncohabitat.listener.journal_meta import IntakeMeta, RefusalMeta, encode_intake_meta, encode_refusal_meta
from oncohabitat.listener.materialiser import Materialiser, PendingInstance
from oncohabitat.listener.spool import DatasetSpool
from oncohabitat.listener.store_files import instance_path, instance_record

_LOG = logging.getLogger(__name__)

#: First and longest wait before a failed after-reply step of a journaled instance is retried (s).
_RESOLVE_RETRY_FIRST_S = 1.0
_RESOLVE_RETRY_MAX_S = 60.0


class StoreIntake(StoreDuplicates):
    """The journal path of a store (a part of :class:`~.storage.InstanceStore`)."""

    journal: IntakeJournal | None
    _materialiser: Materialiser | None
    #: Journaled instances per study whose after-reply work has not run yet: neither pending in
    #: the materialiser nor indexed, yet acknowledged (or about to be). Completion waits for them.
    _unresolved: Counter[str]
    _unresolved_uids: Counter[str]  # the same, by SOP Instance UID
    _unresolved_lock: threading.Lock
    _closing: threading.Event

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
        record = instance_record(header, transfer_syntax, instance_path(header), "", len(data), received_at)
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
        duplicate goes through the direct path (:meth:`~.duplicates.StoreDuplicates._commit`:
        identical, conflict or replace, by policy) once any pending version of it is indexed; its
        journal entry is then skipped.
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
