"""Instance rows of the study index: add, replace, count conflicts, and apply the late policy.

Each function runs inside the caller's write transaction (a cursor of
:meth:`~.index_connection.IndexConnection._transaction`); the study row it touches is updated in
the same transaction, so counts (``instance_count``, ``bytes_stored`` in bytes,
``last_received_at`` in epoch s) never disagree with the instance rows.
"""

from __future__ import annotations

import sqlite3

from oncohabitat.listener.errors import StudyIndexError
from oncohabitat.listener.index_records import INSTANCE_COLUMNS, InstanceRecord, instance_row_values
from oncohabitat.listener.studies import AddOutcome, AddResult, LateAction, LatePolicy, StudyState, late_action

__all__ = ["add_instance_row", "count_conflict", "replace_instance_row"]


def add_instance_row(cur: sqlite3.Cursor, record: InstanceRecord, study_uid: str, policy: LatePolicy) -> AddResult:
    """Insert an instance row (creating its RECEIVING study on first sight) and update its study.

    A new instance for a study that is not RECEIVING follows ``policy``. An already indexed SOP
    Instance UID changes nothing (``IDENTICAL``) or, with different bytes, only increments the
    study's ``conflicts`` counter (``CONFLICT``).
    """
    existing = cur.execute("SELECT sha256, study_key FROM instances WHERE sop_uid = ?", (record.sop_uid,)).fetchone()
    if existing is not None:
        if existing[0] == record.sha256:
            return AddResult(AddOutcome.IDENTICAL)
        count_conflict(cur, str(existing[1]))
        return AddResult(AddOutcome.CONFLICT)
    study = cur.execute("SELECT state FROM studies WHERE study_key = ?", (record.study_key,)).fetchone()
    if study is None:
        cur.execute(
            "INSERT INTO studies (study_key, study_uid, state, first_received_at, last_received_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (record.study_key, study_uid, StudyState.RECEIVING.value, record.received_at, record.received_at),
        )
        result = AddResult(AddOutcome.STORED)
    else:
        result = _late_arrival(cur, record.study_key, StudyState(str(study[0])), AddOutcome.STORED, policy)
    cur.execute(
        f"INSERT INTO instances ({INSTANCE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        instance_row_values(record),
    )
    _count_instance(cur, record, record.size, 1, result)
    return result


def replace_instance_row(cur: sqlite3.Cursor, record: InstanceRecord, policy: LatePolicy) -> AddResult:
    """Point an indexed SOP Instance UID at a new file (duplicate policy "replace").

    Counts a conflict, keeps the study's instance count, and treats the study like a late
    arrival when it already completed. Returns ``IDENTICAL`` when the bytes did not change.

    Raises:
        StudyIndexError: the SOP Instance UID is not indexed.
    """
    existing = cur.execute(
        "SELECT sha256, study_key, size FROM instances WHERE sop_uid = ?", (record.sop_uid,)
    ).fetchone()
    if existing is None:
        raise StudyIndexError("replace_instance called for an instance that is not indexed")
    if existing[0] == record.sha256:
        return AddResult(AddOutcome.IDENTICAL)
    study = cur.execute("SELECT state FROM studies WHERE study_key = ?", (existing[1],)).fetchone()
    result = _late_arrival(cur, str(existing[1]), StudyState(str(study[0])), AddOutcome.REPLACED, policy)
    cur.execute(
        "UPDATE instances SET path = ?, sha256 = ?, size = ?, received_at = ?, transfer_syntax = ? WHERE sop_uid = ?",
        (record.path, record.sha256, record.size, record.received_at, record.transfer_syntax, record.sop_uid),
    )
    count_conflict(cur, str(existing[1]))
    _count_instance(cur, record, record.size - int(existing[2]), 0, result)
    return result


def count_conflict(cur: sqlite3.Cursor, study_key: str) -> None:
    """Count one re-sent instance of the study whose bytes differ from the stored version."""
    cur.execute("UPDATE studies SET conflicts = conflicts + 1 WHERE study_key = ?", (study_key,))


def _late_arrival(
    cur: sqlite3.Cursor, study_key: str, state: StudyState, outcome: AddOutcome, policy: LatePolicy
) -> AddResult:
    """Apply the late policy to a study receiving new content in ``state``."""
    action = late_action(state, policy)
    if action is LateAction.NONE:
        return AddResult(outcome)
    if action is LateAction.HOLD:
        cur.execute(
            "UPDATE studies SET late_instances = late_instances + 1, updates = updates + 1,"
            " reason = 'updated after ' || state || ': ' || (late_instances + 1) ||"
            " ' late instance(s) held (late policy hold); ResubmitStudy re-runs the study'"
            " WHERE study_key = ?",
            (study_key,),
        )
        return AddResult(outcome, held_in=state)
    cur.execute(
        "UPDATE studies SET state = ?, completed_at = NULL, content_digest = NULL, handoff_attempts = 0,"
        " next_handoff_at = NULL, eligible = NULL, updates = updates + 1, reason = ? WHERE study_key = ?",
        (StudyState.RECEIVING.value, f"reopened: new instance after {state.value}", study_key),
    )
    return AddResult(outcome, reopened_from=state)


def _count_instance(cur: sqlite3.Cursor, record: InstanceRecord, size: int, count: int, result: AddResult) -> None:
    """Add ``count`` instances and ``size`` bytes to the study; a held arrival keeps its quiet period."""
    held = result.held_in is not None
    cur.execute(
        "UPDATE studies SET instance_count = instance_count + ?, bytes_stored = bytes_stored + ?,"
        " last_received_at = CASE WHEN ? THEN last_received_at ELSE MAX(last_received_at, ?) END"
        " WHERE study_key = ?",
        (count, size, held, record.received_at, record.study_key),
    )
