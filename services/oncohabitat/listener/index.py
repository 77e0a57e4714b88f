"""SQLite index of received studies and instances: :class:`StudyIndex`, the one handle every thread uses.

One connection, guarded by a lock, serves every thread (association handlers, completion
monitor, outbox). A committed row survives a crash or ``kill -9`` of the process in both modes;
with ``synchronous=FULL`` every commit is also fsynced (survives power loss). With ``NORMAL`` the
last commits before a power loss may be lost; the store then re-indexes its durable instance
files (:meth:`~.recovery.StoreRecovery.reconcile`) because the index was not closed cleanly
(:attr:`StudyIndex.unclean_start`: a marker file is written by :meth:`StudyIndex.close` after a
checkpoint and removed at open).

The study state machine (states, transitions, late policy) is :mod:`.studies`; this module is its
SQL: each transition is one transaction, guarded by the state (and content digest) it starts from.

Contract about "acknowledged": a row is committed only once its file was written in full (renamed
into place). On the direct path the file is synced first, so the committed row is the
acknowledgement; rows of journaled instances (acknowledged by their journal entry) are committed by
the materialiser after the reply, and their files are synced before the journal checkpoint passes
their entries.

No patient names, IDs, birth dates or accession numbers are stored: only UIDs, opaque keys, SOP
class, modality, series number/description, file paths relative to the store root, sizes and
SHA-256 digests.

The index by job: :mod:`.index_schema` (tables, migration), :mod:`.index_connection` (the file,
its locked connection, reader pool and clean-close marker), :mod:`.index_records` (typed rows),
:mod:`.index_instances` (instance rows and the late policy); this module adds the study queries,
the study transitions and the audit table, and re-exports the public names of the others.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from oncohabitat.dicomio.identifiers import content_digest
from oncohabitat.listener.index_connection import CLEAN_SUFFIX, IndexConnection
from oncohabitat.listener.index_instances import add_instance_row, count_conflict, replace_instance_row
from oncohabitat.listener.index_records import (
    INSTANCE_COLUMNS,
    STUDY_COLUMNS,
    AuditEvent,
    InstanceRecord,
    SeriesCount,
    StudyRecord,
    instance_from_row,
    study_from_row,
)
from oncohabitat.listener.index_schema import SCHEMA_VERSION
from oncohabitat.listener.studies import AddOutcome, AddResult, LatePolicy, StudyState, end_of_receiving

_LOG = logging.getLogger(__name__)

__all__ = [
    "CLEAN_SUFFIX",
    "SCHEMA_VERSION",
    "AddOutcome",
    "AddResult",
    "AuditEvent",
    "InstanceRecord",
    "LatePolicy",
    "SeriesCount",
    "StudyIndex",
    "StudyRecord",
    "StudyState",
]


class StudyIndex(IndexConnection):
    """Durable study/instance index in one SQLite file (created on first use).

    Args:
        db_path: the SQLite file (its directory must exist).
        busy_timeout_s: how long a statement waits for a lock held by another connection, in s.
        late_policy: what a new instance does to a completed study (see :mod:`.studies`).
        synchronous: ``"FULL"`` (every commit fsynced) or ``"NORMAL"`` (see module doc).

    Raises:
        StudyIndexError: the file is not a usable index (corrupt, newer schema).
    """

    def __init__(
        self,
        db_path: Path,
        *,
        busy_timeout_s: float = 10.0,
        late_policy: LatePolicy = LatePolicy.RERUN,
        synchronous: str = "FULL",
    ) -> None:
        self.late_policy = late_policy
        super().__init__(db_path, busy_timeout_s=busy_timeout_s, synchronous=synchronous)

    # ---- instances -------------------------------------------------------------------------

    def indexed_paths(self) -> set[str]:
        """Store-relative paths of every indexed instance file."""
        return {str(row[0]) for row in self._query("SELECT path FROM instances")}

    def get_instance(self, sop_uid: str) -> InstanceRecord | None:
        """The indexed instance with this SOP Instance UID, if any (last committed state)."""
        row = self._read_one(f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE sop_uid = ?", (sop_uid,))
        return instance_from_row(row) if row is not None else None

    def add_instance(self, record: InstanceRecord, study_uid: str) -> AddResult:
        """Commit an instance row (its file must already be durable) and update its study.

        A new instance for a study that is not RECEIVING follows :attr:`late_policy`. An already
        indexed SOP Instance UID changes nothing (``IDENTICAL``) or, with different bytes, only
        increments the study's ``conflicts`` counter (``CONFLICT``).
        """
        with self._transaction() as cur:
            return add_instance_row(cur, record, study_uid, self.late_policy)

    def add_instances(self, items: Sequence[tuple[InstanceRecord, str]]) -> list[AddResult]:
        """:meth:`add_instance` for ``(record, study_uid)`` pairs, in order, in one transaction.

        Used by the background materialiser (one commit per batch instead of per instance).
        """
        with self._transaction() as cur:
            return [add_instance_row(cur, record, study_uid, self.late_policy) for record, study_uid in items]

    def replace_instance(self, record: InstanceRecord) -> AddResult:
        """Point an indexed SOP Instance UID at a new file (duplicate policy "replace").

        Counts a conflict, keeps the study's instance count, and treats the study like a late
        arrival when it already completed. Returns ``IDENTICAL`` when the bytes did not change.
        """
        with self._transaction() as cur:
            return replace_instance_row(cur, record, self.late_policy)

    def record_conflict(self, study_key: str) -> None:
        """Count one re-sent instance whose bytes differ from the stored first version."""
        with self._transaction() as cur:
            count_conflict(cur, study_key)

    def instances(self, study_key: str) -> list[InstanceRecord]:
        """All instances of a study, ordered by series key then SOP Instance UID."""
        rows = self._query(
            f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE study_key = ? ORDER BY series_key, sop_uid",
            (study_key,),
        )
        return [instance_from_row(row) for row in rows]

    def series_counts(self, study_key: str) -> list[SeriesCount]:
        """Instances per series of a study, by series key."""
        rows = self._query(
            "SELECT series_key, MAX(series_description), MAX(modality), COUNT(*) FROM instances"
            " WHERE study_key = ? GROUP BY series_key ORDER BY series_key",
            (study_key,),
        )
        return [SeriesCount(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]

    # ---- studies ---------------------------------------------------------------------------

    def get_study(self, study_key: str) -> StudyRecord | None:
        """The study with this key, if any."""
        rows = self._query(f"SELECT {STUDY_COLUMNS} FROM studies WHERE study_key = ?", (study_key,))
        return study_from_row(rows[0]) if rows else None

    def list_studies(self, state: StudyState | None = None, limit: int = 100) -> list[StudyRecord]:
        """Studies (optionally in one state), most recently received first, at most ``limit``."""
        if state is None:
            rows = self._query(f"SELECT {STUDY_COLUMNS} FROM studies ORDER BY last_received_at DESC LIMIT ?", (limit,))
        else:
            rows = self._query(
                f"SELECT {STUDY_COLUMNS} FROM studies WHERE state = ? ORDER BY last_received_at DESC LIMIT ?",
                (state.value, limit),
            )
        return [study_from_row(row) for row in rows]

    def receiving_studies(self) -> list[tuple[str, float]]:
        """``(study_key, last_received_at)`` of every RECEIVING study, oldest activity first."""
        rows = self._query(
            "SELECT study_key, last_received_at FROM studies WHERE state = ? ORDER BY last_received_at",
            (StudyState.RECEIVING.value,),
        )
        return [(str(r[0]), float(r[1])) for r in rows]

    def studies_due_for_completion(self, cutoff: float) -> list[str]:
        """Keys of RECEIVING studies whose last instance arrived at or before ``cutoff`` (epoch s)."""
        rows = self._query(
            "SELECT study_key FROM studies WHERE state = ? AND last_received_at <= ? ORDER BY last_received_at",
            (StudyState.RECEIVING.value, cutoff),
        )
        return [str(row[0]) for row in rows]

    def complete_study(
        self,
        study_key: str,
        cutoff: float,
        now: float,
        *,
        classification: str = "",
        eligible: bool | None = None,
        reject_reason: str | None = None,
    ) -> str | None:
        """End a quiet RECEIVING study; returns its content digest.

        Without ``reject_reason`` the study becomes COMPLETE and due for hand-off at ``now``; with
        one it becomes REJECTED with that (curated) reason. ``classification`` (JSON) and
        ``eligible`` are stored either way. Returns None (and changes nothing) when the study is
        not RECEIVING or received an instance after ``cutoff`` in the meantime.
        """
        with self._transaction() as cur:
            row = cur.execute(
                "SELECT state, last_received_at FROM studies WHERE study_key = ?", (study_key,)
            ).fetchone()
            if row is None or row[0] != StudyState.RECEIVING.value or row[1] > cutoff:
                return None
            pairs = cur.execute("SELECT sop_uid, sha256 FROM instances WHERE study_key = ?", (study_key,)).fetchall()
            digest = content_digest((str(sop), str(sha)) for sop, sha in pairs)
            state = end_of_receiving(eligible=reject_reason is None)
            cur.execute(
                "UPDATE studies SET state = ?, completed_at = ?, content_digest = ?, handoff_attempts = 0,"
                " next_handoff_at = ?, reason = ?, classification = ?, eligible = ? WHERE study_key = ?",
                (
                    state.value,
                    now,
                    digest,
                    now if reject_reason is None else None,
                    reject_reason or "",
                    classification,
                    None if eligible is None else int(eligible),
                    study_key,
                ),
            )
        return digest

    def studies_due_for_handoff(self, now: float, limit: int = 100) -> list[StudyRecord]:
        """COMPLETE studies whose next hand-off attempt is due at ``now`` (epoch s), oldest first."""
        rows = self._query(
            f"SELECT {STUDY_COLUMNS} FROM studies WHERE state = ? AND next_handoff_at <= ?"
            " ORDER BY next_handoff_at LIMIT ?",
            (StudyState.COMPLETE.value, now, limit),
        )
        return [study_from_row(row) for row in rows]

    def count_in_state(self, state: StudyState) -> int:
        """Number of studies in ``state``."""
        return int(self._query("SELECT COUNT(*) FROM studies WHERE state = ?", (state.value,))[0][0])

    def mark_handed_off(self, study_key: str, digest: str, job_id: str, now: float) -> bool:
        """COMPLETE -> HANDED_OFF with ``job_id``; False when the study changed (reopened) meanwhile."""
        with self._transaction() as cur:
            cur.execute(
                "UPDATE studies SET state = ?, handed_off_at = ?, job_id = ?, reason = '',"
                " next_handoff_at = NULL WHERE study_key = ? AND state = ? AND content_digest = ?",
                (StudyState.HANDED_OFF.value, now, job_id, study_key, StudyState.COMPLETE.value, digest),
            )
            return cur.rowcount == 1

    def record_handoff_failure(self, study_key: str, digest: str, reason: str, next_attempt_at: float) -> int | None:
        """Count a failed hand-off and schedule the next attempt (epoch s); returns attempts so far.

        Returns None when the study is no longer COMPLETE with this digest.
        """
        with self._transaction() as cur:
            cur.execute(
                "UPDATE studies SET handoff_attempts = handoff_attempts + 1, next_handoff_at = ?,"
                " reason = ? WHERE study_key = ? AND state = ? AND content_digest = ?",
                (next_attempt_at, reason, study_key, StudyState.COMPLETE.value, digest),
            )
            if cur.rowcount != 1:
                return None
            row = cur.execute("SELECT handoff_attempts FROM studies WHERE study_key = ?", (study_key,)).fetchone()
            return int(row[0])

    def mark_rejected(self, study_key: str, reason: str, digest: str | None = None) -> bool:
        """Mark a study REJECTED with a curated ``reason`` (only if its digest is ``digest``, if given)."""
        with self._transaction() as cur:
            if digest is None:
                cur.execute(
                    "UPDATE studies SET state = ?, reason = ?, next_handoff_at = NULL WHERE study_key = ?",
                    (StudyState.REJECTED.value, reason, study_key),
                )
            else:
                cur.execute(
                    "UPDATE studies SET state = ?, reason = ?, next_handoff_at = NULL"
                    " WHERE study_key = ? AND content_digest = ?",
                    (StudyState.REJECTED.value, reason, study_key, digest),
                )
            return cur.rowcount == 1

    def requeue(self, study_key: str, now: float) -> str | None:
        """Queue a COMPLETE, HANDED_OFF or REJECTED study for hand-off again at ``now``.

        Recomputes the content digest (held late instances included), clears the late-instance
        count and returns the digest; None when the study is unknown or still RECEIVING (it will
        be handed off when it completes).
        """
        with self._transaction() as cur:
            row = cur.execute("SELECT state FROM studies WHERE study_key = ?", (study_key,)).fetchone()
            if row is None or row[0] == StudyState.RECEIVING.value:
                return None
            pairs = cur.execute("SELECT sop_uid, sha256 FROM instances WHERE study_key = ?", (study_key,)).fetchall()
            digest = content_digest((str(sop), str(sha)) for sop, sha in pairs)
            cur.execute(
                "UPDATE studies SET state = ?, completed_at = COALESCE(completed_at, ?), content_digest = ?,"
                " handoff_attempts = 0, next_handoff_at = ?, late_instances = 0, reason = 'resubmitted'"
                " WHERE study_key = ?",
                (StudyState.COMPLETE.value, now, digest, now, study_key),
            )
        _LOG.info("study %s requeued for hand-off", study_key)
        return digest

    # ---- audit -----------------------------------------------------------------------------

    def add_audit(self, at: float, event: str, study_key: str = "", detail: dict[str, Any] | None = None) -> None:
        """Persist an audit event (``detail`` must not hold patient data)."""
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO audit_events (at, event, study_key, detail) VALUES (?, ?, ?, ?)",
                (at, event, study_key, json.dumps(detail or {}, sort_keys=True)),
            )

    def audit_events(self, study_key: str | None = None, limit: int = 100) -> list[AuditEvent]:
        """The most recent audit events (of one study, if given), oldest first."""
        if study_key is None:
            rows = self._query(
                "SELECT at, event, study_key, detail FROM audit_events ORDER BY id DESC LIMIT ?", (limit,)
            )
        else:
            rows = self._query(
                "SELECT at, event, study_key, detail FROM audit_events WHERE study_key = ? ORDER BY id DESC LIMIT ?",
                (study_key, limit),
            )
        return [AuditEvent(float(r[0]), str(r[1]), str(r[2]), json.loads(str(r[3]))) for r in reversed(rows)]
