"""Start-up recovery: what a crash or an unclean stop left behind is repaired before intake opens.

Three repairs, each idempotent (a crash during recovery is repaired by the next start):

* :meth:`StoreRecovery._remove_orphan_temp_files`: temporary files of writes a crash interrupted
  are deleted (they were never acknowledged).
* :meth:`StoreRecovery._recover`: journal entries past the checkpoint are re-materialised. Every
  acknowledged instance is in them, and every entry was checked before it was journaled: its
  metadata is its index record (:mod:`.journal_meta`), stored as it is, nothing decided again.
  Metadata of an unknown layout stops the start-up (:class:`~.journal.JournalError`): an entry
  that may be acknowledged is never skipped unread.
* :meth:`StoreRecovery.reconcile` (after an unclean stop of the index): instance files without a
  row are indexed if complete (with the index at ``synchronous=NORMAL`` this restores rows a power
  loss dropped) or deleted if not (never acknowledged).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
from io import BytesIO

from oncohabitat.dicomio.identifiers import uid_key
from oncohabitat.listener import metrics
from oncohabitat.listener.checks import inspect_body
from oncohabitat.listener.duplicates import DuplicatePolicy, StoreDuplicates
from oncohabitat.listener.errors import InvalidInstanceError
from oncohabitat.listener.index import AddOutcome, InstanceRecord
from oncohabitat.listener.journal import JournalEntry, JournalError
from oncohabitat.listener.journal_meta import RecordMeta, decode_journal_meta
from oncohabitat.listener.spool import TEMP_SUFFIX
from oncohabitat.listener.store_files import (
    INSTANCES_DIR,
    instance_record,
    replacement_path,
    split_part10,
)

_LOG = logging.getLogger(__name__)


def _journal_meta(entry: JournalEntry) -> RecordMeta:
    """The decoded metadata of a journal entry found at recovery.

    Raises:
        JournalError: a layout this release cannot read (not starting: the entry may be acknowledged).
    """
    try:
        return decode_journal_meta(entry.meta)
    except ValueError as exc:
        raise JournalError(
            f"entry {entry.sequence} has metadata of an unknown layout (another release's: stop the listener"
            " cleanly before an upgrade or a downgrade); not starting, so that it is not lost"
        ) from exc


class StoreRecovery(StoreDuplicates):
    """Start-up repairs of a store root (a part of :class:`~.storage.InstanceStore`)."""

    def _recover(self, entries: list[JournalEntry]) -> int:
        """Re-materialise journal entries left by an unclean stop (idempotent); returns how many.

        An unindexed SOP Instance UID is stored; one indexed with the same SHA-256 only gets its file
        checked (rewritten when missing or different). One indexed with other bytes (duplicate handling
        interrupted, or superseded) is replaced now under the "replace" policy if received after the
        indexed version; otherwise the indexed version stays.

        Raises:
            JournalError: an entry's metadata has an unknown layout.
        """
        done = 0
        for entry in entries:
            journaled, study_uid = _journal_meta(entry)
            record = dataclasses.replace(journaled, sha256=entry.sha256)
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
                replacement = dataclasses.replace(record, path=replacement_path(record.path, entry.sha256))
                self._write_durably(self.root / replacement.path, entry.payload, fsync=False)
                if self.index.replace_instance(replacement).outcome is AddOutcome.REPLACED:
                    self._replaced(existing, replacement)
                done += 1
        if done:
            _LOG.warning("intake journal: %d acknowledged instance(s) re-materialised after an unclean stop", done)
        return done

    def reconcile(self) -> int:
        """Index instance files that have no row (after an unclean stop); returns how many.

        With ``synchronous=NORMAL`` a power loss can drop the last commits while their fsynced files
        survive: those are re-indexed from their headers; files failing the checks (never acknowledged)
        are deleted. A replacement file (``<uid key>-<sha16>.dcm``) whose commit was lost takes over its
        UID's row when the row's file is gone (unlinked right after the commit) or older.
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
        for directory in (self._instances_dir, self._incoming_dir):
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
